//! One client's matching throughput as other clients add rules, in one run.
//!
//! A client (acme) has 1,000 generated rules and its mentions are real text of about
//! 300 bytes. Other clients then add 1,000 rules each (10 and 100 of them: 10k and 100k
//! rules that acme's mentions must never meet). Two layouts of the same rules:
//!
//! * `partitioned`: as cull runs them, each client's rules in its own partition with
//!   its own prefilter, so acme's mentions meet acme's rules and the global ones only;
//! * `one_pack`: the same rules as one global pack (what a deployment without clients
//!   would do), where every rule is a candidate for every mention.
//!
//! The table gives acme's mentions/s on one core and the ratio to acme alone. Run with
//! `cargo bench -p cull --bench clients`; `CULL_BENCH_CLIENTS=0,10` runs fewer sizes.

#[path = "../tests/corpus.rs"]
mod corpus;
#[path = "timing.rs"]
mod timing;

use std::path::Path;
use std::time::Instant;

use criterion::{BenchmarkId, Throughput};
use cull_match::RuleSet;
use cull_model::Mention;
use cull_rules::{load_pack, CompiledRule, Taken};

use corpus::{generated_pack, real_mentions, Vocabulary};
use timing::Timing;

/// Rules of each client.
const RULES_PER_CLIENT: usize = 1_000;
/// Mentions of acme matched per iteration.
const BATCH: usize = 2_000;

/// Returns the numbers of other clients to run: 0, 10 and 100, or those listed in
/// `CULL_BENCH_CLIENTS`.
fn other_clients() -> Vec<usize> {
    match std::env::var("CULL_BENCH_CLIENTS") {
        Ok(list) => list.split(',').map(|n| n.trim().parse().expect("CULL_BENCH_CLIENTS: numbers")).collect(),
        Err(_) => vec![0, 10, 100],
    }
}

/// Returns acme's mentions: real text joined to about 300 bytes.
fn acme_mentions() -> Vec<Mention> {
    let mut mentions: Vec<Mention> = Vec::new();
    let mut text = String::new();
    for m in real_mentions(3_000) {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(m.title.as_deref().unwrap_or(""));
        text.push(' ');
        text.push_str(&m.text);
        if text.len() >= 280 {
            let mut mention = Mention::new(format!("acme:{}", mentions.len()), std::mem::take(&mut text));
            mention.client = Some("acme".into());
            mention.channel = m.channel;
            mention.lang = m.lang.clone();
            mention.url = m.url.clone();
            mentions.push(mention);
        }
        if mentions.len() == BATCH {
            break;
        }
    }
    mentions
}

/// Returns the generated pack of client number `n` (0 is acme), as `client`'s rules,
/// or as global rules (ids made unique across clients) when `client` is `None`.
fn pack(vocabulary: &Vocabulary, n: usize, client: Option<&str>) -> Vec<CompiledRule> {
    let text = generated_pack(vocabulary, RULES_PER_CLIENT, 42 + n as u64)
        .replace("id = \"gen-", &format!("id = \"c{n}-"));
    let loaded = load_pack(client, [(Path::new("bench.toml"), text.as_bytes())], &mut Taken::default());
    assert!(loaded.errors.is_empty(), "{}", loaded.errors[0]);
    loaded.rules
}

fn main() {
    let mentions = acme_mentions();
    let vocabulary = Vocabulary::of(&real_mentions(3_000), 1_000, 30_000);
    let acme = pack(&vocabulary, 0, Some("acme"));
    let one_core = timing::one_core();
    let mut criterion = timing::criterion();
    let mut rows = Vec::new();
    for others in other_clients() {
        let started = Instant::now();
        let mut partitioned_rules = acme.clone();
        let mut one_pack_rules = pack(&vocabulary, 0, None);
        for n in 1..=others {
            partitioned_rules.extend(pack(&vocabulary, n, Some(&format!("client-{n}"))));
            one_pack_rules.extend(pack(&vocabulary, n, None));
        }
        let partitioned = RuleSet::new(partitioned_rules).expect("rule set");
        let one_pack = RuleSet::new(one_pack_rules).expect("rule set");
        eprintln!("{others} other clients: {} rules, built in {:.1?}", partitioned.len(), started.elapsed());
        let same = partitioned.verdicts(&mentions).iter().map(|v| v.matched.len()).sum::<usize>();
        let alone = RuleSet::new(acme.clone()).expect("rule set");
        assert_eq!(
            same,
            alone.verdicts(&mentions).iter().map(|v| v.matched.len()).sum::<usize>(),
            "acme's mentions meet acme's rules only"
        );
        let mut group = criterion.benchmark_group(format!("other_clients_{others}"));
        group.throughput(Throughput::Elements(mentions.len() as u64));
        let (mut timed_partitioned, mut timed_one_pack) = (Timing::default(), Timing::default());
        group.bench_function(BenchmarkId::new("partitioned", others), |b| {
            b.iter_custom(|iters| {
                timed_partitioned
                    .measure(iters, || one_core.install(|| partitioned.verdicts(&mentions).len()))
            })
        });
        group.bench_function(BenchmarkId::new("one_pack", others), |b| {
            b.iter_custom(|iters| {
                timed_one_pack.measure(iters, || one_core.install(|| one_pack.verdicts(&mentions).len()))
            })
        });
        group.finish();
        let candidates =
            (candidates_per_mention(&partitioned, &mentions), candidates_per_mention(&one_pack, &mentions));
        rows.push((others, partitioned.len(), candidates, timed_partitioned, timed_one_pack));
    }
    criterion.final_summary();
    let base = rows.iter().find(|(others, ..)| *others == 0).and_then(|(_, _, _, t, _)| t.per_second(BATCH));
    println!("\n| other clients | rules in all | candidates/mention, partitioned | one pack | acme mentions/s, partitioned (1 core) | ÷ acme alone | acme mentions/s, one pack | ÷ acme alone |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (others, rules, (partitioned_candidates, one_pack_candidates), partitioned, one_pack) in rows {
        let (partitioned, one_pack) = (partitioned.per_second(BATCH), one_pack.per_second(BATCH));
        let ratio = |value: Option<f64>| match (value, base) {
            (Some(value), Some(base)) => format!("{:.2}", value / base),
            _ => "-".to_string(),
        };
        println!(
            "| {others} | {rules} | {partitioned_candidates:.1} | {one_pack_candidates:.1} | {:.0} | {} | {:.0} | {} |",
            partitioned.unwrap_or(0.0),
            ratio(partitioned),
            one_pack.unwrap_or(0.0),
            ratio(one_pack)
        );
    }
}

/// Returns how many rules the prefilters hand to verification per mention, on
/// average: the work that grows with the rule count.
fn candidates_per_mention(set: &RuleSet, mentions: &[Mention]) -> f64 {
    mentions.iter().map(|m| set.candidate_count(m)).sum::<usize>() as f64 / mentions.len() as f64
}
