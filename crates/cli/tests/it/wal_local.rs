//! The local side of WAL archive and restore: destinations on another file system
//! than the spool, parallel-archive markers, temporaries left by killed calls, a full
//! disk, and the empty-archive check of a new timeline.

use super::common::*;
use barrelman_testkit::{Fault, FlakyProxy};
use barrelman_testkit::{PgCluster, S3Server};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

const SEG: usize = 16 << 20;

/// A tmpfs mounted for one test, unmounted on drop. Mounting needs root: `None` (and a
/// printed reason) otherwise, and the test is skipped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("SKIPPED: mounting a tmpfs (a second file system) needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("barrelman-tmpfs-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {}", text(&out));
        let fs = Tmpfs { dir };
        assert_ne!(
            dev_of(&fs.dir),
            dev_of(Path::new("/tmp")),
            "a second file system"
        );
        Some(fs)
    }

    /// A directory inside the tmpfs owned by the PostgreSQL OS user.
    fn pg_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.join(name);
        std::fs::create_dir(&d).unwrap();
        let out = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&d)
            .output()
            .unwrap();
        assert!(out.status.success(), "chown: {}", text(&out));
        d
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn dev_of(p: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(p).unwrap())
}

/// Files in `dir` (names, sorted); none when it does not exist.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn temporaries_in(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.contains(".barrelman-") || n.contains('#'))
        .collect()
}

fn segment(i: u32) -> String {
    format!("0000000100000000000000{i:02X}")
}

/// Archives the local file `path` with barrelman's native command.
fn native_archive(s3: &S3Server, url: &str, server: &str, path: &Path, extra: &[&str]) -> Output {
    Command::new(barrelman())
        .args(["-v", "wal-archive", "--endpoint-url", &s3.endpoint])
        .args(extra)
        .args([url, server, path.to_str().unwrap()])
        .envs(s3.env())
        .output()
        .unwrap()
}

/// Deletes every object under `prefix` (an archive wiped by its operator).
fn delete_prefix(s3: &S3Server, bucket: &str, prefix: &str) {
    const PY: &str = r#"
prefix = sys.argv[3]
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=o["Key"])
"#;
    boto3(s3, bucket, PY, &[prefix]);
}

/// The restore spool and the destination on two file systems: nothing spooled is
/// downloaded, a spooled segment is moved by a durable copy, prefetch fills the
/// spool; through the barman-cloud face (`--parallel`, `--spool-dir`) and the native
/// command (whose spool is always looked at). Every byte compares equal.
#[test]
fn wal_restore_across_file_systems_serves_spooled_and_unspooled_segments() {
    let Some(tmpfs) = Tmpfs::mount("128m") else {
        return;
    };
    let s3 = S3Server::start();
    s3.create_bucket("xfs");
    let work = tempfile::tempdir().unwrap();
    let mut originals = Vec::new();
    for i in 1..=6 {
        let path = work.path().join(segment(i));
        std::fs::write(&path, wal_like(SEG, 100 + u64::from(i))).unwrap();
        let out = native_archive(&s3, "s3://xfs/p", "srv", &path, &["--compression", "gzip"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        originals.push(path);
    }
    let spool = work.path().join("spool");
    let pg_wal = tmpfs.dir.join("pg_wal");
    std::fs::create_dir(&pg_wal).unwrap();
    let dest = pg_wal.join("RECOVERYXLOG");
    let links = links_dir();
    let barman_restore = |seg: &str, parallel: &str| {
        CloudCmd::new(&links.join("barman-cloud-wal-restore"), &s3)
            .opts(&["-v"])
            .run(&[
                "--parallel",
                parallel,
                "--spool-dir",
                spool.to_str().unwrap(),
                "s3://xfs/p",
                "srv",
                seg,
                dest.to_str().unwrap(),
            ])
    };
    let same = |i: usize| std::fs::read(&dest).unwrap() == std::fs::read(&originals[i]).unwrap();

    // Not spooled: downloaded, and the next two prefetched into the spool.
    let out = barman_restore(&segment(1), "3");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(same(0), "segment 1 restored byte for byte");
    let rspool = std::fs::read_dir(&spool)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(names_in(&rspool), [segment(2), segment(3)]);

    // Spooled: moved across file systems, leaving neither the spooled copy nor a
    // temporary.
    let out = barman_restore(&segment(2), "3");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("from the prefetch spool"),
        "{}",
        text(&out)
    );
    assert!(same(1), "segment 2 moved byte for byte");
    assert_eq!(names_in(&rspool), [segment(3)]);
    assert_eq!(names_in(&pg_wal), ["RECOVERYXLOG"]);

    // Without --parallel barman's face leaves the spool alone.
    let out = barman_restore(&segment(4), "1");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(same(3));
    assert_eq!(names_in(&rspool), [segment(3)]);

    // The native command always looks at its spool: a spooled segment is moved, an
    // unspooled one downloaded.
    let native = |seg: &str| {
        Command::new(barrelman())
            .args(["wal-restore", "--endpoint-url", &s3.endpoint, "--spool-dir"])
            .arg(&spool)
            .args(["s3://xfs/p", "srv", seg, dest.to_str().unwrap()])
            .envs(s3.env())
            .output()
            .unwrap()
    };
    let out = native(&segment(3));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(same(2));
    let out = native(&segment(5));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(same(4));
    assert!(
        !rspool.exists(),
        "a spool directory left empty is removed: {:?}",
        names_in(&spool)
    );
    assert_eq!(names_in(&pg_wal), ["RECOVERYXLOG"]);

    // A name never archived: exit 1 as before, the destination untouched.
    let out = barman_restore(&segment(9), "3");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(same(4));
}

fn write_manifest(dir: &Path, endpoint: &str, bucket: &str) -> PathBuf {
    let path = dir.join("objectstore.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nmetadata:\n  name: store\nspec:\n  configuration:\n    \
             destinationPath: s3://{bucket}/cnpg\n    endpointURL: {endpoint}\n    s3Credentials:\n      accessKeyId:\n        \
             name: creds\n        key: ID\n      secretAccessKey:\n        name: creds\n        key: SECRET\n    \
             wal:\n      compression: lz4\n      maxParallel: 4\n"
        ),
    )
    .unwrap();
    path
}

