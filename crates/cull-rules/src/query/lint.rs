//! Warnings about queries that parse but probably do not say what their author meant.
//!
//! Operators come from Google Alerts, Brandwatch and Boolean search habits: they write
//! `amazon and (prime or alexa)`, `NEAR3`, `near/3`, `!kindle` or paste “smart quotes”
//! from a document. Each of those is valid query text that searches for something else
//! (the word `and`, the word `near/3`, the word `kindle`, two loose words), so the
//! rule loads and quietly matches the wrong mentions. A lint points at each with the
//! text to write instead; it never refuses a query.

use std::ops::Range;

use super::parser::{lex, Token};

/// A query that parses but is probably not what its author meant, located by a byte
/// range of the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryWarning {
    /// Byte range of the suspicious text.
    pub span: Range<usize>,
    /// What the query does there.
    pub message: String,
    /// What to write instead.
    pub help: String,
}

/// Opening and closing smart quotes, double then single.
const SMART_QUOTES: [(char, char); 2] = [('\u{201C}', '\u{201D}'), ('\u{2018}', '\u{2019}')];

/// Returns the warnings of `input`; none for a query that does not lex (its error is
/// reported by [`parse`](super::parse)).
pub fn lint(input: &str) -> Vec<QueryWarning> {
    let Ok(tokens) = lex(input) else { return Vec::new() };
    let mut warnings = Vec::new();
    let mut quoted_until = 0;
    for (i, (token, span)) in tokens.iter().enumerate() {
        let Token::Word(word) = token else { continue };
        if span.start < quoted_until {
            continue;
        }
        let before = i.checked_sub(1).map(|i| &tokens[i].0);
        let after = tokens.get(i + 1).map(|(t, _)| t);
        let warning = smart_quotes(input, &tokens[i..])
            .inspect(|quoted| quoted_until = quoted.span.end)
            .or_else(|| lowercase_operator(word, span, before, after))
            .or_else(|| misspelled_near(word, span))
            .or_else(|| bang_negation(word, span));
        warnings.extend(warning);
    }
    warnings
}

fn ends_clause(token: Option<&Token>) -> bool {
    matches!(token, Some(Token::Word(_) | Token::Quoted { .. } | Token::RParen | Token::RBrace))
}

fn starts_clause(token: Option<&Token>) -> bool {
    matches!(
        token,
        Some(
            Token::Word(_)
                | Token::Quoted { .. }
                | Token::LParen
                | Token::LBrace
                | Token::Field(_)
                | Token::Minus
                | Token::Not
        )
    )
}

/// `a and b`, `a or b`, `a not b`: searched as the words `and`, `or`, `not`.
fn lowercase_operator(
    word: &str,
    span: &Range<usize>,
    before: Option<&Token>,
    after: Option<&Token>,
) -> Option<QueryWarning> {
    let operator = ["AND", "OR", "NOT"].into_iter().find(|op| op.eq_ignore_ascii_case(word))?;
    let between = match operator {
        // NOT is unary: it may also open the query.
        "NOT" => (before.is_none() || ends_clause(before)) && starts_clause(after),
        _ => ends_clause(before) && starts_clause(after),
    };
    between.then(|| QueryWarning {
        span: span.clone(),
        message: format!("`{word}` is searched as a word, not as the operator {operator}"),
        help: format!(
            "operators are uppercase: write `{operator}`; to search for the word, quote it: `\"{word}\"`"
        ),
    })
}

/// `NEAR3`, `near/3`, `onear/3`: searched as a word.
fn misspelled_near(word: &str, span: &Range<usize>) -> Option<QueryWarning> {
    let lowercase = word.to_ascii_lowercase();
    let (keyword, rest) = [("ONEAR", "onear"), ("NEAR", "near")]
        .into_iter()
        .find_map(|(keyword, prefix)| Some((keyword, lowercase.strip_prefix(prefix)?)))?;
    let digits = rest.strip_prefix('/').unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(QueryWarning {
        span: span.clone(),
        message: format!("`{word}` is searched as a word, not as the operator {keyword}/{digits}"),
        help: format!("write `{keyword}/{digits}`, in uppercase with a `/`"),
    })
}

/// `!kindle`: the `!` is dropped with the punctuation and `kindle` is searched for.
fn bang_negation(word: &str, span: &Range<usize>) -> Option<QueryWarning> {
    let negated = word.strip_prefix('!')?;
    negated.starts_with(char::is_alphanumeric).then(|| QueryWarning {
        span: span.start..span.start + 1,
        message: format!("`!` is not an operator: `{word}` searches for `{negated}`"),
        help: format!("to exclude it, write `NOT {negated}` or `-{negated}`"),
    })
}

