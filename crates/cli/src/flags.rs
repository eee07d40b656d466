//! What both faces make of their flags once clap has parsed them: object tags,
//! the compression and its level, sizes, the spool, restore targets. Value parsers
//! clap calls while parsing are in `argtypes`; these run after, where the value may
//! also come from an ObjectStore manifest or the environment.

use crate::argtypes;
use crate::errors::InputError;
use crate::target::Target;
use anyhow::Result;
use barrelman_core::{Compression, LevelRequest};
use barrelman_ops::catalog::TargetChoice;
use barrelman_postgres::session::ConnectOptions;
use std::path::PathBuf;
use std::time::Duration;

/// `--tag KEY,VALUE` values with barman's checks (an invalid one is an input error).
pub(crate) fn parse_tags(tag: &[String]) -> Result<Vec<(String, String)>> {
    tag.iter()
        .map(|t| argtypes::tag(t).map_err(|e| InputError(format!("invalid tag '{t}': {e}")).into()))
        .collect()
}

/// `--tag` values followed by the deprecated `--tags` ones (argparse keeps them apart).
pub(crate) fn all_tags(
    tag: &[(String, String)],
    tags: Option<&[(String, String)]>,
) -> Vec<(String, String)> {
    tag.iter()
        .chain(tags.unwrap_or_default())
        .cloned()
        .collect()
}

/// The manifest's `tags` followed by the `--tag` flags.
pub(crate) fn manifest_tags(target: &Target, flags: &[String]) -> Result<Vec<(String, String)>> {
    let mut tags: Vec<(String, String)> = target
        .manifest
        .as_ref()
        .map(|m| m.spec.configuration.tags.clone().into_iter().collect())
        .unwrap_or_default();
    tags.extend(parse_tags(flags)?);
    Ok(tags)
}

/// The compression of barman's mutually exclusive switches (`-z`, `-j`, `--xz`, …):
/// the one given, else none.
pub(crate) fn chosen_compression(switches: &[(bool, Compression)]) -> Compression {
    switches
        .iter()
        .find_map(|(on, c)| on.then_some(*c))
        .unwrap_or(Compression::None)
}

/// The `--compression` flag, else the manifest's setting, else none.
pub(crate) fn compression_choice(
    flag: Option<&str>,
    manifest: Option<&str>,
) -> Result<Compression> {
    match flag.or(manifest) {
        None => Ok(Compression::None),
        Some(c) => Ok(c.parse::<Compression>()?),
    }
}

/// `--compression-level` with barman's clamping (and its warning).
pub(crate) fn resolve_level(compression: Compression, given: Option<&str>) -> Result<Option<i32>> {
    let Some(given) = given else { return Ok(None) };
    let req = argtypes::compression_level(given).map_err(InputError)?;
    Ok(Some(clamp_level(compression, req)))
}

/// The level `req` asks of `compression`, clamped into its range with barman's warning.
pub(crate) fn clamp_level(compression: Compression, req: LevelRequest) -> i32 {
    let (level, clamped) = compression.level(req);
    if clamped {
        tracing::warn!(
            "compression level {req:?} is out of range for {compression}: using {level}"
        );
    }
    level
}

/// A size argument with barman's units; an invalid one is an input error (exit 3).
pub(crate) fn size_arg(flag: &str, value: &str) -> Result<u64> {
    barrelman_ops::plan::parse_size(value).ok_or_else(|| {
        InputError(format!(
            "invalid {flag} '{value}': use bytes or a number with KB, MB, GB, TB"
        ))
        .into()
    })
}

/// Where PostgreSQL is, from the connection flags; what they leave unset comes from
/// the libpq environment captured at start.
pub(crate) fn postgres(
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    dbname: Option<String>,
    application_name: Option<String>,
) -> ConnectOptions {
    ConnectOptions {
        host,
        port,
        user,
        dbname,
        application_name,
        environment: crate::environment::captured().postgres.clone(),
    }
}

/// The spool directory: the flag, else `$SPOOL_DIRECTORY`, else barman's default.
pub(crate) fn default_spool(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| std::env::var_os("SPOOL_DIRECTORY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/tmp/walrestore"))
}

