//! The plugin under what a pod really goes through: its sidecar killed with SIGKILL
//! while a WAL.Archive batch is in flight (the store stalled, so the uploads hang),
//! then started again on the same plugin directory, as the kubelet restarts a native
//! sidecar. PostgreSQL keeps calling its `archive_command`; nothing it was told is
//! archived may be missing or different in the bucket.

use super::cnpg_wal::{append_conf, cluster_file, seed_store_at, Sidecar, BUCKET, DEST, SERVER};
use super::common::*;
use barrelman_testkit::kubeapi::KubeApi;
use barrelman_testkit::{Fault, FlakyProxy};
use std::time::{Duration, Instant};

#[test]
fn a_sidecar_killed_mid_batch_and_restarted_loses_no_wal() {
    // WAL piles up (.ready) before archive_command is set, so the first call is a
    // whole batch of wal.maxParallel (4) concurrent uploads.
    let (s3, pg) = start_both(&[
        "archive_mode = on",
        "archive_command = ''",
        "wal_keep_size = '1GB'",
    ]);
    s3.create_bucket(BUCKET);
    // Every connection to the store hangs until disarmed.
    let proxy = FlakyProxy::start(&s3.endpoint, Fault::Stall, usize::MAX / 2);
    let api = KubeApi::start();
    seed_store_at(&api, &s3, &proxy.endpoint, "store", "creds");
    let work = pg.make_dir("plugin-work");
    let plugins = pg.make_dir("plugins");
    let spool = pg.make_dir("spool");
    let cluster = cluster_file(&work, "pg", "store");
    let sidecar = Sidecar::start(&work, &plugins, &spool, &pg.datadir, &api.url());

    pg.start();
    pg.psql("create table t (id int, pad text)");
    let mut last = String::new();
    for i in 0..6 {
        pg.psql(&format!(
            "insert into t select g, repeat('x', 200) from generate_series(1, 2000) g -- {i}"
        ));
        last = switch_wal(&pg);
    }
    append_conf(&pg, &[sidecar.archive_command(&cluster)]);
    pg.psql("select pg_reload_conf()");

    // Wait until the batch's uploads hang on the store, then SIGKILL the sidecar.
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.faulted() < 1 {
        assert!(
            Instant::now() < deadline,
            "no upload reached the store:\n{}",
            sidecar.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let first_log = sidecar.log();
    drop(sidecar);
    // Nothing can have reached the bucket: every upload hung.
    assert!(
        list_keys(&s3, BUCKET, "wal/").is_empty(),
        "{:?}",
        list_keys(&s3, BUCKET, "wal/")
    );

    // The store answers again; the kubelet starts a new sidecar on the stale socket.
    proxy.arm(Fault::Stall, 0);
    let sidecar = Sidecar::start(&work, &plugins, &spool, &pg.datadir, &api.url());
    wait_archived(&pg, &last, Duration::from_secs(120));
    let log = sidecar.log();
    // The killed batch left no marker claiming a segment was archived: every
    // shortcut taken by the new sidecar was earned by one of its own uploads.
    let restored = assert_every_done_segment_restores(&pg, &s3, DEST, SERVER);
    assert!(
        restored >= 6,
        "only {restored} segments compared\n--- first sidecar\n{first_log}\n--- second\n{log}"
    );
    assert_eq!(
        pg.psql("select last_archived_wal from pg_stat_archiver"),
        last
    );
    // And PostgreSQL's calls failed while the sidecar was gone, then succeeded: no
    // archive_command died of a signal.
    assert!(
        !pg.log().contains("terminated by signal"),
        "{}",
        tail(&pg.log(), 4000)
    );
}
