//! Proximity of two operands (`a NEAR/n b`, `a ONEAR/n b`) as a Tantivy query.
//!
//! Tantivy has no span queries, so this module brings one: each operand is a list of
//! alternative sequences, each sequence yields spans of positions in a document, and a
//! document matches when a left span and a right span are disjoint and at most
//! `distance` positions stand between them. Documents are first narrowed to those where
//! some left and some right alternative has all its words; positions are only read for
//! those candidates.

use std::cmp::Ordering;
use std::collections::binary_heap::{BinaryHeap, PeekMut};

use tantivy::index::SegmentReader;
use tantivy::postings::{Postings, SegmentPostings};
use tantivy::query::{EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, DocSet, Score, TantivyError, Term, TERMINATED};

use super::prefix::{does_not_match, prefix_term_infos};

/// One word of an operand sequence.
#[derive(Debug, Clone)]
pub(super) struct SpanWord {
    /// Position relative to the start of the sequence.
    pub(super) offset: u32,
    /// The term, or the prefix when `prefix` is true.
    pub(super) term: Term,
    /// Whether every term starting with `term` stands for this word.
    pub(super) prefix: bool,
}

/// One alternative of an operand: words at fixed offsets from a start position.
#[derive(Debug, Clone)]
pub(super) struct SpanSequence {
    /// The words, by increasing offset.
    pub(super) words: Vec<SpanWord>,
}

/// A start and an end position, both inclusive.
type Span = (u32, u32);

/// Matches documents where an occurrence of a left alternative and one of a right
/// alternative stand at most `distance` positions apart (left first when `ordered`).
#[derive(Debug, Clone)]
pub(super) struct NearQuery {
    left: Vec<SpanSequence>,
    right: Vec<SpanSequence>,
    distance: u32,
    ordered: bool,
}

impl NearQuery {
    /// Returns the query for the given operands.
    pub(super) fn new(
        left: Vec<SpanSequence>,
        right: Vec<SpanSequence>,
        distance: u32,
        ordered: bool,
    ) -> NearQuery {
        NearQuery { left, right, distance, ordered }
    }

    fn words(&self) -> impl Iterator<Item = &SpanWord> {
        self.left.iter().chain(&self.right).flat_map(|sequence| &sequence.words)
    }
}

impl Query for NearQuery {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let schema = enable_scoring.schema();
        for word in self.words() {
            let entry = schema.get_field_entry(word.term.field());
            let has_positions =
                entry.field_type().get_index_record_option().is_some_and(IndexRecordOption::has_positions);
            if !has_positions {
                return Err(TantivyError::SchemaError(format!(
                    "Applied a NEAR query on field {:?}, which does not have positions indexed",
                    entry.name()
                )));
            }
        }
        Ok(Box::new(NearWeight { query: self.clone() }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        // Prefixes are not terms; like Tantivy's own prefix queries, they are left out.
        self.words().filter(|word| !word.prefix).for_each(|word| visitor(&word.term, true));
    }
}

struct NearWeight {
    query: NearQuery,
}

impl NearWeight {
    fn open(sequences: &[SpanSequence], reader: &SegmentReader) -> tantivy::Result<Vec<SequenceCursor>> {
        let mut cursors = Vec::with_capacity(sequences.len());
        for sequence in sequences {
            if let Some(cursor) = SequenceCursor::open(sequence, reader)? {
                cursors.push(cursor);
            }
        }
        Ok(cursors)
    }
}

impl Weight for NearWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let left = NearWeight::open(&self.query.left, reader)?;
        let right = NearWeight::open(&self.query.right, reader)?;
        if left.is_empty() || right.is_empty() {
            return Ok(Box::new(EmptyScorer));
        }
        Ok(Box::new(NearScorer::new(left, right, self.query.distance, self.query.ordered, boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) == doc {
            Ok(Explanation::new("NearQuery", 1.0))
        } else {
            Err(does_not_match(doc))
        }
    }
}

/// Postings ordered by their current document, smallest first in a [`BinaryHeap`].
struct ByDoc(SegmentPostings);

impl PartialEq for ByDoc {
    fn eq(&self, other: &ByDoc) -> bool {
        self.0.doc() == other.0.doc()
    }
}

impl Eq for ByDoc {}

impl PartialOrd for ByDoc {
    fn partial_cmp(&self, other: &ByDoc) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByDoc {
    fn cmp(&self, other: &ByDoc) -> Ordering {
        other.0.doc().cmp(&self.0.doc())
    }
}

/// The union of the postings of the terms one word stands for (one term, or every
/// term starting with a prefix).
struct WordCursor {
    postings: BinaryHeap<ByDoc>,
    scratch: Vec<ByDoc>,
    size_hint: u32,
}

impl WordCursor {
    fn new(postings: Vec<SegmentPostings>) -> WordCursor {
        let size_hint = postings.iter().fold(0u32, |sum, p| sum.saturating_add(p.size_hint()));
        let postings = postings.into_iter().filter(|p| p.doc() != TERMINATED).map(ByDoc).collect();
        WordCursor { postings, scratch: Vec::new(), size_hint }
    }

