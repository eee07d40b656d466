//! `verify`: is a backup restorable? Its `backup.info` is DONE, every tar part it
//! consists of is present (`parts::check`), and every WAL segment from
//! `begin_wal` to `end_wal` (in that order) is in the archive; `deep` also reads
//! every part and segment through its codec and requires the part with
//! `backup_label`. Also reports the WAL chain after the newest backup, gaps included.

use crate::backup::wal_range;
use crate::catalog;
use crate::parts;
use barrelman_core::backup_info::{BackupInfo, BackupStatus, DEFAULT_XLOG_SEGMENT_SIZE};
use barrelman_core::layout::{ServerLayout, DATA_ITEM};
use barrelman_core::wal::SegmentName;
use barrelman_core::{Classified, ErrorClass};
use barrelman_postgres::extract;
use barrelman_storage::{Archive, ObjectInfo, StorageError};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// Why `verify` or `doctor` could not finish looking at the archive. What they
/// find wrong with it is not an error: it is their report.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The store failed (its error names the object and the fix).
    #[error("{0}")]
    Storage(#[source] StorageError),
    /// A worker reading an object on the blocking pool panicked (a bug).
    #[error("internal: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl From<StorageError> for CheckError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

impl Classified for CheckError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Storage(e) => e.class(),
            Self::Task(_) => ErrorClass::Internal,
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::Storage(e) => e.hint(),
            Self::Task(_) => None,
        }
    }
}

/// The verdict on one backup.
#[derive(Debug, Clone)]
pub struct BackupCheck {
    /// The backup's id (or what was asked for, when nothing matched).
    pub backup_id: String,
    /// Empty when the backup is restorable; the first entry names the first missing
    /// or broken object.
    pub problems: Vec<String>,
}

/// WAL after the newest DONE backup, on its timeline.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// The timeline of the newest DONE backup.
    pub timeline: u32,
    /// Its first segment: where the chain starts.
    pub from: String,
    /// The last segment reachable without a gap.
    pub contiguous_until: Option<String>,
    /// When that segment was archived: recovery can reach about this time (its last
    /// commits are a little earlier).
    pub until_archived_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Segments missing between the start and the newest stored one (at most 100).
    pub gaps: Vec<String>,
    /// The segment size the backup records (16 MiB when it does not).
    pub segment_size: u64,
}

impl Chain {
    /// The WAL position recovery can reach through the chain: the end of its last
    /// contiguous segment (the start of the one after it).
    pub fn end_lsn(&self) -> Option<barrelman_core::lsn::Lsn> {
        let last = SegmentName::parse(self.contiguous_until.as_deref()?)?;
        let size = self.segment_size.max(1);
        let per_log = 0x1_0000_0000u64 / size;
        let segno = u64::from(last.log) * per_log + u64::from(last.seg) + 1;
        Some(barrelman_core::lsn::Lsn(segno.checked_mul(size)?))
    }
}

/// What `verify` found: a verdict per backup, the WAL chain, the recovery range.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// One verdict per backup asked about (unreadable entries first).
    pub backups: Vec<BackupCheck>,
    /// The WAL after the newest DONE backup, when there is one.
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
) -> Result<VerifyReport, CheckError> {
    let (backups, unreadable) = catalog::load(archive).await?;
    let wals = wal_index(archive).await?;
    let mut report = verify_loaded(archive, &backups, &unreadable, &wals, which, deep).await?;
    report.differing_wal = archive.differing_variants().await?;
    Ok(report)
}

/// One stored WAL file: its key, codec and when it was archived.
#[derive(Debug, Clone)]
pub(crate) struct IndexedWal {
    /// Where it is stored.
    pub(crate) key: String,
    /// The codec its suffix names.
    pub(crate) compression: barrelman_core::Compression,
    /// When it was stored (the object's last-modified time).
    pub(crate) archived_at: chrono::DateTime<chrono::Utc>,
}

/// Every stored WAL file by bare name, from one listing.
pub(crate) type WalIndex = BTreeMap<String, IndexedWal>;

