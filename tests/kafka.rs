//! `cull run` on a real Kafka-protocol broker (tansu, see tests/broker.rs), fed and
//! read by an outside client: kafka-python, through the scripts in tests/kafka/. The
//! outside client is pure Python, independent of the librdkafka inside cull, so these
//! tests catch what a test that reads cull's output with cull's own client would hide
//! (headers, keys, encodings that only one implementation agrees with).
//!
//! Each test starts its own broker and bounds every wait; a failure says which step
//! did not happen and shows the end of the processes' logs.

#[path = "broker.rs"]
mod broker;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use broker::TestBroker;
use cull_model::{Ticket, Verdict};
use serde::Deserialize;

/// How long one `cull run --once` may take: it needs a few seconds beyond its work,
/// since it exits only when librdkafka's statistics (every 5 s) show zero lag.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// The session timeout of cull's Kafka consumers (cull-bus's default), after which the
/// group forgets a member that stopped sending heartbeats.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the outside client may take to read a topic.
const READ_LIMIT_SECS: u32 = 60;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn start_broker() -> TestBroker {
    TestBroker::start().unwrap_or_else(|error| panic!("{error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Returns the last `n` characters of a log, which is where a failure's cause is.
fn tail(log: &str, n: usize) -> &str {
    let start = log.char_indices().rev().nth(n).map_or(0, |(i, _)| i);
    &log[start..]
}

/// A process whose standard output and error are read as they come, so that a chatty
/// process never blocks on a full pipe while the test waits for it.
struct Running {
    what: String,
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

/// A process that ended.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

impl Running {
    fn spawn(what: &str, mut command: Command, stdin: Option<Vec<u8>>) -> Running {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        if let Some(bytes) = stdin {
            let mut input = child.stdin.take().expect("stdin");
            std::thread::spawn(move || input.write_all(&bytes));
        }
        let stdout = Some(drain(child.stdout.take().expect("stdout")));
        let stderr = Some(drain(child.stderr.take().expect("stderr")));
        Running { what: what.to_string(), child, stdout, stderr }
    }

    /// Waits for the process to end; kills it and fails the test after `limit`.
    fn finish(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Ok(None) => break None,
                Err(e) => panic!("cannot wait for {}: {e}", self.what),
            }
        };
        if status.is_none() {
            let _ = self.child.kill();
        }
        let status = status.unwrap_or_else(|| self.child.wait().expect("wait after kill"));
        let stdout = text(&self.stdout.take().expect("stdout").join().expect("stdout reader"));
        let stderr = text(&self.stderr.take().expect("stderr").join().expect("stderr reader"));
        assert!(
            Instant::now() < deadline,
            "{} did not end within {limit:?}; killed it.\nstdout: {}\nstderr: {}",
            self.what,
            tail(&stdout, 2000),
            tail(&stderr, 4000)
        );
        Finished { status, stdout, stderr }
    }

    /// Kills the process with SIGKILL, as a crash or an OOM killer would.
    fn sigkill(mut self) -> Finished {
        self.child.kill().unwrap_or_else(|e| panic!("cannot kill {}: {e}", self.what));
        self.finish(Duration::from_secs(30))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that failed while this process ran must not leave it running.
        if self.stdout.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `cull run PIPELINE` on the test's broker, the example Kafka pipeline with overrides.
fn cull_run(broker: &TestBroker, once: bool, env: &[(&str, &str)]) -> Running {
    cull_run_file(broker, Path::new("pipelines/kafka.toml"), once, env)
}

/// As [`cull_run`], with the pipeline file `file`.
fn cull_run_file(broker: &TestBroker, file: &Path, once: bool, env: &[(&str, &str)]) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cull"));
    command.arg("run").arg(file).current_dir(repo());
    if once {
        command.arg("--once");
    }
    command
        .env("CULL__BUS__KAFKA__BROKERS", broker.brokers())
        .env("CULL__HTTP__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    Running::spawn(&format!("cull run (once: {once})"), command, None)
}

/// Runs `cull run --once` to its end, expects success and returns the number of
/// mentions it read, from its summary line.
fn cull_run_once(broker: &TestBroker, env: &[(&str, &str)]) -> u64 {
    let finished = cull_run(broker, true, env).finish(RUN_LIMIT);
    assert!(
        finished.status.success(),
        "cull run --once failed with {}:\n{}",
        finished.status,
        tail(&finished.stderr, 4000)
    );
    mentions_in(&finished.stdout)
}

/// Returns N from a summary `cull run: N mention(s) in: ...`.
fn mentions_in(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("cull run: ")?.split_once(" mention(s) in")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no `cull run: N mention(s) in` summary in stdout: {stdout}"))
}

fn python() -> Command {
    let mut command = Command::new("python3");
    command.current_dir(repo()).env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

/// Fails with instructions when kafka-python is missing, instead of a Python traceback.
fn require_kafka_python() {
    let out = python().args(["-c", "import kafka"]).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "kafka-python is missing: `python3 -m pip install kafka-python==2.2.15` (scripts/test.sh does it): {}",
        text(&out.stderr)
    );
}

/// Where kafka-python put a produced record.
#[derive(Debug, Deserialize)]
struct Produced {
    line: usize,
    partition: i32,
    offset: i64,
}

/// Produces every non-empty line of `lines` as one record to `topic`, first creating
/// each of `create` (topic, partitions) that is missing; returns where each went.
fn produce(broker: &TestBroker, topic: &str, create: &[(&str, u32)], lines: &[u8]) -> Vec<Produced> {
    let mut command = python();
    command.args(["tests/kafka/produce.py", "--brokers", &broker.brokers(), "--topic", topic]);
    for (name, partitions) in create {
        command.args(["--create", &format!("{name}:{partitions}")]);
    }
    let finished = Running::spawn("produce.py", command, Some(lines.to_vec())).finish(RUN_LIMIT);
    assert!(finished.status.success(), "produce.py to {topic} failed: {}", tail(&finished.stderr, 4000));
    let produced: Vec<Produced> = parse_lines(&finished.stdout, "produce.py");
    let expected = lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(produced.len(), expected, "produce.py reported every record it produced");
    produced
}

/// A record as kafka-python read it (consume.py also prints its partition and offset).
#[derive(Debug, Deserialize)]
struct Consumed {
    key: Option<String>,
    headers: Vec<(String, Option<String>)>,
    payload_base64: String,
    payload: Option<String>,
}

impl Consumed {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }

    fn bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(&self.payload_base64).expect("base64 payload")
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        let payload = self.payload.as_deref().unwrap_or_else(|| panic!("payload is not UTF-8: {self:?}"));
        serde_json::from_str(payload).unwrap_or_else(|e| panic!("{e}: {payload}"))
    }
}

/// How much of a topic to read.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// Everything up to the ends the partitions had when reading started.
    End,
    /// At least this many records, waiting for them to arrive.
    Count(usize),
}

/// Reads `topic` with kafka-python, outside any group; fails if it cannot read
/// what `until` asks for within [`READ_LIMIT_SECS`].
fn consume(broker: &TestBroker, topic: &str, until: Until) -> Vec<Consumed> {
    let mut command = python();
    command.args(["tests/kafka/consume.py", "--brokers", &broker.brokers(), "--topic", topic]);
    command.args(["--timeout", &READ_LIMIT_SECS.to_string()]);
    match until {
        Until::End => command.arg("--to-end"),
        Until::Count(n) => command.args(["--count", &n.to_string()]),
    };
    let limit = Duration::from_secs(u64::from(READ_LIMIT_SECS) + 30);
    let finished = Running::spawn("consume.py", command, None).finish(limit);
    let records: Vec<Consumed> = parse_lines(&finished.stdout, "consume.py");
    assert!(
        finished.status.success(),
        "reading {until:?} of {topic} failed after {} record(s): {}",
        records.len(),
        tail(&finished.stderr, 4000)
    );
    records
}

fn parse_lines<T: serde::de::DeserializeOwned>(stdout: &str, what: &str) -> Vec<T> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what} printed a bad line ({e}): {l}")))
        .collect()
}

