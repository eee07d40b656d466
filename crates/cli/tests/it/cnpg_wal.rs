//! The CloudNativePG plugin's WAL service end to end on real components: the stand-in
//! Kubernetes API serves the Cluster's ObjectStore and its Secret, `barrelman cnpg
//! instance` runs as the PostgreSQL user on a socket, and PostgreSQL 15's
//! `archive_command` is `barrelman cnpg client ... wal-archive`. Segments land in
//! barman's layout in SeaweedFS and the real `barman-cloud-wal-restore` 3.19.1 reads
//! them back byte-identical; restores go through the client too.

use super::common::*;
use barrelman_cnpg::k8s::SECRET_FORBIDDEN_MESSAGE;
use barrelman_cnpg::PLUGIN_NAME;
use barrelman_testkit::kubeapi::{self, KubeApi};
use barrelman_testkit::{as_pg_user, pg_bindir, PgCluster, S3Server};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const NS: &str = "db";
pub(crate) const BUCKET: &str = "cnpg";
pub(crate) const DEST: &str = "s3://cnpg/wal";
pub(crate) const SERVER: &str = "pg1";

/// The Secret `secret` with the S3 server's keys and the ObjectStore `name` using it.
pub(crate) fn seed_store(api: &KubeApi, s3: &S3Server, name: &str, secret: &str) {
    seed_store_at(api, s3, &s3.endpoint, name, secret);
}

/// As [`seed_store`], with the ObjectStore's `endpointURL` set to `endpoint` (a
/// fault proxy in front of the S3 server, say).
pub(crate) fn seed_store_at(
    api: &KubeApi,
    s3: &S3Server,
    endpoint: &str,
    name: &str,
    secret: &str,
) {
    api.insert(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret, "namespace": NS},
        "data": {
            "ACCESS_KEY_ID": kubeapi::base64(s3.access_key.as_bytes()),
            "ACCESS_SECRET_KEY": kubeapi::base64(s3.secret_key.as_bytes()),
        },
    }));
    api.insert(json!({
        "apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"configuration": {
            "destinationPath": DEST,
            "endpointURL": endpoint,
            "s3Credentials": {
                "accessKeyId": {"name": secret, "key": "ACCESS_KEY_ID"},
                "secretAccessKey": {"name": secret, "key": "ACCESS_SECRET_KEY"},
            },
            "wal": {"compression": "gzip", "maxParallel": 4},
        }},
    }));
}

/// A Cluster named `name` archiving into the ObjectStore `store` as server `SERVER`,
/// whose current primary is `pg-1`, written as JSON into `dir`.
pub(crate) fn cluster_file(dir: &Path, name: &str, store: &str) -> PathBuf {
    cluster_file_with_primary(dir, name, store, "pg-1")
}

/// Same, with `primary` as `status.currentPrimary` (the sidecar's pod is `pg-1`).
fn cluster_file_with_primary(dir: &Path, name: &str, store: &str, primary: &str) -> PathBuf {
    let cluster = json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": name, "namespace": NS, "uid": "u-1"},
        "spec": {"plugins": [{"name": PLUGIN_NAME, "isWALArchiver": true,
                              "parameters": {"barmanObjectName": store, "serverName": SERVER}}]},
        "status": {"currentPrimary": primary},
    });
    let path = dir.join(format!("{name}-{store}-{primary}.json"));
    std::fs::write(&path, cluster.to_string()).unwrap();
    path
}

/// `barrelman cnpg instance` as the PostgreSQL user; killed when dropped.
pub(crate) struct Sidecar {
    child: Child,
    log: PathBuf,
    pub(crate) socket: PathBuf,
}

impl Sidecar {
    pub(crate) fn start(
        work: &Path,
        plugins: &Path,
        spool: &Path,
        pgdata: &Path,
        kube_url: &str,
    ) -> Self {
        Self::start_role("instance", work, plugins, spool, pgdata, kube_url, &[])
    }

