//! Resolving "which archive" from the command line: barman's `DEST SERVER` with cloud
//! flags and `AWS_*` environment, or an ObjectStore manifest with its secrets read
//! from a directory laid out like a mounted Kubernetes Secret.

use anyhow::{bail, Context, Result};
use barrelman_core::layout::Destination;
use barrelman_core::objectstore::{ObjectStore, SecretKeySelector};
use barrelman_storage::{AddressingStyle, Archive, S3Keys, StoreOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Cloud options shared by every barman-cloud tool.
#[derive(Debug, Clone, Default)]
pub struct CloudFlags {
    pub cloud_provider: Option<String>,
    pub endpoint_url: Option<String>,
    pub aws_profile: Option<String>,
    pub read_timeout: Option<f64>,
    pub addressing_style: Option<String>,
    pub encryption: Option<String>,
    pub sse_kms_key_id: Option<String>,
}

/// A non-empty environment variable.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The AWS shared files, as boto3 finds them.
fn aws_file(var: &str, default_name: &str) -> PathBuf {
    env_var(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env_var("HOME").unwrap_or_default())
            .join(".aws")
            .join(default_name)
    })
}

/// Credentials, region and endpoint from an AWS profile, as boto3 uses them: an
/// explicit `--aws-profile` replaces the `AWS_*` keys (and must exist); otherwise,
/// when the environment has no keys, the profile `AWS_PROFILE` names (or `default`)
/// supplies them if the files have it. Region and endpoint from the environment or
/// the command line win over the profile's.
fn apply_aws_profile(options: &mut StoreOptions, explicit: Option<&str>) -> Result<()> {
    use barrelman_core::awsprofile;
    if explicit.is_none() && env_var("AWS_ACCESS_KEY_ID").is_some() {
        return Ok(());
    }
    let named = explicit
        .map(String::from)
        .or_else(|| env_var("AWS_PROFILE"))
        .or_else(|| env_var("AWS_DEFAULT_PROFILE"));
    let name = named.clone().unwrap_or_else(|| "default".into());
    let credentials_path = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_path = aws_file("AWS_CONFIG_FILE", "config");
    let credentials = std::fs::read_to_string(&credentials_path).ok();
    let config = std::fs::read_to_string(&config_path).ok();
    let Some(profile) = awsprofile::resolve(&name, credentials.as_deref(), config.as_deref())
    else {
        if named.is_some() {
            bail!(ConfigConflict(format!(
                "the AWS profile '{name}' is in neither {} nor {}; add it there, or fix --aws-profile / AWS_PROFILE",
                credentials_path.display(),
                config_path.display()
            )));
        }
        return Ok(());
    };
    match (&profile.access_key_id, &profile.secret_access_key) {
        (Some(id), Some(secret)) => {
            options.s3_keys = Some(S3Keys {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: profile.session_token.clone(),
            })
        }
        _ if explicit.is_some() => bail!(ConfigConflict(format!(
            "the AWS profile '{name}' has no aws_access_key_id and aws_secret_access_key; \
             barrelman reads static keys from profiles (not roles, SSO or credential_process)"
        ))),
        _ => {}
    }
    if env_var("AWS_REGION").is_none() && env_var("AWS_DEFAULT_REGION").is_none() {
        options.region = options.region.take().or(profile.region);
    }
    if options.endpoint_url.is_none()
        && env_var("AWS_ENDPOINT_URL_S3").is_none()
        && env_var("AWS_ENDPOINT_URL").is_none()
    {
        options.endpoint_url = profile.endpoint_url;
    }
    Ok(())
}

/// A resolved archive location plus the settings that came with it.
#[derive(Debug)]
pub struct Target {
    pub destination: Destination,
    pub server_name: String,
    pub options: StoreOptions,
    /// The ObjectStore, when the target came from a manifest.
    pub manifest: Option<ObjectStore>,
    /// Server-side encryption of base backup objects: the manifest's
    /// `data.encryption` (WAL objects use `wal.encryption`, in `options`); `-e` for
    /// both on the barman command line.
    pub data_encryption: Option<String>,
}

