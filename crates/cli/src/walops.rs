//! WAL archive, restore and the empty-archive check: the behaviour shared by the
//! barman-cloud front-end and the native commands.

use anyhow::{Context, Result};
use barrelman_core::wal::{WalKind, WalName};
use barrelman_postgres::pgdata;
use barrelman_storage::localfs;
use barrelman_storage::spool::{FileIdentity, Marker, Spool};
use barrelman_storage::{Archive, ArchiveOutcome, StorageError, UploadOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One `archive_command` call.
#[derive(Debug, Clone)]
pub struct ArchiveRequest {
    /// The path PostgreSQL passed (`%p`, relative to PGDATA or absolute).
    pub wal_path: PathBuf,
    pub upload: UploadOptions,
    /// Tags for `.history` files; when set they replace `upload.tags` (barman does).
    pub history_tags: Option<Vec<(String, String)>>,
    /// PGDATA, for the empty-archive marker and the `.ready` queue.
    pub pgdata: Option<PathBuf>,
    /// Upload up to `max_parallel - 1` next ready segments in the same call.
    pub max_parallel: usize,
    /// Where pre-archived markers live.
    pub spool_dir: Option<PathBuf>,
}

/// Archives one WAL file (and, with `max_parallel` > 1, the next ready ones).
pub async fn archive(archive: &Archive, req: &ArchiveRequest) -> Result<()> {
    let name = WalName::from_path(&req.wal_path.to_string_lossy())?;
    let path = resolve_wal_path(&req.wal_path, req.pgdata.as_deref());
    let spool = match (&req.spool_dir, req.pgdata.is_some() && req.max_parallel > 1) {
        (Some(dir), true) => {
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
        _ => None,
    };
    let marker = req.pgdata.as_deref().map(pgdata::check_empty_marker);
    let must_be_empty = marker.as_ref().filter(|m| m.exists());
    if let Some(spool) = &spool {
        if must_be_empty.is_some() {
            // A new cluster (CloudNativePG sets the marker at bootstrap): markers left
            // by an earlier cluster with the same names prove nothing about its files.
            // Fails the call if they cannot be removed: they would be trusted once the
            // marker is gone.
            let cleared = spool.clear().with_context(|| {
                format!(
                    "cannot remove the parallel-archive markers in {}",
                    spool.dir().display()
                )
            })?;
            if cleared > 0 {
                tracing::info!(
                    "ignored {cleared} parallel-archive marker(s) in {}: the archive must be empty first",
                    spool.dir().display()
                );
            }
        } else {
            let witnessed = spool
                .take_marker(&name, FileIdentity::of(&path).ok().as_ref())
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
                    return Ok(());
                }
                Marker::Stale => tracing::info!(
                    "the parallel-archive marker of {name} is for another file: archiving it"
                ),
                Marker::Absent => {}
            }
        }
    }
    check_wal_file(&path)?;
    if let Some(local) = archive.local_dir(&archive.layout().wal_dir(&name)) {
        // A killed upload into a file:// store leaves its staging file behind.
        match localfs::remove_stale_staging(&local, STAGING_AGE) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "removed {n} staging file(s) of interrupted uploads in {}",
                local.display()
            ),
            Err(e) => tracing::warn!("cannot clean staging files in {}: {e}", local.display()),
        }
    }

    if let Some(marker) = must_be_empty {
        tracing::info!(
            "{} exists: checking that the archive is empty",
            marker.display()
        );
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
            (outcome, before.filter(|b| after.as_ref() == Some(b)))
        }
    });
    let results = futures::future::join_all(uploads).await;

    let mut first = None;
    for ((wal, _), (result, identity)) in batch.iter().zip(results) {
        let is_requested = *wal == name;
        match result {
            Ok(outcome) => {
                match &outcome {
                    ArchiveOutcome::Uploaded { key, stored } => {
                        tracing::info!(
                            "archived {wal} as {key} ({stored} bytes) in {:.3}s",
                            started.elapsed().as_secs_f64()
                        )
                    }
                    ArchiveOutcome::AlreadyArchived { key } => {
                        tracing::info!("{wal} is already archived with the same content as {key}")
                    }
                }
                if let (false, Some(spool), Some(identity)) = (is_requested, &spool, identity) {
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
            Err(e) if is_requested => first = Some(e),
            Err(e) => {
                tracing::warn!("parallel upload of {wal} failed, PostgreSQL will retry it: {e}")
            }
        }
    }
    if let Some(e) = first {
        return Err(e.into());
    }
    if let Some(marker) = marker {
        match std::fs::remove_file(&marker) {
            Ok(()) => tracing::info!("first WAL archived: removed {}", marker.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove {}: {e}", marker.display()),
        }
    }
    Ok(())
}

/// A staging file in a `file://` store not written for this long belongs to a killed
/// upload (a live one writes its staging file continuously).
const STAGING_AGE: Duration = Duration::from_secs(15 * 60);

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

/// One `restore_command` call.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub wal_name: String,
    pub dest: PathBuf,
    pub allow_partial: bool,
    /// Fetch up to `parallel - 1` next segments into the spool.
    pub parallel: usize,
    pub spool_dir: Option<PathBuf>,
}

/// Restores one WAL file, serving from and filling the prefetch spool.
pub async fn restore(archive: &Archive, req: &RestoreRequest) -> Result<()> {
    let name = WalName::parse(&req.wal_name)?;
    let spool = req
        .spool_dir
        .as_deref()
        .map(|dir| Spool::for_restore(dir, &archive.location()));
    // Temporaries of calls killed mid-write (ours only, their owner gone).
    let dest_dir = match req.dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    for dir in std::iter::once(dest_dir).chain(spool.as_ref().map(Spool::dir)) {
        match localfs::remove_stale_temporaries(dir) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "removed {n} temporary file(s) of interrupted restores in {}",
                dir.display()
            ),
            Err(e) => tracing::debug!("cannot clean temporaries in {}: {e}", dir.display()),
        }
    }
    if let Some(spool) = &spool {
        if spool
            .take(&name, &req.dest)
            .map_err(|e| spool_error(format!("cannot move the spooled {name} to"), &req.dest, e))?
        {
            tracing::info!("restored {name} from the prefetch spool");
            return Ok(());
        }
    }
    let spool = match spool {
        Some(s) if req.parallel > 1 => {
            s.create_dir().map_err(|e| {
                SpoolError(format!(
                    "cannot create the spool directory {}: {e}",
                    s.dir().display()
                ))
            })?;
            Some(s)
        }
        Some(s) => {
            // Nothing is prefetched: leave no empty directory behind.
            s.remove_dir_if_empty();
            None
        }
        None => None,
    };

    let wanted = async {
        let key = archive
            .restore_wal(&name, &req.dest, req.allow_partial)
            .await?;
        tracing::info!("restored {name} from {key}");
        Ok::<_, StorageError>(())
    };
    let prefetch = async {
        let (Some(spool), Some(seg)) = (
            &spool,
            name.segment().filter(|_| name.kind() == WalKind::Segment),
        ) else {
            return;
        };
        let mut next = Vec::new();
        let mut s = seg;
        for _ in 1..req.parallel.max(1) {
            s = s.next(16 << 20);
            let n = WalName::parse(&s.to_string()).expect("formatted segment name");
            if !spool.contains(&n) {
                next.push(n);
            }
        }
        let fetches = next.iter().map(|n| async move {
            // Only the exact segment is prefetched, never a `.partial` stand-in.
            match archive.locate_wal(n, false).await {
                Ok((key, c)) => match archive.download(&key, c, &spool.path(n)).await {
                    Ok(_) => tracing::debug!("prefetched {n}"),
                    Err(e) => tracing::debug!("prefetch of {n} failed: {e}"),
                },
                Err(e) => tracing::debug!("not prefetching {n}: {e}"),
            }
        });
        futures::future::join_all(fetches).await;
        let _ = spool.prune_before(seg);
    };
    let (result, ()) = futures::join!(wanted, prefetch);
    if let Some(spool) = &spool {
        spool.remove_dir_if_empty();
    }
    result?;
    Ok(())
}

/// A spool move that failed, as one sentence; a full disk is named as such.
fn spool_error(what: String, dest: &Path, e: std::io::Error) -> SpoolError {
    if localfs::is_disk_full(&e) {
        SpoolError(format!(
            "{what} {}: the local disk is full ({e}); free space on that file system and retry",
            dest.display()
        ))
    } else {
        SpoolError(format!("{what} {}: {e}", dest.display()))
    }
}

/// The restore spool could not be used (barman exits 2 for this).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpoolError(pub String);
