use std::path::Path;
use std::time::Duration;

use cull_match::RuleSet;
use cull_model::{Channel, Mention, Scope, Verdict};
use cull_rules::load_files;

use crate::*;

const RULES: &str = r#"
[[rule]]
id = "slack-company"
name = "Slack"
query = '{Slack} (stock OR messaging OR app)'
exclude = 'adjuster*'
priority = "P3"
queue = "social"

[[rule]]
id = "magazine"
name = "Connections Magazine"
query = '"connections magazine"'
mask = ['"family connections magazine"']
channels = ["news", "blog"]
priority = "P2"
queue = "publisher"
"#;

fn rules() -> RuleSet {
    let loaded = load_files([(Path::new("rules.toml"), RULES.as_bytes())]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    RuleSet::new(loaded.rules).unwrap()
}

fn mention(id: &str, day: u32, channel: Channel, title: &str, text: &str) -> Mention {
    let mut mention = Mention::new(id, text);
    mention.title = Some(title.into());
    mention.channel = Some(channel);
    mention.lang = Some("en".into());
    mention.url = Some(format!("https://news.example.com/{id}"));
    mention.published_at = Some(format!("2026-11-{day:02}T10:00:00Z"));
    mention
}

fn mentions() -> Vec<Mention> {
    vec![
        mention(
            "m1",
            20,
            Channel::News,
            "Slack stock jumps",
            "Shares of Slack rose after the earnings call.",
        ),
        mention(
            "m2",
            21,
            Channel::Blog,
            "Slack adjusters",
            "Automotive Slack adjuster market report, Slack app edition.",
        ),
        mention(
            "m3",
            21,
            Channel::News,
            "Connections Magazine",
            "A piece in Connections Magazine about call centers.",
        ),
        mention("m4", 22, Channel::Twitter, "tweet", "Loved the Connections Magazine issue!"),
        mention("m5", 22, Channel::News, "Crafts", "Family Connections Magazine: ten crafts for kids."),
        mention(
            "m6",
            23,
            Channel::Forum,
            "slack rope",
            "Leave some slack in the rope when you tie the knot.",
        ),
    ]
}

/// Indexes the mentions with their live verdicts and returns the directory.
fn indexed(dir: &Path) -> (RuleSet, Vec<Verdict>) {
    let set = rules();
    let mentions = mentions();
    let verdicts = set.verdicts(&mentions);
    let mut indexer = Indexer::open(dir, 1, 0).unwrap();
    for (offset, (mention, verdict)) in mentions.iter().zip(&verdicts).enumerate() {
        let carried = Verdict { mention: Some(mention.clone()), ..verdict.clone() };
        let origin = Origin { topic: "cull.verdicts", partition: 0, offset: offset as i64 };
        assert_eq!(indexer.add(&carried, Some(origin)).unwrap(), Added::Written);
    }
    indexer.commit().unwrap();
    (set, verdicts)
}

#[test]
fn search_finds_filters_counts_and_highlights() {
    let dir = tempfile::tempdir().unwrap();
    indexed(dir.path());
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    searcher.reload().unwrap();
    assert_eq!(searcher.len(), 6);

    let request = SearchRequest {
        query: "slack".into(),
        facets: vec!["rule".into(), "verdict".into(), "channel".into()],
        histogram: Some(Interval::Day),
        ..SearchRequest::default()
    };
    let found = searcher.search(&Scope::All, &request).unwrap();
    assert_eq!(found.total, 3);
    let ids: Vec<&str> = found.hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["m6", "m2", "m1"], "newest first");
    let m1 = &found.hits[2];
    assert_eq!(m1.title.as_ref().unwrap().highlights, [[0, 5]]);
    assert_eq!(&m1.text.text[m1.text.highlights[0][0]..m1.text.highlights[0][1]], "Slack");
    assert_eq!(
        found.facets["verdict"].iter().map(|f| (f.value.as_str(), f.count)).collect::<Vec<_>>(),
        [("culled", 1), ("matched", 1), ("unmatched", 1)]
    );
    assert_eq!(found.facets["rule"], [FacetCount { value: "slack-company".into(), count: 1 }]);
    let buckets = &found.histogram.as_ref().unwrap().buckets;
    assert_eq!(
        buckets.iter().map(|b| (b.start.as_str(), b.count)).collect::<Vec<_>>(),
        [
            ("2026-11-20T00:00:00Z", 1),
            ("2026-11-21T00:00:00Z", 1),
            ("2026-11-22T00:00:00Z", 0),
            ("2026-11-23T00:00:00Z", 1),
        ]
    );

    let filtered = searcher
        .search(
            &Scope::All,
            &SearchRequest {
                query: "\"connections magazine\"".into(),
                channels: vec!["news".into()],
                since: Some(time::macros::datetime!(2026-11-21 00:00 UTC).unix_timestamp()),
                until: Some(time::macros::datetime!(2026-11-22 00:00 UTC).unix_timestamp()),
                ..SearchRequest::default()
            },
        )
        .unwrap();
    assert_eq!(filtered.hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["m3"]);
    let by_rule = searcher
        .search(&Scope::All, &SearchRequest { rules: vec!["magazine".into()], ..SearchRequest::default() })
        .unwrap();
    let mut ids: Vec<&str> = by_rule.hits.iter().map(|h| h.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["m3", "m4", "m5"], "matched or culled by the rule");
    let culled = searcher
        .search(&Scope::All, &SearchRequest { verdicts: vec![Outcome::Culled], ..SearchRequest::default() })
        .unwrap();
    assert_eq!(culled.total, 3);

    let stored = searcher.mention(&Scope::All, "m2").unwrap();
    assert_eq!(stored.verdict.culled[0].rule_id, "slack-company");
    assert_eq!(stored.verdict.mention.unwrap().title.as_deref(), Some("Slack adjusters"));
    assert!(matches!(searcher.mention(&Scope::All, "nope"), Err(IndexError::NotFound(_))));
}