/// Lists `wals/` once into a [`WalIndex`].
pub(crate) async fn wal_index(archive: &Archive) -> Result<WalIndex, StorageError> {
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

/// What reading a backup's parts and WAL through their codecs gave (`deep`).
#[derive(Debug, Clone, Default)]
pub(crate) struct DeepReads {
    /// Each tar part: its key, its item, and whether it held `backup_label` (or
    /// why it could not be read).
    pub(crate) parts: Vec<(String, String, Result<bool, String>)>,
    /// Each stored WAL segment of the backup's range: its key and decoded size (or
    /// why it could not be read).
    pub(crate) segments: Vec<(String, Result<u64, String>)>,
}

/// The facts one backup is judged on: its catalog entry, the listing of its
/// directory, and the deep reads when they were made.
#[derive(Debug, Clone)]
pub(crate) struct BackupFacts<'a> {
    /// Its `backup.info`.
    pub(crate) info: &'a BackupInfo,
    /// `<path>/<server>/base/<id>`.
    pub(crate) prefix: String,
    /// Every object under `prefix`.
    pub(crate) objects: Vec<ObjectInfo>,
}

/// Judges a backup without reading its data: DONE, every part present at its size
/// ([`parts::check`]), every WAL segment of its range stored. Returns the problems
/// and the parts to read for a deep check.
pub(crate) fn judge_backup(
    facts: &BackupFacts<'_>,
    layout: &ServerLayout,
    wals: &WalIndex,
) -> (Vec<String>, Vec<parts::StoredPart>) {
    let b = facts.info;
    let mut problems = Vec::new();
    if b.status != BackupStatus::Done {
        problems.push(format!("status is {}, not DONE", b.status.as_str()));
        return (problems, Vec::new());
    }
    let parts = parts::check(b, &facts.prefix, &facts.objects);
    problems.extend(parts.problems);
    match (b.begin_wal.as_deref(), b.end_wal.as_deref()) {
        (Some(begin), Some(end)) if wal_order(begin) > wal_order(end) => problems.push(format!(
            "backup.info says the backup ends in WAL segment {end}, before it begins ({begin}): the catalog entry is corrupt"
        )),
        (Some(begin), Some(end)) => match wal_range(begin, end, segment_size(b)) {
            Ok(range) => {
                for w in range {
                    if !wals.contains_key(w.as_str()) {
                        problems.push(format!(
                            "missing WAL segment {} ({}/{w}*) needed by this backup",
                            w,
                            layout.wal_dir(&w)
                        ));
                    }
                }
            }
            Err(e) => problems.push(e.to_string()),
        },
        _ => problems.push("backup.info has no begin_wal/end_wal".into()),
    }
    (problems, parts.parts)
}

/// Judges what reading the data gave: every part decodes and extracts, one `data`
/// part holds `backup_label`, every segment decodes to the segment size.
pub(crate) fn judge_deep(prefix: &str, segment_size: u64, reads: &DeepReads) -> Vec<String> {
    let mut problems = Vec::new();
    let mut has_label = false;
    for (key, item, read) in &reads.parts {
        match read {
            Ok(label) => has_label |= item == DATA_ITEM && *label,
            Err(e) => problems.push(format!("cannot read tar part {key}: {e}")),
        }
    }
    if problems.is_empty() && !has_label {
        problems.push(format!(
            "no tar part of {prefix}/{DATA_ITEM}* holds backup_label: the backup's last part is missing"
        ));
    }
    for (key, read) in &reads.segments {
        match read {
            Ok(n) if *n == segment_size => {}
            Ok(n) => problems.push(format!(
                "WAL segment {key} holds {n} bytes, expected {segment_size}"
            )),
            Err(e) => problems.push(format!("cannot read WAL segment {key}: {e}")),
        }
    }
    problems
}

/// The summary over every backup's verdict: the earliest recovery point (the end of
/// the oldest restorable backup) and the WAL chain after the newest DONE backup.
pub(crate) fn judge_report(
    backups: &[BackupInfo],
    checks: Vec<BackupCheck>,
    wals: &WalIndex,
) -> VerifyReport {
    let restorable: BTreeSet<&str> = checks
        .iter()
        .filter(|c| c.problems.is_empty())
        .map(|c| c.backup_id.as_str())
        .collect();
    let earliest = backups
        .iter()
        .find(|b| restorable.contains(b.backup_id.as_str()))
        .and_then(|b| b.end_time.map(|t| t.to_string()));
    // The newest restorable backup when the checks found one (a broken newer backup
    // cannot start a recovery), else the newest DONE one.
    let chain = backups
        .iter()
        .rfind(|b| restorable.contains(b.backup_id.as_str()))
        .or_else(|| backups.iter().rfind(|b| b.status == BackupStatus::Done))
        .and_then(|newest| chain_after(newest, wals));
    VerifyReport {
        backups: checks,
        chain,
        earliest,
        differing_wal: Vec::new(),
    }
}

