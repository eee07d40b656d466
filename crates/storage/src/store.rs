//! Opening the object store behind a destination URL.
//!
//! Callers get an [`Archive`](crate::Archive) and never see which provider is
//! behind it: S3 (and S3-compatible stores) and a local directory today; Azure and
//! GCS slot into [`open_store`] without touching callers.

use crate::StorageError;
use barrelman_core::layout::{Destination, Provider};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use std::sync::{Arc, Once};
use std::time::Duration;

/// S3 URL addressing, as barman's `--addressing-style`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AddressingStyle {
    /// Path style with a custom endpoint, virtual-hosted style against AWS.
    #[default]
    Auto,
    Virtual,
    Path,
}

/// Static S3 credentials, when they do not come from the environment.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Keys {
    // Never print secrets, not even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Keys")
            .field("access_key_id", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// How to reach the store. Everything not set here comes from the environment, as
/// boto3 would read it (`AWS_*`).
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// `--endpoint-url`: an S3-compatible endpoint.
    pub endpoint_url: Option<String>,
    pub addressing_style: AddressingStyle,
    /// `--read-timeout`, seconds without data before a request fails and is retried.
    pub read_timeout: Option<Duration>,
    /// PEM bytes of a CA bundle to trust (from `AWS_CA_BUNDLE` or the ObjectStore's
    /// `endpointCA`).
    pub ca_pem: Option<Vec<u8>>,
    /// Explicit credentials (from the ObjectStore's secrets); else the environment.
    pub s3_keys: Option<S3Keys>,
    /// Explicit region; else `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// `-e/--encryption`: `AES256` or `aws:kms`.
    pub encryption: Option<String>,
    /// `--sse-kms-key-id`.
    pub sse_kms_key_id: Option<String>,
    /// How many times a failed request is retried (transient failures only).
    pub max_retries: Option<usize>,
}

/// barman's (botocore's) default `--read-timeout`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one failed request is retried at most (less with a shorter read timeout).
const REQUEST_RETRY_LIMIT: Duration = Duration::from_secs(20);
/// The longest a TCP (and TLS) connection set-up may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl StoreOptions {
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
}

/// reqwest is built without a bundled crypto provider; install ring once per process.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn retry_config(opts: &StoreOptions) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            base: 2.0,
        },
        // Enough tries that time, not their number, bounds the retrying: a store
        // restarting for a few seconds refuses connections, and 8 quick tries
        // would be spent in under two seconds.
        max_retries: opts.max_retries.unwrap_or(32),
        // One request is retried (refused connections, resets, 5xx) for up to
        // 20 s (a store restarting is ridden out, a wrong endpoint is reported
        // soon); a WAL call retries whole steps until its deadline.
        retry_timeout: opts.read_timeout().min(REQUEST_RETRY_LIMIT),
    }
}

/// Opens the store for `dest`. The returned store is rooted at the bucket (or the
/// local directory); keys are bucket-relative.
pub fn open_store(
    dest: &Destination,
    opts: &StoreOptions,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    match &dest.provider {
        Provider::Local => {
            std::fs::create_dir_all(&dest.bucket).map_err(|source| StorageError::LocalIo {
                what: "cannot create the archive directory",
                path: dest.bucket.clone(),
                source,
            })?;
            let fs = LocalFileSystem::new_with_prefix(&dest.bucket)
                .map_err(|e| StorageError::Config(format!("cannot use {} as an archive: {e}", dest.url)))?;
            // Exit 0 lets PostgreSQL recycle the segment: the object must be on disk
            // (file and directory fsynced) before a write returns.
            let fs = fs.with_fsync(true);
            Ok(Arc::new(fs))
        }
        Provider::S3 => open_s3(dest, opts, true),
        Provider::Gcs => Err(StorageError::Config(format!(
            "{}: Google Cloud Storage is not supported yet by this build; use an s3:// or file:// destination",
            dest.url
        ))),
        Provider::Azure { .. } => Err(StorageError::Config(format!(
            "{}: Azure Blob Storage is not supported yet by this build; use an s3:// or file:// destination",
            dest.url
        ))),
    }
}

/// Where S3 credentials will come from, decided before any request: a half-set pair
/// of keys, or no source at all, is named here instead of surfacing later as a
/// confusing refusal from the store or the instance metadata service.
fn check_credential_source(
    keys: Option<&S3Keys>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), StorageError> {
    if keys.is_some() {
        return Ok(());
    }
    let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    match (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
        (true, true) => return Ok(()),
        (true, false) => {
            return Err(StorageError::NoCredentials {
                detail: "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is empty or missing"
                    .into(),
            })
        }
        (false, true) => {
            return Err(StorageError::NoCredentials {
                detail: "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is empty or missing"
                    .into(),
            })
        }
        (false, false) => {}
    }
    let role = set("AWS_WEB_IDENTITY_TOKEN_FILE")
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    let metadata_off =
        env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !role && metadata_off {
        return Err(StorageError::NoCredentials {
            detail: "AWS_ACCESS_KEY_ID is not set and the instance metadata service is disabled"
                .into(),
        });
    }
    Ok(())
}

