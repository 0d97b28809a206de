//! The Prometheus series of a `cull run` process, served at `/metrics`.
//!
//! Names follow `cull_<stage>_<what>_<unit>[_total]` (DESIGN.md, Conventions). Every label
//! value comes from a bounded set (an enum here, a stage of the runtime, or a name from
//! the pipeline file or the rule files: source, queue, topic, group, partition), never
//! from a mention, so the number of series does not grow with traffic. Stages update
//! the series once per batch, not once per message, to keep atomics off the hot path.
//!
//! The runner records what every stage has in common (batch sizes and durations,
//! consumer lag, dead letters, panics, retried sends); a stage records only what is
//! its own (the matcher's outcomes, the tickets per queue, the documents indexed).
//!
//! The registry is private to [`Metrics`] rather than prometheus' global default, so that
//! tests (and two pipelines in one process) do not share counters.
//!
//! Beside cull's own series it holds the ones every Prometheus client exposes, so that
//! the usual dashboards and alerts work unchanged: `cull_build_info` (which version runs
//! where, during a rollout) and, on Linux, the process series (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_start_time_seconds`, …),
//! read from `/proc` at each scrape.

use std::collections::BTreeMap;
use std::time::Duration;

use cull_bus::dead_letter::Reason;
use cull_model::Priority;
use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Buckets of the batch latency histograms, in seconds: fine below the 250 ms p99
/// target of DESIGN.md, coarse above it.
const DURATION_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Buckets of the batch size histogram, in records: powers of two up to well above
/// the default `matcher.batch_size` of 512.
const SIZE_BUCKETS: [f64; 14] =
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0];

/// What the matcher did with one input record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// At least one rule matched: a ticket.
    Matched,
    /// A rule's query matched but a cull removed every match.
    Culled,
    /// No rule's query matched.
    Unmatched,
    /// The record was not a valid mention and went to the dead-letter topic.
    DeadLetter,
}

impl Outcome {
    /// Every outcome, so that each series exists (at 0) from the start.
    const ALL: [Outcome; 4] = [Outcome::Matched, Outcome::Culled, Outcome::Unmatched, Outcome::DeadLetter];

    fn label(self) -> &'static str {
        match self {
            Outcome::Matched => "matched",
            Outcome::Culled => "culled",
            Outcome::Unmatched => "unmatched",
            Outcome::DeadLetter => "dead_letter",
        }
    }
}

/// The commit the binary was built from, when the build said (`CULL_GIT_COMMIT=$(git
/// rev-parse HEAD) cargo build`; the Dockerfile's build argument of the same name): an
/// environment variable rather than a build script, which would need git and the
/// repository's `.git` wherever cull is built.
const GIT_COMMIT: Option<&str> = option_env!("CULL_GIT_COMMIT");

/// Returns the gauge `cull_build_info{version, commit}` = 1: the workspace's version and,
/// when known at build time, the commit (the label is absent otherwise).
fn build_info() -> IntGauge {
    let mut opts =
        Opts::new("cull_build_info", "The version (and commit, when known) of the running binary; always 1.")
            .const_label("version", env!("CARGO_PKG_VERSION"));
    if let Some(commit) = GIT_COMMIT.filter(|commit| !commit.is_empty()) {
        opts = opts.const_label("commit", commit);
    }
    let gauge = IntGauge::with_opts(opts).expect("a valid series");
    gauge.set(1);
    gauge
}

/// Why the sources dead-letter input: the `stage` label of their dead letters.
pub const INGEST: &str = "ingest";

fn priority_label(priority: Priority) -> &'static str {
    match priority {
        Priority::P1 => "P1",
        Priority::P2 => "P2",
        Priority::P3 => "P3",
        Priority::P4 => "P4",
    }
}

/// The counts of one matcher batch, gathered while the batch is processed (plain
/// integers, no atomics) and added to the series at once by [`Metrics::record_matches`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchStats {
    outcomes: BTreeMap<Outcome, u64>,
    rules: BTreeMap<(cull_model::CompactString, &'static str), u64>,
}

