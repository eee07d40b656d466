//! The `backup.info` file of a base backup (`<server>/base/<id>/backup.info`), as
//! barman 3.19.1 writes and reads it, and its `--format json` renderings by
//! `barman-cloud-backup-list` and `barman-cloud-backup-show`.
//!
//! File syntax: one `key=value` line per key of barman's key set, keys sorted, `None`
//! for null; `backup_name` and `snapshots_info` are omitted when null. Values are
//! plain text, integers, timestamps (`str(datetime)`) or Python literals
//! (`backup_label`, `copy_stats`, `included_files`, `snapshots_info`, `tablespaces`).
//!
//! barrelman adds one thing barman does not write: the list of the backup's tar
//! parts with their sizes ([`BackupInfo::parts`]), as `#` comment lines after the
//! keys. barman skips comment lines, so its tools read the file unchanged, and the
//! list goes wherever `backup.info` goes (written with DONE, deleted with the backup).

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeZone, Timelike};

use crate::pyliteral::{self, PyValue};

/// barman's default `xlog_segment_size` when the key is absent.
pub const DEFAULT_XLOG_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// `status` of a backup, with barman's spellings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackupStatus {
    /// `EMPTY`: barman's value for a backup.info that has no `status` key; no
    /// barman-cloud tool writes it.
    Empty,
    /// `STARTED`: the backup is under way (barman 3.19+ uploads a backup.info
    /// with this status right after `pg_backup_start`), or it died before its end.
    Started,
    /// `WAITING_FOR_WALS`: a barman-server state (copied, WALs still expected);
    /// never written by barman-cloud.
    WaitingForWals,
    /// `DONE`: complete; restore and verify accept no other status.
    Done,
    /// `SYNCING`: a barman-server state for passive nodes; never written by
    /// barman-cloud.
    Syncing,
    /// `FAILED`: the backup ended with an error, saved in the `error` key.
    Failed,
    /// A value barman does not define; kept verbatim.
    Other(String),
}

impl BackupStatus {
    /// barman's spelling, as written after `status=`.
    pub fn as_str(&self) -> &str {
        match self {
            BackupStatus::Empty => "EMPTY",
            BackupStatus::Started => "STARTED",
            BackupStatus::WaitingForWals => "WAITING_FOR_WALS",
            BackupStatus::Done => "DONE",
            BackupStatus::Syncing => "SYNCING",
            BackupStatus::Failed => "FAILED",
            BackupStatus::Other(s) => s,
        }
    }

