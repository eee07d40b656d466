//! Byte counting around a reader or writer: progress, the stored sizes recorded in
//! `backup.info`, tar record padding and the part-size checks all come from one
//! of these two wrappers.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A running byte count that several holders share (the thread moving the bytes and
/// the one reporting or deciding on them).
#[derive(Debug, Clone, Default)]
pub struct ByteCounter(Arc<AtomicU64>);

impl ByteCounter {
    /// A new count at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` bytes.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The bytes counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A reader that counts the bytes read through it.
#[derive(Debug)]
pub struct CountingReader<R> {
    inner: R,
    counter: ByteCounter,
}

impl<R> CountingReader<R> {
    /// Counts into a new counter starting at zero.
    pub fn new(inner: R) -> Self {
        Self::with_counter(inner, ByteCounter::new())
    }

    /// Counts into `counter` (shared with whoever watches it).
    pub fn with_counter(inner: R, counter: ByteCounter) -> Self {
        Self { inner, counter }
    }

    /// The bytes read so far.
    pub fn count(&self) -> u64 {
        self.counter.get()
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.add(n as u64);
        Ok(n)
    }
}

/// A writer that counts the bytes that went through to the inner writer.
#[derive(Debug)]
pub struct CountingWriter<W> {
    inner: W,
    counter: ByteCounter,
}

impl<W> CountingWriter<W> {
    /// Counts into a new counter starting at zero.
    pub fn new(inner: W) -> Self {
        Self::with_counter(inner, ByteCounter::new())
    }

    /// Counts into `counter` (shared with whoever watches it).
    pub fn with_counter(inner: W, counter: ByteCounter) -> Self {
        Self { inner, counter }
    }

    /// The bytes written so far.
    pub fn count(&self) -> u64 {
        self.counter.get()
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The wrapped writer, mutably.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counter.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_counts_what_was_read_into_a_shared_counter() {
        let counter = ByteCounter::new();
        let mut r = CountingReader::with_counter(&b"hello, world"[..], counter.clone());
        let mut head = [0u8; 5];
        r.read_exact(&mut head).unwrap();
        assert_eq!(counter.get(), 5);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!((r.count(), counter.get()), (12, 12));
    }

    #[test]
    fn a_writer_counts_only_what_the_inner_writer_took() {
        // A writer that takes at most three bytes a call.
        struct Short(Vec<u8>);
        impl Write for Short {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = buf.len().min(3);
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = CountingWriter::new(Short(Vec::new()));
        assert_eq!(w.write(b"abcdef").unwrap(), 3);
        assert_eq!(w.count(), 3);
        w.write_all(b"ghij").unwrap();
        assert_eq!(w.count(), 7);
        assert_eq!(w.into_inner().0, b"abcghij");
    }
}
