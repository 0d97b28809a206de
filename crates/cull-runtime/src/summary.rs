//! What a run did, counted by its stages as they go and printed when it ends, with a
//! sample of the matcher's decisions and the reason for each.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use cull_model::{Mention, Verdict};

/// Matched words a decision quotes at most: enough to show why, short enough for a row.
const QUOTED_SPANS: usize = 3;

/// The counts of a run so far, shared by its stages.
#[derive(Debug, Default)]
pub struct Summary {
    decisions: Decisions,
    mentions_in: AtomicU64,
    matched: AtomicU64,
    culled: AtomicU64,
    unmatched: AtomicU64,
    tickets_out: AtomicU64,
    dead_letters: AtomicU64,
    indexed: AtomicU64,
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Mentions read by the matcher (valid or not).
    pub mentions_in: u64,
    /// Mentions with at least one matching rule.
    pub matched: u64,
    /// Mentions whose query matches were all culled.
    pub culled: u64,
    /// Mentions no rule matched.
    pub unmatched: u64,
    /// Tickets produced.
    pub tickets_out: u64,
    /// Records sent to the dead-letter topic, by any stage or source.
    pub dead_letters: u64,
    /// Verdicts written to the analyst index.
    pub indexed: u64,
}

impl Summary {
    /// Returns a summary that also keeps the first `per_outcome` matches and the first
    /// `per_outcome` culls of the run, for the decision table a `--once` run prints.
    pub fn keeping_decisions(per_outcome: usize) -> Summary {
        Summary { decisions: Decisions { per_outcome, ..Decisions::default() }, ..Summary::default() }
    }

    /// Whether the summary keeps decisions at all (so the matcher counts them).
    pub fn keeps_decisions(&self) -> bool {
        self.decisions.per_outcome > 0
    }

    /// Whether the summary still wants rows, so that the matcher copies the decided
    /// mentions of a batch only while they can be shown.
    pub fn wants_decision_rows(&self) -> bool {
        self.keeps_decisions() && {
            let kept = self.decisions.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let candidates = self.decisions.candidates();
            kept.matched.len() < candidates || kept.culled.len() < candidates
        }
    }

    /// Notes the matcher's decisions about one batch: `decided`, the mentions to take
    /// rows from (every rule that matched or was culled, with the words that matched
    /// or the clause that culled), and `totals`, the rules matched and culled over the
    /// whole batch. Costs nothing unless the summary keeps decisions.
    pub fn add_decisions<'a>(
        &self,
        decided: impl IntoIterator<Item = (&'a Mention, &'a Verdict)>,
        totals: (u64, u64),
    ) {
        if !self.keeps_decisions() {
            return;
        }
        let mut kept = self.decisions.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        kept.matched_total += totals.0;
        kept.culled_total += totals.1;
        for (mention, verdict) in decided {
            for matched in &verdict.matched {
                if kept.matched.len() < self.decisions.candidates() {
                    let mut words: Vec<&str> = Vec::new();
                    let quoted = matched
                        .spans
                        .iter()
                        .filter_map(|span| mention.field(&span.field)?.get(span.start..span.end));
                    for word in quoted {
                        if words.len() < QUOTED_SPANS
                            && !words.iter().any(|seen| seen.eq_ignore_ascii_case(word))
                        {
                            words.push(word);
                        }
                    }
                    let why = format!("query: {}", words.join(" + "));
                    kept.matched.push(Decision::new(mention, Decided::Matched, &matched.rule_id, why));
                }
            }
            for culled in &verdict.culled {
                if kept.culled.len() < self.decisions.candidates() {
                    let why = format!("{}: {}", culled.reason.as_str(), culled.clause);
                    kept.culled.push(Decision::new(mention, Decided::Culled, &culled.rule_id, why));
                }
            }
        }
    }

    /// Returns the decisions to show: the matches, then the culls, each taking one of
    /// each rule in turn.
    pub fn decisions(&self) -> DecisionSample {
        let kept = self.decisions.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let per_outcome = self.decisions.per_outcome;
        let mut rows = round_robin_by_rule(&kept.matched, per_outcome);
        rows.extend(round_robin_by_rule(&kept.culled, per_outcome));
        DecisionSample { rows, matched_total: kept.matched_total, culled_total: kept.culled_total }
    }

    /// Adds what the matcher did with a batch.
    pub fn add_matches(&self, records: u64, matched: u64, culled: u64, unmatched: u64) {
        self.mentions_in.fetch_add(records, Ordering::Relaxed);
        self.matched.fetch_add(matched, Ordering::Relaxed);
        self.culled.fetch_add(culled, Ordering::Relaxed);
        self.unmatched.fetch_add(unmatched, Ordering::Relaxed);
    }

    /// Adds tickets produced.
    pub fn add_tickets(&self, count: u64) {
        self.tickets_out.fetch_add(count, Ordering::Relaxed);
    }

    /// Adds dead letters sent.
    pub fn add_dead_letters(&self, count: u64) {
        self.dead_letters.fetch_add(count, Ordering::Relaxed);
    }

    /// Adds verdicts indexed.
    pub fn add_indexed(&self, count: u64) {
        self.indexed.fetch_add(count, Ordering::Relaxed);
    }

    /// Returns the counts now.
    pub fn counts(&self) -> Counts {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Counts {
            mentions_in: get(&self.mentions_in),
            matched: get(&self.matched),
            culled: get(&self.culled),
            unmatched: get(&self.unmatched),
            tickets_out: get(&self.tickets_out),
            dead_letters: get(&self.dead_letters),
            indexed: get(&self.indexed),
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} mention(s) in: {} matched, {} culled, {} unmatched; {} ticket(s) out; {} dead letter(s)",
            self.mentions_in, self.matched, self.culled, self.unmatched, self.tickets_out, self.dead_letters
        )?;
        if self.indexed > 0 {
            write!(f, "; {} indexed", self.indexed)?;
        }
        Ok(())
    }
}

