//! Candidate selection: which rules could possibly match a mention.
//!
//! Every rule has anchor groups: folded literals such that any match contains at
//! least one literal of every group (see [`cull_rules::compiled::anchors`]). A literal
//! is a whole word or a prefix. All rules' literals are numbered once, in a dictionary
//! of words and one of prefixes; a mention's folded terms are looked up there, each
//! term once as a word and once per distinct prefix length, which yields every literal
//! present as an integer. A rule is a candidate when each of its groups was hit, and
//! only candidates are verified. Rules without anchors (`site:example.com`) are
//! candidates for every mention.
//!
//! The lookups use the analyzed terms rather than raw text so that the prefilter sees
//! exactly the words the verifier sees: no case, accent or word boundary rule can
//! make the prefilter miss a match that the verifier would find. A hash lookup per term
//! replaced an Aho-Corasick scan of the terms laid end to end: a term is already a
//! whole word, so a scan would only rediscover the boundaries the analyzer found, and
//! it walked every byte where a lookup hashes each term once.
//!
//! Most brand rules are conjunctions of ORs of plain words (`slack (stock OR
//! shares)`, see [`cull_rules::plan::Plan::word_clauses`]). For those the groups are
//! the clauses themselves, counted only for hits in the title and text (the fields
//! the words search): all groups hit *is* the match, so such a rule is *proven* by the
//! prefilter and never verified, and its highlights are the occurrences the lookups
//! already found ([`Prefilter::proven_spans`]). At hundreds of thousands of rules this
//! is most of the matching work saved.

use std::ops::Range;

use cull_model::PackedStrings;
use cull_rules::compiled::{Anchor, MAX_ANCHOR_GROUPS};
use cull_rules::CompiledRule;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

use crate::verify::Document;
use crate::MatchError;

/// Every rule's literals, numbered, and which rules each selects; see the module
/// documentation.
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
    dictionary: Dictionary,
    /// The rules anchored on each literal, all literals' lists in one vector
    /// (`anchor_ends[p]` ends literal `p`'s), so that a literal reads one run.
    anchored: Vec<Posting>,
    anchor_ends: Vec<u32>,
    /// Each rule's groups as literal ids, its anchor group first, the last literal of
    /// each group marked with [`LAST_IN_GROUP`] and the last of the rule's with
    /// [`LAST_OF_RULE`]: `group_ends[r]` ends rule `r`'s run.
    groups: Vec<u32>,
    group_ends: Vec<u32>,
    /// For each rule, whether its groups are its word clauses (a candidate is a match
    /// and only title and text hits count), see the module documentation.
    proven: Vec<bool>,
    /// Rules that are candidates for every mention, ascending.
    unanchored: Vec<u32>,
    /// Literals of the dictionary that no rule has (left by [`Prefilter::rebuilt`]).
    unused_literals: usize,
}

/// Marks the last literal of a group in [`Prefilter::groups`].
const LAST_IN_GROUP: u32 = 1 << 31;
/// Marks the last literal of a rule's groups in [`Prefilter::groups`].
const LAST_OF_RULE: u32 = 1 << 30;
/// The bits of a literal id in [`Prefilter::groups`].
const LITERAL: u32 = LAST_OF_RULE - 1;

/// A rule anchored on a literal, with what deciding whether it is a candidate needs,
/// so that a rule the mention touches costs one read of its other groups (none when
/// it has one group) rather than a read of each of a million-long per-rule table.
#[derive(Debug, Clone, Copy)]
struct Posting {
    /// The rule, with [`PROVEN`] set when the prefilter proves it.
    rule: u32,
    /// Where the rule's groups start in [`Prefilter::groups`], which a proven rule's
    /// spans are found from.
    start: u32,
    /// Where the rule's groups after its anchor group start in
    /// [`Prefilter::groups`], or [`NO_REST`].
    rest: u32,
}

