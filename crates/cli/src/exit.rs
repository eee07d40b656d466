//! Exit codes, as barman-cloud's: 0 success, 1 operation failed, 2 connectivity, 3
//! invalid input, 4 any other error. A failure's code comes from its class
//! ([`ErrorClass`]) in one mapping, [`exit_code`]; the few places where barman-cloud's
//! code depends on the step that failed rather than on the kind of failure are
//! named there too ([`Step`]).

use barrelman_core::error::{Classified, ErrorClass};
use std::borrow::Cow;

pub const SUCCESS: i32 = 0;
pub const FAILURE: i32 = 1;
pub const CONNECTIVITY: i32 = 2;
pub const INPUT_ERROR: i32 = 3;
pub const GENERAL_ERROR: i32 = 4;

/// The steps whose failures barman-cloud reports with another code than their class's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Any step: the class decides.
    Any,
    /// The prefetch spool of a WAL restore could not be used: barman-cloud-wal-restore
    /// exits 2 for it, whatever the cause.
    RestoreSpool,
    /// A backup name or shortcut matched no backup: barman raises while parsing the
    /// backup id (exit 4), while an unknown backup id fails the operation (exit 1).
    BackupNameLookup,
    /// The connectivity test (`-t`, and the probe barman-cloud-check-wal-archive
    /// starts with): any failure to use the store exits 2. A missing bucket is an
    /// answer of the test rather than a failure, which each tool gives itself.
    ConnectivityTest,
}

/// The one mapping from a failure to barman-cloud's exit code.
pub(crate) fn exit_code(class: ErrorClass, step: Step) -> i32 {
    match (step, class) {
        (Step::RestoreSpool, _) => CONNECTIVITY,
        (Step::BackupNameLookup, _) => GENERAL_ERROR,
        (Step::ConnectivityTest, _) => CONNECTIVITY,
        (Step::Any, ErrorClass::Input) => INPUT_ERROR,
        (Step::Any, ErrorClass::NotFound | ErrorClass::Conflict | ErrorClass::Failed) => FAILURE,
        (Step::Any, ErrorClass::Denied | ErrorClass::Unavailable | ErrorClass::Internal) => {
            GENERAL_ERROR
        }
    }
}

/// What the exit code of a failure depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The class of the first classified error of the chain; `Internal` if none is.
    pub class: ErrorClass,
    /// The step that failed, where barman's code depends on it.
    pub step: Step,
    /// The fix, when the error knows it.
    pub hint: Option<Cow<'static, str>>,
    /// A normal answer rather than a problem: a WAL restore of a file the archive does
    /// not hold (PostgreSQL probes such names at the end of recovery). Logged as INFO.
    pub expected: bool,
}

/// Classifies `err` by the first error of its chain that knows its class.
pub(crate) fn failure(err: &anyhow::Error) -> Failure {
    for cause in err.chain() {
        if let Some(found) = classified(cause) {
            return Failure {
                class: found.class(),
                step: step_of(cause),
                hint: found.hint(),
                expected: cause
                    .downcast_ref::<barrelman_ops::wal::RestoreError>()
                    .is_some_and(|e| e.is_not_archived())
                    || matches!(
                        cause.downcast_ref::<barrelman_storage::StorageError>(),
                        Some(barrelman_storage::StorageError::WalNotFound { .. })
                    ),
            };
        }
    }
    Failure {
        class: ErrorClass::Internal,
        step: Step::Any,
        hint: None,
        expected: false,
    }
}

/// Logs a command's failure as one line and returns its exit code: ERROR, or INFO
/// for an expected answer (PostgreSQL probes WAL names that do not exist at the end
/// of recovery).
pub(crate) fn report(err: &anyhow::Error) -> i32 {
    let failure = failure(err);
    let msg = one_line(err);
    if failure.expected {
        tracing::info!("{msg}");
    } else {
        tracing::error!("{msg}");
    }
    exit_code(failure.class, failure.step)
}

