//! Amazon S3 and S3-compatible stores: the settings, building the client, and
//! reading the store's error answers into [`StorageError`]s.
//!
//! Nothing here reads the process environment: what boto3 (and object_store's
//! `from_env`) would take from `AWS_*` variables comes in an [`AwsEnvironment`]
//! captured once by the caller.

use super::CommonSettings;
use crate::{Denial, StorageError};
use barrelman_core::layout::Destination;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::ObjectStore;
use std::sync::{Arc, Once};

/// S3 URL addressing, as barman's `--addressing-style`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AddressingStyle {
    /// Path style with a custom endpoint, virtual-hosted style against AWS.
    #[default]
    Auto,
    /// `https://bucket.host/key`.
    Virtual,
    /// `https://host/bucket/key`.
    Path,
}

/// Static S3 credentials, when they do not come from the environment.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Keys {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
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

/// The `AWS_*` variables of an environment, captured once (by the command line,
/// from its process) and handed to the libraries, which never read the process
/// environment themselves. A sidecar serving several clusters passes an empty one,
/// or one per cluster.
///
/// They are what boto3 and object_store's `from_env` would read: credentials,
/// region, endpoint, profile names and files, CA bundle, web identity and container
/// credentials, instance-metadata switches. The order of capture is kept: where two
/// names set the same client setting, the later one wins, as with `from_env`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AwsEnvironment {
    vars: Vec<(String, String)>,
}

impl std::fmt::Debug for AwsEnvironment {
    // Names only: values include secret keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.vars.iter().map(|(name, _)| name))
            .finish()
    }
}

impl AwsEnvironment {
    /// The `AWS_*` variables among `vars` (name, value), in their order.
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .filter(|(k, _)| k.starts_with("AWS_"))
                .collect(),
        }
    }

    /// The value of `name` as set, possibly empty; `None` when unset.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` when it is set and not empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.var(name).filter(|v| !v.is_empty())
    }

    /// Every captured variable, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// How to reach an S3 store, beyond the [`CommonSettings`].
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// `--addressing-style`.
    pub addressing_style: AddressingStyle,
    /// Explicit credentials (from the ObjectStore's secrets or an AWS profile);
    /// else those of [`S3Settings::environment`], else an instance role.
    pub keys: Option<S3Keys>,
    /// Explicit region; else `AWS_REGION`/`AWS_DEFAULT_REGION` of the environment,
    /// else `us-east-1`.
    pub region: Option<String>,
    /// `-e/--encryption`: `AES256` or `aws:kms`.
    pub encryption: Option<String>,
    /// `--sse-kms-key-id`.
    pub sse_kms_key_id: Option<String>,
    /// The captured `AWS_*` variables everything not set above comes from.
    pub environment: AwsEnvironment,
}

impl S3Settings {
    /// Whether a session token goes with the requests.
    pub(crate) fn sends_session_token(&self) -> bool {
        match &self.keys {
            Some(keys) => keys.session_token.as_ref().is_some_and(|t| !t.is_empty()),
            None => self.environment.non_empty("AWS_SESSION_TOKEN").is_some(),
        }
    }
}

/// reqwest is built without a bundled crypto provider; install ring once per process.
pub(crate) fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Where S3 credentials will come from, decided before any request: a half-set pair
/// of keys, or no source at all, is named here instead of surfacing later as a
/// confusing refusal from the store or the instance metadata service.
fn check_credential_source(
    keys: Option<&S3Keys>,
    env: &AwsEnvironment,
) -> Result<(), StorageError> {
    if keys.is_some() {
        return Ok(());
    }
    let set = |k: &str| env.non_empty(k).is_some();
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
    let metadata_off = env
        .var("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !role && metadata_off {
        return Err(StorageError::NoCredentials {
            detail: "AWS_ACCESS_KEY_ID is not set and the instance metadata service is disabled"
                .into(),
        });
    }
    Ok(())
}

/// A builder configured from the captured variables, as `AmazonS3Builder::from_env`
/// configures one from the process's: every `AWS_*` name object_store knows.
fn builder_from(env: &AwsEnvironment) -> AmazonS3Builder {
    env.iter().fold(AmazonS3Builder::new(), |b, (name, value)| {
        match name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            Ok(key) => b.with_config(key, value),
            Err(_) => b,
        }
    })
}

