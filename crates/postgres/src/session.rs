//! One libpq-style session to the server being backed up, and the queries of a
//! base backup: server facts, `pg_backup_start`, `pg_backup_stop`.

use barrelman_core::lsn::Lsn;
use chrono::{DateTime, FixedOffset, TimeZone};
use std::str::FromStr;
use tokio_postgres::{Client, Config, NoTls};

/// Where and as whom to connect. Unset fields come from [`ConnectOptions::environment`]
/// (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`), then libpq's defaults.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// A host name, an IP address, or a socket directory (starts with `/`).
    pub host: Option<String>,
    /// The server's port.
    pub port: Option<u16>,
    /// The role to connect as.
    pub user: Option<String>,
    /// A database name, or a whole conninfo string when it contains `=` (barman's `-d`).
    pub dbname: Option<String>,
    /// `application_name` of the session (`barrelman` when unset).
    pub application_name: Option<String>,
    /// The libpq variables of the caller's environment, captured by the caller:
    /// this crate never reads the process environment.
    pub environment: PgEnvironment,
}

/// libpq's connection variables, as captured from an environment. Only non-empty
/// values are kept, as libpq ignores empty ones.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PgEnvironment {
    /// `PGHOST`: host names, addresses or socket directories, comma-separated.
    pub host: Option<String>,
    /// `PGPORT`, as given (a value that is not a port is ignored).
    pub port: Option<String>,
    /// `PGUSER`.
    pub user: Option<String>,
    /// `USER`: the operating-system user, libpq's default user name.
    pub os_user: Option<String>,
    /// `PGPASSWORD`.
    pub password: Option<String>,
    /// `PGDATABASE`.
    pub database: Option<String>,
}

impl std::fmt::Debug for PgEnvironment {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEnvironment")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("os_user", &self.os_user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .finish()
    }
}

impl PgEnvironment {
    /// From (name, value) pairs, e.g. `std::env::vars()`.
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut env = Self::default();
        for (name, value) in vars {
            let value: String = value.into();
            let slot = match name.as_ref() {
                "PGHOST" => &mut env.host,
                "PGPORT" => &mut env.port,
                "PGUSER" => &mut env.user,
                "USER" => &mut env.os_user,
                "PGPASSWORD" => &mut env.password,
                "PGDATABASE" => &mut env.database,
                _ => continue,
            };
            *slot = Some(value).filter(|v| !v.is_empty());
        }
        env
    }
}

/// The server's WAL archiving as it reports it (`barrelman doctor` reads these).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivingFacts {
    /// The cluster's system identifier (`pg_control_system()`), decimal digits.
    pub system_identifier: String,
    /// `pg_is_in_recovery()`: the server is a standby (or still recovering).
    pub in_recovery: bool,
    /// The `wal_level` setting (`minimal`, `replica`, `logical`).
    pub wal_level: String,
    /// The `archive_mode` setting (`off`, `on`, `always`).
    pub archive_mode: String,
    /// The `archive_command` setting, empty when unset.
    pub archive_command: String,
    /// The `archive_library` setting (PostgreSQL 15+), empty when unset or on
    /// older servers.
    pub archive_library: String,
    /// The segment being written (none on a standby).
    pub current_wal: Option<String>,
    /// `pg_stat_archiver.last_archived_wal`: the last WAL file archived
    /// successfully.
    pub last_archived_wal: Option<String>,
    /// `pg_stat_archiver.last_archived_time`, as PostgreSQL prints a
    /// `timestamptz`.
    pub last_archived_time: Option<String>,
    /// `pg_stat_archiver.last_failed_wal`: the WAL file of the last failed attempt.
    pub last_failed_wal: Option<String>,
    /// `pg_stat_archiver.last_failed_time`, as PostgreSQL prints a `timestamptz`.
    pub last_failed_time: Option<String>,
    /// `pg_stat_archiver.failed_count`: failed attempts since the statistics were
    /// last reset.
    pub failed_count: i64,
    /// The last archiving attempt failed (no success since).
    pub failing_now: bool,
    /// Segments waiting for archive_command (`.ready` files), when visible.
    pub pending_ready: Option<i64>,
}

