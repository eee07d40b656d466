//! Base backup integrity on real PostgreSQL and S3: every part of a backup is known
//! and checked, ids are never shared, and deletes or retention during a running
//! backup never end in a DONE backup that lacks its parts.

use super::common::*;
use barrelman_testkit::{PgCluster, S3Server};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn archive_conf(bucket: &str) -> String {
    format!(
        "archive_command = '{} wal-archive --endpoint-url \"$BM_S3_ENDPOINT\" s3://{bucket}/p srv %p'",
        barrelman().display()
    )
}

/// `barrelman backup` of `pg` into `s3://BUCKET/p srv` with `extra` flags.
fn backup_command(pg: &PgCluster, s3: &S3Server, bucket: &str, extra: &[&str]) -> Command {
    let mut flags = vec!["--wal-wait", "60"];
    flags.extend_from_slice(extra);
    native_backup(pg, s3, &format!("s3://{bucket}/p"), &flags)
}

/// The id a successful backup printed (`backup ID [(NAME)] DONE in …`).
fn done_id(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "backup: {}", text(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" DONE in "), "{}", text(out));
    stdout.split_whitespace().nth(1).unwrap().to_string()
}

/// Runs barrelman with `args` (the endpoint is added) and returns its output.
fn bm(s3: &S3Server, args: &[&str]) -> Output {
    CloudCmd::native(args[0], s3).run(&args[1..])
}

/// Runs a barman-cloud tool name through barrelman's links.
fn link(s3: &S3Server, tool: &str, args: &[&str]) -> Output {
    CloudCmd::new(&links_dir().join(tool), s3).run(args)
}