#[test]
fn a_reopened_index_keeps_its_checkpoint_and_upserts_by_mention() {
    let dir = tempfile::tempdir().unwrap();
    indexed(dir.path());
    let mut indexer = Indexer::open(dir.path(), 1, 0).unwrap();
    assert!(indexer.checkpoint().covers("cull.verdicts", 0, 5));
    assert!(!indexer.checkpoint().covers("cull.verdicts", 0, 6));
    assert_eq!(indexer.checkpoint().next("cull.verdicts", 0), Some(6));
    let set = rules();
    let again = mentions().remove(0);
    let verdict = Verdict { mention: Some(again.clone()), ..set.verdict(&again) };
    let replayed = Origin { topic: "cull.verdicts", partition: 0, offset: 3 };
    assert_eq!(
        indexer.add(&verdict, Some(replayed)).unwrap(),
        Added::Covered,
        "a replayed offset is skipped"
    );
    let redelivered = Origin { topic: "cull.verdicts", partition: 0, offset: 6 };
    assert_eq!(indexer.add(&verdict, Some(redelivered)).unwrap(), Added::Written);
    indexer.commit().unwrap();
    drop(indexer);
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(searcher.len(), 6, "the same mention again replaces its document");
}

#[test]
fn queries_over_the_limits_are_refused_and_slow_ones_stop() {
    let dir = tempfile::tempdir().unwrap();
    indexed(dir.path());
    let limits = Limits { max_clauses: 3, max_wildcard_terms: 0, ..Limits::default() };
    let searcher = Searcher::open(dir.path(), limits).unwrap();
    let error = searcher
        .search(&Scope::All, &SearchRequest { query: "a OR b OR c OR d".into(), ..SearchRequest::default() })
        .unwrap_err();
    assert!(matches!(error, IndexError::Limit(_)) && error.to_string().contains("8 clauses"), "{error}");
    let error = searcher
        .search(&Scope::All, &SearchRequest { query: "con*".into(), ..SearchRequest::default() })
        .unwrap_err();
    assert!(error.to_string().contains("expand"), "{error}");
    let error = searcher
        .search(&Scope::All, &SearchRequest { query: "\"unclosed".into(), ..SearchRequest::default() })
        .unwrap_err();
    assert!(matches!(error, IndexError::Syntax { .. }), "{error}");
    assert!(error.to_string().starts_with("query: ") && error.to_string().contains("at column 1"), "{error}");
    let error = searcher
        .search(&Scope::All, &SearchRequest { query: "slack OR".into(), ..SearchRequest::default() })
        .unwrap_err();
    assert!(error.to_string().contains("at column 9"), "the end of the query: {error}");
    let error = searcher
        .search(&Scope::All, &SearchRequest { facets: vec!["colour".into()], ..SearchRequest::default() })
        .unwrap_err();
    assert!(error.to_string().starts_with("facet: unknown facet"), "{error}");

    let hurried =
        Searcher::open(dir.path(), Limits { timeout: Duration::ZERO, ..Limits::default() }).unwrap();
    let partial = hurried.search(&Scope::All, &SearchRequest::default()).unwrap();
    assert!(partial.timed_out);
    assert_eq!(partial.total, 0);
}

#[test]
fn a_backtest_says_what_the_live_matcher_said() {
    let dir = tempfile::tempdir().unwrap();
    let (set, verdicts) = indexed(dir.path());
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    let report = backtest(&searcher, &Scope::All, set.rules(), &BacktestRequest::default()).unwrap();
    for rule in &report.rules {
        let mut matched: Vec<String> = verdicts
            .iter()
            .filter(|v| v.matched.iter().any(|m| m.rule_id == rule.rule_id))
            .map(|v| v.mention_id.clone())
            .collect();
        let mut culled: Vec<String> = verdicts
            .iter()
            .filter(|v| v.culled.iter().any(|c| c.rule_id == rule.rule_id))
            .map(|v| v.mention_id.clone())
            .collect();
        matched.sort();
        culled.sort();
        assert_eq!((&rule.matched_ids, &rule.culled_ids), (&matched, &culled), "{}", rule.rule_id);
    }
    let magazine = report.rules.iter().find(|r| r.rule_id == "magazine").unwrap();
    assert_eq!((magazine.matched, magazine.culled), (1, 2));
    assert_eq!(magazine.culled_by.get("channel"), Some(&1));
    assert_eq!(magazine.culled_by.get("mask"), Some(&1));
    assert_eq!(
        magazine.days.iter().map(|d| (d.day.as_str(), d.matched, d.culled)).collect::<Vec<_>>(),
        [("2026-11-21", 1, 0), ("2026-11-22", 0, 2),]
    );
    let window = BacktestRequest {
        since: Some(time::macros::datetime!(2026-11-22 00:00 UTC).unix_timestamp()),
        ..BacktestRequest::default()
    };
    let recent = backtest(&searcher, &Scope::All, set.rules(), &window).unwrap();
    assert_eq!(recent.rules[1].matched, 0);
}

#[test]
fn time_bounds_read_dates_and_ages() {
    let now = time::macros::datetime!(2026-11-25 12:00 UTC);
    assert_eq!(parse_time_bound("since", "7d", now).unwrap(), now.unix_timestamp() - 7 * 86_400);
    assert_eq!(parse_time_bound("since", "30m", now).unwrap(), now.unix_timestamp() - 1800);
    assert_eq!(
        parse_time_bound("since", "2026-11-01", now).unwrap(),
        time::macros::datetime!(2026-11-01 00:00 UTC).unix_timestamp()
    );
    assert_eq!(
        parse_time_bound("since", "2026-11-01T06:00:00Z", now).unwrap(),
        time::macros::datetime!(2026-11-01 06:00 UTC).unix_timestamp()
    );
    let error = parse_time_bound("since", "last week", now).unwrap_err().to_string();
    assert!(error.starts_with("since: \"last week\" is not a time"), "{error}");
}

#[test]
fn a_backtest_past_the_time_limit_stops_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (set, _) = indexed(dir.path());
    let hurried =
        Searcher::open(dir.path(), Limits { timeout: Duration::ZERO, ..Limits::default() }).unwrap();
    let error = backtest(&hurried, &Scope::All, set.rules(), &BacktestRequest::default()).unwrap_err();
    assert!(matches!(error, IndexError::TimeLimit { limit } if limit == Duration::ZERO), "{error}");
    assert!(error.to_string().contains("time limit of 0 ms"), "{error}");
    let unlimited =
        Searcher::open(dir.path(), Limits { timeout: Duration::MAX, ..Limits::default() }).unwrap();
    assert_eq!(
        backtest(&unlimited, &Scope::All, set.rules(), &BacktestRequest::default()).unwrap().rules.len(),
        2
    );
}