    /// Any text; unknown values become [`BackupStatus::Other`].
    pub fn parse(s: &str) -> Self {
        match s {
            "EMPTY" => BackupStatus::Empty,
            "STARTED" => BackupStatus::Started,
            "WAITING_FOR_WALS" => BackupStatus::WaitingForWals,
            "DONE" => BackupStatus::Done,
            "SYNCING" => BackupStatus::Syncing,
            "FAILED" => BackupStatus::Failed,
            other => BackupStatus::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for BackupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tablespace: `('name', oid, 'location')` in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tablespace {
    /// The tablespace's name (`pg_tablespace.spcname`).
    pub name: String,
    /// The tablespace's OID: its link in `pg_tblspc/` and the name of its tar part
    /// (`<oid>.tar`).
    pub oid: u32,
    /// The directory the tablespace lives in on the backed-up server (the target
    /// of its `pg_tblspc/<oid>` link).
    pub location: String,
}

/// The content of a `backup.info` file: one field per key of barman 3.19.1.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupInfo {
    /// Not a key: the name of the backup's directory under `base/`
    /// (`YYYYMMDDTHHMMSS`).
    pub backup_id: String,
    /// `backup_label`: the label text `pg_backup_stop` returned, decoded (the file
    /// holds its Python literal); `None` while the backup is `STARTED`.
    pub backup_label: Option<String>,
    /// `backup_name`: the name given with `-n/--name`; omitted from the file when
    /// `None`.
    pub backup_name: Option<String>,
    /// `begin_offset`: the byte offset of `begin_xlog` inside the `begin_wal`
    /// segment.
    pub begin_offset: Option<u64>,
    /// `begin_time`: the server's `now()` when `pg_backup_start` returned, in the
    /// session's time zone.
    pub begin_time: Option<DateTime<FixedOffset>>,
    /// `begin_wal`: the name of the WAL segment holding `begin_xlog` (24
    /// upper-case hex digits); the oldest WAL a restore of this backup needs.
    pub begin_wal: Option<String>,
    /// `begin_xlog`: the backup's start LSN (`backup_label`'s START WAL LOCATION),
    /// `%X/%X` upper-case hex.
    pub begin_xlog: Option<String>,
    /// `children_backup_ids`: the incremental backups built on this one, written
    /// comma-separated; always `None` for barman-cloud backups.
    pub children_backup_ids: Option<Vec<String>>,
    /// `cluster_size`: bytes, the sum of `pg_tablespace_size` over all
    /// tablespaces at backup start; `None` when the role may not read it.
    pub cluster_size: Option<u64>,
    /// `compression`: always `None` for barman-cloud backups, whatever the codec
    /// (the codec shows only in the tar parts' suffixes).
    pub compression: Option<String>,
    /// `config_file`: the absolute path of `postgresql.conf` on the server
    /// (`pg_settings`).
    pub config_file: Option<String>,
    /// `copy_stats`: the upload's timings as a Python dict literal (`total_time`,
    /// `number_of_workers`, `copy_time`… in seconds).
    pub copy_stats: Option<PyValue>,
    /// `data_checksums`: `on` or `off`, as `SHOW data_checksums` answered.
    pub data_checksums: Option<String>,
    /// `deduplicated_size`: bytes; always `None` for barman-cloud backups.
    pub deduplicated_size: Option<u64>,
    /// `encryption`: client-side encryption; always `None` for barman-cloud
    /// backups (server-side encryption is not recorded).
    pub encryption: Option<String>,
    /// `end_offset`: the byte offset of `end_xlog` inside the `end_wal` segment.
    pub end_offset: Option<u64>,
    /// `end_time`: the server's `now()` when `pg_backup_stop` returned.
    pub end_time: Option<DateTime<FixedOffset>>,
    /// `end_wal`: the name of the WAL segment holding `end_xlog`; the newest WAL a
    /// restore of this backup needs to reach consistency.
    pub end_wal: Option<String>,
    /// `end_xlog`: the LSN `pg_backup_stop` returned, `%X/%X` upper-case hex;
    /// recovery must replay up to it before the cluster is consistent.
    pub end_xlog: Option<String>,
    /// `error`: why the backup failed (`failure uploading data (…)`); `None`
    /// unless `status` is `FAILED`.
    pub error: Option<String>,
    /// `hba_file`: the absolute path of `pg_hba.conf` on the server.
    pub hba_file: Option<String>,
    /// `ident_file`: the absolute path of `pg_ident.conf` on the server.
    pub ident_file: Option<String>,
    /// `included_files`: the configuration files `postgresql.conf` includes, as a
    /// Python list literal.
    pub included_files: Option<PyValue>,
    /// `mode`: barman's backup method; always `None` for barman-cloud-backup.
    pub mode: Option<String>,
    /// `parent_backup_id`: the backup an incremental backup builds on; always
    /// `None` for barman-cloud backups.
    pub parent_backup_id: Option<String>,
    /// `pgdata`: the server's `data_directory` setting.
    pub pgdata: Option<String>,
    /// `server_name`: the literal `cloud` for backups barman-cloud-backup takes
    /// (not the server name given on the command line).
    pub server_name: Option<String>,
    /// `size`: bytes; always `None` for barman-cloud backups.
    pub size: Option<u64>,
    /// `snapshots_info`: the disk snapshots of a snapshot backup, as a Python dict
    /// literal; omitted from the file when `None`.
    pub snapshots_info: Option<PyValue>,
    /// `status`: where the backup stands. barman's default when the key is absent:
    /// `EMPTY`. A `status=None` line (never
    /// written by barman) also reads as `EMPTY`.
    pub status: BackupStatus,
    /// `summarize_wal`: `on` or `off` on PostgreSQL 17 and later, `None` before.
    pub summarize_wal: Option<String>,
    /// `systemid`: the cluster's system identifier (`pg_control_system()`), decimal
    /// digits kept as text like barman does.
    pub systemid: Option<String>,
    /// `tablespaces`: the server's tablespaces other than `pg_default` and
    /// `pg_global`; `None` when there are none.
    pub tablespaces: Option<Vec<Tablespace>>,
    /// `timeline`: the timeline of the checkpoint the backup starts from.
    pub timeline: Option<u32>,
    /// `version`: the server's `server_version_num` (`150018` for 15.18).
    pub version: Option<u32>,
    /// `xlog_segment_size`: bytes per WAL segment (`wal_segment_size`). barman's
    /// default when the key is absent: 16 MiB.
    pub xlog_segment_size: Option<u64>,
    /// Keys unknown to barman 3.19.1 met when reading (trimmed key, trimmed raw
    /// value). Never written nor rendered.
    pub extra: Vec<(String, String)>,
    /// Every tar part of the backup (file name under `base/<id>/`, stored size), as
    /// barrelman recorded it before DONE; `None` in backups barman wrote.
    pub parts: Option<PartsManifest>,
}

/// The tar parts a backup consists of, recorded in its `backup.info` as comment
/// lines: `# barrelman-parts: N` then N lines `# barrelman-part: FILE SIZE`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartsManifest {
    /// (file name, stored bytes), in the order written.
    pub parts: Vec<(String, u64)>,
    /// The file announced a different number of parts than it lists (a damaged or
    /// hand-edited file): such a manifest proves nothing.
    pub damaged: bool,
}

const PARTS_COUNT_TAG: &str = "# barrelman-parts:";
const PART_TAG: &str = "# barrelman-part:";

impl PartsManifest {
    fn to_lines(&self) -> String {
        let mut out = format!("{PARTS_COUNT_TAG} {}\n", self.parts.len());
        for (file, size) in &self.parts {
            out.push_str(&format!("{PART_TAG} {file} {size}\n"));
        }
        out
    }
}

/// A `backup.info` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupInfoError {
    /// A line that is neither blank, a `#` comment nor `key=value`.
    #[error("backup.info of {backup_id}: line {line} is not key=value: {text:?}")]
    InvalidLine {
        /// The backup whose file it is.
        backup_id: String,
        /// The line's number, counted from 1.
        line: usize,
        /// The line, trimmed.
        text: String,
    },
    /// A known key whose value does not have the key's type (a number, a
    /// timestamp, a Python literal).
    #[error("backup.info of {backup_id}: invalid value for '{key}': {value:?} ({reason})")]
    InvalidValue {
        /// The backup whose file it is.
        backup_id: String,
        /// The key, trimmed.
        key: String,
        /// The value after `=`, trimmed.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl BackupInfo {
    /// An empty backup.info with barman's defaults (`status=EMPTY`,
    /// `xlog_segment_size=16777216`, everything else `None`).
    pub fn new(backup_id: impl Into<String>) -> Self {
        BackupInfo {
            backup_id: backup_id.into(),
            backup_label: None,
            backup_name: None,
            begin_offset: None,
            begin_time: None,
            begin_wal: None,
            begin_xlog: None,
            children_backup_ids: None,
            cluster_size: None,
            compression: None,
            config_file: None,
            copy_stats: None,
            data_checksums: None,
            deduplicated_size: None,
            encryption: None,
            end_offset: None,
            end_time: None,
            end_wal: None,
            end_xlog: None,
            error: None,
            hba_file: None,
            ident_file: None,
            included_files: None,
            mode: None,
            parent_backup_id: None,
            pgdata: None,
            server_name: None,
            size: None,
            snapshots_info: None,
            status: BackupStatus::Empty,
            summarize_wal: None,
            systemid: None,
            tablespaces: None,
            timeline: None,
            version: None,
            xlog_segment_size: Some(DEFAULT_XLOG_SEGMENT_SIZE),
            extra: Vec::new(),
            parts: None,
        }
    }

    /// Read a backup.info like barman does: skip blank lines and lines starting with
    /// `#`, split each other line on the first `=`, strip both sides, `None` is null.
    /// Keys missing from the text keep barman's defaults; unknown keys go to
    /// [`BackupInfo::extra`]; a repeated key keeps its last value.
    pub fn parse(backup_id: &str, text: &str) -> Result<BackupInfo, BackupInfoError> {
        let mut info = BackupInfo::new(backup_id);
        let mut announced: Option<Option<usize>> = None;
        let mut listed: Vec<(String, u64)> = Vec::new();
        let mut malformed = false;
        for (idx, line) in text.split('\n').enumerate() {
            let trimmed = line.trim_end();
            if let Some(n) = trimmed.strip_prefix(PARTS_COUNT_TAG) {
                announced = Some(n.trim().parse().ok());
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix(PART_TAG) {
                match rest
                    .trim()
                    .rsplit_once(' ')
                    .map(|(f, n)| (f, n.parse::<u64>()))
                {
                    Some((file, Ok(size))) if !file.is_empty() && !file.contains('/') => {
                        listed.push((file.to_owned(), size))
                    }
                    _ => malformed = true,
                }
                continue;
            }
            if line.trim().is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(BackupInfoError::InvalidLine {
                    backup_id: backup_id.to_owned(),
                    line: idx + 1,
                    text: line.trim().to_owned(),
                });
            };
            let (key, value) = (key.trim(), value.trim());
            info.set(key, value)
                .map_err(|reason| BackupInfoError::InvalidValue {
                    backup_id: backup_id.to_owned(),
                    key: key.to_owned(),
                    value: value.to_owned(),
                    reason,
                })?;
        }
        if announced.is_some() || !listed.is_empty() {
            let damaged = malformed || announced.flatten() != Some(listed.len());
            info.parts = Some(PartsManifest {
                parts: listed,
                damaged,
            });
        }
        Ok(info)
    }

    /// Set one key from its raw (stripped) text in the file.
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let null = value == "None";
        let text = || (!null).then(|| value.to_owned());
        let int = || -> Result<Option<u64>, String> {
            if null {
                Ok(None)
            } else {
                parse_python_int(value).map(Some)
            }
        };
        let literal = || -> Result<Option<PyValue>, String> {
            if null {
                Ok(None)
            } else {
                pyliteral::parse(value).map(Some).map_err(|e| e.to_string())
            }
        };
        let time = || -> Result<Option<DateTime<FixedOffset>>, String> {
            if null {
                Ok(None)
            } else {
                parse_time(value).map(Some)
            }
        };
        let narrow = |v: Option<u64>| -> Result<Option<u32>, String> {
            v.map(|v| u32::try_from(v).map_err(|_| "out of range".to_owned()))
                .transpose()
        };
        match key {
            "backup_label" => {
                self.backup_label = match literal()? {
                    None => None,
                    Some(PyValue::Str(s)) => Some(s),
                    Some(other) => {
                        return Err(format!("not a string literal: {}", other.to_python()))
                    }
                }
            }
            "backup_name" => self.backup_name = text(),
            "begin_offset" => self.begin_offset = int()?,
            "begin_time" => self.begin_time = time()?,
            "begin_wal" => self.begin_wal = text(),
            "begin_xlog" => self.begin_xlog = text(),
            "children_backup_ids" => {
                self.children_backup_ids = text()
                    .filter(|s| !s.is_empty())
                    .map(|s| s.split(',').map(str::to_owned).collect())
            }
            "cluster_size" => self.cluster_size = int()?,
            "compression" => self.compression = text(),
            "config_file" => self.config_file = text(),
            "copy_stats" => self.copy_stats = literal()?,
            "data_checksums" => self.data_checksums = text(),
            "deduplicated_size" => self.deduplicated_size = int()?,
            "encryption" => self.encryption = text(),
            "end_offset" => self.end_offset = int()?,
            "end_time" => self.end_time = time()?,
            "end_wal" => self.end_wal = text(),
            "end_xlog" => self.end_xlog = text(),
            "error" => self.error = text(),
            "hba_file" => self.hba_file = text(),
            "ident_file" => self.ident_file = text(),
            "included_files" => self.included_files = literal()?,
            "mode" => self.mode = text(),
            "parent_backup_id" => self.parent_backup_id = text(),
            "pgdata" => self.pgdata = text(),
            "server_name" => self.server_name = text(),
            "size" => self.size = int()?,
            "snapshots_info" => self.snapshots_info = literal()?,
            "status" => {
                self.status = text()
                    .map(|s| BackupStatus::parse(&s))
                    .unwrap_or(BackupStatus::Empty)
            }
            "summarize_wal" => self.summarize_wal = text(),
            "systemid" => self.systemid = text(),
            "tablespaces" => {
                self.tablespaces = match literal()? {
                    None => None,
                    Some(v) => parse_tablespaces(&v)?,
                }
            }
            "timeline" => self.timeline = narrow(int()?)?,
            "version" => self.version = narrow(int()?)?,
            "xlog_segment_size" => {
                let size = int()?;
                // Segment arithmetic divides by it: only sizes PostgreSQL can have
                // (a power of two from 1 MiB to 1 GiB) are read, so a hand-edited
                // `0` is an error here, not a crash in `doctor` or `verify`.
                if size.is_some_and(|s| !s.is_power_of_two() || !(1 << 20..=1 << 30).contains(&s)) {
                    return Err(
                        "not a WAL segment size (a power of two from 1 MiB to 1 GiB)".into(),
                    );
                }
                self.xlog_segment_size = size
            }
            _ => match self.extra.iter_mut().find(|(k, _)| k == key) {
                Some(pair) => pair.1 = value.to_owned(),
                None => self.extra.push((key.to_owned(), value.to_owned())),
            },
        }
        Ok(())
    }

