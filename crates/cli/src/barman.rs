//! The barman-cloud command lines: when the binary is invoked as
//! `barman-cloud-wal-archive`, `-wal-restore` or `-check-wal-archive` it parses their
//! arguments the way argparse does (interleaved options, `--opt=value`, unique-prefix
//! abbreviations, greedy `--tags`) and exits with their codes.

use crate::argtypes;
use crate::errors::InputError;
use crate::exit;
use crate::target::{self, CloudFlags, Target};
use anyhow::Result;
use barrelman_core::{Classified, Compression, LevelRequest};
use barrelman_ops::wal::{ArchiveRequest, RestoreRequest};
use barrelman_storage::{StorageError, UploadOptions};
use clap::{ArgAction, ArgGroup, Args, Parser};
use std::ffi::OsString;
use std::path::PathBuf;

/// The barman version whose command lines and output we reproduce. CloudNativePG
/// reads `--version` to decide which flags it may pass.
pub const BARMAN_VERSION: &str = "3.19.1";

/// The tools this binary answers as.
pub const TOOL_NAMES: [&str; 9] = [
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

#[derive(Args, Debug, Clone)]
struct CommonArgs {
    /// Increase output verbosity (e.g., -vv is more than -v).
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    verbose: u8,
    /// Decrease output verbosity (e.g., -qq is less than -q).
    #[arg(short = 'q', long = "quiet", action = ArgAction::Count, conflicts_with = "verbose")]
    quiet: u8,
    /// Test cloud connectivity and exit.
    #[arg(short = 't', long = "test")]
    test: bool,
    /// The cloud provider to use as a storage backend.
    #[arg(long = "cloud-provider", default_value = "aws-s3",
          value_parser = ["aws-s3", "azure-blob-storage", "google-cloud-storage"])]
    cloud_provider: String,
    /// Override default S3 endpoint URL with the given one.
    #[arg(long = "endpoint-url")]
    endpoint_url: Option<String>,
    /// Profile name (e.g. INI section in AWS credentials file).
    #[arg(short = 'P', long = "aws-profile", alias = "profile")]
    aws_profile: Option<String>,
    /// The time in seconds until a timeout is raised when waiting to read from a connection.
    #[arg(long = "read-timeout", value_parser = argtypes::int)]
    read_timeout: Option<i64>,
    /// S3 addressing style.
    #[arg(long = "addressing-style", value_parser = ["auto", "virtual", "path"])]
    addressing_style: Option<String>,
    /// Azure credential type.
    #[arg(long = "azure-credential", aliases = ["credential", "default"],
          value_parser = ["azure-cli", "managed-identity", "default"])]
    azure_credential: Option<String>,
    /// Show this help message and exit.
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

impl CommonArgs {
    fn cloud(&self) -> CloudFlags {
        CloudFlags {
            cloud_provider: Some(self.cloud_provider.clone()),
            endpoint_url: self.endpoint_url.clone(),
            aws_profile: self.aws_profile.clone(),
            read_timeout: self.read_timeout.map(|s| s as f64),
            addressing_style: self.addressing_style.clone(),
            ..Default::default()
        }
    }
    fn verbosity(&self) -> i32 {
        i32::from(self.verbose) - i32::from(self.quiet)
    }
}

/// Tags and server-side encryption of the objects a tool uploads.
#[derive(Args, Debug, Clone)]
struct UploadFlags {
    /// Tag KEY,VALUE added to every uploaded object (repeatable).
    #[arg(long = "tag", action = ArgAction::Append, conflicts_with = "tags",
          value_parser = argtypes::tag)]
    tag: Vec<(String, String)>,
    /// Tags as KEY,VALUE pairs (deprecated, greedy).
    #[arg(long = "tags", num_args = 0.., value_parser = argtypes::legacy_tag)]
    tags: Option<Vec<(String, String)>>,
    /// Server-side encryption (AES256 or aws:kms).
    #[arg(short = 'e', long = "encryption", value_parser = ["AES256", "aws:kms"])]
    encryption: Option<String>,
    /// The AWS KMS key ID for aws:kms encryption.
    #[arg(long = "sse-kms-key-id")]
    sse_kms_key_id: Option<String>,
    /// GCS KMS key name.
    #[arg(long = "kms-key-name")]
    kms_key_name: Option<String>,
    /// Azure encryption scope.
    #[arg(long = "encryption-scope")]
    encryption_scope: Option<String>,
}

