//! Clients: one deployment serving two clients whose brand words overlap. A client's
//! mentions meet only its rules and the global ones, become tickets on its own topics,
//! and no answer to its token holds anything of the other client's: no id, rule,
//! facet value, count or snippet, whichever route, parameter or page asks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cull_model::{DeadLetter, Ticket, Verdict};
use serde_json::{json, Value};

use crate::api::{serve, Server};
use crate::console::Browser;
use crate::corpus::real_mentions;
use crate::pipeline::{cull, text};

const ACME: &str = "acme-analyst-token-0123456789";
const GLOBEX: &str = "globex-analyst-token-0123456789";
const STAFF: &str = "staff-analyst-token-0123456789";

/// Mentions per client; the house (the contact center itself) has a few more.
const PER_CLIENT: usize = 40;
const HOUSE: usize = 10;

/// Both clients watch both brand names (`brand`, one id in each pack); each has a
/// private rule on a word the other's mentions use too; a global rule matches all.
const RULES: [(&str, &str); 3] = [
    ("global.toml", "[[rule]]\nid = 'outage'\nquery = 'outage OR \"not working\"'\nqueue = 'care'\n"),
    (
        "acme/brand.toml",
        "[[rule]]\nid = 'brand'\nquery = 'acme OR globex'\nqueue = 'care'\n\n\
         [[rule]]\nid = 'acme-private'\nquery = 'dishwasher'\nqueue = 'appliances'\npriority = 'P2'\n",
    ),
    (
        "globex/brand.toml",
        "[[rule]]\nid = 'brand'\nquery = 'acme OR globex'\nqueue = 'care'\n\n\
         [[rule]]\nid = 'globex-private'\nquery = 'turbine'\nqueue = 'grid'\npriority = 'P2'\n",
    ),
];

/// A pipeline run of the generated deployment and what it wrote.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub verdicts: Vec<Verdict>,
    pub tickets: Vec<Ticket>,
    pub dead_letters: Vec<DeadLetter>,
}

impl Deployment {
    pub fn index(&self) -> PathBuf {
        self.dir.path().join("index")
    }

    fn rules(&self) -> PathBuf {
        self.dir.path().join("rules")
    }

    /// The ids of the mentions of `client` (`None`: the house's).
    fn ids_of(&self, client: Option<&str>) -> BTreeSet<String> {
        self.verdicts.iter().filter(|v| v.client.as_deref() == client).map(|v| v.mention_id.clone()).collect()
    }

    /// What of `client`'s data no other reader may ever be shown: its mention ids,
    /// its ticket ids, and the words, sources, authors and hosts only its mentions
    /// carry.
    pub fn secrets_of(&self, client: &str) -> Vec<String> {
        let mut secrets: Vec<String> = self.ids_of(Some(client)).into_iter().collect();
        secrets.extend(
            self.tickets.iter().filter(|t| t.client.as_deref() == Some(client)).map(|t| t.ticket_id.clone()),
        );
        let prefix = &client[..2];
        secrets.extend([
            format!("{prefix}mark"),
            format!("{client}-listening"),
            format!("{prefix}_fan"),
            format!("{client}-news.example"),
            format!("{client}-private"),
        ]);
        secrets
    }
}

/// One line of a client's (or the house's) JSON-lines file: real text with the brand
/// words of both clients, the other client's private word now and then, and a word
/// only this mention has. The clients use the same ids: each must get its own mention.
fn line(client: Option<&str>, i: usize, real: &str) -> String {
    let name = client.unwrap_or("house");
    let prefix = &name[..2];
    let mut words = vec![real.to_string(), "acme and globex".to_string(), format!("{prefix}mark{i}")];
    if i.is_multiple_of(2) {
        words.push("outage".into());
    }
    if i.is_multiple_of(3) {
        words.push(match client {
            Some("acme") => "turbine".into(),
            Some(_) => "dishwasher".into(),
            None => "turbine dishwasher".into(),
        });
    }
    if i.is_multiple_of(5) {
        words.push(match client {
            Some("acme") => "dishwasher".into(),
            Some(_) => "turbine".into(),
            None => String::new(),
        });
    }
    let channel = ["twitter", "news", "forum", "review"][i % 4];
    let mention = json!({
        "schema": "cull.mention/v1",
        "id": format!("m{i}"),
        "channel": channel,
        "author": format!("@{prefix}_fan{}", i % 7),
        "url": format!("https://{name}-news.example/story/{i}"),
        "title": format!("{name} story {i}"),
        "text": words.join(" "),
        "lang": "en",
        "published_at": format!("2026-11-{:02}T{:02}:00:00Z", 1 + i % 20, i % 24),
    });
    format!("{mention}\n")
}

