//! Native command behaviour that needs no PostgreSQL: secrets resolution errors,
//! connectivity tests and their exit codes, argparse compatibility.

use super::common::*;
use barrelman_testkit::S3Server;
use std::process::Command;

#[test]
fn a_missing_secret_key_is_named_without_values() {
    let s3 = S3Server::start();
    s3.create_bucket("native");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("store.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nmetadata:\n  name: s\nspec:\n  configuration:\n    \
             destinationPath: s3://native/p\n    endpointURL: {}\n    s3Credentials:\n      accessKeyId:\n        name: creds\n        \
             key: ACCESS_KEY_ID\n      secretAccessKey:\n        name: creds\n        key: ACCESS_SECRET_KEY\n",
            s3.endpoint
        ),
    )
    .unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(secrets.join("creds")).unwrap();
    std::fs::write(secrets.join("creds/ACCESS_KEY"), &s3.access_key).unwrap();
    std::fs::write(secrets.join("creds/ACCESS_SECRET_KEY"), &s3.secret_key).unwrap();
    let wal = dir.path().join("000000010000000000000001");
    std::fs::write(&wal, wal_like(1 << 20, 1)).unwrap();
    let native = |extra: &[&str]| {
        Command::new(barrelman())
            .args([
                "wal-archive",
                "--config",
                manifest.to_str().unwrap(),
                "--server-name",
                "n1",
            ])
            .args(["--secrets-dir", secrets.to_str().unwrap()])
            .args(extra)
            .arg(&wal)
            .env_clear()
            .output()
            .unwrap()
    };
    let out = native(&[]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secret 'creds' has no key 'ACCESS_KEY_ID'")
            && err.contains("ACCESS_KEY, ACCESS_SECRET_KEY"),
        "{err}"
    );
    assert!(
        !err.contains(&s3.secret_key) && !err.contains(&s3.access_key),
        "a secret leaked: {err}"
    );

    // Fixed key: archived with the manifest's settings.
    std::fs::rename(
        secrets.join("creds/ACCESS_KEY"),
        secrets.join("creds/ACCESS_KEY_ID"),
    )
    .unwrap();
    let out = native(&["-vv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains(&s3.secret_key),
        "a secret leaked into the debug log"
    );

    // A wrong secret value: access denied, told apart from a network failure.
    std::fs::write(secrets.join("creds/ACCESS_SECRET_KEY"), "wrong-secret").unwrap();
    let out = native(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("access to") && err.contains("denied"), "{err}");
    assert!(!err.contains("wrong-secret"), "{err}");
}

