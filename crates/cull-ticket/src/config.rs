//! The `[tickets]` section of a pipeline file: how verdicts become tickets.
//!
//! Every option has a documented default in `pipelines/*.toml`; [`TicketConfig::validate`]
//! checks the values without I/O and names each bad one by its key.

use std::collections::BTreeMap;

use cull_model::config::{is_label, Checks, Invalid};
use cull_model::{client_name_problem, Priority};
use serde::{Deserialize, Serialize};

use crate::calendar::CalendarConfig;
use crate::spike::SpikeConfig;

/// The `[tickets]` section of a pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TicketConfig {
    /// Whether this process turns verdicts into tickets.
    pub enabled: bool,
    /// The consumer group of the ticketing stage on the verdicts topic.
    pub group_id: String,
    /// Mentions of one thread (a post and its copies, one URL, one author) on one rule
    /// join one ticket while they come within this many seconds of its last mention;
    /// 0 makes every mention its own ticket.
    pub dedupe_window_secs: u64,
    /// A ticket counts as open, for `max_open`, this long after it was opened, unless
    /// an agent's disposition (`cull.feedback/v1`) closed it earlier.
    pub open_window_secs: u64,
    /// First-response targets in minutes per priority, for queues that set none.
    pub sla_minutes: SlaMinutes,
    /// The points of each factor of the priority score.
    pub weights: Weights,
    /// Authors whose mentions get the `vip` points (case-insensitive; a leading `@`
    /// is optional).
    pub vip_authors: Vec<String>,
    /// The queue incident tickets (spikes) go to.
    pub escalation_queue: String,
    /// Per-queue settings, by queue name; a queue not listed has the defaults.
    pub queues: BTreeMap<String, QueueConfig>,
    /// Business-hours calendars, by name, for queues whose SLA counts only open hours.
    pub calendars: BTreeMap<String, CalendarConfig>,
    /// Spike detection per rule and per queue.
    pub spikes: SpikeConfig,
    /// Per-client settings, by client name: a client's own escalation queue, VIP
    /// authors, SLA targets and queues (with their calendars and capacity). A client
    /// without an entry has the settings above; every count (capacity, spikes) is
    /// kept per client either way.
    pub clients: BTreeMap<String, ClientConfig>,
}

/// The settings of one client's tickets: `[tickets.clients.<client>]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// The queue this client's incident tickets (spikes) go to; without one, the
    /// pipeline's `escalation_queue`.
    pub escalation_queue: Option<String>,
    /// Authors whose mentions get the `vip` points for this client, besides the
    /// pipeline's `vip_authors`.
    pub vip_authors: Vec<String>,
    /// First-response targets per priority for this client's queues that set none; a
    /// priority left out takes the pipeline's `[tickets.sla_minutes]`.
    pub sla_minutes: QueueSla,
    /// This client's queues, by name; a queue listed here replaces the pipeline's
    /// queue of the same name for this client (capacity is counted per client
    /// anyway).
    pub queues: BTreeMap<String, QueueConfig>,
}

impl Default for TicketConfig {
    fn default() -> TicketConfig {
        TicketConfig {
            enabled: true,
            group_id: "cull-tickets".to_string(),
            dedupe_window_secs: 3600,
            open_window_secs: 86_400,
            sla_minutes: SlaMinutes::default(),
            weights: Weights::default(),
            vip_authors: Vec::new(),
            escalation_queue: "escalations".to_string(),
            queues: BTreeMap::new(),
            calendars: BTreeMap::new(),
            spikes: SpikeConfig::default(),
            clients: BTreeMap::new(),
        }
    }
}