#[test]
fn times_the_index_cannot_hold_and_reversed_ranges_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (set, _) = indexed(dir.path());
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    let after_2262 = time::macros::datetime!(2262-04-12 00:00 UTC).unix_timestamp();
    let before_1677 = time::macros::datetime!(1677-09-20 00:00 UTC).unix_timestamp();
    let in_range = time::macros::datetime!(2026-11-21 00:00 UTC).unix_timestamp();
    for (since, until, expected) in [
        (None, Some(after_2262), "until: 2262-04-12T00:00:00Z is outside the times the index holds, 1677-09-21T00:12:44Z to 2262-04-11T23:47:16Z"),
        (Some(before_1677), None, "since: 1677-09-20T00:00:00Z is outside"),
        (Some(in_range + 1), Some(in_range), "since: 2026-11-21T00:00:01Z is after until 2026-11-21T00:00:00Z"),
    ] {
        let error = searcher.search(&Scope::All, &SearchRequest { since, until, ..SearchRequest::default() }).unwrap_err();
        assert!(matches!(&error, IndexError::Parameter { .. }) && error.to_string().starts_with(expected), "{error}");
        let error = backtest(&searcher, &Scope::All, set.rules(), &BacktestRequest { since, until, samples: 1 }).unwrap_err();
        assert!(matches!(&error, IndexError::Parameter { .. }) && error.to_string().starts_with(expected), "{error}");
    }
    let latest = time::macros::datetime!(2262-04-11 23:47:16 UTC).unix_timestamp();
    let all = searcher
        .search(&Scope::All, &SearchRequest { until: Some(latest), ..SearchRequest::default() })
        .unwrap();
    assert_eq!(
        all.total,
        mentions().len(),
        "the latest time the index holds is a bound that finds everything"
    );
}

#[test]
fn an_unknown_channel_is_an_error_naming_the_channels_and_a_known_one_any_case_filters() {
    let dir = tempfile::tempdir().unwrap();
    indexed(dir.path());
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    searcher.reload().unwrap();
    let request =
        |channel: &str| SearchRequest { channels: vec![channel.into()], ..SearchRequest::default() };
    let error = searcher.search(&Scope::All, &request("tweets")).unwrap_err().to_string();
    assert!(error.starts_with("channel: unknown channel \"tweets\"; channels are twitter,"), "{error}");
    let all = searcher.search(&Scope::All, &SearchRequest::default()).unwrap().total;
    let found = searcher.search(&Scope::All, &request("Twitter")).unwrap().total;
    assert!(found > 0 && found < all, "{found} of {all}");
}

#[test]
fn a_facet_asked_for_twice_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    indexed(dir.path());
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    let facets = |names: &[&str]| {
        let request = SearchRequest {
            facets: names.iter().map(|n| n.to_string()).collect(),
            ..SearchRequest::default()
        };
        searcher.search(&Scope::All, &request).unwrap().facets
    };
    let once = facets(&["site", "channel"]);
    assert_eq!(facets(&["site", "site", "channel", "site", "channel"]), once);
    assert_eq!(once["channel"].iter().map(|f| f.count).sum::<u64>(), mentions().len() as u64);
}

#[test]
fn a_hit_returns_passages_of_a_huge_title_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let set = rules();
    let mut huge =
        mention("huge", 20, Channel::News, &"Slack stock ".repeat(20_000), &"Slack app ".repeat(100_000));
    huge.title.as_mut().unwrap().push_str("end");
    let verdicts = set.verdicts(std::slice::from_ref(&huge));
    let mut indexer = Indexer::open(dir.path(), 1, 0).unwrap();
    assert_eq!(
        indexer.add(&Verdict { mention: Some(huge.clone()), ..verdicts[0].clone() }, None).unwrap(),
        Added::Written
    );
    indexer.commit().unwrap();
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    let found = searcher
        .search(&Scope::All, &SearchRequest { query: "slack".into(), ..SearchRequest::default() })
        .unwrap();
    let hit = &found.hits[0];
    let title = hit.title.as_ref().unwrap();
    assert!(
        title.text.len() < 400 && hit.text.text.len() < 400,
        "{} and {} bytes",
        title.text.len(),
        hit.text.text.len()
    );
    assert!(
        !title.highlights.is_empty() && title.highlights.iter().all(|h| &title.text[h[0]..h[1]] == "Slack")
    );
    assert_eq!(
        searcher.mention(&Scope::All, "huge").unwrap().verdict.mention.unwrap().title,
        huge.title,
        "the whole mention is kept"
    );
}

/// A ticket revision about `mention` with a factor whose detail is `detail`.
fn ticket(id: &str, revision: u32, mention: &Mention, detail: &str) -> cull_model::Ticket {
    serde_json::from_value(serde_json::json!({
        "schema": cull_model::TICKET_SCHEMA,
        "ticket_id": id,
        "revision": revision,
        "created_at": "2026-11-20T10:00:00Z",
        "queue": "social",
        "priority": "P2",
        "priority_score": 60,
        "sla_due_at": "2026-11-20T11:00:00Z",
        "rule": { "id": "slack-company", "name": "Slack", "version": "v1" },
        "mention": mention,
        "spans": [],
        "snippet": "",
        "factors": [{ "factor": "crisis", "value": 1.0, "points": 25.0, "detail": detail }],
    }))
    .unwrap()
}

fn revisions(searcher: &Searcher, id: &str) -> Vec<(String, u32)> {
    searcher
        .mention(&Scope::All, id)
        .unwrap()
        .tickets
        .iter()
        .map(|t| (t.ticket_id.clone(), t.revision))
        .collect()
}

