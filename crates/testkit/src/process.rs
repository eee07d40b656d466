//! Child processes: running PostgreSQL programs as the `postgres` OS user when
//! the tests run as root, signals, and describing what a command printed.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

/// Name of the OS user PostgreSQL runs as when the tests run as root.
pub(crate) const PG_OS_USER: &str = "postgres";
/// The database superuser every cluster is created with (whatever the OS user).
pub(crate) const PG_SUPERUSER: &str = "postgres";

#[allow(unsafe_code)]
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid() has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[allow(unsafe_code)]
pub(crate) fn send_sigint(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill() has no memory-safety preconditions; `pid` is our own child,
        // not yet reaped, so it cannot name another process.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct OsUser {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// The OS user PostgreSQL programs run as: `Some(postgres)` when we are root, `None`
/// (run as ourselves) otherwise.
pub(crate) fn pg_os_user() -> Option<&'static OsUser> {
    static USER: OnceLock<Option<OsUser>> = OnceLock::new();
    USER.get_or_init(|| {
        if effective_uid() != 0 {
            return None;
        }
        let out = Command::new("getent")
            .args(["passwd", PG_OS_USER])
            .output()
            .expect("run getent passwd postgres");
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.trim().split(':').collect();
        if !out.status.success() || f.len() < 7 {
            panic!(
                "running as root, so PostgreSQL must run as OS user '{PG_OS_USER}', which does \
                 not exist. Run scripts/setup-test-env.sh first."
            );
        }
        Some(OsUser {
            uid: f[2].parse().expect("uid of postgres"),
            gid: f[3].parse().expect("gid of postgres"),
            home: PathBuf::from(f[5]),
        })
    })
    .as_ref()
}

/// Runs `cmd` as the PostgreSQL OS user (`postgres`) when the current process is root
/// (sets uid/gid, drops supplementary groups, and sets `HOME`/`USER`/`LOGNAME`);
/// otherwise leaves it unchanged. The working directory is not changed: it and every
/// path the command uses must be reachable by that user.
pub fn as_pg_user(cmd: &mut Command) -> &mut Command {
    if let Some(u) = pg_os_user() {
        cmd.uid(u.uid)
            .gid(u.gid)
            .env("HOME", &u.home)
            .env("USER", PG_OS_USER)
            .env("LOGNAME", PG_OS_USER);
    }
    cmd
}

/// Gives `path` (not recursive) to the PostgreSQL OS user, when we are root.
pub(crate) fn chown_to_pg(path: &Path) {
    if let Some(u) = pg_os_user() {
        std::os::unix::fs::lchown(path, Some(u.uid), Some(u.gid))
            .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
    }
}

/// Gives `path` and everything below it to the PostgreSQL OS user, when we are root.
pub(crate) fn chown_tree_to_pg(path: &Path) {
    let Some(u) = pg_os_user() else { return };
    use std::os::unix::fs::MetadataExt;
    let meta =
        fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    if meta.uid() != u.uid || meta.gid() != u.gid {
        chown_to_pg(path);
    }
    if meta.is_dir() {
        let entries =
            fs::read_dir(path).unwrap_or_else(|e| panic!("read_dir {}: {e}", path.display()));
        for entry in entries {
            chown_tree_to_pg(&entry.expect("dir entry").path());
        }
    }
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

/// The last `max` bytes of a file, lossily decoded (empty if unreadable).
pub(crate) fn file_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs `cmd` with `input` on its stdin (written from another thread, so a command
/// that prints a lot cannot deadlock us), collecting stdout and stderr.
pub(crate) fn output_with_stdin(cmd: &mut Command, input: &str) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output();
    let _ = writer.join();
    out
}

pub(crate) fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// An emulator (Azurite, fake-gcs-server) run as a child process of a test: stdin
/// closed, its output in a log file, killed and reaped when dropped or when it fails.
pub(crate) struct EmulatorProcess {
    /// Its name and address, for failure messages.
    label: String,
    child: Option<Child>,
    /// Its stdout and stderr.
    pub(crate) log_path: PathBuf,
}

impl EmulatorProcess {
    /// Spawns `cmd` with its output going to `log_path`.
    pub(crate) fn spawn(label: String, mut cmd: Command, log_path: PathBuf) -> Self {
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        Self {
            label,
            child: Some(child),
            log_path,
        }
    }

    /// Waits until `ready()` (polled every 50 ms, for at most 30 s); fails with the
    /// log's tail if the process exits first or the time runs out.
    pub(crate) fn wait_until(&mut self, mut ready: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok()?) {
                self.fail(&format!("it exited while starting: {status}"));
            }
            if ready() {
                return;
            }
            if std::time::Instant::now() > deadline {
                self.fail("it was not ready within 30 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Kills it and panics with `what` and the tail of its log.
    pub(crate) fn fail(&mut self, what: &str) -> ! {
        self.kill();
        panic!(
            "{} failed: {what}\n--- {} (tail) ---\n{}",
            self.label,
            self.log_path.display(),
            file_tail(&self.log_path, 6000)
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EmulatorProcess {
    /// Kills it (an emulator keeps nothing worth a clean stop) and reaps it.
    fn drop(&mut self) {
        self.kill();
    }
}
