//! The WAL service (both roles): Archive and Restore in-process through the core's
//! `ops::wal`, with the store resolved per call from the Cluster the instance manager
//! sends (cluster_definition → plugin configuration → ObjectStore by GET → `Target`)
//! and the opened archives kept for [`CACHE_TTL`](crate::k8s::CACHE_TTL) so a burst of calls reuses them.
//! Status and SetFirstRequired are not advertised and answer UNIMPLEMENTED for good
//! (upstream panics into INTERNAL).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use barrelman_core::compression::Compression;
use barrelman_core::wal::{WalKind, WalName};
use barrelman_core::{Classified, ErrorClass};
use barrelman_ops::wal::{ArchiveRequest, RestoreOutcome, RestoreRequest};
use barrelman_storage::config::ConfigError as TargetError;
use barrelman_storage::spool::Spool;
use barrelman_storage::{StorageError, UploadOptions};
use tonic::{Code, Request, Response, Status};

use crate::config::{Cluster, ConfigError, PluginConfiguration, StoreRef};
use crate::k8s::{forbidden_secret, KubeAccess, KubeError, SECRET_FORBIDDEN_MESSAGE};
use crate::proto::wal::{
    wal_capability, wal_server::Wal, SetFirstRequiredRequest, SetFirstRequiredResult,
    WalArchiveRequest, WalArchiveResult, WalCapabilitiesRequest, WalCapabilitiesResult,
    WalCapability, WalRestoreRequest, WalRestoreResult, WalStatusRequest, WalStatusResult,
};
use crate::settings::Settings;
use crate::stats::PluginStats;
use crate::store::{Opened, StoreError, Stores};
use crate::unimplemented::unimplemented;

/// The marker CloudNativePG leaves in PGDATA after initdb, pg_basebackup or a restore:
/// the archive must be empty before the first WAL is uploaded.
pub const CHECK_EMPTY_MARKER: &str = ".check-empty-wal-archive";

/// The flag in the spool that makes the next Restore answer OutOfRange once, so
/// PostgreSQL falls back to streaming replication (a prefetch found the archive's end).
pub const END_OF_WAL_STREAM_FLAG: &str = "end-of-wal-stream";

/// The Cluster annotation that turns the empty-archive check off (value `enabled`).
pub const SKIP_EMPTY_CHECK_ANNOTATION: &str = "cnpg.io/skipEmptyWalArchiveCheck";

/// The WAL RPCs advertised, as upstream: archive and restore.
pub fn wal_capabilities() -> WalCapabilitiesResult {
    use wal_capability::rpc::Type;
    let capabilities = [Type::ArchiveWal, Type::RestoreWal]
        .into_iter()
        .map(|t| WalCapability {
            r#type: Some(wal_capability::Type::Rpc(wal_capability::Rpc {
                r#type: t as i32,
            })),
        })
        .collect();
    WalCapabilitiesResult { capabilities }
}

/// The two WAL RPCs that do work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalRpc {
    /// WAL.Archive.
    Archive,
    /// WAL.Restore.
    Restore,
}

/// The gRPC code a failed WAL call answers, by the failure's class, as the reference's
/// tables say. Archive: every failure is a plain error upstream, so UNKNOWN. Restore:
/// barman-cloud-wal-restore's exit codes mapped by upstream — not found (1) NotFound,
/// bad name (3) InvalidArgument, connectivity (2) and generic (4) Unavailable;
/// what barrelman knows to be damaged data or a local fault, or an archive that
/// contradicts itself, is Internal (retrying will not help).
/// A forbidden credentials Secret is FailedPrecondition for both (see [`WalError`]).
pub fn grpc_code(rpc: WalRpc, class: ErrorClass) -> Code {
    match rpc {
        WalRpc::Archive => Code::Unknown,
        WalRpc::Restore => match class {
            ErrorClass::NotFound => Code::NotFound,
            ErrorClass::Input => Code::InvalidArgument,
            ErrorClass::Unavailable | ErrorClass::Denied => Code::Unavailable,
            ErrorClass::Conflict | ErrorClass::Failed | ErrorClass::Internal => Code::Internal,
        },
    }
}

