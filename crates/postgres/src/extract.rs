//! Safe extraction of a tar stream (one part of a backup) into a directory.
//!
//! Nothing is ever written outside the target directory:
//!
//! * member names that are absolute or contain a `..` component are refused;
//! * every directory a member goes through is checked with `lstat` (or created by
//!   us): a member whose path goes through a symbolic link — one that already existed
//!   or one created earlier from the same archive — is refused;
//! * files are created with `O_CREAT|O_EXCL` after removing whatever non-directory
//!   was there, so an existing link at the final component is replaced, never
//!   followed;
//! * symbolic links must stay inside the target: relative targets only, whose `..`
//!   components come first and do not climb above the target (a `..` after a normal
//!   component is refused, since a link in the middle could make it climb further
//!   than it seems); hard links must name a regular file extracted earlier;
//! * device files, FIFOs, sparse and other special entries are refused.
//!
//! The checks use `lstat` before each step: they guard against what the archive
//! contains, not against another process changing the target directory meanwhile.
//!
//! Compared with barman (Python `tarfile.extractall` without a filter): barman tars
//! may contain symbolic links to files outside PGDATA (e.g. a `server.crt` link to
//! `/etc/ssl/...`): they are refused here, which fails the restore. Modes keep only
//! the permission bits (no setuid, setgid or sticky bit); ownership is not changed
//! (barman only changes it when running as root). Directory modes and times are set
//! at the end, deepest first, like `extractall`. The member `./` applies its mode and
//! time to the target itself (PostgreSQL wants PGDATA at 0700 or 0750). Missing
//! parent directories (a part of a split backup starts wherever the previous one
//! ended) are created with mode 0700.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const COPY_BUFFER: usize = 256 * 1024;

/// What an extraction created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExtractStats {
    /// Regular files written.
    pub files: u64,
    /// Directory members met (the target's own `./` included), whether the
    /// directory was created or already there.
    pub dirs: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Hard links created (to regular files already in the target).
    pub hard_links: u64,
    /// Content bytes of the regular files.
    pub bytes: u64,
}

/// Why an extraction stopped. Every variant but [`ExtractError::Target`] names the
/// tar member (its path inside the archive, as stored) it stopped at.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The tar stream itself could not be read: a damaged header, or the reader
    /// underneath (download, decompression) failed.
    #[error("reading the tar stream{}: {source}", at_member(.member))]
    Stream {
        /// The member whose content was being read, if any.
        member: Option<String>,
        /// The reader's error.
        #[source]
        source: io::Error,
    },
    /// A member name that is absolute, contains `..`, or is otherwise not a plain
    /// relative path.
    #[error("tar member {member:?} refused: {reason}")]
    UnsafePath {
        /// The member's name.
        member: String,
        /// What is wrong with the name.
        reason: &'static str,
    },
    /// A member whose path goes through a symbolic link (existing, or created
    /// earlier from the same stream).
    #[error("tar member {member:?} refused: it would be written through the symbolic link {}", .link.display())]
    ThroughSymlink {
        /// The member's name.
        member: String,
        /// The link on its way, under the target directory.
        link: PathBuf,
    },
    /// A symbolic link pointing outside the target directory, or a hard link to
    /// something other than a regular file already in the target.
    #[error("tar member {member:?} refused: link target {target:?} {reason}")]
    EscapingLink {
        /// The link member's name.
        member: String,
        /// The link's target as stored in the tar header.
        target: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A device file, FIFO, sparse file or other special entry.
    #[error("tar member {member:?} refused: {kind} entries are not extracted")]
    Unsupported {
        /// The member's name.
        member: String,
        /// The kind of entry, in words (`character device`, `FIFO`…).
        kind: String,
    },
    /// A member that would replace a directory with a non-directory, or go
    /// through a non-directory as if it were one.
    #[error("tar member {member:?}: {} already exists and is {what}", .path.display())]
    Conflict {
        /// The member's name.
        member: String,
        /// The path in the way, under the target directory.
        path: PathBuf,
        /// What that path is (`a directory`, `not a directory`).
        what: &'static str,
    },
    /// The stream ended inside a member's content.
    #[error("tar member {member:?} is truncated: {got} of {expected} bytes")]
    Truncated {
        /// The member's name.
        member: String,
        /// The content size its header announces, in bytes.
        expected: u64,
        /// The bytes the stream delivered before its end.
        got: u64,
    },
    /// Writing a member into the target failed (disk full, permissions…).
    #[error("tar member {member:?}: {}: {source}", .path.display())]
    Io {
        /// The member's name.
        member: String,
        /// The file or directory being written.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: io::Error,
    },
    /// The target directory could not be created.
    #[error("extraction directory {}: {source}", .path.display())]
    Target {
        /// The target directory.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: io::Error,
    },
}

