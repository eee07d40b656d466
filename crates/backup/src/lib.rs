//! Base backups in barman-cloud's layout and their restore.

pub mod backup;
pub mod catalog;
pub mod delete;
pub mod doctor;
pub mod parts;
pub mod plan;
pub mod progress;
pub mod restore;
pub mod verify;
