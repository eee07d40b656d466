//! The instance sidecar's background loop (reference 2.7): run a [`retention_cycle`],
//! sleep the ObjectStore's `instanceSidecarConfiguration.retentionPolicyIntervalSeconds`
//! (see [`sleep_after`]), again, until the server stops.
//!
//! A cycle, on the Pod that is the Cluster's current primary only: apply the
//! ObjectStore's `retentionPolicy` with the core's `ops::delete` (barman's
//! `RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS`, obsolete WAL included, WAL a kept backup
//! needs never); a failure becomes a Warning Event `RetentionPolicyFailed` on the
//! Cluster. Then the CloudNativePG Backup objects whose backup left the catalog are
//! deleted ([`backups_to_delete`]), the ObjectStore's recovery window refreshed, and
//! the end of the recovery window recomputed for the metrics ([`window_end`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use barrelman_core::retention::{InvalidPolicy, Policy};
use barrelman_core::{Classified, ErrorClass};
use barrelman_ops::delete::{DeleteError, DeleteRequest, Selection};
use barrelman_ops::verify::CheckError;
use barrelman_storage::{Archive, StorageError};
use serde_json::Value;

use crate::config::{Cluster, ConfigError, PluginConfiguration};
use crate::k8s::{KubeAccess, KubeError};
use crate::settings::Settings;
use crate::stats::{PluginStats, WindowEnd};
use crate::store::Stores;
use crate::wal::WalError;
use crate::PLUGIN_NAME;

/// The sleep when the ObjectStore does not set the interval (the CRD's default).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1800);

/// The sleep after a failed cycle, or when the interval is 0 or negative (upstream's).
pub const RETRY_INTERVAL: Duration = Duration::from_secs(300);

/// The Event reason of a failed retention policy, as upstream names it.
pub const POLICY_FAILED_REASON: &str = "RetentionPolicyFailed";

/// The Event's source component, as upstream's recorder is named.
pub const EVENT_COMPONENT: &str = "policy-runnable";

/// `retentionPolicyIntervalSeconds` → the sleep: unset is the CRD's default, 0 or
/// less the retry interval.
pub fn interval_rule(configured: Option<i64>) -> Duration {
    match configured {
        None => DEFAULT_INTERVAL,
        Some(n) if n > 0 => Duration::from_secs(n as u64),
        Some(_) => RETRY_INTERVAL,
    }
}

/// The sleep after a cycle: [`RETRY_INTERVAL`] after a failure (the cycle's or its
/// retention policy's) or when the ObjectStore was not reached, else
/// [`interval_rule`] of the ObjectStore's setting.
pub fn sleep_after(result: &Result<CycleReport, RetentionError>) -> Duration {
    match result {
        Ok(r) if r.policy_error.is_none() && r.store_read => interval_rule(r.interval_seconds),
        _ => RETRY_INTERVAL,
    }
}

/// Why a cycle stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// Reading the Cluster, listing or deleting Backups, or posting the Event failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The Cluster could not be decoded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The ObjectStore could not be read or opened.
    #[error(transparent)]
    Store(WalError),
    /// `retentionPolicy` is not what the CRD allows.
    #[error(
        "the ObjectStore {store:?} has spec.retentionPolicy {value:?}, which is not a number \
         followed by d, w or m (e.g. 30d); fix it"
    )]
    Policy {
        /// The ObjectStore's name.
        store: String,
        /// The value.
        value: String,
    },
    /// Applying the policy failed.
    #[error(
        "applying the retention policy {policy} to the ObjectStore {store:?} failed: {source}"
    )]
    Delete {
        /// The ObjectStore's name.
        store: String,
        /// The policy, as barman writes it.
        policy: Policy,
        /// Why.
        #[source]
        source: DeleteError,
    },
    /// Listing the backup catalog failed (no Backup object is deleted then).
    #[error("listing the backups of the ObjectStore {store:?} failed: {source}")]
    Catalog {
        /// The ObjectStore's name.
        store: String,
        /// Why.
        #[source]
        source: StorageError,
    },
}

