//! The CloudNativePG plugin's RestoreJobHooks.Restore end to end on real components:
//! PostgreSQL 15 archives and takes base backups through `barrelman cnpg instance`
//! into SeaweedFS (the ObjectStore and its Secret served by the stand-in Kubernetes
//! API); then `barrelman cnpg restore` restores into a fresh PGDATA through `barrelman
//! cnpg client restore-job`, and PostgreSQL recovers there to a point in time with the
//! returned settings, reading WAL through the same restore sidecar.

use super::cnpg_backup::{archiving_sidecar, backup_file, take_backup};
use super::cnpg_wal::{client_line, seed_store, Sidecar, BUCKET, NS, SERVER};
use super::common::*;
use barrelman_cnpg::PLUGIN_NAME;
use barrelman_testkit::kubeapi::KubeApi;
use barrelman_testkit::PgCluster;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// The Cluster `pg-restored` bootstrapping from `store`/`SERVER` with `target` as
/// `recoveryTarget`; `extra_spec` is merged into its spec (plugins, walStorage).
fn recovery_cluster(dir: &Path, file: &str, target: Value, extra_spec: Value) -> PathBuf {
    let mut spec = json!({
        "bootstrap": {"recovery": {"source": "origin", "recoveryTarget": target}},
        "externalClusters": [{"name": "origin", "plugin": {"name": PLUGIN_NAME,
            "parameters": {"barmanObjectName": "store", "serverName": SERVER}}}],
    });
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let cluster = json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg-restored", "namespace": NS},
        "spec": spec,
        "status": {},
    });
    let path = dir.join(file);
    std::fs::write(&path, cluster.to_string()).unwrap();
    path
}

/// A restore sidecar whose PGDATA is `pgdata` (and WAL volume `wal_dir`).
fn restore_sidecar(
    pg: &PgCluster,
    api: &KubeApi,
    name: &str,
    pgdata: &Path,
    wal_dir: &Path,
) -> Sidecar {
    let work = pg.make_dir(&format!("{name}/work"));
    let plugins = pg.make_dir(&format!("{name}/plugins"));
    let spool = pg.make_dir(&format!("{name}/spool"));
    Sidecar::start_role(
        "restore",
        &work,
        &plugins,
        &spool,
        pgdata,
        &api.url(),
        &[("BARRELMAN_WAL_DIRECTORY", wal_dir.display().to_string())],
    )
}

fn restore_job_ok(sidecar: &Sidecar, cluster: &Path) -> Output {
    sidecar.client_ok(&["restore-job", "--cluster", cluster.to_str().unwrap()])
}

fn restore_job(sidecar: &Sidecar, cluster: &Path) -> Output {
    sidecar.client(&["restore-job", "--cluster", cluster.to_str().unwrap()])
}

/// A refused call: exit 1 with the gRPC `code`; returns the message.
fn refused(out: &Output, code: &str) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    let line = client_line(out);
    assert_eq!(line["code"], code, "{line}");
    line["msg"].as_str().unwrap().to_string()
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).map_or(true, |mut d| d.next().is_none())
}

/// `backup_label` of a restored PGDATA names the backup's first WAL.
fn assert_restored_backup(pgdata: &Path, begin_wal: &str) {
    let label = std::fs::read_to_string(pgdata.join("backup_label")).unwrap();
    assert!(label.contains(&format!("(file {begin_wal})")), "{label}");
}

