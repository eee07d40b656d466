//! Checking that backups can be restored: every object they need, the WAL chain
//! after them, and with `deep` their contents (`barrelman verify`).

use crate::errors::CatalogError;
use crate::output::outln;
use crate::target::Target;
use anyhow::Result;

/// `verify`: prints a verdict per backup and the WAL chain; exit 1 unless every
/// backup asked about is restorable.
pub(crate) async fn verify(target: &Target, which: Option<&str>, deep: bool) -> Result<()> {
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
