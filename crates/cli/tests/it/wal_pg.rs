//! PostgreSQL archiving through barrelman into a real S3 server, and restoring.

use super::common::*;
use barrelman_testkit::PgCluster;
use std::path::Path;
use std::time::Duration;

/// PostgreSQL's archive_command goes through the `barman-cloud-wal-archive` link; every
/// archived segment comes back byte-identical through `barman-cloud-wal-restore`.
#[test]
fn postgres_archives_through_barman_links_and_segments_restore_identical() {
    let links = links_dir();
    let archive_cmd = format!(
        "archive_command = '{}/barman-cloud-wal-archive --gzip --endpoint-url \"$BM_S3_ENDPOINT\" s3://walbkt/pfx pg1 %p'",
        links.display()
    );
    let (s3, pg) = start_both(&["archive_mode = on", &archive_cmd, "wal_keep_size = '1GB'"]);
    s3.create_bucket("walbkt");
    let mut env = s3.env();
    env.push(("BM_S3_ENDPOINT".into(), s3.endpoint.clone()));
    pg.start_with_env(&env);
    pg.pgbench(&["-i", "-s", "5", "-q"]);
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(90));
    assert_eq!(
        pg.psql("select failed_count from pg_stat_archiver"),
        "0",
        "{}",
        pg.log()
    );

    let mut segs = segments_before(&pg.datadir, &last);
    segs.push(last.clone());
    assert!(segs.len() >= 4, "pgbench made only {segs:?}");

    let restore = links.join("barman-cloud-wal-restore");
    let archive = links.join("barman-cloud-wal-archive");
    let out_dir = tempfile::tempdir().unwrap();
    for seg in &segs {
        let dest = out_dir.path().join(seg);
        let out = CloudCmd::new(&restore, &s3).run(&[
            "s3://walbkt/pfx",
            "pg1",
            seg,
            dest.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "restore {seg}: {}", text(&out));
        let original = std::fs::read(pg.datadir.join("pg_wal").join(seg)).unwrap();
        assert!(
            std::fs::read(&dest).unwrap() == original,
            "{seg} differs after the round trip"
        );
    }

    // A name that was never archived: exit 1. Not a WAL name: exit 3.
    let dest = out_dir.path().join("x");
    let missing = CloudCmd::new(&restore, &s3).run(&[
        "s3://walbkt/pfx",
        "pg1",
        "0000000100000000000000FE",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(!dest.exists());
    let bad = CloudCmd::new(&restore, &s3).run(&[
        "s3://walbkt/pfx",
        "pg1",
        "notawal",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(3), "{}", text(&bad));

    // Re-archiving identical bytes succeeds; other bytes under the same name are
    // refused with the key named, and the archived copy is kept.
    let first = &segs[0];
    let same = CloudCmd::new(&archive, &s3).opts(&["-z"]).run(&[
        "s3://walbkt/pfx",
        "pg1",
        pg.datadir.join("pg_wal").join(first).to_str().unwrap(),
    ]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    let forged = out_dir.path().join("forged");
    std::fs::create_dir(&forged).unwrap();
    let forged_seg = forged.join(first);
    std::fs::write(&forged_seg, wal_like(16 << 20, 7)).unwrap();
    let refused =
        CloudCmd::new(&archive, &s3).run(&["s3://walbkt/pfx", "pg1", forged_seg.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(
        msg.contains(&format!("pfx/pg1/wals/0000000100000000/{first}.gz")),
        "{msg}"
    );
    let back = out_dir.path().join("back");
    let out = CloudCmd::new(&restore, &s3).run(&[
        "s3://walbkt/pfx",
        "pg1",
        first,
        back.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        std::fs::read(&back).unwrap()
            == std::fs::read(pg.datadir.join("pg_wal").join(first)).unwrap()
    );

    // check-wal-archive: this server's archive is in use, a new name is empty, and
    // --timeline 2 ignores timeline 1.
    let check = links.join("barman-cloud-check-wal-archive");
    let used = CloudCmd::new(&check, &s3).run(&["s3://walbkt/pfx", "pg1"]);
    assert_eq!(used.status.code(), Some(1), "{}", text(&used));
    let fresh = CloudCmd::new(&check, &s3).run(&["s3://walbkt/pfx", "pg2"]);
    assert_eq!(fresh.status.code(), Some(0), "{}", text(&fresh));
    let tl2 = CloudCmd::new(&check, &s3).run(&["--timeline", "2", "s3://walbkt/pfx", "pg1"]);
    assert_eq!(tl2.status.code(), Some(0), "{}", text(&tl2));
    let tl1 = CloudCmd::new(&check, &s3).run(&["--timeline=1", "s3://walbkt/pfx", "pg1"]);
    assert_eq!(tl1.status.code(), Some(1), "{}", text(&tl1));
}

fn write_manifest(dir: &Path, endpoint: &str, bucket: &str, extra_wal: &str) -> std::path::PathBuf {
    let path = dir.join("objectstore.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nmetadata:\n  name: store\nspec:\n  configuration:\n    \
             destinationPath: s3://{bucket}/cnpg\n    endpointURL: {endpoint}\n    s3Credentials:\n      accessKeyId:\n        \
             name: s3-creds\n        key: ACCESS_KEY_ID\n      secretAccessKey:\n        name: s3-creds\n        key: ACCESS_SECRET_KEY\n    \
             wal:\n      compression: zstd\n{extra_wal}"
        ),
    )
    .unwrap();
    path
}

fn write_secrets(dir: &Path, access: &str, secret: &str) -> std::path::PathBuf {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(secrets.join("s3-creds")).unwrap();
    std::fs::write(
        secrets.join("s3-creds/ACCESS_KEY_ID"),
        format!("{access}\n"),
    )
    .unwrap();
    std::fs::write(secrets.join("s3-creds/ACCESS_SECRET_KEY"), secret).unwrap();
    secrets
}

/// The native command as archive_command, configured by an ObjectStore manifest and a
/// secrets directory: parallel uploads (wal.maxParallel), the CloudNativePG empty-
/// archive marker honoured and removed; then a second cluster that would archive into
/// the same folder is refused with a sentence saying so.
#[test]
fn native_archive_with_manifest_guards_a_reused_server_name() {
    let (s3, pg) = start_both(&[]);
    s3.create_bucket("cnpg");
    let conf_dir = pg.make_dir("conf");
    let manifest = write_manifest(&conf_dir, &s3.endpoint, "cnpg", "      maxParallel: 4\n");
    let secrets = write_secrets(&conf_dir, &s3.access_key, &s3.secret_key);
    let spool = pg.make_dir("spool");
    let archive_cmd = |pgdata: &Path| {
        format!(
            "archive_command = '{} wal-archive --config {} --server-name cluster-a --secrets-dir {} --pgdata {} --spool-dir {} %p'",
            barrelman().display(),
            manifest.display(),
            secrets.display(),
            pgdata.display(),
            spool.display()
        )
    };
    std::fs::write(
        pg.datadir.join("postgresql.conf"),
        format!(
            "{}\narchive_mode = on\n{}\nwal_keep_size = '1GB'\n",
            std::fs::read_to_string(pg.datadir.join("postgresql.conf")).unwrap(),
            archive_cmd(&pg.datadir)
        ),
    )
    .unwrap();
    let marker = pg.datadir.join(".check-empty-wal-archive");
    std::fs::write(&marker, b"").unwrap();
    // Credentials come only from the secrets directory: nothing in the environment.
    pg.start_with_env(&[]);
    pg.pgbench(&["-i", "-s", "5", "-q"]);
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(90));
    assert_eq!(
        pg.psql("select failed_count from pg_stat_archiver"),
        "0",
        "{}",
        pg.log()
    );
    assert!(
        !marker.exists(),
        "the marker must go after the first archived WAL"
    );

    // Everything came back through the native restore with prefetch.
    let out_dir = pg.make_dir("restored");
    let mut segs = segments_before(&pg.datadir, &last);
    segs.push(last.clone());
    for seg in &segs {
        let dest = out_dir.join(seg);
        let out = std::process::Command::new(barrelman())
            .args([
                "wal-restore",
                "--config",
                manifest.to_str().unwrap(),
                "--server-name",
                "cluster-a",
            ])
            .args([
                "--secrets-dir",
                secrets.to_str().unwrap(),
                "--parallel",
                "3",
                "--spool-dir",
            ])
            .arg(out_dir.join("spool"))
            .args([seg.as_str(), dest.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            std::fs::read(&dest).unwrap()
                == std::fs::read(pg.datadir.join("pg_wal").join(seg)).unwrap(),
            "{seg}"
        );
    }

    // A new cluster (initdb, marker set by the operator) pointed at the same server
    // name must not archive: PostgreSQL keeps retrying and the log says why.
    let other = PgCluster::init(&[]);
    std::fs::write(other.datadir.join(".check-empty-wal-archive"), b"").unwrap();
    let conf = other.datadir.join("postgresql.conf");
    std::fs::write(
        &conf,
        format!(
            "{}\narchive_mode = on\n{}\n",
            std::fs::read_to_string(&conf).unwrap(),
            archive_cmd(&other.datadir)
        ),
    )
    .unwrap();
    other.start_with_env(&[]);
    other.psql("create table t as select 1 as x");
    switch_wal(&other);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while other.psql("select failed_count from pg_stat_archiver") == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "archiving never failed:\n{}",
            other.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        other.psql("select archived_count from pg_stat_archiver"),
        "0"
    );
    let log = other.log();
    assert!(
        log.contains("already holds") && log.contains("use a different server name"),
        "{}",
        tail(&log, 4000)
    );
    assert!(other.datadir.join(".check-empty-wal-archive").exists());
}
