//! Azure Blob Storage: the settings, the credentials in barman-cloud's order, and
//! building object_store's client (block blobs: staged blocks and a block list).
//!
//! Nothing here reads the process environment: the `AZURE_*` variables the Azure
//! SDK for Python would read come in an [`AzureEnvironment`] captured by the caller.
//!
//! barman-cloud resolves credentials in this order (its `_reinit_session`):
//! `--credential` (azure-cli, managed-identity, default) >
//! `AZURE_STORAGE_CONNECTION_STRING` > `AZURE_STORAGE_SAS_TOKEN` >
//! `AZURE_STORAGE_KEY` > `DefaultAzureCredential`. A connection string also names
//! the endpoint and the account, and then the URL's host is not used (that is how
//! the emulator form `http://HOST:PORT/ACCOUNT/CONTAINER/PATH` is reached).

use super::CommonSettings;
use crate::StorageError;
use barrelman_core::layout::{Destination, Provider};
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::ObjectStore;
use std::sync::Arc;

/// The account and key every Azure Storage emulator accepts (Azurite's published
/// development credentials; not a secret), used for `UseDevelopmentStorage=true`.
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Azure's limit on blocks per blob, as barman's `MAX_CHUNKS_PER_FILE`.
pub const MAX_BLOCKS: u64 = 50_000;
/// The smallest block barman stages (`MIN_CHUNK_SIZE`).
pub const MIN_BLOCK_SIZE: u64 = 64 << 10;

/// `--credential` / `--azure-credential`: a credential barman builds itself,
/// ignoring the keys in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AzureCredentialKind {
    /// `azure-cli`: the token of the logged-in `az` command line.
    AzureCli,
    /// `managed-identity`: the pod's or VM's managed identity (IMDS); a
    /// user-assigned one when `AZURE_CLIENT_ID` is set.
    ManagedIdentity,
    /// `default`: the default credential chain (client secret, workload identity,
    /// managed identity).
    Default,
}

impl AzureCredentialKind {
    /// From barman's flag value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "azure-cli" => Some(Self::AzureCli),
            "managed-identity" => Some(Self::ManagedIdentity),
            "default" => Some(Self::Default),
            _ => None,
        }
    }
}

/// The variables of an environment the Azure SDK would read, captured once (by
/// the command line, from its process). Values are secret: `Debug` names only
/// which are set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AzureEnvironment {
    vars: Vec<(&'static str, String)>,
}

/// The variables captured into an [`AzureEnvironment`].
pub const AZURE_VARIABLES: &[&str] = &[
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "REQUESTS_CA_BUNDLE",
];

impl std::fmt::Debug for AzureEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.vars.iter().map(|(name, _)| name))
            .finish()
    }
}

impl AzureEnvironment {
    /// The variables of [`AZURE_VARIABLES`] among `vars` (the last of a name wins).
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut out = Self::default();
        for (k, v) in vars {
            if let Some(name) = AZURE_VARIABLES.iter().find(|n| **n == k.as_ref()) {
                out.vars.retain(|(n, _)| n != name);
                out.vars.push((name, v.into()));
            }
        }
        out
    }

    /// The value of `name` as set (possibly empty); `None` when unset.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    fn non_empty(&self, name: &str) -> Option<&str> {
        self.var(name).filter(|v| !v.is_empty())
    }
}

/// Secret values given explicitly (from an ObjectStore's `azureCredentials`);
/// each takes the place of the variable of the same meaning.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AzureKeys {
    /// `connectionString` (`AZURE_STORAGE_CONNECTION_STRING`).
    pub connection_string: Option<String>,
    /// `storageSasToken` (`AZURE_STORAGE_SAS_TOKEN`).
    pub sas_token: Option<String>,
    /// `storageKey` (`AZURE_STORAGE_KEY`).
    pub account_key: Option<String>,
}

impl std::fmt::Debug for AzureKeys {
    // Never print secrets, not even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureKeys")
            .field("connection_string", &self.connection_string.is_some())
            .field("sas_token", &self.sas_token.is_some())
            .field("account_key", &self.account_key.is_some())
            .finish()
    }
}

