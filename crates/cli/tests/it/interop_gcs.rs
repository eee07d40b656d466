//! Both ways with barman-cloud 3.19.1 (its google-cloud-storage client) on Google
//! Cloud Storage, emulated by fake-gcs-server: one PostgreSQL cluster archives every
//! segment with both tools into two folders of one bucket, each tool takes a base
//! backup into its own folder; barman then restores barrelman's backup and WAL and
//! barrelman restores barman's, and both come back with the source's `pg_dumpall`.
//! Both tools print the same `backup-list --format json` of either folder.

use super::common::*;
use super::lifecycle::{restore, same_output, Side};
use std::time::Duration;

const OURS: &str = "gs://interop/by-barrelman";
/// The console URL form of `gs://interop/by-barman`, which barman accepts too.
const THEIRS: &str = "https://console.cloud.google.com/storage/browser/interop/by-barman";
const SERVER: &str = "pg";

#[test]
fn barman_and_barrelman_restore_each_others_backups_and_wal_on_gcs() {
    let (ours, theirs) = (Side::barrelman(), Side::barman());
    let archive = |side: &Side, dest: &str| {
        format!(
            "{} --cloud-provider google-cloud-storage --gzip {dest} {SERVER} %p",
            side.tool("barman-cloud-wal-archive").display()
        )
    };
    let archive_command = format!(
        "archive_command = '{} && {}'",
        archive(&ours, OURS),
        archive(&theirs, THEIRS)
    );
    let (gcs, pg) = start_gcs_and_pg(&["archive_mode = on", &archive_command]);
    gcs.create_bucket("interop");
    pg.start_with_env(&gcs.env());
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    pg.psql("create table marks (note text)");

    for (side, dest) in [(&ours, OURS), (&theirs, THEIRS)] {
        let tool = side.tool("barman-cloud-backup");
        barman_backup(&tool, &pg, &gcs, "--gzip", "base", dest, SERVER);
    }
    pg.psql("insert into marks values ('after both backups')");
    pg.pgbench(&["-t", "200", "-c", "2", "-n"]);
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(60));
    let source_dump = pg.dumpall();
    assert!(source_dump.contains("after both backups"));

    for dest in [OURS, THEIRS] {
        let list = same_output(
            "barman-cloud-backup-list",
            &["--format", "json"],
            &[],
            &gcs,
            (dest, SERVER),
        );
        assert!(list.contains("\"backup_name\": \"base\""), "{dest}: {list}");
    }

    // Each tool restores the other's backup and replays the other's WAL.
    for (reader, dest, dir) in [(&theirs, OURS, "barman"), (&ours, THEIRS, "barrelman")] {
        let restored = restore(reader, &pg, &gcs, (dest, SERVER), "base", dir, &[]);
        assert_same_dump(
            &restored.dumpall(),
            &source_dump,
            &format!("{dir} restoring {dest}"),
        );
        restored.stop();
    }
}

/// Credentials that cannot work are one sentence before any request, naming what to
/// fix and never a secret: an unreadable `GOOGLE_APPLICATION_CREDENTIALS` file, and
/// a manifest key that is not a service account key.
#[test]
fn unusable_google_credentials_are_named_before_any_request() {
    let links = links_dir();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(links.join("barman-cloud-wal-restore"))
        .args(["--cloud-provider", "google-cloud-storage", OURS, SERVER])
        .args(["000000010000000000000001", "/nonexistent/x"])
        .env_remove("STORAGE_EMULATOR_HOST")
        .env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            dir.path().join("gone.json"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GOOGLE_APPLICATION_CREDENTIALS names") && err.contains("gone.json"),
        "{err}"
    );

    let secrets = dir.path().join("secrets/gcs");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(
        secrets.join("key.json"),
        r#"{"type":"authorized_user","client_id":"c","client_secret":"TOPSECRET","refresh_token":"r"}"#,
    )
    .unwrap();
    let manifest = dir.path().join("store.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nmetadata:\n  name: g\nspec:\n  \
             configuration:\n    destinationPath: {OURS}\n    googleCredentials:\n      \
             applicationCredentials:\n        name: gcs\n        key: key.json\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(barrelman())
        .args(["wal-restore", "--config", manifest.to_str().unwrap()])
        .args(["--server-name", SERVER, "--secrets-dir"])
        .arg(dir.path().join("secrets"))
        .args(["000000010000000000000001", "/nonexistent/x"])
        .env_remove("STORAGE_EMULATOR_HOST")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        err.contains("'authorized_user'") && err.contains("applicationCredentials"),
        "{err}"
    );
    assert!(!err.contains("TOPSECRET"), "{err}");
}
