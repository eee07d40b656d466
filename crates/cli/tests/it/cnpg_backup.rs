//! The CloudNativePG plugin's Backup service end to end on real components: the
//! stand-in Kubernetes API serves the ObjectStore (and takes its status), `barrelman
//! cnpg instance` runs as the PostgreSQL user with PGHOST/PGPORT of a real
//! PostgreSQL 15 that archives through the same socket, and the backups taken through
//! `barrelman cnpg client backup` are read back by the real barman-cloud-backup-show.

use super::cnpg_wal::{append_conf, client_line, seed_store, Sidecar, BUCKET, DEST, NS, SERVER};
use super::common::*;
use barrelman_cnpg::PLUGIN_NAME;
use barrelman_testkit::kubeapi::{KubeApi, ObjectKey};
use barrelman_testkit::S3Server;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A Cluster archiving into `store` as `SERVER` (pod `pg-1` is the primary).
fn cluster_file(dir: &Path, store: &str) -> PathBuf {
    let cluster = json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": NS, "uid": "uid-42"},
        "spec": {"plugins": [{"name": PLUGIN_NAME, "isWALArchiver": true,
                              "parameters": {"barmanObjectName": store, "serverName": SERVER}}]},
        "status": {"currentPrimary": "pg-1"},
    });
    let path = dir.join("cluster.json");
    std::fs::write(&path, cluster.to_string()).unwrap();
    path
}

/// A Backup of the Cluster with `parameters` as its pluginConfiguration.parameters.
pub(crate) fn backup_file(dir: &Path, name: &str, parameters: Value) -> PathBuf {
    let backup = json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Backup",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"cluster": {"name": "pg"}, "method": "plugin",
                 "pluginConfiguration": {"name": PLUGIN_NAME, "parameters": parameters}},
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, backup.to_string()).unwrap();
    path
}

