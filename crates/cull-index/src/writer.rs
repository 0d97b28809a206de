//! Writing the analyst index, with the consumed offsets and the erased mentions in
//! each commit.
//!
//! Two things delete mentions, and both must survive a replay of the bus, which hands
//! the indexer every verdict again when a checkpoint is older than the log (a consumer
//! group reset, an index restored from a backup, a rebuild):
//!
//! * **Retention** (`index.retention_days`) deletes the mentions whose time (see
//!   [`mention_time`]) is older than the window, and [`Indexer::add`] refuses a verdict
//!   whose mention is that old, so a replay cannot bring it back.
//! * **Erasure** ([`Indexer::erase`], a data subject's request) deletes a mention by id
//!   and keeps its id as a tombstone in the commit payload, in the same commit as the
//!   deletion; [`Indexer::add`] and [`Indexer::add_ticket`] refuse a tombstoned id, so
//!   the erasure sticks whatever is replayed. A tombstone is kept for good: the bus
//!   may hold the mention for as long as its retention says, and a tombstone is an id,
//!   not the mention.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use cull_model::{Scope, Ticket, TicketKind, Verdict};
use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::error::LockError;
use tantivy::directory::MmapDirectory;
use tantivy::index::SegmentId;
use tantivy::query::{RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, TantivyError, Term};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::IndexError;
use crate::schema::{date, mention_time, IndexSchema};

/// The next offset to index, per topic and partition: what the index holds.
///
/// It is written into each Tantivy commit as the commit's payload, so the documents
/// and the offsets they came from are made durable by one atomic step. After a crash
/// the index holds exactly the records before the checkpoint, and the indexer skips
/// any record the checkpoint covers, whatever offsets the consumer group replays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    offsets: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl Checkpoint {
    /// Returns true when the record at `offset` is already in the index.
    pub fn covers(&self, topic: &str, partition: i32, offset: i64) -> bool {
        self.next(topic, partition).is_some_and(|next| offset < next)
    }

    /// Returns the next offset to index on a partition, if any record of it was.
    pub fn next(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(topic)?.get(&partition).copied()
    }

    /// Forgets the offsets of the partitions whose checkpoint lies beyond `ends` (the
    /// offset the next record of each will get) and returns them: such a checkpoint
    /// was made against another log (the embedded bus's directory was removed, a Kafka
    /// topic recreated), and keeping it would skip the new log's first records.
    pub fn forget_beyond(&mut self, ends: &[(String, i32, i64)]) -> Vec<(String, i32, i64)> {
        let mut forgotten = Vec::new();
        for (topic, partition, end) in ends {
            if let Some(partitions) = self.offsets.get_mut(topic) {
                if let Some(next) = partitions.get(partition).copied().filter(|next| next > end) {
                    partitions.remove(partition);
                    forgotten.push((topic.clone(), *partition, next));
                }
            }
        }
        forgotten
    }

    /// Moves the checkpoint past the record at `offset`.
    pub fn advance(&mut self, topic: &str, partition: i32, offset: i64) {
        let next = self.offsets.entry(topic.to_string()).or_default().entry(partition).or_insert(0);
        *next = (*next).max(offset + 1);
    }
}

/// The ids of the erased mentions, each with the scopes that erased it: `None` for the
/// contact center's staff (every client's mention of that id), a client's name for
/// that client's operators (its own mention of that id only, so that one client can
/// never keep another's mention out of the index).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
struct Tombstones(BTreeMap<String, BTreeSet<Option<String>>>);

impl Tombstones {
    /// Returns true when the mention `id` of `client` was erased.
    fn covers(&self, id: &str, client: Option<&str>) -> bool {
        self.0.get(id).is_some_and(|erasers| {
            erasers.iter().any(|eraser| eraser.is_none() || eraser.as_deref() == client)
        })
    }

