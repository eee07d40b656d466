//! The first page header of a WAL segment (`XLogLongPageHeaderData`), as
//! PostgreSQL writes it: what a stored segment says about itself. Used to check a
//! restored segment's size (`xlp_seg_size`) and to tell which database system wrote
//! it (`xlp_sysid`). Only little-endian WAL is read; any other bytes are "not a
//! header" and callers skip their check.

/// Bytes of `XLogLongPageHeaderData` up to and including `xlp_xlog_blcksz`.
pub const LONG_HEADER_LEN: usize = 40;

/// `XLP_LONG_HEADER` in `xlp_info`: the first page of a segment carries it.
pub const XLP_LONG_HEADER: u16 = 0x0002;

/// The fields of a segment's first (long) page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongPageHeader {
    /// `xlp_magic`: the WAL format version (0xD110 for PostgreSQL 15).
    pub magic: u16,
    /// `xlp_info` flag bits.
    pub info: u16,
    /// `xlp_tli`: the timeline of the page.
    pub timeline: u32,
    /// `xlp_pageaddr`: the WAL position of the page.
    pub page_address: u64,
    /// `xlp_sysid`: the database system identifier.
    pub system_identifier: u64,
    /// `xlp_seg_size`: the cluster's WAL segment size (`initdb --wal-segsize`).
    pub segment_size: u32,
    /// `xlp_xlog_blcksz`: the WAL block size.
    pub block_size: u32,
}

impl LongPageHeader {
    /// Reads the header at the start of `bytes`. `None` when there are fewer than
    /// [`LONG_HEADER_LEN`] bytes or the page does not carry the long-header flag.
    /// Layout: magic u16, info u16, tli u32, pageaddr u64, rem_len u32, padding,
    /// sysid u64 at 24, seg_size u32 at 32, xlog_blcksz u32 at 36.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let head = bytes.get(..LONG_HEADER_LEN)?;
        let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
        let header = Self {
            magic: u16_at(0),
            info: u16_at(2),
            timeline: u32_at(4),
            page_address: u64_at(8),
            system_identifier: u64_at(24),
            segment_size: u32_at(32),
            block_size: u32_at(36),
        };
        (header.info & XLP_LONG_HEADER != 0).then_some(header)
    }

    /// The segment size this header records, when every field looks like a real
    /// PostgreSQL segment start: a known magic family, a timeline, power-of-two
    /// segment (1 MiB to 1 GiB) and block (1 to 64 KiB) sizes, and a page address
    /// at a segment boundary. `None` otherwise: then there is nothing to check a
    /// decoded segment's length against.
    fn plausible_segment_size(&self) -> Option<u64> {
        let magic_known = self.magic >> 8 == 0xD0 || self.magic >> 8 == 0xD1;
        let sizes = self.segment_size.is_power_of_two()
            && (1 << 20..=1 << 30).contains(&self.segment_size)
            && self.block_size.is_power_of_two()
            && (1 << 10..=1 << 16).contains(&self.block_size);
        let at_segment_start = sizes
            && self
                .page_address
                .is_multiple_of(u64::from(self.segment_size));
        (magic_known && self.timeline != 0 && at_segment_start)
            .then_some(u64::from(self.segment_size))
    }
}

/// The segment size a WAL segment's first page header records, or `None` when the
/// bytes are not such a header: an unknown magic family, timeline 0, a segment size
/// that is not a power of two from 1 MiB to 1 GiB, a block size that is not one
/// from 1 to 64 KiB, or a page address off a segment boundary.
pub fn segment_size_from_header(head: &[u8]) -> Option<u64> {
    LongPageHeader::parse(head)?.plausible_segment_size()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first page header of segment `segno` of a cluster with `seg_size`.
    fn header(seg_size: u32, segno: u64) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&0xD110u16.to_le_bytes()); // PostgreSQL 15
        h.extend_from_slice(&(XLP_LONG_HEADER | 0x0004).to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&(segno * u64::from(seg_size)).to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&7_000_000_000_000_000_001u64.to_le_bytes());
        h.extend_from_slice(&seg_size.to_le_bytes());
        h.extend_from_slice(&8192u32.to_le_bytes());
        h
    }

    #[test]
    fn reads_every_field_of_a_long_header() {
        let h = LongPageHeader::parse(&header(16 << 20, 3)).unwrap();
        assert_eq!(
            h,
            LongPageHeader {
                magic: 0xD110,
                info: XLP_LONG_HEADER | 0x0004,
                timeline: 1,
                page_address: 3 * (16 << 20),
                system_identifier: 7_000_000_000_000_000_001,
                segment_size: 16 << 20,
                block_size: 8192,
            }
        );
        assert_eq!(h.plausible_segment_size(), Some(16 << 20));
    }

    #[test]
    fn only_plausible_segment_starts_give_a_size() {
        let ok = header(16 << 20, 1);
        // (byte to change, new value, what it breaks)
        for (at, value, what) in [
            (1usize, 0x12u8, "magic of another family"),
            (4, 0, "timeline 0"),
            (8, 1, "page address off a segment boundary"),
            (34, 0x30, "segment size not a power of two"),
            (35, 0x80, "segment size above 1 GiB"),
            (37, 0x30, "block size not a power of two"),
        ] {
            let mut bad = ok.clone();
            bad[at] = value;
            assert_eq!(segment_size_from_header(&bad), None, "{what}");
        }
        let mut short_page = ok.clone();
        short_page[2] = 0x04; // no XLP_LONG_HEADER
        assert_eq!(LongPageHeader::parse(&short_page), None);
        assert_eq!(LongPageHeader::parse(&ok[..39]), None);
        assert_eq!(segment_size_from_header(b"hello"), None);
        for size in [1u32 << 20, 16 << 20, 1 << 30] {
            assert_eq!(
                segment_size_from_header(&header(size, 2)),
                Some(u64::from(size))
            );
        }
        // A smaller segment size than 1 MiB is not PostgreSQL's.
        assert_eq!(segment_size_from_header(&header(1 << 19, 2)), None);
    }
}
