//! Fuzzing of every parser of barrelman-core that reads bucket or user input:
//! `backup.info`, Python literals, WAL and history names, object keys, LSNs,
//! destination URLs, retention policies, the ObjectStore manifest and AWS profile
//! files. Each test replays its corpus (`fuzz/corpus/<parser>/`) first, then runs
//! proptest on generated and mutated inputs. Properties: no input panics, and
//! what a formatter writes parses back to the same value.

#[path = "../../../fuzz/support.rs"]
mod support;

use barrelman_core::awsprofile;
use barrelman_core::backup_info::{list_json, parse_time, BackupInfo, BackupStatus, Tablespace};
use barrelman_core::compression::ALL_COMPRESSIONS;
use barrelman_core::layout::{Destination, ServerLayout, StoredWal};
use barrelman_core::lsn::Lsn;
use barrelman_core::objectstore::ObjectStore;
use barrelman_core::pyliteral::{self, PyValue};
use barrelman_core::retention::{self, Entry, Policy};
use barrelman_core::wal::{SegmentName, WalName};
use chrono::{DateTime, FixedOffset};
use proptest::prelude::*;
use support::*;

// ---------------------------------------------------------------- Python literals

const PY_TOKENS: &[&str] = &[
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    ",",
    ":",
    " ",
    "\n",
    "\\\n",
    "'",
    "\"",
    "'''",
    "\"\"\"",
    "r'",
    "u'",
    "b'",
    "None",
    "True",
    "False",
    "-",
    "+",
    ".",
    "e",
    "E",
    "_",
    "0x",
    "0o",
    "0b",
    "1",
    "0",
    "9",
    "1e999",
    "9223372036854775808",
    "\\x",
    "\\u",
    "\\U",
    "\\N{",
    "\\",
    "\\0",
    "\\777",
    "'a'",
    "1.5",
    "j",
    "é",
    "\u{2028}",
    "\u{feff}",
    "\r",
];

fn has_non_finite_float(v: &PyValue) -> bool {
    match v {
        PyValue::Float(f) => !f.is_finite(),
        PyValue::List(items) | PyValue::Tuple(items) => items.iter().any(has_non_finite_float),
        PyValue::Dict(pairs) => pairs
            .iter()
            .any(|(k, v)| has_non_finite_float(k) || has_non_finite_float(v)),
        _ => false,
    }
}

/// Any text: parse never panics; a parsed value renders (repr and JSON) without
/// panicking, and its repr parses back to the same value.
fn check_pyliteral(text: &str) {
    let Ok(value) = pyliteral::parse(text) else {
        return;
    };
    let _ = value.to_json_text();
    let _ = value.to_json();
    let repr = value.to_python();
    let back = pyliteral::parse(&repr)
        .unwrap_or_else(|e| panic!("repr {repr:?} of {text:?} does not parse back: {e}"));
    if !has_non_finite_float(&value) {
        assert_eq!(back, value, "repr {repr:?} of {text:?}");
    }
}

#[test]
fn fuzz_corpus_pyliteral() {
    for (name, text) in corpus_text("pyliteral") {
        eprintln!("pyliteral seed {name}");
        check_pyliteral(&text);
    }
}

/// Nesting is limited where CPython's parser limits it (200 brackets): as deep as
/// Python reads parses, deeper is an error, never a stack overflow, also on a
/// thread with a small stack (tokio's blocking threads have 2 MiB).
#[test]
fn fuzz_pyliteral_nesting_limit() {
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let v = pyliteral::parse(&nested(200)).expect("200 levels parse");
            assert_eq!(pyliteral::parse(&v.to_python()), Ok(v));
            let e = pyliteral::parse(&nested(201)).expect_err("201 levels refused");
            assert!(e.msg.contains("nested"), "{e}");
            assert!(pyliteral::parse(&"(".repeat(1_000_000)).is_err());
            let info = format!("copy_stats={}\n", "{'a': ".repeat(100_000));
            assert!(BackupInfo::parse("x", &info).is_err());
        })
        .expect("thread")
        .join()
        .expect("no panic, no overflow");
}

