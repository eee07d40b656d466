//! `barrelman cnpg operator`: the operator-side gRPC server (Identity,
//! OperatorLifecycle, ReconcilerHooks, Operator) on TCP with mutual TLS, or on the
//! plugin's unix socket in `--plugin-path` mode; `/healthz` and `/readyz` on the probe
//! address; the periodic Role re-sync.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use barrelman_cnpg::proto::identity::identity_server::IdentityServer;
use barrelman_cnpg::proto::operator::operator_server::OperatorServer;
use barrelman_cnpg::proto::operator_lifecycle::operator_lifecycle_server::OperatorLifecycleServer;
use barrelman_cnpg::proto::reconciler::reconciler_hooks_server::ReconcilerHooksServer;
use barrelman_cnpg::socket::{PluginSocket, SocketError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::Server;

use crate::identity::OperatorIdentity;
use crate::lifecycle::LifecycleService;
use crate::reconciler::ReconcilerService;
use crate::tls::{TlsError, TlsFiles};
use crate::validation::ValidationService;

/// Upstream's default `--server-address`.
pub const DEFAULT_SERVER_ADDRESS: &str = ":9090";
/// Upstream's default `--health-probe-bind-address`.
pub const DEFAULT_HEALTH_ADDRESS: &str = ":8081";
/// How long a client may take to finish the TLS handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the gRPC services listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// TCP with mutual TLS (what CloudNativePG's operator dials).
    Tcp {
        /// The address (`:9090` means every interface).
        addr: SocketAddr,
        /// The certificate files.
        tls: TlsFiles,
    },
    /// Plaintext on `DIR/barman-cloud.cloudnative-pg.io` (upstream's `--plugin-path`
    /// mode, for an operator running the plugin in its own Pod).
    Unix {
        /// The plugin directory.
        dir: PathBuf,
    },
}

/// An address as the Go flags write it: `:9090` is every interface.
pub fn parse_bind_address(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    full.parse().map_err(|_| {
        format!("{text:?} is not a listen address; write HOST:PORT or :PORT, e.g. :9090")
    })
}

/// What the operator-side server needs.
#[derive(Clone, Debug)]
pub struct OperatorSettings {
    /// Where gRPC listens.
    pub listen: Listen,
    /// Where `/healthz` and `/readyz` are answered (`None`: not served).
    pub health: Option<SocketAddr>,
    /// `SIDECAR_IMAGE`: the image injected as the sidecar.
    pub sidecar_image: String,
    /// How often the Roles are recomputed from their ObjectStores (`None`: never).
    pub resync_every: Option<Duration>,
    /// `--leader-elect`: only the holder of the Lease re-syncs Roles.
    pub leader_elect: bool,
    /// The namespace the operator runs in (the Lease's).
    pub namespace: String,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum OperatorServeError {
    /// The certificates are unusable at start.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The unix socket could not be set up.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// An address could not be bound.
    #[error("cannot listen on {addr} for {what}: {source}; free the port or pass another address")]
    Bind {
        /// What the address is for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("the operator plugin's gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl barrelman_core::error::Classified for OperatorServeError {
    fn class(&self) -> barrelman_core::error::ErrorClass {
        use barrelman_core::error::ErrorClass;
        match self {
            OperatorServeError::Tls(_) | OperatorServeError::Socket(_) => ErrorClass::Input,
            OperatorServeError::Bind { .. } => ErrorClass::Unavailable,
            OperatorServeError::Transport(_) => ErrorClass::Internal,
        }
    }
}

/// The OperatorLifecycle service: sidecar injection into Pods and recovery Jobs.
fn lifecycle_service(
    kube: Option<&kube::Client>,
    sidecar_image: &str,
) -> OperatorLifecycleServer<LifecycleService> {
    OperatorLifecycleServer::new(LifecycleService::with_client(
        kube.cloned(),
        sidecar_image.to_string(),
    ))
}

/// A TLS connection as tonic wants it (its own impl needs tonic's tls feature).
#[derive(Debug)]
pub struct TlsConnection(tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for TlsConnection {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Accepts TCP connections and completes each TLS handshake in its own task, so one
/// slow or hostile client does not hold up the others; failed handshakes are logged
/// and dropped (a wrong client certificate never reaches the services).
fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> impl futures::Stream<Item = Result<TlsConnection, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<TlsConnection>(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            // When the server stops it drops the stream: stop accepting at once, which
            // closes the port.
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(TlsConnection(tls)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(peer = %peer, error = %e, "TLS handshake refused")
                    }
                    Err(_) => tracing::warn!(peer = %peer, "TLS handshake timed out"),
                }
            });
        }
    });
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|c| (Ok(c), rx)) },
    )
}

