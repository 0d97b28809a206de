//! Loading rule packs: every `*.toml` file of a directory, every rule in it.
//!
//! Loading never stops at the first problem. TOML syntax errors are recovered from as
//! far as the parser can; each `[[rule]]` table is deserialized on its own so that a
//! misspelled key in one rule does not hide an error in the next; every query of every
//! rule is compiled; then ids are checked for duplicates across the pack. The caller
//! gets the rules that are sound and every error, each located at file:line:column.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use cull_model::{Channel, Priority};
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::compiled::{CompiledRule, QueryKey};
use crate::error::RuleError;
use crate::rule::{Example, Expect, Rule};

/// The result of loading a rule pack: the rules that compiled and every error found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Rules without errors, in file order, files in name order.
    pub rules: Vec<CompiledRule>,
    /// Every error, in file order.
    pub errors: Vec<RuleError>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    name: Option<String>,
    query: Spanned<String>,
    exclude: Option<Spanned<String>>,
    #[serde(default)]
    mask: Vec<Spanned<String>>,
    priority: Option<Spanned<String>>,
    queue: Option<Spanned<String>>,
    #[serde(default)]
    channels: Vec<Spanned<String>>,
    #[serde(default)]
    langs: Vec<Spanned<String>>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    #[serde(default)]
    metrics: bool,
    client: Option<String>,
    #[serde(default)]
    example: Vec<RawExample>,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExample {
    text: String,
    title: Option<String>,
    url: Option<String>,
    author: Option<String>,
    channel: Option<Spanned<String>>,
    lang: Option<String>,
    expect: Spanned<String>,
}

/// Loads every `*.toml` file in `dir` (not recursively), in name order.
pub fn load_dir(dir: &Path) -> Loaded {
    let mut loaded = Loaded::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => {
            loaded.errors.push(RuleError::Io { path: dir.to_path_buf(), source });
            return loaded;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        match std::fs::read(&path) {
            Ok(bytes) => files.push((path, bytes)),
            Err(source) => loaded.errors.push(RuleError::Io { path, source }),
        }
    }
    let pack = load_files(files.iter().map(|(path, bytes)| (path.as_path(), bytes.as_slice())));
    loaded.rules = pack.rules;
    loaded.errors.extend(pack.errors);
    loaded
}

/// Loads rule files given as (path, contents), checking ids across all of them.
pub fn load_files<'a>(files: impl IntoIterator<Item = (&'a Path, &'a [u8])>) -> Loaded {
    let mut loaded = Loaded::default();
    let mut first_seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    for (path, bytes) in files {
        let source = match std::str::from_utf8(bytes) {
            Ok(source) => source,
            Err(e) => {
                let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned();
                let at = valid.len();
                loaded.errors.push(RuleError::at(path, &valid, at..at, "rule file is not valid UTF-8"));
                continue;
            }
        };
        for entry in load_source(path, source, &mut loaded.errors) {
            if let Some((first_path, first_line)) = first_seen.get(&entry.id) {
                let message = format!("duplicate rule id `{}`", entry.id);
                let help = format!(
                    "first defined at {}:{first_line}; ids must be unique across the pack",
                    first_path.display()
                );
                loaded.errors.push(RuleError::at(path, source, entry.id_span, message).with_help(Some(help)));
                continue;
            }
            first_seen.insert(entry.id, (path.to_path_buf(), entry.line));
            loaded.rules.extend(entry.rule);
        }
    }
    loaded
}

/// A rule of a file, with or without errors: ids are checked for duplicates even
/// when the rules carrying them are broken.
struct Entry {
    id: String,
    id_span: Range<usize>,
    line: usize,
    rule: Option<CompiledRule>,
}

/// The byte offsets at which the lines of a file start, for turning offsets into line
/// numbers without rescanning the file for every rule.
struct Lines(Vec<usize>);

