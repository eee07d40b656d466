//! Integration tests of the barrelman binary on real components: PostgreSQL 15
//! clusters, a SeaweedFS S3 server, and the real barman-cloud 3.19.1 tools, all
//! started by `barrelman-testkit` on 127.0.0.1. One test binary (link time).

mod it {
    pub mod argparse;
    pub mod backup;
    pub mod backup_races;
    pub mod cnpg;
    pub mod cnpg_backup;
    pub mod cnpg_faults;
    pub mod cnpg_restore;
    pub mod cnpg_retention;
    pub mod cnpg_wal;
    pub mod common;
    pub mod config;
    pub mod errors;
    pub mod faults;
    pub mod interop;
    pub mod interop_azure;
    pub mod interop_gcs;
    pub mod lifecycle;
    pub mod memory;
    pub mod names;
    pub mod native;
    pub mod resilience;
    pub mod wal_local;
    pub mod wal_pg;
    pub mod wal_race;
    pub mod wal_size;
}
