//! The CloudNativePG way in: an ObjectStore manifest whose Secret references are
//! resolved through a [`SecretSource`].
//!
//! Resolution is three steps, so that the waiting is only in the middle one:
//! [`ManifestDraft::new`] decides everything the manifest says by itself,
//! [`ManifestDraft::requests`] lists the Secret values it needs, and
//! [`ManifestDraft::finish`] turns the values supplied into settings.
//! [`Target::from_object_store`] runs the three with any source.

use super::{check_names, ConfigError, Environment, SecretSource, Target};
use crate::store::{
    AzureCredentialKind, AzureSettings, CommonSettings, GcsSettings, ProviderSettings, S3Keys,
    S3Settings, ServiceAccountKey, StoreSettings,
};
use barrelman_core::layout::{Destination, Provider};
use barrelman_core::objectstore::{ObjectStore, SecretKeySelector};
use std::path::Path;

/// Reads and checks an ObjectStore manifest file.
pub fn load_manifest(file: &Path) -> Result<ObjectStore, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::ManifestUnreadable {
        path: file.to_path_buf(),
        source,
    })?;
    ObjectStore::from_yaml(&text).map_err(|source| ConfigError::Manifest {
        path: file.to_path_buf(),
        source,
    })
}

/// One Secret value a manifest needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRequest {
    /// The setting it is for, named as the variable barman reads it from
    /// (`AWS_ACCESS_KEY_ID`, `AWS_CA_BUNDLE_PEM`…).
    pub purpose: &'static str,
    /// The Secret and key holding it.
    pub selector: SecretKeySelector,
}

/// A manifest on its way to a [`Target`]: everything decided but the Secret values.
#[derive(Debug, Clone)]
pub struct ManifestDraft {
    store: ObjectStore,
    destination: Destination,
    server_name: String,
    common: CommonSettings,
    s3: S3Settings,
    azure: AzureSettings,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    gcs: GcsSettings,
}

impl ManifestDraft {
    /// Checks the destination and server name and takes the settings the manifest
    /// gives by value. `env` supplies what the manifest leaves open (as boto3 would
    /// read it from `AWS_*`: credentials when no Secret is used, region, CA bundle).
    pub fn new(store: ObjectStore, server: &str, env: &Environment) -> Result<Self, ConfigError> {
        let conf = &store.spec.configuration;
        let azure_emulator = conf
            .azure_credentials
            .as_ref()
            .is_some_and(|a| a.connection_string.is_some());
        let destination = Destination::parse(&conf.destination_path, azure_emulator)
            .map_err(ConfigError::ManifestDestination)?;
        check_names(&destination, server)?;
        let common = CommonSettings {
            endpoint_url: conf.endpoint_url.clone(),
            ca_pem: env.read_ca_bundle(&destination)?,
            ..Default::default()
        };
        // As the plugin passes them to barman: `--credential managed-identity` for
        // inheritFromAzureAD, `--credential default` for useDefaultAzureCredentials.
        let credential = conf.azure_credentials.as_ref().and_then(|a| {
            if a.use_default_azure_credentials {
                Some(AzureCredentialKind::Default)
            } else if a.inherit_from_azure_ad {
                Some(AzureCredentialKind::ManagedIdentity)
            } else {
                None
            }
        });
        let azure = AzureSettings {
            credential,
            environment: env.azure.clone(),
            ..Default::default()
        };
        let s3 = S3Settings {
            encryption: conf.wal.as_ref().and_then(|w| w.encryption.clone()),
            environment: env.aws.clone(),
            ..Default::default()
        };
        // googleCredentials: a key arrives through `supply`; gkeEnvironment means the
        // metadata server, whatever files the environment names.
        let gcs = GcsSettings {
            gke_environment: conf
                .google_credentials
                .as_ref()
                .is_some_and(|g| g.gke_environment),
            environment: env.google.clone(),
            ..Default::default()
        };
        Ok(Self {
            server_name: server.to_string(),
            destination,
            common,
            s3,
            azure,
            gcs,
            store,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
        })
    }

    /// The Secret values the manifest refers to, in the order they are to be read.
    pub fn requests(&self) -> Vec<SecretRequest> {
        self.store
            .secret_env()
            .into_iter()
            .map(|(purpose, selector)| SecretRequest {
                purpose,
                selector: selector.clone(),
            })
            .collect()
    }

