//! Native verification of plans: whether a [`Plan`] matches one mention, and where.
//!
//! A plan means what a search of a Tantivy index holding the mention means (see the
//! design's "The semantics are Tantivy's"). Building a one-document index per mention
//! would cost far more than the matcher's budget, so this module reproduces the
//! meaning directly: a [`Document`] analyzes a mention once into sorted term tables,
//! the same postings Tantivy would read, and [`matches()`] evaluates plans against them.
//! Sloppy phrases, which the compiler allows only with two words, run Tantivy's own
//! comparison of their positions.
//!
//! Masks hide occurrences rather than documents, which a Tantivy query cannot
//! express: a [`Hidden`] set of positions makes every token standing there absent, and
//! every evaluation takes one (empty when the rule has no masks), so there is a single
//! evaluator whatever the masking.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::ops::ControlFlow;

use cull_model::analyzer::{for_each_token_with, Form, Mode, TokenBuffers};
use cull_model::{Mention, Span};
use cull_rules::plan::{keyword_values, text_value, Field, Plan, Sequence, Word};
use cull_rules::Mask;

#[cfg(test)]
mod tests;

/// The text fields, in the order of their slots in the token tables.
const TEXT_FIELDS: [Field; 4] = [Field::Title, Field::Text, Field::Author, Field::Url];

/// Returns the slot of a text field in the token tables and in [`Hidden`].
fn text_slot(field: Field) -> Option<usize> {
    match field {
        Field::Title => Some(0),
        Field::Text => Some(1),
        Field::Author => Some(2),
        Field::Url => Some(3),
        Field::Site | Field::Lang | Field::Channel | Field::Source => None,
    }
}

/// Returns the slot of a keyword field in the document's keyword cache.
fn keyword_slot(field: Field) -> Option<usize> {
    match field {
        Field::Site => Some(0),
        Field::Lang => Some(1),
        Field::Channel => Some(2),
        Field::Source => Some(3),
        Field::Title | Field::Text | Field::Author | Field::Url => None,
    }
}

/// Returns the ordering key of a term, see [`Entry::key`].
fn key_of(term: &[u8]) -> u64 {
    // Without a copy of a variable length: that is a call to `memcpy` per token.
    match term.first_chunk::<8>() {
        Some(first) => u64::from_be_bytes(*first),
        None => term.iter().enumerate().fold(0, |key, (i, &b)| key | u64::from(b) << (56 - 8 * i)),
    }
}

/// One token of a field: where its term lies in the arena, its position and the bytes
/// of the field's text it came from.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The first eight bytes of the term, big-endian, zero-padded: comparing keys
    /// orders terms as their bytes do (terms hold no NUL), so sorting and searching
    /// compare integers and fall back to the bytes only between equal keys.
    key: u64,
    term_start: usize,
    term_end: usize,
    position: u32,
    start: usize,
    end: usize,
}

/// The tokens of the four text fields in one form, laid out for lookups.
///
/// Terms live in one string (in emission order) rather than one allocation each.
/// Lookups read the entries sorted per field by (term bytes, position), which is the
/// order of Tantivy's term dictionary and postings: the entries of a term, or of every
/// term with a given prefix, form one contiguous run found by binary search, and
/// within a term the positions are sorted. That order is made on the first lookup,
/// because a mention whose candidates the prefilter proves (most, in brand
/// monitoring) is never looked up and needs only the terms in emission order.
#[derive(Debug, Default)]
struct Tokens {
    arena: String,
    /// Every token in emission order: field by field, in position order.
    entries: Vec<Entry>,
    /// The range of `entries` (sorted or not) holding each text field, by slot.
    fields: [(usize, usize); 4],
    sorted: OnceCell<Vec<Entry>>,
    /// The vector `sorted` is made in, until it is.
    spare: RefCell<Vec<Entry>>,
}

