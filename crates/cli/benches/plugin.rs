//! The CloudNativePG sidecar's memory and per-segment cost beside what the Barman
//! Cloud plugin runs for the same work (issue 11): `barrelman cnpg instance` against
//! the barman-cloud 3.19.1 tools the upstream sidecar spawns, on real PostgreSQL 15,
//! SeaweedFS and the stand-in Kubernetes API of the test kit.
//!
//! `cargo bench -p barrelman-cli --bench plugin` with `BARRELMAN_TOOLS` set; knobs:
//! `SCALE` (pgbench scale of the backed-up cluster, 70 ≈ 1 GB), `SEGMENTS` (WAL
//! segments per archive run, 40), `ROUNDS` (3), `QUIET_MAX` (seconds to wait for a
//! quiet CPU before each measurement, 120), `IDLE_MIN` (% idle counted as quiet, 80).
//! The report goes to stdout and to `bench/results/plugin-<timestamp>.md`. Every run
//! is verified (each segment in the store, each backup DONE in
//! barman-cloud-backup-list): a broken run panics instead of printing figures.

#[allow(dead_code, unused_imports, unreachable_pub)]
#[path = "../tests/it/common.rs"]
mod common;

#[allow(dead_code, unused_imports)]
#[path = "../tests/it/cnpg_wal.rs"]
mod cnpg_wal;

#[allow(dead_code, unused_imports)]
#[path = "../tests/it/cnpg_backup.rs"]
mod cnpg_backup;

use barrelman_testkit::kubeapi::KubeApi;
use barrelman_testkit::{PgCluster, S3Server};
use cnpg_backup::backup_file;
use cnpg_wal::{cluster_file, seed_store, Sidecar, BUCKET, NS, SERVER};
use common::{barman_tool, barrelman, list_keys, start_both, switch_wal, CloudCmd};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The knobs, from the environment.
struct Knobs {
    scale: u32,
    segments: usize,
    rounds: usize,
    quiet_max: u64,
    idle_min: u64,
}

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------- /proc readings

/// A `kB` field (`VmRSS`, `VmHWM`) of /proc/PID/status.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resets the process's VmHWM to its current RSS (`clear_refs` 5, Linux ≥ 4.0), so
/// that the next reading is the peak of one measurement, not since the start.
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// user + system CPU of one process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: the fields are counted after its ')'.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12)
}

