//! Every command line CloudNativePG's Barman Cloud plugin builds (cnpg-plugin 2.13,
//! barman-cloud section 6), with extra arguments in the places users put their
//! `*AdditionalCommandArgs`, run verbatim through the barman-cloud-* names against
//! the S3 server and PostgreSQL 15: the exit code CloudNativePG acts on, and the JSON
//! it parses, read the way it reads it. Where cheap, the same line is run with
//! barman-cloud 3.19.1 too and must give the same code and output.

use super::common::*;
use barrelman_testkit::{tools_bin, AzuriteServer, PgCluster, S3Server};
use std::path::Path;
use std::time::Duration;

const BUCKET: &str = "cnpg";
const DEST: &str = "s3://cnpg/backups";
const SERVER: &str = "cluster-a";

/// The provider part of an ObjectStore, as the plugin puts it on every line.
struct Plugin {
    /// `endpointURL`, when the ObjectStore has one (S3 here).
    endpoint: Option<String>,
    /// `--cloud-provider`.
    provider: &'static str,
    /// `destinationPath`.
    dest: String,
}

impl Plugin {
    /// An S3 ObjectStore with an endpoint.
    fn s3(endpoint: &str) -> Self {
        Plugin {
            endpoint: Some(endpoint.to_string()),
            provider: "aws-s3",
            dest: DEST.to_string(),
        }
    }

    /// A GCS ObjectStore (googleCredentials, no endpointURL).
    fn gcs() -> Self {
        Plugin {
            endpoint: None,
            provider: "google-cloud-storage",
            dest: GCS_DEST.to_string(),
        }
    }

    /// An Azure ObjectStore with a connectionString (the emulator URL form).
    fn azure(az: &AzuriteServer) -> Self {
        Plugin {
            endpoint: None,
            provider: "azure-blob-storage",
            dest: az.url(&format!("{BUCKET}/backups")),
        }
    }

    /// `[--endpoint-url U]`.
    fn endpoint_args(&self) -> Vec<&str> {
        self.endpoint
            .iter()
            .flat_map(|e| ["--endpoint-url", e.as_str()])
            .collect()
    }

    /// `[--endpoint-url U] --cloud-provider P`.
    fn provider_args(&self) -> Vec<&str> {
        let mut v = self.endpoint_args();
        v.extend(["--cloud-provider", self.provider]);
        v
    }
}

/// `barman-cloud-wal-archive`: `[--<walCompression>] [-e <enc>]
/// [archiveAdditionalCommandArgs] [--endpoint-url U] [--tags …] [--history-tags …]
/// --cloud-provider P <dest> <server> <walPath>`.
fn wal_archive_line(p: &Plugin, wal_path: &str) -> Vec<String> {
    strings(&[
        &["--gzip", "-e", "AES256"],
        &["--max-concurrency=1", "--read-timeout=60", "-v"],
        &p.endpoint_args(),
        &["--tags", "team,db", "env,test"],
        &["--history-tags", "kind,history"],
        &["--cloud-provider", p.provider, &p.dest, SERVER, wal_path],
    ])
}

/// `barman-cloud-check-wal-archive`: `[--endpoint-url U] --cloud-provider P <dest> <server>`.
fn check_wal_archive_line(p: &Plugin) -> Vec<String> {
    strings(&[&p.provider_args(), &[&p.dest, SERVER]])
}

/// `barman-cloud-wal-restore`: `[--endpoint-url U] --cloud-provider P <dest> <server>
/// [restoreAdditionalCommandArgs] <wal> <dst>`.
fn wal_restore_line(p: &Plugin, wal: &str, dst: &str) -> Vec<String> {
    strings(&[
        &p.provider_args(),
        &[&p.dest, SERVER],
        &["--read-timeout=60"],
        &[wal, dst],
    ])
}

