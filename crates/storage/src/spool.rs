//! Local spool directories.
//!
//! Restore prefetch: segments fetched ahead of PostgreSQL's requests wait in
//! `<base>/restore-<archive id>/<name>`; the next request for one of them moves it to
//! the destination (a rename, or a durable copy when the destination is on another
//! file system). Archive pre-marks: with parallel archiving, segments uploaded ahead of
//! their `archive_command` call leave a marker `<base>/archived-<archive id>/<name>`
//! so that the call returns at once.
//!
//! The archive id is a hash of the archive location and server name, so a spool
//! left over from another archive or server is never served. A marker also records
//! which file it stands for (device, inode, size, modification time and a hash of the
//! first page, which holds the cluster's system identifier): a marker left by another
//! cluster that once had the same WAL names does not match the file now in `pg_wal`.

use crate::localfs;
use barrelman_core::wal::{SegmentName, WalName};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One spool directory. Nothing is created until [`Spool::create_dir`].
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// A short stable id for an archive location (FNV-1a, not cryptographic: it only
/// separates spools).
pub fn archive_id(location: &str) -> String {
    format!("{:016x}", fnv1a(location.as_bytes()))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Which file a marker stands for. Equal identities mean the same file, unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    /// FNV-1a of the first 8 KiB: a WAL segment's first page carries the system
    /// identifier, so this separates clusters even if the other fields repeat.
    head: u64,
}

/// Bytes of the file start that [`FileIdentity`] hashes.
const HEAD_BYTES: u64 = 8192;

impl FileIdentity {
    /// The identity of the file at `path` now.
    pub fn of(path: &Path) -> io::Result<Self> {
        let mut file = fs::File::open(path)?;
        let meta = file.metadata()?;
        let mut head = Vec::with_capacity(HEAD_BYTES as usize);
        (&mut file).take(HEAD_BYTES).read_to_end(&mut head)?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            head: fnv1a(&head),
        })
    }

    fn to_line(&self) -> String {
        format!(
            "barrelman-marker-v1 dev={} ino={} size={} mtime_ns={} head={:016x}\n",
            self.dev, self.ino, self.size, self.mtime_ns, self.head
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        if words.next()? != "barrelman-marker-v1" {
            return None;
        }
        let mut field = |key: &str| {
            words
                .next()?
                .strip_prefix(key)?
                .strip_prefix('=')
                .map(str::to_string)
        };
        let id = Self {
            dev: field("dev")?.parse().ok()?,
            ino: field("ino")?.parse().ok()?,
            size: field("size")?.parse().ok()?,
            mtime_ns: field("mtime_ns")?.parse().ok()?,
            head: u64::from_str_radix(&field("head")?, 16).ok()?,
        };
        words.next().is_none().then_some(id)
    }
}

/// What an archive marker says about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// No marker.
    Absent,
    /// The marker stands for exactly this file: it was uploaded.
    Matches,
    /// A marker for another file of that name (another cluster, a replaced file, an
    /// unreadable marker): it was removed and proves nothing.
    Stale,
}

impl Spool {
    /// The restore spool of the archive `location` under `base`.
    pub fn for_restore(base: &Path, location: &str) -> Self {
        Self {
            dir: base.join(format!("restore-{}", archive_id(location))),
        }
    }

    /// The archive pre-mark spool of `location` under `base`.
    pub fn for_archive(base: &Path, location: &str) -> Self {
        Self {
            dir: base.join(format!("archived-{}", archive_id(location))),
        }
    }

    /// Creates the directory (and its parents) if needed.
    pub fn create_dir(&self) -> io::Result<()> {
        fs::create_dir_all(&self.dir)
    }

