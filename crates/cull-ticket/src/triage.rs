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

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use cull_match::verify::{matches, Document, Hidden};
use cull_model::thread::{canonical_url, thread_key, NEAR_DUPLICATE_OF};
use cull_model::{MatchedRule, Mention, Priority, Ticket, TicketKind, TicketRule, TICKET_SCHEMA};
use cull_rules::{Clause, CompiledRule};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::TicketConfig;
use crate::score::{score, Signals};

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
    /// For a digest: the mentions it bundles (the latest).
    pub members: Vec<String>,
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
}

/// The triage of verdicts into tickets; see the module documentation.
#[derive(Debug)]
pub struct Triage {
    config: TicketConfig,
    window_secs: i64,
    /// Crisis clauses of each configured queue.
    queue_escalations: HashMap<String, Vec<Clause>>,
    vip_authors: HashSet<String>,
    tickets: HashMap<String, TicketState>,
    /// `(rule id, link key)` to the ticket open for joining under it.
    links: HashMap<(String, String), String>,
    /// Per queue, when each of its tickets was opened, oldest first.
    opened: HashMap<String, VecDeque<i64>>,
    /// Tickets changed since the last [`Triage::take_changes`].
    changed: BTreeSet<String>,
    calls: u64,
}

impl Triage {
    /// Returns the triage of a valid `config` (see [`TicketConfig::validate`]); a
    /// queue's `escalate_on` that does not compile is reported by validation and
    /// ignored here.
    pub fn new(config: &TicketConfig) -> Triage {
        let queue_escalations = config
            .queues
            .iter()
            .filter_map(|(name, queue)| {
                let clauses = cull_rules::compile_clauses(queue.escalate_on.as_deref()?).ok()?;
                Some((name.clone(), clauses))
            })
            .collect();
        Triage {
            window_secs: i64::try_from(config.dedupe_window_secs).unwrap_or(i64::MAX / 4),
            queue_escalations,
            vip_authors: config.vip_authors.iter().map(|a| normalize_author(a)).collect(),
            tickets: HashMap::new(),
            links: HashMap::new(),
            opened: HashMap::new(),
            changed: BTreeSet::new(),
            calls: 0,
            config: config.clone(),
        }
    }

    /// Returns the state of ticket `id`, if it is remembered.
    pub fn state(&self, id: &str) -> Option<&TicketState> {
        self.tickets.get(id)
    }

    /// Takes a ticket state read from the changelog; a record older than what is
    /// already known (a lower revision) is ignored, so records may come in any order
    /// and more than once.
    pub fn restore(&mut self, state: TicketState) {
        if self.tickets.get(&state.ticket_id).is_some_and(|known| known.revision >= state.revision) {
            return;
        }
        if !self.tickets.contains_key(&state.ticket_id) {
            let opened = self.opened.entry(state.queue.clone()).or_default();
            let at = opened.partition_point(|&t| t <= state.created_at);
            opened.insert(at, state.created_at);
        }
        self.link(&state);
        self.tickets.insert(state.ticket_id.clone(), state);
    }

    /// Returns the states changed since the last call, to be written to the changelog.
    pub fn take_changes(&mut self) -> Vec<TicketState> {
        let changed = std::mem::take(&mut self.changed);
        changed.iter().filter_map(|id| self.tickets.get(id).cloned()).collect()
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
        self.calls += 1;
        if self.calls.is_multiple_of(1024) || self.tickets.len() > REMEMBERED_TICKETS {
            self.forget(now_secs);
        }
        let event = event_time(mention).map_or(now_secs, |t| t.min(now_secs));
        let keys = link_keys(mention);
        let rule_id = rule.rule.id.as_str();
        let joined = keys
            .iter()
            .filter_map(|key| self.links.get(&(rule_id.to_string(), key.clone())))
            .filter_map(|id| self.tickets.get(id))
            .find(|state| self.open_for_joining(state, event))
            .map(|state| state.ticket_id.clone());
        let mut triaged = Triaged::default();
        let state = match joined {
            Some(id) => {
                let state = self.tickets.get_mut(&id).expect("a linked ticket is remembered");
                if let (Some(seen), Some(now_at)) = (state.position, position) {
                    if seen.partition == now_at.partition && now_at.offset < seen.offset {
                        triaged.replayed = true;
                        return triaged;
                    }
                }
                let replay = state.position.is_some() && state.position == position;
                triaged.replayed = replay;
                if !replay {
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
                }
                state.clone()
            }
            None => match self.open(
                mention,
                rule,
                &Arrival { keys, event, position, now: now_secs },
                &mut triaged,
            ) {
                Some(state) => state,
                None => return triaged,
            },
        };
        let ticket = self.ticket(mention, matched, rule, state, now_secs);
        triaged.tickets.push(ticket);
        triaged
    }