/// A rule a mention is a candidate for, with whether the prefilter proves it and where
/// its groups are: all that matching a proven rule reads besides its groups, so that
/// it costs no read of a million-long per-rule table (each a cache miss).
///
/// Candidates order as their rules do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Candidate(u64);

impl Candidate {
    /// Returns rule `rule` (with [`PROVEN`] set when proven) whose groups start at
    /// `start`.
    fn new(rule: u32, start: u32) -> Candidate {
        Candidate(u64::from(rule & !PROVEN) << 33 | u64::from(rule >> 31) << 32 | u64::from(start))
    }

    /// Returns the rule's index.
    pub fn rule(self) -> u32 {
        (self.0 >> 33) as u32
    }

    /// Returns whether the rule is a match whenever it is a candidate (see the module
    /// documentation).
    pub fn proven(self) -> bool {
        self.0 >> 32 & 1 == 1
    }

    fn start(self) -> usize {
        self.0 as u32 as usize
    }
}

/// Marks a proven rule in a [`Posting`].
const PROVEN: u32 = 1 << 31;
/// A [`Posting`]'s rule has no group but its anchor group.
const NO_REST: u32 = u32::MAX;
/// Ends a list of occurrences in [`Scratch`].
const NO_OCCURRENCE: u32 = u32::MAX;

/// The literals of a prefilter: their text, and a hash table of the words and one of
/// the prefixes, which map a term (or the start of one) to its literal id.
///
/// Hand-written over `hashbrown`'s raw table rather than a `HashMap<String, u32>` so
/// that the literals' text is one allocation and a lookup borrows the term's bytes.
#[derive(Debug, Default, Clone)]
struct Dictionary {
    /// Literal `p` is string `p`.
    literals: PackedStrings,
    words: HashTable<u32>,
    prefixes: HashTable<u32>,
    /// The distinct byte lengths of the prefixes, ascending: a term is looked up in
    /// `prefixes` once for each length it reaches.
    prefix_lengths: Vec<usize>,
    hasher: DefaultHashBuilder,
}

impl Dictionary {
    fn literal(&self, id: u32) -> &[u8] {
        self.literals.get(id as usize).as_bytes()
    }

    fn len(&self) -> usize {
        self.literals.len()
    }

    /// Returns the id of a literal, adding it when it is new.
    fn id(&mut self, term: &str, prefix: bool) -> Result<u32, MatchError> {
        let table = if prefix { &self.prefixes } else { &self.words };
        match self.find(table, term.as_bytes()) {
            Some(id) => Ok(id),
            None => self.add(term, prefix),
        }
    }

    /// Adds a literal of the next id, which must be new.
    fn add(&mut self, term: &str, prefix: bool) -> Result<u32, MatchError> {
        let count = self.literals.len();
        let id = u32::try_from(count)
            .ok()
            .filter(|&id| id <= LITERAL)
            .ok_or(MatchError::TooManyLiterals { count })?;
        self.literals.push(term);
        let Dictionary { literals, words, prefixes, prefix_lengths, hasher } = self;
        let literal = |id: &u32| hasher.hash_one(literals.get(*id as usize).as_bytes());
        let table = if prefix { prefixes } else { words };
        table.insert_unique(hasher.hash_one(term.as_bytes()), id, literal);
        if prefix {
            if let Err(at) = prefix_lengths.binary_search(&term.len()) {
                prefix_lengths.insert(at, term.len());
            }
        }
        Ok(id)
    }

    fn find(&self, table: &HashTable<u32>, bytes: &[u8]) -> Option<u32> {
        table.find(self.hasher.hash_one(bytes), |&id| self.literal(id) == bytes).copied()
    }

    /// Calls `hit` with the id of every literal that `term` is or starts with.
    fn for_each_literal(&self, term: &[u8], mut hit: impl FnMut(u32)) {
        if let Some(id) = self.find(&self.words, term) {
            hit(id);
        }
        for &len in self.prefix_lengths.iter().take_while(|&&len| len <= term.len()) {
            if let Some(id) = self.find(&self.prefixes, &term[..len]) {
                hit(id);
            }
        }
    }
}

