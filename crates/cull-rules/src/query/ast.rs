//! The syntax tree of a query, before analysis: what the operator wrote.

use std::fmt;
use std::ops::Range;

use crate::plan::Field;

/// A node of a parsed query with the byte range of the query text it came from.
///
/// Two nodes are equal when their [`NodeKind`]s are: the range says where a clause
/// was written, not what it means, and a query printed and parsed again must compare
/// equal to the original.
#[derive(Debug, Clone, Eq)]
pub struct Node {
    /// What the node is.
    pub kind: NodeKind,
    /// Byte range in the query text.
    pub span: Range<usize>,
}

impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        self.kind == other.kind
    }
}

/// The kinds of query clauses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A bare word such as `slack`, `conn*` or `{Slack}`.
    Term(Term),
    /// A quoted phrase such as `"call center"` or `"call center"~2`.
    Phrase(Phrase),
    /// `a NEAR/n b` or `a ONEAR/n b`.
    Near(Box<Near>),
    /// Clauses that must all hold (written with `AND` or side by side); two or more.
    And(Vec<Node>),
    /// Clauses of which one must hold; two or more.
    Or(Vec<Node>),
    /// `NOT x` or `-x`.
    Not(Box<Node>),
    /// `field:x`.
    Scoped(Field, Box<Node>),
}

/// A bare word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The word as written, without `*` or braces.
    pub text: String,
    /// Written with a trailing `*`: matches words starting with `text`.
    pub prefix: bool,
    /// Written in braces: matches case and accents as written.
    pub exact: bool,
}

/// A quoted phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phrase {
    /// The text between the quotes.
    pub text: String,
    /// `~n` after the closing quote.
    pub slop: Option<u32>,
    /// Written in braces: matches case and accents as written.
    pub exact: bool,
}

/// A proximity clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Near {
    /// The left operand.
    pub left: Node,
    /// The right operand.
    pub right: Node,
    /// At most this many other words stand between the operands.
    pub distance: u32,
    /// `ONEAR`: the left operand comes first.
    pub ordered: bool,
}

/// Prints the query in canonical form; parsing the output yields an equal tree.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            NodeKind::Term(term) => {
                let star = if term.prefix { "*" } else { "" };
                if term.exact {
                    write!(f, "{{{}{star}}}", term.text)
                } else {
                    write!(f, "{}{star}", term.text)
                }
            }
            NodeKind::Phrase(phrase) => {
                let (open, close) = if phrase.exact { ("{", "}") } else { ("", "") };
                write!(f, "{open}\"{}\"", phrase.text)?;
                if let Some(slop) = phrase.slop {
                    write!(f, "~{slop}")?;
                }
                f.write_str(close)
            }
            NodeKind::Near(near) => {
                let op = if near.ordered { "ONEAR" } else { "NEAR" };
                write!(f, "{} {op}/{} {}", Grouped(&near.left), near.distance, Grouped(&near.right))
            }
            NodeKind::And(nodes) => write_joined(f, nodes, " "),
            NodeKind::Or(nodes) => write_joined(f, nodes, " OR "),
            NodeKind::Not(node) => write!(f, "NOT {}", Grouped(node)),
            NodeKind::Scoped(field, node) => write!(f, "{}:{}", field.name(), Grouped(node)),
        }
    }
}

fn write_joined(f: &mut fmt::Formatter<'_>, nodes: &[Node], separator: &str) -> fmt::Result {
    for (i, node) in nodes.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        write!(f, "{}", Grouped(node))?;
    }
    Ok(())
}

/// Prints a node that is an operand of another, in parentheses when it is compound.
struct Grouped<'a>(&'a Node);

impl fmt::Display for Grouped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.kind {
            NodeKind::And(_) | NodeKind::Or(_) | NodeKind::Near(_) | NodeKind::Not(_) => {
                write!(f, "({})", self.0)
            }
            _ => write!(f, "{}", self.0),
        }
    }
}
