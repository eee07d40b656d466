//! `barrelman install-links`: the barman-cloud-* names as links to this binary, so
//! that tools and operators calling barman-cloud find barrelman under those names.

use crate::output::outln;
use anyhow::{Context, Result};
use std::path::Path;

/// Creates a link named each of `names` in `dir` (created if missing) to this
/// binary, replacing links already there but no other file.
pub(crate) fn install_links(dir: &Path, names: &[&str]) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the path of this binary")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for name in names {
        let link = dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&link)?,
            Ok(_) => anyhow::bail!(
                "{} exists and is not a link; remove it first",
                link.display()
            ),
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("cannot create the link {}", link.display()))?;
        outln!("{} -> {}", link.display(), exe.display());
    }
    Ok(())
}
