//! The pipeline file (`pipelines/*.toml`): its model, environment overrides and validation.
//!
//! One file describes one `cull run`: which bus carries the topics, which stages run and
//! where sources and sinks read and write. The file is checked in four steps so that an
//! operator learns everything wrong in one go and always sees which key is at fault:
//!
//! 1. the TOML is parsed (syntax errors carry `file:line:column`);
//! 2. environment variables named `CULL__SECTION__KEY[__SUBKEY…]` override keys, because a
//!    deployment (a container, a Kubernetes manifest) changes a broker list or a rules
//!    directory without editing the file;
//! 3. the result is deserialized with `deny_unknown_fields` everywhere, so a misspelled key
//!    is an error rather than a silently ignored default, and [`serde_path_to_error`] names
//!    the key path (`matcher.batch_sise`);
//! 4. the values are validated without any I/O (connectivity is the runner's business, as
//!    in Quickwit), and every violation is collected before one error is reported. Each
//!    section belongs to the component that reads it (`[bus]` to cull-bus, `[[source]]`
//!    to cull-ingest, `[tickets]` to cull-ticket, `[index]` to cull-index, the stages'
//!    sections to cull-runtime), which defines its defaults and checks its values; this
//!    module composes them and checks what spans sections (no two sources or sinks
//!    share a file).
//!
//! Paths in the file (rules directory, source and sink files) are relative to the current
//! directory of the process, not to the file, so that `cull run pipelines/local.toml` from
//! the repository root reads `rules/` and writes `data/` at the root.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use cull_bus::BusConfig;
use cull_index::IndexConfig;
use cull_ingest::{IngestConfig, SourceConfig};
use cull_model::config::Invalid;
use cull_quality::QualityConfig;
use cull_runtime::{MatcherConfig, ShutdownConfig, SinksConfig, Topics};
use cull_ticket::TicketConfig;
use serde::{Deserialize, Serialize};

/// The prefix of the environment variables that override keys of the pipeline file.
const ENV_PREFIX: &str = "CULL__";

/// The separator between key segments in an override variable; a single `_` stays part of
/// a key (`BATCH_SIZE`), so nested keys need a separator that no key contains.
const ENV_SEPARATOR: &str = "__";

/// A whole pipeline file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The bus that carries the topics between stages.
    #[serde(default)]
    pub bus: BusConfig,
    /// The topic names.
    #[serde(default)]
    pub topics: Topics,
    /// The matcher stage.
    #[serde(default)]
    pub matcher: MatcherConfig,
    /// The ticketing stage.
    #[serde(default)]
    pub tickets: TicketConfig,
    /// Sources producing to `topics.mentions`; none when outside producers feed the bus.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// What the sources share: cursors and the duplicate window.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The indexer stage: verdicts into the analyst index.
    #[serde(default)]
    pub index: IndexConfig,
    /// The quality stage: per-rule counts, costs and precision from agents' feedback.
    #[serde(default)]
    pub quality: QualityConfig,
    /// The API on the `[http]` server.
    #[serde(default)]
    pub api: Api,
    /// Optional copies of the output topics to files.
    #[serde(default)]
    pub sink: SinksConfig,
    /// The HTTP server for metrics, health, webhooks and the API.
    #[serde(default)]
    pub http: crate::server::Http,
    /// How the process stops.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
}

/// The API of a `cull run` process: the analyst API and console over its index (with
/// `[index]`), and the operators' `POST /api/rules/reload` (with a matcher).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Whether to serve it.
    pub enabled: bool,
    /// The tokens file (`[[token]]` with `name`, `role`, `client` and `token`); `CULL_API_TOKENS`
    /// (`role@client:token,…`) adds tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<PathBuf>,
}

/// Loads, overrides from the process environment, and validates the pipeline file at `path`.
pub fn load(path: &Path) -> anyhow::Result<Pipeline> {
    load_with_env(path, cull_environment()?)
}

/// As [`load`], returning every problem found rather than one error.
pub fn check(path: &Path) -> Result<Pipeline, Vec<Problem>> {
    let env = cull_environment().map_err(|e| vec![Problem { key: None, message: e.to_string() }])?;
    check_with_env(path, env)
}

