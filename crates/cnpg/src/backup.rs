//! The Backup service (instance role): Backup.Backup takes a base backup in-process
//! with the core's `ops::backup::take_backup`, into the Cluster's archive ObjectStore
//! (resolved as the WAL service does), connecting to PostgreSQL as upstream's
//! barman-cloud-backup does (user `postgres`, the sidecar's `PGHOST`/`PGPORT`).
//! A failure stamps `lastFailedBackupTime` of the ObjectStore's recovery window;
//! a success refreshes the window from the backup catalog.

use std::collections::HashMap;
use std::sync::Arc;

use barrelman_core::backup_info::{BackupInfo, BackupStatus};
use barrelman_core::compression::Compression;
use barrelman_core::{Classified, ErrorClass};
use barrelman_ops::backup::{take_backup, BackupOptions};
use barrelman_ops::progress::Progress;
use barrelman_postgres::session::{ConnectOptions, PgError, Session};
use barrelman_storage::StorageError;
use chrono::SecondsFormat;
use tonic::{Code, Request, Response, Status};

use crate::config::{Cluster, ConfigError, PluginConfiguration, StoreRef};
use crate::k8s::KubeAccess;
use crate::proto::backup::{
    backup_capability, backup_server::Backup, BackupCapabilitiesRequest, BackupCapabilitiesResult,
    BackupCapability, BackupRequest, BackupResult,
};
use crate::settings::Settings;
use crate::stats::PluginStats;
use crate::store::Stores;
use crate::wal::{WalError, WalRpc};

/// The Backup parameters (`spec.pluginConfiguration.parameters` of a Backup) that
/// override the ObjectStore's `data` settings for one backup.
pub const BACKUP_PARAMETERS: &[&str] = &["compression", "jobs", "immediateCheckpoint"];

/// The Backup RPCs advertised: Backup.
pub fn backup_capabilities() -> BackupCapabilitiesResult {
    BackupCapabilitiesResult {
        capabilities: vec![BackupCapability {
            r#type: Some(backup_capability::Type::Rpc(backup_capability::Rpc {
                r#type: backup_capability::rpc::Type::Backup as i32,
            })),
        }],
    }
}

/// Why a Backup call failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The Cluster cannot be decoded or names no archive store.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Backup definition is not a JSON object.
    #[error("the Backup definition sent by CloudNativePG cannot be decoded: {0}")]
    Definition(String),
    /// A parameter this plugin does not know.
    #[error(
        "the Backup's pluginConfiguration.parameters has {name:?}, which this plugin does not \
         know; use only compression, jobs and immediateCheckpoint"
    )]
    UnknownParameter {
        /// The parameter.
        name: String,
    },
    /// A known parameter with a value that does not fit.
    #[error(
        "the Backup's pluginConfiguration.parameters has {name}={value:?}, which is not {expected}"
    )]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// The ObjectStore's `data` settings do not fit.
    #[error("the ObjectStore {store:?} has spec.configuration.data.{field} {value:?}, which is not {expected}")]
    BadData {
        /// The ObjectStore's name.
        store: String,
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// The ObjectStore could not be read or opened.
    #[error(transparent)]
    Store(WalError),
    /// Opening the archive for backups failed.
    #[error(transparent)]
    Open(StorageError),
    /// PostgreSQL could not be reached.
    #[error("cannot connect to PostgreSQL for the backup: {0}")]
    Connect(#[source] PgError),
    /// The backup itself failed.
    #[error("the backup {name} failed: {source}")]
    Failed {
        /// The backup's name.
        name: String,
        /// Why.
        #[source]
        source: Box<barrelman_ops::backup::BackupError>,
    },
}

impl Classified for BackupError {
    fn class(&self) -> ErrorClass {
        match self {
            BackupError::Config(_)
            | BackupError::Definition(_)
            | BackupError::UnknownParameter { .. }
            | BackupError::BadParameter { .. }
            | BackupError::BadData { .. } => ErrorClass::Input,
            BackupError::Store(e) => e.class(),
            BackupError::Open(e) => e.class(),
            BackupError::Connect(e) => e.class(),
            BackupError::Failed { source, .. } => source.class(),
        }
    }

    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            BackupError::Store(e) => e.hint(),
            BackupError::Open(e) => e.hint(),
            BackupError::Connect(e) => e.hint(),
            BackupError::Failed { source, .. } => source.hint(),
            _ => None,
        }
    }
}

impl BackupError {
    /// The gRPC status: InvalidArgument for the Backup's parameters, the WAL
    /// service's answer for store resolution (FailedPrecondition for a refused
    /// Secret), else UNKNOWN as upstream (a plain error), with the sentence and hint.
    pub fn to_status(&self) -> Status {
        let code = match self {
            BackupError::UnknownParameter { .. } | BackupError::BadParameter { .. } => {
                Code::InvalidArgument
            }
            BackupError::Store(e) => return e.to_status(WalRpc::Archive),
            _ => Code::Unknown,
        };
        match self.hint() {
            Some(h) => Status::new(code, format!("{self}; {h}")),
            None => Status::new(code, self.to_string()),
        }
    }
}

