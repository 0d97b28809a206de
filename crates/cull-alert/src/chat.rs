//! Slack and Microsoft Teams: one chat message per ticket, under a rate cap per
//! destination, with one roll-up message for what exceeded it.
//!
//! The cap is a fixed window: the first message after a window is over opens a new
//! one of a minute, in which at most `max_per_minute` messages go (the roll-up
//! included). A ticket over the cap is [`Outcome::Held`] in memory only; the sink is
//! not settled while it holds any, so the runtime commits no offset past it and a
//! crash replays it. When the window is over, the next [`ChatSink::tick`] or
//! [`ChatSink::deliver`] sends ONE roll-up naming how many were held and the most
//! urgent of them. A roll-up that fails for good is logged (its tries are counted by
//! the observer) and stays held: it is tried again when the next window opens, a
//! minute later, so nothing is lost and a dead endpoint is not hammered every tick.

mod slack;
mod teams;

use std::ops::Range;

use cull_model::Ticket;
use time::OffsetDateTime;

use crate::config::{AlertConfig, AlertKind};
use crate::http::{headers, Poster};
use crate::webhook::endpoint;
use crate::{AlertError, Context, Env, Outcome, Stopped};

/// How many held alerts a roll-up names, most urgent first.
pub const ROLL_UP_NAMED: usize = 10;

/// The length of a rate window.
const WINDOW: time::Duration = time::Duration::MINUTE;

/// Posts Block Kit messages (Slack) or Adaptive Cards (Teams) to one destination.
#[derive(Debug)]
pub struct ChatSink {
    format: Format,
    poster: Poster,
    context: Context,
    per_minute: u32,
    window: Option<Window>,
    held: Vec<Ticket>,
}

/// The message format of a destination.
#[derive(Debug, Clone)]
struct Format {
    kind: AlertKind,
    console_url: Option<reqwest::Url>,
}

/// The rate window open now.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: OffsetDateTime,
    sent: u32,
}

impl ChatSink {
    /// Opens the chat sink of entry `index`.
    pub fn open(
        index: usize,
        config: &AlertConfig,
        env: Env<'_>,
        context: Context,
    ) -> Result<ChatSink, AlertError> {
        let url = endpoint(index, config, env)?;
        let console_url = match &config.console_url {
            Some(console) => Some(reqwest::Url::parse(console).map_err(|error| AlertError::Invalid {
                index,
                key: "console_url".to_string(),
                message: format!("not a URL: {error}"),
            })?),
            None => None,
        };
        Ok(ChatSink {
            format: Format { kind: config.kind, console_url },
            poster: Poster::new(url, config.delivery(), context.clone()),
            context,
            per_minute: config.per_minute(),
            window: None,
            held: Vec::new(),
        })
    }