fn clock_ticks_per_s() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Parent pid of every process, from /proc/*/stat.
fn parents() -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            v.push((pid, ppid));
        }
    }
    v
}

/// `root` and its descendants.
fn tree(root: u32) -> Vec<u32> {
    let all = parents();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// Whether another session's compiler (or test runner) is running.
fn compiler_running() -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| {
            matches!(
                c.trim(),
                "rustc" | "cargo" | "clippy-driver" | "rustdoc" | "cargo-nextest"
            )
        })
    })
}

/// (idle, total) jiffies of all CPUs.
fn cpu_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (idle, f.iter().take(8).sum())
}

/// Waits until, for 3 s in a row, no compiler runs and the CPUs are at least
/// `idle_min` % idle (other engineers build on the same 2 cores), at most
/// `quiet_max` s. Returns whether it got quiet (false: the figure is marked noisy).
fn wait_quiet(k: &Knobs) -> bool {
    let start = Instant::now();
    let mut calm = 0;
    loop {
        if compiler_running() {
            calm = 0;
            std::thread::sleep(Duration::from_secs(1));
        } else {
            let (i0, t0) = cpu_jiffies();
            std::thread::sleep(Duration::from_secs(1));
            let (i1, t1) = cpu_jiffies();
            let idle = if t1 > t0 {
                100 * (i1 - i0) / (t1 - t0)
            } else {
                100
            };
            calm = if idle >= k.idle_min { calm + 1 } else { 0 };
        }
        if calm >= 3 {
            return true;
        }
        if start.elapsed() >= Duration::from_secs(k.quiet_max) {
            eprintln!(
                "  still busy after {} s: measuring anyway (noisy)",
                k.quiet_max
            );
            return false;
        }
    }
}

/// Samples the summed and the largest single VmRSS of a process tree every 50 ms
/// on a thread, and whether a compiler ran meanwhile (checked once a second).
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Sampled>,
}

#[derive(Default, Clone, Copy)]
struct Sampled {
    peak_sum_kb: u64,
    peak_single_kb: u64,
    samples: u64,
    compiler_seen: bool,
}

impl Sampler {
    /// `root`'s tree when `descendants`, else `root` alone.
    fn start(root: u32, descendants: bool) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut s = Sampled::default();
            let mut last_check = Instant::now() - Duration::from_secs(2);
            while !flag.load(Ordering::Relaxed) {
                let pids = if descendants { tree(root) } else { vec![root] };
                let rss: Vec<u64> = pids
                    .iter()
                    .filter_map(|p| status_kb(*p, "VmRSS:"))
                    .collect();
                s.peak_sum_kb = s.peak_sum_kb.max(rss.iter().sum());
                s.peak_single_kb = s.peak_single_kb.max(rss.iter().copied().max().unwrap_or(0));
                s.samples += 1;
                if last_check.elapsed() >= Duration::from_secs(1) {
                    s.compiler_seen |= compiler_running();
                    last_check = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            s
        });
        Sampler { stop, handle }
    }

    fn finish(self) -> Sampled {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("sampler thread")
    }
}

/// What one child process cost, from `wait4`: wall time, exit code, CPU (user +
/// system, with the children it waited for) and `ru_maxrss`.
struct ChildCost {
    wall: Duration,
    code: i32,
    cpu_s: f64,
    maxrss_kb: u64,
}

/// Spawns `cmd` with stdout and stderr into `log`; returns it and its start time.
fn spawn_logged(cmd: &mut Command, log: &Path) -> (std::process::Child, Instant) {
    let f = std::fs::File::create(log).unwrap();
    let t0 = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    (child, t0)
}

/// Runs `cmd` (output into `log`) and reaps it with [`reap`].
fn run_costed(cmd: &mut Command, log: &Path) -> ChildCost {
    let (child, t0) = spawn_logged(cmd, log);
    reap(child, t0)
}

// ---------------------------------------------------------------- the setup

/// The ObjectStore `name` writing to `s3://cnpg/<name>`: a copy of the seeded
/// "store" (same Secret) with its own prefix, `wal.maxParallel` and `data`.
fn add_store(api: &KubeApi, name: &str, max_parallel: u32) {
    let mut store = api
        .list(NS, "objectstores")
        .into_iter()
        .find(|o| o["metadata"]["name"] == "store")
        .expect("the seeded ObjectStore");
    store["metadata"] = json!({"name": name, "namespace": NS});
    let conf = &mut store["spec"]["configuration"];
    conf["destinationPath"] = json!(format!("s3://{BUCKET}/{name}"));
    conf["wal"]["maxParallel"] = json!(max_parallel);
    conf["data"] = json!({"compression": "gzip", "jobs": 2, "immediateCheckpoint": true});
    api.insert(store);
}

/// WAL segments (names) made by pgbench in the stopped cluster `walpg`, each still
/// `.ready`: what PostgreSQL hands archive_command one by one.
fn make_segments(walpg: &PgCluster, n: usize) -> Vec<String> {
    walpg.start();
    loop {
        let ready = ready_segments(&walpg.datadir);
        if ready.len() > n {
            break;
        }
        walpg.pgbench(&["-i", "-s", "10", "-q"]);
        switch_wal(walpg);
    }
    walpg.stop();
    let mut ready = ready_segments(&walpg.datadir);
    ready.truncate(n);
    ready
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        files_under(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn ready_segments(pgdata: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(pgdata.join("pg_wal/archive_status"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let seg = n.strip_suffix(".ready")?.to_string();
            (seg.len() == 24).then_some(seg)
        })
        .collect();
    v.sort();
    v
}

/// Marks `seg` `.ready` (before a run) or `.done` (after its archive_command
/// succeeded), as PostgreSQL's archiver does: the sidecar with maxParallel > 1
/// reads the `.ready` files to pick the segments it uploads ahead.
fn mark(pgdata: &Path, seg: &str, ready: bool) {
    let dir = pgdata.join("pg_wal/archive_status");
    let (from, to) = if ready {
        ("done", "ready")
    } else {
        ("ready", "done")
    };
    let src = dir.join(format!("{seg}.{from}"));
    if src.exists() {
        std::fs::rename(&src, dir.join(format!("{seg}.{to}"))).unwrap();
    }
}

/// Waits until the archiver has no `.ready` segment, then sets archive_command.
fn set_archive_command(pg: &PgCluster, cmd: &str) {
    for _ in 0..1200 {
        let n = pg.psql("select count(*) from pg_ls_archive_statusdir() where name like '%.ready'");
        if n == "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    pg.psql(&format!(
        "alter system set archive_command = '{}'",
        cmd.replace('\'', "''")
    ));
    pg.psql("select pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
}

/// Panics unless every one of `segs` is in `prefix` as `<seg>.gz`.
fn verify_segments(s3: &S3Server, prefix: &str, segs: &[String]) {
    let keys = list_keys(s3, BUCKET, &format!("{prefix}/{SERVER}/wals/"));
    let names: std::collections::HashSet<&str> =
        keys.iter().filter_map(|k| k.rsplit('/').next()).collect();
    let missing: Vec<&String> = segs
        .iter()
        .filter(|s| !names.contains(format!("{s}.gz").as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{prefix}: {} of {} segments missing from the store, e.g. {:?}",
        missing.len(),
        segs.len(),
        &missing[..missing.len().min(3)]
    );
}

/// The backups barman-cloud-backup-list shows in `prefix`: (id, status).
fn backup_list(s3: &S3Server, prefix: &str) -> Vec<(String, String)> {
    let out = CloudCmd::new(&barman_tool("barman-cloud-backup-list"), s3)
        .opts(&["--cloud-provider", "aws-s3", "--format", "json"])
        .ok(&[&format!("s3://{BUCKET}/{prefix}"), SERVER]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["backups_list"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|b| {
            (
                b["backup_id"].as_str().unwrap_or("").to_string(),
                b["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------- measurements

/// One WAL run: SEGMENTS calls of one tool.
#[derive(Clone, Copy, Default)]
struct WalRun {
    median_ms: f64,
    p90_ms: f64,
    total_s: f64,
    /// CPU of the per-segment processes plus the sidecar's, per segment.
    cpu_ms_per_seg: f64,
    /// The largest per-segment process (client self-reported, barman by wait4).
    proc_peak_kb: u64,
    /// The sidecar's VmHWM after the run (reset before it) and sampled peak.
    sidecar_hwm_kb: u64,
    sidecar_sampled_kb: u64,
    noisy: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum WalTool {
    Sidecar1,
    Barman,
    Sidecar4,
}

impl WalTool {
    fn label(self) -> &'static str {
        match self {
            WalTool::Sidecar1 => "barrelman sidecar, maxParallel 1",
            WalTool::Barman => "barman-cloud-wal-archive per segment",
            WalTool::Sidecar4 => "barrelman sidecar, maxParallel 4",
        }
    }
    fn tag(self) -> &'static str {
        match self {
            WalTool::Sidecar1 => "a",
            WalTool::Barman => "b",
            WalTool::Sidecar4 => "c",
        }
    }
}

struct Ctx<'a> {
    k: &'a Knobs,
    s3: &'a S3Server,
    api: &'a KubeApi,
    walpg: &'a PgCluster,
    segs: &'a [String],
    logs: PathBuf,
    tck: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// The median over rounds: with an even count, the mean of the middle two.
fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 0 => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        n => s[n / 2],
    }
}

/// The client's own VmHWM from its `BARRELMAN_REPORT_PEAK_RSS` line.
fn reported_peak_kb(log: &Path) -> u64 {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("barrelman: peak RSS "))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn wal_run(c: &Ctx, round: usize, tool: WalTool, sidecar: &Sidecar, cluster_dir: &Path) -> WalRun {
    let prefix = format!("wal-{}-r{round}", tool.tag());
    let max_parallel = if tool == WalTool::Sidecar4 { 4 } else { 1 };
    add_store(c.api, &prefix, max_parallel);
    let cluster = cluster_file(cluster_dir, "pg", &prefix);
    for s in c.segs {
        mark(&c.walpg.datadir, s, true);
    }
    let quiet = wait_quiet(c.k);
    eprintln!("  WAL {} ({} segments)", tool.label(), c.segs.len());
    let spid = sidecar.pid();
    reset_hwm(spid);
    let sampler = Sampler::start(spid, false);
    let ticks0 = cpu_ticks(spid);
    let t0 = Instant::now();
    let mut walls = Vec::new();
    let mut cpu = 0.0;
    let mut peak = 0;
    let log = c.logs.join(format!("wal-{}-r{round}.log", tool.tag()));
    for seg in c.segs {
        let path = c.walpg.datadir.join("pg_wal").join(seg);
        let path = path.to_str().unwrap();
        let cost = match tool {
            WalTool::Barman => run_costed(
                &mut CloudCmd::new(&barman_tool("barman-cloud-wal-archive"), c.s3)
                    .opts(&["--gzip", "--cloud-provider", "aws-s3"])
                    .command_as_pg(&[&format!("s3://{BUCKET}/{prefix}"), SERVER, path]),
                &log,
            ),
            _ => run_costed(
                sidecar
                    .client_command(&["wal-archive", "--cluster", cluster.to_str().unwrap(), path])
                    .env("BARRELMAN_REPORT_PEAK_RSS", "1"),
                &log,
            ),
        };
        assert_eq!(
            cost.code,
            0,
            "{} of {seg}: {}\n--- sidecar\n{}",
            tool.label(),
            std::fs::read_to_string(&log).unwrap_or_default(),
            sidecar.log()
        );
        mark(&c.walpg.datadir, seg, false);
        walls.push(cost.wall.as_secs_f64() * 1000.0);
        cpu += cost.cpu_s;
        peak = peak.max(match tool {
            WalTool::Barman => cost.maxrss_kb,
            _ => reported_peak_kb(&log),
        });
    }
    let total = t0.elapsed().as_secs_f64();
    let sidecar_cpu = if tool == WalTool::Barman {
        0.0
    } else {
        (cpu_ticks(spid) - ticks0) as f64 / c.tck
    };
    let sampled = sampler.finish();
    let hwm = status_kb(spid, "VmHWM:").unwrap_or(0);
    verify_segments(c.s3, &prefix, c.segs);
    walls.sort_by(|a, b| a.total_cmp(b));
    let n = c.segs.len() as f64;
    WalRun {
        median_ms: percentile(&walls, 0.5),
        p90_ms: percentile(&walls, 0.9),
        total_s: total,
        cpu_ms_per_seg: (cpu + sidecar_cpu) * 1000.0 / n,
        proc_peak_kb: peak,
        sidecar_hwm_kb: if tool == WalTool::Barman { 0 } else { hwm },
        sidecar_sampled_kb: if tool == WalTool::Barman {
            0
        } else {
            sampled.peak_single_kb
        },
        noisy: !quiet || sampled.compiler_seen,
    }
}

/// One base backup.
#[derive(Clone, Copy, Default)]
struct BackupRun {
    wall_s: f64,
    cpu_s: f64,
    /// Sidecar: its sampled VmRSS peak; barman: the summed RSS of its process tree.
    sampled_peak_kb: u64,
    /// Barman: the largest single process sampled.
    single_peak_kb: u64,
    /// Sidecar: VmHWM after the call (reset before it) and since its start.
    hwm_kb: u64,
    hwm_since_start_kb: u64,
    /// Barman: ru_maxrss of the barman-cloud-backup process (and the workers it
    /// waited for: the largest of them).
    maxrss_kb: u64,
    noisy: bool,
}

fn backup_sidecar(
    c: &Ctx,
    pg: &PgCluster,
    round: usize,
    sidecar: &Sidecar,
    work: &Path,
) -> BackupRun {
    let prefix = format!("bk-sidecar-r{round}");
    add_store(c.api, &prefix, 1);
    let cluster = cluster_file(work, "pg", &prefix);
    set_archive_command(
        pg,
        sidecar.archive_command(&cluster)["archive_command = '".len()..].trim_end_matches('\''),
    );
    let backup = backup_file(work, &format!("b-r{round}"), json!({}));
    let quiet = wait_quiet(c.k);
    eprintln!("  backup through the sidecar");
    let spid = sidecar.pid();
    let hwm_since_start = status_kb(spid, "VmHWM:").unwrap_or(0);
    reset_hwm(spid);
    let sampler = Sampler::start(spid, false);
    let ticks0 = cpu_ticks(spid);
    let log = c.logs.join(format!("backup-sidecar-r{round}.log"));
    let cost = run_costed(
        &mut sidecar.client_command(&[
            "backup",
            "--cluster",
            cluster.to_str().unwrap(),
            "--backup",
            backup.to_str().unwrap(),
        ]),
        &log,
    );
    let sampled = sampler.finish();
    let ticks = cpu_ticks(spid) - ticks0;
    let hwm = status_kb(spid, "VmHWM:").unwrap_or(0);
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        cost.code,
        0,
        "backup: {out}\n--- sidecar\n{}",
        sidecar.log()
    );
    let id = out
        .lines()
        .find_map(|l| {
            serde_json::from_str::<Value>(l).ok()?["backupId"]
                .as_str()
                .map(String::from)
        })
        .unwrap_or_else(|| panic!("no backupId in {out}"));
    let list = backup_list(c.s3, &prefix);
    assert!(
        list.iter().any(|(i, s)| *i == id && s == "DONE"),
        "backup {id} is not DONE in barman-cloud-backup-list: {list:?}"
    );
    BackupRun {
        wall_s: cost.wall.as_secs_f64(),
        cpu_s: cost.cpu_s + ticks as f64 / c.tck,
        sampled_peak_kb: sampled.peak_single_kb,
        single_peak_kb: sampled.peak_single_kb,
        hwm_kb: hwm,
        hwm_since_start_kb: hwm_since_start.max(hwm),
        maxrss_kb: 0,
        noisy: !quiet || sampled.compiler_seen,
    }
}

fn backup_barman(c: &Ctx, pg: &PgCluster, round: usize) -> BackupRun {
    let prefix = format!("bk-barman-r{round}");
    let dest = format!("s3://{BUCKET}/{prefix}");
    // Its WAL goes where upstream sends it: barman-cloud-wal-archive per segment.
    set_archive_command(
        pg,
        &format!(
            "{} --gzip --cloud-provider aws-s3 --endpoint-url {} {dest} {SERVER} %p",
            barman_tool("barman-cloud-wal-archive").display(),
            c.s3.endpoint
        ),
    );
    let quiet = wait_quiet(c.k);
    eprintln!("  barman-cloud-backup");
    let log = c.logs.join(format!("backup-barman-r{round}.log"));
    let mut cmd = CloudCmd::new(&barman_tool("barman-cloud-backup"), c.s3)
        .opts(&["--gzip", "--jobs", "2", "--immediate-checkpoint"])
        .opts(&["--cloud-provider", "aws-s3"])
        .pg(pg)
        .command_as_pg(&["-n", &format!("b-r{round}"), &dest, SERVER]);
    let (child, t0) = spawn_logged(&mut cmd, &log);
    let pid = child.id();
    let sampler = Sampler::start(pid, true);
    let cost = reap(child, t0);
    let sampled = sampler.finish();
    assert_eq!(
        cost.code,
        0,
        "barman-cloud-backup: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let list = backup_list(c.s3, &prefix);
    assert!(
        list.len() == 1 && list[0].1 == "DONE",
        "barman-cloud-backup's backup is not DONE in barman-cloud-backup-list: {list:?}"
    );
    BackupRun {
        wall_s: cost.wall.as_secs_f64(),
        cpu_s: cost.cpu_s,
        sampled_peak_kb: sampled.peak_sum_kb,
        single_peak_kb: sampled.peak_single_kb,
        hwm_kb: 0,
        hwm_since_start_kb: 0,
        maxrss_kb: cost.maxrss_kb,
        noisy: !quiet || sampled.compiler_seen,
    }
}

/// Reaps `child` with `wait4`, whose rusage is this child's alone (with the
/// children it waited for); `getrusage(RUSAGE_CHILDREN)` would mix in every other
/// child.
#[allow(unsafe_code)]
fn reap(child: std::process::Child, t0: Instant) -> ChildCost {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unreaped child, and both out-pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let wall = t0.elapsed();
    drop(child);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    ChildCost {
        wall,
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
        maxrss_kb: u64::try_from(ru.ru_maxrss).unwrap_or(0),
    }
}

// ---------------------------------------------------------------- the report

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

struct Round {
    idle_rss_kb: u64,
    idle_hwm_kb: u64,
    wal: Vec<(WalTool, WalRun)>,
    sidecar_backup: BackupRun,
    barman_backup: BackupRun,
}

fn star(noisy: bool) -> &'static str {
    if noisy {
        " *"
    } else {
        ""
    }
}

fn report(k: &Knobs, rounds: &[Round], started: &str, load: (String, String)) -> String {
    let mut r = String::new();
    let w = &mut r;
    let cpu = sh(
        "sh",
        &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
    );
    let mem = sh("sh", &["-c", "grep MemTotal /proc/meminfo | tr -s ' '"]);
    let commit = sh("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = !sh("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let barman = sh(
        barman_tool("barman-cloud-wal-archive").to_str().unwrap(),
        &["--version"],
    );
    let pgv = sh(
        barrelman_testkit::pg_bindir()
            .join("postgres")
            .to_str()
            .unwrap(),
        &["--version"],
    );
    let _ = writeln!(w, "# The CloudNativePG sidecar beside barman-cloud\n");
    let _ = writeln!(
        w,
        "- command: `SCALE={} SEGMENTS={} ROUNDS={} cargo bench -p barrelman-cli --bench plugin`",
        k.scale, k.segments, k.rounds
    );
    let _ = writeln!(
        w,
        "- started {started}; commit `{commit}`{}; barrelman {} (release); {barman}; {pgv}",
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        w,
        "- machine: {} cores ({}), {mem}; load average at start {}, at end {}",
        sh("nproc", &[]),
        cpu.trim(),
        load.0,
        load.1
    );
    let _ = writeln!(
        w,
        "- figures are medians over {} rounds (tools rotated each round); `*` = a compiler \
         of another session ran, or the CPUs were not quiet within {} s, during at least one \
         round of that figure\n",
        rounds.len(),
        k.quiet_max
    );
    let med = |f: &dyn Fn(&Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());

    let _ = writeln!(w, "## Sidecar idle, after start\n");
    let _ = writeln!(w, "| VmRSS MiB | VmHWM MiB |\n|---:|---:|");
    let _ = writeln!(
        w,
        "| {} | {} |\n",
        mib(med(&|r| r.idle_rss_kb as f64) as u64),
        mib(med(&|r| r.idle_hwm_kb as f64) as u64)
    );

    let _ = writeln!(
        w,
        "## WAL: {} pgbench segments, one call per segment, gzip\n",
        k.segments
    );
    let _ = writeln!(
        w,
        "| tool | per segment median ms | p90 ms | total s | CPU ms / segment | \
         per-segment process peak MiB | sidecar VmHWM MiB | sidecar sampled peak MiB |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for tool in [WalTool::Sidecar1, WalTool::Barman, WalTool::Sidecar4] {
        let runs: Vec<WalRun> = rounds
            .iter()
            .flat_map(|r| r.wal.iter().filter(|(t, _)| *t == tool).map(|(_, x)| *x))
            .collect();
        if runs.is_empty() {
            continue;
        }
        let m = |f: &dyn Fn(&WalRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let noisy = runs.iter().any(|x| x.noisy);
        let sidecar = tool != WalTool::Barman;
        let _ = writeln!(
            w,
            "| {}{} | {:.0} | {:.0} | {:.1} | {:.0} | {} | {} | {} |",
            tool.label(),
            star(noisy),
            m(&|x| x.median_ms),
            m(&|x| x.p90_ms),
            m(&|x| x.total_s),
            m(&|x| x.cpu_ms_per_seg),
            mib(m(&|x| x.proc_peak_kb as f64) as u64),
            if sidecar {
                mib(m(&|x| x.sidecar_hwm_kb as f64) as u64)
            } else {
                "–".into()
            },
            if sidecar {
                mib(m(&|x| x.sidecar_sampled_kb as f64) as u64)
            } else {
                "–".into()
            },
        );
    }
    let _ = writeln!(
        w,
        "\nPer-segment process: `barrelman cnpg client` (its own VmHWM; it stands in for \
         CloudNativePG's `/controller/manager wal-archive`) or `barman-cloud-wal-archive` \
         (`ru_maxrss` from wait4). CPU: the per-segment processes plus the sidecar's \
         (/proc/PID/stat). Sidecar VmHWM is reset (`clear_refs` 5) before each run.\n"
    );

    let _ = writeln!(
        w,
        "## Base backup: pgbench scale {}, gzip, 2 jobs\n",
        k.scale
    );
    let _ = writeln!(
        w,
        "| tool | wall s | CPU s | sampled peak MiB | largest single process MiB | VmHWM of the call MiB | VmHWM since start MiB | ru_maxrss MiB |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (label, pick, sidecar) in [
        (
            "barrelman sidecar (`cnpg client backup`)",
            (|r: &Round| r.sidecar_backup) as fn(&Round) -> BackupRun,
            true,
        ),
        (
            "barman-cloud-backup (process tree)",
            (|r: &Round| r.barman_backup) as fn(&Round) -> BackupRun,
            false,
        ),
    ] {
        let runs: Vec<BackupRun> = rounds.iter().map(pick).collect();
        let m = |f: &dyn Fn(&BackupRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let dash = || "–".to_string();
        let _ = writeln!(
            w,
            "| {label}{} | {:.1} | {:.1} | {} | {} | {} | {} | {} |",
            star(runs.iter().any(|x| x.noisy)),
            m(&|x| x.wall_s),
            m(&|x| x.cpu_s),
            mib(m(&|x| x.sampled_peak_kb as f64) as u64),
            mib(m(&|x| x.single_peak_kb as f64) as u64),
            if sidecar {
                mib(m(&|x| x.hwm_kb as f64) as u64)
            } else {
                dash()
            },
            if sidecar {
                mib(m(&|x| x.hwm_since_start_kb as f64) as u64)
            } else {
                dash()
            },
            if sidecar {
                dash()
            } else {
                mib(m(&|x| x.maxrss_kb as f64) as u64)
            },
        );
    }
    let _ = writeln!(
        w,
        "\nSampled every 50 ms: the sidecar's VmRSS; for barman-cloud-backup the sum of its \
         process tree's VmRSS (the parent and its upload workers) and the largest single \
         process. CPU: the client plus the sidecar; barman: the tree (wait4).\n"
    );
    let _ = writeln!(w, "## Per round\n");
    let _ = writeln!(
        w,
        "| round | idle MiB | WAL a / b / c median ms | backup sidecar s (peak MiB) | backup barman s (tree peak MiB) |"
    );
    let _ = writeln!(w, "|---:|---:|---|---|---|");
    for (i, r) in rounds.iter().enumerate() {
        let wal: Vec<String> = [WalTool::Sidecar1, WalTool::Barman, WalTool::Sidecar4]
            .iter()
            .map(|t| {
                r.wal
                    .iter()
                    .find(|(x, _)| x == t)
                    .map(|(_, x)| format!("{:.0}{}", x.median_ms, star(x.noisy)))
                    .unwrap_or_else(|| "–".into())
            })
            .collect();
        let _ = writeln!(
            w,
            "| {} | {} | {} | {:.1}{} ({}) | {:.1}{} ({}) |",
            i + 1,
            mib(r.idle_rss_kb),
            wal.join(" / "),
            r.sidecar_backup.wall_s,
            star(r.sidecar_backup.noisy),
            mib(r.sidecar_backup.sampled_peak_kb),
            r.barman_backup.wall_s,
            star(r.barman_backup.noisy),
            mib(r.barman_backup.sampled_peak_kb),
        );
    }
    r
}

// ---------------------------------------------------------------- main

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let k = Knobs {
        scale: knob("SCALE", 70),
        segments: knob("SEGMENTS", 40),
        rounds: knob("ROUNDS", 3),
        quiet_max: knob("QUIET_MAX", 120),
        idle_min: knob("IDLE_MIN", 80),
    };
    assert!(
        k.rounds >= 1 && k.segments >= 1,
        "ROUNDS and SEGMENTS must be at least 1"
    );
    let started = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let load0 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "plugin bench: SCALE={} SEGMENTS={} ROUNDS={} (barrelman {})",
        k.scale,
        k.segments,
        k.rounds,
        barrelman().display()
    );

    // The backed-up cluster (archiving set per backup) and the S3 server.
    let (s3, pg) = start_both(&["archive_mode = on", "archive_command = 'true'"]);
    s3.create_bucket(BUCKET);
    let api = KubeApi::start();
    seed_store(&api, &s3, "store", "creds");
    // The WAL cluster: stopped, its segments left `.ready`, as they are when
    // PostgreSQL calls archive_command (nothing archives them meanwhile).
    let walpg = PgCluster::init(&["archive_mode = on", "archive_command = ''"]);
    eprintln!("making {} WAL segments with pgbench", k.segments);
    let segs = make_segments(&walpg, k.segments);
    assert_eq!(segs.len(), k.segments);
    common::start(&pg, &s3);
    eprintln!("pgbench -i -s {} (the data to back up)", k.scale);
    pg.pgbench(&["-i", "-s", &k.scale.to_string(), "-q"]);
    pg.psql("checkpoint");
    let db_size = pg.psql("select pg_size_pretty(pg_database_size('postgres'))");
    eprintln!("database: {db_size}");

    let logs = pg.make_dir("bench-logs");
    let ctx = Ctx {
        k: &k,
        s3: &s3,
        api: &api,
        walpg: &walpg,
        segs: &segs,
        logs,
        tck: clock_ticks_per_s(),
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/results");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!(
        "plugin-{}.md",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    let mut rounds = Vec::new();
    for round in 1..=k.rounds {
        eprintln!("round {round}/{}", k.rounds);
        let work = pg.make_dir(&format!("r{round}/work"));
        let plugins = pg.make_dir(&format!("r{round}/plugins"));
        let spool = pg.make_dir(&format!("r{round}/spool"));
        // A fresh sidecar each round: its idle figure is a start's, and its VmHWM
        // covers only this round. PGDATA is the WAL cluster's (for the `.ready`
        // files of maxParallel); backups connect through PGHOST/PGPORT.
        let sidecar = Sidecar::start_role(
            "instance",
            &work,
            &plugins,
            &spool,
            &walpg.datadir,
            &api.url(),
            &[
                ("PGHOST", pg.socket_dir.display().to_string()),
                ("PGPORT", pg.port.to_string()),
            ],
        );
        std::thread::sleep(Duration::from_secs(2));
        let spid = sidecar.pid();
        let idle_rss_kb = status_kb(spid, "VmRSS:").unwrap_or(0);
        let idle_hwm_kb = status_kb(spid, "VmHWM:").unwrap_or(0);
        eprintln!(
            "  idle: VmRSS {} MiB, VmHWM {} MiB",
            mib(idle_rss_kb),
            mib(idle_hwm_kb)
        );

        let mut order = vec![WalTool::Sidecar1, WalTool::Barman, WalTool::Sidecar4];
        let n = order.len();
        order.rotate_left((round - 1) % n);
        let mut wal = Vec::new();
        for tool in order {
            let run = wal_run(&ctx, round, tool, &sidecar, &work);
            eprintln!(
                "    median {:.0} ms, p90 {:.0} ms, CPU {:.0} ms/segment, process peak {} MiB{}",
                run.median_ms,
                run.p90_ms,
                run.cpu_ms_per_seg,
                mib(run.proc_peak_kb),
                star(run.noisy)
            );
            wal.push((tool, run));
        }
        // Every marker of an upload ahead was consumed by the later call (an empty
        // per-archive directory may stay).
        let left = files_under(&spool);
        assert_eq!(left, 0, "the spool kept {left} markers after the runs");

        let (sidecar_backup, barman_backup) = if round % 2 == 1 {
            let a = backup_sidecar(&ctx, &pg, round, &sidecar, &work);
            let b = backup_barman(&ctx, &pg, round);
            (a, b)
        } else {
            let b = backup_barman(&ctx, &pg, round);
            let a = backup_sidecar(&ctx, &pg, round, &sidecar, &work);
            (a, b)
        };
        eprintln!(
            "    sidecar backup {:.1} s, peak {} MiB (VmHWM {}); barman {:.1} s, tree peak {} MiB",
            sidecar_backup.wall_s,
            mib(sidecar_backup.sampled_peak_kb),
            mib(sidecar_backup.hwm_kb),
            barman_backup.wall_s,
            mib(barman_backup.sampled_peak_kb)
        );
        rounds.push(Round {
            idle_rss_kb,
            idle_hwm_kb,
            wal,
            sidecar_backup,
            barman_backup,
        });
        // WAL made between rounds goes nowhere; set before the sidecar stops, so
        // that no segment waits on a dead socket.
        set_archive_command(&pg, "true");
        drop(sidecar);
        // The report so far, rewritten after each round: a run cut short keeps the
        // rounds it finished (the last write is the whole run's).
        let load1 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let cut = |s: &str| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        let mut md = report(&k, &rounds, &started, (cut(&load0), cut(&load1)));
        let _ = writeln!(md, "\nDatabase backed up: {db_size}.");
        std::fs::write(&file, &md).unwrap();
        if round == k.rounds {
            println!("{md}");
        }
    }
    eprintln!("report written to {}", file.display());
}