/// `barman-cloud-backup`: `--user postgres --name backup-<ts> [--gzip] [--encryption X]
/// [--immediate-checkpoint] [--jobs N] [additionalCommandArgs] [--tags …]
/// [--endpoint-url U] --cloud-provider P <dest> <server>`; libpq finds the server
/// through PGHOST/PGPORT, and TMPDIR is set.
fn backup_line(p: &Plugin, name: &str) -> Vec<String> {
    strings(&[
        &[
            "--user",
            "postgres",
            "--name",
            name,
            "--gzip",
            "--encryption",
            "AES256",
        ],
        &["--immediate-checkpoint", "--jobs", "2"],
        &["--min-chunk-size=5MB", "--read-timeout=60", "-v"],
        &["--tags", "team,db"],
        &p.provider_args(),
        &[&p.dest, SERVER],
    ])
}

/// `barman-cloud-backup-show --format json [--endpoint-url U] --cloud-provider P <dest> <server> <name>`.
fn show_line(p: &Plugin, name: &str) -> Vec<String> {
    strings(&[
        &["--format", "json"],
        &p.provider_args(),
        &[&p.dest, SERVER, name],
    ])
}

/// `barman-cloud-backup-list --format json [--endpoint-url U] --cloud-provider P <dest> <server>`.
fn list_line(p: &Plugin) -> Vec<String> {
    strings(&[
        &["--format", "json"],
        &p.provider_args(),
        &[&p.dest, SERVER],
    ])
}

/// `barman-cloud-backup-delete [--endpoint-url U] --cloud-provider P --retention-policy
/// "RECOVERY WINDOW OF n UNIT" <dest> <server>`.
fn delete_line(p: &Plugin, policy: &str) -> Vec<String> {
    strings(&[
        &p.provider_args(),
        &["--retention-policy", policy, &p.dest, SERVER],
    ])
}

/// `barman-cloud-restore --cloud-provider P [--endpoint-url U]
/// [restoreAdditionalCommandArgs] <dest> <server> <backupID> <PGDATA>`.
fn restore_line(p: &Plugin, backup_id: &str, pgdata: &str) -> Vec<String> {
    strings(&[
        &["--cloud-provider", p.provider],
        &p.endpoint_args(),
        &["--read-timeout=60"],
        &[&p.dest, SERVER, backup_id, pgdata],
    ])
}

fn strings(parts: &[&[&str]]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|p| p.iter().map(|s| s.to_string()))
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A line for postgresql.conf: the tool and its arguments, the endpoint taken from
/// `$BM_S3_ENDPOINT` (see [`start`]).
fn conf_command(tool: &Path, args: &[String]) -> String {
    let mut cmd = tool.display().to_string();
    for a in args {
        cmd.push(' ');
        cmd.push_str(a);
    }
    cmd
}

const ENDPOINT_VAR: &str = "\"$BM_S3_ENDPOINT\"";

/// Reads backup JSON the way CloudNativePG's catalog does: the fields it uses, with
/// the JSON types it decodes them into, times parsed with its layouts. Prints one
/// line per backup: `id name systemid begin_wal end_wal timeline status`.
const CNPG_PARSE_PY: &str = r#"
import datetime, json, sys
doc = json.loads(sys.stdin.read())
items = [doc["cloud"]] if sys.argv[1] == "show" else doc["backups_list"]
for b in items:
    for key, kind in [("backup_id", str), ("backup_name", str), ("backup_label", str),
                      ("begin_wal", str), ("end_wal", str), ("begin_xlog", str),
                      ("end_xlog", str), ("systemid", str), ("timeline", int),
                      ("begin_time", str), ("end_time", str), ("begin_time_iso", str),
                      ("end_time_iso", str), ("status", str)]:
        assert isinstance(b.get(key), kind), "%s: %r is not %s" % (key, b.get(key), kind.__name__)
    assert b.get("error") is None or isinstance(b["error"], str), b.get("error")
    for key in ("begin_time", "end_time"):
        datetime.datetime.strptime(b[key], "%a %b %d %H:%M:%S %Y")
    for key in ("begin_time_iso", "end_time_iso"):
        assert datetime.datetime.fromisoformat(b[key]).tzinfo is not None, b[key]
    print(b["backup_id"], b["backup_name"], b["systemid"], b["begin_wal"], b["end_wal"],
          b["timeline"], b["status"])
"#;

