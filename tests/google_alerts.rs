//! The example rule packs against the real Google Alerts feed for "Slack".

use std::path::Path;

use cull_ingest::feed::parse_feed;
use cull_ingest::normalize;
use cull_match::RuleSet;
use cull_model::{Channel, CullReason, Mention};
use cull_rules::load_dir;

use crate::corpus::data_dir;

fn repo_rules() -> RuleSet {
    let loaded = load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    RuleSet::new(loaded.rules).expect("rule set")
}

/// The mentions that feed ingest makes of the real feed.
pub fn google_alert_mentions() -> Vec<Mention> {
    let path = data_dir().join("feeds/feedjira/google_alerts_atom.xml");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let entries =
        parse_feed(&bytes, "google-alerts", Channel::News, "https://www.google.com/alerts/feeds/1/2")
            .expect("the real Google Alerts feed parses");
    let now = time::OffsetDateTime::now_utc();
    entries.into_iter().map(|(_, draft)| normalize(draft, now)).collect()
}

#[test]
fn slack_rule_culls_the_automotive_market_reports_and_keeps_the_company() {
    let set = repo_rules();
    let mentions = google_alert_mentions();
    assert_eq!(mentions.len(), 20);
    let (mut matched, mut culled, mut unmatched) = (Vec::new(), Vec::new(), Vec::new());
    for (mention, verdict) in mentions.iter().zip(set.verdicts(&mentions)) {
        let title = mention.title.clone().unwrap_or_default();
        if verdict.matched.iter().any(|m| m.rule_id == "slack-company") {
            matched.push(title);
        } else if let Some(c) = verdict.culled.iter().find(|c| c.rule_id == "slack-company") {
            assert_eq!(c.reason, CullReason::Exclude, "{title}");
            culled.push(title);
        } else {
            unmatched.push(title);
        }
    }
    let starts = |titles: &[String], prefixes: &[&str]| {
        titles.len() == prefixes.len() && prefixes.iter().all(|p| titles.iter().any(|t| t.starts_with(p)))
    };
    assert!(
        starts(
            &culled,
            &[
                "Report offers Prediction of Automotive Slack Market",
                "Global Automotive Slack Market Revenue",
                "Slack Wax Market 2019",
                "Automotive Slack Adjuster 3150",
            ]
        ),
        "culled: {culled:#?}"
    );
    assert!(starts(&unmatched, &["Pineview advances", "Armed man killed"]), "unmatched: {unmatched:#?}");
    assert_eq!(matched.len(), 14, "matched: {matched:#?}");
    assert!(matched.iter().all(|t| !t.contains("Automotive")), "{matched:#?}");
}

/// Returns the rule set of one rule with `query`, loaded as a rule file would be.
fn one_rule(query: &str) -> RuleSet {
    let file = format!("[[rule]]\nid = \"probe\"\nname = \"probe\"\nquery = '{query}'\n");
    let loaded = cull_rules::load_files([(Path::new("probe.toml"), file.as_bytes())]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    RuleSet::new(loaded.rules).expect("rule set")
}

/// "NASDAQ:WORK" is one word to Unicode segmentation; the analyzer also indexes its
/// parts, so the shipped rule's `"nasdaq work"` clause finds the real items that
/// name the ticker, and the ticker's parts and whole are findable alone.
#[test]
fn joined_tickers_match_their_parts_and_their_whole() {
    let mentions = google_alert_mentions();
    let with_ticker =
        mentions.iter().filter(|m| format!("{:?} {}", m.title, m.text).contains("NASDAQ:WORK")).count();
    assert!(with_ticker >= 8, "the real feed names the ticker in {with_ticker} items, expected 8");
    for query in ["\"nasdaq work\"", "nasdaq", "\"nasdaq:work\"", "nasdaq ONEAR/0 work"] {
        let matched = one_rule(query).verdicts(&mentions).iter().filter(|v| !v.matched.is_empty()).count();
        assert!(matched >= with_ticker, "{query}: {matched} of the {with_ticker} items naming NASDAQ:WORK");
    }
}

/// Google Alerts writes every entry with an empty `<author><name></name></author>`,
/// which feed-rs reads as an author named "unknown". Taken as an author, it made every
/// entry of the feed one author's, so triage joined unrelated stories (an automotive
/// market report, a shooting, Slack's insider sales) into one ticket.
#[test]
fn entries_without_an_author_are_not_one_authors_and_each_story_is_its_own_ticket() {
    let mentions = google_alert_mentions();
    assert!(
        mentions.iter().all(|m| m.author.is_none()),
        "{:?}",
        mentions.iter().map(|m| &m.author).collect::<Vec<_>>()
    );
    let set = one_rule("slack");
    let mut triage = cull_ticket::Triage::new(&cull_ticket::TicketConfig::default()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let mut tickets = std::collections::BTreeSet::new();
    let mut matched = 0;
    for (mention, verdict) in mentions.iter().zip(set.verdicts(&mentions)) {
        let rule = set.rule(None, "probe").unwrap();
        for hit in &verdict.matched {
            matched += 1;
            tickets.extend(
                triage.triage(mention, hit, &rule, None, now).tickets.into_iter().map(|t| t.ticket_id),
            );
        }
    }
    assert_eq!(matched, 20);
    assert_eq!(tickets.len(), 20, "every entry is its own story at its own URL");
}