impl MatchStats {
    /// Counts what one verdict says about each rule that `measured` (the rules that
    /// opted in to a series of their own: label values stay a bounded set, and a
    /// million rules never make a million series): matched, or culled (and why).
    pub fn verdict(&mut self, verdict: &cull_model::Verdict, measured: impl Fn(&str) -> bool) {
        let matched = verdict.matched.iter().map(|matched| (&matched.rule_id, "matched"));
        let culled = verdict.culled.iter().map(|culled| (&culled.rule_id, culled.reason.as_str()));
        for (rule, outcome) in matched.chain(culled).filter(|(rule, _)| measured(rule)) {
            *self.rules.entry((rule.clone(), outcome)).or_default() += 1;
        }
    }

    /// Counts one record with `outcome`.
    pub fn record(&mut self, outcome: Outcome) {
        *self.outcomes.entry(outcome).or_default() += 1;
    }

    /// Returns the records counted with `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }
}

/// The process' metrics: one registry and the handles of its series.
pub struct Metrics {
    registry: Registry,
    mentions: IntCounterVec,
    tickets: IntCounterVec,
    ticket_overflows: IntCounterVec,
    tickets_late: IntCounterVec,
    spike_firings: IntCounterVec,
    feedback: IntCounterVec,
    quality_below_precision: IntGauge,
    quality_alerts: IntCounterVec,
    quality_profiled: IntCounter,
    quality_feedback: IntCounterVec,
    rule_outcomes: IntCounterVec,
    dead_letters: IntCounterVec,
    batch_duration: HistogramVec,
    batch_records: HistogramVec,
    panics: IntCounterVec,
    send_retries: IntCounterVec,
    changelog_restored: IntCounterVec,
    consumer_lag: IntGaugeVec,
    rules_loaded: IntGauge,
    rules_last_reload_success: IntGauge,
    rules_reloads: IntCounter,
    rules_reload_errors: IntCounter,
    rules_reload_warnings: IntGauge,
    source_mentions: IntCounterVec,
    source_duplicates: IntCounterVec,
    feed_polls: IntCounterVec,
    webhook_requests: IntCounterVec,
    indexed: IntCounter,
    index_expired: IntCounter,
    index_commit_duration: Histogram,
    alert_attempts: IntCounterVec,
    alert_delivered: IntCounterVec,
    alert_circuit_open: IntGaugeVec,
    alert_rolled_up: IntCounterVec,
    alert_pending: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Registers `collector` in `registry` and returns it, for one-expression construction.
fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry.register(Box::new(collector.clone())).expect("every series has its own name");
    collector
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Returns the metrics with every series registered; the bounded label sets
    /// (outcomes, ingest dead-letter reasons) start at 0 so that rates work from the
    /// first scrape. Stages register theirs with [`Metrics::register_stage`].
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels).expect("a valid series"))
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            register(
                &registry,
                HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
                    .expect("a valid series"),
            )
        };
        let gauge =
            |name: &str, help: &str| register(&registry, IntGauge::new(name, help).expect("a valid series"));
        let single = |name: &str, help: &str| {
            register(&registry, IntCounter::new(name, help).expect("a valid series"))
        };
        let metrics = Metrics {
            mentions: counter("cull_matcher_mentions_total", "Records the matcher consumed, by outcome.", &["outcome"]),
            tickets: counter("cull_tickets_emitted_total", "Tickets produced, by queue and priority.", &["queue", "priority"]),
            ticket_overflows: counter(
                "cull_tickets_overflow_total",
                "Mentions a full queue (max_per_hour, max_open) sent on, by queue and where to (a queue, or `digest`).",
                &["queue", "to"],
            ),
            tickets_late: counter(
                "cull_tickets_late_on_arrival_total",
                "Tickets whose first mention was already past its SLA deadline when cull saw it, by queue.",
                &["queue"],
            ),
            spike_firings: counter(
                "cull_spike_firings_total",
                "Spikes detected (each opens one incident ticket), by scope kind (rule, queue) and severity.",
                &["scope", "severity"],
            ),
            feedback: counter(
                "cull_tickets_feedback_total",
                "Agents' dispositions the ticketing stage read, by disposition and what they did (closed, reopened, recorded, superseded by a later one, unknown ticket).",
                &["disposition", "outcome"],
            ),
            quality_below_precision: gauge(
                "cull_quality_rules_below_precision",
                "Rules whose precision from agents' feedback is under their threshold (`cull rules stats --sort precision` lists them).",
            ),
            quality_alerts: counter(
                "cull_quality_precision_alerts_total",
                "Rules that fell under (`dropped`) or came back over (`recovered`) their precision threshold.",
                &["change"],
            ),
            quality_profiled: single(
                "cull_quality_profiled_mentions_total",
                "Mentions the quality stage matched again with a timed probe, for each rule's candidates and cost.",
            ),
            quality_feedback: counter(
                "cull_quality_feedback_total",
                "Agents' dispositions the quality stage read, by outcome (counted, waiting for its ticket, naming another client than the ticket's, superseded by a later one, invalid time).",
                &["outcome"],
            ),
            rule_outcomes: counter(
                "cull_rule_mentions_total",
                "Mentions each rule that opts in (metrics = true) matched, or culled by exclude, mask, channel or lang (the per-rule noise).",
                &["rule", "outcome"],
            ),
            dead_letters: counter(
                "cull_dead_letters_total",
                "Records sent to the dead-letter topic, by stage and reason.",
                &["stage", "reason"],
            ),
            batch_duration: histogram(
                "cull_stage_batch_duration_seconds",
                "Time from a batch's arrival at a stage to the acknowledgement of what it produced.",
                &["stage"],
                &DURATION_BUCKETS,
            ),
            batch_records: histogram("cull_stage_batch_records", "Records per batch, by stage.", &["stage"], &SIZE_BUCKETS),
            panics: counter(
                "cull_stage_panics_total",
                "Records a stage panicked on; each went to the dead-letter topic and the stage went on.",
                &["stage"],
            ),
            send_retries: counter(
                "cull_stage_send_retries_total",
                "Times a stage's results were not acknowledged by the bus and were sent again.",
                &["stage"],
            ),
            changelog_restored: counter(
                "cull_stage_changelog_restored_total",
                "State records a stage read back from its changelog topic: at start what earlier runs and replicas left, then what was written since.",
                &["stage"],
            ),
            consumer_lag: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "cull_consumer_lag_messages",
                        "Records of each partition a stage's consumer group has not read yet.",
                    ),
                    &["group", "topic", "partition"],
                )
                .expect("a valid series"),
            ),
            rules_loaded: gauge("cull_rules_loaded", "Rules in the rule set in use."),
            rules_last_reload_success: gauge(
                "cull_rules_last_reload_success",
                "1 if the last rule (re)load succeeded, 0 if it failed and the previous set is still in use.",
            ),
            rules_reloads: single("cull_rules_reloads_total", "Rule sets loaded and swapped in, the first included."),
            rules_reload_errors: single(
                "cull_rules_reload_errors_total",
                "Reloads refused because the rule pack had errors (the previous set stayed in use).",
            ),
            rules_reload_warnings: gauge(
                "cull_rules_last_reload_warnings",
                "Warnings of the pack the last successful reload swapped in (`cull rules check` lists them).",
            ),
            source_mentions: counter(
                "cull_source_mentions_total",
                "Mentions produced to the mentions topic, by source.",
                &["source"],
            ),
            source_duplicates: counter(
                "cull_source_duplicates_total",
                "Mentions a source saw twice: `exact` ones are dropped, `near` ones (syndicated copies) marked.",
                &["source", "kind"],
            ),
            feed_polls: counter(
                "cull_feed_polls_total",
                "Feed polls, by feed and outcome (ok, not_modified, or the kind of failure).",
                &["feed", "outcome"],
            ),
            webhook_requests: counter(
                "cull_webhook_requests_total",
                "Webhook requests answered, by source and HTTP status.",
                &["source", "status"],
            ),
            indexed: single("cull_index_documents_total", "Verdicts written to the analyst index."),
            index_expired: single(
                "cull_index_mentions_expired_total",
                "Mentions older than index.retention_days: deleted from the analyst index, or replayed and not indexed again.",
            ),
            index_commit_duration: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "cull_index_commit_duration_seconds",
                        "Time to commit the analyst index (documents and checkpoint).",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                )
                .expect("a valid series"),
            ),
            alert_attempts: counter(
                "cull_alert_attempts_total",
                "Tries to deliver to an alert sink's endpoint, by sink and outcome (ok, retry, failed).",
                &["sink", "outcome"],
            ),
            alert_delivered: counter(
                "cull_alert_delivered_total",
                "Messages an alert sink delivered, by sink and what (alert, digest, roll-up).",
                &["sink", "what"],
            ),
            alert_circuit_open: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new("cull_alert_circuit_open", "1 while an alert sink's circuit breaker holds its tries back."),
                    &["sink"],
                )
                .expect("a valid series"),
            ),
            alert_rolled_up: counter(
                "cull_alert_rolled_up_total",
                "Alerts over a chat sink's rate cap, delivered in a roll-up message instead.",
                &["sink"],
            ),
            alert_pending: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new("cull_alert_digest_pending", "Items an e-mail digest holds until it is sent."),
                    &["sink"],
                )
                .expect("a valid series"),
            ),
            registry,
        };
        register(&metrics.registry, build_info());
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("the process series have their own names");
        for outcome in Outcome::ALL {
            metrics.mentions.with_label_values(&[outcome.label()]);
        }
        for change in ["dropped", "recovered"] {
            metrics.quality_alerts.with_label_values(&[change]);
        }
        for outcome in cull_quality::FeedbackOutcome::LABELS {
            metrics.quality_feedback.with_label_values(&[outcome]);
        }
        metrics.register_stage(INGEST);
        metrics
    }

    /// Makes the series of `stage` exist at 0 from the first scrape.
    pub fn register_stage(&self, stage: &str) {
        for reason in Reason::ALL {
            self.dead_letters.with_label_values(&[stage, reason.label()]);
        }
        self.panics.with_label_values(&[stage]);
        self.send_retries.with_label_values(&[stage]);
    }

    /// Makes the changelog series of `stage`, which has one, exist at 0 from the first
    /// scrape.
    pub fn register_changelog(&self, stage: &str) {
        self.changelog_restored.with_label_values(&[stage]);
    }

    /// Counts `count` changelog records `stage` read back.
    pub fn record_restored(&self, stage: &str, count: u64) {
        self.changelog_restored.with_label_values(&[stage]).inc_by(count);
    }

    /// Makes the series of `source` exist at 0 from the first scrape.
    pub fn register_source(&self, source: &str) {
        self.source_mentions.with_label_values(&[source]);
        for kind in ["exact", "near"] {
            self.source_duplicates.with_label_values(&[source, kind]);
        }
    }

    /// Adds one batch of `stage`: `records` taken, `duration` from their arrival to the
    /// acknowledgement of what they produced.
    pub fn record_batch(&self, stage: &str, records: usize, duration: Duration) {
        self.batch_duration.with_label_values(&[stage]).observe(duration.as_secs_f64());
        // Sizes of a few thousand are exact in an f64.
        self.batch_records.with_label_values(&[stage]).observe(records as f64);
    }

    /// Adds what the matcher did with one batch.
    pub fn record_matches(&self, stats: &MatchStats) {
        for (outcome, &count) in &stats.outcomes {
            self.mentions.with_label_values(&[outcome.label()]).inc_by(count);
        }
        for ((rule, outcome), &count) in &stats.rules {
            self.rule_outcomes.with_label_values(&[rule.as_str(), outcome]).inc_by(count);
        }
    }

    /// Adds the tickets of one batch, by queue and priority.
    pub fn record_tickets(&self, tickets: &BTreeMap<(String, Priority), u64>) {
        for ((queue, priority), &count) in tickets {
            self.tickets.with_label_values(&[queue.as_str(), priority_label(*priority)]).inc_by(count);
        }
    }

    /// Counts a mention that a full `queue` sent on `to` another queue or a digest.
    pub fn record_overflow(&self, queue: &str, to: &str) {
        self.ticket_overflows.with_label_values(&[queue, to]).inc();
    }

    /// Counts a ticket of `queue` that was late on arrival.
    pub fn record_late(&self, queue: &str) {
        self.tickets_late.with_label_values(&[queue]).inc();
    }

    /// Counts a spike of `scope` kind (`rule`, `queue`) and `severity`.
    pub fn record_spike(&self, scope: &str, severity: &str) {
        self.spike_firings.with_label_values(&[scope, severity]).inc();
    }

    /// Counts an agent's `disposition` that had `outcome` on its ticket.
    pub fn record_feedback(&self, disposition: &str, outcome: &str) {
        self.feedback.with_label_values(&[disposition, outcome]).inc();
    }

    /// Sets how many rules are under their precision threshold.
    pub fn set_rules_below_precision(&self, rules: usize) {
        self.quality_below_precision.set(i64::try_from(rules).unwrap_or(i64::MAX));
    }

    /// Counts a rule that fell under (`dropped`) or came back over (`recovered`) its
    /// precision threshold.
    pub fn record_precision_alert(&self, change: &str) {
        self.quality_alerts.with_label_values(&[change]).inc();
    }

    /// Counts a disposition the quality stage read, by what became of it.
    pub fn record_quality_feedback(&self, outcome: &str) {
        self.quality_feedback.with_label_values(&[outcome]).inc();
    }

    /// Counts a mention profiled by the quality stage.
    pub fn record_profiled(&self) {
        self.quality_profiled.inc();
    }

    /// Adds `count` dead letters from `stage`.
    pub fn record_dead_letters(&self, stage: &str, reason: Reason, count: u64) {
        self.dead_letters.with_label_values(&[stage, reason.label()]).inc_by(count);
    }

    /// Counts a record `stage` panicked on.
    pub fn record_panic(&self, stage: &str) {
        self.panics.with_label_values(&[stage]).inc();
    }

    /// Counts a send of `stage`'s results that is retried.
    pub fn record_send_retry(&self, stage: &str) {
        self.send_retries.with_label_values(&[stage]).inc();
    }

    /// Sets the lag of `group` on a partition.
    pub fn set_consumer_lag(&self, group: &str, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag.with_label_values(&[group, topic, &partition.to_string()]).set(lag);
    }

    /// Drops the lag series of a partition this process no longer owns (after a rebalance),
    /// so that the new owner's value is not summed with a stale one.
    pub fn forget_partition(&self, group: &str, topic: &str, partition: i32) {
        // An error only means the series did not exist, which is the wanted state.
        let _ = self.consumer_lag.remove_label_values(&[group, topic, &partition.to_string()]);
    }

    /// Counts verdicts written to the analyst index.
    pub fn record_indexed(&self, count: u64) {
        self.indexed.inc_by(count);
    }

    /// Counts mentions that retention deleted from the analyst index or kept out of it.
    pub fn record_index_expired(&self, count: u64) {
        self.index_expired.inc_by(count);
    }

    /// Records one commit of the analyst index.
    pub fn record_index_commit(&self, duration: Duration) {
        self.index_commit_duration.observe(duration.as_secs_f64());
    }

    /// Records a successful rule (re)load of `rules` rules.
    pub fn rules_reloaded(&self, rules: usize) {
        self.rules_loaded.set(i64::try_from(rules).unwrap_or(i64::MAX));
        self.rules_last_reload_success.set(1);
        self.rules_reloads.inc();
    }

    /// Records the number of warnings of a pack a reload swapped in.
    pub fn rules_reload_warnings(&self, warnings: usize) {
        self.rules_reload_warnings.set(i64::try_from(warnings).unwrap_or(i64::MAX));
    }

    /// Records a reload refused for errors in the pack.
    pub fn rules_reload_failed(&self) {
        self.rules_last_reload_success.set(0);
        self.rules_reload_errors.inc();
    }

    /// Returns every series in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            // Encoding into a String fails only on invalid UTF-8, which the names above
            // cannot produce; a comment keeps the output a valid exposition all the same.
            .unwrap_or_else(|error| format!("# cull: cannot encode metrics: {error}\n"))
    }
}