/// How to reach an Azure container, beyond the [`CommonSettings`].
#[derive(Debug, Clone, Default)]
pub struct AzureSettings {
    /// `--credential`: overrides every key.
    pub credential: Option<AzureCredentialKind>,
    /// Explicit secrets, before those of [`AzureSettings::environment`].
    pub keys: AzureKeys,
    /// `--encryption-scope`: the scope blobs are written with.
    pub encryption_scope: Option<String>,
    /// `--max-block-size`, bytes: the block size of blobs staged in blocks.
    pub max_block_size: Option<u64>,
    /// `--max-concurrency`: blocks of one blob uploaded at the same time.
    pub max_concurrency: Option<usize>,
    /// `--max-single-put-size`, bytes: larger blobs are staged in blocks.
    pub max_single_put_size: Option<u64>,
    /// The captured `AZURE_*` variables everything not set above comes from.
    pub environment: AzureEnvironment,
}

/// A parsed storage connection string. Its secret parts never reach `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectionString {
    /// `AccountName`.
    pub account_name: Option<String>,
    /// `AccountKey` (secret).
    pub account_key: Option<String>,
    /// `SharedAccessSignature` (secret).
    pub shared_access_signature: Option<String>,
    /// `BlobEndpoint`, without a trailing `/`.
    pub blob_endpoint: Option<String>,
    /// `DefaultEndpointsProtocol` (`https` unless given).
    pub protocol: Option<String>,
    /// `EndpointSuffix` (`core.windows.net` unless given).
    pub endpoint_suffix: Option<String>,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("account_name", &self.account_name)
            .field(
                "account_key",
                &self.account_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "shared_access_signature",
                &self.shared_access_signature.as_ref().map(|_| "<redacted>"),
            )
            .field("blob_endpoint", &self.blob_endpoint)
            .field("protocol", &self.protocol)
            .field("endpoint_suffix", &self.endpoint_suffix)
            .finish()
    }
}

impl ConnectionString {
    /// Parses `Name=value;Name=value;…` (names case-insensitive, values may hold
    /// `=`, as base64 keys and SAS tokens do). Errors name the part, never a value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut cs = Self::default();
        let mut dev = false;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err("a part of the connection string has no '='; expected \
                            Name=value pairs separated by ';'"
                    .into());
            };
            let value = value.trim().to_string();
            match name.trim().to_ascii_lowercase().as_str() {
                "accountname" => cs.account_name = Some(value),
                "accountkey" => cs.account_key = Some(value),
                "sharedaccesssignature" => cs.shared_access_signature = Some(value),
                "blobendpoint" => cs.blob_endpoint = Some(value.trim_end_matches('/').into()),
                "defaultendpointsprotocol" => cs.protocol = Some(value.to_ascii_lowercase()),
                "endpointsuffix" => cs.endpoint_suffix = Some(value),
                "usedevelopmentstorage" => dev = value.eq_ignore_ascii_case("true"),
                // Queue, table and file endpoints and the like: not for blobs.
                _ => {}
            }
        }
        if dev {
            cs.account_name.get_or_insert_with(|| DEV_ACCOUNT.into());
            cs.account_key.get_or_insert_with(|| DEV_KEY.into());
            cs.blob_endpoint
                .get_or_insert_with(|| format!("http://127.0.0.1:10000/{DEV_ACCOUNT}"));
        }
        if cs.account_key.is_none() && cs.shared_access_signature.is_none() {
            return Err(
                "the connection string has neither AccountKey nor SharedAccessSignature".into(),
            );
        }
        if cs.account_key.is_some() && cs.account_name.is_none() {
            return Err("the connection string has an AccountKey but no AccountName".into());
        }
        if cs.blob_endpoint.is_none() && cs.account_name.is_none() {
            return Err("the connection string has neither BlobEndpoint nor AccountName".into());
        }
        if let Some(p) = &cs.protocol {
            if p != "http" && p != "https" {
                return Err(format!(
                    "DefaultEndpointsProtocol is '{p}' in the connection string; use https or http"
                ));
            }
        }
        Ok(cs)
    }

    /// The blob service URL: `BlobEndpoint`, else
    /// `PROTOCOL://ACCOUNT.blob.SUFFIX`.
    pub fn endpoint(&self) -> String {
        match &self.blob_endpoint {
            Some(e) => e.clone(),
            None => format!(
                "{}://{}.blob.{}",
                self.protocol.as_deref().unwrap_or("https"),
                self.account_name.as_deref().unwrap_or_default(),
                self.endpoint_suffix
                    .as_deref()
                    .unwrap_or("core.windows.net")
            ),
        }
    }
}

