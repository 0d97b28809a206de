//! Spike detection: when a rule's or a queue's volume, or its share of negative
//! mentions, jumps above its own baseline, the triage stage opens one incident.
//!
//! A contact center must answer before a post goes viral, so a spike fires on the
//! mention that crosses the threshold, not when its bucket closes. The detector is
//! pure: it does no I/O, reads no clock (every call passes the mention's time) and is
//! [`Serialize`] + [`Deserialize`], so the stage that runs it can persist it in its
//! changelog and a restarted stage continues exactly where it stopped.
//!
//! **The baseline** of a scope (`rule:<id>`, `queue:<name>`) is an exponentially
//! weighted moving average of its mentions per bucket and of their variance, with a
//! half-life of `half_life_buckets`. The variance is measured rather than assumed
//! (Poisson would take it equal to the mean) because mention streams are
//! overdispersed: syndication, retweets and crawlers deliver stories in clusters. A
//! measured variance learns how clustered a scope normally is; on every headline of
//! the UCI news sample (balanced, 5-minute buckets) it fires 14 times where a Poisson
//! baseline fires 25. There is no daily-cycle
//! correction: with the default hour-long half-life the baseline follows the day's
//! rise and fall closely enough that `min_ratio` and the floor absorb the rest.
//!
//! **The negative share** baseline is the ratio of the moving averages of negative
//! mentions and of all mentions per bucket; a bucket's share is tested against it
//! with the binomial standard deviation at the bucket's own count, `sqrt(p(1-p)/n)`.
//! A moving variance of per-bucket shares would be dominated by the noise of small
//! buckets (one mention, negative: a share of 100 %), the binomial one shrinks as a
//! bucket fills.
//!
//! **A bucket fires** on volume when its count is at least `min_count`, above
//! `mean + k·sd` and at least `min_ratio·mean`; on negative share when its negative
//! count is at least `min_count` and its share is above `p + k·sd` and at least
//! `min_ratio·p`. Volume is tested first. Nothing fires before the baseline has seen
//! `warmup_buckets` buckets, and after a firing the scope is quiet for
//! `cooldown_secs` (one incident per burst, however long it lasts). A closed bucket,
//! spike or not, joins the baseline, so a burst that becomes the new normal does not
//! fire again after the cool-down unless it grows further.
//!
//! **Severity** says how many mentions the bucket had beyond what the baseline
//! expects, in units of the floor `min_count` (the smallest incident worth a ticket):
//! under 2 floors [`Severity::Minor`], under 4 [`Severity::Major`], else
//! [`Severity::Critical`]. Because a firing happens on the crossing mention, this
//! measures the excess a crossing needs: small on a quiet scope, large on a busy one.
//!
//! **Gaps**: the buckets between two observations are empty buckets; a gap of `N`
//! applies them in closed form (`mean·rᴺ`, and the matching variance), so a gap of a
//! year, or from `i64::MIN` to `i64::MAX`, costs one call of `powf`.
//!
//! **Late mentions** (a time in a bucket older than the scope's current one) count
//! toward the current bucket. Published times of feed items arrive out of order by
//! minutes to hours (one poll returns an hour of posts), and what matters to a
//! contact center is mentions arriving together; ignoring them would undercount the
//! bursts that matter. A time far in the future, on the other hand, moves the scope's
//! bucket there, so the caller passes the mention's time clamped to its own clock.
//!
//! **Memory** is bounded by [`MAX_SCOPES`]: when a new scope would exceed it, the
//! scopes observed least recently (in event time) are forgotten, a tenth of the cap at
//! once so the cost is amortized. A forgotten scope starts a new baseline (and a new
//! warm-up) if it comes back.
//!
//! **A spike is active** from its firing until its cool-down ends ([`SpikeDetector::is_active`]):
//! the caller raises the scores of the tickets in it during that time.

use std::collections::HashMap;
use std::str::FromStr;