#[test]
fn restore_job_recovers_a_point_in_time_and_refuses_what_would_lose_data() {
    let (s3, pg) = start_both(&["archive_mode = on", "wal_level = replica"]);
    s3.create_bucket(BUCKET);
    let api = KubeApi::start();
    seed_store(&api, &s3, "store", "creds");
    let (instance, cluster, work) = archiving_sidecar(&pg, &api);
    pg.start();
    let backup =
        |name: &str| take_backup(&instance, &cluster, &backup_file(&work, name, json!({})));

    // Backup 1, rows before the target, the target, rows after it, backup 2.
    pg.psql("create table marks (n int, phase text)");
    pg.psql("insert into marks select g, 'in backup' from generate_series(1, 10) g");
    let b1 = backup("b1");
    pg.psql("insert into marks select g, 'before target' from generate_series(11, 20) g");
    let target = pg.psql(
        "select to_char(clock_timestamp() at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')",
    );
    std::thread::sleep(Duration::from_millis(1500));
    pg.psql("insert into marks select g, 'after target' from generate_series(21, 30) g");
    let b2 = backup("b2");
    pg.psql("insert into marks select g, 'after backup 2' from generate_series(31, 40) g");
    let end = switch_wal(&pg);
    wait_archived(&pg, &end, Duration::from_secs(60));

    // 1. PITR: targetTime picks backup 1 (backup 2 ended after the target); the
    // restore_config is upstream's two lines; PostgreSQL recovers with them, the
    // restore_command going to the restore sidecar's WAL service.
    let pgdata = pg.make_dir("pitr");
    let walvol = pg.make_dir("pitr-walvol");
    let pitr = recovery_cluster(&work, "pitr.json", json!({"targetTime": target}), json!({}));
    let sidecar = restore_sidecar(&pg, &api, "pitr-sidecar", &pgdata, &walvol.join("pg_wal"));
    let out = restore_job_ok(&sidecar, &pitr);
    let config = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        config,
        "recovery_target_action = promote\n\
         restore_command = '/controller/manager wal-restore --log-destination \
         /controller/log/postgres.json %f %p'\n"
    );
    assert_restored_backup(&pgdata, b1["beginWal"].as_str().unwrap());
    // No walStorage: pg_wal stays a directory.
    assert!(std::fs::symlink_metadata(pgdata.join("pg_wal"))
        .unwrap()
        .is_dir());
    let mut settings: Vec<String> = config
        .lines()
        .filter(|l| !l.starts_with("restore_command"))
        .map(String::from)
        .collect();
    settings.push(format!(
        "restore_command = '{} cnpg client --socket {} wal-restore --cluster {} %f %p'",
        barrelman().display(),
        sidecar.socket.display(),
        pitr.display()
    ));
    settings.push(format!("recovery_target_time = '{target}+00'"));
    settings.push("archive_mode = off".into());
    std::fs::write(pgdata.join("recovery.signal"), "").unwrap();
    let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
    let recovered = PgCluster::from_datadir(pgdata.clone(), &refs);
    recovered.start();
    wait_promoted(&recovered);
    assert_eq!(
        recovered.psql("select phase || ':' || count(*) from marks group by phase order by min(n)"),
        "in backup:10\nbefore target:10",
        "{}",
        tail(&recovered.log(), 4000)
    );
    drop(recovered);
    drop(sidecar);

    // 2. backupID picks that backup (even with a targetTime), and walStorage moves
    // pg_wal onto the WAL volume behind a symlink.
    let pgdata = pg.make_dir("by-id");
    let walvol = pg.make_dir("by-id-walvol");
    let wal_dir = walvol.join("pg_wal");
    let by_id = recovery_cluster(
        &work,
        "by-id.json",
        json!({"backupID": b2["backupId"], "targetTime": target}),
        json!({"walStorage": {"size": "1Gi"}}),
    );
    let sidecar = restore_sidecar(&pg, &api, "by-id-sidecar", &pgdata, &wal_dir);
    // Two callers at once: one restores, the other is refused (PGDATA is no longer
    // empty), never two extractions into one directory.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| restore_job(&sidecar, &by_id));
        let b = s.spawn(|| restore_job(&sidecar, &by_id));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (won, lost) = if a.status.code() == Some(0) {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(
        won.status.code(),
        Some(0),
        "{}\n{}",
        text(&won),
        sidecar.log()
    );
    let msg = refused(&lost, "FailedPrecondition");
    assert!(msg.contains("is not empty"), "{msg}");
    assert_restored_backup(&pgdata, b2["beginWal"].as_str().unwrap());
    assert_eq!(std::fs::read_link(pgdata.join("pg_wal")).unwrap(), wal_dir);
    assert!(wal_dir.is_dir());
    // A retried Job pod: CloudNativePG moves the failed PGDATA aside, the WAL volume
    // keeps what the first attempt put there; the second call succeeds the same way
    // and loses none of it.
    let earlier = wal_dir.join("000000010000000000000099");
    std::fs::write(&earlier, wal_like(1 << 16, 7)).unwrap();
    let aside = pg.make_dir("by-id-aside");
    std::fs::rename(&pgdata, aside.join("pgdata")).unwrap();
    assert_eq!(pg.make_dir("by-id"), pgdata);
    restore_job_ok(&sidecar, &by_id);
    assert_restored_backup(&pgdata, b2["beginWal"].as_str().unwrap());
    assert_eq!(std::fs::read_link(pgdata.join("pg_wal")).unwrap(), wal_dir);
    assert_eq!(std::fs::read(&earlier).unwrap(), wal_like(1 << 16, 7));
    // The already-restored PGDATA is refused, and kept as it is.
    let out = restore_job(&sidecar, &by_id);
    refused(&out, "FailedPrecondition");
    assert!(pgdata.join("backup_label").exists());
    assert_eq!(std::fs::read_link(pgdata.join("pg_wal")).unwrap(), wal_dir);
    drop(sidecar);

    // 3. A targetTime before every backup: nothing to start from, said so, nothing
    // written.
    let pgdata = pg.make_dir("too-early");
    let early = recovery_cluster(
        &work,
        "early.json",
        json!({"targetTime": "2001-01-01 00:00:00"}),
        json!({}),
    );
    let sidecar = restore_sidecar(&pg, &api, "early-sidecar", &pgdata, &pgdata.join("x"));
    let out = restore_job(&sidecar, &early);
    let msg = refused(&out, "NotFound");
    assert!(msg.starts_with("no target backup found"), "{msg}");
    assert!(msg.contains("\"store\"") && msg.contains(SERVER), "{msg}");
    assert!(is_empty_dir(&pgdata));

    // 4. The new Cluster also archives into the store and server it recovers from:
    // refused before anything is written (upstream's empty-archive check), and the
    // message says how to fix it.
    let same = recovery_cluster(
        &work,
        "same.json",
        json!({}),
        json!({"plugins": [{"name": PLUGIN_NAME, "isWALArchiver": true,
                "parameters": {"barmanObjectName": "store", "serverName": SERVER}}]}),
    );
    let out = restore_job(&sidecar, &same);
    let msg = refused(&out, "FailedPrecondition");
    assert!(
        msg.starts_with("the Cluster's archive ObjectStore \"store\"")
            && msg.contains("serverName"),
        "{msg}"
    );
    assert!(!msg.contains(&s3.secret_key), "{msg}");
    assert!(is_empty_dir(&pgdata));

    // 5. The first WAL of backup 2 deleted from the bucket: the error names it, and
    // nothing is written.
    let begin = b2["beginWal"].as_str().unwrap().to_string();
    let prefix = format!("wal/{SERVER}/wals/{}/", &begin[..16]);
    let keys: Vec<String> = list_keys(&s3, BUCKET, &prefix)
        .into_iter()
        .filter(|k| k.starts_with(&begin))
        .collect();
    assert!(!keys.is_empty(), "{begin} not archived");
    for k in &keys {
        boto3(
            &s3,
            BUCKET,
            "s3.delete_object(Bucket=bucket, Key=sys.argv[3])",
            &[&format!("{prefix}{k}")],
        );
    }
    let gone = recovery_cluster(
        &work,
        "gone.json",
        json!({"backupID": b2["backupId"]}),
        json!({}),
    );
    let out = restore_job(&sidecar, &gone);
    let msg = refused(&out, "NotFound");
    assert!(
        msg.starts_with(&format!("the first WAL {begin} of backup")),
        "{msg}"
    );
    assert!(is_empty_dir(&pgdata));

    // 6. The request's check_empty_wal_archive=false wins over the Cluster: the
    // archive check is skipped (the call gets as far as the missing first WAL).
    let out = sidecar.client(&[
        "restore-job",
        "--check-empty",
        "false",
        "--cluster",
        same.to_str().unwrap(),
    ]);
    let msg = refused(&out, "NotFound");
    assert!(msg.starts_with(&format!("the first WAL {begin}")), "{msg}");
    assert!(is_empty_dir(&pgdata));
}
