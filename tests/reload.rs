//! Hot rule reload in a running pipeline: file changes (debounced), a broken pack, a
//! deleted file, SIGHUP.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cull_model::{Ticket, Verdict};

use crate::pipeline::{cull, get};

const OPERATOR_TOKEN: &str = "op-token-0123456789";
const ANALYST_TOKEN: &str = "an-token-0123456789";
const ACME_OPERATOR: &str = "acme-op-token-0123456789";
const GLOBEX_OPERATOR: &str = "globex-op-token-0123456789";
const OPERATOR_AND_ANALYST: &str = "operator@*:op-token-0123456789,analyst@*:an-token-0123456789,\
                                    operator@acme:acme-op-token-0123456789,operator@globex:globex-op-token-0123456789";

fn rule(id: &str, word: &str) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\nname = \"{id}\"\nquery = '{word}'\npriority = \"P2\"\nqueue = \"care\"\n"
    )
}

/// An environment variable of the running pipeline that no response or log may show.
const SECRET: (&str, &str) = ("CULL_TEST_SECRET", "hunter2-never-shown");

/// Starts `cull run` on `file` with `env`, keeps every line of its log, and returns it
/// with the address it listens on and the log, once it is ready (its API answers
/// `503` before).
pub fn run_logged(file: &Path, env: &[(&str, &str)]) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = cull(&["run", file.to_str().unwrap()], env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (sender, receiver) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(address) = line.split("listen=").nth(1) {
                let _ = sender.send(address.trim().to_string());
            }
            lines.lock().unwrap().push(line);
        }
    });
    let address = receiver.recv_timeout(Duration::from_secs(30)).expect("cull run logs its address");
    crate::pipeline::wait_ready(&address);
    (child, address, log)
}

struct Running {
    child: Child,
    address: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(dir: &Path, watch: bool) -> Running {
        Running::start_with(dir, watch, "")
    }

