//! How a partition keeps its rules: most in a compact form of a few hundred bytes,
//! the others whole.
//!
//! A compiled rule is a tree of plans with a string per word and field (about 3 KB
//! for a rule of five words), which at a million rules is gigabytes. Most brand rules
//! are plain word clauses with no setting but a priority, queue and metrics flag
//! ([`Compact::of`]); their prefilter hit is their match, so matching never needs the
//! tree. Such a rule is kept as its text (id, name, query and clause words in one
//! string) and shared path and queue, about 200 bytes, and compiled in full only when
//! something asks for it ([`Stored::compiled`]: a ticket's triage, an explanation),
//! once, from the same fields, so it is the rule that was loaded, version included.

use hashbrown::HashSet;
use std::hash::Hash;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use cull_model::Priority;
use cull_rules::{CompiledRule, Rule};

use crate::prefilter::Anchoring;

/// Separates the words of a clause in [`Compact::text`].
const WORD: char = '\0';
/// Separates the clauses in [`Compact::text`].
const CLAUSE: char = '\n';
/// Rule versions are this many hex digits (`cull_rules` hashes them so).
const VERSION_LEN: usize = 12;

/// A rule of a partition.
#[derive(Debug, Clone)]
pub(crate) enum Stored {
    /// A rule kept whole.
    Full(Arc<CompiledRule>),
    /// A rule of plain word clauses kept compact (shared, as whole rules are, by
    /// the sets a reload makes from this one).
    Compact(Arc<Compact>),
}

/// A rule of plain word clauses, see the module documentation.
#[derive(Debug)]
pub(crate) struct Compact {
    /// The id, the name (empty when it is the id), the query, then the clauses: words
    /// separated by [`WORD`], clauses by [`CLAUSE`].
    text: Box<str>,
    id_end: u32,
    name_end: u32,
    query_end: u32,
    line: u32,
    version: [u8; VERSION_LEN],
    priority: Priority,
    metrics: bool,
    /// Whether the rule's file is of its client's pack (else of the global files).
    in_pack: bool,
    path: Arc<Path>,
    queue: Arc<str>,
    client: Option<Arc<str>>,
    compiled: OnceLock<Arc<CompiledRule>>,
}

/// Shares the path, queue and client strings of the rules of one build.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    paths: HashSet<Arc<Path>>,
    strings: HashSet<Arc<str>>,
}

impl Interner {
    fn path(&mut self, path: &Path) -> Arc<Path> {
        shared(&mut self.paths, path)
    }

    fn string(&mut self, text: &str) -> Arc<str> {
        shared(&mut self.strings, text)
    }
}

/// Returns the copy of `value` in `set`, adding it when it is not there yet.
fn shared<T: Eq + Hash + ?Sized>(set: &mut HashSet<Arc<T>>, value: &T) -> Arc<T>
where
    Arc<T>: for<'a> From<&'a T>,
{
    if let Some(shared) = set.get(value) {
        return Arc::clone(shared);
    }
    let shared = Arc::from(value);
    set.insert(Arc::clone(&shared));
    shared
}

