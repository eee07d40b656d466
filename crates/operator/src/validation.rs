//! The Operator service (beyond upstream, which does not serve it): checks a Cluster
//! when it is created or changed, against the ObjectStores and Secrets it names.
//!
//! Only what can never work is refused (a [`Severity::Refuse`] finding becomes a
//! `ValidationError` and CloudNativePG rejects the Cluster); what may still be fixed
//! without touching the Cluster (a store or Secret created later, a key added) is a
//! warning, logged by the plugin. On a change, a refusal the old Cluster already had is
//! only a warning, so an existing Cluster is never locked against edits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use barrelman_cnpg::config::{Cluster, PluginConfiguration, PARAM_BARMAN_OBJECT_NAME};
use barrelman_cnpg::k8s::{KubeAccess, KubeError};
use barrelman_cnpg::proto::operator::{
    operator_capability, operator_server::Operator, DeregisterRequest, DeregisterResponse,
    OperatorCapabilitiesRequest, OperatorCapabilitiesResult, OperatorCapability,
    OperatorMutateClusterRequest, OperatorMutateClusterResult,
    OperatorValidateClusterChangeRequest, OperatorValidateClusterChangeResult,
    OperatorValidateClusterCreateRequest, OperatorValidateClusterCreateResult,
    SetStatusInClusterRequest, SetStatusInClusterResponse, ValidationError,
};
use barrelman_cnpg::PLUGIN_NAME;
use barrelman_core::objectstore::ObjectStore;
use tonic::{Request, Response, Status};

/// Whether a finding stops the Cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The configuration can never work: CloudNativePG refuses the Cluster.
    Refuse,
    /// It does not work now but may once something else is fixed: logged only.
    Warn,
}

/// One problem found in a Cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Refusal or warning.
    pub severity: Severity,
    /// The Cluster field at fault, as path components (`spec`, `plugins`, `0`, …).
    pub path: Vec<String>,
    /// That field's value.
    pub value: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// What the plugin read about one ObjectStore.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreState {
    /// It exists.
    Found(Box<ObjectStore>),
    /// The API answered 404.
    Missing,
}

/// What the plugin read about one Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretState {
    /// It exists with these keys.
    Keys(BTreeSet<String>),
    /// The API answered 404.
    Missing,
}

/// What was read from the API for a Cluster. A name absent from a map could not be read
/// (an API error): nothing is said about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fetched {
    /// ObjectStores by name.
    pub stores: BTreeMap<String, StoreState>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, SecretState>,
}

