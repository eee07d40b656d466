//! The ObjectStore resource (`barmancloud.cnpg.io/v1`, kind `ObjectStore`) as users
//! keep it in Kubernetes, and the resolution of its secret references.
//!
//! Field names follow the CRD exactly (camelCase). Unknown fields are tolerated so
//! that manifests written for newer plugin versions still load.
//!
//! With the `schema` feature the types also describe themselves as JSON schema: the
//! operator crate turns that into the CRD (`barrelman cnpg crd`), so the enums,
//! patterns, minimums, defaults and CEL rules written here are what the API server
//! enforces. Values stay plain strings and numbers on the serde side on purpose: a
//! store the API server accepted must always load here, whatever it holds.

use serde::Deserialize;
use std::collections::BTreeMap;

/// A whole ObjectStore manifest.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStore {
    /// The manifest's `apiVersion`; [`ObjectStore::from_yaml`] accepts only
    /// `barmancloud.cnpg.io/v1`.
    pub api_version: String,
    /// The manifest's `kind`; [`ObjectStore::from_yaml`] accepts only `ObjectStore`.
    pub kind: String,
    /// The manifest's `metadata` (only the name and namespace are kept).
    #[serde(default)]
    pub metadata: Metadata,
    /// The manifest's `spec`: where the archive is and how to reach it.
    pub spec: ObjectStoreSpec,
}

/// The part of a Kubernetes object's `metadata` that identifies the ObjectStore.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Metadata {
    /// `metadata.name`: the ObjectStore's name, as a Cluster's plugin parameter
    /// `barmanObjectName` refers to it; absent in a hand-written manifest that
    /// leaves it out.
    #[serde(default)]
    pub name: Option<String>,
    /// `metadata.namespace`: the namespace the ObjectStore and its Secrets live in.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// The ObjectStore's `spec` (CRD section `spec`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSpec {
    /// `spec.configuration`: the archive's location, credentials and WAL and base
    /// backup options (required by the CRD).
    pub configuration: BarmanObjectStoreConfiguration,
    /// `spec.retentionPolicy`: the recovery window to keep, as the CRD writes it
    /// (`30d`, `4w`, `6m`: a number followed by days, weeks or months).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = RETENTION_POLICY_PATTERN)))]
    pub retention_policy: Option<String>,
    /// `spec.instanceSidecarConfiguration`: how the sidecar injected into the
    /// instance Pods runs (environment, resources, arguments, log level, retention
    /// period).
    #[serde(default)]
    pub instance_sidecar_configuration: Option<InstanceSidecarConfiguration>,
}

/// The pattern of `spec.retentionPolicy` (a recovery window: a positive number of
/// days, weeks or months), as the CRD checks it.
pub const RETENTION_POLICY_PATTERN: &str = "^[1-9][0-9]*[dwm]$";

/// The message of the CRD's CEL rule forbidding `spec.configuration.serverName`.
pub const SERVER_NAME_FORBIDDEN: &str =
    "use the 'serverName' plugin parameter in the Cluster resource";

/// The message of the CRD's CEL rule forbidding `--log-level` in
/// `spec.instanceSidecarConfiguration.additionalContainerArgs`.
pub const LOG_LEVEL_ARG_FORBIDDEN: &str = "do not set --log-level in additionalContainerArgs; use spec.instanceSidecarConfiguration.logLevel";

/// The log levels the sidecar takes (`spec.instanceSidecarConfiguration.logLevel`).
pub const LOG_LEVELS: [&str; 5] = ["error", "warning", "info", "debug", "trace"];