/// Why a WAL call failed before or inside the operation.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The Cluster cannot be decoded or names no usable store.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The sidecar was started without access to the Kubernetes API.
    #[error(
        "the sidecar has no access to the Kubernetes API, so the ObjectStore {0:?} cannot be \
         read; run it in a Pod (or with KUBECONFIG set)"
    )]
    NoKube(String),
    /// Reading the ObjectStore failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The ObjectStore cannot be turned into a store to open (its Secrets included).
    #[error("the ObjectStore {store:?} cannot be used: {source}")]
    Target {
        /// The ObjectStore's name.
        store: String,
        /// Why.
        #[source]
        source: TargetError,
    },
    /// `wal.compression` of the ObjectStore is not a codec barman knows.
    #[error("the ObjectStore {store:?} has spec.configuration.wal.compression {value:?}, which is not a codec barman knows")]
    Compression {
        /// The ObjectStore's name.
        store: String,
        /// The value.
        value: String,
    },
    /// Opening the archive failed.
    #[error(transparent)]
    Open(StorageError),
    /// The archive operation failed.
    #[error(transparent)]
    Archive(#[from] barrelman_ops::wal::ArchiveError),
    /// A segment of the parallel batch failed (the requested one was archived).
    #[error("archiving {wal} with the batch of wal.maxParallel failed: {reason}")]
    Batch {
        /// The segment.
        wal: String,
        /// The upload's error, as a sentence.
        reason: String,
    },
    /// The restore operation failed.
    #[error(transparent)]
    Restore(#[from] barrelman_ops::wal::RestoreError),
    /// The end-of-wal-stream flag was up: this call ends archive recovery once.
    #[error("end of WAL reached")]
    EndOfWalStream,
}

impl Classified for WalError {
    fn class(&self) -> ErrorClass {
        match self {
            WalError::Config(_) | WalError::Compression { .. } => ErrorClass::Input,
            WalError::NoKube(_) => ErrorClass::Unavailable,
            WalError::Kube(KubeError::NotFound { .. }) => ErrorClass::Input,
            WalError::Kube(KubeError::Invalid { .. }) => ErrorClass::Input,
            WalError::Kube(KubeError::Forbidden { .. } | KubeError::SecretForbidden { .. }) => {
                ErrorClass::Denied
            }
            WalError::Kube(_) => ErrorClass::Unavailable,
            WalError::Target { source, .. } => source.class(),
            WalError::Open(e) => e.class(),
            WalError::Archive(e) => e.class(),
            WalError::Batch { .. } => ErrorClass::Failed,
            WalError::Restore(e) => e.class(),
            WalError::EndOfWalStream => ErrorClass::NotFound,
        }
    }

    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            WalError::Target { source, .. } => source.hint(),
            WalError::Open(e) => e.hint(),
            WalError::Archive(e) => e.hint(),
            WalError::Restore(e) => e.hint(),
            _ => None,
        }
    }
}

impl From<StoreError> for WalError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoKube(s) => WalError::NoKube(s),
            StoreError::Kube(e) => WalError::Kube(e),
            StoreError::Target { store, source } => WalError::Target { store, source },
            StoreError::Open(e) => WalError::Open(e),
        }
    }
}

impl WalError {
    /// The gRPC status of this failure in `rpc`: FailedPrecondition with upstream's
    /// message for a credentials Secret the API refuses, else [`grpc_code`] with the
    /// sentence and its hint.
    pub fn to_status(&self, rpc: WalRpc) -> Status {
        // `Kube` is transparent: its source chain starts below the KubeError.
        if matches!(self, WalError::Kube(KubeError::SecretForbidden { .. }))
            || forbidden_secret(self)
        {
            return Status::failed_precondition(SECRET_FORBIDDEN_MESSAGE);
        }
        if let WalError::EndOfWalStream = self {
            return Status::out_of_range(self.to_string());
        }
        let code = grpc_code(rpc, self.class());
        let message = match (self, self.hint()) {
            // Upstream's words for a missing WAL: the instance manager logs them.
            (WalError::Restore(e), _) if e.is_not_archived() => e.to_string(),
            (_, Some(h)) => format!("{self}; {h}"),
            (_, None) => self.to_string(),
        };
        Status::new(code, message)
    }
}

