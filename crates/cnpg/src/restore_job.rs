//! The RestoreJobHooks service (restore role; package `cnpgi.wal.v1` upstream).
//!
//! Restore bootstraps a Cluster from the recovery ObjectStore in-process, as the
//! Barman Cloud plugin's restore sidecar does with barman-cloud tools (reference 2.6):
//! the empty-archive check of the Cluster's own archive store (when it archives with
//! this plugin), the choice of a base backup from `bootstrap.recovery.recoveryTarget`,
//! a probe of the backup's first WAL, the restore into `PGDATA` with `ops::restore`,
//! the move of `pg_wal` onto the WAL volume when `spec.walStorage` is set, and the two
//! lines of PostgreSQL settings CloudNativePG appends (recovery then reads WAL through
//! this sidecar's WAL service).

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use barrelman_core::backup_info::{parse_time, BackupInfo, BackupStatus};
use barrelman_core::lsn::Lsn;
use barrelman_core::wal::WalName;
use barrelman_core::{Classified, ErrorClass};
use barrelman_ops::progress::Progress;
use barrelman_ops::restore::{restore_backup, RestoreError, RestoreOptions};
use barrelman_storage::StorageError;
use tonic::{Code, Request, Response, Status};

use crate::config::{Cluster, ConfigError, PluginConfiguration, RecoveryTarget, StoreRef};
use crate::k8s::KubeAccess;
use crate::proto::wal::{
    restore_job_hooks_capability::Kind, restore_job_hooks_server::RestoreJobHooks,
    RestoreJobHooksCapabilitiesRequest, RestoreJobHooksCapabilitiesResult,
    RestoreJobHooksCapability, RestoreRequest, RestoreResponse,
};
use crate::settings::Settings;
use crate::store::Stores;
use crate::wal::{grpc_code, WalError, WalRpc, SKIP_EMPTY_CHECK_ANNOTATION};

/// The `restore_command` upstream's Restore returns: CloudNativePG's instance manager
/// `wal-restore`, which calls this sidecar's WAL.Restore.
pub const RESTORE_COMMAND: &str =
    "/controller/manager wal-restore --log-destination /controller/log/postgres.json %f %p";

/// Parts restored at once when the ObjectStore's `data.jobs` does not say.
pub const DEFAULT_RESTORE_JOBS: usize = 4;

/// The `restore_config` of a successful Restore: upstream's two lines, each ended by a
/// newline (CloudNativePG appends the text to the PostgreSQL configuration and adds the
/// recovery target settings itself).
pub fn restore_config() -> String {
    format!("recovery_target_action = promote\nrestore_command = '{RESTORE_COMMAND}'\n")
}

/// The RestoreJobHooks kinds advertised: restore.
pub fn restore_job_capabilities() -> RestoreJobHooksCapabilitiesResult {
    RestoreJobHooksCapabilitiesResult {
        capabilities: vec![RestoreJobHooksCapability {
            kind: Kind::Restore as i32,
        }],
    }
}

/// Why no backup was selected for a recovery target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// No backup fits; the words say what was looked for.
    #[error("no target backup found: no backup {0}")]
    NoBackup(String),
    /// A target field cannot be read.
    #[error(
        "spec.bootstrap.recovery.recoveryTarget.{field} is {value:?}, which is not {expected}"
    )]
    BadTarget {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
}

/// The timeline filter of `targetTLI`: `None` for any timeline.
fn timeline_filter(tli: &str) -> Result<Option<u32>, SelectError> {
    match tli.trim() {
        // "current" is the timeline the backup itself is on: any backup fits.
        "" | "latest" | "current" => Ok(None),
        t => t
            .parse::<u32>()
            .map(Some)
            .map_err(|_| SelectError::BadTarget {
                field: "targetTLI",
                value: tli.to_string(),
                expected: "a timeline number, latest or current",
            }),
    }
}

