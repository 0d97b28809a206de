//! The compiled rule set of cull and the matching of mentions against it.
//!
//! Matching a mention is two steps. The [`prefilter`] looks the mention's folded terms
//! up in a dictionary of every rule's literals and yields the rules that could match
//! (and, for rules of plain word clauses, proves them); the [`verify`]
//! module evaluates only those rules' plans exactly, with the meaning a Tantivy search
//! would give them. Most mentions are candidates for a handful of rules out of
//! thousands, so the cost per mention is nearly independent of the rule count.
//!
//! A [`RuleSet`] is immutable; [`Matcher`] holds the current one behind an atomic
//! pointer so that a reload swaps in a new set while batches run on the old one, and
//! every verdict names the version of the set that produced it.
#![deny(missing_docs)]

pub mod explain;
pub mod prefilter;
mod reload;
mod stored;
pub mod verify;

pub use reload::Reload;
pub use stored::RuleRef;

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use cull_model::{CompactString, CullReason, Culled, MatchedRule, Mention, Span, Verdict, VERDICT_SCHEMA};
use cull_rules::CompiledRule;
use hashbrown::{DefaultHashBuilder, HashSet, HashTable};
use rayon::prelude::*;

use crate::prefilter::{Anchoring, Candidate, Prefilter, Scratch};
use crate::stored::{Interner, Stored};
use crate::verify::{first_mask_hit, matches, merge_spans, spans_into, Document, DocumentBuffers, Hidden};

/// Errors building a rule set.
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    /// More rules than the matcher can index.
    #[error("{count} rules is more than the matcher supports (u32::MAX)")]
    TooManyRules {
        /// Number of rules given.
        count: usize,
    },
    /// More distinct words and prefixes in the rules than the prefilter can number.
    #[error(
        "the rules have more than {count} distinct words and prefixes, more than the matcher supports (2^30)"
    )]
    TooManyLiterals {
        /// Number of literals numbered when the limit was reached.
        count: usize,
    },
}

/// What one rule did with one mention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rule's query does not match.
    NoMatch,
    /// The rule matches; the spans are where.
    Matched(Vec<Span>),
    /// The query matches but a cull removed it.
    Culled {
        /// Which cull.
        reason: CullReason,
        /// The clause, mask, channel or language responsible.
        clause: String,
    },
}

/// Returns what `rule` does with the document.
///
/// The order of the checks is the contract of the verdict: a rule is culled only if
/// its query matched; channel and language filters come first because they are the
/// cheapest; then masks (the query must still match with masked occurrences hidden);
/// then exclusions, which look at the whole mention.
pub fn evaluate(rule: &CompiledRule, doc: &Document<'_>) -> Outcome {
    let mut spans = Vec::new();
    match evaluate_into(rule, doc, &mut spans) {
        HitKind::NoMatch => Outcome::NoMatch,
        HitKind::Matched => Outcome::Matched(spans),
        HitKind::Culled(reason, clause) => {
            Outcome::Culled { reason, clause: clause.text(rule, doc.mention()).to_string() }
        }
    }
}

/// As [`evaluate`], with the spans of a match appended to `spans` and the culling
/// clause named rather than copied, so that nothing is allocated.
fn evaluate_into(rule: &CompiledRule, doc: &Document<'_>, spans: &mut Vec<Span>) -> HitKind {
    if !matches(&rule.query, doc, &Hidden::NONE) {
        return HitKind::NoMatch;
    }
    if rule.channel_filter.as_ref().is_some_and(|filter| !matches(filter, doc, &Hidden::NONE)) {
        return HitKind::Culled(CullReason::Channel, Clause::Channel);
    }
    if rule.lang_filter.as_ref().is_some_and(|filter| !matches(filter, doc, &Hidden::NONE)) {
        return HitKind::Culled(CullReason::Lang, Clause::Lang);
    }
    let hidden = if rule.masks.is_empty() {
        Hidden::NONE
    } else {
        doc.hide(rule.masks.iter().flat_map(|mask| &mask.sequences))
    };
    if !hidden.is_empty() && !matches(&rule.query, doc, &hidden) {
        let mask = first_mask_hit(doc, &rule.masks);
        return HitKind::Culled(CullReason::Mask, mask.map_or(Clause::None, Clause::Mask));
    }
    if let Some(clause) = rule.exclude.iter().position(|clause| matches(&clause.plan, doc, &Hidden::NONE)) {
        return HitKind::Culled(CullReason::Exclude, Clause::Exclude(clause));
    }
    spans_into(&rule.query, doc, &hidden, spans);
    HitKind::Matched
}

/// The clause a cull names, by where it is: the mention's channel or language, or a
/// mask or exclusion of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clause {
    /// The mention's channel.
    Channel,
    /// The mention's language.
    Lang,
    /// The rule's mask of this index.
    Mask(usize),
    /// The rule's exclusion branch of this index.
    Exclude(usize),
    /// No clause can be named.
    None,
}

impl Clause {
    /// Returns the clause's text, as a verdict shows it.
    pub fn text<'a>(self, rule: &'a CompiledRule, mention: &'a Mention) -> &'a str {
        match self {
            Clause::Channel => mention.channel.map_or("", |c| c.as_str()),
            Clause::Lang => mention.lang.as_deref().unwrap_or_default(),
            Clause::Mask(i) => rule.masks.get(i).map_or("", |m| m.source.as_str()),
            Clause::Exclude(i) => rule.exclude.get(i).map_or("", |c| c.source.as_str()),
            Clause::None => "",
        }
    }
}

/// What a rule did with a mention, as [`RuleSet::match_into`] records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitKind {
    /// No match.
    NoMatch,
    /// A match.
    Matched,
    /// A cull: why, and which clause.
    Culled(CullReason, Clause),
}

/// A rule that matched or culled a mention, found by [`RuleSet::match_into`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Whether the rule is of the mention's client's partition (else the global one).
    pub own: bool,
    /// The rule's index in its partition.
    pub index: u32,
    /// What it did.
    pub kind: HitKind,
    /// Its spans in [`MatchScratch::spans`], when it matched.
    pub spans: std::ops::Range<usize>,
}

/// The buffers one thread matches in, reused from mention to mention so that matching
/// allocates nothing once they have grown; the hits of the last mention matched.
#[derive(Debug, Default)]
pub struct MatchScratch {
    prefilter: Scratch,
    candidates: Vec<Candidate>,
    document: DocumentBuffers,
    hits: Vec<Hit>,
    spans: Vec<Span>,
    /// The unmerged spans of one proven rule.
    found: Vec<(&'static str, usize, usize)>,
}

impl MatchScratch {
    /// Returns the rules that matched or culled the last mention, in rule order.
    pub fn hits(&self) -> &[Hit] {
        &self.hits
    }

