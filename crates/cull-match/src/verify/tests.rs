//! Tests of the native verifier, including comparisons with a real Tantivy index.

use cull_model::analyzer::{analyze, CullTokenizer, Form, Mode, FOLDED_TOKENIZER};
use cull_model::{Channel, Mention, Span};
use cull_rules::plan::{Field, Plan, Sequence, TextField, Word};
use cull_rules::Mask;

use super::{first_mask_hit, intersection_exists_with_slop, key_of, matches, spans, Document, Hidden};

fn words(text: &str, form: Form) -> Vec<Word> {
    let tokens = analyze(text, form, Mode::Query);
    let first = tokens.first().map_or(0, |t| t.position);
    tokens.into_iter().map(|t| Word { offset: t.position - first, term: t.term }).collect()
}

fn seq_in(field: Field, form: Form, text: &str) -> Sequence {
    Sequence { field: TextField { field, form }, words: words(text, form), prefix: false }
}

fn seq(text: &str) -> Sequence {
    seq_in(Field::Text, Form::Folded, text)
}

fn exact(text: &str) -> Sequence {
    seq_in(Field::Text, Form::Exact, text)
}

fn prefix(text: &str, form: Form) -> Plan {
    Plan::Sequence(Sequence { prefix: true, ..seq_in(Field::Text, form, text) })
}

fn phrase(text: &str) -> Plan {
    Plan::Sequence(seq(text))
}

fn sloppy(text: &str, slop: u32) -> Plan {
    Plan::SloppyPhrase { sequence: seq(text), slop }
}

fn near(left: &[&str], right: &[&str], distance: u32, ordered: bool) -> Plan {
    Plan::Near {
        left: left.iter().map(|t| seq(t)).collect(),
        right: right.iter().map(|t| seq(t)).collect(),
        distance,
        ordered,
    }
}

fn is_match(plan: &Plan, text: &str) -> bool {
    let mention = Mention::new("m", text);
    matches(plan, &Document::new(&mention), &Hidden::NONE)
}

fn text_spans(plan: &Plan, text: &str) -> Vec<String> {
    let mention = Mention::new("m", text);
    let found = spans(plan, &Document::new(&mention), &Hidden::NONE);
    assert!(found.iter().all(|s| s.field == "text"));
    found.iter().map(|s| text[s.start..s.end].to_string()).collect()
}

#[test]
fn single_words_match_folded_and_exact_forms() {
    assert!(is_match(&phrase("cafe"), "Un Café, s'il vous plaît"));
    assert!(is_match(&phrase("CAFÉ"), "un cafe"));
    assert!(!is_match(&phrase("cafe"), "cafeteria"));
    assert!(is_match(&Plan::Sequence(exact("Café")), "Un Café"));
    assert!(!is_match(&Plan::Sequence(exact("Café")), "un café"));
    assert!(!is_match(&Plan::Sequence(exact("Slack")), "slack adjuster"));
    assert!(is_match(&Plan::Sequence(exact("Slack")), "We use Slack"));
}

#[test]
fn hashtags_match_the_bare_word_but_not_the_reverse() {
    assert!(is_match(&phrase("slack"), "love #Slack"));
    assert!(is_match(&phrase("#slack"), "love #Slack"));
    assert!(!is_match(&phrase("#slack"), "love Slack"));
    assert!(is_match(&Plan::Sequence(exact("#Slack")), "love #Slack"));
    assert!(is_match(&Plan::Sequence(exact("Slack")), "love #Slack"));
    assert!(is_match(&phrase("love slack"), "love #Slack"));
    assert!(is_match(&phrase("love #slack"), "love #Slack"));
    assert!(is_match(&phrase("@slackhq"), "ask @SlackHQ"));
}

#[test]
fn prefixes_match_the_start_of_a_term() {
    assert!(is_match(&prefix("conn", Form::Folded), "Connections Magazine"));
    assert!(!is_match(&prefix("conn", Form::Folded), "reconnect"));
    assert!(is_match(&prefix("#sl", Form::Folded), "love #Slack"));
    assert!(!is_match(&prefix("#sl", Form::Folded), "love Slack"));
    assert!(is_match(&prefix("Con", Form::Exact), "Connections"));
    assert!(!is_match(&prefix("Con", Form::Exact), "connections"));
    assert!(!is_match(&prefix("connections", Form::Folded), "conn"));
}

