//! The storage conformance suite: every check runs against every backend.
//!
//! A check is a backend-agnostic async function over an opened [`Archive`] (each
//! check gets its own server folder, so checks cannot see each other's objects).
//! A backend is a way to get [`StoreSettings`] and a destination: a `file://`
//! directory and SeaweedFS (S3) today. Adding a provider is one line in
//! `backends!` with a constructor that starts its emulator.
//!
//! Each backend is one test that runs every check and reports each failing
//! check by backend and name.

use barrelman_core::compression::ALL_COMPRESSIONS;
use barrelman_core::layout::Destination;
use barrelman_core::wal::WalName;
use barrelman_core::Compression;
use barrelman_storage::config::Environment;
use barrelman_storage::upload::SINGLE_PUT_MAX;
use barrelman_storage::{
    Archive, ArchiveOutcome, CommonSettings, S3Keys, S3Settings, StorageError, StoreSettings,
    UploadOptions,
};
use barrelman_storage::{GcsSettings, ProviderSettings};
use barrelman_testkit::{FakeGcsServer, S3Server};
use bytes::Bytes;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// Where one backend's archives live, and what keeps that place alive.
struct Backend {
    name: &'static str,
    destination: Destination,
    settings: StoreSettings,
    /// The emulator process or temporary directory, dropped after the checks.
    _keep: Box<dyn std::any::Any>,
}

impl Backend {
    /// A `file://` archive in a temporary directory.
    fn local_directory() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/archive", dir.path().display());
        Self {
            name: "local directory",
            destination: Destination::parse(&url, false).unwrap(),
            settings: StoreSettings::default(),
            _keep: Box::new(dir),
        }
    }

    /// A GCS bucket on a fake-gcs-server of its own, reached as barman reaches it:
    /// `STORAGE_EMULATOR_HOST`, no credentials.
    fn fake_gcs() -> Self {
        let gcs = FakeGcsServer::start();
        gcs.create_bucket("conformance");
        let env = Environment::from_vars(gcs.env());
        let settings = StoreSettings {
            common: CommonSettings::default(),
            provider: ProviderSettings::Gcs(GcsSettings {
                environment: env.google,
                ..Default::default()
            }),
        };
        Self {
            name: "fake-gcs-server (GCS)",
            destination: Destination::parse("gs://conformance/suite", false).unwrap(),
            settings,
            _keep: Box::new(gcs),
        }
    }

    /// An S3 bucket on a SeaweedFS server of its own.
    fn seaweedfs() -> Self {
        let s3 = S3Server::start();
        s3.create_bucket("conformance");
        let settings = StoreSettings::s3(
            CommonSettings {
                endpoint_url: Some(s3.endpoint.clone()),
                ..Default::default()
            },
            S3Settings {
                keys: Some(S3Keys {
                    access_key_id: s3.access_key.clone(),
                    secret_access_key: s3.secret_key.clone(),
                    session_token: None,
                }),
                region: Some(s3.region.clone()),
                ..Default::default()
            },
        );
        Self {
            name: "SeaweedFS (S3)",
            destination: Destination::parse("s3://conformance/suite", false).unwrap(),
            settings,
            _keep: Box::new(s3),
        }
    }
}

/// What a check gets: an archive of its own and a scratch directory for local files.
struct Ctx {
    archive: Archive,
    scratch: PathBuf,
}

type Check = fn(Ctx) -> Pin<Box<dyn Future<Output = ()>>>;

/// Every check, by name.
const CHECKS: &[(&str, Check)] = &[
    ("identical re-archive is accepted", |c| {
        Box::pin(identical_rearchive_is_accepted(c))
    }),
    ("different bytes are refused", |c| {
        Box::pin(different_bytes_are_refused(c))
    }),
    ("every suffix variant is found", |c| {
        Box::pin(every_suffix_variant_is_found(c))
    }),
    (".partial serves a missing segment", |c| {
        Box::pin(partial_serves_a_missing_segment(c))
    }),
    ("multipart above the single-put limit", |c| {
        Box::pin(multipart_above_the_single_put_limit(c))
    }),
    ("delete_many can be repeated", |c| {
        Box::pin(delete_many_can_be_repeated(c))
    }),
    ("junk in the WAL folder is ignored", |c| {
        Box::pin(junk_in_the_wal_folder_is_ignored(c))
    }),
    ("the empty-archive check honours the timeline", |c| {
        Box::pin(empty_archive_check_honours_the_timeline(c))
    }),
    ("a corrupted object is reported as corrupt", |c| {
        Box::pin(a_corrupted_object_is_reported_as_corrupt(c))
    }),
];

