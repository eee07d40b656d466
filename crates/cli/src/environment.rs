//! The process environment, read once. The libraries never read it: what they may
//! use of it (`AWS_*`, `HOME`, libpq's `PG*`) is captured here and passed down.

use barrelman_postgres::session::PgEnvironment;
use barrelman_storage::config::Environment;
use std::sync::OnceLock;

/// What the libraries may use of this process's environment.
#[derive(Debug)]
pub struct Captured {
    /// For resolving archives: `AWS_*`, `HOME`, the Azure emulator switch.
    pub store: Environment,
    /// libpq's connection defaults.
    pub postgres: PgEnvironment,
}

/// This process's environment, read on first use. Variables that are not valid
/// UTF-8 are left out, as `std::env::var` would report them missing.
pub fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Captured {
            store: Environment::from_vars(vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            postgres: PgEnvironment::from_vars(vars.iter().map(|(k, v)| (k, v.as_str()))),
        }
    })
}
