//! Ingest throughput, in one run, each figure with a baseline measured alongside:
//!
//! * feeds: entries/s through `parse_feed` + `normalize` + the duplicate screen over
//!   the real feeds of the shared corpora (feed-rs's fixtures and feedjira's samples,
//!   Google Alerts among them), against feed-rs's parse alone;
//! * webhook: mentions/s a running `cull run` accepts (`202`, handed to the embedded
//!   bus, matched by the example rules) under load from `wrk` in a second process on
//!   loopback, against `wrk` on the same server's `/healthz` (the HTTP floor).
//!
//! Run with `cargo bench -p cull --bench ingest` (needs `wrk`: `apt-get install wrk`).
//! `CULL_BENCH_SECONDS` sets the duration of each wrk run (default 10).

#[path = "../tests/corpus.rs"]
mod corpus;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cull_ingest::feed::parse_feed;
use cull_ingest::{normalize, Screen, ScreenConfig};
use cull_model::Channel;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The real feeds: documents feed-rs reads, from its fixtures and feedjira's samples.
fn real_feeds() -> Vec<(String, Vec<u8>)> {
    let mut feeds = Vec::new();
    for dir in ["feed-rs", "feedjira"] {
        let mut pending = vec![corpus::data_dir().join("feeds").join(dir)];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).expect("the shared feed corpora") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let name = path.to_string_lossy().into_owned();
                if name.ends_with(".serde.json") {
                    continue;
                }
                let bytes = std::fs::read(&path).expect("a feed file");
                if parse_feed(&bytes, "bench", Channel::News, "https://feeds.example/").is_ok() {
                    feeds.push((name, bytes));
                }
            }
        }
    }
    feeds
}

/// Runs `work` over `feeds` repeatedly for at least two seconds; returns entries/s.
fn entries_per_second(feeds: &[(String, Vec<u8>)], mut work: impl FnMut(&[u8]) -> usize) -> f64 {
    let started = Instant::now();
    let mut entries = 0usize;
    while started.elapsed() < Duration::from_secs(2) {
        for (_, bytes) in feeds {
            entries += work(bytes);
        }
    }
    entries as f64 / started.elapsed().as_secs_f64()
}

fn bench_feeds() {
    let feeds = real_feeds();
    let bytes: usize = feeds.iter().map(|(_, b)| b.len()).sum();
    let parse_only = entries_per_second(&feeds, |bytes| {
        feed_rs::parser::parse(bytes).map(|feed| feed.entries.len()).unwrap_or(0)
    });
    let now = time::OffsetDateTime::now_utc();
    let mut screen = Screen::new(ScreenConfig { capacity: 1_000_000, ..ScreenConfig::default() });
    let mut round = 0u64;
    let full = entries_per_second(&feeds, |bytes| {
        round += 1;
        let entries = parse_feed(bytes, "bench", Channel::News, "https://feeds.example/").expect("parses");
        let mentions: Vec<_> = entries
            .into_iter()
            .map(|(_, mut draft)| {
                // Each round gets new URLs, so the screen sees new mentions, not repeats.
                draft.url = Some(format!("https://bench.example/{round}/{}", draft.url.unwrap_or_default()));
                normalize(draft, now)
            })
            .collect();
        let count = mentions.len();
        screen.screen(mentions, Instant::now());
        count
    });
    println!("feeds: {} real feed documents, {:.1} MB", feeds.len(), bytes as f64 / 1e6);
    println!("| stage | entries/s | ratio |");
    println!("|---|---:|---:|");
    println!("| feed-rs parse alone (baseline) | {parse_only:.0} | 1.00 |");
    println!("| parse + normalize + screen (cull) | {full:.0} | {:.2} |", full / parse_only);
}

/// Returns a Lua long-bracket literal holding the JSON string literal of `text`
/// (wrk's LuaJIT knows no `\u` escapes, so the JSON is not re-escaped for Lua).
fn lua_string(text: &str) -> String {
    format!("[==[{}]==]", serde_json::to_string(text).expect("a string"))
}

