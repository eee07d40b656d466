//! The native `barrelman` command line. Each command takes the archive either as
//! barman's `DEST SERVER` positionals with the same cloud flags, or as
//! `--config OBJECTSTORE.yaml --server-name NAME [--secrets-dir DIR]`.

use crate::exit::{self, InputError};
use crate::output::outln;
use crate::target::{CloudFlags, Target};
use crate::walops::{self, ArchiveRequest, RestoreRequest};
use anyhow::{Context, Result};
use barrelman_core::Compression;
use barrelman_storage::UploadOptions;
use clap::{ArgAction, Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "barrelman",
    version,
    infer_long_args = true,
    about = "Continuous backup and point-in-time recovery for PostgreSQL on object storage, \
                   in barman-cloud's layout."
)]
struct Cli {
    /// More output (-v info, -vv debug).
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count, global = true)]
    verbose: u8,
    /// Less output.
    #[arg(short = 'q', long = "quiet", action = ArgAction::Count, global = true)]
    quiet: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Archive one WAL file (use as archive_command: `barrelman wal-archive ... %p`).
    WalArchive(WalArchiveArgs),
    /// Restore one WAL file (use as restore_command: `barrelman wal-restore ... %f %p`).
    WalRestore(WalRestoreArgs),
    /// Check that the WAL archive of a server is empty (exit 1 if not).
    CheckEmpty(CheckEmptyArgs),
    /// Take a base backup of a running PostgreSQL into the archive.
    Backup(BackupArgs),
    /// Restore a base backup into an empty directory, ready for point-in-time recovery.
    Restore(RestoreArgs),
    /// List the backups: a table with sizes, WAL range and keep status, or barman's JSON.
    List(ListArgs),
    /// Show one backup (id, name, first or last): text, or barman's JSON.
    Show(ShowArgs),
    /// Keep a backup from retention (full or standalone), show or release the mark.
    Keep(KeepArgs),
    /// Delete one backup, or every backup a retention policy makes obsolete, with its WAL.
    Delete(DeleteArgs),
    /// Check that backups can be restored (exit 1 naming the first missing object).
    Verify(VerifyArgs),
    /// Report what is wrong with an archive (WAL not arriving, foreign WAL, a second
    /// cluster, unrestorable backups, access) and, with --postgres, with the server's
    /// archiving; each finding with its fix.
    Doctor(DoctorArgs),
    /// CloudNativePG plugin sidecar: `cnpg instance`, `cnpg restore`, `cnpg healthcheck unix`.
    Cnpg(crate::cnpgcmd::CnpgArgs),
    /// Create the barman-cloud-* links to this binary in DIR.
    InstallLinks {
        /// Directory for the links (created if missing).
        dir: PathBuf,
    },
}

/// Which archive: barman positionals, or an ObjectStore manifest.
#[derive(Args, Debug, Clone)]
struct StoreArgs {
    /// ObjectStore manifest (apiVersion barmancloud.cnpg.io/v1) to read the archive settings from.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Server name (the folder under the destination path); required with --config.
    #[arg(long)]
    server_name: Option<String>,
    /// Directory with the manifest's secrets, laid out like mounted Secrets: DIR/<secret>/<key>.
    #[arg(long)]
    secrets_dir: Option<PathBuf>,
    /// S3 endpoint URL (overrides the manifest's endpointURL).
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Cloud provider of DEST (aws-s3, azure-blob-storage, google-cloud-storage).
    #[arg(long)]
    cloud_provider: Option<String>,
    /// S3 addressing style: auto, virtual or path.
    #[arg(long)]
    addressing_style: Option<String>,
    /// Seconds without data before a request is retried.
    #[arg(long)]
    read_timeout: Option<f64>,
}

