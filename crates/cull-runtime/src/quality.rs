//! The quality stage: per-rule counts, costs and precision into the rule-stats store.
//!
//! It reads the verdicts (matches and culls per clause), the ticket topics (tickets
//! per rule, their mentions and authors) and the agents' dispositions (precision), in
//! a consumer group of its own, into a [`cull_quality::Store`]. One mention in
//! `quality.profile_every` is matched again with a timed probe, which counts each
//! rule's candidates and verification time; the matcher stage itself never times.
//!
//! The store is written with the offsets it has read every `quality.flush_secs`
//! seconds and at the end, and the runner commits the group's offsets only after that
//! (the indexer's checkpoint, in a file): a crash replays records the store already
//! holds, which its checkpoint skips, so nothing is counted twice or lost. A record it
//! cannot read is dead-lettered.
//!
//! When a rule with at least `quality.min_feedback` dispositions in the window falls
//! under its precision threshold, the stage logs a warning and counts an alert
//! (`cull_quality_precision_alerts_total{change="dropped"}`), once until it recovers;
//! `cull_quality_rules_below_precision` is how many are under now.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cull_bus::dead_letter::Reason;
use cull_bus::Record;
use cull_match::{MatchScratch, Matcher};
use cull_model::{Feedback, Verdict};
use cull_quality::{day_of, PrecisionChange, QualityConfig, RuleKey, Store, Thresholds};
use time::OffsetDateTime;

use crate::index::parse_ticket;
use crate::metrics::Metrics;
use crate::stage::{Output, Stage, StageError};

/// The stage name, in dead letters and metrics.
pub const NAME: &str = "quality";

/// Keeps the per-rule store.
pub struct QualityStage {
    store: Store,
    config: QualityConfig,
    matcher: Arc<Matcher>,
    feedback_topic: String,
    ticket_topics: BTreeSet<String>,
    scratch: MatchScratch,
    /// Verdicts read, for picking the ones to profile.
    verdicts: u64,
    /// Rules whose precision may have changed since the last flush.
    touched: BTreeSet<RuleKey>,
    pending: bool,
    last_flush: Instant,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for QualityStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QualityStage").field("dir", &self.config.dir).finish_non_exhaustive()
    }
}

impl QualityStage {
    /// Opens the store of `config`; profiles with the rules of `matcher`; reads
    /// dispositions from `feedback_topic` and tickets from `ticket_topics` (every
    /// other input holds verdicts).
    pub fn open(
        config: &QualityConfig,
        matcher: Arc<Matcher>,
        feedback_topic: &str,
        ticket_topics: impl IntoIterator<Item = String>,
        metrics: Arc<Metrics>,
    ) -> Result<QualityStage, StageError> {
        let store = Store::open(&config.dir).map_err(|e| StageError::new(NAME, e))?;
        metrics.set_rules_below_precision(store.alerting());
        Ok(QualityStage {
            store,
            config: config.clone(),
            matcher,
            feedback_topic: feedback_topic.to_string(),
            ticket_topics: ticket_topics.into_iter().collect(),
            scratch: MatchScratch::default(),
            verdicts: 0,
            touched: BTreeSet::new(),
            pending: false,
            last_flush: Instant::now(),
            metrics,
        })
    }

    fn verdict(&mut self, record: &Record, day: i64, out: &mut Output) {
        let verdict = match serde_json::from_slice::<Verdict>(&record.payload) {
            Ok(verdict) => verdict,
            Err(error) => {
                out.dead_letter(record, &format!("not a verdict: {error}"), Reason::Schema);
                return;
            }
        };
        self.store.record_verdict(&verdict, day);
        self.verdicts += 1;
        let every = u64::from(self.config.profile_every);
        let Some(mention) =
            verdict.mention.as_ref().filter(|_| every > 0 && self.verdicts.is_multiple_of(every))
        else {
            return;
        };
        let rules = self.matcher.current();
        let mut costs: Vec<(Option<String>, String, u64)> = Vec::new();
        rules.profile_into(mention, &mut self.scratch, |rule, _, took| {
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            costs.push((rule.client.map(str::to_string), rule.id.to_string(), nanos));
        });
        let costs = costs.iter().map(|(client, rule, nanos)| (client.as_deref(), rule.as_str(), *nanos));
        self.store.record_profile(mention.client.as_deref(), day, costs);
        self.metrics.record_profiled();
    }
}

