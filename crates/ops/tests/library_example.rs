//! The libraries used the way the CloudNativePG plugin uses them: an ObjectStore
//! value and its Secret values in memory, no environment variable and no command
//! line. `ops::wal` archives the first WAL file of a new cluster (the archive must be
//! empty) and restores it, bytes equal.
//!
//! This file holds one test, so clearing this process's `AWS_*` variables affects
//! nothing else.

use barrelman_core::objectstore::ObjectStore;
use barrelman_ops::wal::{self, ArchiveRequest, RequestedWal, RestoreOutcome, RestoreRequest};
use barrelman_storage::config::{Environment, MemorySecrets, Target};
use barrelman_storage::UploadOptions;
use barrelman_testkit::S3Server;

#[test]
fn archive_and_restore_a_wal_from_an_in_memory_object_store() {
    let s3 = S3Server::start();
    s3.create_bucket("example");
    // Nothing may come from AWS_* variables: clear any this process has, and check.
    let aws = |k: &std::ffi::OsStr| k.to_string_lossy().starts_with("AWS_");
    for (name, _) in std::env::vars_os().filter(|(k, _)| aws(k)) {
        std::env::remove_var(name);
    }
    assert!(std::env::vars_os().all(|(k, _)| !aws(&k)));

    let manifest = format!(
        "apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata:
  name: example
spec:
  configuration:
    destinationPath: s3://example/pg
    endpointURL: {}
    s3Credentials:
      accessKeyId: {{name: seaweed, key: ACCESS_KEY_ID}}
      secretAccessKey: {{name: seaweed, key: ACCESS_SECRET_KEY}}
      region: {{name: seaweed, key: REGION}}
    wal:
      compression: zstd
",
        s3.endpoint
    );
    let store = ObjectStore::from_yaml(&manifest).unwrap();
    let secrets = MemorySecrets::new()
        .with("seaweed", "ACCESS_KEY_ID", &s3.access_key)
        .with("seaweed", "ACCESS_SECRET_KEY", &s3.secret_key)
        .with("seaweed", "REGION", &s3.region);

    let dir = tempfile::tempdir().unwrap();
    let wal_path = dir.path().join("000000010000000000000001");
    let content: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&wal_path, &content).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let target = Target::from_object_store(
            store,
            "cluster-example",
            Some(&secrets),
            &Environment::default(),
        )
        .await
        .unwrap();
        let archive = target.open().unwrap();
        let compression = target
            .manifest
            .as_ref()
            .and_then(|m| m.spec.configuration.wal.as_ref())
            .and_then(|w| w.compression.as_deref())
            .map(|c| c.parse().unwrap());
        let request = ArchiveRequest {
            wal_path: wal_path.clone(),
            upload: UploadOptions {
                compression,
                ..Default::default()
            },
            history_tags: None,
            pgdata: None,
            max_parallel: 1,
            spool_dir: None,
            must_be_empty: Some("the cluster is new".into()),
        };
        let outcome = wal::archive(&archive, &request).await.unwrap();
        match &outcome.requested {
            RequestedWal::Uploaded { key, .. } => assert_eq!(
                key,
                "pg/cluster-example/wals/0000000100000000/000000010000000000000001.zst"
            ),
            other => panic!("{other:?}"),
        }
        assert!(outcome.ends_empty_requirement());

        let restored = dir.path().join("RECOVERYXLOG");
        let request = RestoreRequest {
            wal_name: "000000010000000000000001".into(),
            dest: restored.clone(),
            allow_partial: false,
            parallel: 2,
            spool_dir: Some(dir.path().join("spool")),
        };
        match wal::restore(&archive, &request).await.unwrap() {
            RestoreOutcome::Downloaded { key } => assert!(key.ends_with(".zst"), "{key}"),
            other => panic!("{other:?}"),
        }
        assert!(std::fs::read(&restored).unwrap() == content, "bytes differ");
    });
}
