//! Transient store failures are retried; a call that still fails exits non-zero and
//! leaves no object that looks complete.

use super::common::*;
use barrelman_testkit::{Fault, FlakyProxy, S3Server};

fn archive_via(
    endpoint: &str,
    s3: &S3Server,
    server: &str,
    wal: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let links = links_dir();
    let mut args: Vec<&str> = extra.to_vec();
    args.extend([
        "--endpoint-url",
        endpoint,
        "s3://flaky",
        server,
        wal.to_str().unwrap(),
    ]);
    run(&links.join("barman-cloud-wal-archive"), &args, s3)
}

#[test]
fn resets_and_slowdowns_are_retried_and_failures_leave_nothing() {
    let s3 = S3Server::start();
    s3.create_bucket("flaky");
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("000000010000000000000007");
    let data = wal_like(16 << 20, 5);
    std::fs::write(&wal, &data).unwrap();
    let links = links_dir();
    let restore = links.join("barman-cloud-wal-restore");

    for (fault, server) in [(Fault::ResetMidRequest, "reset"), (Fault::SlowDown, "slow")] {
        let proxy = FlakyProxy::start(&s3.endpoint, fault, 3);
        let out = archive_via(&proxy.endpoint, &s3, server, &wal, &["--zstd"]);
        assert_eq!(out.status.code(), Some(0), "{fault:?}: {}", text(&out));
        assert_eq!(proxy.faulted(), 3, "the proxy did not inject the faults");
        drop(proxy);

        // Restored through a flaky path too, and identical.
        let proxy = FlakyProxy::start(&s3.endpoint, fault, 3);
        let dest = dir.path().join(format!("back-{server}"));
        let out = run(
            &restore,
            &[
                "--endpoint-url",
                &proxy.endpoint,
                "s3://flaky",
                server,
                "000000010000000000000007",
                dest.to_str().unwrap(),
            ],
            &s3,
        );
        assert_eq!(out.status.code(), Some(0), "{fault:?}: {}", text(&out));
        assert!(
            std::fs::read(&dest).unwrap() == data,
            "{fault:?}: restored bytes differ"
        );
    }

    // A store that never recovers: non-zero exit (PostgreSQL will retry) and no object.
    let proxy = FlakyProxy::start(&s3.endpoint, Fault::ResetMidRequest, usize::MAX / 2);
    // (A read timeout of 5 s bounds the retrying to 15 s: 3 x --read-timeout.)
    let out = archive_via(&proxy.endpoint, &s3, "down", &wal, &["--read-timeout", "5"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let dest = dir.path().join("nothing");
    let out = CloudCmd::new(&restore, &s3).run(&[
        "s3://flaky",
        "down",
        "000000010000000000000007",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed upload left an object: {}",
        text(&out)
    );
}
