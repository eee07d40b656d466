//! The plugin server over its real unix socket: the services per role, health and the
//! healthcheck exit codes, UNIMPLEMENTED answers, stale and live sockets, and shutdown
//! (by future and by SIGTERM) removing the socket.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use barrelman_cnpg::client::{healthcheck_unix, unix_channel};
use barrelman_cnpg::proto::identity::identity_client::IdentityClient;
use barrelman_cnpg::proto::identity::{self, plugin_capability};
use barrelman_cnpg::proto::{backup, metrics, wal};
use barrelman_cnpg::socket::{PluginSocket, SocketError};
use barrelman_cnpg::{PluginServer, Role, ServeError, Settings, PLUGIN_NAME};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::Code;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

struct Running {
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
    health: HealthReporter,
}

impl Running {
    fn socket(&self) -> PathBuf {
        self.dir.path().join(PLUGIN_NAME)
    }

    async fn stop(mut self) -> (Result<(), ServeError>, tempfile::TempDir) {
        self.stop.take().unwrap().send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .unwrap()
            .unwrap();
        (result, self.dir)
    }
}

fn settings(role: Role, dir: &Path) -> Settings {
    let vars = |name: &str| match name {
        "NAMESPACE" => Some("db".to_string()),
        "CLUSTER_NAME" => Some("pg".to_string()),
        "POD_NAME" => Some("pg-1".to_string()),
        "SPOOL_DIRECTORY" => Some("/tmp/spool".to_string()),
        _ => None,
    };
    Settings::from_vars(role, vars, dir).unwrap()
}

async fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::UnixStream::connect(path).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no server on {} after 10 s",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(role: Role) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let server = PluginServer::new(settings(role, dir.path()));
    let health = server.health_reporter();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let running = Running {
        dir,
        stop: Some(tx),
        task,
        health,
    };
    wait_for_socket(&running.socket()).await;
    running
}

fn service_types(r: &identity::GetPluginCapabilitiesResponse) -> Vec<i32> {
    r.capabilities
        .iter()
        .map(|c| match &c.r#type {
            Some(plugin_capability::Type::Service(s)) => s.r#type,
            None => panic!("capability without type"),
        })
        .collect()
}

