//! The topics that connect cull's stages: Kafka, or a bounded in-process bus.
//!
//! Every stage talks to a [`Producer`] and a [`Consumer`] and does not know which bus
//! is behind them. Kafka ([`kafka_producer`], [`kafka_consumer`]) is for production and
//! scale-out; the [`EmbeddedBus`] runs the same stages in one process, on one machine,
//! with no broker.
//!
//! # At-least-once, and why commits wait for acknowledgements
//!
//! A stage reads a batch with [`Consumer::next_batch`], produces its results with
//! [`Producer::send_all`], which returns only when the broker has acknowledged every
//! record, and only then calls [`Consumer::commit`]. A crash anywhere before the
//! commit means the batch is read and processed again: duplicates are possible, losses
//! are not. Duplicates are harmless downstream because cull's ids are deterministic (a
//! replayed mention yields the same ticket id). Committing before the acknowledgements
//! would turn a crash into a silent loss, which for a contact center is a complaint
//! nobody answered.
//!
//! `commit` commits one past the last record that `next_batch` returned, per
//! partition, and nothing else: a record that was fetched from the broker but not yet
//! returned is never covered by a commit.
//!
//! # Why the Kafka consumer is a `BaseConsumer` on a thread of its own
//!
//! librdkafka does everything that keeps a group member alive (rebalance callbacks,
//! statistics, error events) inside `poll`, on the thread that calls it. As Quickwit's
//! Kafka source does, a dedicated thread polls a `BaseConsumer` and feeds a bounded
//! tokio channel, so the async stage never blocks the runtime in `poll`, and the
//! rebalance callbacks run in one known place. The channel being bounded stops the
//! fetching when the stage falls behind; the stage must therefore take a batch at
//! least once per `max.poll.interval.ms` ([`KafkaConfig::max_poll_interval`]).
//!
//! When a partition is revoked, the revoke callback first commits what the stage
//! acknowledged on it, so its next owner starts right after. Records of that partition
//! still waiting in the channel are dropped when the stage would receive them (each
//! record carries the generation of the assignment it was fetched under): the next
//! owner reads them again from the committed offset, and handing them out here as well
//! would let this instance commit past records that the new owner has not processed.
//!
//! The producer is a `FutureProducer` with `enable.idempotence=true`, as Arroyo's
//! Kafka sink: all records of a batch are enqueued, backing off while librdkafka's
//! local queue is full, and then every delivery future is awaited.
//!
//! # The embedded bus is a durable log
//!
//! [`EmbeddedBus`] keeps each topic as a log of checksummed segment files with
//! offsets that are stable across restarts and consumer-group offsets that persist,
//! so that the embedded default keeps the promise Kafka keeps: a record that was
//! acknowledged is on disk, and a restart resumes every stage where it committed. Its
//! module documentation explains the format, the flushing (`fsync`) policies and the
//! backpressure.
#![deny(missing_docs)]

mod config;
pub mod dead_letter;
mod embedded;
mod error;
mod kafka;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use config::{BusConfig, BusKind, EmbeddedConfig, Fsync, KafkaSettings, StorageKind};
pub use embedded::{EmbeddedBus, EmbeddedConsumer, EmbeddedProducer};
pub use error::BusError;
pub use kafka::{ensure_topics, kafka_consumer, kafka_producer, KafkaConfig, KafkaConsumer, KafkaProducer};

/// A record to produce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// The key, which picks the partition: records with the same key stay in order.
    pub key: Option<Vec<u8>>,
    /// The body.
    pub payload: Vec<u8>,
    /// Headers, in order; names may repeat.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A consumed record, with where it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The topic it was read from.
    pub topic: String,
    /// The partition it was read from (always 0 on the embedded bus).
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The key, if it had one.
    pub key: Option<Vec<u8>>,
    /// The body (empty for a Kafka tombstone).
    pub payload: Vec<u8>,
    /// Headers, in order (a header without a value reads as empty).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Sends records to topics of either bus. Clones share one underlying client, so they
/// are cheap.
#[derive(Clone, Debug)]
pub enum Producer {
    /// The in-process bus.
    Embedded(EmbeddedProducer),
    /// Kafka.
    Kafka(KafkaProducer),
}

impl Producer {
    /// Sends all messages to `topic` and returns once every one is acknowledged.
    ///
    /// On Kafka that means every delivery report came back positive; on the embedded
    /// bus it means every message is on the topic's log (on the device, with
    /// `fsync = "always"`), after waiting while a group reading the topic was
    /// `capacity` records behind (that wait is the backpressure). After an error, some
    /// messages may have been delivered: the caller must not commit the batch that
    /// produced them.
    pub async fn send_all(&self, topic: &str, messages: Vec<Message>) -> Result<(), BusError> {
        match self {
            Producer::Embedded(producer) => producer.send_all(topic, messages).await,
            Producer::Kafka(producer) => producer.send_all(topic, messages).await,
        }
    }
}

/// Reads batches of records from either bus.
#[derive(Debug)]
pub enum Consumer {
    /// The in-process bus.
    Embedded(EmbeddedConsumer),
    /// A Kafka consumer group member.
    Kafka(Box<KafkaConsumer>),
}

