//! ReconcilerHooks (reference 2.10): before CloudNativePG reconciles a Cluster, make sure
//! every ObjectStore it names exists (else ask for a requeue) and that the Role and
//! RoleBinding `<cluster>-barman-cloud` grant its Pods what the sidecar reads; plus
//! [`Resync`], which recomputes those Roles when an ObjectStore's Secrets change.
//!
//! Writes are merge patches carrying the `resourceVersion` read, so a concurrent writer
//! makes the API answer 409 and the read-modify-write starts again (at most
//! [`MAX_ATTEMPTS`] times), as upstream's retry-on-conflict does.

use std::time::Duration;

use barrelman_cnpg::config::{Cluster, PluginConfiguration};
use barrelman_cnpg::k8s::{KubeAccess, KubeError};
use barrelman_cnpg::proto::reconciler::{
    reconciler_hooks_capability::Kind, reconciler_hooks_result::Behavior,
    reconciler_hooks_server::ReconcilerHooks, ReconcilerHooksCapabilitiesRequest,
    ReconcilerHooksCapabilitiesResult, ReconcilerHooksCapability, ReconcilerHooksRequest,
    ReconcilerHooksResult,
};
use barrelman_core::objectstore::ObjectStore;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tonic::{Request, Response, Status};

use crate::rbac::{self, ClusterIdentity};

/// Seconds after which CloudNativePG reconciles again a Cluster whose store is missing.
pub const REQUEUE_AFTER_SECONDS: i64 = 10;

/// How many times a conflicting write is read and tried again.
pub const MAX_ATTEMPTS: u32 = 5;

/// Why the Role or RoleBinding could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    /// The operator's service account may not do this.
    #[error(
        "the plugin may not {verb} the {kind} {name:?} in namespace {namespace:?}: grant its \
         ServiceAccount get, create and patch on roles and rolebindings (the ClusterRole in \
         deploy/manifest.yaml)"
    )]
    Forbidden {
        /// get, create or patch.
        verb: &'static str,
        /// Role or RoleBinding.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Its namespace.
        namespace: String,
    },
    /// Still conflicting after every retry.
    #[error("the {kind} {name:?} in namespace {namespace:?} kept changing under us ({MAX_ATTEMPTS} conflicts); the next reconcile tries again")]
    Conflict {
        /// Role or RoleBinding.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Its namespace.
        namespace: String,
    },
    /// The existing RoleBinding points at another Role (roleRef cannot change).
    #[error("the RoleBinding {name:?} in namespace {namespace:?} refers to the {found} instead of the Role {name:?}; delete it so the plugin can recreate it")]
    RoleRefDiffers {
        /// Its name.
        name: String,
        /// Its namespace.
        namespace: String,
        /// What it refers to ("Role other").
        found: String,
    },
    /// Any other API answer.
    #[error("{verb} of the {kind} {name:?} in namespace {namespace:?} failed: {reason}")]
    Api {
        /// The verb.
        verb: &'static str,
        /// Role or RoleBinding.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Its namespace.
        namespace: String,
        /// The API's message or the transport error.
        reason: String,
    },
}

impl barrelman_core::error::Classified for RbacError {
    fn class(&self) -> barrelman_core::error::ErrorClass {
        use barrelman_core::error::ErrorClass;
        match self {
            RbacError::Forbidden { .. } => ErrorClass::Denied,
            RbacError::Conflict { .. } | RbacError::RoleRefDiffers { .. } => ErrorClass::Conflict,
            RbacError::Api { .. } => ErrorClass::Unavailable,
        }
    }
}

impl RbacError {
    /// The gRPC status a hook answers with this error.
    pub fn grpc_status(&self) -> Status {
        match self {
            RbacError::Forbidden { .. } => Status::permission_denied(self.to_string()),
            RbacError::Conflict { .. } => Status::aborted(self.to_string()),
            RbacError::RoleRefDiffers { .. } => Status::failed_precondition(self.to_string()),
            RbacError::Api { .. } => Status::unavailable(self.to_string()),
        }
    }
}

fn resource(kind: &str) -> ApiResource {
    ApiResource {
        group: "rbac.authorization.k8s.io".into(),
        version: "v1".into(),
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
    }
}

