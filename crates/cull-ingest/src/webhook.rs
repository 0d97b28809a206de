//! The webhook receiver: `POST /ingest/{source}` for listening tools that push.
//!
//! A request is answered `202` only after the bus acknowledged every mention it
//! carried, so a `2xx` is a promise the client may rely on to drop its copy; anything
//! short of that is an error status the client retries on (`429`, `503`) or gives up
//! on (`4xx`), and invalid input is kept on the dead-letter topic rather than lost.
//!
//! A source pushing faster than the bus takes records would otherwise pile up
//! requests, each holding its body, in memory. Each source therefore has a budget of
//! mentions in flight to the bus; a request that does not fit is refused with `429`
//! and `Retry-After` at once, so the pressure travels back to the sender instead.
//!
//! A body that does not arrive before the server's deadline (the binary's
//! `http.body_read_timeout_secs`) is answered `408`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use cull_bus::dead_letter::Reason;
use cull_model::{check_claim, Channel, Mention, ModelError, MENTION_SCHEMA};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::normalize::{Draft, Markup};
use crate::outlet::{Entered, Outlet};

/// How one webhook source is received.
#[derive(Clone, PartialEq)]
pub struct WebhookConfig {
    /// The source name: the path segment of `/ingest/{name}` and the mentions' source.
    pub name: String,
    /// The HMAC-SHA256 key requests must be signed with; `None` accepts unsigned
    /// requests (for a sender inside a trusted network). The binary resolves it from
    /// an environment variable so that it stays out of configuration files.
    pub secret: Option<String>,
    /// The header carrying `hex(HMAC-SHA256(secret, "{timestamp}.{body}"))`, with or
    /// without a `sha256=` prefix.
    pub signature_header: String,
    /// The header carrying the unix time in seconds at which the request was signed.
    pub timestamp_header: String,
    /// How far the signed timestamp may be from now, either way: a captured request
    /// cannot be replayed later than this (and a replay within it carries the same
    /// ids, so the duplicate screen drops it).
    pub replay_window: Duration,
    /// The largest body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Mentions of this source in flight to the bus at most; beyond it requests are
    /// answered `429`. A single request with more mentions than this is answered `413`.
    pub max_pending: usize,
    /// What `Retry-After` says on a `429` or `503` (rounded up to whole seconds).
    pub retry_after: Duration,
    /// How to read another tool's payload; `None` expects `cull.mention/v1` mentions.
    pub mapping: Option<FieldMapping>,
    /// The channel of mentions that do not name one.
    pub channel: Option<Channel>,
    /// Whether the mentions' title and text are plain text or HTML.
    pub markup: Markup,
    /// The client the source belongs to: its mentions are that client's, and an item
    /// naming another client is refused.
    pub client: Option<String>,
}

impl WebhookConfig {
    /// Returns the configuration of an unsigned source called `name` with the defaults
    /// of [`WebhookSource`](crate::WebhookSource) and `Retry-After: 1`.
    pub fn new(name: impl Into<String>) -> WebhookConfig {
        crate::WebhookSource::new(name).receiver_config(None).expect("no mapping, nothing to refuse")
    }
}

/// Written by hand so that the secret never reaches a log line.
impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("signature_header", &self.signature_header)
            .field("timestamp_header", &self.timestamp_header)
            .field("replay_window", &self.replay_window)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_pending", &self.max_pending)
            .field("retry_after", &self.retry_after)
            .field("mapping", &self.mapping)
            .field("channel", &self.channel)
            .finish()
    }
}

/// The mention fields a [`FieldMapping`] can fill, besides `meta.<name>`.
const MAPPED_FIELDS: [&str; 9] =
    ["external_id", "url", "author", "title", "text", "lang", "published_at", "channel", "client"];

/// Where the mention fields are in another tool's payload: one RFC 6901 JSON pointer
/// per field (`/data/user/name`), so that a tool can push its own format unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMapping {
    /// Pointers by field name, for the fields of [`MAPPED_FIELDS`] other than `text`.
    fields: BTreeMap<String, String>,
    text: String,
    meta: BTreeMap<String, String>,
}

/// Why a field mapping cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A key names no mention field.
    #[error(
        "unknown mapping key `{key}`: expected one of external_id, url, author, title, text, lang, \
         published_at, channel, client or meta.<name>"
    )]
    UnknownKey {
        /// The key as configured.
        key: String,
    },
    /// A value is not a JSON pointer.
    #[error("the mapping of `{key}` is {pointer:?}, not a JSON pointer: it must start with `/`")]
    BadPointer {
        /// The key as configured.
        key: String,
        /// The value as configured.
        pointer: String,
    },
    /// Every mention has a text, so the mapping must say where it is.
    #[error("the mapping has no `text` key; every mention needs a text")]
    MissingText,
}

impl FieldMapping {
    /// Returns the mapping of `pointers`, whose keys are mention fields (`text`, `url`,
    /// ...) or `meta.<name>` and whose values are JSON pointers into the payload.
    pub fn new(pointers: BTreeMap<String, String>) -> Result<FieldMapping, MappingError> {
        let mut fields = BTreeMap::new();
        let mut meta = BTreeMap::new();
        for (key, pointer) in pointers {
            if !pointer.starts_with('/') {
                return Err(MappingError::BadPointer { key, pointer });
            }
            match key.strip_prefix("meta.") {
                Some(name) if !name.is_empty() => {
                    meta.insert(name.to_string(), pointer);
                }
                None if MAPPED_FIELDS.contains(&key.as_str()) => {
                    fields.insert(key, pointer);
                }
                _ => return Err(MappingError::UnknownKey { key }),
            }
        }
        let text = fields.remove("text").ok_or(MappingError::MissingText)?;
        Ok(FieldMapping { fields, text, meta })
    }