/// Picks the backup a recovery starts from, as upstream's catalog does:
/// `backupID` (that exact backup, which must be DONE) before `targetTime` (the latest
/// DONE backup ending at or before it; a time without zone is UTC) before `targetLSN`
/// (the latest DONE backup ending strictly before it) before `targetTLI` alone (the
/// latest DONE backup on it; `""`/`latest` any timeline); without a target the latest
/// DONE backup. `targetTLI` also filters the time and LSN searches. `catalog` is in
/// chronological (backup id) order, as [`barrelman_ops::catalog::load`] returns it.
pub fn select_backup<'a>(
    catalog: &'a [BackupInfo],
    target: Option<&RecoveryTarget>,
) -> Result<&'a BackupInfo, SelectError> {
    let done = |b: &&BackupInfo| b.status == BackupStatus::Done;
    let Some(t) = target else {
        return catalog
            .iter()
            .rfind(done)
            .ok_or_else(|| SelectError::NoBackup("is DONE".into()));
    };
    if !t.backup_id.is_empty() {
        return catalog
            .iter()
            .filter(done)
            .find(|b| b.backup_id == t.backup_id)
            .ok_or_else(|| SelectError::NoBackup(format!("{:?} is DONE", t.backup_id)));
    }
    let tli = timeline_filter(&t.target_tli)?;
    let on_tli = |b: &&BackupInfo| tli.is_none_or(|want| b.timeline == Some(want));
    let tli_words = tli.map_or_else(String::new, |n| format!(" on timeline {n}"));
    let candidates = || catalog.iter().filter(done).filter(on_tli);
    if !t.target_time.is_empty() {
        let time = parse_time(&t.target_time).map_err(|_| SelectError::BadTarget {
            field: "targetTime",
            value: t.target_time.clone(),
            expected: "a timestamp (RFC 3339; without a zone it is UTC)",
        })?;
        return candidates()
            .rfind(|b| b.end_time.is_some_and(|end| end <= time))
            .ok_or_else(|| {
                SelectError::NoBackup(format!(
                    "is DONE{tli_words} and ended at or before {}",
                    t.target_time
                ))
            });
    }
    if !t.target_lsn.is_empty() {
        let lsn: Lsn = t.target_lsn.parse().map_err(|_| SelectError::BadTarget {
            field: "targetLSN",
            value: t.target_lsn.clone(),
            expected: "an LSN like 0/4000028",
        })?;
        return candidates()
            .rfind(|b| {
                b.end_xlog
                    .as_deref()
                    .and_then(|x| x.parse::<Lsn>().ok())
                    .is_some_and(|end| end < lsn)
            })
            .ok_or_else(|| {
                SelectError::NoBackup(format!("is DONE{tli_words} and ended before LSN {lsn}"))
            });
    }
    candidates()
        .next_back()
        .ok_or_else(|| SelectError::NoBackup(format!("is DONE{tli_words}")))
}

