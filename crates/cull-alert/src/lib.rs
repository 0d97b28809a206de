//! Alert sinks: tickets delivered where contact-center people work.
//!
//! A contact center without a Kafka consumer gets its tickets from an alert sink,
//! one per `[[sink.alert]]` entry of a pipeline file:
//!
//! * [`AlertKind::Webhook`]: the ticket, signed as the Standard Webhooks
//!   specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature`), so
//!   that any Standard Webhooks library verifies it; the id is stable per ticket
//!   revision, so a receiver deduplicates the repeats that at-least-once delivery
//!   makes.
//! * [`AlertKind::Slack`] and [`AlertKind::Teams`]: a Block Kit message or an Adaptive
//!   Card per ticket, under a rate cap per destination with one roll-up message for
//!   what exceeded it.
//! * [`AlertKind::Email`]: a mail per ticket, or an hourly, daily or weekly digest
//!   whose pending items survive a restart.
//!
//! The crate does the delivering; the runtime's alert stage (`cull-runtime`) feeds it
//! the ticket records and turns a [`Outcome::Failed`] into a dead letter holding the
//! ticket. Its contract with the stage: [`AlertSink::deliver`] returns once every
//! ticket of the batch is delivered, held durably, or failed for good, so the stage
//! may commit the batch's offsets only after [`AlertSink::make_durable`] says so.

#![deny(missing_docs)]

pub mod chat;
pub mod config;
pub mod digest;
pub mod email;
pub mod http;
pub mod webhook;

use std::sync::Arc;

use cull_model::Ticket;
use time::OffsetDateTime;
use tokio::sync::watch;

pub use config::{AlertConfig, AlertKind, Delivery, Filter};

/// What became of one ticket given to [`AlertSink::deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver accepted it.
    Delivered,
    /// The sink holds it for later (a digest, a roll-up), durably once
    /// [`AlertSink::make_durable`] returns true.
    Held,
    /// The sink did not alert on it (its filter).
    Skipped,
    /// Delivery failed for good: the ticket must become a dead letter.
    Failed(String),
}

/// The run is stopping: a delivery was given up before it ended, and its ticket is
/// delivered at the next start (its offsets were not committed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("stopped while delivering to alert sink {sink}: {left}; it is delivered again at the next start")]
pub struct Stopped {
    /// The sink.
    pub sink: String,
    /// What was left.
    pub left: String,
}

/// Why an alert sink cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A setting it reads from the environment is missing.
    #[error("sink.alert[{index}].{key}: the environment variable `{variable}` is not set or empty")]
    MissingEnv {
        /// The entry's position.
        index: usize,
        /// The key naming the variable.
        key: String,
        /// The variable.
        variable: String,
    },
    /// A setting is unusable in a way the config check cannot see.
    #[error("sink.alert[{index}].{key}: {message}")]
    Invalid {
        /// The entry's position.
        index: usize,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The sink's durable state cannot be read or written.
    #[error("alert sink {sink}: {message}")]
    State {
        /// The sink.
        sink: String,
        /// What failed, with the path.
        message: String,
    },
}