/// The credential requests are made with, decided before any request.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// Shared key signing; `source` names where the key came from.
    AccountKey { key: String, source: &'static str },
    /// A SAS token's query pairs.
    Sas { token: String, source: &'static str },
    /// The `az` command line's token.
    AzureCli,
    /// IMDS, with a user-assigned client id when set.
    ManagedIdentity { client_id: Option<String> },
    /// A service principal's secret (`AZURE_CLIENT_SECRET`).
    ClientSecret {
        client_id: String,
        tenant_id: String,
        secret: String,
        authority_host: Option<String>,
    },
    /// A federated token file (AKS workload identity).
    WorkloadIdentity {
        client_id: String,
        tenant_id: String,
        token_file: String,
        authority_host: Option<String>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

impl Credential {
    /// What kind it is, for logs (never a value).
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Self::AccountKey { source, .. } | Self::Sas { source, .. } => source,
            Self::AzureCli => "the Azure CLI's login",
            Self::ManagedIdentity { .. } => "the managed identity",
            Self::ClientSecret { .. } => "AZURE_CLIENT_SECRET",
            Self::WorkloadIdentity { .. } => "workload identity (AZURE_FEDERATED_TOKEN_FILE)",
        }
    }
}

/// Where requests go and how they are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) account: String,
    /// The account's blob service URL (for the emulator form, with the account as
    /// its path).
    pub(crate) endpoint: String,
    pub(crate) credential: Credential,
}

/// Resolves endpoint, account and credential in barman's order. Half-set
/// credentials are one sentence naming what is missing.
pub(crate) fn resolve(dest: &Destination, az: &AzureSettings) -> Result<Resolved, StorageError> {
    let env = &az.environment;
    let Provider::Azure {
        account: url_account,
        endpoint: url_endpoint,
    } = &dest.provider
    else {
        return Err(StorageError::Config(format!(
            "internal: {} is not an Azure destination",
            dest.url
        )));
    };
    let url_endpoint = url_endpoint
        .clone()
        .unwrap_or_else(|| format!("https://{url_account}.blob.core.windows.net"));
    let from_url = |credential| Resolved {
        account: url_account.clone(),
        endpoint: url_endpoint.clone(),
        credential,
    };
    if let Some(kind) = az.credential {
        return Ok(from_url(match kind {
            AzureCredentialKind::AzureCli => Credential::AzureCli,
            AzureCredentialKind::ManagedIdentity => Credential::ManagedIdentity {
                client_id: env.non_empty("AZURE_CLIENT_ID").map(String::from),
            },
            AzureCredentialKind::Default => default_chain(env)?,
        }));
    }
    let explicit = |v: &Option<String>, var: &'static str, field: &'static str| match v
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        Some(v) => Some((v.to_string(), field)),
        None => env.non_empty(var).map(|v| (v.to_string(), var)),
    };
    if let Some((text, source)) = explicit(
        &az.keys.connection_string,
        "AZURE_STORAGE_CONNECTION_STRING",
        "the ObjectStore's azureCredentials.connectionString",
    ) {
        let cs =
            ConnectionString::parse(&text).map_err(|why| StorageError::NoAzureCredentials {
                detail: format!("{source} cannot be used: {why}"),
            })?;
        let endpoint = cs.endpoint();
        let account = cs
            .account_name
            .clone()
            .unwrap_or_else(|| url_account.clone());
        let credential = match (cs.account_key, cs.shared_access_signature) {
            (Some(key), _) => Credential::AccountKey { key, source },
            (None, Some(token)) => Credential::Sas { token, source },
            (None, None) => unreachable!("ConnectionString::parse refuses it"),
        };
        return Ok(Resolved {
            account,
            endpoint,
            credential,
        });
    }
    if let Some((token, source)) = explicit(
        &az.keys.sas_token,
        "AZURE_STORAGE_SAS_TOKEN",
        "the ObjectStore's azureCredentials.storageSasToken",
    ) {
        return Ok(from_url(Credential::Sas { token, source }));
    }
    if let Some((key, source)) = explicit(
        &az.keys.account_key,
        "AZURE_STORAGE_KEY",
        "the ObjectStore's azureCredentials.storageKey",
    ) {
        return Ok(from_url(Credential::AccountKey { key, source }));
    }
    Ok(from_url(default_chain(env)?))
}

