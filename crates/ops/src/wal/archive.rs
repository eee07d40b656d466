//! One `archive_command` call: the requested WAL file and, with parallel uploads, the
//! next segments PostgreSQL marked ready.

use barrelman_core::error::{Classified, ErrorClass};
use barrelman_core::wal::{InvalidWalName, WalKind, WalName};
use barrelman_postgres::pgdata;
use barrelman_storage::localfs;
use barrelman_storage::spool::{FileIdentity, Marker, Spool};
use barrelman_storage::{Archive, ArchiveOutcome as Stored, StorageError, UploadOptions};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One `archive_command` call.
#[derive(Debug, Clone)]
pub struct ArchiveRequest {
    /// The path PostgreSQL passed (`%p`, relative to PGDATA or absolute).
    pub wal_path: PathBuf,
    /// Compression, level and tags of the uploaded objects.
    pub upload: UploadOptions,
    /// Tags for `.history` files; when set they replace `upload.tags` (barman does).
    pub history_tags: Option<Vec<(String, String)>>,
    /// PGDATA: `%p` is relative to it, and its `.ready` queue feeds parallel uploads.
    pub pgdata: Option<PathBuf>,
    /// Upload up to `max_parallel - 1` next ready segments in the same call.
    pub max_parallel: usize,
    /// Where pre-archived markers live.
    pub spool_dir: Option<PathBuf>,
    /// Set when the archive must hold no WAL of this file's timeline or a later one
    /// before the upload (a new cluster: CloudNativePG's `.check-empty-wal-archive`
    /// marker). The text says why, for the log (e.g. "PGDATA/.check-empty-wal-archive
    /// exists"). While it is set, parallel-archive markers are cleared, not trusted.
    pub must_be_empty: Option<String>,
}

/// What happened to the requested WAL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedWal {
    /// Uploaded as `key`, `stored` bytes after compression.
    Uploaded {
        /// The object key written.
        key: String,
        /// Bytes stored, after compression.
        stored: u64,
    },
    /// The same content was already archived as `key`; nothing was written.
    AlreadyArchived {
        /// The object key holding the same content.
        key: String,
    },
    /// An earlier call's parallel upload archived this very file (its marker matched):
    /// nothing was read or sent.
    UploadedEarlier,
}

/// The result of a successful [`archive`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveOutcome {
    /// The requested file.
    pub requested: RequestedWal,
    /// Next ready segments uploaded by this call (their failures are only logged:
    /// PostgreSQL asks for them again).
    pub also_uploaded: Vec<WalName>,
    /// Next ready segments this call tried and failed to upload, with the error's
    /// sentence (the command-line faces only log them; the CloudNativePG plugin fails
    /// the call, as upstream's batch does).
    pub also_failed: Vec<(WalName, String)>,
}

impl ArchiveOutcome {
    /// True when this call settled an empty-archive requirement: the caller removes
    /// its marker now (the archive holds this server's first WAL). Not after a call
    /// answered from a parallel-archive marker, which never runs while the archive
    /// must be empty.
    pub fn ends_empty_requirement(&self) -> bool {
        self.requested != RequestedWal::UploadedEarlier
    }
}

/// Why an `archive_command` call failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// `%p` does not end in a WAL file name.
    #[error(transparent)]
    InvalidName(#[from] InvalidWalName),

    /// The archive must be empty and the markers of an earlier cluster's parallel
    /// uploads cannot be removed: they would be trusted once the requirement is over.
    #[error("cannot remove the parallel-archive markers in {}", dir.display())]
    StaleMarkers {
        /// The spool directory.
        dir: PathBuf,
        /// Why they could not be removed.
        #[source]
        source: std::io::Error,
    },

    /// Reading the WAL file, checking or writing the archive failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Classified for ArchiveError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidName(e) => e.class(),
            Self::StaleMarkers { .. } => ErrorClass::Internal,
            Self::Storage(e) => e.class(),
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::InvalidName(e) => e.hint(),
            Self::StaleMarkers { .. } => Some(Cow::Borrowed(
                "make the spool directory writable for the PostgreSQL user, or remove its files",
            )),
            Self::Storage(e) => e.hint(),
        }
    }
}

