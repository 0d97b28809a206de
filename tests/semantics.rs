//! The semantics proof: the matcher agrees with Tantivy on real text.
//!
//! DESIGN.md defines a rule's meaning as a Tantivy search: a rule matches a mention if
//! and only if searching an index holding the mention with the rule's compiled query
//! returns it. These tests hold the matcher (prefilter plus native verifier, the whole
//! production path) to that definition on thousands of real mentions and hundreds of
//! generated rules covering every operator, and on random small documents and queries.

use std::collections::BTreeSet;
use std::path::Path;

use cull_match::RuleSet;
use cull_model::Mention;
use cull_rules::tantivy_query::{search_ids, MentionSchema};
use cull_rules::{load_files, CompiledRule, Plan};
use tantivy::Index;

use crate::corpus::{
    boundary_pack, cnf_query, cnf_rules, generated_pack, index_of, real_mentions, Vocabulary, Workload,
};

fn compile_pack(toml: &str) -> Vec<CompiledRule> {
    let loaded = load_files([(Path::new("generated.toml"), toml.as_bytes())]);
    let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "generated pack does not load:\n{}", errors.join("\n"));
    loaded.rules
}

/// For every rule, the set of mention ids the matcher matches.
fn matcher_results(rules: &[CompiledRule], mentions: &[Mention]) -> Vec<BTreeSet<String>> {
    let set = RuleSet::new(rules.to_vec()).expect("rule set");
    let mut results = vec![BTreeSet::new(); rules.len()];
    for verdict in set.verdicts(mentions) {
        for matched in verdict.matched {
            let index = rules.iter().position(|r| r.rule.id == matched.rule_id).expect("known rule");
            results[index].insert(verdict.mention_id.clone());
        }
    }
    results
}

fn tantivy_results(index: &Index, schema: &MentionSchema, plan: &Plan) -> BTreeSet<String> {
    search_ids(index, schema, plan).expect("search").into_iter().collect()
}

/// Rules of plain word clauses are answered by the prefilter alone (a candidate is a
/// match, nothing is verified): their answers must still be Tantivy's, a word seen
/// only in the author or URL must not count, and each verdict must be what the
/// verifier gives.
#[test]
fn rules_the_prefilter_proves_equal_tantivy_and_the_verifier_on_real_text() {
    let mentions = real_mentions(1500);
    let vocabulary = Vocabulary::of(&mentions, 20, 3000);
    let mut pack = String::new();
    for (workload, seed) in [(Workload::Dense, 3), (Workload::Sparse, 5)] {
        for (i, rule) in cnf_rules(&vocabulary, workload, 300, seed).iter().enumerate() {
            let query = cnf_query(rule);
            pack += &format!("[[rule]]\nid = '{}-{i}'\nquery = '{query}'\n\n", workload.name());
        }
    }
    // Words of the authors and URLs, which a proven rule must not see.
    for (i, word) in ["huffpost", "www", "reuters", "com"].iter().enumerate() {
        pack += &format!("[[rule]]\nid = 'elsewhere-{i}'\nquery = '{word}'\n\n");
    }
    let rules = compile_pack(&pack);
    let set = RuleSet::new(rules.clone()).expect("rule set");
    let partition = set.partitions().next().expect("the global partition");
    let proven = (0..rules.len() as u32).filter(|&i| partition.prefilter().proves(i)).count();
    assert_eq!(proven, rules.len(), "every rule here is plain word clauses");
    let (index, schema) = index_of(&mentions);
    let ours = matcher_results(&rules, &mentions);
    let mut matched_somewhere = 0;
    for (rule, matched) in rules.iter().zip(&ours) {
        let expected = tantivy_results(&index, &schema, &rule.matching_plan());
        assert_eq!(*matched, expected, "{} `{}`", rule.rule.id, rule.rule.query);
        matched_somewhere += usize::from(!expected.is_empty());
    }
    assert!(matched_somewhere * 3 > rules.len(), "only {matched_somewhere} rules match: a vacuous pass");
    let urls = mentions.iter().filter(|m| m.url.is_some()).count();
    assert!(urls > 1000 && ours[rules.len() - 1].len() < urls / 2, "URL words are not title or text words");
    for (mention, verdict) in mentions.iter().zip(set.verdicts(&mentions)) {
        let doc = cull_match::verify::Document::new(mention);
        let verified: Vec<(String, Vec<cull_model::Span>)> = rules
            .iter()
            .filter_map(|rule| match cull_match::evaluate(rule, &doc) {
                cull_match::Outcome::Matched(spans) => Some((rule.rule.id.clone(), spans)),
                _ => None,
            })
            .collect();
        let proven: Vec<(String, Vec<cull_model::Span>)> =
            verdict.matched.into_iter().map(|m| (m.rule_id.into(), m.spans.into_vec())).collect();
        assert_eq!(proven, verified, "{}", mention.id);
    }
}

