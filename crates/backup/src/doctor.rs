//! `doctor`: one report of the failures users meet, each with its fix.
//!
//! 1. backups exist but WAL archiving does not reach the archive;
//! 2. the archive holds WAL of another database system, or a timeline branched by a
//!    cluster restored from this one while the original kept archiving;
//! 3. backups whose WAL range is incomplete;
//! 4. access: endpoint unreachable, credentials refused, bucket missing — told apart.

use crate::catalog;
use crate::verify;
use barrelman_core::backup_info::BackupStatus;
use barrelman_core::lsn::Lsn;
use barrelman_core::wal::{SegmentName, WalKind};
use barrelman_core::Compression;
use barrelman_storage::{codec, Archive, StorageError};
use std::collections::BTreeMap;
use std::io::Read;

/// One problem found, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub problem: String,
    pub fix: String,
}

fn finding(problem: String, fix: &str) -> Finding {
    Finding {
        problem,
        fix: fix.to_string(),
    }
}

/// Examines the archive. An empty result means nothing is wrong.
pub async fn examine(archive: &Archive) -> Result<Vec<Finding>, StorageError> {
    let mut out = Vec::new();
    if let Err(e) = archive.probe().await {
        let fix = match &e {
            StorageError::Unreachable { .. } => "check the endpoint URL (endpointURL / --endpoint-url), DNS and the network path",
            StorageError::AccessDenied { denial, .. } => denial.fix(),
            StorageError::NoCredentials { .. } => {
                "give the ObjectStore s3Credentials (or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or an IAM role"
            }
            StorageError::BucketMissing { .. } => "create the bucket, or fix the bucket name in destinationPath",
            _ => "check the store settings",
        };
        let problem = match &e {
            // The error's own sentence ends with the fix, shown on its own line here.
            StorageError::AccessDenied { location, denial } => {
                format!("access to {location} was denied: {}", denial.cause())
            }
            _ => e.to_string(),
        };
        out.push(finding(problem, fix));
        return Ok(out);
    }
    let (backups, unreadable) = catalog::load(archive).await?;
    for u in &unreadable {
        out.push(finding(
            format!("unreadable backup.info: {u}"),
            "remove or repair that backup's backup.info",
        ));
    }
    let wals = verify::wal_index(archive).await?;
    let done: Vec<_> = backups
        .iter()
        .filter(|b| b.status == BackupStatus::Done)
        .collect();
    let segments: Vec<SegmentName> = wals.keys().filter_map(|n| SegmentName::parse(n)).collect();

    // 1. WAL archiving not reaching this archive.
    if let Some(newest) = done.last() {
        if segments.is_empty() {
            out.push(finding(
                format!("there are {} backups but the WAL archive {} is empty", done.len(), archive.location()),
                "WAL archiving is not reaching this archive: point archive_command at it (in CloudNativePG set isWALArchiver: true on the barman-cloud plugin)",
            ));
        } else if let Some(end) = newest.end_wal.as_deref() {
            if !wals.contains_key(end) {
                let last = segments
                    .iter()
                    .max()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                out.push(finding(
                    format!(
                        "the newest backup {} ends in WAL segment {end}, which is not archived (the archive stops at {last})",
                        newest.backup_id
                    ),
                    "WAL archiving is not reaching this archive: point archive_command at it (in CloudNativePG set isWALArchiver: true on the barman-cloud plugin)",
                ));
            }
        }
    }

    // 3. Backups whose WAL range is incomplete.
    let report = verify::verify_loaded(archive, &backups, &unreadable, &wals, None, false).await?;
    for c in report.backups.iter().filter(|c| !c.problems.is_empty()) {
        if backups
            .iter()
            .any(|b| b.backup_id == c.backup_id && b.status != BackupStatus::Done)
        {
            continue;
        }
        out.push(finding(
            format!("backup {} cannot be restored: {}", c.backup_id, c.problems[0]),
            "take a new backup once WAL archiving works; delete this one with `barrelman delete --backup ID`",
        ));
    }

    // 2a. WAL of another database system.
    if let Some(sysid) = done.last().and_then(|b| b.systemid.clone()) {
        let mut by_tli: BTreeMap<u32, SegmentName> = BTreeMap::new();
        for s in &segments {
            let e = by_tli.entry(s.timeline).or_insert(*s);
            if *s > *e {
                *e = *s;
            }
        }
        for seg in by_tli.values() {
            let (key, c) = wals[&seg.to_string()].clone();
            match segment_sysid(archive, &key, c).await {
                Ok(Some(found)) if found.to_string() != sysid => out.push(finding(
                    format!(
                        "WAL segment {seg} ({key}) belongs to database system {found}, but the backups are of system {sysid}"
                    ),
                    "another cluster archives into this folder: give each cluster its own server name (serverName)",
                )),
                Ok(_) => {}
                Err(e) => out.push(finding(format!("cannot read WAL segment {key}: {e}"), "run `barrelman verify --deep`")),
            }
        }
    }

    // 2b. A timeline branched while its parent kept archiving: two clusters here.
    for (name, (key, c)) in &wals {
        let Ok(w) = barrelman_core::wal::WalName::parse(name) else {
            continue;
        };
        if w.kind() != WalKind::History {
            continue;
        }
        let text = match read_small(archive, key, *c).await {
            Ok(t) => t,
            Err(e) => {
                out.push(finding(
                    format!("cannot read history file {key}: {e}"),
                    "run `barrelman verify --deep`",
                ));
                continue;
            }
        };
        // The last line names the parent timeline and the switch point.
        let Some(line) = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        else {
            continue;
        };
        let mut parts = line.split_whitespace();
        let (Some(parent), Some(lsn)) = (
            parts.next().and_then(|p| p.parse::<u32>().ok()),
            parts.next(),
        ) else {
            continue;
        };
        let Ok(lsn) = lsn.parse::<Lsn>() else {
            continue;
        };
        let seg_size = done
            .last()
            .and_then(|b| b.xlog_segment_size)
            .unwrap_or(16 << 20);
        let switch = lsn.segment(parent, seg_size);
        if let Some(after) = segments
            .iter()
            .filter(|s| s.timeline == parent && **s > switch)
            .max()
        {
            out.push(finding(
                format!(
                    "timeline {} branched from timeline {parent} at {lsn} ({}), yet timeline {parent} kept archiving up to {after}: two clusters archive into this folder (a cluster restored from this one uses the same server name)",
                    w.timeline(),
                    history_name(key)
                ),
                "a restored cluster must archive under a different server name: change its serverName (and remove its WAL from here if it is not wanted)",
            ));
        }
    }
    Ok(out)
}

