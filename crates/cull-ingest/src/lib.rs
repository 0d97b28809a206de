//! cull's sources: everything that turns the outside world into `cull.mention/v1`
//! records on the mentions topic.
//!
//! * [`feed`]: RSS, Atom and JSON Feed polling (Google Alerts among them), with
//!   conditional GET, backoff and a persisted cursor.
//! * [`webhook`]: an HTTP endpoint per source for listening tools that push, with
//!   HMAC signatures, a replay window, a size limit and backpressure.
//! * [`jsonl`]: JSON lines from a file (optionally followed like `tail -F`) or stdin.
//! * [`mail`]: alert mails from an mbox file or a Maildir, one mention per alert item.
//!
//! Every source builds [`Draft`]s and hands them to an [`Outlet`], which normalizes
//! them ([`normalize()`]), screens out duplicates ([`Screen`]) and produces the rest to
//! the bus, returning only once the bus has acknowledged them. A source moves its own
//! cursor (feed state, Maildir flags, the HTTP response) only after that, so a crash
//! repeats input rather than losing it, and the repeats carry the same ids.
#![deny(missing_docs)]

mod config;
pub mod feed;
mod html;
pub mod jsonl;
pub mod mail;
mod normalize;
mod outlet;
mod simhash;
mod url;
pub mod webhook;

pub use config::{
    check_once, run_source, webhook_configs, webhook_router, FeedSource, IngestConfig, JsonlSource,
    MailSource, SourceConfig, SourceError, SourceOptions, WebhookSource,
};
pub use html::html_to_text;
pub use normalize::{
    detect_language, normalize, Draft, Markup, Screen, ScreenConfig, Screened, NEAR_DUPLICATE_OF,
};
pub use outlet::{Delivered, Entered, Observer, Outlet};
pub use url::{canonical_url, redacted};