fn path(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Where a Cluster names a store: its path and the store's name.
#[derive(Debug)]
struct Reference {
    path: Vec<String>,
    store: String,
    server: String,
}

fn references(cluster: &Cluster, conf: &PluginConfiguration) -> Vec<Reference> {
    let mut out = Vec::new();
    if let (Some(archive), Some(i)) = (
        &conf.archive,
        cluster
            .spec
            .plugins
            .iter()
            .position(|p| p.name == PLUGIN_NAME),
    ) {
        out.push(Reference {
            path: path(&[
                "spec",
                "plugins",
                &i.to_string(),
                "parameters",
                PARAM_BARMAN_OBJECT_NAME,
            ]),
            store: archive.object_store.clone(),
            server: archive.server_name.clone(),
        });
    }
    for (source, store) in [
        (cluster.recovery_source(), conf.recovery.as_ref().ok()),
        (
            Some(cluster.spec.replica.source.as_str()),
            conf.replica_source.as_ref().ok(),
        ),
    ] {
        let (Some(source), Some(store)) = (source, store) else {
            continue;
        };
        if let Some(i) = cluster
            .spec
            .external_clusters
            .iter()
            .position(|c| c.name == source)
        {
            out.push(Reference {
                path: path(&[
                    "spec",
                    "externalClusters",
                    &i.to_string(),
                    "plugin",
                    "parameters",
                    PARAM_BARMAN_OBJECT_NAME,
                ]),
                store: store.object_store.clone(),
                server: store.server_name.clone(),
            });
        }
    }
    out
}

/// Whether a retention policy is what the CRD allows: `^[1-9][0-9]*[dwm]$`.
pub fn retention_policy_is_valid(policy: &str) -> bool {
    let Some(number) = policy.strip_suffix(['d', 'w', 'm']) else {
        return false;
    };
    !number.is_empty() && !number.starts_with('0') && number.bytes().all(|b| b.is_ascii_digit())
}

fn credential_blocks(store: &ObjectStore) -> Vec<&'static str> {
    let c = &store.spec.configuration;
    [
        ("s3Credentials", c.s3_credentials.is_some()),
        ("azureCredentials", c.azure_credentials.is_some()),
        ("googleCredentials", c.google_credentials.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect()
}

/// Checks `cluster` (its JSON) against what was fetched.
pub fn validate(cluster: &Cluster, fetched: &Fetched) -> Vec<Finding> {
    let conf = PluginConfiguration::from_cluster(cluster);
    let refs = references(cluster, &conf);
    let mut findings = Vec::new();
    let mut push = |severity, path: &[String], value: &str, message: String| {
        findings.push(Finding {
            severity,
            path: path.to_vec(),
            value: value.to_string(),
            message,
        })
    };

    // Backups into a store with no WAL archive cannot be restored consistently.
    if let Some(entry) = cluster.plugin_entry() {
        let archiver = cluster
            .spec
            .plugins
            .iter()
            .any(|p| p.is_enabled() && p.is_wal_archiver == Some(true));
        if conf.archive.is_some() && entry.is_enabled() && !archiver {
            let i = cluster
                .spec
                .plugins
                .iter()
                .position(|p| p.name == PLUGIN_NAME)
                .unwrap_or(0);
            push(
                Severity::Warn,
                &path(&["spec", "plugins", &i.to_string(), "isWALArchiver"]),
                "false",
                format!(
                    "the Cluster takes backups with {PLUGIN_NAME} but no plugin archives its WAL, \
                     so those backups cannot be restored; set isWALArchiver: true on this entry"
                ),
            );
        }
    }

    // Recovering from and archiving to the same place: the new timeline would mix with
    // the source's WAL, and the empty-archive check refuses it at the first archive.
    let archive_ref = refs.iter().find(|r| r.path[1] == "plugins");
    if let (Some(archive), Some(recovery)) = (archive_ref, conf.recovery.as_ref().ok()) {
        let dest = |name: &str| match fetched.stores.get(name) {
            Some(StoreState::Found(s)) => Some(s.spec.configuration.destination_path.clone()),
            _ => None,
        };
        let same_store = archive.store == recovery.object_store;
        let same_dest = dest(&archive.store)
            .zip(dest(&recovery.object_store))
            .is_some_and(|(a, b)| a.trim_end_matches('/') == b.trim_end_matches('/'));
        if (same_store || same_dest) && archive.server == recovery.server_name {
            push(
                Severity::Refuse,
                &archive.path,
                &archive.store,
                format!(
                    "the Cluster recovers from and archives to the same place (ObjectStore {:?}, \
                     server name {:?}): archiving would write into the backup being restored; \
                     set a different serverName parameter in spec.plugins (or archive to \
                     another ObjectStore)",
                    archive.store, archive.server
                ),
            );
        }
    }

    let mut seen = BTreeSet::new();
    for r in &refs {
        if !seen.insert(r.store.clone()) {
            continue;
        }
        let store = match fetched.stores.get(&r.store) {
            None => continue,
            Some(StoreState::Missing) => {
                push(
                    Severity::Warn,
                    &r.path,
                    &r.store,
                    format!(
                        "the ObjectStore {:?} does not exist in namespace {:?}; create it (the \
                         plugin waits for it before reconciling the Cluster)",
                        r.store, cluster.metadata.namespace
                    ),
                );
                continue;
            }
            Some(StoreState::Found(s)) => s,
        };
        if let Some(policy) = &store.spec.retention_policy {
            if !retention_policy_is_valid(policy) {
                push(
                    Severity::Refuse,
                    &r.path,
                    &r.store,
                    format!(
                        "the ObjectStore {:?} has spec.retentionPolicy {policy:?}, which is not a \
                         recovery window; write a number followed by d, w or m (e.g. 30d)",
                        r.store
                    ),
                );
            }
        }
        let blocks = credential_blocks(store);
        if blocks.len() > 1 {
            push(
                Severity::Refuse,
                &r.path,
                &r.store,
                format!(
                    "the ObjectStore {:?} sets {} at once; keep only the one of the provider \
                     its destinationPath is on",
                    r.store,
                    blocks.join(" and ")
                ),
            );
        }
        for (_, selector) in store.secret_env() {
            match fetched.secrets.get(&selector.name) {
                None => {}
                Some(SecretState::Missing) => push(
                    Severity::Warn,
                    &r.path,
                    &r.store,
                    format!(
                        "the ObjectStore {:?} refers to the Secret {:?}, which does not exist; \
                         create it with the key {:?}",
                        r.store, selector.name, selector.key
                    ),
                ),
                Some(SecretState::Keys(keys)) if !keys.contains(&selector.key) => {
                    let has: Vec<&str> = keys.iter().map(String::as_str).collect();
                    push(
                        Severity::Warn,
                        &r.path,
                        &r.store,
                        format!(
                            "the ObjectStore {:?} refers to the key {:?} of the Secret {:?}, \
                             which has only the keys [{}]; fix the key name in the ObjectStore \
                             or add it to the Secret",
                            r.store,
                            selector.key,
                            selector.name,
                            has.join(", ")
                        ),
                    );
                }
                Some(SecretState::Keys(_)) => {}
            }
        }
    }
    findings
}

/// The findings of a change: those of `new`, with a refusal `old` already had turned
/// into a warning.
pub fn validate_change(old: &Cluster, new: &Cluster, fetched: &Fetched) -> Vec<Finding> {
    let before = validate(old, fetched);
    validate(new, fetched)
        .into_iter()
        .map(|mut f| {
            if f.severity == Severity::Refuse
                && before
                    .iter()
                    .any(|b| b.path == f.path && b.message == f.message)
            {
                f.severity = Severity::Warn;
            }
            f
        })
        .collect()
}

/// Reads the stores and Secrets `clusters` name, in their namespace, afresh.
pub async fn fetch(client: &kube::Client, clusters: &[&Cluster]) -> Fetched {
    let mut fetched = Fetched::default();
    let Some(namespace) = clusters
        .first()
        .map(|c| c.metadata.namespace.clone())
        .filter(|n| !n.is_empty())
    else {
        return fetched;
    };
    let access = KubeAccess::with_ttl(client.clone(), namespace, Duration::ZERO);
    let mut names: Vec<String> = clusters
        .iter()
        .flat_map(|c| crate::reconciler::referenced_stores(c))
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        match access.object_store(&name).await {
            Ok(o) => {
                for (_, sel) in o.store.secret_env() {
                    if fetched.secrets.contains_key(&sel.name) {
                        continue;
                    }
                    match access.secret(&sel.name).await {
                        Ok(data) => {
                            let keys = data.keys().map(str::to_string).collect();
                            fetched
                                .secrets
                                .insert(sel.name.clone(), SecretState::Keys(keys));
                        }
                        Err(KubeError::NotFound { .. }) => {
                            fetched
                                .secrets
                                .insert(sel.name.clone(), SecretState::Missing);
                        }
                        Err(e) => tracing::debug!("validation skips a Secret: {e}"),
                    }
                }
                fetched
                    .stores
                    .insert(name, StoreState::Found(Box::new(o.store)));
            }
            Err(KubeError::NotFound { .. }) => {
                fetched.stores.insert(name, StoreState::Missing);
            }
            Err(e) => tracing::debug!("validation skips an ObjectStore: {e}"),
        }
    }
    fetched
}

/// The Operator service: cluster validation.
#[derive(Clone)]
pub struct ValidationService {
    kube: Option<kube::Client>,
}

impl ValidationService {
    /// Validation reading through `kube` (without it, only what the Cluster alone shows).
    pub fn new(kube: Option<kube::Client>) -> Self {
        ValidationService { kube }
    }

    async fn fetched(&self, clusters: &[&Cluster]) -> Fetched {
        match &self.kube {
            Some(client) => fetch(client, clusters).await,
            None => Fetched::default(),
        }
    }
}

fn decode(bytes: &[u8], field: &str) -> Result<Cluster, Status> {
    Cluster::from_json(bytes).map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

/// Logs the warnings and returns the refusals as CloudNativePG's messages.
fn answer(cluster: &Cluster, findings: Vec<Finding>) -> Vec<ValidationError> {
    findings
        .into_iter()
        .filter_map(|f| match f.severity {
            Severity::Warn => {
                tracing::warn!(cluster = %cluster.metadata.name, namespace = %cluster.metadata.namespace, path = %f.path.join("."), "{}", f.message);
                None
            }
            Severity::Refuse => Some(ValidationError {
                path_components: f.path,
                value: f.value,
                message: f.message,
            }),
        })
        .collect()
}

#[tonic::async_trait]
impl Operator for ValidationService {
    async fn get_capabilities(
        &self,
        _: Request<OperatorCapabilitiesRequest>,
    ) -> Result<Response<OperatorCapabilitiesResult>, Status> {
        use operator_capability::rpc::Type;
        let capabilities = [Type::ValidateClusterCreate, Type::ValidateClusterChange]
            .into_iter()
            .map(|t| OperatorCapability {
                r#type: Some(operator_capability::Type::Rpc(operator_capability::Rpc {
                    r#type: t as i32,
                })),
            })
            .collect();
        Ok(Response::new(OperatorCapabilitiesResult { capabilities }))
    }

    async fn validate_cluster_create(
        &self,
        request: Request<OperatorValidateClusterCreateRequest>,
    ) -> Result<Response<OperatorValidateClusterCreateResult>, Status> {
        let cluster = decode(&request.into_inner().definition, "definition")?;
        let fetched = self.fetched(&[&cluster]).await;
        let validation_errors = answer(&cluster, validate(&cluster, &fetched));
        Ok(Response::new(OperatorValidateClusterCreateResult {
            validation_errors,
        }))
    }

    async fn validate_cluster_change(
        &self,
        request: Request<OperatorValidateClusterChangeRequest>,
    ) -> Result<Response<OperatorValidateClusterChangeResult>, Status> {
        let req = request.into_inner();
        let old = decode(&req.old_cluster, "old_cluster")?;
        let new = decode(&req.new_cluster, "new_cluster")?;
        let fetched = self.fetched(&[&new, &old]).await;
        let validation_errors = answer(&new, validate_change(&old, &new, &fetched));
        Ok(Response::new(OperatorValidateClusterChangeResult {
            validation_errors,
        }))
    }

    async fn mutate_cluster(
        &self,
        _: Request<OperatorMutateClusterRequest>,
    ) -> Result<Response<OperatorMutateClusterResult>, Status> {
        Err(Status::unimplemented("the plugin does not mutate Clusters"))
    }

    async fn set_status_in_cluster(
        &self,
        _: Request<SetStatusInClusterRequest>,
    ) -> Result<Response<SetStatusInClusterResponse>, Status> {
        Err(Status::unimplemented(
            "the plugin keeps no status in the Cluster",
        ))
    }

    async fn deregister(
        &self,
        _: Request<DeregisterRequest>,
    ) -> Result<Response<DeregisterResponse>, Status> {
        Err(Status::unimplemented(
            "the plugin has nothing to deregister",
        ))
    }
}
