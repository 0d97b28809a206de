//! The subcommands.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cull_index::{parse_time_bound, BacktestRequest, IndexError, Indexer, Limits, SearchRequest, Searcher};
use cull_ingest::feed::{FeedConfig, FeedLocation, Poller};
use cull_ingest::jsonl::{BoundedLines, Line};
use cull_match::explain::explain as explain_rule;
use cull_match::{Outcome, RuleSet};
use cull_model::escape::{escape_controls, escape_controls_but_newlines};
use cull_model::{Channel, DeadLetter, Mention, Scope};
use cull_rules::{load_path, CompiledRule, Expect, Loaded, Located, Memo, RuleError};
use cull_runtime::{Decided, DecisionSample};

/// Mentions matched together; large enough to keep every core busy, small enough that
/// verdicts stream out steadily.
const BATCH: usize = 1024;

/// Prints every warning and error of a loaded pack on standard error.
fn print_findings(loaded: &Loaded) {
    for warning in &loaded.warnings {
        eprintln!("{}\n", escape_controls_but_newlines(&warning.to_string()));
    }
    for error in &loaded.errors {
        eprintln!("{}\n", escape_controls_but_newlines(&error.to_string()));
    }
}

/// Loads a rule pack, printing every warning and error; `None` when there were errors.
pub(crate) fn load_or_report(dir: &Path) -> Option<Vec<CompiledRule>> {
    let loaded = load_path(dir);
    print_findings(&loaded);
    if loaded.errors.is_empty() {
        Some(loaded.rules)
    } else {
        eprintln!("cull: {} error(s) in {}", loaded.errors.len(), dir.display());
        None
    }
}

/// Loads the rules at `dir` that `wanted` keeps straight into a rule set (see
/// [`RuleSet::load`]), printing the findings; returns the set with what a reload of
/// `dir` starts from, `None` when there are errors.
pub(crate) fn load_set_or_report(
    dir: &Path,
    wanted: impl Fn(&CompiledRule) -> bool,
) -> Result<Option<(RuleSet, Memo)>> {
    let (loaded, set) = RuleSet::load(dir, wanted);
    print_findings(&loaded);
    match set {
        Some(set) => Ok(Some((set?, loaded.memo))),
        None => {
            eprintln!("cull: {} error(s) in {}", loaded.errors.len(), dir.display());
            Ok(None)
        }
    }
}

