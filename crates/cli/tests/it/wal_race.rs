//! Concurrent archives of one WAL segment: same or different bytes, same or
//! different codecs, many rounds, on SeaweedFS and on a local directory. Afterwards
//! the archive holds at most one content for the segment, and every writer that got
//! exit 0 has exactly its bytes restored.

use super::common::*;
use barrelman_core::Compression;
use barrelman_testkit::S3Server;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SEG: &str = "000000010000000000000003";
const ROUNDS: usize = 6;

/// Writers of one round: (which content, codec flag).
const SCENARIOS: [(&str, [(usize, &str); 3]); 4] = [
    (
        "same bytes, three codecs",
        [(0, "--gzip"), (0, "--zstd"), (0, "")],
    ),
    (
        "three contents, one codec",
        [(0, "--zstd"), (1, "--zstd"), (2, "--zstd")],
    ),
    (
        "three contents, three codecs",
        [(0, "--gzip"), (1, "--zstd"), (2, "--lz4")],
    ),
    (
        "two contents, three codecs",
        [(0, "--gzip"), (0, "--zstd"), (1, "--lz4")],
    ),
];

/// Where a round archives: the destination URL, and how to read back what it holds.
trait Store {
    fn url(&self) -> String;
    fn command(&self, program: &Path) -> Command;
    /// Every stored object of the segment of `server`, as (key suffix, bytes).
    fn stored(&self, server: &str) -> Vec<(String, Vec<u8>)>;
}

struct S3(S3Server);

impl Store for S3 {
    fn url(&self) -> String {
        "s3://race/p".into()
    }
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.envs(self.0.env())
            .env_remove("AWS_ENDPOINT_URL")
            .args(["--endpoint-url", self.0.endpoint.as_str()]);
        c
    }
    fn stored(&self, server: &str) -> Vec<(String, Vec<u8>)> {
        const PY: &str = r#"
import os
prefix, out = sys.argv[3], sys.argv[4]
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        name = o["Key"][len(prefix):]
        s3.download_file(bucket, o["Key"], os.path.join(out, name))
"#;
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("p/{server}/wals/0000000100000000/");
        boto3(
            &self.0,
            "race",
            PY,
            &[&prefix, dir.path().to_str().unwrap()],
        );
        read_dir(dir.path())
    }
}

struct Local(tempfile::TempDir);

impl Store for Local {
    fn url(&self) -> String {
        format!("file://{}", self.0.path().display())
    }
    fn command(&self, program: &Path) -> Command {
        Command::new(program)
    }
    fn stored(&self, server: &str) -> Vec<(String, Vec<u8>)> {
        read_dir(&self.0.path().join(server).join("wals/0000000100000000"))
    }
}

fn read_dir(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn decompressed(name: &str, bytes: &[u8]) -> Vec<u8> {
    let (_, kind) = Compression::split_suffix(name);
    let mut out = Vec::new();
    barrelman_storage::codec::decompress(kind, &mut &bytes[..], &mut out)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    out
}

fn race(store: &dyn Store, links: &Path) {
    race_with(store, links, Content::WalLike(2 << 20), &SCENARIOS, ROUNDS);
}

/// The segments a race writes.
enum Content {
    WalLike(usize),
    Random(usize),
}

impl Content {
    fn make(&self, seed: u64) -> Vec<u8> {
        match *self {
            Content::WalLike(size) => wal_like(size, seed),
            Content::Random(size) => {
                let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
                (0..size)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x >> 24) as u8
                    })
                    .collect()
            }
        }
    }
}

