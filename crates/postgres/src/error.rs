//! The classes of the PostgreSQL side's errors (see `barrelman_core::error`).

use crate::extract::ExtractError;
use crate::recovery::InvalidTarget;
use crate::session::PgError;
use barrelman_core::error::{Classified, ErrorClass};
use std::borrow::Cow;

impl Classified for PgError {
    fn class(&self) -> ErrorClass {
        match self {
            // The server is down or refuses the connection: it can succeed later.
            PgError::Connect { .. } => ErrorClass::Unavailable,
            PgError::Query { .. } => ErrorClass::Failed,
            PgError::TooOld { .. } => ErrorClass::Input,
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        match self {
            PgError::Connect { .. } => Some(Cow::Borrowed(
                "check -h/-p/-U or PGHOST/PGPORT/PGUSER and that the server is running",
            )),
            PgError::Query { .. } => None,
            PgError::TooOld { .. } => Some(Cow::Borrowed("back up PostgreSQL 10 or newer")),
        }
    }
}

impl Classified for InvalidTarget {
    fn class(&self) -> ErrorClass {
        ErrorClass::Input
    }
}

impl Classified for ExtractError {
    fn class(&self) -> ErrorClass {
        match self {
            ExtractError::Io { source, .. } | ExtractError::Target { source, .. }
                if is_disk_full(source) =>
            {
                ErrorClass::Unavailable
            }
            // A member that already exists in the destination: it is not empty.
            ExtractError::Conflict { .. } => ErrorClass::Conflict,
            // The stream was cut or holds what no backup of ours holds: damaged data.
            _ => ErrorClass::Internal,
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        match self {
            ExtractError::Io { source, .. } | ExtractError::Target { source, .. }
                if is_disk_full(source) =>
            {
                Some(Cow::Borrowed(
                    "free space on that file system (or give it a larger volume) and retry",
                ))
            }
            ExtractError::Conflict { .. } => Some(Cow::Borrowed("restore into an empty directory")),
            _ => None,
        }
    }
}

/// The file system is full, or the user's quota is used up.
fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}