/// Candidates kept per decision shown, so that the rows shown can take turns among the
/// rules rather than all be the first rule's.
const CANDIDATES_PER_ROW: usize = 8;

/// The decisions a summary keeps, when asked to.
#[derive(Debug, Default)]
struct Decisions {
    /// Matches and culls shown at most, each; 0 keeps none.
    per_outcome: usize,
    kept: Mutex<Kept>,
}

impl Decisions {
    /// Matches and culls kept at most, each.
    fn candidates(&self) -> usize {
        self.per_outcome.saturating_mul(CANDIDATES_PER_ROW)
    }
}

/// Returns up to `limit` of `decisions`, taking one of each rule and source in turn (in
/// the order they first decided), each one's in the order they were made.
fn round_robin_by_rule(decisions: &[Decision], limit: usize) -> Vec<Decision> {
    type Key<'a> = (&'a str, Option<&'a str>);
    let mut by_rule: Vec<(Key<'_>, std::collections::VecDeque<&Decision>)> = Vec::new();
    for decision in decisions {
        let key = (decision.rule_id.as_str(), decision.source.as_deref());
        match by_rule.iter_mut().find(|(seen, _)| *seen == key) {
            Some((_, queue)) => queue.push_back(decision),
            None => by_rule.push((key, [decision].into())),
        }
    }
    let mut rows = Vec::with_capacity(limit.min(decisions.len()));
    while rows.len() < limit && by_rule.iter().any(|(_, queue)| !queue.is_empty()) {
        for (_, queue) in &mut by_rule {
            if rows.len() < limit {
                rows.extend(queue.pop_front().cloned());
            }
        }
    }
    rows
}

#[derive(Debug, Default)]
struct Kept {
    matched: Vec<Decision>,
    culled: Vec<Decision>,
    matched_total: u64,
    culled_total: u64,
}

/// What the matcher decided about one rule and one mention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// The rule matched: the mention is a true match of it.
    Matched,
    /// The rule's query matched but a cull removed it.
    Culled,
}

impl Decided {
    /// Returns the word the verdict facet uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Decided::Matched => "matched",
            Decided::Culled => "culled",
        }
    }
}

/// One decision with its reason, a row of the decision table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The mention's id.
    pub mention_id: String,
    /// Matched or culled.
    pub outcome: Decided,
    /// The mention's source.
    pub source: Option<String>,
    /// The rule decided on.
    pub rule_id: String,
    /// Why: `query: ` and the words that matched, or the cull's reason and clause
    /// (`exclude: adjuster*`, `mask: "family connections magazine"`, `channel: forum`).
    pub why: String,
    /// The mention's title, else the start of its text.
    pub title: String,
}