/// Returns `count` mentions that the example rule slack-company matches, with distinct
/// ids and URLs (so that the dedupe window merges none of them) and a publication time
/// (so that their ticket ids do not depend on when they are matched), one per line.
fn matching_mentions(prefix: &str, count: usize) -> Vec<u8> {
    let mut lines = Vec::new();
    for n in 0..count {
        let mention = serde_json::json!({
            "schema": "cull.mention/v1",
            "id": format!("{prefix}-{n:05}"),
            "channel": "news",
            "url": format!("https://news.example.com/{prefix}/{n}"),
            "published_at": "2026-11-25T10:00:00Z",
            "lang": "en",
            "text": format!("Slack shares rise after Slack Technologies earnings (report {n})"),
        });
        serde_json::to_writer(&mut lines, &mention).expect("serialize");
        lines.push(b'\n');
    }
    lines
}

/// Checks every ticket record against the contract and returns, per ticket id, the
/// mention ids it carried; fails when two records with one id differ in more than
/// their creation time, SLA deadline and revision (the only duplicates at-least-once
/// allows are replays of one ticket).
fn check_tickets(records: &[Consumed]) -> BTreeMap<String, BTreeSet<String>> {
    let mut bodies: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut mentions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in records {
        let ticket: Ticket = record.json();
        assert_eq!(ticket.schema, "cull.ticket/v1", "{record:?}");
        assert_eq!(record.key.as_deref(), Some(ticket.ticket_id.as_str()), "key = ticket id: {record:?}");
        let mut body: serde_json::Value = record.json();
        assert_eq!(record.header("cull.queue"), body["queue"].as_str(), "queue header: {record:?}");
        assert_eq!(record.header("cull.priority"), body["priority"].as_str(), "priority header: {record:?}");
        let fields = body.as_object_mut().expect("a ticket is a JSON object");
        for varying in ["created_at", "sla_due_at", "revision"] {
            fields.remove(varying);
        }
        // How late a mention was when cull saw it depends on when that was: a verdict
        // read again after a crash may find it a minute later.
        for factor in fields["factors"].as_array_mut().expect("factors") {
            if factor["factor"] == "late" {
                factor["value"] = serde_json::Value::Null;
            }
        }
        if let Some(first) = bodies.get(&ticket.ticket_id) {
            assert_eq!(first, &body, "two records of ticket {} differ", ticket.ticket_id);
        } else {
            bodies.insert(ticket.ticket_id.clone(), body);
        }
        mentions.entry(ticket.ticket_id).or_default().insert(ticket.mention.id);
    }
    mentions
}

