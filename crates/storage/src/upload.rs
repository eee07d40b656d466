//! The one upload path: a synchronous [`ObjectWriter`], written on a blocking thread
//! (by a compressor, a tar writer), feeds an asynchronous [`Upload`] that stores the
//! bytes as one object. Up to [`UploadPlan::single_put_max`] bytes go up in one PUT
//! (create-only when asked); larger objects go up as a multipart upload of
//! [`UploadPlan::part_size`] parts with at most [`UploadPlan::parts_in_flight`] in
//! flight. Memory stays bounded by the single-PUT buffer (or the parts in flight)
//! plus [`UploadPlan::queue_chunks`] chunks of 1 MiB between the two ends.
//!
//! Nothing is committed before the writer's [`ObjectWriter::finish`]: a writer
//! dropped early (its producer failed) aborts the upload, and no object appears.

use crate::archive::Archive;
use crate::keys::object_path;
use crate::StorageError;
use barrelman_core::counting::ByteCounter;
use bytes::{Bytes, BytesMut};
use object_store::{PutMode, PutMultipartOptions, PutOptions, PutPayload, TagSet, WriteMultipart};
use std::future::Future;
use std::io::{self, Write};
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Compressed WAL files up to this size go up in one PUT, which is create-only;
/// larger ones (WAL segments over 16 MiB, e.g. `--wal-segsize 1024`) use multipart,
/// whose completion object_store cannot make create-only. A 16 MiB segment of
/// incompressible content grows by a fraction of a percent under every codec: the
/// extra MiB keeps every default-sized segment in one create-only PUT.
pub const SINGLE_PUT_MAX: usize = 17 << 20;
/// Multipart part size of WAL uploads; with [`PARTS_IN_FLIGHT`] this bounds upload
/// memory.
pub const PART_SIZE: usize = 8 << 20;
/// Parts of a WAL upload uploaded concurrently.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Size of the chunks passed from the writer to the uploader.
const CHUNK: usize = 1 << 20;

/// Whether an upload may replace an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Replace whatever the key holds (backup parts: the key is new by construction).
    Overwrite,
    /// Never replace: the single PUT is conditional (create-new on a local
    /// directory); a multipart completion cannot be, so the caller checks just
    /// before it (see [`Upload::run_checked`]).
    CreateOnly,
}

/// How one object is streamed up.
#[derive(Debug, Clone)]
pub struct UploadPlan {
    /// Create-only or overwrite.
    pub mode: WriteMode,
    /// Objects up to this many bytes go up in one PUT, held whole until it.
    pub single_put_max: usize,
    /// Part size of a multipart upload.
    pub part_size: usize,
    /// Parts uploaded concurrently.
    pub parts_in_flight: usize,
    /// Chunks of 1 MiB the writer may run ahead of the uploader.
    pub queue_chunks: usize,
    /// Object tags.
    pub tags: Vec<(String, String)>,
}

impl UploadPlan {
    /// A WAL file: create-only, one PUT up to [`SINGLE_PUT_MAX`] (every 16 MiB
    /// segment), then [`PART_SIZE`] parts, [`PARTS_IN_FLIGHT`] at a time. The
    /// compressor may run 8 chunks ahead, so that it overlaps the existence check.
    pub fn wal(tags: &[(String, String)]) -> Self {
        Self {
            mode: WriteMode::CreateOnly,
            single_put_max: SINGLE_PUT_MAX,
            part_size: PART_SIZE,
            parts_in_flight: PARTS_IN_FLIGHT,
            queue_chunks: 8,
            tags: tags.to_vec(),
        }
    }

    /// One tar part of a backup: overwrite, parts of `part_size`, one part in
    /// flight while the next fills, so memory stays near 2 × `part_size`.
    pub fn backup_part(part_size: usize, tags: &[(String, String)]) -> Self {
        Self {
            mode: WriteMode::Overwrite,
            single_put_max: part_size,
            part_size,
            parts_in_flight: 1,
            queue_chunks: 2,
            tags: tags.to_vec(),
        }
    }
}

/// A provider's own bounds on how one object goes up (barman's Azure flags);
/// `None` keeps the plan's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadTuning {
    /// Objects up to this many bytes go up in one request.
    pub single_put_max: Option<usize>,
    /// The block (part) size above it.
    pub part_size: Option<usize>,
    /// Blocks (parts) of one object uploaded at the same time.
    pub parts_in_flight: Option<usize>,
}