/// The sources count through the ingest crate's observer, which keeps that crate free
/// of the metrics library.
impl Metrics {
    /// Makes the series of alert sink `sink` exist at 0 from the first scrape.
    pub fn register_alert_sink(&self, sink: &str) {
        for outcome in ["ok", "retry", "failed"] {
            self.alert_attempts.with_label_values(&[sink, outcome]);
        }
        self.alert_circuit_open.with_label_values(&[sink]).set(0);
        self.alert_rolled_up.with_label_values(&[sink]);
    }
}

impl cull_alert::Observer for Metrics {
    fn attempt(&self, sink: &str, outcome: &'static str) {
        self.alert_attempts.with_label_values(&[sink, outcome]).inc();
    }

    fn delivered(&self, sink: &str, what: &'static str) {
        self.alert_delivered.with_label_values(&[sink, what]).inc();
    }

    fn breaker(&self, sink: &str, open: bool) {
        self.alert_circuit_open.with_label_values(&[sink]).set(i64::from(open));
    }

    fn rolled_up(&self, sink: &str, alerts: u64) {
        self.alert_rolled_up.with_label_values(&[sink]).inc_by(alerts);
    }

    fn pending(&self, sink: &str, items: u64) {
        self.alert_pending.with_label_values(&[sink]).set(i64::try_from(items).unwrap_or(i64::MAX));
    }
}