/// The WAL service.
#[derive(Clone)]
pub struct WalService {
    settings: Arc<Settings>,
    kube: Option<Arc<KubeAccess>>,
    stores: Stores,
    stats: Arc<PluginStats>,
}

impl std::fmt::Debug for WalService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalService")
            .field("role", &self.settings.role)
            .field("kube", &self.kube.is_some())
            .finish_non_exhaustive()
    }
}

impl WalService {
    /// The service of the sidecar with `settings`, reading ObjectStores and Secrets
    /// through `kube`.
    pub fn new(settings: Settings, kube: Option<Arc<KubeAccess>>) -> Self {
        let stores = Stores::new(kube.clone(), &settings);
        Self::with_stores(settings, kube, stores, Arc::default())
    }

    /// As [`WalService::new`], sharing `stores` (opened archives) with other services
    /// and recording archive outcomes into `stats` for the Metrics service.
    pub(crate) fn with_stores(
        settings: Settings,
        kube: Option<Arc<KubeAccess>>,
        stores: Stores,
        stats: Arc<PluginStats>,
    ) -> Self {
        WalService {
            settings: Arc::new(settings),
            stores,
            kube,
            stats,
        }
    }

    /// The archive of `store_ref` (see [`Stores::open`]).
    async fn open(&self, store_ref: &StoreRef) -> Result<Opened, WalError> {
        self.stores.open(store_ref).await.map_err(WalError::from)
    }

    /// PGDATA: the sidecar's `PGDATA`, else the directory above `pg_wal` of `wal_path`.
    fn pgdata(&self, wal_path: &Path) -> Option<PathBuf> {
        self.settings.pgdata.clone().or_else(|| {
            let dir = wal_path.parent()?;
            (dir.file_name()? == "pg_wal").then(|| dir.parent().map(Path::to_path_buf))?
        })
    }

    async fn do_archive(&self, req: WalArchiveRequest) -> Result<(), WalError> {
        let cluster = Cluster::from_json(&req.cluster_definition)?;
        let config = PluginConfiguration::from_cluster(&cluster);
        let store_ref = config.archive_store()?.clone();
        let opened = self.open(&store_ref).await?;
        let wal_path = PathBuf::from(&req.source_file_name);
        let pgdata = self.pgdata(&wal_path);
        let must_be_empty =
            empty_archive_decision(req.check_empty_wal_archive, &cluster, pgdata.as_deref());
        let conf = &opened.store.spec.configuration;
        let wal = conf.wal.clone().unwrap_or_default();
        let compression = match wal.compression.as_deref() {
            None => Compression::None,
            Some(c) => c.parse().map_err(|_| WalError::Compression {
                store: store_ref.object_store.clone(),
                value: c.to_string(),
            })?,
        };
        let history_tags = Some(conf.history_tags.clone())
            .filter(|h| !h.is_empty())
            .map(|h| h.into_iter().collect());
        let request = ArchiveRequest {
            wal_path,
            upload: UploadOptions {
                compression: Some(compression),
                level: None,
                tags: conf.tags.clone().into_iter().collect(),
            },
            history_tags,
            pgdata: pgdata.clone(),
            max_parallel: self
                .settings
                .wal_parallelism(wal.max_parallel.unwrap_or(1).max(1) as usize),
            spool_dir: Some(self.settings.spool_directory.clone()),
            must_be_empty,
        };
        let outcome = barrelman_ops::wal::archive(&opened.archive, &request).await?;
        self.stats
            .uploaded(uploaded_bytes(&request.wal_path, &outcome));
        // After the first success the archive is no longer empty (upstream removes the
        // marker after every successful upload).
        if let Some(pg) = &pgdata {
            match std::fs::remove_file(pg.join(CHECK_EMPTY_MARKER)) {
                Ok(()) => tracing::info!(
                    "removed {CHECK_EMPTY_MARKER}: the archive holds this cluster's WAL now"
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    "cannot remove {}: {e}",
                    pg.join(CHECK_EMPTY_MARKER).display()
                ),
            }
        }
        if let Some((wal, reason)) = outcome.also_failed.into_iter().next() {
            return Err(WalError::Batch {
                wal: wal.to_string(),
                reason,
            });
        }
        Ok(())
    }