    fn start_with(dir: &Path, watch: bool, extra: &str) -> Running {
        let file = dir.join("pipeline.toml");
        std::fs::write(
            &file,
            format!(
                "[bus]\nkind = \"embedded\"\n[bus.embedded]\ndir = \"{d}/bus\"\n[matcher]\nrules = \"{d}/rules\"\nwatch = {watch}\nbatch_wait_ms = 10\n\
                 [[source]]\nkind = \"jsonl\"\nname = \"tail\"\npath = \"{d}/in.jsonl\"\nfollow = true\nfollow_interval_ms = 20\n\
                 [sink.tickets]\nkind = \"jsonl\"\npath = \"{d}/tickets.jsonl\"\n\
                 [sink.verdicts]\nkind = \"jsonl\"\npath = \"{d}/verdicts.jsonl\"\n[http]\nlisten = \"127.0.0.1:0\"\n{extra}",
                d = dir.display()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("in.jsonl"), "").unwrap();
        let tokens = ("CULL_API_TOKENS", OPERATOR_AND_ANALYST);
        let (child, address, log) = run_logged(&file, &[("RUST_LOG", "info"), tokens, SECRET]);
        Running { child, address, log }
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let (_, metrics) = get(&self.address, "/metrics").ok()?;
        metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    fn wait_metric(&self, series: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.metric(series) != Some(value) {
            assert!(Instant::now() < deadline, "{series} never became {value}: {:?}", self.metric(series));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(mut self) {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(self.child.wait().unwrap().success());
    }
}

fn mention(dir: &Path, id: &str, text: &str) {
    mention_in(dir, "in.jsonl", id, text);
}

fn mention_in(dir: &Path, file: &str, id: &str, text: &str) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(file)).unwrap();
    writeln!(file, "{{\"schema\":\"cull.mention/v1\",\"id\":\"{id}\",\"text\":\"{text}\"}}").unwrap();
}

/// Waits for the verdict of mention `id` and returns it with the rules its tickets
/// were opened for.
fn outcome(dir: &Path, id: &str) -> (Verdict, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let verdicts = std::fs::read_to_string(dir.join("verdicts.jsonl")).unwrap_or_default();
        if let Some(verdict) =
            verdicts.lines().map(|l| serde_json::from_str::<Verdict>(l).unwrap()).find(|v| v.mention_id == id)
        {
            // The tickets sink runs beside the verdicts sink: wait for one ticket per
            // matched rule (or a moment, when none is expected).
            let found = Instant::now();
            let rules = loop {
                let tickets = std::fs::read_to_string(dir.join("tickets.jsonl")).unwrap_or_default();
                let rules: Vec<String> = tickets
                    .lines()
                    .map(|l| serde_json::from_str::<Ticket>(l).unwrap())
                    .filter(|t| t.mention.id == id)
                    .map(|t| t.rule.id)
                    .collect();
                let settled = !verdict.matched.is_empty() || found.elapsed() >= Duration::from_millis(300);
                if (rules.len() >= verdict.matched.len() && settled) || Instant::now() >= deadline {
                    break rules;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            return (verdict, rules);
        }
        assert!(Instant::now() < deadline, "no verdict for {id}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rule_files_reload_live_and_a_broken_pack_keeps_the_running_set() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/a.toml"), rule("alpha", "alphaword")).unwrap();
    let running = Running::start(dir, true);
    running.wait_metric("cull_rules_loaded", 1.0);
    mention(dir, "m1", "an alphaword here");
    let (first, rules) = outcome(dir, "m1");
    assert_eq!(rules, ["alpha"]);

    // A new file is picked up without a restart; verdicts name the new version.
    std::fs::write(dir.join("rules/b.toml"), rule("beta", "betaword")).unwrap();
    running.wait_metric("cull_rules_loaded", 2.0);
    mention(dir, "m2", "a betaword there");
    let (second, rules) = outcome(dir, "m2");
    assert_eq!(rules, ["beta"]);
    assert_ne!(first.ruleset_version, second.ruleset_version);

    // A burst of saves is one reload (or very few), not twenty.
    let before = running.metric("cull_rules_reloads_total").unwrap();
    for n in 0..20 {
        std::fs::write(
            dir.join("rules/b.toml"),
            rule("beta", if n % 2 == 0 { "betaword" } else { "betaword OR gammaword" }),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_secs(2));
    let reloads = running.metric("cull_rules_reloads_total").unwrap() - before;
    assert!((1.0..=3.0).contains(&reloads), "{reloads} reloads for a burst of 20 saves");

    // A broken pack is refused whole, with located errors, and matching goes on.
    std::fs::write(dir.join("rules/c.toml"), "[[rule]]\nid = \"broken\"\nquery = '\"unclosed'\npriority = \"P2\"\nqueue = \"care\"\nname = \"x\"\n").unwrap();
    running.wait_metric("cull_rules_last_reload_success", 0.0);
    running.wait_metric("cull_rules_reload_errors_total", 1.0);
    assert_eq!(running.metric("cull_rules_loaded"), Some(2.0));
    let logged = running.log.lock().unwrap().join("\n");
    assert!(logged.contains("c.toml:3:"), "the error names file:line:column:\n{logged}");
    mention(dir, "m3", "betaword again");
    assert_eq!(outcome(dir, "m3").1, ["beta"], "the running set still matches");

    // Fixing it reloads; deleting a file mid-run drops its rules.
    std::fs::remove_file(dir.join("rules/c.toml")).unwrap();
    running.wait_metric("cull_rules_last_reload_success", 1.0);
    std::fs::remove_file(dir.join("rules/b.toml")).unwrap();
    running.wait_metric("cull_rules_loaded", 1.0);
    mention(dir, "m4", "betaword once more");
    let (verdict, rules) = outcome(dir, "m4");
    assert!(rules.is_empty() && verdict.matched.is_empty(), "{verdict:?}");
    running.stop();
}

#[test]
fn sighup_reloads_when_watching_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/a.toml"), rule("alpha", "alphaword")).unwrap();
    let running = Running::start(dir, false);
    running.wait_metric("cull_rules_loaded", 1.0);
    std::fs::write(dir.join("rules/b.toml"), rule("beta", "betaword")).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(running.metric("cull_rules_loaded"), Some(1.0), "no watching: nothing changes by itself");
    let status =
        std::process::Command::new("kill").args(["-HUP", &running.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    running.wait_metric("cull_rules_loaded", 2.0);
    mention(dir, "m1", "betaword");
    assert_eq!(outcome(dir, "m1").1, ["beta"]);
    running.stop();
}

/// POSTs to the reload endpoint with `token`; returns the status and the body.
fn post_reload(address: &str, token: &str) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    // Generous: only a hung reload takes this long.
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        stream,
        "POST /api/rules/reload HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// Starts a pipeline serving the API over a rules directory holding one rule.
fn with_api_and_one_rule(dir: &Path) -> Running {
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/a.toml"), rule("alpha", "alphaword")).unwrap();
    let running = Running::start_with(dir, false, "[api]\nenabled = true\n");
    running.wait_metric("cull_rules_loaded", 1.0);
    running
}

#[test]
fn operators_reload_through_the_api_and_analysts_cannot() {
    let tempdir = tempfile::tempdir().unwrap();
    let dir = tempdir.path();
    let running = with_api_and_one_rule(dir);
    std::fs::write(dir.join("rules/b.toml"), rule("beta", "betaword")).unwrap();
    assert_eq!(post_reload(&running.address, ANALYST_TOKEN).0, 403, "analysts cannot reload");
    assert_eq!(post_reload(&running.address, "wrong").0, 401);
    assert_eq!(running.metric("cull_rules_loaded"), Some(1.0));
    let (status, body) = post_reload(&running.address, OPERATOR_TOKEN);
    assert_eq!(status, 200, "{body}");
    let reloaded: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reloaded["rules"], 2);
    assert_eq!(reloaded["compiled_files"], 1, "a.toml is as the start loaded it: {body}");
    assert_eq!(running.metric("cull_rules_loaded"), Some(2.0));

    std::fs::write(dir.join("rules/c.toml"), "[[rule]]\nid = \"c\"\n").unwrap();
    let (status, body) = post_reload(&running.address, OPERATOR_TOKEN);
    assert_eq!(status, 422, "{body}");
    let refused: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(refused["errors"][0].as_str().unwrap().contains("c.toml:"), "{body}");
    assert_eq!(running.metric("cull_rules_loaded"), Some(2.0), "the running set stays");

    // The refused pack is remembered as it runs: with the broken file gone, nothing
    // needs compiling.
    std::fs::remove_file(dir.join("rules/c.toml")).unwrap();
    let (status, body) = post_reload(&running.address, OPERATOR_TOKEN);
    assert_eq!(status, 200, "{body}");
    let reloaded: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (reloaded["rules"].as_u64(), reloaded["compiled_files"].as_u64()),
        (Some(2), Some(0)),
        "{body}"
    );
    running.stop();
}

#[test]
fn reloads_refuse_links_out_of_the_directory_and_fifos_and_return_warnings() {
    let tempdir = tempfile::tempdir().unwrap();
    let dir = tempdir.path();
    let running = with_api_and_one_rule(dir);

    std::os::unix::fs::symlink("/proc/self/environ", dir.join("rules/env.toml")).unwrap();
    let (status, body) = post_reload(&running.address, OPERATOR_TOKEN);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("env.toml: it is a symbolic link to /proc/"), "{body}");
    std::fs::remove_file(dir.join("rules/env.toml")).unwrap();

    assert!(std::process::Command::new("mkfifo")
        .arg(dir.join("rules/fifo.toml"))
        .status()
        .unwrap()
        .success());
    let (status, body) = post_reload(&running.address, OPERATOR_TOKEN);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("fifo.toml: it is not a regular file but a FIFO"), "{body}");
    std::fs::remove_file(dir.join("rules/fifo.toml")).unwrap();

    std::fs::write(dir.join("rules/b.toml"), rule("beta", "beta and gamma")).unwrap();
    let (status, body) = post_reload(&running.address, OPERATOR_TOKEN);
    assert_eq!(status, 200, "warnings never refuse a pack: {body}");
    let reloaded: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reloaded["rules"], 2);
    let warning = reloaded["warnings"][0].as_str().unwrap();
    assert!(warning.contains("`and` is searched as a word") && warning.contains("b.toml:4:15"), "{body}");
    assert_eq!(running.metric("cull_rules_last_reload_warnings"), Some(1.0));
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = running.log.lock().unwrap().join("\n");
        if log.contains("b.toml:4:15") || Instant::now() >= deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(log.contains("b.toml:4:15"), "the warning is logged with its place: {log}");
    assert!(!log.contains(SECRET.1) && !body.contains(SECRET.1), "{log}");
    running.stop();
}

