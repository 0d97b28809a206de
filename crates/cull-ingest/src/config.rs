//! The `[[source]]` entries and the `[ingest]` section of a pipeline file, and running
//! the sources they describe.
//!
//! These types are the one place the sources' options and their defaults are
//! written down: the runtime configurations of each source ([`FeedConfig`],
//! [`WebhookConfig`], [`JsonlConfig`], [`MailConfig`]) are built from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cull_model::config::{is_label, Checks, Invalid};
use cull_model::{client_name_problem, Channel};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::feed::{run_feed, FeedConfig, FeedError, Poller};
use crate::jsonl::{run_jsonl, JsonlConfig, JsonlError};
use crate::mail::{run_mail, MailConfig, MailError, MailFormat};
use crate::webhook::{router, FieldMapping, MappingError, WebhookConfig};
use crate::{Markup, Outlet, ScreenConfig};

/// A source of mentions, by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// JSON lines (`cull.mention/v1`) from a file or stdin.
    Jsonl(JsonlSource),
    /// An RSS, Atom or JSON feed, polled.
    Feed(FeedSource),
    /// An HTTP endpoint that listening tools POST to.
    Webhook(WebhookSource),
    /// Alert mails in an mbox file or a Maildir.
    Mail(MailSource),
}

/// A file of mentions, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSource {
    /// The source name: the mentions' `source` field and a metrics label.
    pub name: String,
    /// The client whose mentions this source brings (a client name); absent for the
    /// contact center's own. Its mentions are matched against that client's rules
    /// and the global ones, and only that client's analysts see them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The file to read; `-` reads stdin.
    pub path: PathBuf,
    /// Keep reading at the end of the file, like `tail -F` (through rotation), with a
    /// cursor in the state directory so that a restart goes on where it stopped.
    #[serde(default)]
    pub follow: bool,
    /// Milliseconds between two looks at a followed file.
    #[serde(default = "default_follow_interval_ms")]
    pub follow_interval_ms: u64,
    /// Whether the mentions' `title` and `text` are plain text (the default: never run
    /// through the HTML converter) or HTML.
    #[serde(default)]
    pub markup: Markup,
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
    /// The client whose mentions this source brings (a client name); absent for the
    /// contact center's own. Its mentions are matched against that client's rules
    /// and the global ones, and only that client's analysts see them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
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

impl FeedSource {
    /// Returns the feed `name` at `url` with every default.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> FeedSource {
        FeedSource {
            name: name.into(),
            client: None,
            url: url.into(),
            interval_secs: default_feed_interval_secs(),
            channel: default_feed_channel(),
            timeout_secs: default_feed_timeout_secs(),
            max_bytes: default_feed_max_bytes(),
            backoff_base_secs: default_backoff_base_secs(),
            backoff_max_secs: default_backoff_max_secs(),
        }
    }

    /// Returns the poller's configuration, its cursor in `state_dir/feeds` if given.
    pub fn poller_config(&self, state_dir: Option<&Path>) -> FeedConfig {
        FeedConfig {
            name: self.name.clone(),
            url: self.url.clone(),
            interval: Duration::from_secs(self.interval_secs),
            channel: self.channel,
            timeout: Duration::from_secs(self.timeout_secs),
            max_bytes: self.max_bytes,
            backoff_base: Duration::from_secs(self.backoff_base_secs),
            backoff_max: Duration::from_secs(self.backoff_max_secs),
            state_dir: state_dir.map(|dir| dir.join("feeds")),
            remember: crate::feed::REMEMBERED_ENTRIES,
        }
    }
}

/// An HTTP endpoint, `POST /ingest/<name>` on the `[http]` server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSource {
    /// The source name, also the last segment of the endpoint path.
    pub name: String,
    /// The client whose mentions this source brings (a client name); absent for the
    /// contact center's own. Its mentions are matched against that client's rules
    /// and the global ones, and only that client's analysts see them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
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
    /// Whether the mentions' `title` and `text` are plain text (the default) or HTML.
    #[serde(default)]
    pub markup: Markup,
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

impl WebhookSource {
    /// Returns the unsigned webhook `name` with every default.
    pub fn new(name: impl Into<String>) -> WebhookSource {
        WebhookSource {
            name: name.into(),
            client: None,
            secret_env: None,
            signature_header: default_signature_header(),
            timestamp_header: default_timestamp_header(),
            replay_window_secs: default_replay_window_secs(),
            max_body_bytes: default_webhook_max_body_bytes(),
            max_pending: default_max_pending(),
            channel: None,
            mapping: BTreeMap::new(),
            markup: Markup::Plain,
        }
    }

