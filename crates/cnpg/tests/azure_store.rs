//! The sidecar resolves an Azure ObjectStore as it does an S3 one: the WAL service
//! in-process against the stand-in Kubernetes API and Azurite, the connection
//! string read from the ObjectStore's Secret; and an identity-based ObjectStore
//! (`useDefaultAzureCredentials`) on a pod whose workload identity variables are
//! half set is refused with the missing variable named, before any request.

// Only the settings helper is used here; the S3 seeding is for the other binaries.
#[allow(dead_code)]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use barrelman_cnpg::client::{wal_archive, wal_restore};
use barrelman_cnpg::k8s::KubeAccess;
use barrelman_cnpg::{PluginServer, Settings, PLUGIN_NAME};
use barrelman_testkit::kubeapi::{self, KubeApi};
use barrelman_testkit::AzuriteServer;
use serde_json::{json, Value};
use tonic::Code;

fn cluster_json(store: &str) -> Vec<u8> {
    json!({
        "metadata": {"name": "pg", "namespace": "db"},
        "spec": {"plugins": [{"name": PLUGIN_NAME, "parameters": {"barmanObjectName": store}}]},
        "status": {"currentPrimary": "pg-1"},
    })
    .to_string()
    .into_bytes()
}

fn object_store(name: &str, dest: &str, credentials: Value) -> Value {
    json!({
        "apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
        "metadata": {"name": name, "namespace": "db"},
        "spec": {"configuration": {"destinationPath": dest, "azureCredentials": credentials}},
    })
}

/// Serves `settings` on a socket in `dir` until the returned sender is used.
async fn serve(
    settings: Settings,
    api: &KubeApi,
    dir: &Path,
) -> (
    std::path::PathBuf,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), barrelman_cnpg::ServeError>>,
) {
    let kube = KubeAccess::for_url(&api.url(), "db", Duration::ZERO).unwrap();
    let server = PluginServer::new(settings).with_kube(kube);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let socket = dir.join(PLUGIN_NAME);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::UnixStream::connect(&socket).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no server on {}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (socket, tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_archives_to_and_restores_from_azure() {
    let az = AzuriteServer::start();
    az.create_container("walsvc");
    let api = KubeApi::start();
    api.insert(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "azure", "namespace": "db"},
        "data": {"CS": kubeapi::base64(az.connection_string().as_bytes())},
    }));
    api.insert(object_store(
        "store",
        &az.url("walsvc/x"),
        json!({"connectionString": {"name": "azure", "key": "CS"}}),
    ));
    api.insert(object_store(
        "identity",
        "https://acct.blob.core.windows.net/walsvc/x",
        json!({"useDefaultAzureCredentials": true}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let pg_wal = dir.path().join("data/pg_wal");
    std::fs::create_dir_all(&pg_wal).unwrap();
    let spool = dir.path().join("spool");
    // Workload identity half injected: no AZURE_TENANT_ID.
    let settings = common::instance_settings(
        dir.path(),
        &spool,
        &[
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/t",
            ),
            ("AZURE_CLIENT_ID", "cid"),
        ],
    );
    let (socket, tx, task) = serve(settings, &api, dir.path()).await;

    let cluster = cluster_json("store");
    let mut contents = Vec::new();
    for i in 1..=2u8 {
        let name = format!("0000000100000000000000{i:02X}");
        let bytes: Vec<u8> = (0..(1u32 << 20)).map(|j| (j as u8) ^ i).collect();
        std::fs::write(pg_wal.join(&name), &bytes).unwrap();
        let path = pg_wal.join(&name).to_string_lossy().into_owned();
        wal_archive(&socket, cluster.clone(), &path, Some(false))
            .await
            .unwrap_or_else(|e| panic!("archive {name}: {e:?}"));
        contents.push((name, bytes));
    }
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
    let missing = wal_restore(
        &socket,
        cluster.clone(),
        "0000000100000000000000FF",
        &out.join("x").to_string_lossy(),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    let path = pg_wal.join(&contents[0].0).to_string_lossy().into_owned();
    let refused = wal_archive(&socket, cluster_json("identity"), &path, Some(false))
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("AZURE_TENANT_ID is not"),
        "{refused:?}"
    );
    // As any refused configuration: Unknown, as upstream's plain errors.
    assert_eq!(refused.code(), Code::Unknown, "{refused:?}");

    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
