//! Tickets: what a true match becomes for a contact center.
//!
//! A contact center merges social tickets with phone, email and chat in one queue, so
//! a ticket must be one per real issue, carry its deadline, and keep the same id
//! however often it is delivered:
//!
//! * **One ticket per issue.** A story syndicated under one URL, or an author posting
//!   the same complaint five times in an hour, is one ticket that gets new revisions.
//!   The id is derived from that subject (the URL, else the author, else the mention)
//!   and from the dedupe window the mention's own time falls in, so it is the same
//!   after a restart or a replay: under at-least-once delivery a consumer sees
//!   duplicates only with identical ids ([`cull_model::ticket_id`]).
//! * **A deadline.** `sla_due_at` is the creation time plus the minutes configured
//!   for the ticket's priority ([`SlaMinutes`]).
//! * **What to read.** The spans where the rule matched, and a snippet around the
//!   first one in the title or the text. Spans are untrusted input here (the verdict
//!   came over a topic), so the snippet applies a span only to its own field and only
//!   at character boundaries: a span of the author, or one a hostile producer made
//!   up, can never slice text it does not belong to.
//! * **The record contract** ([`key`], [`headers`]): the Kafka key is the ticket id, so
//!   the revisions of one ticket stay in one partition, in order; the headers carry
//!   the queue and the priority, so a router need not parse the JSON.
//!
//! The triage work that makes priorities mean something (sentiment, reach, velocity,
//! capacity) grows here; the crate is sync and knows no bus, so the stage that runs it
//! (in `cull-runtime`) is the only part that waits on I/O.
#![deny(missing_docs)]

pub mod spike;
use std::collections::HashMap;

use cull_model::config::{is_label, Checks, Invalid};
use cull_model::{MatchedRule, Mention, Priority, Span, Ticket, TicketRule, TICKET_SCHEMA};
use cull_rules::CompiledRule;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// The header naming a ticket's queue.
pub const QUEUE_HEADER: &str = "cull.queue";
/// The header naming a ticket's priority (`P1`..`P4`).
pub const PRIORITY_HEADER: &str = "cull.priority";

/// Characters of context kept on each side of the first highlighted span.
const SNIPPET_CONTEXT: usize = 80;

/// Revision counts kept before old ones are forgotten.
const REMEMBERED_TICKETS: usize = 10_000;

/// The `[tickets]` section of a pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TicketConfig {
    /// Whether this process turns verdicts into tickets.
    pub enabled: bool,
    /// The consumer group of the ticketing stage on the verdicts topic.
    pub group_id: String,
    /// Repeated mentions of one URL, or of one author on one rule, within this window
    /// update one ticket instead of opening new ones; 0 turns deduplication off.
    pub dedupe_window_secs: u64,
    /// Minutes from ticket creation to its SLA deadline, per priority.
    pub sla_minutes: SlaMinutes,
}

impl Default for TicketConfig {
    fn default() -> TicketConfig {
        TicketConfig {
            enabled: true,
            group_id: "cull-tickets".to_string(),
            dedupe_window_secs: 3600,
            sla_minutes: SlaMinutes::default(),
        }
    }
}

impl TicketConfig {
    /// Returns every invalid setting, keys relative to `[tickets]`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        checks.check(is_label(&self.group_id), "group_id", || "use 1 to 64 of a-z A-Z 0-9 . _ -".into());
        let sla = &self.sla_minutes;
        for (key, minutes) in [("P1", sla.p1), ("P2", sla.p2), ("P3", sla.p3), ("P4", sla.p4)] {
            checks.positive(&format!("sla_minutes.{key}"), u64::from(minutes));
        }
        checks.finish()
    }
}