#[test]
fn phrases_need_consecutive_positions_and_honour_offset_gaps() {
    assert!(is_match(&phrase("connections magazine"), "Read Connections Magazine today"));
    assert!(!is_match(&phrase("connections magazine"), "Magazine connections"));
    assert!(!is_match(&phrase("connections magazine"), "connections, the magazine"));
    assert!(is_match(&phrase("call center agents"), "the call-center agents"));
    let gapped = Plan::Sequence(Sequence {
        field: TextField { field: Field::Text, form: Form::Folded },
        words: vec![Word { offset: 0, term: "a".into() }, Word { offset: 2, term: "b".into() }],
        prefix: false,
    });
    assert!(is_match(&gapped, "a x b"));
    assert!(!is_match(&gapped, "a b"));
    assert!(!is_match(&gapped, "a x y b"));
    // Folded and exact phrases live in different fields of the index: no mixing.
    assert!(is_match(&Plan::Sequence(exact("Connections Magazine")), "Connections Magazine"));
    assert!(!is_match(&Plan::Sequence(exact("Connections Magazine")), "connections Magazine"));
}

#[test]
fn sequences_look_only_in_their_field() {
    let mut mention = Mention::new("m", "body text");
    mention.title = Some("Slack outage".into());
    mention.author = Some("Jane Doe".into());
    mention.url = Some("https://status.slack.com/incident".into());
    let doc = Document::new(&mention);
    let in_field = |field, text| Plan::Sequence(seq_in(field, Form::Folded, text));
    assert!(matches(&in_field(Field::Title, "slack outage"), &doc, &Hidden::NONE));
    assert!(!matches(&in_field(Field::Text, "slack"), &doc, &Hidden::NONE));
    assert!(matches(&in_field(Field::Author, "doe"), &doc, &Hidden::NONE));
    assert!(matches(&in_field(Field::Url, "incident"), &doc, &Hidden::NONE));
    assert!(!matches(&in_field(Field::Site, "slack"), &doc, &Hidden::NONE));
}

#[test]
fn near_counts_the_words_between_occurrences() {
    let plan = near(&["connections"], &["dehaan"], 3, false);
    assert!(is_match(&plan, "connections w1 w2 w3 dehaan"));
    assert!(!is_match(&plan, "connections w1 w2 w3 w4 dehaan"));
    assert!(is_match(&plan, "dehaan w1 w2 w3 connections"));
    assert!(!is_match(&plan, "dehaan w1 w2 w3 w4 connections"));
    assert!(is_match(&plan, "connections dehaan"));
    assert!(!is_match(&plan, "connections only"));
    let zero = near(&["a"], &["b"], 0, false);
    assert!(is_match(&zero, "a b"));
    assert!(is_match(&zero, "b a"));
    assert!(!is_match(&zero, "a x b"));
}

#[test]
fn onear_requires_the_left_operand_first() {
    let plan = near(&["connections"], &["dehaan"], 2, true);
    assert!(is_match(&plan, "connections x dehaan"));
    assert!(!is_match(&plan, "dehaan x connections"));
    assert!(is_match(&plan, "dehaan x connections y dehaan"));
}

#[test]
fn near_operands_never_overlap() {
    let same = near(&["a"], &["a"], 5, false);
    assert!(!is_match(&same, "a"));
    assert!(is_match(&same, "a a"));
    let phrase_and_word = near(&["a b"], &["b"], 2, false);
    assert!(!is_match(&phrase_and_word, "a b"));
    assert!(is_match(&phrase_and_word, "a b b"));
    assert!(is_match(&phrase_and_word, "b x a b"));
    // A hashtag and its bare word share a position: one occurrence each, overlapping.
    let tag = near(&["#slack"], &["slack"], 3, false);
    assert!(!is_match(&tag, "#slack"));
    assert!(is_match(&tag, "#slack slack"));
}

