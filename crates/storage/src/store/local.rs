//! A directory on a local file system as the store (`file://` destinations).

use crate::StorageError;
use barrelman_core::layout::Destination;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use std::sync::Arc;

/// Settings of a local-directory store. There is nothing to choose today: every
/// object is fsynced before a write returns. The type exists so that the local
/// provider is shaped like the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalSettings {}

/// Opens (creating it if needed) the directory named by `dest` as a store.
pub(crate) fn open(dest: &Destination) -> Result<Arc<dyn ObjectStore>, StorageError> {
    std::fs::create_dir_all(&dest.bucket).map_err(|source| StorageError::LocalIo {
        what: "cannot create the archive directory",
        path: dest.bucket.clone(),
        source,
    })?;
    let fs = LocalFileSystem::new_with_prefix(&dest.bucket)
        .map_err(|e| StorageError::Config(format!("cannot use {} as an archive: {e}", dest.url)))?;
    // Exit 0 lets PostgreSQL recycle the segment: the object must be on disk
    // (file and directory fsynced) before a write returns.
    let fs = fs.with_fsync(true);
    Ok(Arc::new(fs))
}
