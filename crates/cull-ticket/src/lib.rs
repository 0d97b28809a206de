//! Tickets: what a true match becomes for a contact center.
//!
//! A contact center merges social tickets with phone, email and chat in one queue, so
//! a ticket must stand for one real issue, say why it ranks where it does, carry a
//! deadline that holds, and keep the same id however often it is delivered:
//!
//! * **One ticket per issue** ([`triage`]). The mentions of one thread (a post and its
//!   retweets or syndicated copies, one URL, one author) on one rule join one ticket
//!   while they keep coming within the window; each join is a new revision with the
//!   count and the latest mention. Revisions never go back: triage state is written
//!   to a changelog and read back after a restart or by the replica that takes over.
//! * **A score that explains itself** ([`score`]): the rule's priority, negative
//!   sentiment (VADER, [`cull_model::sentiment`], the scorer the index labels with),
//!   reach, VIP authors, crisis words (`escalate_on`), velocity, spikes and
//!   lateness each add capped points, listed on the ticket; the queue's channel weight
//!   scales the sum so social work does not starve calls and e-mail.
//! * **A deadline from the post's time**: the first-response target of the queue and
//!   priority counts from when the mention was posted, is fixed at the first revision
//!   and never pushed back; a mention late on arrival is flagged and raised.
//! * **Capacity**: a queue's `max_per_hour` and `max_open` overflow to another queue or
//!   into one digest ticket, never to nowhere.
//! * **What to read.** The spans where the rule matched, and a snippet around the
//!   first one in the title or the text. Spans are untrusted input here (the verdict
//!   came over a topic), so the snippet applies a span only to its own field and only
//!   at character boundaries: a span of the author, or one a hostile producer made
//!   up, can never slice text it does not belong to.
//! * **The record contract** ([`key`], [`headers`]): the Kafka key is the ticket id, so
//!   the revisions of one ticket stay in one partition, in order; the headers carry
//!   the queue and the priority, so a router need not parse the JSON.
//!
//! The crate is sync and knows no bus, so the stage that runs it (in `cull-runtime`) is
//! the only part that waits on I/O.
#![deny(missing_docs)]

pub mod calendar;
pub mod config;
pub mod score;
pub mod spike;
pub mod triage;

use cull_model::{Mention, Span, Ticket};

pub use config::{QueueConfig, SlaMinutes, TicketConfig, Weights};
pub use triage::{ChangelogRecord, Disposal, Overflow, OverflowTo, Position, TicketState, Triage, Triaged};

/// The header naming a ticket's queue.
pub const QUEUE_HEADER: &str = "cull.queue";
/// The header naming a ticket's priority (`P1`..`P4`).
pub const PRIORITY_HEADER: &str = "cull.priority";
/// The header naming a ticket's kind (`ticket`, `incident`, `digest`).
pub const KIND_HEADER: &str = "cull.kind";
/// The header naming a ticket's client, on the tickets of a client only.
pub const CLIENT_HEADER: &str = "cull.client";

/// Characters of context kept on each side of the first highlighted span.
const SNIPPET_CONTEXT: usize = 80;

/// Returns the Kafka key of a ticket's record: its id.
pub fn key(ticket: &Ticket) -> Vec<u8> {
    ticket.ticket_id.as_bytes().to_vec()
}

/// Returns the headers of a ticket's record: its queue, its priority and its kind.
pub fn headers(ticket: &Ticket) -> Vec<(String, Vec<u8>)> {
    let kind = serde_json::to_value(ticket.kind).ok().and_then(|v| v.as_str().map(str::to_string));
    let mut headers = vec![
        (QUEUE_HEADER.to_string(), ticket.queue.as_bytes().to_vec()),
        (PRIORITY_HEADER.to_string(), ticket.priority.as_str().as_bytes().to_vec()),
        (KIND_HEADER.to_string(), kind.unwrap_or_default().into_bytes()),
    ];
    if let Some(client) = &ticket.client {
        headers.push((CLIENT_HEADER.to_string(), client.as_bytes().to_vec()));
    }
    headers
}

