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
use cull_bus::{Message, Record};
use cull_match::{MatchScratch, Matcher};
use cull_model::{Feedback, Verdict};
use cull_quality::{day_of, FeedbackOutcome, PrecisionChange, QualityConfig, RuleKey, Store, Thresholds};
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
    /// The ticket topic of `quality.alert_queue`, where precision alerts go.
    alert_topic: Option<String>,
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
    /// other input holds verdicts); sends precision alerts to `alert_topic`.
    pub fn open(
        config: &QualityConfig,
        matcher: Arc<Matcher>,
        feedback_topic: &str,
        ticket_topics: impl IntoIterator<Item = String>,
        alert_topic: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Result<QualityStage, StageError> {
        let store = Store::open_for_writing(&config.dir).map_err(|e| StageError::new(NAME, e))?;
        metrics.set_rules_below_precision(store.alerting());
        Ok(QualityStage {
            store,
            config: config.clone(),
            matcher,
            feedback_topic: feedback_topic.to_string(),
            ticket_topics: ticket_topics.into_iter().collect(),
            alert_topic,
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
        self.verdicts += 1;
        let every = u64::from(self.config.profile_every);
        // Profiled before it is counted: a panic in the profile (then dead-lettered by
        // the runner) must not leave the verdict counted once per try.
        if let Some(mention) =
            verdict.mention.as_ref().filter(|_| every > 0 && self.verdicts.is_multiple_of(every))
        {
            self.profile(mention, day);
        }
        self.store.record_verdict(&verdict, day);
    }

    /// Matches `mention` again with a timed probe and counts each candidate's cost.
    fn profile(&mut self, mention: &cull_model::Mention, day: i64) {
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

impl QualityStage {
    /// Reports the rules of `touched` (and those alerting) whose precision fell under
    /// or came back over their threshold: a log line and the metrics, and for a drop an
    /// alert ticket on the alert queue's topic, sent with the batch.
    fn report_precision(&mut self, touched: &BTreeSet<RuleKey>, out: &mut Output) -> Result<(), StageError> {
        let now = OffsetDateTime::now_utc();
        let thresholds = Thresholds { config: &self.config, today: day_of(now.unix_timestamp()) };
        for change in self.store.precision_changes(touched, thresholds) {
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
                    if let (Some(topic), Some(queue)) = (&self.alert_topic, &self.config.alert_queue) {
                        let ticket = cull_quality::precision_alert(&report, queue, now);
                        let payload = serde_json::to_vec(&ticket).map_err(|e| StageError::new(NAME, e))?;
                        let message = Message {
                            key: Some(cull_ticket::key(&ticket)),
                            headers: cull_ticket::headers(&ticket),
                            payload,
                        };
                        out.send(topic.as_str(), message);
                    }
                }
                PrecisionChange::Recovered(report) => {
                    tracing::info!(rule = %report.rule_id, client = report.client.as_deref().unwrap_or("-"), precision = report.precision.unwrap_or_default(), "a rule's precision is back over its threshold");
                    self.metrics.record_precision_alert("recovered");
                }
            }
        }
        self.metrics.set_rules_below_precision(self.store.alerting());
        Ok(())
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
                    Ok(feedback) => {
                        let outcome = self.store.record_feedback(&feedback);
                        self.metrics.record_quality_feedback(outcome.label());
                        match outcome {
                            FeedbackOutcome::Counted(rule) => {
                                self.touched.insert(rule);
                            }
                            FeedbackOutcome::OtherClient { ticket_client } => tracing::warn!(
                                ticket = %feedback.ticket_id,
                                named = feedback.client.as_deref().unwrap_or("(the contact center)"),
                                owner = ticket_client.as_deref().unwrap_or("(the contact center)"),
                                "a disposition names another client than its ticket's; not counted"
                            ),
                            _ => {}
                        }
                    }
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
        let touched = std::mem::take(&mut self.touched);
        self.report_precision(&touched, out)
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
        // Rules alerting that went quiet recover here; a drop needs new feedback, which
        // `process` reports with the batch it came in.
        let mut nothing_sent = Output::new(NAME);
        self.report_precision(&BTreeSet::new(), &mut nothing_sent)?;
        self.store.save().map_err(|e| StageError::new(NAME, e))?;
        (self.last_flush, self.pending) = (Instant::now(), false);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use cull_match::RuleSet;
    use cull_model::{Disposition, Mention, Scope};
    use cull_quality::SortBy;

    use super::*;

    fn record(topic: &str, offset: i64, payload: Vec<u8>) -> Record {
        Record { topic: topic.into(), offset, payload, ..Record::default() }
    }

    fn report(dir: &std::path::Path) -> cull_quality::RuleReport {
        let store = Store::read(dir).unwrap();
        let config = QualityConfig::default();
        let today = day_of(OffsetDateTime::now_utc().unix_timestamp());
        store.report(&Scope::All, &config, today, [], SortBy::Precision).remove(0)
    }

    /// A crash after the store was written but before the group's offsets were
    /// committed replays records the store holds: its checkpoint skips them, so nothing
    /// is counted twice; records after it are counted once; bad ones are dead-lettered.
    #[test]
    fn a_replay_after_a_restart_counts_nothing_twice_and_bad_records_are_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = cull_rules::load_files([(
            std::path::Path::new("r.toml"),
            b"[[rule]]\nid = 'slack'\nquery = 'slack'\n".as_slice(),
        )]);
        let matcher = Arc::new(Matcher::new(RuleSet::new(loaded.rules).unwrap()));
        let config = QualityConfig {
            dir: dir.path().to_path_buf(),
            profile_every: 1,
            min_feedback: 1,
            alert_queue: Some("rule-quality".into()),
            ..QualityConfig::default()
        };
        let metrics = Arc::new(Metrics::new());
        let open = || {
            QualityStage::open(
                &config,
                Arc::clone(&matcher),
                "cull.feedback",
                ["cull.tickets".to_string()],
                Some("cull.tickets.rule-quality".to_string()),
                Arc::clone(&metrics),
            )
            .unwrap()
        };
        let verdict = |i: i64| {
            let mention = Mention::new(format!("m{i}"), "slack is down");
            let mut verdict = matcher.current().verdict(&mention);
            verdict.mention = Some(mention);
            record("cull.verdicts", i, serde_json::to_vec(&verdict).unwrap())
        };
        let ticket = serde_json::json!({
            "schema": cull_model::TICKET_SCHEMA, "ticket_id": "t1", "revision": 1, "created_at": "2026-11-20T10:00:00Z",
            "queue": "social", "priority": "P1", "priority_score": 80, "sla_due_at": "2026-11-20T10:30:00Z",
            "rule": { "id": "slack", "name": "Slack", "version": "v" }, "mention": Mention::new("m0", "slack is down"),
            "spans": [], "snippet": "",
        });
        let feedback = cull_model::Feedback::new("t1", Disposition::Irrelevant, OffsetDateTime::now_utc());
        let mut other_client = feedback.clone();
        other_client.client = Some("acme".into());
        let first = [
            verdict(0),
            verdict(1),
            record("cull.tickets", 0, serde_json::to_vec(&ticket).unwrap()),
            record("cull.feedback", 0, serde_json::to_vec(&feedback).unwrap()),
            record("cull.feedback", 1, b"{\"schema\":\"cull.feedback/v1\"}".to_vec()),
            record("cull.feedback", 2, serde_json::to_vec(&other_client).unwrap()),
            record("cull.tickets", 1, b"not a ticket".to_vec()),
            record("cull.verdicts", 2, b"\xff".to_vec()),
        ];
        let mut stage = open();
        let locked = QualityStage::open(
            &config,
            Arc::clone(&matcher),
            "cull.feedback",
            [],
            None,
            Arc::new(Metrics::new()),
        );
        assert!(locked.unwrap_err().to_string().contains("another quality stage"), "one writer per store");
        let mut out = Output::new(NAME);
        stage.process(&first, &mut out).unwrap();
        assert_eq!(out.dead_letters().len(), 3, "the bad disposition, ticket and verdict");
        let exposition = metrics.render();
        for counted in
            [r#"{outcome="counted"} 1"#, r#"{outcome="other_client"} 1"#, r#"{outcome="waiting"} 0"#]
        {
            assert!(exposition.contains(&format!("cull_quality_feedback_total{counted}")), "{exposition}");
        }
        let alerts: Vec<&(String, Message)> =
            out.records().iter().filter(|(topic, _)| topic == "cull.tickets.rule-quality").collect();
        assert_eq!(alerts.len(), 1, "one precision alert: the only disposition is irrelevant");
        let alert: cull_model::Ticket = serde_json::from_slice(&alerts[0].1.payload).unwrap();
        assert_eq!(
            (alert.kind, alert.queue.as_str(), alert.rule.id.as_str()),
            (cull_model::TicketKind::Incident, "rule-quality", "slack")
        );
        assert!(!stage.flush(false).unwrap(), "not due yet: the offsets wait");
        assert!(stage.flush(true).unwrap());
        let counted = report(dir.path());
        assert_eq!((counted.matches, counted.tickets, counted.feedback, counted.irrelevant), (2, 1, 1, 1));
        assert_eq!(
            (counted.profiled, counted.candidates),
            (2, 2),
            "every verdict profiled at profile_every = 1"
        );

        // The process died before committing: the group hands the same records out again.
        drop(stage);
        let mut restarted = open();
        let mut out = Output::new(NAME);
        let replay: Vec<Record> = first.iter().cloned().chain([verdict(3)]).collect();
        restarted.process(&replay, &mut out).unwrap();
        assert!(out.dead_letters().is_empty(), "what the store holds is skipped, bad records too");
        assert!(out.records().is_empty(), "the alert was sent once, before the restart");
        assert!(restarted.flush(true).unwrap());
        let counted = report(dir.path());
        assert_eq!((counted.matches, counted.tickets, counted.feedback), (3, 1, 1), "only m3 is new");
    }
}
