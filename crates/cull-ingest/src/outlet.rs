//! The handoff from a source to the bus.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use cull_bus::dead_letter::{dead_letter, Origin, Reason};
use cull_bus::{BusError, Message, Producer};
use cull_model::Mention;
use time::OffsetDateTime;

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
#[derive(Debug, Clone)]
pub struct Outlet {
    producer: Producer,
    /// `None`: nothing reads the topic in this (embedded) process; do not send.
    mentions_topic: Option<String>,
    dead_letter_topic: Option<String>,
    screen: Arc<Mutex<Screen>>,
    observer: Arc<dyn Observer>,
}

impl Outlet {
    /// Returns an outlet producing to the given topics (`None`: discard, for embedded
    /// topics nobody reads) and screening through `screen`.
    pub fn new(
        producer: Producer,
        mentions_topic: Option<String>,
        dead_letter_topic: Option<String>,
        screen: Arc<Mutex<Screen>>,
        observer: Arc<dyn Observer>,
    ) -> Outlet {
        Outlet { producer, mentions_topic, dead_letter_topic, screen, observer }
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
        let mentions: Vec<Mention> = drafts.into_iter().map(|draft| normalize(draft, now)).collect();
        self.deliver_mentions(source, mentions).await
    }

    /// As [`Outlet::deliver`], for mentions already normalized.
    pub async fn deliver_mentions(
        &self,
        source: &str,
        mentions: Vec<Mention>,
    ) -> Result<Delivered, BusError> {
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
        let sent = match (&self.mentions_topic, messages.is_empty()) {
            (Some(topic), false) => self.producer.send_all(topic, messages).await,
            _ => Ok(()),
        };
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
        if let Some(topic) = &self.dead_letter_topic {
            self.producer.send_all(topic, vec![message]).await?;
        }
        self.observer.dead_letters(source, reason, 1);
        Ok(())
    }
}
