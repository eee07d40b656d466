//! Configuration as a library: from what a user wrote to a [`Target`] that opens the
//! archive.
//!
//! Two ways in, as on the command line:
//! - barman's `DEST SERVER` with its cloud flags, the `AWS_*` environment and the
//!   AWS profile files ([`Target::from_barman`]);
//! - an ObjectStore manifest with its Secret references resolved through a
//!   [`SecretSource`] ([`Target::from_object_store`], or step by step with a
//!   [`ManifestDraft`]).
//!
//! Neither reads the process environment: the caller captures it once into an
//! [`Environment`] and passes it in (the CloudNativePG plugin passes an empty one).

mod barman;
mod manifest;
mod secrets;

pub use barman::CloudFlags;
pub use manifest::{load_manifest, ManifestDraft, SecretRequest};
pub use secrets::{DirectorySecrets, MemorySecrets, SecretError, SecretSource};

use crate::store::{AwsEnvironment, AzureEnvironment, GoogleEnvironment, StoreSettings};
use crate::{Archive, StorageError};
use barrelman_core::layout::{Destination, InvalidDestination, InvalidName};
use barrelman_core::objectstore::{ObjectStore, ObjectStoreError};
use barrelman_core::{Classified, ErrorClass};
use std::borrow::Cow;
use std::path::PathBuf;

/// The parts of a process environment the libraries may use, captured once by the
/// program (see the command line's `environment` module) and passed down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// Every `AWS_*` variable: keys, session token, region, endpoint, profile names
    /// and shared-file paths, `AWS_CA_BUNDLE`, role and metadata settings.
    pub aws: AwsEnvironment,
    /// `HOME` (when set and not empty): where `~/.aws/` is.
    pub home: Option<PathBuf>,
    /// `AZURE_STORAGE_CONNECTION_STRING` is set: barman then accepts the path-style
    /// Azure URL of an emulator.
    pub azure_connection_string: bool,
    /// The `AZURE_*` variables (connection string, SAS token, key, identity
    /// settings) and `REQUESTS_CA_BUNDLE`, which the Azure SDK would read.
    pub azure: AzureEnvironment,
    /// `GOOGLE_APPLICATION_CREDENTIALS`, `STORAGE_EMULATOR_HOST` (and `HOME`, for
    /// gcloud's own credentials file): what Google's client libraries would read.
    pub google: GoogleEnvironment,
}

impl Environment {
    /// From (name, value) pairs, e.g. `std::env::vars()`: keeps what the libraries use.
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let last = |name: &str| vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
        Self {
            home: last("HOME").filter(|h| !h.is_empty()).map(PathBuf::from),
            azure_connection_string: last("AZURE_STORAGE_CONNECTION_STRING").is_some(),
            aws: AwsEnvironment::from_vars(vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            azure: AzureEnvironment::from_vars(vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            google: GoogleEnvironment::from_vars(
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ),
        }
    }

    /// The CA bundle of the destination's SDK, read: `AWS_CA_BUNDLE` (boto3), or
    /// for Azure `REQUESTS_CA_BUNDLE` (what CloudNativePG sets for it); `None`
    /// when unset or empty.
    pub(crate) fn read_ca_bundle(
        &self,
        dest: &Destination,
    ) -> Result<Option<Vec<u8>>, ConfigError> {
        let variable = match dest.provider {
            // AWS_CA_BUNDLE is boto3's; barman's Google client does not read it, and
            // CloudNativePG applies endpointCA to S3 and Azure only.
            barrelman_core::layout::Provider::Gcs => return Ok(None),
            barrelman_core::layout::Provider::Azure { .. } => "REQUESTS_CA_BUNDLE",
            _ => "AWS_CA_BUNDLE",
        };
        let path = match variable {
            "REQUESTS_CA_BUNDLE" => self.azure.var(variable).filter(|v| !v.is_empty()),
            _ => self.aws.non_empty(variable),
        };
        let Some(path) = path else {
            return Ok(None);
        };
        let path = PathBuf::from(path);
        std::fs::read(&path)
            .map(Some)
            .map_err(|source| ConfigError::CaBundle {
                variable,
                path,
                source,
            })
    }
}

/// A resolved archive location plus the settings that came with it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The bucket (or directory) and key prefix.
    pub destination: Destination,
    /// The server's folder under the destination.
    pub server_name: String,
    /// How to reach the store; WAL objects are written with its encryption.
    pub settings: StoreSettings,
    /// The ObjectStore, when the target came from a manifest.
    pub manifest: Option<ObjectStore>,
    /// Server-side encryption of base backup objects: the manifest's
    /// `data.encryption` (WAL objects use `wal.encryption`, in `settings`); `-e` for
    /// both on the barman command line.
    pub data_encryption: Option<String>,
}