impl Classified for RetentionError {
    fn class(&self) -> ErrorClass {
        match self {
            RetentionError::Kube(KubeError::NotFound { .. } | KubeError::Invalid { .. }) => {
                ErrorClass::Input
            }
            RetentionError::Kube(
                KubeError::Forbidden { .. } | KubeError::SecretForbidden { .. },
            ) => ErrorClass::Denied,
            RetentionError::Kube(_) => ErrorClass::Unavailable,
            RetentionError::Config(_) | RetentionError::Policy { .. } => ErrorClass::Input,
            RetentionError::Store(e) => e.class(),
            RetentionError::Delete { source, .. } => source.class(),
            RetentionError::Catalog { source, .. } => source.class(),
        }
    }

    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            RetentionError::Store(e) => e.hint(),
            RetentionError::Delete { source, .. } => source.hint(),
            RetentionError::Catalog { source, .. } => source.hint(),
            _ => None,
        }
    }
}

impl RetentionError {
    /// The one sentence (with the hint) logged and put into the Event.
    pub fn sentence(&self) -> String {
        match self.hint() {
            Some(h) => format!("{self}; {h}"),
            None => self.to_string(),
        }
    }
}

/// What one cycle did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CycleReport {
    /// Why nothing was done, when nothing was (not the primary, plugin not enabled…).
    pub skipped: Option<String>,
    /// Whether the ObjectStore was read (its interval is known).
    pub store_read: bool,
    /// Its `retentionPolicyIntervalSeconds`.
    pub interval_seconds: Option<i64>,
    /// The policy's failure, as posted in the Warning Event.
    pub policy_error: Option<String>,
    /// Ids of the backups the policy deleted from the store.
    pub deleted_backups: Vec<String>,
    /// Names of the CloudNativePG Backup objects deleted.
    pub deleted_objects: Vec<String>,
    /// The end of the recovery window as recomputed.
    pub window_end: Option<WindowEnd>,
}

/// What a cycle needs: the sidecar's settings, the Kubernetes API, the opened stores
/// and the metrics state it refreshes.
#[derive(Clone)]
pub struct RetentionContext {
    settings: Arc<Settings>,
    kube: Arc<KubeAccess>,
    stores: Stores,
    stats: Arc<PluginStats>,
}

impl std::fmt::Debug for RetentionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionContext")
            .field("cluster", &self.settings.cluster_name)
            .field("pod", &self.settings.pod_name)
            .finish_non_exhaustive()
    }
}

impl RetentionContext {
    /// A context of its own (tests, tools): stores opened afresh, `stats` refreshed.
    pub fn new(settings: Settings, kube: Arc<KubeAccess>, stats: Arc<PluginStats>) -> Self {
        let stores = Stores::new(Some(kube.clone()), &settings);
        Self::with_stores(Arc::new(settings), kube, stores, stats)
    }

    /// The server's context, sharing its opened stores.
    pub(crate) fn with_stores(
        settings: Arc<Settings>,
        kube: Arc<KubeAccess>,
        stores: Stores,
        stats: Arc<PluginStats>,
    ) -> Self {
        RetentionContext {
            settings,
            kube,
            stores,
            stats,
        }
    }
}

/// True when the Backup object `b` is one this plugin took for this Cluster and
/// completed, and its backup id is not in `catalog`: upstream's rule, exactly.
/// A Cluster without a uid matches nothing (a real API server always sets one).
pub fn backup_is_orphaned(
    b: &Value,
    cluster: &str,
    cluster_uid: &str,
    catalog: &BTreeSet<String>,
) -> bool {
    let s = |p: &str| b.pointer(p).and_then(Value::as_str).unwrap_or_default();
    !cluster_uid.is_empty()
        && s("/spec/cluster/name") == cluster
        && s("/status/phase") == "completed"
        && s("/status/method") == "plugin"
        && s("/status/pluginMetadata/clusterUID") == cluster_uid
        && s("/status/pluginMetadata/pluginName") == PLUGIN_NAME
        && !catalog.contains(s("/status/backupID"))
}

/// The names of the Backup objects [`backup_is_orphaned`] selects, with one guard
/// upstream lacks: an empty `catalog` is more likely a wrong `destinationPath` or
/// server name (a store that was never written) than every backup gone, so then
/// only the Backup objects of backups this cycle's policy deleted (`deleted_now`)
/// go, and the others stay until the catalog shows backups again.
pub fn backups_to_delete<'a>(
    backups: &'a [Value],
    cluster: &str,
    cluster_uid: &str,
    catalog: &BTreeSet<String>,
    deleted_now: &[String],
) -> Vec<&'a str> {
    backups
        .iter()
        .filter(|b| backup_is_orphaned(b, cluster, cluster_uid, catalog))
        .filter(|b| {
            !catalog.is_empty() || {
                let id = b.pointer("/status/backupID").and_then(Value::as_str);
                deleted_now.iter().any(|d| Some(d.as_str()) == id)
            }
        })
        .filter_map(|b| b.pointer("/metadata/name").and_then(Value::as_str))
        .collect()
}