use cull_model::config::{Checks, Invalid};
use serde::{Deserialize, Serialize};

/// The most scopes a detector keeps state for.
pub const MAX_SCOPES: usize = 10_000;

/// The longest bucket accepted: a day, beyond which a "spike" is a trend.
const MAX_BUCKET_SECS: u64 = 86_400;

/// The `[tickets.spikes]` section of a pipeline file.
///
/// `k`, `min_count`, `min_ratio` and `cooldown_secs` are optional: unset, they come
/// from the preset (the section's, or the one a rule names); set, they override every
/// preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpikeConfig {
    /// Whether the triage stage detects spikes.
    pub enabled: bool,
    /// Counts are kept per bucket of this many seconds.
    pub bucket_secs: u64,
    /// The preset of every scope whose rule names none.
    pub preset: Preset,
    /// Standard deviations above the baseline a bucket must reach.
    pub k: Option<f64>,
    /// The floor: a bucket with fewer mentions (negative ones, for the share) never
    /// fires.
    pub min_count: Option<u32>,
    /// A bucket must also reach this many times the baseline.
    pub min_ratio: Option<f64>,
    /// The half-life of the baseline, in buckets.
    pub half_life_buckets: u32,
    /// After a firing, the same scope does not fire again for this long.
    pub cooldown_secs: Option<u64>,
    /// Nothing fires before the baseline has seen this many buckets.
    pub warmup_buckets: u32,
}

impl Default for SpikeConfig {
    fn default() -> SpikeConfig {
        SpikeConfig {
            enabled: true,
            bucket_secs: 300,
            preset: Preset::Balanced,
            k: None,
            min_count: None,
            min_ratio: None,
            half_life_buckets: 12,
            cooldown_secs: None,
            warmup_buckets: 6,
        }
    }
}

impl SpikeConfig {
    /// Returns every invalid setting, keys relative to `[tickets.spikes]`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        checks.check((1..=MAX_BUCKET_SECS).contains(&self.bucket_secs), "bucket_secs", || {
            format!("use 1 to {MAX_BUCKET_SECS} seconds")
        });
        if let Some(k) = self.k {
            checks.check(k.is_finite() && k > 0.0, "k", || {
                "use a number of standard deviations above 0".into()
            });
        }
        if let Some(min_count) = self.min_count {
            checks.positive("min_count", u64::from(min_count));
        }
        if let Some(ratio) = self.min_ratio {
            checks.check(ratio.is_finite() && ratio >= 1.0, "min_ratio", || {
                "use a ratio of at least 1.0 (below it, a bucket under its baseline could fire)".into()
            });
        }
        checks.positive("half_life_buckets", u64::from(self.half_life_buckets));
        checks.finish()
    }

    /// Returns the thresholds of a scope whose rule names `preset` (`None`: the
    /// section's preset); the section's explicit keys override either.
    ///
    /// The cool-down is at least one bucket, so a bucket fires at most once.
    pub fn thresholds(&self, preset: Option<Preset>) -> Thresholds {
        let base = preset.unwrap_or(self.preset).thresholds();
        Thresholds {
            k: self.k.unwrap_or(base.k),
            min_count: self.min_count.unwrap_or(base.min_count),
            min_ratio: self.min_ratio.unwrap_or(base.min_ratio),
            cooldown_secs: self.cooldown_secs.unwrap_or(base.cooldown_secs).max(self.bucket_secs),
            bucket_secs: self.bucket_secs,
            half_life_buckets: self.half_life_buckets,
            warmup_buckets: self.warmup_buckets,
        }
    }
}

/// How eagerly a scope fires: `fewer` false alarms, `balanced`, or `more` (earlier)
/// alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// k 4, floor 20, ratio 2, cool-down 2 h.
    Fewer,
    /// k 3, floor 10, ratio 1.5, cool-down 1 h.
    Balanced,
    /// k 2, floor 5, ratio 1.2, cool-down 30 min.
    More,
}

