//! Writing barman-style tar streams: POSIX pax like Python's `tarfile` with
//! `PAX_FORMAT`, which is what barman-cloud 3.19.1 writes.
//!
//! Header details copied from Python's behaviour (checked byte by byte against a tar
//! written by barman's `TarFileIgnoringTruncate` under Python 3.11):
//!
//! * Every member taken from the file system gets a pax extended header (`x`, named
//!   `././@PaxHeader`, zero mode/uid/gid/mtime) because `os.stat` gives a float
//!   `mtime`: the record is `mtime=<repr of the float>`, the ustar field holds the
//!   value rounded half to even. Members added from memory (`backup_label`) have an
//!   integer mtime and get no pax header unless a field overflows.
//! * Pax records, in this order, when needed: `path` (name over 100 bytes or not
//!   ASCII), `linkpath`, `uname`, `gname` (over 32 bytes or not ASCII), `uid`, `gid`
//!   (≥ 8^7, e.g. OpenShift's uids), `size` (≥ 8 GiB), `mtime`. An overflowing ustar
//!   field is written as 0; a long name is truncated in the ustar field (the `prefix`
//!   field is never used).
//! * ustar magic `ustar\0`, version `00`; numbers as zero-padded octal ending in NUL;
//!   checksum as six octal digits, NUL, space; empty device fields.
//! * Mode (`st_mode & 0o7777`), uid, gid from `lstat`; user and group names looked up
//!   in `/etc/passwd` and `/etc/group` (Python uses `pwd`/`grp`, which may also
//!   consult NSS), empty when unknown.
//! * The archive ends with two zero blocks and is padded with zeros to a multiple of
//!   10240 bytes (Python's `RECORDSIZE`).
//!
//! Differences from barman: a regular file that has more than one hard link is
//! always stored with its content (Python stores later occurrences as hard links to
//! the first one in the same part); `append_file_as` follows a symbolic link and
//! stores the content of its target (Python would store the link itself).

use crate::walk::WalkEntry;
use barrelman_core::counting::CountingWriter;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::OnceLock;

const BLOCK: u64 = 512;
/// Python's `tarfile.RECORDSIZE`.
const RECORD: u64 = 20 * BLOCK;
const READ_BUFFER: usize = 256 * 1024;

/// A member written with content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// Content size recorded in the header (0 for directories and links).
    pub size: u64,
    /// How many of those bytes are zero padding because the file shrank while being
    /// read (WAL replay repairs the file on restore).
    pub padded: u64,
}

/// The outcome of [`TarWriter::append_entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The entry was written; its sizes.
    Added(Added),
    /// The entry vanished (or turned into something that cannot be stored) since the
    /// walk; nothing was written. barman skips such files too: WAL replay recreates
    /// them.
    Vanished,
}

impl Appended {
    /// Content bytes written (0 when vanished).
    pub fn content_bytes(&self) -> u64 {
        match self {
            Appended::Added(a) => a.size,
            Appended::Vanished => 0,
        }
    }
}

/// A tar stream in barman's format over any writer. Each part of a barman backup is a
/// complete tar: use one `TarWriter` per part and [`finish`](TarWriter::finish) it.
pub struct TarWriter<W: Write> {
    builder: tar::Builder<CountingWriter<W>>,
}

impl<W: Write> TarWriter<W> {
    /// A tar stream written to `w` (usually a compressor over an upload), starting
    /// empty.
    pub fn new(w: W) -> Self {
        TarWriter {
            builder: tar::Builder::new(CountingWriter::new(w)),
        }
    }

