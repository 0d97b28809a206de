//! The `[bus]` section of a pipeline file: which bus, and its settings.

use std::path::PathBuf;
use std::time::Duration;

use cull_model::config::{Checks, Invalid};
use serde::{Deserialize, Serialize};

use crate::KafkaConfig;

/// Which bus carries the topics, and its settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// Embedded (one process, no broker) or Kafka.
    #[serde(default)]
    pub kind: BusKind,
    /// Settings of the embedded bus; used when `kind` is `embedded`.
    #[serde(default)]
    pub embedded: EmbeddedConfig,
    /// Settings of the Kafka bus; required when `kind` is `kafka`.
    pub kafka: Option<KafkaSettings>,
}

/// The kinds of bus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// A log on this machine's disk: one process, no broker.
    #[default]
    Embedded,
    /// A Kafka-protocol broker: scale out through partitions and consumer groups.
    Kafka,
}

/// Where the embedded log keeps its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// Segment files under `dir`: what was acknowledged survives a crash and a restart.
    #[default]
    Disk,
    /// Memory: nothing survives the process. For benchmarks and throwaway runs only.
    Memory,
}

/// When the embedded log flushes what it wrote to the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Before acknowledging: a `202`, an advanced cursor, a committed batch means the
    /// records are on the device and survive a power loss. Concurrent writers share
    /// one flush (group commit).
    #[default]
    Always,
    /// Every `fsync_interval_ms`, in the background; records become readable by the
    /// next stage once flushed. An acknowledged record survives a crash of cull (it is
    /// in the operating system's cache), but a power loss can take the last interval.
    Interval,
    /// Never: the operating system writes when it likes. A crash of cull loses
    /// nothing; a power loss can lose recent records and let their offsets be reused.
    Never,
}

/// Settings of the embedded bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// The directory of the topics' logs and the consumer groups' offsets; one process
    /// uses it at a time.
    pub dir: PathBuf,
    /// `disk` or `memory`.
    pub storage: StorageKind,
    /// `always`, `interval` or `never`.
    pub fsync: Fsync,
    /// Milliseconds between flushes with `fsync = "interval"`.
    pub fsync_interval_ms: u64,
    /// Megabytes per segment file: the unit in which old records are deleted.
    pub segment_mb: u64,
    /// Megabytes a topic keeps at most of records every reading stage has committed.
    pub retention_mb: u64,
    /// Hours a topic keeps records every reading stage has committed.
    pub retention_hours: u64,
    /// Records of a topic that a reading stage of this process has not taken yet,
    /// beyond which producers wait (backpressure: a slow stage slows the ones before
    /// it, down to the sources, instead of letting the backlog grow).
    pub capacity: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> EmbeddedConfig {
        EmbeddedConfig {
            dir: PathBuf::from("data/bus"),
            storage: StorageKind::Disk,
            fsync: Fsync::Always,
            fsync_interval_ms: 100,
            segment_mb: 64,
            retention_mb: 1024,
            retention_hours: 168,
            capacity: 10_000,
        }
    }
}

/// The largest segment: record positions within one are 32-bit.
const MAX_SEGMENT_MB: u64 = 2048;

impl EmbeddedConfig {
    /// Returns every invalid setting, keys relative to `[bus.embedded]`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        checks.check(self.storage == StorageKind::Memory || !self.dir.as_os_str().is_empty(), "dir", || {
            "must name a directory".into()
        });
        checks.positive("capacity", self.capacity as u64);
        checks.positive("fsync_interval_ms", self.fsync_interval_ms);
        checks.check((1..=MAX_SEGMENT_MB).contains(&self.segment_mb), "segment_mb", || {
            format!("must be 1 to {MAX_SEGMENT_MB}")
        });
        checks.check(self.retention_mb >= self.segment_mb, "retention_mb", || {
            "must be at least segment_mb".into()
        });
        checks.positive("retention_hours", self.retention_hours);
        checks.finish()
    }

    /// Returns the segment size in bytes.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_mb.min(MAX_SEGMENT_MB) << 20
    }
}

/// Settings of the Kafka bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers, `host:port[,host:port…]` as librdkafka's `bootstrap.servers`.
    pub brokers: String,
    /// The consumer group of the matchers; processes sharing it split the partitions.
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

impl KafkaSettings {
    /// Returns the settings with `brokers` and every default.
    pub fn new(brokers: impl Into<String>) -> KafkaSettings {
        KafkaSettings {
            brokers: brokers.into(),
            group_id: default_group_id(),
            client_id: default_client_id(),
            partitions: default_partitions(),
            replication: default_replication(),
        }
    }

    /// Returns the client settings these describe.
    pub fn client(&self) -> KafkaConfig {
        KafkaConfig {
            brokers: self.brokers.clone(),
            group_id: self.group_id.clone(),
            client_id: self.client_id.clone(),
            partitions: self.partitions,
            replication: self.replication,
            ..KafkaConfig::default()
        }
    }

    /// Returns every invalid setting, keys relative to `[bus.kafka]`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        for problem in broker_problems(&self.brokers) {
            checks.check(false, "brokers", || problem);
        }
        checks.check(!self.group_id.trim().is_empty(), "group_id", || "must not be empty".into());
        checks.check(!self.client_id.trim().is_empty(), "client_id", || "must not be empty".into());
        checks.check(self.partitions > 0, "partitions", || "must be at least 1".into());
        checks.check(self.replication > 0, "replication", || "must be at least 1".into());
        checks.finish()
    }
}

impl BusConfig {
    /// Returns every invalid setting, keys relative to `[bus]`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        match (&self.kafka, self.kind) {
            (None, BusKind::Kafka) => checks.check(false, "kafka", || {
                "missing: bus.kind = \"kafka\" needs a [bus.kafka] section with `brokers`".into()
            }),
            (Some(kafka), _) => checks.nested("kafka", kafka.validate()),
            (None, BusKind::Embedded) => {}
        }
        checks.nested("embedded", self.embedded.validate());
        checks.finish()
    }

    /// Returns the Kafka settings; `None` on the embedded bus.
    pub fn kafka_client(&self) -> Option<KafkaConfig> {
        match self.kind {
            BusKind::Kafka => self.kafka.as_ref().map(KafkaSettings::client),
            BusKind::Embedded => None,
        }
    }
}

impl Fsync {
    /// Returns the flush interval of `interval`, `None` for the other policies.
    pub(crate) fn interval(self, config: &EmbeddedConfig) -> Option<Duration> {
        (self == Fsync::Interval).then(|| Duration::from_millis(config.fsync_interval_ms.max(1)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_invalid_setting_is_named() {
        let config = BusConfig {
            kind: BusKind::Kafka,
            embedded: EmbeddedConfig {
                dir: PathBuf::new(),
                capacity: 0,
                segment_mb: 4096,
                retention_mb: 1,
                ..EmbeddedConfig::default()
            },
            kafka: None,
        };
        let keys: Vec<String> = config.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            ["kafka", "embedded.dir", "embedded.capacity", "embedded.segment_mb", "embedded.retention_mb"]
        );
        let mut kafka = KafkaSettings::new("ok:9092, nope, :1, h:0");
        kafka.partitions = 0;
        let problems = kafka.validate();
        let messages: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.key, p.message)).collect();
        assert_eq!(
            messages,
            [
                "brokers: `nope` is not host:port",
                "brokers: `:1` is not host:port",
                "brokers: `h:0` is not host:port",
                "partitions: must be at least 1"
            ]
        );
        assert!(BusConfig::default().validate().is_empty());
    }
}
