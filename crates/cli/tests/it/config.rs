//! Configuration that cannot be used is refused before any request, with barman's
//! exit codes (3 for a name object keys cannot hold, 4 for any other unusable
//! setting) and one sentence naming the flag, file, profile or manifest field. No
//! store is needed: nothing may be contacted.

use super::common::*;
use std::path::Path;
use std::process::{Command, Output};

/// One refused command line: tool, arguments, environment, exit code, message.
type Case<'a> = (
    &'a str,
    &'a [&'a str],
    &'a [(&'a str, &'a str)],
    i32,
    &'a str,
);

/// Runs `program` with `args` in an environment holding only `env`.
fn run_clean(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn unusable_configuration_exits_as_barman_and_names_the_setting() {
    let links = links_dir();
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("000000010000000000000001");
    std::fs::write(&wal, b"x").unwrap();
    let wal = wal.to_str().unwrap();
    let keys = [
        ("AWS_ACCESS_KEY_ID", "AKIDCONFIGTEST"),
        ("AWS_SECRET_ACCESS_KEY", "configtestsecret"),
    ];
    let ca = [("AWS_CA_BUNDLE", "/nonexistent/ca.pem")];
    // Port 9 on loopback: if anything were contacted, the failure would say so.
    let cases: &[Case] = &[
        (
            "barman-cloud-wal-archive",
            &["--read-timeout", "0", "s3://b/p", "srv", wal],
            &keys,
            4,
            "invalid --read-timeout 0: it must be a positive number of seconds",
        ),
        (
            "barman-cloud-wal-archive",
            &["--sse-kms-key-id", "k1", "s3://b/p", "srv", wal],
            &keys,
            4,
            "--sse-kms-key-id can only be used together with -e aws:kms",
        ),
        (
            "barman-cloud-backup-list",
            &[
                "--cloud-provider",
                "google-cloud-storage",
                "s3://b/p",
                "srv",
            ],
            &keys,
            4,
            "the destination URL 's3://b/p' does not match --cloud-provider google-cloud-storage",
        ),
        (
            "barman-cloud-backup-list",
            &[
                "--cloud-provider",
                "google-cloud-storage",
                "gs://b/p",
                "srv",
            ],
            &[("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")],
            4,
            "GOOGLE_APPLICATION_CREDENTIALS names /nonexistent/key.json, which cannot be read",
        ),
        (
            "barman-cloud-backup-list",
            &["--endpoint-url", "http://127.0.0.1:9", "s3://b/p", "srv"],
            &ca,
            4,
            "cannot read the CA bundle AWS_CA_BUNDLE=/nonexistent/ca.pem",
        ),
        (
            "barman-cloud-backup-list",
            &[
                "-P",
                "missing",
                "--endpoint-url",
                "http://127.0.0.1:9",
                "s3://b/p",
                "srv",
            ],
            &[("HOME", "/nonexistent")],
            4,
            "the AWS profile 'missing' is in neither /nonexistent/.aws/credentials nor \
             /nonexistent/.aws/config",
        ),
        (
            "barman-cloud-backup-list",
            &[
                "--cloud-provider",
                "azure-blob-storage",
                "--credential",
                "default",
                "https://acct.blob.core.windows.net/ctr/p",
                "srv",
            ],
            &[
                (
                    "AZURE_FEDERATED_TOKEN_FILE",
                    "/var/run/secrets/azure/tokens/t",
                ),
                ("AZURE_CLIENT_ID", "cid"),
            ],
            4,
            "AZURE_FEDERATED_TOKEN_FILE (workload identity) is set but AZURE_TENANT_ID is not",
        ),
        (
            "barman-cloud-wal-archive",
            &[
                "--cloud-provider",
                "azure-blob-storage",
                "http://127.0.0.1:9/devstoreaccount1/ctr/p",
                "srv",
                wal,
            ],
            &[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=devstoreaccount1;AccountKey=configtestsecret;junk",
            )],
            4,
            "a part of the connection string has no '='",
        ),
        (
            "barman-cloud-backup-list",
            &["--endpoint-url", "http://127.0.0.1:9", "s3://b/p", "a/../b"],
            &keys,
            3,
            "invalid server name",
        ),
    ];
    for (tool, args, env, code, says) in cases {
        let out = run_clean(&links.join(tool), args, env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{tool} {args:?}: {err}");
        assert!(err.contains(says), "{tool} {args:?}: {err}");
        assert!(
            !err.contains("configtestsecret") && !err.contains("AKIDCONFIGTEST"),
            "a secret leaked: {err}"
        );
        assert!(
            !err.contains("127.0.0.1:9"),
            "something was contacted: {err}"
        );
    }
}

#[test]
fn an_object_store_with_half_its_credentials_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("store.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nmetadata:\n  name: s\nspec:\n  \
         configuration:\n    destinationPath: s3://b/p\n    endpointURL: http://127.0.0.1:9\n    \
         s3Credentials:\n      accessKeyId:\n        name: creds\n        key: ID\n",
    )
    .unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(secrets.join("creds")).unwrap();
    std::fs::write(secrets.join("creds/ID"), "AKIDHALFTEST\n").unwrap();
    let wal = dir.path().join("000000010000000000000001");
    std::fs::write(&wal, b"x").unwrap();
    let out = run_clean(
        &barrelman(),
        &[
            "wal-archive",
            "--config",
            manifest.to_str().unwrap(),
            "--server-name",
            "srv",
            "--secrets-dir",
            secrets.to_str().unwrap(),
            wal.to_str().unwrap(),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(
            "spec.configuration.s3Credentials has accessKeyId but no secretAccessKey; add the \
             secretAccessKey reference"
        ),
        "{err}"
    );
    assert!(!err.contains("AKIDHALFTEST"), "a secret leaked: {err}");

    // A manifest that is not an ObjectStore names the file.
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Secret\nspec: {configuration: {destinationPath: s3://b}}\n",
    )
    .unwrap();
    let out = run_clean(
        &barrelman(),
        &[
            "wal-archive",
            "--config",
            manifest.to_str().unwrap(),
            "--server-name",
            "srv",
            wal.to_str().unwrap(),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!(
            "in {}: the manifest is apiVersion 'v1', kind 'Secret'",
            manifest.display()
        )),
        "{err}"
    );
}
