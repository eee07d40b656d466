//! Helpers shared by the integration tests.

use barrelman_testkit::{as_pg_user, tools_bin, AzuriteServer, FakeGcsServer, PgCluster, S3Server};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The barrelman binary under test.
pub fn barrelman() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_barrelman"))
}

/// A directory with the barman-cloud-* links to the binary under test.
pub fn links_dir() -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("barrelman-links-")
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    let out = Command::new(barrelman())
        .arg("install-links")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "install-links: {}", text(&out));
    let mut perm = std::fs::metadata(&dir).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&dir, perm).unwrap();
    dir
}

/// A store the barman-cloud command lines are run against: SeaweedFS (S3), Azurite
/// (Azure) or fake-gcs-server (GCS), so that one test body serves all three.
pub trait TestStore {
    /// The tools' environment: credentials, a connection string, or the emulator host.
    fn env(&self) -> Vec<(String, String)>;
    /// The options that point a barman-cloud tool at this store.
    fn store_args(&self) -> Vec<String>;
}

impl TestStore for S3Server {
    fn env(&self) -> Vec<(String, String)> {
        S3Server::env(self)
    }
    fn store_args(&self) -> Vec<String> {
        vec!["--endpoint-url".into(), self.endpoint.clone()]
    }
}

impl TestStore for AzuriteServer {
    fn env(&self) -> Vec<(String, String)> {
        AzuriteServer::env(self)
    }
    fn store_args(&self) -> Vec<String> {
        vec!["--cloud-provider".into(), "azure-blob-storage".into()]
    }
}

impl TestStore for FakeGcsServer {
    fn env(&self) -> Vec<(String, String)> {
        FakeGcsServer::env(self)
    }
    fn store_args(&self) -> Vec<String> {
        vec!["--cloud-provider".into(), "google-cloud-storage".into()]
    }
}

