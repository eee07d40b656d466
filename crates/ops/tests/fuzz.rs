//! Fuzzing of the backup part names read from bucket keys
//! (`base/<id>/data_0001.tar.gz`): any name is recognised or skipped, never a
//! panic, and every name barrelman writes reads back to its item, index and
//! compression. The corpus `fuzz/corpus/part_name/` is replayed first.

#[path = "../../../fuzz/support.rs"]
mod support;

use barrelman_core::compression::ALL_COMPRESSIONS;
use barrelman_ops::plan::{parse_part_name, part_file_name, tar_suffix};
use proptest::prelude::*;

const TOKENS: &[&str] = &[
    "data", "16391", "_", "0001", "9999", ".tar", ".gz", ".bz2", ".snappy", ".lz4", ".xz", ".zst",
    ".tmp", "/", ".", "é",
];

/// Any name: recognised or not, never a panic; a recognised name is rebuilt
/// from its parts to a name that reads back the same.
fn check(name: &str) {
    let Some((item, index, compression)) = parse_part_name(name) else {
        return;
    };
    let suffix = tar_suffix(compression).expect("recognised compressions are tar suffixes");
    let rebuilt = part_file_name(&item, index, suffix);
    assert_eq!(
        parse_part_name(&rebuilt),
        Some((item, index, compression)),
        "{name} -> {rebuilt}"
    );
}

#[test]
fn fuzz_corpus_part_name() {
    for line in support::corpus_lines("part_name") {
        check(&line);
    }
}

proptest! {
    #[test]
    fn fuzz_part_name_text(name in support::fuzz_line("part_name", TOKENS, 10)) {
        check(&name);
    }

    /// Every part barrelman names (items are `data` or tablespace oids) reads back.
    #[test]
    fn fuzz_part_name_round_trip(
        item in prop_oneof![Just("data".to_owned()), any::<u32>().prop_map(|o| o.to_string())],
        index in 0usize..10_000,
        c in prop::sample::select(ALL_COMPRESSIONS.to_vec()),
    ) {
        let Some(suffix) = tar_suffix(c) else { return Ok(()) };
        let name = part_file_name(&item, index, suffix);
        prop_assert_eq!(parse_part_name(&name), Some((item, index, c)), "{}", name);
    }
}
