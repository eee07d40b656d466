//! The `barrelman` binary. Invoked under a barman-cloud tool's name (a link made by
//! `barrelman install-links`), it behaves as that tool; otherwise it is the native CLI.

mod barman;
mod exit;
mod logging;
mod native;
mod target;
mod walops;

use std::ffi::OsString;

/// One runtime per process: a current-thread scheduler is enough for one WAL, and
/// the codecs run on tokio's blocking threads beside it.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn main() {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| OsString::from("barrelman"));
    let prog = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest: Vec<OsString> = args.collect();
    let code = if prog.starts_with("barman-cloud-") {
        barman::run(&prog, rest)
    } else {
        native::run(rest)
    };
    std::process::exit(code);
}
