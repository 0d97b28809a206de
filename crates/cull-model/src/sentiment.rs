//! Sentiment of a mention, by VADER: triage ranks a negative mention as more urgent,
//! and the analyst index labels every mention with it for the `sentiment` facet.
//!
//! It lives here, beside the [`crate::analyzer`], for the analyzer's reason: triage
//! (`cull-ticket`) and the index (`cull-index`) must say the same thing about the
//! same mention, so there is one scorer, and this crate is the one both depend on.
//!
//! The scores are VADER's (Hutto & Gilbert, ICWSM-14), computed by the
//! `vader-parity` crate, which reproduces Python `vaderSentiment` 3.3.2 over that
//! package's own lexicons; `tests/sentiment_parity.rs` holds it to the real Python
//! package on the 4 VADER ground-truth corpora. VADER is rule-based and English-only:
//! text in other languages scores mostly neutral, which triage reads as "no signal",
//! not as "calm", and which the index labels `neutral`; a word it shares with English
//! is read as the English one (German "war", was, is negative).

use std::borrow::Cow;
use std::sync::LazyLock;

use vader_parity::SentimentIntensityAnalyzer;

use crate::Mention;

/// Bytes of a text that are scored; the rest is ignored.
///
/// A mention can be a whole article, or a hostile megabyte, and triage scores every
/// ticket inline, so the cost per mention must not grow with the text. VADER costs
/// about 0.3 µs a byte of ordinary text and 0.7 µs a byte of emoji (each becomes its
/// description, several words), so 1 KiB bounds a mention under a millisecond where
/// a megabyte of emoji took over half a second. The bound costs little signal: it
/// holds a tweet, every text of VADER's ground-truth corpora (856 bytes at most) and
/// a headline with its lead, and VADER's compound, the summed valence squashed by
/// `x / sqrt(x² + 15)`, saturates within a few dozen sentiment words anyway.
pub const SCORED_BYTES: usize = 1024;

/// The lexicons, parsed once per process (about 11,000 lines) and shared by every
/// caller, so scoring a mention never rebuilds them.
static ANALYZER: LazyLock<SentimentIntensityAnalyzer> = LazyLock::new(SentimentIntensityAnalyzer::new);

/// The compound at or below which a text is [`Label::Negative`]: VADER's
/// conventional threshold (its README, "Scoring"), which its authors chose so that the
/// label agrees with most human raters.
pub const NEGATIVE_AT_MOST: f64 = -0.05;

/// The compound at or above which a text is [`Label::Positive`] (VADER's convention).
pub const POSITIVE_AT_LEAST: f64 = 0.05;

/// VADER's scores for one text, as Python `vaderSentiment` 3.3.2 rounds them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sentiment {
    /// The normalized sum of the valences, in [-1, 1], rounded to 4 decimals; see
    /// [`Label`] for what counts as negative and positive.
    pub compound: f64,
    /// The share of the text's sentiment mass that is negative, in [0, 1].
    pub negative: f64,
    /// The share of neutral tokens, in [0, 1].
    pub neutral: f64,
    /// The share of the text's sentiment mass that is positive, in [0, 1].
    pub positive: f64,
}

impl Sentiment {
    /// Returns the label of the compound.
    pub fn label(&self) -> Label {
        Label::of(self.compound)
    }
}

/// A sentiment in three words, by the compound and VADER's conventional thresholds,
/// for people who count and filter rather than rank: the analyst index's `sentiment`
/// facet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// The compound is at most [`NEGATIVE_AT_MOST`].
    Negative,
    /// Between the thresholds, including text with nothing to score and text VADER
    /// cannot read (other languages than English).
    Neutral,
    /// The compound is at least [`POSITIVE_AT_LEAST`].
    Positive,
}

impl Label {
    /// Returns the label of a compound score.
    pub fn of(compound: f64) -> Label {
        if compound <= NEGATIVE_AT_MOST {
            Label::Negative
        } else if compound >= POSITIVE_AT_LEAST {
            Label::Positive
        } else {
            Label::Neutral
        }
    }

    /// Returns the label as a word: `negative`, `neutral` or `positive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Negative => "negative",
            Label::Neutral => "neutral",
            Label::Positive => "positive",
        }
    }
}

/// Scores a mention: its title and text read as one passage, `"{title}. {text}"`, as
/// a reader meets them (a headline often carries the sentiment its lead does not).
/// Triage and the index both score a mention through this, so they agree on it.
pub fn analyze_mention(mention: &Mention) -> Sentiment {
    let passage = match &mention.title {
        Some(title) if !title.is_empty() => Cow::Owned(format!("{title}. {}", mention.text)),
        _ => Cow::Borrowed(mention.text.as_str()),
    };
    analyze(&passage)
}

/// Scores the first [`SCORED_BYTES`] of `text` (see [`scored_prefix`]). Total:
/// every `&str`, including the empty one, gets scores; text with nothing to score
/// is neutral (compound 0).
pub fn analyze(text: &str) -> Sentiment {
    let scores = ANALYZER.polarity_scores(scored_prefix(text));
    Sentiment { compound: scores.compound, negative: scores.neg, neutral: scores.neu, positive: scores.pos }
}