impl StoreArgs {
    /// Resolves the archive and returns the positionals that remain.
    fn resolve(
        &self,
        positionals: &[String],
        wanted: usize,
        usage: &str,
    ) -> Result<(Target, Vec<String>)> {
        let mut target;
        let rest;
        if let Some(config) = &self.config {
            let server = self.server_name.as_deref().ok_or_else(|| {
                InputError("--server-name is required with --config (it is the folder under destinationPath)".into())
            })?;
            target = Target::from_manifest(config, server, self.secrets_dir.as_deref())?;
            rest = positionals.to_vec();
        } else {
            if positionals.len() < 2 {
                return Err(InputError(format!(
                    "give the archive as DEST SERVER positionals or with --config FILE --server-name NAME; usage: {usage}"
                ))
                .into());
            }
            let flags = CloudFlags {
                cloud_provider: self.cloud_provider.clone(),
                endpoint_url: self.endpoint_url.clone(),
                read_timeout: self.read_timeout,
                addressing_style: self.addressing_style.clone(),
                ..Default::default()
            };
            target = Target::from_barman(&positionals[0], &positionals[1], &flags)?;
            rest = positionals[2..].to_vec();
        }
        if self.config.is_some() && self.endpoint_url.is_some() {
            target.options.endpoint_url = self.endpoint_url.clone();
        }
        if rest.len() != wanted {
            return Err(InputError(format!("wrong number of arguments; usage: {usage}")).into());
        }
        Ok((target, rest))
    }
}

#[derive(Args, Debug)]
struct WalArchiveArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// [DEST SERVER] WAL_PATH
    #[arg(num_args = 1..=3)]
    args: Vec<String>,
    /// WAL compression: none, gzip, bzip2, xz, snappy, zstd, lz4 (default: the manifest's wal.compression, else none).
    #[arg(long)]
    compression: Option<String>,
    /// Compression level: an integer, or low, medium, high.
    #[arg(long, allow_negative_numbers = true)]
    compression_level: Option<String>,
    /// PGDATA: enables the empty-archive guard (.check-empty-wal-archive) and parallel archiving of .ready files.
    #[arg(long)]
    pgdata: Option<PathBuf>,
    /// Upload up to N WAL files per call (default: the manifest's wal.maxParallel, else 1).
    #[arg(long)]
    max_parallel: Option<usize>,
    /// Spool for parallel archive markers (default: $SPOOL_DIRECTORY or /var/tmp/walrestore).
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// Object tag KEY,VALUE (repeatable; added to the manifest's tags).
    #[arg(long = "tag", action = ArgAction::Append)]
    tag: Vec<String>,
}

#[derive(Args, Debug)]
struct WalRestoreArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// [DEST SERVER] WAL_NAME WAL_DEST
    #[arg(num_args = 2..=4)]
    args: Vec<String>,
    /// Do not serve NAME.partial for NAME.
    #[arg(long)]
    no_partial: bool,
    /// Fetch up to N WAL files per call, the next ones into the spool (default: the manifest's wal.maxParallel, else 1).
    #[arg(long)]
    parallel: Option<usize>,
    /// Spool for prefetched WAL files (default: $SPOOL_DIRECTORY or /var/tmp/walrestore).
    #[arg(long)]
    spool_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct CheckEmptyArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// [DEST SERVER]
    #[arg(num_args = 0..=2)]
    args: Vec<String>,
    /// Only WAL of this timeline or newer makes the check fail.
    #[arg(long)]
    timeline: Option<u32>,
}

#[derive(Args, Debug)]
struct BackupArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// [DEST SERVER]
    #[arg(num_args = 0..=2)]
    args: Vec<String>,
    /// none, gzip, bzip2, snappy or lz4 (default: the manifest's data.compression, else none).
    #[arg(long)]
    compression: Option<String>,
    /// Compression level: an integer, or low, medium, high.
    #[arg(long, allow_negative_numbers = true)]
    compression_level: Option<String>,
    #[command(flatten)]
    pg: PgArgs,
    /// Ask for an immediate checkpoint (default: the manifest's data.immediateCheckpoint).
    #[arg(long)]
    immediate_checkpoint: bool,
    /// Parallel tar workers (default: the manifest's data.jobs, else 2).
    #[arg(long)]
    jobs: Option<usize>,
    /// Close a tar part once it is this large (default 100GB).
    #[arg(long, default_value = "100GB")]
    max_archive_size: String,
    /// A name to find this backup by.
    #[arg(long)]
    name: Option<String>,
    /// Object tag KEY,VALUE (repeatable; added to the manifest's tags).
    #[arg(long = "tag", action = ArgAction::Append)]
    tag: Vec<String>,
    /// Upload at most this much per second (bytes, or with KB, MB, GB).
    #[arg(long)]
    max_bandwidth: Option<String>,
    /// Seconds to wait for the backup's last WAL segment to reach the archive before
    /// the backup is marked FAILED (default: $BARRELMAN_WAL_WAIT, else 120).
    #[arg(long)]
    wal_wait: Option<u64>,
}

