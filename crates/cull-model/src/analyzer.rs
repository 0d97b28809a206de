//! The one analyzer that the matcher and the index share.
//!
//! Text is cut into words by Unicode word segmentation (UAX #29), so punctuation and
//! spaces vanish while "don't", "3.5" and "slack.com" stay whole. Each word gets a
//! position (its ordinal among words) and the byte range it came from, which is what
//! the verdict's spans point at.
//!
//! Each word has two forms. The *folded* form is lowercased and stripped of accents
//! ("Café" becomes "cafe"); default matching uses it. The *exact* form is the word as
//! written; `{Exact}` query clauses use it. Both forms are indexed at the same
//! positions, so a proximity query may mix them. Neither form keeps invisible format
//! characters (a soft hyphen, a bidi mark, a zero-width joiner), and both write every
//! apostrophe as `'`.
//!
//! A brand must be found however a post writes it, so in [`Mode::Index`] a word also
//! yields, at its own position, the stem of a possessive or clitic ("Slack's" and
//! "Apple’s" also index `slack` and `apple`) and the word after a French or Italian
//! elision ("l'Oréal" also indexes `oreal`). A word whose parts segmentation keeps
//! joined by `.`, `:`, `/` or `_` ("NASDAQ:WORK", "slack.com") yields each part as a
//! word at a position of its own, the whole beside the first part: `"nasdaq work"`,
//! `work` and `slack.com` all find it.
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

/// Returns `word` lowercased and with combining accents removed, as the analyzer
/// spells a [`Form::Folded`] term (invisible format characters dropped, every
/// apostrophe written `'`).
pub fn fold(word: &str) -> String {
    let mut folded = String::with_capacity(word.len());
    spell_into(word, Form::Folded, &mut folded);
    folded
}

/// Appends the spelling of `word` in `form` to `out`.
fn spell_into(word: &str, form: Form, out: &mut String) {
    if word.is_ascii() {
        match form {
            Form::Folded => {
                let start = out.len();
                out.push_str(word);
                out[start..].make_ascii_lowercase();
            }
            Form::Exact => out.push_str(word),
        }
        return;
    }
    let visible = |c: &char| !is_format(*c);
    match form {
        Form::Folded => {
            for c in word.nfkd().filter(|c| !is_combining_mark(*c)).filter(visible) {
                if is_apostrophe(c) {
                    out.push('\'');
                } else {
                    out.extend(c.to_lowercase());
                }
            }
        }
        Form::Exact => {
            out.extend(word.chars().filter(visible).map(|c| if is_apostrophe(c) { '\'' } else { c }))
        }
    }
}

/// Whether `c` is an invisible format character (Unicode general category Cf: the
/// soft hyphen, zero-width joiners, bidi marks and isolates, the BOM, tag characters).
///
/// Word segmentation keeps these inside a word (UAX #29 rule WB4), so "Slack\u{200E}"
/// would otherwise be a different word from "Slack": they are routine in right-to-left
/// posts, and anyone could use them to dodge a rule. The list is the Cf category of
/// Unicode 15.1, written out because no maintained crate exposes general categories
/// without a much larger table.
pub fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{600}'..='\u{605}'
            | '\u{61C}'
            | '\u{6DD}'
            | '\u{70F}'
            | '\u{890}'..='\u{891}'
            | '\u{8E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Whether `c` is written as an apostrophe: "Apple's" and "Apple’s" are one word.
fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{2BC}' | '\u{FF07}')
}

/// Whether `c` joins the parts of a word that segmentation keeps whole
/// ("NASDAQ:WORK", "slack.com", "snake_case"), each part being a word of its own.
fn is_joiner(c: char) -> bool {
    matches!(c, '.' | ':' | '_' | '/' | '\u{2024}' | '\u{FF0E}' | '\u{FF0F}' | '\u{FF1A}' | '\u{FF3F}')
}

/// French and Italian elisions: "l'Oréal" and "dell'Apple" also index "oreal" and
/// "apple", as Lucene's elision filter does.
const ELISIONS: [&str; 18] = [
    "l", "d", "j", "m", "n", "s", "t", "c", "qu", "jusqu", "lorsqu", "puisqu", "quoiqu", "dell", "all",
    "dall", "nell", "sull",
];

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

