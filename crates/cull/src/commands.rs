//! The subcommands.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use cull_ingest::feed::{FeedConfig, Poller};
use cull_ingest::jsonl::{BoundedLines, Line};
use cull_match::explain::explain as explain_rule;
use cull_match::{Outcome, RuleSet};
use cull_model::{Channel, DeadLetter, Mention};
use cull_rules::{load_dir, CompiledRule, Expect};

/// Mentions matched together; large enough to keep every core busy, small enough that
/// verdicts stream out steadily.
const BATCH: usize = 1024;

/// Loads a rule pack, printing every error; `None` when there were any.
pub(crate) fn load_or_report(dir: &Path) -> Option<Vec<CompiledRule>> {
    let loaded = load_dir(dir);
    for error in &loaded.errors {
        eprintln!("{error}\n");
    }
    if loaded.errors.is_empty() {
        Some(loaded.rules)
    } else {
        eprintln!("cull: {} error(s) in {}", loaded.errors.len(), dir.display());
        None
    }
}

/// `cull rules check`.
pub fn check(dir: &Path) -> Result<ExitCode> {
    let Some(rules) = load_or_report(dir) else { return Ok(ExitCode::FAILURE) };
    for rule in rules.iter().filter(|r| r.anchors.is_none()) {
        eprintln!(
            "note: rule `{}` ({}:{}) has no anchor words; it is verified against every mention",
            rule.rule.id,
            rule.rule.path.display(),
            rule.rule.line
        );
    }
    let set = RuleSet::new(rules)?;
    println!("{}: {} rule(s) OK, rule set version {}", dir.display(), set.rules().len(), set.version());
    Ok(ExitCode::SUCCESS)
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
            let mention = example.to_mention();
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
            println!(
                "FAIL {}:{} rule `{}`: expected {}, got {}",
                rule.rule.path.display(),
                example.line,
                rule.rule.id,
                example.expect.as_str(),
                got.as_str()
            );
            println!("  text: {:?}", example.text);
            if let Some(explanation) = explain_rule(&set, &rule.rule.id, &mention) {
                for line in explanation.to_string().lines() {
                    println!("  {line}");
                }
            }
        }
    }
    println!("{run} example(s), {} passed, {failed} failed", run - failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `cull rules explain`.
pub fn explain(dir: &Path, rule_id: &str, text: String, title: Option<String>) -> Result<ExitCode> {
    let Some(rules) = load_or_report(dir) else { return Ok(ExitCode::FAILURE) };
    let set = RuleSet::new(rules)?;
    let mut mention = Mention::new("explain", text);
    mention.title = title;
    let explanation = explain_rule(&set, rule_id, &mention)
        .with_context(|| format!("no rule `{rule_id}` in {}", dir.display()))?;
    print!("{explanation}");
    if let Outcome::Matched(spans) = &explanation.outcome {
        for span in spans {
            let field =
                if span.field == "title" { mention.title.as_deref().unwrap_or("") } else { &mention.text };
            println!(
                "  highlight {}[{}..{}]: {:?}",
                span.field,
                span.start,
                span.end,
                field.get(span.start..span.end).unwrap_or("")
            );
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
                    Some(Mention::from_json_limited(bytes, max_bytes).map_err(|e| (e, bytes)))
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
                    eprintln!("cull: {place}: {error}");
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
    eprintln!("cull: {accepted} mention(s) matched against {} rule(s): {matched} with a match, {rejected} line(s) rejected", set.rules().len());
    Ok(if rejected == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Logs to standard error at `info`, or as `RUST_LOG` says.
pub(crate) fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .init();
}

/// `cull run`.
pub fn run(pipeline: &Path, once: bool) -> Result<ExitCode> {
    init_logging();
    let config = crate::config::load(pipeline)?;
    let Some(rules) = load_or_report(&config.matcher.rules) else { return Ok(ExitCode::FAILURE) };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let summary = runtime.block_on(crate::pipeline::run(config, rules, once))?;
    println!("cull run: {summary}");
    Ok(ExitCode::SUCCESS)
}

/// `cull ingest feed URL`: prints the mentions one poll of the feed yields, as the feed
/// source would produce them (normalized, with their ids), and exits; 1 with a
/// one-line reason when the feed cannot be read.
pub fn ingest_feed(url: &str, name: &str, channel: Channel, timeout: Duration) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let config = FeedConfig { channel, timeout, ..FeedConfig::new(name, url) };
    let poller = Poller::new(config, cull_ingest::feed::client())?;
    let fetched = match runtime.block_on(poller.fetch()) {
        Ok(fetched) => fetched.map(|f| f.drafts).unwrap_or_default(),
        Err(error) => {
            eprintln!("cull: {error}");
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