/// Runs every check against `backend`; fails naming each check that failed.
fn run_all(backend: Backend) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut failed = Vec::new();
    for (i, (name, check)) in CHECKS.iter().enumerate() {
        let scratch = tempfile::tempdir().unwrap();
        let server = format!("check-{i}");
        let archive = Archive::open(&backend.destination, &server, &backend.settings)
            .unwrap_or_else(|e| panic!("{}: cannot open the archive: {e}", backend.name));
        let ctx = Ctx {
            archive,
            scratch: scratch.path().to_path_buf(),
        };
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(check(ctx))));
        if let Err(panic) = outcome {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {name}: {why}", backend.name));
        }
    }
    assert!(failed.is_empty(), "failed checks:\n{}", failed.join("\n"));
}

/// One test per backend.
macro_rules! backends {
    ($($test:ident => $make:expr,)*) => {
        $(
            #[test]
            fn $test() {
                run_all($make);
            }
        )*
    };
}

backends! {
    local_directory => Backend::local_directory(),
    seaweedfs => Backend::seaweedfs(),
    fake_gcs => Backend::fake_gcs(),
}

// ---- helpers -----------------------------------------------------------------------

/// `len` bytes no codec can shrink, different for each `seed` (xorshift; the first
/// bytes are never a WAL page header, so no segment-size check applies).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `bytes` as the local WAL file `name` in `dir`.
fn wal_file(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, WalName) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    (path, WalName::parse(name).unwrap())
}

fn codec(compression: Compression) -> UploadOptions {
    UploadOptions {
        compression: Some(compression),
        ..Default::default()
    }
}

/// Restores `name` (allowing `.partial`) and returns the key served and the bytes.
async fn restore(c: &Ctx, name: &str, allow_partial: bool) -> (String, Vec<u8>) {
    let out = c.scratch.join(format!("restored-{name}"));
    let key = c
        .archive
        .restore_wal(&WalName::parse(name).unwrap(), &out, allow_partial)
        .await
        .unwrap_or_else(|e| panic!("restore of {name} failed: {e}"));
    (key, std::fs::read(&out).unwrap())
}

const SEG1: &str = "000000010000000000000001";

// ---- checks ------------------------------------------------------------------------

async fn identical_rearchive_is_accepted(c: Ctx) {
    let bytes = noise(1, 64 << 10);
    let (path, name) = wal_file(&c.scratch, SEG1, &bytes);
    let first = c
        .archive
        .archive_wal(&path, &name, &codec(Compression::Gzip))
        .await
        .unwrap();
    assert!(
        matches!(first, ArchiveOutcome::Uploaded { .. }),
        "{first:?}"
    );
    // Again, and under another codec: the stored copy (under any suffix) is ours.
    for compression in [Compression::Gzip, Compression::None] {
        let again = c
            .archive
            .archive_wal(&path, &name, &codec(compression))
            .await
            .unwrap();
        assert!(
            matches!(&again, ArchiveOutcome::AlreadyArchived { key } if key.ends_with(".gz")),
            "{again:?}"
        );
    }
    assert_eq!(c.archive.find_variants(&name).await.unwrap().len(), 1);
}

async fn different_bytes_are_refused(c: Ctx) {
    let ours = noise(2, 64 << 10);
    let (path, name) = wal_file(&c.scratch, SEG1, &ours);
    c.archive
        .archive_wal(&path, &name, &codec(Compression::None))
        .await
        .unwrap();
    let elsewhere = c.scratch.join("other");
    std::fs::create_dir(&elsewhere).unwrap();
    let (other, _) = wal_file(&elsewhere, SEG1, &noise(3, 64 << 10));
    let err = c
        .archive
        .archive_wal(&other, &name, &codec(Compression::Zstd))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict { .. }), "{err}");
    assert_eq!(
        restore(&c, SEG1, false).await.1,
        ours,
        "the first copy stays"
    );
}

async fn every_suffix_variant_is_found(c: Ctx) {
    for (i, compression) in ALL_COMPRESSIONS.into_iter().enumerate() {
        let name = format!("0000000100000000000000{:02X}", 0x10 + i);
        let bytes = noise(10 + i as u64, 48 << 10);
        let (path, wal) = wal_file(&c.scratch, &name, &bytes);
        c.archive
            .archive_wal(&path, &wal, &codec(compression))
            .await
            .unwrap();
        let variants = c.archive.find_variants(&wal).await.unwrap();
        assert_eq!(variants.len(), 1, "{compression:?}: {variants:?}");
        assert!(variants[0]
            .0
            .ends_with(&format!("{name}{}", compression.suffix())));
        assert_eq!(variants[0].1.compression, compression);
        let (key, restored) = restore(&c, &name, false).await;
        assert_eq!(key, variants[0].0);
        assert!(restored == bytes, "{compression:?}: restored bytes differ");
    }
}