#[derive(Parser, Debug)]
#[command(group(ArgGroup::new("compression").multiple(false)))]
struct WalArchiveCli {
    /// URL of the cloud destination, such as a bucket in AWS S3.
    destination_url: String,
    /// The name of the server as configured in Barman.
    server_name: String,
    /// The value of the '%p' keyword (according to 'archive_command').
    wal_path: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
    /// gzip-compress the WAL while uploading to the cloud.
    #[arg(short = 'z', long = "gzip", group = "compression")]
    gzip: bool,
    /// bzip2-compress the WAL while uploading to the cloud.
    #[arg(short = 'j', long = "bzip2", group = "compression")]
    bzip2: bool,
    /// xz-compress the WAL while uploading to the cloud.
    #[arg(long = "xz", group = "compression")]
    xz: bool,
    /// snappy-compress the WAL while uploading to the cloud.
    #[arg(long = "snappy", group = "compression")]
    snappy: bool,
    /// zstd-compress the WAL while uploading to the cloud.
    #[arg(long = "zstd", group = "compression")]
    zstd: bool,
    /// lz4-compress the WAL while uploading to the cloud.
    #[arg(long = "lz4", group = "compression")]
    lz4: bool,
    /// Compression level: an integer, or low, medium, high.
    #[arg(long = "compression-level",
          value_parser = argtypes::compression_level)]
    compression_level: Option<LevelRequest>,
    /// Tag KEY,VALUE for history files (repeatable).
    #[arg(long = "history-tag", action = ArgAction::Append, conflicts_with = "history_tags",
          value_parser = argtypes::tag)]
    history_tag: Vec<(String, String)>,
    /// History tags as KEY,VALUE pairs (deprecated, greedy).
    #[arg(long = "history-tags", num_args = 0.., value_parser = argtypes::legacy_tag)]
    history_tags: Option<Vec<(String, String)>>,
    #[command(flatten)]
    upload: UploadFlags,
    /// Azure: chunk size for block uploads.
    #[arg(long = "max-block-size", value_parser = argtypes::size)]
    max_block_size: Option<u64>,
    /// Azure: parallel uploads per object.
    #[arg(long = "max-concurrency", value_parser = argtypes::positive)]
    max_concurrency: Option<u32>,
    /// Azure: largest single-request upload.
    #[arg(long = "max-single-put-size", value_parser = argtypes::size)]
    max_single_put_size: Option<u64>,
}

#[derive(Parser, Debug)]
struct WalRestoreCli {
    /// URL of the cloud source, such as a bucket in AWS S3.
    source_url: String,
    /// The name of the server as configured in Barman.
    server_name: String,
    /// The value of the '%f' keyword (according to 'restore_command').
    wal_name: String,
    /// The value of the '%p' keyword (according to 'restore_command').
    wal_dest: String,
    #[command(flatten)]
    common: CommonArgs,
    /// Do not download partial WAL files.
    #[arg(long = "no-partial")]
    no_partial: bool,
    /// Download up to this many WAL files at once (the next ones go to the spool).
    #[arg(short = 'p', long = "parallel", default_value_t = 0,
          value_parser = argtypes::int)]
    parallel: i64,
    /// Directory of prefetched WAL files.
    #[arg(long = "spool-dir", default_value = "/var/tmp/walrestore")]
    spool_dir: PathBuf,
}

#[derive(Parser, Debug)]
struct CheckWalArchiveCli {
    /// URL of the cloud destination, such as a bucket in AWS S3.
    destination_url: String,
    /// The name of the server as configured in Barman.
    server_name: String,
    #[command(flatten)]
    common: CommonArgs,
    /// The earliest timeline whose WALs should cause the check to fail.
    #[arg(long = "timeline", value_parser = argtypes::positive)]
    timeline: Option<u32>,
}