/// Minutes to the SLA deadline per priority.
///
/// A struct rather than a map so that an unknown priority is an error; the lowercase
/// aliases let environment overrides (whose segments are lowercased) name the keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaMinutes {
    /// For P1 tickets.
    #[serde(rename = "P1", alias = "p1")]
    pub p1: u32,
    /// For P2 tickets.
    #[serde(rename = "P2", alias = "p2")]
    pub p2: u32,
    /// For P3 tickets.
    #[serde(rename = "P3", alias = "p3")]
    pub p3: u32,
    /// For P4 tickets.
    #[serde(rename = "P4", alias = "p4")]
    pub p4: u32,
}

impl Default for SlaMinutes {
    fn default() -> SlaMinutes {
        SlaMinutes { p1: 15, p2: 60, p3: 240, p4: 1440 }
    }
}

impl SlaMinutes {
    /// Returns the minutes to the deadline of a ticket of `priority`.
    pub fn for_priority(&self, priority: Priority) -> u32 {
        match priority {
            Priority::P1 => self.p1,
            Priority::P2 => self.p2,
            Priority::P3 => self.p3,
            Priority::P4 => self.p4,
        }
    }
}

/// Builds tickets and remembers, within the dedupe window, how many revisions each has.
#[derive(Debug)]
pub struct Ticketer {
    window_secs: i64,
    sla: SlaMinutes,
    revisions: HashMap<String, (u32, i64)>,
}

impl Ticketer {
    /// Returns a ticketer with the dedupe window and deadlines of `config`.
    pub fn new(config: &TicketConfig) -> Ticketer {
        Ticketer {
            window_secs: i64::try_from(config.dedupe_window_secs).unwrap_or(i64::MAX),
            sla: config.sla_minutes.clone(),
            revisions: HashMap::new(),
        }
    }

