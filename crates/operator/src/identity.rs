//! The operator side's Identity: the sidecar's metadata (CloudNativePG finds the plugin
//! by its name) and the services this server answers.

use barrelman_cnpg::proto::identity::{
    identity_server::Identity, plugin_capability, GetPluginCapabilitiesRequest,
    GetPluginCapabilitiesResponse, GetPluginMetadataRequest, GetPluginMetadataResponse,
    ProbeRequest, ProbeResponse,
};
use tonic::{Request, Response, Status};

use plugin_capability::service::Type as ServiceType;

/// The service types the operator side advertises: upstream's three, then the
/// Operator service (cluster validation), which upstream does not serve.
pub const SERVICE_TYPES: [ServiceType; 4] = [
    ServiceType::ReconcilerHooks,
    ServiceType::LifecycleService,
    ServiceType::InstanceSidecarInjection,
    ServiceType::OperatorService,
];

/// Identity of the operator-side server.
#[derive(Debug, Clone, Copy, Default)]
pub struct OperatorIdentity;

#[tonic::async_trait]
impl Identity for OperatorIdentity {
    async fn get_plugin_metadata(
        &self,
        _: Request<GetPluginMetadataRequest>,
    ) -> Result<Response<GetPluginMetadataResponse>, Status> {
        Ok(Response::new(barrelman_cnpg::identity::plugin_metadata()))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(barrelman_cnpg::identity::capabilities(
            &SERVICE_TYPES,
        )))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        // Serving at all means every service is registered: nothing to wait for.
        Ok(Response::new(ProbeResponse { ready: true }))
    }
}