impl Target {
    /// From barman-style positionals and flags; credentials from the environment.
    pub fn from_barman(dest: &str, server: &str, flags: &CloudFlags) -> Result<Self> {
        let azure_emulator = std::env::var_os("AZURE_STORAGE_CONNECTION_STRING").is_some();
        let destination = Destination::parse(dest, azure_emulator)?;
        check_provider(&destination, flags.cloud_provider.as_deref())?;
        check_names(&destination, server)?;
        if let Some(t) = flags.read_timeout.filter(|t| *t <= 0.0) {
            bail!(ConfigConflict(format!(
                "invalid --read-timeout {t}: it must be a positive number of seconds"
            )));
        }
        let mut options = StoreOptions {
            endpoint_url: flags.endpoint_url.clone(),
            read_timeout: flags.read_timeout.map(Duration::from_secs_f64),
            encryption: flags.encryption.clone(),
            sse_kms_key_id: flags.sse_kms_key_id.clone(),
            ..Default::default()
        };
        if flags.sse_kms_key_id.is_some() && flags.encryption.as_deref() != Some("aws:kms") {
            bail!(ConfigConflict(
                "--sse-kms-key-id can only be used together with -e aws:kms".into()
            ));
        }
        options.addressing_style = match flags.addressing_style.as_deref() {
            None | Some("auto") => AddressingStyle::Auto,
            Some("virtual") => AddressingStyle::Virtual,
            Some("path") => AddressingStyle::Path,
            Some(other) => bail!("invalid --addressing-style '{other}': use auto, virtual or path"),
        };
        apply_aws_profile(&mut options, flags.aws_profile.as_deref())?;
        options.ca_pem = read_ca_bundle_env()?;
        Ok(Self {
            destination,
            server_name: server.to_string(),
            data_encryption: options.encryption.clone(),
            options,
            manifest: None,
        })
    }