/// CloudNativePG's reading of `show`/`list` JSON: one line per backup.
fn cnpg_parse(kind: &str, json: &[u8], s3: &dyn TestStore) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    std::fs::write(&input, json).unwrap();
    let out = run(
        &tools_bin().join("python"),
        &[
            "-c",
            &format!(
                "import sys; sys.stdin = open({:?}); exec({:?})",
                input, CNPG_PARSE_PY
            ),
            kind,
        ],
        s3,
    );
    assert!(
        out.status.success(),
        "CloudNativePG could not parse: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// The settings of a cluster archiving through CloudNativePG's wal-archive line.
fn cnpg_conf(links: &Path, p: &Plugin) -> Vec<String> {
    // wal_keep_size: archived segments stay in pg_wal (a checkpoint would otherwise
    // recycle them) so that tests can compare restored bytes with PostgreSQL's own.
    vec![
        "archive_mode = on".into(),
        "wal_keep_size = 256MB".into(),
        format!(
            "archive_command = '{}'",
            conf_command(
                &links.join("barman-cloud-wal-archive"),
                &wal_archive_line(p, "%p")
            )
        ),
    ]
}

/// A cluster archiving through CloudNativePG's wal-archive line.
fn cnpg_cluster() -> (S3Server, PgCluster, std::path::PathBuf) {
    let links = links_dir();
    let conf = cnpg_conf(&links, &Plugin::s3(ENDPOINT_VAR));
    let (s3, pg) = start_both(&refs(&conf));
    s3.create_bucket(BUCKET);
    start(&pg, &s3);
    (s3, pg, links)
}

/// Runs CloudNativePG's backup line as the sidecar does: as postgres, the server found
/// through PGHOST/PGPORT, TMPDIR set. Returns the backup id.
fn cnpg_backup(s3: &S3Server, pg: &PgCluster, links: &Path, name: &str) -> String {
    cnpg_backup_on(s3, &Plugin::s3(&s3.endpoint), pg, links, name)
}

/// [`cnpg_backup`] on any store.
fn cnpg_backup_on(
    s3: &dyn TestStore,
    p: &Plugin,
    pg: &PgCluster,
    links: &Path,
    name: &str,
) -> String {
    let tmpdir = pg.make_dir(&format!("tmp-{name}"));
    let mut env = s3.env();
    env.push(("PGHOST".into(), pg.socket_dir.display().to_string()));
    env.push(("PGPORT".into(), pg.port.to_string()));
    env.push(("TMPDIR".into(), tmpdir.display().to_string()));
    let out = run_as_pg_env(
        &links.join("barman-cloud-backup"),
        &refs(&backup_line(p, name)),
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "backup line: {}", text(&out));
    assert_eq!(
        std::fs::read_dir(&tmpdir).unwrap().count(),
        0,
        "files left in TMPDIR"
    );
    let show = run(
        &links.join("barman-cloud-backup-show"),
        &refs(&show_line(p, name)),
        s3,
    );
    assert_eq!(show.status.code(), Some(0), "{}", text(&show));
    cnpg_parse("show", &show.stdout, s3)[0][0].clone()
}

/// Starts the restored PGDATA `dest` in recovery with CloudNativePG's wal-restore
/// `line` as restore_command and `env`, and waits for its promotion.
fn recover(
    links: &Path,
    dest: std::path::PathBuf,
    line: &[String],
    env: &[(String, String)],
) -> PgCluster {
    let restore_command = format!(
        "restore_command = '{}'",
        conf_command(&links.join("barman-cloud-wal-restore"), line)
    );
    std::fs::write(dest.join("recovery.signal"), b"").unwrap();
    let restored = PgCluster::from_datadir(
        dest,
        &[
            "archive_mode = off",
            &restore_command,
            "recovery_target_action = 'promote'",
        ],
    );
    restored.start_with_env(env);
    wait_promoted(&restored);
    restored
}

/// The same line through barrelman and through barman-cloud 3.19.1; both must exit
/// with `want`.
fn both(
    links: &Path,
    tool: &str,
    args: &[String],
    s3: &dyn TestStore,
    want: i32,
) -> (std::process::Output, std::process::Output) {
    let ours = run(&links.join(tool), &refs(args), s3);
    let theirs = run(&barman_tool(tool), &refs(args), s3);
    assert_eq!(
        ours.status.code(),
        Some(want),
        "barrelman {tool}: {}",
        text(&ours)
    );
    assert_eq!(
        theirs.status.code(),
        Some(want),
        "barman {tool}: {}",
        text(&theirs)
    );
    (ours, theirs)
}

#[test]
fn cnpg_check_wal_archive_line() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let links = links_dir();
    let ep = s3.endpoint.as_str();
    let line = check_wal_archive_line(&Plugin::s3(ep));
    both(&links, "barman-cloud-check-wal-archive", &line, &s3, 0);

    // One WAL archived: not empty, exit 1 from both, and ours says what to do.
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("000000010000000000000001");
    std::fs::write(&wal, wal_like(1 << 20, 7)).unwrap();
    let out = CloudCmd::new(&links.join("barman-cloud-wal-archive"), &s3).run(&[
        DEST,
        SERVER,
        wal.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (ours, _) = both(&links, "barman-cloud-check-wal-archive", &line, &s3, 1);
    let err = String::from_utf8_lossy(&ours.stderr);
    assert!(
        err.contains("backups/cluster-a") && err.contains("serverName"),
        "the refusal should name the archive and the fix: {err}"
    );

    // An unreachable endpoint: connectivity, exit 2, from both.
    let dead = format!("http://127.0.0.1:{}", barrelman_testkit::free_port());
    let line = check_wal_archive_line(&Plugin::s3(&dead));
    both(&links, "barman-cloud-check-wal-archive", &line, &s3, 2);
}

#[test]
fn cnpg_wal_archive_line() {
    let (s3, pg, links) = cnpg_cluster();
    pg.psql("create table t as select generate_series(1, 1000) as n");
    let seg = switch_wal(&pg);
    wait_archived(&pg, &seg, Duration::from_secs(60));
    let key = format!("backups/{SERVER}/wals/{}/{seg}.gz", &seg[..16]);
    let keys = list_keys(&s3, BUCKET, "");
    assert!(keys.contains(&key), "{key} not in {keys:?}");

    // The segment comes back identical through barman-cloud-wal-restore.
    let dir = tempfile::tempdir().unwrap();
    let back = dir.path().join("back");
    let out = CloudCmd::new(&barman_tool("barman-cloud-wal-restore"), &s3).run(&[
        DEST,
        SERVER,
        &seg,
        back.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        std::fs::read(&back).unwrap()
            == std::fs::read(pg.datadir.join("pg_wal").join(&seg)).unwrap(),
        "restored segment differs"
    );

    // Tags: the normal ones on segments, the history ones on a timeline history file,
    // which CloudNativePG archives with the same line (path relative to PGDATA).
    let history_dir = dir.path().join("pgdata");
    std::fs::create_dir_all(history_dir.join("pg_wal")).unwrap();
    std::fs::write(
        history_dir.join("pg_wal/00000002.history"),
        b"1\t0/3000000\tno recovery target specified\n",
    )
    .unwrap();
    let out = std::process::Command::new(links.join("barman-cloud-wal-archive"))
        .args(wal_archive_line(
            &Plugin::s3(&s3.endpoint),
            "pg_wal/00000002.history",
        ))
        .current_dir(&history_dir)
        .envs(s3.env())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(object_tags(&s3, &key), "env=test,team=db", "segment tags");
    assert_eq!(
        object_tags(&s3, &format!("backups/{SERVER}/wals/00000002.history.gz")),
        "kind=history",
        "history tags"
    );
}

/// The tags of an object, `k=v` sorted and comma-joined (via boto3).
fn object_tags(s3: &S3Server, key: &str) -> String {
    const PY: &str = r#"
tags = s3.get_object_tagging(Bucket=bucket, Key=sys.argv[3])["TagSet"]
print(",".join(sorted("%s=%s" % (t["Key"], t["Value"]) for t in tags)))
"#;
    boto3(s3, BUCKET, PY, &[key]).trim().to_string()
}

#[test]
fn cnpg_wal_restore_line() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let links = links_dir();
    let ep = s3.endpoint.as_str();
    let dir = tempfile::tempdir().unwrap();
    let seg = "000000010000000000000003";
    let bytes = wal_like(16 << 20, 3);
    std::fs::write(dir.path().join(seg), &bytes).unwrap();
    let out = CloudCmd::new(&links.join("barman-cloud-wal-archive"), &s3)
        .opts(&["--zstd"])
        .run(&[DEST, SERVER, dir.path().join(seg).to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // CloudNativePG maps 0 restored, 1 not found, 3 invalid name; both tools agree.
    for (wal, want) in [
        (seg, 0),
        ("000000010000000000000004", 1),
        ("not-a-wal-name", 3),
    ] {
        for (n, tool) in [
            links.join("barman-cloud-wal-restore"),
            barman_tool("barman-cloud-wal-restore"),
        ]
        .into_iter()
        .enumerate()
        {
            let dst = dir.path().join(format!("dst-{wal}-{n}"));
            let out = run(
                &tool,
                &refs(&wal_restore_line(
                    &Plugin::s3(ep),
                    wal,
                    dst.to_str().unwrap(),
                )),
                &s3,
            );
            assert_eq!(
                out.status.code(),
                Some(want),
                "{} {wal}: {}",
                tool.display(),
                text(&out)
            );
            if want == 0 {
                assert!(
                    std::fs::read(&dst).unwrap() == bytes,
                    "{} restored other bytes",
                    tool.display()
                );
            } else {
                assert!(!dst.exists(), "{} wrote {}", tool.display(), dst.display());
            }
        }
    }
}

#[test]
fn cnpg_backup_line() {
    let (s3, pg, links) = cnpg_cluster();
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    let id = cnpg_backup(&s3, &pg, &links, "backup-20261125000000");
    let keys = list_keys(&s3, BUCKET, &format!("backups/{SERVER}/base/{id}/"));
    assert!(keys.contains(&"backup.info".to_string()), "{keys:?}");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("data") && k.ends_with(".tar.gz")),
        "{keys:?}"
    );
    let list = run(
        &links.join("barman-cloud-backup-list"),
        &refs(&list_line(&Plugin::s3(&s3.endpoint))),
        &s3,
    );
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let parsed = cnpg_parse("list", &list.stdout, &s3);
    assert_eq!(parsed.len(), 1, "{parsed:?}");
    assert_eq!(parsed[0][6], "DONE");
}

#[test]
fn cnpg_backup_show_line() {
    let (s3, pg, links) = cnpg_cluster();
    pg.psql("create table t as select 1 as n");
    let name = "backup-20261125000001";
    let id = cnpg_backup(&s3, &pg, &links, name);
    let (ours, theirs) = both(
        &links,
        "barman-cloud-backup-show",
        &show_line(&Plugin::s3(&s3.endpoint), name),
        &s3,
        0,
    );
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&theirs.stdout),
        "show JSON differs from barman's"
    );
    let b = &cnpg_parse("show", &ours.stdout, &s3)[0];
    let sysid = pg.psql("select system_identifier from pg_control_system()");
    assert_eq!(
        (
            b[0].as_str(),
            b[1].as_str(),
            b[2].as_str(),
            b[5].as_str(),
            b[6].as_str()
        ),
        (id.as_str(), name, sysid.as_str(), "1", "DONE")
    );
    assert!(b[3] <= b[4], "begin_wal {} after end_wal {}", b[3], b[4]);

    // An unknown name: barman exits 4, and so do we.
    both(
        &links,
        "barman-cloud-backup-show",
        &show_line(&Plugin::s3(&s3.endpoint), "backup-19990101000000"),
        &s3,
        4,
    );
}

