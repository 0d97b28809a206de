//! "Why did (or didn't) this rule match this text?", for operators writing rules.

use std::fmt;

use cull_model::Mention;
use cull_rules::query::{self, Node, NodeKind};
use cull_rules::{CompiledRule, Plan};

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

/// How near the operands of one `NEAR/n` (or `ONEAR/n`) clause came in a mention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearReport {
    /// Where the clause is: `query` or `exclude`.
    pub part: &'static str,
    /// The left operand, in canonical form.
    pub left: String,
    /// The right operand, in canonical form.
    pub right: String,
    /// The `n` of `NEAR/n`: words allowed between the operands.
    pub allowed: u32,
    /// `ONEAR`: the left operand must come first.
    pub ordered: bool,
    /// The fewest words between a left operand and a later right one (in one field,
    /// masked words left out in the query); `None` when there is no such pair.
    pub gap: Option<u32>,
    /// The same with the right operand first.
    pub reverse_gap: Option<u32>,
}

impl NearReport {
    /// The fewest words between the operands in an order the clause accepts.
    fn accepted_gap(&self) -> Option<u32> {
        match self.ordered {
            true => self.gap,
            false => self.gap.into_iter().chain(self.reverse_gap).min(),
        }
    }
}

/// The account of one rule against one mention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The rule id.
    pub rule_id: String,
    /// Whether the rule is enabled: a disabled rule is explained as if it ran, but the
    /// live matcher does not run it.
    pub enabled: bool,
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
    /// Every proximity clause of the query and the excludes, with how near its
    /// operands came.
    pub nears: Vec<NearReport>,
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
    let mut nears = near_reports("query", &rule.rule.query, &doc, &hidden);
    for clause in &rule.exclude {
        nears.extend(near_reports("exclude", &clause.source, &doc, &Hidden::NONE));
    }
    Some(Explanation {
        rule_id: rule.rule.id.clone(),
        enabled: rule.rule.enabled,
        anchors: rule.anchors.as_ref().map(|groups| {
            let literal =
                |a: &cull_rules::Anchor| if a.prefix { format!("{}*", a.term) } else { a.term.clone() };
            groups.iter().map(|group| group.iter().map(literal).collect::<Vec<_>>().join(" | ")).collect()
        }),
        candidate: candidates.binary_search_by_key(&(index as u32), |c| c.rule()).is_ok(),
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
        nears,
        outcome: evaluate(rule, &doc),
    })
}

/// Returns a report for every `NEAR`/`ONEAR` clause of `source` (a query that
/// compiled), measured in `doc` with `hidden` positions left out.
fn near_reports(part: &'static str, source: &str, doc: &Document<'_>, hidden: &Hidden) -> Vec<NearReport> {
    let Ok(root) = query::parse(source) else { return Vec::new() };
    let mut reports = Vec::new();
    let mut visit = |near: &query::Near, node: &Node| {
        let Ok(plan) = query::compile(node) else { return };
        // A clause over several fields compiles to one proximity plan per field; the
        // nearest pair of any field is the one that decides.
        let (mut gap, mut reverse_gap) = (None, None);
        plan_nears(&plan, &mut |left, right| {
            let (forward, reverse) = doc.near_gaps(left, right, hidden);
            gap = gap.into_iter().chain(forward).min();
            reverse_gap = reverse_gap.into_iter().chain(reverse).min();
        });
        reports.push(NearReport {
            part,
            left: operand(&near.left),
            right: operand(&near.right),
            allowed: near.distance,
            ordered: near.ordered,
            gap,
            reverse_gap,
        });
    };
    visit_nodes(&root, None, &mut visit);
    reports
}

/// Returns a proximity operand as written in a query, in parentheses when it is an
/// AND or an OR.
fn operand(node: &Node) -> String {
    match node.kind {
        NodeKind::And(_) | NodeKind::Or(_) => format!("({node})"),
        _ => node.to_string(),
    }
}

/// Calls `visit` on every proximity clause of the tree under `node`, with the clause
/// to compile: itself, or wrapped in the `field:` scope it stands in, so that it
/// compiles to the fields it is about.
fn visit_nodes(node: &Node, scope: Option<&Node>, visit: &mut impl FnMut(&query::Near, &Node)) {
    match &node.kind {
        NodeKind::Near(near) => match scope {
            Some(Node { kind: NodeKind::Scoped(field, _), span }) => visit(
                near,
                &Node { kind: NodeKind::Scoped(*field, Box::new(node.clone())), span: span.clone() },
            ),
            _ => visit(near, node),
        },
        NodeKind::And(nodes) | NodeKind::Or(nodes) => {
            nodes.iter().for_each(|inner| visit_nodes(inner, scope, visit))
        }
        NodeKind::Not(inner) => visit_nodes(inner, scope, visit),
        NodeKind::Scoped(_, inner) => visit_nodes(inner, Some(node), visit),
        NodeKind::Term(_) | NodeKind::Phrase(_) => {}
    }
}