/// The per-backup overrides of the ObjectStore's `data` settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `compression`.
    pub compression: Option<Compression>,
    /// `jobs`.
    pub jobs: Option<usize>,
    /// `immediateCheckpoint`.
    pub immediate_checkpoint: Option<bool>,
}

impl Overrides {
    /// Parses the Backup's parameters; an unknown name or a value that does not fit
    /// is an error naming it.
    pub fn parse(params: &HashMap<String, String>) -> Result<Overrides, BackupError> {
        let mut names: Vec<&String> = params.keys().collect();
        names.sort();
        let mut out = Overrides::default();
        for name in names {
            let value = &params[name];
            match name.as_str() {
                "compression" => {
                    out.compression = Some(backup_compression(value).ok_or_else(|| {
                        BackupError::BadParameter {
                            name: "compression",
                            value: value.clone(),
                            expected: "one of gzip, bzip2, lz4, snappy",
                        }
                    })?)
                }
                "jobs" => {
                    out.jobs = Some(
                        value
                            .trim()
                            .parse::<usize>()
                            .ok()
                            .filter(|j| *j >= 1)
                            .ok_or_else(|| BackupError::BadParameter {
                                name: "jobs",
                                value: value.clone(),
                                expected: "a whole number of at least 1",
                            })?,
                    )
                }
                "immediateCheckpoint" => {
                    out.immediate_checkpoint = Some(match value.trim() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(BackupError::BadParameter {
                                name: "immediateCheckpoint",
                                value: value.clone(),
                                expected: "true or false",
                            })
                        }
                    })
                }
                _ => return Err(BackupError::UnknownParameter { name: name.clone() }),
            }
        }
        Ok(out)
    }
}

/// A codec barman-cloud-backup accepts for tar files.
fn backup_compression(value: &str) -> Option<Compression> {
    let c: Compression = value.trim().parse().ok()?;
    c.for_backups().ok()?;
    (c != Compression::None).then_some(c)
}

/// The Backup service.
#[derive(Clone)]
pub struct BackupService {
    settings: Arc<Settings>,
    kube: Option<Arc<KubeAccess>>,
    stores: Stores,
    stats: Arc<PluginStats>,
}

impl std::fmt::Debug for BackupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupService")
            .field("pod", &self.settings.pod_name)
            .field("kube", &self.kube.is_some())
            .finish_non_exhaustive()
    }
}

/// `parameters` of the request, else the Backup's `spec.pluginConfiguration.parameters`.
fn parameters(req: &BackupRequest) -> Result<HashMap<String, String>, BackupError> {
    let mut params = HashMap::new();
    if !req.backup_definition.is_empty() {
        let def: serde_json::Value = serde_json::from_slice(&req.backup_definition)
            .map_err(|e| BackupError::Definition(e.to_string()))?;
        if let Some(p) = def
            .pointer("/spec/pluginConfiguration/parameters")
            .and_then(|p| p.as_object())
        {
            for (k, v) in p {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                params.insert(k.clone(), v);
            }
        }
    }
    params.extend(req.parameters.clone());
    Ok(params)
}

impl BackupService {
    /// The service of the instance sidecar with `settings`, reading ObjectStores and
    /// Secrets (and writing ObjectStore status) through `kube`.
    pub fn new(settings: Settings, kube: Option<Arc<KubeAccess>>) -> Self {
        let stores = Stores::new(kube.clone(), &settings);
        Self::with_stores(settings, kube, stores, Arc::default())
    }

    /// As [`BackupService::new`], sharing `stores` (opened archives) with the WAL
    /// service, so a backup right after an archive call reuses the opened store, and
    /// recording into `stats` for the Metrics service.
    pub(crate) fn with_stores(
        settings: Settings,
        kube: Option<Arc<KubeAccess>>,
        stores: Stores,
        stats: Arc<PluginStats>,
    ) -> Self {
        BackupService {
            settings: Arc::new(settings),
            stores,
            kube,
            stats,
        }
    }

