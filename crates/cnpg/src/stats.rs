//! What the instance sidecar did, kept in memory for the Metrics service: WAL archive
//! successes, failures and bytes (recorded by the WAL service on every call), the last
//! backup's duration (Backup service) and the end of the recovery window (computed by
//! the retention cycle and after each backup, never on Collect). One small mutex held
//! for a few field writes: cheap next to any upload.

use std::sync::Mutex;
use std::time::SystemTime;

use barrelman_core::lsn::Lsn;
use chrono::{DateTime, Utc};

/// The truthful end of the recovery window: the last WAL segment reachable from the
/// newest restorable backup through an unbroken chain of archived segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowEnd {
    /// That segment's name.
    pub segment: String,
    /// Where it ends: recovery can replay up to this position.
    pub lsn: Lsn,
    /// When that segment was archived (the object's last-modified time): recovery
    /// reaches about this time (its last commits are a little earlier).
    pub archived_at: Option<DateTime<Utc>>,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// When a WAL.Archive call last succeeded.
    pub last_archived: Option<SystemTime>,
    /// WAL.Archive calls that failed (a failed segment of a batch counts once).
    pub archive_failures: u64,
    /// WAL bytes (as PostgreSQL wrote them, before compression) uploaded.
    pub archived_bytes: u64,
    /// How long the last successful backup took, in seconds.
    pub last_backup_seconds: Option<f64>,
    /// The end of the recovery window, when it was computed and there is one.
    pub window_end: Option<WindowEnd>,
}

/// The shared state; one per sidecar.
#[derive(Debug, Default)]
pub struct PluginStats(Mutex<Snapshot>);

impl PluginStats {
    fn with<T>(&self, f: impl FnOnce(&mut Snapshot) -> T) -> T {
        // A panic while holding the lock cannot leave the counters half-written in a
        // way that matters: keep serving them.
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// WAL files of `bytes` in all were uploaded (by a call that may still fail for
    /// another segment of its batch).
    pub fn uploaded(&self, bytes: u64) {
        self.with(|s| s.archived_bytes = s.archived_bytes.saturating_add(bytes));
    }

    /// An archive call succeeded.
    pub fn archive_succeeded(&self) {
        self.with(|s| s.last_archived = Some(SystemTime::now()));
    }

    /// An archive call failed.
    pub fn archive_failed(&self) {
        self.with(|s| s.archive_failures = s.archive_failures.saturating_add(1));
    }

    /// A backup that succeeded after `seconds`.
    pub fn backup_done(&self, seconds: f64) {
        self.with(|s| s.last_backup_seconds = Some(seconds));
    }

    /// The recovery window's end as just computed (`None`: no restorable backup or no
    /// WAL after it).
    pub fn set_window_end(&self, end: Option<WindowEnd>) {
        self.with(|s| s.window_end = end);
    }

    /// The current values.
    pub fn snapshot(&self) -> Snapshot {
        self.with(|s| s.clone())
    }
}