/// The default credential chain as far as it is decided by variables: a service
/// principal's secret, else workload identity, else the managed identity. A set
/// of variables that starts one of the first two but misses a part is refused.
fn default_chain(env: &AzureEnvironment) -> Result<Credential, StorageError> {
    let get = |n: &str| env.non_empty(n).map(String::from);
    let (client_id, tenant_id) = (get("AZURE_CLIENT_ID"), get("AZURE_TENANT_ID"));
    let authority_host = get("AZURE_AUTHORITY_HOST");
    // Both ids, or a sentence naming which of them `what` lacks.
    let ids = |what: &str| match (&client_id, &tenant_id) {
        (Some(c), Some(t)) => Ok((c.clone(), t.clone())),
        (c, t) => {
            let absent: Vec<&str> = [("AZURE_CLIENT_ID", c), ("AZURE_TENANT_ID", t)]
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(n, _)| *n)
                .collect();
            Err(StorageError::NoAzureCredentials {
                detail: format!(
                    "{what} is set but {} {} not",
                    absent.join(" and "),
                    if absent.len() > 1 { "are" } else { "is" }
                ),
            })
        }
    };
    if let Some(secret) = get("AZURE_CLIENT_SECRET") {
        let (client_id, tenant_id) = ids("AZURE_CLIENT_SECRET")?;
        return Ok(Credential::ClientSecret {
            client_id,
            tenant_id,
            secret,
            authority_host,
        });
    }
    if let Some(token_file) = get("AZURE_FEDERATED_TOKEN_FILE") {
        let (client_id, tenant_id) = ids("AZURE_FEDERATED_TOKEN_FILE (workload identity)")?;
        return Ok(Credential::WorkloadIdentity {
            client_id,
            tenant_id,
            token_file,
            authority_host,
        });
    }
    Ok(Credential::ManagedIdentity { client_id })
}

/// Opens the container of `dest`.
pub(crate) fn open(
    dest: &Destination,
    common: &CommonSettings,
    az: &AzureSettings,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let resolved = resolve(dest, az)?;
    let mut client = common.client_options()?;
    if resolved.endpoint.starts_with("http://") {
        client = client.with_allow_http(true);
    }
    let mut b = MicrosoftAzureBuilder::new()
        .with_account(&resolved.account)
        .with_container_name(&dest.bucket)
        .with_endpoint(resolved.endpoint.clone())
        .with_retry(common.retry_config());
    b = match &resolved.credential {
        Credential::AccountKey { key, .. } => b.with_access_key(key),
        Credential::Sas { token, .. } => b.with_config(
            object_store::azure::AzureConfigKey::SasKey,
            token.trim_start_matches('?'),
        ),
        Credential::AzureCli => b.with_use_azure_cli(true),
        Credential::ManagedIdentity { client_id } => {
            let b = b.with_credential_type("managed_identity");
            match client_id {
                Some(id) => b.with_client_id(id),
                None => b,
            }
        }
        Credential::ClientSecret {
            client_id,
            tenant_id,
            secret,
            authority_host,
        } => {
            let b = b.with_client_secret_authorization(client_id, secret, tenant_id);
            match authority_host {
                Some(h) => b.with_authority_host(h),
                None => b,
            }
        }
        Credential::WorkloadIdentity {
            client_id,
            tenant_id,
            token_file,
            authority_host,
        } => {
            let b = b
                .with_credential_type("workload_identity")
                .with_client_id(client_id)
                .with_tenant_id(tenant_id)
                .with_federated_token_file(token_file);
            match authority_host {
                Some(h) => b.with_authority_host(h),
                None => b,
            }
        }
    };
    if let Some(scope) = &az.encryption_scope {
        b = b.with_http_connector(EncryptionScope::new(scope, &resolved.credential)?);
    }
    tracing::debug!(
        "Azure container '{}' of account '{}' at {}, credentials from {}, read timeout {} s",
        dest.bucket,
        resolved.account,
        resolved.endpoint,
        resolved.credential.describe(),
        common.read_timeout().as_secs_f64(),
    );
    let store: MicrosoftAzure = b.with_client_options(client).build().map_err(|e| {
        // object_store's messages name the setting, never the key's value.
        StorageError::NoAzureCredentials {
            detail: format!(
                "the Azure client for {} cannot be configured from {} ({})",
                dest.url,
                resolved.credential.describe(),
                super::s3::first_line(&e)
            ),
        }
    })?;
    Ok(Arc::new(store))
}

