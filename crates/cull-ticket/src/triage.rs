//! Triage: the mentions of one issue become one ticket, scored, with its deadline, within
//! the capacity of its queue.
//!
//! [`Triage`] is sync and knows no bus. Its state (every ticket still open for joining or
//! counting toward a capacity) is written as changelog records ([`Triage::take_changes`])
//! that the ticketing stage sends with its tickets, and read back with
//! [`Triage::restore`] at start and whenever another replica may have written some: so
//! revisions never go back across restarts and replicas, and an SLA deadline, once set,
//! stays.
//!
//! Re-reading a verdict (a restart before the offsets were committed) is recognized by
//! the verdict's position, kept on its ticket: the verdict that made the ticket's
//! latest revision re-sends that revision unchanged, and an older one is skipped, so a
//! replay never inflates a count or a revision.

use std::collections::{BTreeSet, HashMap, HashSet};

use cull_match::verify::{matches, Document, Hidden};
use cull_model::thread::{canonical_url, thread_key, NEAR_DUPLICATE_OF};
use cull_model::{
    Disposition, Factor, Feedback, MatchedRule, Mention, Priority, Ticket, TicketKind, TicketRule,
    TICKET_SCHEMA,
};
use cull_rules::{Clause, CompiledRule};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::calendar::{Calendar, CalendarError, SlaClock};
use crate::config::TicketConfig;
use crate::score::{score, Signals};
use crate::spike::{Firing, Preset, Severity, SpikeDetector, SpikeKind};

/// The `meta` key of an author's follower count.
pub const FOLLOWERS: &str = "followers";

/// Tickets remembered before the oldest are forgotten early; bounds memory under a
/// flood of one-mention tickets.
const REMEMBERED_TICKETS: usize = 200_000;

/// Join times kept per ticket for its velocity.
const RECENT_JOINS: usize = 64;

/// Link keys kept per ticket (its thread, URLs and mentions others may name).
const LINKS_PER_TICKET: usize = 16;

/// Ids an incident or a digest lists.
const MEMBERS_KEPT: usize = 100;

/// Overflow hops from queue to queue before the last one bundles into a digest.
const MAX_OVERFLOW_HOPS: usize = 4;

const HOUR: i64 = 3600;

/// VADER's conventional threshold: a compound at or below it is negative.
pub const NEGATIVE_COMPOUND: f64 = -0.05;

/// Seconds between writes of the spike baselines to the changelog.
pub const SPIKES_WRITTEN_EVERY: i64 = 60;

/// Where a verdict was read: its partition and offset on the verdicts topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// What triage keeps of one ticket: the changelog record's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketState {
    /// The ticket id.
    pub ticket_id: String,
    /// The client of its mentions (`None`: the contact center's own): a ticket never
    /// joins mentions of two clients.
    #[serde(default)]
    pub client: Option<String>,
    /// A ticket or a digest.
    pub kind: TicketKind,
    /// The rule of the ticket (`digest` for a digest).
    pub rule_id: String,
    /// The queue it was routed to.
    pub queue: String,
    /// The queue it overflowed from.
    pub overflow_from: Option<String>,
    /// The keys a later mention may share to join: its thread, its URLs, its mentions.
    pub links: Vec<String>,
    /// The latest revision sent.
    pub revision: u32,
    /// Mentions joined.
    pub mention_count: u32,
    /// When the ticket was opened (unix seconds, processing time).
    pub created_at: i64,
    /// The first mention's post time (unix seconds).
    pub arrival_at: i64,
    /// The latest post time among its mentions (unix seconds).
    pub last_event_at: i64,
    /// When it was last revised (unix seconds, processing time).
    pub updated_at: i64,
    /// The SLA deadline, fixed at the first revision (unix seconds).
    pub sla_due_at: i64,
    /// The target the deadline was counted with, in minutes.
    pub sla_target_minutes: u32,
    /// `<queue>/<priority>` of that target.
    pub sla_policy: String,
    /// The clock that counted it.
    pub sla_clock: String,
    /// Whether the first mention was already late.
    pub late_on_arrival: bool,
    /// The priority of the latest revision.
    pub priority: Priority,
    /// Post times of the latest joins, for velocity.
    pub recent: Vec<i64>,
    /// The verdict that made the latest revision.
    pub position: Option<Position>,
    /// The incident the ticket is part of.
    pub incident_id: Option<String>,
    /// For a digest or an incident: the mentions it bundles (the latest).
    pub members: Vec<String>,
    /// For an incident: its latest mention, which its next revision carries.
    #[serde(default)]
    pub mention: Option<Mention>,
    /// For an incident: what spiked, as its ticket's rule name says it.
    #[serde(default)]
    pub summary: Option<String>,
    /// For an incident: how far above its baseline the spike was.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// The ids of the latest mentions that joined, latest last: a mention seen again
    /// (the matcher re-read it after a crash and made a second verdict) is recognized
    /// by its id, not only by its verdict's position.
    #[serde(default)]
    pub joined: Vec<String>,
    /// The factors, score and head start of the latest revision, so that sending it
    /// again sends it unchanged.
    #[serde(default)]
    pub factors: Vec<Factor>,
    /// See `factors`.
    #[serde(default)]
    pub score: u8,
    /// See `factors`.
    #[serde(default)]
    pub rank_offset_minutes: u32,
    /// When an agent's disposition closed it (unix seconds, the disposition's time):
    /// a closed ticket no longer counts toward its queue's `max_open` and takes no
    /// more mentions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<i64>,
    /// The latest disposition an agent gave it, and when (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<(Disposition, i64)>,
}

impl TicketState {
    /// Returns the state of a ticket of `kind` opened at `now` for a mention posted at
    /// `event`, before its first revision.
    fn opened(
        ticket_id: String,
        client: Option<&str>,
        kind: TicketKind,
        rule_id: &str,
        queue: &str,
        event: i64,
        now: i64,
    ) -> TicketState {
        TicketState {
            ticket_id,
            client: client.map(str::to_string),
            kind,
            rule_id: rule_id.to_string(),
            queue: queue.to_string(),
            overflow_from: None,
            links: Vec::new(),
            revision: 0,
            mention_count: 0,
            created_at: now,
            arrival_at: event,
            last_event_at: event,
            updated_at: now,
            sla_due_at: 0,
            sla_target_minutes: 0,
            sla_policy: String::new(),
            sla_clock: String::new(),
            late_on_arrival: false,
            priority: Priority::P4,
            recent: Vec::new(),
            position: None,
            incident_id: None,
            members: Vec::new(),
            mention: None,
            summary: None,
            severity: None,
            joined: Vec::new(),
            factors: Vec::new(),
            score: 0,
            rank_offset_minutes: 0,
            closed_at: None,
            disposition: None,
        }
    }

    /// Remembers that `mention` joined.
    fn remember_join(&mut self, mention: &str) {
        self.joined.retain(|id| id != mention);
        self.joined.push(mention.to_string());
        if self.joined.len() > RECENT_JOINS {
            self.joined.remove(0);
        }
    }
}

/// A record of the ticketing stage's changelog: a ticket's state, or the spike
/// baselines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "lowercase")]
pub enum ChangelogRecord {
    /// The state of one ticket, digest or incident.
    Ticket(Box<TicketState>),
    /// The spike detector.
    Spikes(SpikeDetector),
}

impl ChangelogRecord {
    /// Returns the record's key on the changelog topic.
    pub fn key(&self) -> &str {
        match self {
            ChangelogRecord::Ticket(state) => &state.ticket_id,
            ChangelogRecord::Spikes(_) => "spikes",
        }
    }
}

/// What an agent's disposition did to a ticket (see [`Triage::dispose`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposal {
    /// It closed the ticket: its queue has room for one more.
    Closed,
    /// A priority correction reopened a closed ticket.
    Reopened,
    /// It was recorded; the ticket stays as open or closed as it was.
    Recorded,
    /// A later disposition of the ticket was already taken.
    Superseded,
    /// The ticket is not one this triage remembers for the record's client.
    Unknown,
}

/// Returns the later of two dispositions of one ticket, with when it closed the ticket.
fn later_disposition(a: &TicketState, b: &TicketState) -> (Option<(Disposition, i64)>, Option<i64>) {
    let kept_over = |a: &TicketState, b: &TicketState| {
        a.disposition.is_some_and(|disposition| cull_model::supersedes(disposition, b.disposition))
            || b.disposition.is_none()
    };
    if kept_over(a, b) {
        (a.disposition, a.closed_at)
    } else {
        (b.disposition, b.closed_at)
    }
}

/// Why a mention did not get a ticket of its own in its rule's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overflow {
    /// The queue that was full.
    pub queue: String,
    /// Where the mention went instead: another queue, or a digest on the full one.
    pub to: OverflowTo,
}

/// Where overflow went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverflowTo {
    /// The queue's `overflow_queue`.
    Queue(String),
    /// The digest ticket of the full queue.
    Digest,
}

/// A client's queue: capacity, digests and spikes are counted per client, so one
/// client's flood never fills another's queue nor opens an incident over its mentions.
type QueueKey = (Option<String>, String);

fn queue_key(client: Option<&str>, queue: &str) -> QueueKey {
    (client.map(str::to_string), queue.to_string())
}

/// Returns `what` as a client's (`acme/what`), for the names of scopes and digests.
fn of_client(client: Option<&str>, what: &str) -> String {
    match client {
        Some(client) => format!("{client}/{what}"),
        None => what.to_string(),
    }
}

