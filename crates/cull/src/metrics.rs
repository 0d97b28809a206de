//! The Prometheus series of a `cull run` process, served at `/metrics`.
//!
//! Names follow `cull_<stage>_<what>_<unit>[_total]` (DESIGN.md, Conventions). Every label
//! value comes from a bounded set (an enum here, or a name from the pipeline file or the
//! rule files: source, queue, topic, partition), never from a mention, so the number of
//! series does not grow with traffic. Stages update the series once per batch (through
//! [`BatchStats`]), not once per message, to keep atomics off the hot path.
//!
//! The registry is private to [`Metrics`] rather than prometheus' global default, so that
//! tests (and two pipelines in one process) do not share counters.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use cull_model::Priority;
use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Buckets of the batch latency histogram, in seconds: fine below the 250 ms p99 target
/// of DESIGN.md, coarse above it.
const DURATION_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Buckets of the batch size histogram, in mentions: powers of two up to well above the
/// default `matcher.batch_size` of 512.
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

/// The stage that rejected a record, as the dead letter's `stage` field names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// A source, while normalizing input into mentions.
    Ingest,
    /// The matcher.
    Match,
    /// The analyst indexer.
    Index,
}

impl Stage {
    const ALL: [Stage; 3] = [Stage::Ingest, Stage::Match, Stage::Index];

    fn label(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Match => "match",
            Stage::Index => "index",
        }
    }
}

pub use cull_bus::dead_letter::Reason as DeadLetterReason;

fn priority_label(priority: Priority) -> &'static str {
    match priority {
        Priority::P1 => "P1",
        Priority::P2 => "P2",
        Priority::P3 => "P3",
        Priority::P4 => "P4",
    }
}

/// The counts of one matcher batch, gathered while the batch is processed (plain integers,
/// no atomics) and added to the series at once by [`Metrics::record_batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchStats {
    outcomes: BTreeMap<Outcome, u64>,
    tickets: BTreeMap<(String, Priority), u64>,
    dead_letters: BTreeMap<DeadLetterReason, u64>,
    rules: BTreeMap<(String, &'static str), u64>,
}

impl BatchStats {
    /// Counts what one verdict says about each rule: matched, or culled (and why).
    pub fn verdict(&mut self, verdict: &cull_model::Verdict) {
        for matched in &verdict.matched {
            *self.rules.entry((matched.rule_id.clone(), "matched")).or_default() += 1;
        }
        for culled in &verdict.culled {
            *self.rules.entry((culled.rule_id.clone(), culled.reason.as_str())).or_default() += 1;
        }
    }

    /// Counts one mention that was matched, culled or unmatched.
    ///
    /// Dead letters are counted with [`BatchStats::dead_letter`] instead, which also
    /// records the reason.
    pub fn mention(&mut self, outcome: Outcome) {
        *self.outcomes.entry(outcome).or_default() += 1;
    }

    /// Counts one ticket emitted to `queue` with `priority`.
    pub fn ticket(&mut self, queue: &str, priority: Priority) {
        *self.tickets.entry((queue.to_string(), priority)).or_default() += 1;
    }

    /// Counts one record sent to the dead-letter topic for `reason`.
    pub fn dead_letter(&mut self, reason: DeadLetterReason) {
        *self.outcomes.entry(Outcome::DeadLetter).or_default() += 1;
        *self.dead_letters.entry(reason).or_default() += 1;
    }

    /// Returns the number of input records counted, the batch size.
    pub fn records(&self) -> u64 {
        self.outcomes.values().sum()
    }
}

/// The process' metrics: one registry and the handles of its series.
pub struct Metrics {
    registry: Registry,
    mentions: IntCounterVec,
    batch_duration: Histogram,
    batch_size: Histogram,
    tickets: IntCounterVec,
    rule_outcomes: IntCounterVec,
    dead_letters: IntCounterVec,
    consumer_lag: IntGaugeVec,
    rules_loaded: IntGauge,
    rules_last_reload_success: IntGauge,
    rules_reloads: IntCounter,
    rules_reload_errors: IntCounter,
    source_mentions: IntCounterVec,
    source_duplicates: IntCounterVec,
    feed_polls: IntCounterVec,
    webhook_requests: IntCounterVec,
    indexed: IntCounter,
    index_commit_duration: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Registers `collector` in `registry` and returns it, for one-expression construction.
fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> anyhow::Result<C> {
    registry.register(Box::new(collector.clone())).context("cannot register a metric")?;
    Ok(collector)
}

impl Metrics {
    /// Counts verdicts written to the analyst index.
    pub fn record_indexed(&self, count: u64) {
        self.indexed.inc_by(count);
    }

    /// Records one commit of the analyst index.
    pub fn record_index_commit(&self, duration: Duration) {
        self.index_commit_duration.observe(duration.as_secs_f64());
    }

    /// Makes the series of `source` exist at 0 from the first scrape.
    pub fn register_source(&self, source: &str) {
        self.source_mentions.with_label_values(&[source]);
        for kind in ["exact", "near"] {
            self.source_duplicates.with_label_values(&[source, kind]);
        }
    }