#[test]
fn near_measures_from_the_ends_of_phrases() {
    let plan = near(&["connections"], &["call center", "dehaan"], 1, false);
    assert!(is_match(&plan, "connections x call center"));
    assert!(!is_match(&plan, "connections x y call center"));
    assert!(is_match(&plan, "call center x connections"));
    assert!(!is_match(&plan, "call center x y connections"));
    assert!(is_match(&plan, "connections x dehaan"));
    assert!(!is_match(&plan, "connections x call desk"));
}

#[test]
fn near_alternatives_may_mix_forms() {
    let plan =
        Plan::Near { left: vec![exact("Slack")], right: vec![seq("outage")], distance: 0, ordered: true };
    assert!(is_match(&plan, "Slack outage"));
    assert!(!is_match(&plan, "slack outage"));
    assert!(is_match(&plan, "#Slack Outage"));
}

#[test]
fn keywords_and_missing_fields_read_the_mention() {
    let mut mention = Mention::new("m", "text");
    mention.lang = Some(" EN ".into());
    mention.channel = Some(Channel::News);
    mention.url = Some("https://www.Example.com/a".into());
    let doc = Document::new(&mention);
    let keyword = |field, value: &str| Plan::Keyword { field, value: value.into() };
    assert!(matches(&keyword(Field::Lang, "en"), &doc, &Hidden::NONE));
    assert!(!matches(&keyword(Field::Lang, "fr"), &doc, &Hidden::NONE));
    assert!(matches(&keyword(Field::Channel, "news"), &doc, &Hidden::NONE));
    assert!(matches(&keyword(Field::Site, "example.com"), &doc, &Hidden::NONE));
    assert!(!matches(&keyword(Field::Site, "ample.com"), &doc, &Hidden::NONE));
    assert!(!matches(&keyword(Field::Source, "feed"), &doc, &Hidden::NONE));
    assert!(matches(&Plan::Missing(Field::Source), &doc, &Hidden::NONE));
    assert!(!matches(&Plan::Missing(Field::Lang), &doc, &Hidden::NONE));
    let bare = Mention::new("m", "text");
    assert!(matches(&Plan::Missing(Field::Site), &Document::new(&bare), &Hidden::NONE));
}

#[test]
fn boolean_plans_combine_their_clauses() {
    let and = Plan::And { must: vec![phrase("slack")], must_not: vec![phrase("adjuster")] };
    assert!(is_match(&and, "Slack is down"));
    assert!(!is_match(&and, "Automotive Slack Adjuster Market"));
    let both = Plan::And { must: vec![phrase("slack"), phrase("down")], must_not: vec![] };
    assert!(is_match(&both, "slack is down"));
    assert!(!is_match(&both, "slack is up"));
    let or = Plan::Or(vec![phrase("slack"), phrase("teams")]);
    assert!(is_match(&or, "MS Teams"));
    assert!(!is_match(&or, "Zoom"));
    assert!(!is_match(&Plan::Or(vec![]), "anything"));
    let only_not = Plan::And { must: vec![], must_not: vec![phrase("zoom")] };
    assert!(!is_match(&only_not, "slack"));
}

#[test]
fn sloppy_phrases_spend_a_budget_like_tantivy() {
    assert!(is_match(&sloppy("a b", 1), "a x b"));
    assert!(!is_match(&sloppy("a b", 1), "a x y b"));
    assert!(is_match(&sloppy("a b", 0), "a b"));
    assert!(!is_match(&sloppy("a b", 0), "a x b"));
    // A transposition costs 2.
    assert!(!is_match(&sloppy("a b", 1), "b a"));
    assert!(is_match(&sloppy("a b", 2), "b a"));
    assert!(is_match(&sloppy("a b", 3), "b x a"));
    assert!(!is_match(&sloppy("a b", 3), "b x x a"));
    // Repeated terms: each is its own posting list, so one occurrence can serve both
    // words of "a a" once the slop allows the shift between them.
    assert!(is_match(&sloppy("a a", 1), "a x a"));
    assert!(is_match(&sloppy("a a", 1), "a"));
    assert!(!is_match(&sloppy("a a", 0), "a"));
    assert!(!is_match(&sloppy("a a", 1), "b"));
    // Hashtags put two terms at one position.
    assert!(is_match(&sloppy("love slack", 1), "love much #Slack"));
}

