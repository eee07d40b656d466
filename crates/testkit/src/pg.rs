//! Throwaway PostgreSQL 15 clusters run as child processes.

use crate::ports::free_port;
use crate::process::{
    as_pg_user, chown_to_pg, chown_tree_to_pg, describe, file_tail, output_with_stdin, set_mode,
    PG_SUPERUSER,
};
use crate::tools::pg_bindir;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A throwaway PostgreSQL 15 cluster in a temporary directory under `/tmp`, listening
/// on `127.0.0.1:port` and on a unix socket in `socket_dir`. The superuser is
/// `postgres` with `trust` authentication. When the tests run as root, its files are
/// owned by, and all its programs run as, the OS user `postgres`.
///
/// Dropping it stops the server (`-m immediate`) and removes the temporary directory
/// (but not a data directory given to [`PgCluster::from_datadir`]).
pub struct PgCluster {
    /// TCP port on 127.0.0.1, also the unix socket's port number.
    pub port: u16,
    /// The data directory.
    pub datadir: PathBuf,
    /// Directory holding the unix socket (use it as `host` for libpq).
    pub socket_dir: PathBuf,
    log_path: PathBuf,
    root: tempfile::TempDir,
}

impl PgCluster {
    /// Creates a new cluster with `initdb` (not started), appending the testkit's
    /// settings and then `extra_conf` lines (which win) to `postgresql.conf`.
    ///
    /// Settings: `listen_addresses = '127.0.0.1'`, `port` from [`free_port`],
    /// `unix_socket_directories` = [`PgCluster::socket_dir`], `wal_level = replica`,
    /// `fsync = off`, `max_wal_size = 32MB` (so pgbench fills segments quickly).
    ///
    /// # Panics
    /// If `initdb` fails.
    pub fn init(extra_conf: &[&str]) -> PgCluster {
        Self::init_with(&[], extra_conf)
    }

