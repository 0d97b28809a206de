//! The analyst API: search, histograms, mentions with why they matched or were culled,
//! and backtests of draft rules, over the analyst index.
//!
//! Every route but the OpenAPI document needs a bearer token of the analyst role or
//! higher ([`crate::auth`]); erasing a mention (`DELETE /api/mentions/{id}`, a data
//! subject's request) needs the operator role. The routes, their parameters and every body, errors
//! included, are described by `openapi.json` (served at `/api/openapi.json`), which
//! a test checks against live responses.
//!
//! Searches and backtests run on blocking threads: a search is CPU and disk work that
//! must not hold up the async workers that serve other requests (and probes). Queries
//! are bounded by the searcher's [`Limits`](cull_index::Limits); a query over a limit
//! is refused with 422 (understood, but too costly), a query that does not parse with
//! 400, and a search stopped by the time limit returns what it found with
//! `timed_out: true`. A backtest stopped by the time limit answers 422 instead: counts
//! of part of the mentions would mislead the operator deciding whether a rule goes
//! live. At most `max_concurrent_queries` searches, histograms and backtests run at
//! once; one more is answered 429 with `Retry-After` rather than queued, so that a
//! burst of costly queries cannot hold every blocking thread.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path as UrlPath, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::Router;
use cull_index::{
    backtest, BacktestRequest, Erasure, FacetFilter, Histogram, IndexError, Indexer, Interval, MentionRecord,
    Outcome, SearchRequest, Searcher, Sort, Split,
};
use cull_match::explain::explain;
use cull_match::Matcher;
use cull_model::{Scope, Span, Ticket, Verdict};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::auth::{self, Caller, Guard, Role, Tokens};
use crate::export::{ExportBody, Format, MAX_EXPORT_MENTIONS};

/// The OpenAPI 3.1 description of the API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Hits a page may skip: a deep page costs a heap of `offset + limit` entries.
const MAX_OFFSET: usize = 10_000;
/// Rules one backtest may hold: each is a full scan of its candidates.
const MAX_DRAFT_RULES: usize = 50;
/// Samples of matches and of culls one backtest may return per rule.
const MAX_SAMPLES: usize = 100;
/// Searches, histograms and backtests that run at once unless configured otherwise.
pub const DEFAULT_CONCURRENT_QUERIES: usize = 4;
/// Seconds a client refused for lack of a query slot is told to wait.
const RETRY_AFTER_SECS: &str = "1";
/// The largest request body the API reads (a draft rule file of a backtest): far
/// above any real pack of 50 rules, far below what would cost the server memory.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How the API erases mentions from the index, which has one writer.
#[derive(Debug, Clone)]
pub enum Eraser {
    /// Through the indexer of this process (`cull run` with `[index]`), which holds
    /// the writer: the erasure waits for the batch in hand at most.
    Running(Arc<Mutex<Indexer>>),
    /// By taking the writer of the index in this directory for the request (`cull
    /// serve`, which only reads it); refused with 409 while another process writes it.
    Directory(PathBuf),
}

impl Eraser {
    /// Erases the mentions `ids` within `scope`; see [`Indexer::erase`].
    fn erase(&self, scope: &Scope, ids: &[String]) -> Result<Vec<Erasure>, IndexError> {
        match self {
            Eraser::Running(indexer) => {
                indexer.lock().unwrap_or_else(PoisonError::into_inner).erase(scope, ids)
            }
            Eraser::Directory(dir) => Indexer::open(dir, 1, 0)?.erase(scope, ids),
        }
    }
}

/// What the API handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    searcher: Arc<Searcher>,
    eraser: Eraser,
    rules: Arc<Matcher>,
    tokens: Arc<Tokens>,
    /// One permit per query that may run at once.
    queries: Arc<Semaphore>,
    max_queries: usize,
}

