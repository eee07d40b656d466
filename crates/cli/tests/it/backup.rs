//! Base backups and point-in-time recovery on real PostgreSQL and S3, and both ways
//! with barman-cloud 3.19.1.

use super::common::*;
use barrelman_testkit::{PgCluster, S3Server};
use std::process::Command;
use std::time::{Duration, Instant};

fn archive_conf(bucket: &str, server: &str) -> String {
    format!(
        "archive_command = '{} wal-archive --endpoint-url \"$BM_S3_ENDPOINT\" --compression zstd s3://{bucket}/p {server} %p'",
        barrelman().display()
    )
}

/// Archive, backup (gzip, a tablespace), commit rows before and after a recorded
/// time, restore to that time with one `barrelman restore`, start: exactly the rows
/// before the target, every pgbench row, the tablespace at its new location.
#[test]
fn backup_then_point_in_time_restore_with_one_command() {
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("[{:6.1}s] {what}", t0.elapsed().as_secs_f64());
    let (s3, pg) = start_both(&["archive_mode = on", &archive_conf("bkt", "srv")]);
    s3.create_bucket("bkt");
    start(&pg, &s3);
    let ts_dir = pg.make_dir("ts1");
    pg.psql(&format!(
        "create tablespace ts1 location '{}'",
        ts_dir.display()
    ));
    pg.pgbench(&["-i", "-s", "2", "-q"]);
    pg.psql("create table t (id int primary key, note text) tablespace ts1");
    pg.psql("insert into t select g, 'base' from generate_series(1, 50) g");

    phase("data loaded");
    let out = native_backup(
        &pg,
        &s3,
        "s3://bkt/p",
        &[
            "--compression",
            "gzip",
            "--name",
            "nightly",
            "--wal-wait",
            "30",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "backup: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(nightly) DONE"),
        "{}",
        text(&out)
    );

    phase("backup done");
    pg.psql("insert into t select g, 'before' from generate_series(51, 100) g");
    let target = pg.psql("select now()");
    std::thread::sleep(Duration::from_millis(1100));
    pg.psql("insert into t select g, 'after' from generate_series(101, 150) g");
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(60));
    pg.stop();

    phase("archived after target");
    let dest = pg.make_dir("restored");
    let new_ts = pg.make_dir("ts1-restored");
    let out = CloudCmd::native("restore", &s3).run_as_pg(&[
        "s3://bkt/p",
        "srv",
        dest.to_str().unwrap(),
        "--tablespace",
        &format!("ts1:{}", new_ts.display()),
        "--target-time",
        &target,
        "--target-action",
        "promote",
    ]);
    assert_eq!(out.status.code(), Some(0), "restore: {}", text(&out));
    phase("restored");
    let restored = PgCluster::from_datadir(dest.clone(), &["archive_mode = off"]);
    start(&restored, &s3);
    wait_promoted(&restored);
    phase("promoted");
    assert_eq!(restored.psql("select count(*), max(id) from t"), "100|100");
    assert_eq!(
        restored.psql("select count(*) from t where note = 'after'"),
        "0"
    );
    assert_eq!(
        restored.psql("select count(*) from pgbench_accounts"),
        "200000"
    );
    assert_eq!(
        restored
            .psql("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'ts1'"),
        new_ts.display().to_string()
    );
    assert!(
        std::fs::read_dir(&new_ts).unwrap().next().is_some(),
        "tablespace files restored"
    );

    // A second restore into the same, now non-empty directory is refused (exit 1).
    restored.stop();
    let out =
        CloudCmd::native("restore", &s3).run_as_pg(&["s3://bkt/p", "srv", dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not empty"),
        "{}",
        text(&out)
    );
}