    /// Returns the spans of a hit.
    pub fn spans(&self, hit: &Hit) -> &[Span] {
        &self.spans[hit.spans.clone()]
    }
}

/// The rules of one client, or the global rules, with their own prefilter.
///
/// A mention meets only the global partition and its client's, so that candidate
/// selection never touches another client's rules: one client's mentions cost the
/// same however many rules other clients add, and a rule can never match another
/// client's mention, whatever its words.
#[derive(Debug)]
pub struct Partition {
    client: Option<String>,
    /// Shared with the sets this one was made from or makes, so that replacing one
    /// file's rules copies pointers, not rules; most kept compact (see [`stored`]).
    rules: Vec<Stored>,
    /// Where each file's rules end in `rules`. A file's rules are stored together (a
    /// load hands them over a file at a time, and a rebuild keeps or drops them
    /// whole), so a reload asks whether to keep each file once, not each rule, which
    /// at a million rules would read every rule for a hundred answers.
    file_ends: Vec<u32>,
    names: Names,
    /// Each rule's index in `rules`, found by the hash of its id (ids are unique
    /// within a partition): a table of indexes rather than a map of copied ids, which
    /// at a million rules would be tens of megabytes and rebuilt at each reload.
    by_id: HashTable<u32>,
    hasher: DefaultHashBuilder,
    prefilter: Prefilter,
    /// The ids of the rules that opted in to a metric series of their own
    /// (`metrics = true`): a few, so that a million rules never make a million series.
    measured: HashSet<CompactString>,
}

impl Partition {
    fn new(client: Option<String>, rules: Vec<Stored>) -> Result<Partition, MatchError> {
        let prefilter = Prefilter::new(rules.iter().map(Stored::anchoring))?;
        let (mut names, mut file_ends, mut measured) =
            (Names::with_capacity(rules.len()), Vec::new(), HashSet::new());
        lay_out(&rules, 0, &mut names, &mut file_ends, &mut measured);
        let hasher = DefaultHashBuilder::default();
        let mut by_id = HashTable::with_capacity(rules.len());
        index_ids(&mut by_id, &hasher, &names, 0..rules.len());
        Ok(Partition { client, rules, file_ends, names, by_id, hasher, prefilter, measured })
    }

    /// Returns this partition with the rules of its files `kept_files` (indexes into
    /// [`Partition::files`]), plus `added`: the kept rules' prefilter entries and names
    /// are copied rather than derived again from each rule (see
    /// [`Prefilter::rebuilt`]).
    fn rebuilt(&self, kept_files: &[usize], added: Vec<Stored>) -> Result<Partition, MatchError> {
        let (mut kept, mut file_ends) = (Vec::new(), Vec::with_capacity(kept_files.len()));
        for &file in kept_files {
            kept.extend(self.file_rules(file));
            file_ends.push(kept.len() as u32);
        }
        let rules: Vec<Stored> = kept.iter().map(|&i| self.rules[i as usize].clone()).chain(added).collect();
        let fresh = &rules[kept.len()..];
        let Some(prefilter) = self.prefilter.rebuilt(
            kept_files.iter().map(|&file| self.file_rules(file)),
            fresh.iter().map(Stored::anchoring),
        ) else {
            return Partition::new(self.client.clone(), rules);
        };
        let mut names = self.names.keeping(
            (0..self.file_ends.len())
                .map(|file| (self.file_rules(file), kept_files.binary_search(&file).is_ok())),
            rules.len(),
        );
        // A kept rule still opts in; a rule of a replaced file opts in again only if its
        // new definition does (its id is found in the old set, but in a dropped file).
        let mut measured: HashSet<CompactString> = self
            .measured
            .iter()
            .filter(|id| {
                self.position(id).is_some_and(|index| {
                    let file = self.file_ends.partition_point(|&end| end as usize <= index);
                    kept_files.binary_search(&file).is_ok()
                })
            })
            .cloned()
            .collect();
        lay_out(fresh, kept.len(), &mut names, &mut file_ends, &mut measured);
        // The kept ids stay where they hash to: their table is copied with each index
        // renumbered, and only the added ids are hashed.
        let mut renumbered = vec![u32::MAX; self.rules.len()];
        for (new, &old) in kept.iter().enumerate() {
            renumbered[old as usize] = new as u32;
        }
        let mut by_id = self.by_id.clone();
        by_id.retain(|index| {
            *index = renumbered[*index as usize];
            *index != u32::MAX
        });
        let hasher = self.hasher.clone();
        index_ids(&mut by_id, &hasher, &names, kept.len()..rules.len());
        let client = self.client.clone();
        Ok(Partition { client, rules, file_ends, names, by_id, hasher, prefilter: prefilter?, measured })
    }

    /// Returns the rule files the partition has rules of, in rule order (a file comes
    /// once for each run of its rules).
    pub fn files(&self) -> impl Iterator<Item = RuleFile<'_>> {
        (0..self.file_ends.len()).map(|file| {
            let rules = self.file_rules(file);
            let first = self.rules[rules.start as usize].fields();
            RuleFile { path: first.path, pack: first.pack, rules: rules.len() }
        })
    }

    /// Returns the indexes of the rules of file `file`.
    fn file_rules(&self, file: usize) -> std::ops::Range<u32> {
        file.checked_sub(1).map_or(0, |before| self.file_ends[before])..self.file_ends[file]
    }

    /// Returns the id of rule `index`.
    pub fn rule_id(&self, index: usize) -> &str {
        self.names.id(index).as_str()
    }

    /// Returns the version of rule `index`.
    pub fn rule_version(&self, index: usize) -> &str {
        self.names.version(index).as_str()
    }

    /// Returns the client whose mentions the partition's rules match (`None`: every
    /// mention's).
    pub fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// Returns the number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Returns true when the partition has no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Returns rule `index` compiled (a compact rule is compiled on first use).
    pub fn rule(&self, index: usize) -> Arc<CompiledRule> {
        self.rules[index].compiled()
    }

    /// Returns the fields of rule `index` at hand, without compiling it.
    pub fn rule_ref(&self, index: usize) -> RuleRef<'_> {
        self.rules[index].fields()
    }

    /// Returns the fields every rule has at hand, in rule order, without compiling.
    pub fn rule_refs(&self) -> impl Iterator<Item = RuleRef<'_>> {
        self.rules.iter().map(Stored::fields)
    }

    /// Returns the index of rule `id`, if the partition has it.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.by_id.find(self.hasher.hash_one(id), |&i| self.names.id(i as usize) == id).map(|&i| i as usize)
    }

    /// Returns the prefilter.
    pub fn prefilter(&self) -> &Prefilter {
        &self.prefilter
    }
}

/// Adds the rules at `indexes` to `by_id`, by the hash of their ids in `names`.
fn index_ids(
    by_id: &mut HashTable<u32>,
    hasher: &DefaultHashBuilder,
    names: &Names,
    indexes: std::ops::Range<usize>,
) {
    let hash = |i: &u32| hasher.hash_one(names.id(*i as usize));
    for i in indexes {
        by_id.insert_unique(hash(&(i as u32)), i as u32, hash);
    }
}