impl ApiState {
    /// The API over `searcher`, erasing with `eraser`, explaining mentions with the
    /// rule set `rules` holds now (so a hot reload shows in the next explanation), open
    /// to `tokens`, running at most `max_concurrent_queries` searches and backtests at
    /// once.
    pub fn new(
        searcher: Arc<Searcher>,
        eraser: Eraser,
        rules: Arc<Matcher>,
        tokens: Arc<Tokens>,
        max_concurrent_queries: usize,
    ) -> ApiState {
        let queries = Arc::new(Semaphore::new(max_concurrent_queries));
        ApiState { searcher, eraser, rules, tokens, queries, max_queries: max_concurrent_queries }
    }

    /// Returns a query slot, or the 429 answer when every one is taken.
    fn query_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.queries).try_acquire_owned().map_err(|_| {
            ApiError::Busy(format!(
                "{} queries are running, the most this server runs at once; retry in a moment",
                self.max_queries
            ))
        })
    }
}

/// Returns the routes of the API: `/api/search`, `/api/histogram`,
/// `GET /api/mentions/{id}`, `/api/backtest` (analyst role), `DELETE
/// /api/mentions/{id}` (operator role) and `/api/openapi.json` (open).
pub fn router(state: ApiState) -> Router {
    let guard = Guard::new(Arc::clone(&state.tokens), Role::Analyst);
    let operator = Router::new()
        .route("/api/mentions/{id}", delete(erase))
        .route_layer(from_fn_with_state(Guard::new(Arc::clone(&state.tokens), Role::Operator), auth::require))
        .with_state(state.clone());
    let analyst = Router::new()
        .route("/api/search", get(search))
        .route("/api/histogram", get(histogram))
        .route("/api/export", get(export))
        .route("/api/mentions/{id}", get(mention))
        .route("/api/rules/{id}/definition", get(rule_definition))
        .route("/api/backtest", post(run_backtest))
        .route_layer(from_fn_with_state(guard, auth::require))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .merge(operator);
    Router::new()
        .route("/api/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route(
            "/api/{*rest}",
            any(|| async { error(StatusCode::NOT_FOUND, "no such API route; see /api/openapi.json".into()) }),
        )
        .merge(analyst)
}

/// Returns `body` as a JSON response that no cache keeps (it holds mentions).
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the response: {e}")),
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    /// Where in the query `q` the error is, for a query that does not parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<Position>,
}

/// A byte range `[start, end)` of the query text (UTF-8, as highlights are).
#[derive(Debug, Serialize)]
struct Position {
    start: usize,
    end: usize,
}

/// Returns the API's error body, `{"error": message}`, with `status`.
pub fn error(status: StatusCode, message: String) -> Response {
    error_at(status, message, None)
}

/// Returns the API's error body with the place in the query it is about.
fn error_at(status: StatusCode, message: String, position: Option<Position>) -> Response {
    let body =
        serde_json::to_vec(&ErrorBody { error: &message, position }).expect("a string always serializes");
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// Why a request failed, as the API answers it.
#[derive(Debug)]
enum ApiError {
    /// The request is malformed: a parameter, the body.
    BadRequest(String),
    /// The query does not parse or compile, at `position`.
    Syntax {
        message: String,
        position: Position,
    },
    /// The request is understood but over a limit.
    Limit(String),
    /// Every query slot is taken: try again shortly.
    Busy(String),
    /// The body is over [`MAX_BODY_BYTES`].
    TooLarge(String),
    NotFound(String),
    /// Another process writes the index (an erasure through `cull serve` while a
    /// `cull run` indexes).
    Conflict(String),
    /// The draft rules of a backtest have errors (and maybe warnings).
    Rules {
        errors: Vec<RuleProblemBody>,
        warnings: Vec<RuleProblemBody>,
    },
    Internal(String),
}

/// An error or a warning of draft rules.
#[derive(Debug, Serialize)]
struct RuleProblemBody {
    /// As `cull rules check` prints it.
    message: String,
    line: Option<usize>,
    column: Option<usize>,
    rule: Option<String>,
}

impl RuleProblemBody {
    fn of(message: String, located: Option<&cull_rules::Located>) -> RuleProblemBody {
        RuleProblemBody {
            message,
            line: located.map(|l| l.line),
            column: located.map(|l| l.column),
            rule: located.and_then(|l| l.rule.clone()),
        }
    }

    fn warnings(loaded: &cull_rules::Loaded) -> Vec<RuleProblemBody> {
        loaded.warnings.iter().map(|w| RuleProblemBody::of(w.to_string(), Some(w))).collect()
    }
}

#[derive(Serialize)]
struct RuleErrorsBody<'a> {
    error: String,
    rule_errors: &'a [RuleProblemBody],
    warnings: &'a [RuleProblemBody],
}

