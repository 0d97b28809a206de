//! The feed poller against a local HTTP server: every feed of the shared corpora, the
//! real Google Alerts feed, conditional GET, backoff, recovery and restarts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cull_bus::dead_letter::Reason;
use cull_bus::EmbeddedBus;
use cull_ingest::feed::{client, run_feed, FeedConfig, FeedError, PollOutcome, Poller};
use cull_ingest::{normalize, Observer, Outlet, Screen, ScreenConfig};
use cull_model::Mention;

use crate::corpus::data_dir;

/// A scripted answer of the test server.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply { status: 200, headers: vec![("content-type", "application/xml".into())], body: body.into() }
    }

    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: Vec::new() }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// A request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub at: Instant,
}

#[derive(Default)]
struct Script {
    /// Answers per path; the last one repeats.
    replies: HashMap<String, VecDeque<Reply>>,
    seen: Vec<Seen>,
}

/// A local HTTP server: `/corpus/<path>` serves the shared feed corpora, any other
/// path answers from a script.
pub struct FeedServer {
    pub address: SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl FeedServer {
    pub async fn start() -> FeedServer {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = axum::Router::new()
            .route("/corpus/{*path}", axum::routing::get(corpus_file))
            .route("/{*path}", axum::routing::get(scripted))
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        FeedServer { address, script }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.address)
    }

    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        self.script.lock().unwrap().replies.insert(format!("/{path}"), replies.into());
    }

    pub fn seen(&self, path: &str) -> Vec<Seen> {
        let path = format!("/{path}");
        self.script.lock().unwrap().seen.iter().filter(|s| s.path == path).cloned().collect()
    }
}