impl Tokens {
    /// Replaces the tokens with those of the text fields of `mention` in `form`, as the
    /// index analyzes them, reusing the vectors.
    fn fill(&mut self, mention: &Mention, form: Form, buffers: &mut TokenBuffers) {
        let tokens = self;
        if let Some(sorted) = tokens.sorted.take() {
            tokens.spare.replace(sorted);
        }
        tokens.arena.clear();
        tokens.entries.clear();
        for (slot, field) in TEXT_FIELDS.into_iter().enumerate() {
            let first = tokens.entries.len();
            if let Some(text) = text_value(mention, field) {
                for_each_token_with(text, form, Mode::Index, buffers, |token| {
                    let term_start = tokens.arena.len();
                    tokens.arena.push_str(token.term);
                    tokens.entries.push(Entry {
                        key: key_of(token.term.as_bytes()),
                        term_start,
                        term_end: tokens.arena.len(),
                        position: token.position,
                        start: token.start,
                        end: token.end,
                    });
                });
            }
            tokens.fields[slot] = (first, tokens.entries.len());
        }
    }

    fn term(&self, entry: &Entry) -> &[u8] {
        &self.arena.as_bytes()[entry.term_start..entry.term_end]
    }

    /// Returns the entries sorted for lookups, sorting them on the first call.
    fn sorted(&self) -> &[Entry] {
        self.sorted.get_or_init(|| {
            let mut sorted = self.spare.take();
            sorted.clear();
            sorted.extend_from_slice(&self.entries);
            for &(first, end) in &self.fields {
                sorted[first..end].sort_unstable_by(|a, b| {
                    a.key
                        .cmp(&b.key)
                        .then_with(|| self.term(a).cmp(self.term(b)))
                        .then(a.position.cmp(&b.position))
                });
            }
            sorted
        })
    }

    /// Returns the entries of field `slot` whose term is `term`, or starts with it when
    /// `prefix` is true; sorted by position within each term.
    fn lookup(&self, slot: usize, term: &str, prefix: bool) -> &[Entry] {
        let (first, end) = self.fields[slot];
        let entries = &self.sorted()[first..end];
        let term = term.as_bytes();
        let key = key_of(term);
        let from = entries.partition_point(|e| e.key < key || (e.key == key && self.term(e) < term));
        let rest = &entries[from..];
        let len = if prefix {
            rest.partition_point(|e| self.term(e).starts_with(term))
        } else {
            rest.partition_point(|e| e.key == key && self.term(e) == term)
        };
        &rest[..len]
    }

    /// Returns the terms in emission order: field by field, in position order.
    fn terms(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| &self.arena[entry.term_start..entry.term_end])
    }
}

/// Vectors reused across evaluations, so that proximity, sloppy phrases and spans
/// allocate nothing once grown.
#[derive(Debug, Default)]
struct Scratch {
    left_spans: Vec<(u32, u32)>,
    right_spans: Vec<(u32, u32)>,
    left_positions: Vec<u32>,
    right_positions: Vec<u32>,
    found: Vec<(&'static str, usize, usize)>,
}

/// The vectors of a [`Document`], handed from one mention to the next
/// ([`Document::reusing`], [`Document::recycle`]) so that analyzing and verifying a
/// mention allocates nothing once they have grown to the longest mention.
#[derive(Debug, Default)]
pub struct DocumentBuffers {
    folded: Tokens,
    exact: Tokens,
    analyzer: TokenBuffers,
    scratch: Scratch,
}

/// An analyzed view of one mention, built once and evaluated against many plans.
///
/// The folded tokens of every text field are computed up front because nearly every
/// plan and the prefilter read them; the exact tokens and the keyword values are
/// computed on first use, since most plans never ask for them. Tokens are produced in
/// [`Mode::Index`] by the shared analyzer, exactly as the index receives them, so a
/// hashtag is found both as `#slack` and as `slack`.
///
/// A document is meant for one thread: it caches lazily and keeps scratch buffers.
#[derive(Debug)]
pub struct Document<'m> {
    mention: &'m Mention,
    folded: Tokens,
    exact: OnceCell<Tokens>,
    /// The vectors the exact tokens are built in, until they are.
    spare_exact: RefCell<Tokens>,
    analyzer: RefCell<TokenBuffers>,
    keywords: [OnceCell<Vec<String>>; 4],
    scratch: RefCell<Scratch>,
}

/// A place where a sequence occurs: its first and last positions and the bytes from the
/// start of its first word to the end of its last.
#[derive(Debug, Clone, Copy)]
struct Occurrence {
    first: u32,
    last: u32,
    start: usize,
    end: usize,
}

impl Occurrence {
    fn of(entry: &Entry) -> Occurrence {
        Occurrence { first: entry.position, last: entry.position, start: entry.start, end: entry.end }
    }

