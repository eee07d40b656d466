//! The barman-cloud-* command lines as clap structs, flag for flag as barman-cloud
//! 3.19.1 declares them (names, short options, defaults, `type=` checks, help
//! texts). What the flags mean is in the dispatch (`super`).

use crate::argtypes;
use barrelman_core::LevelRequest;
use clap::{ArgAction, ArgGroup, Args, Parser};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub(super) struct CommonArgs {
    /// Increase output verbosity (e.g., -vv is more than -v).
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub(super) verbose: u8,
    /// Decrease output verbosity (e.g., -qq is less than -q).
    #[arg(short = 'q', long = "quiet", action = ArgAction::Count, conflicts_with = "verbose")]
    pub(super) quiet: u8,
    /// Test cloud connectivity and exit.
    #[arg(short = 't', long = "test")]
    pub(super) test: bool,
    /// The cloud provider to use as a storage backend.
    #[arg(long = "cloud-provider", default_value = "aws-s3",
          value_parser = ["aws-s3", "azure-blob-storage", "google-cloud-storage"])]
    pub(super) cloud_provider: String,
    /// Override default S3 endpoint URL with the given one.
    #[arg(long = "endpoint-url")]
    pub(super) endpoint_url: Option<String>,
    /// Profile name (e.g. INI section in AWS credentials file).
    #[arg(short = 'P', long = "aws-profile", alias = "profile")]
    pub(super) aws_profile: Option<String>,
    /// The time in seconds until a timeout is raised when waiting to read from a connection.
    #[arg(long = "read-timeout", value_parser = argtypes::int)]
    pub(super) read_timeout: Option<i64>,
    /// S3 addressing style.
    #[arg(long = "addressing-style", value_parser = ["auto", "virtual", "path"])]
    pub(super) addressing_style: Option<String>,
    /// Azure credential type.
    #[arg(long = "azure-credential", aliases = ["credential", "default"],
          value_parser = ["azure-cli", "managed-identity", "default"])]
    pub(super) azure_credential: Option<String>,
    /// Show this help message and exit.
    #[arg(long = "help", action = ArgAction::Help)]
    pub(super) help: Option<bool>,
}

/// Tags and server-side encryption of the objects a tool uploads.
#[derive(Args, Debug, Clone)]
pub(super) struct UploadFlags {
    /// Tag KEY,VALUE added to every uploaded object (repeatable).
    #[arg(long = "tag", action = ArgAction::Append, conflicts_with = "tags",
          value_parser = argtypes::tag)]
    pub(super) tag: Vec<(String, String)>,
    /// Tags as KEY,VALUE pairs (deprecated, greedy).
    #[arg(long = "tags", num_args = 0.., value_parser = argtypes::legacy_tag)]
    pub(super) tags: Option<Vec<(String, String)>>,
    /// Server-side encryption (AES256 or aws:kms).
    #[arg(short = 'e', long = "encryption", value_parser = ["AES256", "aws:kms"])]
    pub(super) encryption: Option<String>,
    /// The AWS KMS key ID for aws:kms encryption.
    #[arg(long = "sse-kms-key-id")]
    pub(super) sse_kms_key_id: Option<String>,
    /// GCS KMS key name.
    #[arg(long = "kms-key-name")]
    pub(super) kms_key_name: Option<String>,
    /// Azure encryption scope.
    #[arg(long = "encryption-scope")]
    pub(super) encryption_scope: Option<String>,
}

