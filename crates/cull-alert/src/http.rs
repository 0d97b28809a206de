//! Posting to an HTTP endpoint the way every alert kind does: tries, backoff with
//! full jitter, the receiver's `Retry-After`, and a circuit breaker per endpoint.
//!
//! Written here rather than taken from a retry crate because the parts are
//! entangled in a way those crates do not model: the breaker is shared by every
//! delivery to the endpoint, a `Retry-After` replaces the backoff, a stop gives a
//! backoff up, and the request is rebuilt for every try (a Standard Webhooks
//! signature covers the try's timestamp).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use crate::config::Delivery;
use crate::{Context, Stopped};

/// The most of a refusal's body that an error quotes.
const QUOTED_BODY: usize = 300;

/// An endpoint and how hard deliveries to it try.
#[derive(Debug, Clone)]
pub struct Poster {
    client: reqwest::Client,
    url: reqwest::Url,
    delivery: Delivery,
    breaker: Arc<Mutex<Breaker>>,
    context: Context,
}

/// What one try came to.
#[derive(Debug)]
enum Try {
    Accepted,
    /// Worth another try, after the receiver's `Retry-After` when it gave one.
    Transient {
        error: String,
        retry_after: Option<Duration>,
    },
    /// The receiver refused the request itself: another try would be refused too.
    Refused(String),
}

impl Poster {
    /// Returns a poster to `url` for the sink of `context`.
    pub fn new(url: reqwest::Url, delivery: Delivery, context: Context) -> Poster {
        let client = reqwest::Client::builder()
            .timeout(delivery.timeout())
            .connect_timeout(delivery.timeout())
            .user_agent(concat!("cull/", env!("CARGO_PKG_VERSION")))
            // An alert endpoint answers; it does not send the ticket elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client without custom TLS roots always builds");
        Poster { client, url, delivery, breaker: Arc::default(), context }
    }

    /// Returns the endpoint, with any credential in its path or query hidden, for
    /// errors and logs (Slack and Teams URLs are their own secret).
    pub fn endpoint(&self) -> String {
        format!("{}://{}/…", self.url.scheme(), self.url.host_str().unwrap_or_default())
    }

    /// Posts the JSON `body` until the endpoint accepts it, tries run out, or it
    /// refuses it; `headers` builds the extra headers of each try. Returns
    /// `Ok(Err(why))` when delivery failed for good, `Err` when the run stopped first.
    pub async fn post(
        &self,
        body: &[u8],
        headers: &(dyn Fn() -> HeaderMap + Sync),
    ) -> Result<Result<u32, String>, Stopped> {
        let sink = &self.context.sink;
        let mut attempt = 0;
        loop {
            self.wait_for_breaker().await?;
            attempt += 1;
            let outcome = self.try_once(body, headers()).await;
            let (error, retry_after) = match outcome {
                Try::Accepted => {
                    self.context.observer.attempt(sink, "ok");
                    self.record(true);
                    return Ok(Ok(attempt));
                }
                Try::Refused(error) => {
                    self.context.observer.attempt(sink, "failed");
                    // The endpoint is up, and said no to this request: not a reason to
                    // open the circuit for the others.
                    self.record(true);
                    return Ok(Err(format!("{} refused it on try {attempt}: {error}", self.endpoint())));
                }
                Try::Transient { error, retry_after } => (error, retry_after),
            };
            self.record(false);
            if attempt >= self.delivery.max_attempts {
                self.context.observer.attempt(sink, "failed");
                return Ok(Err(format!(
                    "{} failed {attempt} tr{} (max_attempts), the last: {error}",
                    self.endpoint(),
                    if attempt == 1 { "y" } else { "ies" }
                )));
            }
            self.context.observer.attempt(sink, "retry");
            let wait = retry_after.map_or_else(
                || self.delivery.backoff(attempt),
                |after| after.min(self.delivery.backoff_max()),
            );
            tracing::warn!(sink = %sink, endpoint = %self.endpoint(), attempt, wait_ms = wait.as_millis() as u64, %error, "alert delivery failed; trying again");
            if !self.context.stop.sleep(wait).await {
                return Err(
                    self.stopped(format!("try {attempt} failed ({error}) and the retry was given up"))
                );
            }
        }
    }

