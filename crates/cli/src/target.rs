//! Resolving "which archive" from the command line: barman's `DEST SERVER` with cloud
//! flags, or an ObjectStore manifest with its secrets read from a directory laid out
//! like a mounted Kubernetes Secret. The resolving itself is
//! `barrelman_storage::config`; this only adds the captured process environment.

use crate::environment;
use anyhow::Result;
use barrelman_storage::config::{load_manifest, DirectorySecrets, ManifestDraft};
use std::path::Path;

pub use barrelman_storage::config::{CloudFlags, Target};

/// From barman-style positionals and flags; credentials from the environment.
pub fn from_barman(dest: &str, server: &str, flags: &CloudFlags) -> Result<Target> {
    Ok(Target::from_barman(
        dest,
        server,
        flags,
        &environment::captured().store,
    )?)
}

/// From an ObjectStore manifest file; secrets from `secrets_dir` (else the
/// environment).
pub fn from_manifest(file: &Path, server: &str, secrets_dir: Option<&Path>) -> Result<Target> {
    let store = load_manifest(file)?;
    let mut draft = ManifestDraft::new(store, server, &environment::captured().store)?;
    if let Some(dir) = secrets_dir {
        // Files are read at once: no runtime is needed to wait for them.
        let secrets = DirectorySecrets::new(dir);
        for request in draft.requests() {
            let value = secrets.read_now(&request.selector, request.purpose)?;
            draft.supply(&request, value);
        }
    }
    Ok(draft.finish()?)
}
