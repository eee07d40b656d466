//! The ObjectStore resource (`barmancloud.cnpg.io/v1`, kind `ObjectStore`) as users
//! keep it in Kubernetes, and the resolution of its secret references.
//!
//! Field names follow the CRD exactly (camelCase). Unknown fields are tolerated so
//! that manifests written for newer plugin versions still load.

use serde::Deserialize;
use std::collections::BTreeMap;

/// A whole ObjectStore manifest.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStore {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Metadata,
    pub spec: ObjectStoreSpec,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Metadata {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSpec {
    pub configuration: BarmanObjectStoreConfiguration,
    #[serde(default)]
    pub retention_policy: Option<String>,
}

/// A reference to one key of a Kubernetes Secret.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SecretKeySelector {
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BarmanObjectStoreConfiguration {
    pub destination_path: String,
    #[serde(default, rename = "endpointURL")]
    pub endpoint_url: Option<String>,
    #[serde(default, rename = "endpointCA")]
    pub endpoint_ca: Option<SecretKeySelector>,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub s3_credentials: Option<S3Credentials>,
    #[serde(default)]
    pub azure_credentials: Option<AzureCredentials>,
    #[serde(default)]
    pub google_credentials: Option<GoogleCredentials>,
    #[serde(default)]
    pub wal: Option<WalConfiguration>,
    #[serde(default)]
    pub data: Option<DataConfiguration>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub history_tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Credentials {
    #[serde(default)]
    pub access_key_id: Option<SecretKeySelector>,
    #[serde(default)]
    pub secret_access_key: Option<SecretKeySelector>,
    #[serde(default)]
    pub region: Option<SecretKeySelector>,
    #[serde(default)]
    pub session_token: Option<SecretKeySelector>,
    #[serde(default, rename = "inheritFromIAMRole")]
    pub inherit_from_iam_role: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureCredentials {
    #[serde(default)]
    pub connection_string: Option<SecretKeySelector>,
    #[serde(default)]
    pub storage_account: Option<SecretKeySelector>,
    #[serde(default)]
    pub storage_key: Option<SecretKeySelector>,
    #[serde(default)]
    pub storage_sas_token: Option<SecretKeySelector>,
    #[serde(default, rename = "inheritFromAzureAD")]
    pub inherit_from_azure_ad: bool,
    #[serde(default)]
    pub use_default_azure_credentials: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GoogleCredentials {
    #[serde(default)]
    pub application_credentials: Option<SecretKeySelector>,
    #[serde(default)]
    pub gke_environment: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WalConfiguration {
    #[serde(default)]
    pub compression: Option<String>,
    #[serde(default)]
    pub encryption: Option<String>,
    #[serde(default)]
    pub max_parallel: Option<u32>,
    #[serde(default)]
    pub archive_additional_command_args: Vec<String>,
    #[serde(default)]
    pub restore_additional_command_args: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataConfiguration {
    #[serde(default)]
    pub compression: Option<String>,
    #[serde(default)]
    pub encryption: Option<String>,
    #[serde(default)]
    pub jobs: Option<u32>,
    #[serde(default)]
    pub immediate_checkpoint: Option<bool>,
    #[serde(default)]
    pub additional_command_args: Vec<String>,
    #[serde(default)]
    pub restore_additional_command_args: Vec<String>,
}

/// A manifest that cannot be used, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectStoreError {
    #[error("cannot read the ObjectStore manifest: {0}")]
    Yaml(String),
    #[error("the manifest is apiVersion '{api_version}', kind '{kind}'; expected apiVersion barmancloud.cnpg.io/v1, kind ObjectStore")]
    WrongKind { api_version: String, kind: String },
    #[error("spec.configuration.destinationPath is empty; set it to the archive URL, e.g. s3://bucket/path")]
    NoDestination,
    #[error("{field} is '{value}': {hint}")]
    BadValue {
        field: &'static str,
        value: String,
        hint: &'static str,
    },
}

impl ObjectStore {
    /// Parses a manifest and checks the parts every command relies on.
    pub fn from_yaml(text: &str) -> Result<Self, ObjectStoreError> {
        let store: ObjectStore =
            serde_saphyr::from_str(text).map_err(|e| ObjectStoreError::Yaml(e.to_string()))?;
        if store.api_version != "barmancloud.cnpg.io/v1" || store.kind != "ObjectStore" {
            return Err(ObjectStoreError::WrongKind {
                api_version: store.api_version,
                kind: store.kind,
            });
        }
        let conf = &store.spec.configuration;
        if conf.destination_path.trim().is_empty() {
            return Err(ObjectStoreError::NoDestination);
        }
        if let Some(wal) = &conf.wal {
            if let Some(c) = &wal.compression {
                c.parse::<crate::Compression>()
                    .map_err(|_| ObjectStoreError::BadValue {
                        field: "spec.configuration.wal.compression",
                        value: c.clone(),
                        hint: crate::compression::sorted_wal_choice_hint(),
                    })?;
            }
            if wal.max_parallel == Some(0) {
                return Err(ObjectStoreError::BadValue {
                    field: "spec.configuration.wal.maxParallel",
                    value: "0".into(),
                    hint: "use 1 or more",
                });
            }
        }
        Ok(store)
    }

    /// Every secret reference in the manifest with the environment variable barman
    /// (and barrelman) reads it from, in the order the plugin sets them.
    pub fn secret_env(&self) -> Vec<(&'static str, &SecretKeySelector)> {
        let conf = &self.spec.configuration;
        let mut refs: Vec<(&'static str, &Option<SecretKeySelector>)> = Vec::new();
        if let Some(s3) = &conf.s3_credentials {
            refs.push(("AWS_ACCESS_KEY_ID", &s3.access_key_id));
            refs.push(("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key));
            refs.push(("AWS_DEFAULT_REGION", &s3.region));
            refs.push(("AWS_SESSION_TOKEN", &s3.session_token));
        }
        if let Some(az) = &conf.azure_credentials {
            refs.push(("AZURE_STORAGE_ACCOUNT", &az.storage_account));
            refs.push(("AZURE_STORAGE_KEY", &az.storage_key));
            refs.push(("AZURE_STORAGE_SAS_TOKEN", &az.storage_sas_token));
            refs.push(("AZURE_STORAGE_CONNECTION_STRING", &az.connection_string));
        }
        if let Some(g) = &conf.google_credentials {
            refs.push((
                "GOOGLE_APPLICATION_CREDENTIALS_JSON",
                &g.application_credentials,
            ));
        }
        refs.push(("AWS_CA_BUNDLE_PEM", &conf.endpoint_ca));
        refs.into_iter()
            .filter_map(|(var, sel)| sel.as_ref().map(|s| (var, s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata:
  name: minio-store
spec:
  retentionPolicy: "30d"
  configuration:
    destinationPath: s3://backups/pg
    endpointURL: http://minio:9000
    s3Credentials:
      accessKeyId:
        name: minio
        key: ACCESS_KEY_ID
      secretAccessKey:
        name: minio
        key: ACCESS_SECRET_KEY
    wal:
      compression: zstd
      maxParallel: 4
    data:
      compression: gzip
      jobs: 2
      immediateCheckpoint: true
    tags:
      env: test
  instanceSidecarConfiguration:
    retentionPolicyIntervalSeconds: 1800
"#;

    #[test]
    fn reads_a_real_manifest() {
        let s = ObjectStore::from_yaml(SAMPLE).unwrap();
        let c = &s.spec.configuration;
        assert_eq!(c.destination_path, "s3://backups/pg");
        assert_eq!(c.endpoint_url.as_deref(), Some("http://minio:9000"));
        assert_eq!(c.wal.as_ref().unwrap().max_parallel, Some(4));
        assert_eq!(c.data.as_ref().unwrap().immediate_checkpoint, Some(true));
        let env = s.secret_env();
        assert_eq!(env[0].0, "AWS_ACCESS_KEY_ID");
        assert_eq!(env[0].1.key, "ACCESS_KEY_ID");
        assert_eq!(env.len(), 2);
    }

    #[test]
    fn rejects_wrong_kind_and_bad_values() {
        let other = SAMPLE.replace("kind: ObjectStore", "kind: Cluster");
        assert!(matches!(
            ObjectStore::from_yaml(&other),
            Err(ObjectStoreError::WrongKind { .. })
        ));
        let bad = SAMPLE.replace("compression: zstd", "compression: brotli");
        let e = ObjectStore::from_yaml(&bad).unwrap_err().to_string();
        assert!(e.contains("wal.compression"), "{e}");
        assert!(ObjectStore::from_yaml("::").is_err());
    }
}
