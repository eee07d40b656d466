//! A base backup: `pg_backup_start`, tablespaces and PGDATA as barman-style tar
//! parts compressed and uploaded by parallel workers, `pg_backup_stop`, the final
//! part with `global/pg_control` and `backup_label`, and `backup.info` marked DONE
//! only once every WAL segment the backup needs is in the archive and every part it
//! uploaded is still stored at its size. The id is claimed with a create-only write
//! of the STARTED `backup.info`, so no two backups ever share one; DONE carries the
//! list of parts that `restore` and `verify` check.

use crate::plan;
use crate::progress::Progress;
use barrelman_core::backup_info::{BackupInfo, BackupStatus, PartsManifest, Tablespace};
use barrelman_core::error::{Classified, ErrorClass};
use barrelman_core::layout::{TarPart, DATA_ITEM};
use barrelman_core::lsn::Lsn;
use barrelman_core::pyliteral::PyValue;
use barrelman_core::wal::{InvalidWalName, WalName};
use barrelman_core::Compression;
use barrelman_postgres::session::{BackupStart, PgError, ServerInfo, Session};
use barrelman_postgres::tarball::TarWriter;
use barrelman_postgres::walk::{self, EntryKind, WalkEntry};
use barrelman_storage::codec::CompressWriter;
use barrelman_storage::{Archive, StorageError, UploadHandle, UploadPlan};
use bytes::Bytes;
use std::borrow::Cow;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to take the backup.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// One of None, Gzip, Bzip2, Snappy, Lz4 (what barman reads for tars).
    pub compression: Compression,
    /// Codec level; `None` is the default (gzip 6, bzip2 9, lz4 fast).
    pub level: Option<i32>,
    /// Ask PostgreSQL for an immediate checkpoint instead of a spread one.
    pub immediate_checkpoint: bool,
    /// Parallel tar workers (each compresses and uploads its own parts).
    pub jobs: usize,
    /// A part is closed once its compressed size passes this (`-S`).
    pub max_archive_size: u64,
    /// The smallest multipart upload chunk (`--min-chunk-size`); `None` for the default.
    pub min_chunk_size: Option<u64>,
    /// `-n/--name`.
    pub name: Option<String>,
    /// Tags of every uploaded object.
    pub tags: Vec<(String, String)>,
    /// How long to wait for the backup's WAL to reach the archive.
    pub wal_wait: Duration,
    /// Upload at most this many (compressed) bytes per second, all workers together.
    pub max_bandwidth: Option<u64>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            compression: Compression::None,
            level: None,
            immediate_checkpoint: false,
            jobs: 2,
            max_archive_size: 100 << 30,
            min_chunk_size: None,
            name: None,
            tags: Vec::new(),
            wal_wait: Duration::from_secs(120),
            max_bandwidth: None,
        }
    }
}

/// A backup that did not end DONE.
#[derive(Debug, thiserror::Error)]
#[error("{failure}")]
pub struct BackupError {
    /// What stopped it; its text is the `error` of the FAILED `backup.info`.
    #[source]
    pub failure: BackupFailure,
    /// What was written (FAILED) when the failure came after the backup started.
    pub info: Option<Box<BackupInfo>>,
}

impl BackupError {
    fn early(failure: impl Into<BackupFailure>) -> Self {
        Self {
            failure: failure.into(),
            info: None,
        }
    }
}

