//! Where things live in a barman-cloud archive: destination URLs and object keys.
//!
//! All keys are `<path>/<server_name>/...` with path-join semantics (an empty path
//! gives `<server_name>/...`), `/` as the delimiter. WAL segments sit under a hash
//! directory (`wals/<TLI><LOG>/`), history files directly under `wals/`. A base
//! backup is a directory `base/<backup id>/` holding `backup.info`, the keep marker
//! `annotations/keep` and its tar parts ([`TarPart`]).

use crate::compression::Compression;
use crate::wal::WalName;
use std::fmt;

/// The object store behind a destination URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// `s3://BUCKET[/PATH]`, AWS S3 or any S3-compatible store.
    S3,
    /// `file:///DIR[/PATH]`, a local directory (barrelman only; demos and tests).
    Local,
    /// `gs://BUCKET[/PATH]`.
    Gcs,
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER[/PATH]` or the emulator form
    /// `http(s)://HOST:PORT/ACCOUNT/CONTAINER[/PATH]`.
    Azure {
        /// The storage account (from the host, or the first path segment).
        account: String,
        /// `Some(base URL)` for the emulator form.
        endpoint: Option<String>,
    },
}

/// A parsed `destinationPath` / `DEST` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Which object store the URL names.
    pub provider: Provider,
    /// Bucket or container; for `file://`, the local directory that acts as the root.
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
    pub path: String,
    /// The URL as given, for messages.
    pub url: String,
}

/// A destination URL barrelman cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid destination URL '{url}': {reason}")]
pub struct InvalidDestination {
    /// The URL as given.
    pub url: String,
    /// Why it cannot be used.
    pub reason: String,
}

impl Destination {
    /// Parses a destination URL. `azure_emulator` allows the path-style Azure form
    /// (barman allows it only when `AZURE_STORAGE_CONNECTION_STRING` is set).
    pub fn parse(url: &str, azure_emulator: bool) -> Result<Self, InvalidDestination> {
        let err = |reason: &str| InvalidDestination {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| err("expected a URL such as s3://bucket/path or file:///dir"))?;
        let clean = |p: &str| p.trim_matches('/').to_string();
        match scheme.to_ascii_lowercase().as_str() {
            "s3" | "gs" => {
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                if host.is_empty() {
                    return Err(err("the bucket name (the URL's host part) is empty"));
                }
                Ok(Self {
                    provider: if scheme.eq_ignore_ascii_case("s3") {
                        Provider::S3
                    } else {
                        Provider::Gcs
                    },
                    bucket: host.to_string(),
                    path: clean(path),
                    url: url.to_string(),
                })
            }
            "file" => {
                if !rest.starts_with('/') {
                    return Err(err("a file URL needs an absolute path: file:///dir"));
                }
                let dir = rest.trim_end_matches('/');
                Ok(Self {
                    provider: Provider::Local,
                    bucket: if dir.is_empty() {
                        "/".into()
                    } else {
                        dir.into()
                    },
                    path: String::new(),
                    url: url.to_string(),
                })
            }
            "http" | "https" => {
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                let mut segs = path.split('/').filter(|s| !s.is_empty());
                if let Some(account) = host
                    .strip_suffix(".blob.core.windows.net")
                    .filter(|a| !a.is_empty())
                {
                    let container = segs
                        .next()
                        .ok_or_else(|| err("the Azure container name is missing"))?;
                    return Ok(Self {
                        provider: Provider::Azure {
                            account: account.to_string(),
                            endpoint: None,
                        },
                        bucket: container.to_string(),
                        path: segs.collect::<Vec<_>>().join("/"),
                        url: url.to_string(),
                    });
                }
                if host == "console.cloud.google.com" {
                    let p = path.strip_prefix("storage/browser/").ok_or_else(|| {
                        err("expected https://console.cloud.google.com/storage/browser/BUCKET")
                    })?;
                    let (bucket, p) = p.split_once('/').unwrap_or((p, ""));
                    return Ok(Self {
                        provider: Provider::Gcs,
                        bucket: bucket.to_string(),
                        path: clean(p),
                        url: url.to_string(),
                    });
                }
                if !azure_emulator {
                    return Err(err(
                        "an http(s) URL must be an Azure blob URL (ACCOUNT.blob.core.windows.net); \
                         the emulator form needs AZURE_STORAGE_CONNECTION_STRING",
                    ));
                }
                let account = segs
                    .next()
                    .ok_or_else(|| err("the Azure account is missing"))?;
                let container = segs
                    .next()
                    .ok_or_else(|| err("the Azure container name is missing"))?;
                Ok(Self {
                    provider: Provider::Azure {
                        account: account.to_string(),
                        endpoint: Some(format!("{scheme}://{host}/{account}")),
                    },
                    bucket: container.to_string(),
                    path: segs.collect::<Vec<_>>().join("/"),
                    url: url.to_string(),
                })
            }
            _ => Err(err(
                "unsupported scheme: use s3://, gs://, https:// (Azure) or file://",
            )),
        }
    }
}

