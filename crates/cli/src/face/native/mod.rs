//! The native `barrelman` command line. Each command takes the archive either as
//! barman's `DEST SERVER` positionals with the same cloud flags, or as
//! `--config OBJECTSTORE.yaml --server-name NAME [--secrets-dir DIR]`; the manifest
//! also gives defaults for the flags not given. The flags themselves are declared in
//! [`args`]; this turns them into the command layer's requests.

mod args;

use self::args::*;
use crate::cmd::restore::RecoverySettings;
use crate::cmd::{self, RuntimeKind};
use crate::errors::InputError;
use crate::exit;
use crate::flags;
use crate::output::outln;
use crate::target::{self, CloudFlags, Target};
use anyhow::{Context, Result};
use barrelman_ops::wal::{ArchiveRequest, RestoreRequest};
use barrelman_postgres::session::ConnectOptions;
use barrelman_storage::UploadOptions;
use clap::Parser;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Runs the native CLI; returns the exit code.
pub(crate) fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(std::iter::once(OsString::from("barrelman")).chain(args)) {
        Ok(c) => c,
        Err(e) => return super::parse_refusal(e),
    };
    // The plugin sidecar has its own logging (JSON lines) and exit codes.
    let cli = match cli.command {
        Command::Cnpg(a) => return crate::cnpgcmd::run(a),
        _ => cli,
    };
    // Backups and restores are long: both threads of the runtime work for them.
    let runtime = match cli.command {
        Command::Backup(_) | Command::Restore(_) => RuntimeKind::MultiThread,
        _ => RuntimeKind::CurrentThread,
    };
    // WARNING by default, as barman: progress lines need -v (a terminal gets a bar).
    let verbosity = i32::from(cli.verbose) - i32::from(cli.quiet);
    cmd::run_to_exit(verbosity, runtime, || async move {
        dispatch(cli.command).await.map(|()| exit::SUCCESS)
    })
}

/// Runs one subcommand.
async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::WalArchive(a) => wal_archive(a).await,
        Command::WalRestore(a) => wal_restore(a).await,
        Command::CheckEmpty(a) => check_empty(a).await,
        Command::Backup(a) => backup(a).await,
        Command::Restore(a) => restore(a).await,
        Command::List(a) => list(a).await,
        Command::Show(a) => show(a).await,
        Command::Keep(a) => keep(a).await,
        Command::Delete(a) => delete(a).await,
        Command::Verify(a) => verify(a).await,
        Command::Doctor(a) => doctor(a).await,
        Command::Cnpg(_) => unreachable!("cnpg commands return before the runtime starts"),
        Command::InstallLinks { dir } => {
            cmd::links::install_links(&dir, &crate::face::barman::TOOL_NAMES)
        }
    }
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
            target = target::from_manifest(config, server, self.secrets_dir.as_deref())?;
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
            target = target::from_barman(&positionals[0], &positionals[1], &flags)?;
            rest = positionals[2..].to_vec();
        }
        if self.config.is_some() && self.endpoint_url.is_some() {
            target.settings.common.endpoint_url = self.endpoint_url.clone();
        }
        if rest.len() != wanted {
            return Err(InputError(format!("wrong number of arguments; usage: {usage}")).into());
        }
        Ok((target, rest))
    }
}

impl PgArgs {
    /// Whether any of the connection flags was given.
    fn given(&self) -> bool {
        self.host.is_some() || self.port.is_some() || self.user.is_some() || self.dbname.is_some()
    }

    /// The connection they ask for; the rest comes from the libpq environment.
    fn connect(self, application_name: &str) -> ConnectOptions {
        flags::postgres(
            self.host,
            self.port,
            self.user,
            self.dbname,
            Some(application_name.into()),
        )
    }
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
    let compression = flags::compression_choice(
        a.compression.as_deref(),
        wal.as_ref().and_then(|w| w.compression.as_deref()),
    )?;
    let level = flags::resolve_level(compression, a.compression_level.as_deref())?;
    let tags = flags::manifest_tags(&target, &a.tag)?;
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
        spool_dir: Some(flags::default_spool(a.spool_dir)),
        must_be_empty: None,
    };
    cmd::wal::archive(&target, req).await
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
    let req = RestoreRequest {
        wal_name: rest[0].clone(),
        dest: PathBuf::from(&rest[1]),
        allow_partial: !a.no_partial,
        parallel,
        spool_dir: Some(flags::default_spool(a.spool_dir)),
    };
    cmd::wal::restore(&target, &req).await
}

