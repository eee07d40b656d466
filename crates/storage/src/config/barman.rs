//! barman's way in: `DEST SERVER`, the cloud flags, the `AWS_*` environment and the
//! AWS profile files, resolved as barman-cloud (boto3) resolves them.

use super::{aws_file, check_names, ConfigError, Environment, Target};
use crate::store::{
    AddressingStyle, AzureCredentialKind, AzureSettings, CommonSettings, GcsSettings,
    ProviderSettings, S3Keys, S3Settings, StoreSettings,
};
use barrelman_core::layout::{Destination, Provider};
use std::time::Duration;

/// Cloud options shared by every barman-cloud tool.
#[derive(Debug, Clone, Default)]
pub struct CloudFlags {
    /// `--cloud-provider`: `aws-s3` (default), `azure-blob-storage` or
    /// `google-cloud-storage`.
    pub cloud_provider: Option<String>,
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
    /// `-P/--aws-profile`.
    pub aws_profile: Option<String>,
    /// `--read-timeout`, seconds.
    pub read_timeout: Option<f64>,
    /// `--addressing-style`: `auto`, `virtual` or `path`.
    pub addressing_style: Option<String>,
    /// `-e/--encryption`.
    pub encryption: Option<String>,
    /// `--sse-kms-key-id`.
    pub sse_kms_key_id: Option<String>,
    /// `--azure-credential` / `--credential`: `azure-cli`, `managed-identity` or
    /// `default`.
    pub azure_credential: Option<String>,
    /// `--encryption-scope` (Azure).
    pub encryption_scope: Option<String>,
    /// `--max-block-size`, bytes (Azure).
    pub max_block_size: Option<u64>,
    /// `--max-concurrency` (Azure).
    pub max_concurrency: Option<usize>,
    /// `--max-single-put-size`, bytes (Azure).
    pub max_single_put_size: Option<u64>,
    /// `--kms-key-name` (GCS): the Cloud KMS key objects are written with.
    pub kms_key_name: Option<String>,
}

impl Target {
    /// From barman-style positionals and flags; credentials from `env` (its
    /// `AWS_*` keys, or the AWS profile it names).
    pub fn from_barman(
        dest: &str,
        server: &str,
        flags: &CloudFlags,
        env: &Environment,
    ) -> Result<Self, ConfigError> {
        let destination = Destination::parse(dest, env.azure_connection_string)?;
        check_provider(&destination, flags.cloud_provider.as_deref())?;
        check_names(&destination, server)?;
        if let Some(seconds) = flags.read_timeout.filter(|t| *t <= 0.0) {
            return Err(ConfigError::ReadTimeout { seconds });
        }
        let mut common = CommonSettings {
            endpoint_url: flags.endpoint_url.clone(),
            read_timeout: flags.read_timeout.map(Duration::from_secs_f64),
            ..Default::default()
        };
        let mut s3 = S3Settings {
            encryption: flags.encryption.clone(),
            sse_kms_key_id: flags.sse_kms_key_id.clone(),
            environment: env.aws.clone(),
            ..Default::default()
        };
        if flags.sse_kms_key_id.is_some() && flags.encryption.as_deref() != Some("aws:kms") {
            return Err(ConfigError::KmsKeyWithoutKms);
        }
        s3.addressing_style = match flags.addressing_style.as_deref() {
            None | Some("auto") => AddressingStyle::Auto,
            Some("virtual") => AddressingStyle::Virtual,
            Some("path") => AddressingStyle::Path,
            Some(other) => {
                return Err(ConfigError::AddressingStyle {
                    value: other.to_string(),
                })
            }
        };
        // AWS profiles are boto3's: Azure and Google have none.
        if destination.provider == Provider::S3 || destination.provider == Provider::Local {
            apply_aws_profile(&mut common, &mut s3, flags.aws_profile.as_deref(), env)?;
        }
        common.ca_pem = env.read_ca_bundle(&destination)?;
        let provider = match destination.provider {
            Provider::S3 => ProviderSettings::S3(s3),
            Provider::Azure { .. } => ProviderSettings::Azure(azure_settings(flags, env)?),
            // Application Default Credentials or the emulator, as barman's
            // google-cloud-storage client finds them. (--kms-key-name is ignored for
            // other providers, as barman ignores it.)
            Provider::Gcs => ProviderSettings::Gcs(GcsSettings {
                kms_key_name: flags.kms_key_name.clone(),
                environment: env.google.clone(),
                ..Default::default()
            }),
            _ => ProviderSettings::default(),
        };
        Ok(Self {
            destination,
            server_name: server.to_string(),
            data_encryption: flags.encryption.clone(),
            settings: StoreSettings { common, provider },
            manifest: None,
        })
    }
}