    fn extend(&mut self, entry: &Entry) {
        self.first = self.first.min(entry.position);
        self.last = self.last.max(entry.position);
        self.start = self.start.min(entry.start);
        self.end = self.end.max(entry.end);
    }
}

impl<'m> Document<'m> {
    /// Analyzes the folded form of every text field of `mention`.
    pub fn new(mention: &'m Mention) -> Document<'m> {
        Document::reusing(mention, DocumentBuffers::default())
    }

    /// As [`Document::new`], in the vectors of a recycled document.
    pub fn reusing(mention: &'m Mention, buffers: DocumentBuffers) -> Document<'m> {
        let DocumentBuffers { mut folded, exact, mut analyzer, scratch } = buffers;
        folded.fill(mention, Form::Folded, &mut analyzer);
        Document {
            mention,
            folded,
            exact: OnceCell::new(),
            spare_exact: RefCell::new(exact),
            analyzer: RefCell::new(analyzer),
            keywords: Default::default(),
            scratch: RefCell::new(scratch),
        }
    }

    /// Returns the document's vectors, for the next mention's [`Document::reusing`].
    pub fn recycle(self) -> DocumentBuffers {
        DocumentBuffers {
            folded: self.folded,
            exact: self.exact.into_inner().unwrap_or_else(|| self.spare_exact.into_inner()),
            analyzer: self.analyzer.into_inner(),
            scratch: self.scratch.into_inner(),
        }
    }

    /// Returns the mention this document was built from.
    pub fn mention(&self) -> &'m Mention {
        self.mention
    }

    /// Returns the folded terms of the title, text, author and URL, field by field and
    /// in position order within a field (a hashtag yields `#tag` then `tag`).
    ///
    /// These are the terms the prefilter scans, so that a prefilter hit and a verifier
    /// lookup see the same words.
    pub fn folded_terms(&self) -> impl Iterator<Item = &str> {
        self.folded.terms()
    }

    /// Returns how many of [`Document::folded_terms`] come from the title and text,
    /// the fields an unscoped word searches: they come first.
    pub fn default_term_count(&self) -> usize {
        self.folded.fields[1].1
    }

    /// Returns the field name and byte range of term `index` of
    /// [`Document::folded_terms`], which must be one of the title's or the text's.
    pub fn default_term_span(&self, index: usize) -> (&'static str, usize, usize) {
        let field = if index < self.folded.fields[0].1 { Field::Title } else { Field::Text };
        let entry = &self.folded.entries[index];
        (field.name(), entry.start, entry.end)
    }

    /// Returns the set of positions covered by any occurrence of any of `sequences`:
    /// every position from the first to the last word of each occurrence, in the
    /// sequence's field.
    ///
    /// Evaluating a plan with this set ([`matches()`], [`spans`]) treats the tokens at
    /// those positions as absent, in both forms, which is how a rule's `mask` entries
    /// make "Family Connections Magazine" invisible to "connections magazine".
    pub fn hide<'s>(&self, sequences: impl IntoIterator<Item = &'s Sequence>) -> Hidden {
        let mut hidden = Hidden::NONE;
        for sequence in sequences {
            if let Some(slot) = text_slot(sequence.field.field) {
                let _ = self.occurrences(sequence, &Hidden::NONE, |occurrence| {
                    hidden.insert(slot, occurrence.first, occurrence.last);
                    ControlFlow::<()>::Continue(())
                });
            }
        }
        hidden
    }

    fn tokens(&self, form: Form) -> &Tokens {
        match form {
            Form::Folded => &self.folded,
            Form::Exact => self.exact.get_or_init(|| {
                let mut tokens = self.spare_exact.take();
                tokens.fill(self.mention, Form::Exact, &mut self.analyzer.borrow_mut());
                tokens
            }),
        }
    }

    /// Returns the terms of a keyword field; none for text fields.
    fn keywords(&self, field: Field) -> &[String] {
        match keyword_slot(field) {
            Some(slot) => self.keywords[slot].get_or_init(|| keyword_values(self.mention, field)),
            None => &[],
        }
    }

