//! Whole-object operations on an archive (small metadata objects, listings, deletes)
//! and a streaming writer that turns a synchronous byte stream into one object.

use crate::archive::Archive;
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
            .put_opts(&ObjPath::from(key), PutPayload::from(data), opts)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e, key))
    }

    /// Reads a small object whole. `Ok(None)` when it does not exist.
    pub async fn get_small(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        match self.store().get(&ObjPath::from(key)).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| self.err(e, key)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(e, key)),
        }
    }

    /// Deletes one object; a missing one is not an error.
    pub async fn delete_object(&self, key: &str) -> Result<(), StorageError> {
        match self.store().delete(&ObjPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e, key)),
        }
    }

    /// Deletes many objects with the store's batch delete (S3 DeleteObjects, 1000 a
    /// request). Missing objects are not errors, so an interrupted run can be
    /// repeated.
    pub async fn delete_many(&self, keys: &[String]) -> Result<(), StorageError> {
        use futures::stream::StreamExt as _;
        if keys.is_empty() {
            return Ok(());
        }
        let paths: Vec<object_store::Result<ObjPath>> =
            keys.iter().map(|k| Ok(ObjPath::from(k.as_str()))).collect();
        let mut results = self
            .store()
            .delete_stream(futures::stream::iter(paths).boxed());
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
        let mut stream = self.store().list(Some(&ObjPath::from(prefix)));
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
            .list_with_delimiter(Some(&ObjPath::from(prefix)))
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
        let obj = ObjPath::from(key);
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