/// Opens the bucket of `dest`; `bulk_delete` false deletes one object per request.
pub(crate) fn open(
    dest: &Destination,
    common: &CommonSettings,
    s3: &S3Settings,
    bulk_delete: bool,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let env = &s3.environment;
    check_credential_source(s3.keys.as_ref(), env)?;
    let mut client = common.client_options()?;
    // The captured environment supplies AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    // AWS_SESSION_TOKEN, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, web identity and
    // container credentials; the settings below override it.
    let mut b = builder_from(env)
        .with_bucket_name(&dest.bucket)
        .with_disable_bulk_delete(!bulk_delete)
        .with_retry(common.retry_config());
    let region = s3
        .region
        .clone()
        .or_else(|| env.var("AWS_REGION").map(String::from))
        .or_else(|| env.var("AWS_DEFAULT_REGION").map(String::from))
        .unwrap_or_else(|| "us-east-1".to_string());
    b = b.with_region(region);
    let endpoint = common
        .endpoint_url
        .clone()
        .or_else(|| env.var("AWS_ENDPOINT_URL_S3").map(String::from))
        .or_else(|| env.var("AWS_ENDPOINT_URL").map(String::from));
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
    let virtual_hosted = match s3.addressing_style {
        AddressingStyle::Virtual => true,
        AddressingStyle::Path => false,
        AddressingStyle::Auto => endpoint.is_none(),
    };
    b = b.with_virtual_hosted_style_request(virtual_hosted);
    if let Some(keys) = &s3.keys {
        b = b
            .with_access_key_id(&keys.access_key_id)
            .with_secret_access_key(&keys.secret_access_key);
        if let Some(t) = &keys.session_token {
            b = b.with_token(t);
        }
    }
    if let Some(enc) = &s3.encryption {
        b = b.with_config(setting_key("aws_server_side_encryption")?, enc);
    }
    if let Some(kms) = &s3.sse_kms_key_id {
        b = b.with_config(setting_key("aws_sse_kms_key_id")?, kms);
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
        common.read_timeout().as_secs_f64(),
        common.call_deadline().as_secs_f64()
    );
    let store = b.with_client_options(client).build().map_err(|e| {
        StorageError::Config(format!("cannot configure S3 access for {}: {e}", dest.url))
    })?;
    Ok(Arc::new(store))
}

fn setting_key(key: &str) -> Result<AmazonS3ConfigKey, StorageError> {
    key.parse()
        .map_err(|e| StorageError::Config(format!("internal: unknown S3 setting {key}: {e}")))
}

// ---- Reading the store's answers -------------------------------------------------
//
// object_store reports S3 failures as text (status lines, XML bodies, reqwest causes);
// these read the codes and statuses out of it.

/// What a store error is classified against: where the request went and how.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    pub(crate) endpoint: String,
    pub(crate) bucket: String,
    /// A session token was sent with the keys.
    pub(crate) session_token: bool,
    pub(crate) read_timeout: std::time::Duration,
    /// The store is Azure Blob Storage (its identity endpoints differ from AWS's).
    pub(crate) azure: bool,
}

