//! Typed storage errors. Each carries the object key or setting it is about; the
//! CLI turns them into one sentence and an exit code. Secrets never appear here:
//! messages name environment variables and secret keys, never their values.

use barrelman_core::ErrorClass;
use std::borrow::Cow;
use std::io;

/// What went wrong talking to the archive.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The requested WAL file is in no variant in the archive.
    #[error("WAL file {name} does not exist in {location}")]
    WalNotFound {
        /// The WAL file name asked for (`%f`).
        name: String,
        /// The archive searched, as `s3://bucket/path/server`.
        location: String,
    },

    /// An object asked for by key does not exist (deleted meanwhile, or never
    /// written): a store's "not found", apart from a missing bucket.
    #[error("the object {key} does not exist in {location}; it was deleted or never written")]
    ObjectNotFound {
        /// The object asked for.
        key: String,
        /// The bucket and endpoint searched.
        location: String,
    },

    /// Another WAL with the same name but different content is already archived.
    #[error(
        "refusing to overwrite {key}: the archive already holds a WAL file with this name and different \
         content; if this server was restored from another one, archive it under a different server name"
    )]
    Conflict {
        /// The stored object holding the other content.
        key: String,
    },

    /// Another writer stored the same WAL name with different content at the same
    /// time; our copy was removed so that only one content remains.
    #[error(
        "{other} was archived at the same time as this call's {ours}, with different content; \
         {ours} was removed so that restore serves one content only. Two clusters archive under \
         this server name: give each its own server name"
    )]
    ConcurrentConflict {
        /// The object this call stored, then removed.
        ours: String,
        /// The other writer's object, which stays.
        other: String,
    },

    /// The archive must be empty (first archive of a new server) and is not.
    #[error(
        "the WAL archive {location} is not empty: it already holds {count} WAL file(s) (first: {first}), \
         so another server archives there; use a different server name (serverName) for this cluster"
    )]
    NotEmpty {
        /// The WAL archive checked.
        location: String,
        /// How many WAL files it holds (of the timeline checked and later ones).
        count: usize,
        /// The first of them, for the message.
        first: String,
    },

    /// The bucket or container does not exist.
    #[error(
        "the bucket '{bucket}' does not exist at {endpoint}; create it or fix the destination path"
    )]
    BucketMissing {
        /// The bucket name of the destination path.
        bucket: String,
        /// The store's endpoint URL.
        endpoint: String,
    },

    /// Credentials were refused; `denial` says which part of them is wrong.
    #[error("access to {location} was denied: {}; {}", denial.cause(), denial.fix())]
    AccessDenied {
        /// The bucket and endpoint refused.
        location: String,
        /// Which part of the credentials is wrong, from the store's error code.
        denial: Denial,
    },

    /// No credentials at all: none in the environment or the ObjectStore, and no
    /// instance role answered.
    #[error(
        "no S3 credentials were found ({detail}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
         (in CloudNativePG, the secret keys named by the ObjectStore's s3Credentials), or run with an IAM role"
    )]
    NoCredentials {
        /// What was looked for and not found.
        detail: String,
    },

    /// No usable Azure credentials: half-set variables, an unusable connection
    /// string, or no managed identity answering.
    #[error(
        "cannot authenticate to Azure Blob Storage: {detail}; set AZURE_STORAGE_CONNECTION_STRING, \
         AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_KEY (in CloudNativePG, the ObjectStore's \
         azureCredentials), or give a working --credential / identity"
    )]
    NoAzureCredentials {
        /// What is missing or wrong (names variables and fields, never values).
        detail: String,
    },

    /// No usable Google credentials: an unreadable credentials file, a key that is
    /// not a service account key, or no token from the metadata server.
    #[error(
        "no usable Google Cloud credentials ({detail}); set GOOGLE_APPLICATION_CREDENTIALS to a service \
         account key file (in CloudNativePG, googleCredentials.applicationCredentials), or run on GKE \
         with workload identity (googleCredentials.gkeEnvironment)"
    )]
    GoogleCredentials {
        /// What was looked for and not found, or why it cannot be used.
        detail: String,
    },

    /// The endpoint could not be reached.
    #[error("cannot reach the object store at {endpoint} ({detail}); check the endpoint URL and the network")]
    Unreachable {
        /// The endpoint URL tried.
        endpoint: String,
        /// The innermost cause (e.g. "Connection refused (os error 111)").
        detail: String,
    },

    /// The server name or destination path cannot be stored as barman stores it.
    #[error(transparent)]
    InvalidName(#[from] barrelman_core::layout::InvalidName),

    /// A key that no object store can hold unchanged.
    #[error("cannot use the object key '{key}': {reason}")]
    InvalidKey {
        /// The key as it would have been built.
        key: String,
        /// Why no store can hold it unchanged.
        reason: &'static str,
    },

    /// The store's configuration is unusable (URL, CA bundle, options).
    #[error("{0}")]
    Config(String),

    /// A local file could not be read or written.
    #[error("{what} {path}: {source}")]
    LocalIo {
        /// What was being done ("cannot read", "cannot write").
        what: &'static str,
        /// The local file or directory.
        path: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The local file system filled up (or hit its quota) while `path` was written.
    #[error(
        "the local disk is full: cannot write {path} ({source}); free space on that file system \
         (or give it a larger volume) and retry"
    )]
    LocalDiskFull {
        /// The file being written.
        path: String,
        /// The operating system's error (ENOSPC or EDQUOT).
        #[source]
        source: io::Error,
    },

    /// A stored object could not be decoded with the codec its suffix names, or its
    /// download was cut (then `source` wraps the store's error).
    #[error("{}", corrupt_text(key, source))]
    Corrupt {
        /// The stored object.
        key: String,
        /// The decoder's error, or the store's error wrapped in an I/O error.
        #[source]
        source: io::Error,
    },

    /// A stored WAL segment decodes to fewer (or more) bytes than its header says.
    #[error(
        "the stored WAL segment {key} holds {actual} bytes, but its header records segments of \
         {expected} bytes: the object is truncated or damaged; restore from another copy or \
         re-archive the segment from the server that wrote it"
    )]
    WrongSize {
        /// The stored segment.
        key: String,
        /// Bytes it decodes to.
        actual: u64,
        /// The segment size its long page header records.
        expected: u64,
    },

    /// The store answered with a server error (5xx) to every try of one request.
    #[error(
        "the object store at {endpoint} answered HTTP {status}{} to {tries} tries of the request for {key}; \
         the store is overloaded or failing: check its health, then retry",
        code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    ServerError {
        /// The store's endpoint URL.
        endpoint: String,
        /// The object the request was for.
        key: String,
        /// The HTTP status of the last answer.
        status: u16,
        /// The S3 error code of the answer (`SlowDown`, `InternalError`), when given.
        code: Option<String>,
        /// How many times the request was sent.
        tries: usize,
    },

    /// The store accepted the request but sent no answer in time.
    #[error(
        "cannot reach the object store at {endpoint}: it did not answer the request for {key} within the \
         read timeout of {} s; check the store's health and the network path, or raise --read-timeout for a slow link",
        read_timeout.as_secs_f64()
    )]
    TimedOut {
        /// The store's endpoint URL.
        endpoint: String,
        /// The object the request was for.
        key: String,
        /// The read timeout that passed (`--read-timeout`).
        read_timeout: std::time::Duration,
    },

    /// Any other store failure, after the HTTP client's own retries. `transient`
    /// failures (resets, timeouts, 5xx) are worth another attempt of the whole step.
    #[error("object store request for {key} failed: {detail}")]
    Store {
        /// The object the request was for.
        key: String,
        /// The store's error on one line, shortened.
        detail: String,
        /// Whether repeating the whole step may succeed.
        transient: bool,
    },
}