/// `barman-cloud-backup-show --format json` of `id`: the `cloud` object.
fn barman_show(s3: &S3Server, id: &str) -> Value {
    let out = run(
        &barman_tool("barman-cloud-backup-show"),
        &[
            "--format",
            "json",
            "--endpoint-url",
            &s3.endpoint,
            "--cloud-provider",
            "aws-s3",
            DEST,
            SERVER,
            id,
        ],
        s3,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["cloud"].clone()
}

fn epoch(iso: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(iso.as_str().unwrap())
        .unwrap_or_else(|e| panic!("{iso}: {e}"))
        .timestamp()
}

fn window(api: &KubeApi, key: &ObjectKey) -> Value {
    api.get(key).unwrap()["status"]["serverRecoveryWindow"][SERVER].clone()
}

#[test]
fn backups_through_the_plugin_match_barman_and_update_the_object_store_status() {
    let (s3, pg) = start_both(&["archive_mode = on", "wal_level = replica"]);
    s3.create_bucket(BUCKET);
    let api = KubeApi::start();
    seed_store(&api, &s3, "store", "creds");
    // The ObjectStore's data settings: gzip, two jobs, immediate checkpoint, tags.
    let mut store = api
        .list(NS, "objectstores")
        .into_iter()
        .find(|o| o["metadata"]["name"] == "store")
        .unwrap();
    store["spec"]["configuration"]["data"] =
        json!({"compression": "gzip", "jobs": 2, "immediateCheckpoint": true});
    store["spec"]["configuration"]["tags"] = json!({"team": "db"});
    let key = api.insert(store);

    let work = pg.make_dir("plugin-work");
    let plugins = pg.make_dir("plugins");
    let spool = pg.make_dir("spool");
    let cluster = cluster_file(&work, "store");
    let sidecar = Sidecar::start_with_env(
        &work,
        &plugins,
        &spool,
        &pg.datadir,
        &api.url(),
        &[
            ("PGHOST", pg.socket_dir.display().to_string()),
            ("PGPORT", pg.port.to_string()),
        ],
    );
    append_conf(&pg, &[sidecar.archive_command(&cluster)]);
    pg.start();
    pg.pgbench(&["-i", "-s", "1", "-q"]);

    // 1. A backup with the ObjectStore's settings: every field as barman shows it.
    let plain = backup_file(&work, "b1", json!({}));
    let out = sidecar.client(&[
        "backup",
        "--cluster",
        cluster.to_str().unwrap(),
        "--backup",
        plain.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n--- sidecar\n{}",
        text(&out),
        sidecar.log()
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = r["backupId"].as_str().unwrap().to_string();
    let show = barman_show(&s3, &id);
    assert_eq!(show["backup_id"], r["backupId"], "{show}");
    assert_eq!(show["backup_name"], r["backupName"], "{show}");
    let name = r["backupName"].as_str().unwrap();
    assert!(
        name.len() == "backup-YYYYMMDDHHMMSS".len()
            && name.starts_with("backup-")
            && name[7..].bytes().all(|b| b.is_ascii_digit()),
        "{name}"
    );
    assert_eq!(show["begin_wal"], r["beginWal"], "{show}");
    assert_eq!(show["end_wal"], r["endWal"], "{show}");
    assert_eq!(show["begin_xlog"], r["beginLsn"], "{show}");
    assert_eq!(show["end_xlog"], r["endLsn"], "{show}");
    assert_eq!(epoch(&show["begin_time_iso"]), r["startedAt"], "{show}");
    assert_eq!(epoch(&show["end_time_iso"]), r["stoppedAt"], "{show}");
    assert_eq!(show["status"], "DONE", "{show}");
    // barman writes no compression into backup.info: the tar's name says it; the
    // workers are data.jobs.
    let keys = list_keys(&s3, BUCKET, &format!("wal/{SERVER}/base/{id}/"));
    assert!(keys.iter().any(|k| k == "data.tar.gz"), "{keys:?}");
    assert_eq!(show["copy_stats"]["number_of_workers"], 2, "{show}");
    assert_eq!(
        (r["instanceId"].as_str(), r["online"].as_bool()),
        (Some("pg-1"), Some(true))
    );
    let m = &r["metadata"];
    assert_eq!(m["timeline"], show["timeline"].to_string().as_str(), "{r}");
    assert_eq!(m["clusterUID"], "uid-42", "{r}");
    assert_eq!(m["pluginName"], PLUGIN_NAME, "{r}");
    assert_eq!(m["name"], PLUGIN_NAME, "{r}");
    assert_eq!(m["displayName"], "BarmanCloudInstance", "{r}");
    assert_eq!(m["version"], env!("CARGO_PKG_VERSION"), "{r}");
    // The recovery window: both ends are this backup's end.
    let w = window(&api, &key);
    assert_eq!(epoch(&w["firstRecoverabilityPoint"]), r["stoppedAt"], "{w}");
    assert_eq!(epoch(&w["lastSuccessfulBackupTime"]), r["stoppedAt"], "{w}");

    // 2. Parameters override the ObjectStore for one backup.
    pg.pgbench(&["-t", "100"]);
    let bz = backup_file(
        &work,
        "b2",
        json!({"compression": "bzip2", "jobs": "1", "immediateCheckpoint": "true"}),
    );
    let out = sidecar.client(&[
        "backup",
        "--cluster",
        cluster.to_str().unwrap(),
        "--backup",
        bz.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        sidecar.log()
    );
    let r2: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(r2["backupId"], r["backupId"]);
    let id2 = r2["backupId"].as_str().unwrap();
    let show2 = barman_show(&s3, id2);
    assert_eq!(show2["status"], "DONE", "{show2}");
    assert_eq!(show2["copy_stats"]["number_of_workers"], 1, "{show2}");
    let keys = list_keys(&s3, BUCKET, &format!("wal/{SERVER}/base/{id2}/"));
    assert!(keys.iter().any(|k| k == "data.tar.bz2"), "{keys:?}");
    let w = window(&api, &key);
    assert_eq!(epoch(&w["firstRecoverabilityPoint"]), r["stoppedAt"], "{w}");
    assert_eq!(
        epoch(&w["lastSuccessfulBackupTime"]),
        r2["stoppedAt"],
        "{w}"
    );

    // 3. An unknown parameter is refused by name, before anything is written.
    let bad = backup_file(&work, "b3", json!({"compresion": "gzip"}));
    let out = sidecar.client(&[
        "backup",
        "--cluster",
        cluster.to_str().unwrap(),
        "--backup",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let line = client_line(&out);
    assert_eq!(line["code"], "InvalidArgument", "{line}");
    assert!(
        line["msg"].as_str().unwrap().contains("\"compresion\""),
        "{line}"
    );
    assert!(window(&api, &key).get("lastFailedBackupTime").is_none());

    // 4. PostgreSQL stopped: the backup fails, lastFailedBackupTime is stamped through
    // /status, and the 409 the API answers first is retried.
    pg.stop();
    api.conflict_once(&key);
    api.clear_requests();
    let before = chrono::Utc::now().timestamp();
    let out = sidecar.client(&[
        "backup",
        "--cluster",
        cluster.to_str().unwrap(),
        "--backup",
        plain.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let line = client_line(&out);
    assert_eq!(line["code"], "Unknown", "{line}");
    let msg = line["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("cannot connect to PostgreSQL for the backup"),
        "{msg}"
    );
    assert!(!msg.contains(&s3.secret_key), "{msg}");
    let w = window(&api, &key);
    let failed = epoch(&w["lastFailedBackupTime"]);
    assert!(
        failed >= before && failed <= chrono::Utc::now().timestamp(),
        "{w}"
    );
    // The successful backups' window is kept.
    assert_eq!(
        epoch(&w["lastSuccessfulBackupTime"]),
        r2["stoppedAt"],
        "{w}"
    );
    let puts: Vec<u16> = api
        .requests()
        .iter()
        .filter(|q| q.method == "PUT" && q.path.ends_with("/objectstores/store/status"))
        .map(|q| q.status)
        .collect();
    assert_eq!(puts, vec![409, 200], "{:?}", api.requests());
}