/// PGDATA on its own file system (a PVC on Kubernetes) and the spool on another:
/// `barrelman restore` writes a restore_command with four-way prefetch, PostgreSQL
/// replays every segment through it and has all the rows.
#[test]
fn restore_command_replays_with_pgdata_on_another_file_system_than_the_spool() {
    let Some(tmpfs) = Tmpfs::mount("1g") else {
        return;
    };
    let (s3, pg) = start_both(&[]);
    s3.create_bucket("pvc");
    let conf = pg.make_dir("conf");
    let manifest = write_manifest(&conf, &s3.endpoint, "pvc");
    let secrets = conf.join("secrets");
    std::fs::create_dir_all(secrets.join("creds")).unwrap();
    std::fs::write(secrets.join("creds/ID"), &s3.access_key).unwrap();
    std::fs::write(secrets.join("creds/SECRET"), &s3.secret_key).unwrap();
    let out = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let store = |cmd: &str| {
        format!(
            "{} {cmd} --config {} --server-name srv --secrets-dir {}",
            barrelman().display(),
            manifest.display(),
            secrets.display()
        )
    };
    let conf_path = pg.datadir.join("postgresql.conf");
    let mut text_conf = std::fs::read_to_string(&conf_path).unwrap();
    text_conf.push_str(&format!(
        "archive_mode = on\narchive_command = '{} --pgdata {} %p'\nwal_keep_size = '1GB'\n",
        store("wal-archive"),
        pg.datadir.display()
    ));
    std::fs::write(&conf_path, text_conf).unwrap();
    let spool = pg.make_dir("spool");
    let env = vec![("SPOOL_DIRECTORY".to_string(), spool.display().to_string())];
    pg.start_with_env(&env);
    let sock = pg.socket_dir.display().to_string();
    let port = pg.port.to_string();
    let backup = |name: &str| {
        let mut args: Vec<String> = store("backup")
            .split(' ')
            .skip(1)
            .map(String::from)
            .collect();
        args.extend(
            ["--immediate-checkpoint", "--host", &sock, "--port", &port]
                .iter()
                .map(|s| s.to_string()),
        );
        args.extend(
            ["--user", "postgres", "--name", name]
                .iter()
                .map(|s| s.to_string()),
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_as_pg_env(&barrelman(), &refs, &[]);
        assert_eq!(out.status.code(), Some(0), "backup: {}", text(&out));
    };
    backup("base");
    // Enough WAL after the backup for prefetch to matter: several segments.
    pg.pgbench(&["-i", "-s", "8", "-q"]);
    pg.psql("create table marker as select 'after the backup'::text as note");
    let want = pg.psql("select count(*) from pgbench_accounts");
    pg.psql("select pg_create_restore_point('mid')");
    // More segments after the target: prefetched into the spool, never replayed.
    pg.pgbench(&["-i", "-s", "4", "-q"]);
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(120));
    pg.stop();

    let dest = tmpfs.pg_dir("pgdata");
    let mut args: Vec<String> = store("restore")
        .split(' ')
        .skip(1)
        .map(String::from)
        .collect();
    args.push(dest.display().to_string());
    args.extend(["--target-name", "mid", "--target-action", "pause"].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_as_pg_env(&barrelman(), &refs, &[]);
    assert_eq!(out.status.code(), Some(0), "restore: {}", text(&out));
    let auto_conf = std::fs::read_to_string(dest.join("postgresql.auto.conf")).unwrap();
    assert!(auto_conf.contains("wal-restore --config"), "{auto_conf}");
    // -v: each call logs (into the server log) whether the spool served it.
    std::fs::write(
        dest.join("postgresql.auto.conf"),
        auto_conf.replace("wal-restore --config", "wal-restore -v --config"),
    )
    .unwrap();
    assert_ne!(
        dev_of(&dest),
        dev_of(&spool),
        "PGDATA and spool on two file systems"
    );

    let restored = PgCluster::from_datadir(dest.clone(), &["archive_mode = off"]);
    restored.start_with_env(&env);
    let deadline = Instant::now() + Duration::from_secs(120);
    while restored.psql("select pg_get_wal_replay_pause_state()") != "paused" {
        assert!(
            Instant::now() < deadline,
            "recovery did not reach the target:\n{}",
            tail(&restored.log(), 4000)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(restored.psql("select count(*) from pgbench_accounts"), want);
    assert_eq!(restored.psql("select note from marker"), "after the backup");
    // Prefetched segments were served from the spool, on the other file system.
    // (Whether some still wait there at the pause depends on where the target falls
    // in a prefetch window: a spool hit does not prefetch again.)
    let log = restored.log();
    assert!(
        log.contains("from the prefetch spool"),
        "no segment came from the spool:\n{}",
        tail(&log, 4000)
    );
    let spooled: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .flat_map(|d| names_in(&d.unwrap().path()))
        .collect();
    assert!(
        spooled.iter().all(|n| n.len() == 24),
        "prefetched segments: {spooled:?}"
    );
    restored.psql("select pg_wal_replay_resume()");
    wait_promoted(&restored);
    assert_eq!(restored.psql("select count(*) from pgbench_accounts"), want);
    let log = restored.log();
    assert!(
        !log.contains("cannot move"),
        "no spool failure:\n{}",
        tail(&log, 4000)
    );
    assert!(
        log.matches("restored log file").count() >= 6,
        "PostgreSQL replayed the archived segments:\n{}",
        tail(&log, 4000)
    );
    assert!(
        temporaries_in(&dest.join("pg_wal")).is_empty(),
        "{:?}",
        names_in(&dest.join("pg_wal"))
    );
    restored.stop();
}

/// A re-created cluster (same archive, same server name, same spool on the host) with
/// segments that were never uploaded: the old cluster's parallel-archive markers do not
/// make its archive calls succeed without uploading. Also when the file is unchanged
/// but CloudNativePG's empty-archive marker says the archive starts anew.
#[test]
fn stale_parallel_archive_markers_do_not_skip_uploads() {
    let s3 = S3Server::start();
    s3.create_bucket("mark");
    let dir = tempfile::tempdir().unwrap();
    let pgdata = dir.path().join("pgdata");
    let spool = dir.path().join("spool");
    let make_cluster = |seed: u64| {
        let _ = std::fs::remove_dir_all(&pgdata);
        std::fs::create_dir_all(pgdata.join("pg_wal/archive_status")).unwrap();
        for i in 1..=3 {
            let s = segment(i);
            std::fs::write(
                pgdata.join("pg_wal").join(&s),
                wal_like(SEG, seed + u64::from(i)),
            )
            .unwrap();
            std::fs::write(
                pgdata
                    .join("pg_wal/archive_status")
                    .join(format!("{s}.ready")),
                b"",
            )
            .unwrap();
        }
    };
    let archive = |seg: &str, parallel: &str| {
        Command::new(barrelman())
            .args(["-v", "wal-archive", "--endpoint-url", &s3.endpoint])
            .args([
                "--compression",
                "zstd",
                "--max-parallel",
                parallel,
                "--pgdata",
            ])
            .arg(&pgdata)
            .arg("--spool-dir")
            .arg(&spool)
            .args(["s3://mark/p", "srv", &format!("pg_wal/{seg}")])
            .current_dir(&pgdata)
            .envs(s3.env())
            .output()
            .unwrap()
    };
    let restored = |seg: &str| -> Option<Vec<u8>> {
        let dest = dir.path().join(format!("restored-{seg}"));
        let _ = std::fs::remove_file(&dest);
        let out = Command::new(barrelman())
            .args(["wal-restore", "--endpoint-url", &s3.endpoint, "--spool-dir"])
            .arg(dir.path().join("rspool"))
            .args(["s3://mark/p", "srv", seg, dest.to_str().unwrap()])
            .envs(s3.env())
            .output()
            .unwrap();
        match out.status.code() {
            Some(0) => Some(std::fs::read(&dest).unwrap()),
            Some(1) => None,
            _ => panic!("{}", text(&out)),
        }
    };

    // PostgreSQL renames `.ready` to `.done` after a successful archive_command.
    let done = |seg: &str| {
        std::fs::remove_file(
            pgdata
                .join("pg_wal/archive_status")
                .join(format!("{seg}.ready")),
        )
        .unwrap()
    };
    let current = |seg: &str| std::fs::read(pgdata.join("pg_wal").join(seg)).unwrap();
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();

    // The first cluster uploads 2 and 3 ahead of PostgreSQL's calls for them.
    make_cluster(1000);
    let out = archive(&segment(1), "3");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    done(&segment(1));
    let marks = spool.join(names_in(&spool)[0].clone());
    assert_eq!(names_in(&marks), [segment(2), segment(3)]);

    // The archive is wiped and CloudNativePG's empty-archive marker set: the markers,
    // though they stand for these very files, are ignored and cleared.
    delete_prefix(&s3, "mark", "p/srv/");
    std::fs::write(pgdata.join(".check-empty-wal-archive"), b"").unwrap();
    let out = archive(&segment(2), "3");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr(&out).contains("ignored 2 parallel-archive marker(s)"),
        "{}",
        text(&out)
    );
    assert!(
        restored(&segment(2)) == Some(current(&segment(2))),
        "segment 2 is really in the archive: {}",
        text(&out)
    );
    assert!(!pgdata.join(".check-empty-wal-archive").exists());
    done(&segment(2));
    assert_eq!(names_in(&marks), [segment(3)], "uploaded ahead again");

    // The cluster is re-created (new files, same names) and its archive wiped; the
    // spool stays, with the marker of the old segment 3.
    delete_prefix(&s3, "mark", "p/srv/");
    make_cluster(2000);
    let out = archive(&segment(1), "3");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    done(&segment(1));
    assert_eq!(names_in(&marks), [segment(2), segment(3)]);
    // The marker of segment 2 stands for the new file: the call returns at once.
    let out = archive(&segment(2), "3");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr(&out).contains("already archived by an earlier parallel upload"),
        "{}",
        text(&out)
    );
    assert!(restored(&segment(2)) == Some(current(&segment(2))));
    done(&segment(2));
    // The marker of segment 3 is the old cluster's: the new segment 3 is uploaded.
    let out = archive(&segment(3), "3");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr(&out).contains("is for another file"),
        "{}",
        text(&out)
    );
    assert!(
        restored(&segment(3)) == Some(current(&segment(3))),
        "the new cluster's segment 3 is really in the archive: {}",
        text(&out)
    );
    assert!(names_in(&marks).is_empty(), "{:?}", names_in(&marks));
}

