//! The WAL service (both roles). Archive and Restore will call the core's `ops::wal`
//! once it is merged; until then they answer UNIMPLEMENTED. Status and SetFirstRequired
//! are not advertised and answer UNIMPLEMENTED for good (upstream panics into INTERNAL).

use tonic::{Request, Response, Status};

use crate::proto::wal::{
    wal_capability, wal_server::Wal, SetFirstRequiredRequest, SetFirstRequiredResult,
    WalArchiveRequest, WalArchiveResult, WalCapabilitiesRequest, WalCapabilitiesResult,
    WalCapability, WalRestoreRequest, WalRestoreResult, WalStatusRequest, WalStatusResult,
};
use crate::unimplemented::unimplemented;

/// The WAL RPCs advertised, as upstream: archive and restore.
pub fn wal_capabilities() -> WalCapabilitiesResult {
    use wal_capability::rpc::Type;
    let capabilities = [Type::ArchiveWal, Type::RestoreWal]
        .into_iter()
        .map(|t| WalCapability {
            r#type: Some(wal_capability::Type::Rpc(wal_capability::Rpc {
                r#type: t as i32,
            })),
        })
        .collect();
    WalCapabilitiesResult { capabilities }
}

/// The WAL service.
#[derive(Debug, Clone, Default)]
pub struct WalService {}

#[tonic::async_trait]
impl Wal for WalService {
    async fn get_capabilities(
        &self,
        _: Request<WalCapabilitiesRequest>,
    ) -> Result<Response<WalCapabilitiesResult>, Status> {
        Ok(Response::new(wal_capabilities()))
    }

    async fn archive(
        &self,
        _: Request<WalArchiveRequest>,
    ) -> Result<Response<WalArchiveResult>, Status> {
        Err(unimplemented("WAL", "Archive", true))
    }

    async fn restore(
        &self,
        _: Request<WalRestoreRequest>,
    ) -> Result<Response<WalRestoreResult>, Status> {
        Err(unimplemented("WAL", "Restore", true))
    }

    async fn status(
        &self,
        _: Request<WalStatusRequest>,
    ) -> Result<Response<WalStatusResult>, Status> {
        Err(unimplemented("WAL", "Status", false))
    }

    async fn set_first_required(
        &self,
        _: Request<SetFirstRequiredRequest>,
    ) -> Result<Response<SetFirstRequiredResult>, Status> {
        Err(unimplemented("WAL", "SetFirstRequired", false))
    }
}
