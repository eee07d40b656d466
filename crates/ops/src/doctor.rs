//! `doctor`: one report of the failures users meet, each with its fix.
//!
//! 1. backups exist but WAL archiving does not reach the archive;
//! 2. the archive holds WAL of another database system, or a timeline branched by a
//!    cluster restored from this one while the original kept archiving;
//! 3. backups whose WAL range is incomplete;
//! 4. access: endpoint unreachable, credentials refused, bucket missing — told apart;
//! 5. with a connection to the server: archiving off, empty, pointed elsewhere,
//!    failing or piling up, or a server of another database system on this name.
//!
//! Each check is split in two: `gather` reads what it needs (listings, small
//! reads, the server's facts come from the caller) into `ArchiveFacts`, and the
//! pure `judge_archive` and `examine_server` turn facts into findings. A store
//! that cannot be reached is one finding whose fix is the error's
//! [`Classified::hint`].

use crate::catalog;
use crate::verify::{self, CheckError};
use barrelman_core::backup_info::{BackupInfo, BackupStatus, DEFAULT_XLOG_SEGMENT_SIZE};
use barrelman_core::lsn::Lsn;
use barrelman_core::retention;
use barrelman_core::wal::{SegmentName, WalKind, WalName};
use barrelman_core::walpage::{LongPageHeader, LONG_HEADER_LEN};
use barrelman_core::{Classified, Compression};
use barrelman_storage::{Archive, DifferingVariants, StorageError};
use chrono::{DateTime, FixedOffset};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;

/// One problem found, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What is wrong, naming the object or setting.
    pub problem: String,
    /// What to do about it.
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
    /// What the server reports about its archiving.
    pub facts: &'a barrelman_postgres::session::ArchivingFacts,
    /// The destination URL as a command line names it (without the server name).
    pub destination_url: &'a str,
    /// The server name as a command line names it.
    pub server_name: &'a str,
}

/// Everything `doctor` judges an archive on, gathered with listings and small
/// reads: the catalog, the WAL index, verify's verdicts, differing variants, the
/// system identifier of each timeline's newest segment and every history file.
#[derive(Debug)]
pub(crate) struct ArchiveFacts {
    /// Where the archive is, for messages (`s3://bucket/path/server`).
    pub(crate) location: String,
    /// The catalog, by id.
    pub(crate) backups: Vec<BackupInfo>,
    /// `backup.info` files that cannot be read (`<id>: <why>`).
    pub(crate) unreadable: Vec<String>,
    /// Every stored WAL file by name.
    pub(crate) wals: verify::WalIndex,
    /// verify's verdict on every backup (no deep reads).
    pub(crate) verdicts: Vec<verify::BackupCheck>,
    /// WAL names stored in several variants with different content.
    pub(crate) differing: Vec<DifferingVariants>,
    /// For the newest segment of each timeline (read only when the newest DONE
    /// backup records a system identifier): its key and the identifier its first
    /// page header records (`None` when it has no long header).
    pub(crate) segment_systems: Vec<(SegmentName, String, Result<Option<u64>, StorageError>)>,
    /// Every timeline history file: its name, key and text.
    pub(crate) histories: Vec<(WalName, String, Result<String, StorageError>)>,
    /// When the facts were gathered (the age of STARTED backups).
    pub(crate) now: DateTime<FixedOffset>,
}

/// Examines the archive, and the server's archiving when `server` is given. An
/// empty result means nothing is wrong.
pub async fn examine(
    archive: &Archive,
    server: Option<ServerToCheck<'_>>,
) -> Result<Vec<Finding>, CheckError> {
    if let Err(e) = archive.probe().await {
        return Ok(vec![access_finding(&e)]);
    }
    let facts = gather(archive).await?;
    let mut out = judge_archive(&facts);
    // 5. The server's side: is it archiving here at all?
    if let Some(server) = server {
        let segments = segments(&facts.wals);
        let view = ArchiveView {
            location: &facts.location,
            destination_url: server.destination_url,
            server_name: server.server_name,
            segments: &segments,
            backups_systemid: newest_done(&facts.backups).and_then(|b| b.systemid.as_deref()),
        };
        out.extend(examine_server(server.facts, &view));
    }
    Ok(out)
}

/// The finding for an archive that cannot be reached or read at all: the error,
/// and its hint as the fix. An access denial is split: its cause as the problem,
/// its fix on the fix line.
pub(crate) fn access_finding(e: &StorageError) -> Finding {
    let problem = match e {
        StorageError::AccessDenied { location, denial } => {
            format!("access to {location} was denied: {}", denial.cause())
        }
        _ => e.to_string(),
    };
    Finding {
        problem,
        fix: e
            .hint()
            .unwrap_or(Cow::Borrowed("check the store settings"))
            .into_owned(),
    }
}

