//! Retention as pure code: (catalog, policy, now) -> a decision for every backup with
//! its reason, and the exact WAL files that go with each obsolete backup. Follows
//! barman-cloud 3.19.1's `backup-delete -r` rules, plus one deliberate addition:
//! FAILED backups older than the oldest retained DONE backup are removed too, and so
//! are STARTED ones a crash left behind (older than that and than [`STALE_STARTED`]).

use crate::backup_info::{BackupInfo, BackupStatus};
use crate::layout::StoredWal;
use crate::wal::WalKind;
use chrono::{DateTime, Duration, FixedOffset};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// A STARTED backup whose `begin_time` is at least this old is taken as left by a
/// crash: retention may remove it (see [`decide`]), `delete --backup` accepts it
/// without `--force`, and `doctor` reports it. Younger ones may still be running.
pub const STALE_STARTED: Duration = Duration::hours(24);

/// True when `info` is STARTED and began at least [`STALE_STARTED`] before `now`. A
/// STARTED backup without a begin time (a hand-made or damaged file) counts as stale.
pub fn is_stale_started(info: &BackupInfo, now: DateTime<FixedOffset>) -> bool {
    info.status == BackupStatus::Started && info.begin_time.is_none_or(|t| now - t >= STALE_STARTED)
}

/// A retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Keep the newest `n` DONE backups.
    Redundancy(u32),
    /// Keep what is needed to recover to any point in the last `days` days.
    RecoveryWindow {
        /// The window's length in days (weeks count 7, months 31, as barman
        /// counts them).
        days: u32,
    },
}

/// A policy string barman does not accept (exit 3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retention policy '{0}': use 'REDUNDANCY n' or 'RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS'")]
pub struct InvalidPolicy(pub String);

impl FromStr for Policy {
    type Err = InvalidPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidPolicy(s.to_string());
        let words: Vec<String> = s
            .split_whitespace()
            .map(|w| w.to_ascii_uppercase())
            .collect();
        let num = |w: &String| w.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(bad);
        match words.as_slice() {
            [r, n] if r == "REDUNDANCY" => Ok(Policy::Redundancy(num(n)?)),
            [r, w, o, n, unit] if r == "RECOVERY" && w == "WINDOW" && o == "OF" => {
                let n = num(n)?;
                let per = match unit.as_str() {
                    "DAY" | "DAYS" => 1,
                    "WEEK" | "WEEKS" => 7,
                    // barman counts a month as 31 days.
                    "MONTH" | "MONTHS" => 31,
                    _ => return Err(bad()),
                };
                // A window too long to count in days is not a policy (it would
                // overflow): refused like any other invalid policy.
                let days = n.checked_mul(per).ok_or_else(bad)?;
                Ok(Policy::RecoveryWindow { days })
            }
            _ => Err(bad()),
        }
    }
}

impl Policy {
    /// An ObjectStore's `spec.retentionPolicy` as the CRD writes it (`^[1-9][0-9]*[dwm]$`:
    /// `30d`, `4w`, `6m`), as upstream turns it into barman's
    /// `RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS`. Anything else is refused, as the CRD's
    /// pattern refuses it.
    pub fn from_cnpg(text: &str) -> Result<Policy, InvalidPolicy> {
        let bad = || InvalidPolicy(text.to_string());
        let (n, unit) = text.split_at(text.len().checked_sub(1).ok_or_else(bad)?);
        let digits_ok =
            n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0') && !n.is_empty();
        if !digits_ok {
            return Err(bad());
        }
        let unit = match unit {
            "d" => "DAYS",
            "w" => "WEEKS",
            "m" => "MONTHS",
            _ => return Err(bad()),
        };
        format!("RECOVERY WINDOW OF {n} {unit}")
            .parse()
            .map_err(|_| bad())
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Redundancy(n) => write!(f, "REDUNDANCY {n}"),
            Policy::RecoveryWindow { days } => write!(f, "RECOVERY WINDOW OF {days} DAYS"),
        }
    }
}

