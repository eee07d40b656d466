//! Compression kinds barman-cloud uses for WAL objects, their object-name suffixes
//! and their default levels. Readers decide the codec from the suffix only, never
//! from magic bytes (barman-cloud does the same), so the suffix table is the format.

use std::fmt;
use std::str::FromStr;

/// A WAL compression algorithm, as chosen by `barman-cloud-wal-archive`'s flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Raw bytes, no suffix.
    None,
    /// `.gz`, one gzip member.
    Gzip,
    /// `.bz2`.
    Bzip2,
    /// `.xz`, the xz container.
    Xz,
    /// `.snappy`, the snappy *framing* format.
    Snappy,
    /// `.zst`, one zstd frame.
    Zstd,
    /// `.lz4`, one LZ4 frame.
    Lz4,
}

/// Every kind, in the order barman-cloud lists its flags.
pub const ALL_COMPRESSIONS: [Compression; 7] = [
    Compression::None,
    Compression::Gzip,
    Compression::Bzip2,
    Compression::Xz,
    Compression::Snappy,
    Compression::Zstd,
    Compression::Lz4,
];

/// A `--compression-level` that is not a number nor `low`/`medium`/`high`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid compression level '{0}': use an integer or one of low, medium, high")]
pub struct InvalidLevel(pub String);

/// An unknown compression name (ObjectStore `wal.compression` or a flag value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression '{0}': use one of gzip, bzip2, xz, snappy, zstd, lz4")]
pub struct UnknownCompression(pub String);

/// What the user asked for with `--compression-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelRequest {
    Low,
    Medium,
    High,
    Exact(i32),
}

impl FromStr for LevelRequest {
    type Err = InvalidLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            other => other
                .parse::<i32>()
                .map(Self::Exact)
                .map_err(|_| InvalidLevel(s.to_string())),
        }
    }
}

impl Compression {
    /// The object-name suffix, with its dot (empty for [`Compression::None`]).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Gzip => ".gz",
            Self::Bzip2 => ".bz2",
            Self::Xz => ".xz",
            Self::Snappy => ".snappy",
            Self::Zstd => ".zst",
            Self::Lz4 => ".lz4",
        }
    }

    /// The kind whose suffix is exactly `suffix` (with its dot; "" is None).
    pub fn from_suffix(suffix: &str) -> Option<Self> {
        ALL_COMPRESSIONS.into_iter().find(|c| c.suffix() == suffix)
    }

    /// Splits a known compression suffix off an object's base name:
    /// `"000000010000000000000001.gz"` -> `("000000010000000000000001", Gzip)`.
    /// A name without a known suffix is returned whole with [`Compression::None`].
    pub fn split_suffix(name: &str) -> (&str, Self) {
        for c in ALL_COMPRESSIONS {
            let sfx = c.suffix();
            if !sfx.is_empty() {
                if let Some(stem) = name.strip_suffix(sfx) {
                    return (stem, c);
                }
            }
        }
        (name, Self::None)
    }

    /// The name used in ObjectStore YAML and in barman's long flags (`--gzip`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Bzip2 => "bzip2",
            Self::Xz => "xz",
            Self::Snappy => "snappy",
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
        }
    }

    /// barman-cloud's default level for WAL compression.
    pub fn default_level(self) -> i32 {
        self.level(LevelRequest::Medium).0
    }

    /// `(min, max)` levels the algorithm accepts; `None` and snappy have no level.
    pub fn level_range(self) -> Option<(i32, i32)> {
        match self {
            Self::None | Self::Snappy => None,
            Self::Gzip | Self::Bzip2 => Some((1, 9)),
            Self::Xz => Some((0, 9)),
            Self::Zstd => Some((-22, 22)),
            Self::Lz4 => Some((0, 16)),
        }
    }

    /// Resolves a level request to the level to use, clamping out-of-range integers
    /// like barman does. The flag says whether clamping happened (callers warn).
    pub fn level(self, req: LevelRequest) -> (i32, bool) {
        let (low, medium, high) = match self {
            Self::None | Self::Snappy => (0, 0, 0),
            Self::Gzip => (1, 6, 9),
            Self::Bzip2 => (1, 5, 9),
            Self::Xz => (1, 3, 5),
            Self::Zstd => (1, 4, 9),
            Self::Lz4 => (0, 6, 10),
        };
        match req {
            LevelRequest::Low => (low, false),
            LevelRequest::Medium => (medium, false),
            LevelRequest::High => (high, false),
            LevelRequest::Exact(n) => match self.level_range() {
                None => (0, false),
                Some((min, max)) => {
                    let clamped = n.clamp(min, max);
                    (clamped, clamped != n)
                }
            },
        }
    }
}

impl FromStr for Compression {
    type Err = UnknownCompression;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_COMPRESSIONS
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownCompression(s.to_string()))
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_round_trip() {
        for c in ALL_COMPRESSIONS {
            assert_eq!(Compression::from_suffix(c.suffix()), Some(c));
            let name = format!("000000010000000000000001{}", c.suffix());
            assert_eq!(
                Compression::split_suffix(&name),
                ("000000010000000000000001", c)
            );
        }
        assert_eq!(Compression::from_suffix(".zstd"), None);
    }

    #[test]
    fn levels_follow_barman() {
        assert_eq!(Compression::Gzip.default_level(), 6);
        assert_eq!(Compression::Bzip2.default_level(), 5);
        assert_eq!(Compression::Xz.default_level(), 3);
        assert_eq!(Compression::Zstd.default_level(), 4);
        assert_eq!(Compression::Lz4.default_level(), 6);
        assert_eq!(Compression::Gzip.level(LevelRequest::Exact(42)), (9, true));
        assert_eq!(
            Compression::Zstd.level(LevelRequest::Exact(-30)),
            (-22, true)
        );
        assert_eq!(Compression::Lz4.level(LevelRequest::High), (10, false));
        assert_eq!("HIGH".parse::<LevelRequest>(), Ok(LevelRequest::High));
        assert!("fast".parse::<LevelRequest>().is_err());
    }
}