fn at_member(member: &Option<String>) -> String {
    match member {
        Some(m) => format!(" (member {m:?})"),
        None => String::new(),
    }
}

/// Extracts the tar stream `r` into `target` (created if missing). See the module
/// documentation for what is refused; on error, what was extracted so far stays.
pub fn extract_tar<R: Read>(r: R, target: &Path) -> Result<ExtractStats, ExtractError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(target)
        .map_err(|source| ExtractError::Target {
            path: target.to_path_buf(),
            source,
        })?;
    let mut x = Extractor {
        root: target.to_path_buf(),
        known_dirs: HashSet::new(),
        deferred: Vec::new(),
        stats: ExtractStats::default(),
        buf: vec![0; COPY_BUFFER],
    };
    let mut archive = tar::Archive::new(r);
    let entries = archive.entries().map_err(|source| ExtractError::Stream {
        member: None,
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| ExtractError::Stream {
            member: None,
            source,
        })?;
        x.entry(entry)?;
    }
    x.apply_deferred()?;
    Ok(x.stats)
}

struct Extractor {
    root: PathBuf,
    /// Paths relative to `root` known to be real directories (checked or created by
    /// us; we never replace a directory).
    known_dirs: HashSet<PathBuf>,
    /// Directory attributes applied at the end: path, mode, time.
    deferred: Vec<(PathBuf, u32, Option<SystemTime>, String)>,
    stats: ExtractStats,
    buf: Vec<u8>,
}

enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
}

