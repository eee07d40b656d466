//! Google Cloud Storage through its **JSON API**: the settings, a small client that
//! implements [`object_store::ObjectStore`], and reading GCS refusals into
//! [`StorageError`]s.
//!
//! Why not object_store's own `gcp` client: in 0.14 it speaks only the XML API and
//! ignores `STORAGE_EMULATOR_HOST`, so it cannot be tested against fake-gcs-server
//! (which refuses its uploads), while barman-cloud (google-cloud-storage) uses the
//! JSON API. What is reused from object_store is the authentication: a
//! `GoogleCloudStorageBuilder` is given the bucket and the credential inputs, and
//! its `credentials()` (service account key, Application Default Credentials file,
//! or the GCE/GKE metadata server) hands out bearer tokens.
//!
//! Uploads:
//! - one request (`put_opts`) is a `uploadType=multipart` upload (metadata JSON and
//!   bytes in one body). A create-only put sends `ifGenerationMatch=0`, which GCS
//!   (and fake-gcs-server, on this upload type only) answers with 412 when the name
//!   is taken;
//! - a streamed upload (`put_multipart_opts`) is a resumable upload session: chunks
//!   are multiples of 256 KiB sent in order, each only after its predecessor was
//!   acknowledged, with at most 256 KiB carried between parts, so that a base backup
//!   never holds a whole tar part in memory or on disk (barman stages it in a file).
//!   Aborting deletes the session. A session commits unconditionally (fake-gcs-server
//!   ignores `ifGenerationMatch` there), so create-only callers check before the end,
//!   as for S3 multipart uploads.
//!
//! Object names are percent-encoded as whole path segments (`/` included), so any
//! name barman can write (spaces, `~ % # [ ]`, non-ASCII) reaches the same object.
//! Nothing here reads the process environment: [`GoogleEnvironment`] is captured by
//! the caller.

use super::CommonSettings;
use crate::{Denial, StorageError};
use barrelman_core::layout::Destination;
use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    UploadPart,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{RequestBuilder, Response, StatusCode};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The public GCS endpoint.
pub const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";
/// Resumable upload chunks must be multiples of this (except the last).
pub const CHUNK_GRANULARITY: usize = 256 << 10;
/// Everything but RFC 3986's unreserved characters is escaped in a path segment or
/// query value: `/` too, since an object name is one segment of the JSON API's URL.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The Google variables of an environment, captured once by the caller (the
/// libraries never read the process environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoogleEnvironment {
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a service account key (or other ADC) file.
    pub application_credentials: Option<PathBuf>,
    /// `STORAGE_EMULATOR_HOST`: an emulator (`host:port` or a URL); requests go there
    /// unauthenticated, as with the Python client barman uses.
    pub emulator_host: Option<String>,
    /// `HOME`, where gcloud keeps its own ADC file
    /// (`~/.config/gcloud/application_default_credentials.json`).
    pub home: Option<PathBuf>,
}

impl GoogleEnvironment {
    /// The Google variables among (name, value) pairs; empty values count as unset.
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut env = Self::default();
        for (k, v) in vars {
            let v = (!v.is_empty()).then(|| v.to_string());
            match k {
                "GOOGLE_APPLICATION_CREDENTIALS" => env.application_credentials = v.map(Into::into),
                "STORAGE_EMULATOR_HOST" => env.emulator_host = v,
                "HOME" => env.home = v.map(Into::into),
                _ => {}
            }
        }
        env
    }
}

/// A service account key's JSON, kept in memory; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccountKey(pub String);

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceAccountKey(<redacted>)")
    }
}

/// How to reach a GCS bucket, beyond the [`CommonSettings`].
#[derive(Debug, Clone, Default)]
pub struct GcsSettings {
    /// The ObjectStore's `googleCredentials.applicationCredentials`: the key's JSON.
    pub service_account_key: Option<ServiceAccountKey>,
    /// `googleCredentials.gkeEnvironment`: the metadata server's identity (GKE
    /// workload identity), whatever files the environment names.
    pub gke_environment: bool,
    /// `--kms-key-name`: the Cloud KMS key objects are written with (`kmsKeyName`).
    pub kms_key_name: Option<String>,
    /// The captured Google variables everything not set above comes from.
    pub environment: GoogleEnvironment,
    /// Objects per listing request (`maxResults`); `None` is the JSON API's
    /// maximum, 1000. Smaller pages only cost more requests (tests use them to
    /// cross page boundaries with few objects).
    pub list_page_size: Option<usize>,
}

/// Where the bearer tokens come from, decided before any request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Auth {
    /// An emulator: no token.
    None,
    /// A service account key given in memory.
    Key,
    /// An ADC file (`GOOGLE_APPLICATION_CREDENTIALS` or gcloud's).
    File(PathBuf),
    /// The GCE/GKE metadata server.
    MetadataServer,
}

/// Barman's order (google-auth's Application Default Credentials): an emulator needs
/// none; the ObjectStore's key or GKE choice; `GOOGLE_APPLICATION_CREDENTIALS`,
/// which must name a readable file; gcloud's ADC file; the metadata server.
fn auth_source(gcs: &GcsSettings) -> Result<Auth, StorageError> {
    let env = &gcs.environment;
    if env.emulator_host.is_some() {
        return Ok(Auth::None);
    }
    if let Some(key) = &gcs.service_account_key {
        check_key(&key.0)?;
        return Ok(Auth::Key);
    }
    if gcs.gke_environment {
        return Ok(Auth::MetadataServer);
    }
    if let Some(path) = &env.application_credentials {
        if let Err(e) = std::fs::metadata(path) {
            return Err(StorageError::GoogleCredentials {
                detail: format!(
                    "GOOGLE_APPLICATION_CREDENTIALS names {}, which cannot be read ({e})",
                    path.display()
                ),
            });
        }
        return Ok(Auth::File(path.clone()));
    }
    if let Some(home) = &env.home {
        let gcloud = home.join(".config/gcloud/application_default_credentials.json");
        if gcloud.is_file() {
            return Ok(Auth::File(gcloud));
        }
    }
    Ok(Auth::MetadataServer)
}

