//! cull's stage runtime: one shape for a stage, and one runner for all of them.
//!
//! Every stage of cull does the same dance around its own work: read a batch from
//! its input topics, process it, produce the results, wait until the bus has
//! acknowledged them, make its own state durable, commit the input's offsets, report
//! its lag and its batch, and know when to stop. Written once per stage, that dance
//! was written three times slightly differently, and each copy had its own way to
//! lose a record or hang on shutdown. Here a [`Stage`] is only the work (a sync
//! function from records to records, plus a flush for stages with state of their
//! own), and the [`Runtime`] does the dance for every stage the same way:
//!
//! * **Commits follow acknowledgements.** Offsets are committed only after what the
//!   batch produced is acknowledged and the stage's own state (an index, a file) is
//!   durable: a crash replays, it never skips (at-least-once; ids are deterministic,
//!   so a replay repeats ids). A send the bus refuses is retried with backoff.
//! * **A poison record costs one dead letter.** A batch that panics is processed
//!   again one record at a time, and each record that panics alone goes to the
//!   dead-letter topic with the stage, the panic and its bytes; the group's offsets
//!   move past it, so a restart does not meet it again.
//! * **An ordered shutdown.** On a signal the sources stop taking input, and each
//!   stage ends once everything upstream of it has ended and it has read all its
//!   input (on the embedded bus, where every stage is in this process; on Kafka a
//!   stage stops after the batch in hand, since the topic outlives it). A deadline
//!   bounds the drain; past it the run stops hard and says what was left, which stays
//!   on the bus. A failing stage stops the run hard, a failing source stops it
//!   gracefully; either way the process ends with one error, never a hang.
//!
//! The stages: [`MatchStage`] (mentions to verdicts), [`TicketStage`] (verdicts to
//! tickets), [`IndexStage`] (verdicts into the analyst index), [`FileSink`] (a
//! topic to a JSON-lines file) and [`AlertStage`] (tickets to a webhook, a chat or a
//! mailbox). The crate depends on every component crate and is
//! the only one that does async I/O on behalf of those that must not
//! (`cull-rules`, `cull-match`, `cull-ticket`, `cull-index` are sync).
#![deny(missing_docs)]

mod alert;
mod changelog;
mod config;
mod fault;
mod index;
mod matcher;
pub mod metrics;
mod quality;
pub mod reload;
mod runtime;
mod sink;
mod stage;
mod summary;

pub use alert::{alert_stages, AlertStage};
pub use config::{FileSinkConfig, MatcherConfig, ShutdownConfig, SinkKind, SinksConfig, Topics};
pub use index::IndexStage;
pub use matcher::MatchStage;
pub use metrics::Metrics;
pub use quality::QualityStage;
pub use runtime::{Batching, Bus, Finished, Left, RunOptions, Runtime};
pub use sink::{FileSink, SinkFormat};
pub use stage::{panic_message, Output, Stage, StageError};
pub use summary::{Counts, Decided, Decision, DecisionSample, Summary};
pub use tickets::{ticket_topics, AdmittedTopics, TicketStage};

mod tickets;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A stage cannot go on.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// A source stopped with an error.
    #[error(transparent)]
    Source(#[from] cull_ingest::SourceError),
    /// The bus failed in a way that retrying does not mend (a consumer stopped).
    #[error("stage {stage}: {source}")]
    Bus {
        /// The stage.
        stage: String,
        /// What the bus said.
        #[source]
        source: cull_bus::BusError,
    },
    /// A task panicked outside a record (while flushing, say).
    #[error("{task} panicked: {message}")]
    Panicked {
        /// The stage or source.
        task: String,
        /// What the panic said.
        message: String,
    },
    /// A stage could not read its changelog to the end: it would have gone on with
    /// part of its state.
    #[error(
        "stage {stage}: cannot read its changelog topic {topic} to the end ({left}) within {} s without progress; \
         it does not start with part of its state",
        waited.as_secs()
    )]
    Changelog {
        /// The stage.
        stage: String,
        /// Its changelog topic.
        topic: String,
        /// How long it waited without progress.
        waited: std::time::Duration,
        /// What was left: records, or the assignment the reader never got.
        left: String,
    },
    /// The graceful stop did not finish in time; what is left stays on the bus.
    #[error(
        "the shutdown deadline of {} s (shutdown.deadline_secs) passed with work left: {}; it stays on the bus for the next start",
        deadline.as_secs(),
        runtime::describe(left)
    )]
    Deadline {
        /// The deadline.
        deadline: std::time::Duration,
        /// What each stage had not read.
        left: Vec<Left>,
    },
}
