//! The CloudNativePG plugin side of barrelman: CNPG-I over a unix socket, wire-compatible
//! with the Barman Cloud plugin (`barman-cloud.cloudnative-pg.io`).
//!
//! - [`proto`]: the generated CNPG-I protocol (cnpg-i v0.6.0).
//! - [`settings`]: the sidecar's environment, parsed from captured variables.
//! - [`config`]: which ObjectStore and server name each role uses (from the Cluster JSON).
//! - [`server`]: the instance and restore servers on the plugin socket.
//! - [`client`]: a channel over a unix socket, the `healthcheck unix` probe and the
//!   calls of `barrelman cnpg client` (identity, WAL archive/restore, backup,
//!   restore-job).
//! - [`k8s`]: ObjectStores and Secrets from the Kubernetes API (GET, 10 s cache); also
//!   the `SecretSource` that feeds Secret values straight into the storage settings.
//! - [`wal`]: WAL.Archive and WAL.Restore in-process through the core's `ops::wal`.
//! - [`backup`]: Backup.Backup in-process through the core's `ops::backup`, with the
//!   ObjectStore's recovery window kept in its status.
//! - [`restore_job`]: RestoreJobHooks.Restore in-process: backup selection by recovery
//!   target, first-WAL probe, `ops::restore` into PGDATA, the `walStorage` symlink.
//! - [`retention`]: the instance sidecar's background loop: retention policy, Backup
//!   objects whose backup is gone, recovery window.
//! - [`stats`]: what the sidecar did (archive counters, backup duration, the recovery
//!   window's end), for the [`metrics`] service.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use barrelman_cnpg::{run_instance, server::termination_signal, Role, Settings};
//! let settings = Settings::from_vars(Role::Instance, |n| std::env::var(n).ok(), "/plugins")?;
//! run_instance(settings, termination_signal()?).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod backup;
pub mod client;
pub mod config;
pub mod identity;
pub mod k8s;
pub mod metrics;
pub mod proto;
pub mod restore_job;
pub mod retention;
pub mod server;
pub mod settings;
pub mod socket;
pub mod stats;
mod store;
mod unimplemented;
pub mod wal;

pub use client::healthcheck_unix;
pub use server::{run_instance, run_restore, PluginServer, ServeError};
pub use settings::{Role, Settings, SettingsError};

/// The plugin's name: CloudNativePG's plugin name, the socket's file name and the
/// metadata name.
pub const PLUGIN_NAME: &str = "barman-cloud.cloudnative-pg.io";

/// `healthcheck unix` on the plugin directory `dir`; see [`client::healthcheck_unix`].
pub async fn healthcheck(dir: &std::path::Path) -> i32 {
    client::healthcheck_unix(dir).await
}