impl TicketConfig {
    /// Returns every invalid setting, keys relative to `[tickets]`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        let label = || "use 1 to 64 of a-z A-Z 0-9 . _ -".to_string();
        checks.check(is_label(&self.group_id), "group_id", label);
        checks.check(is_label(&self.escalation_queue), "escalation_queue", label);
        for (priority, minutes) in self.sla_minutes.all() {
            checks.positive(&format!("sla_minutes.{}", priority.as_str()), u64::from(minutes));
        }
        checks.nested("weights", self.weights.validate());
        self.check_queues(&mut checks, "queues", &self.queues);
        for (client, settings) in &self.clients {
            let key = format!("clients.{client}");
            if let Some(problem) = client_name_problem(client) {
                checks.check(false, &key, || problem);
            }
            if let Some(queue) = &settings.escalation_queue {
                checks.check(is_label(queue), &format!("{key}.escalation_queue"), label);
            }
            for priority in Priority::ALL {
                if let Some(minutes) = settings.sla_minutes.get(priority) {
                    checks.positive(&format!("{key}.sla_minutes.{}", priority.as_str()), u64::from(minutes));
                }
            }
            self.check_queues(&mut checks, &format!("{key}.queues"), &settings.queues);
        }
        for (name, calendar) in &self.calendars {
            checks.nested(&format!("calendars.{name}"), calendar.validate());
        }
        checks.nested("spikes", self.spikes.validate());
        checks.finish()
    }

    fn check_queues(&self, checks: &mut Checks, at: &str, queues: &BTreeMap<String, QueueConfig>) {
        let label = || "use 1 to 64 of a-z A-Z 0-9 . _ -".to_string();
        for (name, queue) in queues {
            checks.check(is_label(name), &format!("{at}.{name}"), label);
            checks.nested(&format!("{at}.{name}"), queue.validate(name));
            if let Some(calendar) = &queue.calendar {
                checks.check(self.calendars.contains_key(calendar), &format!("{at}.{name}.calendar"), || {
                    let known: Vec<&str> = self.calendars.keys().map(String::as_str).collect();
                    format!("no calendar `{calendar}` in [tickets.calendars] (it has: {})", known.join(", "))
                });
            }
        }
    }

    /// Returns the queues the tickets of mentions of `client` (`None`: the contact
    /// center's own) may go to besides the rules' own: the escalation queue, and every
    /// configured queue and overflow queue.
    pub fn queues(&self, client: Option<&str>) -> Vec<String> {
        let mut queues = vec![self.escalation_queue(client).to_string()];
        let own = client.and_then(|client| self.clients.get(client));
        for (name, queue) in self.queues.iter().chain(own.into_iter().flat_map(|c| &c.queues)) {
            queues.push(name.clone());
            queues.extend(queue.overflow_queue.clone());
        }
        queues.sort();
        queues.dedup();
        queues
    }

    /// Returns the queue incident tickets of `client`'s spikes go to.
    pub fn escalation_queue(&self, client: Option<&str>) -> &str {
        client
            .and_then(|client| self.clients.get(client)?.escalation_queue.as_deref())
            .unwrap_or(&self.escalation_queue)
    }

    /// Returns the settings of `client`'s `queue`: the client's own, else the
    /// pipeline's, else the defaults.
    pub fn queue(&self, client: Option<&str>, queue: &str) -> &QueueConfig {
        static DEFAULT: std::sync::OnceLock<QueueConfig> = std::sync::OnceLock::new();
        self.queue_owner(client, queue)
            .and_then(|owner| self.clients.get(owner)?.queues.get(queue))
            .or_else(|| self.queues.get(queue))
            .unwrap_or_else(|| DEFAULT.get_or_init(QueueConfig::default))
    }

    /// Returns the client whose own `[tickets.clients.<client>.queues.<queue>]`
    /// `client`'s `queue` takes, `None` when it takes the pipeline's settings.
    pub fn queue_owner<'c>(&self, client: Option<&'c str>, queue: &str) -> Option<&'c str> {
        client.filter(|client| self.clients.get(*client).is_some_and(|own| own.queues.contains_key(queue)))
    }

    /// Returns the first-response target of a ticket of `priority` in `client`'s
    /// `queue`: the queue's, else the client's, else the pipeline's.
    pub fn sla_target(&self, client: Option<&str>, queue: &str, priority: Priority) -> u32 {
        self.queue(client, queue)
            .sla_minutes
            .get(priority)
            .or_else(|| client.and_then(|client| self.clients.get(client)?.sla_minutes.get(priority)))
            .unwrap_or_else(|| self.sla_minutes.get(priority))
    }
}