/// Adds the names of `rules`, which are stored from index `first` on, to `names`, the
/// ends of their files' runs to `file_ends`, and the ids of those that opt in to a
/// metric series of their own to `measured`.
fn lay_out(
    rules: &[Stored],
    first: usize,
    names: &mut Names,
    file_ends: &mut Vec<u32>,
    measured: &mut HashSet<CompactString>,
) {
    let mut previous: Option<RuleRef<'_>> = None;
    for (i, rule) in rules.iter().enumerate() {
        let fields = rule.fields();
        names.push(fields.id, fields.version);
        if fields.metrics {
            measured.insert(fields.id.into());
        }
        // Compared as bytes: `Path`'s equality compares component by component.
        if previous.is_some_and(|p| p.pack != fields.pack || p.path.as_os_str() != fields.path.as_os_str()) {
            file_ends.push((first + i) as u32);
        }
        previous = Some(fields);
    }
    if !rules.is_empty() {
        file_ends.push((first + rules.len()) as u32);
    }
}

/// A rule file as a partition has it: what a reload decides to keep or drop it by.
#[derive(Debug, Clone, Copy)]
pub struct RuleFile<'a> {
    /// The file.
    pub path: &'a Path,
    /// The client pack the file is in (`None`: the global files).
    pub pack: Option<&'a str>,
    /// The number of its rules in the partition.
    pub rules: usize,
}

/// Every rule's id and version, a fixed-size record per rule: what a verdict names
/// each matched rule by, read from one place rather than through each rule's pointer.
///
/// A record holds both strings inline when they fit (ids up to 24 bytes, and every
/// version, 12 hex digits), so naming a match reads one record, one cache miss at a
/// million rules, where packed strings read their end offsets and then their bytes,
/// two; and a verdict copies the record's strings rather than building them.
#[derive(Debug, Default)]
struct Names {
    records: Vec<[CompactString; 2]>,
    /// The partition's share of its set's version (see [`set_version`]).
    version_sum: u64,
}

impl Names {
    fn with_capacity(rules: usize) -> Names {
        Names { records: Vec::with_capacity(rules), version_sum: 0 }
    }

    fn push(&mut self, id: &str, version: &str) {
        self.version_sum = self.version_sum.wrapping_add(version_number(version));
        self.records.push([id.into(), version.into()]);
    }

    /// Returns the names of the rules of the files `files` gives as (rule range,
    /// whether it is kept), with room for `capacity` rules: the kept files' records
    /// copied whole, and the version share less the other files' rules', so that a
    /// reload keeping a million names reads only the dropped ones' versions.
    fn keeping(&self, files: impl Iterator<Item = (std::ops::Range<u32>, bool)>, capacity: usize) -> Names {
        let mut names = Names { records: Vec::with_capacity(capacity), version_sum: self.version_sum };
        for (rules, kept) in files {
            let rules = rules.start as usize..rules.end as usize;
            if kept {
                names.records.extend_from_slice(&self.records[rules]);
            } else {
                for dropped in &self.records[rules] {
                    names.version_sum = names.version_sum.wrapping_sub(version_number(&dropped[1]));
                }
            }
        }
        names
    }

    fn id(&self, index: usize) -> &CompactString {
        &self.records[index][0]
    }

    fn version(&self, index: usize) -> &CompactString {
        &self.records[index][1]
    }
}

/// An immutable, compiled set of rules: the global partition and one per client.
///
/// Partitions are shared between sets (`Arc`), so that replacing one client's rules
/// ([`RuleSet::replace`]) compiles only that client's partition, and the rules of a
/// partition are shared too, so that replacing one file's rules compiles only them.
#[derive(Debug)]
pub struct RuleSet {
    global: Arc<Partition>,
    /// By client name, so that they list in name order.
    clients: BTreeMap<String, Arc<Partition>>,
    version: CompactString,
}

impl RuleSet {
    /// Builds a rule set from compiled rules (all of them: callers drop disabled rules
    /// first if they want them dropped), each in the partition of its client.
    pub fn new(rules: Vec<CompiledRule>) -> Result<RuleSet, MatchError> {
        RuleSet::build(None, store(rules, &mut Interner::default()))
    }

    /// Loads the rules at `path` (a rule file or rules directory, as
    /// [`cull_rules::load_path`] does) into a set of those `wanted` keeps, storing each
    /// file's rules as soon as they are compiled, so that a large pack is never held
    /// compiled all at once; returns the loader's findings (its `rules` are empty, its
    /// `memo` is what a [`RuleSet::reload`] of the directory starts from) and the set,
    /// which is built only when there are no errors.
    pub fn load(
        path: &std::path::Path,
        wanted: impl Fn(&CompiledRule) -> bool,
    ) -> (cull_rules::Loaded, Option<Result<RuleSet, MatchError>>) {
        let mut interner = Interner::default();
        let mut stored = Vec::new();
        let loaded = cull_rules::load_path_each(path, &mut |rules| {
            stored.extend(store(rules.into_iter().filter(|r| wanted(r)).collect(), &mut interner));
        });
        let set = loaded.errors.is_empty().then(|| RuleSet::build(None, stored));
        (loaded, set)
    }