#[derive(Args, Debug)]
struct RestoreArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// [DEST SERVER] DESTINATION
    #[arg(num_args = 1..=3)]
    args: Vec<String>,
    /// Backup id, name, first, last or auto (default: auto with a time or LSN target, else last).
    #[arg(long)]
    backup: Option<String>,
    /// Tablespace relocation NAME:LOCATION (repeatable).
    #[arg(long = "tablespace", action = ArgAction::Append)]
    tablespace: Vec<String>,
    /// Parts downloaded and extracted at once.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Recover up to this time (e.g. '2026-11-24 20:16:25+00').
    #[arg(long)]
    target_time: Option<String>,
    /// Recover up to this LSN.
    #[arg(long)]
    target_lsn: Option<String>,
    /// Recover up to this transaction id.
    #[arg(long)]
    target_xid: Option<String>,
    /// Recover up to this restore point.
    #[arg(long)]
    target_name: Option<String>,
    /// Stop as soon as the backup is consistent.
    #[arg(long)]
    target_immediate: bool,
    /// Timeline to recover along: a number, current or latest.
    #[arg(long)]
    target_timeline: Option<String>,
    /// At the target: promote, pause or shutdown.
    #[arg(long, value_parser = ["promote", "pause", "shutdown"])]
    target_action: Option<String>,
    /// Stop just before the target instead of just after it.
    #[arg(long)]
    target_exclusive: bool,
    /// Do not write restore_command and recovery.signal (barman-cloud-restore's behaviour).
    #[arg(long)]
    no_recovery_config: bool,
}

#[derive(Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// [DEST SERVER]
    #[arg(num_args = 0..=2)]
    args: Vec<String>,
    /// table or json (barman-cloud-backup-list's JSON).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

#[derive(Args, Debug)]
struct ShowArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// [DEST SERVER] BACKUP_ID
    #[arg(num_args = 1..=3)]
    args: Vec<String>,
    /// text or json (barman-cloud-backup-show's JSON).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("action").required(true).multiple(false)))]
struct KeepArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// [DEST SERVER] BACKUP_ID
    #[arg(num_args = 1..=3)]
    args: Vec<String>,
    /// Keep the backup: full (with all WAL after it) or standalone (consistency only).
    #[arg(long, group = "action", value_parser = ["full", "standalone"])]
    target: Option<String>,
    /// Print the keep status.
    #[arg(long, group = "action")]
    status: bool,
    /// Release the keep mark.
    #[arg(long, group = "action")]
    release: bool,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// [DEST SERVER]
    #[arg(num_args = 0..=2)]
    args: Vec<String>,
    /// Delete this backup (id, name, first or last).
    #[arg(long, conflicts_with = "retention_policy")]
    backup: Option<String>,
    /// 'REDUNDANCY n', 'RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS' (default: the
    /// manifest's retentionPolicy, e.g. 30d).
    #[arg(long)]
    retention_policy: Option<String>,
    /// Never go below this many backups.
    #[arg(long, default_value_t = 0)]
    minimum_redundancy: u32,
    /// Print what would be deleted and why; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --backup: delete a STARTED backup even if it began less than 24 hours ago
    /// and may still be running (it then ends FAILED).
    #[arg(long)]
    force: bool,
    /// Objects per bulk delete request (1-1000; default 1000).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch_size: Option<u16>,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// [DEST SERVER] [BACKUP_ID]
    #[arg(num_args = 0..=3)]
    args: Vec<String>,
    /// Verify every backup (the default without BACKUP_ID).
    #[arg(long)]
    all: bool,
    /// Also download and read every tar part and WAL segment.
    #[arg(long)]
    deep: bool,
}

