//! "Why did (or didn't) this rule match this text?", for operators writing rules.

use std::fmt;

use cull_model::Mention;
use cull_rules::query::{self, NodeKind};
use cull_rules::CompiledRule;

use crate::prefilter::Scratch;
use crate::verify::{matches, Document, Hidden};
use crate::{evaluate, Outcome, RuleSet};

/// Whether one top-level clause of a query holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClauseReport {
    /// The clause as written.
    pub source: String,
    /// Written with `NOT` / `-`: the clause must not hold.
    pub negated: bool,
    /// Whether the clause itself matches (after masks).
    pub matched: bool,
}

/// The account of one rule against one mention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The rule id.
    pub rule_id: String,
    /// The rule's anchor groups, each written as `a | b` (`None`: checked against
    /// every mention).
    pub anchors: Option<Vec<String>>,
    /// Whether the prefilter selected the rule for this mention.
    pub candidate: bool,
    /// Top-level clauses of the query (the operands of its outermost AND or OR).
    pub clauses: Vec<ClauseReport>,
    /// Each mask with whether it occurs in the mention.
    pub masks: Vec<(String, bool)>,
    /// Each exclude branch with whether it matches.
    pub excludes: Vec<(String, bool)>,
    /// What the rule does with the mention.
    pub outcome: Outcome,
}

/// Returns the explanation for rule `rule_id` of `set` against `mention`, or `None`
/// when the mention cannot meet such a rule (the set has none, or only another
/// client's).
pub fn explain(set: &RuleSet, rule_id: &str, mention: &Mention) -> Option<Explanation> {
    let (partition, index) = set.locate(mention.client.as_deref(), rule_id)?;
    let rule = &*partition.rule(index);
    let doc = Document::new(mention);
    let mut candidates = Vec::new();
    partition.prefilter().candidates(&doc, &mut Scratch::default(), &mut candidates);
    let hidden = doc.hide(rule.masks.iter().flat_map(|m| &m.sequences));
    Some(Explanation {
        rule_id: rule.rule.id.clone(),
        anchors: rule.anchors.as_ref().map(|groups| {
            let literal =
                |a: &cull_rules::Anchor| if a.prefix { format!("{}*", a.term) } else { a.term.clone() };
            groups.iter().map(|group| group.iter().map(literal).collect::<Vec<_>>().join(" | ")).collect()
        }),
        candidate: candidates.binary_search(&(index as u32)).is_ok(),
        clauses: clause_reports(rule, &doc, &hidden),
        masks: rule
            .masks
            .iter()
            .map(|mask| (mask.source.clone(), !doc.hide(&mask.sequences).is_empty()))
            .collect(),
        excludes: rule
            .exclude
            .iter()
            .map(|clause| (clause.source.clone(), matches(&clause.plan, &doc, &Hidden::NONE)))
            .collect(),
        outcome: evaluate(rule, &doc),
    })
}

fn clause_reports(rule: &CompiledRule, doc: &Document<'_>, hidden: &Hidden) -> Vec<ClauseReport> {
    // The rule compiled, so its query parses and each clause compiles on its own.
    let Ok(root) = query::parse(&rule.rule.query) else { return Vec::new() };
    let clauses = match &root.kind {
        NodeKind::And(nodes) | NodeKind::Or(nodes) => nodes.iter().collect(),
        _ => vec![&root],
    };
    clauses
        .into_iter()
        .filter_map(|node| {
            let (negated, positive) = match &node.kind {
                NodeKind::Not(inner) => (true, inner.as_ref()),
                _ => (false, node),
            };
            let plan = query::compile(positive).ok()?;
            Some(ClauseReport {
                source: rule.rule.query[node.span.clone()].to_string(),
                negated,
                matched: matches(&plan, doc, hidden),
            })
        })
        .collect()
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match &self.outcome {
            Outcome::NoMatch => "no match: the query does not match".to_string(),
            Outcome::Matched(spans) => format!("match ({} highlighted span(s))", spans.len()),
            Outcome::Culled { reason, clause } => {
                format!("culled by {}: {clause}", reason.as_str())
            }
        };
        writeln!(f, "rule {}: {verdict}", self.rule_id)?;
        match &self.anchors {
            Some(anchors) => writeln!(
                f,
                "  prefilter: {} (anchor groups: {})",
                if self.candidate {
                    "candidate"
                } else {
                    "not a candidate: some anchor group does not occur"
                },
                anchors.iter().map(|g| format!("[{g}]")).collect::<Vec<_>>().join(" ")
            )?,
            None => writeln!(f, "  prefilter: candidate for every mention (no anchor words)")?,
        }
        for clause in &self.clauses {
            let holds = clause.matched != clause.negated;
            let what = match (clause.negated, clause.matched) {
                (false, true) => "matches",
                (false, false) => "does not match",
                (true, true) => "matches, and is negated",
                (true, false) => "does not match, as negated",
            };
            writeln!(f, "  [{}] clause {}: {what}", if holds { "x" } else { " " }, clause.source)?;
        }
        for (mask, hit) in &self.masks {
            writeln!(
                f,
                "  mask {mask}: {}",
                if *hit { "occurs, hidden from the query" } else { "does not occur" }
            )?;
        }
        for (exclude, hit) in &self.excludes {
            writeln!(
                f,
                "  exclude {exclude}: {}",
                if *hit { "matches, culls the mention" } else { "does not match" }
            )?;
        }
        Ok(())
    }
}
