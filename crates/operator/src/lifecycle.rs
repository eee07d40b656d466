//! OperatorLifecycle (reference 2.11): the sidecar `plugin-barman-cloud` injected into
//! CloudNativePG's instance Pods and recovery Jobs, answered as an RFC 6902 JSON Patch
//! (the diff of the mutated object against the one CloudNativePG sent).
//!
//! The mutation is pure ([`mutate_pod`], [`mutate_job`], [`lifecycle_patch`]): the
//! Cluster JSON, the object JSON, the ObjectStores the Cluster names (already fetched)
//! and the sidecar image in, the mutated object out. [`LifecycleService`] is the gRPC
//! service around it; it GETs the named ObjectStores from Kubernetes on every call, so a
//! change of a store's sidecar settings shows in CloudNativePG's EVALUATE at once and
//! rolls the Pods.
//!
//! ```
//! use barrelman_operator::lifecycle::{lifecycle_patch, ClusterView, Stores};
//! let cluster = ClusterView::from_json(br#"{"metadata": {"name": "pg", "namespace": "db"}}"#)?;
//! // A Cluster that names no ObjectStore: nothing to inject, an empty patch.
//! let patch = lifecycle_patch(&cluster, br#"{"kind": "Pod"}"#, &Stores::new(), "img")?;
//! assert!(patch.is_empty());
//! # Ok::<(), barrelman_operator::lifecycle::LifecycleError>(())
//! ```

mod podspec;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use barrelman_cnpg::config::{Cluster, PluginConfiguration, StoreRef};
use barrelman_cnpg::k8s::{KubeAccess, KubeError};
use barrelman_cnpg::proto::operator_lifecycle::operator_lifecycle_server::OperatorLifecycle;
use barrelman_cnpg::proto::operator_lifecycle::{
    operator_operation_type::Type as OperationType, OperatorLifecycleCapabilities,
    OperatorLifecycleCapabilitiesRequest, OperatorLifecycleCapabilitiesResponse,
    OperatorLifecycleRequest, OperatorLifecycleResponse, OperatorOperationType,
};
use barrelman_core::error::{Classified, ErrorClass};
use barrelman_core::objectstore::{InstanceSidecarConfiguration, ObjectStore};
use serde_json::{json, Value};
use tonic::{Request, Response, Status};

use podspec::{inject, InjectError, Sidecar};

/// The sidecar container's name (an init container with `restartPolicy: Always`).
pub const SIDECAR_CONTAINER: &str = "plugin-barman-cloud";
/// The instance Pod's main container.
pub const POSTGRES_CONTAINER: &str = "postgres";
/// The emptyDir volume holding the plugin socket.
pub const PLUGINS_VOLUME: &str = "plugins";
/// Where the `plugins` volume is mounted (the instance manager scans it for sockets).
pub const PLUGINS_PATH: &str = "/plugins";
/// The projected volume of the stores' `endpointCA` bundles.
pub const CERTIFICATES_VOLUME: &str = "barman-certificates";
/// Where `barman-certificates` is mounted in the sidecar; each bundle is at
/// `<path>/<ObjectStore name>/barman-ca.crt`.
pub const CERTIFICATES_PATH: &str = "/barman-certificates";
/// The file name of one store's CA bundle inside its folder.
pub const CERTIFICATE_FILE: &str = "barman-ca.crt";
/// The sidecar's WAL prefetch spool (`SPOOL_DIRECTORY`), on CloudNativePG's scratch volume.
pub const SPOOL_DIRECTORY: &str = "/controller/wal-restore-spool";
/// The startup probe's command. An exec probe does not go through the image's
/// entrypoint, so it names the binary by its path in the image (see the Containerfile).
pub const HEALTHCHECK_COMMAND: [&str; 4] =
    ["/usr/local/bin/barrelman", "cnpg", "healthcheck", "unix"];
/// The `…/jobRole` label values of the Jobs that get the restore sidecar.
pub const RECOVERY_JOB_ROLES: [&str; 2] = ["full-recovery", "snapshot-recovery"];

/// The ObjectStores a Cluster names, by `metadata.name` (all in the Cluster's namespace).
pub type Stores = BTreeMap<String, ObjectStore>;

