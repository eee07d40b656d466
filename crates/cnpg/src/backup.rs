//! The Backup service (instance role). Backup.Backup will run the core's backup engine
//! once the storage settings are injectable; until then it answers UNIMPLEMENTED.

use tonic::{Request, Response, Status};

use crate::proto::backup::{
    backup_capability, backup_server::Backup, BackupCapabilitiesRequest, BackupCapabilitiesResult,
    BackupCapability, BackupRequest, BackupResult,
};
use crate::unimplemented::unimplemented;

/// The Backup RPCs advertised: Backup.
pub fn backup_capabilities() -> BackupCapabilitiesResult {
    BackupCapabilitiesResult {
        capabilities: vec![BackupCapability {
            r#type: Some(backup_capability::Type::Rpc(backup_capability::Rpc {
                r#type: backup_capability::rpc::Type::Backup as i32,
            })),
        }],
    }
}

/// The Backup service.
#[derive(Debug, Clone, Default)]
pub struct BackupService {}

#[tonic::async_trait]
impl Backup for BackupService {
    async fn get_capabilities(
        &self,
        _: Request<BackupCapabilitiesRequest>,
    ) -> Result<Response<BackupCapabilitiesResult>, Status> {
        Ok(Response::new(backup_capabilities()))
    }

    async fn backup(&self, _: Request<BackupRequest>) -> Result<Response<BackupResult>, Status> {
        Err(unimplemented("Backup", "Backup", true))
    }
}
