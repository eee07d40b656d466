//! The library crates take their environment as a value (`storage::config::Environment`,
//! `postgres::session::PgEnvironment`); only the command line reads the process
//! environment. This reads the libraries' sources and fails on any code (not
//! comment) that reads it, so a new `std::env::var` cannot slip in.

use std::path::{Path, PathBuf};

/// Calls that read the process environment, directly or through object_store.
const READERS: &[&str] = &[
    "env::var(",
    "env::var_os(",
    "env::vars(",
    "env::vars_os(",
    "from_env(",
    "env!(\"AWS",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn library_crates_never_read_the_process_environment() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for lib in ["core", "storage", "postgres", "ops"] {
        rust_files(&crates.join(lib).join("src"), &mut files);
    }
    assert!(files.len() > 20, "the sources were not found: {files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests may set up their own process; library code may not read it.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            if READERS.iter().any(|r| line.contains(r)) {
                found.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "library code reads the process environment; take it as an input instead:\n{}",
        found.join("\n")
    );
}
