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

use aho_corasick::{AhoCorasick, MatchKind};
use cull_rules::compiled::{Anchor, MAX_ANCHOR_GROUPS};
use cull_rules::CompiledRule;
use hashbrown::HashMap;

use crate::verify::Document;
use crate::MatchError;

/// The Aho-Corasick automaton over every rule's anchors, and which rules each
/// anchor selects.
///
/// Each rule is posted under the literals of one group only, its *anchor group*: the
/// group whose literals the fewest rules share, which stands for the rarest in text.
/// A mention's distinct literals select the rules anchored on them; each selected rule
/// is then a candidate when each of its other groups has a literal in the mention,
/// checked against a bit set of the literals present. A mention thus touches the
/// rules of its rare words, not every rule sharing any of its words, which is what
/// keeps a million rules cheap.
#[derive(Debug)]
pub struct Prefilter {
    automaton: AhoCorasick,
    /// The rules anchored on each pattern, all patterns' lists in one vector
    /// (`anchor_ends[p]` ends pattern `p`'s), so that a pattern reads one run.
    anchored: Vec<u32>,
    anchor_ends: Vec<u32>,
    /// Each rule's other groups: pattern ids, the last of each group marked with
    /// [`LAST_IN_GROUP`]; `rest_ends[r]` ends rule `r`'s run.
    rest: Vec<u32>,
    rest_ends: Vec<u32>,
    /// For each rule, whether its groups are its word clauses (a candidate is a match
    /// and only title and text hits count), see the module documentation.
    proven: Vec<bool>,
    /// Rules that are candidates for every mention.
    unanchored: Vec<u32>,
}

/// Marks the last pattern of a group in [`Prefilter::rest`].
const LAST_IN_GROUP: u32 = 1 << 31;

/// Per-thread buffers reused from one mention to the next.
#[derive(Debug, Default)]
pub struct Scratch {
    haystack: Vec<u8>,
    /// The offset in `haystack` of the separator after the last term of the title
    /// and text: a hit starting before it is a hit in those fields.
    default_end: usize,
    /// The patterns present in the mention, anywhere and in the title or text, as bit
    /// sets by pattern id.
    present: Vec<u64>,
    present_in_default: Vec<u64>,
    /// The distinct patterns present, in the order first seen.
    seen: Vec<u32>,
    /// For each rule, the number of the last mention that selected it.
    selected: Vec<u32>,
    mention_number: u32,
}

const SEPARATOR: u8 = 0;

