//! The pipeline file (`pipelines/*.toml`): its model, environment overrides and validation.
//!
//! One file describes one `cull run`: which bus carries the topics, which stages run and
//! where sources and sinks read and write. The file is checked in four steps so that an
//! operator learns everything wrong in one go and always sees which key is at fault:
//!
//! 1. the TOML is parsed (syntax errors carry `file:line:column`);
//! 2. environment variables named `CULL__SECTION__KEY[__SUBKEY…]` override keys, because a
//!    deployment (a container, a Kubernetes manifest) changes a broker list or a rules
//!    directory without editing the file;
//! 3. the result is deserialized with `deny_unknown_fields` everywhere, so a misspelled key
//!    is an error rather than a silently ignored default, and [`serde_path_to_error`] names
//!    the key path (`matcher.batch_sise`);
//! 4. the values are validated without any I/O (connectivity is the runner's business, as
//!    in Quickwit), and every violation is collected before one error is reported.
//!
//! Paths in the file (rules directory, source and sink files) are relative to the current
//! directory of the process, not to the file, so that `cull run pipelines/local.toml` from
//! the repository root reads `rules/` and writes `data/` at the root.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use cull_ingest::mail::MailFormat;
use cull_model::Channel;
use serde::{Deserialize, Serialize};

/// The prefix of the environment variables that override keys of the pipeline file.
const ENV_PREFIX: &str = "CULL__";

/// The separator between key segments in an override variable; a single `_` stays part of
/// a key (`BATCH_SIZE`), so nested keys need a separator that no key contains.
const ENV_SEPARATOR: &str = "__";

/// The longest Kafka topic name that brokers accept.
const MAX_TOPIC_LEN: usize = 249;

/// A whole pipeline file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The bus that carries the topics between stages.
    #[serde(default)]
    pub bus: Bus,
    /// The topic names.
    #[serde(default)]
    pub topics: Topics,
    /// The matcher stage.
    #[serde(default)]
    pub matcher: Matcher,
    /// Sources producing to `topics.mentions`; none when outside producers feed the bus.
    #[serde(default, rename = "source")]
    pub sources: Vec<Source>,
    /// What the sources share: cursors and the duplicate window.
    #[serde(default)]
    pub ingest: Ingest,
    /// The indexer stage: verdicts into the analyst index.
    #[serde(default)]
    pub index: IndexStage,
    /// The API on the `[http]` server.
    #[serde(default)]
    pub api: Api,
    /// Optional copies of the output topics to files.
    #[serde(default)]
    pub sink: Sinks,
    /// The HTTP server for metrics and health.
    #[serde(default)]
    pub http: Http,
}

/// Which bus carries the topics, and its settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bus {
    /// Embedded (one process, no broker) or Kafka.
    #[serde(default)]
    pub kind: BusKind,
    /// Settings of the embedded bus; used when `kind` is `embedded`.
    #[serde(default)]
    pub embedded: Embedded,
    /// Settings of the Kafka bus; required when `kind` is `kafka`.
    pub kafka: Option<Kafka>,
}

/// The kinds of bus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// Bounded in-process queues: one machine, no broker.
    #[default]
    Embedded,
    /// A Kafka-protocol broker: scale out through partitions and consumer groups.
    Kafka,
}

/// Settings of the embedded bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Embedded {
    /// Records per in-process topic; a full topic makes its producer wait (backpressure)
    /// rather than grow memory without bound.
    pub capacity: usize,
}

impl Default for Embedded {
    fn default() -> Embedded {
        Embedded { capacity: 1024 }
    }
}

/// Settings of the Kafka bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kafka {
    /// Bootstrap servers, `host:port[,host:port…]` as librdkafka's `bootstrap.servers`.
    pub brokers: String,
    /// The consumer group; processes sharing it split the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// The client id brokers log and quota by.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Partitions of the topics cull creates when they are missing.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of the topics cull creates when they are missing.
    #[serde(default = "default_replication")]
    pub replication: i32,
}

fn default_group_id() -> String {
    "cull-matcher".to_string()
}

fn default_client_id() -> String {
    "cull".to_string()
}

fn default_partitions() -> i32 {
    3
}

fn default_replication() -> i32 {
    1
}

/// The topic names, configurable so that several pipelines can share one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Normalized mentions, produced by sources and consumed by the matcher.
    pub mentions: String,
    /// One verdict per mention.
    pub verdicts: String,
    /// Tickets: the topic itself, or the base name of one topic per queue.
    pub tickets: String,
    /// Whether tickets go to `<tickets>.<queue>` so that each contact center consumes
    /// only its own queue.
    pub tickets_per_queue: bool,
    /// Input that a stage could not process.
    pub dead_letter: String,
}

impl Default for Topics {
    fn default() -> Topics {
        Topics {
            mentions: "cull.mentions".to_string(),
            verdicts: "cull.verdicts".to_string(),
            tickets: "cull.tickets".to_string(),
            tickets_per_queue: false,
            dead_letter: "cull.dead-letter".to_string(),
        }
    }
}

impl Topics {
    /// Returns the topic that tickets of `queue` go to.
    ///
    /// Queue names are already valid topic-name characters (the rule loader checks them),
    /// so the per-queue name needs no escaping.
    pub fn ticket_topic(&self, queue: &str) -> String {
        if self.tickets_per_queue {
            format!("{}.{queue}", self.tickets)
        } else {
            self.tickets.clone()
        }
    }
}

