//! Local files that restores write: atomic, durable writes through temporaries of our
//! own naming, and the clean-up of temporaries a killed call left behind.
//!
//! A temporary is `.<name>.barrelman-<pid>.tmp` next to its destination. The pid says
//! whose it is, so a later call can tell a temporary of a dead call (removed) from one
//! a live concurrent call is still writing (kept).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A temporary whose owner still runs is removed only when it has not been written for
/// this long: its pid was then reused by another process (a live call keeps writing,
/// and its read timeouts end it long before this).
pub const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// Where a failed atomic write went wrong.
pub(crate) enum WriteError {
    /// The local file system (creating, writing, syncing or renaming the file).
    Local(io::Error),
    /// The content being written (decoding, network, the source file).
    Content(io::Error),
}

/// A write into the destination file failed; carried inside an `io::Error` through
/// codecs and copies so that the caller can tell it from a failure of the content.
#[derive(Debug)]
struct LocalWriteFailed(io::Error);

impl std::fmt::Display for LocalWriteFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for LocalWriteFailed {}

/// The destination file: its write errors are tagged as local.
struct TaggedFile<'a>(&'a mut File);

impl Write for TaggedFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(tag_local)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(tag_local)
    }
}

fn tag_local(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), LocalWriteFailed(e))
}

/// Sorts an error out of `fill`: a tagged write of the destination is local, anything
/// else is about the content.
fn classify(e: io::Error) -> WriteError {
    if e.get_ref()
        .is_some_and(|inner| inner.is::<LocalWriteFailed>())
    {
        let inner = e.into_inner().expect("checked above");
        let LocalWriteFailed(original) = *inner.downcast::<LocalWriteFailed>().expect("checked");
        WriteError::Local(original)
    } else {
        WriteError::Content(e)
    }
}

/// Writes `dest` through `fill` into a temporary sibling, fsyncs it, renames it over
/// `dest` and fsyncs the directory, so that a reader never sees a partial file and the
/// file survives a crash once this returns. The temporary is removed on failure.
pub(crate) fn write_atomically(
    dest: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<u64>,
) -> Result<u64, WriteError> {
    let tmp = tmp_sibling(dest);
    let result = (|| {
        let mut f = File::create(&tmp).map_err(WriteError::Local)?;
        let mut tagged = TaggedFile(&mut f);
        let mut w = io::BufWriter::with_capacity(256 << 10, &mut tagged);
        let n = fill(&mut w).map_err(classify)?;
        w.flush().map_err(|e| match classify(e) {
            WriteError::Content(e) => WriteError::Local(e),
            local => local,
        })?;
        drop(w);
        // Data and size; the rename below is what makes the file visible.
        f.sync_data().map_err(WriteError::Local)?;
        fs::rename(&tmp, dest).map_err(WriteError::Local)?;
        sync_parent(dest).map_err(WriteError::Local)?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Copies `src` to `dest` atomically and durably: through a temporary, fsynced,
/// renamed, its directory fsynced, as every restored file.
pub fn copy_atomically(src: &Path, dest: &Path) -> io::Result<u64> {
    let mut from = File::open(src)?;
    write_atomically(dest, |w| io::copy(&mut from, w)).map_err(|e| match e {
        WriteError::Local(e) | WriteError::Content(e) => e,
    })
}

/// fsyncs the directory holding `path`, which makes a rename into it durable.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match File::open(dir).and_then(|d| d.sync_all()) {
        // Some file systems cannot fsync a directory; PostgreSQL ignores these too.
        Err(e) if e.raw_os_error() == Some(EINVAL) => Ok(()),
        other => other,
    }
}

/// `EINVAL` on Linux.
const EINVAL: i32 = 22;

/// The temporary that [`write_atomically`] writes `dest` through.
pub(crate) fn tmp_sibling(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.barrelman-{}.tmp", std::process::id()))
}

/// The pid in a temporary name of ours, `.<name>.barrelman-<pid>.tmp`.
fn tmp_owner(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, pid) = rest.rsplit_once(".barrelman-")?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` runs, as far as this process can see. Without a readable
/// /proc every process counts as running, so only [`ORPHAN_AGE`] removes anything.
fn process_runs(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the temporaries of ours in `dir` that no live call is writing: their owner
/// is gone, or they were not written for [`ORPHAN_AGE`]. Returns how many went;
/// a missing `dir` has none.
pub fn remove_stale_temporaries(dir: &Path) -> io::Result<usize> {
    let me = std::process::id();
    let owner = |name: &std::ffi::OsStr| name.to_str().and_then(tmp_owner);
    remove_files_where(
        dir,
        |name| owner(name).is_some_and(|o| o != me),
        |name, meta| {
            let running = owner(name).is_some_and(process_runs);
            meta.is_file() && (!running || untouched_for(meta, ORPHAN_AGE))
        },
    )
}

/// Removes `object_store`'s staging files (`<key>#<n>`) in the local store directory
/// `dir` that were not written for `age`: a killed upload leaves them, and the store's
/// listings hide them, so nothing else would ever remove them. A live upload writes
/// its staging file continuously, so `age` well above a write's duration keeps it.
pub fn remove_stale_staging(dir: &Path, age: Duration) -> io::Result<usize> {
    let is_staging = |name: &std::ffi::OsStr| {
        name.to_str()
            .and_then(|n| n.rsplit_once('#'))
            .is_some_and(|(key, n)| {
                !key.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
            })
    };
    remove_files_where(dir, is_staging, |_, meta| {
        meta.is_file() && untouched_for(meta, age)
    })
}

/// Removes the entries of `dir` whose name is a `candidate` and that `doomed` picks
/// (by name and metadata; an entry whose metadata cannot be read is kept). Returns how many went; a missing `dir`
/// has none, and an entry removed meanwhile by someone else is not an error.
pub fn remove_files_where(
    dir: &Path,
    candidate: impl Fn(&std::ffi::OsStr) -> bool,
    mut doomed: impl FnMut(&std::ffi::OsStr, &fs::Metadata) -> bool,
) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        // Names first: pg_wal holds hundreds of segments, and a stat of each on every
        // call would cost more than the clean-up is worth.
        if !candidate(&name) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !doomed(&name, &meta) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

fn untouched_for(meta: &fs::Metadata, age: Duration) -> bool {
    meta.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|idle| idle >= age)
}