/// A server name or destination path that cannot become object keys that both
/// barman-cloud and barrelman read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} '{}': {reason}", value.escape_debug())]
pub struct InvalidName {
    /// `server name` or `destination path`.
    pub what: &'static str,
    /// The value as given.
    pub value: String,
    /// Why it cannot be used, and what to use instead.
    pub reason: &'static str,
}

/// Checks one `/`-separated part of a key prefix. Keys are stored as the raw UTF-8
/// string barman writes (any character, `~ % # [ ]` and non-ASCII included), except
/// what object stores and local directories cannot hold or would resolve: control
/// characters, and empty, `.` or `..` segments.
fn check_segments(what: &'static str, value: &str) -> Result<(), InvalidName> {
    let bad = |reason| {
        Err(InvalidName {
            what,
            value: value.to_string(),
            reason,
        })
    };
    if value.chars().any(|c| c.is_control()) {
        return bad("control characters (newline, tab, ...) cannot be part of an object key; use printable characters");
    }
    for segment in value.split('/') {
        match segment {
            "" => return bad(
                "an empty segment ('//') cannot be part of an object key; remove the doubled '/'",
            ),
            "." | ".." => {
                return bad(
                    "'.' and '..' segments would be resolved as relative paths; use another name",
                )
            }
            _ => {}
        }
    }
    Ok(())
}

/// One server's area of an archive: `<path>/<server_name>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLayout {
    root: String,
}

impl ServerLayout {
    /// [`ServerLayout::new`] after checking that `path` and `server_name` give keys
    /// that can be stored and read back unchanged.
    pub fn checked(path: &str, server_name: &str) -> Result<Self, InvalidName> {
        let reason = if server_name.is_empty() {
            Some("a server name cannot be empty")
        } else if server_name.contains('/') {
            Some("a server name cannot contain '/'; use a name without it")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(InvalidName {
                what: "server name",
                value: server_name.to_string(),
                reason,
            });
        }
        check_segments("server name", server_name)?;
        let path = path.trim_matches('/');
        if !path.is_empty() {
            if path.contains(['#', '?']) {
                // barman-cloud parses the destination with urlparse, which ends the
                // path at '?' or '#': its archive would be under another prefix.
                return Err(InvalidName {
                    what: "destination path",
                    value: path.to_string(),
                    reason: "barman-cloud ends a URL's path at '?' or '#', so it would use another prefix; use a path without them",
                });
            }
            check_segments("destination path", path)?;
        }
        Ok(Self::new(path, server_name))
    }

    /// The layout of `server_name` under the destination's path.
    pub fn new(path: &str, server_name: &str) -> Self {
        let path = path.trim_matches('/');
        let root = if path.is_empty() {
            server_name.to_string()
        } else {
            format!("{path}/{server_name}")
        };
        Self { root }
    }

    /// `<path>/<server>`.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `<path>/<server>/wals`: every WAL-type object is below it.
    pub fn wals_prefix(&self) -> String {
        format!("{}/wals", self.root)
    }

    /// `<path>/<server>/base`: backups.
    pub fn base_prefix(&self) -> String {
        format!("{}/base", self.root)
    }

    /// The directory that holds `wal`: the hash dir, or `wals/` for history files.
    pub fn wal_dir(&self, wal: &WalName) -> String {
        let hash = wal.hash_dir();
        if hash.is_empty() {
            self.wals_prefix()
        } else {
            format!("{}/{}", self.wals_prefix(), hash)
        }
    }

    /// The key of `wal` stored with `compression`.
    pub fn wal_key(&self, wal: &WalName, compression: Compression) -> String {
        format!("{}/{}{}", self.wal_dir(wal), wal, compression.suffix())
    }

