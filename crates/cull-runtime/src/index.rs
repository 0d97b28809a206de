//! The indexer stage: verdicts (with their mentions) into the analyst index.
//!
//! It commits the index every `index.commit_docs` documents or `index.commit_secs`
//! seconds, with the offsets it consumed in the commit itself ([`Checkpoint`]), and
//! the runner commits the consumer group's offsets only after that. A crash between
//! the two replays records the index already holds; the checkpoint makes the indexer
//! skip them, and documents are upserted by mention id, so the index holds every
//! verdict exactly once.
//!
//! A checkpoint beyond the end of the log it was made against (the embedded bus's
//! directory was removed while the index was kept) is forgotten at start, with a
//! warning: the new log's offsets start over, and a stale checkpoint would skip them.
//!
//! [`Checkpoint`]: cull_index::Checkpoint

use std::sync::Arc;
use std::time::{Duration, Instant};

use cull_bus::dead_letter::Reason;
use cull_bus::Record;
use cull_index::{IndexConfig, Indexer, Origin};
use cull_model::Verdict;

use crate::metrics::Metrics;
use crate::stage::{Output, Stage, StageError};
use crate::summary::Summary;

/// The stage name, in dead letters and metrics.
pub const NAME: &str = "index";

/// Writes verdicts into the analyst index.
#[derive(Debug)]
pub struct IndexStage {
    indexer: Indexer,
    commit_docs: usize,
    commit_every: Duration,
    last_commit: Instant,
    /// Records processed since the last commit, documents or not.
    pending: bool,
    metrics: Arc<Metrics>,
    summary: Arc<Summary>,
}

impl IndexStage {
    /// Opens (or creates) the index of `config` for writing.
    pub fn open(
        config: &IndexConfig,
        metrics: Arc<Metrics>,
        summary: Arc<Summary>,
    ) -> Result<IndexStage, StageError> {
        let budget = config.memory_mb * 1024 * 1024;
        let indexer =
            Indexer::open(&config.dir, config.threads, budget).map_err(|e| StageError::new(NAME, e))?;
        tracing::info!(dir = %config.dir.display(), commit_docs = config.commit_docs, commit_secs = config.commit_secs, checkpoint = ?indexer.checkpoint(), "indexing");
        Ok(IndexStage {
            indexer,
            commit_docs: config.commit_docs,
            commit_every: Duration::from_secs(config.commit_secs),
            last_commit: Instant::now(),
            pending: false,
            metrics,
            summary,
        })
    }

    /// Returns the index being written.
    pub fn index(&self) -> &cull_index::Index {
        self.indexer.index()
    }
}

impl Stage for IndexStage {
    fn name(&self) -> &str {
        NAME
    }

    fn start(&mut self, log_ends: &[(String, i32, i64)]) {
        for (topic, partition, checkpoint) in self.indexer.forget_beyond(log_ends) {
            tracing::warn!(
                topic,
                partition,
                checkpoint,
                "the index's checkpoint is beyond the end of the log (the bus directory was replaced?): indexing this log from its start"
            );
            self.pending = true;
        }
    }

    fn process(&mut self, records: &[Record], out: &mut Output) -> Result<(), StageError> {
        let mut added = 0;
        for record in records {
            crate::fault::record(NAME, record);
            let origin = Origin { topic: &record.topic, partition: record.partition, offset: record.offset };
            if self.indexer.checkpoint().covers(origin.topic, origin.partition, origin.offset) {
                continue;
            }
            self.pending = true;
            let parsed = serde_json::from_slice::<Verdict>(&record.payload)
                .map_err(|e| e.to_string())
                .and_then(|verdict| match verdict.mention {
                    Some(_) => Ok(verdict),
                    None => Err(format!("the verdict of {:?} carries no mention", verdict.mention_id)),
                });
            match parsed {
                Ok(verdict) => {
                    if self.indexer.add(&verdict, Some(origin)).map_err(|e| StageError::new(NAME, e))? {
                        added += 1;
                    }
                }
                Err(error) => {
                    self.indexer.skip(origin);
                    out.dead_letter(
                        record,
                        &format!("not a verdict with its mention: {error}"),
                        Reason::Schema,
                    );
                }
            }
        }
        self.metrics.record_indexed(added);
        self.summary.add_indexed(added);
        Ok(())
    }

    fn flush(&mut self, force: bool) -> Result<bool, StageError> {
        crate::fault::flush(NAME);
        if !self.pending {
            return Ok(true);
        }
        let due =
            self.indexer.uncommitted() >= self.commit_docs || self.last_commit.elapsed() >= self.commit_every;
        if !(force || due) {
            return Ok(false);
        }
        let started = Instant::now();
        let documents = self.indexer.uncommitted();
        self.indexer.commit().map_err(|e| StageError::new(NAME, e))?;
        self.metrics.record_index_commit(started.elapsed());
        tracing::info!(documents, took_ms = started.elapsed().as_millis() as u64, "index committed");
        (self.last_commit, self.pending) = (Instant::now(), false);
        Ok(true)
    }
}
