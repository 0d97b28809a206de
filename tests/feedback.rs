//! Agents' feedback on real data: rules with known noise over the real UCI headlines
//! and the real Google Alerts feed, simulated dispositions, and the suggestions they
//! lead to, proven by backtest.
//!
//! The ground truth is independent of the words the suggestions use:
//!
//! * A `game` rule (a video-game publisher's brand watch) over the 6,366 UCI
//!   headlines: a headline the aggregator filed under entertainment (`CATEGORY` e) is
//!   noise (mostly "Game of Thrones"), one filed under technology or business is a
//!   true match. Agents dispose of every other ticket only, so the suggestion must
//!   generalize to the mentions nobody labelled.
//! * A `slack` rule over the real "Google Alert - Slack" feed: the entries not about
//!   Slack the company (automotive slack adjusters, slack wax, two local news items
//!   that say "slack" in passing) are noise, by a reading of each entry.
//!
//! Each mention goes through the live matcher, triage (one ticket per thread), the
//! analyst index and the quality store, as in the pipeline.

use std::collections::BTreeMap;
use std::path::Path;

use cull_index::{backtest, BacktestRequest, Indexer, Limits, Searcher};
use cull_match::RuleSet;
use cull_model::{Channel, Disposition, Feedback, Mention, Scope};
use cull_quality::{draft_toml, suggest, SortBy, Store, SuggestOptions, SuggestionKind};
use cull_ticket::{TicketConfig, Triage};
use time::OffsetDateTime;

use crate::corpus::data_dir;
use crate::google_alerts::google_alert_mentions;

const RULES: &str = "[[rule]]\nid = 'game'\nname = 'Games publisher'\nquery = 'game'\n\
                     [[rule]]\nid = 'slack'\nname = 'Slack'\nquery = 'slack'\n";

/// Titles of the Google Alerts entries about something else than Slack the company.
const SLACK_NOISE: [&str; 6] = [
    "Report offers Prediction of Automotive Slack Market",
    "Global Automotive Slack Market Revenue",
    "Slack Wax Market 2019",
    "Automotive Slack Adjuster 3150",
    "Pineview advances in District II playoffs",
    "Armed man killed, K-9 shot",
];

