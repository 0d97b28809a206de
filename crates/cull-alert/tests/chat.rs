//! The Slack and Teams sinks against a local receiver: what they post keeps to the
//! chats' published limits for ordinary and hostile tickets, the rate cap holds what
//! exceeds it for one roll-up, and a refusal or a retry ends as it should.

mod receiver;

use std::sync::{Arc, Mutex};

use cull_alert::{AlertConfig, AlertSink, Context, NoObserver, Observer, Outcome, Stop};
use cull_model::Ticket;
use receiver::{Post, Receiver};
use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

/// Records what the sink reports.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Observer for Recorder {
    fn attempt(&self, _: &str, outcome: &'static str) {
        self.0.lock().unwrap().push(format!("attempt {outcome}"));
    }
    fn delivered(&self, _: &str, what: &'static str) {
        self.0.lock().unwrap().push(format!("delivered {what}"));
    }
    fn breaker(&self, _: &str, open: bool) {
        self.0.lock().unwrap().push(format!("breaker {open}"));
    }
    fn rolled_up(&self, _: &str, alerts: u64) {
        self.0.lock().unwrap().push(format!("rolled up {alerts}"));
    }
    fn pending(&self, _: &str, _: u64) {}
}

fn ticket(id: &str, priority: &str, title: &str, text: &str, spans: Value) -> Ticket {
    serde_json::from_value(json!({
        "schema": "cull.ticket/v1",
        "ticket_id": id,
        "revision": 1,
        "created_at": "2026-11-25T10:00:00Z",
        "queue": "social-care",
        "priority": priority,
        "priority_score": 55,
        "sla_due_at": "2026-11-25T11:00:00Z",
        "rule": {"id": "slack-company", "name": "Slack (the company)", "version": "r1"},
        "mention": {
            "schema": "cull.mention/v1",
            "id": format!("m-{id}"),
            "source": "alerts",
            "channel": "twitter",
            "url": "https://x.example/status/1",
            "author": "@customer",
            "title": title,
            "text": text,
        },
        "spans": spans,
        "snippet": text.chars().take(200).collect::<String>(),
    }))
    .expect("a ticket")
}

fn ordinary(id: &str) -> Ticket {
    ticket(
        id,
        "P2",
        "Slack is down",
        "Slack is down again, support is useless",
        json!([{"field": "text", "start": 0, "end": 5}]),
    )
}

/// Tickets that try the limits and the escaping.
fn hostile() -> Vec<Ticket> {
    let long_title = "T".repeat(10 * 1024);
    let long_text = "😀 Slack & <b>down</b> ".repeat(2000);
    let mut incident = ordinary("incident");
    incident.kind = cull_model::TicketKind::Incident;
    incident.mention_count = 42;
    let mut tickets = vec![
        ordinary("ordinary"),
        ticket(
            "long",
            "P1",
            &long_title,
            &long_text,
            json!([{"field": "title", "start": 0, "end": 9000}, {"field": "text", "start": 5, "end": 10}]),
        ),
        ticket(
            "script",
            "P1",
            "<script>alert(1)</script> & co",
            "<script>alert('x')</script> & <@U123> <!channel> *bold* _it_ [a](b)",
            json!([{"field": "text", "start": 0, "end": 8}]),
        ),
        ticket(
            "offsets",
            "P3",
            "émoji 😀",
            "é😀 ok",
            json!([{"field": "text", "start": 1, "end": 3}, {"field": "text", "start": 7, "end": 999}, {"field": "text", "start": 500, "end": 400}, {"field": "nowhere", "start": 0, "end": 1}]),
        ),
        ticket("empty", "P4", "", "", json!([{"field": "text", "start": 0, "end": 5}])),
        incident,
    ];
    tickets[1].mention.url = Some(format!("https://x.example/{}", "a".repeat(20_000)));
    tickets
}

fn config(kind: &str, url: &str, extra: &str) -> AlertConfig {
    let text = format!(
        "name = 'chat'\nkind = '{kind}'\nurl = '{url}'\nbackoff_initial_ms = 1\nbackoff_max_secs = 1\n\
         console_url = 'https://cull.example.com'\n{extra}"
    );
    let config: AlertConfig = toml::from_str(&text).unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    config
}

fn open(config: &AlertConfig, observer: Arc<dyn Observer>) -> AlertSink {
    let context = Context { sink: "chat".to_string(), observer, stop: Stop::never() };
    AlertSink::open(0, config, &|_: &str| None, context).unwrap()
}