/// The thresholds of one preset, before the section's explicit keys.
struct PresetThresholds {
    k: f64,
    min_count: u32,
    min_ratio: f64,
    cooldown_secs: u64,
}

impl Preset {
    fn thresholds(self) -> PresetThresholds {
        match self {
            Preset::Fewer => PresetThresholds { k: 4.0, min_count: 20, min_ratio: 2.0, cooldown_secs: 7200 },
            Preset::Balanced => {
                PresetThresholds { k: 3.0, min_count: 10, min_ratio: 1.5, cooldown_secs: 3600 }
            }
            Preset::More => PresetThresholds { k: 2.0, min_count: 5, min_ratio: 1.2, cooldown_secs: 1800 },
        }
    }
}

/// A preset name that is none of `fewer`, `balanced`, `more`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown spike preset `{0}`: use fewer, balanced or more")]
pub struct UnknownPreset(pub String);

impl FromStr for Preset {
    type Err = UnknownPreset;

    /// Parses the preset a rule names (`spike = "fewer"`).
    fn from_str(name: &str) -> Result<Preset, UnknownPreset> {
        match name {
            "fewer" => Ok(Preset::Fewer),
            "balanced" => Ok(Preset::Balanced),
            "more" => Ok(Preset::More),
            _ => Err(UnknownPreset(name.to_string())),
        }
    }
}

/// The resolved settings of one scope ([`SpikeConfig::thresholds`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Standard deviations above the baseline.
    pub k: f64,
    /// The floor of a firing bucket's count.
    pub min_count: u32,
    /// The least multiple of the baseline a firing bucket reaches.
    pub min_ratio: f64,
    /// Seconds without a second firing of the scope.
    pub cooldown_secs: u64,
    /// Seconds per bucket.
    pub bucket_secs: u64,
    /// The half-life of the baseline, in buckets.
    pub half_life_buckets: u32,
    /// Buckets the baseline sees before anything fires.
    pub warmup_buckets: u32,
}

impl Thresholds {
    /// Seconds per bucket, at least 1 whatever the fields say.
    fn bucket_len(&self) -> i64 {
        i64::try_from(self.bucket_secs.max(1)).unwrap_or(i64::MAX)
    }

    fn cooldown(&self) -> i64 {
        i64::try_from(self.cooldown_secs).unwrap_or(i64::MAX)
    }

    /// The weight the baseline keeps per bucket: `0.5^(1/half_life)`.
    fn retained(&self) -> f64 {
        0.5f64.powf(1.0 / f64::from(self.half_life_buckets.max(1)))
    }
}

/// What jumped above its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpikeKind {
    /// The number of mentions.
    Volume,
    /// The share of negative mentions, at whatever volume.
    NegativeShare,
}

/// How far above the baseline a firing bucket is (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    /// Under two floors beyond the baseline.
    Minor,
    /// Under four floors beyond the baseline.
    Major,
    /// Four floors or more beyond the baseline.
    Critical,
}

impl Severity {
    /// Returns the severity's name, as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }
}

/// A spike: what the triage stage opens an incident ticket for, and counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// The scope, as the caller named it (`rule:<id>`, `queue:<name>`).
    pub scope: String,
    /// Volume or negative share.
    pub kind: SpikeKind,
    /// How far above the baseline.
    pub severity: Severity,
    /// The bucket's mentions (negative ones, for a negative-share firing) when it
    /// fired.
    pub count: u32,
    /// The mentions the baseline expected in the bucket (negative ones, at the
    /// bucket's volume, for a negative-share firing).
    pub baseline: f64,
    /// The count the bucket had to reach.
    pub threshold: f64,
    /// The start of the bucket that fired, in unix seconds.
    pub started_at: i64,
}

