//! The `barrelman` binary. Invoked under a barman-cloud tool's name (a link made by
//! `barrelman install-links`), it behaves as that tool; otherwise it is the native CLI.

mod argtypes;
mod cmd;
mod cnpgcmd;
mod environment;
mod errors;
mod exit;
mod face;
mod flags;
mod logging;
mod output;
mod target;

/// The corpus and mutation helpers shared by the fuzz tests of every crate.
#[cfg(test)]
#[path = "../../../fuzz/support.rs"]
mod fuzz_support;

use std::ffi::OsString;

fn main() {
    // SIGPIPE stays ignored, as Rust's runtime sets it: a write to a connection the
    // peer reset must be an error that is logged and retried (or fails the backup),
    // never a signal that kills the process silently. Output piped into `head` is
    // handled where it is written (`output::outln!`).
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| OsString::from("barrelman"));
    let prog = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest: Vec<OsString> = args.collect();
    let code = if prog.starts_with("barman-cloud-") {
        face::barman::run(&prog, rest)
    } else {
        face::native::run(rest)
    };
    if std::env::var_os("BARRELMAN_REPORT_PEAK_RSS").is_some() {
        report_peak_rss();
    }
    std::process::exit(code);
}

/// Prints this process's peak resident set size (`VmHWM`) on stderr, for tests and
/// benchmarks that hold barrelman to its memory bound. It is read from the process
/// itself because a parent's `wait4` also counts the memory of the process it was
/// forked from.
fn report_peak_rss() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
        let kb = line.trim_start_matches("VmHWM:").trim();
        eprintln!("barrelman: peak RSS {kb}");
    }
}