/// A mention arriving at triage: its link keys, its post time, where its verdict was
/// read and when.
struct Arrival {
    keys: Vec<String>,
    event: i64,
    position: Option<Position>,
    now: i64,
}

/// What triaging one match produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Triaged {
    /// The tickets to send (none for a verdict already applied).
    pub tickets: Vec<Ticket>,
    /// The capacity overflows that happened.
    pub overflows: Vec<Overflow>,
    /// True when the verdict was read before and is not applied again.
    pub replayed: bool,
    /// The spikes this mention set off (each opened an incident).
    pub firings: Vec<Firing>,
}

/// The triage of verdicts into tickets; see the module documentation.
#[derive(Debug)]
pub struct Triage {
    config: TicketConfig,
    window_secs: i64,
    /// Crisis clauses of each configured queue, by the client that configures it
    /// (`None`: the pipeline's `[tickets.queues]`).
    queue_escalations: HashMap<QueueKey, Vec<Clause>>,
    /// VIP authors of everyone (`None`) and of each client.
    vip_authors: HashMap<Option<String>, HashSet<String>>,
    tickets: HashMap<String, TicketState>,
    /// `(client, rule id, link key)` to the ticket open for joining under it.
    links: HashMap<(Option<String>, String, String), String>,
    /// Per client's queue, when each of its tickets still open was opened, and its id:
    /// ordered, so that the count of a window and the closing of one ticket are
    /// logarithmic (a restart restores every ticket of the changelog through it).
    opened: HashMap<QueueKey, BTreeSet<(i64, String)>>,
    /// Tickets changed since the last [`Triage::take_changes`].
    changed: BTreeSet<String>,
    calls: u64,
    /// How each configured queue counts its SLA targets, by the client that
    /// configures it: the clock's name and the clock.
    clocks: HashMap<QueueKey, (String, SlaClock)>,
    /// The compound of the mention scored last, by id.
    last_sentiment: Option<(String, f64)>,
    spikes: SpikeDetector,
    /// Whether the detector changed, or fired, since it was last written.
    spikes_changed: bool,
    spikes_fired: bool,
    spikes_written_at: i64,
    /// The incident of each scope that fired, by scope.
    incidents: HashMap<String, String>,
    /// Incidents that mentions joined since the last [`Triage::take_incidents`].
    pending_incidents: BTreeSet<String>,
    /// Whether a mention was triaged yet: spike baselines are restored only before.
    started: bool,
}

impl Triage {
    /// Returns the triage of a valid `config` (see [`TicketConfig::validate`]); a
    /// queue's `escalate_on` that does not compile is reported by validation and
    /// ignored here, a calendar that does not is an error.
    pub fn new(config: &TicketConfig) -> Result<Triage, CalendarError> {
        let mut calendars = HashMap::new();
        for (name, calendar) in &config.calendars {
            calendars.insert(name.clone(), Calendar::new(calendar)?);
        }
        let configured: Vec<(QueueKey, &crate::config::QueueConfig)> = config
            .queues
            .iter()
            .map(|(queue, settings)| ((None, queue.clone()), settings))
            .chain(config.clients.iter().flat_map(|(client, own)| {
                own.queues.iter().map(|(queue, settings)| ((Some(client.clone()), queue.clone()), settings))
            }))
            .collect();
        let clocks = configured
            .iter()
            .filter_map(|(key, settings)| {
                let name = settings.calendar.as_ref()?;
                let calendar = calendars.get(name)?.clone();
                Some((key.clone(), (name.clone(), SlaClock::Business(calendar))))
            })
            .collect();
        let queue_escalations = configured
            .iter()
            .filter_map(|(key, settings)| {
                let clauses = cull_rules::compile_clauses(settings.escalate_on.as_deref()?).ok()?;
                Some((key.clone(), clauses))
            })
            .collect();
        let authors = |list: &[String]| list.iter().map(|a| normalize_author(a)).collect::<HashSet<String>>();
        let vip_authors = std::iter::once((None, authors(&config.vip_authors)))
            .chain(
                config.clients.iter().map(|(client, own)| (Some(client.clone()), authors(&own.vip_authors))),
            )
            .collect();
        Ok(Triage {
            window_secs: i64::try_from(config.dedupe_window_secs).unwrap_or(i64::MAX / 4),
            queue_escalations,
            vip_authors,
            tickets: HashMap::new(),
            links: HashMap::new(),
            opened: HashMap::new(),
            changed: BTreeSet::new(),
            calls: 0,
            clocks,
            last_sentiment: None,
            spikes: SpikeDetector::new(),
            spikes_changed: false,
            spikes_fired: false,
            spikes_written_at: 0,
            incidents: HashMap::new(),
            pending_incidents: BTreeSet::new(),
            started: false,
            config: config.clone(),
        })
    }

    /// Returns the state of ticket `id`, if it is remembered.
    pub fn state(&self, id: &str) -> Option<&TicketState> {
        self.tickets.get(id)
    }

    /// Takes a record read from the changelog. A ticket state older than what is
    /// already known (a lower revision) is ignored, so records may come in any order
    /// and more than once; spike baselines are taken only before the first mention
    /// (after that, this process' own are newer).
    pub fn restore(&mut self, record: ChangelogRecord) {
        match record {
            ChangelogRecord::Ticket(state) => self.restore_ticket(*state),
            ChangelogRecord::Spikes(detector) if !self.started => self.spikes = detector,
            ChangelogRecord::Spikes(_) => {}
        }
    }

    fn restore_ticket(&mut self, mut state: TicketState) {
        // Revisions and dispositions are merged, not taken whole: a replica reading the
        // feedback may close a ticket whose owner has revised it meanwhile, and
        // neither may undo the other.
        if let Some(known) = self.tickets.get_mut(&state.ticket_id) {
            let (disposition, closed_at) = later_disposition(known, &state);
            if known.revision >= state.revision {
                if (known.disposition, known.closed_at) != (disposition, closed_at) {
                    (known.disposition, known.closed_at) = (disposition, closed_at);
                    let (key, id) =
                        (queue_key(known.client.as_deref(), &known.queue), known.ticket_id.clone());
                    self.reopen_or_close(key, &id);
                }
                return;
            }
            (state.disposition, state.closed_at) = (disposition, closed_at);
        }
        if state.kind == TicketKind::Incident {
            if let Some(scope) = state.links.first() {
                self.incidents.insert(scope.clone(), state.ticket_id.clone());
            }
        }
        let (key, id) = (queue_key(state.client.as_deref(), &state.queue), state.ticket_id.clone());
        self.tickets.insert(id.clone(), state.clone());
        self.reopen_or_close(key, &id);
        self.link(&state);
    }

    /// Takes an agent's disposition of a ticket: the latest one (by its time) is kept,
    /// and one that closes the ticket takes it out of its queue's open count. A ticket
    /// this triage does not remember (never opened here, or forgotten) or of another
    /// client than the record names is left alone.
    pub fn dispose(&mut self, feedback: &Feedback) -> Disposal {
        let Some(at) = feedback.at_unix() else { return Disposal::Unknown };
        let Some(state) = self.tickets.get_mut(&feedback.ticket_id) else { return Disposal::Unknown };
        if state.client != feedback.client {
            return Disposal::Unknown;
        }
        if !cull_model::supersedes((feedback.disposition, at), state.disposition) {
            return Disposal::Superseded;
        }
        state.disposition = Some((feedback.disposition, at));
        let disposal = match (feedback.disposition.closes(), state.closed_at) {
            (true, None) => {
                state.closed_at = Some(at);
                Disposal::Closed
            }
            (true, Some(_)) => Disposal::Recorded,
            (false, Some(_)) => {
                // A later disposition that does not close (a priority correction)
                // reopens it: the agent is working on it again.
                state.closed_at = None;
                Disposal::Reopened
            }
            (false, None) => Disposal::Recorded,
        };
        let (key, id) = (queue_key(state.client.as_deref(), &state.queue), state.ticket_id.clone());
        self.reopen_or_close(key, &id);
        self.changed.insert(id);
        disposal
    }

    /// Counts ticket `id` among the open tickets of its queue `key` or not, as its
    /// state says.
    fn reopen_or_close(&mut self, key: QueueKey, id: &str) {
        let Some(state) = self.tickets.get(id) else { return };
        // Only tickets take a queue's room: a digest or an incident is what a full
        // queue or a spike made, not one more thread for an agent.
        let entry = (state.created_at, id.to_string());
        if state.closed_at.is_none() && state.kind == TicketKind::Ticket {
            self.opened.entry(key).or_default().insert(entry);
        } else if let Some(opened) = self.opened.get_mut(&key) {
            opened.remove(&entry);
        }
    }

    /// Returns the records changed since the last call, to be written to the changelog
    /// at `now`: every changed ticket, and the spike baselines when a spike fired or
    /// [`SPIKES_WRITTEN_EVERY`] seconds passed (a baseline is statistical: losing a
    /// minute of it to a crash costs nothing, while writing it per batch would).
    pub fn take_changes(&mut self, now: OffsetDateTime) -> Vec<ChangelogRecord> {
        let changed = std::mem::take(&mut self.changed);
        let mut records: Vec<ChangelogRecord> = changed
            .iter()
            .filter_map(|id| self.tickets.get(id).cloned())
            .map(|state| ChangelogRecord::Ticket(Box::new(state)))
            .collect();
        let now = now.unix_timestamp();
        let due = now.saturating_sub(self.spikes_written_at) >= SPIKES_WRITTEN_EVERY;
        if self.spikes_fired || (self.spikes_changed && due) {
            records.push(ChangelogRecord::Spikes(self.spikes.clone()));
            (self.spikes_fired, self.spikes_changed, self.spikes_written_at) = (false, false, now);
        }
        records
    }