/// Why the WAL could not be moved onto the WAL volume.
#[derive(Debug, thiserror::Error)]
pub enum WalStorageError {
    /// A file system call failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: io::Error,
    },
    /// `pg_wal` is a symlink to somewhere else, or not a directory.
    #[error("{} is {what}, not a directory or a symlink to {}", pg_wal.display(), wal_dir.display())]
    Unexpected {
        /// `$PGDATA/pg_wal`.
        pg_wal: PathBuf,
        /// The WAL directory wanted.
        wal_dir: PathBuf,
        /// What it is.
        what: String,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> WalStorageError + 'a {
    move |source| WalStorageError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Moves `src` (a file, directory or symlink) to `dst`. The source goes only after
/// its copy is complete, so a rerun after a crash finds every file in one place or
/// the other, and the source (still there) is the whole one.
fn move_entry(src: &Path, dst: &Path) -> Result<(), WalStorageError> {
    let meta = std::fs::symlink_metadata(src).map_err(io_err("read", src))?;
    if meta.is_dir() {
        // A directory left at the destination by an interrupted move is merged into.
        match std::fs::create_dir(dst) {
            Ok(()) => {
                std::fs::set_permissions(dst, meta.permissions()).map_err(io_err("chmod", dst))?
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", dst)(e)),
        }
        for entry in std::fs::read_dir(src).map_err(io_err("read", src))? {
            let entry = entry.map_err(io_err("read", src))?;
            move_entry(&entry.path(), &dst.join(entry.file_name()))?;
        }
        return std::fs::remove_dir(src).map_err(io_err("remove", src));
    }
    // Same file system: one atomic rename (it replaces a stale copy at dst).
    match std::fs::rename(src, dst) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {}
        Err(e) => return Err(io_err("move", src)(e)),
    }
    // Another volume (the WAL volume is its own PVC): copy under a temporary name,
    // sync, rename into place, then remove the source.
    let tmp = dst.with_file_name(format!(
        "{}.barrelman-tmp",
        dst.file_name().unwrap_or_default().to_string_lossy()
    ));
    if meta.file_type().is_symlink() {
        let to = std::fs::read_link(src).map_err(io_err("read", src))?;
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&to, &tmp).map_err(io_err("create", &tmp))?;
    } else {
        std::fs::copy(src, &tmp).map_err(io_err("copy to", &tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err("sync", &tmp))?;
    }
    std::fs::rename(&tmp, dst).map_err(io_err("rename", &tmp))?;
    std::fs::remove_file(src).map_err(io_err("remove", src))
}

/// Moves the contents of `$PGDATA/pg_wal` into `wal_dir` and replaces `pg_wal` with a
/// symlink to it, as upstream does for a Cluster with `spec.walStorage`. Idempotent:
/// a `pg_wal` already linked to `wal_dir` is left alone, and a move interrupted at
/// any point (some files moved, the directory removed but no link yet) is finished
/// by the next call without losing a file. A `pg_wal` linked elsewhere is refused.
pub fn move_wal_to_storage(pgdata: &Path, wal_dir: &Path) -> Result<(), WalStorageError> {
    let pg_wal = pgdata.join("pg_wal");
    match std::fs::symlink_metadata(&pg_wal) {
        Ok(m) if m.file_type().is_symlink() => {
            let to = std::fs::read_link(&pg_wal).map_err(io_err("read", &pg_wal))?;
            if to == wal_dir {
                return Ok(());
            }
            return Err(WalStorageError::Unexpected {
                what: format!("a symlink to {}", to.display()),
                pg_wal,
                wal_dir: wal_dir.to_path_buf(),
            });
        }
        Ok(m) if m.is_dir() => {
            if !wal_dir.exists() {
                std::fs::create_dir_all(wal_dir).map_err(io_err("create", wal_dir))?;
                std::fs::set_permissions(wal_dir, m.permissions())
                    .map_err(io_err("chmod", wal_dir))?;
            }
            move_entry(&pg_wal, wal_dir)?;
        }
        Ok(_) => {
            return Err(WalStorageError::Unexpected {
                what: "a file".into(),
                pg_wal,
                wal_dir: wal_dir.to_path_buf(),
            })
        }
        // Removed by an interrupted call before it made the link.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(wal_dir).map_err(io_err("create", wal_dir))?;
        }
        Err(e) => return Err(io_err("read", &pg_wal)(e)),
    }
    std::os::unix::fs::symlink(wal_dir, &pg_wal).map_err(io_err("create the symlink", &pg_wal))
}

