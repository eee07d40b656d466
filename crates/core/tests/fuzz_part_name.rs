//! Fuzzing of the backup part names read from bucket keys
//! (`base/<id>/data_0001.tar.gz`): any name is recognised or skipped, never a
//! panic, and every name barrelman writes reads back to its item, index and
//! compression. The corpus `fuzz/corpus/part_name/` is replayed first.

#[path = "../../../fuzz/support.rs"]
mod support;

use barrelman_core::compression::ALL_COMPRESSIONS;
use barrelman_core::layout::TarPart;
use proptest::prelude::*;

const TOKENS: &[&str] = &[
    "data", "16391", "_", "0001", "9999", ".tar", ".gz", ".bz2", ".snappy", ".lz4", ".xz", ".zst",
    ".tmp", "/", ".", "é",
];

/// Any name: recognised or not, never a panic; a recognised name is rebuilt
/// from its parts to a name that reads back the same.
fn check(name: &str) {
    let Some(part) = TarPart::parse(name) else {
        return;
    };
    assert!(
        part.compression.tar_suffix().is_some(),
        "recognised compressions are tar suffixes"
    );
    let rebuilt = part.file_name();
    assert_eq!(TarPart::parse(&rebuilt), Some(part), "{name} -> {rebuilt}");
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
        if c.tar_suffix().is_none() {
            return Ok(());
        }
        let part = TarPart { item, index, compression: c };
        let name = part.file_name();
        prop_assert_eq!(TarPart::parse(&name), Some(part), "{}", name);
    }
}
