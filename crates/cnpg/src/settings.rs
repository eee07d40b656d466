//! The sidecar's settings: the environment CloudNativePG gives the injected container,
//! parsed from variables the caller captured (this library never reads `std::env`).

use std::path::PathBuf;

/// Directory holding the plugin sockets unless `--plugin-path` says otherwise; the
/// CloudNativePG instance manager scans it.
pub const DEFAULT_PLUGIN_DIR: &str = "/plugins";

/// Where `pg_wal`'s contents go when the Cluster has `spec.walStorage`: CloudNativePG
/// mounts the WAL volume at `/var/lib/postgresql/wal` and expects `pg_wal` there.
pub const DEFAULT_WAL_DIRECTORY: &str = "/var/lib/postgresql/wal/pg_wal";

/// The variable that moves [`Settings::wal_directory`] (barrelman's own, for tests and
/// unusual mounts; CloudNativePG does not set it).
pub const WAL_DIRECTORY_VARIABLE: &str = "BARRELMAN_WAL_DIRECTORY";

/// Where the container's cgroup files are (its own cgroup, in a cgroup namespace).
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The variable that moves the cgroup root (barrelman's own, for tests).
pub const CGROUP_ROOT_VARIABLE: &str = "BARRELMAN_CGROUP_ROOT";

/// The memory limit of the cgroup at `root`: v2's `memory.max`, else v1's
/// `memory/memory.limit_in_bytes`; `None` without a limit or a readable file.
pub fn cgroup_memory_limit(root: &std::path::Path) -> Option<u64> {
    ["memory.max", "memory/memory.limit_in_bytes"]
        .iter()
        .find_map(|f| std::fs::read_to_string(root.join(f)).ok())
        .and_then(|text| barrelman_core::memory::parse_cgroup_limit(&text))
}

/// Which sidecar this process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The sidecar of every PostgreSQL instance Pod: WAL, Backup, Metrics.
    Instance,
    /// The sidecar of the recovery bootstrap Job: WAL restore and RestoreJobHooks.
    Restore,
}

impl Role {
    /// The environment variables this role cannot start without, as upstream requires
    /// them (the restore Job has no `CLUSTER_NAME` requirement upstream).
    pub fn required_variables(self) -> &'static [&'static str] {
        match self {
            Role::Instance => &["NAMESPACE", "CLUSTER_NAME", "POD_NAME", "SPOOL_DIRECTORY"],
            Role::Restore => &["NAMESPACE", "POD_NAME", "SPOOL_DIRECTORY"],
        }
    }

    /// Lower-case name, as in `barrelman cnpg instance|restore`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Instance => "instance",
            Role::Restore => "restore",
        }
    }
}

/// Everything the sidecar takes from its environment and command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Which services are served.
    pub role: Role,
    /// `NAMESPACE`: the Cluster's namespace (ObjectStores and Secrets are read there).
    pub namespace: String,
    /// `CLUSTER_NAME`: the Cluster's name (empty when a restore Job was not given it).
    pub cluster_name: String,
    /// `POD_NAME`: this Pod, compared with `status.currentPrimary`.
    pub pod_name: String,
    /// `SPOOL_DIRECTORY`: the WAL archive/restore spool shared with PostgreSQL.
    pub spool_directory: PathBuf,
    /// `PGDATA`, when set.
    pub pgdata: Option<PathBuf>,
    /// The WAL volume's `pg_wal` a restore moves WAL into when the Cluster has
    /// `spec.walStorage` ([`DEFAULT_WAL_DIRECTORY`] unless [`WAL_DIRECTORY_VARIABLE`]).
    pub wal_directory: PathBuf,
    /// `CUSTOM_CNPG_GROUP`: API group of Cluster/Backup for CloudNativePG forks.
    pub custom_cnpg_group: Option<String>,
    /// `CUSTOM_CNPG_VERSION`: API version of Cluster/Backup for CloudNativePG forks.
    pub custom_cnpg_version: Option<String>,
    /// Directory of the socket (`--plugin-path`).
    pub plugin_dir: PathBuf,
    /// The parallelism the container's memory limit allows (read once from its cgroup
    /// at start; `None`: no limit). WAL uploads and prefetches, backup and restore
    /// workers are capped by it, whatever the ObjectStore asks.
    pub memory_caps: Option<barrelman_core::memory::MemoryCaps>,
    /// libpq's variables (`PGHOST`, `PGPORT`, …): how Backup reaches PostgreSQL, as
    /// barman-cloud-backup does in upstream's sidecar (socket directory and port).
    pub postgres: barrelman_postgres::session::PgEnvironment,
    /// The pod's Azure identity variables (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
    /// `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`, as AKS workload
    /// identity injects them): what ObjectStores with `inheritFromAzureAD` or
    /// `useDefaultAzureCredentials` authenticate with. Storage keys come from the
    /// ObjectStore's Secrets, never from here.
    pub azure_identity: barrelman_storage::AzureEnvironment,
}

