//! The feed poller: RSS 0.9x/1.0/2.0, Atom and JSON Feed (through feed-rs), Google
//! Alerts among them.
//!
//! Each feed is polled on its own interval with a conditional GET (`If-None-Match`,
//! `If-Modified-Since`), so an unchanged feed costs a `304`. A failure backs off
//! exponentially with jitter, and a `Retry-After` from the server is a floor on the
//! delay. The per-feed [`Cursor`] (validators and the ids of the entries already
//! emitted) is written to disk, atomically, only after the bus acknowledged the
//! entries: a restart never re-emits old entries, and a crash before the write repeats
//! entries under the same mention ids instead of losing them.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cull_bus::BusError;
use cull_model::Channel;
use reqwest::header::{HeaderMap, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RETRY_AFTER};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::normalize::{Draft, Markup};
use crate::outlet::Outlet;

/// How one feed is polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedConfig {
    /// The source name: the mentions' `source`, the metrics label and the cursor's file name.
    pub name: String,
    /// The feed's URL (`http`, `https`).
    pub url: String,
    /// Time between two successful polls.
    pub interval: Duration,
    /// The channel of the mentions (alert feeds are `news`).
    pub channel: Channel,
    /// Time allowed for one request, body included.
    pub timeout: Duration,
    /// The largest feed document accepted, in bytes.
    pub max_bytes: usize,
    /// The first delay after a failure; it doubles with each further failure.
    pub backoff_base: Duration,
    /// The longest delay after failures.
    pub backoff_max: Duration,
    /// Where the cursor is kept (`<dir>/<name>.json`); `None` keeps it in memory only.
    pub state_dir: Option<PathBuf>,
    /// Entry ids remembered per feed: more than a feed ever lists at once.
    pub remember: usize,
}

/// Entry ids remembered per feed: more than a feed ever lists at once.
pub(crate) const REMEMBERED_ENTRIES: usize = 10_000;