#[derive(Parser, Debug)]
#[command(group(ArgGroup::new("compression").multiple(false)))]
pub(super) struct WalArchiveCli {
    /// URL of the cloud destination, such as a bucket in AWS S3.
    pub(super) destination_url: String,
    /// The name of the server as configured in Barman.
    pub(super) server_name: String,
    /// The value of the '%p' keyword (according to 'archive_command').
    pub(super) wal_path: Option<String>,
    #[command(flatten)]
    pub(super) common: CommonArgs,
    /// gzip-compress the WAL while uploading to the cloud.
    #[arg(short = 'z', long = "gzip", group = "compression")]
    pub(super) gzip: bool,
    /// bzip2-compress the WAL while uploading to the cloud.
    #[arg(short = 'j', long = "bzip2", group = "compression")]
    pub(super) bzip2: bool,
    /// xz-compress the WAL while uploading to the cloud.
    #[arg(long = "xz", group = "compression")]
    pub(super) xz: bool,
    /// snappy-compress the WAL while uploading to the cloud.
    #[arg(long = "snappy", group = "compression")]
    pub(super) snappy: bool,
    /// zstd-compress the WAL while uploading to the cloud.
    #[arg(long = "zstd", group = "compression")]
    pub(super) zstd: bool,
    /// lz4-compress the WAL while uploading to the cloud.
    #[arg(long = "lz4", group = "compression")]
    pub(super) lz4: bool,
    /// Compression level: an integer, or low, medium, high.
    #[arg(long = "compression-level",
          value_parser = argtypes::compression_level)]
    pub(super) compression_level: Option<LevelRequest>,
    /// Tag KEY,VALUE for history files (repeatable).
    #[arg(long = "history-tag", action = ArgAction::Append, conflicts_with = "history_tags",
          value_parser = argtypes::tag)]
    pub(super) history_tag: Vec<(String, String)>,
    /// History tags as KEY,VALUE pairs (deprecated, greedy).
    #[arg(long = "history-tags", num_args = 0.., value_parser = argtypes::legacy_tag)]
    pub(super) history_tags: Option<Vec<(String, String)>>,
    #[command(flatten)]
    pub(super) upload: UploadFlags,
    /// Azure: chunk size for block uploads.
    #[arg(long = "max-block-size", value_parser = argtypes::size)]
    pub(super) max_block_size: Option<u64>,
    /// Azure: parallel uploads per object.
    #[arg(long = "max-concurrency", value_parser = argtypes::positive)]
    pub(super) max_concurrency: Option<u32>,
    /// Azure: largest single-request upload.
    #[arg(long = "max-single-put-size", value_parser = argtypes::size)]
    pub(super) max_single_put_size: Option<u64>,
}

#[derive(Parser, Debug)]
pub(super) struct WalRestoreCli {
    /// URL of the cloud source, such as a bucket in AWS S3.
    pub(super) source_url: String,
    /// The name of the server as configured in Barman.
    pub(super) server_name: String,
    /// The value of the '%f' keyword (according to 'restore_command').
    pub(super) wal_name: String,
    /// The value of the '%p' keyword (according to 'restore_command').
    pub(super) wal_dest: String,
    #[command(flatten)]
    pub(super) common: CommonArgs,
    /// Do not download partial WAL files.
    #[arg(long = "no-partial")]
    pub(super) no_partial: bool,
    /// Download up to this many WAL files at once (the next ones go to the spool).
    #[arg(short = 'p', long = "parallel", default_value_t = 0,
          value_parser = argtypes::int)]
    pub(super) parallel: i64,
    /// Directory of prefetched WAL files.
    #[arg(long = "spool-dir", default_value = "/var/tmp/walrestore")]
    pub(super) spool_dir: PathBuf,
}

#[derive(Parser, Debug)]
pub(super) struct CheckWalArchiveCli {
    /// URL of the cloud destination, such as a bucket in AWS S3.
    pub(super) destination_url: String,
    /// The name of the server as configured in Barman.
    pub(super) server_name: String,
    #[command(flatten)]
    pub(super) common: CommonArgs,
    /// The earliest timeline whose WALs should cause the check to fail.
    #[arg(long = "timeline", value_parser = argtypes::positive)]
    pub(super) timeline: Option<u32>,
}

#[derive(Parser, Debug)]
#[command(group(ArgGroup::new("compression").multiple(false)))]
pub(super) struct BackupCli {
    /// URL of the cloud destination, such as a bucket in AWS S3.
    pub(super) destination_url: String,
    /// The name of the server as configured in Barman.
    pub(super) server_name: String,
    #[command(flatten)]
    pub(super) common: CommonArgs,
    /// gzip-compress the backup while uploading to the cloud.
    #[arg(short = 'z', long = "gzip", group = "compression")]
    pub(super) gzip: bool,
    /// bzip2-compress the backup while uploading to the cloud.
    #[arg(short = 'j', long = "bzip2", group = "compression")]
    pub(super) bzip2: bool,
    /// snappy-compress the backup while uploading to the cloud.
    #[arg(long = "snappy", group = "compression")]
    pub(super) snappy: bool,
    /// lz4-compress the backup while uploading to the cloud.
    #[arg(long = "lz4", group = "compression")]
    pub(super) lz4: bool,
    /// Host or Unix socket for PostgreSQL connection (default: libpq settings).
    #[arg(short = 'h', long = "host")]
    pub(super) host: Option<String>,
    /// Port for PostgreSQL connection (default: libpq settings).
    #[arg(short = 'p', long = "port")]
    pub(super) port: Option<String>,
    /// User name for PostgreSQL connection (default: libpq settings).
    #[arg(short = 'U', long = "user")]
    pub(super) user: Option<String>,
    /// Database name or conninfo string for PostgreSQL connection (default: postgres).
    #[arg(short = 'd', long = "dbname")]
    pub(super) dbname: Option<String>,
    /// Forces the initial checkpoint to be done as quickly as possible.
    #[arg(long = "immediate-checkpoint")]
    pub(super) immediate_checkpoint: bool,
    /// Number of parallel workers to copy files during backup.
    #[arg(short = 'J', long = "jobs", default_value = "2", value_parser = argtypes::positive)]
    pub(super) jobs: u32,
    /// Maximum size of an archive when uploading to cloud storage (default: 100GB).
    #[arg(short = 'S', long = "max-archive-size", default_value = "100GB",
          value_parser = argtypes::size)]
    pub(super) max_archive_size: u64,
    /// Minimum size of an individual chunk when uploading to cloud storage.
    #[arg(long = "min-chunk-size", value_parser = argtypes::size)]
    pub(super) min_chunk_size: Option<u64>,
    /// The maximum amount of data to be uploaded per second.
    #[arg(long = "max-bandwidth", value_parser = argtypes::size)]
    pub(super) max_bandwidth: Option<u64>,
    /// A name which can be used to reference this backup.
    #[arg(short = 'n', long = "name", value_parser = argtypes::backup_name)]
    pub(super) name: Option<String>,
    #[command(flatten)]
    pub(super) upload: UploadFlags,
    /// Snapshot backups: not supported by barrelman.
    #[arg(long = "snapshot-instance")]
    pub(super) snapshot_instance: Option<String>,
    /// Snapshot backups: not supported by barrelman.
    #[arg(long = "snapshot-disk", action = ArgAction::Append)]
    pub(super) snapshot_disk: Vec<String>,
    #[command(flatten)]
    pub(super) snapshot: SnapshotBackupFlags,
}

