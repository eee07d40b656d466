//! barrelman and barman-cloud 3.19.1 on the same Azure container (Azurite, the
//! emulator URL form with `AZURE_STORAGE_CONNECTION_STRING`): one cluster archives
//! its WAL with both tools (each under its own server name) and is backed up by
//! both; then each tool restores what the other wrote, base backup and WAL, to the
//! same `pg_dumpall`, and both print the same `backup-list --format json`.

use super::common::*;
use barrelman_testkit::{AzuriteServer, PgCluster};
use std::path::PathBuf;
use std::time::Duration;

const CONTAINER: &str = "life";

/// One tool set: a barman-cloud-* name to its program.
type Tools<'a> = dyn Fn(&str) -> PathBuf + 'a;

#[test]
fn barman_and_barrelman_restore_each_others_azure_archives() {
    let links = links_dir();
    let az = AzuriteServer::start();
    az.create_container(CONTAINER);
    let url = az.url(&format!("{CONTAINER}/fleet"));
    let ours = |tool: &str| links.join(tool);
    let theirs = barman_tool;
    let archive_command = format!(
        "archive_command = '{} --cloud-provider azure-blob-storage --gzip {url} ours %p && \
         {} --cloud-provider azure-blob-storage --gzip {url} theirs %p'",
        ours("barman-cloud-wal-archive").display(),
        theirs("barman-cloud-wal-archive").display(),
    );
    let pg = PgCluster::init(&["archive_mode = on", &archive_command]);
    pg.start_with_env(&az.env());
    pg.pgbench(&["-i", "-s", "1", "-q"]);
    pg.psql("create table marks (step int, note text)");

    barman_backup(
        &ours("barman-cloud-backup"),
        &pg,
        &az,
        "--gzip",
        "by-barrelman",
        &url,
        "ours",
    );
    barman_backup(
        &theirs("barman-cloud-backup"),
        &pg,
        &az,
        "--snappy",
        "by-barman",
        &url,
        "theirs",
    );
    pg.psql("insert into marks values (1, 'after both backups')");
    pg.pgbench(&["-t", "200", "-c", "2", "-n"]);
    let last = switch_wal(&pg);
    wait_archived(&pg, &last, Duration::from_secs(60));
    let source_dump = pg.dumpall();

    // The same catalog from both tools, for both servers.
    for server in ["ours", "theirs"] {
        let list = |tool: PathBuf| {
            let out = CloudCmd::new(&tool, &az).ok(&["--format", "json", &url, server]);
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let (mine, barmans) = (
            list(ours("barman-cloud-backup-list")),
            list(theirs("barman-cloud-backup-list")),
        );
        assert_eq!(mine, barmans, "backup-list of {server}");
        assert!(mine.contains("\"status\": \"DONE\""), "{mine}");
    }

    // Each tool restores the other's backup and replays the other's WAL.
    let cases: [(&str, &Tools<'_>, &str, &str); 2] = [
        ("barman", &theirs, "ours", "by-barrelman"),
        ("barrelman", &ours, "theirs", "by-barman"),
    ];
    for (reader, tool, server, name) in cases {
        let restored = restore_with(
            &tool("barman-cloud-restore"),
            &tool("barman-cloud-wal-restore"),
            &pg,
            &az,
            (&url, server),
            name,
            server,
            &[],
        );
        assert_same_dump(
            &restored.dumpall(),
            &source_dump,
            &format!("{reader} restoring {server}"),
        );
        assert_eq!(restored.psql("select count(*) from marks"), "1");
        restored.stop();
    }
}