#[test]
fn cnpg_backup_list_line() {
    let (s3, pg, links) = cnpg_cluster();
    pg.psql("create table t as select 1 as n");
    let first = cnpg_backup(&s3, &pg, &links, "backup-20261125000002");
    std::thread::sleep(Duration::from_millis(1100)); // backup ids are to the second
    let second = cnpg_backup(&s3, &pg, &links, "backup-20261125000003");
    let (ours, theirs) = both(
        &links,
        "barman-cloud-backup-list",
        &list_line(&Plugin::s3(&s3.endpoint)),
        &s3,
        0,
    );
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&theirs.stdout),
        "list JSON differs from barman's"
    );
    let parsed = cnpg_parse("list", &ours.stdout, &s3);
    let ids: Vec<&str> = parsed.iter().map(|b| b[0].as_str()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
}

/// Rewrites `base/<id>/backup.info` so the backup looks `days` old.
fn age_backup(s3: &S3Server, id: &str, days: i64) {
    age_backup_info(
        s3,
        BUCKET,
        &format!("backups/{SERVER}/base/{id}/backup.info"),
        days,
    );
}

#[test]
fn cnpg_backup_delete_line() {
    let (s3, pg, links) = cnpg_cluster();
    pg.psql("create table t (n int)");
    let mut ids = Vec::new();
    for i in 0..3 {
        pg.psql(&format!("insert into t values ({i})"));
        ids.push(cnpg_backup(
            &s3,
            &pg,
            &links,
            &format!("backup-2026112500001{i}"),
        ));
        std::thread::sleep(Duration::from_millis(1100));
    }
    age_backup(&s3, &ids[0], 60);
    age_backup(&s3, &ids[1], 40);
    // What barman would delete (dry run) is what barrelman deletes: the backup before
    // the one that starts the 30-day window.
    let mut dry = delete_line(&Plugin::s3(&s3.endpoint), "RECOVERY WINDOW OF 30 DAYS");
    dry.insert(0, "--dry-run".into());
    let theirs = run(&barman_tool("barman-cloud-backup-delete"), &refs(&dry), &s3);
    assert_eq!(theirs.status.code(), Some(0), "{}", text(&theirs));
    let plan = String::from_utf8_lossy(&theirs.stdout);
    assert!(
        plan.contains(&ids[0]) && !plan.contains(&ids[1]) && !plan.contains(&ids[2]),
        "barman's plan: {plan}"
    );
    let ours = run(
        &links.join("barman-cloud-backup-delete"),
        &refs(&delete_line(
            &Plugin::s3(&s3.endpoint),
            "RECOVERY WINDOW OF 30 DAYS",
        )),
        &s3,
    );
    assert_eq!(ours.status.code(), Some(0), "{}", text(&ours));
    let list = run(
        &barman_tool("barman-cloud-backup-list"),
        &refs(&list_line(&Plugin::s3(&s3.endpoint))),
        &s3,
    );
    let left: Vec<String> = cnpg_parse("list", &list.stdout, &s3)
        .into_iter()
        .map(|b| b[0].clone())
        .collect();
    assert_eq!(left, ids[1..].to_vec());
    // The other units CloudNativePG writes parse and keep everything recent.
    for policy in ["RECOVERY WINDOW OF 2 WEEKS", "RECOVERY WINDOW OF 3 MONTHS"] {
        let out = run(
            &links.join("barman-cloud-backup-delete"),
            &refs(&delete_line(&Plugin::s3(&s3.endpoint), policy)),
            &s3,
        );
        assert_eq!(out.status.code(), Some(0), "{policy}: {}", text(&out));
    }
}