/// A promoted standby keeps CloudNativePG's empty-archive marker: the archive holds
/// its origin's timeline 1, which does not block the first segment of timeline 2; a
/// segment of timeline 1 is still refused.
#[test]
fn the_empty_archive_marker_checks_the_timeline_being_archived() {
    let s3 = S3Server::start();
    s3.create_bucket("tli");
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join(segment(1));
    std::fs::write(&origin, wal_like(SEG, 1)).unwrap();
    let out = native_archive(&s3, "s3://tli/p", "srv", &origin, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir_all(pgdata.join("pg_wal")).unwrap();
    let marker = pgdata.join(".check-empty-wal-archive");
    std::fs::write(&marker, b"").unwrap();
    let old_tli = pgdata.join("pg_wal").join(segment(2));
    std::fs::write(&old_tli, wal_like(SEG, 2)).unwrap();
    let pgdata_arg = ["--pgdata", pgdata.to_str().unwrap()];
    let out = native_archive(&s3, "s3://tli/p", "srv", &old_tli, &pgdata_arg);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not empty"),
        "{}",
        text(&out)
    );
    assert!(marker.exists());

    let history = pgdata.join("pg_wal/00000002.history");
    std::fs::write(&history, b"1\t0/3000000\tno recovery target specified\n").unwrap();
    let out = native_archive(&s3, "s3://tli/p", "srv", &history, &pgdata_arg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!marker.exists(), "removed after the first archived file");
    let new_tli = pgdata.join("pg_wal/000000020000000000000003");
    std::fs::write(&new_tli, wal_like(SEG, 3)).unwrap();
    std::fs::write(&marker, b"").unwrap();
    let out = native_archive(&s3, "s3://tli/p", "srv", &new_tli, &pgdata_arg);
    assert_eq!(
        out.status.code(),
        Some(1),
        "timeline 2 is in use now: {}",
        text(&out)
    );
    std::fs::remove_file(&marker).unwrap();
    let out = native_archive(&s3, "s3://tli/p", "srv", &new_tli, &pgdata_arg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// The messages of local failures say what is wrong: a WAL path that is a directory,
/// and a destination file system that is full (naming the path, leaving no partial
/// file).
#[test]
fn fault_local_disk_full_and_a_directory_as_wal_path_are_named() {
    let s3 = S3Server::start();
    s3.create_bucket("msg");
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join(segment(1));
    std::fs::create_dir(&wal_dir).unwrap();
    let out = native_archive(&s3, "s3://msg/p", "srv", &wal_dir, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot read WAL file {}: it is a directory",
            wal_dir.display()
        )),
        "{}",
        text(&out)
    );

    let Some(tmpfs) = Tmpfs::mount("1m") else {
        return;
    };
    let seg = dir.path().join(segment(2));
    std::fs::write(&seg, wal_like(SEG, 5)).unwrap();
    let out = native_archive(&s3, "s3://msg/p", "srv", &seg, &["--compression", "zstd"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dest = tmpfs.dir.join("RECOVERYXLOG");
    for program in [barrelman(), links_dir().join("barman-cloud-wal-restore")] {
        let mut args = vec!["--endpoint-url", &s3.endpoint, "s3://msg/p", "srv"];
        if program == barrelman() {
            args.insert(0, "wal-restore");
        }
        let seg_name = segment(2);
        args.extend([seg_name.as_str(), dest.to_str().unwrap()]);
        let out = run(&program, &args, &s3);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "the local disk is full: cannot write {}",
                dest.display()
            )),
            "{}",
            text(&out)
        );
        assert!(!err.contains("decompress"), "{}", text(&out));
        assert!(
            names_in(&tmpfs.dir).is_empty(),
            "{:?}",
            names_in(&tmpfs.dir)
        );
    }

    // A spooled segment moved onto the full file system: exit 2 (barman's code for a
    // spool that cannot be used), the disk named, and the spooled copy kept.
    let seg3 = dir.path().join(segment(3));
    std::fs::write(&seg3, wal_like(SEG, 6)).unwrap();
    let out = native_archive(&s3, "s3://msg/p", "srv", &seg3, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let spool = dir.path().join("spool");
    let restore = |seg: &str, dest: &Path| {
        let mut args = vec![
            "-v",
            "wal-restore",
            "--endpoint-url",
            &s3.endpoint,
            "--parallel",
            "2",
        ];
        args.extend(["--spool-dir", spool.to_str().unwrap(), "s3://msg/p", "srv"]);
        args.extend([seg, dest.to_str().unwrap()]);
        run(&barrelman(), &args, &s3)
    };
    let roomy = dir.path().join("RECOVERYXLOG");
    let out = restore(&segment(2), &roomy);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = restore(&segment(3), &dest);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "cannot move the spooled {} to {}: the local disk is full",
            segment(3),
            dest.display()
        )),
        "{}",
        text(&out)
    );
    assert!(
        names_in(&tmpfs.dir).is_empty(),
        "{:?}",
        names_in(&tmpfs.dir)
    );
    let out = restore(&segment(3), &roomy);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("from the prefetch spool"),
        "{}",
        text(&out)
    );
    assert!(std::fs::read(&roomy).unwrap() == std::fs::read(&seg3).unwrap());
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// kill -9 in the middle of a restore with prefetch leaves a temporary in `pg_wal` and
/// in the spool; the next call removes both (and only those), and restores.
#[test]
fn fault_kill9_restore_temporaries_are_removed_by_the_next_call() {
    let s3 = S3Server::start();
    s3.create_bucket("kill");
    let dir = tempfile::tempdir().unwrap();
    let mut originals = Vec::new();
    for i in 1..=2 {
        let path = dir.path().join(segment(i));
        std::fs::write(&path, wal_like(SEG, 300 + u64::from(i))).unwrap();
        let out = native_archive(&s3, "s3://kill/p", "srv", &path, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        originals.push(path);
    }
    let slow = FlakyProxy::start(&s3.endpoint, Fault::SlowAnswers, usize::MAX);
    let pg_wal = dir.path().join("pg_wal");
    std::fs::create_dir(&pg_wal).unwrap();
    let spool = dir.path().join("spool");
    let dest = pg_wal.join("RECOVERYXLOG");
    // Someone else's file that looks like ours but is not ours, and a live call's.
    let foreign = pg_wal.join(".RECOVERYXLOG.other-1.tmp");
    std::fs::write(&foreign, b"keep").unwrap();
    let live = pg_wal.join(format!(
        ".RECOVERYXLOG.barrelman-{}.tmp",
        std::process::id()
    ));
    std::fs::write(&live, b"live").unwrap();
    let restore = |endpoint: &str| {
        let mut cmd = Command::new(barrelman());
        cmd.args([
            "-v",
            "wal-restore",
            "--endpoint-url",
            endpoint,
            "--parallel",
            "2",
        ])
        .arg("--spool-dir")
        .arg(&spool)
        .args(["s3://kill/p", "srv", &segment(1), dest.to_str().unwrap()])
        .envs(s3.env());
        cmd
    };
    let mut child = restore(&slow.endpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let ours = format!(".RECOVERYXLOG.barrelman-{pid}.tmp");
    let spooled_tmp = format!(".{}.barrelman-{pid}.tmp", segment(2));
    let rspool = || {
        std::fs::read_dir(&spool)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path())
    };
    wait_for(
        "both downloads to be under way",
        Duration::from_secs(30),
        || {
            let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            size(pg_wal.join(&ours)) > 0 && rspool().is_some_and(|d| size(d.join(&spooled_tmp)) > 0)
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let rspool = rspool().unwrap();
    assert!(names_in(&pg_wal).contains(&ours));
    assert_eq!(names_in(&rspool), [spooled_tmp]);
    assert!(!dest.exists());

    let out = restore(&s3.endpoint).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(&originals[0]).unwrap());
    let mut want = vec![foreign.file_name().unwrap().to_string_lossy().into_owned()];
    want.push(live.file_name().unwrap().to_string_lossy().into_owned());
    want.push("RECOVERYXLOG".into());
    want.sort();
    assert_eq!(
        names_in(&pg_wal),
        want,
        "only the killed call's temporary went"
    );
    assert_eq!(
        names_in(&rspool),
        [segment(2)],
        "prefetched again, no temporary"
    );
}

/// kill -9 in the middle of an archive into a `file://` store leaves object_store's
/// staging file (`<key>#1`), hidden from listings; once it is older than any live
/// upload could leave it, the next archive call into that directory removes it.
#[test]
fn fault_kill9_archive_into_a_file_store_leaves_no_staging_file_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = format!("file://{}", store.display());
    // A large segment (--wal-segsize 64) of incompressible bytes through xz: slow
    // enough to be killed mid-upload, and over the single-PUT size.
    let big = dir.path().join(segment(1));
    let mut random = vec![0u8; 64 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut random)
        .unwrap();
    std::fs::write(&big, random).unwrap();
    let wal_dir = store.join("srv/wals/0000000100000000");
    let mut child = Command::new(barrelman())
        .args(["wal-archive", "--compression", "xz"])
        .args([&url, "srv", big.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the staging file", Duration::from_secs(120), || {
        names_in(&wal_dir).iter().any(|n| n.contains('#'))
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let staging: Vec<String> = names_in(&wal_dir);
    assert_eq!(
        staging,
        [format!("{}.xz#1", segment(1))],
        "killed mid-upload"
    );

    // A fresh one may be a live upload: kept.
    let seg2 = dir.path().join(segment(2));
    std::fs::write(&seg2, wal_like(SEG, 10)).unwrap();
    let archive = |p: &Path| {
        Command::new(barrelman())
            .args(["-v", "wal-archive", &url, "srv", p.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = archive(&seg2);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(names_in(&wal_dir).contains(&staging[0]));

    // Fifteen minutes without a write: an orphan, removed by the next call.
    std::fs::File::options()
        .write(true)
        .open(wal_dir.join(&staging[0]))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(16 * 60))
        .unwrap();
    let out = archive(&seg2);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(names_in(&wal_dir), [segment(2)], "{}", text(&out));
}

/// A spool that cannot be created (its path is a file) does not fail the archive of
/// the requested segment, which is uploaded; only the uploads ahead are skipped.
#[test]
fn an_unusable_archive_spool_does_not_fail_the_upload() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("store").display());
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir_all(pgdata.join("pg_wal/archive_status")).unwrap();
    for i in 1..=2 {
        let s = segment(i);
        std::fs::write(
            pgdata.join("pg_wal").join(&s),
            wal_like(SEG, 700 + u64::from(i)),
        )
        .unwrap();
        std::fs::write(pgdata.join(format!("pg_wal/archive_status/{s}.ready")), b"").unwrap();
    }
    let spool = dir.path().join("spool");
    std::fs::write(&spool, b"a file where the spool should be").unwrap();
    let out = Command::new(barrelman())
        .args(["wal-archive", "--max-parallel", "2", "--pgdata"])
        .arg(&pgdata)
        .arg("--spool-dir")
        .arg(&spool)
        .args([&url, "srv", &format!("pg_wal/{}", segment(1))])
        .current_dir(&pgdata)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("archiving without parallel uploads"),
        "{}",
        text(&out)
    );
    let dest = dir.path().join("back");
    let out = Command::new(barrelman())
        .args([
            "wal-restore",
            &url,
            "srv",
            &segment(1),
            dest.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        std::fs::read(&dest).unwrap()
            == std::fs::read(pgdata.join("pg_wal").join(segment(1))).unwrap()
    );
}

/// The syscalls of `program args` that touch files or sync them, one list per thread
/// (so that strace never splits a call), as strace prints them; `None` (and a printed
/// reason) without strace.
fn file_syscalls(program: &Path, args: &[&str]) -> Option<(Output, Vec<Vec<String>>)> {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("SKIPPED: strace is not installed");
        return None;
    }
    let logs = tempfile::tempdir().unwrap();
    let out = Command::new("strace")
        .args(["-f", "-ff", "-qq", "-s", "1024"])
        .args(["-e", "trace=%file,fsync,fdatasync", "-o"])
        .arg(logs.path().join("t"))
        .arg(program)
        .args(args)
        .output()
        .unwrap();
    let threads = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .lines()
                .map(String::from)
                .collect()
        })
        .collect();
    Some((out, threads))
}

