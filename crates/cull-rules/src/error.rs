//! Errors of rule files, reported like a compiler's: file, line, column, the line of
//! the file with a caret under the offending text, and what to do about it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The most characters of a file's line an excerpt shows: a rule file of one long line
/// (or a file that is not a rule file at all) must not flood a terminal, a log or an
/// API response with its contents.
pub const MAX_EXCERPT_CHARS: usize = 200;

/// A problem in a rule file, or a rule file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A problem at a place in a rule file.
    #[error("{0}")]
    Located(Box<Located>),
    /// A rule file or directory could not be read.
    #[error("error: cannot read {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file in the rules directory that is not read, for what reading it would do.
    #[error("error: refusing to read {}: {reason}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: Refusal,
    },
}

/// Why a file of a rules directory is not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A FIFO, socket, device or directory: reading one blocks, never ends or means
    /// nothing.
    #[error("it is not a regular file but a {0}")]
    NotRegularFile(&'static str),
    /// A symbolic link whose target is not inside the rules directory.
    #[error("it is a symbolic link to {}, outside the rules directory", target.display())]
    OutsideDirectory {
        /// Where the link resolves.
        target: PathBuf,
    },
    /// A file of the kernel's /proc filesystem (process environments, memory maps).
    #[error("it is a file of /proc")]
    KernelFile,
    /// Larger than a rule file may be.
    #[error("it is larger than the limit of {limit} bytes for a rule file")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A subdirectory whose name cannot be a client's: a subdirectory of the rules
    /// directory is the rule pack of the client it is named after.
    #[error("a subdirectory of the rules directory is a client's rule pack: {0}")]
    NotAClient(String),
}

impl RuleError {
    /// Returns a located error for byte range `span` of `source`, the text of `path`.
    pub fn at(path: &Path, source: &str, span: Range<usize>, message: impl Into<String>) -> RuleError {
        RuleError::Located(Box::new(Located::at(Severity::Error, path, source, span, message)))
    }

    /// Adds a suggestion shown under the excerpt.
    pub fn with_help(mut self, help: Option<String>) -> RuleError {
        if let RuleError::Located(located) = &mut self {
            located.help = help;
        }
        self
    }

    /// Names the rule the error belongs to.
    pub fn in_rule(mut self, rule: Option<&str>) -> RuleError {
        if let RuleError::Located(located) = &mut self {
            located.rule = rule.map(str::to_string);
        }
        self
    }