impl UploadPlan {
    /// This plan within `tuning`.
    pub fn tuned(mut self, tuning: &UploadTuning) -> Self {
        if let Some(n) = tuning.single_put_max {
            self.single_put_max = n;
        }
        if let Some(n) = tuning.part_size {
            self.part_size = n.max(1);
        }
        if let Some(n) = tuning.parts_in_flight {
            self.parts_in_flight = n.max(1);
        }
        self
    }
}

/// A completed upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Bytes stored.
    pub size: u64,
    /// The entity tag the store gave the object, without quotes.
    pub e_tag: Option<String>,
}

/// Why an upload did not complete.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Create-only: the key (or, by the check before a multipart completion, the
    /// name) is taken already. Nothing was written.
    #[error("the object exists already")]
    AlreadyExists,
    /// The writer was dropped without [`ObjectWriter::finish`]: its producer
    /// stopped, and its own error says why. Nothing was written.
    #[error("the writer stopped before the end of the object")]
    Abandoned,
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

enum Msg {
    Data(Bytes),
    Finish,
}

impl Archive {
    /// Prepares a streaming upload to `key`: bytes written to the [`ObjectWriter`]
    /// (from a blocking thread) become the object once [`ObjectWriter::finish`] is
    /// called and the [`Upload`] is run to its end. The upload runs in the caller's
    /// task, so dropping it (a passed deadline) stops it with nothing committed.
    pub fn upload_sink(&self, key: &str, plan: UploadPlan) -> (ObjectWriter, Upload) {
        let (tx, rx) = mpsc::channel::<Msg>(plan.queue_chunks.max(1));
        let failure = Arc::new(OnceLock::new());
        let received = ByteCounter::new();
        (
            ObjectWriter {
                tx,
                buf: BytesMut::with_capacity(CHUNK),
                failure: failure.clone(),
            },
            Upload {
                archive: self.clone(),
                key: key.to_string(),
                plan,
                rx,
                failure,
                received,
            },
        )
    }

    /// [`Archive::upload_sink`] with the upload running in its own task: the
    /// [`UploadHandle`] counts the bytes handed over and gives the stored size.
    /// A writer dropped without `finish` aborts the upload: no object appears.
    pub fn object_writer(&self, key: &str, plan: UploadPlan) -> (ObjectWriter, UploadHandle) {
        let (writer, upload) = self.upload_sink(key, plan);
        let received = upload.received();
        let key = key.to_string();
        let join = tokio::spawn(async move {
            match upload.run().await {
                Ok(stored) => Ok(stored.size),
                Err(UploadError::Storage(e)) => Err(e),
                Err(UploadError::Abandoned) => Err(StorageError::LocalIo {
                    what: "upload abandoned before its end for",
                    path: key,
                    source: io::Error::other("the producer stopped"),
                }),
                Err(UploadError::AlreadyExists) => Err(StorageError::Conflict { key }),
            }
        });
        (writer, UploadHandle { join, received })
    }
}

/// The asynchronous end of a streaming upload, run by [`Upload::run`].
pub struct Upload {
    archive: Archive,
    key: String,
    plan: UploadPlan,
    rx: mpsc::Receiver<Msg>,
    /// The upload's error, for the writer whose sends then fail.
    failure: Arc<OnceLock<String>>,
    received: ByteCounter,
}

impl Upload {
    /// Bytes received from the writer so far.
    pub fn received(&self) -> ByteCounter {
        self.received.clone()
    }

    /// Stores what the writer sends, until its `finish`.
    pub async fn run(self) -> Result<Stored, UploadError> {
        self.run_checked(|| async { Ok(()) }).await
    }

