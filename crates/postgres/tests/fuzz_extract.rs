//! Fuzzing of tar extraction (the restore path of every backup part): arbitrary tar
//! bytes, generated from entries with `..`, absolute names, symbolic and hard
//! links, long GNU and PAX names, special files, then randomly mutated, are
//! extracted into a sandbox. Properties: extraction never panics, and nothing is
//! ever written outside the target: after each case the whole temporary tree is
//! walked, the file beside the target is unchanged, and no symbolic link inside the
//! target resolves outside it. The corpus (`fuzz/corpus/tar/`) holds real tars
//! (as Python's tarfile, i.e. barman, writes them, GNU and ustar) and malicious
//! ones; it is replayed first.

#[path = "../../../fuzz/support.rs"]
mod support;

use barrelman_postgres::extract::{extract_tar, scan_tar};
use barrelman_postgres::tarball::TarWriter;
use proptest::prelude::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use support::*;

const VICTIM: &[u8] = b"original";
const NEST: &str = "n1/n2/n3/n4/n5/n6";

/// A temporary tree `sandbox/{target,outside/victim}`.
struct Sandbox {
    tmp: tempfile::TempDir,
    target: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().expect("tempdir");
        // Deep enough that a name climbing with up to 8 `..` still lands inside
        // the walked tree, where the check sees it.
        let target = tmp.path().join(NEST).join("sandbox/target");
        let outside = tmp.path().join(NEST).join("sandbox/outside");
        fs::create_dir_all(&target).expect("target");
        fs::create_dir_all(&outside).expect("outside");
        fs::write(outside.join("victim"), VICTIM).expect("victim");
        fs::set_permissions(outside.join("victim"), fs::Permissions::from_mode(0o644))
            .expect("victim mode");
        Sandbox {
            tmp,
            target,
            outside,
        }
    }

    /// Nothing outside the target changed, and every link inside stays inside.
    fn assert_contained(&self, case: &str) {
        let root = self.tmp.path();
        let mut outside_target = Vec::new();
        walk(root, &mut |p| {
            if !p.starts_with(&self.target) {
                outside_target.push(p.strip_prefix(root).expect("under root").to_path_buf());
            }
        });
        outside_target.sort();
        let mut expected: Vec<PathBuf> = Vec::new();
        let mut dir = PathBuf::new();
        for c in Path::new(NEST).join("sandbox").components() {
            dir.push(c);
            expected.push(dir.clone());
        }
        expected.push(dir.join("outside"));
        expected.push(dir.join("outside/victim"));
        expected.sort();
        assert_eq!(
            outside_target, expected,
            "{case}: written outside the target"
        );
        let victim = self.outside.join("victim");
        let meta = fs::symlink_metadata(&victim).expect("victim");
        assert!(meta.file_type().is_file(), "{case}: victim replaced");
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            0o644,
            "{case}: victim mode"
        );
        assert_eq!(fs::read(&victim).expect("victim"), VICTIM, "{case}: victim");
        assert!(
            !Path::new("/tmp/barrelman-fuzz-abs").exists(),
            "{case}: absolute name written"
        );
        // Symbolic links: resolved lexically (they may dangle), never above the
        // target.
        let mut links = Vec::new();
        walk(&self.target, &mut |p| {
            if fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
                links.push(p.to_path_buf());
            }
        });
        for link in links {
            let to = fs::read_link(&link).expect("readlink");
            assert!(
                !to.is_absolute(),
                "{case}: absolute link {}",
                link.display()
            );
            let rel = link
                .parent()
                .expect("parent")
                .strip_prefix(&self.target)
                .expect("inside");
            let mut depth: Vec<&std::ffi::OsStr> = rel
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n),
                    _ => None,
                })
                .collect();
            for c in to.components() {
                match c {
                    Component::ParentDir => {
                        assert!(
                            depth.pop().is_some(),
                            "{case}: link {} -> {} climbs above the target",
                            link.display(),
                            to.display()
                        );
                    }
                    Component::Normal(n) => depth.push(n),
                    _ => {}
                }
            }
            if let Ok(real) = fs::canonicalize(&link) {
                let target = fs::canonicalize(&self.target).expect("target");
                assert!(
                    real.starts_with(&target),
                    "{case}: link {} resolves to {}",
                    link.display(),
                    real.display()
                );
            }
        }
    }
}