/// The end of the recovery window of `archive`: the last segment reachable from the
/// newest restorable backup through an unbroken WAL chain (`ops::verify`'s chain),
/// `None` when there is no such backup or segment.
pub async fn window_end(archive: &Archive) -> Result<Option<WindowEnd>, CheckError> {
    let report = barrelman_ops::verify::verify(archive, None, false).await?;
    Ok(report.chain.and_then(|c| {
        Some(WindowEnd {
            lsn: c.end_lsn()?,
            segment: c.contiguous_until.clone()?,
            archived_at: c.until_archived_at,
        })
    }))
}

/// Recomputes the window's end into `stats`; a failure is logged and leaves the last
/// value (the metric then shows the last known end).
pub(crate) async fn refresh_window_end(
    archive: &Archive,
    stats: &PluginStats,
) -> Option<WindowEnd> {
    match window_end(archive).await {
        Ok(end) => {
            stats.set_window_end(end.clone());
            end
        }
        Err(e) => {
            tracing::warn!("cannot compute the end of the recovery window: {e}");
            None
        }
    }
}

/// One cycle; see the module's documentation.
pub async fn retention_cycle(ctx: &RetentionContext) -> Result<CycleReport, RetentionError> {
    let mut report = CycleReport::default();
    let settings = &ctx.settings;
    let api = settings.cnpg_api();
    let json = ctx.kube.cluster(api, &settings.cluster_name).await?;
    let bytes = serde_json::to_vec(&json).unwrap_or_default();
    let cluster = Cluster::from_json(&bytes)?;
    if !cluster.plugin_entry().is_some_and(|p| p.is_enabled()) {
        report.skipped = Some(format!(
            "the plugin is not an enabled entry of the Cluster {:?}'s spec.plugins",
            cluster.metadata.name
        ));
        return Ok(report);
    }
    let config = PluginConfiguration::from_cluster(&cluster);
    let Ok(store_ref) = config.archive_store().cloned() else {
        report.skipped = Some("the Cluster names no archive ObjectStore".into());
        return Ok(report);
    };
    let opened = ctx
        .stores
        .open(&store_ref)
        .await
        .map_err(|e| RetentionError::Store(e.into()))?;
    report.store_read = true;
    let spec = &opened.store.spec;
    report.interval_seconds = spec
        .instance_sidecar_configuration
        .as_ref()
        .and_then(|c| c.retention_policy_interval_seconds);
    if cluster.status.current_primary != settings.pod_name {
        report.skipped = Some(format!(
            "this Pod ({}) is not the current primary ({:?})",
            settings.pod_name, cluster.status.current_primary
        ));
        return Ok(report);
    }

    if let Some(text) = spec.retention_policy.as_deref() {
        let applied = apply_policy(&opened.archive, &store_ref.object_store, text).await;
        match applied {
            Ok(ids) => report.deleted_backups = ids,
            Err(e) => {
                let sentence = e.sentence();
                tracing::error!(store = %store_ref.object_store, "retention policy failed: {sentence}");
                if let Err(ev) = ctx
                    .kube
                    .post_event(&policy_event(&cluster, &sentence))
                    .await
                {
                    tracing::warn!("cannot post the {POLICY_FAILED_REASON} Event: {ev}");
                }
                report.policy_error = Some(sentence);
            }
        }
    }

    // The catalog as it is now; unreadable backup.info files count as present (their
    // backups exist: their Backup objects must stay).
    let (backups, unreadable) = barrelman_ops::catalog::load(&opened.archive)
        .await
        .map_err(|source| RetentionError::Catalog {
            store: store_ref.object_store.clone(),
            source,
        })?;
    let ids: BTreeSet<String> = backups
        .iter()
        .map(|b| b.backup_id.clone())
        .chain(
            unreadable
                .iter()
                .map(|u| u.split(':').next().unwrap_or_default().to_string()),
        )
        .collect();
    let objects = ctx.kube.backups(api).await?;
    let orphaned = backups_to_delete(
        &objects,
        &cluster.metadata.name,
        &cluster.metadata.uid,
        &ids,
        &report.deleted_backups,
    );
    let upstream_would_delete = objects
        .iter()
        .filter(|b| backup_is_orphaned(b, &cluster.metadata.name, &cluster.metadata.uid, &ids))
        .count();
    if upstream_would_delete > orphaned.len() {
        tracing::warn!(
            store = %store_ref.object_store,
            location = %opened.archive.location(),
            kept = upstream_would_delete - orphaned.len(),
            "the store holds no backup of this cluster while completed Backup objects name \
             some: those Backup objects are kept; check the ObjectStore's destinationPath \
             and the server name"
        );
    }
    for name in orphaned {
        tracing::info!(
            backup = name,
            "deleting the Backup object: its backup left the catalog"
        );
        ctx.kube.delete_backup(api, name).await?;
        report.deleted_objects.push(name.to_string());
    }

    crate::backup::refresh_window(&ctx.kube, &store_ref, &backups).await;
    report.window_end = refresh_window_end(&opened.archive, &ctx.stats).await;
    Ok(report)
}

