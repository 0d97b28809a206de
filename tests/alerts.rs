//! Alert sinks against independent receivers: every webhook delivery is verified by
//! the Standard Webhooks reference library (PyPI `standardwebhooks`, in the venv of
//! `scripts/alert-venv.sh`), through `cull run` as an operator runs it, with the
//! failures production has: a receiver that fails then recovers, one that stays
//! down, one that refuses the signature, and a process killed in the middle of its
//! retries.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use cull_model::{DeadLetter, Ticket};

use crate::durability::{
    cull, lines, mentions, run_once, signal, slack_rules, start, tail, text, wait_until,
};
use crate::pipeline::repo;

/// A secret in the specification's format (24 random bytes, base64).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_c2VjcmV0LW9mLWFub3RoZXItc2VuZGVyIQ==";
pub const SECRET_ENV: &str = "CULL_TEST_WEBHOOK_SECRET";
const LIMIT: Duration = Duration::from_secs(120);

/// Returns the python of the alert venv, creating it when missing.
pub fn alert_python() -> PathBuf {
    let out =
        Command::new(repo().join("scripts/alert-venv.sh")).output().expect("scripts/alert-venv.sh runs");
    assert!(out.status.success(), "scripts/alert-venv.sh: {}", text(&out.stderr));
    PathBuf::from(text(&out.stdout).lines().last().expect("it prints the python path").trim())
}