/// Options of barman's snapshot backups. barrelman does not take snapshot backups
/// (`--snapshot-instance`/`--snapshot-disk` are refused); these only tune them, so
/// they are accepted and have no effect, as in barman without a snapshot.
#[derive(Args, Debug, Clone)]
pub(super) struct SnapshotBackupFlags {
    /// Zone of the disks (deprecated: replaced by --gcp-zone).
    #[arg(long = "snapshot-zone")]
    pub(super) snapshot_zone: Option<String>,
    /// GCP project for snapshots (deprecated: replaced by --gcp-project).
    #[arg(long = "snapshot-gcp-project")]
    pub(super) snapshot_gcp_project: Option<String>,
    /// GCP project under which disk snapshots should be stored.
    #[arg(long = "gcp-project")]
    pub(super) gcp_project: Option<String>,
    /// Zone of the disks from which snapshots should be taken.
    #[arg(long = "gcp-zone")]
    pub(super) gcp_zone: Option<String>,
    /// AWS region of the instance and disks.
    #[arg(long = "aws-region")]
    pub(super) aws_region: Option<String>,
    /// Seconds to wait for AWS snapshots.
    #[arg(long = "aws-await-snapshots-timeout", value_parser = argtypes::positive)]
    pub(super) aws_await_snapshots_timeout: Option<u32>,
    /// Lock mode of AWS snapshots.
    #[arg(long = "aws-snapshot-lock-mode", value_parser = ["governance", "compliance"])]
    pub(super) aws_snapshot_lock_mode: Option<String>,
    /// Cool-off period (hours) of a compliance lock.
    #[arg(long = "aws-snapshot-lock-cool-off-period", value_parser = argtypes::cool_off_hours)]
    pub(super) aws_snapshot_lock_cool_off_period: Option<u32>,
    /// Expiration date of the snapshot lock.
    #[arg(long = "aws-snapshot-lock-expiration-date", value_parser = argtypes::expiration_date,
          conflicts_with = "aws_snapshot_lock_duration")]
    pub(super) aws_snapshot_lock_expiration_date: Option<String>,
    /// Duration (days) of the snapshot lock.
    #[arg(long = "aws-snapshot-lock-duration", value_parser = argtypes::lock_duration_days)]
    pub(super) aws_snapshot_lock_duration: Option<u32>,
    /// Azure subscription of the instance and disks.
    #[arg(long = "azure-subscription-id")]
    pub(super) azure_subscription_id: Option<String>,
    /// Azure resource group of the instance and disks.
    #[arg(long = "azure-resource-group")]
    pub(super) azure_resource_group: Option<String>,
}