/// Applies `text` (`30d`…) to the archive; the ids deleted.
async fn apply_policy(
    archive: &Archive,
    store: &str,
    text: &str,
) -> Result<Vec<String>, RetentionError> {
    let policy =
        Policy::from_cnpg(text).map_err(|InvalidPolicy(value)| RetentionError::Policy {
            store: store.to_string(),
            value,
        })?;
    let req = DeleteRequest {
        selection: Selection::Policy(policy),
        minimum_redundancy: 0,
        dry_run: false,
        now: chrono::Utc::now().fixed_offset(),
        force: false,
        batch_size: None,
    };
    let report = barrelman_ops::delete::delete(archive, &req)
        .await
        .map_err(|source| RetentionError::Delete {
            store: store.to_string(),
            policy,
            source,
        })?;
    let ids: Vec<String> = report.deletions.into_iter().map(|d| d.backup_id).collect();
    if !ids.is_empty() {
        tracing::info!(store, policy = %policy, deleted = ?ids, "retention policy applied");
    }
    Ok(ids)
}

/// The Warning Event `RetentionPolicyFailed` on `cluster` with `message`.
pub fn policy_event(cluster: &Cluster, message: &str) -> k8s_openapi::api::core::v1::Event {
    use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", cluster.metadata.name)),
            namespace: Some(cluster.metadata.namespace.clone()).filter(|n| !n.is_empty()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(cluster.api_version.clone()).filter(|v| !v.is_empty()),
            kind: Some("Cluster".into()),
            name: Some(cluster.metadata.name.clone()),
            namespace: Some(cluster.metadata.namespace.clone()).filter(|n| !n.is_empty()),
            uid: Some(cluster.metadata.uid.clone()).filter(|u| !u.is_empty()),
            ..ObjectReference::default()
        },
        reason: Some(POLICY_FAILED_REASON.into()),
        message: Some(message.to_string()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some(EVENT_COMPONENT.into()),
            host: None,
        }),
        reporting_component: Some(EVENT_COMPONENT.into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        ..Event::default()
    }
}

