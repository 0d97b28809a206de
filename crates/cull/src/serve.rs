//! `cull serve`: the analyst API and console over an index, without a pipeline.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::routing::get;
use axum::Router;
use cull_index::{Limits, Searcher};
use cull_match::Matcher;

use crate::auth::{Tokens, TOKENS_ENV};

/// What `cull serve` serves, from its flags.
#[derive(Debug)]
pub struct ServeOptions {
    /// The index directory (`--index`).
    pub index: PathBuf,
    /// The rules that explain mentions (`--rules`).
    pub rules: PathBuf,
    /// Where to listen and what clients may do (`--listen`, `--max-connections`, ...).
    pub http: crate::server::Http,
    /// The tokens file (`--tokens`).
    pub tokens: Option<PathBuf>,
    /// What one query may cost.
    pub limits: Limits,
    /// Searches and backtests run at once at most (`--max-concurrent-queries`).
    pub max_concurrent_queries: usize,
    /// The quality stage's store, for the rules' stats and suggestions (`--stats`).
    pub stats: Option<PathBuf>,
    /// How the log is written (`--log-format`).
    pub log: crate::commands::LogOptions,
}

/// Returns the routes `cull serve` serves: the API, the console and `/healthz`.
pub fn app(state: crate::api::ApiState) -> Router {
    crate::api::router(state).merge(crate::console::router()).route("/healthz", get(|| async { "ok\n" }))
}

/// `cull serve`.
pub fn serve(options: ServeOptions) -> Result<ExitCode> {
    crate::commands::init_logging(&options.log);
    if let Some(problem) = options.http.validate().into_iter().next() {
        bail!("--{}: {}", problem.key.replace('_', "-"), problem.message);
    }
    let env = std::env::var(TOKENS_ENV).ok();
    let tokens = Tokens::load(options.tokens.as_deref(), env.as_deref())?;
    if tokens.len() == 0 {
        tracing::warn!("no API tokens (--tokens FILE or {TOKENS_ENV}): every API request will be refused");
    }
    let Some((rules, _)) = crate::commands::load_set_or_report(&options.rules, |_| true)? else {
        return Ok(ExitCode::FAILURE);
    };
    if !options.index.is_dir() {
        // Opening would create an empty index, and a typo would serve nothing quietly.
        bail!("--index {}: no such directory", options.index.display());
    }
    let searcher = Searcher::open(&options.index, options.limits)
        .with_context(|| format!("cannot open the index (--index {})", options.index.display()))?;
    let (searcher, matcher, tokens) = (Arc::new(searcher), Arc::new(Matcher::new(rules)), Arc::new(tokens));
    let quality = crate::quality_api::QualityApi {
        feedback: None,
        quality: options.stats.clone().map(|dir| cull_quality::QualityConfig { dir, ..Default::default() }),
        searcher: Some(Arc::clone(&searcher)),
        matcher: Arc::clone(&matcher),
    };
    let quality = crate::quality_api::router(quality, Arc::clone(&tokens));
    let eraser = crate::api::Eraser::Directory(options.index.clone());
    let state = crate::api::ApiState::new(searcher, eraser, matcher, tokens, options.max_concurrent_queries);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = crate::server::bind(options.http.listen, "--listen").await?;
        let address = listener.local_addr();
        if !address.ip().is_loopback() {
            tracing::warn!(%address, "listening beyond this machine: use TLS in front of cull");
        }
        tracing::info!(index = %options.index.display(), listen = %address, "serving the API and the console");
        listener.serve(quality.merge(app(state)), &options.http, stop_signal()).await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    crate::pipeline::terminated().await;
    tracing::info!("stopping");
}
