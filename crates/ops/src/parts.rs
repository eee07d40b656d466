//! The set of tar parts a backup consists of, and the check that every one of them
//! is stored. barrelman's backups list their parts with sizes in `backup.info`
//! ([`PartsManifest`](barrelman_core::backup_info::PartsManifest)); for backups barman wrote, each item's part numbers must run
//! without a gap from 0 (the part holding `backup_label`, the last one, is checked
//! by reading: `verify --deep` and `restore`).

use barrelman_core::backup_info::BackupInfo;
use barrelman_core::layout::{TarPart, BACKUP_INFO, DATA_ITEM};
use barrelman_storage::ObjectInfo;
use std::collections::BTreeMap;

/// One stored tar part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredPart {
    /// The part's key.
    pub(crate) key: String,
    /// What its name says: item, part number, codec.
    pub(crate) part: TarPart,
    /// Its stored size.
    pub(crate) size: u64,
}

/// The parts a restore reads (item by item, by part number) and what is wrong.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartsCheck {
    /// The parts found, sorted by item and part number.
    pub(crate) parts: Vec<StoredPart>,
    /// Empty when the backup's parts are complete; each names the object.
    pub(crate) problems: Vec<String>,
}

/// Checks the tar parts of `info` against a listing of its directory `prefix`
/// (`<path>/<server>/base/<id>`).
pub(crate) fn check(info: &BackupInfo, prefix: &str, objects: &[ObjectInfo]) -> PartsCheck {
    let mut found: BTreeMap<String, StoredPart> = BTreeMap::new();
    for o in objects {
        let file = o.key.rsplit('/').next().unwrap_or_default();
        if let Some(part) = TarPart::parse(file) {
            found.insert(
                file.to_string(),
                StoredPart {
                    key: o.key.clone(),
                    part,
                    size: o.size,
                },
            );
        }
    }
    let mut needed = vec![DATA_ITEM.to_string()];
    needed.extend(info.tablespaces.iter().flatten().map(|t| t.oid.to_string()));
    let mut out = PartsCheck::default();
    let missing =
        |item: &str, n: usize| format!("missing tar part {prefix}/{}.tar*", TarPart::stem(item, n));
    match &info.parts {
        Some(m) if m.damaged => out.problems.push(format!(
            "the part list in {prefix}/{BACKUP_INFO} is damaged (a barrelman-part line was lost or edited), so the backup cannot be proven complete"
        )),
        Some(m) => {
            for (file, size) in &m.parts {
                match found.remove(file) {
                    None => out.problems.push(format!("missing tar part {prefix}/{file}")),
                    Some(p) if p.size != *size => out.problems.push(format!(
                        "tar part {} holds {} bytes, but the backup wrote {size}",
                        p.key, p.size
                    )),
                    Some(p) => out.parts.push(p),
                }
            }
            for item in &needed {
                let listed = m.parts.iter().any(|(f, _)| {
                    TarPart::parse(f).is_some_and(|p| p.item == *item && p.index == 0)
                });
                if !listed {
                    out.problems.push(missing(item, 0));
                }
            }
            for p in found.values() {
                out.problems.push(format!(
                    "tar part {} is not in the backup's part list in backup.info: it belongs to no finished backup",
                    p.key
                ));
            }
        }
        None => {
            for item in &needed {
                let mut indices: Vec<usize> = found
                    .values()
                    .filter(|p| p.part.item == *item)
                    .map(|p| p.part.index)
                    .collect();
                indices.sort_unstable();
                indices.dedup();
                if indices.first() != Some(&0) {
                    out.problems.push(missing(item, 0));
                }
                let last = indices.last().copied().unwrap_or(0);
                for n in 1..last {
                    if indices.binary_search(&n).is_err() {
                        out.problems.push(missing(item, n));
                    }
                }
            }
            out.parts = found.into_values().collect();
        }
    }
    out.parts
        .sort_by(|a, b| (&a.part.item, a.part.index).cmp(&(&b.part.item, b.part.index)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrelman_core::backup_info::{PartsManifest, Tablespace};

    fn listing(files: &[(&str, u64)]) -> Vec<ObjectInfo> {
        files
            .iter()
            .map(|(f, size)| ObjectInfo {
                key: format!("p/s/base/20260101T000000/{f}"),
                size: *size,
            })
            .collect()
    }

    fn info(parts: Option<&[(&str, u64)]>) -> BackupInfo {
        let mut i = BackupInfo::new("20260101T000000");
        i.tablespaces = Some(vec![Tablespace {
            name: "ts1".into(),
            oid: 16391,
            location: "/ts".into(),
        }]);
        i.parts = parts.map(|p| PartsManifest {
            parts: p.iter().map(|(f, s)| (f.to_string(), *s)).collect(),
            damaged: false,
        });
        i
    }

    const PREFIX: &str = "p/s/base/20260101T000000";

    #[test]
    fn a_recorded_backup_needs_every_recorded_part_at_its_size() {
        let parts: &[(&str, u64)] = &[
            ("16391.tar.gz", 10),
            ("data.tar.gz", 20),
            ("data_0001.tar.gz", 30),
            ("data_0002.tar.gz", 40),
        ];
        let all = listing(&[
            ("16391.tar.gz", 10),
            ("backup.info", 1),
            ("data.tar.gz", 20),
            ("data_0001.tar.gz", 30),
            ("data_0002.tar.gz", 40),
        ]);
        let ok = check(&info(Some(parts)), PREFIX, &all);
        assert!(ok.problems.is_empty(), "{:?}", ok.problems);
        assert_eq!(ok.parts.len(), 4);
        assert_eq!(ok.parts[1].key, format!("{PREFIX}/data.tar.gz"));

        // The last data part (the one with backup_label) gone: named.
        let c = check(&info(Some(parts)), PREFIX, &all[..4]);
        assert_eq!(
            c.problems,
            vec![format!("missing tar part {PREFIX}/data_0002.tar.gz")]
        );
        // A part cut short is named with both sizes.
        let mut short = all.clone();
        short[3].size = 29;
        let c = check(&info(Some(parts)), PREFIX, &short);
        assert!(c.problems[0].contains("holds 29 bytes, but the backup wrote 30"));
        // A stray part is not silently extracted.
        let mut extra = all.clone();
        extra.push(listing(&[("data_0003.tar.gz", 5)]).remove(0));
        let c = check(&info(Some(parts)), PREFIX, &extra);
        assert!(c.problems[0].contains("data_0003.tar.gz is not in the backup's part list"));
        // A damaged list proves nothing.
        let mut damaged = info(Some(parts));
        damaged.parts.as_mut().unwrap().damaged = true;
        assert!(check(&damaged, PREFIX, &all).problems[0].contains("damaged"));
    }

    #[test]
    fn a_barman_backup_needs_part_numbers_without_gaps() {
        let all = listing(&[
            ("16391.tar", 1),
            ("backup.info", 1),
            ("data.tar", 1),
            ("data_0001.tar", 1),
            ("data_0002.tar", 1),
        ]);
        assert!(check(&info(None), PREFIX, &all).problems.is_empty());
        let gap: Vec<ObjectInfo> = all
            .iter()
            .filter(|o| !o.key.ends_with("data_0001.tar"))
            .cloned()
            .collect();
        assert_eq!(
            check(&info(None), PREFIX, &gap).problems,
            vec![format!("missing tar part {PREFIX}/data_0001.tar*")]
        );
        let no_ts = listing(&[("data.tar", 1)]);
        assert_eq!(
            check(&info(None), PREFIX, &no_ts).problems,
            vec![format!("missing tar part {PREFIX}/16391.tar*")]
        );
    }
}
