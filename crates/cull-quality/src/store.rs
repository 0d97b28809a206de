//! The store: what every rule did, day by day, and what agents said of its tickets.
//!
//! Counts are kept per rule and day (the day the stage read the record, UTC), never as
//! one metric series per rule: a pack of 100k rules would make 100k series. The
//! tickets are kept with their mentions, authors and latest disposition, since a
//! rule's precision and the suggestions are computed from them.
//!
//! The store is one JSON file written atomically (a temporary file, `fsync`, rename)
//! with the bus offsets it has read in the same file, as the index keeps its
//! checkpoint in its commit: after a crash it holds exactly the records before its
//! checkpoint, and the stage skips any record the checkpoint covers, so nothing is
//! counted twice or lost.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use cull_index::Checkpoint;
use cull_model::{Disposition, Feedback, Scope, Ticket, TicketKind, Verdict};
use serde::{Deserialize, Serialize};

use crate::error::QualityError;

/// The file in the store's directory.
pub const STORE_FILE: &str = "rule-stats.json";

/// Mention ids kept per ticket, for the suggestions.
const MENTIONS_PER_TICKET: usize = 20;
/// Authors kept per ticket, for `block_author`.
const AUTHORS_PER_TICKET: usize = 5;

const DAY: i64 = 86_400;

/// Returns the UTC day of a time in seconds since the epoch.
pub fn day_of(unix: i64) -> i64 {
    unix.div_euclid(DAY)
}

/// What became of a disposition the store read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackOutcome {
    /// It is the ticket's latest and counts for this rule's precision.
    Counted(RuleKey),
    /// Its ticket was not read yet: it counts once the ticket says whose it is.
    Waiting,
    /// It names another client than the ticket's (`None`: the contact center's own), so
    /// it does not count.
    OtherClient {
        /// The ticket's client.
        ticket_client: Option<String>,
    },
    /// A later disposition of the ticket was read before it.
    Superseded,
    /// Its time is not a valid one.
    InvalidTime,
}

impl FeedbackOutcome {
    /// Returns the metric label of the outcome.
    pub fn label(&self) -> &'static str {
        match self {
            FeedbackOutcome::Counted(_) => "counted",
            FeedbackOutcome::Waiting => "waiting",
            FeedbackOutcome::OtherClient { .. } => "other_client",
            FeedbackOutcome::Superseded => "superseded",
            FeedbackOutcome::InvalidTime => "invalid_time",
        }
    }

    /// Every label, so the series exist from the first scrape.
    pub const LABELS: [&'static str; 5] =
        ["counted", "waiting", "other_client", "superseded", "invalid_time"];
}

/// A rule as stats know it: its client (`None`: a global rule, or the contact
/// center's own) and its id. Two clients may use the same id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleKey {
    /// The client of the mentions it matched.
    pub client: Option<String>,
    /// The rule id.
    pub rule: String,
}

impl RuleKey {
    /// Returns the key of `rule` on mentions of `client`.
    pub fn new(client: Option<&str>, rule: &str) -> RuleKey {
        RuleKey { client: client.map(str::to_string), rule: rule.to_string() }
    }

    /// Returns the key as the store writes it: `client/rule`, `/rule` for none (a
    /// client name has no `/`).
    fn encode(&self) -> String {
        format!("{}/{}", self.client.as_deref().unwrap_or(""), self.rule)
    }

    fn decode(text: &str) -> RuleKey {
        let (client, rule) = text.split_once('/').unwrap_or(("", text));
        RuleKey::new((!client.is_empty()).then_some(client), rule)
    }
}

/// What one rule did on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts {
    /// Mentions it matched.
    #[serde(default)]
    pub matches: u64,
    /// Mentions whose match it culled, by reason and clause (`exclude: adjuster`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub culls: BTreeMap<String, u64>,
    /// Tickets opened for it.
    #[serde(default)]
    pub tickets: u64,
    /// Times the prefilter handed it to verification, in profiled mentions.
    #[serde(default)]
    pub candidates: u64,
    /// Nanoseconds spent deciding it, in profiled mentions.
    #[serde(default)]
    pub verify_ns: u64,
}

/// What the store keeps of one ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketFacts {
    /// The client of its mentions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Its rule; `None` while only a disposition of it has been read (the feedback
    /// and the tickets come on different topics, in either order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The day it was first read.
    pub day: i64,
    /// Its mentions (the first [`MENTIONS_PER_TICKET`]).
    #[serde(default)]
    pub mentions: Vec<String>,
    /// Their authors.
    #[serde(default)]
    pub authors: Vec<String>,
    /// The latest disposition, with its time (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<(Disposition, i64)>,
    /// Dispositions read before the ticket, with the client each named: only the
    /// ticket says whose it is, so they are taken when it comes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<(Option<String>, Disposition, i64)>,
}

