//! Operations on a barman-cloud archive: WAL archive and restore (`wal`), base
//! backups and their restore, catalog, retention, verification and diagnosis.

#![warn(missing_docs, unreachable_pub)]

pub mod backup;
pub mod catalog;
pub mod delete;
pub mod doctor;
mod parts;
pub mod plan;
pub mod progress;
pub mod restore;
pub mod verify;
pub mod wal;