impl Decision {
    fn new(mention: &Mention, outcome: Decided, rule_id: &str, why: String) -> Decision {
        let title =
            mention.title.as_deref().filter(|title| !title.trim().is_empty()).unwrap_or(&mention.text);
        Decision {
            mention_id: mention.id.clone(),
            source: mention.source.clone(),
            outcome,
            rule_id: rule_id.to_string(),
            why,
            title: title.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }
}

/// The decisions a summary kept, and how many there were in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionSample {
    /// The matches kept, then the culls kept.
    pub rows: Vec<Decision>,
    /// Rules matched over the whole run (a mention may match several).
    pub matched_total: u64,
    /// Rules culled over the whole run.
    pub culled_total: u64,
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use cull_model::{CullReason, Culled, MatchedRule, Span};

    use super::*;

    fn decided(id: &str, source: &str, matched: &[&str], culled: &[&str]) -> (Mention, Verdict) {
        let mut mention = Mention::new(id, "Slack shares rose; slack wax fell");
        mention.source = Some(source.to_string());
        let verdict = Verdict {
            schema: cull_model::VERDICT_SCHEMA.into(),
            mention_id: id.to_string(),
            client: None,
            ruleset_version: "v".into(),
            matched: matched
                .iter()
                .map(|rule| MatchedRule {
                    rule_id: (*rule).into(),
                    rule_version: "1".into(),
                    spans: [(0, 5), (6, 12), (19, 24)]
                        .map(|(start, end)| Span { field: Cow::Borrowed("text"), start, end })
                        .into_iter()
                        .collect(),
                })
                .collect(),
            culled: culled
                .iter()
                .map(|rule| Culled {
                    rule_id: (*rule).into(),
                    reason: CullReason::Exclude,
                    clause: "\"slack wax\"".to_string(),
                })
                .collect(),
            mention: None,
        };
        (mention, verdict)
    }

    /// Adds a batch's decisions as the matcher does: every mention's rows, and its totals.
    fn add(summary: &Summary, batch: &[(Mention, Verdict)]) {
        let totals = batch
            .iter()
            .fold((0, 0), |(m, c), (_, v)| (m + v.matched.len() as u64, c + v.culled.len() as u64));
        summary.add_decisions(batch.iter().map(|(mention, verdict)| (mention, verdict)), totals);
    }

    #[test]
    fn a_summary_keeps_no_decisions_unless_asked() {
        let summary = Summary::default();
        add(&summary, &[decided("m", "s", &["a"], &["b"])]);
        assert!(!summary.keeps_decisions());
        assert_eq!(summary.decisions(), DecisionSample::default());
    }

    #[test]
    fn decisions_quote_the_matched_words_once_and_the_culling_clause() {
        let summary = Summary::keeping_decisions(5);
        add(&summary, &[decided("m", "s", &["slack"], &["wax"])]);
        let sample = summary.decisions();
        let whys: Vec<(&str, Decided, &str)> =
            sample.rows.iter().map(|row| (row.rule_id.as_str(), row.outcome, row.why.as_str())).collect();
        // The third span ("slack" again, lower case) is the first word said twice.
        assert_eq!(
            whys,
            [
                ("slack", Decided::Matched, "query: Slack + shares"),
                ("wax", Decided::Culled, "exclude: \"slack wax\"")
            ]
        );
        assert_eq!((sample.matched_total, sample.culled_total), (1, 1));
    }

    #[test]
    fn the_rows_shown_take_turns_among_rules_and_sources_and_the_totals_count_all() {
        let summary = Summary::keeping_decisions(4);
        let mut batch = Vec::new();
        for i in 0..30 {
            batch.push(decided(&format!("a{i}"), "feed", &["busy"], &[]));
        }
        batch.push(decided("b", "feed", &["quiet"], &[]));
        batch.push(decided("c", "tweets", &["busy"], &["culling"]));
        add(&summary, &batch);
        let sample = summary.decisions();
        let shown: Vec<(&str, &str)> =
            sample.rows.iter().map(|row| (row.rule_id.as_str(), row.mention_id.as_str())).collect();
        assert_eq!(shown, [("busy", "a0"), ("quiet", "b"), ("busy", "c"), ("busy", "a1"), ("culling", "c")]);
        assert_eq!((sample.matched_total, sample.culled_total), (32, 1));
    }
}