#[test]
fn matcher_equals_tantivy_on_real_text_for_every_operator() {
    let mentions = real_mentions(1500);
    assert!(mentions.len() > 7000, "the real corpora are missing: {}", mentions.len());
    let vocabulary = Vocabulary::of(&mentions, 20, 800);
    let pack = generated_pack(&vocabulary, 400, 7) + &boundary_pack(&vocabulary, 100, 11);
    let rules = compile_pack(&pack);
    let (index, schema) = index_of(&mentions);
    let ours = matcher_results(&rules, &mentions);
    let mut rules_with_matches = 0;
    let mut disagreements = Vec::new();
    for (rule, matched) in rules.iter().zip(&ours) {
        let expected = tantivy_results(&index, &schema, &rule.matching_plan());
        rules_with_matches += usize::from(!expected.is_empty());
        if *matched != expected {
            let only_ours: Vec<_> = matched.difference(&expected).take(3).collect();
            let only_tantivy: Vec<_> = expected.difference(matched).take(3).collect();
            disagreements.push(format!(
                "{} `{}`: matcher only {only_ours:?}, tantivy only {only_tantivy:?}",
                rule.rule.id, rule.rule.query
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} rule(s) disagree:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    // Guard against a vacuous pass: most generated rules must match something.
    assert!(
        rules_with_matches * 10 >= rules.len() * 6,
        "only {rules_with_matches} of {} rules match",
        rules.len()
    );
}

/// However a post writes a brand (a possessive with either apostrophe, a ticker or a
/// domain that segmentation keeps whole, invisible format characters inside or
/// around it), the matcher and the index both find it, and still agree.
#[test]
fn brands_are_found_however_written_and_matcher_and_index_agree() {
    let texts = [
        ("possessive", "Slack's outage hit Apple\u{2019}s teams"),
        ("ticker", "Slack Technologies (NASDAQ:WORK) and T-Mobile (NYSE:TMUS) fell"),
        ("domain", "status page at slack.com says all is well"),
        ("lrm", "\u{5E9}\u{5DC}\u{5D5}\u{5DD} Slack\u{200E} \u{5E0}\u{5E4}\u{5DC}"),
        ("isolate", "outage at \u{2068}Slack\u{2069} again"),
        ("zwj", "Slack\u{200D} is down"),
        ("soft-hyphen", "Sla\u{AD}ck is down"),
        ("elision", "l'Apple de Cupertino"),
    ];
    let mentions: Vec<Mention> = texts.iter().map(|(id, text)| Mention::new(*id, *text)).collect();
    let pack = [
        ("slack", "slack", &["possessive", "ticker", "domain", "lrm", "isolate", "zwj", "soft-hyphen"][..]),
        ("exact-slack", "{Slack}", &["possessive", "ticker", "lrm", "isolate", "zwj", "soft-hyphen"]),
        ("apple", "apple", &["possessive", "elision"]),
        ("nasdaq-work", "\"nasdaq work\"", &["ticker"]),
        ("ticker-whole", "\"nasdaq:work\"", &["ticker"]),
        ("tmus", "tmus", &["ticker"]),
        ("domain", "slack.com", &["domain"]),
        ("near", "slack NEAR/1 says", &["domain"]),
    ];
    let toml: String = pack
        .iter()
        .map(|(id, query, _)| format!("[[rule]]\nid = \"{id}\"\nname = \"{id}\"\nquery = '{query}'\n"))
        .collect();
    let rules = compile_pack(&toml);
    let (index, schema) = index_of(&mentions);
    for ((rule, matched), (id, _, expected)) in rules.iter().zip(matcher_results(&rules, &mentions)).zip(pack)
    {
        let expected: BTreeSet<String> = expected.iter().map(|e| e.to_string()).collect();
        assert_eq!(matched, expected, "matcher, rule {id}");
        assert_eq!(tantivy_results(&index, &schema, &rule.matching_plan()), expected, "index, rule {id}");
    }
}

/// Returns `text` with every occurrence of each mask phrase overwritten by a word that
/// occurs nowhere, keeping every other word at its position. This is the meaning of a
/// mask, computed independently of the matcher: Tantivy searching the rewritten text
/// must find what the matcher finds with the mask.
fn without_masked_words(text: &str, masks: &[Vec<String>]) -> String {
    use cull_model::analyzer::{analyze, Form, Mode};
    // Index-mode tokens grouped by position: a hashtag stands at one position with
    // its bare word, and the widest token covers both.
    let mut positions: Vec<(Vec<String>, usize, usize)> = Vec::new();
    for token in analyze(text, Form::Folded, Mode::Index) {
        let position = token.position as usize;
        while positions.len() <= position {
            positions.push((Vec::new(), usize::MAX, 0));
        }
        let slot = &mut positions[position];
        slot.0.push(token.term);
        slot.1 = slot.1.min(token.start);
        slot.2 = slot.2.max(token.end);
    }
    let mut hidden = vec![false; positions.len()];
    for mask in masks {
        for start in 0..positions.len() {
            let occurs = mask
                .iter()
                .enumerate()
                .all(|(i, word)| positions.get(start + i).is_some_and(|(terms, _, _)| terms.contains(word)));
            if occurs {
                hidden[start..start + mask.len()].iter_mut().for_each(|h| *h = true);
            }
        }
    }
    let mut rewritten = String::new();
    let mut copied = 0;
    for (position, (_, start, end)) in positions.iter().enumerate() {
        if hidden[position] && *start != usize::MAX {
            rewritten.push_str(&text[copied..*start]);
            rewritten.push_str("zzqxmasked");
            copied = *end;
        }
    }
    rewritten.push_str(&text[copied..]);
    rewritten
}

#[test]
fn masks_hide_exactly_their_occurrences_on_real_text() {
    let mentions = real_mentions(600);
    let vocabulary = Vocabulary::of(&mentions, 20, 800);
    let mut pack = String::new();
    let mut masks: Vec<Vec<Vec<String>>> = Vec::new();
    for (i, (x, y)) in vocabulary.bigrams.iter().take(80).enumerate() {
        let (query, mask) = if i % 2 == 0 {
            (x.clone(), vec![vec![x.clone(), y.clone()]])
        } else {
            (format!("\"{y}\" OR {x}"), vec![vec![x.clone(), y.clone()], vec![y.clone(), x.clone()]])
        };
        let mask_list: Vec<String> = mask.iter().map(|m| format!("'\"{}\"'", m.join(" "))).collect();
        pack.push_str(&format!(
            "[[rule]]\nid = \"mask-{i}\"\nquery = '{query}'\nmask = [{}]\n\n",
            mask_list.join(", ")
        ));
        masks.push(mask);
    }
    let rules = compile_pack(&pack);
    let ours = matcher_results(&rules, &mentions);
    let (original_index, schema) = index_of(&mentions);
    // Hiding words only removes matches, so only the mentions a query matches without
    // masks need rewriting. All rules' rewritten mentions go into one index, each
    // tagged with its rule through the `source` field.
    let unmasked: Vec<BTreeSet<String>> =
        rules.iter().map(|rule| tantivy_results(&original_index, &schema, &rule.query)).collect();
    let mut rewritten = Vec::new();
    for (i, mask) in masks.iter().enumerate() {
        for m in mentions.iter().filter(|m| unmasked[i].contains(&m.id)) {
            let mut m = m.clone();
            m.text = without_masked_words(&m.text, mask);
            m.title = m.title.as_deref().map(|t| without_masked_words(t, mask));
            m.source = Some(format!("rule-{i}"));
            rewritten.push(m);
        }
    }
    let (index, schema) = index_of(&rewritten);
    let (mut culled_somewhere, mut disagreements) = (0, Vec::new());
    for (i, (rule, matched)) in rules.iter().zip(&ours).enumerate() {
        let only_this_rule = Plan::Keyword { field: cull_rules::Field::Source, value: format!("rule-{i}") };
        let plan = Plan::And { must: vec![rule.query.clone(), only_this_rule], must_not: Vec::new() };
        let expected = tantivy_results(&index, &schema, &plan);
        culled_somewhere += usize::from(unmasked[i].len() > expected.len());
        if *matched != expected {
            disagreements.push(format!(
                "{} `{}` masks {:?}: matcher {} vs tantivy {}",
                rule.rule.id,
                rule.rule.query,
                masks[i],
                matched.len(),
                expected.len()
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    assert!(culled_somewhere * 2 >= rules.len(), "masks hid something for only {culled_somewhere} rules");
}