    fn doc(&self) -> DocId {
        self.postings.peek().map_or(TERMINATED, |top| top.0.doc())
    }

    /// Moves to the first document at or after `target` that has one of the terms.
    fn seek(&mut self, target: DocId) -> DocId {
        while let Some(mut top) = self.postings.peek_mut() {
            if top.0.doc() >= target {
                break;
            }
            if top.0.seek(target) == TERMINATED {
                PeekMut::pop(top);
            }
        }
        self.doc()
    }

    /// Replaces `output` with the sorted, distinct positions of the terms in `doc`,
    /// the current document.
    fn positions(&mut self, doc: DocId, output: &mut Vec<u32>) {
        output.clear();
        while let Some(top) = self.postings.peek_mut() {
            if top.0.doc() != doc {
                break;
            }
            self.scratch.push(PeekMut::pop(top));
        }
        for postings in &mut self.scratch {
            postings.0.append_positions_with_offset(0, output);
        }
        if self.scratch.len() > 1 {
            output.sort_unstable();
            output.dedup();
        }
        self.postings.extend(self.scratch.drain(..));
    }
}

/// The occurrences of one operand alternative.
struct SequenceCursor {
    words: Vec<(u32, WordCursor)>,
    /// The current document: all words occur in it.
    doc: DocId,
    starts: Vec<u32>,
    positions: Vec<u32>,
}

impl SequenceCursor {
    /// Returns the cursor of `sequence` in a segment, or `None` when one of its words
    /// does not occur in the segment at all.
    fn open(sequence: &SpanSequence, reader: &SegmentReader) -> tantivy::Result<Option<Self>> {
        if sequence.words.is_empty() {
            return Ok(None);
        }
        let option = IndexRecordOption::WithFreqsAndPositions;
        let mut words = Vec::with_capacity(sequence.words.len());
        for word in &sequence.words {
            let inverted_index = reader.inverted_index(word.term.field())?;
            let postings = if word.prefix {
                let prefix = word.term.serialized_value_bytes();
                let mut postings = Vec::new();
                for term_info in prefix_term_infos(&inverted_index, prefix)? {
                    postings.push(inverted_index.read_postings_from_terminfo(&term_info, option)?);
                }
                postings
            } else {
                inverted_index.read_postings(&word.term, option)?.into_iter().collect()
            };
            if postings.is_empty() {
                return Ok(None);
            }
            words.push((word.offset, WordCursor::new(postings)));
        }
        let mut cursor = SequenceCursor { words, doc: 0, starts: Vec::new(), positions: Vec::new() };
        cursor.doc = cursor.align(0);
        Ok(Some(cursor))
    }

    fn size_hint(&self) -> u32 {
        self.words.iter().map(|(_, word)| word.size_hint).min().unwrap_or(0)
    }

    /// Moves every word to the first document at or after `target` that holds them all.
    fn align(&mut self, mut target: DocId) -> DocId {
        'search: loop {
            for (_, word) in &mut self.words {
                let doc = word.seek(target);
                if doc == TERMINATED {
                    return TERMINATED;
                }
                if doc > target {
                    target = doc;
                    continue 'search;
                }
            }
            return target;
        }
    }

    /// Moves to the first document at or after `target` that holds every word.
    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc < target {
            self.doc = self.align(target);
        }
        self.doc
    }

    /// Appends the spans of the sequence in the current document to `output`.
    fn spans(&mut self, output: &mut Vec<Span>) {
        let doc = self.doc;
        let Some(((first_offset, first), rest)) = self.words.split_first_mut() else {
            return;
        };
        first.positions(doc, &mut self.starts);
        let first_offset = *first_offset;
        self.starts.retain_mut(|position| match position.checked_sub(first_offset) {
            Some(start) => {
                *position = start;
                true
            }
            None => false,
        });
        let mut width = first_offset;
        for (offset, word) in rest {
            word.positions(doc, &mut self.positions);
            let (offset, positions) = (*offset, &self.positions);
            self.starts.retain(|start| {
                start.checked_add(offset).is_some_and(|p| positions.binary_search(&p).is_ok())
            });
            width = offset;
        }
        output.extend(self.starts.iter().map(|&start| (start, start.saturating_add(width))));
    }
}