    /// From an ObjectStore manifest; secrets from `secrets_dir` (else the environment).
    pub fn from_manifest(file: &Path, server: &str, secrets_dir: Option<&Path>) -> Result<Self> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the ObjectStore manifest {}", file.display()))?;
        let store =
            ObjectStore::from_yaml(&text).with_context(|| format!("in {}", file.display()))?;
        let conf = &store.spec.configuration;
        let azure_emulator = conf
            .azure_credentials
            .as_ref()
            .is_some_and(|a| a.connection_string.is_some());
        let destination = Destination::parse(&conf.destination_path, azure_emulator)
            .context("in spec.configuration.destinationPath")?;
        check_names(&destination, server)?;
        let mut options = StoreOptions {
            endpoint_url: conf.endpoint_url.clone(),
            encryption: conf.wal.as_ref().and_then(|w| w.encryption.clone()),
            ..Default::default()
        };
        options.ca_pem = read_ca_bundle_env()?;
        if let Some(dir) = secrets_dir {
            let mut access = None;
            let mut secret = None;
            let mut token = None;
            for (var, sel) in store.secret_env() {
                let value = read_secret(dir, sel, var)?;
                match var {
                    "AWS_ACCESS_KEY_ID" => access = Some(value),
                    "AWS_SECRET_ACCESS_KEY" => secret = Some(value),
                    "AWS_SESSION_TOKEN" => token = Some(value),
                    "AWS_DEFAULT_REGION" => options.region = Some(value),
                    "AWS_CA_BUNDLE_PEM" => options.ca_pem = Some(value.into_bytes()),
                    _ => {}
                }
            }
            match (access, secret) {
                (Some(access_key_id), Some(secret_access_key)) => {
                    options.s3_keys = Some(S3Keys {
                        access_key_id,
                        secret_access_key,
                        session_token: token,
                    })
                }
                (None, None) => {}
                (Some(_), None) => bail!(
                    "spec.configuration.s3Credentials has accessKeyId but no secretAccessKey; add the secretAccessKey reference"
                ),
                (None, Some(_)) => bail!(
                    "spec.configuration.s3Credentials has secretAccessKey but no accessKeyId; add the accessKeyId reference"
                ),
            }
        }
        Ok(Self {
            destination,
            server_name: server.to_string(),
            data_encryption: conf.data.as_ref().and_then(|d| d.encryption.clone()),
            options,
            manifest: Some(store),
        })
    }

    /// Opens the archive.
    pub fn open(&self) -> Result<Archive> {
        Ok(Archive::open(
            &self.destination,
            &self.server_name,
            &self.options,
        )?)
    }

    /// Opens the archive to write base backups: as [`Target::open`], with the
    /// encryption meant for backup data.
    pub fn open_for_backups(&self) -> Result<Archive> {
        let options = StoreOptions {
            encryption: self.data_encryption.clone(),
            ..self.options.clone()
        };
        Ok(Archive::open(
            &self.destination,
            &self.server_name,
            &options,
        )?)
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

/// A setting conflict barman reports as a general error (exit 4).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigConflict(pub String);

fn check_provider(dest: &Destination, flag: Option<&str>) -> Result<()> {
    use barrelman_core::layout::Provider;
    let wanted = flag.unwrap_or("aws-s3");
    let ok = matches!(
        (&dest.provider, wanted),
        (Provider::Local, _)
            | (Provider::S3, "aws-s3")
            | (Provider::Gcs, "google-cloud-storage")
            | (Provider::Azure { .. }, "azure-blob-storage")
    );
    if !ok {
        bail!(
            "the destination URL '{}' does not match --cloud-provider {wanted}",
            dest.url
        );
    }
    Ok(())
}

/// Refuses (exit 3) a server name or destination path whose keys could not be
/// stored raw, as barman writes them, before anything is read or written.
fn check_names(dest: &Destination, server: &str) -> Result<()> {
    barrelman_core::layout::ServerLayout::checked(&dest.path, server)?;
    Ok(())
}

fn read_ca_bundle_env() -> Result<Option<Vec<u8>>> {
    match std::env::var_os("AWS_CA_BUNDLE") {
        Some(p) if !p.is_empty() => {
            let path = PathBuf::from(p);
            let pem = std::fs::read(&path).with_context(|| {
                format!("cannot read the CA bundle AWS_CA_BUNDLE={}", path.display())
            })?;
            Ok(Some(pem))
        }
        _ => Ok(None),
    }
}

/// Reads one key of a secret mounted as `DIR/<secret name>/<key>`. The error names
/// the secret, the key and the keys that exist; never a value.
pub fn read_secret(dir: &Path, sel: &SecretKeySelector, purpose: &str) -> Result<String> {
    let secret_dir = dir.join(&sel.name);
    if !secret_dir.is_dir() {
        bail!(
            "secret '{}' (needed for {purpose}) was not found: expected a directory {} with one file per key",
            sel.name,
            secret_dir.display()
        );
    }
    let file = secret_dir.join(&sel.key);
    match std::fs::read(&file) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| {
                anyhow::anyhow!(
                    "key '{}' of secret '{}' is not valid UTF-8 text",
                    sel.key,
                    sel.name
                )
            })?;
            // Secrets made with `echo` carry a newline nobody meant.
            Ok(text.trim_end_matches(['\n', '\r']).to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut keys: Vec<String> = std::fs::read_dir(&secret_dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| !n.starts_with('.'))
                        .collect()
                })
                .unwrap_or_default();
            keys.sort();
            let present = if keys.is_empty() {
                "it has no keys".to_string()
            } else {
                format!("its keys are: {}", keys.join(", "))
            };
            bail!(
                "secret '{}' has no key '{}' (needed for {purpose}); {present}. Fix the key name in the ObjectStore or add the key to the secret",
                sel.name,
                sel.key
            )
        }
        Err(e) => Err(e)
            .with_context(|| format!("cannot read key '{}' of secret '{}'", sel.key, sel.name)),
    }
}
