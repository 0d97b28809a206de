//! Rule files and the query language of cull.
#![deny(missing_docs)]

pub mod compiled;
pub mod plan;
pub mod rule;
pub mod tantivy_query;

pub use compiled::{compile_clauses, Anchor, Clause, CompiledRule, Mask};
pub use plan::{Field, Plan, Sequence, TextField, Word};
pub use rule::{Example, Expect, Rule, SPIKE_PRESETS};
pub mod error;
pub mod load;
pub mod memo;
pub mod query;

pub use error::{Located, Refusal, RuleError, Severity, MAX_EXCERPT_CHARS};
pub use load::{
    load_as_pack, load_client_pack, load_dir, load_files, load_pack, load_path, load_path_each, load_tree,
    load_tree_since, read_rule_file, Loaded, Taken, Tree, MAX_RULE_FILE_BYTES,
};
pub use memo::Memo;
