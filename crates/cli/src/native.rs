//! The native `barrelman` command line. Each command takes the archive either as
//! barman's `DEST SERVER` positionals with the same cloud flags, or as
//! `--config OBJECTSTORE.yaml --server-name NAME [--secrets-dir DIR]`.

use crate::exit::{self, InputError};
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
    crate::logging::init(i32::from(cli.verbose) - i32::from(cli.quiet));
    let rt = match crate::runtime() {
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
            Command::InstallLinks { dir } => install_links(&dir),
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
    let compression = match a
        .compression
        .as_deref()
        .or(wal.as_ref().and_then(|w| w.compression.as_deref()))
    {
        None => Compression::None,
        Some(c) => c
            .parse::<Compression>()
            .map_err(|e| InputError(e.to_string()))?,
    };
    let level = crate::barman::resolve_level(compression, a.compression_level.as_deref())?;
    let mut tags: Vec<(String, String)> = target
        .manifest
        .as_ref()
        .map(|m| m.spec.configuration.tags.clone().into_iter().collect())
        .unwrap_or_default();
    tags.extend(crate::barman::parse_tags(&a.tag, None)?);
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
    println!("the WAL archive {} is empty", target.location());
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
        println!("{} -> {}", link.display(), exe.display());
    }
    Ok(())
}
