//! Stable identifiers.
//!
//! Ids are content hashes rather than counters so that any stage can recompute them:
//! a replayed mention gets the id it had the first time, and a replayed match produces
//! the ticket id the contact center has already seen, which is what lets consumers
//! deduplicate under at-least-once delivery.

use sha2::{Digest, Sha256};

/// Returns the first `hex_len` hex digits of the SHA-256 of `parts`, each part
/// terminated by a NUL byte so that `("ab", "c")` and `("a", "bc")` differ.
pub fn short_hash(parts: &[&str], hex_len: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    // The digest's own hex formatting writes the digits asked for (its precision) in
    // one go: a rule pack hashes a version per rule, and formatting a byte at a time
    // was a noticeable part of loading a million.
    format!("{:.*x}", hex_len.min(64), hasher.finalize())
}

/// Returns the stable id of a mention: a hash of its configured source name and its
/// canonical URL (or the external id the source gave it).
pub fn mention_id(source: &str, canonical_url_or_external_id: &str) -> String {
    format!("m-{}", short_hash(&[source, canonical_url_or_external_id], 20))
}

/// Returns the deterministic ticket id for a rule and the subject of a ticket.
///
/// The subject is what makes mentions "the same issue" for a contact center: the
/// mention id, or the URL or author that repeated mentions share within a dedupe
/// window. The same subject matched by the same rule always yields the same ticket id,
/// across restarts, replays and instances, so consumers can deduplicate.
pub fn ticket_id(subject: &str, rule_id: &str) -> String {
    format!("t-{}", short_hash(&[subject, rule_id], 24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_separate_their_parts() {
        assert_eq!(mention_id("alerts", "https://a.example/x"), mention_id("alerts", "https://a.example/x"));
        assert_ne!(short_hash(&["ab", "c"], 16), short_hash(&["a", "bc"], 16));
        assert!(ticket_id("m-1", "r").starts_with("t-"));
        assert_ne!(ticket_id("m-1", "r1"), ticket_id("m-1", "r2"));
        assert_eq!(ticket_id("m-1", "r1").len(), 26);
    }

    #[test]
    fn short_hashes_are_the_leading_hex_digits_of_the_sha256() {
        // sha256(b"slack\0stock\0"), by Python's hashlib.
        let full = "d82bd55d066081ad112f1b4b81ad25625584aeb98e06fccb2afd65045f9c1210";
        for len in [0, 1, 5, 12, 63, 64, 100] {
            assert_eq!(short_hash(&["slack", "stock"], len), full[..len.min(64)], "{len} digits");
        }
    }
}