/// Calls `path` with an empty request message, decoding an empty answer: proves the
/// server routes exactly that path.
async fn raw_call(socket: &Path, path: &'static str) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(unix_channel(socket));
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec =
        tonic_prost::ProstCodec::<identity::ProbeRequest, identity::ProbeRequest>::default();
    grpc.unary(
        tonic::Request::new(identity::ProbeRequest {}),
        PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(|_| ())
}

#[tokio::test]
async fn instance_serves_identity_health_and_capabilities() {
    let server = start(Role::Instance).await;
    let ch = unix_channel(server.socket());

    let mut id = IdentityClient::new(ch.clone());
    let meta = id
        .get_plugin_metadata(identity::GetPluginMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "barman-cloud.cloudnative-pg.io");
    assert_eq!(meta.version, env!("CARGO_PKG_VERSION"));
    let caps = id
        .get_plugin_capabilities(identity::GetPluginCapabilitiesRequest {})
        .await
        .unwrap();
    // WAL_SERVICE, BACKUP_SERVICE, METRICS.
    assert_eq!(service_types(caps.get_ref()), vec![2, 3, 10]);
    assert!(
        id.probe(identity::ProbeRequest {})
            .await
            .unwrap()
            .get_ref()
            .ready
    );

    assert_eq!(healthcheck_unix(server.dir.path()).await, 0);

    let mut w = wal::wal_client::WalClient::new(ch.clone());
    let caps = w
        .get_capabilities(wal::WalCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let rpcs: Vec<i32> = caps
        .capabilities
        .iter()
        .map(|c| match c.r#type {
            Some(wal::wal_capability::Type::Rpc(r)) => r.r#type,
            None => panic!("no rpc"),
        })
        .collect();
    assert_eq!(rpcs, vec![1, 2]);

    let mut b = backup::backup_client::BackupClient::new(ch.clone());
    let caps = b
        .get_capabilities(backup::BackupCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caps.capabilities.len(), 1);
    let mut m = metrics::metrics_client::MetricsClient::new(ch.clone());
    let caps = m
        .get_capabilities(metrics::MetricsCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caps.capabilities.len(), 1);
    let defs = m
        .define(metrics::DefineMetricsRequest::default())
        .await
        .unwrap()
        .into_inner();
    // The three upstream gauges first, then barrelman's six (two of them counters).
    assert_eq!(defs.metrics.len(), 9);
    assert!(defs.metrics[..3]
        .iter()
        .all(|d| d.value_type.unwrap().r#type == 2));
    assert_eq!(
        defs.metrics
            .iter()
            .filter(|d| d.value_type.unwrap().r#type == 1)
            .count(),
        2
    );

    let (result, dir) = server.stop().await;
    result.unwrap();
    assert!(!dir.path().join(PLUGIN_NAME).exists(), "socket left behind");
}

#[tokio::test]
async fn unimplemented_methods_say_so_and_unserved_services_are_not_routed() {
    let server = start(Role::Instance).await;
    let mut w = wal::wal_client::WalClient::new(unix_channel(server.socket()));
    let status = w
        .status(wal::WalStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(
        status.message().contains("WAL.Status") && status.message().contains("does not advertise"),
        "{status:?}"
    );
    let status = w
        .set_first_required(wal::SetFirstRequiredRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(
        status.message().contains("WAL.SetFirstRequired"),
        "{status:?}"
    );
    // Archive is served: a request without a Cluster is refused with the reason
    // (upstream's plain error, UNKNOWN), never a fake success.
    let status = w
        .archive(wal::WalArchiveRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unknown);
    assert!(
        status
            .message()
            .starts_with("the cluster_definition sent by CloudNativePG is not a Cluster in JSON"),
        "{status:?}"
    );

    // The restore Job's service is not on the instance socket: tonic's empty answer.
    let status = raw_call(&server.socket(), "/cnpgi.wal.v1.RestoreJobHooks/Restore")
        .await
        .unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::Unimplemented, ""));
    let status = raw_call(
        &server.socket(),
        "/cnpgi.identity.v1.Postgres/GetCapabilities",
    )
    .await
    .unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::Unimplemented, ""));
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn exact_method_paths_are_routed() {
    let server = start(Role::Instance).await;
    let sock = server.socket();
    // An empty message decodes as any empty-request type, so these succeed only if the
    // server routes the path to the right handler.
    for path in [
        "/cnpgi.identity.v1.Identity/GetPluginMetadata",
        "/cnpgi.identity.v1.Identity/GetPluginCapabilities",
        "/cnpgi.identity.v1.Identity/Probe",
        "/cnpgi.wal.v1.WAL/GetCapabilities",
        "/cnpgi.backup.v1.Backup/GetCapabilities",
        "/cnpgi.metrics.v1.Metrics/GetCapabilities",
        "/cnpgi.metrics.v1.Metrics/Define",
        "/grpc.health.v1.Health/Check",
    ] {
        raw_call(&sock, path)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
    }
    let status = raw_call(&sock, "/cnpgi.wal.v1.WAL/Restore")
        .await
        .unwrap_err();
    // Routed to Restore: an empty request has no Cluster to read (InvalidArgument).
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("cluster_definition"),
        "{status:?}"
    );
    let status = raw_call(&sock, "/cnpgi.backup.v1.Backup/Backup")
        .await
        .unwrap_err();
    // Routed to Backup: an empty request has no Cluster to read.
    assert!(
        status.message().contains("cluster_definition"),
        "{status:?}"
    );
    let status = raw_call(&sock, "/cnpgi.metrics.v1.Metrics/Collect")
        .await
        .unwrap_err();
    // Without Kubernetes access Collect cannot read the ObjectStore status.
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("Metrics.Collect"), "{status:?}");
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn restore_role_serves_its_services() {
    let server = start(Role::Restore).await;
    let ch = unix_channel(server.socket());
    let mut id = IdentityClient::new(ch.clone());
    let caps = id
        .get_plugin_capabilities(identity::GetPluginCapabilitiesRequest {})
        .await
        .unwrap();
    // RESTORE_JOB, WAL_SERVICE.
    assert_eq!(service_types(caps.get_ref()), vec![6, 2]);
    let mut rj = wal::restore_job_hooks_client::RestoreJobHooksClient::new(ch.clone());
    let caps = rj
        .get_capabilities(wal::RestoreJobHooksCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        caps.capabilities.iter().map(|c| c.kind).collect::<Vec<_>>(),
        vec![1]
    );
    // Restore is served: a request without a Cluster is refused with the reason.
    let status = rj
        .restore(wal::RestoreRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("cluster_definition"),
        "{status:?}"
    );
    // A recovery Cluster but no PGDATA in the sidecar: refused before any store is
    // read, saying which variable to set.
    let cluster = serde_json::json!({
        "metadata": {"name": "pg"},
        "spec": {"bootstrap": {"recovery": {"source": "origin"}},
                 "externalClusters": [{"name": "origin", "plugin": {"name": PLUGIN_NAME,
                    "parameters": {"barmanObjectName": "store"}}}]},
    });
    let status = rj
        .restore(wal::RestoreRequest {
            cluster_definition: cluster.to_string().into_bytes(),
            check_empty_wal_archive: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("PGDATA"), "{status:?}");
    raw_call(&server.socket(), "/cnpgi.wal.v1.WAL/GetCapabilities")
        .await
        .unwrap();
    raw_call(
        &server.socket(),
        "/cnpgi.wal.v1.RestoreJobHooks/GetCapabilities",
    )
    .await
    .unwrap();
    assert_eq!(healthcheck_unix(server.dir.path()).await, 0);
    for path in [
        "/cnpgi.backup.v1.Backup/GetCapabilities",
        "/cnpgi.metrics.v1.Metrics/Define",
    ] {
        let status = raw_call(&server.socket(), path).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unimplemented, ""),
            "{path}"
        );
    }
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn healthcheck_exit_codes() {
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(healthcheck_unix(empty.path()).await, 1, "missing socket");

    let server = start(Role::Instance).await;
    let dir = server.dir.path().to_path_buf();
    assert_eq!(healthcheck_unix(&dir).await, 0);
    server
        .health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    assert_eq!(healthcheck_unix(&dir).await, 3);
    server
        .health
        .set_service_status("", ServingStatus::Unknown)
        .await;
    assert_eq!(healthcheck_unix(&dir).await, 2);
    server
        .health
        .set_service_status("", ServingStatus::Serving)
        .await;
    assert_eq!(healthcheck_unix(&dir).await, 0);
    server.stop().await.0.unwrap();
    assert_eq!(healthcheck_unix(&dir).await, 1, "after shutdown");
}

#[tokio::test]
async fn stale_socket_is_replaced_live_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(PLUGIN_NAME);
    // A socket file whose listener is gone, as a killed sidecar leaves it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = PluginServer::new(settings(Role::Instance, dir.path()));
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    wait_for_socket(&path).await;
    assert_eq!(healthcheck_unix(dir.path()).await, 0);

    // A second server on the same directory is refused and leaves the first one alone.
    let second = PluginServer::new(settings(Role::Restore, dir.path()));
    let err = second.run(std::future::pending()).await.unwrap_err();
    assert!(
        matches!(err, ServeError::Socket(SocketError::InUse(_))),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(healthcheck_unix(dir.path()).await, 0);

    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!path.exists());

    std::fs::write(&path, b"not a socket").unwrap();
    let err = PluginSocket::bind(&path).unwrap_err();
    assert!(matches!(err, SocketError::NotASocket(_)), "{err:?}");
    let err = PluginSocket::bind(&dir.path().join("missing").join(PLUGIN_NAME)).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn wrong_role_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = barrelman_cnpg::run_restore(settings(Role::Instance, dir.path()), async {})
        .await
        .unwrap_err();
    assert!(matches!(err, ServeError::WrongRole { .. }), "{err:?}");
    assert!(!dir.path().join(PLUGIN_NAME).exists());
}

#[tokio::test]
async fn sigterm_stops_the_server_and_removes_the_socket() {
    // nextest runs each test in its own process, so the signal reaches only this test.
    let dir = tempfile::tempdir().unwrap();
    let signal = barrelman_cnpg::server::termination_signal().unwrap();
    let task = tokio::spawn(barrelman_cnpg::run_instance(
        settings(Role::Instance, dir.path()),
        signal,
    ));
    let path = dir.path().join(PLUGIN_NAME);
    wait_for_socket(&path).await;
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let result = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap();
    result.unwrap();
    assert!(!path.exists(), "socket left behind after SIGTERM");
}

/// A health server answering a fixed raw status (tonic-health's reporter cannot set
/// SERVICE_UNKNOWN or unknown numbers).
struct FixedHealth(i32);

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for FixedHealth {
    async fn check(
        &self,
        _: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(
            tonic_health::pb::HealthCheckResponse { status: self.0 },
        ))
    }

    type WatchStream =
        futures::stream::Pending<Result<tonic_health::pb::HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        _: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("test server"))
    }
}