/// `cull rules check`: exit 1 on any error, and on any warning with `deny_warnings`.
pub fn check(dir: &Path, format: Format, deny_warnings: bool) -> Result<ExitCode> {
    let report = check_rules(dir, deny_warnings);
    match format {
        Format::Json => writeln!(io::stdout(), "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Text => {
            report.print_problems();
            for note in &report.notes {
                eprintln!("note: {note}");
            }
            if report.errors.is_empty() {
                writeln!(
                    io::stdout(),
                    "{}: {} rule(s) OK, rule set version {}, {} warning(s)",
                    dir.display(),
                    report.rules,
                    report.version,
                    report.warnings.len()
                )?;
            }
            if !report.errors.is_empty() {
                eprintln!("cull: {} error(s) in {}", report.errors.len(), dir.display());
            } else if !report.ok {
                eprintln!(
                    "cull: {} warning(s) in {} (--deny-warnings)",
                    report.warnings.len(),
                    dir.display()
                );
            }
        }
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// How a check prints its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: compiler-style errors on stderr.
    Text,
    /// For CI: one JSON document on stdout.
    Json,
}

/// What `cull rules check` found, as `--format json` prints it.
#[derive(Debug, serde::Serialize)]
pub struct RulesReport {
    /// The rules directory.
    pub dir: PathBuf,
    /// True when the pack has no error (and no warning, under `--deny-warnings`).
    pub ok: bool,
    /// Rules loaded (0 when there were errors).
    pub rules: usize,
    /// The rule set version (empty when there were errors).
    pub version: String,
    /// Every error.
    pub errors: Vec<RuleProblem>,
    /// Every warning: queries that load but probably do not mean what they say.
    pub warnings: Vec<RuleProblem>,
    /// Remarks that are not errors (rules without anchor words).
    pub notes: Vec<String>,
}

impl RulesReport {
    /// Prints the warnings and errors, compiler-style, on standard error.
    fn print_problems(&self) {
        for problem in self.warnings.iter().chain(&self.errors) {
            eprintln!("{}\n", escape_controls_but_newlines(&problem.rendered));
        }
    }
}

/// One error or warning of a rule pack.
#[derive(Debug, serde::Serialize)]
pub struct RuleProblem {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// 1-based column (0 when the file could not be read).
    pub column: usize,
    /// The rule, when known.
    pub rule: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do instead.
    pub help: Option<String>,
    /// The compiler-style rendering with the excerpt and the caret.
    pub rendered: String,
}

impl RuleProblem {
    fn located(located: &Located) -> RuleProblem {
        RuleProblem {
            path: located.path.clone(),
            line: located.line,
            column: located.column,
            rule: located.rule.clone(),
            message: located.message.clone(),
            help: located.help.clone(),
            rendered: located.to_string(),
        }
    }

    fn error(error: &RuleError) -> RuleProblem {
        match error {
            RuleError::Located(located) => RuleProblem::located(located),
            RuleError::Io { path, .. } | RuleError::Refused { path, .. } => RuleProblem {
                path: path.clone(),
                line: 0,
                column: 0,
                rule: None,
                message: error.to_string().trim_start_matches("error: ").to_string(),
                help: None,
                rendered: error.to_string(),
            },
        }
    }
}

/// Loads and compiles the pack in `dir` (or the one file) and reports on it; with
/// `deny_warnings` a warning fails the check too.
pub fn check_rules(dir: &Path, deny_warnings: bool) -> RulesReport {
    let loaded = load_path(dir);
    let errors: Vec<RuleProblem> = loaded.errors.iter().map(RuleProblem::error).collect();
    let warnings: Vec<RuleProblem> = loaded.warnings.iter().map(RuleProblem::located).collect();
    let mut report = RulesReport {
        dir: dir.to_path_buf(),
        ok: errors.is_empty() && (warnings.is_empty() || !deny_warnings),
        rules: 0,
        version: String::new(),
        errors,
        warnings,
        notes: Vec::new(),
    };
    if !report.errors.is_empty() {
        return report;
    }
    report.notes = loaded
        .rules
        .iter()
        .filter(|r| r.anchors.is_none())
        .map(|rule| {
            format!(
                "rule `{}` ({}:{}) has no anchor words; it is verified against every mention",
                rule.rule.id,
                rule.rule.path.display(),
                rule.rule.line
            )
        })
        .collect();
    match RuleSet::new(loaded.rules) {
        Ok(set) => {
            report.rules = set.len();
            report.version = set.version().to_string();
        }
        Err(error) => {
            report.ok = false;
            report.errors.push(RuleProblem {
                path: dir.to_path_buf(),
                line: 0,
                column: 0,
                rule: None,
                message: error.to_string(),
                help: None,
                rendered: format!("error: {error}"),
            });
        }
    }
    report
}

/// `cull config check`: the pipeline file, its environment overrides and the rule
/// pack it names, as `cull run` would load them, without starting anything.
pub fn config_check(path: &Path, format: Format) -> Result<ExitCode> {
    #[derive(serde::Serialize)]
    struct Report {
        file: PathBuf,
        ok: bool,
        problems: Vec<crate::config::Problem>,
        rules: Option<RulesReport>,
    }
    let (problems, rules) = match crate::config::check(path) {
        Ok(pipeline) => (
            crate::config::check_environment(&pipeline),
            pipeline.needs_rules().then(|| check_rules(&pipeline.matcher.rules, false)),
        ),
        Err(problems) => (problems, None),
    };
    let ok = problems.is_empty() && rules.as_ref().is_none_or(|r| r.ok);
    let report = Report { file: path.to_path_buf(), ok, problems, rules };
    match format {
        Format::Json => writeln!(io::stdout(), "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Text => {
            if !report.problems.is_empty() {
                let problems = crate::config::render(&path.display(), &report.problems);
                eprintln!("{}", escape_controls_but_newlines(&problems));
            }
            if let Some(rules) = &report.rules {
                rules.print_problems();
                if rules.ok {
                    // "OK" only when the whole check is: a file with bad settings whose rules
                    // are fine is not OK.
                    writeln!(
                        io::stdout(),
                        "{}: {}rules {}: {} rule(s), version {}",
                        path.display(),
                        if report.ok { "OK; " } else { "" },
                        rules.dir.display(),
                        rules.rules,
                        rules.version
                    )?;
                } else {
                    eprintln!("cull: {} error(s) in the rules of {}", rules.errors.len(), path.display());
                }
            } else if report.ok {
                writeln!(io::stdout(), "{}: OK (no matcher, no rules to check)", path.display())?;
            }
        }
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `cull rules test`.
pub fn test(dir: &Path) -> Result<ExitCode> {
    let Some(rules) = load_or_report(dir) else { return Ok(ExitCode::FAILURE) };
    let set = RuleSet::new(rules)?;
    let (mut run, mut failed) = (0, 0);
    for rule in set.rules() {
        if rule.rule.examples.is_empty() {
            eprintln!("note: rule `{}` has no examples", rule.rule.id);
        }
        for example in &rule.rule.examples {
            run += 1;
            // A client's rule meets that client's mentions only.
            let mention = Mention { client: rule.rule.client.clone(), ..example.to_mention() };
            let verdict = set.verdict(&mention);
            let got = if verdict.matched.iter().any(|m| m.rule_id == rule.rule.id) {
                Expect::Match
            } else if verdict.culled.iter().any(|c| c.rule_id == rule.rule.id) {
                Expect::Cull
            } else {
                Expect::None
            };
            if got == example.expect {
                continue;
            }
            failed += 1;
            let failure = format!(
                "FAIL {}:{} rule `{}`: expected {}, got {}",
                rule.rule.path.display(),
                example.line,
                rule.rule.id,
                example.expect.as_str(),
                got.as_str()
            );
            writeln!(io::stdout(), "{}", escape_controls(&failure))?;
            writeln!(io::stdout(), "  text: {:?}", example.text)?;
            if let Some(explanation) = explain_rule(&set, &rule.rule.id, &mention) {
                for line in explanation.to_string().lines() {
                    writeln!(io::stdout(), "  {}", escape_controls(line))?;
                }
            }
        }
    }
    writeln!(io::stdout(), "{run} example(s), {} passed, {failed} failed", run - failed)?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `cull rules explain`: the mention is `client`'s when given, else the client's
/// whose pack alone has the rule.
pub fn explain(dir: &Path, rule_id: &str, client: Option<String>, mut mention: Mention) -> Result<ExitCode> {
    let Some(rules) = load_or_report(dir) else { return Ok(ExitCode::FAILURE) };
    let set = RuleSet::new(rules)?;
    let client = match client {
        Some(client) => Some(client),
        None if set.rule(None, rule_id).is_some() => None,
        None => {
            let owners: Vec<&str> =
                set.clients().into_iter().filter(|c| set.rule(Some(c), rule_id).is_some()).collect();
            match owners[..] {
                [one] => Some(one.to_string()),
                [] => None,
                _ => bail!(
                    "rule `{rule_id}` is a rule of clients {}: say whose with --client",
                    owners.join(", ")
                ),
            }
        }
    };
    mention.client = client;
    let explanation = explain_rule(&set, rule_id, &mention)
        .with_context(|| format!("no rule `{rule_id}` in {}", dir.display()))?;
    write!(io::stdout(), "{}", escape_controls_but_newlines(&explanation.to_string()))?;
    if let Outcome::Matched(spans) = &explanation.outcome {
        for span in spans {
            let field =
                if span.field == "title" { mention.title.as_deref().unwrap_or("") } else { &mention.text };
            writeln!(
                io::stdout(),
                "  highlight {}[{}..{}]: {:?}",
                span.field,
                span.start,
                span.end,
                field.get(span.start..span.end).unwrap_or("")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cull match`: mention JSON lines in, verdict JSON lines out, in input order.
///
/// A line that is not a valid mention is reported on standard error, written to the
/// dead-letter file when one is given, and counted; matching goes on, and the exit
/// status is 1 when any line was rejected.
pub fn match_lines(
    rules: &Path,
    input: Option<&Path>,
    max_bytes: usize,
    dead_letters: Option<&Path>,
    matches_only: bool,
) -> Result<ExitCode> {
    let Some(rules) = load_or_report(rules) else { return Ok(ExitCode::FAILURE) };
    let set = RuleSet::new(rules.into_iter().filter(|r| r.rule.enabled).collect())?;
    let (reader, origin): (Box<dyn BufRead>, String) = match input {
        None => (Box::new(BufReader::new(io::stdin().lock())), "stdin".to_string()),
        Some(path) if path == Path::new("-") => {
            (Box::new(BufReader::new(io::stdin().lock())), "stdin".to_string())
        }
        Some(path) => {
            let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            (Box::new(BufReader::new(file)), path.display().to_string())
        }
    };
    let mut lines = BoundedLines::new(reader, max_bytes);
    let mut dead_letter_file = match dead_letters {
        Some(path) => Some(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => None,
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let (mut line_number, mut accepted, mut rejected, mut matched) = (0usize, 0usize, 0usize, 0usize);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let line = lines.next_line().with_context(|| format!("cannot read {origin}"))?;
        let at_end = line.is_none();
        if let Some(line) = line {
            line_number += 1;
            let parsed = match &line {
                Line::Complete(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => None,
                Line::Complete(bytes) => {
                    Some(Mention::from_json_assuming_v1(bytes, max_bytes).map_err(|e| (e, bytes)))
                }
                Line::Oversized { head, length } => {
                    Some(Err((cull_model::ModelError::Oversized { size: *length, limit: max_bytes }, head)))
                }
            };
            match parsed {
                None => {}
                Some(Ok(mention)) => batch.push(mention),
                Some(Err((error, bytes))) => {
                    rejected += 1;
                    let place = format!("{origin}:{line_number}");
                    eprintln!("cull: {}", escape_controls(&format!("{place}: {error}")));
                    if let Some(file) = dead_letter_file.as_mut() {
                        serde_json::to_writer(&mut *file, &DeadLetter::new("match", &error, place, bytes))?;
                        file.write_all(b"\n")?;
                    }
                }
            }
        }
        if batch.len() >= BATCH || (at_end && !batch.is_empty()) {
            for verdict in set.verdicts(&batch) {
                matched += usize::from(!verdict.matched.is_empty());
                if matches_only && verdict.matched.is_empty() {
                    continue;
                }
                serde_json::to_writer(&mut out, &verdict)?;
                out.write_all(b"\n")?;
            }
            accepted += batch.len();
            batch.clear();
        }
        if at_end {
            break;
        }
    }
    out.flush()?;
    if let Some(file) = dead_letter_file.as_mut() {
        file.flush()?;
    }
    eprintln!("cull: {accepted} mention(s) matched against {} rule(s): {matched} with a match, {rejected} line(s) rejected", set.len());
    Ok(if rejected == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Logs to standard error at `info`, or as `RUST_LOG` says.
pub(crate) fn init_logging(options: &LogOptions) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let logger = tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr);
    match options.log_format {
        LogFormat::Text => {
            use tracing_subscriber::field::MakeExt as _;
            logger
                .fmt_fields(tracing_subscriber::fmt::format::debug_fn(log_field).delimited(" "))
                .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
                .init()
        }
        // The JSON encoder escapes control characters itself.
        LogFormat::Json => logger.json().with_ansi(false).init(),
    }
}

/// What is logged when `RUST_LOG` is not set: every crate's `info` and above.
const DEFAULT_LOG_FILTER: &str = "info";

/// The log options of the commands that log (`cull run`, `cull serve`); which events
/// are written is `RUST_LOG`'s (`info` by default, `RUST_LOG=cull_runtime=debug`).
#[derive(Debug, Clone, clap::Args)]
pub struct LogOptions {
    /// How log lines are written on standard error: `text` for people, `json` for a
    /// log collector (one object per line).
    #[arg(long, value_enum, default_value = "text", env = "CULL_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event: time, level, target, message and `key=value` fields, with
    /// control characters escaped.
    Text,
    /// One JSON object per event and line, with `timestamp`, `level`, `target` and
    /// `fields` (the `message` and the event's fields), so a collector (Loki,
    /// Elasticsearch, CloudWatch) needs no parsing rules.
    Json,
}

/// Writes one field of a log line, its control characters escaped: field values carry
/// what clients sent (a request path, a feed's error), and a newline or an ESC among
/// them must not forge a log line or drive the terminal reading the log.
fn log_field(
    writer: &mut tracing_subscriber::fmt::format::Writer<'_>,
    field: &tracing::field::Field,
    value: &dyn std::fmt::Debug,
) -> std::fmt::Result {
    let value = format!("{value:?}");
    let value = cull_model::escape::escape_controls(&value);
    match field.name() {
        "message" => write!(writer, "{value}"),
        name => write!(writer, "{name}={value}"),
    }
}

/// `cull run`: prints what the run did (with `once`, and a table of up to `decisions`
/// matches and as many culls, each with its reason); exits 0 when it ended as asked and
/// 1, with one line saying why, when a stage or source failed or the shutdown deadline
/// passed.
pub fn run(pipeline: &Path, once: bool, decisions: usize, log: &LogOptions) -> Result<ExitCode> {
    init_logging(log);
    let config = crate::config::load(pipeline)?;
    let problems = crate::config::check_environment(&config);
    if !problems.is_empty() {
        anyhow::bail!(crate::config::render(&pipeline.display(), &problems));
    }
    let verdicts_file = config.sink.verdicts.as_ref().map(|sink| sink.path.clone());
    let decisions = if once { decisions } else { 0 };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let finished = runtime.block_on(async {
        // The probes answer while the rules compile, which takes minutes for a large pack.
        let served = crate::pipeline::serve(&config.http).await?;
        served.health.starting("compiling rules");
        let rules = if config.needs_rules() {
            let dir = config.matcher.rules.clone();
            let wanted = |rule: &CompiledRule| rule.rule.enabled;
            let loaded = tokio::task::spawn_blocking(move || load_set_or_report(&dir, wanted))
                .await
                .context("compiling the rules")??;
            let Some(loaded) = loaded else { return Ok(None) };
            loaded
        } else {
            (RuleSet::new(Vec::new())?, Memo::default())
        };
        crate::pipeline::run(config, rules, once, decisions, served).await.map(Some)
    });
    // A thread still blocked (a source reading stdin, a stage that did not end within
    // the grace period) must not keep the process from exiting.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let Some(finished) = finished? else {
        return Ok(ExitCode::FAILURE);
    };
    let mut out = io::stdout().lock();
    writeln!(out, "cull run: {}", finished.counts)?;
    write_decision_table(&mut out, &finished.decisions, verdicts_file.as_deref())?;
    drop(out);
    match finished.result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("cull: {}", escape_controls(&error.to_string()));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Widths of the decision table's columns but the last, in characters.
const DECISION_COLUMNS: [(&str, usize); 4] = [("MENTION", 28), ("VERDICT", 7), ("RULE", 22), ("WHY", 38)];
/// Characters of the last column, the title, at most.
const DECISION_TITLE_WIDTH: usize = 60;

/// Writes the decisions of a run as a table, one rule and mention per row: what was
/// decided and why, on screen, without opening a JSON file. Nothing when none were kept.
fn write_decision_table(
    out: &mut impl Write,
    sample: &DecisionSample,
    verdicts: Option<&Path>,
) -> io::Result<()> {
    if sample.rows.is_empty() {
        return Ok(());
    }
    // Ids are told apart by their ends (`tag:google.com,2013:googlealerts/feed:8974…`),
    // everything else by its start.
    let cell = |text: &str, width: usize, keep_end: bool| {
        let text = escape_controls(text);
        let count = text.chars().count();
        if count <= width {
            return text.into_owned();
        }
        match keep_end {
            true => format!("…{}", text.chars().skip(count - (width - 1)).collect::<String>()),
            false => format!("{}…", text.chars().take(width - 1).collect::<String>()),
        }
    };
    let mut header = String::new();
    for (name, width) in DECISION_COLUMNS {
        header.push_str(&format!("{name:width$}  "));
    }
    writeln!(out, "\n{header}TITLE")?;
    for row in &sample.rows {
        let cells = [&row.mention_id, row.outcome.as_str(), &row.rule_id, &row.why];
        let mut line = String::new();
        for (column, (text, (_, width))) in cells.into_iter().zip(DECISION_COLUMNS).enumerate() {
            line.push_str(&format!("{:width$}  ", cell(text, width, column == 0)));
        }
        line.push_str(&cell(&row.title, DECISION_TITLE_WIDTH, false));
        writeln!(out, "{}", line.trim_end())?;
    }
    let shown = |outcome: Decided| sample.rows.iter().filter(|row| row.outcome == outcome).count();
    let all = match verdicts {
        Some(path) => format!("every verdict is in {}", path.display()),
        None => "every verdict is in the analyst index (cull search)".to_string(),
    };
    writeln!(
        out,
        "({} of {} matches and {} of {} culls shown; {all})",
        shown(Decided::Matched),
        sample.matched_total,
        shown(Decided::Culled),
        sample.culled_total,
    )
}

/// `cull ingest feed FEED`: prints the mentions one poll of the feed (or one read of a
/// saved feed document) yields, as the feed source would produce them (normalized,
/// with their ids), and exits; 1 with a one-line reason when the feed cannot be read.
pub fn ingest_feed(feed: &str, name: &str, channel: Channel, timeout: Duration) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let read = FeedLocation::parse(feed).and_then(|location| match location {
        FeedLocation::Remote(url) => {
            let config = FeedConfig { channel, timeout, ..FeedConfig::new(name, url) };
            let poller = Poller::new(config, cull_ingest::feed::client())?;
            Ok(runtime.block_on(poller.fetch())?.map(|f| f.drafts).unwrap_or_default())
        }
        FeedLocation::Saved(path) => {
            let max_bytes = FeedConfig::new(name, feed).max_bytes;
            let entries = cull_ingest::feed::read_saved_feed(&path, name, channel, max_bytes)?;
            Ok(entries.into_iter().map(|(_, draft)| draft).collect())
        }
    });
    let fetched = match read {
        Ok(drafts) => drafts,
        Err(error) => {
            eprintln!("cull: {}", escape_controls(&error.to_string()));
            return Ok(ExitCode::FAILURE);
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let mut out = BufWriter::new(io::stdout().lock());
    for draft in fetched {
        serde_json::to_writer(&mut out, &cull_ingest::normalize(draft, now))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// What `cull search` shows.
#[derive(Debug)]
pub struct SearchOptions {
    /// The index directory.
    pub index: PathBuf,
    /// Whose mentions to search.
    pub scope: Scope,
    /// The search.
    pub request: SearchRequest,
    /// Print the response as JSON.
    pub json: bool,
}

/// Reads a `--since`/`--until` value, naming the flag in the error.
pub fn time_bound(flag: &'static str, value: Option<&str>) -> Result<Option<i64>> {
    value
        .map(|text| parse_time_bound(flag, text, time::OffsetDateTime::now_utc()).map_err(flagged))
        .transpose()
}

/// Returns an index error as a user of the command line reads it: a bad parameter
/// under the flag that gave it (`--since: …`), everything else as it is.
fn flagged(error: IndexError) -> anyhow::Error {
    match error {
        IndexError::Parameter { name, message } => anyhow!("--{name}: {message}"),
        other => other.into(),
    }
}

/// Refuses a directory that holds no index (a mistyped `--index` must not silently
/// search, or erase from, an empty, new index).
fn require_index(index: &Path) -> Result<()> {
    if !index.join("meta.json").is_file() {
        bail!(
            "{}: no index here (run a pipeline with [index] enabled, or pass --index DIR)",
            index.display()
        );
    }
    Ok(())
}

/// Opens the index for reading; see [`require_index`].
fn open_searcher(index: &Path, limits: Limits) -> Result<Searcher> {
    require_index(index)?;
    Ok(Searcher::open(index, limits)?)
}

/// `cull index erase`: erases mentions by id (see [`Indexer::erase`]) from an index
/// that no process writes; while one does (a `cull run` holds the writer), refuses
/// without touching it and says to erase through that process's API.
pub fn erase(index: &Path, ids: &[String]) -> Result<ExitCode> {
    require_index(index)?;
    let mut indexer = match Indexer::open(index, 1, 0) {
        Err(error @ IndexError::Locked { .. }) => bail!(
            "{error}: stop it first, or erase through its API (DELETE /api/mentions/{{id}} with an operator token)"
        ),
        opened => opened?,
    };
    let erased = indexer.erase(&Scope::All, ids)?;
    let mut out = BufWriter::new(io::stdout().lock());
    for erasure in &erased {
        let line = if erasure.found {
            format!("erased {}", erasure.id)
        } else {
            format!("not found {}: not in the index; tombstoned, so it is never indexed", erasure.id)
        };
        writeln!(out, "{}", escape_controls(&line))?;
    }
    out.flush()?;
    Ok(if erased.iter().all(|e| e.found) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `cull search`: prints the hits, facets and histogram of a search.
pub fn search(options: SearchOptions) -> Result<ExitCode> {
    let searcher = open_searcher(&options.index, Limits::default())?;
    let response = searcher.search(&options.scope, &options.request).map_err(flagged)?;
    let mut out = BufWriter::new(io::stdout().lock());
    if options.json {
        serde_json::to_writer_pretty(&mut out, &response)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let color = io::IsTerminal::is_terminal(&io::stdout());
    let shown = response.hits.len();
    writeln!(out, "{} mention(s) found, {shown} shown ({} ms)", response.total, response.took_ms)?;
    if response.timed_out {
        writeln!(out, "(the search hit its time limit: counts and hits are partial)")?;
    }
    for hit in &response.hits {
        let rules: Vec<String> = hit
            .matched
            .iter()
            .map(|r| format!("+{r}"))
            .chain(hit.culled.iter().map(|r| format!("-{r}")))
            .collect();
        let head = format!(
            "{}  {}  {}  {}  {}",
            hit.at.as_deref().unwrap_or("-"),
            hit.outcome.as_str(),
            hit.channel.as_deref().unwrap_or("-"),
            hit.id,
            rules.join(" ")
        );
        writeln!(out, "\n{}", escape_controls(&head))?;
        if let Some(title) = &hit.title {
            writeln!(out, "  {}", highlighted(title, color))?;
        }
        writeln!(out, "  {}", highlighted(&hit.text, color))?;
        if let Some(url) = &hit.url {
            writeln!(out, "  {}", escape_controls(url))?;
        }
    }
    for (facet, counts) in &response.facets {
        let counts: Vec<String> = counts.iter().map(|c| format!("{} {}", c.value, c.count)).collect();
        writeln!(out, "\n{}", escape_controls(&format!("{facet}: {}", counts.join(", "))))?;
    }
    if let Some(histogram) = &response.histogram {
        writeln!(out)?;
        let widest = histogram.buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);
        for bucket in &histogram.buckets {
            let bar = "#".repeat(((bucket.count * 40).div_ceil(widest)) as usize);
            writeln!(out, "{}  {:>6}  {bar}", bucket.start, bucket.count)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Returns the snippet with its highlights in bold (on a terminal) or in `[...]`, and
/// its control characters escaped (the bold is the only escape sequence it holds).
fn highlighted(snippet: &cull_index::Snippet, color: bool) -> String {
    let (open, close) = if color { ("\x1b[1m", "\x1b[0m") } else { ("[", "]") };
    let mut text = String::with_capacity(snippet.text.len() + 8 * snippet.highlights.len());
    let mut at = 0;
    for [start, end] in &snippet.highlights {
        let (start, end) = ((*start).max(at), (*end).min(snippet.text.len()));
        if start >= end || !snippet.text.is_char_boundary(start) || !snippet.text.is_char_boundary(end) {
            continue;
        }
        text.push_str(&escape_controls(&snippet.text[at..start]));
        text.push_str(open);
        text.push_str(&escape_controls(&snippet.text[start..end]));
        text.push_str(close);
        at = end;
    }
    text.push_str(&escape_controls(&snippet.text[at..]));
    text
}

/// `cull rules backtest`: what the rules of a file (or directory) would have matched
/// and culled over the indexed mentions of `scope`.
pub fn backtest(
    rules: &Path,
    index: &Path,
    scope: &Scope,
    request: &BacktestRequest,
    json: bool,
) -> Result<ExitCode> {
    // A client's draft is the client's pack, wherever its files are.
    let loaded = match scope.client() {
        Some(client) => cull_rules::load_as_pack(rules, client),
        None => load_path(rules),
    };
    print_findings(&loaded);
    if !loaded.errors.is_empty() {
        eprintln!("cull: {} error(s) in {}", loaded.errors.len(), rules.display());
        return Ok(ExitCode::FAILURE);
    }
    // The operator's own process, stopped with Ctrl-C: no time limit, unlike the API's.
    let searcher = open_searcher(index, Limits { timeout: Duration::MAX, ..Limits::default() })?;
    let report = cull_index::backtest(&searcher, scope, &loaded.rules, request).map_err(flagged)?;
    let mut out = BufWriter::new(io::stdout().lock());
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    for rule in &report.rules {
        let by: Vec<String> = rule.culled_by.iter().map(|(reason, n)| format!("{n} by {reason}")).collect();
        let by = if by.is_empty() { String::new() } else { format!(" ({})", by.join(", ")) };
        let summary = format!("{}: {} matched, {} culled{by}", rule.rule_id, rule.matched, rule.culled);
        writeln!(out, "{}", escape_controls(&summary))?;
        for day in &rule.days {
            writeln!(out, "  {}  {:>5} matched  {:>5} culled", day.day, day.matched, day.culled)?;
        }
        for (label, samples) in [("matched", &rule.matched_samples), ("culled", &rule.culled_samples)] {
            for sample in samples {
                let why = match (&sample.reason, &sample.clause) {
                    (Some(reason), Some(clause)) => format!(" [{reason}: {clause}]"),
                    _ => String::new(),
                };
                let title = sample.title.as_deref().unwrap_or(&sample.text);
                writeln!(out, "  {}", escape_controls(&format!("{label} {}{why}: {title}", sample.id)))?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `cull rules stats`: every rule's report from the pipeline's quality store.
pub fn rule_stats(
    pipeline: &Path,
    sort: cull_quality::SortBy,
    scope: &Scope,
    limit: usize,
    json: bool,
) -> Result<ExitCode> {
    let config = crate::config::load(pipeline)?;
    let store = cull_quality::Store::read(&config.quality.dir)?;
    let Some((rules, _)) = load_set_or_report(&config.matcher.rules, |_| true)? else {
        return Ok(ExitCode::FAILURE);
    };
    let known: Vec<(Option<&str>, &str)> = rules.rule_refs().map(|r| (r.client, r.id)).collect();
    let today = cull_quality::day_of(time::OffsetDateTime::now_utc().unix_timestamp());
    let reports = store.report(scope, &config.quality, today, known, sort);
    let mut out = BufWriter::new(io::stdout().lock());
    if json {
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "rules": reports }))?;
        writeln!(out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let percent =
        |value: Option<f64>| value.map_or_else(|| "-".to_string(), |v| format!("{:.0}%", v * 100.0));
    writeln!(
        out,
        "last {} days; precision = 1 - irrelevant / tickets with a disposition (alert under the threshold)",
        config.quality.window_days
    )?;
    writeln!(
        out,
        "{:<28} {:>8} {:>7} {:>7} {:>8} {:>9} {:>7} {:>10}  top cull",
        "rule", "matches", "culled", "tickets", "feedback", "precision", "trend", "us/mention"
    )?;
    for report in reports.iter().take(limit) {
        let name = match &report.client {
            Some(client) => format!("{client}/{}", report.rule_id),
            None => report.rule_id.clone(),
        };
        let trend = report.trend.map_or_else(|| "-".to_string(), |t| format!("{:+.0}", t * 100.0));
        let cost = report.verify_micros_per_mention.map_or_else(|| "-".to_string(), |c| format!("{c:.2}"));
        let top = report.culls.first().map(|c| format!("{} ({})", c.clause, c.count)).unwrap_or_default();
        let flag = if report.below_threshold { " !" } else { "" };
        let line = format!(
            "{name:<28} {:>8} {:>7} {:>7} {:>8} {:>9} {trend:>7} {cost:>10}  {top}{flag}",
            report.matches,
            report.culled,
            report.tickets,
            report.feedback,
            percent(report.precision),
        );
        writeln!(out, "{}", escape_controls(&line))?;
    }
    if reports.len() > limit {
        writeln!(out, "... {} more (--limit)", reports.len() - limit)?;
    }
    let below = reports.iter().filter(|r| r.below_threshold).count();
    if below > 0 {
        writeln!(out, "! {below} rule(s) under their precision threshold: try `cull rules suggest RULE`")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `cull rules suggest`: exclusions and masks for one rule, backtested; with `write`,
/// a draft rule file of the safe ones.
pub fn suggest(
    pipeline: &Path,
    rule_id: &str,
    client: Option<String>,
    write: Option<&Path>,
    max: usize,
    json: bool,
) -> Result<ExitCode> {
    let config = crate::config::load(pipeline)?;
    if let Some(path) = write.filter(|path| path.exists()) {
        anyhow::bail!(
            "--write {}: the file exists; name a new one (a draft never replaces a file)",
            path.display()
        );
    }
    let store = cull_quality::Store::read(&config.quality.dir)?;
    let Some((rules, _)) = load_set_or_report(&config.matcher.rules, |rule| rule.rule.id == rule_id)? else {
        return Ok(ExitCode::FAILURE);
    };
    let rule = rules.rule(client.as_deref(), rule_id).ok_or_else(|| {
        cull_quality::QualityError::UnknownRule { rule: rule_id.to_string(), client: client.clone() }
    })?;
    let scope = client.map_or(Scope::All, Scope::Client);
    let searcher = open_searcher(&config.index.dir, Limits { timeout: Duration::MAX, ..Limits::default() })?;
    let options = cull_quality::SuggestOptions { max, ..cull_quality::SuggestOptions::default() };
    let found = cull_quality::suggest(&searcher, &scope, &store, &rule, &options)?;
    let picks = found.picks();
    if let Some(path) = write {
        if picks.is_empty() {
            eprintln!("cull: no suggestion culls noise without losing a relevant mention; nothing written");
            return Ok(ExitCode::FAILURE);
        }
        let draft = cull_quality::draft_toml(&rule.rule, &picks);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut file| file.write_all(draft.as_bytes()))
            .with_context(|| format!("--write {}", path.display()))?;
    }
    let mut out = BufWriter::new(io::stdout().lock());
    if json {
        serde_json::to_writer_pretty(&mut out, &found)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{}: {} irrelevant and {} relevant labelled mentions ({} no longer indexed); the rule matches {} indexed mentions",
        escape_controls(&found.rule_id),
        found.irrelevant,
        found.relevant,
        found.unavailable,
        found.matched
    )?;
    if found.suggestions.is_empty() {
        writeln!(out, "no suggestion: too little feedback, or nothing sets the irrelevant mentions apart")?;
    }
    for (i, suggestion) in found.suggestions.iter().enumerate() {
        let kind = match suggestion.kind {
            cull_quality::SuggestionKind::Exclude => "exclude",
            cull_quality::SuggestionKind::Mask => "mask",
            cull_quality::SuggestionKind::BlockAuthor => "block author",
        };
        let z = suggestion.z.map_or_else(String::new, |z| format!(", z {z:.1}"));
        let line = format!(
            "{:>2}. {kind} {}: culls {} of {} irrelevant, loses {} of {} relevant, {} indexed mentions in all (in {} irrelevant / {} relevant{z})",
            i + 1,
            suggestion.clause,
            suggestion.irrelevant_culled,
            found.irrelevant,
            suggestion.relevant_lost,
            found.relevant,
            suggestion.newly_culled,
            suggestion.irrelevant_with,
            suggestion.relevant_with,
        );
        writeln!(out, "{}", escape_controls(&line))?;
    }
    if let Some(path) = write {
        writeln!(
            out,
            "wrote a draft with {} suggestion(s) to {}; nothing is applied until you move it into the rules",
            picks.len(),
            path.display()
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
