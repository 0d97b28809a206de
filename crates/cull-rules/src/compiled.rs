//! A rule ready to run: its query, culls and filters as [`Plan`]s, and its anchors.

use cull_model::analyzer::fold;

use crate::plan::{keyword_value, Field, Plan, Sequence};
use crate::query::{self, QueryError};
use crate::rule::Rule;

/// A literal that the prefilter looks for among a mention's folded terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Anchor {
    /// A folded term.
    pub term: String,
    /// When true, any term starting with `term` counts.
    pub prefix: bool,
}

/// One branch of a rule's `exclude` query, kept with its source text so a verdict can
/// say which clause culled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The clause as written in the rule file.
    pub source: String,
    /// The compiled clause.
    pub plan: Plan,
}

/// One entry of a rule's `mask` list: occurrences of these sequences are hidden from
/// the rule's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// The mask as written in the rule file.
    pub source: String,
    /// Alternatives; every occurrence of each is hidden.
    pub sequences: Vec<Sequence>,
}

/// A validated rule with its compiled plans.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// The rule as loaded.
    pub rule: Rule,
    /// Hash of the rule's definition; changes whenever its meaning can change.
    pub version: String,
    /// The rule's query.
    pub query: Plan,
    /// Literals of which every match of `query` contains at least one, or `None` when
    /// the query can match without any word (for example `site:example.com`); such a
    /// rule is verified against every mention.
    pub anchors: Option<Vec<Anchor>>,
    /// Branches of the `exclude` query; any that matches culls the mention.
    pub exclude: Vec<Clause>,
    /// The `mask` entries.
    pub masks: Vec<Mask>,
    /// True when the mention's channel is allowed (or unknown).
    pub channel_filter: Option<Plan>,
    /// True when the mention's language is allowed (or unknown).
    pub lang_filter: Option<Plan>,
}

impl CompiledRule {
    /// Returns the rule's meaning apart from masks as one plan: the query, the channel
    /// and language filters, and none of the exclude branches.
    ///
    /// Compiled to Tantivy ([`crate::tantivy_query`]) this is the definition the
    /// matcher is tested against; masks hide occurrences, which a document query
    /// cannot express, and are tested on their own.
    pub fn matching_plan(&self) -> Plan {
        let mut must = vec![self.query.clone()];
        must.extend(self.channel_filter.clone());
        must.extend(self.lang_filter.clone());
        let must_not = self.exclude.iter().map(|c| c.plan.clone()).collect::<Vec<_>>();
        if must.len() == 1 && must_not.is_empty() {
            return self.query.clone();
        }
        Plan::And { must, must_not }
    }
}

/// The key of a rule that holds a query, to locate a [`QueryError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKey {
    /// `query`.
    Query,
    /// `exclude`.
    Exclude,
    /// The n-th (0-based) entry of `mask`.
    Mask(usize),
}

impl QueryKey {
    /// Returns the key as written in a rule file.
    pub fn name(self) -> String {
        match self {
            QueryKey::Query => "query".to_string(),
            QueryKey::Exclude => "exclude".to_string(),
            QueryKey::Mask(i) => format!("mask[{i}]"),
        }
    }
}

fn parse_and<T>(
    key: QueryKey,
    text: &str,
    errors: &mut Vec<(QueryKey, QueryError)>,
    lower: impl FnOnce(&query::Node) -> Result<T, Vec<QueryError>>,
) -> Option<T> {
    let lowered = query::parse(text).map_err(|e| vec![e]).and_then(|node| lower(&node));
    lowered.map_err(|es| errors.extend(es.into_iter().map(|e| (key, e)))).ok()
}