async fn corpus_file(UrlPath(path): UrlPath<String>) -> Response {
    match std::fs::read(data_dir().join("feeds").join(&path)) {
        Ok(bytes) => bytes.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn scripted(
    State(script): State<Arc<Mutex<Script>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let mut script = script.lock().unwrap();
    let path = uri.path().to_string();
    script.seen.push(Seen { path: path.clone(), headers, at: Instant::now() });
    let Some(replies) = script.replies.get_mut(&path) else { return StatusCode::NOT_FOUND.into_response() };
    let reply = if replies.len() > 1 { replies.pop_front().unwrap() } else { replies[0].clone() };
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// An observer that remembers every count, for the metric assertions.
#[derive(Debug, Default)]
pub struct Recorder {
    pub counts: Mutex<BTreeMap<String, u64>>,
}

impl Recorder {
    fn add(&self, key: String, count: u64) {
        *self.counts.lock().unwrap().entry(key).or_default() += count;
    }

    pub fn get(&self, key: &str) -> u64 {
        self.counts.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

impl Observer for Recorder {
    fn delivered(&self, source: &str, count: u64) {
        self.add(format!("delivered/{source}"), count);
    }
    fn duplicates(&self, source: &str, count: u64) {
        self.add(format!("duplicates/{source}"), count);
    }
    fn near_duplicates(&self, source: &str, count: u64) {
        self.add(format!("near_duplicates/{source}"), count);
    }
    fn dead_letters(&self, source: &str, reason: Reason, count: u64) {
        self.add(format!("dead_letters/{source}/{}", reason.label()), count);
    }
    fn feed_polled(&self, feed: &str, outcome: &'static str) {
        self.add(format!("polled/{feed}/{outcome}"), 1);
    }
    fn webhook_answered(&self, source: &str, status: u16) {
        self.add(format!("webhook/{source}/{status}"), 1);
    }
}

/// An outlet on a fresh embedded bus, and the bus to read the mentions back.
pub fn outlet(recorder: &Arc<Recorder>) -> (Outlet, EmbeddedBus) {
    let bus = EmbeddedBus::in_memory(100_000);
    let screen = Arc::new(Mutex::new(Screen::new(ScreenConfig::default())));
    let observer: Arc<dyn Observer> = recorder.clone();
    let outlet = Outlet::new(bus.producer(), "cull.mentions", "cull.dead-letter", screen, observer);
    (outlet, bus)
}

/// Takes every mention on the bus not taken by an earlier drain.
pub async fn drain(bus: &EmbeddedBus) -> Vec<Mention> {
    let mut consumer = bus.consumer(&["cull.mentions"], "test").expect("one test consumer at a time");
    let mut mentions = Vec::new();
    while let Ok(Some(records)) =
        consumer.next_batch(10_000, Duration::from_millis(1), Duration::from_millis(20)).await
    {
        if records.is_empty() {
            break;
        }
        mentions.extend(records.iter().map(|r| Mention::from_json(&r.payload).expect("a valid mention")));
    }
    consumer.commit().await.expect("a memory bus commits");
    mentions
}

/// Returns every file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn feed(entries: &[(&str, &str)]) -> String {
    let items: String = entries
        .iter()
        .map(|(id, title)| {
            format!("<item><guid>{id}</guid><title>{title}</title><link>https://news.example.com/{id}?utm_source=rss</link><description>About {title}</description></item>")
        })
        .collect();
    format!("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>t</title>{items}</channel></rss>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_feed_goes_through_the_poller_without_a_panic() {
    let server = FeedServer::start().await;
    let root = data_dir().join("feeds");
    let files = files_under(&root);
    assert!(files.len() > 4000, "the corpora are in ../shared/data/feeds ({} files)", files.len());
    let client = client();
    let (mut fetched, mut failed, mut entries) = (0, 0, 0);
    let mut failures_by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    let mut per_file: HashMap<PathBuf, usize> = HashMap::new();
    let now = time::OffsetDateTime::now_utc();
    for path in &files {
        let relative = path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        let url = server.url(&format!("corpus/{relative}"));
        let poller = Poller::new(FeedConfig::new("corpus", url), client.clone()).unwrap();
        match poller.fetch().await {
            Ok(Some(document)) => {
                fetched += 1;
                entries += document.drafts.len();
                per_file.insert(path.clone(), document.drafts.len());
                for draft in document.drafts {
                    let mention = normalize(draft, now);
                    assert!(!mention.id.is_empty());
                    assert!(
                        !mention.text.to_ascii_lowercase().contains("<script"),
                        "{relative}: markup left in {:?}",
                        mention.text
                    );
                }
            }
            Ok(None) => panic!("{relative}: no validators were sent, so no 304 is possible"),
            Err(error) => {
                failed += 1;
                *failures_by_kind.entry(error.label()).or_default() += 1;
                assert!(error.to_string().contains(&relative), "the error names the feed: {error}");
            }
        }
    }
    eprintln!(
        "{} files: {fetched} feeds read with {entries} entries, {failed} refused {failures_by_kind:?}",
        files.len()
    );
    assert_eq!(failures_by_kind.keys().copied().collect::<Vec<_>>(), ["parse"], "only parse errors");

    // The feed-rs fixtures come with feed-rs's own reading of them: the poller, over
    // HTTP, yields every entry.
    let mut compared = 0;
    for expected in files.iter().filter(|p| p.to_string_lossy().ends_with(".serde.json")) {
        let document = PathBuf::from(expected.to_string_lossy().replace(".serde.json", ""));
        let Some(feed) = files.iter().find(|p| p.with_extension("") == document) else { continue };
        let parsed: serde_json::Value = serde_json::from_slice(&std::fs::read(expected).unwrap()).unwrap();
        let entries = parsed["entries"].as_array().unwrap().len();
        assert_eq!(per_file.get(feed).copied().unwrap_or(0), entries, "{}", feed.display());
        compared += 1;
    }
    assert!(compared >= 60, "{compared} feed-rs fixtures compared");

    // Well-formed RSS and Atom documents with items yield mentions.
    let well_formed_with_items =
        ["feedjira/TechCrunch.xml", "feed-rs/rss2/rss_2.0_bbc.xml", "feed-rs/atom/atom_example_1.xml"];
    for relative in well_formed_with_items {
        assert!(per_file.get(&root.join(relative)).copied().unwrap_or(0) > 0, "{relative}");
    }
    // feedparser's well-formed documents (those expat accepts) with entries are never
    // silently empty: each yields mentions or is a counted per-feed error.
    let not_well_formed = std::fs::read_to_string(root.join("NOT_WELL_FORMED.tsv")).unwrap();
    let (mut with_entries, mut yielded, mut silent) = (0, 0, Vec::new());
    for path in files.iter().filter(|p| p.starts_with(root.join("feedparser/wellformed"))) {
        let relative = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
        let listed = text.contains("<item>") || text.contains("<item ") || text.contains("<entry>");
        if not_well_formed.lines().any(|l| l.starts_with(&format!("{relative}\t"))) || !listed {
            continue;
        }
        with_entries += 1;
        match per_file.get(path) {
            Some(0) => silent.push(relative),
            Some(_) => yielded += 1,
            None => {}
        }
    }
    eprintln!("{with_entries} well-formed feedparser documents with entries: {yielded} yield mentions");
    assert!(silent.is_empty(), "silently empty: {silent:?}");
    assert!(yielded * 100 >= with_entries * 95, "{yielded} of {with_entries}");
}

#[tokio::test]
async fn an_ill_formed_feed_is_a_counted_error_and_a_later_good_response_recovers() {
    let server = FeedServer::start().await;
    let broken = std::fs::read(data_dir().join("feeds/feed-rs/rss2/rss_2.0_invalid_1.xml")).unwrap();
    server.script("flaky.xml", vec![Reply::ok(broken), Reply::ok(feed(&[("a", "Alpha"), ("b", "Beta")]))]);
    let recorder = Arc::new(Recorder::default());
    let (outlet, bus) = outlet(&recorder);
    let mut poller = Poller::new(FeedConfig::new("flaky", server.url("flaky.xml")), client()).unwrap();
    let (stop_sender, stop) = tokio::sync::watch::channel(false);

    let first =
        run_feed(&outlet, Poller::new(poller.config().clone(), client()).unwrap(), true, stop.clone()).await;
    assert_eq!((first.failures, first.entries), (1, 0));
    assert!(first.last_error.unwrap().contains("flaky.xml"));
    assert_eq!(recorder.get("polled/flaky/parse"), 1);

    let second = run_feed(&outlet, Poller::new(poller.config().clone(), client()).unwrap(), true, stop).await;
    assert_eq!((second.failures, second.entries), (0, 2));
    assert_eq!(recorder.get("polled/flaky/ok"), 1);
    let mentions = drain(&bus).await;
    assert_eq!(mentions.len(), 2);
    assert_eq!(mentions[0].url.as_deref(), Some("https://news.example.com/a"), "tracking removed");
    assert_eq!(poller.next_delay(None), Duration::from_secs(300));
    drop(stop_sender);
}

#[tokio::test]
async fn the_real_google_alerts_feed_yields_clean_mentions_with_the_article_urls() {
    let server = FeedServer::start().await;
    let recorder = Arc::new(Recorder::default());
    let (outlet, bus) = outlet(&recorder);
    let url = server.url("corpus/feedjira/google_alerts_atom.xml");
    let mut poller = Poller::new(FeedConfig::new("google-alerts", url), client()).unwrap();
    assert_eq!(poller.poll(&outlet).await.unwrap(), PollOutcome::Fetched(20));
    let mentions = drain(&bus).await;
    assert_eq!(mentions.len(), 20);
    for mention in &mentions {
        let url = mention.url.as_deref().unwrap();
        assert!(!url.contains("google.com"), "redirect unwrapped: {url}");
        assert!(!url.contains("ct=ga") && !url.contains("usg="), "{url}");
        let title = mention.title.as_deref().unwrap();
        for markup in ["<b>", "</b>", "&lt;", "&amp;", "&#39;", "&nbsp;"] {
            assert!(!title.contains(markup) && !mention.text.contains(markup), "{markup} in {mention:?}");
        }
        assert_eq!(mention.source.as_deref(), Some("google-alerts"));
        assert_eq!(mention.channel, Some(cull_model::Channel::News));
        assert!(mention.published_at.as_deref().unwrap().starts_with("2019-07-"));
    }
    let stock = mentions
        .iter()
        .find(|m| m.url.as_deref() == Some("https://investorplace.com/2019/07/slack-stock-truly-compelling/"))
        .expect("the InvestorPlace story");
    assert_eq!(
        stock.title.as_deref(),
        Some("Slack Stock Has a Compelling Story and the Numbers to Back It Up")
    );
    assert!(stock.text.contains("the Company's decision to go public via ..."), "{}", stock.text);
    assert_eq!(stock.lang.as_deref(), Some("en"));
}

#[tokio::test]
async fn conditional_get_sends_the_validators_and_a_304_emits_nothing() {
    let server = FeedServer::start().await;
    let body = feed(&[("a", "Alpha")]);
    server.script(
        "cond.xml",
        vec![
            Reply::ok(body).header("etag", "\"v1\"").header("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
            Reply::status(304),
        ],
    );
    let recorder = Arc::new(Recorder::default());
    let (outlet, bus) = outlet(&recorder);
    let mut poller = Poller::new(FeedConfig::new("cond", server.url("cond.xml")), client()).unwrap();
    assert_eq!(poller.poll(&outlet).await.unwrap(), PollOutcome::Fetched(1));
    assert_eq!(poller.poll(&outlet).await.unwrap(), PollOutcome::NotModified);
    let seen = server.seen("cond.xml");
    assert_eq!(seen.len(), 2);
    assert!(seen[0].headers.get("if-none-match").is_none());
    assert_eq!(seen[1].headers["if-none-match"], "\"v1\"");
    assert_eq!(seen[1].headers["if-modified-since"], "Wed, 21 Oct 2015 07:28:00 GMT");
    assert_eq!(drain(&bus).await.len(), 1);
}

#[tokio::test]
async fn failures_back_off_exponentially_and_honour_retry_after() {
    let server = FeedServer::start().await;
    server.script(
        "down.xml",
        vec![
            Reply::status(503).header("retry-after", "1"),
            Reply::status(500),
            Reply::status(500),
            Reply::status(500),
            Reply::ok(feed(&[("a", "Alpha")])),
        ],
    );
    let recorder = Arc::new(Recorder::default());
    let (outlet, _bus) = outlet(&recorder);
    let config = FeedConfig {
        backoff_base: Duration::from_millis(100),
        interval: Duration::from_secs(3600),
        ..FeedConfig::new("down", server.url("down.xml"))
    };
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let poller = Poller::new(config, client()).unwrap();
    let task = tokio::spawn(async move { run_feed(&outlet, poller, false, stop).await });
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.seen("down.xml").len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_sender.send(true).unwrap();
    let stats = task.await.unwrap();
    assert_eq!((stats.failures, stats.entries), (4, 1));
    let at: Vec<Instant> = server.seen("down.xml").iter().map(|s| s.at).collect();
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_secs(1), "Retry-After is a floor: {gaps:?}");
    // With equal jitter, failure n waits between half and all of 100 ms · 2^(n-1).
    for (n, gap) in gaps.iter().enumerate().skip(1) {
        let full = Duration::from_millis(100 << n);
        assert!(*gap >= full / 2, "failure {} waited {gap:?}, less than half of {full:?}", n + 1);
    }
    assert_eq!(recorder.get("polled/down/http_status"), 4);
    assert_eq!(recorder.get("polled/down/ok"), 1);
}

#[tokio::test]
async fn a_restart_never_re_emits_old_entries() {
    let server = FeedServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let config = FeedConfig {
        state_dir: Some(state.path().to_path_buf()),
        ..FeedConfig::new("restart", server.url("restart.xml"))
    };
    server.script("restart.xml", vec![Reply::ok(feed(&[("a", "Alpha"), ("b", "Beta")]))]);
    let recorder = Arc::new(Recorder::default());
    let (outlet, bus) = outlet(&recorder);
    let mut first = Poller::new(config.clone(), client()).unwrap();
    assert_eq!(first.poll(&outlet).await.unwrap(), PollOutcome::Fetched(2));
    drop(first);
    assert!(state.path().join("restart.json").exists());

    server.script("restart.xml", vec![Reply::ok(feed(&[("c", "Gamma"), ("a", "Alpha"), ("b", "Beta")]))]);
    // A new process: a new poller and a new duplicate window, only the cursor file kept.
    let (outlet, restarted_bus) = self::outlet(&recorder);
    let mut second = Poller::new(config.clone(), client()).unwrap();
    assert_eq!(second.poll(&outlet).await.unwrap(), PollOutcome::Fetched(1));
    let first_run: Vec<String> = drain(&bus).await.into_iter().map(|m| m.title.unwrap()).collect();
    let second_run: Vec<String> = drain(&restarted_bus).await.into_iter().map(|m| m.title.unwrap()).collect();
    assert_eq!(
        (first_run, second_run),
        (vec!["Alpha".to_string(), "Beta".into()], vec!["Gamma".to_string()])
    );

    // Entries fetched but never handed over (a crash before the commit) come again.
    let third = Poller::new(config.clone(), client()).unwrap();
    server.script("restart.xml", vec![Reply::ok(feed(&[("d", "Delta"), ("c", "Gamma")]))]);
    assert_eq!(third.fetch().await.unwrap().unwrap().drafts.len(), 1);
    drop(third);
    let mut fourth = Poller::new(config, client()).unwrap();
    assert_eq!(fourth.poll(&outlet).await.unwrap(), PollOutcome::Fetched(1));
}

#[tokio::test]
async fn unreachable_and_oversized_feeds_are_errors_that_name_the_feed() {
    let server = FeedServer::start().await;
    server.script("big.xml", vec![Reply::ok(vec![b' '; 4096])]);
    let small = FeedConfig { max_bytes: 1024, ..FeedConfig::new("big", server.url("big.xml")) };
    let error = Poller::new(small, client()).unwrap().fetch().await.unwrap_err();
    assert!(matches!(error, FeedError::TooLarge { limit: 1024, .. }), "{error}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}/feed.xml");
    let error =
        Poller::new(FeedConfig::new("gone", url.clone()), client()).unwrap().fetch().await.unwrap_err();
    assert_eq!(error.label(), "network");
    assert!(error.to_string().starts_with(&url), "{error}");
}

/// Runs `cull ingest feed <url>` off the runtime (the server it reads runs on it).
async fn ingest_feed(url: String) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cull"))
            .args(["ingest", "feed", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cull_ingest_feed_prints_mentions_or_one_line_with_the_reason() {
    let server = FeedServer::start().await;
    let out = ingest_feed(server.url("corpus/feedjira/google_alerts_atom.xml")).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mentions: Vec<Mention> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| Mention::from_json(line.as_bytes()).expect("cull.mention/v1 lines"))
        .collect();
    assert_eq!(mentions.len(), 20);
    assert!(mentions
        .iter()
        .all(|m| m.source.as_deref() == Some("feed") && !m.url.as_deref().unwrap().contains("google.com")));

    for (path, reason) in [
        ("corpus/feed-rs/rss2/rss_2.0_invalid_1.xml", "not a readable RSS, Atom or JSON feed"),
        ("corpus/no-such-feed.xml", "HTTP 404"),
    ] {
        let out = ingest_feed(server.url(path)).await;
        assert_eq!(out.status.code(), Some(1), "{path}");
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("cull: ") && stderr.contains(reason) && stderr.contains(path), "{stderr}");
    }
}