/// A backtest's report with the warnings of its draft.
#[derive(Serialize)]
struct BacktestResponse {
    #[serde(flatten)]
    report: cull_index::Backtest,
    warnings: Vec<RuleProblemBody>,
}

impl From<IndexError> for ApiError {
    fn from(error: IndexError) -> ApiError {
        match error {
            IndexError::Query(_) | IndexError::Parameter { .. } => ApiError::BadRequest(error.to_string()),
            IndexError::Syntax { ref span, .. } => {
                let position = Position { start: span.start, end: span.end };
                ApiError::Syntax { message: error.to_string(), position }
            }
            IndexError::Locked { .. } => ApiError::Conflict(format!(
                "{error}: erase through the API of the process that writes it (a `cull run` with [api] \
                 enabled), or stop that process and try again"
            )),
            IndexError::Limit(_) | IndexError::TimeLimit { .. } => ApiError::Limit(error.to_string()),
            IndexError::NotFound(_) => ApiError::NotFound(error.to_string()),
            IndexError::Open { .. } | IndexError::Tantivy(_) | IndexError::Record(_) => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest(message) => error(StatusCode::BAD_REQUEST, message),
            ApiError::Syntax { message, position } => {
                error_at(StatusCode::BAD_REQUEST, message, Some(position))
            }
            ApiError::Limit(message) => error(StatusCode::UNPROCESSABLE_ENTITY, message),
            ApiError::Busy(message) => {
                let mut response = error(StatusCode::TOO_MANY_REQUESTS, message);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
                response
            }
            ApiError::TooLarge(message) => error(StatusCode::PAYLOAD_TOO_LARGE, message),
            ApiError::NotFound(message) => error(StatusCode::NOT_FOUND, message),
            ApiError::Conflict(message) => error(StatusCode::CONFLICT, message),
            ApiError::Rules { errors, warnings } => json(
                StatusCode::BAD_REQUEST,
                &RuleErrorsBody {
                    error: format!("{} error(s) in the draft rules", errors.len()),
                    rule_errors: &errors,
                    warnings: &warnings,
                },
            ),
            ApiError::Internal(message) => {
                tracing::error!(%message, "API request failed");
                error(StatusCode::INTERNAL_SERVER_ERROR, message)
            }
        }
    }
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError::Internal(format!("the search task failed: {e}"))),
    }
}

/// Returns the pairs of a query string, refusing keys not in `allowed`.
fn pairs(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    query_pairs(raw, allowed).map_err(ApiError::BadRequest)
}

/// Returns the pairs of a query string, or why not: a key not in `allowed`.
pub(crate) fn query_pairs(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, String> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    match pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((key, _)) => Err(format!("unknown parameter {key:?}; parameters are {}", allowed.join(", "))),
        None => Ok(pairs),
    }
}

/// Parses a time parameter: RFC 3339 (`2026-11-21T10:00:00Z`), a date
/// (`2026-11-21`, midnight UTC), or an age before `now` (`30m`, `24h`, `7d`, `2w`).
fn parse_time(key: &str, value: &str, now: OffsetDateTime) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "{key}={value:?}: expected RFC 3339 (2026-11-21T10:00:00Z), a date (2026-11-21) \
             or an age (30m, 24h, 7d, 2w)"
        ))
    };
    let value = value.trim();
    if let Some(unit) = value.chars().last().filter(|c| "mhdw".contains(*c)) {
        let count: i64 = value[..value.len() - 1].parse().map_err(|_| bad())?;
        let seconds = match unit {
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => 7 * 86_400,
        };
        return count.checked_mul(seconds).map(|age| now.unix_timestamp() - age).ok_or_else(bad);
    }
    let full = if value.len() == 10 { format!("{value}T00:00:00Z") } else { value.to_string() };
    OffsetDateTime::parse(&full, &Rfc3339).map(|t| t.unix_timestamp()).map_err(|_| bad())
}