/// After the rename (or link) that makes `dest` appear, the same thread opens its
/// directory and fsyncs it: the file survives a crash of the host. With
/// `written_here`, the file renamed was also written and synced by that thread first.
fn assert_durable_rename(threads: &[Vec<String>], dest: &Path, written_here: bool) {
    let dest_q = format!("\"{}\"", dest.display());
    let dir_q = format!("\"{}\"", dest.parent().unwrap().display());
    let (lines, renamed) = threads
        .iter()
        .find_map(|lines| {
            lines
                .iter()
                .position(|l| {
                    (l.starts_with("rename") || l.starts_with("link"))
                        && l.contains(&format!(", {dest_q}"))
                        && l.ends_with("= 0")
                })
                .map(|i| (lines, i))
        })
        .unwrap_or_else(|| panic!("no rename to {dest_q}:\n{threads:#?}"));
    let fd_of = |l: &str| l.rsplit("= ").next().unwrap().trim().to_string();
    let syncs = |lines: &[String], fd: &str| {
        lines.iter().any(|s| {
            (s.starts_with(&format!("fsync({fd})")) || s.starts_with(&format!("fdatasync({fd})")))
                && s.ends_with("= 0")
        })
    };
    let after = &lines[renamed..];
    let synced_dir = after.iter().any(|l| {
        l.starts_with("openat(") && l.contains(&format!(", {dir_q},")) && syncs(after, &fd_of(l))
    });
    assert!(
        synced_dir,
        "the directory of {dest_q} is not fsynced after the rename:\n{}",
        after.join("\n")
    );
    if written_here {
        let source = lines[renamed].split('"').nth(1).unwrap();
        let before = &lines[..renamed];
        let opened = before
            .iter()
            .rposition(|l| l.starts_with("openat(") && l.contains(&format!("\"{source}\"")))
            .unwrap_or_else(|| {
                panic!(
                    "{source} not written by this thread:\n{}",
                    before.join("\n")
                )
            });
        assert!(
            syncs(&before[opened..], &fd_of(&before[opened])),
            "{source} is not synced before the rename:\n{}",
            before[opened..].join("\n")
        );
    }
}

