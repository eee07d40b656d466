//! `barrelman cnpg operator` as a process: SIDECAR_IMAGE and the certificate flags are
//! required with one sentence each; with certificates it binds, answers /healthz and
//! /readyz and stops on SIGTERM with 0; in `--plugin-path` mode it serves Identity on the
//! socket with the operator side's four capabilities.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_barrelman");

fn error_line(out: &std::process::Output) -> serde_json::Value {
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|_| panic!("{err}"))
}

#[test]
fn without_sidecar_image_it_exits_with_the_sentence() {
    let out = Command::new(BIN)
        .args(["cnpg", "operator", "--server-address", "127.0.0.1:1"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert_eq!(line["level"], "error");
    assert_eq!(
        line["msg"],
        "SIDECAR_IMAGE is not set: set it to the barrelman image injected as the sidecar (the \
         Deployment takes it from the plugin's Secret)"
    );
}

#[test]
fn without_certificates_it_says_which_flags() {
    let out = Command::new(BIN)
        .args(["cnpg", "operator"])
        .env_clear()
        .env("SIDECAR_IMAGE", "example.com/barrelman:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let msg = error_line(&out)["msg"].as_str().unwrap().to_string();
    assert!(
        msg.starts_with("--server-cert, --server-key and --client-cert are all required"),
        "{msg}"
    );
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Sends SIGTERM (through kill(1): the workspace denies unsafe code) and returns the
/// exit code.
fn sigterm(child: &mut Child) -> i32 {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn with_certificates_it_serves_probes_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cert = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = cert("barman-cloud");
    let (client_cert, _) = cert("barman-cloud-client");
    std::fs::write(dir.path().join("tls.crt"), server_cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), server_key).unwrap();
    std::fs::write(dir.path().join("client.crt"), client_cert).unwrap();
    let (grpc, health) = (
        barrelman_testkit::free_port(),
        barrelman_testkit::free_port(),
    );
    let mut child = Command::new(BIN)
        .args(["cnpg", "operator", "--leader-elect", "--log-level", "debug"])
        .arg(format!(
            "--server-cert={}",
            dir.path().join("tls.crt").display()
        ))
        .arg(format!(
            "--server-key={}",
            dir.path().join("tls.key").display()
        ))
        .arg(format!(
            "--client-cert={}",
            dir.path().join("client.crt").display()
        ))
        .arg(format!("--server-address=127.0.0.1:{grpc}"))
        .arg(format!("--health-probe-bind-address=127.0.0.1:{health}"))
        .env_clear()
        .env("SIDECAR_IMAGE", "example.com/barrelman:1")
        .env("KUBECONFIG", dir.path().join("none"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        if let Some(r) = http_get(health, "/readyz") {
            if r.starts_with("HTTP/1.1 200") {
                break r;
            }
        }
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ready.ends_with("ok"), "{ready}");
    assert!(http_get(health, "/healthz")
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", grpc)).is_ok());
    assert_eq!(sigterm(&mut child), 0);
}

#[test]
fn unix_mode_serves_identity_on_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "cnpg",
            "operator",
            "--health-probe-bind-address=0",
            "--plugin-path",
        ])
        .arg(dir.path())
        .env_clear()
        .env("SIDECAR_IMAGE", "example.com/barrelman:1")
        .env("KUBECONFIG", dir.path().join("none"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = dir.path().join("barman-cloud.cloudnative-pg.io");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(BIN)
        .args(["cnpg", "client", "--socket"])
        .arg(&socket)
        .arg("identity")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["name"], "barman-cloud.cloudnative-pg.io");
    // RECONCILER_HOOKS, LIFECYCLE_SERVICE, INSTANCE_SIDECAR_INJECTION, OPERATOR_SERVICE.
    assert_eq!(answer["capabilities"], serde_json::json!([5, 4, 8, 1]));
    assert_eq!(answer["ready"], true);
    assert_eq!(sigterm(&mut child), 0);
    assert!(!socket.exists(), "the socket is removed on the way out");
}