impl Stage for QualityStage {
    fn name(&self) -> &str {
        NAME
    }

    fn start(&mut self, log_ends: &[(String, i32, i64)]) {
        for (topic, partition, checkpoint) in self.store.checkpoint_mut().forget_beyond(log_ends) {
            tracing::warn!(
                topic,
                partition,
                checkpoint,
                "the rule-stats store's checkpoint is beyond the end of the log (the bus directory was replaced?): counting this log from its start"
            );
            self.pending = true;
        }
    }

    fn process(&mut self, records: &[Record], out: &mut Output) -> Result<(), StageError> {
        let day = day_of(OffsetDateTime::now_utc().unix_timestamp());
        for record in records {
            crate::fault::record(NAME, record);
            if self.store.checkpoint().covers(&record.topic, record.partition, record.offset) {
                continue;
            }
            self.pending = true;
            if record.topic == self.feedback_topic {
                match Feedback::from_json(&record.payload) {
                    Ok(feedback) => self.touched.extend(self.store.record_feedback(&feedback)),
                    Err(error) => {
                        out.dead_letter(record, &format!("not a disposition: {error}"), Reason::from(&error))
                    }
                }
            } else if self.ticket_topics.contains(&record.topic) {
                match parse_ticket(&record.payload) {
                    Ok(ticket) => {
                        self.store.record_ticket(&ticket, day);
                        self.touched.insert(RuleKey::new(ticket.client.as_deref(), &ticket.rule.id));
                    }
                    Err(error) => out.dead_letter(record, &format!("not a ticket: {error}"), Reason::Schema),
                }
            } else {
                self.verdict(record, day, out);
            }
            self.store.checkpoint_mut().advance(&record.topic, record.partition, record.offset);
        }
        Ok(())
    }

    fn flush(&mut self, force: bool) -> Result<bool, StageError> {
        crate::fault::flush(NAME);
        if !self.pending {
            return Ok(true);
        }
        if !force && self.last_flush.elapsed() < Duration::from_secs(self.config.flush_secs) {
            return Ok(false);
        }
        let today = day_of(OffsetDateTime::now_utc().unix_timestamp());
        self.store.prune(today, self.config.retention_days);
        let touched = std::mem::take(&mut self.touched);
        let thresholds = Thresholds { config: &self.config, today };
        for change in self.store.precision_changes(&touched, thresholds) {
            match change {
                PrecisionChange::Dropped(report) => {
                    tracing::warn!(
                        rule = %report.rule_id,
                        client = report.client.as_deref().unwrap_or("-"),
                        precision = report.precision.unwrap_or_default(),
                        threshold = report.threshold,
                        feedback = report.feedback,
                        irrelevant = report.irrelevant,
                        "a rule's precision fell under its threshold: `cull rules suggest` proposes exclusions"
                    );
                    self.metrics.record_precision_alert("dropped");
                }
                PrecisionChange::Recovered(report) => {
                    tracing::info!(rule = %report.rule_id, client = report.client.as_deref().unwrap_or("-"), precision = report.precision.unwrap_or_default(), "a rule's precision is back over its threshold");
                    self.metrics.record_precision_alert("recovered");
                }
            }
        }
        self.metrics.set_rules_below_precision(self.store.alerting());
        self.store.save().map_err(|e| StageError::new(NAME, e))?;
        (self.last_flush, self.pending) = (Instant::now(), false);
        Ok(true)
    }
}