    /// Delivers `tickets` one after the other (a person reads them in order), or
    /// holds those over the rate cap for the roll-up; a roll-up that is due goes first.
    pub async fn deliver(
        &mut self,
        tickets: &[&Ticket],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, Stopped> {
        self.roll_up_if_due(now).await?;
        let mut outcomes = Vec::with_capacity(tickets.len());
        for ticket in tickets {
            if !self.take_slot(now) {
                self.held.push((*ticket).clone());
                outcomes.push(Outcome::Held);
                continue;
            }
            let body = serde_json::to_vec(&self.format.alert(ticket)).expect("a message always serializes");
            let outcome = match self.poster.post(&body, &|| headers(&[])).await? {
                Ok(_attempts) => {
                    self.context.observer.delivered(&self.context.sink, "alert");
                    Outcome::Delivered
                }
                Err(error) => Outcome::Failed(format!(
                    "{} alert {}: {error}",
                    self.format.kind.as_str(),
                    ticket.ticket_id
                )),
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Sends the roll-up of a minute that is over.
    pub async fn tick(&mut self, now: OffsetDateTime) -> Result<(), Stopped> {
        self.roll_up_if_due(now).await
    }

    /// Returns whether nothing is held for a roll-up.
    pub fn is_settled(&self) -> bool {
        self.held.is_empty()
    }

    /// Takes one message of the cap at `now`, opening a new window when the last is
    /// over; returns false when the window's messages are spent.
    fn take_slot(&mut self, now: OffsetDateTime) -> bool {
        let window = match self.window {
            Some(window) if now < window.start + WINDOW => window,
            _ => Window { start: now, sent: 0 },
        };
        let taken = window.sent < self.per_minute;
        self.window = Some(Window { sent: window.sent + u32::from(taken), ..window });
        taken
    }

    /// Sends the roll-up of what is held when its window is over.
    async fn roll_up_if_due(&mut self, now: OffsetDateTime) -> Result<(), Stopped> {
        if self.held.is_empty() || !self.take_slot(now) {
            return Ok(());
        }
        let held = self.held.len() as u64;
        let body = serde_json::to_vec(&self.format.roll_up(&self.held)).expect("a message always serializes");
        match self.poster.post(&body, &|| headers(&[])).await? {
            Ok(_attempts) => {
                self.held.clear();
                self.context.observer.rolled_up(&self.context.sink, held);
                self.context.observer.delivered(&self.context.sink, "roll-up");
            }
            Err(error) => {
                // The rest of this window is given up, so that the next try waits for
                // the next window rather than the next tick.
                self.window = self.window.map(|window| Window { sent: self.per_minute, ..window });
                tracing::error!(sink = %self.context.sink, held, %error, "the roll-up of alerts over the rate cap failed; they stay held and it is tried again when the next window opens");
            }
        }
        Ok(())
    }
}

impl Format {
    /// Returns the message of one ticket.
    fn alert(&self, ticket: &Ticket) -> serde_json::Value {
        match self.kind {
            AlertKind::Teams => teams::alert(ticket, &self.links(ticket)),
            _ => slack::alert(ticket, &self.links(ticket)),
        }
    }

    /// Returns the roll-up of `held`.
    fn roll_up(&self, held: &[Ticket]) -> serde_json::Value {
        let mut named: Vec<&Ticket> = held.iter().collect();
        named.sort_by_key(|t| (t.priority, std::cmp::Reverse(t.priority_score)));
        named.truncate(ROLL_UP_NAMED);
        let named: Vec<(&Ticket, Option<reqwest::Url>)> =
            named.into_iter().map(|t| (t, self.links(t).into_iter().last().map(|(_, url)| url))).collect();
        match self.kind {
            AlertKind::Teams => teams::roll_up(held.len(), &named),
            _ => slack::roll_up(held.len(), &named),
        }
    }

    /// Returns a ticket's links with their labels: the mention's own URL, and the
    /// mention in the console when the sink knows the console.
    fn links(&self, ticket: &Ticket) -> Vec<(&'static str, reqwest::Url)> {
        let mut links = Vec::new();
        if let Some(url) = ticket.mention.url.as_deref().and_then(|u| reqwest::Url::parse(u).ok()) {
            if matches!(url.scheme(), "http" | "https") {
                links.push(("Open the post", url));
            }
        }
        if let Some(mut console) = self.console_url.clone() {
            if let Ok(mut path) = console.path_segments_mut() {
                path.pop_if_empty().push("mentions").push(&ticket.mention.id);
            }
            links.push(("Open in cull", console));
        }
        links
    }
}

/// How a chat's text is marked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Markup {
    /// Plain text: nothing is escaped, nothing is bold.
    Plain,
    /// Slack mrkdwn: `&`, `<` and `>` escaped as Slack requires, `*bold*`.
    Slack,
    /// Adaptive Card markdown: its characters escaped with a backslash, `**bold**`.
    Markdown,
}

impl Markup {
    fn escape(self, c: char, out: &mut String) {
        match (self, c) {
            (Markup::Slack, '&') => out.push_str("&amp;"),
            (Markup::Slack, '<') => out.push_str("&lt;"),
            (Markup::Slack, '>') => out.push_str("&gt;"),
            (
                Markup::Markdown,
                '\\' | '*' | '_' | '[' | ']' | '(' | ')' | '`' | '~' | '#' | '>' | '<' | '-' | '+' | '!',
            ) => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }

    fn bold(self) -> &'static str {
        match self {
            Markup::Plain => "",
            Markup::Slack => "*",
            Markup::Markdown => "**",
        }
    }

    /// Returns `text` escaped, at most `max` long (in UTF-16 units, which is what the
    /// chats count, and never fewer than characters), cut with "…" on a character.
    fn text(self, text: &str, max: usize) -> String {
        self.highlighted(text, &[], max)
    }

    /// Returns `text` escaped with the byte ranges `spans` bold, at most `max` long as
    /// [`Markup::text`] counts; a span out of range or off a character boundary is
    /// clipped to the text and widened to whole characters, never a panic.
    fn highlighted(self, text: &str, spans: &[Range<usize>], max: usize) -> String {
        let pieces = pieces(text, spans);
        match self.render(&pieces, max) {
            Some(whole) => whole,
            None if max == 0 => String::new(),
            None => {
                let mut cut = self.render_within(&pieces, max - 1).0;
                cut.push('…');
                cut
            }
        }
    }

    /// Returns `pieces` rendered when all of them fit in `max`.
    fn render(self, pieces: &[(bool, &str)], max: usize) -> Option<String> {
        match self.render_within(pieces, max) {
            (whole, false) => Some(whole),
            (_, true) => None,
        }
    }

    /// Returns as much of `pieces` rendered as fits in `max`, a piece cut on a
    /// character (never inside an escape or between bold marks), and whether any was
    /// cut.
    fn render_within(self, pieces: &[(bool, &str)], max: usize) -> (String, bool) {
        let bold = self.bold();
        let marks = 2 * bold.encode_utf16().count();
        let mut out = String::new();
        let mut used = 0;
        for &(strong, piece) in pieces {
            let extra = if strong { marks } else { 0 };
            let mut rendered = String::new();
            let mut length = 0;
            let mut cut = false;
            for c in piece.chars() {
                let mut escaped = String::new();
                self.escape(c, &mut escaped);
                let units = escaped.encode_utf16().count();
                if used + extra + length + units > max {
                    cut = true;
                    break;
                }
                rendered.push_str(&escaped);
                length += units;
            }
            if !rendered.is_empty() {
                let mark = if strong { bold } else { "" };
                out.push_str(mark);
                out.push_str(&rendered);
                out.push_str(mark);
                used += extra + length;
            }
            if cut {
                return (out, true);
            }
        }
        (out, false)
    }
}

/// Splits `text` into plain and bold pieces by the byte ranges `spans`, repaired:
/// clipped to the text, widened to whole characters, merged when they touch; the
/// white space at a span's edges stays plain, as chat markup bolds only what its
/// marks touch.
fn pieces<'a>(text: &'a str, spans: &[Range<usize>]) -> Vec<(bool, &'a str)> {
    let mut ranges: Vec<Range<usize>> = spans
        .iter()
        .map(|span| {
            let mut start = span.start.min(text.len());
            let mut end = span.end.min(text.len());
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            while !text.is_char_boundary(end) {
                end += 1;
            }
            start..end
        })
        .collect();
    ranges.sort_by_key(|range| range.start);
    let mut merged: Vec<Range<usize>> = Vec::new();
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    let mut pieces = Vec::new();
    let mut at = 0;
    for range in merged {
        let span = &text[range.clone()];
        if span.trim().is_empty() {
            continue;
        }
        let core_start = range.start + (span.len() - span.trim_start().len());
        let core_end = range.start + span.trim_end().len();
        pieces.push((false, &text[at..core_start]));
        pieces.push((true, &text[core_start..core_end]));
        at = core_end;
    }
    pieces.push((false, &text[at..]));
    pieces.retain(|(_, piece)| !piece.is_empty());
    pieces
}

/// Returns the text of a ticket's `field` (`title` or `text`) with the byte ranges of
/// its spans on that field.
fn field<'a>(ticket: &'a Ticket, field: &str) -> (&'a str, Vec<Range<usize>>) {
    let text = match field {
        "title" => ticket.mention.title.as_deref().unwrap_or_default(),
        _ => ticket.mention.text.as_str(),
    };
    let spans =
        ticket.spans.iter().filter(|span| span.field == field).map(|span| span.start..span.end).collect();
    (text, spans)
}

/// Returns what a ticket is about in one line: its mention's title, else its rule.
fn title(ticket: &Ticket) -> &str {
    match ticket.mention.title.as_deref().map(str::trim) {
        Some(title) if !title.is_empty() => title,
        _ => &ticket.rule.name,
    }
}

/// Returns the heading of a ticket: priority, `Incident` when it is one, and title.
fn heading(ticket: &Ticket) -> String {
    match ticket.kind {
        cull_model::TicketKind::Incident => format!(
            "{} · Incident ({} mentions): {}",
            ticket.priority.as_str(),
            ticket.mention_count,
            title(ticket)
        ),
        _ => format!("{} · {}", ticket.priority.as_str(), title(ticket)),
    }
}

/// Returns the facts a chat alert lists for a ticket, label and value, in order.
fn facts(ticket: &Ticket) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("Rule", ticket.rule.name.clone()),
        ("Queue", ticket.queue.clone()),
        ("Priority", format!("{} · score {}", ticket.priority.as_str(), ticket.priority_score)),
        ("SLA due", ticket.sla_due_at.clone()),
        ("Posted", posted_by(ticket)),
    ];
    if ticket.kind == cull_model::TicketKind::Incident {
        facts.push(("Mentions", ticket.mention_count.to_string()));
    }
    facts
}

