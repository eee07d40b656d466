//! Kubernetes access for the sidecars: ObjectStores and Secrets by GET, with a short
//! cache, never watch, and the ObjectStore's recovery window written through its
//! `/status` subresource (`update` on `objectstores/status`), retried on 409 Conflict.
//! For the retention loop: the Cluster by GET, CloudNativePG Backups by LIST and
//! DELETE, and Events by POST, as plain requests (no controller runtime).
//!
//! Secret values are kept in [`SecretData`], whose `Debug` never shows them, and no error
//! here carries a value: only kinds, namespaces and names.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use barrelman_core::objectstore::{ObjectStore, SecretKeySelector};
use barrelman_storage::config::{SecretError, SecretSource};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::Client;

/// How long a fetched object is reused before it is read again (upstream's TTL).
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// The gRPC message upstream answers (FailedPrecondition) while the operator has not yet
/// granted the sidecar access to a credentials Secret.
pub const SECRET_FORBIDDEN_MESSAGE: &str =
    "no permission to download the backup credentials, retrying";

/// The ObjectStore resource.
fn object_store_resource() -> ApiResource {
    ApiResource {
        group: "barmancloud.cnpg.io".into(),
        version: "v1".into(),
        api_version: "barmancloud.cnpg.io/v1".into(),
        kind: "ObjectStore".into(),
        plural: "objectstores".into(),
    }
}

/// Why an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The API refused a credentials Secret (403): RBAC not reconciled yet.
    #[error(
        "no permission to read the Secret {name:?} in namespace {namespace:?}: the plugin's \
         Role does not grant it yet (the operator-side plugin adds it; retrying)"
    )]
    SecretForbidden {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
    },
    /// The API refused another object (403).
    #[error("no permission to read the {kind} {name:?} in namespace {namespace:?}: check the sidecar's Role")]
    Forbidden {
        /// Kind.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The object does not exist (404).
    #[error("the {kind} {name:?} does not exist in namespace {namespace:?}; create it or fix the Cluster's reference")]
    NotFound {
        /// Kind.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The object is not what its kind should look like.
    #[error("the {kind} {name:?} in namespace {namespace:?} cannot be read: {reason}")]
    Invalid {
        /// Kind.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// What is wrong (field names, never values).
        reason: String,
    },
    /// Any other API answer or transport failure.
    #[error("reading the {kind} {name:?} in namespace {namespace:?} from the Kubernetes API failed: {reason}")]
    Api {
        /// Kind.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The API's status message or the transport error.
        reason: String,
    },
    /// No client could be built.
    #[error("cannot set up the Kubernetes client: {0}")]
    Client(String),
}

impl KubeError {
    /// The gRPC status an RPC answers with this error: FailedPrecondition with upstream's
    /// message for a forbidden Secret, else UNKNOWN with the sentence (as upstream's
    /// plain errors surface).
    pub fn grpc_status(&self) -> tonic::Status {
        match self {
            KubeError::SecretForbidden { .. } => {
                tonic::Status::failed_precondition(SECRET_FORBIDDEN_MESSAGE)
            }
            other => tonic::Status::unknown(other.to_string()),
        }
    }

    fn from_kube(e: kube::Error, kind: &'static str, namespace: &str, name: &str) -> KubeError {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        match e {
            kube::Error::Api(s) if s.code == 403 && kind == "Secret" => {
                KubeError::SecretForbidden { namespace, name }
            }
            kube::Error::Api(s) if s.code == 403 => KubeError::Forbidden {
                kind,
                namespace,
                name,
            },
            kube::Error::Api(s) if s.code == 404 => KubeError::NotFound {
                kind,
                namespace,
                name,
            },
            kube::Error::Api(s) => KubeError::Api {
                kind,
                namespace,
                name,
                reason: format!("{} ({})", s.message, s.code),
            },
            // Decoding errors name the field that did not fit; a Secret's bytes are not echoed.
            kube::Error::SerdeError(e) => KubeError::Invalid {
                kind,
                namespace,
                name,
                reason: e.to_string(),
            },
            other => KubeError::Api {
                kind,
                namespace,
                name,
                reason: other.to_string(),
            },
        }
    }
}

