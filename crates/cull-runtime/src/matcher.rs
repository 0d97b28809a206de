//! The matcher stage: mentions in, one verdict per mention out.
//!
//! A batch is decoded, matched on the rayon pool against the rule set in use (a hot
//! reload swaps it between batches; each verdict names the version it was made with),
//! and every verdict goes to the verdicts topic carrying its mention, so that the
//! stages after it (tickets, the index, a file) need no second topic to join with. A
//! record that is not a mention is dead-lettered with the reason.

use std::sync::Arc;

use cull_bus::dead_letter::Reason;
use cull_bus::{Message, Record};
use cull_match::Matcher;
use cull_model::Mention;

use crate::metrics::{MatchStats, Metrics, Outcome};
use crate::stage::{Output, Stage, StageError};
use crate::summary::Summary;

/// The stage name, in dead letters and metrics.
pub const NAME: &str = "match";

/// Matches mentions against the rule set of a [`Matcher`].
#[derive(Debug)]
pub struct MatchStage {
    matcher: Arc<Matcher>,
    verdicts_topic: String,
    max_mention_bytes: usize,
    metrics: Arc<Metrics>,
    summary: Arc<Summary>,
}

impl MatchStage {
    /// Returns the stage matching with `matcher` and producing to `verdicts_topic`;
    /// mentions larger than `max_mention_bytes` are dead-lettered.
    pub fn new(
        matcher: Arc<Matcher>,
        verdicts_topic: &str,
        max_mention_bytes: usize,
        metrics: Arc<Metrics>,
        summary: Arc<Summary>,
    ) -> MatchStage {
        MatchStage {
            matcher,
            verdicts_topic: verdicts_topic.to_string(),
            max_mention_bytes,
            metrics,
            summary,
        }
    }
}

impl Stage for MatchStage {
    fn name(&self) -> &str {
        NAME
    }

    fn process(&mut self, records: &[Record], out: &mut Output) -> Result<(), StageError> {
        let mut stats = MatchStats::default();
        let mut mentions = Vec::with_capacity(records.len());
        for record in records {
            crate::fault::record(NAME, record);
            match Mention::from_json_limited(&record.payload, self.max_mention_bytes) {
                Ok(mention) => mentions.push(mention),
                Err(error) => {
                    tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, %error, "dead-lettering a record");
                    stats.record(Outcome::DeadLetter);
                    out.dead_letter(record, &error, Reason::from(&error));
                }
            }
        }
        let verdicts = self.matcher.verdicts(&mentions);
        // Mentions are copied for the decision table only while it wants rows; the
        // totals count every decision.
        let (keeps_decisions, wants_rows) =
            (self.summary.keeps_decisions(), self.summary.wants_decision_rows());
        let (mut decided, mut decision_totals) = (Vec::new(), (0, 0));
        for (mention, mut verdict) in mentions.into_iter().zip(verdicts) {
            let outcome = match (verdict.matched.is_empty(), verdict.culled.is_empty()) {
                (false, _) => Outcome::Matched,
                (true, false) => Outcome::Culled,
                (true, true) => Outcome::Unmatched,
            };
            stats.record(outcome);
            stats.verdict(&verdict);
            if keeps_decisions {
                decision_totals.0 += verdict.matched.len() as u64;
                decision_totals.1 += verdict.culled.len() as u64;
            }
            if wants_rows && outcome != Outcome::Unmatched {
                decided.push((mention.clone(), verdict.clone()));
            }
            // Keyed by thread, so that every mention of one issue reaches the one
            // ticketing replica that owns its partition (see `cull_model::thread`).
            let key = cull_model::thread::thread_key(&mention).into_bytes();
            verdict.mention = Some(mention);
            let payload = serde_json::to_vec(&verdict).map_err(|e| StageError::new(NAME, e))?;
            out.send(self.verdicts_topic.as_str(), Message { key: Some(key), payload, headers: Vec::new() });
        }
        // Counted last, so that a batch that panicked halfway (and is then processed
        // one record at a time) is not counted twice.
        self.summary.add_matches(
            records.len() as u64,
            stats.count(Outcome::Matched),
            stats.count(Outcome::Culled),
            stats.count(Outcome::Unmatched),
        );
        self.summary
            .add_decisions(decided.iter().map(|(mention, verdict)| (mention, verdict)), decision_totals);
        self.metrics.record_matches(&stats);
        Ok(())
    }

    fn panicked_on(&mut self, _record: &Record) {
        let mut stats = MatchStats::default();
        stats.record(Outcome::DeadLetter);
        self.summary.add_matches(1, 0, 0, 0);
        self.metrics.record_matches(&stats);
    }
}
