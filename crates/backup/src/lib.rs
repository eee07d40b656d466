//! Base backups in barman-cloud's layout and their restore.

pub mod catalog;
pub mod plan;