/// A backup whose WAL never reaches the archive is FAILED, naming the segment, and
/// barman's own backup-list shows it FAILED.
#[test]
fn a_backup_without_its_wal_in_the_archive_is_failed() {
    // archive_command "succeeds" without archiving: PostgreSQL believes all is well.
    let (s3, pg) = start_both(&["archive_mode = on", "archive_command = '/bin/true'"]);
    s3.create_bucket("bkt");
    start(&pg, &s3);
    pg.psql("create table x as select 1 as a");
    let links = links_dir();
    let out = CloudCmd::new(&links.join("barman-cloud-backup"), &s3)
        .pg(&pg)
        .env("BARRELMAN_WAL_WAIT", "3")
        .run_as_pg(&["s3://bkt/p", "srv"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WAL segment 0000000100000000000000") && err.contains("is not in the archive"),
        "{err}"
    );
    let list = CloudCmd::new(&barman_tool("barman-cloud-backup-list"), &s3)
        .opts(&["--format", "json"])
        .run(&["s3://bkt/p", "srv"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let json = String::from_utf8_lossy(&list.stdout);
    assert!(
        json.contains("\"status\": \"FAILED\"") && json.contains("is not in the archive"),
        "{json}"
    );
}

/// barrelman's backup restored by barman-cloud-restore recovers the rows; barman's
/// backup restored by barrelman too; barman-cloud-backup-list reads both catalogs.
#[test]
fn backups_restore_both_ways_with_barman() {
    let (s3, pg) = start_both(&["archive_mode = on", &archive_conf("xbk", "srv")]);
    s3.create_bucket("xbk");
    start(&pg, &s3);
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    pg.psql("create table marks (n int)");
    pg.psql("insert into marks values (1)");
    let links = links_dir();
    let backup = links.join("barman-cloud-backup");
    barman_backup(&backup, &pg, &s3, "--lz4", "ours", "s3://xbk/p", "srv");
    pg.psql("insert into marks values (2)");
    // Backup ids are the start time to the second, and barman does not look before
    // writing: started within the second ours started in, it would take (and
    // overwrite) our id. Wait for the next second.
    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let finished = second();
    while second() == finished {
        std::thread::sleep(Duration::from_millis(20));
    }
    let backup = barman_tool("barman-cloud-backup");
    barman_backup(&backup, &pg, &s3, "--gzip", "theirs", "s3://xbk/p", "srv");
    pg.psql("insert into marks values (3)");
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(60));

    let list = CloudCmd::new(&barman_tool("barman-cloud-backup-list"), &s3)
        .opts(&["--format", "json"])
        .run(&["s3://xbk/p", "srv"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let json = String::from_utf8_lossy(&list.stdout);
    assert!(
        json.contains("\"backup_name\": \"ours\"") && json.contains("\"backup_name\": \"theirs\""),
        "{json}"
    );
    assert_eq!(json.matches("\"status\": \"DONE\"").count(), 2, "{json}");

    // barman and barrelman print the same list and show output for the same archive;
    // a keep mark set by one is read by the other.
    let both = |name: &str, args: &[&str]| {
        let theirs = CloudCmd::new(&barman_tool(name), &s3).run(args);
        let ours = CloudCmd::new(&links.join(name), &s3).run(args);
        assert_eq!(theirs.status.code(), Some(0), "{}", text(&theirs));
        assert_eq!(ours.status.code(), Some(0), "{}", text(&ours));
        (
            String::from_utf8_lossy(&theirs.stdout).to_string(),
            String::from_utf8_lossy(&ours.stdout).to_string(),
        )
    };
    let (t, o) = both(
        "barman-cloud-backup-list",
        &["--format", "json", "s3://xbk/p", "srv"],
    );
    assert_eq!(o, t, "backup-list JSON differs");
    let (t, o) = both(
        "barman-cloud-backup-show",
        &["--format", "json", "s3://xbk/p", "srv", "ours"],
    );
    assert_eq!(o, t, "backup-show JSON differs");
    assert!(o.starts_with("{\"cloud\": {"), "{o}");
    let keep = CloudCmd::new(&links.join("barman-cloud-backup-keep"), &s3).run(&[
        "--target",
        "standalone",
        "s3://xbk/p",
        "srv",
        "ours",
    ]);
    assert_eq!(keep.status.code(), Some(0), "{}", text(&keep));
    let (t, o) = both(
        "barman-cloud-backup-keep",
        &["-s", "s3://xbk/p", "srv", "ours"],
    );
    assert_eq!(
        (t.trim(), o.trim()),
        ("Keep: standalone", "Keep: standalone")
    );
    let (t, o) = both("barman-cloud-backup-list", &["s3://xbk/p", "srv"]);
    assert_eq!(o, t, "backup-list console output differs");
    assert!(o.contains("KEEP:STANDALONE"), "{o}");
    let missing = CloudCmd::new(&links.join("barman-cloud-backup-show"), &s3).run(&[
        "s3://xbk/p",
        "srv",
        "20000101T000000",
    ]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    let unnamed = CloudCmd::new(&links.join("barman-cloud-backup-show"), &s3).run(&[
        "s3://xbk/p",
        "srv",
        "no-such-name",
    ]);
    assert_eq!(unnamed.status.code(), Some(4), "{}", text(&unnamed));

    // Each tool restores the other's backup by name; replay to the end of the WAL.
    for (tool, name) in [
        (barman_tool("barman-cloud-restore"), "ours"),
        (links.join("barman-cloud-restore"), "theirs"),
    ] {
        let dest = pg.make_dir(&format!("restore-{name}"));
        let out = CloudCmd::new(&tool, &s3).run_as_pg(&[
            "s3://xbk/p",
            "srv",
            name,
            dest.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} {name}: {}",
            tool.display(),
            text(&out)
        );
        let restore_cmd = format!(
            "restore_command = '{} --endpoint-url \"$BM_S3_ENDPOINT\" s3://xbk/p srv %f %p'",
            links.join("barman-cloud-wal-restore").display()
        );
        std::fs::write(dest.join("recovery.signal"), b"").unwrap();
        let restored = PgCluster::from_datadir(
            dest.clone(),
            &[
                "archive_mode = off",
                &restore_cmd,
                "recovery_target_action = 'promote'",
            ],
        );
        start(&restored, &s3);
        wait_promoted(&restored);
        assert_eq!(
            restored.psql("select string_agg(n::text, ',' order by n) from marks"),
            "1,2,3",
            "restored {name}"
        );
        assert_eq!(
            restored.psql("select count(*) from pgbench_accounts"),
            "100000"
        );
    }
}

/// Backups whose tar parts try to write outside the destination (`../`, an escaping
/// symlink used as a directory) are refused, naming the member, and nothing appears
/// outside the destination.
#[test]
fn a_malicious_backup_is_refused_and_nothing_escapes() {
    let s3 = S3Server::start();
    s3.create_bucket("evil");
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let upload = run(
        &barrelman_testkit::tools_bin().join("python"),
        &["-c", MALICIOUS_PY, &s3.endpoint, outside.to_str().unwrap()],
        &s3,
    );
    assert_eq!(upload.status.code(), Some(0), "{}", text(&upload));
    for (id, member) in [
        ("20260101T000000", "../escape.txt"),
        ("20260102T000000", "tar member \"evil\" refused"),
    ] {
        let dest = work.path().join(format!("dest-{id}"));
        let out = Command::new(barrelman())
            .args([
                "restore",
                "--no-recovery-config",
                "--backup",
                id,
                "--endpoint-url",
                &s3.endpoint,
            ])
            .args(["s3://evil/p", "srv", dest.to_str().unwrap()])
            .envs(s3.env())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{id}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(member),
            "{id}: the refused member is not named: {err}"
        );
    }
    assert!(
        !work.path().join("escape.txt").exists(),
        "a file escaped the destination"
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "a file was planted through a symlink"
    );
}

/// Uploads two DONE backups whose data.tar holds a `../` member and a symlink to an
/// outside directory followed by a file below it.
const MALICIOUS_PY: &str = r#"
import io, sys, tarfile, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(s3={"addressing_style": "path"}))
outside = sys.argv[2]
def tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            if kind == "dir":
                ti.type = tarfile.DIRTYPE; ti.mode = 0o700; t.addfile(ti)
            elif kind == "link":
                ti.type = tarfile.SYMTYPE; ti.linkname = data; t.addfile(ti)
            else:
                ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()
info = "begin_wal=000000010000000000000002\nend_wal=000000010000000000000002\nserver_name=cloud\nstatus=DONE\ntimeline=1\nversion=150018\n"
for bid, members in [
    ("20260101T000000", [("./", "dir", None), ("./PG_VERSION", "file", b"15\n"), ("../escape.txt", "file", b"x")]),
    ("20260102T000000", [("./", "dir", None), ("evil", "link", outside), ("evil/planted.txt", "file", b"x")]),
]:
    s3.put_object(Bucket="evil", Key=f"p/srv/base/{bid}/data.tar", Body=tar(members))
    s3.put_object(Bucket="evil", Key=f"p/srv/base/{bid}/backup.info", Body=info.encode())
"#;

/// Three backups with WAL between them, the first kept standalone; REDUNDANCY 1
/// deletes exactly the middle backup and the WAL no remaining backup needs, and the
/// real barman-cloud-backup-list reads the catalog afterwards.
#[test]
fn retention_deletes_exactly_what_no_kept_backup_needs() {
    let (s3, pg) = start_both(&["archive_mode = on", &archive_conf("ret", "srv")]);
    s3.create_bucket("ret");
    start(&pg, &s3);
    pg.psql("create table t (x int)");
    let links = links_dir();
    let mut ids = Vec::new();
    for i in 0..3 {
        pg.psql(&format!("insert into t values ({i})"));
        switch_wal(&pg);
        let out = native_backup(&pg, &s3, "s3://ret/p", &["--compression", "lz4"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        ids.push(stdout.split_whitespace().nth(1).unwrap().to_string());
        pg.psql(&format!("insert into t values ({i})"));
        switch_wal(&pg);
        std::thread::sleep(Duration::from_millis(1100));
    }
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(60));
    let keep = CloudCmd::new(&links.join("barman-cloud-backup-keep"), &s3).run(&[
        "--target",
        "standalone",
        "s3://ret/p",
        "srv",
        &ids[0],
    ]);
    assert_eq!(keep.status.code(), Some(0), "{}", text(&keep));
    let show = |id: &str| {
        let out = CloudCmd::native("show", &s3)
            .opts(&["--format", "json"])
            .run(&["s3://ret/p", "srv", id]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let j = String::from_utf8_lossy(&out.stdout).to_string();
        (json_str(&j, "begin_wal"), json_str(&j, "end_wal"))
    };
    let (b0, e0) = show(&ids[0]);
    let (b2, _) = show(&ids[2]);
    let segments = |keys: &[String]| -> Vec<String> {
        keys.iter()
            .filter_map(|k| k.rsplit('/').next())
            .map(|n| n.trim_end_matches(".zst").to_string())
            .filter(|n| n.len() == 24)
            .collect()
    };
    let before = segments(&list_keys(&s3, "ret", "p/srv/wals/"));

    // A dry run deletes nothing and says what it would do.
    let delete = links.join("barman-cloud-backup-delete");
    let dry =
        CloudCmd::new(&delete, &s3).run(&["--dry-run", "-r", "REDUNDANCY 1", "s3://ret/p", "srv"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        out.contains("Skipping deletion of objects") && out.contains(&ids[1]),
        "{out}"
    );
    assert_eq!(segments(&list_keys(&s3, "ret", "p/srv/wals/")), before);
    // Deleting the kept backup by id is refused.
    let refused = CloudCmd::new(&delete, &s3).run(&["-b", &ids[0], "s3://ret/p", "srv"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let bad = CloudCmd::new(&delete, &s3).run(&["-r", "KEEP 3", "s3://ret/p", "srv"]);
    assert_eq!(bad.status.code(), Some(3), "{}", text(&bad));

    let real = CloudCmd::new(&delete, &s3).run(&["-r", "REDUNDANCY 1", "s3://ret/p", "srv"]);
    assert_eq!(real.status.code(), Some(0), "{}", text(&real));
    let list = CloudCmd::new(&barman_tool("barman-cloud-backup-list"), &s3)
        .opts(&["--format", "json"])
        .run(&["s3://ret/p", "srv"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let json = String::from_utf8_lossy(&list.stdout);
    assert!(
        json.contains(&ids[0]) && json.contains(&ids[2]) && !json.contains(&ids[1]),
        "{json}"
    );
    assert!(
        !list_keys(&s3, "ret", "p/srv/base/")
            .iter()
            .any(|k| k.starts_with(&ids[1])),
        "backup objects left"
    );
    // Both remaining backups verify (one listing of base/ for all of them).
    let all = CloudCmd::native("verify", &s3)
        .opts(&["--all"])
        .run(&["s3://ret/p", "srv"]);
    assert_eq!(all.status.code(), Some(0), "{}", text(&all));
    let report = String::from_utf8_lossy(&all.stdout);
    for id in [&ids[0], &ids[2]] {
        assert!(report.contains(&format!("{id}: restorable")), "{report}");
    }
    let after = segments(&list_keys(&s3, "ret", "p/srv/wals/"));
    for seg in &before {
        let needed = (seg >= &b0 && seg <= &e0) || seg >= &b2;
        assert_eq!(
            after.contains(seg),
            needed,
            "{seg}: kept={} (first {b0}..{e0}, third from {b2})",
            after.contains(seg)
        );
    }
}

/// verify: a good backup passes (also --deep); a missing end segment and a missing
/// tar part are each reported with the object named, exit 1.
#[test]
fn verify_names_the_first_missing_object() {
    let (s3, pg) = start_both(&["archive_mode = on", &archive_conf("ver", "srv")]);
    s3.create_bucket("ver");
    start(&pg, &s3);
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    let out = native_backup(
        &pg,
        &s3,
        "s3://ver/p",
        &["--compression", "lz4", "--jobs", "2"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let verify = |extra: &[&str]| {
        let mut args = vec!["s3://ver/p", "srv"];
        args.extend_from_slice(extra);
        CloudCmd::native("verify", &s3).run(&args)
    };
    let ok = verify(&["--deep"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let report = String::from_utf8_lossy(&ok.stdout);
    assert!(
        report.contains(&format!("{id}: restorable (deep check passed)")),
        "{}",
        text(&ok)
    );
    // The recoverability window: from the backup's end to when the last contiguous
    // segment was archived, which is today.
    let day = |d: i64| {
        (chrono::Utc::now() - chrono::Duration::days(d))
            .format("%Y-%m-%d")
            .to_string()
    };
    assert!(
        report.contains("earliest recovery point: ")
            && [day(0), day(1)]
                .iter()
                .any(|d| report.contains(&format!("latest recovery point: about {d}"))),
        "{report}"
    );

    let show = CloudCmd::native("show", &s3)
        .opts(&["--format", "json"])
        .run(&["s3://ver/p", "srv", &id]);
    let end_wal = json_str(&String::from_utf8_lossy(&show.stdout), "end_wal");
    let wal_key = list_keys(&s3, "ver", "p/srv/wals/")
        .into_iter()
        .find(|k| k.ends_with(&format!("/{end_wal}.zst")))
        .expect("end segment archived");
    delete_key(&s3, "ver", &format!("p/srv/wals/{wal_key}"));
    let bad = verify(&[&id]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains(&format!("missing WAL segment {end_wal}")),
        "{}",
        text(&bad)
    );

    delete_key(&s3, "ver", &format!("p/srv/base/{id}/data.tar.lz4"));
    let bad = verify(&["--all"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stdout)
            .contains(&format!("missing tar part p/srv/base/{id}/data.tar.lz4")),
        "{}",
        text(&bad)
    );
}

fn delete_key(s3: &S3Server, bucket: &str, key: &str) {
    boto3(
        s3,
        bucket,
        "s3.delete_object(Bucket=bucket, Key=sys.argv[3])",
        &[key],
    );
}

/// doctor: a healthy archive has no findings; WAL of another database system and a
/// timeline branched while its parent kept archiving are each reported with the
/// object named; refused credentials are told apart.
#[test]
fn doctor_reports_foreign_wal_and_a_second_cluster() {
    let (s3, pg) = start_both(&["archive_mode = on", &archive_conf("doc", "srv")]);
    s3.create_bucket("doc");
    start(&pg, &s3);
    pg.psql("create table t as select 1 as x");
    let ep = s3.endpoint.as_str();
    let out = native_backup(&pg, &s3, "s3://doc/p", &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    pg.psql("insert into t values (2)");
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(60));
    let doctor = || CloudCmd::native("doctor", &s3).run(&["s3://doc/p", "srv"]);
    let healthy = doctor();
    assert_eq!(healthy.status.code(), Some(0), "{}", text(&healthy));
    assert!(String::from_utf8_lossy(&healthy.stdout).contains("no problems found"));

    // Another cluster's segment, archived here by barman (which overwrites nothing
    // here but checks nothing either), under a later name.
    let other = PgCluster::init(&[]);
    other.start();
    let seg = other.psql("select pg_walfile_name(pg_current_wal_lsn())");
    // Copied while it is the current segment: once switched away from, a checkpoint
    // may recycle it (the other cluster does not archive).
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("0000000100000000000000F0");
    std::fs::copy(other.datadir.join("pg_wal").join(&seg), &foreign).unwrap();
    let up = CloudCmd::new(&barman_tool("barman-cloud-wal-archive"), &s3).run(&[
        "s3://doc/p",
        "srv",
        foreign.to_str().unwrap(),
    ]);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    // A timeline 2 that branched at 0/2000000 while timeline 1 went on.
    let hist = dir.path().join("00000002.history");
    std::fs::write(&hist, "1\t0/2000000\tno recovery target specified\n").unwrap();
    let up = CloudCmd::new(&barman_tool("barman-cloud-wal-archive"), &s3).run(&[
        "s3://doc/p",
        "srv",
        hist.to_str().unwrap(),
    ]);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));

    let sick = doctor();
    assert_eq!(sick.status.code(), Some(1), "{}", text(&sick));
    let report = String::from_utf8_lossy(&sick.stdout);
    assert!(
        report.contains("0000000100000000000000F0")
            && report.contains("belongs to database system"),
        "{report}"
    );
    assert!(
        report.contains("timeline 2 branched from timeline 1") && report.contains("two clusters"),
        "{report}"
    );

    let mut env = s3.env();
    for (k, v) in env.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "not-the-secret".into();
        }
    }
    let denied = Command::new(barrelman())
        .args(["doctor", "--endpoint-url", ep, "s3://doc/p", "srv"])
        .envs(env)
        .output()
        .unwrap();
    assert_eq!(denied.status.code(), Some(1), "{}", text(&denied));
    let report = String::from_utf8_lossy(&denied.stdout);
    assert!(
        report.contains("denied") && report.contains("secret access key"),
        "{report}"
    );
    assert!(!report.contains("not-the-secret"));
}

/// doctor with a connection to the server: a healthy set-up has no findings; the
/// same server checked against another server name is told to archive somewhere
/// else; a failing archive_command and archive_mode = off are each named.
#[test]
fn doctor_checks_the_servers_archiving_against_the_archive() {
    let (s3, pg) = start_both(&["archive_mode = on", &archive_conf("srvdoc", "srv")]);
    s3.create_bucket("srvdoc");
    start(&pg, &s3);
    pg.psql("create table t as select 1 as n");
    let seg = switch_wal(&pg);
    wait_archived(&pg, &seg, Duration::from_secs(60));
    let sock = pg.socket_dir.display().to_string();
    let port = pg.port.to_string();
    let doctor = |server: &str| {
        let out = CloudCmd::native("doctor", &s3).run(&[
            "--host",
            &sock,
            "--port",
            &port,
            "--user",
            "postgres",
            "s3://srvdoc/p",
            server,
        ]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            text(&out),
        )
    };
    let (code, report, all) = doctor("srv");
    assert_eq!(code, Some(0), "{all}");
    assert!(report.contains("no problems found"), "{report}");

    let (code, report, all) = doctor("other");
    assert_eq!(code, Some(1), "{all}");
    assert!(
        report.contains("does not name s3://srvdoc/p and server other")
            && report.contains("archives somewhere else"),
        "{report}"
    );

    pg.psql("alter system set archive_command = 'false'");
    pg.psql("select pg_reload_conf()");
    pg.psql("insert into t values (2)"); // a switch needs new WAL to close a segment
    switch_wal(&pg);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pg.psql("select failed_count from pg_stat_archiver") == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "archive_command never failed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, report, all) = doctor("srv");
    assert_eq!(code, Some(1), "{all}");
    assert!(report.contains("WAL archiving is failing"), "{report}");

    pg.psql("alter system set archive_mode = off");
    pg.stop();
    start(&pg, &s3);
    let (code, report, all) = doctor("srv");
    assert_eq!(code, Some(1), "{all}");
    assert!(report.contains("archive_mode is off"), "{report}");
}
