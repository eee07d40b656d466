//! WAL file names as PostgreSQL and barman-cloud spell them.
//!
//! A segment name is `TTTTTTTTLLLLLLLLSSSSSSSS` (timeline, log id, segment within the
//! log, 8 hex digits each). Besides plain segments an archive holds `.partial`
//! segments (written at promotion), `.backup` history files
//! (`<segment>.<offset>.backup`) and timeline history files (`TTTTTTTT.history`).

use std::fmt;

/// What kind of WAL-type file a name denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WalKind {
    /// A complete segment.
    Segment,
    /// A segment cut short at promotion (`<segment>.partial`).
    Partial,
    /// A backup history file (`<segment>.<8 hex>.backup`).
    BackupLabel,
    /// A timeline history file (`<timeline>.history`).
    History,
}

/// A validated WAL-type file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WalName {
    name: String,
}

/// A name that is not a WAL file name (barman exits 3 for these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is an invalid name for a WAL file")]
pub struct InvalidWalName(pub String);

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl WalName {
    /// Validates `name` (a base name, no directory). Hex digits may be in either
    /// case, as barman accepts; the name is kept as given.
    pub fn parse(name: &str) -> Result<Self, InvalidWalName> {
        let bad = || InvalidWalName(name.to_string());
        if name.len() == 16 && name.ends_with(".history") {
            if is_hex(&name[..8]) {
                return Ok(Self { name: name.into() });
            }
            return Err(bad());
        }
        // `get` and not `[..24]`: byte 24 of a name from a bucket or a command line
        // may fall inside a multi-byte character.
        if !name.get(..24).is_some_and(is_hex) {
            return Err(bad());
        }
        match &name[24..] {
            "" | ".partial" => {}
            rest => {
                // `.XXXXXXXX.backup`
                let ok = rest.len() == 16
                    && rest.starts_with('.')
                    && rest.get(1..9).is_some_and(is_hex)
                    && rest.get(9..) == Some(".backup");
                if !ok {
                    return Err(bad());
                }
            }
        }
        Ok(Self { name: name.into() })
    }

    /// Validates the base name of a path such as `pg_wal/000000010000000000000001`.
    pub fn from_path(path: &str) -> Result<Self, InvalidWalName> {
        let base = path.rsplit('/').next().unwrap_or(path);
        Self::parse(base)
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The kind of file.
    pub fn kind(&self) -> WalKind {
        if self.name.ends_with(".history") {
            WalKind::History
        } else if self.name.ends_with(".partial") {
            WalKind::Partial
        } else if self.name.ends_with(".backup") {
            WalKind::BackupLabel
        } else {
            WalKind::Segment
        }
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        u32::from_str_radix(&self.name[..8], 16).expect("validated hex")
    }

    /// The segment this file is about (the first 24 characters), for every kind but
    /// history files.
    pub fn segment(&self) -> Option<SegmentName> {
        match self.kind() {
            WalKind::History => None,
            _ => SegmentName::parse(&self.name[..24]),
        }
    }

    /// The `.partial` file a promotion leaves for this segment (restore serves it
    /// when the segment itself is not archived); `None` for other kinds.
    pub fn partial(&self) -> Option<WalName> {
        (self.kind() == WalKind::Segment).then(|| Self {
            name: format!("{}.partial", self.name),
        })
    }

    /// barman's hash directory: timeline and log id, upper-case (`0000000100000000`);
    /// empty for history files, which live directly under `wals/`.
    pub fn hash_dir(&self) -> String {
        match self.segment() {
            Some(seg) => format!("{:08X}{:08X}", seg.timeline, seg.log),
            None => String::new(),
        }
    }
}

impl fmt::Display for WalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The numeric parts of a segment name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentName {
    /// The timeline (first 8 hex digits).
    pub timeline: u32,
    /// The log id (next 8 hex digits).
    pub log: u32,
    /// The segment within the log (last 8 hex digits).
    pub seg: u32,
}

impl SegmentName {
    /// Parses exactly 24 hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 24 || !is_hex(s) {
            return None;
        }
        let part = |r: std::ops::Range<usize>| u32::from_str_radix(&s[r], 16).ok();
        Some(Self {
            timeline: part(0..8)?,
            log: part(8..16)?,
            seg: part(16..24)?,
        })
    }

    /// The next segment on the same timeline for `segment_size` bytes per segment.
    /// Log ids hold 4 GiB of WAL, i.e. `0x1_0000_0000 / segment_size` segments.
    ///
    /// The last segment of the 64-bit WAL space (log `FFFFFFFF`), which PostgreSQL
    /// never reaches but a name from a bucket or a command line can give, wraps to
    /// log 0 instead of overflowing: callers walk bounded ranges.
    pub fn next(self, segment_size: u64) -> Self {
        let per_log = segments_per_log(segment_size);
        if u64::from(self.seg) + 1 >= per_log {
            Self {
                log: self.log.wrapping_add(1),
                seg: 0,
                ..self
            }
        } else {
            Self {
                seg: self.seg + 1,
                ..self
            }
        }
    }
}