/// The Python receiver, killed when dropped.
pub struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Receiver {
    /// Starts the receiver verifying with `secret`, logging to `log`, with `faults`
    /// (its `--fail-first`, `--status` options).
    pub fn start(secret: &str, log: &Path, faults: &[&str]) -> Receiver {
        let mut child = Command::new(alert_python())
            .arg(repo().join("tests/alert_receiver.py"))
            .args(["--secret", secret, "--log", log.to_str().unwrap()])
            .args(faults)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the receiver starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let port =
            first.trim().strip_prefix("listening ").and_then(|p| p.parse().ok()).unwrap_or_else(|| {
                panic!("the receiver did not say where it listens: {first:?}");
            });
        Receiver { child, port, log: log.to_path_buf() }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/cull", self.port)
    }

    /// Returns every request it logged.
    pub fn entries(&self) -> Vec<serde_json::Value> {
        lines(&self.log)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a pipeline reading `input` whose tickets go to the alert sink `sink` (the
/// TOML of one `[[sink.alert]]` and its tables), and dead letters to a file.
fn pipeline_with(dir: &Path, input: &Path, sink: &str) -> PathBuf {
    let rules = slack_rules(dir);
    let text = format!(
        "[matcher]\nrules = \"{rules}\"\nwatch = false\n\
         [[source]]\nkind = \"jsonl\"\nname = \"file\"\npath = \"{input}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [sink.dead_letter]\nkind = \"jsonl\"\npath = \"out/dead-letter.jsonl\"\n{sink}",
        rules = rules.display(),
        input = input.display(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes a pipeline whose tickets go to a webhook sink at `url` with the delivery
/// settings `delivery` (TOML lines).
fn pipeline(dir: &Path, input: &Path, url: &str, delivery: &str) -> PathBuf {
    let sink = format!(
        "[[sink.alert]]\nname = \"care-hook\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_env = \"{SECRET_ENV}\"\n{delivery}\n"
    );
    pipeline_with(dir, input, &sink)
}

/// Writes `count` mentions, each its own ticket, to `dir/in.jsonl`.
fn input(dir: &Path, prefix: &str, count: usize) -> PathBuf {
    let path = dir.join("in.jsonl");
    std::fs::write(&path, mentions(prefix, count)).unwrap();
    path
}

/// Runs the pipeline once with the webhook secret set.
fn run(dir: &Path, file: &Path) -> std::process::Output {
    std::env::set_var(SECRET_ENV, SECRET);
    run_once(dir, file, LIMIT)
}

/// Groups the receiver's entries by webhook-id: each id's tries in order.
fn by_id(entries: &[serde_json::Value]) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut ids: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for entry in entries {
        ids.entry(entry["id"].as_str().unwrap_or_default().to_string()).or_default().push(entry.clone());
    }
    ids
}

fn dead_letters(dir: &Path) -> Vec<DeadLetter> {
    lines(&dir.join("out/dead-letter.jsonl"))
}

#[test]
fn a_receiver_that_fails_three_times_gets_each_ticket_once_verified_by_the_reference_library() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(SECRET, &dir.path().join("hooks.jsonl"), &["--fail-first", "3"]);
    let file = pipeline(
        dir.path(),
        &input(dir.path(), "flaky", 5),
        &receiver.url(),
        "max_attempts = 6\nbackoff_initial_ms = 20\nbackoff_max_secs = 1\nbreaker_failures = 100\n",
    );
    run(dir.path(), &file);
    let ids = by_id(&receiver.entries());
    assert_eq!(ids.len(), 5, "one message id per ticket: {:?}", ids.keys());
    for (id, tries) in &ids {
        let statuses: Vec<i64> = tries.iter().map(|t| t["status"].as_i64().unwrap()).collect();
        assert_eq!(statuses, [500, 500, 500, 200], "{id}: three failures, then delivered once");
        assert!(tries.iter().all(|t| t["verified"] == true), "{id}: every try verifies: {tries:?}");
        assert_eq!(tries[3]["type"], "ticket.created");
        assert_eq!(*id, format!("{}.r{}", tries[3]["ticket_id"].as_str().unwrap(), tries[3]["revision"]));
        let stamps: Vec<&str> = tries.iter().map(|t| t["timestamp"].as_str().unwrap()).collect();
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "each try is signed at its own time: {stamps:?}");
    }
    assert!(dead_letters(dir.path()).is_empty(), "{:?}", dead_letters(dir.path()));
}

#[test]
fn a_receiver_down_past_the_retries_leaves_each_ticket_in_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let receiver =
        Receiver::start(SECRET, &dir.path().join("hooks.jsonl"), &["--status", "503", "--retry-after", "0"]);
    let file = pipeline(
        dir.path(),
        &input(dir.path(), "down", 3),
        &receiver.url(),
        "max_attempts = 3\nbackoff_initial_ms = 20\nbackoff_max_secs = 1\nbreaker_failures = 100\n",
    );
    let out = run(dir.path(), &file);
    let ids = by_id(&receiver.entries());
    assert_eq!(ids.len(), 3);
    assert!(ids.values().all(|tries| tries.len() == 3), "max_attempts tries each: {ids:?}");
    let letters = dead_letters(dir.path());
    assert_eq!(letters.len(), 3, "one dead letter per ticket: {letters:?}");
    for letter in &letters {
        assert_eq!(letter.stage, "sink.alert.care-hook");
        assert!(
            letter.error.contains("failed 3 tries") && letter.error.contains("HTTP 503"),
            "{}",
            letter.error
        );
        let original = base64::engine::general_purpose::STANDARD.decode(&letter.original_base64).unwrap();
        let ticket: Ticket = serde_json::from_slice(&original).expect("the dead letter holds the ticket");
        assert!(ids.contains_key(&format!("{}.r{}", ticket.ticket_id, ticket.revision)));
    }
    assert!(text(&out.stderr).contains("could not be delivered"), "{}", tail(&text(&out.stderr)));
}

#[test]
fn a_bad_signature_is_refused_by_the_receiver_and_not_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    // The receiver expects another sender's secret: every delivery fails verification.
    let receiver = Receiver::start(OTHER_SECRET, &dir.path().join("hooks.jsonl"), &[]);
    let file = pipeline(dir.path(), &input(dir.path(), "forged", 2), &receiver.url(), "max_attempts = 5\n");
    run(dir.path(), &file);
    let entries = receiver.entries();
    assert_eq!(entries.len(), 2, "a refusal (401) is final: one try each: {entries:?}");
    assert!(entries.iter().all(|e| e["verified"] == false && e["status"] == 401), "{entries:?}");
    let letters = dead_letters(dir.path());
    assert_eq!(letters.len(), 2);
    assert!(letters[0].error.contains("refused it on try 1: HTTP 401"), "{}", letters[0].error);
}

#[test]
fn killed_in_the_middle_of_its_retries_it_delivers_after_the_restart_with_the_same_webhook_id() {
    let dir = tempfile::tempdir().unwrap();
    let count = 4;
    let input = input(dir.path(), "killed", count);
    let down = Receiver::start(SECRET, &dir.path().join("down.jsonl"), &["--status", "503"]);
    let retrying =
        "max_attempts = 1000\nbackoff_initial_ms = 50\nbackoff_max_secs = 1\nbreaker_failures = 1000\n";
    let file = pipeline(dir.path(), &input, &down.url(), retrying);
    std::env::set_var(SECRET_ENV, SECRET);
    let (child, _address, log) = start(dir.path(), &file);
    wait_until(LIMIT, "every ticket tried at least twice", || {
        let ids = by_id(&down.entries());
        ids.len() == count && ids.values().all(|tries| tries.len() >= 2)
    });
    signal(&child, "KILL");
    let mut child = child;
    let _ = child.wait();
    let tried: Vec<String> = by_id(&down.entries()).into_keys().collect();
    drop(down);

    let up = Receiver::start(SECRET, &dir.path().join("up.jsonl"), &[]);
    let file = pipeline(dir.path(), &input, &up.url(), retrying);
    run(dir.path(), &file);
    let delivered = by_id(&up.entries());
    let delivered_ids: Vec<&String> = delivered.keys().collect();
    assert_eq!(
        delivered_ids,
        tried.iter().collect::<Vec<_>>(),
        "the restart delivers what the killed run was retrying, under the same ids; log: {}",
        tail(&log.lock().unwrap())
    );
    for (id, tries) in &delivered {
        assert!(tries.iter().all(|t| t["verified"] == true && t["status"] == 200), "{id}: {tries:?}");
    }
    assert!(dead_letters(dir.path()).is_empty());
}

#[test]
fn config_check_names_a_missing_or_malformed_webhook_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &input(dir.path(), "c", 1), "http://127.0.0.1:9/h", "");
    let check = |secret: Option<&str>| {
        let mut command = cull(dir.path(), &["config", "check", file.to_str().unwrap()]);
        command.env_remove(SECRET_ENV);
        if let Some(secret) = secret {
            command.env(SECRET_ENV, secret);
        }
        command.output().unwrap()
    };
    let missing = check(None);
    assert!(!missing.status.success());
    let stderr = text(&missing.stderr);
    assert!(
        stderr.contains(&format!(
            "sink.alert[0].secret_env: the environment variable `{SECRET_ENV}` is not set"
        )),
        "{stderr}"
    );
    let malformed = check(Some("whsec_!!"));
    assert!(!malformed.status.success());
    assert!(
        text(&malformed.stderr).contains("sink.alert[0].secret_env: the value of"),
        "{}",
        text(&malformed.stderr)
    );
    assert!(!text(&malformed.stderr).contains("whsec_!!"), "the secret is not printed");
    assert!(check(Some(SECRET)).status.success(), "{}", text(&check(Some(SECRET)).stderr));
}

