//! The conformance suite: every check runs against every store kind.
//!
//! A check is a backend-agnostic async function over an opened [`Archive`] (each
//! check gets its own server folder, so checks cannot see each other's objects).
//! The checks go through what callers get: the storage crate's `Archive` (its
//! object wrappers, streaming uploads and decoded reads, the WAL calls), the
//! `Arc<dyn ObjectStore>` it hands out (the ranged read), and `ops` (WAL archive
//! and restore, base backup, catalog, verify, retention, restore of a backup)
//! with one real PostgreSQL 15 cluster per backend.
//!
//! Each backend is one test that runs every check and reports each failing
//! check by backend and name.
//!
//! # Adding a provider
//!
//! 1. A constructor `Backend::<provider>()` below: start its emulator (testkit, as
//!    [`S3Server`] for S3), create the bucket or container, and give its
//!    [`StoreSettings`], a destination URL inside that bucket, and a destination on
//!    the same store whose bucket does not exist (the missing-bucket check).
//! 2. One line in `backends!`: `<test name> => Backend::<provider>(),`.
//!
//! Nothing else changes: every check runs on it. A check that cannot hold on a
//! provider is a finding about the provider, not a reason to skip the check.

use barrelman_core::backup_info::{BackupInfo, BackupStatus};
use barrelman_core::compression::ALL_COMPRESSIONS;
use barrelman_core::error::{Classified, ErrorClass};
use barrelman_core::layout::Destination;
use barrelman_core::retention::Policy;
use barrelman_core::wal::WalName;
use barrelman_core::Compression;
use barrelman_ops::backup::{take_backup, BackupOptions};
use barrelman_ops::catalog::{self, TargetChoice};
use barrelman_ops::delete::{delete, DeleteRequest, Selection};
use barrelman_ops::progress::Progress;
use barrelman_ops::restore::{restore_backup, RestoreOptions};
use barrelman_ops::{verify, wal};
use barrelman_postgres::session::{ConnectOptions, Session};
use barrelman_storage::upload::SINGLE_PUT_MAX;
use barrelman_storage::{
    Archive, ArchiveOutcome, AzureKeys, AzureSettings, CommonSettings, GcsSettings,
    ProviderSettings, S3Keys, S3Settings, StorageError, StoreSettings, UploadOptions, UploadPlan,
};
use barrelman_testkit::{AzuriteServer, FakeGcsServer, PgCluster, S3Server};
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::ObjectStoreExt;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

