//! The sidecar's gRPC server: the services of its role on the plugin socket, until the
//! shutdown future completes; then it stops accepting, lets in-flight calls finish (for
//! a bounded time) and removes the socket.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Server;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

use crate::backup::BackupService;
use crate::identity::IdentityService;
use crate::k8s::KubeAccess;
use crate::metrics::MetricsService;
use crate::proto::backup::backup_server::BackupServer;
use crate::proto::identity::identity_server::IdentityServer;
use crate::proto::metrics::metrics_server::MetricsServer;
use crate::proto::wal::restore_job_hooks_server::RestoreJobHooksServer;
use crate::proto::wal::wal_server::WalServer;
use crate::restore_job::RestoreJobService;
use crate::retention::RetentionContext;
use crate::settings::{Role, Settings};
use crate::socket::{PluginSocket, SocketError};
use crate::stats::PluginStats;
use crate::wal::WalService;

/// How long in-flight calls may run after the shutdown signal (a WAL archive batch or a
/// restore prefetch should be done well within this; a base backup is abandoned).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket could not be set up.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// `run_instance` was given restore settings or the reverse.
    #[error("the settings were built for the {given} role but the {wanted} server was started")]
    WrongRole {
        /// The settings' role.
        given: &'static str,
        /// The server's role.
        wanted: &'static str,
    },
    /// The gRPC server failed.
    #[error("the plugin's gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A configured sidecar server, not yet listening.
#[derive(Debug)]
pub struct PluginServer {
    settings: Settings,
    health: HealthReporter,
    drain_timeout: Duration,
    kube: Option<Arc<KubeAccess>>,
}

impl PluginServer {
    /// A server for `settings.role`, health SERVING.
    pub fn new(settings: Settings) -> Self {
        PluginServer {
            settings,
            health: HealthReporter::new(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            kube: None,
        }
    }

    /// The handle that sets what `grpc.health.v1.Health/Check` answers.
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Gives the services access to the Kubernetes API (ObjectStores, Secrets).
    pub fn with_kube(mut self, kube: KubeAccess) -> Self {
        self.kube = Some(Arc::new(kube));
        self
    }

    /// Changes how long in-flight calls may run after the shutdown signal.
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Binds the socket and serves until `shutdown` completes. Returns Ok after a clean
    /// stop, with the socket removed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let socket = PluginSocket::bind(&self.settings.socket_path())?;
        let role = self.settings.role;
        tracing::info!(
            socket = %socket.path().display(),
            role = role.as_str(),
            version = env!("CARGO_PKG_VERSION"),
            "plugin server listening"
        );
        if let Some(caps) = self.settings.memory_caps {
            tracing::info!(
                limit_mib = caps.limit / (1024 * 1024),
                wal_uploads = caps.wal_uploads,
                jobs = caps.backup_jobs,
                "container memory limit: WAL uploads and backup/restore workers capped to fit"
            );
        }
        let (listener, _remove_on_exit) = socket.into_parts();
        let incoming = futures::stream::unfold(listener, |l| async move {
            let next = l.accept().await.map(|(stream, _)| stream);
            Some((next, l))
        });

        let health = HealthServer::new(HealthService::from_health_reporter(self.health.clone()));
        // One cache of opened archives for WAL, Backup and the retention loop; one
        // record of what they did for Metrics.
        let stores = crate::store::Stores::new(self.kube.clone(), &self.settings);
        let stats = Arc::new(PluginStats::default());
        let builder = Server::builder()
            .add_service(IdentityServer::new(IdentityService::new(role)))
            .add_service(health)
            .add_service(WalServer::new(WalService::with_stores(
                self.settings.clone(),
                self.kube.clone(),
                stores.clone(),
                stats.clone(),
            )));
        // The retention loop: instance role with Kubernetes access only.
        let (loop_stop, loop_stopped) = tokio::sync::watch::channel(false);
        let retention = match (&self.kube, role) {
            (Some(kube), Role::Instance) => Some(tokio::spawn(crate::retention::run_loop(
                RetentionContext::with_stores(
                    Arc::new(self.settings.clone()),
                    kube.clone(),
                    stores.clone(),
                    stats.clone(),
                ),
                loop_stopped,
            ))),
            _ => None,
        };
        let router = match role {
            Role::Instance => builder
                .add_service(BackupServer::new(BackupService::with_stores(
                    self.settings.clone(),
                    self.kube.clone(),
                    stores,
                    stats.clone(),
                )))
                .add_service(MetricsServer::new(MetricsService::new(
                    self.kube.clone(),
                    stats,
                ))),
            Role::Restore => builder.add_service(RestoreJobHooksServer::new(
                RestoreJobService::with_stores(self.settings.clone(), stores),
            )),
        };

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = router.serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        });
        tokio::pin!(serve);
        let served = tokio::select! {
            result = &mut serve => result,
            () = shutdown => {
                tracing::info!("shutting down: no new calls, waiting for in-flight ones");
                self.health.set_service_status("", ServingStatus::NotServing).await;
                let _ = stop_tx.send(());
                let _ = loop_stop.send(true);
                match tokio::time::timeout(self.drain_timeout, &mut serve).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!(
                            seconds = self.drain_timeout.as_secs(),
                            "in-flight calls did not finish in time; abandoning them"
                        );
                        Ok(())
                    }
                }
            }
        };
        // A retention cycle under way may finish within the drain time (its deletions
        // are ordered so that a cut-off run is simply run again); then it is dropped.
        let _ = loop_stop.send(true);
        if let Some(mut task) = retention {
            if tokio::time::timeout(self.drain_timeout, &mut task)
                .await
                .is_err()
            {
                tracing::warn!("the retention cycle did not finish in time; abandoning it");
                task.abort();
            }
        }
        served?;
        tracing::info!("plugin server stopped");
        Ok(())
    }
}

/// Serves the instance sidecar's services until `shutdown` completes.
pub async fn run_instance(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    run_role(Role::Instance, settings, shutdown).await
}

/// Serves the restore Job sidecar's services until `shutdown` completes.
pub async fn run_restore(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    run_role(Role::Restore, settings, shutdown).await
}

async fn run_role(
    wanted: Role,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    if settings.role != wanted {
        return Err(ServeError::WrongRole {
            given: settings.role.as_str(),
            wanted: wanted.as_str(),
        });
    }
    PluginServer::new(settings).run(shutdown).await
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed when this is
/// called, so a signal arriving before the future is awaited is not lost.
pub fn termination_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
