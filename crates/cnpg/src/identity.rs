//! The Identity service: who the plugin is and which services this role serves.

use tonic::{Request, Response, Status};

use crate::proto::identity::{
    identity_server::Identity, plugin_capability, GetPluginCapabilitiesRequest,
    GetPluginCapabilitiesResponse, GetPluginMetadataRequest, GetPluginMetadataResponse,
    PluginCapability, ProbeRequest, ProbeResponse,
};
use crate::settings::Role;
use crate::PLUGIN_NAME;

use plugin_capability::service::Type as ServiceType;

/// The metadata every role answers: upstream's name (CloudNativePG finds the plugin by
/// it), display name, licence and maturity, with barrelman's own version.
pub fn plugin_metadata() -> GetPluginMetadataResponse {
    GetPluginMetadataResponse {
        name: PLUGIN_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        display_name: "BarmanCloudInstance".to_string(),
        description: "barrelman: the Barman Cloud plugin, in-process".to_string(),
        license: "APACHE 2.0".to_string(),
        maturity: "alpha".to_string(),
        ..Default::default()
    }
}

/// The service types `role` advertises, in upstream's order. CloudNativePG calls the
/// GetCapabilities of each, so only served services may appear.
pub fn service_types(role: Role) -> &'static [ServiceType] {
    match role {
        Role::Instance => &[
            ServiceType::WalService,
            ServiceType::BackupService,
            ServiceType::Metrics,
        ],
        Role::Restore => &[ServiceType::RestoreJob, ServiceType::WalService],
    }
}

/// The GetPluginCapabilities answer advertising `types`, in that order (also the
/// operator side's, with its own types).
pub fn capabilities(types: &[ServiceType]) -> GetPluginCapabilitiesResponse {
    GetPluginCapabilitiesResponse {
        capabilities: types
            .iter()
            .map(|t| PluginCapability {
                r#type: Some(plugin_capability::Type::Service(
                    plugin_capability::Service { r#type: *t as i32 },
                )),
            })
            .collect(),
    }
}

/// Identity for one role.
#[derive(Debug, Clone, Copy)]
pub struct IdentityService {
    role: Role,
}

impl IdentityService {
    /// Identity answering for `role`.
    pub fn new(role: Role) -> Self {
        IdentityService { role }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_metadata(
        &self,
        _: Request<GetPluginMetadataRequest>,
    ) -> Result<Response<GetPluginMetadataResponse>, Status> {
        Ok(Response::new(plugin_metadata()))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(capabilities(service_types(self.role))))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        // Upstream always answers ready: the socket existing means the services are up.
        Ok(Response::new(ProbeResponse { ready: true }))
    }
}
