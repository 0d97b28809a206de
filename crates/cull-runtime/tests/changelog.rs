//! A stage's state through its changelog topic: it survives a restart and a crash on
//! the embedded bus, and follows its partitions to another replica on Kafka (tansu).

#[path = "../../../tests/broker.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cull_bus::{BusError, EmbeddedBus, EmbeddedConfig, KafkaConfig, Message, Record};
use cull_runtime::{Batching, Bus, Metrics, Output, RunOptions, Runtime, Stage, StageError, Summary};
use support::TestBroker;
use tokio::sync::mpsc;

const INPUT: &str = "in";
const CHANGELOG: &str = "counts";
const DEAD: &str = "dead";
const GROUP: &str = "counters";
const BATCH: Batching = Batching { max: 16, linger: Duration::from_millis(5) };
/// A bound that only detects a hang.
const WAIT: Duration = Duration::from_secs(60);

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

/// Counts its records per key and writes each count it changed to its changelog (key
/// = the record's key, payload = the count, which only grows and so orders them);
/// sleeps `pause` per batch.
struct Counter {
    counts: Counts,
    pause: Duration,
}

impl Counter {
    fn new() -> (Counter, Counts) {
        let counts = Counts::default();
        (Counter { counts: Arc::clone(&counts), pause: Duration::ZERO }, counts)
    }
}

fn key_of(record: &Record) -> String {
    String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned()
}

impl Stage for Counter {
    fn name(&self) -> &str {
        "count"
    }

    fn process(&mut self, records: &[Record], out: &mut Output) -> Result<(), StageError> {
        std::thread::sleep(self.pause);
        let mut counts = self.counts.lock().unwrap();
        let mut changed = BTreeMap::new();
        for record in records {
            let count = counts.entry(key_of(record)).or_default();
            *count += 1;
            changed.insert(key_of(record), *count);
        }
        for (key, count) in changed {
            out.send(
                CHANGELOG,
                Message {
                    key: Some(key.into_bytes()),
                    payload: count.to_string().into_bytes(),
                    headers: Vec::new(),
                },
            );
        }
        Ok(())
    }

    fn changelog(&self) -> Option<String> {
        Some(CHANGELOG.to_string())
    }

    fn restore(&mut self, records: &[Record]) {
        let mut counts = self.counts.lock().unwrap();
        for record in records {
            let Some(restored) = std::str::from_utf8(&record.payload).ok().and_then(|p| p.parse().ok())
            else {
                continue;
            };
            let count = counts.entry(key_of(record)).or_default();
            *count = (*count).max(restored);
        }
    }
}

/// `per_key` records for each of `keys`.
fn keyed(keys: &[&str], per_key: usize) -> Vec<Message> {
    (0..per_key)
        .flat_map(|_| keys.iter())
        .map(|key| Message {
            key: Some(key.as_bytes().to_vec()),
            payload: b"x".to_vec(),
            headers: Vec::new(),
        })
        .collect()
}

fn runtime(bus: Bus, once: bool, stage: Counter, metrics: &Arc<Metrics>) -> Runtime {
    let options = RunOptions { once, deadline: Duration::from_secs(30), dead_letter_topic: DEAD.into() };
    let mut runtime = Runtime::new(bus, Arc::clone(metrics), Arc::new(Summary::default()), options).unwrap();
    runtime.stage(stage, &[INPUT], GROUP, &[], BATCH).unwrap();
    runtime
}

/// Returns the changelog records `metrics` says the count stage read back.
fn restored(metrics: &Metrics) -> u64 {
    let series = r#"cull_stage_changelog_restored_total{stage="count"} "#;
    let text = metrics.render();
    let line = text.lines().find_map(|line| line.strip_prefix(series));
    line.unwrap_or_else(|| panic!("no {series} in\n{text}")).parse().unwrap()
}

fn snapshot(counts: &Counts) -> BTreeMap<String, u64> {
    counts.lock().unwrap().clone()
}

/// Polls until `done` holds of the counts, for at most [`WAIT`].
async fn wait_until(counts: &[&Counts], what: &str, done: impl Fn(&[BTreeMap<String, u64>]) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now: Vec<BTreeMap<String, u64>> = counts.iter().map(|c| snapshot(c)).collect();
        if done(&now) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} within {WAIT:?}; counts: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn on_disk(dir: &std::path::Path) -> EmbeddedConfig {
    EmbeddedConfig { dir: dir.join("bus"), ..EmbeddedConfig::default() }
}

/// Opens the bus of `config`, waiting while the tasks of a killed run still hold its
/// lock.
async fn reopen(config: &EmbeddedConfig) -> EmbeddedBus {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match EmbeddedBus::open(config) {
            Ok(bus) => return bus,
            Err(BusError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("{error}"),
        }
    }
}