/// Dispositions held per ticket until the ticket is read.
const PENDING_PER_TICKET: usize = 16;

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    checkpoint: Checkpoint,
    /// Per rule (`client/rule`), per day.
    rules: BTreeMap<String, BTreeMap<i64, DayCounts>>,
    /// Mentions profiled, per client (`""`: the contact center's own) and day.
    profiled: BTreeMap<String, BTreeMap<i64, u64>>,
    tickets: BTreeMap<String, TicketFacts>,
    /// Rules whose precision is under their threshold, alerted once until they
    /// recover.
    #[serde(default)]
    alerting: BTreeSet<String>,
}

/// One culling clause of a rule and the mentions it culled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CullCount {
    /// The reason and the clause: `exclude: adjuster`, `lang: de`.
    pub clause: String,
    /// Mentions it culled.
    pub count: u64,
}

/// A rule's quality and cost over a window of days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleReport {
    /// The rule id.
    pub rule_id: String,
    /// The client of its mentions (absent: the contact center's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Mentions it matched.
    pub matches: u64,
    /// Mentions whose match it culled.
    pub culled: u64,
    /// Culls per clause, most first.
    pub culls: Vec<CullCount>,
    /// Tickets opened for it.
    pub tickets: u64,
    /// Its tickets with a disposition in the window.
    pub feedback: u64,
    /// Of those, the false positives (`irrelevant`, `block_author`).
    pub irrelevant: u64,
    /// 1 − irrelevant ÷ feedback; absent without feedback.
    pub precision: Option<f64>,
    /// The same over the window before.
    pub previous_precision: Option<f64>,
    /// `precision − previous_precision`.
    pub trend: Option<f64>,
    /// The precision under which it alerts.
    pub threshold: f64,
    /// Whether its precision is under its threshold with enough feedback to say so.
    pub below_threshold: bool,
    /// Mentions profiled it could meet.
    pub profiled: u64,
    /// Times it was a candidate among them.
    pub candidates: u64,
    /// Candidates per profiled mention: the share of traffic that costs a check.
    pub candidate_rate: Option<f64>,
    /// Microseconds of verification per profiled mention: what it costs the matcher.
    pub verify_micros_per_mention: Option<f64>,
}

/// How reports are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortBy {
    /// The costliest first (verification time per mention).
    Cost,
    /// The noisiest first: the most false positives, then the most culls.
    Noise,
    /// The lowest precision first; rules without feedback last.
    Precision,
}

impl SortBy {
    /// Every order, by name.
    pub const NAMES: [&'static str; 3] = ["cost", "noise", "precision"];

    /// Returns the order named `name`.
    pub fn parse(name: &str) -> Option<SortBy> {
        match name {
            "cost" => Some(SortBy::Cost),
            "noise" => Some(SortBy::Noise),
            "precision" => Some(SortBy::Precision),
            _ => None,
        }
    }
}

/// The tickets of a rule that agents labelled, as the suggestions read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labelled {
    /// Mentions of tickets found irrelevant (or of blocked authors).
    pub irrelevant: Vec<String>,
    /// Mentions of tickets found relevant (resolved, re-prioritized, duplicates).
    pub relevant: Vec<String>,
    /// Authors agents blocked, with their tickets' count.
    pub blocked_authors: BTreeMap<String, u64>,
}

/// What the thresholds are for an alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds<'a> {
    /// The pipeline's quality settings.
    pub config: &'a crate::QualityConfig,
    /// Today (UTC day number).
    pub today: i64,
}

/// A change in which rules are under their precision threshold.
#[derive(Debug, Clone, PartialEq)]
pub enum PrecisionChange {
    /// The rule fell under its threshold.
    Dropped(RuleReport),
    /// The rule is back at or over it.
    Recovered(RuleReport),
}

/// The per-rule store; see the module documentation.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    data: Persisted,
    /// The directory's lock, held by the one writer ([`Store::open_for_writing`]).
    _lock: Option<std::fs::File>,
}

/// The lock file in the store's directory.
const LOCK_FILE: &str = "LOCK";

impl Store {
    /// Opens the store in `dir` for the one stage that writes it, creating the
    /// directory when missing (an empty store when it has no file yet), and locks the
    /// directory: two writers would each overwrite the other's counts and checkpoint.
    pub fn open_for_writing(dir: &Path) -> Result<Store, QualityError> {
        std::fs::create_dir_all(dir).map_err(|e| QualityError::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| QualityError::io(&path, e))?;
        lock.try_lock().map_err(|_| QualityError::Locked { path: dir.to_path_buf() })?;
        Ok(Store { _lock: Some(lock), ..Store::open(dir)? })
    }