/// Why a store refused a request's credentials (from the S3 error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// `SignatureDoesNotMatch`: the secret key is not the access key's.
    WrongSecret,
    /// `InvalidAccessKeyId`: the store does not know the access key.
    UnknownAccessKey,
    /// `ExpiredToken`, `InvalidToken`: the session token is stale.
    BadSessionToken,
    /// `AccessDenied` or another 403: valid credentials without the permission.
    NoPermission,
    /// The key pair was refused while a session token was sent with it: a stale
    /// token, or one issued for other keys, makes stores answer with a signature or
    /// access-key error (SeaweedFS, MinIO) instead of naming the token.
    SessionTokenSuspect,
    /// Azure `AuthenticationFailed`: the signature does not match (a wrong
    /// account key, or a SAS token altered or signed with another key).
    AzureWrongKey,
    /// Azure `AuthenticationFailed` for a SAS token outside its validity time.
    AzureSasExpired,
    /// Azure `AuthorizationPermissionMismatch`: the identity lacks a data role
    /// (or the SAS token lacks a permission).
    AzureMissingRole,
    /// Azure `AuthorizationFailure`: refused for the account as a whole (network
    /// rules, a disabled key access, a SAS for another resource).
    AzureNotAuthorized,
    /// GCS answered 401: the access token is expired or invalid.
    GoogleToken,
    /// GCS answered 403: the identity lacks a role on the bucket.
    GoogleRole,
}

