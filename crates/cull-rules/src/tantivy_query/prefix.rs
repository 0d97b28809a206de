//! A prefix query without an expansion limit.
//!
//! Tantivy's own prefix machinery (`PhrasePrefixQuery`) stops after 50 expansions,
//! which would make `conn*` miss mentions in a large index that the native verifier
//! finds. This query walks every term of the field that starts with the prefix.

use std::io;

use tantivy::index::{InvertedIndexReader, SegmentReader};
use tantivy::postings::TermInfo;
use tantivy::query::{ConstScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, TantivyError, Term, TERMINATED};

/// Returns the dictionary entries of every term of `inverted_index` whose bytes start
/// with `prefix`, in term order.
pub(super) fn prefix_term_infos(
    inverted_index: &InvertedIndexReader,
    prefix: &[u8],
) -> io::Result<Vec<TermInfo>> {
    let mut stream = inverted_index.terms().range().ge(prefix).into_stream()?;
    let mut term_infos = Vec::new();
    while stream.advance() {
        if !stream.key().starts_with(prefix) {
            break;
        }
        term_infos.push(stream.value().clone());
    }
    Ok(term_infos)
}

/// Returns the error Tantivy's own weights give when asked to explain a document that
/// does not match.
pub(super) fn does_not_match(doc: DocId) -> TantivyError {
    TantivyError::InvalidArgument(format!("Document #({doc}) does not match"))
}

/// Matches documents holding, in one field, a term that starts with a given term.
#[derive(Debug, Clone)]
pub(super) struct PrefixQuery {
    prefix: Term,
}

impl PrefixQuery {
    /// Returns a query for the terms of `prefix.field()` starting with `prefix`.
    pub(super) fn new(prefix: Term) -> PrefixQuery {
        PrefixQuery { prefix }
    }
}

impl Query for PrefixQuery {
    fn weight(&self, _enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(PrefixWeight {
            field: self.prefix.field(),
            prefix: self.prefix.serialized_value_bytes().to_vec(),
        }))
    }
}

struct PrefixWeight {
    field: Field,
    prefix: Vec<u8>,
}

impl Weight for PrefixWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let inverted_index = reader.inverted_index(self.field)?;
        let mut docs = BitDocSet::with_max_doc(reader.max_doc());
        for term_info in prefix_term_infos(&inverted_index, &self.prefix)? {
            let mut block =
                inverted_index.read_block_postings_from_terminfo(&term_info, IndexRecordOption::Basic)?;
            while !block.docs().is_empty() {
                block.docs().iter().for_each(|&doc| docs.insert(doc));
                block.advance();
            }
        }
        docs.start();
        Ok(Box::new(ConstScorer::new(docs, boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) == doc {
            Ok(Explanation::new("PrefixQuery", 1.0))
        } else {
            Err(does_not_match(doc))
        }
    }
}

/// A set of documents of one segment, one bit per document.
struct BitDocSet {
    words: Vec<u64>,
    doc: DocId,
    len: u32,
}

impl BitDocSet {
    fn with_max_doc(max_doc: DocId) -> BitDocSet {
        BitDocSet { words: vec![0; max_doc.div_ceil(64) as usize], doc: TERMINATED, len: 0 }
    }

    fn insert(&mut self, doc: DocId) {
        if let Some(word) = self.words.get_mut((doc / 64) as usize) {
            let bit = 1u64 << (doc % 64);
            if *word & bit == 0 {
                *word |= bit;
                self.len += 1;
            }
        }
    }

    /// Positions the set on its first document, once every document is inserted.
    fn start(&mut self) {
        self.doc = self.first_from(0);
    }

    /// Returns the first document at or after `target`, or [`TERMINATED`].
    fn first_from(&self, target: DocId) -> DocId {
        let mut index = (target / 64) as usize;
        let Some(&first) = self.words.get(index) else {
            return TERMINATED;
        };
        let mut word = first & (u64::MAX << (target % 64));
        loop {
            if word != 0 {
                // The index is below max_doc / 64, so it fits a DocId.
                return index as DocId * 64 + word.trailing_zeros();
            }
            index += 1;
            match self.words.get(index) {
                Some(&next) => word = next,
                None => return TERMINATED,
            }
        }
    }
}

impl DocSet for BitDocSet {
    fn advance(&mut self) -> DocId {
        if self.doc != TERMINATED {
            self.doc = self.first_from(self.doc + 1);
        }
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc != TERMINATED && self.doc < target {
            self.doc = self.first_from(target);
        }
        self.doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.len
    }
}
