//! Suggestions: the exclusions and masks that would have culled a rule's noise.
//!
//! The words and phrases of a rule's irrelevant mentions are compared with those of
//! its relevant ones by the log-odds ratio with an informative Dirichlet prior
//! (Monroe, Colaresi and Quinn 2008): a term's count in each class gets pseudo-counts
//! in proportion to its count in both, so a word seen once in one class and never in
//! the other does not outrank one seen in half the noise, and the z-score of the
//! difference ranks the candidates. Counts are of mentions (a word repeated in one
//! post is one piece of evidence).
//!
//! A candidate that contains one of the rule's own query words becomes a mask (its
//! occurrences stop counting, as `"slack adjuster"` for a `slack` rule, so a mention
//! that also names the brand still matches); any other becomes an exclusion. Authors
//! agents blocked become author exclusions. Every candidate is then backtested on the
//! analyst index with the live matcher's code (`cull_index::backtest`), and ranked by
//! what the backtest shows: irrelevant mentions culled, less twice the relevant ones
//! lost.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cull_index::{backtest, BacktestRequest, Searcher};
use cull_model::analyzer::{analyze, Form, Mode};
use cull_model::Scope;
use cull_rules::query::{Node, NodeKind};
use cull_rules::{CompiledRule, Field, Rule};
use serde::{Deserialize, Serialize};

use crate::error::QualityError;
use crate::store::Store;

/// Pseudo-documents of prior evidence per term, spread in proportion to the term's
/// share of all mentions.
const PRIOR_MENTIONS: f64 = 2.0;
/// What a relevant mention lost weighs against an irrelevant one culled.
const LOSS_WEIGHT: i64 = 2;
/// Longest phrase considered, in words.
const MAX_WORDS: usize = 3;

/// Words that begin or end no suggestion: excluding "the" culls everything. A short
/// list rather than a crate's, because it only trims phrase edges; the log-odds
/// ranking already puts words common to both classes last.
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by",
    "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her", "his", "how", "i",
    "if", "in", "into", "is", "it", "its", "just", "may", "me", "more", "my", "new", "no", "not", "of", "on",
    "one", "or", "our", "out", "over", "say", "says", "she", "so", "than", "that", "the", "their", "them",
    "then", "there", "they", "this", "to", "up", "us", "was", "we", "were", "what", "when", "which", "who",
    "will", "with", "would", "you", "your",
];

/// A labelled mention: its id and the words of each of its fields (title, text).
type Words = (String, Vec<Vec<String>>);

/// What to suggest from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuggestOptions {
    /// Suggestions returned at most.
    pub max: usize,
    /// Irrelevant mentions a word or phrase must be in to be a candidate.
    pub min_support: usize,
    /// Candidates backtested (the best by log-odds).
    pub backtested: usize,
}

impl Default for SuggestOptions {
    fn default() -> SuggestOptions {
        SuggestOptions { max: 10, min_support: 2, backtested: 20 }
    }
}

/// What a suggestion adds to the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionKind {
    /// A clause added to `exclude` (ORed with what is there).
    Exclude,
    /// A query added to `mask`.
    Mask,
    /// An `author:` clause added to `exclude`, for an author agents blocked.
    BlockAuthor,
}

/// One suggestion, with its evidence and its backtest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// Where it goes.
    pub kind: SuggestionKind,
    /// The query clause, as the rule file would have it.
    pub clause: String,
    /// Labelled irrelevant mentions that contain it.
    pub irrelevant_with: u64,
    /// Labelled relevant mentions that contain it.
    pub relevant_with: u64,
    /// The z-score of its log-odds ratio, irrelevant against relevant (absent for a
    /// blocked author, which agents named).
    pub z: Option<f64>,
    /// Labelled irrelevant mentions the live rule matches and the draft would not.
    pub irrelevant_culled: u64,
    /// Labelled relevant mentions the live rule matches and the draft would not.
    pub relevant_lost: u64,
    /// Every indexed mention the live rule matches and the draft would not, labelled
    /// or not.
    pub newly_culled: u64,
    /// Some of those (five, by id).
    pub newly_culled_ids: Vec<String>,
}

impl Suggestion {
    /// Returns the gain its backtest shows: irrelevant mentions culled, less twice the
    /// relevant ones lost.
    pub fn gain(&self) -> i64 {
        self.irrelevant_culled as i64 - LOSS_WEIGHT * self.relevant_lost as i64
    }
}