/// `spec.instanceSidecarConfiguration`: settings of the sidecar container the
/// operator injects into every instance Pod that archives.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct InstanceSidecarConfiguration {
    /// `env`: extra environment variables of the sidecar (Kubernetes `EnvVar`s:
    /// `name` with `value` or `valueFrom`), kept as JSON and copied into the Pod.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Vec<k8s_openapi::api::core::v1::EnvVar>")
    )]
    pub env: Vec<serde_json::Value>,
    /// `retentionPolicyIntervalSeconds`: seconds between two retention cycles of the
    /// instance sidecar (1800 when absent).
    // A value that is not a whole number reads as unset: it must not make the whole
    // ObjectStore (and with it WAL archiving) unreadable.
    #[serde(default, deserialize_with = "lenient_seconds")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "schema::integer", extend("default" = 1800))
    )]
    pub retention_policy_interval_seconds: Option<i64>,
    /// `resources`: the sidecar's requests and limits (a Kubernetes
    /// `ResourceRequirements`), kept as JSON and copied into the Pod.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<k8s_openapi::api::core::v1::ResourceRequirements>")
    )]
    pub resources: Option<serde_json::Value>,
    /// `additionalContainerArgs`: arguments appended to the sidecar's own; never
    /// `--log-level` (set `logLevel` instead).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("x-kubernetes-validations" = [{
        "message": LOG_LEVEL_ARG_FORBIDDEN,
        "reason": "FieldValueForbidden",
        "rule": "!self.exists(a, a.startsWith('--log-level'))",
    }])))]
    pub additional_container_args: Vec<String>,
    /// `logLevel`: the sidecar's log level (`error`, `warning`, `info`, `debug`,
    /// `trace`; `info` when absent).
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(extend("enum" = LOG_LEVELS, "default" = "info"))
    )]
    pub log_level: Option<String>,
}

fn lenient_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Whole(i64),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<Seconds>::deserialize(d)? {
        Some(Seconds::Whole(n)) => Some(n),
        Some(Seconds::Other(_)) | None => None,
    })
}

/// The ObjectStore's `status`, written by the instance sidecars.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreStatus {
    /// `serverRecoveryWindow`: per server name, the span the archive can restore.
    #[serde(default)]
    pub server_recovery_window: BTreeMap<String, RecoveryWindow>,
}

/// The recovery window of one server in the archive (RFC 3339 timestamps).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RecoveryWindow {
    /// `firstRecoverabilityPoint`: the earliest time the server can be restored to.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("format" = "date-time")))]
    pub first_recoverability_point: Option<String>,
    /// `lastSuccessfulBackupTime`: when the last base backup succeeded.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("format" = "date-time")))]
    pub last_successful_backup_time: Option<String>,
    /// `lastFailedBackupTime`: when the last base backup failed.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("format" = "date-time")))]
    pub last_failed_backup_time: Option<String>,
}

/// Schemas the derive cannot say with attributes: integers with the CRD's exact
/// type, format and minimum (the derive would write `uint32`, which the API server
/// does not know).
#[cfg(feature = "schema")]
mod schema {
    use schemars::{json_schema, Schema, SchemaGenerator};

    pub(super) fn int32_at_least_one(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "format": "int32", "minimum": 1})
    }

    pub(super) fn integer_at_least_one(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "minimum": 1})
    }

    pub(super) fn integer(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer"})
    }
}

/// A reference to one key of a Kubernetes Secret (`{name, key}` in the CRD).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SecretKeySelector {
    /// The Secret's name, in the ObjectStore's namespace.
    pub name: String,
    /// The key inside the Secret's `data` whose value is wanted.
    pub key: String,
}

