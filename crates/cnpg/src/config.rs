//! Configuration resolution (reference 2.1): which ObjectStore and server name each role
//! uses, derived from the `cluster_definition` JSON CloudNativePG sends with every call.
//!
//! Decoding is lenient like upstream's: unknown fields are ignored and JSON `null` reads
//! as empty, so any CloudNativePG version's Cluster (or a fork's, under another API
//! group) is accepted.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::PLUGIN_NAME;

/// Plugin parameter naming the ObjectStore.
pub const PARAM_BARMAN_OBJECT_NAME: &str = "barmanObjectName";
/// Plugin parameter naming the server (folder) inside the ObjectStore's destination.
pub const PARAM_SERVER_NAME: &str = "serverName";

/// Reads `null` as the type's default, as Go's JSON decoding does for slices and maps.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The parts of a CloudNativePG Cluster the plugin reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct Cluster {
    /// `apiVersion`, e.g. `postgresql.cnpg.io/v1` (forks use other groups).
    #[serde(deserialize_with = "nullable")]
    pub api_version: String,
    /// `kind`, normally `Cluster`.
    #[serde(deserialize_with = "nullable")]
    pub kind: String,
    /// `metadata`.
    #[serde(deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(deserialize_with = "nullable")]
    pub spec: ClusterSpec,
    /// `status`.
    #[serde(deserialize_with = "nullable")]
    pub status: ClusterStatus,
}

/// The metadata fields the plugin reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `metadata.name`.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// `metadata.namespace`.
    #[serde(deserialize_with = "nullable")]
    pub namespace: String,
    /// `metadata.uid`.
    #[serde(deserialize_with = "nullable")]
    pub uid: String,
    /// `metadata.annotations`.
    #[serde(deserialize_with = "nullable")]
    pub annotations: BTreeMap<String, String>,
}

/// The spec fields the plugin reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterSpec {
    /// `spec.plugins`.
    #[serde(deserialize_with = "nullable")]
    pub plugins: Vec<PluginEntry>,
    /// `spec.externalClusters`.
    #[serde(deserialize_with = "nullable")]
    pub external_clusters: Vec<ExternalCluster>,
    /// `spec.bootstrap`.
    #[serde(deserialize_with = "nullable")]
    pub bootstrap: Bootstrap,
    /// `spec.replica`.
    #[serde(deserialize_with = "nullable")]
    pub replica: ReplicaSpec,
    /// `spec.walStorage`: when set, WAL lives on its own volume and a restore leaves
    /// `pg_wal` as a symlink to it (only its presence matters to the plugin).
    pub wal_storage: Option<serde_json::Value>,
}

/// One entry of `spec.plugins` or an external cluster's `plugin`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct PluginEntry {
    /// Plugin name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// `enabled`; absent means enabled.
    pub enabled: Option<bool>,
    /// `isWALArchiver`; absent means false.
    #[serde(rename = "isWALArchiver")]
    pub is_wal_archiver: Option<bool>,
    /// `parameters`.
    #[serde(deserialize_with = "nullable")]
    pub parameters: BTreeMap<String, String>,
}

impl PluginEntry {
    /// Whether the entry is enabled (absent `enabled` means yes, as in CloudNativePG).
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.parameters
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// One entry of `spec.externalClusters`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct ExternalCluster {
    /// Its name, referenced by `bootstrap.recovery.source` and `replica.source`.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Its `plugin`, when it is reached through a plugin.
    pub plugin: Option<PluginEntry>,
    /// Its `connectionParameters`: set when it can be streamed from.
    #[serde(deserialize_with = "nullable")]
    pub connection_parameters: BTreeMap<String, String>,
}

/// `spec.bootstrap`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct Bootstrap {
    /// `spec.bootstrap.recovery`.
    pub recovery: Option<Recovery>,
}

/// `spec.bootstrap.recovery`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct Recovery {
    /// Name of the external cluster to recover from.
    #[serde(deserialize_with = "nullable")]
    pub source: String,
    /// The point-in-time target, if any.
    pub recovery_target: Option<RecoveryTarget>,
}

