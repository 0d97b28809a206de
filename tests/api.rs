//! `cull serve`: the analyst API over an index of real mentions with their live
//! verdicts, checked against its OpenAPI document, with tokens and limits.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use cull_index::{Indexer, Origin};
use cull_match::RuleSet;
use cull_model::{Channel, Mention, Ticket, Verdict};
use serde_json::{json, Value};

use crate::corpus::{data_dir, real_mentions};
use crate::pipeline::{cull, listening_address, repo, text};

pub const ANALYST: &str = "analyst-7c1f0e2b";
pub const OPERATOR: &str = "operator-93d4a8c6";
/// An operator of the client acme.
pub const ACME_OPERATOR: &str = "acme-operator-5e2b91d0";

/// The feedparser sanitizer fixtures whose payloads are kept: scripts (one of them
/// calls `alert`), event handlers, frames, objects, styles, redirects.
const HOSTILE: [&str; 12] = [
    "entry_content_crazy",
    "entry_title_crazy",
    "entry_content_script",
    "entry_content_script_cdata",
    "entry_title_script",
    "entry_content_onerror",
    "entry_summary_onload",
    "entry_content_iframe",
    "entry_content_object",
    "entry_content_embed",
    "entry_content_meta",
    "entry_content_style_tag",
];

/// Returns the content of the first `<name ...>...</name>` element of an Atom
/// document, as the HTML it holds: unescaped, or the CDATA as it is. Not sanitized,
/// not normalized: the console must receive the hostile markup itself.
fn raw_element(document: &str, name: &str) -> String {
    let entry = &document[document.find("<entry>").expect("an entry")..];
    let open = entry.find(&format!("<{name}")).unwrap_or_else(|| panic!("no <{name}>"));
    let start = open + entry[open..].find('>').unwrap() + 1;
    let end = start + entry[start..].find(&format!("</{name}>")).unwrap_or_else(|| panic!("no </{name}>"));
    let inner = &entry[start..end];
    match inner.trim().strip_prefix("<![CDATA[").and_then(|s| s.strip_suffix("]]>")) {
        Some(cdata) => cdata.to_string(),
        None => inner
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    }
}

/// Mentions whose title and text are the hostile HTML of the feedparser sanitizer
/// tests, with source `sanitize`.
pub fn hostile_mentions() -> Vec<Mention> {
    let dir = data_dir().join("feeds/feedparser/wellformed/sanitize");
    HOSTILE
        .iter()
        .enumerate()
        .map(|(i, stem)| {
            let path = dir.join(format!("{stem}.xml"));
            let document =
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let element = stem.split('_').nth(1).unwrap();
            let html = raw_element(&document, element);
            assert!(html.contains('<'), "{stem}: {html}");
            let mut mention = Mention::new(format!("sanitize-{stem}"), html.clone());
            mention.title = Some(html);
            mention.source = Some("sanitize".into());
            mention.channel = Some(Channel::Forum);
            mention.lang = Some("en".into());
            mention.published_at = Some(format!("2026-11-{:02}T12:00:00Z", 20 + i % 5));
            mention
        })
        .collect()
}

