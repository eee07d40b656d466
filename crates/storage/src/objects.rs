//! Whole-object operations on an archive: small metadata objects, listings, deletes.
//! (Streaming uploads are in [`crate::upload`], streaming reads in
//! [`crate::download`].)

use crate::archive::Archive;
use crate::keys::object_path;
use crate::upload::tagset;
use crate::StorageError;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutOptions, PutPayload};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The most objects one S3 DeleteObjects request may name.
pub const MAX_DELETE_BATCH: usize = 1000;

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Archive {
    /// Writes a small object in one PUT (overwriting).
    pub async fn put_small(
        &self,
        key: &str,
        data: Bytes,
        tags: &[(String, String)],
    ) -> Result<(), StorageError> {
        let opts = PutOptions {
            tags: tagset(tags),
            ..Default::default()
        };
        self.store()
            .put_opts(&object_path(key)?, PutPayload::from(data), opts)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e, key))
    }

    /// Writes a small object only if no object has `key` yet (a conditional PUT on
    /// S3, create-new on a local directory). `Ok(false)` when one exists already:
    /// nothing was written.
    pub async fn put_small_create(
        &self,
        key: &str,
        data: Bytes,
        tags: &[(String, String)],
    ) -> Result<bool, StorageError> {
        let opts = PutOptions {
            mode: object_store::PutMode::Create,
            tags: tagset(tags),
            ..Default::default()
        };
        match self
            .store()
            .put_opts(&object_path(key)?, PutPayload::from(data), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.err(e, key)),
        }
    }

    /// Reads a small object whole. `Ok(None)` when it does not exist.
    pub async fn get_small(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        match self.store().get(&object_path(key)?).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| self.err(e, key)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(e, key)),
        }
    }

    /// Deletes one object; a missing one is not an error.
    pub async fn delete_object(&self, key: &str) -> Result<(), StorageError> {
        self.delete_many(std::slice::from_ref(&key.to_string()))
            .await
    }

    /// Deletes many objects with the store's bulk delete (S3 DeleteObjects, up to
    /// 1000 a request). Missing objects are not errors, so an interrupted run can be
    /// repeated.
    pub async fn delete_many(&self, keys: &[String]) -> Result<(), StorageError> {
        self.delete_in_batches(keys, MAX_DELETE_BATCH).await
    }

    /// [`Archive::delete_many`] with at most `batch` objects per request
    /// (barman's `--batch-size`). A store that refuses bulk deletes (some
    /// S3-compatible stores answer `NotImplemented` or `MalformedXML`) gets one
    /// request per object from then on, so retention still runs there.
    pub async fn delete_in_batches(
        &self,
        keys: &[String],
        batch: usize,
    ) -> Result<(), StorageError> {
        let batch = batch.clamp(1, MAX_DELETE_BATCH);
        for chunk in keys.chunks(batch) {
            if let (Some(single), true) = (
                &self.single_delete,
                self.bulk_delete_refused.load(Ordering::Relaxed),
            ) {
                self.delete_with(single, chunk).await?;
                continue;
            }
            match self.delete_with(self.store(), chunk).await {
                Ok(()) => {}
                Err(bulk_error) => {
                    let Some(single) = &self.single_delete else {
                        return Err(bulk_error);
                    };
                    // Whether the store refused the request itself or one object,
                    // deleting one by one tells: a real refusal fails again there.
                    tracing::warn!(
                        "the store refused a bulk delete ({bulk_error}); deleting one object per request"
                    );
                    self.bulk_delete_refused.store(true, Ordering::Relaxed);
                    self.delete_with(single, chunk).await?;
                }
            }
        }
        Ok(())
    }

    async fn delete_with(
        &self,
        store: &Arc<dyn object_store::ObjectStore>,
        keys: &[String],
    ) -> Result<(), StorageError> {
        use futures::stream::StreamExt as _;
        if keys.is_empty() {
            return Ok(());
        }
        let paths: Vec<object_store::Result<ObjPath>> = keys
            .iter()
            .map(|k| object_path(k).map(Ok))
            .collect::<Result<_, _>>()?;
        let mut results = store.delete_stream(futures::stream::iter(paths).boxed());
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err(e, keys.first().map(String::as_str).unwrap_or(""))),
            }
        }
        Ok(())
    }

    /// Every object under `prefix` (a directory-like prefix), recursively.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut out = Vec::new();
        let mut stream = self.store().list(Some(&object_path(prefix)?));
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|e| self.err(e, prefix))?;
            out.push(ObjectInfo {
                key: meta.location.to_string(),
                size: meta.size,
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The "sub-directories" directly under `prefix`.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let res = self
            .store()
            .list_with_delimiter(Some(&object_path(prefix)?))
            .await
            .map_err(|e| self.err(e, prefix))?;
        let mut dirs: Vec<String> = res
            .common_prefixes
            .into_iter()
            .map(|p| p.filename().unwrap_or_default().to_string())
            .collect();
        dirs.sort();
        Ok(dirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrelman_core::layout::Destination;

    /// The create-only write a backup claims its id with: the first writer wins, the
    /// second is told and its bytes are never stored.
    #[tokio::test]
    async fn a_create_only_write_never_replaces_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let dest = Destination::parse(&url, false).unwrap();
        let archive = Archive::open(&dest, "srv", &Default::default()).unwrap();
        let key = "srv/base/20260101T000000/backup.info";
        assert!(archive
            .put_small_create(key, Bytes::from_static(b"first"), &[])
            .await
            .unwrap());
        assert!(!archive
            .put_small_create(key, Bytes::from_static(b"second"), &[])
            .await
            .unwrap());
        assert_eq!(
            std::fs::read(dir.path().join(key)).unwrap(),
            b"first".to_vec()
        );
    }
}