/// `spec.bootstrap.recovery.recoveryTarget`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct RecoveryTarget {
    /// `backupID`.
    #[serde(rename = "backupID", deserialize_with = "nullable")]
    pub backup_id: String,
    /// `targetTime`.
    #[serde(deserialize_with = "nullable")]
    pub target_time: String,
    /// `targetLSN`.
    #[serde(rename = "targetLSN", deserialize_with = "nullable")]
    pub target_lsn: String,
    /// `targetTLI`.
    #[serde(rename = "targetTLI", deserialize_with = "nullable")]
    pub target_tli: String,
    /// `targetXID`.
    #[serde(rename = "targetXID", deserialize_with = "nullable")]
    pub target_xid: String,
    /// `targetName`.
    #[serde(deserialize_with = "nullable")]
    pub target_name: String,
    /// `targetImmediate`.
    pub target_immediate: Option<bool>,
    /// `exclusive`.
    pub exclusive: Option<bool>,
}

/// `spec.replica`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct ReplicaSpec {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// Name of the external cluster this replica cluster follows.
    #[serde(deserialize_with = "nullable")]
    pub source: String,
}

/// The status fields the plugin reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterStatus {
    /// `status.currentPrimary`: the Pod the retention loop runs on.
    #[serde(deserialize_with = "nullable")]
    pub current_primary: String,
}

impl Cluster {
    /// Decodes a `cluster_definition`.
    pub fn from_json(bytes: &[u8]) -> Result<Cluster, ConfigError> {
        serde_json::from_slice(bytes).map_err(|e| ConfigError::Decode(e.to_string()))
    }

    /// This plugin's entry in `spec.plugins`, enabled or not.
    pub fn plugin_entry(&self) -> Option<&PluginEntry> {
        self.spec.plugins.iter().find(|p| p.name == PLUGIN_NAME)
    }

    /// `spec.bootstrap.recovery.source`, when the Cluster bootstraps by recovery.
    pub fn recovery_source(&self) -> Option<&str> {
        self.spec
            .bootstrap
            .recovery
            .as_ref()
            .map(|r| r.source.as_str())
    }

    /// The external cluster `name` of `spec.externalClusters`.
    pub fn external_cluster(&self, name: &str) -> Option<&ExternalCluster> {
        self.spec.external_clusters.iter().find(|c| c.name == name)
    }
}

/// An ObjectStore (in the Cluster's namespace) and the server name inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreRef {
    /// `barmanObjectName`: the ObjectStore's `metadata.name`.
    pub object_store: String,
    /// `serverName`: the folder under the destination path.
    pub server_name: String,
}

/// Why an external-cluster reference (recovery or replica source) gives no store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceProblem {
    /// The Cluster field naming the source is absent or empty.
    NotSet,
    /// No `spec.externalClusters` entry has that name.
    UnknownExternalCluster(String),
    /// That external cluster has no `plugin`, or another plugin.
    NotThisPlugin(String),
    /// This plugin is named there but without `barmanObjectName`.
    NoObjectName(String),
}

/// The three (ObjectStore, server name) pairs of reference 2.1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginConfiguration {
    /// The Cluster's name.
    pub cluster_name: String,
    /// Archive and backup target, from `spec.plugins`.
    pub archive: Option<StoreRef>,
    /// Bootstrap recovery source, from `spec.bootstrap.recovery.source`.
    pub recovery: Result<StoreRef, SourceProblem>,
    /// Replica-cluster source, from `spec.replica.source`.
    pub replica_source: Result<StoreRef, SourceProblem>,
}

impl PluginConfiguration {
    /// Resolves the three stores of `cluster` as upstream does.
    ///
    /// `barmanObjectName` is read from this plugin's `spec.plugins` entry whether or not
    /// it is enabled, `serverName` only from an enabled entry (upstream's asymmetry);
    /// every server name defaults to the Cluster's own name, for the recovery source too.
    pub fn from_cluster(cluster: &Cluster) -> PluginConfiguration {
        let name = &cluster.metadata.name;
        let entry = cluster.plugin_entry();
        let archive = entry
            .and_then(|e| e.param(PARAM_BARMAN_OBJECT_NAME))
            .map(|store| {
                let server = entry
                    .filter(|e| e.is_enabled())
                    .and_then(|e| e.param(PARAM_SERVER_NAME))
                    .unwrap_or(name);
                StoreRef {
                    object_store: store.to_string(),
                    server_name: server.to_string(),
                }
            });
        PluginConfiguration {
            cluster_name: name.clone(),
            archive,
            recovery: source_store(cluster, cluster.recovery_source()),
            replica_source: source_store(cluster, Some(cluster.spec.replica.source.as_str())),
        }
    }

