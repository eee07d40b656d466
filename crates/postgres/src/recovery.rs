//! Recovery settings for a restored data directory: `restore_command`, the recovery
//! target, and `recovery.signal`, written the way PostgreSQL 12+ reads them.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

/// What to do when the target is reached (`recovery_target_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetAction {
    /// `pause`: stay in recovery, read-only, until `pg_wal_replay_resume()`
    /// (PostgreSQL's default).
    Pause,
    /// `promote`: end recovery and start accepting writes on a new timeline.
    Promote,
    /// `shutdown`: stop the server, leaving it to recover again on next start.
    Shutdown,
}

impl TargetAction {
    /// The setting's value as PostgreSQL spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Promote => "promote",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Where recovery stops. `None` everywhere: the end of the archived WAL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryTarget {
    /// `recovery_target_time`, e.g. `2026-11-24 20:16:25+00`.
    pub time: Option<String>,
    /// `recovery_target_lsn`, `%X/%X` (e.g. `0/4000100`).
    pub lsn: Option<String>,
    /// `recovery_target_xid`: the transaction id whose commit recovery stops at.
    pub xid: Option<String>,
    /// `recovery_target_name`: a restore point created with
    /// `pg_create_restore_point()`.
    pub name: Option<String>,
    /// `recovery_target = 'immediate'`: stop as soon as the backup is consistent.
    pub immediate: bool,
    /// `recovery_target_timeline`: a number, `current` or `latest`.
    pub timeline: Option<String>,
    /// Stop just before the target instead of just after.
    pub exclusive: bool,
    /// `recovery_target_action`; left out (PostgreSQL's default, `pause`) when
    /// `None`.
    pub action: Option<TargetAction>,
}

impl RecoveryTarget {
    /// True when some stop point is set.
    fn has_stop_point(&self) -> bool {
        self.time.is_some()
            || self.lsn.is_some()
            || self.xid.is_some()
            || self.name.is_some()
            || self.immediate
    }

    /// Refuses settings PostgreSQL would only reject at start-up (or misread): two
    /// stop points at once, an xid that is not a number, a restore point name that
    /// `pg_create_restore_point` could not have made, a timeline that is neither a
    /// number nor `current`/`latest`. Checked before anything is restored, so a
    /// mistake costs a message instead of a whole restore.
    pub fn validate(&self) -> Result<(), InvalidTarget> {
        let set: Vec<&str> = [
            ("--target-time", self.time.is_some()),
            ("--target-lsn", self.lsn.is_some()),
            ("--target-xid", self.xid.is_some()),
            ("--target-name", self.name.is_some()),
            ("--target-immediate", self.immediate),
        ]
        .into_iter()
        .filter_map(|(flag, on)| on.then_some(flag))
        .collect();
        if set.len() > 1 {
            return Err(InvalidTarget(format!(
                "{} cannot be combined: PostgreSQL stops at one recovery target, give only one",
                set.join(" and ")
            )));
        }
        if let Some(xid) = &self.xid {
            // PostgreSQL 13+ takes a 32-bit xid or an epoch-qualified 64-bit one.
            if xid.is_empty()
                || !xid.bytes().all(|b| b.is_ascii_digit())
                || xid.parse::<u64>().is_err()
            {
                return Err(InvalidTarget(format!(
                    "invalid --target-xid '{}': use a transaction id, a decimal number such as 7501",
                    xid.escape_debug()
                )));
            }
        }
        if let Some(name) = &self.name {
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(InvalidTarget(format!(
                    "invalid --target-name '{}': a restore point name is one line of printable characters",
                    name.escape_debug()
                )));
            }
            if name.len() > MAX_RESTORE_POINT_NAME {
                return Err(InvalidTarget(format!(
                    "invalid --target-name '{name}': restore point names are at most {MAX_RESTORE_POINT_NAME} bytes, so no restore point has this name"
                )));
            }
        }
        if let Some(tl) = &self.timeline {
            let numeric = !tl.is_empty()
                && tl.bytes().all(|b| b.is_ascii_digit())
                && tl.parse::<u32>().is_ok_and(|n| n > 0);
            if !numeric && tl != "current" && tl != "latest" {
                return Err(InvalidTarget(format!(
                    "invalid --target-timeline '{}': use a timeline number, current or latest",
                    tl.escape_debug()
                )));
            }
        }
        Ok(())
    }
}

/// PostgreSQL's `MAXFNAMELEN - 1`: `pg_create_restore_point` refuses longer names.
const MAX_RESTORE_POINT_NAME: usize = 63;

/// A recovery target PostgreSQL would refuse or misread; the message says which
/// setting and what to give instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTarget(pub String);

/// A PostgreSQL string literal for a configuration file.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