fn parse_number(key: &str, value: &str) -> Result<usize, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{key}={value:?}: expected a non-negative integer")))
}

fn parse_split(key: &str, value: &str) -> Result<Split, ApiError> {
    match value {
        "verdict" => Ok(Split::Verdict),
        "rule" => Ok(Split::Rule),
        _ => Err(ApiError::BadRequest(format!("{key}={value:?}: expected verdict or rule"))),
    }
}

fn parse_sort(key: &str, value: &str) -> Result<Sort, ApiError> {
    match value {
        "time" => Ok(Sort::Time),
        "relevance" => Ok(Sort::Relevance),
        _ => Err(ApiError::BadRequest(format!("{key}={value:?}: expected time or relevance"))),
    }
}

fn parse_interval(key: &str, value: &str) -> Result<Interval, ApiError> {
    match value {
        "hour" => Ok(Interval::Hour),
        "day" => Ok(Interval::Day),
        "week" => Ok(Interval::Week),
        _ => Err(ApiError::BadRequest(format!("{key}={value:?}: expected hour, day or week"))),
    }
}

/// The filters `/api/search`, `/api/histogram` and `/api/export` share.
const FILTERS: [&str; 9] = ["q", "since", "until", "channel", "rule", "verdict", "lang", "client", "filter"];

/// Builds a search request from query parameters; `extra` are the route's own keys,
/// handled by `other`.
fn search_request(
    raw: Option<&str>,
    extra: &[&str],
    mut other: impl FnMut(&mut SearchRequest, &str, &str) -> Result<(), ApiError>,
) -> Result<SearchRequest, ApiError> {
    let allowed: Vec<&str> = FILTERS.iter().chain(extra).copied().collect();
    let now = OffsetDateTime::now_utc();
    let mut request = SearchRequest::default();
    for (key, value) in pairs(raw, &allowed)? {
        match key.as_str() {
            "q" => request.query = value,
            "since" => request.since = Some(parse_time(&key, &value, now)?),
            "until" => request.until = Some(parse_time(&key, &value, now)?),
            "channel" => request.channels.push(value),
            "rule" => request.rules.push(value),
            "lang" => request.langs.push(value),
            "client" => request.clients.push(value),
            "filter" => {
                let Some((facet, value)) = value.split_once(':') else {
                    return Err(ApiError::BadRequest(format!(
                        "filter={value:?}: expected FACET:VALUE, such as domain:example.com"
                    )));
                };
                request.facet_filters.push(FacetFilter { facet: facet.into(), value: value.into() });
            }
            "verdict" => request.verdicts.push(match value.as_str() {
                "matched" => Outcome::Matched,
                "culled" => Outcome::Culled,
                "unmatched" => Outcome::Unmatched,
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "verdict={value:?}: expected matched, culled or unmatched"
                    )))
                }
            }),
            _ => other(&mut request, &key, &value)?,
        }
    }
    Ok(request)
}

/// `GET /api/search`.
async fn search(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let extra = ["sort", "limit", "offset", "facet", "histogram", "split"];
    let request = search_request(raw.as_deref(), &extra, |request, key, value| {
        match key {
            "sort" => request.sort = parse_sort(key, value)?,
            "limit" => request.limit = parse_number(key, value)?,
            "offset" => request.offset = parse_number(key, value)?,
            "facet" => request.facets.push(value.to_string()),
            "split" => request.split = Some(parse_split(key, value)?),
            _ => request.histogram = Some(parse_interval(key, value)?),
        }
        Ok(())
    })?;
    if request.offset > MAX_OFFSET {
        return Err(ApiError::Limit(format!(
            "offset {} is over the limit of {MAX_OFFSET}; narrow the search instead",
            request.offset
        )));
    }
    let slot = state.query_slot()?;
    let searcher = Arc::clone(&state.searcher);
    let found = blocking(move || {
        let _slot = slot;
        searcher.search(&caller.scope, &request)
    })
    .await?;
    Ok(json(StatusCode::OK, &found))
}

