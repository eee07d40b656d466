//! The RestoreJobHooks service (restore role; package `cnpgi.wal.v1` upstream). Restore
//! will run the core's restore once merged; until then it answers UNIMPLEMENTED.

use tonic::{Request, Response, Status};

use crate::proto::wal::{
    restore_job_hooks_capability::Kind, restore_job_hooks_server::RestoreJobHooks,
    RestoreJobHooksCapabilitiesRequest, RestoreJobHooksCapabilitiesResult,
    RestoreJobHooksCapability, RestoreRequest, RestoreResponse,
};
use crate::unimplemented::unimplemented;

/// The RestoreJobHooks kinds advertised: restore.
pub fn restore_job_capabilities() -> RestoreJobHooksCapabilitiesResult {
    RestoreJobHooksCapabilitiesResult {
        capabilities: vec![RestoreJobHooksCapability {
            kind: Kind::Restore as i32,
        }],
    }
}

/// The RestoreJobHooks service.
#[derive(Debug, Clone, Default)]
pub struct RestoreJobService {}

#[tonic::async_trait]
impl RestoreJobHooks for RestoreJobService {
    async fn get_capabilities(
        &self,
        _: Request<RestoreJobHooksCapabilitiesRequest>,
    ) -> Result<Response<RestoreJobHooksCapabilitiesResult>, Status> {
        Ok(Response::new(restore_job_capabilities()))
    }

    async fn restore(
        &self,
        _: Request<RestoreRequest>,
    ) -> Result<Response<RestoreResponse>, Status> {
        Err(unimplemented("RestoreJobHooks", "Restore", true))
    }
}
