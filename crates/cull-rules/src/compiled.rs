//! A rule ready to run: its query, culls and filters as [`Plan`]s, and its anchors.

use crate::plan::{Plan, Sequence};
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
