//! The WAL jobs: archive one WAL (PostgreSQL's `archive_command`), restore one
//! (`restore_command`) and check that an archive holds no WAL yet, on top of
//! `barrelman_ops::wal`. What only a command line knows is added here: CloudNativePG's
//! empty-archive marker in PGDATA decides whether the archive must be empty, and goes
//! once the first WAL is archived.

use crate::exit;
use crate::output::outln;
use crate::target::Target;
use anyhow::Result;
use barrelman_ops::wal::{self, ArchiveError, ArchiveRequest, RestoreRequest};
use barrelman_postgres::pgdata;
use barrelman_storage::{Archive, StorageError};

/// Archives one WAL file into `target`.
pub(crate) async fn archive(target: &Target, req: ArchiveRequest) -> Result<()> {
    let archive = target.open()?;
    Ok(archive_guarded(&archive, req).await?)
}

/// Archives one WAL file (`req.must_be_empty` is set from PGDATA's marker).
async fn archive_guarded(archive: &Archive, mut req: ArchiveRequest) -> Result<(), ArchiveError> {
    let marker = req.pgdata.as_deref().map(pgdata::check_empty_marker);
    if let Some(present) = marker.as_ref().filter(|m| m.exists()) {
        req.must_be_empty = Some(format!("{} exists", present.display()));
    }
    let outcome = wal::archive(archive, &req).await?;
    if let (Some(marker), true) = (marker, outcome.ends_empty_requirement()) {
        match std::fs::remove_file(&marker) {
            Ok(()) => tracing::info!("first WAL archived: removed {}", marker.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove {}: {e}", marker.display()),
        }
    }
    Ok(())
}

/// Restores one WAL file from `target`.
pub(crate) async fn restore(target: &Target, req: &RestoreRequest) -> Result<()> {
    let archive = target.open()?;
    wal::restore(&archive, req).await?;
    Ok(())
}

/// The native `check-empty`: fails unless the WAL archive (of `timeline` or newer)
/// is empty, and says so when it is.
pub(crate) async fn check_empty(target: &Target, timeline: Option<u32>) -> Result<()> {
    let archive = target.open()?;
    wal::check_empty(&archive, timeline).await?;
    outln!("the WAL archive {} is empty", target.location());
    Ok(())
}

/// barman-cloud-check-wal-archive: the connectivity test first (a missing bucket
/// means an empty archive), then, unless `test_only`, the emptiness check.
pub(crate) async fn check_wal_archive(
    target: &Target,
    timeline: Option<u32>,
    test_only: bool,
) -> Result<i32> {
    match super::probe::probe_archive(target)?.probe().await {
        Ok(()) => {}
        // No bucket: nothing can be archived there, so it is empty.
        Err(StorageError::BucketMissing { bucket, .. }) if !test_only => {
            tracing::warn!("the bucket '{bucket}' does not exist yet: the archive is empty");
            return Ok(exit::SUCCESS);
        }
        Err(StorageError::BucketMissing { .. }) => return Ok(exit::SUCCESS),
        Err(e) => return Ok(super::probe::failed_test(&e)),
    }
    if test_only {
        return Ok(exit::SUCCESS);
    }
    wal::check_empty(&target.open()?, timeline).await?;
    Ok(exit::SUCCESS)
}