fn api_error(
    e: kube::Error,
    verb: &'static str,
    kind: &'static str,
    name: &str,
    namespace: &str,
) -> RbacError {
    match e {
        kube::Error::Api(s) if s.code == 403 => RbacError::Forbidden {
            verb,
            kind,
            name: name.into(),
            namespace: namespace.into(),
        },
        kube::Error::Api(s) => RbacError::Api {
            verb,
            kind,
            name: name.into(),
            namespace: namespace.into(),
            reason: format!("{} ({})", s.message, s.code),
        },
        other => RbacError::Api {
            verb,
            kind,
            name: name.into(),
            namespace: namespace.into(),
            reason: other.to_string(),
        },
    }
}

/// Creates `desired` (a Role or RoleBinding as JSON) or brings the existing object's
/// labels, owner references and `fields` to it with a merge patch; `merge` may combine
/// the existing object's value of a field with the desired one first (RoleBinding
/// subjects are kept additively). Returns whether anything was written.
async fn ensure(
    client: &kube::Client,
    kind: &'static str,
    desired: &Value,
    fields: &[&str],
    merge: impl Fn(&Value, &mut Value) -> Result<(), RbacError>,
) -> Result<bool, RbacError> {
    let name = desired["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = desired["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource(kind));
    for _ in 0..MAX_ATTEMPTS {
        let existing = api
            .get_opt(name)
            .await
            .map_err(|e| api_error(e, "get", kind, name, namespace))?;
        let Some(existing) = existing else {
            let obj: DynamicObject =
                serde_json::from_value(desired.clone()).map_err(|e| RbacError::Api {
                    verb: "create",
                    kind,
                    name: name.into(),
                    namespace: namespace.into(),
                    reason: e.to_string(),
                })?;
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => {
                    tracing::info!(kind, name, namespace, "created");
                    return Ok(true);
                }
                // Someone created it meanwhile: read it and patch instead.
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(api_error(e, "create", kind, name, namespace)),
            }
        };
        let current = serde_json::to_value(&existing).unwrap_or_default();
        let mut want = desired.clone();
        merge(&current, &mut want)?;
        let mut patch = json!({"metadata": {
            "resourceVersion": existing.metadata.resource_version,
        }});
        let mut differs = false;
        for label in want["metadata"]["labels"].as_object().into_iter().flatten() {
            if current["metadata"]["labels"][label.0] != *label.1 {
                patch["metadata"]["labels"][label.0] = label.1.clone();
                differs = true;
            }
        }
        if current["metadata"]["ownerReferences"] != want["metadata"]["ownerReferences"] {
            patch["metadata"]["ownerReferences"] = want["metadata"]["ownerReferences"].clone();
            differs = true;
        }
        for field in fields {
            if current[*field] != want[*field] {
                patch[*field] = want[*field].clone();
                differs = true;
            }
        }
        if !differs {
            return Ok(false);
        }
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(kind, name, namespace, "updated");
                return Ok(true);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::debug!(kind, name, namespace, "patch conflicted; reading again");
            }
            Err(e) => return Err(api_error(e, "patch", kind, name, namespace)),
        }
    }
    Err(RbacError::Conflict {
        kind,
        name: name.into(),
        namespace: namespace.into(),
    })
}

/// Creates or updates the Role and RoleBinding of `cluster` for `stores`.
pub async fn ensure_rbac(
    client: &kube::Client,
    cluster: &ClusterIdentity,
    stores: &[(String, ObjectStore)],
) -> Result<(), RbacError> {
    let role = rbac::role(cluster, stores);
    ensure(client, "Role", &role, &["rules"], |_, _| Ok(())).await?;
    let binding = rbac::role_binding(cluster);
    ensure(
        client,
        "RoleBinding",
        &binding,
        &["subjects"],
        |current, want| {
            if current["roleRef"] != want["roleRef"] {
                return Err(RbacError::RoleRefDiffers {
                    name: cluster.rbac_name(),
                    namespace: cluster.namespace.clone(),
                    found: format!(
                        "{} {}",
                        current["roleRef"]["kind"].as_str().unwrap_or("?"),
                        current["roleRef"]["name"].as_str().unwrap_or("?")
                    ),
                });
            }
            // Subjects others added stay; ours is added when missing.
            let mut subjects = current["subjects"].as_array().cloned().unwrap_or_default();
            let ours = rbac::subject(cluster);
            let present = subjects.iter().any(|s| {
                s["kind"] == ours["kind"]
                    && s["name"] == ours["name"]
                    && s["namespace"] == ours["namespace"]
            });
            if !present {
                subjects.push(ours);
            }
            want["subjects"] = Value::Array(subjects);
            Ok(())
        },
    )
    .await?;
    Ok(())
}