fn contains(bits: &[u64], pattern: u32) -> bool {
    bits[pattern as usize / 64] >> (pattern % 64) & 1 == 1
}

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
        let too_many = |count: usize| MatchError::TooManyRules { count };
        let mut pattern_ids: HashMap<(&str, bool), u32> = HashMap::new();
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        // How many rules each pattern is in, and every rule's groups as pattern ids
        // (the last of a group marked), before anchors are chosen.
        let mut rules_per_pattern: Vec<u32> = Vec::new();
        let mut groups: Vec<u32> = Vec::new();
        let mut group_ends: Vec<u32> = Vec::with_capacity(count);
        let mut proven = Vec::with_capacity(count);
        let mut unanchored = Vec::new();
        for (index, anchoring) in rules.enumerate() {
            let index = u32::try_from(index).map_err(|_| too_many(count))?;
            proven.push(matches!(anchoring, Anchoring::Proven(_)));
            let start = groups.len();
            let mut add_group = |literals: &mut dyn Iterator<Item = (&'a str, bool)>| {
                let first = groups.len();
                for (term, prefix) in literals {
                    let next = u32::try_from(patterns.len()).map_err(|_| too_many(patterns.len()))?;
                    let id = *pattern_ids.entry((term, prefix)).or_insert_with(|| {
                        let mut pattern = Vec::with_capacity(term.len() + 2);
                        pattern.push(SEPARATOR);
                        pattern.extend_from_slice(term.as_bytes());
                        if !prefix {
                            pattern.push(SEPARATOR);
                        }
                        patterns.push(pattern);
                        rules_per_pattern.push(0);
                        next
                    });
                    if !groups[first..].contains(&id) {
                        groups.push(id);
                        rules_per_pattern[id as usize] += 1;
                    }
                }
                // An empty group can never be hit: the rule is never a candidate.
                if groups.len() == first {
                    return Ok(false);
                }
                if let Some(last) = groups.last_mut() {
                    *last |= LAST_IN_GROUP;
                }
                Ok(true)
            };
            let complete = match anchoring {
                Anchoring::Proven(clauses) => {
                    let mut complete = true;
                    for clause in clauses {
                        complete &= add_group(&mut clause.into_iter().map(|w| (w, false)))?;
                    }
                    complete
                }
                Anchoring::Verified(anchor_groups) => {
                    let mut complete = true;
                    for group in anchor_groups {
                        complete &= add_group(&mut group.iter().map(|a| (a.term.as_str(), a.prefix)))?;
                    }
                    complete
                }
                Anchoring::Everywhere => {
                    unanchored.push(index);
                    true
                }
            };
            if !complete {
                groups.truncate(start);
            }
            group_ends.push(u32::try_from(groups.len()).map_err(|_| too_many(groups.len()))?);
        }
        // Each rule's anchor group is the one whose patterns the fewest rules share;
        // the postings are laid out by counting first, so no list per pattern is built.
        let runs = |ends: &[u32], rule: usize| {
            rule.checked_sub(1).map_or(0, |r| ends[r] as usize)..ends[rule] as usize
        };
        let mut anchor_groups: Vec<(usize, usize)> = Vec::with_capacity(count);
        let mut anchor_ends = vec![0u32; patterns.len()];
        for rule in 0..count {
            let run = &groups[runs(&group_ends, rule)];
            let mut best: Option<(u64, usize, usize)> = None;
            let mut first = 0;
            let mut weight = 0u64;
            for (i, &id) in run.iter().enumerate() {
                weight += u64::from(rules_per_pattern[(id & !LAST_IN_GROUP) as usize]);
                if id & LAST_IN_GROUP != 0 {
                    if best.is_none_or(|(w, _, _)| weight < w) {
                        best = Some((weight, first, i + 1));
                    }
                    first = i + 1;
                    weight = 0;
                }
            }
            let (from, to) = best.map_or((0, 0), |(_, from, to)| (from, to));
            for &id in &run[from..to] {
                anchor_ends[(id & !LAST_IN_GROUP) as usize] += 1;
            }
            anchor_groups.push((from, to));
        }
        let mut total = 0u32;
        for end in &mut anchor_ends {
            total = total.checked_add(*end).ok_or_else(|| too_many(total as usize))?;
            *end = total;
        }
        let mut fill = anchor_ends.clone();
        let mut anchored = vec![0u32; total as usize];
        let mut rest = Vec::with_capacity(groups.len().saturating_sub(total as usize));
        let mut rest_ends = Vec::with_capacity(count);
        for (rule, &(from, to)) in anchor_groups.iter().enumerate() {
            let run = &groups[runs(&group_ends, rule)];
            for &id in &run[from..to] {
                let slot = &mut fill[(id & !LAST_IN_GROUP) as usize];
                *slot -= 1;
                anchored[*slot as usize] = rule as u32;
            }
            rest.extend_from_slice(&run[..from]);
            rest.extend_from_slice(&run[to..]);
            rest_ends.push(u32::try_from(rest.len()).map_err(|_| too_many(rest.len()))?);
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .map_err(|e| MatchError::Automaton(e.to_string()))?;
        Ok(Prefilter { automaton, anchored, anchor_ends, rest, rest_ends, proven, unanchored })
    }

    /// Returns the number of distinct anchor patterns.
    pub fn pattern_count(&self) -> usize {
        self.anchor_ends.len()
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
        if self.anchor_ends.is_empty() {
            return;
        }
        let Scratch { haystack, default_end, present, present_in_default, seen, selected, mention_number } =
            scratch;
        let words = self.anchor_ends.len().div_ceil(64);
        for bits in [&mut *present, &mut *present_in_default] {
            bits.clear();
            bits.resize(words, 0);
        }
        seen.clear();
        for found in self.automaton.find_overlapping_iter(haystack.as_slice()) {
            let pattern = found.pattern().as_u32();
            let (word, bit) = (pattern as usize / 64, 1u64 << (pattern % 64));
            if present[word] & bit == 0 {
                present[word] |= bit;
                seen.push(pattern);
            }
            if found.start() < *default_end {
                present_in_default[word] |= bit;
            }
        }
        selected.resize(self.proven.len(), 0);
        if *mention_number == u32::MAX {
            selected.fill(0);
            *mention_number = 0;
        }
        *mention_number += 1;
        let number = *mention_number;
        for &pattern in seen.iter() {
            let in_default = contains(present_in_default, pattern);
            let start = (pattern as usize).checked_sub(1).map_or(0, |p| self.anchor_ends[p] as usize);
            for &rule in &self.anchored[start..self.anchor_ends[pattern as usize] as usize] {
                let proven = self.proven[rule as usize];
                if (proven && !in_default) || selected[rule as usize] == number {
                    continue;
                }
                selected[rule as usize] = number;
                let bits = if proven { &present_in_default[..] } else { &present[..] };
                if self.rest_is_hit(rule, bits) {
                    out.push(rule);
                }
            }
        }
        out.sort_unstable();
    }

    /// Returns whether each group of `rule` but its anchor group has a pattern in
    /// `bits`.
    fn rest_is_hit(&self, rule: u32, bits: &[u64]) -> bool {
        let start = (rule as usize).checked_sub(1).map_or(0, |r| self.rest_ends[r] as usize);
        let mut hit = false;
        for &id in &self.rest[start..self.rest_ends[rule as usize] as usize] {
            hit |= contains(bits, id & !LAST_IN_GROUP);
            if id & LAST_IN_GROUP != 0 {
                if !hit {
                    return false;
                }
                hit = false;
            }
        }
        true
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use cull_model::Mention;

    use super::*;

    #[test]
    fn candidates_stay_right_when_the_mention_numbers_wrap() {
        let pack = "[[rule]]\nid = 'a'\nquery = 'slack stock'\n\n[[rule]]\nid = 'b'\nquery = 'outage'\n";
        let loaded = cull_rules::load_files([(Path::new("t.toml"), pack.as_bytes())]);
        let prefilter = Prefilter::new(loaded.rules.iter().map(Anchoring::of)).expect("prefilter");
        let mut scratch = Scratch { mention_number: u32::MAX - 2, ..Scratch::default() };
        let mut out = Vec::new();
        let mut candidates = |text: &str| {
            let mention = Mention::new("m", text);
            prefilter.candidates(&Document::new(&mention), &mut scratch, &mut out);
            out.clone()
        };
        // Each rule is selected in every mention: a selection left from the mention
        // before would hide a candidate, or a stale number show one.
        for _ in 0..3 {
            assert_eq!(candidates("slack outage"), [1]);
            assert_eq!(candidates("stock outage"), [1]);
            assert_eq!(candidates("slack stock"), [0]);
        }
    }
}