/// Minutes to the SLA deadline per priority.
///
/// A struct rather than a map so that an unknown priority is an error; the lowercase
/// aliases let environment overrides (whose segments are lowercased) name the keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaMinutes {
    /// For P1 tickets.
    #[serde(rename = "P1", alias = "p1")]
    pub p1: u32,
    /// For P2 tickets.
    #[serde(rename = "P2", alias = "p2")]
    pub p2: u32,
    /// For P3 tickets.
    #[serde(rename = "P3", alias = "p3")]
    pub p3: u32,
    /// For P4 tickets.
    #[serde(rename = "P4", alias = "p4")]
    pub p4: u32,
}

impl Default for SlaMinutes {
    fn default() -> SlaMinutes {
        SlaMinutes { p1: 15, p2: 60, p3: 240, p4: 1440 }
    }
}

impl SlaMinutes {
    /// Returns the minutes to the deadline of a ticket of `priority`.
    pub fn get(&self, priority: Priority) -> u32 {
        match priority {
            Priority::P1 => self.p1,
            Priority::P2 => self.p2,
            Priority::P3 => self.p3,
            Priority::P4 => self.p4,
        }
    }

    fn all(&self) -> [(Priority, u32); 4] {
        Priority::ALL.map(|p| (p, self.get(p)))
    }
}

/// A queue's own first-response targets; a priority it leaves out takes the
/// pipeline's `[tickets.sla_minutes]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSla {
    /// For P1 tickets.
    #[serde(rename = "P1", alias = "p1", skip_serializing_if = "Option::is_none")]
    pub p1: Option<u32>,
    /// For P2 tickets.
    #[serde(rename = "P2", alias = "p2", skip_serializing_if = "Option::is_none")]
    pub p2: Option<u32>,
    /// For P3 tickets.
    #[serde(rename = "P3", alias = "p3", skip_serializing_if = "Option::is_none")]
    pub p3: Option<u32>,
    /// For P4 tickets.
    #[serde(rename = "P4", alias = "p4", skip_serializing_if = "Option::is_none")]
    pub p4: Option<u32>,
}

impl QueueSla {
    /// Returns the queue's target for `priority`, if it sets one.
    pub fn get(&self, priority: Priority) -> Option<u32> {
        match priority {
            Priority::P1 => self.p1,
            Priority::P2 => self.p2,
            Priority::P3 => self.p3,
            Priority::P4 => self.p4,
        }
    }
}

/// The settings of one queue: `[tickets.queues.<name>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Multiplies the queue's scores, so that a router merging social work with calls
    /// and e-mail can keep social from starving the other channels (under 1) or give
    /// it precedence (over 1).
    pub channel_weight: f64,
    /// Crisis words for every rule of the queue, in the rule language; a rule's own
    /// `escalate_on` is tried first.
    pub escalate_on: Option<String>,
    /// First-response targets of this queue.
    pub sla_minutes: QueueSla,
    /// The business-hours calendar (a name in `[tickets.calendars]`) that counts the
    /// targets; without one, every minute counts.
    pub calendar: Option<String>,
    /// At most this many new tickets per hour; the rest overflow.
    pub max_per_hour: Option<u32>,
    /// At most this many open tickets; the rest overflow.
    pub max_open: Option<u32>,
    /// Where overflow goes; without one, it is bundled into one digest ticket per hour
    /// on this queue. Overflow is never dropped.
    pub overflow_queue: Option<String>,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            channel_weight: 1.0,
            escalate_on: None,
            sla_minutes: QueueSla::default(),
            calendar: None,
            max_per_hour: None,
            max_open: None,
            overflow_queue: None,
        }
    }
}

impl QueueConfig {
    fn validate(&self, name: &str) -> Vec<Invalid> {
        let mut checks = Checks::default();
        checks.check(
            self.channel_weight.is_finite() && self.channel_weight > 0.0 && self.channel_weight <= 10.0,
            "channel_weight",
            || "must be above 0 and at most 10".to_string(),
        );
        if let Some(query) = &self.escalate_on {
            if let Err(errors) = cull_rules::compile_clauses(query) {
                let first = errors.first().map_or_else(String::new, |e| e.message.clone());
                checks.check(false, "escalate_on", || format!("not a valid query: {first}"));
            }
        }
        for priority in Priority::ALL {
            if let Some(minutes) = self.sla_minutes.get(priority) {
                checks.positive(&format!("sla_minutes.{}", priority.as_str()), u64::from(minutes));
            }
        }
        for (key, limit) in [("max_per_hour", self.max_per_hour), ("max_open", self.max_open)] {
            if let Some(limit) = limit {
                checks.positive(key, u64::from(limit));
            }
        }
        if let Some(overflow) = &self.overflow_queue {
            checks.check(is_label(overflow) && overflow != name, "overflow_queue", || {
                format!("name another queue (1 to 64 of a-z A-Z 0-9 . _ -), not `{name}` itself")
            });
        }
        checks.finish()
    }
}