/// A failure talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The connection could not be opened or authenticated.
    #[error("cannot connect to PostgreSQL at {target}: {detail}; check -h/-p/-U or PGHOST/PGPORT/PGUSER and that the server is running")]
    Connect {
        /// Where it tried, as `hosts port P as USER` (never the password).
        target: String,
        /// The server's message, or the innermost cause of the failure.
        detail: String,
    },
    /// A query failed or returned something unusable.
    #[error("PostgreSQL query for {what} failed: {detail}")]
    Query {
        /// What the query was for (`pg_backup_start`, `tablespaces`…).
        what: &'static str,
        /// The server's message, or what was wrong with the answer.
        detail: String,
    },
    /// The server is older than PostgreSQL 10.
    #[error("PostgreSQL {version} is not supported: barrelman needs PostgreSQL 10 or newer")]
    TooOld {
        /// Its `server_version_num` (`90624` for 9.6.24).
        version: i32,
    },
}

impl ConnectOptions {
    fn config(&self) -> Result<(Config, String), PgError> {
        let env = &self.environment;
        let mut cfg = match self.dbname.as_deref() {
            Some(d)
                if d.contains('=')
                    || d.starts_with("postgres://")
                    || d.starts_with("postgresql://") =>
            {
                Config::from_str(d).map_err(|e| PgError::Connect {
                    target: "the given conninfo".into(),
                    detail: e.to_string(),
                })?
            }
            _ => Config::new(),
        };
        if cfg.get_hosts().is_empty() {
            let host = self
                .host
                .clone()
                .or_else(|| env.host.clone())
                .unwrap_or_else(|| "/var/run/postgresql".into());
            for h in host.split(',') {
                if h.starts_with('/') {
                    cfg.host_path(h);
                } else {
                    cfg.host(h);
                }
            }
        }
        if cfg.get_ports().is_empty() {
            let port = self
                .port
                .or_else(|| env.port.as_deref().and_then(|p| p.parse().ok()))
                .unwrap_or(5432);
            cfg.port(port);
        }
        if cfg.get_user().is_none() {
            let user = self
                .user
                .clone()
                .or_else(|| env.user.clone())
                .or_else(|| env.os_user.clone())
                .unwrap_or_else(|| "postgres".into());
            cfg.user(&user);
        }
        if cfg.get_dbname().is_none() {
            let db = match self.dbname.as_deref() {
                Some(d) if !d.is_empty() && !d.contains('=') => d.to_string(),
                _ => env.database.clone().unwrap_or_else(|| "postgres".into()),
            };
            cfg.dbname(&db);
        }
        if cfg.get_password().is_none() {
            if let Some(pw) = &env.password {
                cfg.password(pw);
            }
        }
        cfg.application_name(self.application_name.as_deref().unwrap_or("barrelman"));
        let target = format!(
            "{} port {} as {}",
            cfg.get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(s) => s.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            cfg.get_ports().first().copied().unwrap_or(5432),
            cfg.get_user().unwrap_or("?")
        );
        Ok((cfg, target))
    }
}

/// Facts about the server that go into `backup.info`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `server_version_num` (`150018` for 15.18): backup.info's `version`.
    pub version_num: i32,
    /// The `data_directory` setting: backup.info's `pgdata`.
    pub data_directory: String,
    /// The `config_file` setting (path of `postgresql.conf`), when visible.
    pub config_file: Option<String>,
    /// The `hba_file` setting (path of `pg_hba.conf`), when visible.
    pub hba_file: Option<String>,
    /// The `ident_file` setting (path of `pg_ident.conf`), when visible.
    pub ident_file: Option<String>,
    /// The `wal_segment_size` setting, in bytes (16 MiB when not visible).
    pub wal_segment_size: u64,
    /// `SHOW data_checksums`: `on` or `off`.
    pub data_checksums: Option<String>,
    /// `SHOW summarize_wal` on PostgreSQL 17+, `None` before.
    pub summarize_wal: Option<String>,
    /// The system identifier (`pg_control_system()`), decimal digits.
    pub systemid: String,
    /// Bytes: the sum of `pg_tablespace_size` over every tablespace; `None` when
    /// the role may not read it.
    pub cluster_size: Option<i64>,
    /// The tablespaces other than `pg_default` and `pg_global`, by OID.
    pub tablespaces: Vec<TablespaceInfo>,
    /// `pg_is_in_recovery()`: the server is a standby.
    pub in_recovery: bool,
}