/// Spells terms in one [`Form`], reusing one buffer for the words that need a change.
struct Speller {
    form: Form,
    buffer: String,
}

impl Speller {
    /// Returns the term for `written` (`ascii` when it is all ASCII, `lower` when it
    /// is known to hold no ASCII capital): `written` itself when it is already spelled.
    fn spell<'a>(&'a mut self, written: &'a str, ascii: bool, lower: bool) -> &'a str {
        let unchanged =
            ascii && (self.form == Form::Exact || lower || !written.bytes().any(|b| b.is_ascii_uppercase()));
        if unchanged {
            return written;
        }
        self.buffer.clear();
        spell_into(written, self.form, &mut self.buffer);
        &self.buffer
    }
}

/// Bits of what an ASCII byte is, to UAX #29 and to the analyzer's steps; a word's
/// class is the union of its bytes' ([`ascii_class`]).
struct Class;

impl Class {
    /// ALetter.
    const LETTER: u8 = 1;
    /// Numeric.
    const DIGIT: u8 = 2;
    /// ExtendNumLet. Any two of letters, digits and `_` join (WB5, WB8–WB10,
    /// WB13a–b): they are a word's core.
    const UNDERSCORE: u8 = 4;
    const CORE: u8 = Class::LETTER | Class::DIGIT | Class::UNDERSCORE;
    /// Joins two letters (WB6–WB7: `.`, `'`, `:`).
    const MID_LETTER: u8 = 8;
    /// Joins two digits (WB11–WB12: `.`, `'`, `,`, `;`).
    const MID_NUMBER: u8 = 16;
    const UPPER: u8 = 32;
    /// `. : _ /`, see [`is_joiner`].
    const JOINER: u8 = 64;
    const APOSTROPHE: u8 = 128;
    /// What a word not known to be ASCII may hold.
    const ANY: u8 = u8::MAX;
}

/// The [`Class`] of each ASCII byte.
const ASCII_CLASS: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = match b as u8 {
            b'a'..=b'z' => Class::LETTER,
            b'A'..=b'Z' => Class::LETTER | Class::UPPER,
            b'0'..=b'9' => Class::DIGIT,
            b'_' => Class::UNDERSCORE | Class::JOINER,
            b'.' => Class::MID_LETTER | Class::MID_NUMBER | Class::JOINER,
            b'\'' => Class::MID_LETTER | Class::MID_NUMBER | Class::APOSTROPHE,
            b':' => Class::MID_LETTER | Class::JOINER,
            b',' | b';' => Class::MID_NUMBER,
            b'/' => Class::JOINER,
            _ => 0,
        };
        b += 1;
    }
    table
};

/// Returns the [`Class`] of ASCII byte `b`.
fn byte_class(b: u8) -> u8 {
    ASCII_CLASS[usize::from(b & 0x7F)]
}

/// Returns the [`Class`] of ASCII `word`.
fn ascii_class(word: &str) -> u8 {
    word.bytes().fold(0, |class, b| class | byte_class(b))
}

/// Returns `range` of `text` (`ascii` when it is all ASCII, which has no format
/// character) without the format characters at either end, so that a highlight covers
/// only what is visible.
fn trim_format(text: &str, range: (usize, usize), ascii: bool) -> (usize, usize) {
    if ascii {
        return range;
    }
    let piece = &text[range.0..range.1];
    let trimmed = piece.trim_start_matches(is_format);
    let start = range.0 + (piece.len() - trimmed.len());
    (start, start + trimmed.trim_end_matches(is_format).len())
}

/// Returns the byte length of the word in `piece` without its trailing possessive or
/// clitic "'s" ("Slack's", "Apple’s"), if it has one; `ascii` when it is all ASCII.
fn without_possessive(piece: &str, ascii: bool) -> Option<usize> {
    match piece.as_bytes() {
        // ASCII has no format character and one apostrophe: the last two bytes say it.
        [stem @ .., b'\'', b's' | b'S'] if ascii => {
            stem.iter().any(u8::is_ascii_alphanumeric).then_some(stem.len())
        }
        _ if ascii => None,
        _ => unicode_without_possessive(piece),
    }
}

