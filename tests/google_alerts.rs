//! The example rule packs against the real Google Alerts feed for "Slack".

use std::path::Path;

use cull_match::RuleSet;
use cull_model::{CullReason, Mention};
use cull_rules::load_dir;

use crate::corpus::data_dir;

fn repo_rules() -> RuleSet {
    let loaded = load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    RuleSet::new(loaded.rules).expect("rule set")
}

/// Removes the `<b>` highlighting Google Alerts puts in titles and snippets. (Ingest
/// does this properly; the test only needs the words.)
fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&nbsp;", " ").replace("&amp;", "&").replace("&#39;", "'").replace("&quot;", "\"")
}

fn google_alert_mentions() -> Vec<Mention> {
    let path = data_dir().join("feeds/feedjira/google_alerts_atom.xml");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let feed = feed_rs::parser::parse(&bytes[..]).expect("the real Google Alerts feed parses");
    feed.entries
        .iter()
        .map(|entry| {
            let body = entry.content.as_ref().and_then(|c| c.body.clone()).unwrap_or_default();
            let mut mention = Mention::new(entry.id.clone(), strip_tags(&body));
            mention.title = entry.title.as_ref().map(|t| strip_tags(&t.content));
            mention
        })
        .collect()
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