/// The rule set of `rules/`.
pub fn rules() -> RuleSet {
    let loaded = cull_rules::load_dir(&repo().join("rules"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    RuleSet::new(loaded.rules).unwrap()
}

/// Real mentions, the examples of every rule of `rules/` (so that some match and
/// some are culled, for sure) and the hostile ones, spread over November 2026.
pub fn mentions(set: &RuleSet) -> Vec<Mention> {
    let mut mentions = real_mentions(60);
    for rule in set.rules() {
        for (n, example) in rule.rule.examples.iter().enumerate() {
            let mut mention = example.to_mention();
            // A client's example is a mention of that client, as the rule meets it.
            mention.id = match &rule.rule.client {
                Some(client) => format!("example-{client}-{}-{n}", rule.rule.id),
                None => format!("example-{}-{n}", rule.rule.id),
            };
            mention.client.clone_from(&rule.rule.client);
            mentions.push(mention);
        }
    }
    for (i, mention) in mentions.iter_mut().enumerate() {
        mention.published_at = Some(format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + i % 28, i % 24, i % 60));
    }
    mentions.extend(hostile_mentions());
    mentions
}

/// The detail of the crisis factor of the fixture's ticket: hostile HTML.
pub const HOSTILE_DETAIL: &str = "<img src=x onerror=alert(1)>";

/// The tickets the fixture indexes about the first matched mention: a ticket (whose
/// crisis factor's detail is [`HOSTILE_DETAIL`]) and the incident it is part of.
pub fn fixture_tickets(mention: &Mention) -> [Ticket; 2] {
    let ticket = |id: &str, kind: &str, rule: &str, factor: Value, extra: Value| -> Ticket {
        let mut ticket = json!({
            "schema": "cull.ticket/v1", "ticket_id": id, "revision": 2, "created_at": "2026-11-20T10:00:00Z",
            "queue": "social", "priority": "P1", "priority_score": 85, "sla_due_at": "2026-11-20T10:15:00Z",
            "rule": { "id": "slack-company", "name": rule, "version": "v1" }, "mention": mention,
            "spans": [], "snippet": "", "kind": kind, "mention_count": 3, "arrival_at": "2026-11-20T09:58:00Z",
            "rank_offset_minutes": 30, "factors": [factor], "sla_policy": "social/P1",
            "sla_target_minutes": 15, "sla_clock": "calendar", "late_on_arrival": true,
        });
        ticket.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(ticket).unwrap()
    };
    [
        ticket(
            "t-fixture",
            "ticket",
            "Slack",
            json!({ "factor": "crisis", "value": 1.0, "points": 25.0, "detail": HOSTILE_DETAIL }),
            json!({ "incident_id": "i-fixture" }),
        ),
        ticket(
            "i-fixture",
            "incident",
            "Spike of rule:slack-company: 40 mentions in 5 minutes",
            json!({ "factor": "spike", "value": 40.0, "points": 30.0, "detail": "High" }),
            json!({ "links": [mention.id] }),
        ),
    ]
}

/// Indexes `mentions` with their live verdicts into `dir`, and the
/// [`fixture_tickets`] of the first matched one, if any; returns the verdicts.
pub fn index(dir: &Path, set: &RuleSet, mentions: &[Mention]) -> Vec<Verdict> {
    let verdicts = set.verdicts(mentions);
    let mut indexer = Indexer::open(dir, 1, 0).unwrap();
    for (offset, (mention, verdict)) in mentions.iter().zip(&verdicts).enumerate() {
        let carried = Verdict { mention: Some(mention.clone()), ..verdict.clone() };
        let origin = Origin { topic: "cull.verdicts", partition: 0, offset: offset as i64 };
        assert_eq!(indexer.add(&carried, Some(origin)).unwrap(), cull_index::Added::Written);
    }
    if let Some((matched, _)) = mentions.iter().zip(&verdicts).find(|(_, v)| !v.matched.is_empty()) {
        for (offset, ticket) in fixture_tickets(matched).iter().enumerate() {
            let origin = Origin { topic: "cull.tickets", partition: 0, offset: offset as i64 };
            assert_eq!(indexer.add_ticket(ticket, Some(origin)).unwrap(), 1);
        }
    }
    indexer.commit().unwrap();
    verdicts
}

/// Writes a tokens file with an analyst and an operator token of the staff, and an
/// operator token of acme.
pub fn tokens_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens.toml");
    std::fs::write(
        &path,
        format!(
            "[[token]]\nname = \"ana\"\nrole = \"analyst\"\nclient = \"*\"\ntoken = \"{ANALYST}\"\n\n\
             [[token]]\nname = \"ops\"\nrole = \"operator\"\nclient = \"*\"\ntoken = \"{OPERATOR}\"\n\n\
             [[token]]\nname = \"acme-ops\"\nrole = \"operator\"\nclient = \"acme\"\ntoken = \"{ACME_OPERATOR}\"\n"
        ),
    )
    .unwrap();
    path
}

