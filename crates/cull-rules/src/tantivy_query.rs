//! Compilation of plans to Tantivy queries.