/// Writes the wrk script: each request POSTs 10 real mentions with ids unique per
/// thread and request, so that none is dropped as a duplicate.
fn wrk_script(dir: &Path) -> PathBuf {
    let texts: Vec<String> = corpus::real_mentions(2_000)
        .iter()
        .filter(|m| !m.text.contains("]==]"))
        .map(|m| lua_string(&m.text))
        .collect();
    let script = format!(
        r#"local texts = {{ {texts} }}
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end
function init(args)
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  counter = counter + 1
  local items = {{}}
  for k = 1, 10 do
    local text = texts[((counter * 10 + k) % #texts) + 1]
    items[k] = '{{"schema":"cull.mention/v1","id":"w' .. thread_id .. '-' .. counter .. '-' .. k .. '","text":' .. text .. '}}'
  end
  return wrk.format("POST", "/ingest/bench", nil, "[" .. table.concat(items, ",") .. "]")
end
responses = {{}}
function response(status, headers, body)
  responses[status] = (responses[status] or 0) + 1
end
"#,
        texts = texts.join(",")
    );
    let path = dir.join("webhook.lua");
    std::fs::write(&path, script).expect("write the wrk script");
    path
}

/// Runs wrk and returns (requests/s, non-2xx responses, p99 latency in ms).
fn wrk(url: &str, script: Option<&Path>, seconds: u64) -> (f64, u64, f64) {
    let mut command = Command::new("wrk");
    command.args(["-t2", "-c32", &format!("-d{seconds}s"), "--latency"]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let out = command.arg(url).output().expect("wrk is installed (apt-get install wrk)");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk failed: {report}{}", String::from_utf8_lossy(&out.stderr));
    let field = |prefix: &str| {
        report.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|rest| rest.trim().to_string()))
    };
    let rate: f64 = field("Requests/sec:").and_then(|v| v.parse().ok()).expect("wrk prints Requests/sec");
    let non_2xx: u64 = field("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0);
    let p99 = field("99%").map(|v| milliseconds(&v)).unwrap_or(f64::NAN);
    (rate, non_2xx, p99)
}

/// Reads a wrk duration such as `1.23ms`, `850.00us` or `1.02s`.
fn milliseconds(value: &str) -> f64 {
    let split = value.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(value.len());
    let number: f64 = value[..split].parse().unwrap_or(f64::NAN);
    match &value[split..] {
        "us" => number / 1000.0,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => number,
    }
}

fn bench_webhook() {
    let seconds: u64 = std::env::var("CULL_BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[bus]\nkind = \"embedded\"\n[bus.embedded]\ncapacity = 8192\n[ingest]\nstate_dir = \"{}\"\n\
             [[source]]\nkind = \"webhook\"\nname = \"bench\"\nmax_pending = 4096\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("state").display()
        ),
    )
    .expect("write the pipeline");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cull"))
        .args(["run", pipeline.to_str().expect("a UTF-8 path")])
        .current_dir(repo())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cull run starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let address = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| line.split("listen=").nth(1).map(|a| a.trim().to_string()))
        .expect("cull run logs its address");
    std::thread::spawn(move || lines.for_each(drop));
    let script = wrk_script(dir.path());

    let (floor, _, floor_p99) = wrk(&format!("http://{address}/healthz"), None, seconds);
    let (rate, refused, p99) = wrk(&format!("http://{address}/ingest/bench"), Some(&script), seconds);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();

    println!("webhook: wrk -t2 -c32 -d{seconds}s on loopback, 10 mentions per request, matcher running");
    println!("| endpoint | requests/s | mentions/s | p99 ms | non-2xx | ratio |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!("| GET /healthz (baseline) | {floor:.0} | – | {floor_p99:.1} | – | 1.00 |");
    println!(
        "| POST /ingest/bench (cull) | {rate:.0} | {:.0} | {p99:.1} | {refused} | {:.2} |",
        rate * 10.0,
        rate / floor
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters like criterion's.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    if wanted("feeds") {
        bench_feeds();
    }
    if wanted("webhook") {
        bench_webhook();
    }
}