async fn partial_serves_a_missing_segment(c: Ctx) {
    let partial = "000000010000000000000003.partial";
    let bytes = noise(4, 40 << 10);
    let (path, wal) = wal_file(&c.scratch, partial, &bytes);
    c.archive
        .archive_wal(&path, &wal, &codec(Compression::Bzip2))
        .await
        .unwrap();
    let (key, restored) = restore(&c, "000000010000000000000003", true).await;
    assert!(key.ends_with(".partial.bz2"), "{key}");
    assert!(restored == bytes);
    let err = c
        .archive
        .restore_wal(
            &WalName::parse("000000010000000000000003").unwrap(),
            &c.scratch.join("no"),
            false,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::WalNotFound { .. }), "{err}");
}

async fn multipart_above_the_single_put_limit(c: Ctx) {
    // A 32 MiB segment (initdb --wal-segsize 32) that no codec shrinks.
    let bytes = noise(5, 32 << 20);
    let (path, wal) = wal_file(&c.scratch, SEG1, &bytes);
    let outcome = c
        .archive
        .archive_wal(&path, &wal, &codec(Compression::None))
        .await
        .unwrap();
    match outcome {
        ArchiveOutcome::Uploaded { stored, .. } => {
            assert!(stored as usize > SINGLE_PUT_MAX, "{stored} bytes stored")
        }
        other => panic!("{other:?}"),
    }
    let (_, restored) = restore(&c, SEG1, false).await;
    assert!(
        restored == bytes,
        "the multipart object restores to other bytes"
    );
    // And the create-only rule holds for multipart-sized content too.
    let (other, _) = wal_file(&c.scratch, SEG1, &noise(6, 32 << 20));
    let err = c
        .archive
        .archive_wal(&other, &wal, &codec(Compression::None))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict { .. }), "{err}");
}

async fn delete_many_can_be_repeated(c: Ctx) {
    for (i, name) in ["000000010000000000000001", "000000010000000000000002"]
        .iter()
        .enumerate()
    {
        let (path, wal) = wal_file(&c.scratch, name, &noise(20 + i as u64, 8 << 10));
        c.archive
            .archive_wal(&path, &wal, &codec(Compression::Snappy))
            .await
            .unwrap();
    }
    let mut keys: Vec<String> = c
        .archive
        .list_wals()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys.len(), 2);
    keys.push(format!("{}/never-stored", c.archive.layout().wals_prefix()));
    c.archive.delete_many(&keys).await.unwrap();
    assert!(c.archive.list_wals().await.unwrap().is_empty());
    c.archive.delete_many(&keys).await.unwrap();
    assert!(c.archive.list_wals().await.unwrap().is_empty());
}

async fn junk_in_the_wal_folder_is_ignored(c: Ctx) {
    let (path, wal) = wal_file(&c.scratch, SEG1, &noise(7, 8 << 10));
    c.archive
        .archive_wal(&path, &wal, &codec(Compression::Lz4))
        .await
        .unwrap();
    let wals = c.archive.layout().wals_prefix();
    for junk in [
        format!("{wals}/README"),
        format!("{wals}/0000000100000000/notes.txt"),
        format!("{wals}/0000000100000000/000000010000000000000001.tmp"),
        format!("{wals}/0000000100000000/00000001000000000000000G"),
    ] {
        c.archive
            .put_small(&junk, Bytes::from_static(b"junk"), &[])
            .await
            .unwrap();
    }
    let listed = c.archive.list_wals().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].1.name, wal);
    c.archive.check_empty(Some(2)).await.unwrap();
}

async fn empty_archive_check_honours_the_timeline(c: Ctx) {
    c.archive.check_empty(None).await.unwrap();
    let (path, wal) = wal_file(&c.scratch, SEG1, &noise(8, 8 << 10));
    c.archive
        .archive_wal(&path, &wal, &codec(Compression::None))
        .await
        .unwrap();
    let err = c.archive.check_empty(None).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::NotEmpty { count: 1, first, .. } if first == SEG1),
        "{err}"
    );
    // A new timeline may start on an archive holding older timelines only.
    c.archive.check_empty(Some(2)).await.unwrap();
    let (path, wal) = wal_file(&c.scratch, "000000020000000000000001", &noise(9, 8 << 10));
    c.archive
        .archive_wal(&path, &wal, &codec(Compression::None))
        .await
        .unwrap();
    let err = c.archive.check_empty(Some(2)).await.unwrap_err();
    assert!(matches!(err, StorageError::NotEmpty { .. }), "{err}");
}

async fn a_corrupted_object_is_reported_as_corrupt(c: Ctx) {
    let wal = WalName::parse(SEG1).unwrap();
    let key = c.archive.layout().wal_key(&wal, Compression::Gzip);
    c.archive
        .put_small(&key, Bytes::from(noise(10, 4096)), &[])
        .await
        .unwrap();
    let err = c
        .archive
        .restore_wal(&wal, &c.scratch.join("out"), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt { key: k, .. } if *k == key),
        "{err}"
    );
    assert!(
        !c.scratch.join("out").exists(),
        "nothing half-written is left"
    );
}