/// How many segments one log id holds.
pub(crate) fn segments_per_log(segment_size: u64) -> u64 {
    0x1_0000_0000 / segment_size.max(1)
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}{:08X}{:08X}", self.timeline, self.log, self.seg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_has_a_partial_sibling_and_other_kinds_none() {
        let seg = WalName::parse("000000010000000000000004").unwrap();
        let partial = seg.partial().unwrap();
        assert_eq!(partial.as_str(), "000000010000000000000004.partial");
        assert_eq!(WalName::parse(partial.as_str()), Ok(partial.clone()));
        assert_eq!(partial.kind(), WalKind::Partial);
        assert_eq!(partial.partial(), None);
        assert_eq!(WalName::parse("00000002.history").unwrap().partial(), None);
        assert_eq!(
            WalName::parse("000000010000000000000004.00000028.backup")
                .unwrap()
                .partial(),
            None
        );
    }

    #[test]
    fn accepts_every_wal_kind() {
        let cases = [
            (
                "000000010000000000000004",
                WalKind::Segment,
                "0000000100000000",
            ),
            (
                "000000010000000000000006.partial",
                WalKind::Partial,
                "0000000100000000",
            ),
            (
                "000000010000000000000004.00000028.backup",
                WalKind::BackupLabel,
                "0000000100000000",
            ),
            ("00000002.history", WalKind::History, ""),
            (
                "0000000a000000FF000000ab",
                WalKind::Segment,
                "0000000A000000FF",
            ),
        ];
        for (name, kind, hash) in cases {
            let w = WalName::parse(name).unwrap();
            assert_eq!(w.kind(), kind, "{name}");
            assert_eq!(w.hash_dir(), hash, "{name}");
        }
        assert_eq!(WalName::parse("0000000A.history").unwrap().timeline(), 10);
    }

    #[test]
    fn rejects_other_names() {
        for name in [
            "",
            "00000001000000000000000",
            "0000000100000000000000045",
            "00000001000000000000000G",
            "000000010000000000000004.gz",
            "000000010000000000000004.0000028.backup",
            "000000010000000000000004.00000028.bakup",
            "0000001.history",
            "README",
        ] {
            assert!(WalName::parse(name).is_err(), "{name}");
        }
        assert_eq!(
            WalName::from_path("pg_wal/000000010000000000000004")
                .unwrap()
                .as_str(),
            "000000010000000000000004"
        );
    }

    #[test]
    fn next_segment_wraps_per_segment_size() {
        let s = SegmentName::parse("0000000100000000000000FF").unwrap();
        assert_eq!(s.next(16 << 20).to_string(), "000000010000000100000000");
        let s = SegmentName::parse("000000010000000000000003").unwrap();
        assert_eq!(s.next(1 << 30).to_string(), "000000010000000100000000");
        assert_eq!(s.next(64 << 20).to_string(), "000000010000000000000004");
    }
}