    /// Returns the ticket for `rule`, which matched `mention` as `matched` says, at
    /// time `now`.
    pub fn ticket(
        &mut self,
        mention: &Mention,
        matched: &MatchedRule,
        rule: &CompiledRule,
        now: OffsetDateTime,
    ) -> Ticket {
        let event_time = [&mention.published_at, &mention.fetched_at]
            .into_iter()
            .flatten()
            .find_map(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .unwrap_or(now);
        let subject = self.subject(mention, event_time);
        self.forget_older_than(now.unix_timestamp());
        let ticket_id = cull_model::ticket_id(&subject, &rule.rule.id);
        let revision = self.revisions.entry(ticket_id.clone()).or_insert((0, now.unix_timestamp()));
        revision.0 = revision.0.saturating_add(1);
        revision.1 = now.unix_timestamp();
        let priority = rule.rule.priority;
        let due = now + Duration::minutes(i64::from(self.sla.for_priority(priority)));
        Ticket {
            schema: TICKET_SCHEMA.to_string(),
            ticket_id,
            revision: revision.0,
            created_at: rfc3339(now),
            queue: rule.rule.queue.clone(),
            priority,
            priority_score: priority.base_score(),
            sla_due_at: rfc3339(due),
            client: rule.rule.client.clone().or_else(|| mention.client.clone()),
            rule: TicketRule {
                id: rule.rule.id.clone(),
                name: rule.rule.name.clone(),
                version: rule.version.clone(),
            },
            mention: mention.clone(),
            spans: matched.spans.clone(),
            snippet: snippet(mention, &matched.spans),
        }
    }

    /// Returns what makes repeated mentions one ticket: the URL, else the author, else
    /// the mention itself, within the window the mention's time falls in.
    fn subject(&self, mention: &Mention, event_time: OffsetDateTime) -> String {
        if self.window_secs == 0 {
            return format!("mention:{}", mention.id);
        }
        let window = event_time.unix_timestamp().div_euclid(self.window_secs);
        match (&mention.url, &mention.author) {
            (Some(url), _) if !url.is_empty() => format!("url:{url}@{window}"),
            (_, Some(author)) if !author.is_empty() => format!("author:{author}@{window}"),
            _ => format!("mention:{}", mention.id),
        }
    }

    /// Drops revision counts not touched for two windows, so memory stays bounded.
    fn forget_older_than(&mut self, now: i64) {
        let horizon = now.saturating_sub(self.window_secs.saturating_mul(2));
        if self.revisions.len() > REMEMBERED_TICKETS {
            self.revisions.retain(|_, (_, seen)| *seen >= horizon);
        }
    }
}

/// Returns the Kafka key of a ticket's record: its id.
pub fn key(ticket: &Ticket) -> Vec<u8> {
    ticket.ticket_id.as_bytes().to_vec()
}

/// Returns the headers of a ticket's record: its queue and its priority.
pub fn headers(ticket: &Ticket) -> Vec<(String, Vec<u8>)> {
    vec![
        (QUEUE_HEADER.to_string(), ticket.queue.as_bytes().to_vec()),
        (PRIORITY_HEADER.to_string(), format!("{:?}", ticket.priority).into_bytes()),
    ]
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_else(|_| time.unix_timestamp().to_string())
}

/// Returns up to [`SNIPPET_CONTEXT`] characters on each side of the first span in the
/// title or the text, or the start of the text when no span is in either.
///
/// A span is applied only to the field it names; its ends are clamped to the field
/// and moved down to character boundaries, so no span, however wrong, can panic.
pub fn snippet(mention: &Mention, spans: &[Span]) -> String {
    let located = spans.iter().find_map(|span| match span.field.as_str() {
        "title" => mention.title.as_deref().map(|title| (title, span.start, span.end)),
        "text" => Some((mention.text.as_str(), span.start, span.end)),
        _ => None,
    });
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
    use std::path::Path;

    use cull_match::RuleSet;
    use proptest::prelude::*;

    use super::*;

    fn rules(query: &str) -> RuleSet {
        let toml = format!("[[rule]]\nid = 'slack'\nquery = '{query}'\npriority = 'P1'\nqueue = 'care'\n");
        let loaded = cull_rules::load_files([(Path::new("r.toml"), toml.as_bytes())]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        RuleSet::new(loaded.rules).expect("rule set")
    }

    fn mention(id: &str, url: Option<&str>, author: Option<&str>, published: &str) -> Mention {
        let mut m = Mention::new(id, "we moved the whole team to slack today");
        m.url = url.map(str::to_string);
        m.author = author.map(str::to_string);
        m.published_at = Some(published.to_string());
        m
    }

    fn config(window: u64) -> TicketConfig {
        TicketConfig {
            dedupe_window_secs: window,
            sla_minutes: SlaMinutes { p1: 15, p2: 60, p3: 240, p4: 1440 },
            ..TicketConfig::default()
        }
    }

    /// Returns the tickets of every rule that matched `m`, as the ticketing stage
    /// makes them.
    fn tickets(ticketer: &mut Ticketer, rules: &RuleSet, m: &Mention, now: OffsetDateTime) -> Vec<Ticket> {
        let verdict = rules.verdict(m);
        verdict
            .matched
            .iter()
            .map(|matched| {
                let rule = rules.rules().iter().find(|r| r.rule.id == matched.rule_id).unwrap();
                ticketer.ticket(m, matched, rule, now)
            })
            .collect()
    }

    #[test]
    fn repeats_of_a_url_or_author_within_the_window_update_one_ticket() {
        let rules = rules("slack");
        let now = OffsetDateTime::parse("2026-11-25T10:00:00Z", &Rfc3339).unwrap();
        let mut ticketer = Ticketer::new(&config(3600));
        let mut ticket = |m: &Mention| tickets(&mut ticketer, &rules, m, now).remove(0);
        let first = ticket(&mention("m1", Some("https://a.example/x"), None, "2026-11-25T10:00:05Z"));
        let repeat = ticket(&mention("m2", Some("https://a.example/x"), None, "2026-11-25T10:20:00Z"));
        let other = ticket(&mention("m3", Some("https://b.example/y"), None, "2026-11-25T10:20:00Z"));
        let later = ticket(&mention("m4", Some("https://a.example/x"), None, "2026-11-25T12:20:00Z"));
        assert_eq!(first.ticket_id, repeat.ticket_id);
        assert_eq!((first.revision, repeat.revision), (1, 2));
        assert_ne!(other.ticket_id, first.ticket_id);
        assert_ne!(later.ticket_id, first.ticket_id, "outside the window, a new ticket");
        let by_author = ticket(&mention("m5", None, Some("@angry"), "2026-11-25T10:01:00Z"));
        let again = ticket(&mention("m6", None, Some("@angry"), "2026-11-25T10:02:00Z"));
        assert_eq!((by_author.ticket_id == again.ticket_id, again.revision), (true, 2));
        let alone = ticket(&mention("m7", None, None, "2026-11-25T10:02:00Z"));
        assert_eq!(alone.ticket_id, cull_model::ticket_id("mention:m7", "slack"));
    }

    #[test]
    fn ticket_ids_survive_a_restart() {
        let rules = rules("slack");
        let m = mention("m1", Some("https://a.example/x"), None, "2026-11-25T10:00:05Z");
        let now = OffsetDateTime::now_utc();
        let before = tickets(&mut Ticketer::new(&config(3600)), &rules, &m, now).remove(0);
        let after =
            tickets(&mut Ticketer::new(&config(3600)), &rules, &m, now + Duration::hours(5)).remove(0);
        assert_eq!(before.ticket_id, after.ticket_id);
    }

    #[test]
    fn tickets_carry_queue_priority_sla_headers_and_a_snippet() {
        let rules = rules("slack");
        let now = OffsetDateTime::parse("2026-11-25T10:00:00Z", &Rfc3339).unwrap();
        let mut m = mention("m1", None, None, "not a time");
        m.text = format!("{} slack {}", "x".repeat(200), "y".repeat(200));
        let ticket = tickets(&mut Ticketer::new(&config(0)), &rules, &m, now).remove(0);
        assert_eq!(
            (ticket.queue.as_str(), ticket.priority, ticket.priority_score),
            ("care", Priority::P1, 90)
        );
        assert_eq!(ticket.sla_due_at, "2026-11-25T10:15:00Z");
        assert_eq!(ticket.schema, "cull.ticket/v1");
        assert!(
            ticket.snippet.starts_with('…')
                && ticket.snippet.ends_with('…')
                && ticket.snippet.contains(" slack ")
        );
        assert_eq!(ticket.snippet.chars().count(), 80 + 5 + 80 + 2);
        assert_eq!(key(&ticket), ticket.ticket_id.as_bytes());
        assert_eq!(
            headers(&ticket),
            [("cull.queue".to_string(), b"care".to_vec()), ("cull.priority".to_string(), b"P1".to_vec())]
        );
    }

    /// The poison mention that crash-looped the matcher: the author span's byte
    /// offsets were applied to the text, inside an 'é'.
    #[test]
    fn regression_an_author_span_is_not_applied_to_the_text() {
        let rules = rules("author:bob");
        let mut m = Mention::new("m1", "ééééé café");
        m.author = Some("bob".into());
        let ticket = tickets(&mut Ticketer::new(&config(0)), &rules, &m, OffsetDateTime::now_utc()).remove(0);
        assert_eq!(ticket.spans, [Span { field: "author".into(), start: 0, end: 3 }]);
        assert_eq!(ticket.snippet, "ééééé café");
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
            let made = snippet(&m, &[Span { field: field.clone(), start, end }]);
            let core = made.trim_matches('…');
            let source = if field == "title" { title.clone().unwrap_or_else(|| text.clone()) } else { text.clone() };
            prop_assert!(source.contains(core) || text.contains(core), "{made:?} from {source:?}");
        }
    }
}