impl Denial {
    /// What is wrong, in plain words.
    pub fn cause(self) -> &'static str {
        match self {
            Self::WrongSecret => "the secret access key does not match the access key id",
            Self::UnknownAccessKey => "the store does not know the access key id",
            Self::BadSessionToken => "the session token has expired or is invalid",
            Self::NoPermission => "these credentials lack permission on the bucket",
            Self::SessionTokenSuspect => {
                "the keys were refused together with the session token sent with them; \
                 a stale session token, or one issued for other keys, is the likely cause"
            }
            Self::AzureWrongKey => {
                "the request signature does not match: the account key (or the key the SAS \
                 token was signed with) is not this storage account's"
            }
            Self::AzureSasExpired => "the SAS token has expired or is not valid yet",
            Self::AzureMissingRole => {
                "the identity (or SAS token) lacks the permission for this operation on the container"
            }
            Self::AzureNotAuthorized => {
                "the storage account refuses this request as a whole (network rules, shared key \
                 access disabled, or a SAS token for another resource)"
            }
            Self::GoogleToken => {
                "Google Cloud Storage refused the access token as expired or invalid"
            }
            Self::GoogleRole => {
                "the Google identity lacks a permission on the bucket (such as storage.objects.create)"
            }
        }
    }

    /// What to check or change.
    pub fn fix(self) -> &'static str {
        match self {
            Self::WrongSecret => {
                "check AWS_SECRET_ACCESS_KEY (the secretAccessKey entry of the ObjectStore's s3Credentials)"
            }
            Self::UnknownAccessKey => {
                "check AWS_ACCESS_KEY_ID (the accessKeyId entry of the ObjectStore's s3Credentials)"
            }
            Self::BadSessionToken => "refresh AWS_SESSION_TOKEN (sessionToken) or drop it",
            Self::NoPermission => {
                "grant s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on the bucket and prefix"
            }
            Self::SessionTokenSuspect => {
                "refresh AWS_SESSION_TOKEN (sessionToken) together with the keys it was issued for, \
                 or unset it when the keys are permanent ones"
            }
            Self::AzureWrongKey => {
                "check AZURE_STORAGE_KEY or the AccountKey of AZURE_STORAGE_CONNECTION_STRING (the \
                 ObjectStore's storageKey / connectionString) against the account's access keys"
            }
            Self::AzureSasExpired => {
                "issue a new SAS token (AZURE_STORAGE_SAS_TOKEN, the ObjectStore's storageSasToken) \
                 with a later expiry (se=)"
            }
            Self::AzureMissingRole => {
                "assign the identity the role Storage Blob Data Contributor on the container or \
                 account, or issue the SAS token with read, add, create, write, delete and list \
                 permissions (sp=racwdl)"
            }
            Self::AzureNotAuthorized => {
                "check the storage account's networking rules and whether shared key access is \
                 allowed, or issue the SAS token for this account and container"
            }
            Self::GoogleToken => {
                "check that the service account key (GOOGLE_APPLICATION_CREDENTIALS, or the ObjectStore's \
                 googleCredentials.applicationCredentials) is current and not deleted, and that the clock is right"
            }
            Self::GoogleRole => {
                "grant the service account roles/storage.objectAdmin (storage.objects.create, get, list \
                 and delete) on the bucket"
            }
        }
    }
}

