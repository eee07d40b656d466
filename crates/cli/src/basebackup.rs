//! Base backup and restore commands shared by `barman-cloud-backup`,
//! `barman-cloud-restore` and the native `barrelman backup` / `restore`.

use anyhow::{Context, Result};
use barrelman_core::backup_info::BackupInfo;
use barrelman_ops::backup::{take_backup, BackupOptions};
use barrelman_ops::catalog::TargetChoice;
use barrelman_ops::progress::Progress;
use barrelman_ops::restore::{restore_backup, RestoreOptions};
use barrelman_postgres::recovery::{write_recovery_config, RecoveryTarget};
use barrelman_postgres::session::{ConnectOptions, Session};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::errors::{BaseBackupError, InputError};
use crate::output::outln;
use crate::target::Target;

/// Shows progress while `fut` runs: a bar with bytes, rate and ETA on a terminal,
/// a line every 10 s in logs otherwise.
async fn with_progress<T>(
    what: &str,
    progress: &Progress,
    fut: impl std::future::Future<Output = T>,
) -> T {
    let started = Instant::now();
    let p = progress.clone();
    let what = what.to_string();
    let tty = std::io::stderr().is_terminal();
    let reporter = tokio::spawn(async move {
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(what.clone());
            b
        });
        let mut last_log = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(if tty { 200 } else { 1000 })).await;
            let (done, total) = p.get();
            if let Some(b) = &bar {
                b.set_length(total.max(done));
                b.set_position(done);
            } else if last_log.elapsed() >= Duration::from_secs(10) {
                last_log = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let rate = done as f64 / secs;
                let eta = if rate > 0.0 && total > done {
                    format!("{:.0}s", (total - done) as f64 / rate)
                } else {
                    "-".into()
                };
                tracing::info!(
                    "{what}: {} of {} MiB, {:.1} MiB/s, ETA {eta}",
                    done >> 20,
                    total >> 20,
                    rate / 1048576.0
                );
            }
        }
    });
    let out = fut.await;
    reporter.abort();
    let _ = reporter.await;
    if tty {
        eprint!("\r\x1b[2K");
    }
    let (done, _) = progress.get();
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        "{} MiB in {secs:.1}s ({:.1} MiB/s)",
        done >> 20,
        done as f64 / 1048576.0 / secs.max(0.001)
    );
    out
}

/// Takes a backup and prints its id (and name) at the end.
pub async fn backup(
    target: &Target,
    connect: &ConnectOptions,
    opts: &BackupOptions,
) -> Result<BackupInfo> {
    let archive = target.open_for_backups()?;
    let mut connect = connect.clone();
    connect
        .application_name
        .get_or_insert_with(|| "barman_cloud_backup".into());
    let session = Session::connect(&connect)
        .await
        .map_err(BaseBackupError::Connect)?;
    let progress = Progress::new();
    let result = with_progress(
        "backup",
        &progress,
        take_backup(&archive, &session, opts, &progress),
    )
    .await;
    match result {
        Ok(info) => {
            match &info.backup_name {
                Some(n) => outln!(
                    "backup {} ({n}) DONE in {}",
                    info.backup_id,
                    target.location()
                ),
                None => outln!("backup {} DONE in {}", info.backup_id, target.location()),
            }
            Ok(info)
        }
        Err(e) => match e.info.as_ref().map(|i| i.backup_id.clone()) {
            Some(id) => Err(BaseBackupError::Failed { id, source: e }.into()),
            None => Err(BaseBackupError::NotStarted(e).into()),
        },
    }
}

/// Restores a backup; optionally writes the recovery settings.
pub async fn restore(
    target: &Target,
    opts: &RestoreOptions,
    recovery: Option<(String, RecoveryTarget)>,
) -> Result<BackupInfo> {
    let archive = target.open()?;
    let progress = Progress::new();
    let info = with_progress(
        "restore",
        &progress,
        restore_backup(&archive, opts, &progress),
    )
    .await
    .map_err(BaseBackupError::Restore)?;
    if let Some((cmd, rt)) = recovery {
        write_recovery_config(&opts.destination, &cmd, &rt).with_context(|| {
            format!(
                "cannot write the recovery settings in {}",
                opts.destination.display()
            )
        })?;
    }
    // barman-cloud-restore prints nothing on success; the native command says what
    // it restored (its caller prints that).
    Ok(info)
}

/// `auto` needs the targets in a comparable form.
pub fn target_choice(
    time: Option<&str>,
    lsn: Option<&str>,
    tli: Option<&str>,
) -> Result<TargetChoice> {
    let time = time
        .map(|t| {
            barrelman_core::backup_info::parse_time(t)
                .map_err(|e| InputError(format!("invalid --target-time '{t}': {e}")))
        })
        .transpose()?;
    let lsn = lsn
        .map(|l| l.parse::<barrelman_core::lsn::Lsn>())
        .transpose()?;
    let tli = match tli {
        None | Some("current") | Some("latest") => None,
        Some(n) => Some(n.parse::<u32>().map_err(|_| {
            InputError(format!(
                "invalid --target-tli '{n}': use a number, current or latest"
            ))
        })?),
    };
    Ok(TargetChoice { time, lsn, tli })
}

/// `NAME:LOCATION` pairs of `--tablespace`.
pub fn tablespace_map(rules: &[String]) -> Result<Vec<(String, std::path::PathBuf)>> {
    rules
        .iter()
        .map(|r| {
            let (n, l) = r
                .split_once(':')
                .filter(|(n, l)| !n.is_empty() && !l.is_empty())
                .ok_or_else(|| {
                    InputError(format!("invalid --tablespace '{r}': use NAME:LOCATION"))
                })?;
            Ok((n.to_string(), std::path::PathBuf::from(l)))
        })
        .collect()
}

/// How long a backup waits for its WAL: the flag, else `BARRELMAN_WAL_WAIT` (seconds;
/// also for the barman-cloud-backup name, which has no such flag), else 120 s.
pub fn wal_wait(flag: Option<u64>) -> Duration {
    let secs = flag
        .or_else(|| {
            std::env::var("BARRELMAN_WAL_WAIT")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(120);
    Duration::from_secs(secs)
}
