//! Looking at the catalog: barman-cloud-backup-list / -show / -keep and the native
//! `list`, `show`, `keep`. The JSON is barman's, field for field (CloudNativePG
//! parses it).

use anyhow::Result;
use barrelman_core::backup_info::{list_json, BackupInfo, BackupStatus};
use barrelman_ops::catalog::{self, ChooseError, TargetChoice};
use barrelman_storage::Archive;
use bytes::Bytes;

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

/// `barman-cloud-backup-list` output: barman's console columns, or its JSON.
pub async fn barman_list(target: &Target, format: &str) -> Result<()> {
    let archive = target.open()?;
    let backups = load(&archive).await?;
    if format != "console" {
        outln!("{}", list_json(&backups));
        return Ok(());
    }
    let objects = catalog::base_objects(&archive).await?;
    let keep = catalog::keep_targets(&archive, &objects).await?;
    outln!(
        "{:<20}{:<25}{:<30}{:<17}{:<20}",
        "Backup ID",
        "End Time",
        "Begin Wal",
        "Archival Status",
        "Name"
    );
    for b in &backups {
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
    Ok(())
}

/// The native table: sizes, WAL range and keep status, or barman's JSON.
pub async fn native_list(target: &Target, format: &str) -> Result<()> {
    let archive = target.open()?;
    let backups = load(&archive).await?;
    if format == "json" {
        outln!("{}", list_json(&backups));
        return Ok(());
    }
    let objects = catalog::base_objects(&archive).await?;
    let keep = catalog::keep_targets(&archive, &objects).await?;
    let sizes = catalog::stored_sizes(&objects);
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
    for b in &backups {
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
    Ok(())
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

/// `backup-show`: barman's JSON (`{"cloud": {...}}`), or a console summary.
pub async fn show(target: &Target, wanted: &str, format: &str) -> Result<()> {
    let archive = target.open()?;
    let backups = load(&archive).await?;
    let b = pick(&backups, wanted, target)?;
    if format != "console" && format != "text" {
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
pub enum KeepAction {
    /// Annotate with `full` or `standalone`.
    Set(String),
    Status,
    Release,
}

/// `backup-keep`: annotations of one backup.
pub async fn keep(target: &Target, wanted: &str, action: KeepAction) -> Result<()> {
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

/// How `delete` runs, beyond what it deletes.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteFlags {
    pub minimum_redundancy: u32,
    pub dry_run: bool,
    /// Native `--force`: a STARTED backup that may be running is deleted too.
    pub force: bool,
    /// barman's `--batch-size`: objects per bulk delete request.
    pub batch_size: Option<usize>,
}

/// `backup-delete`: by id or by retention policy, with `--dry-run`.
pub async fn delete(
    target: &Target,
    selection: barrelman_ops::delete::Selection,
    flags: DeleteFlags,
) -> Result<()> {
    use barrelman_ops::delete::{DeleteError, DeleteRequest};
    let archive = target.open()?;
    let dry_run = flags.dry_run;
    let req = DeleteRequest {
        selection,
        minimum_redundancy: flags.minimum_redundancy,
        dry_run,
        now: chrono::Local::now().fixed_offset(),
        force: flags.force,
        batch_size: flags.batch_size,
    };
    let report = match barrelman_ops::delete::delete(&archive, &req).await {
        Ok(r) => r,
        Err(
            e @ (DeleteError::Kept { .. }
            | DeleteError::MinimumRedundancy { .. }
            | DeleteError::Running { .. }
            | DeleteError::Unreadable(_)),
        ) => return Err(CatalogError::Delete(e).into()),
        Err(e) => return Err(e.into()),
    };
    for (id, d) in &report.decisions {
        let verb = if d.deletes() { "delete" } else { "keep" };
        tracing::info!("{id}: {verb}: {}", d.reason());
    }
    for d in &report.deletions {
        let objects = report
            .backup_objects
            .get(&d.backup_id)
            .cloned()
            .unwrap_or_default();
        if dry_run {
            outln!("Skipping deletion of objects {objects:?} due to --dry-run option");
            if !d.wal_keys.is_empty() {
                outln!(
                    "Skipping deletion of objects {:?} due to --dry-run option",
                    d.wal_keys
                );
            }
            outln!(
                "  backup {}: {}; WAL: {}",
                d.backup_id,
                report.decisions[&d.backup_id].reason(),
                d.wal_reason
            );
        } else {
            tracing::info!(
                "backup {}: {} WAL files removed ({})",
                d.backup_id,
                d.wal_keys.len(),
                d.wal_reason
            );
        }
    }
    Ok(())
}

/// `verify`: prints a verdict per backup and the WAL chain; exit 1 unless every
/// backup asked about is restorable.
pub async fn verify(target: &Target, which: Option<&str>, deep: bool) -> Result<()> {
    let archive = target.open()?;
    let report = barrelman_ops::verify::verify(&archive, which, deep).await?;
    let mut first_problem = None;
    for c in &report.backups {
        if c.problems.is_empty() {
            outln!(
                "{}: restorable{}",
                c.backup_id,
                if deep { " (deep check passed)" } else { "" }
            );
        } else {
            outln!("{}: NOT restorable", c.backup_id);
            for p in &c.problems {
                outln!("  - {p}");
            }
            first_problem
                .get_or_insert_with(|| format!("backup {}: {}", c.backup_id, c.problems[0]));
        }
    }
    if report.backups.is_empty() {
        outln!("no backups in {}", target.location());
    }
    if let Some(chain) = &report.chain {
        match &chain.contiguous_until {
            Some(until) => outln!(
                "WAL on timeline {} from {} is contiguous up to {}{}",
                chain.timeline,
                chain.from,
                until,
                if chain.gaps.is_empty() {
                    String::new()
                } else {
                    format!("; gaps at {}", chain.gaps.join(", "))
                }
            ),
            None => outln!(
                "WAL on timeline {}: the newest backup's first segment {} is missing",
                chain.timeline,
                chain.from
            ),
        }
    }
    if let Some(e) = &report.earliest {
        outln!("earliest recovery point: {e} (end of the oldest restorable backup)");
    }
    if let Some(chain) = &report.chain {
        if let (Some(seg), Some(at)) = (&chain.contiguous_until, chain.until_archived_at) {
            outln!(
                "latest recovery point: about {} (when {seg}, the last segment without a gap, was archived)",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
    }
    for d in &report.differing_wal {
        outln!(
            "WAL file {} is stored with different content in: {} (restore serves the first)",
            d.name,
            d.keys.join(", ")
        );
        first_problem.get_or_insert_with(|| {
            format!(
                "WAL file {} is stored with different content in {}",
                d.name,
                d.keys.join(" and ")
            )
        });
    }
    match first_problem {
        Some(p) => Err(CatalogError::NotRestorable(p).into()),
        None => Ok(()),
    }
}

/// `doctor`: every finding with its fix; exit 1 when there is any. With `server`,
/// PostgreSQL's archiving is checked against the archive too.
pub async fn doctor(
    target: &Target,
    server: Option<barrelman_postgres::session::ConnectOptions>,
) -> Result<()> {
    let mut options = target.settings.clone();
    options.common.max_retries = Some(1);
    let archive = Archive::open(&target.destination, &target.server_name, &options)?;
    let facts = match server {
        Some(connect) => {
            let session = barrelman_postgres::session::Session::connect(&connect)
                .await
                .map_err(CatalogError::Server)?;
            Some(
                session
                    .archiving_facts()
                    .await
                    .map_err(CatalogError::Server)?,
            )
        }
        None => None,
    };
    let server = facts
        .as_ref()
        .map(|facts| barrelman_ops::doctor::ServerToCheck {
            facts,
            destination_url: &target.destination.url,
            server_name: &target.server_name,
        });
    let findings = barrelman_ops::doctor::examine(&archive, server).await?;
    if findings.is_empty() {
        outln!("{}: no problems found", target.location());
        return Ok(());
    }
    for (i, f) in findings.iter().enumerate() {
        outln!("{}. {}", i + 1, f.problem);
        outln!("   fix: {}", f.fix);
    }
    Err(CatalogError::Problems {
        count: findings.len(),
        location: target.location(),
    }
    .into())
}