/// Settings of the matcher stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Matcher {
    /// Whether this process runs the matcher (off for an ingest-only process).
    pub enabled: bool,
    /// The rules directory.
    pub rules: PathBuf,
    /// Reload the rules when a file in the directory changes (SIGHUP always reloads).
    pub watch: bool,
    /// Mentions per batch at most.
    pub batch_size: usize,
    /// How long a batch waits to fill before it is matched anyway, in milliseconds.
    pub batch_wait_ms: u64,
    /// Mentions larger than this go to the dead-letter topic.
    pub max_mention_bytes: usize,
    /// Repeated mentions of one URL, or of one author on one rule, within this window
    /// update one ticket instead of opening new ones; 0 turns deduplication off.
    pub dedupe_window_secs: u64,
    /// Minutes from ticket creation to its SLA deadline, per priority.
    pub sla_minutes: SlaMinutes,
}

impl Default for Matcher {
    fn default() -> Matcher {
        Matcher {
            enabled: true,
            rules: PathBuf::from("rules"),
            watch: true,
            batch_size: 512,
            batch_wait_ms: 50,
            max_mention_bytes: cull_model::MAX_MENTION_BYTES,
            dedupe_window_secs: 3600,
            sla_minutes: SlaMinutes::default(),
        }
    }
}

/// Minutes to the SLA deadline per priority.
///
/// A struct rather than a map so that an unknown priority is an error; the lowercase
/// aliases let environment overrides (whose segments are lowercased) name the keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaMinutes {
    /// For P1 tickets.
    #[serde(rename = "P1", alias = "p1")]
    pub p1: u32,
    /// For P2 tickets.
    #[serde(rename = "P2", alias = "p2")]
    pub p2: u32,
    /// For P3 tickets.
    #[serde(rename = "P3", alias = "p3")]
    pub p3: u32,
    /// For P4 tickets.
    #[serde(rename = "P4", alias = "p4")]
    pub p4: u32,
}

impl Default for SlaMinutes {
    fn default() -> SlaMinutes {
        SlaMinutes { p1: 15, p2: 60, p3: 240, p4: 1440 }
    }
}

impl SlaMinutes {
    /// Returns the minutes to the deadline of a ticket of `priority`.
    pub fn for_priority(&self, priority: cull_model::Priority) -> u32 {
        match priority {
            cull_model::Priority::P1 => self.p1,
            cull_model::Priority::P2 => self.p2,
            cull_model::Priority::P3 => self.p3,
            cull_model::Priority::P4 => self.p4,
        }
    }
}

/// A source of mentions, by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// JSON lines (`cull.mention/v1`) from a file or stdin.
    Jsonl(JsonlSource),
    /// An RSS, Atom or JSON feed, polled.
    Feed(FeedSource),
    /// An HTTP endpoint that listening tools POST to.
    Webhook(WebhookSource),
    /// Alert mails in an mbox file or a Maildir.
    Mail(MailSource),
}

impl Source {
    /// Returns the source name.
    pub fn name(&self) -> &str {
        match self {
            Source::Jsonl(s) => &s.name,
            Source::Feed(s) => &s.name,
            Source::Webhook(s) => &s.name,
            Source::Mail(s) => &s.name,
        }
    }

    /// Returns true for a source that reaches an end (`--once` reads it to the end).
    pub fn is_finite(&self) -> bool {
        match self {
            Source::Jsonl(s) => !s.follow,
            Source::Feed(_) | Source::Mail(_) => true,
            Source::Webhook(_) => false,
        }
    }
}

/// A file of mentions, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSource {
    /// The source name: the mentions' `source` field and a metrics label.
    pub name: String,
    /// The file to read; `-` reads stdin.
    pub path: PathBuf,
    /// Keep reading at the end of the file, like `tail -F` (through rotation).
    #[serde(default)]
    pub follow: bool,
    /// Milliseconds between two looks at a followed file.
    #[serde(default = "default_follow_interval_ms")]
    pub follow_interval_ms: u64,
}

fn default_follow_interval_ms() -> u64 {
    250
}

/// A feed polled over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSource {
    /// The source name.
    pub name: String,
    /// The feed URL.
    pub url: String,
    /// Seconds between two successful polls.
    #[serde(default = "default_feed_interval_secs")]
    pub interval_secs: u64,
    /// The channel of the mentions.
    #[serde(default = "default_feed_channel")]
    pub channel: Channel,
    /// Seconds allowed for one request.
    #[serde(default = "default_feed_timeout_secs")]
    pub timeout_secs: u64,
    /// The largest feed document accepted, in bytes.
    #[serde(default = "default_feed_max_bytes")]
    pub max_bytes: usize,
    /// Seconds to wait after a first failure; doubled after each further one.
    #[serde(default = "default_backoff_base_secs")]
    pub backoff_base_secs: u64,
    /// The longest wait after failures, in seconds.
    #[serde(default = "default_backoff_max_secs")]
    pub backoff_max_secs: u64,
}

fn default_feed_interval_secs() -> u64 {
    300
}
fn default_feed_channel() -> Channel {
    Channel::News
}
fn default_feed_timeout_secs() -> u64 {
    30
}
fn default_feed_max_bytes() -> usize {
    10 * 1024 * 1024
}
fn default_backoff_base_secs() -> u64 {
    5
}
fn default_backoff_max_secs() -> u64 {
    3600
}

/// An HTTP endpoint, `POST /ingest/<name>` on the `[http]` server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSource {
    /// The source name, also the last segment of the endpoint path.
    pub name: String,
    /// The environment variable holding the HMAC-SHA256 secret; absent means unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// The header carrying the hex HMAC of `<timestamp>.<body>`.
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// The header carrying the Unix time the sender signed at.
    #[serde(default = "default_timestamp_header")]
    pub timestamp_header: String,
    /// Seconds a signed timestamp stays valid either side of now.
    #[serde(default = "default_replay_window_secs")]
    pub replay_window_secs: u64,
    /// The largest request body accepted, in bytes.
    #[serde(default = "default_webhook_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Mentions waiting for the bus before new requests get `429`.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// The channel of mentions that do not name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Mention field → JSON pointer into another tool's payload; empty takes the
    /// `cull.mention/v1` shape.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mapping: BTreeMap<String, String>,
}

