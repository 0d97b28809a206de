//! The pipeline through a real Kafka-protocol broker (tansu on loopback), in one run:
//!
//! * throughput: mentions/s of `cull run --once` draining a topic of real mentions
//!   with the example rule packs, divided by the same with an empty rule set (the cost
//!   of matching inside the whole pipeline; DESIGN.md asks for at least 0.8);
//! * latency: p50 and p99 from producing a mention to consuming its ticket, at a fixed
//!   offered load.
//!
//! Run with `cargo bench -p cull --bench pipeline`; `CULL_BENCH_MENTIONS` and
//! `CULL_BENCH_RATE` change the sizes.

#[path = "../tests/broker.rs"]
mod broker;
#[path = "../tests/corpus.rs"]
mod corpus;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cull_bus::{ensure_topics, kafka_consumer, kafka_producer, KafkaConfig, Message};
use cull_model::Ticket;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Real mentions, each given a URL of its own so that no two share a ticket.
fn mentions(count: usize) -> Vec<cull_model::Mention> {
    let real = corpus::real_mentions(3_000);
    (0..count)
        .map(|i| {
            let mut m = real[i % real.len()].clone();
            m.id = format!("bench-{i}");
            m.url = Some(format!("https://bench.example/{i}"));
            m
        })
        .collect()
}

fn message(mention: &cull_model::Mention) -> Message {
    Message {
        key: Some(mention.id.clone().into_bytes()),
        payload: serde_json::to_vec(mention).expect("mention JSON"),
        headers: Vec::new(),
    }
}