fn py_value() -> impl Strategy<Value = PyValue> {
    let leaf = prop_oneof![
        Just(PyValue::None),
        any::<bool>().prop_map(PyValue::Bool),
        any::<i64>().prop_map(PyValue::Int),
        any::<u64>()
            .prop_map(f64::from_bits)
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(PyValue::Float),
        any::<f64>().prop_map(PyValue::Float),
        any::<String>().prop_map(PyValue::Str),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(PyValue::List),
            prop::collection::vec(inner.clone(), 0..6).prop_map(PyValue::Tuple),
            prop::collection::btree_map(any::<String>(), inner, 0..6).prop_map(|m| {
                PyValue::Dict(m.into_iter().map(|(k, v)| (PyValue::Str(k), v)).collect())
            }),
        ]
    })
}

proptest! {
    #[test]
    fn fuzz_pyliteral_text(text in fuzz_text("pyliteral", PY_TOKENS, 64)) {
        check_pyliteral(&text);
    }

    /// parse(repr(v)) == v for every value barrelman can write.
    #[test]
    fn fuzz_pyliteral_round_trip(value in py_value()) {
        prop_assume!(!has_non_finite_float(&value));
        let repr = value.to_python();
        prop_assert_eq!(pyliteral::parse(&repr), Ok(value), "{}", repr);
    }

    /// Python's repr of every finite float reads back as the same float.
    #[test]
    fn fuzz_float_repr_round_trip(bits in any::<u64>()) {
        let f = f64::from_bits(bits);
        prop_assume!(f.is_finite());
        let repr = pyliteral::float_repr(f);
        prop_assert_eq!(pyliteral::parse(&repr), Ok(PyValue::Float(f)), "{}", repr);
    }
}

// ---------------------------------------------------------------- backup.info

const INFO_KEYS: &[&str] = &[
    "backup_label",
    "backup_name",
    "begin_offset",
    "begin_time",
    "begin_wal",
    "begin_xlog",
    "children_backup_ids",
    "cluster_size",
    "compression",
    "config_file",
    "copy_stats",
    "data_checksums",
    "deduplicated_size",
    "encryption",
    "end_offset",
    "end_time",
    "end_wal",
    "end_xlog",
    "error",
    "hba_file",
    "ident_file",
    "included_files",
    "mode",
    "parent_backup_id",
    "pgdata",
    "server_name",
    "size",
    "snapshots_info",
    "status",
    "summarize_wal",
    "systemid",
    "tablespaces",
    "timeline",
    "version",
    "xlog_segment_size",
    "unknown_key",
];

const INFO_VALUES: &[&str] = &[
    "None",
    "DONE",
    "STARTED",
    "FAILED",
    "0",
    "1",
    "+1_000",
    "16777216",
    "4294967296",
    "18446744073709551616",
    "-1",
    "2026-11-24 20:16:25.483595+00:00",
    "2026-11-24T20:16:25Z",
    "2026-11-24 20:16:25+1é1",
    "2026-02-30",
    "9999-12-31 23:59:59-23:59",
    "2026-11-24 20:16:25.",
    "[('ts1', 16391, '/x')]",
    "[('ts1', -1, '/x')]",
    "[]",
    "{}",
    "{'a': 1e999}",
    "''",
    "'x\\ny'",
    "a,b",
    ",",
    "000000010000000000000004",
    "0/4000028",
    "1024",
    "0x10",
];

const INFO_TOKENS: &[&str] = &[
    "\n",
    "=",
    " ",
    "#",
    "None",
    "'",
    "[",
    "(",
    "{",
    ",",
    ":",
    "0",
    "9",
    "-",
    "+",
    "_",
    "status=",
    "xlog_segment_size=",
    "tablespaces=",
    "begin_time=",
    "copy_stats=",
    "backup_label=",
    "timeline=",
    "é",
    "\r",
];