#[test]
fn slop_existence_matches_tantivy() {
    // Tantivy's own cases for `intersection_exists_with_slop`.
    assert!(intersection_exists_with_slop(&[1], &[2], 1));
    assert!(intersection_exists_with_slop(&[2], &[1], 1));
    assert!(!intersection_exists_with_slop(&[1], &[3], 1));
    assert!(intersection_exists_with_slop(&[1], &[3], 2));
    assert!(!intersection_exists_with_slop(&[], &[2], 100_000));
}

#[test]
fn sloppy_phrases_of_other_lengths_match_nothing() {
    let one = Plan::SloppyPhrase { sequence: seq("a"), slop: 1 };
    assert!(!is_match(&one, "a"));
    let three = Plan::SloppyPhrase { sequence: seq("a b c"), slop: 1 };
    assert!(!is_match(&three, "a b c"));
}

fn mask(source: &str) -> Mask {
    Mask { source: source.into(), sequences: vec![seq(source)] }
}

#[test]
fn masks_hide_occurrences_not_mentions() {
    let masks = [mask("family connections magazine"), mask("kingdom connections magazine")];
    let query = phrase("connections magazine");
    let both = Mention::new("m", "Family Connections Magazine is not Connections Magazine");
    let doc = Document::new(&both);
    let hidden = doc.hide(masks.iter().flat_map(|m| &m.sequences));
    assert!(!hidden.is_empty());
    assert!(matches(&query, &doc, &hidden));
    assert_eq!(first_mask_hit(&doc, &masks), Some(0));

    let only_masked = Mention::new("m", "Family Connections Magazine: 10 crafts for kids");
    let doc = Document::new(&only_masked);
    let hidden = doc.hide(masks.iter().flat_map(|m| &m.sequences));
    assert!(matches(&query, &doc, &Hidden::NONE));
    assert!(!matches(&query, &doc, &hidden));
    // Both forms at a hidden position are gone.
    assert!(!matches(&Plan::Sequence(exact("Connections")), &doc, &hidden));
    assert!(!matches(&sloppy("connections magazine", 3), &doc, &hidden));
    assert!(!matches(&near(&["connections"], &["crafts"], 5, false), &doc, &hidden));
    assert!(matches(&phrase("crafts"), &doc, &hidden));
    assert_eq!(spans(&query, &doc, &hidden), vec![]);

    let unmasked = Mention::new("m", "Connections Magazine on answering services");
    let doc = Document::new(&unmasked);
    assert!(doc.hide(masks.iter().flat_map(|m| &m.sequences)).is_empty());
    assert_eq!(first_mask_hit(&doc, &masks), None);
}

#[test]
fn masks_cover_the_positions_between_their_words() {
    let gapped = Sequence {
        field: TextField { field: Field::Text, form: Form::Folded },
        words: vec![Word { offset: 0, term: "a".into() }, Word { offset: 2, term: "c".into() }],
        prefix: false,
    };
    let mention = Mention::new("m", "a b c d");
    let doc = Document::new(&mention);
    let hidden = doc.hide([&gapped]);
    assert!(!matches(&phrase("b"), &doc, &hidden));
    assert!(matches(&phrase("d"), &doc, &hidden));
    // A mask in one field leaves the others alone.
    let title = seq_in(Field::Title, Form::Folded, "b");
    let mut with_title = Mention::new("m", "a b");
    with_title.title = Some("b".into());
    let doc = Document::new(&with_title);
    let hidden = doc.hide([&title]);
    assert!(matches(&phrase("b"), &doc, &hidden));
    assert!(!matches(&Plan::Sequence(title.clone()), &doc, &hidden));
}