/// `GET /api/export`: the whole result of a search (the search's filters and `sort`),
/// as CSV or JSON Lines, within the caller's scope as every search is; see
/// [`crate::export`] for the limits.
async fn export(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut format = None;
    let request = search_request(raw.as_deref(), &["format", "sort"], |request, key, value| {
        match key {
            "sort" => request.sort = parse_sort(key, value)?,
            _ => {
                let parsed = Format::parse(value);
                format = Some(parsed.ok_or_else(|| {
                    ApiError::BadRequest(format!("{key}={value:?}: expected csv or jsonl"))
                })?);
            }
        }
        Ok(())
    })?;
    let format = format.ok_or_else(|| ApiError::BadRequest("format is required: csv or jsonl".into()))?;
    let slot = state.query_slot()?;
    let searcher = Arc::clone(&state.searcher);
    let (total, body) = blocking(move || {
        let _slot = slot;
        let mut body = ExportBody::new(format);
        let total = searcher.export(&caller.scope, &request, MAX_EXPORT_MENTIONS, |mention| {
            if body.push(&mention) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })?;
        Ok((total, body))
    })
    .await?;
    let exported = body.written;
    let disposition = format!("attachment; filename=\"cull-mentions.{}\"", format.extension());
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(format.content_type())),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("an ASCII header")),
            (TOTAL_HEADER, HeaderValue::from(total)),
            (EXPORTED_HEADER, HeaderValue::from(exported)),
        ],
        body.into_bytes(),
    )
        .into_response())
}

/// The header of an export that says how many mentions matched.
const TOTAL_HEADER: header::HeaderName = header::HeaderName::from_static("x-cull-total");
/// The header of an export that says how many mentions it holds (fewer than matched
/// when a limit cut it).
const EXPORTED_HEADER: header::HeaderName = header::HeaderName::from_static("x-cull-exported");

/// What `/api/histogram` returns: the histogram with the count and flags of its search.
#[derive(Serialize)]
struct HistogramResponse {
    #[serde(flatten)]
    histogram: Histogram,
    total: usize,
    took_ms: u64,
    timed_out: bool,
}

/// `GET /api/histogram`.
async fn histogram(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut interval = Interval::Day;
    let mut request = search_request(raw.as_deref(), &["interval", "split"], |request, key, value| {
        match key {
            "split" => request.split = Some(parse_split(key, value)?),
            _ => interval = parse_interval(key, value)?,
        }
        Ok(())
    })?;
    request.limit = 0;
    request.histogram = Some(interval);
    let slot = state.query_slot()?;
    let searcher = Arc::clone(&state.searcher);
    let found = blocking(move || {
        let _slot = slot;
        searcher.search(&caller.scope, &request)
    })
    .await?;
    let histogram =
        found.histogram.ok_or_else(|| ApiError::Internal("the search returned no histogram".into()))?;
    Ok(json(
        StatusCode::OK,
        &HistogramResponse {
            histogram,
            total: found.total,
            took_ms: found.took_ms,
            timed_out: found.timed_out,
        },
    ))
}

/// A mention with the account of each rule that matched or culled it.
#[derive(Serialize)]
struct MentionResponse {
    verdict: Verdict,
    /// The tickets about the mention (the highest revision of each seen so far).
    tickets: Vec<Ticket>,
    /// The version of the rule set the explanations come from (the verdict's may be
    /// older).
    ruleset_version: String,
    explanations: Vec<RuleExplanation>,
    /// Rules of the verdict that the loaded rule set no longer has.
    unexplained: Vec<String>,
}

#[derive(Serialize)]
struct RuleExplanation {
    rule_id: String,
    rule_name: String,
    /// `matched`, `culled` or `no_match` (the rule changed since the verdict).
    outcome: &'static str,
    /// For a cull: the reason (exclude, mask, channel, lang) and the clause.
    cull: Option<CullBody>,
    /// For a match: where.
    spans: Vec<Span>,
    /// Whether the prefilter selected the rule for this mention.
    candidate: bool,
    anchors: Option<Vec<String>>,
    clauses: Vec<ClauseBody>,
    masks: Vec<CheckBody>,
    excludes: Vec<CheckBody>,
}

