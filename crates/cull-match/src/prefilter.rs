//! Candidate selection: which rules could possibly match a mention.
//!
//! Every rule has anchor groups: folded literals such that any match contains at
//! least one literal of every group (see [`cull_rules::compiled::anchors`]). One
//! Aho-Corasick automaton holds the anchors of all rules; a mention's folded terms are
//! laid out as one haystack, `\0term\0term\0…\0`, so a whole-word anchor is the
//! pattern `\0term\0` and a prefix anchor is `\0stem`. One pass over the haystack
//! yields every anchor present; a rule is a candidate when each of its groups was hit,
//! and only candidates are verified. Rules without anchors (`site:example.com`) are
//! candidates for every mention.
//!
//! The haystack is built from analyzed terms rather than raw text so that the
//! prefilter sees exactly the words the verifier sees: no case, accent or word
//! boundary rule can make the prefilter miss a match that the verifier would find.
//!
//! Most brand rules are conjunctions of ORs of plain words (`slack (stock OR
//! shares)`, see [`cull_rules::plan::Plan::word_clauses`]). For those the groups are
//! the clauses themselves, counted only for hits in the title and text (the fields
//! the words search): all groups hit *is* the match, so such a rule is *proven* by the
//! prefilter and never verified. At hundreds of thousands of rules this is most of the
//! matching work saved.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use cull_rules::compiled::{Anchor, MAX_ANCHOR_GROUPS};
use cull_rules::CompiledRule;

use crate::verify::Document;
use crate::MatchError;

/// The Aho-Corasick automaton over every rule's anchors.
#[derive(Debug)]
pub struct Prefilter {
    automaton: AhoCorasick,
    /// The rules anchored on each pattern with the bit of the group it is in, all
    /// patterns' lists in one vector (`pattern_ends[p]` ends pattern `p`'s), so that a
    /// hit reads one contiguous run.
    rules_by_pattern: Vec<(u32, u8)>,
    pattern_ends: Vec<u32>,
    /// For each rule, the bits of all its groups: it is a candidate when all are hit.
    all_groups: Vec<u8>,
    /// For each rule, whether its groups are its word clauses (a candidate is a match
    /// and only title and text hits count), see the module documentation.
    proven: Vec<bool>,
    /// Rules that are candidates for every mention.
    unanchored: Vec<u32>,
}

/// Per-thread buffers reused from one mention to the next.
#[derive(Debug, Default)]
pub struct Scratch {
    haystack: Vec<u8>,
    /// The offset in `haystack` of the separator after the last term of the title
    /// and text: a hit starting before it is a hit in those fields.
    default_end: usize,
    /// For each rule, the number of the last mention that hit one of its anchors and
    /// the groups hit in that mention.
    hits: Vec<(u64, u8)>,
    mention_number: u64,
}

const SEPARATOR: u8 = 0;

impl Scratch {
    /// Lays out the folded terms of `doc` as the haystack the prefilters scan.
    pub fn prepare(&mut self, doc: &Document<'_>) {
        self.haystack.clear();
        self.haystack.push(SEPARATOR);
        let default_terms = doc.default_term_count();
        self.default_end = 0;
        for (i, term) in doc.folded_terms().enumerate() {
            self.haystack.extend_from_slice(term.as_bytes());
            if i + 1 == default_terms {
                self.default_end = self.haystack.len();
            }
            self.haystack.push(SEPARATOR);
        }
    }
}

