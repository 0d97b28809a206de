//! Verification, spans and the ticket snippet with random rules over random
//! multi-field Unicode mentions: one verdict per mention, every span inside its own
//! field on character boundaries, and a snippet made of the field's text.
#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use cull_model::{Channel, Mention};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    query: String,
    exclude: Option<String>,
    text: String,
    title: Option<String>,
    author: Option<String>,
    url: Option<String>,
    lang: Option<String>,
    channel: u8,
}

fuzz_target!(|input: Input| {
    let mut rule = toml::Table::new();
    rule.insert("id".into(), "fuzz".into());
    rule.insert("query".into(), input.query.clone().into());
    if let Some(exclude) = &input.exclude {
        rule.insert("exclude".into(), exclude.clone().into());
    }
    let mut pack = toml::Table::new();
    pack.insert("rule".into(), toml::Value::Array(vec![toml::Value::Table(rule)]));
    let text = toml::to_string(&pack).expect("a table serializes");
    let loaded = cull_rules::load_files([(Path::new("fuzz.toml"), text.as_bytes())]);
    if !loaded.errors.is_empty() {
        return;
    }
    let Ok(rules) = cull_match::RuleSet::new(loaded.rules) else { return };
    let mut mention = Mention::new("m", input.text);
    mention.title = input.title;
    mention.author = input.author;
    mention.url = input.url;
    mention.lang = input.lang;
    mention.channel = Some(Channel::ALL[usize::from(input.channel) % Channel::ALL.len()]);
    let verdicts = rules.verdicts(std::slice::from_ref(&mention));
    assert_eq!(verdicts.len(), 1, "one verdict per mention");
    for matched in &verdicts[0].matched {
        for span in &matched.spans {
            let field = match &*span.field {
                "title" => mention.title.as_deref(),
                "text" => Some(mention.text.as_str()),
                "author" => mention.author.as_deref(),
                "url" => mention.url.as_deref(),
                _ => None,
            };
            if let Some(field) = field {
                assert!(span.start <= span.end && span.end <= field.len(), "{span:?} outside {field:?}");
                assert!(
                    field.is_char_boundary(span.start) && field.is_char_boundary(span.end),
                    "{span:?} in {field:?}"
                );
            }
        }
        let snippet = cull_ticket::snippet(&mention, &matched.spans);
        let core = snippet.trim_matches('…');
        let in_field = [mention.title.as_deref(), Some(mention.text.as_str())]
            .into_iter()
            .flatten()
            .any(|f| f.contains(core));
        assert!(in_field, "snippet {snippet:?} is not from the title or the text");
    }
});