/// The suggestions for one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestions {
    /// The rule id.
    pub rule_id: String,
    /// Labelled irrelevant mentions found in the index.
    pub irrelevant: usize,
    /// Labelled relevant mentions found in the index.
    pub relevant: usize,
    /// Labelled mentions no longer in the index (or outside the reader's scope).
    pub unavailable: usize,
    /// Mentions the live rule matches in the index.
    pub matched: u64,
    /// The suggestions, best first.
    pub suggestions: Vec<Suggestion>,
}

/// Suggests exclusions and masks for `rule` from its tickets' dispositions in
/// `store`, backtested on the mentions of the index `scope` may see.
pub fn suggest(
    searcher: &Searcher,
    scope: &Scope,
    store: &Store,
    rule: &CompiledRule,
    options: &SuggestOptions,
) -> Result<Suggestions, QualityError> {
    let labelled = store.labelled(&rule.rule.id, |client| {
        scope.admits(client) && rule.rule.client.as_deref().is_none_or(|own| client == Some(own))
    });
    let mut unavailable = 0;
    let mut texts = |ids: &[String]| -> Result<Vec<Words>, QualityError> {
        let mut found = Vec::new();
        for id in ids {
            match searcher.mention(scope, id) {
                Ok(record) => {
                    let Some(mention) = record.verdict.mention else { continue };
                    let fields = [mention.title.as_deref().unwrap_or(""), mention.text.as_str()];
                    found.push((id.clone(), fields.iter().map(|field| words(field)).collect()));
                }
                Err(cull_index::IndexError::NotFound(_)) => unavailable += 1,
                Err(error) => return Err(error.into()),
            }
        }
        Ok(found)
    };
    let irrelevant = texts(&labelled.irrelevant)?;
    let relevant = texts(&labelled.relevant)?;
    let own_words = query_words(&rule.rule.query);
    let mut candidates: Vec<Suggestion> = ranked_phrases(&irrelevant, &relevant, &own_words, options)
        .into_iter()
        .take(options.backtested)
        .collect();
    for author in labelled.blocked_authors.keys() {
        if let Some(clause) = author_clause(author) {
            candidates.push(Suggestion {
                kind: SuggestionKind::BlockAuthor,
                clause,
                irrelevant_with: 0,
                relevant_with: 0,
                z: None,
                irrelevant_culled: 0,
                relevant_lost: 0,
                newly_culled: 0,
                newly_culled_ids: Vec::new(),
            });
        }
    }
    let drafts: Vec<(usize, CompiledRule)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, suggestion)| Some((i, CompiledRule::compile(with(&rule.rule, [suggestion])).ok()?)))
        .collect();
    let request = BacktestRequest { since: None, until: None, samples: 0 };
    let mut rules: Vec<&CompiledRule> = vec![rule];
    rules.extend(drafts.iter().map(|(_, draft)| draft));
    let report = backtest(searcher, scope, rules, &request)?;
    let live: BTreeSet<&str> = report.rules[0].matched_ids.iter().map(String::as_str).collect();
    let irrelevant_ids: BTreeSet<&str> = irrelevant.iter().map(|(id, _)| id.as_str()).collect();
    let relevant_ids: BTreeSet<&str> = relevant.iter().map(|(id, _)| id.as_str()).collect();
    let mut suggestions = Vec::new();
    for ((i, _), result) in drafts.iter().zip(&report.rules[1..]) {
        let kept: BTreeSet<&str> = result.matched_ids.iter().map(String::as_str).collect();
        let dropped: Vec<&str> = live.difference(&kept).copied().collect();
        let mut suggestion = candidates[*i].clone();
        suggestion.irrelevant_culled =
            dropped.iter().filter(|id| irrelevant_ids.contains(*id)).count() as u64;
        suggestion.relevant_lost = dropped.iter().filter(|id| relevant_ids.contains(*id)).count() as u64;
        suggestion.newly_culled = dropped.len() as u64;
        suggestion.newly_culled_ids = dropped.iter().take(5).map(|id| id.to_string()).collect();
        if suggestion.irrelevant_culled > 0 {
            suggestions.push(suggestion);
        }
    }
    suggestions.sort_by(|a, b| {
        b.gain()
            .cmp(&a.gain())
            .then_with(|| b.z.unwrap_or(f64::INFINITY).total_cmp(&a.z.unwrap_or(f64::INFINITY)))
            .then_with(|| a.clause.len().cmp(&b.clause.len()))
    });
    suggestions.truncate(options.max);
    Ok(Suggestions {
        rule_id: rule.rule.id.clone(),
        irrelevant: irrelevant.len(),
        relevant: relevant.len(),
        unavailable,
        matched: live.len() as u64,
        suggestions,
    })
}