#[derive(Parser, Debug)]
#[command(group(ArgGroup::new("compression").multiple(false)))]
struct BackupCli {
    /// URL of the cloud destination, such as a bucket in AWS S3.
    destination_url: String,
    /// The name of the server as configured in Barman.
    server_name: String,
    #[command(flatten)]
    common: CommonArgs,
    /// gzip-compress the backup while uploading to the cloud.
    #[arg(short = 'z', long = "gzip", group = "compression")]
    gzip: bool,
    /// bzip2-compress the backup while uploading to the cloud.
    #[arg(short = 'j', long = "bzip2", group = "compression")]
    bzip2: bool,
    /// snappy-compress the backup while uploading to the cloud.
    #[arg(long = "snappy", group = "compression")]
    snappy: bool,
    /// lz4-compress the backup while uploading to the cloud.
    #[arg(long = "lz4", group = "compression")]
    lz4: bool,
    /// Host or Unix socket for PostgreSQL connection (default: libpq settings).
    #[arg(short = 'h', long = "host")]
    host: Option<String>,
    /// Port for PostgreSQL connection (default: libpq settings).
    #[arg(short = 'p', long = "port")]
    port: Option<String>,
    /// User name for PostgreSQL connection (default: libpq settings).
    #[arg(short = 'U', long = "user")]
    user: Option<String>,
    /// Database name or conninfo string for PostgreSQL connection (default: postgres).
    #[arg(short = 'd', long = "dbname")]
    dbname: Option<String>,
    /// Forces the initial checkpoint to be done as quickly as possible.
    #[arg(long = "immediate-checkpoint")]
    immediate_checkpoint: bool,
    /// Number of parallel workers to copy files during backup.
    #[arg(short = 'J', long = "jobs", default_value = "2", value_parser = argtypes::positive)]
    jobs: u32,
    /// Maximum size of an archive when uploading to cloud storage (default: 100GB).
    #[arg(short = 'S', long = "max-archive-size", default_value = "100GB",
          value_parser = argtypes::size)]
    max_archive_size: u64,
    /// Minimum size of an individual chunk when uploading to cloud storage.
    #[arg(long = "min-chunk-size", value_parser = argtypes::size)]
    min_chunk_size: Option<u64>,
    /// The maximum amount of data to be uploaded per second.
    #[arg(long = "max-bandwidth", value_parser = argtypes::size)]
    max_bandwidth: Option<u64>,
    /// A name which can be used to reference this backup.
    #[arg(short = 'n', long = "name", value_parser = argtypes::backup_name)]
    name: Option<String>,
    #[command(flatten)]
    upload: UploadFlags,
    /// Snapshot backups: not supported by barrelman.
    #[arg(long = "snapshot-instance")]
    snapshot_instance: Option<String>,
    /// Snapshot backups: not supported by barrelman.
    #[arg(long = "snapshot-disk", action = ArgAction::Append)]
    snapshot_disk: Vec<String>,
    #[command(flatten)]
    snapshot: SnapshotBackupFlags,
}

/// Options of barman's snapshot backups. barrelman does not take snapshot backups
/// (`--snapshot-instance`/`--snapshot-disk` are refused); these only tune them, so
/// they are accepted and have no effect, as in barman without a snapshot.
#[derive(Args, Debug, Clone)]
struct SnapshotBackupFlags {
    /// Zone of the disks (deprecated: replaced by --gcp-zone).
    #[arg(long = "snapshot-zone")]
    snapshot_zone: Option<String>,
    /// GCP project for snapshots (deprecated: replaced by --gcp-project).
    #[arg(long = "snapshot-gcp-project")]
    snapshot_gcp_project: Option<String>,
    /// GCP project under which disk snapshots should be stored.
    #[arg(long = "gcp-project")]
    gcp_project: Option<String>,
    /// Zone of the disks from which snapshots should be taken.
    #[arg(long = "gcp-zone")]
    gcp_zone: Option<String>,
    /// AWS region of the instance and disks.
    #[arg(long = "aws-region")]
    aws_region: Option<String>,
    /// Seconds to wait for AWS snapshots.
    #[arg(long = "aws-await-snapshots-timeout", value_parser = argtypes::positive)]
    aws_await_snapshots_timeout: Option<u32>,
    /// Lock mode of AWS snapshots.
    #[arg(long = "aws-snapshot-lock-mode", value_parser = ["governance", "compliance"])]
    aws_snapshot_lock_mode: Option<String>,
    /// Cool-off period (hours) of a compliance lock.
    #[arg(long = "aws-snapshot-lock-cool-off-period", value_parser = argtypes::cool_off_hours)]
    aws_snapshot_lock_cool_off_period: Option<u32>,
    /// Expiration date of the snapshot lock.
    #[arg(long = "aws-snapshot-lock-expiration-date", value_parser = argtypes::expiration_date,
          conflicts_with = "aws_snapshot_lock_duration")]
    aws_snapshot_lock_expiration_date: Option<String>,
    /// Duration (days) of the snapshot lock.
    #[arg(long = "aws-snapshot-lock-duration", value_parser = argtypes::lock_duration_days)]
    aws_snapshot_lock_duration: Option<u32>,
    /// Azure subscription of the instance and disks.
    #[arg(long = "azure-subscription-id")]
    azure_subscription_id: Option<String>,
    /// Azure resource group of the instance and disks.
    #[arg(long = "azure-resource-group")]
    azure_resource_group: Option<String>,
}

