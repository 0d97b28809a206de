//! The `[index]` section of a pipeline file.

use std::path::PathBuf;

use cull_model::config::{is_label, Checks, Invalid};
use serde::{Deserialize, Serialize};

/// The indexer stage: verdicts into the analyst index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Whether this process runs the indexer.
    pub enabled: bool,
    /// The index directory (`cull search --index` reads it).
    pub dir: PathBuf,
    /// Commit after this many documents at most.
    pub commit_docs: usize,
    /// Commit after this many seconds at most (what an analyst waits to see a mention).
    pub commit_secs: u64,
    /// Indexing threads.
    pub threads: usize,
    /// Megabytes of indexing buffers (at least 15 per thread).
    pub memory_mb: usize,
    /// The consumer group of the indexers on the verdicts topic.
    pub group_id: String,
    /// Days a mention stays in the index, counted from its time (published, else
    /// fetched, else when it was first indexed); left out, mentions stay for good.
    pub retention_days: Option<u32>,
}

impl Default for IndexConfig {
    fn default() -> IndexConfig {
        IndexConfig {
            enabled: false,
            dir: PathBuf::from("data/index"),
            commit_docs: 10_000,
            commit_secs: 5,
            threads: 1,
            memory_mb: 64,
            group_id: "cull-indexer".into(),
            retention_days: None,
        }
    }
}

impl IndexConfig {
    /// Returns every invalid setting, keys relative to `[index]`.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        checks.check(!self.dir.as_os_str().is_empty(), "dir", || "must name a directory".into());
        checks.positive("commit_docs", self.commit_docs as u64);
        checks.positive("commit_secs", self.commit_secs);
        checks.positive("threads", self.threads as u64);
        checks.check(self.memory_mb >= 15 * self.threads, "memory_mb", || {
            format!(
                "must be at least 15 per thread ({} for index.threads = {})",
                15 * self.threads,
                self.threads
            )
        });
        checks.check(is_label(&self.group_id), "group_id", || "use 1 to 64 of a-z A-Z 0-9 . _ -".into());
        checks.check(self.retention_days != Some(0), "retention_days", || {
            "must be at least 1 day; leave it out to keep mentions for good".into()
        });
        checks.finish()
    }
}