#[derive(Parser, Debug)]
pub(super) struct RestoreCli {
    /// URL of the cloud source, such as a bucket in AWS S3.
    pub(super) source_url: String,
    /// The name of the server as configured in Barman.
    pub(super) server_name: String,
    /// The backup ID (or name, first, last, auto).
    pub(super) backup_id: String,
    /// The path to a directory for recovery.
    pub(super) recovery_dir: String,
    #[command(flatten)]
    pub(super) common: CommonArgs,
    /// Tablespace relocation rule NAME:LOCATION (repeatable).
    #[arg(long = "tablespace", action = ArgAction::Append)]
    pub(super) tablespace: Vec<String>,
    /// Target timeline (with backup id auto).
    #[arg(long = "target-tli", value_parser = argtypes::timeline)]
    pub(super) target_tli: Option<String>,
    /// Target LSN (with backup id auto).
    #[arg(long = "target-lsn", conflicts_with = "target_time")]
    pub(super) target_lsn: Option<String>,
    /// Target time (with backup id auto).
    #[arg(long = "target-time")]
    pub(super) target_time: Option<String>,
    /// Snapshot recovery: not supported by barrelman.
    #[arg(long = "snapshot-recovery-instance")]
    pub(super) snapshot_recovery_instance: Option<String>,
    /// Snapshot recovery zone (deprecated: replaced by --gcp-zone); no effect.
    #[arg(long = "snapshot-recovery-zone")]
    pub(super) snapshot_recovery_zone: Option<String>,
    /// Snapshot recovery: AWS region; no effect.
    #[arg(long = "aws-region")]
    pub(super) aws_region: Option<String>,
    /// Snapshot recovery: GCP zone; no effect.
    #[arg(long = "gcp-zone")]
    pub(super) gcp_zone: Option<String>,
    /// Snapshot recovery: Azure resource group; no effect.
    #[arg(long = "azure-resource-group")]
    pub(super) azure_resource_group: Option<String>,
}

#[derive(Parser, Debug)]
pub(super) struct BackupListCli {
    /// URL of the cloud source, such as a bucket in AWS S3.
    pub(super) source_url: String,
    /// The name of the server as configured in Barman.
    pub(super) server_name: String,
    #[command(flatten)]
    pub(super) common: CommonArgs,
    /// Output format (console or json). Default console.
    #[arg(long = "format", default_value = "console")]
    pub(super) format: String,
}

#[derive(Parser, Debug)]
pub(super) struct BackupShowCli {
    /// URL of the cloud source, such as a bucket in AWS S3.
    pub(super) source_url: String,
    /// The name of the server as configured in Barman.
    pub(super) server_name: String,
    /// The backup ID (or name, first, last).
    pub(super) backup_id: String,
    #[command(flatten)]
    pub(super) common: CommonArgs,
    /// Output format (console or json). Default console.
    #[arg(long = "format", default_value = "console")]
    pub(super) format: String,
}

#[derive(Parser, Debug)]
#[command(group(ArgGroup::new("action").required(true).multiple(false)))]
pub(super) struct BackupKeepCli {
    /// URL of the cloud source, such as a bucket in AWS S3.
    pub(super) source_url: String,
    /// The name of the server as configured in Barman.
    pub(super) server_name: String,
    /// The backup ID (or name, first, last).
    pub(super) backup_id: String,
    #[command(flatten)]
    pub(super) common: CommonArgs,
    /// Release the keep flag from this backup.
    #[arg(short = 'r', long = "release", group = "action")]
    pub(super) release: bool,
    /// Print the keep status of the backup.
    #[arg(short = 's', long = "status", group = "action")]
    pub(super) status: bool,
    /// Keep this backup with the given recovery target.
    #[arg(long = "target", group = "action", value_parser = ["full", "standalone"])]
    pub(super) target: Option<String>,
}

#[derive(Parser, Debug)]
#[command(group(ArgGroup::new("what").required(true).multiple(false)))]
pub(super) struct BackupDeleteCli {
    /// URL of the cloud source, such as a bucket in AWS S3.
    pub(super) source_url: String,
    /// The name of the server as configured in Barman.
    pub(super) server_name: String,
    #[command(flatten)]
    pub(super) common: CommonArgs,
    /// Backup ID (or name, first, last) of the backup to be deleted.
    #[arg(short = 'b', long = "backup-id", group = "what")]
    pub(super) backup_id: Option<String>,
    /// If specified, delete all backups eligible for deletion according to the given retention policy.
    #[arg(short = 'r', long = "retention-policy", group = "what")]
    pub(super) retention_policy: Option<String>,
    /// The minimum number of backups that should always be available.
    #[arg(short = 'm', long = "minimum-redundancy", default_value = "0",
          value_parser = argtypes::non_negative)]
    pub(super) minimum_redundancy: u32,
    /// Find the objects which need to be deleted but do not delete them.
    #[arg(long = "dry-run")]
    pub(super) dry_run: bool,
    /// The maximum number of objects deleted in a single request.
    #[arg(long = "batch-size", value_parser = argtypes::int)]
    pub(super) batch_size: Option<i64>,
    /// Check for object lock before deleting (S3).
    #[arg(long = "check-object-lock")]
    pub(super) check_object_lock: bool,
}