/// `--encryption-scope`: every PUT (Put Blob, Put Block, Put Block List) carries
/// `x-ms-encryption-scope`. object_store has no setting for it, so the header is
/// added by the HTTP layer, after object_store has signed the request: that is
/// sound for SAS tokens and Azure AD tokens, which do not sign headers, but not for
/// shared-key signing (which covers every `x-ms-*` header), so a scope with an
/// account key is refused rather than silently dropped.
#[derive(Debug)]
struct EncryptionScope {
    scope: reqwest::header::HeaderValue,
}

impl EncryptionScope {
    fn new(scope: &str, credential: &Credential) -> Result<Self, StorageError> {
        if let Credential::AccountKey { source, .. } = credential {
            return Err(StorageError::Config(format!(
                "--encryption-scope cannot be used with an account key ({source}) in this \
                 build: shared-key signing would not cover it; use a SAS token \
                 (AZURE_STORAGE_SAS_TOKEN) or an identity (--credential), or drop \
                 --encryption-scope to use the container's default scope"
            )));
        }
        let scope = reqwest::header::HeaderValue::from_str(scope).map_err(|_| {
            StorageError::Config(format!(
                "--encryption-scope '{scope}' is not a valid encryption scope name"
            ))
        })?;
        Ok(Self { scope })
    }
}

impl object_store::client::HttpConnector for EncryptionScope {
    fn connect(
        &self,
        options: &object_store::ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        let inner = object_store::client::ReqwestConnector::default().connect(options)?;
        Ok(object_store::client::HttpClient::new(ScopedService {
            inner,
            scope: self.scope.clone(),
        }))
    }
}

#[derive(Debug)]
struct ScopedService {
    inner: object_store::client::HttpClient,
    scope: reqwest::header::HeaderValue,
}

type ServiceFuture<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<
                    object_store::client::HttpResponse,
                    object_store::client::HttpError,
                >,
            > + Send
            + 'a,
    >,
>;

impl object_store::client::HttpService for ScopedService {
    // object_store declares the trait with async_trait; this is its expansion.
    fn call<'life0, 'async_trait>(
        &'life0 self,
        mut req: object_store::client::HttpRequest,
    ) -> ServiceFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        if req.method() == reqwest::Method::PUT {
            req.headers_mut()
                .insert("x-ms-encryption-scope", self.scope.clone());
        }
        Box::pin(self.inner.execute(req))
    }
}