/// [`verify`] over a catalog and WAL index the caller already read.
pub(crate) async fn verify_loaded(
    archive: &Archive,
    backups: &[BackupInfo],
    unreadable: &[String],
    wals: &WalIndex,
    which: Option<&str>,
    deep: bool,
) -> Result<VerifyReport, CheckError> {
    let mut checks = Vec::new();
    for u in unreadable {
        checks.push(BackupCheck {
            backup_id: u.split(':').next().unwrap_or_default().to_string(),
            problems: vec![format!("unreadable backup.info: {u}")],
        });
    }
    let selected: Vec<&BackupInfo> = match which {
        Some(w) => match catalog::choose(backups, w, &catalog::TargetChoice::default()) {
            Ok(b) => vec![b],
            Err(e) => {
                checks.push(BackupCheck {
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
    let layout = archive.layout();
    for b in selected {
        let prefix = layout.backup_dir(&b.backup_id);
        let objects = match &listing {
            Some(l) => l.get(&b.backup_id).cloned().unwrap_or_default(),
            None => archive.list_objects(&prefix).await?,
        };
        let facts = BackupFacts {
            info: b,
            prefix,
            objects,
        };
        let (mut problems, parts) = judge_backup(&facts, layout, wals);
        if deep && problems.is_empty() {
            let reads = read_deep(archive, b, parts, wals).await?;
            problems = judge_deep(&facts.prefix, segment_size(b), &reads);
        }
        checks.push(BackupCheck {
            backup_id: b.backup_id.clone(),
            problems,
        });
    }
    Ok(judge_report(backups, checks, wals))
}

/// The segment size a backup records (16 MiB when it does not).
fn segment_size(b: &BackupInfo) -> u64 {
    b.xlog_segment_size.unwrap_or(DEFAULT_XLOG_SEGMENT_SIZE)
}

/// Gathers the deep facts: reads every part through its codec and tar reader, and
/// every stored segment of the backup's WAL range through its codec.
async fn read_deep(
    archive: &Archive,
    b: &BackupInfo,
    parts: Vec<parts::StoredPart>,
    wals: &WalIndex,
) -> Result<DeepReads, CheckError> {
    let mut reads = DeepReads::default();
    for part in parts {
        let r = archive
            .decoded(&part.key, part.part.compression)
            .read(|decoded| Ok::<_, StorageError>(extract::scan_tar(decoded)))
            .await?;
        reads.parts.push((
            part.key,
            part.part.item,
            r.map(|scan| scan.has_backup_label)
                .map_err(|e| e.to_string()),
        ));
    }
    let range = wal_range(
        b.begin_wal.as_deref().unwrap_or(""),
        b.end_wal.as_deref().unwrap_or(""),
        segment_size(b),
    )
    .unwrap_or_default();
    for w in range {
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
        reads.segments.push((key, r.map_err(|e| e.to_string())));
    }
    Ok(reads)
}

/// A segment name's place in WAL order, whatever its timeline (`None` when it is not
/// a segment name: the range check reports those).
fn wal_order(name: &str) -> Option<(u32, u32)> {
    SegmentName::parse(name).map(|s| (s.log, s.seg))
}

fn chain_after(newest: &BackupInfo, wals: &WalIndex) -> Option<Chain> {
    let begin = SegmentName::parse(newest.begin_wal.as_deref()?)?;
    let seg_size = segment_size(newest);
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
        segment_size: seg_size,
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

#[cfg(test)]
mod tests {
    use super::*;
    use barrelman_core::backup_info::PartsManifest;
    use barrelman_core::Compression;

    const ID: &str = "20260101T000000";
    const PREFIX: &str = "p/s/base/20260101T000000";
    const SEG: u64 = 16 << 20;

    fn layout() -> ServerLayout {
        ServerLayout::new("p", "s")
    }

    fn info(id: &str, begin: &str, end: &str) -> BackupInfo {
        let mut i = BackupInfo::new(id);
        i.status = BackupStatus::Done;
        i.begin_wal = Some(begin.into());
        i.end_wal = Some(end.into());
        i.xlog_segment_size = Some(SEG);
        i.parts = Some(PartsManifest {
            parts: vec![("data.tar".into(), 20), ("data_0001.tar".into(), 30)],
            damaged: false,
        });
        i
    }

    fn listing(files: &[(&str, u64)]) -> Vec<ObjectInfo> {
        files
            .iter()
            .map(|(f, size)| ObjectInfo {
                key: format!("{PREFIX}/{f}"),
                size: *size,
            })
            .collect()
    }

    fn wals(names: &[&str]) -> WalIndex {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.to_string(),
                    IndexedWal {
                        key: format!("p/s/wals/{}/{n}", &n[..16]),
                        compression: Compression::None,
                        archived_at: chrono::DateTime::from_timestamp(1_800_000_000 + i as i64, 0)
                            .unwrap(),
                    },
                )
            })
            .collect()
    }

    const PARTS: &[(&str, u64)] = &[("backup.info", 1), ("data.tar", 20), ("data_0001.tar", 30)];
    const W4: &str = "000000010000000000000004";
    const W5: &str = "000000010000000000000005";
    const W6: &str = "000000010000000000000006";

    fn judge(i: &BackupInfo, files: &[(&str, u64)], stored: &[&str]) -> Vec<String> {
        let facts = BackupFacts {
            info: i,
            prefix: PREFIX.into(),
            objects: listing(files),
        };
        judge_backup(&facts, &layout(), &wals(stored)).0
    }

    #[test]
    fn a_backup_is_judged_on_its_status_parts_and_wal() {
        let ok = info(ID, W4, W6);
        assert_eq!(judge(&ok, PARTS, &[W4, W5, W6]), Vec::<String>::new());
        let mut failed = ok.clone();
        failed.status = BackupStatus::Failed;
        let mut started = ok.clone();
        started.status = BackupStatus::Started;
        let mut no_range = ok.clone();
        no_range.end_wal = None;
        let backwards = info(ID, W6, W4);
        // (backup, listing, stored WAL, the first problem expected)
        type Case<'a> = (&'a BackupInfo, &'a [(&'a str, u64)], &'a [&'a str], String);
        let cases: Vec<Case> = vec![
            (&failed, PARTS, &[W4, W5, W6], "status is FAILED, not DONE".into()),
            (&started, PARTS, &[W4, W5, W6], "status is STARTED, not DONE".into()),
            (
                &ok,
                &[("data.tar", 20)],
                &[W4, W5, W6],
                format!("missing tar part {PREFIX}/data_0001.tar"),
            ),
            (
                &ok,
                &[("data.tar", 20), ("data_0001.tar", 3)],
                &[W4, W5, W6],
                format!("tar part {PREFIX}/data_0001.tar holds 3 bytes, but the backup wrote 30"),
            ),
            (
                &ok,
                &[("data.tar", 20), ("data_0001.tar", 30), ("data_0002.tar", 1)],
                &[W4, W5, W6],
                format!("tar part {PREFIX}/data_0002.tar is not in the backup's part list in backup.info: it belongs to no finished backup"),
            ),
            (
                &ok,
                PARTS,
                &[W4, W6],
                format!("missing WAL segment {W5} (p/s/wals/0000000100000000/{W5}*) needed by this backup"),
            ),
            (
                &backwards,
                PARTS,
                &[W4, W5, W6],
                format!("backup.info says the backup ends in WAL segment {W4}, before it begins ({W6}): the catalog entry is corrupt"),
            ),
            (&no_range, PARTS, &[W4], "backup.info has no begin_wal/end_wal".into()),
        ];
        for (i, files, stored, first) in cases {
            let problems = judge(i, files, stored);
            assert_eq!(problems.first(), Some(&first), "{problems:?}");
        }
        // Every missing segment is named, in order.
        assert_eq!(judge(&ok, PARTS, &[W5]).len(), 2);
    }

    #[test]
    fn deep_reads_are_judged_on_label_decoding_and_segment_size() {
        let part = |item: &str, read: Result<bool, String>| {
            (format!("{PREFIX}/{item}.tar"), item.to_string(), read)
        };
        let seg = |read: Result<u64, String>| (format!("p/s/wals/x/{W4}"), read);
        let ok = DeepReads {
            parts: vec![part("16391", Ok(false)), part("data", Ok(true))],
            segments: vec![seg(Ok(SEG))],
        };
        assert_eq!(judge_deep(PREFIX, SEG, &ok), Vec::<String>::new());
        // (reads, the problems expected)
        let cases: Vec<(DeepReads, Vec<String>)> = vec![
            (
                DeepReads {
                    parts: vec![part("data", Ok(false))],
                    segments: vec![],
                },
                vec![format!("no tar part of {PREFIX}/data* holds backup_label: the backup's last part is missing")],
            ),
            (
                // A tablespace holding a file named backup_label does not count.
                DeepReads {
                    parts: vec![part("16391", Ok(true)), part("data", Ok(false))],
                    segments: vec![],
                },
                vec![format!("no tar part of {PREFIX}/data* holds backup_label: the backup's last part is missing")],
            ),
            (
                DeepReads {
                    parts: vec![part("data", Err("corrupt deflate stream".into()))],
                    segments: vec![],
                },
                vec![format!("cannot read tar part {PREFIX}/data.tar: corrupt deflate stream")],
            ),
            (
                DeepReads {
                    parts: vec![part("data", Ok(true))],
                    segments: vec![seg(Ok(SEG - 1)), seg(Err("bad magic".into()))],
                },
                vec![
                    format!("WAL segment p/s/wals/x/{W4} holds {} bytes, expected {SEG}", SEG - 1),
                    format!("cannot read WAL segment p/s/wals/x/{W4}: bad magic"),
                ],
            ),
        ];
        for (reads, expected) in cases {
            assert_eq!(judge_deep(PREFIX, SEG, &reads), expected);
        }
    }

    #[test]
    fn the_report_names_the_earliest_point_and_the_chain_with_its_gaps() {
        let older = info("20260101T000000", W4, W4);
        let mut newer = info("20260102T000000", W5, W5);
        newer.end_time = None;
        let mut older_done = older.clone();
        older_done.end_time =
            Some(chrono::DateTime::parse_from_rfc3339("2026-01-01T00:10:00+00:00").unwrap());
        let backups = vec![older_done, newer];
        let check = |id: &str, problems: &[&str]| BackupCheck {
            backup_id: id.into(),
            problems: problems.iter().map(|p| p.to_string()).collect(),
        };
        let w8 = "000000010000000000000008";
        let stored = wals(&[W4, W5, W6, w8, "000000020000000000000009"]);
        let r = judge_report(
            &backups,
            vec![check("20260101T000000", &[]), check("20260102T000000", &[])],
            &stored,
        );
        assert_eq!(r.earliest.as_deref(), Some("2026-01-01 00:10:00 +00:00"));
        let chain = r.chain.unwrap();
        assert_eq!(
            (
                chain.timeline,
                chain.from.as_str(),
                chain.contiguous_until.as_deref()
            ),
            (1, W5, Some(W6))
        );
        assert_eq!(chain.gaps, vec!["000000010000000000000007".to_string()]);
        assert_eq!(chain.until_archived_at, Some(stored[W6].archived_at));

        // The oldest backup not restorable: no earliest point from it.
        let r = judge_report(
            &backups,
            vec![
                check("20260101T000000", &["missing"]),
                check("20260102T000000", &[]),
            ],
            &stored,
        );
        assert_eq!(r.earliest, None);
        // The newest backup's first segment missing: the chain starts with a gap.
        let r = judge_report(&backups, vec![], &wals(&[W4, W6]));
        let chain = r.chain.unwrap();
        assert_eq!(chain.contiguous_until, None);
        assert_eq!(chain.gaps, vec![W5.to_string()]);
        assert_eq!(chain.end_lsn(), None);

        // The newest backup broken: the chain runs from the newest restorable one,
        // and ends where its last contiguous segment ends.
        let r = judge_report(
            &backups,
            vec![
                check("20260101T000000", &[]),
                check("20260102T000000", &["missing"]),
            ],
            &stored,
        );
        let chain = r.chain.unwrap();
        assert_eq!(
            (chain.from.as_str(), chain.contiguous_until.as_deref()),
            (W4, Some(W6))
        );
        assert_eq!(
            chain.end_lsn().map(|l| l.to_string()).as_deref(),
            Some("0/7000000")
        );
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[tokio::test]
    async fn a_check_error_keeps_the_store_errors_class_text_and_hint() {
        let e = CheckError::from(StorageError::BucketMissing {
            bucket: "b".into(),
            endpoint: "http://x".into(),
        });
        assert_eq!(e.class(), ErrorClass::Denied);
        assert_eq!(
            e.to_string(),
            "the bucket 'b' does not exist at http://x; create it or fix the destination path"
        );
        assert_eq!(
            e.hint().as_deref(),
            Some("create the bucket, or fix the bucket name in destinationPath")
        );
        // The store's error stays reachable as the source (faces look for it).
        let source = std::error::Error::source(&e).unwrap();
        assert!(source.downcast_ref::<StorageError>().is_some());

        let panicked = tokio::task::spawn_blocking(|| panic!("boom"))
            .await
            .unwrap_err();
        let e = CheckError::Task(panicked);
        assert_eq!(e.class(), ErrorClass::Internal);
        assert!(e.to_string().starts_with("internal: "), "{e}");
    }
}