    /// Supplies the value asked for by `request`.
    pub fn supply(&mut self, request: &SecretRequest, value: String) {
        match request.purpose {
            "AWS_ACCESS_KEY_ID" => self.access_key_id = Some(value),
            "AWS_SECRET_ACCESS_KEY" => self.secret_access_key = Some(value),
            "AWS_SESSION_TOKEN" => self.session_token = Some(value),
            "AWS_DEFAULT_REGION" => self.s3.region = Some(value),
            "AWS_CA_BUNDLE_PEM" => self.common.ca_pem = Some(value.into_bytes()),
            "AZURE_STORAGE_CONNECTION_STRING" => self.azure.keys.connection_string = Some(value),
            "AZURE_STORAGE_SAS_TOKEN" => self.azure.keys.sas_token = Some(value),
            "AZURE_STORAGE_KEY" => self.azure.keys.account_key = Some(value),
            // The key's JSON stays in memory (barman's plugin writes it to a file).
            "GOOGLE_APPLICATION_CREDENTIALS_JSON" => {
                self.gcs.service_account_key = Some(ServiceAccountKey(value))
            }
            // storageAccount: barman takes the account from the URL (or the
            // connection string), as here.
            _ => {}
        }
    }

    /// The target, once the values are supplied (or none, when the credentials come
    /// from the environment).
    pub fn finish(mut self) -> Result<Target, ConfigError> {
        match (self.access_key_id.take(), self.secret_access_key.take()) {
            (Some(access_key_id), Some(secret_access_key)) => {
                self.s3.keys = Some(S3Keys {
                    access_key_id,
                    secret_access_key,
                    session_token: self.session_token.take(),
                })
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::HalfCredentials {
                    present: "accessKeyId",
                    missing: "secretAccessKey",
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::HalfCredentials {
                    present: "secretAccessKey",
                    missing: "accessKeyId",
                })
            }
        }
        let provider = match self.destination.provider {
            Provider::S3 => ProviderSettings::S3(self.s3),
            Provider::Azure { .. } => ProviderSettings::Azure(self.azure),
            Provider::Gcs => {
                // CloudNativePG applies endpointCA to S3 and Azure only (cnpg-plugin
                // 2.9), and AWS_CA_BUNDLE is boto3's: GCS keeps the system roots.
                self.common.ca_pem = None;
                ProviderSettings::Gcs(self.gcs)
            }
            _ => ProviderSettings::default(),
        };
        let data_encryption = self
            .store
            .spec
            .configuration
            .data
            .as_ref()
            .and_then(|d| d.encryption.clone());
        Ok(Target {
            destination: self.destination,
            server_name: self.server_name,
            settings: StoreSettings {
                common: self.common,
                provider,
            },
            manifest: Some(self.store),
            data_encryption,
        })
    }
}

