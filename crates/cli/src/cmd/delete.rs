//! Deleting backups: one by id or name, or every backup a retention policy makes
//! obsolete, with the WAL only they needed (`barman-cloud-backup-delete`,
//! `barrelman delete`).

use crate::errors::CatalogError;
use crate::output::outln;
use crate::target::Target;
use anyhow::Result;
use barrelman_ops::delete::{DeleteError, DeleteRequest, Selection};

/// How `delete` runs, beyond what it deletes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DeleteFlags {
    /// Never go below this many backups.
    pub minimum_redundancy: u32,
    /// Say what would be deleted; delete nothing.
    pub dry_run: bool,
    /// Native `--force`: a STARTED backup that may be running is deleted too.
    pub force: bool,
    /// barman's `--batch-size`: objects per bulk delete request.
    pub batch_size: Option<usize>,
}

/// `backup-delete`: by id or by retention policy, with `--dry-run`.
pub(crate) async fn delete(
    target: &Target,
    selection: Selection,
    flags: DeleteFlags,
) -> Result<()> {
    let archive = target.open()?;
    let dry_run = flags.dry_run;
    let req = DeleteRequest {
        selection,
        minimum_redundancy: flags.minimum_redundancy,
        dry_run,
        now: chrono::Local::now().fixed_offset(),
        force: flags.force,
        batch_size: flags.batch_size,
    };
    let report = match barrelman_ops::delete::delete(&archive, &req).await {
        Ok(r) => r,
        Err(
            e @ (DeleteError::Kept { .. }
            | DeleteError::MinimumRedundancy { .. }
            | DeleteError::Running { .. }
            | DeleteError::Unreadable(_)),
        ) => return Err(CatalogError::Delete(e).into()),
        Err(e) => return Err(e.into()),
    };
    for (id, d) in &report.decisions {
        let verb = if d.deletes() { "delete" } else { "keep" };
        tracing::info!("{id}: {verb}: {}", d.reason());
    }
    for d in &report.deletions {
        let objects = report
            .backup_objects
            .get(&d.backup_id)
            .cloned()
            .unwrap_or_default();
        if dry_run {
            outln!("Skipping deletion of objects {objects:?} due to --dry-run option");
            if !d.wal_keys.is_empty() {
                outln!(
                    "Skipping deletion of objects {:?} due to --dry-run option",
                    d.wal_keys
                );
            }
            outln!(
                "  backup {}: {}; WAL: {}",
                d.backup_id,
                report.decisions[&d.backup_id].reason(),
                d.wal_reason
            );
        } else {
            tracing::info!(
                "backup {}: {} WAL files removed ({})",
                d.backup_id,
                d.wal_keys.len(),
                d.wal_reason
            );
        }
    }
    Ok(())
}