/// Why a Restore call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreJobError {
    /// The Cluster cannot be decoded or names no recovery store.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The sidecar has no `PGDATA`.
    #[error(
        "the restore sidecar has no PGDATA, so there is nowhere to restore to; set the \
         PGDATA environment variable of the sidecar (CloudNativePG sets it in the restore Job)"
    )]
    NoPgdata,
    /// An ObjectStore could not be read or opened.
    #[error(transparent)]
    Store(WalError),
    /// The Cluster's own archive already holds WAL (upstream: "Expected empty archive").
    #[error(
        "the Cluster's archive ObjectStore {store:?} (server {server:?}) is not empty, so \
         the recovered cluster would archive over another cluster's WAL: {source}; set \
         another serverName in the Cluster's spec.plugins entry for {}, or annotate the \
         Cluster with {SKIP_EMPTY_CHECK_ANNOTATION}=enabled if this is intended",
        crate::PLUGIN_NAME
    )]
    ArchiveNotEmpty {
        /// The ObjectStore.
        store: String,
        /// The server name.
        server: String,
        /// What the check found.
        #[source]
        source: StorageError,
    },
    /// Reading the recovery store failed.
    #[error("cannot read the recovery ObjectStore {store:?} (server {server:?}): {source}")]
    Storage {
        /// The ObjectStore.
        store: String,
        /// The server name.
        server: String,
        /// Why.
        #[source]
        source: StorageError,
    },
    /// The recovery target cannot be read.
    #[error(transparent)]
    BadTarget(SelectError),
    /// No backup fits the recovery target.
    #[error(
        "no target backup found in the recovery ObjectStore {store:?} (server {server:?}, \
         {location}): no backup {wanted}; check spec.bootstrap.recovery.recoveryTarget and \
         the backups there (barman-cloud-backup-list)"
    )]
    NoTargetBackup {
        /// The ObjectStore.
        store: String,
        /// The server name.
        server: String,
        /// Where that is.
        location: String,
        /// What was looked for.
        wanted: String,
    },
    /// The backup's first WAL is not in the recovery store.
    #[error(
        "the first WAL {wal} of backup {backup} is not in {location}, so no recovery from \
         it can start; restore that segment into the archive or choose another backup \
         (recoveryTarget.backupID)"
    )]
    FirstWalMissing {
        /// The segment.
        wal: String,
        /// The backup.
        backup: String,
        /// The WAL archive.
        location: String,
    },
    /// The restore itself failed.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// Moving `pg_wal` onto the WAL volume failed.
    #[error("the backup is restored but its WAL cannot be moved to the WAL volume: {0}")]
    WalStorage(#[from] WalStorageError),
}

impl Classified for RestoreJobError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Config(_) | Self::BadTarget(_) => ErrorClass::Input,
            Self::NoPgdata | Self::ArchiveNotEmpty { .. } => ErrorClass::Conflict,
            Self::Store(e) => e.class(),
            Self::Storage { source, .. } => source.class(),
            Self::NoTargetBackup { .. } | Self::FirstWalMissing { .. } => ErrorClass::NotFound,
            // ops::restore classes every store failure as "operation failed"
            // (barman-cloud-restore's exit 1); a transient one must stay retriable
            // for the Job's next pod.
            Self::Restore(RestoreError::Storage(e)) => e.class(),
            Self::Restore(e) => e.class(),
            Self::WalStorage(_) => ErrorClass::Failed,
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::Store(e) => e.hint(),
            Self::Storage { source, .. } => source.hint(),
            Self::Restore(e) => e.hint(),
            _ => None,
        }
    }
}

impl RestoreJobError {
    /// The gRPC status: store resolution answers as WAL.Restore does (FailedPrecondition
    /// for a refused Secret); a missing PGDATA, a non-empty archive and a PGDATA that
    /// already holds files are FailedPrecondition; the rest by class as WAL.Restore ([`grpc_code`]): NotFound,
    /// InvalidArgument, Unavailable (retriable) or Internal.
    pub fn to_status(&self) -> Status {
        let code = match self {
            Self::Store(e) => return e.to_status(WalRpc::Restore),
            Self::NoPgdata
            | Self::ArchiveNotEmpty { .. }
            | Self::Restore(RestoreError::NotEmpty(_)) => Code::FailedPrecondition,
            _ => grpc_code(WalRpc::Restore, self.class()),
        };
        match self.hint() {
            Some(h) => Status::new(code, format!("{self}; {h}")),
            None => Status::new(code, self.to_string()),
        }
    }
}

/// The RestoreJobHooks service.
#[derive(Clone)]
pub struct RestoreJobService {
    settings: Arc<Settings>,
    stores: Stores,
    /// One Restore at a time: two concurrent calls would both find PGDATA empty and
    /// extract into it together; the second now waits and then finds it restored.
    running: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for RestoreJobService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreJobService")
            .field("pgdata", &self.settings.pgdata)
            .finish_non_exhaustive()
    }
}

impl RestoreJobService {
    /// The service of the restore sidecar with `settings`, reading ObjectStores and
    /// Secrets through `kube`.
    pub fn new(settings: Settings, kube: Option<Arc<KubeAccess>>) -> Self {
        let stores = Stores::new(kube, &settings);
        Self::with_stores(settings, stores)
    }