/// The points each factor of the priority score can add, and how the score maps to
/// a priority and a head start: `[tickets.weights]`.
///
/// The score is the sum of the factors' points (the channel weight multiplies it),
/// clamped to 0..100. Every factor is capped by its weight, so no single signal
/// (a celebrity author, a burst of retweets) decides alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Points of the rule's priority.
    pub priority: PriorityPoints,
    /// Points of a fully negative mention (VADER compound −1); linear in negativity,
    /// nothing for neutral or positive.
    pub sentiment: f64,
    /// Points of an author with `reach_full_followers` followers or more
    /// (`meta.followers`), log-scaled below.
    pub reach: f64,
    /// The follower count that earns all the `reach` points.
    pub reach_full_followers: u64,
    /// Points of an author on `vip_authors`.
    pub vip: f64,
    /// Points of a mention that matches `escalate_on`.
    pub crisis: f64,
    /// Points per mention beyond the first that joined the ticket in the last hour.
    pub velocity_per_mention: f64,
    /// The most points velocity adds.
    pub velocity: f64,
    /// Points of a ticket in a spike of its rule or queue.
    pub spike: f64,
    /// Points of a mention that was already past its deadline on arrival.
    pub late: f64,
    /// Scores from which the priority is at least P1, P2, P3 (a score never lowers
    /// the rule's priority).
    pub p1_from: f64,
    /// See `p1_from`.
    pub p2_from: f64,
    /// See `p1_from`.
    pub p3_from: f64,
    /// Minutes of head start per point of score (`rank_offset_minutes`).
    pub rank_minutes_per_point: f64,
    /// The most minutes of head start.
    pub max_rank_offset_minutes: u32,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            priority: PriorityPoints::default(),
            sentiment: 20.0,
            reach: 15.0,
            reach_full_followers: 1_000_000,
            vip: 15.0,
            crisis: 25.0,
            velocity_per_mention: 3.0,
            velocity: 15.0,
            spike: 15.0,
            late: 10.0,
            p1_from: 80.0,
            p2_from: 60.0,
            p3_from: 40.0,
            rank_minutes_per_point: 1.0,
            max_rank_offset_minutes: 60,
        }
    }
}

impl Weights {
    fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        let points = [
            ("priority.P1", self.priority.p1),
            ("priority.P2", self.priority.p2),
            ("priority.P3", self.priority.p3),
            ("priority.P4", self.priority.p4),
            ("sentiment", self.sentiment),
            ("reach", self.reach),
            ("vip", self.vip),
            ("crisis", self.crisis),
            ("velocity_per_mention", self.velocity_per_mention),
            ("velocity", self.velocity),
            ("spike", self.spike),
            ("late", self.late),
            ("rank_minutes_per_point", self.rank_minutes_per_point),
        ];
        for (key, value) in points {
            checks.check(value.is_finite() && (0.0..=100.0).contains(&value), key, || {
                "must be between 0 and 100".to_string()
            });
        }
        checks.check(self.reach_full_followers >= 10, "reach_full_followers", || {
            "must be at least 10 (the reach points are log-scaled up to it)".to_string()
        });
        checks.check(
            self.p1_from >= self.p2_from && self.p2_from >= self.p3_from && self.p3_from >= 0.0,
            "p1_from",
            || "p1_from, p2_from and p3_from must not increase and not be negative".to_string(),
        );
        checks.finish()
    }
}

/// Points of the rule's priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorityPoints {
    /// For a P1 rule.
    #[serde(rename = "P1", alias = "p1")]
    pub p1: f64,
    /// For a P2 rule.
    #[serde(rename = "P2", alias = "p2")]
    pub p2: f64,
    /// For a P3 rule.
    #[serde(rename = "P3", alias = "p3")]
    pub p3: f64,
    /// For a P4 rule.
    #[serde(rename = "P4", alias = "p4")]
    pub p4: f64,
}

