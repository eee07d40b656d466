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