/// Where one backend's archives live, and what keeps that place alive.
struct Backend {
    name: &'static str,
    destination: Destination,
    settings: StoreSettings,
    /// A destination on the same store whose bucket does not exist; `None` where
    /// opening an archive creates its place (a local directory).
    missing_bucket: Option<Destination>,
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
            missing_bucket: None,
            _keep: Box::new(dir),
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
            missing_bucket: Some(Destination::parse("s3://no-such-bucket/suite", false).unwrap()),
            _keep: Box::new(s3),
        }
    }

    /// A bucket on a fake-gcs-server of its own, reached through
    /// `STORAGE_EMULATOR_HOST` (no credentials), as barman reaches it.
    fn fake_gcs() -> Self {
        let gcs = FakeGcsServer::start();
        gcs.create_bucket("conformance");
        let env = barrelman_storage::config::Environment::from_vars(gcs.env());
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
            missing_bucket: Some(Destination::parse("gs://no-such-bucket/suite", false).unwrap()),
            _keep: Box::new(gcs),
        }
    }

    /// A container on an Azurite server of its own, through its connection string
    /// (barman's emulator form of the URL).
    fn azurite() -> Self {
        let az = AzuriteServer::start();
        az.create_container("conformance");
        let settings = StoreSettings::azure(
            CommonSettings::default(),
            AzureSettings {
                keys: AzureKeys {
                    connection_string: Some(az.connection_string()),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        Self {
            name: "Azurite (Azure)",
            destination: Destination::parse(&az.url("conformance/suite"), true).unwrap(),
            settings,
            missing_bucket: Some(
                Destination::parse(&az.url("no-such-container/suite"), true).unwrap(),
            ),
            _keep: Box::new(az),
        }
    }
}

/// What a check gets: an archive of its own, a scratch directory for local files,
/// and the backend's store, to open other archives on it.
struct Ctx {
    archive: Archive,
    scratch: PathBuf,
    destination: Destination,
    settings: StoreSettings,
    missing_bucket: Option<Destination>,
}

type Check = fn(Ctx) -> Pin<Box<dyn Future<Output = ()>>>;

/// Every check, by name: objects, then WAL, then a backup's whole life.
const CHECKS: &[(&str, Check)] = &[
    // Objects, through the storage crate's interface.
    ("put and get round trip", |c| {
        Box::pin(put_and_get_round_trip(c))
    }),
    ("more keys than one listing page", |c| {
        Box::pin(more_keys_than_one_listing_page(c))
    }),
    ("list with a delimiter", |c| {
        Box::pin(list_with_a_delimiter(c))
    }),
    ("delete, and delete of a missing key", |c| {
        Box::pin(delete_and_delete_of_a_missing_key(c))
    }),
    ("create-only put refuses an existing key", |c| {
        Box::pin(create_only_put_refuses_an_existing_key(c))
    }),
    ("concurrent create-only puts: one writer wins", |c| {
        Box::pin(concurrent_create_only_puts_one_writer_wins(c))
    }),
    ("multipart upload above the single-put limit", |c| {
        Box::pin(multipart_upload_above_the_single_put_limit(c))
    }),
    ("ranged read", |c| Box::pin(ranged_read(c))),
    ("a missing object is reported as missing", |c| {
        Box::pin(a_missing_object_is_reported_as_missing(c))
    }),
    ("a missing bucket is named, with the fix", |c| {
        Box::pin(a_missing_bucket_is_named_with_the_fix(c))
    }),
    ("odd key names round-trip and list back identical", |c| {
        Box::pin(odd_key_names_round_trip(c))
    }),
    // WAL, through `Archive`.
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
    // A backup's life, through `ops`, with PostgreSQL 15.
    (
        "base backup, catalog, verify, retention, restore on PostgreSQL",
        |c| Box::pin(backup_life_cycle(c)),
    ),
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
            destination: backend.destination.clone(),
            settings: backend.settings.clone(),
            missing_bucket: backend.missing_bucket.clone(),
        };
        let started = std::time::Instant::now();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(check(ctx))));
        eprintln!(
            "{}: {name}: {} in {:.1} s",
            backend.name,
            if outcome.is_ok() { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
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
    azurite => Backend::azurite(),
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

// ---- object checks -----------------------------------------------------------------

/// A key under this check's own folder.
fn key_in(c: &Ctx, rest: &str) -> String {
    format!("{}/{rest}", c.archive.layout().root())
}

/// The store path of `key`, raw (as the storage crate builds it).
fn obj_path(key: &str) -> ObjPath {
    ObjPath::parse(key).unwrap_or_else(|e| panic!("{key:?} is no store path: {e}"))
}

/// Streams `bytes` up to `key` through the storage crate's upload path (the
/// writer on a blocking thread, as a compressor or tar writer runs it).
async fn stream_up(
    archive: &Archive,
    key: &str,
    plan: UploadPlan,
    bytes: Vec<u8>,
) -> Result<u64, StorageError> {
    let (mut writer, upload) = archive.object_writer(key, plan);
    let producer = tokio::task::spawn_blocking(move || {
        writer.write_all(&bytes)?;
        writer.finish()
    });
    let stored = upload.wait().await;
    let produced = producer.await.unwrap();
    // When the upload fails, the writer fails after it; the upload's error is the one.
    let stored = stored?;
    produced.unwrap_or_else(|e| panic!("the upload of {key} stored, but its writer failed: {e}"));
    Ok(stored)
}

/// Streams `bytes` up as a backup part (5 MiB parts, S3's smallest) and reads them
/// back: the stored size and the bytes are the ones sent.
async fn streamed_round_trip(archive: &Archive, key: &str, bytes: Vec<u8>) {
    let stored = stream_up(
        archive,
        key,
        UploadPlan::backup_part(5 << 20, &[]),
        bytes.clone(),
    )
    .await
    .unwrap();
    assert_eq!(stored, bytes.len() as u64);
    assert!(
        read_back(archive, key).await.unwrap() == bytes,
        "{key} reads back as other bytes"
    );
}

/// The stored bytes of `key`, through the storage crate's one read path.
async fn read_back(archive: &Archive, key: &str) -> Result<Vec<u8>, StorageError> {
    archive
        .decoded(key, Compression::None)
        .read(|decoded| {
            let mut out = Vec::new();
            decoded
                .read_to_end(&mut out)
                .map_err(|e| decoded.corrupt(e))?;
            Ok::<_, StorageError>(out)
        })
        .await
}

/// Every key under `prefix`, in listing order (sorted by the crate).
async fn keys_under(archive: &Archive, prefix: &str) -> Vec<String> {
    archive
        .list_objects(prefix)
        .await
        .unwrap_or_else(|e| panic!("listing {prefix} failed: {e}"))
        .into_iter()
        .map(|o| o.key)
        .collect()
}

async fn put_and_get_round_trip(c: Ctx) {
    let key = key_in(&c, "objects/one");
    let first = noise(30, 100 << 10);
    c.archive
        .put_small(&key, Bytes::from(first.clone()), &[])
        .await
        .unwrap();
    assert!(c.archive.get_small(&key).await.unwrap().unwrap() == first);
    let listed = c
        .archive
        .list_objects(&key_in(&c, "objects"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].key.as_str(), listed[0].size),
        (key.as_str(), 100 << 10)
    );
    // A plain put replaces; the read path sees the new bytes.
    let second = noise(31, 70 << 10);
    c.archive
        .put_small(&key, Bytes::from(second.clone()), &[])
        .await
        .unwrap();
    assert!(read_back(&c.archive, &key).await.unwrap() == second);
    // An empty object, and one streamed up, come back as they went.
    let empty = key_in(&c, "objects/empty");
    c.archive
        .put_small(&empty, Bytes::new(), &[])
        .await
        .unwrap();
    assert_eq!(c.archive.get_small(&empty).await.unwrap().unwrap().len(), 0);
    assert!(read_back(&c.archive, &empty).await.unwrap().is_empty());
    let streamed = key_in(&c, "objects/streamed");
    streamed_round_trip(&c.archive, &streamed, noise(32, (3 << 20) + 17)).await;
}

/// More objects than one page of S3's listing (1000 keys) or delete (1000 keys),
/// each in its own "directory": every key is listed exactly once, every directory
/// too, and one `delete_many` removes them all.
async fn more_keys_than_one_listing_page(c: Ctx) {
    const N: usize = 1100;
    let prefix = key_in(&c, "many");
    let expected: Vec<String> = (0..N).map(|i| format!("{prefix}/d{i:04}/o")).collect();
    let archive = &c.archive;
    let puts: Vec<Result<(), StorageError>> = futures::stream::iter(expected.iter())
        .map(|k| archive.put_small(k, Bytes::from_static(b"x"), &[]))
        .buffer_unordered(32)
        .collect()
        .await;
    for r in puts {
        r.unwrap();
    }
    let listed = keys_under(archive, &prefix).await;
    assert_eq!(
        listed.len(),
        N,
        "listed {} keys for {N} objects",
        listed.len()
    );
    assert!(
        listed == expected,
        "the listing differs from the keys written"
    );
    let dirs = archive.list_dirs(&prefix).await.unwrap();
    let expected_dirs: Vec<String> = (0..N).map(|i| format!("d{i:04}")).collect();
    assert_eq!(dirs.len(), N, "listed {} directories for {N}", dirs.len());
    assert!(dirs == expected_dirs, "the directory listing differs");
    // The ordered listing from an offset (the crate finds a WAL's variants with it).
    // Azurite ignores the `startFrom` object_store's Azure client sends and lists from
    // the start; the crate's scan skips keys before the offset itself, so only keys
    // after it are compared here (on S3 and GCS the store already skips them).
    let offset = expected[499].clone();
    let after: Vec<String> = archive
        .store()
        .list_with_offset(Some(&obj_path(&prefix)), &obj_path(&offset))
        .map(|m| m.unwrap().location.to_string())
        .filter(|k| std::future::ready(*k > offset))
        .collect::<Vec<_>>()
        .await;
    let mut after_sorted = after.clone();
    after_sorted.sort();
    assert_eq!(
        after.len(),
        N - 500,
        "listed {} keys after the offset",
        after.len()
    );
    assert!(
        after_sorted == expected[500..],
        "the listing after the offset differs"
    );
    archive.delete_many(&expected).await.unwrap();
    let left = keys_under(archive, &prefix).await;
    assert!(
        left.is_empty(),
        "{} objects left after delete_many",
        left.len()
    );
}

/// A delimiter listing names the "directories" directly under a prefix and the
/// objects directly in it, and a prefix is a whole path segment: `d` never lists
/// `dx/...`.
async fn list_with_a_delimiter(c: Ctx) {
    let d = key_in(&c, "tree/d");
    let sibling = key_in(&c, "tree/dx/h");
    for key in [
        format!("{d}/a"),
        format!("{d}/b/c"),
        format!("{d}/b/d"),
        format!("{d}/e/f/g"),
        sibling,
    ] {
        c.archive
            .put_small(&key, Bytes::from_static(b"t"), &[])
            .await
            .unwrap();
    }
    assert_eq!(c.archive.list_dirs(&d).await.unwrap(), ["b", "e"]);
    let listing = c
        .archive
        .store()
        .list_with_delimiter(Some(&obj_path(&d)))
        .await
        .unwrap();
    let objects: Vec<String> = listing
        .objects
        .iter()
        .map(|o| o.location.to_string())
        .collect();
    assert_eq!(objects, [format!("{d}/a")]);
    assert_eq!(
        keys_under(&c.archive, &d).await,
        [
            format!("{d}/a"),
            format!("{d}/b/c"),
            format!("{d}/b/d"),
            format!("{d}/e/f/g")
        ]
    );
}

async fn delete_and_delete_of_a_missing_key(c: Ctx) {
    let key = key_in(&c, "objects/doomed");
    let stays = key_in(&c, "objects/stays");
    for k in [&key, &stays] {
        c.archive
            .put_small(k, Bytes::from_static(b"bytes"), &[])
            .await
            .unwrap();
    }
    c.archive.delete_object(&key).await.unwrap();
    assert_eq!(c.archive.get_small(&key).await.unwrap(), None);
    assert_eq!(
        keys_under(&c.archive, &key_in(&c, "objects")).await,
        std::slice::from_ref(&stays)
    );
    // Again, and a key that never existed: not errors, so a cut run can be repeated.
    c.archive.delete_object(&key).await.unwrap();
    c.archive
        .delete_many(&[key.clone(), key_in(&c, "objects/never")])
        .await
        .unwrap();
    assert_eq!(
        keys_under(&c.archive, &key_in(&c, "objects")).await,
        [stays]
    );
}

async fn create_only_put_refuses_an_existing_key(c: Ctx) {
    let key = key_in(&c, "objects/claimed");
    assert!(c
        .archive
        .put_small_create(&key, Bytes::from_static(b"first"), &[])
        .await
        .unwrap());
    assert!(!c
        .archive
        .put_small_create(&key, Bytes::from_static(b"second"), &[])
        .await
        .unwrap());
    // The streaming path refuses too, with the storage crate's conflict.
    let err = stream_up(&c.archive, &key, UploadPlan::wal(&[]), noise(33, 64 << 10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Conflict { key: k } if *k == key),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Conflict);
    assert_eq!(
        c.archive.get_small(&key).await.unwrap().unwrap(),
        Bytes::from_static(b"first"),
        "the first writer's bytes stay"
    );
    // A new key is created by the same streaming path.
    let fresh = key_in(&c, "objects/fresh");
    let bytes = noise(34, 64 << 10);
    stream_up(&c.archive, &fresh, UploadPlan::wal(&[]), bytes.clone())
        .await
        .unwrap();
    assert!(read_back(&c.archive, &fresh).await.unwrap() == bytes);
}

/// Writers racing to create one key (backups claiming an id, WAL uploads): exactly
/// one is told it created it, and the key holds that writer's bytes.
/// (Kept small: SeaweedFS makes the losers of such a race wait whole seconds.)
async fn concurrent_create_only_puts_one_writer_wins(c: Ctx) {
    for round in 0..2u64 {
        let key = key_in(&c, &format!("objects/raced-{round}"));
        let archive = &c.archive;
        let outcomes = futures::future::join_all((0..4u64).map(|w| {
            let key = key.clone();
            async move {
                let bytes = noise(round * 100 + w, 4 << 10);
                let won = archive
                    .put_small_create(&key, Bytes::from(bytes.clone()), &[])
                    .await
                    .unwrap_or_else(|e| panic!("writer {w}: {e}"));
                (won, bytes)
            }
        }))
        .await;
        let winners: Vec<&Vec<u8>> = outcomes
            .iter()
            .filter(|(won, _)| *won)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} writers won",
            winners.len()
        );
        let stored = archive.get_small(&key).await.unwrap().unwrap();
        assert!(
            stored[..] == winners[0][..],
            "round {round}: the key holds another writer's bytes than the winner's"
        );
    }
}

