//! Errors of the analyst index.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The index directory cannot be opened or created.
    #[error("index {}: {message}", path.display())]
    Open {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Another process holds the index's writer lock: an index has one writer.
    #[error(
        "another process writes the index {} (an index has one writer: a `cull run` with [index] enabled, \
         or an erasure in progress)",
        path.display()
    )]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// Tantivy failed.
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// A request is malformed (a filter, a facet, a time range).
    #[error("query: {0}")]
    Query(String),
    /// The query text does not parse or compile; `span` locates the first offending
    /// clause, so that a console can point at it under the query.
    #[error("query: {message}")]
    Syntax {
        /// The parser's message (every error, when there are several).
        message: String,
        /// Byte range `[start, end)` of the first offending clause in the query text.
        span: Range<usize>,
    },
    /// A parameter of a search or a backtest is invalid; `name` is the parameter
    /// (`since`, `until`, `facet`, `channel`), which a caller shows as its own flag or key
    /// (`--since`) rather than as a layer of cull.
    #[error("{name}: {message}")]
    Parameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong with its value.
        message: String,
    },
    /// A query is over a limit (clauses, wildcard expansion).
    #[error("query over a limit: {0}")]
    Limit(String),
    /// A stored record or a commit payload cannot be read back.
    #[error("index record: {0}")]
    Record(String),
    /// A backtest ran past the time limit and was stopped (a backtest that counted
    /// only part of the mentions would mislead the operator who reads it).
    #[error(
        "the backtest ran past the query time limit of {} ms and was stopped; narrow its time range \
         (since, until) or its rules",
        limit.as_millis()
    )]
    TimeLimit {
        /// The limit.
        limit: Duration,
    },
    /// A mention asked for is not in the index.
    #[error("no mention {0:?} in the index")]
    NotFound(String),
}