/// A Secret's `data`, decoded. `Debug` lists the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretData(BTreeMap<String, Vec<u8>>);

impl SecretData {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// The keys present.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretData")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// An ObjectStore as read from the API: the typed spec the core uses for `--config`,
/// and the raw status and resourceVersion for status updates.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectStoreObject {
    /// The typed resource.
    pub store: ObjectStore,
    /// `status` as JSON (`serverRecoveryWindow`), `Null` when absent.
    pub status: serde_json::Value,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
}

/// A TTL cache of one kind of object, by name. Only successes are kept, so a Secret
/// that was forbidden is asked again on the next call.
#[derive(Debug)]
struct TtlCache<T> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, T)>>,
}

impl<T: Clone> TtlCache<T> {
    fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, name: &str) -> Option<T> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(name)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, name: &str, value: T) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        entries.insert(name.to_string(), (Instant::now(), value));
    }
}

/// Reads ObjectStores and Secrets of one namespace.
pub struct KubeAccess {
    client: Client,
    namespace: String,
    object_stores: TtlCache<ObjectStoreObject>,
    secrets: TtlCache<SecretData>,
}

impl std::fmt::Debug for KubeAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeAccess")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl KubeAccess {
    /// Access through `client` to `namespace`, with the default [`CACHE_TTL`].
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self::with_ttl(client, namespace, CACHE_TTL)
    }

    /// Same, with another cache lifetime.
    pub fn with_ttl(client: Client, namespace: impl Into<String>, ttl: Duration) -> Self {
        KubeAccess {
            client,
            namespace: namespace.into(),
            object_stores: TtlCache::new(ttl),
            secrets: TtlCache::new(ttl),
        }
    }

    /// A client as `kube` infers it: in-cluster service account, else `KUBECONFIG` or
    /// `~/.kube/config` (kube reads those itself). Must run inside a tokio runtime.
    pub async fn infer(namespace: impl Into<String>) -> Result<Self, KubeError> {
        let config = kube::Config::infer()
            .await
            .map_err(|e| KubeError::Client(e.to_string()))?;
        let client = Client::try_from(config).map_err(|e| KubeError::Client(e.to_string()))?;
        Ok(Self::new(client, namespace))
    }

    /// A client for the API server at `url` without credentials (tests, `kubectl proxy`).
    /// Must run inside a tokio runtime.
    pub fn for_url(
        url: &str,
        namespace: impl Into<String>,
        ttl: Duration,
    ) -> Result<Self, KubeError> {
        let uri = url
            .parse()
            .map_err(|e| KubeError::Client(format!("{url:?} is not a URL: {e}")))?;
        let client = Client::try_from(kube::Config::new(uri))
            .map_err(|e| KubeError::Client(e.to_string()))?;
        Ok(Self::with_ttl(client, namespace, ttl))
    }

    /// The namespace read.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The underlying client, for the status updates and events of later steps.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The ObjectStore `name`, from the cache when fetched less than the TTL ago.
    pub async fn object_store(&self, name: &str) -> Result<ObjectStoreObject, KubeError> {
        if let Some(hit) = self.object_stores.get(name) {
            return Ok(hit);
        }
        const KIND: &str = "ObjectStore";
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &object_store_resource(),
        );
        let obj = api
            .get(name)
            .await
            .map_err(|e| KubeError::from_kube(e, KIND, &self.namespace, name))?;
        let resource_version = obj.metadata.resource_version.clone();
        let mut json = serde_json::to_value(&obj).map_err(|e| KubeError::Invalid {
            kind: KIND,
            namespace: self.namespace.clone(),
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        let status = json
            .as_object_mut()
            .and_then(|o| o.remove("status"))
            .unwrap_or_default();
        let store: ObjectStore = serde_json::from_value(json).map_err(|e| KubeError::Invalid {
            kind: KIND,
            namespace: self.namespace.clone(),
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        let fetched = ObjectStoreObject {
            store,
            status,
            resource_version,
        };
        self.object_stores.put(name, fetched.clone());
        Ok(fetched)
    }

    /// Changes `status.serverRecoveryWindow[server]` of the ObjectStore `name` through
    /// the `/status` subresource: reads the object afresh (never from the cache),
    /// lets `change` edit that server's entry (a JSON object) and writes it back with
    /// the resourceVersion read, reading and trying again when the API answers 409
    /// Conflict (at most 5 times), as upstream's retry-on-conflict does.
    pub async fn update_recovery_window(
        &self,
        name: &str,
        server: &str,
        change: impl Fn(&mut serde_json::Map<String, serde_json::Value>),
    ) -> Result<(), KubeError> {
        const KIND: &str = "ObjectStore";
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &object_store_resource(),
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let obj = api
                .get(name)
                .await
                .map_err(|e| KubeError::from_kube(e, KIND, &self.namespace, name))?;
            let mut json = serde_json::to_value(&obj).map_err(|e| KubeError::Invalid {
                kind: KIND,
                namespace: self.namespace.clone(),
                name: name.to_string(),
                reason: e.to_string(),
            })?;
            let Some(root) = json.as_object_mut() else {
                return Err(KubeError::Invalid {
                    kind: KIND,
                    namespace: self.namespace.clone(),
                    name: name.to_string(),
                    reason: "not a JSON object".into(),
                });
            };
            let status = object_entry(root, "status");
            let windows = object_entry(status, "serverRecoveryWindow");
            change(object_entry(windows, server));
            let body: DynamicObject =
                serde_json::from_value(json).map_err(|e| KubeError::Invalid {
                    kind: KIND,
                    namespace: self.namespace.clone(),
                    name: name.to_string(),
                    reason: e.to_string(),
                })?;
            match api
                .replace_status(name, &kube::api::PostParams::default(), &body)
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < 5 => {
                    tracing::debug!(store = name, attempt, "status update conflicted; retrying");
                }
                Err(e) => return Err(KubeError::from_kube(e, KIND, &self.namespace, name)),
            }
        }
    }

    /// CloudNativePG's `kind` (`Cluster`, `Backup`) in the API group and version
    /// `api` (see [`crate::Settings::cnpg_api`]).
    fn cnpg_resource(api: (&str, &str), kind: &str, plural: &str) -> ApiResource {
        ApiResource {
            group: api.0.into(),
            version: api.1.into(),
            api_version: format!("{}/{}", api.0, api.1),
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    /// The Cluster `name` as JSON, read afresh (never cached: the retention loop reads
    /// it once per cycle and must see the current primary).
    pub async fn cluster(
        &self,
        api: (&str, &str),
        name: &str,
    ) -> Result<serde_json::Value, KubeError> {
        const KIND: &str = "Cluster";
        let res = Self::cnpg_resource(api, KIND, "clusters");
        let obj = Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.namespace, &res)
            .get(name)
            .await
            .map_err(|e| KubeError::from_kube(e, KIND, &self.namespace, name))?;
        serde_json::to_value(&obj).map_err(|e| KubeError::Invalid {
            kind: KIND,
            namespace: self.namespace.clone(),
            name: name.to_string(),
            reason: e.to_string(),
        })
    }

    /// Every CloudNativePG Backup of the namespace, as JSON (one LIST).
    pub async fn backups(&self, api: (&str, &str)) -> Result<Vec<serde_json::Value>, KubeError> {
        const KIND: &str = "Backup";
        let res = Self::cnpg_resource(api, KIND, "backups");
        let list =
            Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.namespace, &res)
                .list(&kube::api::ListParams::default())
                .await
                .map_err(|e| KubeError::from_kube(e, KIND, &self.namespace, "(all)"))?;
        list.items
            .iter()
            .map(|o| {
                serde_json::to_value(o).map_err(|e| KubeError::Invalid {
                    kind: KIND,
                    namespace: self.namespace.clone(),
                    name: o.metadata.name.clone().unwrap_or_default(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// Deletes the CloudNativePG Backup `name`; one already gone counts as deleted.
    pub async fn delete_backup(&self, api: (&str, &str), name: &str) -> Result<(), KubeError> {
        const KIND: &str = "Backup";
        let res = Self::cnpg_resource(api, KIND, "backups");
        match Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.namespace, &res)
            .delete(name, &kube::api::DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(KubeError::from_kube(e, KIND, &self.namespace, name)),
        }
    }

    /// Creates the core/v1 Event `event` in the namespace.
    pub async fn post_event(
        &self,
        event: &k8s_openapi::api::core::v1::Event,
    ) -> Result<(), KubeError> {
        let api: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), &self.namespace);
        api.create(&kube::api::PostParams::default(), event)
            .await
            .map_err(|e| KubeError::from_kube(e, "Event", &self.namespace, "(new)"))?;
        Ok(())
    }

    /// The Secret `name`'s data, from the cache when fetched less than the TTL ago.
    pub async fn secret(&self, name: &str) -> Result<SecretData, KubeError> {
        if let Some(hit) = self.secrets.get(name) {
            return Ok(hit);
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret = api
            .get(name)
            .await
            .map_err(|e| KubeError::from_kube(e, "Secret", &self.namespace, name))?;
        let data = SecretData(
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
        );
        self.secrets.put(name, data.clone());
        Ok(data)
    }
}

/// Secret values straight from the Kubernetes API (through the cache) into the storage
/// settings: never through the process environment, never into a message. A Secret the
/// API refuses comes back as [`SecretError::Unreadable`] holding the [`KubeError`], so
/// callers can answer FailedPrecondition ([`forbidden_secret`]).
impl SecretSource for KubeAccess {
    fn read<'a>(
        &'a self,
        selector: &'a SecretKeySelector,
        purpose: &'a str,
    ) -> BoxFuture<'a, Result<String, SecretError>> {
        Box::pin(async move {
            let data = match self.secret(&selector.name).await {
                Ok(d) => d,
                Err(KubeError::NotFound { namespace, .. }) => {
                    return Err(SecretError::SecretMissing {
                        secret: selector.name.clone(),
                        purpose: purpose.to_string(),
                        expected: format!("no such Secret in namespace {namespace:?}"),
                    })
                }
                Err(e) => {
                    return Err(SecretError::Unreadable {
                        secret: selector.name.clone(),
                        key: selector.key.clone(),
                        source: Box::new(e),
                    })
                }
            };
            let value = data
                .get(&selector.key)
                .ok_or_else(|| SecretError::KeyMissing {
                    secret: selector.name.clone(),
                    key: selector.key.clone(),
                    purpose: purpose.to_string(),
                    keys: data.keys().map(str::to_string).collect(),
                })?;
            String::from_utf8(value.to_vec()).map_err(|_| SecretError::NotText {
                secret: selector.name.clone(),
                key: selector.key.clone(),
            })
        })
    }
}

/// The JSON object under `key` of `map`, created (or replacing a non-object) as needed.
fn object_entry<'a>(
    map: &'a mut serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> &'a mut serde_json::Map<String, serde_json::Value> {
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    if !slot.is_object() {
        *slot = serde_json::Value::Object(Default::default());
    }
    match slot {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// True when `e` (or an error it wraps) is a credentials Secret the API refused: the
/// RBAC the operator-side plugin grants is not in place yet.
pub fn forbidden_secret(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(KubeError::SecretForbidden { .. }) = err.downcast_ref::<KubeError>() {
            return true;
        }
        cur = err.source();
    }
    false
}
