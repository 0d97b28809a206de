//! A stage's changelog: the topic its state records go to, read back before every
//! batch, so that its state survives a restart and follows its partitions to another
//! replica (as a Kafka Streams changelog does).
//!
//! Why before every batch and not only at the start: on Kafka the replica that takes a
//! partition over must know what its previous owner acknowledged on it. The previous
//! owner's state records were acknowledged before it committed the input's offsets,
//! which was before this replica could fetch the records after them; so reading the
//! changelog to its end *after* fetching a batch and *before* processing it is enough,
//! whatever the partitions did in between. The read is one look and one exact lag
//! when nothing is new.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cull_bus::Consumer;
use tokio::time::Instant;

use crate::runtime::{send, Shared};
use crate::stage::{restore_isolated, Stage};
use crate::RuntimeError;

/// Changelog records handed to a stage at once at most.
const RESTORE_BATCH: usize = 4096;
/// How long a look waits for records that the exact lag says are there but the
/// reader has not fetched yet.
const FETCH_WAIT: Duration = Duration::from_millis(100);

/// The reader of one stage's changelog.
pub(crate) struct Changelog {
    topic: String,
    reader: Consumer,
    /// How long reading may go without progress before the stage fails.
    patience: Duration,
}

/// How far a look at the changelog goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// To the end: before a batch is processed.
    End,
    /// What the reader has fetched already: while the input is idle, so that the
    /// stage's own records do not pile up in the reader.
    Fetched,
}

impl Changelog {
    /// Creates `topic` when missing and returns a reader of it from its oldest record
    /// (see [`crate::Bus::changelog_reader`]).
    pub(crate) async fn open(
        shared: &Shared,
        stage: &str,
        group: &str,
        topic: String,
    ) -> Result<Changelog, RuntimeError> {
        let bus_error = |source| RuntimeError::Bus { stage: stage.to_string(), source };
        shared.bus.ensure_topics(&[&topic]).await.map_err(bus_error)?;
        let reader = shared.bus.changelog_reader(&topic, &reader_group(group)).map_err(bus_error)?;
        tracing::info!(stage, topic, "reading the stage's state back from its changelog");
        Ok(Changelog { topic, reader, patience: shared.bus.changelog_patience() })
    }

    /// Reads what is new on the changelog (to its end, or what is fetched) and hands it
    /// to the stage; returns false when the run stopped hard (or the bus closed)
    /// first. Fails the stage when the end is not reached within the patience
    /// without progress: it would go on with part of its state.
    pub(crate) async fn catch_up(
        &mut self,
        shared: &Shared,
        name: &str,
        stage: &mut Option<Box<dyn Stage>>,
        reach: Reach,
    ) -> Result<bool, RuntimeError> {
        let bus_error = |source| RuntimeError::Bus { stage: name.to_string(), source };
        let mut wait = Duration::ZERO;
        let mut deadline = Instant::now() + self.patience;
        loop {
            let next = tokio::select! {
                next = self.reader.next_batch(RESTORE_BATCH, Duration::ZERO, wait) => next.map_err(bus_error)?,
                () = shared.hard_stopped() => return Ok(false),
            };
            let Some(records) = next else { return Ok(false) };
            if !records.is_empty() {
                deadline = Instant::now() + self.patience;
                if !restore(shared, name, stage, records).await? {
                    return Ok(false);
                }
            }
            if reach == Reach::Fetched {
                return Ok(true);
            }
            // A broker away is waited for like a reader not assigned yet: the
            // patience bounds both.
            let left = match self.reader.exact_lag().await {
                Ok(Some(0)) => return Ok(true),
                Ok(Some(records)) => format!("{records} record(s) were left to read"),
                Ok(None) => "no partition of it was assigned to the reader".to_string(),
                Err(error) => format!("the bus did not say where it ends ({error})"),
            };
            if Instant::now() >= deadline {
                return Err(RuntimeError::Changelog {
                    stage: name.to_string(),
                    topic: self.topic.clone(),
                    waited: self.patience,
                    left,
                });
            }
            wait = FETCH_WAIT;
        }
    }

    /// Closes the reader: on Kafka it leaves its group at once.
    pub(crate) async fn close(self, name: &str) {
        if let Err(error) = self.reader.close().await {
            tracing::warn!(stage = name, topic = %self.topic, %error, "closing the changelog reader");
        }
    }
}

/// Returns the group of a changelog reader of the stage in `group` on Kafka: one of
/// its own per start, so that it reads every partition from the earliest offset. It
/// never commits, so the broker drops it once it is empty.
fn reader_group(group: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{group}.changelog.{}.{nanos}", std::process::id())
}

/// Hands `records` to the stage's restore on a blocking thread, dead-letters the ones
/// it panicked on alone, and counts them; false when the run stopped hard while the
/// dead letters were being sent.
async fn restore(
    shared: &Shared,
    name: &str,
    stage: &mut Option<Box<dyn Stage>>,
    records: Vec<cull_bus::Record>,
) -> Result<bool, RuntimeError> {
    let count = records.len() as u64;
    let mut taken = stage.take().expect("the stage is back after every batch");
    let (taken, isolated) = tokio::task::spawn_blocking(move || {
        let isolated = restore_isolated(&mut *taken, &records);
        (taken, isolated)
    })
    .await
    .map_err(|join| RuntimeError::Panicked {
        task: format!("the {name} stage, restoring its changelog"),
        message: join.to_string(),
    })?;
    *stage = Some(taken);
    for _ in 0..isolated.panics {
        shared.metrics.record_panic(name);
    }
    shared.metrics.record_restored(name, count);
    Ok(send(shared, name, isolated.output).await)
}