/// Returns the process's `CULL__…` variables.
fn cull_environment() -> anyhow::Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for (name, value) in std::env::vars_os() {
        // Variables outside cull's prefix may hold anything, including non-UTF-8 bytes.
        let Some(name) = name.to_str().filter(|name| name.starts_with(ENV_PREFIX)).map(str::to_string) else {
            continue;
        };
        let value = value.into_string().map_err(|_| anyhow!("environment variable {name}: not UTF-8"))?;
        env.push((name, value));
    }
    Ok(env)
}

pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Pipeline> {
    check_with_env(path, env).map_err(|problems| anyhow!(render(&path.display(), &problems)))
}

/// A problem with a pipeline file: a setting (`key`) that does not make sense, or the
/// file as a whole (no key: unreadable, a syntax error, an unknown key, located).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The setting, such as `matcher.batch_size`.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Loads, overrides and validates the pipeline file, returning every problem found.
pub fn check_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Pipeline, Vec<Problem>> {
    let whole = |error: anyhow::Error| vec![Problem { key: None, message: format!("{error:#}") }];
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read pipeline file {file}"))
        .map_err(whole)?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|error| whole(anyhow!("{}", located(&file, &text, &error, None))))?;
    let overrides = apply_overrides(&mut table, env, &file).map_err(whole)?;
    let pipeline = deserialize(table, &text, &overrides, &file).map_err(whole)?;
    let errors = pipeline.validate();
    if errors.is_empty() {
        return Ok(pipeline);
    }
    Err(errors
        .into_iter()
        .map(|Invalid { key, message }| {
            let message = match overrides.iter().find(|o| o.key.eq_ignore_ascii_case(&key)) {
                Some(var) => format!("{message} (set by environment variable {})", var.var),
                None => message,
            };
            Problem { key: Some(key), message }
        })
        .collect())
}

/// Returns what `cull run` needs from this machine's environment and checks before it
/// opens anything, beyond the file's values: every webhook's secret variable and, with
/// `[api]`, the API tokens. `cull config check` reports the same, so that a check that
/// passes means a start that does not fail on configuration. (The rule pack is checked
/// beside it, when [`Pipeline::needs_rules`].)
pub fn check_environment(pipeline: &Pipeline) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Err(error) = cull_ingest::webhook_configs(&pipeline.sources) {
        problems.push(Problem { key: None, message: error.to_string() });
    }
    let env = |name: &str| std::env::var(name).ok();
    for (index, alert) in pipeline.sink.alert.iter().enumerate() {
        for error in cull_alert::check_environment(index, alert, &env) {
            let key = match &error {
                cull_alert::AlertError::MissingEnv { key, .. }
                | cull_alert::AlertError::Invalid { key, .. } => Some(format!("sink.alert[{index}].{key}")),
                cull_alert::AlertError::State { .. } => None,
            };
            let message = error.to_string();
            let message = match message.split_once(": ") {
                Some((_, rest)) if key.is_some() => rest.to_string(),
                _ => message,
            };
            problems.push(Problem { key, message });
        }
    }
    if pipeline.api.enabled {
        let env = std::env::var(crate::auth::TOKENS_ENV).ok();
        if let Err(error) = crate::auth::Tokens::load(pipeline.api.tokens.as_deref(), env.as_deref()) {
            problems.push(Problem { key: Some("api.tokens".to_string()), message: error.to_string() });
        }
    }
    problems
}

/// Renders problems as `cull` reports them: a whole-file problem as it is, settings as
/// `<file>: N invalid settings` followed by one `key: message` line each.
pub fn render(file: &impl std::fmt::Display, problems: &[Problem]) -> String {
    if let [Problem { key: None, message }] = problems {
        return message.clone();
    }
    let mut text =
        format!("{file}: {} invalid setting{}", problems.len(), if problems.len() == 1 { "" } else { "s" });
    for problem in problems {
        match &problem.key {
            Some(key) => {
                let _ = write!(text, "\n  {key}: {}", problem.message);
            }
            None => {
                let _ = write!(text, "\n  {}", problem.message);
            }
        }
    }
    text
}

/// An environment variable that set a key, remembered so that errors about the key name
/// the variable, which is where the operator must look.
#[derive(Debug)]
struct Override {
    var: String,
    /// The value as given, for hints.
    raw: String,
    /// The key path in [`serde_path_to_error::Path`]'s notation (`source[0].path`).
    key: String,
}