    /// Opens the store in `dir` without writing it (a report, a test), creating the
    /// directory when missing; an empty store when it has no file yet.
    pub fn open(dir: &Path) -> Result<Store, QualityError> {
        std::fs::create_dir_all(dir).map_err(|e| QualityError::io(dir, e))?;
        let path = dir.join(STORE_FILE);
        let data = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| QualityError::Corrupt { path: path.clone(), message: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(QualityError::io(&path, e)),
        };
        Ok(Store { path, data, _lock: None })
    }

    /// Opens the store of `dir` for reading: an error naming the file when it has
    /// none (no quality stage has written there).
    pub fn read(dir: &Path) -> Result<Store, QualityError> {
        let path = dir.join(STORE_FILE);
        if !path.exists() {
            return Err(QualityError::Missing { path });
        }
        Store::open(dir)
    }

    /// Returns the offsets the store holds every record before.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.data.checkpoint
    }

    /// Returns a mutable handle on the checkpoint, to advance it past each record
    /// read and to forget what lies beyond a replaced log.
    pub fn checkpoint_mut(&mut self) -> &mut Checkpoint {
        &mut self.data.checkpoint
    }

    /// Counts a verdict read on `day`: each rule it matched and each it culled.
    pub fn record_verdict(&mut self, verdict: &Verdict, day: i64) {
        let client = verdict.client.as_deref().or(verdict.mention.as_ref().and_then(|m| m.client.as_deref()));
        for matched in &verdict.matched {
            self.day(client, &matched.rule_id, day).matches += 1;
        }
        for culled in &verdict.culled {
            let clause = format!("{}: {}", culled.reason.as_str(), culled.clause);
            *self.day(client, &culled.rule_id, day).culls.entry(clause).or_default() += 1;
        }
    }

    /// Counts a profiled mention of `client` on `day` and, for each candidate rule,
    /// the time its verification took.
    pub fn record_profile<'a>(
        &mut self,
        client: Option<&str>,
        day: i64,
        candidates: impl IntoIterator<Item = (Option<&'a str>, &'a str, u64)>,
    ) {
        *self.data.profiled.entry(client.unwrap_or("").to_string()).or_default().entry(day).or_default() += 1;
        for (rule_client, rule, nanos) in candidates {
            // A global rule's cost is counted under the mention's client like its
            // matches: that is whose traffic it cost.
            let counts = self.day(client.or(rule_client), rule, day);
            counts.candidates += 1;
            counts.verify_ns = counts.verify_ns.saturating_add(nanos);
        }
    }

    /// Takes a ticket revision read on `day`: a ticket seen for the first time counts
    /// for its rule; its mention and author are kept.
    pub fn record_ticket(&mut self, ticket: &Ticket, day: i64) {
        if ticket.kind != TicketKind::Ticket {
            return;
        }
        let facts = self.data.tickets.entry(ticket.ticket_id.clone()).or_insert_with(|| TicketFacts {
            client: ticket.client.clone(),
            day,
            ..TicketFacts::default()
        });
        let new = facts.rule.is_none();
        if new {
            // The ticket says whose it is: of the dispositions read before it, only its
            // client's count.
            facts.client.clone_from(&ticket.client);
            facts.rule = Some(ticket.rule.id.clone());
            facts.day = day;
            for (client, disposition, at) in std::mem::take(&mut facts.pending) {
                if client == facts.client && cull_model::supersedes((disposition, at), facts.disposition) {
                    facts.disposition = Some((disposition, at));
                }
            }
        } else if facts.client != ticket.client {
            tracing::warn!(ticket = %ticket.ticket_id, "a ticket id seen under two clients: the later is not counted");
            return;
        }
        if !facts.mentions.contains(&ticket.mention.id) && facts.mentions.len() < MENTIONS_PER_TICKET {
            facts.mentions.push(ticket.mention.id.clone());
        }
        if let Some(author) = ticket.mention.author.as_deref().filter(|a| !a.trim().is_empty()) {
            if !facts.authors.iter().any(|known| known == author) && facts.authors.len() < AUTHORS_PER_TICKET
            {
                facts.authors.push(author.to_string());
            }
        }
        if new {
            self.day(ticket.client.as_deref(), &ticket.rule.id, day).tickets += 1;
        }
    }

    /// Takes an agent's disposition: the latest (by its time) of each ticket counts.
    /// Says what became of it; a disposition naming another client than the ticket's
    /// is not counted (a helpdesk's mistake the stage logs and counts).
    pub fn record_feedback(&mut self, feedback: &Feedback) -> FeedbackOutcome {
        let Some(at) = feedback.at_unix() else { return FeedbackOutcome::InvalidTime };
        let facts = self
            .data
            .tickets
            .entry(feedback.ticket_id.clone())
            .or_insert_with(|| TicketFacts { day: day_of(at), ..TicketFacts::default() });
        let Some(rule) = facts.rule.as_deref() else {
            if facts.pending.len() == PENDING_PER_TICKET {
                facts.pending.remove(0);
            }
            facts.pending.push((feedback.client.clone(), feedback.disposition, at));
            return FeedbackOutcome::Waiting;
        };
        if facts.client != feedback.client {
            return FeedbackOutcome::OtherClient { ticket_client: facts.client.clone() };
        }
        if !cull_model::supersedes((feedback.disposition, at), facts.disposition) {
            return FeedbackOutcome::Superseded;
        }
        let key = RuleKey::new(facts.client.as_deref(), rule);
        facts.disposition = Some((feedback.disposition, at));
        FeedbackOutcome::Counted(key)
    }

    /// Drops the counts and tickets older than `retention_days` before `today`.
    pub fn prune(&mut self, today: i64, retention_days: u32) {
        let oldest = today - i64::from(retention_days);
        for days in self.data.rules.values_mut() {
            days.retain(|day, _| *day > oldest);
        }
        self.data.rules.retain(|_, days| !days.is_empty());
        for days in self.data.profiled.values_mut() {
            days.retain(|day, _| *day > oldest);
        }
        self.data.profiled.retain(|_, days| !days.is_empty());
        // A ticket never read (dispositions of it only) is kept a day: a helpdesk's
        // typo or a stranger's ids must not grow the store for the whole retention.
        self.data.tickets.retain(|_, facts| match facts.rule {
            Some(_) => facts.day > oldest || facts.disposition.is_some_and(|(_, at)| day_of(at) > oldest),
            None => facts.pending.iter().any(|(_, _, at)| day_of(*at) >= today - 1),
        });
    }

    /// Writes the store and its checkpoint atomically.
    pub fn save(&self) -> Result<(), QualityError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let bytes = serde_json::to_vec(&self.data).expect("the store always serializes");
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| QualityError::io(dir, e))?;
        file.write_all(&bytes).map_err(|e| QualityError::io(file.path(), e))?;
        file.as_file().sync_all().map_err(|e| QualityError::io(file.path(), e))?;
        file.persist(&self.path).map_err(|e| QualityError::io(&self.path, e.error))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| QualityError::io(dir, e))?;
        Ok(())
    }

    /// Returns the report of every rule `scope` may see that did something in the
    /// `window_days` up to `today`, plus the rules of `known` (id and client) that did
    /// nothing, sorted by `sort`.
    pub fn report<'a>(
        &self,
        scope: &Scope,
        config: &crate::QualityConfig,
        today: i64,
        known: impl IntoIterator<Item = (Option<&'a str>, &'a str)>,
        sort: SortBy,
    ) -> Vec<RuleReport> {
        let mut keys: BTreeSet<RuleKey> = self.data.rules.keys().map(|k| RuleKey::decode(k)).collect();
        keys.extend(
            self.data
                .tickets
                .values()
                .filter_map(|f| Some(RuleKey::new(f.client.as_deref(), f.rule.as_deref()?))),
        );
        keys.extend(known.into_iter().map(|(client, rule)| RuleKey::new(client, rule)));
        keys.retain(|key| scope.admits(key.client.as_deref()));
        let mut reports = self.reports_of(keys, config, today);
        let key = |r: &RuleReport| (r.client.clone(), r.rule_id.clone());
        match sort {
            SortBy::Cost => reports.sort_by(|a, b| {
                let cost = |r: &RuleReport| r.verify_micros_per_mention.unwrap_or(0.0);
                cost(b).total_cmp(&cost(a)).then_with(|| key(a).cmp(&key(b)))
            }),
            SortBy::Noise => reports.sort_by(|a, b| {
                (b.irrelevant, b.culled).cmp(&(a.irrelevant, a.culled)).then_with(|| key(a).cmp(&key(b)))
            }),
            SortBy::Precision => reports.sort_by(|a, b| {
                let precision = |r: &RuleReport| r.precision.unwrap_or(f64::INFINITY);
                precision(a)
                    .total_cmp(&precision(b))
                    .then_with(|| b.feedback.cmp(&a.feedback))
                    .then_with(|| key(a).cmp(&key(b)))
            }),
        }
        reports
    }

    /// Returns the reports of the rules of `keys`, in key order.
    fn reports_of(
        &self,
        keys: BTreeSet<RuleKey>,
        config: &crate::QualityConfig,
        today: i64,
    ) -> Vec<RuleReport> {
        let window = i64::from(config.window_days);
        let (from, previous_from) = (today - window + 1, today - 2 * window + 1);
        let mut feedback: BTreeMap<RuleKey, [(u64, u64); 2]> = BTreeMap::new();
        for facts in self.data.tickets.values() {
            let (Some(rule), Some((disposition, at))) = (&facts.rule, facts.disposition) else { continue };
            let day = day_of(at);
            let window = if (from..=today).contains(&day) {
                0
            } else if (previous_from..from).contains(&day) {
                1
            } else {
                continue;
            };
            let entry = &mut feedback.entry(RuleKey::new(facts.client.as_deref(), rule)).or_default()[window];
            entry.0 += 1;
            entry.1 += u64::from(disposition.is_false_positive());
        }
        let profiled = |client: Option<&str>| -> u64 {
            let days = |counts: &BTreeMap<i64, u64>| counts.range(from..=today).map(|(_, n)| n).sum::<u64>();
            self.data.profiled.get(client.unwrap_or("")).map_or(0, days)
        };
        keys.into_iter()
            .map(|key| {
                let mut total = DayCounts::default();
                if let Some(days) = self.data.rules.get(&key.encode()) {
                    for counts in days.range(from..=today).map(|(_, counts)| counts) {
                        total.matches += counts.matches;
                        total.tickets += counts.tickets;
                        total.candidates += counts.candidates;
                        total.verify_ns = total.verify_ns.saturating_add(counts.verify_ns);
                        for (clause, n) in &counts.culls {
                            *total.culls.entry(clause.clone()).or_default() += n;
                        }
                    }
                }
                let [(fed, irrelevant), (previous_fed, previous_irrelevant)] =
                    feedback.get(&key).copied().unwrap_or_default();
                let precision_of =
                    |fed: u64, irrelevant: u64| (fed > 0).then(|| 1.0 - irrelevant as f64 / fed as f64);
                let precision = precision_of(fed, irrelevant);
                let previous_precision = precision_of(previous_fed, previous_irrelevant);
                let threshold = config.threshold(&key.rule);
                let profiled = profiled(key.client.as_deref());
                let mut culls: Vec<CullCount> =
                    total.culls.into_iter().map(|(clause, count)| CullCount { clause, count }).collect();
                culls.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.clause.cmp(&b.clause)));
                RuleReport {
                    culled: culls.iter().map(|c| c.count).sum(),
                    culls,
                    matches: total.matches,
                    tickets: total.tickets,
                    feedback: fed,
                    irrelevant,
                    trend: precision.zip(previous_precision).map(|(now, before)| now - before),
                    below_threshold: fed >= config.min_feedback && precision.is_some_and(|p| p < threshold),
                    precision,
                    previous_precision,
                    threshold,
                    profiled,
                    candidates: total.candidates,
                    candidate_rate: (profiled > 0).then(|| total.candidates as f64 / profiled as f64),
                    verify_micros_per_mention: (profiled > 0)
                        .then(|| total.verify_ns as f64 / 1_000.0 / profiled as f64),
                    rule_id: key.rule,
                    client: key.client,
                }
            })
            .collect()
    }

    /// Returns the rules whose place under or over their threshold changed since the
    /// last call for the rules of `touched`, and remembers the new places.
    pub fn precision_changes(
        &mut self,
        touched: &BTreeSet<RuleKey>,
        thresholds: Thresholds<'_>,
    ) -> Vec<PrecisionChange> {
        // The rules alerting now are looked at again too: one that went quiet, or whose
        // old feedback left the window, recovers rather than alert for ever.
        let mut touched = touched.clone();
        touched.extend(self.data.alerting.iter().map(|key| RuleKey::decode(key)));
        if touched.is_empty() {
            return Vec::new();
        }
        // Only these rules are reported: a batch's check must not cost the whole pack.
        let reports = self.reports_of(touched, thresholds.config, thresholds.today);
        let mut changes = Vec::new();
        for report in reports {
            let key = RuleKey::new(report.client.as_deref(), &report.rule_id);
            let was = self.data.alerting.contains(&key.encode());
            match (was, report.below_threshold) {
                (false, true) => {
                    self.data.alerting.insert(key.encode());
                    changes.push(PrecisionChange::Dropped(report));
                }
                (true, false) => {
                    self.data.alerting.remove(&key.encode());
                    changes.push(PrecisionChange::Recovered(report));
                }
                _ => {}
            }
        }
        changes
    }

    /// Returns how many rules are under their precision threshold.
    pub fn alerting(&self) -> usize {
        self.data.alerting.len()
    }

    /// Returns the labelled tickets of rule `rule` on the mentions of the clients
    /// `admits` takes (`None`: the contact center's own).
    pub fn labelled(&self, rule: &str, admits: impl Fn(Option<&str>) -> bool) -> Labelled {
        let mut labelled = Labelled::default();
        for facts in self.data.tickets.values() {
            if facts.rule.as_deref() != Some(rule) || !admits(facts.client.as_deref()) {
                continue;
            }
            let Some((disposition, _)) = facts.disposition else { continue };
            if disposition.is_false_positive() {
                labelled.irrelevant.extend(facts.mentions.iter().cloned());
            } else {
                labelled.relevant.extend(facts.mentions.iter().cloned());
            }
            if disposition == Disposition::BlockAuthor {
                for author in &facts.authors {
                    *labelled.blocked_authors.entry(author.clone()).or_default() += 1;
                }
            }
        }
        labelled.irrelevant.sort();
        labelled.irrelevant.dedup();
        labelled.relevant.sort();
        labelled.relevant.dedup();
        // A mention in both (two tickets of one rule disagreeing) teaches nothing.
        let both: BTreeSet<String> = labelled
            .irrelevant
            .iter()
            .filter(|id| labelled.relevant.binary_search(id).is_ok())
            .cloned()
            .collect();
        labelled.irrelevant.retain(|id| !both.contains(id));
        labelled.relevant.retain(|id| !both.contains(id));
        labelled
    }

    /// Returns what the store knows of ticket `id`.
    pub fn ticket(&self, id: &str) -> Option<&TicketFacts> {
        self.data.tickets.get(id)
    }

    fn day(&mut self, client: Option<&str>, rule: &str, day: i64) -> &mut DayCounts {
        let key = RuleKey::new(client, rule).encode();
        self.data.rules.entry(key).or_default().entry(day).or_default()
    }
}

