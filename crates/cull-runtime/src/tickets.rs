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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};

use cull_bus::dead_letter::Reason;
use cull_bus::{Message, Record};
use cull_match::{Matcher, RuleSet};
use cull_model::{Feedback, Priority, Ticket, TicketKind, Verdict};
use cull_ticket::calendar::CalendarError;
use cull_ticket::{ChangelogRecord, Disposal, OverflowTo, Position, TicketConfig, Triage};
use time::OffsetDateTime;

use crate::config::Topics;
use crate::metrics::Metrics;
use crate::stage::{Output, Stage, StageError};
use crate::summary::Summary;

/// The stage name, in dead letters and metrics.
pub const NAME: &str = "tickets";

/// Rule sets kept after a reload replaced them, for the verdicts still in flight.
const PREVIOUS_SETS: usize = 1;

/// The ticket topics this process may produce to, shared by the ticketing stage and
/// the reloader: a reload adds the topics of new queues and clients once the bus has
/// them, and the stage sends a ticket only to one of these. A match whose client has
/// no topic here (a client this process was not told about) is dead-lettered: on
/// Kafka the send would be retried forever, and on the embedded bus no reader in this
/// process would ever read it.
#[derive(Debug, Clone, Default)]
pub struct AdmittedTopics(Arc<RwLock<BTreeSet<String>>>);

impl AdmittedTopics {
    /// Returns the set of `topics`.
    pub fn new(topics: impl IntoIterator<Item = String>) -> AdmittedTopics {
        AdmittedTopics(Arc::new(RwLock::new(topics.into_iter().collect())))
    }

    /// Returns whether `topic` may be produced to.
    pub fn contains(&self, topic: &str) -> bool {
        self.0.read().unwrap_or_else(PoisonError::into_inner).contains(topic)
    }

    /// Returns every topic, in name order.
    pub fn all(&self) -> Vec<String> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    /// Adds `topics`.
    pub fn extend(&self, topics: impl IntoIterator<Item = String>) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).extend(topics);
    }
}

/// Returns the ticket topics the rules of `set` and the `[tickets]` settings can
/// send to, for the contact center's own mentions and for each client of `clients`,
/// of `set` and of `config`; or every queue that cannot have a topic of its own.
///
/// A client's mentions meet the global rules and its own, so its topics are those of
/// the queues of both, plus its escalation and configured queues.
pub fn ticket_topics(
    topics: &Topics,
    set: &RuleSet,
    config: &TicketConfig,
    clients: &[String],
) -> Result<BTreeSet<String>, Vec<String>> {
    let mut known: BTreeSet<&str> = clients.iter().map(String::as_str).collect();
    known.extend(set.clients());
    known.extend(config.clients.keys().map(String::as_str));
    let global: Vec<&str> = set.partitions_for(None).flat_map(|p| p.rule_refs()).map(|r| r.queue).collect();
    let mut routes: Vec<(Option<&str>, String)> = Vec::new();
    for client in std::iter::once(None).chain(known.into_iter().map(Some)) {
        let own = client.into_iter().flat_map(|client| set.partitions_for(Some(client)).skip(1));
        let queues = global
            .iter()
            .map(|queue| queue.to_string())
            .chain(own.flat_map(|p| p.rule_refs()).map(|r| r.queue.to_string()))
            .chain(config.queues(client));
        routes.extend(queues.map(|queue| (client, queue)));
    }
    let mut problems: Vec<String> =
        routes.iter().filter_map(|(_, queue)| topics.queue_problem(queue)).collect();
    problems.sort();
    problems.dedup();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(routes.into_iter().map(|(client, queue)| topics.ticket_topic(client, &queue)).collect())
}