/// Why a lifecycle hook cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The `cluster_definition` is not JSON of an object.
    #[error("the cluster_definition sent by CloudNativePG is not a Cluster in JSON: {0}")]
    Cluster(String),
    /// The `object_definition` is not JSON of the kind it claims to be.
    #[error("the object_definition sent by CloudNativePG is not a {kind} in JSON: {reason}")]
    Object {
        /// `Pod`, `Job`, or `object` when even the kind is unknown.
        kind: &'static str,
        /// What does not fit.
        reason: String,
    },
    /// The object is of a kind the plugin did not ask for.
    #[error(
        "the object_definition sent by CloudNativePG is a {0:?}; this plugin only mutates \
         Pods and batch Jobs (its GetCapabilities)"
    )]
    UnsupportedKind(String),
    /// The Pod or Job has no container to run the sidecar beside.
    #[error(
        "the {kind} {name:?} has no container named {container:?}, so the sidecar cannot be \
         injected beside it; this CloudNativePG version lays Pods out differently than the \
         plugin expects"
    )]
    NoMainContainer {
        /// `Pod` or `Job`.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// The container looked for.
        container: String,
    },
    /// The store the Cluster names was not handed to the mutation.
    #[error(
        "the ObjectStore {store:?} named by the Cluster {cluster:?} was not found; create it \
         in the Cluster's namespace or fix the Cluster's barmanObjectName"
    )]
    StoreMissing {
        /// The Cluster's name.
        cluster: String,
        /// The ObjectStore's name.
        store: String,
    },
    /// Reading an ObjectStore from Kubernetes failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The service has no Kubernetes client but the Cluster names stores.
    #[error(
        "the operator plugin has no Kubernetes client to read the ObjectStores {stores:?} the \
         Cluster {cluster:?} names; start it inside Kubernetes or with a kubeconfig"
    )]
    NoKubernetes {
        /// The Cluster's name.
        cluster: String,
        /// The store names.
        stores: Vec<String>,
    },
}

impl Classified for LifecycleError {
    fn class(&self) -> ErrorClass {
        match self {
            LifecycleError::Cluster(_)
            | LifecycleError::Object { .. }
            | LifecycleError::UnsupportedKind(_)
            | LifecycleError::NoMainContainer { .. } => ErrorClass::Input,
            LifecycleError::StoreMissing { .. } => ErrorClass::NotFound,
            LifecycleError::Kube(KubeError::NotFound { .. }) => ErrorClass::NotFound,
            LifecycleError::Kube(KubeError::Forbidden { .. })
            | LifecycleError::Kube(KubeError::SecretForbidden { .. }) => ErrorClass::Denied,
            LifecycleError::Kube(KubeError::Invalid { .. }) => ErrorClass::Input,
            LifecycleError::Kube(_) | LifecycleError::NoKubernetes { .. } => {
                ErrorClass::Unavailable
            }
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        match self {
            LifecycleError::Kube(KubeError::Forbidden { .. }) => Some(Cow::Borrowed(
                "give the operator plugin's ServiceAccount get on objectstores (deploy/manifest.yaml)",
            )),
            _ => None,
        }
    }
}

impl LifecycleError {
    /// The gRPC status CloudNativePG gets: the sentence, with a code from the class.
    pub fn grpc_status(&self) -> Status {
        let message = self.to_string();
        match self.class() {
            ErrorClass::Input => Status::invalid_argument(message),
            ErrorClass::NotFound => Status::not_found(message),
            ErrorClass::Denied => Status::permission_denied(message),
            ErrorClass::Unavailable => Status::unavailable(message),
            _ => Status::internal(message),
        }
    }
}

/// The Cluster as the lifecycle hooks read it: the plugin's store resolution (shared
/// with the sidecar, `barrelman_cnpg::config`) plus the raw JSON for the fields only
/// the injection needs (`spec.imagePullPolicy`, the API group).
#[derive(Debug, Clone)]
pub struct ClusterView {
    raw: Value,
    cluster: Cluster,
    config: PluginConfiguration,
}

impl ClusterView {
    /// Decodes a `cluster_definition` leniently (unknown fields ignored).
    pub fn from_json(bytes: &[u8]) -> Result<ClusterView, LifecycleError> {
        let raw: Value =
            serde_json::from_slice(bytes).map_err(|e| LifecycleError::Cluster(e.to_string()))?;
        if !raw.is_object() {
            return Err(LifecycleError::Cluster("not a JSON object".into()));
        }
        let cluster =
            Cluster::from_json(bytes).map_err(|e| LifecycleError::Cluster(e.to_string()))?;
        let config = PluginConfiguration::from_cluster(&cluster);
        Ok(ClusterView {
            raw,
            cluster,
            config,
        })
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.cluster.metadata.name
    }

    /// `metadata.namespace`: where the ObjectStores are looked up.
    pub fn namespace(&self) -> &str {
        &self.cluster.metadata.namespace
    }