    async fn do_backup(&self, req: BackupRequest) -> Result<BackupResult, BackupError> {
        let cluster = Cluster::from_json(&req.cluster_definition)?;
        let config = PluginConfiguration::from_cluster(&cluster);
        let store_ref = config.archive_store()?.clone();
        let overrides = Overrides::parse(&parameters(&req)?)?;
        let opened = self
            .stores
            .open(&store_ref)
            .await
            .map_err(|e| BackupError::Store(e.into()))?;
        let conf = &opened.store.spec.configuration;
        let data = conf.data.clone().unwrap_or_default();
        let compression = match (overrides.compression, data.compression.as_deref()) {
            (Some(c), _) => c,
            (None, None) => Compression::None,
            (None, Some(v)) => backup_compression(v).ok_or_else(|| BackupError::BadData {
                store: store_ref.object_store.clone(),
                field: "compression",
                value: v.to_string(),
                expected: "one of gzip, bzip2, lz4, snappy",
            })?,
        };
        let name = chrono::Local::now()
            .format("backup-%Y%m%d%H%M%S")
            .to_string();
        let opts = BackupOptions {
            compression,
            immediate_checkpoint: overrides
                .immediate_checkpoint
                .or(data.immediate_checkpoint)
                .unwrap_or(false),
            jobs: self.settings.job_parallelism(
                overrides
                    .jobs
                    .or(data.jobs.map(|j| j.max(1) as usize))
                    .unwrap_or(BackupOptions::default().jobs),
            ),
            name: Some(name.clone()),
            tags: conf.tags.clone().into_iter().collect(),
            ..BackupOptions::default()
        };
        tracing::info!(
            backup = %name,
            store = %store_ref.object_store,
            server = %store_ref.server_name,
            compression = %opts.compression,
            jobs = opts.jobs,
            immediate_checkpoint = opts.immediate_checkpoint,
            "starting backup"
        );
        let started = std::time::Instant::now();
        let result = self.run(&opened.target, &name, &opts).await;
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                self.record_failure(&store_ref).await;
                return Err(e);
            }
        };
        self.stats.backup_done(started.elapsed().as_secs_f64());
        tracing::info!(backup = %name, backup_id = %info.backup_id, "backup done");
        if let Some(kube) = &self.kube {
            match barrelman_ops::catalog::load(&opened.archive).await {
                Ok((backups, _)) => refresh_window(kube, &store_ref, &backups).await,
                Err(e) => tracing::warn!(
                    store = %store_ref.object_store,
                    "cannot list the backups to refresh the recovery window: {e}"
                ),
            }
        }
        crate::retention::refresh_window_end(&opened.archive, &self.stats).await;
        Ok(backup_result(
            &info,
            &name,
            &self.settings.pod_name,
            &cluster.metadata.uid,
        ))
    }

    async fn run(
        &self,
        target: &barrelman_storage::config::Target,
        name: &str,
        opts: &BackupOptions,
    ) -> Result<BackupInfo, BackupError> {
        let archive = target.open_for_backups().map_err(BackupError::Open)?;
        let connect = ConnectOptions {
            user: Some("postgres".into()),
            application_name: Some("barman_cloud_backup".into()),
            environment: self.settings.postgres.clone(),
            ..ConnectOptions::default()
        };
        let session = Session::connect(&connect)
            .await
            .map_err(BackupError::Connect)?;
        take_backup(&archive, &session, opts, &Progress::new())
            .await
            .map_err(|source| BackupError::Failed {
                name: name.to_string(),
                source: Box::new(source),
            })
    }

    /// Sets `lastFailedBackupTime` to now; a failure to do so is only logged.
    async fn record_failure(&self, store_ref: &StoreRef) {
        let Some(kube) = &self.kube else { return };
        let now = chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let res = kube
            .update_recovery_window(&store_ref.object_store, &store_ref.server_name, |w| {
                w.insert("lastFailedBackupTime".into(), now.clone().into());
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(
                store = %store_ref.object_store,
                "cannot record the failed backup in the ObjectStore's status: {e}"
            );
        }
    }
}

/// Sets `firstRecoverabilityPoint` and `lastSuccessfulBackupTime` of `store_ref`'s
/// recovery window from `backups` (end times of the oldest and newest DONE backups);
/// errors are only logged (the next backup or retention cycle writes them again).
pub(crate) async fn refresh_window(
    kube: &KubeAccess,
    store_ref: &StoreRef,
    backups: &[BackupInfo],
) {
    let (first, last) = recovery_window(backups);
    let res = kube
        .update_recovery_window(&store_ref.object_store, &store_ref.server_name, |w| {
            for (key, value) in [
                ("firstRecoverabilityPoint", &first),
                ("lastSuccessfulBackupTime", &last),
            ] {
                match value {
                    Some(v) => w.insert(key.into(), v.clone().into()),
                    None => w.remove(key),
                };
            }
        })
        .await;
    if let Err(e) = res {
        tracing::warn!(store = %store_ref.object_store, "cannot refresh the ObjectStore's recovery window: {e}");
    }
}