/// Calls `visit` with the operands of every proximity plan in `plan`.
fn plan_nears(plan: &Plan, visit: &mut impl FnMut(&[cull_rules::Sequence], &[cull_rules::Sequence])) {
    match plan {
        Plan::Near { left, right, .. } => visit(left, right),
        Plan::And { must, must_not } => {
            must.iter().chain(must_not).for_each(|inner| plan_nears(inner, visit))
        }
        Plan::Or(plans) => plans.iter().for_each(|inner| plan_nears(inner, visit)),
        _ => {}
    }
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
        if !self.enabled {
            writeln!(f, "  note: the rule is disabled (enabled = false): the live matcher does not run it")?;
        }
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
        for near in &self.nears {
            let operator = format!("{}/{}", if near.ordered { "ONEAR" } else { "NEAR" }, near.allowed);
            let pair = format!("{} … {}", near.left, near.right);
            let apart = |gap: u32| match gap {
                1 => "1 word apart".to_string(),
                gap => format!("{gap} words apart"),
            };
            let how_near = match (near.accepted_gap(), near.reverse_gap) {
                (Some(gap), _) => format!("{}; {operator} allows {}", apart(gap), near.allowed),
                (None, Some(gap)) => {
                    format!("only in the other order ({}); {operator} needs {} first", apart(gap), near.left)
                }
                (None, None) => "the two do not both occur in one field".to_string(),
            };
            writeln!(f, "  {} {operator}: {pair}: {how_near}", near.part)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn explained(rule: &str, mention: &Mention) -> Explanation {
        let loaded = cull_rules::load_files([(Path::new("t.toml"), rule.as_bytes())]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let set = RuleSet::new(loaded.rules).expect("rule set");
        explain(&set, "r", mention).expect("the rule")
    }

    fn gaps(explanation: &Explanation) -> Vec<(&str, Option<u32>, Option<u32>)> {
        explanation.nears.iter().map(|n| (n.part, n.gap, n.reverse_gap)).collect()
    }

    #[test]
    fn a_near_clause_reports_the_fewest_words_between_its_operands_in_each_order() {
        let rule = "[[rule]]\nid = 'r'\nquery = 'amazon NEAR/3 refund*'\nexclude = 'prime ONEAR/1 video'\n";
        let mention = Mention::new(
            "m",
            "refunds took weeks. Amazon said the card issuer holds the money for refunds now; video before prime",
        );
        let explanation = explained(rule, &mention);
        // Amazon … refunds: 8 words between; refunds … Amazon: 2.
        assert_eq!(gaps(&explanation), [("query", Some(8), Some(2)), ("exclude", None, Some(1))]);
        let shown = explanation.to_string();
        assert!(shown.contains("query NEAR/3: amazon … refund*: 2 words apart; NEAR/3 allows 3"), "{shown}");
        assert!(
            shown.contains("exclude ONEAR/1: prime … video: only in the other order (1 word apart); ONEAR/1 needs prime first"),
            "{shown}"
        );
    }

    #[test]
    fn a_masked_operand_does_not_count_and_a_scoped_clause_measures_its_field_only() {
        let rule = "[[rule]]\nid = 'r'\nquery = 'title:(acme NEAR/2 oven) OR (acme NEAR/1 oven)'\nmask = ['\"acme oven mitts\"']\n";
        let mut mention = Mention::new("m", "acme oven mitts are great, and the acme company oven broke");
        mention.title = Some("acme makes one good oven".to_string());
        let explanation = explained(rule, &mention);
        // In the title "acme makes one good oven": 3 words apart. In the text the
        // masked "acme oven" is hidden, leaving "acme company oven": 1 word apart.
        assert_eq!(gaps(&explanation), [("query", Some(3), None), ("query", Some(1), None)]);
        assert!(!explanation.to_string().contains("disabled"));
    }

    #[test]
    fn a_disabled_rule_is_explained_and_says_it_does_not_run() {
        let explanation =
            explained("[[rule]]\nid = 'r'\nquery = 'acme'\nenabled = false\n", &Mention::new("m", "acme"));
        assert!(!explanation.enabled);
        assert!(
            explanation.to_string().contains("note: the rule is disabled (enabled = false)"),
            "{explanation}"
        );
    }
}
