//! WAL archive, restore and the empty-archive check: the behaviour shared by the
//! barman-cloud front-end and the native commands.

use anyhow::{Context, Result};
use barrelman_core::wal::{WalKind, WalName};
use barrelman_postgres::pgdata;
use barrelman_storage::spool::Spool;
use barrelman_storage::{Archive, ArchiveOutcome, StorageError, UploadOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    let spool = match (&req.spool_dir, req.pgdata.is_some() && req.max_parallel > 1) {
        (Some(dir), true) => Some(
            Spool::for_archive(dir, &archive.location())
                .with_context(|| format!("cannot create the spool directory {}", dir.display()))?,
        ),
        _ => None,
    };
    if let Some(spool) = &spool {
        if spool.remove(&name)? {
            tracing::info!("{name} was already archived by an earlier parallel upload");
            return Ok(());
        }
    }
    let path = resolve_wal_path(&req.wal_path, req.pgdata.as_deref());
    if !path.is_file() {
        return Err(StorageError::LocalIo {
            what: "cannot read WAL file",
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        }
        .into());
    }

    let marker = req.pgdata.as_deref().map(pgdata::check_empty_marker);
    if let Some(marker) = marker.as_ref().filter(|m| m.exists()) {
        tracing::info!(
            "{} exists: checking that the archive is empty",
            marker.display()
        );
        archive.check_empty(None).await?;
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
        async move { archive.archive_wal(path, wal, &opts).await }
    });
    let results = futures::future::join_all(uploads).await;

    let mut first = None;
    for ((wal, _), result) in batch.iter().zip(results) {
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
                if !is_requested {
                    if let Some(spool) = &spool {
                        spool.mark(wal)?;
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
    let spool = match &req.spool_dir {
        Some(dir) => match Spool::for_restore(dir, &archive.location()) {
            Ok(s) => Some(s),
            Err(e) if req.parallel > 1 => {
                return Err(SpoolError(format!(
                    "cannot create the spool directory {}: {e}",
                    dir.display()
                ))
                .into())
            }
            Err(_) => None,
        },
        None => None,
    };
    if let Some(spool) = &spool {
        if spool
            .take(&name, &req.dest)
            .map_err(|e| SpoolError(format!("cannot move the spooled {name}: {e}")))?
        {
            tracing::info!("restored {name} from the prefetch spool");
            return Ok(());
        }
    }

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
    result?;
    Ok(())
}

/// The restore spool could not be used (barman exits 2 for this).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpoolError(pub String);
