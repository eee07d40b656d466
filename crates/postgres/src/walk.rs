//! Walking PGDATA and tablespaces the way barman-cloud 3.19.1 does, to list the members
//! of the `data` tar and of the `<oid>` tablespace tars.
//!
//! What barman does (`CloudUploadController.upload_directory` in `barman/cloud.py`,
//! rules in `barman/postgres_plumbing.py`, matcher in `barman/fs.py`):
//!
//! * `os.walk(src)` top-down; for each directory: the directory itself, then its
//!   non-directories, then its subdirectories, recursively. A directory is the root
//!   member `./`; files directly in the root are `./NAME`; deeper paths carry no `./`
//!   (`base/5/2609`); directories end in `/`.
//! * Every path is checked against rsync-like rules: a rule starting with `/` is
//!   anchored at the root, any other rule also matches as a suffix (`**/RULE`); `*`
//!   matches within one path component, `**` across components, `?` one character.
//! * Symbolic links that resolve to directories are neither followed nor stored
//!   (`os.walk` counts them as directories and does not descend into links); links to
//!   anything else, or dangling links, are stored as links.
//!
//! Where barrelman deliberately differs (all of it only narrows what is stored, so
//! barman can restore what barrelman writes and the other way round):
//!
//! * Order: `os.walk` lists a directory in the file system's order (hash order on
//!   ext4/xfs), which is not reproducible; we sort every directory listing by name
//!   (byte order). Barman's readers do not depend on the order.
//! * An excluded directory is pruned with everything below it. Barman only skips the
//!   directory and the files directly in it and still descends into its
//!   subdirectories (its `continue` does not prune `os.walk`), so e.g. a tablespace
//!   located inside PGDATA loses its top directory entry but its `PG_*` subtree is
//!   copied into `data` as well, and a tablespace tar also receives the subdirectories
//!   of `PG_<other major>_*` or `lost+found` (without their top directory).
//! * Barman writes the temporary-relation rule as `**/[0-9]*/t[0-9]*_[0-9]*`, but its
//!   matcher has no character classes (`[` is escaped into a literal), so the rule
//!   never matches and barman stores temporary relation files. We give the rule its
//!   evident meaning (a digit), as the brief and PostgreSQL's `pg_basebackup` do.
//! * Sockets, FIFOs and device files are skipped (barman skips sockets, stores FIFOs
//!   and devices); barrelman's extractor refuses them anyway.
//! * Everything directly inside `pg_tblspc/` that is a symbolic link is skipped
//!   (barman skips the links of the tablespaces it knows about; links to directories
//!   are never stored anyway). In-place tablespaces (real directories in
//!   `pg_tblspc/`) are kept.
//! * A directory that cannot be listed is an error (barman's `os.walk` silently skips
//!   it); a directory or file that vanished during the walk is skipped, like barman.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// The member that the walk leaves out and the backup adds after the walk.
pub const PG_CONTROL: &str = "global/pg_control";

/// barman's `PGDATA_EXCLUDE_LIST`: applied to the PGDATA walk only.
const PGDATA_EXCLUDE_LIST: &[&str] = &[
    "/pg_log/*",
    "/log/*",
    "/pg_xlog/*",
    "/pg_wal/*",
    "/global/pg_control",
];

/// barman's `EXCLUDE_LIST`: applied to PGDATA and to tablespaces. `[0-9]` means a
/// digit here (see the module documentation).
const EXCLUDE_LIST: &[&str] = &[
    "pgsql_tmp*",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "pg_internal.init",
    "postmaster.pid",
    "postmaster.opts",
    "recovery.conf",
    "standby.signal",
    "**/[0-9]*/t[0-9]*_[0-9]*",
    "pg_dynshmem/*",
    "pg_notify/*",
    "pg_replslot/*",
    "pg_serial/*",
    "pg_stat_tmp/*",
    "pg_snapshots/*",
    "pg_subtrans/*",
];

/// What a walked entry is, as seen (without following links) during the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory (the walked root included); its member name ends in `/`.
    Dir,
    /// A regular file; `size` as seen by the walk (the tar header uses the size seen
    /// when the file is added).
    File {
        /// Bytes, from the walk's `lstat`.
        size: u64,
    },
    /// A symbolic link that does not resolve to a directory.
    Symlink {
        /// The link's target, as `readlink` returns it.
        target: PathBuf,
    },
}