/// Any text: parse never panics; a parsed backup.info renders its file text and
/// JSON without panicking, and the file text it writes reads back to a backup.info
/// that writes the same text again (barrelman never writes a file it cannot read).
fn check_backup_info(text: &str) {
    let info = match BackupInfo::parse("20261124T201625", text) {
        Ok(info) => info,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // What callers compute from it: segment arithmetic divides by the size.
    if let Some(size) = info.xlog_segment_size {
        let _ = (Lsn(u64::MAX).segment(1, size), Lsn(u64::MAX).offset(size));
    }
    let _ = info.show_json();
    let _ = list_json(std::slice::from_ref(&info));
    let written = info.to_file_text();
    let back = BackupInfo::parse("20261124T201625", &written)
        .unwrap_or_else(|e| panic!("written backup.info does not read back: {e}\n{written}"));
    assert_eq!(back.to_file_text(), written, "from {text:?}");
}

#[test]
fn fuzz_corpus_backup_info() {
    for (name, text) in corpus_text("backup_info") {
        eprintln!("backup_info seed {name}");
        check_backup_info(&text);
    }
}

fn info_lines() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        3 => prop::sample::select(INFO_VALUES).prop_map(str::to_owned),
        1 => token_text(PY_TOKENS, 12),
        1 => any::<String>(),
    ];
    prop::collection::vec((prop::sample::select(INFO_KEYS), value), 0..40).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    })
}

proptest! {
    #[test]
    fn fuzz_backup_info_text(text in prop_oneof![
        info_lines(),
        fuzz_text("backup_info", INFO_TOKENS, 64),
    ]) {
        check_backup_info(&text);
    }
}

/// Text of a plain value: one line, no surrounding blanks, not the null `None`.
fn plain_text() -> impl Strategy<Value = String> {
    any::<String>()
        .prop_map(|s| s.replace(['\n', '\r'], " ").trim().to_owned())
        .prop_filter("None is null", |s| s != "None")
}

/// A time barman can write: years 1 to 9999, microseconds, any offset.
fn info_time() -> impl Strategy<Value = DateTime<FixedOffset>> {
    // 0001-01-02 to 9999-12-30, so that every offset keeps the local year in range.
    (
        -62_135_510_400i64..253_402_214_400,
        0u32..1_000_000,
        -86_399i32..86_400,
    )
        .prop_map(|(secs, micros, offset)| {
            let utc = DateTime::from_timestamp(secs, micros * 1000).expect("in range");
            utc.with_timezone(&FixedOffset::east_opt(offset).expect("offset"))
        })
}

fn finite_py_value() -> impl Strategy<Value = PyValue> {
    py_value().prop_filter("finite floats", |v| !has_non_finite_float(v))
}

