//! `barrelman cnpg`: the sidecar as a process — environment check, healthcheck exit
//! codes, JSON log lines, SIGTERM exits 0 and leaves no socket.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_barrelman");
const SOCKET: &str = "barman-cloud.cloudnative-pg.io";

fn healthcheck(dir: &std::path::Path) -> i32 {
    let out = Command::new(BIN)
        .args(["cnpg", "healthcheck", "unix", "--plugin-path"])
        .arg(dir)
        .output()
        .unwrap();
    out.status.code().unwrap()
}

#[test]
fn missing_variable_is_one_sentence_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["cnpg", "instance", "--plugin-path"])
        .arg(dir.path())
        .env_clear()
        .env("NAMESPACE", "db")
        .env("CLUSTER_NAME", "pg")
        .env("SPOOL_DIRECTORY", "/tmp")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("POD_NAME"), "{err}");
    assert!(!dir.path().join(SOCKET).exists());
}

#[test]
fn instance_serves_until_sigterm_and_removes_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(healthcheck(dir.path()), 1, "no socket yet");
    let child = Command::new(BIN)
        .args(["cnpg", "instance", "--log-level", "debug", "--plugin-path"])
        .arg(dir.path())
        .env("NAMESPACE", "db")
        .env("CLUSTER_NAME", "pg")
        .env("POD_NAME", "pg-1")
        .env("SPOOL_DIRECTORY", dir.path())
        // No Kubernetes here: the sidecar must still start (and say so).
        .env("KUBECONFIG", dir.path().join("missing-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while healthcheck(dir.path()) != 0 {
        assert!(Instant::now() < deadline, "sidecar not serving after 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!dir.path().join(SOCKET).exists(), "socket left behind");
    let log = String::from_utf8_lossy(&out.stderr);
    let msgs: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"))
        })
        .map(|v| v["msg"].as_str().unwrap().to_string())
        .collect();
    assert!(msgs.iter().any(|m| m == "plugin server listening"), "{log}");
    assert!(msgs.iter().any(|m| m == "plugin server stopped"), "{log}");
}

/// The upstream binary's log flags (CloudNativePG's machinery) and `--pprof-server`,
/// as users put them in `additionalContainerArgs`, are taken: the sidecar must not
/// crash-loop on them. The keys and the destination are honoured.
#[test]
fn upstream_log_flags_and_pprof_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sidecar.json");
    std::fs::write(&log, "old line\n").unwrap();
    let out = Command::new(BIN)
        .args(["cnpg", "instance", "--pprof-server=127.0.0.1:6060"])
        .args(["--log-level=debug", "--log-field-level=lvl"])
        .args([
            "--log-field-timestamp",
            "time",
            "--log-truncate-destination",
        ])
        .arg(format!("--log-destination={}", log.display()))
        .env_clear()
        .output()
        .unwrap();
    // The flags parse; the missing environment is what stops it.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("old line"), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["lvl"], "error", "{text}");
    assert!(
        last["time"].is_string() && last.get("level").is_none(),
        "{text}"
    );
    assert!(
        last["msg"].as_str().unwrap().contains("NAMESPACE"),
        "{text}"
    );
}

/// The sidecar the operator side injects (the golden Pod and Job of
/// crates/operator/tests/data) runs on this binary: the image's entrypoint is
/// `barrelman cnpg`, so its `args` must parse here (exit 1 on the missing
/// environment, not clap's 2), and its startup probe must be a healthcheck that
/// answers (1: nothing listening).
#[test]
fn the_injected_sidecar_args_and_probe_run_on_this_binary() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../operator/tests/data");
    for file in [
        "pod-instance.expected.json",
        "job-full-recovery.expected.json",
    ] {
        let text = std::fs::read_to_string(data.join(file)).unwrap();
        let object: serde_json::Value = serde_json::from_str(&text).unwrap();
        let spec = object
            .pointer("/spec/template/spec")
            .or_else(|| object.get("spec"))
            .unwrap();
        let sidecar = spec["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "plugin-barman-cloud")
            .unwrap_or_else(|| panic!("{file}: no injected sidecar"));
        let args: Vec<&str> = sidecar["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let out = Command::new(BIN)
            .arg("cnpg")
            .args(&args)
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{file}: cnpg {args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("NAMESPACE"),
            "{file}: {out:?}"
        );

        let probe: Vec<&str> = sidecar["startupProbe"]["exec"]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        // The probe (an exec, not through the entrypoint) names the image's binary.
        let containerfile = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/Containerfile"),
        )
        .unwrap();
        assert!(
            containerfile.contains(&format!("ENTRYPOINT [\"{}\", \"cnpg\"]", probe[0])),
            "{file}: the probe runs {} but deploy/Containerfile's entrypoint differs",
            probe[0]
        );
        let empty = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args(&probe[1..])
            .arg("--plugin-path")
            .arg(empty.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{file}: {probe:?}: {out:?}");
    }
}
