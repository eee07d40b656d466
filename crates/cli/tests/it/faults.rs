//! Fault injection on real components: a closed stdout, a store that stalls, 5xx
//! bursts, connection resets, and a SeaweedFS server killed and restarted in the
//! middle of WAL archiving, a backup and a restore, with PostgreSQL archiving and
//! recovering through it. After each: no WAL lost (every segment PostgreSQL marked
//! `.done` restores byte-identical), no DONE backup that does not restore, and a
//! clear state (FAILED, or retried to success).

use super::common::*;
use barrelman_testkit::{Fault, FlakyProxy, PgCluster, S3Server};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Waits until a backup has written its STARTED `backup.info` (its upload begins).
fn wait_backup_started(s3: &S3Server, bucket: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !list_keys(s3, bucket, "p/srv/base/")
        .iter()
        .any(|k| k.ends_with("/backup.info"))
    {
        assert!(
            Instant::now() < deadline,
            "the backup did not start in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `cmd` with its stdout a pipe whose reader is already gone, as in
/// `barrelman list | head -0`: the first write fails with EPIPE.
fn run_into_closed_pipe(cmd: &mut Command) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

/// Output piped into a reader that stops early (`| head`) ends the process quietly
/// with exit 0: no signal 13, no panic message. SIGPIPE itself stays ignored.
#[test]
fn list_and_show_into_a_closed_pipe_end_quietly_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let links = links_dir();
    let cases: Vec<(std::path::PathBuf, Vec<&str>)> = vec![
        (barrelman(), vec!["list", &url, "srv"]),
        (barrelman(), vec!["list", "--format", "json", &url, "srv"]),
        (links.join("barman-cloud-backup-list"), vec![&url, "srv"]),
        (
            links.join("barman-cloud-backup-list"),
            vec!["--format", "json", &url, "srv"],
        ),
        (
            barrelman(),
            vec!["install-links", dir.path().to_str().unwrap()],
        ),
    ];
    for (program, args) in cases {
        let out = run_into_closed_pipe(Command::new(&program).args(&args));
        assert_eq!(
            out.status.signal(),
            None,
            "{} {args:?} was killed by a signal: {}",
            program.display(),
            text(&out)
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(
            out.stderr.is_empty(),
            "{args:?} wrote on stderr: {}",
            text(&out)
        );
    }
}

fn wal_file(dir: &Path, name: &str, seed: u64) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join(name);
    let data = wal_like(16 << 20, seed);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// A store that accepts connections and never answers: each call ends within its
/// deadline (3 × --read-timeout) with the "cannot reach the object store" sentence
/// and barman's exit code 4, instead of stalling PostgreSQL's archiver for minutes.
#[test]
fn a_stalled_store_ends_each_call_within_its_deadline() {
    let s3 = S3Server::start();
    s3.create_bucket("stall");
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = wal_file(dir.path(), "000000010000000000000003", 3);
    let links = links_dir();
    let back = dir.path().join("back");
    let proxy = FlakyProxy::start(&s3.endpoint, Fault::Stall, usize::MAX / 2);
    let read_timeout = 2;
    let deadline = Duration::from_secs(3 * read_timeout);
    let calls: [(&str, Vec<&str>); 3] = [
        ("barman-cloud-wal-archive", vec![wal.to_str().unwrap()]),
        (
            "barman-cloud-wal-restore",
            vec!["000000010000000000000003", back.to_str().unwrap()],
        ),
        ("barman-cloud-backup-list", vec![]),
    ];
    for (tool, rest) in calls {
        let rt = read_timeout.to_string();
        let mut args = vec![
            "--read-timeout",
            &rt,
            "--endpoint-url",
            &proxy.endpoint,
            "s3://stall",
            "srv",
        ];
        args.extend(rest);
        let began = Instant::now();
        let out = run(&links.join(tool), &args, &s3);
        let took = began.elapsed();
        assert_eq!(out.status.code(), Some(4), "{tool}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "cannot reach the object store at {}",
                proxy.endpoint
            )),
            "{tool}: {}",
            text(&out)
        );
        // The deadline, plus process start-up and the last timeout in flight.
        assert!(
            took < deadline + Duration::from_secs(3),
            "{tool} took {took:?}, deadline {deadline:?}: {}",
            text(&out)
        );
        assert!(proxy.faulted() > 0);
    }
}

/// 5xx bursts are retried to success; a store that keeps answering 503 fails the
/// call with one sentence naming the status and the S3 code, not object_store's
/// raw text.
#[test]
fn server_error_bursts_are_retried_and_a_lasting_one_is_named() {
    let s3 = S3Server::start();
    s3.create_bucket("burst");
    let dir = tempfile::tempdir().unwrap();
    let links = links_dir();
    let archive = links.join("barman-cloud-wal-archive");
    let restore = links.join("barman-cloud-wal-restore");
    for (i, status) in [500u16, 502, 503].into_iter().enumerate() {
        let name = format!("00000001000000000000001{i}");
        let (wal, data) = wal_file(dir.path(), &name, 10 + i as u64);
        let proxy = FlakyProxy::start(&s3.endpoint, Fault::Status(status), 4);
        let out = run(
            &archive,
            &[
                "--endpoint-url",
                &proxy.endpoint,
                "s3://burst",
                "srv",
                wal.to_str().unwrap(),
            ],
            &s3,
        );
        assert_eq!(out.status.code(), Some(0), "{status}: {}", text(&out));
        assert_eq!(proxy.faulted(), 4, "the proxy did not inject the burst");
        proxy.arm(Fault::Status(status), 4);
        let back = dir.path().join(format!("back-{status}"));
        let out = run(
            &restore,
            &[
                "--endpoint-url",
                &proxy.endpoint,
                "s3://burst",
                "srv",
                &name,
                back.to_str().unwrap(),
            ],
            &s3,
        );
        assert_eq!(out.status.code(), Some(0), "{status}: {}", text(&out));
        assert!(
            std::fs::read(&back).unwrap() == data,
            "{status}: restored bytes differ"
        );
    }

    let (wal, _) = wal_file(dir.path(), "000000010000000000000020", 20);
    let proxy = FlakyProxy::start(&s3.endpoint, Fault::Status(503), usize::MAX / 2);
    let out = run(
        &archive,
        &[
            "--read-timeout",
            "2",
            "--endpoint-url",
            &proxy.endpoint,
            "s3://burst",
            "srv",
            wal.to_str().unwrap(),
        ],
        &s3,
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!(
            "the object store at {} answered HTTP 503 (ServiceUnavailable)",
            proxy.endpoint
        )) && last.contains("check its health"),
        "{}",
        text(&out)
    );
    assert!(
        !last.contains("Error performing"),
        "raw client text: {last}"
    );
}

