//! The JSON-lines source: follow mode like `tail -F`, and bad lines as dead letters.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cull_bus::{EmbeddedBus, Record};
use cull_ingest::jsonl::{run_jsonl, JsonlConfig};
use cull_ingest::Markup;
use cull_model::{DeadLetter, Mention};

use crate::feeds::{outlet, Recorder};
use crate::pipeline::{cull, get, listening_address, text};

fn line(id: &str) -> String {
    format!("{{\"schema\":\"cull.mention/v1\",\"id\":\"{id}\",\"text\":\"mention {id}\"}}\n")
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// Collects mentions from the bus until `count` arrived (or 10 s passed).
async fn take(bus: &EmbeddedBus, count: usize) -> Vec<String> {
    let mut consumer = bus.consumer(&["cull.mentions"], "test").unwrap();
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < count && Instant::now() < deadline {
        let records = consumer.next_batch(100, Duration::from_millis(5), Duration::from_millis(50)).await;
        for record in records.unwrap().unwrap() {
            ids.push(Mention::from_json(&record.payload).unwrap().id);
        }
    }
    consumer.commit().await.unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_file_survives_partial_lines_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    append(&path, &(line("a") + &line("b")));
    let recorder = Arc::new(Recorder::default());
    let (outlet, bus) = outlet(&recorder);
    let config = JsonlConfig {
        name: "tail".into(),
        path: Some(path.clone()),
        follow: true,
        poll_interval: Duration::from_millis(20),
        max_line_bytes: 4096,
        cursor: None,
        markup: Markup::Plain,
    };
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move { run_jsonl(&outlet, &config, stop).await });
    assert_eq!(take(&bus, 2).await, ["a", "b"]);

    let c = line("c");
    let (first_half, second_half) = c.split_at(20);
    append(&path, first_half);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(take_now(&bus).await.is_empty(), "half a line is held until its newline");
    append(&path, second_half);
    assert_eq!(take(&bus, 1).await, ["c"]);

    // Rotation: the file is renamed, its writer adds one last line, a new file appears.
    let rotated = dir.path().join("in.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    append(&rotated, &line("d"));
    append(&path, &line("e"));
    assert_eq!(take(&bus, 2).await, ["d", "e"]);

    // Truncation: the file starts over.
    std::fs::write(&path, "").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&path, &line("f"));
    assert_eq!(take(&bus, 1).await, ["f"]);

    stop_sender.send(true).unwrap();
    let stats = task.await.unwrap().unwrap();
    assert_eq!((stats.mentions, stats.dead_letters), (6, 0));
    assert_eq!(recorder.get("delivered/tail"), 6);
}

async fn take_now(bus: &EmbeddedBus) -> Vec<Record> {
    let mut consumer = bus.consumer(&["cull.mentions"], "test").unwrap();
    let records =
        consumer.next_batch(100, Duration::from_millis(1), Duration::from_millis(20)).await.unwrap().unwrap();
    consumer.commit().await.unwrap();
    records
}

