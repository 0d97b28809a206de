//! The one analyzer that the matcher and the index share.
//!
//! Text is cut into words by Unicode word segmentation (UAX #29), so "don't", "3.5"
//! and "slack.com" stay whole while punctuation and spaces vanish. Each word gets a
//! position (its ordinal among words) and the byte range it came from, which is what
//! the verdict's spans point at.
//!
//! Each word has two forms. The *folded* form is lowercased and stripped of accents
//! ("Café" becomes "cafe"); default matching uses it. The *exact* form is the word as
//! written; `{Exact}` query clauses use it. Both forms are indexed at the same
//! positions, so a proximity query may mix them.
//!
//! `#hashtags` and `@handles` are tokens of their own: `#slack` only matches the
//! hashtag. In [`Mode::Index`] the bare word is indexed at the same position too, so
//! the query `slack` also finds "#Slack", as users of listening tools expect. Queries
//! are analyzed in [`Mode::Query`], which emits only the form written.
//!
//! The analyzer is also a Tantivy tokenizer ([`CullTokenizer`]), so the index gets the
//! same tokens as the matcher by construction rather than by imitation.

use tantivy_tokenizer_api::{Token, TokenStream, Tokenizer};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

/// Name under which [`CullTokenizer`] in [`Form::Folded`] is registered with Tantivy.
pub const FOLDED_TOKENIZER: &str = "cull_folded";
/// Name under which [`CullTokenizer`] in [`Form::Exact`] is registered with Tantivy.
pub const EXACT_TOKENIZER: &str = "cull_exact";

/// Words longer than this many bytes are skipped (they still take a position).
///
/// Such "words" are base64 blobs or URLs run together; nobody writes a rule for them,
/// and Tantivy refuses terms past 64 KiB, so a bound keeps both sides identical.
pub const MAX_WORD_BYTES: usize = 255;

/// Which spelling of a word a token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// Lowercased, accents removed.
    Folded,
    /// As written.
    Exact,
}

/// Whether text is being indexed (or matched against) or is part of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Hashtags and handles also yield their bare word at the same position.
    Index,
    /// Only the form as written.
    Query,
}

/// One token of analyzed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyzedToken {
    /// The term in the requested [`Form`].
    pub term: String,
    /// Ordinal of the word among the words of the text.
    pub position: u32,
    /// Byte offset of the token's first byte in the text.
    pub start: usize,
    /// Byte offset one past the token's last byte.
    pub end: usize,
}

/// Returns `word` lowercased and with combining accents removed.
pub fn fold(word: &str) -> String {
    let mut folded = String::with_capacity(word.len());
    fold_into(word, &mut folded);
    folded
}

/// Appends the folded form of `word` to `out`.
fn fold_into(word: &str, out: &mut String) {
    if word.is_ascii() {
        out.extend(word.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        return;
    }
    for c in word.nfkd().filter(|c| !is_combining_mark(*c)) {
        out.extend(c.to_lowercase());
    }
}

/// One token of analyzed text, borrowed from the text or from the analyzer's buffer;
/// see [`AnalyzedToken`] for an owned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRef<'a> {
    /// The term in the requested [`Form`].
    pub term: &'a str,
    /// Ordinal of the word among the words of the text.
    pub position: u32,
    /// Byte offset of the token's first byte in the text.
    pub start: usize,
    /// Byte offset one past the token's last byte.
    pub end: usize,
}

const SIGILS: [char; 3] = ['#', '@', '＃'];

/// Calls `emit` for each token of `text`, in position order.
///
/// This is the analyzer; [`analyze`] and [`CullTokenizer`] are views of it. It is on
/// the matcher's hot path, so it allocates nothing per token: ASCII words that are
/// already lowercase are handed out as slices of `text`, others are spelled into one
/// reused buffer. Word segmentation is `unicode-segmentation`'s, which has a fast path
/// for ASCII text.
pub fn for_each_token(text: &str, form: Form, mode: Mode, mut emit: impl FnMut(TokenRef<'_>)) {
    let mut buffer = String::new();
    let spell = |word: &'_ str, buffer: &mut String| -> bool {
        // Returns whether the spelling is in `buffer` (true) or is `word` itself.
        if form == Form::Exact || (word.is_ascii() && !word.bytes().any(|b| b.is_ascii_uppercase())) {
            return false;
        }
        buffer.clear();
        fold_into(word, buffer);
        true
    };
    let mut position: u32 = 0;
    let mut previous_end: Option<usize> = None;
    for (start, word) in text.unicode_word_indices() {
        let end = start + word.len();
        // A `#` or `@` right before the word makes a hashtag or handle, unless it is
        // glued to the previous word ("a#b").
        let sigil = text[..start].chars().next_back().filter(|c| SIGILS.contains(c));
        let token_start = match sigil {
            Some(c) if previous_end != Some(start - c.len_utf8()) => start - c.len_utf8(),
            _ => start,
        };
        previous_end = Some(end);
        if end - token_start > MAX_WORD_BYTES {
            position += 1;
            continue;
        }
        let written = &text[token_start..end];
        let in_buffer = spell(written, &mut buffer);
        emit(TokenRef { term: if in_buffer { &buffer } else { written }, position, start: token_start, end });
        if mode == Mode::Index && token_start != start {
            let in_buffer = spell(word, &mut buffer);
            emit(TokenRef { term: if in_buffer { &buffer } else { word }, position, start, end });
        }
        position += 1;
    }
}

