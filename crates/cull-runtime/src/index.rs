//! The indexer stage: verdicts (with their mentions) and the tickets about them into
//! the analyst index.
//!
//! A ticket revision joins the document of the mention it carries (an incident also
//! those of the mentions it links), where the highest revision of each ticket id stays;
//! the verdict and the tickets of a mention may come in either order, since they come
//! from different topics. A record that is not a ticket is dead-lettered.
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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cull_bus::dead_letter::Reason;
use cull_bus::Record;
use cull_index::{IndexConfig, Indexer, Origin};
use cull_model::{Ticket, Verdict, TICKET_SCHEMA};

use crate::metrics::Metrics;
use crate::stage::{Output, Stage, StageError};
use crate::summary::Summary;

/// The stage name, in dead letters and metrics.
pub const NAME: &str = "index";

/// Writes verdicts into the analyst index.
#[derive(Debug)]
pub struct IndexStage {
    indexer: Indexer,
    /// The topics whose records are tickets; every other input holds verdicts.
    ticket_topics: BTreeSet<String>,
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
            ticket_topics: BTreeSet::new(),
            commit_docs: config.commit_docs,
            commit_every: Duration::from_secs(config.commit_secs),
            last_commit: Instant::now(),
            pending: false,
            metrics,
            summary,
        })
    }

    /// Reads the records of `topics` as tickets (the ticket topics of every queue).
    pub fn reading_tickets_from(mut self, topics: impl IntoIterator<Item = String>) -> IndexStage {
        self.ticket_topics = topics.into_iter().collect();
        self
    }

    /// Returns the index being written.
    pub fn index(&self) -> &cull_index::Index {
        self.indexer.index()
    }
}

/// Reads a `cull.ticket/v1` record that names its ticket and its mention.
pub(crate) fn parse_ticket(payload: &[u8]) -> Result<Ticket, String> {
    let ticket: Ticket = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if ticket.schema != TICKET_SCHEMA {
        return Err(format!("schema {:?}, expected {TICKET_SCHEMA:?}", ticket.schema));
    }
    if ticket.ticket_id.is_empty() || ticket.mention.id.is_empty() {
        return Err("an empty ticket_id or mention id".to_string());
    }
    Ok(ticket)
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
            if self.ticket_topics.contains(&record.topic) {
                match parse_ticket(&record.payload) {
                    Ok(ticket) => {
                        self.indexer
                            .add_ticket(&ticket, Some(origin))
                            .map_err(|e| StageError::new(NAME, e))?;
                    }
                    Err(error) => {
                        self.indexer.skip(origin);
                        out.dead_letter(record, &format!("not a ticket: {error}"), Reason::Schema);
                    }
                }
                continue;
            }
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

#[cfg(test)]
mod tests {
    use cull_index::{IndexConfig, Limits, Searcher};
    use cull_model::{Mention, VERDICT_SCHEMA};
    use serde_json::json;

    use super::*;

    fn record(topic: &str, offset: i64, payload: Vec<u8>) -> Record {
        Record { topic: topic.into(), offset, payload, ..Record::default() }
    }

    #[test]
    fn tickets_are_indexed_with_their_mention_and_a_bad_one_is_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let config = IndexConfig { dir: dir.path().join("index"), ..IndexConfig::default() };
        let (metrics, summary) = (Arc::new(Metrics::new()), Arc::new(Summary::default()));
        let mut stage = IndexStage::open(&config, metrics, summary)
            .unwrap()
            .reading_tickets_from(["cull.tickets".into()]);
        let mention = Mention::new("m1", "Slack is down");
        let ticket = json!({
            "schema": TICKET_SCHEMA, "ticket_id": "t1", "revision": 1, "created_at": "2026-11-20T10:00:00Z",
            "queue": "social", "priority": "P1", "priority_score": 80, "sla_due_at": "2026-11-20T10:30:00Z",
            "rule": { "id": "r", "name": "R", "version": "v" }, "mention": mention, "spans": [], "snippet": "",
        });
        let verdict = Verdict {
            schema: VERDICT_SCHEMA.into(),
            mention_id: "m1".into(),
            client: None,
            ruleset_version: "v".into(),
            matched: Vec::new(),
            culled: Vec::new(),
            mention: Some(mention.clone()),
        };
        let mut wrong_schema = ticket.clone();
        wrong_schema["schema"] = json!("cull.verdict/v1");
        let records = [
            record("cull.tickets", 0, serde_json::to_vec(&ticket).unwrap()),
            record("cull.tickets", 1, b"{not json".to_vec()),
            record("cull.tickets", 2, serde_json::to_vec(&wrong_schema).unwrap()),
            record("cull.verdicts", 0, serde_json::to_vec(&verdict).unwrap()),
        ];
        let mut out = Output::new(NAME);
        stage.process(&records, &mut out).unwrap();
        assert!(stage.flush(true).unwrap());
        let reasons: Vec<Reason> = out.dead_letters().iter().map(|(_, reason)| *reason).collect();
        assert_eq!(reasons, [Reason::Schema, Reason::Schema], "the two bad tickets, and only them");
        let searcher =
            Searcher::over(stage.index().clone(), cull_index::IndexSchema::new(), Limits::default()).unwrap();
        searcher.reload().unwrap();
        let found = searcher.mention(&cull_model::Scope::All, "m1").unwrap();
        assert_eq!(found.tickets.iter().map(|t| t.ticket_id.as_str()).collect::<Vec<_>>(), ["t1"]);
        assert!(stage.indexer.checkpoint().covers("cull.tickets", 0, 2), "the dead letters are past");
    }
}