/// `rounds` rounds of each scenario.
fn race_with(
    store: &dyn Store,
    links: &Path,
    content: Content,
    scenarios: &[(&str, [(usize, &str); 3])],
    rounds: usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let contents: Vec<Vec<u8>> = (0..3).map(|i| content.make(100 + i)).collect();
    let url = store.url();
    let mut failures = Vec::new();
    for &(scenario, writers) in scenarios {
        for round in 0..rounds {
            let server = format!("s{}-{round}", scenario.len());
            // Each writer archives its own file of that segment name.
            let files: Vec<PathBuf> = writers
                .iter()
                .enumerate()
                .map(|(w, (content, _))| {
                    let d = dir.path().join(format!("{server}-w{w}"));
                    std::fs::create_dir_all(&d).unwrap();
                    let f = d.join(SEG);
                    std::fs::write(&f, &contents[*content]).unwrap();
                    f
                })
                .collect();
            let children: Vec<_> = writers
                .iter()
                .zip(&files)
                .map(|((_, flag), file)| {
                    let mut c = store.command(&links.join("barman-cloud-wal-archive"));
                    if !flag.is_empty() {
                        c.arg(flag);
                    }
                    c.args([url.as_str(), server.as_str(), file.to_str().unwrap()])
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            let results: Vec<_> = children
                .into_iter()
                .map(|c| c.wait_with_output().unwrap())
                .collect();
            let codes: Vec<Option<i32>> = results.iter().map(|o| o.status.code()).collect();
            let what = format!("{scenario}, round {round}: exits {codes:?}");
            for o in &results {
                if !matches!(o.status.code(), Some(0) | Some(1)) {
                    failures.push(format!("{what}: unexpected exit: {}", text(o)));
                }
            }
            let winners: Vec<usize> = writers
                .iter()
                .zip(&codes)
                .filter(|(_, c)| **c == Some(0))
                .map(|((content, _), _)| *content)
                .collect();
            // Same bytes under any codec is no conflict.
            if writers.iter().all(|(c, _)| *c == writers[0].0) && winners.len() != 3 {
                failures.push(format!("{what}: identical content must succeed for all"));
            }
            let stored = store.stored(&server);
            let mut stored_contents: Vec<Vec<u8>> = stored
                .iter()
                .map(|(name, bytes)| decompressed(name, bytes))
                .collect();
            stored_contents.dedup();
            if stored_contents.len() > 1 {
                let names: Vec<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
                failures.push(format!("{what}: two contents stored: {names:?}"));
            }
            if let Some(&first) = winners.first() {
                if winners.iter().any(|&w| w != first) {
                    failures.push(format!(
                        "{what}: writers of different content all got exit 0"
                    ));
                }
                let dest = dir.path().join(format!("{server}-restored"));
                let out = store
                    .command(&links.join("barman-cloud-wal-restore"))
                    .args([url.as_str(), server.as_str(), SEG, dest.to_str().unwrap()])
                    .output()
                    .unwrap();
                if out.status.code() != Some(0)
                    || std::fs::read(&dest).ok().as_deref() != Some(&contents[first][..])
                {
                    failures.push(format!(
                        "{what}: a writer got exit 0 but its bytes do not restore: {}",
                        text(&out)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn race_concurrent_archives_of_one_segment_on_s3() {
    let s3 = S3Server::start();
    s3.create_bucket("race");
    race(&S3(s3), &links_dir());
}

/// 16 MiB segments of incompressible content come out of every codec a little
/// larger than 16 MiB; they still go up in one create-only PUT (multipart
/// completion cannot be create-only), so concurrent writers of one codec cannot
/// replace each other's segment either.
#[test]
fn race_concurrent_archives_of_incompressible_16mib_segments_on_s3() {
    let s3 = S3Server::start();
    s3.create_bucket("race");
    race_with(
        &S3(s3),
        &links_dir(),
        Content::Random(16 << 20),
        &[
            (
                "incompressible, three contents, zstd",
                [(0, "--zstd"), (1, "--zstd"), (2, "--zstd")],
            ),
            (
                "incompressible, three contents, lz4 and none",
                [(0, "--lz4"), (1, "--lz4"), (2, "")],
            ),
        ],
        3,
    );
}

#[test]
fn race_concurrent_archives_of_one_segment_on_a_local_directory() {
    race(&Local(tempfile::tempdir().unwrap()), &links_dir());
}

/// A segment stored in two variants with different content (left by a version
/// without the check after upload, or another tool) is named by `doctor` and
/// `verify`, both exit 1; the same content under two codecs is no finding.
#[test]
fn doctor_and_verify_name_a_segment_stored_with_two_contents() {
    let links = links_dir();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let url = format!("file://{}", root.display());
    let archive = |flag: &str, server: &str, content: u64| {
        let src_dir = dir.path().join(format!("{server}{flag}{content}"));
        std::fs::create_dir_all(&src_dir).unwrap();
        let src = src_dir.join(SEG);
        std::fs::write(&src, wal_like(2 << 20, content)).unwrap();
        let out = Command::new(links.join("barman-cloud-wal-archive"))
            .args([flag, url.as_str(), server, src.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    };
    let hash_dir = |server: &str| root.join(server).join("wals/0000000100000000");
    // "twins": one content under gzip and zstd (archived apart, then put together).
    archive("--gzip", "twins", 1);
    archive("--zstd", "twins-zst", 1);
    std::fs::rename(
        hash_dir("twins-zst").join(format!("{SEG}.zst")),
        hash_dir("twins").join(format!("{SEG}.zst")),
    )
    .unwrap();
    // "split": two contents.
    archive("--gzip", "split", 1);
    archive("--zstd", "split-zst", 2);
    std::fs::rename(
        hash_dir("split-zst").join(format!("{SEG}.zst")),
        hash_dir("split").join(format!("{SEG}.zst")),
    )
    .unwrap();

    let barrelman_on = |cmd: &str, server: &str| {
        Command::new(barrelman())
            .args([cmd, url.as_str(), server])
            .output()
            .unwrap()
    };
    for cmd in ["doctor", "verify"] {
        let out = barrelman_on(cmd, "twins");
        let all = text(&out);
        assert!(!all.contains("different content"), "{cmd} twins: {all}");
        let out = barrelman_on(cmd, "split");
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd} split: {all}");
        for key in [
            format!("split/wals/0000000100000000/{SEG}.gz"),
            format!("split/wals/0000000100000000/{SEG}.zst"),
        ] {
            assert!(
                all.contains(&key) && all.contains("different content"),
                "{cmd} split must name {key}: {all}"
            );
        }
    }
}
