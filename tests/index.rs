//! The analyst index after a pipeline run: `cull search` and `cull rules backtest`
//! against what the live matcher decided.

use std::collections::BTreeMap;
use std::path::Path;

use cull_model::Verdict;

use crate::pipeline::{cull, repo, text};

/// The real mentions the README's main command reads (pipelines/local.toml).
const DEMO_FILES: [&str; 3] = [
    "pipelines/demo/real/google-alerts-slack.jsonl",
    "pipelines/demo/real/tweets.jsonl",
    "pipelines/demo/real/headlines.jsonl",
];

/// Returns how many mentions the README's main command reads.
fn demo_mentions() -> usize {
    DEMO_FILES.iter().map(|file| std::fs::read_to_string(repo().join(file)).unwrap().lines().count()).sum()
}

/// Runs the README's main command with its outputs moved into `dir`; returns its output.
fn run_local(dir: &Path) -> String {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let out = cull(
        &["run", "pipelines/local.toml", "--once"],
        &[
            ("CULL__INDEX__DIR", &path("index")),
            ("CULL__BUS__EMBEDDED__DIR", &path("bus")),
            ("CULL__QUALITY__DIR", &path("quality")),
            ("CULL__SINK__TICKETS__PATH", &path("tickets.jsonl")),
            ("CULL__SINK__VERDICTS__PATH", &path("verdicts.jsonl")),
            ("CULL__SINK__DEAD_LETTER__PATH", &path("dead-letter.jsonl")),
            ("CULL__HTTP__LISTEN", "127.0.0.1:0"),
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let summary = stdout.lines().next().unwrap();
    assert!(summary.ends_with(&format!("; {} indexed", demo_mentions())), "{stdout}");
    stdout
}

/// The table after the summary shows matches and culls of every rule that decided,
/// each row as the live verdict has it, the culls with the clause that culled, and
/// totals that count every decision.
fn the_decision_table_agrees_with_the_verdicts(stdout: &str, live: &[Verdict]) {
    let mut lines = stdout.lines().skip_while(|line| !line.starts_with("MENTION "));
    let header = lines.next().unwrap_or_else(|| panic!("no decision table: {stdout}"));
    for column in ["VERDICT", "RULE", "WHY", "TITLE"] {
        assert!(header.contains(column), "{header}");
    }
    let rest: Vec<&str> = lines.collect();
    let (footer, rows) = rest.split_last().unwrap_or_else(|| panic!("no rows: {stdout}"));
    let rows: Vec<Vec<&str>> = rows
        .iter()
        .map(|line| line.split("  ").map(str::trim).filter(|cell| !cell.is_empty()).collect())
        .collect();
    let by_id = |shown: &str| -> &Verdict {
        let tail = shown.trim_start_matches('…');
        let found: Vec<&Verdict> = live.iter().filter(|v| v.mention_id.ends_with(tail)).collect();
        assert_eq!(found.len(), 1, "{shown}");
        found[0]
    };
    let mut rules_shown = std::collections::BTreeSet::new();
    for row in &rows {
        let [id, outcome, rule, why, title] = row[..] else { panic!("{row:?}") };
        let verdict = by_id(id);
        let mention = verdict.mention.as_ref().unwrap();
        assert!(
            mention.title.as_deref().unwrap_or(&mention.text).starts_with(title.trim_end_matches('…')),
            "{row:?}"
        );
        match outcome {
            "matched" => {
                assert!(verdict.matched.iter().any(|m| m.rule_id == rule), "{row:?}");
                let quoted = why.strip_prefix("query: ").unwrap().trim_end_matches('…');
                let first = quoted.split(" + ").next().unwrap();
                let haystack = format!("{} {}", mention.title.as_deref().unwrap_or(""), mention.text);
                assert!(haystack.contains(first), "{row:?}");
            }
            "culled" => {
                let cull =
                    verdict.culled.iter().find(|c| c.rule_id == rule).unwrap_or_else(|| panic!("{row:?}"));
                assert_eq!(why, format!("{}: {}", cull.reason.as_str(), cull.clause), "{row:?}");
            }
            other => panic!("verdict {other:?} in {row:?}"),
        }
        rules_shown.insert((outcome, rule));
    }
    let every_rule = |outcome: &str| -> std::collections::BTreeSet<(&str, &str)> {
        live.iter()
            .flat_map(|v| match outcome {
                "matched" => v.matched.iter().map(|m| m.rule_id.as_str()).collect::<Vec<_>>(),
                _ => v.culled.iter().map(|c| c.rule_id.as_str()).collect(),
            })
            .map(|rule| (if outcome == "matched" { "matched" } else { "culled" }, rule))
            .collect()
    };
    for outcome in ["matched", "culled"] {
        assert!(every_rule(outcome).is_subset(&rules_shown), "{outcome}: {rules_shown:?}");
    }
    let matched: usize = live.iter().map(|v| v.matched.len()).sum();
    let culled: usize = live.iter().map(|v| v.culled.len()).sum();
    let expected = format!(
        "(15 of {matched} matches and {} of {culled} culls shown; every verdict is in ",
        culled.min(15)
    );
    assert!(footer.starts_with(&expected), "{footer}\nexpected {expected}");
    assert_eq!(rows.len(), 15 + culled.min(15));
    assert!(culled >= 4, "the real Google Alerts feed has culls: {stdout}");
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = cull(args, &[]).output().unwrap();
    assert!(out.status.success(), "cull {args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[test]
fn after_the_main_command_search_and_backtest_agree_with_the_live_matcher() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_local(dir.path());
    let index = dir.path().join("index");
    let index = index.to_str().unwrap();
    let live: Vec<Verdict> = std::fs::read_to_string(dir.path().join("verdicts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(live.len(), demo_mentions());
    the_decision_table_agrees_with_the_verdicts(&stdout, &live);

    let everything = json(&[
        "search",
        "--index",
        index,
        "--json",
        "--limit",
        "1",
        "--facet",
        "verdict",
        "--facet",
        "sentiment",
    ]);
    assert_eq!(everything["total"], demo_mentions());
    let (mut outcomes, mut sentiments) = (BTreeMap::<String, u64>::new(), BTreeMap::<String, u64>::new());
    for verdict in &live {
        let outcome = match (verdict.matched.is_empty(), verdict.culled.is_empty()) {
            (false, _) => "matched",
            (true, false) => "culled",
            (true, true) => "unmatched",
        };
        *outcomes.entry(outcome.to_string()).or_default() += 1;
        // The indexer stage labels each mention with the scorer triage uses.
        let mention = verdict.mention.as_ref().expect("verdicts carry their mention");
        let label = cull_model::sentiment::analyze_mention(mention).label().as_str();
        *sentiments.entry(label.to_string()).or_default() += 1;
    }
    let faceted = |facet: &str| -> BTreeMap<String, u64> {
        everything["facets"][facet]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["value"].as_str().unwrap().to_string(), f["count"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(faceted("verdict"), outcomes);
    assert_eq!(faceted("sentiment"), sentiments);
    assert_eq!(sentiments.len(), 3, "the demo mentions are negative, neutral and positive: {sentiments:?}");

    let found = json(&["search", "--index", index, "--json", "slack NEAR/3 (shares OR stock)"]);
    let hits = found["hits"].as_array().unwrap();
    assert!(!hits.is_empty());
    for hit in hits {
        let snippets = [&hit["title"], &hit["text"]];
        let marked: Vec<String> = snippets
            .iter()
            .filter(|s| !s.is_null())
            .flat_map(|s| {
                let text = s["text"].as_str().unwrap().to_string();
                s["highlights"].as_array().unwrap().iter().map(move |h| {
                    text[h[0].as_u64().unwrap() as usize..h[1].as_u64().unwrap() as usize].to_lowercase()
                })
            })
            .collect();
        assert!(marked.iter().any(|m| m == "slack"), "{hit}");
    }

    // The backtest of the shipped rules over the index says what the live run said.
    let report = json(&["rules", "backtest", "rules", "--index", index, "--json"]);
    for rule in report["rules"].as_array().unwrap() {
        let id = rule["rule_id"].as_str().unwrap();
        let ids = |field: &str| -> Vec<String> {
            rule[field].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
        };
        let mut matched: Vec<String> = live
            .iter()
            .filter(|v| v.matched.iter().any(|m| m.rule_id == id))
            .map(|v| v.mention_id.clone())
            .collect();
        let mut culled: Vec<String> = live
            .iter()
            .filter(|v| v.culled.iter().any(|c| c.rule_id == id))
            .map(|v| v.mention_id.clone())
            .collect();
        matched.sort();
        culled.sort();
        assert_eq!((ids("matched_ids"), ids("culled_ids")), (matched, culled), "rule {id}");
    }

    // The human output: the search highlights, the backtest counts per rule.
    let out = cull(&["search", "--index", index, "slack"], &[]).output().unwrap();
    assert!(text(&out.stdout).contains("[Slack]"), "{}", text(&out.stdout));
    let out = cull(&["rules", "backtest", "rules/tech.toml", "--index", index], &[]).output().unwrap();
    assert!(text(&out.stdout).starts_with("slack-company: 14 matched, 4 culled"), "{}", text(&out.stdout));

    // A mistyped index directory or query is an error, not an empty answer.
    let out = cull(&["search", "--index", "no/such/index", "x"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no index here"), "{}", text(&out.stderr));
    let out = cull(&["search", "--index", index, "\"unclosed"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("query:"), "{}", text(&out.stderr));
    let out = cull(&["search", "--index", index, "--since", "yesterday-ish", "x"], &[]).output().unwrap();
    assert!(text(&out.stderr).contains("--since"), "{}", text(&out.stderr));
}

#[test]
fn the_shipped_demo_mentions_are_what_the_script_writes_from_the_real_data() {
    let scratch = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("python3")
        .arg(repo().join("scripts/demo-data.py"))
        .arg(crate::corpus::data_dir())
        .current_dir(scratch.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for file in DEMO_FILES {
        let written = std::fs::read_to_string(scratch.path().join(file)).unwrap();
        let shipped = std::fs::read_to_string(repo().join(file)).unwrap();
        assert!(written == shipped, "{file} is not what scripts/demo-data.py writes; run it again");
        for line in shipped.lines() {
            cull_model::Mention::from_json(line.as_bytes()).unwrap_or_else(|e| panic!("{file}: {e}: {line}"));
        }
    }
}

/// Writes the pipeline of a running service: the demo-like input `in.jsonl` followed,
/// the matcher, the indexer with `retention_days = 30` and the API, all in `dir`.
fn serving_pipeline(dir: &Path) -> std::path::PathBuf {
    let text = format!(
        "[bus]\nkind = \"embedded\"\n[bus.embedded]\ndir = \"{d}/bus\"\n\
         [matcher]\nrules = \"rules\"\nwatch = false\nbatch_wait_ms = 10\n\
         [index]\nenabled = true\ndir = \"{d}/index\"\ncommit_secs = 1\nretention_days = 30\n\
         [api]\nenabled = true\n[ingest]\nstate_dir = \"{d}/state\"\n\
         [[source]]\nkind = \"jsonl\"\nname = \"tail\"\npath = \"{d}/in.jsonl\"\nfollow = true\nfollow_interval_ms = 20\n\
         [http]\nlisten = \"127.0.0.1:0\"\n",
        d = dir.display()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The mentions of `serving_pipeline`: one published 400 days ago, two this week.
fn serving_input(dir: &Path) {
    let now = time::OffsetDateTime::now_utc();
    let line = |id: &str, days_ago: i64| {
        let at =
            (now - time::Duration::days(days_ago)).format(&time::format_description::well_known::Rfc3339);
        serde_json::json!({"schema": "cull.mention/v1", "id": id, "text": format!("Slack is down again, says {id}"),
                           "published_at": at.unwrap()})
        .to_string()
    };
    let lines = [line("ancient", 400), line("subject", 2), line("kept", 1)];
    std::fs::write(dir.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_running_service_expires_old_mentions_and_erases_through_its_api_for_good() {
    const OPERATOR: &str = "operator-token-0123456789";
    const ANALYST: &str = "analyst-token-0123456789";
    let tokens = format!("operator@*:{OPERATOR},analyst@*:{ANALYST}");
    let dir = tempfile::tempdir().unwrap();
    serving_input(dir.path());
    let file = serving_pipeline(dir.path());
    let running = crate::feedback_api::Running::start_with_tokens(&file, &tokens);
    running.wait_metric("cull_index_documents_total", 2.0);
    running.wait_metric("cull_index_mentions_expired_total", 1.0);
    // The ids the API finds, once the index's commit is visible (or after 30 s).
    let found = |running: &crate::feedback_api::Running, wanted: &[&str]| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (status, body) = running.send("GET", "/api/search?limit=10", Some(ANALYST), "");
            assert_eq!(status, 200, "{body}");
            let found: serde_json::Value = serde_json::from_str(&body).unwrap();
            let mut ids: Vec<String> = found["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            if ids == wanted || std::time::Instant::now() > deadline {
                return ids;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    assert_eq!(found(&running, &["kept", "subject"]), ["kept", "subject"], "the mention past 30 days is not");

    // The process holds the index's writer: the command line refuses, changing nothing.
    let index = dir.path().join("index");
    let out = cull(&["index", "erase", "--index", index.to_str().unwrap(), "subject"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("another process writes the index"), "{}", text(&out.stderr));
    // Its API erases through the indexer it runs.
    assert_eq!(running.send("DELETE", "/api/mentions/subject", Some(ANALYST), "").0, 403);
    let (status, body) = running.send("DELETE", "/api/mentions/subject", Some(OPERATOR), "");
    assert_eq!((status, body.as_str()), (200, r#"{"id":"subject","found":true}"#));
    assert_eq!(running.send("GET", "/api/mentions/subject", Some(ANALYST), "").0, 404);
    assert_eq!(found(&running, &["kept"]), ["kept"], "at once");
    running.stop();

    // The bus directory replaced and the input read again from its start: the whole
    // topic is replayed past the index's checkpoint, and neither mention comes back.
    std::fs::remove_dir_all(dir.path().join("bus")).unwrap();
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let running = crate::feedback_api::Running::start_with_tokens(&file, &tokens);
    running.wait_metric("cull_index_documents_total", 1.0);
    running.wait_metric("cull_index_mentions_expired_total", 1.0);
    assert!(running.log().contains("indexing this log from its start"), "{}", running.log());
    assert_eq!(found(&running, &["kept"]), ["kept"]);
    assert_eq!(running.send("GET", "/api/mentions/subject", Some(ANALYST), "").0, 404);
    running.stop();
}