    /// Like [`PgCluster::init`], passing `initdb_args` to `initdb` too (for example
    /// `--wal-segsize=64`).
    pub fn init_with(initdb_args: &[&str], extra_conf: &[&str]) -> PgCluster {
        let cluster = PgCluster::with_new_root(None);
        let mut cmd = cluster.pg_cmd("initdb");
        cmd.arg("-D")
            .arg(&cluster.datadir)
            .args([
                "-U",
                PG_SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .args(["--no-sync", "--no-instructions"])
            .args(initdb_args);
        cluster.run_checked(&mut cmd, "initdb");
        cluster.append_conf(extra_conf);
        cluster
    }

    /// Like [`PgCluster::init`] but without `initdb`: uses the existing data directory
    /// `datadir` (e.g. a restored backup). Gives it to the PostgreSQL OS user (when
    /// root), sets its mode to 0700, and appends the same settings and `extra_conf`
    /// to its `postgresql.conf`. The socket and the server log live in a new temporary
    /// directory; `datadir` itself is not removed on drop. Every directory above
    /// `datadir` must be traversable by the PostgreSQL OS user.
    pub fn from_datadir(datadir: PathBuf, extra_conf: &[&str]) -> PgCluster {
        assert!(
            datadir.is_dir(),
            "PgCluster::from_datadir: {} is not a directory",
            datadir.display()
        );
        let datadir = datadir
            .canonicalize()
            .unwrap_or_else(|e| panic!("canonicalize {}: {e}", datadir.display()));
        let cluster = PgCluster::with_new_root(Some(datadir));
        chown_tree_to_pg(&cluster.datadir);
        set_mode(&cluster.datadir, 0o700);
        cluster.append_conf(extra_conf);
        cluster
    }

    fn with_new_root(datadir: Option<PathBuf>) -> PgCluster {
        let root = tempfile::Builder::new()
            .prefix("barrelman-pg-")
            .tempdir_in("/tmp")
            .expect("create PostgreSQL tempdir under /tmp");
        // world-traversable, owned by the cluster's OS user
        set_mode(root.path(), 0o755);
        chown_to_pg(root.path());
        let socket_dir = root.path().join("sock");
        fs::create_dir(&socket_dir).expect("create socket dir");
        chown_to_pg(&socket_dir);
        PgCluster {
            port: free_port(),
            datadir: datadir.unwrap_or_else(|| root.path().join("data")),
            socket_dir,
            log_path: root.path().join("postgresql.log"),
            root,
        }
    }

    fn append_conf(&self, extra_conf: &[&str]) {
        let path = self.datadir.join("postgresql.conf");
        let existed = path.exists();
        let mut text = format!(
            "\n# --- barrelman-testkit ---\n\
             listen_addresses = '127.0.0.1'\n\
             port = {}\n\
             unix_socket_directories = '{}'\n\
             wal_level = replica\n\
             fsync = off\n\
             max_wal_size = 32MB\n\
             min_wal_size = 32MB\n\
             log_line_prefix = '%m [%p] '\n",
            self.port,
            self.socket_dir.display()
        );
        for line in extra_conf {
            text.push_str(line);
            text.push('\n');
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        f.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        if !existed {
            chown_to_pg(&path);
        }
    }

    /// Whether `postmaster.pid` exists and names this data directory (a data directory
    /// copied from another, running cluster carries that cluster's pid file, whose
    /// process must not be signalled).
    fn has_own_pid_file(&self) -> bool {
        let Ok(text) = fs::read_to_string(self.datadir.join("postmaster.pid")) else {
            return false;
        };
        text.lines().nth(1).map(str::trim) == Some(&*self.datadir.to_string_lossy())
    }

    /// A PostgreSQL program from [`pg_bindir`], set up to run as the cluster's OS user
    /// in the cluster's directory, with libpq pointed at this cluster.
    fn pg_cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(pg_bindir().join(program));
        as_pg_user(&mut cmd);
        cmd.current_dir(self.root.path())
            .env("PGHOST", &self.socket_dir)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", PG_SUPERUSER)
            .env("PGDATABASE", "postgres")
            .env_remove("PGSERVICE")
            .env_remove("PGPASSWORD")
            .env_remove("PGOPTIONS")
            .env_remove("PGDATA");
        cmd
    }

    fn run_checked(&self, cmd: &mut Command, what: &str) -> Output {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
        if !out.status.success() {
            panic!(
                "{what} failed (cluster port {}): {}\n--- server log tail ---\n{}",
                self.port,
                describe(&out),
                file_tail(&self.log_path, 6000)
            );
        }
        out
    }

    /// Starts the server with `pg_ctl start -w`, adding `env` to the postmaster's
    /// environment (so `archive_command`/`restore_command` children inherit it).
    ///
    /// # Panics
    /// If the server does not start; the message holds the server log's tail.
    pub fn start_with_env(&self, env: &[(String, String)]) {
        let mut cmd = self.pg_cmd("pg_ctl");
        cmd.args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.datadir)
            .arg("-l")
            .arg(&self.log_path)
            .envs(env.iter().map(|(k, v)| (k, v)));
        self.run_checked(&mut cmd, "pg_ctl start");
    }

    /// Starts the server with `pg_ctl start -w` (see [`PgCluster::start_with_env`]).
    pub fn start(&self) {
        self.start_with_env(&[]);
    }

    /// Stops the server with `pg_ctl stop -m fast -w`; does nothing if it is not
    /// running.
    ///
    /// # Panics
    /// If it is running and does not stop.
    pub fn stop(&self) {
        if !self.has_own_pid_file() {
            return;
        }
        let mut cmd = self.pg_cmd("pg_ctl");
        cmd.args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(&self.datadir);
        let out = cmd.stdin(Stdio::null()).output().expect("run pg_ctl stop");
        if !out.status.success() && self.has_own_pid_file() {
            panic!(
                "pg_ctl stop failed: {}\n--- server log tail ---\n{}",
                describe(&out),
                file_tail(&self.log_path, 6000)
            );
        }
    }

    /// Runs `sql` (one or more statements, as a script) with `psql -X -A -t -q
    /// -v ON_ERROR_STOP=1` over the unix socket as the superuser, in database
    /// `postgres`, and returns its trimmed stdout (rows `|`-separated, one a line).
    ///
    /// # Panics
    /// If psql fails; the message holds its stderr.
    pub fn psql(&self, sql: &str) -> String {
        let mut cmd = self.pg_cmd("psql");
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
        let out = output_with_stdin(&mut cmd, sql).expect("run psql");
        if !out.status.success() {
            panic!("psql failed on:\n{sql}\n{}", describe(&out));
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The whole cluster as `pg_dumpall` prints it (roles, databases, schemas, rows):
    /// two clusters with equal dumps hold the same data.
    ///
    /// # Panics
    /// If pg_dumpall fails.
    pub fn dumpall(&self) -> String {
        let out = self.pg_cmd("pg_dumpall").output().expect("run pg_dumpall");
        if !out.status.success() {
            panic!("pg_dumpall failed: {}", describe(&out));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `pgbench` with `args` (e.g. `["-i", "-s", "2"]`) against database
    /// `postgres` of this cluster.
    ///
    /// # Panics
    /// If pgbench fails.
    pub fn pgbench(&self, args: &[&str]) {
        let mut cmd = self.pg_cmd("pgbench");
        cmd.args(args);
        self.run_checked(&mut cmd, &format!("pgbench {}", args.join(" ")));
    }

    /// The server log so far (the `pg_ctl -l` file; empty before the first start).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Creates directory `name` (relative; may be nested) inside the cluster's
    /// temporary directory, mode 0700, owned by the cluster's OS user: for
    /// tablespaces, restore targets, archive directories. Removed with the cluster.
    pub fn make_dir(&self, name: &str) -> PathBuf {
        let rel = Path::new(name);
        assert!(
            rel.is_relative() && !name.split('/').any(|c| c == ".."),
            "make_dir({name}): need a relative path without '..'"
        );
        let mut path = self.root.path().to_path_buf();
        for comp in rel.components() {
            path.push(comp);
            if !path.is_dir() {
                fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
                set_mode(&path, 0o700);
                chown_to_pg(&path);
            }
        }
        path
    }
}

impl Drop for PgCluster {
    /// Stops the server (`pg_ctl stop -m immediate`), then removes the temporary
    /// directory.
    fn drop(&mut self) {
        if self.has_own_pid_file() {
            let mut cmd = self.pg_cmd("pg_ctl");
            cmd.args(["stop", "-m", "immediate", "-w", "-t", "30", "-D"])
                .arg(&self.datadir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = cmd.status();
        }
    }
}