/// barman's Azure flags, with the `AZURE_*` environment.
fn azure_settings(flags: &CloudFlags, env: &Environment) -> Result<AzureSettings, ConfigError> {
    let credential = match flags.azure_credential.as_deref() {
        None => None,
        Some(v) => {
            Some(
                AzureCredentialKind::parse(v).ok_or_else(|| ConfigError::AzureCredential {
                    value: v.to_string(),
                })?,
            )
        }
    };
    Ok(AzureSettings {
        credential,
        encryption_scope: flags.encryption_scope.clone(),
        max_block_size: flags.max_block_size,
        max_concurrency: flags.max_concurrency,
        max_single_put_size: flags.max_single_put_size,
        environment: env.azure.clone(),
        ..Default::default()
    })
}

/// Refuses a destination whose scheme is not the `--cloud-provider`'s.
fn check_provider(dest: &Destination, flag: Option<&str>) -> Result<(), ConfigError> {
    let wanted = flag.unwrap_or("aws-s3");
    let ok = matches!(
        (&dest.provider, wanted),
        (Provider::Local, _)
            | (Provider::S3, "aws-s3")
            | (Provider::Gcs, "google-cloud-storage")
            | (Provider::Azure { .. }, "azure-blob-storage")
    );
    if !ok {
        return Err(ConfigError::ProviderMismatch {
            url: dest.url.clone(),
            wanted: wanted.to_string(),
        });
    }
    Ok(())
}

