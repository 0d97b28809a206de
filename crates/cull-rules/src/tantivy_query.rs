//! Compilation of plans to Tantivy queries.
//!
//! The design defines a rule match as "searching a Tantivy index holding the mention
//! with the rule's compiled query returns it". This module is that definition: the
//! index schema ([`MentionSchema`]), the documents it holds, and the query each
//! [`Plan`] compiles to. Leaves map onto Tantivy's own queries wherever one has the
//! intended semantics (terms, phrases, sloppy phrases, booleans); prefixes and NEAR
//! get queries of their own because Tantivy's either cap their expansions or do not
//! exist.

mod near;
mod prefix;

use cull_model::analyzer::{CullTokenizer, Form, EXACT_TOKENIZER, FOLDED_TOKENIZER};
use tantivy::collector::DocSetCollector;
use tantivy::query::{AllQuery, BooleanQuery, EmptyQuery, ExistsQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{
    self, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, STORED, STRING,
};
use tantivy::{Index, TantivyDocument, TantivyError, Term};

use self::near::{NearQuery, SpanSequence, SpanWord};
use self::prefix::PrefixQuery;
use crate::plan::{keyword_values, text_value, Field, Plan, Sequence, TextField};

/// The two Tantivy fields of a text field: one per spelling, same positions.
#[derive(Debug, Clone, Copy)]
struct Spellings {
    folded: schema::Field,
    exact: schema::Field,
}

/// The Tantivy schema of an index of mentions, with the handles of its fields.
///
/// The matcher and the analyst index both build their documents and queries through
/// this one type, so a backtest against the analyst index sees exactly what the live
/// matcher sees.
#[derive(Debug, Clone)]
pub struct MentionSchema {
    schema: Schema,
    title: Spellings,
    text: Spellings,
    author: Spellings,
    url: Spellings,
    site: schema::Field,
    lang: schema::Field,
    channel: schema::Field,
    source: schema::Field,
    id: schema::Field,
}

impl Default for MentionSchema {
    fn default() -> MentionSchema {
        MentionSchema::new()
    }
}

impl MentionSchema {
    /// Returns the schema: each text field indexed twice (folded as `<name>`, exact as
    /// `<name>_exact`) with positions, each keyword field as a raw, fast term, and the
    /// mention id stored.
    pub fn new() -> MentionSchema {
        MentionSchema::with_extra_fields(|_| {})
    }

    /// Returns the schema with the fields `extra` adds to it, for an index that holds
    /// more than the matcher needs (the analyst index's dates and verdicts); the extra
    /// fields are found again by name in [`MentionSchema::schema`].
    pub fn with_extra_fields(extra: impl FnOnce(&mut schema::SchemaBuilder)) -> MentionSchema {
        let mut builder = Schema::builder();
        let mut spellings = |field: Field, stored: bool| {
            let options = |tokenizer: &str| {
                let indexing = TextFieldIndexing::default()
                    .set_tokenizer(tokenizer)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions);
                let options = TextOptions::default().set_indexing_options(indexing);
                if stored {
                    options.set_stored()
                } else {
                    options
                }
            };
            Spellings {
                folded: builder.add_text_field(field.name(), options(FOLDED_TOKENIZER)),
                exact: builder.add_text_field(&format!("{}_exact", field.name()), options(EXACT_TOKENIZER)),
            }
        };
        let title = spellings(Field::Title, true);
        let text = spellings(Field::Text, true);
        let author = spellings(Field::Author, false);
        let url = spellings(Field::Url, false);
        let site = builder.add_text_field(Field::Site.name(), STRING | FAST);
        let lang = builder.add_text_field(Field::Lang.name(), STRING | FAST);
        let channel = builder.add_text_field(Field::Channel.name(), STRING | FAST);
        let source = builder.add_text_field(Field::Source.name(), STRING | FAST);
        let id = builder.add_text_field("id", STRING | STORED);
        extra(&mut builder);
        MentionSchema { schema: builder.build(), title, text, author, url, site, lang, channel, source, id }
    }

    /// Returns the Tantivy schema, to create an index with.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Returns the stored field holding the mention id, to map search hits back to
    /// mentions.
    pub fn id_field(&self) -> schema::Field {
        self.id
    }

    /// Registers the shared analyzer with `index` under the names the schema refers
    /// to; an index must have them before documents are added or queries run.
    pub fn register_tokenizers(&self, index: &Index) {
        let tokenizers = index.tokenizers();
        tokenizers.register(FOLDED_TOKENIZER, CullTokenizer::new(Form::Folded));
        tokenizers.register(EXACT_TOKENIZER, CullTokenizer::new(Form::Exact));
    }

    /// Returns the document of `mention`: each text field in both spellings, each
    /// keyword field with one value per term it holds, and the id.
    pub fn document(&self, mention: &cull_model::Mention) -> TantivyDocument {
        let mut document = TantivyDocument::new();
        document.add_text(self.id, &mention.id);
        for field in Field::ALL {
            if let Some(spellings) = self.spellings(field) {
                if let Some(text) = text_value(mention, field) {
                    document.add_text(spellings.folded, text);
                    document.add_text(spellings.exact, text);
                }
            } else if let Some(keyword) = self.keyword_field(field) {
                for value in keyword_values(mention, field) {
                    document.add_text(keyword, value);
                }
            }
        }
        document
    }

    /// Returns the Tantivy query of `plan`.
    ///
    /// Plans that break the invariants documented on [`Plan`] do not panic: a keyword
    /// leaf on a text field or a sequence without words matches nothing, and the
    /// `prefix` flag of a sequence of several words is ignored.
    pub fn query(&self, plan: &Plan) -> Box<dyn Query> {
        match plan {
            Plan::Sequence(sequence) => self.sequence_query(sequence),
            Plan::SloppyPhrase { sequence, slop } => match self.phrase_terms(sequence) {
                Some(terms) if terms.len() > 1 => {
                    Box::new(PhraseQuery::new_with_offset_and_slop(terms, *slop))
                }
                // Tantivy rejects phrases of one word; slop means nothing there.
                _ => self.sequence_query(sequence),
            },
            Plan::Near { left, right, distance, ordered } => Box::new(NearQuery::new(
                self.span_sequences(left),
                self.span_sequences(right),
                *distance,
                *ordered,
            )),
            Plan::Keyword { field, value } => match self.keyword_field(*field) {
                Some(keyword) => {
                    Box::new(TermQuery::new(Term::from_field_text(keyword, value), IndexRecordOption::Basic))
                }
                None => Box::new(EmptyQuery),
            },
            Plan::Missing(field) => match self.keyword_field(*field) {
                Some(_) => Box::new(BooleanQuery::new(vec![
                    (Occur::Must, Box::new(AllQuery)),
                    (Occur::MustNot, Box::new(ExistsQuery::new(field.name().to_string(), false))),
                ])),
                None => Box::new(EmptyQuery),
            },
            Plan::And { must, must_not } => {
                let must = must.iter().map(|p| (Occur::Must, self.query(p)));
                let must_not = must_not.iter().map(|p| (Occur::MustNot, self.query(p)));
                Box::new(BooleanQuery::new(must.chain(must_not).collect()))
            }
            Plan::Or(any) => {
                Box::new(BooleanQuery::new(any.iter().map(|p| (Occur::Should, self.query(p))).collect()))
            }
        }
    }

    fn spellings(&self, field: Field) -> Option<Spellings> {
        match field {
            Field::Title => Some(self.title),
            Field::Text => Some(self.text),
            Field::Author => Some(self.author),
            Field::Url => Some(self.url),
            Field::Site | Field::Lang | Field::Channel | Field::Source => None,
        }
    }

    fn keyword_field(&self, field: Field) -> Option<schema::Field> {
        match field {
            Field::Site => Some(self.site),
            Field::Lang => Some(self.lang),
            Field::Channel => Some(self.channel),
            Field::Source => Some(self.source),
            Field::Title | Field::Text | Field::Author | Field::Url => None,
        }
    }

    /// Returns the Tantivy field of a text field in one spelling.
    fn text_field(&self, field: TextField) -> Option<schema::Field> {
        let spellings = self.spellings(field.field)?;
        Some(match field.form {
            Form::Folded => spellings.folded,
            Form::Exact => spellings.exact,
        })
    }

    /// Returns the words of `sequence` as terms with their offsets.
    fn phrase_terms(&self, sequence: &Sequence) -> Option<Vec<(usize, Term)>> {
        let field = self.text_field(sequence.field)?;
        let terms = sequence.words.iter();
        Some(terms.map(|w| (w.offset as usize, Term::from_field_text(field, &w.term))).collect())
    }

    fn sequence_query(&self, sequence: &Sequence) -> Box<dyn Query> {
        let Some(mut terms) = self.phrase_terms(sequence) else {
            return Box::new(EmptyQuery);
        };
        match terms.len() {
            0 => Box::new(EmptyQuery),
            1 => {
                let (_, term) = terms.remove(0);
                if sequence.prefix {
                    Box::new(PrefixQuery::new(term))
                } else {
                    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
                }
            }
            _ => Box::new(PhraseQuery::new_with_offset(terms)),
        }
    }

    /// Returns the NEAR operand alternatives of `sequences`, leaving out those that
    /// are not in a text field (they cannot occur).
    fn span_sequences(&self, sequences: &[Sequence]) -> Vec<SpanSequence> {
        let span_sequence = |sequence: &Sequence| {
            let field = self.text_field(sequence.field)?;
            let words = sequence.words.iter().map(|word| SpanWord {
                offset: word.offset,
                term: Term::from_field_text(field, &word.term),
                prefix: sequence.prefix && sequence.words.len() == 1,
            });
            Some(SpanSequence { words: words.collect() })
        };
        sequences.iter().filter_map(span_sequence).collect()
    }
}