/// One user tablespace, from `pg_tablespace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablespaceInfo {
    /// `spcname`.
    pub name: String,
    /// Its OID: the name of its link in `pg_tblspc/`.
    pub oid: u32,
    /// `pg_tablespace_location(oid)`: the directory it lives in.
    pub location: String,
}

/// What `pg_backup_start` returned.
#[derive(Debug, Clone)]
pub struct BackupStart {
    /// The backup's start LSN (`backup_label`'s START WAL LOCATION).
    pub lsn: Lsn,
    /// The timeline of the server's latest checkpoint (`pg_control_checkpoint()`)
    /// just after the call.
    pub timeline: u32,
    /// The server's `now()` just after the call, in the session's time zone.
    pub time: DateTime<FixedOffset>,
}

/// What `pg_backup_stop` returned.
#[derive(Debug, Clone)]
pub struct BackupStop {
    /// The backup's end LSN: recovery must replay WAL up to it to be consistent.
    pub lsn: Lsn,
    /// The timeline of the server's latest checkpoint just after the call.
    pub timeline: u32,
    /// The text of the `backup_label` file, which the backup stores as the
    /// `backup_label` member of its `data` tar and in backup.info's `backup_label`.
    pub label: String,
    /// The server's `now()` just after the call, in the session's time zone.
    pub time: DateTime<FixedOffset>,
}

/// An open session.
pub struct Session {
    client: Client,
    version_num: i32,
}

fn q(what: &'static str) -> impl Fn(tokio_postgres::Error) -> PgError {
    move |e| PgError::Query {
        what,
        detail: e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string()),
    }
}

