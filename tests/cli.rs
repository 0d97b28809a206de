//! The `cull` command line, run as a user runs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use cull_model::{DeadLetter, Verdict};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cull(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cull"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cull runs");
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.unwrap_or_default().to_vec();
    let writer = std::thread::spawn(move || input.write_all(&bytes));
    let output = child.wait_with_output().expect("cull finishes");
    writer.join().expect("writer").expect("stdin written");
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn rules_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).expect("write rule file");
    }
    dir
}

#[test]
fn rules_check_accepts_the_example_packs() {
    let out = cull(&["rules", "check", "rules"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("7 rule(s) OK"), "{}", text(&out.stdout));
}

#[test]
fn rules_check_reports_every_error_like_a_compiler_and_fails() {
    let dir = rules_dir(&[
        ("a.toml", "[[rule]]\nid = 'a'\nquery = 'slack OR'\n\n[[rule]]\nid = 'b'\nquery = '\"call center\" NEAR/3 x'\n"),
        ("b.toml", "[[rule]]\nid = 'a'\nquery = 'fine'\nchanels = ['news']\n"),
    ]);
    let out = cull(&["rules", "check", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("a.toml:3:18 (rule `a`)"), "{stderr}");
    assert!(stderr.contains("query ends where a word, phrase or `(` was expected"), "{stderr}");
    assert!(stderr.contains("unknown field `chanels`"), "{stderr}");
    assert!(stderr.contains("b.toml:4:1"), "{stderr}");
    assert!(stderr.contains("2 error(s)"), "{stderr}");
}

#[test]
fn rules_test_passes_the_example_packs_and_reports_failures_with_reasons() {
    let out = cull(&["rules", "test", "rules"], None);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("0 failed"), "{}", text(&out.stdout));

    let dir = rules_dir(&[(
        "r.toml",
        "[[rule]]\nid = 'slack'\nquery = 'slack'\nexclude = 'adjuster'\n\n[[rule.example]]\ntext = 'slack adjuster'\nexpect = 'match'\n",
    )]);
    let out = cull(&["rules", "test", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("r.toml:8 rule `slack`: expected match, got cull"), "{stdout}");
    assert!(stdout.contains("text: \"slack adjuster\""), "{stdout}");
    assert!(stdout.contains("exclude adjuster: matches, culls the mention"), "{stdout}");
    assert!(stdout.contains("1 example(s), 0 passed, 1 failed"), "{stdout}");
}

#[test]
fn match_prints_one_verdict_per_mention_in_input_order() {
    let out = cull(&["match", "--rules", "rules", "pipelines/demo/mentions.jsonl"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let verdicts: Vec<Verdict> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("verdict JSON")).collect();
    let ids: Vec<&str> = verdicts.iter().map(|v| v.mention_id.as_str()).collect();
    let expected: Vec<String> = (1..=14).map(|i| format!("demo-{i:02}")).collect();
    assert_eq!(ids, expected);
    assert!(verdicts.iter().all(|v| v.schema == "cull.verdict/v1" && !v.ruleset_version.is_empty()));
    let matched = |i: usize| verdicts[i].matched.iter().map(|m| m.rule_id.as_str()).collect::<Vec<_>>();
    assert_eq!(matched(0), ["slack-company"]);
    assert_eq!(matched(5), ["connections-magazine"]);
    assert_eq!(verdicts[4].culled[0].clause, "\"family connections magazine\"");
}

#[test]
fn match_dead_letters_bad_lines_and_keeps_going() {
    let big_text = "slack ".repeat(2 * 1024 * 1024 / 6);
    let big = format!(r#"{{"schema":"cull.mention/v1","id":"big","text":"{big_text}"}}"#);
    let mut input = Vec::new();
    input.extend_from_slice(
        b"{\"schema\":\"cull.mention/v1\",\"id\":\"ok-1\",\"text\":\"Slack shares rise\"}\n",
    );
    input.extend_from_slice(b"{\"schema\":\"cull.mention/v1\",\"id\":\"broken\"\n");
    input.extend_from_slice(b"{\"schema\":\"cull.mention/v9\",\"id\":\"future\",\"text\":\"x\"}\n");
    input.extend_from_slice(b"{\"schema\":\"cull.mention/v1\",\"id\":\"bytes\",\"text\":\"caf\xe9\"}\n");
    input.extend_from_slice(big.as_bytes());
    input.extend_from_slice(b"\n\n");
    input.extend_from_slice(b"{\"schema\":\"cull.mention/v1\",\"id\":\"ok-2\",\"text\":\"nothing here\"}");
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let out =
        cull(&["match", "--rules", "rules", "--dead-letters", dead.to_str().unwrap(), "-"], Some(&input));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let ids: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Verdict>(l).expect("verdict").mention_id)
        .collect();
    assert_eq!(ids, ["ok-1", "ok-2"]);
    let stderr = text(&out.stderr);
    for expected in [
        "stdin:2: malformed JSON",
        "stdin:3: unsupported schema \"cull.mention/v9\"",
        "stdin:4: record is not valid UTF-8",
        "4 line(s) rejected",
    ] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    let oversized = format!("stdin:5: record is {} bytes, over the limit of 1048576 bytes", big.len());
    assert!(stderr.contains(&oversized), "{stderr}");
    let letters: Vec<DeadLetter> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead letter JSON"))
        .collect();
    assert_eq!(letters.len(), 4);
    let original = base64::engine::general_purpose::STANDARD.decode(&letters[2].original_base64).unwrap();
    assert_eq!(original, b"{\"schema\":\"cull.mention/v1\",\"id\":\"bytes\",\"text\":\"caf\xe9\"}");
    assert!(letters.iter().all(|l| l.stage == "match" && l.schema == "cull.dead-letter/v1"));
    assert_eq!(letters[3].origin, "stdin:5");
}

#[test]
fn match_handles_a_ten_megabyte_mention_when_allowed() {
    let body = "Connections Magazine covers the call center industry. ".repeat(10 * 1024 * 1024 / 55);
    let line = format!(r#"{{"schema":"cull.mention/v1","id":"huge","text":"{body}"}}"#);
    let out = cull(&["match", "--rules", "rules", "--max-bytes", "20000000"], Some(line.as_bytes()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let verdict: Verdict = serde_json::from_str(text(&out.stdout).trim()).expect("verdict");
    assert_eq!(verdict.matched[0].rule_id, "connections-magazine");
}

#[test]
fn explain_says_which_clauses_matched_and_what_culled() {
    let out = cull(
        &[
            "rules",
            "explain",
            "--rules",
            "rules",
            "connections-magazine",
            "Family Connections Magazine: crafts for kids",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("rule connections-magazine: culled by mask: \"family connections magazine\""),
        "{stdout}"
    );
    assert!(stdout.contains("[ ] clause \"connections magazine\": does not match"), "{stdout}");
    assert!(
        stdout.contains("mask \"family connections magazine\": occurs, hidden from the query"),
        "{stdout}"
    );
    let out = cull(&["rules", "explain", "--rules", "rules", "no-such-rule", "x"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no rule `no-such-rule` in rules"), "{}", text(&out.stderr));
}

#[test]
fn explain_takes_every_field_a_rule_can_test_reports_near_distances_and_disabled_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oven.toml"),
        "[[rule]]\nid = \"oven\"\nquery = 'acme NEAR/2 oven'\n\
         exclude = 'author:spambot OR site:coupons.example OR url:recall'\n\
         channels = [\"twitter\"]\nlangs = [\"en\"]\nenabled = false\n",
    )
    .unwrap();
    let rules = dir.path().to_str().unwrap();
    let explain = |mention: &str, flags: &[&str]| {
        let mut args = vec!["rules", "explain", "--rules", rules, "oven", mention];
        args.extend(flags);
        let out = cull(&args, None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains("note: the rule is disabled (enabled = false)"), "{stdout}");
        stdout
    };
    let stdout = explain("my acme oven broke", &[]);
    assert!(stdout.starts_with("rule oven: match"), "{stdout}");
    assert!(stdout.contains("query NEAR/2: acme … oven: 0 words apart; NEAR/2 allows 2"), "{stdout}");
    let stdout = explain("acme says the new convection oven is here", &[]);
    assert!(stdout.contains("query NEAR/2: acme … oven: 4 words apart; NEAR/2 allows 2"), "{stdout}");
    for (flag, value, culled) in [
        ("--author", "SpamBot", "culled by exclude: author:spambot"),
        ("--url", "https://www.coupons.example/acme", "culled by exclude: site:coupons.example"),
        ("--url", "https://news.example/acme-recall", "culled by exclude: url:recall"),
        ("--channel", "forum", "culled by channel: forum"),
        ("--lang", "FR", "culled by lang: fr"),
    ] {
        let stdout = explain("my acme oven broke", &[flag, value]);
        assert!(stdout.starts_with(&format!("rule oven: {culled}")), "{flag} {value}: {stdout}");
    }
    let stdout =
        explain("my acme oven broke", &["--title", "Acme oven", "--channel", "twitter", "--lang", "en"]);
    assert!(stdout.contains("highlight title[0..4]: \"Acme\""), "{stdout}");
    let out = cull(&["rules", "explain", "--rules", rules, "oven", "x", "--channel", "tweets"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("expected one of twitter, facebook"), "{}", text(&out.stderr));
}

#[test]
fn checks_for_ci_exit_non_zero_and_report_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[rule]]\nid = \"bad\"\nname = \"x\"\nquery = 'a NEAR/999 b'\npriority = \"P2\"\nqueue = \"q\"\n",
    )
    .unwrap();
    let out = cull(&["rules", "check", "--format", "json", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let error = &report["errors"][0];
    assert_eq!((error["line"].as_u64(), error["rule"].as_str()), (Some(4), Some("bad")));
    assert!(error["column"].as_u64().unwrap() > 1 && error["path"].as_str().unwrap().ends_with("bad.toml"));

    let out = cull(&["rules", "check", "--format", "json", "rules"], None);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["ok"].as_bool(), report["rules"].as_u64()),
        (Some(true), Some(7)),
        "3 global, 2 of each client"
    );

    // The shipped ingest pipeline's webhook reads its secret from the environment, as
    // `cull run` does: the check fails without it and passes with it.
    let secret = [("CULL_WEBHOOK_SECRET", "a-webhook-secret-for-the-check")];
    for pipeline in
        ["pipelines/local.toml", "pipelines/kafka.toml", "pipelines/ingest.toml", "pipelines/clients.toml"]
    {
        let out = cull_bounded(&["config", "check", pipeline], &secret);
        assert!(out.status.success(), "{pipeline}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = cull_bounded(&["config", "check", "pipelines/ingest.toml"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("CULL_WEBHOOK_SECRET"), "{out:?}");
    assert_eq!(out.status.code(), Some(1));
    let file = dir.path().join("pipeline.toml");
    std::fs::write(&file, format!("[matcher]\nbatch_size = 0\nrules = \"{}\"\n", dir.path().display()))
        .unwrap();
    let out = cull(&["config", "check", "--format", "json", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"][0]["key"], "matcher.batch_size");
    std::fs::write(&file, format!("[matcher]\nrules = \"{}\"\n", dir.path().display())).unwrap();
    let out = cull(&["config", "check", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "the rules it names are broken");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.toml:4:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rules_check_warns_about_queries_that_do_not_say_what_they_mean() {
    let dir = rules_dir(&[("a.toml", "[[rule]]\nid = 'amazon'\nquery = 'amazon and (prime or alexa)'\n")]);
    let path = dir.path().to_str().unwrap();
    let out = cull(&["rules", "check", path], None);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "warnings do not fail the check: {stderr}");
    assert!(
        stderr.contains("warning: in `query`: `and` is searched as a word, not as the operator AND\n --> "),
        "{stderr}"
    );
    assert!(stderr.contains("a.toml:3:17 (rule `amazon`)") && stderr.contains("write `AND`"), "{stderr}");
    assert!(text(&out.stdout).contains("1 rule(s) OK") && text(&out.stdout).contains("2 warning(s)"));

    let out = cull(&["rules", "check", "--deny-warnings", path], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("2 warning(s) in"), "{}", text(&out.stderr));

    let out = cull(&["rules", "check", "--format", "json", path], None);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["ok"].as_bool(), report["errors"].as_array().map(Vec::len)), (Some(true), Some(0)));
    let warning = &report["warnings"][0];
    assert_eq!((warning["line"].as_u64(), warning["column"].as_u64()), (Some(3), Some(17)));
    assert_eq!(warning["rule"], "amazon");
    assert!(warning["help"].as_str().unwrap().contains("write `AND`"), "{warning}");
    let out = cull(&["rules", "check", "--format", "json", "--deny-warnings", path], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["ok"], false);

    let out = cull(&["rules", "explain", "--rules", path, "amazon", "amazon and prime"], None);
    assert!(text(&out.stderr).contains("a.toml:3:17"), "explain shows the warnings: {}", text(&out.stderr));
}

/// Runs cull with `env`, killing it (and failing) if it has not ended after a minute:
/// only a hang takes that long.
fn cull_bounded(args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_cull"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cull runs");
    let id = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match receiver.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(output) => output.expect("cull finishes"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &id.to_string()]).status();
            panic!("cull {args:?} hung");
        }
    }
}

#[test]
fn a_link_to_the_environment_is_refused_by_every_command_without_showing_it() {
    let secret = "hunter2-do-not-print-me";
    let dir = rules_dir(&[("a.toml", "[[rule]]\nid = 'a'\nquery = 'a'\n")]);
    std::os::unix::fs::symlink("/proc/self/environ", dir.path().join("env.toml")).unwrap();
    let path = dir.path().to_str().unwrap();
    let pipeline = dir.path().join("pipeline.txt");
    std::fs::write(&pipeline, format!("[matcher]\nrules = \"{path}\"\n")).unwrap();
    let index = dir.path().join("no-index");
    for args in [
        vec!["rules", "check", path],
        vec!["rules", "check", "--format", "json", path],
        vec!["rules", "test", path],
        vec!["rules", "explain", "--rules", path, "a", "a"],
        vec!["rules", "backtest", path, "--index", index.to_str().unwrap()],
        vec!["match", "--rules", path],
        vec!["config", "check", pipeline.to_str().unwrap()],
    ] {
        let out = cull_bounded(&args, &[("CULL_TEST_SECRET", secret)]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {all}");
        assert!(!all.contains(secret), "{args:?} printed the environment: {all}");
        assert!(all.contains("env.toml: it is a symbolic link to /proc/"), "{args:?}: {all}");
    }
}

#[test]
fn a_fifo_or_a_link_to_a_device_in_the_rules_directory_is_refused_at_once() {
    let dir = rules_dir(&[("a.toml", "[[rule]]\nid = 'a'\nquery = 'a'\n")]);
    assert!(Command::new("mkfifo").arg(dir.path().join("fifo.toml")).status().unwrap().success());
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.toml")).unwrap();
    let out = cull_bounded(&["rules", "check", dir.path().to_str().unwrap()], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("fifo.toml: it is not a regular file but a FIFO"), "{stderr}");
    assert!(
        stderr.contains("zero.toml: it is a symbolic link to /dev/zero, outside the rules directory"),
        "{stderr}"
    );
    let out = cull_bounded(&["rules", "backtest", "/dev/zero"], &[]);
    assert!(
        text(&out.stderr).contains("it is not a regular file but a character device"),
        "{}",
        text(&out.stderr)
    );
}

/// A mention title that would clear the terminal (`ESC [2J`) and write the clipboard
/// (OSC 52) if printed as it is.
const HOSTILE_TITLE: &str = "Slack messaging \x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07down\x1b[2J\tagain";

#[test]
fn search_and_explain_print_control_characters_as_visible_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let mention = serde_json::json!({
        "schema": "cull.mention/v1",
        "id": "hostile",
        "title": HOSTILE_TITLE,
        "text": "Slack messaging app is down \x1b[2J for everyone",
    });
    // Ingest removes control characters, but a mention another producer puts on
    // `cull.mentions` reaches the matcher and the index as it was sent.
    let mention: cull_model::Mention = serde_json::from_value(mention).unwrap();
    let loaded = cull_rules::load_path(&repo().join("rules"));
    let set = cull_match::RuleSet::new(loaded.rules).unwrap();
    crate::api::index(&dir.path().join("index"), &set, &[mention]);

    let index = dir.path().join("index");
    let search = cull(&["search", "--index", index.to_str().unwrap(), "slack"], None);
    assert!(search.status.success(), "{}", text(&search.stderr));
    let shown = text(&search.stdout);
    assert!(!search.stdout.contains(&0x1b) && !search.stdout.contains(&0x07), "{shown:?}");
    assert!(shown.contains(r"\u{1b}]52;c;Y3VybCBldmlsLnNoIHwgc2g=\u{7}"), "{shown}");
    assert!(shown.contains(r"down\u{1b}[2J") && shown.contains(r"is down \u{1b}[2J for"), "{shown}");
    // JSON stays JSON: its encoder escapes the controls, and they read back as sent.
    let json = cull(&["search", "--index", index.to_str().unwrap(), "slack", "--json"], None);
    let response: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let title = response["hits"][0]["title"]["text"].as_str().unwrap();
    assert!(title.contains("\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07down\x1b[2J"), "{title:?}");

    let explain = cull(
        &[
            "rules",
            "explain",
            "--rules",
            "rules",
            "slack-company",
            "Slack app is down",
            "--title",
            HOSTILE_TITLE,
        ],
        None,
    );
    assert!(explain.status.success(), "{}", text(&explain.stderr));
    let unknown = cull(&["rules", "explain", "--rules", "rules", "\x1b]52;c;eA==\x07\x1b[2J", "text"], None);
    assert!(!unknown.status.success());
    for output in [&explain.stdout, &explain.stderr, &unknown.stdout, &unknown.stderr] {
        assert!(!output.contains(&0x1b) && !output.contains(&0x07), "{:?}", text(output));
    }
    assert!(
        text(&unknown.stderr).contains(r"no rule `\u{1b}]52;c;eA==\u{7}\u{1b}[2J`"),
        "{}",
        text(&unknown.stderr)
    );
}

/// A reader that stops early (`cull match … | head -1`) ends the output quietly: no
/// panic, no "Broken pipe" message, success.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("many.jsonl");
    let lines: String = (0..20_000)
        .map(|i| {
            format!(
                "{{\"schema\":\"cull.mention/v1\",\"id\":\"m{i}\",\"text\":\"Slack is down again {i}\"}}\n"
            )
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cull"))
        .args(["match", "--rules", "rules", input.to_str().unwrap()])
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cull runs");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.starts_with("{\"schema\":\"cull.verdict/v1\""), "{first}");
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("Broken pipe") && !stderr.contains("panicked"), "{stderr}");
}

/// Hand-written input needs no `schema` (a wrong one is still refused), and
/// `--matches-only` prints the verdicts of matched mentions only.
#[test]
fn match_reads_lines_of_only_id_and_text_and_prints_only_matches_when_asked() {
    let input = "{\"id\":\"a\",\"text\":\"The Slack app is down for everyone\"}\n\
                 {\"id\":\"b\",\"text\":\"nothing to see\"}\n\
                 {\"schema\":\"cull.mention/v9\",\"id\":\"c\",\"text\":\"Slack\"}\n";
    let out = cull(&["match", "--rules", "rules", "--matches-only"], Some(input.as_bytes()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<String> =
        stdout.lines().map(|line| serde_json::from_str::<Verdict>(line).unwrap().mention_id).collect();
    assert_eq!(ids, ["a"], "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stdin:3") && stderr.contains("cull.mention/v9"), "{stderr}");
    assert!(stderr.contains("2 mention(s) matched") && stderr.contains("1 with a match"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "a rejected line fails the run");
    let all = cull(&["match", "--rules", "rules"], Some(input.as_bytes()));
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 2, "without the flag, every verdict");
}

/// Indexes three mentions, two of them published in the second half of November 2026,
/// and returns the index directory.
fn small_index(dir: &Path) -> PathBuf {
    let mention = |id: &str, day: u32| {
        let mut mention = cull_model::Mention::new(id, format!("Slack app news of day {day}"));
        mention.published_at = Some(format!("2026-11-{day:02}T10:00:00Z"));
        mention
    };
    let loaded = cull_rules::load_path(&repo().join("rules"));
    let set = cull_match::RuleSet::new(loaded.rules).unwrap();
    let index = dir.join("index");
    crate::api::index(&index, &set, &[mention("early", 2), mention("mid", 16), mention("late", 25)]);
    index
}

fn hit_ids(out: &Output) -> Vec<String> {
    assert!(out.status.success(), "{}", text(&out.stderr));
    let response: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    response["hits"].as_array().unwrap().iter().map(|hit| hit["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn search_without_a_query_lists_every_mention_of_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let index = small_index(dir.path());
    let index = index.to_str().unwrap();
    let all = cull(&["search", "--index", index, "--json"], None);
    assert_eq!(hit_ids(&all), ["late", "mid", "early"], "newest first");
    let window =
        cull(&["search", "--index", index, "--since", "2026-11-10", "--until", "2026-11-20", "--json"], None);
    assert_eq!(hit_ids(&window), ["mid"]);
    let human = cull(&["search", "--index", index, "--since", "2026-11-10"], None);
    assert!(text(&human.stdout).starts_with("2 mention(s) found, 2 shown"), "{}", text(&human.stdout));
}

#[test]
fn search_errors_name_the_flag_or_the_query_column_not_a_layer_of_cull() {
    let dir = tempfile::tempdir().unwrap();
    let index = small_index(dir.path());
    let index = index.to_str().unwrap();
    for (args, expected) in [
        (vec!["--since", "yesterday-ish"], "cull: --since: \"yesterday-ish\" is not a time: use RFC 3339"),
        (
            vec!["--until", "2262-04-12"],
            "cull: --until: 2262-04-12T00:00:00Z is outside the times the index holds",
        ),
        (
            vec!["--since", "2026-11-21", "--until", "2026-11-20"],
            "cull: --since: 2026-11-21T00:00:00Z is after until",
        ),
        (vec!["--facet", "colour"], "cull: --facet: unknown facet \"colour\"; facets are rule,"),
        (vec!["--channel", "tweets"], "cull: --channel: unknown channel \"tweets\"; channels are twitter,"),
        (vec!["slack OR"], "cull: query: "),
        (vec!["\"unclosed"], "cull: query: "),
    ] {
        let mut all = vec!["search", "--index", index];
        all.extend(&args);
        let out = cull(&all, None);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("index:") && !stderr.contains("query: since"), "{args:?}: {stderr}");
    }
    let out = cull(&["search", "--index", index, "slack OR"], None);
    assert!(text(&out.stderr).contains("at column 9"), "{}", text(&out.stderr));
    let out = cull(&["rules", "backtest", "rules", "--index", index, "--since", "soon"], None);
    assert!(text(&out.stderr).starts_with("cull: --since: \"soon\" is not a time"), "{}", text(&out.stderr));
}

#[test]
fn index_erase_erases_for_good_and_refuses_an_index_another_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let index = small_index(dir.path());
    let path = index.to_str().unwrap();
    // While a process writes the index (as `cull run` does), nothing is touched.
    let writer = cull_index::Indexer::open(&index, 1, 0).unwrap();
    let out = cull(&["index", "erase", "--index", path, "mid"], None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("another process writes the index"), "{stderr}");
    assert!(
        stderr.contains("stop it first, or erase through its API (DELETE /api/mentions/{id}"),
        "{stderr}"
    );
    drop(writer);
    assert_eq!(hit_ids(&cull(&["search", "--index", path, "--json"], None)), ["late", "mid", "early"]);

    let out = cull(&["index", "erase", "--index", path, "mid"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "erased mid\n");
    assert_eq!(hit_ids(&cull(&["search", "--index", path, "--json"], None)), ["late", "early"]);
    // An id the index does not hold: exit 1, and tombstoned all the same.
    let out = cull(&["index", "erase", "--index", path, "late", "never-seen"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "erased late\nnot found never-seen: not in the index; tombstoned, so it is never indexed\n"
    );
    // The tombstones are in the index: a replay of the bus does not index them again.
    let mut indexer = cull_index::Indexer::open(&index, 1, 0).unwrap();
    for (offset, id) in ["mid", "never-seen"].into_iter().enumerate() {
        let mention = cull_model::Mention::new(id, "Slack app news");
        let verdict = Verdict {
            schema: cull_model::VERDICT_SCHEMA.into(),
            mention_id: id.into(),
            client: None,
            ruleset_version: "v".into(),
            matched: Vec::new(),
            culled: Vec::new(),
            mention: Some(mention),
        };
        let origin = cull_index::Origin { topic: "cull.verdicts", partition: 0, offset: 100 + offset as i64 };
        assert_eq!(indexer.add(&verdict, Some(origin)).unwrap(), cull_index::Added::Erased, "{id}");
    }
    drop(indexer);
    let out = cull(&["index", "erase", "--index", dir.path().join("nothing").to_str().unwrap(), "x"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no index here"), "{}", text(&out.stderr));
}

#[test]
fn index_retention_days_is_checked_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipeline.toml");
    std::fs::write(&file, "[index]\nretention_days = 0\n").unwrap();
    let out = cull(&["config", "check", "--format", "json", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problem = &report["problems"][0];
    assert_eq!(problem["key"], "index.retention_days", "{report}");
    let message = problem["message"].as_str().unwrap();
    assert!(message.contains("must be at least 1 day; leave it out to keep mentions for good"), "{report}");
    // A value of the wrong type is a parse error, located and keyed in its message.
    std::fs::write(&file, "[index]\nretention_days = \"30d\"\n").unwrap();
    let out = cull(&["config", "check", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("pipeline.toml:2:18: index.retention_days: invalid type: string \"30d\""),
        "{stderr}"
    );
    std::fs::write(&file, "[index]\nretention_days = 90\n").unwrap();
    let out = cull(&["config", "check", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The Google Alerts feed of `../shared/data`, saved as a file.
const SAVED_FEED: &str = "../shared/data/feeds/feedjira/google_alerts_atom.xml";

#[test]
fn ingest_feed_reads_a_saved_feed_from_a_path_a_file_url_or_stdin() {
    let ids = |out: &Output| -> Vec<String> {
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|line| cull_model::Mention::from_json(line.as_bytes()).expect("cull.mention/v1 lines").id)
            .collect()
    };
    let by_path = ids(&cull(&["ingest", "feed", SAVED_FEED], None));
    assert_eq!(by_path.len(), 20, "the feed's 20 alerts");
    let url = format!("file://{}", repo().join(SAVED_FEED).canonicalize().unwrap().display());
    assert_eq!(ids(&cull(&["ingest", "feed", &url], None)), by_path, "the same mentions, the same ids");
    let bytes = std::fs::read(repo().join(SAVED_FEED)).unwrap();
    assert_eq!(ids(&cull(&["ingest", "feed", "-"], Some(&bytes))), by_path);
    let out = cull(&["ingest", "feed", SAVED_FEED, "--name", "alerts", "--channel", "blog"], None);
    let first = cull_model::Mention::from_json(text(&out.stdout).lines().next().unwrap().as_bytes()).unwrap();
    assert_eq!((first.source.as_deref(), first.channel), (Some("alerts"), Some(cull_model::Channel::Blog)));
    assert!(!first.url.unwrap().contains("google.com/url"), "redirects unwrapped as the feed source does");

    for (feed, reason) in [
        (
            "../shared/data/feeds/no-such-feed.xml",
            "../shared/data/feeds/no-such-feed.xml: No such file or directory",
        ),
        ("../shared/data/feeds", "../shared/data/feeds: Is a directory"),
        (
            "../shared/data/feeds/feed-rs/rss2/rss_2.0_invalid_1.xml",
            "../shared/data/feeds/feed-rs/rss2/rss_2.0_invalid_1.xml: not a readable RSS, Atom or JSON feed",
        ),
        ("file://elsewhere/feed.xml", "file://elsewhere/feed.xml: not a file URL of this machine"),
    ] {
        let out = cull(&["ingest", "feed", feed], None);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{feed}: {stderr}");
        assert!(out.stdout.is_empty(), "{feed}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(&format!("cull: {reason}")), "{feed}: {stderr}");
    }
    let out = cull(&["ingest", "feed", "-"], Some(b"<rss><channel><item><title>x"));
    assert!(
        text(&out.stderr).starts_with("cull: -: not a readable RSS, Atom or JSON feed"),
        "{}",
        text(&out.stderr)
    );
}
