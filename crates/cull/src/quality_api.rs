//! The feedback and rule-quality routes: agents' dispositions in, each rule's stats
//! and suggestions out.
//!
//! * `POST /api/feedback` takes one `cull.feedback/v1` record or an array of them
//!   (analyst role or higher), validates every one, and answers 202 once the bus has
//!   acknowledged them all on the feedback topic. A client's token disposes of its
//!   own tickets only: a record without `client` gets the token's, a record naming
//!   another client is refused. The whole body is refused when one record is bad,
//!   naming it, so a helpdesk never wonders which half went through. A bus that does
//!   not acknowledge answers 503; sending again is harmless (the latest disposition
//!   of a ticket counts).
//! * `GET /api/rules/stats` reports every rule the caller may see from the store of
//!   the quality stage (`sort=cost|noise|precision`).
//! * `GET /api/rules/{id}/suggestions` proposes exclusions and masks for a rule from
//!   its dispositions, backtested on the index, with a draft of the rule file.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use cull_bus::{Message, Producer};
use cull_index::Searcher;
use cull_match::Matcher;
use cull_model::{Feedback, Scope};
use cull_quality::{draft_toml, suggest, QualityConfig, SortBy, Store, SuggestOptions, Suggestions};
use serde::Serialize;
use time::OffsetDateTime;

use crate::api::{error, json, query_pairs};
use crate::auth::{self, Caller, Guard, Role, Tokens};

/// Dispositions one request may hold.
const MAX_FEEDBACK_RECORDS: usize = 1_000;

/// Where dispositions go.
#[derive(Debug, Clone)]
pub struct FeedbackOutlet {
    /// The bus's producer.
    pub producer: Producer,
    /// The feedback topic.
    pub topic: String,
}

/// What the routes share.
#[derive(Debug, Clone)]
pub struct QualityApi {
    /// Where `POST /api/feedback` sends; no route without it.
    pub feedback: Option<FeedbackOutlet>,
    /// The quality stage's settings (its store's directory); no stats routes without.
    pub quality: Option<QualityConfig>,
    /// The analyst index, for the suggestions' backtests.
    pub searcher: Option<Arc<Searcher>>,
    /// The rules in use.
    pub matcher: Arc<Matcher>,
}

/// Returns the routes `api` can serve, open to `tokens` of the analyst role or higher.
pub fn router(api: QualityApi, tokens: Arc<Tokens>) -> Router {
    if api.feedback.is_none() && api.quality.is_none() {
        // axum refuses a layer on a router without routes.
        return Router::new();
    }
    let mut routes = Router::new();
    if api.feedback.is_some() {
        routes = routes.route("/api/feedback", post(feedback));
    }
    if api.quality.is_some() {
        routes = routes.route("/api/rules/stats", get(stats));
        if api.searcher.is_some() {
            routes = routes.route("/api/rules/{id}/suggestions", get(suggestions));
        }
    }
    routes
        .route_layer(from_fn_with_state(Guard::new(tokens, Role::Analyst), auth::require))
        .layer(DefaultBodyLimit::max(crate::api::MAX_BODY_BYTES))
        .with_state(api)
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
}

/// `POST /api/feedback`.
async fn feedback(
    State(api): State<QualityApi>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let Some(outlet) = api.feedback else { return error(StatusCode::NOT_FOUND, "no feedback topic".into()) };
    let records = match read_feedback(&body, &caller.scope) {
        Ok(records) => records,
        Err((status, message)) => return error(status, message),
    };
    let messages: Vec<Message> = records
        .iter()
        .map(|record| Message {
            key: Some(record.ticket_id.as_bytes().to_vec()),
            payload: serde_json::to_vec(record).expect("a disposition always serializes"),
            headers: Vec::new(),
        })
        .collect();
    let accepted = messages.len();
    match outlet.producer.send_all(&outlet.topic, messages).await {
        Ok(()) => {
            tracing::info!(caller = %caller.name, accepted, "dispositions accepted");
            json(StatusCode::ACCEPTED, &Accepted { accepted })
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the bus did not acknowledge the dispositions ({e}); send them again (a repeat is harmless)"
            ),
        ),
    }
}

/// Reads and checks a body of one disposition or an array of them for a caller of
/// `scope`.
fn read_feedback(body: &[u8], scope: &Scope) -> Result<Vec<Feedback>, (StatusCode, String)> {
    let bad = |message: String| (StatusCode::BAD_REQUEST, message);
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body is not JSON: line {}, column {}: {e}", e.line(), e.column())))?;
    let (items, single) = match value {
        serde_json::Value::Array(items) => (items, false),
        other => (vec![other], true),
    };
    if items.is_empty() || items.len() > MAX_FEEDBACK_RECORDS {
        return Err(bad(format!("send 1 to {MAX_FEEDBACK_RECORDS} dispositions, not {}", items.len())));
    }
    let mut records = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = if single { String::new() } else { format!("[{i}]: ") };
        let bytes = serde_json::to_vec(&item).expect("a JSON value always serializes");
        let mut record = Feedback::from_json(&bytes).map_err(|e| bad(format!("{at}{e}")))?;
        if let Scope::Client(own) = scope {
            match record.client.as_deref() {
                None => record.client = Some(own.clone()),
                Some(named) if named == own => {}
                Some(named) => {
                    return Err((
                        StatusCode::FORBIDDEN,
                        format!(
                        "{at}this token is client {own:?}'s and cannot dispose of client {named:?}'s tickets"
                    ),
                    ))
                }
            }
        }
        records.push(record);
    }
    Ok(records)
}