/// A running `cull serve`, stopped when dropped.
pub struct Server {
    child: Child,
    pub address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cull serve` on a free port of the loopback.
pub fn serve(index: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut all = vec!["serve", "--index", index.to_str().unwrap(), "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut command = cull(&all, &[]);
    command.env_remove("CULL_API_TOKENS").envs(env.iter().copied()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let address = listening_address(&mut child);
    Server { child, address }
}

/// An index of the test mentions and a server over it with the test tokens; a
/// wildcard may expand to 3 terms.
pub fn fixture(dir: &Path) -> (Server, RuleSet, Vec<Mention>, Vec<Verdict>) {
    let set = rules();
    let mentions = mentions(&set);
    let verdicts = index(&dir.join("index"), &set, &mentions);
    let tokens = tokens_file(dir);
    let server =
        serve(&dir.join("index"), &["--tokens", tokens.to_str().unwrap(), "--max-wildcard-terms", "3"], &[]);
    (server, set, mentions, verdicts)
}

/// A response: status, `WWW-Authenticate`, JSON body.
struct Reply {
    status: u16,
    challenge: Option<String>,
    body: Value,
}

async fn call(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
    let client = reqwest::Client::new();
    let mut request = match method {
        "POST" => client.post(url),
        "DELETE" => client.delete(url),
        _ => client.get(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(content_type.as_deref(), Some("application/json"), "{method} {url}: {status}");
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: {e}: {text}"));
    Reply { status, challenge, body }
}

/// Returns the status, headers and text of a GET that is not JSON (an export).
async fn download(url: &str, token: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.text().await.unwrap())
}

/// Checks responses against the OpenAPI document and remembers which of its
/// responses were seen.
struct Spec {
    document: Value,
    seen: BTreeSet<(String, String, String)>,
}

impl Spec {
    fn load() -> Spec {
        let text = std::fs::read_to_string(repo().join("crates/cull/openapi.json")).unwrap();
        Spec { document: serde_json::from_str(&text).unwrap(), seen: BTreeSet::new() }
    }

    /// Validates `body` against the schema the document gives the response `status`
    /// of `method path` (a path template of the document), `$ref`s resolved within it.
    fn check<'r>(&mut self, method: &str, path: &str, reply: &'r Reply) -> &'r Value {
        let status = reply.status.to_string();
        let operation = &self.document["paths"][path][method.to_lowercase()];
        assert!(operation.is_object(), "the document has no {method} {path}");
        let mut response = &operation["responses"][&status];
        let mut pointer = format!(
            "#/paths/{}/{}/responses/{status}",
            path.replace('~', "~0").replace('/', "~1").replace('{', "%7B").replace('}', "%7D"),
            method.to_lowercase()
        );
        if let Some(reference) = response["$ref"].as_str() {
            pointer = reference.to_string();
            let name = reference.rsplit('/').next().unwrap();
            response = &self.document["components"]["responses"][name];
        }
        assert!(
            response.is_object(),
            "the document has no response {status} for {method} {path}: {}",
            reply.body
        );
        if status == "401" {
            assert!(
                reply.challenge.as_deref().is_some_and(|c| c.starts_with("Bearer")),
                "401 without WWW-Authenticate: Bearer"
            );
        }
        let mut root = self.document.clone();
        root["$ref"] = json!(format!("{pointer}/content/application~1json/schema"));
        let validator = jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("{pointer}: {e}"));
        let errors: Vec<String> =
            validator.iter_errors(&reply.body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status} does not match the document: {errors:#?}\n{}",
            reply.body
        );
        self.seen.insert((method.to_string(), path.to_string(), status));
        &reply.body
    }

    /// Returns the responses of the document never seen, but for those no test can
    /// provoke: 500 (the index failing), 403 on routes open to analysts (every token
    /// has that role at least) and 429 (every query slot taken: a unit test of
    /// `api.rs` holds one).
    fn unseen(&self) -> Vec<(String, String, String)> {
        let mut unseen = Vec::new();
        for (path, operations) in self.document["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                for status in operation["responses"].as_object().unwrap().keys() {
                    let key = (method.to_uppercase(), path.clone(), status.clone());
                    if !["500", "403", "429"].contains(&status.as_str()) && !self.seen.contains(&key) {
                        unseen.push(key);
                    }
                }
            }
        }
        unseen
    }
}

/// Returns the bytes `[start, end)` of `text`.
fn slice(text: &str, range: &Value) -> String {
    let (start, end) = (range[0].as_u64().unwrap() as usize, range[1].as_u64().unwrap() as usize);
    text.get(start..end).expect("highlights fall on characters").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_the_openapi_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let (server, set, mentions, verdicts) = fixture(dir.path());
    let base = format!("http://{}", server.address);
    let mut spec = Spec::load();
    let get = |path: String| {
        let url = format!("{base}{path}");
        async move { call("GET", &url, Some(ANALYST), None).await }
    };

    // The document itself, open to anyone.
    let reply = call("GET", &format!("{base}/api/openapi.json"), None, None).await;
    assert_eq!(reply.body, spec.document, "the served document is the file");
    spec.check("GET", "/api/openapi.json", &reply);

    // A search with everything: highlights, facets, a histogram.
    let reply =
        get("/api/search?q=slack&facet=rule&facet=verdict&facet=channel&facet=lang&histogram=day&limit=50"
            .into())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let found = spec.check("GET", "/api/search", &reply).clone();
    let expected = mentions.iter().filter(|m| {
        let words = |s: &str| s.to_lowercase().split(|c: char| !c.is_alphanumeric()).any(|w| w == "slack");
        words(&m.text) || m.title.as_deref().is_some_and(words)
    });
    assert_eq!(found["total"].as_u64().unwrap() as usize, expected.count());
    let hits = found["hits"].as_array().unwrap();
    assert!(hits.len() >= 3, "{found}");
    for hit in hits {
        let mut marked = 0;
        for snippet in [&hit["title"], &hit["text"]].into_iter().filter(|s| !s.is_null()) {
            for range in snippet["highlights"].as_array().unwrap() {
                assert_eq!(slice(snippet["text"].as_str().unwrap(), range).to_lowercase(), "slack", "{hit}");
                marked += 1;
            }
        }
        assert!(marked > 0, "a hit without highlights: {hit}");
    }
    let total: u64 =
        found["histogram"]["buckets"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(total, found["total"].as_u64().unwrap());
    let verdict_total: u64 =
        found["facets"]["verdict"].as_array().unwrap().iter().map(|f| f["count"].as_u64().unwrap()).sum();
    assert_eq!(verdict_total, found["total"].as_u64().unwrap());
    assert!(
        found["facets"]["rule"].as_array().unwrap().iter().any(|f| f["value"] == "slack-company"),
        "{found}"
    );

    // Facets over every mention count what the mentions hold.
    let reply = get("/api/search?facet=channel&facet=lang&facet=sentiment&limit=0".into()).await;
    let found = spec.check("GET", "/api/search", &reply);
    for (facet, value_of) in [
        (
            "channel",
            (|m: &Mention| m.channel.map(|c| c.as_str().to_string())) as fn(&Mention) -> Option<String>,
        ),
        // A mention without a language counts as undetermined.
        ("lang", |m: &Mention| Some(m.lang.clone().unwrap_or_else(|| "und".into()))),
        // Every mention has a sentiment, by the scorer triage uses.
        ("sentiment", |m: &Mention| Some(cull_model::sentiment::analyze_mention(m).label().as_str().into())),
    ] {
        let mut expected: Vec<(String, u64)> = Vec::new();
        for value in mentions.iter().filter_map(value_of) {
            match expected.iter_mut().find(|(v, _)| *v == value) {
                Some((_, count)) => *count += 1,
                None => expected.push((value, 1)),
            }
        }
        expected.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let counted: Vec<(String, u64)> = found["facets"][facet]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["value"].as_str().unwrap().to_string(), f["count"].as_u64().unwrap()))
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(counted, expected, "{facet}");
    }

    // Filters: a verdict and a rule, repeated parameters, relative time.
    let reply =
        get("/api/search?verdict=matched&verdict=culled&rule=slack-company&since=3650d&limit=100".into())
            .await;
    let found = spec.check("GET", "/api/search", &reply);
    let expected: BTreeSet<&str> = verdicts
        .iter()
        .filter(|v| {
            v.matched.iter().any(|m| m.rule_id == "slack-company")
                || v.culled.iter().any(|c| c.rule_id == "slack-company")
        })
        .map(|v| v.mention_id.as_str())
        .collect();
    let ids: BTreeSet<&str> =
        found["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert!(!expected.is_empty());
    assert_eq!(ids, expected);

    // Facets by registered domain, author, language (`und` for none) and sentiment:
    // each value filters to exactly the mentions it counts; a hit says why each cull culled.
    let reply =
        get("/api/search?facet=domain&facet=author&facet=lang&facet=culled_rule&facet=sentiment&limit=0"
            .into())
        .await;
    let found = spec.check("GET", "/api/search", &reply).clone();
    let domains = found["facets"]["domain"].as_array().unwrap();
    assert!(domains.iter().all(|f| f["value"].as_str().unwrap().split('.').count() >= 2), "{found}");
    assert!(found["facets"]["lang"].as_array().unwrap().iter().any(|f| f["value"] == "und"), "{found}");
    for facet in ["domain", "author", "lang", "culled_rule", "sentiment"] {
        for value in found["facets"][facet].as_array().unwrap().iter().take(5) {
            let filter = format!("{facet}:{}", value["value"].as_str().unwrap());
            let query =
                form_urlencoded::Serializer::new(String::new()).append_pair("filter", &filter).finish();
            let reply = get(format!("/api/search?{query}&limit=100")).await;
            let filtered = spec.check("GET", "/api/search", &reply);
            assert_eq!(filtered["total"], value["count"], "{filter}");
            if facet == "culled_rule" {
                for hit in filtered["hits"].as_array().unwrap() {
                    let culls = hit["culls"].as_array().unwrap();
                    assert!(
                        culls.iter().any(|c| c["rule_id"] == value["value"] && c["clause"].is_string()),
                        "{hit}"
                    );
                }
            }
        }
    }
    let reply =
        get("/api/histogram?interval=week&split=verdict&filter=verdict:matched&filter=verdict:culled".into())
            .await;
    let histogram = spec.check("GET", "/api/histogram", &reply);
    for bucket in histogram["buckets"].as_array().unwrap() {
        let series =
            bucket["series"].as_object().map_or(0, |s| s.values().map(|n| n.as_u64().unwrap()).sum());
        assert_eq!(series, bucket["count"].as_u64().unwrap(), "a verdict split partitions: {bucket}");
        assert!(
            bucket["series"].as_object().into_iter().flatten().all(|(k, _)| k != "unmatched"),
            "{bucket}"
        );
    }
    let reply = get("/api/search?histogram=day&split=rule&limit=0".into()).await;
    let found = spec.check("GET", "/api/search", &reply);
    assert!(
        found["histogram"]["buckets"].as_array().unwrap().iter().any(|b| b["series"]["(none)"].is_u64()),
        "{found}"
    );

    // An export: the whole result (past the page size) as CSV and as JSON Lines.
    let all = mentions.len();
    for format in ["csv", "jsonl"] {
        let (status, headers, text) =
            download(&format!("{base}/api/export?format={format}&sort=time"), ANALYST).await;
        assert_eq!(status, 200, "{text}");
        let content_type = headers["content-type"].to_str().unwrap().split(';').next().unwrap().to_string();
        let documented = &spec.document["paths"]["/api/export"]["get"]["responses"]["200"]["content"];
        assert!(documented[&content_type].is_object(), "{content_type} is not documented");
        assert_eq!(headers["x-cull-total"].to_str().unwrap(), all.to_string());
        assert_eq!(headers["x-cull-exported"].to_str().unwrap(), all.to_string());
        let ids: BTreeSet<String> = if format == "csv" {
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            reader.records().map(|r| r.unwrap()[0].to_string()).collect()
        } else {
            let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            for line in &lines {
                // The indexed sentiment reaches the export.
                let label = line["sentiment"].as_str().unwrap_or_default();
                assert!(["negative", "neutral", "positive"].contains(&label), "{line}");
                assert!(line["sentiment_score"].is_f64(), "{line}");
            }
            lines.iter().map(|line| line["id"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(ids, mentions.iter().map(|m| m.id.clone()).collect(), "{format}");
        spec.seen.insert(("GET".into(), "/api/export".into(), "200".into()));
    }
    let reply = get("/api/export".into()).await;
    assert_eq!(reply.status, 400);
    let message = spec.check("GET", "/api/export", &reply)["error"].as_str().unwrap().to_string();
    assert!(message.contains("format is required"), "{message}");

    // The histogram route: the same filters, every mention counted once.
    let reply = get("/api/histogram?interval=week".into()).await;
    let histogram = spec.check("GET", "/api/histogram", &reply);
    assert_eq!(histogram["interval"], "week");
    assert_eq!(histogram["total"].as_u64().unwrap() as usize, mentions.len());
    let counted: u64 =
        histogram["buckets"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(counted as usize, mentions.len());
    let reply = get("/api/histogram?q=slack&since=2026-11-10&until=2026-11-20T00:00:00Z".into()).await;
    let histogram = spec.check("GET", "/api/histogram", &reply);
    assert!(
        histogram["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["start"].as_str().unwrap() >= "2026-11-10"
                && b["start"].as_str().unwrap() < "2026-11-20"),
        "{histogram}"
    );

    // Malformed requests: the parser's own message, unknown parameters, bad values.
    let parser = cull_rules::query::parse("\"unclosed").unwrap_err().message;
    let reply = get("/api/search?q=%22unclosed".into()).await;
    assert_eq!(reply.status, 400);
    let message = spec.check("GET", "/api/search", &reply)["error"].as_str().unwrap().to_string();
    assert!(message.starts_with("query: ") && message.contains(&parser), "{message} does not carry {parser}");
    assert!(message.contains("at column 1"), "{message}");
    // A query that does not parse says where, in bytes of `q`.
    let span = cull_rules::query::parse("café AND OR slack").unwrap_err().span;
    let reply = get("/api/search?q=caf%C3%A9%20AND%20OR%20slack".into()).await;
    assert_eq!(reply.status, 400);
    let body = spec.check("GET", "/api/search", &reply);
    assert_eq!(body["position"], json!({ "start": span.start, "end": span.end }), "{body}");
    for (query, wanted) in [
        ("colour=red", "unknown parameter \"colour\""),
        ("since=yesterday", "since=\"yesterday\""),
        ("verdict=maybe", "verdict=\"maybe\""),
        ("facet=colour", "unknown facet"),
        ("filter=domain", "filter=\"domain\": expected FACET:VALUE"),
        ("filter=colour:red", "unknown facet \"colour\""),
        ("split=day", "split=\"day\": expected verdict or rule"),
        ("limit=-1", "limit=\"-1\""),
    ] {
        let reply = get(format!("/api/search?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        let message = spec.check("GET", "/api/search", &reply)["error"].as_str().unwrap().to_string();
        assert!(message.contains(wanted), "{query}: {message}");
    }
    let reply = get("/api/histogram?interval=month".into()).await;
    assert_eq!(reply.status, 400);
    spec.check("GET", "/api/histogram", &reply);

    // Limits: a wildcard over its expansion limit, a page or an offset too deep.
    for (route, query, wanted) in [
        ("/api/search", "q=sta*", "expands to more than 3 terms"),
        ("/api/search", "limit=1001", "page size limit"),
        ("/api/search", "offset=10001", "offset 10001"),
        ("/api/histogram", "q=sta*", "expands to more than 3 terms"),
        ("/api/export", "q=sta*&format=csv", "expands to more than 3 terms"),
    ] {
        let reply = get(format!("{route}?{query}")).await;
        assert_eq!(reply.status, 422, "{query}: {}", reply.body);
        let message = spec.check("GET", route, &reply)["error"].as_str().unwrap().to_string();
        assert!(message.contains(wanted), "{query}: {message}");
    }
    let reply = get("/api/search?q=slack*".into()).await;
    assert_eq!(reply.status, 200, "a narrow wildcard is allowed: {}", reply.body);

    // A mention: the verdict with its mention, and why each rule matched or culled it.
    let matched = verdicts.iter().find(|v| !v.matched.is_empty()).unwrap();
    let reply = get(format!("/api/mentions/{}", matched.mention_id)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = spec.check("GET", "/api/mentions/{id}", &reply);
    let explanation = &body["explanations"][0];
    assert_eq!(explanation["rule_id"], matched.matched[0].rule_id.as_str());
    assert_eq!(explanation["outcome"], "matched");
    assert_eq!(explanation["spans"], serde_json::to_value(&matched.matched[0].spans).unwrap());
    assert!(explanation["clauses"].as_array().unwrap().iter().any(|c| c["matched"] == true), "{explanation}");
    assert_eq!(body["ruleset_version"], set.version());
    let stored: Verdict = serde_json::from_value(body["verdict"].clone()).unwrap();
    assert_eq!(stored.matched, matched.matched);
    // The tickets about it, as the ticketing stage wrote them, ordered by id.
    let tickets: Vec<Ticket> = serde_json::from_value(body["tickets"].clone()).unwrap();
    let mention = mentions.iter().find(|m| m.id == matched.mention_id).unwrap();
    let [ticket, incident] = fixture_tickets(mention);
    assert_eq!(tickets, [incident, ticket]);
    let culled = verdicts.iter().find(|v| v.matched.is_empty() && !v.culled.is_empty()).unwrap();
    let reply = get(format!("/api/mentions/{}", culled.mention_id)).await;
    let body = spec.check("GET", "/api/mentions/{id}", &reply);
    let explanation = &body["explanations"][0];
    assert_eq!(explanation["outcome"], "culled");
    assert_eq!(explanation["cull"]["reason"], culled.culled[0].reason.as_str());
    assert_eq!(explanation["cull"]["clause"], culled.culled[0].clause);
    let hostile = "sanitize-entry_content_crazy";
    let reply = get(format!("/api/mentions/{hostile}")).await;
    let body = spec.check("GET", "/api/mentions/{id}", &reply);
    let raw = mentions.iter().find(|m| m.id == hostile).unwrap();
    assert_eq!(body["verdict"]["mention"]["text"], raw.text, "the mention comes back as it went in");
    assert_eq!(body["tickets"], json!([]), "no ticket about it");
    let reply = get("/api/mentions/no%20such%20mention".into()).await;
    assert_eq!(reply.status, 404);
    let message = spec.check("GET", "/api/mentions/{id}", &reply)["error"].as_str().unwrap().to_string();
    assert!(message.contains("no mention \"no such mention\""), "{message}");

    // A live rule as a rule file: what the rules of `--rules` hold, loadable as a draft.
    let reply = get("/api/rules/slack-company/definition".into()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = spec.check("GET", "/api/rules/{id}/definition", &reply);
    let toml = body["toml"].as_str().unwrap();
    let loaded = cull_rules::load_files([(Path::new("live.toml"), toml.as_bytes())]);
    assert!(loaded.errors.is_empty(), "{:?}\n{toml}", loaded.errors);
    let live = set.rules().find(|r| r.rule.id == "slack-company" && r.rule.client.is_none()).unwrap();
    assert_eq!(
        (&loaded.rules[0].rule.query, &loaded.rules[0].rule.exclude),
        (&live.rule.query, &live.rule.exclude)
    );
    for (path, status) in
        [("/api/rules/no-such-rule/definition", 404), ("/api/rules/slack-company/definition?colour=red", 400)]
    {
        let reply = get(path.into()).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        spec.check("GET", "/api/rules/{id}/definition", &reply);
    }

    // A backtest of a rule pack says what the live verdicts say; broken drafts are
    // located; a draft's query is held to the search limits.
    let pack = std::fs::read_to_string(repo().join("rules/tech.toml")).unwrap();
    let url = format!("{base}/api/backtest");
    let reply = call("POST", &url, Some(ANALYST), Some(&json!({ "rules": pack, "samples": 2 }))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let report = spec.check("POST", "/api/backtest", &reply).clone();
    let rules = report["rules"].as_array().unwrap();
    assert!(!rules.is_empty());
    let mut some_culled = false;
    for rule in rules {
        let id = rule["rule_id"].as_str().unwrap();
        let pick = |culled: bool| -> Vec<String> {
            let mut ids: Vec<String> = verdicts
                .iter()
                .filter(|v| {
                    if culled {
                        v.culled.iter().any(|c| c.rule_id == id)
                    } else {
                        v.matched.iter().any(|m| m.rule_id == id)
                    }
                })
                .map(|v| v.mention_id.clone())
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(
            serde_json::from_value::<Vec<String>>(rule["matched_ids"].clone()).unwrap(),
            pick(false),
            "{id} matched"
        );
        assert_eq!(
            serde_json::from_value::<Vec<String>>(rule["culled_ids"].clone()).unwrap(),
            pick(true),
            "{id} culled"
        );
        let per_day: u64 = rule["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["matched"].as_u64().unwrap() + d["culled"].as_u64().unwrap())
            .sum();
        assert_eq!(per_day, rule["matched"].as_u64().unwrap() + rule["culled"].as_u64().unwrap());
        assert!(rule["matched_samples"].as_array().unwrap().len() <= 2);
        some_culled |= rule["culled"].as_u64().unwrap() > 0;
    }
    assert!(some_culled, "the pack's examples include culls: {report}");
    let broken = "[[rule]]\nid = \"draft\"\nquery = 'slack AND'\n";
    let reply = call("POST", &url, Some(ANALYST), Some(&json!({ "rules": broken }))).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let body = spec.check("POST", "/api/backtest", &reply);
    assert_eq!(body["rule_errors"][0]["line"], 3, "{body}");
    assert!(body["rule_errors"][0]["message"].as_str().unwrap().contains("draft.toml:3:"), "{body}");
    assert_eq!(body["warnings"], json!([]), "{body}");
    let suspicious = "[[rule]]\nid = \"draft\"\nquery = 'slack and adjuster'\n";
    let reply = call("POST", &url, Some(ANALYST), Some(&json!({ "rules": suspicious }))).await;
    assert_eq!(reply.status, 200, "warnings do not refuse a draft: {}", reply.body);
    let body = spec.check("POST", "/api/backtest", &reply);
    let warning = &body["warnings"][0];
    assert_eq!((warning["line"].as_u64(), warning["column"].as_u64()), (Some(3), Some(16)), "{body}");
    assert!(warning["message"].as_str().unwrap().contains("`and` is searched as a word"), "{body}");
    let report_warnings = report["warnings"].as_array().map(Vec::len);
    assert_eq!(report_warnings, Some(0), "the example pack has no warnings");
    let reply = call("POST", &url, Some(ANALYST), Some(&json!({ "rule": "x" }))).await;
    assert_eq!(reply.status, 400);
    let message = spec.check("POST", "/api/backtest", &reply)["error"].as_str().unwrap().to_string();
    assert!(message.starts_with("request body:") && message.contains("rule"), "{message}");
    let wide = "[[rule]]\nid = \"draft\"\nquery = 'sta*'\n";
    let reply = call("POST", &url, Some(ANALYST), Some(&json!({ "rules": wide }))).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let message = spec.check("POST", "/api/backtest", &reply)["error"].as_str().unwrap().to_string();
    assert!(message.contains("rule `draft`") && message.contains("expands"), "{message}");
    // A body over the API's 1 MiB is refused before it is parsed.
    let huge = json!({ "rules": format!("# {}", "x".repeat(1 << 20)) });
    let reply = call("POST", &url, Some(ANALYST), Some(&huge)).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let message = spec.check("POST", "/api/backtest", &reply)["error"].as_str().unwrap().to_string();
    assert!(message.contains("over the limit of 1048576 bytes"), "{message}");

    // Erasure, a data subject's request: operators only, and it sticks.
    let erase = |token: &'static str, id: &str| {
        let url = format!("{base}/api/mentions/{id}");
        async move { call("DELETE", &url, Some(token), None).await }
    };
    let target = matched.mention_id.clone();
    let reply = erase(ANALYST, &target).await;
    assert_eq!(reply.status, 403, "an analyst may not erase: {}", reply.body);
    spec.check("DELETE", "/api/mentions/{id}", &reply);
    assert_eq!(get(format!("/api/mentions/{target}")).await.status, 200, "nothing was erased");
    // acme's operator cannot erase another client's mention, nor the house's: not found.
    let (globex, acme) = ("example-globex-brand-0", "example-acme-brand-0");
    for id in [globex, target.as_str()] {
        let reply = erase(ACME_OPERATOR, id).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(spec.check("DELETE", "/api/mentions/{id}", &reply)["found"], false, "{id}");
        assert_eq!(get(format!("/api/mentions/{id}")).await.status, 200, "{id} stays");
    }
    let reply = erase(ACME_OPERATOR, acme).await;
    assert_eq!(reply.body, json!({ "id": acme, "found": true }));
    assert_eq!(get(format!("/api/mentions/{acme}")).await.status, 404);
    // While another process writes the index (as a `cull run` would), `cull serve`
    // cannot erase: 409, saying where to, and nothing changes.
    let writer = Indexer::open(&dir.path().join("index"), 1, 0).unwrap();
    let reply = erase(OPERATOR, &target).await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    let message = spec.check("DELETE", "/api/mentions/{id}", &reply)["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("another process writes the index") && message.contains("cull run"),
        "{message}"
    );
    assert_eq!(get(format!("/api/mentions/{target}")).await.status, 200);
    drop(writer);
    let reply = erase(OPERATOR, &target).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(spec.check("DELETE", "/api/mentions/{id}", &reply)["found"], true);
    assert_eq!(get(format!("/api/mentions/{target}")).await.status, 404, "gone at once");
    let search = get("/api/search?limit=0".into()).await;
    assert_eq!(search.body["total"].as_u64(), Some(mentions.len() as u64 - 2));
    let reply = erase(OPERATOR, &target).await;
    assert_eq!(reply.body, json!({ "id": target, "found": false }), "erased already");
    // A replay of the bus (the verdict offered again at a new offset) does not bring it back.
    let mut indexer = Indexer::open(&dir.path().join("index"), 1, 0).unwrap();
    let verdict = Verdict { mention: Some(mention.clone()), ..matched.clone() };
    let replayed = Origin { topic: "cull.verdicts", partition: 0, offset: 1_000 };
    assert_eq!(indexer.add(&verdict, Some(replayed)).unwrap(), cull_index::Added::Erased);
    indexer.commit().unwrap();
    drop(indexer);
    assert_eq!(get(format!("/api/mentions/{target}")).await.status, 404);

    // Without a token, every route but the document is refused.
    for (method, path, template) in [
        ("GET", "/api/search".to_string(), "/api/search"),
        ("GET", "/api/histogram".to_string(), "/api/histogram"),
        ("GET", "/api/export?format=csv".to_string(), "/api/export"),
        ("GET", "/api/rules/slack-company/definition".to_string(), "/api/rules/{id}/definition"),
        ("GET", format!("/api/mentions/{}", matched.mention_id), "/api/mentions/{id}"),
        ("DELETE", format!("/api/mentions/{}", matched.mention_id), "/api/mentions/{id}"),
        ("POST", "/api/backtest".to_string(), "/api/backtest"),
    ] {
        let body = json!({ "rules": pack });
        let reply = call(method, &format!("{base}{path}"), None, (method == "POST").then_some(&body)).await;
        assert_eq!(reply.status, 401, "{method} {path}");
        spec.check(method, template, &reply);
    }

    assert_eq!(
        spec.unseen(),
        Vec::<(String, String, String)>::new(),
        "responses of the document never checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_dates_repeated_facets_and_slow_backtests_are_answered_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, mentions, _) = fixture(dir.path());
    let base = format!("http://{}", server.address);
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move { call("GET", &url, Some(ANALYST), None).await }
    };
    for (path, expected) in [
        ("/api/search?until=2262-04-12", "until: 2262-04-12T00:00:00Z is outside the times the index holds"),
        ("/api/search?since=1600-01-01", "since: 1600-01-01T00:00:00Z is outside"),
        ("/api/histogram?until=2262-04-12&interval=day", "until: 2262-04-12T00:00:00Z is outside"),
        ("/api/search?since=2026-11-21&until=2026-11-20", "since: 2026-11-21T00:00:00Z is after until"),
    ] {
        let reply = get(path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert!(reply.body["error"].as_str().unwrap().contains(expected), "{path}: {}", reply.body);
    }
    let reply = get("/api/search?until=2262-04-11&limit=0").await;
    assert_eq!(reply.body["total"].as_u64(), Some(mentions.len() as u64), "a late bound in range finds all");

    let once = get("/api/search?facet=site&limit=0").await.body;
    let twice = get("/api/search?facet=site&facet=site&limit=0").await.body;
    assert_eq!(twice["facets"], once["facets"]);

    let tokens = tokens_file(dir.path());
    let hurried = serve(
        &dir.path().join("index"),
        &["--tokens", tokens.to_str().unwrap(), "--query-timeout-ms", "0"],
        &[],
    );
    let draft = json!({"rules": "[[rule]]\nid = \"slow\"\nname = \"slow\"\nquery = 'slack NEAR/5 outage'\n"});
    let url = format!("http://{}/api/backtest", hurried.address);
    let reply = call("POST", &url, Some(ANALYST), Some(&draft)).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body["error"].as_str().unwrap().contains("query time limit of 0 ms"), "{}", reply.body);
    let reply = call("POST", &format!("{base}/api/backtest"), Some(ANALYST), Some(&draft)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_may_call() {
    let dir = tempfile::tempdir().unwrap();
    let set = rules();
    let index_dir = dir.path().join("index");
    index(&index_dir, &set, &hostile_mentions());
    let tokens = tokens_file(dir.path());
    let server = serve(&index_dir, &["--tokens", tokens.to_str().unwrap()], &[]);
    let url = format!("http://{}/api/search?q=script", server.address);

    let reply = call("GET", &url, None, None).await;
    assert_eq!((reply.status, reply.challenge.as_deref()), (401, Some(r#"Bearer realm="cull""#)));
    assert!(reply.body["error"].as_str().unwrap().contains("missing bearer token"), "{}", reply.body);
    let reply = call("GET", &url, Some("analyst-7c1f0e2"), None).await;
    assert_eq!(reply.status, 401);
    assert!(reply.challenge.unwrap().contains("invalid_token"));
    let reply = call("GET", &url, Some(ANALYST), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body["total"].as_u64().unwrap() > 0);
    assert_eq!(call("GET", &url, Some(OPERATOR), None).await.status, 200, "an operator is an analyst too");

    // Tokens from the environment, with or without a file.
    let env = format!("analyst@*:from-env-0123456789,operator@*:{OPERATOR}-env");
    let from_env = serve(&index_dir, &[], &[("CULL_API_TOKENS", env.as_str())]);
    let url = format!("http://{}/api/search", from_env.address);
    assert_eq!(call("GET", &url, Some("from-env-0123456789"), None).await.status, 200);
    assert_eq!(call("GET", &url, Some(ANALYST), None).await.status, 401, "the file is not read");

    // A search stopped by the time limit says so and returns what it had.
    let hurried = serve(&index_dir, &["--tokens", tokens.to_str().unwrap(), "--query-timeout-ms", "0"], &[]);
    for route in ["search", "histogram"] {
        let url = format!("http://{}/api/{route}?q=script", hurried.address);
        let reply = call("GET", &url, Some(ANALYST), None).await;
        assert_eq!(
            (reply.status, &reply.body["timed_out"], &reply.body["total"]),
            (200, &json!(true), &json!(0)),
            "{route}"
        );
    }

    // The README's tokens file works as it says.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let example = readme
        .split("```toml\n")
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("[[token]]"))
        .expect("the README shows a tokens file");
    let file = dir.path().join("readme-tokens.toml");
    std::fs::write(&file, example).unwrap();
    let documented = serve(&index_dir, &["--tokens", file.to_str().unwrap()], &[]);
    let url = format!("http://{}/api/search", documented.address);
    assert_eq!(call("GET", &url, Some("a-long-random-secret"), None).await.status, 200);

    // No token configured: every API request is refused, saying why.
    let closed = serve(&index_dir, &[], &[]);
    let url = format!("http://{}/api/search", closed.address);
    let reply = call("GET", &url, Some(ANALYST), None).await;
    assert_eq!(reply.status, 401);
    assert!(reply.body["error"].as_str().unwrap().contains("no API tokens are configured"), "{}", reply.body);
    let health = reqwest::get(format!("http://{}/healthz", closed.address)).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[test]
