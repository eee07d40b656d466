//! The backups of one server: `base/<id>/backup.info` files, read with one listing
//! and one small GET per backup, and the choice of a backup by id, name, shortcut
//! or recovery target.

use barrelman_core::backup_info::{BackupInfo, BackupStatus};
use barrelman_core::layout;
use barrelman_core::lsn::Lsn;
use barrelman_storage::{Archive, StorageError};
use chrono::{DateTime, FixedOffset};
use futures::stream::{self, StreamExt, TryStreamExt};

/// Reads every backup of the server, sorted by id. Directories without a
/// `backup.info` are skipped (a backup in progress before barman 3.19 has none);
/// unreadable ones are reported in the second list.
pub async fn load(archive: &Archive) -> Result<(Vec<BackupInfo>, Vec<String>), StorageError> {
    let ids = archive.list_dirs(&archive.layout().base_prefix()).await?;
    let loaded: Vec<(String, Option<bytes::Bytes>)> = stream::iter(ids)
        .map(|id| {
            let key = archive.layout().backup_info_key(&id);
            async move { archive.get_small(&key).await.map(|b| (id, b)) }
        })
        .buffered(16)
        .try_collect()
        .await?;
    let mut backups = Vec::new();
    let mut unreadable = Vec::new();
    for (id, body) in loaded {
        let Some(body) = body else { continue };
        match std::str::from_utf8(&body)
            .map_err(|e| e.to_string())
            .and_then(|t| BackupInfo::parse(&id, t).map_err(|e| e.to_string()))
        {
            Ok(info) => backups.push(info),
            Err(e) => unreadable.push(format!("{id}: {e}")),
        }
    }
    backups.sort_by(|a, b| a.backup_id.cmp(&b.backup_id));
    Ok((backups, unreadable))
}

/// Every object under `base/`, by backup id, from one listing: what the catalog
/// commands need beyond `backup.info` (parts, sizes, keep annotations).
pub type BaseObjects = std::collections::BTreeMap<String, Vec<barrelman_storage::ObjectInfo>>;

/// Lists `base/` once into [`BaseObjects`].
pub async fn base_objects(archive: &Archive) -> Result<BaseObjects, StorageError> {
    let layout = archive.layout();
    let mut out = BaseObjects::new();
    for o in archive.list_objects(&layout.base_prefix()).await? {
        if let Some((id, _)) = layout.backup_object(&o.key) {
            out.entry(id.to_string()).or_default().push(o);
        }
    }
    Ok(out)
}

/// Keep annotations (`base/<id>/annotations/keep`, body `full` or `standalone`), by
/// backup id: one small GET per annotation found in `objects`.
pub async fn keep_targets(
    archive: &Archive,
    objects: &BaseObjects,
) -> Result<std::collections::BTreeMap<String, String>, StorageError> {
    let mut out = std::collections::BTreeMap::new();
    for (id, objs) in objects {
        for o in objs.iter().filter(|o| layout::is_keep_marker(&o.key)) {
            if let Some(body) = archive.get_small(&o.key).await? {
                let text = String::from_utf8_lossy(&body);
                let target = text.lines().next().unwrap_or("").trim().to_string();
                if !target.is_empty() {
                    out.insert(id.clone(), target);
                }
            }
        }
    }
    Ok(out)
}

/// The key of a backup's keep annotation.
pub fn keep_key(archive: &Archive, backup_id: &str) -> String {
    archive.layout().keep_key(backup_id)
}

/// Total stored bytes of each backup (its tar parts and `backup.info`), by id.
pub fn stored_sizes(objects: &BaseObjects) -> std::collections::BTreeMap<String, u64> {
    objects
        .iter()
        .map(|(id, objs)| (id.clone(), objs.iter().map(|o| o.size).sum()))
        .collect()
}

/// How to pick a backup for `auto`.
#[derive(Debug, Clone, Default)]
pub struct TargetChoice {
    /// The recovery target time: the backup must end before it.
    pub time: Option<DateTime<FixedOffset>>,
    /// The recovery target LSN: the backup must end at or before it.
    pub lsn: Option<Lsn>,
    /// A timeline number; `None` for any (`current`/`latest`).
    pub tli: Option<u32>,
}

/// Why no backup could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ChooseError {
    /// No backup has this id.
    #[error("no backup '{0}' in the catalog; list them with `barrelman list` or barman-cloud-backup-list")]
    UnknownId(String),
    /// No backup has this name.
    #[error("no backup named '{0}' in the catalog; list the names with `barrelman list` or barman-cloud-backup-list")]
    UnknownName(String),
    /// No DONE backup fits the shortcut or the target (described in words).
    #[error("no backup in the catalog matches {0}")]
    NoCandidate(String),
}

impl barrelman_core::Classified for ChooseError {
    fn class(&self) -> barrelman_core::ErrorClass {
        barrelman_core::ErrorClass::NotFound
    }

    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        Some(std::borrow::Cow::Borrowed(
            "list the backups with `barrelman list` or barman-cloud-backup-list",
        ))
    }
}