#[derive(Parser, Debug)]
struct RestoreCli {
    /// URL of the cloud source, such as a bucket in AWS S3.
    source_url: String,
    /// The name of the server as configured in Barman.
    server_name: String,
    /// The backup ID (or name, first, last, auto).
    backup_id: String,
    /// The path to a directory for recovery.
    recovery_dir: String,
    #[command(flatten)]
    common: CommonArgs,
    /// Tablespace relocation rule NAME:LOCATION (repeatable).
    #[arg(long = "tablespace", action = ArgAction::Append)]
    tablespace: Vec<String>,
    /// Target timeline (with backup id auto).
    #[arg(long = "target-tli", value_parser = argtypes::timeline)]
    target_tli: Option<String>,
    /// Target LSN (with backup id auto).
    #[arg(long = "target-lsn", conflicts_with = "target_time")]
    target_lsn: Option<String>,
    /// Target time (with backup id auto).
    #[arg(long = "target-time")]
    target_time: Option<String>,
    /// Snapshot recovery: not supported by barrelman.
    #[arg(long = "snapshot-recovery-instance")]
    snapshot_recovery_instance: Option<String>,
    /// Snapshot recovery zone (deprecated: replaced by --gcp-zone); no effect.
    #[arg(long = "snapshot-recovery-zone")]
    snapshot_recovery_zone: Option<String>,
    /// Snapshot recovery: AWS region; no effect.
    #[arg(long = "aws-region")]
    aws_region: Option<String>,
    /// Snapshot recovery: GCP zone; no effect.
    #[arg(long = "gcp-zone")]
    gcp_zone: Option<String>,
    /// Snapshot recovery: Azure resource group; no effect.
    #[arg(long = "azure-resource-group")]
    azure_resource_group: Option<String>,
}

#[derive(Parser, Debug)]
struct BackupListCli {
    /// URL of the cloud source, such as a bucket in AWS S3.
    source_url: String,
    /// The name of the server as configured in Barman.
    server_name: String,
    #[command(flatten)]
    common: CommonArgs,
    /// Output format (console or json). Default console.
    #[arg(long = "format", default_value = "console")]
    format: String,
}

#[derive(Parser, Debug)]
struct BackupShowCli {
    /// URL of the cloud source, such as a bucket in AWS S3.
    source_url: String,
    /// The name of the server as configured in Barman.
    server_name: String,
    /// The backup ID (or name, first, last).
    backup_id: String,
    #[command(flatten)]
    common: CommonArgs,
    /// Output format (console or json). Default console.
    #[arg(long = "format", default_value = "console")]
    format: String,
}

#[derive(Parser, Debug)]
#[command(group(ArgGroup::new("action").required(true).multiple(false)))]
struct BackupKeepCli {
    /// URL of the cloud source, such as a bucket in AWS S3.
    source_url: String,
    /// The name of the server as configured in Barman.
    server_name: String,
    /// The backup ID (or name, first, last).
    backup_id: String,
    #[command(flatten)]
    common: CommonArgs,
    /// Release the keep flag from this backup.
    #[arg(short = 'r', long = "release", group = "action")]
    release: bool,
    /// Print the keep status of the backup.
    #[arg(short = 's', long = "status", group = "action")]
    status: bool,
    /// Keep this backup with the given recovery target.
    #[arg(long = "target", group = "action", value_parser = ["full", "standalone"])]
    target: Option<String>,
}