#[test]
fn reloads_during_a_stream_lose_no_mention() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/a.toml"), rule("alpha", "alphaword")).unwrap();
    let running = Running::start(dir, true);
    running.wait_metric("cull_rules_loaded", 1.0);
    let total = 3000;
    let writer = {
        let path = dir.join("in.jsonl");
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            for n in 0..total {
                writeln!(
                    file,
                    "{{\"schema\":\"cull.mention/v1\",\"id\":\"s{n}\",\"text\":\"alphaword betaword {n}\"}}"
                )
                .unwrap();
                if n % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };
    for n in 0..6 {
        let word = if n % 2 == 0 { "betaword" } else { "gammaword" };
        std::fs::write(dir.join("rules/b.toml"), rule("beta", word)).unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }
    writer.join().unwrap();
    running.wait_metric("cull_matcher_mentions_total{outcome=\"matched\"}", f64::from(total));
    assert!(running.metric("cull_rules_reloads_total").unwrap() >= 3.0, "reloads happened during the stream");
    // The verdicts sink writes after the matcher counts: wait for it to catch up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let verdicts = loop {
        let verdicts = std::fs::read_to_string(dir.join("verdicts.jsonl")).unwrap();
        if verdicts.lines().count() >= total as usize || Instant::now() >= deadline {
            break verdicts;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut ids: Vec<String> =
        verdicts.lines().map(|l| serde_json::from_str::<Verdict>(l).unwrap().mention_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total as usize, "one verdict per mention, none lost");
    let versions: std::collections::BTreeSet<String> = verdicts
        .lines()
        .map(|l| serde_json::from_str::<Verdict>(l).unwrap().ruleset_version.into())
        .collect();
    assert!(versions.len() >= 2, "verdicts name the versions they were made with: {versions:?}");
    running.stop();
}

#[test]
fn a_clients_operator_reloads_only_that_clients_pack_and_hears_only_of_it() {
    let tempdir = tempfile::tempdir().unwrap();
    let dir = tempdir.path();
    std::fs::create_dir_all(dir.join("rules/acme")).unwrap();
    std::fs::create_dir_all(dir.join("rules/globex")).unwrap();
    std::fs::write(dir.join("rules/global.toml"), rule("shared", "sharedword")).unwrap();
    std::fs::write(dir.join("rules/acme/a.toml"), rule("brand", "acmeword")).unwrap();
    std::fs::write(dir.join("rules/globex/g.toml"), rule("brand", "globexword")).unwrap();
    let sources: String = ["acme", "globex"]
        .map(|client| {
            std::fs::write(dir.join(format!("in-{client}.jsonl")), "").unwrap();
            format!(
                "[[source]]\nkind = \"jsonl\"\nname = \"{client}-tail\"\nclient = \"{client}\"\npath = \"{}/in-{client}.jsonl\"\nfollow = true\nfollow_interval_ms = 20\n",
                dir.display()
            )
        })
        .concat();
    let running = Running::start_with(dir, false, &format!("[api]\nenabled = true\n{sources}"));
    running.wait_metric("cull_rules_loaded", 3.0);
    mention_in(dir, "in-acme.jsonl", "a1", "acmeword globexword sharedword");
    mention_in(dir, "in-globex.jsonl", "g1", "acmeword globexword sharedword");
    let (acme, rules) = outcome(dir, "acme:a1");
    assert_eq!(
        (acme.client.as_deref(), rules),
        (Some("acme"), vec!["shared".to_string(), "brand".to_string()])
    );
    let (globex, _) = outcome(dir, "globex:g1");
    let matched: Vec<&str> = globex.matched.iter().map(|m| m.rule_id.as_str()).collect();
    assert_eq!(matched, ["shared", "brand"], "globex's own brand rule, whose word is globexword");

    // globex's pack breaks; acme's operator reloads a new acme rule: it applies, and the
    // answer says nothing of globex.
    std::fs::write(dir.join("rules/globex/g.toml"), "[[rule]\nid = 'broken'\n").unwrap();
    std::fs::write(
        dir.join("rules/acme/a.toml"),
        format!("{}\n{}", rule("brand", "acmeword"), rule("launch", "newacmeword")),
    )
    .unwrap();
    let (status, body) = post_reload(&running.address, ACME_OPERATOR);
    assert_eq!(status, 200, "{body}");
    let reloaded: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reloaded["rules"], 2, "acme's pack: {body}");
    assert!(!body.contains("globex") && !body.contains("g.toml") && !body.contains("shared"), "{body}");
    running.wait_metric("cull_rules_loaded", 4.0);
    mention_in(dir, "in-acme.jsonl", "a2", "newacmeword");
    assert_eq!(outcome(dir, "acme:a2").1, ["launch"]);
    mention_in(dir, "in-globex.jsonl", "g2", "newacmeword globexword");
    let (globex, _) = outcome(dir, "globex:g2");
    let matched: Vec<&str> = globex.matched.iter().map(|m| m.rule_id.as_str()).collect();
    assert_eq!(matched, ["brand"], "globex keeps its running rules, and never meets acme's new one");

    // globex's operator hears of globex's errors only; the staff hear of every pack's.
    let (status, body) = post_reload(&running.address, GLOBEX_OPERATOR);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("g.toml:1:") && !body.contains("a.toml") && !body.contains("acme"), "{body}");
    let (status, body) = post_reload(&running.address, OPERATOR_TOKEN);
    assert_eq!(status, 422, "{body}");
    let refused: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refused["refused"], serde_json::json!(["globex"]), "{body}");
    assert_eq!(refused["reloaded"]["rules"], 3, "the global pack and acme's were taken: {body}");
    assert_eq!(post_reload(&running.address, ANALYST_TOKEN).0, 403);
    running.stop();
}