    /// Removes the directory if it holds nothing, so that calls that spooled nothing
    /// leave nothing behind. A directory in use by another call is not empty, or is
    /// recreated by it.
    pub fn remove_dir_if_empty(&self) {
        let _ = fs::remove_dir(&self.dir);
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `name` is spooled.
    pub fn path(&self, name: &WalName) -> PathBuf {
        self.dir.join(name.as_str())
    }

    /// True when `name` is spooled (or marked).
    pub fn contains(&self, name: &WalName) -> bool {
        self.path(name).is_file()
    }

    /// Moves a spooled `name` to `dest`, durably: once this returns true, `dest` holds
    /// the whole file and survives a crash. Returns false when `name` is not spooled.
    /// Across file systems the file is copied to a temporary next to `dest`, fsynced,
    /// renamed and the directory fsynced; only then is the spooled copy removed.
    pub fn take(&self, name: &WalName, dest: &Path) -> io::Result<bool> {
        let src = self.path(name);
        // rename(2) answers EXDEV before it looks at the source, so look first.
        // Like barman's `os.path.isfile`: a spool that cannot be looked into holds
        // nothing to serve, and the segment is downloaded.
        if !fs::metadata(&src).is_ok_and(|meta| meta.is_file()) {
            return Ok(false);
        }
        match fs::rename(&src, dest) {
            Ok(()) => {
                localfs::sync_parent(dest)?;
                Ok(true)
            }
            // Taken or pruned by another call in the meantime.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                match localfs::copy_atomically(&src, dest) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound && !src.exists() => {
                        return Ok(false)
                    }
                    Err(e) => return Err(e),
                }
                match fs::remove_file(&src) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(true),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Leaves a marker saying that `name`, the file with identity `file`, is archived.
    pub fn mark(&self, name: &WalName, file: &FileIdentity) -> io::Result<()> {
        // A marker cut short by a crash does not parse, so it is only ever Stale.
        fs::write(self.path(name), file.to_line())
    }

    /// Consumes the marker of `name` and says whether it stands for the file `file`
    /// (the identity of the file now in `pg_wal`; `None` when it cannot be read).
    pub fn take_marker(&self, name: &WalName, file: Option<&FileIdentity>) -> io::Result<Marker> {
        let path = self.path(name);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Marker::Absent),
            // A directory or an unreadable file in our spool: not a marker of ours.
            Err(_) if path.is_dir() => return Ok(Marker::Absent),
            Err(e) => return Err(e),
        };
        fs::remove_file(&path)?;
        let marked = std::str::from_utf8(&text)
            .ok()
            .and_then(FileIdentity::parse);
        Ok(match (marked, file) {
            (Some(m), Some(f)) if m == *f => Marker::Matches,
            _ => Marker::Stale,
        })
    }

    /// Removes every marker or spooled file; returns how many there were.
    pub fn clear(&self) -> io::Result<usize> {
        crate::localfs::remove_files_where(
            &self.dir,
            |name| WalName::parse(&name.to_string_lossy()).is_ok(),
            |_, _| true,
        )
    }

    /// Removes spooled segments of `current`'s timeline that sort before it: recovery
    /// has moved past them, so they would only take space.
    pub fn prune_before(&self, current: SegmentName) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(seg) = name.to_str().and_then(SegmentName::parse) else {
                continue;
            };
            if seg.timeline == current.timeline
                && seg < current
                && fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_moves_and_prune_bounds() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::for_restore(tmp.path(), "s3://b/p/srv");
        let other = Spool::for_restore(tmp.path(), "s3://b/p/other");
        assert_ne!(spool.dir(), other.dir());
        let a = WalName::parse("000000010000000000000003").unwrap();
        let b = WalName::parse("000000010000000000000005").unwrap();
        let dest = tmp.path().join("dest");
        assert!(!spool.take(&a, &dest).unwrap(), "no directory yet");
        assert!(!spool.dir().exists());
        spool.create_dir().unwrap();
        fs::write(spool.path(&a), b"aaa").unwrap();
        fs::write(spool.path(&b), b"bbb").unwrap();
        assert!(!other.take(&a, &dest).unwrap());
        assert!(spool.take(&b, &dest).unwrap());
        assert_eq!(fs::read(&dest).unwrap(), b"bbb");
        assert!(!spool.contains(&b));
        let cur = SegmentName::parse("000000010000000000000004").unwrap();
        assert_eq!(spool.prune_before(cur).unwrap(), 1);
        assert!(!spool.contains(&a));
        spool.remove_dir_if_empty();
        assert!(!spool.dir().exists());
    }

    #[test]
    fn a_marker_matches_only_the_file_it_was_made_for() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::for_archive(tmp.path(), "s3://b/p/srv");
        spool.create_dir().unwrap();
        let name = WalName::parse("000000010000000000000003").unwrap();
        let wal = tmp.path().join(name.as_str());
        fs::write(&wal, b"first cluster").unwrap();
        let id = FileIdentity::of(&wal).unwrap();
        assert_eq!(FileIdentity::parse(&id.to_line()), Some(id.clone()));

        spool.mark(&name, &id).unwrap();
        assert_eq!(
            spool.take_marker(&name, Some(&id)).unwrap(),
            Marker::Matches
        );
        assert_eq!(spool.take_marker(&name, Some(&id)).unwrap(), Marker::Absent);

        // The same name, written again (a re-created cluster): the marker is stale.
        spool.mark(&name, &id).unwrap();
        fs::remove_file(&wal).unwrap();
        fs::write(&wal, b"second cluster").unwrap();
        let now = FileIdentity::of(&wal).unwrap();
        assert_ne!(now, id);
        assert_eq!(spool.take_marker(&name, Some(&now)).unwrap(), Marker::Stale);
        assert!(!spool.contains(&name), "a stale marker is removed");

        // Markers of older versions (empty) or cut short prove nothing either.
        fs::write(spool.path(&name), b"").unwrap();
        assert_eq!(spool.take_marker(&name, Some(&now)).unwrap(), Marker::Stale);
        fs::write(spool.path(&name), &now.to_line()[..20]).unwrap();
        assert_eq!(spool.take_marker(&name, Some(&now)).unwrap(), Marker::Stale);
        spool.mark(&name, &now).unwrap();
        assert_eq!(spool.take_marker(&name, None).unwrap(), Marker::Stale);

        spool.mark(&name, &now).unwrap();
        fs::write(spool.dir().join("not-a-wal"), b"").unwrap();
        assert_eq!(spool.clear().unwrap(), 1);
        assert!(spool.dir().join("not-a-wal").exists());
    }
}
