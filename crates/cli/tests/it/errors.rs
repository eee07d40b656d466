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
    let out = run(
        &links.join("barman-cloud-wal-archive"),
        &["--endpoint-url", &ep, "s3://errs/p", "srv", &wal_s],
        &s3,
    );
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