    /// As [`RestoreJobService::new`], sharing `stores` with the WAL service.
    pub(crate) fn with_stores(settings: Settings, stores: Stores) -> Self {
        RestoreJobService {
            settings: Arc::new(settings),
            stores,
            running: Arc::default(),
        }
    }

    async fn open(&self, r: &StoreRef) -> Result<crate::store::Opened, RestoreJobError> {
        self.stores
            .open(r)
            .await
            .map_err(|e| RestoreJobError::Store(WalError::from(e)))
    }

    async fn do_restore(&self, req: RestoreRequest) -> Result<RestoreResponse, RestoreJobError> {
        let cluster = Cluster::from_json(&req.cluster_definition)?;
        let config = PluginConfiguration::from_cluster(&cluster);
        let recovery = config.recovery_store()?.clone();
        let pgdata = self
            .settings
            .pgdata
            .clone()
            .ok_or(RestoreJobError::NoPgdata)?;

        // 1. The recovered cluster's own archive must be empty, unless told otherwise
        // (the request's field; absent: the annotation, never the PGDATA marker).
        if let Some(own) = &config.archive {
            let skipped = cluster
                .metadata
                .annotations
                .get(SKIP_EMPTY_CHECK_ANNOTATION)
                .is_some_and(|v| v == "enabled");
            if req.check_empty_wal_archive.unwrap_or(!skipped) {
                let opened = self.open(own).await?;
                barrelman_ops::wal::check_empty(&opened.archive, None)
                    .await
                    .map_err(|source| match source {
                        StorageError::NotEmpty { .. } => RestoreJobError::ArchiveNotEmpty {
                            store: own.object_store.clone(),
                            server: own.server_name.clone(),
                            source,
                        },
                        source => RestoreJobError::Storage {
                            store: own.object_store.clone(),
                            server: own.server_name.clone(),
                            source,
                        },
                    })?;
            }
        }

        // 2. The backup, chosen again on every call (a retried Job pod re-evaluates).
        let opened = self.open(&recovery).await?;
        let archive = &opened.archive;
        let storage = |source| RestoreJobError::Storage {
            store: recovery.object_store.clone(),
            server: recovery.server_name.clone(),
            source,
        };
        let (catalog, unreadable) = barrelman_ops::catalog::load(archive)
            .await
            .map_err(storage)?;
        for u in &unreadable {
            tracing::warn!("skipping an unreadable backup.info: {u}");
        }
        let target = cluster
            .spec
            .bootstrap
            .recovery
            .as_ref()
            .and_then(|r| r.recovery_target.as_ref());
        let backup = select_backup(&catalog, target).map_err(|e| match e {
            SelectError::NoBackup(wanted) => RestoreJobError::NoTargetBackup {
                store: recovery.object_store.clone(),
                server: recovery.server_name.clone(),
                location: archive.location(),
                wanted,
            },
            e => RestoreJobError::BadTarget(e),
        })?;
        let id = backup.backup_id.clone();
        tracing::info!(backup = %id, store = %recovery.object_store, server = %recovery.server_name, "restoring");

        // 3. Recovery cannot start without the backup's first WAL.
        let begin = backup
            .begin_wal
            .clone()
            .unwrap_or_else(|| "(none recorded in its backup.info)".into());
        let missing = || RestoreJobError::FirstWalMissing {
            wal: begin.clone(),
            backup: id.clone(),
            location: archive.location(),
        };
        let name = WalName::parse(&begin).map_err(|_| missing())?;
        match archive.locate_wal(&name, true).await {
            Ok(_) => {}
            Err(StorageError::WalNotFound { .. }) => return Err(missing()),
            Err(e) => return Err(storage(e)),
        }

        // 4. The restore: every part streamed and extracted in parallel.
        let jobs = opened
            .store
            .spec
            .configuration
            .data
            .as_ref()
            .and_then(|d| d.jobs)
            .map_or(DEFAULT_RESTORE_JOBS, |j| (j.max(1)) as usize);
        let jobs = self.settings.job_parallelism(jobs);
        let opts = RestoreOptions {
            backup: id.clone(),
            target: Default::default(),
            destination: pgdata.clone(),
            tablespace_map: Vec::new(),
            jobs,
        };
        restore_backup(archive, &opts, &Progress::new()).await?;

        // 5. WAL on its own volume.
        if cluster.spec.wal_storage.is_some() {
            move_wal_to_storage(&pgdata, &self.settings.wal_directory)?;
        }
        tracing::info!(backup = %id, pgdata = %pgdata.display(), "restore done");
        Ok(RestoreResponse {
            restore_config: restore_config(),
            envs: Vec::new(),
        })
    }
}