fn archive_command(endpoint_var: &str, bucket: &str) -> String {
    format!(
        "archive_command = '{} wal-archive --endpoint-url \"${endpoint_var}\" --compression zstd s3://{bucket}/p srv %p'",
        barrelman().display()
    )
}

/// PostgreSQL archives through a proxy that resets connections and answers 5xx
/// bursts, then directly into a SeaweedFS that is killed and restarted while WAL
/// is being switched: nothing marked `.done` is missing or different, and no
/// archive_command died of a signal.
#[test]
fn archiving_through_resets_5xx_and_a_store_restart_loses_no_wal() {
    let (mut s3, pg) = start_both(&[
        "archive_mode = on",
        "wal_keep_size = '2GB'",
        "archive_timeout = 0",
        &archive_command("BM_ARCHIVE_ENDPOINT", "arch"),
    ]);
    s3.create_bucket("arch");
    let proxy = FlakyProxy::start(&s3.endpoint, Fault::ResetMidRequest, 3);
    let mut env = s3.env();
    env.push(("BM_ARCHIVE_ENDPOINT".into(), proxy.endpoint.clone()));
    pg.start_with_env(&env);
    pg.psql("create table t (id int, pad text)");
    let write_and_switch = |n: usize| {
        let mut last = String::new();
        for i in 0..n {
            pg.psql(&format!(
                "insert into t select g, repeat('x', 200) from generate_series(1, 2000) g -- {i}"
            ));
            last = switch_wal(&pg);
        }
        last
    };
    let last = write_and_switch(3);
    wait_archived(&pg, &last, Duration::from_secs(60));
    for fault in [
        Fault::Status(503),
        Fault::Status(500),
        Fault::ResetMidRequest,
    ] {
        let before = proxy.faulted();
        proxy.arm(fault, 5);
        let last = write_and_switch(2);
        wait_archived(&pg, &last, Duration::from_secs(60));
        assert!(proxy.faulted() > before, "{fault:?} was not injected");
    }

    // The store dies while segments are being switched, and comes back.
    s3.kill();
    let last = write_and_switch(3);
    std::thread::sleep(Duration::from_secs(2));
    s3.restart();
    wait_archived(&pg, &last, Duration::from_secs(90));

    let log = pg.log();
    assert!(
        !log.contains("terminated by signal"),
        "an archive_command died of a signal:\n{}",
        tail(&log, 4000)
    );
    let checked = assert_every_done_segment_restores(&pg, &s3, "s3://arch/p", "srv");
    assert!(
        checked >= 12,
        "only {checked} archived segments were compared"
    );
}