/// Gathers [`ArchiveFacts`]: one catalog read, one WAL listing, verify's shallow
/// checks, and the small reads the judgement needs.
pub(crate) async fn gather(archive: &Archive) -> Result<ArchiveFacts, CheckError> {
    let (backups, unreadable) = catalog::load(archive).await?;
    let wals = verify::wal_index(archive).await?;
    let verdicts = verify::verify_loaded(archive, &backups, &unreadable, &wals, None, false)
        .await?
        .backups;
    let differing = archive.differing_variants().await?;
    let mut segment_systems = Vec::new();
    if newest_done(&backups).is_some_and(|b| b.systemid.is_some()) {
        let mut by_tli: BTreeMap<u32, SegmentName> = BTreeMap::new();
        for s in segments(&wals) {
            let e = by_tli.entry(s.timeline).or_insert(s);
            if s > *e {
                *e = s;
            }
        }
        for seg in by_tli.into_values() {
            let verify::IndexedWal {
                key,
                compression: c,
                ..
            } = wals[&seg.to_string()].clone();
            let sysid = segment_sysid(archive, &key, c).await;
            segment_systems.push((seg, key, sysid));
        }
    }
    let mut histories = Vec::new();
    for (name, w) in &wals {
        let Ok(name) = WalName::parse(name) else {
            continue;
        };
        if name.kind() == WalKind::History {
            let text = read_small(archive, &w.key, w.compression).await;
            histories.push((name, w.key.clone(), text));
        }
    }
    Ok(ArchiveFacts {
        location: archive.location(),
        backups,
        unreadable,
        wals,
        verdicts,
        differing,
        segment_systems,
        histories,
        now: chrono::Local::now().fixed_offset(),
    })
}

fn newest_done(backups: &[BackupInfo]) -> Option<&BackupInfo> {
    backups.iter().rfind(|b| b.status == BackupStatus::Done)
}

fn segments(wals: &verify::WalIndex) -> Vec<SegmentName> {
    wals.keys().filter_map(|n| SegmentName::parse(n)).collect()
}

