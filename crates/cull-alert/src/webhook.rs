//! The webhook sink: each ticket revision POSTed as a Standard Webhooks message.
//!
//! The Standard Webhooks specification (<https://www.standardwebhooks.com>) fixes
//! three headers: `webhook-id` (the message id, the same on every try of one
//! message, so a receiver deduplicates), `webhook-timestamp` (seconds since the
//! epoch of this try, which a receiver checks against its clock to refuse replays)
//! and `webhook-signature` (`v1,` and the base64 HMAC-SHA256, keyed with the
//! base64-decoded part of a `whsec_` secret, of `id.timestamp.body`). The body is the
//! specification's envelope: `type`, `timestamp` and the ticket as `data`.
//!
//! The message id is the ticket id and its revision: a replay after a crash, or a
//! resend of an unchanged ticket, carries the id the receiver already has.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use cull_model::{Ticket, TicketKind};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::AlertConfig;
use crate::http::{headers, Poster};
use crate::{required_env, AlertError, Context, Env, Outcome, Stopped};

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A signing key, from a `whsec_` secret.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(…)")
    }
}

impl Signer {
    /// Returns the signer of `secret`: `whsec_` and the key in base64 (the prefix may
    /// be left out, as the specification's libraries allow).
    pub fn new(secret: &str) -> Result<Signer, String> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("not a whsec_ secret (whsec_ and base64): {e}"))?;
        if key.len() < 24 {
            return Err(format!("the key is {} bytes; Standard Webhooks keys are 24 to 64", key.len()));
        }
        Ok(Signer { key })
    }

    /// Returns the `webhook-signature` value of a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// Returns the `webhook-id` of a ticket revision.
pub fn message_id(ticket: &Ticket) -> String {
    format!("{}.r{}", ticket.ticket_id, ticket.revision)
}

/// Returns the event type of a ticket revision: `ticket.created`, `ticket.updated`,
/// `incident.created`, `digest.updated` …
pub fn event_type(ticket: &Ticket) -> String {
    let kind = match ticket.kind {
        TicketKind::Ticket => "ticket",
        TicketKind::Incident => "incident",
        TicketKind::Digest => "digest",
    };
    format!("{kind}.{}", if ticket.revision <= 1 { "created" } else { "updated" })
}

/// Returns the body of a ticket revision's message: the specification's envelope.
/// Its `timestamp` is the ticket revision's, so that every try of one message
/// carries the same bytes.
pub fn body(ticket: &Ticket) -> Vec<u8> {
    let envelope = serde_json::json!({
        "type": event_type(ticket),
        "timestamp": ticket_time(ticket),
        "data": ticket,
    });
    serde_json::to_vec(&envelope).expect("a ticket always serializes")
}

/// When the revision was made: the latest mention's fetch time, else the ticket's
/// creation.
fn ticket_time(ticket: &Ticket) -> String {
    ticket.mention.fetched_at.clone().unwrap_or_else(|| ticket.created_at.clone())
}

/// Posts signed ticket revisions to one endpoint.
#[derive(Debug)]
pub struct WebhookSink {
    poster: Poster,
    signer: Signer,
    concurrency: usize,
}

impl WebhookSink {
    /// Opens the webhook sink of entry `index`.
    pub fn open(
        index: usize,
        config: &AlertConfig,
        env: Env<'_>,
        context: Context,
    ) -> Result<WebhookSink, AlertError> {
        let url = endpoint(index, config, env)?;
        let variable = config.secret_env.as_deref().unwrap_or_default();
        let secret = required_env(env, index, "secret_env", variable)?;
        let signer = Signer::new(&secret).map_err(|message| AlertError::Invalid {
            index,
            key: "secret_env".to_string(),
            message: format!("the value of `{variable}` is {message}"),
        })?;
        let delivery = config.delivery();
        let concurrency = delivery.concurrency;
        Ok(WebhookSink { poster: Poster::new(url, delivery, context), signer, concurrency })
    }

    /// Delivers `tickets`, up to `concurrency` at once; the revisions of one ticket
    /// go one after the other, in the order given.
    pub async fn deliver(
        &mut self,
        tickets: &[&Ticket],
        _now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, Stopped> {
        let mut chains: BTreeMap<&str, Vec<(usize, String, Vec<u8>)>> = BTreeMap::new();
        for (i, ticket) in tickets.iter().enumerate() {
            chains.entry(&ticket.ticket_id).or_default().push((i, message_id(ticket), body(ticket)));
        }
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        for (_, chain) in chains {
            let (poster, signer, permits) = (self.poster.clone(), self.signer.clone(), Arc::clone(&permits));
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
                let mut outcomes = Vec::with_capacity(chain.len());
                for (i, id, body) in chain {
                    let sign = || {
                        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
                        headers(&[
                            ("webhook-id", id.clone()),
                            ("webhook-timestamp", timestamp.to_string()),
                            ("webhook-signature", signer.sign(&id, timestamp, &body)),
                        ])
                    };
                    let outcome = match poster.post(&body, &sign).await? {
                        Ok(_attempts) => Outcome::Delivered,
                        Err(error) => Outcome::Failed(format!("webhook {id}: {error}")),
                    };
                    outcomes.push((i, outcome));
                }
                Ok::<_, Stopped>(outcomes)
            });
        }
        let mut outcomes = vec![Outcome::Skipped; tickets.len()];
        let mut stopped = None;
        while let Some(joined) = tasks.join_next().await {
            match joined.expect("a delivery task does not panic") {
                Ok(done) => {
                    for (i, outcome) in done {
                        outcomes[i] = outcome;
                    }
                }
                Err(stop) => stopped = Some(stop),
            }
        }
        match stopped {
            Some(stop) => Err(stop),
            None => Ok(outcomes),
        }
    }
}

/// Returns the endpoint of an HTTP entry: `url`, or the value of `url_env`.
pub(crate) fn endpoint(index: usize, config: &AlertConfig, env: Env<'_>) -> Result<reqwest::Url, AlertError> {
    let (key, url) = match (&config.url, &config.url_env) {
        (Some(url), _) => ("url", url.clone()),
        (None, Some(variable)) => ("url_env", required_env(env, index, "url_env", variable)?),
        (None, None) => {
            return Err(AlertError::Invalid { index, key: "url".into(), message: "no endpoint".into() })
        }
    };
    reqwest::Url::parse(&url).map_err(|error| AlertError::Invalid {
        index,
        key: key.to_string(),
        message: format!("not a URL: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn signs_as_the_specification_s_test_vector() {
        let signer = Signer::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signer.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_that_is_not_base64_or_too_short_is_refused() {
        assert!(Signer::new("whsec_!!!").unwrap_err().contains("not a whsec_ secret"));
        assert!(Signer::new("whsec_c2hvcnQ=").unwrap_err().contains("5 bytes"));
    }

    #[test]
    fn the_id_and_body_of_a_revision_are_the_same_on_every_try() {
        let mut ticket = crate::tests::ticket("t-1");
        assert_eq!(message_id(&ticket), "t-1.r1");
        assert_eq!(body(&ticket), body(&ticket));
        let envelope: serde_json::Value = serde_json::from_slice(&body(&ticket)).unwrap();
        assert_eq!(envelope["type"], "ticket.created");
        assert_eq!(envelope["data"]["ticket_id"], "t-1");
        ticket.revision = 2;
        assert_eq!(
            (message_id(&ticket).as_str(), event_type(&ticket).as_str()),
            ("t-1.r2", "ticket.updated")
        );
    }
}