/// One member to put in a tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    /// Absolute path on disk.
    pub path: PathBuf,
    /// Member name in the tar (`./`, `./PG_VERSION`, `base/`, `base/5/2609`).
    pub name: String,
    /// What the walk found there.
    pub kind: EntryKind,
}

/// The `PG_<major>_` directory prefix of a tablespace for a server major version as
/// barman spells it (`"15"` → `PG_15_`, `"9.6"` → `PG_9.6_`).
pub fn tablespace_version_prefix(server_major_version: &str) -> String {
    format!("PG_{server_major_version}_")
}

/// The members of the `data` tar, in order, without `global/pg_control`, the
/// configuration files that live outside PGDATA and `backup_label`.
///
/// `tablespaces_inside`: tablespace locations, absolute or relative to PGDATA; those
/// inside PGDATA are left out (they go to their own tar), others are ignored.
pub fn walk_pgdata(pgdata: &Path, tablespaces_inside: &[PathBuf]) -> io::Result<Vec<WalkEntry>> {
    let given = std::path::absolute(pgdata)?;
    // barman: `if os.path.islink(pgdata_dir): pgdata_dir = os.path.realpath(pgdata_dir)`
    let root = if fs::symlink_metadata(&given)?.file_type().is_symlink() {
        fs::canonicalize(&given)?
    } else {
        given.clone()
    };
    let mut pruned: Vec<String> = Vec::new();
    for ts in tablespaces_inside {
        let rel = if ts.is_absolute() {
            match ts
                .strip_prefix(&given)
                .or_else(|_| ts.strip_prefix(&root))
                .ok()
            {
                Some(rel) => rel.to_path_buf(),
                None => continue,
            }
        } else {
            ts.clone()
        };
        if let Some(rel) = normalize_relative(&rel) {
            pruned.push(rel);
        }
    }
    let rules = Rules::new(PGDATA_EXCLUDE_LIST.iter().chain(EXCLUDE_LIST));
    let ctx = Walk {
        rules,
        pruned_dirs: pruned,
        pgdata: true,
    };
    let mut out = Vec::new();
    ctx.walk_dir(&root, None, &mut out)?;
    Ok(out)
}

/// The members of a tablespace tar: the `PG_<major>_*` directories directly inside
/// `location` (`version_dir_prefix` like `PG_15_`) and everything below them, names
/// relative to `location`, no root entry.
pub fn walk_tablespace(location: &Path, version_dir_prefix: &str) -> io::Result<Vec<WalkEntry>> {
    let location = std::path::absolute(location)?;
    let ctx = Walk {
        rules: Rules::new(EXCLUDE_LIST.iter()),
        pruned_dirs: Vec::new(),
        pgdata: false,
    };
    let mut out = Vec::new();
    let children = list_dir(&location)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("tablespace location {} does not exist", location.display()),
        )
    })?;
    for child in children {
        if child.class == Class::Dir && child.name.starts_with(version_dir_prefix) {
            let path = location.join(&child.name);
            ctx.walk_dir(&path, Some(&child.name), &mut out)?;
        }
    }
    Ok(out)
}

struct Walk {
    rules: Rules,
    /// Directories (relative paths, no `./`) left out with their whole subtree.
    pruned_dirs: Vec<String>,
    /// PGDATA walk (as opposed to a tablespace walk).
    pgdata: bool,
}

