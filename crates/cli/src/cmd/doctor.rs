//! Diagnosing an archive, and optionally the PostgreSQL server archiving into it:
//! every finding with its fix (`barrelman doctor`).

use crate::errors::CatalogError;
use crate::output::outln;
use crate::target::Target;
use anyhow::Result;
use barrelman_postgres::session::{ConnectOptions, Session};

/// `doctor`: every finding with its fix; exit 1 when there is any. With `server`,
/// PostgreSQL's archiving is checked against the archive too.
pub(crate) async fn doctor(target: &Target, server: Option<ConnectOptions>) -> Result<()> {
    let archive = super::probe::probe_archive(target)?;
    let facts = match server {
        Some(connect) => {
            let session = Session::connect(&connect)
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
