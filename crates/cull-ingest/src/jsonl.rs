//! jsonl (in progress)