#[test]
fn spans_point_at_the_bytes_of_each_occurrence() {
    let text = "Ça va? Crème brûlée à Paris, crème BRÛLÉE!";
    assert_eq!(text_spans(&phrase("creme brulee"), text), vec!["Crème brûlée", "crème BRÛLÉE"]);
    assert_eq!(text_spans(&phrase("ça"), text), vec!["Ça"]);
    assert_eq!(text_spans(&phrase("#slack"), "love #Slack"), vec!["#Slack"]);
    assert_eq!(text_spans(&phrase("slack"), "love #Slack"), vec!["Slack"]);
    assert_eq!(text_spans(&prefix("cre", Form::Folded), text), vec!["Crème", "crème"]);
    // Overlapping occurrences of different leaves merge; separate ones do not.
    let or = Plan::Or(vec![phrase("a b"), phrase("b c"), phrase("e")]);
    assert_eq!(text_spans(&or, "a b c d e"), vec!["a b c", "e"]);
    // Negated leaves and keyword leaves give no span.
    let and = Plan::And { must: vec![phrase("b"), Plan::Missing(Field::Lang)], must_not: vec![phrase("d")] };
    assert_eq!(text_spans(&and, "a b c"), vec!["b"]);
    // Sloppy phrases and proximity highlight their words when they match.
    assert_eq!(text_spans(&sloppy("a c", 1), "a b c"), vec!["a", "c"]);
    assert_eq!(text_spans(&sloppy("a c", 1), "a b b c"), Vec::<&str>::new());
    assert_eq!(text_spans(&near(&["a"], &["d e"], 2, true), "a b c d e"), vec!["a", "d e"]);
    assert_eq!(text_spans(&near(&["a"], &["e"], 0, true), "a b c d e"), Vec::<&str>::new());
}

#[test]
fn spans_merge_adjacent_ranges_and_sort_by_field() {
    let mut mention = Mention::new("m", "ab");
    mention.title = Some("x y".into());
    let doc = Document::new(&mention);
    let plan = Plan::Or(vec![
        Plan::Sequence(seq_in(Field::Title, Form::Folded, "y")),
        Plan::Sequence(seq_in(Field::Title, Form::Folded, "x")),
        Plan::Sequence(seq("ab")),
    ]);
    let span = |field: &'static str, start, end| Span { field: field.into(), start, end };
    assert_eq!(
        spans(&plan, &doc, &Hidden::NONE),
        vec![span("text", 0, 2), span("title", 0, 1), span("title", 2, 3)]
    );
    // "#a" and the bare "a" are adjacent-or-overlapping ranges of one token.
    let tag = Plan::Or(vec![phrase("#a"), phrase("a")]);
    let mention = Mention::new("m", "#a");
    assert_eq!(spans(&tag, &Document::new(&mention), &Hidden::NONE), vec![span("text", 0, 2)]);
}

#[test]
fn folded_terms_run_field_by_field_in_position_order() {
    let mut mention = Mention::new("m", "Zebra #Apple");
    mention.title = Some("Éclair b".into());
    mention.url = Some("https://x.io".into());
    let doc = Document::new(&mention);
    let terms: Vec<&str> = doc.folded_terms().collect();
    assert_eq!(terms, vec!["eclair", "b", "zebra", "#apple", "apple", "https", "x.io", "x", "io"]);
}

/// A small deterministic generator, so the comparison with Tantivy is reproducible.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A Tantivy index of some texts, with the analyzer registered as cull's index does.
struct Oracle {
    searcher: tantivy::Searcher,
    text: tantivy::schema::Field,
    id: tantivy::schema::Field,
    len: usize,
}

impl Oracle {
    /// Indexes `texts`, each in a segment of its own or all in one segment.
    fn new(texts: &[String], segment_per_text: bool) -> tantivy::Result<Oracle> {
        use tantivy::indexer::NoMergePolicy;
        use tantivy::schema::{IndexRecordOption, Schema, TextFieldIndexing, TextOptions, STORED};
        use tantivy::tokenizer::TextAnalyzer;
        use tantivy::{Index, TantivyDocument};

        let mut builder = Schema::builder();
        let indexing = TextFieldIndexing::default()
            .set_tokenizer(FOLDED_TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions);
        let text = builder.add_text_field("text", TextOptions::default().set_indexing_options(indexing));
        let id = builder.add_u64_field("id", STORED);
        let index = Index::create_in_ram(builder.build());
        index.tokenizers().register(FOLDED_TOKENIZER, TextAnalyzer::from(CullTokenizer::new(Form::Folded)));
        let mut writer = index.writer_with_num_threads(1, 50_000_000)?;
        writer.set_merge_policy(Box::new(NoMergePolicy));
        for (n, value) in texts.iter().enumerate() {
            let mut document = TantivyDocument::default();
            document.add_text(text, value);
            document.add_u64(id, n as u64);
            writer.add_document(document)?;
            if segment_per_text {
                writer.commit()?;
            }
        }
        writer.commit()?;
        let searcher = index.reader()?.searcher();
        let segments = if segment_per_text { texts.len() } else { 1 };
        assert_eq!(searcher.segment_readers().len(), segments);
        Ok(Oracle { searcher, text, id, len: texts.len() })
    }