impl StorageError {
    /// True for failures of the network path rather than of the operation.
    pub fn is_connectivity(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// True when repeating the whole operation may succeed: the store answered 5xx,
    /// or a request was cut or timed out.
    pub fn is_transient(&self) -> bool {
        match self {
            // Connection failures were already retried by the HTTP client.
            Self::Store { transient, .. } => *transient,
            Self::ServerError { .. } | Self::TimedOut { .. } => true,
            // A download cut in the middle surfaces while decoding.
            Self::Corrupt { source, .. } if store_failure(source).is_some() => {
                store_failure(source).is_some_and(Self::is_transient)
            }
            Self::Corrupt { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::Other
            ),
            _ => false,
        }
    }
}

impl barrelman_core::Classified for StorageError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::WalNotFound { .. } | Self::ObjectNotFound { .. } => ErrorClass::NotFound,
            Self::Conflict { .. } | Self::ConcurrentConflict { .. } | Self::NotEmpty { .. } => {
                ErrorClass::Conflict
            }
            Self::InvalidName(_) | Self::InvalidKey { .. } => ErrorClass::Input,
            Self::BucketMissing { .. }
            | Self::AccessDenied { .. }
            | Self::NoCredentials { .. }
            | Self::NoAzureCredentials { .. }
            | Self::GoogleCredentials { .. }
            | Self::Config(_) => ErrorClass::Denied,
            Self::Unreachable { .. }
            | Self::ServerError { .. }
            | Self::TimedOut { .. }
            | Self::LocalDiskFull { .. } => ErrorClass::Unavailable,
            Self::Store { transient, .. } if *transient => ErrorClass::Unavailable,
            Self::Corrupt { .. } if self.is_transient() => ErrorClass::Unavailable,
            Self::Store { .. }
            | Self::Corrupt { .. }
            | Self::WrongSize { .. }
            | Self::LocalIo { .. } => ErrorClass::Internal,
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        let fix = match self {
            Self::Unreachable { .. } => {
                "check the endpoint URL (endpointURL / --endpoint-url), DNS and the network path"
            }
            Self::AccessDenied { denial, .. } => denial.fix(),
            Self::NoCredentials { .. } => {
                "give the ObjectStore s3Credentials (or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or an IAM role"
            }
            Self::NoAzureCredentials { .. } => {
                "give the ObjectStore azureCredentials (or set AZURE_STORAGE_CONNECTION_STRING, \
                 AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_KEY), or a working identity"
            }
            Self::GoogleCredentials { .. } => {
                "set GOOGLE_APPLICATION_CREDENTIALS (googleCredentials.applicationCredentials), or use GKE workload identity"
            }
            Self::BucketMissing { .. } => {
                "create the bucket, or fix the bucket name in destinationPath"
            }
            Self::Config(_) => "check the store settings",
            Self::Conflict { .. } | Self::ConcurrentConflict { .. } | Self::NotEmpty { .. } => {
                "give each cluster its own server name (serverName)"
            }
            Self::LocalDiskFull { .. } => {
                "free space on that file system (or give it a larger volume) and retry"
            }
            Self::ServerError { .. } | Self::TimedOut { .. } => {
                "check the store's health and the network path, then retry"
            }
            Self::WrongSize { .. } => {
                "restore from another copy or re-archive the segment from the server that wrote it"
            }
            _ => return None,
        };
        Some(Cow::Borrowed(fix))
    }
}

impl StorageError {
    /// The `io::ErrorKind` this failure travels as through a reader.
    pub(crate) fn io_kind(&self) -> io::ErrorKind {
        match self {
            Self::TimedOut { .. } => io::ErrorKind::TimedOut,
            Self::Unreachable { .. } => io::ErrorKind::NotConnected,
            Self::AccessDenied { .. } => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::Other,
        }
    }
}

/// The store's error inside an I/O error from a download stream, if that is what it is.
fn store_failure(source: &io::Error) -> Option<&StorageError> {
    source.get_ref()?.downcast_ref::<StorageError>()
}

fn corrupt_text(key: &str, source: &io::Error) -> String {
    match store_failure(source) {
        Some(failure) => format!("the download of {key} was cut: {failure}"),
        None => format!("cannot decompress {key}: {source}"),
    }
}