/// Per-thread buffers reused from one mention to the next.
///
/// The vectors indexed by literal id are left as the last mention set them and reset
/// at the next one through `seen`, so that a mention costs its own literals, not a
/// sweep over a million rules' literals.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The literals present in the mention, anywhere and in the title or text, as bit
    /// sets by literal id.
    present: Vec<u64>,
    present_in_default: Vec<u64>,
    /// The distinct literals present, in the order first seen.
    seen: Vec<u32>,
    /// For each literal, its last occurrence in the title or text, an index into
    /// `occurrences`, or [`NO_OCCURRENCE`].
    last_occurrence: Vec<u32>,
    /// Occurrences in the title or text: the term's index among the document's folded
    /// terms, and the literal's previous occurrence.
    occurrences: Vec<(u32, u32)>,
}

fn contains(bits: &[u64], literal: u32) -> bool {
    bits[literal as usize / 64] >> (literal % 64) & 1 == 1
}

impl Scratch {
    /// Forgets the literals of the last mention and makes room for `literals` ids.
    fn reset(&mut self, literals: usize) {
        for &literal in &self.seen {
            let (word, bit) = (literal as usize / 64, 1u64 << (literal % 64));
            self.present[word] &= !bit;
            self.present_in_default[word] &= !bit;
            self.last_occurrence[literal as usize] = NO_OCCURRENCE;
        }
        self.seen.clear();
        self.occurrences.clear();
        let words = literals.div_ceil(64);
        if self.present.len() < words {
            self.present.resize(words, 0);
            self.present_in_default.resize(words, 0);
        }
        if self.last_occurrence.len() < literals {
            self.last_occurrence.resize(literals, NO_OCCURRENCE);
        }
    }

    /// Records that literal `id` occurs as term `term`, in the title or text when
    /// `in_default`.
    fn hit(&mut self, id: u32, term: u32, in_default: bool) {
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        if self.present[word] & bit == 0 {
            self.present[word] |= bit;
            self.seen.push(id);
        }
        if in_default {
            self.present_in_default[word] |= bit;
            let previous =
                std::mem::replace(&mut self.last_occurrence[id as usize], self.occurrences.len() as u32);
            self.occurrences.push((term, previous));
        }
    }
}

/// A prefilter being built: every rule's groups as literal ids (the last of a group
/// marked), before anchors are chosen.
#[derive(Debug, Default)]
struct Draft {
    dictionary: Dictionary,
    groups: Vec<u32>,
    group_ends: Vec<u32>,
    proven: Vec<bool>,
    unanchored: Vec<u32>,
}

impl Draft {
    fn rule_count(&self) -> usize {
        self.proven.len()
    }

    /// Ends the run of the rule last added.
    fn end_rule(&mut self) -> Result<(), MatchError> {
        let end = u32::try_from(self.groups.len())
            .map_err(|_| MatchError::TooManyRules { count: self.groups.len() })?;
        self.group_ends.push(end);
        Ok(())
    }

    /// Adds a rule selected as `anchoring` says.
    fn add(&mut self, anchoring: Anchoring<'_>) -> Result<(), MatchError> {
        let index = u32::try_from(self.rule_count())
            .map_err(|_| MatchError::TooManyRules { count: self.rule_count() })?;
        self.proven.push(matches!(anchoring, Anchoring::Proven(_)));
        let start = self.groups.len();
        let complete = match anchoring {
            Anchoring::Proven(clauses) => {
                let mut complete = true;
                for clause in clauses {
                    complete &= self.add_group(&mut clause.into_iter().map(|w| (w, false)))?;
                }
                complete
            }
            Anchoring::Verified(anchor_groups) => {
                let mut complete = true;
                for group in anchor_groups {
                    complete &= self.add_group(&mut group.iter().map(|a| (a.term.as_str(), a.prefix)))?;
                }
                complete
            }
            Anchoring::Everywhere => {
                self.unanchored.push(index);
                true
            }
        };
        if !complete {
            self.groups.truncate(start);
        }
        self.end_rule()
    }

