//! A rule ready to run: its query, culls and filters as [`Plan`]s, and its anchors.

use cull_model::analyzer::fold;
use cull_model::UNDETERMINED_LANGUAGE;

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
    /// Groups of literals: every match of `query` contains at least one literal of
    /// each group (see [`anchors`]); `None` when the query can match without any word
    /// (for example `site:example.com`), and such a rule is verified against every
    /// mention.
    pub anchors: Option<Vec<Vec<Anchor>>>,
    /// Branches of the `exclude` query; any that matches culls the mention.
    pub exclude: Vec<Clause>,
    /// The `mask` entries.
    pub masks: Vec<Mask>,
    /// Branches of the `escalate_on` query; any that matches escalates the ticket.
    pub escalate_on: Vec<Clause>,
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
    /// `escalate_on`.
    EscalateOn,
}

impl QueryKey {
    /// Returns the key as written in a rule file.
    pub fn name(self) -> String {
        match self {
            QueryKey::Query => "query".to_string(),
            QueryKey::Exclude => "exclude".to_string(),
            QueryKey::Mask(i) => format!("mask[{i}]"),
            QueryKey::EscalateOn => "escalate_on".to_string(),
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
            Some(text) => parse_and(QueryKey::Exclude, text, &mut errors, |node| branches(text, node)),
        };
        let escalate_on = match &rule.escalate_on {
            None => Some(Vec::new()),
            Some(text) => parse_and(QueryKey::EscalateOn, text, &mut errors, |node| branches(text, node)),
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
        let (Some(query), Some(exclude), Some(escalate_on), true) =
            (query, exclude, escalate_on, errors.is_empty())
        else {
            return Err(errors);
        };
        let masks = masks.into_iter().flatten().collect();
        let channel_filter = allowed(Field::Channel, rule.channels.iter().map(|c| c.as_str().to_string()));
        let undetermined = (!rule.langs.is_empty()).then(|| UNDETERMINED_LANGUAGE.to_string());
        let lang_filter =
            allowed(Field::Lang, rule.langs.iter().map(|l| keyword_value(l)).chain(undetermined));
        let version = rule_version(&rule);
        let anchors = word_clause_anchors(&query).or_else(|| anchors(&query));
        Ok(CompiledRule {
            rule,
            version,
            query,
            anchors,
            exclude,
            masks,
            escalate_on,
            channel_filter,
            lang_filter,
        })
    }
}

/// Compiles a query as its top-level OR branches, each kept with its source text so
/// that a verdict or a ticket can say which one hit (`exclude`, `escalate_on`).
pub fn compile_clauses(text: &str) -> Result<Vec<Clause>, Vec<QueryError>> {
    query::parse(text).map_err(|e| vec![e]).and_then(|node| branches(text, &node))
}

fn branches(text: &str, node: &query::Node) -> Result<Vec<Clause>, Vec<QueryError>> {
    let mut clauses = Vec::new();
    let mut failures = Vec::new();
    for branch in query::exclude_clauses(node) {
        match query::compile(branch) {
            Ok(plan) => clauses.push(Clause { source: text[branch.span.clone()].to_string(), plan }),
            Err(es) => failures.extend(es),
        }
    }
    if failures.is_empty() {
        Ok(clauses)
    } else {
        Err(failures)
    }
}

/// Returns the filter "the field is one of `values`, or the mention does not say",
/// or `None` when `values` is empty (everything allowed).
///
/// A mention that does not carry a channel or language (a hand-fed JSON line, say)
/// is not culled for lacking one, nor one whose language ingest could not tell
/// ([`UNDETERMINED_LANGUAGE`], which the language filter lists among its `values`):
/// culling the unknown would lose true matches silently.
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
        rule.escalate_on.as_deref().unwrap_or(""),
        rule.spike.as_deref().unwrap_or(""),
    ];
    cull_model::short_hash(&fields, 12)
}

/// Returns the anchor groups of a query of word clauses (see
/// [`Plan::word_clauses`]): the clauses themselves, each word whole, when there are no
/// more than [`MAX_ANCHOR_GROUPS`]. Every clause is needed for a match and each is a
/// group, so the groups are exactly the query.
fn word_clause_anchors(query: &Plan) -> Option<Vec<Vec<Anchor>>> {
    let clauses = query.word_clauses().filter(|clauses| clauses.len() <= MAX_ANCHOR_GROUPS)?;
    let mut groups: Vec<Vec<Anchor>> = clauses
        .into_iter()
        .map(|words| {
            let mut group: Vec<Anchor> =
                words.into_iter().map(|term| Anchor { term: term.to_string(), prefix: false }).collect();
            group.sort();
            group.dedup();
            group
        })
        .collect();
    groups.dedup();
    Some(groups)
}

/// The most anchor groups kept per rule; the prefilter tracks them in a bit set.
pub const MAX_ANCHOR_GROUPS: usize = 8;