/// `auto` needs the targets in a comparable form.
pub(crate) fn target_choice(
    time: Option<&str>,
    lsn: Option<&str>,
    tli: Option<&str>,
) -> Result<TargetChoice> {
    let time = time
        .map(|t| {
            barrelman_core::backup_info::parse_time(t)
                .map_err(|e| InputError(format!("invalid --target-time '{t}': {e}")))
        })
        .transpose()?;
    let lsn = lsn
        .map(|l| l.parse::<barrelman_core::lsn::Lsn>())
        .transpose()?;
    let tli = match tli {
        None | Some("current") | Some("latest") => None,
        Some(n) => Some(n.parse::<u32>().map_err(|_| {
            InputError(format!(
                "invalid --target-tli '{n}': use a number, current or latest"
            ))
        })?),
    };
    Ok(TargetChoice { time, lsn, tli })
}

/// `NAME:LOCATION` pairs of `--tablespace`.
pub(crate) fn tablespace_map(rules: &[String]) -> Result<Vec<(String, std::path::PathBuf)>> {
    rules
        .iter()
        .map(|r| {
            let (n, l) = r
                .split_once(':')
                .filter(|(n, l)| !n.is_empty() && !l.is_empty())
                .ok_or_else(|| {
                    InputError(format!("invalid --tablespace '{r}': use NAME:LOCATION"))
                })?;
            Ok((n.to_string(), std::path::PathBuf::from(l)))
        })
        .collect()
}

/// How long a backup waits for its WAL: the flag, else `BARRELMAN_WAL_WAIT` (seconds;
/// also for the barman-cloud-backup name, which has no such flag), else 120 s.
pub(crate) fn wal_wait(flag: Option<u64>) -> Duration {
    let secs = flag
        .or_else(|| {
            std::env::var("BARRELMAN_WAL_WAIT")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(120);
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn tags_keep_their_order_and_bad_ones_are_input_errors() {
        let tag = [pair("a", "1")];
        let tags = [pair("b", "2"), pair("a", "3")];
        assert_eq!(
            all_tags(&tag, Some(&tags)),
            vec![pair("a", "1"), pair("b", "2"), pair("a", "3")]
        );
        assert_eq!(all_tags(&tag, None), vec![pair("a", "1")]);
        assert_eq!(parse_tags(&["k, v ".into()]).unwrap(), vec![pair("k", "v")]);
        let err = parse_tags(&["novalue".into()]).unwrap_err();
        assert!(err.downcast_ref::<InputError>().is_some());
        assert_eq!(
            err.to_string(),
            "invalid tag 'novalue': Invalid tag format. Expected 'key,value'."
        );
    }

    #[test]
    fn compression_comes_from_the_switch_the_flag_or_the_manifest() {
        assert_eq!(chosen_compression(&[]), Compression::None);
        assert_eq!(
            chosen_compression(&[(false, Compression::Gzip), (true, Compression::Lz4)]),
            Compression::Lz4
        );
        assert_eq!(compression_choice(None, None).unwrap(), Compression::None);
        assert_eq!(
            compression_choice(None, Some("zstd")).unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            compression_choice(Some("gzip"), Some("zstd")).unwrap(),
            Compression::Gzip
        );
        assert!(compression_choice(Some("rar"), None).is_err());
    }

    #[test]
    fn levels_are_clamped_into_the_codecs_range() {
        assert_eq!(resolve_level(Compression::Gzip, None).unwrap(), None);
        assert_eq!(
            resolve_level(Compression::Gzip, Some("5")).unwrap(),
            Some(5)
        );
        assert_eq!(
            resolve_level(Compression::Gzip, Some("99")).unwrap(),
            Some(9)
        );
        let err = resolve_level(Compression::Gzip, Some("x")).unwrap_err();
        assert!(err.downcast_ref::<InputError>().is_some());
    }

    #[test]
    fn sizes_targets_and_tablespaces_refuse_bad_values_as_input_errors() {
        assert_eq!(size_arg("--max-bandwidth", "2MB").unwrap(), 2 << 20);
        let err = size_arg("--max-bandwidth", "fast").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --max-bandwidth 'fast': use bytes or a number with KB, MB, GB, TB"
        );
        assert_eq!(
            tablespace_map(&["ts:/mnt/ts".into()]).unwrap(),
            vec![("ts".to_string(), PathBuf::from("/mnt/ts"))]
        );
        assert!(tablespace_map(&[":/mnt".into()]).is_err());
        let choice = target_choice(None, Some("0/3000028"), Some("latest")).unwrap();
        assert!(choice.time.is_none() && choice.lsn.is_some() && choice.tli.is_none());
        assert_eq!(target_choice(None, None, Some("2")).unwrap().tli, Some(2));
        assert!(target_choice(Some("yesterday"), None, None).is_err());
        assert!(target_choice(None, None, Some("two")).is_err());
    }
}
