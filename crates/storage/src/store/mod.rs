//! Opening the object store behind a destination URL.
//!
//! Callers get an [`Archive`](crate::Archive) and never see which provider is
//! behind it. [`StoreSettings`] holds everything needed to reach it: the options
//! every provider honours ([`CommonSettings`]) and one variant per provider
//! ([`ProviderSettings`]): S3 (and S3-compatible stores) and a local directory
//! today; Azure and GCS become new variants and new modules beside [`s3`] and
//! [`local`], without touching callers.
//!
//! Nothing here reads the process environment: what the AWS SDKs would take from
//! `AWS_*` variables arrives as an [`AwsEnvironment`] the caller captured.

pub mod azure;
pub mod gcs;
pub mod local;
pub mod s3;

use crate::StorageError;
use barrelman_core::layout::{Destination, Provider};
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

pub use azure::{AzureCredentialKind, AzureEnvironment, AzureKeys, AzureSettings};
pub use gcs::{GcsSettings, GoogleEnvironment, ServiceAccountKey};
pub use local::LocalSettings;
pub use s3::{AddressingStyle, AwsEnvironment, S3Keys, S3Settings};

/// barman's (botocore's) default `--read-timeout`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one failed request is retried at most (less with a shorter read timeout).
const REQUEST_RETRY_LIMIT: Duration = Duration::from_secs(20);
/// The longest a TCP (and TLS) connection set-up may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach a store: the options every provider honours, and the provider's own.
#[derive(Debug, Clone, Default)]
pub struct StoreSettings {
    /// Endpoint, timeouts, CA bundle, retries.
    pub common: CommonSettings,
    /// The provider-specific part; it must match the destination's provider.
    pub provider: ProviderSettings,
}

/// Options that mean the same for every provider.
#[derive(Debug, Clone, Default)]
pub struct CommonSettings {
    /// `--endpoint-url` / `endpointURL`: a compatible endpoint instead of the
    /// provider's own.
    pub endpoint_url: Option<String>,
    /// `--read-timeout`, seconds without data before a request fails and is retried.
    pub read_timeout: Option<Duration>,
    /// PEM bytes of a CA bundle to trust (from `AWS_CA_BUNDLE` or the ObjectStore's
    /// `endpointCA`), instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// How many times a failed request is retried (transient failures only).
    pub max_retries: Option<usize>,
}

/// The provider-specific settings. New providers are new variants.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProviderSettings {
    /// Amazon S3 or an S3-compatible store.
    S3(S3Settings),
    /// A directory on a local file system (`file://`).
    Local(LocalSettings),
    /// Azure Blob Storage (or an emulator reached with a connection string).
    Azure(AzureSettings),
    /// Google Cloud Storage (`gs://`), through its JSON API.
    Gcs(GcsSettings),
}

impl Default for ProviderSettings {
    /// A local directory: the one provider that needs no setting.
    fn default() -> Self {
        Self::Local(LocalSettings::default())
    }
}

impl CommonSettings {
    /// `--read-timeout`, else barman's default of 60 s. The HTTP client fails a
    /// request whose answer has not begun within it, or whose body stops for as long.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT)
    }

    /// The longest one call may take, retries included: three read timeouts (3 min
    /// by default). That is room for one request to time out and its retry to
    /// succeed, with the pauses between tries, while a store that accepts
    /// connections and never answers ends the call in bounded time, so PostgreSQL's
    /// archiver or recovery retries instead of hanging.
    pub fn call_deadline(&self) -> Duration {
        self.read_timeout() * 3
    }

    /// The HTTP client's options every provider shares: connect and read
    /// timeouts (no overall timeout: large parts take long), and the CA bundle.
    pub(crate) fn client_options(&self) -> Result<ClientOptions, StorageError> {
        s3::install_crypto_provider();
        let mut client = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT.min(self.read_timeout()))
            .with_timeout_disabled()
            .with_read_timeout(self.read_timeout());
        if let Some(pem) = &self.ca_pem {
            let certs = object_store::Certificate::from_pem_bundle(pem)
                .map_err(|e| StorageError::Config(format!("cannot read the CA bundle: {e}")))?;
            for c in certs {
                client = client.with_root_certificate(c);
            }
            // Like boto3 with AWS_CA_BUNDLE (and requests with REQUESTS_CA_BUNDLE):
            // trust that bundle only (and skip reading the system store, which
            // costs milliseconds per WAL call).
            client = client.with_no_system_certificates(true);
        }
        Ok(client)
    }

    /// How failed requests are retried.
    pub(crate) fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
                base: 2.0,
            },
            // Enough tries that time, not their number, bounds the retrying: a store
            // restarting for a few seconds refuses connections, and 8 quick tries
            // would be spent in under two seconds.
            max_retries: self.max_retries.unwrap_or(32),
            // One request is retried (refused connections, resets, 5xx) for up to
            // 20 s (a store restarting is ridden out, a wrong endpoint is reported
            // soon); a WAL call retries whole steps until its deadline.
            retry_timeout: self.read_timeout().min(REQUEST_RETRY_LIMIT),
        }
    }
}

impl StoreSettings {
    /// Settings for an S3 store.
    pub fn s3(common: CommonSettings, s3: S3Settings) -> Self {
        Self {
            common,
            provider: ProviderSettings::S3(s3),
        }
    }

