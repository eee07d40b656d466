//! The GCS JSON API client against fake-gcs-server: what the conformance suite does
//! not reach through the archive (odd names, create-only races, resumable uploads of
//! awkward sizes with parts in flight, aborts, ranges, pagination, copies) and the
//! errors a person sees (missing bucket, unreachable endpoint).
//!
//! One emulator for the whole binary: every check is a step of one test.

use barrelman_core::layout::Destination;
use barrelman_core::wal::WalName;
use barrelman_storage::config::Environment;
use barrelman_storage::store::open_store;
use barrelman_storage::{
    Archive, CommonSettings, GcsSettings, ProviderSettings, StorageError, StoreSettings,
};
use barrelman_testkit::FakeGcsServer;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, TagSet, WriteMultipart,
};
use std::sync::Arc;
use std::time::Duration;

const BUCKET: &str = "gcs-client";

fn settings(env: &[(String, String)], page: Option<usize>) -> StoreSettings {
    StoreSettings {
        common: CommonSettings {
            read_timeout: Some(Duration::from_secs(5)),
            max_retries: Some(2),
            ..Default::default()
        },
        provider: ProviderSettings::Gcs(GcsSettings {
            environment: Environment::from_vars(env.iter().cloned()).google,
            list_page_size: page,
            ..Default::default()
        }),
    }
}

fn store(gcs: &FakeGcsServer, page: Option<usize>) -> Arc<dyn ObjectStore> {
    let dest = Destination::parse(&format!("gs://{BUCKET}"), false).unwrap();
    open_store(&dest, &settings(&gcs.env(), page)).unwrap()
}

/// Bytes that differ by `seed`.
fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn read(s: &Arc<dyn ObjectStore>, name: &str) -> object_store::Result<Vec<u8>> {
    Ok(s.get(&Path::parse(name).unwrap())
        .await?
        .bytes()
        .await?
        .to_vec())
}

const ODD: &[&str] = &[
    "odd/a b/~%#[]é ü/x",
    "odd/pg~1/wals/0000000100000000/000000010000000000000001.gz",
    "odd/plus+and&equals=?/y",
];

async fn odd_names_round_trip(gcs: &FakeGcsServer, s: &Arc<dyn ObjectStore>) {
    for (i, name) in ODD.iter().enumerate() {
        let path = Path::parse(name).unwrap();
        assert_eq!(path.as_ref(), *name);
        s.put(&path, PutPayload::from(data(i as u8, 1000)))
            .await
            .unwrap();
        assert_eq!(read(s, name).await.unwrap(), data(i as u8, 1000), "{name}");
        assert!(
            gcs.object_json(BUCKET, name).is_some(),
            "{name} is not stored under its raw name"
        );
    }
    let mut listed: Vec<String> = s
        .list(Some(&Path::parse("odd").unwrap()))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    let mut want: Vec<String> = ODD.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    let dirs = s
        .list_with_delimiter(Some(&Path::parse("odd").unwrap()))
        .await
        .unwrap();
    let mut prefixes: Vec<String> = dirs.common_prefixes.iter().map(|p| p.to_string()).collect();
    prefixes.sort();
    assert_eq!(prefixes, ["odd/a b", "odd/pg~1", "odd/plus+and&equals=?"]);
    for name in ODD {
        s.delete(&Path::parse(name).unwrap()).await.unwrap();
        assert!(matches!(
            read(s, name).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }
    // Deleting what is gone succeeds, as on S3.
    s.delete(&Path::parse(ODD[0]).unwrap()).await.unwrap();
}

async fn create_only_never_overwrites_even_racing(s: &Arc<dyn ObjectStore>) {
    let path = Path::parse("create/only").unwrap();
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    s.put_opts(&path, PutPayload::from(data(1, 10)), create())
        .await
        .unwrap();
    let again = s
        .put_opts(&path, PutPayload::from(data(2, 10)), create())
        .await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(read(s, "create/only").await.unwrap(), data(1, 10));

    // Eight writers race for one new name: one wins, its bytes stay.
    let race = Path::parse("create/race").unwrap();
    let results = futures::future::join_all((0..8u8).map(|i| {
        let (s, race) = (s.clone(), race.clone());
        async move {
            s.put_opts(&race, PutPayload::from(data(i, 300_000)), create())
                .await
                .map(|_| i)
        }
    }))
    .await;
    let winners: Vec<u8> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(_) | Err(object_store::Error::AlreadyExists { .. }))));
    assert_eq!(
        read(s, "create/race").await.unwrap(),
        data(winners[0], 300_000)
    );
}