/// `“call center”`: smart quotes are letters to the lexer, so the words are searched
/// one by one and the quotes are dropped with the punctuation. `tokens` starts at the
/// word that may open the quote; an apostrophe inside a word (`don’t`) is no quote.
fn smart_quotes(input: &str, tokens: &[(Token, Range<usize>)]) -> Option<QueryWarning> {
    let (Token::Word(first), first_span) = &tokens[0] else { return None };
    let (open, close) = SMART_QUOTES.into_iter().find(|(open, close)| first.starts_with([*open, *close]))?;
    let opening = first.chars().next()?.len_utf8();
    let closing = tokens.iter().find_map(|(token, span)| match token {
        Token::Word(word)
            if word.ends_with([open, close])
                && (span.start > first_span.start || word.chars().count() > 1) =>
        {
            Some(span.end)
        }
        _ => None,
    });
    let Some(end) = closing else {
        // A lone double quote is still no phrase; a lone single one is an apostrophe.
        return (open == '\u{201C}').then(|| QueryWarning {
            span: first_span.start..first_span.start + opening,
            message: format!(
                "`{}` is not a phrase quote: `{first}` is searched as a word",
                &first[..opening]
            ),
            help: "write phrases in straight quotes: `\"`".to_string(),
        });
    };
    let inner_end = end - input[..end].chars().next_back()?.len_utf8();
    let inner = &input[first_span.start + opening..inner_end];
    Some(QueryWarning {
        span: first_span.start..end,
        message: "smart quotes are not phrase quotes: the words between them are searched one by one"
            .to_string(),
        help: format!("write the phrase in straight quotes: `\"{inner}\"`"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(input: &str) -> Vec<(&str, String)> {
        lint(input).into_iter().map(|w| (&input[w.span], w.help)).collect()
    }

    #[test]
    fn lowercase_operators_between_clauses_are_warned_about() {
        assert_eq!(
            warned("amazon and (prime or alexa)"),
            [
                (
                    "and",
                    "operators are uppercase: write `AND`; to search for the word, quote it: `\"and\"`"
                        .into()
                ),
                (
                    "or",
                    "operators are uppercase: write `OR`; to search for the word, quote it: `\"or\"`".into()
                ),
            ]
        );
        assert_eq!(warned("slack not adjuster")[0].0, "not");
        assert_eq!(warned("Not adjuster slack")[0].0, "Not");
        assert_eq!(warned("\"salt\" Or {Pepper}")[0].0, "Or");
    }

    #[test]
    fn words_that_only_look_like_operators_are_left_alone() {
        for quiet in [
            "\"rock and roll\"",
            "title:and",
            "{or}",
            "slack and",
            "or slack",
            "slack AND adjuster",
            "a NOT b",
            "don’t panic",
            "clients’ data",
            "near the station",
            "nearby",
        ] {
            assert_eq!(warned(quiet), [], "{quiet}");
        }
    }

    #[test]
    fn near_without_its_slash_or_in_lowercase_is_warned_about() {
        assert_eq!(warned("a NEAR3 b"), [("NEAR3", "write `NEAR/3`, in uppercase with a `/`".into())]);
        assert_eq!(warned("a near/3 b")[0].1, "write `NEAR/3`, in uppercase with a `/`");
        assert_eq!(warned("a onear/12 b")[0].1, "write `ONEAR/12`, in uppercase with a `/`");
        assert_eq!(warned("a ONEAR5 b")[0].0, "ONEAR5");
    }

    #[test]
    fn smart_quotes_are_warned_about_with_the_phrase_in_straight_quotes() {
        assert_eq!(
            warned("“call center” OR ‘help desk’"),
            [
                ("“call center”", "write the phrase in straight quotes: `\"call center\"`".into()),
                ("‘help desk’", "write the phrase in straight quotes: `\"help desk\"`".into()),
            ]
        );
        assert_eq!(warned("“slack”")[0].1, "write the phrase in straight quotes: `\"slack\"`");
        assert_eq!(warned("“call center")[0].0, "“");
        assert_eq!(warned("“rock and roll”").len(), 1);
    }

    #[test]
    fn a_bang_is_no_negation() {
        assert_eq!(
            lint("slack !adjuster")[0].message,
            "`!` is not an operator: `!adjuster` searches for `adjuster`"
        );
        assert_eq!(warned("slack !"), []);
    }

    #[test]
    fn a_query_that_does_not_lex_has_no_warnings() {
        assert_eq!(warned("a and \"unterminated"), []);
    }
}
