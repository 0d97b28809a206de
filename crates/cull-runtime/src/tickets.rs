//! The ticketing stage: verdicts in, triaged tickets out.
//!
//! Triage ([`cull_ticket::Triage`]) groups the mentions of one issue into one ticket,
//! scores it and fixes its deadline; its state goes to the changelog topic
//! (`topics.ticket_state`) in the same batch as the tickets, so it is acknowledged
//! before the verdicts' offsets are committed, and is read back after a restart and by
//! a replica that takes a partition over.
//!
//! A verdict names the rule set version that made it; the stage looks its rules up
//! in that set when it still has it (the one in use, or the one the last hot reload
//! replaced, which is what verdicts in flight during a reload were made with), so
//! that a ticket carries the queue and priority its match was made under. Only one
//! replaced set is kept: a set of a million rules weighs gigabytes. A verdict from a set it no longer has (made before a restart, say) is
//! ticketed with the rules of the set in use; a rule that is gone from it is reported
//! as a dead letter rather than dropped, since that match would otherwise become no
//! ticket and nobody would know.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use cull_bus::dead_letter::Reason;
use cull_bus::{Message, Record};
use cull_match::{Matcher, RuleSet};
use cull_model::{Priority, Ticket, TicketKind, Verdict};
use cull_ticket::calendar::CalendarError;
use cull_ticket::{ChangelogRecord, OverflowTo, Position, TicketConfig, Triage};
use time::OffsetDateTime;

use crate::config::Topics;
use crate::metrics::Metrics;
use crate::stage::{Output, Stage, StageError};
use crate::summary::Summary;

/// The stage name, in dead letters and metrics.
pub const NAME: &str = "tickets";

/// Rule sets kept after a reload replaced them, for the verdicts still in flight.
const PREVIOUS_SETS: usize = 1;

/// Turns verdicts into tickets.
pub struct TicketStage {
    matcher: Arc<Matcher>,
    previous: VecDeque<Arc<RuleSet>>,
    triage: Triage,
    topics: Topics,
    metrics: Arc<Metrics>,
    summary: Arc<Summary>,
}

impl std::fmt::Debug for TicketStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketStage").field("topics", &self.topics).finish_non_exhaustive()
    }
}

impl TicketStage {
    /// Returns the stage ticketing with the rules of `matcher` into the ticket topics
    /// of `topics`; a business-hours calendar of `config` that does not compile is an
    /// error.
    pub fn new(
        matcher: Arc<Matcher>,
        config: &TicketConfig,
        topics: Topics,
        metrics: Arc<Metrics>,
        summary: Arc<Summary>,
    ) -> Result<TicketStage, CalendarError> {
        Ok(TicketStage {
            matcher,
            previous: VecDeque::new(),
            triage: Triage::new(config)?,
            topics,
            metrics,
            summary,
        })
    }

    /// Returns the rule set a verdict was made with, if it is still known, else the
    /// set in use.
    fn rules_for(&mut self, version: &str) -> Arc<RuleSet> {
        let current = self.matcher.current();
        if self.previous.front().is_none_or(|last| !Arc::ptr_eq(last, &current)) {
            self.previous.push_front(Arc::clone(&current));
            self.previous.truncate(PREVIOUS_SETS + 1);
        }
        self.previous.iter().find(|set| set.version() == version).cloned().unwrap_or(current)
    }

    /// Adds `ticket` to `out`, on its queue's topic.
    fn send_ticket(&self, ticket: &Ticket, out: &mut Output) -> Result<(), StageError> {
        let payload = serde_json::to_vec(ticket).map_err(|e| StageError::new(NAME, e))?;
        let message =
            Message { key: Some(cull_ticket::key(ticket)), headers: cull_ticket::headers(ticket), payload };
        out.send(self.topics.ticket_topic(&ticket.queue), message);
        Ok(())
    }

    /// Adds the incidents mentions joined and the state triage changed to `out`: the
    /// tickets first, then the changelog, which the runner sends in the same batch.
    fn send_changes(
        &mut self,
        now: OffsetDateTime,
        tickets: &mut BTreeMap<(String, Priority), u64>,
        out: &mut Output,
    ) -> Result<u64, StageError> {
        let incidents = self.triage.take_incidents();
        for incident in &incidents {
            *tickets.entry((incident.queue.clone(), incident.priority)).or_default() += 1;
            self.send_ticket(incident, out)?;
        }
        for record in self.triage.take_changes(now) {
            let payload = serde_json::to_vec(&record).map_err(|e| StageError::new(NAME, e))?;
            let key = Some(record.key().as_bytes().to_vec());
            out.send(self.topics.ticket_state.as_str(), Message { key, headers: Vec::new(), payload });
        }
        Ok(incidents.len() as u64)
    }
}

impl Stage for TicketStage {
    fn name(&self) -> &str {
        NAME
    }

    fn changelog(&self) -> Option<String> {
        Some(self.topics.ticket_state.clone())
    }

    /// Takes triage state records read from the changelog, in log order; a record
    /// that is not a ticket state is logged and skipped (skipping it loses no ticket,
    /// only the memory of one, so a later revision restarts its count).
    fn restore(&mut self, records: &[Record]) {
        for record in records {
            match serde_json::from_slice::<ChangelogRecord>(&record.payload) {
                Ok(state) => self.triage.restore(state),
                Err(error) => tracing::warn!(
                    topic = %record.topic, partition = record.partition, offset = record.offset, %error,
                    "skipping a changelog record that is not a ticket state"
                ),
            }
        }
    }