    /// Returns the draft of one payload item, its title and text read as `markup`.
    fn draft(&self, source: &str, item: &Value, markup: Markup) -> Result<Draft, ItemError> {
        let field = |name: &'static str| match self.fields.get(name) {
            Some(pointer) => scalar(name, pointer, item),
            None => Ok(None),
        };
        let text = scalar("text", &self.text, item)?
            .ok_or_else(|| ItemError::MissingText { pointer: self.text.clone() })?;
        let channel = match self.fields.get("channel") {
            Some(pointer) => match scalar("channel", pointer, item)? {
                Some(name) => Some(
                    Channel::parse(&name.to_ascii_lowercase())
                        .ok_or_else(|| ItemError::BadChannel { pointer: pointer.clone(), value: name })?,
                ),
                None => None,
            },
            None => None,
        };
        let mut meta = BTreeMap::new();
        for (name, pointer) in &self.meta {
            if let Some(value) = scalar(name, pointer, item)? {
                meta.insert(name.clone(), value);
            }
        }
        Ok(Draft {
            source: source.to_string(),
            id: None,
            external_id: field("external_id")?,
            client: field("client")?,
            channel,
            url: field("url")?,
            author: field("author")?,
            title: field("title")?,
            text,
            lang: field("lang")?,
            published_at: field("published_at")?,
            fetched_at: None,
            meta,
            markup,
        })
    }
}

/// Returns the value at `pointer` as a string: numbers and booleans (a follower
/// count, a verified flag) are written out, a missing value or `null` is `None`.
fn scalar(field: &str, pointer: &str, item: &Value) -> Result<Option<String>, ItemError> {
    match item.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(ItemError::NotScalar {
            field: field.to_string(),
            pointer: pointer.to_string(),
            kind: kind(other),
        }),
    }
}

/// Returns the JSON type of `value`, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Why one item of a request cannot become a mention.
#[derive(Debug, thiserror::Error)]
enum ItemError {
    #[error("the item is a JSON {0}, not an object")]
    NotObject(&'static str),
    #[error("not a {MENTION_SCHEMA} mention: {0}")]
    Shape(serde_json::Error),
    #[error(transparent)]
    Model(ModelError),
    #[error("no text at {pointer}")]
    MissingText { pointer: String },
    #[error("`{field}` at {pointer} is a JSON {kind}, not a string, number or boolean")]
    NotScalar { field: String, pointer: String, kind: &'static str },
    #[error("`channel` at {pointer} is {value:?}, not one of twitter, facebook, blog, news, forum, review, email, other")]
    BadChannel { pointer: String, value: String },
}

impl ItemError {
    fn reason(&self) -> Reason {
        match self {
            ItemError::Model(error) => Reason::from(error),
            _ => Reason::Schema,
        }
    }
}

/// Why a body was refused as input: it goes to the dead-letter topic.
#[derive(Debug)]
struct Invalid {
    reason: Reason,
    error: String,
    items: Vec<(usize, ItemError)>,
}

impl Invalid {
    fn whole(error: ModelError) -> Invalid {
        Invalid { reason: Reason::from(&error), error: error.to_string(), items: Vec::new() }
    }

    fn body(&self) -> Value {
        let items: Vec<Value> = self
            .items
            .iter()
            .map(|(index, error)| json!({"index": index, "error": error.to_string()}))
            .collect();
        json!({"error": self.error, "items": items})
    }
}

/// Returns the drafts of a request body for the source `config`, or why the body is
/// refused (its every invalid item, in words): what `POST /ingest/{source}` does with
/// a body once it is authenticated, for tools and the fuzzer.
pub fn parse_request_body(config: &WebhookConfig, bytes: &[u8]) -> Result<Vec<Draft>, String> {
    parse_body(config, bytes).map_err(|invalid| invalid.body().to_string())
}

/// Returns the drafts of a body holding one object or an array of objects, or why it
/// is refused: every item must be valid, so that a request is taken whole or not at all
/// and the client's retry cannot duplicate half of it.
fn parse_body(config: &WebhookConfig, bytes: &[u8]) -> Result<Vec<Draft>, Invalid> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Invalid::whole(ModelError::InvalidUtf8 { offset: e.valid_up_to() }))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Invalid::whole(ModelError::Json { line: e.line(), column: e.column(), message: e.to_string() })
    })?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(_) => vec![value],
        other => {
            return Err(Invalid {
                reason: Reason::Schema,
                error: format!("the body is a JSON {}, not an object or an array of objects", kind(&other)),
                items: Vec::new(),
            })
        }
    };
    let total = items.len();
    let mut drafts = Vec::with_capacity(total);
    let mut failed = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match draft(config, item) {
            Ok(draft) => drafts.push(draft),
            Err(error) => failed.push((index, error)),
        }
    }
    match failed.first() {
        None => Ok(drafts),
        Some((index, first)) => Err(Invalid {
            reason: first.reason(),
            error: format!(
                "{} of {total} items are invalid, the first (item {index}): {first}",
                failed.len()
            ),
            items: failed,
        }),
    }
}