/// The part of `text` that [`analyze`] scores: all of it when it fits in
/// [`SCORED_BYTES`], else the longest prefix that fits and ends before a whitespace,
/// so the cut never leaves the stump of a word that scores differently ("goodness"
/// cut to "good" would turn neutral into positive). A prefix without whitespace (one
/// hostile giant token) is cut at the last character boundary that fits.
pub fn scored_prefix(text: &str) -> &str {
    if text.len() <= SCORED_BYTES {
        return text;
    }
    // A character is at most 4 bytes, so this steps back at most 3 times.
    let end = (0..=SCORED_BYTES).rev().find(|&end| text.is_char_boundary(end)).unwrap_or(0);
    let fitting = &text[..end];
    let next_is_space = text[fitting.len()..].chars().next().is_some_and(char::is_whitespace);
    if next_is_space {
        return fitting;
    }
    match fitting.rfind(char::is_whitespace) {
        Some(space) => &fitting[..space],
        None => fitting,
    }
}

#[cfg(test)]
mod tests {
    use super::{analyze, analyze_mention, scored_prefix, Label, SCORED_BYTES};
    use crate::Mention;
    use proptest::prelude::*;

    #[test]
    fn scores_match_the_reference_on_its_own_example() {
        // The example in vaderSentiment 3.3.2's README, as Python prints it.
        let scores = analyze("VADER is smart, handsome, and funny.");
        assert_eq!(
            scores,
            super::Sentiment { compound: 0.8316, negative: 0.0, neutral: 0.254, positive: 0.746 }
        );
        assert!(analyze("The support line is useless and rude.").compound < -0.05);
        assert_eq!(analyze("").compound, 0.0);
    }

    #[test]
    fn labels_follow_the_conventional_thresholds_inclusively() {
        let labels = [-1.0, -0.05, -0.0499, 0.0, 0.0499, 0.05, 1.0].map(|c| Label::of(c).as_str());
        assert_eq!(labels, ["negative", "negative", "neutral", "neutral", "neutral", "positive", "positive"]);
    }

    #[test]
    fn a_mention_is_scored_with_its_title() {
        let mut mention = Mention::new("m1", "The store opens at nine.");
        assert_eq!(analyze_mention(&mention).label(), Label::Neutral);
        mention.title = Some("Worst service ever".into());
        let with_title = analyze_mention(&mention);
        assert_eq!(with_title, analyze("Worst service ever. The store opens at nine."));
        assert_eq!(with_title.label(), Label::Negative);
        // German praise: VADER reads English words only, so it sees nothing in most of
        // it, and in "war" (was) the English word.
        assert_eq!(analyze("Der Kundendienst ist hervorragend und sehr freundlich.").label(), Label::Neutral);
        assert_eq!(
            analyze("Der Kundendienst war hervorragend und sehr freundlich.").label(),
            Label::Negative
        );
    }

    #[test]
    fn text_past_the_bound_is_not_scored() {
        // A long neutral text whose only sentiment comes after the bound.
        let neutral = "the meeting is at noon ".repeat(SCORED_BYTES / 10);
        let text = format!("{neutral} terrible awful horrible");
        assert!(analyze("terrible awful horrible").compound < -0.5);
        assert_eq!(analyze(&text).compound, 0.0);
        assert!(scored_prefix(&text).len() <= SCORED_BYTES);
    }

    #[test]
    fn the_cut_leaves_no_word_stump() {
        // "goodness" is neutral; its stump "good" is positive.
        let filler = "x ".repeat(SCORED_BYTES / 2 - 2);
        let text = format!("{filler}goodness and more");
        assert!(text.len() > SCORED_BYTES);
        assert!(filler.len() + "good".len() <= SCORED_BYTES);
        assert_eq!(scored_prefix(&text), filler.trim_end());
        assert_eq!(analyze(&text).compound, 0.0);
    }

    #[test]
    fn a_giant_token_is_cut_at_a_character_boundary() {
        // 3-byte characters: the bound (3 × 341 + 1) falls inside one, so the cut steps
        // back a byte.
        let text = "€".repeat(SCORED_BYTES);
        assert_eq!(scored_prefix(&text).len(), SCORED_BYTES - 1);
        // A text ending exactly at the bound before a space keeps all of it.
        let exact = format!("{} tail", "a".repeat(SCORED_BYTES));
        assert_eq!(scored_prefix(&exact).len(), SCORED_BYTES);
    }

    proptest! {
        #[test]
        fn every_text_scores_within_range(text in any::<String>(), repeat in 1usize..600) {
            let text = text.repeat(repeat);
            let scores = analyze(&text);
            prop_assert!((-1.0..=1.0).contains(&scores.compound));
            for share in [scores.negative, scores.neutral, scores.positive] {
                prop_assert!((0.0..=1.0).contains(&share));
            }
            let prefix = scored_prefix(&text);
            prop_assert!(prefix.len() <= SCORED_BYTES);
            prop_assert!(text.starts_with(prefix));
        }
    }
}