#[test]
fn sigterm_in_the_middle_of_retries_stops_at_once_and_the_restart_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let count = 3;
    let input = input(dir.path(), "term", count);
    let down =
        Receiver::start(SECRET, &dir.path().join("down.jsonl"), &["--status", "503", "--retry-after", "30"]);
    // The receiver asks for 30 s between tries: a stop that waited for the backoff
    // would run into the 30 s shutdown deadline.
    let retrying = "max_attempts = 1000\nbackoff_max_secs = 30\nbreaker_failures = 1000\n";
    let file = pipeline(dir.path(), &input, &down.url(), retrying);
    std::env::set_var(SECRET_ENV, SECRET);
    let (child, _address, log) = start(dir.path(), &file);
    wait_until(LIMIT, "every ticket tried once", || by_id(&down.entries()).len() == count);
    let signalled = std::time::Instant::now();
    signal(&child, "TERM");
    let (status, _) = crate::durability::stopped(child, Duration::from_secs(20), &log);
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "the backoff was given up: {:?}",
        signalled.elapsed()
    );
    let log = log.lock().unwrap().clone();
    assert!(!status.success(), "work was left, and the exit says so");
    assert!(log.contains("stopped while delivering to alert sink care-hook"), "{}", tail(&log));
    drop(down);

    let up = Receiver::start(SECRET, &dir.path().join("up.jsonl"), &[]);
    run(dir.path(), &pipeline(dir.path(), &input, &up.url(), retrying));
    assert_eq!(by_id(&up.entries()).len(), count, "nothing was lost: {:?}", up.entries());
}

