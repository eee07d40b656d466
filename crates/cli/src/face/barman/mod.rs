//! The barman-cloud command lines: when the binary is invoked as one of
//! [`TOOL_NAMES`] it parses their arguments the way argparse does (interleaved
//! options, `--opt=value`, unique-prefix abbreviations, greedy `--tags`), turns them
//! into the command layer's requests and exits with barman-cloud's codes. The flags
//! themselves are declared in [`args`].

mod args;

use self::args::*;
use crate::cmd::{self, probe, RuntimeKind};
use crate::errors::InputError;
use crate::exit;
use crate::flags;
use crate::target::{self, CloudFlags, Target};
use anyhow::Result;
use barrelman_core::Compression;
use barrelman_ops::wal::{ArchiveRequest, RestoreRequest};
use barrelman_storage::UploadOptions;
use clap::Parser;
use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;

/// The barman version whose command lines and output we reproduce. CloudNativePG
/// reads `--version` to decide which flags it may pass.
pub(crate) const BARMAN_VERSION: &str = "3.19.1";

/// The tools this binary answers as.
pub(crate) const TOOL_NAMES: [&str; 9] = [
    "barman-cloud-wal-archive",
    "barman-cloud-wal-restore",
    "barman-cloud-check-wal-archive",
    "barman-cloud-backup",
    "barman-cloud-restore",
    "barman-cloud-backup-list",
    "barman-cloud-backup-show",
    "barman-cloud-backup-keep",
    "barman-cloud-backup-delete",
];

/// Runs the barman-cloud tool `prog` with `args` (without argv[0]); returns the exit code.
pub(crate) fn run(prog: &str, args: Vec<OsString>) -> i32 {
    use RuntimeKind::{CurrentThread, MultiThread};
    let Some(prog) = TOOL_NAMES.iter().copied().find(|n| *n == prog) else {
        eprintln!("{prog}: this barman-cloud tool is not implemented by barrelman yet");
        return exit::GENERAL_ERROR;
    };
    match prog {
        "barman-cloud-wal-archive" => launch(prog, args, CurrentThread, wal_archive),
        "barman-cloud-wal-restore" => launch(prog, args, CurrentThread, |cli| {
            with_target(cli, wal_restore)
        }),
        "barman-cloud-check-wal-archive" => launch(prog, args, CurrentThread, check_wal_archive),
        "barman-cloud-backup" => launch(prog, args, MultiThread, |cli| with_target(cli, backup)),
        "barman-cloud-restore" => launch(prog, args, MultiThread, |cli| with_target(cli, restore)),
        "barman-cloud-backup-list" => launch(prog, args, CurrentThread, |cli| {
            with_target(cli, backup_list)
        }),
        "barman-cloud-backup-show" => launch(prog, args, CurrentThread, |cli| {
            with_target(cli, backup_show)
        }),
        "barman-cloud-backup-keep" => launch(prog, args, CurrentThread, |cli| {
            with_target(cli, backup_keep)
        }),
        "barman-cloud-backup-delete" => launch(prog, args, CurrentThread, |cli| {
            with_target(cli, backup_delete)
        }),
        _ => {
            eprintln!("{prog}: this barman-cloud tool is not implemented by barrelman yet");
            exit::GENERAL_ERROR
        }
    }
}

/// A barman-cloud tool's parsed command line: every tool names its archive with
/// `DEST SERVER` and has the common flags; the tools that upload have the upload
/// flags too.
trait ToolArgs: Parser {
    /// The common flags.
    fn common(&self) -> &CommonArgs;
    /// The `DEST` (or `SOURCE`) URL and the server name.
    fn archive(&self) -> (&str, &str);
    /// Tags and encryption, for the tools that upload.
    fn upload(&self) -> Option<&UploadFlags> {
        None
    }