/// A SeaweedFS killed and restarted in the middle of a base backup: the backup is
/// retried to DONE or ends FAILED (never left STARTED), and a DONE backup restores
/// while the store is killed and restarted again, with recovery fetching WAL
/// through the restart: every committed row is there.
#[test]
fn a_store_restart_mid_backup_and_mid_restore_leaves_a_clear_state_and_no_loss() {
    let (mut s3, pg) = start_both(&[
        "archive_mode = on",
        "wal_keep_size = '2GB'",
        &archive_command("BM_S3_ENDPOINT", "bkup"),
    ]);
    s3.create_bucket("bkup");
    start(&pg, &s3);
    pg.pgbench(&["-i", "-s", "3", "-q"]);
    pg.psql("create table t (id int primary key)");
    pg.psql("insert into t select generate_series(1, 1000)");
    let sock = pg.socket_dir.to_str().unwrap().to_string();
    let port = pg.port.to_string();
    let endpoint = s3.endpoint.clone();
    let backup_args = |bandwidth: &'static str| {
        vec![
            "backup".to_string(),
            "--immediate-checkpoint".into(),
            "--endpoint-url".into(),
            endpoint.clone(),
            "--max-bandwidth".into(),
            bandwidth.into(),
            "--host".into(),
            sock.clone(),
            "--port".into(),
            port.clone(),
            "--user".into(),
            "postgres".into(),
            "--wal-wait".into(),
            "60".into(),
            "s3://bkup/p".into(),
            "srv".into(),
        ]
    };

    // Mid-backup: kill the store during the upload, restart it 2 s later.
    let backup = barrelman_testkit::as_pg_user(&mut Command::new(barrelman()))
        .args(backup_args("8MB"))
        .envs(s3.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_backup_started(&s3, "bkup");
    std::thread::sleep(Duration::from_millis(500));
    s3.kill();
    std::thread::sleep(Duration::from_secs(2));
    s3.restart();
    let out = backup.wait_with_output().unwrap();
    assert_eq!(
        out.status.signal(),
        None,
        "backup killed by a signal: {}",
        text(&out)
    );
    let list = CloudCmd::native("list", &s3)
        .opts(&["--format", "json"])
        .run(&["s3://bkup/p", "srv"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let listing = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        !listing.contains("\"STARTED\""),
        "a backup was left STARTED: {listing}\n{}",
        text(&out)
    );
    match out.status.code() {
        Some(0) => assert!(listing.contains("\"DONE\""), "{listing}"),
        _ => {
            assert!(
                listing.contains("\"FAILED\""),
                "exit non-zero without FAILED: {listing}\n{}",
                text(&out)
            );
            // Retried by the operator (as CloudNativePG does): a DONE backup.
            let again = run_as_pg(
                &barrelman(),
                &backup_args("1GB")
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                &s3,
            );
            assert_eq!(again.status.code(), Some(0), "{}", text(&again));
        }
    }

    // Rows committed after the backup, archived; then the store dies during the
    // restore and recovery.
    pg.psql("insert into t select generate_series(1001, 2000)");
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(60));
    let checked = assert_every_done_segment_restores(&pg, &s3, "s3://bkup/p", "srv");
    assert!(checked > 0);
    pg.stop();

    let dest = pg.make_dir("restored");
    s3.kill();
    let restore = barrelman_testkit::as_pg_user(&mut Command::new(barrelman()))
        .args([
            "restore",
            "--endpoint-url",
            &s3.endpoint,
            "s3://bkup/p",
            "srv",
            dest.to_str().unwrap(),
            "--target-action",
            "promote",
        ])
        .envs(s3.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    s3.restart();
    let out = restore.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "restore through a store restart: {}",
        text(&out)
    );
    // WARNING is the default level, as barman's: no INFO lines without -v.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("INFO:"),
        "{}",
        text(&out)
    );

    // barman-cloud-restore, as barman's: silent on success at the default level.
    let quiet = pg.make_dir("restored-barman");
    let out = CloudCmd::new(&links_dir().join("barman-cloud-restore"), &s3).run_as_pg(&[
        "s3://bkup/p",
        "srv",
        "latest",
        quiet.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        text(&out)
    );
    assert!(quiet.join("PG_VERSION").exists());

    let restored = PgCluster::from_datadir(dest, &["archive_mode = off"]);
    start(&restored, &s3);
    // Recovery fetches WAL through one more restart (a clean stop this time).
    s3.stop();
    std::thread::sleep(Duration::from_secs(2));
    s3.restart();
    wait_promoted(&restored);
    assert_eq!(
        restored.psql("select count(*), max(id) from t"),
        "2000|2000"
    );
    assert_eq!(
        restored.psql("select count(*) from pgbench_accounts"),
        "300000"
    );
}

