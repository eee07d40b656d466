//! The command-line side of the WAL operations of `barrelman_ops::wal`: CloudNativePG's
//! empty-archive marker in PGDATA decides whether the archive must be empty, and goes
//! once the first WAL is archived.

use barrelman_ops::wal::{self, ArchiveError, ArchiveRequest};
use barrelman_postgres::pgdata;
use barrelman_storage::Archive;

/// Archives one WAL file (`req.must_be_empty` is set from PGDATA's marker).
pub(crate) async fn archive(
    archive: &Archive,
    mut req: ArchiveRequest,
) -> Result<(), ArchiveError> {
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
