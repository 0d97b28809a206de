//! Property test: on random small documents and random queries over a small, colliding
//! vocabulary (case, accents, hashtags, repeats), the matcher and Tantivy agree.

use cull_match::verify::{matches, Document, Hidden};
use cull_model::{Channel, Mention};
use cull_rules::query::{compile, parse};
use cull_rules::tantivy_query::search_ids;
use proptest::prelude::*;

use crate::corpus::index_of;

const WORDS: &[&str] = &[
    "slack",
    "Slack",
    "SLACK",
    "#slack",
    "@slack",
    "connections",
    "magazine",
    "Magazine",
    "call",
    "center",
    "café",
    "Cafe",
    "CAFÉ",
    "apple",
    "Apple",
    "pie",
    "connect",
    "connected",
];

const QUERY_WORDS: &[&str] = &[
    "slack",
    "{Slack}",
    "#slack",
    "@slack",
    "connections",
    "magazine",
    "{Magazine}",
    "call",
    "center",
    "cafe",
    "{Café}",
    "apple",
    "pie",
];

fn text() -> impl Strategy<Value = String> {
    let word = proptest::sample::select(WORDS);
    let gap = proptest::sample::select(&[" ", " ", ", ", ". ", " - ", " & "][..]);
    proptest::collection::vec((word, gap), 0..10)
        .prop_map(|pairs| pairs.into_iter().map(|(w, g)| format!("{w}{g}")).collect())
}

fn mention() -> impl Strategy<Value = (String, Option<String>, Option<Channel>, Option<&'static str>)> {
    (
        text(),
        proptest::option::of(text()),
        proptest::option::of(proptest::sample::select(&[Channel::News, Channel::Twitter][..])),
        proptest::option::of(proptest::sample::select(&["en", "fr"][..])),
    )
}

fn leaf() -> impl Strategy<Value = String> {
    let word = proptest::sample::select(QUERY_WORDS).prop_map(str::to_string);
    prop_oneof![
        4 => word.clone(),
        2 => (proptest::sample::select(QUERY_WORDS), proptest::sample::select(QUERY_WORDS))
            .prop_map(|(a, b)| format!("\"{} {}\"", a.trim_matches(['{', '}']), b.trim_matches(['{', '}']))),
        1 => (proptest::sample::select(QUERY_WORDS), proptest::sample::select(QUERY_WORDS), 1u32..4)
            .prop_map(|(a, b, k)| format!("\"{} {}\"~{k}", a.trim_matches(['{', '}']), b.trim_matches(['{', '}']))),
        1 => proptest::sample::select(&["conn*", "sla*", "maga*", "caf*", "#sla*", "{Conn*}"][..]).prop_map(str::to_string),
        1 => (proptest::sample::select(&["title", "text"][..]), word).prop_map(|(f, w)| format!("{f}:{w}")),
        1 => proptest::sample::select(&["channel:news", "lang:en", "lang:fr"][..]).prop_map(str::to_string),
    ]
}

fn query() -> impl Strategy<Value = String> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        let operand = prop_oneof![leaf(), (leaf(), leaf()).prop_map(|(a, b)| format!("({a} OR {b})")),];
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a} -{b})")),
            (operand.clone(), operand, 0u32..4, any::<bool>()).prop_map(|(a, b, k, ordered)| {
                format!("({a} {}NEAR/{k} {b})", if ordered { "O" } else { "" })
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn matcher_and_tantivy_agree_on_random_documents_and_queries(
        docs in proptest::collection::vec(mention(), 1..6),
        query in query(),
    ) {
        let Ok(node) = parse(&query) else { return Ok(()) };
        let Ok(plan) = compile(&node) else { return Ok(()) };
        let mentions: Vec<Mention> = docs
            .into_iter()
            .enumerate()
            .map(|(i, (text, title, channel, lang))| {
                let mut m = Mention::new(format!("d{i}"), text);
                m.title = title;
                m.channel = channel;
                m.lang = lang.map(str::to_string);
                m
            })
            .collect();
        let (index, schema) = index_of(&mentions);
        let expected = search_ids(&index, &schema, &plan).expect("search");
        for m in &mentions {
            let ours = matches(&plan, &Document::new(m), &Hidden::NONE);
            let theirs = expected.contains(&m.id);
            prop_assert_eq!(ours, theirs, "query {} on title {:?} text {:?}", query, m.title, m.text);
        }
    }
}