/// The state of one scope: a few numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ScopeState {
    /// The start of the current bucket, unix seconds.
    bucket_start: i64,
    /// Mentions in the current bucket.
    count: u32,
    /// Negative mentions in the current bucket.
    negatives: u32,
    /// The moving average of mentions per bucket.
    mean: f64,
    /// The moving variance of mentions per bucket.
    variance: f64,
    /// The moving average of negative mentions per bucket.
    negative_mean: f64,
    /// Closed buckets the baseline has seen (saturating).
    buckets_seen: u32,
    /// When the scope last fired.
    fired_at: Option<i64>,
}

impl ScopeState {
    fn new(bucket_start: i64) -> ScopeState {
        ScopeState {
            bucket_start,
            count: 0,
            negatives: 0,
            mean: 0.0,
            variance: 0.0,
            negative_mean: 0.0,
            buckets_seen: 0,
            fired_at: None,
        }
    }

    /// Closes the current bucket into the baseline, applies the empty buckets up to
    /// the one starting at `bucket_start`, and opens that one.
    fn advance(&mut self, bucket_start: i64, thresholds: &Thresholds) {
        let retained = thresholds.retained();
        let weight = 1.0 - retained;
        let count = f64::from(self.count);
        let diff = count - self.mean;
        self.mean += weight * diff;
        self.variance = retained * (self.variance + weight * diff * diff);
        self.negative_mean += weight * (f64::from(self.negatives) - self.negative_mean);
        let steps =
            (i128::from(bucket_start) - i128::from(self.bucket_start)) / i128::from(thresholds.bucket_len());
        let empty = steps - 1;
        if empty > 0 {
            // N empty buckets: mean·rᴺ, and (by induction on v' = r(v + (1-r)m²))
            // variance rᴺ(v + m²(1 - rᴺ)); the share's two averages shrink alike.
            let kept = retained.powf(empty as f64);
            self.variance = kept * (self.variance + self.mean * self.mean * (1.0 - kept));
            self.mean *= kept;
            self.negative_mean *= kept;
        }
        self.buckets_seen = self.buckets_seen.saturating_add(u32::try_from(steps).unwrap_or(u32::MAX));
        self.bucket_start = bucket_start;
        self.count = 0;
        self.negatives = 0;
    }

    /// Returns the spike the current bucket is, if it is one.
    fn spike(&self, scope: &str, thresholds: &Thresholds) -> Option<Firing> {
        if self.buckets_seen < thresholds.warmup_buckets {
            return None;
        }
        let floor = f64::from(thresholds.min_count);
        let firing = |kind, count: u32, baseline: f64, threshold: f64| {
            let excess = (f64::from(count) - baseline) / floor;
            let severity = if excess < 2.0 {
                Severity::Minor
            } else if excess < 4.0 {
                Severity::Major
            } else {
                Severity::Critical
            };
            Firing {
                scope: scope.to_string(),
                kind,
                severity,
                count,
                baseline,
                threshold,
                started_at: self.bucket_start,
            }
        };
        let count = f64::from(self.count);
        let sd = self.variance.max(0.0).sqrt();
        let above = self.mean + thresholds.k * sd;
        if self.count >= thresholds.min_count && count > above && count >= thresholds.min_ratio * self.mean {
            let threshold = floor.max(above).max(thresholds.min_ratio * self.mean);
            return Some(firing(SpikeKind::Volume, self.count, self.mean, threshold));
        }
        let share_baseline =
            if self.mean > 0.0 { (self.negative_mean / self.mean).clamp(0.0, 1.0) } else { 0.0 };
        let share = f64::from(self.negatives) / count;
        let share_sd = (share_baseline * (1.0 - share_baseline) / count).sqrt();
        let share_above = share_baseline + thresholds.k * share_sd;
        if self.negatives >= thresholds.min_count
            && share > share_above
            && share >= thresholds.min_ratio * share_baseline
        {
            let threshold = floor.max(share_above.max(thresholds.min_ratio * share_baseline) * count);
            return Some(firing(SpikeKind::NegativeShare, self.negatives, share_baseline * count, threshold));
        }
        None
    }
}

