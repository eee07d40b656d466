//! Argparse parity: every option of every barman-cloud tool, in every spelling users
//! and CloudNativePG rely on, is accepted or refused exactly as barman-cloud 3.19.1's
//! own parsers decide. The cases and their verdicts come from barman's parsers at run
//! time (argparse_cases.py), so nothing here restates barman's behaviour by hand. A
//! line barman's parser accepts must succeed here (each only runs `-t` against the
//! S3 server), unless a later check refuses it and barman, run on the same line,
//! exits with the same code.

use super::common::{links_dir, text};
use barrelman_testkit::{tools_bin, S3Server};
use std::process::Command;
use std::sync::Mutex;

const CASES_PY: &str = include_str!("argparse_cases.py");

struct Case {
    tool: String,
    verdict: String,
    args: Vec<String>,
}

/// The generated command lines with barman's verdicts.
fn barman_cases(endpoint: &str, bucket: &str) -> Vec<Case> {
    let out = Command::new(tools_bin().join("python"))
        .args(["-c", CASES_PY, endpoint, bucket])
        .output()
        .expect("run argparse_cases.py");
    assert!(out.status.success(), "argparse_cases.py: {}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut f = line.splitn(3, '\t');
            let (tool, verdict, args) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            Case {
                tool: tool.into(),
                verdict: verdict.into(),
                args: args.split('\x1f').map(String::from).collect(),
            }
        })
        .collect()
}

#[test]
fn every_option_parses_as_barman_parses_it() {
    let s3 = S3Server::start();
    s3.create_bucket("argp");
    let cases = barman_cases(&s3.endpoint, "argp");
    assert!(cases.len() > 1000, "only {} cases generated", cases.len());
    let links = links_dir();
    let tools: Vec<String> = std::fs::read_dir(&links)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(tools.len(), 9, "{tools:?}");
    for verdict in ["accept", "reject", "exit0"] {
        for tool in &tools {
            assert!(
                cases
                    .iter()
                    .any(|c| &c.tool == tool && c.verdict == verdict),
                "no '{verdict}' case for {tool}"
            );
        }
    }
    let next = Mutex::new(0usize);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(case) = cases.get(i) else { break };
                let out = Command::new(links.join(&case.tool))
                    .args(&case.args)
                    .envs(s3.env())
                    .env_remove("AWS_ENDPOINT_URL")
                    .output()
                    .unwrap();
                let want = match case.verdict.as_str() {
                    "reject" => 3,
                    _ => 0,
                };
                let mut differs = out.status.code() != Some(want);
                if differs && case.verdict == "accept" {
                    // barman parsed it; a check made after parsing may still refuse
                    // it: then barman itself must exit as we do.
                    let theirs = Command::new(tools_bin().join(&case.tool))
                        .args(&case.args)
                        .envs(s3.env())
                        .env_remove("AWS_ENDPOINT_URL")
                        .output()
                        .unwrap();
                    differs = theirs.status.code() != out.status.code();
                }
                if differs {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let first = stderr.lines().find(|l| !l.trim().is_empty());
                    failures.lock().unwrap().push(format!(
                        "{} {} -> barman {}, ours exit {:?}: {}",
                        case.tool,
                        case.args.join(" "),
                        case.verdict,
                        out.status.code(),
                        first.unwrap_or("")
                    ));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} command lines differ from barman:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(2000)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// barman's log line: `YYYY-MM-DD HH:MM:SS,mmm [pid] LEVEL: message`.
fn is_barman_log_line(line: &str) -> bool {
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b' ')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19)
        && at(19, b',')
        && digits(20..23)
        && line[23..].starts_with(" ["))
    {
        return false;
    }
    let Some((pid, rest)) = line[25..].split_once("] ") else {
        return false;
    };
    !pid.is_empty()
        && pid.bytes().all(|c| c.is_ascii_digit())
        && ["DEBUG: ", "INFO: ", "WARNING: ", "ERROR: ", "CRITICAL: "]
            .iter()
            .any(|l| rest.starts_with(l))
}

