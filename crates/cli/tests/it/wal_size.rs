//! A stored WAL segment shorter than its header says (a truncated object, or a
//! compressed stream of a truncated segment) is refused by wal-restore, naming the
//! key, and nothing is left at the destination; `.partial` files are not checked.

use super::common::*;
use std::time::Duration;

fn put_object(s3: &barrelman_testkit::S3Server, bucket: &str, key: &str, file: &std::path::Path) {
    const PY: &str = r#"
with open(sys.argv[4], "rb") as f:
    s3.put_object(Bucket=bucket, Key=sys.argv[3], Body=f.read())
"#;
    boto3(s3, bucket, PY, &[key, file.to_str().unwrap()]);
}

#[test]
fn truncated_wal_segments_are_refused_on_restore() {
    let archive_cmd = format!(
        "archive_command = '{} wal-archive --endpoint-url \"$BM_S3_ENDPOINT\" s3://segsz/p srv %p'",
        barrelman().display()
    );
    let (s3, pg) = start_both(&["archive_mode = on", &archive_cmd, "wal_keep_size = '1GB'"]);
    s3.create_bucket("segsz");
    start(&pg, &s3);
    pg.psql("create table t as select g from generate_series(1, 1000) g");
    let seg = switch_wal(&pg);
    wait_archived(&pg, &seg, Duration::from_secs(60));
    let original = std::fs::read(pg.datadir.join("pg_wal").join(&seg)).unwrap();
    assert_eq!(original.len(), 16 << 20);
    let links = links_dir();
    let restore_tool = links.join("barman-cloud-wal-restore");
    let dir = tempfile::tempdir().unwrap();
    let restore = |server: &str, name: &str, dest_dir: &std::path::Path| {
        CloudCmd::new(&restore_tool, &s3).run(&[
            "s3://segsz/p",
            server,
            name,
            dest_dir.join("RECOVERYXLOG").to_str().unwrap(),
        ])
    };
    let empty = |d: &std::path::Path| std::fs::read_dir(d).unwrap().count() == 0;

    // The whole segment restores (the check passes real WAL).
    let ok_dir = dir.path().join("ok");
    std::fs::create_dir(&ok_dir).unwrap();
    let out = restore("srv", &seg, &ok_dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(std::fs::read(ok_dir.join("RECOVERYXLOG")).unwrap() == original);

    // Truncated in the store, uncompressed.
    let half = dir.path().join("half");
    std::fs::write(&half, &original[..8 << 20]).unwrap();
    let key = format!("p/srv/wals/{}/{seg}", &seg[..16]);
    put_object(&s3, "segsz", &key, &half);
    let dest = dir.path().join("plain");
    std::fs::create_dir(&dest).unwrap();
    let out = restore("srv", &seg, &dest);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr.contains(&key) && stderr.contains("truncated"),
        "{stderr}"
    );
    assert!(empty(&dest), "something was left at the destination");

    // A compressed stream of a truncated segment.
    let src_dir = dir.path().join("src");
    std::fs::create_dir(&src_dir).unwrap();
    std::fs::write(src_dir.join(&seg), &original[..(16 << 20) - 8192]).unwrap();
    let out = CloudCmd::new(&links.join("barman-cloud-wal-archive"), &s3)
        .opts(&["--gzip"])
        .run(&["s3://segsz/p", "gz", src_dir.join(&seg).to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dest = dir.path().join("gz");
    std::fs::create_dir(&dest).unwrap();
    let out = restore("gz", &seg, &dest);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stderr.contains(&format!("{seg}.gz")), "{stderr}");
    assert!(empty(&dest), "something was left at the destination");

    // A .partial file is short by nature and restores as stored.
    let partial = format!("{seg}.partial");
    std::fs::write(src_dir.join(&partial), &original[..8 << 20]).unwrap();
    let out = CloudCmd::new(&links.join("barman-cloud-wal-archive"), &s3).run(&[
        "s3://segsz/p",
        "part",
        src_dir.join(&partial).to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dest = dir.path().join("part");
    std::fs::create_dir(&dest).unwrap();
    let out = restore("part", &partial, &dest);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(std::fs::read(dest.join("RECOVERYXLOG")).unwrap() == original[..8 << 20]);
}