    /// Returns, for each text, whether Tantivy's `PhraseQuery` with `slop` finds it
    /// (scoring disabled, as for a filter).
    fn phrase(&self, words: &[Word], slop: u32) -> tantivy::Result<Vec<bool>> {
        use tantivy::collector::DocSetCollector;
        use tantivy::query::PhraseQuery;
        use tantivy::schema::Value;
        use tantivy::{TantivyDocument, Term};

        let terms =
            words.iter().map(|w| (w.offset as usize, Term::from_field_text(self.text, &w.term))).collect();
        let mut found = vec![false; self.len];
        for address in
            self.searcher.search(&PhraseQuery::new_with_offset_and_slop(terms, slop), &DocSetCollector)?
        {
            let stored: TantivyDocument = self.searcher.doc(address)?;
            let id = stored.get_first(self.id).and_then(|v| v.as_u64()).expect("every document has an id");
            found[id as usize] = true;
        }
        Ok(found)
    }
}

/// Runs hundreds of random exact phrases (of two to four words) and two-word sloppy
/// phrases, some with offset gaps, through Tantivy's `PhraseQuery` and the verifier, and
/// requires the same documents.
///
/// Neither kind depends on the other documents of a segment (which is why the compiler
/// refuses sloppy phrases of more words), so the texts are indexed both one per segment
/// and all in one segment.
#[test]
fn phrases_agree_with_tantivy() -> tantivy::Result<()> {
    let vocabulary = ["a", "b", "c", "#a", "B", "d"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let texts: Vec<String> = (0..200)
        .map(|_| {
            let len = 1 + rng.below(10);
            (0..len).map(|_| vocabulary[rng.below(vocabulary.len())]).collect::<Vec<_>>().join(" ")
        })
        .collect();
    let oracles = [Oracle::new(&texts, true)?, Oracle::new(&texts, false)?];
    let mentions: Vec<Mention> = texts.iter().map(|t| Mention::new("m", t.as_str())).collect();
    let documents: Vec<Document<'_>> = mentions.iter().map(Document::new).collect();

    let query_terms = ["a", "b", "c", "#a"];
    let mut checked_matches = 0;
    for _ in 0..600 {
        let slop = [0, 0, 1, 2, 3, 4, 7][rng.below(7)];
        let len = if slop == 0 { 2 + rng.below(3) } else { 2 };
        let mut offset = 0;
        let words: Vec<Word> = (0..len)
            .map(|i| {
                if i > 0 {
                    offset += 1 + u32::from(rng.below(5) == 0);
                }
                Word { offset, term: query_terms[rng.below(query_terms.len())].to_string() }
            })
            .collect();
        let sequence = Sequence {
            field: TextField { field: Field::Text, form: Form::Folded },
            words: words.clone(),
            prefix: false,
        };
        let plan = if slop == 0 { Plan::Sequence(sequence) } else { Plan::SloppyPhrase { sequence, slop } };
        let native: Vec<bool> = documents.iter().map(|d| matches(&plan, d, &Hidden::NONE)).collect();
        for oracle in &oracles {
            let in_tantivy = oracle.phrase(&words, slop)?;
            for (id, text) in texts.iter().enumerate() {
                assert_eq!(native[id], in_tantivy[id], "{words:?}~{slop} on {text:?}");
            }
        }
        checked_matches += native.iter().filter(|&&m| m).count();
    }
    assert!(checked_matches > 1000, "the random cases should match often, got {checked_matches}");
    Ok(())
}

proptest::proptest! {
    #[test]
    fn a_terms_key_is_its_first_eight_bytes_zero_padded(term in proptest::collection::vec(1u8.., 0..12)) {
        let mut padded = [0u8; 8];
        let len = term.len().min(8);
        padded[..len].copy_from_slice(&term[..len]);
        proptest::prop_assert_eq!(key_of(&term), u64::from_be_bytes(padded));
    }
}