impl Walk {
    /// `rel` is `None` for the PGDATA root.
    fn walk_dir(&self, dir: &Path, rel: Option<&str>, out: &mut Vec<WalkEntry>) -> io::Result<()> {
        let children = match list_dir(dir)? {
            Some(children) => children,
            // Vanished since its parent was listed: WAL replay takes care of it.
            None => return Ok(()),
        };
        out.push(WalkEntry {
            path: dir.to_path_buf(),
            name: match rel {
                None => "./".to_owned(),
                Some(rel) => format!("{rel}/"),
            },
            kind: EntryKind::Dir,
        });
        let mut subdirs = Vec::new();
        for child in children {
            let match_path = match rel {
                None => format!("./{}", child.name),
                Some(rel) => format!("{rel}/{}", child.name),
            };
            match child.class {
                Class::Dir => subdirs.push(child),
                Class::LinkToDir | Class::Special => {}
                Class::File { .. } | Class::Link { .. } => {
                    if !self.rules.allowed(&match_path, false) {
                        continue;
                    }
                    if self.pgdata
                        && rel == Some("pg_tblspc")
                        && matches!(child.class, Class::Link { .. })
                    {
                        continue;
                    }
                    out.push(WalkEntry {
                        path: dir.join(&child.name),
                        name: match_path,
                        kind: match child.class {
                            Class::File { size } => EntryKind::File { size },
                            Class::Link { target } => EntryKind::Symlink { target },
                            _ => unreachable!(),
                        },
                    });
                }
            }
        }
        for child in subdirs {
            let sub_rel = match rel {
                None => child.name.clone(),
                Some(rel) => format!("{rel}/{}", child.name),
            };
            if !self.rules.allowed(&sub_rel, true) || self.pruned_dirs.contains(&sub_rel) {
                continue;
            }
            self.walk_dir(&dir.join(&child.name), Some(&sub_rel), out)?;
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Dir,
    LinkToDir,
    File { size: u64 },
    Link { target: PathBuf },
    Special,
}

struct Child {
    name: String,
    class: Class,
}

/// The entries of `dir`, sorted by name; `None` if `dir` vanished.
fn list_dir(dir: &Path) -> io::Result<Option<Vec<Child>>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(annotate(e, dir, "listing")),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| annotate(e, dir, "listing"))?;
        let path = entry.path();
        let name = match entry.file_name().into_string() {
            Ok(name) => name,
            Err(raw) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: file name {raw:?} is not UTF-8", dir.display()),
                ))
            }
        };
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(annotate(e, &path, "reading the metadata of")),
        };
        let ft = meta.file_type();
        let class = if ft.is_dir() {
            Class::Dir
        } else if ft.is_file() {
            Class::File { size: meta.len() }
        } else if ft.is_symlink() {
            // `os.walk` follows the link to decide whether it is a directory.
            if fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false) {
                Class::LinkToDir
            } else {
                match fs::read_link(&path) {
                    Ok(target) => Class::Link { target },
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(annotate(e, &path, "reading the link")),
                }
            }
        } else {
            Class::Special
        };
        out.push(Child { name, class });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(out))
}

fn annotate(e: io::Error, path: &Path, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// `a/./b/` → `a/b`; `None` for paths with `..`, absolute ones, or the root itself.
fn normalize_relative(p: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

/// A list of barman path rules (`barman.fs._match_path`).
struct Rules(Vec<Rule>);

struct Rule {
    anchored: bool,
    dir_only: bool,
    pattern: Vec<Tok>,
    /// `**/` + pattern, for unanchored rules.
    suffix_pattern: Vec<Tok>,
}

impl Rules {
    fn new<'a>(rules: impl Iterator<Item = &'a &'a str>) -> Rules {
        Rules(
            rules
                .map(|rule| {
                    let (rule, dir_only) = match rule.strip_suffix('/') {
                        Some(r) => (r, true),
                        None => (*rule, false),
                    };
                    let (rule, anchored) = match rule.strip_prefix('/') {
                        Some(r) => (r, true),
                        None => (rule, false),
                    };
                    Rule {
                        anchored,
                        dir_only,
                        pattern: compile(rule),
                        suffix_pattern: compile(&format!("**/{rule}")),
                    }
                })
                .collect(),
        )
    }

    fn matches(&self, path: &str, is_dir: bool) -> bool {
        self.0.iter().any(|r| {
            (is_dir || !r.dir_only)
                && (glob_match(&r.pattern, path.as_bytes())
                    || (!r.anchored && glob_match(&r.suffix_pattern, path.as_bytes())))
        })
    }

    /// barman's `path_allowed(exclude, None, path, is_dir)`.
    fn allowed(&self, path: &str, is_dir: bool) -> bool {
        !self.matches(path, is_dir)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(u8),
    /// `?`: any one character.
    Any,
    /// `*`: any run without `/`.
    Star,
    /// `**`: any run.
    DoubleStar,
    /// `[0-9]`.
    Digit,
}

fn compile(pattern: &str) -> Vec<Tok> {
    let b = pattern.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"**") {
            out.push(Tok::DoubleStar);
            i += 2;
        } else if b[i..].starts_with(b"[0-9]") {
            out.push(Tok::Digit);
            i += 5;
        } else {
            out.push(match b[i] {
                b'*' => Tok::Star,
                b'?' => Tok::Any,
                c => Tok::Lit(c),
            });
            i += 1;
        }
    }
    out
}