#[test]
fn cnpg_restore_line() {
    let (s3, pg, links) = cnpg_cluster();
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    pg.psql("create table marks (n int)");
    pg.psql("insert into marks values (1)");
    let id = cnpg_backup(&s3, &pg, &links, "backup-20261125000020");
    pg.psql("insert into marks values (2)");
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(60));

    // The restore job first checks that the backup's begin_wal can be fetched.
    let show = run(
        &links.join("barman-cloud-backup-show"),
        &refs(&show_line(&Plugin::s3(&s3.endpoint), &id)),
        &s3,
    );
    let begin_wal = cnpg_parse("show", &show.stdout, &s3)[0][3].clone();
    let probe = tempfile::tempdir().unwrap();
    let out = run(
        &links.join("barman-cloud-wal-restore"),
        &refs(&wal_restore_line(
            &Plugin::s3(&s3.endpoint),
            &begin_wal,
            probe.path().join("w").to_str().unwrap(),
        )),
        &s3,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "begin_wal check: {}",
        text(&out)
    );

    let restored = cnpg_restore(&s3, &Plugin::s3(&s3.endpoint), &pg, &links, &id);
    assert_eq!(
        restored.psql("select string_agg(n::text, ',' order by n) from marks"),
        "1,2"
    );
    assert_eq!(
        restored.psql("select count(*) from pgbench_accounts"),
        "100000"
    );
}