    /// Triages the match of `rule` on `mention`, read at `position`, at time `now`.
    pub fn triage(
        &mut self,
        mention: &Mention,
        matched: &MatchedRule,
        rule: &CompiledRule,
        position: Option<Position>,
        now: OffsetDateTime,
    ) -> Triaged {
        let now_secs = now.unix_timestamp();
        self.started = true;
        self.calls += 1;
        if self.calls.is_multiple_of(1024) || self.tickets.len() > REMEMBERED_TICKETS {
            self.forget(now_secs);
        }
        let event = event_time(mention).map_or(now_secs, |t| t.min(now_secs));
        let keys = link_keys(mention);
        let rule_id = rule.rule.id.as_str();
        let client = mention.client.clone();
        let linked: Vec<&TicketState> = keys
            .iter()
            .filter_map(|key| self.links.get(&(client.clone(), rule_id.to_string(), key.clone())))
            .filter_map(|id| self.tickets.get(id))
            .collect();
        let mut triaged = Triaged::default();
        // A verdict read before is recognized on any ticket it reached, open or not: a
        // ticket closed since (or past its window) must not make a replay a new ticket.
        let made_latest = linked.iter().find(|state| {
            state.joined.last() == Some(&mention.id)
                || (state.position.is_some() && state.position == position)
        });
        if let Some(state) = made_latest {
            // This mention made the latest revision: send that revision again, as it
            // was, so that a consumer sees a duplicate and nothing new.
            triaged.replayed = true;
            let state = (*state).clone();
            triaged.tickets.push(self.resend(&state, mention, matched, rule));
            return triaged;
        }
        let seen = linked.iter().any(|state| {
            let older = matches!((state.position, position), (Some(seen), Some(read))
                if seen.partition == read.partition && read.offset < seen.offset);
            older || state.joined.contains(&mention.id)
        });
        if seen {
            triaged.replayed = true;
            return triaged;
        }
        let joined = linked
            .iter()
            .find(|state| self.open_for_joining(state, event))
            .map(|state| state.ticket_id.clone());
        let compound = self.sentiment(mention);
        let incident = self.observe_spikes(mention, rule, event, compound, now_secs, &mut triaged);
        let state = match joined {
            Some(id) => {
                let state = self.tickets.get_mut(&id).expect("a linked ticket is remembered");
                state.revision = state.revision.saturating_add(1);
                state.mention_count = state.mention_count.saturating_add(1);
                state.last_event_at = state.last_event_at.max(event);
                state.updated_at = now_secs;
                state.position = position;
                state.recent.push(event);
                if state.recent.len() > RECENT_JOINS {
                    state.recent.remove(0);
                }
                for key in &keys {
                    if !state.links.contains(key) && state.links.len() < LINKS_PER_TICKET {
                        state.links.push(key.clone());
                    }
                }
                if incident.is_some() {
                    state.incident_id.clone_from(&incident);
                }
                state.clone()
            }
            None => match self.open(
                mention,
                rule,
                &Arrival { keys, event, position, now: now_secs },
                &mut triaged,
            ) {
                Some(mut state) => {
                    state.incident_id.clone_from(&incident);
                    state
                }
                None => return triaged,
            },
        };
        let ticket = self.ticket(mention, matched, rule, state, compound, now_secs);
        triaged.tickets.push(ticket);
        triaged
    }

    /// Returns the VADER compound of the mention's title and text, computed once per
    /// mention however many of its rules matched.
    fn sentiment(&mut self, mention: &Mention) -> f64 {
        if let Some((id, compound)) = &self.last_sentiment {
            if *id == mention.id {
                return *compound;
            }
        }
        let compound = cull_model::sentiment::analyze_mention(mention).compound;
        self.last_sentiment = Some((mention.id.clone(), compound));
        compound
    }

    /// Counts the mention in the spike baselines of its rule and its queue; a firing
    /// opens an incident. Returns the incident the mention is part of, if its rule's or
    /// its queue's spike is going on.
    fn observe_spikes(
        &mut self,
        mention: &Mention,
        rule: &CompiledRule,
        event: i64,
        compound: f64,
        now: i64,
        triaged: &mut Triaged,
    ) -> Option<String> {
        if !self.config.spikes.enabled {
            return None;
        }
        let preset = rule.rule.spike.as_deref().and_then(|p| p.parse::<Preset>().ok());
        let client = mention.client.as_deref();
        let scopes = [
            (format!("rule:{}", of_client(client, &rule.rule.id)), self.config.spikes.thresholds(preset)),
            (format!("queue:{}", of_client(client, &rule.rule.queue)), self.config.spikes.thresholds(None)),
        ];
        let negative = compound <= NEGATIVE_COMPOUND;
        let mut part_of = None;
        for (scope, thresholds) in scopes {
            self.spikes_changed = true;
            if let Some(firing) = self.spikes.observe(&scope, event, negative, &thresholds) {
                self.spikes_fired = true;
                self.open_incident(&firing, rule, client, now);
                triaged.firings.push(firing);
            }
            if !self.spikes.is_active(&scope, event, &thresholds) {
                continue;
            }
            let Some(id) = self.incidents.get(&scope).cloned() else { continue };
            if let Some(incident) = self.tickets.get_mut(&id) {
                incident.mention_count = incident.mention_count.saturating_add(1);
                incident.last_event_at = incident.last_event_at.max(event);
                incident.updated_at = now;
                incident.members.push(mention.id.clone());
                if incident.members.len() > MEMBERS_KEPT {
                    incident.members.remove(0);
                }
                incident.mention = Some(mention.clone());
                self.pending_incidents.insert(id.clone());
                part_of.get_or_insert(id);
            }
        }
        part_of
    }

    /// Opens the incident ticket of a spike of `client`'s mentions, on its escalation
    /// queue, at P1.
    fn open_incident(&mut self, firing: &Firing, rule: &CompiledRule, client: Option<&str>, now: i64) {
        let ticket_id =
            cull_model::ticket_id(&format!("incident:{}@{}", firing.scope, firing.started_at), "incident");
        let queue = self.config.escalation_queue(client).to_string();
        let (target, policy) = self.sla(client, &queue, Priority::P1);
        let (clock, sla_due_at) = self.due(client, &queue, firing.started_at, target);
        let kind = match firing.kind {
            SpikeKind::Volume => "mentions",
            SpikeKind::NegativeShare => "negative mentions",
        };
        let summary = format!(
            "Spike of {}: {} {kind} in {} minutes against {:.1} expected ({:?})",
            firing.scope,
            firing.count,
            self.config.spikes.bucket_secs / 60,
            firing.baseline,
            firing.severity,
        );
        let mut state = TicketState::opened(
            ticket_id.clone(),
            client,
            TicketKind::Incident,
            &rule.rule.id,
            &queue,
            firing.started_at,
            now,
        );
        state.links = vec![firing.scope.clone()];
        state.sla_due_at = sla_due_at;
        state.sla_target_minutes = target;
        state.sla_policy = policy;
        state.sla_clock = clock;
        state.priority = Priority::P1;
        state.summary = Some(summary);
        state.severity = Some(firing.severity);
        self.incidents.insert(firing.scope.clone(), ticket_id.clone());
        self.tickets.insert(ticket_id, state);
    }

    /// Returns a revision of every incident that mentions joined since the last call:
    /// one per incident per batch, however many mentions the spike brought.
    pub fn take_incidents(&mut self) -> Vec<Ticket> {
        let pending = std::mem::take(&mut self.pending_incidents);
        let mut tickets = Vec::new();
        for id in pending {
            let Some(state) = self.tickets.get_mut(&id) else { continue };
            let Some(mention) = state.mention.clone() else { continue };
            state.revision = state.revision.saturating_add(1);
            let state = state.clone();
            let rule = TicketRule {
                id: state.rule_id.clone(),
                name: state.summary.clone().unwrap_or_default(),
                version: String::new(),
            };
            let severity_points = match state.severity {
                Some(Severity::Critical) => 50.0,
                Some(Severity::Major) => 40.0,
                _ => 30.0,
            };
            let factors = vec![
                Factor { factor: "priority".into(), value: 1.0, points: 50.0, detail: Some("P1".into()) },
                Factor {
                    factor: "spike".into(),
                    value: f64::from(state.mention_count),
                    points: severity_points,
                    detail: state.summary.clone(),
                },
            ];
            let score = (50.0 + severity_points) as u8;
            let scored = crate::score::Scored {
                factors,
                score,
                priority: Priority::P1,
                rank_offset_minutes: self.config.weights.max_rank_offset_minutes,
            };
            tickets.push(self.build(&state, rule, &mention, Vec::new(), state.updated_at, Some(scored)));
        }
        tickets
    }

    fn open_for_joining(&self, state: &TicketState, event: i64) -> bool {
        self.window_secs > 0
            && state.kind == TicketKind::Ticket
            && state.closed_at.is_none()
            && event <= state.last_event_at.saturating_add(self.window_secs)
            && event >= state.arrival_at.saturating_sub(self.window_secs)
    }