/// A key from a manifest must be a service account key: refused here, in one
/// sentence, rather than as a token exchange failure later.
fn check_key(json: &str) -> Result<(), StorageError> {
    let bad = |what: &str| StorageError::GoogleCredentials {
        detail: format!("the applicationCredentials secret value {what}"),
    };
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|_| bad("is not JSON (expected a service account key file's content)"))?;
    match v.get("type").and_then(|t| t.as_str()) {
        Some("service_account") => {}
        Some(other) => {
            return Err(bad(&format!(
                "is a '{other}' credential; only service account keys (\"type\": \"service_account\") are accepted there"
            )))
        }
        None => return Err(bad("has no \"type\" field (expected a service account key)")),
    }
    for field in ["client_email", "private_key_id", "private_key"] {
        if v.get(field)
            .and_then(|f| f.as_str())
            .is_none_or(str::is_empty)
        {
            return Err(bad(&format!("has no \"{field}\"")));
        }
    }
    Ok(())
}

/// The base URL requests go to: the emulator (a bare `host:port` is taken as plain
/// HTTP; barman's Python client fails on it, "No connection adapters"), else
/// `--endpoint-url`, else GCS.
pub(crate) fn base_url(common: &CommonSettings, gcs: &GcsSettings) -> String {
    let url = match (&gcs.environment.emulator_host, &common.endpoint_url) {
        (Some(host), _) if host.contains("://") => host.clone(),
        (Some(host), _) => format!("http://{host}"),
        (None, Some(ep)) => ep.clone(),
        (None, None) => DEFAULT_BASE_URL.to_string(),
    };
    url.trim_end_matches('/').to_string()
}

/// Opens the bucket of `dest`.
pub(crate) fn open(
    dest: &Destination,
    common: &CommonSettings,
    gcs: &GcsSettings,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    super::s3::install_crypto_provider();
    let auth = auth_source(gcs)?;
    let config = |e: &dyn std::fmt::Display| {
        StorageError::Config(format!("cannot configure GCS access for {}: {e}", dest.url))
    };
    let mut http = reqwest::Client::builder()
        .connect_timeout(super::CONNECT_TIMEOUT.min(common.read_timeout()))
        .read_timeout(common.read_timeout())
        // A resumable chunk is answered with 308 "Resume Incomplete": not a redirect.
        .redirect(reqwest::redirect::Policy::none());
    // object_store's client (for the token exchange) and ours trust the same roots.
    let options = common.client_options()?;
    if let Some(pem) = &common.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| StorageError::Config(format!("cannot read the CA bundle: {e}")))?;
        http = http.tls_certs_only(certs);
    }
    let credentials = match &auth {
        Auth::None => None,
        other => {
            let mut b = GoogleCloudStorageBuilder::new()
                .with_bucket_name(&dest.bucket)
                .with_client_options(options)
                .with_retry(common.retry_config());
            match other {
                Auth::Key => {
                    let key = gcs.service_account_key.as_ref().map(|k| k.0.clone());
                    b = b.with_service_account_key(key.unwrap_or_default());
                }
                Auth::File(path) => b = b.with_application_credentials(path.display().to_string()),
                _ => {}
            }
            let store = b.build().map_err(|e| {
                let why = without_values(&first_cause(&e));
                let detail = match &auth {
                    Auth::File(path) => {
                        format!(
                            "the credentials file {} cannot be used: {why}",
                            path.display()
                        )
                    }
                    _ => format!("the applicationCredentials secret value cannot be used: {why}"),
                };
                StorageError::GoogleCredentials { detail }
            })?;
            Some(store.credentials().clone())
        }
    };
    let base = base_url(common, gcs);
    tracing::debug!(
        "GCS bucket '{}' at {base} (JSON API, credentials: {auth:?}), read timeout {} s",
        dest.bucket,
        common.read_timeout().as_secs_f64()
    );
    Ok(Arc::new(Gcs {
        inner: Arc::new(Inner {
            http: http.build().map_err(|e| config(&e))?,
            base,
            bucket: dest.bucket.clone(),
            credentials,
            token_source: match &auth {
                Auth::None => "the emulator".to_string(),
                Auth::Key => "the applicationCredentials key".to_string(),
                Auth::File(p) => format!("the credentials file {}", p.display()),
                Auth::MetadataServer => {
                    "the metadata server (GOOGLE_APPLICATION_CREDENTIALS is not set)".to_string()
                }
            },
            kms_key_name: gcs.kms_key_name.clone(),
            page_size: gcs
                .list_page_size
                .unwrap_or(1000)
                .clamp(1, 1000)
                .to_string(),
            retry: Retry {
                init: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
                max_retries: common.retry_config().max_retries,
                timeout: common.retry_config().retry_timeout,
            },
        }),
    }))
}