    async fn try_once(&self, body: &[u8], headers: HeaderMap) -> Try {
        let request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .headers(headers)
            .body(body.to_vec());
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let error = if error.is_timeout() {
                    format!("no answer within {} s (timeout_secs)", self.delivery.timeout_secs)
                } else {
                    format!("cannot connect: {}", describe(&error))
                };
                return Try::Transient { error, retry_after: None };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Try::Accepted;
        }
        let retry_after =
            response.headers().get(RETRY_AFTER).and_then(|v| parse_retry_after(v.to_str().ok()?));
        let body = response.bytes().await.unwrap_or_default();
        let quoted: String = String::from_utf8_lossy(&body).chars().take(QUOTED_BODY).collect();
        let error = format!(
            "HTTP {status}{}",
            if quoted.trim().is_empty() { String::new() } else { format!(": {}", quoted.trim()) }
        );
        if is_transient(status) {
            Try::Transient { error, retry_after }
        } else {
            Try::Refused(error)
        }
    }

    /// Waits while the circuit is open; returns when a try may go (the circuit is
    /// closed, or half open and this try is its probe).
    async fn wait_for_breaker(&self) -> Result<(), Stopped> {
        loop {
            let wait = {
                let mut breaker = self.breaker.lock().expect("the breaker's lock is never poisoned");
                match breaker.open_until {
                    Some(until) if until > Instant::now() => until - Instant::now(),
                    Some(_) if breaker.probing => Duration::from_millis(50),
                    Some(_) => {
                        breaker.probing = true;
                        return Ok(());
                    }
                    None => return Ok(()),
                }
            };
            if !self.context.stop.sleep(wait).await {
                return Err(self.stopped("the endpoint's circuit was open".to_string()));
            }
        }
    }

    /// Records a try's outcome in the breaker.
    fn record(&self, up: bool) {
        let mut breaker = self.breaker.lock().expect("the breaker's lock is never poisoned");
        let was_open = breaker.open_until.is_some();
        breaker.probing = false;
        if up {
            breaker.failures = 0;
            breaker.open_until = None;
            if was_open {
                tracing::info!(sink = %self.context.sink, endpoint = %self.endpoint(), "the endpoint answers again; circuit closed");
                self.context.observer.breaker(&self.context.sink, false);
            }
            return;
        }
        breaker.failures += 1;
        if was_open || breaker.failures >= self.delivery.breaker_failures {
            let open = Duration::from_secs(self.delivery.breaker_open_secs);
            breaker.open_until = Some(Instant::now() + open);
            if !was_open {
                tracing::warn!(sink = %self.context.sink, endpoint = %self.endpoint(), failures = breaker.failures, open_secs = open.as_secs(), "circuit opened: no tries until it half-opens");
                self.context.observer.breaker(&self.context.sink, true);
            }
        }
    }

    fn stopped(&self, left: String) -> Stopped {
        Stopped { sink: self.context.sink.clone(), left }
    }
}

/// The state of an endpoint's circuit, shared by every delivery to it.
#[derive(Debug, Default)]
struct Breaker {
    /// Consecutive failed tries.
    failures: u32,
    /// While set, the circuit is open until then; past it, half open.
    open_until: Option<Instant>,
    /// A half-open probe is in flight: the others wait for its outcome.
    probing: bool,
}

/// Returns whether a try that got `status` may succeed later.
fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// Parses a `Retry-After` value: seconds, or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let date = time::PrimitiveDateTime::parse(value, &format).ok()?.assume_utc();
    let from_now = date - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(from_now).unwrap_or(Duration::ZERO))
}

/// Returns a reqwest error with its causes, without the URL (which may hold a
/// credential).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    match error.url() {
        Some(url) => text.replace(url.as_str(), "<endpoint>"),
        None => text,
    }
}

/// Returns a header map from pairs, for a try's headers.
pub fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let value = HeaderValue::from_str(value).expect("alert header values are ASCII");
        map.insert(HeaderName::from_static(name), value);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO),
            "a date gone by"
        );
        let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
        let format = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let wait = parse_retry_after(&later.format(&format).unwrap()).unwrap();
        assert!((Duration::from_secs(298)..=Duration::from_secs(300)).contains(&wait), "{wait:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn transient_statuses_are_tried_again_and_refusals_are_final() {
        for status in [500, 502, 503, 504, 429, 408] {
            assert!(is_transient(StatusCode::from_u16(status).unwrap()), "{status}");
        }
        for status in [400, 401, 403, 404, 410, 413, 422] {
            assert!(!is_transient(StatusCode::from_u16(status).unwrap()), "{status}");
        }
    }
}
