//! The Metrics service (instance role): the three upstream gauges, defined statically
//! and collected from the archive ObjectStore's `status.serverRecoveryWindow` (read
//! through the cached Kubernetes access, no storage call), as upstream does; then
//! barrelman's own metrics under the same prefix, read from the sidecar's
//! [`PluginStats`] (WAL archive counters, last backup's duration, the recovery
//! window's true end as the retention cycle or the last backup computed it).

use std::sync::Arc;
use std::time::SystemTime;

use tonic::{Request, Response, Status};

use crate::config::{Cluster, ConfigError, PluginConfiguration};
use crate::k8s::KubeAccess;
use crate::proto::metrics::CollectMetric;
use crate::proto::metrics::{
    metric_type, metrics_capability, metrics_server::Metrics, CollectMetricsRequest,
    CollectMetricsResult, DefineMetricsRequest, DefineMetricsResult, Metric, MetricType,
    MetricsCapabilitiesRequest, MetricsCapabilitiesResult, MetricsCapability,
};
use crate::stats::{PluginStats, Snapshot};
use crate::PLUGIN_NAME;

/// The metric name prefix: the plugin name with `.` and `-` turned into `_`.
pub fn metric_prefix() -> String {
    PLUGIN_NAME.replace(['.', '-'], "_")
}

/// Suffixes, help texts and the `serverRecoveryWindow` field of the upstream gauges
/// (unix seconds, 0 when unknown).
const GAUGES: &[(&str, &str, &str)] = &[
    (
        "first_recoverability_point",
        "The first point of recoverability for the cluster as a unix timestamp",
        "firstRecoverabilityPoint",
    ),
    (
        "last_available_backup_timestamp",
        "The last available backup as a unix timestamp",
        "lastSuccessfulBackupTime",
    ),
    (
        "last_failed_backup_timestamp",
        "The last failed backup as a unix timestamp",
        "lastFailedBackupTime",
    ),
];

/// How one of barrelman's metrics is read from a [`Snapshot`].
type Reader = fn(&Snapshot, SystemTime) -> f64;

/// barrelman's metrics: suffix, help, type, reader.
const OURS: &[(&str, &str, metric_type::Type, Reader)] = &[
    (
        "last_archived_wal_age_seconds",
        "Seconds since this sidecar last archived a WAL file (-1 before the first)",
        metric_type::Type::Gauge,
        |s, now| {
            s.last_archived.map_or(-1.0, |t| {
                now.duration_since(t).unwrap_or_default().as_secs_f64()
            })
        },
    ),
    (
        "wal_archive_failures_total",
        "WAL archive calls that failed since this sidecar started",
        metric_type::Type::Counter,
        |s, _| s.archive_failures as f64,
    ),
    (
        "wal_archived_bytes_total",
        "WAL bytes (before compression) uploaded since this sidecar started",
        metric_type::Type::Counter,
        |s, _| s.archived_bytes as f64,
    ),
    (
        "last_backup_duration_seconds",
        "How long the last successful backup through this sidecar took (0 before the first)",
        metric_type::Type::Gauge,
        |s, _| s.last_backup_seconds.unwrap_or(0.0),
    ),
    (
        "recovery_window_end_timestamp",
        "When the last WAL segment reachable from the newest restorable backup without a gap was archived, as a unix timestamp (0 if unknown)",
        metric_type::Type::Gauge,
        |s, _| {
            s.window_end
                .as_ref()
                .and_then(|w| w.archived_at)
                .map_or(0.0, |t| t.timestamp() as f64)
        },
    ),
    (
        "recovery_window_end_lsn",
        "The WAL position recovery can reach from the newest restorable backup without a gap, in bytes (0 if unknown)",
        metric_type::Type::Gauge,
        |s, _| s.window_end.as_ref().map_or(0.0, |w| w.lsn.0 as f64),
    ),
];