/// A parser's message without what it quotes (serde names the offending value:
/// `invalid type: string "…"`), so that no part of a key reaches a log.
fn without_values(text: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in text.chars() {
        if c == '"' {
            quoted = !quoted;
            out.push('"');
            if quoted {
                out.push('…');
            }
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

fn first_cause(e: &dyn std::error::Error) -> String {
    e.to_string().replace('\n', " ")
}

// ---- URLs ---------------------------------------------------------------------------

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// `key=value&…`, values percent-encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn object_url(base: &str, bucket: &str, name: &str) -> String {
    format!("{base}/storage/v1/b/{}/o/{}", enc(bucket), enc(name))
}

fn upload_url(
    base: &str,
    bucket: &str,
    upload_type: &str,
    create_only: bool,
    kms: Option<&str>,
) -> String {
    let mut q = vec![("uploadType", upload_type)];
    if create_only {
        q.push(("ifGenerationMatch", "0"));
    }
    if let Some(k) = kms {
        q.push(("kmsKeyName", k));
    }
    format!("{base}/upload/storage/v1/b/{}/o?{}", enc(bucket), query(&q))
}

/// The object resource sent with an upload: its name and the tags as custom
/// metadata (barman's `blob.metadata = dict(tags)`).
fn upload_metadata(name: &str, tags: &[(String, String)]) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("name".into(), name.into());
    if !tags.is_empty() {
        let meta: serde_json::Map<String, serde_json::Value> = tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        obj.insert("metadata".into(), meta.into());
    }
    serde_json::Value::Object(obj).to_string()
}

/// The `multipart/related` body of a one-request upload: metadata, then the bytes
/// (the payload's pieces themselves, not a copy).
fn multipart_body(boundary: &str, metadata: &str, payload: &PutPayload) -> Chunks {
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n\
         --{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let mut parts = vec![Bytes::from(head)];
    parts.extend(payload.iter().cloned());
    parts.push(Bytes::from(format!("\r\n--{boundary}--\r\n")));
    Chunks(parts)
}

/// Bytes sent as one request body, kept as the pieces they arrived in: a 16 MiB WAL
/// file or a backup part is never copied into one buffer to be sent.
#[derive(Clone, Default)]
struct Chunks(Vec<Bytes>);

impl Chunks {
    fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// Takes the first `n` bytes off (slices, not copies).
    fn split_to(&mut self, mut n: usize) -> Chunks {
        let mut head = Vec::new();
        while n > 0 && !self.0.is_empty() {
            if self.0[0].len() <= n {
                n -= self.0[0].len();
                head.push(self.0.remove(0));
            } else {
                head.push(self.0[0].split_to(n));
                n = 0;
            }
        }
        Chunks(head)
    }

    /// The pieces as a streamed body; the caller sets `Content-Length` ([`Chunks::len`]).
    fn body(&self) -> reqwest::Body {
        let parts = self.0.clone();
        reqwest::Body::wrap_stream(futures::stream::iter(
            parts.into_iter().map(Ok::<_, std::io::Error>),
        ))
    }

    /// One buffer of its own (for the small carry between resumable parts, so that
    /// it does not keep a whole part's buffer alive).
    fn compact(self) -> Chunks {
        let mut b = BytesMut::with_capacity(self.len());
        for c in &self.0 {
            b.extend_from_slice(c);
        }
        Chunks(vec![b.freeze()])
    }
}

/// A boundary that no payload will contain by chance: 128 bits from the process's
/// random hasher keys and the clock.
fn boundary() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let a = h.finish();
    let b = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("barrelman-{a:016x}{b:016x}")
}

/// `Content-Range` of a resumable chunk: `bytes a-b/*` (more to come) or
/// `bytes a-b/total`; an empty final chunk is `bytes */total`.
fn content_range(start: u64, len: u64, total: Option<u64>) -> String {
    let total = total.map_or("*".to_string(), |t| t.to_string());
    if len == 0 {
        format!("bytes */{total}")
    } else {
        format!("bytes {start}-{}/{total}", start + len - 1)
    }
}

/// The bytes persisted so far, from the `Range: bytes=0-N` of a 308 answer.
fn persisted(range: Option<&str>) -> u64 {
    range
        .and_then(|r| r.trim().strip_prefix("bytes=0-"))
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |n| n + 1)
}

// ---- Failures -----------------------------------------------------------------------

/// What a GCS refusal means, for the message and the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 401: the token is expired or invalid.
    Token,
    /// 403: the identity lacks a permission (`storage.objects.create`…).
    Role,
    /// 404 at the bucket level (a listing), or a message naming the bucket.
    BucketMissing,
    /// 404 of an object.
    NotFound,
    /// 412: `ifGenerationMatch` failed.
    Precondition,
    /// 304.
    NotModified,
    /// No token could be had (metadata server absent, key refused by the token
    /// endpoint).
    NoToken,
    /// Anything else (5xx after retries, 400…).
    Other,
}

/// A GCS answer other than success, or a failed token fetch: carried inside
/// object_store's error so that [`StorageError::from_store`] can name it precisely.
#[derive(Debug, thiserror::Error)]
#[error("GCS answered HTTP {status} to {op}: {message}")]
pub(crate) struct GcsFailure {
    pub(crate) refusal: Refusal,
    pub(crate) status: u16,
    pub(crate) op: String,
    pub(crate) message: String,
    /// How many times the request was sent.
    pub(crate) tries: usize,
}

/// The refusal a status means; `bucket_level` for requests on the bucket itself.
fn refusal_of(status: u16, message: &str, bucket_level: bool) -> Refusal {
    match status {
        401 => Refusal::Token,
        403 => Refusal::Role,
        404 if bucket_level || message.to_ascii_lowercase().contains("bucket") => {
            Refusal::BucketMissing
        }
        404 => Refusal::NotFound,
        412 => Refusal::Precondition,
        304 => Refusal::NotModified,
        _ => Refusal::Other,
    }
}

/// The `error.message` of a JSON error body, else the body's first line.
fn error_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message")?.as_str().map(String::from));
    let text = from_json.unwrap_or_else(|| body.lines().next().unwrap_or_default().to_string());
    text.chars().take(300).collect()
}

impl GcsFailure {
    fn into_store_error(self, path: &str) -> object_store::Error {
        use object_store::Error as E;
        let path = path.to_string();
        let refusal = self.refusal;
        let source: Box<dyn std::error::Error + Send + Sync> = Box::new(self);
        match refusal {
            Refusal::NotFound => E::NotFound { path, source },
            Refusal::Precondition => E::Precondition { path, source },
            Refusal::NotModified => E::NotModified { path, source },
            Refusal::Role => E::PermissionDenied { path, source },
            Refusal::Token | Refusal::NoToken => E::Unauthenticated { path, source },
            Refusal::BucketMissing | Refusal::Other => E::Generic {
                store: "GCS",
                source,
            },
        }
    }