/// Where PostgreSQL is; unset parts come from the libpq environment.
#[derive(Args, Debug, Clone)]
struct PgArgs {
    /// PostgreSQL host or socket directory (default: PGHOST, then /var/run/postgresql).
    #[arg(long)]
    host: Option<String>,
    /// PostgreSQL port (default: PGPORT, then 5432).
    #[arg(long)]
    port: Option<u16>,
    /// PostgreSQL user (default: PGUSER, then the OS user).
    #[arg(long)]
    user: Option<String>,
    /// Database name or conninfo string.
    #[arg(long)]
    dbname: Option<String>,
}

impl PgArgs {
    fn given(&self) -> bool {
        self.host.is_some() || self.port.is_some() || self.user.is_some() || self.dbname.is_some()
    }

    fn connect(self, application_name: &str) -> barrelman_postgres::session::ConnectOptions {
        barrelman_postgres::session::ConnectOptions {
            host: self.host,
            port: self.port,
            user: self.user,
            dbname: self.dbname,
            application_name: Some(application_name.into()),
        }
    }
}

#[derive(Args, Debug)]
struct DoctorArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Also check the PostgreSQL server's archiving against this archive (implied by
    /// --host, --port, --user or --dbname; else the libpq environment says where).
    #[arg(long)]
    postgres: bool,
    #[command(flatten)]
    pg: PgArgs,
    /// [DEST SERVER]
    #[arg(num_args = 0..=2)]
    args: Vec<String>,
}

/// CloudNativePG's `30d` / `4w` / `6m` as barman's policy text.
fn cnpg_policy(p: &str) -> Option<String> {
    let (n, unit) = p.split_at(p.len().checked_sub(1)?);
    let n: u32 = n.parse().ok().filter(|n| *n > 0)?;
    let unit = match unit {
        "d" => "DAYS",
        "w" => "WEEKS",
        "m" => "MONTHS",
        _ => return None,
    };
    Some(format!("RECOVERY WINDOW OF {n} {unit}"))
}