impl StorageError {
    /// Classifies an `object_store` error about `key`.
    pub(crate) fn from_store(err: object_store::Error, key: &str, ctx: &RequestContext) -> Self {
        use object_store::Error as E;
        let (endpoint, bucket) = (ctx.endpoint.as_str(), ctx.bucket.as_str());
        let detail = first_line(&err);
        let location = || format!("bucket '{bucket}' at {endpoint}");
        let chain = chain_text(&err);
        // A GCS refusal says exactly what it is (store/gcs.rs).
        if let Some(e) =
            super::gcs::failure_of(&err).and_then(|f| f.storage_error(key, endpoint, bucket))
        {
            return e;
        }
        match &err {
            // Azure's managed identity (IMDS) or token endpoint did not give a token.
            _ if ctx.azure
                && (chain.contains("169.254.169.254") || chain.contains("token request")) =>
            {
                Self::NoAzureCredentials {
                    detail: format!("no token could be had for the configured identity ({detail})"),
                }
            }
            // No static credentials: the client asked the instance metadata service,
            // which is not there (or refused).
            _ if chain.contains("169.254.169.254") || chain.contains("169.254.170.2") => {
                Self::NoCredentials {
                    detail: "AWS_ACCESS_KEY_ID is not set and no instance role answered".into(),
                }
            }
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => Self::AccessDenied {
                location: location(),
                denial: Denial::from_text(&detail, ctx.session_token),
            },
            // The whole chain (lowercase): the error code may sit past the shortened
            // detail (a long listing URL before Azure's XML body).
            _ if chain.contains("nosuchbucket")
                || chain.contains("bucket does not exist")
                || chain.contains("containernotfound") =>
            {
                Self::BucketMissing {
                    bucket: bucket.to_string(),
                    endpoint: endpoint.to_string(),
                }
            }
            // After the bucket check: some stores answer a missing bucket with a 404 too.
            E::NotFound { .. } => Self::ObjectNotFound {
                key: key.to_string(),
                location: location(),
            },
            _ if detail.contains("AccessDenied")
                || detail.contains("SignatureDoesNotMatch")
                || detail.contains("InvalidAccessKeyId")
                || detail.contains("ExpiredToken")
                || detail.contains("403 Forbidden") =>
            {
                Self::AccessDenied {
                    location: location(),
                    denial: Denial::from_text(&detail, ctx.session_token),
                }
            }
            _ if is_connect_failure(&err) => Self::Unreachable {
                endpoint: endpoint.to_string(),
                detail: root_cause(&err),
            },
            _ if server_status(&chain).is_some_and(|s| s >= 500) => Self::ServerError {
                endpoint: endpoint.to_string(),
                key: key.to_string(),
                status: server_status(&chain).unwrap_or_default(),
                code: s3_error_code(&err),
                tries: retries_made(&chain) + 1,
            },
            // reqwest's "operation timed out" (not object_store's "retry_timeout"
            // bookkeeping, which every retried error carries).
            _ if chain.contains("timed out") => Self::TimedOut {
                endpoint: endpoint.to_string(),
                key: key.to_string(),
                read_timeout: ctx.read_timeout,
            },
            _ => Self::Store {
                key: key.to_string(),
                transient: is_transient_failure(&err),
                detail,
            },
        }
    }
}

impl Denial {
    /// From the store's answer; `session_token` tells whether one was sent.
    fn from_text(text: &str, session_token: bool) -> Self {
        // Azure's codes first: they never mix with S3's.
        if text.contains("AuthorizationPermissionMismatch") {
            return Self::AzureMissingRole;
        }
        // Azure answers a bad signature with AuthenticationFailed, Azurite with
        // AuthorizationFailure; both say "Server failed to authenticate".
        if text.contains("AuthenticationFailed") || text.contains("Server failed to authenticate") {
            let expired = [
                "Signed expiry time",
                "not valid in the specified time frame",
            ];
            return if expired.iter().any(|e| text.contains(e)) {
                Self::AzureSasExpired
            } else {
                Self::AzureWrongKey
            };
        }
        if text.contains("AuthorizationFailure") {
            return Self::AzureNotAuthorized;
        }
        let named = if text.contains("ExpiredToken")
            || text.contains("InvalidToken")
            || text.contains("TokenRefreshRequired")
        {
            Self::BadSessionToken
        } else if text.contains("SignatureDoesNotMatch") {
            Self::WrongSecret
        } else if text.contains("InvalidAccessKeyId") {
            Self::UnknownAccessKey
        } else {
            Self::NoPermission
        };
        match named {
            Self::WrongSecret | Self::UnknownAccessKey if session_token => {
                Self::SessionTokenSuspect
            }
            other => other,
        }
    }
}

fn chain_text(err: &object_store::Error) -> String {
    let mut text = String::new();
    let mut cur: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = cur {
        text.push_str(&e.to_string().to_ascii_lowercase());
        text.push(' ');
        cur = e.source();
    }
    text
}

fn is_connect_failure(err: &object_store::Error) -> bool {
    let text = chain_text(err);
    [
        "connection refused",
        "error trying to connect",
        "dns error",
        "tcp connect",
    ]
    .iter()
    .any(|s| text.contains(s))
}