#[derive(Parser, Debug)]
#[command(group(ArgGroup::new("what").required(true).multiple(false)))]
struct BackupDeleteCli {
    /// URL of the cloud source, such as a bucket in AWS S3.
    source_url: String,
    /// The name of the server as configured in Barman.
    server_name: String,
    #[command(flatten)]
    common: CommonArgs,
    /// Backup ID (or name, first, last) of the backup to be deleted.
    #[arg(short = 'b', long = "backup-id", group = "what")]
    backup_id: Option<String>,
    /// If specified, delete all backups eligible for deletion according to the given retention policy.
    #[arg(short = 'r', long = "retention-policy", group = "what")]
    retention_policy: Option<String>,
    /// The minimum number of backups that should always be available.
    #[arg(short = 'm', long = "minimum-redundancy", default_value = "0",
          value_parser = argtypes::non_negative)]
    minimum_redundancy: u32,
    /// Find the objects which need to be deleted but do not delete them.
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// The maximum number of objects deleted in a single request.
    #[arg(long = "batch-size", value_parser = argtypes::int)]
    batch_size: Option<i64>,
    /// Check for object lock before deleting (S3).
    #[arg(long = "check-object-lock")]
    check_object_lock: bool,
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
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => exit::SUCCESS,
                _ => exit::INPUT_ERROR,
            };
            let _ = e.print();
            Err(code)
        }
    }
}

/// Runs the barman-cloud tool `prog` with `args` (without argv[0]); returns the exit code.
pub fn run(prog: &str, args: Vec<OsString>) -> i32 {
    let Some(prog) = TOOL_NAMES.iter().copied().find(|n| *n == prog) else {
        eprintln!("{prog}: this barman-cloud tool is not implemented by barrelman yet");
        return exit::GENERAL_ERROR;
    };
    match prog {
        "barman-cloud-wal-archive" => match parse::<WalArchiveCli>(prog, args) {
            Ok(cli) => execute(cli.common.verbosity(), || wal_archive(cli)),
            Err(code) => code,
        },
        "barman-cloud-wal-restore" => match parse::<WalRestoreCli>(prog, args) {
            Ok(cli) => execute(cli.common.verbosity(), || wal_restore(cli)),
            Err(code) => code,
        },
        "barman-cloud-check-wal-archive" => match parse::<CheckWalArchiveCli>(prog, args) {
            Ok(cli) => execute(cli.common.verbosity(), || check_wal_archive(cli)),
            Err(code) => code,
        },
        "barman-cloud-backup" => match parse::<BackupCli>(prog, args) {
            Ok(cli) => execute_with(cli.common.verbosity(), true, || backup(cli)),
            Err(code) => code,
        },
        "barman-cloud-backup-list" => match parse::<BackupListCli>(prog, args) {
            Ok(cli) => execute(cli.common.verbosity(), || async move {
                catalog_tool(&cli.source_url, &cli.server_name, &cli.common, |target| async move {
                    crate::catalogcmd::barman_list(&target, &cli.format).await
                })
                .await
            }),
            Err(code) => code,
        },
        "barman-cloud-backup-show" => match parse::<BackupShowCli>(prog, args) {
            Ok(cli) => execute(cli.common.verbosity(), || async move {
                catalog_tool(
                    &cli.source_url,
                    &cli.server_name,
                    &cli.common,
                    |target| async move {
                        crate::catalogcmd::show(&target, &cli.backup_id, &cli.format).await
                    },
                )
                .await
            }),
            Err(code) => code,
        },
        "barman-cloud-backup-keep" => match parse::<BackupKeepCli>(prog, args) {
            Ok(cli) => execute(cli.common.verbosity(), || async move {
                catalog_tool(
                    &cli.source_url,
                    &cli.server_name,
                    &cli.common,
                    |target| async move {
                        use crate::catalogcmd::KeepAction;
                        let action = match (cli.release, cli.status, cli.target) {
                            (true, _, _) => KeepAction::Release,
                            (_, true, _) => KeepAction::Status,
                            (_, _, Some(t)) => KeepAction::Set(t),
                            _ => {
                                let msg = "one of -r, -s or --target is required";
                                return Err(InputError(msg.into()).into());
                            }
                        };
                        crate::catalogcmd::keep(&target, &cli.backup_id, action).await
                    },
                )
                .await
            }),
            Err(code) => code,
        },
        "barman-cloud-backup-delete" => match parse::<BackupDeleteCli>(prog, args) {
            Ok(cli) => execute(cli.common.verbosity(), || async move {
                catalog_tool(
                    &cli.source_url,
                    &cli.server_name,
                    &cli.common,
                    |target| async move {
                        use barrelman_ops::delete::Selection;
                        let selection = match (cli.backup_id, cli.retention_policy) {
                            (Some(id), _) => Selection::Backup(id),
                            (None, Some(p)) => {
                                Selection::Policy(p.parse::<barrelman_core::retention::Policy>()?)
                            }
                            (None, None) => {
                                return Err(InputError("one of -b or -r is required".into()).into())
                            }
                        };
                        let flags = crate::catalogcmd::DeleteFlags {
                            minimum_redundancy: cli.minimum_redundancy,
                            dry_run: cli.dry_run,
                            // barman's tool has no --force: a STARTED backup younger
                            // than a day is refused there (see BARMAN_COMPAT.md).
                            force: false,
                            // Clamped to 1..=1000 as barman does.
                            batch_size: cli.batch_size.map(|n| {
                                n.clamp(1, barrelman_storage::objects::MAX_DELETE_BATCH as i64)
                                    as usize
                            }),
                        };
                        crate::catalogcmd::delete(&target, selection, flags).await
                    },
                )
                .await
            }),
            Err(code) => code,
        },
        "barman-cloud-restore" => match parse::<RestoreCli>(prog, args) {
            Ok(cli) => execute_with(cli.common.verbosity(), true, || restore(cli)),
            Err(code) => code,
        },
        _ => {
            eprintln!("{prog}: this barman-cloud tool is not implemented by barrelman yet");
            exit::GENERAL_ERROR
        }
    }
}

