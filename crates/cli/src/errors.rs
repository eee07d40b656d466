//! The command line's own errors: argument checks, and the failures of the base
//! backup and catalog commands as barman reports them. Kept apart from the command
//! modules so that `exit` classifies them without depending on those modules.

use barrelman_core::error::{Classified, ErrorClass};
use barrelman_ops::backup::BackupError;
use barrelman_ops::restore::RestoreError;
use barrelman_postgres::session::PgError;
use std::borrow::Cow;

/// A command-line argument (or a combination of them) the user must fix, found by
/// the command line's own checks: barman's argparse-level errors (exit 3). Values a
/// library parses carry that library's error instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

impl Classified for InputError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Input
    }
}

/// A base backup or restore that did not complete. barman-cloud-backup and
/// -restore fail the operation (exit 1) whatever the cause, once the archive is open.
#[derive(Debug, thiserror::Error)]
pub enum BaseBackupError {
    /// PostgreSQL could not be reached for the backup.
    #[error("{0}")]
    Connect(#[source] PgError),
    /// `-p/--port` is not a port number: barman hands it to libpq, which cannot
    /// connect with it.
    #[error(
        "cannot connect to PostgreSQL: the port '{0}' given with -p/--port is not a port number"
    )]
    BadPort(String),
    /// The backup stopped after it started: its `backup.info` says FAILED.
    #[error("backup {id} FAILED: {source}")]
    Failed {
        /// The backup's id.
        id: String,
        /// Why it stopped.
        #[source]
        source: BackupError,
    },
    /// The backup stopped before it started.
    #[error("backup failed: {0}")]
    NotStarted(#[source] BackupError),
    /// The restore of a backup stopped.
    #[error("{0}")]
    Restore(#[source] RestoreError),
}

impl Classified for BaseBackupError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failed
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::Connect(e) => e.hint(),
            Self::BadPort(_) => Some(Cow::Borrowed("give -p/--port a port number")),
            Self::Failed { source, .. } | Self::NotStarted(source) => source.hint(),
            Self::Restore(_) => None,
        }
    }
}

/// A catalog command that ran and found a problem: barman fails the operation (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No backup has the id asked for.
    #[error("backup {id} for server {server} does not exist")]
    NoSuchBackup {
        /// The id asked for.
        id: String,
        /// The server name of the archive.
        server: String,
    },
    /// Only DONE backups can be kept.
    #[error("cannot keep backup {id}: its status is {status}, and only DONE backups can be kept")]
    NotKeepable {
        /// The backup's id.
        id: String,
        /// Its status.
        status: String,
    },
    /// The backup cannot be deleted as asked (kept, running, minimum redundancy, an
    /// unreadable catalog).
    #[error("{0}")]
    Delete(#[source] barrelman_ops::delete::DeleteError),
    /// `verify` found a backup that cannot be restored, or WAL stored twice.
    #[error("{0}")]
    NotRestorable(String),
    /// `doctor` found problems (each printed with its fix).
    #[error("{count} problem(s) found in {location}")]
    Problems {
        /// How many.
        count: usize,
        /// The archive.
        location: String,
    },
    /// `doctor --postgres` could not ask the server.
    #[error("{0}")]
    Server(#[source] barrelman_postgres::session::PgError),
}

impl Classified for CatalogError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::NoSuchBackup { .. } => ErrorClass::NotFound,
            Self::NotKeepable { .. } => ErrorClass::Conflict,
            Self::Delete(_) | Self::NotRestorable(_) | Self::Problems { .. } | Self::Server(_) => {
                ErrorClass::Failed
            }
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::NoSuchBackup { .. } => Some(Cow::Borrowed(
                "list the backups with `barrelman list` or barman-cloud-backup-list",
            )),
            Self::Delete(e) => e.hint(),
            Self::Server(e) => e.hint(),
            _ => None,
        }
    }
}