impl FeedConfig {
    /// Returns the configuration of feed `name` at `url` with the defaults of
    /// [`FeedSource`](crate::FeedSource), and no state directory.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> FeedConfig {
        crate::FeedSource::new(name, url).poller_config(None)
    }
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The feed URL, [redacted](crate::redacted).
        url: String,
        /// The status.
        status: StatusCode,
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// The request failed (connection, timeout, TLS, redirect loop).
    #[error("{url}: {message}")]
    Network {
        /// The feed URL, [redacted](crate::redacted).
        url: String,
        /// What failed.
        message: String,
    },
    /// The document is larger than [`FeedConfig::max_bytes`].
    #[error("{url}: the feed is larger than {limit} bytes")]
    TooLarge {
        /// The feed URL, [redacted](crate::redacted), or its saved file.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The document is not a feed feed-rs can read.
    #[error("{url}: not a readable RSS, Atom or JSON feed: {message}")]
    Parse {
        /// The feed URL, [redacted](crate::redacted), or its saved file.
        url: String,
        /// What the parser said.
        message: String,
    },
    /// A saved feed document cannot be read.
    #[error("{}: {source}", path.display())]
    File {
        /// The file (`-` for standard input).
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The cursor file cannot be read or written.
    #[error("feed cursor {}: {source}", path.display())]
    Cursor {
        /// The cursor file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The bus did not take the mentions.
    #[error("handing the entries to the bus: {0}")]
    Bus(#[from] BusError),
}

impl FeedError {
    /// Returns the metric label of the failure.
    pub fn label(&self) -> &'static str {
        match self {
            FeedError::Status { .. } => "http_status",
            FeedError::Network { .. } => "network",
            FeedError::TooLarge { .. } => "too_large",
            FeedError::Parse { .. } => "parse",
            FeedError::File { .. } => "file",
            FeedError::Cursor { .. } => "cursor",
            FeedError::Bus(_) => "bus",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            FeedError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What a poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// A document with this many new entries.
    Fetched(usize),
    /// `304 Not Modified`.
    NotModified,
}

impl PollOutcome {
    /// Returns the metric label.
    pub fn label(self) -> &'static str {
        match self {
            PollOutcome::Fetched(_) => "ok",
            PollOutcome::NotModified => "not_modified",
        }
    }
}

/// What is kept between polls and across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last `ETag`.
    pub etag: Option<String>,
    /// The last `Last-Modified`.
    pub last_modified: Option<String>,
    /// Ids of the entries emitted, oldest first.
    pub seen: VecDeque<String>,
}

/// A fetched document whose new entries await their handoff; [`Poller::commit`] moves
/// the cursor past them once the bus has them.
#[derive(Debug)]
pub struct Fetched {
    /// The new entries as drafts.
    pub drafts: Vec<Draft>,
    keys: Vec<String>,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Polls one feed.
#[derive(Debug)]
pub struct Poller {
    config: FeedConfig,
    client: reqwest::Client,
    cursor: Cursor,
    seen: HashSet<String>,
    failures: u32,
}

/// Returns the HTTP client the pollers share (one connection pool).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("cull/", env!("CARGO_PKG_VERSION"), " (feed poller)"))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .expect("the TLS backend is compiled in")
}

impl Poller {
    /// Returns the poller of a feed, with its cursor loaded from the state directory.
    pub fn new(config: FeedConfig, client: reqwest::Client) -> Result<Poller, FeedError> {
        let cursor = match cursor_path(&config) {
            Some(path) => load_cursor(&path)?,
            None => Cursor::default(),
        };
        let seen = cursor.seen.iter().cloned().collect();
        Ok(Poller { config, client, cursor, seen, failures: 0 })
    }

    /// Returns the feed's configuration.
    pub fn config(&self) -> &FeedConfig {
        &self.config
    }

    /// Fetches the feed and returns its entries not emitted before; `None` for an
    /// unchanged feed (`304`).
    pub async fn fetch(&self) -> Result<Option<Fetched>, FeedError> {
        let url = &self.config.url;
        // Errors name the feed by its URL without the credentials it may carry.
        let named = crate::redacted(url);
        let mut request = self.client.get(url).timeout(self.config.timeout);
        if let Some(etag) = &self.cursor.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &self.cursor.last_modified {
            request = request.header(IF_MODIFIED_SINCE, modified);
        }
        let network = |error: reqwest::Error| FeedError::Network {
            url: named.clone(),
            message: describe(&error.without_url()),
        };
        let mut response = request.send().await.map_err(network)?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if !status.is_success() {
            let retry_after = retry_after(response.headers(), OffsetDateTime::now_utc());
            return Err(FeedError::Status { url: named, status, retry_after });
        }
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let limit = self.config.max_bytes;
        if response.content_length().is_some_and(|length| length > limit as u64) {
            return Err(FeedError::TooLarge { url: named.clone(), limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            if body.len() + chunk.len() > limit {
                return Err(FeedError::TooLarge { url: named.clone(), limit });
            }
            body.extend_from_slice(&chunk);
        }
        let entries = parse_feed(&body, &self.config.name, self.config.channel, url)?;
        let (keys, drafts) = entries.into_iter().filter(|(key, _)| !self.seen.contains(key)).unzip();
        Ok(Some(Fetched { drafts, keys, etag, last_modified }))
    }

    /// Moves the cursor past a fetched document whose entries the bus acknowledged, and
    /// writes it to the state directory.
    pub fn commit(&mut self, fetched: Fetched) -> Result<(), FeedError> {
        self.cursor.etag = fetched.etag;
        self.cursor.last_modified = fetched.last_modified;
        for key in fetched.keys {
            if self.seen.insert(key.clone()) {
                self.cursor.seen.push_back(key);
            }
        }
        while self.cursor.seen.len() > self.config.remember {
            if let Some(old) = self.cursor.seen.pop_front() {
                self.seen.remove(&old);
            }
        }
        match cursor_path(&self.config) {
            Some(path) => save_cursor(&path, &self.cursor),
            None => Ok(()),
        }
    }

    /// Returns how long to wait before the next poll, given how this one ended.
    pub fn next_delay(&mut self, failure: Option<&FeedError>) -> Duration {
        match failure {
            None => {
                self.failures = 0;
                self.config.interval
            }
            Some(error) => {
                self.failures = self.failures.saturating_add(1);
                let delay = backoff(
                    self.config.backoff_base,
                    self.config.backoff_max,
                    self.failures,
                    fastrand::f64(),
                );
                delay.max(error.retry_after().unwrap_or_default())
            }
        }
    }

    /// Polls once, hands the new entries to `outlet` and, once the bus has them, moves
    /// the cursor past them.
    pub async fn poll(&mut self, outlet: &Outlet) -> Result<PollOutcome, FeedError> {
        let Some(mut fetched) = self.fetch().await? else { return Ok(PollOutcome::NotModified) };
        let drafts = std::mem::take(&mut fetched.drafts);
        let count = drafts.len();
        if !drafts.is_empty() {
            outlet.deliver(&self.config.name, drafts).await?;
        }
        self.commit(fetched)?;
        Ok(PollOutcome::Fetched(count))
    }
}

/// What [`run_feed`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FeedStats {
    /// Polls made.
    pub polls: u64,
    /// New entries handed to the outlet.
    pub entries: u64,
    /// Polls that failed.
    pub failures: u64,
    /// The last failure, in words.
    pub last_error: Option<String>,
}

/// Polls a feed until `stop` (or once, with `once`), waiting the interval after a
/// success and backing off after a failure. A failure never ends the loop: it is
/// logged, counted (`feed_polled` with the error's label) and retried; entries not
/// handed to the bus are fetched again because the cursor did not move.
pub async fn run_feed(
    outlet: &Outlet,
    mut poller: Poller,
    once: bool,
    mut stop: watch::Receiver<bool>,
) -> FeedStats {
    let mut stats = FeedStats::default();
    loop {
        let result = poller.poll(outlet).await;
        stats.polls += 1;
        let name = poller.config.name.clone();
        match &result {
            Ok(outcome) => {
                outlet.observer().feed_polled(&name, outcome.label());
                if let PollOutcome::Fetched(count) = outcome {
                    stats.entries += *count as u64;
                }
            }
            Err(error) => {
                tracing::warn!(feed = %name, %error, "feed poll failed");
                outlet.observer().feed_polled(&name, error.label());
                stats.failures += 1;
                stats.last_error = Some(error.to_string());
            }
        }
        if once {
            return stats;
        }
        let delay = poller.next_delay(result.err().as_ref());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|stopped| *stopped) => return stats,
        }
    }
}

/// Returns the delay after `failures` consecutive failures: `base · 2^(failures-1)`,
/// capped at `max`, then scaled into its upper half by `jitter` in `[0, 1)` ("equal
/// jitter"), so that feeds failing together do not retry together.
pub fn backoff(base: Duration, max: Duration, failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let delay = base.saturating_mul(1u32 << exponent).min(max);
    delay.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Returns the server's `Retry-After` (seconds, or an HTTP date relative to `now`).
fn retry_after(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let now: std::time::SystemTime = now.into();
    Some(when.duration_since(now).unwrap_or_default())
}

/// Returns the error and its causes in one line (reqwest hides the useful part, such
/// as "connection refused", in the source chain).
fn describe(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Returns whether `name` names an author. feed-rs names an Atom `<author>` whose
/// `<name>` is empty "unknown" (Google Alerts writes every entry so); taken as a name,
/// every entry of the feed would have one author, and triage would join unrelated
/// stories into one ticket (one author, one thread).
fn is_named(name: &str) -> bool {
    !name.is_empty() && name != "unknown"
}

/// Parses a feed document into `(entry id, draft)` pairs, in document order.
///
/// Every entry becomes a draft, even one with nothing to match (it is still indexed for
/// analysts). A document that lists entries of which feed-rs reads none (a variant it
/// does not support) is an error rather than an empty feed, so that it is counted and
/// seen instead of silently yielding nothing. `url` resolves relative links (without
/// its userinfo, which would otherwise travel into every mention's URL) and names the
/// feed in errors (redacted).
pub fn parse_feed(
    bytes: &[u8],
    source: &str,
    channel: Channel,
    url: &str,
) -> Result<Vec<(String, Draft)>, FeedError> {
    let base = crate::url::without_userinfo(url);
    parse_document(bytes, source, channel, Some(&base), &crate::redacted(url))
}

/// Where a feed document is read from: a URL to fetch, or a saved document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedLocation {
    /// An `http` or `https` URL.
    Remote(String),
    /// A saved document: a file, or `-` for standard input.
    Saved(PathBuf),
}

impl FeedLocation {
    /// Reads where `text` points: an `http(s)://` URL, a `file://` URL, `-`, or a path.
    pub fn parse(text: &str) -> Result<FeedLocation, FeedError> {
        let scheme = text.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("http" | "https") => Ok(FeedLocation::Remote(text.to_string())),
            Some("file") => {
                let path = ::url::Url::parse(text).ok().and_then(|url| url.to_file_path().ok());
                path.map(FeedLocation::Saved).ok_or_else(|| FeedError::File {
                    path: PathBuf::from(text),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "not a file URL of this machine (file:///path/to/feed.xml)",
                    ),
                })
            }
            _ => Ok(FeedLocation::Saved(PathBuf::from(text))),
        }
    }
}

