//! Deleting backups: one by id, or every backup a retention policy makes obsolete,
//! with the WAL that goes with them. Tar parts first, `backup.info` last, then the
//! WAL, so an interrupted run is simply run again.

use crate::catalog::{self, ChooseError, TargetChoice};
use barrelman_core::backup_info::{BackupInfo, BackupStatus};
use barrelman_core::retention::{self, Decision, Deletion, Entry, Policy};
use barrelman_storage::{Archive, StorageError};
use chrono::{DateTime, FixedOffset};
use std::collections::BTreeMap;

/// Which backups to delete.
#[derive(Debug, Clone)]
pub enum Selection {
    /// `-b`: one backup (id, name or shortcut).
    Backup(String),
    /// `-r`: every backup the policy makes obsolete.
    Policy(Policy),
}

/// One deletion: what to delete and under which rules.
#[derive(Debug, Clone)]
pub struct DeleteRequest {
    /// One backup, or a retention policy.
    pub selection: Selection,
    /// Never leave fewer backups than this (`--minimum-redundancy`).
    pub minimum_redundancy: u32,
    /// Report what would be deleted, delete nothing.
    pub dry_run: bool,
    /// The time retention windows and the age of STARTED backups count from.
    pub now: DateTime<FixedOffset>,
    /// Delete a STARTED backup younger than [`retention::STALE_STARTED`] too (it may
    /// be running: its parts vanish under it and it ends FAILED).
    pub force: bool,
    /// Objects per bulk delete request (barman's `--batch-size`); `None` is the
    /// store's maximum.
    pub batch_size: Option<usize>,
}

/// What was (or, with `dry_run`, would be) deleted and why.
#[derive(Debug, Clone, Default)]
pub struct DeleteReport {
    /// The decision on each backup considered, by id.
    pub decisions: BTreeMap<String, Decision>,
    /// The backups deleted, with the WAL that goes with each.
    pub deletions: Vec<Deletion>,
    /// Object keys of each deleted backup, in deletion order.
    pub backup_objects: BTreeMap<String, Vec<String>>,
}

/// Why nothing (more) was deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Listing, reading or deleting objects failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A policy cannot decide over a catalog it cannot read whole (the `id: error`
    /// texts of the unreadable `backup.info` files).
    #[error("the catalog has unreadable backup.info files, so nothing is deleted: {0}")]
    Unreadable(String),
    /// The backup carries a keep mark.
    #[error("backup {id} is kept ({keep}): release it first with `barrelman keep --release` or barman-cloud-backup-keep -r")]
    Kept {
        /// The backup's id.
        id: String,
        /// Its keep target (`full`, `standalone`).
        keep: String,
    },
    /// Deleting the backup would leave fewer than `--minimum-redundancy` backups.
    #[error("cannot delete backup {id}: --minimum-redundancy {min} would not be met with {count} backups")]
    MinimumRedundancy {
        /// The backup's id.
        id: String,
        /// The minimum asked for.
        min: u32,
        /// The backups there are.
        count: usize,
    },
    /// The backup is STARTED and young: it may be running.
    #[error("backup {id} is STARTED and began {age} ago: it may still be running, and deleting it would leave it without its parts. Wait until it ends, or until it is {stale} hours old (then it counts as left by a crash), or delete it now with `barrelman delete --force`")]
    Running {
        /// The backup's id.
        id: String,
        /// How long ago it began, in words.
        age: String,
        /// Hours after which a STARTED backup counts as left by a crash.
        stale: i64,
    },
    /// The backup asked for is not in the catalog.
    #[error(transparent)]
    Choose(#[from] ChooseError),
}

impl barrelman_core::Classified for DeleteError {
    fn class(&self) -> barrelman_core::ErrorClass {
        use barrelman_core::ErrorClass;
        match self {
            Self::Storage(e) => e.class(),
            Self::Choose(e) => e.class(),
            // The catalog must be readable before a policy decides anything.
            Self::Unreadable(_) => ErrorClass::Failed,
            Self::Kept { .. } | Self::MinimumRedundancy { .. } | Self::Running { .. } => {
                ErrorClass::Conflict
            }
        }
    }

    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        use std::borrow::Cow;
        match self {
            Self::Storage(e) => e.hint(),
            Self::Choose(e) => e.hint(),
            Self::Kept { .. } => Some(Cow::Borrowed(
                "release the keep mark first (`barrelman keep --release` or barman-cloud-backup-keep -r)",
            )),
            Self::Running { .. } => Some(Cow::Borrowed(
                "wait until the backup ends, or delete it with `barrelman delete --force`",
            )),
            Self::MinimumRedundancy { .. } | Self::Unreadable(_) => None,
        }
    }
}