fn history_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The system identifier in a WAL segment's first (long) page header.
async fn segment_sysid(
    archive: &Archive,
    key: &str,
    c: Compression,
) -> Result<Option<u64>, StorageError> {
    let reader = archive.object_reader(key).await?;
    let k = key.to_string();
    tokio::task::spawn_blocking(move || {
        let mut r =
            codec::decompress_reader(c, reader).map_err(|source| StorageError::Corrupt {
                key: k.clone(),
                source,
            })?;
        let mut head = [0u8; 40];
        r.read_exact(&mut head)
            .map_err(|source| StorageError::Corrupt {
                key: k.clone(),
                source,
            })?;
        // XLogLongPageHeaderData: magic, info (XLP_LONG_HEADER = 2), tli, pageaddr,
        // rem_len, padding, then xlp_sysid at byte 24.
        let info = u16::from_le_bytes([head[2], head[3]]);
        if info & 0x0002 == 0 {
            return Ok(None);
        }
        Ok(Some(u64::from_le_bytes(
            head[24..32].try_into().expect("8 bytes"),
        )))
    })
    .await
    .map_err(|e| StorageError::Config(format!("internal: {e}")))?
}

async fn read_small(archive: &Archive, key: &str, c: Compression) -> Result<String, StorageError> {
    let reader = archive.object_reader(key).await?;
    let k = key.to_string();
    tokio::task::spawn_blocking(move || {
        let r = codec::decompress_reader(c, reader).map_err(|source| StorageError::Corrupt {
            key: k.clone(),
            source,
        })?;
        let mut s = String::new();
        r.take(1 << 20)
            .read_to_string(&mut s)
            .map_err(|source| StorageError::Corrupt { key: k, source })?;
        Ok(s)
    })
    .await
    .map_err(|e| StorageError::Config(format!("internal: {e}")))?
}
