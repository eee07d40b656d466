//! The one error vocabulary of barrelman's libraries.
//!
//! Every library error answers two questions besides its message: what kind of
//! failure it is ([`ErrorClass`]), and what the person running it should do about it
//! ([`Classified::hint`]). Faces map the class once: the command line to barman-cloud's
//! exit codes, the CloudNativePG plugin to gRPC status codes; `doctor` prints the hint.

use std::borrow::Cow;

/// What kind of failure an error is. The classes are chosen so that each face can
/// map them with one `match` and no knowledge of the error types behind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request itself is invalid: a bad argument, name, target or setting
    /// value that the caller must change (barman's argument errors, exit 3).
    Input,
    /// The object asked for (a WAL file, a backup) does not exist.
    NotFound,
    /// The archive's state contradicts the request: a WAL with other content, an
    /// archive that must be empty and is not, a concurrent writer.
    Conflict,
    /// The store cannot be used as configured: credentials refused or missing, no
    /// permission, a missing bucket, an unusable store setting.
    Denied,
    /// Something the operation needs is not there right now: the store is
    /// unreachable, overloaded or slow, the local disk is full. Retrying after the
    /// cause is gone can succeed.
    Unavailable,
    /// The operation ran and did not succeed: a check found a problem, a backup
    /// could not be completed.
    Failed,
    /// Anything else: a local I/O error, damaged data, a bug.
    Internal,
}

impl ErrorClass {
    /// Every class, for tables and tests that must cover them all.
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::Input,
        ErrorClass::NotFound,
        ErrorClass::Conflict,
        ErrorClass::Denied,
        ErrorClass::Unavailable,
        ErrorClass::Failed,
        ErrorClass::Internal,
    ];

    /// A short lowercase name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Input => "input",
            ErrorClass::NotFound => "not found",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Denied => "denied",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::Failed => "failed",
            ErrorClass::Internal => "internal",
        }
    }
}

/// An error that knows its class and, when there is one, the fix.
pub trait Classified: std::error::Error {
    /// What kind of failure this is.
    fn class(&self) -> ErrorClass;

    /// What to check or change, in one sentence, when the error knows it.
    fn hint(&self) -> Option<Cow<'static, str>> {
        None
    }
}

/// The classes of core's own errors: all of them are about values a caller passed
/// in, except the stored formats, which are damaged data.
mod core_errors {
    use super::{Classified, ErrorClass};
    use std::borrow::Cow;

    impl Classified for crate::wal::InvalidWalName {
        fn class(&self) -> ErrorClass {
            ErrorClass::Input
        }

        fn hint(&self) -> Option<Cow<'static, str>> {
            Some(Cow::Borrowed(
                "pass a WAL file name such as 000000010000000000000001 (or a path ending in one)",
            ))
        }
    }

    impl Classified for crate::layout::InvalidName {
        fn class(&self) -> ErrorClass {
            ErrorClass::Input
        }
    }

    /// A destination URL is a store setting: the store cannot be used as configured.
    impl Classified for crate::layout::InvalidDestination {
        fn class(&self) -> ErrorClass {
            ErrorClass::Denied
        }

        fn hint(&self) -> Option<Cow<'static, str>> {
            Some(Cow::Borrowed(
                "give the destination as s3://BUCKET/PATH, gs://BUCKET/PATH, https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH or file:///DIR",
            ))
        }
    }

    impl Classified for crate::lsn::InvalidLsn {
        fn class(&self) -> ErrorClass {
            ErrorClass::Input
        }
    }

    impl Classified for crate::retention::InvalidPolicy {
        fn class(&self) -> ErrorClass {
            ErrorClass::Input
        }
    }

    impl Classified for crate::compression::UnknownCompression {
        fn class(&self) -> ErrorClass {
            ErrorClass::Input
        }
    }

    impl Classified for crate::compression::NotForBackups {
        fn class(&self) -> ErrorClass {
            ErrorClass::Input
        }
    }

    /// An unusable ObjectStore manifest: the store cannot be used as configured
    /// (barman's general error, exit 4, as the manifest's other refusals).
    impl Classified for crate::objectstore::ObjectStoreError {
        fn class(&self) -> ErrorClass {
            ErrorClass::Denied
        }
    }

    impl Classified for crate::compression::InvalidLevel {
        fn class(&self) -> ErrorClass {
            ErrorClass::Input
        }
    }

    impl Classified for crate::backup_info::BackupInfoError {
        fn class(&self) -> ErrorClass {
            ErrorClass::Internal
        }
    }

    impl Classified for crate::pyliteral::PyLiteralError {
        fn class(&self) -> ErrorClass {
            ErrorClass::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_own_name() {
        let names: std::collections::HashSet<_> =
            ErrorClass::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), ErrorClass::ALL.len());
    }
}