/// The step of a classified error, for the failures barman reports by step.
fn step_of(cause: &(dyn std::error::Error + 'static)) -> Step {
    use barrelman_ops::catalog::ChooseError;
    if cause
        .downcast_ref::<barrelman_ops::wal::RestoreError>()
        .is_some_and(|e| e.is_spool_failure())
    {
        return Step::RestoreSpool;
    }
    let lookup = cause.downcast_ref::<ChooseError>().or_else(|| {
        match cause.downcast_ref::<barrelman_ops::delete::DeleteError>() {
            Some(barrelman_ops::delete::DeleteError::Choose(e)) => Some(e),
            _ => None,
        }
    });
    match lookup {
        Some(ChooseError::UnknownName(_) | ChooseError::NoCandidate(_)) => Step::BackupNameLookup,
        _ => Step::Any,
    }
}

/// The error as the library that raised it classifies it: every library error type
/// that can reach a command, and the command line's own.
fn classified<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Classified> {
    macro_rules! first_of {
        ($($t:ty),* $(,)?) => {
            $(if let Some(e) = cause.downcast_ref::<$t>() {
                return Some(e);
            })*
        };
    }
    first_of!(
        crate::errors::InputError,
        crate::errors::BaseBackupError,
        crate::errors::CatalogError,
        barrelman_ops::wal::ArchiveError,
        barrelman_ops::wal::RestoreError,
        barrelman_ops::backup::BackupError,
        barrelman_ops::delete::DeleteError,
        barrelman_ops::catalog::ChooseError,
        barrelman_ops::restore::RestoreError,
        barrelman_ops::verify::CheckError,
        barrelman_storage::StorageError,
        barrelman_storage::config::ConfigError,
        barrelman_storage::config::SecretError,
        barrelman_postgres::session::PgError,
        barrelman_postgres::recovery::InvalidTarget,
        barrelman_postgres::extract::ExtractError,
        barrelman_core::wal::InvalidWalName,
        barrelman_core::layout::InvalidName,
        barrelman_core::layout::InvalidDestination,
        barrelman_core::lsn::InvalidLsn,
        barrelman_core::retention::InvalidPolicy,
        barrelman_core::compression::UnknownCompression,
        barrelman_core::compression::InvalidLevel,
        barrelman_core::compression::NotForBackups,
        barrelman_core::objectstore::ObjectStoreError,
        barrelman_core::backup_info::BackupInfoError,
        barrelman_core::pyliteral::PyLiteralError,
    );
    None
}

/// The whole error on one line: what failed, then why.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrelman_storage::{Denial, StorageError};

    /// One error of each class, of the library types the commands meet, each with the
    /// fix it knows.
    fn example(class: ErrorClass) -> anyhow::Error {
        match class {
            ErrorClass::Input => barrelman_core::wal::InvalidWalName("RECOVERYXLOG".into()).into(),
            ErrorClass::NotFound => crate::errors::CatalogError::NoSuchBackup {
                id: "20260101T000000".into(),
                server: "srv".into(),
            }
            .into(),
            ErrorClass::Conflict => StorageError::Conflict {
                key: "srv/wals/0000000100000000/000000010000000000000001".into(),
            }
            .into(),
            ErrorClass::Denied => StorageError::AccessDenied {
                location: "bucket 'b' at http://127.0.0.1:9".into(),
                denial: Denial::WrongSecret,
            }
            .into(),
            ErrorClass::Unavailable => StorageError::Unreachable {
                endpoint: "http://127.0.0.1:9".into(),
                detail: "Connection refused".into(),
            }
            .into(),
            ErrorClass::Failed => barrelman_ops::backup::BackupError {
                failure: barrelman_ops::backup::BackupFailure::WalMissing {
                    first: barrelman_core::wal::WalName::parse("000000010000000000000003").unwrap(),
                    location: "s3://b/p/srv".into(),
                    waited: 120,
                },
                info: None,
            }
            .into(),
            ErrorClass::Internal => barrelman_ops::wal::ArchiveError::StaleMarkers {
                dir: "/var/tmp/walrestore/archive".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            }
            .into(),
        }
    }

    #[test]
    fn every_class_exits_with_barmans_code() {
        for class in ErrorClass::ALL {
            let want = match class {
                ErrorClass::Input => 3,
                ErrorClass::NotFound | ErrorClass::Conflict | ErrorClass::Failed => 1,
                ErrorClass::Denied | ErrorClass::Unavailable | ErrorClass::Internal => 4,
            };
            assert_eq!(exit_code(class, Step::Any), want, "{}", class.name());
            // Found below the context a command adds, as in a real chain.
            let err = example(class).context("while running the command");
            let failure = failure(&err);
            assert_eq!(failure.class, class, "{err:#}");
            assert_eq!(exit_code(failure.class, failure.step), want, "{err:#}");
            assert!(!failure.expected, "{err:#}");
        }
    }

    #[test]
    fn every_class_carries_the_fix_its_error_knows() {
        for class in ErrorClass::ALL {
            let want = match class {
                ErrorClass::Input => {
                    "pass a WAL file name such as 000000010000000000000001 (or a path ending in one)"
                }
                ErrorClass::NotFound => {
                    "list the backups with `barrelman list` or barman-cloud-backup-list"
                }
                ErrorClass::Conflict => "give each cluster its own server name (serverName)",
                ErrorClass::Denied => {
                    "check AWS_SECRET_ACCESS_KEY (the secretAccessKey entry of the ObjectStore's s3Credentials)"
                }
                ErrorClass::Unavailable => {
                    "check the endpoint URL (endpointURL / --endpoint-url), DNS and the network path"
                }
                ErrorClass::Failed => {
                    "check archive_command (in CloudNativePG: set isWALArchiver: true on the barman-cloud plugin)"
                }
                ErrorClass::Internal => {
                    "make the spool directory writable for the PostgreSQL user, or remove its files"
                }
            };
            let failure = failure(&example(class));
            assert_eq!(failure.hint.as_deref(), Some(want), "{}", class.name());
        }
    }

    #[test]
    fn barmans_step_dependent_codes_override_the_class() {
        use barrelman_ops::catalog::ChooseError;
        for class in ErrorClass::ALL {
            assert_eq!(exit_code(class, Step::ConnectivityTest), CONNECTIVITY);
            assert_eq!(exit_code(class, Step::RestoreSpool), CONNECTIVITY);
            assert_eq!(exit_code(class, Step::BackupNameLookup), GENERAL_ERROR);
        }
        let spool: anyhow::Error = barrelman_ops::wal::RestoreError::SpoolDir {
            dir: "/var/tmp/walrestore/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        }
        .into();
        let f = failure(&spool);
        assert_eq!(
            (f.class, f.step),
            (ErrorClass::Internal, Step::RestoreSpool)
        );
        assert_eq!(exit_code(f.class, f.step), CONNECTIVITY);

        let by_name: anyhow::Error = ChooseError::UnknownName("nightly".into()).into();
        let f = failure(&by_name);
        assert_eq!(
            (f.class, f.step),
            (ErrorClass::NotFound, Step::BackupNameLookup)
        );
        assert_eq!(exit_code(f.class, f.step), GENERAL_ERROR);
        let in_delete: anyhow::Error =
            barrelman_ops::delete::DeleteError::Choose(ChooseError::NoCandidate("last".into()))
                .into();
        assert_eq!(code(&in_delete), GENERAL_ERROR);
        let by_id: anyhow::Error = ChooseError::UnknownId("20260101T000000".into()).into();
        assert_eq!(code(&by_id), FAILURE);
    }

    #[test]
    fn a_missing_wal_is_an_expected_answer_and_anything_unclassified_is_internal() {
        let missing: anyhow::Error =
            barrelman_ops::wal::RestoreError::from(StorageError::WalNotFound {
                name: "000000010000000000000009".into(),
                location: "s3://b/p/srv".into(),
            })
            .into();
        let f = failure(&missing);
        assert!(f.expected);
        assert_eq!(exit_code(f.class, f.step), FAILURE);

        let plain = anyhow::anyhow!("cannot find the path of this binary");
        let f = failure(&plain);
        assert_eq!(
            (f.class, f.step, f.expected),
            (ErrorClass::Internal, Step::Any, false)
        );
        assert_eq!(exit_code(f.class, f.step), GENERAL_ERROR);
    }

    fn code(err: &anyhow::Error) -> i32 {
        let f = failure(err);
        exit_code(f.class, f.step)
    }
}