impl CompiledRule {
    /// Compiles a rule's queries, reporting every error with the key it is in.
    pub fn compile(rule: Rule) -> Result<CompiledRule, Vec<(QueryKey, QueryError)>> {
        let mut errors = Vec::new();
        let query = parse_and(QueryKey::Query, &rule.query, &mut errors, query::compile);
        let exclude = match &rule.exclude {
            None => Some(Vec::new()),
            Some(text) => parse_and(QueryKey::Exclude, text, &mut errors, |node| {
                let mut clauses = Vec::new();
                let mut failures = Vec::new();
                for branch in query::exclude_clauses(node) {
                    match query::compile(branch) {
                        Ok(plan) => {
                            clauses.push(Clause { source: text[branch.span.clone()].to_string(), plan })
                        }
                        Err(es) => failures.extend(es),
                    }
                }
                if failures.is_empty() {
                    Ok(clauses)
                } else {
                    Err(failures)
                }
            }),
        };
        let masks: Vec<Option<Mask>> = rule
            .mask
            .iter()
            .enumerate()
            .map(|(i, text)| {
                parse_and(QueryKey::Mask(i), text, &mut errors, query::compile_mask)
                    .map(|sequences| Mask { source: text.clone(), sequences })
            })
            .collect();
        let (Some(query), Some(exclude), true) = (query, exclude, errors.is_empty()) else {
            return Err(errors);
        };
        let masks = masks.into_iter().flatten().collect();
        let channel_filter = allowed(Field::Channel, rule.channels.iter().map(|c| c.as_str().to_string()));
        let lang_filter = allowed(Field::Lang, rule.langs.iter().map(|l| keyword_value(l)));
        let version = rule_version(&rule);
        let anchors = anchors(&query);
        Ok(CompiledRule { rule, version, query, anchors, exclude, masks, channel_filter, lang_filter })
    }
}

/// Returns the filter "the field is one of `values`, or the mention does not say",
/// or `None` when `values` is empty (everything allowed).
///
/// A mention that does not carry a channel or language (a hand-fed JSON line, say)
/// is not culled for lacking one: ingest always sets the channel and detects the
/// language, so the filters bite on real traffic, and culling the unknown would lose
/// true matches silently.
fn allowed(field: Field, values: impl Iterator<Item = String>) -> Option<Plan> {
    let mut alternatives: Vec<Plan> = values.map(|value| Plan::Keyword { field, value }).collect();
    if alternatives.is_empty() {
        return None;
    }
    alternatives.push(Plan::Missing(field));
    Some(Plan::Or(alternatives))
}

fn rule_version(rule: &Rule) -> String {
    let channels: Vec<&str> = rule.channels.iter().map(|c| c.as_str()).collect();
    let fields = [
        rule.id.as_str(),
        rule.query.as_str(),
        rule.exclude.as_deref().unwrap_or(""),
        &rule.mask.join("\u{1f}"),
        &format!("{:?}", rule.priority),
        rule.queue.as_str(),
        &channels.join(","),
        &rule.langs.join(","),
        if rule.enabled { "enabled" } else { "disabled" },
        rule.client.as_deref().unwrap_or(""),
    ];
    cull_model::short_hash(&fields, 12)
}

/// Returns anchors for a plan: folded literals of which every match contains one, or
/// `None` when the plan can match without any word.
///
/// Where a plan offers a choice (the clauses of an AND, the two sides of a NEAR, the
/// words of a phrase) the choice with the fewest and longest literals wins: long words
/// are rarer, so the rule is a candidate for fewer mentions.
pub fn anchors(plan: &Plan) -> Option<Vec<Anchor>> {
    let mut found = match plan {
        Plan::Sequence(sequence) | Plan::SloppyPhrase { sequence, .. } => {
            vec![sequence_anchor(sequence)]
        }
        Plan::Near { left, right, .. } => {
            let left: Vec<Anchor> = left.iter().map(sequence_anchor).collect();
            let right: Vec<Anchor> = right.iter().map(sequence_anchor).collect();
            best([left, right].into_iter())?
        }
        Plan::Keyword { .. } | Plan::Missing(_) => return None,
        Plan::And { must, .. } => best(must.iter().filter_map(anchors))?,
        Plan::Or(any) => any.iter().map(anchors).collect::<Option<Vec<_>>>()?.concat(),
    };
    found.sort();
    found.dedup();
    Some(found)
}

fn best(choices: impl Iterator<Item = Vec<Anchor>>) -> Option<Vec<Anchor>> {
    let cost = |anchors: &Vec<Anchor>| {
        let shortest = anchors.iter().map(|a| a.term.len()).min().unwrap_or(0);
        (anchors.len(), usize::MAX - shortest)
    };
    choices.min_by_key(cost)
}

fn sequence_anchor(sequence: &Sequence) -> Anchor {
    let longest = sequence.words.iter().max_by_key(|w| w.term.len()).map_or("", |w| w.term.as_str());
    Anchor { term: fold(longest), prefix: sequence.prefix }
}