/// The baselines of every scope, and their cool-downs.
///
/// Persisted as it is (a scope is eight numbers); the workspace's `serde_json` has
/// `float_roundtrip`, so a detector restored from JSON is equal to the one saved, to
/// the last bit of its averages, and fires where the saved one would have.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpikeDetector {
    scopes: HashMap<String, ScopeState>,
}

impl SpikeDetector {
    /// Returns a detector that has seen nothing.
    pub fn new() -> SpikeDetector {
        SpikeDetector::default()
    }

    /// Counts a mention of `scope` at `at` (unix seconds of the mention's time,
    /// clamped by the caller to its clock), negative or not, and returns the spike it
    /// completes, if any: at most one per scope per cool-down.
    pub fn observe(
        &mut self,
        scope: &str,
        at: i64,
        negative: bool,
        thresholds: &Thresholds,
    ) -> Option<Firing> {
        let bucket_start = at.div_euclid(thresholds.bucket_len()).saturating_mul(thresholds.bucket_len());
        if !self.scopes.contains_key(scope) {
            self.make_room();
            self.scopes.insert(scope.to_string(), ScopeState::new(bucket_start));
        }
        let state = self.scopes.get_mut(scope)?;
        if bucket_start > state.bucket_start {
            state.advance(bucket_start, thresholds);
        }
        state.count = state.count.saturating_add(1);
        state.negatives = state.negatives.saturating_add(u32::from(negative));
        // A late mention (counted in the current bucket) is still within the cool-down
        // of a firing after its own time.
        let cooldown = thresholds.cooldown();
        if state.fired_at.is_some_and(|fired| at < fired.saturating_add(cooldown)) {
            return None;
        }
        let firing = state.spike(scope, thresholds)?;
        state.fired_at = Some(at.max(state.bucket_start));
        Some(firing)
    }

    /// Returns whether `scope` is in a spike at `at`: from its firing until its
    /// cool-down ends.
    pub fn is_active(&self, scope: &str, at: i64, thresholds: &Thresholds) -> bool {
        let cooldown = thresholds.cooldown();
        self.scopes
            .get(scope)
            .and_then(|state| state.fired_at)
            .is_some_and(|fired| fired <= at && at < fired.saturating_add(cooldown))
    }

    /// Returns how many scopes the detector keeps state for.
    pub fn scopes(&self) -> usize {
        self.scopes.len()
    }

