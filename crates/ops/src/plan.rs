//! Pure decisions of a base backup: ids, part sizes, how files are split between
//! parallel workers, and barman's size arguments. Part names and the codecs a
//! backup may use are bucket-format facts: [`barrelman_core::layout::TarPart`] and
//! [`barrelman_core::Compression::tar_suffix`].

/// Splits files (given by size, in walk order) into at most `groups` contiguous runs
/// of about equal bytes. Contiguous runs keep a directory's files together and each
/// run in walk order. Returns index ranges.
pub(crate) fn split_contiguous(sizes: &[u64], groups: usize) -> Vec<std::ops::Range<usize>> {
    let groups = groups.max(1);
    let total: u64 = sizes.iter().sum();
    if sizes.is_empty() {
        return std::iter::once(0..0).collect();
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut acc = 0u64;
    for (i, s) in sizes.iter().enumerate() {
        acc += s;
        let boundary = total * (out.len() as u64 + 1) / groups as u64;
        if acc >= boundary && out.len() + 1 < groups && i + 1 < sizes.len() {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    out.push(start..sizes.len());
    out
}

/// Multipart part size for a tar part of at most `max_archive_size` bytes (plus one
/// file, which may overflow it, up to 1 GiB for a relation segment): the store allows
/// 10,000 parts, and parts are at least 5 MiB (`min_chunk_size` can raise it).
pub fn part_size(max_archive_size: u64, min_chunk_size: Option<u64>) -> usize {
    const MAX_PARTS: u64 = 10_000;
    const MIN: u64 = 5 << 20;
    let needed = (max_archive_size + (1 << 30)).div_ceil(MAX_PARTS);
    needed.max(MIN).max(min_chunk_size.unwrap_or(0)) as usize
}

/// barman's size arguments (its `check_size`): case-insensitive; bytes as an
/// integer; or a number with `KB MB GB TB PB EB` (powers of 1024) or `KiB MiB …`
/// (powers of 1000: barman has them swapped, and users' command lines rely on its
/// meaning); `1234B` is bytes. The result must be at least 1.
pub fn parse_size(s: &str) -> Option<u64> {
    let v = s.to_ascii_uppercase();
    let bytes: f64 = if let Some(rest) = v.strip_suffix('B') {
        let (rest, base) = match rest.strip_suffix('I') {
            Some(r) => (r, 1000f64),
            None => (rest, 1024f64),
        };
        match "KMGTPEZY".find(rest.chars().last()?) {
            Some(power) => {
                let number = &rest[..rest.len() - 1];
                python_float(number)? * base.powi(power as i32 + 1)
            }
            // No multiplier: `1234B` (an `IB` suffix without one is an error).
            None if base == 1024f64 => python_int(rest)? as f64,
            None => return None,
        }
    } else {
        python_int(&v)? as f64
    };
    let n = bytes.trunc();
    (n >= 1.0 && n < u64::MAX as f64).then_some(n as u64)
}

/// Python's `int(str)`: surrounding whitespace, a sign, digits with single `_`.
pub fn python_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// Python's `float(str)` for the plain decimal forms size arguments use.
fn python_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty()
        || !t
            .chars()
            .all(|c| c.is_ascii_digit() || "+-._eE".contains(c))
    {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// True for a backup id (`%Y%m%dT%H%M%S`).
pub(crate) fn is_backup_id(s: &str) -> bool {
    s.len() == 15
        && s.as_bytes()[8] == b'T'
        && s.bytes()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit())
}

/// A backup name that is reserved or looks like a backup id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid backup name '{0}': it must not look like a backup id or be one of latest, last, oldest, first, last-failed, latest-full, last-full, auto"
)]
pub struct InvalidBackupName(pub String);

impl barrelman_core::Classified for InvalidBackupName {
    fn class(&self) -> barrelman_core::ErrorClass {
        barrelman_core::ErrorClass::Input
    }
}

/// Names a backup may not have: ids and barman's shortcuts.
pub fn check_backup_name(name: &str) -> Result<(), InvalidBackupName> {
    const RESERVED: [&str; 9] = [
        "latest",
        "last",
        "oldest",
        "first",
        "last-failed",
        "latest-full",
        "last-full",
        "auto",
        "",
    ];
    if is_backup_id(name) || RESERVED.contains(&name) {
        return Err(InvalidBackupName(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_by_bytes_in_order() {
        assert_eq!(split_contiguous(&[10, 10, 10, 10], 2), vec![0..2, 2..4]);
        assert_eq!(split_contiguous(&[100, 1, 1, 1], 2), vec![0..1, 1..4]);
        assert_eq!(split_contiguous(&[5], 4), vec![0..1]);
        assert_eq!(split_contiguous(&[], 3), vec![0..0]);
        let r = split_contiguous(&[1; 10], 3);
        assert_eq!(r.len(), 3);
        assert_eq!(r.last().unwrap().end, 10);
    }

    #[test]
    fn sizes_follow_barman() {
        assert_eq!(parse_size("100GB"), Some(100 << 30));
        assert_eq!(parse_size("8MB"), Some(8 << 20));
        assert_eq!(parse_size("1MiB"), Some(1_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("10XB"), None);
        assert_eq!(parse_size("1.5kb"), Some(1536));
        assert_eq!(parse_size("1234B"), Some(1234));
        assert_eq!(parse_size("2KIB"), Some(2000));
        assert_eq!(parse_size("12IB"), None);
        assert_eq!(parse_size(" 1_000 "), Some(1000));
        assert_eq!(parse_size("1.5"), None);
        assert_eq!(parse_size("abc"), None);
        assert_eq!(parse_size("-5MB"), None);
        assert_eq!(parse_size("B"), None);
        assert_eq!(python_int("+7"), Some(7));
        assert_eq!(python_int("1__0"), None);
        let p = part_size(100 << 30, None);
        assert!(p as u64 * 10_000 >= (101 << 30) && p < 12 << 20, "{p}");
        assert_eq!(part_size(1 << 20, None), 5 << 20);
    }

    #[test]
    fn names_and_ids() {
        assert!(is_backup_id("20261124T201625"));
        assert!(!is_backup_id("backup-20261124"));
        assert!(check_backup_name("backup-20261124201625").is_ok());
        assert!(check_backup_name("last").is_err());
        assert!(check_backup_name("20261124T201625").is_err());
    }
}