impl cull_ingest::Observer for Metrics {
    fn delivered(&self, source: &str, count: u64) {
        self.source_mentions.with_label_values(&[source]).inc_by(count);
    }

    fn duplicates(&self, source: &str, count: u64) {
        self.source_duplicates.with_label_values(&[source, "exact"]).inc_by(count);
    }

    fn near_duplicates(&self, source: &str, count: u64) {
        self.source_duplicates.with_label_values(&[source, "near"]).inc_by(count);
    }

    fn dead_letters(&self, _source: &str, reason: Reason, count: u64) {
        self.record_dead_letters(INGEST, reason, count);
    }

    fn feed_polled(&self, feed: &str, outcome: &'static str) {
        self.feed_polls.with_label_values(&[feed, outcome]).inc();
    }

    fn webhook_answered(&self, source: &str, status: u16) {
        self.webhook_requests.with_label_values(&[source, &status.to_string()]).inc();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Returns the value of the sample line `series` (name and labels as rendered).
    pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn bounded_series_exist_before_anything_happens() {
        let metrics = Metrics::new();
        metrics.register_stage("index");
        let text = metrics.render();
        for outcome in ["matched", "culled", "unmatched", "dead_letter"] {
            let series = format!("cull_matcher_mentions_total{{outcome=\"{outcome}\"}}");
            assert_eq!(sample(&text, &series), Some(0.0), "{series} in\n{text}");
        }
        assert_eq!(sample(&text, r#"cull_dead_letters_total{reason="oversized",stage="index"}"#), Some(0.0));
        assert_eq!(sample(&text, r#"cull_dead_letters_total{reason="panic",stage="ingest"}"#), Some(0.0));
        assert_eq!(sample(&text, r#"cull_stage_panics_total{stage="index"}"#), Some(0.0));
        assert_eq!(sample(&text, "cull_rules_loaded"), Some(0.0));
    }

    #[test]
    fn build_info_and_the_process_series_are_exported() {
        let text = Metrics::new().render();
        let version = env!("CARGO_PKG_VERSION");
        let build = text.lines().find(|line| line.starts_with("cull_build_info{")).expect(&text);
        assert!(build.contains(&format!("version=\"{version}\"")) && build.ends_with("} 1"), "{build}");
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let value = sample(&text, name).unwrap_or_else(|| panic!("{name} missing from\n{text}"));
            assert!(value >= 0.0, "{name} {value}");
        }
        assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 0.0);
        assert!(sample(&text, "process_start_time_seconds").unwrap() > 1.7e9);
    }

    #[test]
    fn a_batch_updates_every_series_at_once() {
        let metrics = Metrics::new();
        let mut stats = MatchStats::default();
        stats.record(Outcome::Matched);
        stats.record(Outcome::Matched);
        stats.record(Outcome::Culled);
        stats.record(Outcome::DeadLetter);
        metrics.record_matches(&stats);
        metrics.record_tickets(&BTreeMap::from([(("billing".to_string(), Priority::P1), 2)]));
        metrics.record_batch("match", 4, Duration::from_millis(30));
        metrics.record_batch("match", 1, Duration::from_millis(1));
        metrics.record_dead_letters("match", Reason::InvalidUtf8, 1);

        let text = metrics.render();
        assert_eq!(sample(&text, r#"cull_matcher_mentions_total{outcome="matched"}"#), Some(2.0));
        assert_eq!(sample(&text, r#"cull_matcher_mentions_total{outcome="dead_letter"}"#), Some(1.0));
        assert_eq!(sample(&text, r#"cull_tickets_emitted_total{priority="P1",queue="billing"}"#), Some(2.0));
        assert_eq!(
            sample(&text, r#"cull_dead_letters_total{reason="invalid_utf8",stage="match"}"#),
            Some(1.0)
        );
        assert_eq!(sample(&text, r#"cull_stage_batch_records_count{stage="match"}"#), Some(2.0));
        assert_eq!(sample(&text, r#"cull_stage_batch_records_sum{stage="match"}"#), Some(5.0));
        assert_eq!(
            sample(&text, r#"cull_stage_batch_duration_seconds_bucket{stage="match",le="0.05"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, r#"cull_stage_batch_duration_seconds_bucket{stage="match",le="0.025"}"#),
            Some(1.0)
        );
    }

    #[test]
    fn sources_lag_and_rules_have_their_series() {
        let metrics = Metrics::new();
        cull_ingest::Observer::delivered(&metrics, "demo", 12);
        metrics.record_dead_letters(INGEST, Reason::MalformedJson, 3);
        metrics.set_consumer_lag("cull-matcher", "cull.mentions", 0, 42);
        metrics.set_consumer_lag("cull-matcher", "cull.mentions", 1, 7);
        metrics.forget_partition("cull-matcher", "cull.mentions", 1);
        metrics.forget_partition("cull-matcher", "cull.mentions", 9);
        metrics.rules_reloaded(25);
        metrics.rules_reload_warnings(2);

        let text = metrics.render();
        assert_eq!(sample(&text, r#"cull_source_mentions_total{source="demo"}"#), Some(12.0));
        assert_eq!(
            sample(&text, r#"cull_dead_letters_total{reason="malformed_json",stage="ingest"}"#),
            Some(3.0)
        );
        let lag = r#"cull_consumer_lag_messages{group="cull-matcher",partition="0",topic="cull.mentions"}"#;
        assert_eq!(sample(&text, lag), Some(42.0));
        assert!(!text.contains(r#"partition="1""#), "{text}");
        assert_eq!(sample(&text, "cull_rules_loaded"), Some(25.0));
        assert_eq!(sample(&text, "cull_rules_last_reload_success"), Some(1.0));
        assert_eq!(sample(&text, "cull_rules_last_reload_warnings"), Some(2.0));
    }
}