#[test]
fn tickets_join_their_mention_whichever_comes_first_and_the_highest_revision_stays() {
    let dir = tempfile::tempdir().unwrap();
    let set = rules();
    let all = mentions();
    let (first, second) = (&all[0], &all[2]);
    let verdict = |m: &Mention| Verdict { mention: Some(m.clone()), ..set.verdict(m) };
    let at = |topic: &'static str, offset: i64| Some(Origin { topic, partition: 0, offset });
    let mut indexer = Indexer::open(dir.path(), 1, 0).unwrap();
    // The first mention's ticket comes before its verdict, and is committed alone.
    assert_eq!(indexer.add_ticket(&ticket("t1", 2, first, "outage"), at("cull.tickets", 0)).unwrap(), 1);
    indexer.commit().unwrap();
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(searcher.len(), 0, "tickets without their verdict are no mention");
    assert!(matches!(searcher.mention(&Scope::All, &first.id), Err(IndexError::NotFound(_))));
    let everything = searcher.search(&Scope::All, &SearchRequest::default()).unwrap();
    assert_eq!(everything.total, 0, "{everything:?}");
    // Its verdict joins them; the second mention's verdict comes before its ticket.
    indexer.add(&verdict(first), at("cull.verdicts", 0)).unwrap();
    indexer.add(&verdict(second), at("cull.verdicts", 1)).unwrap();
    assert_eq!(indexer.add_ticket(&ticket("t2", 1, second, "x"), at("cull.tickets", 1)).unwrap(), 1);
    // A lower revision of t1 is ignored; a higher one of t2 replaces its first.
    assert_eq!(indexer.add_ticket(&ticket("t1", 1, first, "older"), at("cull.tickets", 2)).unwrap(), 0);
    assert_eq!(indexer.add_ticket(&ticket("t2", 3, second, "newer"), at("cull.tickets", 3)).unwrap(), 1);
    // A second rule's ticket about the first mention, before the commit.
    assert_eq!(indexer.add_ticket(&ticket("t0", 1, first, "y"), at("cull.tickets", 4)).unwrap(), 1);
    indexer.commit().unwrap();
    drop(indexer);
    searcher.reload().unwrap();
    assert_eq!(searcher.len(), 2);
    assert_eq!(revisions(&searcher, &first.id), [("t0".to_string(), 1), ("t1".to_string(), 2)]);
    let record = searcher.mention(&Scope::All, &first.id).unwrap();
    assert_eq!(record.verdict.mention.as_ref(), Some(first), "the verdict is there too");
    assert_eq!(record.tickets[1].factors[0].detail.as_deref(), Some("outage"));
    assert_eq!(revisions(&searcher, &second.id), [("t2".to_string(), 3)]);
    assert_eq!(
        searcher.mention(&Scope::All, &second.id).unwrap().tickets[0].factors[0].detail.as_deref(),
        Some("newer")
    );
    let found = searcher
        .search(&Scope::All, &SearchRequest { query: "slack".into(), ..SearchRequest::default() })
        .unwrap();
    assert_eq!(found.hits.iter().filter(|h| h.id == first.id).count(), 1, "one document per mention");

    // A reopened index skips what its checkpoint covers, tickets included.
    let mut indexer = Indexer::open(dir.path(), 1, 0).unwrap();
    assert!(indexer.checkpoint().covers("cull.tickets", 0, 4));
    assert_eq!(indexer.add_ticket(&ticket("t9", 1, first, "z"), at("cull.tickets", 4)).unwrap(), 0);
    // A verdict again (a replay past a forgotten checkpoint) keeps the tickets.
    assert_eq!(indexer.add(&verdict(first), at("cull.verdicts", 2)).unwrap(), Added::Written);
    indexer.commit().unwrap();
    searcher.reload().unwrap();
    assert_eq!(revisions(&searcher, &first.id).len(), 2, "the verdict kept the tickets");
}

#[test]
fn an_incident_joins_every_mention_it_links() {
    let dir = tempfile::tempdir().unwrap();
    let set = rules();
    let all = mentions();
    let mut indexer = Indexer::open(dir.path(), 1, 0).unwrap();
    for mention in &all {
        indexer.add(&Verdict { mention: Some(mention.clone()), ..set.verdict(mention) }, None).unwrap();
    }
    let mut incident = ticket("i1", 1, &all[0], "spike");
    incident.kind = cull_model::TicketKind::Incident;
    incident.links = vec![all[0].id.clone(), all[1].id.clone()];
    assert_eq!(indexer.add_ticket(&incident, None).unwrap(), 2, "the mention it carries is linked too");
    indexer.commit().unwrap();
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(revisions(&searcher, &all[1].id), [("i1".to_string(), 1)]);
    assert!(revisions(&searcher, &all[2].id).is_empty());
}

/// The mentions of two clients with the same brand words, and the house's.
fn two_clients() -> Vec<Mention> {
    let of = |client: Option<&str>, id: &str, day: u32, text: &str| {
        let mut m = mention(id, day, Channel::News, "Slack app news", text);
        m.client = client.map(str::to_string);
        m.source = Some(format!("{}-alerts", client.unwrap_or("house")));
        m.url = Some(format!("https://{}.example.com/{id}", client.unwrap_or("house")));
        m
    };
    vec![
        of(Some("acme"), "acme:1", 20, "Slack app outage hits acme stores"),
        of(Some("acme"), "acme:2", 21, "Slack stock and the acme brand"),
        of(Some("globex"), "globex:1", 20, "Slack app outage hits globex labs"),
        of(Some("globex"), "globex:2", 22, "Slack messaging for globex secret project"),
        of(None, "house:1", 23, "Slack app in our own call center"),
    ]
}

fn index_all(dir: &Path, set: &RuleSet, mentions: &[Mention]) {
    let mut indexer = Indexer::open(dir, 1, 0).unwrap();
    for mention in mentions {
        let verdict = Verdict { mention: Some(mention.clone()), ..set.verdict(mention) };
        assert_eq!(indexer.add(&verdict, None).unwrap(), Added::Written);
    }
    indexer.commit().unwrap();
}

#[test]
fn a_clients_scope_sees_only_its_own_mentions_in_every_read() {
    let dir = tempfile::tempdir().unwrap();
    let set = rules();
    let mentions = two_clients();
    index_all(dir.path(), &set, &mentions);
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    let acme = Scope::Client("acme".into());
    let request = SearchRequest {
        query: "slack".into(),
        facets: FACETS.iter().map(|f| f.to_string()).collect(),
        histogram: Some(Interval::Day),
        ..SearchRequest::default()
    };
    let seen = searcher.search(&acme, &request).unwrap();
    assert_eq!(seen.total, 2);
    let ids: Vec<&str> = seen.hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["acme:2", "acme:1"]);
    let shown = serde_json::to_string(&seen).unwrap();
    for foreign in ["globex", "house"] {
        assert!(!shown.contains(foreign), "{foreign} in acme's answer: {shown}");
    }
    assert_eq!(seen.facets["client"], [FacetCount { value: "acme".into(), count: 2 }]);
    let counted: u64 = seen.histogram.unwrap().buckets.iter().map(|b| b.count).sum();
    assert_eq!(counted, 2);
    let everyone = searcher.search(&Scope::All, &request).unwrap();
    assert_eq!(everyone.total, 5, "staff see every client's mentions and the house's");

    let missing = searcher.mention(&acme, "nope").unwrap_err().to_string();
    let foreign = searcher.mention(&acme, "globex:1").unwrap_err().to_string();
    assert_eq!(foreign.replace("globex:1", "nope"), missing, "another client's mention is just not found");
    assert!(searcher.mention(&acme, "house:1").is_err(), "nor is the house's");
    assert_eq!(searcher.mention(&acme, "acme:1").unwrap().verdict.mention_id, "acme:1");
    assert!(searcher.mention(&Scope::All, "globex:1").is_ok());

    let draft = load_files([(
        Path::new("draft.toml"),
        &b"[[rule]]\nid = 'draft'\nquery = 'outage'\n\n[[rule]]\nid = 'theirs'\nquery = 'outage'\nclient = 'globex'\n"[..],
    )]);
    assert!(draft.errors.is_empty(), "{:?}", draft.errors);
    let report = backtest(&searcher, &acme, &draft.rules, &BacktestRequest::default()).unwrap();
    assert_eq!(report.rules[0].matched_ids, ["acme:1"], "a global draft over acme's mentions only");
    assert!(report.rules[1].matched_ids.is_empty(), "globex's rule sees nothing in acme's scope");
    let staff = backtest(&searcher, &Scope::All, &draft.rules, &BacktestRequest::default()).unwrap();
    assert_eq!(staff.rules[0].matched_ids, ["acme:1", "globex:1"]);
    assert_eq!(staff.rules[1].matched_ids, ["globex:1"], "a client's rule meets its client's mentions only");
}

