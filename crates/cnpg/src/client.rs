//! Client side over the plugin socket: a tonic channel to a unix socket, the
//! `healthcheck unix` probe with upstream's exit codes, and the calls of `barrelman
//! cnpg client` (identity, WAL archive/restore, backup, restore-job).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::PLUGIN_NAME;

/// How long the probe may take in all (dial and call): a hung sidecar must fail the probe
/// rather than hang it.
pub const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Exit code: the server answered SERVING.
pub const EXIT_SERVING: i32 = 0;
/// Exit code: dial or call failed.
pub const EXIT_ERROR: i32 = 1;
/// Exit code: the server answered UNKNOWN.
pub const EXIT_UNKNOWN: i32 = 2;
/// Exit code: the server answered NOT_SERVING.
pub const EXIT_NOT_SERVING: i32 = 3;
/// Exit code: the server answered another status.
pub const EXIT_OTHER: i32 = 125;

/// A channel to the gRPC server on the unix socket `path`. The connection is made
/// lazily on first use, and again after it breaks.
pub fn unix_channel(path: impl Into<PathBuf>) -> Channel {
    let path = path.into();
    // The URI is required by tonic but unused: the connector dials the socket.
    Endpoint::from_static("http://localhost").connect_with_connector_lazy(tower::service_fn(
        move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        },
    ))
}

/// Why the health check got no status.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// The call failed (the socket missing or refusing counts here).
    #[error("health check on {} failed: {}", path.display(), status.message())]
    Call {
        /// The socket.
        path: PathBuf,
        /// The gRPC status.
        status: tonic::Status,
    },
    /// No answer in time.
    #[error("health check on {} got no answer within {} s", path.display(), HEALTHCHECK_TIMEOUT.as_secs())]
    Timeout {
        /// The socket.
        path: PathBuf,
    },
}

/// Calls `grpc.health.v1.Health/Check` (service "") on the socket `path` and returns
/// the raw serving status.
pub async fn check_health(path: &Path) -> Result<i32, HealthcheckError> {
    let mut client = HealthClient::new(unix_channel(path));
    let call = client.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(HEALTHCHECK_TIMEOUT, call).await {
        Ok(Ok(answer)) => Ok(answer.into_inner().status),
        Ok(Err(status)) => Err(HealthcheckError::Call {
            path: path.to_path_buf(),
            status,
        }),
        Err(_) => Err(HealthcheckError::Timeout {
            path: path.to_path_buf(),
        }),
    }
}

/// Maps a serving status to upstream's exit code.
pub fn exit_code_for(status: i32) -> i32 {
    match ServingStatus::try_from(status) {
        Ok(ServingStatus::Serving) => EXIT_SERVING,
        Ok(ServingStatus::Unknown) => EXIT_UNKNOWN,
        Ok(ServingStatus::NotServing) => EXIT_NOT_SERVING,
        _ => EXIT_OTHER,
    }
}

/// `healthcheck unix`: checks the plugin socket in `dir` and returns the exit code
/// (0 SERVING, 2 UNKNOWN, 3 NOT_SERVING, 125 other status, 1 dial or call error; the
/// error is logged).
pub async fn healthcheck_unix(dir: &Path) -> i32 {
    let path = dir.join(PLUGIN_NAME);
    match check_health(&path).await {
        Ok(status) => {
            let code = exit_code_for(status);
            if code != EXIT_SERVING {
                tracing::error!(socket = %path.display(), status, "plugin is not serving");
            }
            code
        }
        Err(e) => {
            tracing::error!("{e}");
            EXIT_ERROR
        }
    }
}

/// Exit code of `cnpg client wal-archive|wal-restore` after a failed call: any
/// non-zero code below 125 tells PostgreSQL "not archived, retry" (archive) or "not
/// there" (restore), as the instance manager's `wal-archive`/`wal-restore` answer.
pub const EXIT_CALL_FAILED: i32 = 1;

/// The plugin's identity as the instance manager reads it: metadata, capabilities and
/// the probe.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityAnswer {
    /// `GetPluginMetadata`.
    pub metadata: crate::proto::identity::GetPluginMetadataResponse,
    /// `GetPluginCapabilities`.
    pub capabilities: crate::proto::identity::GetPluginCapabilitiesResponse,
    /// `Probe`: ready.
    pub ready: bool,
}

/// Asks the plugin on the socket `path` who it is, as the instance manager does at
/// start.
pub async fn identity(path: &Path) -> Result<IdentityAnswer, tonic::Status> {
    use crate::proto::identity::{
        identity_client::IdentityClient, GetPluginCapabilitiesRequest, GetPluginMetadataRequest,
        ProbeRequest,
    };
    let mut client = IdentityClient::new(unix_channel(path));
    let metadata = client
        .get_plugin_metadata(GetPluginMetadataRequest {})
        .await?
        .into_inner();
    let capabilities = client
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await?
        .into_inner();
    let ready = client.probe(ProbeRequest {}).await?.into_inner().ready;
    Ok(IdentityAnswer {
        metadata,
        capabilities,
        ready,
    })
}