/// Asks the kernel to drop `path`'s clean pages from the page cache
/// (`posix_fadvise(POSIX_FADV_DONTNEED)`), as the Barman Cloud plugin does after each
/// archived WAL segment: reading a segment to upload it must not leave 16 MiB of
/// cache behind per segment, charged to the container's memory limit. Dirty pages
/// are not dropped (PostgreSQL has fsynced a segment before it asks to archive it).
pub fn drop_page_cache(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

/// Whether `e` says the file system is full or the quota used up.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_read_only_from_our_names() {
        assert_eq!(tmp_owner(".RECOVERYXLOG.barrelman-123.tmp"), Some(123));
        assert_eq!(
            tmp_owner(".000000010000000000000001.barrelman-9.tmp"),
            Some(9)
        );
        assert_eq!(tmp_owner("RECOVERYXLOG.barrelman-123.tmp"), None);
        assert_eq!(tmp_owner(".RECOVERYXLOG.barrelman-.tmp"), None);
        assert_eq!(tmp_owner(".RECOVERYXLOG.barrelman-12x.tmp"), None);
        assert_eq!(tmp_owner(".x.tmp"), None);
    }

    #[test]
    fn stale_temporaries_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        // A pid that cannot run: above the kernel's pid_max limit (2^22).
        let dead = dir.path().join(".RECOVERYXLOG.barrelman-4194999.tmp");
        // Our own and our parent's: both running.
        let mine = tmp_sibling(&dir.path().join("RECOVERYXLOG"));
        let live = dir.path().join(format!(
            ".RECOVERYXLOG.barrelman-{}.tmp",
            std::os::unix::process::parent_id()
        ));
        let other = dir.path().join("000000010000000000000001");
        for p in [&dead, &mine, &live, &other] {
            fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert!(!dead.exists());
        assert!(mine.exists() && live.exists() && other.exists());

        // A running owner's temporary untouched for ORPHAN_AGE is an orphan.
        let old = SystemTime::now() - ORPHAN_AGE - Duration::from_secs(5);
        File::options()
            .write(true)
            .open(&live)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert!(!live.exists() && mine.exists());
        assert_eq!(
            remove_stale_temporaries(&dir.path().join("none")).unwrap(),
            0
        );
    }

    #[test]
    fn only_old_staging_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("000000010000000000000001.gz#1");
        let fresh = dir.path().join("000000010000000000000002.gz#1");
        let object = dir.path().join("000000010000000000000003.gz");
        let odd = dir.path().join("name#x");
        for p in [&old, &fresh, &object, &odd] {
            fs::write(p, b"x").unwrap();
        }
        for p in [&old, &object, &odd] {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(SystemTime::now() - Duration::from_secs(7200))
                .unwrap();
        }
        assert_eq!(
            remove_stale_staging(dir.path(), Duration::from_secs(600)).unwrap(),
            1
        );
        assert!(!old.exists() && fresh.exists() && object.exists() && odd.exists());
    }

    #[test]
    fn write_errors_of_the_destination_are_local() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let r = write_atomically(&dest, |w| {
            w.write_all(b"abc")?;
            Err(io::Error::new(io::ErrorKind::InvalidData, "bad frame"))
        });
        assert!(matches!(r, Err(WriteError::Content(e)) if e.kind() == io::ErrorKind::InvalidData));
        assert!(!tmp_sibling(&dest).exists() && !dest.exists());
        let e = classify(tag_local(io::Error::from(io::ErrorKind::StorageFull)));
        assert!(matches!(e, WriteError::Local(e) if is_disk_full(&e)));
        assert_eq!(
            write_atomically(&dest, |w| w.write_all(b"abc").map(|_| 3)).ok(),
            Some(3)
        );
        assert_eq!(fs::read(&dest).unwrap(), b"abc");
    }
}
