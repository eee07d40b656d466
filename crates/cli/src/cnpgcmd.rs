//! `barrelman cnpg instance|restore|healthcheck unix`: the CloudNativePG plugin sidecar
//! (barrelman-cnpg) with the upstream sidecar's environment, `--plugin-path` and
//! `--log-level`, logging JSON lines on stderr as CloudNativePG's components do.

use std::fmt;
use std::path::PathBuf;

use barrelman_cnpg::settings::DEFAULT_PLUGIN_DIR;
use barrelman_cnpg::{Role, Settings};
use clap::{Args, Subcommand, ValueEnum};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `barrelman cnpg ...`.
#[derive(Args, Debug)]
pub struct CnpgArgs {
    /// Directory of the plugin socket (the socket is DIR/barman-cloud.cloudnative-pg.io;
    /// default /plugins). For `operator`, serve there instead of TCP with mutual TLS.
    #[arg(long, global = true)]
    plugin_path: Option<PathBuf>,
    /// Log level of the JSON log lines on stderr.
    #[arg(long, global = true, value_enum, default_value = "info")]
    log_level: LogLevel,
    #[command(flatten)]
    log: LogFlags,
    #[command(subcommand)]
    command: CnpgCommand,
}

/// The other log flags of CloudNativePG's `machinery` that the upstream binary takes
/// (users put them in `additionalContainerArgs`; an unknown flag would crash-loop the
/// sidecar).
#[derive(Args, Debug, Default)]
struct LogFlags {
    /// Write the JSON log lines to this file (appended) instead of stderr.
    #[arg(long, global = true, value_name = "PATH")]
    log_destination: Option<PathBuf>,
    /// Empty the --log-destination file first.
    #[arg(long, global = true)]
    log_truncate_destination: bool,
    /// The JSON key of the level.
    #[arg(long, global = true, value_name = "NAME", default_value = "level")]
    log_field_level: String,
    /// The JSON key of the timestamp.
    #[arg(long, global = true, value_name = "NAME", default_value = "ts")]
    log_field_timestamp: String,
    /// The upstream sidecar's Go profiler address: accepted, not served (barrelman
    /// has no Go runtime to profile).
    #[arg(long, global = true, value_name = "HOST:PORT", hide = true)]
    pprof_server: Option<String>,
}

#[derive(Subcommand, Debug)]
enum CnpgCommand {
    /// Serve the instance sidecar (Identity, WAL, Backup, Metrics, Health) on the socket.
    Instance,
    /// Serve the restore Job sidecar (Identity, WAL, RestoreJobHooks, Health).
    Restore,
    /// Probe the sidecar: exit 0 SERVING, 2 UNKNOWN, 3 NOT_SERVING, 125 other, 1 error.
    Healthcheck {
        #[command(subcommand)]
        transport: HealthTransport,
    },
    /// Play CloudNativePG's instance manager against a sidecar's socket (debugging;
    /// tests use it as archive_command / restore_command).
    Client(ClientArgs),
    /// Serve the operator side (Identity, OperatorLifecycle, ReconcilerHooks, Operator)
    /// over TCP with mutual TLS, as CloudNativePG's operator dials it; needs SIDECAR_IMAGE.
    Operator(OperatorArgs),
    /// Print the ObjectStore CustomResourceDefinition (YAML), generated from the
    /// types the plugin reads; deploy/crd.yaml is this output.
    Crd,
}