    /// Returns the receiver's configuration with `secret` (resolved by the caller,
    /// so that it never sits in a file).
    pub fn receiver_config(&self, secret: Option<String>) -> Result<WebhookConfig, MappingError> {
        let mapping =
            if self.mapping.is_empty() { None } else { Some(FieldMapping::new(self.mapping.clone())?) };
        Ok(WebhookConfig {
            name: self.name.clone(),
            secret,
            signature_header: self.signature_header.clone(),
            timestamp_header: self.timestamp_header.clone(),
            replay_window: Duration::from_secs(self.replay_window_secs),
            max_body_bytes: self.max_body_bytes,
            max_pending: self.max_pending,
            retry_after: Duration::from_secs(1),
            mapping,
            channel: self.channel,
            markup: self.markup,
            client: self.client.clone(),
        })
    }
}

/// Alert mails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSource {
    /// The source name.
    pub name: String,
    /// The client whose mentions this source brings (a client name); absent for the
    /// contact center's own. Its mentions are matched against that client's rules
    /// and the global ones, and only that client's analysts see them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
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

/// What the sources of a process share: cursors and the duplicate window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Where feed and followed-file cursors are kept, so that a restart neither
    /// re-emits old entries nor skips new ones.
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

impl Default for IngestConfig {
    fn default() -> IngestConfig {
        IngestConfig {
            state_dir: PathBuf::from("data/state"),
            dedupe_window_secs: 24 * 3600,
            dedupe_capacity: 200_000,
            near_duplicate_distance: 3,
            near_duplicate_min_words: 12,
        }
    }
}

impl IngestConfig {
    /// Returns the duplicate screen's configuration.
    pub fn screen(&self) -> ScreenConfig {
        ScreenConfig {
            window: Duration::from_secs(self.dedupe_window_secs),
            capacity: self.dedupe_capacity,
            max_distance: self.near_duplicate_distance,
            min_words: self.near_duplicate_min_words,
        }
    }

    /// Returns every invalid setting, keys relative to `[ingest]`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        checks.check(!self.state_dir.as_os_str().is_empty(), "state_dir", || "must name a directory".into());
        checks.positive("dedupe_capacity", self.dedupe_capacity as u64);
        checks.check(self.near_duplicate_distance <= 3, "near_duplicate_distance", || {
            "must be at most 3 (the index finds no more distant copies)".into()
        });
        checks.finish()
    }
}

impl SourceConfig {
    /// Returns the source name.
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Jsonl(s) => &s.name,
            SourceConfig::Feed(s) => &s.name,
            SourceConfig::Webhook(s) => &s.name,
            SourceConfig::Mail(s) => &s.name,
        }
    }

    /// Returns the client whose mentions the source brings.
    pub fn client(&self) -> Option<&str> {
        match self {
            SourceConfig::Jsonl(s) => s.client.as_deref(),
            SourceConfig::Feed(s) => s.client.as_deref(),
            SourceConfig::Webhook(s) => s.client.as_deref(),
            SourceConfig::Mail(s) => s.client.as_deref(),
        }
    }

    /// Returns true for a source that reaches an end (`--once` reads it to the end).
    pub fn is_finite(&self) -> bool {
        match self {
            SourceConfig::Jsonl(s) => !s.follow,
            SourceConfig::Feed(_) | SourceConfig::Mail(_) => true,
            SourceConfig::Webhook(_) => false,
        }
    }

    /// Returns the files this source reads (for the check that no two sources or
    /// sinks share one), with their keys.
    pub fn files(&self) -> Vec<(&'static str, &Path)> {
        match self {
            SourceConfig::Jsonl(s) if s.path != Path::new("-") => vec![("path", s.path.as_path())],
            SourceConfig::Mail(s) => vec![("path", s.path.as_path())],
            _ => Vec::new(),
        }
    }

    /// Returns every invalid setting, keys relative to the `[[source]]` entry.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        let name = self.name();
        checks.check(is_label(name), "name", || {
            format!("`{name}` is not a source name: use 1 to 64 of a-z A-Z 0-9 . _ -")
        });
        if let Some(problem) = self.client().and_then(client_name_problem) {
            checks.check(false, "client", || problem);
        }
        match self {
            SourceConfig::Jsonl(jsonl) => {
                checks.positive("follow_interval_ms", jsonl.follow_interval_ms);
                checks.check(!jsonl.path.as_os_str().is_empty(), "path", || "must name a file".into());
            }
            SourceConfig::Feed(feed) => {
                checks.check(crate::canonical_url(&feed.url).is_some(), "url", || {
                    format!("`{}` is not an http(s) URL", crate::redacted(&feed.url))
                });
                checks.positive("interval_secs", feed.interval_secs);
                checks.positive("timeout_secs", feed.timeout_secs);
                checks.positive("max_bytes", feed.max_bytes as u64);
                checks.positive("backoff_base_secs", feed.backoff_base_secs);
                checks.check(feed.backoff_max_secs >= feed.backoff_base_secs, "backoff_max_secs", || {
                    "must be at least backoff_base_secs".into()
                });
            }
            SourceConfig::Webhook(hook) => {
                checks.positive("replay_window_secs", hook.replay_window_secs);
                checks.positive("max_body_bytes", hook.max_body_bytes as u64);
                checks.positive("max_pending", hook.max_pending as u64);
                for (key, header) in [
                    ("signature_header", &hook.signature_header),
                    ("timestamp_header", &hook.timestamp_header),
                ] {
                    checks.check(axum::http::HeaderName::try_from(header.as_str()).is_ok(), key, || {
                        format!("`{header}` is not an HTTP header name")
                    });
                }
                if !hook.mapping.is_empty() {
                    if let Err(error) = FieldMapping::new(hook.mapping.clone()) {
                        checks.check(false, "mapping", || error.to_string());
                    }
                }
            }
            SourceConfig::Mail(mail) => {
                checks.positive("poll_secs", mail.poll_secs);
                checks.check(!mail.path.as_os_str().is_empty(), "path", || "must name a file".into());
            }
        }
        checks.finish()
    }
}