/// What [`fetch_stores`] found.
#[derive(Debug)]
pub enum Stores {
    /// Every named store, by name.
    All(Vec<(String, ObjectStore)>),
    /// This one does not exist (yet).
    Missing(String),
}

/// The ObjectStores `names` in `namespace`, read afresh.
pub async fn fetch_stores(
    client: &kube::Client,
    namespace: &str,
    names: &[String],
) -> Result<Stores, KubeError> {
    // No cache: a hook must see a store created a second ago.
    let access = KubeAccess::with_ttl(client.clone(), namespace, Duration::ZERO);
    let mut found = Vec::new();
    for name in names {
        match access.object_store(name).await {
            Ok(o) => found.push((name.clone(), o.store)),
            Err(KubeError::NotFound { .. }) => return Ok(Stores::Missing(name.clone())),
            Err(e) => return Err(e),
        }
    }
    Ok(Stores::All(found))
}

/// The ObjectStore names a Cluster refers to (archive, recovery, replica source), sorted.
pub fn referenced_stores(cluster: &Cluster) -> Vec<String> {
    let conf = PluginConfiguration::from_cluster(cluster);
    let mut names: Vec<String> = [
        conf.archive.as_ref(),
        conf.recovery.as_ref().ok(),
        conf.replica_source.as_ref().ok(),
    ]
    .into_iter()
    .flatten()
    .map(|s| s.object_store.clone())
    .collect();
    names.sort();
    names.dedup();
    names
}

/// The ReconcilerHooks service.
#[derive(Clone)]
pub struct ReconcilerService {
    kube: Option<kube::Client>,
}

impl ReconcilerService {
    /// The hooks, writing through `kube` (without it, Pre on a Cluster fails and says so).
    pub fn new(kube: Option<kube::Client>) -> Self {
        ReconcilerService { kube }
    }

    fn result(behavior: Behavior) -> Response<ReconcilerHooksResult> {
        // Upstream sends 0, which CloudNativePG may read as "no timed requeue": nothing
        // else wakes the Cluster when its ObjectStore appears, so ask for a retry.
        let requeue_after = if behavior == Behavior::Requeue {
            REQUEUE_AFTER_SECONDS
        } else {
            0
        };
        Response::new(ReconcilerHooksResult {
            behavior: behavior as i32,
            requeue_after,
        })
    }
}

#[tonic::async_trait]
impl ReconcilerHooks for ReconcilerService {
    async fn get_capabilities(
        &self,
        _: Request<ReconcilerHooksCapabilitiesRequest>,
    ) -> Result<Response<ReconcilerHooksCapabilitiesResult>, Status> {
        Ok(Response::new(ReconcilerHooksCapabilitiesResult {
            reconciler_capabilities: [Kind::Cluster, Kind::Backup]
                .into_iter()
                .map(|k| ReconcilerHooksCapability { kind: k as i32 })
                .collect(),
        }))
    }