/// A backup part's upload: above its single-put limit it goes up in parts (5 MiB,
/// S3's smallest), the last one short.
async fn multipart_upload_above_the_single_put_limit(c: Ctx) {
    let key = key_in(&c, "objects/parts");
    let bytes = noise(35, (11 << 20) + 5);
    streamed_round_trip(&c.archive, &key, bytes.clone()).await;
    let listed = c
        .archive
        .list_objects(&key_in(&c, "objects"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].size, bytes.len() as u64);
}

async fn ranged_read(c: Ctx) {
    let key = key_in(&c, "objects/ranged");
    let bytes = noise(36, 1 << 20);
    c.archive
        .put_small(&key, Bytes::from(bytes.clone()), &[])
        .await
        .unwrap();
    let store = c.archive.store();
    let len = bytes.len() as u64;
    for range in [0..1, 1000..5000, len - 4096..len] {
        let got = store
            .get_range(&obj_path(&key), range.clone())
            .await
            .unwrap();
        assert!(
            got[..] == bytes[range.start as usize..range.end as usize],
            "range {range:?} differs"
        );
    }
    let several = store
        .get_ranges(&obj_path(&key), &[10..20, 300_000..300_100])
        .await
        .unwrap();
    assert!(several[0][..] == bytes[10..20] && several[1][..] == bytes[300_000..300_100]);
}