#[tonic::async_trait]
impl RestoreJobHooks for RestoreJobService {
    async fn get_capabilities(
        &self,
        _: Request<RestoreJobHooksCapabilitiesRequest>,
    ) -> Result<Response<RestoreJobHooksCapabilitiesResult>, Status> {
        Ok(Response::new(restore_job_capabilities()))
    }

    async fn restore(
        &self,
        request: Request<RestoreRequest>,
    ) -> Result<Response<RestoreResponse>, Status> {
        let _one_at_a_time = self.running.lock().await;
        match self.do_restore(request.into_inner()).await {
            Ok(r) => Ok(Response::new(r)),
            Err(e) => {
                tracing::error!("restore failed: {e}");
                Err(e.to_status())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: &str, status: BackupStatus, end: &str, end_lsn: &str, tl: u32) -> BackupInfo {
        let mut i = BackupInfo::new(id);
        i.status = status;
        i.end_time = Some(parse_time(end).unwrap());
        i.end_xlog = Some(end_lsn.into());
        i.timeline = Some(tl);
        i
    }

    fn catalog() -> Vec<BackupInfo> {
        vec![
            b(
                "20260101T000000",
                BackupStatus::Done,
                "2026-01-01 00:10:00+00:00",
                "0/3000100",
                1,
            ),
            b(
                "20260102T000000",
                BackupStatus::Done,
                "2026-01-02 00:10:00+00:00",
                "0/5000100",
                1,
            ),
            b(
                "20260103T000000",
                BackupStatus::Failed,
                "2026-01-03 00:10:00+00:00",
                "0/7000100",
                1,
            ),
            b(
                "20260104T000000",
                BackupStatus::Done,
                "2026-01-04 00:10:00+00:00",
                "0/9000100",
                2,
            ),
        ]
    }

    fn pick(t: Option<RecoveryTarget>) -> Result<String, SelectError> {
        let c = catalog();
        select_backup(&c, t.as_ref()).map(|b| b.backup_id.clone())
    }

    fn target(f: impl FnOnce(&mut RecoveryTarget)) -> Option<RecoveryTarget> {
        let mut t = RecoveryTarget::default();
        f(&mut t);
        Some(t)
    }

    #[test]
    fn selection_follows_upstreams_priorities() {
        let ok = |s: &str| Ok(s.to_string());
        // No target: the latest DONE backup (the FAILED one is never chosen).
        assert_eq!(pick(None), ok("20260104T000000"));
        assert_eq!(pick(target(|_| {})), ok("20260104T000000"));
        // backupID wins over everything else; it must be DONE.
        assert_eq!(
            pick(target(|t| {
                t.backup_id = "20260101T000000".into();
                t.target_time = "2026-01-05 00:00:00".into();
            })),
            ok("20260101T000000")
        );
        assert!(matches!(
            pick(target(|t| t.backup_id = "20260103T000000".into())),
            Err(SelectError::NoBackup(_))
        ));
        assert!(matches!(
            pick(target(|t| t.backup_id = "20990101T000000".into())),
            Err(SelectError::NoBackup(_))
        ));
        // targetTime: the latest DONE backup ending at or before it; no zone is UTC.
        assert_eq!(
            pick(target(|t| t.target_time = "2026-01-02T00:10:00".into())),
            ok("20260102T000000")
        );
        assert_eq!(
            pick(target(|t| t.target_time = "2026-01-02T00:09:59Z".into())),
            ok("20260101T000000")
        );
        // 01:09:59+01:00 is 00:09:59 UTC.
        assert_eq!(
            pick(target(
                |t| t.target_time = "2026-01-02T01:09:59+01:00".into()
            )),
            ok("20260101T000000")
        );
        // targetTime before LSN.
        assert_eq!(
            pick(target(|t| {
                t.target_time = "2026-01-03 12:00:00".into();
                t.target_lsn = "0/1".into();
            })),
            ok("20260102T000000")
        );
        let e = pick(target(|t| t.target_time = "2025-12-31 00:00:00".into())).unwrap_err();
        assert!(e.to_string().starts_with("no target backup found"), "{e}");
        // targetLSN: strictly before.
        assert_eq!(
            pick(target(|t| t.target_lsn = "0/5000100".into())),
            ok("20260101T000000")
        );
        assert_eq!(
            pick(target(|t| t.target_lsn = "0/5000101".into())),
            ok("20260102T000000")
        );
        assert!(pick(target(|t| t.target_lsn = "0/3000100".into())).is_err());
        // targetTLI alone, and as a filter of the time search.
        assert_eq!(
            pick(target(|t| t.target_tli = "1".into())),
            ok("20260102T000000")
        );
        for any in ["", "latest", "current"] {
            assert_eq!(
                pick(target(|t| t.target_tli = any.into())),
                ok("20260104T000000"),
                "{any:?}"
            );
        }
        assert_eq!(
            pick(target(|t| {
                t.target_tli = "2".into();
                t.target_time = "2026-01-05 00:00:00".into();
            })),
            ok("20260104T000000")
        );
        assert!(pick(target(|t| t.target_tli = "3".into())).is_err());
        // Unreadable fields are named.
        for (f, field) in [
            (
                Box::new(|t: &mut RecoveryTarget| t.target_time = "yesterday".into())
                    as Box<dyn FnOnce(&mut RecoveryTarget)>,
                "targetTime",
            ),
            (Box::new(|t| t.target_lsn = "12".into()), "targetLSN"),
            (Box::new(|t| t.target_tli = "two".into()), "targetTLI"),
        ] {
            match pick(target(f)) {
                Err(SelectError::BadTarget { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        // An empty catalog.
        assert!(matches!(
            select_backup(&[], None),
            Err(SelectError::NoBackup(_))
        ));
    }

    #[test]
    fn restore_config_is_upstreams_two_lines() {
        assert_eq!(
            restore_config(),
            "recovery_target_action = promote\n\
             restore_command = '/controller/manager wal-restore --log-destination \
             /controller/log/postgres.json %f %p'\n"
        );
    }

    fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                if p.is_dir() {
                    out.push((rel + "/", Vec::new()));
                    stack.push(p);
                } else {
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    fn pgdata_with_wal(root: &Path) -> PathBuf {
        let pgdata = root.join("pgdata");
        let wal = pgdata.join("pg_wal");
        std::fs::create_dir_all(wal.join("archive_status")).unwrap();
        std::fs::write(wal.join("000000010000000000000002"), b"seg2").unwrap();
        std::fs::write(wal.join("00000002.history"), b"hist").unwrap();
        std::fs::write(
            wal.join("archive_status/000000010000000000000002.done"),
            b"",
        )
        .unwrap();
        pgdata
    }

    #[test]
    fn wal_storage_move_is_idempotent_and_finishes_interrupted_moves() {
        let root = tempfile::tempdir().unwrap();
        let pgdata = pgdata_with_wal(root.path());
        let want = tree(&pgdata.join("pg_wal"));
        let wal_dir = root.path().join("wal/pg_wal");
        move_wal_to_storage(&pgdata, &wal_dir).unwrap();
        assert_eq!(std::fs::read_link(pgdata.join("pg_wal")).unwrap(), wal_dir);
        assert_eq!(tree(&wal_dir), want);
        // Again: nothing changes, nothing fails.
        move_wal_to_storage(&pgdata, &wal_dir).unwrap();
        assert_eq!(tree(&wal_dir), want);
        assert_eq!(tree(&pgdata.join("pg_wal")), want);

        // Interrupted after part of the move: one file already at the WAL volume
        // (and a stale, shorter copy of another), the rest still in pg_wal.
        let root = tempfile::tempdir().unwrap();
        let pgdata = pgdata_with_wal(root.path());
        let want = tree(&pgdata.join("pg_wal"));
        let wal_dir = root.path().join("wal/pg_wal");
        std::fs::create_dir_all(wal_dir.join("archive_status")).unwrap();
        std::fs::rename(
            pgdata.join("pg_wal/00000002.history"),
            wal_dir.join("00000002.history"),
        )
        .unwrap();
        std::fs::write(wal_dir.join("000000010000000000000002"), b"se").unwrap();
        move_wal_to_storage(&pgdata, &wal_dir).unwrap();
        assert_eq!(tree(&wal_dir), want);

        // Interrupted after pg_wal was emptied and removed, before the link.
        let root = tempfile::tempdir().unwrap();
        let pgdata = pgdata_with_wal(root.path());
        let want = tree(&pgdata.join("pg_wal"));
        let wal_dir = root.path().join("wal/pg_wal");
        std::fs::create_dir_all(wal_dir.parent().unwrap()).unwrap();
        std::fs::rename(pgdata.join("pg_wal"), &wal_dir).unwrap();
        move_wal_to_storage(&pgdata, &wal_dir).unwrap();
        assert_eq!(std::fs::read_link(pgdata.join("pg_wal")).unwrap(), wal_dir);
        assert_eq!(tree(&wal_dir), want);

        // A pg_wal linked somewhere else is refused and left alone.
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::remove_file(pgdata.join("pg_wal")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, pgdata.join("pg_wal")).unwrap();
        let e = move_wal_to_storage(&pgdata, &wal_dir).unwrap_err();
        assert!(e.to_string().contains("a symlink to"), "{e}");
        assert_eq!(
            std::fs::read_link(pgdata.join("pg_wal")).unwrap(),
            elsewhere
        );
    }

    /// The WAL volume is its own file system in Kubernetes: rename fails with EXDEV
    /// there and the files are copied. /dev/shm (tmpfs) stands in for it.
    #[test]
    fn wal_storage_move_copies_across_file_systems() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir_in("/dev/shm").unwrap();
        assert_ne!(
            std::fs::metadata(root.path()).unwrap().dev(),
            std::fs::metadata(other.path()).unwrap().dev(),
            "/dev/shm must be another file system for this test"
        );
        let pgdata = pgdata_with_wal(root.path());
        std::os::unix::fs::symlink("000000010000000000000002", pgdata.join("pg_wal/link")).unwrap();
        let want = tree(&pgdata.join("pg_wal"));
        let wal_dir = other.path().join("pg_wal");
        move_wal_to_storage(&pgdata, &wal_dir).unwrap();
        assert_eq!(std::fs::read_link(pgdata.join("pg_wal")).unwrap(), wal_dir);
        assert_eq!(tree(&wal_dir), want);
        assert_eq!(
            std::fs::read_link(wal_dir.join("link")).unwrap(),
            PathBuf::from("000000010000000000000002")
        );
        // No temporary copy is left behind.
        assert!(!tree(&wal_dir)
            .iter()
            .any(|(n, _)| n.contains("barrelman-tmp")));
        move_wal_to_storage(&pgdata, &wal_dir).unwrap();
        assert_eq!(tree(&wal_dir), want);
    }

    #[test]
    fn statuses_keep_retriable_failures_retriable() {
        let unavailable =
            RestoreJobError::Restore(RestoreError::Storage(StorageError::Unreachable {
                endpoint: "http://127.0.0.1:1".into(),
                detail: "refused".into(),
            }));
        assert_eq!(unavailable.to_status().code(), Code::Unavailable);
        assert_eq!(
            RestoreJobError::NoPgdata.to_status().code(),
            Code::FailedPrecondition
        );
        let missing = RestoreJobError::FirstWalMissing {
            wal: "000000010000000000000002".into(),
            backup: "20260101T000000".into(),
            location: "s3://b/p/s".into(),
        };
        let s = missing.to_status();
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("000000010000000000000002"), "{s:?}");
    }
}
