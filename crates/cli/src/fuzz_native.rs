//! Fuzzing of the native `barrelman` command line (a test module of `face::native`, to
//! reach its private parser): any argv, built from the subcommands, their options
//! and odd values, parses or is refused by clap, never a panic. The corpus
//! `fuzz/corpus/argv/native.txt` is replayed first.

use super::*;
use crate::fuzz_support as support;
use clap::CommandFactory;
use proptest::prelude::*;
use std::os::unix::ffi::OsStringExt;

/// Subcommand names and every option spelling of every subcommand.
fn words() -> Vec<String> {
    let mut out = vec!["--help".to_owned(), "--version".to_owned(), "--".to_owned()];
    let root = Cli::command();
    let mut add = |cmd: &clap::Command| {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                out.push(format!("--{long}"));
            }
            if let Some(short) = arg.get_short() {
                out.push(format!("-{short}"));
            }
        }
    };
    add(&root);
    let subs: Vec<clap::Command> = root.get_subcommands().cloned().collect();
    for sub in &subs {
        add(sub);
    }
    out.extend(subs.iter().map(|s| s.get_name().to_owned()));
    out
}

const VALUES: &[&str] = &[
    "",
    "-1",
    "0",
    "1",
    "99999999999999999999",
    "s3://b/p",
    "file:///tmp/x",
    "srv",
    "000000010000000000000004",
    "latest",
    "/tmp/x.yaml",
    "é",
    "=",
    "\n",
];

fn check(args: Vec<OsString>) {
    let _ = Cli::try_parse_from(std::iter::once(OsString::from("barrelman")).chain(args));
}

#[test]
fn fuzz_corpus_argv_native() {
    for (name, text) in support::corpus_text("argv") {
        if name != "native.txt" {
            continue;
        }
        for line in text.lines() {
            check(line.split(' ').map(OsString::from).collect());
        }
    }
}

proptest! {
    #[test]
    fn fuzz_argv_native(args in prop::collection::vec(prop_oneof![
        3 => prop::sample::select(words()).prop_map(OsString::from),
        2 => prop::sample::select(VALUES).prop_map(OsString::from),
        1 => any::<String>().prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 1..6)
            .prop_map(OsString::from_vec),
    ], 0..12)) {
        check(args);
    }
}