/// Writes `mentions` into an index at `path` as an earlier cull did: the schema of
/// the first analyst index (dates, verdict, rules, the stored record) and the fields
/// `later` adds, each document with its time, its outcome and its record, committed
/// with a checkpoint at offset 5.
fn write_index_of_an_earlier_schema(
    path: &Path,
    mentions: &[Mention],
    later: impl FnOnce(&mut tantivy::schema::SchemaBuilder),
) {
    use tantivy::schema::{FAST, INDEXED, STORED, STRING};
    let set = rules();
    let old = cull_rules::tantivy_query::MentionSchema::with_extra_fields(|builder| {
        builder.add_date_field("at", INDEXED | FAST | STORED);
        builder.add_date_field("published_at", INDEXED | FAST);
        builder.add_date_field("fetched_at", INDEXED | FAST);
        builder.add_text_field("verdict", STRING | FAST);
        builder.add_text_field("rule", STRING | FAST);
        builder.add_text_field("culled_rule", STRING | FAST);
        later(builder);
        builder.add_text_field("record", STORED);
    });
    std::fs::create_dir_all(path).unwrap();
    let index = tantivy::Index::create_in_dir(path, old.schema().clone()).unwrap();
    old.register_tokenizers(&index);
    let mut writer = index.writer_with_num_threads::<tantivy::TantivyDocument>(1, 15_000_000).unwrap();
    let field = |name: &str| old.schema().get_field(name).unwrap();
    for mention in mentions {
        let verdict = Verdict { mention: Some(mention.clone()), ..set.verdict(mention) };
        let mut document = old.document(mention);
        let at = schema::parse_time(mention.published_at.as_deref().unwrap()).unwrap();
        document.add_date(field("at"), at);
        document.add_text(field("verdict"), Outcome::of(&verdict).as_str());
        document.add_text(field("record"), serde_json::to_string(&verdict).unwrap());
        writer.add_document(document).unwrap();
    }
    let mut prepared = writer.prepare_commit().unwrap();
    // An erasure's tombstone too, which the rebuild must carry over.
    prepared.set_payload(r#"{"offsets":{"cull.verdicts":{"0":5}},"erased":{"gone":[null]}}"#);
    prepared.commit().unwrap();
}

#[test]
fn an_index_of_the_schema_before_clients_is_rebuilt_from_its_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let set = rules();
    // The schema of cull before clients: no `client` field.
    write_index_of_an_earlier_schema(&path, &two_clients(), |_| {});
    assert!(Searcher::open(&path, Limits::default()).is_ok(), "a searcher may rebuild it when nobody writes");
    let mut indexer = Indexer::open(&path, 1, 0).unwrap();
    assert!(indexer.checkpoint().covers("cull.verdicts", 0, 4), "the checkpoint is carried over");
    let gone = Mention::new("gone", "Slack app news");
    let verdict = Verdict { mention: Some(gone.clone()), ..set.verdict(&gone) };
    assert_eq!(indexer.add(&verdict, None).unwrap(), Added::Erased, "so are the tombstones");
    drop(indexer);
    let searcher = Searcher::open(&path, Limits::default()).unwrap();
    assert_eq!(searcher.len(), 5, "every mention is carried over");
    let acme = searcher.search(&Scope::Client("acme".into()), &SearchRequest::default()).unwrap();
    assert_eq!(acme.hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["acme:2", "acme:1"]);
    let domains = searcher
        .search(&Scope::All, &SearchRequest { facets: vec!["domain".into()], ..SearchRequest::default() })
        .unwrap();
    assert_eq!(
        domains.facets["domain"],
        [FacetCount { value: "example.com".into(), count: 5 }],
        "fields added since are filled"
    );
    assert!(
        !path.with_file_name("index.migrating").exists() && !path.with_file_name("index.replaced").exists()
    );
}

#[test]
fn an_index_of_the_schema_before_sentiment_is_rebuilt_with_it() {
    use tantivy::schema::{FAST, STRING};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    // The schema of cull before sentiment: clients, domains and authors, no sentiment.
    write_index_of_an_earlier_schema(&path, &sites(), |builder| {
        for name in ["client", "domain", "author_keyword"] {
            builder.add_text_field(name, STRING | FAST);
        }
    });
    let searcher = Searcher::open(&path, Limits::default()).unwrap();
    assert_eq!(searcher.len(), 6, "every mention is carried over");
    let request = SearchRequest { facets: vec!["sentiment".into()], ..SearchRequest::default() };
    let found = searcher.search(&Scope::All, &request).unwrap();
    assert_eq!(
        found.facets["sentiment"].iter().map(|f| (f.value.as_str(), f.count)).collect::<Vec<_>>(),
        [("neutral", 4), ("negative", 1), ("positive", 1)],
        "the rebuild scores every mention"
    );
}

#[test]
fn a_rebuild_cut_short_is_finished_or_done_again_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let set = rules();
    index_all(&path, &set, &two_clients());
    // Killed between the two renames: the rebuilt index waits beside, none in place.
    std::fs::rename(&path, dir.path().join("index.migrating")).unwrap();
    let searcher = Searcher::open(&path, Limits::default()).unwrap();
    assert_eq!(searcher.len(), 5, "the rebuilt index is put in place");
    drop(searcher);
    // Killed while rebuilding: a partial copy beside the old index.
    std::fs::create_dir_all(dir.path().join("index.migrating")).unwrap();
    std::fs::write(dir.path().join("index.migrating/meta.json"), "partial").unwrap();
    std::fs::create_dir_all(dir.path().join("index.replaced")).unwrap();
    let searcher = Searcher::open(&path, Limits::default()).unwrap();
    assert_eq!(searcher.len(), 5);
    assert!(!dir.path().join("index.migrating").exists() && !dir.path().join("index.replaced").exists());
}