    /// Adds a group of literals; returns false when it is empty, and can never be hit.
    fn add_group(&mut self, literals: &mut dyn Iterator<Item = (&str, bool)>) -> Result<bool, MatchError> {
        let first = self.groups.len();
        for (term, prefix) in literals {
            let id = self.dictionary.id(term, prefix)?;
            if !self.groups[first..].contains(&id) {
                self.groups.push(id);
            }
        }
        if self.groups.len() == first {
            return Ok(false);
        }
        if let Some(last) = self.groups.last_mut() {
            *last |= LAST_IN_GROUP;
        }
        Ok(true)
    }

    /// Adds rules `rules` of `old`, whose dictionary this draft's extends, as they
    /// were: a run of rules has one run of groups, copied whole, so that a reload
    /// keeping a million rules copies a hundred slices, not a million.
    fn keep(&mut self, old: &Prefilter, rules: Range<u32>) -> Result<(), MatchError> {
        if rules.is_empty() {
            return Ok(());
        }
        let first = self.rule_count();
        let unanchored = old.unanchored.partition_point(|&r| r < rules.start)
            ..old.unanchored.partition_point(|&r| r < rules.end);
        self.unanchored
            .extend(old.unanchored[unanchored].iter().map(|&r| (first + (r - rules.start) as usize) as u32));
        self.proven.extend_from_slice(&old.proven[rules.start as usize..rules.end as usize]);
        let from = run(&old.group_ends, rules.start as usize).start;
        let to = old.group_ends[rules.end as usize - 1] as usize;
        let at = self.groups.len();
        self.groups.extend_from_slice(&old.groups[from..to]);
        for &end in &old.group_ends[rules.start as usize..rules.end as usize] {
            let end = u32::try_from(at + (end as usize - from))
                .map_err(|_| MatchError::TooManyRules { count: self.groups.len() })?;
            self.group_ends.push(end);
        }
        Ok(())
    }

    /// Chooses each rule's anchor group, the one whose literals the fewest rules share,
    /// and lays out the postings, counting first so that no list per literal is built.
    fn finish(self) -> Result<Prefilter, MatchError> {
        let Draft { dictionary, groups, group_ends, proven, unanchored } = self;
        let count = proven.len();
        let too_many = |count: usize| MatchError::TooManyRules { count };
        let mut rules_per_literal = vec![0u32; dictionary.len()];
        for &id in &groups {
            rules_per_literal[(id & LITERAL) as usize] += 1;
        }
        let mut anchor_groups: Vec<(usize, usize)> = Vec::with_capacity(count);
        let mut anchor_ends = vec![0u32; dictionary.len()];
        for rule in 0..count {
            let run = &groups[run(&group_ends, rule)];
            let mut best: Option<(u64, usize, usize)> = None;
            let mut first = 0;
            let mut weight = 0u64;
            for (i, &id) in run.iter().enumerate() {
                weight += u64::from(rules_per_literal[(id & LITERAL) as usize]);
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
                anchor_ends[(id & LITERAL) as usize] += 1;
            }
            anchor_groups.push((from, to));
        }
        let mut total = 0u32;
        for end in &mut anchor_ends {
            total = total.checked_add(*end).ok_or_else(|| too_many(total as usize))?;
            *end = total;
        }
        let mut fill = anchor_ends.clone();
        let mut anchored = vec![Posting { rule: 0, start: 0, rest: NO_REST }; total as usize];
        let mut ordered: Vec<u32> = Vec::with_capacity(groups.len());
        for (rule, &(from, to)) in anchor_groups.iter().enumerate() {
            let run = &groups[run(&group_ends, rule)];
            let start = ordered.len();
            ordered.extend(run[from..to].iter().map(|&id| id & !LAST_OF_RULE));
            let rest = u32::try_from(ordered.len()).map_err(|_| too_many(count))?;
            ordered.extend(run[..from].iter().chain(&run[to..]).map(|&id| id & !LAST_OF_RULE));
            let rest = if ordered.len() == rest as usize { NO_REST } else { rest };
            if ordered.len() > start {
                *ordered.last_mut().expect("a group") |= LAST_OF_RULE;
            }
            let rule = rule as u32 | if proven[rule] { PROVEN } else { 0 };
            let start = start as u32;
            for &id in &run[from..to] {
                let slot = &mut fill[(id & LITERAL) as usize];
                *slot -= 1;
                anchored[*slot as usize] = Posting { rule, start, rest };
            }
        }
        let unused_literals = rules_per_literal.iter().filter(|&&rules| rules == 0).count();
        Ok(Prefilter {
            dictionary,
            anchored,
            anchor_ends,
            groups: ordered,
            group_ends,
            proven,
            unanchored,
            unused_literals,
        })
    }
}