impl Extractor {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let raw_path = entry.path_bytes().into_owned();
        let member = String::from_utf8_lossy(&raw_path).into_owned();
        let header = entry.header();
        let typeflag = header.as_bytes()[156];
        let kind = match header.entry_type() {
            tar::EntryType::Regular if typeflag == 0 && raw_path.ends_with(b"/") => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::HardLink,
            tar::EntryType::XGlobalHeader => return Ok(()),
            other => {
                return Err(ExtractError::Unsupported {
                    member,
                    kind: entry_type_name(other),
                })
            }
        };
        let mode = header.mode().unwrap_or(0o600) & 0o777;
        let mtime = entry_mtime(&mut entry);
        let comps = member_components(&raw_path).map_err(|reason| ExtractError::UnsafePath {
            member: member.clone(),
            reason,
        })?;
        let rel: PathBuf = comps.iter().map(|c| OsStr::from_bytes(c)).collect();
        if comps.is_empty() && !matches!(kind, Kind::Dir) {
            return Err(ExtractError::UnsafePath {
                member,
                reason: "it names the extraction directory itself",
            });
        }
        if let Some((_, parents)) = comps.split_last() {
            self.ensure_dirs(&member, parents)?;
        }
        let path = self.root.join(&rel);
        match kind {
            Kind::Dir => {
                if !comps.is_empty() {
                    self.ensure_dirs(&member, &comps)?;
                }
                self.deferred.push((path, mode, mtime, member));
                self.stats.dirs += 1;
            }
            Kind::File => {
                self.clear(&member, &path)?;
                let io_err = |source| ExtractError::Io {
                    member: member.clone(),
                    path: path.clone(),
                    source,
                };
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(io_err)?;
                let expected = entry.size();
                let mut got = 0u64;
                loop {
                    let n = match entry.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(source) => {
                            return Err(ExtractError::Stream {
                                member: Some(member),
                                source,
                            })
                        }
                    };
                    file.write_all(&self.buf[..n]).map_err(io_err)?;
                    got += n as u64;
                }
                if got != expected {
                    return Err(ExtractError::Truncated {
                        member,
                        expected,
                        got,
                    });
                }
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io_err)?;
                if let Some(t) = mtime {
                    file.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
                        .map_err(io_err)?;
                }
                self.stats.files += 1;
                self.stats.bytes += got;
            }
            Kind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                check_symlink_target(comps.len() - 1, &target).map_err(|reason| {
                    ExtractError::EscapingLink {
                        member: member.clone(),
                        target: String::from_utf8_lossy(&target).into_owned(),
                        reason,
                    }
                })?;
                self.clear(&member, &path)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(
                    |source| ExtractError::Io {
                        member: member.clone(),
                        path: path.clone(),
                        source,
                    },
                )?;
                self.stats.symlinks += 1;
            }
            Kind::HardLink => {
                let target = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let escaping = |reason| ExtractError::EscapingLink {
                    member: member.clone(),
                    target: String::from_utf8_lossy(&target).into_owned(),
                    reason,
                };
                let tcomps = member_components(&target).map_err(escaping)?;
                let Some((_, tparents)) = tcomps.split_last() else {
                    return Err(escaping("names the extraction directory itself"));
                };
                if tcomps == comps {
                    return Err(escaping("names the member itself"));
                }
                self.check_existing_dirs(tparents)
                    .map_err(|_| escaping("is not a file extracted before"))?;
                let trel: PathBuf = tcomps.iter().map(|c| OsStr::from_bytes(c)).collect();
                let source = self.root.join(trel);
                match fs::symlink_metadata(&source) {
                    Ok(m) if m.file_type().is_file() => {}
                    _ => return Err(escaping("is not a file extracted before")),
                }
                self.clear(&member, &path)?;
                fs::hard_link(&source, &path).map_err(|source| ExtractError::Io {
                    member: member.clone(),
                    path: path.clone(),
                    source,
                })?;
                self.stats.hard_links += 1;
            }
        }
        Ok(())
    }

    /// Makes sure every prefix of `comps` is a real directory under the root,
    /// creating missing ones.
    fn ensure_dirs(&mut self, member: &str, comps: &[Vec<u8>]) -> Result<(), ExtractError> {
        let mut rel = PathBuf::new();
        for c in comps {
            rel.push(OsStr::from_bytes(c));
            if self.known_dirs.contains(&rel) {
                continue;
            }
            let path = self.root.join(&rel);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(ExtractError::ThroughSymlink {
                        member: member.to_owned(),
                        link: path,
                    })
                }
                Ok(_) => {
                    return Err(ExtractError::Conflict {
                        member: member.to_owned(),
                        path,
                        what: "not a directory",
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match fs::DirBuilder::new().mode(0o700).create(&path) {
                        Ok(()) => {}
                        // Another part of the same backup, extracted concurrently into
                        // the same target, made it first: fine if it is a directory.
                        Err(e)
                            if e.kind() == io::ErrorKind::AlreadyExists
                                && fs::symlink_metadata(&path)
                                    .is_ok_and(|m| m.file_type().is_dir()) => {}
                        Err(source) => {
                            return Err(ExtractError::Io {
                                member: member.to_owned(),
                                path: path.clone(),
                                source,
                            })
                        }
                    }
                }
                Err(source) => {
                    return Err(ExtractError::Io {
                        member: member.to_owned(),
                        path,
                        source,
                    })
                }
            }
            self.known_dirs.insert(rel.clone());
        }
        Ok(())
    }

    /// Like `ensure_dirs` without creating anything.
    fn check_existing_dirs(&mut self, comps: &[Vec<u8>]) -> Result<(), ()> {
        let mut rel = PathBuf::new();
        for c in comps {
            rel.push(OsStr::from_bytes(c));
            if self.known_dirs.contains(&rel) {
                continue;
            }
            match fs::symlink_metadata(self.root.join(&rel)) {
                Ok(m) if m.file_type().is_dir() => {
                    self.known_dirs.insert(rel.clone());
                }
                _ => return Err(()),
            }
        }
        Ok(())
    }

    /// Removes a non-directory at `path` (without following it).
    fn clear(&self, member: &str, path: &Path) -> Result<(), ExtractError> {
        let io_err = |source| ExtractError::Io {
            member: member.to_owned(),
            path: path.to_path_buf(),
            source,
        };
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_dir() => Err(ExtractError::Conflict {
                member: member.to_owned(),
                path: path.to_path_buf(),
                what: "a directory",
            }),
            Ok(_) => fs::remove_file(path).map_err(io_err),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Directory times and modes, deepest (latest) first.
    fn apply_deferred(&mut self) -> Result<(), ExtractError> {
        for (path, mode, mtime, member) in self.deferred.drain(..).rev() {
            let io_err = |source| ExtractError::Io {
                member: member.clone(),
                path: path.clone(),
                source,
            };
            let dir = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io_err)?;
            if let Some(t) = mtime {
                dir.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
                    .map_err(io_err)?;
            }
            dir.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io_err)?;
        }
        Ok(())
    }
}

