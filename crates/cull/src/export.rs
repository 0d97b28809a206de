//! Exports of a search's mentions, as CSV or JSON Lines, for `GET /api/export`.
//!
//! An export holds the whole result of a search (not the page), each mention in full,
//! up to [`MAX_EXPORT_MENTIONS`] mentions and [`MAX_EXPORT_BYTES`] bytes, whichever
//! comes first; the response says how many matched and how many it holds
//! (`X-Cull-Total`, `X-Cull-Exported`), so a cut export is never mistaken for a whole
//! one.
//!
//! CSV is RFC 4180 (every field that needs it quoted, quotes doubled, newlines kept
//! inside quotes). A spreadsheet runs a cell that starts with `=`, `+`, `-`, `@`, a
//! tab or a carriage return as a formula, and mention text is written by strangers,
//! so such a cell is written with a leading `'` (OWASP's advice on CSV injection).
//! JSON Lines keeps every value as it is.

use cull_index::{registered_domain, ExportedMention, Outcome};
use cull_model::{sentiment, Culled};
use serde::Serialize;

/// Mentions one export holds at most.
pub const MAX_EXPORT_MENTIONS: usize = 10_000;
/// Bytes of one export at most: the mentions after the one that passes it are left
/// out, so a result of huge mentions cannot cost the server its memory.
pub const MAX_EXPORT_BYTES: usize = 64 << 20;

/// The format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// Reads the `format` parameter.
    pub fn parse(value: &str) -> Option<Format> {
        match value {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }

    /// Returns the media type of the body.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/x-ndjson",
        }
    }

    /// Returns the extension of the file name offered for download.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// One exported mention: what an analyst looks at in a hit, with the whole text.
#[derive(Debug, Serialize)]
struct Row<'a> {
    id: &'a str,
    at: Option<&'a str>,
    verdict: Outcome,
    matched: Vec<&'a str>,
    culls: &'a [Culled],
    title: Option<&'a str>,
    text: &'a str,
    url: Option<&'a str>,
    domain: Option<String>,
    author: Option<&'a str>,
    source: Option<&'a str>,
    channel: Option<&'a str>,
    lang: Option<&'a str>,
    client: Option<&'a str>,
    /// VADER's label (`negative`, `neutral`, `positive`), as the sentiment facet has it.
    sentiment: Option<&'static str>,
    /// VADER's compound in [-1, 1]; JSON Lines only (a CSV cell starting with `-` would
    /// be defused into text).
    #[serde(skip_serializing_if = "Option::is_none")]
    sentiment_score: Option<f64>,
}

/// The CSV header: the fields of [`Row`], in order.
const COLUMNS: [&str; 15] = [
    "id",
    "at",
    "verdict",
    "matched",
    "culls",
    "title",
    "text",
    "url",
    "domain",
    "author",
    "source",
    "channel",
    "lang",
    "client",
    "sentiment",
];

