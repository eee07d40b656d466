//! Log sequence numbers and the WAL segment that holds them.

use crate::wal::{segments_per_log, SegmentName};
use std::fmt;
use std::str::FromStr;

/// A WAL position, written `X/X` in upper-case hex like PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// Text that is not `X/X` hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN '{0}': expected two hex numbers like 0/4000028")]
pub struct InvalidLsn(pub String);

impl FromStr for Lsn {
    type Err = InvalidLsn;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hi, lo) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| InvalidLsn(s.into()))?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| InvalidLsn(s.into()))?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| InvalidLsn(s.into()))?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Lsn {
    /// The segment holding this position on `timeline`.
    pub fn segment(self, timeline: u32, segment_size: u64) -> SegmentName {
        let segno = self.0 / segment_size;
        let per_log = segments_per_log(segment_size);
        SegmentName {
            timeline,
            log: (segno / per_log) as u32,
            seg: (segno % per_log) as u32,
        }
    }

    /// The byte offset of this position inside its segment.
    pub fn offset(self, segment_size: u64) -> u64 {
        self.0 % segment_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_locates() {
        let l: Lsn = "0/4000028".parse().unwrap();
        assert_eq!(l.to_string(), "0/4000028");
        assert_eq!(
            l.segment(1, 16 << 20).to_string(),
            "000000010000000000000004"
        );
        assert_eq!(l.offset(16 << 20), 40);
        let l: Lsn = "1/A0000000".parse().unwrap();
        assert_eq!(
            l.segment(2, 16 << 20).to_string(),
            "0000000200000001000000A0"
        );
        assert_eq!(
            l.segment(2, 1 << 30).to_string(),
            "000000020000000100000002"
        );
        assert!("04000028".parse::<Lsn>().is_err());
    }
}