/// Sets every `CULL__…` variable of `env` in `table`, in name order, and returns them.
fn apply_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    file: &impl std::fmt::Display,
) -> anyhow::Result<Vec<Override>> {
    let vars: BTreeMap<String, String> =
        env.into_iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect();
    let mut overrides = Vec::new();
    for (var, raw) in vars {
        let segments: Vec<String> =
            var[ENV_PREFIX.len()..].split(ENV_SEPARATOR).map(str::to_ascii_lowercase).collect();
        if segments.iter().any(String::is_empty) {
            bail!(
                "environment variable {var} (overriding {file}): empty key segment; \
                 name keys as CULL__SECTION__KEY, segments separated by `__`"
            );
        }
        let key = set_key(table, &segments, env_value(&raw))
            .map_err(|error| anyhow!("environment variable {var} (overriding {file}): {error}"))?;
        overrides.push(Override { var, raw, key });
    }
    Ok(overrides)
}

/// Returns `raw` as a TOML value when it is one (`512`, `true`, `["a", "b"]`, `"quoted"`)
/// and as a string otherwise (`127.0.0.1:9092`, `rules`), so that plain strings need no
/// quoting in a shell or a manifest.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut parsed) if parsed.len() == 1 => {
            parsed.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string()))
        }
        _ => toml::Value::String(raw.to_string()),
    }
}

/// Sets `value` at the key path `segments` of `table`, creating missing tables, and
/// returns the path as written; unknown keys are left for deserialization to reject.
///
/// A segment after a list (`[[source]]`) is an index into it: `CULL__SOURCE__0__PATH`.
fn set_key(table: &mut toml::Table, segments: &[String], value: toml::Value) -> Result<String, String> {
    let mut root = toml::Value::Table(std::mem::take(table));
    let mut key = String::new();
    let result = set_in(&mut root, segments, value, &mut key);
    if let toml::Value::Table(root) = root {
        *table = root;
    }
    result.map(|()| key)
}

fn set_in(
    root: &mut toml::Value,
    segments: &[String],
    value: toml::Value,
    key: &mut String,
) -> Result<(), String> {
    let mut current = root;
    let mut rest = segments;
    loop {
        let (segment, tail) = rest.split_first().ok_or("no key")?;
        current = match current {
            toml::Value::Table(table) => {
                let name = existing_key(table, segment);
                push_key(key, &name);
                if tail.is_empty() {
                    table.insert(name, value);
                    return Ok(());
                }
                table.entry(name).or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            toml::Value::Array(items) => {
                let len = items.len();
                let item =
                    segment.parse::<usize>().ok().and_then(|index| Some((index, items.get_mut(index)?)));
                let Some((index, item)) = item else {
                    return Err(format!(
                        "`{key}` is a list of {len}: the next segment must be an index below {len}"
                    ));
                };
                let _ = write!(key, "[{index}]");
                if tail.is_empty() {
                    *item = value;
                    return Ok(());
                }
                item
            }
            other => return Err(format!("`{key}` is a {}, not a table", other.type_str())),
        };
        rest = tail;
    }
}

/// Returns the key of `table` that `segment` names: an existing key that differs only in
/// case (`sla_minutes.P1`, since override segments are lowercased), or `segment` itself.
fn existing_key(table: &toml::Table, segment: &str) -> String {
    table.keys().find(|key| key.eq_ignore_ascii_case(segment)).cloned().unwrap_or_else(|| segment.to_string())
}

fn push_key(path: &mut String, name: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(name);
}

/// Deserializes the overridden `table`, naming the key path of an error, and the variable
/// when an override is at or below that key, or else the file line and column.
fn deserialize(
    table: toml::Table,
    text: &str,
    overrides: &[Override],
    file: &impl std::fmt::Display,
) -> anyhow::Result<Pipeline> {
    use serde::de::IntoDeserializer as _;

    let error = match serde_path_to_error::deserialize::<_, Pipeline>(table.into_deserializer()) {
        Ok(pipeline) => return Ok(pipeline),
        Err(error) => error,
    };
    let key = error.path().to_string();
    let culprit = overrides.iter().find(|o| {
        o.key.eq_ignore_ascii_case(&key)
            || o.key.to_ascii_lowercase().starts_with(&format!("{}.", key.to_ascii_lowercase()))
    });
    if let Some(Override { var, raw, .. }) = culprit {
        let what = error.inner().message();
        let mut message = format!("environment variable {var} (overriding {file}): {key}: {what}");
        if what.starts_with("invalid type") {
            let _ = write!(message, "; to pass a string, quote it: {var}='\"{raw}\"'");
        }
        bail!(message);
    }
    // The same error from the file text carries the line and column of the key.
    if let Ok(deserializer) = toml::Deserializer::parse(text) {
        if let Err(located_error) = serde_path_to_error::deserialize::<_, Pipeline>(deserializer) {
            if located_error.path().to_string() == key {
                bail!("{}", located(file, text, located_error.inner(), Some(&key)));
            }
        }
    }
    bail!("{file}: {key}: {}", error.inner().message())
}

/// Formats a TOML error compiler-style: `file:line:column: key: message`.
fn located(file: &impl std::fmt::Display, text: &str, error: &toml::de::Error, key: Option<&str>) -> String {
    let mut out = file.to_string();
    if let Some(span) = error.span() {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before, |newline| &before[newline + 1..]).chars().count() + 1;
        let _ = write!(out, ":{line}:{column}");
    }
    if let Some(key) = key {
        let _ = write!(out, ": {key}");
    }
    let _ = write!(out, ": {}", error.message().trim_end());
    out
}

