//! Failures users hit, run with barman-cloud 3.19.1 and with barrelman on the same
//! command line and environment: the exit code is barman's, and barrelman says in one
//! log line what failed (the object, bucket, file or setting), why, and what to do.

use super::common::*;
use barrelman_testkit::{PgCluster, S3Server};
use std::path::Path;
use std::process::{Command, Output};

/// One failure: a tool, its arguments, environment changes, and the words our one
/// ERROR line must hold.
struct Failure<'a> {
    what: &'a str,
    tool: &'a str,
    args: Vec<String>,
    env: Vec<(&'a str, String)>,
    env_remove: Vec<&'a str>,
    says: Vec<String>,
}

fn run_with(program: &Path, f: &Failure, s3: &S3Server) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(&f.args)
        .envs(s3.env())
        .env_remove("AWS_ENDPOINT_URL");
    for k in &f.env_remove {
        cmd.env_remove(k);
    }
    for (k, v) in &f.env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn failures_exit_as_barman_and_say_what_to_do() {
    let s3 = S3Server::start();
    s3.create_bucket("errs");
    let pg = PgCluster::init(&[]);
    pg.start();
    let links = links_dir();
    let ep = s3.endpoint.clone();
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("000000010000000000000001");
    std::fs::write(&wal, wal_like(1 << 20, 5)).unwrap();
    let wal_s = wal.display().to_string();
    let out = CloudCmd::new(&links.join("barman-cloud-wal-archive"), &s3).run(&[
        "s3://errs/p",
        "srv",
        &wal_s,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("PG_VERSION"), "15\n").unwrap();
    let dead = format!("http://127.0.0.1:{}", barrelman_testkit::free_port());
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let archive = |extra: &[&str], url: &str, path: &str| {
        let mut v = s(extra);
        v.extend(s(&[url, "srv", path]));
        v
    };
    let cases = vec![
        Failure {
            what: "credentials missing",
            tool: "barman-cloud-wal-archive",
            args: archive(&["--endpoint-url", &ep], "s3://errs/p", &wal_s),
            env: vec![],
            env_remove: vec!["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
            says: s(&["credentials", "AWS_ACCESS_KEY_ID"]),
        },
        Failure {
            what: "wrong secret",
            tool: "barman-cloud-wal-archive",
            args: archive(&["--endpoint-url", &ep], "s3://errs/p", &wal_s),
            env: vec![("AWS_SECRET_ACCESS_KEY", "not-the-secret".into())],
            env_remove: vec![],
            says: s(&["errs", "denied", "AWS_SECRET_ACCESS_KEY"]),
        },
        Failure {
            what: "secret key missing (a secret without the key the ObjectStore names)",
            tool: "barman-cloud-wal-archive",
            args: archive(&["--endpoint-url", &ep], "s3://errs/p", &wal_s),
            env: vec![],
            env_remove: vec!["AWS_SECRET_ACCESS_KEY"],
            says: s(&["AWS_SECRET_ACCESS_KEY is empty or missing", "s3Credentials"]),
        },
        Failure {
            what: "unknown access key",
            tool: "barman-cloud-backup-list",
            args: s(&["--endpoint-url", &ep, "s3://errs/p", "srv"]),
            env: vec![("AWS_ACCESS_KEY_ID", "nobody-knows-me".into())],
            env_remove: vec![],
            says: s(&["errs", "denied", "AWS_ACCESS_KEY_ID"]),
        },
        Failure {
            what: "bucket missing",
            tool: "barman-cloud-wal-archive",
            args: archive(&["--endpoint-url", &ep], "s3://no-such-bucket/p", &wal_s),
            env: vec![],
            env_remove: vec![],
            says: s(&["no-such-bucket", "does not exist"]),
        },
        Failure {
            what: "endpoint unreachable",
            tool: "barman-cloud-wal-archive",
            args: archive(&["--endpoint-url", &dead], "s3://errs/p", &wal_s),
            env: vec![],
            env_remove: vec![],
            says: s(&["cannot reach", &dead]),
        },
        Failure {
            what: "local WAL file missing",
            tool: "barman-cloud-wal-archive",
            args: archive(
                &["--endpoint-url", &ep],
                "s3://errs/p",
                "/nonexistent/pg_wal/000000010000000000000002",
            ),
            env: vec![],
            env_remove: vec![],
            says: s(&["/nonexistent/pg_wal/000000010000000000000002"]),
        },
        Failure {
            what: "wal-restore into a missing directory",
            tool: "barman-cloud-wal-restore",
            args: s(&[
                "--endpoint-url",
                &ep,
                "s3://errs/p",
                "srv",
                "000000010000000000000001",
                "/nonexistent/dir/RECOVERYXLOG",
            ]),
            env: vec![],
            env_remove: vec![],
            says: s(&["/nonexistent/dir"]),
        },
        Failure {
            what: "restore of an unknown backup id",
            tool: "barman-cloud-restore",
            args: s(&[
                "--endpoint-url",
                &ep,
                "s3://errs/p",
                "srv",
                "20000101T000000",
                dir.path().join("new").to_str().unwrap(),
            ]),
            env: vec![],
            env_remove: vec![],
            says: s(&["20000101T000000"]),
        },
        Failure {
            what: "backup cannot connect to PostgreSQL",
            tool: "barman-cloud-backup",
            args: s(&[
                "--endpoint-url",
                &ep,
                "-h",
                "127.0.0.1",
                "-p",
                &barrelman_testkit::free_port().to_string(),
                "s3://errs/p",
                "srv",
            ]),
            env: vec![],
            env_remove: vec![],
            says: s(&["cannot connect to PostgreSQL", "127.0.0.1", "refused"]),
        },
        Failure {
            what: "keep of an unknown backup name",
            tool: "barman-cloud-backup-keep",
            args: s(&["--endpoint-url", &ep, "-s", "s3://errs/p", "srv", "nightly"]),
            env: vec![],
            env_remove: vec![],
            says: s(&["nightly", "barman-cloud-backup-list"]),
        },
        Failure {
            what: "an unsupported URL scheme",
            tool: "barman-cloud-backup-list",
            args: s(&["--endpoint-url", &ep, "ftp://errs/p", "srv"]),
            env: vec![],
            env_remove: vec![],
            says: s(&["ftp://errs/p"]),
        },
    ];
    let mut report = Vec::new();
    for f in &cases {
        let theirs = run_with(&barman_tool(f.tool), f, &s3);
        let ours = run_with(&links.join(f.tool), f, &s3);
        let err = String::from_utf8_lossy(&ours.stderr).to_string();
        let errors: Vec<&str> = err.lines().filter(|l| l.contains(" ERROR: ")).collect();
        let ok = ours.status.code() == theirs.status.code()
            && errors.len() == 1
            && f.says.iter().all(|w| errors[0].contains(w.as_str()))
            && !err.contains(&s3.secret_key)
            && !err.contains("not-the-secret");
        report.push(format!(
            "{} {}: barman {:?}, ours {:?}\n  barman: {}\n  ours:   {}",
            if ok { "ok  " } else { "FAIL" },
            f.what,
            theirs.status.code(),
            ours.status.code(),
            String::from_utf8_lossy(&theirs.stderr)
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or(""),
            err.trim()
        ));
    }
    let failed = report.iter().any(|r| r.starts_with("FAIL"));
    assert!(!failed, "\n{}", report.join("\n"));
}

/// `-P/--aws-profile` and `AWS_PROFILE` with shared credentials and config files: the
/// same outcome from barman and barrelman for each way users set them up.
#[test]
fn aws_profiles_are_read_as_barman_reads_them() {
    let s3 = S3Server::start();
    s3.create_bucket("prof");
    let links = links_dir();
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    let config = dir.path().join("config");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n\n\
             [backup]\naws_access_key_id={id}\naws_secret_access_key={secret}\n\n\
             [stale]\naws_access_key_id = {id}\naws_secret_access_key = not-the-secret\n",
            id = s3.access_key,
            secret = s3.secret_key
        ),
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "[profile fromconfig]\nregion = {}\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s3.region, s3.access_key, s3.secret_key
        ),
    )
    .unwrap();
    let files = vec![
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            credentials.display().to_string(),
        ),
        ("AWS_CONFIG_FILE", config.display().to_string()),
    ];
    let list = |extra: &[&str]| {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(["--endpoint-url", &s3.endpoint, "s3://prof/p", "srv"].map(String::from));
        v
    };
    let no_keys = vec!["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
    let with = |extra: Vec<(&'static str, String)>| {
        let mut env = files.clone();
        env.extend(extra);
        env
    };
    let cases = [
        // (what, args, env, env_remove, exit code of both)
        (
            "--aws-profile beats wrong keys in the environment",
            list(&["--aws-profile", "backup"]),
            with(vec![("AWS_SECRET_ACCESS_KEY", "not-the-secret".into())]),
            vec![],
            0,
        ),
        (
            "-P with a profile from the config file",
            list(&["-P", "fromconfig"]),
            with(vec![]),
            no_keys.clone(),
            0,
        ),
        (
            "the deprecated --profile",
            list(&["--profile", "backup"]),
            with(vec![]),
            no_keys.clone(),
            0,
        ),
        (
            "AWS_PROFILE without keys in the environment",
            list(&[]),
            with(vec![("AWS_PROFILE", "backup".into())]),
            no_keys.clone(),
            0,
        ),
        (
            "the default profile",
            list(&[]),
            with(vec![]),
            no_keys.clone(),
            0,
        ),
        (
            "keys in the environment beat AWS_PROFILE",
            list(&[]),
            with(vec![
                ("AWS_PROFILE", "backup".into()),
                ("AWS_SECRET_ACCESS_KEY", "not-the-secret".into()),
            ]),
            vec![],
            4,
        ),
        (
            "a profile with a wrong secret",
            list(&["--aws-profile", "stale"]),
            with(vec![]),
            vec![],
            4,
        ),
        (
            "a profile that does not exist",
            list(&["--aws-profile", "nosuch"]),
            with(vec![]),
            vec![],
            4,
        ),
    ];
    for (what, args, env, env_remove, want) in cases {
        let f = Failure {
            what,
            tool: "barman-cloud-backup-list",
            args,
            env: env.iter().map(|(k, v)| (*k, v.clone())).collect(),
            env_remove,
            says: vec![],
        };
        let theirs = run_with(&barman_tool(f.tool), &f, &s3);
        let ours = run_with(&links.join(f.tool), &f, &s3);
        assert_eq!(
            theirs.status.code(),
            Some(want),
            "barman, {what}: {}",
            text(&theirs)
        );
        assert_eq!(
            ours.status.code(),
            Some(want),
            "barrelman, {what}: {}",
            text(&ours)
        );
        let err = String::from_utf8_lossy(&ours.stderr);
        assert!(
            !err.contains(&s3.secret_key),
            "{what}: a secret leaked: {err}"
        );
        if what.contains("does not exist") {
            assert!(
                err.contains("'nosuch'") && err.contains("credentials"),
                "{err}"
            );
        }
    }
}

