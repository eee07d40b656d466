//! `doctor`: one report of the failures users meet, each with its fix.
//!
//! 1. backups exist but WAL archiving does not reach the archive;
//! 2. the archive holds WAL of another database system, or a timeline branched by a
//!    cluster restored from this one while the original kept archiving;
//! 3. backups whose WAL range is incomplete;
//! 4. access: endpoint unreachable, credentials refused, bucket missing — told apart;
//! 5. with a connection to the server: archiving off, empty, pointed elsewhere,
//!    failing or piling up, or a server of another database system on this name.

use crate::catalog;
use crate::verify;
use barrelman_core::backup_info::BackupStatus;
use barrelman_core::lsn::Lsn;
use barrelman_core::retention;
use barrelman_core::wal::{SegmentName, WalKind};
use barrelman_core::Compression;
use barrelman_storage::{Archive, StorageError};
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

/// The server to check against the archive, when `doctor` connects to one.
pub struct ServerToCheck<'a> {
    pub facts: &'a barrelman_postgres::session::ArchivingFacts,
    /// The destination URL as a command line names it (without the server name).
    pub destination_url: &'a str,
    pub server_name: &'a str,
}

/// Examines the archive, and the server's archiving when `server` is given. An
/// empty result means nothing is wrong.
pub async fn examine(
    archive: &Archive,
    server: Option<ServerToCheck<'_>>,
) -> Result<Vec<Finding>, StorageError> {
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
    // STARTED backups a crash or a kill left behind: nothing ever ends them.
    let now = chrono::Local::now().fixed_offset();
    for b in backups
        .iter()
        .filter(|b| retention::is_stale_started(b, now))
    {
        let since = b
            .begin_time
            .map(|t| {
                format!(
                    "since {} ({} hours ago)",
                    t.format("%Y-%m-%d %H:%M:%S %:z"),
                    (now - t).num_hours()
                )
            })
            .unwrap_or_else(|| "without a begin time".into());
        out.push(finding(
            format!(
                "backup {} is STARTED {since}: a backup that crashed or was killed left it, and it will never end",
                b.backup_id
            ),
            "delete it with `barrelman delete --backup ID` (retention also removes it once it is older than the oldest backup kept)",
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
            "take a new backup (once WAL archiving works, if a WAL segment is missing); delete this one with `barrelman delete --backup ID`",
        ));
    }

    // 2c. One WAL name stored with two different contents.
    for d in archive.differing_variants().await? {
        out.push(finding(
            format!(
                "WAL file {} is stored in {} variants with different content: {} (restore serves {})",
                d.name,
                d.keys.len(),
                d.keys.join(", "),
                d.keys[0]
            ),
            "two clusters archived this WAL name: find the cluster that owns this server name, keep the copy it wrote and delete the others",
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
            let verify::IndexedWal {
                key,
                compression: c,
                ..
            } = wals[&seg.to_string()].clone();
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
    for (
        name,
        verify::IndexedWal {
            key,
            compression: c,
            ..
        },
    ) in &wals
    {
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

    // 5. The server's side: is it archiving here at all?
    if let Some(server) = server {
        let location = archive.location();
        let view = ArchiveView {
            location: &location,
            destination_url: server.destination_url,
            server_name: server.server_name,
            segments: &segments,
            backups_systemid: done.last().and_then(|b| b.systemid.as_deref()),
        };
        out.extend(examine_server(server.facts, &view));
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
    archive
        .decoded(key, c)
        .read(|decoded| {
            let mut head = [0u8; 40];
            decoded
                .read_exact(&mut head)
                .map_err(|e| decoded.corrupt(e))?;
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
}

async fn read_small(archive: &Archive, key: &str, c: Compression) -> Result<String, StorageError> {
    archive
        .decoded(key, c)
        .read(|decoded| {
            let mut s = String::new();
            let read = decoded.by_ref().take(1 << 20).read_to_string(&mut s);
            read.map_err(|e| decoded.corrupt(e))?;
            Ok(s)
        })
        .await
}

/// What the archive looks like, for checking a server against it.
#[derive(Debug, Clone, Default)]
pub struct ArchiveView<'a> {
    /// Where it is, for messages (`s3://bucket/path/server`).
    pub location: &'a str,
    /// The destination URL and server name as a command line would name them.
    pub destination_url: &'a str,
    pub server_name: &'a str,
    /// Every WAL segment stored, by name.
    pub segments: &'a [SegmentName],
    /// The database system of the newest DONE backup, if any.
    pub backups_systemid: Option<&'a str>,
}

/// The server's side of archiving, checked against the archive it should reach:
/// WAL not archived at all, archived somewhere else, failing, piling up, or a server
/// of another database system using this archive's name.
pub fn examine_server(
    facts: &barrelman_postgres::session::ArchivingFacts,
    archive: &ArchiveView<'_>,
) -> Vec<Finding> {
    const MAKE_ARCHIVER: &str =
        "in CloudNativePG, make the barman-cloud plugin the WAL archiver (isWALArchiver: true)";
    let mut out = Vec::new();
    if facts.wal_level == "minimal" {
        out.push(finding(
            "wal_level is minimal on the server: WAL can be neither archived nor used by a base backup".into(),
            "set wal_level = replica and restart PostgreSQL",
        ));
    }
    let archives_here = !facts.in_recovery || facts.archive_mode == "always";
    if facts.archive_mode == "off" && !facts.in_recovery {
        out.push(finding(
            format!(
                "archive_mode is off on the server: no WAL segment reaches {}, so no backup can be restored past its end",
                archive.location
            ),
            &format!("set archive_mode = on and restart PostgreSQL; {MAKE_ARCHIVER}"),
        ));
        return out;
    }
    if !archives_here {
        return out;
    }
    let command = facts.archive_command.trim();
    if command.is_empty() && facts.archive_library.is_empty() {
        out.push(finding(
            format!(
                "archive_mode is on but archive_command is empty: segments pile up in pg_wal and none reaches {}",
                archive.location
            ),
            &format!("set archive_command to barrelman wal-archive (or barman-cloud-wal-archive) for this archive; {MAKE_ARCHIVER}"),
        ));
    } else if names_another_archive(command, archive) {
        out.push(finding(
            format!(
                "archive_command '{command}' does not name {} and server {}: WAL goes to another archive",
                archive.destination_url, archive.server_name
            ),
            "point archive_command at this destination and server name, or check this archive's name",
        ));
    }
    if facts.failing_now && facts.failed_count > 0 {
        let since = match (&facts.last_archived_wal, &facts.last_archived_time) {
            (Some(w), Some(t)) => format!("the last success was {w} at {t}"),
            _ => "no segment was ever archived".into(),
        };
        out.push(finding(
            format!(
                "WAL archiving is failing: the last attempt, for {} at {}, failed ({} failures; {since})",
                facts.last_failed_wal.as_deref().unwrap_or("?"),
                facts.last_failed_time.as_deref().unwrap_or("?"),
                facts.failed_count
            ),
            "read the archive_command's error in the PostgreSQL log and fix it; segments are kept in pg_wal until it succeeds",
        ));
    }
    if let Some(last) = facts
        .last_archived_wal
        .as_deref()
        .and_then(SegmentName::parse)
    {
        let reached = archive
            .segments
            .iter()
            .any(|s| s.timeline == last.timeline && *s >= last);
        if !reached {
            let newest = archive
                .segments
                .iter()
                .filter(|s| s.timeline == last.timeline)
                .max();
            out.push(finding(
                format!(
                    "the server reports {last} archived{}, but {} {}: the server archives somewhere else",
                    facts
                        .last_archived_time
                        .as_deref()
                        .map(|t| format!(" at {t}"))
                        .unwrap_or_default(),
                    archive.location,
                    match newest {
                        Some(n) => format!("stops at {n}"),
                        None => "has no segment of that timeline".into(),
                    }
                ),
                &format!("make archive_command archive to this destination and server name; {MAKE_ARCHIVER}"),
            ));
        }
    }
    if let Some(n) = facts.pending_ready.filter(|n| *n > 16) {
        out.push(finding(
            format!("{n} WAL segments wait to be archived (.ready files in pg_wal/archive_status): archiving is stuck or too slow"),
            "check the archive_command's errors in the PostgreSQL log; with barrelman, raise maxParallel",
        ));
    }
    if let Some(theirs) = archive.backups_systemid {
        if !facts.system_identifier.is_empty() && facts.system_identifier != theirs {
            out.push(finding(
                format!(
                    "the server is database system {}, but the backups in {} are of system {theirs}: two clusters share this archive name",
                    facts.system_identifier, archive.location
                ),
                "give each cluster its own server name (serverName), e.g. after restoring a cluster from this archive",
            ));
        }
    }
    out
}

/// True when `command` calls a barman-cloud or barrelman archiver with a destination
/// and server name other than this archive's. A command that reads its destination
/// elsewhere (an ObjectStore manifest, CloudNativePG's instance manager) or another
/// program altogether cannot be judged and passes.
fn names_another_archive(command: &str, archive: &ArchiveView<'_>) -> bool {
    let tokens: Vec<&str> = command
        .split_whitespace()
        .map(|t| t.trim_matches(|c| c == '"' || c == '\''))
        .collect();
    let ours = tokens
        .iter()
        .any(|t| t.ends_with("barman-cloud-wal-archive") || t.ends_with("barrelman"));
    if !ours || tokens.iter().any(|t| t.starts_with("--config")) {
        return false;
    }
    let url = archive.destination_url.trim_end_matches('/');
    let names_url = tokens.iter().any(|t| t.trim_end_matches('/') == url);
    let names_server = tokens.contains(&archive.server_name);
    !(names_url && names_server)
}

#[cfg(test)]
mod server_tests {
    use super::*;
    use barrelman_postgres::session::ArchivingFacts;

    fn healthy() -> ArchivingFacts {
        ArchivingFacts {
            system_identifier: "7".into(),
            wal_level: "replica".into(),
            archive_mode: "on".into(),
            archive_command: "barrelman wal-archive --endpoint-url http://x s3://b/p srv %p".into(),
            current_wal: Some("000000010000000000000006".into()),
            last_archived_wal: Some("000000010000000000000005".into()),
            last_archived_time: Some("2026-11-25 01:00:00+00".into()),
            pending_ready: Some(0),
            ..Default::default()
        }
    }

    fn segs(names: &[&str]) -> Vec<SegmentName> {
        names
            .iter()
            .map(|n| SegmentName::parse(n).unwrap())
            .collect()
    }

    fn check(facts: &ArchivingFacts, stored: &[&str]) -> Vec<String> {
        let segments = segs(stored);
        let view = ArchiveView {
            location: "s3://b/p/srv",
            destination_url: "s3://b/p",
            server_name: "srv",
            segments: &segments,
            backups_systemid: Some("7"),
        };
        examine_server(facts, &view)
            .into_iter()
            .map(|f| f.problem)
            .collect()
    }

    const STORED: &[&str] = &["000000010000000000000004", "000000010000000000000005"];

    #[test]
    fn a_healthy_server_has_no_findings() {
        assert_eq!(check(&healthy(), STORED), Vec::<String>::new());
        // CloudNativePG's instance manager: the destination is not on the command line.
        let mut f = healthy();
        f.archive_command = "/controller/manager wal-archive --log-destination /x %p".into();
        assert_eq!(check(&f, STORED), Vec::<String>::new());
        // A standby does not archive.
        let mut f = healthy();
        f.in_recovery = true;
        f.archive_mode = "on".into();
        f.last_archived_wal = None;
        assert_eq!(check(&f, &[]), Vec::<String>::new());
    }

    #[test]
    fn each_way_of_not_reaching_the_archive_is_named() {
        let mut f = healthy();
        f.archive_mode = "off".into();
        assert!(check(&f, STORED)[0].contains("archive_mode is off"));

        let mut f = healthy();
        f.archive_command = String::new();
        assert!(check(&f, STORED)[0].contains("archive_command is empty"));

        let mut f = healthy();
        f.archive_command = "barman-cloud-wal-archive s3://b/p other-cluster %p".into();
        let found = check(&f, STORED);
        assert!(
            found[0].contains("does not name s3://b/p and server srv"),
            "{found:?}"
        );

        let mut f = healthy();
        f.failing_now = true;
        f.failed_count = 3;
        f.last_failed_wal = Some("000000010000000000000006".into());
        let found = check(&f, STORED);
        assert!(
            found[0].contains("failing") && found[0].contains("000000010000000000000006"),
            "{found:?}"
        );

        let found = check(&healthy(), &["000000010000000000000002"]);
        assert!(
            found[0].contains("archives somewhere else")
                && found[0].contains("stops at 000000010000000000000002"),
            "{found:?}"
        );

        let mut f = healthy();
        f.pending_ready = Some(40);
        assert!(check(&f, STORED)[0].contains("40 WAL segments wait"));

        let mut f = healthy();
        f.system_identifier = "8".into();
        assert!(check(&f, STORED)[0].contains("two clusters share"));

        let mut f = healthy();
        f.wal_level = "minimal".into();
        assert!(check(&f, STORED)[0].contains("wal_level is minimal"));
    }
}