/// Reads a saved feed document (`-`: standard input) of at most `max_bytes` and returns
/// its entries as [`parse_feed`] does, with the file's URL as the base of relative links
/// (standard input has none); errors name the file as given.
pub fn read_saved_feed(
    path: &Path,
    source: &str,
    channel: Channel,
    max_bytes: usize,
) -> Result<Vec<(String, Draft)>, FeedError> {
    use std::io::Read as _;
    let file_error = |source: std::io::Error| FeedError::File { path: path.to_path_buf(), source };
    let named = path.display().to_string();
    let (reader, base): (Box<dyn std::io::Read>, Option<String>) = if path == Path::new("-") {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let file = std::fs::File::open(path).map_err(file_error)?;
        let absolute = std::fs::canonicalize(path).map_err(file_error)?;
        let base = ::url::Url::from_file_path(&absolute).ok().map(String::from);
        (Box::new(file), base)
    };
    let mut bytes = Vec::new();
    reader.take(max_bytes as u64 + 1).read_to_end(&mut bytes).map_err(file_error)?;
    if bytes.len() > max_bytes {
        return Err(FeedError::TooLarge { url: named, limit: max_bytes });
    }
    parse_document(&bytes, source, channel, base.as_deref(), &named)
}

/// Returns the entries of a feed document; `base` resolves relative links, `named`
/// names the document in errors.
fn parse_document(
    bytes: &[u8],
    source: &str,
    channel: Channel,
    base: Option<&str>,
    named: &str,
) -> Result<Vec<(String, Draft)>, FeedError> {
    let parser = feed_rs::parser::Builder::new().base_uri(base).sanitize_content(false).build();
    let feed = parser
        .parse(&upgrade_atom_03(bytes)[..])
        .map_err(|e| FeedError::Parse { url: named.to_string(), message: e.to_string() })?;
    if feed.entries.is_empty() && lists_entries(bytes) {
        return Err(FeedError::Parse {
            url: named.to_string(),
            message: "the document has <item> or <entry> elements, but none could be read".to_string(),
        });
    }
    let feed_lang = feed.language.as_deref().and_then(primary_language);
    let mut entries = Vec::with_capacity(feed.entries.len());
    for entry in feed.entries {
        let title = entry.title.map(|t| t.content).filter(|t| !t.trim().is_empty());
        let text = entry
            .content
            .and_then(|c| c.body)
            .or_else(|| entry.summary.map(|s| s.content))
            .unwrap_or_default();
        let link = entry
            .links
            .iter()
            .find(|l| l.rel.as_deref().is_none_or(|rel| rel == "alternate"))
            .or(entry.links.first())
            .map(|l| l.href.clone());
        let published = entry.published.or(entry.updated).and_then(|at| {
            OffsetDateTime::from_unix_timestamp(at.timestamp()).ok().and_then(|t| t.format(&Rfc3339).ok())
        });
        let draft = Draft {
            source: source.to_string(),
            external_id: Some(entry.id.clone()),
            channel: Some(channel),
            url: link,
            author: entry
                .authors
                .iter()
                .map(|a| a.name.trim())
                .find(|name| is_named(name))
                .map(str::to_string),
            title,
            text,
            lang: feed_lang.clone(),
            published_at: published,
            markup: Markup::Detect,
            ..Draft::default()
        };
        entries.push((entry.id, draft));
    }
    Ok(entries)
}