/// Restored files, downloaded or taken from the spool, are renamed into place and
/// their directory fsynced.
#[test]
fn restored_files_are_renamed_into_place_and_their_directory_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("store").display());
    for i in 1..=2 {
        let p = dir.path().join(segment(i));
        std::fs::write(&p, wal_like(SEG, 900 + u64::from(i))).unwrap();
        let out = Command::new(barrelman())
            .args(["wal-archive", &url, "srv", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let pg_wal = dir.path().join("pg_wal");
    std::fs::create_dir(&pg_wal).unwrap();
    let dest = pg_wal.join("RECOVERYXLOG");
    let spool = dir.path().join("spool");
    let restore = |seg: &str| {
        let args = [
            "wal-restore",
            "--parallel",
            "2",
            "--spool-dir",
            spool.to_str().unwrap(),
            &url,
            "srv",
            seg,
            dest.to_str().unwrap(),
        ];
        file_syscalls(&barrelman(), &args)
    };
    // Downloaded (and the next segment prefetched).
    let Some((out, lines)) = restore(&segment(1)) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_durable_rename(&lines, &dest, true);
    // Moved from the spool.
    let (out, lines) = restore(&segment(2)).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        lines
            .iter()
            .flatten()
            .any(|l| l.starts_with("rename") && l.contains(&format!("/{}\"", segment(2)))),
        "served from the spool:\n{lines:#?}"
    );
    assert_durable_rename(&lines, &dest, false);
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(dir.path().join(segment(2))).unwrap());
}