impl Consumer {
    /// Returns up to `max` records (at least one is asked for, whatever `max` says).
    ///
    /// It waits until a first record arrives or `idle` elapses (returning an empty
    /// batch then, so the caller can do periodic work), and after the first record at
    /// most `linger` for more. Returns `Ok(None)` once the embedded bus is closed (what
    /// is left stays on its log); a Kafka topic never ends.
    pub async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
        idle: Duration,
    ) -> Result<Option<Vec<Record>>, BusError> {
        match self {
            Consumer::Embedded(consumer) => consumer.next_batch(max, linger, idle).await,
            Consumer::Kafka(consumer) => consumer.next_batch(max, linger, idle).await.map(Some),
        }
    }

    /// Commits everything that [`Consumer::next_batch`] returned so far, marking it
    /// processed: call it only after what those records produced is acknowledged.
    ///
    /// On Kafka it commits one past the last returned offset of each partition still
    /// assigned, synchronously; a commit refused because the group is rebalancing is
    /// not an error, since the revoke callback commits the same offsets. On the
    /// embedded bus the offset is written next to the topic's log (flushed with
    /// `fsync = "always"`), and segments every group has committed past may go; a
    /// reader ([`EmbeddedBus::reader`]) commits nothing.
    pub async fn commit(&mut self) -> Result<(), BusError> {
        match self {
            Consumer::Embedded(consumer) => consumer.commit().await,
            Consumer::Kafka(consumer) => consumer.commit().await,
        }
    }

    /// Returns the consumer lag per `(topic, partition)` where known.
    ///
    /// On Kafka it is the high watermark from librdkafka's latest statistics (see
    /// [`KafkaConfig::stats_interval`]) minus the position this consumer has reached;
    /// partitions without statistics yet are left out. On the embedded bus it is
    /// exact: the records of the log this consumer has not taken yet (for a reader,
    /// those it can take now).
    pub fn lag(&self) -> Vec<(String, i32, i64)> {
        match self {
            Consumer::Embedded(consumer) => consumer.lag(),
            Consumer::Kafka(consumer) => consumer.lag(),
        }
    }

    /// Counts the partition assignments this consumer has had: it changes when its
    /// group hands it partitions, at its start and at every rebalance. Always 0 on the
    /// embedded bus, where a consumer owns its partitions for its whole life.
    pub fn assignments(&self) -> u64 {
        match self {
            Consumer::Embedded(_) => 0,
            Consumer::Kafka(consumer) => consumer.assignments(),
        }
    }

    /// Returns the records of this consumer's partitions that it has not taken yet,
    /// exactly: on the embedded bus from the log, on Kafka from the broker's high
    /// watermarks asked for now. `None` while a Kafka consumer has no partition
    /// assigned: it has not started, so it is not drained either.
    pub async fn exact_lag(&self) -> Result<Option<i64>, BusError> {
        match self {
            Consumer::Embedded(consumer) => Ok(Some(consumer.lag().iter().map(|(_, _, lag)| lag).sum())),
            Consumer::Kafka(consumer) => consumer.exact_lag().await,
        }
    }

    /// Returns, per `(topic, partition)`, the offset the next record produced will
    /// get, where this consumer knows it exactly: on the embedded bus. A checkpoint
    /// beyond it was made against another log (the bus directory was removed), which
    /// a stage with its own checkpoint must not take as covering the new records.
    /// Empty on Kafka.
    pub fn end_offsets(&self) -> Vec<(String, i32, i64)> {
        match self {
            Consumer::Embedded(consumer) => consumer.end_offsets(),
            Consumer::Kafka(_) => Vec::new(),
        }
    }

    /// Closes the consumer and waits until it has left its group.
    ///
    /// Leaving revokes its partitions, which commits what was acknowledged with
    /// [`Consumer::commit`]; the rest is read again by the next owner. Dropping the
    /// consumer does the same without waiting. An embedded consumer leaves its groups
    /// when dropped; what it committed stays with the group.
    pub async fn close(mut self) -> Result<(), BusError> {
        match &mut self {
            Consumer::Embedded(_) => Ok(()),
            Consumer::Kafka(consumer) => consumer.close().await,
        }
    }
}

/// Returns whether `name` is a topic name Kafka accepts (and so a directory name on
/// the embedded bus): 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
pub fn is_topic_name(name: &str) -> bool {
    (1..=MAX_TOPIC_LEN).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The longest Kafka topic name that brokers accept.
pub const MAX_TOPIC_LEN: usize = 249;

/// Locks `mutex`, going on after a panic elsewhere poisoned it: every critical section
/// in this crate leaves the state consistent at each step, so the data is still good.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka() {
        assert!(is_topic_name("cull.tickets.billing-2_x"));
        assert!(is_topic_name(&"a".repeat(249)));
        for bad in ["", ".", "..", "a b", "ä", "a/b", &"a".repeat(250)] {
            assert!(!is_topic_name(bad), "{bad:?}");
        }
    }
}
