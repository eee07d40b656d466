//! Recovery settings for a restored data directory: `restore_command`, the recovery
//! target, and `recovery.signal`, written the way PostgreSQL 12+ reads them.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

/// What to do when the target is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetAction {
    Pause,
    Promote,
    Shutdown,
}

impl TargetAction {
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
    pub lsn: Option<String>,
    pub xid: Option<String>,
    pub name: Option<String>,
    /// `recovery_target = 'immediate'`: stop as soon as the backup is consistent.
    pub immediate: bool,
    /// `recovery_target_timeline`: a number, `current` or `latest`.
    pub timeline: Option<String>,
    /// Stop just before the target instead of just after.
    pub exclusive: bool,
    pub action: Option<TargetAction>,
}

impl RecoveryTarget {
    /// True when some stop point is set.
    pub fn has_stop_point(&self) -> bool {
        self.time.is_some()
            || self.lsn.is_some()
            || self.xid.is_some()
            || self.name.is_some()
            || self.immediate
    }
}

/// A PostgreSQL string literal for a configuration file.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

/// The lines added to `postgresql.auto.conf`.
pub fn recovery_lines(restore_command: &str, target: &RecoveryTarget) -> String {
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
