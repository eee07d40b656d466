//! The Metrics service (instance role): the three upstream gauges. Define is complete;
//! Collect needs the ObjectStore status from the Kubernetes API and answers
//! UNIMPLEMENTED until that is wired in.

use tonic::{Request, Response, Status};

use crate::proto::metrics::{
    metric_type, metrics_capability, metrics_server::Metrics, CollectMetricsRequest,
    CollectMetricsResult, DefineMetricsRequest, DefineMetricsResult, Metric, MetricType,
    MetricsCapabilitiesRequest, MetricsCapabilitiesResult, MetricsCapability,
};
use crate::unimplemented::unimplemented;
use crate::PLUGIN_NAME;

/// The metric name prefix: the plugin name with `.` and `-` turned into `_`.
pub fn metric_prefix() -> String {
    PLUGIN_NAME.replace(['.', '-'], "_")
}

/// Suffixes and help texts of the upstream gauges (unix seconds, 0 when unknown).
const GAUGES: &[(&str, &str)] = &[
    (
        "first_recoverability_point",
        "The first point of recoverability for the cluster as a unix timestamp",
    ),
    (
        "last_available_backup_timestamp",
        "The last available backup as a unix timestamp",
    ),
    (
        "last_failed_backup_timestamp",
        "The last failed backup as a unix timestamp",
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
        .map(|(suffix, help)| Metric {
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

/// The Metrics service.
#[derive(Debug, Clone, Default)]
pub struct MetricsService {}

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
        _: Request<CollectMetricsRequest>,
    ) -> Result<Response<CollectMetricsResult>, Status> {
        Err(unimplemented("Metrics", "Collect", true))
    }
}
