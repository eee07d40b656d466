//! Where the test tools are: the tools venv (`weed`, `barman-cloud-*`, a Python
//! with `boto3`) and the PostgreSQL 15 binaries.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub(crate) fn workspace_root() -> PathBuf {
    // crates/testkit -> workspace root
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Directory of the tools venv's `bin` (`weed`, `barman-cloud-*`, `python`).
///
/// The venv root is `$BARRELMAN_TOOLS` when set (a relative path is taken from the
/// workspace root), else `<workspace root>/.tools/venv`.
///
/// # Panics
/// If the venv (or its `python` / `weed`) is missing, with a message telling to run
/// `scripts/setup-test-env.sh`.
pub fn tools_bin() -> PathBuf {
    let root = match std::env::var_os("BARRELMAN_TOOLS") {
        // relative: to the workspace root, as scripts/setup-test-env.sh does
        Some(v) if !v.is_empty() => workspace_root().join(v),
        _ => workspace_root().join(".tools").join("venv"),
    };
    let bin = root.join("bin");
    for exe in ["python", "weed", "barman-cloud-wal-archive"] {
        if !bin.join(exe).is_file() {
            panic!(
                "test tools missing: {} not found (venv root {}, from $BARRELMAN_TOOLS or \
                 <workspace>/.tools/venv). Run scripts/setup-test-env.sh first.",
                bin.join(exe).display(),
                root.display()
            );
        }
    }
    bin
}

/// Path of the PostgreSQL 15 bin dir.
///
/// `$PG_BINDIR` when set, else `/usr/lib/postgresql/15/bin` when it holds `initdb`,
/// else the output of `pg_config --bindir`.
///
/// # Panics
/// If none of these gives a directory with `initdb`.
pub fn pg_bindir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let has_initdb = |d: &Path| d.join("initdb").is_file();
        if let Some(v) = std::env::var_os("PG_BINDIR").filter(|v| !v.is_empty()) {
            let d = PathBuf::from(v);
            assert!(has_initdb(&d), "PG_BINDIR={} has no initdb", d.display());
            return d;
        }
        let deb = PathBuf::from("/usr/lib/postgresql/15/bin");
        if has_initdb(&deb) {
            return deb;
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if out.status.success() && has_initdb(&d) {
                return d;
            }
        }
        panic!(
            "PostgreSQL 15 binaries not found (tried $PG_BINDIR, /usr/lib/postgresql/15/bin, \
             pg_config --bindir). Run scripts/setup-test-env.sh first."
        )
    })
    .clone()
}