impl Pipeline {
    /// Whether this process needs the rule pack: the matcher and the tickets stage
    /// use it, and the quality stage profiles with it (an ingest-only or index-only
    /// process does not).
    pub fn needs_rules(&self) -> bool {
        self.matcher.enabled || self.tickets.enabled || self.quality.enabled
    }

    /// Returns the clients this pipeline names (its sources' and `[tickets.clients]`),
    /// in name order; the clients with rules in the rules directory come on top.
    pub fn clients(&self) -> Vec<String> {
        let mut clients: Vec<String> =
            self.sources.iter().filter_map(|s| s.client().map(str::to_string)).collect();
        clients.extend(self.tickets.clients.keys().cloned());
        clients.sort();
        clients.dedup();
        clients
    }

    /// Returns every invalid setting: each section checked by the component that owns
    /// it, then what spans sections. Checks values only, never the network or the disk.
    fn validate(&self) -> Vec<Invalid> {
        let mut checks = cull_model::config::Checks::default();
        checks.nested("bus", self.bus.validate());
        checks.nested("topics", self.topics.validate());
        checks.nested("matcher", self.matcher.validate());
        checks.nested("tickets", self.tickets.validate());
        checks.nested("ingest", self.ingest.validate());
        checks.nested("index", self.index.validate());
        checks.nested("quality", self.quality.validate());
        checks.nested("shutdown", self.shutdown.validate());
        checks.nested("http", self.http.validate());
        let mut files: Vec<(String, &Path)> = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            let at = format!("source[{i}]");
            checks.nested(&at, source.validate());
            let name = source.name();
            if let Some(j) = self.sources[..i].iter().position(|earlier| earlier.name() == name) {
                checks.check(false, &format!("{at}.name"), || format!("`{name}` is also source[{j}].name"));
            }
            files.extend(source.files().into_iter().map(|(key, path)| (format!("{at}.{key}"), path)));
        }
        // On the embedded bus the matcher of this process is the only reader of the
        // mentions its sources acknowledge: without it a webhook answers 202 and
        // nothing ever comes of the mention.
        let orphaned =
            self.bus.kind == cull_bus::BusKind::Embedded && !self.sources.is_empty() && !self.matcher.enabled;
        checks.check(!orphaned, "matcher.enabled", || {
            let names: Vec<&str> = self.sources.iter().map(|s| s.name()).collect();
            format!(
                "false, but the sources ({}) acknowledge mentions on the embedded bus, which only this process's matcher reads: enable the matcher, or use bus.kind = \"kafka\" with matchers elsewhere",
                names.join(", ")
            )
        });
        for (i, alert) in self.sink.alert.iter().enumerate() {
            let at = format!("sink.alert[{i}]");
            checks.nested(&at, alert.validate());
            if let Some(j) = self.sink.alert[..i].iter().position(|earlier| earlier.name == alert.name) {
                checks.check(false, &format!("{at}.name"), || {
                    format!("`{}` is also sink.alert[{j}].name: each sink needs its own name", alert.name)
                });
            }
        }
        for (key, sink) in self.sink.configured() {
            checks.nested(&format!("sink.{key}"), sink.validate());
            files.push((format!("sink.{key}.path"), &sink.path));
        }
        for (i, (key, path)) in files.iter().enumerate() {
            let same = files[..i].iter().find(|(_, earlier)| earlier == path && !path.as_os_str().is_empty());
            if let Some((other, _)) = same {
                checks.check(false, key, || {
                    format!("`{}` is also {other}: every source and sink needs its own file", path.display())
                });
            }
        }
        checks.finish()
    }
}