/// Runs the native CLI; returns the exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(std::iter::once(OsString::from("barrelman")).chain(args)) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => exit::SUCCESS,
                _ => exit::INPUT_ERROR,
            };
        }
    };
    // The plugin sidecar has its own logging (JSON lines) and exit codes.
    let cli = match cli.command {
        Command::Cnpg(a) => return crate::cnpgcmd::run(a),
        _ => cli,
    };
    // Backups and restores are long: both threads of the runtime work for them.
    let long = matches!(cli.command, Command::Backup(_) | Command::Restore(_));
    // WARNING by default, as barman: progress lines need -v (a terminal gets a bar).
    crate::logging::init(i32::from(cli.verbose) - i32::from(cli.quiet));
    let rt = if long {
        crate::multi_thread_runtime()
    } else {
        crate::runtime()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("barrelman: cannot start: {e}");
            return exit::GENERAL_ERROR;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::WalArchive(a) => wal_archive(a).await,
            Command::WalRestore(a) => wal_restore(a).await,
            Command::CheckEmpty(a) => check_empty(a).await,
            Command::Backup(a) => backup(a).await,
            Command::Delete(a) => {
                let usage = "barrelman delete [DEST SERVER | --config F --server-name N] (--backup ID | --retention-policy P)";
                let (target, _) = a.store.resolve(&a.args, 0, usage)?;
                use barrelman_ops::delete::Selection;
                let selection = if let Some(id) = a.backup {
                    Selection::Backup(id)
                } else {
                    let text = match a.retention_policy {
                        Some(p) => p,
                        None => target
                            .manifest
                            .as_ref()
                            .and_then(|m| m.spec.retention_policy.as_deref())
                            .and_then(cnpg_policy)
                            .ok_or_else(|| {
                                InputError("give --backup ID or --retention-policy (or a retentionPolicy in the manifest)".into())
                            })?,
                    };
                    Selection::Policy(
                        text.parse()
                            .map_err(|e: barrelman_core::retention::InvalidPolicy| InputError(e.to_string()))?,
                    )
                };
                let flags = crate::catalogcmd::DeleteFlags {
                    minimum_redundancy: a.minimum_redundancy,
                    dry_run: a.dry_run,
                    force: a.force,
                    batch_size: a.batch_size.map(usize::from),
                };
                crate::catalogcmd::delete(&target, selection, flags).await
            }
            Command::Verify(a) => {
                let usage = "barrelman verify [DEST SERVER | --config F --server-name N] [BACKUP_ID | --all] [--deep]";
                let wanted_positionals = if a.store.config.is_some() { a.args.len() } else { a.args.len().saturating_sub(2) };
                let (target, rest) = a.store.resolve(&a.args, wanted_positionals.min(1), usage)?;
                let which = if a.all { None } else { rest.first().map(String::as_str) };
                crate::catalogcmd::verify(&target, which, a.deep).await
            }
            Command::Doctor(a) => {
                let usage = "barrelman doctor [DEST SERVER | --config F --server-name N] [--postgres | --host H --port P …]";
                let (target, _) = a.store.resolve(&a.args, 0, usage)?;
                let server = (a.postgres || a.pg.given()).then(|| a.pg.connect("barrelman_doctor"));
                crate::catalogcmd::doctor(&target, server).await
            }
            Command::List(a) => {
                let usage = "barrelman list [DEST SERVER | --config F --server-name N]";
                let (target, _) = a.store.resolve(&a.args, 0, usage)?;
                crate::catalogcmd::native_list(&target, &a.format).await
            }
            Command::Show(a) => {
                let usage = "barrelman show [DEST SERVER | --config F --server-name N] BACKUP_ID";
                let (target, rest) = a.store.resolve(&a.args, 1, usage)?;
                crate::catalogcmd::show(&target, &rest[0], &a.format).await
            }
            Command::Keep(a) => {
                let usage = "barrelman keep [DEST SERVER | --config F --server-name N] BACKUP_ID";
                let (target, rest) = a.store.resolve(&a.args, 1, usage)?;
                let action = match (a.target, a.status) {
                    (Some(t), _) => crate::catalogcmd::KeepAction::Set(t),
                    (None, true) => crate::catalogcmd::KeepAction::Status,
                    (None, false) => crate::catalogcmd::KeepAction::Release,
                };
                crate::catalogcmd::keep(&target, &rest[0], action).await
            }
            Command::Restore(a) => restore(a).await,
            Command::InstallLinks { dir } => install_links(&dir),
            Command::Cnpg(_) => unreachable!("cnpg commands return before the runtime starts"),
        }
    });
    match result {
        Ok(()) => exit::SUCCESS,
        Err(e) => {
            let code = exit::code_for(&e);
            let msg = exit::one_line(&e);
            if code == exit::FAILURE && msg.contains("does not exist in") {
                tracing::info!("{msg}");
            } else {
                // Plain stderr too: native users may run with -q or without a log reader.
                tracing::error!("{msg}");
            }
            code
        }
    }
}

/// The `--compression` flag, else the manifest's setting, else none.
fn compression_choice(flag: Option<&str>, manifest: Option<&str>) -> Result<Compression> {
    match flag.or(manifest) {
        None => Ok(Compression::None),
        Some(c) => Ok(c
            .parse::<Compression>()
            .map_err(|e| InputError(e.to_string()))?),
    }
}

/// The manifest's `tags` followed by the `--tag` flags.
fn manifest_tags(target: &Target, flags: &[String]) -> Result<Vec<(String, String)>> {
    let mut tags: Vec<(String, String)> = target
        .manifest
        .as_ref()
        .map(|m| m.spec.configuration.tags.clone().into_iter().collect())
        .unwrap_or_default();
    tags.extend(crate::barman::parse_tags(flags)?);
    Ok(tags)
}

fn default_spool(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| std::env::var_os("SPOOL_DIRECTORY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/tmp/walrestore"))
}