impl<'a> Row<'a> {
    fn of(exported: &'a ExportedMention) -> Row<'a> {
        let verdict = &exported.verdict;
        let mention = verdict.mention.as_ref();
        Row {
            id: &verdict.mention_id,
            at: exported.at.as_deref(),
            verdict: Outcome::of(verdict),
            matched: verdict.matched.iter().map(|m| m.rule_id.as_str()).collect(),
            culls: &verdict.culled,
            title: mention.and_then(|m| m.title.as_deref()),
            text: mention.map_or("", |m| m.text.as_str()),
            url: mention.and_then(|m| m.url.as_deref()),
            domain: mention.and_then(|m| m.host()).map(|host| registered_domain(&host).to_string()),
            author: mention.and_then(|m| m.author.as_deref()),
            source: mention.and_then(|m| m.source.as_deref()),
            channel: mention.and_then(|m| m.channel).map(|c| c.as_str()),
            lang: mention.and_then(|m| m.lang.as_deref()),
            client: mention.and_then(|m| m.client.as_deref()),
            sentiment: exported.sentiment_score.map(|score| sentiment::Label::of(score).as_str()),
            sentiment_score: exported.sentiment_score,
        }
    }

    /// Returns the CSV cells, lists joined: matched rules by `; `, culls as
    /// `rule (reason: clause)` joined by `; `.
    fn cells(&self) -> [String; 15] {
        let text = |value: Option<&str>| value.unwrap_or_default().to_string();
        let culls: Vec<String> = self
            .culls
            .iter()
            .map(|c| format!("{} ({}: {})", c.rule_id, c.reason.as_str(), c.clause))
            .collect();
        [
            self.id.to_string(),
            text(self.at),
            self.verdict.as_str().to_string(),
            self.matched.join("; "),
            culls.join("; "),
            text(self.title),
            self.text.to_string(),
            text(self.url),
            self.domain.clone().unwrap_or_default(),
            text(self.author),
            text(self.source),
            text(self.channel),
            text(self.lang),
            text(self.client),
            text(self.sentiment),
        ]
        .map(inert)
    }
}

/// Returns a CSV cell that a spreadsheet shows as text: one that would start a
/// formula gets a leading `'`.
fn inert(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// Returns one CSV record, quoted where it needs to be, ending in CRLF.
fn csv_record<const N: usize>(cells: [impl AsRef<[u8]>; N]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    writer.write_record(cells).expect("writing to memory does not fail");
    writer.into_inner().expect("writing to memory does not fail")
}

/// Builds the body of an export, mention by mention, up to its limits.
#[derive(Debug)]
pub struct ExportBody {
    format: Format,
    bytes: Vec<u8>,
    /// Mentions written.
    pub written: usize,
}

impl ExportBody {
    /// Returns an empty body of `format` (a CSV one with its header).
    pub fn new(format: Format) -> ExportBody {
        let bytes = match format {
            Format::Csv => csv_record(COLUMNS),
            Format::Jsonl => Vec::new(),
        };
        ExportBody { format, bytes, written: 0 }
    }

    /// Adds a mention; returns false when the body is full (the mention is then left
    /// out).
    pub fn push(&mut self, mention: &ExportedMention) -> bool {
        if self.written >= MAX_EXPORT_MENTIONS {
            return false;
        }
        let row = Row::of(mention);
        let line = match self.format {
            Format::Csv => csv_record(row.cells()),
            Format::Jsonl => {
                let mut line = serde_json::to_vec(&row).expect("a row always serializes");
                line.push(b'\n');
                line
            }
        };
        if self.bytes.len() + line.len() > MAX_EXPORT_BYTES {
            return false;
        }
        self.bytes.extend_from_slice(&line);
        self.written += 1;
        true
    }

    /// Returns the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cull_model::{CullReason, Mention, Verdict};

    fn exported(text: &str, title: &str) -> ExportedMention {
        let mut mention = Mention::new("m-1", text);
        mention.title = Some(title.into());
        mention.url = Some("https://www.news.example.co.uk/a".into());
        let verdict = Verdict {
            schema: cull_model::VERDICT_SCHEMA.into(),
            mention_id: mention.id.clone(),
            client: None,
            ruleset_version: "v1".into(),
            matched: Vec::new(),
            culled: vec![Culled {
                rule_id: "slack".into(),
                reason: CullReason::Exclude,
                clause: "adjuster*".into(),
            }],
            mention: Some(mention),
        };
        ExportedMention { at: Some("2026-11-20T10:00:00Z".into()), verdict, sentiment_score: Some(-0.5) }
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines_and_defuses_formulas() {
        let mut body = ExportBody::new(Format::Csv);
        assert!(body.push(&exported("one, \"two\"\nthree", "=HYPERLINK(\"http://x\",\"y\")")));
        assert!(body.push(&exported("-1 point", "@SUM(A1)")));
        let text = String::from_utf8(body.into_bytes()).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2, "{text}");
        let cell =
            |row: usize, name: &str| rows[row][COLUMNS.iter().position(|c| *c == name).unwrap()].to_string();
        assert_eq!(cell(0, "text"), "one, \"two\"\nthree", "the text comes back whole");
        assert_eq!(cell(0, "title"), "'=HYPERLINK(\"http://x\",\"y\")");
        assert_eq!((cell(1, "title"), cell(1, "text")), ("'@SUM(A1)".into(), "'-1 point".into()));
        assert_eq!(cell(0, "culls"), "slack (exclude: adjuster*)");
        assert_eq!((cell(0, "verdict"), cell(0, "domain")), ("culled".into(), "example.co.uk".into()));
        assert_eq!(cell(0, "sentiment"), "negative");
        assert!(text.contains("\"one, \"\"two\"\"\nthree\""), "quotes doubled inside quotes: {text}");
    }

    #[test]
    fn jsonl_keeps_values_as_they_are_one_mention_a_line() {
        let mut body = ExportBody::new(Format::Jsonl);
        assert!(body.push(&exported("a\nb", "=1+1")));
        assert!(body.push(&exported("c", "d")));
        let text = String::from_utf8(body.into_bytes()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0]["title"].as_str(), lines[0]["text"].as_str()), (Some("=1+1"), Some("a\nb")));
        assert_eq!(lines[0]["culls"][0]["clause"], "adjuster*");
        assert_eq!(
            (lines[0]["sentiment"].as_str(), lines[0]["sentiment_score"].as_f64()),
            (Some("negative"), Some(-0.5))
        );
    }

    #[test]
    fn an_export_stops_at_its_byte_limit_without_a_partial_mention() {
        let mut body = ExportBody::new(Format::Jsonl);
        let huge = exported(&"x".repeat(MAX_EXPORT_BYTES / 3), "t");
        assert!(body.push(&huge) && body.push(&huge));
        assert!(!body.push(&huge), "the third passes the limit");
        assert_eq!(body.written, 2);
        let bytes = body.into_bytes();
        assert!(bytes.len() <= MAX_EXPORT_BYTES && bytes.ends_with(b"\n"));
    }
}