    /// `<path>/<server>/base/<backup_id>`: every object of one backup is below it.
    pub fn backup_dir(&self, backup_id: &str) -> String {
        format!("{}/{backup_id}", self.base_prefix())
    }

    /// `<path>/<server>/base/<backup_id>/backup.info`: the backup's catalog entry.
    pub fn backup_info_key(&self, backup_id: &str) -> String {
        format!("{}/{BACKUP_INFO}", self.backup_dir(backup_id))
    }

    /// `<path>/<server>/base/<backup_id>/annotations/keep`: the keep marker, whose
    /// body is the recovery target (`full` or `standalone`).
    pub fn keep_key(&self, backup_id: &str) -> String {
        format!("{}/{KEEP_MARKER}", self.backup_dir(backup_id))
    }

    /// The key of one tar part of a backup.
    pub fn tar_part_key(&self, backup_id: &str, part: &TarPart) -> String {
        format!("{}/{}", self.backup_dir(backup_id), part.file_name())
    }

    /// Where `key` sits under `base/`: the backup id and the rest of the key below
    /// the backup's directory (`backup.info`, `data_0001.tar.gz`,
    /// `annotations/keep`). `None` for keys outside any backup directory.
    pub fn backup_object<'k>(&self, key: &'k str) -> Option<(&'k str, &'k str)> {
        let rest = key
            .strip_prefix(self.base_prefix().as_str())?
            .strip_prefix('/')?;
        rest.split_once('/')
    }

    /// A prefix that every stored variant of `wal` starts with (and, for segments,
    /// also its `.partial` and `.backup` siblings, which callers filter out).
    pub fn wal_variants_prefix(&self, wal: &WalName) -> String {
        format!("{}/{}", self.wal_dir(wal), wal)
    }
}

/// The file name of a backup's catalog entry inside its directory.
pub const BACKUP_INFO: &str = "backup.info";

/// The keep marker's path inside a backup's directory.
const KEEP_MARKER: &str = "annotations/keep";

/// The directory of a backup's annotations (the keep marker) inside its directory:
/// annotations are not part of the backup's data and outlive a tar-part clean-up.
const ANNOTATIONS_DIR: &str = "annotations/";

/// True when `key` is a keep marker (`.../annotations/keep`).
pub fn is_keep_marker(key: &str) -> bool {
    key.strip_suffix(KEEP_MARKER)
        .is_some_and(|head| head.ends_with('/'))
}

/// True when `key` lies in a backup's annotations directory.
pub fn is_annotation(key: &str) -> bool {
    key.contains(&format!("/{ANNOTATIONS_DIR}"))
}

/// The tar item that holds PGDATA; tablespaces are items named by their oid.
pub const DATA_ITEM: &str = "data";

/// One tar part of a base backup: `data.tar.gz`, `data_0001.tar.gz`,
/// `16391_0002.tar`. An item (`data` or a tablespace oid) is written as parts
/// numbered from 0; part 0 has no number in its name. The suffix after `.tar` is
/// the codec's ([`Compression::tar_suffix`]), and only codecs barman-cloud reads
/// for backups are recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarPart {
    /// `data` or a tablespace oid.
    pub item: String,
    /// The part number within the item, from 0.
    pub index: usize,
    /// The codec its name's suffix names.
    pub compression: Compression,
}

impl TarPart {
    /// Reads a part's file name (the last key segment). `None` for anything else:
    /// `backup.info`, unknown extensions (`data.tar.zst`), other files.
    pub fn parse(file: &str) -> Option<Self> {
        let (stem, ext) = file.split_once(".tar")?;
        let compression = crate::compression::ALL_COMPRESSIONS
            .into_iter()
            .find(|c| c.tar_suffix().is_some() && c.suffix() == ext)?;
        match stem.rsplit_once('_') {
            Some((item, n)) if n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()) => {
                Some(Self {
                    item: item.to_string(),
                    index: n.parse().ok()?,
                    compression,
                })
            }
            _ => Some(Self {
                item: stem.to_string(),
                index: 0,
                compression,
            }),
        }
    }

    /// The name without `.tar` and codec suffix: `data`, `data_0001`.
    pub fn stem(item: &str, index: usize) -> String {
        if index == 0 {
            item.to_string()
        } else {
            format!("{item}_{index:04}")
        }
    }

    /// The part's file name: `data.tar.gz`, `16391_0002.tar`.
    pub fn file_name(&self) -> String {
        format!(
            "{}.tar{}",
            Self::stem(&self.item, self.index),
            self.compression.suffix()
        )
    }
}

