//! Errors of the quality store and the suggestions.

use std::path::{Path, PathBuf};

/// Why a quality operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    /// A file or directory of the store cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The store's file is not a store.
    #[error("{}: not a rule-stats store ({message}); move it away to start a new one", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What could not be read.
        message: String,
    },
    /// Another quality stage writes the store in this directory.
    #[error("{}: another quality stage writes this store (one process per store: give each its own quality.dir)", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// No quality stage has written a store there.
    #[error("{}: no rule stats yet (is `[quality] enabled = true` in the pipeline, and has it run?)", path.display())]
    Missing {
        /// The file looked for.
        path: PathBuf,
    },
    /// The rule asked about is not in the rule set.
    #[error("no rule {rule:?}{} in the rule set", client.as_deref().map(|c| format!(" of client {c:?}")).unwrap_or_default())]
    UnknownRule {
        /// The rule id.
        rule: String,
        /// The client it was looked up for.
        client: Option<String>,
    },
    /// The index failed a read or a backtest.
    #[error(transparent)]
    Index(#[from] cull_index::IndexError),
}

impl QualityError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> QualityError {
        QualityError::Io { path: path.to_path_buf(), source }
    }
}
