//! The face-neutral command layer: one module per job, each taking plain values
//! (a resolved [`Target`](crate::target::Target), the libraries' request and option
//! types, small request structs of its own), never clap types. The faces
//! (`face::barman`, `face::native`) parse their flags into these and call them;
//! [`run_to_exit`] runs any of them and turns the outcome into the exit code.

pub(crate) mod backup;
pub(crate) mod catalog;
pub(crate) mod delete;
pub(crate) mod doctor;
pub(crate) mod links;
pub(crate) mod probe;
mod progress;
pub(crate) mod restore;
pub(crate) mod verify;
pub(crate) mod wal;

use crate::exit;
use std::future::Future;

/// Which tokio runtime a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuntimeKind {
    /// One thread: enough for one WAL or a catalog command; the codecs run on
    /// tokio's blocking threads beside it.
    CurrentThread,
    /// Two workers: backups and restores compress, decompress and move data at once,
    /// so both cores work for them.
    MultiThread,
}

impl RuntimeKind {
    pub(crate) fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Self::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Self::MultiThread => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
        }
    }
}

/// The one way both faces run a command: installs the logger at `verbosity` (`-v`
/// count minus `-q` count), starts the runtime, runs `job` on it, and returns the
/// exit code it answered with, or, when it failed, logs the failure as one line and
/// returns the code of its class (see [`exit::report`]).
pub(crate) fn run_to_exit<F>(verbosity: i32, runtime: RuntimeKind, job: impl FnOnce() -> F) -> i32
where
    F: Future<Output = anyhow::Result<i32>>,
{
    crate::logging::init(verbosity);
    let rt = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return exit::GENERAL_ERROR;
        }
    };
    match rt.block_on(job()) {
        Ok(code) => code,
        Err(e) => exit::report(&e),
    }
}
