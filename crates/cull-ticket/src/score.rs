//! The priority score: a sum of capped, explained contributions.
//!
//! Each signal a contact center ranks social work by becomes a [`Factor`] with the
//! measured value and the points it adds, so the score is never a black box: an agent
//! sees "crisis: lawsuit, +25" and a router can re-weigh. Every factor is capped by its
//! weight ([`Weights`]), so no single signal decides alone; the queue's channel weight
//! then scales the sum, so social work can be kept from starving calls and e-mail in a
//! universal queue.

use cull_model::{Factor, Priority};

use crate::config::Weights;

/// What is known about a mention and its ticket when it is scored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// The rule's priority.
    pub rule_priority: Priority,
    /// The VADER compound of the mention, −1 (negative) to 1.
    pub sentiment: Option<f64>,
    /// The author's follower count.
    pub followers: Option<u64>,
    /// The author, when on the VIP list.
    pub vip: Option<String>,
    /// The `escalate_on` clause the mention matched.
    pub crisis: Option<String>,
    /// Mentions that joined the ticket in the last hour, this one included.
    pub mentions_last_hour: u32,
    /// The incident whose spike the ticket is part of.
    pub spike: Option<String>,
    /// Minutes the mention was past its deadline when it arrived.
    pub late_minutes: Option<i64>,
    /// The queue's channel weight.
    pub channel_weight: f64,
}

/// A scored ticket: its factors, its score and its priority.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Every factor that added points (or took them, for a channel weight under 1).
    pub factors: Vec<Factor>,
    /// The sum of the factors, clamped to 0..100.
    pub score: u8,
    /// The rule's priority, raised to what the score reaches and one level more for a
    /// mention late on arrival; never lowered.
    pub priority: Priority,
    /// Minutes of head start in a universal queue.
    pub rank_offset_minutes: u32,
}

/// Scores `signals` with `weights`.
pub fn score(weights: &Weights, signals: &Signals) -> Scored {
    let mut factors = Vec::new();
    let mut add = |factor: &str, value: f64, points: f64, detail: Option<String>| {
        factors.push(Factor { factor: factor.to_string(), value, points: round(points), detail });
    };
    let priority_number = match signals.rule_priority {
        Priority::P1 => 1.0,
        Priority::P2 => 2.0,
        Priority::P3 => 3.0,
        Priority::P4 => 4.0,
    };
    add(
        "priority",
        priority_number,
        weights.priority.get(signals.rule_priority),
        Some(signals.rule_priority.as_str().to_string()),
    );
    if let Some(compound) = signals.sentiment.filter(|c| *c < 0.0) {
        add("sentiment", round(compound), weights.sentiment * compound.max(-1.0).abs(), None);
    }
    if let Some(followers) = signals.followers.filter(|f| *f > 0) {
        let full = (weights.reach_full_followers as f64).log10();
        let share = ((followers as f64 + 1.0).log10() / full).min(1.0);
        add("reach", followers as f64, weights.reach * share, None);
    }
    if let Some(author) = &signals.vip {
        add("vip", 1.0, weights.vip, Some(author.clone()));
    }
    if let Some(clause) = &signals.crisis {
        add("crisis", 1.0, weights.crisis, Some(clause.clone()));
    }
    if signals.mentions_last_hour > 1 {
        let extra = f64::from(signals.mentions_last_hour - 1);
        add(
            "velocity",
            f64::from(signals.mentions_last_hour),
            (extra * weights.velocity_per_mention).min(weights.velocity),
            None,
        );
    }
    if let Some(incident) = &signals.spike {
        add("spike", 1.0, weights.spike, Some(incident.clone()));
    }
    if let Some(minutes) = signals.late_minutes {
        add("late", minutes as f64, weights.late, None);
    }
    let sum: f64 = factors.iter().map(|f| f.points).sum();
    if (signals.channel_weight - 1.0).abs() > f64::EPSILON {
        let weighted = sum * signals.channel_weight;
        factors.push(Factor {
            factor: "channel_weight".to_string(),
            value: signals.channel_weight,
            points: round(weighted - sum),
            detail: None,
        });
    }
    let total: f64 = factors.iter().map(|f| f.points).sum();
    let score = total.clamp(0.0, 100.0).round() as u8;
    let reached = if total >= weights.p1_from {
        Priority::P1
    } else if total >= weights.p2_from {
        Priority::P2
    } else if total >= weights.p3_from {
        Priority::P3
    } else {
        Priority::P4
    };
    let mut priority = signals.rule_priority.min(reached);
    if signals.late_minutes.is_some() {
        priority = priority.raised();
    }
    let offset = (f64::from(score) * weights.rank_minutes_per_point).round();
    let rank_offset_minutes = (offset as u32).min(weights.max_rank_offset_minutes);
    Scored { factors, score, priority, rank_offset_minutes }
}