    /// Opens a ticket for a mention no open ticket takes, in its rule's queue or where
    /// that queue's capacity sends it; returns `None` when it went into a digest.
    fn open(
        &mut self,
        mention: &Mention,
        rule: &CompiledRule,
        arrival: &Arrival,
        triaged: &mut Triaged,
    ) -> Option<TicketState> {
        let Arrival { keys, event, position, now } = arrival;
        let (event, position, now) = (*event, *position, *now);
        let client = mention.client.as_deref();
        let mut queue = rule.rule.queue.clone();
        let mut overflow_from = None;
        for _ in 0..=MAX_OVERFLOW_HOPS {
            if !self.is_full(client, &queue, now) {
                break;
            }
            let next = self.config.queue(client, &queue).overflow_queue.clone();
            match next {
                Some(next) if overflow_from.as_ref() != Some(&next) => {
                    triaged
                        .overflows
                        .push(Overflow { queue: queue.clone(), to: OverflowTo::Queue(next.clone()) });
                    overflow_from.get_or_insert_with(|| queue.clone());
                    queue = next;
                }
                _ => {
                    triaged.overflows.push(Overflow { queue: queue.clone(), to: OverflowTo::Digest });
                    let digest = self.bundle(&queue, mention, position, event, now);
                    triaged.tickets.push(digest);
                    return None;
                }
            }
        }
        let thread = keys.first().cloned().unwrap_or_else(|| format!("mention:{}", mention.id));
        let ticket_id = cull_model::ticket_id(&format!("{thread}@{}", mention.id), &rule.rule.id);
        let mut state = TicketState::opened(
            ticket_id.clone(),
            client,
            TicketKind::Ticket,
            &rule.rule.id,
            &queue,
            event,
            now,
        );
        state.overflow_from = overflow_from;
        state.links = keys.iter().take(LINKS_PER_TICKET).cloned().collect();
        state.revision = 1;
        state.mention_count = 1;
        state.priority = rule.rule.priority;
        state.recent = vec![event];
        state.position = position;
        self.opened.entry(queue_key(client, &queue)).or_default().insert((now, ticket_id.clone()));
        self.link(&state);
        self.tickets.insert(ticket_id, state.clone());
        Some(state)
    }

    /// Returns whether `client`'s `queue` has reached its hourly or its open-ticket
    /// limit.
    fn is_full(&mut self, client: Option<&str>, queue: &str, now: i64) -> bool {
        let limits = self.config.queue(client, queue);
        let (per_hour, open) = (limits.max_per_hour, limits.max_open);
        if per_hour.is_none() && open.is_none() {
            return false;
        }
        let open_window = i64::try_from(self.config.open_window_secs).unwrap_or(i64::MAX / 4);
        let opened = self.opened.entry(queue_key(client, queue)).or_default();
        prune_opened(opened, now.saturating_sub(open_window.max(HOUR)));
        // Counted up to the limit only: a full queue is full whatever is beyond.
        let reaches = |since: i64, limit: u32| {
            opened.range((since, String::new())..).take(limit as usize).count() >= limit as usize
        };
        per_hour.is_some_and(|limit| reaches(now - HOUR, limit))
            || open.is_some_and(|limit| reaches(now.saturating_sub(open_window), limit))
    }

    /// Adds a mention a full queue could not take to the queue's digest of this hour.
    fn bundle(
        &mut self,
        queue: &str,
        mention: &Mention,
        position: Option<Position>,
        event: i64,
        now: i64,
    ) -> Ticket {
        let hour = now.div_euclid(HOUR);
        let client = mention.client.as_deref();
        let subject = format!("digest:{}@{hour}", of_client(client, queue));
        let ticket_id = cull_model::ticket_id(&subject, "digest");
        let state = self.tickets.entry(ticket_id.clone()).or_insert_with(|| {
            TicketState::opened(ticket_id, client, TicketKind::Digest, "digest", queue, event, now)
        });
        let replay = state.members.contains(&mention.id);
        if !replay {
            state.revision = state.revision.saturating_add(1);
            state.mention_count = state.mention_count.saturating_add(1);
            state.arrival_at = state.arrival_at.min(event);
            state.last_event_at = state.last_event_at.max(event);
            state.updated_at = now;
            state.position = position;
            state.members.push(mention.id.clone());
            if state.members.len() > MEMBERS_KEPT {
                state.members.remove(0);
            }
        }
        let state = state.clone();
        let rule = TicketRule {
            id: "digest".to_string(),
            name: format!("Mentions over the capacity of {queue}"),
            version: String::new(),
        };
        self.build(&state, rule, mention, Vec::new(), now, None)
    }

    /// Scores the ticket of `state` for its latest mention, fixes its deadline at the
    /// first revision, and returns the ticket.
    fn ticket(
        &mut self,
        mention: &Mention,
        matched: &MatchedRule,
        rule: &CompiledRule,
        mut state: TicketState,
        compound: f64,
        now: i64,
    ) -> Ticket {
        let client = state.client.clone();
        let client = client.as_deref();
        let queue = self.config.queue(client, &state.queue).clone();
        let crisis = self.crisis(mention, rule, client, &state.queue);
        let hour_ago = state.last_event_at.saturating_sub(HOUR);
        let mentions_last_hour = state.recent.iter().filter(|&&t| t >= hour_ago).count() as u32;
        let first = state.sla_policy.is_empty();
        if first {
            let (target, policy) = self.sla(client, &state.queue, state.priority);
            let (clock, due) = self.due(client, &state.queue, state.arrival_at, target);
            state.sla_due_at = due;
            state.sla_target_minutes = target;
            state.sla_policy = policy;
            state.sla_clock = clock;
            state.late_on_arrival = now > state.sla_due_at;
        }
        let late_minutes = (first && state.late_on_arrival).then(|| (now - state.sla_due_at) / 60);
        let author = mention.author.as_deref();
        let signals = Signals {
            rule_priority: rule.rule.priority,
            sentiment: Some(compound),
            followers: mention.meta.get(FOLLOWERS).and_then(|f| parse_count(f)),
            vip: author.filter(|a| self.is_vip(client, a)).map(str::to_string),
            crisis,
            mentions_last_hour,
            spike: state.incident_id.clone(),
            late_minutes,
            channel_weight: queue.channel_weight,
        };
        let scored = score(&self.config.weights, &signals);
        let priority = scored.priority.min(state.priority);
        if priority < state.priority {
            // A more urgent priority may bring the deadline forward, never push it back.
            let (target, policy) = self.sla(client, &state.queue, priority);
            let (_, due) = self.due(client, &state.queue, state.arrival_at, target);
            if due < state.sla_due_at {
                state.sla_due_at = due;
                state.sla_target_minutes = target;
                state.sla_policy = policy;
            }
        }
        state.priority = priority;
        state.remember_join(&mention.id);
        state.factors.clone_from(&scored.factors);
        (state.score, state.rank_offset_minutes) = (scored.score, scored.rank_offset_minutes);
        self.tickets.insert(state.ticket_id.clone(), state.clone());
        self.changed.insert(state.ticket_id.clone());
        let rule_ref = TicketRule {
            id: rule.rule.id.clone(),
            name: rule.rule.name.clone(),
            version: rule.version.clone(),
        };
        self.build(&state, rule_ref, mention, matched.spans.to_vec(), now, Some(scored))
    }

    /// Returns whether `author` is a VIP of everyone or of `client`.
    fn is_vip(&self, client: Option<&str>, author: &str) -> bool {
        let author = normalize_author(author);
        [None, client.map(str::to_string)]
            .iter()
            .filter_map(|owner| self.vip_authors.get(owner))
            .any(|authors| authors.contains(&author))
    }

    /// Returns the key of the configuration of `client`'s `queue`: the client's own
    /// queue settings when it has them, else the pipeline's.
    fn configured(&self, client: Option<&str>, queue: &str) -> QueueKey {
        queue_key(self.config.queue_owner(client, queue), queue)
    }

    /// Returns the name of the clock of `client`'s `queue` and when a ticket that
    /// arrived there at `arrival` with a target of `minutes` is due (unix seconds).
    fn due(&self, client: Option<&str>, queue: &str, arrival: i64, minutes: u32) -> (String, i64) {
        let start = OffsetDateTime::from_unix_timestamp(arrival).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        match self.clocks.get(&self.configured(client, queue)) {
            Some((name, clock)) => (name.clone(), clock.due(start, minutes).unix_timestamp()),
            None => ("calendar".to_string(), SlaClock::Calendar.due(start, minutes).unix_timestamp()),
        }
    }

    /// Returns the latest revision of `state` again, as it was sent, for `mention`,
    /// which made it.
    fn resend(
        &mut self,
        state: &TicketState,
        mention: &Mention,
        matched: &MatchedRule,
        rule: &CompiledRule,
    ) -> Ticket {
        let rule_ref = TicketRule {
            id: rule.rule.id.clone(),
            name: rule.rule.name.clone(),
            version: rule.version.clone(),
        };
        let scored = crate::score::Scored {
            factors: state.factors.clone(),
            score: state.score,
            priority: state.priority,
            rank_offset_minutes: state.rank_offset_minutes,
        };
        self.build(state, rule_ref, mention, matched.spans.to_vec(), state.updated_at, Some(scored))
    }

    /// Returns the first-response target of `priority` in `client`'s `queue` and its
    /// policy name.
    fn sla(&self, client: Option<&str>, queue: &str, priority: Priority) -> (u32, String) {
        (self.config.sla_target(client, queue, priority), format!("{queue}/{}", priority.as_str()))
    }