async fn wal_archive(a: WalArchiveArgs) -> Result<()> {
    let (target, rest) = a.store.resolve(
        &a.args,
        1,
        "barrelman wal-archive [DEST SERVER | --config F --server-name N] WAL_PATH",
    )?;
    let wal = target
        .manifest
        .as_ref()
        .and_then(|m| m.spec.configuration.wal.clone());
    let compression = compression_choice(
        a.compression.as_deref(),
        wal.as_ref().and_then(|w| w.compression.as_deref()),
    )?;
    let level = crate::barman::resolve_level(compression, a.compression_level.as_deref())?;
    let tags = manifest_tags(&target, &a.tag)?;
    let history_tags: Option<Vec<(String, String)>> = target
        .manifest
        .as_ref()
        .map(|m| m.spec.configuration.history_tags.clone())
        .filter(|h| !h.is_empty())
        .map(|h| h.into_iter().collect());
    let max_parallel = a
        .max_parallel
        .or(wal
            .as_ref()
            .and_then(|w| w.max_parallel)
            .map(|n| n as usize))
        .unwrap_or(1)
        .max(1);
    let archive = target.open()?;
    let req = ArchiveRequest {
        wal_path: PathBuf::from(&rest[0]),
        upload: UploadOptions {
            compression: Some(compression),
            level,
            tags,
        },
        history_tags,
        pgdata: a.pgdata,
        max_parallel,
        spool_dir: Some(default_spool(a.spool_dir)),
    };
    walops::archive(&archive, &req).await
}

async fn wal_restore(a: WalRestoreArgs) -> Result<()> {
    let (target, rest) = a.store.resolve(
        &a.args,
        2,
        "barrelman wal-restore [DEST SERVER | --config F --server-name N] WAL_NAME WAL_DEST",
    )?;
    let parallel = a
        .parallel
        .or(target
            .manifest
            .as_ref()
            .and_then(|m| m.spec.configuration.wal.as_ref())
            .and_then(|w| w.max_parallel)
            .map(|n| n as usize))
        .unwrap_or(1);
    let archive = target.open()?;
    let req = RestoreRequest {
        wal_name: rest[0].clone(),
        dest: PathBuf::from(&rest[1]),
        allow_partial: !a.no_partial,
        parallel,
        spool_dir: Some(default_spool(a.spool_dir)),
    };
    walops::restore(&archive, &req).await
}

async fn check_empty(a: CheckEmptyArgs) -> Result<()> {
    let (target, _) = a.store.resolve(
        &a.args,
        0,
        "barrelman check-empty [DEST SERVER | --config F --server-name N]",
    )?;
    let archive = target.open()?;
    archive.check_empty(a.timeline).await?;
    outln!("the WAL archive {} is empty", target.location());
    Ok(())
}

fn install_links(dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the path of this binary")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for name in crate::barman::TOOL_NAMES {
        let link = dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&link)?,
            Ok(_) => anyhow::bail!(
                "{} exists and is not a link; remove it first",
                link.display()
            ),
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("cannot create the link {}", link.display()))?;
        outln!("{} -> {}", link.display(), exe.display());
    }
    Ok(())
}

async fn backup(a: BackupArgs) -> Result<()> {
    let (target, _) = a.store.resolve(
        &a.args,
        0,
        "barrelman backup [DEST SERVER | --config F --server-name N]",
    )?;
    let data = target
        .manifest
        .as_ref()
        .and_then(|m| m.spec.configuration.data.clone());
    let compression = compression_choice(
        a.compression.as_deref(),
        data.as_ref().and_then(|d| d.compression.as_deref()),
    )?;
    if barrelman_ops::plan::tar_suffix(compression).is_none() {
        return Err(InputError(format!(
            "{compression} cannot be used for base backups: use gzip, bzip2, snappy, lz4 or none"
        ))
        .into());
    }
    if let Some(n) = &a.name {
        barrelman_ops::plan::check_backup_name(n).map_err(InputError)?;
    }
    let tags = manifest_tags(&target, &a.tag)?;
    let opts = barrelman_ops::backup::BackupOptions {
        compression,
        level: crate::barman::resolve_level(compression, a.compression_level.as_deref())?,
        immediate_checkpoint: a.immediate_checkpoint
            || data
                .as_ref()
                .and_then(|d| d.immediate_checkpoint)
                .unwrap_or(false),
        jobs: a
            .jobs
            .or(data.as_ref().and_then(|d| d.jobs).map(|j| j as usize))
            .unwrap_or(2)
            .max(1),
        max_archive_size: crate::barman::size_arg("--max-archive-size", &a.max_archive_size)?,
        min_chunk_size: None,
        name: a.name.clone(),
        tags,
        wal_wait: crate::basebackup::wal_wait(a.wal_wait),
        max_bandwidth: a
            .max_bandwidth
            .as_deref()
            .map(|v| crate::barman::size_arg("--max-bandwidth", v))
            .transpose()?,
    };
    let connect = a.pg.connect("barrelman_ops");
    crate::basebackup::backup(&target, &connect, &opts)
        .await
        .map(|_| ())
}