/// The account's blob service URL, for messages.
pub(crate) fn endpoint_label(dest: &Destination, az: &AzureSettings) -> String {
    resolve(dest, az)
        .map(|r| r.endpoint)
        .unwrap_or_else(|_| dest.url.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(url: &str, emulator: bool) -> Destination {
        Destination::parse(url, emulator).unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> AzureEnvironment {
        AzureEnvironment::from_vars(pairs.iter().copied())
    }

    #[test]
    fn connection_strings_parse_as_the_sdk_reads_them() {
        let cs = ConnectionString::parse(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5==;\
             BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;",
        )
        .unwrap();
        assert_eq!(cs.account_key.as_deref(), Some("a2V5=="));
        assert_eq!(cs.endpoint(), "http://127.0.0.1:10000/devstoreaccount1");

        let cs = ConnectionString::parse(
            "AccountName=acct;SharedAccessSignature=sv=2022&sig=x%3D;EndpointSuffix=core.chinacloudapi.cn",
        )
        .unwrap();
        assert_eq!(cs.endpoint(), "https://acct.blob.core.chinacloudapi.cn");
        assert_eq!(
            cs.shared_access_signature.as_deref(),
            Some("sv=2022&sig=x%3D")
        );

        let dev = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(dev.endpoint(), "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(dev.account_name.as_deref(), Some(DEV_ACCOUNT));

        for (text, why) in [
            (
                "AccountName=a",
                "neither AccountKey nor SharedAccessSignature",
            ),
            ("AccountKey=c2VjcmV0", "no AccountName"),
            ("AccountName=a;AccountKey=c2VjcmV0;junk", "no '='"),
            (
                "SharedAccessSignature=sig=s3cr3t",
                "neither BlobEndpoint nor AccountName",
            ),
            (
                "AccountName=a;AccountKey=c2VjcmV0;DefaultEndpointsProtocol=ftp",
                "use https or http",
            ),
        ] {
            let err = ConnectionString::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(
                !err.contains("c2VjcmV0") && !err.contains("s3cr3t"),
                "{err}"
            );
        }
        let debug = format!(
            "{:?}",
            ConnectionString::parse("AccountName=a;AccountKey=c2VjcmV0").unwrap()
        );
        assert!(!debug.contains("c2VjcmV0"), "{debug}");
    }

    #[test]
    fn credentials_follow_barmans_order() {
        let public = dest("https://acct.blob.core.windows.net/c/p", false);
        let with = |e: &[(&str, &str)], credential| {
            resolve(
                &public,
                &AzureSettings {
                    credential,
                    environment: env(e),
                    ..Default::default()
                },
            )
        };
        let all = [
            (
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=other;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/other",
            ),
            ("AZURE_STORAGE_SAS_TOKEN", "?sv=1&sig=2"),
            ("AZURE_STORAGE_KEY", "a2V5"),
        ];
        // --credential beats every key.
        let r = with(&all, Some(AzureCredentialKind::AzureCli)).unwrap();
        assert_eq!(r.credential, Credential::AzureCli);
        assert_eq!(r.endpoint, "https://acct.blob.core.windows.net");
        // The connection string beats SAS and key, and names account and endpoint.
        let r = with(&all, None).unwrap();
        assert_eq!(
            (r.account.as_str(), r.endpoint.as_str()),
            ("other", "http://127.0.0.1:1/other")
        );
        assert!(matches!(
            r.credential,
            Credential::AccountKey {
                source: "AZURE_STORAGE_CONNECTION_STRING",
                ..
            }
        ));
        // SAS beats the key.
        let r = with(&all[1..], None).unwrap();
        assert!(matches!(r.credential, Credential::Sas { .. }));
        assert_eq!(r.account, "acct");
        let r = with(&all[2..], None).unwrap();
        assert!(matches!(
            r.credential,
            Credential::AccountKey {
                source: "AZURE_STORAGE_KEY",
                ..
            }
        ));
        // Nothing: the default chain, here the managed identity.
        let r = with(&[("AZURE_CLIENT_ID", "id")], None).unwrap();
        assert_eq!(
            r.credential,
            Credential::ManagedIdentity {
                client_id: Some("id".into())
            }
        );
        // An explicit secret beats the environment's.
        let r = resolve(
            &public,
            &AzureSettings {
                keys: AzureKeys {
                    account_key: Some("bWluZQ==".into()),
                    ..Default::default()
                },
                environment: env(&all[1..]),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            matches!(r.credential, Credential::Sas { .. }),
            "SAS still comes first"
        );
    }

    #[test]
    fn workload_identity_and_client_secret_need_every_part() {
        let public = dest("https://acct.blob.core.windows.net/c", false);
        let chain = |e: &[(&str, &str)]| {
            resolve(
                &public,
                &AzureSettings {
                    credential: Some(AzureCredentialKind::Default),
                    environment: env(e),
                    ..Default::default()
                },
            )
        };
        let wi = chain(&[
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            ("AZURE_CLIENT_ID", "cid"),
            ("AZURE_TENANT_ID", "tid"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
        ])
        .unwrap();
        assert!(
            matches!(wi.credential, Credential::WorkloadIdentity { ref authority_host, .. } if authority_host.is_some())
        );
        let err = chain(&[
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
            ("AZURE_CLIENT_ID", "cid"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("AZURE_TENANT_ID is not"), "{err}");
        assert!(!err.contains("AZURE_CLIENT_ID and"), "{err}");
        let err = chain(&[("AZURE_CLIENT_SECRET", "s3cr3t")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AZURE_CLIENT_ID and AZURE_TENANT_ID are not") && !err.contains("s3cr3t"),
            "{err}"
        );
        let cs = chain(&[
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
        ])
        .unwrap();
        assert!(matches!(cs.credential, Credential::ClientSecret { .. }));
        assert_eq!(format!("{:?}", cs.credential), "AZURE_CLIENT_SECRET");
    }

    /// Records the headers of each request it is given.
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(reqwest::Method, Option<String>)>>>;

    #[derive(Debug, Default)]
    struct Recorder(Seen);

    impl object_store::client::HttpService for Recorder {
        fn call<'life0, 'async_trait>(
            &'life0 self,
            req: object_store::client::HttpRequest,
        ) -> ServiceFuture<'async_trait>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            let scope = req
                .headers()
                .get("x-ms-encryption-scope")
                .map(|v| v.to_str().unwrap().to_string());
            self.0.lock().unwrap().push((req.method().clone(), scope));
            Box::pin(async {
                Ok(object_store::client::HttpResponse::new(
                    object_store::client::HttpResponseBody::from(String::new()),
                ))
            })
        }
    }

    #[tokio::test]
    async fn the_encryption_scope_goes_on_writes_and_never_with_an_account_key() {
        let key = Credential::AccountKey {
            key: "a2V5".into(),
            source: "AZURE_STORAGE_KEY",
        };
        let err = EncryptionScope::new("scope", &key).unwrap_err().to_string();
        assert!(
            err.contains("AZURE_STORAGE_KEY") && !err.contains("a2V5"),
            "{err}"
        );
        let sas = Credential::Sas {
            token: "sig=x".into(),
            source: "AZURE_STORAGE_SAS_TOKEN",
        };
        let scope = EncryptionScope::new("backups-cmk", &sas).unwrap();
        let seen = Seen::default();
        let service = ScopedService {
            inner: object_store::client::HttpClient::new(Recorder(seen.clone())),
            scope: scope.scope,
        };
        for method in [
            reqwest::Method::PUT,
            reqwest::Method::GET,
            reqwest::Method::HEAD,
        ] {
            let mut req = object_store::client::HttpRequest::new(
                object_store::client::HttpRequestBody::from(String::new()),
            );
            *req.method_mut() = method;
            object_store::client::HttpService::call(&service, req)
                .await
                .unwrap();
        }
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (reqwest::Method::PUT, Some("backups-cmk".to_string())),
                (reqwest::Method::GET, None),
                (reqwest::Method::HEAD, None),
            ]
        );
        assert!(EncryptionScope::new("bad\nscope", &sas).is_err());
    }

    #[test]
    fn the_emulator_form_keeps_the_account_in_the_endpoint() {
        let d = dest("http://127.0.0.1:10000/devstoreaccount1/backups/pg", true);
        let r = resolve(
            &d,
            &AzureSettings {
                environment: env(&[("AZURE_STORAGE_KEY", "a2V5")]),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(r.account, "devstoreaccount1");
        assert!(
            format!("{:?}", env(&[("AZURE_STORAGE_KEY", "a2V5")])).contains("AZURE_STORAGE_KEY")
        );
        assert!(!format!("{:?}", env(&[("AZURE_STORAGE_KEY", "a2V5")])).contains("a2V5"));
    }
}
