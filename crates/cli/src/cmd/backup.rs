//! Taking a base backup of a running PostgreSQL into the archive
//! (`barman-cloud-backup`, `barrelman backup`).

use super::progress::with_progress;
use crate::errors::BaseBackupError;
use crate::output::outln;
use crate::target::Target;
use anyhow::Result;
use barrelman_core::backup_info::BackupInfo;
use barrelman_ops::backup::{take_backup, BackupOptions};
use barrelman_ops::progress::Progress;
use barrelman_postgres::session::{ConnectOptions, Session};

/// Takes a backup and prints its id (and name) at the end.
pub(crate) async fn backup(
    target: &Target,
    connect: &ConnectOptions,
    opts: &BackupOptions,
) -> Result<BackupInfo> {
    let archive = target.open_for_backups()?;
    let mut connect = connect.clone();
    connect
        .application_name
        .get_or_insert_with(|| "barman_cloud_backup".into());
    let session = Session::connect(&connect)
        .await
        .map_err(BaseBackupError::Connect)?;
    let progress = Progress::new();
    let result = with_progress(
        "backup",
        &progress,
        take_backup(&archive, &session, opts, &progress),
    )
    .await;
    match result {
        Ok(info) => {
            match &info.backup_name {
                Some(n) => outln!(
                    "backup {} ({n}) DONE in {}",
                    info.backup_id,
                    target.location()
                ),
                None => outln!("backup {} DONE in {}", info.backup_id, target.location()),
            }
            Ok(info)
        }
        Err(e) => match e.info.as_ref().map(|i| i.backup_id.clone()) {
            Some(id) => Err(BaseBackupError::Failed { id, source: e }.into()),
            None => Err(BaseBackupError::NotStarted(e).into()),
        },
    }
}