    fn process(&mut self, records: &[Record], out: &mut Output) -> Result<(), StageError> {
        let now = OffsetDateTime::now_utc();
        let mut tickets: BTreeMap<(String, Priority), u64> = BTreeMap::new();
        let mut made = 0;
        for record in records {
            crate::fault::record(NAME, record);
            let verdict = match serde_json::from_slice::<Verdict>(&record.payload) {
                Ok(verdict) => verdict,
                Err(error) => {
                    out.dead_letter(record, &format!("not a verdict: {error}"), Reason::Schema);
                    continue;
                }
            };
            if verdict.matched.is_empty() {
                continue;
            }
            let Some(mention) = &verdict.mention else {
                let error = format!("the verdict of {:?} carries no mention to ticket", verdict.mention_id);
                out.dead_letter(record, &error, Reason::Schema);
                continue;
            };
            let rules = self.rules_for(&verdict.ruleset_version);
            for matched in &verdict.matched {
                let Some(rule) = rules.rules().iter().find(|r| r.rule.id == matched.rule_id) else {
                    let error = format!(
                        "rule {:?} matched (rule set {}), but the rule set in use ({}) has no such rule: no ticket was made",
                        matched.rule_id,
                        verdict.ruleset_version,
                        rules.version()
                    );
                    out.dead_letter(record, &error, Reason::Other);
                    continue;
                };
                let position = Some(Position { partition: record.partition, offset: record.offset });
                let triaged = self.triage.triage(mention, matched, rule, position, now);
                for overflow in &triaged.overflows {
                    let to = match &overflow.to {
                        OverflowTo::Queue(queue) => queue.as_str(),
                        OverflowTo::Digest => "digest",
                    };
                    self.metrics.record_overflow(&overflow.queue, to);
                }
                for firing in &triaged.firings {
                    let scope = firing.scope.split(':').next().unwrap_or_default();
                    self.metrics.record_spike(scope, firing.severity.as_str());
                }
                for ticket in &triaged.tickets {
                    if !triaged.replayed {
                        *tickets.entry((ticket.queue.clone(), ticket.priority)).or_default() += 1;
                        let first = ticket.revision == 1 && ticket.kind == TicketKind::Ticket;
                        if first && ticket.late_on_arrival {
                            self.metrics.record_late(&ticket.queue);
                        }
                        made += 1;
                    }
                    self.send_ticket(ticket, out)?;
                }
            }
        }
        made += self.send_changes(now, &mut tickets, out)?;
        self.metrics.record_tickets(&tickets);
        self.summary.add_tickets(made);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use cull_model::Mention;

    use super::*;

    fn set(queue: &str, id: &str) -> RuleSet {
        let toml = format!("[[rule]]\nid = '{id}'\nquery = 'slack'\nqueue = '{queue}'\n");
        RuleSet::new(cull_rules::load_files([(Path::new("r.toml"), toml.as_bytes())]).rules).unwrap()
    }

    fn verdict_record(rules: &RuleSet, offset: i64) -> Record {
        let mention = Mention::new(format!("m{offset}"), "slack is down");
        let mut verdict = rules.verdict(&mention);
        verdict.mention = Some(mention);
        Record {
            topic: "cull.verdicts".into(),
            offset,
            payload: serde_json::to_vec(&verdict).unwrap(),
            ..Record::default()
        }
    }

    fn stage(matcher: &Arc<Matcher>) -> TicketStage {
        let metrics = Arc::new(Metrics::new());
        TicketStage::new(
            Arc::clone(matcher),
            &TicketConfig::default(),
            Topics::default(),
            metrics,
            Arc::default(),
        )
        .expect("the default ticket config has no calendar")
    }

    #[test]
    fn a_verdict_made_before_a_reload_is_ticketed_with_the_rules_it_was_made_with() {
        let before = set("care", "slack");
        let in_flight = verdict_record(&before, 0);
        let matcher = Arc::new(Matcher::new(before));
        let mut stage = stage(&matcher);
        let mut out = Output::new(NAME);
        stage.process(&[verdict_record(&matcher.current(), 1)], &mut out).unwrap();
        matcher.swap(set("press", "slack"));
        stage.process(&[in_flight, verdict_record(&matcher.current(), 2)], &mut out).unwrap();
        let queues: Vec<String> = out
            .records()
            .iter()
            .filter(|(topic, _)| topic == "cull.tickets")
            .map(|(_, m)| serde_json::from_slice::<Ticket>(&m.payload).unwrap().queue)
            .collect();
        assert_eq!(queues, ["care", "care", "press"]);
        let keys: Vec<&[u8]> = out
            .records()
            .iter()
            .filter(|(topic, _)| topic == "cull.ticket-state")
            .filter_map(|(_, m)| m.key.as_deref())
            .filter(|key| *key != b"spikes")
            .collect();
        assert_eq!(keys.len(), 3, "every new ticket's state goes to the changelog");
        assert!(out.dead_letters().is_empty());
    }

    #[test]
    fn a_match_whose_rule_is_gone_is_a_dead_letter_not_a_silent_miss() {
        let old = set("care", "gone");
        let matcher = Arc::new(Matcher::new(set("care", "other")));
        let mut stage = stage(&matcher);
        let mut out = Output::new(NAME);
        stage.process(&[verdict_record(&old, 0)], &mut out).unwrap();
        assert!(out.records().is_empty());
        let (letter, reason) = &out.dead_letters()[0];
        assert_eq!(*reason, Reason::Other);
        let error = letter
            .headers
            .iter()
            .find(|(n, _)| n == "cull.error")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap();
        assert!(error.contains("rule \"gone\" matched") && error.contains("no ticket was made"), "{error}");
    }
}