    /// Returns the metrics with every series registered; the bounded label sets
    /// (outcomes, stages × reasons) start at 0 so that rates work from the first scrape.
    pub fn new() -> anyhow::Result<Metrics> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels)?)
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            register(
                &registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?,
            )
        };
        let gauge = |name: &str, help: &str| register(&registry, IntGauge::new(name, help)?);
        let metrics = Metrics {
            mentions: counter(
                "cull_matcher_mentions_total",
                "Records the matcher consumed, by outcome.",
                &["outcome"],
            )?,
            batch_duration: histogram(
                "cull_matcher_batch_duration_seconds",
                "Time to match one batch and produce its verdicts and tickets.",
                &DURATION_BUCKETS,
            )?,
            batch_size: histogram("cull_matcher_batch_size", "Records per matcher batch.", &SIZE_BUCKETS)?,
            tickets: counter(
                "cull_tickets_emitted_total",
                "Tickets produced, by queue and priority.",
                &["queue", "priority"],
            )?,
            rule_outcomes: counter(
                "cull_rule_mentions_total",
                "Mentions each rule matched, or culled by exclude, mask, channel or lang (the per-rule noise).",
                &["rule", "outcome"],
            )?,
            dead_letters: counter(
                "cull_dead_letters_total",
                "Records sent to the dead-letter topic, by stage and reason.",
                &["stage", "reason"],
            )?,
            consumer_lag: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "cull_kafka_consumer_lag_messages",
                        "Messages between the committed offset and the end of each assigned partition.",
                    ),
                    &["topic", "partition"],
                )?,
            )?,
            rules_loaded: gauge("cull_rules_loaded", "Rules in the rule set in use.")?,
            rules_last_reload_success: gauge(
                "cull_rules_last_reload_success",
                "1 if the last rule (re)load succeeded, 0 if it failed and the previous set is still in use.",
            )?,
            rules_reloads: register(
                &registry,
                IntCounter::new("cull_rules_reloads_total", "Rule sets loaded and swapped in, the first included.")?,
            )?,
            rules_reload_errors: register(
                &registry,
                IntCounter::new(
                    "cull_rules_reload_errors_total",
                    "Reloads refused because the rule pack had errors (the previous set stayed in use).",
                )?,
            )?,
            source_mentions: counter(
                "cull_source_mentions_total",
                "Mentions produced to the mentions topic, by source.",
                &["source"],
            )?,
            source_duplicates: counter(
                "cull_source_duplicates_total",
                "Mentions a source saw twice: `exact` ones are dropped, `near` ones (syndicated copies) marked.",
                &["source", "kind"],
            )?,
            feed_polls: counter(
                "cull_feed_polls_total",
                "Feed polls, by feed and outcome (ok, not_modified, or the kind of failure).",
                &["feed", "outcome"],
            )?,
            webhook_requests: counter(
                "cull_webhook_requests_total",
                "Webhook requests answered, by source and HTTP status.",
                &["source", "status"],
            )?,
            indexed: register(
                &registry,
                IntCounter::new("cull_index_documents_total", "Verdicts written to the analyst index.")?,
            )?,
            index_commit_duration: histogram(
                "cull_index_commit_duration_seconds",
                "Time to commit the analyst index (documents and checkpoint) and the consumed offsets.",
                &DURATION_BUCKETS,
            )?,
            registry,
        };
        for outcome in Outcome::ALL {
            metrics.mentions.with_label_values(&[outcome.label()]);
        }
        for stage in Stage::ALL {
            for reason in DeadLetterReason::ALL {
                metrics.dead_letters.with_label_values(&[stage.label(), reason.label()]);
            }
        }
        Ok(metrics)
    }

    /// Adds one matcher batch that took `duration` from its first record to the
    /// acknowledgement of what it produced.
    pub fn record_batch(&self, batch: &BatchStats, duration: Duration) {
        for (outcome, &count) in &batch.outcomes {
            self.mentions.with_label_values(&[outcome.label()]).inc_by(count);
        }
        for ((queue, priority), &count) in &batch.tickets {
            self.tickets.with_label_values(&[queue.as_str(), priority_label(*priority)]).inc_by(count);
        }
        for (&reason, &count) in &batch.dead_letters {
            self.record_dead_letters(Stage::Match, reason, count);
        }
        for ((rule, outcome), &count) in &batch.rules {
            self.rule_outcomes.with_label_values(&[rule.as_str(), outcome]).inc_by(count);
        }
        self.batch_duration.observe(duration.as_secs_f64());
        // Sizes of a few thousand are exact in an f64.
        self.batch_size.observe(batch.records() as f64);
    }

    /// Adds `count` dead letters from `stage` (the matcher's come with [`Metrics::record_batch`]).
    pub fn record_dead_letters(&self, stage: Stage, reason: DeadLetterReason, count: u64) {
        self.dead_letters.with_label_values(&[stage.label(), reason.label()]).inc_by(count);
    }

    /// Sets the consumer lag of an assigned partition.
    pub fn set_consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag.with_label_values(&[topic, &partition.to_string()]).set(lag);
    }

    /// Drops the lag series of a partition this process no longer owns (after a rebalance),
    /// so that the new owner's value is not summed with a stale one.
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        // An error only means the series did not exist, which is the wanted state.
        let _ = self.consumer_lag.remove_label_values(&[topic, &partition.to_string()]);
    }

    /// Records a successful rule (re)load of `rules` rules.
    pub fn rules_reloaded(&self, rules: usize) {
        self.rules_loaded.set(i64::try_from(rules).unwrap_or(i64::MAX));
        self.rules_last_reload_success.set(1);
        self.rules_reloads.inc();
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

    fn dead_letters(&self, _source: &str, reason: DeadLetterReason, count: u64) {
        self.record_dead_letters(Stage::Ingest, reason, count);
    }

    fn feed_polled(&self, feed: &str, outcome: &'static str) {
        self.feed_polls.with_label_values(&[feed, outcome]).inc();
    }

    fn webhook_answered(&self, source: &str, status: u16) {
        self.webhook_requests.with_label_values(&[source, &status.to_string()]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the value of the sample line `series` (name and labels as rendered).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn bounded_series_exist_before_anything_happens() {
        let text = Metrics::new().unwrap().render();
        for outcome in ["matched", "culled", "unmatched", "dead_letter"] {
            let series = format!("cull_matcher_mentions_total{{outcome=\"{outcome}\"}}");
            assert_eq!(sample(&text, &series), Some(0.0), "{series} in\n{text}");
        }
        assert_eq!(sample(&text, r#"cull_dead_letters_total{reason="oversized",stage="index"}"#), Some(0.0));
        assert_eq!(sample(&text, "cull_rules_loaded"), Some(0.0));
        assert!(text.contains("# TYPE cull_matcher_batch_duration_seconds histogram"), "{text}");
    }

    #[test]
    fn a_batch_updates_every_matcher_series_at_once() {
        let metrics = Metrics::new().unwrap();
        let mut batch = BatchStats::default();
        batch.mention(Outcome::Matched);
        batch.mention(Outcome::Matched);
        batch.mention(Outcome::Culled);
        batch.mention(Outcome::Unmatched);
        batch.ticket("billing", Priority::P1);
        batch.ticket("billing", Priority::P1);
        batch.dead_letter(DeadLetterReason::InvalidUtf8);
        assert_eq!(batch.records(), 5);
        metrics.record_batch(&batch, Duration::from_millis(30));
        metrics.record_batch(&BatchStats::default(), Duration::from_millis(1));

        let text = metrics.render();
        assert_eq!(sample(&text, r#"cull_matcher_mentions_total{outcome="matched"}"#), Some(2.0));
        assert_eq!(sample(&text, r#"cull_matcher_mentions_total{outcome="dead_letter"}"#), Some(1.0));
        assert_eq!(sample(&text, r#"cull_tickets_emitted_total{priority="P1",queue="billing"}"#), Some(2.0));
        assert_eq!(
            sample(&text, r#"cull_dead_letters_total{reason="invalid_utf8",stage="match"}"#),
            Some(1.0)
        );
        assert_eq!(sample(&text, "cull_matcher_batch_size_count"), Some(2.0));
        assert_eq!(sample(&text, "cull_matcher_batch_size_sum"), Some(5.0));
        assert_eq!(sample(&text, r#"cull_matcher_batch_duration_seconds_bucket{le="0.05"}"#), Some(2.0));
        assert_eq!(sample(&text, r#"cull_matcher_batch_duration_seconds_bucket{le="0.025"}"#), Some(1.0));
    }

    #[test]
    fn sources_lag_and_rules_have_their_series() {
        let metrics = Metrics::new().unwrap();
        cull_ingest::Observer::delivered(&metrics, "demo", 12);
        metrics.record_dead_letters(Stage::Ingest, DeadLetterReason::MalformedJson, 3);
        metrics.set_consumer_lag("cull.mentions", 0, 42);
        metrics.set_consumer_lag("cull.mentions", 1, 7);
        metrics.forget_partition("cull.mentions", 1);
        metrics.forget_partition("cull.mentions", 9);
        metrics.rules_reloaded(25);

        let text = metrics.render();
        assert_eq!(sample(&text, r#"cull_source_mentions_total{source="demo"}"#), Some(12.0));
        assert_eq!(
            sample(&text, r#"cull_dead_letters_total{reason="malformed_json",stage="ingest"}"#),
            Some(3.0)
        );
        let lag = r#"cull_kafka_consumer_lag_messages{partition="0",topic="cull.mentions"}"#;
        assert_eq!(sample(&text, lag), Some(42.0));
        assert!(!text.contains(r#"partition="1""#), "{text}");
        assert_eq!(sample(&text, "cull_rules_loaded"), Some(25.0));
        assert_eq!(sample(&text, "cull_rules_last_reload_success"), Some(1.0));
    }
}
