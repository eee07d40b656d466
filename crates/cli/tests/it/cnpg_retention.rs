//! The instance sidecar's retention cycle and metrics on real components: PostgreSQL
//! 15 archives through `barrelman cnpg instance` into SeaweedFS, backups are taken
//! through `barrelman cnpg client backup`, and `retention_cycle` runs in-process
//! against the stand-in Kubernetes API (Cluster, ObjectStore, CNPG Backup objects,
//! Events) and the same bucket.

use super::cnpg_backup::{backup_file, epoch, start_archiving, Archiving};
use super::cnpg_wal::{cluster_file, seed_store, Sidecar, BUCKET, NS, SERVER};
use super::common::*;
use barrelman_cnpg::k8s::KubeAccess;
use barrelman_cnpg::retention::{retention_cycle, RetentionContext, EVENT_COMPONENT};
use barrelman_cnpg::stats::PluginStats;
use barrelman_cnpg::{Role, Settings, PLUGIN_NAME};
use barrelman_testkit::kubeapi::{KubeApi, ObjectKey};
use barrelman_testkit::S3Server;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const UID: &str = "u-1";

/// A CNPG Backup object as CloudNativePG leaves a finished one.
fn backup_object(
    name: &str,
    cluster: &str,
    phase: &str,
    method: &str,
    uid: &str,
    id: &str,
) -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Backup",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"cluster": {"name": cluster}, "method": "plugin"},
        "status": {"phase": phase, "method": method, "backupID": id,
                   "pluginMetadata": {"clusterUID": uid, "pluginName": PLUGIN_NAME}},
    })
}

/// A retention context for pod `pod` (in-process, its own stats).
fn context(
    rt: &tokio::runtime::Runtime,
    api: &KubeApi,
    spool: &Path,
    plugins: &Path,
    pod: &str,
) -> (RetentionContext, Arc<PluginStats>) {
    // The client's connection pool is spawned on the runtime that runs the cycles.
    let _guard = rt.enter();
    let vars: BTreeMap<&str, String> = [
        ("NAMESPACE", NS.to_string()),
        ("CLUSTER_NAME", "pg".to_string()),
        ("POD_NAME", pod.to_string()),
        ("SPOOL_DIRECTORY", spool.display().to_string()),
    ]
    .into();
    let settings = Settings::from_vars(Role::Instance, |n| vars.get(n).cloned(), plugins).unwrap();
    let kube = KubeAccess::for_url(&api.url(), NS, Duration::ZERO).unwrap();
    let stats = Arc::new(PluginStats::default());
    (
        RetentionContext::new(settings, Arc::new(kube), stats.clone()),
        stats,
    )
}

/// `cnpg client metrics`: name → value.
fn metrics(sidecar: &Sidecar, cluster: &Path) -> BTreeMap<String, f64> {
    let out = sidecar.client_ok(&["metrics", "--cluster", cluster.to_str().unwrap()]);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (n, v) = l.split_once(' ').unwrap_or_else(|| panic!("{l}"));
            (
                n.to_string(),
                v.parse().unwrap_or_else(|e| panic!("{l}: {e}")),
            )
        })
        .collect()
}

fn metric(m: &BTreeMap<String, f64>, suffix: &str) -> f64 {
    *m.get(&format!("barman_cloud_cloudnative_pg_io_{suffix}"))
        .unwrap_or_else(|| panic!("{suffix} not in {m:?}"))
}