    /// Returns a set with the rules of the files of each partition that `keep` keeps
    /// (it is given the partition's client and the file), plus `added`. Only the
    /// partitions that lose or gain a rule are built again, from the kept rules as they
    /// are and the added ones; the others are shared with this set.
    pub fn replace(
        &self,
        keep: impl Fn(Option<&str>, &RuleFile<'_>) -> bool,
        added: Vec<CompiledRule>,
    ) -> Result<RuleSet, MatchError> {
        RuleSet::build(
            Some((self, &mut |client, file| keep(client, file))),
            store(added, &mut Interner::default()),
        )
    }

    #[allow(clippy::type_complexity)]
    fn build(
        base: Option<(&RuleSet, &mut dyn FnMut(Option<&str>, &RuleFile<'_>) -> bool)>,
        added: Vec<Stored>,
    ) -> Result<RuleSet, MatchError> {
        let mut grouped: HashMap<Option<String>, Vec<Stored>> = HashMap::new();
        for rule in added {
            grouped.entry(rule.fields().client.map(str::to_string)).or_default().push(rule);
        }
        let mut partitions: HashMap<Option<String>, Arc<Partition>> = HashMap::new();
        if let Some((base, keep)) = base {
            for partition in base.partitions() {
                let client = partition.client.clone();
                let fresh = grouped.remove(&client);
                let kept: Vec<usize> = partition
                    .files()
                    .enumerate()
                    .filter(|(_, file)| keep(partition.client(), file))
                    .map(|(index, _)| index)
                    .collect();
                let partition = if fresh.is_none() && kept.len() == partition.file_ends.len() {
                    Arc::clone(partition)
                } else {
                    Arc::new(partition.rebuilt(&kept, fresh.unwrap_or_default())?)
                };
                partitions.insert(client, partition);
            }
        }
        for (client, rules) in grouped {
            partitions.insert(client.clone(), Arc::new(Partition::new(client, rules)?));
        }
        let global = match partitions.remove(&None) {
            Some(global) => global,
            None => Arc::new(Partition::new(None, Vec::new())?),
        };
        let clients: BTreeMap<String, Arc<Partition>> = partitions
            .into_iter()
            .filter(|(_, partition)| !partition.rules.is_empty())
            .filter_map(|(client, partition)| Some((client?, partition)))
            .collect();
        let count = global.rules.len() + clients.values().map(|p| p.rules.len()).sum::<usize>();
        if u32::try_from(count).is_err() {
            return Err(MatchError::TooManyRules { count });
        }
        let mut set = RuleSet { global, clients, version: CompactString::default() };
        set.version = set_version(set.partitions().map(|p| (p.names.version_sum, p.rules.len())));
        Ok(set)
    }

    /// Returns the version: a hash of the versions of all rules, independent of order.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Returns every rule compiled, the global ones first, then each client's. Compact
    /// rules are compiled on first use: over a large set, prefer [`RuleSet::rule_refs`].
    pub fn rules(&self) -> impl Iterator<Item = Arc<CompiledRule>> + '_ {
        self.partitions().flat_map(|partition| partition.rules.iter().map(Stored::compiled))
    }

    /// Returns the fields every rule has at hand, in the order of [`RuleSet::rules`].
    pub fn rule_refs(&self) -> impl Iterator<Item = RuleRef<'_>> {
        self.partitions().flat_map(|partition| partition.rule_refs())
    }

    /// Returns the number of rules.
    pub fn len(&self) -> usize {
        self.partitions().map(|partition| partition.rules.len()).sum()
    }

    /// Returns true when the set has no rule.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the partitions: the global one first, then the clients' in name order.
    pub fn partitions(&self) -> impl Iterator<Item = &Arc<Partition>> {
        std::iter::once(&self.global).chain(self.clients.values())
    }

    /// Returns the partitions a mention of `client` meets: its client's, if it has
    /// rules, and the global one.
    pub fn partitions_for(&self, client: Option<&str>) -> impl Iterator<Item = &Partition> {
        let own = client.and_then(|client| self.clients.get(client));
        std::iter::once(self.global.as_ref()).chain(own.map(Arc::as_ref))
    }

    /// Whether rule `id`, met by a mention of `client`, opted in to a metric series of
    /// its own (`metrics = true`); the others are counted by the index, not in series.
    pub fn measures(&self, client: Option<&str>, id: &str) -> bool {
        self.partitions_for(client).any(|partition| partition.measured.contains(id))
    }

    /// Returns the clients that have rules, in name order.
    pub fn clients(&self) -> Vec<&str> {
        self.clients.keys().map(String::as_str).collect()
    }

    /// Returns the rule `id` a mention of `client` can meet: its client's rule of that
    /// id, else the global one.
    pub fn rule(&self, client: Option<&str>, id: &str) -> Option<Arc<CompiledRule>> {
        self.locate(client, id).map(|(partition, index)| partition.rule(index))
    }

    /// Returns the partition and index of the rule `id` a mention of `client` meets.
    pub fn locate(&self, client: Option<&str>, id: &str) -> Option<(&Partition, usize)> {
        let own = client.and_then(|client| self.clients.get(client)).map(Arc::as_ref);
        own.into_iter()
            .chain([self.global.as_ref()])
            .find_map(|partition| Some((partition, partition.position(id)?)))
    }

    /// Returns how many rules the prefilters hand to verification for `mention`: the
    /// work of matching it, which other clients' rules never add to.
    pub fn candidate_count(&self, mention: &Mention) -> usize {
        let (mut scratch, mut candidates) = (Scratch::default(), Vec::new());
        let doc = Document::new(mention);
        self.partitions_for(mention.client.as_deref())
            .map(|partition| {
                partition.prefilter.candidates(&doc, &mut scratch, &mut candidates);
                candidates.len()
            })
            .sum()
    }

    /// Returns the verdict for one mention.
    pub fn verdict(&self, mention: &Mention) -> Verdict {
        self.verdict_with(mention, &mut MatchScratch::default())
    }

    /// Returns the verdicts for a batch, in input order, matching on all threads of
    /// the current rayon pool, each in its thread's [`MatchScratch`]: the buffers grown
    /// for one batch serve the next, rather than being grown again (and, at a million
    /// rules, megabytes zeroed) for every batch.
    pub fn verdicts(&self, mentions: &[Mention]) -> Vec<Verdict> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<MatchScratch> = std::cell::RefCell::default();
        }
        mentions
            .par_iter()
            .map(|m| {
                SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
                    Ok(mut scratch) => self.verdict_with(m, &mut scratch),
                    // Only a matching nested in another on this thread finds it taken.
                    Err(_) => self.verdict(m),
                })
            })
            .collect()
    }

    /// Matches one mention into `scratch` ([`MatchScratch::hits`]): the matching of a
    /// verdict without its strings. It allocates nothing once the scratch has grown,
    /// for rules without masks or keyword fields (`site:`, `lang:`, channel and
    /// language filters), which build small sets per mention.
    pub fn match_into(&self, mention: &Mention, scratch: &mut MatchScratch) {
        self.match_probed(mention, scratch, &mut NoProbe);
    }

    /// Matches one mention as [`RuleSet::match_into`] does and calls `each` with every
    /// rule the prefilters made a candidate, what came of it and how long deciding it
    /// took: the cost of each rule, for profiling a sample of the traffic (timing every
    /// candidate would slow matching down).
    pub fn profile_into(
        &self,
        mention: &Mention,
        scratch: &mut MatchScratch,
        each: impl FnMut(RuleRef<'_>, HitKind, Duration),
    ) {
        self.match_probed(mention, scratch, &mut TimedProbe(each));
    }

    fn match_probed<P: Probe>(&self, mention: &Mention, scratch: &mut MatchScratch, probe: &mut P) {
        let MatchScratch { prefilter, candidates, document, hits, spans, found } = scratch;
        hits.clear();
        spans.clear();
        let doc = Document::reusing(mention, std::mem::take(document));
        for (own, partition) in self.partitions_for(mention.client.as_deref()).enumerate() {
            partition.prefilter.candidates(&doc, prefilter, candidates);
            partition.prefilter.load_proven_ahead(candidates);
            for &candidate in candidates.iter() {
                let index = candidate.rule();
                let started = P::TIMED.then(Instant::now);
                let first = spans.len();
                // The rule itself is read only when it is verified: for a proven one,
                // it would be a cache miss per match at a million rules.
                let verified = (!candidate.proven()).then(|| &partition.rules[index as usize]);
                let kind = match verified {
                    Some(Stored::Full(rule)) => evaluate_into(rule, &doc, spans),
                    // A proven candidate (every compact rule is one) is a match: only
                    // its spans are left to find, among the words the prefilter found.
                    _ => {
                        found.clear();
                        partition.prefilter.proven_spans(candidate, &doc, prefilter, found);
                        merge_spans(found, spans);
                        HitKind::Matched
                    }
                };
                if let Some(started) = started {
                    probe.candidate(partition.rule_ref(index as usize), kind, started.elapsed());
                }
                if kind != HitKind::NoMatch {
                    hits.push(Hit { own: own == 1, index, kind, spans: first..spans.len() });
                }
            }
        }
        *document = doc.recycle();
    }

    /// Returns the partition of a hit of a mention of `client`.
    pub fn hit_partition(&self, client: Option<&str>, hit: &Hit) -> &Partition {
        match client.and_then(|client| self.clients.get(client)) {
            Some(own) if hit.own => own,
            _ => &self.global,
        }
    }

    fn verdict_with(&self, mention: &Mention, scratch: &mut MatchScratch) -> Verdict {
        self.match_into(mention, scratch);
        let matched = scratch.hits().iter().filter(|hit| hit.kind == HitKind::Matched).count();
        let mut verdict = Verdict {
            schema: VERDICT_SCHEMA.into(),
            mention_id: mention.id.clone(),
            client: mention.client.clone(),
            ruleset_version: self.version.clone(),
            matched: Vec::with_capacity(matched),
            culled: Vec::with_capacity(scratch.hits().len() - matched),
            mention: None,
        };
        // The names of a million rules are a cache miss each: read them all first, by
        // a loop that decides nothing on them, so that their misses overlap (see
        // `Prefilter::load_ahead`), rather than one at a time as the loop below needs them.
        let mut sum = 0usize;
        for hit in scratch.hits() {
            let names = &self.hit_partition(mention.client.as_deref(), hit).names;
            // Both strings: a record spans two cache lines as often as not.
            sum = sum
                .wrapping_add(names.id(hit.index as usize).len() + names.version(hit.index as usize).len());
        }
        std::hint::black_box(sum);
        for hit in scratch.hits() {
            let partition = self.hit_partition(mention.client.as_deref(), hit);
            let index = hit.index as usize;
            match hit.kind {
                HitKind::NoMatch => {}
                HitKind::Matched => verdict.matched.push(MatchedRule {
                    rule_id: partition.names.id(index).clone(),
                    rule_version: partition.names.version(index).clone(),
                    spans: scratch.spans(hit).into(),
                }),
                HitKind::Culled(reason, clause) => verdict.culled.push(Culled {
                    rule_id: partition.names.id(index).clone(),
                    reason,
                    clause: match &partition.rules[index] {
                        Stored::Full(full) => clause.text(full, mention).to_string(),
                        // A compact rule has nothing that culls.
                        Stored::Compact(_) => String::new(),
                    },
                }),
            }
        }
        verdict
    }
}