/// Returns the draft of one item, read through the source's mapping or as a mention.
fn draft(config: &WebhookConfig, item: Value) -> Result<Draft, ItemError> {
    if !item.is_object() {
        return Err(ItemError::NotObject(kind(&item)));
    }
    let mut draft = match &config.mapping {
        Some(mapping) => mapping.draft(&config.name, &item, config.markup)?,
        None => {
            let mention: Mention = serde_json::from_value(item).map_err(ItemError::Shape)?;
            if mention.schema != MENTION_SCHEMA {
                return Err(ItemError::Model(ModelError::Schema {
                    found: mention.schema,
                    expected: MENTION_SCHEMA,
                }));
            }
            if mention.id.is_empty() {
                return Err(ItemError::Model(ModelError::EmptyField { field: "id" }));
            }
            Draft::from_mention(&config.name, mention, config.markup)
        }
    };
    check_claim(draft.client.as_deref(), config.client.as_deref()).map_err(ItemError::Model)?;
    draft.channel = draft.channel.or(config.channel);
    Ok(draft)
}

/// A response: a status and a JSON body, and for the statuses a client should retry
/// on, when to.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
}

impl Answer {
    fn error(status: StatusCode, error: impl fmt::Display) -> Answer {
        Answer { status, body: json!({"error": error.to_string()}), retry_after: None }
    }

    fn retry(status: StatusCode, error: impl fmt::Display, after: Duration) -> Answer {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        Answer { retry_after: Some(seconds.max(1)), ..Answer::error(status, error) }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/json")], self.body.to_string())
            .into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// One configured source and its budget of mentions in flight.
#[derive(Debug)]
struct Source {
    config: WebhookConfig,
    pending: Arc<Semaphore>,
}

#[derive(Debug)]
struct Shared {
    sources: HashMap<String, Source>,
    outlet: Outlet,
}

/// Returns the router serving `POST /ingest/{source}` for each of `sources`, delivering
/// to `outlet`. A name configured twice keeps its first configuration (and says so in
/// the log): the configuration loader is where duplicates should be refused.
pub fn router(sources: Vec<WebhookConfig>, outlet: Outlet) -> Router {
    let mut by_name = HashMap::new();
    for config in sources {
        if by_name.contains_key(&config.name) {
            tracing::error!(source = %config.name, "webhook source configured twice; keeping the first");
            continue;
        }
        let permits = config.max_pending.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let source = Source { pending: Arc::new(Semaphore::new(permits)), config };
        by_name.insert(source.config.name.clone(), source);
    }
    let shared = Arc::new(Shared { sources: by_name, outlet });
    Router::new().route("/ingest/{source}", post(ingest)).with_state(shared)
}

async fn ingest(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let name = path.map(|Path(name)| name).unwrap_or_default();
    let Some(source) = shared.sources.get(&name) else {
        // Not counted: the name is the caller's, and would make an unbounded metric label.
        tracing::warn!(source = %name, "webhook request for an unknown source");
        return Answer::error(StatusCode::NOT_FOUND, format!("no webhook source is called {name:?}"))
            .into_response();
    };
    let answer = match shared.outlet.enter() {
        Some(entered) => {
            receive(&shared.outlet, source, &headers, body, entered).await.unwrap_or_else(|refused| refused)
        }
        None => Answer::retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "cull is shutting down and takes no more mentions; retry later (another instance, or this one after its restart)",
            source.config.retry_after,
        ),
    };
    shared.outlet.observer().webhook_answered(&source.config.name, answer.status.as_u16());
    answer.into_response()
}

/// Checks, reads, parses and delivers one request; `Err` is a refusal. `entered`
/// lasts until the delivery is over, so that a graceful shutdown waits for it.
async fn receive(
    outlet: &Outlet,
    source: &Source,
    headers: &HeaderMap,
    body: Body,
    entered: Entered,
) -> Result<Answer, Answer> {
    let config = &source.config;
    // The timestamp is checked before the body is read, which a stale request then
    // does not cost.
    let timestamp = match &config.secret {
        Some(_) => Some(timestamp(config, headers).map_err(|e| refuse(config, StatusCode::UNAUTHORIZED, e))?),
        None => None,
    };
    let too_large = || {
        let error = format!("the body is over the limit of {} bytes", config.max_body_bytes);
        refuse(config, StatusCode::PAYLOAD_TOO_LARGE, error)
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > config.max_body_bytes as u64) {
        return Err(too_large());
    }
    let bytes = match read_body(body, config.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => return Err(too_large()),
        Err(BodyError::Read(error)) if timed_out(&error) => {
            return Err(refuse(config, StatusCode::REQUEST_TIMEOUT, error));
        }
        Err(BodyError::Read(error)) => {
            let error = format!("cannot read the request body: {error}");
            return Err(refuse(config, StatusCode::BAD_REQUEST, error));
        }
    };
    if let (Some(secret), Some(timestamp)) = (&config.secret, timestamp) {
        verify(secret, config, headers, timestamp, &bytes)
            .map_err(|e| refuse(config, StatusCode::UNAUTHORIZED, e))?;
    }
    let drafts = match parse_body(config, &bytes) {
        Ok(drafts) => drafts,
        Err(invalid) => return Err(dead_letter(outlet, source, invalid, bytes, entered).await),
    };
    let count = drafts.len();
    if count > config.max_pending {
        let error = format!("{count} mentions in one request, over the limit of {}", config.max_pending);
        return Err(refuse(config, StatusCode::PAYLOAD_TOO_LARGE, error));
    }
    let permits = reserve(source, count)?;
    let (outlet, name) = (outlet.for_client(config.client.clone()), config.name.clone());
    // Spawned so that a client hanging up cannot cancel the delivery halfway: the
    // screen would remember mentions the bus never got and drop the client's retry.
    let delivery = tokio::spawn(async move {
        let delivered = outlet.deliver(&name, drafts).await;
        drop((permits, entered));
        delivered
    });
    match delivery.await {
        Ok(Ok(delivered)) => Ok(Answer {
            status: StatusCode::ACCEPTED,
            body: json!({
                "accepted": delivered.ids.len(),
                "duplicates": delivered.duplicates,
                "near_duplicates": delivered.near_duplicates,
                "ids": delivered.ids,
            }),
            retry_after: None,
        }),
        Ok(Err(error)) => {
            tracing::error!(source = %config.name, %error, "webhook mentions not handed to the bus");
            let error =
                format!("the bus did not take the mentions: {error}; nothing was accepted, retry later");
            Err(Answer::retry(StatusCode::SERVICE_UNAVAILABLE, error, config.retry_after))
        }
        Err(error) => {
            tracing::error!(source = %config.name, %error, "webhook delivery task failed");
            Err(Answer::error(StatusCode::INTERNAL_SERVER_ERROR, "the delivery failed"))
        }
    }
}

/// Takes `count` of the source's permits, or answers `429`.
fn reserve(source: &Source, count: usize) -> Result<OwnedSemaphorePermit, Answer> {
    let config = &source.config;
    u32::try_from(count)
        .ok()
        .and_then(|n| Arc::clone(&source.pending).try_acquire_many_owned(n).ok())
        .ok_or_else(|| {
            tracing::warn!(source = %config.name, count, "webhook refused: the bus is pushing back");
            let error =
                format!("too many mentions of source {} are waiting for the bus; retry later", config.name);
            Answer::retry(StatusCode::TOO_MANY_REQUESTS, error, config.retry_after)
        })
}

/// Refuses a request that is not the source's input (unsigned, stale, too large): it
/// is logged, not dead-lettered.
fn refuse(config: &WebhookConfig, status: StatusCode, error: impl fmt::Display) -> Answer {
    tracing::warn!(source = %config.name, status = status.as_u16(), %error, "webhook request refused");
    Answer::error(status, error)
}

/// Sends an invalid body to the dead-letter topic once and answers `400`, or `503` if
/// the bus would not take it, since the client then still holds the only copy.
async fn dead_letter(
    outlet: &Outlet,
    source: &Source,
    invalid: Invalid,
    bytes: Vec<u8>,
    entered: Entered,
) -> Answer {
    let config = &source.config;
    // A dead letter is a handoff to the bus too, bounded by the same budget.
    let permit = match reserve(source, 1) {
        Ok(permit) => permit,
        Err(answer) => return answer,
    };
    let (outlet, name, reason, error) =
        (outlet.clone(), config.name.clone(), invalid.reason, invalid.error.clone());
    // A spawned task runs to the end even when the client hangs up.
    let rejected = tokio::spawn(async move {
        let location = format!("webhook:{name}");
        let rejected = outlet.reject(&name, reason, &error, location, bytes).await;
        drop((permit, entered));
        rejected
    });
    match rejected.await {
        Ok(Ok(())) => Answer { status: StatusCode::BAD_REQUEST, body: invalid.body(), retry_after: None },
        Ok(Err(error)) => {
            tracing::error!(source = %config.name, %error, "invalid webhook body not dead-lettered");
            let error = format!(
                "{}; and its dead letter was not taken by the bus: {error}; retry later",
                invalid.error
            );
            Answer::retry(StatusCode::SERVICE_UNAVAILABLE, error, config.retry_after)
        }
        Err(error) => {
            tracing::error!(source = %config.name, %error, "webhook dead-letter task failed");
            Answer::error(StatusCode::INTERNAL_SERVER_ERROR, "the dead letter failed")
        }
    }
}

/// Returns the signed timestamp header if it is within the replay window of now.
fn timestamp<'h>(config: &WebhookConfig, headers: &'h HeaderMap) -> Result<&'h str, String> {
    let name = &config.timestamp_header;
    let value = headers
        .get(name.as_str())
        .ok_or_else(|| format!("missing {name} header; signed requests must carry their unix time"))?;
    let not_seconds = || format!("the {name} header is not unix time in seconds");
    let text = value.to_str().map_err(|_| not_seconds())?;
    let seconds = text.parse::<i64>().map_err(|_| not_seconds())?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let window = config.replay_window.as_secs();
    if now.abs_diff(seconds) > window {
        return Err(format!(
            "the {name} header {seconds} is outside the replay window of {window} s around now ({now})"
        ));
    }
    Ok(text)
}

