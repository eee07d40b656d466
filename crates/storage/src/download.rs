//! The one read path: a stored object's bytes as a synchronous reader, decoded with
//! its codec on a blocking thread. A read that fails maps to what it is: bytes the
//! codec refuses are [`StorageError::Corrupt`]; a download cut mid-body is also
//! reported through `Corrupt`, but keeps the store's error inside it, so that it is
//! retried and reported as the store's failure, not as bad content.

use crate::archive::{Archive, CALL_CANCELLED};
use crate::codec;
use crate::keys::object_path;
use crate::StorageError;
use barrelman_core::counting::{ByteCounter, CountingReader};
use barrelman_core::Compression;
use futures::{StreamExt, TryStreamExt};
use object_store::{GetResult, ObjectStoreExt};
use std::io::{self, Read};
use tokio_util::io::{StreamReader, SyncIoBridge};
use tokio_util::sync::CancellationToken;

/// The stored (not decoded) bytes of one object, to be read on a blocking thread.
pub(crate) type ObjectReader = Box<dyn Read + Send + 'static>;

impl Archive {
    /// A synchronous reader of the stored bytes of `key` (not decompressed). Read it
    /// only from a blocking thread; outside this crate, [`Archive::decoded`] does.
    pub(crate) async fn object_reader(&self, key: &str) -> Result<ObjectReader, StorageError> {
        let got = self
            .store()
            .get(&object_path(key)?)
            .await
            .map_err(|e| self.err(e, key))?;
        Ok(self.body_reader(got, key))
    }

    /// [`Archive::object_reader`], or `None` when `key` does not exist.
    pub(crate) async fn object_reader_if_present(
        &self,
        key: &str,
    ) -> Result<Option<ObjectReader>, StorageError> {
        match self.store().get(&object_path(key)?).await {
            Ok(got) => Ok(Some(self.body_reader(got, key))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(e, key)),
        }
    }

    fn body_reader(&self, got: GetResult, key: &str) -> ObjectReader {
        // A failure mid-body (a reset, a read timeout) keeps its classification, so
        // that it is retried and reported as what it is, not as bad content.
        let archive = self.clone();
        let key_owned = key.to_string();
        let mut body = got.into_stream().map_err(move |e| {
            let failure = archive.err(e, &key_owned);
            io::Error::new(failure.io_kind(), failure)
        });
        // The reader runs on a blocking thread that a passed deadline cannot drop:
        // it ends with an error as soon as the call is cancelled, before the body
        // is polled again (so its caller removes its temporary file, and nothing
        // polls the runtime's timers after the runtime has stopped).
        let mut cancelled = Box::pin(
            CALL_CANCELLED
                .try_with(CancellationToken::clone)
                .unwrap_or_default()
                .cancelled_owned(),
        );
        let stream = futures::stream::poll_fn(move |cx| {
            if std::future::Future::poll(cancelled.as_mut(), cx).is_ready() {
                return std::task::Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the deadline of the call passed",
                ))));
            }
            body.poll_next_unpin(cx)
        });
        Box::new(SyncIoBridge::new_with_handle(
            StreamReader::new(stream),
            tokio::runtime::Handle::current(),
        ))
    }

    /// A read of `key` decoded with `compression`; [`DecodedRead::read`] runs it.
    pub fn decoded(&self, key: &str, compression: Compression) -> DecodedRead<'_> {
        DecodedRead {
            archive: self,
            key: key.to_string(),
            compression,
            counter: ByteCounter::new(),
        }
    }
}

/// One read of a stored object through its codec, from [`Archive::decoded`].
#[must_use = "nothing is read until `read` runs"]
pub struct DecodedRead<'a> {
    archive: &'a Archive,
    key: String,
    compression: Compression,
    counter: ByteCounter,
}

