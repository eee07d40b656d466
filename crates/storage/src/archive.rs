//! One server's archive: WAL upload and download in the barman-cloud layout.
//!
//! Data never sits whole in memory: a file is read and compressed on a blocking
//! thread in chunks that flow through a bounded channel to the uploader; downloads
//! flow the other way through a synchronous bridge into the decompressor.

use crate::codec;
use crate::download::{on_blocking_thread, Decoded};
use crate::keys::object_path;
use crate::localfs::{is_disk_full, write_atomically, WriteError};
use crate::segment::{size_mismatch, SegmentSizeCheck};
use crate::store::s3::RequestContext;
use crate::store::{open_single_delete_store, open_store, StoreSettings};
use crate::upload::{bare_tag, ObjectWriter, UploadError, UploadPlan};
use crate::StorageError;
use barrelman_core::layout::{Destination, ServerLayout, StoredWal};
use barrelman_core::wal::WalName;
use barrelman_core::Compression;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

tokio::task_local! {
    /// Cancelled when the deadline of the call running in this task passes; readers
    /// handed to blocking threads watch it.
    pub(crate) static CALL_CANCELLED: CancellationToken;
}

/// How long a call whose deadline passed waits for its attempt in flight to stop.
const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// How an archive call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveOutcome {
    /// Uploaded.
    Uploaded {
        /// The object written.
        key: String,
        /// Its size after compression.
        stored: u64,
    },
    /// The same content was already archived; nothing was written.
    AlreadyArchived {
        /// The object holding it.
        key: String,
    },
}

/// One WAL name stored in several variants with different content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DifferingVariants {
    /// The WAL name.
    pub name: String,
    /// Every stored key of that name; restore serves the first.
    pub keys: Vec<String>,
}

/// Options of one WAL upload.
#[derive(Debug, Clone, Default)]
pub struct UploadOptions {
    /// The codec; `None` stores the file as it is.
    pub compression: Option<Compression>,
    /// Level for the codec; `None` is barman's default for it.
    pub level: Option<i32>,
    /// Object tags.
    pub tags: Vec<(String, String)>,
}

/// One server's part of an archive.
#[derive(Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    /// Deletes without the bulk request, once the store has refused one.
    pub(crate) single_delete: Option<Arc<dyn ObjectStore>>,
    pub(crate) bulk_delete_refused: Arc<std::sync::atomic::AtomicBool>,
    layout: ServerLayout,
    dest: Destination,
    /// Where requests go, for classifying their errors.
    ctx: RequestContext,
    /// The longest one call ([`Archive::archive_wal`], [`Archive::restore_wal`]) may
    /// take, retries included.
    call_deadline: std::time::Duration,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("location", &self.location())
            .finish()
    }
}

impl Archive {
    /// Opens `server_name`'s area of the archive at `dest`.
    pub fn open(
        dest: &Destination,
        server_name: &str,
        settings: &StoreSettings,
    ) -> Result<Self, StorageError> {
        // Before anything is opened or created: a name that cannot be stored raw is
        // refused, never archived under a key that restore would not find.
        let layout = ServerLayout::checked(&dest.path, server_name)?;
        let store = open_store(dest, settings)?;
        let single_delete = open_single_delete_store(dest, settings)?;
        let endpoint = settings.common.endpoint_url.clone().unwrap_or_else(|| {
            match (&dest.provider, &settings.provider) {
                (barrelman_core::layout::Provider::Local, _) => dest.url.clone(),
                (_, crate::ProviderSettings::Gcs(gcs)) => {
                    crate::store::gcs::base_url(&settings.common, gcs)
                }
                _ => "the default endpoint".to_string(),
            }
        });
        Ok(Self {
            store,
            single_delete,
            bulk_delete_refused: Arc::default(),
            layout,
            dest: dest.clone(),
            ctx: RequestContext {
                endpoint,
                bucket: dest.bucket.clone(),
                session_token: settings.sends_session_token(),
                read_timeout: settings.read_timeout(),
            },
            call_deadline: settings.call_deadline(),
        })
    }

    /// `URL/server`, for messages.
    pub fn location(&self) -> String {
        format!(
            "{}/{}",
            self.dest.url.trim_end_matches('/'),
            self.layout_server()
        )
    }

    fn layout_server(&self) -> &str {
        self.layout.root().rsplit('/').next().unwrap_or_default()
    }

    /// The key layout of this server.
    pub fn layout(&self) -> &ServerLayout {
        &self.layout
    }

