//! Cross-crate tests of cull: behaviour that spans the model, the rules, the matcher
//! and the binary.

mod agreement;
mod alerts;
mod api;
mod cli;
mod clients;
mod console;
mod corpus;
mod deploy;
mod durability;
#[cfg(feature = "failpoints")]
mod faults;
mod feedback;
mod feedback_api;
mod feeds;
mod google_alerts;
mod hardening_http;
mod index;
mod kafka;
mod language;
mod pipeline;
mod readme;
mod reload;
mod semantics;
mod sources;