/// Returns true when the document has an `<item>` or `<entry>` start tag.
fn lists_entries(bytes: &[u8]) -> bool {
    [&b"<item"[..], b"<entry"].iter().any(|tag| {
        bytes
            .windows(tag.len() + 1)
            .any(|w| w.starts_with(tag) && matches!(w[tag.len()], b'>' | b' ' | b'\t' | b'\r' | b'\n' | b'/'))
    })
}

/// Atom 0.3 names the type of a text construct by MIME type, Atom 1.0 by keyword.
const ATOM_03_TYPES: [(&str, &str); 3] = [
    ("\"text/plain\"", "\"text\""),
    ("\"text/html\"", "\"html\""),
    ("\"application/xhtml+xml\"", "\"xhtml\""),
];

/// Returns the document with Atom 0.3's namespace and text-construct types replaced by
/// Atom 1.0's.
///
/// feed-rs reads Atom 1.0 only: it finds no entries in a 0.3 feed, which would make
/// such a feed silently empty. The element names an alert needs (`entry`, `title`,
/// `link`, `content`, `summary`, `author`, `id`) are the same in both, so reading a 0.3
/// document as 1.0 recovers them. The type rewrite also touches `<link type=…>`, whose
/// media type cull does not use. 0.3's `issued`/`modified` dates are not read.
fn upgrade_atom_03(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const ATOM_03: &str = "http://purl.org/atom/ns#";
    const ATOM_10: &str = "http://www.w3.org/2005/Atom";
    let head = &bytes[..bytes.len().min(4096)];
    if !head.windows(ATOM_03.len()).any(|w| w == ATOM_03.as_bytes()) {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let Ok(text) = std::str::from_utf8(bytes) else { return std::borrow::Cow::Borrowed(bytes) };
    let mut upgraded = text.replacen(ATOM_03, ATOM_10, 1);
    for (old, new) in ATOM_03_TYPES {
        upgraded = upgraded.replace(&format!("type={old}"), &format!("type={new}"));
    }
    std::borrow::Cow::Owned(upgraded.into_bytes())
}

/// Returns the primary subtag of a language tag (`en-US` → `en`) when it is one.
fn primary_language(tag: &str) -> Option<String> {
    let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
    ((2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_lowercase())).then_some(primary)
}

fn cursor_path(config: &FeedConfig) -> Option<PathBuf> {
    config.state_dir.as_ref().map(|dir| dir.join(format!("{}.json", config.name)))
}

fn load_cursor(path: &Path) -> Result<Cursor, FeedError> {
    let cursor_error = |source| FeedError::Cursor { path: path.to_path_buf(), source };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| cursor_error(std::io::Error::other(e))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Cursor::default()),
        Err(error) => Err(cursor_error(error)),
    }
}