/// Whole-string match of `s` against `p` (backtracking; patterns are tiny).
fn glob_match(p: &[Tok], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((tok, rest)) => match tok {
            Tok::Lit(c) => s.first() == Some(c) && glob_match(rest, &s[1..]),
            Tok::Any => !s.is_empty() && glob_match(rest, &s[1..]),
            Tok::Digit => s.first().is_some_and(u8::is_ascii_digit) && glob_match(rest, &s[1..]),
            Tok::Star => {
                let run = s.iter().position(|&c| c == b'/').unwrap_or(s.len());
                (0..=run).any(|n| glob_match(rest, &s[n..]))
            }
            Tok::DoubleStar => (0..=s.len()).any(|n| glob_match(rest, &s[n..])),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(entries: &[WalkEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.name.as_str()).collect()
    }

    fn touch(root: &Path, rel: &str, content: &[u8]) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn mkdir(root: &Path, rel: &str) {
        fs::create_dir_all(root.join(rel)).unwrap();
    }

    #[test]
    fn rules_match_like_barman() {
        let r = Rules::new(PGDATA_EXCLUDE_LIST.iter().chain(EXCLUDE_LIST));
        // Cases checked against barman.fs.path_allowed (3.19.1), except the
        // temporary relation rule which barman never matches.
        for (path, dir, allowed) in [
            (".", true, true),
            ("./postmaster.pid", false, false),
            ("./postmaster.opts", false, false),
            ("./recovery.conf", false, false),
            ("./standby.signal", false, false),
            ("./recovery.signal", false, true),
            ("./.check-empty-wal-archive", false, true),
            ("./postgresql.auto.conf.tmp", false, false),
            ("./current_logfiles.tmp", false, false),
            ("global/pg_internal.init", false, false),
            ("base/5/pg_internal.init", false, false),
            ("global/pg_control", false, false),
            ("global/pg_control.old", false, true),
            ("pg_wal", true, true),
            ("pg_wal/000000010000000000000001", false, false),
            ("pg_wal/archive_status", true, false),
            ("pg_xlog/x", false, false),
            ("pg_log", true, true),
            ("pg_log/postgresql.log", false, false),
            ("log/postgresql.log", false, false),
            ("base/log/x", false, true),
            ("base/pgsql_tmp", true, false),
            ("base/pgsql_tmp/pgsql_tmp1.0.fileset", true, false),
            ("pg_replslot/slot1", true, false),
            ("pg_replslot", true, true),
            ("pg_stat_tmp/global.stat", false, false),
            ("pg_notify/0000", false, false),
            ("pg_subtrans/0000", false, false),
            ("pg_serial/0000", false, false),
            ("pg_snapshots/x", false, false),
            ("pg_dynshmem/x", false, false),
            ("base/5/t3_16384", false, false),
            ("base/5/t3_16384_fsm", false, false),
            ("base/5/t3_16384.1", false, false),
            ("base/5/16384", false, true),
            ("base/5/tx_1", false, true),
            ("PG_15_1/5/t12_3", false, false),
            ("./t3_16384", false, true),
        ] {
            assert_eq!(r.allowed(path, dir), allowed, "{path}");
        }
    }

    #[test]
    fn pgdata_order_naming_and_exclusions() {
        let tmp = tempfile::tempdir().unwrap();
        let pg = tmp.path().join("pgdata");
        let outside = tmp.path().join("outside");
        mkdir(tmp.path(), "outside/PG_15_1");
        touch(&pg, "PG_VERSION", b"15\n");
        touch(&pg, "postgresql.conf", b"");
        touch(&pg, "postmaster.pid", b"1");
        touch(&pg, "postmaster.opts", b"x");
        touch(&pg, "standby.signal", b"");
        touch(&pg, "recovery.signal", b"");
        touch(&pg, ".check-empty-wal-archive", b"");
        touch(&pg, "base/1/112", b"a");
        touch(&pg, "base/5/16384", b"abc");
        touch(&pg, "base/5/t3_16384", b"tmp");
        touch(&pg, "base/5/pg_internal.init", b"x");
        touch(&pg, "base/pgsql_tmp/pgsql_tmp123.0", b"x");
        touch(&pg, "global/1261", b"g");
        touch(&pg, "global/pg_control", b"c");
        touch(&pg, "pg_wal/000000010000000000000001", b"w");
        touch(
            &pg,
            "pg_wal/archive_status/000000010000000000000001.done",
            b"",
        );
        touch(&pg, "pg_replslot/s1/state", b"");
        touch(&pg, "pg_stat_tmp/global.stat", b"");
        touch(&pg, "log/postgresql.log", b"");
        touch(&pg, "tbs/ts1/PG_15_1/5/1", b"");
        touch(&pg, "tbs/keep", b"");
        mkdir(&pg, "pg_tblspc");
        mkdir(&pg, "pg_notify");
        symlink(&outside, pg.join("pg_tblspc/16384")).unwrap();
        symlink("/nonexistent/dangling", pg.join("pg_tblspc/16385")).unwrap();
        symlink(&outside, pg.join("linked_dir")).unwrap();
        symlink("/etc/hostname", pg.join("server.crt")).unwrap();

        let entries = walk_pgdata(&pg, &[pg.join("tbs/ts1")]).unwrap();
        assert_eq!(
            names(&entries),
            [
                "./",
                "./.check-empty-wal-archive",
                "./PG_VERSION",
                "./postgresql.conf",
                "./recovery.signal",
                "./server.crt",
                "base/",
                "base/1/",
                "base/1/112",
                "base/5/",
                "base/5/16384",
                "global/",
                "global/1261",
                "log/",
                "pg_notify/",
                "pg_replslot/",
                "pg_stat_tmp/",
                "pg_tblspc/",
                "pg_wal/",
                "tbs/",
                "tbs/keep",
            ]
        );
        let root = &entries[0];
        assert_eq!(root.path, pg);
        assert_eq!(root.kind, EntryKind::Dir);
        let f = entries.iter().find(|e| e.name == "base/5/16384").unwrap();
        assert_eq!(f.kind, EntryKind::File { size: 3 });
        assert_eq!(f.path, pg.join("base/5/16384"));
        let l = entries.iter().find(|e| e.name == "./server.crt").unwrap();
        assert_eq!(
            l.kind,
            EntryKind::Symlink {
                target: PathBuf::from("/etc/hostname")
            }
        );
        assert!(entries.iter().all(|e| e.path.is_absolute()));

        // Relative tablespace locations are accepted too.
        let rel = walk_pgdata(&pg, &[PathBuf::from("tbs/ts1/")]).unwrap();
        assert_eq!(names(&rel), names(&entries));
        // Without the exclusion, the tablespace is part of PGDATA.
        let all = walk_pgdata(&pg, &[]).unwrap();
        assert!(names(&all).contains(&"tbs/ts1/PG_15_1/5/1"));
    }

    #[test]
    fn pgdata_symlink_is_resolved() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        touch(&real, "PG_VERSION", b"15\n");
        touch(&real, "base/1/1", b"");
        let link = tmp.path().join("link");
        symlink(&real, &link).unwrap();
        let entries = walk_pgdata(&link, &[real.join("base")]).unwrap();
        assert_eq!(names(&entries), ["./", "./PG_VERSION"]);
        assert_eq!(entries[0].path, fs::canonicalize(&real).unwrap());
    }

    #[test]
    fn tablespace_walk() {
        let tmp = tempfile::tempdir().unwrap();
        let loc = tmp.path();
        touch(loc, "PG_15_202209061/5/16392", b"x");
        touch(loc, "PG_15_202209061/5/t4_16400", b"x");
        touch(loc, "PG_15_202209061/pgsql_tmp/pgsql_tmp1.0", b"x");
        touch(loc, "PG_15_202209061/5/16393", b"x");
        mkdir(loc, "PG_15_202209061/6");
        touch(loc, "PG_14_202107181/5/1", b"old");
        touch(loc, "lost+found/x/y", b"");
        touch(loc, "stray", b"");
        symlink(loc.join("PG_15_202209061"), loc.join("PG_15_link")).unwrap();
        let entries = walk_tablespace(loc, &tablespace_version_prefix("15")).unwrap();
        assert_eq!(
            names(&entries),
            [
                "PG_15_202209061/",
                "PG_15_202209061/5/",
                "PG_15_202209061/5/16392",
                "PG_15_202209061/5/16393",
                "PG_15_202209061/6/",
            ]
        );
        assert_eq!(entries[0].path, loc.join("PG_15_202209061"));
        assert_eq!(tablespace_version_prefix("9.6"), "PG_9.6_");
    }

    #[test]
    fn missing_pgdata_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(walk_pgdata(&tmp.path().join("nope"), &[]).is_err());
        assert!(walk_tablespace(&tmp.path().join("nope"), "PG_15_").is_err());
    }
}