    async fn do_restore(&self, req: WalRestoreRequest) -> Result<(), WalError> {
        let cluster = Cluster::from_json(&req.cluster_definition)?;
        let config = PluginConfiguration::from_cluster(&cluster);
        let store_ref = restore_store(&cluster, &config, &self.settings.pod_name)?.clone();
        let opened = self.open(&store_ref).await?;
        let rewind = req.mode == crate::proto::wal::wal_restore_request::Mode::Rewind as i32;
        let max_parallel = opened
            .store
            .spec
            .configuration
            .wal
            .as_ref()
            .and_then(|w| w.max_parallel)
            .unwrap_or(1)
            .max(1) as usize;
        let dest = PathBuf::from(&req.destination_file_name);
        let dest = match (&self.settings.pgdata, dest.is_relative()) {
            (Some(pg), true) => pg.join(dest),
            _ => dest,
        };
        let flag = self.settings.spool_directory.join(END_OF_WAL_STREAM_FLAG);
        if rewind {
            // A stale flag must not end pg_rewind's fetches.
            let _ = std::fs::remove_file(&flag);
        }
        let flag_applies = !rewind && streaming_possible(&cluster, &self.settings.pod_name);
        let name = WalName::parse(&req.source_wal_name).ok();
        let spool = Spool::for_restore(&self.settings.spool_directory, &opened.archive.location());
        let spooled = name.as_ref().is_some_and(|n| spool.contains(n));
        if flag_applies && !spooled && flag.exists() {
            let _ = std::fs::remove_file(&flag);
            tracing::info!(
                wal = %req.source_wal_name,
                "end of the WAL archive reached by the prefetch: PostgreSQL switches to streaming"
            );
            return Err(WalError::EndOfWalStream);
        }
        let parallel = if rewind {
            1
        } else {
            self.settings.wal_parallelism(max_parallel)
        };
        let request = RestoreRequest {
            wal_name: req.source_wal_name.clone(),
            dest,
            allow_partial: true,
            parallel,
            spool_dir: Some(self.settings.spool_directory.clone()),
        };
        let outcome = barrelman_ops::wal::restore(&opened.archive, &request).await?;
        // A prefetched segment that did not arrive: the archive ends here (upstream
        // raises the flag on a prefetch's not-found).
        if flag_applies && matches!(outcome, RestoreOutcome::Downloaded { .. }) {
            let next = name
                .as_ref()
                .and_then(|n| n.segment().filter(|_| n.kind() == WalKind::Segment));
            if let Some(mut seg) = next {
                let missing = (1..parallel).any(|_| {
                    seg = seg.next(16 << 20);
                    WalName::parse(&seg.to_string()).is_ok_and(|n| !spool.contains(&n))
                });
                if missing {
                    if let Err(e) = std::fs::write(&flag, b"") {
                        tracing::warn!("cannot create {}: {e}", flag.display());
                    }
                }
            }
        }
        Ok(())
    }
}

/// The bytes (as PostgreSQL wrote them) of the files `outcome` says were uploaded:
/// the requested one unless it was archived before, and the batch's others, read from
/// the requested file's directory (PostgreSQL keeps them until the call answers).
fn uploaded_bytes(wal_path: &Path, outcome: &barrelman_ops::wal::ArchiveOutcome) -> u64 {
    use barrelman_ops::wal::RequestedWal;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let requested = match outcome.requested {
        RequestedWal::Uploaded { .. } => size(wal_path),
        RequestedWal::AlreadyArchived { .. } | RequestedWal::UploadedEarlier => 0,
    };
    let dir = wal_path.parent().unwrap_or(Path::new("."));
    requested
        + outcome
            .also_uploaded
            .iter()
            .map(|w| size(&dir.join(w.as_str())))
            .sum::<u64>()
}

/// True when this pod could stream WAL instead of reading the archive: a standby
/// (a current primary that is another pod), or the designated primary of a replica
/// cluster whose source has connection parameters. Never while bootstrapping.
pub fn streaming_possible(cluster: &Cluster, pod_name: &str) -> bool {
    let primary = cluster.status.current_primary.as_str();
    if primary.is_empty() {
        return false;
    }
    if primary != pod_name {
        return true;
    }
    let source = cluster.spec.replica.source.as_str();
    !source.is_empty()
        && cluster
            .external_cluster(source)
            .is_some_and(|c| !c.connection_parameters.is_empty())
}