/// Several restore calls at once for the same segment, into the same destination and
/// spool (two standbys' worth of restore_command sharing a host): every call exits 0,
/// the destination and everything spooled hold the archived bytes, and no temporary
/// is left.
#[test]
fn race_four_restores_sharing_a_spool_all_succeed_with_the_right_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("store").display());
    let mut originals = Vec::new();
    for i in 1..=4 {
        let p = dir.path().join(segment(i));
        std::fs::write(&p, wal_like(SEG, 1100 + u64::from(i))).unwrap();
        let out = Command::new(barrelman())
            .args([
                "wal-archive",
                "--compression",
                "lz4",
                &url,
                "srv",
                p.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        originals.push(std::fs::read(&p).unwrap());
    }
    let pg_wal = dir.path().join("pg_wal");
    std::fs::create_dir(&pg_wal).unwrap();
    let spool = dir.path().join("spool");
    let dest = pg_wal.join("RECOVERYXLOG");
    let spawn = |seg: &str| {
        Command::new(barrelman())
            .args(["wal-restore", "--parallel", "3", "--spool-dir"])
            .arg(&spool)
            .args([&url, "srv", seg, dest.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for (round, seg) in [segment(1), segment(2), segment(3)].iter().enumerate() {
        let children: Vec<_> = (0..4).map(|_| spawn(seg)).collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        }
        assert!(
            std::fs::read(&dest).unwrap() == originals[round],
            "{seg} restored byte for byte"
        );
        assert_eq!(temporaries_in(&pg_wal), Vec::<String>::new());
        for d in std::fs::read_dir(&spool).into_iter().flatten() {
            let d = d.unwrap().path();
            assert_eq!(temporaries_in(&d), Vec::<String>::new());
            for name in names_in(&d) {
                let i = u32::from_str_radix(&name[16..], 16).unwrap() as usize;
                assert!(
                    std::fs::read(d.join(&name)).unwrap() == originals[i - 1],
                    "spooled {name} holds the archived bytes"
                );
            }
        }
    }
}

/// An archive call into a `file://` store exits 0 only after the object's data and
/// its directory entry are on disk: PostgreSQL recycles the segment right after.
#[test]
fn archived_objects_in_a_file_store_are_synced_before_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = format!("file://{}", store.display());
    let wal = dir.path().join(segment(1));
    std::fs::write(&wal, wal_like(SEG, 1200)).unwrap();
    let Some((out, threads)) = file_syscalls(
        &barrelman(),
        &[
            "wal-archive",
            "--compression",
            "gzip",
            &url,
            "srv",
            wal.to_str().unwrap(),
        ],
    ) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let key = store.join(format!("srv/wals/0000000100000000/{}.gz", segment(1)));
    assert_durable_rename(&threads, &key, true);
}