async fn run_once(bus: EmbeddedBus, stage: Counter, metrics: &Arc<Metrics>) {
    let (_signals, receiver) = mpsc::unbounded_channel();
    let finished =
        tokio::time::timeout(WAIT, runtime(Bus::Embedded(bus), true, stage, metrics).run(receiver))
            .await
            .expect("the run ends");
    finished.result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_go_on_after_a_restart_on_the_embedded_bus() {
    let dir = tempfile::tempdir().unwrap();
    let config = on_disk(dir.path());
    for run in 1..=3u64 {
        let bus = EmbeddedBus::open(&config).unwrap();
        bus.producer().send_all(INPUT, keyed(&["a", "b", "c"], 10)).await.unwrap();
        let (stage, counts) = Counter::new();
        let metrics = Arc::new(Metrics::new());
        run_once(bus, stage, &metrics).await;
        let expected: BTreeMap<String, u64> = ["a", "b", "c"].map(|k| (k.to_string(), 10 * run)).into();
        assert_eq!(snapshot(&counts), expected, "run {run} counts on from the one before");
        if run > 1 {
            assert!(restored(&metrics) >= 3, "at least one state record per key read back");
        }
    }
    let groups: Vec<_> = std::fs::read_dir(config.dir.join(CHANGELOG).join("groups")).unwrap().collect();
    assert!(groups.is_empty(), "reading the changelog back left no group behind: {groups:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_sends_no_count_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let config = on_disk(dir.path());
    let keys = ["a", "b", "c", "d"];
    let bus = EmbeddedBus::open(&config).unwrap();
    bus.producer().send_all(INPUT, keyed(&keys, 2_000)).await.unwrap();
    let (stage, counts) = Counter::new();
    // Slow enough that the run commits its input's offsets (once a second) before the
    // kill, so that a restart does not simply count everything again.
    let stage = Counter { pause: Duration::from_millis(5), ..stage };
    let metrics = Arc::new(Metrics::new());
    let (signals, receiver) = mpsc::unbounded_channel::<()>();
    let run = tokio::spawn(runtime(Bus::Embedded(bus), false, stage, &metrics).run(receiver));
    let committed = config.dir.join(INPUT).join("groups").join(format!("{GROUP}.offset"));
    wait_until(&[&counts], "a commit", |_| committed.exists()).await;
    // As kill -9: no flush, no commit, whatever was in flight.
    run.abort();
    let before = snapshot(&counts);
    drop(signals);
    let _ = run.await;

    let bus = reopen(&config).await;
    let (stage, counts) = Counter::new();
    run_once(bus, stage, &metrics).await;
    let after = snapshot(&counts);
    for key in keys {
        assert!(after[key] >= before[key], "{key}: {} before the kill, {} after", before[key], after[key]);
        assert!(after[key] >= 2_000, "{key}: every record counted at least once: {}", after[key]);
    }
}

impl TestBroker {
    fn config(&self) -> KafkaConfig {
        KafkaConfig {
            brokers: self.brokers(),
            group_id: GROUP.to_string(),
            partitions: 2,
            client_id: "cull-changelog-test".to_string(),
            stats_interval: Duration::from_millis(200),
            ..KafkaConfig::default()
        }
    }
}

/// Starts a replica of the count stage on Kafka; returns its counts, the sender of
/// its stop signal and its run.
fn replica(
    config: &KafkaConfig,
) -> (Counts, Arc<Metrics>, mpsc::UnboundedSender<()>, tokio::task::JoinHandle<cull_runtime::Finished>) {
    let (stage, counts) = Counter::new();
    let metrics = Arc::new(Metrics::new());
    let (signals, receiver) = mpsc::unbounded_channel();
    let run = tokio::spawn(runtime(Bus::Kafka(config.clone()), false, stage, &metrics).run(receiver));
    (counts, metrics, signals, run)
}

async fn stop(signals: &mpsc::UnboundedSender<()>, run: tokio::task::JoinHandle<cull_runtime::Finished>) {
    signals.send(()).unwrap();
    let finished = tokio::time::timeout(WAIT, run).await.expect("the replica stops").unwrap();
    finished.result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_takes_partitions_over_goes_on_from_the_counts_of_their_previous_owner() {
    let broker = TestBroker::start().unwrap_or_else(|error| panic!("{error}"));
    let config = broker.config();
    cull_bus::ensure_topics(&config, &[INPUT, CHANGELOG, DEAD]).await.unwrap();
    let producer = cull_bus::kafka_producer(&config).unwrap();
    let keys = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"];
    let all = |count: u64| {
        move |now: &[BTreeMap<String, u64>]| {
            keys.iter().all(|k| now.iter().any(|c| c.get(*k) >= Some(&count)))
        }
    };

    let (a, _, a_signals, a_run) = replica(&config);
    producer.send_all(INPUT, keyed(&keys, 10)).await.unwrap();
    wait_until(&[&a], "A counted the first records", all(10)).await;

    // B joins while A runs: the group splits the partitions, and A goes on writing the
    // state of those it keeps after B read the changelog at its start.
    let (b, b_metrics, b_signals, b_run) = replica(&config);
    producer.send_all(INPUT, keyed(&keys, 10)).await.unwrap();
    wait_until(&[&a, &b], "A and B counted the second records", all(20)).await;

    // A leaves: B takes every partition over and must go on from A's counts.
    stop(&a_signals, a_run).await;
    producer.send_all(INPUT, keyed(&keys, 10)).await.unwrap();
    wait_until(&[&b], "B counted every record of every key", all(30)).await;
    stop(&b_signals, b_run).await;
    assert!(restored(&b_metrics) >= keys.len() as u64, "B read A's state back");
}