#[cfg(test)]
mod tests {
    use cull_model::{CullReason, Culled, MatchedRule, Mention, VERDICT_SCHEMA};
    use time::OffsetDateTime;

    use super::*;
    use crate::QualityConfig;

    const TODAY: i64 = 20_000;

    fn verdict(client: Option<&str>, matched: &[&str], culled: &[(&str, &str)]) -> Verdict {
        Verdict {
            schema: VERDICT_SCHEMA.into(),
            mention_id: "m".into(),
            client: client.map(str::to_string),
            ruleset_version: "v".into(),
            matched: matched
                .iter()
                .map(|id| MatchedRule {
                    rule_id: (*id).into(),
                    rule_version: "v".into(),
                    spans: Default::default(),
                })
                .collect(),
            culled: culled
                .iter()
                .map(|(id, clause)| Culled {
                    rule_id: (*id).into(),
                    reason: CullReason::Exclude,
                    clause: clause.to_string(),
                })
                .collect(),
            mention: None,
        }
    }

    fn ticket(id: &str, client: Option<&str>, rule: &str, mention: &str, author: &str) -> Ticket {
        let mut mention = Mention::new(mention, "text");
        mention.author = Some(author.to_string());
        mention.client = client.map(str::to_string);
        serde_json::from_value(serde_json::json!({
            "schema": cull_model::TICKET_SCHEMA, "ticket_id": id, "revision": 1,
            "created_at": "2026-11-20T10:00:00Z", "queue": "social", "priority": "P2", "priority_score": 60,
            "sla_due_at": "2026-11-20T11:00:00Z", "client": client,
            "rule": { "id": rule, "name": rule, "version": "v1" }, "mention": mention, "spans": [], "snippet": "",
        }))
        .unwrap()
    }