fn bad_tokens_are_refused_at_start_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir.path().join("index");
    index(&index_dir, &rules(), &hostile_mentions());
    let file = dir.path().join("tokens.toml");
    std::fs::write(&file, "[[token]]\nname = \"ana\"\nrole = \"analyst\"\nclient = \"*\"\ntoken = \"a-token-0123456789\"\n\n[[token]]\nname = \"x\"\nrole = \"admin\"\ntoken = \"b-token-0123456789\"\n").unwrap();
    let index_arg = index_dir.to_str().unwrap();
    let output = cull(
        &["serve", "--index", index_arg, "--tokens", file.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        &[],
    )
    .env_remove("CULL_API_TOKENS")
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let wanted = format!("{}:9: unknown role \"admin\"; roles are analyst, operator", file.display());
    assert!(text(&output.stderr).contains(&wanted), "{}", text(&output.stderr));

    let output = cull(
        &["serve", "--index", index_arg, "--listen", "127.0.0.1:0"],
        &[("CULL_API_TOKENS", "analyst@*:")],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("CULL_API_TOKENS entry 1: the token is empty"),
        "{}",
        text(&output.stderr)
    );

    let missing = dir.path().join("nope");
    let output = cull(&["serve", "--index", missing.to_str().unwrap()], &[]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--index"), "{}", text(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_token_exports_only_its_clients_mentions() {
    let dir = tempfile::tempdir().unwrap();
    let set = rules();
    let mentions = mentions(&set);
    index(&dir.path().join("index"), &set, &mentions);
    let acme = "acme-analyst-0123456789";
    let env = format!("analyst@acme:{acme},analyst@*:{ANALYST}");
    let server = serve(&dir.path().join("index"), &[], &[("CULL_API_TOKENS", env.as_str())]);
    let url = format!("http://{}/api/export?format=jsonl", server.address);
    let ids = |text: String| -> BTreeSet<String> {
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, _, text) = download(&url, acme).await;
    assert_eq!(status, 200, "{text}");
    let expected: BTreeSet<String> =
        mentions.iter().filter(|m| m.client.as_deref() == Some("acme")).map(|m| m.id.clone()).collect();
    assert!(!expected.is_empty());
    assert_eq!(ids(text), expected);
    let (_, _, text) = download(&format!("{url}&client=globex"), acme).await;
    assert_eq!(ids(text), BTreeSet::new(), "asking for another client widens nothing");
    let (_, _, text) = download(&url, ANALYST).await;
    assert_eq!(ids(text).len(), mentions.len(), "the staff's token exports every client's");
}