/// A refused request sent with a session token names the token as the likely
/// cause (without its value); `-vv` adds DEBUG lines, `-v` only INFO ones.
#[test]
fn messages_name_a_stale_session_token_and_vv_shows_debug() {
    let s3 = S3Server::start();
    s3.create_bucket("msgs");
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = wal_file(dir.path(), "000000010000000000000005", 5);
    let archive = |extra_env: &[(&str, &str)], flags: &[&str]| {
        let mut cmd = Command::new(barrelman());
        cmd.arg("wal-archive")
            .args(flags)
            .args([
                "--endpoint-url",
                &s3.endpoint,
                "s3://msgs",
                "srv",
                wal.to_str().unwrap(),
            ])
            .envs(s3.env());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let token = "FwoGZXIvYXdzEStaleSessionToken";
    let out = archive(&[("AWS_SESSION_TOKEN", token)], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("session token")
            && stderr.contains("likely cause")
            && stderr.contains("AWS_SESSION_TOKEN"),
        "{}",
        text(&out)
    );
    assert!(
        !stderr.contains(token),
        "the token's value was printed: {stderr}"
    );

    let out = archive(&[], &["-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("INFO: ") && !stderr.contains("DEBUG: "),
        "{}",
        text(&out)
    );
    let out = archive(&[], &["-vv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DEBUG: "),
        "-vv shows no DEBUG line: {}",
        text(&out)
    );
    assert!(
        !stderr.contains(&s3.secret_key),
        "a secret in the debug output"
    );
}

/// A store that dies for good during a backup: the backup fails (exit 1) with the
/// upload's own error (which store, why), not a pointer to an error not shown.
#[test]
fn a_backup_whose_store_dies_says_why() {
    let (mut s3, pg) = start_both(&[
        "archive_mode = on",
        &archive_command("BM_S3_ENDPOINT", "dies"),
    ]);
    s3.create_bucket("dies");
    start(&pg, &s3);
    pg.pgbench(&["-i", "-s", "2", "-q"]);
    let backup = native_backup(
        &pg,
        &s3,
        "s3://dies/p",
        &["--read-timeout", "2", "--max-bandwidth", "4MB"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_backup_started(&s3, "dies");
    std::thread::sleep(Duration::from_millis(500));
    s3.kill();
    let out = backup.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The backup's own failure line (not the later "cannot write the FAILED
    // backup.info" one) carries the upload's error.
    let failed = stderr
        .lines()
        .find(|l| l.contains(" FAILED: "))
        .unwrap_or_else(|| panic!("no FAILED line: {}", text(&out)));
    assert!(
        failed.contains(&format!("cannot reach the object store at {}", s3.endpoint)),
        "{}",
        text(&out)
    );
    assert!(!stderr.contains("see the upload"), "{}", text(&out));
}

/// The backup's PostgreSQL session is cut in the middle of the upload (over the
/// unix socket, where a write to the closed peer raises SIGPIPE): the backup ends
/// with exit 1, a log line and a FAILED `backup.info`, not killed by a signal and
/// left STARTED.
#[test]
fn a_backup_whose_postgres_session_is_cut_ends_failed() {
    let (s3, pg) = start_both(&[
        "archive_mode = on",
        &archive_command("BM_S3_ENDPOINT", "cut"),
    ]);
    s3.create_bucket("cut");
    start(&pg, &s3);
    pg.pgbench(&["-i", "-s", "2", "-q"]);
    let backup = native_backup(&pg, &s3, "s3://cut/p", &["--max-bandwidth", "4MB"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_backup_started(&s3, "cut");
    let cut = pg.psql(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity \
         where application_name = 'barrelman_ops'",
    );
    assert_eq!(cut, "1", "the backup's session was not found");
    let out = backup.wait_with_output().unwrap();
    assert_eq!(
        out.status.signal(),
        None,
        "killed by a signal: {}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ERROR: "),
        "{}",
        text(&out)
    );
    let list = CloudCmd::native("list", &s3)
        .opts(&["--format", "json"])
        .run(&["s3://cut/p", "srv"]);
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(
        listing.contains("\"FAILED\"") && !listing.contains("\"STARTED\""),
        "{listing}"
    );
}

/// A download that stops mid-body is retried on a fresh connection and restores
/// identical bytes, and the retry says what happened (a read timeout), not "cannot
/// decompress"; one that always stops ends the call within its deadline, with no
/// panic from the download still in flight and no temporary file left.
#[test]
fn a_download_stalled_mid_body_is_retried_and_named() {
    let s3 = S3Server::start();
    s3.create_bucket("cutdl");
    let dir = tempfile::tempdir().unwrap();
    let name = "000000010000000000000009";
    let (wal, data) = wal_file(dir.path(), name, 9);
    let links = links_dir();
    let out = CloudCmd::new(&links.join("barman-cloud-wal-archive"), &s3).run(&[
        "s3://cutdl",
        "srv",
        wal.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let proxy = FlakyProxy::start(&s3.endpoint, Fault::StallAnswerAfter(1 << 20), 2);
    let restore = |dest: &Path| {
        run(
            &links.join("barman-cloud-wal-restore"),
            &[
                "--read-timeout",
                "3",
                "--endpoint-url",
                &proxy.endpoint,
                "s3://cutdl",
                "srv",
                name,
                dest.to_str().unwrap(),
            ],
            &s3,
        )
    };
    let back = dir.path().join("back");
    let out = restore(&back);
    assert_eq!(
        out.status.code(),
        Some(0),
        "faulted {}: {}",
        proxy.faulted(),
        text(&out)
    );
    assert!(proxy.faulted() >= 1, "the proxy did not cut the download");
    assert!(
        std::fs::read(&back).unwrap() == data,
        "restored bytes differ"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("WARNING: attempt 1 failed, retrying in 400ms: the download of srv/wals/0000000100000000/{name} was cut"))
            && stderr.contains("within the read timeout of 3 s")
            && !stderr.contains("cannot decompress"),
        "{}",
        text(&out)
    );

    proxy.arm(Fault::StallAnswerAfter(1 << 20), usize::MAX / 2);
    let began = Instant::now();
    let out = restore(&dir.path().join("never"));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        began.elapsed() < Duration::from_secs(12),
        "took {:?}",
        began.elapsed()
    );
    let last = String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        last.contains(&format!(
            "cannot reach the object store at {}",
            proxy.endpoint
        )),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("never").exists());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        text(&out)
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// A base backup uploaded through connection resets and 5xx answers is retried to
/// DONE with every part present, never ended by a signal (SIGPIPE) or left STARTED.
#[test]
fn a_backup_through_resets_and_5xx_is_retried_to_done() {
    let (s3, pg) = start_both(&[
        "archive_mode = on",
        &archive_command("BM_S3_ENDPOINT", "rst"),
    ]);
    s3.create_bucket("rst");
    start(&pg, &s3);
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    let proxy = FlakyProxy::start(&s3.endpoint, Fault::ResetMidRequest, 2);
    let sock = pg.socket_dir.to_str().unwrap().to_string();
    let port = pg.port.to_string();
    let backup =
        barrelman_testkit::as_pg_user(&mut Command::new(links_dir().join("barman-cloud-backup")))
            .args([
                "--immediate-checkpoint",
                "--endpoint-url",
                &proxy.endpoint,
                "-J",
                "2",
                "-h",
                &sock,
                "-p",
                &port,
                "-U",
                "postgres",
                "s3://rst/p",
                "srv",
            ])
            .envs(s3.env())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    wait_backup_started(&s3, "rst");
    proxy.arm(Fault::Status(503), 3);
    let out = backup.wait_with_output().unwrap();
    assert_eq!(
        out.status.signal(),
        None,
        "killed by a signal: {}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(proxy.faulted() >= 2, "faults injected: {}", proxy.faulted());
    let verify = CloudCmd::native("verify", &s3)
        .opts(&["--deep"])
        .run(&["s3://rst/p", "srv"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}
