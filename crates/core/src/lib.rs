//! The pure model of barrelman: no I/O here, only names, formats and rules that the
//! other crates apply at their edges.

#![warn(missing_docs, unreachable_pub)]

pub mod awsprofile;
pub mod backup_info;
pub mod compression;
pub mod counting;
pub mod error;
pub mod layout;
pub mod lsn;
pub mod memory;
pub mod objectstore;
pub mod pyliteral;
pub mod retention;
pub mod wal;
pub mod walpage;

pub use compression::{Compression, LevelRequest, NotForBackups};
pub use error::{Classified, ErrorClass};
