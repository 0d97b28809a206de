//! The embedded bus: what durability costs, in one run.
//!
//! * **The pipeline.** `cull run pipelines/local.toml --once` (matcher with the example
//!   rules, tickets, the analyst index, the three file sinks) over real mentions, with
//!   the durable log under each `fsync` policy, divided by the same run with
//!   `storage = "memory"` (the bounded in-memory bus cull had before the log); then
//!   the same without the index, whose writing otherwise sets the pace. Rounds are
//!   interleaved and the median is reported, since the machine is shared.
//! * **The log alone.** Records of 1 KiB appended in batches of 512 and read back by
//!   one consumer group, in process, under each configuration.
//!
//! Run with `cargo bench -p cull --bench bus`; `CULL_BENCH_MENTIONS` (default 40,000)
//! and `CULL_BENCH_ROUNDS` (default 3) change the sizes.

#[path = "../tests/corpus.rs"]
mod corpus;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cull_bus::{EmbeddedBus, EmbeddedConfig, Fsync, Message, StorageKind};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The configurations measured: the memory baseline first.
const CONFIGURATIONS: [(&str, &str, &str); 4] = [
    ("memory (baseline)", "memory", "never"),
    ("disk, fsync = never", "disk", "never"),
    ("disk, fsync = interval (100 ms)", "disk", "interval"),
    ("disk, fsync = always", "disk", "always"),
];

/// Runs the local pipeline once over `input` in a fresh data directory; returns its
/// wall time.
fn run_pipeline(input: &Path, storage: &str, fsync: &str, index: bool) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_cull"))
        .args(["run", "pipelines/local.toml", "--once"])
        .current_dir(repo())
        .envs([
            ("CULL__SOURCE__0__PATH", input.to_str().expect("UTF-8 path")),
            ("CULL__BUS__EMBEDDED__DIR", &path("bus")),
            ("CULL__BUS__EMBEDDED__STORAGE", storage),
            ("CULL__BUS__EMBEDDED__FSYNC", fsync),
            ("CULL__INDEX__DIR", &path("index")),
            ("CULL__INDEX__ENABLED", if index { "true" } else { "false" }),
            ("CULL__INGEST__STATE_DIR", &path("state")),
            ("CULL__SINK__TICKETS__PATH", &path("tickets.jsonl")),
            ("CULL__SINK__VERDICTS__PATH", &path("verdicts.jsonl")),
            ("CULL__SINK__DEAD_LETTER__PATH", &path("dead-letter.jsonl")),
            ("CULL__HTTP__LISTEN", "127.0.0.1:0"),
            ("RUST_LOG", "warn"),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("cull runs");
    assert!(out.status.success(), "cull run failed: {}", String::from_utf8_lossy(&out.stderr));
    let elapsed = started.elapsed();
    eprintln!(
        "  {storage}/{fsync}/index {index}: {:.2} s  {}",
        elapsed.as_secs_f64(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    elapsed
}

/// Appends `count` records of 1 KiB in batches of 512 and reads them back; returns
/// the time for both.
fn run_log(count: usize, config: &EmbeddedConfig, runtime: &tokio::runtime::Runtime) -> Duration {
    let bus = EmbeddedBus::open(config).expect("bus");
    let payload = vec![b'x'; 1024];
    runtime.block_on(async {
        let mut consumer = bus.consumer(&["bench"], "reader").expect("consumer");
        let producer = bus.producer();
        let started = Instant::now();
        let writer = tokio::spawn(async move {
            for start in (0..count).step_by(512) {
                let batch: Vec<Message> = (start..(start + 512).min(count))
                    .map(|i| Message {
                        key: Some(i.to_string().into_bytes()),
                        payload: payload.clone(),
                        headers: Vec::new(),
                    })
                    .collect();
                producer.send_all("bench", batch).await.expect("send");
            }
        });
        let mut read = 0;
        while read < count {
            let batch = consumer
                .next_batch(512, Duration::from_millis(1), Duration::from_millis(200))
                .await
                .expect("read");
            read += batch.map_or(0, |b| b.len());
            consumer.commit().await.expect("commit");
        }
        writer.await.expect("writer");
        started.elapsed()
    })
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let count = env_number("CULL_BENCH_MENTIONS", 40_000);
    let rounds = env_number("CULL_BENCH_ROUNDS", 3).max(1);
    let real = corpus::real_mentions(3_000);
    let input_dir = tempfile::tempdir().expect("temp dir");
    let input = input_dir.path().join("mentions.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).expect("input"));
    for i in 0..count {
        let mut mention = real[i % real.len()].clone();
        mention.id = format!("bench-{i}");
        mention.url = Some(format!("https://bench.example/{i}"));
        serde_json::to_writer(&mut file, &mention).expect("mention JSON");
        file.write_all(b"\n").expect("write");
    }
    file.flush().expect("flush");
    drop(file);

    eprintln!("the local pipeline over {count} real mentions, {rounds} interleaved round(s)");
    let mut pipeline: Vec<Vec<Duration>> = vec![Vec::new(); CONFIGURATIONS.len()];
    let mut unindexed: Vec<Vec<Duration>> = vec![Vec::new(); CONFIGURATIONS.len()];
    for _ in 0..rounds {
        for (i, (_, storage, fsync)) in CONFIGURATIONS.iter().enumerate() {
            pipeline[i].push(run_pipeline(&input, storage, fsync, true));
            unindexed[i].push(run_pipeline(&input, storage, fsync, false));
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let records = 200_000;
    eprintln!("the log alone: {records} records of 1 KiB, {rounds} interleaved round(s)");
    let mut log: Vec<Vec<Duration>> = vec![Vec::new(); CONFIGURATIONS.len()];
    for _ in 0..rounds {
        for (i, (_, storage, fsync)) in CONFIGURATIONS.iter().enumerate() {
            let dir = tempfile::tempdir().expect("temp dir");
            let config = EmbeddedConfig {
                dir: dir.path().to_path_buf(),
                storage: if *storage == "memory" { StorageKind::Memory } else { StorageKind::Disk },
                fsync: match *fsync {
                    "always" => Fsync::Always,
                    "interval" => Fsync::Interval,
                    _ => Fsync::Never,
                },
                capacity: 100_000,
                ..EmbeddedConfig::default()
            };
            log[i].push(run_log(records, &config, &runtime));
        }
    }

    println!();
    println!(
        "| bus | pipeline mentions/s | ÷ memory | without the index | ÷ memory | log records/s | ÷ memory |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let rate = |n: usize, d: &[Duration]| n as f64 / median(d.to_vec()).as_secs_f64();
    let (base_pipeline, base_unindexed, base_log) =
        (rate(count, &pipeline[0]), rate(count, &unindexed[0]), rate(records, &log[0]));
    for (i, (name, _, _)) in CONFIGURATIONS.iter().enumerate() {
        let (p, u, l) = (rate(count, &pipeline[i]), rate(count, &unindexed[i]), rate(records, &log[i]));
        println!(
            "| {name} | {p:.0} | {:.2} | {u:.0} | {:.2} | {l:.0} | {:.2} |",
            p / base_pipeline,
            u / base_unindexed,
            l / base_log
        );
    }
}
