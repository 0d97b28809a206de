//! The `cull` command line.

mod api;
mod auth;
mod commands;
mod config;
mod console;
mod http;
mod metrics;
mod pipeline;
mod serve;
mod sources;
mod tickets;

use std::net::SocketAddr;
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
    },
    /// Serve the analyst API (/api/*) and web console over an index.
    Serve {
        /// The analyst index directory.
        #[arg(long)]
        index: PathBuf,
        /// The rules directory, whose rules explain why a mention matched or was culled.
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        /// The address to listen on; a port of 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:9470")]
        listen: SocketAddr,
        /// A TOML file of API tokens ([[token]] name, role, token); the environment
        /// variable CULL_API_TOKENS (role:token,role:token) adds more.
        #[arg(long)]
        tokens: Option<PathBuf>,
        /// Words, phrases and keyword tests one query may have.
        #[arg(long, default_value_t = cull_index::Limits::default().max_clauses)]
        max_clauses: usize,
        /// Terms one wildcard (conn*) may expand to.
        #[arg(long, default_value_t = cull_index::Limits::default().max_wildcard_terms)]
        max_wildcard_terms: usize,
        /// Milliseconds a search may take before it returns what it has, marked timed_out.
        #[arg(long, default_value_t = cull_index::Limits::default().timeout.as_millis() as u64)]
        query_timeout_ms: u64,
        /// Hits one page may hold.
        #[arg(long, default_value_t = cull_index::Limits::default().max_page)]
        max_page: usize,
    },
    /// Work with rule packs.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Try sources out.
    #[command(subcommand)]
    Ingest(IngestCommand),
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
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Validate every rule file; print compiler-style errors; exit 1 on any error.
    Check {
        /// The rules directory.
        #[arg(default_value = "rules")]
        dir: PathBuf,
    },
    /// Run every rule's examples; report each failure; exit 1 on any failure.
    Test {
        /// The rules directory.
        #[arg(default_value = "rules")]
        dir: PathBuf,
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
        /// An optional title for the mention.
        #[arg(long)]
        title: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum IngestCommand {
    /// Print the mentions one feed yields (cull.mention/v1 JSON lines) and exit; exit 1
    /// with a one-line reason for a feed that cannot be read.
    Feed {
        /// The feed URL (RSS, Atom or JSON Feed; a Google Alerts feed, say).
        url: String,
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

fn parse_channel(name: &str) -> Result<cull_model::Channel, String> {
    cull_model::Channel::parse(name).ok_or_else(|| {
        let names: Vec<&str> = cull_model::Channel::ALL.iter().map(|c| c.as_str()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rules(RulesCommand::Check { dir }) => commands::check(&dir),
        Command::Rules(RulesCommand::Test { dir }) => commands::test(&dir),
        Command::Rules(RulesCommand::Explain { rules, rule_id, text, title }) => {
            commands::explain(&rules, &rule_id, text, title)
        }
        Command::Run { pipeline, once } => commands::run(&pipeline, once),
        Command::Ingest(IngestCommand::Feed { url, name, channel, timeout_secs }) => {
            commands::ingest_feed(&url, &name, channel, std::time::Duration::from_secs(timeout_secs))
        }
        Command::Serve {
            index,
            rules,
            listen,
            tokens,
            max_clauses,
            max_wildcard_terms,
            query_timeout_ms,
            max_page,
        } => serve::serve(serve::ServeOptions {
            index,
            rules,
            listen,
            tokens,
            limits: cull_index::Limits {
                max_clauses,
                max_wildcard_terms,
                timeout: std::time::Duration::from_millis(query_timeout_ms),
                max_page,
            },
        }),
        Command::Match { rules, input, max_bytes, dead_letters } => {
            commands::match_lines(&rules, input.as_deref(), max_bytes, dead_letters.as_deref())
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cull: {error:#}");
            ExitCode::from(2)
        }
    }
}
