//! Candidate selection: which rules could possibly match a mention.
//!
//! Every rule has anchors, folded literals of which any match contains at least one
//! (see [`cull_rules::compiled::anchors`]). One Aho-Corasick automaton holds the
//! anchors of all rules; a mention's folded terms are laid out as one haystack,
//! `\0term\0term\0…\0`, so a whole-word anchor is the pattern `\0term\0` and a prefix
//! anchor is `\0stem`. One pass over the haystack yields every anchor present, and
//! so every candidate rule, whatever the number of rules; only candidates are
//! verified. Rules without anchors (`site:example.com`) are candidates for every
//! mention.
//!
//! The haystack is built from analyzed terms rather than raw text so that the
//! prefilter sees exactly the words the verifier sees: no case, accent or word
//! boundary rule can make the prefilter miss a match that the verifier would find.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use cull_rules::CompiledRule;

use crate::verify::Document;
use crate::MatchError;

/// The Aho-Corasick automaton over every rule's anchors.
#[derive(Debug)]
pub struct Prefilter {
    automaton: AhoCorasick,
    /// For each pattern, the indexes of the rules anchored on it.
    rules_by_pattern: Vec<Vec<u32>>,
    /// Rules that are candidates for every mention.
    unanchored: Vec<u32>,
    rule_count: usize,
}

/// Per-thread buffers reused from one mention to the next.
#[derive(Debug, Default)]
pub struct Scratch {
    haystack: Vec<u8>,
    /// For each rule, the number of the last mention it was a candidate for.
    seen: Vec<u64>,
    mention_number: u64,
}

const SEPARATOR: u8 = 0;

impl Prefilter {
    /// Builds the automaton for `rules`, indexed by their position in the slice.
    pub fn new(rules: &[CompiledRule]) -> Result<Prefilter, MatchError> {
        let mut pattern_ids: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut rules_by_pattern: Vec<Vec<u32>> = Vec::new();
        let mut unanchored = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let index = u32::try_from(index).map_err(|_| MatchError::TooManyRules { count: rules.len() })?;
            let Some(anchors) = &rule.anchors else {
                unanchored.push(index);
                continue;
            };
            for anchor in anchors {
                let mut pattern = Vec::with_capacity(anchor.term.len() + 2);
                pattern.push(SEPARATOR);
                pattern.extend_from_slice(anchor.term.as_bytes());
                if !anchor.prefix {
                    pattern.push(SEPARATOR);
                }
                let id = *pattern_ids.entry(pattern).or_insert_with_key(|pattern| {
                    patterns.push(pattern.clone());
                    rules_by_pattern.push(Vec::new());
                    patterns.len() - 1
                });
                if rules_by_pattern[id].last() != Some(&index) {
                    rules_by_pattern[id].push(index);
                }
            }
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .map_err(|e| MatchError::Automaton(e.to_string()))?;
        Ok(Prefilter { automaton, rules_by_pattern, unanchored, rule_count: rules.len() })
    }

    /// Returns the number of distinct anchor patterns.
    pub fn pattern_count(&self) -> usize {
        self.rules_by_pattern.len()
    }

    /// Returns the number of rules verified against every mention.
    pub fn unanchored_count(&self) -> usize {
        self.unanchored.len()
    }

    /// Writes the indexes of the candidate rules for `doc` into `out`, in ascending
    /// order.
    pub fn candidates(&self, doc: &Document<'_>, scratch: &mut Scratch, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.unanchored);
        if self.rules_by_pattern.is_empty() {
            return;
        }
        scratch.haystack.clear();
        scratch.haystack.push(SEPARATOR);
        for term in doc.folded_terms() {
            scratch.haystack.extend_from_slice(term.as_bytes());
            scratch.haystack.push(SEPARATOR);
        }
        scratch.seen.resize(self.rule_count, 0);
        scratch.mention_number += 1;
        let number = scratch.mention_number;
        for found in self.automaton.find_overlapping_iter(&scratch.haystack) {
            for &rule in &self.rules_by_pattern[found.pattern().as_usize()] {
                let seen = &mut scratch.seen[rule as usize];
                if *seen != number {
                    *seen = number;
                    out.push(rule);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}