/// The Azure identity variables a sidecar passes to its stores.
const AZURE_IDENTITY_VARIABLES: &[&str] = &[
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
];

/// Why the settings could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// A required variable is unset or empty.
    #[error(
        "the environment variable {name} is not set; the {role} sidecar needs it \
         (CloudNativePG sets it in the injected container; set it when running by hand)"
    )]
    Missing {
        /// The variable's name.
        name: &'static str,
        /// The role that needs it.
        role: &'static str,
    },
}

impl Settings {
    /// Builds the settings of `role` from the environment variables given by `var`
    /// (e.g. `|name| std::env::var(name).ok()` in the binary, a map in tests).
    /// An empty value counts as unset, as upstream's checks do.
    pub fn from_vars(
        role: Role,
        var: impl Fn(&str) -> Option<String>,
        plugin_dir: impl Into<PathBuf>,
    ) -> Result<Settings, SettingsError> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        for name in role.required_variables() {
            if get(name).is_none() {
                return Err(SettingsError::Missing {
                    name,
                    role: role.as_str(),
                });
            }
        }
        Ok(Settings {
            role,
            namespace: get("NAMESPACE").unwrap_or_default(),
            cluster_name: get("CLUSTER_NAME").unwrap_or_default(),
            pod_name: get("POD_NAME").unwrap_or_default(),
            spool_directory: get("SPOOL_DIRECTORY")
                .map(PathBuf::from)
                .unwrap_or_default(),
            pgdata: get("PGDATA").map(PathBuf::from),
            wal_directory: get(WAL_DIRECTORY_VARIABLE)
                .map_or_else(|| PathBuf::from(DEFAULT_WAL_DIRECTORY), PathBuf::from),
            custom_cnpg_group: get("CUSTOM_CNPG_GROUP"),
            custom_cnpg_version: get("CUSTOM_CNPG_VERSION"),
            plugin_dir: plugin_dir.into(),
            memory_caps: cgroup_memory_limit(
                &get(CGROUP_ROOT_VARIABLE)
                    .map_or_else(|| PathBuf::from(DEFAULT_CGROUP_ROOT), PathBuf::from),
            )
            .map(barrelman_core::memory::MemoryCaps::for_limit),
            postgres: barrelman_postgres::session::PgEnvironment::from_vars(
                [
                    "PGHOST",
                    "PGPORT",
                    "PGUSER",
                    "USER",
                    "PGPASSWORD",
                    "PGDATABASE",
                ]
                .into_iter()
                .filter_map(|name| Some((name, var(name)?))),
            ),
            azure_identity: barrelman_storage::AzureEnvironment::from_vars(
                AZURE_IDENTITY_VARIABLES
                    .iter()
                    .filter_map(|name| Some((*name, var(name)?))),
            ),
        })
    }

    /// `wanted` WAL uploads at once, within the memory limit.
    pub fn wal_parallelism(&self, wanted: usize) -> usize {
        self.memory_caps.map_or(wanted.max(1), |c| c.wal(wanted))
    }

    /// `wanted` backup or restore workers, within the memory limit.
    pub fn job_parallelism(&self, wanted: usize) -> usize {
        self.memory_caps.map_or(wanted.max(1), |c| c.jobs(wanted))
    }

    /// The API group and version of CloudNativePG's Cluster and Backup kinds:
    /// `postgresql.cnpg.io/v1` unless the custom variables say otherwise.
    pub fn cnpg_api(&self) -> (&str, &str) {
        (
            self.custom_cnpg_group
                .as_deref()
                .unwrap_or("postgresql.cnpg.io"),
            self.custom_cnpg_version.as_deref().unwrap_or("v1"),
        )
    }

    /// The socket path: `plugin_dir/barman-cloud.cloudnative-pg.io`.
    pub fn socket_path(&self) -> PathBuf {
        self.plugin_dir.join(crate::PLUGIN_NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_memory_limit_comes_from_cgroup_v2_else_v1() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_memory_limit(dir.path()), None);
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        std::fs::write(
            dir.path().join("memory/memory.limit_in_bytes"),
            "268435456\n",
        )
        .unwrap();
        assert_eq!(cgroup_memory_limit(dir.path()), Some(256 << 20));
        // v2 wins; "max" is no limit.
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_memory_limit(dir.path()), None);
        let root = dir.path().to_string_lossy().into_owned();
        let s = Settings::from_vars(
            Role::Restore,
            vars(&[
                ("NAMESPACE", "db"),
                ("POD_NAME", "p"),
                ("SPOOL_DIRECTORY", "/s"),
                (CGROUP_ROOT_VARIABLE, &root),
            ]),
            "/plugins",
        )
        .unwrap();
        assert_eq!(
            (s.memory_caps, s.wal_parallelism(8), s.job_parallelism(4)),
            (None, 8, 4)
        );
    }

    const FULL: &[(&str, &str)] = &[
        ("NAMESPACE", "db"),
        ("CLUSTER_NAME", "pg"),
        ("POD_NAME", "pg-1"),
        ("SPOOL_DIRECTORY", "/controller/wal-restore-spool"),
    ];

    #[test]
    fn instance_takes_required_and_optional_variables() {
        let mut pairs = FULL.to_vec();
        pairs.push(("PGDATA", "/var/lib/postgresql/data/pgdata"));
        pairs.push(("CUSTOM_CNPG_GROUP", "postgresql.example.com"));
        let s = Settings::from_vars(Role::Instance, vars(&pairs), "/plugins").unwrap();
        assert_eq!(s.namespace, "db");
        assert_eq!(s.cluster_name, "pg");
        assert_eq!(s.pod_name, "pg-1");
        assert_eq!(
            s.spool_directory,
            PathBuf::from("/controller/wal-restore-spool")
        );
        assert_eq!(
            s.pgdata,
            Some(PathBuf::from("/var/lib/postgresql/data/pgdata"))
        );
        assert_eq!(s.cnpg_api(), ("postgresql.example.com", "v1"));
        assert_eq!(s.wal_directory, PathBuf::from(DEFAULT_WAL_DIRECTORY));
        pairs.push((WAL_DIRECTORY_VARIABLE, "/tmp/wal"));
        let s = Settings::from_vars(Role::Restore, vars(&pairs), "/plugins").unwrap();
        assert_eq!(s.wal_directory, PathBuf::from("/tmp/wal"));
        assert_eq!(
            s.socket_path(),
            PathBuf::from("/plugins/barman-cloud.cloudnative-pg.io")
        );
    }

    #[test]
    fn each_missing_required_variable_is_named() {
        for role in [Role::Instance, Role::Restore] {
            for missing in role.required_variables() {
                let pairs: Vec<_> = FULL.iter().copied().filter(|(k, _)| k != missing).collect();
                let err = Settings::from_vars(role, vars(&pairs), "/plugins").unwrap_err();
                assert_eq!(
                    err,
                    SettingsError::Missing {
                        name: missing,
                        role: role.as_str()
                    }
                );
                assert!(err.to_string().contains(missing), "{err}");
            }
        }
    }

    #[test]
    fn empty_counts_as_unset_and_restore_needs_no_cluster_name() {
        let err = Settings::from_vars(
            Role::Instance,
            vars(&[("NAMESPACE", ""), ("CLUSTER_NAME", "pg")]),
            "/p",
        )
        .unwrap_err();
        assert_eq!(
            err,
            SettingsError::Missing {
                name: "NAMESPACE",
                role: "instance"
            }
        );
        let pairs: Vec<_> = FULL
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CLUSTER_NAME")
            .collect();
        let s = Settings::from_vars(Role::Restore, vars(&pairs), "/p").unwrap();
        assert_eq!(s.cluster_name, "");
        assert_eq!(s.cnpg_api(), ("postgresql.cnpg.io", "v1"));
    }
}
