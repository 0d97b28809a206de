//! SimHash (Charikar 2002) over word shingles, to find syndicated copies of a text.
//!
//! Written here rather than taken from a crate: the crates on offer hash characters
//! rather than the analyzer's words, and the whole algorithm is the twenty lines below.
//! [`NearIndex`] finds the remembered hashes close to a new one.

use std::collections::{BTreeSet, HashMap};

use cull_model::analyzer::{for_each_token, Form, Mode};

/// A 64-bit SimHash: similar texts differ in few bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimHash(pub u64);

impl SimHash {
    /// Returns the number of differing bits.
    pub fn distance(self, other: SimHash) -> u32 {
        (self.0 ^ other.0).count_ones()
    }

    /// Returns the 16-bit band `index` (0..4).
    pub fn band(self, index: usize) -> u16 {
        (self.0 >> (16 * index)) as u16
    }
}

/// Returns the SimHash of the folded words of `text` in overlapping three-word
/// shingles, or `None` when the text has fewer than `min_words` words.
pub fn simhash(text: &str, min_words: usize) -> Option<SimHash> {
    let mut words: Vec<u64> = Vec::new();
    for_each_token(text, Form::Folded, Mode::Query, |token| words.push(fnv1a(token.term.as_bytes())));
    if words.len() < min_words.max(3) {
        return None;
    }
    let mut weights = [0i32; 64];
    for shingle in words.windows(3) {
        let hash = mix(shingle[0] ^ shingle[1].rotate_left(21) ^ shingle[2].rotate_left(42));
        for (bit, weight) in weights.iter_mut().enumerate() {
            *weight += if hash >> bit & 1 == 1 { 1 } else { -1 };
        }
    }
    Some(SimHash(weights.iter().enumerate().fold(0, |hash, (bit, &w)| hash | (u64::from(w > 0) << bit))))
}

/// Distinct hashes one band bucket holds at most. Random texts spread evenly over the
/// 65,536 values of a band (a full window of 200,000 mentions puts about three in a
/// bucket), so only a flood of texts crafted to share a band reaches it; the hashes
/// it turns away are still found through their other bands and by exact equality,
/// and a copy missed is only left unmarked, never dropped.
const BUCKET_CAPACITY: usize = 64;

/// The remembered SimHashes, each with the sequence numbers of the mentions that
/// have it, found again by [`NearIndex::nearest`] at a bounded cost.
///
/// A syndicated story arrives as thousands of identical copies: one list entry per
/// copy in each band made every new copy compare with every old one (10,000 copies
/// took 8 s, 40,000 took 141 s). Copies with the same hash are therefore one entry,
/// which keeps its sequence numbers in order, and a band bucket holds at most
/// [`BUCKET_CAPACITY`] distinct hashes, so a look-up compares at most four times that.
#[derive(Debug, Default)]
pub struct NearIndex {
    /// Per distinct hash, the sequence numbers that have it.
    exact: HashMap<u64, BTreeSet<u64>>,
    /// The hash split into four 16-bit bands: two hashes within distance 3 agree on at
    /// least one band (pigeonhole), so only the hashes in those buckets need comparing.
    bands: [HashMap<u16, Vec<u64>>; 4],
    /// Hash comparisons made by every look-up so far.
    comparisons: u64,
}

impl NearIndex {
    /// Remembers that mention `seq` has `hash`.
    pub fn insert(&mut self, hash: SimHash, seq: u64) {
        let sequences = self.exact.entry(hash.0).or_default();
        sequences.insert(seq);
        if sequences.len() > 1 {
            return;
        }
        for (band, table) in self.bands.iter_mut().enumerate() {
            let bucket = table.entry(hash.band(band)).or_default();
            if bucket.len() < BUCKET_CAPACITY {
                bucket.push(hash.0);
            }
        }
    }

    /// Forgets that mention `seq` has `hash`.
    pub fn remove(&mut self, hash: SimHash, seq: u64) {
        let Some(sequences) = self.exact.get_mut(&hash.0) else { return };
        sequences.remove(&seq);
        if !sequences.is_empty() {
            return;
        }
        self.exact.remove(&hash.0);
        for (band, table) in self.bands.iter_mut().enumerate() {
            let key = hash.band(band);
            if let Some(bucket) = table.get_mut(&key) {
                bucket.retain(|&other| other != hash.0);
                if bucket.is_empty() {
                    table.remove(&key);
                }
            }
        }
    }

    /// Returns the smallest sequence number whose hash is within `max_distance` bits
    /// of `hash`.
    pub fn nearest(&mut self, hash: SimHash, max_distance: u32) -> Option<u64> {
        let mut comparisons = 0;
        let close = self
            .bands
            .iter()
            .enumerate()
            .flat_map(|(band, table)| table.get(&hash.band(band)).into_iter().flatten())
            .filter(|&&other| {
                comparisons += 1;
                SimHash(other).distance(hash) <= max_distance
            })
            // An identical hash that a full bucket turned away is found all the same.
            .chain(std::iter::once(&hash.0));
        let earliest = close.filter_map(|other| self.exact.get(other)?.first().copied()).min();
        self.comparisons += comparisons;
        earliest
    }

    /// Returns the hash comparisons made by every look-up so far: at most
    /// `4 × BUCKET_CAPACITY` per look-up.
    pub fn comparisons(&self) -> u64 {
        self.comparisons
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The SplitMix64 finalizer: spreads FNV's weak high bits over all 64.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_close_and_different_texts_are_far() {
        let a = "Slack said on Tuesday that its messaging service suffered a global outage lasting several hours for office workers";
        let b = "SLACK said on Tuesday that its messaging service suffered a global outage lasting several hours for office workers!";
        let c = "A review of the new noise cancelling headphones finds the battery lasts two days and the sound is warm";
        let (a, b, c) = (simhash(a, 8).unwrap(), simhash(b, 8).unwrap(), simhash(c, 8).unwrap());
        assert_eq!(a.distance(b), 0);
        assert!(a.distance(c) > 10, "distance {}", a.distance(c));
        assert_eq!(simhash("too short", 8), None);
    }

    #[test]
    fn a_flood_sharing_a_band_costs_a_bounded_number_of_comparisons() {
        let mut index = NearIndex::default();
        // Distinct hashes that all agree on band 0 and are far from each other.
        let hash = |n: u64| SimHash(0x5555 | mix(n) << 16);
        for seq in 0..10_000 {
            index.nearest(hash(seq), 3);
            index.insert(hash(seq), seq);
        }
        let per_lookup = index.comparisons() as f64 / 10_000.0;
        assert!(per_lookup <= (4 * BUCKET_CAPACITY) as f64, "{per_lookup} comparisons per look-up");
        assert_eq!(index.nearest(hash(9_999), 0), Some(9_999), "an identical hash is always found");
        let close = SimHash(hash(3).0 ^ 0b101);
        assert_eq!(index.nearest(close, 3), Some(3), "a close hash within the bucket is found");
        index.remove(hash(3), 3);
        assert_eq!(index.nearest(hash(3), 0), None);
    }
}