impl Lines {
    fn of(source: &str) -> Lines {
        Lines(std::iter::once(0).chain(source.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    /// Returns the 1-based line of byte `offset`.
    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

/// Loads the rules of one file; errors are appended to `errors`.
fn load_source(path: &Path, source: &str, errors: &mut Vec<RuleError>) -> Vec<Entry> {
    let (table, syntax_errors) = DeTable::parse_recoverable(source);
    let had_syntax_errors = !syntax_errors.is_empty();
    for error in syntax_errors {
        let span = error.span().unwrap_or(0..0);
        errors.push(RuleError::at(path, source, span, format!("invalid TOML: {}", error.message().trim())));
    }
    if had_syntax_errors {
        return Vec::new();
    }
    let table = table.into_inner();
    let lines = Lines::of(source);
    let mut rules = Vec::new();
    for (key, value) in table.iter() {
        if key.get_ref().as_ref() != "rule" {
            let message = format!("unknown key `{}`", key.get_ref());
            let help = Some("a rule file holds `[[rule]]` tables only".to_string());
            errors.push(RuleError::at(path, source, key.span(), message).with_help(help));
            continue;
        }
        let DeValue::Array(items) = value.get_ref() else {
            errors.push(RuleError::at(
                path,
                source,
                value.span(),
                "`rule` must be an array of tables: write `[[rule]]`",
            ));
            continue;
        };
        for item in items.iter() {
            let span = item.span();
            match RawRule::deserialize(ValueDeserializer::from(item.clone())) {
                Ok(raw) => rules.push(Entry {
                    id: raw.id.get_ref().clone(),
                    id_span: raw.id.span(),
                    line: lines.line(raw.id.span().start),
                    rule: build_rule(path, source, &lines, raw, errors),
                }),
                Err(error) => {
                    let at = error.span().unwrap_or(span);
                    errors.push(RuleError::at(path, source, at, error.message().trim().to_string()));
                }
            }
        }
    }
    if table.is_empty() {
        errors.push(RuleError::at(path, source, 0..0, "rule file has no rules").with_help(Some(
            "add a `[[rule]]` table with at least `id` and `query`, or remove the file".to_string(),
        )));
    }
    rules
}

/// Returns the byte offset in the file where the text of a string value starts.
///
/// Query errors are located by offsets into the query text; adding this start gives
/// the place in the file. For a multi-line string TOML drops a newline right after
/// the opening delimiter, and so do we. (Escapes in basic strings shift later
/// columns; rules are written with literal strings in practice.)
fn string_content_start(source: &str, value_span: &Range<usize>) -> usize {
    let raw = &source[value_span.start.min(source.len())..];
    let delimiter = if raw.starts_with("'''") || raw.starts_with("\"\"\"") { 3 } else { 1 };
    let after = &raw[delimiter.min(raw.len())..];
    let newline = if delimiter == 3 && after.starts_with("\r\n") {
        2
    } else {
        usize::from(delimiter == 3 && after.starts_with('\n'))
    };
    value_span.start + delimiter + newline
}

fn check(ok: bool, errors: &mut Vec<RuleError>, error: impl FnOnce() -> RuleError) {
    if !ok {
        errors.push(error());
    }
}

fn is_identifier(value: &str) -> bool {
    let mut chars = value.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn is_language(value: &str) -> bool {
    let (primary, region) = value.split_once('-').unwrap_or((value, "x"));
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_lowercase())
        && !region.is_empty()
        && region.chars().all(|c| c.is_ascii_alphanumeric())
}

fn build_rule(
    path: &Path,
    source: &str,
    lines: &Lines,
    raw: RawRule,
    errors: &mut Vec<RuleError>,
) -> Option<CompiledRule> {
    let before = errors.len();
    let id = raw.id.get_ref().clone();
    let rule_id = Some(id.as_str());
    let located =
        |span: Range<usize>, message: String| RuleError::at(path, source, span, message).in_rule(rule_id);
    check(is_identifier(&id), errors, || {
        located(raw.id.span(), format!("invalid rule id `{id}`")).with_help(Some(
            "ids are lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit".into(),
        ))
    });
    let priority = match raw.priority.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
        None => Priority::default(),
        Some(("P1", _)) => Priority::P1,
        Some(("P2", _)) => Priority::P2,
        Some(("P3", _)) => Priority::P3,
        Some(("P4", _)) => Priority::P4,
        Some((other, span)) => {
            errors.push(
                located(span, format!("unknown priority `{other}`"))
                    .with_help(Some("write P1, P2, P3 or P4".into())),
            );
            Priority::default()
        }
    };
    let queue = raw.queue.as_ref().map_or_else(|| "default".to_string(), |q| q.get_ref().clone());
    if let Some(span) = raw.queue.as_ref().map(Spanned::span) {
        check(is_identifier(&queue), errors, || {
            located(span, format!("invalid queue `{queue}`")).with_help(Some(
                "queues name Kafka topics: lowercase letters, digits, `-`, `_` and `.`".into(),
            ))
        });
    }
    let channel_help = || Some(format!("channels are {}", Channel::ALL.map(|c| c.as_str()).join(", ")));
    let mut channels = Vec::new();
    for channel in &raw.channels {
        match Channel::parse(channel.get_ref()) {
            Some(c) => channels.push(c),
            None => errors.push(
                located(channel.span(), format!("unknown channel `{}`", channel.get_ref()))
                    .with_help(channel_help()),
            ),
        }
    }
    let mut langs = Vec::new();
    for lang in &raw.langs {
        let value = lang.get_ref().to_ascii_lowercase();
        check(is_language(&value), errors, || {
            located(lang.span(), format!("invalid language `{}`", lang.get_ref()))
                .with_help(Some("write an ISO 639 code such as `en` or `pt-br`".into()))
        });
        langs.push(value);
    }
    let mut examples = Vec::new();
    for example in raw.example {
        let expect = match example.expect.get_ref().as_str() {
            "match" => Expect::Match,
            "cull" => Expect::Cull,
            "none" => Expect::None,
            other => {
                errors.push(
                    located(example.expect.span(), format!("unknown expectation `{other}`"))
                        .with_help(Some("write `match`, `cull` or `none`".into())),
                );
                continue;
            }
        };
        let channel = match &example.channel {
            None => None,
            Some(c) => match Channel::parse(c.get_ref()) {
                Some(channel) => Some(channel),
                None => {
                    errors.push(
                        located(c.span(), format!("unknown channel `{}`", c.get_ref()))
                            .with_help(channel_help()),
                    );
                    continue;
                }
            },
        };
        let line = lines.line(example.expect.span().start);
        examples.push(Example {
            text: example.text,
            title: example.title,
            url: example.url,
            author: example.author,
            channel,
            lang: example.lang,
            expect,
            line,
        });
    }
    let line = lines.line(raw.id.span().start);
    let rule = Rule {
        name: raw.name.unwrap_or_else(|| id.clone()),
        id: id.clone(),
        query: raw.query.get_ref().clone(),
        exclude: raw.exclude.as_ref().map(|e| e.get_ref().clone()),
        mask: raw.mask.iter().map(|m| m.get_ref().clone()).collect(),
        priority,
        queue,
        channels,
        langs,
        enabled: raw.enabled,
        metrics: raw.metrics,
        client: raw.client,
        examples,
        path: path.to_path_buf(),
        line,
    };
    let compiled = CompiledRule::compile(rule).map_err(|query_errors| {
        for (key, error) in query_errors {
            let value_span = match key {
                QueryKey::Query => raw.query.span(),
                QueryKey::Exclude => raw.exclude.as_ref().map_or(0..0, Spanned::span),
                QueryKey::Mask(i) => raw.mask.get(i).map_or(0..0, Spanned::span),
            };
            let start = string_content_start(source, &value_span);
            let span = start + error.span.start..start + error.span.end;
            let message = format!("in `{}`: {}", key.name(), error.message);
            errors.push(located(span, message).with_help(error.help));
        }
    });
    if errors.len() > before {
        return None;
    }
    compiled.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(files: &[(&str, &str)]) -> Loaded {
        load_files(files.iter().map(|(path, text)| (Path::new(*path), text.as_bytes())))
    }

    fn messages(loaded: &Loaded) -> Vec<String> {
        loaded.errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_sound_rule_loads_with_defaults() {
        let loaded = load(&[("a.toml", "[[rule]]\nid = 'slack'\nquery = 'slack'\n")]);
        assert!(loaded.errors.is_empty(), "{:?}", messages(&loaded));
        let rule = &loaded.rules[0].rule;
        assert_eq!(
            (rule.name.as_str(), rule.queue.as_str(), rule.priority, rule.enabled),
            ("slack", "default", Priority::P3, true)
        );
        assert_eq!(rule.line, 2);
    }

    #[test]
    fn every_error_in_a_pack_is_reported_with_its_place() {
        let first = "[[rule]]\nid = 'one'\nquery = 'titel:x'\n\n[[rule]]\nid = 'two'\nquery = 'ok'\npriorty = 'P1'\n\n[[rule]]\nid = 'three'\nquery = 'NOT x'\nchannels = ['tv']\n";
        let second = "[[rule]]\nid = 'one'\nquery = 'fine'\n";
        let loaded = load(&[("rules/a.toml", first), ("rules/b.toml", second)]);
        let all = messages(&loaded).join("\n\n");
        assert!(
            all.contains("error: in `query`: unknown field `titel`\n --> rules/a.toml:3:10 (rule `one`)"),
            "{all}"
        );
        assert!(all.contains("unknown field `priorty`"), "{all}");
        assert!(all.contains("rules/a.toml:8:1"), "{all}");
        assert!(
            all.contains("in `query`: a query cannot be only NOT\n  --> rules/a.toml:12:10 (rule `three`)"),
            "{all}"
        );
        assert!(all.contains("unknown channel `tv`\n  --> rules/a.toml:13:13"), "{all}");
        assert!(all.contains("duplicate rule id `one`\n --> rules/b.toml:2:6"), "{all}");
        assert_eq!(loaded.errors.len(), 5, "{all}");
        assert!(loaded.rules.is_empty());
    }

    #[test]
    fn errors_in_multiline_and_mask_strings_point_into_the_file() {
        let text = "[[rule]]\nid = 'r'\nquery = '''\nslack AND co*'''\nmask = ['ok', '\"a\" NEAR b']\n";
        let loaded = load(&[("r.toml", text)]);
        let all = messages(&loaded).join("\n\n");
        assert!(all.contains("wildcard `co*` is shorter than 3 characters\n --> r.toml:4:11"), "{all}");
        assert!(all.contains("in `mask[1]`: `NEAR` needs a distance\n --> r.toml:5:20"), "{all}");
    }

    #[test]
    fn broken_toml_and_bad_values_are_located() {
        let loaded = load(&[("x.toml", "[[rule]\nid = 'a'\n")]);
        assert!(messages(&loaded)[0].contains("invalid TOML"), "{:?}", messages(&loaded));
        assert!(messages(&loaded)[0].contains("x.toml:1:"), "{:?}", messages(&loaded));
        let loaded = load(&[("y.toml", "[[rule]]\nid = 'Bad Id'\nquery = 'x'\npriority = 'P9'\nqueue = 'a b'\nlangs = ['english']\n[[rule.example]]\ntext = 'x'\nexpect = 'maybe'\n")]);
        let all = messages(&loaded).join("\n");
        for expected in [
            "invalid rule id `Bad Id`",
            "unknown priority `P9`",
            "invalid queue `a b`",
            "invalid language `english`",
            "unknown expectation `maybe`",
        ] {
            assert!(all.contains(expected), "{expected}: {all}");
        }
        let loaded = load(&[("z.toml", "[[rule]]\nid = 'a'\n")]);
        assert!(messages(&loaded)[0].contains("missing field `query`"), "{:?}", messages(&loaded));
        let loaded = load(&[("e.toml", "# nothing\n")]);
        assert!(messages(&loaded)[0].contains("rule file has no rules"), "{:?}", messages(&loaded));
        let loaded = load_files([(Path::new("u.toml"), &b"[[rule]]\nid = '\xff'\n"[..])]);
        assert!(
            loaded.errors[0].to_string().contains("not valid UTF-8\n --> u.toml:2:7"),
            "{}",
            loaded.errors[0]
        );
        let loaded = load(&[("k.toml", "title = 'x'\n")]);
        assert!(messages(&loaded)[0].contains("unknown key `title`"), "{:?}", messages(&loaded));
    }

    #[test]
    fn a_missing_directory_is_an_io_error() {
        let loaded = load_dir(Path::new("/nonexistent/rules"));
        assert!(matches!(loaded.errors[0], RuleError::Io { .. }));
    }
}