/// `--version` prints what barman prints; -q/-qq/-v change what is logged as they do
/// in barman, and every line we log has barman's shape.
#[test]
fn version_verbosity_and_log_lines_match_barman() {
    let s3 = S3Server::start();
    s3.create_bucket("logs");
    let links = links_dir();
    std::thread::scope(|scope| {
        for entry in std::fs::read_dir(&links).unwrap() {
            let tool = entry.unwrap().file_name().to_string_lossy().into_owned();
            let links = &links;
            scope.spawn(move || {
                for flag in ["--version", "-V"] {
                    let ours = Command::new(links.join(&tool)).arg(flag).output().unwrap();
                    let theirs = Command::new(tools_bin().join(&tool))
                        .arg(flag)
                        .output()
                        .unwrap();
                    assert_eq!(
                        (ours.status.code(), ours.stdout, ours.stderr),
                        (theirs.status.code(), theirs.stdout, theirs.stderr),
                        "{tool} {flag}"
                    );
                }
            });
        }
    });

    let dead = format!("http://127.0.0.1:{}", barrelman_testkit::free_port());
    let log_lines = |program: &std::path::Path, verbosity: &[&str], endpoint: &str| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(program)
            .args(verbosity)
            .args(["--endpoint-url", endpoint, "s3://logs/p", "srv"])
            .args([
                "000000010000000000000009",
                dir.path().join("w").to_str().unwrap(),
            ])
            .envs(s3.env())
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .unwrap();
        let lines: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| is_barman_log_line(l))
            .map(String::from)
            .collect();
        (
            out.status.code(),
            lines,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let level_count = |lines: &[String], level: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("] {level}: ")))
            .count()
    };
    let ours_tool = links.join("barman-cloud-wal-restore");
    let theirs_tool = tools_bin().join("barman-cloud-wal-restore");
    // A WAL that is not there (exit 1): silent by default, one INFO line with -v.
    // The store unreachable (exit 4): an ERROR line, none with -qq.
    for (endpoint, verbosity, want_code, level, want_lines) in [
        (s3.endpoint.as_str(), &[][..], 1, "INFO", false),
        (s3.endpoint.as_str(), &["-v"][..], 1, "INFO", true),
        (dead.as_str(), &[][..], 4, "ERROR", true),
        (dead.as_str(), &["-q"][..], 4, "ERROR", true),
        (dead.as_str(), &["-qq"][..], 4, "ERROR", false),
    ] {
        let (oc, ol, oerr) = log_lines(&ours_tool, verbosity, endpoint);
        let (tc, tl, terr) = log_lines(&theirs_tool, verbosity, endpoint);
        assert_eq!(
            (oc, tc),
            (Some(want_code), Some(want_code)),
            "{verbosity:?}\n{oerr}\n{terr}"
        );
        assert_eq!(
            (level_count(&ol, level) > 0, level_count(&tl, level) > 0),
            (want_lines, want_lines),
            "{level} lines with {verbosity:?}:\nours:\n{oerr}\nbarman:\n{terr}"
        );
        for line in oerr.lines().filter(|l| !l.is_empty()) {
            assert!(is_barman_log_line(line), "not barman's log shape: {line:?}");
        }
    }
}

/// `-t` on every tool: exit 2 when the endpoint cannot be reached, and what barman
/// exits when the bucket is missing; the same codes as barman's.
#[test]
fn connectivity_tests_exit_as_barmans_on_every_tool() {
    let s3 = S3Server::start();
    s3.create_bucket("conn");
    let links = links_dir();
    let dead = format!("http://127.0.0.1:{}", barrelman_testkit::free_port());
    let extra = |tool: &str| -> &'static [&'static str] {
        match tool {
            // barman 3.19.1 needs a WAL path even with -t (barrelman does not)
            "barman-cloud-wal-archive" => &["pg_wal/000000010000000000000001"],
            "barman-cloud-wal-restore" => &["000000010000000000000001", "/tmp/barrelman-never"],
            "barman-cloud-restore" => &["20200101T000000", "/tmp/barrelman-never"],
            "barman-cloud-backup-show" => &["20200101T000000"],
            "barman-cloud-backup-keep" => &["20200101T000000", "-s"],
            "barman-cloud-backup-delete" => &["-b", "20200101T000000"],
            _ => &[],
        }
    };
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for entry in std::fs::read_dir(&links).unwrap() {
            let tool = entry.unwrap().file_name().to_string_lossy().into_owned();
            let (links, s3, dead, failures) = (&links, &s3, &dead, &failures);
            scope.spawn(move || {
                for (endpoint, url, want) in [
                    (s3.endpoint.as_str(), "s3://conn/p", None),
                    (dead.as_str(), "s3://conn/p", Some(2)),
                    (s3.endpoint.as_str(), "s3://no-such-bucket/p", None),
                ] {
                    let mut args = vec!["-t", "--endpoint-url", endpoint, url, "srv"];
                    args.extend_from_slice(extra(&tool));
                    let ours = super::common::run(&links.join(&tool), &args, s3);
                    let theirs = super::common::run(&tools_bin().join(&tool), &args, s3);
                    let expected = want.or(theirs.status.code());
                    if ours.status.code() != theirs.status.code()
                        || theirs.status.code() != expected
                    {
                        failures.lock().unwrap().push(format!(
                            "{tool} {args:?}: ours {:?}, barman {:?}",
                            ours.status.code(),
                            theirs.status.code()
                        ));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