/// Returns the sorted ids of the mentions in `index` that `plan` matches.
///
/// This is the reference answer the matcher is held to; tests and backtests use it.
/// Every search opens a new reader, so it sees the last commit.
pub fn search_ids(index: &Index, schema: &MentionSchema, plan: &Plan) -> tantivy::Result<Vec<String>> {
    let searcher = index.reader()?.searcher();
    let hits = searcher.search(&schema.query(plan), &DocSetCollector)?;
    let mut ids = Vec::with_capacity(hits.len());
    for address in hits {
        let document: TantivyDocument = searcher.doc(address)?;
        let id = document.get_first(schema.id_field()).and_then(|value| value.as_str());
        let id = id
            .ok_or_else(|| TantivyError::InvalidArgument(format!("document {address:?} has no stored id")))?;
        ids.push(id.to_string());
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use cull_model::analyzer::{analyze, Mode};
    use cull_model::{Channel, Mention};

    use super::*;
    use crate::plan::Word;

    /// Returns an index holding `mentions` in one segment.
    fn index_of(schema: &MentionSchema, mentions: &[Mention]) -> Index {
        let index = Index::create_in_ram(schema.schema().clone());
        schema.register_tokenizers(&index);
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for mention in mentions {
            writer.add_document(schema.document(mention)).unwrap();
        }
        writer.commit().unwrap();
        index
    }

    /// Returns a fixture index of mentions `m0`, `m1`, ... with the given texts.
    fn texts(texts: &[&str]) -> (MentionSchema, Index) {
        let schema = MentionSchema::new();
        let mentions: Vec<Mention> =
            texts.iter().enumerate().map(|(i, text)| Mention::new(format!("m{i}"), *text)).collect();
        let index = index_of(&schema, &mentions);
        (schema, index)
    }

    fn search(schema: &MentionSchema, index: &Index, plan: &Plan) -> Vec<String> {
        search_ids(index, schema, plan).unwrap()
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    /// Returns the sequence of a query string in the text field, as the analyzer
    /// reads it.
    fn seq_in(query: &str, form: Form) -> Sequence {
        let tokens = analyze(query, form, Mode::Query);
        let first = tokens.first().map_or(0, |t| t.position);
        let words =
            tokens.iter().map(|t| Word { offset: t.position - first, term: t.term.clone() }).collect();
        Sequence { field: TextField { field: Field::Text, form }, words, prefix: false }
    }

    fn seq(query: &str) -> Sequence {
        seq_in(query, Form::Folded)
    }

    fn prefix(word: &str) -> Sequence {
        Sequence { prefix: true, ..seq(word) }
    }

    fn near(left: Vec<Sequence>, right: Vec<Sequence>, distance: u32, ordered: bool) -> Plan {
        Plan::Near { left, right, distance, ordered }
    }

    #[test]
    fn terms_match_folded_and_exact_spellings() {
        let (schema, index) = texts(&["Café Slack", "cafe slack", "SLACKER"]);
        assert_eq!(search(&schema, &index, &Plan::Sequence(seq("CAFÉ"))), ids(&["m0", "m1"]));
        let exact = Plan::Sequence(seq_in("Café", Form::Exact));
        assert_eq!(search(&schema, &index, &exact), ids(&["m0"]));
        let title = Sequence { field: TextField { field: Field::Title, form: Form::Folded }, ..seq("cafe") };
        assert_eq!(search(&schema, &index, &Plan::Sequence(title)), ids(&[]));
    }

    #[test]
    fn prefixes_expand_to_every_term_without_limit() {
        // More distinct terms than Tantivy's phrase-prefix expansion limit of 50.
        let many: Vec<String> = (0..120).map(|i| format!("conn{i:03}")).collect();
        let mut all: Vec<&str> = many.iter().map(String::as_str).collect();
        all.extend(["connections magazine", "con", "disconnect", "Connéxion"]);
        let (schema, index) = texts(&all);
        let found = search(&schema, &index, &Plan::Sequence(prefix("conn")));
        assert_eq!(found.len(), 122);
        assert!(!found.contains(&"m121".to_string()) && !found.contains(&"m122".to_string()));
        assert!(found.contains(&"m123".to_string()));
        let exact = Sequence { prefix: true, ..seq_in("Conn", Form::Exact) };
        assert_eq!(search(&schema, &index, &Plan::Sequence(exact)), ids(&["m123"]));
    }

    #[test]
    fn phrases_respect_word_offsets() {
        let (schema, index) =
            texts(&["connections magazine", "magazine connections", "connections x magazine"]);
        assert_eq!(search(&schema, &index, &Plan::Sequence(seq("connections magazine"))), ids(&["m0"]));
        // A gap in the offsets (an overlong word skipped by the analyzer) is a wildcard.
        let mut gapped = seq("connections magazine");
        gapped.words[1].offset = 2;
        assert_eq!(search(&schema, &index, &Plan::Sequence(gapped)), ids(&["m2"]));
    }

    #[test]
    fn sloppy_phrases_follow_tantivy_slop() {
        let (schema, index) = texts(&["call center", "call the center", "call a big center", "center call"]);
        let sloppy = |slop| Plan::SloppyPhrase { sequence: seq("call center"), slop };
        assert_eq!(search(&schema, &index, &sloppy(0)), ids(&["m0"]));
        assert_eq!(search(&schema, &index, &sloppy(1)), ids(&["m0", "m1"]));
        // Reversed order costs two: "center call" is at distance 2 from "call center".
        assert_eq!(search(&schema, &index, &sloppy(2)), ids(&["m0", "m1", "m2", "m3"]));
    }

    #[test]
    fn sloppy_phrases_keep_tantivy_quirks() {
        // Pinned so that the native verifier copies them: slop is checked pair by pair
        // rather than as a total, and a repeated word may reuse one occurrence.
        let (schema, index) = texts(&["a x b x c", "a", "a a"]);
        let sloppy = |query, slop| Plan::SloppyPhrase { sequence: seq(query), slop };
        assert_eq!(search(&schema, &index, &sloppy("a b c", 1)), ids(&["m0"]));
        assert_eq!(search(&schema, &index, &Plan::Sequence(seq("a a"))), ids(&["m2"]));
        assert_eq!(search(&schema, &index, &sloppy("a a", 1)), ids(&["m0", "m1", "m2"]));
    }

    #[test]
    fn near_counts_words_between_in_either_order() {
        let (schema, index) = texts(&[
            "connections dehaan",
            "connections a b c dehaan",
            "connections a b c d dehaan",
            "dehaan a connections",
            "connections",
        ]);
        let plan = |distance, ordered| near(vec![seq("connections")], vec![seq("dehaan")], distance, ordered);
        assert_eq!(search(&schema, &index, &plan(0, false)), ids(&["m0"]));
        // Exactly n words between matches; n + 1 does not.
        assert_eq!(search(&schema, &index, &plan(3, false)), ids(&["m0", "m1", "m3"]));
        assert_eq!(search(&schema, &index, &plan(4, false)), ids(&["m0", "m1", "m2", "m3"]));
        assert_eq!(search(&schema, &index, &plan(4, true)), ids(&["m0", "m1", "m2"]));
        assert_eq!(search(&schema, &index, &plan(1, true)), ids(&["m0"]));
    }

    #[test]
    fn near_takes_phrase_and_prefix_alternatives() {
        let (schema, index) = texts(&[
            "connections in the call center world",
            "call connections center",
            "dehaan writes for connectionsmag",
            "the call center is far from anything connected",
        ]);
        let right = vec![seq("dehaan"), seq("call center")];
        let plan = near(vec![prefix("connection")], right.clone(), 2, false);
        assert_eq!(search(&schema, &index, &plan), ids(&["m0", "m2"]));
        let plan = near(vec![prefix("conn")], right.clone(), 3, true);
        assert_eq!(search(&schema, &index, &plan), ids(&["m0"]));
        let plan = near(right, vec![prefix("conn")], 3, true);
        assert_eq!(search(&schema, &index, &plan), ids(&["m2"]));
        // The phrase's span ends at "center": four words stand before "connected".
        let plan = near(vec![seq("call center")], vec![prefix("conn")], 4, true);
        assert_eq!(search(&schema, &index, &plan), ids(&["m3"]));
    }

    #[test]
    fn near_mixes_folded_and_exact_alternatives() {
        let (schema, index) = texts(&["Apple pie", "apple pie", "APPLE crumble pie", "pie Apple"]);
        let exact = seq_in("Apple", Form::Exact);
        let plan = near(vec![exact.clone()], vec![seq("PIE")], 1, true);
        assert_eq!(search(&schema, &index, &plan), ids(&["m0"]));
        let plan = near(vec![exact, seq_in("APPLE", Form::Exact)], vec![seq("pie")], 1, false);
        assert_eq!(search(&schema, &index, &plan), ids(&["m0", "m2", "m3"]));
    }

    #[test]
    fn near_ignores_overlapping_occurrences() {
        let (schema, index) = texts(&["call center", "call center call"]);
        let plan = near(vec![seq("call center")], vec![seq("center")], 5, false);
        assert_eq!(search(&schema, &index, &plan), ids(&[]));
        let plan = near(vec![seq("call center")], vec![seq("call")], 0, false);
        assert_eq!(search(&schema, &index, &plan), ids(&["m1"]));
        // The same word on both sides needs two occurrences.
        let plan = near(vec![seq("call")], vec![seq("call")], 5, false);
        assert_eq!(search(&schema, &index, &plan), ids(&["m1"]));
    }

    #[test]
    fn near_explains_matches_and_refuses_others() {
        let (schema, index) = texts(&["a b", "a x x x b"]);
        let query = schema.query(&near(vec![seq("a")], vec![seq("b")], 0, true));
        let searcher = index.reader().unwrap().searcher();
        assert!(query.explain(&searcher, tantivy::DocAddress::new(0, 0)).is_ok());
        let err = query.explain(&searcher, tantivy::DocAddress::new(0, 1)).unwrap_err();
        assert!(matches!(err, TantivyError::InvalidArgument(_)), "{err}");
        let mut terms = Vec::new();
        query.query_terms(&mut |term, positions| terms.push((term.clone(), positions)));
        assert_eq!(terms.len(), 2);
        assert!(terms.iter().all(|(_, positions)| *positions));
    }

    #[test]
    fn hashtags_index_the_bare_word_at_the_same_position() {
        let (schema, index) = texts(&["love #Slack", "love slack", "love # slack"]);
        assert_eq!(search(&schema, &index, &Plan::Sequence(seq("#slack"))), ids(&["m0"]));
        assert_eq!(search(&schema, &index, &Plan::Sequence(seq("slack"))), ids(&["m0", "m1", "m2"]));
        assert_eq!(search(&schema, &index, &Plan::Sequence(seq("love #slack"))), ids(&["m0"]));
        assert_eq!(search(&schema, &index, &Plan::Sequence(seq("love slack"))), ids(&["m0", "m1", "m2"]));
        let plan = near(vec![seq("love")], vec![seq("#slack")], 0, true);
        assert_eq!(search(&schema, &index, &plan), ids(&["m0"]));
        // "#slack" and "slack" share position 1: one occurrence, not two.
        let plan = near(vec![prefix("#sl")], vec![seq("slack")], 5, false);
        assert_eq!(search(&schema, &index, &plan), ids(&[]));
    }

    fn with_fields() -> (MentionSchema, Index) {
        let schema = MentionSchema::new();
        let mut a = Mention::new("a", "nothing");
        a.lang = Some("EN".into());
        a.channel = Some(Channel::Twitter);
        a.url = Some("https://www.Example.com/x".into());
        let mut b = Mention::new("b", "something");
        b.lang = Some("fr".into());
        b.source = Some("Alerts".into());
        let c = Mention::new("c", "nothing at all");
        let index = index_of(&schema, &[a, b, c]);
        (schema, index)
    }

    #[test]
    fn keywords_and_missing_values() {
        let (schema, index) = with_fields();
        let keyword = |field, value: &str| Plan::Keyword { field, value: value.to_string() };
        assert_eq!(search(&schema, &index, &keyword(Field::Lang, "en")), ids(&["a"]));
        assert_eq!(search(&schema, &index, &keyword(Field::Lang, "EN")), ids(&[]));
        assert_eq!(search(&schema, &index, &keyword(Field::Site, "example.com")), ids(&["a"]));
        assert_eq!(search(&schema, &index, &keyword(Field::Channel, "twitter")), ids(&["a"]));
        assert_eq!(search(&schema, &index, &keyword(Field::Source, "alerts")), ids(&["b"]));
        assert_eq!(search(&schema, &index, &Plan::Missing(Field::Lang)), ids(&["c"]));
        assert_eq!(search(&schema, &index, &Plan::Missing(Field::Source)), ids(&["a", "c"]));
        assert_eq!(search(&schema, &index, &Plan::Missing(Field::Site)), ids(&["b", "c"]));
        let url =
            Sequence { field: TextField { field: Field::Url, form: Form::Folded }, ..seq("www.example.com") };
        assert_eq!(search(&schema, &index, &Plan::Sequence(url)), ids(&["a"]));
    }

    #[test]
    fn missing_matches_everything_when_no_mention_has_the_field() {
        let (schema, index) = texts(&["one", "two"]);
        assert_eq!(search(&schema, &index, &Plan::Missing(Field::Channel)), ids(&["m0", "m1"]));
    }

    #[test]
    fn and_or_not() {
        let (schema, index) = with_fields();
        let nothing = Plan::Sequence(seq("nothing"));
        let all = Plan::Sequence(seq("all"));
        let lang = |value: &str| Plan::Keyword { field: Field::Lang, value: value.to_string() };
        let and = Plan::And { must: vec![nothing.clone()], must_not: vec![all.clone()] };
        assert_eq!(search(&schema, &index, &and), ids(&["a"]));
        let and = Plan::And { must: vec![nothing.clone(), all.clone()], must_not: vec![] };
        assert_eq!(search(&schema, &index, &and), ids(&["c"]));
        let or = Plan::Or(vec![all.clone(), lang("fr")]);
        assert_eq!(search(&schema, &index, &or), ids(&["b", "c"]));
        let nested =
            Plan::And { must: vec![Plan::Or(vec![nothing, lang("fr")])], must_not: vec![lang("en")] };
        assert_eq!(search(&schema, &index, &nested), ids(&["b", "c"]));
    }

    #[test]
    fn matches_survive_several_segments_and_deletes() {
        let schema = MentionSchema::new();
        let index = index_of(&schema, &[Mention::new("a", "call center"), Mention::new("b", "center")]);
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        writer.add_document(schema.document(&Mention::new("c", "the call x center"))).unwrap();
        writer.delete_term(Term::from_field_text(schema.id_field(), "a"));
        writer.commit().unwrap();
        let plan = near(vec![seq("call")], vec![prefix("cent")], 1, true);
        assert_eq!(search(&schema, &index, &plan), ids(&["c"]));
    }
}