/// The same store, but deleting one object per request: for S3-compatible stores
/// that refuse the bulk `DeleteObjects` request (`NotImplemented`, `MalformedXML`).
/// `None` where deletes are single already (a local directory).
pub fn open_single_delete_store(
    dest: &Destination,
    opts: &StoreOptions,
) -> Result<Option<Arc<dyn ObjectStore>>, StorageError> {
    match &dest.provider {
        Provider::S3 => open_s3(dest, opts, false).map(Some),
        _ => Ok(None),
    }
}

fn open_s3(
    dest: &Destination,
    opts: &StoreOptions,
    bulk_delete: bool,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    install_crypto_provider();
    check_credential_source(opts.s3_keys.as_ref(), |k| std::env::var(k).ok())?;
    let mut client = ClientOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT.min(opts.read_timeout()))
        .with_timeout_disabled()
        .with_read_timeout(opts.read_timeout());
    if let Some(pem) = &opts.ca_pem {
        let certs = object_store::Certificate::from_pem_bundle(pem)
            .map_err(|e| StorageError::Config(format!("cannot read the CA bundle: {e}")))?;
        for c in certs {
            client = client.with_root_certificate(c);
        }
        // Like boto3 with AWS_CA_BUNDLE: trust that bundle only (and skip reading the
        // system store, which costs milliseconds per WAL call).
        client = client.with_no_system_certificates(true);
    }
    // from_env reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
    // AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, web identity and container credentials.
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(&dest.bucket)
        .with_disable_bulk_delete(!bulk_delete)
        .with_retry(retry_config(opts));
    let region = opts
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".to_string());
    b = b.with_region(region);
    let endpoint = opts
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    if let Some(ep) = &endpoint {
        b = b.with_endpoint(ep.trim_end_matches('/'));
        if ep.starts_with("http://") {
            client = client.with_allow_http(true);
        }
    }
    // Over HTTPS, TLS already protects the body: like botocore, sign the headers but
    // not a SHA-256 of the payload (hashing 16 MiB costs tens of milliseconds per
    // WAL). Plain-HTTP endpoints keep payload signing.
    let https = endpoint
        .as_deref()
        .is_none_or(|e| e.starts_with("https://"));
    b = b.with_unsigned_payload(https);
    let virtual_hosted = match opts.addressing_style {
        AddressingStyle::Virtual => true,
        AddressingStyle::Path => false,
        AddressingStyle::Auto => endpoint.is_none(),
    };
    b = b.with_virtual_hosted_style_request(virtual_hosted);
    if let Some(keys) = &opts.s3_keys {
        b = b
            .with_access_key_id(&keys.access_key_id)
            .with_secret_access_key(&keys.secret_access_key);
        if let Some(t) = &keys.session_token {
            b = b.with_token(t);
        }
    }
    if let Some(enc) = &opts.encryption {
        b = b.with_config(
            AmazonS3ConfigKey::from_str_key("aws_server_side_encryption")?,
            enc,
        );
    }
    if let Some(kms) = &opts.sse_kms_key_id {
        b = b.with_config(AmazonS3ConfigKey::from_str_key("aws_sse_kms_key_id")?, kms);
    }
    tracing::debug!(
        "S3 bucket '{}' at {} ({} addressing), read timeout {} s, deadline of one call {} s",
        dest.bucket,
        endpoint
            .as_deref()
            .unwrap_or("the AWS endpoint of the region"),
        if virtual_hosted {
            "virtual-hosted"
        } else {
            "path-style"
        },
        opts.read_timeout().as_secs_f64(),
        opts.call_deadline().as_secs_f64()
    );
    let store = b.with_client_options(client).build().map_err(|e| {
        StorageError::Config(format!("cannot configure S3 access for {}: {e}", dest.url))
    })?;
    Ok(Arc::new(store))
}

trait FromStrKey: Sized {
    fn from_str_key(key: &str) -> Result<Self, StorageError>;
}

impl FromStrKey for AmazonS3ConfigKey {
    fn from_str_key(key: &str) -> Result<Self, StorageError> {
        key.parse()
            .map_err(|e| StorageError::Config(format!("internal: unknown S3 setting {key}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_sources_are_checked_before_any_request() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let ok = |pairs| check_credential_source(None, env(pairs)).is_ok();
        assert!(ok(&[
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b")
        ]));
        assert!(!ok(&[("AWS_ACCESS_KEY_ID", "a")]));
        assert!(!ok(&[
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "")
        ]));
        assert!(!ok(&[("AWS_SECRET_ACCESS_KEY", "b")]));
        assert!(ok(&[])); // an instance role may answer
        assert!(!ok(&[("AWS_EC2_METADATA_DISABLED", "true")]));
        assert!(ok(&[
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")
        ]));
        let err = check_credential_source(None, env(&[("AWS_ACCESS_KEY_ID", "AKIDSECRETISH")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AWS_SECRET_ACCESS_KEY") && !err.contains("AKIDSECRETISH"),
            "{err}"
        );
    }
}
