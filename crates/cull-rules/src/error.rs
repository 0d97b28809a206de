//! Errors of rule files, reported like a compiler's: file, line, column, the line of
//! the file with a caret under the offending text, and what to do about it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

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
}

impl RuleError {
    /// Returns a located error for byte range `span` of `source`, the text of `path`.
    pub fn at(path: &Path, source: &str, span: Range<usize>, message: impl Into<String>) -> RuleError {
        let start = floor_char_boundary(source, span.start.min(source.len()));
        let end = floor_char_boundary(source, span.end.clamp(start, source.len()));
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..].find('\n').map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let caret_end = end.min(line_end).max(start);
        RuleError::Located(Box::new(Located {
            path: path.to_path_buf(),
            line,
            column,
            rule: None,
            message: message.into(),
            help: None,
            excerpt: source[line_start..line_end].trim_end_matches('\r').to_string(),
            caret_offset: column - 1,
            caret_len: source[start..caret_end].chars().count().max(1),
        }))
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
            RuleError::Io { .. } => None,
        }
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// Where and what a located rule error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The rule file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The id of the rule the error is in, when known.
    pub rule: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do instead.
    pub help: Option<String>,
    /// The line of the file.
    pub excerpt: String,
    /// Characters before the caret.
    pub caret_offset: usize,
    /// Characters under the caret.
    pub caret_len: usize,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gutter = " ".repeat(self.line.to_string().len());
        writeln!(f, "error: {}", self.message)?;
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
}