fn is_transient_failure(err: &object_store::Error) -> bool {
    let text = chain_text(err);
    [
        "connection reset",
        "connection closed",
        "broken pipe",
        "timed out",
        "timeout",
        "error sending request",
        "incomplete message",
        "unexpected eof",
        "server error",
        " 500",
        " 502",
        " 503",
        " 504",
        "slowdown",
        "slow down",
        "internalerror",
    ]
    .iter()
    .any(|s| text.contains(s))
}

/// The HTTP status of the store's answer, from object_store's "status code: 503 …".
fn server_status(chain: &str) -> Option<u16> {
    let at = chain.find("status code: ")? + "status code: ".len();
    chain.get(at..at + 3)?.parse().ok()
}

/// How many times object_store retried the request ("after 8 retries").
fn retries_made(chain: &str) -> usize {
    chain
        .find("after ")
        .and_then(|at| {
            let rest = &chain[at + "after ".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            rest[digits.len()..]
                .starts_with(" retries")
                .then(|| digits.parse().ok())?
        })
        .unwrap_or(0)
}

/// The `<Code>` of an S3 error body (`SlowDown`, `InternalError`).
fn s3_error_code(err: &dyn std::error::Error) -> Option<String> {
    let mut text = String::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        text.push_str(&e.to_string());
        cur = e.source();
    }
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(text[start..start + len].to_string()).filter(|c| !c.is_empty() && c.len() < 64)
}

/// The innermost cause of an error (e.g. "Connection refused (os error 111)"): what
/// a person needs, without the request URLs and retry bookkeeping around it.
pub(super) fn root_cause(err: &dyn std::error::Error) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string().replace('\n', " ")
}