impl Compact {
    /// Returns the compact form of `rule`, or `None` when it needs more than the
    /// compact form keeps: anything beside its query, priority, queue and metrics flag,
    /// or a query that is not plain word clauses.
    fn of(rule: &CompiledRule, clauses: &[Vec<&str>], interner: &mut Interner) -> Option<Compact> {
        let Rule {
            id,
            name,
            query,
            exclude,
            mask,
            priority,
            queue,
            channels,
            langs,
            enabled,
            metrics,
            client,
            pack,
            escalate_on,
            spike,
            examples,
            path,
            line,
        } = &rule.rule;
        let plain = exclude.is_none()
            && mask.is_empty()
            && channels.is_empty()
            && langs.is_empty()
            && *enabled
            && escalate_on.is_none()
            && spike.is_none()
            && examples.is_empty()
            && (pack.is_none() || pack == client)
            && rule.version.len() == VERSION_LEN;
        if !plain {
            return None;
        }
        let mut text = String::with_capacity(id.len() + query.len() * 2);
        text.push_str(id);
        let id_end = text.len();
        if name != id {
            text.push_str(name);
        }
        let name_end = text.len();
        text.push_str(query);
        let query_end = text.len();
        for (i, clause) in clauses.iter().enumerate() {
            if i > 0 {
                text.push(CLAUSE);
            }
            for (j, word) in clause.iter().enumerate() {
                if j > 0 {
                    text.push(WORD);
                }
                text.push_str(word);
            }
        }
        Some(Compact {
            id_end: u32::try_from(id_end).ok()?,
            name_end: u32::try_from(name_end).ok()?,
            query_end: u32::try_from(query_end).ok()?,
            text: text.into_boxed_str(),
            line: u32::try_from(*line).ok()?,
            version: rule.version.as_bytes().try_into().ok()?,
            priority: *priority,
            metrics: *metrics,
            in_pack: pack.is_some(),
            path: interner.path(path),
            queue: interner.string(queue),
            client: client.as_deref().map(|client| interner.string(client)),
            compiled: OnceLock::new(),
        })
    }

    fn id(&self) -> &str {
        &self.text[..self.id_end as usize]
    }

    fn query(&self) -> &str {
        &self.text[self.name_end as usize..self.query_end as usize]
    }

    fn version(&self) -> &str {
        std::str::from_utf8(&self.version).unwrap_or_default()
    }

    /// Returns the rule's clauses, each an iterator of its words.
    pub(crate) fn clauses(&self) -> impl Iterator<Item = impl Iterator<Item = &str>> {
        self.text[self.query_end as usize..].split(CLAUSE).map(|clause| clause.split(WORD))
    }

    /// Compiles the rule from its fields, which are all a rule of its kind has.
    fn compile(&self) -> CompiledRule {
        let name = &self.text[self.id_end as usize..self.name_end as usize];
        let client = self.client.as_deref().map(str::to_string);
        let rule = Rule {
            id: self.id().to_string(),
            name: if name.is_empty() { self.id().to_string() } else { name.to_string() },
            query: self.query().to_string(),
            exclude: None,
            mask: Vec::new(),
            priority: self.priority,
            queue: self.queue.to_string(),
            channels: Vec::new(),
            langs: Vec::new(),
            enabled: true,
            metrics: self.metrics,
            pack: client.clone().filter(|_| self.in_pack),
            client,
            escalate_on: None,
            spike: None,
            examples: Vec::new(),
            path: self.path.to_path_buf(),
            line: self.line as usize,
        };
        // The fields are those of a rule that compiled when it was loaded.
        CompiledRule::compile(rule).unwrap_or_else(|errors| {
            unreachable!("a compact rule compiled once and cannot fail now: {errors:?}")
        })
    }
}

/// The fields of a rule that every stored form has at hand, for lookups, reloads and
/// verdicts that must not compile a compact rule.
#[derive(Debug, Clone, Copy)]
pub struct RuleRef<'a> {
    /// The rule's id.
    pub id: &'a str,
    /// The rule's version.
    pub version: &'a str,
    /// The client the rule is for.
    pub client: Option<&'a str>,
    /// The client pack the rule's file is in (`None`: the global files).
    pub pack: Option<&'a str>,
    /// The rule's file.
    pub path: &'a Path,
    /// The line of the rule's id in its file.
    pub line: usize,
    /// The rule's queue.
    pub queue: &'a str,
    /// Whether the rule opted in to a metric series of its own (`metrics = true`).
    pub metrics: bool,
}

impl Stored {
    /// Stores `rule`: compact when it is plain word clauses (`clauses`) and nothing
    /// else, whole otherwise.
    pub(crate) fn new(
        rule: Arc<CompiledRule>,
        clauses: Option<&[Vec<&str>]>,
        interner: &mut Interner,
    ) -> Stored {
        match clauses.and_then(|clauses| Compact::of(&rule, clauses, interner)) {
            Some(compact) => Stored::Compact(Arc::new(compact)),
            None => Stored::Full(rule),
        }
    }