    /// Returns the crisis clause the mention matches: the rule's own, else its
    /// client's queue's.
    fn crisis(
        &self,
        mention: &Mention,
        rule: &CompiledRule,
        client: Option<&str>,
        queue: &str,
    ) -> Option<String> {
        let queue_clauses = self
            .queue_escalations
            .get(&self.configured(client, queue))
            .map(Vec::as_slice)
            .unwrap_or_default();
        if rule.escalate_on.is_empty() && queue_clauses.is_empty() {
            return None;
        }
        let document = Document::new(mention);
        rule.escalate_on
            .iter()
            .chain(queue_clauses)
            .find(|clause| matches(&clause.plan, &document, &Hidden::NONE))
            .map(|clause| clause.source.clone())
    }

    fn build(
        &mut self,
        state: &TicketState,
        rule: TicketRule,
        mention: &Mention,
        spans: Vec<cull_model::Span>,
        now: i64,
        scored: Option<crate::score::Scored>,
    ) -> Ticket {
        self.changed.insert(state.ticket_id.clone());
        let (factors, priority_score, rank_offset_minutes) = match scored {
            Some(s) => (s.factors, s.score, s.rank_offset_minutes),
            None => (Vec::new(), 0, 0),
        };
        let snippet = crate::snippet(mention, &spans);
        let due = if state.sla_due_at == 0 { now } else { state.sla_due_at };
        Ticket {
            schema: TICKET_SCHEMA.to_string(),
            ticket_id: state.ticket_id.clone(),
            revision: state.revision,
            created_at: rfc3339(state.created_at),
            queue: state.queue.clone(),
            priority: state.priority,
            priority_score,
            sla_due_at: rfc3339(due),
            client: state.client.clone(),
            rule,
            mention: mention.clone(),
            spans,
            snippet,
            kind: state.kind,
            mention_count: state.mention_count,
            arrival_at: rfc3339(state.arrival_at),
            rank_offset_minutes,
            factors,
            sla_policy: state.sla_policy.clone(),
            sla_target_minutes: state.sla_target_minutes,
            sla_clock: state.sla_clock.clone(),
            late_on_arrival: state.late_on_arrival,
            incident_id: state.incident_id.clone(),
            links: state.members.clone(),
            overflow_from: state.overflow_from.clone(),
        }
    }

    fn link(&mut self, state: &TicketState) {
        for key in &state.links {
            let link = (state.client.clone(), state.rule_id.clone(), key.clone());
            self.links.insert(link, state.ticket_id.clone());
        }
    }

    /// Forgets tickets no mention can join any more and that count toward no capacity
    /// (and, past [`REMEMBERED_TICKETS`], the least recently revised).
    fn forget(&mut self, now: i64) {
        let open_window = i64::try_from(self.config.open_window_secs).unwrap_or(i64::MAX / 4);
        let keep = self.window_secs.max(open_window).max(HOUR);
        let horizon = now.saturating_sub(keep.saturating_mul(2));
        self.tickets.retain(|_, state| state.updated_at >= horizon);
        if self.tickets.len() > REMEMBERED_TICKETS {
            let mut by_age: Vec<(i64, String)> =
                self.tickets.values().map(|s| (s.updated_at, s.ticket_id.clone())).collect();
            by_age.sort();
            for (_, id) in by_age.iter().take(self.tickets.len() - REMEMBERED_TICKETS / 2) {
                self.tickets.remove(id);
            }
        }
        let tickets = &self.tickets;
        self.links.retain(|_, id| tickets.contains_key(id));
        for opened in self.opened.values_mut() {
            prune_opened(opened, horizon);
        }
        self.opened.retain(|_, opened| !opened.is_empty());
    }
}

/// Drops the tickets of a queue opened before `horizon`: past the open window, they no
/// longer count (whether or not an agent closed them).
fn prune_opened(opened: &mut BTreeSet<(i64, String)>, horizon: i64) {
    while opened.first().is_some_and(|(at, _)| *at < horizon) {
        opened.pop_first();
    }
}

/// Returns the keys under which `mention` joins an open ticket: its thread first, then
/// its canonical URL, the first copy it duplicates, and itself.
fn link_keys(mention: &Mention) -> Vec<String> {
    let mut keys = vec![thread_key(mention)];
    let mut add = |key: String| {
        if !keys.contains(&key) {
            keys.push(key);
        }
    };
    if let Some(url) = mention.url.as_deref().and_then(canonical_url) {
        add(format!("url:{url}"));
    }
    if let Some(original) = mention.meta.get(NEAR_DUPLICATE_OF) {
        add(format!("mention:{original}"));
    }
    add(format!("mention:{}", mention.id));
    keys
}

/// Returns when the mention was posted (else fetched), in unix seconds.
fn event_time(mention: &Mention) -> Option<i64> {
    [&mention.published_at, &mention.fetched_at]
        .into_iter()
        .flatten()
        .find_map(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .map(OffsetDateTime::unix_timestamp)
}

/// Reads a follower count as listening services write it: `12345`, `12,345`, `12.3k`,
/// `1.2M`.
fn parse_count(text: &str) -> Option<u64> {
    let text = text.trim().replace([',', '_', ' '], "");
    let (number, scale) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1e3),
        (i, 'm' | 'M') => (&text[..i], 1e6),
        _ => (text.as_str(), 1.0),
    };
    let value = number.parse::<f64>().ok()? * scale;
    (value.is_finite() && value >= 0.0).then_some(value as u64)
}

