//! SimHash (Charikar 2002) over word shingles, to find syndicated copies of a text.
//!
//! Written here rather than taken from a crate: the crates on offer hash characters
//! rather than the analyzer's words, and the whole algorithm is the twenty lines below.

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
}
