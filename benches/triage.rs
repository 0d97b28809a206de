//! Triage's cost next to the matcher's, in one run:
//!
//! * `matcher`: `RuleSet::verdicts` over a batch of real mentions, on one core;
//! * `matcher_and_triage`: the same, then `Triage::triage` for every match of every
//!   verdict and, per batch of [`STAGE_BATCH`] verdicts, `take_incidents` and
//!   `take_changes`, as the ticketing stage does (a fresh triage per iteration, so
//!   that every iteration opens and joins the same tickets rather than replaying).
//!
//! Mentions are the real corpora of `../shared/data` with their own authors and URLs
//! (so author and URL threads join), rules the generated pack `benches/matcher.rs`
//! uses, at [`RULE_COUNT`] rules. A match finds its rule through a map by id, built
//! once, so that the lookup is not counted as triage. Run with
//! `cargo bench -p cull --bench triage -- --warm-up-time 1 --measurement-time 5`;
//! the line at the end gives mentions/s of both and their ratio.

#[path = "../tests/corpus.rs"]
mod corpus;
#[path = "timing.rs"]
mod timing;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use criterion::Throughput;
use cull_match::RuleSet;
use cull_model::Mention;
use cull_rules::{load_files, CompiledRule};
use cull_ticket::triage::{Position, Triage};
use cull_ticket::TicketConfig;
use time::OffsetDateTime;

use corpus::{generated_pack, real_mentions, Vocabulary};
use timing::Timing;

const RULE_COUNT: usize = 1_000;
/// Mentions per corpus (five corpora).
const PER_CORPUS: usize = 400;
/// Verdicts the ticketing stage handles between two `take_changes`.
const STAGE_BATCH: usize = 512;

fn rules(vocabulary: &Vocabulary) -> RuleSet {
    let pack = generated_pack(vocabulary, RULE_COUNT, 42);
    let loaded = load_files([(Path::new("bench.toml"), pack.as_bytes())]);
    assert!(loaded.errors.is_empty(), "{}", loaded.errors[0]);
    RuleSet::new(loaded.rules).expect("rule set")
}

/// Matches `mentions` and triages every match as the ticketing stage does; returns the
/// tickets made.
fn match_and_triage(
    set: &RuleSet,
    by_id: &HashMap<&str, &CompiledRule>,
    config: &TicketConfig,
    mentions: &[Mention],
    now: OffsetDateTime,
) -> usize {
    let mut triage = Triage::new(config).expect("triage");
    let mut tickets = 0;
    for (batch_index, batch) in mentions.chunks(STAGE_BATCH).enumerate() {
        for (i, (mention, verdict)) in batch.iter().zip(set.verdicts(batch)).enumerate() {
            let position = Some(Position { partition: 0, offset: (batch_index * STAGE_BATCH + i) as i64 });
            for matched in &verdict.matched {
                let rule = by_id[matched.rule_id.as_str()];
                tickets += triage.triage(mention, matched, rule, position, now).tickets.len();
            }
        }
        tickets += triage.take_incidents().len();
        tickets += triage.take_changes(now).len();
    }
    tickets
}

fn main() {
    let mentions = real_mentions(PER_CORPUS);
    let vocabulary = Vocabulary::of(&real_mentions(3_000), 1_000, 30_000);
    let set = rules(&vocabulary);
    let compiled: Vec<Arc<CompiledRule>> = set.rules().collect();
    let by_id: HashMap<&str, &CompiledRule> =
        compiled.iter().map(|r| (r.rule.id.as_str(), r.as_ref())).collect();
    let config = TicketConfig::default();
    let now = OffsetDateTime::now_utc();
    let matches: usize = set.verdicts(&mentions).iter().map(|v| v.matched.len()).sum();
    let matched = set.verdicts(&mentions).iter().filter(|v| !v.matched.is_empty()).count();
    eprintln!(
        "{} mentions, {RULE_COUNT} rules: {matched} mentions matched, {matches} matches",
        mentions.len()
    );
    let one_core = timing::one_core();
    let mut criterion = timing::criterion();
    let mut group = criterion.benchmark_group("triage");
    group.throughput(Throughput::Elements(mentions.len() as u64));
    let (mut matcher, mut with_triage) = (Timing::default(), Timing::default());
    group.bench_function("matcher", |b| {
        b.iter_custom(|iters| {
            matcher.measure(iters, || {
                one_core.install(|| mentions.chunks(STAGE_BATCH).map(|batch| set.verdicts(batch).len()).sum())
            })
        })
    });
    group.bench_function("matcher_and_triage", |b| {
        b.iter_custom(|iters| {
            with_triage.measure(iters, || {
                one_core.install(|| match_and_triage(&set, &by_id, &config, &mentions, now))
            })
        })
    });
    group.finish();
    criterion.final_summary();
    let rate = |timing: &Timing| timing.per_second(mentions.len()).expect("both benchmarks ran");
    let (matcher, with_triage) = (rate(&matcher), rate(&with_triage));
    println!(
        "\nmatcher alone: {matcher:.0} mentions/s; matcher + triage: {with_triage:.0} mentions/s; ratio {:.2} (one core)",
        with_triage / matcher
    );
}
