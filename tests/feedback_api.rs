//! Agents' dispositions through the API of a running `cull run`: a disposition that
//! closes a ticket frees room in its queue's `max_open`, bad bodies and foreign clients
//! are refused, a bad record on the feedback topic is dead-lettered, the quality
//! stage's store reports the rule's precision (API and `cull rules stats` alike), and
//! all of it survives a restart into the same data directory.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cull_bus::{EmbeddedBus, EmbeddedConfig, Message};
use cull_model::{DeadLetter, Disposition, Feedback, Ticket, TicketKind};
use cull_ticket::{ChangelogRecord, TicketState};
use serde_json::Value;
use time::OffsetDateTime;

use crate::pipeline::{cull, get, text};

/// The contact center's analysts (every client's tickets and the center's own).
const STAFF: &str = "staff-an-token-0123456789";
/// An analyst of client acme.
const ACME: &str = "acme-an-token-0123456789";
const TOKENS: &str = "analyst@*:staff-an-token-0123456789,analyst@acme:acme-an-token-0123456789";

/// One global rule on queue `care`, which takes two open tickets at most and has no
/// overflow queue: a third thread goes into the queue's digest.
const RULE: &str =
    "[[rule]]\nid = \"brand\"\nname = \"Zorblax\"\nquery = 'zorblax'\npriority = \"P3\"\nqueue = \"care\"\n";

/// How long anything the pipeline does may take before a test gives up.
const PATIENCE: Duration = Duration::from_secs(30);

