//! HTML to plain text, on html5ever's tokenizer.
//!
//! Alert feeds and mails carry HTML fragments: `<b>`-highlighted titles, escaped
//! entities, the occasional `<script>`. The matcher and the index want the words a
//! reader sees. A full tree builder would cost a DOM per entry for nothing, so this
//! drives the spec-compliant tokenizer directly and keeps the character tokens that
//! are not inside elements a reader never sees. The tokenizer decodes entities.

use std::cell::RefCell;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use html5ever::{local_name, LocalName};

/// Returns the text a reader of `html` sees: tags removed, entities decoded, the
/// content of scripts, styles and the document head dropped, and whitespace collapsed
/// to single spaces (block elements separate words).
pub fn html_to_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    for_each_token(html, |event| match event {
        Event::Text(chunk) => text.push_str(chunk),
        Event::Break => text.push(' '),
        Event::Link { .. } | Event::LinkEnd => {}
    });
    collapse_whitespace(&text)
}

/// Returns `text` with every run of whitespace replaced by one space, trimmed, and
/// without control characters or byte-order marks.
///
/// C0 and C1 controls (other than whitespace, which becomes a space) carry nothing a
/// reader sees, but they reach terminals, logs and JSON consumers downstream; a BOM is
/// a file's encoding marker that exports leave at the start of a field.
pub fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
        } else if !c.is_control() && c != '\u{FEFF}' {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Returns true when `text` looks like markup (a tag or an entity), so that plain text
/// such as `x<y and y>z` in a tweet is not mangled by an HTML parser.
pub fn looks_like_html(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        let next = bytes.get(i + 1).copied().unwrap_or(b' ');
        match b {
            b'<' => next.is_ascii_alphabetic() || next == b'/' || next == b'!',
            b'&' => {
                let rest = &bytes[i + 1..bytes.len().min(i + 34)];
                let name = rest.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'#').count();
                name > 0 && rest.get(name) == Some(&b';')
            }
            _ => false,
        }
    })
}

/// What the walk over a document reports, in document order.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    /// Visible text, entities decoded, whitespace as in the source.
    Text(&'a str),
    /// A block boundary (paragraph, line break, list item, cell): words must not join.
    Break,
    /// The start of a link.
    Link { href: String },
    /// The end of a link.
    LinkEnd,
}

/// Walks the visible content of `html`, calling `visit` for each event.
pub(crate) fn for_each_token(html: &str, mut visit: impl FnMut(Event<'_>)) {
    let sink = Collector { events: RefCell::new(Vec::new()), hidden: RefCell::new(Vec::new()) };
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    for event in tokenizer.sink.events.into_inner() {
        match event {
            Collected::Text(text) => visit(Event::Text(&text)),
            Collected::Break => visit(Event::Break),
            Collected::Link(href) => visit(Event::Link { href }),
            Collected::LinkEnd => visit(Event::LinkEnd),
        }
    }
}

enum Collected {
    Text(StrTendril),
    Break,
    Link(String),
    LinkEnd,
}

/// The token sink: `TokenSink` takes `&self`, hence the cells.
struct Collector {
    events: RefCell<Vec<Collected>>,
    /// The hidden elements currently open (script, style, head, …).
    hidden: RefCell<Vec<LocalName>>,
}

/// Elements whose content a reader never sees.
fn is_hidden(name: &LocalName) -> bool {
    matches!(
        *name,
        local_name!("script")
            | local_name!("style")
            | local_name!("head")
            | local_name!("title")
            | local_name!("noscript")
            | local_name!("template")
            | local_name!("iframe")
            | local_name!("object")
            | local_name!("svg")
    )
}

/// Elements that separate the words before and after them.
fn is_block(name: &LocalName) -> bool {
    matches!(
        *name,
        local_name!("p")
            | local_name!("br")
            | local_name!("div")
            | local_name!("li")
            | local_name!("ul")
            | local_name!("ol")
            | local_name!("dd")
            | local_name!("dt")
            | local_name!("tr")
            | local_name!("td")
            | local_name!("th")
            | local_name!("table")
            | local_name!("h1")
            | local_name!("h2")
            | local_name!("h3")
            | local_name!("h4")
            | local_name!("h5")
            | local_name!("h6")
            | local_name!("blockquote")
            | local_name!("pre")
            | local_name!("hr")
            | local_name!("section")
            | local_name!("article")
            | local_name!("header")
            | local_name!("footer")
            | local_name!("img")
    )
}

impl Collector {
    fn tag(&self, tag: Tag) -> TokenSinkResult<()> {
        let mut hidden = self.hidden.borrow_mut();
        match tag.kind {
            TagKind::StartTag => {
                if is_hidden(&tag.name) && !tag.self_closing {
                    let raw = match tag.name {
                        local_name!("script") => Some(RawKind::ScriptData),
                        local_name!("style")
                        | local_name!("noscript")
                        | local_name!("iframe")
                        | local_name!("template") => Some(RawKind::Rawtext),
                        local_name!("title") => Some(RawKind::Rcdata),
                        _ => None,
                    };
                    hidden.push(tag.name);
                    if let Some(raw) = raw {
                        return TokenSinkResult::RawData(raw);
                    }
                } else if hidden.is_empty() {
                    let mut events = self.events.borrow_mut();
                    if tag.name == local_name!("a") {
                        let href = tag.attrs.iter().find(|a| a.name.local == local_name!("href"));
                        events.push(Collected::Link(href.map(|a| a.value.to_string()).unwrap_or_default()));
                    } else if is_block(&tag.name) {
                        events.push(Collected::Break);
                    }
                }
            }
            TagKind::EndTag => {
                if let Some(i) = hidden.iter().rposition(|name| *name == tag.name) {
                    hidden.truncate(i);
                } else if hidden.is_empty() {
                    let mut events = self.events.borrow_mut();
                    if tag.name == local_name!("a") {
                        events.push(Collected::LinkEnd);
                    } else if is_block(&tag.name) {
                        events.push(Collected::Break);
                    }
                }
            }
        }
        TokenSinkResult::Continue
    }
}

impl TokenSink for Collector {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        match token {
            Token::TagToken(tag) => return self.tag(tag),
            Token::CharacterTokens(text) if self.hidden.borrow().is_empty() => {
                self.events.borrow_mut().push(Collected::Text(text))
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_go_entities_decode_and_hidden_content_is_dropped() {
        assert_eq!(
            html_to_text("<b>Slack</b> &amp; <i>Teams</i>&#39; outage<script>alert('x<b>')</script> today"),
            "Slack & Teams' outage today"
        );
        assert_eq!(html_to_text("<style>p { color: red }</style><p>one</p><p>two</p>"), "one two");
        assert_eq!(html_to_text("a<br>b<div>c</div>d"), "a b c d");
        assert_eq!(html_to_text("  spread \n\t out  "), "spread out");
        assert_eq!(html_to_text("<html><head><title>t</title></head><body>body</body></html>"), "body");
        assert_eq!(html_to_text("unclosed <b>bold and &lt;tag&gt;"), "unclosed bold and <tag>");
    }

    #[test]
    fn plain_text_with_angle_brackets_is_not_taken_for_html() {
        assert!(!looks_like_html("I <3 slack, x < y and AT&T"));
        assert!(!looks_like_html("fish & chips; more"));
        assert!(looks_like_html("<b>Slack</b>"));
        assert!(looks_like_html("Ben &amp; Jerry"));
        assert!(looks_like_html("it&#39;s"));
    }
}