impl Target {
    /// Opens the archive.
    pub fn open(&self) -> Result<Archive, StorageError> {
        Archive::open(&self.destination, &self.server_name, &self.settings)
    }

    /// Opens the archive to write base backups: as [`Target::open`], with the
    /// encryption meant for backup data.
    pub fn open_for_backups(&self) -> Result<Archive, StorageError> {
        let settings = self
            .settings
            .clone()
            .with_encryption(self.data_encryption.clone());
        Archive::open(&self.destination, &self.server_name, &settings)
    }

    /// `URL/server` as shown in messages (and hashed to separate spools).
    pub fn location(&self) -> String {
        format!(
            "{}/{}",
            self.destination.url.trim_end_matches('/'),
            self.server_name
        )
    }
}

/// A configuration that cannot be used. Messages name the flag, file, profile or
/// manifest field, never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The destination URL cannot be parsed.
    #[error(transparent)]
    InvalidDestination(#[from] InvalidDestination),

    /// The manifest's `destinationPath` cannot be parsed.
    #[error("in spec.configuration.destinationPath")]
    ManifestDestination(#[source] InvalidDestination),

    /// The server name or destination path cannot be stored as barman stores it.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),

    /// The destination's provider is not the one `--cloud-provider` names.
    #[error("the destination URL '{url}' does not match --cloud-provider {wanted}")]
    ProviderMismatch {
        /// The destination URL.
        url: String,
        /// The `--cloud-provider` value (or its default, `aws-s3`).
        wanted: String,
    },

    /// The destination's provider cannot be reached by this build.
    #[error(
        "{url}: {provider} is not supported yet by this build; use an s3://, gs:// or file:// destination"
    )]
    Unsupported {
        /// The destination URL.
        url: String,
        /// The provider's name.
        provider: &'static str,
    },

    /// `--read-timeout` is zero or negative.
    #[error("invalid --read-timeout {seconds}: it must be a positive number of seconds")]
    ReadTimeout {
        /// The value given.
        seconds: f64,
    },

    /// `--sse-kms-key-id` without `-e aws:kms`.
    #[error("--sse-kms-key-id can only be used together with -e aws:kms")]
    KmsKeyWithoutKms,

    /// An `--addressing-style` barman does not know.
    #[error("invalid --addressing-style '{value}': use auto, virtual or path")]
    AddressingStyle {
        /// The value given.
        value: String,
    },

    /// A `--credential` barman does not know.
    #[error("invalid --credential '{value}': use azure-cli, managed-identity or default")]
    AzureCredential {
        /// The value given.
        value: String,
    },

    /// The AWS profile asked for is in neither shared file.
    #[error(
        "the AWS profile '{name}' is in neither {} nor {}; add it there, or fix --aws-profile / AWS_PROFILE",
        credentials_file.display(),
        config_file.display()
    )]
    ProfileMissing {
        /// The profile's name.
        name: String,
        /// The credentials file looked in.
        credentials_file: PathBuf,
        /// The config file looked in.
        config_file: PathBuf,
    },

    /// The profile named with `--aws-profile` has no static keys.
    #[error(
        "the AWS profile '{name}' has no aws_access_key_id and aws_secret_access_key; \
         barrelman reads static keys from profiles (not roles, SSO or credential_process)"
    )]
    ProfileWithoutKeys {
        /// The profile's name.
        name: String,
    },

    /// The file `AWS_CA_BUNDLE` (`REQUESTS_CA_BUNDLE` for Azure) names cannot be read.
    #[error("cannot read the CA bundle {variable}={}", path.display())]
    CaBundle {
        /// The variable naming it.
        variable: &'static str,
        /// The file named.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },

    /// The manifest file cannot be read.
    #[error("cannot read the ObjectStore manifest {}", path.display())]
    ManifestUnreadable {
        /// The manifest file.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },

    /// The manifest file is not a usable ObjectStore.
    #[error("in {}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ObjectStoreError,
    },

    /// A Secret value the manifest refers to cannot be had.
    #[error(transparent)]
    Secret(#[from] SecretError),

    /// Only one of the two S3 key references is given.
    #[error(
        "spec.configuration.s3Credentials has {present} but no {missing}; add the {missing} reference"
    )]
    HalfCredentials {
        /// The reference given.
        present: &'static str,
        /// The reference missing.
        missing: &'static str,
    },
}