/// [`without_possessive`] for any text.
fn unicode_without_possessive(piece: &str) -> Option<usize> {
    let mut chars = piece.char_indices().rev().filter(|(_, c)| !is_format(*c));
    let (_, s) = chars.next()?;
    let (apostrophe, a) = chars.next()?;
    let stem = &piece[..apostrophe];
    ((s == 's' || s == 'S') && is_apostrophe(a) && stem.chars().any(char::is_alphanumeric))
        .then_some(apostrophe)
}

/// Returns the byte offset in `piece` after a French or Italian elision ("l'", "dell'");
/// `article` is a buffer to fold the article into; `ascii` when `piece` is all ASCII.
fn after_elision(piece: &str, ascii: bool, article: &mut String) -> Option<usize> {
    // Most words are ASCII letters and digits: the first byte that is not a letter
    // rules an elision in or out without decoding a character.
    if ascii && piece.as_bytes().iter().find(|b| !b.is_ascii_alphabetic()) != Some(&b'\'') {
        return None;
    }
    unicode_after_elision(piece, article)
}

/// [`after_elision`] for any text.
fn unicode_after_elision(piece: &str, article: &mut String) -> Option<usize> {
    let (apostrophe, a) = piece.char_indices().find(|(_, c)| !c.is_alphabetic() && !is_format(*c))?;
    if !is_apostrophe(a) {
        return None;
    }
    article.clear();
    spell_into(&piece[..apostrophe], Form::Folded, article);
    let rest = apostrophe + a.len_utf8();
    (ELISIONS.contains(&article.as_str()) && piece[rest..].chars().any(char::is_alphanumeric)).then_some(rest)
}

/// Returns the byte ranges (within `word`) of the parts that joiners separate, or
/// nothing when `word` is one part (`ascii` when it is all ASCII). A `.` between
/// digits is a decimal point, not a joiner: "3.5" stays one word.
fn joined_parts(word: &str, ascii: bool, parts: &mut Vec<(usize, usize)>) {
    parts.clear();
    let joined = if ascii {
        word.bytes().any(|b| matches!(b, b'.' | b':' | b'_' | b'/'))
    } else {
        word.contains(is_joiner)
    };
    if !joined {
        return;
    }
    let mut part_start = 0;
    let mut previous: Option<char> = None;
    let mut chars = word.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let next = chars.peek().map(|(_, n)| *n);
        let decimal = c == '.'
            && previous.is_some_and(|p| p.is_ascii_digit())
            && next.is_some_and(|n| n.is_ascii_digit());
        if is_joiner(c) && !decimal {
            parts.push((part_start, at));
            part_start = at + c.len_utf8();
        }
        previous = Some(c);
    }
    parts.push((part_start, word.len()));
    parts.retain(|&(start, end)| word[start..end].chars().any(char::is_alphanumeric));
    if parts.len() < 2 {
        parts.clear();
    }
}

