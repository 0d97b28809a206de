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
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex.truncate(hex_len.min(64));
    hex
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
}
