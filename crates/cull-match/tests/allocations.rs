//! Matching allocates nothing per mention in the steady state: every allocation the
//! process makes is counted (a counting global allocator, this test binary only) while
//! real mentions are matched against a pack of real-vocabulary rules whose scratch
//! buffers have already grown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cull_match::{HitKind, MatchScratch, RuleSet};
use cull_model::analyzer::{analyze, Form, Mode};
use cull_model::Mention;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Held by each test while it counts: the counts are the whole process's.
static COUNTING: Mutex<()> = Mutex::new(());

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/text/vader")
}

/// The texts of two real corpora (tweets, editorial snippets): `id<TAB>score<TAB>text`.
fn real_mentions() -> Vec<Mention> {
    ["tweets_GroundTruth.txt", "nytEditorialSnippets_GroundTruth.txt"]
        .iter()
        .flat_map(|file| {
            let path = data().join(file);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            text.lines()
                .filter_map(|line| line.splitn(3, '\t').nth(2).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .enumerate()
        .map(|(i, text)| Mention::new(format!("m{i}"), text))
        .collect()
}

/// Rules over the corpora's words ranked 50th to 2,050th by frequency: word clauses
/// (answered by the prefilter) and phrases, proximity, prefixes, exact spellings and
/// exclusions (verified).
fn rules(mentions: &[Mention]) -> RuleSet {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for mention in mentions {
        for token in analyze(&mention.text, Form::Folded, Mode::Query) {
            if token.term.len() > 3 && token.term.chars().all(|c| c.is_ascii_lowercase()) {
                *counts.entry(token.term).or_default() += 1;
            }
        }
    }
    let mut words: Vec<(String, usize)> = counts.into_iter().collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let words: Vec<String> = words.into_iter().skip(50).take(2000).map(|(w, _)| w).collect();
    let w = |i: usize| words[i % words.len()].as_str();
    let mut pack = String::new();
    for i in 0..3000 {
        let query = match i % 8 {
            0 => w(i).to_string(),
            1 => format!("{} ({} OR {})", w(i), w(i * 7), w(i * 13)),
            2 => format!("({} OR {} OR {}) {}", w(i), w(i + 1), w(i + 2), w(i * 3)),
            3 => format!("\"{} {}\"", w(i), w(i * 5)),
            4 => format!("{} NEAR/3 {}", w(i), w(i * 11)),
            5 => format!("{}* -{}", &w(i)[..3], w(i * 17)),
            6 => format!("{{{}}} OR {}", w(i), w(i * 19)),
            _ => format!("{} -({} OR {})", w(i), w(i * 23), w(i * 29)),
        };
        let exclude = if i % 5 == 0 { format!("exclude = '{}'\n", w(i * 31)) } else { String::new() };
        pack += &format!("[[rule]]\nid = 'r{i}'\nquery = '{query}'\n{exclude}\n");
    }
    let loaded = cull_rules::load_files([(Path::new("allocations.toml"), pack.as_bytes())]);
    assert!(loaded.errors.is_empty(), "{}", loaded.errors[0]);
    RuleSet::new(loaded.rules).expect("rule set")
}

#[test]
fn matching_a_mention_allocates_nothing_once_the_scratch_has_grown() {
    let mentions = real_mentions();
    assert!(mentions.len() > 5000, "the real corpora are missing");
    let set = rules(&mentions);
    let _counting = COUNTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut scratch = MatchScratch::default();
    for mention in &mentions {
        set.match_into(mention, &mut scratch);
    }
    let region = Region::new(GLOBAL);
    let (mut matched, mut culled) = (0, 0);
    for mention in &mentions {
        set.match_into(mention, &mut scratch);
        for hit in scratch.hits() {
            match hit.kind {
                HitKind::Matched => matched += 1,
                HitKind::Culled(..) => culled += 1,
                HitKind::NoMatch => {}
            }
        }
    }
    let change = region.change();
    assert!(
        matched > mentions.len() && culled > 100,
        "the rules must do work: {matched} matches, {culled} culls"
    );
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "allocations while matching {} mentions ({matched} matches, {culled} culls)",
        mentions.len()
    );
}

/// A verdict names each matched rule by its id and version and lists its spans: kept
/// inline, they cost no allocation, so a batch's verdicts allocate per mention (its id,
/// its lists of matched and culled rules, a culled rule's clause), never per match.
#[test]
fn a_verdict_allocates_per_mention_not_per_matched_rule() {
    let mentions = real_mentions();
    let set = rules(&mentions);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let _counting = COUNTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    pool.install(|| set.verdicts(&mentions));
    let region = Region::new(GLOBAL);
    let verdicts = pool.install(|| set.verdicts(&mentions));
    let change = region.change();
    let matched: usize = verdicts.iter().map(|v| v.matched.len()).sum();
    let culled: usize = verdicts.iter().map(|v| v.culled.len()).sum();
    let spilled = verdicts.iter().flat_map(|v| &v.matched).filter(|m| m.spans.spilled()).count();
    let lists =
        verdicts.iter().map(|v| usize::from(!v.matched.is_empty()) + usize::from(!v.culled.is_empty()));
    // The batch's vector and the pool's bookkeeping.
    let batch = 16;
    let expected = mentions.len() + lists.sum::<usize>() + culled + spilled + batch;
    assert!(matched > 2 * mentions.len(), "the rules must match often: {matched} matches");
    assert!(
        change.allocations <= expected,
        "{} allocations for {} mentions with {matched} matches and {culled} culls: more than {expected}",
        change.allocations,
        mentions.len()
    );
}