/// The end times (RFC 3339, UTC, seconds) of the oldest and newest DONE backups.
pub fn recovery_window(backups: &[BackupInfo]) -> (Option<String>, Option<String>) {
    let mut ends: Vec<_> = backups
        .iter()
        .filter(|b| b.status == BackupStatus::Done && b.begin_time.is_some())
        .filter_map(|b| b.end_time)
        .collect();
    ends.sort();
    let fmt = |t: &chrono::DateTime<chrono::FixedOffset>| {
        t.with_timezone(&chrono::Utc)
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    };
    (ends.first().map(fmt), ends.last().map(fmt))
}

/// The answer for a DONE backup, with the fields and metadata upstream fills.
pub fn backup_result(info: &BackupInfo, name: &str, pod: &str, cluster_uid: &str) -> BackupResult {
    let meta = crate::identity::plugin_metadata();
    let metadata = [
        (
            "timeline",
            info.timeline.map(|t| t.to_string()).unwrap_or_default(),
        ),
        ("version", meta.version),
        ("name", meta.name),
        ("displayName", meta.display_name),
        ("clusterUID", cluster_uid.to_string()),
        ("pluginName", crate::PLUGIN_NAME.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    BackupResult {
        backup_id: info.backup_id.clone(),
        backup_name: info.backup_name.clone().unwrap_or_else(|| name.to_string()),
        started_at: info.begin_time.map(|t| t.timestamp()).unwrap_or_default(),
        stopped_at: info.end_time.map(|t| t.timestamp()).unwrap_or_default(),
        begin_wal: info.begin_wal.clone().unwrap_or_default(),
        end_wal: info.end_wal.clone().unwrap_or_default(),
        begin_lsn: info.begin_xlog.clone().unwrap_or_default(),
        end_lsn: info.end_xlog.clone().unwrap_or_default(),
        instance_id: pod.to_string(),
        online: true,
        metadata,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Backup for BackupService {
    async fn get_capabilities(
        &self,
        _: Request<BackupCapabilitiesRequest>,
    ) -> Result<Response<BackupCapabilitiesResult>, Status> {
        Ok(Response::new(backup_capabilities()))
    }

    async fn backup(&self, req: Request<BackupRequest>) -> Result<Response<BackupResult>, Status> {
        match self.do_backup(req.into_inner()).await {
            Ok(r) => Ok(Response::new(r)),
            Err(e) => {
                tracing::error!("backup failed: {e}");
                Err(e.to_status())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn info(id: &str, status: BackupStatus, end: &str) -> BackupInfo {
        let mut b = BackupInfo::new(id.to_string());
        b.status = status;
        b.begin_time = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00+00:00").ok();
        b.end_time = chrono::DateTime::parse_from_rfc3339(end).ok();
        b
    }

    #[test]
    fn recovery_window_spans_the_done_backups_end_times() {
        let backups = [
            info(
                "20260102T000000",
                BackupStatus::Done,
                "2026-01-02T01:00:00+02:00",
            ),
            info(
                "20260101T000000",
                BackupStatus::Done,
                "2026-01-01T10:00:00+00:00",
            ),
            info(
                "20260103T000000",
                BackupStatus::Failed,
                "2026-01-03T10:00:00+00:00",
            ),
        ];
        assert_eq!(
            recovery_window(&backups),
            (
                Some("2026-01-01T10:00:00Z".to_string()),
                Some("2026-01-01T23:00:00Z".to_string())
            )
        );
        assert_eq!(recovery_window(&backups[2..]), (None, None));
    }

    #[test]
    fn overrides_parse_the_three_known_parameters() {
        let o = Overrides::parse(&params(&[
            ("compression", "bzip2"),
            ("jobs", "3"),
            ("immediateCheckpoint", "true"),
        ]))
        .unwrap();
        assert_eq!(o.compression, Some(Compression::Bzip2));
        assert_eq!(o.jobs, Some(3));
        assert_eq!(o.immediate_checkpoint, Some(true));
        assert_eq!(
            Overrides::parse(&params(&[])).unwrap(),
            Overrides::default()
        );
    }

    #[test]
    fn an_unknown_or_bad_parameter_is_refused_by_name() {
        let e = Overrides::parse(&params(&[("jobs", "2"), ("compresion", "gzip")])).unwrap_err();
        assert!(matches!(&e, BackupError::UnknownParameter { name } if name == "compresion"));
        assert_eq!(e.to_status().code(), Code::InvalidArgument);
        assert!(e.to_status().message().contains("\"compresion\""));
        for (k, v) in [
            ("jobs", "0"),
            ("compression", "xz"),
            ("immediateCheckpoint", "yes"),
        ] {
            let e = Overrides::parse(&params(&[(k, v)])).unwrap_err();
            assert!(
                matches!(&e, BackupError::BadParameter { name, .. } if *name == k),
                "{e}"
            );
            assert_eq!(e.to_status().code(), Code::InvalidArgument);
        }
    }
}