/// The components of a member name, without `.` and empty ones.
fn member_components(raw: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    if raw.is_empty() {
        return Err("empty name");
    }
    if raw.contains(&0) {
        return Err("NUL byte in the name");
    }
    if raw.starts_with(b"/") {
        return Err("absolute path");
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path with a `..` component"),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// A symbolic link at depth `depth` (number of directories between the root and the
/// link) pointing at `target` stays inside the root.
fn check_symlink_target(depth: usize, target: &[u8]) -> Result<(), &'static str> {
    if target.is_empty() {
        return Err("is empty");
    }
    if target.contains(&0) {
        return Err("contains a NUL byte");
    }
    if target.starts_with(b"/") {
        return Err("is absolute");
    }
    let mut depth = depth;
    let mut descended = false;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." if descended => return Err("has `..` after a directory name"),
            b".." => {
                depth = depth
                    .checked_sub(1)
                    .ok_or("climbs above the extraction directory")?;
            }
            _ => descended = true,
        }
    }
    Ok(())
}

/// The member's time: the pax `mtime` (fractional) if any, else the header's.
fn entry_mtime<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<SystemTime> {
    if let Ok(Some(pax)) = entry.pax_extensions() {
        for ext in pax.flatten() {
            if ext.key_bytes() == b"mtime" {
                if let Some(t) = ext
                    .value()
                    .ok()
                    .and_then(|v| v.parse::<f64>().ok())
                    .and_then(float_time)
                {
                    return Some(t);
                }
            }
        }
    }
    let secs = entry.header().mtime().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

fn float_time(f: f64) -> Option<SystemTime> {
    if f >= 0.0 {
        UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(f).ok()?)
    } else {
        UNIX_EPOCH.checked_sub(Duration::try_from_secs_f64(-f).ok()?)
    }
}

fn entry_type_name(t: tar::EntryType) -> String {
    match t {
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Fifo => "FIFO".into(),
        tar::EntryType::GNUSparse => "GNU sparse file".into(),
        other => format!("{other:?} (type {:?})", char::from(other.as_byte())),
    }
}