/// A key under `wals/` recognised as a WAL-type object: a WAL name plus at most one
/// known compression suffix. Anything else (`README`, `*.tmp`) is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWal {
    /// The WAL file's name.
    pub name: WalName,
    /// The codec its suffix names.
    pub compression: Compression,
}

impl StoredWal {
    /// Recognises the base name of an object key.
    pub fn from_key(key: &str) -> Option<Self> {
        let base = key.rsplit('/').next().unwrap_or(key);
        if let Ok(name) = WalName::parse(base) {
            return Some(Self {
                name,
                compression: Compression::None,
            });
        }
        let (stem, compression) = Compression::split_suffix(base);
        if compression == Compression::None {
            return None;
        }
        WalName::parse(stem)
            .ok()
            .map(|name| Self { name, compression })
    }
}

impl fmt::Display for StoredWal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, self.compression.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_destinations() {
        let d = Destination::parse("s3://bkt/pfx/sub/", false).unwrap();
        assert_eq!(
            (d.provider, d.bucket.as_str(), d.path.as_str()),
            (Provider::S3, "bkt", "pfx/sub")
        );
        let d = Destination::parse("s3://bkt", false).unwrap();
        assert_eq!(d.path, "");
        assert!(Destination::parse("s3:///x", false).is_err());
        assert!(Destination::parse("bkt/x", false).is_err());
        let d = Destination::parse("file:///var/archive/", false).unwrap();
        assert_eq!(
            (d.provider, d.bucket.as_str()),
            (Provider::Local, "/var/archive")
        );
        let d = Destination::parse("gs://b/p", false).unwrap();
        assert_eq!(
            (d.provider, d.bucket.as_str(), d.path.as_str()),
            (Provider::Gcs, "b", "p")
        );
        let d = Destination::parse("https://acct.blob.core.windows.net/cont/a/b", false).unwrap();
        assert_eq!(d.bucket, "cont");
        assert_eq!(d.path, "a/b");
        assert!(Destination::parse("http://127.0.0.1:10000/devstoreaccount1/c", false).is_err());
        let d = Destination::parse("http://127.0.0.1:10000/devstoreaccount1/c/p", true).unwrap();
        assert_eq!(
            d.provider,
            Provider::Azure {
                account: "devstoreaccount1".into(),
                endpoint: Some("http://127.0.0.1:10000/devstoreaccount1".into())
            }
        );
    }

    #[test]
    fn builds_barman_keys() {
        let l = ServerLayout::new("pfx", "srv1");
        let seg = WalName::parse("000000010000000000000004").unwrap();
        assert_eq!(
            l.wal_key(&seg, Compression::Gzip),
            "pfx/srv1/wals/0000000100000000/000000010000000000000004.gz"
        );
        let hist = WalName::parse("00000002.history").unwrap();
        assert_eq!(
            l.wal_key(&hist, Compression::Xz),
            "pfx/srv1/wals/00000002.history.xz"
        );
        let l = ServerLayout::new("", "srv1");
        assert_eq!(l.wals_prefix(), "srv1/wals");
        let l = ServerLayout::new("pfx/", "srv1");
        assert_eq!(l.base_prefix(), "pfx/srv1/base");
    }

    #[test]
    fn builds_and_reads_backup_keys() {
        let l = ServerLayout::new("pfx", "srv1");
        let id = "20260101T000000";
        assert_eq!(l.backup_dir(id), "pfx/srv1/base/20260101T000000");
        assert_eq!(
            l.backup_info_key(id),
            "pfx/srv1/base/20260101T000000/backup.info"
        );
        assert_eq!(
            l.keep_key(id),
            "pfx/srv1/base/20260101T000000/annotations/keep"
        );
        assert_eq!(
            l.backup_object(&l.keep_key(id)),
            Some((id, "annotations/keep"))
        );
        assert_eq!(
            l.backup_object("pfx/srv1/base/x/data.tar"),
            Some(("x", "data.tar"))
        );
        assert_eq!(l.backup_object("pfx/srv1/base/loose"), None);
        assert_eq!(l.backup_object("pfx/srv1/basement/x/y"), None);
        assert_eq!(l.backup_object("pfx/srv1/wals/x/y"), None);
        assert!(is_keep_marker(&l.keep_key(id)));
        assert!(!is_keep_marker("pfx/srv1/base/x/notannotations/keep"));
        assert!(is_annotation(&l.keep_key(id)));
        assert!(!is_annotation(&l.backup_info_key(id)));
        let part = TarPart {
            item: "16391".into(),
            index: 2,
            compression: Compression::Gzip,
        };
        assert_eq!(
            l.tar_part_key(id, &part),
            "pfx/srv1/base/20260101T000000/16391_0002.tar.gz"
        );
    }

    #[test]
    fn tar_part_names_round_trip() {
        for (file, item, index, compression) in [
            ("data.tar", "data", 0, Compression::None),
            ("data.tar.gz", "data", 0, Compression::Gzip),
            ("data_0001.tar.lz4", "data", 1, Compression::Lz4),
            ("data_0012.tar.bz2", "data", 12, Compression::Bzip2),
            ("16391_0002.tar", "16391", 2, Compression::None),
            ("16391.tar.snappy", "16391", 0, Compression::Snappy),
            // Not four digits: part of the item's name.
            ("my_item_12.tar", "my_item_12", 0, Compression::None),
        ] {
            let p = TarPart::parse(file).unwrap_or_else(|| panic!("{file}"));
            assert_eq!(
                (p.item.as_str(), p.index, p.compression),
                (item, index, compression),
                "{file}"
            );
            assert_eq!(p.file_name(), file);
        }
        for other in [
            "backup.info",
            "data.tar.zst",
            "data.tar.xz",
            "data.tar.gz.tmp",
            "data",
            "annotations",
        ] {
            assert_eq!(TarPart::parse(other), None, "{other}");
        }
        assert_eq!(TarPart::stem("data", 0), "data");
        assert_eq!(TarPart::stem("data", 3), "data_0003");
    }

    #[test]
    fn every_backup_codec_names_parts_that_parse_back() {
        // A codec allowed for backups must be recognised by restore.
        for c in crate::compression::ALL_COMPRESSIONS {
            let part = TarPart {
                item: DATA_ITEM.into(),
                index: 7,
                compression: c,
            };
            let parsed = TarPart::parse(&part.file_name());
            match c.tar_suffix() {
                Some(sfx) => {
                    assert_eq!(parsed.as_ref(), Some(&part), "{c}");
                    assert!(part.file_name().ends_with(sfx));
                }
                None => assert_eq!(parsed, None, "{c}"),
            }
        }
    }

    #[test]
    fn keeps_raw_names_and_refuses_unstorable_ones() {
        // Characters object_store would percent-encode stay raw, as barman writes them.
        let l = ServerLayout::checked("pfx~é[1]%20", "pg~1 ü{|}^\"<>#\\`?*").unwrap();
        assert_eq!(l.root(), "pfx~é[1]%20/pg~1 ü{|}^\"<>#\\`?*");
        assert_eq!(ServerLayout::checked("/a/b/", "s").unwrap().root(), "a/b/s");
        for (path, server) in [
            ("", ""),
            ("", "a/b"),
            ("", "."),
            ("", ".."),
            ("", "pg\n1"),
            ("", "pg\u{7f}"),
            ("a//b", "s"),
            ("a/../b", "s"),
            ("a/./b", "s"),
            ("a\tb", "s"),
            ("a#b", "s"),
            ("a?b", "s"),
        ] {
            let e = ServerLayout::checked(path, server).unwrap_err();
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn recognises_stored_wal_keys() {
        let s =
            StoredWal::from_key("p/s/wals/0000000100000000/000000010000000000000006.partial.zst")
                .unwrap();
        assert_eq!(s.compression, Compression::Zstd);
        assert_eq!(s.name.as_str(), "000000010000000000000006.partial");
        assert!(StoredWal::from_key("p/s/wals/README").is_none());
        assert!(
            StoredWal::from_key("p/s/wals/0000000100000000/000000010000000000000006.gz.tmp")
                .is_none()
        );
        assert!(
            StoredWal::from_key("p/s/wals/0000000100000000/000000010000000000000006.gz.gz")
                .is_none()
        );
    }
}