    /// Forgets the scopes observed least recently when one more would exceed
    /// [`MAX_SCOPES`]: enough to get a tenth of the cap below it (ties broken by name,
    /// so a restored detector forgets the same ones).
    fn make_room(&mut self) {
        if self.scopes.len() < MAX_SCOPES {
            return;
        }
        let mut by_age: Vec<(i64, &String)> =
            self.scopes.iter().map(|(scope, state)| (state.bucket_start, scope)).collect();
        by_age.sort_unstable();
        let forget = self.scopes.len() + 1 - MAX_SCOPES + MAX_SCOPES / 10;
        let forgotten: Vec<String> =
            by_age.into_iter().take(forget).map(|(_, scope)| scope.clone()).collect();
        for scope in forgotten {
            self.scopes.remove(&scope);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUCKET: i64 = 300;

    fn balanced() -> Thresholds {
        SpikeConfig::default().thresholds(None)
    }

    /// Feeds `buckets` buckets from `first`, each with `per_bucket` mentions of which
    /// the first `negatives` are negative, and returns what fired.
    fn feed(
        detector: &mut SpikeDetector,
        first: i64,
        buckets: i64,
        per_bucket: u32,
        negatives: u32,
        thresholds: &Thresholds,
    ) -> Vec<Firing> {
        let mut fired = Vec::new();
        for bucket in first..first + buckets {
            for i in 0..per_bucket {
                let at = bucket * BUCKET + i64::from(i);
                fired.extend(detector.observe("rule:r", at, i < negatives, thresholds));
            }
        }
        fired
    }

    #[test]
    fn presets_resolve_per_scope_and_explicit_keys_override_them() {
        let config: SpikeConfig = toml::from_str("preset = 'more'\nk = 3\nbucket_secs = 60").unwrap();
        let section = config.thresholds(None);
        assert_eq!((section.k, section.min_count, section.min_ratio), (3.0, 5, 1.2));
        let rule: Preset = "fewer".parse().unwrap();
        let fewer = config.thresholds(Some(rule));
        assert_eq!((fewer.k, fewer.min_count, fewer.min_ratio, fewer.cooldown_secs), (3.0, 20, 2.0, 7200));
        assert_eq!(
            "loud".parse::<Preset>().unwrap_err().to_string(),
            "unknown spike preset `loud`: use fewer, balanced or more"
        );
        let unknown = toml::from_str::<SpikeConfig>("treshold = 3").unwrap_err().to_string();
        assert!(unknown.contains("unknown field `treshold`"), "{unknown}");
        let long_buckets = SpikeConfig { bucket_secs: 7200, ..SpikeConfig::default() };
        assert_eq!(long_buckets.thresholds(Some(Preset::More)).cooldown_secs, 7200, "at least a bucket");
    }

    #[test]
    fn invalid_settings_are_named_by_their_key() {
        let config = SpikeConfig {
            bucket_secs: 0,
            k: Some(f64::NAN),
            min_count: Some(0),
            min_ratio: Some(0.5),
            half_life_buckets: 0,
            ..SpikeConfig::default()
        };
        let keys: Vec<String> = config.validate().into_iter().map(|invalid| invalid.key).collect();
        assert_eq!(keys, ["bucket_secs", "k", "min_count", "min_ratio", "half_life_buckets"]);
        assert!(SpikeConfig::default().validate().is_empty());
    }

    #[test]
    fn a_burst_of_negatives_at_normal_volume_fires_on_negative_share() {
        let thresholds = balanced();
        let mut detector = SpikeDetector::new();
        assert!(feed(&mut detector, 0, 40, 20, 2, &thresholds).is_empty(), "10 % negative is normal");
        let fired = feed(&mut detector, 40, 1, 20, 14, &thresholds);
        assert_eq!(fired.len(), 1, "{fired:?}");
        let firing = &fired[0];
        assert_eq!(
            (firing.kind, firing.count, firing.started_at),
            (SpikeKind::NegativeShare, 10, 40 * BUCKET)
        );
        assert!((firing.baseline - 1.0).abs() < 0.01, "10 % of the 10 mentions so far: {firing:?}");
        assert_eq!(firing.severity, Severity::Minor);
    }

    #[test]
    fn severity_grows_with_the_excess_a_crossing_needs() {
        let thresholds = balanced();
        let mut quiet = SpikeDetector::new();
        feed(&mut quiet, 0, 20, 1, 0, &thresholds);
        let mut busy = SpikeDetector::new();
        let steady: Vec<Firing> =
            (0..20).flat_map(|b| feed(&mut busy, b, 1, 100 + (b % 3) as u32 * 10, 0, &thresholds)).collect();
        assert!(steady.is_empty());
        let quiet_firing = feed(&mut quiet, 20, 1, 40, 0, &thresholds).remove(0);
        let busy_firing = feed(&mut busy, 20, 1, 400, 0, &thresholds).remove(0);
        assert_eq!((quiet_firing.count, quiet_firing.severity), (10, Severity::Minor));
        assert_eq!(busy_firing.severity, Severity::Critical, "{busy_firing:?}");
    }

    #[test]
    fn empty_buckets_in_closed_form_equal_empty_buckets_one_by_one() {
        let thresholds = balanced();
        let mut state = ScopeState::new(0);
        state.count = 40;
        state.negatives = 4;
        let mut one_by_one = state.clone();
        state.advance(51 * BUCKET, &thresholds);
        for bucket in 1..=51 {
            one_by_one.advance(bucket * BUCKET, &thresholds);
        }
        assert_eq!((state.buckets_seen, one_by_one.buckets_seen), (51, 51));
        for (closed, iterated) in [
            (state.mean, one_by_one.mean),
            (state.variance, one_by_one.variance),
            (state.negative_mean, one_by_one.negative_mean),
        ] {
            assert!((closed - iterated).abs() < 1e-9 * iterated.max(1.0), "{closed} vs {iterated}");
        }
    }

    /// Applying empty buckets one by one, a gap from `i64::MIN` to `i64::MAX` would be
    /// 6·10¹⁶ of them: this test would not finish.
    #[test]
    fn a_gap_of_a_year_or_of_all_time_costs_one_step() {
        let thresholds = balanced();
        let mut detector = SpikeDetector::new();
        feed(&mut detector, 0, 50, 20, 0, &thresholds);
        let year = 365 * 86_400 / BUCKET;
        let fired = feed(&mut detector, 50 + year, 1, 10, 0, &thresholds);
        assert_eq!(fired.len(), 1, "a year of silence decays a baseline of 20 to nothing");
        assert!(fired[0].baseline < 1e-6, "{:?}", fired[0]);
        let mut extremes = SpikeDetector::new();
        for at in [i64::MIN, i64::MIN + 1, 0, i64::MAX, i64::MIN, i64::MAX] {
            extremes.observe("rule:r", at, true, &thresholds);
        }
        assert_eq!(extremes.scopes[&"rule:r".to_string()].count, 3, "the late ones count in the last bucket");
    }

    #[test]
    fn late_mentions_count_now_and_do_not_fire_twice() {
        let thresholds = balanced();
        let mut detector = SpikeDetector::new();
        feed(&mut detector, 0, 20, 2, 0, &thresholds);
        let fired = feed(&mut detector, 20, 1, 12, 0, &thresholds);
        assert_eq!(fired.len(), 1);
        let late: Vec<Firing> =
            (0..30).filter_map(|i| detector.observe("rule:r", 3 * BUCKET + i, false, &thresholds)).collect();
        assert!(late.is_empty(), "{late:?}");
        assert_eq!(detector.scopes[&"rule:r".to_string()].count, 42);
    }

    #[test]
    fn a_spike_is_active_from_its_firing_to_the_end_of_its_cool_down() {
        let thresholds = balanced();
        let mut detector = SpikeDetector::new();
        feed(&mut detector, 0, 20, 1, 0, &thresholds);
        let fired_at = 20 * BUCKET + 9;
        assert!(!detector.is_active("rule:r", fired_at, &thresholds));
        assert_eq!(feed(&mut detector, 20, 1, 10, 0, &thresholds).len(), 1);
        assert!(!detector.is_active("rule:r", fired_at - 1, &thresholds));
        assert!(detector.is_active("rule:r", fired_at, &thresholds));
        assert!(detector.is_active("rule:r", fired_at + 3599, &thresholds));
        assert!(!detector.is_active("rule:r", fired_at + 3600, &thresholds));
        assert!(!detector.is_active("queue:other", fired_at, &thresholds));
    }

    #[test]
    fn scopes_beyond_the_cap_forget_the_least_recent() {
        let thresholds = balanced();
        let mut detector = SpikeDetector::new();
        let total = MAX_SCOPES as i64 + 5;
        for i in 0..total {
            detector.observe(&format!("rule:{i}"), i * BUCKET, false, &thresholds);
        }
        assert_eq!(
            detector.scopes(),
            MAX_SCOPES - MAX_SCOPES / 10 + 4,
            "a tenth forgotten at the first one over"
        );
        assert!(detector.scopes.contains_key(&format!("rule:{}", total - 1)));
        assert!(!detector.scopes.contains_key("rule:0"));
    }
}