/// Where an alert sink reports what it does; the runtime's metrics implement it.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// One try to an endpoint ended: `outcome` is `ok`, `retry` (it is tried again)
    /// or `failed` (final).
    fn attempt(&self, sink: &str, outcome: &'static str);
    /// A message (an alert, a digest, a roll-up) was delivered.
    fn delivered(&self, sink: &str, what: &'static str);
    /// The endpoint's circuit opened (`true`) or closed.
    fn breaker(&self, sink: &str, open: bool);
    /// Alerts over a rate cap were rolled up into one message.
    fn rolled_up(&self, sink: &str, alerts: u64);
    /// Items a digest holds now.
    fn pending(&self, sink: &str, items: u64);
}

/// An observer that records nothing, for tests and tools.
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn attempt(&self, _: &str, _: &'static str) {}
    fn delivered(&self, _: &str, _: &'static str) {}
    fn breaker(&self, _: &str, _: bool) {}
    fn rolled_up(&self, _: &str, _: u64) {}
    fn pending(&self, _: &str, _: u64) {}
}

/// Tells a sink that the run is stopping, so that it gives up a backoff rather than
/// hold the shutdown.
#[derive(Debug, Clone)]
pub struct Stop(Option<watch::Receiver<bool>>);

impl Stop {
    /// Returns the stop signalled when `receiver` turns true.
    pub fn new(receiver: watch::Receiver<bool>) -> Stop {
        Stop(Some(receiver))
    }

    /// Returns a stop that never comes.
    pub fn never() -> Stop {
        Stop(None)
    }

    /// Returns whether the run is stopping.
    pub fn is_stopped(&self) -> bool {
        self.0.as_ref().is_some_and(|receiver| *receiver.borrow())
    }

    /// Waits `duration`, or returns `false` early when the run stops.
    pub async fn sleep(&self, duration: std::time::Duration) -> bool {
        let Some(receiver) = &self.0 else {
            tokio::time::sleep(duration).await;
            return true;
        };
        let mut receiver = receiver.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            _ = receiver.wait_for(|stopped| *stopped) => false,
        }
    }
}

/// What every sink is given: its name, where it reports, and the stop.
#[derive(Debug, Clone)]
pub struct Context {
    /// The sink's name (`sink.alert.<name>` is its stage).
    pub sink: String,
    /// Where it reports.
    pub observer: Arc<dyn Observer>,
    /// The run's stop.
    pub stop: Stop,
}

/// Reads a setting from the environment: the process's, or a test's.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Returns the value of `variable` for `key` of entry `index`, refusing an unset or
/// empty one.
pub(crate) fn required_env(
    env: Env<'_>,
    index: usize,
    key: &str,
    variable: &str,
) -> Result<String, AlertError> {
    env(variable).filter(|v| !v.is_empty()).ok_or_else(|| AlertError::MissingEnv {
        index,
        key: key.to_string(),
        variable: variable.to_string(),
    })
}

/// Checks what entry `index` reads from `env` before anything opens: every variable
/// it names is set, and a webhook's secret is a `whsec_` secret. `cull config check`
/// reports the same problems as `cull run`.
pub fn check_environment(index: usize, config: &AlertConfig, env: Env<'_>) -> Vec<AlertError> {
    let mut problems = Vec::new();
    for (key, variable) in config.environment() {
        match required_env(env, index, key, variable) {
            Err(missing) => problems.push(missing),
            Ok(secret) if key == "secret_env" => {
                if let Err(message) = webhook::Signer::new(&secret) {
                    let message = format!("the value of `{variable}` is {message}");
                    problems.push(AlertError::Invalid { index, key: key.to_string(), message });
                }
            }
            Ok(_) => {}
        }
    }
    problems
}

/// One configured alert sink.
#[derive(Debug)]
pub struct AlertSink {
    filter: Filter,
    kind: AlertKind,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Webhook(Box<webhook::WebhookSink>),
    Chat(chat::ChatSink),
    Email(email::EmailSink),
}

impl AlertSink {
    /// Opens the sink of entry `index`, reading its secrets from `env`: a missing
    /// secret or an unreadable digest state is an error here, before anything runs.
    pub fn open(
        index: usize,
        config: &AlertConfig,
        env: Env<'_>,
        context: Context,
    ) -> Result<AlertSink, AlertError> {
        let inner = match config.kind {
            AlertKind::Webhook => {
                Inner::Webhook(Box::new(webhook::WebhookSink::open(index, config, env, context)?))
            }
            AlertKind::Slack | AlertKind::Teams => {
                Inner::Chat(chat::ChatSink::open(index, config, env, context)?)
            }
            AlertKind::Email => Inner::Email(email::EmailSink::open(index, config, env, context)?),
        };
        Ok(AlertSink { filter: config.filter(), kind: config.kind, inner })
    }

    /// Delivers `tickets` (in order per ticket id), returning one outcome per ticket.
    pub async fn deliver(
        &mut self,
        tickets: &[Ticket],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, Stopped> {
        let wanted: Vec<usize> =
            (0..tickets.len()).filter(|&i| self.filter.accepts(self.kind, &tickets[i])).collect();
        let chosen: Vec<&Ticket> = wanted.iter().map(|&i| &tickets[i]).collect();
        let delivered = match &mut self.inner {
            Inner::Webhook(sink) => sink.deliver(&chosen, now).await?,
            Inner::Chat(sink) => sink.deliver(&chosen, now).await?,
            Inner::Email(sink) => sink.deliver(&chosen, now).await?,
        };
        let mut outcomes = vec![Outcome::Skipped; tickets.len()];
        for (i, outcome) in wanted.into_iter().zip(delivered) {
            outcomes[i] = outcome;
        }
        Ok(outcomes)
    }

    /// Does what is due at `now` without new tickets: a roll-up whose minute is
    /// over, a digest whose hour, day or week came.
    pub async fn tick(&mut self, now: OffsetDateTime) -> Result<(), Stopped> {
        match &mut self.inner {
            Inner::Webhook(_) => Ok(()),
            Inner::Chat(sink) => sink.tick(now).await,
            Inner::Email(sink) => sink.tick(now).await,
        }
    }

    /// Makes what the sink holds durable when that is due (or now, with `force`) and
    /// returns whether everything it was given is delivered or durable: only then may
    /// the offsets of what it was given be committed.
    pub fn make_durable(&mut self, force: bool) -> Result<bool, AlertError> {
        match &mut self.inner {
            Inner::Webhook(_) => Ok(true),
            Inner::Chat(sink) => Ok(sink.is_settled()),
            Inner::Email(sink) => sink.make_durable(force),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use cull_model::Ticket;

    /// Returns a ticket as the ticketing stage makes them, with id `id`.
    pub(crate) fn ticket(id: &str) -> Ticket {
        serde_json::from_value(serde_json::json!({
            "schema": "cull.ticket/v1",
            "ticket_id": id,
            "revision": 1,
            "created_at": "2026-11-25T10:00:00Z",
            "queue": "social-care",
            "priority": "P2",
            "priority_score": 55,
            "sla_due_at": "2026-11-25T11:00:00Z",
            "rule": {"id": "slack-company", "name": "Slack (the company)", "version": "r1"},
            "mention": {
                "schema": "cull.mention/v1",
                "id": format!("m-{id}"),
                "source": "alerts",
                "channel": "twitter",
                "url": "https://x.example/status/1",
                "author": "@customer",
                "title": "Slack is down <again> & again",
                "text": "Slack is down again, support is useless",
            },
            "spans": [{"field": "text", "start": 0, "end": 5}],
            "snippet": "Slack is down again, support is useless",
        }))
        .expect("a ticket")
    }
}
