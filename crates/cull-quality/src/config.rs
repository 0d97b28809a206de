//! The `[quality]` section of a pipeline file.

use std::path::PathBuf;

use cull_model::config::{is_label, Checks, Invalid};
use serde::{Deserialize, Serialize};

/// The quality stage: per-rule counts, costs and precision, and their alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    /// Whether this process runs the quality stage.
    pub enabled: bool,
    /// The directory of the store (`cull rules stats` and `suggest` read it).
    pub dir: PathBuf,
    /// The consumer group of the quality stage.
    pub group_id: String,
    /// A rule whose precision over the window falls under this alerts.
    pub min_precision: f64,
    /// Per-rule thresholds that replace `min_precision`, by rule id.
    pub rule_min_precision: std::collections::BTreeMap<String, f64>,
    /// Dispositions a rule needs in the window before its precision can alert: a
    /// rule with two tickets, one irrelevant, is not yet a bad rule.
    pub min_feedback: u64,
    /// Days a report and an alert look back over (the trend compares them with the
    /// days before).
    pub window_days: u32,
    /// Days counts and tickets are kept.
    pub retention_days: u32,
    /// One mention in this many is profiled: its candidate rules and each one's
    /// verification time are measured (0: none).
    pub profile_every: u32,
    /// Seconds between writes of the store while records flow.
    pub flush_secs: u64,
    /// The house queue a precision alert goes to as an incident ticket, for the alert
    /// sinks (`[[sink.alert]]` with `queues = [...]`) to deliver; none: the log line
    /// and the metrics only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_queue: Option<String>,
}

impl Default for QualityConfig {
    fn default() -> QualityConfig {
        QualityConfig {
            enabled: false,
            dir: PathBuf::from("data/quality"),
            group_id: "cull-quality".into(),
            min_precision: 0.8,
            rule_min_precision: std::collections::BTreeMap::new(),
            min_feedback: 10,
            window_days: 7,
            retention_days: 90,
            profile_every: 64,
            flush_secs: 10,
            alert_queue: None,
        }
    }
}

impl QualityConfig {
    /// Returns the threshold of `rule`.
    pub fn threshold(&self, rule: &str) -> f64 {
        self.rule_min_precision.get(rule).copied().unwrap_or(self.min_precision)
    }

    /// Returns every invalid setting, keys relative to `[quality]`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        checks.check(!self.dir.as_os_str().is_empty(), "dir", || "must name a directory".into());
        checks.check(is_label(&self.group_id), "group_id", || "use 1 to 64 of a-z A-Z 0-9 . _ -".into());
        let fraction = |value: f64| (0.0..=1.0).contains(&value);
        checks.check(fraction(self.min_precision), "min_precision", || {
            format!("{} is not a precision between 0 and 1", self.min_precision)
        });
        for (rule, value) in &self.rule_min_precision {
            checks.check(fraction(*value), &format!("rule_min_precision.{rule}"), || {
                format!("{value} is not a precision between 0 and 1")
            });
        }
        checks.positive("window_days", u64::from(self.window_days));
        checks.check(self.retention_days >= self.window_days.saturating_mul(2), "retention_days", || {
            format!(
                "must be at least twice window_days ({}), so that the trend has a window before it",
                self.window_days.saturating_mul(2)
            )
        });
        checks.positive("flush_secs", self.flush_secs);
        if let Some(queue) = &self.alert_queue {
            checks.check(is_label(queue), "alert_queue", || "use 1 to 64 of a-z A-Z 0-9 . _ -".into());
        }
        checks.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named_by_their_keys() {
        let config = QualityConfig {
            min_precision: 1.5,
            rule_min_precision: [("slack".to_string(), -0.1)].into(),
            window_days: 30,
            retention_days: 40,
            group_id: "a b".into(),
            ..QualityConfig::default()
        };
        let keys: Vec<String> = config.validate().into_iter().map(|invalid| invalid.key).collect();
        assert_eq!(keys, ["group_id", "min_precision", "rule_min_precision.slack", "retention_days"]);
        assert!(QualityConfig::default().validate().is_empty());
        assert_eq!(config.threshold("slack"), -0.1);
        assert_eq!(config.threshold("other"), 1.5);
    }
}