/// `barrelman cnpg operator`: upstream's flags.
#[derive(Args, Debug)]
struct OperatorArgs {
    /// The server certificate (PEM), re-read when it changes.
    #[arg(long)]
    server_cert: Option<PathBuf>,
    /// The server's private key (PEM), re-read when it changes.
    #[arg(long)]
    server_key: Option<PathBuf>,
    /// The certificate(s) client certificates must chain to (PEM): the client
    /// certificate itself when self-signed, or a CA bundle; re-read when it changes.
    #[arg(long)]
    client_cert: Option<PathBuf>,
    /// Where gRPC listens (HOST:PORT or :PORT).
    #[arg(long, default_value = barrelman_operator::server::DEFAULT_SERVER_ADDRESS)]
    server_address: String,
    /// Only the holder of the Lease 822e3f5c.cnpg.io re-syncs Roles (gRPC needs no leader).
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    leader_elect: bool,
    /// Where /healthz and /readyz are answered ("0" disables).
    #[arg(long, default_value = barrelman_operator::server::DEFAULT_HEALTH_ADDRESS)]
    health_probe_bind_address: String,
    /// Accepted for compatibility; the operator side serves no metrics ("0", the default).
    #[arg(long, default_value = "0")]
    metrics_bind_address: String,
    /// Accepted for compatibility (metrics are not served).
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value = "true", default_missing_value = "true")]
    metrics_secure: bool,
    /// Accepted for compatibility (gRPC always runs over HTTP/2).
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    enable_http2: bool,
    /// Seconds between two passes re-syncing Roles with their ObjectStores ("0": never).
    #[arg(long, default_value_t = 30)]
    resync_interval: u64,
}

/// `barrelman cnpg client --socket PATH ...`.
#[derive(Args, Debug)]
struct ClientArgs {
    /// The plugin's unix socket.
    #[arg(long)]
    socket: PathBuf,
    #[command(subcommand)]
    call: ClientCall,
}

