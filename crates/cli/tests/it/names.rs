//! Server names and destination paths with characters that object_store's path type
//! would percent-encode (`~ % # [ ] { } | ^ " < > \`, non-ASCII): keys stay the raw
//! UTF-8 strings barman-cloud writes, so each tool reads the other's archive; names
//! no store can hold unchanged are refused with exit 3 before anything is written.

use super::common::*;
use barrelman_testkit::S3Server;
use std::process::{Command, Output};

/// Runs `program` without any store credentials (for `file://` archives).
fn run_local(program: &std::path::Path, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap()
}

/// Every character object_store's `Path::from` would encode, in one server name;
/// all but `\`, which SeaweedFS (not S3) turns into `/` for barman-cloud too.
const ODD_SERVER: &str = "pg~1 ü[x]{y}|^%25\"<>#`*?";
/// And a destination path prefix (no '#' or '?': barman's urlparse ends the path there).
const ODD_PATH: &str = "pfx~é[1]%7E{a}|^";

const SEG_BY_BARMAN: &str = "000000010000000000000001";
const SEG_BY_US: &str = "000000010000000000000002";

#[test]
fn odd_server_names_and_paths_round_trip_with_barman_on_s3() {
    let s3 = S3Server::start();
    s3.create_bucket("names");
    let links = links_dir();
    let dest = format!("s3://names/{ODD_PATH}");
    let dir = tempfile::tempdir().unwrap();
    let by_barman = wal_like(16 << 20, 21);
    let by_us = wal_like(16 << 20, 22);
    std::fs::write(dir.path().join(SEG_BY_BARMAN), &by_barman).unwrap();
    std::fs::write(dir.path().join(SEG_BY_US), &by_us).unwrap();
    let wal = |seg: &str| dir.path().join(seg).to_str().unwrap().to_string();

    // barman archives, barrelman restores.
    let out = CloudCmd::new(&barman_tool("barman-cloud-wal-archive"), &s3)
        .opts(&["--gzip"])
        .run(&[&dest, ODD_SERVER, &wal(SEG_BY_BARMAN)]);
    assert_eq!(out.status.code(), Some(0), "barman archive: {}", text(&out));
    let restored = dir.path().join("restored-by-us");
    let out = CloudCmd::new(&links.join("barman-cloud-wal-restore"), &s3).run(&[
        &dest,
        ODD_SERVER,
        SEG_BY_BARMAN,
        restored.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "barrelman restore of barman's: {}",
        text(&out)
    );
    assert!(std::fs::read(&restored).unwrap() == by_barman);

    // barrelman archives, barman restores.
    let out = CloudCmd::new(&links.join("barman-cloud-wal-archive"), &s3)
        .opts(&["--zstd"])
        .run(&[&dest, ODD_SERVER, &wal(SEG_BY_US)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "barrelman archive: {}",
        text(&out)
    );
    let restored = dir.path().join("restored-by-barman");
    let out = CloudCmd::new(&barman_tool("barman-cloud-wal-restore"), &s3).run(&[
        &dest,
        ODD_SERVER,
        SEG_BY_US,
        restored.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "barman restore of barrelman's: {}",
        text(&out)
    );
    assert!(std::fs::read(&restored).unwrap() == by_us);

    // Both keys are the raw strings, side by side, and nothing else was written.
    let keys = list_keys(&s3, "names", "");
    let wals = format!("{ODD_PATH}/{ODD_SERVER}/wals/0000000100000000");
    assert_eq!(
        keys,
        vec![
            format!("{wals}/{SEG_BY_BARMAN}.gz"),
            format!("{wals}/{SEG_BY_US}.zst"),
        ]
    );
}

#[test]
fn odd_server_names_round_trip_on_a_local_directory() {
    let links = links_dir();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let url = format!("file://{}", root.display());
    let data = wal_like(16 << 20, 23);
    let src = dir.path().join(SEG_BY_US);
    std::fs::write(&src, &data).unwrap();
    let out = run_local(
        &links.join("barman-cloud-wal-archive"),
        &["--xz", &url, ODD_SERVER, src.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "archive: {}", text(&out));
    // On disk under the raw name, not a percent-encoded one.
    let stored = root
        .join(ODD_SERVER)
        .join("wals/0000000100000000")
        .join(format!("{SEG_BY_US}.xz"));
    assert!(stored.is_file(), "{} missing", stored.display());
    let restored = dir.path().join("restored");
    let out = run_local(
        &links.join("barman-cloud-wal-restore"),
        &[&url, ODD_SERVER, SEG_BY_US, restored.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "restore: {}", text(&out));
    assert!(std::fs::read(&restored).unwrap() == data);
}

/// Names whose keys no store holds unchanged are refused with exit 3, with one
/// sentence naming the setting, and nothing is written.
#[test]
fn unstorable_names_are_refused_with_exit_3() {
    let s3 = S3Server::start();
    s3.create_bucket("refuse");
    let links = links_dir();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join(SEG_BY_US);
    std::fs::write(&src, wal_like(16 << 20, 24)).unwrap();
    let cases: [(&str, &str, &str); 8] = [
        ("s3://refuse/p", "pg\n1", "invalid server name"),
        ("s3://refuse/p", "pg\u{1}", "invalid server name"),
        ("s3://refuse/p", "..", "invalid server name"),
        ("s3://refuse/p", "a/b", "invalid server name"),
        ("s3://refuse/a//b", "pg", "invalid destination path"),
        ("s3://refuse/a/../b", "pg", "invalid destination path"),
        ("s3://refuse/a#b", "pg", "invalid destination path"),
        ("s3://refuse/a?b", "pg", "invalid destination path"),
    ];
    for (dest, server, says) in cases {
        for tool in ["barman-cloud-wal-archive", "barman-cloud-wal-restore"] {
            let last: &str = if tool.ends_with("archive") {
                src.to_str().unwrap()
            } else {
                SEG_BY_US
            };
            let out_file = dir.path().join("out");
            let mut args = vec!["--endpoint-url", s3.endpoint.as_str(), dest, server, last];
            if tool.ends_with("restore") {
                args.push(out_file.to_str().unwrap());
            }
            let out = run(&links.join(tool), &args, &s3);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(3),
                "{tool} {dest} {server:?}: {}",
                text(&out)
            );
            assert!(stderr.contains(says), "{tool} {dest}: {stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        }
    }
    assert_eq!(list_keys(&s3, "refuse", ""), Vec::<String>::new());
}

/// Backups with an odd server name and path: barrelman's backup is listed by barman,
/// and barrelman deletes it (catalog listing, backup.info, parts and delete all use
/// the raw keys).
#[test]
fn backups_under_odd_names_are_listed_by_barman_and_deleted() {
    let archive_cmd = format!(
        "archive_command = '{} wal-archive --endpoint-url \"$BM_S3_ENDPOINT\" \"s3://oddbk/$BM_PATH\" \"$BM_SERVER\" %p'",
        barrelman().display()
    );
    let (s3, pg) = start_both(&["archive_mode = on", &archive_cmd]);
    s3.create_bucket("oddbk");
    let mut env = s3.env();
    env.push(("BM_S3_ENDPOINT".into(), s3.endpoint.clone()));
    env.push(("BM_PATH".into(), ODD_PATH.into()));
    env.push(("BM_SERVER".into(), ODD_SERVER.into()));
    pg.start_with_env(&env);
    pg.psql("create table marks (n int)");
    let links = links_dir();
    let dest = format!("s3://oddbk/{ODD_PATH}");
    barman_backup(
        &links.join("barman-cloud-backup"),
        &pg,
        &s3,
        "--gzip",
        "odd",
        &dest,
        ODD_SERVER,
    );
    let list = CloudCmd::new(&barman_tool("barman-cloud-backup-list"), &s3)
        .opts(&["--format", "json"])
        .run(&[&dest, ODD_SERVER]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let json = String::from_utf8_lossy(&list.stdout);
    assert!(json.contains("\"backup_name\": \"odd\""), "{json}");
    let id = json_str(&json, "backup_id");
    let base = format!("{ODD_PATH}/{ODD_SERVER}/base/{id}/");
    let keys = list_keys(&s3, "oddbk", &base);
    assert!(
        keys.contains(&"backup.info".to_string()) && keys.iter().any(|k| k.starts_with("data")),
        "{keys:?}"
    );
    let out = CloudCmd::new(&links.join("barman-cloud-backup-delete"), &s3)
        .run(&["-b", &id, &dest, ODD_SERVER]);
    assert_eq!(out.status.code(), Some(0), "delete: {}", text(&out));
    assert_eq!(list_keys(&s3, "oddbk", &base), Vec::<String>::new());
}

/// A local directory lists in no particular order: with 150 segments in one hash
/// directory (and a history file above them), every one is found, restored and not
/// archived twice.
#[test]
fn every_segment_of_a_full_hash_directory_is_found_in_a_local_directory() {
    let links = links_dir();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("archive").display());
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut names: Vec<String> = (1..=150)
        .map(|i| format!("0000000100000000000000{i:02X}"))
        .collect();
    names.push("00000002.history".into());
    for (i, name) in names.iter().enumerate() {
        std::fs::write(src.join(name), wal_like(4096, i as u64)).unwrap();
        let out = run_local(
            &links.join("barman-cloud-wal-archive"),
            &["--gzip", &url, "srv", src.join(name).to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(0), "archive {name}: {}", text(&out));
    }
    let mut failures = Vec::new();
    for name in &names {
        // Archived again with another codec: found, so no second variant.
        let out = run_local(
            &links.join("barman-cloud-wal-archive"),
            &["--zstd", &url, "srv", src.join(name).to_str().unwrap()],
        );
        if out.status.code() != Some(0) {
            failures.push(format!("re-archive {name}: {}", text(&out)));
        }
        let dest = dir.path().join("restored");
        let out = run_local(
            &links.join("barman-cloud-wal-restore"),
            &[&url, "srv", name, dest.to_str().unwrap()],
        );
        if out.status.code() != Some(0)
            || std::fs::read(&dest).ok() != std::fs::read(src.join(name)).ok()
        {
            failures.push(format!("restore {name}: {}", text(&out)));
        }
    }
    let stored_zst = walkdir_count(&dir.path().join("archive"), ".zst");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(stored_zst, 0, "a second variant was archived");
}

fn walkdir_count(root: &std::path::Path, suffix: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                n += 1;
            }
        }
    }
    n
}