    fn insert(&mut self, id: &str, scope: &Scope) {
        self.0.entry(id.to_string()).or_default().insert(scope.client().map(str::to_string));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a commit records beside its documents, as the commit's payload, so that both
/// are made durable by one atomic step. An index written before erasure existed has
/// a payload of the checkpoint alone, which reads as one without tombstones.
/// (The checkpoint's fields are spelled out rather than flattened: serde's flatten
/// cannot read the partitions' integer keys back.)
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Payload {
    #[serde(default)]
    offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    #[serde(default, skip_serializing_if = "Tombstones::is_empty")]
    erased: Tombstones,
}

/// What became of a verdict given to [`Indexer::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Its mention's document was written.
    Written,
    /// The last commit already covers its offset: nothing to do.
    Covered,
    /// Its mention was erased: it is not indexed again.
    Erased,
    /// Its mention is older than the retention window: it is not indexed again.
    Expired,
}

/// The answer to the erasure of one mention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Erasure {
    /// The mention id.
    pub id: String,
    /// Whether the index held the mention (within the scope of the request); either
    /// way the id is tombstoned, so the mention is not indexed if it comes later.
    pub found: bool,
}

/// Where a record came from on the bus, for the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// What the index holds of one mention: its verdict, once it came, and the tickets
/// about it.
#[derive(Debug, Clone, Default)]
struct Entry {
    verdict: Option<Verdict>,
    /// The stored time of a mention that has no time of its own, kept when the
    /// document is rewritten.
    at: Option<OffsetDateTime>,
    /// The highest revision of each ticket, ordered by ticket id.
    tickets: Vec<Ticket>,
}

impl Entry {
    /// Keeps `ticket` unless a revision at least as high is held; returns whether the
    /// entry changed.
    fn keep(&mut self, ticket: &Ticket) -> bool {
        match self.tickets.binary_search_by(|held| held.ticket_id.cmp(&ticket.ticket_id)) {
            Ok(at) if self.tickets[at].revision >= ticket.revision => false,
            Ok(at) => {
                self.tickets[at] = ticket.clone();
                true
            }
            Err(at) => {
                self.tickets.insert(at, ticket.clone());
                true
            }
        }
    }
}

/// Writes verdicts (with their mentions) and the tickets about them into the index.
pub struct Indexer {
    index: Index,
    writer: IndexWriter,
    /// Reads the last commit, where a verdict or a ticket finds what the document of
    /// its mention already holds.
    reader: IndexReader,
    schema: IndexSchema,
    dir: PathBuf,
    committed: Checkpoint,
    pending: Checkpoint,
    /// The erased mentions, as of the last commit (an erasure commits at once).
    erased: Tombstones,
    /// How long a mention is kept, counted from its time; `None` keeps it for good.
    retention: Option<time::Duration>,
    uncommitted: usize,
    /// The mentions written since the last commit, which the reader cannot see yet.
    written: HashMap<String, Entry>,
}

impl std::fmt::Debug for Indexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexer").field("dir", &self.dir).field("uncommitted", &self.uncommitted).finish()
    }
}

