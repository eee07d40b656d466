//! `verify`: is a backup restorable? Its `backup.info` is DONE, every tar part it
//! consists of is present ([`crate::parts`]), and every WAL segment from
//! `begin_wal` to `end_wal` (in that order) is in the archive; `deep` also reads
//! every part and segment through its codec and requires the part with
//! `backup_label`. Also reports the WAL chain after the newest backup, gaps included.

use crate::backup::wal_range;
use crate::catalog;
use crate::parts;
use barrelman_core::backup_info::{BackupInfo, BackupStatus};
use barrelman_core::wal::SegmentName;
use barrelman_postgres::extract;
use barrelman_storage::{Archive, StorageError};
use std::collections::{BTreeMap, BTreeSet};

/// The verdict on one backup.
#[derive(Debug, Clone)]
pub struct BackupCheck {
    pub backup_id: String,
    /// Empty when the backup is restorable; the first entry names the first missing
    /// or broken object.
    pub problems: Vec<String>,
}

/// WAL after the newest DONE backup, on its timeline.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub timeline: u32,
    pub from: String,
    /// The last segment reachable without a gap.
    pub contiguous_until: Option<String>,
    /// When that segment was archived: recovery can reach about this time (its last
    /// commits are a little earlier).
    pub until_archived_at: Option<chrono::DateTime<chrono::Utc>>,
    pub gaps: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub backups: Vec<BackupCheck>,
    pub chain: Option<Chain>,
    /// Earliest point one can restore to: the end of the oldest restorable backup.
    pub earliest: Option<String>,
    /// WAL names stored in several variants with different content.
    pub differing_wal: Vec<barrelman_storage::DifferingVariants>,
}

/// Verifies `which` (an id, name or shortcut) or every backup.
pub async fn verify(
    archive: &Archive,
    which: Option<&str>,
    deep: bool,
) -> Result<VerifyReport, StorageError> {
    let (backups, unreadable) = catalog::load(archive).await?;
    let wals = wal_index(archive).await?;
    let mut report = verify_loaded(archive, &backups, &unreadable, &wals, which, deep).await?;
    report.differing_wal = archive.differing_variants().await?;
    Ok(report)
}

/// One stored WAL file: its key, codec and when it was archived.
#[derive(Debug, Clone)]
pub struct IndexedWal {
    pub key: String,
    pub compression: barrelman_core::Compression,
    pub archived_at: chrono::DateTime<chrono::Utc>,
}

/// Every stored WAL file by bare name, from one listing.
pub type WalIndex = BTreeMap<String, IndexedWal>;

/// Lists `wals/` once into a [`WalIndex`].
pub async fn wal_index(archive: &Archive) -> Result<WalIndex, StorageError> {
    let mut wals = WalIndex::new();
    for (key, w, archived_at) in archive.list_wals_timed().await? {
        wals.entry(w.name.to_string()).or_insert(IndexedWal {
            key,
            compression: w.compression,
            archived_at,
        });
    }
    Ok(wals)
}

/// [`verify`] over a catalog and WAL index the caller already read.
pub async fn verify_loaded(
    archive: &Archive,
    backups: &[BackupInfo],
    unreadable: &[String],
    wals: &WalIndex,
    which: Option<&str>,
    deep: bool,
) -> Result<VerifyReport, StorageError> {
    let mut report = VerifyReport::default();
    for u in unreadable {
        report.backups.push(BackupCheck {
            backup_id: u.split(':').next().unwrap_or_default().to_string(),
            problems: vec![format!("unreadable backup.info: {u}")],
        });
    }
    let selected: Vec<&BackupInfo> = match which {
        Some(w) => match catalog::choose(backups, w, &catalog::TargetChoice::default()) {
            Ok(b) => vec![b],
            Err(e) => {
                report.backups.push(BackupCheck {
                    backup_id: w.to_string(),
                    problems: vec![e.to_string()],
                });
                vec![]
            }
        },
        None => backups.iter().collect(),
    };
    // Several backups: one listing of base/ serves them all; one backup: its own.
    let listing = if selected.len() > 1 {
        Some(catalog::base_objects(archive).await?)
    } else {
        None
    };
    for b in selected {
        let objects = match &listing {
            Some(l) => l.get(&b.backup_id).cloned().unwrap_or_default(),
            None => {
                let prefix = format!("{}/{}", archive.layout().base_prefix(), b.backup_id);
                archive.list_objects(&prefix).await?
            }
        };
        let problems = check_backup(archive, b, &objects, wals, deep).await?;
        report.backups.push(BackupCheck {
            backup_id: b.backup_id.clone(),
            problems,
        });
    }
    let restorable: BTreeSet<&str> = report
        .backups
        .iter()
        .filter(|c| c.problems.is_empty())
        .map(|c| c.backup_id.as_str())
        .collect();
    report.earliest = backups
        .iter()
        .find(|b| restorable.contains(b.backup_id.as_str()))
        .and_then(|b| b.end_time.map(|t| t.to_string()));
    if let Some(newest) = backups.iter().rfind(|b| b.status == BackupStatus::Done) {
        report.chain = chain_after(newest, wals);
    }
    Ok(report)
}