#[tokio::test]
async fn bad_lines_become_located_dead_letters_and_good_ones_mentions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.jsonl");
    let mut input = line("good").into_bytes();
    input.extend_from_slice(b"{not json\n\n");
    input.extend_from_slice(b"{\"schema\":\"cull.mention/v1\",\"id\":\"x\",\"text\":\"caf\xe9\"}\n");
    input.extend_from_slice(
        format!("{{\"schema\":\"cull.mention/v1\",\"id\":\"big\",\"text\":\"{}\"}}\n", "a".repeat(500))
            .as_bytes(),
    );
    input.extend_from_slice(line("last").trim_end().as_bytes());
    std::fs::write(&path, &input).unwrap();
    let recorder = Arc::new(Recorder::default());
    let (outlet, bus) = outlet(&recorder);
    let config = JsonlConfig {
        name: "file".into(),
        path: Some(path.clone()),
        follow: false,
        poll_interval: Duration::from_millis(20),
        max_line_bytes: 256,
        cursor: None,
        markup: Markup::Plain,
    };
    let (_stop_sender, stop) = tokio::sync::watch::channel(false);
    let stats = run_jsonl(&outlet, &config, stop).await.unwrap();
    assert_eq!((stats.lines, stats.mentions, stats.dead_letters), (5, 2, 3));
    assert_eq!(take(&bus, 2).await, ["good", "last"], "a last line without a newline counts");

    let mut letters = bus.consumer(&["cull.dead-letter"], "test").unwrap();
    let records =
        letters.next_batch(10, Duration::from_millis(5), Duration::from_millis(50)).await.unwrap().unwrap();
    let header = |r: &Record, name: &str| {
        String::from_utf8(r.headers.iter().find(|(n, _)| n == name).unwrap().1.clone()).unwrap()
    };
    let origins: Vec<String> = records.iter().map(|r| header(r, "cull.source.location")).collect();
    let display = path.display();
    assert_eq!(origins, [format!("{display}:2"), format!("{display}:4"), format!("{display}:5")]);
    assert!(header(&records[0], "cull.error").starts_with("malformed JSON"));
    assert_eq!(records[1].payload, b"{\"schema\":\"cull.mention/v1\",\"id\":\"x\",\"text\":\"caf\xe9\"}");
    assert_eq!(records[2].payload.len(), 256, "an oversized line keeps its head only");
    assert_eq!(recorder.get("dead_letters/file/malformed_json"), 1);
    assert_eq!(recorder.get("dead_letters/file/invalid_utf8"), 1);
    assert_eq!(recorder.get("dead_letters/file/oversized"), 1);
}

/// Signs `body` as the webhook receiver expects: hex HMAC-SHA256 of `<timestamp>.<body>`.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Polls `check` on the metrics of `address` until it holds (or 30 s pass).
async fn wait_for_metrics(address: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let address = address.to_string();
        let (_, metrics) =
            tokio::task::spawn_blocking(move || get(&address, "/metrics").unwrap()).await.unwrap();
        if check(&metrics) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "metrics never got there:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start(file: &Path, env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut child = cull(&["run", file.to_str().unwrap()], env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let address = listening_address(&mut child);
    crate::pipeline::wait_ready(&address);
    (child, address)
}

