//! The one error type of the bus.

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
}