/// Writes the rules, the three sources' files and a pipeline file into a new
/// directory, runs `cull run --once` there and reads what it wrote.
pub fn deploy() -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (path, text) in RULES {
        let path = d.join("rules").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let real: Vec<String> =
        real_mentions(20).into_iter().map(|m| m.text.chars().take(200).collect()).collect();
    for client in [Some("acme"), Some("globex"), None] {
        let count = if client.is_some() { PER_CLIENT } else { HOUSE };
        let mut lines: String = (0..count).map(|i| line(client, i, &real[i % real.len()])).collect();
        if client == Some("globex") {
            // A sender of globex's source claiming acme's name: refused, never acme's.
            lines.push_str(
                "{\"schema\":\"cull.mention/v1\",\"id\":\"claim\",\"client\":\"acme\",\"text\":\"acme outage gxmark-claimed\"}\n",
            );
        }
        std::fs::write(d.join(format!("{}.jsonl", client.unwrap_or("house"))), lines).unwrap();
    }
    let source = |name: &str, client: Option<&str>| {
        let client = client.map_or_else(String::new, |c| format!("client = \"{c}\"\n"));
        let file = name.split('-').next().unwrap();
        format!(
            "[[source]]\nkind = \"jsonl\"\nname = \"{name}\"\n{client}path = \"{}/{file}.jsonl\"\n",
            d.display()
        )
    };
    let pipeline = format!(
        "[bus]\nkind = \"embedded\"\n[bus.embedded]\ndir = \"{d}/bus\"\n\
         [topics]\ntickets_per_queue = true\n\
         [matcher]\nrules = \"{d}/rules\"\nwatch = false\n\
         [ingest]\nstate_dir = \"{d}/state\"\n\
         [index]\nenabled = true\ndir = \"{d}/index\"\n\
         [sink.tickets]\nkind = \"jsonl\"\npath = \"{d}/tickets.jsonl\"\n\
         [sink.verdicts]\nkind = \"jsonl\"\npath = \"{d}/verdicts.jsonl\"\n\
         [sink.dead_letter]\nkind = \"jsonl\"\npath = \"{d}/dead-letter.jsonl\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n{}{}{}",
        source("acme-listening", Some("acme")),
        source("globex-listening", Some("globex")),
        source("house-listening", None),
        d = d.display(),
    );
    std::fs::write(d.join("pipeline.toml"), pipeline).unwrap();
    let out = cull(&["run", d.join("pipeline.toml").to_str().unwrap(), "--once"], &[]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let read = |name: &str| -> Vec<String> {
        std::fs::read_to_string(d.join(name)).unwrap_or_default().lines().map(str::to_string).collect()
    };
    let parse = |l: &String| serde_json::from_str(l).unwrap();
    Deployment {
        verdicts: read("verdicts.jsonl").iter().map(parse).collect(),
        tickets: read("tickets.jsonl").iter().map(|l| serde_json::from_str(l).unwrap()).collect(),
        dead_letters: read("dead-letter.jsonl").iter().map(|l| serde_json::from_str(l).unwrap()).collect(),
        dir,
    }
}

#[test]
fn a_two_client_deployment_keeps_mentions_rules_and_tickets_apart() {
    let deployment = deploy();
    let d = deployment.dir.path();
    assert_eq!(deployment.verdicts.len(), 2 * PER_CLIENT + HOUSE, "every mention once, the claim excepted");
    let acme = deployment.ids_of(Some("acme"));
    let globex = deployment.ids_of(Some("globex"));
    assert_eq!(
        (acme.len(), globex.len()),
        (PER_CLIENT, PER_CLIENT),
        "one id in two clients' files is two mentions"
    );
    assert!(
        acme.iter().all(|id| id.starts_with("acme:m")) && globex.iter().all(|id| id.starts_with("globex:m"))
    );

    let allowed: BTreeMap<Option<&str>, BTreeSet<&str>> = BTreeMap::from([
        (Some("acme"), BTreeSet::from(["outage", "brand", "acme-private"])),
        (Some("globex"), BTreeSet::from(["outage", "brand", "globex-private"])),
        (None, BTreeSet::from(["outage"])),
    ]);
    let mut met: BTreeMap<Option<&str>, BTreeSet<&str>> = BTreeMap::new();
    for verdict in &deployment.verdicts {
        let client = verdict.client.as_deref();
        let mention = verdict.mention.as_ref().unwrap();
        assert_eq!(mention.client.as_deref(), client);
        for rule in verdict.matched.iter().map(|m| m.rule_id.as_str()) {
            assert!(
                allowed[&client].contains(rule),
                "{client:?}'s mention {} met {rule}",
                verdict.mention_id
            );
            met.entry(client).or_default().insert(rule);
        }
    }
    assert_eq!(met, allowed, "every rule matched its own client's mentions, and only those");

    for ticket in &deployment.tickets {
        assert_eq!(ticket.client, ticket.mention.client, "{}", ticket.ticket_id);
        let own = match ticket.client.as_deref() {
            Some("acme") => &acme,
            Some("globex") => &globex,
            _ => &deployment.ids_of(None),
        };
        for linked in ticket.links.iter().chain([&ticket.mention.id]) {
            assert!(
                own.contains(linked),
                "ticket {} of {:?} links {linked}",
                ticket.ticket_id,
                ticket.client
            );
        }
    }
    let ticket_ids: BTreeSet<&str> = deployment.tickets.iter().map(|t| t.ticket_id.as_str()).collect();
    let clients_of = |id: &str| -> BTreeSet<Option<&str>> {
        deployment.tickets.iter().filter(|t| t.ticket_id == id).map(|t| t.client.as_deref()).collect()
    };
    assert!(ticket_ids.iter().all(|id| clients_of(id).len() == 1), "no ticket id serves two clients");

    for topic in [
        "cull.tickets.care",
        "cull.tickets.acme.care",
        "cull.tickets.acme.appliances",
        "cull.tickets.globex.care",
        "cull.tickets.globex.grid",
    ] {
        assert!(d.join("bus").join(topic).is_dir(), "no topic {topic}");
    }
    assert!(!d.join("bus/cull.tickets.acme.grid").exists(), "acme has no grid queue");

    let claims: Vec<&DeadLetter> =
        deployment.dead_letters.iter().filter(|l| l.error.contains("client")).collect();
    assert_eq!(claims.len(), 1, "{:?}", deployment.dead_letters);
    assert!(
        claims[0].error.contains("says \"acme\", but this source belongs to client \"globex\""),
        "{}",
        claims[0].error
    );
    assert!(!deployment.verdicts.iter().any(|v| v.mention_id.contains("claim")), "nothing of it was matched");
}

/// The tokens of the deployment's analysts: one per client, and the staff's.
fn tokens_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens.toml");
    let token = |name: &str, client: &str, token: &str| {
        format!("[[token]]\nname = \"{name}\"\nrole = \"analyst\"\nclient = \"{client}\"\ntoken = \"{token}\"\n\n")
    };
    let text =
        [token("acme", "acme", ACME), token("globex", "globex", GLOBEX), token("staff", "*", STAFF)].concat();
    std::fs::write(&path, text).unwrap();
    path
}