async fn a_missing_object_is_reported_as_missing(c: Ctx) {
    let key = key_in(&c, "objects/never-stored");
    assert_eq!(c.archive.get_small(&key).await.unwrap(), None);
    let err = read_back(&c.archive, &key).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err:?}");
    assert!(err.to_string().contains(&key), "{err}");
    let err = c
        .archive
        .restore_wal(&WalName::parse(SEG1).unwrap(), &c.scratch.join("x"), false)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::WalNotFound { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::NotFound);
    assert!(keys_under(&c.archive, &key_in(&c, "nothing"))
        .await
        .is_empty());
    assert!(c
        .archive
        .list_dirs(&key_in(&c, "nothing"))
        .await
        .unwrap()
        .is_empty());
}

/// What the command line prints when the bucket is missing: the bucket named, and
/// what to do. (A local directory is created on open: it has no missing bucket.)
async fn a_missing_bucket_is_named_with_the_fix(c: Ctx) {
    let Some(dest) = &c.missing_bucket else {
        return;
    };
    let archive = Archive::open(dest, "srv", &c.settings).unwrap();
    let probed = archive.probe().await.unwrap_err();
    let put = archive
        .put_small("srv/x", Bytes::from_static(b"x"), &[])
        .await
        .unwrap_err();
    let (path, wal) = wal_file(&c.scratch, SEG1, &noise(37, 8 << 10));
    let archived = archive
        .archive_wal(&path, &wal, &codec(Compression::Gzip))
        .await
        .unwrap_err();
    for err in [probed, put, archived] {
        assert!(
            matches!(&err, StorageError::BucketMissing { bucket, .. } if *bucket == dest.bucket),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&format!("'{}'", dest.bucket)), "{text}");
        assert!(text.contains("create it"), "{text}");
        assert!(err.hint().is_some_and(|h| h.contains("create the bucket")));
    }
    // No bucket means nothing was ever archived there: a new server may start.
    archive.check_empty(None).await.unwrap();
}