fn default_signature_header() -> String {
    "x-cull-signature".into()
}
fn default_timestamp_header() -> String {
    "x-cull-timestamp".into()
}
fn default_replay_window_secs() -> u64 {
    300
}
fn default_webhook_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_max_pending() -> usize {
    10_000
}

/// Alert mails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSource {
    /// The source name.
    pub name: String,
    /// The mbox file or the Maildir directory.
    pub path: PathBuf,
    /// `mbox` (read once) or `maildir` (new mail is read and moved to `cur/`).
    pub format: MailFormat,
    /// Seconds between two looks into a Maildir's `new/`.
    #[serde(default = "default_mail_poll_secs")]
    pub poll_secs: u64,
}

fn default_mail_poll_secs() -> u64 {
    30
}

/// The API of a `cull run` process: the analyst API and console over its index (with
/// `[index]`), and the operators' `POST /api/rules/reload` (with a matcher).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Whether to serve it.
    pub enabled: bool,
    /// The tokens file (`[[token]]` with `name`, `role` and `token`); `CULL_API_TOKENS`
    /// (`role:token,…`) adds tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<PathBuf>,
}

/// The indexer stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexStage {
    /// Whether this process runs the indexer.
    pub enabled: bool,
    /// The index directory (`cull search --index` reads it).
    pub dir: PathBuf,
    /// Commit after this many documents at most.
    pub commit_docs: usize,
    /// Commit after this many seconds at most (what an analyst waits to see a mention).
    pub commit_secs: u64,
    /// Indexing threads.
    pub threads: usize,
    /// Megabytes of indexing buffers (at least 15 per thread).
    pub memory_mb: usize,
    /// The Kafka consumer group of the indexers.
    pub group_id: String,
}

impl Default for IndexStage {
    fn default() -> IndexStage {
        IndexStage {
            enabled: false,
            dir: PathBuf::from("data/index"),
            commit_docs: 10_000,
            commit_secs: 5,
            threads: 1,
            memory_mb: 64,
            group_id: "cull-indexer".into(),
        }
    }
}

/// What the sources of this process share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// Where feed cursors are kept, so that a restart never re-emits old entries.
    pub state_dir: PathBuf,
    /// Seconds a mention id is remembered: a repeat within it is dropped.
    pub dedupe_window_secs: u64,
    /// Mention ids remembered at most.
    pub dedupe_capacity: usize,
    /// SimHash bits (0-3) two texts may differ in and still be near-duplicates.
    pub near_duplicate_distance: u32,
    /// Texts with fewer words are never near-duplicates.
    pub near_duplicate_min_words: usize,
}

impl Default for Ingest {
    fn default() -> Ingest {
        Ingest {
            state_dir: PathBuf::from("data/state"),
            dedupe_window_secs: 24 * 3600,
            dedupe_capacity: 200_000,
            near_duplicate_distance: 3,
            near_duplicate_min_words: 12,
        }
    }
}

/// Optional file copies of the output topics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sinks {
    /// Tickets, the contact-center side in local mode.
    pub tickets: Option<Sink>,
    /// Verdicts.
    pub verdicts: Option<Sink>,
    /// Dead letters.
    pub dead_letter: Option<Sink>,
}

/// A sink that writes the records of one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    /// What kind of sink this is.
    pub kind: SinkKind,
    /// The file to append to.
    pub path: PathBuf,
}

/// The kinds of sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// One JSON object per line, appended.
    Jsonl,
}

/// The HTTP server for metrics and health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// The address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
}

impl Default for Http {
    fn default() -> Http {
        Http { listen: SocketAddr::from(([127, 0, 0, 1], 9464)) }
    }
}

/// Loads, overrides from the process environment, and validates the pipeline file at `path`.
pub fn load(path: &Path) -> anyhow::Result<Pipeline> {
    load_with_env(path, cull_environment()?)
}

/// As [`load`], returning every problem found rather than one error.
pub fn check(path: &Path) -> Result<Pipeline, Vec<Problem>> {
    let env = cull_environment().map_err(|e| vec![Problem { key: None, message: e.to_string() }])?;
    check_with_env(path, env)
}

/// Returns the process's `CULL__…` variables.
fn cull_environment() -> anyhow::Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for (name, value) in std::env::vars_os() {
        // Variables outside cull's prefix may hold anything, including non-UTF-8 bytes.
        let Some(name) = name.to_str().filter(|name| name.starts_with(ENV_PREFIX)).map(str::to_string) else {
            continue;
        };
        let value = value.into_string().map_err(|_| anyhow!("environment variable {name}: not UTF-8"))?;
        env.push((name, value));
    }
    Ok(env)
}

pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Pipeline> {
    check_with_env(path, env).map_err(|problems| anyhow!(render(&path.display(), &problems)))
}

/// A problem with a pipeline file: a setting (`key`) that does not make sense, or the
/// file as a whole (no key: unreadable, a syntax error, an unknown key, located).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The setting, such as `matcher.batch_size`.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Loads, overrides and validates the pipeline file, returning every problem found.
pub fn check_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Pipeline, Vec<Problem>> {
    let whole = |error: anyhow::Error| vec![Problem { key: None, message: format!("{error:#}") }];
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read pipeline file {file}"))
        .map_err(whole)?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|error| whole(anyhow!("{}", located(&file, &text, &error, None))))?;
    let overrides = apply_overrides(&mut table, env, &file).map_err(whole)?;
    let pipeline = deserialize(table, &text, &overrides, &file).map_err(whole)?;
    let errors = pipeline.validate();
    if errors.is_empty() {
        return Ok(pipeline);
    }
    Err(errors
        .into_iter()
        .map(|Invalid { key, message }| {
            let message = match overrides.iter().find(|o| o.key.eq_ignore_ascii_case(&key)) {
                Some(var) => format!("{message} (set by environment variable {})", var.var),
                None => message,
            };
            Problem { key: Some(key), message }
        })
        .collect())
}

