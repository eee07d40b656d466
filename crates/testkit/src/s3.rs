//! A SeaweedFS S3 server run as a child process.

use crate::ports::{free_port, free_port_pair, random_hex};
use crate::process::{describe, file_tail, send_sigint};
use crate::tools::tools_bin;
use std::fs::{self, File};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`S3Server::start`] waits for the server to accept `CreateBucket`.
const S3_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`S3Server`]'s drop waits after SIGINT before SIGKILL.
const S3_STOP_TIMEOUT: Duration = Duration::from_secs(5);

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