fn today() -> i64 {
    cull_quality::day_of(OffsetDateTime::now_utc().unix_timestamp())
}

/// `GET /api/rules/stats`.
async fn stats(
    State(api): State<QualityApi>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = match query_pairs(raw.as_deref(), &["sort"]) {
        Ok(pairs) => pairs,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let mut sort = SortBy::Precision;
    for (_, value) in pairs {
        match SortBy::parse(&value) {
            Some(by) => sort = by,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("sort={value:?}: expected {}", SortBy::NAMES.join(", ")),
                )
            }
        }
    }
    let config = api.quality.expect("the route exists only with a store");
    let rules = api.matcher.current();
    let work = move || {
        let store = Store::read(&config.dir)?;
        let known: Vec<(Option<&str>, &str)> = rules.rule_refs().map(|r| (r.client, r.id)).collect();
        Ok::<_, cull_quality::QualityError>(store.report(&caller.scope, &config, today(), known, sort))
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(reports)) => json(StatusCode::OK, &serde_json::json!({ "rules": reports })),
        Ok(Err(e @ cull_quality::QualityError::Missing { .. })) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the stats task failed: {e}")),
    }
}

/// The suggestions for a rule with the draft of its file.
#[derive(Serialize)]
struct SuggestionsBody {
    #[serde(flatten)]
    suggestions: Suggestions,
    /// The rule file with the safe suggestions applied; absent when none is safe.
    draft: Option<String>,
}

/// `GET /api/rules/{id}/suggestions`.
async fn suggestions(
    State(api): State<QualityApi>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = match query_pairs(raw.as_deref(), &["client", "max"]) {
        Ok(pairs) => pairs,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let mut client = caller.scope.client().map(str::to_string);
    let mut options = SuggestOptions::default();
    for (key, value) in pairs {
        match key.as_str() {
            "client" if caller.scope.admits(Some(&value)) => client = Some(value),
            "client" => {
                return error(StatusCode::FORBIDDEN, format!("client={value:?}: not this token's client"))
            }
            _ => match value.parse() {
                Ok(max) => options.max = max,
                Err(_) => return error(StatusCode::BAD_REQUEST, format!("max={value:?}: expected a number")),
            },
        }
    }
    let (config, searcher) = (api.quality.expect("with a store"), api.searcher.expect("with an index"));
    let rules = api.matcher.current();
    let Some(rule) =
        rules.rule(client.as_deref(), &id).filter(|r| caller.scope.admits_rule(r.rule.client.as_deref()))
    else {
        return error(StatusCode::NOT_FOUND, format!("no rule {id:?} this token may see"));
    };
    // A client named narrows the mentions to that client's, as `cull rules suggest
    // --client` does (the caller's scope admits it, checked above).
    let scope = client.map_or(caller.scope, Scope::Client);
    let work = move || {
        let store = Store::read(&config.dir)?;
        let found = suggest(&searcher, &scope, &store, &rule, &options)?;
        let picks = found.picks();
        let draft = (!picks.is_empty()).then(|| draft_toml(&rule.rule, &picks));
        Ok::<_, cull_quality::QualityError>(SuggestionsBody { suggestions: found, draft })
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(body)) => json(StatusCode::OK, &body),
        Ok(Err(e @ cull_quality::QualityError::Missing { .. })) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the suggestions task failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_with_none_of_the_routes_serves_none() {
        let matcher = Arc::new(Matcher::new(cull_match::RuleSet::new(Vec::new()).unwrap()));
        let api = QualityApi { feedback: None, quality: None, searcher: None, matcher };
        let tokens = Arc::new(Tokens::load(None, Some("analyst@*:a-token-0123456789")).unwrap());
        let _ = router(api, tokens);
    }

    #[test]
    fn a_body_is_taken_whole_or_refused_naming_the_bad_record() {
        let good = r#"{"schema":"cull.feedback/v1","ticket_id":"t1","disposition":"resolved","at":"2026-12-07T10:00:00Z"}"#;
        let records = read_feedback(good.as_bytes(), &Scope::Client("acme".into())).unwrap();
        assert_eq!(records[0].client.as_deref(), Some("acme"), "a client's token names its client");
        let staff = read_feedback(good.as_bytes(), &Scope::All).unwrap();
        assert_eq!(staff[0].client, None, "staff dispose of the contact center's own");
        let bad = r#"{"schema":"cull.feedback/v1","ticket_id":"t2","disposition":"spam","at":"2026-12-07T10:00:00Z"}"#;
        let (status, message) = read_feedback(format!("[{good},{bad}]").as_bytes(), &Scope::All).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.starts_with("[1]: malformed JSON") && message.contains("spam"), "{message}");
        let foreign = good.replace("\"at\"", "\"client\":\"globex\",\"at\"");
        let (status, message) = read_feedback(foreign.as_bytes(), &Scope::Client("acme".into())).unwrap_err();
        assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
        for body in ["[]", "nope"] {
            assert_eq!(read_feedback(body.as_bytes(), &Scope::All).unwrap_err().0, StatusCode::BAD_REQUEST);
        }
    }
}