/// Renders problems as `cull` reports them: a whole-file problem as it is, settings as
/// `<file>: N invalid settings` followed by one `key: message` line each.
pub fn render(file: &impl std::fmt::Display, problems: &[Problem]) -> String {
    if let [Problem { key: None, message }] = problems {
        return message.clone();
    }
    let mut text =
        format!("{file}: {} invalid setting{}", problems.len(), if problems.len() == 1 { "" } else { "s" });
    for problem in problems {
        match &problem.key {
            Some(key) => {
                let _ = write!(text, "\n  {key}: {}", problem.message);
            }
            None => {
                let _ = write!(text, "\n  {}", problem.message);
            }
        }
    }
    text
}

/// An environment variable that set a key, remembered so that errors about the key name
/// the variable, which is where the operator must look.
#[derive(Debug)]
struct Override {
    var: String,
    /// The value as given, for hints.
    raw: String,
    /// The key path in [`serde_path_to_error::Path`]'s notation (`source[0].path`).
    key: String,
}

/// Sets every `CULL__…` variable of `env` in `table`, in name order, and returns them.
fn apply_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    file: &impl std::fmt::Display,
) -> anyhow::Result<Vec<Override>> {
    let vars: BTreeMap<String, String> =
        env.into_iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect();
    let mut overrides = Vec::new();
    for (var, raw) in vars {
        let segments: Vec<String> =
            var[ENV_PREFIX.len()..].split(ENV_SEPARATOR).map(str::to_ascii_lowercase).collect();
        if segments.iter().any(String::is_empty) {
            bail!(
                "environment variable {var} (overriding {file}): empty key segment; \
                 name keys as CULL__SECTION__KEY, segments separated by `__`"
            );
        }
        let key = set_key(table, &segments, env_value(&raw))
            .map_err(|error| anyhow!("environment variable {var} (overriding {file}): {error}"))?;
        overrides.push(Override { var, raw, key });
    }
    Ok(overrides)
}

/// Returns `raw` as a TOML value when it is one (`512`, `true`, `["a", "b"]`, `"quoted"`)
/// and as a string otherwise (`127.0.0.1:9092`, `rules`), so that plain strings need no
/// quoting in a shell or a manifest.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut parsed) if parsed.len() == 1 => {
            parsed.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string()))
        }
        _ => toml::Value::String(raw.to_string()),
    }
}

/// Sets `value` at the key path `segments` of `table`, creating missing tables, and
/// returns the path as written; unknown keys are left for deserialization to reject.
///
/// A segment after a list (`[[source]]`) is an index into it: `CULL__SOURCE__0__PATH`.
fn set_key(table: &mut toml::Table, segments: &[String], value: toml::Value) -> Result<String, String> {
    let mut root = toml::Value::Table(std::mem::take(table));
    let mut key = String::new();
    let result = set_in(&mut root, segments, value, &mut key);
    if let toml::Value::Table(root) = root {
        *table = root;
    }
    result.map(|()| key)
}

fn set_in(
    root: &mut toml::Value,
    segments: &[String],
    value: toml::Value,
    key: &mut String,
) -> Result<(), String> {
    let mut current = root;
    let mut rest = segments;
    loop {
        let (segment, tail) = rest.split_first().ok_or("no key")?;
        current = match current {
            toml::Value::Table(table) => {
                let name = existing_key(table, segment);
                push_key(key, &name);
                if tail.is_empty() {
                    table.insert(name, value);
                    return Ok(());
                }
                table.entry(name).or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            toml::Value::Array(items) => {
                let len = items.len();
                let item =
                    segment.parse::<usize>().ok().and_then(|index| Some((index, items.get_mut(index)?)));
                let Some((index, item)) = item else {
                    return Err(format!(
                        "`{key}` is a list of {len}: the next segment must be an index below {len}"
                    ));
                };
                let _ = write!(key, "[{index}]");
                if tail.is_empty() {
                    *item = value;
                    return Ok(());
                }
                item
            }
            other => return Err(format!("`{key}` is a {}, not a table", other.type_str())),
        };
        rest = tail;
    }
}

/// Returns the key of `table` that `segment` names: an existing key that differs only in
/// case (`sla_minutes.P1`, since override segments are lowercased), or `segment` itself.
fn existing_key(table: &toml::Table, segment: &str) -> String {
    table.keys().find(|key| key.eq_ignore_ascii_case(segment)).cloned().unwrap_or_else(|| segment.to_string())
}

fn push_key(path: &mut String, name: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(name);
}

/// Deserializes the overridden `table`, naming the key path of an error, and the variable
/// when an override is at or below that key, or else the file line and column.
fn deserialize(
    table: toml::Table,
    text: &str,
    overrides: &[Override],
    file: &impl std::fmt::Display,
) -> anyhow::Result<Pipeline> {
    use serde::de::IntoDeserializer as _;

    let error = match serde_path_to_error::deserialize::<_, Pipeline>(table.into_deserializer()) {
        Ok(pipeline) => return Ok(pipeline),
        Err(error) => error,
    };
    let key = error.path().to_string();
    let culprit = overrides.iter().find(|o| {
        o.key.eq_ignore_ascii_case(&key)
            || o.key.to_ascii_lowercase().starts_with(&format!("{}.", key.to_ascii_lowercase()))
    });
    if let Some(Override { var, raw, .. }) = culprit {
        let what = error.inner().message();
        let mut message = format!("environment variable {var} (overriding {file}): {key}: {what}");
        if what.starts_with("invalid type") {
            let _ = write!(message, "; to pass a string, quote it: {var}='\"{raw}\"'");
        }
        bail!(message);
    }
    // The same error from the file text carries the line and column of the key.
    if let Ok(deserializer) = toml::Deserializer::parse(text) {
        if let Err(located_error) = serde_path_to_error::deserialize::<_, Pipeline>(deserializer) {
            if located_error.path().to_string() == key {
                bail!("{}", located(file, text, located_error.inner(), Some(&key)));
            }
        }
    }
    bail!("{file}: {key}: {}", error.inner().message())
}

/// Formats a TOML error compiler-style: `file:line:column: key: message`.
fn located(file: &impl std::fmt::Display, text: &str, error: &toml::de::Error, key: Option<&str>) -> String {
    let mut out = file.to_string();
    if let Some(span) = error.span() {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before, |newline| &before[newline + 1..]).chars().count() + 1;
        let _ = write!(out, ":{line}:{column}");
    }
    if let Some(key) = key {
        let _ = write!(out, ": {key}");
    }
    let _ = write!(out, ": {}", error.message().trim_end());
    out
}

