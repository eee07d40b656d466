//! The whole life of an archive, run twice on PostgreSQL 15 and the S3 server: once
//! barrelman writing (WAL archiving, base backups) and barman-cloud 3.19.1 reading
//! (list, show, keep, retention, restore, WAL replay), once the reverse. The cluster
//! brought back must dump (`pg_dumpall`) exactly as the source did, and both tools
//! must print the same list/show JSON for the same archive at every step.

use super::common::*;
use barrelman_testkit::{tools_bin, PgCluster};
use std::path::PathBuf;
use std::time::Duration;

const BUCKET: &str = "life";
const DEST: &str = "s3://life/fleet";
const SERVER: &str = "pg-main";
const ARCHIVE: (&str, &str) = (DEST, SERVER);

/// Where one side's barman-cloud-* programs are.
pub struct Side {
    name: &'static str,
    dir: PathBuf,
}

impl Side {
    pub fn barrelman() -> Side {
        Side {
            name: "barrelman",
            dir: links_dir(),
        }
    }
    pub fn barman() -> Side {
        Side {
            name: "barman",
            dir: tools_bin(),
        }
    }
    pub fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

#[test]
fn barrelman_writes_and_barman_reads_a_whole_life_cycle() {
    life_cycle(&Side::barrelman(), &Side::barman());
}

#[test]
fn barman_writes_and_barrelman_reads_a_whole_life_cycle() {
    life_cycle(&Side::barman(), &Side::barrelman());
}

fn life_cycle(writer: &Side, reader: &Side) {
    let archive_command = format!(
        "archive_command = '{} --gzip --endpoint-url \"$BM_S3_ENDPOINT\" {DEST} {SERVER} %p'",
        writer.tool("barman-cloud-wal-archive").display()
    );
    let (s3, pg) = start_both(&["archive_mode = on", &archive_command]);
    s3.create_bucket(BUCKET);

    // A new server: the reader agrees the archive is empty before the first segment.
    let check =
        CloudCmd::new(&reader.tool("barman-cloud-check-wal-archive"), &s3).run(&[DEST, SERVER]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    start(&pg, &s3);
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    pg.psql("create table marks (step int, note text)");

    let backup = |name: &str, codec: &str| {
        let tool = writer.tool("barman-cloud-backup");
        barman_backup(&tool, &pg, &s3, codec, name, DEST, SERVER);
        // backup ids are to the second: keep them apart
        std::thread::sleep(Duration::from_millis(1100));
    };
    backup("monday", "--gzip");
    pg.psql("insert into marks values (1, 'after first')");
    pg.pgbench(&["-t", "300", "-c", "2", "-n"]);
    backup("tuesday", "--lz4");
    pg.psql("insert into marks values (2, 'after second')");
    pg.pgbench(&["-t", "300", "-c", "2", "-n"]);
    backup("wednesday", "--snappy");
    pg.psql("insert into marks values (3, 'after third')");
    pg.pgbench(&["-t", "300", "-c", "2", "-n"]);
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(60));
    let source_dump = pg.dumpall();
    assert!(source_dump.contains("after third"), "the dump misses rows");

    // Both tools print the same catalog.
    let same_catalog = |expect: &[&str]| {
        let list = same_output(
            "barman-cloud-backup-list",
            &["--format", "json"],
            &[],
            &s3,
            ARCHIVE,
        );
        for name in ["monday", "tuesday", "wednesday"] {
            assert_eq!(
                list.contains(&format!("\"backup_name\": \"{name}\"")),
                expect.contains(&name),
                "{name} in list: {list}"
            );
        }
        for name in expect {
            same_output(
                "barman-cloud-backup-show",
                &["--format", "json"],
                &[name],
                &s3,
                ARCHIVE,
            );
        }
        same_output("barman-cloud-backup-list", &[], &[], &s3, ARCHIVE);
    };
    same_catalog(&["monday", "tuesday", "wednesday"]);

    // The reader keeps the first backup standalone; both tools see the mark.
    let keep = CloudCmd::new(&reader.tool("barman-cloud-backup-keep"), &s3).run(&[
        "--target",
        "standalone",
        DEST,
        SERVER,
        "monday",
    ]);
    assert_eq!(keep.status.code(), Some(0), "{}", text(&keep));
    let status = same_output(
        "barman-cloud-backup-keep",
        &["-s"],
        &["monday"],
        &s3,
        ARCHIVE,
    );
    assert_eq!(status.trim(), "Keep: standalone");

    // Retention by the reader: REDUNDANCY 1 deletes "tuesday" only ("monday" is kept).
    let delete = CloudCmd::new(&reader.tool("barman-cloud-backup-delete"), &s3).run(&[
        "-r",
        "REDUNDANCY 1",
        DEST,
        SERVER,
    ]);
    assert_eq!(delete.status.code(), Some(0), "{}", text(&delete));
    same_catalog(&["monday", "wednesday"]);

    // Restore the newest backup with the reader and replay all archived WAL with the
    // reader's wal-restore: the same data as the source.
    let restored = restore(reader, &pg, &s3, ARCHIVE, "wednesday", "latest", &[]);
    assert_same_dump(
        &restored.dumpall(),
        &source_dump,
        &format!("{} restore of {}'s archive", reader.name, writer.name),
    );
    assert_eq!(
        restored.psql("select string_agg(step::text, ',' order by step) from marks"),
        "1,2,3"
    );
    restored.stop();

    // The standalone backup still restores to its own end: the retention kept its WAL.
    let standalone = restore(
        reader,
        &pg,
        &s3,
        ARCHIVE,
        "monday",
        "monday",
        &["recovery_target = 'immediate'"],
    );
    assert_eq!(standalone.psql("select count(*) from marks"), "0");
    assert_eq!(
        standalone.psql("select count(*) from pgbench_accounts"),
        "100000"
    );
}

/// Runs `tool` of both barrelman and barman on the same archive (destination,
/// server) and returns the output, which must be the same.
pub fn same_output(
    tool: &str,
    options: &[&str],
    positionals: &[&str],
    s3: &dyn TestStore,
    (dest, server): (&str, &str),
) -> String {
    let cloud = s3.store_args();
    let mut args: Vec<&str> = cloud.iter().map(String::as_str).collect();
    args.extend_from_slice(options);
    args.extend_from_slice(&[dest, server]);
    args.extend_from_slice(positionals);
    let ours = run(&Side::barrelman().tool(tool), &args, s3);
    let theirs = run(&barman_tool(tool), &args, s3);
    assert_eq!(
        ours.status.code(),
        Some(0),
        "barrelman {tool}: {}",
        text(&ours)
    );
    assert_eq!(
        theirs.status.code(),
        Some(0),
        "barman {tool}: {}",
        text(&theirs)
    );
    let (o, t) = (
        String::from_utf8_lossy(&ours.stdout).into_owned(),
        String::from_utf8_lossy(&theirs.stdout).into_owned(),
    );
    assert_eq!(o, t, "{tool} {args:?}: barrelman and barman differ");
    o
}

/// Restores backup `name` of the archive (destination, server) with `side`'s
/// barman-cloud-restore into a new directory, starts it with `side`'s wal-restore as
/// restore_command, and waits for promotion.
pub fn restore(
    side: &Side,
    source: &PgCluster,
    s3: &dyn TestStore,
    (url, server): (&str, &str),
    name: &str,
    dir: &str,
    extra_conf: &[&str],
) -> PgCluster {
    restore_with(
        &side.tool("barman-cloud-restore"),
        &side.tool("barman-cloud-wal-restore"),
        source,
        s3,
        (url, server),
        name,
        dir,
        extra_conf,
    )
}