fn both_outputs(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The body of an object, via boto3 (printed as hex so any bytes survive).
fn object_hex(s3: &S3Server, bucket: &str, key: &str) -> String {
    boto3(
        s3,
        bucket,
        "print(s3.get_object(Bucket=bucket, Key=sys.argv[3])['Body'].read().hex())",
        &[key],
    )
}

fn put_object(s3: &S3Server, bucket: &str, key: &str, body: &str) {
    boto3(
        s3,
        bucket,
        "s3.put_object(Bucket=bucket, Key=sys.argv[3], Body=sys.argv[4].encode())",
        &[key, body],
    );
}

/// Restores backup `id` with barrelman, starts it and returns the cluster.
fn restore_and_start(pg: &PgCluster, s3: &S3Server, bucket: &str, id: &str) -> PgCluster {
    let dest = pg.make_dir(&format!("restore-{id}"));
    let out = run_as_pg(
        &barrelman(),
        &[
            "restore",
            "--endpoint-url",
            &s3.endpoint,
            "--backup",
            id,
            &format!("s3://{bucket}/p"),
            "srv",
            dest.to_str().unwrap(),
        ],
        s3,
    );
    assert_eq!(out.status.code(), Some(0), "restore {id}: {}", text(&out));
    let restored = PgCluster::from_datadir(dest, &["archive_mode = off"]);
    start(&restored, s3);
    wait_promoted(&restored);
    restored
}

/// A barrelman backup lists its parts in backup.info, and barman's tools read that
/// file unchanged. Without one middle part, `verify` (also `--deep`) and `restore`
/// refuse the backup naming the exact part, and restore writes nothing. For a
/// barman-written backup (no part list), a gap in the part numbers is named by
/// `verify`, and a missing last part (the one holding backup_label) by
/// `verify --deep` and `restore`. barman's own delete leaves nothing of our backup.
#[test]
fn a_backup_missing_any_part_is_refused_by_verify_and_restore() {
    let (s3, pg) = start_both(&["archive_mode = on", &archive_conf("parts")]);
    s3.create_bucket("parts");
    start(&pg, &s3);
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    let out = backup_command(
        &pg,
        &s3,
        "parts",
        &["--max-archive-size", "2MB", "--jobs", "2"],
    )
    .output()
    .unwrap();
    let id = done_id(&out);
    let prefix = format!("p/srv/base/{id}/");
    let keys = list_keys(&s3, "parts", &prefix);
    let tars: Vec<&String> = keys.iter().filter(|k| k.contains(".tar")).collect();
    assert!(tars.len() >= 4, "expected several parts: {keys:?}");
    let info = String::from_utf8(hex_decode(&object_hex(
        &s3,
        "parts",
        &format!("{prefix}backup.info"),
    )))
    .unwrap();
    assert!(
        info.contains(&format!("# barrelman-parts: {}\n", tars.len())),
        "{info}"
    );
    for t in &tars {
        assert!(
            info.contains(&format!("# barrelman-part: {t} ")),
            "{t}: {info}"
        );
    }
    // barman reads the file with the part list as it reads its own.
    let show = CloudCmd::new(&barman_tool("barman-cloud-backup-show"), &s3).run(&[
        "--format",
        "json",
        "s3://parts/p",
        "srv",
        &id,
    ]);
    assert_eq!(show.status.code(), Some(0), "{}", text(&show));
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("\"status\": \"DONE\""),
        "{}",
        text(&show)
    );
    let ok = bm(&s3, &["verify", "s3://parts/p", "srv", &id, "--deep"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));

    // One middle part gone.
    let victim = format!("p/srv/base/{id}/data_0002.tar");
    assert!(keys.contains(&"data_0002.tar".to_string()), "{keys:?}");
    boto3(
        &s3,
        "parts",
        "s3.delete_object(Bucket=bucket, Key=sys.argv[3])",
        &[&victim],
    );
    for extra in [&[][..], &["--deep"][..]] {
        let mut args = vec!["verify", "s3://parts/p", "srv", id.as_str()];
        args.extend_from_slice(extra);
        let bad = bm(&s3, &args);
        assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
        assert!(
            both_outputs(&bad).contains(&format!("missing tar part {victim}")),
            "{}",
            text(&bad)
        );
    }
    let dest = pg.make_dir("restore-incomplete");
    let bad = CloudCmd::native("restore", &s3).run_as_pg(&[
        "s3://parts/p",
        "srv",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(&format!("missing tar part {victim}")) && err.contains("incomplete"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&dest).unwrap().count(),
        0,
        "restore wrote files of an incomplete backup"
    );

    // barman's delete removes our backup whole: the part list lives in backup.info.
    let del = CloudCmd::new(&barman_tool("barman-cloud-backup-delete"), &s3).run(&[
        "s3://parts/p",
        "srv",
        "-b",
        &id,
    ]);
    assert_eq!(del.status.code(), Some(0), "{}", text(&del));
    assert_eq!(list_keys(&s3, "parts", &prefix), Vec::<String>::new());

    // A barman-written backup in parts: no list, so part numbers and backup_label.
    let out = CloudCmd::new(&barman_tool("barman-cloud-backup"), &s3)
        .opts(&["--immediate-checkpoint"])
        .pg(&pg)
        .run_as_pg(&["-S", "2MB", "s3://parts/p", "srv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listed = link(
        &s3,
        "barman-cloud-backup-list",
        &["--format", "json", "s3://parts/p", "srv"],
    );
    let theirs = json_str(&String::from_utf8_lossy(&listed.stdout), "backup_id");
    let prefix = format!("p/srv/base/{theirs}/");
    let mut data_parts: Vec<String> = list_keys(&s3, "parts", &prefix)
        .into_iter()
        .filter(|k| k.starts_with("data"))
        .collect();
    data_parts.sort();
    assert!(data_parts.len() >= 3, "{data_parts:?}");
    let ok = bm(&s3, &["verify", "s3://parts/p", "srv", &theirs, "--deep"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    // The last part holds backup_label: only reading the parts can tell it is gone.
    let last = format!("{prefix}{}", data_parts.last().unwrap());
    boto3(
        &s3,
        "parts",
        "s3.delete_object(Bucket=bucket, Key=sys.argv[3])",
        &[&last],
    );
    let deep = bm(&s3, &["verify", "s3://parts/p", "srv", &theirs, "--deep"]);
    assert_eq!(deep.status.code(), Some(1), "{}", text(&deep));
    assert!(
        both_outputs(&deep).contains("holds backup_label"),
        "{}",
        text(&deep)
    );
    let dest = pg.make_dir("restore-no-label");
    let bad = CloudCmd::native("restore", &s3).run_as_pg(&[
        "--backup",
        &theirs,
        "s3://parts/p",
        "srv",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("holds backup_label"),
        "{}",
        text(&bad)
    );
    // A gap in the numbers is seen without reading.
    let middle = format!("{prefix}data_0001.tar");
    boto3(
        &s3,
        "parts",
        "s3.delete_object(Bucket=bucket, Key=sys.argv[3])",
        &[&middle],
    );
    let gap = bm(&s3, &["verify", "s3://parts/p", "srv", &theirs]);
    assert_eq!(gap.status.code(), Some(1), "{}", text(&gap));
    assert!(
        both_outputs(&gap).contains(&format!("missing tar part {middle}*")),
        "{}",
        text(&gap)
    );
}

fn hex_decode(hex: &str) -> Vec<u8> {
    let hex = hex.trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Backups never share an id. Ids already taken (a backup.info, or only tar parts as
/// an older barman's running backup leaves) are skipped and their objects stay
/// byte for byte; two backups started at the same instant both end DONE with their
/// own ids, every part listed in their own backup.info, and both restore.
#[test]
fn backups_started_in_the_same_second_get_their_own_ids_and_both_restore() {
    let (s3, pg) = start_both(&["archive_mode = on", &archive_conf("ids")]);
    s3.create_bucket("ids");
    start(&pg, &s3);
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    pg.psql("create table marks (n int)");
    pg.psql("insert into marks values (1)");

    // Occupy the coming seconds' ids (one boto3 call, so the backup below starts
    // inside the planted range).
    let now = chrono::Local::now().naive_local();
    let planted: Vec<(String, String, String)> = (-1..20)
        .map(|s| {
            let id = (now + chrono::Duration::seconds(s))
                .format("%Y%m%dT%H%M%S")
                .to_string();
            // A backup.info, or only a tar part as a running older barman leaves.
            let file = if s % 2 == 0 {
                "backup.info"
            } else {
                "data.tar"
            };
            let key = format!("p/srv/base/{id}/{file}");
            let body = format!("status=FAILED\nerror=planted {id}\n");
            (id, key, body)
        })
        .collect();
    let args: Vec<&str> = planted
        .iter()
        .flat_map(|(_, k, b)| [k.as_str(), b.as_str()])
        .collect();
    boto3(
        &s3,
        "ids",
        "a = sys.argv[3:]\nfor k, b in zip(a[::2], a[1::2]):\n    s3.put_object(Bucket=bucket, Key=k, Body=b.encode())",
        &args,
    );
    // -v: the skipped ids are logged at INFO (the default level is WARNING).
    let out = backup_command(&pg, &s3, "ids", &["-v"]).output().unwrap();
    let first = done_id(&out);
    let last_planted = &planted.last().unwrap().0;
    assert!(
        first.as_str() > last_planted.as_str(),
        "backup {first} took an occupied id (planted up to {last_planted})"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is taken (its directory holds objects)"),
        "the backup did not start inside the planted ids: {}",
        text(&out)
    );
    let keys: Vec<&str> = planted.iter().map(|(_, k, _)| k.as_str()).collect();
    let stored = boto3(
        &s3,
        "ids",
        "for k in sys.argv[3:]:\n    print(s3.get_object(Bucket=bucket, Key=k)['Body'].read().hex())",
        &keys,
    );
    for ((id, _, body), hex) in planted.iter().zip(stored.lines()) {
        assert_eq!(
            hex_decode(hex),
            body.as_bytes(),
            "{id}: another backup's object was overwritten"
        );
    }
    let base = list_keys(&s3, "ids", "p/srv/base/");
    for (id, key, _) in &planted {
        let in_dir: Vec<&String> = base.iter().filter(|k| k.starts_with(id.as_str())).collect();
        assert_eq!(in_dir.len(), 1, "{id}: {in_dir:?} ({key})");
    }

    // Two at once, launched just after a second starts so both read the same clock.
    pg.psql("insert into marks values (2)");
    let frac = chrono::Local::now().timestamp_subsec_millis();
    std::thread::sleep(Duration::from_millis(u64::from(1000 - frac) + 20));
    let spawn = || {
        backup_command(
            &pg,
            &s3,
            "ids",
            &["--max-archive-size", "1MB", "--jobs", "2"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (a, b): (Child, Child) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ida, idb) = (done_id(&a), done_id(&b));
    assert_ne!(ida, idb, "two backups share one id");
    // Which way the second one lost depends on timing; both must end apart.
    let how: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .filter(|l| l.contains("is taken"))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    eprintln!("concurrent backups {ida} and {idb}; collisions: {how:#?}");
    for id in [&ida, &idb] {
        // Every part in the directory is one this backup wrote and listed.
        let ok = bm(&s3, &["verify", "s3://ids/p", "srv", id, "--deep"]);
        assert_eq!(ok.status.code(), Some(0), "{id}: {}", text(&ok));
    }
    pg.psql("insert into marks values (3)");
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(60));
    pg.stop();
    for id in [&ida, &idb] {
        let restored = restore_and_start(&pg, &s3, "ids", id);
        assert_eq!(
            restored.psql("select string_agg(n::text, ',' order by n) from marks"),
            "1,2,3",
            "restored {id}"
        );
        assert_eq!(
            restored.psql("select count(*) from pgbench_accounts"),
            "100000"
        );
        restored.stop();
    }
}

/// Waits until a STARTED backup other than `not` appears; returns its id.
fn wait_started(s3: &S3Server, bucket: &str, not: &[&str], child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = bm(
            s3,
            &[
                "list",
                "--format",
                "json",
                &format!("s3://{bucket}/p"),
                "srv",
            ],
        );
        let json = String::from_utf8_lossy(&list.stdout).to_string();
        for entry in json.split("{\"backup_label\"").skip(1) {
            if entry.contains("\"status\": \"STARTED\"") {
                let id = json_str(entry, "backup_id");
                if !not.contains(&id.as_str()) {
                    return id;
                }
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it was seen running"
        );
        assert!(Instant::now() < deadline, "no STARTED backup: {json}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// During a running backup, `delete --backup` (native and barman's name) refuses it,
/// retention leaves it alone, and it ends DONE and verifies. Deleted anyway with
/// `--force`, it never ends DONE: it exits 1, says so, and leaves no object behind.
#[test]
fn delete_and_retention_during_a_running_backup() {
    let (s3, pg) = start_both(&["archive_mode = on", &archive_conf("race")]);
    s3.create_bucket("race");
    start(&pg, &s3);
    pg.pgbench(&["-i", "-s", "2", "-q"]);
    let older = done_id(&backup_command(&pg, &s3, "race", &[]).output().unwrap());
    let slow = || {
        backup_command(&pg, &s3, "race", &["--max-bandwidth", "3MB", "--jobs", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    let mut child = slow();
    let running = wait_started(&s3, "race", &[&older], &mut child);
    let refused = bm(&s3, &["delete", "s3://race/p", "srv", "--backup", &running]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&format!("backup {running} is STARTED")),
        "{}",
        text(&refused)
    );
    let refused = link(
        &s3,
        "barman-cloud-backup-delete",
        &["s3://race/p", "srv", "-b", &running],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let retention = bm(
        &s3,
        &[
            "delete",
            "s3://race/p",
            "srv",
            "--retention-policy",
            "REDUNDANCY 1",
        ],
    );
    assert_eq!(retention.status.code(), Some(0), "{}", text(&retention));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup ended too early for this test"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(done_id(&out), running);
    let ok = bm(&s3, &["verify", "s3://race/p", "srv", &running, "--deep"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));

    // --force deletes it under the running backup, which must then fail.
    let mut child = slow();
    let victim = wait_started(&s3, "race", &[&older, &running], &mut child);
    let forced = bm(
        &s3,
        &[
            "delete",
            "s3://race/p",
            "srv",
            "--backup",
            &victim,
            "--force",
        ],
    );
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup ended too early for this test"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("was deleted or changed while the backup ran"),
        "{}",
        text(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("DONE"),
        "{}",
        text(&out)
    );
    assert_eq!(
        list_keys(&s3, "race", &format!("p/srv/base/{victim}/")),
        Vec::<String>::new(),
        "objects of the deleted backup were left"
    );

    // kill -9 mid-way: the backup stays STARTED, with its name, never DONE; a new
    // backup gets its own id; the leftover goes with --force.
    let mut child = backup_command(
        &pg,
        &s3,
        "race",
        &["--max-bandwidth", "3MB", "--jobs", "1", "--name", "killed"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let killed = wait_started(&s3, "race", &[&older, &running, &victim], &mut child);
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap();
    child.wait().unwrap();
    let show = bm(
        &s3,
        &["show", "--format", "json", "s3://race/p", "srv", &killed],
    );
    assert_eq!(show.status.code(), Some(0), "{}", text(&show));
    let json = String::from_utf8_lossy(&show.stdout).to_string();
    assert_eq!(json_str(&json, "status"), "STARTED", "{json}");
    assert_eq!(json_str(&json, "backup_name"), "killed", "{json}");
    let after = done_id(&backup_command(&pg, &s3, "race", &[]).output().unwrap());
    assert_ne!(after, killed);
    let forced = bm(
        &s3,
        &[
            "delete",
            "s3://race/p",
            "srv",
            "--backup",
            "killed",
            "--force",
        ],
    );
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
    assert_eq!(
        list_keys(&s3, "race", &format!("p/srv/base/{killed}/")),
        Vec::<String>::new()
    );
}

/// A DONE backup.info as barman writes the keys that matter here.
fn done_info(begin_wal: &str, end_wal: &str, end_time: &str) -> String {
    format!(
        "begin_time=2026-01-01 00:00:00+00:00\nbegin_wal={begin_wal}\nend_time={end_time}\nend_wal={end_wal}\nserver_name=cloud\nstatus=DONE\ntimeline=1\nversion=150018\n"
    )
}

/// Damaged and abandoned catalog entries: a backup.info that cannot be read is
/// deleted by its id; one whose end_wal lies before its begin_wal is not
/// restorable; a STARTED backup a crash left a day ago is reported by `doctor` with
/// its age and removed by retention, while a fresh one (maybe running) is refused by
/// `delete --backup` on both command lines and left alone by retention.
#[test]
fn damaged_and_abandoned_catalog_entries() {
    let s3 = S3Server::start();
    s3.create_bucket("cat");
    let base = "p/srv/base";
    // Unreadable: no key=value.
    for id in ["20260101T000000", "20260101T000001"] {
        put_object(
            &s3,
            "cat",
            &format!("{base}/{id}/backup.info"),
            "this is not a backup.info\n",
        );
        put_object(&s3, "cat", &format!("{base}/{id}/data.tar"), "x");
    }
    // A keep mark still holds, readable backup.info or not.
    let kept = format!("{base}/20260101T000000/annotations/keep");
    put_object(&s3, "cat", &kept, "standalone");
    let delete_first = || {
        bm(
            &s3,
            &["delete", "s3://cat/p", "srv", "--backup", "20260101T000000"],
        )
    };
    let out = delete_first();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is kept"),
        "{}",
        text(&out)
    );
    boto3(
        &s3,
        "cat",
        "s3.delete_object(Bucket=bucket, Key=sys.argv[3])",
        &[&kept],
    );
    let out = delete_first();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = link(
        &s3,
        "barman-cloud-backup-delete",
        &["s3://cat/p", "srv", "-b", "20260101T000001"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        list_keys(&s3, "cat", &format!("{base}/")),
        Vec::<String>::new()
    );

    // end_wal before begin_wal.
    let reversed = "20260102T000000";
    put_object(
        &s3,
        "cat",
        &format!("{base}/{reversed}/backup.info"),
        &done_info(
            "000000010000000000000009",
            "000000010000000000000002",
            "2026-01-02 00:00:00+00:00",
        ),
    );
    put_object(&s3, "cat", &format!("{base}/{reversed}/data.tar"), "x");
    let out = bm(&s3, &["verify", "s3://cat/p", "srv", reversed]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        both_outputs(&out)
            .contains("ends in WAL segment 000000010000000000000002, before it begins"),
        "{}",
        text(&out)
    );

    // A STARTED backup left two days ago, a newer DONE one, and a fresh STARTED one.
    let stale = "20260103T000000";
    let began = (chrono::Local::now() - chrono::Duration::hours(49)).fixed_offset();
    put_object(
        &s3,
        "cat",
        &format!("{base}/{stale}/backup.info"),
        &format!(
            "backup_name=crashed\nbegin_time={}\nbegin_wal=000000010000000000000003\nserver_name=cloud\nstatus=STARTED\n",
            began.format("%Y-%m-%d %H:%M:%S%:z")
        ),
    );
    put_object(&s3, "cat", &format!("{base}/{stale}/data.tar"), "x");
    let done = "20260104T000000";
    put_object(
        &s3,
        "cat",
        &format!("{base}/{done}/backup.info"),
        &done_info(
            "000000010000000000000004",
            "000000010000000000000004",
            "2026-01-04 00:00:00+00:00",
        ),
    );
    put_object(&s3, "cat", &format!("{base}/{done}/data.tar"), "x");
    let fresh = chrono::Local::now().format("%Y%m%dT%H%M%S").to_string();
    put_object(
        &s3,
        "cat",
        &format!("{base}/{fresh}/backup.info"),
        &format!(
            "begin_time={}\nserver_name=cloud\nstatus=STARTED\n",
            chrono::Local::now()
                .fixed_offset()
                .format("%Y-%m-%d %H:%M:%S%:z")
        ),
    );
    let doctor = bm(&s3, &["doctor", "s3://cat/p", "srv"]);
    assert_eq!(doctor.status.code(), Some(1), "{}", text(&doctor));
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.contains(&format!("backup {stale} is STARTED since"))
            && report.contains("(49 hours ago)"),
        "{report}"
    );
    assert!(
        !report.contains(&format!("backup {fresh} is STARTED")),
        "{report}"
    );
    for out in [
        bm(&s3, &["delete", "s3://cat/p", "srv", "--backup", &fresh]),
        link(
            &s3,
            "barman-cloud-backup-delete",
            &["s3://cat/p", "srv", "-b", &fresh],
        ),
    ] {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("it may still be running"),
            "{}",
            text(&out)
        );
    }
    // Retention (the reversed entry is DONE too: keep it out of this decision).
    boto3(
        &s3,
        "cat",
        "s3.delete_object(Bucket=bucket, Key=sys.argv[3])",
        &[&format!("{base}/{reversed}/backup.info")],
    );
    boto3(
        &s3,
        "cat",
        "s3.delete_object(Bucket=bucket, Key=sys.argv[3])",
        &[&format!("{base}/{reversed}/data.tar")],
    );
    let out = bm(
        &s3,
        &[
            "delete",
            "s3://cat/p",
            "srv",
            "--retention-policy",
            "REDUNDANCY 1",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let left = list_keys(&s3, "cat", &format!("{base}/"));
    assert!(!left.iter().any(|k| k.starts_with(stale)), "{left:?}");
    assert!(left.contains(&format!("{done}/backup.info")), "{left:?}");
    assert!(left.contains(&format!("{fresh}/backup.info")), "{left:?}");
}

/// A proxy to the S3 server that takes one request per connection (and asks both
/// sides to close after it), counts bulk deletes (`POST /BUCKET?delete`) and, when
/// `refuse` is set, answers them itself with `400 MalformedXML`, as S3-compatible
/// stores without DeleteObjects do. Stops when dropped.
struct BulkDeleteProxy {
    endpoint: String,
    bulk_requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The head (request line and headers) of every request forwarded.
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    port: u16,
}

impl BulkDeleteProxy {
    fn start(upstream: &str, refuse: bool) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bulk_requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let heads: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let (count, halt, seen) = (bulk_requests.clone(), stop.clone(), heads.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let (up, count, seen) = (upstream.clone(), count.clone(), seen.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(client, &up, refuse, &count, &seen);
                });
            }
        });
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            bulk_requests,
            heads,
            stop,
            port,
        }
    }

    fn bulk_requests(&self) -> usize {
        self.bulk_requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for BulkDeleteProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn proxy_one(
    mut client: std::net::TcpStream,
    upstream: &str,
    refuse: bool,
    count: &std::sync::atomic::AtomicUsize,
    heads: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    heads.lock().unwrap().push(head.clone());
    let request_line = head.lines().next().unwrap_or_default();
    if request_line.starts_with("POST ") && request_line.contains("?delete") {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if refuse {
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>MalformedXML</Code><Message>The XML you provided was not well-formed</Message></Error>";
            write!(
                client,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return client.shutdown(std::net::Shutdown::Both);
        }
    }
    let mut rewritten: String = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut up = std::net::TcpStream::connect(upstream)?;
    up.write_all(rewritten.as_bytes())?;
    up.write_all(&buf[head_end..])?;
    std::io::copy(&mut up, &mut client)?;
    client.shutdown(std::net::Shutdown::Both)
}

/// `--batch-size N` sends at most N objects per bulk delete request; a store that
/// refuses bulk deletes gets one DELETE per object, so `delete -b` and retention
/// still remove every object (exit 0).
#[test]
fn batch_size_is_honoured_and_refused_bulk_deletes_fall_back_to_single_ones() {
    let s3 = S3Server::start();
    s3.create_bucket("bulk");
    let base = "p/srv/base";
    let failed = "20260101T000000";
    put_object(
        &s3,
        "bulk",
        &format!("{base}/{failed}/backup.info"),
        "status=FAILED\nerror=planted\n",
    );
    for i in 0..5 {
        let name = if i == 0 {
            "data.tar".to_string()
        } else {
            format!("data_{i:04}.tar")
        };
        put_object(&s3, "bulk", &format!("{base}/{failed}/{name}"), "x");
    }
    let counting = BulkDeleteProxy::start(&s3.endpoint, false);
    let out = run(
        &links_dir().join("barman-cloud-backup-delete"),
        &[
            "--endpoint-url",
            &counting.endpoint,
            "--batch-size",
            "2",
            "s3://bulk/p",
            "srv",
            "-b",
            failed,
        ],
        &s3,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        list_keys(&s3, "bulk", &format!("{base}/")),
        Vec::<String>::new()
    );
    // Five parts in requests of two, then backup.info on its own.
    assert_eq!(counting.bulk_requests(), 4);

    // Retention through a store without DeleteObjects.
    let (old, new) = ("20260102T000000", "20260103T000000");
    put_object(
        &s3,
        "bulk",
        &format!("{base}/{old}/backup.info"),
        &done_info(
            "000000010000000000000002",
            "000000010000000000000002",
            "2026-01-02 00:00:00+00:00",
        ),
    );
    put_object(&s3, "bulk", &format!("{base}/{old}/data.tar"), "x");
    put_object(
        &s3,
        "bulk",
        &format!("{base}/{new}/backup.info"),
        &done_info(
            "000000010000000000000004",
            "000000010000000000000004",
            "2026-01-03 00:00:00+00:00",
        ),
    );
    put_object(&s3, "bulk", &format!("{base}/{new}/data.tar"), "x");
    for seg in 2..=4 {
        put_object(
            &s3,
            "bulk",
            &format!("p/srv/wals/0000000100000000/00000001000000000000000{seg}"),
            "w",
        );
    }
    let refusing = BulkDeleteProxy::start(&s3.endpoint, true);
    let out = run(
        &barrelman(),
        &[
            "delete",
            "--endpoint-url",
            &refusing.endpoint,
            "s3://bulk/p",
            "srv",
            "--retention-policy",
            "REDUNDANCY 1",
        ],
        &s3,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(refusing.bulk_requests() >= 1, "no bulk delete was tried");
    assert_eq!(
        list_keys(&s3, "bulk", "p/srv/"),
        vec![
            format!("base/{new}/backup.info"),
            format!("base/{new}/data.tar"),
            "wals/0000000100000000/000000010000000000000004".to_string(),
        ]
    );
}

/// An ObjectStore's `data.encryption` applies to the backup's objects (its
/// `wal.encryption`, unset here, to WAL): every tar part and backup.info upload asks
/// for AES256 server-side encryption.
#[test]
fn backups_use_the_object_stores_data_encryption() {
    let (s3, pg) = start_both(&["archive_mode = on", &archive_conf("enc")]);
    s3.create_bucket("enc");
    start(&pg, &s3);
    pg.psql("create table t as select 1 as x");
    let proxy = BulkDeleteProxy::start(&s3.endpoint, false);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("store.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nmetadata:\n  name: s\nspec:\n  configuration:\n    \
             destinationPath: s3://enc/p\n    endpointURL: {}\n    data:\n      encryption: AES256\n      compression: gzip\n",
            proxy.endpoint
        ),
    )
    .unwrap();
    let mut perm = std::fs::metadata(dir.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(dir.path(), perm).unwrap();
    let out = run_as_pg(
        &barrelman(),
        &[
            "backup",
            "--config",
            manifest.to_str().unwrap(),
            "--server-name",
            "srv",
            "--immediate-checkpoint",
            "--wal-wait",
            "60",
            "--host",
            pg.socket_dir.to_str().unwrap(),
            "--port",
            &pg.port.to_string(),
            "--user",
            "postgres",
        ],
        &s3,
    );
    let id = done_id(&out);
    let heads = proxy.heads.lock().unwrap().clone();
    let puts: Vec<&String> = heads
        .iter()
        .filter(|h| h.starts_with("PUT ") && h.contains(&format!("/base/{id}/")))
        .collect();
    assert!(
        puts.iter().any(|h| h.contains("data.tar.gz"))
            && puts.iter().any(|h| h.contains("backup.info")),
        "{heads:#?}"
    );
    for h in &puts {
        assert!(
            h.to_ascii_lowercase()
                .contains("x-amz-server-side-encryption: aes256"),
            "an upload without data.encryption: {h}"
        );
    }
}

/// The claim a backup id rests on, against the S3 server: a create-only write of a
/// key that exists is refused and leaves the first writer's bytes.
#[test]
fn a_create_only_write_on_s3_never_replaces_an_object() {
    let s3 = S3Server::start();
    s3.create_bucket("claim");
    let dest = barrelman_core::layout::Destination::parse("s3://claim/p", false).unwrap();
    let options = barrelman_storage::StoreSettings::s3(
        barrelman_storage::CommonSettings {
            endpoint_url: Some(s3.endpoint.clone()),
            ..Default::default()
        },
        barrelman_storage::S3Settings {
            keys: Some(barrelman_storage::S3Keys {
                access_key_id: s3.access_key.clone(),
                secret_access_key: s3.secret_key.clone(),
                session_token: None,
            }),
            ..Default::default()
        },
    );
    let archive = barrelman_storage::Archive::open(&dest, "srv", &options).unwrap();
    let key = "p/srv/base/20260101T000000/backup.info";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (first, second) = rt.block_on(async {
        let first = archive
            .put_small_create(key, bytes::Bytes::from_static(b"first"), &[])
            .await
            .unwrap();
        let second = archive
            .put_small_create(key, bytes::Bytes::from_static(b"second"), &[])
            .await
            .unwrap();
        (first, second)
    });
    assert!(first && !second, "first {first}, second {second}");
    assert_eq!(hex_decode(&object_hex(&s3, "claim", key)), b"first");
}