/// Any backup.info barrelman may hold in memory, within what the file format can
/// carry (plain values on one line; falsy literals are written as None by design).
fn backup_info() -> impl Strategy<Value = BackupInfo> {
    let texts = prop::collection::vec(prop::option::of(plain_text()), 18);
    let ints = prop::collection::vec(prop::option::of(any::<u64>()), 5);
    let small = prop::collection::vec(prop::option::of(any::<u32>()), 2);
    let segment = prop::option::of((20u32..=30).prop_map(|p| 1u64 << p));
    let times = (prop::option::of(info_time()), prop::option::of(info_time()));
    let children = prop::option::of(prop::collection::vec("[A-Za-z0-9]{1,15}", 1..4));
    let literals = (
        prop::option::of(finite_py_value().prop_filter("truthy", PyValue::is_truthy)),
        prop::option::of(finite_py_value().prop_filter("truthy", PyValue::is_truthy)),
        // A Python `None` here is the file's null.
        prop::option::of(finite_py_value().prop_filter("not None", |v| *v != PyValue::None)),
        prop::option::of(any::<String>().prop_filter("non-empty", |s| !s.is_empty())),
        prop::option::of(prop::collection::vec(
            (any::<String>(), any::<u32>(), any::<String>()),
            1..3,
        )),
    );
    let status = prop_oneof![
        prop::sample::select(
            &[
                "EMPTY",
                "STARTED",
                "WAITING_FOR_WALS",
                "DONE",
                "SYNCING",
                "FAILED"
            ][..]
        )
        .prop_map(BackupStatus::parse),
        "[A-Z_]{1,12}".prop_map(|s| BackupStatus::parse(&s)),
    ];
    (
        texts, ints, small, segment, times, children, literals, status,
    )
        .prop_map(
            |(t, i, n, segment, (begin_time, end_time), children, lit, status)| {
                let mut b = BackupInfo::new("20261124T201625");
                [
                    &mut b.backup_name,
                    &mut b.begin_wal,
                    &mut b.begin_xlog,
                    &mut b.compression,
                    &mut b.config_file,
                    &mut b.data_checksums,
                    &mut b.encryption,
                    &mut b.end_wal,
                    &mut b.end_xlog,
                    &mut b.error,
                    &mut b.hba_file,
                    &mut b.ident_file,
                    &mut b.mode,
                    &mut b.parent_backup_id,
                    &mut b.pgdata,
                    &mut b.server_name,
                    &mut b.summarize_wal,
                    &mut b.systemid,
                ]
                .into_iter()
                .zip(t)
                .for_each(|(field, v)| *field = v);
                [
                    &mut b.begin_offset,
                    &mut b.cluster_size,
                    &mut b.deduplicated_size,
                    &mut b.end_offset,
                    &mut b.size,
                ]
                .into_iter()
                .zip(i)
                .for_each(|(field, v)| *field = v);
                b.timeline = n[0];
                b.version = n[1];
                b.xlog_segment_size = segment;
                b.begin_time = begin_time;
                b.end_time = end_time;
                b.children_backup_ids = children;
                let (copy_stats, included_files, snapshots_info, label, tablespaces) = lit;
                b.copy_stats = copy_stats;
                b.included_files = included_files;
                b.snapshots_info = snapshots_info;
                b.backup_label = label;
                b.tablespaces = tablespaces.map(|t| {
                    t.into_iter()
                        .map(|(name, oid, location)| Tablespace {
                            name,
                            oid,
                            location,
                        })
                        .collect()
                });
                b.status = status;
                b
            },
        )
}

proptest! {
    /// parse(format(b)) == b: every field barrelman writes reads back unchanged.
    #[test]
    fn fuzz_backup_info_round_trip(info in backup_info()) {
        let text = info.to_file_text();
        prop_assert_eq!(BackupInfo::parse(&info.backup_id, &text), Ok(info), "{}", text);
    }
}

// ---------------------------------------------------------------- WAL names, keys

const WAL_TOKENS: &[&str] = &[
    "00000001",
    "0000000000000004",
    "FFFFFFFF",
    "ffffffff",
    "000000010000000000000004",
    ".partial",
    ".history",
    ".backup",
    ".00000028",
    ".gz",
    ".bz2",
    ".xz",
    ".snappy",
    ".zst",
    ".lz4",
    ".tmp",
    "/",
    "wals/",
    "0",
    "F",
    "g",
    "é",
    ".",
];

/// Any name: the WAL name, segment name and stored-key recognisers never panic,
/// and whatever they accept formats back to what they read.
fn check_wal_name(s: &str) {
    if let Ok(w) = WalName::parse(s) {
        assert_eq!(w.as_str(), s);
        assert_eq!(w.to_string(), s);
        let _ = (w.kind(), w.timeline(), w.segment(), w.hash_dir());
        let layout = ServerLayout::new("pfx", "srv");
        for c in ALL_COMPRESSIONS {
            let key = layout.wal_key(&w, c);
            let stored = StoredWal::from_key(&key).expect("own key recognised");
            assert_eq!((stored.name, stored.compression), (w.clone(), c), "{key}");
        }
    }
    let _ = WalName::from_path(s);
    if let Some(seg) = SegmentName::parse(s) {
        assert!(seg.to_string().eq_ignore_ascii_case(s), "{s}");
        assert_eq!(SegmentName::parse(&seg.to_string()), Some(seg));
        for size in [1u64 << 20, 16 << 20, 1 << 30] {
            let _ = seg.next(size);
        }
    }
    if let Some(stored) = StoredWal::from_key(s) {
        let text = stored.to_string();
        assert!(s.ends_with(&text), "{s} recognised as {text}");
        assert_eq!(StoredWal::from_key(&text), Some(stored));
    }
}