/// What happens to one backup, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Kept by the policy.
    Valid(String),
    /// Kept by a keep annotation (`full` or `standalone`).
    Keep(String),
    /// Would be obsolete but kept to honour `--minimum-redundancy`.
    KeptForMinimum(String),
    /// Deleted.
    Obsolete(String),
    /// Not a DONE backup and not old enough to clean up: left alone.
    Ignored(String),
}

impl Decision {
    /// True for [`Decision::Obsolete`]: the backup is to be deleted.
    pub fn deletes(&self) -> bool {
        matches!(self, Decision::Obsolete(_))
    }
    /// The reason, for `--dry-run` output.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Valid(r)
            | Decision::Keep(r)
            | Decision::KeptForMinimum(r)
            | Decision::Obsolete(r)
            | Decision::Ignored(r) => r,
        }
    }
}

/// A backup as retention sees it.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The backup's `backup.info`.
    pub info: &'a BackupInfo,
    /// `full`, `standalone`, or none.
    pub keep: Option<&'a str>,
}

/// Decides every backup, newest first as barman walks them. Returns decisions by id.
pub fn decide(
    catalog: &[Entry<'_>],
    policy: Policy,
    minimum_redundancy: u32,
    now: DateTime<FixedOffset>,
) -> BTreeMap<String, Decision> {
    let mut out = BTreeMap::new();
    let mut done: Vec<&Entry> = catalog
        .iter()
        .filter(|e| e.info.status == BackupStatus::Done)
        .collect();
    done.sort_by(|a, b| b.info.backup_id.cmp(&a.info.backup_id));
    let keep_reason = |k: &str| format!("KEEP:{} (keep annotation)", k.to_uppercase());
    match policy {
        Policy::Redundancy(n) => {
            let n = n.max(minimum_redundancy) as usize;
            for (i, e) in done.iter().enumerate() {
                let d = if let Some(k) = e.keep {
                    Decision::Keep(keep_reason(k))
                } else if i < n {
                    Decision::Valid(format!("one of the {n} newest DONE backups"))
                } else {
                    Decision::Obsolete(format!("older than the {n} newest DONE backups"))
                };
                out.insert(e.info.backup_id.clone(), d);
            }
        }
        Policy::RecoveryWindow { days } => {
            // A window reaching before the earliest time chrono can represent
            // covers every backup: start it there instead of overflowing.
            let point = now
                .checked_sub_signed(Duration::days(i64::from(days)))
                .unwrap_or_else(|| DateTime::<chrono::Utc>::MIN_UTC.fixed_offset());
            let mut reached = false;
            let mut kept = 0u32;
            for e in &done {
                let d = if let Some(k) = e.keep {
                    kept += 1;
                    Decision::Keep(keep_reason(k))
                } else if !reached {
                    // Valid up to and including the first backup ending before the
                    // window's start: it is the base for recovery to that point.
                    if e.info.end_time.is_some_and(|t| t < point) {
                        reached = true;
                    }
                    kept += 1;
                    Decision::Valid(format!("needed to recover to any point after {point}"))
                } else if kept < minimum_redundancy {
                    kept += 1;
                    Decision::KeptForMinimum(format!(
                        "kept for --minimum-redundancy {minimum_redundancy}"
                    ))
                } else {
                    Decision::Obsolete(format!("older than the recovery window starting {point}"))
                };
                out.insert(e.info.backup_id.clone(), d);
            }
        }
    }
    // Not DONE: barman never deletes them. FAILED ones older than the oldest retained
    // DONE backup can never matter again: remove them (barman lets them pile up).
    // STARTED ones left by a crash too, once they are old enough that they cannot be
    // a backup still running beside a newer one that already ended.
    let oldest_retained = done
        .iter()
        .filter(|e| !out.get(&e.info.backup_id).is_some_and(Decision::deletes))
        .map(|e| e.info.backup_id.as_str())
        .min();
    for e in catalog
        .iter()
        .filter(|e| e.info.status != BackupStatus::Done)
    {
        let removable = e.info.status == BackupStatus::Failed || is_stale_started(e.info, now);
        let d = match (removable, oldest_retained) {
            (true, Some(oldest)) if e.info.backup_id.as_str() < oldest => {
                Decision::Obsolete(format!(
                    "{} and older than the oldest retained backup {oldest}",
                    e.info.status.as_str()
                ))
            }
            _ => Decision::Ignored(format!(
                "{} backups are not subject to retention",
                e.info.status.as_str()
            )),
        };
        out.insert(e.info.backup_id.clone(), d);
    }
    out
}

/// One obsolete backup's deletion: the backup and the WAL that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The backup to delete (its directory name under `base/`).
    pub backup_id: String,
    /// WAL objects to delete after the backup (keys as given).
    pub wal_keys: Vec<String>,
    /// Why no WAL (or which WAL) is removed.
    pub wal_reason: String,
}