/// Runs cycles until `stop` turns true: a cycle is never cut short by it, the sleep is.
pub(crate) async fn run_loop(ctx: RetentionContext, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let result = retention_cycle(&ctx).await;
        match &result {
            Ok(r) => match &r.skipped {
                Some(why) => tracing::debug!("retention cycle skipped: {why}"),
                None => tracing::info!(
                    deleted_backups = r.deleted_backups.len(),
                    deleted_objects = r.deleted_objects.len(),
                    "retention cycle done"
                ),
            },
            Err(e) => tracing::error!("retention cycle failed: {}", e.sentence()),
        }
        let sleep = sleep_after(&result);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn backup(
        name: &str,
        cluster: &str,
        phase: &str,
        method: &str,
        uid: &str,
        plugin: &str,
        id: &str,
    ) -> Value {
        json!({"metadata": {"name": name},
               "spec": {"cluster": {"name": cluster}},
               "status": {"phase": phase, "method": method, "backupID": id,
                          "pluginMetadata": {"clusterUID": uid, "pluginName": plugin}}})
    }

    #[test]
    fn only_completed_plugin_backups_of_this_cluster_missing_from_the_catalog_go() {
        let catalog: BTreeSet<String> = ["20260102T000000".to_string()].into();
        let backups = vec![
            backup(
                "gone",
                "pg",
                "completed",
                "plugin",
                "u1",
                PLUGIN_NAME,
                "20260101T000000",
            ),
            backup(
                "present",
                "pg",
                "completed",
                "plugin",
                "u1",
                PLUGIN_NAME,
                "20260102T000000",
            ),
            backup(
                "other-cluster",
                "pg2",
                "completed",
                "plugin",
                "u1",
                PLUGIN_NAME,
                "x",
            ),
            backup(
                "other-uid",
                "pg",
                "completed",
                "plugin",
                "u0",
                PLUGIN_NAME,
                "x",
            ),
            backup("failed", "pg", "failed", "plugin", "u1", PLUGIN_NAME, "x"),
            backup(
                "in-tree",
                "pg",
                "completed",
                "barmanObjectStore",
                "u1",
                PLUGIN_NAME,
                "x",
            ),
            backup(
                "other-plugin",
                "pg",
                "completed",
                "plugin",
                "u1",
                "other.io",
                "x",
            ),
            json!({"metadata": {"name": "bare"}, "spec": {"cluster": {"name": "pg"}}}),
        ];
        assert_eq!(
            backups_to_delete(&backups, "pg", "u1", &catalog, &[]),
            ["gone"]
        );
        // No uid on the Cluster: nothing matches, even an empty clusterUID.
        let no_uid = vec![backup(
            "b",
            "pg",
            "completed",
            "plugin",
            "",
            PLUGIN_NAME,
            "x",
        )];
        assert!(backups_to_delete(&no_uid, "pg", "", &catalog, &[]).is_empty());
        // An empty catalog (a wrong destinationPath?) deletes only the Backup objects
        // of backups this cycle's policy deleted.
        let empty = BTreeSet::new();
        assert!(backups_to_delete(&backups, "pg", "u1", &empty, &[]).is_empty());
        assert_eq!(
            backups_to_delete(&backups, "pg", "u1", &empty, &["20260102T000000".into()]),
            ["present"]
        );
    }

    #[test]
    fn the_interval_is_the_store_setting_else_the_default_and_five_minutes_on_trouble() {
        assert_eq!(interval_rule(None), Duration::from_secs(1800));
        assert_eq!(interval_rule(Some(60)), Duration::from_secs(60));
        assert_eq!(interval_rule(Some(0)), Duration::from_secs(300));
        assert_eq!(interval_rule(Some(-5)), Duration::from_secs(300));
        let ok = |interval, store_read, policy_error: Option<&str>| {
            Ok(CycleReport {
                store_read,
                interval_seconds: interval,
                policy_error: policy_error.map(str::to_string),
                ..CycleReport::default()
            })
        };
        assert_eq!(
            sleep_after(&ok(Some(10), true, None)),
            Duration::from_secs(10)
        );
        assert_eq!(sleep_after(&ok(None, true, None)), DEFAULT_INTERVAL);
        assert_eq!(sleep_after(&ok(Some(10), false, None)), RETRY_INTERVAL);
        assert_eq!(sleep_after(&ok(Some(10), true, Some("x"))), RETRY_INTERVAL);
        let err = Err(RetentionError::Config(ConfigError::Decode("x".into())));
        assert_eq!(sleep_after(&err), RETRY_INTERVAL);
    }

    #[test]
    fn the_event_is_a_warning_on_the_cluster_from_policy_runnable() {
        let cluster = Cluster::from_json(
            br#"{"apiVersion":"postgresql.cnpg.io/v1","kind":"Cluster",
                 "metadata":{"name":"pg","namespace":"db","uid":"u1"}}"#,
        )
        .unwrap();
        let e = serde_json::to_value(policy_event(&cluster, "it failed")).unwrap();
        assert_eq!(e["type"], "Warning");
        assert_eq!(e["reason"], POLICY_FAILED_REASON);
        assert_eq!(e["message"], "it failed");
        assert_eq!(e["source"]["component"], EVENT_COMPONENT);
        assert_eq!(
            e["involvedObject"],
            json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
                   "name": "pg", "namespace": "db", "uid": "u1"})
        );
        assert_eq!(e["metadata"]["generateName"], "pg.");
    }
}