    /// The archive the positionals and the store flags name.
    fn target(&self) -> Result<Target> {
        let common = self.common();
        let cloud = match self.upload() {
            Some(upload) => CloudFlags {
                encryption: upload.encryption.clone(),
                sse_kms_key_id: upload.sse_kms_key_id.clone(),
                encryption_scope: upload.encryption_scope.clone(),
                kms_key_name: upload.kms_key_name.clone(),
                ..common.cloud()
            },
            None => common.cloud(),
        };
        let (url, server) = self.archive();
        target::from_barman(url, server, &cloud)
    }
}

macro_rules! tool_args {
    ($($t:ty: $url:ident $(, $upload:ident)?;)*) => {
        $(impl ToolArgs for $t {
            fn common(&self) -> &CommonArgs {
                &self.common
            }
            fn archive(&self) -> (&str, &str) {
                (&self.$url, &self.server_name)
            }
            $(fn upload(&self) -> Option<&UploadFlags> {
                Some(&self.$upload)
            })?
        })*
    };
}

tool_args! {
    WalArchiveCli: destination_url, upload;
    WalRestoreCli: source_url;
    CheckWalArchiveCli: destination_url;
    BackupCli: destination_url, upload;
    RestoreCli: source_url;
    BackupListCli: source_url;
    BackupShowCli: source_url;
    BackupKeepCli: source_url;
    BackupDeleteCli: source_url;
}

/// Parses `args` as `prog`'s command line and runs `job` with it.
fn launch<T, F>(
    prog: &'static str,
    args: Vec<OsString>,
    runtime: RuntimeKind,
    job: impl FnOnce(T) -> F,
) -> i32
where
    T: ToolArgs,
    F: Future<Output = Result<i32>>,
{
    match parse::<T>(prog, args) {
        Ok(cli) => cmd::run_to_exit(cli.common().verbosity(), runtime, || job(cli)),
        Err(code) => code,
    }
}

/// Resolves the tool's archive; answers `-t` with the connectivity test, else runs
/// `job` on it.
async fn with_target<T, F, Fut>(cli: T, job: F) -> Result<i32>
where
    T: ToolArgs,
    F: FnOnce(Target, T) -> Fut,
    Fut: Future<Output = Result<i32>>,
{
    let target = cli.target()?;
    if cli.common().test {
        return probe::connectivity_test(&target).await;
    }
    job(target, cli).await
}

impl CommonArgs {
    /// The store flags every tool has.
    fn cloud(&self) -> CloudFlags {
        CloudFlags {
            cloud_provider: Some(self.cloud_provider.clone()),
            endpoint_url: self.endpoint_url.clone(),
            aws_profile: self.aws_profile.clone(),
            read_timeout: self.read_timeout.map(|s| s as f64),
            addressing_style: self.addressing_style.clone(),
            azure_credential: self.azure_credential.clone(),
            ..Default::default()
        }
    }

    /// `-v` count minus `-q` count.
    fn verbosity(&self) -> i32 {
        i32::from(self.verbose) - i32::from(self.quiet)
    }
}

impl UploadFlags {
    /// `--tag` then the deprecated `--tags`.
    fn tags(&self) -> Vec<(String, String)> {
        flags::all_tags(&self.tag, self.tags.as_deref())
    }
}

/// Parses like argparse: help and version exit 0, usage errors exit 3.
fn parse<T: Parser>(prog: &'static str, args: Vec<OsString>) -> Result<T, i32> {
    // argparse's rules, for every tool: unique prefixes of long options, the last of a
    // repeated option wins, `-1` is a value, and `--help` without `-h` (`-h` is
    // barman-cloud-backup's --host).
    let cmd = T::command()
        .name(prog)
        .bin_name(prog)
        .version(BARMAN_VERSION)
        .infer_long_args(true)
        .args_override_self(true)
        .allow_negative_numbers(true)
        .disable_help_flag(true);
    let mut argv = vec![OsString::from(prog)];
    argv.extend(args);
    match cmd
        .try_get_matches_from(argv)
        .and_then(|m| T::from_arg_matches(&m))
    {
        Ok(v) => Ok(v),
        Err(e) => Err(super::parse_refusal(e)),
    }
}