/// Checks that the tickets are exactly one per mention of `expected` (by mention id):
/// every mention has a ticket, and no mention got two different ticket ids.
fn assert_one_ticket_per_mention(tickets: &BTreeMap<String, BTreeSet<String>>, expected: &BTreeSet<String>) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (ticket_id, mentions) in tickets {
        assert_eq!(mentions.len(), 1, "ticket {ticket_id} carries several mentions: {mentions:?}");
        for mention in mentions {
            if let Some(other) = seen.insert(mention, ticket_id) {
                panic!("mention {mention} has two ticket ids, {other} and {ticket_id}");
            }
        }
    }
    let covered: BTreeSet<String> = seen.keys().map(|m| m.to_string()).collect();
    let missing: Vec<&String> = expected.difference(&covered).take(10).collect();
    let unexpected: Vec<&String> = covered.difference(expected).take(10).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "{} of {} mentions have no ticket (first: {missing:?}); unexpected: {unexpected:?}",
        expected.difference(&covered).count(),
        expected.len()
    );
}

fn ids(prefix: &str, count: usize) -> BTreeSet<String> {
    (0..count).map(|n| format!("{prefix}-{n:05}")).collect()
}

#[test]
fn outside_client_mentions_become_tickets_and_bad_records_dead_letters() {
    require_kafka_python();
    let broker = start_broker();
    let mut input = std::fs::read(repo().join("pipelines/demo/mentions.jsonl")).expect("demo mentions");
    if !input.ends_with(b"\n") {
        input.push(b'\n');
    }
    let demo_lines = input.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    let oversized =
        format!("{{\"schema\":\"cull.mention/v1\",\"id\":\"big\",\"text\":\"{}\"}}", "a".repeat(5000));
    let bad: [(&[u8], &str); 4] = [
        (b"{\"schema\":\"cull.mention/v1\",\"id\":\"broken\"", "malformed JSON"),
        (
            b"{\"schema\":\"cull.mention/v9\",\"id\":\"future\",\"text\":\"x\"}",
            "unsupported schema \"cull.mention/v9\"",
        ),
        (
            b"{\"schema\":\"cull.mention/v1\",\"id\":\"bytes\",\"text\":\"caf\xe9\"}",
            "record is not valid UTF-8",
        ),
        (oversized.as_bytes(), "over the limit of 4096 bytes"),
    ];
    for (line, _) in &bad {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    let produced = produce(&broker, "cull.mentions", &[("cull.mentions", 3)], &input);

    let finished = cull_run(&broker, true, &[("CULL__MATCHER__MAX_MENTION_BYTES", "4096")]).finish(RUN_LIMIT);
    assert!(finished.status.success(), "cull run --once: {}", tail(&finished.stderr, 4000));
    // The summary, then the decision table.
    assert_eq!(
        finished.stdout.lines().next(),
        Some(
            "cull run: 18 mention(s) in: 6 matched, 5 culled, 3 unmatched; 6 ticket(s) out; 4 dead letter(s)"
        )
    );

    // What should match: `cull match` on the same mentions, without any broker.
    let matched = Command::new(env!("CARGO_BIN_EXE_cull"))
        .args(["match", "--rules", "rules", "pipelines/demo/mentions.jsonl"])
        .current_dir(repo())
        .output()
        .expect("cull match runs");
    assert!(matched.status.success(), "cull match: {}", text(&matched.stderr));
    let expected: BTreeSet<(String, String)> = parse_lines::<Verdict>(&text(&matched.stdout), "cull match")
        .iter()
        .flat_map(|v| v.matched.iter().map(move |m| (m.rule_id.to_string(), v.mention_id.clone())))
        .collect();
    assert!(!expected.is_empty(), "the demo mentions match some rules");

    let tickets = consume(&broker, "cull.tickets", Until::End);
    check_tickets(&tickets);

    // The README's consumer example reads every ticket once, at its highest revision.
    let mut command = python();
    command.args(["examples/consume_tickets.py", "--brokers", &broker.brokers(), "--idle-ms", "5000"]);
    let example = Running::spawn("examples/consume_tickets.py", command, None).finish(RUN_LIMIT);
    assert!(example.status.success(), "{}", tail(&example.stderr, 4000));
    let distinct: BTreeSet<String> = tickets.iter().filter_map(|t| t.key.clone()).collect();
    let printed: Vec<&str> = example.stdout.lines().collect();
    assert_eq!(printed.len(), distinct.len(), "{}", example.stdout);
    for ticket_id in &distinct {
        assert!(printed.iter().any(|line| line.contains(ticket_id.as_str())), "{ticket_id} not printed");
    }
    let ticketed: Vec<(String, String)> =
        tickets.iter().map(|r| r.json::<Ticket>()).map(|t| (t.rule.id, t.mention.id)).collect();
    assert_eq!(ticketed.len(), expected.len(), "one ticket per true match: {ticketed:?}");
    assert_eq!(ticketed.into_iter().collect::<BTreeSet<_>>(), expected);

    let verdicts = consume(&broker, "cull.verdicts", Until::End);
    let verdict_ids: BTreeSet<String> = verdicts
        .iter()
        .map(|r| {
            let verdict: Verdict = r.json();
            let mention = verdict.mention.as_ref().expect("a verdict carries its mention");
            let thread = cull_model::thread::thread_key(mention);
            assert_eq!(r.key.as_deref(), Some(thread.as_str()), "key = the mention's thread");
            verdict.mention_id
        })
        .collect();
    assert_eq!((verdicts.len(), verdict_ids.len()), (demo_lines, demo_lines), "one verdict per mention");

    let letters = consume(&broker, "cull.dead-letter", Until::End);
    assert_eq!(letters.len(), bad.len(), "exactly the bad records are dead letters: {letters:?}");
    for (n, (original, error)) in bad.iter().enumerate() {
        let source = &produced[demo_lines + n];
        assert_eq!(source.line, demo_lines + n + 1);
        let letter = letters
            .iter()
            .find(|l| l.bytes() == *original)
            .unwrap_or_else(|| panic!("no dead letter with the original bytes of {}", text(original)));
        assert_eq!(letter.header("cull.stage"), Some("match"), "{letter:?}");
        let reported = letter.header("cull.error").unwrap_or_default();
        assert!(reported.contains(error), "error {reported:?} should say {error:?}");
        assert_eq!(letter.header("cull.source.topic"), Some("cull.mentions"), "{letter:?}");
        let partition = source.partition.to_string();
        let offset = source.offset.to_string();
        assert_eq!(letter.header("cull.source.partition"), Some(partition.as_str()), "{letter:?}");
        assert_eq!(letter.header("cull.source.offset"), Some(offset.as_str()), "{letter:?}");
    }
}

#[test]
fn a_matcher_killed_mid_stream_and_restarted_loses_no_true_match() {
    require_kafka_python();
    let broker = start_broker();
    let count = 3000;
    produce(&broker, "cull.mentions", &[("cull.mentions", 3)], &matching_mentions("kill", count));
    // Small batches make the stream take seconds, so that the kill lands inside it.
    let env = [("CULL__MATCHER__BATCH_SIZE", "10")];
    let running = cull_run(&broker, false, &env);
    // Some tickets are out, so the matcher is mid-stream (the restart below checks that
    // it was not past the end).
    consume(&broker, "cull.tickets", Until::Count(300));
    running.sigkill();
    // tansu 0.6.0 does not rebalance a group whose leader died: a member that joins
    // before the dead one's session (10 s, cull's session.timeout.ms) expired is
    // handed an empty assignment when it does expire, and no partition ever after (a
    // kafka-python member fares the same). Kafka would rebalance; here the restart
    // comes after the dead member's session is over, as an orchestrator's restart
    // back-off would.
    std::thread::sleep(SESSION_TIMEOUT + Duration::from_secs(2));

    let resumed = cull_run_once(&broker, &env);
    assert!(
        resumed > 0,
        "the restarted matcher found nothing left to do: the kill came after the whole stream"
    );
    let tickets = consume(&broker, "cull.tickets", Until::End);
    let by_ticket = check_tickets(&tickets);
    assert_one_ticket_per_mention(&by_ticket, &ids("kill", count));
}

#[test]
fn a_broker_restart_with_sqlite_storage_loses_nothing() {
    require_kafka_python();
    let mut broker = start_broker();
    let half = 300;
    let mentions = matching_mentions("restart", 2 * half);
    let split = mentions.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(half - 1).expect("lines").0 + 1;
    produce(&broker, "cull.mentions", &[("cull.mentions", 3)], &mentions[..split]);
    assert_eq!(cull_run_once(&broker, &[]), half as u64, "the first run reads the first half");

    broker.restart().unwrap_or_else(|error| panic!("{error}"));
    produce(&broker, "cull.mentions", &[], &mentions[split..]);
    assert_eq!(
        cull_run_once(&broker, &[]),
        half as u64,
        "the second run reads the second half only: the group's committed offsets survived"
    );
    let tickets = consume(&broker, "cull.tickets", Until::End);
    let by_ticket = check_tickets(&tickets);
    assert_one_ticket_per_mention(&by_ticket, &ids("restart", 2 * half));
    assert_eq!(tickets.len(), 2 * half, "no ticket was produced twice");
}

#[test]
fn two_matchers_in_one_group_split_the_partitions_and_together_emit_every_ticket() {
    require_kafka_python();
    let broker = start_broker();
    let count = 2000;
    produce(&broker, "cull.mentions", &[("cull.mentions", 4)], &matching_mentions("pair", count));
    // Small batches make the work last longer than a group rebalance, so that the
    // second process to join finds work left.
    let env = [
        ("CULL__MATCHER__BATCH_SIZE", "1"),
        ("CULL__BUS__KAFKA__PARTITIONS", "4"),
        ("CULL__BUS__KAFKA__GROUP_ID", "pair"),
    ];
    let first = cull_run(&broker, true, &env);
    let second = cull_run(&broker, true, &env);
    let mut shares = Vec::new();
    for running in [first, second] {
        let finished = running.finish(RUN_LIMIT);
        assert!(finished.status.success(), "cull run --once: {}", tail(&finished.stderr, 4000));
        shares.push(mentions_in(&finished.stdout));
    }
    assert!(shares.iter().all(|n| *n > 0), "each process read a share of the mentions: {shares:?}");
    assert!(shares.iter().sum::<u64>() >= count as u64, "together they read every mention: {shares:?}");
    let tickets = consume(&broker, "cull.tickets", Until::End);
    let by_ticket = check_tickets(&tickets);
    assert_one_ticket_per_mention(&by_ticket, &ids("pair", count));
}

/// Returns `per_author` mentions by each of `authors` authors that the example rule
/// slack-company matches, `round` naming which of them (distinct ids and URLs), all
/// posted within the dedupe window, one per line.
fn authors_mentions(round: usize, authors: usize, per_author: usize) -> Vec<u8> {
    let mut lines = Vec::new();
    for author in 0..authors {
        for n in 0..per_author {
            let mention = serde_json::json!({
                "schema": "cull.mention/v1",
                "id": format!("a{author:03}-r{round}-{n}"),
                "channel": "twitter",
                "author": format!("@customer{author:03}"),
                "url": format!("https://x.example/customer{author:03}/status/{round}{n}"),
                "published_at": format!("2026-11-25T10:{:02}:00Z", round * 10 + n),
                "lang": "en",
                "text": format!("Slack shares keep falling, Slack Technologies support is useless ({round}.{n})"),
            });
            serde_json::to_writer(&mut lines, &mention).expect("serialize");
            lines.push(b'\n');
        }
    }
    lines
}

#[test]
fn two_ticketing_processes_and_a_restart_keep_one_ticket_per_author_with_growing_revisions() {
    require_kafka_python();
    let broker = start_broker();
    let (authors, per_round) = (40, 10);
    let env = [
        ("CULL__MATCHER__BATCH_SIZE", "2"),
        ("CULL__BUS__KAFKA__PARTITIONS", "4"),
        ("CULL__BUS__KAFKA__GROUP_ID", "pair"),
    ];
    // Mentions are keyed by id, so an author's posts are spread over the partitions;
    // the matcher keys verdicts by thread, so one ticketing process owns each author.
    produce(&broker, "cull.mentions", &[("cull.mentions", 4)], &authors_mentions(0, authors, per_round));
    let pair = [cull_run(&broker, true, &env), cull_run(&broker, true, &env)];
    let mut shares = Vec::new();
    for running in pair {
        let finished = running.finish(RUN_LIMIT);
        assert!(finished.status.success(), "cull run --once: {}", tail(&finished.stderr, 4000));
        shares.push(mentions_in(&finished.stdout));
    }
    // Which process reads what is the broker's assignment: tansu 0.6.0 can hand every
    // partition to the second member to join before the first has read a batch. The
    // shares are shown, not required; the tickets below are what must hold.
    eprintln!("mentions read by the two processes: {shares:?}");
    assert!(shares.iter().sum::<u64>() >= (authors * per_round) as u64, "every mention was read: {shares:?}");
    // A restart with no memory but the changelog. It joins new groups, so it reads
    // every mention again, as a matcher does after a crash before it committed: the
    // second verdicts of the first round must not count twice. (New groups also keep
    // clear of tansu 0.6.0, which can leave a member of a group whose old members
    // just left with no partition.)
    produce(&broker, "cull.mentions", &[], &authors_mentions(1, authors, per_round));
    let restart = [
        ("CULL__MATCHER__BATCH_SIZE", "2"),
        ("CULL__BUS__KAFKA__PARTITIONS", "4"),
        ("CULL__BUS__KAFKA__GROUP_ID", "restart"),
        ("CULL__TICKETS__GROUP_ID", "tickets-restart"),
    ];
    assert_eq!(cull_run_once(&broker, &restart), (2 * authors * per_round) as u64);

    let records = consume(&broker, "cull.tickets", Until::End);
    let mut by_ticket: BTreeMap<String, Vec<Ticket>> = BTreeMap::new();
    for record in &records {
        let ticket: Ticket = record.json();
        by_ticket.entry(ticket.ticket_id.clone()).or_default().push(ticket);
    }
    assert_eq!(by_ticket.len(), authors, "one ticket per author: {:?}", by_ticket.keys().collect::<Vec<_>>());
    for (id, revisions) in &by_ticket {
        let numbers: Vec<u32> = revisions.iter().map(|t| t.revision).collect();
        assert!(numbers.windows(2).all(|w| w[0] <= w[1]), "{id}: revisions went back: {numbers:?}");
        let last = revisions.last().expect("a revision");
        let total = 2 * per_round as u32;
        assert_eq!((last.revision, last.mention_count), (total, total), "{id}: {numbers:?}");
        let first_due = &revisions[0].sla_due_at;
        assert!(revisions.iter().all(|t| &t.sla_due_at <= first_due), "{id}: the deadline moved back");
    }
    // The README's consumer keeps each ticket at its highest revision.
    let mut command = python();
    command.args(["examples/consume_tickets.py", "--brokers", &broker.brokers(), "--idle-ms", "5000"]);
    let example = Running::spawn("examples/consume_tickets.py", command, None).finish(RUN_LIMIT);
    assert!(example.status.success(), "{}", tail(&example.stderr, 4000));
    let mut latest: BTreeMap<String, u32> = BTreeMap::new();
    for line in example.stdout.lines() {
        let mut words = line.split_whitespace().skip(2);
        let (Some(id), Some(revision)) = (words.next(), words.next()) else { panic!("{line}") };
        let revision: u32 =
            revision.trim_start_matches('r').parse().unwrap_or_else(|e| panic!("{e}: {line}"));
        latest.insert(id.to_string(), revision);
    }
    assert_eq!(latest.len(), authors, "{}", example.stdout);
    let total = 2 * per_round as u32;
    assert!(latest.values().all(|r| *r == total), "the consumer ends at revision {total}: {latest:?}");
}

/// Sends one HTTP/1.1 POST of a JSON body; returns the status and the whole response.
fn post(address: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(90)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, response))
}

