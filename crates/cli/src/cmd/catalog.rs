//! Looking at the catalog: barman-cloud-backup-list / -show / -keep and the native
//! `list`, `show`, `keep`. The JSON is barman's, field for field (CloudNativePG
//! parses it).

use anyhow::Result;
use barrelman_core::backup_info::{list_json, BackupInfo, BackupStatus};
use barrelman_ops::catalog::{self, ChooseError, TargetChoice};
use barrelman_storage::Archive;
use bytes::Bytes;
use std::collections::BTreeMap;

use crate::errors::CatalogError;
use crate::output::outln;
use crate::target::Target;

/// Reads the catalog; unreadable `backup.info` files are warned about and skipped.
async fn load(archive: &Archive) -> Result<Vec<BackupInfo>> {
    let (backups, unreadable) = catalog::load(archive).await?;
    for u in unreadable {
        tracing::warn!("skipping an unreadable backup.info: {u}");
    }
    Ok(backups)
}

/// Resolves an id, name or shortcut as barman's show/keep do: an unknown id fails
/// the operation (exit 1), an unknown name is a general error (exit 4).
fn pick<'a>(backups: &'a [BackupInfo], wanted: &str, target: &Target) -> Result<&'a BackupInfo> {
    match catalog::choose(backups, wanted, &TargetChoice::default()) {
        Ok(b) => Ok(b),
        Err(ChooseError::UnknownId(id)) => Err(CatalogError::NoSuchBackup {
            id,
            server: target.server_name.clone(),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// How `list` prints the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListFormat {
    /// barman-cloud-backup-list's console columns.
    BarmanConsole,
    /// The native table: sizes, WAL range and keep status.
    NativeTable,
    /// barman-cloud-backup-list's JSON.
    Json,
}

/// Lists the backups of `target` in `format`.
pub(crate) async fn list(target: &Target, format: ListFormat) -> Result<()> {
    let archive = target.open()?;
    let backups = load(&archive).await?;
    if format == ListFormat::Json {
        outln!("{}", list_json(&backups));
        return Ok(());
    }
    let objects = catalog::base_objects(&archive).await?;
    let keep = catalog::keep_targets(&archive, &objects).await?;
    if format == ListFormat::BarmanConsole {
        print_barman_columns(&backups, &keep);
    } else {
        print_native_table(&backups, &keep, &catalog::stored_sizes(&objects), target);
    }
    Ok(())
}

/// barman's console columns; the archival status of a DONE backup is its keep mark.
fn print_barman_columns(backups: &[BackupInfo], keep: &BTreeMap<String, String>) {
    outln!(
        "{:<20}{:<25}{:<30}{:<17}{:<20}",
        "Backup ID",
        "End Time",
        "Begin Wal",
        "Archival Status",
        "Name"
    );
    for b in backups {
        let end = b
            .end_time
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let status = if b.status == BackupStatus::Done {
            keep.get(&b.backup_id)
                .map(|k| format!("KEEP:{}", k.to_uppercase()))
                .unwrap_or_default()
        } else {
            b.status.as_str().to_string()
        };
        outln!(
            "{:<20}{:<25}{:<30}{:<17}{:<20}",
            b.backup_id,
            end,
            b.begin_wal.as_deref().unwrap_or(""),
            status,
            b.backup_name.as_deref().unwrap_or("")
        );
    }
}

/// The native table, with the stored size of each backup.
fn print_native_table(
    backups: &[BackupInfo],
    keep: &BTreeMap<String, String>,
    sizes: &BTreeMap<String, u64>,
    target: &Target,
) {
    outln!(
        "{:<16} {:<22} {:<8} {:<20} {:<25} {:>10} {:<10}",
        "BACKUP ID",
        "NAME",
        "STATUS",
        "END TIME",
        "WAL",
        "STORED",
        "KEEP"
    );
    for b in backups {
        let wal = format!(
            "{}..{}",
            b.begin_wal
                .as_deref()
                .map(|w| &w[w.len().saturating_sub(8)..])
                .unwrap_or("?"),
            b.end_wal
                .as_deref()
                .map(|w| &w[w.len().saturating_sub(8)..])
                .unwrap_or("?")
        );
        outln!(
            "{:<16} {:<22} {:<8} {:<20} {:<25} {:>10} {:<10}",
            b.backup_id,
            b.backup_name.as_deref().unwrap_or("-"),
            b.status.as_str(),
            b.end_time
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into()),
            format!(
                "{}/{wal}",
                b.timeline.map(|t| t.to_string()).unwrap_or_default()
            ),
            human(sizes.get(&b.backup_id).copied().unwrap_or(0)),
            keep.get(&b.backup_id).map(String::as_str).unwrap_or("-"),
        );
    }
    if backups.is_empty() {
        outln!("(no backups in {})", target.location());
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// How `show` prints a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShowFormat {
    /// barman's console summary.
    Text,
    /// barman-cloud-backup-show's JSON (`{"cloud": {...}}`).
    Json,
}

/// `backup-show`: one backup (id, name or shortcut) in `format`.
pub(crate) async fn show(target: &Target, wanted: &str, format: ShowFormat) -> Result<()> {
    let archive = target.open()?;
    let backups = load(&archive).await?;
    let b = pick(&backups, wanted, target)?;
    if format == ShowFormat::Json {
        outln!("{}", b.show_json());
        return Ok(());
    }
    let row = |k: &str, v: String| outln!("  {k:<23}: {v}");
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "None".into());
    outln!("Backup {}:", b.backup_id);
    if let Some(n) = &b.backup_name {
        row("Backup Name", n.clone());
    }
    row("Server Name", opt(&b.server_name));
    row("System Id", opt(&b.systemid));
    row("Status", b.status.as_str().to_string());
    row(
        "PostgreSQL Version",
        b.version.map(|v| v.to_string()).unwrap_or_default(),
    );
    row("PGDATA directory", opt(&b.pgdata));
    if let Some(e) = &b.error {
        row("Error", e.clone());
    }
    outln!();
    if let Some(ts) = &b.tablespaces {
        outln!("  Tablespaces:");
        for t in ts {
            outln!("    {:<21}: {} (oid: {})", t.name, t.location, t.oid);
        }
        outln!();
    }
    outln!("  Base backup information:");
    let nested = |k: &str, v: String| outln!("    {k:<21}: {v}");
    nested(
        "Timeline",
        b.timeline.map(|t| t.to_string()).unwrap_or_default(),
    );
    nested("Begin WAL", opt(&b.begin_wal));
    nested("End WAL", opt(&b.end_wal));
    nested(
        "Begin time",
        b.begin_time
            .map(|t| t.to_string())
            .unwrap_or_else(|| "None".into()),
    );
    nested(
        "End time",
        b.end_time
            .map(|t| t.to_string())
            .unwrap_or_else(|| "None".into()),
    );
    nested(
        "Begin Offset",
        b.begin_offset
            .map(|t| t.to_string())
            .unwrap_or_else(|| "None".into()),
    );
    nested(
        "End Offset",
        b.end_offset
            .map(|t| t.to_string())
            .unwrap_or_else(|| "None".into()),
    );
    nested("Begin LSN", opt(&b.begin_xlog));
    nested("End LSN", opt(&b.end_xlog));
    Ok(())
}

/// What `keep` does.
#[derive(Debug, Clone)]
pub(crate) enum KeepAction {
    /// Annotate with `full` or `standalone`.
    Set(String),
    /// Print the keep status.
    Status,
    /// Remove the annotation.
    Release,
}

/// `backup-keep`: annotations of one backup.
pub(crate) async fn keep(target: &Target, wanted: &str, action: KeepAction) -> Result<()> {
    let archive = target.open()?;
    let backups = load(&archive).await?;
    let b = pick(&backups, wanted, target)?;
    let key = catalog::keep_key(&archive, &b.backup_id);
    match action {
        KeepAction::Status => {
            let current = archive.get_small(&key).await?;
            let word = current
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_string()
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "nokeep".into());
            outln!("Keep: {word}");
        }
        KeepAction::Release => archive.delete_object(&key).await?,
        KeepAction::Set(word) => {
            if b.status != BackupStatus::Done {
                return Err(CatalogError::NotKeepable {
                    id: b.backup_id.clone(),
                    status: b.status.as_str().to_string(),
                }
                .into());
            }
            archive.put_small(&key, Bytes::from(word), &[]).await?;
        }
    }
    Ok(())
}