#[derive(Serialize)]
struct CullBody {
    reason: &'static str,
    clause: String,
}

#[derive(Serialize)]
struct ClauseBody {
    source: String,
    negated: bool,
    matched: bool,
}

#[derive(Serialize)]
struct CheckBody {
    source: String,
    matched: bool,
}

/// `GET /api/mentions/{id}`: a mention outside the caller's scope is not found, with
/// the answer a missing one gets.
async fn mention(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let searcher = Arc::clone(&state.searcher);
    let MentionRecord { verdict, tickets } = blocking(move || searcher.mention(&caller.scope, &id)).await?;
    let mention = verdict.mention.as_ref().ok_or_else(|| {
        ApiError::Internal(format!("the record of {:?} has no mention", verdict.mention_id))
    })?;
    let set = state.rules.current();
    let mut rule_ids: Vec<&str> = verdict.matched.iter().map(|m| m.rule_id.as_str()).collect();
    rule_ids.extend(verdict.culled.iter().map(|c| c.rule_id.as_str()));
    let (mut explanations, mut unexplained) = (Vec::new(), Vec::new());
    for rule_id in rule_ids {
        let (Some(explanation), Some(rule)) =
            (explain(&set, rule_id, mention), set.rule(mention.client.as_deref(), rule_id))
        else {
            unexplained.push(rule_id.to_string());
            continue;
        };
        let (outcome, cull, spans) = match explanation.outcome {
            cull_match::Outcome::NoMatch => ("no_match", None, Vec::new()),
            cull_match::Outcome::Matched(spans) => ("matched", None, spans),
            cull_match::Outcome::Culled { reason, clause } => {
                ("culled", Some(CullBody { reason: reason.as_str(), clause }), Vec::new())
            }
        };
        let check = |(source, matched): (String, bool)| CheckBody { source, matched };
        explanations.push(RuleExplanation {
            rule_id: explanation.rule_id,
            rule_name: rule.rule.name.clone(),
            outcome,
            cull,
            spans,
            candidate: explanation.candidate,
            anchors: explanation.anchors,
            clauses: explanation
                .clauses
                .into_iter()
                .map(|c| ClauseBody { source: c.source, negated: c.negated, matched: c.matched })
                .collect(),
            masks: explanation.masks.into_iter().map(check).collect(),
            excludes: explanation.excludes.into_iter().map(check).collect(),
        });
    }
    let body = MentionResponse {
        ruleset_version: set.version().to_string(),
        verdict,
        tickets,
        explanations,
        unexplained,
    };
    Ok(json(StatusCode::OK, &body))
}

/// A live rule as a rule file.
#[derive(Serialize)]
struct RuleDefinition {
    rule_id: String,
    /// The client whose pack holds it; absent for a global rule.
    client: Option<String>,
    /// A rule file holding the rule alone.
    toml: String,
}

/// `GET /api/rules/{id}/definition`: live rule `id` as a rule file, for the
/// console's draft page to backtest a draft against. The rule is the caller's
/// client's or a global one; a staff token names a client's with `client`. A rule
/// the caller may not see is not found, as a missing one.
async fn rule_definition(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let asked = pairs(raw.as_deref(), &["client"])?.into_iter().next().map(|(_, client)| client);
    let not_found = || ApiError::NotFound(format!("no live rule {id:?}"));
    let client = match (caller.scope.client(), asked.as_deref()) {
        (Some(own), Some(asked)) if own != asked => return Err(not_found()),
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    let rule = state.rules.current().rule(client, &id).ok_or_else(not_found)?;
    let body = RuleDefinition {
        rule_id: id.clone(),
        client: rule.rule.client.clone(),
        toml: cull_quality::rule_toml(&rule.rule),
    };
    Ok(json(StatusCode::OK, &body))
}

/// `DELETE /api/mentions/{id}`: erases a mention from the index for good (a data
/// subject's request), answering whether it was found. The id is tombstoned either way,
/// so the mention is not indexed again by a replay or if it comes later. A mention
/// outside the caller's scope is not found, as a missing one, and stays.
async fn erase(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (eraser, searcher, scope) = (state.eraser.clone(), Arc::clone(&state.searcher), caller.scope.clone());
    let mut erased = blocking(move || {
        let erased = eraser.erase(&scope, &[id])?;
        // The next read of this API sees it gone.
        searcher.reload()?;
        Ok(erased)
    })
    .await?;
    let erasure = erased.pop().ok_or_else(|| ApiError::Internal("the erasure answered nothing".into()))?;
    tracing::info!(caller = caller.name, client = %caller.scope, id = erasure.id, found = erasure.found, "mention erased");
    Ok(json(StatusCode::OK, &erasure))
}

/// The body of `POST /api/backtest`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BacktestBody {
    /// A rule pack, as the TOML of a rule file.
    rules: String,
    since: Option<String>,
    until: Option<String>,
    samples: Option<usize>,
}