impl Session {
    /// Connects (without TLS: barrelman runs next to the server, over its socket or
    /// loopback).
    pub async fn connect(opts: &ConnectOptions) -> Result<Session, PgError> {
        let (cfg, target) = opts.config()?;
        let (client, conn) = cfg.connect(NoTls).await.map_err(|e| PgError::Connect {
            target: target.clone(),
            detail: match e.as_db_error() {
                Some(d) => d.message().to_string(),
                // "error connecting to server" says nothing; its cause says why.
                None => {
                    let mut cause: &dyn std::error::Error = &e;
                    while let Some(next) = cause.source() {
                        cause = next;
                    }
                    cause.to_string()
                }
            },
        })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!("PostgreSQL connection ended: {e}");
            }
        });
        let row = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(q("the server version"))?;
        let version_num: i32 = row.get(0);
        if version_num < 100000 {
            return Err(PgError::TooOld {
                version: version_num,
            });
        }
        Ok(Session {
            client,
            version_num,
        })
    }

    /// Runs a statement whose result is not needed.
    pub async fn execute(&self, sql: &str, what: &'static str) -> Result<(), PgError> {
        self.client.batch_execute(sql).await.map_err(q(what))
    }

    /// What the server says about its WAL archiving: settings and pg_stat_archiver.
    pub async fn archiving_facts(&self) -> Result<ArchivingFacts, PgError> {
        let row = self
            .client
            .query_one(
                "SELECT (SELECT system_identifier::text FROM pg_control_system()), \
                        pg_is_in_recovery(), \
                        current_setting('wal_level'), current_setting('archive_mode'), \
                        current_setting('archive_command'), \
                        coalesce(current_setting('archive_library', true), ''), \
                        CASE WHEN pg_is_in_recovery() THEN NULL \
                             ELSE pg_walfile_name(pg_current_wal_lsn()) END, \
                        s.last_archived_wal, s.last_archived_time::text, \
                        s.last_failed_wal, s.last_failed_time::text, \
                        s.failed_count, \
                        coalesce(s.last_failed_time > coalesce(s.last_archived_time, '-infinity'), false) \
                 FROM pg_stat_archiver s",
                &[],
            )
            .await
            .map_err(q("the archiving settings and pg_stat_archiver"))?;
        // Needs pg_monitor or superuser; without it the backlog is simply unknown.
        let pending_ready = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
                &[],
            )
            .await
            .ok()
            .map(|r| r.get::<_, i64>(0));
        Ok(ArchivingFacts {
            system_identifier: row.get(0),
            in_recovery: row.get(1),
            wal_level: row.get(2),
            archive_mode: row.get(3),
            archive_command: row.get(4),
            archive_library: row.get(5),
            current_wal: row.get(6),
            last_archived_wal: row.get(7),
            last_archived_time: row.get(8),
            last_failed_wal: row.get(9),
            last_failed_time: row.get(10),
            failed_count: row.get(11),
            failing_now: row.get(12),
            pending_ready,
        })
    }

    /// Reads the facts `backup.info` records.
    pub async fn server_info(&self) -> Result<ServerInfo, PgError> {
        let c = &self.client;
        let rows = c
            .query(
                "SELECT name, setting FROM pg_settings WHERE name IN \
                 ('data_directory','config_file','hba_file','ident_file','wal_segment_size')",
                &[],
            )
            .await
            .map_err(q("server settings"))?;
        let setting = |n: &str| {
            rows.iter()
                .find(|r| r.get::<_, String>(0) == n)
                .map(|r| r.get::<_, String>(1))
        };
        let data_directory = setting("data_directory").ok_or(PgError::Query {
            what: "data_directory",
            detail: "not visible: connect as a superuser or a member of pg_read_all_settings"
                .into(),
        })?;
        let wal_segment_size = setting("wal_segment_size")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(16 << 20);
        let data_checksums = c
            .query_one("SHOW data_checksums", &[])
            .await
            .ok()
            .map(|r| r.get::<_, String>(0));
        let summarize_wal = if self.version_num >= 170000 {
            c.query_one("SHOW summarize_wal", &[])
                .await
                .ok()
                .map(|r| r.get::<_, String>(0))
        } else {
            None
        };
        let systemid: String = c
            .query_one(
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .await
            .map_err(q("the system identifier"))?
            .get(0);
        let cluster_size = c
            .query_one(
                "SELECT sum(pg_tablespace_size(oid))::bigint FROM pg_tablespace",
                &[],
            )
            .await
            .ok()
            .and_then(|r| r.get::<_, Option<i64>>(0));
        let ts = c
            .query(
                "SELECT spcname::text, oid::bigint, pg_tablespace_location(oid) FROM pg_tablespace \
                 WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid",
                &[],
            )
            .await
            .map_err(q("tablespaces"))?;
        let tablespaces = ts
            .iter()
            .map(|r| TablespaceInfo {
                name: r.get(0),
                oid: r.get::<_, i64>(1) as u32,
                location: r.get(2),
            })
            .collect();
        let in_recovery: bool = c
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(q("the recovery state"))?
            .get(0);
        Ok(ServerInfo {
            version_num: self.version_num,
            data_directory,
            config_file: setting("config_file"),
            hba_file: setting("hba_file"),
            ident_file: setting("ident_file"),
            wal_segment_size,
            data_checksums,
            summarize_wal,
            systemid,
            cluster_size,
            tablespaces,
            in_recovery,
        })
    }

    async fn now_and_timeline(&self) -> Result<(DateTime<FixedOffset>, u32), PgError> {
        let row = self
            .client
            .query_one(
                "SELECT extract(epoch FROM now())::float8, extract(timezone FROM now())::int, \
                 (SELECT timeline_id FROM pg_control_checkpoint())::bigint",
                &[],
            )
            .await
            .map_err(q("the time and timeline"))?;
        let epoch: f64 = row.get(0);
        let offset: i32 = row.get(1);
        let tli: i64 = row.get(2);
        let tz = FixedOffset::east_opt(offset).unwrap_or_else(|| FixedOffset::east_opt(0).unwrap());
        let secs = epoch.floor() as i64;
        let micros = ((epoch - epoch.floor()) * 1e6).round() as u32;
        let time = tz
            .timestamp_opt(secs, micros.min(999_999) * 1000)
            .single()
            .unwrap_or_else(|| tz.timestamp_opt(secs, 0).unwrap());
        Ok((time, tli as u32))
    }

    /// `pg_backup_start(label, fast)` (non-exclusive on older servers).
    pub async fn backup_start(&self, label: &str, fast: bool) -> Result<BackupStart, PgError> {
        let sql = if self.version_num >= 150000 {
            "SELECT pg_backup_start($1, $2)::text"
        } else {
            "SELECT pg_start_backup($1, $2, false)::text"
        };
        let row = self
            .client
            .query_one(sql, &[&label, &fast])
            .await
            .map_err(q("pg_backup_start"))?;
        let lsn: String = row.get(0);
        let (time, timeline) = self.now_and_timeline().await?;
        Ok(BackupStart {
            lsn: lsn.parse().map_err(|_| PgError::Query {
                what: "pg_backup_start",
                detail: format!("unexpected LSN {lsn}"),
            })?,
            timeline,
            time,
        })
    }

    /// `pg_backup_stop`. With `wait_for_archive` false it returns at once and the
    /// caller checks the archive itself (PostgreSQL would wait forever when
    /// archiving is broken).
    pub async fn backup_stop(&self, wait_for_archive: bool) -> Result<BackupStop, PgError> {
        let sql = if self.version_num >= 150000 {
            "SELECT lsn::text, labelfile FROM pg_backup_stop($1)"
        } else {
            "SELECT lsn::text, labelfile FROM pg_stop_backup(false, $1)"
        };
        let row = self
            .client
            .query_one(sql, &[&wait_for_archive])
            .await
            .map_err(q("pg_backup_stop"))?;
        let lsn: String = row.get(0);
        let label: String = row.get(1);
        let (time, timeline) = self.now_and_timeline().await?;
        Ok(BackupStop {
            lsn: lsn.parse().map_err(|_| PgError::Query {
                what: "pg_backup_stop",
                detail: format!("unexpected LSN {lsn}"),
            })?,
            timeline,
            label,
            time,
        })
    }

    /// `pg_switch_wal()` then `pg_create_restore_point(name)`; on a standby neither
    /// is possible and both are skipped. Errors are ignored, as barman does.
    pub async fn switch_and_mark(&self, restore_point: &str) {
        let _ = self.client.batch_execute("SELECT pg_switch_wal()").await;
        let _ = self
            .client
            .query("SELECT pg_create_restore_point($1)", &[&restore_point])
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_defaults_come_from_the_captured_environment_only() {
        let env = PgEnvironment::from_vars([
            ("PGHOST", "/tmp/sockets"),
            ("PGPORT", "6543"),
            ("PGUSER", ""),
            ("USER", "osuser"),
            ("PGPASSWORD", "pw-secret"),
            ("PATH", "/bin"),
        ]);
        assert_eq!(env.user, None, "libpq ignores empty variables");
        assert!(!format!("{env:?}").contains("pw-secret"));
        let opts = ConnectOptions {
            environment: env,
            ..Default::default()
        };
        let (cfg, target) = opts.config().unwrap();
        assert_eq!(target, "/tmp/sockets port 6543 as osuser");
        assert_eq!(cfg.get_password(), Some(&b"pw-secret"[..]));
        assert_eq!(cfg.get_dbname(), Some("postgres"));

        // Explicit options win; nothing is taken from this process's PG* variables.
        let opts = ConnectOptions {
            host: Some("127.0.0.1".into()),
            port: Some(5499),
            user: Some("u".into()),
            ..Default::default()
        };
        let (cfg, target) = opts.config().unwrap();
        assert_eq!(target, "127.0.0.1 port 5499 as u");
        assert_eq!(cfg.get_password(), None);
        let (_, target) = ConnectOptions::default().config().unwrap();
        assert_eq!(target, "/var/run/postgresql port 5432 as postgres");
    }
}