/// Keys with spaces, `~ % # [ ]` and non-ASCII are stored raw (as barman writes
/// them), list back identical, and a server with such a name archives and restores.
async fn odd_key_names_round_trip(c: Ctx) {
    let prefix = key_in(&c, "odd");
    let mut keys: Vec<String> = [
        "with space/a b",
        "tilde~/x~y",
        "percent%20/%41%",
        "hash#/#x#",
        "brackets[1]/[a]",
        "non-ascii é/ü 漢字",
        "all ~%#[]é/o",
    ]
    .iter()
    .map(|k| format!("{prefix}/{k}"))
    .collect();
    keys.sort();
    for (i, key) in keys.iter().enumerate() {
        c.archive
            .put_small(key, Bytes::from(noise(40 + i as u64, 1000)), &[])
            .await
            .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
    }
    assert_eq!(keys_under(&c.archive, &prefix).await, keys);
    for (i, key) in keys.iter().enumerate() {
        let got = c.archive.get_small(key).await.unwrap();
        assert!(
            got.as_deref() == Some(&noise(40 + i as u64, 1000)[..]),
            "{key:?} reads back as other bytes"
        );
    }
    let server = "pg ~%#[]é";
    let odd = Archive::open(&c.destination, server, &c.settings).unwrap();
    let bytes = noise(50, 16 << 10);
    let (path, wal) = wal_file(&c.scratch, SEG1, &bytes);
    odd.archive_wal(&path, &wal, &codec(Compression::Gzip))
        .await
        .unwrap();
    let listed = odd.list_wals().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].0, odd.layout().wal_key(&wal, Compression::Gzip));
    assert!(
        listed[0].0.contains(&format!("{server}/wals/")),
        "{}",
        listed[0].0
    );
    let out = c.scratch.join("odd-restored");
    odd.restore_wal(&wal, &out, false).await.unwrap();
    assert!(std::fs::read(&out).unwrap() == bytes);
}

