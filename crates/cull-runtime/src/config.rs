//! The parts of a pipeline file the runtime owns: topic names, the matcher stage,
//! the file sinks and the shutdown.

use std::path::PathBuf;
use std::time::Duration;

use cull_bus::{is_topic_name, MAX_TOPIC_LEN};
use cull_model::config::{Checks, Invalid};
use serde::{Deserialize, Serialize};

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
    /// Whether a client's tickets go to topics of their own, `<tickets>.<client>` (and
    /// `<tickets>.<client>.<queue>` with `tickets_per_queue`), so that a client's
    /// helpdesk reads, and Kafka ACLs grant, only that client's tickets. The contact
    /// center's own tickets keep `<tickets>[.<queue>]`.
    pub tickets_per_client: bool,
    /// Input that a stage could not process.
    pub dead_letter: String,
    /// The ticketing stage's changelog: the state of open tickets, read back after a
    /// restart and by the replica that takes a partition over.
    pub ticket_state: String,
    /// Agents' dispositions of tickets (`cull.feedback/v1`), from helpdesks and the
    /// API: they close tickets for `max_open` and measure every rule's precision.
    pub feedback: String,
}

impl Default for Topics {
    fn default() -> Topics {
        Topics {
            mentions: "cull.mentions".to_string(),
            verdicts: "cull.verdicts".to_string(),
            tickets: "cull.tickets".to_string(),
            tickets_per_queue: false,
            tickets_per_client: true,
            dead_letter: "cull.dead-letter".to_string(),
            ticket_state: "cull.ticket-state".to_string(),
            feedback: "cull.feedback".to_string(),
        }
    }
}

impl Topics {
    /// Returns the topic that tickets of `client`'s `queue` go to.
    ///
    /// Client and queue names are already valid topic-name characters (the loaders
    /// check them), so the names need no escaping.
    pub fn ticket_topic(&self, client: Option<&str>, queue: &str) -> String {
        let mut topic = self.tickets.clone();
        if let Some(client) = client.filter(|_| self.tickets_per_client) {
            topic.push('.');
            topic.push_str(client);
        }
        if self.tickets_per_queue {
            topic.push('.');
            topic.push_str(queue);
        }
        topic
    }

    /// Returns why `queue` cannot have topics of its own beside the clients', if it
    /// cannot: with per-client and per-queue topics, the house's queue `acme.care`
    /// would share `cull.tickets.acme.care` with client acme's queue `care`.
    pub fn queue_problem(&self, queue: &str) -> Option<String> {
        (self.tickets_per_client && self.tickets_per_queue && queue.contains('.')).then(|| {
            format!(
                "queue `{queue}` has a `.`, which per-client and per-queue ticket topics cannot tell from \
                 the client's part of the topic name: rename the queue (`-` or `_`)"
            )
        })
    }

    /// Returns every invalid setting, keys relative to `[topics]`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        let topics = [
            ("mentions", &self.mentions),
            ("verdicts", &self.verdicts),
            ("tickets", &self.tickets),
            ("dead_letter", &self.dead_letter),
            ("ticket_state", &self.ticket_state),
            ("feedback", &self.feedback),
        ];
        for (i, &(key, name)) in topics.iter().enumerate() {
            checks.check(is_topic_name(name), key, || {
                format!(
                    "`{name}` is not a Kafka topic name: use 1 to {MAX_TOPIC_LEN} of a-z A-Z 0-9 . _ - (not `.` or `..`)"
                )
            });
            if let Some((other, _)) = topics[..i].iter().find(|(_, earlier)| *earlier == name) {
                checks.check(false, key, || {
                    format!("`{name}` is also topics.{other}: every topic needs its own name")
                });
            }
        }
        let suffixes = usize::from(self.tickets_per_queue) * 2
            + usize::from(self.tickets_per_client) * (cull_model::client::MAX_CLIENT_CHARS + 1);
        checks.check(self.tickets.len() + suffixes <= MAX_TOPIC_LEN, "tickets", || {
            format!("too long to append a client's and a queue's names within {MAX_TOPIC_LEN} characters")
        });
        checks.finish()
    }
}

