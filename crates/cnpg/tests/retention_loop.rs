//! The retention loop as the instance server runs it: spawned with the server, a cycle
//! at start and then every `retentionPolicyIntervalSeconds`, stopped with the server.
//! Against the stand-in Kubernetes API and SeaweedFS (a catalog of one other backup:
//! every completed plugin Backup object of the Cluster is orphaned).

mod common;

use std::time::{Duration, Instant};

use barrelman_cnpg::k8s::KubeAccess;
use barrelman_cnpg::{PluginServer, PLUGIN_NAME};
use barrelman_testkit::kubeapi::KubeApi;
use barrelman_testkit::S3Server;
use serde_json::json;

fn orphan(name: &str, uid: &str) -> serde_json::Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Backup",
        "metadata": {"name": name, "namespace": "db"},
        "spec": {"cluster": {"name": "pg"}},
        "status": {"phase": "completed", "method": "plugin", "backupID": "20260101T000000",
                   "pluginMetadata": {"clusterUID": uid, "pluginName": PLUGIN_NAME}},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_cycles_at_the_store_interval_and_stops_them_on_shutdown() {
    let s3 = S3Server::start();
    s3.create_bucket("loop");
    let api = KubeApi::start();
    common::seed_store(
        &api,
        &s3,
        "loop",
        json!({"instanceSidecarConfiguration": {"retentionPolicyIntervalSeconds": 1}}),
    );
    // One backup in the catalog (an unreadable backup.info counts): an empty catalog
    // would keep every Backup object (see `backups_to_delete`).
    let env = barrelman_storage::config::Environment::from_vars(s3.env());
    let flags = barrelman_storage::config::CloudFlags {
        endpoint_url: Some(s3.endpoint.clone()),
        ..Default::default()
    };
    barrelman_storage::config::Target::from_barman("s3://loop/x", "pg", &flags, &env)
        .unwrap()
        .open()
        .unwrap()
        .put_small(
            "x/pg/base/20250101T000000/backup.info",
            bytes::Bytes::from_static(b"not a backup.info"),
            &[],
        )
        .await
        .unwrap();
    // A fork's API group, as CUSTOM_CNPG_GROUP names it.
    api.insert(json!({
        "apiVersion": "postgresql.example.com/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": "db", "uid": "u-1"},
        "spec": {"plugins": [{"name": PLUGIN_NAME, "parameters": {"barmanObjectName": "store"}}]},
        "status": {"currentPrimary": "pg-1"},
    }));
    let mut fork_backup = orphan("first", "u-1");
    fork_backup["apiVersion"] = json!("postgresql.example.com/v1");
    api.insert(fork_backup);
    // Under the default group: not the fork's, never touched.
    api.insert(orphan("default-group", "u-1"));

    let dir = tempfile::tempdir().unwrap();
    let settings = common::instance_settings(
        dir.path(),
        &dir.path().join("spool"),
        &[("CUSTOM_CNPG_GROUP", "postgresql.example.com")],
    );
    let kube = KubeAccess::for_url(&api.url(), "db", Duration::ZERO).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(PluginServer::new(settings).with_kube(kube).run(async {
        let _ = rx.await;
    }));

    let fork_backups = |api: &KubeApi| {
        api.list("db", "backups")
            .iter()
            .filter(|b| b["apiVersion"] == "postgresql.example.com/v1")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while fork_backups(&api) > 0 {
        assert!(Instant::now() < deadline, "{:?}", api.requests());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A Backup object appearing later goes at the next cycle, a second later.
    let mut later = orphan("later", "u-1");
    later["apiVersion"] = json!("postgresql.example.com/v1");
    api.insert(later);
    let deadline = Instant::now() + Duration::from_secs(5);
    while fork_backups(&api) > 0 {
        assert!(
            Instant::now() < deadline,
            "the next cycle did not come within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names: Vec<_> = api
        .list("db", "backups")
        .iter()
        .map(|b| b["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, [json!("default-group")]);
    let deletes: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        deletes,
        [
            "/apis/postgresql.example.com/v1/namespaces/db/backups/first",
            "/apis/postgresql.example.com/v1/namespaces/db/backups/later",
        ]
    );

    // Shutdown stops the loop with the server: no Cluster GET after run returned.
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server stops within 10 s")
        .unwrap()
        .unwrap();
    let gets = |api: &KubeApi| {
        api.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/clusters/pg"))
            .count()
    };
    let after = gets(&api);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(gets(&api), after, "cycles ran after shutdown");
    assert!(!dir.path().join(PLUGIN_NAME).exists());
}