/// The operator-side server, configured, not yet listening.
pub struct OperatorPlugin {
    settings: OperatorSettings,
    kube: Option<kube::Client>,
    ready: Arc<AtomicBool>,
}

impl OperatorPlugin {
    /// A server for `settings`, without Kubernetes access until [`Self::with_kube`].
    pub fn new(settings: OperatorSettings) -> Self {
        OperatorPlugin {
            settings,
            kube: None,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Gives the services (RBAC, validation, injection) the Kubernetes API.
    pub fn with_kube(mut self, client: kube::Client) -> Self {
        self.kube = Some(client);
        self
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), OperatorServeError> {
        let s = &self.settings;
        if let Some(addr) = s.health {
            let listener =
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| OperatorServeError::Bind {
                        what: "the health probes",
                        addr,
                        source,
                    })?;
            tokio::spawn(crate::health::serve(listener, self.ready.clone()));
        }
        if let (Some(every), Some(client)) = (s.resync_every, self.kube.clone()) {
            // Idempotent and optimistic-locked, so replicas racing each other are safe;
            // with --leader-elect only the Lease holder runs it (fewer API calls).
            let resync = crate::reconciler::Resync::new(client, every);
            let lease = s
                .leader_elect
                .then(|| crate::leader::Lease::new(s.namespace.clone()).with_duration(every * 3));
            tokio::spawn(resync.run(lease));
        }
        let router = Server::builder()
            .add_service(IdentityServer::new(OperatorIdentity))
            .add_service(ReconcilerHooksServer::new(ReconcilerService::new(
                self.kube.clone(),
            )))
            .add_service(lifecycle_service(self.kube.as_ref(), &s.sidecar_image))
            .add_service(OperatorServer::new(ValidationService::new(
                self.kube.clone(),
            )));
        match &s.listen {
            Listen::Tcp { addr, tls } => {
                let config = crate::tls::server_config(tls)?;
                let listener =
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| OperatorServeError::Bind {
                            what: "gRPC",
                            addr: *addr,
                            source,
                        })?;
                let bound = listener.local_addr().unwrap_or(*addr);
                tracing::info!(address = %bound, version = env!("CARGO_PKG_VERSION"), "operator plugin listening (mTLS)");
                self.ready.store(true, Ordering::SeqCst);
                router
                    .serve_with_incoming_shutdown(tls_incoming(listener, config), shutdown)
                    .await?;
            }
            Listen::Unix { dir } => {
                let socket = PluginSocket::bind(&dir.join(barrelman_cnpg::PLUGIN_NAME))?;
                tracing::info!(socket = %socket.path().display(), version = env!("CARGO_PKG_VERSION"), "operator plugin listening (unix socket)");
                let (listener, _remove_on_exit) = socket.into_parts();
                let incoming = futures::stream::unfold(listener, |l| async move {
                    let next = l.accept().await.map(|(stream, _)| stream);
                    Some((next, l))
                });
                self.ready.store(true, Ordering::SeqCst);
                router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await?;
            }
        }
        self.ready.store(false, Ordering::SeqCst);
        tracing::info!("operator plugin stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_addresses_parse() {
        assert_eq!(
            parse_bind_address(":9090").unwrap(),
            "0.0.0.0:9090".parse().unwrap()
        );
        assert_eq!(
            parse_bind_address("127.0.0.1:1").unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert!(parse_bind_address("9090").unwrap_err().contains(":9090"));
    }
}