/// The error's message and causes on one line, shortened: object_store messages can
/// embed whole response bodies.
pub(crate) fn first_line(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    let joined = parts.join(": ").replace('\n', " ");
    if joined.len() > 400 {
        let mut end = 400;
        while !joined.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &joined[..end])
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn credential_sources_are_checked_before_any_request() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            AwsEnvironment::from_vars(pairs.iter().copied())
        };
        let ok = |pairs| check_credential_source(None, &env(pairs)).is_ok();
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
        let err = check_credential_source(None, &env(&[("AWS_ACCESS_KEY_ID", "AKIDSECRETISH")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AWS_SECRET_ACCESS_KEY") && !err.contains("AKIDSECRETISH"),
            "{err}"
        );
    }

    #[test]
    fn the_captured_environment_keeps_aws_names_only_and_never_prints_values() {
        let env = AwsEnvironment::from_vars([
            ("HOME", "/root"),
            ("AWS_REGION", ""),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
        ]);
        assert_eq!(env.var("HOME"), None);
        assert_eq!(env.var("AWS_REGION"), Some(""));
        assert_eq!(env.non_empty("AWS_REGION"), None);
        assert_eq!(env.non_empty("AWS_SECRET_ACCESS_KEY"), Some("s3cr3t"));
        assert!(!format!("{env:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_server_error_is_read_from_object_stores_text() {
        let chain = "generic s3 error: error performing put http://127.0.0.1:9000/b/k in 2.1s, \
                     after 7 retries, max_retries: 32, retry_timeout: 2s  - server returned \
                     non-2xx status code: 503 service unavailable: <?xml"
            .to_string();
        assert_eq!(server_status(&chain), Some(503));
        assert_eq!(retries_made(&chain), 7);
        assert_eq!(retries_made("error performing get in 1s - timed out"), 0);
        assert_eq!(server_status("no status here"), None);
        let body = io::Error::other(
            "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>m</Message></Error>",
        );
        assert_eq!(s3_error_code(&body).as_deref(), Some("SlowDown"));
        assert_eq!(s3_error_code(&io::Error::other("plain")), None);
    }

    #[test]
    fn azure_refusals_are_told_apart() {
        let body = |code: &str, message: &str| {
            format!(
                "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\
                 <Error><Code>{code}</Code><Message>{message}</Message></Error>"
            )
        };
        let cases = [
            (
                body(
                    "AuthenticationFailed",
                    "Server failed to authenticate the request. Make sure the value of \
                     Authorization header is formed correctly including the signature.",
                ) + "<AuthenticationErrorDetail>The MAC signature found in the HTTP request \
                     is not the same as any computed signature.</AuthenticationErrorDetail>",
                Denial::AzureWrongKey,
            ),
            (
                body(
                    "AuthorizationFailure",
                    "Server failed to authenticate the request. Make sure the value of the \
                     Authorization header is formed correctly including the signature.",
                ),
                Denial::AzureWrongKey,
            ),
            (
                body(
                    "AuthenticationFailed",
                    "Server failed to authenticate the request.",
                ) + "<AuthenticationErrorDetail>Signed expiry time [Mon, 01 Jan 2024] must \
                       be after signed start time</AuthenticationErrorDetail>",
                Denial::AzureSasExpired,
            ),
            (
                body(
                    "AuthenticationFailed",
                    "Signature not valid in the specified time frame",
                ),
                Denial::AzureSasExpired,
            ),
            (
                body(
                    "AuthorizationPermissionMismatch",
                    "This request is not authorized to perform this operation using this \
                     permission.",
                ),
                Denial::AzureMissingRole,
            ),
            (
                body(
                    "AuthorizationFailure",
                    "This request is not authorized to perform this operation.",
                ),
                Denial::AzureNotAuthorized,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Denial::from_text(&text, false), want, "{text}");
        }
        assert!(Denial::AzureMissingRole
            .fix()
            .contains("Storage Blob Data Contributor"));
        assert!(Denial::AzureSasExpired.fix().contains("SAS token"));
        // A missing container is the missing bucket, with its name.
        let ctx = RequestContext {
            endpoint: "http://127.0.0.1:1/acct".into(),
            bucket: "ctr".into(),
            session_token: false,
            read_timeout: std::time::Duration::from_secs(1),
            azure: true,
        };
        let missing = object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: body(
                "ContainerNotFound",
                "The specified container does not exist.",
            )
            .into(),
        };
        assert!(matches!(
            StorageError::from_store(missing, "k", &ctx),
            StorageError::BucketMissing { bucket, .. } if bucket == "ctr"
        ));
        let imds = object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: "Error performing token request: error sending request for url \
                     (http://169.254.169.254/metadata/identity/oauth2/token)"
                .into(),
        };
        let err = StorageError::from_store(imds, "k", &ctx);
        assert!(
            matches!(err, StorageError::NoAzureCredentials { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_refusal_with_a_session_token_names_the_token() {
        for code in ["SignatureDoesNotMatch", "InvalidAccessKeyId"] {
            assert_eq!(
                Denial::from_text(code, true),
                Denial::SessionTokenSuspect,
                "{code}"
            );
        }
        assert_eq!(
            Denial::from_text("SignatureDoesNotMatch", false),
            Denial::WrongSecret
        );
        assert_eq!(
            Denial::from_text("ExpiredToken", false),
            Denial::BadSessionToken
        );
        assert_eq!(
            Denial::from_text("AccessDenied", true),
            Denial::NoPermission
        );
        let text =
            Denial::SessionTokenSuspect.cause().to_string() + Denial::SessionTokenSuspect.fix();
        assert!(text.contains("session token") && text.contains("AWS_SESSION_TOKEN"));
    }

    /// A 404 for an object is "not found" (exit 1), naming the key; a 404 that
    /// names a missing bucket stays the missing bucket with its fix.
    #[test]
    fn a_missing_object_and_a_missing_bucket_are_told_apart() {
        let ctx = RequestContext {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "bkt".into(),
            session_token: false,
            read_timeout: std::time::Duration::from_secs(60),
            azure: false,
        };
        let not_found = |text: &str| object_store::Error::NotFound {
            path: "p/srv/base/x/data.tar".into(),
            source: text.to_string().into(),
        };
        let object = StorageError::from_store(
            not_found("Client error with status 404 Not Found: NoSuchKey"),
            "p/srv/base/x/data.tar",
            &ctx,
        );
        assert!(
            matches!(&object, StorageError::ObjectNotFound { key, location }
                if key == "p/srv/base/x/data.tar" && location.contains("'bkt'")),
            "{object:?}"
        );
        assert_eq!(
            barrelman_core::Classified::class(&object),
            barrelman_core::ErrorClass::NotFound
        );
        let bucket = StorageError::from_store(
            not_found("Client error with status 404 Not Found: NoSuchBucket"),
            "p/srv/base/x/data.tar",
            &ctx,
        );
        assert!(
            matches!(&bucket, StorageError::BucketMissing { bucket, .. } if bucket == "bkt"),
            "{bucket:?}"
        );
    }
}