#[test]
fn fuzz_corpus_wal_name() {
    for line in corpus_lines("wal_name") {
        check_wal_name(&line);
    }
}

proptest! {
    #[test]
    fn fuzz_wal_name_text(s in fuzz_line("wal_name", WAL_TOKENS, 12)) {
        check_wal_name(&s);
    }

    /// Every segment name formats to 24 upper-case hex digits that parse back.
    #[test]
    fn fuzz_segment_name_round_trip(timeline in any::<u32>(), log in any::<u32>(), seg in any::<u32>()) {
        let s = SegmentName { timeline, log, seg };
        let text = s.to_string();
        prop_assert_eq!(SegmentName::parse(&text), Some(s));
        prop_assert!(WalName::parse(&text).is_ok());
        prop_assert_eq!(SegmentName::parse(&text.to_ascii_lowercase()), Some(s));
    }
}

// ---------------------------------------------------------------- LSNs

const LSN_TOKENS: &[&str] = &[
    "0",
    "1",
    "F",
    "f",
    "/",
    "+",
    "-",
    " ",
    "FFFFFFFF",
    "100000000",
    "é",
];

fn check_lsn(s: &str) {
    if let Ok(lsn) = s.parse::<Lsn>() {
        assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn), "{s}");
        for size in [1u64 << 20, 16 << 20, 1 << 30] {
            let seg = lsn.segment(1, size);
            assert!(lsn.offset(size) < size);
            assert_eq!(SegmentName::parse(&seg.to_string()), Some(seg));
        }
    }
}

#[test]
fn fuzz_corpus_lsn() {
    for line in corpus_lines("lsn") {
        check_lsn(&line);
    }
}

proptest! {
    #[test]
    fn fuzz_lsn_text(s in fuzz_line("lsn", LSN_TOKENS, 12)) {
        check_lsn(&s);
    }

    #[test]
    fn fuzz_lsn_round_trip(v in any::<u64>()) {
        let lsn = Lsn(v);
        prop_assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
        prop_assert_eq!(lsn.to_string().to_ascii_lowercase().parse::<Lsn>(), Ok(lsn));
    }
}

// ---------------------------------------------------------------- destination URLs

const URL_TOKENS: &[&str] = &[
    "s3://",
    "S3://",
    "gs://",
    "file://",
    "http://",
    "https://",
    "/",
    "//",
    "bkt",
    "pfx",
    ".blob.core.windows.net",
    "console.cloud.google.com",
    "storage/browser/",
    ":10000",
    "~",
    "%7E",
    "[",
    "]",
    "#",
    "?",
    "é",
    "..",
    ".",
    " ",
    "\n",
    "acct",
];

/// Any URL: parsing never panics; an accepted one names a non-empty bucket and a
/// path without leading or trailing `/`, and reparses to itself.
fn check_destination(url: &str) {
    for emulator in [false, true] {
        let Ok(d) = Destination::parse(url, emulator) else {
            continue;
        };
        assert!(!d.bucket.is_empty(), "{url:?}: empty bucket");
        assert!(
            !d.path.starts_with('/') && !d.path.ends_with('/'),
            "{url:?}: path {:?}",
            d.path
        );
        assert_eq!(Destination::parse(&d.url, emulator), Ok(d.clone()));
        let layout = ServerLayout::new(&d.path, "srv");
        assert!(layout.root().ends_with("srv"));
    }
}

#[test]
fn fuzz_corpus_destination() {
    for line in corpus_lines("destination") {
        check_destination(&line);
    }
}

proptest! {
    #[test]
    fn fuzz_destination_text(url in fuzz_line("destination", URL_TOKENS, 16)) {
        check_destination(&url);
    }
}

// ---------------------------------------------------------------- retention policies

