//! Per-rule quality and cost, and the exclusions that would have culled a rule's noise.
//!
//! Agents see the false positives first. Their dispositions (`cull.feedback/v1`) say
//! which tickets a rule should not have made; the verdicts say what each rule matched
//! and which clause culled what; a profile of a sample of the traffic says what each
//! rule costs the matcher. This crate keeps all of it per rule and day in a [`Store`]
//! (not as one metric series per rule) and reports it ([`Store::report`]): matches,
//! culls per clause, tickets, candidates, verification time, and precision (1 −
//! irrelevant ÷ tickets with feedback) with its trend over the window before.
//!
//! From the labelled tickets of one rule, [`suggest`] proposes exclusions and masks:
//! the words and phrases over-represented among its irrelevant mentions against its
//! relevant ones, ranked by the log-odds ratio with an informative Dirichlet prior
//! (Monroe, Colaresi and Quinn, "Fightin' Words", 2008), each proven by a backtest on
//! the analyst index with the live matcher's own code: which past irrelevant mentions
//! it would cull, which relevant ones it would lose. Nothing is applied: a suggestion
//! becomes a draft rule file an operator reviews ([`draft_toml`]).
#![deny(missing_docs)]

mod alert;
mod config;
mod error;
mod store;
mod suggest;

pub use alert::precision_alert;
pub use config::QualityConfig;
pub use error::QualityError;
pub use store::{
    day_of, CullCount, DayCounts, FeedbackOutcome, Labelled, PrecisionChange, RuleKey, RuleReport, SortBy,
    Store, Thresholds, TicketFacts, STORE_FILE,
};
pub use suggest::{draft_toml, rule_toml, suggest, SuggestOptions, Suggestion, SuggestionKind, Suggestions};