impl DecodedRead<'_> {
    /// Adds the stored (compressed) bytes read to `counter` as they arrive (the
    /// progress of a restore).
    pub fn counting(self, counter: ByteCounter) -> Self {
        Self { counter, ..self }
    }

    /// Runs `consume` on a blocking thread with the decoded content and gives its
    /// result. `consume` maps the read failures it cares about
    /// ([`Decoded::corrupt`] makes the storage error of one); failing to open the
    /// object is the `StorageError` it is.
    pub async fn read<T, E, F>(self, consume: F) -> Result<T, E>
    where
        F: FnOnce(&mut Decoded) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        let Self {
            archive,
            key,
            compression,
            counter,
        } = self;
        let stored = archive.object_reader(&key).await?;
        on_blocking_thread(move || {
            let counted = CountingReader::with_counter(stored, counter);
            consume(&mut Decoded::new(key, compression, counted))
        })
        .await?
    }
}

/// Runs `work` on a blocking thread (decoders and local files block).
pub(crate) async fn on_blocking_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Config(format!("internal: a reading task failed: {e}")))
}

/// The decoded content of one stored object. Created and read on a blocking thread.
pub struct Decoded {
    key: String,
    /// The decoder, or why it could not start (given by the first read, so that
    /// every failure of the object reaches the caller the same way).
    decoder: Result<Box<dyn Read>, Option<io::Error>>,
}

impl Decoded {
    /// Decodes `stored`, the bytes of object `key`, with `compression`.
    pub(crate) fn new(key: String, compression: Compression, stored: impl Read + 'static) -> Self {
        Self {
            key,
            decoder: codec::decompress_reader(compression, stored).map_err(Some),
        }
    }

    /// The object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A failure to read this object, as a storage error: the content is corrupt,
    /// or (with the store's error inside) its download was cut.
    pub fn corrupt(&self, source: io::Error) -> StorageError {
        StorageError::Corrupt {
            key: self.key.clone(),
            source,
        }
    }
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.decoder {
            Ok(decoder) => decoder.read(buf),
            Err(failure) => Err(failure.take().unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "the decoder could not start")
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrelman_core::layout::Destination;
    use bytes::Bytes;

    fn local_archive(dir: &std::path::Path) -> Archive {
        let dest = Destination::parse(&format!("file://{}", dir.display()), false).unwrap();
        Archive::open(&dest, "srv", &Default::default()).unwrap()
    }

    #[tokio::test]
    async fn a_stored_object_reads_back_decoded_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let archive = local_archive(dir.path());
        let mut packed = Vec::new();
        codec::compress(
            Compression::Gzip,
            6,
            &mut &b"hello, archive"[..],
            &mut packed,
        )
        .unwrap();
        let stored_len = packed.len() as u64;
        archive
            .put_small("srv/x.gz", Bytes::from(packed), &[])
            .await
            .unwrap();
        let counter = ByteCounter::new();
        let text = archive
            .decoded("srv/x.gz", Compression::Gzip)
            .counting(counter.clone())
            .read(|d| {
                let mut s = String::new();
                d.read_to_string(&mut s).map_err(|e| d.corrupt(e))?;
                Ok::<_, StorageError>(s)
            })
            .await
            .unwrap();
        assert_eq!(text, "hello, archive");
        assert_eq!(counter.get(), stored_len);
    }

    #[tokio::test]
    async fn bytes_the_codec_refuses_are_corruption_of_that_key() {
        let dir = tempfile::tempdir().unwrap();
        let archive = local_archive(dir.path());
        archive
            .put_small("srv/bad.gz", Bytes::from_static(b"not gzip at all"), &[])
            .await
            .unwrap();
        let err = archive
            .decoded("srv/bad.gz", Compression::Gzip)
            .read(|d| std::io::copy(d, &mut std::io::sink()).map_err(|e| d.corrupt(e)))
            .await
            .unwrap_err();
        match &err {
            StorageError::Corrupt { key, source } => {
                assert_eq!(key, "srv/bad.gz");
                assert_eq!(source.kind(), io::ErrorKind::InvalidData);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(!err.is_transient());
        assert!(
            err.to_string().starts_with("cannot decompress srv/bad.gz"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_object_is_the_store_error_not_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let archive = local_archive(dir.path());
        let err = archive
            .decoded("srv/none", Compression::None)
            .read(|_| Ok::<_, StorageError>(()))
            .await
            .unwrap_err();
        assert!(!matches!(err, StorageError::Corrupt { .. }), "{err:?}");
        assert!(archive
            .object_reader_if_present("srv/none")
            .await
            .unwrap()
            .is_none());
    }
}