/// Credentials, region and endpoint from an AWS profile, as boto3 uses them: an
/// explicit `--aws-profile` replaces the `AWS_*` keys (and must exist); otherwise,
/// when the environment has no keys, the profile `AWS_PROFILE` names (or `default`)
/// supplies them if the files have it. Region and endpoint from the environment or
/// the command line win over the profile's.
fn apply_aws_profile(
    common: &mut CommonSettings,
    s3: &mut S3Settings,
    explicit: Option<&str>,
    env: &Environment,
) -> Result<(), ConfigError> {
    use barrelman_core::awsprofile;
    let aws = &env.aws;
    if explicit.is_none() && aws.non_empty("AWS_ACCESS_KEY_ID").is_some() {
        return Ok(());
    }
    let named = explicit
        .or_else(|| aws.non_empty("AWS_PROFILE"))
        .or_else(|| aws.non_empty("AWS_DEFAULT_PROFILE"))
        .map(String::from);
    let name = named.clone().unwrap_or_else(|| "default".into());
    let credentials_file = aws_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = aws_file(env, "AWS_CONFIG_FILE", "config");
    let credentials = std::fs::read_to_string(&credentials_file).ok();
    let config = std::fs::read_to_string(&config_file).ok();
    let Some(profile) = awsprofile::resolve(&name, credentials.as_deref(), config.as_deref())
    else {
        if named.is_some() {
            return Err(ConfigError::ProfileMissing {
                name,
                credentials_file,
                config_file,
            });
        }
        return Ok(());
    };
    match (&profile.access_key_id, &profile.secret_access_key) {
        (Some(id), Some(secret)) => {
            s3.keys = Some(S3Keys {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: profile.session_token.clone(),
            })
        }
        _ if explicit.is_some() => return Err(ConfigError::ProfileWithoutKeys { name }),
        _ => {}
    }
    if aws.non_empty("AWS_REGION").is_none() && aws.non_empty("AWS_DEFAULT_REGION").is_none() {
        s3.region = s3.region.take().or(profile.region);
    }
    if common.endpoint_url.is_none()
        && aws.non_empty("AWS_ENDPOINT_URL_S3").is_none()
        && aws.non_empty("AWS_ENDPOINT_URL").is_none()
    {
        common.endpoint_url = profile.endpoint_url;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrelman_core::{Classified, ErrorClass};

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::from_vars(pairs.iter().copied())
    }

    #[test]
    fn flags_and_environment_become_s3_settings() {
        let flags = CloudFlags {
            endpoint_url: Some("http://127.0.0.1:9".into()),
            read_timeout: Some(5.0),
            encryption: Some("AES256".into()),
            ..Default::default()
        };
        let e = env(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")]);
        let t = Target::from_barman("s3://bucket/p", "srv", &flags, &e).unwrap();
        assert_eq!(t.location(), "s3://bucket/p/srv");
        assert_eq!(t.settings.read_timeout(), Duration::from_secs(5));
        assert_eq!(t.settings.encryption(), Some("AES256"));
        assert_eq!(t.data_encryption.as_deref(), Some("AES256"));
        let s3 = t.settings.s3_settings().unwrap();
        assert_eq!(s3.environment, e.aws);
        assert!(
            s3.keys.is_none(),
            "keys stay in the environment they came from"
        );

        let local = Target::from_barman("file:///tmp/x", "srv", &flags, &e).unwrap();
        assert!(local.settings.s3_settings().is_none());
    }

    #[test]
    fn gs_and_console_urls_become_gcs_settings_with_the_captured_environment() {
        let flags = CloudFlags {
            cloud_provider: Some("google-cloud-storage".into()),
            kms_key_name: Some("projects/p/locations/l/keyRings/r/cryptoKeys/k".into()),
            ..Default::default()
        };
        let e = env(&[
            ("STORAGE_EMULATOR_HOST", "127.0.0.1:4443"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/k.json"),
            ("AWS_CA_BUNDLE", "/nonexistent/ca.pem"),
        ]);
        for url in [
            "gs://bk/p",
            "https://console.cloud.google.com/storage/browser/bk/p/",
        ] {
            let t = Target::from_barman(url, "srv", &flags, &e).unwrap();
            assert_eq!(
                (t.destination.bucket.as_str(), t.destination.path.as_str()),
                ("bk", "p")
            );
            let ProviderSettings::Gcs(g) = &t.settings.provider else {
                panic!("{url}: not GCS settings")
            };
            assert_eq!(g.kms_key_name, flags.kms_key_name);
            assert!(
                t.settings.common.ca_pem.is_none(),
                "AWS_CA_BUNDLE is boto3's"
            );
            assert_eq!(
                g.environment.emulator_host.as_deref(),
                Some("127.0.0.1:4443")
            );
            assert_eq!(
                g.environment.application_credentials.as_deref(),
                Some(std::path::Path::new("/k.json"))
            );
        }
    }

    #[test]
    fn a_named_profile_is_read_from_the_files_the_environment_names() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        std::fs::write(
            &creds,
            "[backup]\naws_access_key_id = AKIDP\naws_secret_access_key = sp\n",
        )
        .unwrap();
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            "[profile backup]\nregion = eu-central-1\nendpoint_url = http://127.0.0.1:1\n",
        )
        .unwrap();
        let e = env(&[
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_PROFILE", "backup"),
        ]);
        let t = Target::from_barman("s3://b", "srv", &CloudFlags::default(), &e).unwrap();
        let s3 = t.settings.s3_settings().unwrap();
        assert_eq!(s3.keys.as_ref().unwrap().access_key_id, "AKIDP");
        assert_eq!(s3.region.as_deref(), Some("eu-central-1"));
        assert_eq!(
            t.settings.common.endpoint_url.as_deref(),
            Some("http://127.0.0.1:1")
        );

        let flags = CloudFlags {
            aws_profile: Some("nope".into()),
            ..Default::default()
        };
        let err = Target::from_barman("s3://b", "srv", &flags, &e).unwrap_err();
        assert!(matches!(err, ConfigError::ProfileMissing { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::Denied);
    }

    #[test]
    fn azure_flags_and_environment_become_azure_settings() {
        let e = env(&[
            (
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=a;AccountKey=a2V5",
            ),
            ("AWS_PROFILE", "nowhere"),
        ]);
        let flags = CloudFlags {
            cloud_provider: Some("azure-blob-storage".into()),
            azure_credential: Some("managed-identity".into()),
            max_single_put_size: Some(4 << 20),
            max_block_size: Some(2 << 20),
            max_concurrency: Some(8),
            ..Default::default()
        };
        // The emulator form is accepted because the connection string is set; the
        // AWS profile is not looked for.
        let t = Target::from_barman("http://127.0.0.1:1/a/ctr/p", "srv", &flags, &e).unwrap();
        let az = t.settings.azure_settings().unwrap();
        assert_eq!(az.credential, Some(AzureCredentialKind::ManagedIdentity));
        assert!(az
            .environment
            .var("AZURE_STORAGE_CONNECTION_STRING")
            .is_some());
        let tuning = t.settings.wal_upload_tuning();
        assert_eq!(
            (
                tuning.single_put_max,
                tuning.part_size,
                tuning.parts_in_flight
            ),
            (Some(4 << 20), Some(2 << 20), Some(8))
        );
        let err = Target::from_barman(
            "https://a.blob.core.windows.net/ctr",
            "srv",
            &CloudFlags {
                azure_credential: Some("cli".into()),
                ..flags
            },
            &e,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --credential 'cli': use azure-cli, managed-identity or default"
        );
    }

    #[test]
    fn refusals_keep_barmans_words() {
        let e = Environment::default();
        let refuse = |dest: &str, flags: CloudFlags| {
            Target::from_barman(dest, "srv", &flags, &e)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refuse(
                "s3://b",
                CloudFlags {
                    read_timeout: Some(0.0),
                    ..Default::default()
                }
            ),
            "invalid --read-timeout 0: it must be a positive number of seconds"
        );
        assert_eq!(
            refuse(
                "s3://b",
                CloudFlags {
                    sse_kms_key_id: Some("k".into()),
                    ..Default::default()
                }
            ),
            "--sse-kms-key-id can only be used together with -e aws:kms"
        );
        assert_eq!(
            refuse(
                "s3://b",
                CloudFlags {
                    cloud_provider: Some("google-cloud-storage".into()),
                    ..Default::default()
                }
            ),
            "the destination URL 's3://b' does not match --cloud-provider google-cloud-storage"
        );
        let name = Target::from_barman("s3://b", "a/../b", &CloudFlags::default(), &e).unwrap_err();
        assert_eq!(name.class(), ErrorClass::Input);
    }
}
