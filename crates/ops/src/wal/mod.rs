//! WAL operations: `archive_command` (with the empty-archive guard and the parallel
//! `.ready` batch), `restore_command` (with the prefetch spool) and the empty-archive
//! check. A caller passes a request and gets a typed outcome or a typed error; the
//! command-line faces and the CloudNativePG plugin are thin callers of this module.
//!
//! Nothing here reads PostgreSQL's configuration or the empty-archive marker: whether
//! the archive must be empty is part of [`ArchiveRequest`], and the outcome tells the
//! caller when that requirement is over.

mod archive;
mod restore;

pub use archive::{archive, ArchiveError, ArchiveOutcome, ArchiveRequest, RequestedWal};
pub use restore::{restore, RestoreError, RestoreOutcome, RestoreRequest};

use barrelman_storage::{Archive, StorageError};

/// Checks that the archive holds no WAL (of `timeline` or a later one, when given):
/// the check of `barman-cloud-check-wal-archive` and of a new cluster's first archive.
pub async fn check_empty(archive: &Archive, timeline: Option<u32>) -> Result<(), StorageError> {
    archive.check_empty(timeline).await
}
