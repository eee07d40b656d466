//! The Metrics service (instance role): the three upstream gauges, defined statically
//! and collected from the archive ObjectStore's `status.serverRecoveryWindow` (read
//! through the cached Kubernetes access, no storage call), as upstream does.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::config::{Cluster, ConfigError, PluginConfiguration};
use crate::k8s::KubeAccess;
use crate::proto::metrics::CollectMetric;
use crate::proto::metrics::{
    metric_type, metrics_capability, metrics_server::Metrics, CollectMetricsRequest,
    CollectMetricsResult, DefineMetricsRequest, DefineMetricsResult, Metric, MetricType,
    MetricsCapabilitiesRequest, MetricsCapabilitiesResult, MetricsCapability,
};
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

/// The metric definitions: the three gauges, no labels.
pub fn metric_definitions() -> DefineMetricsResult {
    let prefix = metric_prefix();
    let metrics = GAUGES
        .iter()
        .map(|(suffix, help, _)| Metric {
            fq_name: format!("{prefix}_{suffix}"),
            help: (*help).to_string(),
            variable_labels: Vec::new(),
            const_labels: Default::default(),
            value_type: Some(MetricType {
                r#type: metric_type::Type::Gauge as i32,
            }),
        })
        .collect();
    DefineMetricsResult { metrics }
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
}

impl MetricsService {
    /// Metrics reading ObjectStore status through `kube` (None: Collect fails with
    /// FailedPrecondition, Define still works).
    pub fn new(kube: Option<Arc<KubeAccess>>) -> Self {
        MetricsService { kube }
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
        let cluster = Cluster::from_json(&request.get_ref().cluster_definition)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let config = PluginConfiguration::from_cluster(&cluster);
        let store = config
            .archive_store()
            .map_err(|e: ConfigError| Status::invalid_argument(e.to_string()))?;
        let fetched = kube
            .object_store(&store.object_store)
            .await
            .map_err(|e| e.grpc_status())?;
        Ok(Response::new(collect_from_status(
            &fetched.status,
            &store.server_name,
        )))
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
}