/// Runs `program` with `args` and the store's environment.
pub fn run(program: &Path, args: &[&str], store: &dyn TestStore) -> Output {
    Command::new(program)
        .args(args)
        .envs(store.env())
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

/// The real barman-cloud tool `name` from the tools venv.
pub fn barman_tool(name: &str) -> PathBuf {
    tools_bin().join(name)
}

/// stdout and stderr, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Starts the S3 server and a cluster concurrently (both take about a second).
pub fn start_both(extra_conf: &[&str]) -> (S3Server, PgCluster) {
    std::thread::scope(|scope| {
        let s3 = scope.spawn(S3Server::start);
        let pg = PgCluster::init(extra_conf);
        (s3.join().expect("S3Server::start panicked"), pg)
    })
}

/// Starts fake-gcs-server and a cluster concurrently, as [`start_both`] does.
pub fn start_gcs_and_pg(extra_conf: &[&str]) -> (FakeGcsServer, PgCluster) {
    std::thread::scope(|scope| {
        let gcs = scope.spawn(FakeGcsServer::start);
        let pg = PgCluster::init(extra_conf);
        (gcs.join().expect("FakeGcsServer::start panicked"), pg)
    })
}

/// Waits until PostgreSQL has archived `wal` (or a later segment), failing on timeout.
pub fn wait_archived(pg: &PgCluster, wal: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let last = pg.psql("select coalesce(last_archived_wal, '') from pg_stat_archiver");
        if !last.is_empty() && last.as_str() >= wal {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{wal} not archived in {timeout:?} (last: {last:?}); server log:\n{}",
            tail(&pg.log(), 6000)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Forces a segment switch and returns the name of the segment that was closed.
pub fn switch_wal(pg: &PgCluster) -> String {
    pg.psql("select pg_walfile_name(pg_switch_wal())")
}

/// The last `n` bytes of `s`.
pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Segment files in `pgdata/pg_wal` older than `before`, sorted.
pub fn segments_before(pgdata: &Path, before: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(pgdata.join("pg_wal"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.len() == 24 && n.chars().all(|c| c.is_ascii_hexdigit()) && n.as_str() < before
        })
        .collect();
    v.sort();
    v
}

/// Deterministic WAL-like bytes: runs of zeros, text and noise, `len` bytes.
pub fn wal_like(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let run = (x % 8192) as usize + 1;
        match x % 3 {
            0 => out.extend(std::iter::repeat_n(0u8, run)),
            1 => out.extend(
                b"INSERT INTO pgbench_history VALUES (1, 2, 3, 4, now()); "
                    .iter()
                    .cycle()
                    .take(run),
            ),
            _ => {
                for _ in 0..run {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    out.push(x as u8);
                }
            }
        }
    }
    out.truncate(len);
    out
}

/// Runs a boto3 `script` against `bucket` and returns its stdout. The script finds
/// `s3` (a client of the server), `bucket`, and its own arguments from `sys.argv[3]`.
pub fn boto3(s3: &S3Server, bucket: &str, script: &str, args: &[&str]) -> String {
    const HEADER: &str = r#"
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(s3={"addressing_style": "path"}))
bucket = sys.argv[2]
"#;
    let code = format!("{HEADER}{script}");
    let mut argv = vec!["-c", code.as_str(), s3.endpoint.as_str(), bucket];
    argv.extend_from_slice(args);
    let out = run(&tools_bin().join("python"), &argv, s3);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rewrites the `backup.info` at `key` so its backup looks `days` older (begin and
/// end times moved back).
pub fn age_backup_info(s3: &S3Server, bucket: &str, key: &str, days: i64) {
    const PY: &str = r#"
import datetime, re
key = sys.argv[3]
text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
shift = datetime.timedelta(days=int(sys.argv[4]))
def older(m):
    t = datetime.datetime.fromisoformat(m.group(2)) - shift
    return m.group(1) + t.isoformat(sep=" ")
text = re.sub(r"^((?:begin|end)_time=)(.*)$", older, text, flags=re.M)
s3.put_object(Bucket=bucket, Key=key, Body=text.encode())
"#;
    boto3(s3, bucket, PY, &[key, &days.to_string()]);
}

/// Keys under `prefix` in `bucket`, relative to the prefix, sorted (via boto3).
pub fn list_keys(s3: &S3Server, bucket: &str, prefix: &str) -> Vec<String> {
    const PY: &str = r#"
prefix = sys.argv[3]
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        print(o["Key"][len(prefix):])
"#;
    let mut v: Vec<String> = boto3(s3, bucket, PY, &[prefix])
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// The string value of `"key": "..."` in barman's JSON.
pub fn json_str(json: &str, key: &str) -> String {
    let pat = format!("\"{key}\": \"");
    let start = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} not in {json}"))
        + pat.len();
    json[start..].split('"').next().unwrap().to_string()
}

/// Runs barrelman (or a link) as the PostgreSQL OS user, with the S3 credentials.
pub fn run_as_pg(program: &std::path::Path, args: &[&str], s3: &dyn TestStore) -> Output {
    run_as_pg_env(program, args, &s3.env())
}

pub fn run_as_pg_env(program: &std::path::Path, args: &[&str], env: &[(String, String)]) -> Output {
    as_pg_user(&mut Command::new(program))
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .unwrap()
}

pub fn wait_promoted(pg: &PgCluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.psql("select pg_is_in_recovery()") != "f" {
        assert!(
            Instant::now() < deadline,
            "recovery did not finish:\n{}",
            tail(&pg.log(), 5000)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts `pg` with the S3 credentials and `BM_S3_ENDPOINT` for archive/restore commands.
pub fn start(pg: &PgCluster, s3: &S3Server) {
    let mut env = s3.env();
    env.push(("BM_S3_ENDPOINT".into(), s3.endpoint.clone()));
    pg.start_with_env(&env);
}

/// Runs `barman-cloud-backup` (barman's or a barrelman link) as the PostgreSQL user:
/// `codec`, an immediate checkpoint, the cluster's socket, backup name `name`.
/// Panics unless it exits 0.
pub fn barman_backup(
    tool: &Path,
    pg: &PgCluster,
    s3: &dyn TestStore,
    codec: &str,
    name: &str,
    dest: &str,
    server: &str,
) {
    let out = CloudCmd::new(tool, s3)
        .opts(&[codec, "--immediate-checkpoint"])
        .pg(pg)
        .run_as_pg(&["-n", name, dest, server]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} backup {name}: {}",
        tool.display(),
        text(&out)
    );
}

/// The native `barrelman backup` of `pg` into `dest` (`s3://bucket/path`) as server
/// `srv`, run as the PostgreSQL user with the S3 server's endpoint and credentials,
/// an immediate checkpoint, and `extra` options before the positionals.
pub fn native_backup(pg: &PgCluster, s3: &S3Server, dest: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(barrelman());
    as_pg_user(&mut cmd);
    cmd.args(["backup", "--immediate-checkpoint"])
        .args(["--endpoint-url", &s3.endpoint])
        .args(["--host", pg.socket_dir.to_str().unwrap()])
        .args(["--port", &pg.port.to_string(), "--user", "postgres"])
        .args(extra)
        .args([dest, "srv"])
        .envs(s3.env());
    cmd
}

/// A barman-cloud command line against a test store: the program (barman's
/// tool, a barrelman link, or `barrelman <command>`), the store's options
/// (`--endpoint-url` of an S3 server, `--cloud-provider azure-blob-storage`), the
/// options given with [`CloudCmd::opts`], then what `run` is given (destination,
/// server, the tool's own arguments). The credentials are in the environment.
pub struct CloudCmd<'a> {
    program: PathBuf,
    command: Option<String>,
    s3: &'a dyn TestStore,
    store_args: Vec<String>,
    opts: Vec<String>,
    env: Vec<(String, String)>,
}

impl<'a> CloudCmd<'a> {
    /// `program` (barman's tool or a barrelman link).
    pub fn new(program: &Path, s3: &'a dyn TestStore) -> Self {
        Self {
            program: program.to_path_buf(),
            command: None,
            store_args: s3.store_args(),
            s3,
            opts: Vec::new(),
            env: Vec::new(),
        }
    }

    /// `barrelman <command>`.
    pub fn native(command: &str, s3: &'a dyn TestStore) -> Self {
        Self {
            command: Some(command.to_string()),
            ..Self::new(&barrelman(), s3)
        }
    }

    /// Adds options after the store's.
    pub fn opts(mut self, opts: &[&str]) -> Self {
        self.opts.extend(opts.iter().map(|o| o.to_string()));
        self
    }

    /// Adds the connection options of `pg`: its socket, its port, user `postgres`.
    pub fn pg(self, pg: &PgCluster) -> Self {
        let (sock, port) = (pg.socket_dir.display().to_string(), pg.port.to_string());
        self.opts(&["-h", &sock, "-p", &port, "-U", "postgres"])
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    fn args<'s>(&'s self, rest: &[&'s str]) -> Vec<&'s str> {
        let mut args: Vec<&str> = self.command.iter().map(String::as_str).collect();
        args.extend(self.store_args.iter().map(String::as_str));
        args.extend(self.opts.iter().map(String::as_str));
        args.extend_from_slice(rest);
        args
    }

    /// Runs it as ourselves with `rest` after the options (as [`run`] does: without
    /// `AWS_ENDPOINT_URL`).
    pub fn run(&self, rest: &[&str]) -> Output {
        Command::new(&self.program)
            .args(self.args(rest))
            .envs(self.s3.env())
            .env_remove("AWS_ENDPOINT_URL")
            .envs(self.env.iter().cloned())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.program.display()))
    }

    /// Runs it as the PostgreSQL OS user with `rest` after the options.
    pub fn run_as_pg(&self, rest: &[&str]) -> Output {
        self.command_as_pg(rest).output().unwrap()
    }

    /// The command [`CloudCmd::run_as_pg`] runs, for callers that spawn it themselves.
    pub fn command_as_pg(&self, rest: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        as_pg_user(&mut cmd)
            .args(self.args(rest))
            .envs(self.s3.env())
            .envs(self.env.iter().cloned());
        cmd
    }

    /// [`CloudCmd::run`], asserting exit 0.
    pub fn ok(&self, rest: &[&str]) -> Output {
        let out = self.run(rest);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} {}: {}",
            self.program.display(),
            self.args(rest).join(" "),
            text(&out)
        );
        out
    }
}

/// Every segment PostgreSQL marked archived (`.done`) restores byte-identical from
/// the archive `dest_url` (barman's destination URL) under `server`.
pub fn assert_every_done_segment_restores(
    pg: &PgCluster,
    s3: &S3Server,
    dest_url: &str,
    server: &str,
) -> usize {
    let status = pg.datadir.join("pg_wal/archive_status");
    let dest = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&status).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(seg) = name.strip_suffix(".done") else {
            continue;
        };
        let local = pg.datadir.join("pg_wal").join(seg);
        let Ok(original) = std::fs::read(&local) else {
            continue;
        };
        let back = dest.path().join(seg);
        let out = run(
            &barrelman(),
            &[
                "wal-restore",
                "--endpoint-url",
                &s3.endpoint,
                dest_url,
                server,
                seg,
                back.to_str().unwrap(),
            ],
            s3,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{seg} marked .done but not restorable: {}",
            text(&out)
        );
        assert!(
            std::fs::read(&back).unwrap() == original,
            "{seg}: restored bytes differ"
        );
        checked += 1;
    }
    checked
}

