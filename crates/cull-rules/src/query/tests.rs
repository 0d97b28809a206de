use proptest::prelude::*;

use super::*;
use crate::plan::{Field, Plan};

fn error_of(query: &str) -> QueryError {
    match parse(query) {
        Err(e) => e,
        Ok(node) => compile(&node).expect_err(query).remove(0),
    }
}

fn plan_of(query: &str) -> Plan {
    compile(&parse(query).unwrap()).unwrap()
}

#[test]
fn precedence_is_near_then_not_then_and_then_or() {
    let node = parse(r#"a b OR c NEAR/3 (d OR "e f") -g"#).unwrap();
    assert_eq!(node.to_string(), r#"(a b) OR ((c NEAR/3 (d OR "e f")) (NOT g))"#);
}

#[test]
fn spans_point_at_the_clause() {
    let query = r#"slack title:"slack adjuster""#;
    let NodeKind::And(nodes) = parse(query).unwrap().kind else { panic!() };
    assert_eq!(&query[nodes[1].span.clone()], r#"title:"slack adjuster""#);
}

#[test]
fn operators_and_fields_parse_into_their_nodes() {
    let cases = [
        ("{Slack}", "{Slack}"),
        ("connect*", "connect*"),
        (r#""a b"~2"#, r#""a b"~2"#),
        (r#"{"Exact Phrase"}"#, r#"{"Exact Phrase"}"#),
        ("a AND b", "a b"),
        ("a && b || c", "(a b) OR c"),
        ("a ONEAR/0 b", "a ONEAR/0 b"),
        ("site:example.com", "site:example.com"),
        ("title:(a OR b)", "title:(a OR b)"),
        ("#slack @slackhq", "#slack @slackhq"),
        ("NOT a b", "(NOT a) b"),
        ("e-mail", "e-mail"),
    ];
    for (query, canonical) in cases {
        assert_eq!(parse(query).unwrap().to_string(), canonical, "{query}");
    }
}

#[test]
fn syntax_errors_name_the_place_and_the_fix() {
    let cases: &[(&str, &str, &str)] = &[
        ("", "query is empty", ""),
        ("(a OR b", "never closed", "("),
        ("a)", "unmatched `)`", ")"),
        ("\"call center", "unterminated phrase", "\"call center"),
        ("titel:foo", "unknown field `titel`", "titel"),
        ("a NEAR b", "`NEAR` needs a distance", "NEAR"),
        ("a NEAR/x b", "is not a distance", "NEAR/x"),
        ("a NEAR/999 b", "distance 999 is too large", "NEAR/999"),
        ("a NEAR/2 b NEAR/2 c", "cannot be chained", "NEAR/2"),
        ("OR a", "operator without a clause", "OR"),
        ("a OR", "query ends where", ""),
        ("co*nn", "only allowed at the end", "co*nn"),
        ("{a b}", "holds one word or one phrase", "{a b"),
        ("\"a b\"~", "needs a number", "~"),
    ];
    for (query, message, at) in cases {
        let error = error_of(query);
        assert!(error.message.contains(message), "{query}: {error}");
        assert_eq!(&query[error.span.clone()], *at, "{query}: {error}");
    }
}

#[test]
fn validation_rejects_queries_that_cannot_mean_what_they_say() {
    let cases: &[(&str, &str)] = &[
        ("NOT slack", "cannot be only NOT"),
        ("-a -b", "every clause here is negated"),
        ("a OR -b", "NOT cannot be an alternative of OR"),
        ("*", "has no words"),
        ("co*", "shorter than 3 characters"),
        ("e-ma*", "applies to one word"),
        ("&&&", "has no words"),
        ("!!!", "has no words"),
        ("title:text:a", "`text:` inside `title:`"),
        ("channel:tv", "unknown channel `tv`"),
        ("site:exa*", "takes a whole value"),
        ("(a b) NEAR/3 c", "a NEAR operand is a word, a phrase or an OR of them"),
        (r#""a b"~2 NEAR/3 c"#, "a phrase with `~n` cannot be a NEAR operand"),
        ("title:a NEAR/3 text:b", "positions in one field"),
        ("lang:en NEAR/3 b", "needs a text field"),
        (r#""a b c"~2"#, "may have two words, not 3"),
    ];
    for (query, message) in cases {
        let error = error_of(query);
        assert!(error.message.contains(message), "{query}: {error}");
    }
}

#[test]
fn every_error_of_a_query_is_reported() {
    let errors = compile(&parse("co* AND titel OR channel:tv").unwrap()).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn pathological_queries_get_bounded_errors() {
    let deep = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(error_of(&deep).message.contains("nests deeper than 64"));
    let negations = format!("{}a", "-".repeat(10_000));
    assert!(error_of(&negations).message.contains("nests deeper than 64"));
    let braces = format!("{}a{}", "{".repeat(10_000), "}".repeat(10_000));
    assert!(error_of(&braces).message.contains("nests deeper than 64"));
    let wide = (0..5_000).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" OR ");
    assert!(error_of(&wide).message.contains("more than 4096 words"));
    let long = "a".repeat(MAX_QUERY_BYTES + 1);
    assert!(error_of(&long).message.contains("the limit is 65536"));
    let within = (0..4000).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" OR ");
    assert!(matches!(plan_of(&within), Plan::Or(branches) if branches.len() == 4000));
}

#[test]
fn default_scope_expands_to_title_and_text() {
    let Plan::Or(branches) = plan_of("slack") else { panic!() };
    let fields: Vec<Field> = branches
        .iter()
        .map(|b| match b {
            Plan::Sequence(s) => s.field.field,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(fields, vec![Field::Title, Field::Text]);
    assert!(matches!(plan_of("title:slack"), Plan::Sequence(_)));
}

#[test]
fn multi_word_terms_become_phrases_and_keywords_are_normalized() {
    let Plan::Sequence(sequence) = plan_of("text:e-mail") else { panic!() };
    let terms: Vec<&str> = sequence.words.iter().map(|w| w.term.as_str()).collect();
    assert_eq!(terms, ["e", "mail"]);
    assert_eq!(
        plan_of("site:WWW.Example.COM."),
        Plan::Keyword { field: Field::Site, value: "www.example.com".into() }
    );
    assert_eq!(
        plan_of(r#"source:"Google Alerts""#),
        Plan::Keyword { field: Field::Source, value: "google alerts".into() }
    );
}

#[test]
fn near_in_the_default_scope_is_one_near_per_field() {
    let Plan::Or(branches) = plan_of(r#"connections NEAR/3 (dehaan OR "call center")"#) else { panic!() };
    assert_eq!(branches.len(), 2);
    let Plan::Near { left, right, distance: 3, ordered: false } = &branches[0] else { panic!() };
    assert_eq!(left.len(), 1);
    assert_eq!(right.len(), 2);
    assert_eq!(right[1].words.len(), 2);
}

#[test]
fn masks_accept_words_phrases_and_alternatives_only() {
    let node = parse(r#""family connections magazine" OR title:"kingdom connections""#).unwrap();
    let sequences = compile_mask(&node).unwrap();
    assert_eq!(sequences.len(), 3, "two fields for the first alternative, one for the second");
    let node = parse("a b").unwrap();
    assert!(compile_mask(&node).unwrap_err()[0]
        .message
        .contains("a mask is a word, a phrase or an OR of them"));
}

fn word() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zé#][a-z0-9é]{0,6}").unwrap().prop_filter("keyword", |w| {
        !matches!(w.as_str(), "AND" | "OR" | "NOT") && !w.starts_with("near") && !w.starts_with("onear")
    })
}

fn leaf() -> impl Strategy<Value = Node> {
    let term = (word(), any::<bool>(), any::<bool>())
        .prop_map(|(text, prefix, exact)| NodeKind::Term(Term { text, prefix, exact }));
    let phrase = (proptest::collection::vec(word(), 1..4), proptest::option::of(0u32..5), any::<bool>())
        .prop_map(|(words, slop, exact)| NodeKind::Phrase(Phrase { text: words.join(" "), slop, exact }));
    prop_oneof![term, phrase].prop_map(|kind| Node { kind, span: 0..0 })
}

fn tree() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        let node = |kind| Node { kind, span: 0..0 };
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(move |v| node(NodeKind::And(v))),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(move |v| node(NodeKind::Or(v))),
            inner.clone().prop_map(move |n| node(NodeKind::Not(Box::new(n)))),
            (inner.clone(), inner.clone(), 0u32..10, any::<bool>()).prop_map(
                move |(left, right, distance, ordered)| {
                    node(NodeKind::Near(Box::new(Near { left, right, distance, ordered })))
                }
            ),
            (proptest::sample::select(Field::ALL.to_vec()), inner)
                .prop_map(move |(f, n)| node(NodeKind::Scoped(f, Box::new(n)))),
        ]
    })
}

proptest! {
    #[test]
    fn printing_then_parsing_gives_the_same_tree(tree in tree()) {
        let text = tree.to_string();
        let reparsed = parse(&text);
        prop_assert_eq!(reparsed, Ok(tree), "{}", text);
    }

    #[test]
    fn parser_and_compiler_never_panic(query in "[a-z\"(){}*~:/ #@\\-]{0,40}|[A-Z]{2,5}[ /0-9a-z()\"]{0,20}") {
        if let Ok(node) = parse(&query) {
            let _ = compile(&node);
        }
    }
}
