//! Matcher throughput against the two baselines DESIGN.md sets, in one run:
//!
//! * `cull`: the production path (prefilter + verification) on one core;
//! * `aho_corasick_scan`: a bare Aho-Corasick scan of the same bytes for the same
//!   literals (the anchors of the same rules), the ceiling of any matcher that reads
//!   every byte once;
//! * `percolator`: every rule's compiled Tantivy query against an in-RAM Tantivy index
//!   of a batch of 500 mentions, the approach of stored-query percolators, batched;
//! * `percolator_per_mention`: the same with one mention per index, as a percolator
//!   handles a single incoming document.
//!
//! Rules are generated from the vocabulary of the real corpora in `../shared/data`
//! (terms, phrases, NEAR, NOT, prefixes, fields), mentions are real text joined to
//! about 300 bytes. Run with `cargo bench -p cull --bench matcher`; the table at the
//! end gives mentions/s and the ratios.

#[path = "../tests/corpus.rs"]
mod corpus;
#[path = "timing.rs"]
mod timing;

use std::path::Path;
use std::time::{Duration, Instant};

use aho_corasick::AhoCorasick;
use criterion::{BenchmarkId, Throughput};
use cull_match::verify::Document;
use cull_match::RuleSet;
use cull_model::Mention;
use cull_rules::{load_files, CompiledRule};
use tantivy::collector::DocSetCollector;

use corpus::{generated_pack, index_of, real_mentions, Vocabulary};
use timing::Timing;

const RULE_COUNTS: [usize; 4] = [100, 1_000, 10_000, 100_000];

/// Returns the rule counts to run: all of [`RULE_COUNTS`], or those listed in
/// `CULL_BENCH_RULES` (comma-separated) for a quicker run.
fn rule_counts() -> Vec<usize> {
    match std::env::var("CULL_BENCH_RULES") {
        Ok(list) => list.split(',').map(|n| n.trim().parse().expect("CULL_BENCH_RULES: numbers")).collect(),
        Err(_) => RULE_COUNTS.to_vec(),
    }
}
/// The percolator evaluates every rule for every batch; beyond this it takes minutes.
const PERCOLATOR_MAX_RULES: usize = 10_000;
const BATCH: usize = 2_000;
const PERCOLATOR_BATCH: usize = 500;
/// Mentions percolated one at a time (one index per mention, as a stored-query
/// percolator handles a document), per iteration.
const SINGLE_PERCOLATOR_BATCH: usize = 20;

/// Joins consecutive real mentions of one corpus until each is about 300 bytes.
fn mentions_of_about_300_bytes() -> Vec<Mention> {
    let mut joined = Vec::new();
    let mut current: Option<Mention> = None;
    for m in real_mentions(3_000) {
        let body = match &m.title {
            Some(title) => format!("{title}. {}", m.text),
            None => m.text.clone(),
        };
        match current.as_mut() {
            Some(c) if c.text.len() < 280 => {
                c.text.push(' ');
                c.text.push_str(&body);
            }
            _ => {
                joined.extend(current.take());
                let mut next = Mention::new(format!("bench-{}", joined.len()), body);
                next.channel = m.channel;
                next.lang = m.lang.clone();
                next.url = m.url.clone();
                current = Some(next);
            }
        }
    }
    joined.extend(current);
    joined.truncate(BATCH);
    joined
}

fn compile(count: usize, vocabulary: &Vocabulary) -> (Vec<CompiledRule>, Duration) {
    let pack = generated_pack(vocabulary, count, 42);
    let started = Instant::now();
    let loaded = load_files([(Path::new("bench.toml"), pack.as_bytes())]);
    assert!(loaded.errors.is_empty(), "{}", loaded.errors[0]);
    (loaded.rules, started.elapsed())
}

fn bare_scan(rules: &[CompiledRule]) -> AhoCorasick {
    let literals: Vec<&str> =
        rules.iter().flat_map(|r| r.anchors.iter().flatten().flatten()).map(|a| a.term.as_str()).collect();
    AhoCorasick::builder().ascii_case_insensitive(true).build(literals).expect("automaton")
}

fn percolate(rules: &[CompiledRule], mentions: &[Mention]) -> usize {
    let (index, schema) = index_of(mentions);
    let searcher = index.reader().expect("reader").searcher();
    rules
        .iter()
        .map(|rule| {
            searcher.search(&*schema.query(&rule.matching_plan()), &DocSetCollector).expect("search").len()
        })
        .sum()
}