/// The restore job's line into a new PGDATA (and a second one into the now
/// non-empty PGDATA: barman's exit 1, not retried), then the cluster started with
/// the wal-restore line as restore_command, promoted.
fn cnpg_restore(
    store: &dyn TestStore,
    p: &Plugin,
    pg: &PgCluster,
    links: &Path,
    id: &str,
) -> PgCluster {
    let dest = pg.make_dir("restored");
    let line = restore_line(p, id, dest.to_str().unwrap());
    let out = run_as_pg(&links.join("barman-cloud-restore"), &refs(&line), store);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let again = run_as_pg(&links.join("barman-cloud-restore"), &refs(&line), store);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    let restore_command = format!(
        "restore_command = '{}'",
        conf_command(
            &links.join("barman-cloud-wal-restore"),
            &wal_restore_line(p, "%f", "%p")
        )
    );
    std::fs::write(dest.join("recovery.signal"), b"").unwrap();
    let restored = PgCluster::from_datadir(
        dest,
        &[
            "archive_mode = off",
            &restore_command,
            "recovery_target_action = 'promote'",
        ],
    );
    restored.start_with_env(&store.env());
    wait_promoted(&restored);
    restored
}

/// The lines with `--cloud-provider azure-blob-storage`, verbatim, against Azurite
/// (an ObjectStore with a connectionString: no endpoint, no --credential): the exit
/// codes and JSON CloudNativePG acts on, the same from barman-cloud 3.19.1 where
/// both are run.
#[test]
fn cnpg_lines_on_azure() {
    let az = AzuriteServer::start();
    az.create_container(BUCKET);
    let p = Plugin::azure(&az);
    let links = links_dir();
    let check = check_wal_archive_line(&p);
    both(&links, "barman-cloud-check-wal-archive", &check, &az, 0);

    let pg = PgCluster::init(&refs(&cnpg_conf(&links, &p)));
    pg.start_with_env(&az.env());
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    pg.psql("create table marks (n int)");
    pg.psql("insert into marks values (1)");
    let name = "backup-20261125000030";
    let id = cnpg_backup_on(&az, &p, &pg, &links, name);
    pg.psql("insert into marks values (2)");
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(60));
    both(&links, "barman-cloud-check-wal-archive", &check, &az, 1);

    for (tool, line) in [
        ("barman-cloud-backup-show", show_line(&p, name)),
        ("barman-cloud-backup-list", list_line(&p)),
    ] {
        let (ours, theirs) = both(&links, tool, &line, &az, 0);
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "{tool}: JSON differs from barman's"
        );
        let parsed = cnpg_parse(
            if tool.ends_with("show") {
                "show"
            } else {
                "list"
            },
            &ours.stdout,
            &az,
        );
        assert_eq!(
            (parsed[0][0].as_str(), parsed[0][6].as_str()),
            (id.as_str(), "DONE")
        );
    }

    // wal-restore: 0 restored (identical bytes), 1 not found, 3 invalid name.
    let dir = tempfile::tempdir().unwrap();
    for (wal, want) in [
        (last.as_str(), 0),
        ("0000000100000000000000FE", 1),
        ("not-a-wal-name", 3),
    ] {
        let dst = dir.path().join(wal);
        let line = wal_restore_line(&p, wal, dst.to_str().unwrap());
        both(&links, "barman-cloud-wal-restore", &line, &az, want);
        if want == 0 {
            assert!(
                std::fs::read(&dst).unwrap()
                    == std::fs::read(pg.datadir.join("pg_wal").join(wal)).unwrap(),
                "restored segment differs"
            );
        }
    }

    // Retention keeps a backup inside the window.
    let delete = delete_line(&p, "RECOVERY WINDOW OF 30 DAYS");
    let out = run(
        &links.join("barman-cloud-backup-delete"),
        &refs(&delete),
        &az,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let restored = cnpg_restore(&az, &p, &pg, &links, &id);
    assert_eq!(
        restored.psql("select string_agg(n::text, ',' order by n) from marks"),
        "1,2"
    );
}