impl Prefilter {
    /// Builds the prefilter for `rules`, indexed by their position.
    pub fn new<'a>(rules: impl Iterator<Item = Anchoring<'a>>) -> Result<Prefilter, MatchError> {
        let mut draft = Draft::default();
        for anchoring in rules {
            draft.add(anchoring)?;
        }
        draft.finish()
    }

    /// Returns the prefilter for the rules of this one in the index ranges `kept`, in
    /// that order, followed by `added`: the kept rules' literals are taken as they are,
    /// so that replacing one file of a large pack costs little more than that file.
    ///
    /// Literals only removed rules had stay in the dictionary, unused; `None` asks for
    /// a prefilter built anew ([`Prefilter::new`]) once they would be most of it.
    pub fn rebuilt<'a>(
        &self,
        kept: impl Iterator<Item = Range<u32>>,
        added: impl Iterator<Item = Anchoring<'a>>,
    ) -> Option<Result<Prefilter, MatchError>> {
        let mut draft = Draft { dictionary: self.dictionary.clone(), ..Draft::default() };
        let built = (|| {
            for rules in kept {
                draft.keep(self, rules)?;
            }
            for anchoring in added {
                draft.add(anchoring)?;
            }
            draft.finish()
        })();
        match built {
            Ok(prefilter) if prefilter.unused_literals * 2 > prefilter.pattern_count() => None,
            built => Some(built),
        }
    }

    /// Returns the number of distinct literals.
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

    /// Returns rule `rule` as a candidate.
    fn candidate(&self, rule: u32) -> Candidate {
        let start = run(&self.group_ends, rule as usize).start as u32;
        let proven = if self.proven[rule as usize] { PROVEN } else { 0 };
        Candidate::new(rule | proven, start)
    }

    /// Writes the indexes of the candidate rules for `doc` into `out`, in ascending
    /// order. `scratch` then holds the mention's literals for
    /// [`Prefilter::proven_spans`], until it is used for another mention or prefilter.
    pub fn candidates(&self, doc: &Document<'_>, scratch: &mut Scratch, out: &mut Vec<Candidate>) {
        out.clear();
        out.extend(self.unanchored.iter().map(|&rule| self.candidate(rule)));
        scratch.reset(self.anchor_ends.len());
        if self.anchor_ends.is_empty() {
            return;
        }
        let default_terms = doc.default_term_count();
        for (i, term) in doc.folded_terms().enumerate() {
            self.dictionary
                .for_each_literal(term.as_bytes(), |id| scratch.hit(id, i as u32, i < default_terms));
        }
        let Scratch { present, present_in_default, seen, .. } = scratch;
        for &literal in seen.iter() {
            let in_default = contains(present_in_default, literal);
            let start = (literal as usize).checked_sub(1).map_or(0, |p| self.anchor_ends[p] as usize);
            let postings = &self.anchored[start..self.anchor_ends[literal as usize] as usize];
            self.load_ahead(postings.iter().map(|posting| posting.rest).filter(|&rest| rest != NO_REST));
            for posting in postings {
                let proven = posting.rule & PROVEN != 0;
                if proven && !in_default {
                    continue;
                }
                let bits = if proven { &present_in_default[..] } else { &present[..] };
                if self.rest_is_hit(posting.rest, bits) {
                    out.push(Candidate::new(posting.rule, posting.start));
                }
            }
        }
        // A rule is selected once per literal of its anchor group the mention has; a
        // per-rule mark would cost a read and a write of a million-long table per
        // rule touched, where duplicates are rare and sorting finds them.
        out.sort_unstable();
        out.dedup();
    }

    /// Reads the first of the groups at each of `starts` and discards it, so that the
    /// loop that then reads them finds them cached.
    ///
    /// At a million rules, each rule's groups are a cache miss. Read where they are
    /// used, behind a branch on what was read before, the misses come one after
    /// another; read here, by a loop that decides nothing on them, the core has dozens
    /// in flight at once. (`std`'s prefetch intrinsic is `unsafe`; a load is not.)
    fn load_ahead(&self, starts: impl Iterator<Item = u32>) {
        let mut sum = 0u32;
        for start in starts {
            sum = sum.wrapping_add(self.groups[start as usize]);
        }
        std::hint::black_box(sum);
    }

    /// Loads ahead ([`Prefilter::load_ahead`]) the groups of the proven candidates
    /// among `candidates`, which [`Prefilter::proven_spans`] reads.
    pub fn load_proven_ahead(&self, candidates: &[Candidate]) {
        self.load_ahead(candidates.iter().filter(|c| c.proven()).map(|c| c.start() as u32));
    }

    /// Returns whether each group from `rest` to the end of its rule's groups has a
    /// literal in `bits`.
    fn rest_is_hit(&self, rest: u32, bits: &[u64]) -> bool {
        if rest == NO_REST {
            return true;
        }
        let mut hit = false;
        for &id in &self.groups[rest as usize..] {
            hit |= contains(bits, id & LITERAL);
            if id & LAST_IN_GROUP != 0 {
                if !hit {
                    return false;
                }
                if id & LAST_OF_RULE != 0 {
                    return true;
                }
                hit = false;
            }
        }
        true
    }

    /// Appends to `found` the occurrences in the title and text of the words of
    /// proven rule `rule` (field name and byte range, unsorted, possibly repeated), for
    /// the mention [`Prefilter::candidates`] last looked at with `scratch`: the spans
    /// [`spans`](crate::verify::spans) would give the rule's plan, found without the
    /// plan.
    pub fn proven_spans(
        &self,
        rule: Candidate,
        doc: &Document<'_>,
        scratch: &Scratch,
        found: &mut Vec<(&'static str, usize, usize)>,
    ) {
        for &id in &self.groups[rule.start()..] {
            let mut at = scratch.last_occurrence[(id & LITERAL) as usize];
            while let Some(&(term, previous)) = scratch.occurrences.get(at as usize) {
                found.push(doc.default_term_span(term as usize));
                at = previous;
            }
            if id & LAST_OF_RULE != 0 {
                break;
            }
        }
    }
}

