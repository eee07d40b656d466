//! The PostgreSQL side of barrelman: what a data directory tells the archiver.

#![warn(missing_docs, unreachable_pub)]

mod error;
pub mod extract;
pub mod pgdata;
pub mod recovery;
pub mod session;
pub mod tarball;
pub mod walk;