impl Classified for BackupError {
    /// A backup that started and did not complete has failed, whatever stopped it;
    /// before it starts, the cause's class says what to change.
    fn class(&self) -> ErrorClass {
        match self.info {
            Some(_) => ErrorClass::Failed,
            None => self.failure.class(),
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        self.failure.hint()
    }
}

/// What stopped a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupFailure {
    /// Base backups are tar files, which barman reads with a few codecs only.
    #[error(transparent)]
    UnsupportedCompression(#[from] barrelman_core::compression::NotForBackups),
    /// The backup name is reserved or looks like an id.
    #[error(transparent)]
    InvalidName(#[from] plan::InvalidBackupName),
    /// PostgreSQL refused or failed a step (server facts, `pg_backup_start`/`stop`).
    #[error("{0}")]
    Server(#[source] PgError),
    /// The directory of a candidate backup id cannot be listed.
    #[error("cannot list {dir}: {source}")]
    ListIds {
        /// The backup directory.
        dir: String,
        /// The store's error.
        #[source]
        source: StorageError,
    },
    /// `backup.info` (STARTED or DONE) cannot be written.
    #[error("failure uploading backup.info file ({0})")]
    WriteInfo(#[source] StorageError),
    /// Every backup id of the next minutes is taken.
    #[error(
        "no free backup id in {attempts} seconds from now under {base}: another backup claims every second; retry later"
    )]
    NoFreeId {
        /// How many ids were tried.
        attempts: u32,
        /// The base backup prefix.
        base: String,
    },
    /// Reading the files or uploading the tar parts failed.
    #[error("failure uploading data ({0})")]
    Copy(#[source] CopyError),
    /// The backup's `backup.info` has no WAL range.
    #[error("the backup has no WAL range")]
    NoWalRange,
    /// The backup's WAL range cannot be enumerated.
    #[error(transparent)]
    WalRange(#[from] InvalidWalRange),
    /// The archive cannot be asked for the backup's WAL.
    #[error("cannot check the WAL archive: {0}")]
    CheckWal(#[source] StorageError),
    /// A WAL segment the backup needs did not arrive in time.
    #[error(
        "WAL segment {first} needed by this backup is not in the archive {location} after waiting {waited}s: \
         WAL archiving is not reaching this archive, so the backup could never be restored. \
         Check archive_command (in CloudNativePG: set isWALArchiver: true on the barman-cloud plugin)"
    )]
    WalMissing {
        /// The first missing segment.
        first: WalName,
        /// The archive.
        location: String,
        /// Seconds waited.
        waited: u64,
    },
    /// The uploaded parts cannot be listed for the final check.
    #[error("cannot list {dir} to check the uploaded parts: {source}")]
    ListParts {
        /// The backup directory.
        dir: String,
        /// The store's error.
        #[source]
        source: StorageError,
    },
    /// The STARTED `backup.info` cannot be read back for the final check.
    #[error("cannot read {key} back: {source}")]
    ReadInfoBack {
        /// Its key.
        key: String,
        /// The store's error.
        #[source]
        source: StorageError,
    },
    /// The backup was deleted (or taken over) while it ran.
    #[error(
        "{key} was deleted or changed while the backup ran (was it deleted with `delete --force`?): the backup is not complete"
    )]
    Deleted {
        /// The `backup.info` key.
        key: String,
    },
    /// A tar part is stored at another size than was uploaded.
    #[error("tar part {key} holds {stored} bytes after the upload of {written}: the backup is not complete")]
    PartSize {
        /// The part's key.
        key: String,
        /// Its stored size.
        stored: u64,
        /// The size uploaded.
        written: u64,
    },
    /// A tar part is gone from the archive.
    #[error(
        "tar part {key} was uploaded but is no longer in the archive (deleted while the backup ran?): the backup is not complete"
    )]
    PartMissing {
        /// The part's key.
        key: String,
    },
}

impl Classified for BackupFailure {
    fn class(&self) -> ErrorClass {
        match self {
            Self::UnsupportedCompression(_) => ErrorClass::Input,
            Self::InvalidName(e) => e.class(),
            Self::Server(e) => e.class(),
            Self::ListIds { source, .. }
            | Self::WriteInfo(source)
            | Self::CheckWal(source)
            | Self::ListParts { source, .. }
            | Self::ReadInfoBack { source, .. } => source.class(),
            Self::Copy(e) => e.class(),
            Self::NoFreeId { .. }
            | Self::Deleted { .. }
            | Self::PartSize { .. }
            | Self::PartMissing { .. } => ErrorClass::Conflict,
            Self::NoWalRange | Self::WalRange(_) => ErrorClass::Internal,
            Self::WalMissing { .. } => ErrorClass::Failed,
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::Server(e) => e.hint(),
            Self::ListIds { source, .. }
            | Self::WriteInfo(source)
            | Self::CheckWal(source)
            | Self::ListParts { source, .. }
            | Self::ReadInfoBack { source, .. } => source.hint(),
            Self::Copy(CopyError::Upload(source)) => source.hint(),
            Self::WalMissing { .. } => Some(Cow::Borrowed(
                "check archive_command (in CloudNativePG: set isWALArchiver: true on the barman-cloud plugin)",
            )),
            Self::Deleted { .. } | Self::PartSize { .. } | Self::PartMissing { .. } => Some(
                Cow::Borrowed("do not delete a backup while it runs; take the backup again"),
            ),
            _ => None,
        }
    }
}

