//! Where the values of an ObjectStore's Secret references come from.
//!
//! A [`SecretSource`] answers "the value of key K of Secret S". The command line reads
//! them from a directory laid out like a mounted Kubernetes Secret
//! ([`DirectorySecrets`]); tests and embedders hand them over in memory
//! ([`MemorySecrets`]); the CloudNativePG plugin asks the Kubernetes API, which is why
//! a lookup is a future. Values go from the source into the store settings, never
//! through the process environment, and never into a message.

use barrelman_core::objectstore::SecretKeySelector;
use barrelman_core::{Classified, ErrorClass};
use futures::future::BoxFuture;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A place Secret values are read from. One sidecar may serve several clusters:
/// each resolution takes the source to use, so each can have its own.
pub trait SecretSource: Send + Sync {
    /// The value of `selector.key` in the Secret `selector.name`. `purpose` (the
    /// setting it is for, e.g. `AWS_ACCESS_KEY_ID`) only goes into error messages.
    fn read<'a>(
        &'a self,
        selector: &'a SecretKeySelector,
        purpose: &'a str,
    ) -> BoxFuture<'a, Result<String, SecretError>>;
}

/// A Secret value that cannot be had. Messages name the Secret, the key and what it
/// is needed for, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The Secret itself does not exist.
    #[error("secret '{secret}' (needed for {purpose}) was not found: {expected}")]
    SecretMissing {
        /// The Secret's name.
        secret: String,
        /// The setting the value was wanted for.
        purpose: String,
        /// Where the source looked, e.g. "expected a directory D with one file per key".
        expected: String,
    },

    /// The Secret exists but has no such key.
    #[error(
        "secret '{secret}' has no key '{key}' (needed for {purpose}); {}. Fix the key name in the \
         ObjectStore or add the key to the secret",
        present_keys(keys)
    )]
    KeyMissing {
        /// The Secret's name.
        secret: String,
        /// The key asked for.
        key: String,
        /// The setting the value was wanted for.
        purpose: String,
        /// The keys the Secret has, sorted.
        keys: Vec<String>,
    },

    /// The value is not text.
    #[error("key '{key}' of secret '{secret}' is not valid UTF-8 text")]
    NotText {
        /// The Secret's name.
        secret: String,
        /// The key whose value is binary.
        key: String,
    },

    /// The source failed to answer (an I/O error, an API error).
    #[error("cannot read key '{key}' of secret '{secret}'")]
    Unreadable {
        /// The Secret's name.
        secret: String,
        /// The key asked for.
        key: String,
        /// Why the source could not answer.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn present_keys(keys: &[String]) -> String {
    if keys.is_empty() {
        "it has no keys".to_string()
    } else {
        format!("its keys are: {}", keys.join(", "))
    }
}

impl Classified for SecretError {
    fn class(&self) -> ErrorClass {
        match self {
            // The store cannot be used as configured: a setting to fix.
            Self::SecretMissing { .. } | Self::KeyMissing { .. } | Self::NotText { .. } => {
                ErrorClass::Denied
            }
            Self::Unreadable { .. } => ErrorClass::Internal,
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        Some(Cow::Borrowed(match self {
            Self::SecretMissing { .. } => {
                "create the secret, or fix the secret name in the ObjectStore"
            }
            Self::KeyMissing { .. } => {
                "fix the key name in the ObjectStore or add the key to the secret"
            }
            Self::NotText { .. } => "store the value as text in the secret",
            Self::Unreadable { .. } => "check that the secret can be read, then retry",
        }))
    }
}

/// Secrets as files: `DIR/<secret name>/<key>`, the layout of a Kubernetes Secret
/// mounted as a volume (one directory per Secret, one file per key). A value's
/// trailing newline is dropped: secrets made with `echo` carry one nobody meant.
#[derive(Debug, Clone)]
pub struct DirectorySecrets {
    dir: PathBuf,
}

impl DirectorySecrets {
    /// Secrets under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory the Secrets are read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// [`SecretSource::read`] without a future: the files are read at once.
    pub fn read_now(
        &self,
        selector: &SecretKeySelector,
        purpose: &str,
    ) -> Result<String, SecretError> {
        let secret_dir = self.dir.join(&selector.name);
        if !secret_dir.is_dir() {
            return Err(SecretError::SecretMissing {
                secret: selector.name.clone(),
                purpose: purpose.to_string(),
                expected: format!(
                    "expected a directory {} with one file per key",
                    secret_dir.display()
                ),
            });
        }
        match std::fs::read(secret_dir.join(&selector.key)) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| SecretError::NotText {
                    secret: selector.name.clone(),
                    key: selector.key.clone(),
                })?;
                Ok(text.trim_end_matches(['\n', '\r']).to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SecretError::KeyMissing {
                secret: selector.name.clone(),
                key: selector.key.clone(),
                purpose: purpose.to_string(),
                keys: file_names(&secret_dir),
            }),
            Err(e) => Err(SecretError::Unreadable {
                secret: selector.name.clone(),
                key: selector.key.clone(),
                source: Box::new(e),
            }),
        }
    }
}