    /// Returns the location, for errors that have one.
    pub fn located(&self) -> Option<&Located> {
        match self {
            RuleError::Located(located) => Some(located),
            RuleError::Io { .. } | RuleError::Refused { .. } => None,
        }
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// Whether a located finding refuses the pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The rule cannot be loaded.
    Error,
    /// The rule loads, but probably does not mean what its author meant.
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// Where and what a located rule error or warning is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// An error or a warning.
    pub severity: Severity,
    /// The rule file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The id of the rule the error is in, when known.
    pub rule: Option<String>,
    /// What is wrong; cut and escaped like the excerpt, since it may quote the file
    /// (an unknown key, a rule id).
    pub message: String,
    /// What to do instead.
    pub help: Option<String>,
    /// The line of the file around the caret, at most [`MAX_EXCERPT_CHARS`] of it
    /// (`…` where it is cut), control characters escaped.
    pub excerpt: String,
    /// Characters of the excerpt before the caret.
    pub caret_offset: usize,
    /// Characters under the caret.
    pub caret_len: usize,
}

impl Located {
    /// Returns the finding for byte range `span` of `source`, the text of `path`.
    pub fn at(
        severity: Severity,
        path: &Path,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Located {
        let start = floor_char_boundary(source, span.start.min(source.len()));
        let end = floor_char_boundary(source, span.end.clamp(start, source.len()));
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..].find('\n').map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let caret_end = end.min(line_end).max(start);
        let excerpt = Excerpt::of(
            source[line_start..line_end].trim_end_matches('\r'),
            column - 1,
            source[start..caret_end].chars().count().max(1),
        );
        Located {
            severity,
            path: path.to_path_buf(),
            line,
            column,
            rule: None,
            message: Excerpt::of(&message.into(), 0, 0).text,
            help: None,
            excerpt: excerpt.text,
            caret_offset: excerpt.caret_offset,
            caret_len: excerpt.caret_len,
        }
    }
}

/// The part of a line an excerpt shows, and where its caret goes.
struct Excerpt {
    text: String,
    caret_offset: usize,
    caret_len: usize,
}

impl Excerpt {
    /// Cuts `line` to a window of at most [`MAX_EXCERPT_CHARS`] characters as shown
    /// (control characters escaped, `\u{1b}` shown as six) holding the start of the
    /// caret (`caret_offset` characters into the line), and moves the caret to match.
    fn of(line: &str, caret_offset: usize, caret_len: usize) -> Excerpt {
        let shown: Vec<String> = line
            .chars()
            .map(|c| if c.is_control() { c.escape_debug().collect() } else { c.to_string() })
            .collect();
        let width = |i: usize| shown[i].chars().count();
        let caret = caret_offset.min(shown.len());
        // A quarter of the room before the caret, the rest after it, and what the
        // line leaves unused after it before it again.
        let (mut first, mut last, mut used) = (caret, caret, 0);
        while first > 0 && used + width(first - 1) <= MAX_EXCERPT_CHARS / 4 {
            first -= 1;
            used += width(first);
        }
        while last < shown.len() && used + width(last) <= MAX_EXCERPT_CHARS {
            used += width(last);
            last += 1;
        }
        while first > 0 && used + width(first - 1) <= MAX_EXCERPT_CHARS {
            first -= 1;
            used += width(first);
        }
        let cut_before = usize::from(first > 0);
        let caret_end = (caret + caret_len).min(last);
        let mut text = String::from(if first > 0 { "…" } else { "" });
        text.push_str(&shown[first..last].concat());
        if last < shown.len() {
            text.push('…');
        }
        Excerpt {
            text,
            caret_offset: cut_before + (first..caret).map(width).sum::<usize>(),
            caret_len: (caret..caret_end).map(width).sum::<usize>().max(1),
        }
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gutter = " ".repeat(self.line.to_string().len());
        writeln!(f, "{}: {}", self.severity.as_str(), self.message)?;
        write!(f, "{gutter}--> {}:{}:{}", self.path.display(), self.line, self.column)?;
        if let Some(rule) = &self.rule {
            write!(f, " (rule `{rule}`)")?;
        }
        writeln!(f)?;
        writeln!(f, "{gutter} |")?;
        writeln!(f, "{} | {}", self.line, self.excerpt)?;
        write!(f, "{gutter} | {}{}", " ".repeat(self.caret_offset), "^".repeat(self.caret_len))?;
        if let Some(help) = &self.help {
            write!(f, "\n{gutter} = help: {help}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_a_compiler() {
        let source = "[[rule]]\nid = 'x'\nquery = 'titel:foo'\n";
        let start = source.find("titel").unwrap();
        let error =
            RuleError::at(Path::new("rules/a.toml"), source, start..start + 5, "unknown field `titel`")
                .with_help(Some("fields are title, text".into()))
                .in_rule(Some("x"));
        assert_eq!(
            error.to_string(),
            "error: unknown field `titel`\n --> rules/a.toml:3:10 (rule `x`)\n  |\n3 | query = 'titel:foo'\n  |          ^^^^^\n  = help: fields are title, text"
        );
    }

    #[test]
    fn an_excerpt_of_a_long_line_is_cut_around_the_caret() {
        let source = format!("{}BROKEN{}", "a".repeat(50_000), "b".repeat(50_000));
        let start = source.find("BROKEN").unwrap();
        let rendered = RuleError::at(Path::new("long.toml"), &source, start..start + 6, "here").to_string();
        assert!(rendered.len() < 3 * MAX_EXCERPT_CHARS, "{} bytes: {rendered}", rendered.len());
        let excerpt_line = rendered.lines().nth(3).unwrap();
        let caret_line = rendered.lines().nth(4).unwrap();
        assert!(excerpt_line.starts_with("1 | …a") && excerpt_line.ends_with("b…"), "{excerpt_line}");
        let caret_at = caret_line.find('^').unwrap();
        let shown: String = excerpt_line.chars().skip(caret_at).take(6).collect();
        assert_eq!(shown, "BROKEN");
        assert_eq!(caret_line.matches('^').count(), 6);
    }

    #[test]
    fn an_excerpt_escapes_control_characters_and_keeps_the_caret_on_its_text() {
        let source = "a\u{1b}[31m\tb = 'x'\0";
        let start = source.find('b').unwrap();
        let rendered = RuleError::at(Path::new("c.toml"), source, start..start + 1, "bad").to_string();
        assert!(!rendered.contains('\u{1b}') && !rendered.contains('\0'), "{rendered:?}");
        let expected = format!("1 | a\\u{{1b}}[31m\\tb = 'x'\\0\n  | {}^", " ".repeat(13));
        assert!(rendered.contains(&expected), "{rendered}");
    }
}