    /// The fields as barman's `items()` yields them: sorted, hidden null keys left
    /// out, each value as written to the file (`None` for null).
    fn file_items(&self) -> Vec<(&'static str, Option<String>)> {
        let int = |v: Option<u64>| v.map(|v| v.to_string());
        let int32 = |v: Option<u32>| v.map(|v| v.to_string());
        // barman's null_repr: falsy values (empty dict, empty string…) become None.
        let literal =
            |v: &Option<PyValue>| v.as_ref().filter(|v| v.is_truthy()).map(PyValue::to_python);
        let mut items = vec![
            (
                "backup_label",
                self.backup_label
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .map(pyliteral::str_repr),
            ),
            ("backup_name", self.backup_name.as_deref().map(plain)),
            ("begin_offset", int(self.begin_offset)),
            ("begin_time", self.begin_time.as_ref().map(format_time)),
            ("begin_wal", self.begin_wal.as_deref().map(plain)),
            ("begin_xlog", self.begin_xlog.as_deref().map(plain)),
            (
                "children_backup_ids",
                self.children_backup_ids
                    .as_ref()
                    .filter(|ids| !ids.is_empty())
                    .map(|ids| plain(&ids.join(","))),
            ),
            ("cluster_size", int(self.cluster_size)),
            ("compression", self.compression.as_deref().map(plain)),
            ("config_file", self.config_file.as_deref().map(plain)),
            ("copy_stats", literal(&self.copy_stats)),
            ("data_checksums", self.data_checksums.as_deref().map(plain)),
            ("deduplicated_size", int(self.deduplicated_size)),
            ("encryption", self.encryption.as_deref().map(plain)),
            ("end_offset", int(self.end_offset)),
            ("end_time", self.end_time.as_ref().map(format_time)),
            ("end_wal", self.end_wal.as_deref().map(plain)),
            ("end_xlog", self.end_xlog.as_deref().map(plain)),
            ("error", self.error.as_deref().map(plain)),
            ("hba_file", self.hba_file.as_deref().map(plain)),
            ("ident_file", self.ident_file.as_deref().map(plain)),
            ("included_files", literal(&self.included_files)),
            ("mode", self.mode.as_deref().map(plain)),
            (
                "parent_backup_id",
                self.parent_backup_id.as_deref().map(plain),
            ),
            ("pgdata", self.pgdata.as_deref().map(plain)),
            ("server_name", self.server_name.as_deref().map(plain)),
            ("size", int(self.size)),
            (
                "snapshots_info",
                self.snapshots_info.as_ref().map(PyValue::to_python),
            ),
            ("status", Some(plain(self.status.as_str()))),
            ("summarize_wal", self.summarize_wal.as_deref().map(plain)),
            ("systemid", self.systemid.as_deref().map(plain)),
            (
                "tablespaces",
                self.tablespaces
                    .as_ref()
                    .filter(|t| !t.is_empty())
                    .map(|t| tablespaces_value(t).to_python()),
            ),
            ("timeline", int32(self.timeline)),
            ("version", int32(self.version)),
            ("xlog_segment_size", int(self.xlog_segment_size)),
        ];
        items.retain(|(k, v)| v.is_some() || !HIDE_IF_NULL.contains(k));
        items
    }

