//! What a run did, counted by its stages as they go and printed when it ends.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counts of a run so far, shared by its stages.
#[derive(Debug, Default)]
pub struct Summary {
    mentions_in: AtomicU64,
    matched: AtomicU64,
    culled: AtomicU64,
    unmatched: AtomicU64,
    tickets_out: AtomicU64,
    dead_letters: AtomicU64,
    indexed: AtomicU64,
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Mentions read by the matcher (valid or not).
    pub mentions_in: u64,
    /// Mentions with at least one matching rule.
    pub matched: u64,
    /// Mentions whose query matches were all culled.
    pub culled: u64,
    /// Mentions no rule matched.
    pub unmatched: u64,
    /// Tickets produced.
    pub tickets_out: u64,
    /// Records sent to the dead-letter topic, by any stage or source.
    pub dead_letters: u64,
    /// Verdicts written to the analyst index.
    pub indexed: u64,
}

impl Summary {
    /// Adds what the matcher did with a batch.
    pub fn add_matches(&self, records: u64, matched: u64, culled: u64, unmatched: u64) {
        self.mentions_in.fetch_add(records, Ordering::Relaxed);
        self.matched.fetch_add(matched, Ordering::Relaxed);
        self.culled.fetch_add(culled, Ordering::Relaxed);
        self.unmatched.fetch_add(unmatched, Ordering::Relaxed);
    }

    /// Adds tickets produced.
    pub fn add_tickets(&self, count: u64) {
        self.tickets_out.fetch_add(count, Ordering::Relaxed);
    }

    /// Adds dead letters sent.
    pub fn add_dead_letters(&self, count: u64) {
        self.dead_letters.fetch_add(count, Ordering::Relaxed);
    }

    /// Adds verdicts indexed.
    pub fn add_indexed(&self, count: u64) {
        self.indexed.fetch_add(count, Ordering::Relaxed);
    }

    /// Returns the counts now.
    pub fn counts(&self) -> Counts {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Counts {
            mentions_in: get(&self.mentions_in),
            matched: get(&self.matched),
            culled: get(&self.culled),
            unmatched: get(&self.unmatched),
            tickets_out: get(&self.tickets_out),
            dead_letters: get(&self.dead_letters),
            indexed: get(&self.indexed),
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} mention(s) in: {} matched, {} culled, {} unmatched; {} ticket(s) out; {} dead letter(s)",
            self.mentions_in, self.matched, self.culled, self.unmatched, self.tickets_out, self.dead_letters
        )?;
        if self.indexed > 0 {
            write!(f, "; {} indexed", self.indexed)?;
        }
        Ok(())
    }
}
