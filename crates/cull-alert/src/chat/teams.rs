//! Microsoft Teams messages: one Adaptive Card 1.4 as the message's one attachment,
//! the shape both a classic incoming webhook and a Power Automate workflow ("post
//! to a channel when a webhook request is received") take. Teams refuses a message
//! over about 28 KB, so the snippet is cut until the whole payload fits.

use cull_model::Ticket;
use serde_json::{json, Value};

use super::{facts, heading, snippet, Markup};

/// The most bytes of a payload: under Teams' 28 KB, with room for what Teams wraps
/// around it.
pub const MAX_PAYLOAD: usize = 26_000;
/// The content type of an Adaptive Card attachment.
pub const CARD: &str = "application/vnd.microsoft.card.adaptive";

/// The longest heading or fact.
const MAX_LINE: usize = 300;
/// The longest snippet before the payload limit cuts it further.
const MAX_SNIPPET: usize = 20_000;
/// The longest link of an action: longer ones are left out, so that the links
/// cannot push the payload over its limit.
const MAX_LINK: usize = 2048;
/// The longest link a roll-up carries, so that ten fit under the payload limit.
const MAX_NAMED_LINK: usize = 1000;
/// The longest title of an alert a roll-up names.
const NAMED_TITLE: usize = 100;

/// Returns the message of one ticket.
pub(super) fn alert(ticket: &Ticket, links: &[(&'static str, reqwest::Url)]) -> Value {
    let facts = facts(ticket);
    let facts: Vec<Value> = facts
        .iter()
        .map(|(title, value)| json!({"title": title, "value": Markup::Markdown.text(value, MAX_LINE)}))
        .collect();
    let actions: Vec<Value> = links
        .iter()
        .filter(|(_, url)| url.as_str().len() <= MAX_LINK)
        .map(|(label, url)| json!({"type": "Action.OpenUrl", "title": label, "url": url.as_str()}))
        .collect();
    let heading = Markup::Markdown.text(&heading(ticket), MAX_LINE);
    let mut budget = MAX_SNIPPET;
    loop {
        let snippet = snippet(ticket, Markup::Markdown, budget);
        let body = vec![
            json!({"type": "TextBlock", "text": heading, "weight": "Bolder", "size": "Medium", "wrap": true}),
            json!({"type": "TextBlock", "text": snippet, "wrap": true}),
            json!({"type": "FactSet", "facts": facts}),
        ];
        let message = message(body, &actions);
        let size = serde_json::to_vec(&message).expect("a message always serializes").len();
        // A UTF-16 unit of the snippet is at least one byte of the payload, so
        // cutting the excess in units makes it fit within a few rounds.
        match size.checked_sub(MAX_PAYLOAD) {
            Some(excess) if budget > 0 => budget = budget.saturating_sub(excess.max(1)),
            _ => return message,
        }
    }
}

/// Returns the roll-up of `held` alerts, naming the most urgent with their links.
pub(super) fn roll_up(held: usize, named: &[(&Ticket, Option<reqwest::Url>)]) -> Value {
    let more = held.saturating_sub(named.len());
    let summary = if more > 0 {
        format!("{held} alerts over this channel's cap of messages a minute were held; the most urgent, and {more} more:")
    } else {
        format!("{held} alerts over this channel's cap of messages a minute were held:")
    };
    let mut body = vec![
        json!({"type": "TextBlock", "text": format!("{held} alerts held by the rate cap"), "weight": "Bolder", "size": "Medium", "wrap": true}),
        json!({"type": "TextBlock", "text": summary, "wrap": true}),
    ];
    for (ticket, url) in named {
        let title = Markup::Markdown.text(super::title(ticket), NAMED_TITLE);
        let name = match url {
            // A `)` in the URL would end the markdown link early.
            Some(url) if url.as_str().len() <= MAX_NAMED_LINK => {
                format!("[{title}]({})", url.as_str().replace(')', "%29"))
            }
            _ => title,
        };
        let queue = Markup::Markdown.text(&ticket.queue, NAMED_TITLE);
        body.push(json!({"type": "TextBlock", "text": format!("**{}** {name} · {queue}", ticket.priority.as_str()), "wrap": true}));
    }
    message(body, &[])
}

/// Returns the message carrying one card of `body` and `actions`.
fn message(body: Vec<Value>, actions: &[Value]) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": CARD,
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": actions,
            },
        }],
    })
}