    /// The text of the file, exactly as barman 3.19.1 writes it.
    ///
    /// Plain text values are written verbatim except that line breaks are replaced
    /// by spaces (barman would write a file it cannot read back).
    pub fn to_file_text(&self) -> String {
        let mut out = String::new();
        for (key, value) in self.file_items() {
            out.push_str(key);
            out.push('=');
            out.push_str(value.as_deref().unwrap_or("None"));
            out.push('\n');
        }
        if let Some(parts) = &self.parts {
            out.push_str(&parts.to_lines());
        }
        out
    }

    /// One backup as barman's `BackupInfo.to_json()` builds it, in its key order:
    /// the sorted keys, then `backup_id`, `begin_time_iso`, `end_time_iso`.
    fn to_json_value(&self) -> PyValue {
        let opt_str = |v: &Option<String>| v.clone().map(PyValue::Str).unwrap_or(PyValue::None);
        let int = |v: Option<u64>| {
            v.map(|v| PyValue::Int(i64::try_from(v).unwrap_or(i64::MAX)))
                .unwrap_or(PyValue::None)
        };
        let int32 = |v: Option<u32>| v.map(|v| PyValue::Int(v.into())).unwrap_or(PyValue::None);
        let raw = |v: &Option<PyValue>| v.clone().unwrap_or(PyValue::None);
        let ctime = |v: &Option<DateTime<FixedOffset>>| {
            v.as_ref()
                .map(|t| PyValue::Str(format_ctime(t)))
                .unwrap_or(PyValue::None)
        };
        let file_items = self.file_items();
        let mut pairs: Vec<(PyValue, PyValue)> = Vec::with_capacity(file_items.len() + 3);
        for (key, file_value) in file_items {
            let value = match key {
                // These go through their `dump` function in barman's items().
                "backup_label" | "children_backup_ids" => {
                    file_value.map(PyValue::Str).unwrap_or(PyValue::None)
                }
                "backup_name" => opt_str(&self.backup_name),
                "begin_offset" => int(self.begin_offset),
                "begin_time" => ctime(&self.begin_time),
                "begin_wal" => opt_str(&self.begin_wal),
                "begin_xlog" => opt_str(&self.begin_xlog),
                "cluster_size" => int(self.cluster_size),
                "compression" => opt_str(&self.compression),
                "config_file" => opt_str(&self.config_file),
                "copy_stats" => raw(&self.copy_stats),
                "data_checksums" => opt_str(&self.data_checksums),
                "deduplicated_size" => int(self.deduplicated_size),
                "encryption" => opt_str(&self.encryption),
                "end_offset" => int(self.end_offset),
                "end_time" => ctime(&self.end_time),
                "end_wal" => opt_str(&self.end_wal),
                "end_xlog" => opt_str(&self.end_xlog),
                "error" => opt_str(&self.error),
                "hba_file" => opt_str(&self.hba_file),
                "ident_file" => opt_str(&self.ident_file),
                "included_files" => raw(&self.included_files),
                "mode" => opt_str(&self.mode),
                "parent_backup_id" => opt_str(&self.parent_backup_id),
                "pgdata" => opt_str(&self.pgdata),
                "server_name" => opt_str(&self.server_name),
                "size" => int(self.size),
                "snapshots_info" => raw(&self.snapshots_info),
                "status" => PyValue::Str(self.status.as_str().to_owned()),
                "summarize_wal" => opt_str(&self.summarize_wal),
                "systemid" => opt_str(&self.systemid),
                "tablespaces" => match &self.tablespaces {
                    Some(t) => tablespaces_value(t),
                    None => PyValue::None,
                },
                "timeline" => int32(self.timeline),
                "version" => int32(self.version),
                "xlog_segment_size" => int(self.xlog_segment_size),
                other => unreachable!("unhandled key {other}"),
            };
            pairs.push((PyValue::Str(key.to_owned()), value));
        }
        pairs.push(("backup_id".into(), PyValue::Str(self.backup_id.clone())));
        if let Some(t) = &self.begin_time {
            pairs.push(("begin_time_iso".into(), PyValue::Str(format_iso(t))));
        }
        if let Some(t) = &self.end_time {
            pairs.push(("end_time_iso".into(), PyValue::Str(format_iso(t))));
        }
        PyValue::Dict(pairs)
    }

    /// One backup as `barman-cloud-backup-list/-show --format json` render it
    /// (`serde_json`'s map may reorder the keys; [`BackupInfo::show_json`] and
    /// [`list_json`] print barman's exact text).
    pub fn to_json(&self) -> serde_json::Value {
        self.to_json_value().to_json()
    }

    /// The exact line `barman-cloud-backup-show --format json` prints (without the
    /// trailing newline): `{"<server_name>": {…}}`, `"null"` as key when
    /// `server_name` is unset.
    pub fn show_json(&self) -> String {
        let key = self
            .server_name
            .clone()
            .map(PyValue::Str)
            .unwrap_or(PyValue::None);
        PyValue::Dict(vec![(key, self.to_json_value())]).to_json_text()
    }
}

/// The exact line `barman-cloud-backup-list --format json` prints (without the
/// trailing newline): `{"backups_list": [ … ]}`, sorted by backup id.
pub fn list_json(backups: &[BackupInfo]) -> String {
    let mut sorted: Vec<&BackupInfo> = backups.iter().collect();
    sorted.sort_by(|a, b| a.backup_id.cmp(&b.backup_id));
    PyValue::Dict(vec![(
        "backups_list".into(),
        PyValue::List(sorted.iter().map(|b| b.to_json_value()).collect()),
    )])
    .to_json_text()
}

const HIDE_IF_NULL: [&str; 2] = ["backup_name", "snapshots_info"];

/// A plain value on one line.
fn plain(s: &str) -> String {
    if s.contains(['\n', '\r']) {
        s.replace("\r\n", " ").replace(['\n', '\r'], " ")
    } else {
        s.to_owned()
    }
}

fn tablespaces_value(t: &[Tablespace]) -> PyValue {
    PyValue::List(
        t.iter()
            .map(|t| {
                PyValue::Tuple(vec![
                    PyValue::Str(t.name.clone()),
                    PyValue::Int(t.oid.into()),
                    PyValue::Str(t.location.clone()),
                ])
            })
            .collect(),
    )
}