#[cfg(test)]
mod tests {
    use cull_bus::{BusKind, KafkaSettings};
    use cull_ingest::mail::MailFormat;
    use cull_ingest::{FeedSource, JsonlSource, MailSource, Markup, WebhookSource};
    use cull_model::Channel;
    use cull_runtime::{FileSinkConfig, SinkKind};

    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests-fixtures").join(name)
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load_err(path: &Path, pairs: &[(&str, &str)]) -> String {
        match load_with_env(path, env(pairs)) {
            Ok(pipeline) => panic!("{} loaded: {pipeline:?}", path.display()),
            Err(error) => format!("{error:#}"),
        }
    }

    #[test]
    fn shipped_local_pipeline_loads_and_validates() {
        let pipeline = load_with_env(&root().join("pipelines/local.toml"), env(&[])).unwrap();
        assert_eq!(pipeline.bus.kind, BusKind::Embedded);
        assert!(pipeline.http.listen.ip().is_loopback());
        assert_eq!(pipeline.sources.len(), 3, "the real Google Alerts feed, tweets and headlines");
        for source in &pipeline.sources {
            let SourceConfig::Jsonl(demo) = source else { panic!("the demo sources are JSON lines") };
            assert!(root().join(&demo.path).is_file(), "the demo source {} is shipped", demo.name);
        }
        assert!(pipeline.sink.tickets.as_ref().is_some_and(|sink| sink.path.starts_with("data")));
        assert_eq!(pipeline.matcher.rules, Path::new("rules"));
    }

    #[test]
    fn shipped_kafka_pipeline_loads_and_validates() {
        let pipeline = load_with_env(&root().join("pipelines/kafka.toml"), env(&[])).unwrap();
        assert_eq!(pipeline.bus.kind, BusKind::Kafka);
        assert_eq!(pipeline.bus.kafka.as_ref().map(|k| k.brokers.as_str()), Some("127.0.0.1:9092"));
        assert!(pipeline.sources.is_empty());
    }

    #[test]
    fn load_reads_the_process_environment_prefix_only() {
        // The test process has no CULL__ variables, so this is the file as shipped.
        let path = root().join("pipelines/local.toml");
        assert_eq!(load(&path).unwrap(), load_with_env(&path, env(&[])).unwrap());
    }