/// Calls `f` on every path under `dir` (not following links), `dir` excluded.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        f(&p);
        if fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_dir()) {
            walk(&p, f);
        }
    }
}

/// Extracts each part in turn into one sandbox (the parts of a split backup go
/// into the same directory) and checks containment after each.
fn check_extract(case: &str, parts: &[Vec<u8>]) {
    let sandbox = Sandbox::new();
    for (i, bytes) in parts.iter().enumerate() {
        let _ = scan_tar(bytes.as_slice());
        match extract_tar(bytes.as_slice(), &sandbox.target) {
            Ok(_) => {}
            Err(e) => {
                let _ = e.to_string();
            }
        }
        // Extraction may leave directories without write or search permission
        // (modes come from the archive): the walk must still see everything.
        make_walkable(&sandbox.target);
        sandbox.assert_contained(&format!("{case} part {i}"));
    }
}

fn make_walkable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_dir()) {
            make_walkable(&p);
        }
    }
}

#[test]
fn fuzz_corpus_tar() {
    let seeds = corpus("tar");
    for (name, bytes) in &seeds {
        check_extract(name, std::slice::from_ref(bytes));
    }
    // Every malicious seed after a benign one, as a later part of the same backup.
    for (name, bytes) in seeds.iter().filter(|(n, _)| n.starts_with("evil")) {
        for (first, benign) in seeds.iter().filter(|(n, _)| !n.starts_with("evil")) {
            check_extract(
                &format!("{first} then {name}"),
                &[benign.clone(), bytes.clone()],
            );
        }
    }
}

// ---------------------------------------------------------------- generated tars

/// How a member's names are stored.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    /// In the 100-byte ustar fields (cut to fit).
    Ustar,
    /// GNU `././@LongLink` entries (`L` for the name, `K` for the link name).
    GnuLong,
    /// A PAX extended header with `path` and `linkpath`.
    Pax,
}

#[derive(Debug, Clone)]
struct Member {
    name: Vec<u8>,
    kind: u8,
    link: Vec<u8>,
    data: Vec<u8>,
    mode: u32,
    encoding: Encoding,
}

const COMPONENTS: &[&[u8]] = &[
    b"a",
    b"b",
    b"c",
    b"..",
    b".",
    b"",
    b"outside",
    b"victim",
    b"target",
    b"sandbox",
    b"\xc3\xa9",
    b"\xff",
    b"~",
    b"a b",
    b"tmp",
];

fn component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::sample::select(COMPONENTS).prop_map(<[u8]>::to_vec),
        1 => (1usize..200).prop_map(|n| vec![b'x'; n]),
        1 => prop::collection::vec(any::<u8>(), 1..6),
    ]
}

const LEADS: &[&[u8]] = &[b"", b"/", b"./", b"//"];

/// A path of components, sometimes absolute or with `./` in front.
fn path() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(LEADS),
        prop::collection::vec(component(), 1..5),
        any::<bool>(),
    )
        .prop_map(|(lead, comps, slash)| {
            let mut p = lead.to_vec();
            p.extend(comps.join(&b'/'));
            if slash {
                p.push(b'/');
            }
            p
        })
}

fn member() -> impl Strategy<Value = Member> {
    (
        path(),
        // Regular (both spellings), hard link, symlink, char, block, dir, FIFO,
        // contiguous, GNU sparse, PAX global, unknown.
        prop::sample::select(&b"00\x0012345678SgZ"[..]),
        path(),
        prop::collection::vec(any::<u8>(), 0..64),
        prop::sample::select(&[0o644u32, 0o755, 0o000, 0o4777, 0o100][..]),
        prop::sample::select(&[Encoding::Ustar, Encoding::GnuLong, Encoding::Pax][..]),
    )
        .prop_map(|(name, kind, link, data, mode, encoding)| Member {
            name,
            kind,
            link,
            data,
            mode,
            encoding,
        })
}