/// `POST /api/backtest`: a client's draft is that client's pack, tried on its
/// mentions only.
async fn run_backtest(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(format!("the request body is over the limit of {MAX_BODY_BYTES} bytes"))
        }
        _ => ApiError::BadRequest(format!("request body: {}", rejection.body_text())),
    })?;
    let deserializer = &mut serde_json::Deserializer::from_slice(&body);
    let body: BacktestBody = serde_path_to_error::deserialize(deserializer)
        .map_err(|e| ApiError::BadRequest(format!("request body: {e}")))?;
    let now = OffsetDateTime::now_utc();
    let request = BacktestRequest {
        since: body.since.as_deref().map(|v| parse_time("since", v, now)).transpose()?,
        until: body.until.as_deref().map(|v| parse_time("until", v, now)).transpose()?,
        samples: body.samples.unwrap_or(BacktestRequest::default().samples),
    };
    if request.samples > MAX_SAMPLES {
        return Err(ApiError::Limit(format!(
            "samples {} is over the limit of {MAX_SAMPLES}",
            request.samples
        )));
    }
    let draft = [(Path::new("draft.toml"), body.rules.as_bytes())];
    let loaded = cull_rules::load_pack(caller.scope.client(), draft, &mut cull_rules::Taken::default());
    let warnings = RuleProblemBody::warnings(&loaded);
    if !loaded.errors.is_empty() {
        return Err(ApiError::Rules {
            errors: loaded.errors.iter().map(|e| RuleProblemBody::of(e.to_string(), e.located())).collect(),
            warnings,
        });
    }
    if loaded.rules.is_empty() {
        return Err(ApiError::BadRequest("the draft has no [[rule]]".into()));
    }
    if loaded.rules.len() > MAX_DRAFT_RULES {
        return Err(ApiError::Limit(format!(
            "the draft has {} rules; a backtest takes at most {MAX_DRAFT_RULES}",
            loaded.rules.len()
        )));
    }
    let slot = state.query_slot()?;
    let searcher = Arc::clone(&state.searcher);
    let report = blocking(move || {
        // The slot is held until the work ends, even when the client has gone.
        let _slot = slot;
        // The same limits as a search: a draft's query must not starve the service either.
        for rule in &loaded.rules {
            searcher.plan(&rule.rule.query).map_err(|e| match e {
                IndexError::Limit(m) => IndexError::Limit(format!("rule `{}`: {m}", rule.rule.id)),
                other => other,
            })?;
        }
        backtest(&searcher, &caller.scope, &loaded.rules, &request)
    })
    .await?;
    Ok(json(StatusCode::OK, &BacktestResponse { report, warnings }))
}