    /// The storage error this refusal is, where it says more than object_store's kind.
    pub(crate) fn storage_error(
        &self,
        key: &str,
        endpoint: &str,
        bucket: &str,
    ) -> Option<StorageError> {
        let location = || format!("bucket '{bucket}' at {endpoint}");
        Some(match self.refusal {
            Refusal::BucketMissing => StorageError::BucketMissing {
                bucket: bucket.to_string(),
                endpoint: endpoint.to_string(),
            },
            Refusal::Token => StorageError::AccessDenied {
                location: location(),
                denial: Denial::GoogleToken,
            },
            Refusal::Role => StorageError::AccessDenied {
                location: location(),
                denial: Denial::GoogleRole,
            },
            Refusal::NoToken => StorageError::GoogleCredentials {
                detail: self.message.clone(),
            },
            Refusal::Other if self.status >= 500 => StorageError::ServerError {
                endpoint: endpoint.to_string(),
                key: key.to_string(),
                status: self.status,
                code: None,
                tries: self.tries,
            },
            _ => return None,
        })
    }
}

/// The GCS failure inside an object_store error, if it carries one.
pub(crate) fn failure_of(err: &object_store::Error) -> Option<&GcsFailure> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = cur {
        if let Some(f) = e.downcast_ref::<GcsFailure>() {
            return Some(f);
        }
        cur = e.source();
    }
    None
}

/// A request that never got an answer (connection refused, reset, timed out).
#[derive(Debug, thiserror::Error)]
#[error("GCS request {op} failed after {tries} tries")]
struct Unanswered {
    op: String,
    tries: usize,
    #[source]
    source: reqwest::Error,
}

// ---- The client ---------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Retry {
    init: Duration,
    max_backoff: Duration,
    max_retries: usize,
    timeout: Duration,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    bucket: String,
    credentials: Option<GcpCredentialProvider>,
    /// Where tokens come from, for the message when none can be had.
    token_source: String,
    kms_key_name: Option<String>,
    /// `maxResults` of listings (fake-gcs-server returns everything in one page
    /// unless asked).
    page_size: String,
    retry: Retry,
}

/// A GCS bucket through the JSON API. Paths are bucket-relative object names.
#[derive(Clone)]
pub struct Gcs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gcs")
            .field("base", &self.inner.base)
            .field("bucket", &self.inner.bucket)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for Gcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GCS(gs://{} at {})", self.inner.bucket, self.inner.base)
    }
}

/// What to do with a status: success, retry, or fail.
fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

impl Inner {
    /// The bearer token, when requests are authenticated.
    async fn token(&self, path: &str) -> object_store::Result<Option<String>> {
        let Some(provider) = &self.credentials else {
            return Ok(None);
        };
        match provider.get_credential().await {
            Ok(c) => Ok(Some(c.bearer.clone())),
            Err(e) => Err(GcsFailure {
                refusal: Refusal::NoToken,
                status: 0,
                op: "token".into(),
                message: format!(
                    "{} gave no access token: {}",
                    self.token_source,
                    super::s3::root_cause(&e)
                ),
                tries: 1,
            }
            .into_store_error(path)),
        }
    }

    /// Sends the request `build` makes (rebuilt for each try), retrying connection
    /// failures, 429 and 5xx with backoff until the retry limits; a final non-success
    /// answer becomes the object_store error for `path`. `ok` lists the statuses
    /// taken as success besides 2xx (308 for resumable chunks).
    async fn send(
        &self,
        op: &str,
        path: &str,
        bucket_level: bool,
        ok: &[u16],
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> object_store::Result<Response> {
        let start = Instant::now();
        let mut tries = 0usize;
        let mut backoff = self.retry.init;
        loop {
            tries += 1;
            let mut req = build(&self.http);
            if let Some(token) = self.token(path).await? {
                req = req.bearer_auth(token);
            }
            let more =
                tries <= self.retry.max_retries && start.elapsed() + backoff < self.retry.timeout;
            match req.send().await {
                Ok(resp) if resp.status().is_success() || ok.contains(&resp.status().as_u16()) => {
                    return Ok(resp)
                }
                Ok(resp) if retryable(resp.status()) && more => {}
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let message = error_message(&resp.text().await.unwrap_or_default());
                    return Err(GcsFailure {
                        refusal: refusal_of(status, &message, bucket_level),
                        status,
                        op: op.to_string(),
                        message,
                        tries,
                    }
                    .into_store_error(path));
                }
                Err(e) if more && (e.is_connect() || e.is_timeout() || e.is_request()) => {}
                Err(source) => {
                    return Err(object_store::Error::Generic {
                        store: "GCS",
                        source: Box::new(Unanswered {
                            op: op.to_string(),
                            tries,
                            source,
                        }),
                    })
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
        }
    }

    async fn metadata(&self, name: &str) -> object_store::Result<ObjectMeta> {
        let url = object_url(&self.base, &self.bucket, name);
        let resp = self
            .send("GET metadata", name, false, &[], |c| c.get(&url))
            .await?;
        let v: serde_json::Value = resp.json_value(name).await?;
        object_meta(&v).ok_or_else(|| bad_answer(name, "object metadata"))
    }
}

/// Reading a JSON answer.
trait JsonValue {
    async fn json_value(self, path: &str) -> object_store::Result<serde_json::Value>;
}

impl JsonValue for Response {
    async fn json_value(self, path: &str) -> object_store::Result<serde_json::Value> {
        let bytes = self
            .bytes()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "GCS",
                source: Box::new(e),
            })?;
        serde_json::from_slice(&bytes).map_err(|_| bad_answer(path, "JSON"))
    }
}

fn bad_answer(path: &str, what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "GCS",
        source: format!("unexpected answer for {path}: not the expected {what}").into(),
    }
}