    fn feedback(ticket: &str, client: Option<&str>, disposition: Disposition, day: i64) -> Feedback {
        changed_mind(ticket, client, disposition, day, 0)
    }

    /// A disposition `minutes` after the first of the day: an agent who changed her mind.
    fn changed_mind(
        ticket: &str,
        client: Option<&str>,
        disposition: Disposition,
        day: i64,
        minutes: i64,
    ) -> Feedback {
        let at = OffsetDateTime::from_unix_timestamp(day * DAY + 3_600 + minutes * 60).unwrap();
        let mut feedback = Feedback::new(ticket, disposition, at);
        feedback.client = client.map(str::to_string);
        feedback
    }

    #[test]
    fn counts_precision_and_its_trend_survive_a_reopen_and_stay_within_a_client() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.record_verdict(&verdict(None, &["slack"], &[("wax", "polish")]), TODAY);
        store.record_verdict(&verdict(None, &["slack"], &[("wax", "polish")]), TODAY);
        store.record_verdict(&verdict(Some("acme"), &["slack"], &[]), TODAY);
        // The window before: 2 of 2 relevant; this window: 1 of 4.
        for (i, disposition, day) in [
            (0, Disposition::Resolved, TODAY - 8),
            (1, Disposition::Resolved, TODAY - 9),
            (2, Disposition::Irrelevant, TODAY),
            (3, Disposition::BlockAuthor, TODAY - 1),
            (4, Disposition::Irrelevant, TODAY - 2),
            (5, Disposition::WrongPriority, TODAY),
        ] {
            let id = format!("t{i}");
            if i == 2 {
                // Feedback before its ticket: counted once the ticket says whose it is.
                assert_eq!(
                    store.record_feedback(&feedback(&id, None, disposition, day)),
                    FeedbackOutcome::Waiting
                );
            }
            store.record_ticket(&ticket(&id, None, "slack", &format!("m{i}"), &format!("@a{i}")), TODAY);
            store.record_ticket(&ticket(&id, None, "slack", &format!("m{i}"), &format!("@a{i}")), TODAY);
            let mut disposition_record = feedback(&id, None, disposition, day);
            if disposition == Disposition::WrongPriority {
                disposition_record.priority = Some(cull_model::Priority::P1);
            }
            if i != 2 {
                assert_eq!(
                    store.record_feedback(&disposition_record),
                    FeedbackOutcome::Counted(RuleKey::new(None, "slack"))
                );
            }
        }
        // Staff answering for the wrong client: not counted, and said so.
        assert_eq!(
            store.record_feedback(&feedback("t0", Some("acme"), Disposition::Irrelevant, TODAY)),
            FeedbackOutcome::OtherClient { ticket_client: None }
        );
        assert_eq!(
            store.record_feedback(&feedback("t0", None, Disposition::Irrelevant, TODAY - 30)),
            FeedbackOutcome::Superseded
        );
        store.record_ticket(&ticket("a0", Some("acme"), "slack", "acme:m0", "@x"), TODAY);
        store.record_profile(None, TODAY, [(None, "slack", 4_000)]);
        store.record_profile(None, TODAY, []);
        store.checkpoint_mut().advance("cull.verdicts", 0, 41);
        store.save().unwrap();

