//! The PostgreSQL side of barrelman: what a data directory tells the archiver.

pub mod pgdata;