/// A staging file in a `file://` store not written for this long belongs to a killed
/// upload (a live one writes its staging file continuously).
const STAGING_AGE: Duration = Duration::from_secs(15 * 60);

/// Archives one WAL file (and, with `max_parallel` > 1, the next ready ones).
pub async fn archive(
    archive: &Archive,
    req: &ArchiveRequest,
) -> Result<ArchiveOutcome, ArchiveError> {
    let name = WalName::from_path(&req.wal_path.to_string_lossy())?;
    let path = resolve_wal_path(&req.wal_path, req.pgdata.as_deref());
    let spool = parallel_spool(archive, req);
    if let Some(spool) = &spool {
        if req.must_be_empty.is_some() {
            // A new cluster: markers left by an earlier cluster with the same names
            // prove nothing about its files. Fails the call if they cannot be removed:
            // they would be trusted once the requirement is over.
            let cleared = spool.clear().map_err(|source| ArchiveError::StaleMarkers {
                dir: spool.dir().to_path_buf(),
                source,
            })?;
            if cleared > 0 {
                tracing::info!(
                    "ignored {cleared} parallel-archive marker(s) in {}: the archive must be empty first",
                    spool.dir().display()
                );
            }
        } else if uploaded_earlier(spool, &name, &path) {
            return Ok(ArchiveOutcome {
                requested: RequestedWal::UploadedEarlier,
                also_uploaded: Vec::new(),
                also_failed: Vec::new(),
            });
        }
    }
    check_wal_file(&path)?;
    remove_stale_staging(archive, &name);

    if let Some(why) = &req.must_be_empty {
        tracing::info!("{why}: checking that the archive is empty");
        // WAL of older timelines is no sign of another cluster: a promoted standby
        // that kept the marker archives its new timeline next to its origin's.
        archive.check_empty(Some(name.timeline())).await?;
    }

    let mut batch = vec![(name.clone(), path)];
    if let (Some(spool), Some(pg)) = (&spool, &req.pgdata) {
        let ready = pgdata::ready_wals(pg).unwrap_or_default();
        for extra in ready
            .into_iter()
            .filter(|w| *w != name && !spool.contains(w))
            .take(req.max_parallel - 1)
        {
            let p = pgdata::wal_path(pg, &extra);
            batch.push((extra, p));
        }
    }

    let started = Instant::now();
    let uploads = batch.iter().map(|(wal, path)| {
        let mut opts = req.upload.clone();
        if wal.kind() == WalKind::History {
            if let Some(h) = &req.history_tags {
                opts.tags = h.clone();
            }
        }
        async move {
            // The identity before and after the upload: a marker is left only for a
            // file that did not change while it was read.
            let before = FileIdentity::of(path).ok();
            let outcome = archive.archive_wal(path, wal, &opts).await;
            let after = FileIdentity::of(path).ok();
            if outcome.is_ok() {
                // The segment is safe in the archive: its pages need not stay cached.
                if let Err(e) = localfs::drop_page_cache(path) {
                    tracing::debug!("cannot drop {} from the page cache: {e}", path.display());
                }
            }
            (outcome, before.filter(|b| after.as_ref() == Some(b)))
        }
    });
    let results = futures::future::join_all(uploads).await;

    let mut requested = None;
    let mut also_uploaded = Vec::new();
    let mut also_failed = Vec::new();
    for ((wal, _), (result, identity)) in batch.iter().zip(results) {
        let is_requested = *wal == name;
        match result {
            Ok(outcome) => {
                let done = match outcome {
                    Stored::Uploaded { key, stored } => {
                        tracing::info!(
                            "archived {wal} as {key} ({stored} bytes) in {:.3}s",
                            started.elapsed().as_secs_f64()
                        );
                        RequestedWal::Uploaded { key, stored }
                    }
                    Stored::AlreadyArchived { key } => {
                        tracing::info!("{wal} is already archived with the same content as {key}");
                        RequestedWal::AlreadyArchived { key }
                    }
                };
                if is_requested {
                    requested = Some(Ok(done));
                    continue;
                }
                also_uploaded.push(wal.clone());
                if let (Some(spool), Some(identity)) = (&spool, identity) {
                    // Without its marker the segment is only checked again when
                    // PostgreSQL asks for it.
                    if let Err(e) = spool.mark(wal, &identity) {
                        tracing::warn!(
                            "cannot leave the parallel-archive marker of {wal} in {}: {e}",
                            spool.dir().display()
                        );
                    }
                }
            }
            Err(e) if is_requested => requested = Some(Err(e)),
            Err(e) => {
                tracing::warn!("parallel upload of {wal} failed, PostgreSQL will retry it: {e}");
                also_failed.push((wal.clone(), e.to_string()));
            }
        }
    }
    let requested = requested.expect("the requested WAL is the first of the batch")?;
    Ok(ArchiveOutcome {
        requested,
        also_uploaded,
        also_failed,
    })
}