fn utf16(text: &Value) -> usize {
    text.as_str().expect("a text").encode_utf16().count()
}

/// Checks one Slack message against Block Kit's published limits.
fn check_block_kit(message: &Value) {
    assert!(utf16(&message["text"]) <= 40_000);
    let blocks = message["blocks"].as_array().expect("blocks");
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    for block in blocks {
        match block["type"].as_str().unwrap() {
            "header" => {
                assert_eq!(block["text"]["type"], "plain_text");
                assert!((1..=150).contains(&utf16(&block["text"]["text"])), "{block}");
            }
            "section" => {
                if let Some(text) = block.get("text") {
                    assert_eq!(text["type"], "mrkdwn");
                    assert!((1..=3000).contains(&utf16(&text["text"])), "{}", utf16(&text["text"]));
                }
                if let Some(fields) = block.get("fields") {
                    let fields = fields.as_array().unwrap();
                    assert!(!fields.is_empty() && fields.len() <= 10);
                    for field in fields {
                        assert!((1..=2000).contains(&utf16(&field["text"])));
                    }
                }
            }
            "actions" => {
                for button in block["elements"].as_array().unwrap() {
                    assert_eq!(button["type"], "button");
                    assert!((1..=75).contains(&utf16(&button["text"]["text"])));
                    assert!(utf16(&button["url"]) <= 3000);
                }
            }
            other => panic!("a block type the sink does not use: {other}"),
        }
    }
    // Slack reads `<…>` as a link or a mention: nothing from a ticket may open one.
    for text in mrkdwn(message) {
        assert!(!text.contains("<script") && !text.contains("<@") && !text.contains("<!"), "{text}");
    }
}

/// Returns every mrkdwn text of a Slack message.
fn mrkdwn(message: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    for block in message["blocks"].as_array().unwrap() {
        if let Some(text) = block["text"]["text"].as_str().filter(|_| block["text"]["type"] == "mrkdwn") {
            texts.push(text.to_string());
        }
        for field in block["fields"].as_array().into_iter().flatten() {
            texts.push(field["text"].as_str().unwrap().to_string());
        }
    }
    texts
}