impl Prefilter {
    /// Builds the automaton for `rules`, indexed by their position.
    pub fn new<'a>(rules: impl ExactSizeIterator<Item = Anchoring<'a>>) -> Result<Prefilter, MatchError> {
        let count = rules.len();
        let mut pattern_ids: HashMap<(&str, bool), usize> = HashMap::new();
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut rules_by_pattern: Vec<Vec<(u32, u8)>> = Vec::new();
        let mut all_groups = Vec::with_capacity(count);
        let mut unanchored = Vec::new();
        let mut proven = Vec::with_capacity(count);
        for (index, anchoring) in rules.enumerate() {
            let index = u32::try_from(index).map_err(|_| MatchError::TooManyRules { count })?;
            proven.push(matches!(anchoring, Anchoring::Proven(_)));
            let groups: Vec<Vec<(&str, bool)>> = match anchoring {
                Anchoring::Proven(clauses) => {
                    clauses.into_iter().map(|words| words.into_iter().map(|w| (w, false)).collect()).collect()
                }
                Anchoring::Verified(groups) => {
                    groups.iter().map(|g| g.iter().map(|a| (a.term.as_str(), a.prefix)).collect()).collect()
                }
                Anchoring::Everywhere => {
                    unanchored.push(index);
                    all_groups.push(0);
                    continue;
                }
            };
            all_groups.push(u8::MAX >> (8 - groups.len().min(MAX_ANCHOR_GROUPS)));
            for (group, anchors) in groups.iter().take(MAX_ANCHOR_GROUPS).enumerate() {
                let bit = 1u8 << group;
                for &(term, prefix) in anchors {
                    let id = *pattern_ids.entry((term, prefix)).or_insert_with(|| {
                        let mut pattern = Vec::with_capacity(term.len() + 2);
                        pattern.push(SEPARATOR);
                        pattern.extend_from_slice(term.as_bytes());
                        if !prefix {
                            pattern.push(SEPARATOR);
                        }
                        patterns.push(pattern);
                        rules_by_pattern.push(Vec::new());
                        patterns.len() - 1
                    });
                    match rules_by_pattern[id].last_mut() {
                        Some((rule, bits)) if *rule == index => *bits |= bit,
                        _ => rules_by_pattern[id].push((index, bit)),
                    }
                }
            }
        }
        let mut pattern_ends = Vec::with_capacity(rules_by_pattern.len());
        let mut flat = Vec::with_capacity(rules_by_pattern.iter().map(Vec::len).sum());
        for rules in rules_by_pattern {
            flat.extend(rules);
            pattern_ends
                .push(u32::try_from(flat.len()).map_err(|_| MatchError::TooManyRules { count: flat.len() })?);
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .map_err(|e| MatchError::Automaton(e.to_string()))?;
        Ok(Prefilter { automaton, rules_by_pattern: flat, pattern_ends, all_groups, proven, unanchored })
    }

    /// Returns the number of distinct anchor patterns.
    pub fn pattern_count(&self) -> usize {
        self.pattern_ends.len()
    }

    /// Returns whether rule `index` is a match whenever it is a candidate (see the
    /// module documentation).
    pub fn proves(&self, index: u32) -> bool {
        self.proven[index as usize]
    }

    /// Returns the number of rules verified against every mention.
    pub fn unanchored_count(&self) -> usize {
        self.unanchored.len()
    }

    /// Writes the indexes of the candidate rules for `doc` into `out`, in ascending
    /// order.
    pub fn candidates(&self, doc: &Document<'_>, scratch: &mut Scratch, out: &mut Vec<u32>) {
        scratch.prepare(doc);
        self.prepared_candidates(scratch, out);
    }

    /// As [`Prefilter::candidates`], for the document `scratch` was last prepared
    /// with ([`Scratch::prepare`]): several prefilters (a client's and the global
    /// one) scan one haystack built once.
    pub fn prepared_candidates(&self, scratch: &mut Scratch, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.unanchored);
        if self.pattern_ends.is_empty() {
            return;
        }
        scratch.hits.resize(self.all_groups.len(), (0, 0));
        scratch.mention_number += 1;
        let number = scratch.mention_number;
        let first_touched = out.len();
        for found in self.automaton.find_overlapping_iter(&scratch.haystack) {
            let pattern = found.pattern().as_usize();
            let start = pattern.checked_sub(1).map_or(0, |p| self.pattern_ends[p] as usize);
            let in_default_fields = found.start() < scratch.default_end;
            for &(rule, bits) in &self.rules_by_pattern[start..self.pattern_ends[pattern] as usize] {
                if !in_default_fields && self.proven[rule as usize] {
                    continue;
                }
                let hit = &mut scratch.hits[rule as usize];
                if hit.0 != number {
                    *hit = (number, 0);
                    out.push(rule);
                }
                hit.1 |= bits;
            }
        }
        // `out` holds every rule touched in this mention after the unanchored ones;
        // keep those whose groups were all hit.
        let mut kept = first_touched;
        for i in first_touched..out.len() {
            let rule = out[i] as usize;
            if scratch.hits[rule].1 == self.all_groups[rule] {
                out[kept] = out[i];
                kept += 1;
            }
        }
        out.truncate(kept);
        out.sort_unstable();
        out.dedup();
    }
}

/// How the prefilter selects one rule.
#[derive(Debug)]
pub enum Anchoring<'a> {
    /// Word clauses (see [`Plan::word_clauses`](cull_rules::plan::Plan::word_clauses)):
    /// a hit of every clause in the title or text is the match.
    Proven(Vec<Vec<&'a str>>),
    /// Anchor groups (see [`cull_rules::compiled::anchors`]): every match hits each
    /// group, and a candidate is verified.
    Verified(&'a [Vec<Anchor>]),
    /// No anchor: the rule is verified against every mention.
    Everywhere,
}

impl<'a> Anchoring<'a> {
    /// Returns how `rule` is selected: proven when its query is word clauses, no more
    /// than the prefilter tracks, and nothing else could cull it (exclusions, masks,
    /// channel or language filters).
    pub fn of(rule: &'a CompiledRule) -> Anchoring<'a> {
        let plain = rule.exclude.is_empty()
            && rule.masks.is_empty()
            && rule.channel_filter.is_none()
            && rule.lang_filter.is_none();
        match rule.query.word_clauses().filter(|clauses| plain && clauses.len() <= MAX_ANCHOR_GROUPS) {
            Some(clauses) => Anchoring::Proven(clauses),
            None => match rule.anchors.as_deref() {
                Some(groups) if !groups.is_empty() => Anchoring::Verified(groups),
                _ => Anchoring::Everywhere,
            },
        }
    }
}