    /// The three store references (archive, recovery, replica source).
    pub fn configuration(&self) -> &PluginConfiguration {
        &self.config
    }

    /// The names of every ObjectStore the Cluster refers to, sorted, once each.
    pub fn referenced_stores(&self) -> Vec<String> {
        let mut names: Vec<String> = [
            self.config.archive.as_ref(),
            self.config.recovery.as_ref().ok(),
            self.config.replica_source.as_ref().ok(),
        ]
        .into_iter()
        .flatten()
        .map(|r| r.object_store.clone())
        .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The API group and version from `apiVersion` (`postgresql.cnpg.io`, `v1`), which
    /// the sidecar needs to reach Clusters of a CloudNativePG fork.
    fn group_version(&self) -> (&str, &str) {
        match self.cluster.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", self.cluster.api_version.as_str()),
        }
    }

    fn image_pull_policy(&self) -> Option<String> {
        self.raw
            .pointer("/spec/imagePullPolicy")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

/// The sidecar's role-dependent parts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Instance,
    Restore,
}

fn store<'a>(
    cluster: &ClusterView,
    stores: &'a Stores,
    r: Option<&StoreRef>,
) -> Result<Option<&'a ObjectStore>, LifecycleError> {
    let Some(r) = r else { return Ok(None) };
    stores
        .get(&r.object_store)
        .map(Some)
        .ok_or_else(|| LifecycleError::StoreMissing {
            cluster: cluster.name().to_string(),
            store: r.object_store.clone(),
        })
}

fn sidecar_conf(s: &ObjectStore) -> Option<&InstanceSidecarConfiguration> {
    s.spec.instance_sidecar_configuration.as_ref()
}

fn sidecar(
    cluster: &ClusterView,
    stores: &Stores,
    image: &str,
    role: Role,
) -> Result<Sidecar, LifecycleError> {
    let config = &cluster.config;
    let archive = store(cluster, stores, config.archive.as_ref())?;
    let recovery = match role {
        // The recovery source is often deleted once the Cluster has been restored: an
        // instance Pod does without its settings rather than never starting again.
        Role::Instance => config
            .recovery
            .as_ref()
            .ok()
            .and_then(|r| stores.get(&r.object_store)),
        Role::Restore => store(cluster, stores, config.recovery.as_ref().ok())?,
    };
    let replica = store(cluster, stores, config.replica_source.as_ref().ok())?;

    let (group, version) = cluster.group_version();
    let mut env = vec![
        json!({"name": "NAMESPACE", "value": cluster.namespace()}),
        json!({"name": "CLUSTER_NAME", "value": cluster.name()}),
        json!({"name": "SPOOL_DIRECTORY", "value": SPOOL_DIRECTORY}),
        json!({"name": "CUSTOM_CNPG_GROUP", "value": group}),
        json!({"name": "CUSTOM_CNPG_VERSION", "value": version}),
    ];
    for s in [archive, recovery, replica].into_iter().flatten() {
        env.extend(sidecar_conf(s).map(|c| c.env.clone()).unwrap_or_default());
    }

    let mut certificates = Vec::new();
    for name in cluster.referenced_stores() {
        let ca = stores
            .get(&name)
            .and_then(|s| s.spec.configuration.endpoint_ca.as_ref());
        if let Some(ca) = ca {
            certificates.push(json!({"secret": {
                "name": ca.name,
                "items": [{"key": ca.key, "path": format!("{name}/{CERTIFICATE_FILE}")}],
            }}));
        }
    }

    // One store shapes the container: archive > recovery > replica source for the
    // instance (the designated primary of an archiving replica cluster uses its own
    // archive's settings); the recovery store alone for the restore Job.
    let shaping = match role {
        Role::Instance => archive.or(recovery).or(replica),
        Role::Restore => recovery,
    };
    let shaping = shaping.and_then(sidecar_conf);
    let resources = shaping
        .and_then(|c| c.resources.clone())
        .filter(|r| !r.is_null());
    let args = match role {
        Role::Instance => {
            let mut args = vec!["instance".to_string()];
            if let Some(c) = shaping {
                args.extend(c.additional_container_args.iter().cloned());
                if let Some(level) = c.log_level.as_deref().filter(|l| !l.is_empty()) {
                    args.push(format!("--log-level={level}"));
                }
            }
            args
        }
        Role::Restore => vec!["restore".to_string()],
    };

    Ok(Sidecar {
        image: image.to_string(),
        pull_policy: cluster.image_pull_policy(),
        args,
        env,
        certificates,
        resources,
    })
}

