//! Restoring a base backup into an empty directory (`barman-cloud-restore`,
//! `barrelman restore`), optionally with the settings for point-in-time recovery.

use super::progress::with_progress;
use crate::errors::BaseBackupError;
use crate::target::Target;
use anyhow::{Context, Result};
use barrelman_core::backup_info::BackupInfo;
use barrelman_ops::progress::Progress;
use barrelman_ops::restore::{restore_backup, RestoreOptions};
use barrelman_postgres::recovery::{write_recovery_config, RecoveryTarget};

/// What a restore writes for PostgreSQL to recover from the archive:
/// `restore_command` and the recovery target, with `recovery.signal`.
#[derive(Debug, Clone)]
pub(crate) struct RecoverySettings {
    /// The shell command PostgreSQL runs to fetch a WAL file (`%f`, `%p`).
    pub restore_command: String,
    /// Where recovery stops.
    pub target: RecoveryTarget,
}

/// Restores a backup; with `recovery`, writes the recovery settings too.
pub(crate) async fn restore(
    target: &Target,
    opts: &RestoreOptions,
    recovery: Option<RecoverySettings>,
) -> Result<BackupInfo> {
    let archive = target.open()?;
    let progress = Progress::new();
    let info = with_progress(
        "restore",
        &progress,
        restore_backup(&archive, opts, &progress),
    )
    .await
    .map_err(BaseBackupError::Restore)?;
    if let Some(recovery) = recovery {
        write_recovery_config(
            &opts.destination,
            &recovery.restore_command,
            &recovery.target,
        )
        .with_context(|| {
            format!(
                "cannot write the recovery settings in {}",
                opts.destination.display()
            )
        })?;
    }
    // barman-cloud-restore prints nothing on success; the native command says what
    // it restored (its caller prints that).
    Ok(info)
}
