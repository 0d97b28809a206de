//! A recursive-descent parser for the query language.
//!
//! Written by hand rather than with a parser generator because the language is small,
//! the error messages matter more than the grammar (an operator must see exactly which
//! column is wrong and what to write instead), and the limits that keep a hostile
//! query cheap (length, depth, clause count, distances) are checked as we go.

use std::ops::Range;

use super::ast::{Near, Node, NodeKind, Phrase, Term};
use super::QueryError;
use crate::plan::Field;

/// The longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// The deepest nesting of parentheses and operators accepted.
pub const MAX_DEPTH: usize = 64;
/// The most terms and phrases one query may hold.
pub const MAX_CLAUSES: usize = 4096;
/// The largest `NEAR/n` distance and `"…"~n` slop accepted.
///
/// Tantivy carries phrase slop in a byte, and nobody means "near" at 256 words.
pub const MAX_DISTANCE: u32 = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    Word(String),
    Quoted { text: String, slop: Option<u32> },
    Field(Field),
    And,
    Or,
    Not,
    Minus,
    Near { distance: u32, ordered: bool },
    LParen,
    RParen,
    LBrace,
    RBrace,
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"' | '{' | '}')
}

pub(super) fn lex(input: &str) -> Result<Vec<(Token, Range<usize>)>, QueryError> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '{' | '}' => {
                chars.next();
                let token = match c {
                    '(' => Token::LParen,
                    ')' => Token::RParen,
                    '{' => Token::LBrace,
                    _ => Token::RBrace,
                };
                tokens.push((token, start..start + 1));
            }
            '"' => {
                chars.next();
                let text_start = start + 1;
                let close = input[text_start..].find('"').ok_or_else(|| {
                    QueryError::new(start..input.len(), "unterminated phrase: missing closing `\"`")
                })?;
                let text = input[text_start..text_start + close].to_string();
                let mut end = text_start + close + 1;
                while chars.peek().is_some_and(|&(i, _)| i < end) {
                    chars.next();
                }
                let mut slop = None;
                if input[end..].starts_with('~') {
                    let digits: String = input[end + 1..].chars().take_while(char::is_ascii_digit).collect();
                    let slop_span = end..end + 1 + digits.len();
                    if digits.is_empty() {
                        return Err(QueryError::new(
                            slop_span,
                            "`~` after a phrase needs a number, e.g. `\"a b\"~2`",
                        ));
                    }
                    slop = Some(parse_distance(&digits, slop_span.clone())?);
                    end = slop_span.end;
                    while chars.peek().is_some_and(|&(i, _)| i < end) {
                        chars.next();
                    }
                }
                tokens.push((Token::Quoted { text, slop }, start..end));
            }
            _ => {
                let mut end = start;
                while let Some(&(i, c)) = chars.peek() {
                    if is_delimiter(c) {
                        break;
                    }
                    end = i + c.len_utf8();
                    chars.next();
                }
                let word = &input[start..end];
                if word.bytes().all(|b| b == b'-') && input[end..].starts_with(['(', '"', '{']) {
                    tokens.extend((start..end).map(|i| (Token::Minus, i..i + 1)));
                } else {
                    lex_word(word, start, &mut tokens)?;
                }
            }
        }
    }
    Ok(tokens)
}

fn parse_distance(digits: &str, span: Range<usize>) -> Result<u32, QueryError> {
    match digits.parse::<u32>() {
        Ok(n) if n <= MAX_DISTANCE => Ok(n),
        _ => {
            Err(QueryError::new(span, format!("distance {digits} is too large; the limit is {MAX_DISTANCE}")))
        }
    }
}

/// Splits a run of non-delimiter characters into tokens: operators, a leading `-`, a
/// field prefix, and the word itself.
fn lex_word(word: &str, start: usize, tokens: &mut Vec<(Token, Range<usize>)>) -> Result<(), QueryError> {
    let span = start..start + word.len();
    match word {
        "AND" | "&&" => return push(tokens, Token::And, span),
        "OR" | "||" => return push(tokens, Token::Or, span),
        "NOT" => return push(tokens, Token::Not, span),
        _ => {}
    }
    for (keyword, ordered) in [("NEAR", false), ("ONEAR", true)] {
        if let Some(rest) = word.strip_prefix(keyword) {
            if rest.is_empty() {
                let help = format!(
                    "write `{keyword}/n` with the most words allowed between, e.g. `a {keyword}/3 b`"
                );
                return Err(QueryError::new(span, format!("`{keyword}` needs a distance")).with_help(help));
            }
            if let Some(digits) = rest.strip_prefix('/') {
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(QueryError::new(
                        span,
                        format!("`{word}` is not a distance; write e.g. `{keyword}/3`"),
                    ));
                }
                let distance = parse_distance(digits, span.clone())?;
                return push(tokens, Token::Near { distance, ordered }, span);
            }
        }
    }
    let negations = word.len() - word.trim_start_matches('-').len();
    if negations > 0 && negations < word.len() {
        tokens.extend((start..start + negations).map(|i| (Token::Minus, i..i + 1)));
        return lex_word(&word[negations..], start + negations, tokens);
    }
    if let Some((name, rest)) = word.split_once(':') {
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic() || c == '_') {
            let field = Field::parse(name).ok_or_else(|| {
                QueryError::new(start..start + name.len(), format!("unknown field `{name}`"))
                    .with_help(unknown_field_help(name, word))
            })?;
            tokens.push((Token::Field(field), start..start + name.len() + 1));
            if rest.is_empty() {
                return Ok(());
            }
            return lex_word(rest, start + name.len() + 1, tokens);
        }
    }
    push(tokens, Token::Word(word.to_string()), span)
}