    /// The directory holding the objects under `prefix`, for a `file://` archive.
    pub fn local_dir(&self, prefix: &str) -> Option<PathBuf> {
        (self.dest.provider == barrelman_core::layout::Provider::Local)
            .then(|| Path::new(&self.dest.bucket).join(prefix))
    }

    /// The underlying store (for tests and tools that inspect objects).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub(crate) fn err(&self, e: object_store::Error, key: &str) -> StorageError {
        StorageError::from_store(e, key, &self.ctx)
    }

    /// Every stored variant of `name` (exact name, any known suffix), by key order.
    /// One list request: it starts just before the name, so the cost does not grow
    /// with the number of WAL files in the hash directory.
    pub async fn find_variants(
        &self,
        name: &WalName,
    ) -> Result<Vec<(String, StoredWal)>, StorageError> {
        Ok(self
            .variants_with_tags(name)
            .await?
            .into_iter()
            .map(|v| (v.key, v.stored))
            .collect())
    }

    /// [`Archive::find_variants`] with each object's entity tag.
    async fn variants_with_tags(&self, name: &WalName) -> Result<Vec<Variant>, StorageError> {
        let exact = self.layout.wal_variants_prefix(name);
        let dir = self.layout.wal_dir(name);
        let variant = |meta: object_store::ObjectMeta| {
            let key = meta.location.to_string();
            let stored = StoredWal::from_key(&key).filter(|s| s.name == *name)?;
            Some(Variant {
                key,
                stored,
                e_tag: meta.e_tag.as_deref().map(bare_tag),
            })
        };
        let mut found = Vec::new();
        if self.dest.provider == barrelman_core::layout::Provider::Local {
            // A directory lists in no particular order, so an ordered scan cannot
            // stop early; read the directory itself (not recursively: history files
            // sit in `wals/` above every hash directory).
            let listing = self
                .store
                .list_with_delimiter(Some(&object_path(&dir)?))
                .await
                .map_err(|e| self.err(e, &exact))?;
            found.extend(listing.objects.into_iter().filter_map(variant));
        } else {
            // Keys sort after `exact` minus its last character and before anything
            // that no longer starts with `exact`; stop reading there.
            let offset = object_path(&exact[..exact.len() - 1])?;
            let mut stream = self
                .store
                .list_with_offset(Some(&object_path(&dir)?), &offset);
            while let Some(item) = stream.next().await {
                let meta = item.map_err(|e| self.err(e, &exact))?;
                if meta.location.as_ref().starts_with(&exact) {
                    found.extend(variant(meta));
                } else if meta.location.as_ref() > exact.as_str() {
                    break;
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// Archives the local WAL file `path` (its base name must be a WAL name).
    ///
    /// Identical content already archived (under any suffix) is a success without a
    /// write; different content under the same WAL name is refused and the archived
    /// copy is kept. The upload itself is conditional where the store supports it.
    pub async fn archive_wal(
        &self,
        path: &Path,
        name: &WalName,
        opts: &UploadOptions,
    ) -> Result<ArchiveOutcome, StorageError> {
        self.with_retries(|| self.archive_wal_once(path, name, opts))
            .await
    }

    async fn archive_wal_once(
        &self,
        path: &Path,
        name: &WalName,
        opts: &UploadOptions,
    ) -> Result<ArchiveOutcome, StorageError> {
        let compression = opts.compression.unwrap_or(Compression::None);
        let level = opts.level.unwrap_or_else(|| compression.default_level());
        let key = self.layout.wal_key(name, compression);
        // Compression starts at once and overlaps the existence check (and the
        // connection set-up it pays for); its output waits in a bounded queue.
        let (writer, upload) = self.upload_sink(&key, UploadPlan::wal(&opts.tags));
        let src = path.to_path_buf();
        let producer =
            tokio::task::spawn_blocking(move || compress_file(&src, compression, level, writer));
        let existing = match self.find_variants(name).await {
            Ok(v) => v,
            Err(e) => {
                drop(upload);
                let _ = producer.await;
                return Err(e);
            }
        };
        if !existing.is_empty() {
            // Dropping the upload stops the compressor.
            drop(upload);
            let _ = producer.await;
            return self.settle_existing(path, existing).await;
        }
        // Completing a multipart upload cannot be made create-only, so look once
        // more just before it: a copy stored meanwhile by another writer is settled
        // like one found at the start, never replaced. (A completion racing this
        // look is caught by the check after.)
        let no_copy_yet = || async {
            match self.find_variants(name).await {
                Ok(found) if found.is_empty() => Ok(()),
                Ok(_) => Err(UploadError::AlreadyExists),
                Err(e) => Err(UploadError::Storage(e)),
            }
        };
        match upload.run_checked(no_copy_yet).await {
            Ok(stored) => {
                // The compressor sent its end, so it has read the whole file.
                let _ = producer.await;
                self.settle_after_upload(path, name, key, compression, stored.size, stored.e_tag)
                    .await
            }
            // Someone else wrote the name between our check and our PUT.
            Err(UploadError::AlreadyExists) => {
                let existing = self.find_variants(name).await?;
                self.settle_existing(path, existing).await
            }
            // The compressor stopped before the end: its error says why.
            Err(UploadError::Abandoned) => Err(match producer.await {
                Ok(Err(source)) => StorageError::LocalIo {
                    what: "cannot read WAL file",
                    path: path.display().to_string(),
                    source,
                },
                Ok(Ok(_)) => StorageError::Config(
                    "internal: the compressor ended without finishing its output".into(),
                ),
                Err(e) => StorageError::Config(format!("internal: compression task failed: {e}")),
            }),
            Err(UploadError::Storage(e)) => Err(e),
        }
    }

    /// The WAL is already stored: a success only when every stored variant holds
    /// exactly the local content (a variant that differs means restore may serve
    /// other bytes than ours).
    async fn settle_existing(
        &self,
        path: &Path,
        existing: Vec<(String, StoredWal)>,
    ) -> Result<ArchiveOutcome, StorageError> {
        let mut first = None;
        for (key, stored) in existing {
            match self
                .compare_if_present(&key, stored.compression, path)
                .await?
            {
                Some(false) => return Err(StorageError::Conflict { key }),
                Some(true) => {
                    first.get_or_insert(key);
                }
                // Removed meanwhile by a writer that lost a race: not a copy.
                None => {}
            }
        }
        match first {
            Some(key) => Ok(ArchiveOutcome::AlreadyArchived { key }),
            None => Err(StorageError::Store {
                key: path.display().to_string(),
                detail: "the stored copy disappeared while it was being compared".into(),
                transient: true,
            }),
        }
    }

    /// After our upload, looks again: another writer may have stored the same WAL
    /// name at the same time under another codec (a different key, so the
    /// conditional PUT could not stop it), or overwritten our key with a multipart
    /// upload (which is not conditional). Exit 0 is given only when every variant
    /// holds our content. If another holds different content, or the check itself
    /// fails, our object is removed (restore can then only serve content whose
    /// writer was told it succeeded) and the call fails.
    async fn settle_after_upload(
        &self,
        path: &Path,
        name: &WalName,
        key: String,
        compression: Compression,
        stored: u64,
        e_tag: Option<String>,
    ) -> Result<ArchiveOutcome, StorageError> {
        match self
            .after_upload(path, name, &key, compression, e_tag.as_deref())
            .await
        {
            Ok(AfterUpload::Sole) => Ok(ArchiveOutcome::Uploaded { key, stored }),
            // Theirs stands, and it is theirs to report.
            Ok(AfterUpload::Replaced) => Err(StorageError::Conflict { key }),
            Ok(AfterUpload::OtherDiffers(other)) => {
                tracing::warn!(
                    "{other} was archived at the same time as {key} with different content; removing {key}"
                );
                self.remove_own(&key).await?;
                Err(StorageError::ConcurrentConflict { ours: key, other })
            }
            Err(e) => {
                if let Err(removal) = self.remove_own(&key).await {
                    tracing::warn!("cannot remove {key} after a failed check: {removal}");
                }
                Err(e)
            }
        }
    }

    async fn after_upload(
        &self,
        path: &Path,
        name: &WalName,
        key: &str,
        compression: Compression,
        e_tag: Option<&str>,
    ) -> Result<AfterUpload, StorageError> {
        let variants = self.variants_with_tags(name).await?;
        let mut ours_present = false;
        let mut differing = None;
        for v in &variants {
            if v.key == key {
                ours_present = true;
                let untouched = e_tag.is_some() && v.e_tag.as_deref() == e_tag;
                if !untouched
                    && self.compare_if_present(key, compression, path).await? != Some(true)
                {
                    return Ok(AfterUpload::Replaced);
                }
            } else if self
                .compare_if_present(&v.key, v.stored.compression, path)
                .await?
                == Some(false)
            {
                differing.get_or_insert(v.key.clone());
            }
        }
        if let Some(other) = differing {
            return Ok(AfterUpload::OtherDiffers(other));
        }
        if !ours_present {
            // Read-after-write is strong on S3 and local directories; if our object
            // is gone, someone removed it: let the whole step run again.
            return Err(StorageError::Store {
                key: key.to_string(),
                detail: "the object was not listed right after its upload".into(),
                transient: true,
            });
        }
        Ok(AfterUpload::Sole)
    }

    async fn remove_own(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&object_path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e, key)),
        }
    }

    /// Whether `key` holds the local file's content (compared streaming), or `None`
    /// when `key` no longer exists (a racing writer removed its own copy).
    async fn compare_if_present(
        &self,
        key: &str,
        compression: Compression,
        path: &Path,
    ) -> Result<Option<bool>, StorageError> {
        let Some(stored) = self.object_reader_if_present(key).await? else {
            return Ok(None);
        };
        let local = path.to_path_buf();
        let key = key.to_string();
        on_blocking_thread(move || -> Result<Option<bool>, StorageError> {
            let mut remote = Decoded::new(key, compression, stored);
            let local_failure = |source| StorageError::LocalIo {
                what: "cannot read WAL file",
                path: local.display().to_string(),
                source,
            };
            let mut file = File::open(&local).map_err(&local_failure)?;
            let mut a = vec![0u8; 256 << 10];
            let mut b = vec![0u8; 256 << 10];
            loop {
                let n = read_full(&mut file, &mut a).map_err(&local_failure)?;
                let m =
                    read_full(&mut remote, &mut b[..n.max(1)]).map_err(|e| remote.corrupt(e))?;
                if n == 0 {
                    return Ok(Some(m == 0));
                }
                if n != m || a[..n] != b[..m] {
                    return Ok(Some(false));
                }
            }
        })
        .await?
    }

    /// Fetches WAL `name` into `dest` (temporary name, fsync, rename). Without an
    /// exact match, `name.partial` is used when `allow_partial`.
    /// Returns the key that was restored.
    pub async fn restore_wal(
        &self,
        name: &WalName,
        dest: &Path,
        allow_partial: bool,
    ) -> Result<String, StorageError> {
        self.with_retries(|| async {
            let (key, compression) = self.locate_wal(name, allow_partial).await?;
            self.download(&key, compression, dest).await?;
            Ok(key)
        })
        .await
    }

    /// Which object serves a request for `name`.
    pub async fn locate_wal(
        &self,
        name: &WalName,
        allow_partial: bool,
    ) -> Result<(String, Compression), StorageError> {
        if let Some((key, stored)) = self.find_variants(name).await?.into_iter().next() {
            return Ok((key, stored.compression));
        }
        if let Some(partial) = name.partial().filter(|_| allow_partial) {
            if let Some((key, stored)) = self.find_variants(&partial).await?.into_iter().next() {
                return Ok((key, stored.compression));
            }
        }
        Err(StorageError::WalNotFound {
            name: name.to_string(),
            location: self.location(),
        })
    }

    /// Downloads and decompresses `key` into `dest` atomically.
    pub async fn download(
        &self,
        key: &str,
        compression: Compression,
        dest: &Path,
    ) -> Result<u64, StorageError> {
        let dest = dest.to_path_buf();
        // Whole segments must be as long as their header says (a truncated object
        // decodes without error); partial, history and backup files are shorter.
        let whole_segment = StoredWal::from_key(key)
            .is_some_and(|s| s.name.kind() == barrelman_core::wal::WalKind::Segment);
        self.decoded(key, compression)
            .read(move |decoded| {
                write_atomically(&dest, |out| {
                    if whole_segment {
                        copy_large(&mut SegmentSizeCheck::new(&mut *decoded), out)
                    } else {
                        copy_large(decoded, out)
                    }
                })
                .map_err(|e| match e {
                    WriteError::Local(source) if is_disk_full(&source) => {
                        StorageError::LocalDiskFull {
                            path: dest.display().to_string(),
                            source,
                        }
                    }
                    WriteError::Local(source) => StorageError::LocalIo {
                        what: "cannot write",
                        path: dest.display().to_string(),
                        source,
                    },
                    WriteError::Content(source) => match size_mismatch(&source) {
                        Some(m) => StorageError::WrongSize {
                            key: decoded.key().to_string(),
                            actual: m.actual,
                            expected: m.expected,
                        },
                        None => decoded.corrupt(source),
                    },
                })
            })
            .await
    }

    /// Every WAL-type object under `wals/`, unordered.
    pub async fn list_wals(&self) -> Result<Vec<(String, StoredWal)>, StorageError> {
        Ok(self
            .list_wals_timed()
            .await?
            .into_iter()
            .map(|(key, wal, _)| (key, wal))
            .collect())
    }

    /// [`Archive::list_wals`] with each object's last-modified time: when it was
    /// archived.
    pub async fn list_wals_timed(
        &self,
    ) -> Result<Vec<(String, StoredWal, chrono::DateTime<chrono::Utc>)>, StorageError> {
        let prefix = self.layout.wals_prefix();
        let mut out = Vec::new();
        let mut stream = self.store.list(Some(&object_path(&prefix)?));
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|e| self.err(e, &prefix))?;
            let key = meta.location.to_string();
            if let Some(s) = StoredWal::from_key(&key) {
                out.push((key, s, meta.last_modified));
            }
        }
        Ok(out)
    }

    /// WAL names stored in more than one variant (codec suffix) whose decompressed
    /// contents differ: restore would serve one of them, by key order, and the
    /// writer of the other was wrongly told it succeeded (left by versions without
    /// the check after upload, or by another tool). One listing; only names with
    /// several variants are read.
    pub async fn differing_variants(&self) -> Result<Vec<DifferingVariants>, StorageError> {
        let mut by_name: std::collections::BTreeMap<String, Vec<(String, Compression)>> =
            Default::default();
        for (key, stored) in self.list_wals().await? {
            by_name
                .entry(stored.name.to_string())
                .or_default()
                .push((key, stored.compression));
        }
        let mut out = Vec::new();
        for (name, mut variants) in by_name.into_iter().filter(|(_, v)| v.len() > 1) {
            variants.sort_by(|a, b| a.0.cmp(&b.0));
            let (first, first_codec) = &variants[0];
            for (key, codec) in &variants[1..] {
                let same = match self
                    .same_stored_content(first, *first_codec, key, *codec)
                    .await
                {
                    Ok(same) => same,
                    // A variant that does not decode is not the same content.
                    Err(StorageError::Corrupt { .. }) => false,
                    Err(e) => return Err(e),
                };
                if !same {
                    out.push(DifferingVariants {
                        name,
                        keys: variants.into_iter().map(|(k, _)| k).collect(),
                    });
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Whether two stored objects decompress to the same bytes, streaming both.
    async fn same_stored_content(
        &self,
        a: &str,
        a_codec: Compression,
        b: &str,
        b_codec: Compression,
    ) -> Result<bool, StorageError> {
        let stored_a = self.object_reader(a).await?;
        let stored_b = self.object_reader(b).await?;
        let (a, b) = (a.to_string(), b.to_string());
        on_blocking_thread(move || -> Result<bool, StorageError> {
            let mut ra = Decoded::new(a, a_codec, stored_a);
            let mut rb = Decoded::new(b, b_codec, stored_b);
            let mut buf_a = vec![0u8; 256 << 10];
            let mut buf_b = vec![0u8; 256 << 10];
            loop {
                let n = read_full(&mut ra, &mut buf_a).map_err(|e| ra.corrupt(e))?;
                let m = read_full(&mut rb, &mut buf_b).map_err(|e| rb.corrupt(e))?;
                if n != m || buf_a[..n] != buf_b[..m] {
                    return Ok(false);
                }
                if n == 0 {
                    return Ok(true);
                }
            }
        })
        .await?
    }

    /// barman-cloud-check-wal-archive: fails when the archive holds any WAL file
    /// (with `timeline`, any of that timeline or newer).
    pub async fn check_empty(&self, timeline: Option<u32>) -> Result<(), StorageError> {
        let wals = match self.list_wals().await {
            // No bucket: nothing was ever archived there.
            Err(StorageError::BucketMissing { .. }) => Vec::new(),
            other => other?,
        };
        let mut names: Vec<String> = wals
            .into_iter()
            .filter(|(_, s)| timeline.is_none_or(|t| s.name.timeline() >= t))
            .map(|(_, s)| s.name.to_string())
            .collect();
        names.sort();
        names.dedup();
        match names.first() {
            None => Ok(()),
            Some(first) => Err(StorageError::NotEmpty {
                location: self.location(),
                count: names.len(),
                first: first.clone(),
            }),
        }
    }

    /// A cheap request proving the store answers and the bucket exists.
    pub async fn probe(&self) -> Result<(), StorageError> {
        let prefix = object_path(self.layout.root())?;
        self.store
            .list_with_delimiter(Some(&prefix))
            .await
            .map(|_| ())
            .map_err(|e| self.err(e, self.layout.root()))
    }
}

/// Whole-step attempts for transient failures, on top of the HTTP client's own
/// per-request retries (which do not repeat a conditional PUT cut mid-request: the
/// next attempt here first looks whether that PUT landed).
const STEP_ATTEMPTS: u32 = 4;

impl Archive {
    /// Runs `step`, again after a transient failure (up to [`STEP_ATTEMPTS`] in all),
    /// and gives up when the call's deadline ([`StoreSettings::call_deadline`]) passes:
    /// a store that accepts connections and never answers ends the call with the
    /// "cannot reach the object store" error instead of stalling the archiver.
    /// Dropping an unfinished step is safe: an object becomes visible only when its
    /// upload completes, and downloads go to a temporary file first.
    async fn with_retries<T, F, Fut>(&self, mut step: F) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StorageError>>,
    {
        // The last failure, for the message when the deadline ends the retries.
        let mut last_failure: Option<StorageError> = None;
        let cancel = CancellationToken::new();
        let mut attempts = Box::pin(CALL_CANCELLED.scope(cancel.clone(), async {
            let mut attempt = 1;
            loop {
                tracing::debug!("attempt {attempt} of {STEP_ATTEMPTS}");
                match step().await {
                    Err(e)
                        if e.is_transient()
                            && attempt < STEP_ATTEMPTS
                            && !cancel.is_cancelled() =>
                    {
                        let pause = std::time::Duration::from_millis(200 * 2u64.pow(attempt));
                        tracing::warn!("attempt {attempt} failed, retrying in {pause:?}: {e}");
                        last_failure = Some(e);
                        tokio::time::sleep(pause).await;
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        }));
        let outcome = tokio::select! {
            result = &mut attempts => Some(result),
            () = tokio::time::sleep(self.call_deadline) => {
                // Stop the attempt in flight: a download ends at once (see
                // `object_reader`); a request still waiting is dropped after the
                // grace period, which is safe as nothing is committed by dropping.
                cancel.cancel();
                match tokio::time::timeout(CANCEL_GRACE, &mut attempts).await {
                    // It completed after all: that is the truth to report.
                    Ok(Ok(done)) => Some(Ok(done)),
                    _ => None,
                }
            }
        };
        drop(attempts);
        match outcome {
            Some(result) => result,
            // A store that answers, with errors, is reachable: say what it answered.
            None if matches!(last_failure, Some(StorageError::ServerError { .. })) => {
                Err(last_failure.expect("matched above"))
            }
            None => Err(StorageError::Unreachable {
                endpoint: self.ctx.endpoint.clone(),
                detail: format!(
                    "it sent no complete answer within {} s, the deadline of one call: \
                     3 x the read timeout of {} s",
                    self.call_deadline.as_secs_f64(),
                    self.ctx.read_timeout.as_secs_f64()
                ),
            }),
        }
    }
}

/// What the look after an upload found.
enum AfterUpload {
    /// Every variant holds our content.
    Sole,
    /// Our key now holds another writer's different content.
    Replaced,
    /// Another key holds different content.
    OtherDiffers(String),
}

/// One stored variant of a WAL name.
struct Variant {
    key: String,
    stored: StoredWal,
    /// The entity tag without quotes (a PUT's answer and a listing quote it
    /// differently on some stores).
    e_tag: Option<String>,
}

/// Reads `path` and compresses it into `sink`, which it finishes (so the object is
/// committed only once the whole file was read).
fn compress_file(
    path: &Path,
    compression: Compression,
    level: i32,
    sink: ObjectWriter,
) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    // The size goes into the lz4/zstd frame headers, as barman writes them.
    let mut w = codec::CompressWriter::with_size(compression, level, size, sink)?;
    let n = copy_large(&mut file, &mut w)?;
    w.finish()?.finish()?;
    Ok(n)
}

/// `io::copy` with a larger buffer: codecs work better on big writes.
pub(crate) fn copy_large(r: &mut dyn Read, w: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
