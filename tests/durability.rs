//! What a contact center is promised on the embedded bus: a mention that was
//! acknowledged (a 2xx, an advanced cursor) is never lost, whatever happens to the
//! process, and one bad mention never stops the line.
//!
//! Each test here reproduces a failure that was observed on an earlier version: it
//! runs `cull run` as an operator does, in a data directory of its own, and breaks it
//! the way production does (SIGTERM under load, `kill -9`, a restart into the same
//! data directory, a poison mention, a followed file across a restart).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cull_model::{DeadLetter, Ticket, Verdict};

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Returns `cull` with `args`, run in `dir` (so that the default `data/` is the test's).
pub fn cull(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cull"));
    command.args(args).current_dir(dir).stdin(Stdio::null());
    command
}

/// A rules directory in `dir` with one rule, `slack`, matching every test mention.
pub fn slack_rules(dir: &Path) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("slack.toml"), "[[rule]]\nid = 'slack'\nquery = 'slack'\nqueue = 'care'\n")
        .unwrap();
    rules
}

/// Writes `pipeline.toml` into `dir`: the embedded bus with its default data
/// directory (`data/` under `dir`), the rules of `rules`, `sources` (TOML of
/// `[[source]]` tables), file sinks in `dir` and the index in `data/index`.
pub fn pipeline(dir: &Path, rules: &Path, sources: &str) -> PathBuf {
    let text = format!(
        "[matcher]\nrules = \"{rules}\"\nwatch = false\n\
         [index]\nenabled = true\ncommit_secs = 1\n\
         {sources}\n\
         [sink.tickets]\nkind = \"jsonl\"\npath = \"out/tickets.jsonl\"\n\
         [sink.verdicts]\nkind = \"jsonl\"\npath = \"out/verdicts.jsonl\"\n\
         [sink.dead_letter]\nkind = \"jsonl\"\npath = \"out/dead-letter.jsonl\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n",
        rules = rules.display(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn jsonl_source(path: &str, follow: bool) -> String {
    format!(
        "[[source]]\nkind = \"jsonl\"\nname = \"file\"\npath = \"{path}\"\nfollow = {follow}\n{}",
        if follow { "follow_interval_ms = 50\n" } else { "" }
    )
}

pub fn mention(id: &str) -> String {
    format!("{{\"schema\":\"cull.mention/v1\",\"id\":\"{id}\",\"text\":\"Slack is down again for {id}\"}}\n")
}

pub fn mentions(prefix: &str, count: usize) -> String {
    (0..count).map(|i| mention(&format!("{prefix}{i}"))).collect()
}

/// Returns the JSON lines of `path` (none when it does not exist yet).
pub fn lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

pub fn verdict_ids(dir: &Path) -> Vec<String> {
    lines::<Verdict>(&dir.join("out/verdicts.jsonl")).into_iter().map(|v| v.mention_id).collect()
}

/// Returns the ids of every mention in the index of `dir`, one entry per document.
fn indexed_ids(dir: &Path) -> Vec<String> {
    let out = cull(dir, &["search", "--index", "data/index", "--json", "--limit", "1000"]).output().unwrap();
    assert!(out.status.success(), "cull search: {}", text(&out.stderr));
    let response: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hits = response["hits"].as_array().expect("hits");
    assert_eq!(response["total"].as_u64(), Some(hits.len() as u64), "one page holds every hit");
    hits.iter().map(|hit| hit["id"].as_str().expect("hit id").to_string()).collect()
}

/// Runs `cull run PIPELINE --once` in `dir` and returns what it printed; fails the test
/// after `limit` (a hang) or on a non-zero exit.
pub fn run_once(dir: &Path, file: &Path, limit: Duration) -> Output {
    let child = cull(dir, &["run", file.to_str().unwrap(), "--once"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, limit, "cull run --once");
    assert!(out.status.success(), "exit {:?}: {}", out.status, text(&out.stderr));
    out
}

/// Waits for `child` to end; kills it and fails the test after `limit`.
pub fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let collect =
        |pipe: Option<std::thread::JoinHandle<Vec<u8>>>| pipe.map(|p| p.join().unwrap()).unwrap_or_default();
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    let Some(status) = status else {
        panic!("{what} did not end within {limit:?} (a hang); killed it.\nstderr: {}", tail(&text(&stderr)));
    };
    Output { status, stdout, stderr }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

pub fn tail(log: &str) -> &str {
    let start = log.char_indices().rev().nth(3000).map_or(0, |(i, _)| i);
    &log[start..]
}

pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -{name}");
}

/// Starts `cull run PIPELINE` in `dir` and returns it with the address its HTTP server
/// listens on (read from its log); the rest of its log is collected for failures.
pub fn start(dir: &Path, file: &Path) -> (Child, String, Arc<Mutex<String>>) {
    let mut child = cull(dir, &["run", file.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (sender, receiver) = std::sync::mpsc::channel();
    {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.split("listen=").nth(1) {
                    let _ = sender.send(address.trim().to_string());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
    }
    let address = receiver.recv_timeout(Duration::from_secs(30)).expect("cull run logs its listen address");
    (child, address, log)
}

/// Waits for `child` to end after a signal, bounded, and returns its exit status and
/// standard output.
pub fn stopped(mut child: Child, limit: Duration, log: &Mutex<String>) -> (ExitStatus, String) {
    let stdout = child.stdout.take().map(drain);
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = stdout.map(|s| s.join().unwrap()).unwrap_or_default();
            return (status, text(&out));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cull run did not exit within {limit:?} of the signal (a hang).\nlog: {}",
                tail(&log.lock().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `done` holds, polling; fails with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Posts `body` to `path` with a fresh connection; returns the status (0 when the
/// server could not be reached or answered nothing).
fn post(address: &str, path: &str, body: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect(address) else { return 0 };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn a_second_run_into_the_same_data_directory_indexes_every_mention() {
    let dir = tempfile::tempdir().unwrap();
    let rules = slack_rules(dir.path());
    let file = pipeline(dir.path(), &rules, &jsonl_source("input.jsonl", false));
    std::fs::write(dir.path().join("input.jsonl"), mentions("first-", 5)).unwrap();
    let out = run_once(dir.path(), &file, Duration::from_secs(60));
    assert!(
        text(&out.stdout).contains("5 mention(s) in") && text(&out.stdout).contains("5 indexed"),
        "{}",
        text(&out.stdout)
    );

    std::fs::write(dir.path().join("input.jsonl"), mentions("second-", 8)).unwrap();
    let out = run_once(dir.path(), &file, Duration::from_secs(60));
    assert!(
        text(&out.stdout).contains("8 mention(s) in") && text(&out.stdout).contains("8 indexed"),
        "the second run indexes all of its 8 mentions: {}",
        text(&out.stdout)
    );
    let mut indexed = indexed_ids(dir.path());
    indexed.sort();
    let mut expected: Vec<String> =
        (0..5).map(|i| format!("first-{i}")).chain((0..8).map(|i| format!("second-{i}"))).collect();
    expected.sort();
    assert_eq!(indexed, expected, "the index holds the 13 mentions of both runs, once each");
}

/// Four clients post 500-mention batches to a webhook; the process is stopped after the
/// `after`-th `202`; returns every id that got a `202` and how the process ended.
fn webhook_under_load(dir: &Path, stop: &str, after: usize) -> (BTreeSet<String>, ExitStatus, String) {
    let rules = slack_rules(dir);
    let file = pipeline(dir, &rules, "[[source]]\nkind = \"webhook\"\nname = \"hook\"\n");
    let (child, address, log) = start(dir, &file);
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let answers = Arc::new(AtomicUsize::new(0));
    let halt = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (address, accepted, answers, halt) =
                (address.clone(), Arc::clone(&accepted), Arc::clone(&answers), Arc::clone(&halt));
            std::thread::spawn(move || {
                for batch in 0.. {
                    if halt.load(Ordering::Relaxed) {
                        return;
                    }
                    let ids: Vec<String> = (0..500).map(|i| format!("c{client}-b{batch}-{i}")).collect();
                    let body = format!(
                        "[{}]",
                        ids.iter().map(|id| mention(id).trim_end().to_string()).collect::<Vec<_>>().join(",")
                    );
                    match post(&address, "/ingest/hook", &body) {
                        202 => {
                            accepted.lock().unwrap().extend(ids);
                            answers.fetch_add(1, Ordering::SeqCst);
                        }
                        0 => return,
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        })
        .collect();
    wait_until(Duration::from_secs(60), "the 202 answers", || answers.load(Ordering::SeqCst) >= after);
    signal(&child, stop);
    let (status, stdout) = stopped(child, Duration::from_secs(60), &log);
    halt.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    (accepted, status, stdout)
}

#[test]
fn every_mention_acknowledged_with_a_202_has_a_verdict_after_sigterm_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let (accepted, status, stdout) = webhook_under_load(dir.path(), "TERM", 9);
    assert!(status.success(), "SIGTERM drains and exits 0: {status:?} {stdout}");
    assert!(accepted.len() >= 4500, "{} accepted", accepted.len());
    let verdicts: BTreeSet<String> = verdict_ids(dir.path()).into_iter().collect();
    let missing: Vec<&String> = accepted.difference(&verdicts).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged mentions have no verdict, e.g. {:?}",
        missing.len(),
        accepted.len(),
        &missing[..missing.len().min(5)]
    );
    let mut indexed = indexed_ids_all(dir.path());
    indexed.sort();
    let unique: BTreeSet<&String> = indexed.iter().collect();
    assert_eq!(unique.len(), indexed.len(), "one document per mention");
    assert!(accepted.iter().all(|id| unique.contains(id)), "every acknowledged mention is indexed");
}

#[test]
fn every_mention_acknowledged_with_a_202_has_a_verdict_after_kill_9_and_a_restart() {
    // Killed early, as observed (after the ninth answer), and later under more load.
    for after in [1, 9, 20] {
        let dir = tempfile::tempdir().unwrap();
        let (accepted, _, _) = webhook_under_load(dir.path(), "KILL", after);
        assert!(accepted.len() >= after * 500, "{} accepted", accepted.len());
        // The restart has no webhook: it drains what the killed process left on the log.
        let rules = dir.path().join("rules");
        let file = pipeline(dir.path(), &rules, "");
        run_once(dir.path(), &file, Duration::from_secs(120));
        let verdicts: BTreeSet<String> = verdict_ids(dir.path()).into_iter().collect();
        let missing: Vec<&String> = accepted.difference(&verdicts).collect();
        assert!(
            missing.is_empty(),
            "killed after {after} answers: {} of {} acknowledged mentions have no verdict, e.g. {:?}",
            missing.len(),
            accepted.len(),
            &missing[..missing.len().min(5)]
        );
        let indexed = indexed_ids_all(dir.path());
        let unique: BTreeSet<&String> = indexed.iter().collect();
        assert_eq!(unique.len(), indexed.len(), "one document per mention");
        assert!(accepted.iter().all(|id| unique.contains(id)), "every acknowledged mention is indexed");
    }
}

/// Returns the ids of every document in the index, however many there are.
fn indexed_ids_all(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    let mut offset = 0;
    loop {
        let out = cull(
            dir,
            &[
                "search",
                "--index",
                "data/index",
                "--json",
                "--limit",
                "1000",
                "--offset",
                &offset.to_string(),
            ],
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "cull search: {}", text(&out.stderr));
        let response: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let hits = response["hits"].as_array().expect("hits");
        ids.extend(hits.iter().map(|hit| hit["id"].as_str().expect("hit id").to_string()));
        offset += hits.len();
        if hits.is_empty() || offset as u64 >= response["total"].as_u64().unwrap() {
            return ids;
        }
    }
}

#[test]
fn sigterm_during_a_large_input_never_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    std::fs::write(&input, mentions("big-", 200_000)).unwrap();
    let rules = slack_rules(dir.path());
    let runs: Vec<_> = (0..20u64)
        .map(|run| {
            let (input, rules) = (input.clone(), rules.clone());
            move || {
                let run_dir = tempfile::tempdir().unwrap();
                let file = pipeline(run_dir.path(), &rules, &jsonl_source(input.to_str().unwrap(), false));
                let (child, _, log) = start(run_dir.path(), &file);
                // 2 to 7 seconds after the start, as observed.
                std::thread::sleep(Duration::from_millis(2000 + run * 5000 / 19));
                signal(&child, "TERM");
                let (status, stdout) = stopped(child, Duration::from_secs(60), &log);
                assert!(
                    status.success(),
                    "run {run}: a drained shutdown exits 0: {status:?}\n{stdout}\n{}",
                    tail(&log.lock().unwrap())
                );
                let summary = stdout.lines().last().unwrap_or_default().to_string();
                let verdicts = verdict_ids(run_dir.path()).len();
                assert!(
                    summary.contains(&format!("{verdicts} mention(s) in")),
                    "run {run}: every mention read has its verdict: {summary} ({verdicts} verdicts)"
                );
            }
        })
        .collect();
    // Two at a time: the machine has two cores.
    let mut runs = runs.into_iter();
    loop {
        let pair: Vec<_> = runs.by_ref().take(2).map(std::thread::spawn).collect();
        if pair.is_empty() {
            break;
        }
        for run in pair {
            run.join().expect("a run failed");
        }
    }
}

#[test]
fn a_span_of_another_field_never_panics_the_ticket_snippet() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("bob.toml"), "[[rule]]\nid = 'bob'\nquery = 'author:bob'\n").unwrap();
    std::fs::write(
        dir.path().join("input.jsonl"),
        "{\"schema\":\"cull.mention/v1\",\"id\":\"m1\",\"author\":\"bob\",\"text\":\"ééééé café\"}\n",
    )
    .unwrap();
    let file = pipeline(dir.path(), &rules, &jsonl_source("input.jsonl", false));
    let out = run_once(dir.path(), &file, Duration::from_secs(60));
    assert!(text(&out.stdout).contains("1 ticket(s) out"), "{}", text(&out.stdout));
    let tickets: Vec<Ticket> = lines(&dir.path().join("out/tickets.jsonl"));
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].snippet, "ééééé café", "the author span is not applied to the text");
    assert!(tickets[0].spans.iter().all(|s| s.field == "author"), "{:?}", tickets[0].spans);
}

#[test]
fn a_followed_file_resumes_at_its_cursor_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rules = slack_rules(dir.path());
    let file = pipeline(dir.path(), &rules, &jsonl_source("followed.jsonl", true));
    let followed = dir.path().join("followed.jsonl");
    std::fs::write(&followed, format!("{}not json\n", mentions("early-", 5))).unwrap();
    let tickets = || lines::<Ticket>(&dir.path().join("out/tickets.jsonl")).len();
    let letters = || lines::<DeadLetter>(&dir.path().join("out/dead-letter.jsonl")).len();

    let (child, _, log) = start(dir.path(), &file);
    wait_until(Duration::from_secs(30), "5 tickets", || tickets() == 5 && letters() == 1);
    signal(&child, "TERM");
    let (status, _) = stopped(child, Duration::from_secs(30), &log);
    assert!(status.success());

    // Appended while cull was down: read after the restart, and nothing twice.
    let mut appending = std::fs::OpenOptions::new().append(true).open(&followed).unwrap();
    appending.write_all(mentions("late-", 2).as_bytes()).unwrap();
    let (child, _, log) = start(dir.path(), &file);
    wait_until(Duration::from_secs(30), "7 tickets", || tickets() >= 7);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "TERM");
    let (status, _) = stopped(child, Duration::from_secs(30), &log);
    assert!(status.success());
    assert_eq!(tickets(), 7, "the restart read only what was new");
    assert_eq!(letters(), 1, "the bad line was dead-lettered once");
}