/// barman-cloud-wal-archive. Like barman, an invalid WAL name is refused (exit 3)
/// before anything else, -t included. Unlike barman, -t needs no WAL path (barman
/// 3.19.1 exits 1 without one).
async fn wal_archive(cli: WalArchiveCli) -> Result<i32> {
    if let Some(path) = &cli.wal_path {
        let base = std::path::Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        barrelman_core::wal::WalName::parse(&base)?;
    }
    with_target(cli, archive_wal).await
}

async fn archive_wal(mut target: Target, cli: WalArchiveCli) -> Result<i32> {
    // Azure's upload limits: flags of wal-archive only.
    if let barrelman_storage::ProviderSettings::Azure(az) = &mut target.settings.provider {
        az.max_block_size = cli.max_block_size;
        az.max_concurrency = cli.max_concurrency.map(|n| n as usize);
        az.max_single_put_size = cli.max_single_put_size;
    }
    let Some(wal_path) = cli.wal_path.clone() else {
        tracing::error!("no WAL path given: pass the value of '%p' after the server name");
        return Ok(exit::FAILURE);
    };
    let compression = flags::chosen_compression(&[
        (cli.gzip, Compression::Gzip),
        (cli.bzip2, Compression::Bzip2),
        (cli.xz, Compression::Xz),
        (cli.snappy, Compression::Snappy),
        (cli.zstd, Compression::Zstd),
        (cli.lz4, Compression::Lz4),
    ]);
    let level = cli
        .compression_level
        .map(|req| flags::clamp_level(compression, req));
    let history = if cli.history_tag.is_empty() && cli.history_tags.is_none() {
        None
    } else {
        Some(flags::all_tags(
            &cli.history_tag,
            cli.history_tags.as_deref(),
        ))
    };
    let req = ArchiveRequest {
        wal_path: PathBuf::from(wal_path),
        upload: UploadOptions {
            compression: Some(compression),
            level,
            tags: cli.upload.tags(),
        },
        history_tags: history,
        pgdata: None,
        max_parallel: 1,
        spool_dir: None,
        must_be_empty: None,
    };
    cmd::wal::archive(&target, req).await?;
    Ok(exit::SUCCESS)
}

async fn wal_restore(target: Target, cli: WalRestoreCli) -> Result<i32> {
    let parallel = cli.parallel.max(0) as usize;
    let req = RestoreRequest {
        wal_name: cli.wal_name,
        dest: PathBuf::from(cli.wal_dest),
        allow_partial: !cli.no_partial,
        parallel,
        spool_dir: (parallel > 1).then_some(cli.spool_dir),
    };
    cmd::wal::restore(&target, &req).await?;
    Ok(exit::SUCCESS)
}

async fn check_wal_archive(cli: CheckWalArchiveCli) -> Result<i32> {
    let target = cli.target()?;
    cmd::wal::check_wal_archive(&target, cli.timeline, cli.common.test).await
}

async fn backup(target: Target, cli: BackupCli) -> Result<i32> {
    if cli.snapshot_instance.is_some() || !cli.snapshot_disk.is_empty() {
        return Err(InputError("snapshot backups are not supported by barrelman".into()).into());
    }
    let compression = flags::chosen_compression(&[
        (cli.gzip, Compression::Gzip),
        (cli.bzip2, Compression::Bzip2),
        (cli.snappy, Compression::Snappy),
        (cli.lz4, Compression::Lz4),
    ]);
    let opts = barrelman_ops::backup::BackupOptions {
        compression,
        level: None,
        immediate_checkpoint: cli.immediate_checkpoint,
        jobs: cli.jobs as usize,
        max_archive_size: cli.max_archive_size.min(1 << 40),
        min_chunk_size: cli.min_chunk_size,
        name: cli.name.clone(),
        tags: cli.upload.tags(),
        wal_wait: flags::wal_wait(None),
        max_bandwidth: cli.max_bandwidth,
    };
    // barman hands the port to libpq as text; one that is not a number is a failure
    // to connect (exit 1), not a usage error.
    let port = match cli.port.as_deref().map(str::trim) {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| crate::errors::BaseBackupError::BadPort(p.to_string()))?,
        ),
    };
    let connect = flags::postgres(cli.host, port, cli.user, cli.dbname, None);
    cmd::backup::backup(&target, &connect, &opts).await?;
    Ok(exit::SUCCESS)
}