/// Serves the deployment's index with its tokens and rules.
fn serve_deployment(deployment: &Deployment) -> Server {
    let tokens = tokens_file(deployment.dir.path());
    let rules = deployment.rules();
    serve(
        &deployment.index(),
        &["--tokens", tokens.to_str().unwrap(), "--rules", rules.to_str().unwrap()],
        &[],
    )
}

/// An answer: status and body.
async fn call(base: &str, token: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let client = reqwest::Client::new();
    let url = format!("{base}{path}");
    let request = match body {
        Some(body) => client.post(&url).header("content-type", "application/json").body(body.to_string()),
        None if method == "POST" => client.post(&url),
        None => client.get(&url),
    };
    let response = request.bearer_auth(token).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Every search and histogram an analyst could send: queries that name the other
/// client's words, sources, sites, authors and rules, with every filter and facet,
/// both sorts and several pages.
fn reads() -> Vec<String> {
    let queries = [
        "",
        "globex",
        "acme",
        "acme OR globex OR outage",
        "gxmark1",
        "gxmark*",
        "acmark1",
        "turbine",
        "dishwasher",
        "source:globex-listening",
        "source:acme-listening",
        "site:globex-news.example",
        "author:gx_fan1",
        "title:globex",
        "url:globex",
        "\"acme and globex\"",
        "globex NEAR/2 acme",
        "-acme",
    ];
    let extras = [
        "",
        "&facet=rule&facet=culled_rule&facet=verdict&facet=channel&facet=lang&facet=source&facet=site&facet=client&histogram=day",
        "&rule=globex-private&rule=brand",
        "&rule=acme-private",
        "&client=globex",
        "&client=acme&client=globex",
        "&verdict=matched&verdict=culled&verdict=unmatched",
        "&sort=relevance&limit=1000",
        "&since=3650d&until=2030-01-01&histogram=week",
        "&offset=10&limit=5&channel=news&channel=twitter&lang=en",
    ];
    let mut reads = Vec::new();
    for query in queries {
        let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        for extra in extras {
            reads.push(format!("/api/search?q={q}{extra}"));
        }
        reads.push(format!("/api/histogram?q={q}&interval=day"));
        reads.push(format!("/api/histogram?q={q}&client=globex&rule=globex-private&interval=hour"));
    }
    reads
}

/// Backtest drafts that try to reach the other client's data.
fn drafts() -> Vec<&'static str> {
    vec![
        "[[rule]]\nid = 'probe'\nquery = 'turbine'\n",
        "[[rule]]\nid = 'probe'\nquery = 'gxmark*'\n",
        "[[rule]]\nid = 'probe'\nquery = 'source:globex-listening OR site:globex-news.example'\n",
        "[[rule]]\nid = 'probe'\nquery = 'acme OR globex OR outage'\nexclude = 'nothing'\n",
        "[[rule]]\nid = 'probe'\nquery = 'globex'\nclient = 'globex'\n",
        "[[rule]]\nid = 'probe'\nquery = 'turbine OR dishwasher'\nclient = 'acme'\n",
    ]
}