/// The spool of parallel-archive markers, when this call uploads ahead (PGDATA known,
/// `max_parallel` > 1) and the directory can be created.
fn parallel_spool(archive: &Archive, req: &ArchiveRequest) -> Option<Spool> {
    let dir = req.spool_dir.as_ref()?;
    if req.pgdata.is_none() || req.max_parallel <= 1 {
        return None;
    }
    let spool = Spool::for_archive(dir, &archive.location());
    match spool.create_dir() {
        Ok(()) => Some(spool),
        Err(e) => {
            // Uploading ahead only saves later calls some work: archive the
            // requested file alone.
            tracing::warn!(
                "cannot create the spool directory {}, archiving without parallel uploads: {e}",
                spool.dir().display()
            );
            None
        }
    }
}

/// True when an earlier call's parallel upload archived this very file (its marker
/// matches); the marker is consumed either way.
fn uploaded_earlier(spool: &Spool, name: &WalName, path: &Path) -> bool {
    let witnessed = spool
        .take_marker(name, FileIdentity::of(path).ok().as_ref())
        .unwrap_or_else(|e| {
            tracing::warn!(
                "cannot read the parallel-archive marker of {name} in {}, archiving it: {e}",
                spool.dir().display()
            );
            Marker::Absent
        });
    match witnessed {
        Marker::Matches => {
            tracing::info!("{name} was already archived by an earlier parallel upload");
            true
        }
        Marker::Stale => {
            tracing::info!(
                "the parallel-archive marker of {name} is for another file: archiving it"
            );
            false
        }
        Marker::Absent => false,
    }
}

/// A killed upload into a `file://` store leaves its staging file behind.
fn remove_stale_staging(archive: &Archive, name: &WalName) {
    let Some(local) = archive.local_dir(&archive.layout().wal_dir(name)) else {
        return;
    };
    match localfs::remove_stale_staging(&local, STAGING_AGE) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            "removed {n} staging file(s) of interrupted uploads in {}",
            local.display()
        ),
        Err(e) => tracing::warn!("cannot clean staging files in {}: {e}", local.display()),
    }
}

/// Refuses a WAL path that is not a regular file, saying what it is instead.
fn check_wal_file(path: &Path) -> Result<(), StorageError> {
    let problem = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => return Ok(()),
        Ok(meta) if meta.is_dir() => std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "it is a directory, not a WAL file",
        ),
        Ok(_) => std::io::Error::new(std::io::ErrorKind::InvalidInput, "it is not a regular file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
        }
        Err(e) => e,
    };
    Err(StorageError::LocalIo {
        what: "cannot read WAL file",
        path: path.display().to_string(),
        source: problem,
    })
}

/// PostgreSQL runs `archive_command` in PGDATA with `%p` relative to it.
fn resolve_wal_path(given: &Path, pgdata: Option<&Path>) -> PathBuf {
    match pgdata {
        Some(pg) if given.is_relative() && !given.exists() => pg.join(given),
        _ => given.to_path_buf(),
    }
}
