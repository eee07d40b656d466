//! The WAL service in-process against the stand-in Kubernetes API and SeaweedFS: a burst
//! of Archive calls reuses the opened archive (one ObjectStore GET even when the
//! Kubernetes cache itself keeps nothing), and the stored objects read back through
//! Restore byte-identical.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use barrelman_cnpg::client::{wal_archive, wal_restore};
use barrelman_cnpg::k8s::KubeAccess;
use barrelman_cnpg::{PluginServer, PLUGIN_NAME};
use barrelman_testkit::kubeapi::KubeApi;
use barrelman_testkit::S3Server;
use serde_json::json;
use tonic::Code;

/// Cluster `pg` archiving into the ObjectStore `store`, its primary `pg-1`.
fn cluster_json() -> Vec<u8> {
    json!({
        "metadata": {"name": "pg", "namespace": "db"},
        "spec": {"plugins": [{"name": PLUGIN_NAME, "parameters": {"barmanObjectName": "store"}}]},
        "status": {"currentPrimary": "pg-1"},
    })
    .to_string()
    .into_bytes()
}

async fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::UnixStream::connect(path).await.is_err() {
        assert!(Instant::now() < deadline, "no server on {}", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_archive_calls_opens_the_store_once() {
    let s3 = S3Server::start();
    s3.create_bucket("walsvc");
    let api = KubeApi::start();
    common::seed_store(&api, &s3, "walsvc", json!({}));
    let dir = tempfile::tempdir().unwrap();
    let pg_wal = dir.path().join("data/pg_wal");
    std::fs::create_dir_all(&pg_wal).unwrap();
    let spool = dir.path().join("spool");
    let settings = common::instance_settings(dir.path(), &spool, &[]);
    // The Kubernetes cache keeps nothing: every GET the service makes is visible.
    let kube = KubeAccess::for_url(&api.url(), "db", Duration::ZERO).unwrap();
    let server = PluginServer::new(settings).with_kube(kube);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let socket = dir.path().join(PLUGIN_NAME);
    wait_for_socket(&socket).await;

    let cluster = cluster_json();
    let mut contents = Vec::new();
    for i in 1..=4u8 {
        let name = format!("0000000100000000000000{i:02X}");
        let bytes: Vec<u8> = (0..(1u32 << 20)).map(|j| (j as u8) ^ i).collect();
        std::fs::write(pg_wal.join(&name), &bytes).unwrap();
        let path = pg_wal.join(&name).to_string_lossy().into_owned();
        wal_archive(&socket, cluster.clone(), &path, Some(false))
            .await
            .unwrap_or_else(|e| panic!("archive {name}: {e:?}"));
        contents.push((name, bytes));
    }
    let gets = |what: &str| {
        api.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(what))
            .count()
    };
    assert_eq!(gets("/objectstores/store"), 1, "{:?}", api.requests());
    assert_eq!(gets("/secrets/creds"), 2, "one GET per key, once");

    // Read back through Restore, byte-identical; a missing one is NotFound.
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for (name, bytes) in &contents {
        let dest = out.join(name);
        wal_restore(
            &socket,
            cluster.clone(),
            name,
            &dest.to_string_lossy(),
            false,
        )
        .await
        .unwrap();
        assert!(std::fs::read(&dest).unwrap() == *bytes, "{name} differs");
    }
    let status = wal_restore(
        &socket,
        cluster.clone(),
        "0000000100000000000000FF",
        &out.join("x").to_string_lossy(),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// The container's memory limit caps `wal.maxParallel`: under a 64 MiB cgroup limit
/// (room for two uploads) a call uploads the requested segment and one more, not
/// the seven the ObjectStore asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_caps_parallel_uploads() {
    let s3 = S3Server::start();
    s3.create_bucket("capped");
    let api = KubeApi::start();
    common::seed_store(&api, &s3, "capped", json!({}));
    let key = barrelman_testkit::kubeapi::ObjectKey {
        api_version: "barmancloud.cnpg.io/v1".into(),
        namespace: "db".into(),
        plural: "objectstores".into(),
        name: "store".into(),
    };
    let mut store = api.get(&key).unwrap();
    store["spec"]["configuration"]["wal"] = json!({"maxParallel": 8});
    api.insert(store);
    let dir = tempfile::tempdir().unwrap();
    let pgdata = dir.path().join("data");
    let pg_wal = pgdata.join("pg_wal");
    std::fs::create_dir_all(pg_wal.join("archive_status")).unwrap();
    let cgroup = dir.path().join("cgroup");
    std::fs::create_dir(&cgroup).unwrap();
    std::fs::write(cgroup.join("memory.max"), "67108864\n").unwrap();
    let spool = dir.path().join("spool");
    let settings = common::instance_settings(
        dir.path(),
        &spool,
        &[
            ("PGDATA", &pgdata.to_string_lossy()),
            ("BARRELMAN_CGROUP_ROOT", &cgroup.to_string_lossy()),
        ],
    );
    let caps = settings.memory_caps.expect("the limit was read");
    assert_eq!(caps.wal_uploads, 2);
    let kube = KubeAccess::for_url(&api.url(), "db", Duration::ZERO).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(PluginServer::new(settings).with_kube(kube).run(async {
        let _ = rx.await;
    }));
    let socket = dir.path().join(PLUGIN_NAME);
    wait_for_socket(&socket).await;

    let names: Vec<String> = (1..=6u8)
        .map(|i| format!("0000000100000000000000{i:02X}"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let bytes: Vec<u8> = (0..(1u32 << 20)).map(|j| (j as u8) ^ (i as u8)).collect();
        std::fs::write(pg_wal.join(name), &bytes).unwrap();
        std::fs::write(pg_wal.join(format!("archive_status/{name}.ready")), "").unwrap();
    }
    let cluster = cluster_json();
    let path = pg_wal.join(&names[0]).to_string_lossy().into_owned();
    wal_archive(&socket, cluster, &path, Some(false))
        .await
        .unwrap();
    // Uploaded ahead = the markers left in the spool: one, not five.
    let markers: Vec<_> = walk(&spool);
    assert_eq!(markers.len(), 1, "{markers:?}");

    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// The files under `dir`, recursively.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
