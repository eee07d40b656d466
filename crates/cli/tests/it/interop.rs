//! Both ways with the real barman-cloud 3.19.1: for every codec, barman restores what
//! barrelman archived and barrelman restores what barman archived.

use super::common::*;
use barrelman_testkit::S3Server;

const CODECS: [(&str, &str); 7] = [
    ("", ""),
    ("--gzip", ".gz"),
    ("--bzip2", ".bz2"),
    ("--xz", ".xz"),
    ("--snappy", ".snappy"),
    ("--zstd", ".zst"),
    ("--lz4", ".lz4"),
];

#[test]
fn every_codec_round_trips_between_barman_and_barrelman() {
    let s3 = S3Server::start();
    s3.create_bucket("interop");
    let links = links_dir();
    let ours_archive = links.join("barman-cloud-wal-archive");
    let ours_restore = links.join("barman-cloud-wal-restore");
    let theirs_archive = barman_tool("barman-cloud-wal-archive");
    let theirs_restore = barman_tool("barman-cloud-wal-restore");
    let ep = s3.endpoint.as_str();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();

    for (i, (flag, suffix)) in CODECS.iter().enumerate() {
        let seg = format!("0000000100000000000000{:02X}", i + 1);
        let src = dir.path().join(&seg);
        let data = wal_like(16 << 20, i as u64 + 1);
        std::fs::write(&src, &data).unwrap();
        let codec: &[&str] = if flag.is_empty() { &[] } else { &[flag] };
        // Each tool writes, the other reads.
        for (writer, archive, reader, restore) in [
            ("barrelman", &ours_archive, "barman", &theirs_restore),
            ("barman", &theirs_archive, "barrelman", &ours_restore),
        ] {
            let server = format!(
                "{}{i}",
                if writer == "barrelman" {
                    "ours"
                } else {
                    "theirs"
                }
            );
            CloudCmd::new(archive, &s3).opts(codec).ok(&[
                "s3://interop/x",
                &server,
                src.to_str().unwrap(),
            ]);
            let dest = dir.path().join(format!("by-{reader}-{i}"));
            let out = CloudCmd::new(restore, &s3).run(&[
                "s3://interop/x",
                &server,
                &seg,
                dest.to_str().unwrap(),
            ]);
            if out.status.code() != Some(0)
                || std::fs::read(&dest).ok().as_deref() != Some(&data[..])
            {
                failures.push(format!(
                    "{reader} could not restore {writer}'s {flag}: {}",
                    text(&out)
                ));
            }
        }

        // Same key from both tools: list what each wrote.
        let listing = run(
            &tools_python(),
            &[
                "-c",
                LIST_PY,
                ep,
                "interop",
                &format!("x/ours{i}/wals/"),
                &format!("x/theirs{i}/wals/"),
            ],
            &s3,
        );
        let keys = String::from_utf8_lossy(&listing.stdout).to_string();
        let expected = format!("0000000100000000/{seg}{suffix}");
        assert_eq!(
            keys.trim(),
            format!("{expected}\n{expected}"),
            "{}",
            text(&listing)
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A history file and a `.partial` archived by barrelman are served by barman, and
/// `X` is served from `X.partial` by both tools unless `--no-partial`.
#[test]
fn history_and_partial_files_follow_barman() {
    let s3 = S3Server::start();
    s3.create_bucket("interop");
    let links = links_dir();
    let ep = s3.endpoint.as_str();
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("00000002.history");
    std::fs::write(&history, b"1\t0/5000000\tno recovery target specified\n").unwrap();
    let partial = dir.path().join("000000010000000000000009.partial");
    let pdata = wal_like(16 << 20, 99);
    std::fs::write(&partial, &pdata).unwrap();
    for f in [&history, &partial] {
        CloudCmd::new(&links.join("barman-cloud-wal-archive"), &s3)
            .opts(&["--xz"])
            .ok(&["s3://interop", "srv", f.to_str().unwrap()]);
    }
    for tool in [
        links.join("barman-cloud-wal-restore"),
        barman_tool("barman-cloud-wal-restore"),
    ] {
        let restore = |opts: &[&str], name: &str, dest: &std::path::Path| {
            CloudCmd::new(&tool, &s3).opts(opts).run(&[
                "s3://interop",
                "srv",
                name,
                dest.to_str().unwrap(),
            ])
        };
        let dest = dir.path().join("h");
        let out = restore(&[], "00000002.history", &dest);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            tool.display(),
            text(&out)
        );
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&history).unwrap()
        );
        let dest = dir.path().join("p");
        let out = restore(&[], "000000010000000000000009", &dest);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            tool.display(),
            text(&out)
        );
        assert!(std::fs::read(&dest).unwrap() == pdata);
        let out = restore(&["--no-partial"], "000000010000000000000009", &dest);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            tool.display(),
            text(&out)
        );
    }
    // The key layout matches barman's: history files directly under wals/.
    let listing = run(
        &tools_python(),
        &["-c", LIST_PY, ep, "interop", "srv/wals/"],
        &s3,
    );
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout).trim(),
        "0000000100000000/000000010000000000000009.partial.xz\n00000002.history.xz",
        "{}",
        text(&listing)
    );
}

fn tools_python() -> std::path::PathBuf {
    barrelman_testkit::tools_bin().join("python")
}

/// Lists keys under each prefix (argv[3:]) relative to the prefix, one per line.
const LIST_PY: &str = r#"
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(s3={"addressing_style": "path"}))
for prefix in sys.argv[3:]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2], Prefix=prefix):
        for o in page.get("Contents", []):
            print(o["Key"][len(prefix):])
"#;