/// Returns the secrets of `other` that `body` shows.
fn leaked<'s>(body: &str, secrets: &'s [String]) -> Vec<&'s str> {
    secrets.iter().filter(|s| body.contains(s.as_str())).map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_to_one_clients_token_holds_anything_of_the_others() {
    let deployment = deploy();
    let server = serve_deployment(&deployment);
    let base = format!("http://{}", server.address);
    let mut asked = 0;
    for (token, own, other) in [(ACME, "acme", "globex"), (GLOBEX, "globex", "acme")] {
        let secrets = deployment.secrets_of(other);
        let own_ids = deployment.ids_of(Some(own));
        let mut staff_saw_secrets = 0;
        for path in reads() {
            let (status, body) = call(&base, token, "GET", &path, None).await;
            asked += 1;
            assert!(status == 200 || status == 400, "{own} {path}: {status} {body}");
            assert_eq!(leaked(&body, &secrets), Vec::<&str>::new(), "{own} asked {path}: {body}");
            if status == 200 {
                let found: Value = serde_json::from_str(&body).unwrap();
                let total = found["total"].as_u64().unwrap();
                assert!(total as usize <= own_ids.len(), "{own} {path}: a count of more than its mentions");
                for hit in found["hits"].as_array().into_iter().flatten() {
                    assert!(own_ids.contains(hit["id"].as_str().unwrap()), "{own} {path}: {hit}");
                }
                for value in found["facets"]["client"].as_array().into_iter().flatten() {
                    assert_eq!(value["value"], own, "{own} {path}");
                }
                let bucketed: u64 = found["histogram"]["buckets"]
                    .as_array()
                    .or_else(|| found["buckets"].as_array())
                    .into_iter()
                    .flatten()
                    .map(|b| b["count"].as_u64().unwrap())
                    .sum();
                assert!(bucketed == 0 || bucketed == total, "{own} {path}: histogram {bucketed} of {total}");
            }
            let (_, staff) = call(&base, STAFF, "GET", &path, None).await;
            staff_saw_secrets += usize::from(!leaked(&staff, &secrets).is_empty());
        }
        assert!(
            staff_saw_secrets > 20,
            "the secrets are there to be found by the staff: {staff_saw_secrets}"
        );

        let (status, everything) = call(&base, token, "GET", "/api/search?limit=1000", None).await;
        assert_eq!(status, 200);
        let everything: Value = serde_json::from_str(&everything).unwrap();
        assert_eq!(
            everything["total"].as_u64().unwrap() as usize,
            own_ids.len(),
            "{own} sees all of its own"
        );

        let (missing_status, missing) =
            call(&base, token, "GET", "/api/mentions/no-such-mention", None).await;
        assert_eq!(missing_status, 404);
        for id in deployment.ids_of(Some(other)).iter().chain(&deployment.ids_of(None)) {
            let (status, body) = call(&base, token, "GET", &format!("/api/mentions/{id}"), None).await;
            asked += 1;
            assert_eq!(status, 404, "{own} read {id}");
            assert_eq!(body.replace(id.as_str(), "no-such-mention"), missing, "just as a missing one");
        }
        for id in own_ids.iter().take(12) {
            let (status, body) = call(&base, token, "GET", &format!("/api/mentions/{id}"), None).await;
            asked += 1;
            assert_eq!(status, 200, "{own} {id}: {body}");
            assert_eq!(leaked(&body, &secrets), Vec::<&str>::new(), "{own} {id}: {body}");
        }
        for draft in drafts() {
            let request = json!({ "rules": draft, "samples": 100 });
            let (status, body) = call(&base, token, "POST", "/api/backtest", Some(&request)).await;
            asked += 1;
            assert!(status == 200 || status == 400, "{own} {draft}: {status} {body}");
            assert_eq!(leaked(&body, &secrets), Vec::<&str>::new(), "{own} backtested {draft}: {body}");
            if status == 200 {
                let report: Value = serde_json::from_str(&body).unwrap();
                for id in report["rules"][0]["matched_ids"].as_array().unwrap() {
                    assert!(own_ids.contains(id.as_str().unwrap()), "{own} {draft}: {id}");
                }
            }
        }
    }
    assert!(asked > 500, "{asked} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_client_its_own_mentions_only() {
    let deployment = deploy();
    let server = serve_deployment(&deployment);
    let base = format!("http://{}", server.address);
    let secrets = deployment.secrets_of("globex");
    let browser = Browser::start().await;
    browser.open(&format!("{base}/")).await;
    browser.wait_for("!document.getElementById('login').hidden").await;
    browser.type_into("#token", ACME).await;
    browser.click("#login-button").await;
    let status = browser
        .wait_for("/^\\d+ mention/.test(document.getElementById('status').textContent) && document.getElementById('status').textContent")
        .await;
    assert!(status.as_str().unwrap().starts_with(&format!("{PER_CLIENT} mention(s)")), "{status}");
    let page = || browser.script("return document.body.innerText + document.body.innerHTML;");
    assert_eq!(leaked(page().await.as_str().unwrap(), &secrets), Vec::<&str>::new());

    for query in ["turbine", "gxmark1", "source:globex-listening", "globex"] {
        browser.type_into("#query", query).await;
        browser.click("#search-button").await;
        browser.wait_for("!/Searching/.test(document.getElementById('status').textContent) && document.getElementById('status').textContent").await;
        assert_eq!(leaked(page().await.as_str().unwrap(), &secrets), Vec::<&str>::new(), "after {query}");
    }
    let rules = browser
        .script("return [...document.querySelectorAll('#facets button[data-facet=rule]')].map(b => b.dataset.value);")
        .await;
    assert!(!rules.to_string().contains("globex-private"), "{rules}");
    browser.screenshot("console-client.png").await;

    let other = deployment.ids_of(Some("globex")).into_iter().next().unwrap();
    browser.open(&format!("{base}/#/mention/{other}")).await;
    browser
        .wait_for("!document.getElementById('mention-error').hidden && document.getElementById('mention-error').textContent")
        .await;
    assert_eq!(
        leaked(page().await.as_str().unwrap(), &secrets),
        vec![other.as_str()],
        "only the id it asked for"
    );
    browser.quit().await;
}
