//! The size check of a restored WAL segment.
//!
//! A truncated object decodes without error when it is stored uncompressed (and a
//! compressed stream can hold fewer bytes than a segment), so the decoded bytes are
//! counted and compared with the segment size that the segment's own first page
//! header records (`XLogLongPageHeaderData.xlp_seg_size`, set by `initdb
//! --wal-segsize`). `.partial`, `.history` and `.backup` files are shorter by nature
//! and are not checked. The header itself is read by [`barrelman_core::walpage`];
//! this module only counts the bytes flowing past.

use barrelman_core::walpage::{segment_size_from_header, LONG_HEADER_LEN as LONG_HEADER};
use std::io::{self, Read};

/// A decoded segment whose length is not the one its header records.
#[derive(Debug, thiserror::Error)]
#[error(
    "the WAL segment holds {actual} bytes, but its header records segments of {expected} bytes"
)]
pub struct SegmentSizeMismatch {
    /// The decoded length.
    pub actual: u64,
    /// The segment size the header records.
    pub expected: u64,
}

/// Passes a decoded WAL segment through and fails at its end when its length is
/// not the segment size its first page header records.
pub(crate) struct SegmentSizeCheck<R> {
    inner: R,
    head: [u8; LONG_HEADER],
    head_len: usize,
    total: u64,
}

impl<R: Read> SegmentSizeCheck<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            head: [0; LONG_HEADER],
            head_len: 0,
            total: 0,
        }
    }
}

impl<R: Read> Read for SegmentSizeCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(expected) = segment_size_from_header(&self.head[..self.head_len]) {
                if self.total != expected {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        SegmentSizeMismatch {
                            actual: self.total,
                            expected,
                        },
                    ));
                }
            }
            return Ok(0);
        }
        let take = (LONG_HEADER - self.head_len).min(n);
        self.head[self.head_len..self.head_len + take].copy_from_slice(&buf[..take]);
        self.head_len += take;
        self.total += n as u64;
        Ok(n)
    }
}

/// The mismatch inside an error from the size-checking reader, if that is what it is.
pub fn size_mismatch(err: &io::Error) -> Option<&SegmentSizeMismatch> {
    err.get_ref()?.downcast_ref::<SegmentSizeMismatch>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrelman_core::walpage::XLP_LONG_HEADER;

    /// The first page header of segment `segno` of a cluster with `seg_size`.
    fn header(seg_size: u32, segno: u64) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&0xD110u16.to_le_bytes()); // PostgreSQL 15
        h.extend_from_slice(&(XLP_LONG_HEADER | 0x0004).to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&(segno * u64::from(seg_size)).to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&7_000_000_000_000_000_000u64.to_le_bytes());
        h.extend_from_slice(&seg_size.to_le_bytes());
        h.extend_from_slice(&8192u32.to_le_bytes());
        h
    }

    fn read_all(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        SegmentSizeCheck::new(data).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_segment_of_its_recorded_size_passes_and_a_shorter_or_longer_one_fails() {
        for seg_size in [1u32 << 20, 16 << 20, 64 << 20] {
            let mut seg = header(seg_size, 3);
            seg.resize(seg_size as usize, 0xAB);
            assert_eq!(read_all(&seg).unwrap(), seg);
            for len in [40usize, 8192, seg_size as usize - 1] {
                let e = read_all(&seg[..len]).unwrap_err();
                let m = size_mismatch(&e).expect("a size mismatch");
                assert_eq!((m.actual, m.expected), (len as u64, u64::from(seg_size)));
            }
            seg.push(0);
            assert!(size_mismatch(&read_all(&seg).unwrap_err()).is_some());
        }
    }

    #[test]
    fn bytes_that_are_not_a_long_page_header_are_not_checked() {
        // Too short to tell, not WAL, a page address that is not a segment start.
        assert_eq!(read_all(b"hello").unwrap(), b"hello");
        let noise: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        assert_eq!(read_all(&noise).unwrap(), noise);
        let mut odd = header(16 << 20, 1);
        odd[8] = 1;
        odd.resize(16 << 20, 0);
        assert_eq!(read_all(&odd[..8192]).unwrap(), &odd[..8192]);
    }
}