/// A catalog tool (list, show, keep, delete): resolves the archive, answers `-t` with
/// the connectivity test, else runs `op` on it.
async fn catalog_tool<F, Fut>(url: &str, server: &str, common: &CommonArgs, op: F) -> Result<i32>
where
    F: FnOnce(Target) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let target = target::from_barman(url, server, &common.cloud())?;
    if common.test {
        return connectivity_test(&target).await;
    }
    op(target).await?;
    Ok(exit::SUCCESS)
}

/// Sets up logging and a runtime, runs `f`, logs a failure as one line.
fn execute<F>(verbosity: i32, f: impl FnOnce() -> F) -> i32
where
    F: std::future::Future<Output = Result<i32>>,
{
    execute_with(verbosity, false, f)
}

fn execute_with<F>(verbosity: i32, multi_thread: bool, f: impl FnOnce() -> F) -> i32
where
    F: std::future::Future<Output = Result<i32>>,
{
    crate::logging::init(verbosity);
    let rt = if multi_thread {
        crate::multi_thread_runtime()
    } else {
        crate::runtime()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return exit::GENERAL_ERROR;
        }
    };
    match rt.block_on(f()) {
        Ok(code) => code,
        Err(e) => exit::report(&e),
    }
}

/// `--tag KEY,VALUE` values with barman's checks (an invalid one is an input error).
pub fn parse_tags(tag: &[String]) -> Result<Vec<(String, String)>> {
    tag.iter()
        .map(|t| argtypes::tag(t).map_err(|e| InputError(format!("invalid tag '{t}': {e}")).into()))
        .collect()
}

/// `--tag` values followed by the deprecated `--tags` ones (argparse keeps them apart).
fn all_tags(tag: &[(String, String)], tags: Option<&[(String, String)]>) -> Vec<(String, String)> {
    tag.iter()
        .chain(tags.unwrap_or_default())
        .cloned()
        .collect()
}

/// `-t`: connectivity first (exit 2), then the bucket (exit 1).
async fn connectivity_test(target: &Target) -> Result<i32> {
    let archive = probe_archive(target)?;
    match archive.probe().await {
        Ok(()) => Ok(exit::SUCCESS),
        Err(e @ StorageError::BucketMissing { .. }) => {
            tracing::error!("{e}");
            Ok(exit::FAILURE)
        }
        Err(e) => {
            tracing::error!("connectivity test failed: {e}");
            Ok(exit::exit_code(e.class(), exit::Step::ConnectivityTest))
        }
    }
}