#[tokio::test]
async fn healthcheck_other_statuses_exit_125() {
    for status in [3, 42] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PLUGIN_NAME);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let incoming = futures::stream::unfold(listener, |l| async move {
            Some((l.accept().await.map(|(s, _)| s), l))
        });
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(tonic_health::pb::health_server::HealthServer::new(
                    FixedHealth(status),
                ))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                }),
        );
        assert_eq!(healthcheck_unix(dir.path()).await, 125, "status {status}");
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn metrics_collect_reads_the_object_store_status() {
    let api = barrelman_testkit::kubeapi::KubeApi::start();
    api.insert(serde_json::json!({
        "apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
        "metadata": {"name": "minio", "namespace": "db"},
        "spec": {"configuration": {"destinationPath": "s3://b/"}},
        "status": {"serverRecoveryWindow": {"old-name": {
            "firstRecoverabilityPoint": "2026-01-01T00:00:00Z",
            "lastSuccessfulBackupTime": "2026-01-02T00:00:00Z"}}},
    }));
    let dir = tempfile::tempdir().unwrap();
    let access =
        barrelman_cnpg::k8s::KubeAccess::for_url(&api.url(), "db", Duration::from_secs(10))
            .unwrap();
    let server = PluginServer::new(settings(Role::Instance, dir.path())).with_kube(access);
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let path = dir.path().join(PLUGIN_NAME);
    wait_for_socket(&path).await;

    let cluster = serde_json::json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": "db"},
        "spec": {"plugins": [{"name": PLUGIN_NAME, "isWALArchiver": true,
            "parameters": {"barmanObjectName": "minio", "serverName": "old-name"}}]},
    });
    let mut m = metrics::metrics_client::MetricsClient::new(unix_channel(&path));
    let got = m
        .collect(metrics::CollectMetricsRequest {
            cluster_definition: cluster.to_string().into_bytes(),
        })
        .await
        .unwrap()
        .into_inner();
    // The upstream gauges (barrelman's follow: see metrics' unit tests).
    let values: Vec<(String, f64)> = got
        .metrics
        .into_iter()
        .take(3)
        .map(|c| (c.fq_name, c.value))
        .collect();
    assert_eq!(
        values,
        [
            (
                "barman_cloud_cloudnative_pg_io_first_recoverability_point".to_string(),
                1_767_225_600.0
            ),
            (
                "barman_cloud_cloudnative_pg_io_last_available_backup_timestamp".to_string(),
                1_767_312_000.0
            ),
            (
                "barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp".to_string(),
                0.0
            ),
        ]
    );
    // A Cluster naming no archive store is an invalid argument naming the parameter.
    let status = m
        .collect(metrics::CollectMetricsRequest {
            cluster_definition: br#"{"metadata":{"name":"pg"}}"#.to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("barmanObjectName"), "{status:?}");
    assert!(api.requests().iter().all(|r| r.method == "GET"));

    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_calls_only_so_long() {
    // A Health.Watch stream never ends by itself: it stands for a call still in flight.
    let dir = tempfile::tempdir().unwrap();
    let server = PluginServer::new(settings(Role::Instance, dir.path()))
        .with_drain_timeout(Duration::from_millis(700));
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let path = dir.path().join(PLUGIN_NAME);
    wait_for_socket(&path).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(unix_channel(&path));
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        1,
        "SERVING first"
    );

    let started = Instant::now();
    tx.send(()).unwrap();
    // The in-flight stream sees NOT_SERVING while the server drains.
    assert_eq!(watch.message().await.unwrap().unwrap().status, 2);
    let result = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap();
    result.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(600),
        "did not wait for the in-flight call: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "drain not bounded: {waited:?}"
    );
    assert!(!path.exists());
    // New connections are refused once shut down.
    assert!(tokio::net::UnixStream::connect(&path).await.is_err());
}