    /// [`Upload::run`], with `before_multipart_commit` run just before a multipart
    /// upload is completed; its error aborts the upload (a create-only WAL upload
    /// looks there for a copy another writer stored meanwhile).
    pub async fn run_checked<F, Fut>(
        mut self,
        before_multipart_commit: F,
    ) -> Result<Stored, UploadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), UploadError>>,
    {
        let result = self.stream(before_multipart_commit).await;
        // The writer learns of the failure from the closed channel; the error is
        // recorded before the channel closes so that it can say what happened.
        if let Err(e) = &result {
            let text = match e {
                UploadError::AlreadyExists => format!("{} exists already", self.key),
                other => other.to_string(),
            };
            let _ = self.failure.set(text);
        }
        drop(self.rx);
        result
    }

    async fn stream<F, Fut>(&mut self, before_multipart_commit: F) -> Result<Stored, UploadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), UploadError>>,
    {
        let archive = self.archive.clone();
        let key = self.key.as_str();
        let err = |e: object_store::Error| UploadError::Storage(archive.err(e, key));
        let obj = object_path(key)?;
        let tags = tagset(&self.plan.tags);
        let mut buffered: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut multipart: Option<WriteMultipart> = None;
        let mut finished = false;
        while let Some(msg) = self.rx.recv().await {
            let chunk = match msg {
                Msg::Data(c) => c,
                Msg::Finish => {
                    finished = true;
                    break;
                }
            };
            total += chunk.len();
            self.received.add(chunk.len() as u64);
            if let Some(mp) = multipart.as_mut() {
                if let Err(e) = mp.wait_for_capacity(self.plan.parts_in_flight).await {
                    if let Some(mp) = multipart.take() {
                        let _ = mp.abort().await;
                    }
                    return Err(err(e));
                }
                mp.put(chunk);
                continue;
            }
            buffered.push(chunk);
            if total > self.plan.single_put_max {
                let upload = archive
                    .store()
                    .put_multipart_opts(
                        &obj,
                        PutMultipartOptions {
                            tags: tags.clone(),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(err)?;
                let mut mp = WriteMultipart::new_with_chunk_size(upload, self.plan.part_size);
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
            return Err(UploadError::Abandoned);
        }
        let put = match multipart {
            Some(mp) => {
                if let Err(e) = before_multipart_commit().await {
                    let _ = mp.abort().await;
                    return Err(e);
                }
                mp.finish().await.map_err(err)?
            }
            None => {
                let payload: PutPayload = buffered.into_iter().collect();
                let opts = PutOptions {
                    mode: match self.plan.mode {
                        WriteMode::CreateOnly => PutMode::Create,
                        WriteMode::Overwrite => PutMode::Overwrite,
                    },
                    tags,
                    ..Default::default()
                };
                match archive.store().put_opts(&obj, payload, opts).await {
                    Ok(put) => put,
                    Err(object_store::Error::AlreadyExists { .. })
                    | Err(object_store::Error::Precondition { .. })
                        if self.plan.mode == WriteMode::CreateOnly =>
                    {
                        return Err(UploadError::AlreadyExists)
                    }
                    Err(e) => return Err(err(e)),
                }
            }
        };
        Ok(Stored {
            size: total as u64,
            e_tag: put.e_tag.as_deref().map(bare_tag),
        })
    }
}

/// The entity tag without quotes (a PUT's answer and a listing quote it
/// differently on some stores).
pub(crate) fn bare_tag(tag: &str) -> String {
    tag.trim_matches('"').to_string()
}

pub(crate) fn tagset(tags: &[(String, String)]) -> TagSet {
    let mut t = TagSet::default();
    for (k, v) in tags {
        t.push(k, v);
    }
    t
}

/// The synchronous end of a streaming upload. Use from a blocking thread.
pub struct ObjectWriter {
    tx: mpsc::Sender<Msg>,
    buf: BytesMut,
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
        let chunk = std::mem::replace(&mut self.buf, BytesMut::with_capacity(CHUNK)).freeze();
        self.send(Msg::Data(chunk))
    }

    /// Ends the object: everything written so far becomes the object.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush_chunk()?;
        self.send(Msg::Finish)
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The asynchronous end of a streaming upload running in its own task.
pub struct UploadHandle {
    join: JoinHandle<Result<u64, StorageError>>,
    received: ByteCounter,
}

impl UploadHandle {
    /// Bytes handed to the uploader so far (for progress, the bandwidth limit and
    /// the part-size check).
    pub fn counter(&self) -> ByteCounter {
        self.received.clone()
    }

    /// Waits for the object to be complete (or the upload to fail); the stored size.
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
    use std::sync::atomic::{AtomicBool, Ordering};

    fn local_archive(dir: &std::path::Path) -> Archive {
        let dest = Destination::parse(&format!("file://{}", dir.display()), false).unwrap();
        Archive::open(&dest, "srv", &Default::default()).unwrap()
    }

    /// A plan small enough to reach multipart with a few MiB.
    fn small_plan(mode: WriteMode) -> UploadPlan {
        UploadPlan {
            mode,
            single_put_max: 2 << 20,
            part_size: 1 << 20,
            parts_in_flight: 2,
            queue_chunks: 2,
            tags: Vec::new(),
        }
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// Writes `data` through the sink on a blocking thread and runs the upload,
    /// recording whether the check before a multipart completion ran.
    async fn upload(
        archive: &Archive,
        key: &str,
        plan: UploadPlan,
        data: Vec<u8>,
        finish: bool,
    ) -> (Result<Stored, UploadError>, bool) {
        let (mut writer, upload) = archive.upload_sink(key, plan);
        let producer = tokio::task::spawn_blocking(move || {
            writer.write_all(&data)?;
            if finish {
                writer.finish()?;
            }
            io::Result::Ok(())
        });
        let checked = AtomicBool::new(false);
        let result = upload
            .run_checked(|| async {
                checked.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await;
        let _ = producer.await;
        (result, checked.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn up_to_the_single_put_limit_one_put_above_it_parts_and_both_arrive_whole() {
        let dir = tempfile::tempdir().unwrap();
        let archive = local_archive(dir.path());
        for (len, multipart) in [(0, false), (2 << 20, false), ((5 << 20) + 3, true)] {
            let key = format!("srv/obj-{len}");
            let data = content(len);
            let (result, checked) = upload(
                &archive,
                &key,
                small_plan(WriteMode::CreateOnly),
                data.clone(),
                true,
            )
            .await;
            let stored = result.unwrap_or_else(|e| panic!("{len} bytes: {e:?}"));
            assert_eq!(stored.size, len as u64);
            assert_eq!(checked, multipart, "{len} bytes");
            assert_eq!(std::fs::read(dir.path().join(&key)).unwrap(), data);
        }
    }

    #[tokio::test]
    async fn create_only_never_replaces_and_overwrite_does() {
        let dir = tempfile::tempdir().unwrap();
        let archive = local_archive(dir.path());
        let key = "srv/taken";
        archive
            .put_small(key, Bytes::from_static(b"first"), &[])
            .await
            .unwrap();
        for (mode, stays) in [
            (WriteMode::CreateOnly, &b"first"[..]),
            (WriteMode::Overwrite, &b"second"[..]),
        ] {
            let (result, _) =
                upload(&archive, key, small_plan(mode), b"second".to_vec(), true).await;
            match mode {
                WriteMode::CreateOnly => {
                    assert!(
                        matches!(result, Err(UploadError::AlreadyExists)),
                        "{result:?}"
                    )
                }
                WriteMode::Overwrite => assert_eq!(result.unwrap().size, 6),
            }
            assert_eq!(std::fs::read(dir.path().join(key)).unwrap(), stays);
        }
    }

    #[tokio::test]
    async fn a_writer_dropped_before_its_end_leaves_no_object() {
        let dir = tempfile::tempdir().unwrap();
        let archive = local_archive(dir.path());
        for len in [100, 5 << 20] {
            let key = format!("srv/cut-{len}");
            let (result, checked) = upload(
                &archive,
                &key,
                small_plan(WriteMode::Overwrite),
                content(len),
                false,
            )
            .await;
            assert!(matches!(result, Err(UploadError::Abandoned)), "{result:?}");
            assert!(!checked);
            assert!(!dir.path().join(&key).exists(), "{key} was committed");
        }
    }

    #[tokio::test]
    async fn a_failed_check_before_the_multipart_completion_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let archive = local_archive(dir.path());
        let key = "srv/refused";
        let (mut writer, upload) = archive.upload_sink(key, small_plan(WriteMode::CreateOnly));
        let data = content(5 << 20);
        let producer = tokio::task::spawn_blocking(move || {
            writer.write_all(&data)?;
            writer.finish()
        });
        let result = upload
            .run_checked(|| async { Err(UploadError::AlreadyExists) })
            .await;
        assert!(
            matches!(result, Err(UploadError::AlreadyExists)),
            "{result:?}"
        );
        producer.await.unwrap().unwrap();
        assert!(!dir.path().join(key).exists());
    }

    #[tokio::test]
    async fn the_spawned_upload_counts_what_it_received_and_gives_the_stored_size() {
        let dir = tempfile::tempdir().unwrap();
        let archive = local_archive(dir.path());
        let (mut writer, handle) =
            archive.object_writer("srv/part", UploadPlan::backup_part(1 << 20, &[]));
        let counter = handle.counter();
        let data = content(3 << 20);
        let expected = data.clone();
        tokio::task::spawn_blocking(move || {
            writer.write_all(&data)?;
            writer.finish()
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(handle.wait().await.unwrap(), 3 << 20);
        assert_eq!(counter.get(), 3 << 20);
        assert_eq!(
            std::fs::read(dir.path().join("srv/part")).unwrap(),
            expected
        );
    }
}
