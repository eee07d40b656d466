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
    /// Directory of the plugin socket (the socket is DIR/barman-cloud.cloudnative-pg.io).
    #[arg(long, global = true, default_value = DEFAULT_PLUGIN_DIR)]
    plugin_path: PathBuf,
    /// Log level of the JSON log lines on stderr.
    #[arg(long, global = true, value_enum, default_value = "info")]
    log_level: LogLevel,
    #[command(subcommand)]
    command: CnpgCommand,
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
    /// Print the ObjectStore CustomResourceDefinition (YAML), generated from the
    /// types the plugin reads; deploy/crd.yaml is this output.
    Crd,
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

/// One JSON object per line: level, ts, logger, msg, then the event's fields.
struct JsonLines;

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
        line.insert("level".into(), level.into());
        line.insert(
            "ts".into(),
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

fn init_logging(level: LogLevel) {
    let l = level.filter();
    let filter = format!("warn,barrelman={l},barrelman_cnpg={l},barrelman_core={l},barrelman_storage={l},barrelman_ops={l}");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .event_format(JsonLines)
        .try_init();
}

/// Runs `barrelman cnpg ...`; returns the exit code.
pub fn run(args: CnpgArgs) -> i32 {
    init_logging(args.log_level);
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
            return rt.block_on(barrelman_cnpg::healthcheck(&args.plugin_path));
        }
        CnpgCommand::Client(client) => return rt.block_on(run_client(client)),
        CnpgCommand::Instance => Role::Instance,
        CnpgCommand::Restore => Role::Restore,
        CnpgCommand::Crd => {
            // On stdout only (logs go to stderr): meant for `> deploy/crd.yaml`.
            print!("{}", barrelman_operator::crd::object_store_crd_yaml());
            return crate::exit::SUCCESS;
        }
    };
    let settings =
        match Settings::from_vars(role, |name| std::env::var(name).ok(), &args.plugin_path) {
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