    /// Calls `visit` for every visible occurrence of `sequence`, until it breaks.
    ///
    /// An occurrence needs every word at its position relative to the first word (a
    /// term at that position, visible); a single word with `prefix` stands for every
    /// term that starts with it.
    fn occurrences<B>(
        &self,
        sequence: &Sequence,
        hidden: &Hidden,
        mut visit: impl FnMut(Occurrence) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let Some(slot) = text_slot(sequence.field.field) else {
            return ControlFlow::Continue(());
        };
        let Some((head, tail)) = sequence.words.split_first() else {
            return ControlFlow::Continue(());
        };
        let tokens = self.tokens(sequence.field.form);
        let prefix = sequence.prefix && tail.is_empty();
        for entry in tokens.lookup(slot, &head.term, prefix) {
            if hidden.contains(slot, entry.position) {
                continue;
            }
            let mut occurrence = Occurrence::of(entry);
            let complete = tail.iter().all(|word| {
                let found = relative_position(entry.position, head, word)
                    .filter(|&position| !hidden.contains(slot, position))
                    .and_then(|position| {
                        let entries = tokens.lookup(slot, &word.term, false);
                        let at = entries.partition_point(|e| e.position < position);
                        entries.get(at).filter(|e| e.position == position)
                    });
                found.map(|e| occurrence.extend(e)).is_some()
            });
            if complete {
                visit(occurrence)?;
            }
        }
        ControlFlow::Continue(())
    }

    fn occurs(&self, sequence: &Sequence, hidden: &Hidden) -> bool {
        self.occurrences(sequence, hidden, |_| ControlFlow::Break(())).is_break()
    }

    /// Evaluates `"a b"~slop` as Tantivy's `PhraseQuery` with scoring disabled; a plan
    /// without exactly two words, which the compiler never produces, matches nothing.
    fn sloppy_phrase(&self, sequence: &Sequence, slop: u32, hidden: &Hidden) -> bool {
        let (Some(slot), [first, second]) = (text_slot(sequence.field.field), sequence.words.as_slice())
        else {
            return false;
        };
        let tokens = self.tokens(sequence.field.form);
        let max_offset = first.offset.max(second.offset);
        let aligned = |word: &Word, positions: &mut Vec<u32>| {
            positions.clear();
            positions.extend(
                tokens
                    .lookup(slot, &word.term, false)
                    .iter()
                    .filter(|e| !hidden.contains(slot, e.position))
                    .map(|e| e.position.saturating_add(max_offset - word.offset)),
            );
        };
        let mut scratch = self.scratch.borrow_mut();
        let Scratch { left_positions, right_positions, .. } = &mut *scratch;
        aligned(first, left_positions);
        aligned(second, right_positions);
        intersection_exists_with_slop(left_positions, right_positions, slop)
    }

    /// Evaluates `left NEAR/distance right` (or `ONEAR` when `ordered`).
    fn near(
        &self,
        left: &[Sequence],
        right: &[Sequence],
        distance: u32,
        ordered: bool,
        hidden: &Hidden,
    ) -> bool {
        let mut scratch = self.scratch.borrow_mut();
        let Scratch { left_spans, right_spans, .. } = &mut *scratch;
        self.collect_spans(left, hidden, left_spans);
        self.collect_spans(right, hidden, right_spans);
        within(left_spans, right_spans, distance) || (!ordered && within(right_spans, left_spans, distance))
    }

    /// Returns the fewest words between a visible occurrence of `left` and a later one
    /// of `right`, and between a `right` and a later `left` (`None` where no such pair
    /// exists): what a `NEAR/n` clause would need as `n`, for explanations.
    pub fn near_gaps(
        &self,
        left: &[Sequence],
        right: &[Sequence],
        hidden: &Hidden,
    ) -> (Option<u32>, Option<u32>) {
        let mut scratch = self.scratch.borrow_mut();
        let Scratch { left_spans, right_spans, .. } = &mut *scratch;
        self.collect_spans(left, hidden, left_spans);
        self.collect_spans(right, hidden, right_spans);
        (fewest_between(left_spans, right_spans), fewest_between(right_spans, left_spans))
    }

    /// Replaces `spans` with the (first, last) positions of every visible occurrence of
    /// any of `alternatives`, sorted.
    fn collect_spans(&self, alternatives: &[Sequence], hidden: &Hidden, spans: &mut Vec<(u32, u32)>) {
        spans.clear();
        for sequence in alternatives {
            let _ = self.occurrences(sequence, hidden, |occurrence| {
                spans.push((occurrence.first, occurrence.last));
                ControlFlow::<()>::Continue(())
            });
        }
        spans.sort_unstable();
    }
}