#[test]
fn connectivity_tests_and_argparse_behaviour() {
    let s3 = S3Server::start();
    s3.create_bucket("conn");
    let links = links_dir();
    let archive = links.join("barman-cloud-wal-archive");
    let ep = s3.endpoint.as_str();
    // -t: reachable and bucket present 0, bucket missing 1, endpoint unreachable 2.
    let ok = CloudCmd::new(&archive, &s3)
        .opts(&["-t"])
        .run(&["s3://conn", "srv"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let nobucket = CloudCmd::new(&archive, &s3)
        .opts(&["-t"])
        .run(&["s3://nosuchbucket", "srv"]);
    assert_eq!(nobucket.status.code(), Some(1), "{}", text(&nobucket));
    let dead = format!("http://127.0.0.1:{}", barrelman_testkit::free_port());
    let unreachable = run(
        &archive,
        &["-t", "--endpoint-url", &dead, "s3://conn", "srv"],
        &s3,
    );
    assert_eq!(unreachable.status.code(), Some(2), "{}", text(&unreachable));

    // Outside -t a network failure is a general error (4), like barman.
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("000000010000000000000001");
    std::fs::write(&wal, b"x").unwrap();
    let out = run(
        &archive,
        &[
            "--endpoint-url",
            &dead,
            "s3://conn",
            "srv",
            wal.to_str().unwrap(),
        ],
        &s3,
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach"),
        "{}",
        text(&out)
    );

    // Interleaved options, --opt=value, unique prefixes, greedy --tags, -- separator.
    let out = run(
        &archive,
        &[
            "s3://conn",
            &format!("--endpoint={ep}"),
            "srv",
            "--zst",
            "--tags",
            "a,b",
            "c,d",
            "--",
            wal.to_str().unwrap(),
        ],
        &s3,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(
        &archive,
        &["--frobnicate", "s3://conn", "srv", wal.to_str().unwrap()],
        &s3,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = run(
        &archive,
        &["-z", "-j", "s3://conn", "srv", wal.to_str().unwrap()],
        &s3,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = CloudCmd::new(&archive, &s3)
        .opts(&["--tag", "aws:x,y"])
        .run(&["s3://conn", "srv", wal.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = run(&archive, &["--version"], &s3);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "barman-cloud-wal-archive 3.19.1"
    );
    let out = run(&archive, &["--help"], &s3);
    assert_eq!(out.status.code(), Some(0));
}

/// maxParallel: one call uploads the next `.ready` segments and leaves spool markers;
/// PostgreSQL's later calls for them return from the marker. Restore prefetch fills
/// the spool and the next call is served from it.
#[test]
fn parallel_archive_markers_and_restore_prefetch() {
    let s3 = S3Server::start();
    s3.create_bucket("par");
    let dir = tempfile::tempdir().unwrap();
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir_all(pgdata.join("pg_wal/archive_status")).unwrap();
    let segs: Vec<String> = (1..=5)
        .map(|i| format!("0000000100000000000000{i:02X}"))
        .collect();
    for (i, s) in segs.iter().enumerate() {
        std::fs::write(
            pgdata.join("pg_wal").join(s),
            wal_like(4 << 20, i as u64 + 40),
        )
        .unwrap();
        std::fs::write(
            pgdata
                .join("pg_wal/archive_status")
                .join(format!("{s}.ready")),
            b"",
        )
        .unwrap();
    }
    let spool = dir.path().join("spool");
    let archive = |seg: &str| {
        Command::new(barrelman())
            .args([
                "-v",
                "wal-archive",
                "--endpoint-url",
                &s3.endpoint,
                "--compression",
                "lz4",
            ])
            .args([
                "--max-parallel",
                "3",
                "--pgdata",
                pgdata.to_str().unwrap(),
                "--spool-dir",
                spool.to_str().unwrap(),
            ])
            .args(["s3://par/p", "srv", &format!("pg_wal/{seg}")])
            .current_dir(&pgdata)
            .envs(s3.env())
            .output()
            .unwrap()
    };
    let out = archive(&segs[0]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let spooled = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .flat_map(|e| std::fs::read_dir(e.unwrap().path()).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        spooled(&spool),
        [segs[1].clone(), segs[2].clone()],
        "markers for the two segments uploaded ahead"
    );

    // The call for a pre-archived segment returns from its marker and consumes it.
    let out = archive(&segs[1]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("already archived by an earlier parallel upload"),
        "{}",
        text(&out)
    );
    assert_eq!(spooled(&spool), [segs[2].clone()]);

    // Every segment uploaded ahead is really in the archive, and prefetch works.
    let rspool = dir.path().join("rspool");
    let restore = |seg: &str, dest: &std::path::Path| {
        Command::new(barrelman())
            .args([
                "-v",
                "wal-restore",
                "--endpoint-url",
                &s3.endpoint,
                "--parallel",
                "3",
                "--spool-dir",
                rspool.to_str().unwrap(),
            ])
            .args(["s3://par/p", "srv", seg, dest.to_str().unwrap()])
            .envs(s3.env())
            .output()
            .unwrap()
    };
    let out = restore(&segs[0], &dir.path().join("r0"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        spooled(&rspool),
        [segs[1].clone(), segs[2].clone()],
        "prefetched"
    );
    for (i, seg) in segs.iter().enumerate().take(3) {
        let dest = dir.path().join(format!("r{i}"));
        if i > 0 {
            let out = restore(seg, &dest);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("from the prefetch spool"),
                "{}",
                text(&out)
            );
        }
        assert!(
            std::fs::read(&dest).unwrap()
                == std::fs::read(pgdata.join("pg_wal").join(seg)).unwrap(),
            "{seg}"
        );
    }
    // segs[3] was never archived: not found, nothing spooled for it.
    let out = restore(&segs[3], &dir.path().join("r3"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// Recovery targets PostgreSQL would refuse at start-up (two stop points, a bad xid,
/// a name PostgreSQL could not have made) are refused with exit 3 before anything is
/// read from the store or written to the destination.
#[test]
fn invalid_recovery_targets_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let archive = format!("file://{}", dir.path().join("archive").display());
    let dest = dir.path().join("restored");
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--target-time",
                "2026-11-24 20:16:25+00",
                "--target-lsn",
                "0/3000000",
            ],
            "--target-time and --target-lsn cannot be combined",
        ),
        (&["--target-xid", "750x"], "invalid --target-xid"),
        (
            &["--target-xid", "7501", "--target-immediate"],
            "cannot be combined",
        ),
        (
            &["--target-name", "a\nrecovery_target_action = 'promote'"],
            "invalid --target-name",
        ),
        (
            &["--target-timeline", "newest"],
            "invalid --target-timeline",
        ),
    ];
    for (flags, needle) in cases {
        let out = Command::new(barrelman())
            .arg("restore")
            .args(*flags)
            .args([archive.as_str(), "pg-main"])
            .arg(&dest)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{flags:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{flags:?}: {}", text(&out));
        assert!(!dest.exists(), "{flags:?}: the destination was created");
        assert!(
            !dir.path().join("archive").exists(),
            "{flags:?}: the store was opened"
        );
    }
}