/// A setting that deserialized but does not make sense.
#[derive(Debug)]
struct Invalid {
    key: String,
    message: String,
}

impl Pipeline {
    /// Returns every invalid setting; checks values only, never the network or the disk.
    fn validate(&self) -> Vec<Invalid> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, key: &str, message: &dyn Fn() -> String| {
            if !ok {
                errors.push(Invalid { key: key.to_string(), message: message() });
            }
        };

        check(self.bus.embedded.capacity > 0, "bus.embedded.capacity", &|| "must be at least 1".into());
        match &self.bus.kafka {
            None => check(self.bus.kind != BusKind::Kafka, "bus.kafka", &|| {
                "missing: bus.kind = \"kafka\" needs a [bus.kafka] section with `brokers`".into()
            }),
            Some(kafka) => {
                for problem in broker_problems(&kafka.brokers) {
                    check(false, "bus.kafka.brokers", &|| problem.clone());
                }
                check(!kafka.group_id.trim().is_empty(), "bus.kafka.group_id", &|| {
                    "must not be empty".into()
                });
                check(!kafka.client_id.trim().is_empty(), "bus.kafka.client_id", &|| {
                    "must not be empty".into()
                });
                check(kafka.partitions > 0, "bus.kafka.partitions", &|| "must be at least 1".into());
                check(kafka.replication > 0, "bus.kafka.replication", &|| "must be at least 1".into());
            }
        }

        let topics = [
            ("topics.mentions", &self.topics.mentions),
            ("topics.verdicts", &self.topics.verdicts),
            ("topics.tickets", &self.topics.tickets),
            ("topics.dead_letter", &self.topics.dead_letter),
        ];
        for (i, &(key, name)) in topics.iter().enumerate() {
            check(is_topic_name(name), key, &|| {
                format!(
                    "`{name}` is not a Kafka topic name: use 1 to {MAX_TOPIC_LEN} of a-z A-Z 0-9 . _ - \
                     (not `.` or `..`)"
                )
            });
            if let Some((other, _)) = topics[..i].iter().find(|(_, earlier)| *earlier == name) {
                check(false, key, &|| format!("`{name}` is also {other}: every topic needs its own name"));
            }
        }
        if self.topics.tickets_per_queue {
            check(self.topics.tickets.len() + 2 <= MAX_TOPIC_LEN, "topics.tickets", &|| {
                format!("too long to append `.<queue>` within {MAX_TOPIC_LEN} characters")
            });
        }

        let matcher = &self.matcher;
        check(!matcher.rules.as_os_str().is_empty(), "matcher.rules", &|| "must name a directory".into());
        check(matcher.batch_size > 0, "matcher.batch_size", &|| "must be at least 1".into());
        check(matcher.max_mention_bytes > 0, "matcher.max_mention_bytes", &|| "must be at least 1".into());
        let sla = &matcher.sla_minutes;
        for (key, minutes) in [("P1", sla.p1), ("P2", sla.p2), ("P3", sla.p3), ("P4", sla.p4)] {
            check(minutes > 0, &format!("matcher.sla_minutes.{key}"), &|| "must be at least 1".into());
        }