/// Returns the position of `word` in an occurrence whose first word `head` stands at
/// `position`, if it is a valid position.
///
/// Only offset differences matter, as in Tantivy, which aligns terms on the largest
/// offset rather than on a start.
fn relative_position(position: u32, head: &Word, word: &Word) -> Option<u32> {
    let target = i64::from(position) + i64::from(word.offset) - i64::from(head.offset);
    u32::try_from(target).ok()
}

/// Returns whether some position of `left` is at most `slop` away from some position
/// of `right`, in either order; both are sorted.
///
/// This is how Tantivy decides a two-term sloppy phrase when scoring is disabled (the
/// path of a filter such as a rule). Each list holds a word's positions shifted by
/// `max_offset - offset`, as Tantivy's `PostingsWithOffset` does, so that the two words
/// of an exact occurrence share one aligned position. The distance between aligned
/// positions is then the slop spent, whichever word comes first: a swapped pair costs
/// 2, and a term that both words repeat can serve as both within a slop of their
/// offset difference.
///
/// Taken from `tantivy-0.25.0/src/query/phrase_query/phrase_scorer.rs` (Copyright (c)
/// 2018 by the project authors, as listed in the AUTHORS file; MIT license), unchanged.
fn intersection_exists_with_slop(left_positions: &[u32], right_positions: &[u32], slop: u32) -> bool {
    let mut left_index = 0;
    let mut right_index = 0;
    let left_len = left_positions.len();
    let right_len = right_positions.len();
    while left_index < left_len && right_index < right_len {
        let left_val = left_positions[left_index];
        let right_val = right_positions[right_index];
        let distance = left_val.abs_diff(right_val);
        if distance <= slop {
            return true;
        } else if left_val < right_val {
            left_index += 1;
        } else {
            right_index += 1;
        }
    }
    false
}

/// Returns whether some span of `first` ends before some span of `second` starts with
/// at most `distance` positions between them; `second` is sorted by start.
///
/// For each span of `first` the nearest following start is the best candidate, so one
/// binary search per span suffices; overlapping or touching spans never count.
fn within(first: &[(u32, u32)], second: &[(u32, u32)], distance: u32) -> bool {
    first.iter().any(|&(_, end)| {
        let next = second.partition_point(|&(start, _)| start <= end);
        second.get(next).is_some_and(|&(start, _)| start - end - 1 <= distance)
    })
}

/// Returns the fewest positions between a span of `first` and a later span of
/// `second` (sorted by start), as [`within`] counts them.
fn fewest_between(first: &[(u32, u32)], second: &[(u32, u32)]) -> Option<u32> {
    first
        .iter()
        .filter_map(|&(_, end)| {
            let next = second.partition_point(|&(start, _)| start <= end);
            second.get(next).map(|&(start, _)| start - end - 1)
        })
        .min()
}

/// Positions whose tokens are treated as absent, per text field.
///
/// Built by [`Document::hide`] from a rule's masks; [`Hidden::NONE`] hides nothing.
/// Positions are kept as one bit set per field, so a lookup is a shift and a mask.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hidden {
    bits: [Vec<u64>; 4],
}

impl Hidden {
    /// The empty set, for evaluating without masks.
    pub const NONE: Hidden = Hidden { bits: [Vec::new(), Vec::new(), Vec::new(), Vec::new()] };

    /// Returns true when no position is hidden.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|words| words.iter().all(|&w| w == 0))
    }

    fn contains(&self, slot: usize, position: u32) -> bool {
        let position = position as usize;
        self.bits[slot].get(position / 64).is_some_and(|word| word >> (position % 64) & 1 == 1)
    }

    fn insert(&mut self, slot: usize, first: u32, last: u32) {
        let words = &mut self.bits[slot];
        for position in first as usize..=last as usize {
            if words.len() <= position / 64 {
                words.resize(position / 64 + 1, 0);
            }
            words[position / 64] |= 1 << (position % 64);
        }
    }
}