impl Suggestions {
    /// Returns what a draft takes: the best suggestion if it loses no relevant
    /// mention, and every blocked author whose exclusion loses none. The others stay
    /// suggestions for the operator to weigh.
    pub fn picks(&self) -> Vec<&Suggestion> {
        let safe = |s: &&Suggestion| s.relevant_lost == 0 && s.gain() > 0;
        let best =
            self.suggestions.iter().filter(|s| s.kind != SuggestionKind::BlockAuthor).filter(safe).take(1);
        let authors = self.suggestions.iter().filter(|s| s.kind == SuggestionKind::BlockAuthor).filter(safe);
        best.chain(authors).collect()
    }
}

/// Returns `rule` with `suggestions` added to its `exclude` and `mask`.
fn with<'a>(rule: &Rule, suggestions: impl IntoIterator<Item = &'a Suggestion>) -> Rule {
    let mut draft = rule.clone();
    for suggestion in suggestions {
        match suggestion.kind {
            SuggestionKind::Mask => draft.mask.push(suggestion.clause.clone()),
            SuggestionKind::Exclude | SuggestionKind::BlockAuthor => {
                draft.exclude = Some(match draft.exclude.take() {
                    Some(exclude) => format!("({exclude}) OR {}", suggestion.clause),
                    None => suggestion.clause.clone(),
                });
            }
        }
    }
    draft
}

/// Returns the folded words of `text`, one per position, in order (an empty string
/// where a position has none the analyzer kept).
fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for token in analyze(text, Form::Folded, Mode::Query) {
        let position = token.position as usize;
        if out.len() <= position {
            out.resize(position + 1, String::new());
        }
        if out[position].is_empty() {
            out[position] = token.term;
        }
    }
    out
}

/// Returns the folded words the query looks for in a mention's title and text: a
/// phrase with one of them is a mask, not an exclusion. Words under `NOT` and in other
/// fields (`author:bob`, `site:example.com`) are not the rule's own: a phrase of them
/// is an ordinary exclusion.
fn query_words(query: &str) -> BTreeSet<String> {
    fn collect(node: &Node, words: &mut BTreeSet<String>) {
        let mut add =
            |text: &str| words.extend(analyze(text, Form::Folded, Mode::Index).into_iter().map(|t| t.term));
        match &node.kind {
            NodeKind::Term(term) => add(&term.text),
            NodeKind::Phrase(phrase) => add(&phrase.text),
            NodeKind::Near(near) => {
                collect(&near.left, words);
                collect(&near.right, words);
            }
            NodeKind::And(nodes) | NodeKind::Or(nodes) => {
                nodes.iter().for_each(|inner| collect(inner, words))
            }
            NodeKind::Scoped(Field::Title | Field::Text, inner) => collect(inner, words),
            NodeKind::Not(_) | NodeKind::Scoped(..) => {}
        }
    }
    let mut words = BTreeSet::new();
    // The rule compiled, so its query parses.
    if let Ok(root) = cull_rules::query::parse(query) {
        collect(&root, &mut words);
    }
    words
}