/// Writes the cursor to a temporary file and renames it over the old one, so a crash
/// leaves either the old cursor or the new one, never half of one.
fn save_cursor(path: &Path, cursor: &Cursor) -> Result<(), FeedError> {
    let cursor_error = |source| FeedError::Cursor { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(cursor_error)?;
    }
    let temporary = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(cursor).map_err(|e| cursor_error(std::io::Error::other(e)))?;
    std::fs::write(&temporary, bytes).map_err(cursor_error)?;
    std::fs::rename(&temporary, path).map_err(cursor_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_within_the_upper_half() {
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(60));
        let full: Vec<u64> = (1..=6).map(|n| backoff(base, max, n, 1.0).as_secs()).collect();
        assert_eq!(full, [5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff(base, max, 3, 0.0), Duration::from_secs(10));
        assert_eq!(backoff(base, max, u32::MAX, 1.0), max, "no overflow after many failures");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = OffsetDateTime::from_unix_timestamp(1_445_412_480).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 09:30:00 GMT"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(2 * 3600 + 120)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn a_retry_after_is_a_floor_on_the_backoff() {
        let config =
            FeedConfig { backoff_base: Duration::from_millis(10), ..FeedConfig::new("f", "http://x") };
        let mut poller = Poller::new(config, client()).unwrap();
        let error = FeedError::Status {
            url: "http://x".into(),
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(poller.next_delay(Some(&error)), Duration::from_secs(7));
        assert_eq!(poller.next_delay(None), Duration::from_secs(300));
    }

    #[test]
    fn language_tags_keep_their_primary_subtag() {
        assert_eq!(primary_language("en-US").as_deref(), Some("en"));
        assert_eq!(primary_language(" DE ").as_deref(), Some("de"));
        assert_eq!(primary_language("english"), None);
    }
}
