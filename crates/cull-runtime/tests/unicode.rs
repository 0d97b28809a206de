//! The whole line (matcher, tickets, index) over hostile Unicode in every field,
//! against random rules on every field: never a panic, one verdict per mention, one
//! ticket per true match, one document per mention.

use std::path::Path;
use std::sync::Arc;

use cull_bus::{Message, Record};
use cull_index::IndexConfig;
use cull_match::{Matcher, RuleSet};
use cull_model::{Channel, Mention, Ticket, Verdict};
use cull_runtime::{
    AdmittedTopics, IndexStage, MatchStage, Metrics, Output, Stage, Summary, TicketStage, Topics,
};
use cull_ticket::TicketConfig;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Pieces of text that break naive text handling: combining marks, emoji with
/// modifiers and joiners, right-to-left scripts and their controls, zero-width and
/// format characters, CJK, and the punctuation the analyzer splits on.
const PIECES: &[&str] = &[
    "slack",
    "Slack",
    "Slack's",
    "Apple’s",
    "café",
    "cafe\u{301}",
    "e\u{301}\u{302}\u{303}",
    "👍🏽",
    "👩‍💻",
    "🇫🇷",
    "\u{200d}",
    "\u{200b}",
    "\u{200e}",
    "\u{200f}",
    "\u{2067}",
    "\u{2069}",
    "\u{00ad}",
    "\u{2060}",
    "\u{feff}",
    "שלום",
    "سلاك",
    "مرحبا\u{200f}",
    "漢字",
    "スラック",
    "한국어",
    "NASDAQ:WORK",
    "slack.com",
    "#slack",
    "@slack",
    "a_b",
    "x/y",
    "outage",
    "down",
    "ÅÄÖ",
    "ß",
    "İ",
    "ﬁ",
    " ",
    "  ",
    "\n",
    "\t",
    ".",
    ",",
    "!",
    "\"",
    "'",
    "-",
    "*",
];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..24).prop_map(|pieces| pieces.concat())
}

fn optional_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

fn mention(index: usize) -> impl Strategy<Value = Mention> {
    (text(), optional_text(), optional_text(), optional_text(), optional_text(), any::<u8>()).prop_map(
        move |(text, title, author, url, lang, channel)| {
            let mut mention = Mention::new(format!("m{index}"), text);
            mention.title = title;
            mention.author = author;
            mention.url = url.map(|u| format!("https://{u}"));
            mention.lang = lang;
            mention.channel = Some(Channel::ALL[usize::from(channel) % Channel::ALL.len()]);
            mention
        },
    )
}