/// Returns whether `plan` matches the document, with the positions in `hidden` treated
/// as empty.
///
/// This is the meaning of the plan compiled to Tantivy and searched with scoring
/// disabled. As in a Tantivy `BooleanQuery`, an `And` without `must` clauses and an
/// empty `Or` match nothing.
pub fn matches(plan: &Plan, doc: &Document<'_>, hidden: &Hidden) -> bool {
    match plan {
        Plan::Sequence(sequence) => doc.occurs(sequence, hidden),
        Plan::SloppyPhrase { sequence, slop } => doc.sloppy_phrase(sequence, *slop, hidden),
        Plan::Near { left, right, distance, ordered } => doc.near(left, right, *distance, *ordered, hidden),
        Plan::Keyword { field, value } => doc.keywords(*field).iter().any(|v| v == value),
        Plan::Missing(field) => doc.keywords(*field).is_empty(),
        Plan::And { must, must_not } => {
            !must.is_empty()
                && must.iter().all(|p| matches(p, doc, hidden))
                && !must_not.iter().any(|p| matches(p, doc, hidden))
        }
        Plan::Or(any) => any.iter().any(|p| matches(p, doc, hidden)),
    }
}

/// Returns the byte spans to highlight for `plan`: sorted by field name then offset,
/// with overlapping or adjacent spans of a field merged.
///
/// Every positive leaf (the sequences [`Plan::for_each_positive_sequence`] visits)
/// contributes each visible occurrence, from the first byte of its first word to the
/// last byte of its last word. Occurrences of a sloppy phrase or a proximity operand
/// are not phrases, so those leaves contribute, when they match, the occurrences of
/// their words (of their operands' alternatives).
pub fn spans(plan: &Plan, doc: &Document<'_>, hidden: &Hidden) -> Vec<Span> {
    let mut merged = Vec::new();
    spans_into(plan, doc, hidden, &mut merged);
    merged
}

/// As [`spans`], appending to `out`: allocates nothing once `out` and the document's
/// buffers have grown.
pub fn spans_into(plan: &Plan, doc: &Document<'_>, hidden: &Hidden, out: &mut Vec<Span>) {
    let mut found = std::mem::take(&mut doc.scratch.borrow_mut().found);
    found.clear();
    positive_spans(plan, doc, hidden, &mut found);
    merge_into(found, doc, out);
}

/// Gives `found` back to the document's scratch after [`merge_spans`].
fn merge_into(mut found: Vec<(&'static str, usize, usize)>, doc: &Document<'_>, out: &mut Vec<Span>) {
    merge_spans(&mut found, out);
    doc.scratch.borrow_mut().found = found;
}

/// Sorts the spans `found` (field name and byte range) by field name, then offsets, and
/// appends them to `out` with the overlapping or adjacent spans of a field merged: the
/// form of [`spans`].
pub fn merge_spans(found: &mut [(&'static str, usize, usize)], out: &mut Vec<Span>) {
    found.sort_unstable();
    let first = out.len();
    for &(field, start, end) in found.iter() {
        match out[first..].last_mut() {
            Some(last) if last.field == field && start <= last.end => last.end = last.end.max(end),
            _ => out.push(Span { field: Cow::Borrowed(field), start, end }),
        }
    }
}

fn positive_spans(
    plan: &Plan,
    doc: &Document<'_>,
    hidden: &Hidden,
    found: &mut Vec<(&'static str, usize, usize)>,
) {
    let mut add = |sequence: &Sequence| {
        let field = sequence.field.field.name();
        let _ = doc.occurrences(sequence, hidden, |occurrence| {
            found.push((field, occurrence.start, occurrence.end));
            ControlFlow::<()>::Continue(())
        });
    };
    match plan {
        Plan::Sequence(sequence) => add(sequence),
        Plan::SloppyPhrase { sequence, .. } => {
            if matches(plan, doc, hidden) {
                for word in &sequence.words {
                    add(&Sequence { field: sequence.field, words: vec![word.clone()], prefix: false });
                }
            }
        }
        Plan::Near { left, right, .. } => {
            if matches(plan, doc, hidden) {
                left.iter().chain(right).for_each(add);
            }
        }
        Plan::Keyword { .. } | Plan::Missing(_) => {}
        Plan::And { must, .. } => must.iter().for_each(|p| positive_spans(p, doc, hidden, found)),
        Plan::Or(any) => any.iter().for_each(|p| positive_spans(p, doc, hidden, found)),
    }
}

/// Returns the index of the first of `masks` that occurs in the document, to say
/// which mask culled a rule.
pub fn first_mask_hit(doc: &Document<'_>, masks: &[Mask]) -> Option<usize> {
    masks.iter().position(|mask| mask.sequences.iter().any(|s| doc.occurs(s, &Hidden::NONE)))
}