/// Returns where a mention was posted and by whom.
fn posted_by(ticket: &Ticket) -> String {
    let channel = ticket.mention.channel.map(|c| c.as_str().to_string());
    let parts: Vec<String> = [channel, ticket.mention.author.clone()].into_iter().flatten().collect();
    if parts.is_empty() {
        "unknown".to_string()
    } else {
        parts.join(" · ")
    }
}

/// Returns a ticket's snippet in `markup`, at most `max` long: its mention's text
/// (else the ticket's snippet) with the matched words bold, after the title when
/// words of the title matched, as the header that shows the title cannot be bold.
fn snippet(ticket: &Ticket, markup: Markup, max: usize) -> String {
    let (text, spans) = field(ticket, "text");
    let (text, spans) =
        if text.trim().is_empty() { (ticket.snippet.as_str(), Vec::new()) } else { (text, spans) };
    let (title, title_spans) = field(ticket, "title");
    if title_spans.is_empty() || title.trim().is_empty() {
        return markup.highlighted(text, &spans, max);
    }
    // The title takes at most a quarter, so that the text is still shown.
    let line = markup.highlighted(title, &title_spans, max / 4);
    let rest = max.saturating_sub(line.encode_utf16().count() + 2);
    format!("{line}\n\n{}", markup.highlighted(text, &spans, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the spans of one range.
    fn one(range: Range<usize>) -> Vec<Range<usize>> {
        vec![range]
    }

    #[test]
    fn spans_are_bold_and_bad_offsets_are_repaired_not_a_panic() {
        assert_eq!(Markup::Slack.highlighted("Slack is down", &one(0..5), 100), "*Slack* is down");
        assert_eq!(Markup::Markdown.highlighted("a-b c", &one(2..3), 100), "a\\-**b** c");
        assert_eq!(Markup::Slack.highlighted("x <y> & z", &one(2..5), 100), "x *&lt;y&gt;* &amp; z");
        // "é" is two bytes: offset 1 is inside it.
        assert_eq!(Markup::Slack.highlighted("é ok", &[1..2, 3..999, 50..60], 100), "*é* *ok*");
        assert_eq!(Markup::Slack.highlighted("a b c", &[0..2, 1..3], 100), "*a b* c");
        assert_eq!(Markup::Slack.highlighted("", &one(0..5), 100), "");
        assert_eq!(Markup::Slack.highlighted("  ", &one(0..2), 100), "  ");
    }

    #[test]
    fn text_is_cut_with_an_ellipsis_on_a_character_within_the_limit() {
        assert_eq!(Markup::Plain.text("abcdef", 4), "abc…");
        assert_eq!(Markup::Plain.text("abc", 3), "abc");
        // An emoji is two UTF-16 units: it does not fit beside "a" in 3 with the "…".
        assert_eq!(Markup::Plain.text("a😀b", 3), "a…");
        // An escape is not split.
        assert_eq!(Markup::Slack.text("a&b", 5), "a…");
        assert_eq!(Markup::Slack.highlighted("abc def", &one(4..7), 6), "abc …");
    }
}