/// Returns the range of rule `rule`'s run in a vector of runs ended by `ends`.
fn run(ends: &[u32], rule: usize) -> std::ops::Range<usize> {
    rule.checked_sub(1).map_or(0, |r| ends[r] as usize)..ends[rule] as usize
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
    fn words_and_prefixes_of_every_length_are_found_in_any_field() {
        let pack = "[[rule]]\nid = 'word'\nquery = 'slack'\n\n\
            [[rule]]\nid = 'stem'\nquery = 'slack*'\n\n\
            [[rule]]\nid = 'accented'\nquery = 'résum*'\n\n\
            [[rule]]\nid = 'long'\nquery = 'slackerishness*'\n\n\
            [[rule]]\nid = 'author'\nquery = 'author:reuters'\n";
        let loaded = cull_rules::load_files([(Path::new("t.toml"), pack.as_bytes())]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let prefilter = Prefilter::new(loaded.rules.iter().map(Anchoring::of)).expect("prefilter");
        let (mut scratch, mut out) = (Scratch::default(), Vec::new());
        let mut candidates = |title: Option<&str>, text: &str, author: Option<&str>| {
            let mention = Mention {
                title: title.map(str::to_string),
                author: author.map(str::to_string),
                ..Mention::new("m", text)
            };
            prefilter.candidates(&Document::new(&mention), &mut scratch, &mut out);
            out.iter().map(|c| c.rule()).collect::<Vec<u32>>()
        };
        assert_eq!(candidates(None, "Slack", None), [0, 1], "a prefix as long as the term");
        assert_eq!(candidates(None, "slackers", None), [1]);
        assert_eq!(candidates(None, "sla", None), [0u32; 0], "a term shorter than every prefix");
        assert_eq!(candidates(Some("Résumés"), "none", None), [2], "folded, in the title");
        assert_eq!(candidates(None, "a slackerishnesses b", None), [1, 3]);
        assert_eq!(candidates(None, "news", Some("Reuters")), [4], "words of other fields are looked up");
        assert_eq!(candidates(None, "news", None), [0u32; 0], "and forgotten at the next mention");
    }

    #[test]
    fn a_rule_is_a_candidate_once_and_its_groups_end_where_it_does() {
        let pack = "[[rule]]\nid = 'a'\nquery = 'slack stock'\n\n[[rule]]\nid = 'b'\nquery = 'outage'\n\n[[rule]]\nid = 'c'\nquery = '(slack OR zoom OR teams) (down OR outage)'\n";
        let loaded = cull_rules::load_files([(Path::new("t.toml"), pack.as_bytes())]);
        let prefilter = Prefilter::new(loaded.rules.iter().map(Anchoring::of)).expect("prefilter");
        let (mut scratch, mut out) = (Scratch::default(), Vec::new());
        let mut candidates = |text: &str| {
            let mention = Mention::new("m", text);
            prefilter.candidates(&Document::new(&mention), &mut scratch, &mut out);
            out.iter().map(|c| c.rule()).collect::<Vec<u32>>()
        };
        for _ in 0..2 {
            // Rule a's groups are followed by rule b's, which the mention lacks.
            assert_eq!(candidates("slack stock"), [0]);
            assert_eq!(candidates("slack outage"), [1, 2]);
            assert_eq!(candidates("slack zoom teams down outage"), [1, 2], "each rule once");
            assert_eq!(candidates("stock outage"), [1]);
        }
        // Each candidate carries where its own groups are: rule c's spans are its words,
        // not those of the rules laid out next to it.
        let mention = Mention::new("m", "slack stock outage");
        let doc = Document::new(&mention);
        prefilter.candidates(&doc, &mut scratch, &mut out);
        let spans = |candidate: &Candidate| {
            let mut found = Vec::new();
            prefilter.proven_spans(*candidate, &doc, &scratch, &mut found);
            found.sort();
            (candidate.rule(), candidate.proven(), found)
        };
        assert_eq!(
            out.iter().map(spans).collect::<Vec<_>>(),
            [
                (0, true, vec![("text", 0, 5), ("text", 6, 11)]),
                (1, true, vec![("text", 12, 18)]),
                (2, true, vec![("text", 0, 5), ("text", 12, 18)]),
            ]
        );
    }
}