        let mut files: Vec<(String, &Path)> = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            let name = source.name();
            check(is_label(name), &format!("source[{i}].name"), &|| {
                format!("`{name}` is not a source name: use 1 to 64 of a-z A-Z 0-9 . _ -")
            });
            if let Some(j) = self.sources[..i].iter().position(|earlier| earlier.name() == name) {
                check(false, &format!("source[{i}].name"), &|| format!("`{name}` is also source[{j}].name"));
            }
            let mut minimums: Vec<(&str, u64)> = Vec::new();
            match source {
                Source::Jsonl(jsonl) => {
                    minimums.push(("follow_interval_ms", jsonl.follow_interval_ms));
                    if jsonl.path != Path::new("-") {
                        files.push((format!("source[{i}].path"), &jsonl.path));
                    }
                }
                Source::Feed(feed) => {
                    check(
                        cull_ingest::canonical_url(&feed.url).is_some(),
                        &format!("source[{i}].url"),
                        &|| format!("`{}` is not an http(s) URL", feed.url),
                    );
                    minimums.push(("interval_secs", feed.interval_secs));
                    minimums.push(("timeout_secs", feed.timeout_secs));
                    minimums.push(("max_bytes", feed.max_bytes as u64));
                    minimums.push(("backoff_base_secs", feed.backoff_base_secs));
                    check(
                        feed.backoff_max_secs >= feed.backoff_base_secs,
                        &format!("source[{i}].backoff_max_secs"),
                        &|| "must be at least backoff_base_secs".into(),
                    );
                }
                Source::Webhook(hook) => {
                    minimums.push(("replay_window_secs", hook.replay_window_secs));
                    minimums.push(("max_body_bytes", hook.max_body_bytes as u64));
                    minimums.push(("max_pending", hook.max_pending as u64));
                    for (key, header) in [
                        ("signature_header", &hook.signature_header),
                        ("timestamp_header", &hook.timestamp_header),
                    ] {
                        check(
                            axum::http::HeaderName::try_from(header.as_str()).is_ok(),
                            &format!("source[{i}].{key}"),
                            &|| format!("`{header}` is not an HTTP header name"),
                        );
                    }
                    if !hook.mapping.is_empty() {
                        if let Err(error) = cull_ingest::webhook::FieldMapping::new(hook.mapping.clone()) {
                            check(false, &format!("source[{i}].mapping"), &|| error.to_string());
                        }
                    }
                }
                Source::Mail(mail) => {
                    minimums.push(("poll_secs", mail.poll_secs));
                    files.push((format!("source[{i}].path"), &mail.path));
                }
            }
            for (key, value) in minimums {
                check(value > 0, &format!("source[{i}].{key}"), &|| "must be at least 1".into());
            }
        }
        let index = &self.index;
        check(!index.dir.as_os_str().is_empty(), "index.dir", &|| "must name a directory".into());
        for (key, value) in [
            ("index.commit_docs", index.commit_docs as u64),
            ("index.commit_secs", index.commit_secs),
            ("index.threads", index.threads as u64),
        ] {
            check(value > 0, key, &|| "must be at least 1".into());
        }
        check(index.memory_mb >= 15 * index.threads, "index.memory_mb", &|| {
            format!(
                "must be at least 15 per thread ({} for index.threads = {})",
                15 * index.threads,
                index.threads
            )
        });
        check(is_label(&index.group_id), "index.group_id", &|| "use 1 to 64 of a-z A-Z 0-9 . _ -".into());
        let ingest = &self.ingest;
        check(!ingest.state_dir.as_os_str().is_empty(), "ingest.state_dir", &|| {
            "must name a directory".into()
        });
        check(ingest.dedupe_capacity > 0, "ingest.dedupe_capacity", &|| "must be at least 1".into());
        check(ingest.near_duplicate_distance <= 3, "ingest.near_duplicate_distance", &|| {
            "must be at most 3 (the index finds no more distant copies)".into()
        });
        for (key, sink) in [
            ("sink.tickets.path", &self.sink.tickets),
            ("sink.verdicts.path", &self.sink.verdicts),
            ("sink.dead_letter.path", &self.sink.dead_letter),
        ] {
            if let Some(sink) = sink {
                files.push((key.to_string(), &sink.path));
            }
        }
        for (i, (key, path)) in files.iter().enumerate() {
            if path.as_os_str().is_empty() {
                check(false, key, &|| "must name a file".into());
            } else if let Some((other, _)) = files[..i].iter().find(|(_, earlier)| earlier == path) {
                check(false, key, &|| {
                    format!("`{}` is also {other}: every source and sink needs its own file", path.display())
                });
            }
        }
        errors
    }
}

/// Returns what is wrong with a `host:port[,host:port…]` broker list.
fn broker_problems(brokers: &str) -> Vec<String> {
    if brokers.trim().is_empty() {
        return vec!["must list at least one broker as host:port".into()];
    }
    brokers
        .split(',')
        .map(str::trim)
        .filter(|broker| {
            !broker.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
            })
        })
        .map(|broker| format!("`{broker}` is not host:port"))
        .collect()
}