/// The lines added to `postgresql.auto.conf`.
fn recovery_lines(restore_command: &str, target: &RecoveryTarget) -> String {
    let mut s = String::from("\n# Added by barrelman restore\n");
    let _ = writeln!(s, "restore_command = {}", quote(restore_command));
    let mut set = |k: &str, v: &str| {
        let _ = writeln!(s, "{k} = {}", quote(v));
    };
    if target.immediate {
        set("recovery_target", "immediate");
    }
    if let Some(v) = &target.time {
        set("recovery_target_time", v);
    }
    if let Some(v) = &target.lsn {
        set("recovery_target_lsn", v);
    }
    if let Some(v) = &target.xid {
        set("recovery_target_xid", v);
    }
    if let Some(v) = &target.name {
        set("recovery_target_name", v);
    }
    if let Some(v) = &target.timeline {
        set("recovery_target_timeline", v);
    }
    if target.exclusive && target.has_stop_point() && !target.immediate {
        set("recovery_target_inclusive", "off");
    }
    if let Some(a) = target.action {
        set("recovery_target_action", a.as_str());
    }
    s
}

/// Appends the recovery settings to `pgdata/postgresql.auto.conf` and creates
/// `recovery.signal`, so the next start replays WAL from the archive.
pub fn write_recovery_config(
    pgdata: &Path,
    restore_command: &str,
    target: &RecoveryTarget,
) -> io::Result<()> {
    let conf = pgdata.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&conf)?;
    f.write_all(recovery_lines(restore_command, target).as_bytes())?;
    f.sync_all()?;
    std::fs::File::create(pgdata.join("recovery.signal"))?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_refuses_what_postgresql_would_refuse() {
        let ok = |t: RecoveryTarget| assert_eq!(t.validate(), Ok(()), "{t:?}");
        let bad = |t: RecoveryTarget, needle: &str| {
            let e = t.validate().expect_err("must be refused").0;
            assert!(e.contains(needle), "{e}");
        };
        ok(RecoveryTarget::default());
        ok(RecoveryTarget {
            xid: Some("7501".into()),
            ..Default::default()
        });
        ok(RecoveryTarget {
            name: Some("before upgrade".into()),
            ..Default::default()
        });
        ok(RecoveryTarget {
            immediate: true,
            timeline: Some("latest".into()),
            ..Default::default()
        });
        ok(RecoveryTarget {
            time: Some("2026-11-24 20:16:25+00".into()),
            timeline: Some("2".into()),
            ..Default::default()
        });
        bad(
            RecoveryTarget {
                time: Some("2026-11-24".into()),
                lsn: Some("0/3000000".into()),
                ..Default::default()
            },
            "--target-time and --target-lsn cannot be combined",
        );
        bad(
            RecoveryTarget {
                xid: Some("1".into()),
                immediate: true,
                ..Default::default()
            },
            "--target-xid and --target-immediate",
        );
        bad(
            RecoveryTarget {
                xid: Some("12abc".into()),
                ..Default::default()
            },
            "invalid --target-xid",
        );
        bad(
            RecoveryTarget {
                xid: Some("-5".into()),
                ..Default::default()
            },
            "invalid --target-xid",
        );
        bad(
            RecoveryTarget {
                xid: Some(String::new()),
                ..Default::default()
            },
            "invalid --target-xid",
        );
        bad(
            RecoveryTarget {
                xid: Some("99999999999999999999999".into()),
                ..Default::default()
            },
            "invalid --target-xid",
        );
        bad(
            RecoveryTarget {
                name: Some("a\nrecovery_target_action = 'promote'".into()),
                ..Default::default()
            },
            "one line",
        );
        bad(
            RecoveryTarget {
                name: Some("x".repeat(64)),
                ..Default::default()
            },
            "at most 63 bytes",
        );
        bad(
            RecoveryTarget {
                name: Some(String::new()),
                ..Default::default()
            },
            "invalid --target-name",
        );
        bad(
            RecoveryTarget {
                timeline: Some("0".into()),
                ..Default::default()
            },
            "invalid --target-timeline",
        );
        bad(
            RecoveryTarget {
                timeline: Some("newest".into()),
                ..Default::default()
            },
            "invalid --target-timeline",
        );
    }

    #[test]
    fn writes_quoted_settings_and_signal() {
        let dir = tempfile::tempdir().unwrap();
        let t = RecoveryTarget {
            time: Some("2026-11-24 20:16:25.5+00".into()),
            action: Some(TargetAction::Promote),
            ..Default::default()
        };
        write_recovery_config(
            dir.path(),
            "/bin/barrelman wal-restore s3://b/p it's %f %p",
            &t,
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
        assert!(
            text.contains("restore_command = '/bin/barrelman wal-restore s3://b/p it''s %f %p'"),
            "{text}"
        );
        assert!(text.contains("recovery_target_time = '2026-11-24 20:16:25.5+00'"));
        assert!(text.contains("recovery_target_action = 'promote'"));
        assert!(dir.path().join("recovery.signal").exists());
        let imm = recovery_lines(
            "x",
            &RecoveryTarget {
                immediate: true,
                exclusive: true,
                ..Default::default()
            },
        );
        assert!(imm.contains("recovery_target = 'immediate'") && !imm.contains("inclusive"));
    }
}