fn parse_tablespaces(v: &PyValue) -> Result<Option<Vec<Tablespace>>, String> {
    if !v.is_truthy() {
        return Ok(None);
    }
    let items = v.as_seq().ok_or("not a list")?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let fields = match item.as_seq() {
            Some(f) if f.len() == 3 => f,
            _ => {
                return Err(format!(
                    "not a (name, oid, location) tuple: {}",
                    item.to_python()
                ))
            }
        };
        let name = fields[0]
            .as_str()
            .ok_or("tablespace name is not a string")?;
        let oid = fields[1]
            .as_int()
            .and_then(|o| u32::try_from(o).ok())
            .ok_or("tablespace oid is not an oid")?;
        let location = fields[2]
            .as_str()
            .ok_or("tablespace location is not a string")?;
        out.push(Tablespace {
            name: name.to_owned(),
            oid,
            location: location.to_owned(),
        });
    }
    Ok(Some(out))
}

/// Python's `int(text)` for non-negative values: optional `+`, digits, single
/// underscores between digits.
fn parse_python_int(text: &str) -> Result<u64, String> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__");
    if !ok {
        return Err("not a non-negative integer".into());
    }
    digits
        .replace('_', "")
        .parse::<u64>()
        .map_err(|e| e.to_string())
}

/// A timestamp as barman writes it into backup.info (Python's `str(datetime)`):
/// `YYYY-MM-DD HH:MM:SS[.ffffff]+HH:MM`, fraction omitted when zero.
fn format_time(t: &DateTime<FixedOffset>) -> String {
    python_isoformat(t, ' ')
}

/// Python's `datetime.isoformat()`: `YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM`.
fn format_iso(t: &DateTime<FixedOffset>) -> String {
    python_isoformat(t, 'T')
}

fn python_isoformat(t: &DateTime<FixedOffset>, sep: char) -> String {
    let mut out = format!(
        "{:04}-{:02}-{:02}{}{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        sep,
        t.hour(),
        t.minute(),
        t.second()
    );
    let micros = t.nanosecond() % 1_000_000_000 / 1000;
    if micros != 0 {
        out.push_str(&format!(".{micros:06}"));
    }
    let offset = t.offset().local_minus_utc();
    let (sign, abs) = if offset < 0 {
        ('-', -offset)
    } else {
        ('+', offset)
    };
    out.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60));
    if abs % 60 != 0 {
        out.push_str(&format!(":{:02}", abs % 60));
    }
    out
}

/// Python's `datetime.ctime()` in the timestamp's own offset:
/// `Tue Nov 24 20:16:25 2026` (day of month space-padded).
fn format_ctime(t: &DateTime<FixedOffset>) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {:04}",
        DAYS[t.weekday().num_days_from_monday() as usize],
        MONTHS[t.month0() as usize],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