async fn check_backup(
    archive: &Archive,
    b: &BackupInfo,
    objects: &[barrelman_storage::ObjectInfo],
    wals: &WalIndex,
    deep: bool,
) -> Result<Vec<String>, StorageError> {
    let mut problems = Vec::new();
    if b.status != BackupStatus::Done {
        problems.push(format!("status is {}, not DONE", b.status.as_str()));
        return Ok(problems);
    }
    let prefix = format!("{}/{}", archive.layout().base_prefix(), b.backup_id);
    let parts = parts::check(b, &prefix, objects);
    problems.extend(parts.problems);
    let seg_size = b.xlog_segment_size.unwrap_or(16 << 20);
    match (b.begin_wal.as_deref(), b.end_wal.as_deref()) {
        (Some(begin), Some(end)) if wal_order(begin) > wal_order(end) => problems.push(format!(
            "backup.info says the backup ends in WAL segment {end}, before it begins ({begin}): the catalog entry is corrupt"
        )),
        (Some(begin), Some(end)) => match wal_range(begin, end, seg_size) {
            Ok(range) => {
                for w in range {
                    if !wals.contains_key(w.as_str()) {
                        problems.push(format!(
                            "missing WAL segment {} ({}/{w}*) needed by this backup",
                            w,
                            archive.layout().wal_dir(&w)
                        ));
                    }
                }
            }
            Err(e) => problems.push(e),
        },
        _ => problems.push("backup.info has no begin_wal/end_wal".into()),
    }
    if deep && problems.is_empty() {
        let mut has_label = false;
        for part in parts.parts {
            let r = archive
                .decoded(&part.key, part.compression)
                .read(|decoded| Ok::<_, StorageError>(extract::scan_tar(decoded)))
                .await?;
            match r {
                Ok(scan) => has_label |= part.item == "data" && scan.has_backup_label,
                Err(e) => problems.push(format!("cannot read tar part {}: {e}", part.key)),
            }
        }
        if problems.is_empty() && !has_label {
            problems.push(format!(
                "no tar part of {prefix}/data* holds backup_label: the backup's last part is missing"
            ));
        }
        for w in wal_range(
            b.begin_wal.as_deref().unwrap_or(""),
            b.end_wal.as_deref().unwrap_or(""),
            seg_size,
        )
        .unwrap_or_default()
        {
            let Some(IndexedWal {
                key,
                compression: c,
                ..
            }) = wals.get(w.as_str()).cloned()
            else {
                continue;
            };
            let r = archive
                .decoded(&key, c)
                .read(|decoded| Ok::<_, StorageError>(std::io::copy(decoded, &mut std::io::sink())))
                .await?;
            match r {
                Ok(n) if n == seg_size => {}
                Ok(n) => problems.push(format!(
                    "WAL segment {key} holds {n} bytes, expected {seg_size}"
                )),
                Err(e) => problems.push(format!("cannot read WAL segment {key}: {e}")),
            }
        }
    }
    Ok(problems)
}

/// A segment name's place in WAL order, whatever its timeline (`None` when it is not
/// a segment name: the range check reports those).
fn wal_order(name: &str) -> Option<(u32, u32)> {
    SegmentName::parse(name).map(|s| (s.log, s.seg))
}

fn chain_after(newest: &BackupInfo, wals: &WalIndex) -> Option<Chain> {
    let begin = SegmentName::parse(newest.begin_wal.as_deref()?)?;
    let seg_size = newest.xlog_segment_size.unwrap_or(16 << 20);
    let on_tli: Vec<SegmentName> = wals
        .keys()
        .filter_map(|n| SegmentName::parse(n))
        .filter(|s| s.timeline == begin.timeline && *s >= begin)
        .collect();
    let last = *on_tli.iter().max()?;
    let present: BTreeSet<SegmentName> = on_tli.into_iter().collect();
    let mut chain = Chain {
        timeline: begin.timeline,
        from: begin.to_string(),
        ..Default::default()
    };
    let mut s = begin;
    let mut broken = false;
    loop {
        if present.contains(&s) {
            if !broken {
                chain.contiguous_until = Some(s.to_string());
                chain.until_archived_at = wals.get(&s.to_string()).map(|w| w.archived_at);
            }
        } else {
            broken = true;
            chain.gaps.push(s.to_string());
            if chain.gaps.len() >= 100 {
                break;
            }
        }
        if s >= last {
            break;
        }
        s = s.next(seg_size);
    }
    Some(chain)
}
