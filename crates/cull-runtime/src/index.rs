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
//! With `index.retention_days`, the stage deletes the mentions past the window at its
//! first flush and then every [`EXPIRE_EVERY`], in a commit with its checkpoint, and
//! the indexer refuses a replayed verdict of a mention that old
//! (`cull_index_mentions_expired_total` counts both).
//!
//! The indexer is shared ([`IndexStage::indexer`]) with the API of the same process,
//! whose operators erase mentions through it (`DELETE /api/mentions/{id}`): an index
//! has one writer, and the process that runs the stage holds it.
//!
//! [`Checkpoint`]: cull_index::Checkpoint

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cull_bus::dead_letter::Reason;
use cull_bus::Record;
use cull_index::{Added, IndexConfig, Indexer, Origin};
use cull_model::{Ticket, Verdict, TICKET_SCHEMA};
use time::OffsetDateTime;

use crate::metrics::Metrics;
use crate::stage::{Output, Stage, StageError};
use crate::summary::Summary;

/// The stage name, in dead letters and metrics.
pub const NAME: &str = "index";

/// How often the mentions past the retention window are deleted: a mention outlives
/// its window by this much at most (and the time to the next flush).
pub const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// Writes verdicts into the analyst index.
#[derive(Debug)]
pub struct IndexStage {
    indexer: Arc<Mutex<Indexer>>,
    /// Whether mentions expire (`index.retention_days`).
    expires: bool,
    /// When mentions were last expired; `None` before the first flush.
    last_expiry: Option<Instant>,
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
        let indexer = Indexer::open(&config.dir, config.threads, budget)
            .map_err(|e| StageError::new(NAME, e))?
            .with_retention(config.retention_days);
        tracing::info!(dir = %config.dir.display(), commit_docs = config.commit_docs, commit_secs = config.commit_secs, retention_days = ?config.retention_days, checkpoint = ?indexer.checkpoint(), "indexing");
        Ok(IndexStage {
            indexer: Arc::new(Mutex::new(indexer)),
            expires: config.retention_days.is_some(),
            last_expiry: None,
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

    /// Returns the indexer, shared with whoever else must write the index in this
    /// process (the API's erasures); the stage holds it for a batch or a flush at a time.
    pub fn indexer(&self) -> Arc<Mutex<Indexer>> {
        Arc::clone(&self.indexer)
    }

    /// Locks the indexer. A panic while it was held (a poison record, which the runner
    /// isolates) leaves it consistent: each record is an upsert.
    fn lock(&self) -> MutexGuard<'_, Indexer> {
        self.indexer.lock().unwrap_or_else(PoisonError::into_inner)
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
        let forgotten = self.lock().forget_beyond(log_ends);
        for (topic, partition, checkpoint) in forgotten {
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
        let (mut added, mut expired) = (0, 0);
        let indexer = Arc::clone(&self.indexer);
        let mut indexer = indexer.lock().unwrap_or_else(PoisonError::into_inner);
        for record in records {
            crate::fault::record(NAME, record);
            let origin = Origin { topic: &record.topic, partition: record.partition, offset: record.offset };
            if indexer.checkpoint().covers(origin.topic, origin.partition, origin.offset) {
                continue;
            }
            self.pending = true;
            if self.ticket_topics.contains(&record.topic) {
                match parse_ticket(&record.payload) {
                    Ok(ticket) => {
                        indexer.add_ticket(&ticket, Some(origin)).map_err(|e| StageError::new(NAME, e))?;
                    }
                    Err(error) => {
                        indexer.skip(origin);
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
                    match indexer.add(&verdict, Some(origin)).map_err(|e| StageError::new(NAME, e))? {
                        Added::Written => added += 1,
                        Added::Expired => expired += 1,
                        Added::Covered | Added::Erased => {}
                    }
                }
                Err(error) => {
                    indexer.skip(origin);
                    out.dead_letter(
                        record,
                        &format!("not a verdict with its mention: {error}"),
                        Reason::Schema,
                    );
                }
            }
        }
        self.metrics.record_indexed(added);
        self.metrics.record_index_expired(expired);
        self.summary.add_indexed(added);
        Ok(())
    }

    fn flush(&mut self, force: bool) -> Result<bool, StageError> {
        crate::fault::flush(NAME);
        let expiry_due = self.expires && self.last_expiry.is_none_or(|at| at.elapsed() >= EXPIRE_EVERY);
        if !self.pending && !expiry_due {
            return Ok(true);
        }
        let indexer = Arc::clone(&self.indexer);
        let mut indexer = indexer.lock().unwrap_or_else(PoisonError::into_inner);
        let due =
            indexer.uncommitted() >= self.commit_docs || self.last_commit.elapsed() >= self.commit_every;
        if !(force || due || expiry_due) {
            return Ok(false);
        }
        let started = Instant::now();
        let documents = indexer.uncommitted();
        if expiry_due {
            // Expiring commits too, with the checkpoint: the runner calls flush only
            // once what the batches produced was acknowledged.
            let expired = indexer.expire(OffsetDateTime::now_utc()).map_err(|e| StageError::new(NAME, e))?;
            self.metrics.record_index_expired(expired);
            self.last_expiry = Some(Instant::now());
            if expired > 0 {
                tracing::info!(expired, "mentions past index.retention_days deleted");
            }
        } else {
            indexer.commit().map_err(|e| StageError::new(NAME, e))?;
        }
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
            Searcher::over(stage.lock().index().clone(), cull_index::IndexSchema::new(), Limits::default())
                .unwrap();
        searcher.reload().unwrap();
        let found = searcher.mention(&cull_model::Scope::All, "m1").unwrap();
        assert_eq!(found.tickets.iter().map(|t| t.ticket_id.as_str()).collect::<Vec<_>>(), ["t1"]);
        assert!(stage.lock().checkpoint().covers("cull.tickets", 0, 2), "the dead letters are past");
    }

    fn verdict_record(offset: i64, mention: &Mention) -> Record {
        let verdict = Verdict {
            schema: VERDICT_SCHEMA.into(),
            mention_id: mention.id.clone(),
            client: None,
            ruleset_version: "v".into(),
            matched: Vec::new(),
            culled: Vec::new(),
            mention: Some(mention.clone()),
        };
        record("cull.verdicts", offset, serde_json::to_vec(&verdict).unwrap())
    }

    #[test]
    fn the_stage_expires_old_mentions_at_its_first_flush_and_erasures_stick_through_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let dated = |id: &str, days_ago: i64| {
            let mut mention = Mention::new(id, "Slack is down");
            let at = now - time::Duration::days(days_ago);
            mention.published_at = Some(at.format(&time::format_description::well_known::Rfc3339).unwrap());
            mention
        };
        let (old, recent, erased) = (dated("old", 100), dated("recent", 1), dated("erased", 2));
        let records = [verdict_record(0, &old), verdict_record(1, &recent), verdict_record(2, &erased)];
        let open = |retention_days: Option<u32>| {
            let config =
                IndexConfig { dir: dir.path().join("index"), retention_days, ..IndexConfig::default() };
            let metrics = Arc::new(Metrics::new());
            (IndexStage::open(&config, Arc::clone(&metrics), Arc::new(Summary::default())).unwrap(), metrics)
        };
        let expired = |metrics: &Metrics| {
            crate::metrics::tests::sample(&metrics.render(), "cull_index_mentions_expired_total")
        };
        let ids = |stage: &IndexStage| {
            let searcher = Searcher::over(
                stage.lock().index().clone(),
                cull_index::IndexSchema::new(),
                Limits::default(),
            )
            .unwrap();
            searcher.reload().unwrap();
            let found =
                searcher.search(&cull_model::Scope::All, &cull_index::SearchRequest::default()).unwrap();
            let mut ids: Vec<String> = found.hits.into_iter().map(|hit| hit.id).collect();
            ids.sort();
            ids
        };
        // Indexed without a retention.
        let (mut stage, _) = open(None);
        stage.process(&records, &mut Output::new(NAME)).unwrap();
        assert!(stage.flush(true).unwrap());
        assert_eq!(ids(&stage), ["erased", "old", "recent"]);
        drop(stage);

        // With 30 days, the first flush deletes the old mention, idle as the stage is.
        let (mut stage, metrics) = open(Some(30));
        assert!(stage.flush(false).unwrap(), "a flush that expires commits");
        assert_eq!(ids(&stage), ["erased", "recent"]);
        assert_eq!(expired(&metrics), Some(1.0));
        // The API erases through the shared indexer, while the stage runs.
        let answers =
            stage.indexer().lock().unwrap().erase(&cull_model::Scope::All, &["erased".into()]).unwrap();
        assert!(answers[0].found);
        assert_eq!(ids(&stage), ["recent"]);
        drop(stage);

        // A restart and a replay of the whole topic past a forgotten checkpoint (the
        // bus directory replaced): neither the expired nor the erased mention returns.
        let (mut stage, metrics) = open(Some(30));
        stage.start(&[("cull.verdicts".into(), 0, 0)]);
        stage.process(&records, &mut Output::new(NAME)).unwrap();
        assert!(stage.flush(true).unwrap());
        assert_eq!(ids(&stage), ["recent"]);
        assert_eq!(expired(&metrics), Some(1.0), "the replayed old mention is counted, not indexed");
    }
}