/// Checks one Teams message: one Adaptive Card 1.4 attachment, under 28 KB.
fn check_adaptive_card(post: &Post) {
    assert!(post.size < 28 * 1024, "{} bytes", post.size);
    let message = &post.json;
    assert_eq!(message["type"], "message");
    let attachments = message["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0]["contentType"], "application/vnd.microsoft.card.adaptive");
    let card = &attachments[0]["content"];
    assert_eq!(card["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    for element in card["body"].as_array().unwrap() {
        assert!(["TextBlock", "FactSet"].contains(&element["type"].as_str().unwrap()), "{element}");
    }
    for action in card["actions"].as_array().unwrap() {
        assert_eq!(action["type"], "Action.OpenUrl");
        assert!(action["url"].as_str().unwrap().starts_with("https://"));
    }
}

#[tokio::test]
async fn slack_messages_keep_to_block_kit_limits_for_ordinary_and_hostile_tickets() {
    let receiver = Receiver::start(&[]);
    let mut sink = open(&config("slack", &receiver.url, "max_per_minute = 100\n"), Arc::new(NoObserver));
    let tickets = hostile();
    let outcomes = sink.deliver(&tickets, T0).await.unwrap();
    assert_eq!(outcomes, vec![Outcome::Delivered; tickets.len()]);
    let posts = receiver.accepted();
    assert_eq!(posts.len(), tickets.len());
    for post in &posts {
        check_block_kit(&post.json);
    }
    let ordinary = &posts[0].json;
    assert_eq!(ordinary["blocks"][0]["text"]["text"], "P2 · Slack is down");
    assert_eq!(ordinary["blocks"][1]["text"]["text"], "*Slack* is down again, support is useless");
    let fields = mrkdwn(ordinary).join("\n");
    for shown in
        ["Slack (the company)", "social-care", "P2 · score 55", "2026-11-25T11:00:00Z", "twitter · @customer"]
    {
        assert!(fields.contains(shown), "{shown} in {fields}");
    }
    let buttons: Vec<&str> = ordinary["blocks"][3]["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["url"].as_str().unwrap())
        .collect();
    assert_eq!(buttons, ["https://x.example/status/1", "https://cull.example.com/mentions/m-ordinary"]);
    let long = &posts[1].json;
    assert!(long["blocks"][0]["text"]["text"].as_str().unwrap().ends_with('…'));
    let section = long["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(section.ends_with('…'));
    assert!(section.starts_with("*TTT") && section.contains("TT*…\n\n"), "the title's match is bold, cut");
    assert!(section.contains("\n\n😀 *Slack* &amp; &lt;b&gt;down"), "the text's match after it");
    let script = &posts[2].json["blocks"][1]["text"]["text"];
    assert_eq!(
        script.as_str().unwrap().split(" &amp; ").next().unwrap(),
        "*&lt;script&gt;*alert('x')&lt;/script&gt;"
    );
    assert_eq!(posts[3].json["blocks"][1]["text"]["text"], "*é😀* *ok*");
    assert_eq!(posts[4].json["blocks"][1]["text"]["text"], "_(no text)_");
    assert_eq!(
        posts[4].json["blocks"][0]["text"]["text"], "P4 · Slack (the company)",
        "no title: the rule names it"
    );
    let incident = &posts[5].json;
    assert!(incident["blocks"][0]["text"]["text"].as_str().unwrap().contains("Incident (42 mentions)"));
    assert!(mrkdwn(incident).iter().any(|field| field == "*Mentions*\n42"));
}

#[tokio::test]
async fn teams_cards_are_adaptive_cards_1_4_under_28_kb_for_ordinary_and_hostile_tickets() {
    let receiver = Receiver::start(&[]);
    let mut sink = open(&config("teams", &receiver.url, "max_per_minute = 100\n"), Arc::new(NoObserver));
    let tickets = hostile();
    let outcomes = sink.deliver(&tickets, T0).await.unwrap();
    assert_eq!(outcomes, vec![Outcome::Delivered; tickets.len()]);
    let posts = receiver.accepted();
    assert_eq!(posts.len(), tickets.len());
    for post in &posts {
        check_adaptive_card(post);
    }
    let card = &posts[0].json["attachments"][0]["content"];
    assert_eq!(card["body"][1]["text"], "**Slack** is down again, support is useless");
    let facts: Vec<&str> =
        card["body"][2]["facts"].as_array().unwrap().iter().map(|f| f["title"].as_str().unwrap()).collect();
    assert_eq!(facts, ["Rule", "Queue", "Priority", "SLA due", "Posted"]);
    let urls: Vec<&str> =
        card["actions"].as_array().unwrap().iter().map(|a| a["url"].as_str().unwrap()).collect();
    assert_eq!(urls, ["https://x.example/status/1", "https://cull.example.com/mentions/m-ordinary"]);
    let long = &posts[1].json["attachments"][0]["content"]["body"][1]["text"];
    assert!(long.as_str().unwrap().ends_with('…'), "the snippet is cut to fit");
    assert!(long.as_str().unwrap().starts_with("**TTT"), "the title's match is bold");
    let script = posts[2].json["attachments"][0]["content"]["body"][1]["text"].as_str().unwrap().to_string();
    assert!(script.starts_with("**\\<script\\>**alert\\('x'\\)\\</script\\>"), "{script}");
    assert!(script.contains("\\*bold\\* \\_it\\_ \\[a\\]\\(b\\)"), "markdown in a post is escaped: {script}");
}

/// Thirty tickets at once with a cap of five: five messages, then, once the minute
/// is over, exactly one roll-up naming the 25 others, the most urgent first.
#[tokio::test]
async fn over_the_cap_alerts_are_held_then_rolled_up_once_when_the_minute_is_over() {
    for kind in ["slack", "teams"] {
        let receiver = Receiver::start(&[]);
        let recorder = Arc::new(Recorder::default());
        let mut sink = open(&config(kind, &receiver.url, "max_per_minute = 5\n"), recorder.clone());
        let mut tickets: Vec<Ticket> = (0..30).map(|i| ordinary(&format!("t{i}"))).collect();
        tickets[29].priority = cull_model::Priority::P1;
        tickets[29].mention.title = Some("the most urgent <!channel>".to_string());
        tickets[29].mention.id = "m|29".to_string();
        let outcomes = sink.deliver(&tickets, T0).await.unwrap();
        assert_eq!(outcomes[..5], vec![Outcome::Delivered; 5]);
        assert_eq!(outcomes[5..], vec![Outcome::Held; 25]);
        assert!(!sink.make_durable(true).unwrap(), "held alerts keep their offsets uncommitted");
        sink.tick(T0 + Duration::seconds(59)).await.unwrap();
        assert_eq!(receiver.posts().len(), 5, "{kind}: the minute is not over");
        sink.tick(T0 + Duration::seconds(60)).await.unwrap();
        sink.tick(T0 + Duration::seconds(61)).await.unwrap();
        sink.tick(T0 + Duration::seconds(200)).await.unwrap();
        let posts = receiver.posts();
        assert_eq!(posts.len(), 6, "{kind}: five alerts and one roll-up");
        match kind {
            "slack" => check_block_kit(&posts[5].json),
            _ => check_adaptive_card(&posts[5]),
        }
        let roll_up = posts[5].json.to_string();
        assert!(roll_up.contains("25 alerts held by the rate cap"), "{roll_up}");
        assert!(roll_up.contains("and 15 more"), "ten are named: {roll_up}");
        let first_named = roll_up.find("the most urgent").expect("the P1 is named");
        assert!(first_named < roll_up.find("Slack is down").unwrap(), "the P1 comes first");
        // Slack ends a `<url|text>` link at a `|`: its URL has the `|` encoded.
        let link = if kind == "slack" { "mentions/m%7C29|the most urgent" } else { "mentions/m|29)" };
        assert!(roll_up.contains(link), "{roll_up}");
        assert!(!roll_up.contains("<!channel>"), "{roll_up}");
        assert!(sink.make_durable(false).unwrap());
        let events = recorder.events();
        assert_eq!(events.iter().filter(|e| *e == "delivered alert").count(), 5);
        assert_eq!(events.iter().filter(|e| *e == "delivered roll-up").count(), 1);
        assert_eq!(events.iter().filter(|e| *e == "rolled up 25").count(), 1);
    }
}

/// The roll-up opens the next window: the alerts after it share that minute's cap.
#[tokio::test]
async fn a_due_roll_up_goes_before_new_alerts_and_counts_against_the_cap() {
    let receiver = Receiver::start(&[]);
    let mut sink = open(&config("slack", &receiver.url, "max_per_minute = 2\n"), Arc::new(NoObserver));
    let first: Vec<Ticket> = (0..3).map(|i| ordinary(&format!("a{i}"))).collect();
    sink.deliver(&first, T0).await.unwrap();
    let second: Vec<Ticket> = (0..2).map(|i| ordinary(&format!("b{i}"))).collect();
    let outcomes = sink.deliver(&second, T0 + Duration::seconds(90)).await.unwrap();
    assert_eq!(outcomes, [Outcome::Delivered, Outcome::Held]);
    let posts = receiver.posts();
    assert_eq!(posts.len(), 4);
    assert!(posts[2].json.to_string().contains("1 alerts held"));
}

#[tokio::test]
async fn the_cap_is_twenty_a_minute_when_unset() {
    let receiver = Receiver::start(&[]);
    let mut sink = open(&config("teams", &receiver.url, ""), Arc::new(NoObserver));
    let tickets: Vec<Ticket> = (0..21).map(|i| ordinary(&format!("t{i}"))).collect();
    let outcomes = sink.deliver(&tickets, T0).await.unwrap();
    assert_eq!(outcomes[..20], vec![Outcome::Delivered; 20]);
    assert_eq!(outcomes[20], Outcome::Held);
}

/// A roll-up the endpoint refuses stays held (nothing is lost) and is tried again
/// when the next window opens, not at every tick of the window it failed in.
#[tokio::test]
async fn a_failed_roll_up_stays_held_and_is_tried_again_in_the_next_window() {
    let receiver = Receiver::start(&[200, 200, 404]);
    let recorder = Arc::new(Recorder::default());
    let mut sink = open(&config("slack", &receiver.url, "max_per_minute = 2\n"), recorder.clone());
    let tickets: Vec<Ticket> = (0..4).map(|i| ordinary(&format!("t{i}"))).collect();
    sink.deliver(&tickets, T0).await.unwrap();
    sink.tick(T0 + Duration::seconds(61)).await.unwrap();
    assert_eq!(receiver.posts().len(), 3);
    assert!(!sink.make_durable(false).unwrap(), "the refused roll-up is still held");
    sink.tick(T0 + Duration::seconds(62)).await.unwrap();
    sink.tick(T0 + Duration::seconds(120)).await.unwrap();
    assert_eq!(receiver.posts().len(), 3, "not again within the window it failed in");
    let outcomes = sink.deliver(&[ordinary("late")], T0 + Duration::seconds(100)).await.unwrap();
    assert_eq!(outcomes, [Outcome::Held], "nor does an alert overtake it");
    sink.tick(T0 + Duration::seconds(122)).await.unwrap();
    let posts = receiver.posts();
    assert_eq!(posts.len(), 4);
    assert!(posts[3].json.to_string().contains("3 alerts held"), "{}", posts[3].json);
    assert!(sink.make_durable(false).unwrap());
    assert_eq!(
        recorder.events().iter().filter(|e| e.starts_with("rolled up")).collect::<Vec<_>>(),
        ["rolled up 3"]
    );
}

/// A stop during a backoff gives the delivery up: the batch is replayed at the next
/// start, so the sink says it stopped rather than that the alert failed.
#[tokio::test]
async fn a_stop_during_a_retry_gives_the_delivery_up() {
    let receiver = Receiver::start(&[500]);
    let (stop, stopped) = tokio::sync::watch::channel(true);
    let text =
        format!("name = 'chat'\nkind = 'teams'\nurl = '{}'\nbackoff_initial_ms = 30000\n", receiver.url);
    let config: AlertConfig = toml::from_str(&text).unwrap();
    let context =
        Context { sink: "chat".to_string(), observer: Arc::new(NoObserver), stop: Stop::new(stopped) };
    let mut sink = AlertSink::open(0, &config, &|_: &str| None, context).unwrap();
    let error = sink.deliver(&[ordinary("t1")], T0).await.unwrap_err();
    assert!(error.left.contains("HTTP 500"), "{error}");
    assert_eq!(receiver.posts().len(), 1);
    drop(stop);
}

#[tokio::test]
async fn a_500_then_200_is_delivered_once_and_a_404_fails() {
    for kind in ["slack", "teams"] {
        let receiver = Receiver::start(&[500, 200, 404]);
        let recorder = Arc::new(Recorder::default());
        let mut sink = open(&config(kind, &receiver.url, ""), recorder.clone());
        let outcomes = sink.deliver(&[ordinary("t1")], T0).await.unwrap();
        assert_eq!(outcomes, [Outcome::Delivered]);
        assert_eq!(receiver.accepted().len(), 1);
        assert_eq!(recorder.events(), ["attempt retry", "attempt ok", "delivered alert"]);
        let outcomes = sink.deliver(&[ordinary("t2")], T0).await.unwrap();
        let [Outcome::Failed(error)] = outcomes.as_slice() else { panic!("{outcomes:?}") };
        assert!(error.contains("404") && !error.contains("SECRET"), "{error}");
        assert_eq!(receiver.posts().len(), 3, "a refusal is not tried again");
    }
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_opens_its_circuit_and_only_a_probe_goes_until_it_answers() {
    // Backoffs are a few milliseconds here (at most 1 s); the circuit holds tries off
    // for 2 s after 2 failures in a row, and half-opens for one probe at a time.
    let receiver = Receiver::start(&[500, 500, 503, 500]);
    let recorder = Arc::new(Recorder::default());
    let extra = "max_attempts = 10\nbreaker_failures = 2\nbreaker_open_secs = 2\n";
    let mut sink = open(&config("slack", &receiver.url, extra), recorder.clone());
    let outcomes = sink.deliver(&[ordinary("t1")], T0).await.unwrap();
    assert_eq!(outcomes, [Outcome::Delivered]);
    let posts = receiver.posts();
    assert_eq!(posts.iter().map(|p| p.status).collect::<Vec<_>>(), [500, 500, 503, 500, 200]);
    let gaps: Vec<std::time::Duration> = posts.windows(2).map(|pair| pair[1].at - pair[0].at).collect();
    for (i, gap) in gaps.iter().enumerate().skip(1) {
        assert!(
            *gap >= std::time::Duration::from_millis(1900),
            "try {} came {gap:?} after the last: {gaps:?}",
            i + 2
        );
    }
    let events = recorder.events();
    let opened = events.iter().position(|e| e == "breaker true").expect("the circuit opened");
    let closed = events.iter().position(|e| e == "breaker false").expect("the circuit closed");
    assert!(opened < closed && events.iter().filter(|e| *e == "breaker true").count() == 1, "{events:?}");
}
