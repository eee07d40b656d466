//! barman-cloud's argparse `type=` checks as clap value parsers. A value barman
//! refuses while parsing its command line is refused here while parsing too, so it
//! exits 3 before any connection is made, `-t` included, as barman does.

use barrelman_core::LevelRequest;
use barrelman_ops::plan::{parse_size, python_int};

/// `check_positive`: an integer of at least 1.
pub fn positive(s: &str) -> Result<u32, String> {
    match python_int(s) {
        Some(n) if n >= 1 => u32::try_from(n).map_err(|_| format!("'{s}' is too large")),
        Some(_) => Err(format!("'{s}' is not a valid positive integer")),
        None => Err(format!("'{s}' is not a valid input")),
    }
}

/// `check_non_negative`: an integer of at least 0.
pub fn non_negative(s: &str) -> Result<u32, String> {
    match python_int(s) {
        Some(n) if n >= 0 => u32::try_from(n).map_err(|_| format!("'{s}' is too large")),
        _ => Err(format!("'{s}' is not a valid non negative integer")),
    }
}

/// argparse's `type=int`.
pub fn int(s: &str) -> Result<i64, String> {
    python_int(s).ok_or_else(|| format!("invalid int value: '{s}'"))
}

/// `check_tli`: `current`, `latest` or a positive timeline number.
pub fn timeline(s: &str) -> Result<String, String> {
    match s {
        "current" | "latest" => Ok(s.to_string()),
        _ => positive(s).map(|n| n.to_string()),
    }
}

/// `check_backup_name`: not a backup id and not a reserved word.
pub fn backup_name(s: &str) -> Result<String, String> {
    barrelman_ops::plan::check_backup_name(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// `check_size`: bytes, or a number with a unit (see [`parse_size`]).
pub fn size(s: &str) -> Result<u64, String> {
    parse_size(s).ok_or_else(|| format!("'{}' is not a valid size string", s.to_uppercase()))
}

/// `parse_compression_level`: `low`, `medium`, `high` or an integer.
pub fn compression_level(s: &str) -> Result<LevelRequest, String> {
    let lower = s.to_lowercase();
    let digits = lower.trim_start_matches('-');
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return lower
            .parse::<i32>()
            .map(LevelRequest::Exact)
            .map_err(|_| format!("'{s}' is out of range"));
    }
    LevelRequest::named(&lower).ok_or_else(|| {
        format!(
            "Invalid value: '{lower}' (must be one in [low, medium, high] or an acceptable integer)"
        )
    })
}

/// `--tag`/`--history-tag` (`check_tag`): `KEY,VALUE` split at the first comma, both
/// trimmed; AWS's rules for characters and lengths; no reserved `aws:` key prefix.
pub fn tag(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once(',')
        .ok_or_else(|| "Invalid tag format. Expected 'key,value'.".to_string())?;
    let (key, value) = (key.trim(), value.trim());
    let allowed = |t: &str| {
        t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
    };
    let key_len = key.chars().count();
    if !(1..=128).contains(&key_len) {
        return Err("Tag key must be between 1 and 128 characters.".into());
    }
    if key.to_lowercase().starts_with("aws:") {
        return Err("Tag key cannot start with the reserved prefix 'aws:'.".into());
    }
    if !allowed(key) {
        return Err(
            "Tag key contains invalid characters. Allowed are letters, numbers, spaces, and _.:/=+-@"
                .into(),
        );
    }
    if value.chars().count() > 256 {
        return Err("Tag value must be 256 characters or less.".into());
    }
    if !allowed(value) {
        return Err(
            "Tag value contains invalid characters. Allowed are letters, numbers, spaces, and _.:/=+-@"
                .into(),
        );
    }
    Ok((key.to_string(), value.to_string()))
}

/// The deprecated greedy `--tags`/`--history-tags`: one CSV record of exactly two
/// fields (quotes allowed, nothing else checked), as barman reads them.
pub fn legacy_tag(s: &str) -> Result<(String, String), String> {
    match <[String; 2]>::try_from(csv_record(s)) {
        Ok([k, v]) => Ok((k, v)),
        Err(_) => Err(format!("Invalid tag format: {s}")),
    }
}

/// The fields of one line in Python's default CSV dialect (`"` quotes, `""` inside
/// quotes, lenient about stray quotes and an unterminated quoted field).
fn csv_record(s: &str) -> Vec<String> {
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    if s.is_empty() {
        return Vec::new();
    }
    let (mut fields, mut cur, mut state) = (Vec::new(), String::new(), State::FieldStart);
    for c in s.chars() {
        state = match (state, c) {
            (State::FieldStart, '"') => State::Quoted,
            (State::FieldStart | State::Unquoted | State::QuoteInQuoted, ',') => {
                fields.push(std::mem::take(&mut cur));
                State::FieldStart
            }
            (State::Quoted, '"') => State::QuoteInQuoted,
            (State::Quoted, c) => {
                cur.push(c);
                State::Quoted
            }
            (State::QuoteInQuoted, '"') => {
                cur.push('"');
                State::Quoted
            }
            (_, c) => {
                cur.push(c);
                State::Unquoted
            }
        };
    }
    fields.push(cur);
    fields
}

/// `check_aws_expiration_date_format`: `%Y-%m-%dT%H:%M:%S.%fZ`.
pub fn expiration_date(s: &str) -> Result<String, String> {
    let fraction_ok = s
        .strip_suffix('Z')
        .and_then(|t| t.rsplit_once('.'))
        .is_some_and(|(_, f)| (1..=6).contains(&f.len()) && f.chars().all(|c| c.is_ascii_digit()));
    match chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.fZ") {
        Ok(_) if fraction_ok => Ok(s.to_string()),
        _ => Err(format!(
            "Invalid date: '{s}'. Expected format is '%Y-%m-%dT%H:%M:%S.%fZ'."
        )),
    }
}

