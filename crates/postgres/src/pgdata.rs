//! Files in PGDATA that archiving reads or writes.

use barrelman_core::wal::WalName;
use std::io;
use std::path::{Path, PathBuf};

/// CloudNativePG's marker: while it exists, the WAL archive must be empty before the
/// first upload (a new cluster must not archive into another cluster's folder).
const CHECK_EMPTY_MARKER: &str = ".check-empty-wal-archive";

/// Path of the empty-archive marker in `pgdata`.
pub fn check_empty_marker(pgdata: &Path) -> PathBuf {
    pgdata.join(CHECK_EMPTY_MARKER)
}

/// WAL files PostgreSQL has marked ready for archiving (`pg_wal/archive_status/*.ready`),
/// in name order, which is the order PostgreSQL archives them in.
pub fn ready_wals(pgdata: &Path) -> io::Result<Vec<WalName>> {
    let dir = pgdata.join("pg_wal").join("archive_status");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".ready")) else {
            continue;
        };
        if let Ok(wal) = WalName::parse(stem) {
            out.push(wal);
        }
    }
    out.sort();
    Ok(out)
}

/// Where PostgreSQL keeps `wal` in `pgdata`.
pub fn wal_path(pgdata: &Path, wal: &WalName) -> PathBuf {
    pgdata.join("pg_wal").join(wal.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_ready_files_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let status = tmp.path().join("pg_wal/archive_status");
        std::fs::create_dir_all(&status).unwrap();
        for f in [
            "000000010000000000000003.ready",
            "000000010000000000000002.done",
            "000000010000000000000001.ready",
            "00000002.history.ready",
            "junk.ready",
        ] {
            std::fs::write(status.join(f), b"").unwrap();
        }
        let names: Vec<String> = ready_wals(tmp.path())
            .unwrap()
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "000000010000000000000001",
                "000000010000000000000003",
                "00000002.history"
            ]
        );
    }
}