async fn resumable_uploads_of_awkward_sizes_arrive_whole(
    gcs: &FakeGcsServer,
    s: &Arc<dyn ObjectStore>,
) {
    const K: usize = 256 << 10;
    for len in [0, 1, K - 1, K, 3 * K + 5, (5 << 20) + 7] {
        let name = format!("resumable/{len}");
        let path = Path::parse(&name).unwrap();
        let mut tags = TagSet::default();
        tags.push("k", "v 1");
        let upload = s
            .put_multipart_opts(
                &path,
                PutMultipartOptions {
                    tags,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        // 100 KiB parts (not a 256 KiB multiple), four in flight.
        let mut w = WriteMultipart::new_with_chunk_size(upload, 100 << 10);
        let content = data(7, len);
        for piece in content.chunks(33_333) {
            w.wait_for_capacity(4).await.unwrap();
            w.put(Bytes::copy_from_slice(piece));
        }
        w.finish().await.unwrap();
        assert_eq!(read(s, &name).await.unwrap(), content, "{len} bytes");
        let json = gcs.object_json(BUCKET, &name).unwrap();
        assert!(json.contains(r#""metadata":{"k":"v 1"}"#), "{json}");
    }
}

async fn an_aborted_upload_leaves_no_object(gcs: &FakeGcsServer, s: &Arc<dyn ObjectStore>) {
    let path = Path::parse("aborted/x").unwrap();
    let mut upload = s.put_multipart(&path).await.unwrap();
    upload
        .put_part(PutPayload::from(data(3, 600 << 10)))
        .await
        .unwrap();
    upload.abort().await.unwrap();
    assert_eq!(gcs.object_json(BUCKET, "aborted/x"), None);
    assert!(matches!(
        read(s, "aborted/x").await,
        Err(object_store::Error::NotFound { .. })
    ));
}

async fn ranges_and_heads(s: &Arc<dyn ObjectStore>) {
    let path = Path::parse("ranges/x").unwrap();
    let content = data(9, 1000);
    s.put(&path, PutPayload::from(content.clone()))
        .await
        .unwrap();
    assert_eq!(s.get_range(&path, 2..10).await.unwrap(), &content[2..10]);
    for (range, want) in [
        (GetRange::Offset(990), &content[990..]),
        (GetRange::Suffix(3), &content[997..]),
        (GetRange::Bounded(0..1000), &content[..]),
    ] {
        let got = s
            .get_opts(
                &path,
                GetOptions {
                    range: Some(range.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], want, "{range:?}");
    }
    let head = s.head(&path).await.unwrap();
    assert_eq!(head.size, 1000);
    assert!(head.e_tag.is_some());
    assert!(matches!(
        s.head(&Path::parse("ranges/none").unwrap()).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

async fn listings_cross_pages(gcs: &FakeGcsServer) {
    let s = store(gcs, Some(3));
    for i in 0..10 {
        let name = format!("paged/{}/o{i:02}", if i == 4 { "sub" } else { "top" });
        s.put(
            &Path::parse(&name).unwrap(),
            PutPayload::from(vec![i as u8]),
        )
        .await
        .unwrap();
    }
    let all: Vec<_> = s
        .list(Some(&Path::parse("paged").unwrap()))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 10);
    let after: Vec<String> = s
        .list_with_offset(
            Some(&Path::parse("paged").unwrap()),
            &Path::parse("paged/top/o05").unwrap(),
        )
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        after,
        [
            "paged/top/o06",
            "paged/top/o07",
            "paged/top/o08",
            "paged/top/o09"
        ]
    );
    let top = s
        .list_with_delimiter(Some(&Path::parse("paged/top").unwrap()))
        .await
        .unwrap();
    assert_eq!(top.objects.len(), 9);
    let dirs = s
        .list_with_delimiter(Some(&Path::parse("paged").unwrap()))
        .await
        .unwrap();
    assert_eq!(dirs.common_prefixes.len(), 2);
}

async fn copies(s: &Arc<dyn ObjectStore>) {
    let from = Path::parse("copy/from ~1").unwrap();
    let to = Path::parse("copy/to ~1").unwrap();
    s.put(&from, PutPayload::from(data(4, 5000))).await.unwrap();
    let create = CopyOptions::new().with_mode(CopyMode::Create);
    s.copy_opts(&from, &to, create.clone()).await.unwrap();
    assert_eq!(read(s, "copy/to ~1").await.unwrap(), data(4, 5000));
    // A create-only copy onto a taken name sends ifGenerationMatch=0, which GCS
    // answers with 412 (AlreadyExists here); fake-gcs-server ignores it on rewrites,
    // so that refusal cannot be shown against the emulator (barrelman copies nothing
    // today).
}

async fn a_missing_bucket_is_named(gcs: &FakeGcsServer) {
    let dest = Destination::parse("gs://no-such-bucket/p", false).unwrap();
    let archive = Archive::open(&dest, "srv", &settings(&gcs.env(), None)).unwrap();
    let err = archive
        .find_variants(&WalName::parse("000000010000000000000001").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::BucketMissing { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the bucket 'no-such-bucket' does not exist at {}; create it or fix the \
             destination path",
            gcs.endpoint
        )
    );
}

async fn an_unreachable_emulator_is_named() {
    let port = barrelman_testkit::free_port();
    let env = [(
        "STORAGE_EMULATOR_HOST".to_string(),
        format!("127.0.0.1:{port}"),
    )];
    let dest = Destination::parse(&format!("gs://{BUCKET}/p"), false).unwrap();
    let archive = Archive::open(&dest, "srv", &settings(&env, None)).unwrap();
    let err = archive
        .find_variants(&WalName::parse("000000010000000000000001").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unreachable { .. }), "{err:?}");
}

#[test]
fn the_json_api_client_against_fake_gcs_server() {
    let gcs = FakeGcsServer::start();
    gcs.create_bucket(BUCKET);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = store(&gcs, None);
        odd_names_round_trip(&gcs, &s).await;
        create_only_never_overwrites_even_racing(&s).await;
        resumable_uploads_of_awkward_sizes_arrive_whole(&gcs, &s).await;
        an_aborted_upload_leaves_no_object(&gcs, &s).await;
        ranges_and_heads(&s).await;
        listings_cross_pages(&gcs).await;
        copies(&s).await;
        a_missing_bucket_is_named(&gcs).await;
        an_unreachable_emulator_is_named().await;
    });
}