fn raw_header(name: &[u8], link: &[u8], kind: u8, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    {
        let old = h.as_old_mut();
        let n = name.len().min(old.name.len());
        old.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(old.linkname.len());
        old.linkname[..l].copy_from_slice(&link[..l]);
    }
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

fn gnu_long(b: &mut tar::Builder<Vec<u8>>, kind: u8, value: &[u8]) {
    let mut data = value.to_vec();
    data.push(0);
    let h = raw_header(b"././@LongLink", b"", kind, data.len() as u64, 0o644);
    b.append(&h, data.as_slice()).expect("append");
}

fn build_tar(members: &[Member]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        match m.encoding {
            Encoding::Ustar => {}
            Encoding::GnuLong => {
                gnu_long(&mut b, b'L', &m.name);
                if !m.link.is_empty() {
                    gnu_long(&mut b, b'K', &m.link);
                }
            }
            Encoding::Pax => {
                b.append_pax_extensions([("path", &m.name[..]), ("linkpath", &m.link[..])])
                    .expect("pax");
            }
        }
        // Links carry no data; everything else its bytes.
        let data: &[u8] = if matches!(m.kind, b'1' | b'2') {
            b""
        } else {
            &m.data
        };
        let h = raw_header(&m.name, &m.link, m.kind, data.len() as u64, m.mode);
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("finish")
}

/// A tar part: generated members, its bytes sometimes mutated afterwards.
fn tar_part() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(member(), 0..12),
        prop::option::weighted(0.3, prop::collection::vec(edit(), 1..4)),
    )
        .prop_map(|(members, edits)| {
            let bytes = build_tar(&members);
            match edits {
                Some(edits) => apply(bytes, &edits, &[b"..", b"/", b"\0"]),
                None => bytes,
            }
        })
}

proptest! {
    #[test]
    fn fuzz_extract_generated_tars(parts in prop::collection::vec(tar_part(), 1..3)) {
        check_extract("generated", &parts);
    }

    /// The parts of one backup are extracted in parallel into one directory: a
    /// part's links must not open a way out for another part racing with it.
    #[test]
    fn fuzz_extract_parts_concurrently(parts in prop::collection::vec(tar_part(), 2..4)) {
        let sandbox = Sandbox::new();
        std::thread::scope(|scope| {
            for bytes in &parts {
                let target = &sandbox.target;
                scope.spawn(move || {
                    let _ = extract_tar(bytes.as_slice(), target);
                });
            }
        });
        make_walkable(&sandbox.target);
        sandbox.assert_contained("concurrent parts");
    }

    #[test]
    fn fuzz_extract_mutated_corpus(bytes in mutated(
        corpus("tar").into_iter().map(|(_, b)| b).collect(),
        &[b"..", b"/", b"\0", b"../outside/victim"],
    )) {
        check_extract("mutated corpus", &[bytes]);
    }

    /// Whatever names TarWriter is given (long, non-ASCII, odd characters), the
    /// tar it writes extracts to the same files with the same bytes.
    #[test]
    fn fuzz_tar_writer_round_trip(files in prop::collection::btree_map(
        prop::collection::vec(
            prop::sample::select(&["a", "b", "é", "~x", "%7E", "a b", "#", "[x]", "\\"][..]),
            1..4,
        ).prop_map(|c| c.concat()),
        prop::collection::vec(any::<u8>(), 0..2048),
        1..6,
    ), long in 0usize..240) {
        let mut w = TarWriter::new(Vec::new());
        let mut expected = Vec::new();
        for (i, (name, data)) in files.iter().enumerate() {
            // One directory per file, sometimes past the 100-byte ustar field (and
            // within the 255 bytes a file name may have).
            let path = format!("d{i}{}/{name}", "l".repeat(long));
            w.append_bytes(&path, data, 0o600, 1_700_000_000, 0, 0).expect("append");
            expected.push((path, data.clone()));
        }
        let bytes = w.finish().expect("finish");
        let sandbox = Sandbox::new();
        extract_tar(bytes.as_slice(), &sandbox.target).expect("own tar extracts");
        for (path, data) in expected {
            let got = fs::read(sandbox.target.join(std::ffi::OsStr::from_bytes(path.as_bytes())))
                .expect("extracted file");
            prop_assert_eq!(got, data, "{}", path);
        }
        sandbox.assert_contained("tar writer");
    }
}