/// Returns true when some span of `first` ends before some span of `second` starts with
/// at most `distance` positions between them. `ends` is scratch space.
fn precedes(first: &[Span], second: &[Span], distance: u32, ends: &mut Vec<u32>) -> bool {
    ends.clear();
    ends.extend(first.iter().map(|&(_, end)| end));
    ends.sort_unstable();
    second.iter().any(|&(start, _)| {
        let Some(latest) = start.checked_sub(1) else {
            return false;
        };
        let earliest = start.saturating_sub(distance.saturating_add(1));
        let index = ends.partition_point(|&end| end < earliest);
        ends.get(index).is_some_and(|&end| end <= latest)
    })
}

struct NearScorer {
    left: Vec<SequenceCursor>,
    right: Vec<SequenceCursor>,
    distance: u32,
    ordered: bool,
    score: Score,
    doc: DocId,
    size_hint: u32,
    left_spans: Vec<Span>,
    right_spans: Vec<Span>,
    ends: Vec<u32>,
}

impl NearScorer {
    fn new(
        left: Vec<SequenceCursor>,
        right: Vec<SequenceCursor>,
        distance: u32,
        ordered: bool,
        score: Score,
    ) -> NearScorer {
        let hint = |cursors: &[SequenceCursor]| {
            cursors.iter().fold(0u32, |sum, c| sum.saturating_add(c.size_hint()))
        };
        let size_hint = hint(&left).min(hint(&right));
        let mut scorer = NearScorer {
            left,
            right,
            distance,
            ordered,
            score,
            doc: TERMINATED,
            size_hint,
            left_spans: Vec::new(),
            right_spans: Vec::new(),
            ends: Vec::new(),
        };
        scorer.doc = scorer.find(0);
        scorer
    }

    /// Returns the first matching document at or after `target`.
    fn find(&mut self, mut target: DocId) -> DocId {
        let first = |cursors: &mut [SequenceCursor], target: DocId| {
            cursors.iter_mut().map(|c| c.seek(target)).min().unwrap_or(TERMINATED)
        };
        loop {
            let left = first(&mut self.left, target);
            if left == TERMINATED {
                return TERMINATED;
            }
            let right = first(&mut self.right, left);
            if right == TERMINATED {
                return TERMINATED;
            }
            if right > left {
                target = right;
            } else if self.matches(left) {
                return left;
            } else {
                target = left + 1;
            }
        }
    }

    /// Returns true when `doc`, where some left and some right alternative occur, has
    /// a pair of occurrences close enough.
    fn matches(&mut self, doc: DocId) -> bool {
        self.left_spans.clear();
        for cursor in self.left.iter_mut().filter(|c| c.doc == doc) {
            cursor.spans(&mut self.left_spans);
        }
        self.right_spans.clear();
        for cursor in self.right.iter_mut().filter(|c| c.doc == doc) {
            cursor.spans(&mut self.right_spans);
        }
        precedes(&self.left_spans, &self.right_spans, self.distance, &mut self.ends)
            || (!self.ordered && precedes(&self.right_spans, &self.left_spans, self.distance, &mut self.ends))
    }
}

impl DocSet for NearScorer {
    fn advance(&mut self) -> DocId {
        if self.doc != TERMINATED {
            self.doc = self.find(self.doc + 1);
        }
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc < target {
            self.doc = self.find(target);
        }
        self.doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.size_hint
    }
}

impl Scorer for NearScorer {
    fn score(&mut self) -> Score {
        self.score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedes_counts_the_positions_between_disjoint_spans() {
        let mut ends = Vec::new();
        // Two positions (3 and 4) stand between [1, 2] and [5, 6].
        assert!(precedes(&[(1, 2)], &[(5, 6)], 2, &mut ends));
        assert!(!precedes(&[(1, 2)], &[(5, 6)], 1, &mut ends));
        // Adjacent spans have nothing between them; overlapping ones never count.
        assert!(precedes(&[(0, 0)], &[(1, 1)], 0, &mut ends));
        assert!(!precedes(&[(0, 2)], &[(2, 3)], 10, &mut ends));
        assert!(!precedes(&[(4, 4)], &[(0, 0)], 10, &mut ends));
        assert!(precedes(&[(9, 9), (0, 0)], &[(3, 3)], u32::MAX, &mut ends));
    }
}