/// Returns whether `name` is a topic name Kafka accepts.
fn is_topic_name(name: &str) -> bool {
    (1..=MAX_TOPIC_LEN).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Returns whether `name` is short and plain enough to be a metrics label value.
fn is_label(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests-fixtures").join(name)
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load_err(path: &Path, pairs: &[(&str, &str)]) -> String {
        match load_with_env(path, env(pairs)) {
            Ok(pipeline) => panic!("{} loaded: {pipeline:?}", path.display()),
            Err(error) => format!("{error:#}"),
        }
    }

    #[test]
    fn shipped_local_pipeline_loads_and_validates() {
        let pipeline = load_with_env(&root().join("pipelines/local.toml"), env(&[])).unwrap();
        assert_eq!(pipeline.bus.kind, BusKind::Embedded);
        assert!(pipeline.http.listen.ip().is_loopback());
        assert_eq!(pipeline.sources.len(), 1);
        let Source::Jsonl(demo) = &pipeline.sources[0] else { panic!("the demo source is JSON lines") };
        assert!(root().join(&demo.path).is_file(), "the demo source is shipped");
        assert!(pipeline.sink.tickets.as_ref().is_some_and(|sink| sink.path.starts_with("data")));
        assert_eq!(pipeline.matcher.rules, Path::new("rules"));
    }

    #[test]
    fn shipped_kafka_pipeline_loads_and_validates() {
        let pipeline = load_with_env(&root().join("pipelines/kafka.toml"), env(&[])).unwrap();
        assert_eq!(pipeline.bus.kind, BusKind::Kafka);
        assert_eq!(pipeline.bus.kafka.as_ref().map(|k| k.brokers.as_str()), Some("127.0.0.1:9092"));
        assert!(pipeline.sources.is_empty());
    }

    #[test]
    fn load_reads_the_process_environment_prefix_only() {
        // The test process has no CULL__ variables, so this is the file as shipped.
        let path = root().join("pipelines/local.toml");
        assert_eq!(load(&path).unwrap(), load_with_env(&path, env(&[])).unwrap());
    }

    /// Every option documented in the shipped files: each key that a fully populated
    /// pipeline serializes appears in at least one of them.
    #[test]
    fn shipped_pipelines_mention_every_option() {
        fn keys(value: &toml::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
            match value {
                toml::Value::Table(table) => {
                    for (key, value) in table {
                        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                        keys(value, &path, out);
                        out.insert(path);
                    }
                }
                toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                    items.iter().for_each(|item| keys(item, prefix, out));
                }
                _ => {}
            }
        }
        let sink = Sink { kind: SinkKind::Jsonl, path: "x".into() };
        let mut full = Pipeline::default();
        full.bus.kafka = Some(Kafka {
            brokers: "b:1".into(),
            group_id: default_group_id(),
            client_id: default_client_id(),
            partitions: default_partitions(),
            replication: default_replication(),
        });
        full.sources = vec![
            Source::Jsonl(JsonlSource {
                name: "j".into(),
                path: "j".into(),
                follow: true,
                follow_interval_ms: 1,
            }),
            Source::Feed(FeedSource {
                name: "f".into(),
                url: "https://example.com/feed".into(),
                interval_secs: 1,
                channel: Channel::News,
                timeout_secs: 1,
                max_bytes: 1,
                backoff_base_secs: 1,
                backoff_max_secs: 1,
            }),
            Source::Webhook(WebhookSource {
                name: "w".into(),
                secret_env: Some("S".into()),
                signature_header: "s".into(),
                timestamp_header: "t".into(),
                replay_window_secs: 1,
                max_body_bytes: 1,
                max_pending: 1,
                channel: Some(Channel::Twitter),
                mapping: BTreeMap::from([("text".to_string(), "/t".to_string())]),
            }),
            Source::Mail(MailSource {
                name: "m".into(),
                path: "m".into(),
                format: MailFormat::Maildir,
                poll_secs: 1,
            }),
        ];
        full.sink =
            Sinks { tickets: Some(sink.clone()), verdicts: Some(sink.clone()), dead_letter: Some(sink) };
        let mut expected = Default::default();
        keys(&toml::Value::try_from(&full).unwrap(), "", &mut expected);

        let mut shipped = Default::default();
        for file in ["pipelines/local.toml", "pipelines/kafka.toml", "pipelines/ingest.toml"] {
            let text = std::fs::read_to_string(root().join(file)).unwrap();
            keys(&toml::from_str::<toml::Value>(&text).unwrap(), "", &mut shipped);
            // Documented means a comment line right above every key.
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let line = line.trim();
                if !line.is_empty() && !line.starts_with('#') {
                    assert!(
                        i > 0 && lines[i - 1].trim().starts_with('#'),
                        "{file}:{}: `{line}` has no comment",
                        i + 1
                    );
                }
            }
        }
        let missing: Vec<_> = expected.difference(&shipped).collect();
        assert!(missing.is_empty(), "options in no shipped pipeline file: {missing:?}");
    }

    #[test]
    fn misspelled_key_is_named_with_the_file_and_line() {
        let path = fixture("misspelled.toml");
        let message = load_err(&path, &[]);
        assert!(message.contains("matcher.batch_sise"), "{message}");
        assert!(message.contains("unknown field `batch_sise`"), "{message}");
        assert!(message.starts_with(&format!("{}:5:1:", path.display())), "{message}");
    }

    #[test]
    fn syntax_error_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[matcher]\nbatch_size = = 3\n").unwrap();
        let message = load_err(&path, &[]);
        assert!(message.starts_with(&format!("{}:2:", path.display())), "{message}");
    }

    #[test]
    fn missing_file_is_named() {
        let message = load_err(&fixture("no-such-file.toml"), &[]);
        assert!(
            message.contains("cannot read pipeline file") && message.contains("no-such-file.toml"),
            "{message}"
        );
    }

    #[test]
    fn env_overrides_with_the_documented_names_take_effect() {
        let pipeline = load_with_env(
            &root().join("pipelines/kafka.toml"),
            env(&[
                ("CULL__BUS__KAFKA__BROKERS", "kafka-0:9092,kafka-1:9092"),
                ("CULL__MATCHER__RULES", "/etc/cull/rules"),
                ("CULL__MATCHER__BATCH_SIZE", "64"),
                ("CULL__TOPICS__TICKETS_PER_QUEUE", "true"),
                ("CULL__MATCHER__SLA_MINUTES__P1", "5"),
                ("CULL__HTTP__LISTEN", "0.0.0.0:9464"),
                ("PATH", "/bin"),
                ("CULL_SINGLE_UNDERSCORE", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(pipeline.bus.kafka.unwrap().brokers, "kafka-0:9092,kafka-1:9092");
        assert_eq!(pipeline.matcher.rules, Path::new("/etc/cull/rules"));
        assert_eq!(pipeline.matcher.batch_size, 64);
        assert!(pipeline.topics.tickets_per_queue);
        assert_eq!(pipeline.topics.ticket_topic("billing"), "cull.tickets.billing");
        assert_eq!(pipeline.matcher.sla_minutes.for_priority(cull_model::Priority::P1), 5);
        assert_eq!(pipeline.http.listen.port(), 9464);
    }

    #[test]
    fn env_overrides_create_missing_sections_and_index_lists() {
        let pipeline = load_with_env(
            &root().join("pipelines/local.toml"),
            env(&[
                ("CULL__BUS__KIND", "kafka"),
                ("CULL__BUS__KAFKA__BROKERS", "127.0.0.1:19092"),
                ("CULL__SOURCE__0__NAME", "renamed"),
                ("CULL__SINK__VERDICTS__KIND", "jsonl"),
                ("CULL__SINK__VERDICTS__PATH", "data/v.jsonl"),
            ]),
        )
        .unwrap();
        assert_eq!(pipeline.bus.kind, BusKind::Kafka);
        let kafka = pipeline.bus.kafka.unwrap();
        assert_eq!((kafka.brokers.as_str(), kafka.group_id.as_str()), ("127.0.0.1:19092", "cull-matcher"));
        assert_eq!(pipeline.sources[0].name(), "renamed");
        assert_eq!(pipeline.sink.verdicts.unwrap().path, Path::new("data/v.jsonl"));
        assert_eq!(Topics::default().ticket_topic("billing"), "cull.tickets");
    }

    #[test]
    fn env_value_parses_toml_scalars_and_falls_back_to_strings() {
        assert_eq!(env_value("512"), toml::Value::Integer(512));
        assert_eq!(env_value("false"), toml::Value::Boolean(false));
        assert_eq!(env_value("[1, 2]"), toml::Value::Array(vec![1.into(), 2.into()]));
        assert_eq!(env_value("\"123\""), toml::Value::String("123".into()));
        for raw in ["127.0.0.1:9092", "rules", "a b", "x = 1", "1\ny = 2", ""] {
            assert_eq!(env_value(raw), toml::Value::String(raw.into()), "{raw:?}");
        }
    }

    #[test]
    fn unknown_override_names_the_variable() {
        let path = root().join("pipelines/local.toml");
        for (var, key) in [
            ("CULL__MATCHER__BATCH_SISE", "matcher.batch_sise"),
            ("CULL__MATCHR__RULES", "matchr"),
            ("CULL__BUS__KAFKA__BROKRES", "bus.kafka.brokres"),
        ] {
            let message = load_err(&path, &[(var, "1")]);
            assert!(message.starts_with(&format!("environment variable {var} ")), "{message}");
            assert!(message.contains(key) && message.contains("unknown field"), "{message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }

    #[test]
    fn malformed_overrides_name_the_variable() {
        let path = root().join("pipelines/local.toml");
        for (var, value, what) in [
            ("CULL__MATCHER__BATCH_SIZE", "many", "invalid type"),
            ("CULL__BUS__KAFKA__GROUP_ID", "123", "quote it: CULL__BUS__KAFKA__GROUP_ID='\"123\"'"),
            ("CULL__MATCHER__RULES__DIR", "x", "`matcher.rules` is a string, not a table"),
            ("CULL__SOURCE__7__PATH", "x", "the next segment must be an index"),
            ("CULL__BUS____KIND", "kafka", "empty key segment"),
            ("CULL__", "x", "empty key segment"),
        ] {
            let message = load_err(&path, &[(var, value)]);
            assert!(message.starts_with(&format!("environment variable {var} ")), "{message}");
            assert!(message.contains(what), "{var}: {message}");
        }
    }

    #[test]
    fn validation_collects_every_error_with_its_key() {
        let path = fixture("invalid.toml");
        let message = load_err(&path, &[("CULL__MATCHER__MAX_MENTION_BYTES", "0")]);
        assert!(message.starts_with(&format!("{}: ", path.display())), "{message}");
        for expected in [
            "bus.embedded.capacity: must be at least 1",
            "bus.kafka: missing",
            "topics.mentions: `cull mentions` is not a Kafka topic name",
            "topics.dead_letter: `cull.verdicts` is also topics.verdicts",
            "matcher.batch_size: must be at least 1",
            "matcher.max_mention_bytes: must be at least 1 (set by environment variable \
             CULL__MATCHER__MAX_MENTION_BYTES)",
            "matcher.sla_minutes.P3: must be at least 1",
            "source[1].name: `demo` is also source[0].name",
            "source[1].path: must name a file",
            "sink.verdicts.path: `data/same.jsonl` is also sink.tickets.path",
        ] {
            assert!(message.contains(expected), "missing `{expected}` in:\n{message}");
        }
        assert!(message.contains(": 10 invalid settings"), "{message}");
    }

    #[test]
    fn kafka_settings_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            "[bus]\nkind = 'kafka'\n[bus.kafka]\nbrokers = 'ok:9092, nope, :1, h:0'\ngroup_id = ' '\n\
             client_id = ''\npartitions = 0\nreplication = -1\n[topics]\ntickets = '..'\n",
        )
        .unwrap();
        let message = load_err(&path, &[]);
        for expected in [
            "bus.kafka.brokers: `nope` is not host:port",
            "bus.kafka.brokers: `:1` is not host:port",
            "bus.kafka.brokers: `h:0` is not host:port",
            "bus.kafka.group_id: must not be empty",
            "bus.kafka.client_id: must not be empty",
            "bus.kafka.partitions: must be at least 1",
            "bus.kafka.replication: must be at least 1",
            "topics.tickets: `..` is not a Kafka topic name",
        ] {
            assert!(message.contains(expected), "missing `{expected}` in:\n{message}");
        }
        assert!(!message.contains("`ok:9092`"), "{message}");
    }

    #[test]
    fn listen_address_must_parse() {
        let message = load_err(&root().join("pipelines/local.toml"), &[("CULL__HTTP__LISTEN", "localhost")]);
        assert!(message.contains("CULL__HTTP__LISTEN") && message.contains("http.listen"), "{message}");
    }

    #[test]
    fn topic_names_follow_kafka() {
        assert!(is_topic_name("cull.tickets.billing-2_x"));
        assert!(is_topic_name(&"a".repeat(249)));
        for bad in ["", ".", "..", "a b", "ä", "a/b", &"a".repeat(250)] {
            assert!(!is_topic_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.toml");
        std::fs::write(&path, "").unwrap();
        assert_eq!(load_with_env(&path, env(&[])).unwrap(), Pipeline::default());
    }
}