/// Runs `cull run pipelines/kafka.toml --once` with `rules` and returns how long it took.
fn drain(brokers: &str, group: &str, rules: &Path) -> Duration {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_cull"))
        .args(["run", "pipelines/kafka.toml", "--once"])
        .current_dir(repo())
        .envs([
            ("CULL__BUS__KAFKA__BROKERS", brokers),
            ("CULL__BUS__KAFKA__GROUP_ID", group),
            ("CULL__MATCHER__RULES", rules.to_str().expect("UTF-8 path")),
            ("CULL__HTTP__LISTEN", "127.0.0.1:0"),
            ("RUST_LOG", "warn"),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("cull runs");
    assert!(out.status.success(), "cull run failed: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("  {}", String::from_utf8_lossy(&out.stdout).trim());
    started.elapsed()
}

fn now_micros() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros())
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(0) as f64 / 1000.0
}

fn main() {
    let count = env_number("CULL_BENCH_MENTIONS", 30_000);
    let rate = env_number("CULL_BENCH_RATE", 2_000);
    let broker = broker::TestBroker::start().unwrap_or_else(|e| panic!("{e}"));
    let brokers = broker.brokers();
    let config = KafkaConfig { brokers: brokers.clone(), partitions: 3, ..KafkaConfig::default() };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let topics = ["cull.mentions", "cull.verdicts", "cull.tickets", "cull.dead-letter"];
    runtime.block_on(ensure_topics(&config, &topics)).expect("topics");
    let producer = kafka_producer(&config).expect("producer");

    // Throughput: the same topic drained twice, by two groups, with and without rules.
    let batch = mentions(count);
    runtime
        .block_on(producer.send_all("cull.mentions", batch.iter().map(message).collect()))
        .expect("produce mentions");
    let empty = tempfile::tempdir().expect("temp dir");
    std::fs::write(empty.path().join("none.toml"), "[[rule]]\nid = 'never'\nquery = 'zzqxnevermatches'\n")
        .expect("write rules");
    eprintln!("draining {count} mentions with no effective rules, then with the example rules");
    let without_rules = drain(&brokers, "bench-empty", empty.path());
    let with_rules = drain(&brokers, "bench-rules", &repo().join("rules"));

    // Latency: a matcher runs; mentions that match are offered at `rate` per second,
    // each stamped with its send time; the tickets are consumed as they come.
    let mut matcher = Command::new(env!("CARGO_BIN_EXE_cull"))
        .args(["run", "pipelines/kafka.toml"])
        .current_dir(repo())
        .envs([
            ("CULL__BUS__KAFKA__BROKERS", brokers.as_str()),
            ("CULL__BUS__KAFKA__GROUP_ID", "bench-latency"),
            ("CULL__TOPICS__MENTIONS", "bench.latency"),
            ("CULL__TOPICS__TICKETS", "bench.latency-tickets"),
            ("CULL__HTTP__LISTEN", "127.0.0.1:0"),
            ("CULL__MATCHER__BATCH_WAIT_MS", "5"),
            ("RUST_LOG", "warn"),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("cull runs");
    runtime.block_on(ensure_topics(&config, &["bench.latency", "bench.latency-tickets"])).expect("topics");
    let seconds = 10;
    let offered = rate * seconds;
    let latencies = runtime.block_on(async {
        let tickets = KafkaConfig { group_id: "bench-tickets".into(), ..config.clone() };
        let mut consumer = kafka_consumer(&tickets, &["bench.latency-tickets"]).expect("consumer");
        // Warm up: the measurement starts once the matcher and this consumer have joined
        // their groups, that is once a first ticket has come through.
        let warmup =
            cull_model::Mention::new("latency-warmup", "Slack shares rise after Slack Technologies earnings");
        producer.send_all("bench.latency", vec![message(&warmup)]).await.expect("produce");
        let ready_by = Instant::now() + Duration::from_secs(60);
        loop {
            let records = consumer
                .next_batch(16, Duration::from_millis(5), Duration::from_millis(200))
                .await
                .expect("consume")
                .unwrap_or_default();
            if !records.is_empty() {
                break;
            }
            assert!(Instant::now() < ready_by, "no ticket came through within 60 s");
        }
        // Each mention is sent on its own task at its due time, so a slow acknowledgement
        // does not lower the offered load.
        let send = async {
            let started = Instant::now();
            let mut sends = tokio::task::JoinSet::new();
            for i in 0..offered {
                let due = Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                let mut m = cull_model::Mention::new(
                    format!("latency-{i}"),
                    "Slack shares rise after Slack Technologies earnings",
                );
                m.url = Some(format!("https://latency.example/{i}"));
                m.meta.insert("sent_at_us".into(), now_micros().to_string());
                let producer = producer.clone();
                sends.spawn(async move { producer.send_all("bench.latency", vec![message(&m)]).await });
            }
            while let Some(sent) = sends.join_next().await {
                sent.expect("send task").expect("produce");
            }
        };
        let receive = async {
            let mut latencies = Vec::with_capacity(offered);
            let deadline = Instant::now() + Duration::from_secs(seconds as u64 + 60);
            while latencies.len() < offered && Instant::now() < deadline {
                let records = consumer
                    .next_batch(1024, Duration::from_millis(5), Duration::from_millis(200))
                    .await
                    .expect("consume")
                    .unwrap_or_default();
                let arrived = now_micros();
                for record in records {
                    let ticket: Ticket = serde_json::from_slice(&record.payload).expect("ticket JSON");
                    if let Some(sent) =
                        ticket.mention.meta.get("sent_at_us").and_then(|s| s.parse::<u128>().ok())
                    {
                        latencies.push(arrived.saturating_sub(sent));
                    }
                }
            }
            latencies
        };
        let ((), latencies) = tokio::join!(send, receive);
        latencies
    });
    let _ = matcher.kill();
    let _ = matcher.wait();
    let mut sorted = latencies;
    sorted.sort_unstable();

    let per_second = |elapsed: Duration| count as f64 / elapsed.as_secs_f64();
    println!("\n| pipeline through tansu | value |");
    println!("|---|---:|");
    println!("| mentions/s, no effective rules | {:.0} |", per_second(without_rules));
    println!("| mentions/s, example rules | {:.0} |", per_second(with_rules));
    println!("| with rules / without | {:.2} |", without_rules.as_secs_f64() / with_rules.as_secs_f64());
    println!("| offered load | {rate} mentions/s for {seconds} s |");
    println!("| tickets received | {} of {offered} |", sorted.len());
    println!("| ingest-to-ticket p50 | {:.1} ms |", percentile(&sorted, 0.50));
    println!("| ingest-to-ticket p99 | {:.1} ms |", percentile(&sorted, 0.99));
}