    /// Settings for an Azure container.
    pub fn azure(common: CommonSettings, azure: AzureSettings) -> Self {
        Self {
            common,
            provider: ProviderSettings::Azure(azure),
        }
    }

    /// The Azure part, when these are Azure settings.
    pub fn azure_settings(&self) -> Option<&AzureSettings> {
        match &self.provider {
            ProviderSettings::Azure(az) => Some(az),
            _ => None,
        }
    }

    /// How WAL uploads are bounded: by barman's Azure flags on Azure, by the
    /// plan's own values elsewhere.
    pub fn wal_upload_tuning(&self) -> crate::upload::UploadTuning {
        let size = |n: Option<u64>| n.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        match &self.provider {
            ProviderSettings::Azure(az) => crate::upload::UploadTuning {
                single_put_max: size(az.max_single_put_size),
                part_size: size(az.max_block_size),
                parts_in_flight: az.max_concurrency,
            },
            _ => Default::default(),
        }
    }

    /// See [`CommonSettings::read_timeout`].
    pub fn read_timeout(&self) -> Duration {
        self.common.read_timeout()
    }

    /// See [`CommonSettings::call_deadline`].
    pub fn call_deadline(&self) -> Duration {
        self.common.call_deadline()
    }

    /// The S3 part, when these are S3 settings.
    pub fn s3_settings(&self) -> Option<&S3Settings> {
        match &self.provider {
            ProviderSettings::S3(s3) => Some(s3),
            _ => None,
        }
    }

    /// The server-side encryption objects are written with, where the provider has
    /// one to choose (S3's `AES256` / `aws:kms`).
    pub fn encryption(&self) -> Option<&str> {
        self.s3_settings().and_then(|s| s.encryption.as_deref())
    }

    /// The same settings writing objects with `encryption` (base backups use the
    /// ObjectStore's `data.encryption`, WAL its `wal.encryption`).
    pub fn with_encryption(mut self, encryption: Option<String>) -> Self {
        if let ProviderSettings::S3(s3) = &mut self.provider {
            s3.encryption = encryption;
        }
        self
    }

    /// Whether requests carry a session token (its refusal is then named as the
    /// likely cause).
    pub(crate) fn sends_session_token(&self) -> bool {
        self.s3_settings()
            .is_some_and(S3Settings::sends_session_token)
    }
}

/// Opens the store for `dest`. The returned store is rooted at the bucket (or the
/// local directory); keys are bucket-relative.
pub fn open_store(
    dest: &Destination,
    settings: &StoreSettings,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    match &dest.provider {
        Provider::Local => local::open(dest),
        Provider::S3 => s3::open(dest, &settings.common, s3_part(dest, settings)?, true),
        Provider::Azure { .. } => azure::open(dest, &settings.common, azure_part(dest, settings)?),
        Provider::Gcs => match &settings.provider {
            ProviderSettings::Gcs(gcs) => gcs::open(dest, &settings.common, gcs),
            _ => Err(StorageError::Config(format!(
                "internal: {} is a GCS destination but its store settings are not GCS settings",
                dest.url
            ))),
        },
    }
}

/// The same store, but deleting one object per request: for S3-compatible stores
/// that refuse the bulk `DeleteObjects` request (`NotImplemented`, `MalformedXML`).
/// `None` where deletes are single already (a local directory).
pub fn open_single_delete_store(
    dest: &Destination,
    settings: &StoreSettings,
) -> Result<Option<Arc<dyn ObjectStore>>, StorageError> {
    match &dest.provider {
        Provider::S3 => s3::open(dest, &settings.common, s3_part(dest, settings)?, false).map(Some),
        _ => Ok(None),
    }
}

/// The S3 settings for an S3 destination; other settings are a caller's mistake.
fn s3_part<'a>(
    dest: &Destination,
    settings: &'a StoreSettings,
) -> Result<&'a S3Settings, StorageError> {
    settings.s3_settings().ok_or_else(|| {
        StorageError::Config(format!(
            "internal: {} is an S3 destination but its store settings are not S3 settings",
            dest.url
        ))
    })
}

/// The Azure settings for an Azure destination; other settings are a caller's mistake.
fn azure_part<'a>(
    dest: &Destination,
    settings: &'a StoreSettings,
) -> Result<&'a AzureSettings, StorageError> {
    match &settings.provider {
        ProviderSettings::Azure(az) => Ok(az),
        _ => Err(StorageError::Config(format!(
            "internal: {} is an Azure destination but its store settings are not Azure settings",
            dest.url
        ))),
    }
}

/// The store's endpoint as messages name it.
pub(crate) fn endpoint_label(dest: &Destination, settings: &StoreSettings) -> String {
    match (&dest.provider, &settings.provider) {
        (Provider::Azure { .. }, ProviderSettings::Azure(az)) => azure::endpoint_label(dest, az),
        (Provider::Local, _) => dest.url.clone(),
        (Provider::Gcs, ProviderSettings::Gcs(gcs)) if settings.common.endpoint_url.is_none() => {
            gcs::base_url(&settings.common, gcs)
        }
        _ => settings
            .common
            .endpoint_url
            .clone()
            .unwrap_or_else(|| "the default endpoint".to_string()),
    }
}