#[test]
fn a_query_that_does_not_parse_or_compile_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    for query in ["café AND", "café NEAR/2 channel:tweets", "(slack"] {
        let error = searcher
            .search(&Scope::All, &SearchRequest { query: query.into(), ..SearchRequest::default() })
            .unwrap_err();
        let IndexError::Syntax { message, span } = &error else { panic!("{query}: {error:?}") };
        let expected = match cull_rules::query::parse(query) {
            Err(error) => error.span,
            Ok(node) => cull_rules::query::compile(&node).unwrap_err()[0].span.clone(),
        };
        assert_eq!(*span, expected, "{query}: {message}");
        assert!(query.get(span.clone()).is_some(), "{query}: the span falls on characters");
    }
}

/// A tweet of VADER's ground truth (`../shared/data/text/vader/tweets_GroundTruth.txt`,
/// `id<TAB>mean human rating<TAB>text`), by id.
fn ground_truth_tweet(id: &str) -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/text/vader/tweets_GroundTruth.txt");
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared data)", path.display()));
    raw.lines()
        .find_map(|line| {
            line.strip_prefix(&format!("{id}\t"))?.split_once('\t').map(|(_, text)| text.to_string())
        })
        .unwrap_or_else(|| panic!("{}: no tweet {id}", path.display()))
}

/// A tweet its 20 human raters found negative (mean -3.35 of -4..4).
const NEGATIVE_TWEET: &str = "284";
/// A tweet its human raters found positive (mean 2.38).
const POSITIVE_TWEET: &str = "699";

/// Mentions on subdomains and public suffixes of two registries, one without a
/// language, with authors; two are real tweets, a negative (`s1`) and a positive one
/// (`s2`), the others neutral news.
fn sites() -> Vec<Mention> {
    let of = |id: &str, url: Option<&str>, lang: Option<&str>, author: Option<&str>| {
        let mut m = mention(id, 20, Channel::News, "Slack app news", "Slack app news of the day");
        m.url = url.map(str::to_string);
        m.lang = lang.map(str::to_string);
        m.author = author.map(str::to_string);
        m
    };
    let tweet = |mut m: Mention, id: &str| {
        (m.title, m.channel, m.text) = (None, Some(Channel::Twitter), ground_truth_tweet(id));
        m
    };
    vec![
        tweet(of("s1", Some("https://www.huffpost.com/a"), Some("en"), Some("Ann Lee")), NEGATIVE_TWEET),
        tweet(of("s2", Some("https://huffpost.com/b"), Some("EN"), Some("Ann Lee")), POSITIVE_TWEET),
        of("s3", Some("https://news.bbc.co.uk/c"), None, Some("Bo")),
        of("s4", Some("http://bbc.co.uk./d"), Some("und"), None),
        of("s5", Some("http://127.0.0.1:8080/e"), Some("fr"), Some(" Bo ")),
        of("s6", None, None, None),
    ]
}

#[test]
fn facets_count_registered_domains_authors_no_language_and_sentiment_and_filters_select_exactly_those() {
    let dir = tempfile::tempdir().unwrap();
    index_all(dir.path(), &rules(), &sites());
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    let request = SearchRequest { facets: FACETS.map(String::from).to_vec(), ..SearchRequest::default() };
    let found = searcher.search(&Scope::All, &request).unwrap();
    let counts = |facet: &str| -> Vec<(String, u64)> {
        found.facets[facet].iter().map(|f| (f.value.clone(), f.count)).collect()
    };
    let expected = |pairs: &[(&str, u64)]| pairs.iter().map(|(v, n)| (v.to_string(), *n)).collect::<Vec<_>>();
    assert_eq!(counts("domain"), expected(&[("bbc.co.uk", 2), ("huffpost.com", 2), ("127.0.0.1", 1)]));
    assert_eq!(counts("author"), expected(&[("Ann Lee", 2), ("Bo", 2)]));
    assert_eq!(counts("lang"), expected(&[("und", 3), ("en", 2), ("fr", 1)]), "no language counts as und");
    assert_eq!(counts("sentiment"), expected(&[("neutral", 4), ("negative", 1), ("positive", 1)]));
    // Every value of every facet selects exactly the mentions it counts.
    for (facet, values) in &found.facets {
        for value in values {
            let filter = FacetFilter { facet: facet.clone(), value: value.value.clone() };
            let request = SearchRequest { facet_filters: vec![filter], limit: 0, ..SearchRequest::default() };
            let filtered = searcher.search(&Scope::All, &request).unwrap();
            assert_eq!(filtered.total as u64, value.count, "{facet}={}", value.value);
        }
    }
    // Two values of one facet are either; two facets are both.
    let filter = |facet: &str, value: &str| FacetFilter { facet: facet.into(), value: value.into() };
    let request = SearchRequest {
        facet_filters: vec![
            filter("domain", "bbc.co.uk"),
            filter("domain", "huffpost.com"),
            filter("lang", "und"),
        ],
        ..SearchRequest::default()
    };
    let found = searcher.search(&Scope::All, &request).unwrap();
    let mut ids: Vec<&str> = found.hits.iter().map(|h| h.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["s3", "s4"]);
    // The real tweets get the labels VADER gives them.
    for (label, id) in [("negative", "s1"), ("positive", "s2")] {
        let request =
            SearchRequest { facet_filters: vec![filter("sentiment", label)], ..SearchRequest::default() };
        let found = searcher.search(&Scope::All, &request).unwrap();
        assert_eq!(found.hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), [id], "{label}");
    }
    let unknown = SearchRequest { facet_filters: vec![filter("colour", "red")], ..SearchRequest::default() };
    let error = searcher.search(&Scope::All, &unknown).unwrap_err();
    assert!(error.to_string().contains("unknown facet \"colour\""), "{error}");
}