const POLICY_TOKENS: &[&str] = &[
    "REDUNDANCY",
    "RECOVERY",
    "WINDOW",
    "OF",
    "DAYS",
    "WEEKS",
    "MONTHS",
    "day",
    " ",
    "\t",
    "1",
    "0",
    "-1",
    "4294967295",
    "4294967296",
    "99999999",
    "é",
];

/// Any policy text: parsing never panics; an accepted policy formats to text that
/// parses to the same policy, and deciding a catalog with it never panics.
fn check_policy(s: &str) {
    let Ok(policy) = s.parse::<Policy>() else {
        return;
    };
    assert_eq!(policy.to_string().parse::<Policy>(), Ok(policy), "{s}");
    let mut done = BackupInfo::new("20261124T201625");
    done.status = BackupStatus::Done;
    done.end_time = Some(parse_time("2026-11-24 20:16:25+00:00").expect("time"));
    let catalog = [Entry {
        info: &done,
        keep: None,
    }];
    let now = parse_time("2026-12-02 00:00:00+00:00").expect("time");
    let _ = retention::decide(&catalog, policy, 0, now);
}

#[test]
fn fuzz_corpus_retention() {
    for line in corpus_lines("retention") {
        check_policy(&line);
    }
}

proptest! {
    #[test]
    fn fuzz_retention_policy_text(s in fuzz_line("retention", POLICY_TOKENS, 12)) {
        check_policy(&s);
    }
}

// ---------------------------------------------------------------- ObjectStore YAML

const YAML_TOKENS: &[&str] = &[
    "\n",
    "  ",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    "\"",
    "&a ",
    "*a",
    "!!str ",
    "!!map ",
    "---\n",
    "...\n",
    "#",
    "|\n",
    ">\n",
    "~",
    "null",
    "true",
    "0",
    "-1",
    "4294967296",
    "apiVersion: barmancloud.cnpg.io/v1\n",
    "kind: ObjectStore\n",
    "spec:\n",
    "  configuration:\n",
    "    destinationPath: s3://b/p\n",
    "    wal:\n",
    "      maxParallel: ",
    "      compression: ",
    "<<: *a\n",
    "é",
    "\t",
];

fn check_objectstore(text: &str) {
    if let Ok(store) = ObjectStore::from_yaml(text) {
        let _ = store.secret_env();
    }
}

#[test]
fn fuzz_corpus_objectstore() {
    for (name, text) in corpus_text("objectstore") {
        eprintln!("objectstore seed {name}");
        check_objectstore(&text);
    }
}

proptest! {
    #[test]
    fn fuzz_objectstore_yaml(text in fuzz_text("objectstore", YAML_TOKENS, 48)) {
        check_objectstore(&text);
    }
}

// ---------------------------------------------------------------- AWS profile files

const INI_TOKENS: &[&str] = &[
    "[",
    "]",
    "default",
    "profile ",
    "prod",
    "\n",
    " ",
    "\t",
    "=",
    ":",
    "#",
    ";",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "region",
    "endpoint_url",
    "é",
    "\r\n",
];

fn check_awsprofile(credentials: &str, config: &str) {
    for name in ["default", "prod", "spaced", ""] {
        if let Some(p) = awsprofile::resolve(name, Some(credentials), Some(config)) {
            // Debug output never shows a secret.
            let shown = format!("{p:?}");
            if let Some(secret) = p.secret_access_key.as_deref().filter(|s| s.len() > 8) {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
        let _ = awsprofile::resolve(name, Some(credentials), None);
        let _ = awsprofile::resolve(name, None, Some(config));
    }
}

#[test]
fn fuzz_corpus_awsprofile() {
    let seeds = corpus_text("awsprofile");
    for (_, a) in &seeds {
        for (_, b) in &seeds {
            check_awsprofile(a, b);
        }
    }
}

proptest! {
    #[test]
    fn fuzz_awsprofile_text(
        credentials in fuzz_text("awsprofile", INI_TOKENS, 48),
        config in fuzz_text("awsprofile", INI_TOKENS, 48),
    ) {
        check_awsprofile(&credentials, &config);
    }
}