    /// Returns the rule compiled: at once for a whole rule, on first use (then kept)
    /// for a compact one.
    pub(crate) fn compiled(&self) -> Arc<CompiledRule> {
        match self {
            Stored::Full(rule) => Arc::clone(rule),
            Stored::Compact(compact) => {
                Arc::clone(compact.compiled.get_or_init(|| Arc::new(compact.compile())))
            }
        }
    }

    /// Returns how the prefilter selects the rule.
    pub(crate) fn anchoring(&self) -> Anchoring<'_> {
        match self {
            Stored::Full(rule) => Anchoring::of(rule),
            Stored::Compact(compact) => Anchoring::Proven(compact.clauses().map(Iterator::collect).collect()),
        }
    }

    /// Returns the fields at hand.
    pub(crate) fn fields(&self) -> RuleRef<'_> {
        match self {
            Stored::Full(rule) => RuleRef {
                id: &rule.rule.id,
                version: &rule.version,
                client: rule.rule.client.as_deref(),
                pack: rule.rule.pack.as_deref(),
                path: &rule.rule.path,
                line: rule.rule.line,
                queue: &rule.rule.queue,
                metrics: rule.rule.metrics,
            },
            Stored::Compact(compact) => RuleRef {
                id: compact.id(),
                version: compact.version(),
                client: compact.client.as_deref(),
                pack: compact.client.as_deref().filter(|_| compact.in_pack),
                path: &compact.path,
                line: compact.line as usize,
                queue: &compact.queue,
                metrics: compact.metrics,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::RuleSet;

    #[test]
    fn a_compact_rule_compiles_back_to_the_rule_that_was_loaded() {
        let pack = "[[rule]]\nid = 'plain'\nquery = 'slack (stock OR shares)'\n\n\
            [[rule]]\nid = 'named'\nname = 'Slack outages'\nquery = 'slack outage'\npriority = 'P1'\nqueue = 'care'\nmetrics = true\n\n\
            [[rule]]\nid = 'for-acme'\nquery = 'acme'\nclient = 'acme'\n\n\
            [[rule]]\nid = 'phrase'\nquery = '\"slack stock\"'\n\n\
            [[rule]]\nid = 'excluding'\nquery = 'slack'\nexclude = 'adjuster'\n\n\
            [[rule]]\nid = 'escalating'\nquery = 'slack'\nescalate_on = 'lawsuit'\n";
        let loaded = cull_rules::load_files([(Path::new("rules/brands.toml"), pack.as_bytes())]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let set = RuleSet::new(loaded.rules.clone()).expect("rule set");
        let mut compact = Vec::new();
        for partition in set.partitions() {
            for (stored, fields) in partition.rules.iter().zip(partition.rule_refs()) {
                if matches!(stored, Stored::Compact(_)) {
                    compact.push(fields.id.to_string());
                }
            }
        }
        assert_eq!(compact, ["plain", "named", "for-acme"], "word clauses and nothing else are kept compact");
        for original in &loaded.rules {
            let client = original.rule.client.as_deref();
            let stored = set.rule(client, &original.rule.id).expect("the rule");
            assert_eq!(stored.rule, original.rule, "{}", original.rule.id);
            assert_eq!(stored.version, original.version);
            assert_eq!(stored.query, original.query);
            assert_eq!(stored.anchors, original.anchors);
            let fields = set.rule_refs().find(|r| r.id == original.rule.id).expect("its fields");
            assert_eq!(
                (fields.version, fields.client, fields.pack, fields.path, fields.line, fields.queue),
                (
                    original.version.as_str(),
                    client,
                    original.rule.pack.as_deref(),
                    original.rule.path.as_path(),
                    original.rule.line,
                    original.rule.queue.as_str()
                )
            );
        }
    }
}