/// Whether this Archive call must find the archive empty, and why (for the log), as
/// upstream decides: the request's `check_empty_wal_archive` when present (the
/// operator combined annotation and marker already); else the annotation not
/// `enabled` and the PGDATA marker present.
pub fn empty_archive_decision(
    requested: Option<bool>,
    cluster: &Cluster,
    pgdata: Option<&Path>,
) -> Option<String> {
    match requested {
        Some(true) => Some("CloudNativePG asked for the empty-archive check".to_string()),
        Some(false) => None,
        None => {
            let skipped = cluster
                .metadata
                .annotations
                .get(SKIP_EMPTY_CHECK_ANNOTATION)
                .is_some_and(|v| v == "enabled");
            let marker = pgdata.map(|p| p.join(CHECK_EMPTY_MARKER))?;
            (!skipped && marker.exists()).then(|| format!("{} exists", marker.display()))
        }
    }
}

/// The store a Restore call reads, as upstream chooses: the replica source for the
/// designated primary of a replica cluster, the recovery source while bootstrapping
/// (no current primary), else the cluster's own archive.
pub fn restore_store<'a>(
    cluster: &Cluster,
    config: &'a PluginConfiguration,
    pod_name: &str,
) -> Result<&'a StoreRef, ConfigError> {
    let primary = cluster.status.current_primary.as_str();
    if primary == pod_name && !primary.is_empty() && config.replica_source.is_ok() {
        return config.replica_source_store();
    }
    if primary.is_empty() {
        return config.recovery_store();
    }
    config.archive_store()
}

#[tonic::async_trait]
impl Wal for WalService {
    async fn get_capabilities(
        &self,
        _: Request<WalCapabilitiesRequest>,
    ) -> Result<Response<WalCapabilitiesResult>, Status> {
        Ok(Response::new(wal_capabilities()))
    }

    async fn archive(
        &self,
        request: Request<WalArchiveRequest>,
    ) -> Result<Response<WalArchiveResult>, Status> {
        let req = request.into_inner();
        let file = req.source_file_name.clone();
        match self.do_archive(req).await {
            Ok(()) => {
                self.stats.archive_succeeded();
                Ok(Response::new(WalArchiveResult {}))
            }
            Err(e) => {
                self.stats.archive_failed();
                tracing::error!(file = %file, "WAL archive failed: {e}");
                Err(e.to_status(WalRpc::Archive))
            }
        }
    }

    async fn restore(
        &self,
        request: Request<WalRestoreRequest>,
    ) -> Result<Response<WalRestoreResult>, Status> {
        let req = request.into_inner();
        let name = req.source_wal_name.clone();
        match self.do_restore(req).await {
            Ok(()) => Ok(Response::new(WalRestoreResult {})),
            Err(e) => {
                let status = e.to_status(WalRpc::Restore);
                if status.code() == Code::NotFound {
                    tracing::info!(wal = %name, "WAL restore: {}", status.message());
                } else {
                    tracing::error!(wal = %name, "WAL restore failed: {e}");
                }
                Err(status)
            }
        }
    }

    async fn status(
        &self,
        _: Request<WalStatusRequest>,
    ) -> Result<Response<WalStatusResult>, Status> {
        Err(unimplemented("WAL", "Status", false))
    }

