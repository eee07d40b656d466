//! Smoke test of the test harness itself: an S3 server and a PostgreSQL cluster come
//! up, answer, and work together (PostgreSQL archives WAL to the S3 server with the
//! venv's barman-cloud-wal-archive, which proves the postmaster's environment and the
//! venv are usable by the cluster's OS user).

use std::time::{Duration, Instant};

use barrelman_testkit::{as_pg_user, free_port, pg_bindir, tools_bin, PgCluster, S3Server};

#[test]
fn s3_server_and_pg_cluster_work() {
    let t0 = Instant::now();
    let a = free_port();
    assert_ne!(a, free_port(), "free_port handed out the same port twice");
    assert!(pg_bindir().join("postgres").is_file());

    let archive = format!(
        "archive_command = '{}/barman-cloud-wal-archive --endpoint-url \"$BM_S3_ENDPOINT\" \
         s3://smoke/wal pg %p'",
        tools_bin().display()
    );
    // The S3 server starts in another thread while initdb runs. A scoped thread is
    // joined even if initdb panics, so the server is always dropped (stopped).
    let (s3, pg) = std::thread::scope(|scope| {
        let s3 = scope.spawn(S3Server::start);
        let pg = PgCluster::init(&["archive_mode = on", &archive]);
        (s3.join().expect("S3Server::start panicked"), pg)
    });
    eprintln!("S3 server and initdb ready after {:.1?}", t0.elapsed());
    assert!(
        s3.endpoint.starts_with("http://127.0.0.1:"),
        "{}",
        s3.endpoint
    );
    s3.create_bucket("smoke");
    s3.create_bucket("smoke"); // idempotent

    let mut env = s3.env();
    env.push(("BM_S3_ENDPOINT".into(), s3.endpoint.clone()));
    pg.start_with_env(&env);
    assert_eq!(pg.psql("select 1"), "1");
    assert_eq!(pg.psql("select 1; select 2"), "1\n2");
    assert!(pg.psql("show server_version").starts_with("15."));

    pg.pgbench(&["-i", "-s", "1", "-q"]);
    assert_eq!(pg.psql("select count(*) from pgbench_accounts"), "100000");

    // Force a segment out and wait until barman-cloud-wal-archive has shipped it.
    pg.psql("select pg_switch_wal()");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = pg.psql("select archived_count, failed_count from pg_stat_archiver");
        let (ok, failed) = stats.split_once('|').expect("two columns");
        assert_eq!(failed, "0", "archiving failed; server log:\n{}", pg.log());
        if ok != "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing archived; log:\n{}",
            pg.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A directory owned by the cluster's OS user, writable by a command run as that user.
    let dir = pg.make_dir("scratch/inner");
    let status = as_pg_user(&mut std::process::Command::new("touch"))
        .arg(dir.join("f"))
        .status()
        .expect("run touch");
    assert!(status.success());

    pg.stop();
    pg.stop(); // not running: no-op
    assert!(pg.log().contains("database system is shut down"));
    eprintln!("smoke test body took {:.1?}", t0.elapsed());
    let t1 = Instant::now();
    drop(s3);
    eprintln!("S3Server drop took {:.1?}", t1.elapsed());
    let t1 = Instant::now();
    drop(pg);
    eprintln!("PgCluster drop took {:.1?}", t1.elapsed());
}