    async fn pre(
        &self,
        request: Request<ReconcilerHooksRequest>,
    ) -> Result<Response<ReconcilerHooksResult>, Status> {
        let req = request.into_inner();
        let resource: Value = serde_json::from_slice(&req.resource_definition).map_err(|e| {
            Status::invalid_argument(format!("the resource_definition is not JSON: {e}"))
        })?;
        if resource["kind"] != "Cluster" {
            return Ok(Self::result(Behavior::Continue));
        }
        let json: Value = serde_json::from_slice(&req.cluster_definition).map_err(|e| {
            Status::invalid_argument(format!("the cluster_definition is not JSON: {e}"))
        })?;
        let cluster = Cluster::from_json(&req.cluster_definition)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let names = referenced_stores(&cluster);
        if names.is_empty() {
            return Ok(Self::result(Behavior::Continue));
        }
        let Some(identity) = ClusterIdentity::from_json(&json) else {
            return Err(Status::invalid_argument(
                "the cluster_definition lacks apiVersion, kind, metadata.name or metadata.namespace",
            ));
        };
        let Some(client) = &self.kube else {
            return Err(Status::failed_precondition(
                "the operator plugin runs without access to the Kubernetes API, so it cannot \
                 create the Role of the Cluster's Pods; run it in the cluster (or with KUBECONFIG)",
            ));
        };
        let stores = match fetch_stores(client, &identity.namespace, &names).await {
            Ok(Stores::All(s)) => s,
            Ok(Stores::Missing(name)) => {
                tracing::info!(cluster = %identity.name, namespace = %identity.namespace, store = %name, "ObjectStore not found; asking for a requeue");
                return Ok(Self::result(Behavior::Requeue));
            }
            Err(e) => return Err(e.grpc_status()),
        };
        ensure_rbac(client, &identity, &stores).await.map_err(|e| {
            tracing::error!(cluster = %identity.name, namespace = %identity.namespace, "{e}");
            e.grpc_status()
        })?;
        Ok(Self::result(Behavior::Continue))
    }

    async fn post(
        &self,
        _: Request<ReconcilerHooksRequest>,
    ) -> Result<Response<ReconcilerHooksResult>, Status> {
        Ok(Self::result(Behavior::Continue))
    }
}

/// The periodic pass that keeps Roles in step with their ObjectStores: every Role with
/// the [`rbac::CLUSTER_LABEL`] label, in every namespace, gets its rules recomputed from
/// the stores its first rule names, and is patched when they differ (a store that now
/// names another Secret, or none). Stands in for upstream's ObjectStore controller
/// without a watch: the latency is the period.
pub struct Resync {
    client: kube::Client,
    every: Duration,
}

impl Resync {
    /// A pass over the API behind `client` every `every`.
    pub fn new(client: kube::Client, every: Duration) -> Self {
        Resync { client, every }
    }

    /// Runs passes forever; with a `lease`, only while this replica holds it.
    pub async fn run(self, lease: Option<crate::leader::Lease>) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(lease) = &lease {
                match lease.try_acquire(&self.client).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!("cannot take the leader Lease: {e}");
                        continue;
                    }
                }
            }
            match resync_roles(&self.client).await {
                Ok(n) if n > 0 => {
                    tracing::info!(updated = n, "Roles re-synced with their ObjectStores")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("Role re-sync failed: {e}"),
            }
        }
    }
}

/// One re-sync pass; returns how many Roles were patched. A Role whose store is gone is
/// left as it is (the Cluster's next Pre asks for a requeue until it is back).
pub async fn resync_roles(client: &kube::Client) -> Result<usize, RbacError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource("Role"));
    let roles = api
        .list(&ListParams::default().labels(rbac::CLUSTER_LABEL))
        .await
        .map_err(|e| api_error(e, "list", "Role", "", ""))?;
    let mut updated = 0;
    for role in roles.items {
        let role = serde_json::to_value(&role).unwrap_or_default();
        let namespace = role["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = role["metadata"]["name"].as_str().unwrap_or_default();
        let names = rbac::role_store_names(&role);
        if names.is_empty() {
            continue;
        }
        let stores = match fetch_stores(client, namespace, &names).await {
            Ok(Stores::All(s)) => s,
            Ok(Stores::Missing(store)) => {
                tracing::debug!(role = name, namespace, store = %store, "store gone; Role left as is");
                continue;
            }
            Err(e) => {
                tracing::warn!(role = name, namespace, "{e}");
                continue;
            }
        };
        let secrets = rbac::secret_names(stores.iter().map(|(_, s)| s));
        // Only what `ensure` compares: were the Role deleted meanwhile, it is created
        // from this, and a create must not carry the old uid or resourceVersion.
        let meta = &role["metadata"];
        let desired = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace, "labels": meta["labels"],
                         "ownerReferences": meta["ownerReferences"]},
            "rules": rbac::rules(&names, &secrets),
        });
        // Labels and owner references are the Cluster hook's business; only rules here.
        if ensure(client, "Role", &desired, &["rules"], |_, _| Ok(())).await? {
            updated += 1;
        }
    }
    Ok(updated)
}