/// `spec.configuration` of an ObjectStore: barman-cloud's own description of an
/// archive (the type is named after the CRD's `BarmanObjectStoreConfiguration`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("x-kubernetes-validations" = [{
    "fieldPath": ".serverName",
    "message": SERVER_NAME_FORBIDDEN,
    "reason": "FieldValueForbidden",
    "rule": "!has(self.serverName)",
}])))]
#[serde(rename_all = "camelCase")]
pub struct BarmanObjectStoreConfiguration {
    /// `destinationPath`: the archive's URL (`s3://bucket/path`,
    /// `https://account.blob.core.windows.net/container/path`, `gs://bucket/path`);
    /// each server's WALs and base backups live under `<destinationPath>/<server>/`.
    #[cfg_attr(feature = "schema", schemars(extend("minLength" = 1)))]
    pub destination_path: String,
    /// `endpointURL`: the endpoint to use instead of the provider's default
    /// (MinIO, Ceph, SeaweedFS…).
    #[serde(default, rename = "endpointURL")]
    pub endpoint_url: Option<String>,
    /// `endpointCA`: the Secret key holding the PEM CA bundle the endpoint's TLS
    /// certificate is checked against.
    #[serde(default, rename = "endpointCA")]
    pub endpoint_ca: Option<SecretKeySelector>,
    /// `serverName`: forbidden by the CRD's validation (the server name is the
    /// Cluster's plugin parameter); kept so that such a manifest still parses.
    #[serde(default)]
    pub server_name: Option<String>,
    /// `s3Credentials`: how to authenticate to S3 or an S3-compatible store.
    #[serde(default)]
    pub s3_credentials: Option<S3Credentials>,
    /// `azureCredentials`: how to authenticate to Azure Blob Storage.
    #[serde(default)]
    pub azure_credentials: Option<AzureCredentials>,
    /// `googleCredentials`: how to authenticate to Google Cloud Storage.
    #[serde(default)]
    pub google_credentials: Option<GoogleCredentials>,
    /// `wal`: options for archiving and restoring WAL files.
    #[serde(default)]
    pub wal: Option<WalConfiguration>,
    /// `data`: options for base backups and their restore.
    #[serde(default)]
    pub data: Option<DataConfiguration>,
    /// `tags`: object tags (key → value) put on every uploaded WAL and base backup
    /// object (barman-cloud's `--tags`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `historyTags`: object tags put on timeline `.history` files instead of
    /// `tags` (barman-cloud-wal-archive's `--history-tags`).
    #[serde(default)]
    pub history_tags: BTreeMap<String, String>,
}

/// `spec.configuration.s3Credentials`: each value comes from a Secret key, and
/// reaches barman as the `AWS_*` variable named on the field.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct S3Credentials {
    /// `accessKeyId`: the access key id (`AWS_ACCESS_KEY_ID`).
    #[serde(default)]
    pub access_key_id: Option<SecretKeySelector>,
    /// `secretAccessKey`: the secret access key (`AWS_SECRET_ACCESS_KEY`).
    #[serde(default)]
    pub secret_access_key: Option<SecretKeySelector>,
    /// `region`: the bucket's region (`AWS_DEFAULT_REGION`).
    #[serde(default)]
    pub region: Option<SecretKeySelector>,
    /// `sessionToken`: the session token of temporary credentials
    /// (`AWS_SESSION_TOKEN`).
    #[serde(default)]
    pub session_token: Option<SecretKeySelector>,
    /// `inheritFromIAMRole`: take the credentials from the pod's IAM role
    /// (IRSA) instead of a Secret; no variable is set.
    #[serde(default, rename = "inheritFromIAMRole")]
    pub inherit_from_iam_role: bool,
}

/// `spec.configuration.azureCredentials`: either `connectionString` alone, or a
/// `storageAccount` with one of key, SAS token, Azure AD or default credentials.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AzureCredentials {
    /// `connectionString`: a full storage connection string
    /// (`AZURE_STORAGE_CONNECTION_STRING`); also how the Azurite emulator is
    /// reached.
    #[serde(default)]
    pub connection_string: Option<SecretKeySelector>,
    /// `storageAccount`: the storage account name (`AZURE_STORAGE_ACCOUNT`).
    #[serde(default)]
    pub storage_account: Option<SecretKeySelector>,
    /// `storageKey`: the storage account's access key (`AZURE_STORAGE_KEY`).
    #[serde(default)]
    pub storage_key: Option<SecretKeySelector>,
    /// `storageSasToken`: a shared access signature (`AZURE_STORAGE_SAS_TOKEN`).
    #[serde(default)]
    pub storage_sas_token: Option<SecretKeySelector>,
    /// `inheritFromAzureAD`: authenticate as the pod's managed identity
    /// (barman-cloud's `--credential managed-identity`).
    #[serde(default, rename = "inheritFromAzureAD")]
    pub inherit_from_azure_ad: bool,
    /// `useDefaultAzureCredentials`: use the Azure SDK's default credential chain
    /// (barman-cloud's `--credential default`).
    #[serde(default)]
    pub use_default_azure_credentials: bool,
}