/// `check_aws_snapshot_lock_duration_range`: 1 to 36,500 days.
pub fn lock_duration_days(s: &str) -> Result<u32, String> {
    in_range(
        s,
        1,
        36_500,
        "aws_snapshot_lock_duration must be between 1 and 36,500 days.",
    )
}

/// `check_aws_snapshot_lock_cool_off_period_range`: 1 to 72 hours.
pub fn cool_off_hours(s: &str) -> Result<u32, String> {
    in_range(
        s,
        1,
        72,
        "aws_snapshot_lock_cool_off_period must be between 1 and 72 hours.",
    )
}

fn in_range(s: &str, low: i64, high: i64, msg: &str) -> Result<u32, String> {
    match python_int(s) {
        Some(n) if (low..=high).contains(&n) => Ok(n as u32),
        Some(_) => Err(msg.to_string()),
        None => Err(format!("'{s}' is not a valid input")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_tags_follow_pythons_reader() {
        let t = |s: &str| legacy_tag(s).ok();
        let pair = |k: &str, v: &str| Some((k.to_string(), v.to_string()));
        assert_eq!(t("a,b"), pair("a", "b"));
        assert_eq!(t("\"a,b\",c"), pair("a,b", "c"));
        assert_eq!(t("a,\"b"), pair("a", "b"));
        assert_eq!(t("a\"x,b"), pair("a\"x", "b"));
        assert_eq!(t("\"a\"x,b"), pair("ax", "b"));
        assert_eq!(t("\"a\"\"q\",b"), pair("a\"q", "b"));
        assert_eq!(t(","), pair("", ""));
        assert_eq!(t(" a , b "), pair(" a ", " b "));
        assert_eq!(t("a,"), pair("a", ""));
        assert_eq!(t("a,b,c"), None);
        assert_eq!(t(""), None);
        assert_eq!(t("\"a,b"), None);
    }

    #[test]
    fn checked_tags_follow_barman() {
        assert_eq!(tag(" k , v,w ").unwrap_err(), tag("k,v,w").unwrap_err());
        assert_eq!(tag("k, v ").unwrap(), ("k".into(), "v".into()));
        assert!(tag("AWS:x,y").is_err());
        assert!(tag(",y").is_err());
        assert!(tag("novalue").is_err());
        assert!(tag(&format!("k,{}", "v".repeat(257))).is_err());
        assert!(tag("k,a+b=c@d:e/f.g_h-i").is_ok());
        assert!(tag("k,é").is_err());
    }

    #[test]
    fn numbers_levels_and_dates() {
        assert_eq!(positive(" 3 "), Ok(3));
        assert!(positive("0").is_err() && positive("x").is_err());
        assert_eq!(non_negative("0"), Ok(0));
        assert!(non_negative("-1").is_err());
        assert_eq!(timeline("latest").unwrap(), "latest");
        assert!(timeline("abc").is_err());
        assert_eq!(compression_level("HIGH"), Ok(LevelRequest::High));
        assert_eq!(compression_level("-5"), Ok(LevelRequest::Exact(-5)));
        assert!(compression_level("x").is_err() && compression_level("1.5").is_err());
        assert!(expiration_date("2099-01-01T00:00:00.000Z").is_ok());
        assert!(expiration_date("2099-01-01T00:00:00Z").is_err());
        assert!(expiration_date("2099-01-01").is_err());
        assert_eq!(lock_duration_days("36500"), Ok(36500));
        assert!(lock_duration_days("36501").is_err());
        assert!(cool_off_hours("0").is_err());
        assert_eq!(size("1mb"), Ok(1 << 20));
    }
}