    /// Uncompressed tar bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.builder.get_ref().count()
    }

    /// The underlying writer (e.g. to look at the compressed size so far).
    pub fn get_ref(&self) -> &W {
        self.builder.get_ref().get_ref()
    }

    /// Adds a walked entry, reading its metadata now (as barman does when it adds a
    /// file). A regular file is read streaming; exactly the size seen now is stored:
    /// a file that shrank is zero-padded, one that grew is cut.
    pub fn append_entry(&mut self, e: &WalkEntry) -> io::Result<Appended> {
        let meta = match fs::symlink_metadata(&e.path) {
            Ok(m) => m,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Appended::Vanished),
            Err(err) => return Err(annotate(err, &e.path)),
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            let member = Member::from_meta(dir_name(&e.name), &meta, Type::Dir, String::new());
            self.write_member(&member, io::empty())?;
            Ok(Appended::Added(Added { size: 0, padded: 0 }))
        } else if ft.is_symlink() {
            let target = match fs::read_link(&e.path) {
                Ok(t) => t,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Appended::Vanished),
                Err(err) => return Err(annotate(err, &e.path)),
            };
            let target = target
                .to_str()
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: link target {target:?} is not UTF-8", e.path.display()),
                    )
                })?
                .to_owned();
            let member = Member::from_meta(file_name(&e.name), &meta, Type::Symlink, target);
            self.write_member(&member, io::empty())?;
            Ok(Appended::Added(Added { size: 0, padded: 0 }))
        } else if ft.is_file() {
            let file = match fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&e.path)
            {
                Ok(f) => f,
                Err(err)
                    if err.kind() == io::ErrorKind::NotFound
                        || err.raw_os_error() == Some(libc::ELOOP) =>
                {
                    return Ok(Appended::Vanished)
                }
                Err(err) => return Err(annotate(err, &e.path)),
            };
            let meta = file.metadata().map_err(|err| annotate(err, &e.path))?;
            if !meta.is_file() {
                return Ok(Appended::Vanished);
            }
            let member = Member::from_meta(file_name(&e.name), &meta, Type::Regular, String::new());
            let padded = self
                .write_member(&member, file)
                .map_err(|err| annotate(err, &e.path))?;
            Ok(Appended::Added(Added {
                size: member.size,
                padded,
            }))
        } else {
            // A socket, FIFO or device now: not stored.
            Ok(Appended::Vanished)
        }
    }

    /// Adds the regular file at `path` (following symbolic links) as member `name`,
    /// with the file's metadata: `global/pg_control`, configuration files that live
    /// outside PGDATA. A missing file is an error (`NotFound`).
    pub fn append_file_as(&mut self, name: &str, path: &Path) -> io::Result<Added> {
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|err| annotate(err, path))?;
        let meta = file.metadata().map_err(|err| annotate(err, path))?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        let member = Member::from_meta(name.to_owned(), &meta, Type::Regular, String::new());
        let padded = self
            .write_member(&member, file)
            .map_err(|err| annotate(err, path))?;
        Ok(Added {
            size: member.size,
            padded,
        })
    }

    /// Adds a regular file from memory with explicit metadata and empty user and
    /// group names (Python's `TarInfo` defaults). `mtime` is whole seconds, so, like
    /// barman's `backup_label`, the member has no pax header unless a field overflows.
    pub fn append_bytes(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        mtime: u64,
        uid: u64,
        gid: u64,
    ) -> io::Result<()> {
        let member = Member {
            name: name.to_owned(),
            typ: Type::Regular,
            mode,
            uid,
            gid,
            size: data.len() as u64,
            mtime: Mtime::Int(mtime),
            linkname: String::new(),
            uname: String::new(),
            gname: String::new(),
        };
        self.write_member(&member, data)?;
        Ok(())
    }

    /// Adds `backup_label` as barman does: mode 0644, mtime 0, uid 0, gid = the group
    /// of `pgdata` (`os.stat`, following links), empty user and group names.
    pub fn append_backup_label(&mut self, label: &[u8], pgdata: &Path) -> io::Result<()> {
        let gid = fs::metadata(pgdata)
            .map_err(|err| annotate(err, pgdata))?
            .gid();
        self.append_bytes("backup_label", label, 0o644, 0, 0, u64::from(gid))
    }

    /// Writes the end-of-archive blocks and the record padding; returns the writer
    /// (not flushed).
    pub fn finish(self) -> io::Result<W> {
        let mut out = self.builder.into_inner()?;
        let rem = out.count() % RECORD;
        if rem != 0 {
            let zeros = [0u8; (RECORD - BLOCK) as usize];
            out.write_all(&zeros[..(RECORD - rem) as usize])?;
        }
        Ok(out.into_inner())
    }

    /// Writes the pax header (if needed), the ustar header and exactly `m.size` bytes
    /// of `data` (zero-padded if `data` ends early). Returns the padding.
    fn write_member(&mut self, m: &Member, data: impl Read) -> io::Result<u64> {
        let (pax, header) = m.headers();
        if let Some((pax_header, records)) = pax {
            self.builder.append(&pax_header, records.as_slice())?;
        }
        let mut reader = io::BufReader::with_capacity(
            READ_BUFFER,
            Exact {
                inner: data,
                remaining: m.size,
                padded: 0,
            },
        );
        self.builder.append(&header, &mut reader)?;
        Ok(reader.get_ref().padded)
    }
}

fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn dir_name(name: &str) -> String {
    if name.ends_with('/') {
        name.to_owned()
    } else {
        format!("{name}/")
    }
}

fn file_name(name: &str) -> String {
    name.trim_end_matches('/').to_owned()
}

/// Yields exactly `remaining` bytes: those of `inner`, then zeros if it ends early.
struct Exact<R> {
    inner: R,
    remaining: u64,
    padded: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let buf = &mut buf[..want];
        let n = if self.padded == 0 {
            loop {
                match self.inner.read(buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        } else {
            0
        };
        let n = if n == 0 {
            // The file shrank: pad (barman's copyfileobj_pad_truncate).
            buf.fill(0);
            self.padded += want as u64;
            want
        } else {
            n
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Regular,
    Dir,
    Symlink,
}

impl Type {
    fn flag(self) -> u8 {
        match self {
            Type::Regular => b'0',
            Type::Dir => b'5',
            Type::Symlink => b'2',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mtime {
    /// Python `int`: no pax record unless it overflows.
    Int(u64),
    /// Python `float` (from `os.stat`): always a pax record.
    Float(f64),
}

#[derive(Debug, Clone, PartialEq)]
struct Member {
    name: String,
    typ: Type,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: Mtime,
    linkname: String,
    uname: String,
    gname: String,
}

impl Member {
    fn from_meta(name: String, meta: &fs::Metadata, typ: Type, linkname: String) -> Member {
        Member {
            name,
            typ,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            size: if typ == Type::Regular { meta.len() } else { 0 },
            // Python's st_mtime: `sec + nsec * 1e-9` in double precision.
            mtime: Mtime::Float(meta.mtime() as f64 + meta.mtime_nsec() as f64 * 1e-9),
            linkname,
            uname: user_name(meta.uid()),
            gname: group_name(meta.gid()),
        }
    }

    /// The optional pax header with its records, and the ustar header.
    fn headers(&self) -> (Option<(tar::Header, Vec<u8>)>, tar::Header) {
        let mut pax: Vec<(&str, String)> = Vec::new();
        for (key, value, len) in [
            ("path", &self.name, 100),
            ("linkpath", &self.linkname, 100),
            ("uname", &self.uname, 32),
            ("gname", &self.gname, 32),
        ] {
            if !value.is_ascii() || value.len() > len {
                pax.push((key, value.clone()));
            }
        }
        let mut header = tar::Header::new_ustar();
        let h = header.as_ustar_mut().expect("ustar header");
        put_str(&mut h.name, &self.name);
        put_str(&mut h.linkname, &self.linkname);
        put_str(&mut h.uname, &self.uname);
        put_str(&mut h.gname, &self.gname);
        put_octal(&mut h.mode, u64::from(self.mode & 0o7777));
        for (key, field, value) in [
            ("uid", &mut h.uid[..], self.uid),
            ("gid", &mut h.gid[..], self.gid),
            ("size", &mut h.size[..], self.size),
        ] {
            if !put_octal(field, value) {
                put_octal(field, 0);
                pax.push((key, value.to_string()));
            }
        }
        match self.mtime {
            Mtime::Int(v) => {
                if !put_octal(&mut h.mtime, v) {
                    put_octal(&mut h.mtime, 0);
                    pax.push(("mtime", v.to_string()));
                }
            }
            Mtime::Float(f) => {
                let rounded = f.round_ties_even();
                if !(rounded >= 0.0 && put_octal(&mut h.mtime, rounded as u64)) {
                    put_octal(&mut h.mtime, 0);
                }
                pax.push(("mtime", py_float_repr(f)));
            }
        }
        h.typeflag = [self.typ.flag()];
        set_checksum(&mut header);

        let pax = (!pax.is_empty()).then(|| {
            let mut records = Vec::new();
            for (key, value) in &pax {
                pax_record(&mut records, key, value.as_bytes());
            }
            let mut ph = tar::Header::new_ustar();
            let p = ph.as_ustar_mut().expect("ustar header");
            put_str(&mut p.name, "././@PaxHeader");
            put_octal(&mut p.mode, 0);
            put_octal(&mut p.uid, 0);
            put_octal(&mut p.gid, 0);
            put_octal(&mut p.size, records.len() as u64);
            put_octal(&mut p.mtime, 0);
            p.typeflag = [b'x'];
            set_checksum(&mut ph);
            (ph, records)
        });
        (pax, header)
    }
}

/// Python's `stn(s, length, "ascii", "replace")`: non-ASCII characters become `?`,
/// truncated to the field, NUL-filled.
fn put_str(field: &mut [u8], s: &str) {
    field.fill(0);
    for (slot, c) in field.iter_mut().zip(s.chars()) {
        *slot = if c.is_ascii() { c as u8 } else { b'?' };
    }
}

/// Python's `itn` for values that fit: `"%0*o" % (len - 1, n)` + NUL. False (and the
/// field untouched) if the value does not fit.
fn put_octal(field: &mut [u8], v: u64) -> bool {
    let digits = field.len() - 1;
    if digits * 3 < 64 && v >= 1u64 << (digits * 3) {
        return false;
    }
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

/// Python's checksum field: `"%06o\0"` followed by the space left from the blank.
fn set_checksum(header: &mut tar::Header) {
    let bytes = header.as_mut_bytes();
    bytes[148..156].fill(b' ');
    let sum: u32 = bytes.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0");
    bytes[148..148 + s.len()].copy_from_slice(s.as_bytes());
}

/// One pax record: `"%d %s=%s\n"` where the number counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut len = base;
    loop {
        let total = base + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Python's `str(float)` for the values an mtime takes: the shortest representation
/// that round-trips, with `.0` for integral values.
fn py_float_repr(f: f64) -> String {
    let s = format!("{f}");
    if f.is_finite() && !s.contains(['.', 'e']) {
        format!("{s}.0")
    } else {
        s
    }
}

fn user_name(uid: u32) -> String {
    static USERS: OnceLock<HashMap<u32, String>> = OnceLock::new();
    USERS
        .get_or_init(|| id_names("/etc/passwd"))
        .get(&uid)
        .cloned()
        .unwrap_or_default()
}

fn group_name(gid: u32) -> String {
    static GROUPS: OnceLock<HashMap<u32, String>> = OnceLock::new();
    GROUPS
        .get_or_init(|| id_names("/etc/group"))
        .get(&gid)
        .cloned()
        .unwrap_or_default()
}

/// `name:password:id:...` lines; the first line for an id wins, like `getpwuid`.
fn id_names(file: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    let Ok(text) = fs::read_to_string(file) else {
        return out;
    };
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(id) = id.parse::<u32>() {
            out.entry(id).or_insert_with(|| name.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::{walk_pgdata, PG_CONTROL};
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn touch(root: &Path, rel: &str, content: &[u8]) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    struct Member {
        name: String,
        kind: tar::EntryType,
        data: Vec<u8>,
        pax: Vec<(String, String)>,
        mode: u32,
        mtime: u64,
        uid: u64,
        gid: u64,
        link: Option<String>,
        raw: [u8; 512],
    }

    fn read_back(tar_bytes: &[u8]) -> Vec<Member> {
        let mut ar = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let pax = e
                .pax_extensions()
                .unwrap()
                .map(|p| {
                    p.map(|x| {
                        let x = x.unwrap();
                        (x.key().unwrap().to_owned(), x.value().unwrap().to_owned())
                    })
                    .collect()
                })
                .unwrap_or_default();
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.push(Member {
                name: String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                kind: h.entry_type(),
                data,
                pax,
                mode: h.mode().unwrap(),
                mtime: h.mtime().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap()),
                raw: *h.as_bytes(),
            });
        }
        out
    }

    fn fake_pgdata() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let pg = tmp.path().join("pgdata");
        touch(&pg, "PG_VERSION", b"15\n");
        touch(&pg, "postmaster.pid", b"123");
        touch(&pg, "base/5/16384", &vec![7u8; 70_000]);
        touch(&pg, "base/5/t3_16384", b"tmp");
        touch(&pg, "base/pgsql_tmp/pgsql_tmp1.0", b"tmp");
        touch(&pg, "global/pg_control", b"control");
        touch(&pg, "pg_wal/000000010000000000000001", b"wal");
        fs::create_dir_all(pg.join("pg_tblspc")).unwrap();
        symlink(tmp.path(), pg.join("pg_tblspc/16384")).unwrap();
        symlink("PG_VERSION", pg.join("version_link")).unwrap();
        (tmp, pg)
    }

    #[test]
    fn round_trip_with_tar_crate() {
        let (_tmp, pg) = fake_pgdata();
        let entries = walk_pgdata(&pg, &[]).unwrap();
        let mut w = TarWriter::new(Vec::new());
        let mut content = 0;
        for e in &entries {
            content += w.append_entry(e).unwrap().content_bytes();
        }
        assert_eq!(content, 3 + 70_000);
        let added = w.append_file_as(PG_CONTROL, &pg.join(PG_CONTROL)).unwrap();
        assert_eq!(added, Added { size: 7, padded: 0 });
        w.append_backup_label(b"START WAL LOCATION: 0/2000028\n", &pg)
            .unwrap();
        let written = w.bytes_written();
        let bytes = w.finish().unwrap();
        assert!(bytes.len() as u64 >= written + 1024);
        assert_eq!(bytes.len() % 10240, 0);

        let members = read_back(&bytes);
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "./",
                "./PG_VERSION",
                "./version_link",
                "base/",
                "base/5/",
                "base/5/16384",
                "global/",
                "pg_tblspc/",
                "pg_wal/",
                "global/pg_control",
                "backup_label",
            ]
        );
        let pgmeta = fs::metadata(&pg).unwrap();
        for m in &members[..members.len() - 1] {
            // ustar magic and version, Python-style checksum.
            assert_eq!(&m.raw[257..265], b"ustar\x0000");
            assert_eq!(m.raw[154], 0);
            assert_eq!(m.raw[155], b' ');
            let mtime = &m.pax.iter().find(|(k, _)| k == "mtime").unwrap().1;
            let f: f64 = mtime.parse().unwrap();
            assert_eq!(f.round_ties_even() as u64, m.mtime);
            assert!(mtime.contains('.'));
        }
        let root = &members[0];
        assert_eq!(root.kind, tar::EntryType::Directory);
        assert_eq!(root.mode, pgmeta.mode() & 0o7777);
        assert_eq!(root.uid, u64::from(pgmeta.uid()));
        let f = &members[5];
        assert_eq!(f.data, vec![7u8; 70_000]);
        assert_eq!(f.kind, tar::EntryType::Regular);
        let l = &members[2];
        assert_eq!(l.kind, tar::EntryType::Symlink);
        assert_eq!(l.link.as_deref(), Some("PG_VERSION"));
        assert_eq!(members[9].data, b"control");
        let label = &members[10];
        assert_eq!(label.data, b"START WAL LOCATION: 0/2000028\n");
        assert_eq!(label.mode, 0o644);
        assert_eq!(label.mtime, 0);
        assert_eq!(label.uid, 0);
        assert_eq!(label.gid, u64::from(pgmeta.gid()));
        assert!(label.pax.is_empty());
        assert_eq!(&label.raw[265..265 + 32], &[0u8; 32]);
    }

    #[test]
    fn shrinking_and_growing_files_keep_the_header_size() {
        let mut w = TarWriter::new(Vec::new());
        let mut member = super::Member {
            name: "base/5/1".into(),
            typ: Type::Regular,
            mode: 0o600,
            uid: 26,
            gid: 26,
            size: 1000,
            mtime: Mtime::Float(1_700_000_000.25),
            linkname: String::new(),
            uname: "postgres".into(),
            gname: "postgres".into(),
        };
        // Shrank to 300 bytes: 700 bytes of zeros.
        let padded = w.write_member(&member, &[1u8; 300][..]).unwrap();
        assert_eq!(padded, 700);
        // Grew to 2000 bytes: cut at 1000.
        member.name = "base/5/2".into();
        let padded = w.write_member(&member, &[2u8; 2000][..]).unwrap();
        assert_eq!(padded, 0);
        w.append_bytes("after", b"x", 0o600, 5, 1, 2).unwrap();
        let bytes = w.finish().unwrap();
        let members = read_back(&bytes);
        assert_eq!(members.len(), 3);
        let mut expect = vec![1u8; 300];
        expect.resize(1000, 0);
        assert_eq!(members[0].data, expect);
        assert_eq!(members[0].pax, [("mtime".into(), "1700000000.25".into())]);
        assert_eq!(members[1].data, vec![2u8; 1000]);
        assert_eq!(members[2].name, "after");
        assert_eq!(members[2].data, b"x");
    }

    #[test]
    fn vanished_entries_are_skipped() {
        let (_tmp, pg) = fake_pgdata();
        let entries = walk_pgdata(&pg, &[]).unwrap();
        fs::remove_file(pg.join("base/5/16384")).unwrap();
        fs::remove_file(pg.join("version_link")).unwrap();
        let mut w = TarWriter::new(Vec::new());
        let mut vanished = Vec::new();
        for e in &entries {
            if w.append_entry(e).unwrap() == Appended::Vanished {
                vanished.push(e.name.clone());
            }
        }
        assert_eq!(vanished, ["./version_link", "base/5/16384"]);
        assert!(w.append_file_as("x", &pg.join("nope")).is_err());
        let members = read_back(&w.finish().unwrap());
        assert_eq!(members.len(), entries.len() - 2);
    }

    #[test]
    fn long_names_and_big_ids_use_pax() {
        let mut w = TarWriter::new(Vec::new());
        let long = format!("base/{}", "x".repeat(150));
        w.append_bytes(&long, b"abc", 0o600, 0, 1_000_680_000, 1_000_680_000)
            .unwrap();
        w.append_bytes("caf\u{e9}", b"", 0o600, 8u64.pow(11), 0, 0)
            .unwrap();
        let bytes = w.finish().unwrap();
        // The pax header and its records take two blocks; the ustar header follows.
        assert_eq!(bytes[156], b'x');
        assert_eq!(&bytes[1024 + 108..1024 + 124], b"0000000\x000000000\x00");
        let members = read_back(&bytes);
        assert_eq!(members[0].name, long);
        assert_eq!(
            members[0].pax,
            [
                ("path".to_string(), long.clone()),
                ("uid".to_string(), "1000680000".to_string()),
                ("gid".to_string(), "1000680000".to_string()),
            ]
        );
        // The tar crate applies pax uid/gid to the header it returns.
        assert_eq!(members[0].uid, 1_000_680_000);
        assert_eq!(&members[0].raw[..100], &long.as_bytes()[..100]);
        assert_eq!(members[0].data, b"abc");
        assert_eq!(members[1].name, "caf\u{e9}");
        assert_eq!(&members[1].raw[..5], b"caf?\0");
        assert_eq!(
            members[1].pax,
            [
                ("path".to_string(), "caf\u{e9}".to_string()),
                ("mtime".to_string(), "8589934592".to_string()),
            ]
        );
    }

    #[test]
    fn pax_records_and_float_repr_match_python() {
        let mut v = Vec::new();
        pax_record(&mut v, "mtime", b"1795557254.7642708");
        assert_eq!(v, b"28 mtime=1795557254.7642708\n");
        let mut v = Vec::new();
        pax_record(&mut v, "path", &[b'a'; 93]);
        // 4 + 93 + 3 = 100, plus three digits.
        assert!(v.starts_with(b"103 path="));
        assert_eq!(v.len(), 103);
        let mut v = Vec::new();
        pax_record(&mut v, "k", b"12345");
        // 1 + 5 + 3 = 9, plus one digit = 10: two digits, so 11.
        assert_eq!(v, b"11 k=12345\n");
        assert_eq!(py_float_repr(1_700_000_000.0), "1700000000.0");
        assert_eq!(py_float_repr(1_795_557_254.764_270_8), "1795557254.7642708");
        let f = 1_795_557_254f64 + 764_270_800f64 * 1e-9;
        assert_eq!(py_float_repr(f), "1795557254.7642708");
        assert_eq!(2.5f64.round_ties_even(), 2.0);
    }

    #[test]
    fn header_bytes_match_python_layout() {
        // The pax header block of a Python-written member, byte for byte.
        let m = super::Member {
            name: "./".into(),
            typ: Type::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: Mtime::Float(1_795_557_254.764_270_8),
            linkname: String::new(),
            uname: "root".into(),
            gname: "root".into(),
        };
        let (pax, h) = m.headers();
        let (ph, records) = pax.unwrap();
        assert_eq!(records, b"28 mtime=1795557254.7642708\n");
        let p = ph.as_bytes();
        assert_eq!(&p[..15], b"././@PaxHeader\0");
        assert_eq!(
            &p[100..156],
            b"0000000\x000000000\x000000000\x0000000000034\x0000000000000\x00010212\x00 "
        );
        assert_eq!(p[156], b'x');
        let h = h.as_bytes();
        assert_eq!(&h[..3], b"./\0");
        assert_eq!(
            &h[100..148],
            b"0000755\x000000000\x000000000\x0000000000000\x0015301403607\x00"
        );
        assert_eq!(&h[148..157], b"007750\x00 5");
        assert_eq!(&h[257..277], b"ustar\x0000root\0\0\0\0\0\0\0\0");
    }
}