async fn check_empty(a: CheckEmptyArgs) -> Result<()> {
    let (target, _) = a.store.resolve(
        &a.args,
        0,
        "barrelman check-empty [DEST SERVER | --config F --server-name N]",
    )?;
    cmd::wal::check_empty(&target, a.timeline).await
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
    let compression = flags::compression_choice(
        a.compression.as_deref(),
        data.as_ref().and_then(|d| d.compression.as_deref()),
    )?;
    compression
        .for_backups()
        .map_err(|e| InputError(e.to_string()))?;
    if let Some(n) = &a.name {
        barrelman_ops::plan::check_backup_name(n)?;
    }
    let tags = flags::manifest_tags(&target, &a.tag)?;
    let opts = barrelman_ops::backup::BackupOptions {
        compression,
        level: flags::resolve_level(compression, a.compression_level.as_deref())?,
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
        max_archive_size: flags::size_arg("--max-archive-size", &a.max_archive_size)?,
        min_chunk_size: None,
        name: a.name.clone(),
        tags,
        wal_wait: flags::wal_wait(a.wal_wait),
        max_bandwidth: a
            .max_bandwidth
            .as_deref()
            .map(|v| flags::size_arg("--max-bandwidth", v))
            .transpose()?,
    };
    let connect = a.pg.connect("barrelman_ops");
    cmd::backup::backup(&target, &connect, &opts)
        .await
        .map(|_| ())
}

async fn list(a: ListArgs) -> Result<()> {
    let usage = "barrelman list [DEST SERVER | --config F --server-name N]";
    let (target, _) = a.store.resolve(&a.args, 0, usage)?;
    let format = if a.format == "json" {
        cmd::catalog::ListFormat::Json
    } else {
        cmd::catalog::ListFormat::NativeTable
    };
    cmd::catalog::list(&target, format).await
}

async fn show(a: ShowArgs) -> Result<()> {
    let usage = "barrelman show [DEST SERVER | --config F --server-name N] BACKUP_ID";
    let (target, rest) = a.store.resolve(&a.args, 1, usage)?;
    let format = if a.format == "json" {
        cmd::catalog::ShowFormat::Json
    } else {
        cmd::catalog::ShowFormat::Text
    };
    cmd::catalog::show(&target, &rest[0], format).await
}

async fn keep(a: KeepArgs) -> Result<()> {
    use cmd::catalog::KeepAction;
    let usage = "barrelman keep [DEST SERVER | --config F --server-name N] BACKUP_ID";
    let (target, rest) = a.store.resolve(&a.args, 1, usage)?;
    let action = match (a.target, a.status) {
        (Some(t), _) => KeepAction::Set(t),
        (None, true) => KeepAction::Status,
        (None, false) => KeepAction::Release,
    };
    cmd::catalog::keep(&target, &rest[0], action).await
}

async fn delete(a: DeleteArgs) -> Result<()> {
    use barrelman_ops::delete::Selection;
    let usage = "barrelman delete [DEST SERVER | --config F --server-name N] (--backup ID | --retention-policy P)";
    let (target, _) = a.store.resolve(&a.args, 0, usage)?;
    let selection = if let Some(id) = a.backup {
        Selection::Backup(id)
    } else {
        use barrelman_core::retention::Policy;
        let policy = match a.retention_policy {
            Some(p) => p.parse::<Policy>()?,
            None => {
                let manifest = target
                    .manifest
                    .as_ref()
                    .and_then(|m| m.spec.retention_policy.as_deref())
                    .ok_or_else(|| {
                        InputError(
                            "give --backup ID or --retention-policy (or a retentionPolicy in the manifest)"
                                .into(),
                        )
                    })?;
                Policy::from_cnpg(manifest)?
            }
        };
        Selection::Policy(policy)
    };
    let flags = cmd::delete::DeleteFlags {
        minimum_redundancy: a.minimum_redundancy,
        dry_run: a.dry_run,
        force: a.force,
        batch_size: a.batch_size.map(usize::from),
    };
    cmd::delete::delete(&target, selection, flags).await
}

async fn verify(a: VerifyArgs) -> Result<()> {
    let usage =
        "barrelman verify [DEST SERVER | --config F --server-name N] [BACKUP_ID | --all] [--deep]";
    let wanted_positionals = if a.store.config.is_some() {
        a.args.len()
    } else {
        a.args.len().saturating_sub(2)
    };
    let (target, rest) = a.store.resolve(&a.args, wanted_positionals.min(1), usage)?;
    let which = if a.all {
        None
    } else {
        rest.first().map(String::as_str)
    };
    cmd::verify::verify(&target, which, a.deep).await
}

async fn doctor(a: DoctorArgs) -> Result<()> {
    let usage = "barrelman doctor [DEST SERVER | --config F --server-name N] [--postgres | --host H --port P …]";
    let (target, _) = a.store.resolve(&a.args, 0, usage)?;
    let server = (a.postgres || a.pg.given()).then(|| a.pg.connect("barrelman_doctor"));
    cmd::doctor::doctor(&target, server).await
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
    recovery_target.validate()?;
    let choice = flags::target_choice(a.target_time.as_deref(), a.target_lsn.as_deref(), None)?;
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
        tablespace_map: flags::tablespace_map(&a.tablespace)?,
        jobs: a.jobs.max(1),
    };
    let recovery = if a.no_recovery_config {
        None
    } else {
        Some(RecoverySettings {
            restore_command: restore_command(&a.store, &a.args)?,
            target: recovery_target,
        })
    };
    let info = cmd::restore::restore(&target, &opts, recovery).await?;
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
#[path = "../../fuzz_native.rs"]
mod fuzz;
