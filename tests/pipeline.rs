//! `cull run` on the embedded bus, as an operator runs it: a pipeline file, sources,
//! sinks, metrics and health over HTTP, dead letters, signals.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use cull_model::{DeadLetter, Ticket, Verdict};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Writes a pipeline file into `dir` whose source is `source` and whose sinks are in
/// `dir`, with the other settings of pipelines/local.toml.
fn pipeline(dir: &Path, source: &Path, listen: &str, max_bytes: usize) -> PathBuf {
    let text = format!(
        r#"[bus]
kind = "embedded"
[bus.embedded]
dir = "{dir}/bus"
[matcher]
rules = "rules"
max_mention_bytes = {max_bytes}
[[source]]
kind = "jsonl"
name = "test"
path = "{source}"
[sink.tickets]
kind = "jsonl"
path = "{dir}/tickets.jsonl"
[sink.verdicts]
kind = "jsonl"
path = "{dir}/verdicts.jsonl"
[sink.dead_letter]
kind = "jsonl"
path = "{dir}/dead-letter.jsonl"
[http]
listen = "{listen}"
"#,
        source = source.display(),
        dir = dir.display()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

pub fn cull(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cull"));
    command.args(args).current_dir(repo()).envs(env.iter().copied()).stdin(Stdio::null());
    command
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

#[test]
fn run_once_turns_demo_mentions_into_tickets_and_bad_lines_into_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("mentions.jsonl");
    let mut input = std::fs::read(repo().join("pipelines/demo/mentions.jsonl")).unwrap();
    input.extend_from_slice(b"{\"schema\":\"cull.mention/v1\",\"id\":\"broken\"\n");
    input.extend_from_slice(b"{\"schema\":\"cull.mention/v9\",\"id\":\"future\",\"text\":\"x\"}\n");
    input.extend_from_slice(b"{\"schema\":\"cull.mention/v1\",\"id\":\"bytes\",\"text\":\"caf\xe9\"}\n");
    input.extend_from_slice(
        format!("{{\"schema\":\"cull.mention/v1\",\"id\":\"big\",\"text\":\"{}\"}}\n", "a".repeat(5000))
            .as_bytes(),
    );
    std::fs::write(&source, &input).unwrap();
    let file = pipeline(dir.path(), &source, "127.0.0.1:0", 4096);
    let out: Output = cull(&["run", file.to_str().unwrap(), "--once"], &[]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The summary, then the decision table.
    assert_eq!(
        text(&out.stdout).lines().next(),
        Some(
            "cull run: 14 mention(s) in: 6 matched, 5 culled, 3 unmatched; 6 ticket(s) out; 4 dead letter(s)"
        )
    );

    let verdicts: Vec<Verdict> = lines(&dir.path().join("verdicts.jsonl"));
    assert_eq!(verdicts.len(), 14);
    let tickets: Vec<Ticket> = lines(&dir.path().join("tickets.jsonl"));
    let mut ticketed: Vec<(String, String)> =
        tickets.iter().map(|t| (t.rule.id.clone(), t.mention.id.clone())).collect();
    ticketed.sort();
    let mut matched: Vec<(String, String)> = verdicts
        .iter()
        .flat_map(|v| v.matched.iter().map(move |m| (m.rule_id.to_string(), v.mention_id.clone())))
        .collect();
    matched.sort();
    assert_eq!(ticketed, matched, "one ticket per true match");
    for ticket in &tickets {
        assert_eq!(ticket.schema, "cull.ticket/v1");
        // The id names the thread and the mention that opened the ticket, so a replay
        // or a restart gives the same id.
        let thread = cull_model::thread::thread_key(&ticket.mention);
        assert_eq!(ticket.revision, 1, "the demo's mentions are one thread each");
        assert_eq!(
            ticket.ticket_id,
            cull_model::ticket_id(&format!("{thread}@{}", ticket.mention.id), &ticket.rule.id)
        );
        assert!(!ticket.snippet.is_empty() && !ticket.spans.is_empty());
    }

    let letters: Vec<DeadLetter> = lines(&dir.path().join("dead-letter.jsonl"));
    let mut errors: Vec<(String, String)> =
        letters.iter().map(|l| (l.stage.clone(), l.error.clone())).collect();
    errors.sort();
    assert_eq!(letters.len(), 4, "{errors:?}");
    // The source validates each line, so bad lines stop at ingest with their file:line.
    assert!(errors.iter().any(|(s, e)| s == "ingest" && e.starts_with("malformed JSON")), "{errors:?}");
    assert!(errors.iter().any(|(s, e)| s == "ingest" && e.starts_with("unsupported schema")), "{errors:?}");
    assert!(
        errors.iter().any(|(s, e)| s == "ingest" && e.starts_with("record is not valid UTF-8")),
        "{errors:?}"
    );
    let oversized =
        letters.iter().find(|l| l.error.contains("over the limit of 4096 bytes")).expect("oversized");
    assert_eq!(oversized.stage, "ingest");
    assert!(oversized.origin.ends_with("mentions.jsonl:18"), "{}", oversized.origin);
    let utf8 = letters.iter().find(|l| l.error.contains("UTF-8")).unwrap();
    let original = base64::engine::general_purpose::STANDARD.decode(&utf8.original_base64).unwrap();
    assert_eq!(original, b"{\"schema\":\"cull.mention/v1\",\"id\":\"bytes\",\"text\":\"caf\xe9\"}");
    assert!(utf8.origin.ends_with("mentions.jsonl:17"), "{}", utf8.origin);
}

/// Returns the dedupe window a ticket's mention falls in (demo mentions carry no time,
/// so it is the window of the ticket's creation).
/// Sends one HTTP/1.1 GET and returns the status code and body.
pub fn get(address: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Returns the address the server of a running `cull run` listens on, from its log.
pub fn listening_address(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("stderr");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stderr);
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut reader, &mut line).map(|n| n > 0).unwrap_or(false) {
            if let Some(address) = line.split("listen=").nth(1) {
                let _ = sender.send(address.trim().to_string());
            }
            line.clear();
        }
    });
    receiver.recv_timeout(Duration::from_secs(30)).expect("cull run logs its listen address")
}

