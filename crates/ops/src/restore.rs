//! Restoring a base backup: every tar part of PGDATA and of each tablespace,
//! downloaded, decompressed and extracted in parallel into empty directories, with
//! the `pg_tblspc` links and `pg_wal` recreated. Extraction never writes outside its
//! target. A backup with a missing part is refused before anything is written
//! (`parts::check`), and one whose parts held no `backup_label` fails after.

use crate::catalog::{self, ChooseError, TargetChoice};
use crate::parts;
use crate::progress::Progress;
use barrelman_core::backup_info::{BackupInfo, BackupStatus};
use barrelman_core::layout::DATA_ITEM;
use barrelman_core::{Classified, Compression, ErrorClass};
use barrelman_postgres::extract;
use barrelman_storage::{Archive, ObjectInfo, StorageError};
use futures::stream::{self, StreamExt};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What to restore and where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// An id, a name, `first`/`oldest`, `last`/`latest`, `last-failed` or `auto`.
    pub backup: String,
    /// For `auto`: the recovery target the backup must end before.
    pub target: TargetChoice,
    /// The PGDATA directory to restore into (empty or new).
    pub destination: PathBuf,
    /// `--tablespace NAME:LOCATION` relocations.
    pub tablespace_map: Vec<(String, PathBuf)>,
    /// Parts downloaded and extracted at once.
    pub jobs: usize,
}

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// No backup matches the id, name or shortcut.
    #[error(transparent)]
    Choose(#[from] ChooseError),
    /// The store failed while the catalog or the backup was read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The chosen backup is not DONE.
    #[error("backup {id} is {status}, not DONE: it cannot be restored (choose another one with `barrelman list`)")]
    NotRestorable {
        /// The backup's id.
        id: String,
        /// Its status in `backup.info`.
        status: String,
    },
    /// A directory to restore into already holds files.
    #[error("the destination {0} is not empty: restore into an empty or new directory")]
    NotEmpty(PathBuf),
    /// A part is missing, short or unlisted, or no part held `backup_label`.
    #[error("backup {id} is incomplete and cannot be restored: {problem}; restore another backup (see `barrelman verify`)")]
    Incomplete {
        /// The backup's id.
        id: String,
        /// The first problem found, naming the object.
        problem: String,
    },
    /// A tar part could not be decoded or extracted.
    #[error("cannot restore {key}: {source}")]
    Extract {
        /// The part's key.
        key: String,
        /// What went wrong in the stream or the extraction.
        #[source]
        source: extract::ExtractError,
    },
    /// A local directory could not be read or created.
    #[error("cannot {action} {}: {source}", path.display())]
    Local {
        /// `read` or `create`.
        action: &'static str,
        /// The directory.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// A tablespace link in `pg_tblspc` could not be made.
    #[error("cannot link {} to {}: {source}", link.display(), target.display())]
    Link {
        /// The link in `pg_tblspc`.
        link: PathBuf,
        /// The tablespace's directory.
        target: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// An extraction worker panicked (a bug).
    #[error("internal: extraction task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The catalog holds `backup.info` files that cannot be read.
    #[error("the catalog has unreadable backup.info files: {0}")]
    Unreadable(String),
}

impl Classified for RestoreError {
    /// barman-cloud-restore exits 1 whatever stops a restore (a store failure
    /// included), so every class here is one that faces map to "operation failed".
    fn class(&self) -> ErrorClass {
        match self {
            Self::Choose(_) => ErrorClass::NotFound,
            Self::NotEmpty(_) => ErrorClass::Conflict,
            Self::Storage(_)
            | Self::NotRestorable { .. }
            | Self::Incomplete { .. }
            | Self::Extract { .. }
            | Self::Local { .. }
            | Self::Link { .. }
            | Self::Task(_)
            | Self::Unreadable(_) => ErrorClass::Failed,
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        let fix = match self {
            Self::Storage(e) => return e.hint(),
            Self::Choose(_) | Self::NotRestorable { .. } => {
                "choose another backup (see `barrelman list`)"
            }
            Self::NotEmpty(_) => "restore into an empty or new directory",
            Self::Incomplete { .. } => "restore another backup (see `barrelman verify`)",
            _ => return None,
        };
        Some(Cow::Borrowed(fix))
    }
}

/// One part to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartToFetch {
    /// The part's key.
    pub(crate) key: String,
    /// The codec its name says.
    pub(crate) compression: Compression,
    /// The directory it is extracted into.
    pub(crate) target: PathBuf,
    /// Its stored size (for progress).
    pub(crate) size: u64,
}

/// What a directory to restore into holds, as far as a restore cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirState {
    /// Nothing there: it is created.
    Missing,
    /// An empty directory.
    Empty,
    /// A directory with files: never restored into.
    NotEmpty,
}

/// The facts a restore is decided on before anything is written: the chosen
/// backup, and what each directory it would write into holds.
#[derive(Debug, Clone)]
pub(crate) struct TargetFacts {
    /// The chosen backup's catalog entry.
    pub(crate) info: BackupInfo,
    /// The PGDATA destination and what it holds.
    pub(crate) destination: (PathBuf, DirState),
    /// Each tablespace of the backup (by oid) with its directory: the
    /// `--tablespace` relocation, else the original location, and what it holds.
    pub(crate) tablespaces: Vec<(String, PathBuf, DirState)>,
    /// `--tablespace` names the backup has no tablespace of.
    pub(crate) unknown_mappings: Vec<String>,
}

/// Where each item of the backup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestorePlan {
    /// Every part to download and extract.
    pub(crate) parts: Vec<PartToFetch>,
    /// Tablespace directories by oid (each gets its `pg_tblspc` link).
    pub(crate) tablespace_dirs: BTreeMap<String, PathBuf>,
    /// Parts of items that are neither PGDATA nor a tablespace of the backup: not
    /// restored (their keys, for a warning).
    pub(crate) skipped: Vec<String>,
}