fn webhook_body(ids: &[&str]) -> String {
    let items: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(r#"{{"schema":"cull.mention/v1","id":"{id}","text":"Slack outage report number {id}"}}"#)
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// A broker that does not answer at start is waited for rather than a crash loop:
/// `/healthz` answers, `/readyz` says `broker unreachable` and why, and once the broker
/// is back the process creates its topics and is ready.
#[test]
fn a_broker_unreachable_at_start_is_named_on_readyz_and_waited_for() {
    let mut broker = start_broker();
    broker.kill();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let file = dir.path().join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            "[bus]\nkind = \"kafka\"\n[bus.kafka]\nbrokers = \"{}\"\n[matcher]\nenabled = false\n\
             [tickets]\nenabled = false\n[http]\nlisten = \"{address}\"\n",
            broker.brokers()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_cull"));
    command.args(["run", file.to_str().unwrap()]).current_dir(dir.path()).env("RUST_LOG", "info");
    let running = Running::spawn("cull run (broker down)", command, None);

    // The topic creation times out after the client's request timeout (30 s).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready = crate::pipeline::get(&address, "/readyz");
        if matches!(&ready, Ok((503, body)) if body.starts_with("not ready: broker unreachable: ")) {
            break;
        }
        assert!(Instant::now() < deadline, "{ready:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(crate::pipeline::get(&address, "/healthz").unwrap().0, 200);

    broker.restart().unwrap();
    crate::pipeline::wait_ready(&address);
    let finished = running.sigkill();
    assert!(
        finished.stderr.contains("the brokers do not answer; waiting for them"),
        "{}",
        tail(&finished.stderr, 4000)
    );
}

#[test]
fn webhook_mentions_reach_kafka_and_a_missing_broker_is_a_503_never_a_2xx() {
    require_kafka_python();
    let mut broker = start_broker();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let file = dir.path().join("ingest.toml");
    std::fs::write(
        &file,
        format!(
            "[bus]\nkind = \"kafka\"\n[bus.kafka]\nbrokers = \"{}\"\npartitions = 2\n[matcher]\nenabled = false\n[tickets]\nenabled = false\n\
             [ingest]\nstate_dir = \"{}\"\n[[source]]\nkind = \"webhook\"\nname = \"hook\"\n[http]\nlisten = \"{address}\"\n",
            broker.brokers(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_cull"));
    command.args(["run", file.to_str().unwrap()]).current_dir(repo()).env("RUST_LOG", "info");
    let running = Running::spawn("cull run (webhook ingest)", command, None);

    // The webhook answers 503 until the topics exist and the process is ready.
    crate::pipeline::wait_ready(&address);
    let first = webhook_body(&["k-1", "k-2", "k-3"]);
    let answer = post(&address, "/ingest/hook", &first).unwrap();
    assert_eq!(answer.0, 202, "{}", answer.1);
    let consumed = consume(&broker, "cull.mentions", Until::Count(3));
    let keys: BTreeSet<String> = consumed.iter().map(|r| r.key.clone().unwrap_or_default()).collect();
    assert_eq!(keys, BTreeSet::from(["k-1".to_string(), "k-2".into(), "k-3".into()]), "keyed by mention id");

    // Without a broker the mentions cannot be acknowledged: the sender is told to
    // retry (503 with Retry-After) once the delivery times out, and never gets a 2xx.
    broker.kill();
    let second = webhook_body(&["k-4", "k-5"]);
    let (status, head) = post(&address, "/ingest/hook", &second).unwrap();
    assert_eq!(status, 503, "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");

    // The sender retries after the broker is back; nothing it was told to retry is lost.
    broker.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, head) = post(&address, "/ingest/hook", &second).unwrap();
        if status == 202 {
            break;
        }
        assert!(matches!(status, 429 | 503) && Instant::now() < deadline, "{head}");
        std::thread::sleep(Duration::from_secs(1));
    }
    let consumed = consume(&broker, "cull.mentions", Until::End);
    let keys: BTreeSet<String> = consumed.iter().map(|r| r.key.clone().unwrap_or_default()).collect();
    let expected: BTreeSet<String> = (1..=5).map(|n| format!("k-{n}")).collect();
    assert_eq!(keys, expected);
    let finished = running.sigkill();
    assert!(!finished.stderr.contains("panicked"), "{}", tail(&finished.stderr, 4000));
}

/// Returns the checkpoint in the last commit of the index in `dir` (the sum of the
/// next offsets over the partitions), or None before the first commit.
fn committed_offsets(dir: &Path) -> Option<i64> {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
    let payload: serde_json::Value = serde_json::from_str(meta["payload"].as_str()?).ok()?;
    Some(payload["offsets"]["cull.verdicts"].as_object()?.values().filter_map(|v| v.as_i64()).sum())
}

#[test]
fn an_indexer_killed_between_commits_resumes_at_its_checkpoint_and_holds_each_verdict_once() {
    require_kafka_python();
    let broker = start_broker();
    let (first_part, second_part) = (1000, 300);
    produce(&broker, "cull.mentions", &[("cull.mentions", 3)], &matching_mentions("one", first_part));
    assert_eq!(cull_run_once(&broker, &[]), first_part as u64);

    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let index_dir = index.to_str().unwrap();
    let indexer_env = |commit_secs: &'static str| {
        vec![
            ("CULL__INDEX__ENABLED", "true"),
            ("CULL__MATCHER__ENABLED", "false"),
            ("CULL__TICKETS__ENABLED", "false"),
            ("CULL__INDEX__COMMIT_DOCS", "1000"),
            ("CULL__INDEX__COMMIT_SECS", commit_secs),
            ("CULL__INDEX__DIR", index_dir),
            // The indexer also takes the tickets of its mentions; this test counts
            // verdicts, so it points the indexer at a ticket topic nobody writes.
            ("CULL__TOPICS__TICKETS", "cull.tickets-unread"),
        ]
    };
    // The indexer commits once it holds 1,000 documents: exactly the first part.
    let first = cull_run(&broker, false, &indexer_env("3600"));
    let deadline = Instant::now() + Duration::from_secs(90);
    while committed_offsets(&index).is_none() {
        assert!(Instant::now() < deadline, "the indexer never committed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The second part is indexed but not committed (under 1,000 documents, and the
    // time limit is an hour) when the indexer is killed.
    produce(&broker, "cull.mentions", &[], &matching_mentions("two", second_part));
    assert_eq!(cull_run_once(&broker, &[]), second_part as u64);
    std::thread::sleep(Duration::from_secs(3));
    let killed = first.sigkill();
    assert!(killed.stderr.contains("index committed documents=1000"), "{}", tail(&killed.stderr, 4000));
    assert_eq!(committed_offsets(&index), Some(first_part as i64));
    let searcher = cull_index::Searcher::open(&index, cull_index::Limits::default()).unwrap();
    assert_eq!(searcher.len(), first_part as u64, "the index holds exactly what its checkpoint covers");
    drop(searcher);

    // The restart indexes exactly the records after the checkpoint, although the
    // consumer group replays from its own (older or equal) committed offsets. It comes
    // after the killed member's session is over (see the matcher's restart above: tansu
    // does not rebalance a group whose dead member it still counts).
    std::thread::sleep(SESSION_TIMEOUT + Duration::from_secs(2));
    let second = cull_run(&broker, true, &indexer_env("1")).finish(RUN_LIMIT);
    assert!(second.status.success(), "{}", tail(&second.stderr, 4000));
    let indexed: u64 = second
        .stdout
        .trim()
        .rsplit_once("; ")
        .and_then(|(_, last)| last.strip_suffix(" indexed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `N indexed` in {}", second.stdout));
    assert_eq!(indexed, second_part as u64);
    let total = first_part + second_part;
    assert_eq!(committed_offsets(&index), Some(total as i64));
    let searcher = cull_index::Searcher::open(&index, cull_index::Limits::default()).unwrap();
    assert_eq!(searcher.len(), total as u64, "every verdict once");
    let all = searcher
        .search(
            &cull_model::Scope::All,
            &cull_index::SearchRequest { limit: 0, facets: vec!["verdict".into()], ..Default::default() },
        )
        .unwrap();
    assert_eq!(all.total, total);
    assert_eq!(all.facets["verdict"][0].count, total as u64, "every one matched the Slack rule");
}

/// A mention the matcher panics on (an injected fault, `failpoints` builds only):
/// dead-lettered once, the group's offsets past it, every other mention ticketed.
#[cfg(feature = "failpoints")]
#[test]
fn a_poison_mention_is_dead_lettered_once_and_the_group_moves_past_it() {
    require_kafka_python();
    let broker = start_broker();
    let mut input = matching_mentions("good", 60);
    input.extend_from_slice(&matching_mentions("poison", 1));
    input.extend_from_slice(&matching_mentions("late", 60));
    produce(&broker, "cull.mentions", &[("cull.mentions", 3)], &input);
    let fault = [("FAILPOINTS", "stage::record=return(match:poison-00000)")];
    let finished = cull_run(&broker, true, &fault).finish(RUN_LIMIT);
    assert!(finished.status.success(), "{}", tail(&finished.stderr, 4000));
    assert!(
        finished.stdout.contains("121 mention(s) in: 120 matched")
            && finished.stdout.contains("1 dead letter(s)"),
        "{}",
        finished.stdout
    );

    // The restart with the fault still on: the group committed past the poison record,
    // so nothing is read (or dead-lettered) again.
    let again = cull_run(&broker, true, &fault).finish(RUN_LIMIT);
    assert!(again.status.success(), "{}", tail(&again.stderr, 4000));
    assert!(again.stdout.starts_with("cull run: 0 mention(s) in"), "{}", again.stdout);

    let letters = consume(&broker, "cull.dead-letter", Until::End);
    assert_eq!(letters.len(), 1, "dead-lettered once: {letters:?}");
    assert_eq!(letters[0].header("cull.stage"), Some("match"));
    assert!(
        letters[0]
            .header("cull.error")
            .is_some_and(|e| e.contains("panicked") && e.contains("injected fault")),
        "{letters:?}"
    );
    let original: serde_json::Value = serde_json::from_slice(&letters[0].bytes()).unwrap();
    assert_eq!(original["id"], "poison-00000", "the original bytes");
    let tickets = consume(&broker, "cull.tickets", Until::End);
    let expected: BTreeSet<String> = ids("good", 60).into_iter().chain(ids("late", 60)).collect();
    assert_one_ticket_per_mention(&check_tickets(&tickets), &expected);
}

#[test]
fn tickets_on_kafka_reach_a_signed_webhook_each_under_its_own_id() {
    require_kafka_python();
    let broker = start_broker();
    let dir = tempfile::tempdir().unwrap();
    let receiver =
        crate::alerts::Receiver::start(crate::alerts::SECRET, &dir.path().join("hooks.jsonl"), &[]);
    let kafka = std::fs::read_to_string(repo().join("pipelines/kafka.toml")).unwrap();
    let file = dir.path().join("kafka-alerts.toml");
    let sink = format!(
        "\n[[sink.alert]]\nname = \"crm\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_env = \"{}\"\n",
        receiver.url(),
        crate::alerts::SECRET_ENV
    );
    std::fs::write(&file, kafka + &sink).unwrap();
    let count = 30;
    produce(&broker, "cull.mentions", &[("cull.mentions", 2)], &matching_mentions("alert", count));
    let finished = cull_run_file(&broker, &file, true, &[(crate::alerts::SECRET_ENV, crate::alerts::SECRET)])
        .finish(RUN_LIMIT);
    assert!(finished.status.success(), "cull run --once: {}", tail(&finished.stderr, 4000));
    let tickets = consume(&broker, "cull.tickets", Until::End);
    let expected: BTreeSet<String> = tickets
        .iter()
        .map(|record| {
            let ticket: Ticket = record.json();
            format!("{}.r{}", ticket.ticket_id, ticket.revision)
        })
        .collect();
    assert_eq!(expected.len(), count, "one ticket per mention");
    let entries = receiver.entries();
    let delivered: BTreeSet<String> = entries.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        delivered, expected,
        "every ticket on the topic reached the webhook under its ticket id and revision"
    );
    assert!(entries.iter().all(|e| e["verified"] == true && e["status"] == 200), "{entries:?}");
}
