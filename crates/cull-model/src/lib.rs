//! The data contracts of cull and the text analyzer that every stage shares.
//!
//! Everything that crosses a process boundary is defined here: the [`Mention`] that
//! ingest produces, the [`Verdict`] the matcher emits for every mention and the
//! [`Ticket`] a contact center consumes, and the [`Feedback`] its agents send back. Each carries a `schema` string with a version
//! so that consumers written in other languages can reject what they do not know.
//!
//! The [`analyzer`] lives here too, rather than in the matcher or the index, because
//! cull promises that a rule means exactly what a search of the analyst index means.
//! That promise holds only if both sides cut text into the same tokens at the same
//! positions, so there is one analyzer and both register it. [`sentiment`] is here
//! for the same reason: triage and the index label a mention with one scorer.
#![deny(missing_docs)]

pub mod analyzer;
pub mod client;
pub mod config;
mod contract;
pub mod escape;
mod feedback;
mod id;
mod packed;
pub mod sentiment;
pub mod thread;

pub use client::{check_claim, client_name_problem, Scope, ALL_CLIENTS};
pub use compact_str::CompactString;
pub use contract::{
    Channel, CullReason, Culled, DeadLetter, Factor, MatchedRule, Mention, ModelError, Priority, Span, Spans,
    Ticket, TicketKind, TicketRule, Verdict, DEAD_LETTER_SCHEMA, MAX_MENTION_BYTES, MENTION_SCHEMA,
    TICKET_SCHEMA, UNDETERMINED_LANGUAGE, VERDICT_SCHEMA,
};
pub use feedback::{supersedes, Disposition, Feedback, FEEDBACK_SCHEMA, MAX_FEEDBACK_BYTES};
pub use id::{mention_id, short_hash, ticket_id};
pub use packed::PackedStrings;
