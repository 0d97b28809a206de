//! The handoff from a source to the bus.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use cull_bus::dead_letter::{dead_letter, Origin, Reason};
use cull_bus::{BusError, Message, Producer};
use cull_model::Mention;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::normalize::{normalize, Draft, Screen};

/// Counts what the sources do; the binary implements it with its metrics registry.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// `count` mentions from `source` were acknowledged by the bus.
    fn delivered(&self, source: &str, count: u64);
    /// `count` exact duplicates from `source` were dropped.
    fn duplicates(&self, source: &str, count: u64);
    /// `count` near-duplicates from `source` were marked.
    fn near_duplicates(&self, source: &str, count: u64);
    /// `count` inputs from `source` went to the dead-letter topic for `reason`.
    fn dead_letters(&self, source: &str, reason: Reason, count: u64);
    /// A feed poll ended with `outcome` (see [`crate::feed::PollOutcome::label`]).
    fn feed_polled(&self, feed: &str, outcome: &'static str);
    /// A webhook request to `source` was answered with `status`.
    fn webhook_answered(&self, source: &str, status: u16);
}

/// What one handoff did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The ids of the mentions produced, in order.
    pub ids: Vec<String>,
    /// Exact duplicates dropped.
    pub duplicates: u64,
    /// Near-duplicates marked.
    pub near_duplicates: u64,
}

/// Where sources deliver: the mentions and dead-letter topics of a bus, behind the
/// shared duplicate [`Screen`].
///
/// An outlet can be closed, which is the first step of a graceful shutdown: requests
/// that push input (the webhook) are refused from then on ([`Outlet::enter`] returns
/// `None`), and [`Outlet::drained`] waits for those already in progress, so that
/// every one of them either was acknowledged by the bus or was refused.
#[derive(Debug, Clone)]
pub struct Outlet {
    /// The client of the source delivering through this outlet (see
    /// [`Outlet::for_client`]).
    client: Option<String>,
    producer: Producer,
    mentions_topic: String,
    dead_letter_topic: String,
    screen: Arc<Mutex<Screen>>,
    observer: Arc<dyn Observer>,
    gate: Arc<Gate>,
}

/// Counts the pushes in progress and whether new ones are taken.
#[derive(Debug, Default)]
struct Gate {
    closed: AtomicBool,
    inside: AtomicUsize,
    left: Notify,
}

/// A push in progress; [`Outlet::drained`] waits until every one is dropped.
#[derive(Debug)]
pub struct Entered {
    gate: Arc<Gate>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if self.gate.inside.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.gate.left.notify_waiters();
        }
    }
}

impl Outlet {
    /// Returns an outlet producing to the given topics and screening through `screen`.
    pub fn new(
        producer: Producer,
        mentions_topic: impl Into<String>,
        dead_letter_topic: impl Into<String>,
        screen: Arc<Mutex<Screen>>,
        observer: Arc<dyn Observer>,
    ) -> Outlet {
        Outlet {
            client: None,
            producer,
            mentions_topic: mentions_topic.into(),
            dead_letter_topic: dead_letter_topic.into(),
            screen,
            observer,
            gate: Arc::default(),
        }
    }

    /// Returns this outlet for a source of `client` (`None`: the contact center's own):
    /// every mention it delivers is that client's, whatever its input said. Sources
    /// that read a client from their input refuse one that differs first
    /// ([`cull_model::check_claim`]), so that nothing is silently relabelled.
    pub fn for_client(&self, client: Option<String>) -> Outlet {
        Outlet { client, ..self.clone() }
    }

    /// Returns the client of the source delivering through this outlet.
    pub fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// Starts a push (a webhook request), or returns `None` once the outlet is closed.
    pub fn enter(&self) -> Option<Entered> {
        self.gate.inside.fetch_add(1, Ordering::SeqCst);
        let entered = Entered { gate: Arc::clone(&self.gate) };
        (!self.gate.closed.load(Ordering::SeqCst)).then_some(entered)
    }

    /// Refuses new pushes from now on; the sources that pull (files, feeds, mail) stop
    /// on their own stop signal.
    pub fn close(&self) {
        self.gate.closed.store(true, Ordering::SeqCst);
    }

    /// Waits until no push is in progress.
    pub async fn drained(&self) {
        loop {
            let left = self.gate.left.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            if self.gate.inside.load(Ordering::SeqCst) == 0 {
                return;
            }
            left.await;
        }
    }

    /// Returns the observer, for the metrics a source records itself.
    pub fn observer(&self) -> &dyn Observer {
        self.observer.as_ref()
    }

    /// Normalizes `drafts`, drops duplicates, marks near-duplicates and produces the
    /// rest keyed by mention id, returning once the bus acknowledged every one. On an
    /// error the screened mentions are forgotten again, so that the source's retry is
    /// not taken for a duplicate.
    pub async fn deliver(&self, source: &str, drafts: Vec<Draft>) -> Result<Delivered, BusError> {
        let now = OffsetDateTime::now_utc();
        let mentions: Vec<Mention> = drafts
            .into_iter()
            .map(|draft| normalize(Draft { client: self.client.clone(), ..draft }, now))
            .collect();
        let screened =
            self.screen.lock().unwrap_or_else(PoisonError::into_inner).screen(mentions, Instant::now());
        let ids: Vec<String> = screened.fresh.iter().map(|m| m.id.clone()).collect();
        let messages = screened
            .fresh
            .iter()
            .map(|mention| Message {
                key: Some(mention.id.clone().into_bytes()),
                payload: serde_json::to_vec(mention).expect("a mention always serializes"),
                headers: Vec::new(),
            })
            .collect::<Vec<_>>();
        let sent = self.producer.send_all(&self.mentions_topic, messages).await;
        if let Err(error) = sent {
            self.screen.lock().unwrap_or_else(PoisonError::into_inner).forget(ids.iter().map(String::as_str));
            return Err(error);
        }
        self.observer.delivered(source, ids.len() as u64);
        self.observer.duplicates(source, screened.duplicates);
        self.observer.near_duplicates(source, screened.near_duplicates);
        Ok(Delivered { ids, duplicates: screened.duplicates, near_duplicates: screened.near_duplicates })
    }

    /// Sends input that `source` could not turn into mentions to the dead-letter topic,
    /// with its original bytes, and counts it.
    pub async fn reject(
        &self,
        source: &str,
        reason: Reason,
        error: &(dyn std::fmt::Display + Sync),
        location: String,
        original: Vec<u8>,
    ) -> Result<(), BusError> {
        tracing::warn!(source, %location, %error, "dead-lettering ingest input");
        let message = dead_letter("ingest", error, &Origin::Location(location), None, original);
        self.producer.send_all(&self.dead_letter_topic, vec![message]).await?;
        self.observer.dead_letters(source, reason, 1);
        Ok(())
    }
}