impl Default for PriorityPoints {
    fn default() -> PriorityPoints {
        PriorityPoints { p1: 50.0, p2: 35.0, p3: 20.0, p4: 10.0 }
    }
}

impl PriorityPoints {
    /// Returns the points of a rule of `priority`.
    pub fn get(&self, priority: Priority) -> f64 {
        match priority {
            Priority::P1 => self.p1,
            Priority::P2 => self.p2,
            Priority::P3 => self.p3,
            Priority::P4 => self.p4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named_by_their_key() {
        let mut config = TicketConfig::default();
        config.weights.sentiment = -1.0;
        config.weights.p3_from = 90.0;
        config.sla_minutes.p2 = 0;
        let queue = QueueConfig {
            channel_weight: 0.0,
            escalate_on: Some("lawsuit AND (".into()),
            max_open: Some(0),
            overflow_queue: Some("care".into()),
            ..QueueConfig::default()
        };
        config.queues.insert("care".into(), queue);
        let keys: Vec<String> = config.validate().into_iter().map(|i| i.key).collect();
        assert_eq!(
            keys,
            [
                "sla_minutes.P2",
                "weights.sentiment",
                "weights.p1_from",
                "queues.care.channel_weight",
                "queues.care.escalate_on",
                "queues.care.max_open",
                "queues.care.overflow_queue"
            ]
        );
        assert!(TicketConfig::default().validate().is_empty());
    }

    #[test]
    fn a_queue_target_falls_back_to_the_pipelines() {
        let mut config = TicketConfig::default();
        let sla_minutes = QueueSla { p1: Some(5), ..QueueSla::default() };
        config.queues.insert("care".into(), QueueConfig { sla_minutes, ..QueueConfig::default() });
        assert_eq!(config.sla_target(None, "care", Priority::P1), 5);
        assert_eq!(config.sla_target(None, "care", Priority::P2), 60);
        assert_eq!(config.sla_target(None, "other", Priority::P1), 15);
    }

    #[test]
    fn a_clients_queue_and_targets_come_before_the_pipelines() {
        let mut config = TicketConfig::default();
        config.queues.insert("care".into(), QueueConfig { max_per_hour: Some(9), ..QueueConfig::default() });
        let acme = ClientConfig {
            escalation_queue: Some("acme-crisis".into()),
            sla_minutes: QueueSla { p2: Some(30), ..QueueSla::default() },
            queues: BTreeMap::from([(
                "care".to_string(),
                QueueConfig {
                    max_per_hour: Some(2),
                    sla_minutes: QueueSla { p1: Some(5), ..QueueSla::default() },
                    overflow_queue: Some("care-late".into()),
                    ..QueueConfig::default()
                },
            )]),
            ..ClientConfig::default()
        };
        config.clients.insert("acme".into(), acme);
        assert_eq!(config.queue(Some("acme"), "care").max_per_hour, Some(2));
        assert_eq!(config.queue(Some("globex"), "care").max_per_hour, Some(9));
        assert_eq!(config.queue(None, "care").max_per_hour, Some(9));
        assert_eq!(config.sla_target(Some("acme"), "care", Priority::P1), 5);
        assert_eq!(config.sla_target(Some("acme"), "care", Priority::P2), 30, "the client's target");
        assert_eq!(config.sla_target(Some("acme"), "care", Priority::P3), 240, "the pipeline's target");
        assert_eq!(config.sla_target(Some("globex"), "care", Priority::P2), 60);
        assert_eq!(config.escalation_queue(Some("acme")), "acme-crisis");
        assert_eq!(config.escalation_queue(Some("globex")), "escalations");
        assert_eq!(config.queues(Some("acme")), ["acme-crisis", "care", "care-late"]);
        assert_eq!(config.queues(None), ["care", "escalations"]);
        config.clients.insert("Bad".into(), ClientConfig::default());
        config.clients.get_mut("acme").unwrap().queues.get_mut("care").unwrap().calendar = Some("x".into());
        let keys: Vec<String> = config.validate().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["clients.Bad", "clients.acme.queues.care.calendar"]);
    }
}