/// Judges the archive's facts: unreadable or abandoned catalog entries, WAL
/// archiving that does not reach the archive, backups that cannot be restored, WAL
/// stored with two contents, WAL of another database system, and a timeline whose
/// parent kept archiving after the branch.
pub(crate) fn judge_archive(facts: &ArchiveFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    for u in &facts.unreadable {
        out.push(finding(
            format!("unreadable backup.info: {u}"),
            "remove or repair that backup's backup.info",
        ));
    }
    // STARTED backups a crash or a kill left behind: nothing ever ends them.
    let now = facts.now;
    for b in facts
        .backups
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
    let wals = &facts.wals;
    let done: Vec<_> = facts
        .backups
        .iter()
        .filter(|b| b.status == BackupStatus::Done)
        .collect();
    let segments = segments(wals);

    // 1. WAL archiving not reaching this archive.
    if let Some(newest) = done.last() {
        if segments.is_empty() {
            out.push(finding(
                format!("there are {} backups but the WAL archive {} is empty", done.len(), facts.location),
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
    for c in facts.verdicts.iter().filter(|c| !c.problems.is_empty()) {
        if facts
            .backups
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
    for d in &facts.differing {
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
    if let Some(sysid) = done.last().and_then(|b| b.systemid.as_deref()) {
        for (seg, key, found) in &facts.segment_systems {
            match found {
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
    let seg_size = done
        .last()
        .and_then(|b| b.xlog_segment_size)
        .unwrap_or(DEFAULT_XLOG_SEGMENT_SIZE);
    for (w, key, text) in &facts.histories {
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                out.push(finding(
                    format!("cannot read history file {key}: {e}"),
                    "run `barrelman verify --deep`",
                ));
                continue;
            }
        };
        let Some((parent, lsn)) = branch_point(text) else {
            continue;
        };
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
    out
}

/// The parent timeline and switch point a history file's last entry names.
fn branch_point(text: &str) -> Option<(u32, Lsn)> {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))?;
    let mut parts = line.split_whitespace();
    let parent = parts.next()?.parse::<u32>().ok()?;
    let lsn = parts.next()?.parse::<Lsn>().ok()?;
    Some((parent, lsn))
}

fn history_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The system identifier in a WAL segment's first (long) page header; `None` when
/// the first page has no long header. A failed read is a finding, not an error.
async fn segment_sysid(
    archive: &Archive,
    key: &str,
    c: Compression,
) -> Result<Option<u64>, StorageError> {
    archive
        .decoded(key, c)
        .read(|decoded| {
            let mut head = [0u8; LONG_HEADER_LEN];
            decoded
                .read_exact(&mut head)
                .map_err(|e| decoded.corrupt(e))?;
            Ok(LongPageHeader::parse(&head).map(|h| h.system_identifier))
        })
        .await
}

/// The text of a small object (at most 1 MiB of it); a failed read is a finding.
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
pub(crate) struct ArchiveView<'a> {
    /// Where it is, for messages (`s3://bucket/path/server`).
    pub(crate) location: &'a str,
    /// The destination URL and server name as a command line would name them.
    pub(crate) destination_url: &'a str,
    /// The server name as a command line names it.
    pub(crate) server_name: &'a str,
    /// Every WAL segment stored, by name.
    pub(crate) segments: &'a [SegmentName],
    /// The database system of the newest DONE backup, if any.
    pub(crate) backups_systemid: Option<&'a str>,
}

/// The server's side of archiving, checked against the archive it should reach:
/// WAL not archived at all, archived somewhere else, failing, piling up, or a server
/// of another database system using this archive's name.
pub(crate) fn examine_server(
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

#[cfg(test)]
mod archive_tests {
    use super::*;
    use barrelman_storage::Denial;

    const W4: &str = "000000010000000000000004";
    const W5: &str = "000000010000000000000005";
    const W6: &str = "000000010000000000000006";

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    fn done(id: &str, end: &str) -> BackupInfo {
        let mut b = BackupInfo::new(id);
        b.status = BackupStatus::Done;
        b.begin_wal = Some(W4.into());
        b.end_wal = Some(end.into());
        b.systemid = Some("7".into());
        b.xlog_segment_size = Some(16 << 20);
        b
    }

    fn wals(names: &[&str]) -> verify::WalIndex {
        names
            .iter()
            .map(|n| {
                let dir = if n.len() == 24 { &n[..16] } else { "" };
                (
                    n.to_string(),
                    verify::IndexedWal {
                        key: format!("p/s/wals/{dir}/{n}").replace("//", "/"),
                        compression: Compression::None,
                        archived_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                    },
                )
            })
            .collect()
    }

    /// A healthy archive: one DONE backup, its WAL, nothing else.
    fn healthy() -> ArchiveFacts {
        ArchiveFacts {
            location: "s3://b/p/s".into(),
            backups: vec![done("20260101T000000", W5)],
            unreadable: vec![],
            wals: wals(&[W4, W5, W6]),
            verdicts: vec![verify::BackupCheck {
                backup_id: "20260101T000000".into(),
                problems: vec![],
            }],
            differing: vec![],
            segment_systems: vec![(
                SegmentName::parse(W6).unwrap(),
                format!("p/s/wals/0000000100000000/{W6}"),
                Ok(Some(7)),
            )],
            histories: vec![],
            now: at("2026-01-02T00:00:00+00:00"),
        }
    }

    fn problems(facts: &ArchiveFacts) -> Vec<String> {
        judge_archive(facts)
            .into_iter()
            .map(|f| f.problem)
            .collect()
    }

    #[test]
    fn a_healthy_archive_has_no_findings() {
        assert_eq!(problems(&healthy()), Vec::<String>::new());
        // An empty archive is not a problem either.
        let mut f = healthy();
        f.backups.clear();
        f.verdicts.clear();
        f.wals.clear();
        f.segment_systems.clear();
        assert_eq!(problems(&f), Vec::<String>::new());
    }

    #[test]
    fn each_problem_of_an_archive_is_named_with_its_fix() {
        type Change = fn(&mut ArchiveFacts);
        // (what changes, the problem expected, a word of the fix expected)
        let cases: &[(Change, &str, &str)] = &[
            (
                |f| f.unreadable.push("20260103T000000: line 2 is not key=value".into()),
                "unreadable backup.info: 20260103T000000: line 2 is not key=value",
                "remove or repair",
            ),
            (
                |f| {
                    let mut b = BackupInfo::new("20251230T000000");
                    b.status = BackupStatus::Started;
                    b.begin_time = Some(at("2025-12-30T00:00:00+00:00"));
                    f.backups.insert(0, b);
                },
                "backup 20251230T000000 is STARTED since 2025-12-30 00:00:00 +00:00 (72 hours ago): a backup that crashed or was killed left it, and it will never end",
                "barrelman delete --backup ID",
            ),
            (
                |f| {
                    f.wals.clear();
                    f.segment_systems.clear();
                },
                "there are 1 backups but the WAL archive s3://b/p/s is empty",
                "isWALArchiver: true",
            ),
            (
                |f| f.backups[0].end_wal = Some("000000010000000000000009".into()),
                "the newest backup 20260101T000000 ends in WAL segment 000000010000000000000009, which is not archived (the archive stops at 000000010000000000000006)",
                "point archive_command at it",
            ),
            (
                |f| f.verdicts[0].problems.push("missing WAL segment X".into()),
                "backup 20260101T000000 cannot be restored: missing WAL segment X",
                "take a new backup",
            ),
            (
                |f| {
                    f.differing.push(DifferingVariants {
                        name: W5.into(),
                        keys: vec!["k.gz".into(), "k.zst".into()],
                    })
                },
                "WAL file 000000010000000000000005 is stored in 2 variants with different content: k.gz, k.zst (restore serves k.gz)",
                "keep the copy it wrote",
            ),
            (
                |f| f.segment_systems[0].2 = Ok(Some(8)),
                "WAL segment 000000010000000000000006 (p/s/wals/0000000100000000/000000010000000000000006) belongs to database system 8, but the backups are of system 7",
                "its own server name",
            ),
            (
                |f| f.segment_systems[0].2 = Err(StorageError::Config("cut".into())),
                "cannot read WAL segment p/s/wals/0000000100000000/000000010000000000000006: cut",
                "verify --deep",
            ),
            (
                |f| {
                    f.histories.push((
                        WalName::parse("00000002.history").unwrap(),
                        "p/s/wals/00000002.history".into(),
                        Ok("1\t0/5000000\tno recovery target specified\n".into()),
                    ))
                },
                "timeline 2 branched from timeline 1 at 0/5000000 (00000002.history), yet timeline 1 kept archiving up to 000000010000000000000006: two clusters archive into this folder (a cluster restored from this one uses the same server name)",
                "different server name",
            ),
            (
                |f| {
                    f.histories.push((
                        WalName::parse("00000002.history").unwrap(),
                        "p/s/wals/00000002.history".into(),
                        Err(StorageError::Config("cut".into())),
                    ))
                },
                "cannot read history file p/s/wals/00000002.history: cut",
                "verify --deep",
            ),
        ];
        for (change, problem, fix) in cases {
            let mut f = healthy();
            change(&mut f);
            let found = judge_archive(&f);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].problem, *problem);
            assert!(found[0].fix.contains(fix), "{}", found[0].fix);
        }
    }

    #[test]
    fn branches_that_the_parent_did_not_outlive_and_unjudgeable_files_pass() {
        let mut f = healthy();
        // Timeline 1 stops at the switch point: a clean promotion.
        f.histories.push((
            WalName::parse("00000002.history").unwrap(),
            "p/s/wals/00000002.history".into(),
            Ok("1\t0/7000000\tno recovery target specified\n".into()),
        ));
        // A history without an entry, and one with a comment only.
        for text in ["", "# comment\n"] {
            f.histories.push((
                WalName::parse("00000003.history").unwrap(),
                "p/s/wals/00000003.history".into(),
                Ok(text.into()),
            ));
        }
        // A segment without a long page header has nothing to compare.
        f.segment_systems[0].2 = Ok(None);
        // A FAILED backup's problems are not a finding: it is not meant to restore.
        let mut failed = BackupInfo::new("20260101T120000");
        failed.status = BackupStatus::Failed;
        f.backups.push(failed);
        f.verdicts.push(verify::BackupCheck {
            backup_id: "20260101T120000".into(),
            problems: vec!["status is FAILED, not DONE".into()],
        });
        // A young STARTED backup is a backup running now.
        let mut running = BackupInfo::new("20260101T230000");
        running.status = BackupStatus::Started;
        running.begin_time = Some(at("2026-01-01T23:00:00+00:00"));
        f.backups.push(running);
        assert_eq!(problems(&f), Vec::<String>::new());
    }

    #[test]
    fn an_unusable_store_is_one_finding_whose_fix_is_the_errors_hint() {
        // (error, the fix doctor has always printed for it)
        let cases = [
            (
                StorageError::Unreachable {
                    endpoint: "http://x".into(),
                    detail: "connection refused".into(),
                },
                "check the endpoint URL (endpointURL / --endpoint-url), DNS and the network path",
            ),
            (
                StorageError::NoCredentials {
                    detail: "none".into(),
                },
                "give the ObjectStore s3Credentials (or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or an IAM role",
            ),
            (
                StorageError::BucketMissing {
                    bucket: "b".into(),
                    endpoint: "http://x".into(),
                },
                "create the bucket, or fix the bucket name in destinationPath",
            ),
            (
                StorageError::AccessDenied {
                    location: "s3://b/p".into(),
                    denial: Denial::WrongSecret,
                },
                Denial::WrongSecret.fix(),
            ),
            (StorageError::Config("bad CA".into()), "check the store settings"),
            (
                StorageError::InvalidKey {
                    key: "k".into(),
                    reason: "no",
                },
                "check the store settings",
            ),
        ];
        for (e, fix) in cases {
            let f = access_finding(&e);
            assert_eq!(f.fix, fix, "{e}");
            match &e {
                StorageError::AccessDenied { denial, .. } => assert_eq!(
                    f.problem,
                    format!("access to s3://b/p was denied: {}", denial.cause())
                ),
                _ => assert_eq!(f.problem, e.to_string()),
            }
        }
    }
}