/// The SMTP server of the e-mail sink's own tests (aiosmtpd), stopped when dropped.
struct Smtp {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Smtp {
    fn start(dir: &Path) -> Smtp {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mails = dir.join("mails");
        std::fs::create_dir_all(&mails).unwrap();
        let mut child = Command::new(alert_python())
            .arg(repo().join("crates/cull-alert/tests/smtp_sink.py"))
            .args(["serve", &port.to_string(), mails.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the SMTP server starts");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready");
        Smtp { child, port, dir: mails }
    }

    /// Returns the mails received, parsed by Python's `email` package.
    fn mails(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Vec::new();
        }
        let out = Command::new(alert_python())
            .arg(repo().join("crates/cull-alert/tests/smtp_sink.py"))
            .arg("parse")
            .args(&files)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a pipeline whose tickets are mailed by an e-mail sink in `mode`.
fn email_pipeline(dir: &Path, input: &Path, port: u16, mode: &str) -> PathBuf {
    let sink = format!(
        "[[sink.alert]]\nname = \"care-mail\"\nkind = \"email\"\nbackoff_initial_ms = 20\n\
         [sink.alert.email]\nfrom = \"cull <alerts@example.com>\"\nto = [\"care@example.com\"]\nmode = \"{mode}\"\n\
         unsubscribe = \"mailto:unsubscribe@example.com\"\nstate_dir = \"data/alerts\"\n\
         [sink.alert.email.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n"
    );
    pipeline_with(dir, input, &sink)
}

#[test]
fn a_run_mails_each_ticket_as_it_happens_or_keeps_it_durably_for_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path());
    let input = input(dir.path(), "mail", 3);
    run_once(dir.path(), &email_pipeline(dir.path(), &input, smtp.port, "as-it-happens"), LIMIT);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 3, "one mail per ticket: {mails:?}");
    assert!(mails.iter().all(|m| m.to_string().contains("Slack")), "{mails:?}");
    assert!(dead_letters(dir.path()).is_empty());

    // The same tickets in a daily digest: nothing is mailed before 08:00 comes, and the
    // items wait in the state file, not in memory.
    let digest = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(digest.path());
    let input = self::input(digest.path(), "digest", 3);
    run_once(digest.path(), &email_pipeline(digest.path(), &input, smtp.port, "weekly"), LIMIT);
    assert!(smtp.mails().is_empty(), "a weekly digest is not due yet");
    let state =
        std::fs::read_to_string(digest.path().join("data/alerts/care-mail.json")).expect("the digest state");
    for i in 0..3 {
        assert!(state.contains(&format!("digest{i}")), "item {i} is pending in the state: {state}");
    }
}

#[test]
fn the_shipped_alerts_pipeline_checks_with_its_variables_and_names_each_missing_one() {
    let variables = [
        ("CULL_CRM_WEBHOOK_SECRET", SECRET),
        ("CULL_SLACK_CARE_URL", "https://hooks.slack.com/services/T0/B0/x"),
        ("CULL_TEAMS_ESCALATIONS_URL", "https://example.webhook.office.com/webhookb2/x"),
        ("CULL_TEAMS_ACME_URL", "https://example.webhook.office.com/webhookb2/acme"),
        ("CULL_SMTP_USERNAME", "cull"),
        ("CULL_SMTP_PASSWORD", "secret"),
    ];
    let check = |set: &[(&str, &str)]| {
        let mut command = cull(&repo(), &["config", "check", "pipelines/alerts.toml"]);
        for (name, _) in variables {
            command.env_remove(name);
        }
        command.envs(set.iter().copied());
        command.output().unwrap()
    };
    let all = check(&variables);
    assert!(all.status.success(), "{}", text(&all.stderr));
    assert!(text(&all.stdout).starts_with("pipelines/alerts.toml: OK; rules"), "{}", text(&all.stdout));
    let none = check(&[]);
    assert!(!none.status.success());
    assert!(!text(&none.stdout).contains("OK"), "a file with problems is not OK: {}", text(&none.stdout));
    let stderr = text(&none.stderr);
    for (key, (name, _)) in [
        "sink.alert[0].secret_env",
        "sink.alert[1].url_env",
        "sink.alert[2].url_env",
        "sink.alert[3].url_env",
        "sink.alert[4].email.smtp.username_env",
        "sink.alert[4].email.smtp.password_env",
    ]
    .iter()
    .zip(variables)
    {
        assert!(
            stderr.contains(&format!("{key}: the environment variable `{name}` is not set")),
            "{key}: {stderr}"
        );
    }
}