/// What [`scan_tar`] saw in a tar stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarScan {
    /// Tar entries read, of every type.
    pub members: u64,
    /// Content bytes of every member.
    pub bytes: u64,
    /// A top-level `backup_label` member: the part a base backup ends with.
    pub has_backup_label: bool,
}

/// Reads a whole tar stream without writing anything (for verification): every
/// header and every byte of content.
pub fn scan_tar<R: Read>(r: R) -> io::Result<TarScan> {
    let mut archive = tar::Archive::new(r);
    let mut scan = TarScan::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path_bytes();
        let name = path.strip_prefix(b"./").unwrap_or(&path);
        scan.has_backup_label |= name == b"backup_label";
        scan.bytes += io::copy(&mut entry, &mut io::sink())?;
        scan.members += 1;
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarball::TarWriter;
    use crate::walk::{walk_pgdata, PG_CONTROL};
    use std::os::unix::fs::{symlink, MetadataExt};

    /// A raw member: the name and link name go in the header unchecked.
    fn raw_member(
        b: &mut tar::Builder<Vec<u8>>,
        name: &[u8],
        kind: tar::EntryType,
        link: &[u8],
        data: &[u8],
    ) {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn pax(b: &mut tar::Builder<Vec<u8>>, key: &str, value: &[u8]) {
        b.append_pax_extensions([(key, value)]).unwrap();
    }

    struct Sandbox {
        _tmp: tempfile::TempDir,
        target: PathBuf,
        outside: PathBuf,
    }

    impl Sandbox {
        fn new() -> Sandbox {
            let tmp = tempfile::tempdir().unwrap();
            let target = tmp.path().join("sandbox/target");
            let outside = tmp.path().join("sandbox/outside");
            fs::create_dir_all(&target).unwrap();
            fs::create_dir_all(&outside).unwrap();
            fs::write(outside.join("victim"), b"original").unwrap();
            Sandbox {
                _tmp: tmp,
                target,
                outside,
            }
        }

        fn extract(
            &self,
            build: impl FnOnce(&mut tar::Builder<Vec<u8>>),
        ) -> Result<ExtractStats, ExtractError> {
            let mut b = tar::Builder::new(Vec::new());
            build(&mut b);
            let bytes = b.into_inner().unwrap();
            extract_tar(bytes.as_slice(), &self.target)
        }

        /// Nothing but `victim`, unchanged, outside the target; nothing next to it.
        fn assert_outside_untouched(&self) {
            let mut names: Vec<_> = fs::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            assert_eq!(names, ["victim"]);
            assert_eq!(fs::read(self.outside.join("victim")).unwrap(), b"original");
            let mut up: Vec<_> = fs::read_dir(self.outside.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            up.sort();
            assert_eq!(up, ["outside", "target"]);
            assert!(!self
                .outside
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("x")
                .exists());
        }
    }

    fn file_tar(name: &[u8]) -> impl FnOnce(&mut tar::Builder<Vec<u8>>) + '_ {
        move |b| raw_member(b, name, tar::EntryType::Regular, b"", b"evil")
    }

    #[test]
    fn refuses_parent_and_absolute_names() {
        for name in [
            &b"../x"[..],
            b"../outside/victim",
            b"a/../../x",
            b"a/../../outside/victim",
            b"./../x",
            b"..",
            b"a/..",
        ] {
            let s = Sandbox::new();
            let err = s.extract(file_tar(name)).unwrap_err();
            assert!(
                matches!(err, ExtractError::UnsafePath { .. }),
                "{name:?}: {err}"
            );
            assert!(
                err.to_string().contains(&*String::from_utf8_lossy(name)),
                "{err}"
            );
            s.assert_outside_untouched();
        }
        let s = Sandbox::new();
        let abs = s.outside.join("victim");
        let err = s.extract(file_tar(abs.as_os_str().as_bytes())).unwrap_err();
        assert!(matches!(
            err,
            ExtractError::UnsafePath {
                reason: "absolute path",
                ..
            }
        ));
        s.assert_outside_untouched();
        let err = s.extract(file_tar(b"/etc/x")).unwrap_err();
        assert!(matches!(err, ExtractError::UnsafePath { .. }));
    }

    #[test]
    fn refuses_names_from_pax_and_gnu_long_names() {
        let s = Sandbox::new();
        let err = s
            .extract(|b| {
                pax(b, "path", b"../outside/victim");
                raw_member(b, b"harmless", tar::EntryType::Regular, b"", b"evil");
            })
            .unwrap_err();
        assert!(
            matches!(err, ExtractError::UnsafePath { ref member, .. } if member == "../outside/victim")
        );
        assert!(!s.target.join("harmless").exists());
        s.assert_outside_untouched();

        let err = s
            .extract(|b| {
                let mut h = tar::Header::new_gnu();
                h.set_size(4);
                h.set_mode(0o644);
                let long = format!("{}/../../../x", "d/".repeat(60));
                b.append_data(&mut h, "placeholder", &b"evil"[..]).unwrap();
                // A GNU long name with `..`, written by hand.
                let mut l = tar::Header::new_gnu();
                l.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
                l.set_entry_type(tar::EntryType::GNULongName);
                l.set_size(long.len() as u64 + 1);
                l.set_cksum();
                let mut data = long.into_bytes();
                data.push(0);
                b.append(&l, data.as_slice()).unwrap();
                raw_member(b, b"short", tar::EntryType::Regular, b"", b"evil");
            })
            .unwrap_err();
        assert!(matches!(err, ExtractError::UnsafePath { .. }), "{err}");
        s.assert_outside_untouched();
    }

    #[test]
    fn refuses_escaping_symlinks() {
        for (name, target) in [
            (&b"link"[..], &b"/tmp"[..]),
            (b"l", b"../../.."),
            (b"l", b".."),
            (b"a/b/l", b"../../../outside/victim"),
            (b"a/l", b"x/../../.."),
            (b"l", b""),
        ] {
            let s = Sandbox::new();
            let err = s
                .extract(|b| {
                    raw_member(b, name, tar::EntryType::Symlink, target, b"");
                    raw_member(
                        b,
                        &[name, &b"/file"[..]].concat(),
                        tar::EntryType::Regular,
                        b"",
                        b"evil",
                    );
                })
                .unwrap_err();
            assert!(
                matches!(err, ExtractError::EscapingLink { .. }),
                "{name:?} -> {target:?}: {err}"
            );
            assert!(fs::symlink_metadata(s.target.join(OsStr::from_bytes(name))).is_err());
            s.assert_outside_untouched();
        }
    }

    #[test]
    fn refuses_writing_through_symlinks() {
        // A symbolic link from the same archive, even one pointing inside.
        let s = Sandbox::new();
        let err = s
            .extract(|b| {
                raw_member(b, b"sub/", tar::EntryType::Directory, b"", b"");
                raw_member(b, b"l", tar::EntryType::Symlink, b"sub", b"");
                raw_member(b, b"l/file", tar::EntryType::Regular, b"", b"evil");
            })
            .unwrap_err();
        assert!(matches!(err, ExtractError::ThroughSymlink { .. }), "{err}");
        assert!(!s.target.join("sub/file").exists());

        // A link already there (e.g. left by an earlier part or by someone else).
        let s = Sandbox::new();
        symlink(&s.outside, s.target.join("link")).unwrap();
        for build in [
            file_tar(b"link/victim"),
            file_tar(b"link/new"),
            file_tar(b"./link/deeper/new"),
        ] {
            let err = s.extract(build).unwrap_err();
            assert!(matches!(err, ExtractError::ThroughSymlink { .. }), "{err}");
            s.assert_outside_untouched();
        }
        let err = s
            .extract(|b| raw_member(b, b"link/", tar::EntryType::Directory, b"", b""))
            .unwrap_err();
        assert!(matches!(err, ExtractError::ThroughSymlink { .. }), "{err}");

        // "s1 -> ." makes "s1/.." the parent of the target: refused.
        let s = Sandbox::new();
        let err = s
            .extract(|b| {
                raw_member(b, b"s1", tar::EntryType::Symlink, b".", b"");
                raw_member(b, b"t", tar::EntryType::Symlink, b"s1/..", b"");
            })
            .unwrap_err();
        assert!(matches!(err, ExtractError::EscapingLink { .. }), "{err}");
        assert!(fs::symlink_metadata(s.target.join("t")).is_err());
    }

    #[test]
    fn replaces_an_existing_link_instead_of_following_it() {
        let s = Sandbox::new();
        symlink(s.outside.join("victim"), s.target.join("evil")).unwrap();
        s.extract(file_tar(b"evil")).unwrap();
        s.assert_outside_untouched();
        let m = fs::symlink_metadata(s.target.join("evil")).unwrap();
        assert!(m.file_type().is_file());
        assert_eq!(fs::read(s.target.join("evil")).unwrap(), b"evil");
    }

    #[test]
    fn refuses_escaping_hard_links_and_special_files() {
        let s = Sandbox::new();
        let victim = s.outside.join("victim");
        for target in [
            victim.as_os_str().as_bytes(),
            b"../outside/victim",
            b"/etc/passwd",
            b"missing",
        ] {
            let err = s
                .extract(|b| raw_member(b, b"h", tar::EntryType::Link, target, b""))
                .unwrap_err();
            assert!(matches!(err, ExtractError::EscapingLink { .. }), "{err}");
            s.assert_outside_untouched();
        }
        // A hard link to a file reached through a link is refused too.
        symlink(&s.outside, s.target.join("out")).unwrap();
        let err = s
            .extract(|b| raw_member(b, b"h", tar::EntryType::Link, b"out/victim", b""))
            .unwrap_err();
        assert!(matches!(err, ExtractError::EscapingLink { .. }), "{err}");
        assert!(!s.target.join("h").exists());

        for kind in [
            tar::EntryType::Char,
            tar::EntryType::Block,
            tar::EntryType::Fifo,
        ] {
            let err = s
                .extract(|b| raw_member(b, b"dev", kind, b"", b""))
                .unwrap_err();
            assert!(matches!(err, ExtractError::Unsupported { .. }), "{err}");
            assert!(fs::symlink_metadata(s.target.join("dev")).is_err());
        }
        s.assert_outside_untouched();
    }

    #[test]
    fn allows_inside_links_and_hard_links() {
        let s = Sandbox::new();
        let stats = s
            .extract(|b| {
                raw_member(b, b"d/", tar::EntryType::Directory, b"", b"");
                raw_member(b, b"d/f", tar::EntryType::Regular, b"", b"data");
                raw_member(b, b"d/e/l", tar::EntryType::Symlink, b"../f", b"");
                raw_member(b, b"top", tar::EntryType::Symlink, b"d/f", b"");
                raw_member(b, b"h", tar::EntryType::Link, b"d/f", b"");
            })
            .unwrap();
        assert_eq!(
            stats,
            ExtractStats {
                files: 1,
                dirs: 1,
                symlinks: 2,
                hard_links: 1,
                bytes: 4
            }
        );
        assert_eq!(fs::read(s.target.join("d/e/l")).unwrap(), b"data");
        assert_eq!(fs::read(s.target.join("top")).unwrap(), b"data");
        assert_eq!(fs::read(s.target.join("h")).unwrap(), b"data");
        assert_eq!(fs::metadata(s.target.join("h")).unwrap().nlink(), 2);
        s.assert_outside_untouched();
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let mut b = tar::Builder::new(Vec::new());
        raw_member(&mut b, b"f", tar::EntryType::Regular, b"", &[1u8; 5000]);
        let bytes = b.into_inner().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let err = extract_tar(&bytes[..2048], tmp.path()).unwrap_err();
        assert!(
            matches!(
                err,
                ExtractError::Truncated {
                    expected: 5000,
                    got: 1536,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn round_trip_of_a_tar_writer_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let pg = tmp.path().join("pgdata");
        fs::create_dir_all(pg.join("base/5")).unwrap();
        fs::create_dir_all(pg.join("pg_wal")).unwrap();
        fs::create_dir_all(pg.join("global")).unwrap();
        fs::write(pg.join("PG_VERSION"), b"15\n").unwrap();
        fs::write(pg.join("base/5/16384"), vec![3u8; 100_000]).unwrap();
        fs::write(pg.join("base/5/16385"), b"").unwrap();
        fs::write(pg.join("global/pg_control"), b"ctl").unwrap();
        fs::write(pg.join("pg_wal/000000010000000000000001"), b"wal").unwrap();
        symlink("PG_VERSION", pg.join("v")).unwrap();
        fs::set_permissions(&pg, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(pg.join("base/5/16385"), fs::Permissions::from_mode(0o640)).unwrap();
        let mtime = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        fs::File::options()
            .write(true)
            .open(pg.join("base/5/16384"))
            .unwrap()
            .set_modified(mtime)
            .unwrap();

        let mut w = TarWriter::new(Vec::new());
        for e in walk_pgdata(&pg, &[]).unwrap() {
            w.append_entry(&e).unwrap();
        }
        w.append_file_as(PG_CONTROL, &pg.join(PG_CONTROL)).unwrap();
        w.append_backup_label(b"label\n", &pg).unwrap();
        let bytes = w.finish().unwrap();

        let dest = tmp.path().join("restore");
        let stats = extract_tar(bytes.as_slice(), &dest).unwrap();
        assert_eq!(
            stats,
            ExtractStats {
                files: 5,
                dirs: 5,
                symlinks: 1,
                hard_links: 0,
                bytes: 3 + 100_000 + 3 + 6
            }
        );
        assert_eq!(fs::read(dest.join("PG_VERSION")).unwrap(), b"15\n");
        assert_eq!(
            fs::read(dest.join("base/5/16384")).unwrap(),
            vec![3u8; 100_000]
        );
        assert_eq!(fs::read(dest.join("global/pg_control")).unwrap(), b"ctl");
        assert_eq!(fs::read(dest.join("backup_label")).unwrap(), b"label\n");
        assert!(fs::read_dir(dest.join("pg_wal")).unwrap().next().is_none());
        assert_eq!(
            fs::read_link(dest.join("v")).unwrap(),
            Path::new("PG_VERSION")
        );
        let m = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap();
        assert_eq!(m("").mode() & 0o7777, 0o700);
        assert_eq!(m("base/5/16385").mode() & 0o7777, 0o640);
        assert_eq!(m("backup_label").mode() & 0o7777, 0o644);
        assert_eq!(m("backup_label").mtime(), 0);
        let got = m("base/5/16384").modified().unwrap();
        let diff = got.duration_since(mtime).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_micros(1), "{diff:?}");
        let src_dir = fs::metadata(pg.join("base/5")).unwrap();
        assert_eq!(m("base/5").mtime(), src_dir.mtime());
        assert_eq!(m("base/5").mode() & 0o7777, src_dir.mode() & 0o7777);

        // Extracting a second part into the same directory works (existing dirs).
        let mut w = TarWriter::new(Vec::new());
        w.append_bytes("base/5/16386", b"part2", 0o600, 0, 0, 0)
            .unwrap();
        let stats = extract_tar(w.finish().unwrap().as_slice(), &dest).unwrap();
        assert_eq!(stats.files, 1);
        assert_eq!(fs::read(dest.join("base/5/16386")).unwrap(), b"part2");
    }
}