    async fn set_first_required(
        &self,
        _: Request<SetFirstRequiredRequest>,
    ) -> Result<Response<SetFirstRequiredResult>, Status> {
        Err(unimplemented("WAL", "SetFirstRequired", false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_follow_the_reference_tables() {
        use ErrorClass::*;
        let table = [
            (Input, Code::InvalidArgument),
            (NotFound, Code::NotFound),
            (Conflict, Code::Internal),
            (Denied, Code::Unavailable),
            (Unavailable, Code::Unavailable),
            (Failed, Code::Internal),
            (Internal, Code::Internal),
        ];
        assert_eq!(table.len(), ErrorClass::ALL.len());
        for (class, code) in table {
            assert_eq!(grpc_code(WalRpc::Restore, class), code, "{class:?}");
            assert_eq!(
                grpc_code(WalRpc::Archive, class),
                Code::Unknown,
                "{class:?}"
            );
        }
    }

    #[test]
    fn a_forbidden_secret_is_failed_precondition_with_upstreams_message() {
        let e = WalError::Kube(KubeError::SecretForbidden {
            namespace: "db".into(),
            name: "creds".into(),
        });
        for rpc in [WalRpc::Archive, WalRpc::Restore] {
            let s = e.to_status(rpc);
            assert_eq!(s.code(), Code::FailedPrecondition);
            assert_eq!(s.message(), SECRET_FORBIDDEN_MESSAGE);
        }
    }

    fn cluster(annotations: serde_json::Value, primary: &str) -> Cluster {
        Cluster::from_json(
            serde_json::json!({
                "metadata": {"name": "pg", "annotations": annotations},
                "spec": {
                    "plugins": [{"name": crate::PLUGIN_NAME, "parameters": {"barmanObjectName": "own"}}],
                    "bootstrap": {"recovery": {"source": "origin"}},
                    "replica": {"source": "origin"},
                    "externalClusters": [{"name": "origin", "plugin": {"name": crate::PLUGIN_NAME, "parameters": {"barmanObjectName": "theirs", "serverName": "old"}}}],
                },
                "status": {"currentPrimary": primary},
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn empty_archive_decision_as_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let plain = cluster(serde_json::json!({}), "pg-1");
        let skip = cluster(
            serde_json::json!({SKIP_EMPTY_CHECK_ANNOTATION: "enabled"}),
            "pg-1",
        );
        // The request's field wins, whatever the marker and annotation say.
        assert!(empty_archive_decision(Some(true), &skip, Some(dir.path())).is_some());
        std::fs::write(dir.path().join(CHECK_EMPTY_MARKER), "").unwrap();
        assert!(empty_archive_decision(Some(false), &plain, Some(dir.path())).is_none());
        // Absent: marker and no annotation.
        assert!(empty_archive_decision(None, &plain, Some(dir.path())).is_some());
        assert!(empty_archive_decision(None, &skip, Some(dir.path())).is_none());
        std::fs::remove_file(dir.path().join(CHECK_EMPTY_MARKER)).unwrap();
        assert!(empty_archive_decision(None, &plain, Some(dir.path())).is_none());
    }

    #[test]
    fn restore_store_by_role() {
        let name = |c: &Cluster, pod: &str| {
            let config = PluginConfiguration::from_cluster(c);
            restore_store(c, &config, pod).unwrap().object_store.clone()
        };
        // Designated primary of a replica cluster: the replica source.
        assert_eq!(
            name(&cluster(serde_json::json!({}), "pg-1"), "pg-1"),
            "theirs"
        );
        // Standby: own archive.
        assert_eq!(name(&cluster(serde_json::json!({}), "pg-1"), "pg-2"), "own");
        // Bootstrap: recovery source, server name from the external cluster.
        let c = cluster(serde_json::json!({}), "");
        let config = PluginConfiguration::from_cluster(&c);
        let r = restore_store(&c, &config, "pg-1-full-recovery").unwrap();
        assert_eq!(
            (r.object_store.as_str(), r.server_name.as_str()),
            ("theirs", "old")
        );
    }

    #[test]
    fn streaming_is_possible_for_standbys_and_connected_designated_primaries() {
        assert!(!streaming_possible(
            &cluster(serde_json::json!({}), ""),
            "pg-1"
        ));
        assert!(streaming_possible(
            &cluster(serde_json::json!({}), "pg-1"),
            "pg-2"
        ));
        // The designated primary: only when its source has connection parameters.
        assert!(!streaming_possible(
            &cluster(serde_json::json!({}), "pg-1"),
            "pg-1"
        ));
        let mut c = cluster(serde_json::json!({}), "pg-1");
        c.spec.external_clusters[0]
            .connection_parameters
            .insert("host".into(), "origin-rw".into());
        assert!(streaming_possible(&c, "pg-1"));
    }
}