    /// Every option documented in the shipped files: each key that a fully populated
    /// pipeline serializes appears in at least one of them.
    #[test]
    fn shipped_pipelines_mention_every_option() {
        fn keys(value: &toml::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
            match value {
                toml::Value::Table(table) => {
                    for (key, value) in table {
                        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                        keys(value, &path, out);
                        out.insert(path);
                    }
                }
                toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                    items.iter().for_each(|item| keys(item, prefix, out));
                }
                _ => {}
            }
        }
        let sink = FileSinkConfig { kind: SinkKind::Jsonl, path: "x".into() };
        let mut full = Pipeline::default();
        full.bus.kafka = Some(KafkaSettings::new("b:1"));
        let mut webhook = WebhookSource::new("w");
        webhook.secret_env = Some("S".into());
        webhook.channel = Some(Channel::Twitter);
        webhook.mapping = BTreeMap::from([("text".to_string(), "/t".to_string())]);
        full.sources = vec![
            SourceConfig::Jsonl(JsonlSource {
                name: "j".into(),
                client: Some("acme".into()),
                path: "j".into(),
                follow: true,
                follow_interval_ms: 1,
                markup: Markup::Html,
            }),
            SourceConfig::Feed(FeedSource::new("f", "https://example.com/feed")),
            SourceConfig::Webhook(webhook),
            SourceConfig::Mail(MailSource {
                name: "m".into(),
                client: Some("acme".into()),
                path: "m".into(),
                format: MailFormat::Maildir,
                poll_secs: 1,
            }),
        ];
        full.api.tokens = Some("t".into());
        full.sink = SinksConfig {
            tickets: Some(sink.clone()),
            verdicts: Some(sink.clone()),
            dead_letter: Some(sink),
            // One of each kind, every key set: the shipped files must document them all.
            alert: ["webhook", "slack", "email"]
                .into_iter()
                .map(|kind| {
                    let text = format!(
                        "name = '{kind}'\nkind = '{kind}'\nurl = 'https://h'\nurl_env = 'U'\nsecret_env = 'S'\n\
                         clients = ['acme']\nqueues = ['q']\npriorities = ['P1']\nrules = ['r']\nkinds = ['ticket']\nrevisions = 'all'\n\
                         max_attempts = 1\nbackoff_initial_ms = 1\nbackoff_max_secs = 1\ntimeout_secs = 1\n\
                         breaker_failures = 1\nbreaker_open_secs = 1\nconcurrency = 1\nmax_per_minute = 1\n\
                         console_url = 'https://c'\n\
                         [email]\nfrom = 'a@b'\nto = ['a@b']\nto_by_queue = {{ social-care = ['a@b'] }}\nmode = 'daily'\n\
                         max_items = 1\nsort = 'time'\nsend_at = '08:00'\nweekday = 'monday'\ntimezone = 'UTC'\n\
                         unsubscribe = 'mailto:a@b'\nstate_dir = 'd'\n\
                         [email.smtp]\nhost = 'h'\nport = 1\ntls = 'none'\nusername_env = 'U'\npassword_env = 'P'\n"
                    );
                    toml::from_str(&text).expect("every alert key")
                })
                .collect(),
        };
        full.tickets.clients.insert(
            "acme".into(),
            toml::from_str(
                "escalation_queue = 'e'\nvip_authors = ['v']\nsla_minutes = { P1 = 1, P2 = 1 }\n\
                 [queues.care]\nchannel_weight = 1.0\nescalate_on = 'x'\nsla_minutes = { P1 = 1, P2 = 1, P3 = 1, P4 = 1 }\n\
                 calendar = 'c'\nmax_per_hour = 1\nmax_open = 1\noverflow_queue = 'o'\n",
            )
            .expect("every client key"),
        );
        let mut expected = Default::default();
        keys(&toml::Value::try_from(&full).unwrap(), "", &mut expected);