/// `spec.configuration.googleCredentials`: exactly one of its two fields is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GoogleCredentials {
    /// `applicationCredentials`: the service account key file's JSON content
    /// (what `GOOGLE_APPLICATION_CREDENTIALS` points to).
    #[serde(default)]
    pub application_credentials: Option<SecretKeySelector>,
    /// `gkeEnvironment`: use the GKE workload identity (application default
    /// credentials) instead of a key.
    #[serde(default)]
    pub gke_environment: bool,
}

/// `spec.configuration.wal`: options for WAL archive and restore.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct WalConfiguration {
    /// `compression`: the codec WAL files are compressed with before upload
    /// (`bzip2`, `gzip`, `lz4`, `snappy`, `xz`, `zstd`; none when absent);
    /// checked by [`ObjectStore::from_yaml`].
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(extend("enum" = ["bzip2", "gzip", "lz4", "snappy", "xz", "zstd"]))
    )]
    pub compression: Option<String>,
    /// `encryption`: the server-side encryption asked of S3 for WAL objects
    /// (`AES256` or `aws:kms`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["AES256", "aws:kms"])))]
    pub encryption: Option<String>,
    /// `maxParallel`: how many WAL files one archive call uploads at once, and how
    /// many one restore call fetches ahead into the spool (1 or more).
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "schema::integer_at_least_one")
    )]
    pub max_parallel: Option<u32>,
    /// `archiveAdditionalCommandArgs`: extra arguments the plugin appends to
    /// barman-cloud-wal-archive.
    #[serde(default)]
    pub archive_additional_command_args: Vec<String>,
    /// `restoreAdditionalCommandArgs`: extra arguments the plugin appends to
    /// barman-cloud-wal-restore.
    #[serde(default)]
    pub restore_additional_command_args: Vec<String>,
}

/// `spec.configuration.data`: options for base backups and their restore.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DataConfiguration {
    /// `compression`: the codec base backup tar files are compressed with
    /// (`bzip2`, `gzip`, `lz4`, `snappy`; none when absent).
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(extend("enum" = ["bzip2", "gzip", "lz4", "snappy"]))
    )]
    pub compression: Option<String>,
    /// `encryption`: the server-side encryption asked of S3 for base backup
    /// objects (`AES256` or `aws:kms`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["AES256", "aws:kms"])))]
    pub encryption: Option<String>,
    /// `jobs`: how many uploads a base backup runs in parallel
    /// (barman-cloud-backup's `--jobs`, 2 when absent).
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "schema::int32_at_least_one")
    )]
    pub jobs: Option<u32>,
    /// `immediateCheckpoint`: ask PostgreSQL for an immediate checkpoint when the
    /// backup starts instead of waiting for a spread one.
    #[serde(default)]
    pub immediate_checkpoint: Option<bool>,
    /// `additionalCommandArgs`: extra arguments the plugin appends to
    /// barman-cloud-backup.
    #[serde(default)]
    pub additional_command_args: Vec<String>,
    /// `restoreAdditionalCommandArgs`: extra arguments the plugin appends to
    /// barman-cloud-restore.
    #[serde(default)]
    pub restore_additional_command_args: Vec<String>,
}