/// Returns up to [`SNIPPET_CONTEXT`] characters on each side of the first span in the
/// title or the text, or the start of the text when no span is in either.
///
/// A span is applied only to the field it names; its ends are clamped to the field
/// and moved down to character boundaries, so no span, however wrong, can panic.
pub fn snippet(mention: &Mention, spans: &[Span]) -> String {
    let located = spans.iter().find_map(|span| Some((mention.field(&span.field)?, span.start, span.end)));
    let (text, start, end) = located.unwrap_or((mention.text.as_str(), 0, 0));
    let start = floor_char_boundary(text, start);
    let end = floor_char_boundary(text, end.max(start));
    let before: usize = text[..start].chars().rev().take(SNIPPET_CONTEXT).map(char::len_utf8).sum();
    let after: usize = text[end..].chars().take(SNIPPET_CONTEXT).map(char::len_utf8).sum();
    let (from, to) = (start - before, end + after);
    let mut snippet = String::new();
    if from > 0 {
        snippet.push('…');
    }
    snippet.push_str(text[from..to].trim());
    if to < text.len() {
        snippet.push('…');
    }
    snippet
}

/// Returns the largest character boundary of `text` at or below `index` (clamped to
/// its length).
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use cull_model::TicketKind;
    use proptest::prelude::*;

    use super::*;

    /// The poison mention that crash-looped the matcher: the author span's byte
    /// offsets were applied to the text, inside an 'é'.
    #[test]
    fn regression_an_author_span_is_not_applied_to_the_text() {
        let m = Mention::new("m1", "ééééé café");
        assert_eq!(snippet(&m, &[Span { field: "author".into(), start: 0, end: 3 }]), "ééééé café");
    }

    #[test]
    fn a_snippet_keeps_context_around_the_first_span() {
        let m = Mention::new("m1", format!("{} slack {}", "x".repeat(200), "y".repeat(200)));
        let span = Span { field: "text".into(), start: 201, end: 206 };
        let made = snippet(&m, &[span]);
        assert!(made.starts_with('…') && made.ends_with('…') && made.contains(" slack "), "{made}");
        assert_eq!(made.chars().count(), 80 + 5 + 80 + 2);
    }

    #[test]
    fn a_title_span_is_applied_to_the_title() {
        let mut m = Mention::new("m", "body text");
        m.title = Some("Ünïcödé Slack news".into());
        let span =
            Span { field: "title".into(), start: "Ünïcödé ".len(), end: "Ünïcödé Slack".len() };
        assert_eq!(
            snippet(&m, &[Span { field: "url".into(), start: 1, end: 2 }, span]),
            "Ünïcödé Slack news"
        );
    }

    #[test]
    fn the_record_is_keyed_by_ticket_id_and_headed_with_queue_priority_and_kind() {
        let ticket: Ticket = serde_json::from_value(serde_json::json!({
            "schema": "cull.ticket/v1", "ticket_id": "t-1", "revision": 1, "created_at": "x",
            "queue": "care", "priority": "P2", "priority_score": 40, "sla_due_at": "x",
            "rule": {"id": "r", "name": "r", "version": "v"},
            "mention": {"schema": "cull.mention/v1", "id": "m", "text": "t"},
            "spans": [], "snippet": "t"
        }))
        .expect("a ticket written before triage still reads");
        assert_eq!((ticket.kind, ticket.mention_count), (TicketKind::Ticket, 1));
        assert_eq!(key(&ticket), b"t-1");
        assert_eq!(
            headers(&ticket),
            [
                ("cull.queue".to_string(), b"care".to_vec()),
                ("cull.priority".to_string(), b"P2".to_vec()),
                ("cull.kind".to_string(), b"ticket".to_vec())
            ]
        );
        let acme = Ticket { client: Some("acme".into()), ..ticket };
        assert_eq!(headers(&acme).last(), Some(&("cull.client".to_string(), b"acme".to_vec())));
    }

    proptest! {
        /// Spans from a topic are untrusted: whatever their field and offsets, the
        /// snippet is built without a panic and is made of the field's own text.
        #[test]
        fn any_span_on_any_text_makes_a_snippet(
            text in "\\PC{0,40}",
            title in proptest::option::of("\\PC{0,40}"),
            field in prop_oneof![Just("text".to_string()), Just("title".to_string()), Just("author".to_string()), "\\PC{0,5}"],
            start in 0usize..200,
            end in 0usize..200,
        ) {
            let mut m = Mention::new("m", text.clone());
            m.title = title.clone();
            let made = snippet(&m, &[Span { field: field.clone().into(), start, end }]);
            let core = made.trim_matches('…');
            let source = if field == "title" { title.clone().unwrap_or_else(|| text.clone()) } else { text.clone() };
            prop_assert!(source.contains(core) || text.contains(core), "{made:?} from {source:?}");
        }
    }
}