/// The keys of a mounted Secret: its files, without the `..data`-style entries
/// Kubernetes adds.
fn file_names(dir: &Path) -> Vec<String> {
    let mut keys: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

impl SecretSource for DirectorySecrets {
    fn read<'a>(
        &'a self,
        selector: &'a SecretKeySelector,
        purpose: &'a str,
    ) -> BoxFuture<'a, Result<String, SecretError>> {
        // A few small files: read in place rather than on a blocking thread.
        Box::pin(async move { self.read_now(selector, purpose) })
    }
}

/// Secrets held in memory: for tests, and for programs that have the values already.
#[derive(Clone, Default)]
pub struct MemorySecrets {
    secrets: BTreeMap<String, BTreeMap<String, String>>,
}

impl std::fmt::Debug for MemorySecrets {
    // Secret and key names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.secrets
                    .iter()
                    .map(|(name, keys)| (name, keys.keys().collect::<Vec<_>>())),
            )
            .finish()
    }
}

impl MemorySecrets {
    /// No secrets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds key `key` with `value` to the Secret `secret`.
    pub fn with(mut self, secret: &str, key: &str, value: &str) -> Self {
        self.insert(secret, key, value);
        self
    }

    /// Adds (or replaces) key `key` of the Secret `secret`.
    pub fn insert(&mut self, secret: &str, key: &str, value: &str) {
        self.secrets
            .entry(secret.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
    }
}

impl SecretSource for MemorySecrets {
    fn read<'a>(
        &'a self,
        selector: &'a SecretKeySelector,
        purpose: &'a str,
    ) -> BoxFuture<'a, Result<String, SecretError>> {
        let found = match self.secrets.get(&selector.name) {
            None => Err(SecretError::SecretMissing {
                secret: selector.name.clone(),
                purpose: purpose.to_string(),
                expected: "no such secret was given".to_string(),
            }),
            Some(keys) => keys
                .get(&selector.key)
                .cloned()
                .ok_or_else(|| SecretError::KeyMissing {
                    secret: selector.name.clone(),
                    key: selector.key.clone(),
                    purpose: purpose.to_string(),
                    keys: keys.keys().cloned().collect(),
                }),
        };
        Box::pin(std::future::ready(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(name: &str, key: &str) -> SecretKeySelector {
        SecretKeySelector {
            name: name.into(),
            key: key.into(),
        }
    }

    #[tokio::test]
    async fn a_mounted_secret_is_read_and_its_absence_named_without_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("creds")).unwrap();
        std::fs::write(dir.path().join("creds/ID"), "AKID\n").unwrap();
        std::fs::write(dir.path().join("creds/SECRET"), "s3cr3t").unwrap();
        std::fs::write(dir.path().join("creds/..data"), "").unwrap();
        let src = DirectorySecrets::new(dir.path());
        assert_eq!(src.read(&sel("creds", "ID"), "X").await.unwrap(), "AKID");

        let e = src.read(&sel("creds", "NOPE"), "AWS_ACCESS_KEY_ID").await;
        let e = e.unwrap_err();
        assert_eq!(
            e.to_string(),
            "secret 'creds' has no key 'NOPE' (needed for AWS_ACCESS_KEY_ID); its keys are: \
             ID, SECRET. Fix the key name in the ObjectStore or add the key to the secret"
        );
        assert_eq!(e.class(), ErrorClass::Denied);
        let e = src.read(&sel("other", "ID"), "P").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "secret 'other' (needed for P) was not found: expected a directory {} with one \
                 file per key",
                dir.path().join("other").display()
            )
        );
        std::fs::write(dir.path().join("creds/BIN"), [0xff, 0xfe]).unwrap();
        let e = src.read(&sel("creds", "BIN"), "P").await.unwrap_err();
        assert!(matches!(e, SecretError::NotText { .. }), "{e}");
    }

    #[tokio::test]
    async fn memory_secrets_answer_like_mounted_ones() {
        let src = MemorySecrets::new().with("creds", "ID", "AKID");
        assert_eq!(src.read(&sel("creds", "ID"), "X").await.unwrap(), "AKID");
        let e = src.read(&sel("creds", "SECRET"), "X").await.unwrap_err();
        assert!(e.to_string().contains("its keys are: ID"), "{e}");
        assert!(!format!("{src:?}").contains("AKID"));
        let e = src.read(&sel("nope", "ID"), "X").await.unwrap_err();
        assert!(matches!(e, SecretError::SecretMissing { .. }), "{e}");
    }
}
