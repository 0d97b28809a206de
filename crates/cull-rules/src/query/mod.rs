//! The query language: one grammar for rule queries, exclusions, masks and search.
//!
//! [`parse`] turns text into a syntax tree ([`Node`]) and [`compile`] turns a tree
//! into a [`Plan`](crate::Plan): words analyzed exactly as the index analyzes text,
//! the default scope expanded into its fields, and everything Tantivy would refuse or
//! treat surprisingly rejected with an error that points at the clause. [`lint`] warns
//! about text that is valid but probably not meant (`and` for `AND`, `near/3`, smart
//! quotes).

mod ast;
mod compile;
mod lint;
mod parser;

use std::fmt;
use std::ops::Range;

pub use ast::{Near, Node, NodeKind, Phrase, Term};
pub use compile::{compile, compile_mask, exclude_clauses, MIN_PREFIX_CHARS};
pub use lint::{lint, QueryWarning};
pub use parser::{parse, MAX_CLAUSES, MAX_DEPTH, MAX_DISTANCE, MAX_QUERY_BYTES};

/// A problem with a query, located by a byte range of the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// Byte range of the offending text.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// What to write instead, when there is a clear answer.
    pub help: Option<String>,
}

impl QueryError {
    pub(crate) fn new(span: Range<usize>, message: impl Into<String>) -> QueryError {
        QueryError { span, message: message.into(), help: None }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> QueryError {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at bytes {}..{})", self.message, self.span.start, self.span.end)?;
        if let Some(help) = &self.help {
            write!(f, "; {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for QueryError {}

#[cfg(test)]
mod tests;