/// `WAL.Archive` of `wal_path` for the Cluster `cluster_definition` (its JSON), as
/// the instance manager's `wal-archive` calls it; `check_empty` is the request's
/// optional field (absent lets the plugin decide from annotation and marker).
pub async fn wal_archive(
    path: &Path,
    cluster_definition: Vec<u8>,
    wal_path: &str,
    check_empty: Option<bool>,
) -> Result<(), tonic::Status> {
    use crate::proto::wal::{wal_client::WalClient, WalArchiveRequest};
    let mut client = WalClient::new(unix_channel(path));
    client
        .archive(WalArchiveRequest {
            cluster_definition,
            source_file_name: wal_path.to_string(),
            parameters: Default::default(),
            check_empty_wal_archive: check_empty,
        })
        .await?;
    Ok(())
}

/// `WAL.Restore` of `wal_name` into `dest` for the Cluster `cluster_definition`, as the
/// instance manager's `wal-restore` calls it (`rewind`: pg_rewind's mode).
pub async fn wal_restore(
    path: &Path,
    cluster_definition: Vec<u8>,
    wal_name: &str,
    dest: &str,
    rewind: bool,
) -> Result<(), tonic::Status> {
    use crate::proto::wal::wal_restore_request::Mode;
    use crate::proto::wal::{wal_client::WalClient, WalRestoreRequest};
    let mut client = WalClient::new(unix_channel(path));
    client
        .restore(WalRestoreRequest {
            cluster_definition,
            source_wal_name: wal_name.to_string(),
            destination_file_name: dest.to_string(),
            parameters: Default::default(),
            mode: if rewind { Mode::Rewind } else { Mode::Recovery } as i32,
        })
        .await?;
    Ok(())
}

/// `Backup.Backup` for the Cluster `cluster_definition` and the Backup
/// `backup_definition` (their JSON), as the instance manager calls it: `parameters`
/// are the Backup's `spec.pluginConfiguration.parameters`.
pub async fn backup(
    path: &Path,
    cluster_definition: Vec<u8>,
    backup_definition: Vec<u8>,
) -> Result<crate::proto::backup::BackupResult, tonic::Status> {
    use crate::proto::backup::{backup_client::BackupClient, BackupRequest};
    let parameters = serde_json::from_slice::<serde_json::Value>(&backup_definition)
        .ok()
        .and_then(|b| {
            let p = b
                .pointer("/spec/pluginConfiguration/parameters")?
                .as_object()?;
            Some(
                p.iter()
                    .map(|(k, v)| {
                        let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                        (k.clone(), v)
                    })
                    .collect(),
            )
        })
        .unwrap_or_default();
    let mut client = BackupClient::new(unix_channel(path));
    let answer = client
        .backup(BackupRequest {
            cluster_definition,
            backup_definition,
            parameters,
        })
        .await?;
    Ok(answer.into_inner())
}

/// `RestoreJobHooks.Restore` for the Cluster `cluster_definition` (its JSON), as the
/// restore Job's instance manager calls it: the sidecar restores into its PGDATA and
/// answers the settings to append to PostgreSQL's configuration.
pub async fn restore_job(
    path: &Path,
    cluster_definition: Vec<u8>,
    check_empty: Option<bool>,
) -> Result<crate::proto::wal::RestoreResponse, tonic::Status> {
    use crate::proto::wal::{restore_job_hooks_client::RestoreJobHooksClient, RestoreRequest};
    let mut client = RestoreJobHooksClient::new(unix_channel(path));
    let answer = client
        .restore(RestoreRequest {
            cluster_definition,
            check_empty_wal_archive: check_empty,
        })
        .await?;
    Ok(answer.into_inner())
}

/// `Metrics.Define` then `Metrics.Collect` for the Cluster `cluster_definition` (empty:
/// none), as CloudNativePG's exporter calls them: `(name, value)` in Collect's order.
/// A collected name that was not defined is refused, as CloudNativePG refuses it.
pub async fn metrics(
    path: &Path,
    cluster_definition: Vec<u8>,
) -> Result<Vec<(String, f64)>, tonic::Status> {
    use crate::proto::metrics::{
        metrics_client::MetricsClient, CollectMetricsRequest, DefineMetricsRequest,
    };
    let mut client = MetricsClient::new(unix_channel(path));
    let defined: std::collections::BTreeSet<String> = client
        .define(DefineMetricsRequest {
            cluster_definition: cluster_definition.clone(),
        })
        .await?
        .into_inner()
        .metrics
        .into_iter()
        .map(|m| m.fq_name)
        .collect();
    let collected = client
        .collect(CollectMetricsRequest { cluster_definition })
        .await?
        .into_inner()
        .metrics;
    collected
        .into_iter()
        .map(|m| {
            if defined.contains(&m.fq_name) {
                Ok((m.fq_name, m.value))
            } else {
                Err(tonic::Status::internal(format!(
                    "the plugin collected {:?}, which it did not define",
                    m.fq_name
                )))
            }
        })
        .collect()
}