/// The Metrics RPCs advertised: metrics.
pub fn metrics_capabilities() -> MetricsCapabilitiesResult {
    MetricsCapabilitiesResult {
        capabilities: vec![MetricsCapability {
            r#type: Some(metrics_capability::Type::Rpc(metrics_capability::Rpc {
                r#type: metrics_capability::rpc::Type::Metrics as i32,
            })),
        }],
    }
}

/// The metric definitions: the three upstream gauges, then barrelman's; no labels.
pub fn metric_definitions() -> DefineMetricsResult {
    let prefix = metric_prefix();
    let metric = |suffix: &str, help: &str, t: metric_type::Type| Metric {
        fq_name: format!("{prefix}_{suffix}"),
        help: help.to_string(),
        variable_labels: Vec::new(),
        const_labels: Default::default(),
        value_type: Some(MetricType { r#type: t as i32 }),
    };
    let metrics = GAUGES
        .iter()
        .map(|(suffix, help, _)| metric(suffix, help, metric_type::Type::Gauge))
        .chain(
            OURS.iter()
                .map(|(suffix, help, t, _)| metric(suffix, help, *t)),
        )
        .collect();
    DefineMetricsResult { metrics }
}

/// barrelman's metric values from `stats` at `now`.
pub fn collect_from_stats(stats: &Snapshot, now: SystemTime) -> Vec<CollectMetric> {
    let prefix = metric_prefix();
    OURS.iter()
        .map(|(suffix, _, _, read)| CollectMetric {
            value: read(stats, now),
            fq_name: format!("{prefix}_{suffix}"),
            variable_labels: Vec::new(),
        })
        .collect()
}

/// The gauge values from an ObjectStore `status` for `server`: each RFC 3339 time as
/// unix seconds, 0 when absent or unreadable (as upstream's zero time).
pub fn collect_from_status(status: &serde_json::Value, server: &str) -> CollectMetricsResult {
    let prefix = metric_prefix();
    let window = &status["serverRecoveryWindow"][server];
    let metrics = GAUGES
        .iter()
        .map(|(suffix, _, field)| CollectMetric {
            value: window[*field]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(0.0, |t| t.timestamp() as f64),
            fq_name: format!("{prefix}_{suffix}"),
            variable_labels: Vec::new(),
        })
        .collect();
    CollectMetricsResult { metrics }
}

/// The Metrics service.
#[derive(Debug, Clone, Default)]
pub struct MetricsService {
    kube: Option<Arc<KubeAccess>>,
    stats: Arc<PluginStats>,
}

impl MetricsService {
    /// Metrics reading ObjectStore status through `kube` (None: Collect fails with
    /// FailedPrecondition, Define still works) and barrelman's from `stats`.
    pub fn new(kube: Option<Arc<KubeAccess>>, stats: Arc<PluginStats>) -> Self {
        MetricsService { kube, stats }
    }
}

#[tonic::async_trait]
impl Metrics for MetricsService {
    async fn get_capabilities(
        &self,
        _: Request<MetricsCapabilitiesRequest>,
    ) -> Result<Response<MetricsCapabilitiesResult>, Status> {
        Ok(Response::new(metrics_capabilities()))
    }

    async fn define(
        &self,
        _: Request<DefineMetricsRequest>,
    ) -> Result<Response<DefineMetricsResult>, Status> {
        Ok(Response::new(metric_definitions()))
    }

    async fn collect(
        &self,
        request: Request<CollectMetricsRequest>,
    ) -> Result<Response<CollectMetricsResult>, Status> {
        let Some(kube) = &self.kube else {
            return Err(Status::failed_precondition(
                "Metrics.Collect needs the Kubernetes API, and this sidecar was started without access to it",
            ));
        };
        let definition = &request.get_ref().cluster_definition;
        // No Cluster sent (a hand-run client): the upstream gauges are unknown, 0.
        let mut result = if definition.is_empty() {
            collect_from_status(&serde_json::Value::Null, "")
        } else {
            let cluster = Cluster::from_json(definition)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let config = PluginConfiguration::from_cluster(&cluster);
            let store = config
                .archive_store()
                .map_err(|e: ConfigError| Status::invalid_argument(e.to_string()))?;
            let fetched = kube
                .object_store(&store.object_store)
                .await
                .map_err(|e| e.grpc_status())?;
            collect_from_status(&fetched.status, &store.server_name)
        };
        result.metrics.extend(collect_from_stats(
            &self.stats.snapshot(),
            SystemTime::now(),
        ));
        Ok(Response::new(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collect_takes_the_server_window_and_zero_for_unknown() {
        let status = json!({"serverRecoveryWindow": {
            "pg": {"firstRecoverabilityPoint": "2026-01-01T01:00:00+01:00",
                   "lastFailedBackupTime": "not a time"},
            "other": {"lastSuccessfulBackupTime": "2026-01-02T00:00:00Z"}}});
        let values: Vec<f64> = collect_from_status(&status, "pg")
            .metrics
            .iter()
            .map(|m| m.value)
            .collect();
        assert_eq!(values, [1_767_225_600.0, 0.0, 0.0]);
        let values: Vec<f64> = collect_from_status(&json!(null), "pg")
            .metrics
            .iter()
            .map(|m| m.value)
            .collect();
        assert_eq!(values, [0.0, 0.0, 0.0]);
        let names: Vec<String> = collect_from_status(&status, "pg")
            .metrics
            .into_iter()
            .chain(collect_from_stats(&Snapshot::default(), SystemTime::now()))
            .map(|m| m.fq_name)
            .collect();
        let defined: Vec<String> = metric_definitions()
            .metrics
            .into_iter()
            .map(|m| m.fq_name)
            .collect();
        // CloudNativePG rejects a collected name that was not defined.
        assert_eq!(names, defined);
    }

    #[test]
    fn our_metrics_read_the_stats_and_keep_upstreams_names_first() {
        let defined = metric_definitions().metrics;
        let names: Vec<&str> = defined.iter().map(|m| m.fq_name.as_str()).collect();
        assert_eq!(
            &names[..3],
            [
                "barman_cloud_cloudnative_pg_io_first_recoverability_point",
                "barman_cloud_cloudnative_pg_io_last_available_backup_timestamp",
                "barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp",
            ]
        );
        let counter = metric_type::Type::Counter as i32;
        let counters: Vec<&str> = defined
            .iter()
            .filter(|m| m.value_type.as_ref().map(|t| t.r#type) == Some(counter))
            .map(|m| m.fq_name.as_str())
            .collect();
        assert_eq!(
            counters,
            [
                "barman_cloud_cloudnative_pg_io_wal_archive_failures_total",
                "barman_cloud_cloudnative_pg_io_wal_archived_bytes_total",
            ]
        );
        let now = SystemTime::now();
        let fresh: Vec<f64> = collect_from_stats(&Snapshot::default(), now)
            .iter()
            .map(|m| m.value)
            .collect();
        assert_eq!(fresh, [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let stats = PluginStats::default();
        stats.uploaded(16 << 20);
        stats.archive_succeeded();
        stats.archive_failed();
        stats.backup_done(2.5);
        stats.set_window_end(Some(crate::stats::WindowEnd {
            segment: "000000010000000000000006".into(),
            lsn: barrelman_core::lsn::Lsn(0x700_0000),
            archived_at: chrono::DateTime::from_timestamp(1_767_225_600, 0),
        }));
        let later = now + std::time::Duration::from_secs(3600);
        let values: Vec<f64> = collect_from_stats(&stats.snapshot(), later)
            .iter()
            .map(|m| m.value)
            .collect();
        assert!((3599.0..3700.0).contains(&values[0]), "{values:?}");
        assert_eq!(
            &values[1..],
            [1.0, 16_777_216.0, 2.5, 1_767_225_600.0, 117_440_512.0]
        );
    }
}
