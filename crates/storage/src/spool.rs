//! Local spool directories.
//!
//! Restore prefetch: segments fetched ahead of PostgreSQL's requests wait in
//! `<base>/restore-<archive id>/<name>`; the next request for one of them is a local
//! rename. Archive pre-marks: with parallel archiving, segments uploaded ahead of
//! their `archive_command` call leave an empty `<base>/archived-<archive id>/<name>`
//! so that the call returns at once.
//!
//! The archive id is a hash of the archive location and server name, so a spool
//! left over from another archive or server is never served.

use barrelman_core::wal::{SegmentName, WalName};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// A short stable id for an archive location (FNV-1a, not cryptographic: it only
/// separates spools).
pub fn archive_id(location: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in location.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

impl Spool {
    /// The restore spool of the archive `location` under `base` (created if needed).
    pub fn for_restore(base: &Path, location: &str) -> io::Result<Self> {
        Self::create(base.join(format!("restore-{}", archive_id(location))))
    }

    /// The archive pre-mark spool of `location` under `base` (created if needed).
    pub fn for_archive(base: &Path, location: &str) -> io::Result<Self> {
        Self::create(base.join(format!("archived-{}", archive_id(location))))
    }

    fn create(dir: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `name` is spooled.
    pub fn path(&self, name: &WalName) -> PathBuf {
        self.dir.join(name.as_str())
    }

    /// True when `name` is spooled.
    pub fn contains(&self, name: &WalName) -> bool {
        self.path(name).is_file()
    }

    /// Moves a spooled `name` to `dest`. Returns false when it is not spooled.
    pub fn take(&self, name: &WalName, dest: &Path) -> io::Result<bool> {
        let src = self.path(name);
        match fs::rename(&src, dest) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(_) => {
                // Another file system: copy to a temporary sibling, fsync, rename.
                let tmp = dest.with_extension("barrelman-spool.tmp");
                let copied = (|| {
                    fs::copy(&src, &tmp)?;
                    fs::File::open(&tmp)?.sync_all()?;
                    fs::rename(&tmp, dest)
                })();
                if let Err(e) = copied {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                fs::remove_file(&src)?;
                Ok(true)
            }
        }
    }

    /// Leaves an empty marker for `name`.
    pub fn mark(&self, name: &WalName) -> io::Result<()> {
        fs::File::create(self.path(name)).map(|_| ())
    }

    /// Removes the marker or spooled file of `name`; true when there was one.
    pub fn remove(&self, name: &WalName) -> io::Result<bool> {
        match fs::remove_file(self.path(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
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
        let spool = Spool::for_restore(tmp.path(), "s3://b/p/srv").unwrap();
        let other = Spool::for_restore(tmp.path(), "s3://b/p/other").unwrap();
        assert_ne!(spool.dir(), other.dir());
        let a = WalName::parse("000000010000000000000003").unwrap();
        let b = WalName::parse("000000010000000000000005").unwrap();
        fs::write(spool.path(&a), b"aaa").unwrap();
        fs::write(spool.path(&b), b"bbb").unwrap();
        let dest = tmp.path().join("dest");
        assert!(!other.take(&a, &dest).unwrap());
        assert!(spool.take(&b, &dest).unwrap());
        assert_eq!(fs::read(&dest).unwrap(), b"bbb");
        assert!(!spool.contains(&b));
        let cur = SegmentName::parse("000000010000000000000004").unwrap();
        assert_eq!(spool.prune_before(cur).unwrap(), 1);
        assert!(!spool.contains(&a));
    }
}