    /// `barrelman cnpg ROLE` (`instance` as pod `pg-1` of Cluster `pg`, or `restore`
    /// as the recovery Job's pod), with `env` added.
    pub(crate) fn start_role(
        role: &str,
        work: &Path,
        plugins: &Path,
        spool: &Path,
        pgdata: &Path,
        kube_url: &str,
        env: &[(&str, String)],
    ) -> Self {
        let kubeconfig = work.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {kube_url}\n\
                 users:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: t\n    \
                 user: u\n    namespace: {NS}\ncurrent-context: c\n"
            ),
        )
        .unwrap();
        let log = work.join("sidecar.log");
        let child = as_pg_user(&mut Command::new(barrelman()))
            .args(["cnpg", role, "--plugin-path"])
            .arg(plugins)
            .env("NAMESPACE", NS)
            .env("CLUSTER_NAME", "pg")
            .env(
                "POD_NAME",
                if role == "restore" {
                    "pg-restored-1-full-recovery"
                } else {
                    "pg-1"
                },
            )
            .env("SPOOL_DIRECTORY", spool)
            .env("PGDATA", pgdata)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let sidecar = Sidecar {
            child,
            log,
            socket: plugins.join(PLUGIN_NAME),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new(barrelman())
                .args(["cnpg", "healthcheck", "unix", "--plugin-path"])
                .arg(plugins)
                .output()
                .unwrap();
            if out.status.code() == Some(0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sidecar not serving after 20 s:\n{}",
                sidecar.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        sidecar
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// PostgreSQL's `archive_command` line through this sidecar, for `cluster`.
    pub(crate) fn archive_command(&self, cluster: &Path) -> String {
        format!(
            "archive_command = '{} cnpg client --socket {} wal-archive --cluster {} %p'",
            barrelman().display(),
            self.socket.display(),
            cluster.display()
        )
    }

    /// [`Sidecar::client`] that must succeed (exit 0; else the output and the
    /// sidecar's log are shown).
    pub(crate) fn client_ok(&self, args: &[&str]) -> Output {
        let out = self.client(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n--- sidecar\n{}",
            text(&out),
            self.log()
        );
        out
    }

    /// `barrelman cnpg client --socket S ARGS` as the PostgreSQL user.
    pub(crate) fn client(&self, args: &[&str]) -> Output {
        self.client_command(args).output().unwrap()
    }

    /// The command [`Sidecar::client`] runs, for callers that spawn it themselves
    /// (the plugin benchmark measures each call).
    pub(crate) fn client_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(barrelman());
        as_pg_user(&mut cmd)
            .args(["cnpg", "client", "--socket"])
            .arg(&self.socket)
            .args(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        cmd
    }

    /// The sidecar's process id (its memory is read from /proc by the benchmark).
    #[allow(dead_code)] // used by benches/plugin.rs only
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client's one JSON log line on stderr.
pub(crate) fn client_line(out: &Output) -> Value {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no log line: {}", text(out)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

pub(crate) fn append_conf(pg: &PgCluster, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(pg.datadir.join("postgresql.conf"))
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

#[test]
fn postgres_archives_and_restores_through_the_plugin_socket() {
    // WAL piles up (.ready) until the archive_command is set: the first call then
    // has a batch of wal.maxParallel (4) to upload.
    let (s3, pg) = start_both(&[
        "archive_mode = on",
        "archive_command = ''",
        "wal_keep_size = '1GB'",
    ]);
    s3.create_bucket(BUCKET);
    let api = KubeApi::start();
    seed_store(&api, &s3, "store", "creds");
    let work = pg.make_dir("plugin-work");
    let plugins = pg.make_dir("plugins");
    let spool = pg.make_dir("spool");
    let restored = pg.make_dir("restored");
    let cluster = cluster_file(&work, "pg", "store");
    let sidecar = Sidecar::start(&work, &plugins, &spool, &pg.datadir, &api.url());
    let out = sidecar.client(&["identity"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (id["name"].as_str(), id["ready"].as_bool()),
        (Some(PLUGIN_NAME), Some(true)),
        "{id}"
    );
    let marker = pg.datadir.join(".check-empty-wal-archive");
    std::fs::write(&marker, "").unwrap();

    pg.start();
    pg.pgbench(&["-i", "-s", "5", "-q"]);
    let last = switch_wal(&pg);
    let mut segs = segments_before(&pg.datadir, &last);
    segs.push(last.clone());
    assert!(segs.len() >= 5, "pgbench made only {segs:?}");

    append_conf(&pg, &[sidecar.archive_command(&cluster)]);
    pg.psql("select pg_reload_conf()");
    wait_archived(&pg, &last, Duration::from_secs(120));
    assert_eq!(
        pg.psql("select failed_count from pg_stat_archiver"),
        "0",
        "{}\n--- sidecar\n{}",
        tail(&pg.log(), 4000),
        sidecar.log()
    );
    let log = sidecar.log();
    // The marker asked for the empty-archive check, and the first success removed it.
    assert!(log.contains("checking that the archive is empty"), "{log}");
    assert!(!marker.exists(), "the marker outlived the first upload");
    // Batches of 4: every segment uploaded ahead was answered from its marker later.
    let ahead = log
        .matches("was already archived by an earlier parallel upload")
        .count();
    assert!(ahead >= 3, "{ahead} spool shortcuts:\n{log}");

    // barman's layout, gzip, read back by the real barman-cloud-wal-restore.
    let keys = list_keys(&s3, BUCKET, "wal/pg1/wals/0000000100000000/");
    for seg in &segs {
        assert!(
            keys.contains(&format!("{seg}.gz")),
            "{seg} not stored: {keys:?}"
        );
    }
    let out_dir = tempfile::tempdir().unwrap();
    for seg in &segs {
        let dest = out_dir.path().join(seg);
        let out = run(
            &barman_tool("barman-cloud-wal-restore"),
            &[
                "--endpoint-url",
                &s3.endpoint,
                "--cloud-provider",
                "aws-s3",
                DEST,
                SERVER,
                seg,
                dest.to_str().unwrap(),
            ],
            &s3,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "barman restore {seg}: {}",
            text(&out)
        );
        let original = std::fs::read(pg.datadir.join("pg_wal").join(seg)).unwrap();
        assert!(std::fs::read(&dest).unwrap() == original, "{seg} differs");
    }

    // WAL.Restore through the client: byte-identical, the next three prefetched and
    // served from the spool.
    for seg in &segs[..2] {
        let dest = restored.join(seg);
        let out = sidecar.client(&[
            "wal-restore",
            "--cluster",
            cluster.to_str().unwrap(),
            seg,
            dest.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{}",
            text(&out),
            sidecar.log()
        );
        let original = std::fs::read(pg.datadir.join("pg_wal").join(seg)).unwrap();
        assert!(std::fs::read(&dest).unwrap() == original, "{seg} differs");
    }
    let log = sidecar.log();
    assert!(
        log.contains(&format!("restored {} from the prefetch spool", segs[1])),
        "{log}"
    );

    // A segment never archived: NotFound, exit 1 (PostgreSQL's "not there").
    let dest = restored.join("missing");
    let out = sidecar.client(&[
        "wal-restore",
        "--cluster",
        cluster.to_str().unwrap(),
        "0000000100000000000000FE",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(client_line(&out)["code"], "NotFound", "{}", text(&out));
    assert!(!dest.exists());
    // Not a WAL name: InvalidArgument.
    let out = sidecar.client(&[
        "wal-restore",
        "--cluster",
        cluster.to_str().unwrap(),
        "RECOVERYXLOG",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        client_line(&out)["code"],
        "InvalidArgument",
        "{}",
        text(&out)
    );

    // A standby (another pod is primary) can stream: when a prefetch finds the end of
    // the archive, the next call answers OutOfRange once, then the archive is read again.
    let standby = cluster_file_with_primary(&work, "pg", "store", "pg-0");
    let flag = spool.join("end-of-wal-stream");
    // The first call may be served from the spool (no flag); a download raises it.
    for round in 0.. {
        if flag.exists() {
            break;
        }
        assert!(round < 2, "no end-of-wal-stream flag:\n{}", sidecar.log());
        let dest = restored.join(format!("last-{round}"));
        let out = sidecar.client(&[
            "wal-restore",
            "--cluster",
            standby.to_str().unwrap(),
            &last,
            dest.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let after_last = format!(
        "{}{:08X}",
        &last[..16],
        u32::from_str_radix(&last[16..], 16).unwrap() + 1
    );
    let dest = restored.join(&after_last);
    let out = sidecar.client(&[
        "wal-restore",
        "--cluster",
        standby.to_str().unwrap(),
        &after_last,
        dest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        (
            client_line(&out)["code"].as_str(),
            client_line(&out)["msg"].as_str()
        ),
        (Some("OutOfRange"), Some("end of WAL reached"))
    );
    assert!(!flag.exists());
    // The flag is gone: the next probe reads the archive (and raises it again).
    let out = sidecar.client(&[
        "wal-restore",
        "--cluster",
        standby.to_str().unwrap(),
        &after_last,
        dest.to_str().unwrap(),
    ]);
    assert_eq!(client_line(&out)["code"], "NotFound", "{}", text(&out));
    // pg_rewind's mode drops a stale flag and never raises one.
    std::fs::write(&flag, "").unwrap();
    let out = sidecar.client(&[
        "wal-restore",
        "--rewind",
        "--cluster",
        standby.to_str().unwrap(),
        &last,
        restored.join("rewind").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!flag.exists(), "rewind kept the flag");

    // Another cluster pointed at the same store and server: its first WAL is refused
    // while the archive holds WAL of its timeline, and nothing is written.
    let other_wal = pg.make_dir("other/pg_wal").join("000000010000000000000099");
    std::fs::copy(pg.datadir.join("pg_wal").join(&segs[0]), &other_wal).unwrap();
    let other = cluster_file(&work, "other", "store");
    let out = sidecar.client(&[
        "wal-archive",
        "--cluster",
        other.to_str().unwrap(),
        "--check-empty",
        other_wal.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let line = client_line(&out);
    assert_eq!(line["code"], "Unknown", "{line}");
    assert!(
        line["msg"]
            .as_str()
            .unwrap()
            .starts_with(&format!("the WAL archive {DEST}/{SERVER} is not empty")),
        "{line}"
    );
    let keys = list_keys(&s3, BUCKET, "wal/pg1/wals/0000000100000000/");
    assert!(
        !keys
            .iter()
            .any(|k| k.starts_with("000000010000000000000099")),
        "{keys:?}"
    );

    // A Secret the API refuses (RBAC not reconciled yet): FailedPrecondition with
    // upstream's message, and no value of any Secret in the sidecar's log.
    seed_store(&api, &s3, "store2", "creds2");
    api.forbid_secret(NS, "creds2");
    let forbidden = cluster_file(&work, "pg", "store2");
    let out = sidecar.client(&[
        "wal-archive",
        "--cluster",
        forbidden.to_str().unwrap(),
        other_wal.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let line = client_line(&out);
    assert_eq!(
        (line["code"].as_str(), line["msg"].as_str()),
        (Some("FailedPrecondition"), Some(SECRET_FORBIDDEN_MESSAGE)),
        "{line}"
    );
    let log = sidecar.log();
    assert!(!log.contains(&s3.secret_key), "a secret value in the log");

    // restore_command through the client: a base backup without WAL (-X none)
    // recovers from the archive alone, in a bootstrap (no current primary: the
    // recovery source's store), and has the rows written after it.
    let base = pg.make_dir("base");
    let out = as_pg_user(&mut Command::new(pg_bindir().join("pg_basebackup")))
        .args(["-X", "none", "-c", "fast", "-D"])
        .arg(&base)
        .arg("-h")
        .arg(&pg.socket_dir)
        .args(["-p", &pg.port.to_string(), "-U", "postgres"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "pg_basebackup: {}", text(&out));
    pg.psql("create table after_base as select generate_series(1, 1234) as i");
    let end = switch_wal(&pg);
    wait_archived(&pg, &end, Duration::from_secs(60));
    let bootstrap = work.join("bootstrap.json");
    std::fs::write(
        &bootstrap,
        json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "pg-restored", "namespace": NS},
            "spec": {
                "bootstrap": {"recovery": {"source": "origin"}},
                "externalClusters": [{"name": "origin", "plugin": {"name": PLUGIN_NAME,
                    "parameters": {"barmanObjectName": "store", "serverName": SERVER}}}],
            },
            "status": {},
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(base.join("recovery.signal"), "").unwrap();
    let restore_cmd = format!(
        "restore_command = '{} cnpg client --socket {} wal-restore --cluster {} %f %p'",
        barrelman().display(),
        sidecar.socket.display(),
        bootstrap.display()
    );
    let recovered = PgCluster::from_datadir(base, &["archive_mode = off", &restore_cmd]);
    recovered.start();
    wait_promoted(&recovered);
    assert_eq!(
        recovered.psql("select count(*) from after_base"),
        "1234",
        "{}",
        tail(&recovered.log(), 4000)
    );

    // Only GETs of named objects reached the API.
    for r in api.requests() {
        assert_eq!(r.method, "GET", "{r:?}");
    }
}

/// A directory the PostgreSQL user can write (tests run as root).
fn open_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o777);
    std::fs::set_permissions(path, perm).unwrap();
    path.to_path_buf()
}

/// Upstream fails the Archive call when any file of the parallel batch fails, not only
/// the requested one: PostgreSQL then retries, and the segments that did upload are
/// in the store.
#[test]
fn a_failed_segment_of_the_batch_fails_the_call() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let api = KubeApi::start();
    seed_store(&api, &s3, "store", "creds");
    let root = tempfile::tempdir().unwrap();
    let base = open_dir(root.path());
    let work = open_dir(&base.join("work"));
    let plugins = open_dir(&base.join("plugins"));
    let spool = open_dir(&base.join("spool"));
    let pgdata = open_dir(&base.join("pgdata"));
    let pg_wal = open_dir(&pgdata.join("pg_wal"));
    let status = open_dir(&pg_wal.join("archive_status"));
    let names = [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000003",
    ];
    for (i, n) in names.iter().enumerate() {
        std::fs::write(status.join(format!("{n}.ready")), "").unwrap();
        if i != 1 {
            std::fs::write(pg_wal.join(n), wal_like(16 << 20, i as u64)).unwrap();
        }
    }
    // The second segment cannot be read: a directory where the file should be.
    std::fs::create_dir(pg_wal.join(names[1])).unwrap();
    let cluster = cluster_file(&work, "pg", "store");
    let sidecar = Sidecar::start(&work, &plugins, &spool, &pgdata, &api.url());

    let out = sidecar.client(&[
        "wal-archive",
        "--cluster",
        cluster.to_str().unwrap(),
        pg_wal.join(names[0]).to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let line = client_line(&out);
    assert_eq!(line["code"], "Unknown", "{line}");
    assert!(
        line["msg"].as_str().unwrap().starts_with(&format!(
            "archiving {} with the batch of wal.maxParallel failed:",
            names[1]
        )),
        "{line}"
    );
    let keys = list_keys(&s3, BUCKET, "wal/pg1/wals/0000000100000000/");
    assert_eq!(
        keys,
        vec![format!("{}.gz", names[0]), format!("{}.gz", names[2])],
        "{}",
        sidecar.log()
    );
}
