//! The native `barrelman` command line as clap structs: the subcommands and their
//! flags, with the help texts `barrelman --help` shows. What they mean is in the
//! dispatch (`super`).

use clap::{ArgAction, Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "barrelman",
    version,
    infer_long_args = true,
    about = "Continuous backup and point-in-time recovery for PostgreSQL on object storage, \
                   in barman-cloud's layout."
)]
pub(super) struct Cli {
    /// More output (-v info, -vv debug).
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count, global = true)]
    pub(super) verbose: u8,
    /// Less output.
    #[arg(short = 'q', long = "quiet", action = ArgAction::Count, global = true)]
    pub(super) quiet: u8,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
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
pub(super) struct StoreArgs {
    /// ObjectStore manifest (apiVersion barmancloud.cnpg.io/v1) to read the archive settings from.
    #[arg(long)]
    pub(super) config: Option<PathBuf>,
    /// Server name (the folder under the destination path); required with --config.
    #[arg(long)]
    pub(super) server_name: Option<String>,
    /// Directory with the manifest's secrets, laid out like mounted Secrets: DIR/<secret>/<key>.
    #[arg(long)]
    pub(super) secrets_dir: Option<PathBuf>,
    /// S3 endpoint URL (overrides the manifest's endpointURL).
    #[arg(long)]
    pub(super) endpoint_url: Option<String>,
    /// Cloud provider of DEST (aws-s3, azure-blob-storage, google-cloud-storage).
    #[arg(long)]
    pub(super) cloud_provider: Option<String>,
    /// S3 addressing style: auto, virtual or path.
    #[arg(long)]
    pub(super) addressing_style: Option<String>,
    /// Seconds without data before a request is retried.
    #[arg(long)]
    pub(super) read_timeout: Option<f64>,
}

#[derive(Args, Debug)]
pub(super) struct WalArchiveArgs {
    #[command(flatten)]
    pub(super) store: StoreArgs,
    /// [DEST SERVER] WAL_PATH
    #[arg(num_args = 1..=3)]
    pub(super) args: Vec<String>,
    /// WAL compression: none, gzip, bzip2, xz, snappy, zstd, lz4 (default: the manifest's wal.compression, else none).
    #[arg(long)]
    pub(super) compression: Option<String>,
    /// Compression level: an integer, or low, medium, high.
    #[arg(long, allow_negative_numbers = true)]
    pub(super) compression_level: Option<String>,
    /// PGDATA: enables the empty-archive guard (.check-empty-wal-archive) and parallel archiving of .ready files.
    #[arg(long)]
    pub(super) pgdata: Option<PathBuf>,
    /// Upload up to N WAL files per call (default: the manifest's wal.maxParallel, else 1).
    #[arg(long)]
    pub(super) max_parallel: Option<usize>,
    /// Spool for parallel archive markers (default: $SPOOL_DIRECTORY or /var/tmp/walrestore).
    #[arg(long)]
    pub(super) spool_dir: Option<PathBuf>,
    /// Object tag KEY,VALUE (repeatable; added to the manifest's tags).
    #[arg(long = "tag", action = ArgAction::Append)]
    pub(super) tag: Vec<String>,
}