/// Parse a timestamp leniently: `YYYY-MM-DD`, then optionally `T` or spaces and
/// `HH:MM[:SS[.fraction]]`, then optionally a zone: `Z`, `UTC`, `GMT`, `±HH`,
/// `±HHMM`, `±HH:MM[:SS]` (spaces before it allowed). The fraction is truncated to
/// microseconds (like dateutil); a timestamp without zone is taken as UTC.
pub fn parse_time(text: &str) -> Result<DateTime<FixedOffset>, String> {
    let bad = |why: &str| format!("not a timestamp ({why})");
    let s = text.trim();
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = s.get(from..from + len)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let year = num(0, 4).ok_or_else(|| bad("year"))?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err(bad("date"));
    }
    let month = num(5, 2).ok_or_else(|| bad("month"))?;
    let day = num(8, 2).ok_or_else(|| bad("day"))?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or_else(|| bad("date"))?;
    let mut i = 10;
    let (mut hour, mut minute, mut second, mut micros) = (0, 0, 0, 0);
    let sep_end = if b.get(i) == Some(&b'T') || b.get(i) == Some(&b't') {
        i + 1
    } else {
        let mut j = i;
        while b.get(j) == Some(&b' ') {
            j += 1;
        }
        j
    };
    if sep_end > i && b.get(sep_end).is_some_and(u8::is_ascii_digit) {
        i = sep_end;
        hour = num(i, 2).ok_or_else(|| bad("hour"))?;
        if b.get(i + 2) != Some(&b':') {
            return Err(bad("time"));
        }
        minute = num(i + 3, 2).ok_or_else(|| bad("minute"))?;
        i += 5;
        if b.get(i) == Some(&b':') {
            second = num(i + 1, 2).ok_or_else(|| bad("second"))?;
            i += 3;
            if matches!(b.get(i), Some(b'.' | b',')) {
                let start = i + 1;
                let mut j = start;
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
                if j == start {
                    return Err(bad("fraction"));
                }
                let frac = &s[start..j.min(start + 6)];
                micros = frac.parse::<u32>().map_err(|_| bad("fraction"))?
                    * 10u32.pow(6 - frac.len() as u32);
                i = j;
            }
        }
    }
    let time =
        NaiveTime::from_hms_micro_opt(hour, minute, second, micros).ok_or_else(|| bad("time"))?;
    let zone = s[i..].trim_start();
    let offset_secs: i32 = match zone {
        "" | "Z" | "z" | "UTC" | "GMT" => 0,
        _ => {
            let (sign, rest) = match zone.as_bytes()[0] {
                b'+' => (1, &zone[1..]),
                b'-' => (-1, &zone[1..]),
                _ => return Err(bad("zone")),
            };
            // Only ASCII below: the fixed-width slicing must not cut a character.
            if !rest.is_ascii() {
                return Err(bad("zone"));
            }
            let parts: Vec<&str> = if rest.contains(':') {
                rest.split(':').collect()
            } else if rest.len() == 4 || rest.len() == 6 {
                (0..rest.len() / 2)
                    .map(|k| &rest[2 * k..2 * k + 2])
                    .collect()
            } else {
                vec![rest]
            };
            if parts.is_empty()
                || parts.len() > 3
                || parts
                    .iter()
                    .any(|p| p.len() != 2 || !p.bytes().all(|c| c.is_ascii_digit()))
            {
                return Err(bad("zone"));
            }
            let v: Vec<i32> = parts.iter().map(|p| p.parse().expect("digits")).collect();
            let secs = v[0] * 3600 + v.get(1).unwrap_or(&0) * 60 + v.get(2).unwrap_or(&0);
            sign * secs
        }
    };
    let offset = FixedOffset::east_opt(offset_secs).ok_or_else(|| bad("zone"))?;
    offset
        .from_local_datetime(&date.and_time(time))
        .single()
        .ok_or_else(|| bad("time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real example of the reference (barman 3.19.1, PG 15.18).
    const EXAMPLE: &str = r"backup_label='START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\nCHECKPOINT LOCATION: 0/4000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-24 20:16:25 UTC\nLABEL: Barman backup cloud 20261124T201625\nSTART TIMELINE: 1\n'
backup_name=first-backup
begin_offset=40
begin_time=2026-11-24 20:16:25.483595+00:00
begin_wal=000000010000000000000004
begin_xlog=0/4000028
children_backup_ids=None
cluster_size=27119305
compression=None
config_file=/var/lib/postgresql/data/pgdata/postgresql.conf
copy_stats={'total_time': 3.942645, 'number_of_workers': 2, 'analysis_time': 0, 'analysis_time_per_item': {'16391': 0, 'data': 0}, 'copy_time_per_item': {'16391': 0.074192, 'data': 0.017411}, 'serialized_copy_time_per_item': {'16391': 0.067793, 'data': 0.011504}, 'copy_time': 0.09798, 'serialized_copy_time': 0.079297}
data_checksums=on
deduplicated_size=None
encryption=None
end_offset=256
end_time=2026-11-24 20:16:28.280810+00:00
end_wal=000000010000000000000004
end_xlog=0/4000100
error=None
hba_file=/var/lib/postgresql/data/pgdata/pg_hba.conf
ident_file=/var/lib/postgresql/data/pgdata/pg_ident.conf
included_files=None
mode=None
parent_backup_id=None
pgdata=/var/lib/postgresql/data/pgdata
server_name=cloud
size=None
status=DONE
summarize_wal=None
systemid=7711833588576199833
tablespaces=[('ts1', 16391, '/var/lib/postgresql/tablespaces/ts1/data')]
timeline=1
version=150018
xlog_segment_size=16777216
";

    /// `json.dumps({"backups_list": [bi.to_json()]})` printed by barman 3.19.1 for
    /// EXAMPLE loaded as backup 20261124T201625.
    const EXAMPLE_LIST_JSON: &str = r#"{"backups_list": [{"backup_label": "'START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\\nCHECKPOINT LOCATION: 0/4000060\\nBACKUP METHOD: streamed\\nBACKUP FROM: primary\\nSTART TIME: 2026-11-24 20:16:25 UTC\\nLABEL: Barman backup cloud 20261124T201625\\nSTART TIMELINE: 1\\n'", "backup_name": "first-backup", "begin_offset": 40, "begin_time": "Tue Nov 24 20:16:25 2026", "begin_wal": "000000010000000000000004", "begin_xlog": "0/4000028", "children_backup_ids": null, "cluster_size": 27119305, "compression": null, "config_file": "/var/lib/postgresql/data/pgdata/postgresql.conf", "copy_stats": {"total_time": 3.942645, "number_of_workers": 2, "analysis_time": 0, "analysis_time_per_item": {"16391": 0, "data": 0}, "copy_time_per_item": {"16391": 0.074192, "data": 0.017411}, "serialized_copy_time_per_item": {"16391": 0.067793, "data": 0.011504}, "copy_time": 0.09798, "serialized_copy_time": 0.079297}, "data_checksums": "on", "deduplicated_size": null, "encryption": null, "end_offset": 256, "end_time": "Tue Nov 24 20:16:28 2026", "end_wal": "000000010000000000000004", "end_xlog": "0/4000100", "error": null, "hba_file": "/var/lib/postgresql/data/pgdata/pg_hba.conf", "ident_file": "/var/lib/postgresql/data/pgdata/pg_ident.conf", "included_files": null, "mode": null, "parent_backup_id": null, "pgdata": "/var/lib/postgresql/data/pgdata", "server_name": "cloud", "size": null, "status": "DONE", "summarize_wal": null, "systemid": "7711833588576199833", "tablespaces": [["ts1", 16391, "/var/lib/postgresql/tablespaces/ts1/data"]], "timeline": 1, "version": 150018, "xlog_segment_size": 16777216, "backup_id": "20261124T201625", "begin_time_iso": "2026-11-24T20:16:25.483595+00:00", "end_time_iso": "2026-11-24T20:16:28.280810+00:00"}]}"#;

    fn example() -> BackupInfo {
        BackupInfo::parse("20261124T201625", EXAMPLE).unwrap()
    }

    /// EXAMPLE with the values of the STARTED upload.
    fn started_text() -> String {
        let mut lines: Vec<String> = Vec::new();
        for line in EXAMPLE.lines() {
            let (k, _) = line.split_once('=').unwrap();
            let v = match k {
                "backup_name" => continue,
                "backup_label" | "copy_stats" | "end_offset" | "end_time" | "end_wal"
                | "end_xlog" | "tablespaces" => "None".to_owned(),
                "status" => "STARTED".to_owned(),
                "begin_time" => "2026-03-04 05:06:07+02:00".to_owned(),
                _ => line.split_once('=').unwrap().1.to_owned(),
            };
            lines.push(format!("{k}={v}\n"));
        }
        lines.concat()
    }

    #[test]
    fn example_fields() {
        let b = example();
        assert_eq!(b.backup_id, "20261124T201625");
        assert_eq!(b.status, BackupStatus::Done);
        assert_eq!(b.backup_name.as_deref(), Some("first-backup"));
        assert!(b.backup_label.as_deref().unwrap().starts_with(
            "START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\nCHECKPOINT"
        ));
        assert_eq!(b.begin_offset, Some(40));
        assert_eq!(
            format_iso(b.begin_time.as_ref().unwrap()),
            "2026-11-24T20:16:25.483595+00:00"
        );
        assert_eq!(b.begin_wal.as_deref(), Some("000000010000000000000004"));
        assert_eq!(b.begin_xlog.as_deref(), Some("0/4000028"));
        assert_eq!(b.end_xlog.as_deref(), Some("0/4000100"));
        assert_eq!(b.end_offset, Some(256));
        assert_eq!(b.cluster_size, Some(27119305));
        assert_eq!(b.compression, None);
        assert_eq!(b.children_backup_ids, None);
        assert_eq!(
            b.copy_stats
                .as_ref()
                .and_then(|c| c.get("number_of_workers")),
            Some(&PyValue::Int(2))
        );
        assert_eq!(b.data_checksums.as_deref(), Some("on"));
        assert_eq!(b.server_name.as_deref(), Some("cloud"));
        assert_eq!(b.systemid.as_deref(), Some("7711833588576199833"));
        assert_eq!(
            b.tablespaces,
            Some(vec![Tablespace {
                name: "ts1".into(),
                oid: 16391,
                location: "/var/lib/postgresql/tablespaces/ts1/data".into(),
            }])
        );
        assert_eq!(b.timeline, Some(1));
        assert_eq!(b.version, Some(150018));
        assert_eq!(b.xlog_segment_size, Some(16777216));
        assert_eq!(b.snapshots_info, None);
        assert!(b.extra.is_empty());
    }

    #[test]
    fn example_rerenders_byte_identical() {
        assert_eq!(example().to_file_text(), EXAMPLE);
    }

    #[test]
    fn example_json_matches_barman() {
        let b = example();
        assert_eq!(list_json(std::slice::from_ref(&b)), EXAMPLE_LIST_JSON);
        // backup-show: same object under the server_name key.
        let inner = &EXAMPLE_LIST_JSON[r#"{"backups_list": ["#.len()..EXAMPLE_LIST_JSON.len() - 2];
        assert_eq!(b.show_json(), format!(r#"{{"cloud": {inner}}}"#));
        let v = b.to_json();
        assert_eq!(v["systemid"], "7711833588576199833");
        assert_eq!(v["begin_time"], "Tue Nov 24 20:16:25 2026");
        assert_eq!(v["copy_stats"]["copy_time"], 0.09798);
        assert_eq!(v["tablespaces"][0][1], 16391);
        assert_eq!(v["backup_id"], "20261124T201625");
        assert!(v["error"].is_null());
        assert!(v.get("snapshots_info").is_none());
        let parsed: serde_json::Value = serde_json::from_str(EXAMPLE_LIST_JSON).unwrap();
        assert_eq!(parsed["backups_list"][0], v);
    }

    #[test]
    fn list_is_sorted_by_id() {
        let mut a = example();
        a.backup_id = "20261124T201625".into();
        let mut b = example();
        b.backup_id = "20250101T000000".into();
        let text = list_json(&[a, b]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["backups_list"][0]["backup_id"], "20250101T000000");
        assert_eq!(v["backups_list"][1]["backup_id"], "20261124T201625");
        assert_eq!(list_json(&[]), r#"{"backups_list": []}"#);
    }

    #[test]
    fn started_variant() {
        let text = started_text();
        let b = BackupInfo::parse("20261124T201625", &text).unwrap();
        assert_eq!(b.status, BackupStatus::Started);
        assert_eq!(b.backup_label, None);
        assert_eq!(b.copy_stats, None);
        assert_eq!(b.end_time, None);
        assert_eq!(b.end_offset, None);
        assert_eq!(b.tablespaces, None);
        assert_eq!(b.backup_name, None);
        assert_eq!(b.to_file_text(), text);
        assert!(!b.to_file_text().contains("backup_name"));
        // From barman 3.19.1 for the same file (backup id "2026XX_started").
        let mut b2 = b.clone();
        b2.backup_id = "2026XX_started".into();
        assert_eq!(
            b2.show_json(),
            r#"{"cloud": {"backup_label": null, "begin_offset": 40, "begin_time": "Wed Mar  4 05:06:07 2026", "begin_wal": "000000010000000000000004", "begin_xlog": "0/4000028", "children_backup_ids": null, "cluster_size": 27119305, "compression": null, "config_file": "/var/lib/postgresql/data/pgdata/postgresql.conf", "copy_stats": null, "data_checksums": "on", "deduplicated_size": null, "encryption": null, "end_offset": null, "end_time": null, "end_wal": null, "end_xlog": null, "error": null, "hba_file": "/var/lib/postgresql/data/pgdata/pg_hba.conf", "ident_file": "/var/lib/postgresql/data/pgdata/pg_ident.conf", "included_files": null, "mode": null, "parent_backup_id": null, "pgdata": "/var/lib/postgresql/data/pgdata", "server_name": "cloud", "size": null, "status": "STARTED", "summarize_wal": null, "systemid": "7711833588576199833", "tablespaces": null, "timeline": 1, "version": 150018, "xlog_segment_size": 16777216, "backup_id": "2026XX_started", "begin_time_iso": "2026-03-04T05:06:07+02:00"}}"#
        );
    }

    #[test]
    fn failed_variant() {
        let text = EXAMPLE
            .replace("status=DONE", "status=FAILED")
            .replace(
                "error=None",
                "error=failure uploading data (it's \"bad\": café)",
            )
            .replace(
                "begin_time=2026-11-24 20:16:25.483595+00:00",
                "begin_time=2026-11-24T20:16:25.4835Z",
            )
            .replace(
                "end_time=2026-11-24 20:16:28.280810+00:00",
                "end_time=2026-11-24 20:16:28+00:00",
            )
            .replace(
                "included_files=None",
                "included_files=['/etc/pg/extra.conf']",
            )
            .replace("children_backup_ids=None", "children_backup_ids=a,b")
            .lines()
            .map(|l| {
                if l.starts_with("copy_stats=") {
                    "copy_stats=None\n".to_owned()
                } else if l.starts_with("backup_label=") {
                    "backup_label=None\n".to_owned()
                } else {
                    format!("{l}\n")
                }
            })
            .collect::<String>();
        let b = BackupInfo::parse("2026XX_failed", &text).unwrap();
        assert_eq!(b.status, BackupStatus::Failed);
        assert_eq!(
            b.error.as_deref(),
            Some("failure uploading data (it's \"bad\": café)")
        );
        assert_eq!(
            b.children_backup_ids,
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        // barman normalizes the begin_time on save.
        assert_eq!(
            b.to_file_text(),
            text.replace(
                "begin_time=2026-11-24T20:16:25.4835Z",
                "begin_time=2026-11-24 20:16:25.483500+00:00"
            )
        );
        // From barman 3.19.1 for the same file.
        assert_eq!(
            list_json(&[b]),
            r#"{"backups_list": [{"backup_label": null, "backup_name": "first-backup", "begin_offset": 40, "begin_time": "Tue Nov 24 20:16:25 2026", "begin_wal": "000000010000000000000004", "begin_xlog": "0/4000028", "children_backup_ids": "a,b", "cluster_size": 27119305, "compression": null, "config_file": "/var/lib/postgresql/data/pgdata/postgresql.conf", "copy_stats": null, "data_checksums": "on", "deduplicated_size": null, "encryption": null, "end_offset": 256, "end_time": "Tue Nov 24 20:16:28 2026", "end_wal": "000000010000000000000004", "end_xlog": "0/4000100", "error": "failure uploading data (it's \"bad\": caf\u00e9)", "hba_file": "/var/lib/postgresql/data/pgdata/pg_hba.conf", "ident_file": "/var/lib/postgresql/data/pgdata/pg_ident.conf", "included_files": ["/etc/pg/extra.conf"], "mode": null, "parent_backup_id": null, "pgdata": "/var/lib/postgresql/data/pgdata", "server_name": "cloud", "size": null, "status": "FAILED", "summarize_wal": null, "systemid": "7711833588576199833", "tablespaces": [["ts1", 16391, "/var/lib/postgresql/tablespaces/ts1/data"]], "timeline": 1, "version": 150018, "xlog_segment_size": 16777216, "backup_id": "2026XX_failed", "begin_time_iso": "2026-11-24T20:16:25.483500+00:00", "end_time_iso": "2026-11-24T20:16:28+00:00"}]}"#
        );
    }

    #[test]
    fn parts_manifest_round_trips_as_comments_and_damage_is_seen() {
        let mut b = BackupInfo::parse("x", EXAMPLE).unwrap();
        assert_eq!(b.parts, None);
        b.parts = Some(PartsManifest {
            parts: vec![("data.tar.gz".into(), 1234), ("data_0001.tar.gz".into(), 5)],
            damaged: false,
        });
        let text = b.to_file_text();
        assert!(text.starts_with(EXAMPLE), "the keys stay exactly barman's");
        assert!(
            text.ends_with("# barrelman-parts: 2\n# barrelman-part: data.tar.gz 1234\n# barrelman-part: data_0001.tar.gz 5\n"),
            "{text}"
        );
        let back = BackupInfo::parse("x", &text).unwrap();
        assert_eq!(back, b);
        // A line lost (or one added by hand) makes the manifest count for nothing.
        let lost = text.replace("# barrelman-part: data_0001.tar.gz 5\n", "");
        assert!(
            BackupInfo::parse("x", &lost)
                .unwrap()
                .parts
                .unwrap()
                .damaged
        );
        let bad = text.replace(" 1234\n", " 12x4\n");
        assert!(BackupInfo::parse("x", &bad).unwrap().parts.unwrap().damaged);
        let escaping = text.replace("data.tar.gz 1234", "../x.tar 1234");
        assert!(
            BackupInfo::parse("x", &escaping)
                .unwrap()
                .parts
                .unwrap()
                .damaged
        );
    }

    #[test]
    fn unknown_key_tolerated_not_written() {
        let text = format!("# a comment\n\n{EXAMPLE}future_key = some value \n");
        let b = BackupInfo::parse("x", &text).unwrap();
        assert_eq!(
            b.extra,
            vec![("future_key".to_owned(), "some value".to_owned())]
        );
        assert_eq!(b.to_file_text(), EXAMPLE);
        assert!(!b.show_json().contains("future_key"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let text = EXAMPLE.replace("begin_offset=40", "begin_offset=4x0");
        let err = BackupInfo::parse("x", &text).unwrap_err();
        assert!(
            matches!(&err, BackupInfoError::InvalidValue { key, value, .. }
            if key == "begin_offset" && value == "4x0")
        );
        let msg = err.to_string();
        assert!(
            msg.contains("'begin_offset'") && msg.contains("4x0"),
            "{msg}"
        );

        let err = BackupInfo::parse("x", "timeline=99999999999\n").unwrap_err();
        assert!(err.to_string().contains("'timeline'"));
        let err = BackupInfo::parse("x", "copy_stats={'a': \n").unwrap_err();
        assert!(err.to_string().contains("'copy_stats'"));
        let err = BackupInfo::parse("x", "begin_time=yesterday\n").unwrap_err();
        assert!(err.to_string().contains("'begin_time'"));
        let err = BackupInfo::parse("x", "tablespaces=[('a', 1)]\n").unwrap_err();
        assert!(err.to_string().contains("'tablespaces'"));
        let err = BackupInfo::parse("x", "status=DONE\nno equals sign\n").unwrap_err();
        assert_eq!(
            err,
            BackupInfoError::InvalidLine {
                backup_id: "x".into(),
                line: 2,
                text: "no equals sign".into()
            }
        );
    }

    #[test]
    fn defaults_and_empty_values() {
        let b = BackupInfo::parse("x", "").unwrap();
        assert_eq!(b, BackupInfo::new("x"));
        assert_eq!(b.status, BackupStatus::Empty);
        assert_eq!(b.xlog_segment_size, Some(DEFAULT_XLOG_SEGMENT_SIZE));
        let text = b.to_file_text();
        assert_eq!(text.lines().count(), 33);
        assert!(text.contains("status=EMPTY\n") && text.contains("xlog_segment_size=16777216\n"));
        // barman's null_repr turns falsy literals into None.
        let mut b = BackupInfo::new("x");
        b.copy_stats = Some(PyValue::Dict(vec![]));
        b.backup_label = Some(String::new());
        b.tablespaces = Some(vec![]);
        b.error = Some("line1\nline2".into());
        let text = b.to_file_text();
        assert!(text.contains("copy_stats=None\n"));
        assert!(text.contains("backup_label=None\n"));
        assert!(text.contains("tablespaces=None\n"));
        assert!(text.contains("error=line1 line2\n"));
        // ... but the JSON keeps the raw values, as barman's to_dict() does.
        let v = b.to_json();
        assert_eq!(v["copy_stats"], serde_json::json!({}));
        assert_eq!(v["tablespaces"], serde_json::json!([]));
        assert!(v["backup_label"].is_null());
    }

    #[test]
    fn snapshots_info_written_when_set() {
        let mut b = BackupInfo::new("x");
        let snap = "{'provider': 'gcp', 'provider_info': {'project': 'p'}, 'snapshots': [{'mount': {'mount_options': 'rw', 'mount_point': '/opt/disk0'}, 'provider': {'device_name': 'd0', 'snapshot_name': 's0', 'snapshot_project': 'p'}}]}";
        b.snapshots_info = Some(pyliteral::parse(snap).unwrap());
        assert!(b
            .to_file_text()
            .contains(&format!("\nsnapshots_info={snap}\nstatus=")));
        let back = BackupInfo::parse("x", &b.to_file_text()).unwrap();
        assert_eq!(back, b);
        assert_eq!(
            b.to_json()["snapshots_info"]["provider_info"]["project"],
            "p"
        );
    }

    #[test]
    fn time_formats() {
        let t = parse_time("2026-11-24 20:16:25.483595+00:00").unwrap();
        assert_eq!(format_time(&t), "2026-11-24 20:16:25.483595+00:00");
        assert_eq!(format_iso(&t), "2026-11-24T20:16:25.483595+00:00");
        assert_eq!(format_ctime(&t), "Tue Nov 24 20:16:25 2026");
        for (input, want) in [
            ("2026-11-24 20:16:25+00:00", "2026-11-24 20:16:25+00:00"),
            ("2026-11-24T20:16:25Z", "2026-11-24 20:16:25+00:00"),
            (
                "2026-11-24 20:16:25.5+0200",
                "2026-11-24 20:16:25.500000+02:00",
            ),
            (
                "2026-11-24 20:16:25.1234567 -05:30",
                "2026-11-24 20:16:25.123456-05:30",
            ),
            ("2026-11-24 20:16:25", "2026-11-24 20:16:25+00:00"),
            ("2026-11-24 20:16:25 UTC", "2026-11-24 20:16:25+00:00"),
            ("2026-11-24 20:16", "2026-11-24 20:16:00+00:00"),
            ("2026-11-24", "2026-11-24 00:00:00+00:00"),
            ("2026-11-24 20:16:25+01", "2026-11-24 20:16:25+01:00"),
        ] {
            assert_eq!(format_time(&parse_time(input).unwrap()), want, "{input}");
        }
        let t = parse_time("2026-03-04 05:06:07+02:00").unwrap();
        assert_eq!(format_ctime(&t), "Wed Mar  4 05:06:07 2026");
        assert_eq!(format_iso(&t), "2026-03-04T05:06:07+02:00");
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-24 25:00:00",
            "2026-11-24 20:16:25 CET",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_spellings() {
        for s in [
            "EMPTY",
            "STARTED",
            "WAITING_FOR_WALS",
            "DONE",
            "SYNCING",
            "FAILED",
            "WEIRD",
        ] {
            assert_eq!(BackupStatus::parse(s).as_str(), s);
        }
        assert_eq!(
            BackupStatus::parse("WEIRD"),
            BackupStatus::Other("WEIRD".into())
        );
    }
}