/// A query on one or more fields, from words the mentions are made of.
fn query() -> impl Strategy<Value = String> {
    let word = prop::sample::select(
        &[
            "slack",
            "Slack",
            "outage",
            "down",
            "café",
            "漢字",
            "שלום",
            "nasdaq",
            "work",
            "#slack",
            "@slack",
            "slack.com",
            "apple",
            "sla*",
        ][..],
    );
    let field = prop::sample::select(&["", "title:", "text:", "author:", "url:", "site:"][..]);
    let leaf = (field, word.clone()).prop_map(|(f, w)| format!("{f}{w}"));
    let clause = prop_oneof![
        leaf.clone(),
        (leaf.clone(), leaf.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
        (leaf.clone(), leaf.clone(), 0u8..4).prop_map(|(a, b, n)| format!("{a} NEAR/{n} {b}")),
        (word.clone(), word.clone()).prop_map(|(a, b)| format!("\"{a} {b}\"")),
    ];
    prop::collection::vec(clause, 1..3).prop_map(|clauses| clauses.join(" "))
}

fn rules(queries: &[String]) -> RuleSet {
    let mut text = String::new();
    for (i, query) in queries.iter().enumerate() {
        let mut rule = toml::Table::new();
        rule.insert("id".into(), format!("r{i}").into());
        rule.insert("query".into(), query.clone().into());
        rule.insert("queue".into(), if i % 2 == 0 { "care" } else { "press" }.into());
        let mut pack = toml::Table::new();
        pack.insert("rule".into(), toml::Value::Array(vec![toml::Value::Table(rule)]));
        text.push_str(&toml::to_string(&pack).unwrap());
    }
    let loaded = cull_rules::load_files([(Path::new("random.toml"), text.as_bytes())]);
    // A random query may be one the language refuses (a lone NOT, say): those rules
    // are left out, the rest run.
    let good: Vec<_> = loaded.rules.into_iter().filter(|r| r.rule.enabled).collect();
    RuleSet::new(good).expect("rules that loaded make a set")
}

fn records(topic: &str, payloads: Vec<(String, Vec<u8>)>) -> Vec<Record> {
    payloads
        .into_iter()
        .enumerate()
        .map(|(offset, (key, payload))| Record {
            topic: topic.to_string(),
            offset: offset as i64,
            key: Some(key.into_bytes()),
            payload,
            ..Record::default()
        })
        .collect()
}

fn run(stage: &mut dyn Stage, records: &[Record]) -> Output {
    let mut out = Output::new(stage.name());
    stage.process(records, &mut out).expect("the stage goes on");
    out
}

#[test]
fn hostile_unicode_in_every_field_never_breaks_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let summary = Arc::new(Summary::default());
    let config = IndexConfig { dir: dir.path().join("index"), ..IndexConfig::default() };
    // The runner's closure is `Fn`: the index and the offsets it has seen live in cells.
    let index = std::cell::RefCell::new(
        IndexStage::open(&config, Arc::clone(&metrics), Arc::clone(&summary)).unwrap(),
    );
    let indexed_so_far = std::cell::Cell::new(0u64);
    let tickets_in_all = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(Config { cases: 256, failure_persistence: None, ..Config::default() });
    let strategy = (
        prop::collection::vec(query(), 1..6),
        (0..12usize).prop_flat_map(|n| (0..n).map(mention).collect::<Vec<_>>()),
    );
    runner
        .run(&strategy, |(queries, mentions)| {
            let matcher = Arc::new(Matcher::new(rules(&queries)));
            let mut matching = MatchStage::new(
                Arc::clone(&matcher),
                "cull.verdicts",
                1 << 20,
                Arc::clone(&metrics),
                Arc::clone(&summary),
            );
            let mut ticketing = TicketStage::new(
                Arc::clone(&matcher),
                &TicketConfig::default(),
                Topics::default(),
                AdmittedTopics::new(["cull.tickets".to_string()]),
                Arc::clone(&metrics),
                Arc::clone(&summary),
            )
            .expect("no calendars");
            let input = records(
                "cull.mentions",
                mentions.iter().map(|m| (m.id.clone(), serde_json::to_vec(m).unwrap())).collect(),
            );
            let matched = run(&mut matching, &input);
            prop_assert!(matched.dead_letters().is_empty(), "{:?}", matched.dead_letters());
            prop_assert_eq!(matched.records().len(), mentions.len(), "one verdict per mention");
            let verdicts: Vec<Verdict> =
                matched.records().iter().map(|(_, m)| serde_json::from_slice(&m.payload).unwrap()).collect();
            let true_matches: usize = verdicts.iter().map(|v| v.matched.len()).sum();

            let verdict_records = records(
                "cull.verdicts",
                matched.records().iter().map(|(_, m)| (String::new(), m.payload.clone())).collect(),
            );
            let tickets = run(&mut ticketing, &verdict_records);
            prop_assert!(tickets.dead_letters().is_empty(), "{:?}", tickets.dead_letters());
            let ticket_records: Vec<&Message> = tickets
                .records()
                .iter()
                .filter(|(topic, _)| topic == "cull.tickets")
                .map(|(_, m)| m)
                .collect();
            prop_assert_eq!(ticket_records.len(), true_matches, "one ticket per true match");
            tickets_in_all.set(tickets_in_all.get() + true_matches);
            for message in ticket_records {
                let ticket: Ticket = serde_json::from_slice(&message.payload).unwrap();
                let core = ticket.snippet.trim_matches('…');
                let fields = [ticket.mention.title.as_deref(), Some(ticket.mention.text.as_str())];
                prop_assert!(
                    fields.into_iter().flatten().any(|f| f.contains(core)),
                    "snippet {:?}",
                    ticket.snippet
                );
            }

            // The index takes every verdict, each under its own offsets.
            let shifted: Vec<Record> = verdict_records
                .into_iter()
                .map(|r| Record { offset: r.offset + indexed_so_far.get() as i64, ..r })
                .collect();
            let out = run(&mut *index.borrow_mut(), &shifted);
            prop_assert!(out.dead_letters().is_empty());
            indexed_so_far.set(indexed_so_far.get() + shifted.len() as u64);
            prop_assert_eq!(summary.counts().indexed, indexed_so_far.get());
            Ok(())
        })
        .unwrap();
    assert!(index.borrow_mut().flush(true).unwrap());
    // About half the cases match something; a run where almost none did would test
    // nothing of the ticketing.
    assert!(tickets_in_all.get() > 20, "the random rules matched: {} tickets", tickets_in_all.get());
}