async fn restore(target: Target, cli: RestoreCli) -> Result<i32> {
    if cli.snapshot_recovery_instance.is_some() {
        return Err(InputError("snapshot recovery is not supported by barrelman".into()).into());
    }
    let opts = barrelman_ops::restore::RestoreOptions {
        backup: cli.backup_id.clone(),
        target: flags::target_choice(
            cli.target_time.as_deref(),
            cli.target_lsn.as_deref(),
            cli.target_tli.as_deref(),
        )?,
        destination: PathBuf::from(&cli.recovery_dir),
        tablespace_map: flags::tablespace_map(&cli.tablespace)?,
        jobs: 4,
    };
    // Like barman-cloud-restore: no recovery settings, and nothing printed; the
    // caller configures recovery.
    cmd::restore::restore(&target, &opts, None).await?;
    Ok(exit::SUCCESS)
}

async fn backup_list(target: Target, cli: BackupListCli) -> Result<i32> {
    // barman prints JSON for any --format but console.
    let format = if cli.format == "console" {
        cmd::catalog::ListFormat::BarmanConsole
    } else {
        cmd::catalog::ListFormat::Json
    };
    cmd::catalog::list(&target, format).await?;
    Ok(exit::SUCCESS)
}

async fn backup_show(target: Target, cli: BackupShowCli) -> Result<i32> {
    // barman prints JSON for any --format but console.
    let format = if cli.format == "console" {
        cmd::catalog::ShowFormat::Text
    } else {
        cmd::catalog::ShowFormat::Json
    };
    cmd::catalog::show(&target, &cli.backup_id, format).await?;
    Ok(exit::SUCCESS)
}

async fn backup_keep(target: Target, cli: BackupKeepCli) -> Result<i32> {
    use cmd::catalog::KeepAction;
    let action = match (cli.release, cli.status, cli.target) {
        (true, _, _) => KeepAction::Release,
        (_, true, _) => KeepAction::Status,
        (_, _, Some(t)) => KeepAction::Set(t),
        _ => {
            let msg = "one of -r, -s or --target is required";
            return Err(InputError(msg.into()).into());
        }
    };
    cmd::catalog::keep(&target, &cli.backup_id, action).await?;
    Ok(exit::SUCCESS)
}

async fn backup_delete(target: Target, cli: BackupDeleteCli) -> Result<i32> {
    use barrelman_ops::delete::Selection;
    let selection = match (cli.backup_id, cli.retention_policy) {
        (Some(id), _) => Selection::Backup(id),
        (None, Some(p)) => Selection::Policy(p.parse::<barrelman_core::retention::Policy>()?),
        (None, None) => return Err(InputError("one of -b or -r is required".into()).into()),
    };
    let delete = cmd::delete::DeleteFlags {
        minimum_redundancy: cli.minimum_redundancy,
        dry_run: cli.dry_run,
        // barman's tool has no --force: a STARTED backup younger than a day is
        // refused there (see BARMAN_COMPAT.md).
        force: false,
        // Clamped to 1..=1000 as barman does.
        batch_size: cli
            .batch_size
            .map(|n| n.clamp(1, barrelman_storage::objects::MAX_DELETE_BATCH as i64) as usize),
    };
    cmd::delete::delete(&target, selection, delete).await?;
    Ok(exit::SUCCESS)
}

#[cfg(test)]
#[path = "../../fuzz_barman.rs"]
mod fuzz;