fn wal_base(b: &BackupInfo) -> bool {
    matches!(b.status, BackupStatus::Done | BackupStatus::WaitingForWals)
}

/// Plans the deletions of `decisions` in barman's order (oldest first), with the WAL
/// clean-up rules of `backup-delete -r`: WAL before the next remaining backup's
/// `begin_wal` goes only when no older backup (but `standalone` ones, whose own range
/// is protected) still needs it; history files and other backups' timelines stay.
///
/// `by_id` is barman's `-b` mode: an older `standalone` backup then stops the WAL
/// clean-up instead of only protecting its own range.
pub fn plan(
    catalog: &[Entry<'_>],
    decisions: &BTreeMap<String, Decision>,
    wals: &[(String, StoredWal)],
    by_id: bool,
) -> Vec<Deletion> {
    let mut remaining: Vec<&Entry> = catalog.iter().collect();
    remaining.sort_by(|a, b| a.info.backup_id.cmp(&b.info.backup_id));
    // WAL sorted by name with a "deleted" flag: each step only looks from the first
    // not-yet-deleted name up to its limit, so a plan over many backups stays near
    // linear in the number of WAL files.
    let mut order: Vec<usize> = (0..wals.len()).collect();
    order.sort_by(|&a, &b| wals[a].1.name.as_str().cmp(wals[b].1.name.as_str()));
    let mut deleted = vec![false; wals.len()];
    let mut start = 0usize;
    let mut out = Vec::new();
    let victims: Vec<String> = remaining
        .iter()
        .filter(|e| {
            decisions
                .get(&e.info.backup_id)
                .is_some_and(Decision::deletes)
        })
        .map(|e| e.info.backup_id.clone())
        .collect();
    for id in victims {
        let pos = remaining
            .iter()
            .position(|e| e.info.backup_id == id)
            .expect("victim in catalog");
        let b = remaining[pos];
        let mut deletion = Deletion {
            backup_id: id.clone(),
            wal_keys: Vec::new(),
            wal_reason: String::new(),
        };
        if !wal_base(b.info) {
            deletion.wal_reason = "not a DONE backup: no WAL of its own to remove".into();
        } else {
            // Walk back through older backups.
            let mut protected_ranges: Vec<(String, String)> = Vec::new();
            let mut blocked = None;
            for older in remaining[..pos].iter().rev().filter(|e| wal_base(e.info)) {
                match older.keep {
                    Some("standalone") if !by_id => {
                        if let (Some(bw), Some(ew)) = (&older.info.begin_wal, &older.info.end_wal) {
                            protected_ranges.push((bw.clone(), ew.clone()));
                        }
                    }
                    _ => {
                        blocked = Some(older.info.backup_id.clone());
                        break;
                    }
                }
            }
            if let Some(older) = blocked {
                deletion.wal_reason = format!("older backup {older} still needs the WAL after it");
            } else {
                let until = remaining[pos + 1..]
                    .iter()
                    .find(|e| wal_base(e.info))
                    .map(|e| e.info)
                    .unwrap_or(b.info);
                let until_tli = until.timeline;
                let protected_tlis: BTreeSet<u32> = remaining
                    .iter()
                    .filter(|e| e.info.backup_id != id)
                    .filter_map(|e| e.info.timeline)
                    .filter(|t| Some(*t) != until_tli)
                    .collect();
                let limit = until.begin_wal.clone().unwrap_or_default();
                while start < order.len() && deleted[order[start]] {
                    start += 1;
                }
                let end = start
                    + order[start..].partition_point(|&i| wals[i].1.name.as_str() < limit.as_str());
                for &i in &order[start..end] {
                    let (key, w) = &wals[i];
                    if deleted[i] || w.name.kind() == WalKind::History {
                        continue;
                    }
                    if protected_tlis.contains(&w.name.timeline()) {
                        continue;
                    }
                    let seg = &w.name.as_str()[..24.min(w.name.as_str().len())];
                    if protected_ranges
                        .iter()
                        .any(|(lo, hi)| seg >= lo.as_str() && seg <= hi.as_str())
                    {
                        continue;
                    }
                    deleted[i] = true;
                    deletion.wal_keys.push(key.clone());
                }
                deletion.wal_keys.sort();
                deletion.wal_reason = format!(
                    "WAL before {} (begin of {}) is needed by no remaining backup",
                    limit, until.backup_id
                );
            }
        }
        remaining.remove(pos);
        out.push(deletion);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup_info::parse_time;

    /// A catalog of backups with their keep marks, oldest first.
    fn catalog<'a>(items: &[(&'a BackupInfo, Option<&'a str>)]) -> Vec<Entry<'a>> {
        items
            .iter()
            .map(|&(info, keep)| Entry { info, keep })
            .collect()
    }

    fn b(
        id: &str,
        status: BackupStatus,
        begin: &str,
        end: &str,
        tli: u32,
        end_time: &str,
    ) -> BackupInfo {
        let mut i = BackupInfo::new(id);
        i.status = status;
        i.begin_wal = Some(begin.into());
        i.end_wal = Some(end.into());
        i.timeline = Some(tli);
        i.end_time = Some(parse_time(end_time).unwrap());
        i
    }

    fn wal(names: &[&str]) -> Vec<(String, StoredWal)> {
        names
            .iter()
            .map(|n| (format!("p/s/wals/x/{n}"), StoredWal::from_key(n).unwrap()))
            .collect()
    }

    fn now() -> DateTime<FixedOffset> {
        parse_time("2026-02-01 00:00:00+00:00").unwrap()
    }

    #[test]
    fn cnpg_retention_policies_follow_the_crd_pattern() {
        assert_eq!(
            Policy::from_cnpg("30d"),
            Ok(Policy::RecoveryWindow { days: 30 })
        );
        assert_eq!(
            Policy::from_cnpg("4w"),
            Ok(Policy::RecoveryWindow { days: 28 })
        );
        assert_eq!(
            Policy::from_cnpg("6m"),
            Ok(Policy::RecoveryWindow { days: 186 })
        );
        assert_eq!(
            Policy::from_cnpg("10d"),
            Ok(Policy::RecoveryWindow { days: 10 })
        );
        for bad in [
            "",
            "d",
            "0d",
            "01d",
            "+1d",
            "1y",
            "1D",
            " 1d",
            "1d ",
            "-1d",
            "99999999999d",
        ] {
            assert_eq!(
                Policy::from_cnpg(bad),
                Err(InvalidPolicy(bad.to_string())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parses_policies_like_barman() {
        assert_eq!("REDUNDANCY 2".parse(), Ok(Policy::Redundancy(2)));
        assert_eq!(
            " recovery  window of 4 weeks ".parse(),
            Ok(Policy::RecoveryWindow { days: 28 })
        );
        assert_eq!(
            "RECOVERY WINDOW OF 1 MONTH".parse(),
            Ok(Policy::RecoveryWindow { days: 31 })
        );
        for bad in [
            "",
            "REDUNDANCY",
            "REDUNDANCY 0",
            "REDUNDANCY x",
            "RECOVERY WINDOW OF 3 YEARS",
            "30d",
        ] {
            assert!(bad.parse::<Policy>().is_err(), "{bad}");
        }
    }

    /// The verified barman example of section 4.10: A kept standalone (…04), B (…08),
    /// C (…0A); REDUNDANCY 1 deletes B and WAL …01–…03, …05–…09 (with partials and
    /// B's .backup), keeps …04 and its .backup, …0A, timeline 2 and history files.
    #[test]
    fn redundancy_one_with_a_standalone_backup() {
        let a = b(
            "20260101T000000",
            BackupStatus::Done,
            "000000010000000000000004",
            "000000010000000000000004",
            1,
            "2026-01-01 00:00:00+00:00",
        );
        let bb = b(
            "20260102T000000",
            BackupStatus::Done,
            "000000010000000000000008",
            "000000010000000000000008",
            1,
            "2026-01-02 00:00:00+00:00",
        );
        let c = b(
            "20260103T000000",
            BackupStatus::Done,
            "00000001000000000000000A",
            "00000001000000000000000A",
            1,
            "2026-01-03 00:00:00+00:00",
        );
        let cat = catalog(&[(&a, Some("standalone")), (&bb, None), (&c, None)]);
        let d = decide(&cat, Policy::Redundancy(1), 0, now());
        assert!(matches!(d["20260101T000000"], Decision::Keep(_)));
        assert!(d["20260102T000000"].deletes());
        assert!(matches!(d["20260103T000000"], Decision::Valid(_)));
        let w = wal(&[
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003.gz",
            "000000010000000000000004",
            "000000010000000000000004.00000028.backup",
            "000000010000000000000005",
            "000000010000000000000006.partial",
            "000000010000000000000007",
            "000000010000000000000008",
            "000000010000000000000008.00000028.backup",
            "000000010000000000000009",
            "00000001000000000000000A",
            "00000002.history",
            "000000020000000000000009",
        ]);
        let plan = plan(&cat, &d, &w, false);
        assert_eq!(plan.len(), 1);
        let names: Vec<&str> = plan[0]
            .wal_keys
            .iter()
            .map(|k| k.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "000000010000000000000001",
                "000000010000000000000002",
                "000000010000000000000003.gz",
                "000000010000000000000005",
                "000000010000000000000006.partial",
                "000000010000000000000007",
                "000000010000000000000008",
                "000000010000000000000008.00000028.backup",
                "000000010000000000000009",
            ]
        );
    }

    #[test]
    fn an_older_full_or_unkept_backup_blocks_wal_cleanup() {
        let a = b(
            "20260101T000000",
            BackupStatus::Done,
            "000000010000000000000002",
            "000000010000000000000002",
            1,
            "2026-01-01 00:00:00+00:00",
        );
        let bb = b(
            "20260102T000000",
            BackupStatus::Done,
            "000000010000000000000005",
            "000000010000000000000005",
            1,
            "2026-01-02 00:00:00+00:00",
        );
        let c = b(
            "20260103T000000",
            BackupStatus::Done,
            "000000010000000000000008",
            "000000010000000000000008",
            1,
            "2026-01-03 00:00:00+00:00",
        );
        let cat = catalog(&[(&a, Some("full")), (&bb, None), (&c, None)]);
        let d = decide(&cat, Policy::Redundancy(1), 0, now());
        let w = wal(&["000000010000000000000003", "000000010000000000000006"]);
        let p = plan(&cat, &d, &w, false);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].wal_keys.is_empty(),
            "a full-kept older backup needs every later WAL"
        );
    }

    #[test]
    fn recovery_window_keeps_the_base_of_the_window_and_minimum_redundancy() {
        let old = b(
            "20251201T000000",
            BackupStatus::Done,
            "000000010000000000000001",
            "000000010000000000000001",
            1,
            "2025-12-01 00:00:00+00:00",
        );
        let mid = b(
            "20251220T000000",
            BackupStatus::Done,
            "000000010000000000000003",
            "000000010000000000000003",
            1,
            "2025-12-20 00:00:00+00:00",
        );
        let base = b(
            "20260110T000000",
            BackupStatus::Done,
            "000000010000000000000005",
            "000000010000000000000005",
            1,
            "2026-01-10 00:00:00+00:00",
        );
        let new = b(
            "20260130T000000",
            BackupStatus::Done,
            "000000010000000000000007",
            "000000010000000000000007",
            1,
            "2026-01-30 00:00:00+00:00",
        );
        let failed = b(
            "20251130T000000",
            BackupStatus::Failed,
            "000000010000000000000001",
            "000000010000000000000001",
            1,
            "2025-11-30 00:00:00+00:00",
        );
        let cat = catalog(&[
            (&failed, None),
            (&old, None),
            (&mid, None),
            (&base, None),
            (&new, None),
        ]);
        // Window of 7 days from 2026-02-01: new is inside, base (2026-01-10) is the
        // first one ending before the window start: valid too; older ones obsolete.
        let d = decide(&cat, Policy::RecoveryWindow { days: 7 }, 0, now());
        assert!(matches!(d["20260130T000000"], Decision::Valid(_)));
        assert!(matches!(d["20260110T000000"], Decision::Valid(_)));
        assert!(d["20251220T000000"].deletes() && d["20251201T000000"].deletes());
        assert!(
            d["20251130T000000"].deletes(),
            "old FAILED backups are cleaned up"
        );
        let d = decide(&cat, Policy::RecoveryWindow { days: 7 }, 3, now());
        assert!(matches!(d["20251220T000000"], Decision::KeptForMinimum(_)));
        assert!(d["20251201T000000"].deletes());
    }

    /// A STARTED backup older than the retained DONE backups and than a day is what a
    /// crash left: removed like a FAILED one. A younger one may be running beside a
    /// newer backup that already ended, and one newer than the retained backups is
    /// the running backup itself: both are left alone.
    #[test]
    fn stale_started_backups_are_removed_like_failed_ones() {
        let started = |id: &str, begin: &str| {
            let mut i = BackupInfo::new(id);
            i.status = BackupStatus::Started;
            i.begin_wal = Some("000000010000000000000001".into());
            i.begin_time = Some(parse_time(begin).unwrap());
            i
        };
        let crashed = started("20260110T000000", "2026-01-10 00:00:00+00:00");
        let running_beside = started("20260131T100000", "2026-01-31 10:00:00+00:00");
        let done = b(
            "20260131T120000",
            BackupStatus::Done,
            "000000010000000000000005",
            "000000010000000000000005",
            1,
            "2026-01-31 12:00:00+00:00",
        );
        let running = started("20260131T230000", "2026-01-31 23:00:00+00:00");
        let cat = catalog(&[
            (&crashed, None),
            (&running_beside, None),
            (&done, None),
            (&running, None),
        ]);
        let d = decide(&cat, Policy::Redundancy(1), 0, now());
        assert!(d["20260110T000000"].deletes(), "{:?}", d["20260110T000000"]);
        assert!(matches!(d["20260131T100000"], Decision::Ignored(_)));
        assert!(matches!(d["20260131T230000"], Decision::Ignored(_)));
        assert!(is_stale_started(&crashed, now()) && !is_stale_started(&running, now()));
        let plans = plan(&cat, &d, &wal(&["000000010000000000000001"]), false);
        assert_eq!(plans.len(), 1);
        assert!(
            plans[0].wal_keys.is_empty(),
            "a STARTED backup frees no WAL"
        );
    }

    #[test]
    fn wal_of_other_timelines_and_history_files_stay() {
        let a = b(
            "20260101T000000",
            BackupStatus::Done,
            "000000010000000000000002",
            "000000010000000000000002",
            1,
            "2026-01-01 00:00:00+00:00",
        );
        let c = b(
            "20260103T000000",
            BackupStatus::Done,
            "000000020000000000000008",
            "000000020000000000000008",
            2,
            "2026-01-03 00:00:00+00:00",
        );
        let other = b(
            "20260104T000000",
            BackupStatus::Done,
            "000000030000000000000009",
            "000000030000000000000009",
            3,
            "2026-01-04 00:00:00+00:00",
        );
        let cat = catalog(&[(&a, None), (&c, None), (&other, None)]);
        let d = decide(&cat, Policy::Redundancy(2), 0, now());
        assert!(d["20260101T000000"].deletes());
        let w = wal(&[
            "000000010000000000000003",
            "000000020000000000000007",
            "000000030000000000000001",
            "00000002.history",
        ]);
        let p = plan(&cat, &d, &w, false);
        let names: Vec<&str> = p[0]
            .wal_keys
            .iter()
            .map(|k| k.rsplit('/').next().unwrap())
            .collect();
        // until = c (timeline 2); timeline 3 belongs to another backup: protected.
        assert_eq!(
            names,
            ["000000010000000000000003", "000000020000000000000007"]
        );
    }

    /// The invariant: no WAL a remaining backup needs for consistency is deleted.
    #[test]
    fn never_deletes_wal_a_remaining_backup_needs() {
        let mut infos = Vec::new();
        for i in 1..=8u32 {
            let seg = format!("0000000100000000{:08X}", i * 4);
            let end = format!("0000000100000000{:08X}", i * 4 + 1);
            infos.push(b(
                &format!("202601{i:02}T000000"),
                BackupStatus::Done,
                &seg,
                &end,
                1,
                &format!("2026-01-{i:02} 00:00:00+00:00"),
            ));
        }
        let names: Vec<String> = (1..=40u32)
            .map(|i| format!("0000000100000000{i:08X}"))
            .collect();
        let w = wal(&names.iter().map(String::as_str).collect::<Vec<_>>());
        for keep_pattern in 0..16u32 {
            let cat: Vec<Entry> = infos
                .iter()
                .enumerate()
                .map(|(i, info)| Entry {
                    info,
                    keep: match (keep_pattern >> (i % 4)) & 1 {
                        1 if i % 2 == 0 => Some("standalone"),
                        1 => Some("full"),
                        _ => None,
                    },
                })
                .collect();
            for n in 1..4 {
                let d = decide(&cat, Policy::Redundancy(n), 0, now());
                let deleted: BTreeSet<String> = plan(&cat, &d, &w, false)
                    .into_iter()
                    .flat_map(|x| x.wal_keys)
                    .map(|k| k.rsplit('/').next().unwrap().to_string())
                    .collect();
                for e in cat.iter().filter(|e| !d[&e.info.backup_id].deletes()) {
                    let lo = e.info.begin_wal.clone().unwrap();
                    let hi = e.info.end_wal.clone().unwrap();
                    assert!(
                        !deleted
                            .iter()
                            .any(|x| x.as_str() >= lo.as_str() && x.as_str() <= hi.as_str()),
                        "pattern {keep_pattern} n {n}: WAL of {} deleted",
                        e.info.backup_id
                    );
                    if e.keep == Some("full") {
                        assert!(
                            !deleted.iter().any(|x| x.as_str() >= lo.as_str()),
                            "WAL after a full-kept backup deleted"
                        );
                    }
                }
                let newest = cat
                    .iter()
                    .map(|e| &e.info)
                    .max_by_key(|i| i.backup_id.clone())
                    .unwrap();
                let lo = newest.begin_wal.clone().unwrap();
                assert!(
                    !deleted.iter().any(|x| x.as_str() >= lo.as_str()),
                    "WAL after the newest backup deleted"
                );
            }
        }
    }
}