impl Target {
    /// From an ObjectStore value: its Secret references read from `secrets` (one
    /// after the other, stopping at the first failure); with `None`, credentials
    /// come from `env`.
    pub async fn from_object_store(
        store: ObjectStore,
        server: &str,
        secrets: Option<&dyn SecretSource>,
        env: &Environment,
    ) -> Result<Self, ConfigError> {
        let mut draft = ManifestDraft::new(store, server, env)?;
        if let Some(source) = secrets {
            for request in draft.requests() {
                let value = source.read(&request.selector, request.purpose).await?;
                draft.supply(&request, value);
            }
        }
        draft.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MemorySecrets;
    use barrelman_core::{Classified, ErrorClass};

    const MANIFEST: &str = "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\n\
        metadata:\n  name: s\nspec:\n  configuration:\n    destinationPath: s3://b/p\n    \
        endpointURL: http://127.0.0.1:9\n    s3Credentials:\n      accessKeyId:\n        \
        name: creds\n        key: ID\n      secretAccessKey:\n        name: creds\n        \
        key: SECRET\n    wal:\n      encryption: AES256\n    data:\n      encryption: aws:kms\n";

    #[tokio::test]
    async fn secrets_go_straight_into_the_settings() {
        let store = ObjectStore::from_yaml(MANIFEST).unwrap();
        let secrets = MemorySecrets::new()
            .with("creds", "ID", "AKID")
            .with("creds", "SECRET", "s3cr3t");
        let env = Environment::default();
        let t = Target::from_object_store(store, "srv", Some(&secrets), &env)
            .await
            .unwrap();
        let s3 = t.settings.s3_settings().unwrap();
        let keys = s3.keys.as_ref().unwrap();
        assert_eq!(
            (keys.access_key_id.as_str(), keys.secret_access_key.as_str()),
            ("AKID", "s3cr3t")
        );
        assert_eq!(t.settings.encryption(), Some("AES256"));
        assert_eq!(t.data_encryption.as_deref(), Some("aws:kms"));
        assert_eq!(
            t.settings.common.endpoint_url.as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }

    #[tokio::test]
    async fn each_call_uses_its_own_source() {
        let store = ObjectStore::from_yaml(MANIFEST).unwrap();
        let env = Environment::default();
        let one = MemorySecrets::new()
            .with("creds", "ID", "ONE")
            .with("creds", "SECRET", "1");
        let half = MemorySecrets::new().with("creds", "ID", "TWO");
        let a = Target::from_object_store(store.clone(), "a", Some(&one), &env)
            .await
            .unwrap();
        let b = Target::from_object_store(store, "b", Some(&half), &env)
            .await
            .unwrap_err();
        let keys = a.settings.s3_settings().unwrap().keys.clone().unwrap();
        assert_eq!(keys.access_key_id, "ONE");
        assert_eq!(
            b.to_string(),
            "secret 'creds' has no key 'SECRET' (needed for AWS_SECRET_ACCESS_KEY); its keys \
             are: ID. Fix the key name in the ObjectStore or add the key to the secret"
        );
        assert_eq!(b.class(), ErrorClass::Denied);
    }

    #[tokio::test]
    async fn azure_credentials_become_azure_settings() {
        let manifest = |creds: &str| {
            ObjectStore::from_yaml(&format!(
                "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nmetadata:\n  name: a\n\
                 spec:\n  configuration:\n    destinationPath: {}\n    \
                 azureCredentials:\n{creds}",
                if creds.contains("connectionString") {
                    "http://127.0.0.1:10000/devstoreaccount1/ctr/p"
                } else {
                    "https://acct.blob.core.windows.net/ctr/p"
                }
            ))
            .unwrap()
        };
        let secrets = MemorySecrets::new()
            .with("az", "CS", "AccountName=devstoreaccount1;AccountKey=a2V5")
            .with("az", "KEY", "a2V5")
            .with("az", "ACCOUNT", "acct");
        let env = Environment::default();
        let t = Target::from_object_store(
            manifest("      connectionString:\n        name: az\n        key: CS\n"),
            "srv",
            Some(&secrets),
            &env,
        )
        .await
        .unwrap();
        let az = t.settings.azure_settings().unwrap();
        assert!(az.keys.connection_string.is_some());
        assert_eq!(t.destination.bucket, "ctr");

        let t = Target::from_object_store(
            manifest(
                "      storageAccount:\n        name: az\n        key: ACCOUNT\n      \
                 storageKey:\n        name: az\n        key: KEY\n",
            ),
            "srv",
            Some(&secrets),
            &env,
        )
        .await
        .unwrap();
        let az = t.settings.azure_settings().unwrap();
        assert_eq!(az.keys.account_key.as_deref(), Some("a2V5"));
        assert!(!format!("{t:?}").contains("a2V5"));

        for (field, kind) in [
            ("inheritFromAzureAD", AzureCredentialKind::ManagedIdentity),
            ("useDefaultAzureCredentials", AzureCredentialKind::Default),
        ] {
            let t = Target::from_object_store(
                manifest(&format!("      {field}: true\n")),
                "srv",
                None,
                &env,
            )
            .await
            .unwrap();
            assert_eq!(t.settings.azure_settings().unwrap().credential, Some(kind));
        }
    }

    #[tokio::test]
    async fn google_credentials_become_gcs_settings_and_the_key_stays_in_memory() {
        let text = "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nmetadata:\n  name: g\n\
            spec:\n  configuration:\n    destinationPath: gs://bk/p\n    googleCredentials:\n      \
            applicationCredentials:\n        name: gcs\n        key: key.json\n";
        let key = r#"{"type":"service_account","client_email":"a@b","private_key":"PRIVATE"}"#;
        let secrets = MemorySecrets::new().with("gcs", "key.json", key);
        let store = ObjectStore::from_yaml(text).unwrap();
        let t = Target::from_object_store(store, "srv", Some(&secrets), &Environment::default())
            .await
            .unwrap();
        let ProviderSettings::Gcs(g) = &t.settings.provider else {
            panic!("not GCS settings")
        };
        assert_eq!(
            g.service_account_key.as_ref().map(|k| k.0.as_str()),
            Some(key)
        );
        assert!(!g.gke_environment);
        assert!(!format!("{t:?}").contains("PRIVATE"));

        let gke = text.replace(
            "applicationCredentials:\n        name: gcs\n        key: key.json\n",
            "gkeEnvironment: true\n",
        );
        let store = ObjectStore::from_yaml(&gke).unwrap();
        let t = Target::from_object_store(store, "srv", None, &Environment::default())
            .await
            .unwrap();
        let ProviderSettings::Gcs(g) = &t.settings.provider else {
            panic!("not GCS settings")
        };
        assert!(g.gke_environment && g.service_account_key.is_none());
    }

    #[test]
    fn one_key_reference_without_the_other_is_refused() {
        let text = MANIFEST.replace(
            "      secretAccessKey:\n        name: creds\n        key: SECRET\n",
            "",
        );
        let store = ObjectStore::from_yaml(&text).unwrap();
        let mut draft = ManifestDraft::new(store, "srv", &Environment::default()).unwrap();
        let requests = draft.requests();
        assert_eq!(requests.len(), 1);
        draft.supply(&requests[0], "AKID".into());
        assert_eq!(
            draft.finish().unwrap_err().to_string(),
            "spec.configuration.s3Credentials has accessKeyId but no secretAccessKey; add the \
             secretAccessKey reference"
        );
    }
}
