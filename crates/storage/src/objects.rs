//! Whole-object operations on an archive (small metadata objects, listings, deletes)
//! and a streaming writer that turns a synchronous byte stream into one object.

use crate::archive::Archive;
use crate::keys::object_path;
use crate::StorageError;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, TagSet, WriteMultipart,
};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The most objects one S3 DeleteObjects request may name.
pub const MAX_DELETE_BATCH: usize = 1000;

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

fn tagset(tags: &[(String, String)]) -> TagSet {
    let mut t = TagSet::default();
    for (k, v) in tags {
        t.push(k, v);
    }
    t
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

    /// Starts a streaming upload to `key`: bytes written to the returned
    /// [`ObjectWriter`] (from a blocking thread) become the object once
    /// [`ObjectWriter::finish`] is called and the [`UploadHandle`] resolves. Objects up
    /// to `part_size` go up in one PUT, larger ones as a multipart upload with one part
    /// in flight while the next fills, so memory stays near 2 × `part_size`.
    /// A writer dropped without `finish` aborts the upload: no object appears.
    pub fn object_writer(
        &self,
        key: &str,
        part_size: usize,
        tags: &[(String, String)],
    ) -> (ObjectWriter, UploadHandle) {
        let (tx, mut rx) = mpsc::channel::<Msg>(2);
        let archive = self.clone();
        let key = key.to_string();
        let tags = tags.to_vec();
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let failure = Arc::new(OnceLock::new());
        let failure_seen = failure.clone();
        let join = tokio::spawn(async move {
            let result = archive
                .run_upload(&key, part_size, &tags, &mut rx, counter)
                .await;
            // The writer learns of the failure from the closed channel; the error is
            // recorded before the channel closes so that it can say what happened.
            if let Err(e) = &result {
                let _ = failure.set(e.to_string());
            }
            drop(rx);
            result
        });
        (
            ObjectWriter {
                tx,
                buf: BytesMut::with_capacity(WRITER_CHUNK),
                finished: false,
                failure: failure_seen,
            },
            UploadHandle { join, written },
        )
    }

    async fn run_upload(
        &self,
        key: &str,
        part_size: usize,
        tags: &[(String, String)],
        rx: &mut mpsc::Receiver<Msg>,
        written: Arc<AtomicU64>,
    ) -> Result<u64, StorageError> {
        let obj = object_path(key)?;
        let mut buffered: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut multipart: Option<WriteMultipart> = None;
        let mut finished = false;
        while let Some(msg) = rx.recv().await {
            let chunk = match msg {
                Msg::Data(c) => c,
                Msg::Finish => {
                    finished = true;
                    break;
                }
            };
            total += chunk.len();
            written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if let Some(mp) = multipart.as_mut() {
                let r = mp.wait_for_capacity(1).await;
                if let Err(e) = r {
                    if let Some(mp) = multipart.take() {
                        let _ = mp.abort().await;
                    }
                    return Err(self.err(e, key));
                }
                mp.put(chunk);
                continue;
            }
            buffered.push(chunk);
            if total > part_size {
                let upload = self
                    .store()
                    .put_multipart_opts(
                        &obj,
                        PutMultipartOptions {
                            tags: tagset(tags),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| self.err(e, key))?;
                let mut mp = WriteMultipart::new_with_chunk_size(upload, part_size);
                for b in buffered.drain(..) {
                    mp.put(b);
                }
                multipart = Some(mp);
            }
        }
        if !finished {
            if let Some(mp) = multipart {
                let _ = mp.abort().await;
            }
            return Err(StorageError::LocalIo {
                what: "upload abandoned before its end for",
                path: key.to_string(),
                source: io::Error::other("the producer stopped"),
            });
        }
        match multipart {
            Some(mp) => {
                mp.finish().await.map_err(|e| self.err(e, key))?;
            }
            None => {
                let payload: PutPayload = buffered.into_iter().collect();
                self.store()
                    .put_opts(
                        &obj,
                        payload,
                        PutOptions {
                            tags: tagset(tags),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| self.err(e, key))?;
            }
        }
        Ok(total as u64)
    }
}

/// Chunks handed from the writer to the uploader.
const WRITER_CHUNK: usize = 1 << 20;

enum Msg {
    Data(Bytes),
    Finish,
}

/// The synchronous end of a streaming upload. Use from a blocking thread.
pub struct ObjectWriter {
    tx: mpsc::Sender<Msg>,
    buf: BytesMut,
    finished: bool,
    /// The uploader's error, once it has failed.
    failure: Arc<OnceLock<String>>,
}

impl ObjectWriter {
    fn send(&mut self, msg: Msg) -> io::Result<()> {
        self.tx.blocking_send(msg).map_err(|_| {
            io::Error::other(match self.failure.get() {
                Some(e) => e.clone(),
                None => "the upload stopped before its end".to_string(),
            })
        })
    }

    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk =
            std::mem::replace(&mut self.buf, BytesMut::with_capacity(WRITER_CHUNK)).freeze();
        self.send(Msg::Data(chunk))
    }

    /// Ends the object: everything written so far becomes the object.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush_chunk()?;
        self.finished = true;
        self.send(Msg::Finish)
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(WRITER_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= WRITER_CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The asynchronous end of a streaming upload.
pub struct UploadHandle {
    join: JoinHandle<Result<u64, StorageError>>,
    written: Arc<AtomicU64>,
}

impl UploadHandle {
    /// Bytes handed to the uploader so far (for progress).
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }

    /// Waits for the object to be complete (or the upload to fail).
    pub async fn wait(self) -> Result<u64, StorageError> {
        self.join
            .await
            .map_err(|e| StorageError::Config(format!("internal: upload task failed: {e}")))?
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