/// Gathers: what `dir` holds.
fn dir_state(dir: &Path) -> Result<DirState, RestoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => Ok(if rd.next().is_some() {
            DirState::NotEmpty
        } else {
            DirState::Empty
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DirState::Missing),
        Err(source) => Err(RestoreError::Local {
            action: "read",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Judges the target: only a DONE backup, only into empty or new directories
/// (PGDATA first, then each tablespace in the backup's order).
pub(crate) fn judge_target(facts: &TargetFacts) -> Result<(), RestoreError> {
    if facts.info.status != BackupStatus::Done {
        return Err(RestoreError::NotRestorable {
            id: facts.info.backup_id.clone(),
            status: facts.info.status.as_str().to_string(),
        });
    }
    let dirs = std::iter::once((&facts.destination.0, facts.destination.1))
        .chain(facts.tablespaces.iter().map(|(_, p, s)| (p, *s)));
    for (dir, state) in dirs {
        if state == DirState::NotEmpty {
            return Err(RestoreError::NotEmpty(dir.clone()));
        }
    }
    Ok(())
}

/// Judges the parts: a backup with any missing, short or unlisted part is refused
/// before anything is written (the first problem is named); otherwise each part
/// goes to PGDATA or its tablespace's directory.
pub(crate) fn plan_parts(
    facts: &TargetFacts,
    prefix: &str,
    objects: &[ObjectInfo],
) -> Result<RestorePlan, RestoreError> {
    let checked = parts::check(&facts.info, prefix, objects);
    if let Some(problem) = checked.problems.first() {
        return Err(RestoreError::Incomplete {
            id: facts.info.backup_id.clone(),
            problem: problem.clone(),
        });
    }
    let tablespace_dirs: BTreeMap<String, PathBuf> = facts
        .tablespaces
        .iter()
        .map(|(oid, dir, _)| (oid.clone(), dir.clone()))
        .collect();
    let mut plan = RestorePlan {
        parts: Vec::new(),
        tablespace_dirs,
        skipped: Vec::new(),
    };
    for p in checked.parts {
        let target = if p.part.item == DATA_ITEM {
            facts.destination.0.clone()
        } else if let Some(t) = plan.tablespace_dirs.get(&p.part.item) {
            t.clone()
        } else {
            plan.skipped.push(p.key);
            continue;
        };
        plan.parts.push(PartToFetch {
            key: p.key,
            compression: p.part.compression,
            target,
            size: p.size,
        });
    }
    Ok(plan)
}

/// Gathers the chosen backup and the state of every directory it would write to.
async fn gather_target(
    archive: &Archive,
    opts: &RestoreOptions,
) -> Result<TargetFacts, RestoreError> {
    let (catalog, unreadable) = catalog::load(archive).await?;
    if !unreadable.is_empty() {
        tracing::warn!("skipping unreadable backups: {}", unreadable.join("; "));
    }
    let info = catalog::choose(&catalog, &opts.backup, &opts.target)?.clone();
    if info.status != BackupStatus::Done {
        // Nothing more to look at: judge_target refuses it.
        return Ok(TargetFacts {
            info,
            destination: (opts.destination.clone(), DirState::Missing),
            tablespaces: Vec::new(),
            unknown_mappings: Vec::new(),
        });
    }
    let destination = (opts.destination.clone(), dir_state(&opts.destination)?);
    let mut tablespaces = Vec::new();
    if destination.1 != DirState::NotEmpty {
        for ts in info.tablespaces.iter().flatten() {
            let dir = opts
                .tablespace_map
                .iter()
                .find(|(n, _)| *n == ts.name)
                .map(|(_, l)| l.clone())
                .unwrap_or_else(|| PathBuf::from(&ts.location));
            let state = dir_state(&dir)?;
            tablespaces.push((ts.oid.to_string(), dir, state));
            if state == DirState::NotEmpty {
                break;
            }
        }
    }
    let unknown_mappings = opts
        .tablespace_map
        .iter()
        .filter(|(name, _)| !info.tablespaces.iter().flatten().any(|t| &t.name == name))
        .map(|(name, _)| name.clone())
        .collect();
    Ok(TargetFacts {
        info,
        destination,
        tablespaces,
        unknown_mappings,
    })
}

/// Restores a backup; returns its `backup.info`.
pub async fn restore_backup(
    archive: &Archive,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<BackupInfo, RestoreError> {
    let facts = gather_target(archive, opts).await?;
    judge_target(&facts)?;
    let id = facts.info.backup_id.clone();
    for name in &facts.unknown_mappings {
        tracing::warn!("--tablespace {name}: backup {id} has no such tablespace");
    }

    let prefix = archive.layout().backup_dir(&id);
    let objects = archive.list_objects(&prefix).await?;
    let plan = plan_parts(&facts, &prefix, &objects)?;
    for key in &plan.skipped {
        tracing::warn!("skipping {key}: not a tablespace of backup {id}");
    }
    for p in &plan.parts {
        progress.add_total(p.size);
    }

    let results: Vec<Result<(), RestoreError>> = stream::iter(plan.parts)
        .map(|p| async move { fetch_part(archive, p, progress).await })
        .buffer_unordered(opts.jobs.max(1))
        .collect()
        .await;
    for r in results {
        r?;
    }
    // A backup's last data part holds backup_label; without it PostgreSQL would start
    // as if from a crash, on files copied at different times: never usable.
    if std::fs::symlink_metadata(opts.destination.join("backup_label")).is_err() {
        return Err(RestoreError::Incomplete {
            id,
            problem: format!(
                "no tar part of {prefix}/{DATA_ITEM}* holds backup_label, so its last part is missing"
            ),
        });
    }

    // pg_tblspc links and pg_wal, as barman-cloud-restore makes them.
    let create = |path: &Path| {
        std::fs::create_dir_all(path).map_err(|source| RestoreError::Local {
            action: "create",
            path: path.to_path_buf(),
            source,
        })
    };
    let tblspc = opts.destination.join("pg_tblspc");
    create(&tblspc)?;
    for (oid, loc) in &plan.tablespace_dirs {
        let link = tblspc.join(oid);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(loc, &link).map_err(|source| RestoreError::Link {
            link: link.clone(),
            target: loc.clone(),
            source,
        })?;
    }
    let wal = opts.destination.join("pg_wal");
    if std::fs::symlink_metadata(&wal).is_err() {
        create(&wal)?;
    }
    Ok(facts.info)
}

async fn fetch_part(
    archive: &Archive,
    part: PartToFetch,
    progress: &Progress,
) -> Result<(), RestoreError> {
    let key = part.key.clone();
    archive
        .decoded(&part.key, part.compression)
        .counting(progress.done_counter())
        .read(move |decoded| {
            extract::extract_tar(decoded, &part.target)
                .map_err(|source| RestoreError::Extract { key, source })?;
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrelman_core::backup_info::{PartsManifest, Tablespace};

    const PREFIX: &str = "p/s/base/20260101T000000";

    fn info(status: BackupStatus, parts: &[(&str, u64)]) -> BackupInfo {
        let mut i = BackupInfo::new("20260101T000000");
        i.status = status;
        i.tablespaces = Some(vec![Tablespace {
            name: "ts1".into(),
            oid: 16391,
            location: "/orig/ts1".into(),
        }]);
        i.parts = Some(PartsManifest {
            parts: parts.iter().map(|(f, s)| (f.to_string(), *s)).collect(),
            damaged: false,
        });
        i
    }

    fn facts(status: BackupStatus, dest: DirState, ts: DirState) -> TargetFacts {
        TargetFacts {
            info: info(status, PARTS),
            destination: ("/restore/pgdata".into(), dest),
            tablespaces: vec![("16391".into(), "/restore/ts1".into(), ts)],
            unknown_mappings: vec![],
        }
    }

    const PARTS: &[(&str, u64)] = &[
        ("16391.tar.gz", 10),
        ("data.tar.gz", 20),
        ("data_0001.tar.gz", 30),
    ];

    fn listing(files: &[(&str, u64)]) -> Vec<ObjectInfo> {
        files
            .iter()
            .map(|(f, size)| ObjectInfo {
                key: format!("{PREFIX}/{f}"),
                size: *size,
            })
            .collect()
    }

    #[test]
    fn the_target_must_be_a_done_backup_and_empty_directories() {
        use BackupStatus as S;
        use DirState as D;
        // (status, destination, tablespace dir, expected error or None)
        let cases: &[(BackupStatus, DirState, DirState, Option<&str>)] = &[
            (S::Done, D::Missing, D::Missing, None),
            (S::Done, D::Empty, D::Empty, None),
            (S::Done, D::Empty, D::Missing, None),
            (S::Failed, D::Empty, D::Empty, Some("is FAILED, not DONE")),
            (
                S::Started,
                D::Missing,
                D::Missing,
                Some("is STARTED, not DONE"),
            ),
            (
                S::Done,
                D::NotEmpty,
                D::Empty,
                Some("/restore/pgdata is not empty"),
            ),
            (
                S::Done,
                D::Empty,
                D::NotEmpty,
                Some("/restore/ts1 is not empty"),
            ),
            // PGDATA is named first when both hold files.
            (
                S::Done,
                D::NotEmpty,
                D::NotEmpty,
                Some("/restore/pgdata is not empty"),
            ),
        ];
        for (status, dest, ts, expected) in cases {
            let got = judge_target(&facts(status.clone(), *dest, *ts)).err();
            match (expected, &got) {
                (None, None) => {}
                (Some(text), Some(e)) => assert!(e.to_string().contains(text), "{e}"),
                _ => panic!("{status:?} {dest:?} {ts:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn parts_go_to_their_directories_or_the_backup_is_refused() {
        let f = facts(BackupStatus::Done, DirState::Empty, DirState::Empty);
        let all = listing(&[
            ("16391.tar.gz", 10),
            ("backup.info", 1),
            ("data.tar.gz", 20),
            ("data_0001.tar.gz", 30),
        ]);
        let plan = plan_parts(&f, PREFIX, &all).unwrap();
        let routed: Vec<(&str, &str)> = plan
            .parts
            .iter()
            .map(|p| {
                (
                    p.key.rsplit('/').next().unwrap(),
                    p.target.to_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            routed,
            [
                ("16391.tar.gz", "/restore/ts1"),
                ("data.tar.gz", "/restore/pgdata"),
                ("data_0001.tar.gz", "/restore/pgdata"),
            ]
        );
        assert_eq!(plan.parts[0].compression, Compression::Gzip);
        assert_eq!(plan.tablespace_dirs["16391"], PathBuf::from("/restore/ts1"));
        assert!(plan.skipped.is_empty());

        // (listing, expected first problem)
        let cases: &[(&[(&str, u64)], &str)] = &[
            (
                &[("16391.tar.gz", 10), ("data.tar.gz", 20)],
                "missing tar part p/s/base/20260101T000000/data_0001.tar.gz",
            ),
            (
                &[
                    ("16391.tar.gz", 10),
                    ("data.tar.gz", 20),
                    ("data_0001.tar.gz", 29),
                ],
                "data_0001.tar.gz holds 29 bytes, but the backup wrote 30",
            ),
            (
                &[
                    ("16391.tar.gz", 10),
                    ("data.tar.gz", 20),
                    ("data_0001.tar.gz", 30),
                    ("data_0002.tar.gz", 5),
                ],
                "data_0002.tar.gz is not in the backup's part list",
            ),
            (
                &[("data.tar.gz", 20), ("data_0001.tar.gz", 30)],
                "missing tar part p/s/base/20260101T000000/16391.tar.gz",
            ),
        ];
        for (files, problem) in cases {
            let e = plan_parts(&f, PREFIX, &listing(files)).unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with("backup 20260101T000000 is incomplete") && text.contains(problem),
                "{files:?}: {text}"
            );
            assert_eq!(e.class(), ErrorClass::Failed);
        }
    }

    #[test]
    fn a_barman_backup_without_a_part_list_skips_items_it_does_not_know() {
        let mut f = facts(BackupStatus::Done, DirState::Empty, DirState::Empty);
        f.info.parts = None;
        let plan = plan_parts(
            &f,
            PREFIX,
            &listing(&[("16391.tar", 1), ("data.tar", 1), ("99999.tar", 1)]),
        )
        .unwrap();
        assert_eq!(plan.parts.len(), 2);
        assert_eq!(plan.skipped, vec![format!("{PREFIX}/99999.tar")]);
    }

    #[test]
    fn every_restore_error_is_an_operation_failure_class() {
        // barman-cloud-restore exits 1 for each of these: the classes must say so.
        let io = || std::io::Error::other("boom");
        let errors = [
            RestoreError::NotEmpty("/x".into()),
            RestoreError::Choose(ChooseError::UnknownId("x".into())),
            RestoreError::Local {
                action: "read",
                path: "/x".into(),
                source: io(),
            },
            RestoreError::Link {
                link: "/x/pg_tblspc/1".into(),
                target: "/t".into(),
                source: io(),
            },
            RestoreError::Storage(StorageError::Config("bad".into())),
        ];
        for e in errors {
            assert!(
                matches!(
                    e.class(),
                    ErrorClass::NotFound | ErrorClass::Conflict | ErrorClass::Failed
                ),
                "{e}"
            );
        }
        assert_eq!(
            RestoreError::NotEmpty("/x".into()).hint().as_deref(),
            Some("restore into an empty or new directory")
        );
    }
}