/// An object resource (`storage#object`) as object_store metadata. Sizes and
/// generations are strings in the JSON API.
fn object_meta(v: &serde_json::Value) -> Option<ObjectMeta> {
    let name = v.get("name")?.as_str()?;
    let size = v.get("size")?.as_str()?.parse().ok()?;
    let updated = v
        .get("updated")
        .and_then(|u| u.as_str())
        .and_then(|u| chrono::DateTime::parse_from_rfc3339(u).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    Some(ObjectMeta {
        location: Path::parse(name).unwrap_or_else(|_| Path::from(name)),
        last_modified: updated,
        size,
        e_tag: v.get("etag").and_then(|e| e.as_str()).map(String::from),
        version: v
            .get("generation")
            .and_then(|g| g.as_str())
            .map(String::from),
    })
}

fn put_result(v: &serde_json::Value) -> PutResult {
    PutResult {
        e_tag: v.get("etag").and_then(|e| e.as_str()).map(String::from),
        version: v
            .get("generation")
            .and_then(|g| g.as_str())
            .map(String::from),
        extensions: Default::default(),
    }
}

fn tags_of(set: &object_store::TagSet) -> Vec<(String, String)> {
    let encoded = set.encoded();
    if encoded.is_empty() {
        return Vec::new();
    }
    encoded
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            Some((dec(k), dec(v)))
        })
        .collect()
}

