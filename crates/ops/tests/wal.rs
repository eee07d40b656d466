//! `ops::wal` as a library, on a `file://` archive: requests in, typed outcomes and
//! classified errors out, with no command line and no environment involved.

use barrelman_core::error::{Classified, ErrorClass};
use barrelman_core::layout::Destination;
use barrelman_ops::wal::{
    self, ArchiveError, ArchiveRequest, RequestedWal, RestoreError, RestoreOutcome, RestoreRequest,
};
use barrelman_storage::{Archive, StoreSettings, UploadOptions};
use std::path::{Path, PathBuf};

fn segment(n: u32) -> String {
    format!("0000000100000000{n:08X}")
}

/// Deterministic bytes that differ with `seed`.
fn content(seed: u8) -> Vec<u8> {
    (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(31) as u8) ^ seed)
        .collect()
}

fn open(dir: &Path) -> Archive {
    let url = format!("file://{}", dir.join("store").display());
    let dest = Destination::parse(&url, false).unwrap();
    Archive::open(&dest, "srv", &StoreSettings::default()).unwrap()
}

fn archive_request(path: PathBuf) -> ArchiveRequest {
    ArchiveRequest {
        wal_path: path,
        upload: UploadOptions::default(),
        history_tags: None,
        pgdata: None,
        max_parallel: 1,
        spool_dir: None,
        must_be_empty: None,
    }
}

fn restore_request(name: &str, dest: PathBuf) -> RestoreRequest {
    RestoreRequest {
        wal_name: name.to_string(),
        dest,
        allow_partial: true,
        parallel: 1,
        spool_dir: None,
    }
}

