//! The analyst index: every mention with its verdict in an on-disk Tantivy index.
//!
//! The index is built on the matcher's own schema ([`cull_rules::tantivy_query`]):
//! the same analyzer, the same fields, the same compiled queries. That is what makes a
//! search mean what a rule means, and a [`backtest`] of a draft rule show what the live
//! matcher would have done.
//!
//! * [`Indexer`] writes: it upserts by mention id (the verdict and the tickets about
//!   the mention, in either order) and commits every N documents or T
//!   seconds with the consumed offsets in the commit's payload ([`Checkpoint`]), so a
//!   restart resumes exactly where the last commit ended. It also deletes mentions:
//!   those past the retention window, and those erased by id, whose ids it keeps in
//!   the same payload so that a replay of the bus indexes neither again.
//! * [`Searcher`] reads: queries in the rule language with filters, sort by time or
//!   relevance, highlighted snippets, facet counts and a date histogram, within
//!   [`Limits`] so that one query cannot starve the service.
//! * [`backtest`] runs draft rules over the indexed mentions.
//!
//! Every read is limited to the reader's [`cull_model::Scope`]: a client's analysts
//! see that client's mentions only, enforced in the searcher itself so that the API,
//! the console, `cull search` and backtests cannot differ. An index written by an
//! earlier version of cull is rebuilt from its own stored records when it is opened
//! (see `migrate.rs`).
#![deny(missing_docs)]

mod backtest;
mod config;
mod error;
mod migrate;
mod schema;
mod search;
mod writer;

pub use backtest::{backtest, Backtest, BacktestRequest, DayCount, RuleBacktest, Sample};
pub use config::IndexConfig;
pub use error::IndexError;
pub use schema::{registered_domain, IndexSchema, Outcome};
pub use search::{
    parse_time_bound, Bucket, ExportedMention, FacetCount, FacetFilter, Histogram, Hit, Interval, Limits,
    MentionRecord, SearchRequest, SearchResponse, Searcher, Snippet, Sort, Split, FACETS, NO_VALUE_SERIES,
};
pub use tantivy::Index;
pub use writer::{Added, Checkpoint, Erasure, Indexer, Origin};

#[cfg(test)]
mod tests;