/// Why a source stopped, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `--once` with a source that never ends.
    #[error("source[{index}] ({name:?}) never ends (a webhook, or a followed file): run without --once")]
    NeverEnds {
        /// The position of the source in the file.
        index: usize,
        /// Its name.
        name: String,
    },
    /// A webhook's secret is not in the environment.
    #[error("source[{index}].secret_env: the environment variable `{variable}` is not set or empty")]
    Secret {
        /// The position of the source in the file.
        index: usize,
        /// The variable.
        variable: String,
    },
    /// A webhook's field mapping is wrong.
    #[error("source[{index}].mapping: {source}")]
    Mapping {
        /// The position of the source in the file.
        index: usize,
        /// What is wrong.
        #[source]
        source: MappingError,
    },
    /// The JSON-lines source stopped.
    #[error("source {name:?}: {source}")]
    Jsonl {
        /// The source name.
        name: String,
        /// Why.
        #[source]
        source: JsonlError,
    },
    /// The feed poller could not be built.
    #[error("source {name:?}: {source}")]
    Feed {
        /// The source name.
        name: String,
        /// Why.
        #[source]
        source: FeedError,
    },
    /// The mail source stopped.
    #[error("source {name:?}: {source}")]
    Mail {
        /// The source name.
        name: String,
        /// Why.
        #[source]
        source: MailError,
    },
}

/// Refuses `--once` with a source that never ends: a webhook or a followed file.
pub fn check_once(sources: &[SourceConfig]) -> Result<(), SourceError> {
    match sources.iter().enumerate().find(|(_, source)| !source.is_finite()) {
        Some((index, source)) => Err(SourceError::NeverEnds { index, name: source.name().to_string() }),
        None => Ok(()),
    }
}

/// How a source runs within a pipeline.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// The sources' shared settings.
    pub ingest: IngestConfig,
    /// Mentions (lines) larger than this are dead-lettered.
    pub max_mention_bytes: usize,
    /// Read finite sources once, to their end.
    pub once: bool,
}