/// Returns the anchor groups of a plan: every match contains at least one anchor of
/// each group (a conjunction of disjunctions), or `None` when the plan can match
/// without any word.
///
/// Requiring every group, rather than one anchor, is what keeps the prefilter sharp:
/// `slack (stock OR shares)` is a candidate only for mentions holding "slack" and one
/// of "stock" or "shares", and a phrase only for mentions holding all its words. An OR
/// keeps one group per alternative (its best) and merges them, which stays a necessary
/// condition. Where there is a choice (an OR's alternatives, more groups than
/// [`MAX_ANCHOR_GROUPS`]) the most selective groups are kept, see `cost`.
pub fn anchors(plan: &Plan) -> Option<Vec<Vec<Anchor>>> {
    let mut groups = match plan {
        Plan::Sequence(sequence) | Plan::SloppyPhrase { sequence, .. } => sequence_groups(sequence),
        Plan::Near { left, right, .. } => vec![any_of(left), any_of(right)],
        Plan::Keyword { .. } | Plan::Missing(_) => return None,
        Plan::And { must, .. } => {
            let groups: Vec<Vec<Anchor>> = must.iter().filter_map(anchors).flatten().collect();
            if groups.is_empty() {
                return None;
            }
            groups
        }
        Plan::Or(any) => {
            let children = any.iter().map(anchors).collect::<Option<Vec<_>>>()?;
            // The default scope makes `a` an OR of the same words in title and text;
            // their groups are the same, and the OR keeps them all.
            if children.windows(2).all(|pair| pair[0] == pair[1]) {
                children.into_iter().next()?
            } else {
                let mut merged = Vec::new();
                for child in children {
                    merged.extend(best_group(child)?);
                }
                vec![merged]
            }
        }
    };
    for group in &mut groups {
        group.sort();
        group.dedup();
    }
    groups.sort_by_cached_key(|g| cost(g));
    groups.dedup();
    // A group of common words adds little selectivity but makes the prefilter visit
    // the rule for most mentions; it is dropped when a better group remains.
    if groups.iter().any(|g| cost(g).1 == 0) {
        groups.retain(|g| cost(g).1 == 0);
    }
    groups.truncate(MAX_ANCHOR_GROUPS);
    Some(groups)
}

/// Words so common in English text that a group holding one makes a rule a candidate
/// for a large share of all mentions. Only the choice of anchors depends on this list,
/// never whether a rule matches.
const COMMON_WORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "because", "been",
    "but", "by", "can", "could", "day", "did", "do", "does", "for", "from", "get", "good", "great", "had",
    "has", "have", "he", "her", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just",
    "like", "make", "many", "me", "more", "most", "my", "new", "no", "not", "now", "of", "on", "one", "only",
    "or", "other", "our", "out", "over", "people", "said", "say", "says", "see", "she", "so", "some", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "time", "to", "two", "up",
    "us", "very", "was", "way", "we", "well", "were", "what", "when", "which", "who", "will", "with",
    "would", "year", "you", "your",
];

/// Orders groups from most to least selective: fewer literals, fewer common words,
/// then longer literals (long words are rarer).
fn cost(group: &[Anchor]) -> (usize, usize, usize) {
    let common =
        group.iter().filter(|a| !a.prefix && COMMON_WORDS.binary_search(&a.term.as_str()).is_ok()).count();
    let shortest = group.iter().map(|a| a.term.len()).min().unwrap_or(0);
    (group.len(), common, usize::MAX - shortest)
}

fn best_group(groups: Vec<Vec<Anchor>>) -> Option<Vec<Anchor>> {
    groups.into_iter().min_by_key(|g| cost(g))
}

fn sequence_groups(sequence: &Sequence) -> Vec<Vec<Anchor>> {
    let prefix = sequence.prefix && sequence.words.len() == 1;
    sequence.words.iter().map(|w| vec![Anchor { term: fold(&w.term), prefix }]).collect()
}

/// Returns one group for a set of alternatives: the best group of each.
fn any_of(sequences: &[Sequence]) -> Vec<Anchor> {
    sequences.iter().filter_map(|s| best_group(sequence_groups(s))).flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{compile, parse};

    fn groups(query: &str) -> Option<Vec<Vec<String>>> {
        let plan = compile(&parse(query).unwrap()).unwrap();
        anchors(&plan).map(|groups| {
            groups
                .into_iter()
                .map(|g| {
                    g.into_iter().map(|a| if a.prefix { format!("{}*", a.term) } else { a.term }).collect()
                })
                .collect()
        })
    }

    fn g(groups: &[&[&str]]) -> Option<Vec<Vec<String>>> {
        Some(groups.iter().map(|g| g.iter().map(|s| s.to_string()).collect()).collect())
    }

    #[test]
    fn common_words_list_is_sorted_for_binary_search() {
        assert!(COMMON_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn anchor_groups_are_necessary_conditions() {
        assert_eq!(groups("slack"), g(&[&["slack"]]));
        assert_eq!(groups("{Slack} (stock OR shares)"), g(&[&["slack"], &["shares", "stock"]]));
        assert_eq!(groups("\"connections magazine\""), g(&[&["connections"], &["magazine"]]));
        assert_eq!(
            groups("connect* NEAR/3 (dehaan OR \"call center\")"),
            g(&[&["connect*"], &["center", "dehaan"]])
        );
        assert_eq!(groups("slack -adjuster"), g(&[&["slack"]]));
        assert_eq!(groups("site:example.com"), None);
        assert_eq!(groups("site:example.com slack"), g(&[&["slack"]]));
        assert_eq!(groups("slack OR site:example.com"), None);
        assert_eq!(groups("#Slack OR \"the gig\""), g(&[&["#slack", "gig"]]));
        assert_eq!(groups("\"the gig\""), g(&[&["gig"]]));
        assert_eq!(groups("\"the of\""), g(&[&["the"], &["of"]]));
    }
}
