//! The e-mail sink against a real SMTP server (aiosmtpd), its mails read back by
//! Python's `email` package: both from the venv of `scripts/alert-venv.sh`, through
//! `tests/smtp_sink.py`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;

use cull_alert::email::EmailSink;
use cull_alert::{AlertConfig, AlertError, Context, NoObserver, Outcome, Stop};
use cull_model::Ticket;
use serde_json::Value;
use time::macros::datetime;
use time::OffsetDateTime;

/// The repository root (tests run in the crate's directory).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

/// The venv's python, made by `scripts/alert-venv.sh`.
fn python() -> PathBuf {
    let script = repo_root().join("scripts/alert-venv.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(out.status.success(), "{} failed: {}", script.display(), out.status);
    let stdout = String::from_utf8(out.stdout).expect("the venv path is UTF-8");
    PathBuf::from(stdout.lines().last().expect("alert-venv.sh prints the python path"))
}

fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py")
}

/// An aiosmtpd server on loopback that writes each mail to a directory.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Server {
    fn start(port: u16, credentials: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(python());
        command.arg(helper()).arg("serve").arg(port.to_string()).arg(dir.path());
        command.args(credentials);
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("python runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        let stdin = child.stdin.take();
        Server { child, stdin, dir, port }
    }

    /// The mails received so far, parsed by Python's `email`, with their envelope
    /// recipients as `rcpt`.
    fn mails(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Vec::new();
        }
        let out = Command::new(python()).arg(helper()).arg("parse").args(&files).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let parsed = String::from_utf8(out.stdout).unwrap();
        parsed
            .lines()
            .zip(&files)
            .map(|(line, file)| {
                let mut mail: Value = serde_json::from_str(line).unwrap();
                let rcpt = std::fs::read_to_string(file.with_extension("rcpt")).unwrap();
                mail["rcpt"] = rcpt.lines().collect::<Vec<_>>().into();
                mail
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (at the moment of asking).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config(port: u16, state_dir: &Path, email: &str) -> AlertConfig {
    let text = format!(
        "name = 'mail'\nkind = 'email'\nmax_attempts = 2\nbackoff_initial_ms = 10\nbackoff_max_secs = 1\n\
         timeout_secs = 5\nconsole_url = 'https://console.example'\n\
         [email]\nfrom = 'cull <alerts@example.com>'\nto = ['care@example.com']\n\
         unsubscribe = 'https://u.example/unsub'\nstate_dir = '{}'\n{email}\n\
         [email.to_by_queue]\nbilling = ['bill@example.com', 'boss@example.com']\n\
         [email.smtp]\nhost = '127.0.0.1'\nport = {port}\ntls = 'none'\n",
        state_dir.display()
    );
    let config: AlertConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    config
}

fn context() -> Context {
    Context { sink: "mail".into(), observer: Arc::new(NoObserver), stop: Stop::never() }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn open(config: &AlertConfig) -> EmailSink {
    EmailSink::open(0, config, &no_env, context()).unwrap()
}

fn ticket(id: &str, queue: &str, priority: &str, created_at: &str) -> Ticket {
    serde_json::from_value(serde_json::json!({
        "schema": "cull.ticket/v1",
        "ticket_id": id,
        "revision": 1,
        "created_at": created_at,
        "queue": queue,
        "priority": priority,
        "priority_score": 55,
        "sla_due_at": "2026-11-25T11:00:00Z",
        "rule": {"id": "slack-company", "name": "Slack (the company)", "version": "r1"},
        "mention": {
            "schema": "cull.mention/v1",
            "id": format!("m-{id}"),
            "url": format!("https://x.example/status/{id}"),
            "title": format!("{id}: Slack is down <again> & \"again\""),
            "text": "Slack is down again, support is useless",
        },
        "spans": [{"field": "text", "start": 0, "end": 5}, {"field": "text", "start": 30, "end": 999}],
        "snippet": "Slack is down again",
    }))
    .expect("a ticket")
}

const NOW: OffsetDateTime = datetime!(2026-11-25 10:20 UTC);

#[tokio::test]
async fn a_mail_as_it_happens_has_text_and_escaped_html_with_marks_headers_and_queue_recipients() {
    let server = Server::start(free_port(), None);
    let state = tempfile::tempdir().unwrap();
    let mut sink = open(&config(server.port, state.path(), ""));
    let care = ticket("t1", "social-care", "P2", "2026-11-25T10:00:00Z");
    let billing = ticket("t2", "billing", "P1", "2026-11-25T10:01:00Z");
    let outcomes = sink.deliver(&[&care, &billing], NOW).await.unwrap();
    assert_eq!(outcomes, [Outcome::Delivered, Outcome::Delivered]);
    assert!(sink.make_durable(false).unwrap());
    let mails = server.mails();
    assert_eq!(mails.len(), 2);
    let mail = &mails[0];
    assert_eq!(mail["content_type"], "multipart/alternative");
    assert_eq!(
        mail["subject"],
        "[P2] social-care · Slack (the company): t1: Slack is down <again> & \"again\""
    );
    assert_eq!(mail["to"], serde_json::json!(["care@example.com"]));
    assert_eq!(mail["list_unsubscribe"], "<https://u.example/unsub>");
    assert_eq!(mail["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
    assert_eq!(mail["message_id"], "<cull.t1.1@example.com>");
    let text = mail["text"].as_str().unwrap();
    assert!(text.contains("Slack is down again, support is useless"), "{text}");
    assert!(text.contains("https://console.example/mentions/m-t1"), "{text}");
    let html = mail["html"].as_str().unwrap();
    assert!(html.contains("t1: Slack is down &lt;again&gt; &amp; &quot;again&quot;"), "{html}");
    assert!(html.contains("<mark>Slack</mark> is down again"), "{html}");
    assert!(!html.contains("<again>"), "{html}");
    assert!(html.contains("href=\"https://x.example/status/t1\""), "{html}");
    assert!(html.contains("href=\"https://console.example/mentions/m-t1\""), "{html}");
    assert_eq!(mails[1]["rcpt"], serde_json::json!(["bill@example.com", "boss@example.com"]));
    assert!(mails[1]["subject"].as_str().unwrap().starts_with("[P1] billing"));
}

#[tokio::test]
async fn a_digest_lists_the_best_items_in_priority_order_and_how_many_more() {
    let server = Server::start(free_port(), None);
    let state = tempfile::tempdir().unwrap();
    let mut sink =
        open(&config(server.port, state.path(), "mode = 'daily'\nmax_items = 2\nsend_at = '08:00'"));
    let tickets = [
        ticket("a", "social-care", "P3", "2026-11-25T10:00:00Z"),
        ticket("b", "social-care", "P1", "2026-11-25T10:01:00Z"),
        ticket("c", "social-care", "P2", "2026-11-25T10:02:00Z"),
        ticket("d", "social-care", "P1", "2026-11-25T10:03:00Z"),
        ticket("e", "billing", "P4", "2026-11-25T10:04:00Z"),
    ];
    let refs: Vec<&Ticket> = tickets.iter().collect();
    assert_eq!(sink.deliver(&refs, NOW).await.unwrap(), vec![Outcome::Held; 5]);
    assert!(sink.make_durable(true).unwrap());
    sink.tick(datetime!(2026-11-26 07:59 UTC)).await.unwrap();
    assert!(server.mails().is_empty(), "not due before 08:00");
    sink.tick(datetime!(2026-11-26 08:00 UTC)).await.unwrap();
    sink.tick(datetime!(2026-11-26 08:01 UTC)).await.unwrap();
    let mails = server.mails();
    assert_eq!(mails.len(), 2, "one digest per recipient set, once");
    let care = mails.iter().find(|m| m["to"] == serde_json::json!(["care@example.com"])).unwrap();
    assert_eq!(care["subject"], "[cull] 4 tickets in the daily digest of 2026-11-26 08:00 UTC");
    let text = care["text"].as_str().unwrap();
    let (d, b) = (text.find("d: Slack").unwrap(), text.find("b: Slack").unwrap());
    assert!(d < b, "P1s newest first: {text}");
    assert!(!text.contains("a: Slack") && !text.contains("c: Slack"), "{text}");
    assert!(text.contains("P1 · SLA due 2026-11-25T11:00:00Z · Slack (the company)"), "{text}");
    assert!(text.contains("and 2 more"), "{text}");
    assert!(care["html"].as_str().unwrap().contains("and 2 more"));
    assert_eq!(care["list_unsubscribe"], "<https://u.example/unsub>");
    assert!(
        care["message_id"].as_str().unwrap().starts_with("<cull.digest.mail.1795680000."),
        "{}",
        care["message_id"]
    );
    assert!(sink.make_durable(true).unwrap());
}

#[tokio::test]
async fn a_restart_in_the_middle_delivers_each_item_exactly_once() {
    let server = Server::start(free_port(), None);
    let state = tempfile::tempdir().unwrap();
    let config = config(server.port, state.path(), "mode = 'hourly'");
    let one = ticket("one", "social-care", "P2", "2026-11-25T10:00:00Z");
    let two = ticket("two", "social-care", "P2", "2026-11-25T10:01:00Z");
    let three = ticket("three", "social-care", "P2", "2026-11-25T10:02:00Z");
    {
        let mut sink = open(&config);
        sink.deliver(&[&one, &two], NOW).await.unwrap();
        assert!(sink.make_durable(true).unwrap());
    }
    let mut sink = open(&config);
    // The batch whose offsets were not committed comes again, with a new ticket.
    assert_eq!(sink.deliver(&[&two, &three], NOW).await.unwrap(), [Outcome::Held, Outcome::Held]);
    assert!(sink.make_durable(true).unwrap());
    sink.tick(datetime!(2026-11-25 11:00 UTC)).await.unwrap();
    assert!(sink.make_durable(true).unwrap());
    // The replay of the batch after the digest went adds nothing.
    drop(sink);
    let mut sink = open(&config);
    sink.deliver(&[&three], NOW).await.unwrap();
    sink.tick(datetime!(2026-11-25 13:00 UTC)).await.unwrap();
    let mails = server.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let text = mails[0]["text"].as_str().unwrap();
    for id in ["one", "two", "three"] {
        assert_eq!(text.matches(&format!("{id}: Slack")).count(), 1, "{id} in {text}");
    }
    assert_eq!(mails[0]["subject"], "[cull] 3 tickets in the hourly digest of 2026-11-25 11:00 UTC");
}

#[tokio::test]
async fn server_down_fails_a_mail_after_its_tries_and_keeps_a_digest_pending() {
    let port = free_port();
    let state = tempfile::tempdir().unwrap();
    let mut sink = open(&config(port, state.path(), ""));
    let one = ticket("one", "social-care", "P2", "2026-11-25T10:00:00Z");
    let outcomes = sink.deliver(&[&one], NOW).await.unwrap();
    match &outcomes[..] {
        [Outcome::Failed(error)] => assert!(error.contains("failed 2 tries (max_attempts)"), "{error}"),
        other => panic!("{other:?}"),
    }

    let config = config(port, state.path(), "mode = 'hourly'");
    let mut sink = open(&config);
    sink.deliver(&[&one], NOW).await.unwrap();
    sink.tick(datetime!(2026-11-25 11:00 UTC)).await.unwrap();
    assert!(sink.make_durable(true).unwrap());
    drop(sink);
    let server = Server::start(port, None);
    let mut sink = open(&config);
    sink.tick(datetime!(2026-11-25 11:05 UTC)).await.unwrap();
    let mails = server.mails();
    assert_eq!(mails.len(), 1, "the pending digest goes once the server is back");
    assert!(mails[0]["text"].as_str().unwrap().contains("one: Slack"));
}

#[tokio::test]
async fn smtp_auth_uses_the_username_and_password_from_the_environment() {
    let server = Server::start(free_port(), Some("robot:s3cret"));
    let state = tempfile::tempdir().unwrap();
    let mut config = config(server.port, state.path(), "");
    let smtp = &mut config.email.as_mut().unwrap().smtp;
    smtp.username_env = Some("SMTP_USER".into());
    smtp.password_env = Some("SMTP_PASSWORD".into());
    let one = ticket("one", "social-care", "P2", "2026-11-25T10:00:00Z");

    let missing = EmailSink::open(0, &config, &no_env, context()).unwrap_err();
    assert!(
        matches!(&missing, AlertError::MissingEnv { variable, .. } if variable == "SMTP_USER"),
        "{missing}"
    );

    let wrong = |name: &str| Some(if name == "SMTP_USER" { "robot" } else { "guess" }.to_string());
    let mut sink = EmailSink::open(0, &config, &wrong, context()).unwrap();
    match &sink.deliver(&[&one], NOW).await.unwrap()[..] {
        [Outcome::Failed(error)] => assert!(error.contains("refused it on try 1"), "a 535 is final: {error}"),
        other => panic!("{other:?}"),
    }

    let right = |name: &str| Some(if name == "SMTP_USER" { "robot" } else { "s3cret" }.to_string());
    let mut sink = EmailSink::open(0, &config, &right, context()).unwrap();
    assert_eq!(sink.deliver(&[&one], NOW).await.unwrap(), [Outcome::Delivered]);
    assert_eq!(server.mails().len(), 1);
}

#[test]
fn a_corrupt_digest_state_is_an_error_naming_its_path() {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("mail.json"), b"{\"due\": ").unwrap();
    let config = config(free_port(), state.path(), "mode = 'daily'");
    let error = EmailSink::open(0, &config, &no_env, context()).unwrap_err();
    assert!(matches!(error, AlertError::State { .. }), "{error}");
    assert!(error.to_string().contains("mail.json is not a digest state"), "{error}");
}

#[tokio::test]
async fn a_stop_gives_up_the_backoff_and_leaves_the_digest_pending() {
    let port = free_port();
    let state = tempfile::tempdir().unwrap();
    let mut config = config(port, state.path(), "mode = 'hourly'");
    config.max_attempts = Some(6);
    config.backoff_initial_ms = Some(60_000);
    config.backoff_max_secs = Some(600);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let context = Context { stop: Stop::new(stopped), ..context() };
    let mut sink = EmailSink::open(0, &config, &no_env, context.clone()).unwrap();
    let one = ticket("one", "social-care", "P2", "2026-11-25T10:00:00Z");
    sink.deliver(&[&one], NOW).await.unwrap();
    assert!(sink.make_durable(true).unwrap());
    stop.send(true).unwrap();
    let error = sink.tick(datetime!(2026-11-25 11:00 UTC)).await.unwrap_err();
    assert!(error.left.contains("the retry was given up"), "{error}");

    config.email.as_mut().unwrap().mode = cull_alert::config::EmailMode::AsItHappens;
    let mut sink = EmailSink::open(0, &config, &no_env, context).unwrap();
    assert!(sink.deliver(&[&one], NOW).await.is_err(), "a stopped run delivers again at the next start");

    config.email.as_mut().unwrap().mode = cull_alert::config::EmailMode::Hourly;
    let server = Server::start(port, None);
    let mut sink = open(&config);
    sink.tick(datetime!(2026-11-25 11:00 UTC)).await.unwrap();
    assert_eq!(server.mails().len(), 1, "the digest given up stayed pending");
}

#[tokio::test]
async fn starttls_is_required_when_asked_for() {
    let server = Server::start(free_port(), None);
    let state = tempfile::tempdir().unwrap();
    let mut config = config(server.port, state.path(), "");
    config.email.as_mut().unwrap().smtp.tls = cull_alert::config::SmtpTls::Starttls;
    let mut sink = open(&config);
    let one = ticket("one", "social-care", "P2", "2026-11-25T10:00:00Z");
    match &sink.deliver(&[&one], NOW).await.unwrap()[..] {
        [Outcome::Failed(error)] => assert!(error.contains("refused it on try 1"), "{error}"),
        other => panic!("a server without STARTTLS got the mail in the clear: {other:?}"),
    }
    assert!(server.mails().is_empty());
}