#[derive(Args, Debug)]
pub(super) struct WalRestoreArgs {
    #[command(flatten)]
    pub(super) store: StoreArgs,
    /// [DEST SERVER] WAL_NAME WAL_DEST
    #[arg(num_args = 2..=4)]
    pub(super) args: Vec<String>,
    /// Do not serve NAME.partial for NAME.
    #[arg(long)]
    pub(super) no_partial: bool,
    /// Fetch up to N WAL files per call, the next ones into the spool (default: the manifest's wal.maxParallel, else 1).
    #[arg(long)]
    pub(super) parallel: Option<usize>,
    /// Spool for prefetched WAL files (default: $SPOOL_DIRECTORY or /var/tmp/walrestore).
    #[arg(long)]
    pub(super) spool_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(super) struct CheckEmptyArgs {
    #[command(flatten)]
    pub(super) store: StoreArgs,
    /// [DEST SERVER]
    #[arg(num_args = 0..=2)]
    pub(super) args: Vec<String>,
    /// Only WAL of this timeline or newer makes the check fail.
    #[arg(long)]
    pub(super) timeline: Option<u32>,
}

#[derive(Args, Debug)]
pub(super) struct BackupArgs {
    #[command(flatten)]
    pub(super) store: StoreArgs,
    /// [DEST SERVER]
    #[arg(num_args = 0..=2)]
    pub(super) args: Vec<String>,
    /// none, gzip, bzip2, snappy or lz4 (default: the manifest's data.compression, else none).
    #[arg(long)]
    pub(super) compression: Option<String>,
    /// Compression level: an integer, or low, medium, high.
    #[arg(long, allow_negative_numbers = true)]
    pub(super) compression_level: Option<String>,
    #[command(flatten)]
    pub(super) pg: PgArgs,
    /// Ask for an immediate checkpoint (default: the manifest's data.immediateCheckpoint).
    #[arg(long)]
    pub(super) immediate_checkpoint: bool,
    /// Parallel tar workers (default: the manifest's data.jobs, else 2).
    #[arg(long)]
    pub(super) jobs: Option<usize>,
    /// Close a tar part once it is this large (default 100GB).
    #[arg(long, default_value = "100GB")]
    pub(super) max_archive_size: String,
    /// A name to find this backup by.
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Object tag KEY,VALUE (repeatable; added to the manifest's tags).
    #[arg(long = "tag", action = ArgAction::Append)]
    pub(super) tag: Vec<String>,
    /// Upload at most this much per second (bytes, or with KB, MB, GB).
    #[arg(long)]
    pub(super) max_bandwidth: Option<String>,
    /// Seconds to wait for the backup's last WAL segment to reach the archive before
    /// the backup is marked FAILED (default: $BARRELMAN_WAL_WAIT, else 120).
    #[arg(long)]
    pub(super) wal_wait: Option<u64>,
}

#[derive(Args, Debug)]
pub(super) struct RestoreArgs {
    #[command(flatten)]
    pub(super) store: StoreArgs,
    /// [DEST SERVER] DESTINATION
    #[arg(num_args = 1..=3)]
    pub(super) args: Vec<String>,
    /// Backup id, name, first, last or auto (default: auto with a time or LSN target, else last).
    #[arg(long)]
    pub(super) backup: Option<String>,
    /// Tablespace relocation NAME:LOCATION (repeatable).
    #[arg(long = "tablespace", action = ArgAction::Append)]
    pub(super) tablespace: Vec<String>,
    /// Parts downloaded and extracted at once.
    #[arg(long, default_value_t = 4)]
    pub(super) jobs: usize,
    /// Recover up to this time (e.g. '2026-11-24 20:16:25+00').
    #[arg(long)]
    pub(super) target_time: Option<String>,
    /// Recover up to this LSN.
    #[arg(long)]
    pub(super) target_lsn: Option<String>,
    /// Recover up to this transaction id.
    #[arg(long)]
    pub(super) target_xid: Option<String>,
    /// Recover up to this restore point.
    #[arg(long)]
    pub(super) target_name: Option<String>,
    /// Stop as soon as the backup is consistent.
    #[arg(long)]
    pub(super) target_immediate: bool,
    /// Timeline to recover along: a number, current or latest.
    #[arg(long)]
    pub(super) target_timeline: Option<String>,
    /// At the target: promote, pause or shutdown.
    #[arg(long, value_parser = ["promote", "pause", "shutdown"])]
    pub(super) target_action: Option<String>,
    /// Stop just before the target instead of just after it.
    #[arg(long)]
    pub(super) target_exclusive: bool,
    /// Do not write restore_command and recovery.signal (barman-cloud-restore's behaviour).
    #[arg(long)]
    pub(super) no_recovery_config: bool,
}

#[derive(Args, Debug)]
pub(super) struct ListArgs {
    #[command(flatten)]
    pub(super) store: StoreArgs,
    /// [DEST SERVER]
    #[arg(num_args = 0..=2)]
    pub(super) args: Vec<String>,
    /// table or json (barman-cloud-backup-list's JSON).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub(super) format: String,
}

#[derive(Args, Debug)]
pub(super) struct ShowArgs {
    #[command(flatten)]
    pub(super) store: StoreArgs,
    /// [DEST SERVER] BACKUP_ID
    #[arg(num_args = 1..=3)]
    pub(super) args: Vec<String>,
    /// text or json (barman-cloud-backup-show's JSON).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub(super) format: String,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("action").required(true).multiple(false)))]
pub(super) struct KeepArgs {
    #[command(flatten)]
    pub(super) store: StoreArgs,
    /// [DEST SERVER] BACKUP_ID
    #[arg(num_args = 1..=3)]
    pub(super) args: Vec<String>,
    /// Keep the backup: full (with all WAL after it) or standalone (consistency only).
    #[arg(long, group = "action", value_parser = ["full", "standalone"])]
    pub(super) target: Option<String>,
    /// Print the keep status.
    #[arg(long, group = "action")]
    pub(super) status: bool,
    /// Release the keep mark.
    #[arg(long, group = "action")]
    pub(super) release: bool,
}

#[derive(Args, Debug)]
pub(super) struct DeleteArgs {
    #[command(flatten)]
    pub(super) store: StoreArgs,
    /// [DEST SERVER]
    #[arg(num_args = 0..=2)]
    pub(super) args: Vec<String>,
    /// Delete this backup (id, name, first or last).
    #[arg(long, conflicts_with = "retention_policy")]
    pub(super) backup: Option<String>,
    /// 'REDUNDANCY n', 'RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS' (default: the
    /// manifest's retentionPolicy, e.g. 30d).
    #[arg(long)]
    pub(super) retention_policy: Option<String>,
    /// Never go below this many backups.
    #[arg(long, default_value_t = 0)]
    pub(super) minimum_redundancy: u32,
    /// Print what would be deleted and why; delete nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// With --backup: delete a STARTED backup even if it began less than 24 hours ago
    /// and may still be running (it then ends FAILED).
    #[arg(long)]
    pub(super) force: bool,
    /// Objects per bulk delete request (1-1000; default 1000).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(super) batch_size: Option<u16>,
}

#[derive(Args, Debug)]
pub(super) struct VerifyArgs {
    #[command(flatten)]
    pub(super) store: StoreArgs,
    /// [DEST SERVER] [BACKUP_ID]
    #[arg(num_args = 0..=3)]
    pub(super) args: Vec<String>,
    /// Verify every backup (the default without BACKUP_ID).
    #[arg(long)]
    pub(super) all: bool,
    /// Also download and read every tar part and WAL segment.
    #[arg(long)]
    pub(super) deep: bool,
}

/// Where PostgreSQL is; unset parts come from the libpq environment.
#[derive(Args, Debug, Clone)]
pub(super) struct PgArgs {
    /// PostgreSQL host or socket directory (default: PGHOST, then /var/run/postgresql).
    #[arg(long)]
    pub(super) host: Option<String>,
    /// PostgreSQL port (default: PGPORT, then 5432).
    #[arg(long)]
    pub(super) port: Option<u16>,
    /// PostgreSQL user (default: PGUSER, then the OS user).
    #[arg(long)]
    pub(super) user: Option<String>,
    /// Database name or conninfo string.
    #[arg(long)]
    pub(super) dbname: Option<String>,
}

#[derive(Args, Debug)]
pub(super) struct DoctorArgs {
    #[command(flatten)]
    pub(super) store: StoreArgs,
    /// Also check the PostgreSQL server's archiving against this archive (implied by
    /// --host, --port, --user or --dbname; else the libpq environment says where).
    #[arg(long)]
    pub(super) postgres: bool,
    #[command(flatten)]
    pub(super) pg: PgArgs,
    /// [DEST SERVER]
    #[arg(num_args = 0..=2)]
    pub(super) args: Vec<String>,
}
