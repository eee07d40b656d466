//! Exit codes, as barman-cloud's: 0 success, 1 operation failed, 2 connectivity (only
//! from connectivity tests), 3 invalid input, 4 any other error.

use crate::walops::SpoolError;
use barrelman_core::wal::InvalidWalName;
use barrelman_core::{Classified, ErrorClass};
use barrelman_storage::config::ConfigError;
use barrelman_storage::StorageError;

pub const SUCCESS: i32 = 0;
pub const FAILURE: i32 = 1;
pub const CONNECTIVITY: i32 = 2;
pub const INPUT_ERROR: i32 = 3;
pub const GENERAL_ERROR: i32 = 4;

/// Input the user must fix (barman's argparse-level errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// The exit code barman would give for `err`.
pub fn code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.is::<InvalidWalName>()
            || cause.is::<InputError>()
            || cause.is::<barrelman_core::layout::InvalidName>()
        {
            return INPUT_ERROR;
        }
        if cause.is::<crate::basebackup::OperationFailed>() {
            return FAILURE;
        }
        if cause.is::<SpoolError>() {
            return CONNECTIVITY;
        }
        if let Some(c) = cause.downcast_ref::<ConfigError>() {
            // A name that cannot be stored is input (3); any other unusable
            // configuration is barman's general error (4).
            return match c.class() {
                ErrorClass::Input => INPUT_ERROR,
                _ => GENERAL_ERROR,
            };
        }
        if let Some(s) = cause.downcast_ref::<StorageError>() {
            return match s {
                StorageError::WalNotFound { .. }
                | StorageError::NotEmpty { .. }
                | StorageError::Conflict { .. }
                | StorageError::ConcurrentConflict { .. } => FAILURE,
                StorageError::InvalidName(_) | StorageError::InvalidKey { .. } => INPUT_ERROR,
                _ => GENERAL_ERROR,
            };
        }
    }
    GENERAL_ERROR
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