        let store = Store::read(dir.path()).unwrap();
        assert!(store.checkpoint().covers("cull.verdicts", 0, 41));
        let config = QualityConfig { min_feedback: 3, ..QualityConfig::default() };
        let reports = store.report(&Scope::All, &config, TODAY, [(None, "idle")], SortBy::Precision);
        let ids: Vec<(Option<&str>, &str)> =
            reports.iter().map(|r| (r.client.as_deref(), r.rule_id.as_str())).collect();
        assert_eq!(
            ids,
            [(None, "slack"), (None, "idle"), (None, "wax"), (Some("acme"), "slack")],
            "lowest precision first, rules without feedback after"
        );
        let slack = &reports[0];
        assert_eq!((slack.matches, slack.culled, slack.tickets), (2, 0, 6));
        assert_eq!(
            (slack.feedback, slack.irrelevant),
            (4, 3),
            "t2, t3 and t4 are false positives; t5 is not"
        );
        assert_eq!(slack.precision, Some(0.25));
        assert_eq!(slack.previous_precision, Some(1.0));
        assert_eq!(slack.trend, Some(-0.75));
        assert!(slack.below_threshold);
        assert_eq!((slack.profiled, slack.candidates, slack.candidate_rate), (2, 1, Some(0.5)));
        assert_eq!(slack.verify_micros_per_mention, Some(2.0));
        let wax = store.report(&Scope::All, &config, TODAY, [], SortBy::Noise);
        let wax = wax.iter().find(|r| r.rule_id == "wax").unwrap();
        assert_eq!(wax.culls, [CullCount { clause: "exclude: polish".into(), count: 2 }]);
        let acme = store.report(&Scope::Client("acme".into()), &config, TODAY, [], SortBy::Cost);
        assert_eq!(acme.len(), 1, "a client sees its own rows only");
        assert_eq!((acme[0].matches, acme[0].tickets, acme[0].feedback), (1, 1, 0));
        let labelled = store.labelled("slack", |client| client.is_none());
        assert_eq!(labelled.irrelevant, ["m2", "m3", "m4"]);
        assert_eq!(labelled.relevant, ["m0", "m1", "m5"]);
        assert_eq!(labelled.blocked_authors, BTreeMap::from([("@a3".to_string(), 1)]));
    }

    #[test]
    fn a_rule_alerts_once_when_it_drops_and_once_when_it_recovers_and_old_days_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let config = QualityConfig { min_feedback: 2, min_precision: 0.5, ..QualityConfig::default() };
        let thresholds = Thresholds { config: &config, today: TODAY };
        let key = RuleKey::new(None, "r");
        let touched = BTreeSet::from([key.clone()]);
        for i in 0..3 {
            store.record_ticket(&ticket(&format!("t{i}"), None, "r", &format!("m{i}"), "@a"), TODAY);
        }
        store.record_feedback(&feedback("t0", None, Disposition::Irrelevant, TODAY));
        assert!(store.precision_changes(&touched, thresholds).is_empty(), "one disposition is not enough");
        store.record_feedback(&feedback("t1", None, Disposition::Irrelevant, TODAY));
        let dropped = store.precision_changes(&touched, thresholds);
        assert!(
            matches!(&dropped[..], [PrecisionChange::Dropped(r)] if r.precision == Some(0.0)),
            "{dropped:?}"
        );
        assert!(store.precision_changes(&touched, thresholds).is_empty(), "alerted once");
        assert_eq!(store.alerting(), 1);
        store.record_feedback(&feedback("t2", None, Disposition::Resolved, TODAY));
        store.record_feedback(&changed_mind("t1", None, Disposition::Resolved, TODAY, 1));
        let recovered = store.precision_changes(&touched, thresholds);
        assert!(matches!(&recovered[..], [PrecisionChange::Recovered(_)]), "{recovered:?}");
        // Dropped again, then quiet: a month later its feedback has left the window and
        // it recovers without a new disposition.
        store.record_feedback(&changed_mind("t1", None, Disposition::Irrelevant, TODAY, 2));
        store.record_feedback(&changed_mind("t2", None, Disposition::Irrelevant, TODAY, 2));
        assert!(matches!(&store.precision_changes(&touched, thresholds)[..], [PrecisionChange::Dropped(_)]));
        let later = Thresholds { config: &config, today: TODAY + 30 };
        let quiet = store.precision_changes(&BTreeSet::new(), later);
        assert!(matches!(&quiet[..], [PrecisionChange::Recovered(_)]), "{quiet:?}");
        assert_eq!(store.alerting(), 0);

        store.record_verdict(&verdict(None, &["r"], &[]), TODAY - 100);
        let on_that_day =
            |store: &Store| store.report(&Scope::All, &config, TODAY - 100, [], SortBy::Cost)[0].matches;
        assert_eq!(on_that_day(&store), 1);
        store.prune(TODAY, config.retention_days);
        assert_eq!(on_that_day(&store), 0, "a day past retention is gone");
        assert!(store.ticket("t0").is_some(), "this window's tickets stay");
    }

    /// A disposition may come before its ticket (they are on different topics), and
    /// may name the wrong client: the ticket, when it comes, says whose it is.
    #[test]
    fn dispositions_before_their_ticket_count_only_for_the_tickets_client() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.record_feedback(&feedback("t1", Some("acme"), Disposition::Resolved, TODAY - 1)),
            FeedbackOutcome::Waiting
        );
        assert_eq!(
            store.record_feedback(&feedback("t1", None, Disposition::Irrelevant, TODAY - 2)),
            FeedbackOutcome::Waiting
        );
        store.record_ticket(&ticket("t1", None, "r", "m1", "@a"), TODAY);
        let config = QualityConfig::default();
        let report = |store: &Store| store.report(&Scope::All, &config, TODAY, [], SortBy::Noise).remove(0);
        let counted = report(&store);
        assert_eq!(
            (counted.tickets, counted.feedback, counted.irrelevant),
            (1, 1, 1),
            "acme's is not counted"
        );
        store.record_feedback(&feedback("t1", None, Disposition::Resolved, TODAY));
        let counted = report(&store);
        assert_eq!(
            (counted.tickets, counted.feedback, counted.irrelevant),
            (1, 1, 0),
            "the later one counts"
        );
        assert!(store.ticket("t1").unwrap().pending.is_empty());
    }

    #[test]
    fn a_store_that_is_not_one_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Store::read(dir.path()), Err(QualityError::Missing { .. })));
        std::fs::write(dir.path().join(STORE_FILE), b"{oops").unwrap();
        let error = Store::open(dir.path()).unwrap_err().to_string();
        assert!(error.contains(STORE_FILE) && error.contains("not a rule-stats store"), "{error}");
    }
}
