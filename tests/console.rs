//! The web console in headless Chromium, driven over the W3C WebDriver protocol by
//! chromedriver: sign in, search, highlights, facets, the histogram, a mention's
//! "why", a mention's tickets (factors, SLA, incident), and hostile HTML that must
//! stay text. Screenshots are kept in `target/console*.png`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::api::{fixture, serve, tokens_file, ANALYST, HOSTILE_DETAIL};
use crate::pipeline::{cull, repo, text};

/// The key of an element reference in WebDriver responses.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Elements that the hostile payloads would create if they were parsed as HTML.
const PAYLOAD_ELEMENTS: &str =
    "img, script, iframe, object, embed, frame, frameset, applet, meta, link, style, \
                                blink, h1, div[onmouseover], body, html";

struct ChromeDriver {
    child: Child,
    url: String,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session.
pub struct Browser {
    client: reqwest::Client,
    session: String,
    _driver: ChromeDriver,
    _profile: tempfile::TempDir,
}

async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> Result<Value, Value> {
    let request = match method {
        "POST" => client
            .post(url)
            .header("content-type", "application/json")
            .body(body.unwrap_or(json!({})).to_string()),
        "DELETE" => client.delete(url),
        _ => client.get(url),
    };
    let response = request.send().await.map_err(|e| json!({ "error": e.to_string() }))?;
    let ok = response.status().is_success();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
    if ok {
        Ok(body["value"].clone())
    } else {
        Err(body["value"].clone())
    }
}

impl Browser {
    pub async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run chromedriver ({e}): install the Debian packages chromium and chromium-driver (scripts/test.sh installs them)")
            });
        let driver = ChromeDriver { child, url: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while send(&client, "GET", &format!("{}/status", driver.url), None)
            .await
            .map_or(true, |s| s["ready"] != true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let session = send(&client, "POST", &format!("{}/session", driver.url), Some(capabilities))
            .await
            .unwrap_or_else(|e| panic!("cannot start Chromium: {e}"));
        let session = session["sessionId"].as_str().unwrap().to_string();
        Browser { client, session, _driver: driver, _profile: profile }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self._driver.url, self.session)
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        send(&self.client, "POST", &self.url(path), Some(body))
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub async fn open(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn find(&self, css: &str) -> String {
        let found = self.post("/element", json!({ "using": "css selector", "value": css })).await;
        found[ELEMENT].as_str().unwrap().to_string()
    }

    /// Opens `url` and signs in with `token` at the console's token prompt.
    pub async fn sign_in(&self, url: &str, token: &str) {
        self.open(url).await;
        self.wait_for("!document.getElementById('login').hidden").await;
        self.type_into("#token", token).await;
        self.click("#login-button").await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/click"), json!({})).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/clear"), json!({})).await;
        self.post(&format!("/element/{element}/value"), json!({ "text": text })).await;
    }

    pub async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] })).await
    }

    /// Waits until `condition` (a JavaScript expression) is truthy; returns its value.
    pub async fn wait_for(&self, condition: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let script = json!({ "script": format!("return {condition};"), "args": [] });
        loop {
            let value = send(&self.client, "POST", &self.url("/execute/sync"), Some(script.clone())).await;
            if let Ok(value) = &value {
                if !(value.is_null() || *value == false || *value == 0 || *value == "") {
                    return value.clone();
                }
            }
            if Instant::now() > deadline {
                let page = send(&self.client, "GET", &self.url("/url"), None).await;
                let alert = self.alert().await;
                panic!(
                    "timed out waiting for {condition}: {value:?}; the page is {page:?}; alert: {alert:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Returns the text of an open alert, if one is open.
    pub async fn alert(&self) -> Option<String> {
        send(&self.client, "GET", &self.url("/alert/text"), None).await.ok().map(|v| v.to_string())
    }

    pub async fn screenshot(&self, name: &str) {
        let png = send(&self.client, "GET", &self.url("/screenshot"), None).await.unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        let path = repo().join("target").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }

    pub async fn quit(self) {
        let _ = send(&self.client, "DELETE", &self.url(""), None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_searches_highlights_explains_and_keeps_hostile_html_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, mentions, verdicts) = fixture(dir.path());
    let base = format!("http://{}", server.address);
    let browser = Browser::start().await;

    // Signing in: the token prompt first, then every mention.
    browser.sign_in(&format!("{base}/"), ANALYST).await;
    let status = browser.wait_for("/^\\d+ mention/.test(document.getElementById('status').textContent) && document.getElementById('status').textContent").await;
    assert!(status.as_str().unwrap().starts_with(&format!("{} mention(s)", mentions.len())), "{status}");
    let displayed = "[...document.querySelectorAll('#login, #search-view, #mention-view')].filter(e => e.getClientRects().length).map(e => e.id)";
    assert_eq!(browser.script(&format!("return {displayed};")).await, json!(["search-view"]));

    // A search: results with <mark> highlights, facet counts, an SVG histogram.
    browser.type_into("#query", "slack").await;
    browser.click("#search-button").await;
    browser.wait_for("document.querySelectorAll('#results li.hit mark').length").await;
    let marks = browser
        .script(
            "return [...document.querySelectorAll('#results mark')].map(m => m.textContent.toLowerCase());",
        )
        .await;
    let marks: Vec<String> = serde_json::from_value(marks).unwrap();
    assert!(!marks.is_empty() && marks.iter().all(|m| m == "slack"), "{marks:?}");
    let status = browser.script("return document.getElementById('status').textContent;").await;
    let total: u64 = status.as_str().unwrap().split(' ').next().unwrap().parse().unwrap();
    let facet = browser
        .script("return [...document.querySelectorAll('#facets button[data-facet=verdict]')].map(b => [b.dataset.value, Number(b.querySelector('.count').textContent)]);")
        .await;
    let facet: Vec<(String, u64)> = serde_json::from_value(facet).unwrap();
    assert!(!facet.is_empty(), "verdict facet counts");
    assert_eq!(facet.iter().map(|(_, n)| n).sum::<u64>(), total, "{facet:?}");
    // Every mention has one sentiment, under its own heading.
    let sentiment = browser
        .script("return [[...document.querySelectorAll('#facets h2')].map(h => h.textContent), [...document.querySelectorAll('#facets button[data-facet=sentiment]')].map(b => [b.dataset.value, Number(b.querySelector('.count').textContent)])];")
        .await;
    let (headings, sentiment): (Vec<String>, Vec<(String, u64)>) = serde_json::from_value(sentiment).unwrap();
    assert!(headings.iter().any(|h| h == "sentiment"), "{headings:?}");
    assert!(sentiment.iter().all(|(label, _)| ["negative", "neutral", "positive"].contains(&label.as_str())));
    assert_eq!(sentiment.iter().map(|(_, n)| n).sum::<u64>(), total, "{sentiment:?}");
    let bars = browser.script("return [...document.querySelectorAll('#histogram rect.bar')].map(r => Number(r.getAttribute('height')) > 0);").await;
    let bars: Vec<bool> = serde_json::from_value(bars).unwrap();
    assert!(bars.len() > 1 && bars.iter().any(|b| *b), "histogram bars: {bars:?}");
    browser.screenshot("console.png").await;

    // A facet filters: only the matched ones remain.
    browser.click("#facets button[data-facet=verdict][data-value=matched]").await;
    browser.wait_for("document.querySelector('#filters .chip') && document.querySelectorAll('#results .outcome-culled, #results .outcome-unmatched').length === 0").await;

    // A mention page: the whole mention and why its rule matched.
    let matched = verdicts.iter().find(|v| v.matched.iter().any(|m| m.rule_id == "slack-company")).unwrap();
    browser.open(&format!("{base}/#/mention/{}", matched.mention_id)).await;
    let why = browser
        .wait_for("document.querySelector('#mention .why') && document.getElementById('mention').textContent")
        .await;
    assert_eq!(browser.script(&format!("return {displayed};")).await, json!(["mention-view"]));
    let why = why.as_str().unwrap();
    assert!(
        why.contains("Why matched") && why.contains("slack-company") && why.contains("Query clauses"),
        "{why}"
    );
    let mention = mentions.iter().find(|m| m.id == matched.mention_id).unwrap();
    let body = browser.script("return document.querySelector('#mention .body').textContent;").await;
    assert_eq!(body, mention.text);
    assert!(
        browser.script("return document.querySelectorAll('#mention mark').length;").await.as_u64().unwrap()
            > 0
    );
    browser.screenshot("console-mention.png").await;

    // The first matched mention's tickets: factors as a table, the SLA, the incident.
    let ticketed = verdicts.iter().find(|v| !v.matched.is_empty()).unwrap();
    browser.open(&format!("{base}/#/mention/{}", ticketed.mention_id)).await;
    browser.wait_for("document.querySelectorAll('#mention .ticket').length === 2").await;
    let ticket =
        browser.script("return document.querySelector('#mention .ticket.kind-ticket').textContent;").await;
    let ticket = ticket.as_str().unwrap();
    for shown in [
        "t-fixture revision 2",
        "P1, score 85",
        "2026-11-20T10:15:00Z",
        "social/P1",
        "calendar",
        "15 minutes",
        "30 minutes",
        "2026-11-20T09:58:00Z",
        "Spike of rule:slack-company",
    ] {
        assert!(ticket.contains(shown), "{shown:?} is not on the ticket: {ticket}");
    }
    let factor = browser
        .script("return [...document.querySelectorAll('#mention .kind-ticket table.factors tbody tr td')].map(td => td.textContent);")
        .await;
    assert_eq!(factor, json!(["crisis", "1", "25", HOSTILE_DETAIL]), "the factor row, its detail as text");
    let link =
        browser.script("return document.querySelector('#mention a.incident').getAttribute('href');").await;
    assert_eq!(link, json!(format!("#/mention/{}", ticketed.mention_id)), "the incident's mention");
    let parsed = browser
        .script(&format!("return document.querySelectorAll('#mention :is({PAYLOAD_ELEMENTS})').length;"))
        .await;
    assert_eq!(parsed, 0, "the factor's detail was parsed as HTML");
    browser.script("document.querySelector('#mention .ticket').scrollIntoView(); return true;").await;
    browser.screenshot("console-tickets.png").await;

    let culled = verdicts.iter().find(|v| v.matched.is_empty() && !v.culled.is_empty()).unwrap();
    browser.open(&format!("{base}/#/mention/{}", culled.mention_id)).await;
    let why = browser.wait_for("document.querySelector('#mention .why.outcome-culled') && document.getElementById('mention').textContent").await;
    assert!(
        why.as_str().unwrap().contains(&format!("Why culled: by {}", culled.culled[0].reason.as_str())),
        "{why}"
    );

    // Hostile mentions: shown as literal text, nothing of them parsed, nothing run.
    browser.open(&format!("{base}/")).await;
    browser.wait_for("!document.getElementById('search-view').hidden").await;
    browser.type_into("#query", "source:sanitize").await;
    browser.click("#search-button").await;
    browser.wait_for("document.getElementById('status').textContent.startsWith('12 mention')").await;
    let shown = browser.script("return document.getElementById('results').textContent;").await;
    let shown = shown.as_str().unwrap();
    for payload in ["<script type=\"text/javascript\">", "onerror=\"location.href=", "<iframe src="] {
        assert!(shown.contains(payload), "{payload} is not shown as text");
    }
    let parsed = browser
        .script(&format!("return document.querySelectorAll('#results :is({PAYLOAD_ELEMENTS})').length;"))
        .await;
    assert_eq!(parsed, 0, "elements of the payloads were created");
    browser.open(&format!("{base}/#/mention/sanitize-entry_content_crazy")).await;
    browser.wait_for("document.querySelector('#mention .body') && document.querySelector('#mention .body').textContent.includes('executeMe')").await;
    // A hit shows a passage; the mention page shows the whole text, payload included.
    let body = browser.script("return document.querySelector('#mention .body').textContent;").await;
    assert!(
        body.as_str().unwrap().contains("alert(\"Executed\")"),
        "the payload is not shown as text: {body}"
    );
    let parsed = browser
        .script(&format!("return document.querySelectorAll('#mention :is({PAYLOAD_ELEMENTS})').length;"))
        .await;
    assert_eq!(parsed, 0, "elements of the payload were created on the mention page");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(browser.alert().await, None, "a payload opened an alert");
    let location = browser.script("return location.origin;").await;
    assert_eq!(location, base, "a payload navigated away");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_from_a_pipeline_run_shows_on_its_mentions_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    // A VIP author whose name is hostile HTML: the ticket's `vip` factor names it.
    let mention = json!({
        "schema": "cull.mention/v1", "id": "vip-1", "channel": "news", "lang": "en",
        "author": HOSTILE_DETAIL, "published_at": "2026-11-20T09:00:00Z",
        "title": "Slack shares climb after earnings",
        "text": "Slack Technologies reported revenue growth and its shares rose in after-hours trading.",
    });
    std::fs::write(path("mentions.jsonl"), format!("{mention}\n")).unwrap();
    let pipeline = format!(
        "[bus.embedded]\ndir = \"{bus}\"\n[matcher]\nrules = \"rules\"\n[tickets]\nvip_authors = [{vip}]\n\
         [index]\nenabled = true\ndir = \"{index}\"\n[[source]]\nkind = \"jsonl\"\nname = \"vip\"\npath = \"{source}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n",
        bus = path("bus"),
        vip = json!(HOSTILE_DETAIL),
        index = path("index"),
        source = path("mentions.jsonl"),
    );
    std::fs::write(path("pipeline.toml"), pipeline).unwrap();
    let out = cull(&["run", &path("pipeline.toml"), "--once"], &[]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tokens = tokens_file(dir.path());
    let server = serve(&dir.path().join("index"), &["--tokens", tokens.to_str().unwrap()], &[]);
    let base = format!("http://{}", server.address);
    let browser = Browser::start().await;
    browser.sign_in(&format!("{base}/"), ANALYST).await;
    browser.wait_for("/^\\d+ mention/.test(document.getElementById('status').textContent)").await;
    browser.open(&format!("{base}/#/mention/vip-1")).await;
    let ticket = browser.wait_for("document.querySelector('#mention .ticket') && document.querySelector('#mention .ticket').textContent").await;
    let ticket = ticket.as_str().unwrap();
    assert!(
        ticket.contains("SLA due at") && ticket.contains("SLA policy") && ticket.contains("revision 1"),
        "{ticket}"
    );
    let rows = browser
        .script("return [...document.querySelectorAll('#mention .ticket table.factors tbody tr')].map(tr => [...tr.cells].map(td => td.textContent));")
        .await;
    let rows: Vec<Vec<String>> = serde_json::from_value(rows).unwrap();
    assert!(rows.iter().any(|row| row[0] == "vip" && row[3] == HOSTILE_DETAIL), "{rows:?}");
    let parsed = browser
        .script(&format!("return document.querySelectorAll('#mention :is({PAYLOAD_ELEMENTS})').length;"))
        .await;
    assert_eq!(parsed, 0, "the author was parsed as HTML");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(browser.alert().await, None, "a payload opened an alert");
    browser.script("document.querySelector('#mention .ticket').scrollIntoView(); return true;").await;
    browser.screenshot("console-pipeline-ticket.png").await;
    browser.quit().await;
}

/// The number at the start of the status line (the total of the search shown).
const TOTAL: &str = "parseInt(document.getElementById('status').textContent, 10)";

/// Waits until the search shown is settled (its status says how many), returns the total.
async fn settled(browser: &Browser) -> u64 {
    browser.wait_for("/^\\d+ mention/.test(document.getElementById('status').textContent)").await;
    browser.script(&format!("return {TOTAL};")).await.as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_keeps_its_view_in_the_url_and_shows_errors_facets_histogram_exports() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, mentions, _) = fixture(dir.path());
    let base = format!("http://{}", server.address);
    let browser = Browser::start().await;
    browser.sign_in(&format!("{base}/"), ANALYST).await;
    assert_eq!(settled(&browser).await as usize, mentions.len());

    // A facet value and a search go into the URL; a reload shows the same view, and
    // back and forward step through them.
    let domains = browser
        .script("return [...document.querySelectorAll('#facets button[data-facet=domain]')].map(b => [b.dataset.value, Number(b.querySelector('.count').textContent)]);")
        .await;
    let domains: Vec<(String, u64)> = serde_json::from_value(domains).unwrap();
    assert!(!domains.is_empty(), "a site facet");
    assert!(
        domains.iter().all(|(d, _)| d.contains('.') && !d.starts_with("www.")),
        "registered domains: {domains:?}"
    );
    let (domain, count) = domains[0].clone();
    browser.click(&format!("#facets button[data-facet=domain][data-value='{domain}']")).await;
    browser.wait_for(&format!("location.hash === '#/?filter=domain%3A{domain}'")).await;
    browser.wait_for(&format!("{TOTAL} === {count}")).await;
    let hits = browser.script("return document.querySelectorAll('#results li.hit').length;").await;
    assert_eq!(hits.as_u64().unwrap(), count.min(20), "the filter selects what the facet counted");
    browser.type_into("#query", "slack OR stock").await;
    browser.click("#search-button").await;
    browser.wait_for(&format!("location.hash === '#/?q=slack+OR+stock&filter=domain%3A{domain}'")).await;
    let narrowed = settled(&browser).await;
    let url = browser.script("return location.href;").await;
    browser.post("/refresh", json!({})).await;
    assert_eq!(settled(&browser).await, narrowed, "a reload restores the view");
    assert_eq!(browser.script("return document.getElementById('query').value;").await, "slack OR stock");
    assert_eq!(browser.script("return location.href;").await, url);
    let chips = browser.script("return document.getElementById('filters').textContent;").await;
    assert!(chips.as_str().unwrap().contains(&format!("site: {domain}")), "{chips}");
    browser.screenshot("console-url-state.png").await;
    browser.post("/back", json!({})).await;
    browser.wait_for(&format!("location.hash === '#/?filter=domain%3A{domain}'")).await;
    browser.wait_for(&format!("{TOTAL} === {count} && document.getElementById('query').value === ''")).await;
    browser.post("/forward", json!({})).await;
    browser
        .wait_for(&format!(
            "{TOTAL} === {narrowed} && document.getElementById('query').value === 'slack OR stock'"
        ))
        .await;

    // Each hit shows its verdict and, when culled, the rule and clause; an untitled
    // hit is named by its text.
    browser.open(&format!("{base}/#/?filter=verdict%3Aculled")).await;
    settled(&browser).await;
    let culls = browser
        .script("return [...document.querySelectorAll('#results li.hit')].map(h => [h.querySelector('.outcome').textContent, h.querySelector('ul.culls') ? h.querySelector('ul.culls').textContent : '']);")
        .await;
    let culls: Vec<(String, String)> = serde_json::from_value(culls).unwrap();
    assert!(!culls.is_empty());
    for (outcome, why) in &culls {
        assert_eq!(outcome, "culled");
        assert!(why.contains("culled by") && why.contains(" — "), "{why}");
    }
    let untitled = mentions.iter().find(|m| m.title.is_none()).expect("an untitled mention");
    let words: Vec<&str> =
        untitled.text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(4).collect();
    let phrase: String =
        form_urlencoded::byte_serialize(format!("\"{}\"", words.join(" ")).as_bytes()).collect();
    browser.open(&format!("{base}/#/?q={phrase}")).await;
    settled(&browser).await;
    let names = browser
        .script("return [...document.querySelectorAll('#results a.untitled')].map(a => a.textContent);")
        .await;
    let names: Vec<String> = serde_json::from_value(names).unwrap();
    assert!(
        !names.is_empty() && names.iter().all(|n| !n.is_empty() && !mentions.iter().any(|m| m.id == *n)),
        "{names:?}"
    );

    // A failed query clears the results and points at the error under the query.
    browser.open(&format!("{base}/#/?q=slack")).await;
    settled(&browser).await;
    let broken = "café AND OR slack";
    let span = cull_rules::query::parse(broken).unwrap_err().span;
    assert!(
        span.start > "café ".len() && span.end > span.start,
        "an error after a non-ASCII letter: {span:?}"
    );
    browser.type_into("#query", broken).await;
    browser.click("#search-button").await;
    browser.wait_for("!document.getElementById('error').hidden").await;
    let left = browser
        .script("return [document.querySelectorAll('#results li').length, document.querySelectorAll('#facets button').length, document.querySelectorAll('#histogram rect').length, document.getElementById('status').textContent];")
        .await;
    assert_eq!(left, json!([0, 0, 0, ""]), "the old results are gone");
    let caret = browser.script("return document.getElementById('error-caret').textContent;").await;
    let under = format!(
        "{broken}\n{}{}",
        " ".repeat(broken[..span.start].chars().count()),
        "^".repeat(broken[span].chars().count())
    );
    assert_eq!(caret, json!(under), "the caret is under the clause");
    browser.screenshot("console-error.png").await;

    // The histogram: axes, a count on hover, a split into series, drag-to-zoom.
    browser.open(&format!("{base}/#/?q=slack")).await;
    settled(&browser).await;
    let labels = browser
        .script("return [...document.querySelectorAll('#histogram text.axis')].map(t => t.textContent);")
        .await;
    let labels: Vec<String> = serde_json::from_value(labels).unwrap();
    assert!(labels.len() >= 4 && labels.iter().any(|l| l.starts_with("2026-11")), "{labels:?}");
    let tip = browser
        .script("const hover = document.querySelectorAll('#histogram rect.hover')[1]; hover.dispatchEvent(new MouseEvent('mouseenter')); return document.getElementById('histogram-tip').textContent;")
        .await;
    assert!(tip.as_str().unwrap().starts_with("2026-11") && tip.as_str().unwrap().contains(": "), "{tip}");
    browser.script("const s = document.getElementById('split'); s.value = 'verdict'; s.dispatchEvent(new Event('change')); return true;").await;
    browser.wait_for("location.hash.includes('split=verdict') && document.querySelectorAll('#histogram rect.series').length > 0").await;
    let legend = browser
        .script("return [...document.querySelectorAll('#legend .key')].map(k => k.textContent);")
        .await;
    let legend: Vec<String> = serde_json::from_value(legend).unwrap();
    assert!(
        legend.iter().all(|k| ["matched", "culled", "unmatched"].contains(&k.as_str())) && !legend.is_empty(),
        "{legend:?}"
    );
    browser.screenshot("console-histogram-split.png").await;
    let before = settled(&browser).await;
    browser
        .script(
            "const chart = document.getElementById('histogram'); const box = chart.getBoundingClientRect();\
             const bars = chart.querySelectorAll('rect.hover');\
             const at = (i) => { const r = bars[i].getBoundingClientRect(); return r.left + r.width / 2; };\
             const y = box.top + box.height / 2;\
             const [from, to] = [Math.floor(bars.length / 4), Math.floor(bars.length * 3 / 4)];\
             chart.dispatchEvent(new MouseEvent('mousedown', { clientX: at(from), clientY: y, bubbles: true }));\
             chart.dispatchEvent(new MouseEvent('mousemove', { clientX: at(to), clientY: y, bubbles: true }));\
             window.dispatchEvent(new MouseEvent('mouseup', { clientX: at(to), clientY: y, bubbles: true }));\
             return true;",
        )
        .await;
    browser.wait_for("location.hash.includes('since=') && location.hash.includes('until=')").await;
    browser.wait_for("document.querySelector('#filters .chip.window')").await;
    let zoomed = settled(&browser).await;
    assert!(zoomed < before && zoomed > 0, "zoomed to the middle half: {zoomed} of {before}");
    let hash = browser.script("return decodeURIComponent(location.hash);").await;
    assert!(hash.as_str().unwrap().contains("split=verdict"), "the zoom keeps the split: {hash}");

    // An export of the whole result, not the page.
    browser.open(&format!("{base}/#/")).await;
    let total = settled(&browser).await;
    assert!(total > 20, "more than a page");
    browser.click("#export-csv").await;
    let exported = browser.wait_for("document.getElementById('export-status').textContent.startsWith('Exported') && document.getElementById('export-status').textContent").await;
    assert_eq!(exported, json!(format!("Exported {total} mention(s) as CSV.")));
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_fits_400_px_and_drafts_a_rule_against_the_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, _, verdicts) = fixture(dir.path());
    let base = format!("http://{}", server.address);
    let browser = Browser::start().await;
    browser.post("/window/rect", json!({ "width": 400, "height": 900 })).await;
    browser.sign_in(&format!("{base}/"), ANALYST).await;
    settled(&browser).await;
    let layout = browser
        .script(
            "const top = (id) => document.getElementById(id).getBoundingClientRect().top;\
             return [window.innerWidth <= 400, document.documentElement.scrollWidth <= window.innerWidth,\
                     top('facets') > top('results'), document.getElementById('query').getBoundingClientRect().width > 300];",
        )
        .await;
    assert_eq!(layout, json!([true, true, true, true]), "one column, nothing wider than the screen");
    browser.screenshot("console-400px.png").await;
    browser.post("/window/rect", json!({ "width": 1280, "height": 900 })).await;

    // Drafting: the live rule loads, the draft without its exclude backtests as a
    // diff against it: what it would newly match, and nothing it would lose.
    browser.open(&format!("{base}/#/draft?rule=slack-company")).await;
    browser.wait_for("document.getElementById('live-toml').value.includes('slack-company')").await;
    browser.type_into("#draft-since", "").await;
    let excluded = verdicts
        .iter()
        .filter(|v| v.culled.iter().any(|c| c.rule_id == "slack-company" && c.reason.as_str() == "exclude"))
        .count();
    assert!(excluded > 0, "the fixture has mentions the rule's exclude culls");
    browser
        .script("const draft = document.getElementById('draft-toml'); draft.value = draft.value.replace(/^exclude = .*$/m, ''); return true;")
        .await;
    browser.click("#draft-run").await;
    let diff = browser.wait_for("document.querySelector('#draft-diff .gained') && document.getElementById('draft-diff').textContent").await;
    let diff = diff.as_str().unwrap();
    assert!(diff.contains("No longer matched: 0"), "{diff}");
    let gained = browser.script("return document.querySelector('#draft-diff .gained h3').textContent;").await;
    let gained: usize = gained.as_str().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(gained >= excluded, "the culled-by-exclude mentions are newly matched: {gained} < {excluded}");
    let links = browser
        .script("return document.querySelectorAll('#draft-diff .gained a[href^=\"#/mention/\"]').length;")
        .await;
    assert!(links.as_u64().unwrap() > 0, "examples link to their mentions");
    browser.screenshot("console-draft.png").await;
    browser.quit().await;
}