fn object_name(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn inject_into(
    obj: &mut Value,
    spec_pointer: &str,
    kind: &'static str,
    main: &str,
    sidecar: &Sidecar,
) -> Result<(), LifecycleError> {
    let name = object_name(obj);
    let spec = obj
        .pointer_mut(spec_pointer)
        .ok_or_else(|| LifecycleError::NoMainContainer {
            kind,
            name: name.clone(),
            container: main.to_string(),
        })?;
    inject(spec, main, sidecar).map_err(|e| match e {
        InjectError::NoMainContainer => LifecycleError::NoMainContainer {
            kind,
            name,
            container: main.to_string(),
        },
        InjectError::Shape(field) => LifecycleError::Object {
            kind,
            reason: format!("{spec_pointer}/{field} is neither a list nor an object"),
        },
    })
}

/// The instance Pod with the sidecar injected, or `None` when this Pod gets none: the
/// Cluster names neither an archive store nor a replica-source store (a recovery-only
/// Cluster needs the sidecar only in its recovery Job). The recovery store may be absent
/// from `stores` (deleted after the restore): the Pod is then injected without its env
/// and CA; an absent archive or replica-source store is an error.
pub fn mutate_pod(
    cluster: &ClusterView,
    pod: &Value,
    stores: &Stores,
    sidecar_image: &str,
) -> Result<Option<Value>, LifecycleError> {
    let config = &cluster.config;
    if config.archive.is_none() && config.replica_source.is_err() {
        return Ok(None);
    }
    let sidecar = sidecar(cluster, stores, sidecar_image, Role::Instance)?;
    let mut mutated = pod.clone();
    inject_into(&mut mutated, "/spec", "Pod", POSTGRES_CONTAINER, &sidecar)?;
    Ok(Some(mutated))
}

/// The label value of `spec.template.metadata.labels` whose key ends in `/jobRole`
/// (CloudNativePG's `cnpg.io/jobRole`, or a fork's group).
pub fn job_role(job: &Value) -> Option<&str> {
    job.pointer("/spec/template/metadata/labels")?
        .as_object()?
        .iter()
        .find(|(k, _)| k.ends_with("/jobRole"))
        .and_then(|(_, v)| v.as_str())
}

/// The recovery Job with the restore sidecar injected, or `None` when this Job gets
/// none: the Cluster does not recover through this plugin, or the Job is not a
/// `full-recovery` / `snapshot-recovery` Job.
pub fn mutate_job(
    cluster: &ClusterView,
    job: &Value,
    stores: &Stores,
    sidecar_image: &str,
) -> Result<Option<Value>, LifecycleError> {
    if cluster.config.recovery.is_err() {
        return Ok(None);
    }
    let Some(role) = job_role(job).filter(|r| RECOVERY_JOB_ROLES.contains(r)) else {
        return Ok(None);
    };
    let role = role.to_string();
    let sidecar = sidecar(cluster, stores, sidecar_image, Role::Restore)?;
    let mut mutated = job.clone();
    inject_into(&mut mutated, "/spec/template/spec", "Job", &role, &sidecar)?;
    Ok(Some(mutated))
}

/// The RFC 6902 patch turning `original` into `mutated`, as JSON bytes; empty when
/// they are equal (CloudNativePG reads an empty patch as "no change").
pub fn json_patch(original: &Value, mutated: &Value) -> Vec<u8> {
    let patch = json_patch::diff(original, mutated);
    if patch.0.is_empty() {
        return Vec::new();
    }
    // A Patch is a list of plain operations: serializing it cannot fail.
    serde_json::to_vec(&patch).unwrap_or_default()
}

/// The whole hook on already fetched stores: decodes `object` (a Pod or a Job by its
/// `kind`), mutates it and returns the patch bytes, empty when the Cluster names no
/// store or the object gets no sidecar.
pub fn lifecycle_patch(
    cluster: &ClusterView,
    object: &[u8],
    stores: &Stores,
    sidecar_image: &str,
) -> Result<Vec<u8>, LifecycleError> {
    if cluster.config.validate().is_err() {
        return Ok(Vec::new());
    }
    let obj: Value = serde_json::from_slice(object).map_err(|e| LifecycleError::Object {
        kind: "object",
        reason: e.to_string(),
    })?;
    let Some(kind) = obj.get("kind").and_then(Value::as_str) else {
        return Err(LifecycleError::Object {
            kind: "object",
            reason: "it has no \"kind\" field".into(),
        });
    };
    let mutated = match kind {
        "Pod" => mutate_pod(cluster, &obj, stores, sidecar_image)?,
        "Job" => mutate_job(cluster, &obj, stores, sidecar_image)?,
        other => return Err(LifecycleError::UnsupportedKind(other.to_string())),
    };
    Ok(mutated.map(|m| json_patch(&obj, &m)).unwrap_or_default())
}

/// The OperatorLifecycle gRPC service of the operator-side plugin.
#[derive(Clone)]
pub struct LifecycleService {
    client: Option<kube::Client>,
    sidecar_image: String,
}

impl std::fmt::Debug for LifecycleService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifecycleService")
            .field("kubernetes", &self.client.is_some())
            .field("sidecar_image", &self.sidecar_image)
            .finish()
    }
}

