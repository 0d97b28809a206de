//! Control characters made visible, for every human-readable output: log lines, the
//! CLI's text output and its error messages.
//!
//! Mentions, request paths and feed entries are written by strangers. Printed as they
//! are, their control characters act: an ESC sequence in a mention title clears an
//! analyst's terminal or writes their clipboard (OSC 52), and a newline in a request
//! path forges a log line of its own. Written as visible escapes (`\u{1b}`, `\u{a}`),
//! they are only text. Machine output (JSON) needs none of this: its encoder escapes them.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Returns `text` with every control character (C0, DEL and C1, tab and newline
/// included) written as a visible escape such as `\u{1b}`.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// As [`escape_controls`], but keeps the line breaks: for output made of lines of its
/// own (a compiler-style error with its source line and caret) that quotes what others
/// wrote.
pub fn escape_controls_but_newlines(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let escaped = |c: char| c.is_control() && !keep(c);
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_is_visible_and_the_rest_untouched() {
        let hostile = "a\x1b]52;c;aGk=\x07b\x1b[2J\tc\nd\r\u{9b}e\u{7f}é";
        assert_eq!(
            escape_controls(hostile),
            r"a\u{1b}]52;c;aGk=\u{7}b\u{1b}[2J\u{9}c\u{a}d\u{d}\u{9b}e\u{7f}é"
        );
        assert_eq!(escape_controls_but_newlines("one\x1b[2J\ntwo\t"), "one\\u{1b}[2J\ntwo\\u{9}");
        assert!(matches!(escape_controls("plain text, ünïcode"), Cow::Borrowed(_)));
    }
}