/// The UCI headlines, each with whether the aggregator filed it under entertainment.
fn uci() -> Vec<(Mention, bool)> {
    let path = data_dir().join("text/uci_news_aggregator_sample.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    reader
        .records()
        .map(|row| row.expect("a CSV row"))
        .map(|row| {
            let mut mention = Mention::new(format!("uci-{}", &row[0]), "");
            mention.title = Some(row[1].to_string());
            mention.url = Some(row[2].to_string());
            mention.source = Some(row[3].to_string());
            mention.channel = Some(Channel::News);
            let millis: i64 = row[7].parse().expect("a timestamp in milliseconds");
            let at = OffsetDateTime::from_unix_timestamp(millis / 1000).unwrap();
            mention.published_at = Some(at.format(&time::format_description::well_known::Rfc3339).unwrap());
            (mention, &row[4] == "e")
        })
        .collect()
}

struct World {
    dir: tempfile::TempDir,
    rules: RuleSet,
    searcher: Searcher,
    store: Store,
    /// Whether each matched mention is noise.
    noise: BTreeMap<String, bool>,
}

/// Runs every mention through matching, triage, the index and the store, and
/// disposes of the tickets `labelled` picks as their ground truth says.
fn world(labelled: impl Fn(&str, usize) -> bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let loaded = cull_rules::load_files([(Path::new("rules.toml"), RULES.as_bytes())]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let rules = RuleSet::new(loaded.rules).unwrap();
    let mut truth: BTreeMap<String, bool> =
        uci().into_iter().map(|(m, noise)| (m.id.clone(), noise)).collect();
    let mut mentions: Vec<Mention> = uci().into_iter().map(|(m, _)| m).collect();
    for mention in google_alert_mentions() {
        let title = mention.title.clone().unwrap_or_default();
        truth.insert(mention.id.clone(), SLACK_NOISE.iter().any(|noise| title.starts_with(noise)));
        mentions.push(mention);
    }
    let mut indexer = Indexer::open(&dir.path().join("index"), 1, 50_000_000).unwrap();
    let mut store = Store::open(&dir.path().join("quality")).unwrap();
    let mut triage = Triage::new(&TicketConfig::default()).unwrap();
    let now = OffsetDateTime::now_utc();
    let today = cull_quality::day_of(now.unix_timestamp());
    let mut noise = BTreeMap::new();
    let mut tickets_of_rule: BTreeMap<String, usize> = BTreeMap::new();
    for (mention, mut verdict) in mentions.iter().zip(rules.verdicts(&mentions)) {
        for matched in &verdict.matched {
            noise.insert(mention.id.clone(), truth[&mention.id]);
            let rule = rules.rule(None, &matched.rule_id).unwrap();
            for ticket in triage.triage(mention, matched, &rule, None, now).tickets {
                indexer.add_ticket(&ticket, None).unwrap();
                store.record_ticket(&ticket, today);
                if ticket.revision > 1 {
                    continue;
                }
                let n = tickets_of_rule.entry(matched.rule_id.to_string()).or_default();
                if labelled(&matched.rule_id, *n) {
                    let disposition =
                        if truth[&mention.id] { Disposition::Irrelevant } else { Disposition::Resolved };
                    let outcome = store.record_feedback(&Feedback::new(&ticket.ticket_id, disposition, now));
                    assert!(matches!(outcome, cull_quality::FeedbackOutcome::Counted(_)), "{outcome:?}");
                }
                *n += 1;
            }
        }
        store.record_verdict(&verdict, today);
        verdict.mention = Some(mention.clone());
        indexer.add(&verdict, None).unwrap();
    }
    indexer.commit().unwrap();
    let searcher = Searcher::open(&dir.path().join("index"), Limits::default()).unwrap();
    World { dir, rules, searcher, store, noise }
}

/// Returns how many of the noise and of the true matches `rule_toml` still matches.
fn outcome(world: &World, rule_toml: &str, rule: &str) -> (usize, usize, usize, usize) {
    let loaded = cull_rules::load_files([(Path::new("draft.toml"), rule_toml.as_bytes())]);
    assert!(loaded.errors.is_empty(), "{rule_toml}\n{:?}", loaded.errors);
    let report = backtest(&world.searcher, &Scope::All, &loaded.rules, &BacktestRequest::default()).unwrap();
    let matched: std::collections::BTreeSet<&str> =
        report.rules[0].matched_ids.iter().map(String::as_str).collect();
    let of_rule: Vec<(&String, &bool)> = world
        .noise
        .iter()
        .filter(|(id, _)| {
            let live = world
                .rules
                .verdict(&world.searcher.mention(&Scope::All, id).unwrap().verdict.mention.unwrap());
            live.matched.iter().any(|m| m.rule_id == rule)
        })
        .collect();
    let noise_total = of_rule.iter().filter(|(_, noise)| **noise).count();
    let true_total = of_rule.len() - noise_total;
    let noise_kept = of_rule.iter().filter(|(id, noise)| **noise && matched.contains(id.as_str())).count();
    let true_kept = of_rule.iter().filter(|(id, noise)| !**noise && matched.contains(id.as_str())).count();
    (noise_kept, noise_total, true_kept, true_total)
}

#[test]
fn the_top_suggestion_for_a_noisy_rule_culls_its_noise_and_keeps_its_true_matches() {
    // Every other ticket of `game` is labelled; every ticket of `slack`.
    let world = world(|rule, n| rule == "slack" || n % 2 == 0);
    let config = cull_quality::QualityConfig { min_feedback: 5, ..Default::default() };
    let today = cull_quality::day_of(OffsetDateTime::now_utc().unix_timestamp());
    let reports = world.store.report(&Scope::All, &config, today, [], SortBy::Precision);
    let game = reports.iter().find(|r| r.rule_id == "game").unwrap();
    assert_eq!(game.matches, 169, "the headlines that say game");
    assert!(game.precision.unwrap() < 0.5 && game.below_threshold, "{game:?}");
    let labelled = world.store.labelled("game", |client| client.is_none());
    assert!(labelled.irrelevant.len() >= 40 && labelled.relevant.len() >= 20, "{labelled:?}");

    let rule = world.rules.rule(None, "game").unwrap();
    let found =
        suggest(&world.searcher, &Scope::All, &world.store, &rule, &SuggestOptions::default()).unwrap();
    let top = &found.suggestions[0];
    assert_eq!((top.kind, top.clause.as_str()), (SuggestionKind::Exclude, "\"thrones\""), "{found:#?}");
    assert_eq!(top.relevant_lost, 0);
    assert!(top.irrelevant_culled as usize * 10 >= found.irrelevant * 9, "nine in ten labelled: {top:?}");
    let draft = draft_toml(&rule.rule, &found.picks());
    let (noise_kept, noise_total, true_kept, true_total) = outcome(&world, &draft, "game");
    let (before, _, _, _) = outcome(&world, RULES, "game");
    assert_eq!((before, noise_total, true_total), (108, 108, 61), "the live rule matches all of it");
    assert_eq!(true_kept, true_total, "the draft keeps every true match, labelled or not");
    assert!(
        noise_kept <= 2,
        "the draft culls the noise nobody labelled too: {noise_kept} of {noise_total} left"
    );

    let rule = world.rules.rule(None, "slack").unwrap();
    let found =
        suggest(&world.searcher, &Scope::All, &world.store, &rule, &SuggestOptions::default()).unwrap();
    let top = &found.suggestions[0];
    assert_eq!(top.relevant_lost, 0, "{found:#?}");
    assert!(top.irrelevant_culled >= 3, "{found:#?}");
    let draft = draft_toml(&rule.rule, &found.picks());
    let (noise_kept, noise_total, true_kept, true_total) = outcome(&world, &draft, "slack");
    assert_eq!(noise_total, SLACK_NOISE.len());
    assert_eq!(true_kept, true_total, "{draft}");
    assert!(noise_kept <= noise_total - 3, "{draft}: {noise_kept} of {noise_total} noise left");
    let slack = world.store.report(&Scope::All, &config, today, [], SortBy::Noise);
    let slack = slack.iter().find(|r| r.rule_id == "slack").unwrap();
    assert_eq!(
        (slack.tickets, slack.feedback, slack.irrelevant),
        (25, 25, 6),
        "one ticket per story: 20 alerts, 5 headlines"
    );
}

/// The console's Rules page over the same data, in headless Chromium: the rules with
/// their precision, the noisy one flagged, its suggestions and the draft to copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_rule_quality_and_shows_a_rules_suggestions_and_draft() {
    let world = world(|rule, n| rule == "slack" || n % 2 == 0);
    world.store.save().unwrap();
    let rules = world.dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("brands.toml"), RULES).unwrap();
    let tokens = crate::api::tokens_file(world.dir.path());
    let server = crate::api::serve(
        &world.dir.path().join("index"),
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--stats",
            world.dir.path().join("quality").to_str().unwrap(),
            "--tokens",
            tokens.to_str().unwrap(),
        ],
        &[],
    );
    let base = format!("http://{}", server.address);
    let browser = crate::console::Browser::start().await;
    browser.sign_in(&format!("{base}/#/rules"), crate::api::ANALYST).await;
    let rows = browser
        .wait_for("document.querySelectorAll('#rules-table tbody tr').length && [...document.querySelectorAll('#rules-table tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
        .await;
    let rows: Vec<Vec<String>> = serde_json::from_value(rows).unwrap();
    assert_eq!(
        rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(),
        ["game", "slack"],
        "lowest precision first"
    );
    assert_eq!(&rows[0][1..5], ["169", "0", "169", "85"], "matches, culled, tickets, feedback: {rows:?}");
    let flagged =
        browser.script("return document.querySelector('#rules-table tbody tr .below').textContent;").await;
    assert_eq!(flagged, "36%", "the game rule is under its threshold: {rows:?}");
    browser.screenshot("console-rules.png").await;

    browser.click("#rules-table tbody tr a").await;
    let clauses = browser
        .wait_for("document.querySelectorAll('#rule table.suggestions tbody tr').length && [...document.querySelectorAll('#rule table.suggestions tbody tr')].map(r => r.cells[1].textContent)")
        .await;
    assert_eq!(clauses[0], "\"thrones\"", "{clauses}");
    let draft = browser.script("return document.querySelector('#rule pre.draft').textContent;").await;
    assert!(draft.as_str().unwrap().contains("exclude = '\"thrones\"'"), "{draft}");
    browser.screenshot("console-rule-suggestions.png").await;

    // A rule the token cannot see, or that does not exist, is an error on the page.
    browser.open(&format!("{base}/#/rules/nope")).await;
    let error = browser.wait_for("!document.getElementById('rule-error').hidden && document.getElementById('rule-error').textContent").await;
    assert!(error.as_str().unwrap().contains("no rule \"nope\""), "{error}");
    browser.quit().await;
}