fn normalize_author(author: &str) -> String {
    author.trim().trim_start_matches('@').to_lowercase()
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use cull_match::RuleSet;

    use super::*;
    use crate::config::QueueConfig;

    fn rules(extra: &str) -> RuleSet {
        let toml =
            format!("[[rule]]\nid = 'slack'\nquery = 'slack'\npriority = 'P3'\nqueue = 'care'\n{extra}");
        let loaded = cull_rules::load_files([(Path::new("r.toml"), toml.as_bytes())]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        RuleSet::new(loaded.rules).expect("rule set")
    }

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    fn mention(id: &str, author: Option<&str>, url: Option<&str>, published: &str) -> Mention {
        let mut m = Mention::new(id, "slack is down again for the whole team");
        m.author = author.map(str::to_string);
        m.url = url.map(str::to_string);
        m.published_at = Some(published.to_string());
        m
    }

    /// Triages `m` as the ticketing stage does, its verdict read at `offset`.
    fn triage(triage: &mut Triage, rules: &RuleSet, m: &Mention, offset: i64, now: &str) -> Triaged {
        let verdict = rules.verdict(m);
        let matched = verdict.matched.first().expect("the rule matches");
        let position = Some(Position { partition: 0, offset });
        triage.triage(m, matched, &rules.rules().next().unwrap(), position, at(now))
    }

    fn one(triaged: Triaged) -> Ticket {
        assert_eq!(triaged.tickets.len(), 1, "{triaged:?}");
        triaged.tickets.into_iter().next().unwrap()
    }

    #[test]
    fn an_authors_posts_a_url_and_copies_of_a_post_each_make_one_ticket() {
        let rules = rules("");
        let mut t = Triage::new(&TicketConfig::default()).unwrap();
        let now = "2026-11-25T10:30:00Z";
        let tweets: Vec<Ticket> = (0..5)
            .map(|i| {
                let url = format!("https://x.example/status/{i}");
                let m = mention(&format!("t{i}"), Some("@angry"), Some(&url), "2026-11-25T10:00:00Z");
                one(triage(&mut t, &rules, &m, i, now))
            })
            .collect();
        assert!(tweets.iter().all(|ticket| ticket.ticket_id == tweets[0].ticket_id), "5 tweets, 1 ticket");
        assert_eq!(tweets.iter().map(|t| t.revision).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(tweets[4].mention_count, 5);
        assert_eq!(tweets[4].mention.id, "t4", "a revision carries the latest mention");

        let original =
            mention("o", Some("@brand_fan"), Some("https://x.example/status/100"), "2026-11-25T10:00:00Z");
        let first = one(triage(&mut t, &rules, &original, 10, now));
        let retweets: Vec<Ticket> = (0..30)
            .map(|i| {
                let mut rt =
                    mention(&format!("rt{i}"), Some(&format!("@user{i}")), None, "2026-11-25T10:05:00Z");
                rt.meta.insert(NEAR_DUPLICATE_OF.into(), "o".into());
                one(triage(&mut t, &rules, &rt, 11 + i, now))
            })
            .collect();
        assert!(retweets.iter().all(|r| r.ticket_id == first.ticket_id), "30 retweets join the original");
        assert_eq!(retweets[29].mention_count, 31);
        let mut classic =
            mention("crt", Some("@other"), Some("https://x.example/status/999"), "2026-11-25T10:06:00Z");
        classic.text = "RT @Brand_Fan: slack is down again for the whole team".into();
        let classic = one(triage(&mut t, &rules, &classic, 45, now));
        assert_eq!(classic.ticket_id, first.ticket_id, "a classic retweet joins the post it repeats");

        let a = mention("a", None, Some("https://news.example/story?utm_source=x"), "2026-11-25T10:00:00Z");
        let b =
            mention("b", Some("Wire desk"), Some("https://www.news.example/story"), "2026-11-25T10:10:00Z");
        let (a, b) = (one(triage(&mut t, &rules, &a, 50, now)), one(triage(&mut t, &rules, &b, 51, now)));
        assert_eq!(a.ticket_id, b.ticket_id, "one canonical URL, one ticket");
        assert_ne!(a.ticket_id, first.ticket_id);
    }

    #[test]
    fn a_thread_outside_the_window_opens_a_new_ticket() {
        let rules = rules("");
        let mut t = Triage::new(&TicketConfig::default()).unwrap();
        let early = one(triage(
            &mut t,
            &rules,
            &mention("1", Some("@a"), None, "2026-11-25T08:00:00Z"),
            1,
            "2026-11-25T12:00:00Z",
        ));
        let later = one(triage(
            &mut t,
            &rules,
            &mention("2", Some("@a"), None, "2026-11-25T11:30:00Z"),
            2,
            "2026-11-25T12:00:00Z",
        ));
        assert_ne!(early.ticket_id, later.ticket_id);
        let mut off =
            Triage::new(&TicketConfig { dedupe_window_secs: 0, ..TicketConfig::default() }).unwrap();
        let x = one(triage(
            &mut off,
            &rules,
            &mention("x", Some("@a"), None, "2026-11-25T11:00:00Z"),
            1,
            "2026-11-25T11:00:00Z",
        ));
        let y = one(triage(
            &mut off,
            &rules,
            &mention("y", Some("@a"), None, "2026-11-25T11:00:00Z"),
            2,
            "2026-11-25T11:00:00Z",
        ));
        assert_ne!(x.ticket_id, y.ticket_id, "a window of 0 turns grouping off");
    }

    #[test]
    fn revisions_continue_after_a_restart_and_a_replayed_verdict_changes_nothing() {
        let rules = rules("");
        let config = TicketConfig::default();
        let mut before = Triage::new(&config).unwrap();
        let now = "2026-11-25T10:30:00Z";
        let m = |i: i64| mention(&format!("m{i}"), Some("@a"), None, "2026-11-25T10:00:00Z");
        for i in 0..3 {
            triage(&mut before, &rules, &m(i), i, now);
        }
        let changelog = before.take_changes(at(now));
        let tickets = changelog.iter().filter(|r| matches!(r, ChangelogRecord::Ticket(_))).count();
        assert_eq!(tickets, 1, "one state per ticket, however many revisions");
        assert!(changelog.iter().any(|r| r.key() == "spikes"), "and the spike baselines");
        let mut after = Triage::new(&config).unwrap();
        for state in changelog.iter().cloned().chain(changelog.iter().cloned()) {
            after.restore(state);
        }
        let replay_of_last = one(triage(&mut after, &rules, &m(2), 2, now));
        assert_eq!((replay_of_last.revision, replay_of_last.mention_count), (3, 3), "sent again unchanged");
        let older = triage(&mut after, &rules, &m(1), 1, now);
        assert!(older.replayed && older.tickets.is_empty(), "an older replay is skipped");
        let next = one(triage(&mut after, &rules, &m(3), 3, now));
        assert_eq!((next.revision, next.mention_count), (4, 4));
        let ChangelogRecord::Ticket(mut stale) = changelog[0].clone() else { panic!("a ticket first") };
        stale.revision = 1;
        after.restore(ChangelogRecord::Ticket(stale));
        assert_eq!(after.state(&next.ticket_id).unwrap().revision, 4, "an older record never wins");
    }

    #[test]
    fn a_second_verdict_of_one_mention_sends_its_revision_again_unchanged() {
        let rules = rules("");
        let mut t = Triage::new(&TicketConfig::default()).unwrap();
        let m = |i: i64| mention(&format!("m{i}"), Some("@a"), None, "2026-11-25T02:00:00Z");
        let first = one(triage(&mut t, &rules, &m(0), 0, "2026-11-25T10:00:00Z"));
        let second = one(triage(&mut t, &rules, &m(1), 1, "2026-11-25T10:00:00Z"));
        // The matcher re-read m1 after a crash: a new verdict, at a new offset, later.
        let again = triage(&mut t, &rules, &m(1), 7, "2026-11-25T10:09:00Z");
        assert!(again.replayed);
        assert_eq!(again.tickets, std::slice::from_ref(&second), "the same revision, byte for byte");
        let older = triage(&mut t, &rules, &m(0), 8, "2026-11-25T10:10:00Z");
        assert!(older.replayed && older.tickets.is_empty(), "an older mention is not a new revision");
        let next = one(triage(&mut t, &rules, &m(2), 9, "2026-11-25T10:11:00Z"));
        assert_eq!((first.revision, second.revision, next.revision, next.mention_count), (1, 2, 3, 3));
    }

    #[test]
    fn the_deadline_counts_from_the_post_is_fixed_and_a_late_mention_is_flagged_and_raised() {
        let rules = rules("");
        let mut t = Triage::new(&TicketConfig::default()).unwrap();
        let first = one(triage(
            &mut t,
            &rules,
            &mention("1", Some("@a"), None, "2026-11-25T10:00:00Z"),
            1,
            "2026-11-25T10:01:00Z",
        ));
        assert_eq!(
            (first.arrival_at.as_str(), first.sla_due_at.as_str()),
            ("2026-11-25T10:00:00Z", "2026-11-25T14:00:00Z")
        );
        assert_eq!(
            (first.sla_policy.as_str(), first.sla_target_minutes, first.late_on_arrival),
            ("care/P3", 240, false)
        );
        let later = one(triage(
            &mut t,
            &rules,
            &mention("2", Some("@a"), None, "2026-11-25T10:50:00Z"),
            2,
            "2026-11-25T10:55:00Z",
        ));
        assert_eq!(later.sla_due_at, first.sla_due_at, "not pushed back by a revision");
        assert_eq!(later.created_at, first.created_at);

        let old = one(triage(
            &mut t,
            &rules,
            &mention("3", Some("@b"), None, "2026-11-25T02:00:00Z"),
            3,
            "2026-11-25T10:00:00Z",
        ));
        assert!(old.late_on_arrival);
        let late = old.factors.iter().find(|f| f.factor == "late").expect("a late factor");
        assert_eq!(late.value, 240.0, "4 hours past a 4 hour target");
        assert_eq!(old.priority, Priority::P2, "raised one level");
        assert_eq!(old.sla_due_at, "2026-11-25T03:00:00Z", "the raised priority's sooner deadline");
    }

    #[test]
    fn crisis_words_of_the_rule_or_the_queue_escalate() {
        let rules = rules("escalate_on = '\"food poisoning\" OR lawsuit'\n");
        let mut config = TicketConfig::default();
        config.queues.insert(
            "care".into(),
            QueueConfig { escalate_on: Some("outage".into()), ..QueueConfig::default() },
        );
        let mut t = Triage::new(&config).unwrap();
        let now = "2026-11-25T10:00:00Z";
        let mut m = mention("1", None, None, now);
        m.text = "Slack gave us food poisoning, calling our lawyer".into();
        let crisis = one(triage(&mut t, &rules, &m, 1, now));
        let factor = crisis.factors.iter().find(|f| f.factor == "crisis").expect("crisis");
        assert_eq!((factor.detail.as_deref(), factor.points), (Some("\"food poisoning\""), 25.0));
        let sentiment = crisis.factors.iter().find(|f| f.factor == "sentiment").expect("negative");
        assert!(sentiment.value < -0.05, "{sentiment:?}");
        assert_eq!(f64::from(crisis.priority_score), (20.0 + 25.0 + sentiment.points).round());
        m = mention("2", None, None, now);
        m.text = "Slack outage again".into();
        let queue_words = one(triage(&mut t, &rules, &m, 2, now));
        assert!(queue_words.factors.iter().any(|f| f.detail.as_deref() == Some("outage")));
        let calm = one(triage(&mut t, &rules, &mention("3", None, None, now), 3, now));
        assert!(calm.factors.iter().all(|f| f.factor != "crisis"));
    }

    #[test]
    fn reach_and_vip_authors_raise_the_score() {
        let rules = rules("");
        let config = TicketConfig { vip_authors: vec!["@BigCustomer".into()], ..TicketConfig::default() };
        let mut t = Triage::new(&config).unwrap();
        let now = "2026-11-25T10:00:00Z";
        let mut m = mention("1", Some("bigcustomer"), None, now);
        m.meta.insert(FOLLOWERS.into(), "12.5k".into());
        let ticket = one(triage(&mut t, &rules, &m, 1, now));
        let factor = |name: &str| ticket.factors.iter().find(|f| f.factor == name).cloned();
        assert_eq!(factor("reach").map(|f| f.value), Some(12_500.0));
        assert_eq!(factor("vip").and_then(|f| f.detail), Some("bigcustomer".into()));
        assert_eq!(parse_count("1,234"), Some(1234));
        assert_eq!(parse_count("lots"), None);
    }

    #[test]
    fn velocity_counts_joins_in_the_last_hour() {
        let rules = rules("");
        let mut t = Triage::new(&TicketConfig::default()).unwrap();
        let now = "2026-11-25T10:30:00Z";
        let tickets: Vec<Ticket> = (0..4)
            .map(|i| {
                one(triage(
                    &mut t,
                    &rules,
                    &mention(&format!("{i}"), Some("@a"), None, "2026-11-25T10:00:00Z"),
                    i,
                    now,
                ))
            })
            .collect();
        let velocity = tickets[3].factors.iter().find(|f| f.factor == "velocity").expect("velocity");
        assert_eq!((velocity.value, velocity.points), (4.0, 9.0));
        assert!(tickets[3].priority_score > tickets[0].priority_score);
    }

    #[test]
    fn a_full_queue_overflows_to_its_overflow_queue_then_into_a_digest_never_to_nowhere() {
        let rules = rules("");
        let mut config = TicketConfig::default();
        let limited = |max_per_hour, overflow_queue: Option<&str>| QueueConfig {
            max_per_hour: Some(max_per_hour),
            overflow_queue: overflow_queue.map(str::to_string),
            ..QueueConfig::default()
        };
        config.queues.insert("care".into(), limited(2, Some("care-overflow")));
        config.queues.insert("care-overflow".into(), limited(1, None));
        let mut t = Triage::new(&config).unwrap();
        let now = "2026-11-25T10:00:00Z";
        let results: Vec<Triaged> = (0..6)
            .map(|i| {
                triage(&mut t, &rules, &mention(&format!("{i}"), Some(&format!("@u{i}")), None, now), i, now)
            })
            .collect();
        let queues: Vec<(String, TicketKind)> =
            results.iter().map(|r| (r.tickets[0].queue.clone(), r.tickets[0].kind)).collect();
        let expected = |q: &str, k| (q.to_string(), k);
        assert_eq!(
            queues,
            [
                expected("care", TicketKind::Ticket),
                expected("care", TicketKind::Ticket),
                expected("care-overflow", TicketKind::Ticket),
                expected("care-overflow", TicketKind::Digest),
                expected("care-overflow", TicketKind::Digest),
                expected("care-overflow", TicketKind::Digest),
            ]
        );
        assert_eq!(results[2].tickets[0].overflow_from.as_deref(), Some("care"));
        let digest = &results[5].tickets[0];
        assert_eq!((digest.revision, digest.mention_count), (3, 3));
        assert_eq!(digest.links, ["3", "4", "5"], "the digest lists what it bundles");
        assert_eq!(results[5].overflows.len(), 2, "care, then care-overflow, were full");
        let joined = one(triage(&mut t, &rules, &mention("again", Some("@u0"), None, now), 10, now));
        assert_eq!(joined.queue, "care", "a revision of an open ticket is not new work");
    }

    #[test]
    fn one_author_on_a_global_rule_for_two_clients_makes_two_tickets_counted_apart() {
        let rules = rules("");
        let mut config = TicketConfig::default();
        config.queues.insert("care".into(), QueueConfig { max_per_hour: Some(1), ..QueueConfig::default() });
        let acme = crate::config::ClientConfig {
            queues: BTreeMap::from([(
                "care".to_string(),
                QueueConfig {
                    max_per_hour: Some(5),
                    sla_minutes: crate::config::QueueSla { p3: Some(30), ..Default::default() },
                    ..QueueConfig::default()
                },
            )]),
            vip_authors: vec!["@angry".into()],
            ..Default::default()
        };
        config.clients.insert("acme".into(), acme);
        let mut t = Triage::new(&config).unwrap();
        let now = "2026-11-25T10:00:00Z";
        let of = |client: Option<&str>, id: &str| {
            let mut m = mention(id, Some("@angry"), Some("https://x.example/status/1"), now);
            m.client = client.map(str::to_string);
            m
        };
        let acme_first = one(triage(&mut t, &rules, &of(Some("acme"), "acme:1"), 0, now));
        let globex_first = one(triage(&mut t, &rules, &of(Some("globex"), "globex:1"), 1, now));
        let house = one(triage(&mut t, &rules, &of(None, "m-1"), 2, now));
        assert_eq!(acme_first.client.as_deref(), Some("acme"));
        assert_eq!(globex_first.client.as_deref(), Some("globex"));
        assert_eq!(house.client, None);
        let ids = [&acme_first.ticket_id, &globex_first.ticket_id, &house.ticket_id];
        assert!(
            ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
            "one author, three clients: {ids:?}"
        );
        assert!(
            [&acme_first, &globex_first, &house]
                .iter()
                .all(|t| t.revision == 1 && t.kind == TicketKind::Ticket),
            "nobody joined another client's ticket, nor took its capacity"
        );
        let acme_again = one(triage(&mut t, &rules, &of(Some("acme"), "acme:2"), 3, now));
        assert_eq!((acme_again.ticket_id.as_str(), acme_again.revision), (acme_first.ticket_id.as_str(), 2));
        assert_eq!(acme_first.sla_target_minutes, 30, "acme's own queue settings");
        assert_eq!(globex_first.sla_target_minutes, 240, "the pipeline's");
        assert!(acme_first.factors.iter().any(|f| f.factor == "vip"), "a VIP of acme");
        assert!(globex_first.factors.iter().all(|f| f.factor != "vip"), "not of globex");
        let other = |client: &str, i: i64| {
            let mut m = mention(&format!("{client}:o{i}"), Some(&format!("@u{i}")), None, now);
            m.client = Some(client.to_string());
            m
        };
        let globex_full = one(triage(&mut t, &rules, &other("globex", 0), 10, now));
        assert_eq!(globex_full.kind, TicketKind::Digest, "globex's care took its one ticket an hour");
        assert_eq!(globex_full.client.as_deref(), Some("globex"));
        let acme_room = one(triage(&mut t, &rules, &other("acme", 0), 11, now));
        assert_eq!(acme_room.kind, TicketKind::Ticket, "acme's care has room for five");
        let house_full = one(triage(&mut t, &rules, &mention("m-2", Some("@u9"), None, now), 12, now));
        assert_eq!(house_full.kind, TicketKind::Digest);
        assert_ne!(house_full.ticket_id, globex_full.ticket_id, "each client its own digest");
        let mut restarted = Triage::new(&config).unwrap();
        for state in t.take_changes(at(now)) {
            restarted.restore(state);
        }
        let globex_again = one(triage(&mut restarted, &rules, &of(Some("globex"), "globex:2"), 13, now));
        assert_eq!(
            (globex_again.ticket_id.as_str(), globex_again.revision),
            (globex_first.ticket_id.as_str(), 2)
        );
        assert_eq!(globex_again.client.as_deref(), Some("globex"), "the client survives a restart");
    }

    #[test]
    fn capacity_frees_up_as_the_hour_passes_and_survives_a_restart() {
        let rules = rules("");
        let mut config = TicketConfig::default();
        config.queues.insert("care".into(), QueueConfig { max_per_hour: Some(1), ..QueueConfig::default() });
        let mut t = Triage::new(&config).unwrap();
        let m = |i: i64, at: &str| mention(&format!("{i}"), Some(&format!("@u{i}")), None, at);
        one(triage(&mut t, &rules, &m(0, "2026-11-25T10:00:00Z"), 0, "2026-11-25T10:00:00Z"));
        let mut restarted = Triage::new(&config).unwrap();
        for state in t.take_changes(at("2026-11-25T10:00:00Z")) {
            restarted.restore(state);
        }
        let full =
            one(triage(&mut restarted, &rules, &m(1, "2026-11-25T10:10:00Z"), 1, "2026-11-25T10:10:00Z"));
        assert_eq!(full.kind, TicketKind::Digest, "the restart remembers the hour's ticket");
        let free =
            one(triage(&mut restarted, &rules, &m(2, "2026-11-25T11:05:00Z"), 2, "2026-11-25T11:05:00Z"));
        assert_eq!(free.kind, TicketKind::Ticket);
    }

    #[test]
    fn dispositions_free_max_open_survive_a_restart_and_merge_with_revisions_across_replicas() {
        use cull_model::{Disposition, Feedback};
        let rules = rules("");
        let mut config = TicketConfig::default();
        config.queues.insert("care".into(), QueueConfig { max_open: Some(2), ..QueueConfig::default() });
        let mut t = Triage::new(&config).unwrap();
        let now = "2026-11-25T10:00:00Z";
        let m = |i: i64| mention(&format!("{i}"), Some(&format!("@u{i}")), None, now);
        let first = one(triage(&mut t, &rules, &m(0), 0, now));
        let second = one(triage(&mut t, &rules, &m(1), 1, now));
        let full = one(triage(&mut t, &rules, &m(2), 2, now));
        assert_eq!(full.kind, TicketKind::Digest, "two open tickets fill the queue");
        let feedback = |ticket: &Ticket, disposition, minute: u8| {
            let at = at(&format!("2026-11-25T10:{minute:02}:00Z"));
            let mut feedback = Feedback::new(&ticket.ticket_id, disposition, at);
            if disposition == Disposition::WrongPriority {
                feedback.priority = Some(Priority::P1);
            }
            feedback
        };
        assert_eq!(t.dispose(&feedback(&first, Disposition::WrongPriority, 1)), Disposal::Recorded);
        assert_eq!(one(triage(&mut t, &rules, &m(3), 3, now)).kind, TicketKind::Digest, "still open");
        assert_eq!(t.dispose(&feedback(&first, Disposition::Irrelevant, 2)), Disposal::Closed);
        assert_eq!(t.dispose(&feedback(&first, Disposition::Resolved, 1)), Disposal::Superseded);
        let mut other_client = feedback(&second, Disposition::Resolved, 2);
        other_client.client = Some("acme".into());
        assert_eq!(t.dispose(&other_client), Disposal::Unknown, "another client cannot close it");
        let unknown = Feedback::new("no-such-ticket", Disposition::Resolved, at(now));
        assert_eq!(t.dispose(&unknown), Disposal::Unknown);
        // The verdict that opened the closed ticket, read again after a crash, changes
        // nothing: the same revision goes out again and the ticket stays closed.
        let replayed = triage(&mut t, &rules, &m(0), 0, now);
        assert!(replayed.replayed, "{replayed:?}");
        assert_eq!(
            (replayed.tickets[0].ticket_id.as_str(), replayed.tickets[0].revision),
            (first.ticket_id.as_str(), 1)
        );
        assert!(t.state(&first.ticket_id).unwrap().closed_at.is_some(), "still closed");
        let room = one(triage(&mut t, &rules, &m(4), 4, now));
        assert_eq!(room.kind, TicketKind::Ticket, "the closed ticket made room");
        let rejoin = one(triage(&mut t, &rules, &mention("0b", Some("@u0"), None, now), 5, now));
        assert_ne!(rejoin.ticket_id, first.ticket_id, "a closed ticket takes no more mentions");
        assert_eq!(rejoin.kind, TicketKind::Digest, "and the new one finds the queue full again");

        // A restart reads the closure back from the changelog.
        let changes = t.take_changes(at(now));
        let mut restarted = Triage::new(&config).unwrap();
        for record in changes.iter().cloned() {
            restarted.restore(record);
        }
        let closed_at = restarted.state(&first.ticket_id).unwrap().closed_at;
        assert_eq!(closed_at, Some(at("2026-11-25T10:02:00Z").unix_timestamp()));
        assert_eq!(one(triage(&mut restarted, &rules, &m(5), 6, now)).kind, TicketKind::Digest);
        assert_eq!(restarted.dispose(&feedback(&second, Disposition::Duplicate, 3)), Disposal::Closed);
        assert_eq!(one(triage(&mut restarted, &rules, &m(6), 7, now)).kind, TicketKind::Ticket);

        // Another replica closes a ticket while its owner revises it: the owner's newer
        // revision keeps the closure, and the closing replica takes the revision.
        let mut owner = Triage::new(&config).unwrap();
        let mut reader = Triage::new(&config).unwrap();
        let ticket = one(triage(&mut owner, &rules, &m(7), 0, now));
        for record in owner.take_changes(at(now)) {
            reader.restore(record);
        }
        assert_eq!(reader.dispose(&feedback(&ticket, Disposition::Resolved, 5)), Disposal::Closed);
        let revised = one(triage(&mut owner, &rules, &mention("7b", Some("@u7"), None, now), 1, now));
        assert_eq!((revised.ticket_id.as_str(), revised.revision), (ticket.ticket_id.as_str(), 2));
        let (from_owner, from_reader) = (owner.take_changes(at(now)), reader.take_changes(at(now)));
        for record in from_reader {
            owner.restore(record);
        }
        for record in from_owner {
            reader.restore(record);
        }
        for (name, triage) in [("owner", &owner), ("reader", &reader)] {
            let state = triage.state(&ticket.ticket_id).unwrap();
            assert_eq!(state.revision, 2, "{name}");
            assert_eq!(state.disposition.map(|(d, _)| d), Some(Disposition::Resolved), "{name}");
            assert!(state.closed_at.is_some(), "{name}");
        }
    }

    #[test]
    fn a_business_hours_queue_counts_only_its_open_hours() {
        let rules = rules("");
        let mut config = TicketConfig::default();
        let calendar: crate::calendar::CalendarConfig = toml::from_str(
            "time_zone = 'Europe/Berlin'\nhours = { mon = '09:00-17:00', fri = '09:00-17:00' }\n",
        )
        .unwrap();
        config.calendars.insert("emea".into(), calendar);
        config
            .queues
            .insert("care".into(), QueueConfig { calendar: Some("emea".into()), ..QueueConfig::default() });
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let mut t = Triage::new(&config).unwrap();
        // Friday 2026-11-27 16:00 Berlin (15:00Z): one open hour left, three on Monday.
        let m = mention("1", Some("@a"), None, "2026-11-27T15:00:00Z");
        let ticket = one(triage(&mut t, &rules, &m, 1, "2026-11-27T15:01:00Z"));
        assert_eq!((ticket.sla_clock.as_str(), ticket.sla_due_at.as_str()), ("emea", "2026-11-30T11:00:00Z"));
        let mut unknown = config.clone();
        unknown.queues.get_mut("care").unwrap().calendar = Some("apac".into());
        assert_eq!(unknown.validate()[0].key, "queues.care.calendar");
    }

    #[test]
    fn a_burst_opens_one_incident_that_links_its_mentions_and_raises_its_tickets() {
        let rules = rules("");
        let mut t = Triage::new(&TicketConfig::default()).unwrap();
        let start = at("2026-11-25T00:00:00Z").unix_timestamp();
        let mut offset = 0;
        let mut post = |t: &mut Triage, minute: i64, n: usize| -> Vec<Triaged> {
            let time = OffsetDateTime::from_unix_timestamp(start + minute * 60).unwrap();
            let published = time.format(&Rfc3339).unwrap();
            (0..n)
                .map(|_| {
                    offset += 1;
                    let m = mention(&format!("m{offset}"), Some(&format!("@u{offset}")), None, &published);
                    let verdict = rules.verdict(&m);
                    t.triage(
                        &m,
                        &verdict.matched[0],
                        &rules.rules().next().unwrap(),
                        Some(Position { partition: 0, offset }),
                        time,
                    )
                })
                .collect()
        };
        let steady: Vec<Triaged> = (0..120).flat_map(|bucket| post(&mut t, bucket * 5, 2)).collect();
        assert!(steady.iter().all(|r| r.firings.is_empty()), "two mentions per five minutes never fire");
        assert!(t.take_incidents().is_empty());
        let burst: Vec<Triaged> = post(&mut t, 600, 40);
        let firings: Vec<&Firing> = burst.iter().flat_map(|r| &r.firings).collect();
        let scopes: Vec<&str> = firings.iter().map(|f| f.scope.as_str()).collect();
        assert_eq!(scopes, ["rule:slack", "queue:care"], "once per scope");
        let incidents = t.take_incidents();
        assert_eq!(incidents.len(), 2, "one revision per incident per batch");
        let incident = &incidents[0];
        assert_eq!(
            (incident.kind, incident.priority, incident.queue.as_str()),
            (TicketKind::Incident, Priority::P1, "escalations")
        );
        assert!(incident.links.len() >= 2 && incident.mention_count as usize == incident.links.len());
        let last = burst.last().unwrap().tickets[0].clone();
        assert!(last.incident_id.is_some(), "a ticket in the spike names its incident");
        assert!(last.factors.iter().any(|f| f.factor == "spike"));

        let mut restarted = Triage::new(&TicketConfig::default()).unwrap();
        for record in t.take_changes(at("2026-11-25T10:00:00Z")) {
            restarted.restore(record);
        }
        let again: Vec<Triaged> = post(&mut restarted, 601, 40);
        assert!(again.iter().all(|r| r.firings.is_empty()), "the restart remembers the cool-down");
        assert!(again.last().unwrap().tickets[0].incident_id.is_some(), "and the incident");
    }

    #[test]
    fn a_spike_of_one_client_opens_its_incident_on_its_escalation_queue_and_links_only_its_mentions() {
        let rules = rules("");
        let mut config = TicketConfig::default();
        let acme = crate::config::ClientConfig {
            escalation_queue: Some("acme-crisis".into()),
            ..crate::config::ClientConfig::default()
        };
        config.clients.insert("acme".into(), acme);
        let mut t = Triage::new(&config).unwrap();
        let start = at("2026-11-25T00:00:00Z").unix_timestamp();
        let mut offset = 0;
        let mut post = |t: &mut Triage, client: &str, minute: i64, n: usize| -> Vec<Triaged> {
            let time = OffsetDateTime::from_unix_timestamp(start + minute * 60).unwrap();
            let published = time.format(&Rfc3339).unwrap();
            (0..n)
                .map(|_| {
                    offset += 1;
                    let id = format!("{client}:m{offset}");
                    let mut m = mention(&id, Some(&format!("@u{offset}")), None, &published);
                    m.client = Some(client.to_string());
                    let verdict = rules.verdict(&m);
                    let position = Some(Position { partition: 0, offset });
                    t.triage(&m, &verdict.matched[0], &rules.rules().next().unwrap(), position, time)
                })
                .collect()
        };
        for bucket in 0..120 {
            post(&mut t, "acme", bucket * 5, 2);
            post(&mut t, "globex", bucket * 5, 2);
        }
        assert!(t.take_incidents().is_empty());
        let globex_burst: Vec<Triaged> = post(&mut t, "globex", 600, 1);
        let burst: Vec<Triaged> = post(&mut t, "acme", 600, 40);
        assert!(globex_burst.iter().all(|r| r.firings.is_empty()));
        let scopes: Vec<String> = burst.iter().flat_map(|r| &r.firings).map(|f| f.scope.clone()).collect();
        assert_eq!(scopes, ["rule:acme/slack", "queue:acme/care"], "acme's own scopes");
        let incidents = t.take_incidents();
        assert_eq!(incidents.len(), 2);
        for incident in &incidents {
            assert_eq!(
                (incident.client.as_deref(), incident.queue.as_str()),
                (Some("acme"), "acme-crisis"),
                "{incident:?}"
            );
            assert!(incident.links.iter().all(|id| id.starts_with("acme:")), "{:?}", incident.links);
            assert_eq!(incident.mention.client.as_deref(), Some("acme"));
        }
        let globex_after = post(&mut t, "globex", 601, 1);
        assert_eq!(globex_after[0].tickets[0].incident_id, None, "acme's spike is not globex's");
    }
}