#[async_trait::async_trait]
impl ObjectStore for Gcs {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let inner = &self.inner;
        let name = location.as_ref();
        let create_only = match opts.mode {
            PutMode::Overwrite => false,
            PutMode::Create => true,
            PutMode::Update(_) => {
                return Err(object_store::Error::NotImplemented {
                    operation: "put_opts with PutMode::Update".into(),
                    implementer: "barrelman's GCS client".into(),
                })
            }
        };
        let url = upload_url(
            &inner.base,
            &inner.bucket,
            "multipart",
            create_only,
            inner.kms_key_name.as_deref(),
        );
        let b = boundary();
        let body = multipart_body(&b, &upload_metadata(name, &tags_of(&opts.tags)), &payload);
        let (content_type, length) = (format!("multipart/related; boundary={b}"), body.len());
        let resp = inner
            // A 404 to an upload can only be the bucket (fake-gcs-server says no more).
            .send("upload", name, true, &[], |c| {
                c.post(&url)
                    .header("Content-Type", &content_type)
                    .header("Content-Length", length)
                    .body(body.body())
            })
            .await
            .map_err(|e| taken_if(create_only, e))?;
        Ok(put_result(&resp.json_value(name).await?))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = &self.inner;
        let name = location.as_ref().to_string();
        let url = upload_url(
            &inner.base,
            &inner.bucket,
            "resumable",
            false,
            inner.kms_key_name.as_deref(),
        );
        let metadata = upload_metadata(&name, &tags_of(&opts.tags));
        let resp = inner
            .send("start resumable upload", &name, true, &[], |c| {
                c.post(&url)
                    .header("Content-Type", "application/json; charset=UTF-8")
                    .header("X-Upload-Content-Type", "application/octet-stream")
                    .body(metadata.clone())
            })
            .await?;
        let session = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(String::from)
            .ok_or_else(|| bad_answer(&name, "resumable session (no Location header)"))?;
        let (tx, rx) = tokio::sync::watch::channel(Ok(0));
        Ok(Box::new(Resumable {
            shared: Arc::new(Session {
                inner: self.inner.clone(),
                name,
                url: session,
                state: tokio::sync::Mutex::new(SessionState {
                    sent: 0,
                    carry: Chunks::default(),
                }),
            }),
            next: 0,
            done_tx: Arc::new(tx),
            done_rx: rx,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let inner = &self.inner;
        let name = location.as_ref();
        let meta = inner.metadata(name).await?;
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(r) => r
                .as_range(meta.size)
                .map_err(|e| object_store::Error::Generic {
                    store: "GCS",
                    source: Box::new(e),
                })?,
            None => 0..meta.size,
        };
        if options.head {
            return Ok(GetResult {
                payload: GetResultPayload::Stream(futures::stream::empty().boxed()),
                meta,
                range,
                attributes: Default::default(),
                extensions: Default::default(),
            });
        }
        // The generation just read: a concurrent overwrite cannot mix two contents.
        let generation = meta.version.clone().unwrap_or_default();
        let url = format!(
            "{}?{}",
            object_url(&inner.base, &inner.bucket, name),
            query(&[("alt", "media"), ("generation", &generation)])
        );
        let ranged = options.range.is_some() && !range.is_empty();
        let header = format!("bytes={}-{}", range.start, range.end.saturating_sub(1));
        let stream = if range.is_empty() {
            futures::stream::empty().boxed()
        } else {
            let resp = inner
                .send("GET media", name, false, &[], |c| {
                    let r = c.get(&url);
                    if ranged {
                        r.header("Range", &header)
                    } else {
                        r
                    }
                })
                .await?;
            resp.bytes_stream()
                .map_err(|e| object_store::Error::Generic {
                    store: "GCS",
                    source: Box::new(e),
                })
                .boxed()
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream),
            meta,
            range,
            attributes: Default::default(),
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = self.inner.clone();
        locations
            .map(move |location| {
                let inner = inner.clone();
                async move {
                    let location = location?;
                    let url = object_url(&inner.base, &inner.bucket, location.as_ref());
                    match inner
                        .send("DELETE", location.as_ref(), false, &[], |c| c.delete(&url))
                        .await
                    {
                        // Deleting what is gone is done, as on S3.
                        Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(location),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffered(10)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_from(prefix, None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_from(prefix, Some(offset.clone()))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let prefix = dir_prefix(prefix);
        let mut token: Option<String> = None;
        let mut out = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        loop {
            let page = self
                .inner
                .list_page(&prefix, Some("/"), None, token.as_deref())
                .await?;
            out.objects.extend(page.objects);
            out.common_prefixes.extend(page.prefixes.iter().map(|p| {
                let p = p.trim_end_matches('/');
                Path::parse(p).unwrap_or_else(|_| Path::from(p))
            }));
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let inner = &self.inner;
        let create_only = matches!(options.mode, CopyMode::Create);
        let base = format!(
            "{}/storage/v1/b/{b}/o/{}/rewriteTo/b/{b}/o/{}",
            inner.base,
            enc(from.as_ref()),
            enc(to.as_ref()),
            b = enc(&inner.bucket)
        );
        let mut token: Option<String> = None;
        loop {
            let mut q: Vec<(&str, &str)> = Vec::new();
            if create_only {
                q.push(("ifGenerationMatch", "0"));
            }
            if let Some(k) = &inner.kms_key_name {
                q.push(("destinationKmsKeyName", k));
            }
            if let Some(t) = &token {
                q.push(("rewriteToken", t));
            }
            let url = if q.is_empty() {
                base.clone()
            } else {
                format!("{base}?{}", query(&q))
            };
            let resp = inner
                .send("copy", from.as_ref(), false, &[], |c| c.post(&url))
                .await
                .map_err(|e| taken_if(create_only, e))?;
            let v = resp.json_value(to.as_ref()).await?;
            if v.get("done").and_then(|d| d.as_bool()).unwrap_or(true) {
                return Ok(());
            }
            token = v
                .get("rewriteToken")
                .and_then(|t| t.as_str())
                .map(String::from);
            if token.is_none() {
                return Err(bad_answer(
                    to.as_ref(),
                    "rewrite progress (no rewriteToken)",
                ));
            }
        }
    }
}

/// A failed `ifGenerationMatch=0` is a name already taken.
fn taken_if(create_only: bool, e: object_store::Error) -> object_store::Error {
    match e {
        object_store::Error::Precondition { path, source } if create_only => {
            object_store::Error::AlreadyExists { path, source }
        }
        other => other,
    }
}

/// An object_store prefix as a GCS name prefix: whole segments (`a/b` lists `a/b/…`).
fn dir_prefix(prefix: Option<&Path>) -> String {
    match prefix.map(|p| p.as_ref()).filter(|p| !p.is_empty()) {
        Some(p) => format!("{p}/"),
        None => String::new(),
    }
}

struct Page {
    objects: Vec<ObjectMeta>,
    prefixes: Vec<String>,
    next: Option<String>,
}

impl Inner {
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        start_offset: Option<&str>,
        token: Option<&str>,
    ) -> object_store::Result<Page> {
        let mut q = vec![("prefix", prefix), ("maxResults", self.page_size.as_str())];
        if let Some(d) = delimiter {
            q.push(("delimiter", d));
        }
        if let Some(s) = start_offset {
            q.push(("startOffset", s));
        }
        if let Some(t) = token {
            q.push(("pageToken", t));
        }
        let url = format!(
            "{}/storage/v1/b/{}/o?{}",
            self.base,
            enc(&self.bucket),
            query(&q)
        );
        let resp = self
            .send("list", prefix, true, &[], |c| c.get(&url))
            .await?;
        let v = resp.json_value(prefix).await?;
        let objects = match v.get("items").and_then(|i| i.as_array()) {
            Some(items) => items
                .iter()
                .map(|i| object_meta(i).ok_or_else(|| bad_answer(prefix, "listing")))
                .collect::<object_store::Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let prefixes = v
            .get("prefixes")
            .and_then(|p| p.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let next = v
            .get("nextPageToken")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(String::from);
        Ok(Page {
            objects,
            prefixes,
            next,
        })
    }
}

impl Gcs {
    /// Every object under `prefix`, page after page (`pageToken`); with `offset`,
    /// only names after it (`startOffset` is inclusive, so the offset itself is
    /// dropped here).
    fn list_from(
        &self,
        prefix: Option<&Path>,
        offset: Option<Path>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let prefix = dir_prefix(prefix);
        let state = (Some(None::<String>), inner, prefix, offset);
        futures::stream::try_unfold(state, |(token, inner, prefix, offset)| async move {
            let Some(token) = token else {
                return Ok::<_, object_store::Error>(None);
            };
            let page = inner
                .list_page(
                    &prefix,
                    None,
                    offset.as_ref().map(|o| o.as_ref()),
                    token.as_deref(),
                )
                .await?;
            let objects: Vec<object_store::Result<ObjectMeta>> = page
                .objects
                .into_iter()
                .filter(|m| {
                    offset
                        .as_ref()
                        .is_none_or(|o| m.location.as_ref() > o.as_ref())
                })
                .map(Ok)
                .collect();
            let next = page.next.map(Some);
            Ok(Some((
                futures::stream::iter(objects),
                (next, inner, prefix, offset),
            )))
        })
        .try_flatten()
        .boxed()
    }
}

// ---- Resumable uploads --------------------------------------------------------------

struct SessionState {
    /// Bytes acknowledged by the service.
    sent: u64,
    /// The tail of the parts so far that does not fill a 256 KiB multiple yet.
    carry: Chunks,
}

struct Session {
    inner: Arc<Inner>,
    name: String,
    url: String,
    state: tokio::sync::Mutex<SessionState>,
}

/// One resumable upload. Parts may be handed over faster than they go up (the
/// writer keeps a few in flight), but each is sent only after its predecessor was
/// acknowledged: part *n* waits until the completion counter reaches *n*.
struct Resumable {
    shared: Arc<Session>,
    /// The index the next part gets.
    next: u64,
    /// Parts completed so far, or the first failure.
    done_tx: Arc<tokio::sync::watch::Sender<Result<u64, String>>>,
    done_rx: tokio::sync::watch::Receiver<Result<u64, String>>,
}

impl std::fmt::Debug for Resumable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumable")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// The largest multiple of [`CHUNK_GRANULARITY`] not above `len`.
fn aligned(len: usize) -> usize {
    len - len % CHUNK_GRANULARITY
}

impl Session {
    /// Sends `data` (starting at byte `start`) as one chunk, `total` when it is the
    /// last. A chunk cut by a failure is resumed where the service says it stopped.
    async fn send_chunk(
        &self,
        start: u64,
        data: Chunks,
        total: Option<u64>,
    ) -> object_store::Result<u64> {
        let len = data.len() as u64;
        let range = content_range(start, len, total);
        // The final chunk is answered with the object, the others with 308.
        let ok: &[u16] = if total.is_some() { &[] } else { &[308] };
        let resp = self
            .inner
            .send("upload chunk", &self.name, false, ok, |c| {
                c.put(&self.url)
                    .header("Content-Range", &range)
                    .header("Content-Length", len)
                    .body(data.body())
            })
            .await?;
        let end = start + len;
        if resp.status().as_u16() == 308 {
            let got = persisted(resp.headers().get("range").and_then(|r| r.to_str().ok()));
            if got != end {
                // The service kept less than was sent: send the rest again.
                if got < start || got > end {
                    return Err(bad_answer(&self.name, "resumable progress"));
                }
                let mut rest = data;
                rest.split_to((got - start) as usize);
                return Box::pin(self.send_chunk(got, rest, total)).await;
            }
        }
        Ok(end)
    }

    async fn part(&self, data: PutPayload) -> object_store::Result<()> {
        let mut state = self.state.lock().await;
        state.carry.0.extend(data.iter().cloned());
        let n = aligned(state.carry.len());
        if n == 0 {
            return Ok(());
        }
        let chunk = state.carry.split_to(n);
        state.carry = std::mem::take(&mut state.carry).compact();
        let start = state.sent;
        state.sent = self.send_chunk(start, chunk, None).await?;
        Ok(())
    }

    async fn complete(&self) -> object_store::Result<PutResult> {
        let mut state = self.state.lock().await;
        let last = std::mem::take(&mut state.carry);
        let total = state.sent + last.len() as u64;
        let start = state.sent;
        let range = content_range(start, last.len() as u64, Some(total));
        let resp = self
            .inner
            .send("finish upload", &self.name, false, &[], |c| {
                c.put(&self.url)
                    .header("Content-Range", &range)
                    .header("Content-Length", last.len())
                    .body(last.body())
            })
            .await?;
        state.sent = total;
        Ok(put_result(&resp.json_value(&self.name).await?))
    }
}

#[async_trait::async_trait]
impl MultipartUpload for Resumable {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let index = self.next;
        self.next += 1;
        let session = self.shared.clone();
        let tx = self.done_tx.clone();
        let mut rx = self.done_rx.clone();
        Box::pin(async move {
            // Wait for the predecessors; stop at the first failure.
            let turn = rx
                .wait_for(|s| s.as_ref().map_or(true, |done| *done >= index))
                .await
                .map(|s| s.clone());
            match turn {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(earlier_failure(&session.name, e)),
                Err(_) => {
                    return Err(earlier_failure(
                        &session.name,
                        "the upload was dropped".into(),
                    ))
                }
            }
            match session.part(data).await {
                Ok(()) => {
                    let _ = tx.send_replace(Ok(index + 1));
                    Ok(())
                }
                Err(e) => {
                    let _ = tx.send_replace(Err(e.to_string()));
                    Err(e)
                }
            }
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let want = self.next;
        let done = self
            .done_rx
            .wait_for(|s| s.as_ref().map_or(true, |d| *d >= want))
            .await
            .map(|s| s.clone());
        match done {
            Ok(Ok(_)) => self.shared.complete().await,
            Ok(Err(e)) => Err(earlier_failure(&self.shared.name, e)),
            Err(_) => Err(earlier_failure(
                &self.shared.name,
                "the upload was dropped".into(),
            )),
        }
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        // GCS answers a cancelled session with 499; any answer ends it.
        let url = self.shared.url.clone();
        let _ = self
            .shared
            .inner
            .send(
                "cancel upload",
                &self.shared.name,
                false,
                &[499, 404, 410],
                |c| c.delete(&url),
            )
            .await;
        Ok(())
    }
}

fn earlier_failure(name: &str, e: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "GCS",
        source: format!("the upload of {name} stopped: an earlier part failed: {e}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_encoded_segment_and_queries_are_escaped() {
        assert_eq!(
            object_url("http://h", "bk", "a b/~%#[]é"),
            "http://h/storage/v1/b/bk/o/a%20b%2F~%25%23%5B%5D%C3%A9"
        );
        assert_eq!(
            upload_url("https://s", "bk", "multipart", true, Some("projects/p/keys/k 1")),
            "https://s/upload/storage/v1/b/bk/o?uploadType=multipart&ifGenerationMatch=0&kmsKeyName=projects%2Fp%2Fkeys%2Fk%201"
        );
        assert_eq!(
            upload_url("https://s", "bk", "resumable", false, None),
            "https://s/upload/storage/v1/b/bk/o?uploadType=resumable"
        );
        assert_eq!(query(&[("prefix", "p/a+b&c")]), "prefix=p%2Fa%2Bb%26c");
    }

    #[test]
    fn the_emulator_host_wins_and_needs_no_credentials() {
        let mut gcs = GcsSettings::default();
        let common = CommonSettings::default();
        assert_eq!(base_url(&common, &gcs), DEFAULT_BASE_URL);
        gcs.environment.emulator_host = Some("127.0.0.1:4443".into());
        assert_eq!(base_url(&common, &gcs), "http://127.0.0.1:4443");
        gcs.environment.emulator_host = Some("https://e:1/".into());
        assert_eq!(base_url(&common, &gcs), "https://e:1");
        gcs.service_account_key = Some(ServiceAccountKey("not json".into()));
        assert_eq!(auth_source(&gcs).unwrap(), Auth::None);
    }

    #[test]
    fn credentials_are_resolved_in_barmans_order_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let mut gcs = GcsSettings::default();
        assert_eq!(auth_source(&gcs).unwrap(), Auth::MetadataServer);
        let gcloud = dir.path().join(".config/gcloud");
        std::fs::create_dir_all(&gcloud).unwrap();
        std::fs::write(gcloud.join("application_default_credentials.json"), "{}").unwrap();
        gcs.environment.home = Some(dir.path().into());
        assert!(
            matches!(auth_source(&gcs).unwrap(), Auth::File(p) if p.ends_with("application_default_credentials.json"))
        );
        gcs.environment.application_credentials = Some(dir.path().join("missing.json"));
        let err = auth_source(&gcs).unwrap_err().to_string();
        assert!(
            err.contains("GOOGLE_APPLICATION_CREDENTIALS names") && err.contains("missing.json"),
            "{err}"
        );
        gcs.gke_environment = true;
        assert_eq!(auth_source(&gcs).unwrap(), Auth::MetadataServer);
        gcs.service_account_key = Some(ServiceAccountKey(
            r#"{"type":"authorized_user","client_id":"x","private_key":"SECRETKEY"}"#.into(),
        ));
        let err = auth_source(&gcs).unwrap_err().to_string();
        assert!(
            err.contains("'authorized_user'") && !err.contains("SECRETKEY"),
            "{err}"
        );
        gcs.service_account_key = Some(ServiceAccountKey(
            r#"{"type":"service_account","client_email":"a@b","private_key_id":"1","private_key":"k"}"#.into(),
        ));
        assert_eq!(auth_source(&gcs).unwrap(), Auth::Key);
        assert!(!format!("{gcs:?}").contains("private_key"));
    }

    #[test]
    fn quoted_values_never_reach_a_message() {
        assert_eq!(
            without_values(r#"invalid type: string "MIIsecret", expected u64 at line 1"#),
            r#"invalid type: string "…", expected u64 at line 1"#
        );
        assert_eq!(
            without_values("missing field `private_key_id`"),
            "missing field `private_key_id`"
        );
    }

    #[test]
    fn refusals_are_told_apart_with_their_fix() {
        let f = |status, msg: &str, bucket_level| GcsFailure {
            refusal: refusal_of(status, msg, bucket_level),
            status,
            op: "upload".into(),
            message: msg.into(),
            tries: 3,
        };
        let text = |status, msg: &str, bucket_level| {
            f(status, msg, bucket_level)
                .storage_error("k", "https://storage.googleapis.com", "bk")
                .map(|e| e.to_string())
        };
        let t401 = text(401, "Invalid Credentials", false).unwrap();
        assert!(
            t401.contains("expired or invalid") && t401.contains("GOOGLE_APPLICATION_CREDENTIALS"),
            "{t401}"
        );
        let t403 = text(
            403,
            "sa@p.iam.gserviceaccount.com does not have storage.objects.create access",
            false,
        )
        .unwrap();
        assert!(
            t403.contains("storage.objects.create") && t403.contains("roles/storage.objectAdmin"),
            "{t403}"
        );
        let t404 = text(404, "The specified bucket does not exist.", false).unwrap();
        assert_eq!(t404, "the bucket 'bk' does not exist at https://storage.googleapis.com; create it or fix the destination path");
        assert!(text(404, "Not Found", true)
            .unwrap()
            .contains("does not exist"));
        assert_eq!(text(404, "No such object: bk/k", false), None);
        let t503 = text(503, "backend error", false).unwrap();
        assert!(
            t503.contains("HTTP 503") && t503.contains("3 tries"),
            "{t503}"
        );

        // object_store's kinds, which the rest of the crate reads.
        for (status, kind) in [
            (404, "NotFound"),
            (412, "Precondition"),
            (401, "Unauthenticated"),
            (403, "PermissionDenied"),
        ] {
            let e = f(status, "x", false).into_store_error("k");
            assert!(format!("{e:?}").starts_with(kind), "{status}: {e:?}");
        }
        let e = f(401, "x", false).into_store_error("k");
        assert_eq!(failure_of(&e).map(|f| f.refusal), Some(Refusal::Token));
        assert_eq!(
            error_message(r#"{"error":{"code":403,"message":"no access","errors":[]}}"#),
            "no access"
        );
        assert_eq!(error_message("Not Found\n"), "Not Found");
    }

    #[test]
    fn chunks_are_256_kib_multiples_and_ranges_follow_the_protocol() {
        assert_eq!(aligned(CHUNK_GRANULARITY - 1), 0);
        assert_eq!(aligned(8 << 20), 8 << 20);
        assert_eq!(aligned((5 << 20) + 3), 5 << 20);
        assert_eq!(content_range(0, 262144, None), "bytes 0-262143/*");
        assert_eq!(
            content_range(262144, 5, Some(262149)),
            "bytes 262144-262148/262149"
        );
        assert_eq!(content_range(262144, 0, Some(262144)), "bytes */262144");
        assert_eq!(content_range(0, 0, Some(0)), "bytes */0");
        assert_eq!(persisted(Some("bytes=0-262143")), 262144);
        assert_eq!(persisted(None), 0);
    }

    #[test]
    fn bodies_are_split_without_copies_and_compacted_on_demand() {
        let mut c = Chunks(vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defgh"),
        ]);
        let head = c.split_to(4);
        assert_eq!((head.len(), c.len()), (4, 4));
        assert_eq!(head.compact().0, [Bytes::from_static(b"abcd")]);
        assert_eq!(c.0, [Bytes::from_static(b"efgh")]);
        assert_eq!(c.split_to(10).len(), 4);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn uploads_carry_tags_as_metadata_in_one_multipart_body() {
        let meta = upload_metadata("p/a b", &[("k".into(), "v 1".into())]);
        assert_eq!(meta, r#"{"metadata":{"k":"v 1"},"name":"p/a b"}"#);
        let body = multipart_body("XX", "{}", &PutPayload::from_static(b"data")).compact();
        assert_eq!(
            &body.0[0][..],
            b"--XX\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{}\r\n--XX\r\nContent-Type: application/octet-stream\r\n\r\ndata\r\n--XX--\r\n"
        );
        assert_ne!(boundary(), boundary());
        let mut set = object_store::TagSet::default();
        set.push("a b", "c&d");
        assert_eq!(tags_of(&set), vec![("a b".to_string(), "c&d".to_string())]);
    }
}
