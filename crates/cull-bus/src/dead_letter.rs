//! The dead-letter convention shared by every stage.
//!
//! A record a stage cannot process is not dropped: it goes to the dead-letter topic
//! with its original bytes as the payload (they may not even be UTF-8) and the stage,
//! the error and where it came from as headers, so an operator can triage without
//! parsing the payload and replay it once the cause is fixed.

use std::fmt;

use cull_model::ModelError;

use crate::Message;

/// Header naming the stage that rejected the record.
pub const STAGE_HEADER: &str = "cull.stage";
/// Header with the error, in words.
pub const ERROR_HEADER: &str = "cull.error";
/// Header with the topic of the rejected record.
pub const TOPIC_HEADER: &str = "cull.source.topic";
/// Header with the partition of the rejected record.
pub const PARTITION_HEADER: &str = "cull.source.partition";
/// Header with the offset of the rejected record.
pub const OFFSET_HEADER: &str = "cull.source.offset";
/// Header with a place outside the bus (a file and line, a feed URL, a webhook source).
pub const LOCATION_HEADER: &str = "cull.source.location";

/// Where rejected input came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A record of a topic.
    Record {
        /// Its topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
    },
    /// A place outside the bus, such as `path:line`, a feed URL or `webhook:<source>`.
    Location(String),
}

/// Why a record was rejected; a bounded set, so it can label a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Not JSON.
    MalformedJson,
    /// JSON, but not the expected contract (wrong or missing schema, missing fields).
    Schema,
    /// Not UTF-8.
    InvalidUtf8,
    /// Larger than the configured limit.
    Oversized,
    /// The stage panicked while processing it: a bug, isolated to this record.
    Panic,
    /// An alert sink could not deliver it: the receiver refused it, or was down past
    /// every retry.
    Undeliverable,
    /// It names a client it may not: another client than its source's, or a name
    /// that cannot be a client's.
    Client,
    /// Anything else; the dead letter's error says what.
    Other,
}

impl Reason {
    /// Every reason, for metrics that must exist before anything happens.
    pub const ALL: [Reason; 8] = [
        Reason::MalformedJson,
        Reason::Schema,
        Reason::InvalidUtf8,
        Reason::Oversized,
        Reason::Panic,
        Reason::Undeliverable,
        Reason::Client,
        Reason::Other,
    ];

    /// Returns the metric label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::MalformedJson => "malformed_json",
            Reason::Schema => "schema",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::Oversized => "oversized",
            Reason::Panic => "panic",
            Reason::Undeliverable => "undeliverable",
            Reason::Client => "client",
            Reason::Other => "other",
        }
    }
}

impl From<&ModelError> for Reason {
    fn from(error: &ModelError) -> Reason {
        match error {
            ModelError::Oversized { .. } => Reason::Oversized,
            ModelError::InvalidUtf8 { .. } => Reason::InvalidUtf8,
            ModelError::Json { .. } => Reason::MalformedJson,
            ModelError::Schema { .. } => Reason::Schema,
            ModelError::EmptyField { .. } | ModelError::Invalid { .. } => Reason::Other,
            ModelError::Client { .. } | ModelError::ForeignClient { .. } => Reason::Client,
        }
    }
}

/// Returns the dead-letter record for input that `stage` rejected with `error`.
pub fn dead_letter(
    stage: &str,
    error: &dyn fmt::Display,
    origin: &Origin,
    key: Option<Vec<u8>>,
    original: Vec<u8>,
) -> Message {
    let mut headers = vec![
        (STAGE_HEADER.to_string(), stage.as_bytes().to_vec()),
        (ERROR_HEADER.to_string(), error.to_string().into_bytes()),
    ];
    match origin {
        Origin::Record { topic, partition, offset } => {
            headers.push((TOPIC_HEADER.to_string(), topic.as_bytes().to_vec()));
            headers.push((PARTITION_HEADER.to_string(), partition.to_string().into_bytes()));
            headers.push((OFFSET_HEADER.to_string(), offset.to_string().into_bytes()));
        }
        Origin::Location(location) => {
            headers.push((LOCATION_HEADER.to_string(), location.as_bytes().to_vec()))
        }
    }
    Message { key, payload: original, headers }
}