/// Settings of the matcher stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatcherConfig {
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
}

impl Default for MatcherConfig {
    fn default() -> MatcherConfig {
        MatcherConfig {
            enabled: true,
            rules: PathBuf::from("rules"),
            watch: true,
            batch_size: 512,
            batch_wait_ms: 50,
            max_mention_bytes: cull_model::MAX_MENTION_BYTES,
        }
    }
}

impl MatcherConfig {
    /// Returns every invalid setting, keys relative to `[matcher]`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        checks.check(!self.rules.as_os_str().is_empty(), "rules", || "must name a directory".into());
        checks.positive("batch_size", self.batch_size as u64);
        checks.positive("max_mention_bytes", self.max_mention_bytes as u64);
        checks.finish()
    }
}

/// Optional file copies of the output topics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// Tickets, the contact-center side in local mode.
    pub tickets: Option<FileSinkConfig>,
    /// Verdicts.
    pub verdicts: Option<FileSinkConfig>,
    /// Dead letters.
    pub dead_letter: Option<FileSinkConfig>,
    /// Alert sinks (`[[sink.alert]]`): tickets to webhooks, Slack, Teams and e-mail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert: Vec<cull_alert::AlertConfig>,
}

impl SinksConfig {
    /// Returns the configured sinks with their keys.
    pub fn configured(&self) -> Vec<(&'static str, &FileSinkConfig)> {
        [("tickets", &self.tickets), ("verdicts", &self.verdicts), ("dead_letter", &self.dead_letter)]
            .into_iter()
            .filter_map(|(key, sink)| Some((key, sink.as_ref()?)))
            .collect()
    }
}

/// A sink that writes the records of one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// What kind of sink this is.
    pub kind: SinkKind,
    /// The file to append to.
    pub path: PathBuf,
}

impl FileSinkConfig {
    /// Returns every invalid setting, keys relative to the sink's section.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        checks.check(!self.path.as_os_str().is_empty(), "path", || "must name a file".into());
        checks.finish()
    }
}

/// The kinds of sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// One JSON object per line, appended.
    Jsonl,
}

/// How a `cull run` stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Seconds from SIGINT/SIGTERM until the process gives up draining and exits
    /// non-zero, naming what was left (it stays on the bus for the next start).
    pub deadline_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> ShutdownConfig {
        ShutdownConfig { deadline_secs: 30 }
    }
}

impl ShutdownConfig {
    /// Returns the deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_secs(self.deadline_secs)
    }

    /// Returns every invalid setting, keys relative to `[shutdown]`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        checks.positive("deadline_secs", self.deadline_secs);
        checks.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_must_be_kafka_names_and_distinct() {
        let topics = Topics {
            mentions: "cull mentions".into(),
            dead_letter: "cull.verdicts".into(),
            ..Topics::default()
        };
        let problems: Vec<String> =
            topics.validate().into_iter().map(|p| format!("{}: {}", p.key, p.message)).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("mentions: `cull mentions` is not a Kafka topic name"));
        assert_eq!(
            problems[1],
            "dead_letter: `cull.verdicts` is also topics.verdicts: every topic needs its own name"
        );
        let per_queue = Topics { tickets_per_queue: true, ..Topics::default() };
        assert_eq!(per_queue.ticket_topic(None, "billing"), "cull.tickets.billing");
        assert_eq!(per_queue.ticket_topic(Some("acme"), "billing"), "cull.tickets.acme.billing");
        assert_eq!(Topics::default().ticket_topic(Some("acme"), "billing"), "cull.tickets.acme");
        assert_eq!(Topics::default().ticket_topic(None, "billing"), "cull.tickets");
        let shared = Topics { tickets_per_client: false, ..per_queue.clone() };
        assert_eq!(shared.ticket_topic(Some("acme"), "billing"), "cull.tickets.billing");
        assert!(per_queue.queue_problem("acme.care").is_some(), "it would be acme's care");
        assert_eq!(per_queue.queue_problem("acme-care"), None);
        assert_eq!(shared.queue_problem("acme.care"), None);
    }
}