/// Why copying the server's files into uploaded tar parts failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A tablespace directory cannot be read.
    #[error("cannot read tablespace {name} at {}: {source}", path.display())]
    ReadTablespace {
        /// The tablespace's name.
        name: String,
        /// Its location.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: io::Error,
    },
    /// PGDATA cannot be read.
    #[error("cannot read PGDATA {}: {source}", path.display())]
    ReadPgdata {
        /// PGDATA.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: io::Error,
    },
    /// `global/pg_control` cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadControl {
        /// Its path.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: io::Error,
    },
    /// Writing a tar part failed (a file read, the compressor, the upload stream).
    #[error("{0}")]
    Tar(#[source] io::Error),
    /// A tar worker stopped without an answer (a panic or a cancelled task).
    #[error("internal: tar worker failed: {0}")]
    Worker(#[source] tokio::task::JoinError),
    /// The worker writing the last part stopped without an answer.
    #[error("internal: {0}")]
    LastPart(#[source] tokio::task::JoinError),
    /// The upload of a tar part failed.
    #[error("{0}")]
    Upload(#[source] StorageError),
}

impl Classified for CopyError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Upload(e) => e.class(),
            _ => ErrorClass::Internal,
        }
    }
}

/// A backup's WAL range that cannot be enumerated.
#[derive(Debug, thiserror::Error)]
pub enum InvalidWalRange {
    /// `begin_wal` is not a segment name.
    #[error("invalid begin_wal {0}")]
    Begin(String),
    /// `end_wal` is not a segment name.
    #[error("invalid end_wal {0}")]
    End(String),
    /// A segment of the range has no valid name.
    #[error(transparent)]
    Name(#[from] InvalidWalName),
    /// More than a million segments.
    #[error("the backup's WAL range is implausibly long")]
    TooLong,
}

impl Classified for InvalidWalRange {
    /// The range comes from a stored `backup.info`: damaged data.
    fn class(&self) -> ErrorClass {
        ErrorClass::Internal
    }
}

fn default_level(c: Compression, given: Option<i32>) -> i32 {
    given.unwrap_or(c.default_backup_level())
}

/// Takes a base backup of the server behind `session` into `archive`.
pub async fn take_backup(
    archive: &Archive,
    session: &Session,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<BackupInfo, BackupError> {
    opts.compression
        .for_backups()
        .map_err(|e| BackupError::early(BackupFailure::UnsupportedCompression(e)))?;
    if let Some(n) = &opts.name {
        plan::check_backup_name(n).map_err(BackupError::early)?;
    }
    let server = session
        .server_info()
        .await
        .map_err(|e| BackupError::early(BackupFailure::Server(e)))?;
    if server.version_num >= 140000 {
        session
            .execute("SET idle_session_timeout TO 0", "idle_session_timeout")
            .await
            .map_err(|e| BackupError::early(BackupFailure::Server(e)))?;
    }
    let first_choice = chrono::Local::now().naive_local();
    // The label names the id tried first; on a collision the backup gets a later id
    // (the label is informational: nothing reads the id from it).
    let label = format!(
        "Barman backup cloud {}",
        first_choice.format(BACKUP_ID_FORMAT)
    );
    let start = session
        .backup_start(&label, opts.immediate_checkpoint)
        .await
        .map_err(|e| BackupError::early(BackupFailure::Server(e)))?;
    let mut info = started_info(&server, &start, opts.name.as_deref());
    // STARTED is written once, create-only, and not again until FAILED or DONE: a
    // rewrite could bring back a backup.info that a `delete --force` just removed.
    let backup_id = claim_backup_id(archive, &mut info, first_choice, &opts.tags).await?;
    let info_key = archive.layout().backup_info_key(&backup_id);
    tracing::info!(
        "backup {backup_id} started at {} ({})",
        start.lsn,
        info.begin_wal.as_deref().unwrap_or("?")
    );

    let began = Instant::now();
    let copied = copy_and_stop(archive, session, opts, progress, &server, &backup_id).await;
    let done = match copied {
        Ok(done) => done,
        Err(failure) => return Err(fail(archive, &info_key, info, failure, &opts.tags).await),
    };
    info.backup_label = Some(done.label.clone());
    let seg = server.wal_segment_size;
    let end_wal = done.stop_lsn.segment(done.stop_timeline, seg).to_string();
    info.end_offset = Some(done.stop_lsn.offset(seg));
    info.end_time = Some(done.stop_time);
    info.end_wal = Some(end_wal);
    info.end_xlog = Some(done.stop_lsn.to_string());
    info.copy_stats = Some(copy_stats(began.elapsed(), opts.jobs, &done.item_times));
    if let Err(failure) = wait_for_wal(archive, &info, seg, opts.wal_wait).await {
        return Err(fail(archive, &info_key, info, failure, &opts.tags).await);
    }
    match check_stored(archive, &info_key, &done.parts).await {
        Ok(()) => {}
        Err(StoredCheck::Gone(failure)) => {
            // Someone deleted the backup while it ran: writing FAILED would bring
            // back a directory they removed, and the parts uploaded after the delete
            // would stay behind without a backup.info.
            let keys: Vec<String> = done.parts.iter().map(|(k, _)| k.clone()).collect();
            if let Err(e) = archive.delete_many(&keys).await {
                tracing::error!("cannot remove the parts of the deleted backup: {e}");
            }
            return Err(BackupError {
                failure,
                info: Some(Box::new(info)),
            });
        }
        Err(StoredCheck::Incomplete(failure)) => {
            return Err(fail(archive, &info_key, info, failure, &opts.tags).await)
        }
    }
    info.parts = Some(PartsManifest {
        parts: done
            .parts
            .iter()
            .map(|(key, size)| (key.rsplit('/').next().unwrap_or(key).to_string(), *size))
            .collect(),
        damaged: false,
    });
    info.status = BackupStatus::Done;
    archive
        .put_small(&info_key, Bytes::from(info.to_file_text()), &opts.tags)
        .await
        .map_err(|e| BackupError::early(BackupFailure::WriteInfo(e)))?;
    Ok(info)
}

/// barman's backup id: the local time to the second.
const BACKUP_ID_FORMAT: &str = "%Y%m%dT%H%M%S";

/// How many ids (one a second, from now on) a backup tries before giving up.
const ID_ATTEMPTS: u32 = 120;

/// Claims a backup id: the current second's, or the next free one. The claim is the
/// create-only write of the STARTED `backup.info` (a conditional PUT on S3,
/// create-new on a local directory), so two backups starting in the same second
/// get two ids and neither ever writes into the other's directory. An id whose
/// directory holds anything (a backup of an older barman has no `backup.info` while
/// it runs) is skipped too.
async fn claim_backup_id(
    archive: &Archive,
    info: &mut BackupInfo,
    first_choice: chrono::NaiveDateTime,
    tags: &[(String, String)],
) -> Result<String, BackupError> {
    let base = archive.layout().base_prefix();
    let mut at = first_choice;
    for _ in 0..ID_ATTEMPTS {
        let id = at.format(BACKUP_ID_FORMAT).to_string();
        at += chrono::Duration::seconds(1);
        let dir = archive.layout().backup_dir(&id);
        let occupied = !archive
            .list_objects(&dir)
            .await
            .map_err(|source| {
                BackupError::early(BackupFailure::ListIds {
                    dir: dir.clone(),
                    source,
                })
            })?
            .is_empty();
        if occupied {
            tracing::info!(
                "backup id {id} is taken (its directory holds objects); trying the next second"
            );
            continue;
        }
        info.backup_id = id.clone();
        let key = archive.layout().backup_info_key(&id);
        let created = archive
            .put_small_create(&key, Bytes::from(info.to_file_text()), tags)
            .await
            .map_err(|e| BackupError::early(BackupFailure::WriteInfo(e)))?;
        if created {
            return Ok(id);
        }
        tracing::info!(
            "backup id {id} is taken (another backup claimed it at the same moment); trying the next second"
        );
    }
    Err(BackupError::early(BackupFailure::NoFreeId {
        attempts: ID_ATTEMPTS,
        base,
    }))
}

/// Why the uploaded parts cannot be declared DONE.
enum StoredCheck {
    /// `backup.info` is gone or no longer STARTED: the backup was deleted or taken
    /// over while it ran.
    Gone(BackupFailure),
    /// A part is missing or of another size.
    Incomplete(BackupFailure),
}

/// Checks, with one listing, that every part this backup uploaded is stored at the
/// size it was written, and that its STARTED `backup.info` is still there: only
/// then may it become DONE (a `delete` during the backup must not end in a DONE
/// backup with missing parts).
async fn check_stored(
    archive: &Archive,
    info_key: &str,
    parts: &[(String, u64)],
) -> Result<(), StoredCheck> {
    let dir = info_key
        .strip_suffix(barrelman_core::layout::BACKUP_INFO)
        .map_or(info_key, |d| d.trim_end_matches('/'));
    let listed = archive.list_objects(dir).await.map_err(|source| {
        StoredCheck::Incomplete(BackupFailure::ListParts {
            dir: dir.to_string(),
            source,
        })
    })?;
    let sizes: std::collections::HashMap<&str, u64> =
        listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let still_started = match archive.get_small(info_key).await {
        Ok(Some(body)) => std::str::from_utf8(&body)
            .ok()
            .and_then(|t| BackupInfo::parse("-", t).ok())
            .is_some_and(|i| i.status == BackupStatus::Started),
        Ok(None) => false,
        Err(source) => {
            return Err(StoredCheck::Incomplete(BackupFailure::ReadInfoBack {
                key: info_key.to_string(),
                source,
            }))
        }
    };
    if !still_started {
        return Err(StoredCheck::Gone(BackupFailure::Deleted {
            key: info_key.to_string(),
        }));
    }
    for (key, size) in parts {
        match sizes.get(key.as_str()) {
            Some(s) if s == size => {}
            Some(s) => {
                return Err(StoredCheck::Incomplete(BackupFailure::PartSize {
                    key: key.clone(),
                    stored: *s,
                    written: *size,
                }))
            }
            None => {
                return Err(StoredCheck::Incomplete(BackupFailure::PartMissing {
                    key: key.clone(),
                }))
            }
        }
    }
    Ok(())
}

async fn fail(
    archive: &Archive,
    key: &str,
    mut info: BackupInfo,
    failure: BackupFailure,
    tags: &[(String, String)],
) -> BackupError {
    info.status = BackupStatus::Failed;
    info.error = Some(failure.to_string().replace('\n', " "));
    // A backup deleted while it ran (`delete --force`) stays deleted.
    if let Ok(None) = archive.get_small(key).await {
        tracing::warn!("{key} was deleted while the backup ran: not writing it back as FAILED");
    } else if let Err(e) = archive
        .put_small(key, Bytes::from(info.to_file_text()), tags)
        .await
    {
        tracing::error!("cannot write the FAILED backup.info: {e}");
    }
    BackupError {
        failure,
        info: Some(Box::new(info)),
    }
}

/// The STARTED `backup.info`: what the server says about itself, where the backup
/// starts, and its name (barman adds the name only at the end; a crashed backup is
/// easier to place with it).
fn started_info(server: &ServerInfo, start: &BackupStart, name: Option<&str>) -> BackupInfo {
    let seg = server.wal_segment_size;
    let mut i = BackupInfo::new("");
    i.status = BackupStatus::Started;
    i.server_name = Some("cloud".into());
    i.backup_name = name.map(String::from);
    i.begin_offset = Some(start.lsn.offset(seg));
    i.begin_time = Some(start.time);
    i.begin_wal = Some(start.lsn.segment(start.timeline, seg).to_string());
    i.begin_xlog = Some(start.lsn.to_string());
    i.cluster_size = server.cluster_size.map(|s| s as u64);
    i.config_file = server.config_file.clone();
    i.hba_file = server.hba_file.clone();
    i.ident_file = server.ident_file.clone();
    i.data_checksums = server.data_checksums.clone();
    i.summarize_wal = server.summarize_wal.clone();
    i.pgdata = Some(server.data_directory.clone());
    i.systemid = Some(server.systemid.clone());
    i.tablespaces = (!server.tablespaces.is_empty()).then(|| {
        server
            .tablespaces
            .iter()
            .map(|t| Tablespace {
                name: t.name.clone(),
                oid: t.oid,
                location: t.location.clone(),
            })
            .collect()
    });
    i.timeline = Some(start.timeline);
    i.version = Some(server.version_num as u32);
    i.xlog_segment_size = Some(seg);
    i
}

fn copy_stats(total: Duration, jobs: usize, items: &[(String, f64)]) -> PyValue {
    let per_item = |f: &dyn Fn(f64) -> f64| {
        PyValue::Dict(
            items
                .iter()
                .map(|(k, v)| (PyValue::Str(k.clone()), PyValue::Float(f(*v))))
                .collect(),
        )
    };
    let copy: f64 = items.iter().map(|(_, v)| v).sum();
    PyValue::Dict(vec![
        ("total_time".into(), PyValue::Float(total.as_secs_f64())),
        ("number_of_workers".into(), PyValue::Int(jobs as i64)),
        ("analysis_time".into(), PyValue::Int(0)),
        ("analysis_time_per_item".into(), per_item(&|_| 0.0)),
        ("copy_time_per_item".into(), per_item(&|v| v)),
        ("serialized_copy_time_per_item".into(), per_item(&|v| v)),
        ("copy_time".into(), PyValue::Float(copy)),
        ("serialized_copy_time".into(), PyValue::Float(copy)),
    ])
}

struct Copied {
    label: String,
    stop_lsn: Lsn,
    stop_timeline: u32,
    stop_time: chrono::DateTime<chrono::FixedOffset>,
    item_times: Vec<(String, f64)>,
    /// Every uploaded tar part: key and stored size.
    parts: Vec<(String, u64)>,
}

#[allow(clippy::too_many_arguments)]
async fn copy_and_stop(
    archive: &Archive,
    session: &Session,
    opts: &BackupOptions,
    progress: &Progress,
    server: &ServerInfo,
    backup_id: &str,
) -> Result<Copied, BackupFailure> {
    let pgdata = PathBuf::from(&server.data_directory);
    let major = (server.version_num / 10000).to_string();
    let prefix = walk::tablespace_version_prefix(&major);
    let mut item_times = Vec::new();
    let mut parts = Vec::new();

    // Tablespaces first, as barman does.
    let mut inside = Vec::new();
    for ts in &server.tablespaces {
        let loc = PathBuf::from(&ts.location);
        if loc.starts_with(&pgdata) {
            inside.push(loc.clone());
        }
        let t0 = Instant::now();
        let entries = walk::walk_tablespace(&loc, &prefix).map_err(|source| {
            BackupFailure::Copy(CopyError::ReadTablespace {
                name: ts.name.clone(),
                path: loc.clone(),
                source,
            })
        })?;
        let mut item = Item::new(archive, opts, backup_id, ts.oid.to_string(), progress);
        parts.extend(item.copy(entries).await.map_err(BackupFailure::Copy)?);
        item_times.push((ts.oid.to_string(), t0.elapsed().as_secs_f64()));
    }

    let t0 = Instant::now();
    let entries = walk::walk_pgdata(&pgdata, &inside).map_err(|source| {
        BackupFailure::Copy(CopyError::ReadPgdata {
            path: pgdata.clone(),
            source,
        })
    })?;
    let mut data = Item::new(archive, opts, backup_id, DATA_ITEM.into(), progress);
    parts.extend(data.copy(entries).await.map_err(BackupFailure::Copy)?);

    // pg_control is read after every data file (as pg_basebackup does) and before
    // the backup stops; config files outside PGDATA are stored by base name.
    let control_path = pgdata.join(walk::PG_CONTROL);
    let control = std::fs::read(&control_path).map_err(|source| {
        BackupFailure::Copy(CopyError::ReadControl {
            path: control_path.clone(),
            source,
        })
    })?;
    let control_meta =
        std::fs::metadata(&control_path).map_err(|e| BackupFailure::Copy(CopyError::Tar(e)))?;
    let outside: Vec<PathBuf> = [&server.config_file, &server.hba_file, &server.ident_file]
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .filter(|p| !p.starts_with(&pgdata) && p.is_file())
        .collect();

    let stop = session
        .backup_stop(false)
        .await
        .map_err(BackupFailure::Server)?;
    if !server.in_recovery {
        session
            .switch_and_mark(&format!("barman_{backup_id}"))
            .await;
    }

    let label = stop.label.clone();
    let label_pgdata = pgdata.clone();
    let last = data
        .finish_with(move |tar| {
            use std::os::unix::fs::MetadataExt;
            tar.append_bytes(
                walk::PG_CONTROL,
                &control,
                control_meta.mode() & 0o7777,
                control_meta.mtime().max(0) as u64,
                u64::from(control_meta.uid()),
                u64::from(control_meta.gid()),
            )?;
            for p in &outside {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                tar.append_file_as(&name, p)?;
            }
            tar.append_backup_label(label.as_bytes(), &label_pgdata)?;
            Ok(())
        })
        .await
        .map_err(BackupFailure::Copy)?;
    parts.push(last);
    item_times.push((DATA_ITEM.into(), t0.elapsed().as_secs_f64()));
    Ok(Copied {
        label: stop.label,
        stop_lsn: stop.lsn,
        stop_timeline: stop.timeline,
        stop_time: stop.time,
        item_times,
        parts,
    })
}

type Tar = TarWriter<CompressWriter<barrelman_storage::ObjectWriter>>;

/// One logical archive (`data` or a tablespace oid) written as numbered parts.
struct Item<'a> {
    archive: &'a Archive,
    opts: &'a BackupOptions,
    backup_id: &'a str,
    name: String,
    progress: &'a Progress,
    next_index: Arc<AtomicUsize>,
}

impl<'a> Item<'a> {
    fn new(
        archive: &'a Archive,
        opts: &'a BackupOptions,
        backup_id: &'a str,
        name: String,
        progress: &'a Progress,
    ) -> Self {
        Self {
            archive,
            opts,
            backup_id,
            name,
            progress,
            next_index: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Copies `entries` with up to `jobs` workers. Worker 0 writes the main part
    /// (index 0) with every directory first, so any extraction order works.
    /// Returns each part's key and stored size.
    async fn copy(&mut self, entries: Vec<WalkEntry>) -> Result<Vec<(String, u64)>, CopyError> {
        let (mut head, files): (Vec<WalkEntry>, Vec<WalkEntry>) = entries
            .into_iter()
            .partition(|e| !matches!(e.kind, EntryKind::File { .. }));
        let sizes: Vec<u64> = files
            .iter()
            .map(|e| match e.kind {
                EntryKind::File { size } => size,
                _ => 0,
            })
            .collect();
        self.progress.add_total(sizes.iter().sum());
        let ranges = plan::split_contiguous(&sizes, self.opts.jobs.max(1));
        let workers = ranges.len();
        self.next_index.store(workers, Ordering::SeqCst);
        let mut files = files;
        let mut groups: Vec<Vec<WalkEntry>> = Vec::with_capacity(workers);
        for r in ranges.iter().rev() {
            groups.push(files.split_off(r.start));
        }
        groups.reverse();
        head.append(&mut groups[0]);
        groups[0] = head;

        let mut tasks = Vec::new();
        for (w, group) in groups.into_iter().enumerate() {
            let bytes: u64 = group
                .iter()
                .map(|e| match e.kind {
                    EntryKind::File { size } => size,
                    _ => 0,
                })
                .sum();
            let part_size = plan::part_size(
                self.opts
                    .max_archive_size
                    .min(bytes + bytes / 10 + (64 << 20)),
                self.opts.min_chunk_size,
            );
            let ctx = self.worker_ctx(part_size);
            tasks.push(tokio::task::spawn_blocking(move || ctx.run(w, group)));
        }
        let mut first_err = None;
        let mut handles = Vec::new();
        for t in tasks {
            match t.await {
                Ok(Ok(h)) => handles.extend(h),
                Ok(Err(e)) => {
                    first_err.get_or_insert(CopyError::Tar(e));
                }
                Err(e) => {
                    first_err.get_or_insert(CopyError::Worker(e));
                }
            }
        }
        let mut parts = Vec::new();
        for (key, h) in handles {
            match h.wait().await {
                Ok(size) => parts.push((key, size)),
                Err(e) => {
                    first_err.get_or_insert(CopyError::Upload(e));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(parts),
        }
    }

    /// Writes one more part with what `fill` adds (after `pg_backup_stop`); returns
    /// its key and stored size.
    async fn finish_with(
        &mut self,
        fill: impl FnOnce(&mut Tar) -> io::Result<()> + Send + 'static,
    ) -> Result<(String, u64), CopyError> {
        let ctx = self.worker_ctx(5 << 20);
        let index = self.next_index.fetch_add(1, Ordering::SeqCst);
        let (key, handle) =
            tokio::task::spawn_blocking(move || -> io::Result<(String, UploadHandle)> {
                let (key, mut tar, handle) = ctx.open_part(index)?;
                fill(&mut tar)?;
                ctx.close_part(tar)?;
                Ok((key, handle))
            })
            .await
            .map_err(CopyError::LastPart)?
            .map_err(CopyError::Tar)?;
        let size = handle.wait().await.map_err(CopyError::Upload)?;
        Ok((key, size))
    }

    fn worker_ctx(&self, part_size: usize) -> WorkerCtx {
        WorkerCtx {
            archive: self.archive.clone(),
            backup_id: self.backup_id.to_string(),
            name: self.name.clone(),
            compression: self.opts.compression,
            level: default_level(self.opts.compression, self.opts.level),
            max_archive_size: self.opts.max_archive_size,
            part_size,
            tags: self.opts.tags.clone(),
            // Each worker gets an equal share of the bandwidth.
            bandwidth: self
                .opts
                .max_bandwidth
                .map(|b| (b / self.opts.jobs.max(1) as u64).max(1)),
            progress: self.progress.clone(),
            next_index: self.next_index.clone(),
        }
    }
}

/// What a blocking tar worker needs.
struct WorkerCtx {
    archive: Archive,
    backup_id: String,
    name: String,
    compression: Compression,
    level: i32,
    max_archive_size: u64,
    part_size: usize,
    tags: Vec<(String, String)>,
    bandwidth: Option<u64>,
    progress: Progress,
    next_index: Arc<AtomicUsize>,
}

impl WorkerCtx {
    fn open_part(&self, index: usize) -> io::Result<(String, Tar, UploadHandle)> {
        let part = TarPart {
            item: self.name.clone(),
            index,
            compression: self.compression,
        };
        let key = self.archive.layout().tar_part_key(&self.backup_id, &part);
        let (writer, handle) = self
            .archive
            .object_writer(&key, UploadPlan::backup_part(self.part_size, &self.tags));
        let cw = CompressWriter::new(self.compression, self.level, writer)?;
        Ok((key, TarWriter::new(cw), handle))
    }

    fn close_part(&self, tar: Tar) -> io::Result<()> {
        let cw = tar.finish()?;
        let writer = cw.finish()?;
        writer.finish()
    }

    /// Writes `entries` into parts starting at index `first`, opening a new part
    /// (next free index) whenever the compressed size passes `max_archive_size`.
    fn run(
        &self,
        first: usize,
        entries: Vec<WalkEntry>,
    ) -> io::Result<Vec<(String, UploadHandle)>> {
        let mut handles = Vec::new();
        let (mut key, mut tar, mut handle) = self.open_part(first)?;
        let mut counter = handle.counter();
        let started = Instant::now();
        let mut sent_before = 0u64;
        for e in &entries {
            let added = tar.append_entry(e)?;
            self.progress.add_done(added.content_bytes());
            if let Some(rate) = self.bandwidth {
                // Sleep until the bytes handed to the uploader fit the rate.
                let sent = sent_before + counter.get();
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            if counter.get() >= self.max_archive_size {
                self.close_part(tar)?;
                sent_before += counter.get();
                handles.push((key, handle));
                let index = self.next_index.fetch_add(1, Ordering::SeqCst);
                (key, tar, handle) = self.open_part(index)?;
                counter = handle.counter();
            }
        }
        self.close_part(tar)?;
        handles.push((key, handle));
        Ok(handles)
    }
}

/// Waits until every segment from `begin_wal` to `end_wal` is in the archive.
async fn wait_for_wal(
    archive: &Archive,
    info: &BackupInfo,
    segment_size: u64,
    wait: Duration,
) -> Result<(), BackupFailure> {
    let (Some(begin), Some(end)) = (info.begin_wal.as_deref(), info.end_wal.as_deref()) else {
        return Err(BackupFailure::NoWalRange);
    };
    let mut missing: Vec<WalName> = wal_range(begin, end, segment_size)?;
    let deadline = Instant::now() + wait;
    loop {
        let mut still = Vec::new();
        for name in missing {
            match archive.find_variants(&name).await {
                Ok(v) if !v.is_empty() => {}
                Ok(_) => still.push(name),
                Err(e) => return Err(BackupFailure::CheckWal(e)),
            }
        }
        missing = still;
        let Some(first) = missing.first() else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(BackupFailure::WalMissing {
                first: first.clone(),
                location: archive.location(),
                waited: wait.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Segment names from `begin` to `end` inclusive (same timeline as `end` for the
/// part after a switch is impossible inside one backup).
pub(crate) fn wal_range(
    begin: &str,
    end: &str,
    segment_size: u64,
) -> Result<Vec<WalName>, InvalidWalRange> {
    use barrelman_core::wal::SegmentName;
    let b = SegmentName::parse(begin).ok_or_else(|| InvalidWalRange::Begin(begin.to_string()))?;
    let e = SegmentName::parse(end).ok_or_else(|| InvalidWalRange::End(end.to_string()))?;
    let mut out = Vec::new();
    let mut s = b;
    while (s.log, s.seg) <= (e.log, e.seg) {
        let name = SegmentName {
            timeline: e.timeline,
            ..s
        };
        out.push(WalName::parse(&name.to_string())?);
        if out.len() > 1_000_000 {
            return Err(InvalidWalRange::TooLong);
        }
        s = s.next(segment_size);
    }
    Ok(out)
}
