//! Fuzzing of the barman-cloud front end (a test module of `face::barman`, to reach its
//! private parsers): any argv, built from each tool's own options, their unique
//! prefixes and odd values, parses to a command or to exit 0 (help, version) or 3
//! (usage error), never a panic. The `type=` checks and the post-parse helpers get
//! arbitrary strings. The corpus `fuzz/corpus/argv/` (real command lines) is
//! replayed first.

use super::*;
use crate::fuzz_support as support;
use crate::{argtypes, exit, flags};
use clap::CommandFactory;
use proptest::prelude::*;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// Parses `args` as `prog` would; the exit code of a refusal.
fn parse_tool(prog: &'static str, args: Vec<OsString>) -> Result<(), i32> {
    match prog {
        "barman-cloud-wal-archive" => parse::<WalArchiveCli>(prog, args).map(drop),
        "barman-cloud-wal-restore" => parse::<WalRestoreCli>(prog, args).map(drop),
        "barman-cloud-check-wal-archive" => parse::<CheckWalArchiveCli>(prog, args).map(drop),
        "barman-cloud-backup" => parse::<BackupCli>(prog, args).map(drop),
        "barman-cloud-restore" => parse::<RestoreCli>(prog, args).map(drop),
        "barman-cloud-backup-list" => parse::<BackupListCli>(prog, args).map(drop),
        "barman-cloud-backup-show" => parse::<BackupShowCli>(prog, args).map(drop),
        "barman-cloud-backup-keep" => parse::<BackupKeepCli>(prog, args).map(drop),
        "barman-cloud-backup-delete" => parse::<BackupDeleteCli>(prog, args).map(drop),
        other => panic!("unknown tool {other}"),
    }
}

/// Every option spelling of `prog`: `--long`, unique-ish prefixes, `-s`.
fn options(prog: &str) -> Vec<String> {
    let cmd = match prog {
        "barman-cloud-wal-archive" => WalArchiveCli::command(),
        "barman-cloud-wal-restore" => WalRestoreCli::command(),
        "barman-cloud-check-wal-archive" => CheckWalArchiveCli::command(),
        "barman-cloud-backup" => BackupCli::command(),
        "barman-cloud-restore" => RestoreCli::command(),
        "barman-cloud-backup-list" => BackupListCli::command(),
        "barman-cloud-backup-show" => BackupShowCli::command(),
        "barman-cloud-backup-keep" => BackupKeepCli::command(),
        _ => BackupDeleteCli::command(),
    };
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long() {
            out.push(format!("--{long}"));
            if long.len() > 3 {
                out.push(format!("--{}", &long[..3]));
            }
        }
        if let Some(short) = arg.get_short() {
            out.push(format!("-{short}"));
        }
    }
    out.extend(["--help", "-V", "--version", "--", "-", "--no-such-option"].map(String::from));
    out
}

const VALUES: &[&str] = &[
    "",
    "-1",
    "0",
    "1",
    "4294967296",
    "99999999999999999999",
    "+1_0",
    "1.5",
    "s3://b/p",
    "file:///tmp/x",
    "srv",
    "000000010000000000000004",
    "00000002.history",
    "latest",
    "low",
    "k,v",
    "a,b,c",
    "\"a,b\",c",
    "aws:",
    "AES256",
    "json",
    "REDUNDANCY 2",
    "RECOVERY WINDOW OF 4294967295 MONTHS",
    "5MiB",
    "1GB",
    "0B",
    "1e400KB",
    "é",
    "pg~1",
    "0/4000028",
    "2026-11-24 20:16:25",
    "full",
    "=",
    "-",
    "--",
    "\n",
];

fn argv(prog: &'static str) -> impl Strategy<Value = Vec<OsString>> {
    let opts = options(prog);
    let token = prop_oneof![
        3 => prop::sample::select(opts.clone()).prop_map(OsString::from),
        3 => prop::sample::select(VALUES).prop_map(OsString::from),
        1 => (prop::sample::select(opts), prop::sample::select(VALUES))
            .prop_map(|(o, v)| OsString::from(format!("{o}={v}"))),
        1 => any::<String>().prop_map(OsString::from),
        // Not UTF-8.
        1 => prop::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 1..6)
            .prop_map(OsString::from_vec),
    ];
    prop::collection::vec(token, 0..12)
}

fn check_argv(prog: &'static str, args: Vec<OsString>) {
    let shown = format!("{prog} {args:?}");
    if let Err(code) = parse_tool(prog, args) {
        assert!(
            code == exit::SUCCESS || code == exit::INPUT_ERROR,
            "{shown}: exit {code}"
        );
    }
}

#[test]
fn fuzz_corpus_argv_barman() {
    for line in support::corpus_lines("argv") {
        let mut words = line.split(' ');
        let Some(prog) = words.next() else { continue };
        let Some(prog) = TOOL_NAMES.iter().copied().find(|t| *t == prog) else {
            continue;
        };
        check_argv(prog, words.map(OsString::from).collect());
    }
}

fn tool_and_argv() -> impl Strategy<Value = (&'static str, Vec<OsString>)> {
    prop::sample::select(TOOL_NAMES.to_vec()).prop_flat_map(|prog| (Just(prog), argv(prog)))
}

proptest! {
    #[test]
    fn fuzz_argv_barman((prog, args) in tool_and_argv()) {
        check_argv(prog, args);
    }
}

const TEXT_TOKENS: &[&str] = &[
    "0", "1", "9", "-", "+", "_", ".", ",", "\"", " ", "e", "E", "K", "M", "G", "T", "P", "B", "i",
    "IB", "low", "aws:", "é", "Z", "T", ":",
];

proptest! {
    /// The `type=` checks and the helpers applied after parsing take any string.
    #[test]
    fn fuzz_argtypes(s in support::token_text(TEXT_TOKENS, 16)) {
        let _ = argtypes::positive(&s);
        let _ = argtypes::non_negative(&s);
        let _ = argtypes::int(&s);
        let _ = argtypes::timeline(&s);
        let _ = argtypes::backup_name(&s);
        let _ = argtypes::size(&s);
        let _ = argtypes::compression_level(&s);
        let _ = argtypes::tag(&s);
        let _ = argtypes::legacy_tag(&s);
        let _ = argtypes::expiration_date(&s);
        let _ = argtypes::lock_duration_days(&s);
        let _ = argtypes::cool_off_hours(&s);
        let _ = flags::parse_tags(std::slice::from_ref(&s));
        let _ = flags::size_arg("--max-archive-size", &s);
        for c in barrelman_core::compression::ALL_COMPRESSIONS {
            let _ = flags::resolve_level(c, Some(&s));
        }
    }
}
