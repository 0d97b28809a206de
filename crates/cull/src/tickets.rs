//! Turning true matches into contact-center tickets.
//!
//! A ticket must be one per real issue: a story syndicated under one URL, or an
//! author posting the same complaint five times in an hour, is one ticket that gets
//! new revisions, not five tickets. The ticket id is derived from that subject (the
//! URL, else the author, else the mention) and from the dedupe window the mention's own
//! time falls in, so it is the same after a restart or a replay: under at-least-once
//! delivery a consumer sees duplicates only with identical ids. Revision numbers count
//! the mentions merged since this process started.

use std::collections::HashMap;

use cull_match::RuleSet;
use cull_model::{Mention, Span, Ticket, TicketRule, Verdict, TICKET_SCHEMA};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::config::SlaMinutes;

/// Builds tickets and remembers, within the dedupe window, how many revisions each has.
#[derive(Debug)]
pub struct Ticketer {
    window_secs: i64,
    sla: SlaMinutes,
    revisions: HashMap<String, (u32, i64)>,
}

/// Characters of context kept on each side of the first highlighted span.
const SNIPPET_CONTEXT: usize = 80;

impl Ticketer {
    /// Returns a ticketer merging repeats within `window_secs` (0: never merge).
    pub fn new(window_secs: u64, sla: SlaMinutes) -> Ticketer {
        Ticketer {
            window_secs: i64::try_from(window_secs).unwrap_or(i64::MAX),
            sla,
            revisions: HashMap::new(),
        }
    }

    /// Returns the tickets for the rules that matched `mention`, at time `now`.
    pub fn tickets(
        &mut self,
        mention: &Mention,
        verdict: &Verdict,
        rules: &RuleSet,
        now: OffsetDateTime,
    ) -> Vec<Ticket> {
        let event_time = [&mention.published_at, &mention.fetched_at]
            .into_iter()
            .flatten()
            .find_map(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .unwrap_or(now);
        let subject = self.subject(mention, event_time);
        self.forget_older_than(now.unix_timestamp());
        let mut tickets = Vec::with_capacity(verdict.matched.len());
        for matched in &verdict.matched {
            let Some(rule) = rules.rules().iter().find(|r| r.rule.id == matched.rule_id) else { continue };
            let ticket_id = cull_model::ticket_id(&subject, &rule.rule.id);
            let revision = self.revisions.entry(ticket_id.clone()).or_insert((0, now.unix_timestamp()));
            revision.0 += 1;
            revision.1 = now.unix_timestamp();
            let priority = rule.rule.priority;
            let due = now + Duration::minutes(i64::from(self.sla.for_priority(priority)));
            tickets.push(Ticket {
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
                snippet: snippet(mention, matched.spans.first()),
            });
        }
        tickets
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
        if self.revisions.len() > 10_000 {
            self.revisions.retain(|_, (_, seen)| *seen >= horizon);
        }
    }
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_else(|_| time.unix_timestamp().to_string())
}

/// Returns up to [`SNIPPET_CONTEXT`] characters on each side of `span`, or the start of
/// the text when there is no span.
fn snippet(mention: &Mention, span: Option<&Span>) -> String {
    let (text, start, end) = match span {
        Some(span) if span.field == "title" => (mention.title.as_deref().unwrap_or(""), span.start, span.end),
        Some(span) => (mention.text.as_str(), span.start, span.end),
        None => (mention.text.as_str(), 0, 0),
    };
    let start = start.min(text.len());
    let end = end.clamp(start, text.len());
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn rules() -> RuleSet {
        let toml = "[[rule]]\nid = 'slack'\nquery = 'slack'\npriority = 'P1'\nqueue = 'care'\n";
        let loaded = cull_rules::load_files([(Path::new("r.toml"), toml.as_bytes())]);
        RuleSet::new(loaded.rules).expect("rule set")
    }

    fn mention(id: &str, url: Option<&str>, author: Option<&str>, published: &str) -> Mention {
        let mut m = Mention::new(id, "we moved the whole team to slack today");
        m.url = url.map(str::to_string);
        m.author = author.map(str::to_string);
        m.published_at = Some(published.to_string());
        m
    }

    fn sla() -> SlaMinutes {
        SlaMinutes { p1: 15, p2: 60, p3: 240, p4: 1440 }
    }

    #[test]
    fn repeats_of_a_url_or_author_within_the_window_update_one_ticket() {
        let rules = rules();
        let now = OffsetDateTime::parse("2026-11-25T10:00:00Z", &Rfc3339).unwrap();
        let mut ticketer = Ticketer::new(3600, sla());
        let mut ticket = |m: &Mention| {
            let verdict = rules.verdict(m);
            ticketer.tickets(m, &verdict, &rules, now).remove(0)
        };
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
        let rules = rules();
        let m = mention("m1", Some("https://a.example/x"), None, "2026-11-25T10:00:05Z");
        let now = OffsetDateTime::now_utc();
        let verdict = rules.verdict(&m);
        let before = Ticketer::new(3600, sla()).tickets(&m, &verdict, &rules, now).remove(0);
        let after =
            Ticketer::new(3600, sla()).tickets(&m, &verdict, &rules, now + Duration::hours(5)).remove(0);
        assert_eq!(before.ticket_id, after.ticket_id);
    }

    #[test]
    fn tickets_carry_queue_priority_sla_and_a_snippet() {
        let rules = rules();
        let now = OffsetDateTime::parse("2026-11-25T10:00:00Z", &Rfc3339).unwrap();
        let mut m = mention("m1", None, None, "not a time");
        m.text = format!("{} slack {}", "x".repeat(200), "y".repeat(200));
        let verdict = rules.verdict(&m);
        let ticket = Ticketer::new(0, sla()).tickets(&m, &verdict, &rules, now).remove(0);
        assert_eq!(
            (ticket.queue.as_str(), ticket.priority, ticket.priority_score),
            ("care", cull_model::Priority::P1, 90)
        );
        assert_eq!(ticket.sla_due_at, "2026-11-25T10:15:00Z");
        assert_eq!(ticket.schema, "cull.ticket/v1");
        assert!(
            ticket.snippet.starts_with('…')
                && ticket.snippet.ends_with('…')
                && ticket.snippet.contains(" slack ")
        );
        assert_eq!(ticket.snippet.chars().count(), 80 + 5 + 80 + 2);
    }
}