    /// Fails when the Cluster names no ObjectStore at all (upstream's `Validate`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.archive.is_none() && self.recovery.is_err() && self.replica_source.is_err() {
            return Err(ConfigError::NoObjectStore {
                cluster: self.cluster_name.clone(),
            });
        }
        Ok(())
    }

    /// The store WAL is archived to and backups are taken into.
    pub fn archive_store(&self) -> Result<&StoreRef, ConfigError> {
        self.archive
            .as_ref()
            .ok_or_else(|| ConfigError::NoArchiveStore {
                cluster: self.cluster_name.clone(),
            })
    }

    /// The store a bootstrap recovery reads from.
    pub fn recovery_store(&self) -> Result<&StoreRef, ConfigError> {
        self.recovery.as_ref().map_err(|p| ConfigError::Source {
            cluster: self.cluster_name.clone(),
            field: "spec.bootstrap.recovery.source",
            problem: p.clone(),
        })
    }

    /// The store a replica cluster's designated primary restores WAL from.
    pub fn replica_source_store(&self) -> Result<&StoreRef, ConfigError> {
        self.replica_source
            .as_ref()
            .map_err(|p| ConfigError::Source {
                cluster: self.cluster_name.clone(),
                field: "spec.replica.source",
                problem: p.clone(),
            })
    }
}

fn source_store(cluster: &Cluster, source: Option<&str>) -> Result<StoreRef, SourceProblem> {
    let source = source
        .filter(|s| !s.is_empty())
        .ok_or(SourceProblem::NotSet)?;
    let external = cluster
        .external_cluster(source)
        .ok_or_else(|| SourceProblem::UnknownExternalCluster(source.to_string()))?;
    let plugin = external
        .plugin
        .as_ref()
        .filter(|p| p.name == PLUGIN_NAME)
        .ok_or_else(|| SourceProblem::NotThisPlugin(source.to_string()))?;
    let store = plugin
        .param(PARAM_BARMAN_OBJECT_NAME)
        .ok_or_else(|| SourceProblem::NoObjectName(source.to_string()))?;
    let server = plugin
        .param(PARAM_SERVER_NAME)
        .unwrap_or(&cluster.metadata.name);
    Ok(StoreRef {
        object_store: store.to_string(),
        server_name: server.to_string(),
    })
}

fn describe(field: &str, problem: &SourceProblem) -> String {
    match problem {
        SourceProblem::NotSet => format!("{field} is not set"),
        SourceProblem::UnknownExternalCluster(s) => {
            format!("{field} names the external cluster {s:?}, which is not in spec.externalClusters")
        }
        SourceProblem::NotThisPlugin(s) => format!(
            "the external cluster {s:?} named by {field} has no plugin {PLUGIN_NAME:?}"
        ),
        SourceProblem::NoObjectName(s) => format!(
            "the plugin of the external cluster {s:?} named by {field} has no {PARAM_BARMAN_OBJECT_NAME} parameter"
        ),
    }
}