/// Checks the signature header against `HMAC-SHA256(secret, "{timestamp}.{body}")`, in
/// constant time so that the comparison leaks nothing about the expected value.
fn verify(
    secret: &str,
    config: &WebhookConfig,
    headers: &HeaderMap,
    timestamp: &str,
    body: &[u8],
) -> Result<(), String> {
    let name = &config.signature_header;
    let value = headers.get(name.as_str()).ok_or_else(|| format!("missing {name} header"))?;
    let hex_value = value.to_str().map_err(|_| format!("the {name} header is not text"))?;
    let hex_value = hex_value.strip_prefix("sha256=").unwrap_or(hex_value);
    let signature = hex::decode(hex_value).map_err(|_| format!("the {name} header is not hex"))?;
    // HMAC takes keys of any length, so this never fails.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| "the source's secret cannot key HMAC-SHA256".to_string())?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&signature).map_err(|_| format!("the {name} header does not match the body"))
}

#[derive(Debug)]
enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Returns whether a body failed because it did not arrive in time: the server gives
/// each body a deadline, and fails it with [`std::io::ErrorKind::TimedOut`].
fn timed_out(error: &axum::Error) -> bool {
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        if error.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Reads the body, giving up as soon as it exceeds `limit`, so a chunked body without a
/// length cannot make the receiver hold more than that.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else { continue };
        if bytes.len() + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use cull_bus::dead_letter::LOCATION_HEADER;
    use cull_bus::{EmbeddedBus, Record};

    use super::*;
    use crate::normalize::{Screen, ScreenConfig};
    use crate::outlet::Observer;

    const MENTIONS: &str = "cull.mentions";
    const DEAD_LETTERS: &str = "cull.dead-letters";
    const SECRET: &str = "s3cret";

    #[derive(Debug, Default)]
    struct Recorder {
        answered: Mutex<Vec<(String, u16)>>,
        dead_letters: Mutex<Vec<(String, Reason)>>,
    }

    impl Observer for Recorder {
        fn delivered(&self, _: &str, _: u64) {}
        fn duplicates(&self, _: &str, _: u64) {}
        fn near_duplicates(&self, _: &str, _: u64) {}
        fn dead_letters(&self, source: &str, reason: Reason, count: u64) {
            for _ in 0..count {
                self.dead_letters.lock().unwrap().push((source.to_string(), reason));
            }
        }
        fn feed_polled(&self, _: &str, _: &'static str) {}
        fn webhook_answered(&self, source: &str, status: u16) {
            self.answered.lock().unwrap().push((source.to_string(), status));
        }
    }

    impl Recorder {
        fn statuses(&self) -> Vec<u16> {
            self.answered.lock().unwrap().iter().map(|(_, status)| *status).collect()
        }
    }

    struct Server {
        base: String,
        observer: Arc<Recorder>,
        client: reqwest::Client,
        outlet: Outlet,
    }

    async fn serve(bus: &EmbeddedBus, sources: Vec<WebhookConfig>) -> Server {
        let observer = Arc::new(Recorder::default());
        let screen = Arc::new(Mutex::new(Screen::new(ScreenConfig::default())));
        let outlet = Outlet::new(
            bus.producer(),
            MENTIONS,
            DEAD_LETTERS,
            screen,
            Arc::clone(&observer) as Arc<dyn Observer>,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = router(sources, outlet.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Server { base: format!("http://{address}"), observer, client, outlet }
    }

    impl Server {
        async fn post(&self, source: &str, headers: &[(&str, String)], body: &[u8]) -> reqwest::Response {
            let mut request = self.client.post(format!("{}/ingest/{source}", self.base)).body(body.to_vec());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            request.send().await.unwrap()
        }

        /// Posts `body` signed now with [`SECRET`].
        async fn post_signed(&self, source: &str, body: &[u8]) -> reqwest::Response {
            let timestamp = now().to_string();
            let signature = format!("sha256={}", sign(SECRET, &timestamp, body));
            self.post(source, &signed_headers(timestamp, signature), body).await
        }
    }

    fn signed(name: &str) -> WebhookConfig {
        WebhookConfig { secret: Some(SECRET.to_string()), ..WebhookConfig::new(name) }
    }

    fn signed_headers(timestamp: String, signature: String) -> Vec<(&'static str, String)> {
        vec![("x-cull-timestamp", timestamp), ("x-cull-signature", signature)]
    }

    fn now() -> i64 {
        OffsetDateTime::now_utc().unix_timestamp()
    }

    fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    async fn answer(response: reqwest::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
    }

    /// Returns everything queued on `topic`.
    async fn drain(bus: &EmbeddedBus, topic: &str) -> Vec<Record> {
        let mut consumer = bus.consumer(&[topic], "drain").unwrap();
        let mut records = Vec::new();
        loop {
            let batch = consumer
                .next_batch(100, Duration::from_millis(10), Duration::from_millis(100))
                .await
                .unwrap()
                .unwrap_or_default();
            if batch.is_empty() {
                consumer.commit().await.unwrap();
                return records;
            }
            records.extend(batch);
        }
    }

    fn mention(id: &str, text: &str) -> Value {
        json!({"schema": MENTION_SCHEMA, "id": id, "text": text})
    }

    fn keys(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap()).collect()
    }

    #[tokio::test]
    async fn signed_mentions_are_accepted_once_on_the_bus() {
        let bus = EmbeddedBus::in_memory(100);
        let server =
            serve(&bus, vec![WebhookConfig { channel: Some(Channel::Review), ..signed("hooks") }]).await;

        let body = mention("m-1", "Write a <script> to call the Slack API, if a<b and b>c").to_string();
        let (status, reply) = answer(server.post_signed("hooks", body.as_bytes()).await).await;
        assert_eq!(status, 202, "{reply}");
        assert_eq!(reply["accepted"], 1);
        assert_eq!(reply["ids"], json!(["m-1"]));
        let records = drain(&bus, MENTIONS).await;
        assert_eq!(keys(&records), ["m-1"]);
        let on_bus = Mention::from_json(&records[0].payload).unwrap();
        assert_eq!(
            on_bus.text, "Write a <script> to call the Slack API, if a<b and b>c",
            "plain text is kept"
        );
        assert_eq!(on_bus.source.as_deref(), Some("hooks"));
        assert_eq!(on_bus.channel, Some(Channel::Review));

        // An array, signed without the `sha256=` prefix.
        let body = json!([mention("m-2", "first"), mention("m-3", "second")]).to_string();
        let timestamp = now().to_string();
        let signature = sign(SECRET, &timestamp, body.as_bytes());
        let response = server.post("hooks", &signed_headers(timestamp, signature), body.as_bytes()).await;
        let (status, reply) = answer(response).await;
        assert_eq!(status, 202, "{reply}");
        assert_eq!(reply["ids"], json!(["m-2", "m-3"]));
        assert_eq!(keys(&drain(&bus, MENTIONS).await), ["m-2", "m-3"]);
        assert_eq!(server.observer.statuses(), [202, 202]);
    }

    #[tokio::test]
    async fn forged_unsigned_and_stale_requests_get_401_and_reach_no_topic() {
        let bus = EmbeddedBus::in_memory(100);
        let server = serve(&bus, vec![signed("hooks")]).await;
        let body = mention("m-1", "hello").to_string();
        let body = body.as_bytes();
        let fresh = now().to_string();

        let forged = sign("not the secret", &fresh, body);
        let (status, reply) =
            answer(server.post("hooks", &signed_headers(fresh.clone(), forged), body).await).await;
        assert_eq!(status, 401);
        assert!(reply["error"].as_str().unwrap().contains("does not match"), "{reply}");

        let other_body = sign(SECRET, &fresh, b"{}");
        let response = server.post("hooks", &signed_headers(fresh.clone(), other_body), body).await;
        assert_eq!(response.status(), 401);

        let response = server.post("hooks", &[("x-cull-timestamp", fresh.clone())], body).await;
        let (status, reply) = answer(response).await;
        assert_eq!(status, 401);
        assert!(reply["error"].as_str().unwrap().contains("missing x-cull-signature"), "{reply}");

        let response = server.post("hooks", &[("x-cull-signature", sign(SECRET, &fresh, body))], body).await;
        assert_eq!(response.status(), 401);

        for stale in [now() - 301, now() + 301] {
            let stale = stale.to_string();
            let signature = sign(SECRET, &stale, body);
            let (status, reply) =
                answer(server.post("hooks", &signed_headers(stale, signature), body).await).await;
            assert_eq!(status, 401);
            assert!(reply["error"].as_str().unwrap().contains("replay window"), "{reply}");
        }

        assert!(drain(&bus, MENTIONS).await.is_empty());
        assert!(drain(&bus, DEAD_LETTERS).await.is_empty());
        assert!(server.observer.dead_letters.lock().unwrap().is_empty());
        assert_eq!(server.observer.statuses(), [401; 6]);
        // The same request signed properly goes through: the refusals were the signatures'.
        assert_eq!(server.post_signed("hooks", body).await.status(), 202);
    }

    #[tokio::test]
    async fn oversized_bodies_and_requests_get_413() {
        let bus = EmbeddedBus::in_memory(100);
        let config = WebhookConfig { max_body_bytes: 256, max_pending: 2, ..signed("hooks") };
        let server = serve(&bus, vec![config]).await;

        let big = mention("m-1", &"word ".repeat(100)).to_string();
        let (status, reply) = answer(server.post_signed("hooks", big.as_bytes()).await).await;
        assert_eq!(status, 413);
        assert!(reply["error"].as_str().unwrap().contains("256 bytes"), "{reply}");

        let three = json!([mention("a", "1"), mention("b", "2"), mention("c", "3")]).to_string();
        let (status, reply) = answer(server.post_signed("hooks", three.as_bytes()).await).await;
        assert_eq!(status, 413);
        assert!(reply["error"].as_str().unwrap().contains("3 mentions"), "{reply}");

        assert!(drain(&bus, MENTIONS).await.is_empty());
        assert!(drain(&bus, DEAD_LETTERS).await.is_empty());
        assert_eq!(server.observer.statuses(), [413, 413]);
    }

    #[tokio::test]
    async fn a_body_without_a_length_is_read_no_further_than_the_limit() {
        let read = read_body(Body::from(vec![b'x'; 300]), 256).await;
        assert!(matches!(read, Err(BodyError::TooLarge)), "{read:?}");
        assert_eq!(read_body(Body::from(vec![b'x'; 256]), 256).await.unwrap().len(), 256);
    }

    #[tokio::test]
    async fn invalid_bodies_get_400_and_one_dead_letter_with_their_bytes() {
        let bus = EmbeddedBus::in_memory(100);
        let server = serve(&bus, vec![WebhookConfig::new("raw")]).await;

        let malformed = br#"{"schema": "cull.mention/v1", "id": "#;
        let (status, reply) = answer(server.post("raw", &[], malformed).await).await;
        assert_eq!(status, 400);
        assert!(reply["error"].as_str().unwrap().contains("malformed JSON"), "{reply}");
        let letters = drain(&bus, DEAD_LETTERS).await;
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].payload, malformed);
        let location = letters[0].headers.iter().find(|(name, _)| name == LOCATION_HEADER).unwrap();
        assert_eq!(location.1, b"webhook:raw");

        // One bad item refuses the whole request.
        let body = json!([mention("ok", "fine"), {"schema": MENTION_SCHEMA, "id": "no-text"}, 7]).to_string();
        let (status, reply) = answer(server.post("raw", &[], body.as_bytes()).await).await;
        assert_eq!(status, 400);
        let items = reply["items"].as_array().unwrap();
        assert_eq!(items.iter().map(|i| i["index"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
        assert!(items[0]["error"].as_str().unwrap().contains("missing field `text`"), "{reply}");
        assert!(items[1]["error"].as_str().unwrap().contains("not an object"), "{reply}");
        assert_eq!(drain(&bus, DEAD_LETTERS).await.len(), 1);

        let (status, _) = answer(server.post("raw", &[], b"\xff\xfe").await).await;
        assert_eq!(status, 400);
        assert_eq!(drain(&bus, DEAD_LETTERS).await.len(), 1);

        assert!(drain(&bus, MENTIONS).await.is_empty());
        let reasons: Vec<Reason> =
            server.observer.dead_letters.lock().unwrap().iter().map(|(_, r)| *r).collect();
        assert_eq!(reasons, [Reason::MalformedJson, Reason::Schema, Reason::InvalidUtf8]);
        assert_eq!(server.observer.statuses(), [400, 400, 400]);
    }

    #[tokio::test]
    async fn a_clients_webhook_makes_its_mentions_that_clients_and_refuses_a_claim_of_another() {
        let bus = EmbeddedBus::in_memory(100);
        let acme = WebhookConfig { client: Some("acme".into()), ..WebhookConfig::new("acme-hook") };
        let mapped = WebhookConfig {
            client: Some("acme".into()),
            mapping: Some(
                FieldMapping::new(BTreeMap::from([
                    ("text".to_string(), "/body".to_string()),
                    ("client".to_string(), "/account".to_string()),
                ]))
                .unwrap(),
            ),
            ..WebhookConfig::new("acme-tool")
        };
        let server = serve(&bus, vec![acme, mapped, WebhookConfig::new("house")]).await;

        let body = json!([mention("m1", "acme is down"), {"schema": MENTION_SCHEMA, "id": "m2", "text": "x", "client": "acme"}]);
        let (status, reply) = answer(server.post("acme-hook", &[], body.to_string().as_bytes()).await).await;
        assert_eq!(status, 202, "{reply}");
        assert_eq!(reply["ids"], json!(["acme:m1", "acme:m2"]), "the sender's ids, under the client's name");
        let records = drain(&bus, MENTIONS).await;
        let clients: Vec<Option<String>> =
            records.iter().map(|r| Mention::from_json(&r.payload).unwrap().client).collect();
        assert_eq!(clients, [Some("acme".to_string()), Some("acme".to_string())]);

        for (source, body) in [
            (
                "acme-hook",
                json!([mention("m3", "fine"), {"schema": MENTION_SCHEMA, "id": "m4", "text": "x", "client": "globex"}]),
            ),
            ("acme-tool", json!({"body": "acme is down", "account": "globex"})),
            ("house", json!({"schema": MENTION_SCHEMA, "id": "m5", "text": "x", "client": "acme"})),
        ] {
            let (status, reply) = answer(server.post(source, &[], body.to_string().as_bytes()).await).await;
            assert_eq!(status, 400, "{source}: {reply}");
            assert!(reply["error"].as_str().unwrap().contains("but this source belongs to"), "{reply}");
            let letters = drain(&bus, DEAD_LETTERS).await;
            assert_eq!(letters.len(), 1, "{source}");
            assert_eq!(letters[0].payload, body.to_string().as_bytes(), "the request's bytes");
        }
        assert!(drain(&bus, MENTIONS).await.is_empty(), "a request with a claim is refused whole");
        let reasons: Vec<Reason> =
            server.observer.dead_letters.lock().unwrap().iter().map(|(_, r)| *r).collect();
        assert_eq!(reasons, [Reason::Client; 3]);
    }

    fn tool_mapping() -> FieldMapping {
        let pointers = [
            ("text", "/data/body"),
            ("url", "/data/link"),
            ("author", "/data/user/name"),
            ("channel", "/data/network"),
            ("meta.followers", "/data/followers"),
        ];
        FieldMapping::new(pointers.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
            .unwrap()
    }

    #[tokio::test]
    async fn a_field_mapping_reads_another_tools_payload() {
        let bus = EmbeddedBus::in_memory(100);
        let config = WebhookConfig {
            mapping: Some(tool_mapping()),
            channel: Some(Channel::Forum),
            markup: Markup::Html,
            ..WebhookConfig::new("tool")
        };
        let server = serve(&bus, vec![config]).await;

        let payload = json!([
            {"data": {"body": "<p>The <b>router</b> keeps dropping</p>", "link": "https://example.com/t/1?utm_source=x",
                      "user": {"name": "Ann"}, "followers": 1200}},
            {"data": {"body": "Love it", "network": "Twitter", "followers": null}},
        ]);
        let (status, reply) = answer(server.post("tool", &[], payload.to_string().as_bytes()).await).await;
        assert_eq!(status, 202, "{reply}");
        let records = drain(&bus, MENTIONS).await;
        assert_eq!(json!(keys(&records)), reply["ids"]);
        let first = Mention::from_json(&records[0].payload).unwrap();
        assert_eq!(first.text, "The router keeps dropping");
        assert_eq!(first.url.as_deref(), Some("https://example.com/t/1"));
        assert_eq!(first.author.as_deref(), Some("Ann"));
        assert_eq!(first.meta.get("followers").map(String::as_str), Some("1200"));
        assert_eq!(first.source.as_deref(), Some("tool"));
        assert_eq!(first.channel, Some(Channel::Forum));
        let second = Mention::from_json(&records[1].payload).unwrap();
        assert_eq!(second.channel, Some(Channel::Twitter));
        assert!(second.meta.is_empty());

        let bad = json!([
            {"data": {"body": {"html": "<p>hi</p>"}}},
            {"data": {"link": "https://example.com"}},
            {"data": {"body": "x", "network": "myspace"}},
        ]);
        let (status, reply) = answer(server.post("tool", &[], bad.to_string().as_bytes()).await).await;
        assert_eq!(status, 400);
        let errors: Vec<&str> =
            reply["items"].as_array().unwrap().iter().map(|i| i["error"].as_str().unwrap()).collect();
        assert!(errors[0].contains("`text` at /data/body is a JSON object"), "{errors:?}");
        assert!(errors[1].contains("no text at /data/body"), "{errors:?}");
        assert!(errors[2].contains("\"myspace\""), "{errors:?}");
        assert!(drain(&bus, MENTIONS).await.is_empty());
        assert_eq!(drain(&bus, DEAD_LETTERS).await.len(), 1);
    }

    #[test]
    fn a_mapping_names_mention_fields_and_json_pointers() {
        let mapping = |pairs: &[(&str, &str)]| {
            FieldMapping::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        assert!(mapping(&[("text", "/body"), ("meta.x", "/x")]).is_ok());
        let error = mapping(&[("text", "/body"), ("txt", "/t")]).unwrap_err();
        assert_eq!(error, MappingError::UnknownKey { key: "txt".to_string() });
        assert!(error.to_string().contains("`txt`"));
        let error = mapping(&[("text", "body")]).unwrap_err();
        assert!(matches!(error, MappingError::BadPointer { ref key, .. } if key == "text"), "{error}");
        assert!(matches!(mapping(&[("meta.", "/x"), ("text", "/t")]), Err(MappingError::UnknownKey { .. })));
        assert_eq!(mapping(&[("url", "/u")]), Err(MappingError::MissingText));
    }

    #[tokio::test]
    async fn backpressure_holds_the_answer_until_the_bus_takes_the_mentions() {
        let bus = EmbeddedBus::in_memory(2);
        let server = Arc::new(serve(&bus, vec![WebhookConfig { max_pending: 3, ..signed("hooks") }]).await);
        // A reading stage that has fallen 2 (the capacity) behind.
        let mut consumer = bus.consumer(&[MENTIONS], "matcher").unwrap();
        let filler = |id: &str| cull_bus::Message { key: Some(id.as_bytes().to_vec()), ..Default::default() };
        bus.producer().send_all(MENTIONS, vec![filler("x"), filler("y")]).await.unwrap();

        let three = json!([mention("a", "one"), mention("b", "two"), mention("c", "three")]).to_string();
        let first = tokio::spawn({
            let server = Arc::clone(&server);
            async move { answer(server.post_signed("hooks", three.as_bytes()).await).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!first.is_finished(), "answered before the bus took the mentions: {:?}", first.await);

        let one = mention("d", "four").to_string();
        let response = server.post_signed("hooks", one.as_bytes()).await;
        assert_eq!(response.headers().get("retry-after").unwrap(), "1");
        let (status, reply) = answer(response).await;
        assert_eq!(status, 429, "{reply}");

        let batch = consumer.next_batch(2, Duration::ZERO, Duration::from_secs(5)).await.unwrap().unwrap();
        assert_eq!(keys(&batch), ["x", "y"]);
        let (status, reply) = tokio::time::timeout(Duration::from_secs(5), first).await.unwrap().unwrap();
        assert_eq!(status, 202, "{reply}");
        assert_eq!(reply["ids"], json!(["a", "b", "c"]));
        let batch = consumer.next_batch(10, Duration::ZERO, Duration::from_secs(5)).await.unwrap().unwrap();
        assert_eq!(keys(&batch), ["a", "b", "c"]);

        // The permits came back with the answer.
        assert_eq!(server.post_signed("hooks", one.as_bytes()).await.status(), 202);
        assert_eq!(server.observer.statuses(), [429, 202, 202]);
    }

    #[tokio::test]
    async fn a_closed_outlet_answers_503_and_waits_for_requests_in_progress() {
        let bus = EmbeddedBus::in_memory(1);
        let server = Arc::new(serve(&bus, vec![signed("hooks")]).await);
        let outlet = server.outlet.clone();
        // The matcher is 1 behind: the next request waits for the bus.
        let mut consumer = bus.consumer(&[MENTIONS], "matcher").unwrap();
        bus.producer().send_all(MENTIONS, vec![cull_bus::Message::default()]).await.unwrap();
        let body = mention("a", "one").to_string();
        let waiting = tokio::spawn({
            let (server, body) = (Arc::clone(&server), body.clone());
            async move { server.post_signed("hooks", body.as_bytes()).await.status().as_u16() }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        outlet.close();
        let (status, reply) = answer(server.post_signed("hooks", body.as_bytes()).await).await;
        assert_eq!(status, 503, "{reply}");
        assert!(reply["error"].as_str().unwrap().contains("shutting down"), "{reply}");
        let drained = tokio::spawn({
            let outlet = outlet.clone();
            async move { outlet.drained().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!drained.is_finished(), "a request in progress holds the drain");
        consumer.next_batch(1, Duration::ZERO, Duration::from_secs(5)).await.unwrap().unwrap();
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap(), 202);
        tokio::time::timeout(Duration::from_secs(5), drained).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_bus_that_fails_gets_503_with_retry_after() {
        let bus = EmbeddedBus::in_memory(100);
        let server =
            serve(&bus, vec![WebhookConfig { retry_after: Duration::from_millis(2500), ..signed("hooks") }])
                .await;
        bus.close();
        let response = server.post_signed("hooks", mention("m-1", "hi").to_string().as_bytes()).await;
        assert_eq!(response.headers().get("retry-after").unwrap(), "3");
        let (status, reply) = answer(response).await;
        assert_eq!(status, 503, "{reply}");
        assert!(reply["error"].as_str().unwrap().contains("nothing was accepted"), "{reply}");
        assert_eq!(server.observer.statuses(), [503]);
    }

    #[tokio::test]
    async fn an_unknown_source_gets_404() {
        let bus = EmbeddedBus::in_memory(100);
        let server = serve(&bus, vec![signed("hooks")]).await;
        let (status, reply) = answer(server.post("nope", &[], b"{}").await).await;
        assert_eq!(status, 404);
        assert!(reply["error"].as_str().unwrap().contains("\"nope\""), "{reply}");
        assert!(server.observer.statuses().is_empty());
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let debug = format!("{:?}", signed("hooks"));
        assert!(!debug.contains(SECRET), "{debug}");
    }
}