/// Waits until the `cull run` at `address` listens and says it is ready: its webhooks
/// and API answer `503` while the pipeline is still being built.
pub fn wait_ready(address: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = get(address, "/readyz");
        if matches!(answer, Ok((200, _))) {
            return;
        }
        assert!(Instant::now() < deadline, "{address} never ready: {answer:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn live_metrics_pass_promtool_and_sigterm_stops_gracefully() {
    let promtool = which("promtool")
        .expect("promtool is missing: scripts/test.sh installs it (Debian package prometheus)");
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &repo().join("pipelines/demo/mentions.jsonl"), "127.0.0.1:0", 1 << 20);
    let mut child = cull(&["run", file.to_str().unwrap()], &[("RUST_LOG", "info")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = listening_address(&mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (ready, _) = get(&address, "/readyz").unwrap();
        let (_, metrics) = get(&address, "/metrics").unwrap();
        let ticketed = metrics.contains("cull_stage_batch_records_count{stage=\"tickets\"}");
        if ready == 200 && ticketed && metrics.contains("cull_matcher_mentions_total{outcome=\"matched\"} 6")
        {
            break metrics;
        }
        assert!(Instant::now() < deadline, "not ready with all demo mentions matched: {metrics}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(get(&address, "/healthz").unwrap().0, 200);
    for name in [
        "cull_stage_batch_duration_seconds_bucket{stage=\"match\"",
        "cull_stage_batch_duration_seconds_bucket{stage=\"tickets\"",
        "cull_consumer_lag_messages{group=\"cull-matcher\",partition=\"0\",topic=\"cull.mentions\"} 0",
        "cull_stage_panics_total{stage=\"match\"} 0",
        "cull_tickets_emitted_total{priority=\"P2\",queue=\"publisher-care\"} 2",
        "cull_rule_mentions_total{outcome=\"matched\",rule=\"connections-magazine\"} 2",
        "cull_source_mentions_total{source=\"test\"} 14",
        "cull_rules_loaded 7",
        "cull_build_info{version=\"",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(checked.status.success(), "promtool: {}{}", text(&checked.stdout), text(&checked.stderr));

    // SIGTERM: the pipeline finishes the batch in hand, commits and exits 0 with its summary.
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    assert!(text(&out.stdout).starts_with("cull run: 14 mention(s) in: 6 matched"), "{}", text(&out.stdout));
}

/// `--log-format json` and `CULL_LOG_FORMAT=json` write one JSON object per line, each
/// with its time, level, target, message and fields, for a log collector to take as is.
#[test]
fn json_logs_are_one_object_per_line_with_time_level_target_message_and_fields() {
    for (flags, env) in
        [(&["--log-format", "json"][..], &[][..]), (&[][..], &[("CULL_LOG_FORMAT", "json")][..])]
    {
        let dir = tempfile::tempdir().unwrap();
        let file =
            pipeline(dir.path(), &repo().join("pipelines/demo/mentions.jsonl"), "127.0.0.1:0", 1 << 20);
        let args = [&["run", file.to_str().unwrap(), "--once"][..], flags].concat();
        let out = cull(&args, &[env, &[("RUST_LOG", "info")]].concat()).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        let events: Vec<serde_json::Value> = stderr
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not a JSON line: {line}")))
            .collect();
        assert!(!events.is_empty(), "{flags:?} {env:?}: no log");
        for event in &events {
            for key in ["timestamp", "level", "target"] {
                assert!(event[key].is_string(), "no {key}: {event}");
            }
            assert!(event["fields"]["message"].is_string(), "no message: {event}");
        }
        let serving = events
            .iter()
            .find(|event| event["fields"]["message"] == "serving metrics and health")
            .unwrap_or_else(|| panic!("{stderr}"));
        assert_eq!(serving["level"], "INFO");
        assert_eq!(serving["target"], "cull::pipeline");
        assert!(serving["fields"]["listen"].as_str().unwrap().starts_with("127.0.0.1:"), "{serving}");
    }
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// Runs `cull run --once` over the demo mentions with sinks in `dir` and a rule pack of
/// one file, `rules.toml`, chosen through the `CULL__MATCHER__RULES` override.
fn run_demo_with_rules(dir: &Path, rules_toml: &str) -> Output {
    let rules = dir.join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("rules.toml"), rules_toml).unwrap();
    let file = pipeline(dir, &repo().join("pipelines/demo/mentions.jsonl"), "127.0.0.1:0", 1 << 20);
    cull(&["run", file.to_str().unwrap(), "--once"], &[("CULL__MATCHER__RULES", rules.to_str().unwrap())])
        .output()
        .unwrap()
}

#[test]
fn configuration_errors_name_the_key_and_environment_overrides_apply() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[matcher]\nbatch_sise = 10\n").unwrap();
    let out = cull(&["run", bad.to_str().unwrap(), "--once"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("matcher.batch_sise"), "{}", text(&out.stderr));

    let out = run_demo_with_rules(dir.path(), "[[rule]]\nid = 'apple-only'\nquery = 'apple'\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tickets: Vec<Ticket> = lines(&dir.path().join("tickets.jsonl"));
    assert!(!tickets.is_empty() && tickets.iter().all(|t| t.rule.id == "apple-only"));
}

#[test]
fn embedded_topics_without_a_sink_do_not_block_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("mentions.jsonl");
    let lines: String = (0..3000)
        .map(|i| {
            format!("{{\"schema\":\"cull.mention/v1\",\"id\":\"m{i}\",\"text\":\"Slack shares rise {i}\"}}\n")
        })
        .collect();
    std::fs::write(&source, lines).unwrap();
    let file = dir.path().join("pipeline.toml");
    let config = format!(
        "[bus.embedded]\ncapacity = 16\ndir = \"{}/bus\"\n[matcher]\nbatch_size = 64\n[[source]]\nkind = \"jsonl\"\nname = \"s\"\npath = \"{}\"\n[sink.tickets]\nkind = \"jsonl\"\npath = \"{}/tickets.jsonl\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        dir.path().display(),
        source.display(),
        dir.path().display()
    );
    std::fs::write(&file, config).unwrap();
    let mut child =
        cull(&["run", file.to_str().unwrap(), "--once"], &[]).stdout(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cull run --once did not finish: a topic without a sink blocked it");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("3000 mention(s) in: 3000 matched"), "{}", text(&out.stdout));
    assert_eq!(std::fs::read_to_string(dir.path().join("tickets.jsonl")).unwrap().lines().count(), 3000);
}

#[test]
fn run_refuses_a_broken_rule_pack_with_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_demo_with_rules(dir.path(), "[[rule]]\nid = 'x'\nquery = 'NOT slack'\n");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("rules.toml:3:10 (rule `x`)") && stderr.contains("cannot be only NOT"),
        "{stderr}"
    );
    assert!(!dir.path().join("tickets.jsonl").exists(), "nothing ran");
}

/// Plain text reaches the matcher as written: `cull run` decides what `cull match`
/// decides for the same lines (before, an HTML converter deleted "<script> …" and
/// "<Slack>" from JSON-lines mentions, and a byte-order mark dead-lettered line 1).
#[test]
fn run_matches_plain_text_as_written_as_cull_match_does() {
    let dir = tempfile::tempdir().unwrap();
    let texts = [
        "Write a <script> to call the Slack API",
        "<Slack> is down again",
        "Slack outage: if a<b and b>c the app hangs",
        "Slack\u{1b}[2J app \u{7}crashed",
    ];
    let mut input = String::from("\u{FEFF}");
    for (i, text) in texts.iter().enumerate() {
        input.push_str(
            &serde_json::json!({"schema": "cull.mention/v1", "id": format!("p{i}"), "text": text})
                .to_string(),
        );
        input.push('\n');
    }
    let source = dir.path().join("plain.jsonl");
    std::fs::write(&source, &input).unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("r.toml"), "[[rule]]\nid = 'slack'\nquery = 'slack'\n").unwrap();

    let offline =
        cull(&["match", "--rules", rules.to_str().unwrap(), source.to_str().unwrap()], &[]).output().unwrap();
    let offline: Vec<Verdict> =
        text(&offline.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(offline.iter().filter(|v| !v.matched.is_empty()).count(), texts.len());

    let file = pipeline(dir.path(), &source, "127.0.0.1:0", 1 << 20);
    let out = cull(
        &["run", file.to_str().unwrap(), "--once"],
        &[("CULL__MATCHER__RULES", rules.to_str().unwrap())],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let verdicts: Vec<Verdict> = lines(&dir.path().join("verdicts.jsonl"));
    assert_eq!(verdicts.len(), texts.len(), "{}", text(&out.stdout));
    assert!(verdicts.iter().all(|v| v.matched.iter().any(|m| m.rule_id == "slack")), "{verdicts:#?}");
    let mentions: Vec<String> = verdicts.iter().map(|v| v.mention.as_ref().unwrap().text.clone()).collect();
    assert!(
        mentions.contains(&texts[0].to_string()) && mentions.contains(&texts[1].to_string()),
        "{mentions:?}"
    );
    assert!(
        mentions.iter().all(|t| !t.contains(['\u{1b}', '\u{7}'])),
        "control characters removed: {mentions:?}"
    );
}

/// Writes `pipeline.toml` into `dir` from `body`, on an embedded bus of its own.
fn pipeline_file(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("pipeline.toml");
    let text =
        format!("[bus.embedded]\ndir = \"{}/bus\"\n[http]\nlisten = \"127.0.0.1:0\"\n{body}", dir.display());
    std::fs::write(&path, text).unwrap();
    path
}

/// The README's promise on the embedded bus: an author's posts are one ticket, its
/// retweets join it, and a restart continues its revisions (it used to start again at
/// revision 1, which a consumer keeping the highest revision drops).
#[test]
fn a_thread_stays_one_ticket_across_a_restart_and_its_revisions_keep_growing() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("in.jsonl");
    let file = pipeline(dir.path(), &source, "127.0.0.1:0", 1 << 20);
    let post = |id: &str, author: &str, text: &str, minute: u32| {
        serde_json::json!({
            "schema": "cull.mention/v1", "id": id, "author": author, "channel": "twitter",
            "url": format!("https://x.example/{author}/status/{id}"), "lang": "en",
            "published_at": format!("2026-12-01T10:{minute:02}:00Z"), "text": text,
        })
        .to_string()
    };
    let complaint = "Slack is down again for the whole support team, the messaging app is useless";
    let mut first: Vec<String> = (0..3).map(|i| post(&format!("a{i}"), "@angry", complaint, i)).collect();
    first.extend(
        (0..5).map(|i| {
            post(&format!("rt{i}"), &format!("@fan{i}"), &format!("RT @angry: {complaint}"), 10 + i)
        }),
    );
    std::fs::write(&source, first.join("\n") + "\n").unwrap();
    let run = || {
        let out = cull(&["run", file.to_str().unwrap(), "--once"], &[]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    run();
    std::fs::write(&source, post("later", "@angry", complaint, 30) + "\n").unwrap();
    run();
    let tickets: Vec<Ticket> = lines(&dir.path().join("tickets.jsonl"));
    let ids: std::collections::BTreeSet<&str> = tickets.iter().map(|t| t.ticket_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one ticket for an author, their posts and the retweets of them: {ids:?}");
    let revisions: Vec<u32> = tickets.iter().map(|t| t.revision).collect();
    assert_eq!(revisions, (1..=9).collect::<Vec<u32>>(), "the restart went on at revision 9");
    let last = tickets.last().unwrap();
    assert_eq!((last.mention_count, last.mention.id.as_str()), (9, "later"));
    assert_eq!(last.sla_due_at, tickets[0].sla_due_at, "the deadline set at the first revision holds");
    assert_eq!(last.arrival_at, "2026-12-01T10:00:00Z");
}

/// `cull config check` passes exactly when `cull run` would start: what the run checks
/// in the environment (a webhook's secret variable, the rules directory, API tokens)
/// the check reports too, each naming its key.
#[test]
fn config_check_refuses_what_run_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[source]]\nkind = \"webhook\"\nname = \"hook\"\nsecret_env = \"CULL_TEST_UNSET_SECRET\"\n",
            "source[0].secret_env",
        ),
        ("[matcher]\nrules = \"no/such/rules\"\n", "no/such/rules"),
        (
            "[matcher]\nenabled = false\nrules = \"no/such/rules\"\n[tickets]\nenabled = true\n",
            "no/such/rules",
        ),
        (
            "[matcher]\nenabled = false\n[[source]]\nkind = \"webhook\"\nname = \"hook\"\n",
            "matcher.enabled: false, but the sources (hook) acknowledge mentions",
        ),
        (
            "[api]\nenabled = true\n[index]\nenabled = true\n",
            "api.tokens: CULL_API_TOKENS entry 1: the token has 6 characters",
        ),
    ];
    for (body, expected) in cases {
        let file = pipeline_file(dir.path(), body);
        let env = [("CULL_API_TOKENS", "analyst@*:try-me")];
        let check = cull(&["config", "check", file.to_str().unwrap()], &env).output().unwrap();
        assert_ne!(check.status.code(), Some(0), "config check passed: {body}");
        assert!(text(&check.stderr).contains(expected), "config check of {body}: {}", text(&check.stderr));
        let run = cull(&["run", file.to_str().unwrap(), "--once"], &env).output().unwrap();
        assert_ne!(run.status.code(), Some(0), "run started: {body}");
        assert!(text(&run.stderr).contains(expected), "run of {body}: {}", text(&run.stderr));
    }
    let ingest_only = pipeline_file(dir.path(), "[bus]\nkind = \"kafka\"\n[bus.kafka]\nbrokers = \"127.0.0.1:1\"\n[matcher]\nenabled = false\nrules = \"no/such/rules\"\n[tickets]\nenabled = false\n[index]\nenabled = false\n");
    let check = cull(&["config", "check", ingest_only.to_str().unwrap()], &[]).output().unwrap();
    assert!(
        check.status.success(),
        "a process without matcher or tickets needs no rules: {}",
        text(&check.stderr)
    );
}