/// Why the Cluster's configuration cannot be used.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The `cluster_definition` is not a Cluster in JSON.
    #[error("the cluster_definition sent by CloudNativePG is not a Cluster in JSON: {0}")]
    Decode(String),
    /// None of the three stores is named.
    #[error(
        "the Cluster {cluster:?} names no ObjectStore for {PLUGIN_NAME}: set the \
         {PARAM_BARMAN_OBJECT_NAME} parameter in its spec.plugins entry, or in the plugin of \
         the external cluster named by spec.bootstrap.recovery.source or spec.replica.source"
    )]
    NoObjectStore {
        /// The Cluster's name.
        cluster: String,
    },
    /// No archive/backup store.
    #[error(
        "the Cluster {cluster:?} has no {PARAM_BARMAN_OBJECT_NAME} parameter in its \
         spec.plugins entry named {PLUGIN_NAME}, so there is no ObjectStore to archive to or \
         back up into"
    )]
    NoArchiveStore {
        /// The Cluster's name.
        cluster: String,
    },
    /// No recovery or replica-source store.
    #[error(
        "the Cluster {cluster:?} has no ObjectStore for {field}: {}",
        describe(field, problem)
    )]
    Source {
        /// The Cluster's name.
        cluster: String,
        /// The Cluster field naming the external cluster.
        field: &'static str,
        /// What is missing.
        problem: SourceProblem,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve(v: serde_json::Value) -> PluginConfiguration {
        PluginConfiguration::from_cluster(&Cluster::from_json(v.to_string().as_bytes()).unwrap())
    }

    fn store(o: &str, s: &str) -> StoreRef {
        StoreRef {
            object_store: o.into(),
            server_name: s.into(),
        }
    }

    fn ext(name: &str, plugin: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "plugin": plugin, "connectionParameters": {"host": "x"}})
    }

    #[test]
    fn archive_store_table() {
        let cases: Vec<(&str, serde_json::Value, Option<StoreRef>)> = vec![
            ("no plugins", json!([]), None),
            ("null plugins", json!(null), None),
            (
                "object name, default server",
                json!([{"name": PLUGIN_NAME, "parameters": {"barmanObjectName": "minio"}}]),
                Some(store("minio", "pg")),
            ),
            (
                "server name when enabled",
                json!([{"name": PLUGIN_NAME, "enabled": true, "isWALArchiver": true,
                        "parameters": {"barmanObjectName": "minio", "serverName": "old"}}]),
                Some(store("minio", "old")),
            ),
            (
                "server name ignored when disabled",
                json!([{"name": PLUGIN_NAME, "enabled": false,
                        "parameters": {"barmanObjectName": "minio", "serverName": "old"}}]),
                Some(store("minio", "pg")),
            ),
            (
                "another plugin only",
                json!([{"name": "other.example.com", "parameters": {"barmanObjectName": "m"}}]),
                None,
            ),
            (
                "empty object name",
                json!([{"name": PLUGIN_NAME, "parameters": {"barmanObjectName": ""}}]),
                None,
            ),
        ];
        for (what, plugins, want) in cases {
            let c = resolve(json!({
                "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
                "metadata": {"name": "pg", "namespace": "db", "unknownField": 1},
                "spec": {"instances": 3, "plugins": plugins},
            }));
            assert_eq!(c.archive, want, "{what}");
            assert_eq!(c.archive_store().ok(), want.as_ref(), "{what}");
        }
    }

    #[test]
    fn recovery_and_replica_source_table() {
        let ours = json!({"name": PLUGIN_NAME, "parameters": {"barmanObjectName": "src-store"}});
        let ours_named = json!({"name": PLUGIN_NAME,
            "parameters": {"barmanObjectName": "src-store", "serverName": "origin"}});
        let theirs = json!({"name": "other.example.com", "parameters": {"barmanObjectName": "x"}});
        let no_name = json!({"name": PLUGIN_NAME, "parameters": {"serverName": "origin"}});
        let cases: Vec<(
            &str,
            serde_json::Value,
            &str,
            Result<StoreRef, SourceProblem>,
        )> = vec![
            (
                "not set",
                json!([ext("src", ours.clone())]),
                "",
                Err(SourceProblem::NotSet),
            ),
            (
                "unknown source",
                json!([ext("src", ours.clone())]),
                "nope",
                Err(SourceProblem::UnknownExternalCluster("nope".into())),
            ),
            (
                // The server name defaults to the NEW Cluster's name, not the source's.
                "default server is the new cluster's",
                json!([ext("src", ours.clone())]),
                "src",
                Ok(store("src-store", "pg")),
            ),
            (
                "server name",
                json!([ext("src", ours_named)]),
                "src",
                Ok(store("src-store", "origin")),
            ),
            (
                "other plugin",
                json!([ext("src", theirs)]),
                "src",
                Err(SourceProblem::NotThisPlugin("src".into())),
            ),
            (
                "no plugin at all",
                json!([{"name": "src", "connectionParameters": {}}]),
                "src",
                Err(SourceProblem::NotThisPlugin("src".into())),
            ),
            (
                "no object name",
                json!([ext("src", no_name)]),
                "src",
                Err(SourceProblem::NoObjectName("src".into())),
            ),
        ];
        for (what, externals, source, want) in cases {
            let recovery = resolve(json!({
                "metadata": {"name": "pg"},
                "spec": {"externalClusters": externals.clone(),
                         "bootstrap": {"recovery": {"source": source,
                            "recoveryTarget": {"targetTime": "2026-01-01 00:00:00+00"}}}},
            }));
            assert_eq!(recovery.recovery, want, "recovery: {what}");
            assert_eq!(
                recovery.replica_source,
                Err(SourceProblem::NotSet),
                "{what}"
            );
            let replica = resolve(json!({
                "metadata": {"name": "pg"},
                "spec": {"externalClusters": externals, "replica": {"enabled": true, "source": source}},
            }));
            assert_eq!(replica.replica_source, want, "replica: {what}");
            assert_eq!(replica.recovery, Err(SourceProblem::NotSet), "{what}");
        }
    }

    #[test]
    fn errors_name_what_is_missing() {
        let c = resolve(json!({"metadata": {"name": "pg"}, "spec": {}}));
        let e = c.validate().unwrap_err();
        assert!(
            e.to_string().contains("\"pg\"") && e.to_string().contains("barmanObjectName"),
            "{e}"
        );
        let e = c.archive_store().unwrap_err().to_string();
        assert!(e.contains("spec.plugins") && e.contains(PLUGIN_NAME), "{e}");
        let e = c.recovery_store().unwrap_err().to_string();
        assert!(
            e.contains("spec.bootstrap.recovery.source is not set"),
            "{e}"
        );

        let c = resolve(json!({"metadata": {"name": "pg"},
            "spec": {"replica": {"source": "gone"}}}));
        let e = c.replica_source_store().unwrap_err().to_string();
        assert!(
            e.contains("\"gone\"") && e.contains("spec.externalClusters"),
            "{e}"
        );

        let c = resolve(json!({"metadata": {"name": "pg"},
            "spec": {"bootstrap": {"recovery": {"source": "src"}},
                     "externalClusters": [ext("src", json!({"name": PLUGIN_NAME}))]}}));
        assert!(c.validate().is_err());
        let e = c.recovery_store().unwrap_err().to_string();
        assert!(
            e.contains("\"src\"") && e.contains("barmanObjectName parameter"),
            "{e}"
        );
    }

    #[test]
    fn any_one_store_validates() {
        let c = resolve(json!({"metadata": {"name": "pg"},
            "spec": {"replica": {"source": "src"},
                     "externalClusters": [ext("src", json!({"name": PLUGIN_NAME,
                        "parameters": {"barmanObjectName": "s"}}))]}}));
        assert_eq!(c.validate(), Ok(()));
        assert!(c.archive_store().is_err());
    }

    #[test]
    fn lenient_decoding_keeps_what_it_reads() {
        let c = Cluster::from_json(
            json!({
                "apiVersion": "postgresql.example.com/v2", "kind": "Cluster",
                "metadata": {"name": "pg", "namespace": "db", "uid": "u-1",
                             "annotations": {"cnpg.io/skipEmptyWalArchiveCheck": "enabled"},
                             "labels": null, "managedFields": [{}]},
                "spec": {"plugins": null, "externalClusters": null, "bootstrap": null,
                         "postgresql": {"parameters": {"a": "b"}}},
                "status": {"currentPrimary": "pg-1", "phase": "Healthy"},
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.api_version, "postgresql.example.com/v2");
        assert_eq!(c.metadata.uid, "u-1");
        assert_eq!(
            c.metadata.annotations["cnpg.io/skipEmptyWalArchiveCheck"],
            "enabled"
        );
        assert_eq!(c.status.current_primary, "pg-1");
        assert_eq!(c.spec.wal_storage, None);
        let c = Cluster::from_json(br#"{"spec": {"walStorage": {"size": "1Gi"}}}"#).unwrap();
        assert!(c.spec.wal_storage.is_some());
        let e = Cluster::from_json(b"[1,2]").unwrap_err();
        assert!(matches!(e, ConfigError::Decode(_)), "{e}");
        assert!(e
            .to_string()
            .starts_with("the cluster_definition sent by CloudNativePG"));
    }
}