/// What to write instead of `word`, whose `name:` is no field: the nearest field when
/// one is close, and otherwise the text quoted, since `name:` is always read as a field.
fn unknown_field_help(name: &str, word: &str) -> String {
    let names: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
    let lowercase = name.to_ascii_lowercase();
    let nearest = names
        .iter()
        .map(|field| (strsim::damerau_levenshtein(&lowercase, field), *field))
        .min()
        .filter(|(distance, field)| *distance <= (field.len() / 3).max(1));
    match nearest {
        Some((_, field)) => format!("did you mean `{field}:`? fields are {}", names.join(", ")),
        None => format!(
            "`{name}:` is read as a field; to search for the text, quote it: `\"{word}\"` (fields are {})",
            names.join(", ")
        ),
    }
}

fn push(tokens: &mut Vec<(Token, Range<usize>)>, token: Token, span: Range<usize>) -> Result<(), QueryError> {
    tokens.push((token, span));
    Ok(())
}

/// Parses a query into its syntax tree.
pub fn parse(input: &str) -> Result<Node, QueryError> {
    if input.len() > MAX_QUERY_BYTES {
        return Err(QueryError::new(
            0..0,
            format!("query is {} bytes; the limit is {MAX_QUERY_BYTES}", input.len()),
        ));
    }
    let tokens = lex(input)?;
    if tokens.is_empty() {
        return Err(
            QueryError::new(0..input.len(), "query is empty").with_help("write at least one word or phrase")
        );
    }
    let mut parser = Parser { tokens, next: 0, depth: 0, clauses: 0, input_len: input.len() };
    let node = parser.or()?;
    if let Some((_, span)) = parser.tokens.get(parser.next) {
        let message = match parser.tokens[parser.next].0 {
            Token::RParen => "unmatched `)`",
            Token::RBrace => "unmatched `}`",
            _ => "unexpected text after the query",
        };
        return Err(QueryError::new(span.clone(), message));
    }
    Ok(node)
}

