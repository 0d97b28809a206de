//! The duplicate screen: what one mention costs, however many copies of its text the
//! window already holds.
//!
//! A syndicated story (or a hostile feed) sends the same text thousands of times; each
//! copy must cost about what a distinct text costs. Measured: screening N mentions of
//! one text (N = 1,000, 10,000, 40,000) and N distinct texts into an empty window, in
//! batches of 256 as the sources hand them over; criterion reports the time per
//! mention (throughput in elements), and the ratios to the distinct texts at the same N
//! are printed at the end.
//!
//! Run with `cargo bench -p cull --bench screen`.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use cull_ingest::{Screen, ScreenConfig};
use cull_model::Mention;

const STORY: &str = "Slack Technologies said on Tuesday that its workplace messaging service suffered \
    a global outage lasting several hours, leaving millions of office workers unable to send messages";

/// Returns `count` mentions with one text (`identical`) or each with its own.
fn mentions(count: usize, identical: bool) -> Vec<Mention> {
    (0..count)
        .map(|i| {
            let text = if identical {
                STORY.to_string()
            } else {
                format!("{STORY} report {i} update {} desk {} wire {}", i * 7, i * 13, i * 31)
            };
            Mention::new(format!("m-{i}"), text)
        })
        .collect()
}

/// Screens `mentions` into a fresh window in batches of 256; returns the time taken
/// and the SimHash comparisons made.
fn screen_all(mentions: &[Mention]) -> (Duration, u64) {
    let mut screen = Screen::new(ScreenConfig::default());
    let started = Instant::now();
    for batch in mentions.chunks(256) {
        criterion::black_box(screen.screen(batch.to_vec(), started));
    }
    (started.elapsed(), screen.comparisons())
}

fn main() {
    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    // (N, seconds per mention, comparisons per mention)
    let mut per_mention: Vec<(usize, f64, f64)> = Vec::new();
    let mut group = criterion.benchmark_group("screen");
    for count in [1_000, 10_000, 40_000] {
        for identical in [true, false] {
            let input = mentions(count, identical);
            let name = if identical { "identical" } else { "distinct" };
            group.throughput(Throughput::Elements(count as u64));
            let mut total = Duration::ZERO;
            let mut rounds = 0u32;
            let comparisons = screen_all(&input).1;
            group.bench_with_input(BenchmarkId::new(name, count), &input, |b, input| {
                b.iter_custom(|iterations| {
                    let mut took = Duration::ZERO;
                    for _ in 0..iterations {
                        took += screen_all(input).0;
                    }
                    total += took;
                    rounds += iterations as u32;
                    took
                })
            });
            let seconds = total.as_secs_f64() / f64::from(rounds.max(1)) / count as f64;
            per_mention.push((count, seconds, comparisons as f64 / count as f64));
        }
    }
    group.finish();
    criterion.final_summary();
    println!("\nper mention (mean over every round), and identical / distinct at the same N:");
    for pair in per_mention.chunks(2) {
        let [(count, identical, identical_work), (_, distinct, distinct_work)] = pair else { continue };
        println!(
            "  N = {count:>6}: identical {:>7.2} µs ({identical_work:.1} comparisons), \
             distinct {:>7.2} µs ({distinct_work:.1} comparisons), ratio {:.2}",
            identical * 1e6,
            distinct * 1e6,
            identical / distinct
        );
    }
    let first = per_mention[0].1;
    let last = per_mention[per_mention.len() - 2].1;
    println!("  identical copies, 40,000 / 1,000 per mention: {:.2}", last / first);
}