/// One failure of each error class through the real binary, with the exact exit code
/// barman gives it: input 3; not found, conflict and failed 1; denied, unavailable
/// and internal 4; and 2 for a wal-restore whose spool cannot be used.
#[test]
fn every_error_class_exits_with_its_code() {
    let s3 = S3Server::start();
    s3.create_bucket("classes");
    let links = links_dir();
    let ep = s3.endpoint.clone();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file_url = format!("file://{}", store.display());
    let wal = dir.path().join("000000010000000000000001");
    std::fs::write(&wal, wal_like(1 << 20, 1)).unwrap();
    let wal_s = wal.to_str().unwrap();
    let dest = dir.path().join("RECOVERYXLOG");
    let dest_s = dest.to_str().unwrap();
    let wal_archive = links.join("barman-cloud-wal-archive");
    let wal_restore = links.join("barman-cloud-wal-restore");
    for url in ["s3://classes/p", file_url.as_str()] {
        let out = run(
            &wal_archive,
            &["--endpoint-url", &ep, url, "srv", wal_s],
            &s3,
        );
        assert_eq!(out.status.code(), Some(0), "{url}: {}", text(&out));
    }
    let expect = |what: &str, out: &Output, code: i32, says: &str| {
        assert_eq!(out.status.code(), Some(code), "{what}: {}", text(out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{what}: no '{says}' in {}",
            text(out)
        );
    };

    // Input: a name that is no WAL file name.
    let out = run(
        &wal_restore,
        &[&file_url, "srv", "RECOVERYXLOG", dest_s],
        &s3,
    );
    expect(
        "input",
        &out,
        3,
        "'RECOVERYXLOG' is an invalid name for a WAL file",
    );

    // Not found: a segment that was never archived (logged, not as an error).
    let out = run(
        &barrelman(),
        &[
            "-v",
            "wal-restore",
            &file_url,
            "srv",
            "000000010000000000000002",
            dest_s,
        ],
        &s3,
    );
    expect(
        "not found",
        &out,
        1,
        "INFO: WAL file 000000010000000000000002 does not exist in",
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(" ERROR: "),
        "{}",
        text(&out)
    );

    // Conflict: the same name with other content.
    std::fs::write(&wal, wal_like(1 << 20, 2)).unwrap();
    let out = run(&wal_archive, &[&file_url, "srv", wal_s], &s3);
    expect("conflict", &out, 1, "refusing to overwrite");

    // Denied: a wrong secret key.
    let out = Command::new(&wal_restore)
        .args(["--endpoint-url", &ep, "s3://classes/p", "srv"])
        .args(["000000010000000000000001", dest_s])
        .envs(s3.env())
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .output()
        .unwrap();
    expect("denied", &out, 4, "AWS_SECRET_ACCESS_KEY");

    // Unavailable: nothing listens at the endpoint.
    let dead = format!("http://127.0.0.1:{}", barrelman_testkit::free_port());
    let out = run(
        &wal_restore,
        &["--endpoint-url", &dead, "s3://classes/p", "srv"]
            .into_iter()
            .chain(["000000010000000000000001", dest_s])
            .collect::<Vec<_>>(),
        &s3,
    );
    expect("unavailable", &out, 4, "cannot reach the object store");

    // The spool of a parallel wal-restore cannot be created (its path is a file):
    // barman's 2.
    let spool = dir.path().join("spool");
    std::fs::write(&spool, b"a file where the spool should be").unwrap();
    let out = run(
        &wal_restore,
        &["--parallel", "2", "--spool-dir", spool.to_str().unwrap()]
            .into_iter()
            .chain([file_url.as_str(), "srv", "000000010000000000000001", dest_s])
            .collect::<Vec<_>>(),
        &s3,
    );
    expect("spool", &out, 2, "cannot create the spool directory");

    // Failed: verify finds a DONE backup with nothing stored but its backup.info.
    let id = "20260101T000000";
    let mut info = barrelman_core::backup_info::BackupInfo::new(id);
    info.status = barrelman_core::backup_info::BackupStatus::Done;
    let base = store.join("srv/base").join(id);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("backup.info"), info.to_file_text()).unwrap();
    let out = run(&barrelman(), &["verify", &file_url, "srv", id], &s3);
    expect("failed", &out, 1, &format!("backup {id}: "));

    // Internal: a stored object that does not decompress.
    let gz = dir.path().join("000000010000000000000003");
    std::fs::write(&gz, wal_like(1 << 20, 3)).unwrap();
    let out = run(
        &wal_archive,
        &["--gzip", &file_url, "srv", gz.to_str().unwrap()],
        &s3,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stored = store.join("srv/wals/0000000100000000/000000010000000000000003.gz");
    std::fs::write(&stored, b"this is not a gzip stream").unwrap();
    let out = run(
        &wal_restore,
        &[&file_url, "srv", "000000010000000000000003", dest_s],
        &s3,
    );
    expect("internal", &out, 4, "cannot decompress");
}