/// Writes the pipeline file: everything (bus, state, index, store, sinks) in `dir`.
fn pipeline(dir: &Path) -> PathBuf {
    let text = format!(
        r#"[bus]
kind = "embedded"
[bus.embedded]
dir = "{d}/bus"
[matcher]
rules = "{d}/rules"
watch = false
batch_wait_ms = 10
[tickets]
enabled = true
[tickets.spikes]
enabled = false
[tickets.queues.care]
max_open = 2
[index]
enabled = true
dir = "{d}/index"
commit_secs = 1
[quality]
enabled = true
dir = "{d}/quality"
flush_secs = 1
profile_every = 1
[api]
enabled = true
[ingest]
state_dir = "{d}/state"
[[source]]
kind = "jsonl"
name = "tail"
path = "{d}/in.jsonl"
follow = true
follow_interval_ms = 20
[sink.tickets]
kind = "jsonl"
path = "{d}/tickets.jsonl"
[sink.dead_letter]
kind = "jsonl"
path = "{d}/dead-letter.jsonl"
[http]
listen = "127.0.0.1:0"
"#,
        d = dir.display()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A `cull run` in the background, with its log.
pub(crate) struct Running {
    child: Child,
    address: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(file: &Path) -> Running {
        let running = Running::start_with_tokens(file, TOKENS);
        running.wait_metric("cull_rules_loaded", 1.0);
        running
    }

    /// Starts `cull run` on `file` with the API tokens `tokens` (`CULL_API_TOKENS`).
    pub(crate) fn start_with_tokens(file: &Path, tokens: &str) -> Running {
        let (child, address, log) =
            crate::reload::run_logged(file, &[("RUST_LOG", "info"), ("CULL_API_TOKENS", tokens)]);
        Running { child, address, log }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn metrics(&self) -> String {
        get(&self.address, "/metrics").map(|(_, body)| body).unwrap_or_default()
    }

    pub(crate) fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    pub(crate) fn wait_metric(&self, series: &str, value: f64) {
        let deadline = Instant::now() + PATIENCE;
        while self.metric(series) != Some(value) {
            assert!(
                Instant::now() < deadline,
                "{series} never became {value}: {:?}\n{}",
                self.metric(series),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one request with `token` and `body`; returns the status and the body.
    pub(crate) fn send(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let address = &self.address;
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
    }

    fn post_feedback(&self, token: Option<&str>, body: &str) -> (u16, String) {
        self.send("POST", "/api/feedback", token, body)
    }

    /// Returns the status and the report of rule `brand` of `GET /api/rules/stats`.
    fn brand_stats(&self, token: &str, query: &str) -> (u16, Option<Value>) {
        let (status, body) = self.send("GET", &format!("/api/rules/stats{query}"), Some(token), "");
        if status != 200 {
            return (status, None);
        }
        (status, brand_report(&serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))))
    }

    /// Waits until the store reports `brand` as `done` says, and returns the report.
    fn wait_brand_stats(&self, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, report) = self.brand_stats(STAFF, "");
            match report {
                Some(report) if done(&report) => return report,
                _ if Instant::now() >= deadline => {
                    panic!("the stats never got there: {status} {report:?}\n{}", self.log())
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// SIGTERM: the process drains, flushes and exits 0.
    pub(crate) fn stop(mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "SIGTERM ended cull run with {exit:?}\n{}", self.log());
    }
}

impl Drop for Running {
    /// A failed assertion must not leave the process running (it holds the bus's lock).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Returns the report of the contact center's rule `brand` from a stats body.
fn brand_report(stats: &Value) -> Option<Value> {
    stats["rules"]
        .as_array()?
        .iter()
        .find(|r| r["rule_id"] == "brand" && r.get("client").is_none_or(Value::is_null))
        .cloned()
}

/// Appends a mention by `author` to the followed file.
fn mention(dir: &Path, id: &str, author: &str, text: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(dir.join("in.jsonl")).unwrap();
    let line = serde_json::json!({"schema": "cull.mention/v1", "id": id, "author": author, "text": text});
    writeln!(file, "{line}").unwrap();
}

/// Waits for the ticket (or digest) whose latest mention is `id` in the tickets sink.
fn ticket_of(dir: &Path, running: &Running, id: &str) -> Ticket {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let tickets = std::fs::read_to_string(dir.join("tickets.jsonl")).unwrap_or_default();
        let found = tickets
            .lines()
            .map(|l| serde_json::from_str::<Ticket>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|t| t.mention.id == id)
            .max_by_key(|t| t.revision);
        if let Some(ticket) = found {
            return ticket;
        }
        assert!(Instant::now() < deadline, "no ticket for {id}:\n{tickets}\n{}", running.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A disposition of `ticket_id` made now, as JSON.
fn disposition(ticket_id: &str, disposition: Disposition) -> String {
    serde_json::to_string(&Feedback::new(ticket_id, disposition, OffsetDateTime::now_utc())).unwrap()
}

/// The fields of a rule report the API and the command must agree on.
fn essentials(report: &Value) -> [Value; 5] {
    ["matches", "tickets", "feedback", "irrelevant", "precision"].map(|field| report[field].clone())
}

/// Runs `cull rules stats --pipeline FILE --json` and returns the report of `brand`.
fn stats_command(file: &Path) -> Value {
    let out =
        cull(&["rules", "stats", "--pipeline", file.to_str().unwrap(), "--json"], &[]).output().unwrap();
    assert!(out.status.success(), "cull rules stats: {}", text(&out.stderr));
    let stats: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    brand_report(&stats).unwrap_or_else(|| panic!("no rule brand in {stats}"))
}

/// Returns the latest state of every ticket on the ticketing stage's changelog.
fn changelog(bus: &EmbeddedBus, runtime: &tokio::runtime::Runtime) -> BTreeMap<String, TicketState> {
    let mut reader = bus.reader("cull.ticket-state").unwrap();
    let mut states = BTreeMap::new();
    runtime.block_on(async {
        loop {
            let batch = reader.next_batch(1000, Duration::from_millis(5), Duration::from_millis(200)).await;
            let records = batch.unwrap().unwrap_or_default();
            if records.is_empty() {
                break;
            }
            for record in records {
                if let ChangelogRecord::Ticket(state) = serde_json::from_slice(&record.payload).unwrap() {
                    states.insert(state.ticket_id.clone(), *state);
                }
            }
        }
    });
    states
}

/// Waits for the dead letters of the feedback topic in the dead-letter sink.
fn feedback_dead_letters(dir: &Path, running: &Running, count: usize) -> Vec<DeadLetter> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let letters: Vec<DeadLetter> = std::fs::read_to_string(dir.join("dead-letter.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|l: &DeadLetter| l.origin.contains("cull.feedback"))
            .collect();
        if letters.len() >= count {
            return letters;
        }
        assert!(
            Instant::now() < deadline,
            "{} dead letters of cull.feedback: {letters:?}\n{}",
            letters.len(),
            running.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dispositions_free_queue_room_measure_precision_and_survive_a_restart() {
    let tempdir = tempfile::tempdir().unwrap();
    let dir = tempdir.path();
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/brand.toml"), RULE).unwrap();
    std::fs::write(dir.join("in.jsonl"), "").unwrap();
    let file = pipeline(dir);
    let running = Running::start(&file);

    // Three threads (three authors) on a queue of max_open = 2: two tickets, a digest.
    mention(dir, "m1", "ana", "My zorblax arrived with a cracked screen");
    mention(dir, "m2", "ben", "Anyone else waiting three weeks for zorblax support to call back?");
    mention(dir, "m3", "cy", "The zorblax app logs me out every single morning");
    let t1 = ticket_of(dir, &running, "m1");
    let t2 = ticket_of(dir, &running, "m2");
    let digest = ticket_of(dir, &running, "m3");
    assert_eq!((t1.kind, t2.kind, digest.kind), (TicketKind::Ticket, TicketKind::Ticket, TicketKind::Digest));
    assert_eq!((t1.rule.id.as_str(), t2.rule.id.as_str(), t1.queue.as_str()), ("brand", "brand", "care"));
    assert_ne!(t1.ticket_id, t2.ticket_id);
    running.wait_metric("cull_tickets_overflow_total{queue=\"care\",to=\"digest\"}", 1.0);

    // Bad bodies are refused whole, naming the problem, and nothing reaches the topic.
    let (status, body) = running.post_feedback(Some(STAFF), "{\"schema\":\"cull.feedback/v1\",");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not JSON"), "{body}");
    let spam = disposition(&t1.ticket_id, Disposition::Resolved).replace("\"resolved\"", "\"spam\"");
    let (status, body) = running.post_feedback(Some(STAFF), &spam);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown variant `spam`"), "{body}");
    let half = format!("[{},{spam}]", disposition(&t2.ticket_id, Disposition::Duplicate));
    let (status, body) = running.post_feedback(Some(STAFF), &half);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("[1]: ") && body.contains("spam"), "the bad record is named: {body}");
    let wrong_priority = disposition(&t2.ticket_id, Disposition::WrongPriority);
    let (status, body) = running.post_feedback(Some(STAFF), &wrong_priority);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("priority"), "{body}");
    assert_eq!(running.post_feedback(Some(STAFF), "[]").0, 400);

    // Without a valid token: 401; a client's token naming another client: 403.
    let good = disposition(&t2.ticket_id, Disposition::Duplicate);
    let (status, body) = running.post_feedback(None, &good);
    assert_eq!(status, 401, "{body}");
    assert_eq!(running.post_feedback(Some("not-a-token-0123456789"), &good).0, 401);
    let foreign = good.replace("\"at\"", "\"client\":\"globex\",\"at\"");
    let (status, body) = running.post_feedback(Some(ACME), &foreign);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("globex"), "{body}");

    // A client's token disposes of its own client's tickets only: without `client`, the
    // record gets acme's, and the contact center's ticket is left alone.
    let (status, body) =
        running.post_feedback(Some(ACME), &disposition(&t2.ticket_id, Disposition::BlockAuthor));
    assert_eq!(status, 202, "{body}");
    running.wait_metric("cull_tickets_feedback_total{disposition=\"block_author\",outcome=\"unknown\"}", 1.0);
    // The feedback topic has one partition read in order: every record sent before
    // this one was counted by now, so none of the refused bodies went through.
    let metrics = running.metrics();
    let dispositions: Vec<&str> =
        metrics.lines().filter(|l| l.starts_with("cull_tickets_feedback_total{")).collect();
    assert_eq!(dispositions.len(), 1, "only the acme record reached the ticketing stage: {dispositions:?}");

    // `irrelevant` closes the first ticket: the queue has room again, so the next
    // thread gets a real ticket, not the digest.
    let (status, body) =
        running.post_feedback(Some(STAFF), &disposition(&t1.ticket_id, Disposition::Irrelevant));
    assert_eq!(status, 202, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), serde_json::json!({"accepted": 1}));
    running.wait_metric("cull_tickets_feedback_total{disposition=\"irrelevant\",outcome=\"closed\"}", 1.0);
    mention(dir, "m4", "dee", "Shoutout to zorblax for the quick refund yesterday");
    let t4 = ticket_of(dir, &running, "m4");
    assert_eq!((t4.kind, t4.revision, t4.queue.as_str()), (TicketKind::Ticket, 1, "care"), "{t4:?}");
    assert!(![&t1.ticket_id, &t2.ticket_id].contains(&&t4.ticket_id));
    assert_eq!(running.metric("cull_tickets_overflow_total{queue=\"care\",to=\"digest\"}"), Some(1.0));

    // The second ticket is resolved (an array of one): only t4 is open now.
    let (status, body) = running
        .post_feedback(Some(STAFF), &format!("[{}]", disposition(&t2.ticket_id, Disposition::Resolved)));
    assert_eq!((status, body.as_str()), (202, "{\"accepted\":1}"));
    running.wait_metric("cull_tickets_feedback_total{disposition=\"resolved\",outcome=\"closed\"}", 1.0);

    // The quality stage's store: three tickets, two dispositions, one false positive.
    let at_least = |r: &Value, field: &str, n: u64| r[field].as_u64().is_some_and(|v| v >= n);
    let report = running.wait_brand_stats(|r| {
        at_least(r, "matches", 4) && at_least(r, "tickets", 3) && at_least(r, "feedback", 2)
    });
    assert_eq!(essentials(&report)[..4], [4, 3, 2, 1].map(Value::from), "{report}");
    let precision = report["precision"].as_f64().unwrap_or_else(|| panic!("no precision: {report}"));
    assert!((precision - 0.5).abs() < 1e-9, "1 - 1/2: {report}");
    for sort in ["cost", "noise", "precision"] {
        let (status, sorted) = running.brand_stats(STAFF, &format!("?sort={sort}"));
        assert_eq!(status, 200, "sort={sort}");
        assert_eq!(sorted.map(|r| essentials(&r)), Some(essentials(&report)), "sort={sort}");
    }
    assert_eq!(running.brand_stats(STAFF, "?sort=bogus").0, 400);
    assert_eq!(running.send("GET", "/api/rules/stats", None, "").0, 401);
    let (status, acme) = running.brand_stats(ACME, "");
    assert_eq!((status, acme), (200, None), "acme does not see the contact center's rule stats");
    let (status, body) = running.send("GET", "/api/rules/brand/suggestions", Some(STAFF), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(running.send("GET", "/api/rules/nope/suggestions", Some(STAFF), "").0, 404);
    let command = stats_command(&file);
    assert_eq!(essentials(&command), essentials(&report), "cull rules stats while running: {command}");

    running.stop();
    let stored = stats_command(&file);
    assert_eq!(essentials(&stored), essentials(&report), "cull rules stats after the stop: {stored}");

    // The changelog remembers the closures.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let bus =
        EmbeddedBus::open(&EmbeddedConfig { dir: dir.join("bus"), ..EmbeddedConfig::default() }).unwrap();
    let states = changelog(&bus, &runtime);
    let closed = |id: &str| states.get(id).map(|s| (s.disposition.map(|(d, _)| d), s.closed_at.is_some()));
    assert_eq!(closed(&t1.ticket_id), Some((Some(Disposition::Irrelevant), true)));
    assert_eq!(
        closed(&t2.ticket_id),
        Some((Some(Disposition::Resolved), true)),
        "acme's record changed nothing"
    );
    assert_eq!(closed(&t4.ticket_id), Some((None, false)));

    // Bad records produced straight onto the feedback topic (the bus is free while cull
    // is stopped): not JSON, and an unknown disposition.
    let bad = [b"not a disposition".to_vec(), spam.into_bytes()];
    let messages =
        bad.iter().map(|payload| Message { key: None, payload: payload.clone(), headers: Vec::new() });
    runtime.block_on(bus.producer().send_all("cull.feedback", messages.collect())).unwrap();
    bus.close();
    drop(bus);

    // After a restart into the same directory: the store is still there before any new
    // record arrives, and the bad records are dead letters of both stages reading them.
    let running = Running::start(&file);
    let (status, after) = running.brand_stats(STAFF, "");
    assert_eq!(status, 200);
    assert_eq!(after.map(|r| essentials(&r)), Some(essentials(&report)), "the store persisted");
    let letters = feedback_dead_letters(dir, &running, 4);
    let mut stages: Vec<&str> = letters.iter().map(|l| l.stage.as_str()).collect();
    stages.sort_unstable();
    assert_eq!(stages, ["quality", "quality", "tickets", "tickets"], "{letters:?}");
    assert!(letters.iter().all(|l| l.error.starts_with("not a disposition")), "{letters:?}");
    assert!(letters.iter().any(|l| l.error.contains("unknown variant `spam`")), "{letters:?}");

    // The closures are remembered: t4 is the one open ticket, so m5 gets a ticket (had
    // t1 and t2 come back open, it would go into the digest), and then the queue is
    // full again (t4 and t5 are remembered open).
    mention(dir, "m5", "eve", "Is the zorblax firmware update safe to install now?");
    let t5 = ticket_of(dir, &running, "m5");
    assert_eq!((t5.kind, t5.queue.as_str()), (TicketKind::Ticket, "care"), "{t5:?}");
    mention(dir, "m6", "fay", "Zorblax keeps charging my card twice for one order");
    assert_eq!(ticket_of(dir, &running, "m6").kind, TicketKind::Digest);

    // The store goes on from its checkpoint: nothing read before the restart counts twice.
    let report = running.wait_brand_stats(|r| at_least(r, "matches", 6) && at_least(r, "tickets", 4));
    assert_eq!(essentials(&report)[..4], [6, 4, 2, 1].map(Value::from), "{report}");
    running.stop();
}