/// Rounds to two decimals, so the factors read as they add up.
fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(priority: Priority) -> Signals {
        Signals { rule_priority: priority, mentions_last_hour: 1, channel_weight: 1.0, ..Signals::default() }
    }

    fn points(scored: &Scored, factor: &str) -> Option<f64> {
        scored.factors.iter().find(|f| f.factor == factor).map(|f| f.points)
    }

    #[test]
    fn the_rules_priority_alone_gives_its_points_and_keeps_its_level() {
        let weights = Weights::default();
        let scored = score(&weights, &signals(Priority::P3));
        assert_eq!((scored.score, scored.priority, scored.factors.len()), (20, Priority::P3, 1));
        assert_eq!(scored.rank_offset_minutes, 20);
        assert_eq!(score(&weights, &signals(Priority::P1)).priority, Priority::P1, "never lowered");
    }

    #[test]
    fn negative_sentiment_raises_the_score_and_positive_does_not() {
        let weights = Weights::default();
        let negative = score(&weights, &Signals { sentiment: Some(-0.5), ..signals(Priority::P3) });
        assert_eq!(points(&negative, "sentiment"), Some(10.0));
        let positive = score(&weights, &Signals { sentiment: Some(0.9), ..signals(Priority::P3) });
        assert_eq!((points(&positive, "sentiment"), positive.score), (None, 20));
    }

    #[test]
    fn reach_is_log_scaled_and_capped() {
        let weights = Weights::default();
        let reach = |followers| {
            points(
                &score(&weights, &Signals { followers: Some(followers), ..signals(Priority::P3) }),
                "reach",
            )
        };
        let (small, mid, huge) = (reach(99).unwrap(), reach(9_999).unwrap(), reach(50_000_000).unwrap());
        assert!(small < mid && mid < huge, "{small} {mid} {huge}");
        assert_eq!(mid, 10.0, "10k followers are two thirds of the way to a million");
        assert_eq!(huge, 15.0);
    }

    #[test]
    fn crisis_words_velocity_vip_and_lateness_add_up_and_raise_the_priority() {
        let weights = Weights::default();
        let all = Signals {
            crisis: Some("lawsuit".into()),
            vip: Some("@ceo".into()),
            mentions_last_hour: 9,
            late_minutes: Some(30),
            ..signals(Priority::P3)
        };
        let scored = score(&weights, &all);
        assert_eq!(points(&scored, "velocity"), Some(15.0), "8 more mentions, capped at 15");
        assert_eq!(scored.score, 20 + 25 + 15 + 15 + 10);
        assert_eq!(scored.priority, Priority::P1, "85 reaches P1");
        let sum: f64 = scored.factors.iter().map(|f| f.points).sum();
        assert_eq!(sum, f64::from(scored.score), "the factors add up to the score");
        assert_eq!(scored.rank_offset_minutes, 60, "capped head start");
        let late_only = score(&weights, &Signals { late_minutes: Some(5), ..signals(Priority::P3) });
        assert_eq!(late_only.priority, Priority::P2, "late on arrival raises one level");
    }

    #[test]
    fn a_channel_weight_scales_the_sum_and_says_so() {
        let weights = Weights::default();
        let scored = score(&weights, &Signals { channel_weight: 0.5, ..signals(Priority::P1) });
        assert_eq!((scored.score, points(&scored, "channel_weight")), (25, Some(-25.0)));
        assert_eq!(scored.priority, Priority::P1, "the weight moves the score, not the rule's level");
        let boosted = score(&weights, &Signals { channel_weight: 3.0, ..signals(Priority::P1) });
        assert_eq!(boosted.score, 100, "clamped");
    }
}
