//! The `cull` command line.

/// The matcher allocates nothing per mention, but loading rules and building verdicts
/// and tickets allocate many small objects from several threads, where glibc's
/// allocator spends a third of a large rule load in its free lists; mimalloc's
/// per-thread pages do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api;
mod auth;
mod commands;
mod config;
mod console;
mod export;
mod http;
mod pipeline;
mod quality_api;
mod reload;
mod serve;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cull: culls false matches from media alerts and turns true ones into tickets.
#[derive(Debug, Parser)]
#[command(name = "cull", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the stages a pipeline file enables: sources, matcher, sinks, HTTP.
    Run {
        /// The pipeline file, such as pipelines/local.toml.
        pipeline: PathBuf,
        /// Read finite sources to their end, drain the pipeline, print a summary and exit.
        #[arg(long)]
        once: bool,
        /// With --once, the matches and the culls the decision table after the summary
        /// shows at most, each (0: no table).
        #[arg(long, default_value_t = 15, value_name = "N")]
        decisions: usize,
        #[command(flatten)]
        log: commands::LogOptions,
    },
    /// Serve the analyst API (/api/*) and web console over an index.
    Serve {
        /// The analyst index directory.
        #[arg(long)]
        index: PathBuf,
        /// The rules directory, whose rules explain why a mention matched or was culled.
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        #[command(flatten)]
        http: server::Http,
        /// A TOML file of API tokens ([[token]] name, role, token); the environment
        /// variable CULL_API_TOKENS (role@client:token,role@*:token) adds more.
        #[arg(long)]
        tokens: Option<PathBuf>,
        /// Words, phrases and keyword tests one query may have.
        #[arg(long, default_value_t = cull_index::Limits::default().max_clauses)]
        max_clauses: usize,
        /// Terms one wildcard (conn*) may expand to.
        #[arg(long, default_value_t = cull_index::Limits::default().max_wildcard_terms)]
        max_wildcard_terms: usize,
        /// Milliseconds a search may take before it returns what it has, marked timed_out;
        /// a backtest past it is stopped and answered 422.
        #[arg(long, default_value_t = cull_index::Limits::default().timeout.as_millis() as u64)]
        query_timeout_ms: u64,
        /// Hits one page may hold.
        #[arg(long, default_value_t = cull_index::Limits::default().max_page)]
        max_page: usize,
        /// Searches, histograms and backtests run at once; one more is answered 429.
        #[arg(long, default_value_t = api::DEFAULT_CONCURRENT_QUERIES,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        max_concurrent_queries: usize,
        /// The quality stage's store directory (such as data/quality): serves the rules'
        /// stats and suggestions (GET /api/rules/stats, /api/rules/{id}/suggestions) and
        /// the console's Rules page, with the default thresholds.
        #[arg(long)]
        stats: Option<PathBuf>,
        #[command(flatten)]
        log: commands::LogOptions,
    },
    /// Work with rule packs.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Work with pipeline files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Try sources out.
    #[command(subcommand)]
    Ingest(IngestCommand),
    /// Work with the analyst index.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Search the analyst index in the rule query language.
    Search {
        /// The query; empty finds every mention.
        #[arg(default_value = "")]
        query: String,
        #[command(flatten)]
        window: IndexWindow,
        /// Whose mentions: a client's name, or `*` for every client's and the contact
        /// center's own.
        #[arg(long, default_value = "*", value_parser = parse_scope)]
        client: cull_model::Scope,
        /// Only mentions on this channel (repeatable).
        #[arg(long)]
        channel: Vec<String>,
        /// Only mentions this rule matched or culled (repeatable).
        #[arg(long)]
        rule: Vec<String>,
        /// Only mentions with this outcome: matched, culled, unmatched (repeatable).
        #[arg(long, value_parser = parse_outcome)]
        verdict: Vec<cull_index::Outcome>,
        /// Only mentions in this language (repeatable).
        #[arg(long)]
        lang: Vec<String>,
        /// Count the values of a field: rule, culled_rule, verdict, channel, lang, source, site, domain,
        /// author, client, sentiment (repeatable).
        #[arg(long)]
        facet: Vec<String>,
        /// Add a date histogram: hour, day or week.
        #[arg(long, value_parser = parse_interval)]
        histogram: Option<cull_index::Interval>,
        /// Order: time (newest first) or relevance.
        #[arg(long, default_value = "time", value_parser = parse_sort)]
        sort: cull_index::Sort,
        /// Hits to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Hits to skip first (for paging).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Print the whole response as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Match mentions (JSON lines) against a rule pack and print one verdict per line.
    Match {
        /// The rules directory.
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        /// Mention JSONL to read; `-` or nothing for standard input.
        input: Option<PathBuf>,
        /// Reject mentions larger than this many bytes.
        #[arg(long, default_value_t = cull_model::MAX_MENTION_BYTES)]
        max_bytes: usize,
        /// Write rejected lines here as dead letters (JSON lines).
        #[arg(long)]
        dead_letters: Option<PathBuf>,
        /// Print only the verdicts of mentions a rule matched.
        #[arg(long)]
        matches_only: bool,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Validate every rule file; print compiler-style errors and warnings; exit 1 on
    /// any error (and on any warning with --deny-warnings).
    Check {
        /// The rules directory (or one rule file).
        #[arg(default_value = "rules")]
        dir: PathBuf,
        /// `text` (errors and warnings on stderr) or `json` (one report on stdout, for CI).
        #[arg(long, value_enum, default_value = "text")]
        format: commands::Format,
        /// Fail on warnings too (lowercase `and`, `near/3`, smart quotes, `!word`).
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Run every rule's examples; report each failure; exit 1 on any failure.
    Test {
        /// The rules directory.
        #[arg(default_value = "rules")]
        dir: PathBuf,
    },
    /// What the rules of a file (or directory) would have matched and culled over the
    /// indexed mentions, per day, with samples.
    Backtest {
        /// A rule file or a rules directory.
        rules: PathBuf,
        #[command(flatten)]
        window: IndexWindow,
        /// Whose mentions to try the rules on: a client's name, or `*` for every
        /// mention (a client's rule meets its client's mentions only either way).
        #[arg(long, default_value = "*", value_parser = parse_scope)]
        client: cull_model::Scope,
        /// Samples of matches and of culls per rule.
        #[arg(long, default_value_t = 5)]
        samples: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Each rule's matches, culls per clause, tickets, cost and precision (from agents'
    /// dispositions, with its trend), from the store of the pipeline's quality stage.
    Stats {
        /// The pipeline file whose `[quality]` store, rules and thresholds to read.
        #[arg(long, default_value = "pipelines/local.toml")]
        pipeline: PathBuf,
        /// Order: precision (lowest first), noise (most false positives, then culls)
        /// or cost (verification time per mention).
        #[arg(long, default_value = "precision", value_parser = parse_sort_by)]
        sort: cull_quality::SortBy,
        /// Whose rules: a client's name, or `*` for everyone's.
        #[arg(long, default_value = "*", value_parser = parse_scope)]
        client: cull_model::Scope,
        /// Rows to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print every rule's report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Propose exclusions and masks that would have culled a rule's noise, from its
    /// tickets' dispositions, each backtested on the index. Nothing is applied.
    Suggest {
        /// The rule id.
        rule_id: String,
        /// The pipeline file whose store, index and rules to read.
        #[arg(long, default_value = "pipelines/local.toml")]
        pipeline: PathBuf,
        /// The client whose rule and mentions (needed when a client has a rule of
        /// this id; limits a global rule to that client's mentions).
        #[arg(long)]
        client: Option<String>,
        /// Write a draft rule file with the safe suggestions here (refused if it exists).
        #[arg(long)]
        write: Option<PathBuf>,
        /// Suggestions to show.
        #[arg(long, default_value_t = 10)]
        max: usize,
        /// Print the suggestions as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Explain which clauses of a rule match a text, which culls apply, and why.
    Explain {
        /// The rules directory.
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        /// The rule id.
        rule_id: String,
        /// The text of the mention.
        text: String,
        /// The client the mention is of (needed when several clients have a rule of
        /// this id).
        #[arg(long)]
        client: Option<String>,
        /// The mention's title (matched like the text).
        #[arg(long)]
        title: Option<String>,
        /// The mention's URL (`url:` and `site:` clauses).
        #[arg(long)]
        url: Option<String>,
        /// The mention's author (`author:` clauses).
        #[arg(long)]
        author: Option<String>,
        /// The mention's channel, which the rule's `channels` may cull.
        #[arg(long, value_parser = parse_channel)]
        channel: Option<cull_model::Channel>,
        /// The mention's language (an ISO 639-1 code such as `en`, or `und`), which the
        /// rule's `langs` may cull.
        #[arg(long)]
        lang: Option<String>,
    },
}

/// The index a command reads and the time window it looks at.
#[derive(Debug, clap::Args)]
struct IndexWindow {
    /// The index directory.
    #[arg(long, default_value = "data/index")]
    index: PathBuf,
    /// Only mentions since this time: RFC 3339, YYYY-MM-DD, or an age (30m, 24h, 7d, 2w).
    #[arg(long)]
    since: Option<String>,
    /// Only mentions before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
}

impl IndexWindow {
    /// Returns the `--since` and `--until` bounds in Unix seconds.
    fn bounds(&self) -> anyhow::Result<(Option<i64>, Option<i64>)> {
        Ok((
            commands::time_bound("since", self.since.as_deref())?,
            commands::time_bound("until", self.until.as_deref())?,
        ))
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a pipeline file as `cull run` would load it (environment overrides
    /// included) and the rule pack it names; exit 1 on any problem.
    Check {
        /// The pipeline file.
        pipeline: PathBuf,
        /// `text` (problems on stderr) or `json` (one report on stdout, for CI).
        #[arg(long, value_enum, default_value = "text")]
        format: commands::Format,
    },
}

#[derive(Debug, Subcommand)]
enum IndexCommand {
    /// Erase mentions by id for good (a data subject's request): their documents go and
    /// their ids are tombstoned, so that no replay of the bus indexes them again. The
    /// index must not be written by a running process (erase through its API then:
    /// DELETE /api/mentions/{id}). Exit 1 when an id was not in the index (it is
    /// tombstoned all the same).
    Erase {
        /// The index directory.
        #[arg(long, default_value = "data/index")]
        index: PathBuf,
        /// The mention ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum IngestCommand {
    /// Print the mentions one feed yields (cull.mention/v1 JSON lines) and exit; exit 1
    /// with a one-line reason for a feed that cannot be read.
    Feed {
        /// The feed (RSS, Atom or JSON Feed; a Google Alerts feed, say): an http(s) URL,
        /// a saved file (a path or a file:// URL), or - for standard input.
        feed: String,
        /// The source name the mentions carry (their ids depend on it).
        #[arg(long, default_value = "feed")]
        name: String,
        /// The channel of the mentions.
        #[arg(long, default_value = "news", value_parser = parse_channel)]
        channel: cull_model::Channel,
        /// Seconds allowed for the request.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
}

/// Reads a value the way serde reads it from JSON, so the CLI and the API accept the
/// same words.
fn parse_word<T: serde::de::DeserializeOwned>(word: &str, expected: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(word.to_string()))
        .map_err(|_| format!("expected one of {expected}"))
}

fn parse_outcome(word: &str) -> Result<cull_index::Outcome, String> {
    parse_word(word, "matched, culled, unmatched")
}

fn parse_interval(word: &str) -> Result<cull_index::Interval, String> {
    parse_word(word, "hour, day, week")
}

fn parse_sort(word: &str) -> Result<cull_index::Sort, String> {
    parse_word(word, "time, relevance")
}

fn parse_sort_by(word: &str) -> Result<cull_quality::SortBy, String> {
    cull_quality::SortBy::parse(word)
        .ok_or_else(|| format!("expected one of {}", cull_quality::SortBy::NAMES.join(", ")))
}

fn parse_scope(text: &str) -> Result<cull_model::Scope, String> {
    cull_model::Scope::parse(text)
}

fn parse_channel(name: &str) -> Result<cull_model::Channel, String> {
    cull_model::Channel::parse(name).ok_or_else(|| {
        let names: Vec<&str> = cull_model::Channel::ALL.iter().map(|c| c.as_str()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

/// Reports a panic as one log line (where it happened and what it said) once logging is
/// set up, and as Rust does otherwise. The runtime catches a stage's panic on one
/// record and dead-letters the record; the log line is where an operator sees it.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !tracing::dispatcher::has_been_set() {
            return default(info);
        }
        let message = cull_runtime::panic_message(info.payload());
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        tracing::error!(%location, thread, message, "panic");
    }));
}

fn main() -> ExitCode {
    install_panic_hook();
    #[cfg(feature = "failpoints")]
    let _faults = fail::FailScenario::setup();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rules(RulesCommand::Check { dir, format, deny_warnings }) => {
            commands::check(&dir, format, deny_warnings)
        }
        Command::Config(ConfigCommand::Check { pipeline, format }) => {
            commands::config_check(&pipeline, format)
        }
        Command::Rules(RulesCommand::Test { dir }) => commands::test(&dir),
        Command::Rules(RulesCommand::Stats { pipeline, sort, client, limit, json }) => {
            commands::rule_stats(&pipeline, sort, &client, limit, json)
        }
        Command::Rules(RulesCommand::Suggest { rule_id, pipeline, client, write, max, json }) => {
            commands::suggest(&pipeline, &rule_id, client, write.as_deref(), max, json)
        }
        Command::Rules(RulesCommand::Explain {
            rules,
            rule_id,
            text,
            client,
            title,
            url,
            author,
            channel,
            lang,
        }) => {
            let mut mention = cull_model::Mention::new("explain", text);
            mention.title = title;
            mention.url = url;
            mention.author = author;
            mention.channel = channel;
            mention.lang = lang.map(|lang| lang.trim().to_ascii_lowercase());
            commands::explain(&rules, &rule_id, client, mention)
        }
        Command::Run { pipeline, once, decisions, log } => commands::run(&pipeline, once, decisions, &log),
        Command::Search {
            query,
            window,
            client,
            channel,
            rule,
            verdict,
            lang,
            facet,
            histogram,
            sort,
            limit,
            offset,
            json,
        } => (|| {
            let (since, until) = window.bounds()?;
            let request = cull_index::SearchRequest {
                query,
                since,
                until,
                channels: channel,
                rules: rule,
                verdicts: verdict,
                langs: lang,
                sort,
                limit,
                offset,
                facets: facet,
                histogram,
                ..cull_index::SearchRequest::default()
            };
            commands::search(commands::SearchOptions { index: window.index, scope: client, request, json })
        })(),
        Command::Rules(RulesCommand::Backtest { rules, window, client, samples, json }) => (|| {
            let (since, until) = window.bounds()?;
            let request = cull_index::BacktestRequest { since, until, samples };
            commands::backtest(&rules, &window.index, &client, &request, json)
        })(),
        Command::Ingest(IngestCommand::Feed { feed, name, channel, timeout_secs }) => {
            commands::ingest_feed(&feed, &name, channel, std::time::Duration::from_secs(timeout_secs))
        }
        Command::Index(IndexCommand::Erase { index, ids }) => commands::erase(&index, &ids),
        Command::Serve {
            index,
            rules,
            http,
            tokens,
            max_clauses,
            max_wildcard_terms,
            query_timeout_ms,
            max_page,
            max_concurrent_queries,
            stats,
            log,
        } => serve::serve(serve::ServeOptions {
            index,
            rules,
            http,
            tokens,
            limits: cull_index::Limits {
                max_clauses,
                max_wildcard_terms,
                timeout: std::time::Duration::from_millis(query_timeout_ms),
                max_page,
            },
            max_concurrent_queries,
            stats,
            log,
        }),
        Command::Match { rules, input, max_bytes, dead_letters, matches_only } => {
            commands::match_lines(&rules, input.as_deref(), max_bytes, dead_letters.as_deref(), matches_only)
        }
    };
    match result {
        Ok(code) => code,
        // The reader went away (`cull search | head`): what it wanted was written, and
        // there is nobody to tell.
        Err(error) if closed_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cull: {}", cull_model::escape::escape_controls_but_newlines(&format!("{error:#}")));
            ExitCode::from(2)
        }
    }
}

/// Returns whether `error` comes from writing to a pipe whose reader has closed it.
fn closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| cause.downcast_ref::<serde_json::Error>()?.io_error_kind());
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}
