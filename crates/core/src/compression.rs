//! Compression kinds barman-cloud uses for WAL objects and base backups, their
//! object-name suffixes and their default levels. Readers decide the codec from the
//! suffix only, never from magic bytes (barman-cloud does the same), so the suffix
//! table is the format.
//!
//! Which codecs a base backup may use is decided by one function,
//! [`Compression::tar_suffix`]; part names ([`crate::layout::TarPart`]) and the
//! "use one of ..." messages are built from it and from [`ALL_COMPRESSIONS`], so a
//! new codec cannot be written by one path and missed by another.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

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
#[error("unknown compression '{0}': use one of {choices}", choices = wal_choices())]
pub struct UnknownCompression(pub String);

/// A codec barman-cloud cannot read back from a base backup (xz, zstd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} cannot be used for base backups: use {choices}", choices = backup_choices())]
pub struct NotForBackups(pub Compression);

/// The codecs that compress, in flag order: `gzip, bzip2, xz, snappy, zstd, lz4`.
/// Every one of them can compress WAL.
pub(crate) fn wal_choices() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        compressing()
            .map(Compression::name)
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// `use one of bzip2, gzip, lz4, snappy, xz, zstd`: [`wal_choices`] in
/// alphabetical order, as the ObjectStore check words its hint.
pub(crate) fn sorted_wal_choice_hint() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut names: Vec<&str> = compressing().map(Compression::name).collect();
        names.sort_unstable();
        format!("use one of {}", names.join(", "))
    })
}

/// The codecs a base backup may use: `gzip, bzip2, snappy, lz4 or none`.
pub(crate) fn backup_choices() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut names: Vec<&str> = compressing()
            .filter(|c| c.tar_suffix().is_some())
            .map(Compression::name)
            .collect();
        if Compression::None.tar_suffix().is_some() {
            names.push(Compression::None.name());
        }
        match names.split_last() {
            Some((last, init)) if !init.is_empty() => format!("{} or {last}", init.join(", ")),
            _ => names.join(""),
        }
    })
}

fn compressing() -> impl Iterator<Item = Compression> {
    ALL_COMPRESSIONS
        .into_iter()
        .filter(|c| *c != Compression::None)
}

/// What the user asked for with `--compression-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelRequest {
    /// barman's `low`: the fastest level.
    Low,
    /// barman's `medium`: the default.
    Medium,
    /// barman's `high`: the smallest output.
    High,
    /// An explicit level, clamped into the codec's range.
    Exact(i32),
}

impl LevelRequest {
    /// The named levels, `low`, `medium` and `high` (lowercase, as barman spells
    /// them); `None` for anything else.
    pub fn named(word: &str) -> Option<Self> {
        match word {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            _ => None,
        }
    }
}

impl FromStr for LevelRequest {
    type Err = InvalidLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Self::named(&lower).map(Ok).unwrap_or_else(|| {
            lower
                .parse::<i32>()
                .map(Self::Exact)
                .map_err(|_| InvalidLevel(s.to_string()))
        })
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

    /// The suffix of a base backup's tar parts with this codec (`.tar`, `.tar.gz`),
    /// or `None` when barman-cloud cannot restore a backup compressed with it (xz
    /// and zstd are WAL-only). This is the one list of backup codecs.
    pub fn tar_suffix(self) -> Option<&'static str> {
        match self {
            Self::None => Some(".tar"),
            Self::Gzip => Some(".tar.gz"),
            Self::Bzip2 => Some(".tar.bz2"),
            Self::Snappy => Some(".tar.snappy"),
            Self::Lz4 => Some(".tar.lz4"),
            Self::Xz | Self::Zstd => None,
        }
    }

    /// `self` if base backups may use it, else the error that names the choices.
    pub fn for_backups(self) -> Result<Self, NotForBackups> {
        match self.tar_suffix() {
            Some(_) => Ok(self),
            None => Err(NotForBackups(self)),
        }
    }

    /// barman-cloud's default level for WAL compression.
    pub fn default_level(self) -> i32 {
        self.level(LevelRequest::Medium).0
    }

    /// barman-cloud's default level for a base backup's tar parts: Python's
    /// `tarfile` defaults (gzip 6 via barman, bzip2 9), else the WAL default.
    pub fn default_backup_level(self) -> i32 {
        match self {
            Self::Gzip => 6,
            Self::Bzip2 => 9,
            other => other.default_level(),
        }
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
    fn choice_messages_are_built_from_the_codec_list() {
        assert_eq!(wal_choices(), "gzip, bzip2, xz, snappy, zstd, lz4");
        assert_eq!(
            sorted_wal_choice_hint(),
            "use one of bzip2, gzip, lz4, snappy, xz, zstd"
        );
        assert_eq!(backup_choices(), "gzip, bzip2, snappy, lz4 or none");
        assert_eq!(
            "brotli".parse::<Compression>().unwrap_err().to_string(),
            "unknown compression 'brotli': use one of gzip, bzip2, xz, snappy, zstd, lz4"
        );
        assert_eq!(
            Compression::Zstd.for_backups().unwrap_err().to_string(),
            "zstd cannot be used for base backups: use gzip, bzip2, snappy, lz4 or none"
        );
        for c in ALL_COMPRESSIONS {
            // Every codec named in a message parses, and only backup codecs pass.
            assert_eq!(c.name().parse::<Compression>(), Ok(c));
            assert_eq!(c.for_backups().is_ok(), backup_choices().contains(c.name()));
            if let Some(tar) = c.tar_suffix() {
                assert_eq!(tar, format!(".tar{}", c.suffix()));
            }
        }
        assert_eq!(Compression::Gzip.default_backup_level(), 6);
        assert_eq!(Compression::Bzip2.default_backup_level(), 9);
        assert_eq!(Compression::Lz4.default_backup_level(), 6);
        // The ObjectStore check words the same list alphabetically.
        let manifest = "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nmetadata:\n  name: s\nspec:\n  configuration:\n    destinationPath: s3://b/p\n    wal:\n      compression: brotli\n";
        assert_eq!(
            crate::objectstore::ObjectStore::from_yaml(manifest)
                .unwrap_err()
                .to_string(),
            "spec.configuration.wal.compression is 'brotli': use one of bzip2, gzip, lz4, snappy, xz, zstd"
        );
        assert_eq!(LevelRequest::named("medium"), Some(LevelRequest::Medium));
        assert_eq!(LevelRequest::named("MEDIUM"), None);
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