/// What watches the candidates of a match: nothing, or a profile.
trait Probe {
    /// Whether candidates are timed; a constant, so that matching without a probe
    /// compiles to no timing at all.
    const TIMED: bool;

    fn candidate(&mut self, rule: RuleRef<'_>, kind: HitKind, took: Duration);
}

struct NoProbe;

impl Probe for NoProbe {
    const TIMED: bool = false;

    fn candidate(&mut self, _: RuleRef<'_>, _: HitKind, _: Duration) {}
}

struct TimedProbe<F>(F);

impl<F: FnMut(RuleRef<'_>, HitKind, Duration)> Probe for TimedProbe<F> {
    const TIMED: bool = true;

    fn candidate(&mut self, rule: RuleRef<'_>, kind: HitKind, took: Duration) {
        (self.0)(rule, kind, took);
    }
}

/// Returns the version of a set of rules from its partitions' sums of
/// [`version_number`]s and rule counts: a hash of the wrapping sum and the count,
/// independent of order.
///
/// A sum needs no sort: a million rules cost a reload milliseconds, where sorting and
/// concatenating their versions took most of a second, and each partition's sum is
/// made while its rules' names are laid out. Two sets differing in any rule differ
/// unless their mixed numbers happen to cancel (odds of 2⁻⁶⁴).
fn set_version(partitions: impl Iterator<Item = (u64, usize)>) -> CompactString {
    let (mut sum, mut count) = (0u64, 0usize);
    for (partition_sum, rules) in partitions {
        sum = sum.wrapping_add(partition_sum);
        count += rules;
    }
    cull_model::short_hash(&[&format!("{sum:016x}{count:016x}")], 12).into()
}

/// Returns a rule version as the number a set's version sums: its hex digits (a
/// version that is not hex is hashed to some), mixed by a bijection.
fn version_number(version: &str) -> u64 {
    let number = u64::from_str_radix(version, 16).unwrap_or_else(|_| {
        u64::from_str_radix(&cull_model::short_hash(&[version], 16), 16).unwrap_or_default()
    });
    mix(number)
}

/// SplitMix64's finalizer: a bijection of `u64` that spreads every input bit over the
/// output, so that sums of mixed values do not cancel for related inputs.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Returns `rules` in the form a partition keeps them (see [`stored`]).
fn store(rules: Vec<CompiledRule>, interner: &mut Interner) -> Vec<Stored> {
    rules
        .into_iter()
        .map(|rule| {
            let rule = Arc::new(rule);
            let clauses = match Anchoring::of(&rule) {
                Anchoring::Proven(clauses) => Some(clauses),
                Anchoring::Verified(_) | Anchoring::Everywhere => None,
            };
            Stored::new(Arc::clone(&rule), clauses.as_deref(), interner)
        })
        .collect()
}

/// Holds the current [`RuleSet`] and swaps in new ones without pausing matching.
///
/// A batch takes a snapshot with [`Matcher::current`] and matches the whole batch
/// against it, so a batch never mixes two versions; a swap takes effect from the
/// next batch on.
#[derive(Debug)]
pub struct Matcher {
    current: ArcSwap<RuleSet>,
}

impl Matcher {
    /// Returns a matcher using `rules`.
    pub fn new(rules: RuleSet) -> Matcher {
        Matcher { current: ArcSwap::from_pointee(rules) }
    }

    /// Returns the rule set in use now.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    /// Installs a new rule set and returns the previous one.
    pub fn swap(&self, rules: RuleSet) -> Arc<RuleSet> {
        self.current.swap(Arc::new(rules))
    }