struct Parser {
    tokens: Vec<(Token, Range<usize>)>,
    next: usize,
    depth: usize,
    clauses: usize,
    input_len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(t, _)| t)
    }

    fn span_here(&self) -> Range<usize> {
        self.tokens.get(self.next).map_or(self.input_len..self.input_len, |(_, s)| s.clone())
    }

    fn start(&self) -> usize {
        self.span_here().start
    }

    fn end_of_previous(&self) -> usize {
        self.next.checked_sub(1).map_or(0, |i| self.tokens[i].1.end)
    }

    fn bump(&mut self) -> (Token, Range<usize>) {
        let token = self.tokens[self.next].clone();
        self.next += 1;
        token
    }

    fn enter(&mut self) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::new(
                self.span_here(),
                format!("query nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn node(&self, kind: NodeKind, start: usize) -> Node {
        Node { kind, span: start..self.end_of_previous() }
    }

    fn or(&mut self) -> Result<Node, QueryError> {
        self.enter()?;
        let start = self.start();
        let mut nodes = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.bump();
            nodes.push(self.and()?);
        }
        self.depth -= 1;
        Ok(if nodes.len() == 1 { nodes.remove(0) } else { self.node(NodeKind::Or(nodes), start) })
    }

    fn and(&mut self) -> Result<Node, QueryError> {
        let start = self.start();
        let mut nodes = vec![self.unary()?];
        loop {
            match self.peek() {
                None | Some(Token::Or | Token::RParen | Token::RBrace) => break,
                Some(Token::And) => {
                    self.bump();
                }
                Some(_) => {}
            }
            nodes.push(self.unary()?);
        }
        Ok(if nodes.len() == 1 { nodes.remove(0) } else { self.node(NodeKind::And(nodes), start) })
    }

    fn unary(&mut self) -> Result<Node, QueryError> {
        let start = self.start();
        if matches!(self.peek(), Some(Token::Not | Token::Minus)) {
            self.bump();
            self.enter()?;
            let operand = self.unary()?;
            self.depth -= 1;
            return Ok(self.node(NodeKind::Not(Box::new(operand)), start));
        }
        self.near()
    }

    fn near(&mut self) -> Result<Node, QueryError> {
        let start = self.start();
        let left = self.primary()?;
        let Some(&Token::Near { distance, ordered }) = self.peek() else {
            return Ok(left);
        };
        self.bump();
        let right = self.primary()?;
        if let Some(Token::Near { .. }) = self.peek() {
            return Err(QueryError::new(self.span_here(), "NEAR clauses cannot be chained")
                .with_help("combine them with AND: `(a NEAR/3 b) AND (b NEAR/3 c)`"));
        }
        Ok(self.node(NodeKind::Near(Box::new(Near { left, right, distance, ordered })), start))
    }

    fn primary(&mut self) -> Result<Node, QueryError> {
        let start = self.start();
        let Some((token, span)) = self.tokens.get(self.next).cloned() else {
            return Err(QueryError::new(
                self.span_here(),
                "query ends where a word, phrase or `(` was expected",
            ));
        };
        match token {
            Token::LParen => {
                self.bump();
                let inner = self.or()?;
                self.expect(Token::RParen, "`)`", span)?;
                Ok(inner)
            }
            Token::Field(field) => {
                self.bump();
                if matches!(self.peek(), None | Some(Token::RParen | Token::Or | Token::And)) {
                    return Err(QueryError::new(span, format!("`{}:` needs a value", field.name())));
                }
                self.enter()?;
                let inner = self.primary()?;
                self.depth -= 1;
                Ok(self.node(NodeKind::Scoped(field, Box::new(inner)), start))
            }
            Token::LBrace => {
                self.bump();
                self.enter()?;
                let mut inner = self.primary()?;
                self.depth -= 1;
                match &mut inner.kind {
                    NodeKind::Term(term) => term.exact = true,
                    NodeKind::Phrase(phrase) => phrase.exact = true,
                    _ => {
                        return Err(QueryError::new(inner.span, "`{…}` holds one word or one phrase")
                            .with_help("write `{Word}` or `{\"Exact Phrase\"}`"))
                    }
                }
                if self.peek() != Some(&Token::RBrace) {
                    let at = self.span_here();
                    return Err(QueryError::new(span.start..at.end, "`{…}` holds one word or one phrase")
                        .with_help("write `{Word}` or `{\"Exact Phrase\"}`"));
                }
                self.bump();
                Ok(self.node(inner.kind, start))
            }
            Token::Word(word) => {
                self.bump();
                self.count_clause(&span)?;
                let (text, prefix) = match word.strip_suffix('*') {
                    Some(stem) => (stem.to_string(), true),
                    None => (word.clone(), false),
                };
                if text.contains('*') {
                    return Err(QueryError::new(span, "`*` is only allowed at the end of a word").with_help(
                        "a wildcard matches words that start with the text before it, e.g. `connect*`",
                    ));
                }
                Ok(self.node(NodeKind::Term(Term { text, prefix, exact: false }), start))
            }
            Token::Quoted { text, slop } => {
                self.bump();
                self.count_clause(&span)?;
                Ok(self.node(NodeKind::Phrase(Phrase { text, slop, exact: false }), start))
            }
            Token::RParen => Err(QueryError::new(span, "unmatched `)`")),
            Token::RBrace => Err(QueryError::new(span, "unmatched `}`")),
            Token::And | Token::Or => Err(QueryError::new(span, "operator without a clause before it")
                .with_help("to search for the word itself, write it in lowercase or in quotes")),
            Token::Not | Token::Minus => Err(QueryError::new(span, "NOT cannot stand here")),
            Token::Near { .. } => Err(QueryError::new(span, "NEAR without a clause before it")),
        }
    }

    fn count_clause(&mut self, span: &Range<usize>) -> Result<(), QueryError> {
        self.clauses += 1;
        if self.clauses > MAX_CLAUSES {
            return Err(QueryError::new(
                span.clone(),
                format!("query has more than {MAX_CLAUSES} words and phrases"),
            )
            .with_help("split it into several rules"));
        }
        Ok(())
    }

    fn expect(&mut self, token: Token, what: &str, opened: Range<usize>) -> Result<(), QueryError> {
        if self.peek() == Some(&token) {
            self.bump();
            return Ok(());
        }
        Err(QueryError::new(opened, format!("this is never closed: expected {what}")))
    }
}