/// Returns the phrases of 1 to [`MAX_WORDS`] words over-represented in `irrelevant`
/// against `relevant`, best first, as unbacktested suggestions.
fn ranked_phrases(
    irrelevant: &[Words],
    relevant: &[Words],
    own_words: &BTreeSet<String>,
    options: &SuggestOptions,
) -> Vec<Suggestion> {
    let count = |mentions: &[Words]| {
        let mut counts: HashMap<Vec<String>, u64> = HashMap::new();
        for (_, fields) in mentions {
            let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
            for words in fields {
                for start in 0..words.len() {
                    for len in 1..=MAX_WORDS.min(words.len() - start) {
                        let phrase = &words[start..start + len];
                        if is_candidate(phrase) {
                            seen.insert(phrase.to_vec());
                        }
                    }
                }
            }
            for phrase in seen {
                *counts.entry(phrase).or_default() += 1;
            }
        }
        counts
    };
    let (in_irrelevant, in_relevant) = (count(irrelevant), count(relevant));
    let (n_a, n_b) = (irrelevant.len() as f64, relevant.len() as f64);
    let total = n_a + n_b;
    let mut ranked: Vec<(Vec<String>, u64, u64, f64)> = in_irrelevant
        .into_iter()
        .filter(|(_, a)| *a as usize >= options.min_support)
        .map(|(phrase, a)| {
            let b = in_relevant.get(&phrase).copied().unwrap_or(0);
            let alpha = PRIOR_MENTIONS * (a + b) as f64 / total;
            // Half a mention more in every cell (Jeffreys) keeps each count positive: a
            // phrase in every irrelevant mention and no relevant one is the best
            // evidence there is, not a division by zero.
            let (a_f, b_f) = (a as f64 + alpha + 0.5, b as f64 + alpha + 0.5);
            let (not_a, not_b) = (
                n_a - a as f64 + PRIOR_MENTIONS - alpha + 0.5,
                n_b - b as f64 + PRIOR_MENTIONS - alpha + 0.5,
            );
            let delta = (a_f / not_a).ln() - (b_f / not_b).ln();
            let variance = 1.0 / a_f + 1.0 / not_a + 1.0 / b_f + 1.0 / not_b;
            (phrase, a, b, delta / variance.sqrt())
        })
        .filter(|(_, _, _, z)| *z > 0.0)
        .collect();
    ranked.sort_by(|x, y| {
        y.3.total_cmp(&x.3).then_with(|| x.0.len().cmp(&y.0.len())).then_with(|| x.0.cmp(&y.0))
    });
    // A longer phrase that says no more than a shorter one inside it of the same kind
    // (found in the same mentions of each class) is dropped: `thrones` rather than
    // `of thrones`, `slack adjuster` (a mask) rather than `slack adjuster market`.
    let is_mask = |phrase: &[String]| phrase.iter().any(|word| own_words.contains(word));
    let counts: BTreeMap<Vec<String>, (u64, u64)> =
        ranked.iter().map(|(p, a, b, _)| (p.clone(), (*a, *b))).collect();
    ranked.retain(|(phrase, a, b, _)| {
        !(1..phrase.len()).any(|len| {
            phrase.windows(len).any(|inner| {
                is_mask(inner) == is_mask(phrase)
                    && counts.get(inner).is_some_and(|&(ia, ib)| ia == *a && ib <= *b)
            })
        })
    });
    ranked
        .into_iter()
        .map(|(phrase, a, b, z)| {
            let kind = if is_mask(&phrase) { SuggestionKind::Mask } else { SuggestionKind::Exclude };
            let text = phrase.join(" ");
            Suggestion {
                kind,
                clause: format!("\"{text}\""),
                irrelevant_with: a,
                relevant_with: b,
                z: Some(z),
                irrelevant_culled: 0,
                relevant_lost: 0,
                newly_culled: 0,
                newly_culled_ids: Vec::new(),
            }
        })
        .collect()
}

/// Returns whether a phrase can be suggested: no gap, no stop word at either end, a
/// letter in each word, nothing a quoted query cannot hold, and a single word of at
/// least three characters.
fn is_candidate(phrase: &[String]) -> bool {
    let (Some(first), Some(last)) = (phrase.first(), phrase.last()) else { return false };
    let stop = |word: &str| STOP_WORDS.contains(&word);
    phrase.iter().all(|word| {
        !word.is_empty() && word.chars().any(char::is_alphabetic) && !word.contains(['"', '\\', '*'])
    }) && !stop(first)
        && !stop(last)
        && (phrase.len() > 1 || first.chars().count() >= 3)
}

/// Returns the `author:` clause of a blocked author, if the name can be quoted.
fn author_clause(author: &str) -> Option<String> {
    let author = author.trim();
    (!author.is_empty() && !author.contains(['"', '\\'])).then(|| format!("author:\"{author}\""))
}