/// Opens the index in `dir`, creating the directory and the index when missing, and
/// rebuilding one written by an earlier version of cull (see [`crate::migrate`]).
pub(crate) fn open_index(dir: &Path, schema: &IndexSchema) -> Result<Index, IndexError> {
    let open_error = |message: String| IndexError::Open { path: dir.to_path_buf(), message };
    crate::migrate::recover(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
    if let Some(existing) = crate::migrate::open_existing(dir)? {
        if existing.schema() != *schema.schema() {
            let carried = crate::migrate::migrate(dir, existing, schema)?;
            tracing::info!(dir = %dir.display(), documents = carried, "rebuilt the index with the current schema");
        }
    }
    let directory = MmapDirectory::open(dir).map_err(|e| open_error(e.to_string()))?;
    let index = Index::open_or_create(directory, schema.schema().clone()).map_err(|e| {
        open_error(format!("{e} (an index written by another version of cull? remove it to rebuild)"))
    })?;
    schema.mention.register_tokenizers(&index);
    Ok(index)
}

impl Indexer {
    /// Opens (or creates) the index in `dir` for writing with `threads` indexing
    /// threads sharing `memory_budget` bytes of buffers; fails with
    /// [`IndexError::Locked`] when another indexer holds it.
    pub fn open(dir: &Path, threads: usize, memory_budget: usize) -> Result<Indexer, IndexError> {
        let schema = IndexSchema::new();
        let index = open_index(dir, &schema)?;
        let threads = threads.max(1);
        // Tantivy wants at least 15 MB per thread.
        let budget = memory_budget.max(threads * 15_000_000);
        let writer = index.writer_with_num_threads(threads, budget).map_err(|e| match e {
            TantivyError::LockFailure(LockError::LockBusy, _) => {
                IndexError::Locked { path: dir.to_path_buf() }
            }
            other => IndexError::Open { path: dir.to_path_buf(), message: format!("cannot write: {other}") },
        })?;
        let payload: Payload = match index.load_metas()?.payload {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| IndexError::Record(format!("commit payload {json:?}: {e}")))?,
            None => Payload::default(),
        };
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Indexer {
            index,
            writer,
            reader,
            schema,
            dir: dir.to_path_buf(),
            pending: Checkpoint { offsets: payload.offsets.clone() },
            committed: Checkpoint { offsets: payload.offsets },
            erased: payload.erased,
            retention: None,
            uncommitted: 0,
            written: HashMap::new(),
        })
    }

    /// Keeps mentions `days` days from their time at most (`None`: for good); see
    /// [`Indexer::expire`].
    pub fn with_retention(mut self, days: Option<u32>) -> Indexer {
        self.retention = days.map(|days| time::Duration::days(days.into()));
        self
    }

    /// Returns the time before which a mention is past the retention window at `now`.
    fn cutoff(&self, now: OffsetDateTime) -> Option<tantivy::DateTime> {
        self.retention.map(|retention| date(now - retention))
    }

    /// Returns the checkpoint of the last commit.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.committed
    }

    /// Drops the checkpoint of partitions that end before it (see
    /// [`Checkpoint::forget_beyond`]); returns them. The next commit makes it durable.
    pub fn forget_beyond(&mut self, ends: &[(String, i32, i64)]) -> Vec<(String, i32, i64)> {
        self.pending.forget_beyond(ends);
        self.committed.forget_beyond(ends)
    }

    /// Returns the documents added since the last commit.
    pub fn uncommitted(&self) -> usize {
        self.uncommitted
    }

    /// Returns the index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Returns the schema.
    pub fn schema(&self) -> &IndexSchema {
        &self.schema
    }

    /// Adds a verdict and its mention, replacing any earlier document of the same
    /// mention (and keeping the tickets it held). Adds nothing when the last commit
    /// already covers `origin`, when the mention was erased, or when it is older than
    /// the retention window (a replay of the bus brings neither back). The verdict
    /// must carry its mention (as verdicts on the topic do).
    pub fn add(&mut self, verdict: &Verdict, origin: Option<Origin<'_>>) -> Result<Added, IndexError> {
        if origin.is_some_and(|o| self.committed.covers(o.topic, o.partition, o.offset)) {
            return Ok(Added::Covered);
        }
        if let Some(origin) = origin {
            self.pending.advance(origin.topic, origin.partition, origin.offset);
        }
        // The document is indexed under its mention's id: replace by that.
        let id = verdict.mention.as_ref().map_or(verdict.mention_id.as_str(), |m| m.id.as_str());
        let client = verdict.mention.as_ref().and_then(|m| m.client.as_deref());
        if self.erased.covers(id, client) {
            return Ok(Added::Erased);
        }
        let time = verdict.mention.as_ref().and_then(mention_time);
        if let (Some(time), Some(cutoff)) = (time, self.cutoff(OffsetDateTime::now_utc())) {
            if time < cutoff {
                return Ok(Added::Expired);
            }
        }
        let mut entry = self.entry(id)?;
        entry.verdict = Some(verdict.clone());
        self.write(id, entry)?;
        Ok(Added::Written)
    }

    /// Adds a ticket revision to the document of the mention it carries and, for an
    /// incident, of every mention it links, keeping the highest revision of each ticket
    /// id there; a mention whose verdict has not come yet gets a document of its
    /// tickets that the verdict later joins. Returns the documents written (none when
    /// the last commit covers `origin`, a revision as high was held, or the ticket's
    /// mention is older than the retention window); an erased mention gets no document.
    pub fn add_ticket(&mut self, ticket: &Ticket, origin: Option<Origin<'_>>) -> Result<usize, IndexError> {
        if origin.is_some_and(|o| self.committed.covers(o.topic, o.partition, o.offset)) {
            return Ok(0);
        }
        if let Some(origin) = origin {
            self.pending.advance(origin.topic, origin.partition, origin.offset);
        }
        let time = mention_time(&ticket.mention);
        if let (Some(time), Some(cutoff)) = (time, self.cutoff(OffsetDateTime::now_utc())) {
            if time < cutoff {
                return Ok(0);
            }
        }
        let mut mentions = vec![ticket.mention.id.as_str()];
        if ticket.kind == TicketKind::Incident {
            mentions.extend(ticket.links.iter().map(String::as_str).filter(|id| *id != ticket.mention.id));
        }
        let client = ticket.client.as_deref();
        mentions.retain(|id| !self.erased.covers(id, client));
        let mut written = 0;
        for id in mentions {
            let mut entry = self.entry(id)?;
            if entry.keep(ticket) {
                self.write(id, entry)?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// Returns what the index holds of mention `id`: written since the last commit,
    /// else in it, else nothing yet.
    fn entry(&self, id: &str) -> Result<Entry, IndexError> {
        if let Some(entry) = self.written.get(id) {
            return Ok(entry.clone());
        }
        let searcher = self.reader.searcher();
        let term = Term::from_field_text(self.schema.mention.id_field(), id);
        let hits =
            searcher.search(&TermQuery::new(term, IndexRecordOption::Basic), &TopDocs::with_limit(1))?;
        let Some((_, address)) = hits.first() else { return Ok(Entry::default()) };
        let document: TantivyDocument = searcher.doc(*address)?;
        let at = self.schema.at(&document).and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
        Ok(Entry { verdict: self.schema.record(&document), at, tickets: self.schema.tickets(&document) })
    }

    /// Replaces the document of mention `id` by one of `entry`.
    fn write(&mut self, id: &str, entry: Entry) -> Result<(), IndexError> {
        let document = match &entry.verdict {
            Some(verdict) => {
                let now = entry.at.unwrap_or_else(OffsetDateTime::now_utc);
                self.schema.document(verdict, &entry.tickets, now).ok_or_else(|| {
                    IndexError::Record(format!("the verdict of {:?} carries no mention", verdict.mention_id))
                })?
            }
            None => {
                // Dated by its earliest ticket, so that retention deletes it in time.
                let created = entry
                    .tickets
                    .iter()
                    .filter_map(|t| OffsetDateTime::parse(&t.created_at, &Rfc3339).ok())
                    .min();
                let at = entry.at.or(created).unwrap_or_else(OffsetDateTime::now_utc);
                self.schema.tickets_document(id, &entry.tickets, at)
            }
        };
        self.writer.delete_term(Term::from_field_text(self.schema.mention.id_field(), id));
        self.writer.add_document(document)?;
        self.written.insert(id.to_string(), entry);
        self.uncommitted += 1;
        Ok(())
    }

    /// Notes that a record at `origin` needs no document (it was dead-lettered), so
    /// that the checkpoint moves past it.
    pub fn skip(&mut self, origin: Origin<'_>) {
        self.pending.advance(origin.topic, origin.partition, origin.offset);
    }

    /// Makes everything added durable, with the checkpoint as the commit's payload.
    pub fn commit(&mut self) -> Result<(), IndexError> {
        self.commit_at(self.pending.clone())
    }

    /// Commits, with `checkpoint` and the tombstones as the payload.
    fn commit_at(&mut self, checkpoint: Checkpoint) -> Result<(), IndexError> {
        let payload = Payload { offsets: checkpoint.offsets, erased: self.erased.clone() };
        let json = serde_json::to_string(&payload).expect("a payload always serializes");
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&json);
        prepared.commit()?;
        self.reader.reload()?;
        self.committed = Checkpoint { offsets: payload.offsets };
        self.uncommitted = 0;
        self.written.clear();
        Ok(())
    }

    /// Deletes the documents older than the retention window at `now` and commits like
    /// [`Indexer::commit`] (call it where that may be called); returns how many it
    /// deleted. Nothing to do without a retention.
    pub fn expire(&mut self, now: OffsetDateTime) -> Result<u64, IndexError> {
        let Some(cutoff) = self.cutoff(now) else { return Ok(0) };
        let older = || {
            let term = Term::from_field_date(self.schema.at, cutoff);
            RangeQuery::new(Bound::Unbounded, Bound::Excluded(term))
        };
        // Counted in the last commit: what was written since is newer (`add` refuses
        // older mentions) but for seconds of drift, which are deleted uncounted.
        let expired = self.reader.searcher().search(&older(), &Count)? as u64;
        self.writer.delete_query(Box::new(older()))?;
        self.commit()?;
        Ok(expired)
    }

    /// Erases the mentions `ids` within `scope` (a data subject's request): deletes
    /// their documents and tombstones their ids, and commits both at once, so that the
    /// erasure is durable when this returns and sticks whatever the bus replays. A
    /// mention of another client than `scope`'s is not found, as a missing one, and
    /// stays; the tombstone of a client's erasure keeps only that client's mention of
    /// the id out.
    ///
    /// The commit carries the checkpoint of the last commit, not the offsets added
    /// since: those move only when the indexer stage commits, once what their batch
    /// produced (dead letters) was acknowledged. Documents committed ahead of their
    /// offsets are harmless: a replay upserts them.
    pub fn erase(&mut self, scope: &Scope, ids: &[String]) -> Result<Vec<Erasure>, IndexError> {
        let mut answers = Vec::with_capacity(ids.len());
        for id in ids {
            let entry = self.entry(id)?;
            let client = match &entry.verdict {
                Some(verdict) => verdict.mention.as_ref().and_then(|m| m.client.clone()),
                None => entry.tickets.first().and_then(|t| t.client.clone()),
            };
            let held = entry.verdict.is_some() || !entry.tickets.is_empty();
            let found = held && scope.admits(client.as_deref());
            if found {
                self.writer.delete_term(Term::from_field_text(self.schema.mention.id_field(), id));
                self.written.remove(id.as_str());
            }
            self.erased.insert(id, scope);
            answers.push(Erasure { id: id.clone(), found });
        }
        self.commit_at(self.committed.clone())?;
        if answers.iter().any(|erasure| erasure.found) {
            self.purge_deleted();
        }
        Ok(answers)
    }

    /// Rewrites the segments that hold deleted documents without them, and removes the
    /// files they leave: a deletion only marks a document in its segment, and an
    /// erased mention's text must leave the disk now, not at some later merge. A merge
    /// that fails (a segment Tantivy is merging already, which drops the document
    /// itself) is logged: the mention is deleted and tombstoned either way.
    fn purge_deleted(&mut self) {
        let purged = (|| -> Result<(), IndexError> {
            let segments: Vec<SegmentId> = self
                .index
                .searchable_segment_metas()?
                .iter()
                .filter(|meta| meta.has_deletes())
                .map(|meta| meta.id())
                .collect();
            if !segments.is_empty() {
                self.writer.merge(&segments).wait()?;
                self.writer.garbage_collect_files().wait()?;
                self.reader.reload()?;
            }
            Ok(())
        })();
        if let Err(error) = purged {
            tracing::warn!(dir = %self.dir.display(), %error, "erased documents stay in their segment files until the next merge");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_beyond_the_end_of_its_log_is_forgotten() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.advance("verdicts", 0, 4);
        checkpoint.advance("verdicts", 1, 9);
        checkpoint.advance("other", 0, 2);
        let forgotten = checkpoint.forget_beyond(&[
            ("verdicts".into(), 0, 3),
            ("verdicts".into(), 1, 10),
            ("new".into(), 0, 0),
        ]);
        assert_eq!(
            forgotten,
            [("verdicts".to_string(), 0, 5)],
            "offset 5 was checkpointed, the log ends at 3"
        );
        assert!(!checkpoint.covers("verdicts", 0, 0), "the new log's first record is indexed");
        assert!(checkpoint.covers("verdicts", 1, 9) && checkpoint.covers("other", 0, 2));
    }
}