/// Runs one source until its end, or until `stop`; returns how many inputs it
/// dead-lettered. A webhook source only waits for `stop`: [`webhook_router`] serves it.
pub async fn run_source(
    outlet: &Outlet,
    source: &SourceConfig,
    options: &SourceOptions,
    stop: watch::Receiver<bool>,
) -> Result<u64, SourceError> {
    let name = source.name().to_string();
    let outlet = &outlet.for_client(source.client().map(str::to_string));
    match source {
        SourceConfig::Jsonl(jsonl) => {
            let path = (jsonl.path != Path::new("-")).then(|| jsonl.path.clone());
            let config = JsonlConfig {
                name: jsonl.name.clone(),
                cursor: path
                    .as_ref()
                    .filter(|_| jsonl.follow)
                    .map(|_| options.ingest.state_dir.join("jsonl").join(format!("{}.json", jsonl.name))),
                path,
                follow: jsonl.follow,
                poll_interval: Duration::from_millis(jsonl.follow_interval_ms),
                max_line_bytes: options.max_mention_bytes,
                markup: jsonl.markup,
            };
            let stats = run_jsonl(outlet, &config, stop)
                .await
                .map_err(|source| SourceError::Jsonl { name, source })?;
            Ok(stats.dead_letters)
        }
        SourceConfig::Feed(feed) => {
            let config = feed.poller_config(Some(&options.ingest.state_dir));
            let poller = Poller::new(config, crate::feed::client())
                .map_err(|source| SourceError::Feed { name, source })?;
            let stats = run_feed(outlet, poller, options.once, stop).await;
            if let Some(error) = stats.last_error {
                tracing::warn!(source = %feed.name, %error, "the feed's last poll failed");
            }
            Ok(0)
        }
        SourceConfig::Mail(mail) => {
            let config = MailConfig {
                name: mail.name.clone(),
                path: mail.path.clone(),
                format: mail.format,
                channel: Channel::Email,
                poll_interval: Duration::from_secs(mail.poll_secs),
                max_message_bytes: options.max_mention_bytes,
            };
            let stats = run_mail(outlet, &config, options.once, stop)
                .await
                .map_err(|source| SourceError::Mail { name, source })?;
            Ok(stats.dead_letters)
        }
        SourceConfig::Webhook(_) => {
            // The HTTP server takes the requests; the source lasts until the pipeline stops.
            let mut stop = stop;
            let _ = stop.wait_for(|stopped| *stopped).await;
            Ok(0)
        }
    }
}

/// Returns the receivers' configurations of the webhook sources, their secrets read
/// from the environment: a pipeline checks them before it opens anything, so that a
/// missing secret is a startup error naming its key.
pub fn webhook_configs(sources: &[SourceConfig]) -> Result<Vec<WebhookConfig>, SourceError> {
    let mut configs = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        let SourceConfig::Webhook(hook) = source else { continue };
        let secret = match &hook.secret_env {
            Some(variable) => match std::env::var(variable) {
                Ok(secret) if !secret.is_empty() => Some(secret),
                _ => return Err(SourceError::Secret { index, variable: variable.clone() }),
            },
            None => None,
        };
        configs.push(hook.receiver_config(secret).map_err(|source| SourceError::Mapping { index, source })?);
    }
    Ok(configs)
}

/// Returns the router serving `configs` (`POST /ingest/<name>`), `None` without any.
pub fn webhook_router(configs: Vec<WebhookConfig>, outlet: &Outlet) -> Option<axum::Router> {
    (!configs.is_empty()).then(|| router(configs, outlet.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_problems_are_named_by_their_key() {
        let mut feed = FeedSource::new("bad name", "ftp://x");
        feed.backoff_max_secs = 1;
        let keys: Vec<String> = SourceConfig::Feed(feed).validate().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["name", "url", "backoff_max_secs"]);
        let mut hook = WebhookSource::new("w");
        hook.signature_header = "bad header".into();
        hook.mapping.insert("txt".into(), "/t".into());
        let keys: Vec<String> = SourceConfig::Webhook(hook).validate().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["signature_header", "mapping"]);
        assert!(IngestConfig::default().validate().is_empty());
    }

    #[test]
    fn the_runtime_configurations_take_their_defaults_from_the_file_types() {
        let poller = FeedSource::new("f", "https://example.com/feed").poller_config(None);
        assert_eq!(poller, FeedConfig::new("f", "https://example.com/feed"));
        let receiver = WebhookSource::new("w").receiver_config(None).unwrap();
        assert_eq!(receiver, WebhookConfig::new("w"));
    }

    #[test]
    fn once_refuses_a_webhook_naming_it() {
        let sources = vec![
            SourceConfig::Feed(FeedSource::new("f", "https://example.com/feed")),
            SourceConfig::Webhook(WebhookSource::new("hook")),
        ];
        let error = check_once(&sources).unwrap_err().to_string();
        assert_eq!(
            error,
            "source[1] (\"hook\") never ends (a webhook, or a followed file): run without --once"
        );
    }
}