fn main() {
    let mentions = mentions_of_about_300_bytes();
    let bytes: usize = mentions.iter().map(|m| m.text.len()).sum();
    eprintln!("{} mentions, {} bytes on average", mentions.len(), bytes / mentions.len());
    let vocabulary = Vocabulary::of(&real_mentions(3_000), 1_000, 30_000);
    let one_core = timing::one_core();
    let mut criterion = timing::criterion();
    let mut analysis = Timing::default();
    criterion.bench_function("analysis_only", |b| {
        b.iter_custom(|iters| {
            analysis.measure(iters, || {
                mentions.iter().map(|m| Document::new(m).folded_terms().count()).sum::<usize>()
            })
        })
    });
    let mut rows = Vec::new();
    for count in rule_counts() {
        let (rules, compile_time) = compile(count, &vocabulary);
        let started = Instant::now();
        let set = RuleSet::new(rules.clone()).expect("rule set");
        let build_time = started.elapsed();
        let scan = bare_scan(&rules);
        let candidates = candidates_per_mention(&set, &mentions);
        let mut group = criterion.benchmark_group(format!("rules_{count}"));
        group.throughput(Throughput::Elements(mentions.len() as u64));
        let mut timings = Timings::default();
        group.bench_function(BenchmarkId::new("cull", count), |b| {
            b.iter_custom(|iters| {
                timings.cull.measure(iters, || one_core.install(|| set.verdicts(&mentions).len()))
            })
        });
        group.bench_function(BenchmarkId::new("aho_corasick_scan", count), |b| {
            b.iter_custom(|iters| {
                timings.scan.measure(iters, || mentions.iter().map(|m| scan.find_iter(&m.text).count()).sum())
            })
        });
        group.finish();
        if count <= PERCOLATOR_MAX_RULES {
            let batch = &mentions[..PERCOLATOR_BATCH];
            let mut group = criterion.benchmark_group(format!("rules_{count}"));
            group.throughput(Throughput::Elements(batch.len() as u64));
            group.sample_size(10).measurement_time(Duration::from_secs(2));
            group.bench_function(BenchmarkId::new("percolator", count), |b| {
                b.iter_custom(|iters| timings.percolator.measure(iters, || percolate(&rules, batch)))
            });
            let singles = &mentions[..SINGLE_PERCOLATOR_BATCH];
            group.throughput(Throughput::Elements(singles.len() as u64));
            group.bench_function(BenchmarkId::new("percolator_per_mention", count), |b| {
                b.iter_custom(|iters| {
                    timings.single_percolator.measure(iters, || {
                        singles.iter().map(|m| percolate(&rules, std::slice::from_ref(m))).sum()
                    })
                })
            });
            group.finish();
        }
        rows.push((count, compile_time + build_time, candidates, timings));
    }
    criterion.final_summary();
    println!(
        "\nanalysis alone (building the analyzed document, no rules): {:.0} mentions/s on one core",
        analysis.per_second(mentions.len()).unwrap_or(0.0)
    );
    println!("\n| rules | compile | candidates/mention | cull mentions/s (1 core) | bare AC scan mentions/s | cull / scan | percolator (batch of 500) mentions/s | cull / percolator | percolator (one mention per index) mentions/s | cull / that |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (count, compile_time, candidates, t) in rows {
        let cull = t.cull.per_second(mentions.len());
        let scan = t.scan.per_second(mentions.len());
        let versus = |baseline: Option<f64>| match baseline {
            Some(p) => (format!("{p:.1}"), format!("{:.0}x", cull.unwrap_or(0.0) / p)),
            None => ("-".to_string(), "-".to_string()),
        };
        let (percolator_cell, ratio_cell) = versus(t.percolator.per_second(PERCOLATOR_BATCH));
        let (single_cell, single_ratio_cell) =
            versus(t.single_percolator.per_second(SINGLE_PERCOLATOR_BATCH));
        println!(
            "| {count} | {:.2} s | {candidates:.1} | {:.0} | {:.0} | {:.2} | {percolator_cell} | {ratio_cell} | {single_cell} | {single_ratio_cell} |",
            compile_time.as_secs_f64(),
            cull.unwrap_or(0.0),
            scan.unwrap_or(0.0),
            cull.unwrap_or(0.0) / scan.unwrap_or(f64::INFINITY),
        );
    }
}

/// Returns how many rules the prefilters hand to verification per mention, on
/// average: the work that grows with the rule count.
fn candidates_per_mention(set: &RuleSet, mentions: &[Mention]) -> f64 {
    mentions.iter().map(|m| set.candidate_count(m)).sum::<usize>() as f64 / mentions.len() as f64
}

#[derive(Default)]
struct Timings {
    cull: Timing,
    scan: Timing,
    percolator: Timing,
    single_percolator: Timing,
}