impl LifecycleService {
    /// A service injecting `sidecar_image` (the operator's `SIDECAR_IMAGE`).
    ///
    /// `kube` supplies the Kubernetes client (its namespace and cache do not matter:
    /// each Cluster's stores are read in the Cluster's namespace, uncached). Without
    /// it, only Clusters that name no ObjectStore can be answered.
    pub fn new(kube: Option<Arc<KubeAccess>>, sidecar_image: String) -> LifecycleService {
        Self::with_client(kube.map(|k| k.client().clone()), sidecar_image)
    }

    /// The same from a bare Kubernetes client.
    pub fn with_client(client: Option<kube::Client>, sidecar_image: String) -> LifecycleService {
        LifecycleService {
            client,
            sidecar_image,
        }
    }

    /// GETs every store `cluster` names.
    async fn fetch_stores(&self, cluster: &ClusterView) -> Result<Stores, LifecycleError> {
        let names = cluster.referenced_stores();
        let mut stores = Stores::new();
        if names.is_empty() {
            return Ok(stores);
        }
        let Some(client) = &self.client else {
            return Err(LifecycleError::NoKubernetes {
                cluster: cluster.name().to_string(),
                stores: names,
            });
        };
        // No cache: the operator must see a store's new sidecar settings at once.
        let access = KubeAccess::with_ttl(client.clone(), cluster.namespace(), Duration::ZERO);
        for name in names {
            match access.object_store(&name).await {
                Ok(fetched) => {
                    stores.insert(name, fetched.store);
                }
                // Left out: the mutation says which store is missing when it needs it
                // (a deleted recovery source does not stop instance Pods).
                Err(KubeError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(stores)
    }

    /// One hook call, with typed errors.
    pub async fn hook(
        &self,
        request: &OperatorLifecycleRequest,
    ) -> Result<Vec<u8>, LifecycleError> {
        let cluster = ClusterView::from_json(&request.cluster_definition)?;
        if cluster.config.validate().is_err() {
            return Ok(Vec::new());
        }
        let stores = self.fetch_stores(&cluster).await?;
        lifecycle_patch(
            &cluster,
            &request.object_definition,
            &stores,
            &self.sidecar_image,
        )
    }
}

fn capability(group: &str, kind: &str, ops: &[OperationType]) -> OperatorLifecycleCapabilities {
    OperatorLifecycleCapabilities {
        group: group.into(),
        kind: kind.into(),
        operation_types: ops
            .iter()
            .map(|t| OperatorOperationType { r#type: *t as i32 })
            .collect(),
    }
}

#[tonic::async_trait]
impl OperatorLifecycle for LifecycleService {
    async fn get_capabilities(
        &self,
        _: Request<OperatorLifecycleCapabilitiesRequest>,
    ) -> Result<Response<OperatorLifecycleCapabilitiesResponse>, Status> {
        Ok(Response::new(OperatorLifecycleCapabilitiesResponse {
            lifecycle_capabilities: vec![
                capability("", "Pod", &[OperationType::Create, OperationType::Evaluate]),
                capability("batch", "Job", &[OperationType::Create]),
            ],
        }))
    }

    async fn lifecycle_hook(
        &self,
        request: Request<OperatorLifecycleRequest>,
    ) -> Result<Response<OperatorLifecycleResponse>, Status> {
        let request = request.into_inner();
        if request.operation_type.is_none() {
            return Err(Status::invalid_argument(
                "the lifecycle request has no operation_type; CloudNativePG always sets one",
            ));
        }
        match self.hook(&request).await {
            Ok(json_patch) => Ok(Response::new(OperatorLifecycleResponse { json_patch })),
            Err(e) => {
                tracing::warn!(error = %e, "lifecycle hook failed");
                Err(e.grpc_status())
            }
        }
    }
}