/// Quotes one word for the shell PostgreSQL runs restore_command with.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=,@+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// barrelman's own wal-restore with the same store settings.
fn restore_command(store: &StoreArgs, positionals: &[String]) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the path of this binary")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut words = vec![exe.display().to_string(), "wal-restore".to_string()];
    if let Some(c) = &store.config {
        words.extend(["--config".into(), abs(c).display().to_string()]);
        words.extend([
            "--server-name".into(),
            store.server_name.clone().unwrap_or_default(),
        ]);
        if let Some(d) = &store.secrets_dir {
            words.extend(["--secrets-dir".into(), abs(d).display().to_string()]);
        }
    }
    if let Some(e) = &store.endpoint_url {
        words.extend(["--endpoint-url".into(), e.clone()]);
    }
    if let Some(p) = &store.cloud_provider {
        words.extend(["--cloud-provider".into(), p.clone()]);
    }
    if let Some(a) = &store.addressing_style {
        words.extend(["--addressing-style".into(), a.clone()]);
    }
    if store.config.is_none() {
        words.extend(positionals[..2].iter().cloned());
    }
    let mut cmd: Vec<String> = words.iter().map(|w| shell_word(w)).collect();
    cmd.extend(["%f".into(), "%p".into()]);
    Ok(cmd.join(" "))
}

async fn restore(a: RestoreArgs) -> Result<()> {
    use barrelman_postgres::recovery::{RecoveryTarget, TargetAction};
    let recovery_target = RecoveryTarget {
        time: a.target_time.clone(),
        lsn: a.target_lsn.clone(),
        xid: a.target_xid.clone(),
        name: a.target_name.clone(),
        immediate: a.target_immediate,
        timeline: a.target_timeline.clone(),
        exclusive: a.target_exclusive,
        action: a.target_action.as_deref().map(|s| match s {
            "pause" => TargetAction::Pause,
            "shutdown" => TargetAction::Shutdown,
            _ => TargetAction::Promote,
        }),
    };
    // Before any request: a target PostgreSQL would refuse at start-up must not
    // cost a whole restore first.
    recovery_target
        .validate()
        .map_err(|e| InputError(e.to_string()))?;
    let choice =
        crate::basebackup::target_choice(a.target_time.as_deref(), a.target_lsn.as_deref(), None)?;
    let (target, rest) = a.store.resolve(
        &a.args,
        1,
        "barrelman restore [DEST SERVER | --config F --server-name N] DESTINATION",
    )?;
    let backup = a.backup.clone().unwrap_or_else(|| {
        if choice.time.is_some() || choice.lsn.is_some() {
            "auto".into()
        } else {
            "last".into()
        }
    });
    let mut choice = choice;
    if let Some(t) = a
        .target_timeline
        .as_deref()
        .filter(|t| *t != "latest" && *t != "current")
    {
        choice.tli = Some(
            t.parse()
                .map_err(|_| InputError(format!("invalid --target-timeline '{t}'")))?,
        );
    }
    let opts = barrelman_ops::restore::RestoreOptions {
        backup,
        target: choice,
        destination: PathBuf::from(&rest[0]),
        tablespace_map: crate::basebackup::tablespace_map(&a.tablespace)?,
        jobs: a.jobs.max(1),
    };
    let recovery = if a.no_recovery_config {
        None
    } else {
        Some((restore_command(&a.store, &a.args)?, recovery_target))
    };
    let info = crate::basebackup::restore(&target, &opts, recovery).await?;
    outln!(
        "restored backup {}{} into {}",
        info.backup_id,
        info.backup_name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        opts.destination.display()
    );
    Ok(())
}

#[cfg(test)]
#[path = "fuzz_native.rs"]
mod fuzz;