// ---- The same lines for a GCS ObjectStore ----------------------------------------------

const GCS_DEST: &str = "gs://cnpg/backups";

/// Every line of cnpg-plugin 2.13 with `--cloud-provider google-cloud-storage`, run
/// verbatim against fake-gcs-server (`STORAGE_EMULATOR_HOST`) by one cluster: the
/// exit codes CloudNativePG acts on from both tools, the same show/list JSON as
/// barman's, tags as object metadata, and a restore that replays to the last row.
#[test]
fn cnpg_lines_run_verbatim_on_gcs() {
    let links = links_dir();
    let p = Plugin::gcs();
    let archive_command = format!(
        "archive_command = '{}'",
        conf_command(
            &links.join("barman-cloud-wal-archive"),
            &wal_archive_line(&p, "%p")
        )
    );
    let (gcs, pg) = start_gcs_and_pg(&[
        "archive_mode = on",
        "wal_keep_size = 256MB",
        &archive_command,
    ]);
    gcs.create_bucket(BUCKET);
    let check = check_wal_archive_line(&p);
    both(&links, "barman-cloud-check-wal-archive", &check, &gcs, 0);

    pg.start_with_env(&gcs.env());
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    pg.psql("create table marks (n int)");
    pg.psql("insert into marks values (1)");
    let name = "backup-20261125000030";
    let id = cnpg_backup_on(&gcs, &p, &pg, &links, name);
    pg.psql("insert into marks values (2)");
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(60));
    both(&links, "barman-cloud-check-wal-archive", &check, &gcs, 1);

    // --tags become the segment's metadata, as barman writes them.
    let key = format!("backups/{SERVER}/wals/{}/{last}.gz", &last[..16]);
    let object = gcs
        .object_json(BUCKET, &key)
        .expect("the segment is archived");
    assert!(
        object.contains(r#""team":"db""#) && object.contains(r#""env":"test""#),
        "{object}"
    );

    // show and list: barman's JSON, byte for byte, read as CloudNativePG reads it.
    for (tool, line) in [
        ("barman-cloud-backup-show", show_line(&p, name)),
        ("barman-cloud-backup-list", list_line(&p)),
    ] {
        let (ours, theirs) = both(&links, tool, &line, &gcs, 0);
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "{tool} JSON differs from barman's"
        );
        let kind = if tool.ends_with("show") {
            "show"
        } else {
            "list"
        };
        let parsed = cnpg_parse(kind, &ours.stdout, &gcs);
        assert_eq!(
            parsed
                .iter()
                .map(|b| (b[0].as_str(), b[6].as_str()))
                .collect::<Vec<_>>(),
            [(id.as_str(), "DONE")]
        );
    }

    // wal-restore: 0 restored (PostgreSQL's bytes), 1 not found, 3 invalid, from both.
    let dir = tempfile::tempdir().unwrap();
    for (wal, want) in [
        (last.as_str(), 0),
        ("00000001000000FF000000FE", 1),
        ("not-a-wal-name", 3),
    ] {
        let dst = dir.path().join(format!("dst-{wal}"));
        let line = wal_restore_line(&p, wal, dst.to_str().unwrap());
        both(&links, "barman-cloud-wal-restore", &line, &gcs, want);
        if want == 0 {
            assert!(
                std::fs::read(&dst).unwrap()
                    == std::fs::read(pg.datadir.join("pg_wal").join(wal)).unwrap(),
                "restored segment differs"
            );
        }
    }

    // Retention: a 30-day window keeps the only backup.
    let out = run(
        &links.join("barman-cloud-backup-delete"),
        &refs(&delete_line(&p, "RECOVERY WINDOW OF 30 DAYS")),
        &gcs,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The restore job's line and restore_command bring back every row.
    let dest = pg.make_dir("restored");
    let out = run_as_pg_env(
        &links.join("barman-cloud-restore"),
        &refs(&restore_line(&p, &id, dest.to_str().unwrap())),
        &gcs.env(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let line = wal_restore_line(&p, "%f", "%p");
    let restored = recover(&links, dest, &line, &gcs.env());
    assert_eq!(
        restored.psql("select string_agg(n::text, ',' order by n) from marks"),
        "1,2"
    );
}
