//! Shared by the fuzz tests of every crate (each includes this file with
//! `#[path]`): the corpus replay and the mutation strategies.
//!
//! Every fuzz test first replays its corpus, `fuzz/corpus/<parser>/` at the top of
//! the repository (seed inputs and the reproducers of every bug found), then runs
//! proptest on inputs generated from tokens of the format and on random mutations
//! of the seeds. The number of generated cases per property is proptest's
//! `PROPTEST_CASES` (256 unless set); `.ci/run` runs a bounded number.

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::Index;
use std::path::PathBuf;

/// The corpus directory of `parser`.
pub fn corpus_dir(parser: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(parser)
}

/// Every seed of `parser`'s corpus as (file name, bytes), sorted by name. A missing
/// or empty corpus fails the test: it would silently replay nothing.
pub fn corpus(parser: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(parser);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| {
            let e = e.expect("corpus entry");
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).expect("corpus file");
            (name, bytes)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "corpus {} is empty", dir.display());
    seeds
}

/// The corpus of `parser` as text (invalid UTF-8 replaced).
pub fn corpus_text(parser: &str) -> Vec<(String, String)> {
    corpus(parser)
        .into_iter()
        .map(|(n, b)| (n, String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

/// One edit of a mutation.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Insert a token of the format.
    Token(Index, Index),
    /// Insert random bytes.
    Bytes(Index, Vec<u8>),
    /// Overwrite one byte.
    Flip(Index, u8),
    /// Remove a range.
    Delete(Index, usize),
    /// Repeat a range in place.
    Repeat(Index, usize, u8),
    /// Cut the end off.
    Truncate(Index),
}

/// One random edit.
pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), any::<Index>()).prop_map(|(p, t)| Edit::Token(p, t)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Edit::Bytes(p, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(p, b)| Edit::Flip(p, b)),
        2 => (any::<Index>(), 1usize..64).prop_map(|(p, n)| Edit::Delete(p, n)),
        1 => (any::<Index>(), 1usize..64, 1u8..16).prop_map(|(p, n, k)| Edit::Repeat(p, n, k)),
        1 => any::<Index>().prop_map(Edit::Truncate),
    ]
}

/// `data` with `edits` applied, in order.
pub fn apply(mut data: Vec<u8>, edits: &[Edit], tokens: &[&[u8]]) -> Vec<u8> {
    for e in edits {
        // Positions 0..=len.
        let at = |i: &Index, len: usize| i.index(len + 1);
        match e {
            Edit::Token(p, t) => {
                if !tokens.is_empty() {
                    let pos = at(p, data.len());
                    let tok = tokens[t.index(tokens.len())];
                    data.splice(pos..pos, tok.iter().copied());
                }
            }
            Edit::Bytes(p, b) => {
                let pos = at(p, data.len());
                data.splice(pos..pos, b.iter().copied());
            }
            Edit::Flip(p, b) => {
                if !data.is_empty() {
                    let pos = p.index(data.len());
                    data[pos] = *b;
                }
            }
            Edit::Delete(p, n) => {
                let pos = at(p, data.len());
                let end = (pos + n).min(data.len());
                data.drain(pos..end);
            }
            Edit::Repeat(p, n, k) => {
                let pos = at(p, data.len());
                let end = (pos + n).min(data.len());
                let chunk: Vec<u8> = data[pos..end].to_vec();
                for _ in 0..*k {
                    data.splice(end..end, chunk.iter().copied());
                }
            }
            Edit::Truncate(p) => {
                let pos = at(p, data.len());
                data.truncate(pos);
            }
        }
    }
    data
}

/// A seed of `seeds` with up to 8 random edits, some inserting `tokens`.
pub fn mutated(seeds: Vec<Vec<u8>>, tokens: &'static [&'static [u8]]) -> BoxedStrategy<Vec<u8>> {
    assert!(!seeds.is_empty());
    (any::<Index>(), prop::collection::vec(edit(), 0..8))
        .prop_map(move |(i, edits)| apply(seeds[i.index(seeds.len())].clone(), &edits, tokens))
        .boxed()
}

/// Like [`mutated`], as text.
pub fn mutated_text(seeds: Vec<String>, tokens: &'static [&'static str]) -> BoxedStrategy<String> {
    let seeds = seeds.into_iter().map(String::into_bytes).collect();
    let tokens: Vec<&'static [u8]> = tokens.iter().map(|t| t.as_bytes()).collect();
    let tokens: &'static [&'static [u8]] = Box::leak(tokens.into_boxed_slice());
    mutated(seeds, tokens)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
        .boxed()
}

/// Text made of `tokens` of the format and random characters.
pub fn token_text(tokens: &'static [&'static str], max: usize) -> BoxedStrategy<String> {
    let piece = prop_oneof![
        4 => prop::sample::select(tokens).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..max)
        .prop_map(|v| v.concat())
        .boxed()
}

/// Any of: token text, a mutated seed, arbitrary characters.
pub fn fuzz_text(
    parser: &str,
    tokens: &'static [&'static str],
    max_tokens: usize,
) -> BoxedStrategy<String> {
    let seeds: Vec<String> = corpus_text(parser).into_iter().map(|(_, t)| t).collect();
    prop_oneof![
        3 => token_text(tokens, max_tokens),
        3 => mutated_text(seeds, tokens),
        1 => any::<String>(),
    ]
    .boxed()
}

/// The corpus of a line-oriented parser: every line of every file is one input.
pub fn corpus_lines(parser: &str) -> Vec<String> {
    corpus_text(parser)
        .into_iter()
        .flat_map(|(_, t)| t.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// Like [`fuzz_text`] for a line-oriented corpus.
pub fn fuzz_line(
    parser: &str,
    tokens: &'static [&'static str],
    max_tokens: usize,
) -> BoxedStrategy<String> {
    prop_oneof![
        3 => token_text(tokens, max_tokens),
        3 => mutated_text(corpus_lines(parser), tokens),
        1 => any::<String>(),
    ]
    .boxed()
}
