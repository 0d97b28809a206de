//! The one error type of the bus.

use std::path::PathBuf;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The errors of the bus.
///
/// Every variant names the topic or the broker list it concerns, because the person who
/// reads it is an operator looking at a log line, and "which topic, which cluster" is the
/// first thing they need to know.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A Kafka client (producer, consumer or admin client) could not be created, which
    /// almost always means a bad setting.
    #[error("cannot create the kafka {role} for brokers {brokers}: {source}; check the bus.kafka settings")]
    Client {
        /// Which client: "producer", "consumer" or "admin client".
        role: &'static str,
        /// The configured broker list.
        brokers: String,
        /// What librdkafka said.
        #[source]
        source: Box<KafkaError>,
    },
    /// The admin request that creates topics failed as a whole (broker unreachable,
    /// timeout).
    #[error("cannot create topics {topics} on brokers {brokers}: {source}; is the broker up?")]
    Admin {
        /// The topics asked for, comma separated.
        topics: String,
        /// The configured broker list.
        brokers: String,
        /// What librdkafka said.
        #[source]
        source: Box<KafkaError>,
    },
    /// The broker refused to create one topic.
    #[error("the broker {brokers} refused to create topic {topic}: {code}")]
    CreateTopic {
        /// The topic that was refused.
        topic: String,
        /// The configured broker list.
        brokers: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// The consumer could not subscribe to its topics.
    #[error("cannot subscribe to topics {topics} on brokers {brokers}: {source}")]
    Subscribe {
        /// The topics, comma separated.
        topics: String,
        /// The configured broker list.
        brokers: String,
        /// What librdkafka said.
        #[source]
        source: Box<KafkaError>,
    },
    /// A record could not be enqueued or was not acknowledged by the broker; the batch
    /// it belongs to must not be committed.
    #[error("producing to topic {topic} on brokers {brokers} failed: {source}")]
    Produce {
        /// The topic produced to.
        topic: String,
        /// The configured broker list.
        brokers: String,
        /// What librdkafka said.
        #[source]
        source: Box<KafkaError>,
    },
    /// The consumer hit an error that the client does not retry by itself, such as a
    /// topic that does not exist.
    #[error("consuming from brokers {brokers} failed: {source}")]
    Consume {
        /// The configured broker list.
        brokers: String,
        /// What librdkafka said.
        #[source]
        source: Box<KafkaError>,
    },
    /// Offsets could not be committed; the records will be delivered again, so this is
    /// a duplicate risk, not a loss.
    #[error("committing offsets to brokers {brokers} failed: {source}")]
    Commit {
        /// The configured broker list.
        brokers: String,
        /// What librdkafka said.
        #[source]
        source: Box<KafkaError>,
    },
    /// The thread that polls the Kafka consumer could not start, stopped early or the
    /// consumer was already closed.
    #[error("the kafka consumer for brokers {brokers} is not running: {reason}")]
    ConsumerStopped {
        /// The configured broker list.
        brokers: String,
        /// Why it is not running.
        reason: String,
    },
    /// A topic of the embedded bus was closed, so it takes no more messages.
    #[error("topic {topic} of the embedded bus is closed")]
    Closed {
        /// The closed topic.
        topic: String,
    },
    /// The embedded log could not read or write a file (a full disk, permissions).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file of the embedded log holds something it did not write.
    #[error("{}: damaged at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the damage starts.
        position: u64,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Another process has the embedded bus's directory open.
    #[error("{}: another cull process is using this bus directory (bus.embedded.dir); stop it or give this one its own directory", dir.display())]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// A consumer group already has a consumer of the topic in this process.
    #[error("group {group} already has a consumer of topic {topic} of the embedded bus")]
    GroupInUse {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
    },
    /// A consumer group name that cannot name a file.
    #[error("{group:?} is not a consumer group name: use 1 to 64 of a-z A-Z 0-9 . _ -")]
    GroupName {
        /// The name.
        group: String,
    },
    /// A topic name that Kafka would refuse.
    #[error("{topic:?} is not a topic name: use 1 to 249 of a-z A-Z 0-9 . _ - (not `.` or `..`)")]
    TopicName {
        /// The name.
        topic: String,
    },
    /// A record too large for the embedded log.
    #[error("a record of {size} bytes for topic {topic} is over the embedded log's limit of {limit} bytes")]
    RecordTooLarge {
        /// The topic.
        topic: String,
        /// The record's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The embedded log of a topic takes no more records until a restart.
    #[error("topic {topic} of the embedded bus takes no more records: {reason}; restart cull")]
    Broken {
        /// The topic.
        topic: String,
        /// What happened.
        reason: String,
    },
}