/// Restores backup `name` of `server` at `url` with `restore_tool` (a
/// barman-cloud-restore) into a new directory beside `source`, starts it with
/// `wal_restore_tool` as restore_command (and `extra_conf`), and waits for
/// promotion.
#[allow(clippy::too_many_arguments)]
pub fn restore_with(
    restore_tool: &Path,
    wal_restore_tool: &Path,
    source: &PgCluster,
    store: &dyn TestStore,
    (url, server): (&str, &str),
    name: &str,
    dir: &str,
    extra_conf: &[&str],
) -> PgCluster {
    let dest = source.make_dir(&format!("restore-{dir}"));
    let mut args: Vec<String> = store.store_args();
    args.extend([url, server, name, dest.to_str().unwrap()].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_as_pg(restore_tool, &args, store);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} {name}: {}",
        restore_tool.display(),
        text(&out)
    );
    std::fs::write(dest.join("recovery.signal"), b"").unwrap();
    let restore_command = format!(
        "restore_command = '{} {} {url} {server} %f %p'",
        wal_restore_tool.display(),
        store.store_args().join(" ")
    );
    let mut conf = vec![
        "archive_mode = off",
        restore_command.as_str(),
        "recovery_target_action = 'promote'",
    ];
    conf.extend_from_slice(extra_conf);
    let restored = PgCluster::from_datadir(dest, &conf);
    restored.start_with_env(&store.env());
    wait_promoted(&restored);
    restored
}

/// Compares two `pg_dumpall` outputs, ignoring the random `\restrict` keys pg_dump
/// writes; on a difference, shows the first differing line.
pub fn assert_same_dump(got: &str, want: &str, what: &str) {
    let lines = |d: &str| -> Vec<String> {
        d.lines()
            .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
            .map(String::from)
            .collect()
    };
    let (got, want) = (lines(got), lines(want));
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{what}: dump differs from the source at line {}: got {:?}, source {:?} ({} vs {} lines)",
            i + 1,
            got.get(i),
            want.get(i),
            got.len(),
            want.len()
        );
    }
}
