//! The storage library never reads the process environment: `AWS_*` variables that
//! would break every request change nothing unless the caller passes them in an
//! [`Environment`]. (This file holds one test: setting variables in this process
//! affects nothing else.)

use barrelman_core::wal::WalName;
use barrelman_storage::config::{CloudFlags, ConfigError, Environment, Target};
use barrelman_storage::UploadOptions;
use barrelman_testkit::S3Server;

#[test]
fn aws_variables_of_the_process_are_ignored_unless_passed() {
    let s3 = S3Server::start();
    s3.create_bucket("env");
    for (name, value) in [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9"),
        ("AWS_ACCESS_KEY_ID", "AKIDBOGUS"),
        ("AWS_SECRET_ACCESS_KEY", "bogus"),
        ("AWS_SESSION_TOKEN", "bogus"),
        ("AWS_REGION", "bogus-1"),
        ("AWS_DEFAULT_REGION", "bogus-1"),
        ("AWS_SKIP_SIGNATURE", "true"),
        ("AWS_CA_BUNDLE", "/nonexistent/ca.pem"),
        ("AWS_PROFILE", "nonexistent"),
        ("HOME", "/nonexistent"),
    ] {
        std::env::set_var(name, value);
    }

    // The keys only in the environment handed over: they must be the ones used.
    let passed = Environment::from_vars([
        ("AWS_ACCESS_KEY_ID", s3.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.as_str()),
    ]);
    let flags = CloudFlags {
        endpoint_url: Some(s3.endpoint.clone()),
        ..Default::default()
    };
    let target = Target::from_barman("s3://env/p", "srv", &flags, &passed).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("000000010000000000000001");
    let content = b"not a WAL page header, and that is fine".repeat(1000);
    std::fs::write(&wal, &content).unwrap();
    let name = WalName::parse("000000010000000000000001").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let archive = target.open().unwrap();
        archive
            .archive_wal(&wal, &name, &UploadOptions::default())
            .await
            .unwrap();
        let out = dir.path().join("restored");
        archive.restore_wal(&name, &out, false).await.unwrap();
        assert!(std::fs::read(&out).unwrap() == content);
    });

    // Passed in, the same variables do take effect: the CA bundle they name is read.
    let captured = Environment::from_vars(std::env::vars());
    let err = Target::from_barman("s3://env/p", "srv", &flags, &captured).unwrap_err();
    assert!(matches!(err, ConfigError::CaBundle { .. }), "{err}");
}