/// The archive for a connectivity test: one quick retry, so an unreachable endpoint
/// is reported in seconds.
fn probe_archive(target: &Target) -> Result<barrelman_storage::Archive> {
    let mut options = target.settings.clone();
    options.common.max_retries = Some(1);
    Ok(barrelman_storage::Archive::open(
        &target.destination,
        &target.server_name,
        &options,
    )?)
}

async fn wal_archive(cli: WalArchiveCli) -> Result<i32> {
    let mut flags = cli.common.cloud();
    flags.encryption = cli.upload.encryption.clone();
    flags.sse_kms_key_id = cli.upload.sse_kms_key_id.clone();
    // Like barman, an invalid WAL name is refused (exit 3) before anything else, -t
    // included. Unlike barman, -t needs no WAL path (barman 3.19.1 exits 1 without one).
    if let Some(path) = &cli.wal_path {
        let base = std::path::Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        barrelman_core::wal::WalName::parse(&base)?;
    }
    let target = target::from_barman(&cli.destination_url, &cli.server_name, &flags)?;
    if cli.common.test {
        return connectivity_test(&target).await;
    }
    let Some(wal_path) = cli.wal_path.clone() else {
        tracing::error!("no WAL path given: pass the value of '%p' after the server name");
        return Ok(exit::FAILURE);
    };
    let compression = [
        (cli.gzip, Compression::Gzip),
        (cli.bzip2, Compression::Bzip2),
        (cli.xz, Compression::Xz),
        (cli.snappy, Compression::Snappy),
        (cli.zstd, Compression::Zstd),
        (cli.lz4, Compression::Lz4),
    ]
    .into_iter()
    .find_map(|(on, c)| on.then_some(c))
    .unwrap_or(Compression::None);
    let level = cli
        .compression_level
        .map(|req| clamp_level(compression, req));
    let tags = all_tags(&cli.upload.tag, cli.upload.tags.as_deref());
    let history = if cli.history_tag.is_empty() && cli.history_tags.is_none() {
        None
    } else {
        Some(all_tags(&cli.history_tag, cli.history_tags.as_deref()))
    };
    let archive = target.open()?;
    let req = ArchiveRequest {
        wal_path: PathBuf::from(wal_path),
        upload: UploadOptions {
            compression: Some(compression),
            level,
            tags,
        },
        history_tags: history,
        pgdata: None,
        max_parallel: 1,
        spool_dir: None,
        must_be_empty: None,
    };
    crate::walcmd::archive(&archive, req).await?;
    Ok(exit::SUCCESS)
}

/// `--compression-level` with barman's clamping (and its warning).
pub fn resolve_level(compression: Compression, given: Option<&str>) -> Result<Option<i32>> {
    let Some(given) = given else { return Ok(None) };
    let req = argtypes::compression_level(given).map_err(InputError)?;
    Ok(Some(clamp_level(compression, req)))
}

/// The level `req` asks of `compression`, clamped into its range with barman's warning.
fn clamp_level(compression: Compression, req: LevelRequest) -> i32 {
    let (level, clamped) = compression.level(req);
    if clamped {
        tracing::warn!(
            "compression level {req:?} is out of range for {compression}: using {level}"
        );
    }
    level
}

async fn wal_restore(cli: WalRestoreCli) -> Result<i32> {
    let target = target::from_barman(&cli.source_url, &cli.server_name, &cli.common.cloud())?;
    if cli.common.test {
        return connectivity_test(&target).await;
    }
    let archive = target.open()?;
    let parallel = cli.parallel.max(0) as usize;
    let req = RestoreRequest {
        wal_name: cli.wal_name,
        dest: PathBuf::from(cli.wal_dest),
        allow_partial: !cli.no_partial,
        parallel,
        spool_dir: (parallel > 1).then_some(cli.spool_dir),
    };
    barrelman_ops::wal::restore(&archive, &req).await?;
    Ok(exit::SUCCESS)
}