fn names(api: &KubeApi, plural: &str) -> Vec<String> {
    let mut v: Vec<String> = api
        .list(NS, plural)
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn put_object(s3: &S3Server, key: &str, body_hex: &str) {
    const PY: &str = r#"
s3.put_object(Bucket=bucket, Key=sys.argv[3], Body=bytes.fromhex(sys.argv[4]))
"#;
    boto3(s3, BUCKET, PY, &[key, body_hex]);
}

#[test]
fn retention_deletes_old_backups_their_wal_and_exactly_the_orphaned_backup_objects() {
    let (s3, pg) = start_both(&["archive_mode = on", "wal_level = replica"]);
    s3.create_bucket(BUCKET);
    let api = KubeApi::start();
    seed_store(&api, &s3, "store", "creds");
    let Archiving {
        sidecar,
        work,
        cluster,
        spool,
        plugins,
    } = start_archiving(&pg, &api, |work| cluster_file(work, "pg", "store"));
    pg.pgbench(&["-i", "-s", "1", "-q"]);

    // Three backups, WAL between them.
    let plain = backup_file(&work, "b", json!({}));
    let mut taken: Vec<Value> = Vec::new();
    for _ in 0..3 {
        pg.pgbench(&["-t", "50"]);
        std::thread::sleep(Duration::from_millis(1100)); // ids and names are per second
        let out = sidecar.client_ok(&[
            "backup",
            "--cluster",
            cluster.to_str().unwrap(),
            "--backup",
            plain.to_str().unwrap(),
        ]);
        taken.push(serde_json::from_slice(&out.stdout).unwrap());
    }
    let id = |i: usize| taken[i]["backupId"].as_str().unwrap().to_string();

    // The sidecar's own metrics after archiving and backups.
    let m = metrics(&sidecar, &cluster);
    assert!(
        metric(&m, "wal_archived_bytes_total") >= f64::from(16u32 << 20),
        "{m:?}"
    );
    assert_eq!(metric(&m, "wal_archive_failures_total"), 0.0, "{m:?}");
    assert!(metric(&m, "last_backup_duration_seconds") > 0.0, "{m:?}");
    let age = metric(&m, "last_archived_wal_age_seconds");
    assert!((0.0..120.0).contains(&age), "{m:?}");
    assert!(metric(&m, "recovery_window_end_lsn") > 0.0, "{m:?}");
    // The upstream gauge reads the ObjectStore's status through the 10 s cache: one
    // of the backups' ends.
    let last = metric(&m, "last_available_backup_timestamp");
    assert!(
        taken
            .iter()
            .any(|t| t["stoppedAt"].as_i64().unwrap() as f64 == last),
        "{m:?}"
    );
    // A failing archive call counts.
    let out = sidecar.client(&[
        "wal-archive",
        "--cluster",
        cluster.to_str().unwrap(),
        &pg.datadir
            .join("pg_wal/0000000100000000000000FF")
            .display()
            .to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let m = metrics(&sidecar, &cluster);
    assert_eq!(metric(&m, "wal_archive_failures_total"), 1.0, "{m:?}");

    // The Kubernetes side: the Cluster (pg-1 primary), a recovery window of 1 day,
    // and Backup objects: one per backup, plus non-matching ones for the oldest.
    api.insert(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": NS, "uid": UID},
        "spec": {"plugins": [{"name": PLUGIN_NAME, "isWALArchiver": true,
                              "parameters": {"barmanObjectName": "store", "serverName": SERVER}}]},
        "status": {"currentPrimary": "pg-1"},
    }));
    let store_key = ObjectKey {
        api_version: "barmancloud.cnpg.io/v1".into(),
        namespace: NS.into(),
        plural: "objectstores".into(),
        name: "store".into(),
    };
    let mut store = api.get(&store_key).unwrap();
    store["spec"]["retentionPolicy"] = json!("1d");
    api.insert(store);
    for (i, name) in ["b0", "b1", "b2"].iter().enumerate() {
        api.insert(backup_object(
            name,
            "pg",
            "completed",
            "plugin",
            UID,
            &id(i),
        ));
    }
    api.insert(backup_object(
        "other-cluster",
        "pg2",
        "completed",
        "plugin",
        UID,
        &id(0),
    ));
    api.insert(backup_object(
        "other-uid",
        "pg",
        "completed",
        "plugin",
        "u-0",
        &id(0),
    ));
    api.insert(backup_object(
        "failed",
        "pg",
        "failed",
        "plugin",
        UID,
        &id(0),
    ));
    api.insert(backup_object(
        "in-tree",
        "pg",
        "completed",
        "barmanObjectStore",
        UID,
        &id(0),
    ));
    let all_objects = names(&api, "backups");

    // The two oldest backups look 5 and 4 days old: with 1 day of window the older
    // one goes, the other is kept (it is needed to reach the window's start).
    let info_key = |i: usize| format!("wal/{SERVER}/base/{}/backup.info", id(i));
    age_backup_info(&s3, BUCKET, &info_key(0), 5);
    age_backup_info(&s3, BUCKET, &info_key(1), 4);
    let wals_before = list_keys(&s3, BUCKET, &format!("wal/{SERVER}/wals/"));

    let rt = tokio::runtime::Runtime::new().unwrap();

    // Not the primary: nothing happens.
    let (replica, replica_stats) = context(&rt, &api, &spool, &plugins, "pg-2");
    let r = rt.block_on(retention_cycle(&replica)).unwrap();
    assert!(
        r.skipped
            .as_deref()
            .unwrap()
            .contains("not the current primary"),
        "{r:?}"
    );
    assert!(
        r.deleted_backups.is_empty() && r.deleted_objects.is_empty(),
        "{r:?}"
    );
    assert!(list_keys(&s3, BUCKET, &info_key(0)).len() == 1);
    assert_eq!(names(&api, "backups"), all_objects);
    assert_eq!(replica_stats.snapshot().window_end, None);

    // The primary applies the policy.
    let (primary, stats) = context(&rt, &api, &spool, &plugins, "pg-1");
    let r = rt.block_on(retention_cycle(&primary)).unwrap();
    assert_eq!(r.skipped, None, "{r:?}");
    assert_eq!(r.policy_error, None, "{r:?}");
    assert_eq!(r.deleted_backups, vec![id(0)], "{r:?}");
    assert_eq!(r.deleted_objects, vec!["b0".to_string()], "{r:?}");
    assert!(list_keys(&s3, BUCKET, &format!("wal/{SERVER}/base/{}/", id(0))).is_empty());
    assert!(!list_keys(&s3, BUCKET, &format!("wal/{SERVER}/base/{}/", id(1))).is_empty());
    let mut expected_objects = all_objects.clone();
    expected_objects.retain(|n| n != "b0");
    assert_eq!(names(&api, "backups"), expected_objects);
    // WAL: everything before the kept backup's begin_wal is gone, its own range and
    // everything after it stays.
    let wals_after = list_keys(&s3, BUCKET, &format!("wal/{SERVER}/wals/"));
    let begin1 = taken[1]["beginWal"].as_str().unwrap();
    for k in &wals_before {
        // The segment a file belongs to (segments, partials, .backup labels).
        let Some(name) = k.rsplit('/').next().and_then(|f| f.get(..24)) else {
            continue;
        };
        let kept = wals_after.contains(k);
        if name < begin1 {
            assert!(!kept, "{k} should have gone with backup {}", id(0));
        } else {
            assert!(kept, "{k} is needed by a kept backup and was deleted");
        }
    }
    assert!(
        wals_after.len() < wals_before.len(),
        "{wals_before:?} {wals_after:?}"
    );
    // The recovery window: from the kept old backup's (aged) end to the newest end.
    let w = api.get(&store_key).unwrap()["status"]["serverRecoveryWindow"][SERVER].clone();
    let first = epoch(&w["firstRecoverabilityPoint"]);
    let aged_end = taken[1]["stoppedAt"].as_i64().unwrap() - 4 * 86400;
    assert!((first - aged_end).abs() <= 1, "{w} vs {aged_end}");
    assert_eq!(
        epoch(&w["lastSuccessfulBackupTime"]),
        taken[2]["stoppedAt"],
        "{w}"
    );
    // The window's end: from the newest backup through the archived WAL.
    let end1 = stats.snapshot().window_end.expect("a window end");
    assert_eq!(r.window_end.as_ref(), Some(&end1));
    assert!(
        end1.segment.as_str() >= taken[2]["endWal"].as_str().unwrap(),
        "{end1:?}"
    );

    // More WAL archived: the end moves forward.
    pg.pgbench(&["-t", "50"]);
    let switched = switch_wal(&pg);
    wait_archived(&pg, &switched, Duration::from_secs(30));
    let r = rt.block_on(retention_cycle(&primary)).unwrap();
    let end2 = r.window_end.clone().expect("a window end");
    assert!(end2.lsn > end1.lsn, "{end1:?} -> {end2:?}");
    assert!(end2.segment >= switched, "{end2:?} vs {switched}");
    assert_eq!(stats.snapshot().window_end, Some(end2));
    assert!(
        r.deleted_backups.is_empty() && r.deleted_objects.is_empty(),
        "{r:?}"
    );

    // A hand-edited bucket: an unreadable backup.info stops the policy (nothing is
    // deleted), a Warning Event is posted on the Cluster, and the Backup object of
    // that unreadable backup is kept.
    let odd = "20990101T000000";
    put_object(
        &s3,
        &format!("wal/{SERVER}/base/{odd}/backup.info"),
        "fffe00",
    );
    api.insert(backup_object("odd", "pg", "completed", "plugin", UID, odd));
    let objects_before = names(&api, "backups");
    let r = rt.block_on(retention_cycle(&primary)).unwrap();
    let err = r.policy_error.clone().expect("the policy failed");
    assert!(err.contains("unreadable backup.info"), "{err}");
    assert!(!err.contains(&s3.secret_key), "{err}");
    assert_eq!(names(&api, "backups"), objects_before);
    assert!(!list_keys(&s3, BUCKET, &info_key(1)).is_empty());
    let events = api.list(NS, "events");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["type"], "Warning", "{e}");
    assert_eq!(e["reason"], "RetentionPolicyFailed", "{e}");
    assert_eq!(e["source"]["component"], EVENT_COMPONENT, "{e}");
    assert_eq!(e["involvedObject"]["kind"], "Cluster", "{e}");
    assert_eq!(e["involvedObject"]["name"], "pg", "{e}");
    assert_eq!(e["involvedObject"]["uid"], UID, "{e}");
    assert_eq!(e["message"].as_str(), Some(err.as_str()), "{e}");
    assert_eq!(
        barrelman_cnpg::retention::sleep_after(&Ok(r)),
        barrelman_cnpg::retention::RETRY_INTERVAL
    );
}