fn terminate(child: std::process::Child) -> std::process::Output {
    let status =
        std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_pipeline_turns_feed_entries_and_signed_pushes_into_tickets() {
    let server = crate::feeds::FeedServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            r#"[bus]
kind = "embedded"
[bus.embedded]
dir = "{dir}/bus"
[ingest]
state_dir = "{dir}/state"
[[source]]
kind = "feed"
name = "alerts"
url = "{feed}"
interval_secs = 3600
[[source]]
kind = "webhook"
name = "hook"
secret_env = "TEST_HOOK_SECRET"
markup = "html"
[sink.tickets]
kind = "jsonl"
path = "{dir}/tickets.jsonl"
[http]
listen = "127.0.0.1:0"
"#,
            dir = dir.path().display(),
            feed = server.url("corpus/feedjira/google_alerts_atom.xml"),
        ),
    )
    .unwrap();
    let env = [("TEST_HOOK_SECRET", "s3cret"), ("RUST_LOG", "info")];
    let (child, address) = start(&file, &env);
    let body = r#"{"schema":"cull.mention/v1","id":"pushed-1","url":"https://social.example/p/1?utm_source=x","text":"Slack messaging is down for our whole team <b>again</b>"}"#;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let client = reqwest::Client::new();
    let post = |signature: String| {
        client
            .post(format!("http://{address}/ingest/hook"))
            .header("x-cull-timestamp", now.to_string())
            .header("x-cull-signature", signature)
            .body(body)
            .send()
    };
    assert_eq!(post(sign("wrong", now, body)).await.unwrap().status(), 401);
    let accepted = post(sign("s3cret", now, body)).await.unwrap();
    assert_eq!(accepted.status(), 202);
    let answer: serde_json::Value = serde_json::from_slice(&accepted.bytes().await.unwrap()).unwrap();
    assert_eq!(answer["ids"], serde_json::json!(["pushed-1"]));

    // The README's signed curl example, against this pipeline's endpoint.
    let readme = std::fs::read_to_string(crate::pipeline::repo().join("README.md")).unwrap();
    let example = readme
        .split("```sh\n")
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("/ingest/listening-tool"))
        .expect("the README shows a signed webhook request");
    let script: String = example.lines().map(|l| format!("{}\n", l.trim_start())).collect();
    let script = script
        .replace("http://127.0.0.1:9465/ingest/listening-tool", &format!("http://{address}/ingest/hook"));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .args(["-c", &script])
            .env("CULL_WEBHOOK_SECRET", "s3cret")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(text(&out.stdout).contains(r#""ids":["tw-1"]"#), "{}{}", text(&out.stdout), text(&out.stderr));

    let metrics = wait_for_metrics(&address, |m| {
        m.contains("cull_matcher_mentions_total{outcome=\"matched\"} 15")
            && m.contains("cull_matcher_mentions_total{outcome=\"unmatched\"} 3")
    })
    .await;
    for series in [
        "cull_feed_polls_total{feed=\"alerts\",outcome=\"ok\"} 1",
        "cull_source_mentions_total{source=\"alerts\"} 20",
        "cull_source_mentions_total{source=\"hook\"} 2",
        "cull_webhook_requests_total{source=\"hook\",status=\"202\"} 2",
        "cull_webhook_requests_total{source=\"hook\",status=\"401\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    let out = terminate(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tickets: Vec<cull_model::Ticket> = std::fs::read_to_string(dir.path().join("tickets.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tickets.len(), 15, "14 company stories in the feed and the pushed mention");
    let pushed = tickets.iter().find(|t| t.mention.id == "pushed-1").expect("the pushed mention's ticket");
    assert_eq!(pushed.mention.url.as_deref(), Some("https://social.example/p/1"));
    assert_eq!(pushed.mention.text, "Slack messaging is down for our whole team again");
    assert!(tickets.iter().all(|t| !t.mention.url.as_deref().unwrap().contains("google.com")));

    // A restart polls again, and the cursor in state_dir keeps the old entries out.
    let (child, address) = start(&file, &env);
    let metrics =
        wait_for_metrics(&address, |m| m.contains("cull_feed_polls_total{feed=\"alerts\",outcome=\"ok\"} 1"))
            .await;
    assert!(metrics.contains("cull_source_mentions_total{source=\"alerts\"} 0"), "{metrics}");
    assert!(terminate(child).status.success());
}

#[test]
fn a_webhook_without_its_secret_or_under_once_is_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            "[bus]\nkind = \"embedded\"\n[bus.embedded]\ndir = \"{}/bus\"\n[[source]]\nkind = \"webhook\"\nname = \"hook\"\n\
             secret_env = \"CULL_TEST_UNSET_SECRET\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let out = cull(&["run", path], &[("CULL_TEST_UNSET_SECRET", "")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("source[0].secret_env"), "{}", text(&out.stderr));
    let out = cull(&["run", path, "--once"], &[("CULL_TEST_UNSET_SECRET", "x")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("never ends") && text(&out.stderr).contains("\"hook\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_jsonl_source_reads_stdin_with_dash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            "[bus]\nkind = \"embedded\"\n[bus.embedded]\ndir = \"{}/bus\"\n[[source]]\nkind = \"jsonl\"\nname = \"piped\"\npath = \"-\"\n\
             [sink.dead_letter]\nkind = \"jsonl\"\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().display(),
            dir.path().join("dead.jsonl").display()
        ),
    )
    .unwrap();
    let mut input = std::fs::read(crate::pipeline::repo().join("pipelines/demo/mentions.jsonl")).unwrap();
    input.extend_from_slice(b"not a mention\n");
    let mut child = cull(&["run", file.to_str().unwrap(), "--once"], &[])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("cull run: 14 mention(s) in: 6 matched"), "{}", text(&out.stdout));
    let letter: DeadLetter =
        serde_json::from_str(std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap().trim()).unwrap();
    assert_eq!((letter.stage.as_str(), letter.origin.as_str()), ("ingest", "stdin:15"));
}