        let mut shipped = Default::default();
        for file in
            ["local", "kafka", "ingest", "alerts", "clients"].map(|name| format!("pipelines/{name}.toml"))
        {
            let text = std::fs::read_to_string(root().join(&file)).unwrap();
            keys(&toml::from_str::<toml::Value>(&text).unwrap(), "", &mut shipped);
            // Documented means a comment line right above every key.
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let line = line.trim();
                if !line.is_empty() && !line.starts_with('#') {
                    assert!(
                        i > 0 && lines[i - 1].trim().starts_with('#'),
                        "{file}:{}: `{line}` has no comment",
                        i + 1
                    );
                }
            }
        }
        let missing: Vec<_> = expected.difference(&shipped).collect();
        assert!(missing.is_empty(), "options in no shipped pipeline file: {missing:?}");
    }

    #[test]
    fn misspelled_key_is_named_with_the_file_and_line() {
        let path = fixture("misspelled.toml");
        let message = load_err(&path, &[]);
        assert!(message.contains("matcher.batch_sise"), "{message}");
        assert!(message.contains("unknown field `batch_sise`"), "{message}");
        assert!(message.starts_with(&format!("{}:5:1:", path.display())), "{message}");
    }

    #[test]
    fn syntax_error_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[matcher]\nbatch_size = = 3\n").unwrap();
        let message = load_err(&path, &[]);
        assert!(message.starts_with(&format!("{}:2:", path.display())), "{message}");
    }

    #[test]
    fn missing_file_is_named() {
        let message = load_err(&fixture("no-such-file.toml"), &[]);
        assert!(
            message.contains("cannot read pipeline file") && message.contains("no-such-file.toml"),
            "{message}"
        );
    }

    #[test]
    fn env_overrides_with_the_documented_names_take_effect() {
        let pipeline = load_with_env(
            &root().join("pipelines/kafka.toml"),
            env(&[
                ("CULL__BUS__KAFKA__BROKERS", "kafka-0:9092,kafka-1:9092"),
                ("CULL__MATCHER__RULES", "/etc/cull/rules"),
                ("CULL__MATCHER__BATCH_SIZE", "64"),
                ("CULL__TOPICS__TICKETS_PER_QUEUE", "true"),
                ("CULL__TICKETS__SLA_MINUTES__P1", "5"),
                ("CULL__HTTP__LISTEN", "0.0.0.0:9464"),
                ("PATH", "/bin"),
                ("CULL_SINGLE_UNDERSCORE", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(pipeline.bus.kafka.unwrap().brokers, "kafka-0:9092,kafka-1:9092");
        assert_eq!(pipeline.matcher.rules, Path::new("/etc/cull/rules"));
        assert_eq!(pipeline.matcher.batch_size, 64);
        assert!(pipeline.topics.tickets_per_queue);
        assert_eq!(pipeline.topics.ticket_topic(None, "billing"), "cull.tickets.billing");
        assert_eq!(pipeline.tickets.sla_minutes.get(cull_model::Priority::P1), 5);
        assert_eq!(pipeline.http.listen.port(), 9464);
    }

    #[test]
    fn env_overrides_create_missing_sections_and_index_lists() {
        let pipeline = load_with_env(
            &root().join("pipelines/local.toml"),
            env(&[
                ("CULL__BUS__KIND", "kafka"),
                ("CULL__BUS__KAFKA__BROKERS", "127.0.0.1:19092"),
                ("CULL__SOURCE__0__NAME", "renamed"),
                ("CULL__SINK__VERDICTS__KIND", "jsonl"),
                ("CULL__SINK__VERDICTS__PATH", "data/v.jsonl"),
            ]),
        )
        .unwrap();
        assert_eq!(pipeline.bus.kind, BusKind::Kafka);
        let kafka = pipeline.bus.kafka.unwrap();
        assert_eq!((kafka.brokers.as_str(), kafka.group_id.as_str()), ("127.0.0.1:19092", "cull-matcher"));
        assert_eq!(pipeline.sources[0].name(), "renamed");
        assert_eq!(pipeline.sink.verdicts.unwrap().path, Path::new("data/v.jsonl"));
        assert_eq!(Topics::default().ticket_topic(None, "billing"), "cull.tickets");
    }

    #[test]
    fn env_value_parses_toml_scalars_and_falls_back_to_strings() {
        assert_eq!(env_value("512"), toml::Value::Integer(512));
        assert_eq!(env_value("false"), toml::Value::Boolean(false));
        assert_eq!(env_value("[1, 2]"), toml::Value::Array(vec![1.into(), 2.into()]));
        assert_eq!(env_value("\"123\""), toml::Value::String("123".into()));
        for raw in ["127.0.0.1:9092", "rules", "a b", "x = 1", "1\ny = 2", ""] {
            assert_eq!(env_value(raw), toml::Value::String(raw.into()), "{raw:?}");
        }
    }

    #[test]
    fn unknown_override_names_the_variable() {
        let path = root().join("pipelines/local.toml");
        for (var, key) in [
            ("CULL__MATCHER__BATCH_SISE", "matcher.batch_sise"),
            ("CULL__MATCHR__RULES", "matchr"),
            ("CULL__BUS__KAFKA__BROKRES", "bus.kafka.brokres"),
        ] {
            let message = load_err(&path, &[(var, "1")]);
            assert!(message.starts_with(&format!("environment variable {var} ")), "{message}");
            assert!(message.contains(key) && message.contains("unknown field"), "{message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }

    #[test]
    fn malformed_overrides_name_the_variable() {
        let path = root().join("pipelines/local.toml");
        for (var, value, what) in [
            ("CULL__MATCHER__BATCH_SIZE", "many", "invalid type"),
            ("CULL__BUS__KAFKA__GROUP_ID", "123", "quote it: CULL__BUS__KAFKA__GROUP_ID='\"123\"'"),
            ("CULL__MATCHER__RULES__DIR", "x", "`matcher.rules` is a string, not a table"),
            ("CULL__SOURCE__7__PATH", "x", "the next segment must be an index"),
            ("CULL__BUS____KIND", "kafka", "empty key segment"),
            ("CULL__", "x", "empty key segment"),
        ] {
            let message = load_err(&path, &[(var, value)]);
            assert!(message.starts_with(&format!("environment variable {var} ")), "{message}");
            assert!(message.contains(what), "{var}: {message}");
        }
    }

    #[test]
    fn validation_collects_every_error_with_its_key() {
        let path = fixture("invalid.toml");
        let message = load_err(&path, &[("CULL__MATCHER__MAX_MENTION_BYTES", "0")]);
        assert!(message.starts_with(&format!("{}: ", path.display())), "{message}");
        for expected in [
            "bus.embedded.capacity: must be at least 1",
            "bus.kafka: missing",
            "topics.mentions: `cull mentions` is not a Kafka topic name",
            "topics.dead_letter: `cull.verdicts` is also topics.verdicts",
            "matcher.batch_size: must be at least 1",
            "matcher.max_mention_bytes: must be at least 1 (set by environment variable \
             CULL__MATCHER__MAX_MENTION_BYTES)",
            "tickets.sla_minutes.P3: must be at least 1",
            "source[1].name: `demo` is also source[0].name",
            "source[1].path: must name a file",
            "sink.verdicts.path: `data/same.jsonl` is also sink.tickets.path",
        ] {
            assert!(message.contains(expected), "missing `{expected}` in:\n{message}");
        }
        assert!(message.contains(": 10 invalid settings"), "{message}");
    }

    #[test]
    fn kafka_settings_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            "[bus]\nkind = 'kafka'\n[bus.kafka]\nbrokers = 'ok:9092, nope, :1, h:0'\ngroup_id = ' '\n\
             client_id = ''\npartitions = 0\nreplication = -1\n[topics]\ntickets = '..'\n",
        )
        .unwrap();
        let message = load_err(&path, &[]);
        for expected in [
            "bus.kafka.brokers: `nope` is not host:port",
            "bus.kafka.brokers: `:1` is not host:port",
            "bus.kafka.brokers: `h:0` is not host:port",
            "bus.kafka.group_id: must not be empty",
            "bus.kafka.client_id: must not be empty",
            "bus.kafka.partitions: must be at least 1",
            "bus.kafka.replication: must be at least 1",
            "topics.tickets: `..` is not a Kafka topic name",
        ] {
            assert!(message.contains(expected), "missing `{expected}` in:\n{message}");
        }
        assert!(!message.contains("`ok:9092`"), "{message}");
    }

    #[test]
    fn listen_address_must_parse() {
        let message = load_err(&root().join("pipelines/local.toml"), &[("CULL__HTTP__LISTEN", "localhost")]);
        assert!(message.contains("CULL__HTTP__LISTEN") && message.contains("http.listen"), "{message}");
    }

    #[test]
    fn alert_sinks_are_checked_by_their_position_and_need_distinct_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.toml");
        let entry =
            "[[sink.alert]]\nname = 'care'\nkind = 'slack'\nurl = 'https://hooks.slack.com/services/T/B/X'\n";
        std::fs::write(&path, format!("{entry}{entry}max_attempts = 0\n")).unwrap();
        let message = load_err(&path, &[]);
        assert!(message.contains("sink.alert[1].max_attempts: must be at least 1"), "{message}");
        assert!(message.contains("sink.alert[1].name: `care` is also sink.alert[0].name"), "{message}");
        std::fs::write(&path, format!("{entry}chanel = '#care'\n")).unwrap();
        let message = load_err(&path, &[]);
        assert!(message.contains("unknown field `chanel`") && message.contains(":5:"), "{message}");
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.toml");
        std::fs::write(&path, "").unwrap();
        assert_eq!(load_with_env(&path, env(&[])).unwrap(), Pipeline::default());
    }
}
