//! The spike detector on a real stream: the UCI news aggregator sample, whose
//! TIMESTAMP is when the aggregator saw each headline (ms since the epoch).
//!
//! The sample has no steady brand stream: every brand arrives in story clusters
//! (a launch, an outage: dozens of headlines in five minutes, then hours of nothing).
//! So the honest claim for `rule:apple` is not "never fires" but "fires once, on its
//! one genuine cluster": 88 Apple headlines in one five-minute bucket after hours of at
//! most 7. The injected bursts go where the real stream is quiet, far from that
//! cluster, and must add exactly one firing each.

use std::collections::HashMap;

use cull_ticket::spike::{Firing, Preset, SpikeConfig, SpikeDetector, SpikeKind, Thresholds};

const SAMPLE: &str = "../shared/data/text/uci_news_aggregator_sample.csv";
const BUCKET: i64 = 300;

/// Returns the times (unix seconds, sorted) of the headlines whose title contains
/// `word` (case-insensitive), or of every headline for `None`.
fn stream(word: Option<&str>) -> Vec<i64> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(SAMPLE);
    let mut reader = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (title, timestamp) = (column("TITLE"), column("TIMESTAMP"));
    let mut times: Vec<i64> = reader
        .records()
        .map(|record| record.unwrap())
        .filter(|record| word.is_none_or(|word| record[title].to_lowercase().contains(word)))
        .map(|record| record[timestamp].parse::<i64>().unwrap() / 1000)
        .collect();
    times.sort_unstable();
    times
}

fn replay(detector: &mut SpikeDetector, scope: &str, times: &[i64], thresholds: &Thresholds) -> Vec<Firing> {
    times.iter().filter_map(|&at| detector.observe(scope, at, false, thresholds)).collect()
}

/// Returns `times` with `per_ten_minutes` extra mentions in every ten minutes of
/// `[from, from + minutes)`, evenly spread, still sorted.
fn with_burst(times: &[i64], from: i64, minutes: i64, per_ten_minutes: i64) -> Vec<i64> {
    let count = minutes / 10 * per_ten_minutes;
    let mut burst: Vec<i64> = times.to_vec();
    burst.extend((0..count).map(|i| from + i * 600 / per_ten_minutes));
    burst.sort_unstable();
    burst
}

/// The start of the bucket with the most of `times`.
fn busiest_bucket(times: &[i64]) -> (i64, usize) {
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for at in times {
        *counts.entry(at.div_euclid(BUCKET) * BUCKET).or_default() += 1;
    }
    counts.into_iter().max_by_key(|&(start, count)| (count, -start)).unwrap()
}

/// The start of a quiet bucket well after the genuine cluster's cool-down: 16 h after
/// the first Apple headline, where the real stream has one headline in two hours.
fn quiet_time(apple: &[i64]) -> i64 {
    (apple[0].div_euclid(BUCKET) + 200) * BUCKET
}

#[test]
fn the_real_apple_stream_fires_once_on_its_genuine_cluster() {
    let apple = stream(Some("apple"));
    assert_eq!(apple.len(), 134);
    let (cluster, size) = busiest_bucket(&apple);
    assert_eq!(size, 88);
    let fired =
        replay(&mut SpikeDetector::new(), "rule:apple", &apple, &SpikeConfig::default().thresholds(None));
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!((fired[0].kind, fired[0].started_at, fired[0].count), (SpikeKind::Volume, cluster, 10));
}

#[test]
fn an_injected_burst_fires_once_however_long_it_lasts() {
    let apple = stream(Some("apple"));
    let thresholds = SpikeConfig::default().thresholds(None);
    let at = quiet_time(&apple);
    for minutes in [10, 50] {
        let burst = with_burst(&apple, at, minutes, 40);
        let fired = replay(&mut SpikeDetector::new(), "rule:apple", &burst, &thresholds);
        let injected: Vec<&Firing> = fired.iter().filter(|f| f.started_at >= at).collect();
        assert_eq!((fired.len(), injected.len()), (2, 1), "{minutes} min: {fired:?}");
        assert_eq!(injected[0].started_at, at);
    }
}

#[test]
fn a_restored_detector_fires_at_the_same_point() {
    let apple = stream(Some("apple"));
    let thresholds = SpikeConfig::default().thresholds(None);
    let burst = with_burst(&apple, quiet_time(&apple), 10, 40);
    let uninterrupted = replay(&mut SpikeDetector::new(), "rule:apple", &burst, &thresholds);
    let stop = burst.partition_point(|&at| at < quiet_time(&apple));
    let mut before = SpikeDetector::new();
    let mut resumed = replay(&mut before, "rule:apple", &burst[..stop], &thresholds);
    let state = serde_json::to_string(&before).unwrap();
    assert!(state.len() < 200, "a scope's state is a few numbers: {state}");
    let mut restored: SpikeDetector = serde_json::from_str(&state).unwrap();
    assert_eq!(restored, before);
    resumed.extend(replay(&mut restored, "rule:apple", &burst[stop..], &thresholds));
    assert_eq!(resumed, uninterrupted);
    assert_eq!(restored, {
        let mut straight = SpikeDetector::new();
        replay(&mut straight, "rule:apple", &burst, &thresholds);
        straight
    });
}

#[test]
fn fewer_fires_on_fewer_cases_than_more() {
    let config = SpikeConfig::default();
    let streams = [("queue:news", stream(None)), ("rule:apple", stream(Some("apple")))];
    let mut counts = Vec::new();
    for (scope, times) in &streams {
        let per_preset: Vec<usize> = [Preset::Fewer, Preset::Balanced, Preset::More]
            .into_iter()
            .map(|preset| {
                replay(&mut SpikeDetector::new(), scope, times, &config.thresholds(Some(preset))).len()
            })
            .collect();
        eprintln!("{scope}: fewer, balanced, more fire {per_preset:?}");
        counts.push(per_preset);
    }
    assert!(counts[0][0] < counts[0][1] && counts[0][1] < counts[0][2], "every headline: {:?}", counts[0]);
    assert!(counts[1][0] < counts[1][2], "Apple: {:?}", counts[1]);
}