#[tokio::test]
async fn archive_and_restore_with_the_empty_archive_guard() {
    let dir = tempfile::tempdir().unwrap();
    let archive = open(dir.path());
    let first = dir.path().join(segment(1));
    std::fs::write(&first, content(1)).unwrap();

    // The first WAL of a new cluster: the archive is empty, the upload happens and
    // the caller is told the requirement is over.
    let mut req = archive_request(first.clone());
    req.must_be_empty = Some("test marker exists".into());
    let done = wal::archive(&archive, &req).await.unwrap();
    assert!(
        matches!(done.requested, RequestedWal::Uploaded { .. }),
        "{done:?}"
    );
    assert!(done.ends_empty_requirement());
    assert!(done.also_uploaded.is_empty());

    // Another cluster under the same server name: refused, as a conflict.
    let second = dir.path().join(segment(2));
    std::fs::write(&second, content(2)).unwrap();
    let mut req = archive_request(second.clone());
    req.must_be_empty = Some("test marker exists".into());
    let err = wal::archive(&archive, &req).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
    assert!(err.to_string().contains("is not empty"), "{err}");
    assert!(err.hint().is_some());

    // The same bytes again: accepted without a write; other bytes: refused.
    let again = wal::archive(&archive, &archive_request(first.clone()))
        .await
        .unwrap();
    assert!(
        matches!(again.requested, RequestedWal::AlreadyArchived { .. }),
        "{again:?}"
    );
    std::fs::write(&first, content(9)).unwrap();
    let err = wal::archive(&archive, &archive_request(first.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Storage(_)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");

    // Restore: the archived bytes, byte for byte.
    let back = dir.path().join("RECOVERYXLOG");
    let got = wal::restore(&archive, &restore_request(&segment(1), back.clone()))
        .await
        .unwrap();
    assert!(matches!(got, RestoreOutcome::Downloaded { .. }), "{got:?}");
    assert_eq!(std::fs::read(&back).unwrap(), content(1));

    // A segment the archive does not hold: not found, the normal end of recovery.
    let err = wal::restore(&archive, &restore_request(&segment(7), back.clone()))
        .await
        .unwrap_err();
    assert!(err.is_not_archived(), "{err:?}");
    assert_eq!(err.class(), ErrorClass::NotFound);

    // Names that are no WAL names: input errors, before any I/O.
    let err = wal::restore(&archive, &restore_request("RECOVERYXLOG", back.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, RestoreError::InvalidName(_)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Input);
    let err = wal::archive(&archive, &archive_request(dir.path().join("pg_control")))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Input, "{err}");

    wal::check_empty(&archive, Some(2)).await.unwrap();
    let err = wal::check_empty(&archive, None).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
}

#[tokio::test]
async fn parallel_archive_marks_what_it_uploaded_ahead_and_restore_prefetches() {
    let dir = tempfile::tempdir().unwrap();
    let archive = open(dir.path());
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir_all(pgdata.join("pg_wal/archive_status")).unwrap();
    for n in 1..=3 {
        std::fs::write(pgdata.join("pg_wal").join(segment(n)), content(n as u8)).unwrap();
        std::fs::write(
            pgdata.join(format!("pg_wal/archive_status/{}.ready", segment(n))),
            b"",
        )
        .unwrap();
    }
    let spool = dir.path().join("spool");
    let request = |n: u32| ArchiveRequest {
        pgdata: Some(pgdata.clone()),
        max_parallel: 3,
        spool_dir: Some(spool.clone()),
        ..archive_request(PathBuf::from(format!("pg_wal/{}", segment(n))))
    };

    let done = wal::archive(&archive, &request(1)).await.unwrap();
    assert!(
        matches!(done.requested, RequestedWal::Uploaded { .. }),
        "{done:?}"
    );
    let mut ahead: Vec<String> = done.also_uploaded.iter().map(|w| w.to_string()).collect();
    ahead.sort();
    assert_eq!(ahead, [segment(2), segment(3)]);

    // PostgreSQL asks for segment 2: the marker of the upload ahead answers.
    let done = wal::archive(&archive, &request(2)).await.unwrap();
    assert_eq!(done.requested, RequestedWal::UploadedEarlier);
    assert!(!done.ends_empty_requirement());

    // While the archive must be empty, markers are cleared, never trusted: segment 3
    // is checked against the archive (which is not empty: refused).
    let mut guarded = request(3);
    guarded.must_be_empty = Some("test marker exists".into());
    let err = wal::archive(&archive, &guarded).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
    let done = wal::archive(&archive, &request(3)).await.unwrap();
    assert!(
        matches!(done.requested, RequestedWal::AlreadyArchived { .. }),
        "{done:?}"
    );

    // Restore with prefetch: segment 1 downloaded, 2 and 3 spooled, then served.
    let restore_spool = dir.path().join("restore-spool");
    let restore = |n: u32, dest: &Path| RestoreRequest {
        parallel: 3,
        spool_dir: Some(restore_spool.clone()),
        ..restore_request(&segment(n), dest.to_path_buf())
    };
    let back = dir.path().join("RECOVERYXLOG");
    let got = wal::restore(&archive, &restore(1, &back)).await.unwrap();
    assert!(matches!(got, RestoreOutcome::Downloaded { .. }), "{got:?}");
    assert_eq!(std::fs::read(&back).unwrap(), content(1));
    for n in 2..=3 {
        let got = wal::restore(&archive, &restore(n, &back)).await.unwrap();
        assert_eq!(got, RestoreOutcome::FromSpool, "segment {n}");
        assert_eq!(std::fs::read(&back).unwrap(), content(n as u8));
    }

    // A spool that cannot be created fails the call as a spool failure.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"a file where the spool should be").unwrap();
    let req = RestoreRequest {
        spool_dir: Some(blocked),
        ..restore(1, &back)
    };
    let err = wal::restore(&archive, &req).await.unwrap_err();
    assert!(err.is_spool_failure(), "{err:?}");
    assert!(err.hint().is_some());
}

/// Pages of `path` in the page cache, in bytes, as util-linux's `fincore` reports.
fn cached_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux) runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test]
async fn an_archived_segment_leaves_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let archive = open(dir.path());
    let path = dir.path().join(segment(7));
    let mut file = std::fs::File::create(&path).unwrap();
    std::io::Write::write_all(&mut file, &content(7)).unwrap();
    // PostgreSQL fsyncs a segment before archiving it; clean pages can be dropped.
    file.sync_all().unwrap();
    drop(file);
    assert!(cached_bytes(&path) > 0, "the written segment is not cached");

    let outcome = wal::archive(&archive, &archive_request(path.clone()))
        .await
        .unwrap();
    assert!(matches!(outcome.requested, RequestedWal::Uploaded { .. }));
    assert_eq!(cached_bytes(&path), 0, "the archived segment stayed cached");
}