#[derive(Subcommand, Debug)]
enum ClientCall {
    /// Identity: metadata, capabilities and probe, as JSON on stdout.
    Identity,
    /// WAL.Archive of PATH (exit 0 archived, 1 not).
    WalArchive {
        /// The Cluster as JSON (what CloudNativePG sends as cluster_definition).
        #[arg(long)]
        cluster: PathBuf,
        /// Send check_empty_wal_archive=true (absent otherwise: the plugin decides from
        /// the annotation and the PGDATA marker).
        #[arg(long)]
        check_empty: bool,
        /// The WAL file (`%p`).
        path: String,
    },
    /// WAL.Restore of NAME into DEST (exit 0 restored, 1 not: NotFound is "not there").
    WalRestore {
        /// The Cluster as JSON.
        #[arg(long)]
        cluster: PathBuf,
        /// pg_rewind's mode (no prefetch).
        #[arg(long)]
        rewind: bool,
        /// The WAL file name (`%f`).
        name: String,
        /// Where to write it (`%p`).
        dest: String,
    },
    /// Backup.Backup: prints the BackupResult as JSON on stdout (exit 0 done, 1 not).
    Backup {
        /// The Cluster as JSON.
        #[arg(long)]
        cluster: PathBuf,
        /// The Backup as JSON (its spec.pluginConfiguration.parameters are sent).
        #[arg(long)]
        backup: PathBuf,
    },
    /// RestoreJobHooks.Restore: the sidecar restores into its PGDATA; prints the
    /// restore_config to append to postgresql.conf on stdout (exit 0 done, 1 not).
    RestoreJob {
        /// The Cluster as JSON (its spec.bootstrap.recovery names the source).
        #[arg(long)]
        cluster: PathBuf,
        /// Send check_empty_wal_archive=true/false (absent otherwise: the plugin
        /// decides from the cnpg.io/skipEmptyWalArchiveCheck annotation).
        #[arg(long)]
        check_empty: Option<bool>,
    },
    /// Metrics.Define then Metrics.Collect: prints `name value` lines (exit 0, 1 not).
    Metrics {
        /// The Cluster as JSON (without it the upstream gauges read 0).
        #[arg(long)]
        cluster: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum HealthTransport {
    /// Over the plugin's unix socket.
    Unix,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogLevel {
    Error,
    Warning,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn filter(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warning => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Collects an event's fields into a JSON object.
struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

/// One JSON object per line: level, ts, logger, msg, then the event's fields (the
/// level and timestamp keys as `--log-field-level` / `--log-field-timestamp` say).
struct JsonLines {
    level_key: String,
    ts_key: String,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let mut fields = JsonFields(serde_json::Map::new());
        event.record(&mut fields);
        let mut line = serde_json::Map::new();
        line.insert(self.level_key.clone(), level.into());
        line.insert(
            self.ts_key.clone(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .into(),
        );
        line.insert("logger".into(), "barrelman-cnpg".into());
        line.insert("msg".into(), fields.0.remove("message").unwrap_or_default());
        line.extend(fields.0);
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

fn init_logging(level: LogLevel, flags: &LogFlags) {
    let l = level.filter();
    let filter = format!("warn,barrelman={l},barrelman_cnpg={l},barrelman_operator={l},barrelman_core={l},barrelman_storage={l},barrelman_ops={l}");
    let format = JsonLines {
        level_key: flags.log_field_level.clone(),
        ts_key: flags.log_field_timestamp.clone(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .event_format(format);
    let opened = flags.log_destination.as_ref().map(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(!flags.log_truncate_destination)
            .write(true)
            .truncate(flags.log_truncate_destination)
            .open(path)
            .map_err(|e| {
                format!(
                    "cannot open --log-destination {}: {e}; logging to stderr",
                    path.display()
                )
            })
    });
    match opened {
        Some(Ok(file)) => {
            let _ = builder.with_writer(std::sync::Mutex::new(file)).try_init();
        }
        other => {
            let _ = builder.with_writer(std::io::stderr).try_init();
            if let Some(Err(e)) = other {
                tracing::error!("{e}");
            }
        }
    }
    if flags.pprof_server.is_some() {
        tracing::info!(
            "--pprof-server is accepted for compatibility; barrelman serves no Go profiler"
        );
    }
}

/// Runs `barrelman cnpg ...`; returns the exit code.
pub fn run(args: CnpgArgs) -> i32 {
    init_logging(args.log_level, &args.log);
    let rt = match crate::cmd::RuntimeKind::MultiThread.build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return crate::exit::GENERAL_ERROR;
        }
    };
    let role = match args.command {
        CnpgCommand::Healthcheck {
            transport: HealthTransport::Unix,
        } => {
            return rt.block_on(barrelman_cnpg::healthcheck(&plugin_dir(&args.plugin_path)));
        }
        CnpgCommand::Operator(op) => return run_operator(&rt, op, args.plugin_path),
        CnpgCommand::Client(client) => return rt.block_on(run_client(client)),
        CnpgCommand::Instance => Role::Instance,
        CnpgCommand::Restore => Role::Restore,
        CnpgCommand::Crd => {
            // On stdout only (logs go to stderr): meant for `> deploy/crd.yaml`.
            print!("{}", barrelman_operator::crd::object_store_crd_yaml());
            return crate::exit::SUCCESS;
        }
    };
    let settings = match Settings::from_vars(
        role,
        |name| std::env::var(name).ok(),
        plugin_dir(&args.plugin_path),
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return crate::exit::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let shutdown = barrelman_cnpg::server::termination_signal()
            .map_err(|e| format!("cannot install the SIGTERM/SIGINT handlers: {e}"))?;
        let mut server = barrelman_cnpg::PluginServer::new(settings.clone());
        match barrelman_cnpg::k8s::KubeAccess::infer(settings.namespace.clone()).await {
            Ok(kube) => server = server.with_kube(kube),
            // Outside Kubernetes (a developer's machine) the WAL services still work;
            // what needs the API (metrics collection) says so when called.
            Err(e) => tracing::warn!("running without the Kubernetes API: {e}"),
        }
        server.run(shutdown).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => crate::exit::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            crate::exit::FAILURE
        }
    }
}

/// One call of `cnpg client`; returns the exit code the instance manager would give.
async fn run_client(args: ClientArgs) -> i32 {
    use barrelman_cnpg::client::{self, EXIT_CALL_FAILED};
    let read_cluster = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| {
            tracing::error!("cannot read the Cluster JSON {}: {e}", p.display());
        })
    };
    let result = match &args.call {
        ClientCall::Identity => match client::identity(&args.socket).await {
            Ok(answer) => {
                let capabilities: Vec<i32> = answer
                    .capabilities
                    .capabilities
                    .iter()
                    .filter_map(|c| {
                        let barrelman_cnpg::proto::identity::plugin_capability::Type::Service(s) =
                            c.r#type.as_ref()?;
                        Some(s.r#type)
                    })
                    .collect();
                let m = &answer.metadata;
                let json = serde_json::json!({
                    "name": m.name, "version": m.version, "displayName": m.display_name,
                    "capabilities": capabilities, "ready": answer.ready,
                });
                crate::output::outln!("{json}");
                Ok(())
            }
            Err(e) => Err(e),
        },
        ClientCall::WalArchive {
            cluster,
            check_empty,
            path,
        } => {
            let Ok(cluster) = read_cluster(cluster) else {
                return EXIT_CALL_FAILED;
            };
            let check = check_empty.then_some(true);
            let path = absolute(path);
            client::wal_archive(&args.socket, cluster, &path, check).await
        }
        ClientCall::WalRestore {
            cluster,
            rewind,
            name,
            dest,
        } => {
            let Ok(cluster) = read_cluster(cluster) else {
                return EXIT_CALL_FAILED;
            };
            let dest = absolute(dest);
            client::wal_restore(&args.socket, cluster, name, &dest, *rewind).await
        }
        ClientCall::Metrics { cluster } => {
            let cluster = match cluster {
                Some(c) => match read_cluster(c) {
                    Ok(c) => c,
                    Err(_) => return EXIT_CALL_FAILED,
                },
                None => Vec::new(),
            };
            match client::metrics(&args.socket, cluster).await {
                Ok(lines) => {
                    for (name, value) in lines {
                        crate::output::outln!("{name} {value}");
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        ClientCall::Backup { cluster, backup } => {
            let Ok(cluster) = read_cluster(cluster) else {
                return EXIT_CALL_FAILED;
            };
            let backup = match std::fs::read(backup) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("cannot read the Backup JSON {}: {e}", backup.display());
                    return EXIT_CALL_FAILED;
                }
            };
            match client::backup(&args.socket, cluster, backup).await {
                Ok(r) => {
                    let metadata: std::collections::BTreeMap<_, _> = r.metadata.iter().collect();
                    let json = serde_json::json!({
                        "backupId": r.backup_id, "backupName": r.backup_name,
                        "startedAt": r.started_at, "stoppedAt": r.stopped_at,
                        "beginWal": r.begin_wal, "endWal": r.end_wal,
                        "beginLsn": r.begin_lsn, "endLsn": r.end_lsn,
                        "instanceId": r.instance_id, "online": r.online,
                        "metadata": metadata,
                    });
                    crate::output::outln!("{json}");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        ClientCall::RestoreJob {
            cluster,
            check_empty,
        } => {
            let Ok(cluster) = read_cluster(cluster) else {
                return EXIT_CALL_FAILED;
            };
            match client::restore_job(&args.socket, cluster, *check_empty).await {
                Ok(r) => {
                    // The settings as answered, ended by one newline.
                    crate::output::outln!("{}", r.restore_config.trim_end_matches('\n'));
                    for env in &r.envs {
                        tracing::info!(env = %env, "the plugin asks for this environment variable");
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => crate::exit::SUCCESS,
        Err(status) => {
            let code = format!("{:?}", status.code());
            if status.code() == tonic::Code::NotFound {
                tracing::info!(code = %code, "{}", status.message());
            } else {
                tracing::error!(code = %code, "{}", status.message());
            }
            EXIT_CALL_FAILED
        }
    }
}

/// `path` made absolute against the working directory, as the instance manager joins
/// `%p` to PGDATA (PostgreSQL runs archive_command and restore_command in PGDATA); the
/// sidecar must not resolve it against its own directory.
fn absolute(path: &str) -> String {
    let p = std::path::Path::new(path);
    match std::env::current_dir() {
        Ok(cwd) if p.is_relative() => cwd.join(p).to_string_lossy().into_owned(),
        _ => path.to_string(),
    }
}

fn plugin_dir(given: &Option<PathBuf>) -> PathBuf {
    given
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PLUGIN_DIR))
}

/// The namespace the operator runs in: the service account's, else `NAMESPACE`, else
/// upstream's `cnpg-system`.
fn own_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("NAMESPACE").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "cnpg-system".into())
}

/// `barrelman cnpg operator`; returns the exit code.
fn run_operator(rt: &tokio::runtime::Runtime, op: OperatorArgs, unix: Option<PathBuf>) -> i32 {
    use barrelman_operator::server::{
        parse_bind_address, Listen, OperatorPlugin, OperatorSettings,
    };
    let fail = |msg: String| {
        tracing::error!("{msg}");
        crate::exit::FAILURE
    };
    let Some(sidecar_image) = std::env::var("SIDECAR_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        return fail(
            "SIDECAR_IMAGE is not set: set it to the barrelman image injected as the sidecar \
             (the Deployment takes it from the plugin's Secret)"
                .into(),
        );
    };
    let listen = match unix {
        Some(dir) => Listen::Unix { dir },
        None => {
            let (Some(server_cert), Some(server_key), Some(client_cert)) =
                (op.server_cert, op.server_key, op.client_cert)
            else {
                return fail(
                    "--server-cert, --server-key and --client-cert are all required for TCP \
                     with mutual TLS (or pass --plugin-path to serve on a unix socket)"
                        .into(),
                );
            };
            let addr = match parse_bind_address(&op.server_address) {
                Ok(a) => a,
                Err(e) => return fail(format!("--server-address: {e}")),
            };
            Listen::Tcp {
                addr,
                tls: barrelman_operator::tls::TlsFiles {
                    server_cert,
                    server_key,
                    client_cert,
                },
            }
        }
    };
    let health = match op.health_probe_bind_address.as_str() {
        "0" | "" => None,
        a => match parse_bind_address(a) {
            Ok(a) => Some(a),
            Err(e) => return fail(format!("--health-probe-bind-address: {e}")),
        },
    };
    if op.metrics_bind_address != "0" {
        tracing::warn!(
            address = %op.metrics_bind_address,
            "the operator side serves no metrics; --metrics-bind-address is ignored"
        );
    }
    let _ = (op.metrics_secure, op.enable_http2);
    let settings = OperatorSettings {
        listen,
        health,
        sidecar_image,
        resync_every: (op.resync_interval > 0)
            .then(|| std::time::Duration::from_secs(op.resync_interval)),
        leader_elect: op.leader_elect,
        namespace: own_namespace(),
    };
    let result = rt.block_on(async move {
        let shutdown = barrelman_cnpg::server::termination_signal()
            .map_err(|e| format!("cannot install the SIGTERM/SIGINT handlers: {e}"))?;
        let mut server = OperatorPlugin::new(settings);
        match kube::Config::infer()
            .await
            .map_err(|e| e.to_string())
            .and_then(|c| kube::Client::try_from(c).map_err(|e| e.to_string()))
        {
            Ok(client) => server = server.with_kube(client),
            // Identity and validation of the Cluster alone still answer; RBAC says why not.
            Err(e) => tracing::warn!("running without the Kubernetes API: {e}"),
        }
        server.run(shutdown).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => crate::exit::SUCCESS,
        Err(e) => fail(e),
    }
}