/// Returns a draft rule file: `rule` as it is, with `suggestions` added to its
/// `exclude` and `mask`, and a comment naming what was added and why. Nothing reads
/// it until an operator moves it into the rules directory.
pub fn draft_toml(rule: &Rule, suggestions: &[&Suggestion]) -> String {
    let draft = with(rule, suggestions.iter().copied());
    let mut header = format!(
        "# A draft of rule {:?} ({}:{}) with suggestions from agents' feedback.\n\
         # Nothing applies it: review it, then replace the rule in its file.\n",
        rule.id,
        rule.path.display(),
        rule.line
    );
    for suggestion in suggestions {
        header.push_str(&format!(
            "#   {} {}: culls {} irrelevant, loses {} relevant of the labelled mentions ({} mentions in all)\n",
            match suggestion.kind {
                SuggestionKind::Exclude => "exclude",
                SuggestionKind::Mask => "mask",
                SuggestionKind::BlockAuthor => "block author",
            },
            suggestion.clause,
            suggestion.irrelevant_culled,
            suggestion.relevant_lost,
            suggestion.newly_culled
        ));
    }
    header + &rule_toml(&draft)
}

/// Returns a rule file holding `draft` alone, as its own file would define it (the
/// console's draft page starts from a live rule this way).
pub fn rule_toml(draft: &Rule) -> String {
    let mut table = toml::Table::new();
    let mut put = |key: &str, value: toml::Value| {
        table.insert(key.to_string(), value);
    };
    let text = |s: &str| toml::Value::String(s.to_string());
    let list = |items: Vec<String>| toml::Value::Array(items.into_iter().map(toml::Value::String).collect());
    put("id", text(&draft.id));
    put("name", text(&draft.name));
    put("query", text(&draft.query));
    if let Some(exclude) = &draft.exclude {
        put("exclude", text(exclude));
    }
    if !draft.mask.is_empty() {
        put("mask", list(draft.mask.clone()));
    }
    put("priority", text(draft.priority.as_str()));
    put("queue", text(&draft.queue));
    if !draft.channels.is_empty() {
        put("channels", list(draft.channels.iter().map(|c| c.as_str().to_string()).collect()));
    }
    if !draft.langs.is_empty() {
        put("langs", list(draft.langs.clone()));
    }
    if !draft.enabled {
        put("enabled", toml::Value::Boolean(false));
    }
    if draft.metrics {
        put("metrics", toml::Value::Boolean(true));
    }
    if let (Some(client), None) = (&draft.client, &draft.pack) {
        put("client", text(client));
    }
    if let Some(escalate_on) = &draft.escalate_on {
        put("escalate_on", text(escalate_on));
    }
    if let Some(spike) = &draft.spike {
        put("spike", text(spike));
    }
    let examples: Vec<toml::Value> = draft
        .examples
        .iter()
        .map(|example| {
            let mut entry = toml::Table::new();
            entry.insert("text".into(), text(&example.text));
            for (key, value) in [
                ("title", &example.title),
                ("url", &example.url),
                ("author", &example.author),
                ("lang", &example.lang),
            ] {
                if let Some(value) = value {
                    entry.insert(key.into(), text(value));
                }
            }
            if let Some(channel) = example.channel {
                entry.insert("channel".into(), text(channel.as_str()));
            }
            entry.insert("expect".into(), text(example.expect.as_str()));
            toml::Value::Table(entry)
        })
        .collect();
    if !examples.is_empty() {
        put("example", toml::Value::Array(examples));
    }
    let mut root = toml::Table::new();
    root.insert("rule".into(), toml::Value::Array(vec![toml::Value::Table(table)]));
    toml::to_string(&root).expect("a rule table always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mentions(texts: &[&str]) -> Vec<Words> {
        texts.iter().enumerate().map(|(i, text)| (format!("m{i}"), vec![words(text)])).collect()
    }

    #[test]
    fn the_rules_own_words_are_its_positive_title_and_text_words() {
        // A phrase of `wax` or `adjuster` is then an exclusion, not a mask.
        let words = query_words(
            r#"(slack OR title:"Slack Technologies") AND NOT wax AND -author:adjuster site:x.com"#,
        );
        assert_eq!(words, ["slack", "technologies"].map(String::from).into());
    }

    #[test]
    fn the_noise_words_rank_first_and_a_phrase_with_the_brand_is_a_mask() {
        let irrelevant = mentions(&[
            "Automotive Slack Adjuster Market report by top players",
            "Global Automotive Slack Adjuster Market share",
            "Slack Adjuster Market 2019: growth and trends",
        ]);
        let relevant = mentions(&[
            "Slack stock rises after earnings",
            "Slack outage hits teams; the market shrugs",
            "Slack launches huddles",
        ]);
        let own = query_words("slack");
        let ranked = ranked_phrases(&irrelevant, &relevant, &own, &SuggestOptions::default());
        let clauses: Vec<(&str, SuggestionKind)> =
            ranked.iter().map(|s| (s.clause.as_str(), s.kind)).collect();
        assert_eq!(clauses[0], ("\"adjuster\"", SuggestionKind::Exclude), "{clauses:?}");
        assert!(clauses.contains(&("\"slack adjuster\"", SuggestionKind::Mask)), "{clauses:?}");
        assert!(clauses.contains(&("\"automotive\"", SuggestionKind::Exclude)), "{clauses:?}");
        let market = ranked.iter().position(|s| s.clause == "\"market\"").expect("market is a candidate");
        let adjuster = ranked.iter().position(|s| s.clause == "\"adjuster\"").unwrap();
        assert!(adjuster < market, "a word also in a relevant mention ranks lower");
        assert!(clauses.iter().all(|(c, _)| !c.contains("\"the") && *c != "\"slack\""), "{clauses:?}");
        assert!(
            !clauses.iter().any(|(c, _)| *c == "\"adjuster market\""),
            "a phrase in the same mentions as a word in it says nothing more: {clauses:?}"
        );
    }

    #[test]
    fn with_only_irrelevant_mentions_labelled_the_word_in_all_of_them_ranks_first() {
        let irrelevant = mentions(&[
            "Automotive Slack Adjuster Market report",
            "Slack Adjuster Market share by players",
            "Global Slack Adjuster outlook",
        ]);
        let ranked = ranked_phrases(&irrelevant, &[], &query_words("slack"), &SuggestOptions::default());
        assert_eq!(ranked[0].clause, "\"adjuster\"", "{ranked:?}");
        assert!(ranked.iter().all(|s| s.z.is_some_and(f64::is_finite)), "{ranked:?}");
    }

    #[test]
    fn a_draft_is_the_rule_with_the_suggestions_and_loads_as_a_rule() {
        let toml =
            "[[rule]]\nid = 'slack'\nname = 'Slack'\nquery = 'slack'\nexclude = 'wax'\nchannels = ['news']\n\
                    [[rule.example]]\ntext = 'Slack is down'\nexpect = 'match'\n";
        let loaded = cull_rules::load_files([(std::path::Path::new("r.toml"), toml.as_bytes())]);
        let rule = &loaded.rules[0].rule;
        let suggestion = |kind, clause: &str| Suggestion {
            kind,
            clause: clause.to_string(),
            irrelevant_with: 3,
            relevant_with: 0,
            z: Some(2.0),
            irrelevant_culled: 3,
            relevant_lost: 0,
            newly_culled: 4,
            newly_culled_ids: Vec::new(),
        };
        let mut unsafe_best = suggestion(SuggestionKind::Exclude, "\"market\"");
        unsafe_best.relevant_lost = 1;
        let found = |list: Vec<Suggestion>| Suggestions {
            rule_id: "slack".into(),
            irrelevant: 3,
            relevant: 2,
            unavailable: 0,
            matched: 5,
            suggestions: list,
        };
        let listed = found(vec![unsafe_best, suggestion(SuggestionKind::Exclude, "\"adjuster\"")]);
        let picked: Vec<&str> = listed.picks().iter().map(|s| s.clause.as_str()).collect();
        assert_eq!(picked, ["\"adjuster\""], "the best that loses nothing relevant");
        let exclude = suggestion(SuggestionKind::Exclude, "\"adjuster\"");
        let mask = suggestion(SuggestionKind::Mask, "\"slack adjuster\"");
        let author = suggestion(SuggestionKind::BlockAuthor, "author:\"spam bot\"");
        let draft = draft_toml(rule, &[&exclude, &mask, &author]);
        let reloaded = cull_rules::load_files([(std::path::Path::new("draft.toml"), draft.as_bytes())]);
        assert!(reloaded.errors.is_empty(), "{draft}\n{:?}", reloaded.errors);
        let again = &reloaded.rules[0].rule;
        assert_eq!(again.exclude.as_deref(), Some("((wax) OR \"adjuster\") OR author:\"spam bot\""));
        assert_eq!(again.mask, ["\"slack adjuster\""]);
        assert_eq!((again.query.as_str(), again.channels.len(), again.examples.len()), ("slack", 1, 1));
        assert!(draft.starts_with("# A draft of rule \"slack\" (r.toml:2)"), "{draft}");
        assert_eq!(author_clause("bad \"name"), None);
    }
}