/// Calls `emit` for each token of `text`, in position order.
///
/// This is the analyzer; [`analyze`] and [`CullTokenizer`] are views of it. It is on
/// the matcher's hot path, so it allocates nothing per token: ASCII words that are
/// already lowercase are handed out as slices of `text`, others are spelled into one
/// reused buffer. Words are those of `unicode-segmentation`, whose segmenter reads the
/// parts of the text that are not ASCII, and a hand-written one the rest.
///
/// A word of joined parts ("NASDAQ:WORK") takes one position per part in both modes,
/// so that a phrase of the query lines up with the text whichever way each writes it;
/// in [`Mode::Query`] only the whole is emitted, at the first part's position.
pub fn for_each_token(text: &str, form: Form, mode: Mode, emit: impl FnMut(TokenRef<'_>)) {
    for_each_token_with(text, form, mode, &mut TokenBuffers::default(), emit);
}

/// The buffers of the analyzer, kept between texts by a caller that analyzes many, so
/// that analysis allocates nothing once they have grown to the longest word.
#[derive(Debug, Default)]
pub struct TokenBuffers {
    spelling: String,
    article: String,
    parts: Vec<(usize, usize)>,
}

/// As [`for_each_token`], with buffers kept by the caller.
pub fn for_each_token_with(
    text: &str,
    form: Form,
    mode: Mode,
    buffers: &mut TokenBuffers,
    mut emit: impl FnMut(TokenRef<'_>),
) {
    let TokenBuffers { spelling, article, parts } = buffers;
    let mut speller = Speller { form, buffer: std::mem::take(spelling) };
    let mut position: u32 = 0;
    let mut previous_end: Option<usize> = None;
    for (start, word, class) in Words::new(text) {
        let end = start + word.len();
        // A `#` or `@` right before the word makes a hashtag or handle, unless it is
        // glued to the previous word ("a#b").
        let sigil = text[..start].chars().next_back().filter(|c| SIGILS.contains(c));
        let token_start = match sigil {
            Some(c) if previous_end != Some(start - c.len_utf8()) => start - c.len_utf8(),
            _ => start,
        };
        previous_end = Some(end);
        // Whether the word is ASCII is asked once, for every step's fast path (a word
        // the ASCII segmenter found is); a piece that starts before the word holds its
        // sigil too.
        let ascii = class.is_some() || word.is_ascii();
        // What an ASCII word holds, read as it was found, rules out most steps below
        // without each reading the word again.
        let class = match class {
            Some(class) => class,
            None if ascii => ascii_class(word),
            None => Class::ANY,
        };
        let possessive = if class & Class::APOSTROPHE == 0 { None } else { without_possessive(word, ascii) };
        let stem = &word[..possessive.unwrap_or(word.len())];
        if class & Class::JOINER == 0 {
            parts.clear();
        } else {
            joined_parts(stem, ascii, parts);
        }
        let mut emit_piece = |range: (usize, usize), position: u32| {
            if range.1 - range.0 > MAX_WORD_BYTES {
                return;
            }
            let ascii = ascii && (range.0 >= start || text.as_bytes()[range.0..start].is_ascii());
            let (start, end) = trim_format(text, range, ascii);
            let lower = ascii && class & Class::UPPER == 0;
            emit(TokenRef {
                term: speller.spell(&text[range.0..range.1], ascii, lower),
                position,
                start,
                end,
            });
        };
        emit_piece((token_start, end), position);
        if mode == Mode::Index {
            if token_start != start {
                emit_piece((start, end), position);
            }
            if possessive.is_some() {
                emit_piece((start, start + stem.len()), position);
            }
            let elision =
                if class & Class::APOSTROPHE == 0 { None } else { after_elision(stem, ascii, article) };
            if let Some(rest) = elision {
                emit_piece((start + rest, start + stem.len()), position);
            }
            for (i, &(part_start, part_end)) in parts.iter().enumerate() {
                emit_piece((start + part_start, start + part_end), position + i as u32);
            }
        }
        position = position.saturating_add(parts.len().max(1) as u32);
    }
    *spelling = speller.buffer;
}

/// The words of a text, with their byte offsets: those
/// [`UnicodeSegmentation::unicode_word_indices`] gives, found piece by piece, each
/// piece by the segmenter for what it holds.
///
/// Most posts that are not all ASCII are ASCII but for a curly quote or an emoji,
/// and Unicode segmentation costs several times the ASCII segmenter. So the text is
/// cut where a space is followed by an ASCII character other than a space: UAX #29
/// always breaks there, and no rule looks across such a space, so that each piece
/// segments as it does within the whole text. (A space followed by a character that
/// is not ASCII is not a cut: an extending mark would join the space, WB4.) Pieces
/// that are all ASCII go to [`AsciiWords`], the others to unicode-segmentation.
struct Words<'a> {
    text: &'a str,
    /// Where the piece being read starts in `text`, and where the next one does.
    piece_start: usize,
    next_piece: usize,
    piece: Piece<'a>,
}

enum Piece<'a> {
    Ascii(AsciiWords<'a>),
    Unicode(unicode_segmentation::UnicodeWordIndices<'a>),
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Words<'a> {
        Words { text, piece_start: 0, next_piece: 0, piece: Piece::Ascii(AsciiWords { text: "", at: 0 }) }
    }

    /// Whether UAX #29 breaks before byte `at` of `bytes` whatever comes before the
    /// space that precedes it (see [`Words`]).
    fn is_cut(bytes: &[u8], at: usize) -> bool {
        bytes[at - 1] == b' ' && bytes[at] != b' ' && bytes[at].is_ascii()
    }

    /// Starts the piece at `next_piece`: the ASCII up to the last cut before the next
    /// character that is not ASCII, or, when there is no such cut, up to the first cut
    /// after that character.
    fn next_piece(&mut self) {
        let rest = &self.text[self.next_piece..];
        let bytes = rest.as_bytes();
        let (end, ascii) = match bytes.iter().position(|b| !b.is_ascii()) {
            None => (bytes.len(), true),
            Some(first) => match (1..first).rev().find(|&at| Self::is_cut(bytes, at)) {
                Some(cut) => (cut, true),
                None => (
                    (first + 1..bytes.len()).find(|&at| Self::is_cut(bytes, at)).unwrap_or(bytes.len()),
                    false,
                ),
            },
        };
        let text = &rest[..end];
        self.piece = if ascii {
            Piece::Ascii(AsciiWords { text, at: 0 })
        } else {
            Piece::Unicode(text.unicode_word_indices())
        };
        self.piece_start = self.next_piece;
        self.next_piece += end;
    }
}

impl<'a> Iterator for Words<'a> {
    /// A word's offset, the word, and its [`Class`] when the ASCII segmenter found it.
    type Item = (usize, &'a str, Option<u8>);

    fn next(&mut self) -> Option<(usize, &'a str, Option<u8>)> {
        loop {
            let word = match &mut self.piece {
                Piece::Ascii(words) => words.next().map(|(start, word, class)| (start, word, Some(class))),
                Piece::Unicode(words) => words.next().map(|(start, word)| (start, word, None)),
            };
            if let Some((start, word, class)) = word {
                return Some((self.piece_start + start, word, class));
            }
            if self.next_piece == self.text.len() {
                return None;
            }
            self.next_piece();
        }
    }
}

/// The words of an all-ASCII text, with their byte offsets: those
/// [`UnicodeSegmentation::unicode_word_indices`] gives.
///
/// Hand-written because that crate's ASCII path makes a segment of every space and
/// punctuation mark between words, which its word filter then reads and drops: about
/// half of its work on prose. This one skips to the next letter, digit or `_` and
/// takes the same run the crate's would (UAX #29 for ASCII, see [`Class`]);
/// a property test holds it to the crate's answers.
struct AsciiWords<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for AsciiWords<'a> {
    /// A word's offset, the word, and its [`Class`], read on the way.
    type Item = (usize, &'a str, u8);

    fn next(&mut self) -> Option<(usize, &'a str, u8)> {
        let bytes = self.text.as_bytes();
        loop {
            let start = self.at + bytes[self.at..].iter().position(|&b| byte_class(b) & Class::CORE != 0)?;
            let (mut end, mut seen) = (start + 1, byte_class(bytes[start]));
            while let Some(&b) = bytes.get(end) {
                let class = byte_class(b);
                if class & Class::CORE != 0 {
                    seen |= class;
                    end += 1;
                    continue;
                }
                let Some(&after) = bytes.get(end + 1) else { break };
                let after = byte_class(after);
                let both = byte_class(bytes[end - 1]) & after;
                if class & Class::MID_LETTER != 0 && both & Class::LETTER != 0
                    || class & Class::MID_NUMBER != 0 && both & Class::DIGIT != 0
                {
                    seen |= class | after;
                    end += 2;
                } else {
                    break;
                }
            }
            self.at = end;
            // A run of `_` alone is a segment, but not a word.
            if seen & (Class::LETTER | Class::DIGIT) != 0 {
                return Some((start, &self.text[start..end], seen));
            }
        }
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
    fn possessives_and_clitics_also_index_their_stem() {
        assert_eq!(
            terms("Slack's outage, Apple\u{2019}s shares", Form::Folded, Mode::Index),
            vec![
                t("slack's", 0),
                t("slack", 0),
                t("outage", 1),
                t("apple's", 2),
                t("apple", 2),
                t("shares", 3)
            ]
        );
        assert_eq!(terms("Slack's", Form::Exact, Mode::Index), vec![t("Slack's", 0), t("Slack", 0)]);
        assert_eq!(terms("Apple\u{2019}s", Form::Folded, Mode::Query), vec![t("apple's", 0)]);
        assert_eq!(
            terms("l'Oréal dell'Apple", Form::Folded, Mode::Index),
            vec![t("l'oreal", 0), t("oreal", 0), t("dell'apple", 1), t("apple", 1)]
        );
        assert_eq!(terms("don't", Form::Folded, Mode::Index), vec![t("don't", 0)]);
        let stem = &analyze("Slack's", Form::Folded, Mode::Index)[1];
        assert_eq!((stem.start, stem.end), (0, 5), "the stem's highlight leaves out the 's");
    }

    #[test]
    fn joined_words_index_each_part_at_its_own_position() {
        assert_eq!(
            terms("(NASDAQ:WORK) via slack.com", Form::Folded, Mode::Index),
            vec![
                t("nasdaq:work", 0),
                t("nasdaq", 0),
                t("work", 1),
                t("via", 2),
                t("slack.com", 3),
                t("slack", 3),
                t("com", 4)
            ]
        );
        assert_eq!(
            terms("slack.com today", Form::Folded, Mode::Query),
            vec![t("slack.com", 0), t("today", 2)]
        );
        assert_eq!(
            terms("snake_case", Form::Folded, Mode::Index),
            vec![t("snake_case", 0), t("snake", 0), t("case", 1)]
        );
        assert_eq!(
            terms("Slack.com's", Form::Folded, Mode::Index),
            vec![t("slack.com's", 0), t("slack.com", 0), t("slack", 0), t("com", 1)]
        );
        assert_eq!(terms("3.5 percent", Form::Folded, Mode::Index), vec![t("3.5", 0), t("percent", 1)]);
    }

    #[test]
    fn invisible_format_characters_never_change_a_word() {
        for text in
            ["Slack\u{200E}", "\u{2068}Slack\u{2069}", "Slack\u{200D}", "Sla\u{AD}ck", "\u{FEFF}Slack"]
        {
            let tokens = analyze(text, Form::Folded, Mode::Index);
            assert_eq!(tokens.iter().map(|t| t.term.as_str()).collect::<Vec<_>>(), ["slack"], "{text:?}");
            assert_eq!(
                text[tokens[0].start..tokens[0].end].chars().filter(|c| !is_format(*c)).collect::<String>(),
                "Slack"
            );
            assert!(
                !is_format(text[tokens[0].start..].chars().next().unwrap()),
                "{text:?}: span starts visible"
            );
            assert_eq!(terms(text, Form::Exact, Mode::Index), vec![t("Slack", 0)], "{text:?}");
        }
        assert_eq!(fold("Sla\u{AD}ck\u{2019}s"), "slack's");
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

    #[test]
    fn the_ascii_fast_paths_rest_on_what_ascii_is() {
        // The fast paths for ASCII words assume that no ASCII character is invisible,
        // that `'` is ASCII's only apostrophe and `. : _ /` its only joiners, and that
        // Unicode's letters and digits agree with ASCII's there.
        for c in (0u8..128).map(char::from) {
            assert!(!is_format(c), "{c:?}");
            assert_eq!(is_apostrophe(c), c == '\'', "{c:?}");
            assert_eq!(is_joiner(c), matches!(c, '.' | ':' | '_' | '/'), "{c:?}");
            assert_eq!(c.is_alphabetic(), c.is_ascii_alphabetic(), "{c:?}");
            assert_eq!(c.is_alphanumeric(), c.is_ascii_alphanumeric(), "{c:?}");
        }
    }

    #[test]
    fn a_space_before_a_mark_is_not_a_cut() {
        // The mark joins the space (WB4), and the Devanagari vowel sign is alphabetic,
        // so the space starts a word.
        for text in ["\u{e9} \u{93e}", "a \u{301}b c", "\u{1f44d} \u{200d}x y"] {
            let pieces: Vec<(usize, &str)> = Words::new(text).map(|(start, word, _)| (start, word)).collect();
            assert_eq!(pieces, text.unicode_word_indices().collect::<Vec<_>>(), "{text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn ascii_words_take_the_fast_paths_to_the_same_answers(word in "(l'|L'|qu'|dell'|x')?[a-zA-Z0-9'.:_/#@ -]{0,10}('s|'S|')?") {
            proptest::prop_assert_eq!(without_possessive(&word, true), unicode_without_possessive(&word));
            let (mut fast, mut general) = (String::new(), String::new());
            proptest::prop_assert_eq!(
                after_elision(&word, true, &mut fast),
                unicode_after_elision(&word, &mut general)
            );
            let mut parts = Vec::new();
            joined_parts(&word, true, &mut parts);
            let mut general = Vec::new();
            joined_parts(&word, false, &mut general);
            proptest::prop_assert_eq!(&parts, &general);
            proptest::prop_assert_eq!(trim_format(&word, (0, word.len()), true), trim_format(&word, (0, word.len()), false));
            // The steps the word's class skips would have found nothing.
            let class = ascii_class(&word);
            if class & Class::JOINER == 0 {
                proptest::prop_assert!(parts.is_empty());
            }
            if class & Class::APOSTROPHE == 0 {
                proptest::prop_assert_eq!(after_elision(&word, true, &mut fast), None);
                proptest::prop_assert_eq!(without_possessive(&word, true), None);
            }
            if class & Class::UPPER == 0 {
                proptest::prop_assert_eq!(fold(&word), word.clone());
            }
        }

        #[test]
        fn the_ascii_segmenter_finds_the_words_unicode_segmentation_finds(
            text in "([a-zA-Z0-9_.,;:'\"#@/ \t\r\n-]|[aZ9][.,;:'][aZ9_]){0,40}"
        ) {
            let ascii: Vec<(usize, &str, u8)> = AsciiWords { text: &text, at: 0 }.collect();
            for &(_, word, class) in &ascii {
                proptest::prop_assert_eq!(class, ascii_class(word));
            }
            let ascii: Vec<(usize, &str)> = ascii.into_iter().map(|(start, word, _)| (start, word)).collect();
            let general: Vec<(usize, &str)> = text.unicode_word_indices().collect();
            proptest::prop_assert_eq!(ascii, general);
        }

        #[test]
        fn a_text_cut_into_pieces_has_the_words_unicode_segmentation_finds(
            chars in proptest::collection::vec(proptest::sample::select(vec![
                "a", "Z", "9", "_", ".", ",", ":", ";", "'", "\"", "#", " ", " ", "  ", "\t", "\r\n", "-",
                "\u{e9}", "\u{301}", "\u{93e}", "\u{915}", "\u{200d}", "\u{200e}", "\u{ad}", "\u{2019}",
                "\u{a0}", "\u{3000}", "\u{1f1fa}", "\u{1f1f8}", "\u{1f44d}", "\u{1f3fb}", "\u{65e5}",
                "\u{30a2}", "\u{5d0}", "\u{660}", "\u{ff0e}", "\u{2024}",
            ]), 0..40)
        ) {
            let text = chars.concat();
            let pieces: Vec<(usize, &str)> = Words::new(&text).map(|(start, word, _)| (start, word)).collect();
            let whole: Vec<(usize, &str)> = text.unicode_word_indices().collect();
            proptest::prop_assert_eq!(pieces, whole);
        }

        #[test]
        fn any_text_cut_into_pieces_has_the_words_unicode_segmentation_finds(text in "([a-z ]|\\PC){0,60}") {
            let pieces: Vec<(usize, &str)> = Words::new(&text).map(|(start, word, _)| (start, word)).collect();
            let whole: Vec<(usize, &str)> = text.unicode_word_indices().collect();
            proptest::prop_assert_eq!(pieces, whole);
        }

        #[test]
        fn an_ascii_text_is_analyzed_as_the_same_text_with_a_word_of_unicode_after_it(
            text in "([a-zA-Z0-9_.,;:'#@/ -]|[aZ9][.,;:'][aZ9_]|[lL]'[aZ]|'[sS] ){0,30}"
        ) {
            for form in [Form::Folded, Form::Exact] {
                let ascii = analyze(&text, form, Mode::Index);
                let mut unicode = analyze(&format!("{text} \u{e9}"), form, Mode::Index);
                let last = if form == Form::Folded { "e" } else { "\u{e9}" };
                proptest::prop_assert_eq!(unicode.pop().map(|t| t.term), Some(last.to_string()));
                proptest::prop_assert_eq!(ascii, unicode);
            }
        }

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