/// Turns verdicts into tickets.
pub struct TicketStage {
    matcher: Arc<Matcher>,
    previous: VecDeque<Arc<RuleSet>>,
    triage: Triage,
    topics: Topics,
    admitted: AdmittedTopics,
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
    /// named by `topics` that `admitted` holds; a business-hours calendar of `config`
    /// that does not compile is an error.
    pub fn new(
        matcher: Arc<Matcher>,
        config: &TicketConfig,
        topics: Topics,
        admitted: AdmittedTopics,
        metrics: Arc<Metrics>,
        summary: Arc<Summary>,
    ) -> Result<TicketStage, CalendarError> {
        Ok(TicketStage {
            matcher,
            previous: VecDeque::new(),
            triage: Triage::new(config)?,
            topics,
            admitted,
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
        out.send(self.topics.ticket_topic(ticket.client.as_deref(), &ticket.queue), message);
        Ok(())
    }

    /// Takes an agent's disposition read from the feedback topic: a closed ticket
    /// leaves its queue's open count (its state goes to the changelog with the
    /// batch); a record that is not valid feedback is dead-lettered.
    fn dispose(&mut self, record: &Record, out: &mut Output) {
        let feedback = match Feedback::from_json(&record.payload) {
            Ok(feedback) => feedback,
            Err(error) => {
                out.dead_letter(record, &format!("not a disposition: {error}"), Reason::from(&error));
                return;
            }
        };
        let outcome = match self.triage.dispose(&feedback) {
            Disposal::Closed => "closed",
            Disposal::Reopened => "reopened",
            Disposal::Recorded => "recorded",
            Disposal::Superseded => "superseded",
            Disposal::Unknown => {
                tracing::info!(ticket = %feedback.ticket_id, client = ?feedback.client, "a disposition of a ticket this stage does not remember");
                "unknown"
            }
        };
        self.metrics.record_feedback(feedback.disposition.as_str(), outcome);
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
            if record.topic == self.topics.feedback {
                self.dispose(record, out);
                continue;
            }
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
            let client = mention.client.as_deref();
            for matched in &verdict.matched {
                let Some(rule) = rules.rule(client, &matched.rule_id) else {
                    let error = format!(
                        "rule {:?} matched (rule set {}), but the rule set in use ({}) has no such rule: no ticket was made",
                        matched.rule_id,
                        verdict.ruleset_version,
                        rules.version()
                    );
                    out.dead_letter(record, &error, Reason::Other);
                    continue;
                };
                let topic = self.topics.ticket_topic(client, &rule.rule.queue);
                if !self.admitted.contains(&topic) {
                    let (rule_id, client) = (&matched.rule_id, client.unwrap_or_default());
                    let error = format!(
                        "rule {rule_id:?} matched a mention of client {client:?}, whose tickets have no topic \
                         here ({topic}): no ticket was made; make the client known to this pipeline (a source \
                         with `client = \"{client}\"`, [tickets.clients.{client}] or a rules directory \
                         `{client}/`) and replay this dead letter"
                    );
                    out.dead_letter(record, &error, Reason::Client);
                    continue;
                }
                let position = Some(Position { partition: record.partition, offset: record.offset });
                let triaged = self.triage.triage(mention, matched, &rule, position, now);
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
        client_record(rules, None, offset)
    }

    fn stage(matcher: &Arc<Matcher>) -> TicketStage {
        stage_with(matcher, Topics::default(), ["cull.tickets".to_string()].into())
    }

    /// Returns the stage of the default `[tickets]` with `topics`, producing to
    /// `admitted`.
    fn stage_with(matcher: &Arc<Matcher>, topics: Topics, admitted: BTreeSet<String>) -> TicketStage {
        let admitted = AdmittedTopics::new(admitted);
        TicketStage::new(
            Arc::clone(matcher),
            &TicketConfig::default(),
            topics,
            admitted,
            Arc::default(),
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
        let error = error_of(letter);
        assert!(error.contains("rule \"gone\" matched") && error.contains("no ticket was made"), "{error}");
    }

    /// Returns the error a dead letter carries.
    fn error_of(letter: &Message) -> String {
        let error = letter.headers.iter().find(|(name, _)| name == "cull.error").expect("an error header");
        String::from_utf8_lossy(&error.1).into_owned()
    }

    /// A pack of a global rule `slack` (queue `care`) and, for each of acme and
    /// globex, a rule `brand` on a queue of its own.
    fn client_set() -> RuleSet {
        let global = "[[rule]]\nid = 'slack'\nquery = 'slack'\nqueue = 'care'\n";
        let brand = |client: &str| {
            format!("[[rule]]\nid = 'brand'\nquery = 'slack'\nqueue = '{client}-care'\nclient = '{client}'\n")
        };
        let (acme, globex) = (brand("acme"), brand("globex"));
        let loaded = cull_rules::load_files([
            (Path::new("g.toml"), global.as_bytes()),
            (Path::new("a.toml"), acme.as_bytes()),
            (Path::new("x.toml"), globex.as_bytes()),
        ]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        RuleSet::new(loaded.rules).unwrap()
    }

    /// Returns the verdict record, at `offset`, of a mention of `client` that `slack`
    /// rules match.
    fn client_record(rules: &RuleSet, client: Option<&str>, offset: i64) -> Record {
        let id = client.map_or_else(|| format!("m{offset}"), |client| format!("{client}:m{offset}"));
        let mention = Mention { client: client.map(str::to_string), ..Mention::new(id, "slack is down") };
        let mut verdict = rules.verdict(&mention);
        verdict.mention = Some(mention);
        Record {
            topic: "cull.verdicts".into(),
            offset,
            payload: serde_json::to_vec(&verdict).unwrap(),
            ..Record::default()
        }
    }

    #[test]
    fn a_clients_tickets_go_to_its_own_topics_with_its_own_rule_of_a_shared_id() {
        let rules = client_set();
        let topics = Topics { tickets_per_queue: true, ..Topics::default() };
        let admitted = ticket_topics(&topics, &rules, &TicketConfig::default(), &[]).unwrap();
        assert_eq!(
            admitted.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "cull.tickets.acme.acme-care",
                "cull.tickets.acme.care",
                "cull.tickets.acme.escalations",
                "cull.tickets.care",
                "cull.tickets.escalations",
                "cull.tickets.globex.care",
                "cull.tickets.globex.escalations",
                "cull.tickets.globex.globex-care",
            ],
            "no client's topics hold another's queues"
        );
        let matcher = Arc::new(Matcher::new(rules));
        let mut stage = stage_with(&matcher, topics, admitted);
        let mut out = Output::new(NAME);
        let set = matcher.current();
        let records: Vec<Record> = [Some("acme"), Some("globex"), None]
            .into_iter()
            .enumerate()
            .map(|(i, client)| client_record(&set, client, i as i64))
            .collect();
        stage.process(&records, &mut out).unwrap();
        let mut sent: Vec<(String, Option<String>, String)> = out
            .records()
            .iter()
            .filter(|(topic, _)| topic.starts_with("cull.tickets."))
            .map(|(topic, m)| {
                let ticket: Ticket = serde_json::from_slice(&m.payload).unwrap();
                (topic.clone(), ticket.client, ticket.rule.id)
            })
            .collect();
        sent.sort();
        let expected = |topic: &str, client: Option<&str>, rule: &str| {
            (topic.to_string(), client.map(str::to_string), rule.to_string())
        };
        assert_eq!(
            sent,
            [
                expected("cull.tickets.acme.acme-care", Some("acme"), "brand"),
                expected("cull.tickets.acme.care", Some("acme"), "slack"),
                expected("cull.tickets.care", None, "slack"),
                expected("cull.tickets.globex.care", Some("globex"), "slack"),
                expected("cull.tickets.globex.globex-care", Some("globex"), "brand"),
            ]
        );
        assert!(out.dead_letters().is_empty());
    }

    #[test]
    fn a_match_of_a_client_this_process_does_not_know_is_a_dead_letter() {
        let rules = client_set();
        let admitted = ticket_topics(&Topics::default(), &rules, &TicketConfig::default(), &[]).unwrap();
        let matcher = Arc::new(Matcher::new(rules));
        let mut stage = stage_with(&matcher, Topics::default(), admitted);
        let mut out = Output::new(NAME);
        stage.process(&[client_record(&matcher.current(), Some("initech"), 0)], &mut out).unwrap();
        assert!(out.records().iter().all(|(topic, _)| !topic.starts_with("cull.tickets")), "no ticket");
        let (letter, reason) = &out.dead_letters()[0];
        assert_eq!(*reason, Reason::Client);
        let error = error_of(letter);
        assert!(error.contains("client \"initech\"") && error.contains("cull.tickets.initech"), "{error}");
    }
}
