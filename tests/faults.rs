//! Faults injected into a real `cull run` (the `failpoints` feature, which the test
//! script builds with): a stage that panics on one record, a stage that fails outright,
//! a drain that cannot finish in time. Each must end in a dead letter or in one clear
//! error and a non-zero exit, never in a hang or a loss. And a slow start, which the
//! probes must report rather than hide.

use std::process::Stdio;
use std::time::Duration;

use cull_model::DeadLetter;

use crate::durability::{
    cull, jsonl_source, lines, mention, mentions, pipeline, run_once, signal, slack_rules, stopped, tail,
    text, verdict_ids, wait_bounded, wait_until,
};

#[test]
fn a_mention_the_matcher_panics_on_is_dead_lettered_and_the_line_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let rules = slack_rules(dir.path());
    let file = pipeline(dir.path(), &rules, &jsonl_source("input.jsonl", false));
    let input = format!("{}{}{}", mentions("a-", 20), mention("poison"), mentions("b-", 20));
    std::fs::write(dir.path().join("input.jsonl"), input).unwrap();
    let child = cull(dir.path(), &["run", file.to_str().unwrap(), "--once"])
        .env("FAILPOINTS", "stage::record=return(match:poison)")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(60), "cull run --once with a poison mention");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("41 mention(s) in: 40 matched")
            && text(&out.stdout).contains("1 dead letter(s)"),
        "{}",
        text(&out.stdout)
    );
    let letters: Vec<DeadLetter> = lines(&dir.path().join("out/dead-letter.jsonl"));
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].stage, "match");
    assert!(
        letters[0].error.contains("panicked") && letters[0].error.contains("injected fault"),
        "{}",
        letters[0].error
    );
    assert!(letters[0].origin.starts_with("cull.mentions/0/20"), "{}", letters[0].origin);
    let mut verdicts = verdict_ids(dir.path());
    verdicts.sort();
    assert_eq!(verdicts.len(), 40, "every other mention has its verdict");
    assert!(!verdicts.contains(&"poison".to_string()));

    // The matcher's group moved past it: a run with no new input reads nothing again.
    let quiet = pipeline(dir.path(), &rules, "");
    let out = run_once(dir.path(), &quiet, Duration::from_secs(60));
    assert!(text(&out.stdout).starts_with("cull run: 0 mention(s) in"), "{}", text(&out.stdout));
    assert_eq!(lines::<DeadLetter>(&dir.path().join("out/dead-letter.jsonl")).len(), 1, "dead-lettered once");
}

#[test]
fn a_stage_that_fails_outside_a_record_ends_the_process_with_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let rules = slack_rules(dir.path());
    let file = pipeline(dir.path(), &rules, &jsonl_source("input.jsonl", false));
    std::fs::write(dir.path().join("input.jsonl"), mentions("m-", 50)).unwrap();
    let child = cull(dir.path(), &["run", file.to_str().unwrap(), "--once"])
        .env("FAILPOINTS", "stage::flush=return(index)")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(60), "cull run --once with a failing index");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "cull: the index stage, flushing panicked: injected fault: the index stage panics while flushing",
        "{}",
        tail(&stderr)
    );
}

#[test]
fn past_the_shutdown_deadline_the_process_exits_1_naming_what_was_left_and_a_restart_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let rules = slack_rules(dir.path());
    let sources = format!("{}[shutdown]\ndeadline_secs = 1\n", jsonl_source("input.jsonl", false));
    let file = pipeline(dir.path(), &rules, &sources);
    let total = 3000;
    std::fs::write(dir.path().join("input.jsonl"), mentions("m-", total)).unwrap();
    let mut child = cull(dir.path(), &["run", file.to_str().unwrap()])
        // Every stage takes 5 ms per record: the drain cannot end within 1 s.
        .env("FAILPOINTS", "stage::record=sleep(5)")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    {
        let log = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    wait_until(Duration::from_secs(30), "the first verdicts", || !verdict_ids(dir.path()).is_empty());
    signal(&child, "TERM");
    let (status, _) = stopped(child, Duration::from_secs(30), &log);
    assert_eq!(status.code(), Some(1), "{}", tail(&log.lock().unwrap()));
    std::thread::sleep(Duration::from_millis(200));
    let log = log.lock().unwrap().clone();
    let last = log.lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with(
            "cull: the shutdown deadline of 1 s (shutdown.deadline_secs) passed with work left:"
        ) && last.contains("not read by the")
            && last.ends_with("it stays on the bus for the next start"),
        "{last}"
    );

    // Nothing was lost: the next start (no new input) finishes what was left.
    let quiet = pipeline(dir.path(), &rules, "");
    run_once(dir.path(), &quiet, Duration::from_secs(120));
    let verdicts: std::collections::BTreeSet<String> = verdict_ids(dir.path()).into_iter().collect();
    let mentions_on_log = mentions_on_the_log(dir.path());
    assert!(mentions_on_log > 0);
    assert_eq!(verdicts.len(), mentions_on_log, "every mention on the log has its verdict");
}

/// Returns the number of mentions the sources put on the embedded log of `dir`.
fn mentions_on_the_log(dir: &std::path::Path) -> usize {
    let config =
        cull_bus::EmbeddedConfig { dir: dir.join("data/bus"), ..cull_bus::EmbeddedConfig::default() };
    let bus = cull_bus::EmbeddedBus::open(&config).unwrap();
    usize::try_from(bus.end_offset("cull.mentions")).unwrap()
}

/// While the pipeline starts (here its ticketing stage reads its state back slowly),
/// the process answers `/healthz` and `/readyz` says which step it is in; then it is
/// ready. An orchestrator neither restarts it nor sends it work meanwhile.
#[test]
fn during_a_slow_start_healthz_answers_and_readyz_names_the_step_until_ready() {
    let dir = tempfile::tempdir().unwrap();
    let rules = slack_rules(dir.path());
    let file = pipeline(dir.path(), &rules, "");
    let mut child = cull(dir.path(), &["run", file.to_str().unwrap()])
        .env("FAILPOINTS", "stage::restore=sleep(3000)")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = crate::pipeline::listening_address(&mut child);
    let mut reasons: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (live, _) = crate::pipeline::get(&address, "/healthz").unwrap();
        assert_eq!(live, 200, "not live while starting");
        let (status, body) = crate::pipeline::get(&address, "/readyz").unwrap();
        if status == 200 {
            assert_eq!(body, "ready\n");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(body.starts_with("not ready: starting"), "{body}");
        if reasons.last() != Some(&body) {
            reasons.push(body);
        }
        assert!(std::time::Instant::now() < deadline, "never ready: {reasons:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        reasons.last().map(String::as_str),
        Some("not ready: starting: restoring ticket state\n"),
        "the last step before ready: {reasons:?}"
    );
}
