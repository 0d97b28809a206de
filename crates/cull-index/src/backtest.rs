//! Backtests: what draft rules would have matched and culled among the indexed
//! mentions.
//!
//! Candidates come from the index with the rule's compiled query (the definition of a
//! match), and each candidate's mention is then judged by the live matcher's own
//! [`evaluate`], which applies the channel and language filters, masks and
//! exclusions in the verdict's order. So a backtest says what the matcher would say,
//! not an approximation of it.

use std::collections::BTreeMap;
use std::time::Instant;

use cull_match::evaluate;
use cull_match::verify::Document;
use cull_model::Scope;
use cull_rules::CompiledRule;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::IndexError;
use crate::schema::parse_time;
use crate::search::Searcher;

/// What to backtest over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BacktestRequest {
    /// Only mentions at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Only mentions before this time (Unix seconds).
    pub until: Option<i64>,
    /// Samples of matches and of culls to return per rule.
    pub samples: usize,
}

impl Default for BacktestRequest {
    fn default() -> BacktestRequest {
        BacktestRequest { since: None, until: None, samples: 5 }
    }
}

/// Matches and culls of one day (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    /// Mentions the rule would have matched that day.
    pub matched: u64,
    /// Mentions whose match the rule would have culled that day.
    pub culled: u64,
}

/// One mention a backtest found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The mention id.
    pub id: String,
    /// When it was published (or fetched).
    pub at: Option<String>,
    /// Its title.
    pub title: Option<String>,
    /// The start of its text.
    pub text: String,
    /// For a cull: exclude, mask, channel or lang.
    pub reason: Option<String>,
    /// For a cull: the clause responsible.
    pub clause: Option<String>,
}

/// The backtest of one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleBacktest {
    /// The rule id.
    pub rule_id: String,
    /// Mentions it would have matched.
    pub matched: u64,
    /// Mentions whose match it would have culled.
    pub culled: u64,
    /// Culls per reason.
    pub culled_by: BTreeMap<String, u64>,
    /// Per day, oldest first.
    pub days: Vec<DayCount>,
    /// Some mentions it would have matched, newest first.
    pub matched_samples: Vec<Sample>,
    /// Some mentions it would have culled, newest first.
    pub culled_samples: Vec<Sample>,
    /// The ids of every mention it would have matched, sorted.
    pub matched_ids: Vec<String>,
    /// The ids of every mention whose match it would have culled, sorted.
    pub culled_ids: Vec<String>,
}

/// The backtest of a rule pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backtest {
    /// One entry per rule, in the pack's order.
    pub rules: Vec<RuleBacktest>,
}

/// Runs `rules` over the indexed mentions of `scope`, within the searcher's time
/// limit for the whole backtest: past it, the backtest stops with
/// [`IndexError::TimeLimit`] rather than report counts of part of the mentions.
///
/// A rule is tried on the mentions the live matcher would give it: a client's rule on
/// that client's mentions only, a global rule on every mention the scope admits.
pub fn backtest<R: std::borrow::Borrow<CompiledRule>>(
    searcher: &Searcher,
    scope: &Scope,
    rules: impl IntoIterator<Item = R>,
    request: &BacktestRequest,
) -> Result<Backtest, IndexError> {
    // A limit too long to add to now (Duration::MAX) is no limit.
    let deadline = Instant::now().checked_add(searcher.limits().timeout);
    let over = || deadline.is_some_and(|d| Instant::now() >= d);
    let mut report = Backtest { rules: Vec::new() };
    for rule in rules {
        let rule = rule.borrow();
        let mut records = match rule_scope(scope, rule.rule.client.as_deref()) {
            Some(scope) => searcher.records(&scope, &rule.query, request.since, request.until, deadline)?,
            None => Vec::new(),
        };
        let time_of = |record: &cull_model::Verdict| {
            let mention = record.mention.as_ref()?;
            let at = mention.published_at.as_deref().or(mention.fetched_at.as_deref())?;
            parse_time(at).map(|t| t.into_timestamp_secs())
        };
        records.sort_by_key(|record| std::cmp::Reverse(time_of(record)));
        let mut result = RuleBacktest {
            rule_id: rule.rule.id.clone(),
            matched: 0,
            culled: 0,
            culled_by: BTreeMap::new(),
            days: Vec::new(),
            matched_samples: Vec::new(),
            culled_samples: Vec::new(),
            matched_ids: Vec::new(),
            culled_ids: Vec::new(),
        };
        let mut days: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for record in &records {
            if over() {
                return Err(searcher.time_limit());
            }
            let Some(mention) = &record.mention else { continue };
            let at = time_of(record).and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
            let day = at.map_or_else(|| "unknown".to_string(), |t| t.date().to_string());
            let sample = |reason: Option<String>, clause: Option<String>| Sample {
                id: mention.id.clone(),
                at: at.and_then(|t| t.format(&Rfc3339).ok()),
                title: mention.title.clone(),
                text: mention.text.chars().take(200).collect(),
                reason,
                clause,
            };
            match evaluate(rule, &Document::new(mention)) {
                cull_match::Outcome::NoMatch => {}
                cull_match::Outcome::Matched(_) => {
                    result.matched += 1;
                    days.entry(day).or_default().0 += 1;
                    result.matched_ids.push(mention.id.clone());
                    if result.matched_samples.len() < request.samples {
                        result.matched_samples.push(sample(None, None));
                    }
                }
                cull_match::Outcome::Culled { reason, clause } => {
                    result.culled += 1;
                    days.entry(day).or_default().1 += 1;
                    *result.culled_by.entry(reason.as_str().to_string()).or_default() += 1;
                    result.culled_ids.push(mention.id.clone());
                    if result.culled_samples.len() < request.samples {
                        result.culled_samples.push(sample(Some(reason.as_str().to_string()), Some(clause)));
                    }
                }
            }
        }
        result.matched_ids.sort();
        result.culled_ids.sort();
        result.days =
            days.into_iter().map(|(day, (matched, culled))| DayCount { day, matched, culled }).collect();
        report.rules.push(result);
    }
    Ok(report)
}

/// Returns the mentions a rule of `client` may be tried on within `scope`, `None`
/// when there are none (another client's rule in a client's scope).
fn rule_scope(scope: &Scope, client: Option<&str>) -> Option<Scope> {
    match (scope, client) {
        (_, None) => Some(scope.clone()),
        (Scope::All, Some(client)) => Some(Scope::Client(client.to_string())),
        (Scope::Client(own), Some(client)) => (own == client).then(|| scope.clone()),
    }
}
