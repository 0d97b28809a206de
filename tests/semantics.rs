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

use crate::corpus::{generated_pack, real_mentions, Vocabulary};

/// Builds an in-RAM index of `mentions` with the shared schema and analyzer.
pub fn index_of(mentions: &[Mention]) -> (Index, MentionSchema) {
    let schema = MentionSchema::new();
    let index = Index::create_in_ram(schema.schema().clone());
    schema.register_tokenizers(&index);
    let mut writer = index.writer_with_num_threads(1, 50_000_000).expect("index writer");
    for mention in mentions {
        writer.add_document(schema.document(mention)).expect("add document");
    }
    writer.commit().expect("commit");
    (index, schema)
}

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

#[test]
fn matcher_equals_tantivy_on_real_text_for_every_operator() {
    let mentions = real_mentions(1500);
    assert!(mentions.len() > 7000, "the real corpora are missing: {}", mentions.len());
    let vocabulary = Vocabulary::of(&mentions, 20, 800);
    let rules = compile_pack(&generated_pack(&vocabulary, 400, 7));
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
        rules_with_matches * 10 >= rules.len() * 7,
        "only {rules_with_matches} of {} rules match",
        rules.len()
    );
}