/// Returns the API routes of a `cull run` process: the analyst API and the console
/// over the index it writes (when it runs the indexer, whose writer its erasures go
/// through), and `POST /api/rules/reload` for operators (when it runs the matcher).
pub fn pipeline_routes(
    config: &crate::config::Api,
    reloader: Option<Arc<cull_runtime::reload::Reloader>>,
    indexer: Option<Arc<Mutex<Indexer>>>,
    matcher: Arc<Matcher>,
    feedback: Option<crate::quality_api::FeedbackOutlet>,
    quality: Option<cull_quality::QualityConfig>,
) -> anyhow::Result<Router> {
    use anyhow::Context as _;
    let env = std::env::var(crate::auth::TOKENS_ENV).ok();
    let tokens = Arc::new(Tokens::load(config.tokens.as_deref(), env.as_deref()).context("api.tokens")?);
    if tokens.len() == 0 {
        tracing::warn!(
            "[api] is enabled without tokens (api.tokens or CULL_API_TOKENS): every request will be refused"
        );
    }
    let mut routes = Router::new();
    if let Some(reloader) = reloader {
        routes = routes.merge(crate::reload::router(reloader, Arc::clone(&tokens)));
    }
    let mut searcher = None;
    if let Some(indexer) = indexer {
        let opened = Arc::new(Searcher::over(
            indexer.lock().unwrap_or_else(PoisonError::into_inner).index().clone(),
            cull_index::IndexSchema::new(),
            cull_index::Limits::default(),
        )?);
        let state = ApiState::new(
            Arc::clone(&opened),
            Eraser::Running(indexer),
            Arc::clone(&matcher),
            Arc::clone(&tokens),
            DEFAULT_CONCURRENT_QUERIES,
        );
        routes = routes.merge(router(state)).merge(crate::console::router());
        searcher = Some(opened);
    }
    let quality = crate::quality_api::QualityApi { feedback, quality, searcher, matcher };
    Ok(crate::quality_api::router(quality, tokens).merge(routes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_dates_or_ages() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(parse_time("since", "7d", now).unwrap(), 1_800_000_000 - 7 * 86_400);
        assert_eq!(parse_time("since", "24h", now).unwrap(), 1_800_000_000 - 86_400);
        assert_eq!(parse_time("since", "2026-11-21T10:00:00Z", now).unwrap(), 1_795_255_200);
        assert_eq!(parse_time("since", "2026-11-21", now).unwrap(), 1_795_219_200);
        let error = parse_time("until", "yesterday", now).unwrap_err();
        assert!(
            matches!(&error, ApiError::BadRequest(m) if m.starts_with("until=\"yesterday\"")),
            "{error:?}"
        );
        assert!(parse_time("since", "99999999999999999d", now).is_err());
    }

    #[tokio::test]
    async fn a_query_over_the_concurrency_cap_is_answered_429_with_retry_after() {
        use axum::body::Body;
        use tower::ServiceExt as _;

        let dir = tempfile::tempdir().unwrap();
        let searcher = Searcher::open(dir.path(), cull_index::Limits::default()).unwrap();
        let eraser = Eraser::Directory(dir.path().to_path_buf());
        let rules = Matcher::new(cull_match::RuleSet::new(Vec::new()).unwrap());
        let tokens = Tokens::load(None, Some("analyst@*:a-token-0123456789")).unwrap();
        let state = ApiState::new(Arc::new(searcher), eraser, Arc::new(rules), Arc::new(tokens), 1);
        let app = router(state.clone());
        let call = |method: &str, uri: &str, body: &str| {
            let request = axum::http::Request::builder()
                .method(method)
                .uri(uri)
                .header(header::AUTHORIZATION, "Bearer a-token-0123456789")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            app.clone().oneshot(request)
        };
        let backtest = r#"{"rules": "[[rule]]\nid = \"x\"\nname = \"x\"\nquery = \"slack\"\n"}"#;
        let running = state.query_slot().unwrap();
        for (method, uri, body) in [
            ("GET", "/api/search?q=slack", ""),
            ("GET", "/api/histogram", ""),
            ("POST", "/api/backtest", backtest),
        ] {
            let refused = call(method, uri, body).await.unwrap();
            assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "{uri}");
            assert_eq!(refused.headers().get(header::RETRY_AFTER).unwrap(), "1");
        }
        drop(running);
        for (method, uri, body) in [
            ("GET", "/api/search?q=slack", ""),
            ("GET", "/api/histogram", ""),
            ("POST", "/api/backtest", backtest),
        ] {
            assert_eq!(call(method, uri, body).await.unwrap().status(), StatusCode::OK, "{uri}");
        }
    }
}