    fn open_for_joining(&self, state: &TicketState, event: i64) -> bool {
        self.window_secs > 0
            && state.kind == TicketKind::Ticket
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
        let mut queue = rule.rule.queue.clone();
        let mut overflow_from = None;
        for _ in 0..=MAX_OVERFLOW_HOPS {
            if !self.is_full(&queue, now) {
                break;
            }
            let next = self.config.queue(&queue).overflow_queue.clone();
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
        let state = TicketState {
            ticket_id: ticket_id.clone(),
            kind: TicketKind::Ticket,
            rule_id: rule.rule.id.clone(),
            queue: queue.clone(),
            overflow_from,
            links: keys.iter().take(LINKS_PER_TICKET).cloned().collect(),
            revision: 1,
            mention_count: 1,
            created_at: now,
            arrival_at: event,
            last_event_at: event,
            updated_at: now,
            sla_due_at: 0,
            sla_target_minutes: 0,
            sla_policy: String::new(),
            sla_clock: String::new(),
            late_on_arrival: false,
            priority: rule.rule.priority,
            recent: vec![event],
            position,
            incident_id: None,
            members: Vec::new(),
        };
        self.opened.entry(queue).or_default().push_back(now);
        self.link(&state);
        self.tickets.insert(ticket_id, state.clone());
        Some(state)
    }

    /// Returns whether `queue` has reached its hourly or its open-ticket limit.
    fn is_full(&mut self, queue: &str, now: i64) -> bool {
        let limits = self.config.queue(queue);
        let (per_hour, open) = (limits.max_per_hour, limits.max_open);
        if per_hour.is_none() && open.is_none() {
            return false;
        }
        let open_window = i64::try_from(self.config.open_window_secs).unwrap_or(i64::MAX / 4);
        let opened = self.opened.entry(queue.to_string()).or_default();
        let horizon = now.saturating_sub(open_window.max(HOUR));
        while opened.front().is_some_and(|&t| t < horizon) {
            opened.pop_front();
        }
        let count_since = |since: i64| opened.len() - opened.partition_point(|&t| t < since);
        per_hour.is_some_and(|limit| count_since(now - HOUR) >= limit as usize)
            || open.is_some_and(|limit| count_since(now.saturating_sub(open_window)) >= limit as usize)
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
        let ticket_id = cull_model::ticket_id(&format!("digest:{queue}@{hour}"), "digest");
        let state = self.tickets.entry(ticket_id.clone()).or_insert_with(|| TicketState {
            ticket_id: ticket_id.clone(),
            kind: TicketKind::Digest,
            rule_id: "digest".to_string(),
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
        });
        let replay = state.position.is_some() && state.position == position;
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
        now: i64,
    ) -> Ticket {
        let queue = self.config.queue(&state.queue).clone();
        let crisis = self.crisis(mention, rule, &state.queue);
        let hour_ago = state.last_event_at.saturating_sub(HOUR);
        let mentions_last_hour = state.recent.iter().filter(|&&t| t >= hour_ago).count() as u32;
        let first = state.sla_policy.is_empty();
        if first {
            let (target, policy) = self.sla(&state.queue, state.priority);
            state.sla_due_at = state.arrival_at.saturating_add(i64::from(target) * 60);
            state.sla_target_minutes = target;
            state.sla_policy = policy;
            state.sla_clock = "calendar".to_string();
            state.late_on_arrival = now > state.sla_due_at;
        }
        let late_minutes = (first && state.late_on_arrival).then(|| (now - state.sla_due_at) / 60);
        let author = mention.author.as_deref();
        let signals = Signals {
            rule_priority: rule.rule.priority,
            sentiment: None,
            followers: mention.meta.get(FOLLOWERS).and_then(|f| parse_count(f)),
            vip: author.filter(|a| self.vip_authors.contains(&normalize_author(a))).map(str::to_string),
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
            let (target, policy) = self.sla(&state.queue, priority);
            let due = state.arrival_at.saturating_add(i64::from(target) * 60);
            if due < state.sla_due_at {
                state.sla_due_at = due;
                state.sla_target_minutes = target;
                state.sla_policy = policy;
            }
        }
        state.priority = priority;
        self.tickets.insert(state.ticket_id.clone(), state.clone());
        self.changed.insert(state.ticket_id.clone());
        let rule_ref = TicketRule {
            id: rule.rule.id.clone(),
            name: rule.rule.name.clone(),
            version: rule.version.clone(),
        };
        let mut ticket = self.build(&state, rule_ref, mention, matched.spans.clone(), now, Some(scored));
        ticket.client = rule.rule.client.clone().or_else(|| mention.client.clone());
        ticket
    }

    /// Returns the first-response target of `priority` in `queue` and its policy name.
    fn sla(&self, queue: &str, priority: Priority) -> (u32, String) {
        (self.config.sla_target(queue, priority), format!("{queue}/{}", priority.as_str()))
    }

    /// Returns the crisis clause the mention matches: the rule's own, else its queue's.
    fn crisis(&self, mention: &Mention, rule: &CompiledRule, queue: &str) -> Option<String> {
        let queue_clauses = self.queue_escalations.get(queue).map(Vec::as_slice).unwrap_or_default();
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
            client: mention.client.clone(),
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
            self.links.insert((state.rule_id.clone(), key.clone()), state.ticket_id.clone());
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
        triage.triage(m, matched, &rules.rules()[0], position, at(now))
    }

    fn one(triaged: Triaged) -> Ticket {
        assert_eq!(triaged.tickets.len(), 1, "{triaged:?}");
        triaged.tickets.into_iter().next().unwrap()
    }

    #[test]
    fn an_authors_posts_a_url_and_copies_of_a_post_each_make_one_ticket() {
        let rules = rules("");
        let mut t = Triage::new(&TicketConfig::default());
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
        let mut t = Triage::new(&TicketConfig::default());
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
        let mut off = Triage::new(&TicketConfig { dedupe_window_secs: 0, ..TicketConfig::default() });
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
        let mut before = Triage::new(&config);
        let now = "2026-11-25T10:30:00Z";
        let m = |i: i64| mention(&format!("m{i}"), Some("@a"), None, "2026-11-25T10:00:00Z");
        for i in 0..3 {
            triage(&mut before, &rules, &m(i), i, now);
        }
        let changelog = before.take_changes();
        assert_eq!(changelog.len(), 1, "one state per ticket, however many revisions");
        let mut after = Triage::new(&config);
        for state in changelog.iter().cloned().chain(changelog.iter().cloned()) {
            after.restore(state);
        }
        let replay_of_last = one(triage(&mut after, &rules, &m(2), 2, now));
        assert_eq!((replay_of_last.revision, replay_of_last.mention_count), (3, 3), "sent again unchanged");
        let older = triage(&mut after, &rules, &m(1), 1, now);
        assert!(older.replayed && older.tickets.is_empty(), "an older replay is skipped");
        let next = one(triage(&mut after, &rules, &m(3), 3, now));
        assert_eq!((next.revision, next.mention_count), (4, 4));
        let mut stale = changelog[0].clone();
        stale.revision = 1;
        after.restore(stale);
        assert_eq!(after.state(&next.ticket_id).unwrap().revision, 4, "an older record never wins");
    }

    #[test]
    fn the_deadline_counts_from_the_post_is_fixed_and_a_late_mention_is_flagged_and_raised() {
        let rules = rules("");
        let mut t = Triage::new(&TicketConfig::default());
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
        let mut t = Triage::new(&config);
        let now = "2026-11-25T10:00:00Z";
        let mut m = mention("1", None, None, now);
        m.text = "Slack gave us food poisoning, calling our lawyer".into();
        let crisis = one(triage(&mut t, &rules, &m, 1, now));
        let factor = crisis.factors.iter().find(|f| f.factor == "crisis").expect("crisis");
        assert_eq!((factor.detail.as_deref(), factor.points), (Some("\"food poisoning\""), 25.0));
        assert_eq!(crisis.priority_score, 45);
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
        let mut t = Triage::new(&config);
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
        let mut t = Triage::new(&TicketConfig::default());
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
        let mut t = Triage::new(&config);
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
    fn capacity_frees_up_as_the_hour_passes_and_survives_a_restart() {
        let rules = rules("");
        let mut config = TicketConfig::default();
        config.queues.insert("care".into(), QueueConfig { max_per_hour: Some(1), ..QueueConfig::default() });
        let mut t = Triage::new(&config);
        let m = |i: i64, at: &str| mention(&format!("{i}"), Some(&format!("@u{i}")), None, at);
        one(triage(&mut t, &rules, &m(0, "2026-11-25T10:00:00Z"), 0, "2026-11-25T10:00:00Z"));
        let mut restarted = Triage::new(&config);
        for state in t.take_changes() {
            restarted.restore(state);
        }
        let full =
            one(triage(&mut restarted, &rules, &m(1, "2026-11-25T10:10:00Z"), 1, "2026-11-25T10:10:00Z"));
        assert_eq!(full.kind, TicketKind::Digest, "the restart remembers the hour's ticket");
        let free =
            one(triage(&mut restarted, &rules, &m(2, "2026-11-25T11:05:00Z"), 2, "2026-11-25T11:05:00Z"));
        assert_eq!(free.kind, TicketKind::Ticket);
    }
}