async fn check_wal_archive(cli: CheckWalArchiveCli) -> Result<i32> {
    let timeline = cli.timeline;
    let target = target::from_barman(&cli.destination_url, &cli.server_name, &cli.common.cloud())?;
    match probe_archive(&target)?.probe().await {
        Ok(()) => {}
        // No bucket: nothing can be archived there, so it is empty.
        Err(StorageError::BucketMissing { bucket, .. }) if !cli.common.test => {
            tracing::warn!("the bucket '{bucket}' does not exist yet: the archive is empty");
            return Ok(exit::SUCCESS);
        }
        Err(StorageError::BucketMissing { .. }) => return Ok(exit::SUCCESS),
        Err(e) => {
            tracing::error!("connectivity test failed: {e}");
            return Ok(exit::exit_code(e.class(), exit::Step::ConnectivityTest));
        }
    }
    if cli.common.test {
        return Ok(exit::SUCCESS);
    }
    barrelman_ops::wal::check_empty(&target.open()?, timeline).await?;
    Ok(exit::SUCCESS)
}

/// A size argument with barman's units; an invalid one is an input error (exit 3).
pub(crate) fn size_arg(flag: &str, value: &str) -> Result<u64> {
    barrelman_ops::plan::parse_size(value).ok_or_else(|| {
        InputError(format!(
            "invalid {flag} '{value}': use bytes or a number with KB, MB, GB, TB"
        ))
        .into()
    })
}

async fn backup(cli: BackupCli) -> Result<i32> {
    let mut flags = cli.common.cloud();
    flags.encryption = cli.upload.encryption.clone();
    flags.sse_kms_key_id = cli.upload.sse_kms_key_id.clone();
    let target = target::from_barman(&cli.destination_url, &cli.server_name, &flags)?;
    if cli.common.test {
        return connectivity_test(&target).await;
    }
    if cli.snapshot_instance.is_some() || !cli.snapshot_disk.is_empty() {
        return Err(InputError("snapshot backups are not supported by barrelman".into()).into());
    }
    let compression = [
        (cli.gzip, Compression::Gzip),
        (cli.bzip2, Compression::Bzip2),
        (cli.snappy, Compression::Snappy),
        (cli.lz4, Compression::Lz4),
    ]
    .into_iter()
    .find_map(|(on, c)| on.then_some(c))
    .unwrap_or(Compression::None);
    let opts = barrelman_ops::backup::BackupOptions {
        compression,
        level: None,
        immediate_checkpoint: cli.immediate_checkpoint,
        jobs: cli.jobs as usize,
        max_archive_size: cli.max_archive_size.min(1 << 40),
        min_chunk_size: cli.min_chunk_size,
        name: cli.name.clone(),
        tags: all_tags(&cli.upload.tag, cli.upload.tags.as_deref()),
        wal_wait: crate::basebackup::wal_wait(None),
        max_bandwidth: cli.max_bandwidth,
    };
    // barman hands the port to libpq as text; one that is not a number is a failure to
    // connect (exit 1), not a usage error.
    let port = match cli.port.as_deref().map(str::trim) {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| crate::errors::BaseBackupError::BadPort(p.to_string()))?,
        ),
    };
    let connect = barrelman_postgres::session::ConnectOptions {
        host: cli.host,
        port,
        user: cli.user,
        dbname: cli.dbname,
        application_name: None,
        environment: crate::environment::captured().postgres.clone(),
    };
    crate::basebackup::backup(&target, &connect, &opts).await?;
    Ok(exit::SUCCESS)
}

async fn restore(cli: RestoreCli) -> Result<i32> {
    let target = target::from_barman(&cli.source_url, &cli.server_name, &cli.common.cloud())?;
    if cli.common.test {
        return connectivity_test(&target).await;
    }
    if cli.snapshot_recovery_instance.is_some() {
        return Err(InputError("snapshot recovery is not supported by barrelman".into()).into());
    }
    let opts = barrelman_ops::restore::RestoreOptions {
        backup: cli.backup_id.clone(),
        target: crate::basebackup::target_choice(
            cli.target_time.as_deref(),
            cli.target_lsn.as_deref(),
            cli.target_tli.as_deref(),
        )?,
        destination: PathBuf::from(&cli.recovery_dir),
        tablespace_map: crate::basebackup::tablespace_map(&cli.tablespace)?,
        jobs: 4,
    };
    // Like barman-cloud-restore: no recovery settings; the caller configures recovery.
    crate::basebackup::restore(&target, &opts, None).await?;
    Ok(exit::SUCCESS)
}

#[cfg(test)]
#[path = "fuzz_barman.rs"]
mod fuzz;