fn human_age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// Plans and (unless a dry run) carries out the deletion.
pub async fn delete(archive: &Archive, req: &DeleteRequest) -> Result<DeleteReport, DeleteError> {
    let (backups, unreadable) = catalog::load(archive).await?;
    let unreadable_ids: Vec<&str> = unreadable
        .iter()
        .map(|u| u.split(':').next().unwrap_or_default())
        .collect();
    let objects = catalog::base_objects(archive).await?;
    // A backup whose backup.info cannot be read is deleted by its id: its objects
    // are all there is to know of it (no WAL goes with it).
    if let Selection::Backup(wanted) = &req.selection {
        if unreadable_ids.contains(&wanted.as_str()) {
            if let Some(k) = catalog::keep_targets(archive, &objects).await?.get(wanted) {
                return Err(DeleteError::Kept {
                    id: wanted.clone(),
                    keep: k.clone(),
                });
            }
            tracing::warn!("backup {wanted} has an unreadable backup.info: deleting its objects");
            let mut report = DeleteReport::default();
            report.decisions.insert(
                wanted.clone(),
                Decision::Obsolete("requested by id (its backup.info cannot be read)".into()),
            );
            report.deletions.push(Deletion {
                backup_id: wanted.clone(),
                wal_keys: Vec::new(),
                wal_reason: "its backup.info cannot be read: no WAL is removed".into(),
            });
            remove(archive, req, &objects, &mut report).await?;
            return Ok(report);
        }
    }
    if !unreadable.is_empty() {
        match req.selection {
            Selection::Policy(_) => return Err(DeleteError::Unreadable(unreadable.join("; "))),
            Selection::Backup(_) => tracing::warn!(
                "skipping unreadable backup.info files: {}",
                unreadable.join("; ")
            ),
        }
    }
    let keep = catalog::keep_targets(archive, &objects).await?;
    let entries: Vec<Entry> = backups
        .iter()
        .map(|b| Entry {
            info: b,
            keep: keep.get(&b.backup_id).map(String::as_str),
        })
        .collect();
    let (decisions, by_id) = match &req.selection {
        Selection::Policy(p) => (
            retention::decide(&entries, *p, req.minimum_redundancy, req.now),
            false,
        ),
        Selection::Backup(wanted) => {
            let b: &BackupInfo = match catalog::choose(&backups, wanted, &TargetChoice::default()) {
                Ok(b) => b,
                Err(ChooseError::UnknownId(id)) => {
                    tracing::warn!("backup {id} does not exist: nothing to delete");
                    return Ok(DeleteReport::default());
                }
                Err(e) => return Err(e.into()),
            };
            if b.status == BackupStatus::Started
                && !retention::is_stale_started(b, req.now)
                && !req.force
            {
                return Err(DeleteError::Running {
                    id: b.backup_id.clone(),
                    age: b
                        .begin_time
                        .map(|t| human_age(req.now - t))
                        .unwrap_or_else(|| "?".into()),
                    stale: retention::STALE_STARTED.num_hours(),
                });
            }
            if let Some(k) = keep.get(&b.backup_id) {
                return Err(DeleteError::Kept {
                    id: b.backup_id.clone(),
                    keep: k.clone(),
                });
            }
            let count = backups
                .iter()
                .filter(|x| x.status != BackupStatus::Started)
                .count();
            if req.minimum_redundancy as usize >= count && req.minimum_redundancy > 0 {
                return Err(DeleteError::MinimumRedundancy {
                    id: b.backup_id.clone(),
                    min: req.minimum_redundancy,
                    count,
                });
            }
            let mut d = BTreeMap::new();
            d.insert(
                b.backup_id.clone(),
                Decision::Obsolete("requested by id".into()),
            );
            (d, true)
        }
    };
    let wals = if decisions.values().any(Decision::deletes) {
        archive.list_wals().await?
    } else {
        Vec::new()
    };
    let deletions = retention::plan(&entries, &decisions, &wals, by_id);
    let mut report = DeleteReport {
        decisions,
        deletions,
        backup_objects: BTreeMap::new(),
    };
    remove(archive, req, &objects, &mut report).await?;
    Ok(report)
}

/// Deletes (or, in a dry run, lists) each planned backup: tar parts first,
/// `backup.info` last, then its WAL, so an interrupted run is simply run again.
async fn remove(
    archive: &Archive,
    req: &DeleteRequest,
    objects: &catalog::BaseObjects,
    report: &mut DeleteReport,
) -> Result<(), DeleteError> {
    let batch = req
        .batch_size
        .unwrap_or(barrelman_storage::objects::MAX_DELETE_BATCH);
    for d in &report.deletions {
        let info_key = archive.layout().backup_info_key(&d.backup_id);
        let mut keys: Vec<String> = objects
            .get(&d.backup_id)
            .into_iter()
            .flatten()
            .map(|o| o.key.clone())
            .filter(|k| *k != info_key && !barrelman_core::layout::is_annotation(k))
            .collect();
        keys.push(info_key);
        if !req.dry_run {
            let (parts, info) = keys.split_at(keys.len() - 1);
            archive.delete_in_batches(parts, batch).await?;
            archive.delete_in_batches(info, batch).await?;
            archive.delete_in_batches(&d.wal_keys, batch).await?;
            tracing::info!(
                "deleted backup {} and {} WAL files",
                d.backup_id,
                d.wal_keys.len()
            );
        }
        report.backup_objects.insert(d.backup_id.clone(), keys);
    }
    Ok(())
}
