//! Slack incoming-webhook messages in Block Kit, within Slack's published limits
//! (<https://api.slack.com/reference/block-kit/blocks>): a message over one is
//! refused whole (`invalid_blocks`), so every text is cut to fit rather than sent.

use cull_model::Ticket;
use serde_json::{json, Value};

use super::{facts, heading, snippet, Markup};

/// The most blocks a message has.
pub const MAX_BLOCKS: usize = 50;
/// The longest header text.
pub const MAX_HEADER: usize = 150;
/// The longest section text.
pub const MAX_SECTION: usize = 3000;
/// The most fields a section has.
pub const MAX_FIELDS: usize = 10;
/// The longest field text.
pub const MAX_FIELD: usize = 2000;
/// The longest button text.
pub const MAX_BUTTON: usize = 75;
/// The longest button URL.
pub const MAX_URL: usize = 3000;
/// The longest top-level `text`, the notification's fallback.
pub const MAX_TEXT: usize = 40_000;

/// The longest title of an alert a roll-up names, so that ten fit in one section.
const NAMED_TITLE: usize = 100;

/// Returns the message of one ticket.
pub(super) fn alert(ticket: &Ticket, links: &[(&'static str, reqwest::Url)]) -> Value {
    let heading = heading(ticket);
    let snippet = snippet(ticket, Markup::Slack, MAX_SECTION);
    let facts = facts(ticket);
    let fields: Vec<Value> = facts
        .iter()
        .take(MAX_FIELDS)
        .map(|(label, value)| {
            let value = Markup::Slack.text(value, MAX_FIELD - label.len() - 3);
            json!({"type": "mrkdwn", "text": format!("*{label}*\n{value}")})
        })
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": Markup::Plain.text(&heading, MAX_HEADER)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": nonempty(snippet)}}),
        json!({"type": "section", "fields": fields}),
    ];
    let buttons: Vec<Value> = links
        .iter()
        .filter(|(_, url)| url.as_str().len() <= MAX_URL)
        .enumerate()
        .map(|(i, (label, url))| {
            json!({
                "type": "button",
                "action_id": format!("link-{i}"),
                "text": {"type": "plain_text", "text": Markup::Plain.text(label, MAX_BUTTON)},
                "url": url.as_str(),
            })
        })
        .collect();
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    blocks.truncate(MAX_BLOCKS);
    let fallback = format!("{heading}: {}", ticket.snippet);
    json!({"text": Markup::Slack.text(&fallback, MAX_TEXT), "blocks": blocks, "unfurl_links": false})
}

/// Returns the roll-up of `held` alerts, naming the most urgent with their links.
pub(super) fn roll_up(held: usize, named: &[(&Ticket, Option<reqwest::Url>)]) -> Value {
    let heading = format!("{held} alerts held by the rate cap");
    let mut list = String::new();
    for (ticket, url) in named {
        let title = Markup::Slack.text(super::title(ticket), NAMED_TITLE);
        let queue = Markup::Slack.text(&ticket.queue, NAMED_TITLE);
        let name = match url {
            // A `|` in the URL would end it early: Slack splits the link there.
            Some(url) if url.as_str().len() <= MAX_URL => {
                format!("<{}|{title}>", url.as_str().replace('|', "%7C"))
            }
            _ => title,
        };
        let line = format!("• *{}* {name} · {queue}\n", ticket.priority.as_str());
        if list.encode_utf16().count() + line.encode_utf16().count() > MAX_SECTION {
            break;
        }
        list.push_str(&line);
    }
    let more = held.saturating_sub(named.len());
    let summary = if more > 0 {
        format!("{held} alerts over this channel's cap of messages a minute were held; the most urgent, and {more} more:")
    } else {
        format!("{held} alerts over this channel's cap of messages a minute were held:")
    };
    json!({
        "text": heading,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": Markup::Plain.text(&heading, MAX_HEADER)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
            {"type": "section", "text": {"type": "mrkdwn", "text": nonempty(list)}},
        ],
        "unfurl_links": false,
    })
}

/// Returns `text`, or a placeholder: Slack refuses an empty section.
fn nonempty(text: String) -> String {
    if text.trim().is_empty() {
        "_(no text)_".to_string()
    } else {
        text
    }
}