/// Returns the tokens of `text`.
pub fn analyze(text: &str, form: Form, mode: Mode) -> Vec<AnalyzedToken> {
    let mut tokens = Vec::new();
    for_each_token(text, form, mode, |t| {
        tokens.push(AnalyzedToken {
            term: t.term.to_string(),
            position: t.position,
            start: t.start,
            end: t.end,
        })
    });
    tokens
}

/// The analyzer as a Tantivy tokenizer, always in [`Mode::Index`].
#[derive(Debug, Clone, Copy)]
pub struct CullTokenizer {
    form: Form,
}

impl CullTokenizer {
    /// Returns a tokenizer producing the given form.
    pub fn new(form: Form) -> CullTokenizer {
        CullTokenizer { form }
    }
}

/// The token stream of [`CullTokenizer`]; tokens are computed up front because the
/// analyzer looks behind (at the sigil) and ahead (at the bare word).
#[derive(Debug)]
pub struct CullTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for CullTokenizer {
    type TokenStream<'a> = CullTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CullTokenStream {
        let mut tokens = Vec::new();
        for_each_token(text, self.form, Mode::Index, |t| {
            tokens.push(Token {
                offset_from: t.start,
                offset_to: t.end,
                position: t.position as usize,
                text: t.term.to_string(),
                position_length: 1,
            })
        });
        CullTokenStream { tokens, next: 0 }
    }
}

impl TokenStream for CullTokenStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str, form: Form, mode: Mode) -> Vec<(String, u32)> {
        analyze(text, form, mode).into_iter().map(|t| (t.term, t.position)).collect()
    }

    fn t(term: &str, position: u32) -> (String, u32) {
        (term.to_string(), position)
    }

    #[test]
    fn words_are_folded_and_positioned() {
        assert_eq!(
            terms("Café MÜNCHEN, don't stop!", Form::Folded, Mode::Query),
            vec![t("cafe", 0), t("munchen", 1), t("don't", 2), t("stop", 3)]
        );
        assert_eq!(terms("Café", Form::Exact, Mode::Query), vec![t("Café", 0)]);
    }

    #[test]
    fn hashtags_and_handles_are_tokens_and_index_their_bare_word() {
        assert_eq!(
            terms("love #Slack via @SlackHQ", Form::Folded, Mode::Index),
            vec![t("love", 0), t("#slack", 1), t("slack", 1), t("via", 2), t("@slackhq", 3), t("slackhq", 3)]
        );
        assert_eq!(terms("#Slack", Form::Exact, Mode::Query), vec![t("#Slack", 0)]);
        assert_eq!(terms("a#b", Form::Folded, Mode::Index), vec![t("a", 0), t("b", 1)]);
        assert_eq!(terms("# b", Form::Folded, Mode::Index), vec![t("b", 0)]);
    }

    #[test]
    fn offsets_point_into_the_original_text() {
        let text = "Ça va? #Élan";
        for token in analyze(text, Form::Folded, Mode::Index) {
            assert_eq!(fold(&text[token.start..token.end]), token.term);
        }
    }

    #[test]
    fn overlong_words_are_skipped_but_keep_their_position() {
        let long = "x".repeat(MAX_WORD_BYTES + 1);
        assert_eq!(terms(&format!("a {long} b"), Form::Folded, Mode::Query), vec![t("a", 0), t("b", 2)]);
    }

    #[test]
    fn tantivy_stream_yields_the_same_tokens() {
        let text = "Great #piece in Connections";
        let mut tokenizer = CullTokenizer::new(Form::Folded);
        let mut stream = tokenizer.token_stream(text);
        let mut seen = Vec::new();
        while let Some(token) = stream.next() {
            seen.push((token.text.clone(), token.position as u32));
        }
        assert_eq!(seen, terms(text, Form::Folded, Mode::Index));
    }

    proptest::proptest! {
        #[test]
        fn analyzer_never_panics_and_offsets_are_char_boundaries(text in "\\PC{0,80}") {
            let mut last = 0;
            for token in analyze(&text, Form::Folded, Mode::Index) {
                proptest::prop_assert!(text.is_char_boundary(token.start) && text.is_char_boundary(token.end));
                proptest::prop_assert!(token.position >= last);
                last = token.position;
            }
        }
    }
}