#[test]
fn every_mention_keeps_vaders_compound_in_a_fast_field() {
    let dir = tempfile::tempdir().unwrap();
    index_all(dir.path(), &rules(), &sites());
    let schema = IndexSchema::new();
    let searcher = tantivy::Index::open_in_dir(dir.path()).unwrap().reader().unwrap().searcher();
    let mut compounds = std::collections::BTreeMap::new();
    for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
        let column = segment.fast_fields().f64(schema::SENTIMENT_SCORE).unwrap();
        for doc in segment.doc_ids_alive() {
            let document: tantivy::TantivyDocument =
                searcher.doc(tantivy::DocAddress::new(ordinal as u32, doc)).unwrap();
            let mention = schema.record(&document).unwrap().mention.unwrap();
            let compound = column.first(doc).unwrap();
            assert_eq!(compound, cull_model::sentiment::analyze_mention(&mention).compound, "{}", mention.id);
            compounds.insert(mention.id, compound);
        }
    }
    assert_eq!(compounds.len(), 6);
    assert!(compounds["s1"] < -0.5 && compounds["s2"] > 0.5, "{compounds:?}");
}

#[test]
fn a_histogram_splits_into_series_by_verdict_or_by_rule() {
    let dir = tempfile::tempdir().unwrap();
    indexed(dir.path());
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    let split = |split: Split| {
        let request =
            SearchRequest { histogram: Some(Interval::Day), split: Some(split), ..SearchRequest::default() };
        let found = searcher.search(&Scope::All, &request).unwrap();
        found
            .histogram
            .unwrap()
            .buckets
            .into_iter()
            .map(|b| (b.start[..10].to_string(), b.count, b.series.into_iter().collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    };
    let series = |pairs: &[(&str, u64)]| pairs.iter().map(|(v, n)| (v.to_string(), *n)).collect::<Vec<_>>();
    assert_eq!(
        split(Split::Verdict),
        [
            ("2026-11-20".to_string(), 1, series(&[("matched", 1)])),
            ("2026-11-21".to_string(), 2, series(&[("culled", 1), ("matched", 1)])),
            ("2026-11-22".to_string(), 2, series(&[("culled", 2)])),
            ("2026-11-23".to_string(), 1, series(&[("unmatched", 1)])),
        ]
    );
    assert_eq!(
        split(Split::Rule),
        [
            ("2026-11-20".to_string(), 1, series(&[("slack-company", 1)])),
            ("2026-11-21".to_string(), 2, series(&[("(none)", 1), ("magazine", 1)])),
            ("2026-11-22".to_string(), 2, series(&[("(none)", 2)])),
            ("2026-11-23".to_string(), 1, series(&[("(none)", 1)])),
        ]
    );
}

#[test]
fn an_export_holds_every_mention_of_a_search_in_its_order_up_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    indexed(dir.path());
    let limits = Limits { max_page: 2, ..Limits::default() };
    let searcher = Searcher::open(dir.path(), limits).unwrap();
    let request =
        SearchRequest { query: "slack OR magazine".into(), limit: 1, offset: 3, ..SearchRequest::default() };
    let export = |searcher: &Searcher, cap: usize, stop_after: usize| {
        let mut mentions = Vec::new();
        let total = searcher.export(&Scope::All, &request, cap, |mention| {
            mentions.push(mention);
            if mentions.len() == stop_after {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })?;
        Ok::<_, IndexError>((total, mentions))
    };
    let (total, mentions) = export(&searcher, 100, usize::MAX).unwrap();
    let ids: Vec<&str> = mentions.iter().map(|m| m.verdict.mention_id.as_str()).collect();
    assert_eq!(
        (total, ids),
        (6, vec!["m6", "m4", "m5", "m2", "m3", "m1"]),
        "not the page: the whole result, past the page size"
    );
    assert_eq!(mentions[0].at.as_deref(), Some("2026-11-23T10:00:00Z"));
    let (total, capped) = export(&searcher, 2, usize::MAX).unwrap();
    assert_eq!((total, capped.len()), (6, 2));
    let (_, stopped) = export(&searcher, 100, 3).unwrap();
    assert_eq!(stopped.len(), 3, "the caller stops it");
    let hurried =
        Searcher::open(dir.path(), Limits { timeout: Duration::ZERO, ..Limits::default() }).unwrap();
    let error = export(&hurried, 100, usize::MAX).unwrap_err();
    assert!(matches!(error, IndexError::TimeLimit { .. }), "{error}");
}

fn ids(searcher: &Searcher, scope: &Scope) -> Vec<String> {
    searcher.reload().unwrap();
    let request = SearchRequest { limit: 100, ..SearchRequest::default() };
    let mut ids: Vec<String> =
        searcher.search(scope, &request).unwrap().hits.into_iter().map(|h| h.id).collect();
    ids.sort();
    ids
}

#[test]
fn retention_deletes_mentions_older_than_the_window_and_a_replay_does_not_bring_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let set = rules();
    let now = time::OffsetDateTime::now_utc();
    let dated = |id: &str, days_ago: i64, published: bool| {
        let mut mention = Mention::new(id, "Slack app news");
        let at =
            (now - time::Duration::days(days_ago)).format(&time::format_description::well_known::Rfc3339);
        if published {
            mention.published_at = Some(at.unwrap());
        } else {
            // No published date: the time it was fetched counts.
            mention.fetched_at = Some(at.unwrap());
        }
        Verdict { mention: Some(mention.clone()), ..set.verdict(&mention) }
    };
    let (old, old_fetched, recent, undated) =
        (dated("old", 40, true), dated("old-fetched", 31, false), dated("recent", 29, true), {
            let mention = Mention::new("undated", "Slack app news");
            Verdict { mention: Some(mention.clone()), ..set.verdict(&mention) }
        });
    let origin = |offset: i64| Some(Origin { topic: "cull.verdicts", partition: 0, offset });
    // Indexed while the index kept everything.
    let mut indexer = Indexer::open(dir.path(), 1, 0).unwrap();
    for (offset, verdict) in [&old, &old_fetched, &recent, &undated].into_iter().enumerate() {
        assert_eq!(indexer.add(verdict, origin(offset as i64)).unwrap(), Added::Written);
    }
    assert_eq!(indexer.expire(now).unwrap(), 0, "no retention, nothing expires");
    indexer.commit().unwrap();
    drop(indexer);
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(ids(&searcher, &Scope::All), ["old", "old-fetched", "recent", "undated"]);

    // Thirty days: the mentions published or fetched before go, the others stay.
    let mut indexer = Indexer::open(dir.path(), 1, 0).unwrap().with_retention(Some(30));
    assert_eq!(indexer.expire(now).unwrap(), 2);
    assert_eq!(ids(&searcher, &Scope::All), ["recent", "undated"]);
    // A replay from before the checkpoint (a group reset, a restored index) offers
    // them again at new offsets: they are not indexed again.
    assert_eq!(indexer.add(&old, origin(10)).unwrap(), Added::Expired);
    assert_eq!(indexer.add(&old_fetched, origin(11)).unwrap(), Added::Expired);
    assert_eq!(indexer.add(&recent, origin(12)).unwrap(), Added::Written);
    indexer.commit().unwrap();
    assert_eq!(indexer.checkpoint().next("cull.verdicts", 0), Some(13), "the skipped offsets are past");
    assert_eq!(ids(&searcher, &Scope::All), ["recent", "undated"]);
    // Days later the undated mention, dated when it was indexed, goes too.
    assert_eq!(indexer.expire(now + time::Duration::days(31)).unwrap(), 2);
    assert!(ids(&searcher, &Scope::All).is_empty());
}

#[test]
fn an_erasure_deletes_the_mention_and_sticks_through_a_replay_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let set = rules();
    let all = mentions();
    let verdict = |m: &Mention| Verdict { mention: Some(m.clone()), ..set.verdict(m) };
    let origin = |topic: &'static str, offset: i64| Some(Origin { topic, partition: 0, offset });
    indexed(dir.path());
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    let mut indexer = Indexer::open(dir.path(), 1, 0).unwrap();
    // An uncommitted verdict before the erasure: the erasure commits, but not its offset.
    assert_eq!(indexer.add(&verdict(&all[5]), origin("cull.verdicts", 6)).unwrap(), Added::Written);
    let erased = indexer.erase(&Scope::All, &["m1".into(), "m6".into(), "not-yet".into()]).unwrap();
    let found: Vec<(&str, bool)> = erased.iter().map(|e| (e.id.as_str(), e.found)).collect();
    assert_eq!(found, [("m1", true), ("m6", true), ("not-yet", false)]);
    assert_eq!(ids(&searcher, &Scope::All), ["m2", "m3", "m4", "m5"], "durable at once");
    assert!(!indexer.checkpoint().covers("cull.verdicts", 0, 6), "the stage commits its offsets");
    // The bus replays the mention, its ticket, and brings the one not yet indexed.
    assert_eq!(indexer.add(&verdict(&all[0]), origin("cull.verdicts", 7)).unwrap(), Added::Erased);
    assert_eq!(indexer.add_ticket(&ticket("t1", 1, &all[0], "x"), origin("cull.tickets", 0)).unwrap(), 0);
    let mut later = all[1].clone();
    later.id = "not-yet".into();
    assert_eq!(indexer.add(&verdict(&later), origin("cull.verdicts", 8)).unwrap(), Added::Erased);
    indexer.commit().unwrap();
    drop(indexer);
    // After a restart from a checkpoint before it all (the offsets replayed again).
    let mut indexer = Indexer::open(dir.path(), 1, 0).unwrap();
    assert_eq!(indexer.add(&verdict(&all[0]), origin("cull.verdicts", 20)).unwrap(), Added::Erased);
    indexer.commit().unwrap();
    assert_eq!(ids(&searcher, &Scope::All), ["m2", "m3", "m4", "m5"]);
    assert!(!indexer.erase(&Scope::All, &["m1".into()]).unwrap()[0].found, "gone already");
}

