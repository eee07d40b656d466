//! Restoring a base backup: every tar part of PGDATA and of each tablespace,
//! downloaded, decompressed and extracted in parallel into empty directories, with
//! the `pg_tblspc` links and `pg_wal` recreated. Extraction never writes outside its
//! target. A backup with a missing part is refused before anything is written
//! ([`crate::parts`]), and one whose parts held no `backup_label` fails after.

use crate::catalog::{self, ChooseError, TargetChoice};
use crate::parts;
use crate::progress::Progress;
use barrelman_core::backup_info::{BackupInfo, BackupStatus};
use barrelman_core::Compression;
use barrelman_postgres::extract;
use barrelman_storage::{Archive, StorageError};
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What to restore and where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// An id, a name, `first`/`oldest`, `last`/`latest`, `last-failed` or `auto`.
    pub backup: String,
    /// For `auto`: the recovery target the backup must end before.
    pub target: TargetChoice,
    pub destination: PathBuf,
    /// `--tablespace NAME:LOCATION` relocations.
    pub tablespace_map: Vec<(String, PathBuf)>,
    /// Parts downloaded and extracted at once.
    pub jobs: usize,
}

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Choose(#[from] ChooseError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("backup {id} is {status}, not DONE: it cannot be restored (choose another one with `barrelman list`)")]
    NotRestorable { id: String, status: String },
    #[error("the destination {0} is not empty: restore into an empty or new directory")]
    NotEmpty(PathBuf),
    #[error("backup {id} is incomplete and cannot be restored: {problem}; restore another backup (see `barrelman verify`)")]
    Incomplete { id: String, problem: String },
    #[error("cannot restore {key}: {source}")]
    Extract {
        key: String,
        #[source]
        source: extract::ExtractError,
    },
    #[error("{0}")]
    Local(String),
    #[error("the catalog has unreadable backup.info files: {0}")]
    Unreadable(String),
}

/// One part to fetch.
#[derive(Debug, Clone)]
struct Part {
    key: String,
    compression: Compression,
    target: PathBuf,
}

fn ensure_empty(dir: &Path) -> Result<(), RestoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(RestoreError::NotEmpty(dir.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RestoreError::Local(format!(
            "cannot read {}: {e}",
            dir.display()
        ))),
    }
}

/// Restores a backup; returns its `backup.info`.
pub async fn restore_backup(
    archive: &Archive,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<BackupInfo, RestoreError> {
    let (catalog, unreadable) = catalog::load(archive).await?;
    if !unreadable.is_empty() {
        tracing::warn!("skipping unreadable backups: {}", unreadable.join("; "));
    }
    let info = catalog::choose(&catalog, &opts.backup, &opts.target)?.clone();
    if info.status != BackupStatus::Done {
        return Err(RestoreError::NotRestorable {
            id: info.backup_id.clone(),
            status: info.status.as_str().to_string(),
        });
    }
    let id = info.backup_id.clone();
    ensure_empty(&opts.destination)?;

    // Tablespace targets: the mapping by name, else the original location.
    let mut ts_targets: BTreeMap<String, PathBuf> = BTreeMap::new();
    for ts in info.tablespaces.iter().flatten() {
        let loc = opts
            .tablespace_map
            .iter()
            .find(|(n, _)| *n == ts.name)
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| PathBuf::from(&ts.location));
        ensure_empty(&loc)?;
        ts_targets.insert(ts.oid.to_string(), loc);
    }
    for (name, _) in &opts.tablespace_map {
        if !info.tablespaces.iter().flatten().any(|t| &t.name == name) {
            tracing::warn!("--tablespace {name}: backup {id} has no such tablespace");
        }
    }

    let prefix = format!("{}/{}", archive.layout().base_prefix(), id);
    let objects = archive.list_objects(&prefix).await?;
    let checked = parts::check(&info, &prefix, &objects);
    if let Some(problem) = checked.problems.first() {
        return Err(RestoreError::Incomplete {
            id,
            problem: problem.clone(),
        });
    }
    let mut all: Vec<Part> = Vec::new();
    for p in checked.parts {
        let target = if p.item == "data" {
            opts.destination.clone()
        } else if let Some(t) = ts_targets.get(&p.item) {
            t.clone()
        } else {
            tracing::warn!("skipping {}: not a tablespace of backup {id}", p.key);
            continue;
        };
        progress.add_total(p.size);
        all.push(Part {
            key: p.key,
            compression: p.compression,
            target,
        });
    }

    let results: Vec<Result<(), RestoreError>> = stream::iter(all)
        .map(|p| async move { fetch_part(archive, p, progress).await })
        .buffer_unordered(opts.jobs.max(1))
        .collect()
        .await;
    for r in results {
        r?;
    }
    // A backup's last data part holds backup_label; without it PostgreSQL would start
    // as if from a crash, on files copied at different times: never usable.
    if std::fs::symlink_metadata(opts.destination.join("backup_label")).is_err() {
        return Err(RestoreError::Incomplete {
            id,
            problem: format!(
                "no tar part of {prefix}/data* holds backup_label, so its last part is missing"
            ),
        });
    }

    // pg_tblspc links and pg_wal, as barman-cloud-restore makes them.
    let tblspc = opts.destination.join("pg_tblspc");
    std::fs::create_dir_all(&tblspc)
        .map_err(|e| RestoreError::Local(format!("cannot create {}: {e}", tblspc.display())))?;
    for (oid, loc) in &ts_targets {
        let link = tblspc.join(oid);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(loc, &link).map_err(|e| {
            RestoreError::Local(format!(
                "cannot link {} to {}: {e}",
                link.display(),
                loc.display()
            ))
        })?;
    }
    let wal = opts.destination.join("pg_wal");
    if std::fs::symlink_metadata(&wal).is_err() {
        std::fs::create_dir_all(&wal)
            .map_err(|e| RestoreError::Local(format!("cannot create {}: {e}", wal.display())))?;
    }
    Ok(info)
}

async fn fetch_part(
    archive: &Archive,
    part: Part,
    progress: &Progress,
) -> Result<(), RestoreError> {
    let key = part.key.clone();
    archive
        .decoded(&part.key, part.compression)
        .counting(progress.done_counter())
        .read(move |decoded| {
            extract::extract_tar(decoded, &part.target)
                .map_err(|source| RestoreError::Extract { key, source })?;
            Ok(())
        })
        .await
}