impl Classified for ConfigError {
    /// A name that cannot be stored is the caller's input to change (barman's exit
    /// 3); the rest makes the store unusable as configured (barman's general error,
    /// exit 4).
    fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidName(_) => ErrorClass::Input,
            Self::Secret(e) => e.class(),
            _ => ErrorClass::Denied,
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        let fix = match self {
            Self::InvalidDestination(_) | Self::ManifestDestination(_) => {
                "give a URL such as s3://bucket/path, \
                 https://ACCOUNT.blob.core.windows.net/CONTAINER/path or file:///dir"
            }
            Self::InvalidName(_) => "choose a server name and path that object keys can hold",
            Self::ProviderMismatch { .. } => {
                "give the --cloud-provider of the URL's scheme (s3:// aws-s3, gs:// \
                 google-cloud-storage, azure:// azure-blob-storage)"
            }
            Self::Unsupported { .. } => "use an s3://, gs:// or file:// destination",
            Self::ReadTimeout { .. } => "give --read-timeout a positive number of seconds",
            Self::KmsKeyWithoutKms => "add -e aws:kms, or drop --sse-kms-key-id",
            Self::AddressingStyle { .. } => "use --addressing-style auto, virtual or path",
            Self::AzureCredential { .. } => {
                "use --credential azure-cli, managed-identity or default"
            }
            Self::ProfileMissing { .. } => {
                "add the profile to the AWS shared files, or fix --aws-profile / AWS_PROFILE"
            }
            Self::ProfileWithoutKeys { .. } => {
                "put aws_access_key_id and aws_secret_access_key in the profile, or set \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            }
            Self::CaBundle { .. } => {
                "point AWS_CA_BUNDLE (REQUESTS_CA_BUNDLE for Azure) at a readable PEM file, or \
                 unset it"
            }
            Self::ManifestUnreadable { .. } | Self::Manifest { .. } => {
                "fix the ObjectStore manifest"
            }
            Self::Secret(e) => return e.hint(),
            Self::HalfCredentials { missing, .. } => {
                return Some(Cow::Owned(format!(
                    "add the {missing} reference to spec.configuration.s3Credentials"
                )))
            }
        };
        Some(Cow::Borrowed(fix))
    }
}

/// The AWS shared files, as boto3 finds them: `var`, else `~/.aws/<default_name>`.
fn aws_file(env: &Environment, var: &str, default_name: &str) -> PathBuf {
    env.aws
        .non_empty(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            env.home
                .clone()
                .unwrap_or_default()
                .join(".aws")
                .join(default_name)
        })
}

/// Refuses a server name or destination path whose keys could not be stored raw,
/// as barman writes them, before anything is read or written.
fn check_names(dest: &Destination, server: &str) -> Result<(), ConfigError> {
    barrelman_core::layout::ServerLayout::checked(&dest.path, server)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_environment_keeps_what_the_libraries_use() {
        let env = Environment::from_vars([
            ("HOME", "/home/pg"),
            ("AWS_REGION", "eu-west-1"),
            ("PATH", "/bin"),
            ("AZURE_STORAGE_CONNECTION_STRING", ""),
        ]);
        assert_eq!(env.home.as_deref(), Some(Path::new("/home/pg")));
        assert_eq!(env.aws.var("AWS_REGION"), Some("eu-west-1"));
        assert_eq!(env.aws.var("PATH"), None);
        assert!(env.azure_connection_string);
        assert_eq!(Environment::from_vars([("HOME", "")]).home, None);
    }

    #[test]
    fn classes_keep_barmans_exit_codes() {
        let name = InvalidName {
            what: "server name",
            value: "a/..".into(),
            reason: "r",
        };
        assert_eq!(ConfigError::from(name).class(), ErrorClass::Input);
        assert_eq!(ConfigError::KmsKeyWithoutKms.class(), ErrorClass::Denied);
        let half = ConfigError::HalfCredentials {
            present: "accessKeyId",
            missing: "secretAccessKey",
        };
        assert_eq!(half.class(), ErrorClass::Denied);
        assert!(half.hint().unwrap().contains("secretAccessKey"));
    }
}