    /// Returns the verdicts for a batch against one snapshot of the rule set.
    pub fn verdicts(&self, mentions: &[Mention]) -> Vec<Verdict> {
        self.current().verdicts(mentions)
    }
}

/// Frees `replaced`, a set [`Matcher::swap`] took out, on this thread once the batches
/// still matching against it are done, waiting at most `patience` for them; returns
/// whether it was freed here (after `patience`, its last holder frees it).
///
/// Freeing a set of a million rules takes over ten milliseconds. Left to whichever
/// thread drops it last, that is usually a matching thread finishing its batch, which
/// would pause matching at every reload. It waits, so call it off an async runtime.
pub fn retire(replaced: Arc<RuleSet>, patience: Duration) -> bool {
    let (started, mut nap) = (Instant::now(), Duration::from_millis(1));
    // Polled, more and more slowly: the holders are mostly batches, done within a
    // second even at a million rules, and the set is out of the matcher, so nothing
    // takes a new snapshot of it; a holder that keeps it on purpose (the ticket stage
    // keeps a few sets, for late verdicts) is outwaited in a few dozen naps.
    while Arc::strong_count(&replaced) > 1 && started.elapsed() < patience {
        std::thread::sleep(nap.min(patience.saturating_sub(started.elapsed())));
        nap = (nap * 2).min(Duration::from_millis(100));
    }
    Arc::into_inner(replaced).is_some()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn rule_set(toml: &str) -> RuleSet {
        let loaded = cull_rules::load_files([(Path::new("t.toml"), toml.as_bytes())]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        RuleSet::new(loaded.rules).expect("rule set")
    }

    #[test]
    fn a_swap_takes_effect_between_batches_and_never_within_one() {
        let first = rule_set("[[rule]]\nid = 'a'\nquery = 'slack'\n");
        let second = rule_set("[[rule]]\nid = 'b'\nquery = 'slack'\n");
        let versions = [first.version().to_string(), second.version().to_string()];
        let matcher = Matcher::new(first);
        let batch: Vec<Mention> = (0..200).map(|i| Mention::new(format!("m{i}"), "slack news")).collect();
        let done = AtomicBool::new(false);
        let seen = std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut seen = [0usize; 2];
                while !done.load(Ordering::Relaxed) {
                    let verdicts = matcher.verdicts(&batch);
                    let version = &verdicts[0].ruleset_version;
                    let which = versions.iter().position(|v| v == version).expect("a known version");
                    let rule = ["a", "b"][which];
                    for verdict in &verdicts {
                        assert_eq!(&verdict.ruleset_version, version, "one batch, one rule set");
                        assert_eq!(
                            verdict.matched[0].rule_id, rule,
                            "the verdict comes from the set it names"
                        );
                    }
                    seen[which] += 1;
                }
                seen
            });
            for i in 0..200 {
                let toml = format!("[[rule]]\nid = '{}'\nquery = 'slack'\n", ["a", "b"][(i + 1) % 2]);
                matcher.swap(rule_set(&toml));
                std::thread::yield_now();
            }
            done.store(true, Ordering::Relaxed);
            reader.join().expect("reader")
        });
        assert!(seen[0] > 0 && seen[1] > 0, "both versions were used: {seen:?}");
        assert_eq!(matcher.current().rules().next().unwrap().rule.id, "a");
    }

    #[test]
    fn a_profile_sees_every_candidate_and_matches_as_matching_does() {
        let set = rule_set(
            "[[rule]]\nid = 's'\nquery = 'slack'\nexclude = 'adjuster'\n\
             [[rule]]\nid = 'w'\nquery = 'slack (stock OR shares)'\n\
             [[rule]]\nid = 'z'\nquery = '\"zoom meeting\"'\n",
        );
        let mention = Mention::new("m", "Slack adjuster shares; a meeting on zoom");
        let (mut plain, mut profiled) = (MatchScratch::default(), MatchScratch::default());
        set.match_into(&mention, &mut plain);
        let mut seen = Vec::new();
        set.profile_into(&mention, &mut profiled, |rule, kind, _took| seen.push((rule.id.to_string(), kind)));
        assert_eq!(plain.hits(), profiled.hits(), "profiling changes no answer");
        let seen: Vec<(&str, bool)> =
            seen.iter().map(|(id, kind)| (id.as_str(), *kind == HitKind::NoMatch)).collect();
        assert_eq!(seen, [("s", false), ("w", false), ("z", true)], "every candidate, the phrase's miss too");
    }

    #[test]
    fn a_replaced_set_is_freed_by_its_retirer_once_the_batches_holding_it_are_done() {
        let matcher = Matcher::new(rule_set("[[rule]]\nid = 'a'\nquery = 'slack'\n"));
        let in_flight = matcher.current();
        let replaced = matcher.swap(rule_set("[[rule]]\nid = 'b'\nquery = 'zoom'\n"));
        let batch = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(in_flight);
        });
        assert!(retire(replaced, Duration::from_secs(60)), "freed here once the batch let it go");
        batch.join().expect("batch");

        let kept = matcher.current();
        let replaced = matcher.swap(rule_set("[[rule]]\nid = 'c'\nquery = 'slack'\n"));
        assert!(!retire(replaced, Duration::from_millis(5)), "a holder past the patience frees it");
        assert_eq!(Arc::strong_count(&kept), 1, "the holder is left the last reference");
    }

    #[test]
    fn verdicts_keep_input_order_and_report_every_mention() {
        let set = rule_set("[[rule]]\nid = 's'\nquery = 'slack'\nexclude = 'adjuster'\n");
        let batch: Vec<Mention> = (0..1000)
            .map(|i| Mention::new(format!("m{i}"), ["slack", "slack adjuster", "nothing"][i % 3]))
            .collect();
        let verdicts = set.verdicts(&batch);
        assert_eq!(verdicts.len(), 1000);
        for (i, verdict) in verdicts.iter().enumerate() {
            assert_eq!(verdict.mention_id, format!("m{i}"));
            assert_eq!((verdict.matched.len(), verdict.culled.len()), [(1, 0), (0, 1), (0, 0)][i % 3]);
        }
    }

    #[test]
    fn verdicts_name_rules_whose_ids_do_not_fit_a_record_as_those_that_do() {
        let long = "brand-monitoring.acme-corporation.slack-outage-2026";
        let set = rule_set(&format!(
            "[[rule]]\nid = '{long}'\nquery = 'slack'\nexclude = 'adjuster'\n[[rule]]\nid = 'r'\nquery = 'slack'\n"
        ));
        let matched = set.verdict(&Mention::new("m", "slack"));
        let named: Vec<(&str, &str)> =
            matched.matched.iter().map(|m| (m.rule_id.as_str(), m.rule_version.as_str())).collect();
        let version = |id| set.rule(None, id).expect("rule").version.clone();
        assert_eq!(named, [(long, version(long).as_str()), ("r", version("r").as_str())]);
        let culled = set.verdict(&Mention::new("m", "slack adjuster"));
        assert_eq!(culled.culled[0].rule_id, long);
        let (partition, index) = set.locate(None, long).expect("found by its id");
        assert_eq!((partition.rule_id(index), partition.rule_version(index)), (long, version(long).as_str()));
    }

    #[test]
    fn culls_apply_in_the_documented_order() {
        let set = rule_set(
            "[[rule]]\nid = 'r'\nquery = 'slack'\nexclude = 'wax OR adjuster'\nmask = ['\"slack wax\"']\nchannels = ['news']\nlangs = ['en']\n",
        );
        let culled = |text: &str, channel: Option<cull_model::Channel>, lang: Option<&str>| {
            let mut mention = Mention::new("m", text);
            mention.channel = channel;
            mention.lang = lang.map(str::to_string);
            let verdict = set.verdict(&mention);
            verdict.culled.first().map(|c| (c.reason, c.clause.clone()))
        };
        use cull_model::Channel::{Forum, News};
        assert_eq!(
            culled("slack adjuster", Some(Forum), Some("en")),
            Some((CullReason::Channel, "forum".into()))
        );
        assert_eq!(culled("slack adjuster", Some(News), Some("de")), Some((CullReason::Lang, "de".into())));
        assert_eq!(culled("slack wax", Some(News), None), Some((CullReason::Mask, "\"slack wax\"".into())));
        assert_eq!(culled("slack and wax", None, None), Some((CullReason::Exclude, "wax".into())));
        assert_eq!(culled("slack wax and slack", None, None), Some((CullReason::Exclude, "wax".into())));
        assert_eq!(culled("slack", Some(News), Some("en")), None);
        assert_eq!(
            set.verdict(&Mention::new("m", "slack")).matched.len(),
            1,
            "no channel, no lang: not culled"
        );
    }

    fn client_mention(client: Option<&str>, text: &str) -> Mention {
        Mention { client: client.map(str::to_string), ..Mention::new("m", text) }
    }

    fn matched_ids(set: &RuleSet, client: Option<&str>, text: &str) -> Vec<String> {
        set.verdict(&client_mention(client, text)).matched.into_iter().map(|m| m.rule_id.into()).collect()
    }

    #[test]
    fn a_clients_rule_matches_only_its_clients_mentions_and_a_global_rule_every_mention() {
        let set = rule_set(
            "[[rule]]\nid = 'global'\nquery = 'slack'\n\n\
             [[rule]]\nid = 'brand'\nquery = 'slack'\nclient = 'acme'\n\n\
             [[rule]]\nid = 'brand-x'\nquery = 'slack OR acme'\nclient = 'globex'\n",
        );
        assert_eq!(matched_ids(&set, Some("acme"), "slack"), ["global", "brand"]);
        assert_eq!(matched_ids(&set, Some("globex"), "slack acme"), ["global", "brand-x"]);
        assert_eq!(matched_ids(&set, None, "slack acme"), ["global"], "the house meets global rules only");
        assert_eq!(matched_ids(&set, Some("initech"), "slack"), ["global"], "a client without rules");
        let verdict = set.verdict(&client_mention(Some("acme"), "slack"));
        assert_eq!(verdict.client.as_deref(), Some("acme"));
        assert_eq!(set.clients(), ["acme", "globex"]);
        assert_eq!(set.len(), 3);
        assert!(set.rule(Some("acme"), "brand").is_some() && set.rule(Some("globex"), "brand").is_none());
        assert_eq!(set.rule(Some("acme"), "global").unwrap().rule.id, "global");
    }

    #[test]
    fn a_sets_version_ignores_order_and_tells_every_change() {
        let version = |versions: &[&str]| {
            let (first, second) = versions.split_at(versions.len() / 2);
            let sum = |part: &[&str]| part.iter().fold(0u64, |sum, v| sum.wrapping_add(version_number(v)));
            set_version([(sum(first), first.len()), (sum(second), second.len())].into_iter())
        };
        let base = version(&["00000000000a", "00000000000b", "not-hex"]);
        assert_eq!(base, version(&["not-hex", "00000000000b", "00000000000a"]));
        for other in [
            version(&["00000000000a", "00000000000b"]),
            version(&["00000000000a", "00000000000b", "not-hex", "not-hex"]),
            version(&["00000000000a", "00000000000c", "not-hex"]),
            version(&["00000000000a", "00000000000b", "not-hey"]),
            version(&[]),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(base.len(), 12);
    }

    #[test]
    fn a_set_with_one_file_replaced_matches_as_the_same_rules_built_anew() {
        let file = |path: &str, words: &[&str]| {
            let mut toml = String::new();
            for (i, w) in words.iter().enumerate() {
                let query = match i % 5 {
                    0 => w.to_string(),
                    1 => format!("{w} (slack OR zoom)"),
                    2 => format!("{}*", &w[..3]),
                    3 => format!("\"{w} outage\""),
                    _ => format!("site:{w}.com OR {w}"),
                };
                // Ids name the word, so that a changed file drops some ids and keeps
                // others.
                let id = format!("{path}-{i}-{w}");
                toml += &format!("[[rule]]\nid = '{id}'\nquery = '{query}'\n\n");
            }
            (std::path::PathBuf::from(path), toml)
        };
        let load = |files: &[(std::path::PathBuf, String)]| {
            let loaded = cull_rules::load_files(files.iter().map(|(p, t)| (p.as_path(), t.as_bytes())));
            assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
            loaded.rules
        };
        let mentions: Vec<Mention> = [
            "slack outage at acme",
            "zoom and teams",
            "globex zoom",
            "initech slack stock",
            "acmeville outage",
            "umbrella corp",
            "hooli zoom outage",
            "teams outage",
            "wonka slack",
            "stark zoom",
            "nothing here",
        ]
        .iter()
        .enumerate()
        .map(|(i, text)| Mention {
            url: Some(format!("https://{}.com/x", text.split(' ').next().unwrap_or_default())),
            ..Mention::new(format!("m{i}"), *text)
        })
        .collect();
        let kept = file("a.toml", &["acme", "globex", "initech", "umbrella", "hooli"]);
        // A kept file after the replaced one moves up, its unanchored rule (`site:`)
        // with it.
        let kept_after = file("c.toml", &["wonka", "stark", "teams", "outage", "zoom"]);
        let mut set = RuleSet::new(load(&[
            kept.clone(),
            file("b.toml", &["teams", "wonka", "stark"]),
            kept_after.clone(),
        ]))
        .unwrap();
        let mut literals = Vec::new();
        for round in 0..6 {
            let words: Vec<String> =
                ["teams", "wonka", "stark", "acme"].iter().map(|w| format!("{w}{round}")).collect();
            let words: Vec<&str> = words.iter().map(String::as_str).chain(["zoom", "outage"]).collect();
            let changed = file("b.toml", &words);
            set = set
                .replace(|_, file| file.path != Path::new("b.toml"), load(std::slice::from_ref(&changed)))
                .unwrap();
            let anew = RuleSet::new(load(&[kept.clone(), kept_after.clone(), changed])).unwrap();
            assert_eq!(set.version(), anew.version());
            for mention in &mentions {
                assert_eq!(set.verdict(mention), anew.verdict(mention), "round {round}, {}", mention.text);
            }
            let global = set.partitions().next().unwrap();
            for (index, rule) in anew.rule_refs().enumerate() {
                assert_eq!(global.position(rule.id), Some(index), "round {round}: {}", rule.id);
            }
            assert_eq!(
                set.rule(None, &format!("b.toml-0-teams{round}")).unwrap().rule.query,
                format!("teams{round}")
            );
            assert!(
                global.position("b.toml-0-teams").is_none() && global.position("b.toml-0-teams7").is_none()
            );
            if round > 0 {
                let removed = format!("b.toml-0-teams{}", round - 1);
                assert!(global.position(&removed).is_none(), "{removed} is gone");
            }
            literals.push(set.partitions().next().unwrap().prefilter().pattern_count());
        }
        assert!(
            literals.windows(2).any(|pair| pair[1] > pair[0])
                && literals.windows(2).any(|pair| pair[1] < pair[0]),
            "unused literals accumulate, then a prefilter is built anew: {literals:?}"
        );
    }

    #[test]
    fn a_replace_asks_about_each_file_once_and_keeps_or_drops_its_rules_whole() {
        let rules = |path: &str, ids: &[&str]| {
            let toml: String = ids
                .iter()
                .map(|id| {
                    let client =
                        id.strip_prefix("acme-").map_or(String::new(), |_| "client = 'acme'\n".into());
                    format!("[[rule]]\nid = '{id}'\nquery = 'slack'\n{client}\n")
                })
                .collect();
            let loaded = cull_rules::load_files([(Path::new(path), toml.as_bytes())]);
            assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
            loaded.rules
        };
        let mut all = rules("a.toml", &["a1", "acme-a2", "a3"]);
        all.extend(rules("b.toml", &["b1", "b2", "acme-b3"]));
        let set = RuleSet::new(all).unwrap();
        let files = |set: &RuleSet| -> Vec<(Option<String>, String, usize)> {
            set.partitions()
                .flat_map(|p| {
                    p.files().map(|f| (p.client().map(str::to_string), f.path.display().to_string(), f.rules))
                })
                .collect()
        };
        let file =
            |client: Option<&str>, path: &str, rules| (client.map(str::to_string), path.to_string(), rules);
        assert_eq!(
            files(&set),
            [
                file(None, "a.toml", 2),
                file(None, "b.toml", 2),
                file(Some("acme"), "a.toml", 1),
                file(Some("acme"), "b.toml", 1)
            ]
        );
        let asked = std::cell::RefCell::new(Vec::new());
        let replaced = set
            .replace(
                |client, file| {
                    asked.borrow_mut().push((client.map(str::to_string), file.path.display().to_string()));
                    file.path != Path::new("a.toml")
                },
                rules("c.toml", &["c1", "acme-c2"]),
            )
            .unwrap();
        assert_eq!(asked.borrow().len(), 4, "once per file and partition: {:?}", asked.borrow());
        assert_eq!(
            files(&replaced),
            [
                file(None, "b.toml", 2),
                file(None, "c.toml", 1),
                file(Some("acme"), "b.toml", 1),
                file(Some("acme"), "c.toml", 1)
            ]
        );
        let ids: Vec<&str> = replaced.rule_refs().map(|r| r.id).collect();
        assert_eq!(ids, ["b1", "b2", "c1", "acme-b3", "acme-c2"]);
    }

    #[test]
    fn only_rules_that_opt_in_are_measured_and_a_replace_follows_their_new_definition() {
        let rules = |path: &str, toml: &str| {
            let loaded = cull_rules::load_files([(Path::new(path), toml.as_bytes())]);
            assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
            loaded.rules
        };
        // Compact rules (plain words) and a whole one (an exclusion), global and a client's.
        let mut all = rules(
            "a.toml",
            "[[rule]]\nid = 'kept'\nquery = 'slack'\nmetrics = true\n\n\
             [[rule]]\nid = 'quiet'\nquery = 'slack'\n\n\
             [[rule]]\nid = 'whole'\nquery = 'slack'\nexclude = 'adjuster'\nmetrics = true\n",
        );
        all.extend(rules(
            "b.toml",
            "[[rule]]\nid = 'changed'\nquery = 'zoom'\nmetrics = true\n\n\
             [[rule]]\nid = 'acme'\nquery = 'zoom'\nclient = 'acme'\nmetrics = true\n",
        ));
        let set = RuleSet::new(all).unwrap();
        let measured = |set: &RuleSet, client: Option<&str>| -> Vec<&str> {
            ["kept", "quiet", "whole", "changed", "acme", "absent"]
                .into_iter()
                .filter(|id| set.measures(client, id))
                .collect()
        };
        assert_eq!(measured(&set, None), ["kept", "whole", "changed"]);
        assert_eq!(measured(&set, Some("acme")), ["kept", "whole", "changed", "acme"]);
        assert_eq!(measured(&set, Some("globex")), ["kept", "whole", "changed"], "not acme's own rule");

        // b.toml is edited: `changed` no longer opts in, `added` does; a.toml is kept.
        let edited = rules(
            "b.toml",
            "[[rule]]\nid = 'changed'\nquery = 'zoom'\n\n\
             [[rule]]\nid = 'added'\nquery = 'zoom'\nmetrics = true\n",
        );
        let replaced = set.replace(|_, file| file.path != Path::new("b.toml"), edited).unwrap();
        let measured_now = |client| {
            ["kept", "whole", "changed", "added", "acme"]
                .into_iter()
                .filter(|id| replaced.measures(client, id))
                .collect::<Vec<_>>()
        };
        assert_eq!(measured_now(None), ["kept", "whole", "added"]);
        assert_eq!(measured_now(Some("acme")), ["kept", "whole", "added"], "acme's file was dropped");
    }

    #[test]
    fn replacing_one_clients_rules_shares_the_other_partitions() {
        let set = rule_set(
            "[[rule]]\nid = 'global'\nquery = 'slack'\n\n\
             [[rule]]\nid = 'a'\nquery = 'slack'\nclient = 'acme'\n\n\
             [[rule]]\nid = 'g'\nquery = 'slack'\nclient = 'globex'\n",
        );
        let new = rule_set("[[rule]]\nid = 'a2'\nquery = 'outage'\nclient = 'acme'\n");
        let added: Vec<CompiledRule> = new.rules().map(|rule| CompiledRule::clone(&rule)).collect();
        let replaced = set.replace(|client, _| client != Some("acme"), added).unwrap();
        let partition = |set: &RuleSet, client: &str| {
            Arc::clone(set.partitions().find(|p| p.client() == Some(client)).unwrap())
        };
        assert!(
            Arc::ptr_eq(&partition(&set, "globex"), &partition(&replaced, "globex")),
            "not compiled again"
        );
        assert!(Arc::ptr_eq(&set.global, &replaced.global));
        assert_eq!(matched_ids(&replaced, Some("acme"), "slack outage"), ["global", "a2"]);
        assert_eq!(matched_ids(&replaced, Some("globex"), "slack outage"), ["global", "g"]);
        assert_ne!(set.version(), replaced.version());
        let emptied = replaced.replace(|client, _| client != Some("acme"), Vec::new()).unwrap();
        assert_eq!(emptied.clients(), ["globex"], "a client whose rules are all gone has no partition");
    }
}