// ---- a backup's life, with PostgreSQL ----------------------------------------------

/// Stands in for PostgreSQL's archiver: every WAL file PostgreSQL copied to
/// `stage` (its `archive_command` renames each into place whole) goes through
/// `ops::wal::archive` and is then removed.
async fn archive_staged(archive: &Archive, stage: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(stage)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".tmp"))
        .collect();
    names.sort();
    for name in names {
        let path = stage.join(&name);
        let req = wal::ArchiveRequest {
            wal_path: path.clone(),
            upload: codec(Compression::Zstd),
            history_tags: None,
            pgdata: None,
            max_parallel: 1,
            spool_dir: None,
            must_be_empty: None,
        };
        wal::archive(archive, &req)
            .await
            .unwrap_or_else(|e| panic!("archiving {name} failed: {e}"));
        std::fs::remove_file(&path).unwrap();
    }
}

/// A backup of the server behind `session`, while the staged WAL is archived (the
/// backup waits for its last segment to reach the archive).
async fn backup(
    archive: &Archive,
    session: &Session,
    stage: &Path,
    opts: &BackupOptions,
) -> BackupInfo {
    let archiver = async {
        loop {
            archive_staged(archive, stage).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let progress = Progress::new();
    let info = tokio::select! {
        taken = take_backup(archive, session, opts, &progress) => {
            taken.unwrap_or_else(|e| panic!("the backup failed: {e}"))
        }
        () = archiver => unreachable!(),
    };
    archive_staged(archive, stage).await;
    info
}

/// One cluster: two backups (gzip in several parts, then uncompressed in a multipart
/// upload) with rows between them; the catalog lists both DONE; verify passes;
/// `REDUNDANCY 1` removes the first with the WAL only it needs; the second restores
/// (its WAL through `ops::wal::restore`) and PostgreSQL starts on it with every row.
async fn backup_life_cycle(c: Ctx) {
    let archive = &c.archive;
    // The archiver runs in the data directory; `../stage` is the cluster's own.
    let pg = PgCluster::init(&[
        "archive_mode = on",
        "archive_command = 'cp %p ../stage/%f.tmp && mv ../stage/%f.tmp ../stage/%f'",
    ]);
    let stage = pg.make_dir("stage");
    pg.start();
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    let session = Session::connect(&ConnectOptions {
        host: Some(pg.socket_dir.display().to_string()),
        port: Some(pg.port),
        user: Some("postgres".into()),
        dbname: Some("postgres".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let opts = BackupOptions {
        immediate_checkpoint: true,
        wal_wait: Duration::from_secs(60),
        ..Default::default()
    };
    let first = backup(
        archive,
        &session,
        &stage,
        &BackupOptions {
            compression: Compression::Gzip,
            max_archive_size: 1 << 20,
            ..opts.clone()
        },
    )
    .await;
    pg.psql("create table t as select g from generate_series(1, 1000) g");
    let second = backup(archive, &session, &stage, &opts).await;
    drop(session);
    pg.stop();
    archive_staged(archive, &stage).await;

    let first_parts = first.parts.as_ref().map_or(0, |p| p.parts.len());
    assert!(first_parts > 1, "the gzip backup has {first_parts} part(s)");
    let (listed, unreadable) = catalog::load(archive).await.unwrap();
    assert!(unreadable.is_empty(), "{unreadable:?}");
    let ids: Vec<&str> = listed.iter().map(|b| b.backup_id.as_str()).collect();
    assert_eq!(ids, [first.backup_id.as_str(), second.backup_id.as_str()]);
    for b in &listed {
        assert_eq!(b.status, BackupStatus::Done, "{}", b.backup_id);
        assert!(b.begin_wal.is_some() && b.end_wal.is_some(), "{b:?}");
    }
    let report = verify::verify(archive, None, true).await.unwrap();
    assert_eq!(report.backups.len(), 2);
    for b in &report.backups {
        assert!(b.problems.is_empty(), "{}: {:?}", b.backup_id, b.problems);
    }
    assert!(report.differing_wal.is_empty());

    // Retention: the first backup and the WAL before the second go, nothing else.
    let wals_before = archive.list_wals().await.unwrap();
    let redundancy_1 = DeleteRequest {
        selection: Selection::Policy(Policy::Redundancy(1)),
        minimum_redundancy: 0,
        dry_run: false,
        now: chrono::Utc::now().fixed_offset(),
        force: false,
        batch_size: None,
    };
    // A hand-edited bucket first: a damaged backup.info makes the catalog unreadable,
    // and a policy deletes nothing over a catalog it cannot read whole.
    let damaged = archive.layout().backup_info_key("20200101T000000");
    archive
        .put_small(
            &damaged,
            Bytes::from_static(b"\xff\xfe not a backup.info"),
            &[],
        )
        .await
        .unwrap();
    let (_, unreadable) = catalog::load(archive).await.unwrap();
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    let refused = delete(archive, &redundancy_1).await.unwrap_err();
    assert!(
        matches!(refused, barrelman_ops::delete::DeleteError::Unreadable(_)),
        "{refused}"
    );
    assert_eq!(archive.list_wals().await.unwrap().len(), wals_before.len());
    assert_eq!(catalog::load(archive).await.unwrap().0.len(), 2);
    archive.delete_object(&damaged).await.unwrap();
    let deleted = delete(archive, &redundancy_1).await.unwrap();
    let gone: Vec<&str> = deleted
        .deletions
        .iter()
        .map(|d| d.backup_id.as_str())
        .collect();
    assert_eq!(gone, [first.backup_id.as_str()]);
    let (listed, _) = catalog::load(archive).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].backup_id, second.backup_id);
    assert!(
        keys_under(archive, &archive.layout().backup_dir(&first.backup_id))
            .await
            .is_empty()
    );
    let begin = second.begin_wal.clone().unwrap();
    let end = second.end_wal.clone().unwrap();
    let wals_after = archive.list_wals().await.unwrap();
    for (key, stored) in &wals_before {
        let name = stored.name.to_string();
        let kept = wals_after.iter().any(|(k, _)| k == key);
        // Segments before the second backup's first one go; from it on, they stay.
        let segment = stored.name.kind() == barrelman_core::wal::WalKind::Segment;
        if segment && name < begin {
            assert!(!kept, "{key} outlived retention");
        } else if segment {
            assert!(kept, "{key} was deleted but the kept backup needs it");
        }
    }
    let report = verify::verify(archive, None, false).await.unwrap();
    assert!(
        report.backups.iter().all(|b| b.problems.is_empty()),
        "{:?}",
        report.backups
    );

    // Restore what remains, with its WAL, and start PostgreSQL on it.
    let dest = pg.make_dir("restored");
    let restored = restore_backup(
        archive,
        &RestoreOptions {
            backup: second.backup_id.clone(),
            target: TargetChoice::default(),
            destination: dest.clone(),
            tablespace_map: Vec::new(),
            jobs: 2,
        },
        &Progress::new(),
    )
    .await
    .unwrap();
    assert_eq!(restored.backup_id, second.backup_id);
    let mut needed: Vec<String> = wals_after
        .iter()
        .filter(|(_, s)| s.name.kind() == barrelman_core::wal::WalKind::Segment)
        .map(|(_, s)| s.name.to_string())
        .filter(|n| *n >= begin && *n <= end)
        .collect();
    needed.sort();
    assert!(
        needed.first() == Some(&begin) && needed.last() == Some(&end),
        "{needed:?}"
    );
    for name in &needed {
        let outcome = wal::restore(
            archive,
            &wal::RestoreRequest {
                wal_name: name.clone(),
                dest: dest.join("pg_wal").join(name),
                allow_partial: false,
                parallel: 1,
                spool_dir: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("restoring WAL {name} failed: {e}"));
        assert!(
            matches!(outcome, wal::RestoreOutcome::Downloaded { .. }),
            "{outcome:?}"
        );
    }
    let copy = PgCluster::from_datadir(dest, &["archive_mode = off"]);
    copy.start();
    assert_eq!(copy.psql("select count(*) from pgbench_accounts"), "100000");
    assert_eq!(copy.psql("select count(*), sum(g) from t"), "1000|500500");
    copy.stop();
}
