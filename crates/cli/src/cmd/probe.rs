//! barman-cloud's connectivity test (`-t`, and the probe barman-cloud-check-wal-archive
//! starts with): can the store be used, and does the bucket exist.

use crate::exit;
use crate::target::Target;
use anyhow::Result;
use barrelman_core::Classified;
use barrelman_storage::{Archive, StorageError};

/// `-t`: connectivity first (exit 2), then the bucket (exit 1).
pub(crate) async fn connectivity_test(target: &Target) -> Result<i32> {
    match probe_archive(target)?.probe().await {
        Ok(()) => Ok(exit::SUCCESS),
        Err(e @ StorageError::BucketMissing { .. }) => {
            tracing::error!("{e}");
            Ok(exit::FAILURE)
        }
        Err(e) => Ok(failed_test(&e)),
    }
}

/// Logs a failed connectivity test and returns its exit code.
pub(crate) fn failed_test(e: &StorageError) -> i32 {
    tracing::error!("connectivity test failed: {e}");
    exit::exit_code(e.class(), exit::Step::ConnectivityTest)
}

/// The archive for a connectivity test or a diagnosis: one quick retry, so an
/// unreachable endpoint is reported in seconds.
pub(crate) fn probe_archive(target: &Target) -> Result<Archive> {
    let mut options = target.settings.clone();
    options.common.max_retries = Some(1);
    Ok(Archive::open(
        &target.destination,
        &target.server_name,
        &options,
    )?)
}