#[test]
fn a_clients_erasure_cannot_touch_another_clients_mention() {
    let dir = tempfile::tempdir().unwrap();
    let set = rules();
    let mentions = two_clients();
    index_all(dir.path(), &set, &mentions);
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    let mut indexer = Indexer::open(dir.path(), 1, 0).unwrap();
    let acme = Scope::Client("acme".into());
    let erased = indexer.erase(&acme, &["globex:1".into(), "acme:1".into(), "house:1".into()]).unwrap();
    let found: Vec<bool> = erased.iter().map(|e| e.found).collect();
    assert_eq!(found, [false, true, false], "another client's and the house's are not found");
    assert_eq!(ids(&searcher, &Scope::All), ["acme:2", "globex:1", "globex:2", "house:1"]);
    // acme's tombstone of `globex:1` keeps only an acme mention of that id out.
    let verdict = |m: &Mention| Verdict { mention: Some(m.clone()), ..set.verdict(m) };
    assert_eq!(indexer.add(&verdict(&mentions[2]), None).unwrap(), Added::Written);
    let mut claimed = mentions[2].clone();
    claimed.client = Some("acme".into());
    assert_eq!(indexer.add(&verdict(&claimed), None).unwrap(), Added::Erased);
    // The staff's erasure is every client's.
    assert!(indexer.erase(&Scope::All, &["globex:2".into()]).unwrap()[0].found);
    assert_eq!(indexer.add(&verdict(&mentions[3]), None).unwrap(), Added::Erased);
}

#[test]
fn a_second_writer_is_refused_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _running = Indexer::open(dir.path(), 1, 0).unwrap();
    let error = Indexer::open(dir.path(), 1, 0).unwrap_err();
    assert!(matches!(error, IndexError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("another process writes the index"), "{error}");
}

#[test]
fn retention_days_of_zero_is_refused_naming_the_key() {
    let config = IndexConfig { retention_days: Some(0), ..IndexConfig::default() };
    let problems = config.validate();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "retention_days");
    assert!(problems[0].message.contains("leave it out"), "{}", problems[0].message);
    assert!(IndexConfig { retention_days: Some(1), ..IndexConfig::default() }.validate().is_empty());
}

/// Returns whether any file of the index directory holds `marker`.
fn on_disk(dir: &Path, marker: &str) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        bytes.windows(marker.len()).any(|window| window == marker.as_bytes())
    })
}

#[test]
fn an_erased_mentions_text_leaves_the_files_of_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let set = rules();
    let marker = "zq7x9k2vw4";
    let mut mentions = mentions();
    mentions[2].text = format!("The private words {marker} of a data subject, about Slack.");
    index_all(dir.path(), &set, &mentions);
    assert!(on_disk(dir.path(), marker), "the test sees text in the segment files");
    let mut indexer = Indexer::open(dir.path(), 1, 0).unwrap();
    assert!(indexer.erase(&Scope::All, &["m3".into()]).unwrap()[0].found);
    assert!(!on_disk(dir.path(), marker), "the erased text is still on disk");
    drop(indexer);
    let searcher = Searcher::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(ids(&searcher, &Scope::All), ["m1", "m2", "m4", "m5", "m6"], "the others are kept");
}