fn usable(b: &BackupInfo) -> bool {
    b.status == BackupStatus::Done
}

/// Picks a backup by id, name, shortcut (`first`/`oldest`, `last`/`latest`,
/// `last-failed`) or `auto` with a target. Shortcuts and `auto` consider DONE
/// backups only (a FAILED one can never be restored; barman 3.19.1 crashes on them).
pub fn choose<'a>(
    catalog: &'a [BackupInfo],
    wanted: &str,
    target: &TargetChoice,
) -> Result<&'a BackupInfo, ChooseError> {
    let done = || catalog.iter().filter(|b| usable(b));
    match wanted {
        "first" | "oldest" => done()
            .next()
            .ok_or_else(|| ChooseError::NoCandidate("first".into())),
        "last" | "latest" => done()
            .next_back()
            .ok_or_else(|| ChooseError::NoCandidate("last".into())),
        "last-failed" => catalog
            .iter()
            .rfind(|b| b.status == BackupStatus::Failed)
            .ok_or_else(|| ChooseError::NoCandidate("last-failed".into())),
        "auto" => {
            let fits = |b: &&BackupInfo| {
                let time_ok = match (&target.time, &b.end_time) {
                    (Some(t), Some(end)) => end <= t,
                    (Some(_), None) => false,
                    (None, _) => true,
                };
                let lsn_ok = match (
                    &target.lsn,
                    b.end_xlog.as_deref().and_then(|x| x.parse::<Lsn>().ok()),
                ) {
                    (Some(t), Some(end)) => end <= *t,
                    (Some(_), None) => false,
                    (None, _) => true,
                };
                let tli_ok = target.tli.is_none_or(|t| b.timeline == Some(t));
                time_ok && lsn_ok && tli_ok
            };
            done()
                .rfind(fits)
                .ok_or_else(|| ChooseError::NoCandidate(describe(target)))
        }
        id if crate::plan::is_backup_id(id) => catalog
            .iter()
            .find(|b| b.backup_id == id)
            .ok_or_else(|| ChooseError::UnknownId(id.to_string())),
        name => catalog
            .iter()
            .rfind(|b| b.backup_name.as_deref() == Some(name))
            .ok_or_else(|| ChooseError::UnknownName(name.to_string())),
    }
}

fn describe(t: &TargetChoice) -> String {
    let mut parts = Vec::new();
    if let Some(time) = &t.time {
        parts.push(format!("ending before {time}"));
    }
    if let Some(l) = &t.lsn {
        parts.push(format!("ending before LSN {l}"));
    }
    if let Some(tli) = t.tli {
        parts.push(format!("on timeline {tli}"));
    }
    if parts.is_empty() {
        "any target: there is no DONE backup".into()
    } else {
        format!("the target (a DONE backup {})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrelman_core::backup_info::parse_time;

    fn b(id: &str, status: BackupStatus, end: Option<&str>, name: Option<&str>) -> BackupInfo {
        let mut i = BackupInfo::new(id);
        i.status = status;
        i.end_time = end.map(|e| parse_time(e).unwrap());
        i.end_xlog = Some("0/5000000".into());
        i.timeline = Some(1);
        i.backup_name = name.map(Into::into);
        i
    }

    #[test]
    fn chooses_like_barman_but_only_restorable_backups() {
        let cat = vec![
            b(
                "20260101T000000",
                BackupStatus::Done,
                Some("2026-01-01 00:10:00+00:00"),
                Some("one"),
            ),
            b(
                "20260102T000000",
                BackupStatus::Done,
                Some("2026-01-02 00:10:00+00:00"),
                None,
            ),
            b("20260103T000000", BackupStatus::Failed, None, None),
        ];
        let none = TargetChoice::default();
        assert_eq!(
            choose(&cat, "first", &none).unwrap().backup_id,
            "20260101T000000"
        );
        assert_eq!(
            choose(&cat, "latest", &none).unwrap().backup_id,
            "20260102T000000"
        );
        assert_eq!(
            choose(&cat, "last-failed", &none).unwrap().backup_id,
            "20260103T000000"
        );
        assert_eq!(
            choose(&cat, "one", &none).unwrap().backup_id,
            "20260101T000000"
        );
        assert!(matches!(
            choose(&cat, "two", &none),
            Err(ChooseError::UnknownName(_))
        ));
        assert!(matches!(
            choose(&cat, "20990101T000000", &none),
            Err(ChooseError::UnknownId(_))
        ));
        let t = TargetChoice {
            time: Some(parse_time("2026-01-01 12:00:00+00:00").unwrap()),
            ..Default::default()
        };
        assert_eq!(
            choose(&cat, "auto", &t).unwrap().backup_id,
            "20260101T000000"
        );
        let early = TargetChoice {
            time: Some(parse_time("2025-12-31 00:00:00+00:00").unwrap()),
            ..Default::default()
        };
        assert!(choose(&cat, "auto", &early).is_err());
        let tl2 = TargetChoice {
            tli: Some(2),
            ..Default::default()
        };
        assert!(choose(&cat, "auto", &tl2).is_err());
    }
}