/// A manifest that cannot be used, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectStoreError {
    /// The text is not YAML of the ObjectStore's shape; carries the parser's
    /// message.
    #[error("cannot read the ObjectStore manifest: {0}")]
    Yaml(String),
    /// The manifest describes another kind of resource.
    #[error("the manifest is apiVersion '{api_version}', kind '{kind}'; expected apiVersion barmancloud.cnpg.io/v1, kind ObjectStore")]
    WrongKind {
        /// The manifest's `apiVersion`.
        api_version: String,
        /// The manifest's `kind`.
        kind: String,
    },
    /// `spec.configuration.destinationPath` is empty or blank.
    #[error("spec.configuration.destinationPath is empty; set it to the archive URL, e.g. s3://bucket/path")]
    NoDestination,
    /// A field holds a value barrelman cannot use.
    #[error("{field} is '{value}': {hint}")]
    BadValue {
        /// The field's path in the manifest (`spec.configuration.wal.compression`).
        field: &'static str,
        /// The value found there.
        value: String,
        /// What to write instead.
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
    fn the_retention_interval_is_read_and_a_bad_one_is_unset() {
        let s = ObjectStore::from_yaml(SAMPLE).unwrap();
        let interval = |s: &ObjectStore| {
            s.spec
                .instance_sidecar_configuration
                .as_ref()
                .and_then(|c| c.retention_policy_interval_seconds)
        };
        assert_eq!(interval(&s), Some(1800));
        let odd = SAMPLE.replace(
            "retentionPolicyIntervalSeconds: 1800",
            "retentionPolicyIntervalSeconds: \"half an hour\"",
        );
        let s = ObjectStore::from_yaml(&odd).unwrap();
        assert_eq!(interval(&s), None);
        assert_eq!(s.spec.configuration.destination_path, "s3://backups/pg");
    }

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
    fn reads_the_sidecar_configuration() {
        let text = SAMPLE.replace(
            "  instanceSidecarConfiguration:\n",
            "  instanceSidecarConfiguration:
    env:
      - name: AWS_REQUEST_CHECKSUM_CALCULATION
        value: when_required
      - name: TOKEN
        valueFrom:
          secretKeyRef: {name: tok, key: t}
    resources:
      requests: {cpu: 100m, memory: 128Mi}
    additionalContainerArgs: [\"--pprof-server=:6060\"]
    logLevel: debug
",
        );
        let s = ObjectStore::from_yaml(&text).unwrap();
        let c = s.spec.instance_sidecar_configuration.unwrap();
        assert_eq!(c.env.len(), 2);
        assert_eq!(c.env[0]["value"], "when_required");
        assert_eq!(c.env[1]["valueFrom"]["secretKeyRef"]["key"], "t");
        assert_eq!(c.resources.unwrap()["requests"]["memory"], "128Mi");
        assert_eq!(c.additional_container_args, ["--pprof-server=:6060"]);
        assert_eq!(c.log_level.as_deref(), Some("debug"));
        assert_eq!(c.retention_policy_interval_seconds, Some(1800));
        // Absent lists read as empty.
        let json: ObjectStore = serde_json::from_str(
            r#"{"apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
                "spec": {"configuration": {"destinationPath": "s3://b/"},
                         "instanceSidecarConfiguration": {}}}"#,
        )
        .unwrap();
        let c = json.spec.instance_sidecar_configuration.unwrap();
        assert!(c.env.is_empty() && c.resources.is_none());
    }

    #[test]
    fn sidecar_settings_load_leniently() {
        let s = ObjectStore::from_yaml(SAMPLE).unwrap();
        let sidecar = s.spec.instance_sidecar_configuration.unwrap();
        assert_eq!(sidecar.retention_policy_interval_seconds, Some(1800));
        assert_eq!(sidecar.log_level, None);
        // What the CRD refuses or does not know still loads here: the API server is
        // the gate, and the operator reports the rest (crd::cel_rule_violations).
        let odd = SAMPLE
            .replace("    destinationPath:", "    serverName: old\n    destinationPath:")
            .replace(
                "  instanceSidecarConfiguration:\n",
                "  instanceSidecarConfiguration:\n    logLevel: verbose\n    futureField: 1\n    additionalContainerArgs: [\"--log-level=debug\"]\n",
            );
        let s = ObjectStore::from_yaml(&odd).unwrap();
        assert_eq!(s.spec.configuration.server_name.as_deref(), Some("old"));
        let sidecar = s.spec.instance_sidecar_configuration.unwrap();
        assert_eq!(sidecar.log_level.as_deref(), Some("verbose"));
        assert_eq!(sidecar.additional_container_args, ["--log-level=debug"]);
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
