//! Loading rule packs: every `*.toml` file of a directory, every rule in it.
//!
//! A rules directory holds packs: its top-level files are the global pack, whose
//! rules match every mention, and each subdirectory named after a client (`acme/`)
//! is that client's pack, whose rules match only that client's mentions. A rule id is
//! unique among the rules one mention can meet (its client's and the global ones), so
//! two clients may both have a rule `brand`; see [`Taken`].
//!
//! Loading never stops at the first problem. TOML syntax errors are recovered from as
//! far as the parser can; each `[[rule]]` table is deserialized on its own so that a
//! misspelled key in one rule does not hide an error in the next; every query of every
//! rule is compiled and linted; then ids are checked for duplicates across the pack.
//! The caller gets the rules that are sound, every error and every warning, each
//! located at file:line:column.
//!
//! A rules directory is written by people and by deploy tooling, and its files end
//! up in error messages, logs and API responses. So only regular files are read, a
//! symbolic link only when it resolves inside the directory (a Kubernetes ConfigMap's
//! `x.toml -> ..data/x.toml` does), never a file of /proc, never more than
//! [`MAX_RULE_FILE_BYTES`], and never in a way that can block (a FIFO).

use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, Metadata};
use std::hash::BuildHasher;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use cull_model::{client_name_problem, Channel, PackedStrings, Priority};
use hashbrown::{DefaultHashBuilder, HashTable};
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::compiled::{CompiledRule, QueryKey};
use crate::error::{Located, Refusal, RuleError, Severity};
use crate::memo::{clash, digest, ClaimIndex, ClaimOf, FileMemo, Memo, GLOBAL, NO_CLAIM};
use crate::query;
use crate::rule::{Example, Expect, Rule, SPIKE_PRESETS};

/// The largest rule file read, in bytes. The largest real pack file is a few hundred
/// KiB; the cap keeps a mistaken link or a generated file from growing the process.
pub const MAX_RULE_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The most TOML syntax errors reported per file: the parser recovers after each, so a
/// file that is not TOML at all (binary, a control character per byte) would otherwise
/// be thousands of errors.
const MAX_SYNTAX_ERRORS_SHOWN: usize = 20;

/// The result of loading a rule pack: the rules that compiled and every error found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Rules without errors, in file order, files in name order.
    pub rules: Vec<CompiledRule>,
    /// Every error, in file order.
    pub errors: Vec<RuleError>,
    /// Every warning (queries that probably do not mean what they say), in file
    /// order; warnings never keep a rule from loading.
    pub warnings: Vec<Located>,
    /// The files read without errors of their own, to be given to the next load of
    /// these packs once their rules are taken (see [`Memo`]).
    pub memo: Memo,
    /// The files that were as the memo given to the load remembers them: their rules
    /// were not compiled again and are not in [`Loaded::rules`] (nor given to a
    /// caller's keeper); those in use stay.
    pub unchanged: Vec<PathBuf>,
}

impl Loaded {
    /// Adds the findings of `other`, a load of other packs, after these.
    pub fn extend(&mut self, other: Loaded) {
        self.rules.extend(other.rules);
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
        self.memo.extend(other.memo);
        self.unchanged.extend(other.unchanged);
    }

    /// Returns the result of a load that failed with `error` before any rule.
    fn failed(error: RuleError) -> Loaded {
        Loaded { errors: vec![error], ..Loaded::default() }
    }
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
    client: Option<Spanned<String>>,
    escalate_on: Option<Spanned<String>>,
    spike: Option<Spanned<String>>,
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

/// A rules directory read pack by pack: the top-level files (the global pack, which
/// the contact center's staff own) and one pack per client subdirectory.
///
/// Packs are kept apart so that a reload can take the packs that load cleanly and
/// keep the running version of the one that does not: one client's typo must not
/// hold back another client's change.
#[derive(Debug, Default)]
pub struct Tree {
    /// The top-level `*.toml` files, and every error reading the directory itself.
    pub global: Loaded,
    /// The pack of each client subdirectory `<client>/`, by client name.
    pub clients: BTreeMap<String, Loaded>,
}

impl Tree {
    /// Returns every pack as one: the global pack first, then the clients' in name
    /// order.
    pub fn flatten(self) -> Loaded {
        let mut all = self.global;
        for (_, pack) in self.clients {
            all.extend(pack);
        }
        all
    }
}

/// Loads a rules directory: its top-level `*.toml` files are the global pack, each
/// subdirectory named after a client (`acme/`) is that client's pack; names starting
/// with `.` are skipped (a Kubernetes ConfigMap's `..data`). Each pack's files are
/// read in name order.
pub fn load_tree(dir: &Path) -> Tree {
    load_tree_each(dir, &Memo::default(), &mut collect)
}

/// As [`load_tree`], for a rules directory last loaded as `memo` remembers: only the
/// files that changed since are compiled, and their rules handed to `keep` a file at
/// a time (the [`Loaded::rules`] returned stay empty), so that a caller keeping rules
/// in a compact form of its own never holds a large pack compiled all at once.
pub fn load_tree_since(dir: &Path, memo: &Memo, keep: &mut dyn FnMut(Vec<CompiledRule>)) -> Tree {
    load_tree_each(dir, memo, &mut |_: &mut Loaded, rules: Vec<CompiledRule>| keep(rules))
}

/// Where a loader puts each file's rules once their ids are claimed: into the pack's
/// [`Loaded::rules`], or to a caller that keeps them in a form of its own, so that a
/// pack of a million rules is never held compiled all at once.
type Keep<'k> = &'k mut dyn FnMut(&mut Loaded, Vec<CompiledRule>);

/// As [`load_tree`], for a directory last loaded as `memo` remembers, handing each
/// changed file's rules to `keep`.
fn load_tree_each(dir: &Path, memo: &Memo, keep: Keep<'_>) -> Tree {
    let mut tree = Tree::default();
    let (files, packs, root) = match list_dir(dir) {
        Ok(listed) => listed,
        Err(error) => {
            tree.global.errors.push(error);
            return tree;
        }
    };
    let mut claiming = Claiming::since(memo, &Taken::default);
    tree.global = read_pack(None, &files, &root, &mut claiming, memo, keep);
    for (client, pack_dir) in packs {
        if let Some(problem) = client_name_problem(&client) {
            let reason = Refusal::NotAClient(problem);
            tree.global.errors.push(RuleError::Refused { path: pack_dir, reason });
            continue;
        }
        let pack = match list_dir(&pack_dir) {
            Ok((files, nested, _)) => {
                let mut pack = read_pack(Some(&client), &files, &root, &mut claiming, memo, keep);
                for (_, nested) in nested {
                    let reason = Refusal::NotAClient("a client's pack holds rule files only".into());
                    pack.errors.push(RuleError::Refused { path: nested, reason });
                }
                pack
            }
            Err(error) => Loaded::failed(error),
        };
        tree.clients.insert(client, pack);
    }
    tree
}

/// Loads one client's pack, `dir/<client>/`, for a reload of that pack alone; its ids
/// must not be taken by the global rules (and rules naming the client) that stay in
/// use beside it: those of the global files `memo` remembers, or, when it remembers
/// none, those `staying` returns. A client without a directory has an empty pack. As
/// in [`load_tree_since`], only the files changed since `memo` are compiled, and
/// their rules handed to `keep`; when `memo`'s claims are indexed, the global ids are
/// claimed only should the pack's clash with one.
pub fn load_client_pack(
    dir: &Path,
    client: &str,
    staying: &dyn Fn() -> Taken,
    memo: &Memo,
    keep: &mut dyn FnMut(Vec<CompiledRule>),
) -> Loaded {
    let pack_dir = dir.join(client);
    if client_name_problem(client).is_none() && !pack_dir.exists() {
        return Loaded::default();
    }
    let mut keep = |_: &mut Loaded, rules: Vec<CompiledRule>| keep(rules);
    let remembered = || Taken::of_places(memo.claims(None).into_iter().flatten());
    let claiming = match memo.pack(None) {
        Some(_) => Claiming::since(memo, &remembered),
        None => Claiming::every(staying()),
    };
    match dir.canonicalize() {
        Ok(root) => load_pack_at(&pack_dir, client, Some(&root), claiming, memo, &mut keep),
        Err(source) => Loaded::failed(RuleError::Io { path: dir.to_path_buf(), source }),
    }
}

/// Loads a rule file, or the rule files of a directory (not its subdirectories), as
/// the pack of `client`: a client's draft, whatever directory it sits in.
pub fn load_as_pack(path: &Path, client: &str) -> Loaded {
    load_pack_at(path, client, None, Claiming::every(Taken::default()), &Memo::default(), &mut collect)
}

/// Loads a rule file, or the rule files of directory `path`, as `client`'s pack; the
/// files must resolve inside `root` (by default, the directory itself).
fn load_pack_at(
    path: &Path,
    client: &str,
    root: Option<&Path>,
    mut claiming: Claiming<'_>,
    memo: &Memo,
    keep: Keep<'_>,
) -> Loaded {
    if let Some(problem) = client_name_problem(client) {
        return Loaded::failed(RuleError::Refused {
            path: path.to_path_buf(),
            reason: Refusal::NotAClient(problem),
        });
    }
    if !path.is_dir() {
        return match read_rule_file(path, root) {
            Ok(bytes) => load_pack_each(Some(client), [(path, bytes.as_slice())], &mut claiming, memo, keep),
            Err(error) => Loaded::failed(error),
        };
    }
    match list_dir(path) {
        Ok((files, _, own)) => {
            read_pack(Some(client), &files, root.unwrap_or(&own), &mut claiming, memo, keep)
        }
        Err(error) => Loaded::failed(error),
    }
}

/// Loads every rule of a rules directory (see [`load_tree`]) as one pack.
pub fn load_dir(dir: &Path) -> Loaded {
    load_tree(dir).flatten()
}

/// Lists a directory: its `*.toml` entries and its other subdirectories (packs), each
/// in name order, and the directory's canonical path.
#[allow(clippy::type_complexity)]
fn list_dir(dir: &Path) -> Result<(Vec<PathBuf>, Vec<(String, PathBuf)>, PathBuf), RuleError> {
    let io = |source| RuleError::Io { path: dir.to_path_buf(), source };
    let entries = std::fs::read_dir(dir).map_err(io)?;
    let root = dir.canonicalize().map_err(io)?;
    let mut files = Vec::new();
    let mut packs = Vec::new();
    for path in entries.filter_map(|entry| entry.ok().map(|e| e.path())) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        if name.starts_with('.') {
            continue;
        }
        if path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        } else if path.is_dir() {
            packs.push((name, path));
        }
    }
    files.sort();
    packs.sort();
    Ok((files, packs, root))
}

/// Reads and loads the files of one pack; a file must resolve inside `root`.
fn read_pack(
    client: Option<&str>,
    paths: &[PathBuf],
    root: &Path,
    claiming: &mut Claiming<'_>,
    memo: &Memo,
    keep: Keep<'_>,
) -> Loaded {
    let mut unread = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        match read_rule_file(path, Some(root)) {
            Ok(bytes) => files.push((path.clone(), bytes)),
            Err(error) => unread.push(error),
        }
    }
    let mut pack = load_pack_each(
        client,
        files.iter().map(|(path, bytes)| (path.as_path(), bytes.as_slice())),
        claiming,
        memo,
        keep,
    );
    unread.append(&mut pack.errors);
    pack.errors = unread;
    pack
}

/// Loads a rules directory (see [`load_tree`]), or one rule file (of the global pack).
pub fn load_path(path: &Path) -> Loaded {
    let mut rules = Vec::new();
    let mut loaded = load_path_each(path, &mut |more| rules.extend(more));
    loaded.rules = rules;
    loaded
}

/// As [`load_path`], handing the rules to `keep` a file at a time as they are
/// compiled (the [`Loaded::rules`] returned stay empty): a caller that keeps rules in
/// a compact form of its own never holds all of a large pack compiled at once.
pub fn load_path_each(path: &Path, keep: &mut dyn FnMut(Vec<CompiledRule>)) -> Loaded {
    let mut keep = |_: &mut Loaded, rules: Vec<CompiledRule>| keep(rules);
    if path.is_dir() {
        return load_tree_each(path, &Memo::default(), &mut keep).flatten();
    }
    match read_rule_file(path, None) {
        Ok(bytes) => load_pack_each(
            None,
            [(path, bytes.as_slice())],
            &mut Claiming::every(Taken::default()),
            &Memo::default(),
            &mut keep,
        ),
        Err(error) => Loaded::failed(error),
    }
}

/// The [`Keep`] that keeps rules in their pack's [`Loaded::rules`].
fn collect(pack: &mut Loaded, rules: Vec<CompiledRule>) {
    pack.rules.extend(rules);
}

/// Reads a rule file: a regular file of at most [`MAX_RULE_FILE_BYTES`], not of
/// /proc, and, when `root` (a canonical directory) is given, resolving inside it.
///
/// The file is opened non-blocking, so that a FIFO put in place after the checks
/// cannot hang the caller, and checked again once open.
pub fn read_rule_file(path: &Path, root: Option<&Path>) -> Result<Vec<u8>, RuleError> {
    let io = |source| RuleError::Io { path: path.to_path_buf(), source };
    let refused = |reason| RuleError::Refused { path: path.to_path_buf(), reason };
    let target = path.canonicalize().map_err(io)?;
    if root.is_some_and(|root| !target.starts_with(root)) {
        return Err(refused(Refusal::OutsideDirectory { target }));
    }
    regular(&std::fs::metadata(&target).map_err(io)?).map_err(refused)?;
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC;
    let file =
        File::from(rustix::fs::open(&target, flags, rustix::fs::Mode::empty()).map_err(|e| io(e.into()))?);
    let metadata = file.metadata().map_err(io)?;
    regular(&metadata).map_err(refused)?;
    #[cfg(target_os = "linux")]
    if rustix::fs::fstatfs(&file).map_err(|e| io(e.into()))?.f_type == rustix::fs::PROC_SUPER_MAGIC {
        return Err(refused(Refusal::KernelFile));
    }
    let too_large = || refused(Refusal::TooLarge { limit: MAX_RULE_FILE_BYTES });
    if metadata.len() > MAX_RULE_FILE_BYTES {
        return Err(too_large());
    }
    // Sized from the metadata, one byte over, so that reading to the end of a file
    // that did not grow never reallocates.
    let mut bytes = Vec::with_capacity(metadata.len() as usize + 1);
    file.take(MAX_RULE_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_RULE_FILE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Refuses anything but a regular file, naming what it is.
fn regular(metadata: &Metadata) -> Result<(), Refusal> {
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else {
        "special file"
    };
    Err(Refusal::NotRegularFile(what))
}

/// Loads rule files given as (path, contents) as the global pack, checking ids across
/// all of them.
pub fn load_files<'a>(files: impl IntoIterator<Item = (&'a Path, &'a [u8])>) -> Loaded {
    load_pack(None, files, &mut Taken::default())
}

/// The rule ids in use, where each was defined.
///
/// A rule id is unique among the rules that can match one mention: a client's own
/// rules and the global ones. Two clients may use the same id; tickets, spikes and
/// statistics tell their rules apart by the mention's client.
///
/// Every load claims every id of the packs it reads, a million for a large pack, and
/// a reload claims again those of the files it does not compile: the ids are kept in
/// one string and the claims in hash tables of indexes, rather than a `String` and a
/// `PathBuf` allocated per claim, which made claiming most of a reload's time.
#[derive(Debug, Default, Clone)]
pub struct Taken {
    /// The ids claimed: claim `c`'s is string `c`.
    ids: PackedStrings,
    claims: Vec<Claimed>,
    /// The files claims were made in; claims come a file at a time.
    paths: Vec<PathBuf>,
    /// The clients claims were made for, and their indexes.
    clients: HashMap<String, u32>,
    /// The first claim of each id; the others follow it through [`Claimed::next`].
    by_id: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

/// One id claimed in [`Taken`].
#[derive(Debug, Clone, Copy)]
struct Claimed {
    client: u32,
    path: u32,
    line: usize,
    /// The next claim of the same id (by another client), or [`NO_CLAIM`].
    next: u32,
}

impl Taken {
    /// Returns the ids of `rules`, already in use.
    pub fn of<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> Taken {
        Taken::of_places(
            rules
                .into_iter()
                .map(|rule| (rule.client.as_deref(), rule.id.as_str(), rule.path.as_path(), rule.line)),
        )
    }

    /// Returns the ids in use given as (client, id, file, line) of their rules.
    pub fn of_places<'a>(
        rules: impl IntoIterator<Item = (Option<&'a str>, &'a str, &'a Path, usize)>,
    ) -> Taken {
        let mut taken = Taken::default();
        for (client, id, path, line) in rules {
            taken.claim(client, id, path, line);
        }
        taken
    }

    /// Makes room for `claims` more claims at once: growing the table a claim at a
    /// time rehashes every id claimed so far, reading each from memory again.
    fn reserve(&mut self, claims: usize) {
        let Taken { ids, claims: made, by_id, hasher, .. } = self;
        by_id.reserve(claims, |&c| hasher.hash_one(ids.get(c as usize)));
        made.reserve(claims);
        ids.reserve(claims);
    }

    /// Claims `id` for a rule of `client` defined at `path:line`; returns where it is
    /// defined already when it is taken: by a global rule, by a rule of the same
    /// client, or, for a global rule, by some client's rule.
    ///
    /// One hash lookup per claim: a reload claims a million ids again, and the tables
    /// are too large for the cache, so each lookup is a memory access that counts.
    fn claim(
        &mut self,
        client: Option<&str>,
        id: &str,
        path: &Path,
        line: usize,
    ) -> Option<(PathBuf, usize)> {
        let client = match client {
            None => GLOBAL,
            Some(name) => match self.clients.get(name) {
                Some(&index) => index,
                None => {
                    let index = self.clients.len() as u32;
                    self.clients.insert(name.to_string(), index);
                    index
                }
            },
        };
        let claim = self.claims.len() as u32;
        let Taken { ids, by_id, hasher, .. } = self;
        let same_id = |&c: &u32| ids.get(c as usize) == id;
        let rehash = |&c: &u32| hasher.hash_one(ids.get(c as usize));
        let mut last = match by_id.entry(hasher.hash_one(id), same_id, rehash) {
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                vacant.insert(claim);
                None
            }
            hashbrown::hash_table::Entry::Occupied(first) => Some(*first.get()),
        };
        let mut at = last.unwrap_or(NO_CLAIM);
        while at != NO_CLAIM {
            let earlier = self.claims[at as usize];
            if clash(earlier.client, client) {
                return Some((self.paths[earlier.path as usize].clone(), earlier.line));
            }
            last = Some(at);
            at = earlier.next;
        }
        if let Some(last) = last {
            self.claims[last as usize].next = claim;
        }
        if self.paths.last().is_none_or(|known| known.as_os_str() != path.as_os_str()) {
            self.paths.push(path.to_path_buf());
        }
        self.ids.push(id);
        let path = self.paths.len() as u32 - 1;
        self.claims.push(Claimed { client, path, line, next: NO_CLAIM });
        None
    }
}

/// The id claims of a load so far.
///
/// A load since a memo whose claims are indexed (see [`Memo::index_claims`]) takes a
/// shortcut: it claims only the ids of the files it compiles, and checks each file's
/// ids against the index before claiming them. Should one clash with a claim of a
/// file the load keeps, or of one it has not reached yet, the shortcut ends: every
/// claim of the files before is made, in load order, and the load goes on claiming
/// everything, so that its errors are exactly a full load's. Until then there is
/// nothing for the skipped claims to report: the index holds no clash among the
/// remembered files, and none with the compiled files' ids.
struct Claiming<'m> {
    /// Every claim so far; only the compiled files' while the shortcut lasts. A parsed
    /// file's ids are claimed here directly, once [`Claiming::parsed_again`] has
    /// readied the file.
    taken: Taken,
    /// Returns the claims made before the load, those the shortcut skips too.
    before: &'m dyn Fn() -> Taken,
    shortcut: Option<Shortcut<'m>>,
}

/// What a load on the shortcut of [`Claiming`] needs to leave it.
struct Shortcut<'m> {
    index: &'m ClaimIndex,
    /// Whether each indexed file (by its place in the index) was found compiled (or
    /// unreadable) by the load so far, its claims in the index no longer standing.
    replaced: Vec<bool>,
    /// The files claimed so far, in load order.
    claimed: Vec<ClaimedFile>,
}

/// A file whose claims a load on the shortcut has made or skipped.
enum ClaimedFile {
    /// A file as the memo remembers it: its claims were skipped.
    Remembered(PathBuf, Arc<FileMemo>),
    /// A compiled file's claims, as (client, id, line).
    Compiled(PathBuf, Vec<(Option<String>, String, usize)>),
}

impl<'m> Claiming<'m> {
    /// Claims on top of `taken`, every claim made.
    fn every(taken: Taken) -> Claiming<'m> {
        Claiming { taken, before: &Taken::default, shortcut: None }
    }

    /// Claims for a load since `memo`, after the claims `before` returns, which
    /// must be claims of files `memo` remembers (and which the load does not read):
    /// on the shortcut when `memo`'s claims are indexed, `before` called only should
    /// the shortcut end.
    fn since(memo: &'m Memo, before: &'m dyn Fn() -> Taken) -> Claiming<'m> {
        match memo.claim_index() {
            Some(index) => {
                let shortcut =
                    Shortcut { index, replaced: vec![false; index.file_count()], claimed: Vec::new() };
                Claiming { taken: Taken::default(), before, shortcut: Some(shortcut) }
            }
            None => Claiming { taken: before(), before, shortcut: None },
        }
    }

    /// Claims the ids of `file`, at `path`, as the memo remembers it (skipped on the
    /// shortcut); returns the duplicates, each a claim and where its id was first
    /// claimed.
    fn remembered<'f>(
        &mut self,
        path: &Path,
        file: &'f Arc<FileMemo>,
    ) -> Vec<(ClaimOf<'f>, (PathBuf, usize))> {
        if let Some(shortcut) = &mut self.shortcut {
            shortcut.claimed.push(ClaimedFile::Remembered(path.to_path_buf(), Arc::clone(file)));
            return Vec::new();
        }
        file.claims()
            .filter_map(|claim| {
                let first = self.taken.claim(claim.client, claim.id, path, claim.line)?;
                Some((claim, first))
            })
            .collect()
    }

    /// Readies the claims of a file at `path` that the load parsed again (new,
    /// changed, or with errors of its own), whose rules claim `entries`' ids: its
    /// claims in the index no longer stand, and when one of its ids clashes with a
    /// claim that does (or may yet: a file not reached, or not readable), the shortcut
    /// ends.
    fn parsed_again(&mut self, path: &Path, entries: &[Entry]) {
        let Some(shortcut) = &mut self.shortcut else { return };
        let index = shortcut.index;
        if let Some(at) = index.file(path) {
            shortcut.replaced[at as usize] = true;
        }
        let replaced = &shortcut.replaced;
        let clashes = entries.iter().any(|entry| {
            index.clashing_files(entry.client.as_deref(), &entry.id).any(|file| !replaced[file as usize])
        });
        if clashes {
            self.claim_skipped();
        }
    }

    /// Records the claims of a compiled file at `path`, made, for leaving the
    /// shortcut later.
    fn compiled(&mut self, path: &Path, claims: Vec<(Option<String>, String, usize)>) {
        if let Some(shortcut) = &mut self.shortcut {
            shortcut.claimed.push(ClaimedFile::Compiled(path.to_path_buf(), claims));
        }
    }

    /// Leaves the shortcut: makes every claim of the files so far, in load order.
    /// Nothing is reported: no skipped claim clashes (else the shortcut would have
    /// ended before), and the compiled files' duplicates among themselves were
    /// reported when their claims were made, against the same earlier claims.
    fn claim_skipped(&mut self) {
        let Some(shortcut) = self.shortcut.take() else { return };
        let mut taken = (self.before)();
        taken.reserve(shortcut.index.claim_count() + self.taken.claims.len());
        for file in &shortcut.claimed {
            match file {
                ClaimedFile::Remembered(path, file) => {
                    for claim in file.claims() {
                        taken.claim(claim.client, claim.id, path, claim.line);
                    }
                }
                ClaimedFile::Compiled(path, claims) => {
                    for (client, id, line) in claims {
                        taken.claim(client.as_deref(), id, path, *line);
                    }
                }
            }
        }
        self.taken = taken;
    }
}

/// Loads the rule files of one pack, given as (path, contents): the global pack
/// (`pack` is `None`) or a client's, whose rules are that client's. Ids are checked
/// against `taken`, which gains the pack's.
pub fn load_pack<'a>(
    pack: Option<&str>,
    files: impl IntoIterator<Item = (&'a Path, &'a [u8])>,
    taken: &mut Taken,
) -> Loaded {
    let mut claiming = Claiming::every(std::mem::take(taken));
    let loaded = load_pack_each(pack, files, &mut claiming, &Memo::default(), &mut collect);
    *taken = claiming.taken;
    loaded
}

/// Returns the threads rule files are compiled on: a pool of their own (`None` when
/// its threads cannot be started, a warning logged; files are then compiled on
/// rayon's global pool).
///
/// Not rayon's global pool, which matching runs on: a rayon thread waiting for part
/// of a matching batch takes other jobs of its pool meanwhile, and a file's
/// compilation taken that way (a third of a second for ten thousand rules) would
/// hold the whole batch back, pausing matching during a reload.
fn compile_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("cull-rules-compile-{i}"))
            .build()
            .inspect_err(|e| {
                tracing::warn!(
                    "rule files compile on the threads matching runs on: no pool of their own: {e}"
                )
            })
            .ok()
    })
    .as_ref()
}

/// Runs `work` on the compile pool (see [`compile_pool`]), or where it is called when
/// there is none.
fn compiling<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match compile_pool() {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

/// As [`load_pack`], for a pack last loaded as `memo` remembers, handing each
/// changed file's rules to `keep`.
fn load_pack_each<'a>(
    pack: Option<&str>,
    files: impl IntoIterator<Item = (&'a Path, &'a [u8])>,
    claiming: &mut Claiming<'_>,
    memo: &Memo,
    keep: Keep<'_>,
) -> Loaded {
    let files: Vec<(&Path, &[u8])> = files.into_iter().collect();
    let remembered = memo.pack(pack);
    if claiming.shortcut.is_none() {
        let claims = remembered.map_or(0, |files| files.values().map(|file| file.claim_count()).sum());
        claiming.taken.reserve(claims);
    }
    let mut loaded = Loaded::default();
    // Files are parsed and compiled on every core, a few at a time so that only those
    // are held compiled before `keep` takes them; ids are claimed in file order, so
    // that which of two duplicates is reported does not depend on timing.
    for chunk in files.chunks(compiling(rayon::current_num_threads)) {
        let read: Vec<ReadFile> = compiling(|| {
            chunk
                .par_iter()
                .map(|&(path, bytes)| {
                    let digest = digest(bytes);
                    match remembered.and_then(|files| files.get(path)).filter(|file| file.is(&digest)) {
                        Some(file) => ReadFile::Unchanged(Arc::clone(file)),
                        None => ReadFile::Parsed(parse_file(path, bytes, pack), digest),
                    }
                })
                .collect()
        });
        for (&(path, bytes), read) in chunk.iter().zip(read) {
            match read {
                ReadFile::Unchanged(file) => {
                    loaded.warnings.extend(file.warnings.iter().cloned());
                    for (claim, first) in claiming.remembered(path, &file) {
                        // The bytes are those remembered, which were UTF-8.
                        let source = std::str::from_utf8(bytes).unwrap_or_default();
                        loaded.errors.push(duplicate_id(path, source, claim.id, claim.id_span, first));
                    }
                    loaded.unchanged.push(path.to_path_buf());
                    loaded.memo.insert(pack, path, file);
                }
                ReadFile::Parsed(file, digest) => {
                    claiming.parsed_again(path, &file.entries);
                    let clean = file.errors.is_empty();
                    loaded.errors.extend(file.errors);
                    let Some(source) = file.source else { continue };
                    if clean {
                        let claims = file.entries.iter().map(|entry| ClaimOf {
                            client: entry.client.as_deref(),
                            id: &entry.id,
                            id_span: entry.id_span.clone(),
                            line: entry.line,
                        });
                        if let Some(remembered) = FileMemo::new(digest, claims, file.warnings.clone()) {
                            loaded.memo.insert(pack, path, Arc::new(remembered));
                        }
                    }
                    loaded.warnings.extend(file.warnings);
                    let mut rules = Vec::with_capacity(file.entries.len());
                    let mut claims = Vec::with_capacity(file.entries.len());
                    for entry in file.entries {
                        let first =
                            claiming.taken.claim(entry.client.as_deref(), &entry.id, path, entry.line);
                        match first {
                            Some(first) => loaded.errors.push(duplicate_id(
                                path,
                                source,
                                &entry.id,
                                entry.id_span,
                                first,
                            )),
                            None => rules.extend(entry.rule),
                        }
                        claims.push((entry.client, entry.id, entry.line));
                    }
                    claiming.compiled(path, claims);
                    keep(&mut loaded, rules);
                }
            }
        }
    }
    loaded
}

/// The error of a rule at `path`, `span`, whose id `id` was first defined at `first`.
fn duplicate_id(
    path: &Path,
    source: &str,
    id: &str,
    span: Range<usize>,
    first: (PathBuf, usize),
) -> RuleError {
    let (first_path, first_line) = first;
    let help = format!(
        "first defined at {}:{first_line}; ids must be unique among a client's rules and the global ones",
        first_path.display()
    );
    RuleError::at(path, source, span, format!("duplicate rule id `{id}`")).with_help(Some(help))
}

/// A rule file of a pack as a load found it.
enum ReadFile<'a> {
    /// As the memo remembers it: not parsed again.
    Unchanged(Arc<FileMemo>),
    /// Parsed and compiled, with the digest of its bytes.
    Parsed(ParsedFile<'a>, [u8; 32]),
}

/// One rule file parsed and compiled, before its ids are claimed.
struct ParsedFile<'a> {
    /// The file's text, when it is UTF-8.
    source: Option<&'a str>,
    entries: Vec<Entry>,
    errors: Vec<RuleError>,
    warnings: Vec<Located>,
}

fn parse_file<'a>(path: &Path, bytes: &'a [u8], pack: Option<&str>) -> ParsedFile<'a> {
    let mut file = ParsedFile { source: None, entries: Vec::new(), errors: Vec::new(), warnings: Vec::new() };
    match std::str::from_utf8(bytes) {
        Ok(source) => {
            file.entries = load_source(path, source, pack, &mut file.errors, &mut file.warnings);
            file.source = Some(source);
        }
        Err(e) => {
            let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned();
            let at = valid.len();
            file.errors.push(RuleError::at(path, &valid, at..at, "rule file is not valid UTF-8"));
        }
    }
    file
}

/// A rule of a file, with or without errors: ids are checked for duplicates even
/// when the rules carrying them are broken.
struct Entry {
    id: String,
    id_span: Range<usize>,
    line: usize,
    /// The client the rule is for, as far as it could be told.
    client: Option<String>,
    rule: Option<CompiledRule>,
}

/// One `[[rule]]` table of a file, compiled: its entry when it could be read, and its
/// errors and warnings.
#[derive(Default)]
struct BuiltEntry {
    entry: Option<Entry>,
    errors: Vec<RuleError>,
    warnings: Vec<Located>,
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

/// Loads the rules of one file; errors and warnings are appended.
fn load_source(
    path: &Path,
    source: &str,
    pack: Option<&str>,
    errors: &mut Vec<RuleError>,
    warnings: &mut Vec<Located>,
) -> Vec<Entry> {
    let (table, syntax_errors) = DeTable::parse_recoverable(source);
    let had_syntax_errors = !syntax_errors.is_empty();
    let syntax_error_count = syntax_errors.len();
    for (shown, error) in syntax_errors.into_iter().enumerate() {
        let span = error.span().unwrap_or(0..0);
        if shown == MAX_SYNTAX_ERRORS_SHOWN {
            let message =
                format!("{} more TOML errors in this file", syntax_error_count - MAX_SYNTAX_ERRORS_SHOWN);
            errors.push(
                RuleError::at(path, source, span, message).with_help(Some(
                    "fix the errors above first; this is probably not a rule file".to_string(),
                )),
            );
            break;
        }
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
        // The rules of a file compile on every thread of the pool the file is read on,
        // so that a reload with one changed file of ten thousand rules does not compile
        // them on one core; each rule's findings are kept apart and then appended in
        // file order, as one thread would have.
        let built: Vec<BuiltEntry> = items
            .par_iter()
            .map(|item| {
                let mut built = BuiltEntry::default();
                match RawRule::deserialize(ValueDeserializer::from(item.clone())) {
                    Ok(raw) => {
                        let (id, id_span) = (raw.id.get_ref().clone(), raw.id.span());
                        let line = lines.line(id_span.start);
                        let client =
                            raw.client.as_ref().map(|c| c.get_ref().clone()).or(pack.map(str::to_string));
                        let rule = build_rule(
                            path,
                            source,
                            &lines,
                            raw,
                            pack,
                            &mut built.errors,
                            &mut built.warnings,
                        );
                        built.entry = Some(Entry { id, id_span, line, client, rule });
                    }
                    Err(error) => {
                        let at = error.span().unwrap_or(item.span());
                        built.errors.push(RuleError::at(
                            path,
                            source,
                            at,
                            error.message().trim().to_string(),
                        ));
                    }
                }
                built
            })
            .collect();
        for BuiltEntry { entry, errors: found, warnings: noted } in built {
            rules.extend(entry);
            errors.extend(found);
            warnings.extend(noted);
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
    pack: Option<&str>,
    errors: &mut Vec<RuleError>,
    warnings: &mut Vec<Located>,
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
    if let Some(client) = &raw.client {
        let name = client.get_ref();
        if let Some(problem) = client_name_problem(name) {
            errors.push(located(client.span(), problem));
        } else if let Some(pack) = pack.filter(|pack| pack != name) {
            errors.push(
                located(client.span(), format!("this rule is in client `{pack}`'s pack but says client `{name}`"))
                    .with_help(Some(format!(
                        "a client's rules live in its own directory: move the rule to `{name}/`, or remove `client`"
                    ))),
            );
        }
    }
    let client = raw.client.as_ref().map(|c| c.get_ref().clone()).or(pack.map(str::to_string));
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
    if let Some(spike) = &raw.spike {
        check(SPIKE_PRESETS.contains(&spike.get_ref().as_str()), errors, || {
            located(spike.span(), format!("unknown spike preset `{}`", spike.get_ref()))
                .with_help(Some(format!("presets are {}", SPIKE_PRESETS.join(", "))))
        });
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
        client,
        pack: pack.map(str::to_string),
        escalate_on: raw.escalate_on.as_ref().map(|e| e.get_ref().clone()),
        spike: raw.spike.as_ref().map(|s| s.get_ref().clone()),
        examples,
        path: path.to_path_buf(),
        line,
    };
    let queries: Vec<(QueryKey, &Spanned<String>)> = std::iter::once((QueryKey::Query, &raw.query))
        .chain(raw.exclude.iter().map(|e| (QueryKey::Exclude, e)))
        .chain(raw.escalate_on.iter().map(|e| (QueryKey::EscalateOn, e)))
        .chain(raw.mask.iter().enumerate().map(|(i, m)| (QueryKey::Mask(i), m)))
        .collect();
    // Where the text of a query starts in the file: query spans plus this are file spans.
    let query_start = |key: QueryKey| {
        let value = queries.iter().find(|(k, _)| *k == key).map_or(0..0, |(_, value)| value.span());
        string_content_start(source, &value)
    };
    for (key, value) in &queries {
        let start = query_start(*key);
        for warning in query::lint(value.get_ref()) {
            let span = start + warning.span.start..start + warning.span.end;
            let message = format!("in `{}`: {}", key.name(), warning.message);
            let mut located = Located::at(Severity::Warning, path, source, span, message);
            located.rule = Some(id.clone());
            located.help = Some(warning.help);
            warnings.push(located);
        }
    }
    let compiled = CompiledRule::compile(rule).map_err(|query_errors| {
        for (key, error) in query_errors {
            let start = query_start(key);
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
    fn a_files_rules_and_errors_come_in_file_order_however_many_threads_compile_them() {
        let (mut source, mut ids, mut error_lines, mut line) = (String::new(), Vec::new(), Vec::new(), 1);
        for i in 0..600 {
            let (id, query) = match (i % 7, i % 11) {
                (0, _) => (format!("'r{i}'"), "'titel:x'"),
                (_, 0) => (i.to_string(), "'slack'"),
                _ => (format!("'r{i}'"), "'slack OR zoom'"),
            };
            source.push_str(&format!("[[rule]]\nid = {id}\nquery = {query}\n\n"));
            match (i % 7, i % 11) {
                (0, _) => error_lines.push(line + 2),
                (_, 0) => error_lines.push(line + 1),
                _ => ids.push(format!("r{i}")),
            }
            line += 4;
        }
        let loaded = load(&[("rules/big.toml", &source)]);
        let loaded_ids: Vec<&str> = loaded.rules.iter().map(|rule| rule.rule.id.as_str()).collect();
        assert_eq!(loaded_ids, ids);
        let reported: Vec<usize> = messages(&loaded)
            .iter()
            .map(|message| {
                let place = message.split("--> rules/big.toml:").nth(1).expect("a place");
                place.split(':').next().and_then(|line| line.parse().ok()).expect("a line")
            })
            .collect();
        assert_eq!(reported, error_lines, "one error per broken rule, in file order");
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
    fn crisis_words_compile_as_clauses_and_bad_ones_or_a_bad_spike_preset_are_located() {
        let good = "[[rule]]\nid = 'r'\nquery = 'slack'\nescalate_on = '\"food poisoning\" OR lawsuit'\nspike = 'fewer'\n";
        let loaded = load(&[("r.toml", good)]);
        assert!(loaded.errors.is_empty(), "{:?}", messages(&loaded));
        let clauses: Vec<&str> = loaded.rules[0].escalate_on.iter().map(|c| c.source.as_str()).collect();
        assert_eq!(clauses, ["\"food poisoning\"", "lawsuit"]);
        assert_eq!(loaded.rules[0].rule.spike.as_deref(), Some("fewer"));
        let bad = "[[rule]]\nid = 'r'\nquery = 'slack'\nescalate_on = 'outage AND ('\nspike = 'loud'\n";
        let all = messages(&load(&[("r.toml", bad)])).join("\n\n");
        assert!(all.contains("in `escalate_on`") && all.contains("r.toml:4:"), "{all}");
        assert!(all.contains("unknown spike preset `loud`") && all.contains("r.toml:5:9"), "{all}");
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

    #[test]
    fn suspicious_queries_load_with_warnings_located_in_the_file() {
        let text = "[[rule]]\nid = 'amazon'\nquery = 'amazon and (prime or alexa)'\nexclude = 'a NEAR3 b'\nmask = ['ok', '“slack”']\n";
        let loaded = load(&[("rules/a.toml", text)]);
        assert!(loaded.errors.is_empty(), "{:?}", messages(&loaded));
        assert_eq!(loaded.rules.len(), 1, "warnings never keep a rule from loading");
        let all: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(all.len(), 4, "{all:#?}");
        assert_eq!(
            all[0],
            "warning: in `query`: `and` is searched as a word, not as the operator AND\n --> rules/a.toml:3:17 (rule `amazon`)\n  |\n3 | query = 'amazon and (prime or alexa)'\n  |                 ^^^\n  = help: operators are uppercase: write `AND`; to search for the word, quote it: `\"and\"`"
        );
        assert!(
            all[1].contains("`or` is searched as a word") && all[1].contains("rules/a.toml:3:28"),
            "{}",
            all[1]
        );
        assert!(
            all[2].contains("in `exclude`: `NEAR3`") && all[2].contains("rules/a.toml:4:14"),
            "{}",
            all[2]
        );
        assert!(
            all[3].contains("in `mask[1]`: smart quotes") && all[3].contains("rules/a.toml:5:16"),
            "{}",
            all[3]
        );
        assert!(all[3].contains("\n  |                ^^^^^^^\n"), "{}", all[3]);
    }

    #[test]
    fn an_unknown_field_suggests_the_nearest_field_or_quoting() {
        let loaded = load(&[("f.toml", "[[rule]]\nid = 'f'\nquery = 'titel:slack OR nasdaq:work'\n")]);
        let all = messages(&loaded).join("\n");
        assert!(all.contains("help: did you mean `title:`?"), "{all}");
        let loaded = load(&[("g.toml", "[[rule]]\nid = 'g'\nquery = 'slack nasdaq:work'\n")]);
        let all = messages(&loaded).join("\n");
        assert!(
            all.contains(
                "help: `nasdaq:` is read as a field; to search for the text, quote it: `\"nasdaq:work\"`"
            ),
            "{all}"
        );
    }

    #[test]
    fn errors_of_a_file_of_one_long_line_show_a_bounded_excerpt() {
        let long_query = format!("[[rule]]\nid = 'a'\nquery = '{}' = x\n", "slack ".repeat(100_000 / 6));
        let long_key = format!("{} = 1\n", "k".repeat(100_000));
        let long_id = format!("[[rule]]\nid = '{}'\nquery = 'x'\n", "\u{1b}[31mX".repeat(100_000 / 6));
        let loaded = load(&[("query.toml", &long_query), ("key.toml", &long_key), ("id.toml", &long_id)]);
        let shown = messages(&loaded);
        assert_eq!(loaded.errors.len(), 2 + MAX_SYNTAX_ERRORS_SHOWN + 1, "{shown:?}");
        assert!(shown.last().unwrap().contains("more TOML errors in this file"), "{shown:?}");
        for error in messages(&loaded) {
            assert!(!error.contains('\u{1b}'), "control characters are escaped: {error:?}");
            assert!(
                error.len() < 2 * crate::error::MAX_EXCERPT_CHARS + 300,
                "{} bytes: {error}",
                error.len()
            );
        }
    }

    const RULE: &str = "[[rule]]\nid = 'a'\nquery = 'a'\n";

    fn refusal(loaded: &Loaded) -> &Refusal {
        match &loaded.errors[..] {
            [RuleError::Refused { reason, .. }] => reason,
            other => panic!("expected one refusal, got {other:?}"),
        }
    }

    #[test]
    fn links_out_of_the_rules_directory_are_refused_without_reading_them() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("elsewhere.toml"), RULE).unwrap();
        for target in
            [Path::new("/proc/self/environ"), Path::new("/dev/zero"), &outside.path().join("elsewhere.toml")]
        {
            let dir = tempfile::tempdir().unwrap();
            std::os::unix::fs::symlink(target, dir.path().join("x.toml")).unwrap();
            let loaded = load_dir(dir.path());
            assert!(
                matches!(refusal(&loaded), Refusal::OutsideDirectory { .. }),
                "{target:?}: {:?}",
                loaded.errors
            );
            let shown = loaded.errors[0].to_string();
            assert!(shown.contains("x.toml") && shown.contains("outside the rules directory"), "{shown}");
        }
    }

    #[test]
    fn a_configmap_layout_of_links_inside_the_directory_loads() {
        let dir = tempfile::tempdir().unwrap();
        let version = dir.path().join("..2026_12_01_00_00_00.123");
        std::fs::create_dir(&version).unwrap();
        std::fs::write(version.join("x.toml"), RULE).unwrap();
        std::os::unix::fs::symlink("..2026_12_01_00_00_00.123", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/x.toml", dir.path().join("x.toml")).unwrap();
        let loaded = load_dir(dir.path());
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.rules.len(), 1);
    }

    #[test]
    fn special_and_oversized_files_are_refused() {
        assert!(matches!(
            load_path(Path::new("/proc/self/environ")).errors[..],
            [RuleError::Refused { reason: Refusal::KernelFile, .. }]
        ));
        assert!(matches!(
            load_path(Path::new("/dev/zero")).errors[..],
            [RuleError::Refused { reason: Refusal::NotRegularFile("character device"), .. }]
        ));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub.toml")).unwrap();
        let big = std::fs::File::create(dir.path().join("big.toml")).unwrap();
        big.set_len(MAX_RULE_FILE_BYTES + 1).unwrap();
        let loaded = load_dir(dir.path());
        let shown: Vec<String> = messages(&loaded);
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].contains("big.toml: it is larger than the limit of 4194304 bytes"), "{shown:?}");
        assert!(shown[1].contains("sub.toml: it is not a regular file but a directory"), "{shown:?}");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("x.toml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let (sender, receiver) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        std::thread::spawn(move || {
            sender.send(load_dir(&path).errors.into_iter().map(|e| e.to_string()).collect::<Vec<_>>())
        });
        // Generous: only a hang takes this long.
        let errors = receiver.recv_timeout(std::time::Duration::from_secs(30)).expect("loading a FIFO hangs");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("x.toml: it is not a regular file but a FIFO"), "{errors:?}");
    }

    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Tree) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let tree = load_tree(dir.path());
        (dir, tree)
    }

    #[test]
    fn a_subdirectory_is_its_clients_pack_and_two_clients_may_share_an_id() {
        let (_dir, tree) = tree(&[
            ("global.toml", "[[rule]]\nid = 'slack'\nquery = 'slack'\n"),
            ("acme/brand.toml", "[[rule]]\nid = 'brand'\nquery = 'acme'\n"),
            ("globex/brand.toml", "[[rule]]\nid = 'brand'\nquery = 'globex'\nclient = 'globex'\n"),
            ("..data/ignored.toml", "not toml at all"),
        ]);
        assert!(tree.global.errors.is_empty(), "{:?}", tree.global.errors);
        assert_eq!(tree.global.rules[0].rule.client, None);
        for client in ["acme", "globex"] {
            let pack = &tree.clients[client];
            assert!(pack.errors.is_empty(), "{client}: {:?}", pack.errors);
            let rule = &pack.rules[0].rule;
            assert_eq!(
                (rule.id.as_str(), rule.client.as_deref(), rule.pack.as_deref()),
                ("brand", Some(client), Some(client))
            );
        }
        assert_eq!(tree.flatten().rules.len(), 3);
    }

    #[test]
    fn a_pack_may_not_take_a_global_id_nor_speak_for_another_client() {
        let (_dir, tree) = tree(&[
            ("global.toml", "[[rule]]\nid = 'slack'\nquery = 'slack'\n\n[[rule]]\nid = 'legacy'\nquery = 'x'\nclient = 'acme'\n"),
            ("acme/a.toml", "[[rule]]\nid = 'slack'\nquery = 'slack'\n\n[[rule]]\nid = 'legacy'\nquery = 'y'\n\n[[rule]]\nid = 'mine'\nquery = 'z'\nclient = 'globex'\n"),
            ("Bad Name/a.toml", "[[rule]]\nid = 'x'\nquery = 'x'\n"),
        ]);
        let acme: Vec<String> = tree.clients["acme"].errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(acme.len(), 3, "{acme:#?}");
        let has = |text: &str| acme.iter().any(|e| e.contains(text));
        assert!(
            has("duplicate rule id `slack`") && has("first defined at") && has("global.toml:2"),
            "{acme:#?}"
        );
        assert!(
            has("duplicate rule id `legacy`"),
            "a rule naming acme in a global file is acme's: {acme:#?}"
        );
        assert!(has("in client `acme`'s pack but says client `globex`"), "{acme:#?}");
        let global: Vec<String> = tree.global.errors.iter().map(|e| e.to_string()).collect();
        assert!(
            global.iter().any(|e| e.contains("Bad Name") && e.contains("is not a client name")),
            "{global:?}"
        );
        assert_eq!(
            tree.global.rules.iter().map(|r| r.rule.client.clone()).collect::<Vec<_>>(),
            [None, Some("acme".into())]
        );
    }

    #[test]
    fn a_client_pack_reloads_alone_against_the_ids_that_stay() {
        let (dir, tree) = tree(&[
            ("global.toml", "[[rule]]\nid = 'slack'\nquery = 'slack'\n"),
            (
                "acme/a.toml",
                "[[rule]]\nid = 'slack'\nquery = 'slack'\n\n[[rule]]\nid = 'brand'\nquery = 'acme'\n",
            ),
            ("globex/g.toml", "broken = ["),
        ]);
        let staying = Taken::of(tree.global.rules.iter().map(|r| &r.rule));
        let client_pack = |client: &str, taken: Taken| {
            let mut rules = Vec::new();
            let staying = || taken.clone();
            let loaded = load_client_pack(dir.path(), client, &staying, &Memo::default(), &mut |more| {
                rules.extend(more)
            });
            (loaded, rules)
        };
        let (pack, rules) = client_pack("acme", staying);
        assert_eq!(pack.errors.len(), 1, "{:?}", pack.errors);
        assert!(pack.errors[0].to_string().contains("duplicate rule id `slack`"));
        assert_eq!(rules[0].rule.client.as_deref(), Some("acme"), "globex's broken file is not read");
        assert!(client_pack("initech", Taken::default()).1.is_empty());
        assert!(!client_pack("../acme", Taken::default()).0.errors.is_empty());
    }

    /// Loads `dir` again since `memo`, returning the findings and the ids of the
    /// rules compiled again.
    fn since(dir: &Path, memo: &Memo) -> (Loaded, Vec<String>) {
        let mut compiled = Vec::new();
        let tree =
            load_tree_since(dir, memo, &mut |rules| compiled.extend(rules.into_iter().map(|r| r.rule.id)));
        (tree.flatten(), compiled)
    }

    fn rendered(findings: &[impl ToString]) -> Vec<String> {
        findings.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_load_since_a_memo_compiles_only_the_changed_files_and_finds_what_a_full_load_finds() {
        let (dir, first) = tree(&[
            ("a.toml", "[[rule]]\nid = 'a'\nquery = 'alpha'\n"),
            ("b.toml", "[[rule]]\nid = 'b'\nquery = 'beta'\n\n[[rule]]\nid = 'shared'\nquery = 'gamma'\n"),
            ("c.toml", "[[rule]]\nid = 'c'\nquery = 'sea and sun'\n"),
            ("acme/x.toml", "[[rule]]\nid = 'x'\nquery = 'acme'\n"),
        ]);
        let memo = first.flatten().memo;
        assert_eq!(memo.files(), 4);
        assert!(
            !rendered(&load_tree(dir.path()).flatten().warnings).is_empty(),
            "c.toml warns of a lowercase operator"
        );

        let (again, compiled) = since(dir.path(), &memo);
        assert!(compiled.is_empty(), "nothing changed, nothing compiled: {compiled:?}");
        assert_eq!(again.unchanged.len(), 4);
        assert_eq!(rendered(&again.warnings), rendered(&load_tree(dir.path()).flatten().warnings));

        // A changed file is compiled again; a new one that takes an id of an unchanged
        // file is refused with the error a full load gives, placed at the same rule.
        std::fs::write(dir.path().join("a.toml"), "[[rule]]\nid = 'a'\nquery = 'alpha OR delta'\n")
            .expect("a");
        std::fs::write(dir.path().join("0.toml"), "[[rule]]\nid = 'shared'\nquery = 'zeta'\n").expect("0");
        let (changed, compiled) = since(dir.path(), &memo);
        assert_eq!(compiled, ["shared", "a"]);
        let full = load_tree(dir.path()).flatten();
        assert_eq!(rendered(&changed.errors), rendered(&full.errors));
        assert!(rendered(&changed.errors)[0].contains("b.toml"), "{:?}", rendered(&changed.errors));
        assert_eq!(rendered(&changed.warnings), rendered(&full.warnings));
        let mut unchanged = changed.unchanged.clone();
        unchanged.sort();
        assert_eq!(
            unchanged,
            [dir.path().join("acme/x.toml"), dir.path().join("b.toml"), dir.path().join("c.toml")]
        );

        // A file with errors is never remembered, so its errors are told every time.
        std::fs::write(dir.path().join("0.toml"), "[[rule]]\nid = 'zero'\nquery = 'zeta AND'\n").expect("0");
        let (broken, _) = since(dir.path(), &memo);
        assert_eq!(broken.errors.len(), 1, "{:?}", rendered(&broken.errors));
        let (broken_again, _) = since(dir.path(), &broken.memo);
        assert_eq!(rendered(&broken_again.errors), rendered(&broken.errors));
        assert_eq!(broken.memo.files(), 4, "every file but the broken one is remembered");
    }

    #[test]
    fn a_load_since_an_indexed_memo_claims_everything_only_once_an_id_clashes() {
        let (dir, first) = tree(&[
            ("a.toml", "[[rule]]\nid = 'a'\nquery = 'alpha'\n"),
            (
                "b.toml",
                "[[rule]]\nid = 'b'\nquery = 'beta'\n\n[[rule]]\nid = 'z'\nquery = 'zed'\nclient = 'zen'\n",
            ),
            ("acme/x.toml", "[[rule]]\nid = 'x'\nquery = 'acme'\n"),
        ]);
        let memo = first.flatten().memo;
        assert!(
            Claiming::since(&memo, &Taken::default).shortcut.is_none(),
            "a memo is not indexed until asked"
        );
        memo.index_claims();
        let entry = |id: &str, client: Option<&str>| Entry {
            id: id.to_string(),
            id_span: 0..0,
            line: 1,
            client: client.map(str::to_string),
            rule: None,
        };
        let path = |name: &str| dir.path().join(name);
        let mut claiming = Claiming::since(&memo, &Taken::default);
        claiming.parsed_again(&path("a.toml"), &[entry("a", None), entry("new", None)]);
        claiming.parsed_again(&path("0.toml"), &[entry("x", Some("zen")), entry("z", Some("acme"))]);
        assert!(
            claiming.shortcut.is_some(),
            "a recompiled file's own ids, new ids and another client's ids do not clash"
        );
        assert_eq!(claiming.taken.claim(None, "new", &path("a.toml"), 3), None);
        claiming.compiled(&path("a.toml"), vec![(None, "new".to_string(), 3)]);
        assert!(claiming.remembered(&path("b.toml"), &memo.pack(None).unwrap()[&path("b.toml")]).is_empty());
        claiming.parsed_again(&path("acme/y.toml"), &[entry("x", Some("acme"))]);
        assert!(claiming.shortcut.is_none(), "acme's `x` of x.toml, not reached yet, clashes");
        assert_eq!(
            claiming.taken.claim(None, "b", &path("c.toml"), 1),
            Some((path("b.toml"), 2)),
            "the claims skipped are made once the shortcut ends"
        );
        assert_eq!(claiming.taken.claim(None, "new", &path("c.toml"), 1), Some((path("a.toml"), 3)));
        assert_eq!(
            claiming.taken.claim(None, "a", &path("c.toml"), 1),
            None,
            "a.toml's old claims do not stand"
        );

        let (_dir, refused) = tree(&[
            ("a.toml", "[[rule]]\nid = 'a'\nquery = 'alpha'\n"),
            ("b.toml", "[[rule]]\nid = 'a'\nquery = 'beta'\n"),
        ]);
        let clashing = refused.flatten().memo;
        clashing.index_claims();
        assert!(
            Claiming::since(&clashing, &Taken::default).shortcut.is_none(),
            "no shortcut from claims that clash already"
        );
    }

    /// The rule files [`a_load_since_an_indexed_memo_finds_what_a_full_load_finds`]
    /// edits.
    const EDITED: [&str; 6] = ["a.toml", "b.toml", "c.toml", "acme/a.toml", "acme/b.toml", "zen/a.toml"];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever the edits (an id moved between files, taken from a kept file
        /// before or after, reused from a deleted one, clashing across packs or not, in
        /// a file that is broken), a load since an indexed memo finds what one since the
        /// memo without its index finds and what a full load finds; and so does a
        /// client's pack loaded alone.
        #[test]
        fn a_load_since_an_indexed_memo_finds_what_a_full_load_finds(
            edits in proptest::collection::vec(
                (0..EDITED.len(), proptest::option::of(proptest::collection::vec((0..14usize, 0..3usize, proptest::bool::weighted(0.1)), 1..4))),
                1..4,
            )
        ) {
            // Before the edits every id is unique: file `f` has ids `r{2f}` and `r{2f+1}`,
            // one of c.toml's for client zen.
            let dir = tempfile::tempdir().unwrap();
            let write = |name: &str, rules: &[(usize, usize, bool)]| {
                let global = !name.contains('/');
                let text: String = rules
                    .iter()
                    .map(|&(id, client, broken)| {
                        let client = match client {
                            1 if global => "client = 'acme'\n",
                            2 if global => "client = 'zen'\n",
                            _ => "",
                        };
                        let query = if broken { "word AND" } else { "word" };
                        format!("[[rule]]\nid = 'r{id}'\nquery = '{query}'\n{client}\n")
                    })
                    .collect();
                let path = dir.path().join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            };
            for (f, name) in EDITED.iter().enumerate() {
                let client = usize::from(*name == "c.toml") * 2;
                write(name, &[(2 * f, 0, false), (2 * f + 1, client, false)]);
            }
            let indexed = load_tree(dir.path()).flatten();
            proptest::prop_assert!(indexed.errors.is_empty(), "{:?}", rendered(&indexed.errors));
            indexed.memo.index_claims();
            proptest::prop_assert!(Claiming::since(&indexed.memo, &Taken::default).shortcut.is_some());
            let plain = load_tree(dir.path()).flatten().memo;
            for (file, rules) in &edits {
                match rules {
                    Some(rules) => write(EDITED[*file], rules),
                    None => {
                        let _ = std::fs::remove_file(dir.path().join(EDITED[*file]));
                    }
                }
            }
            let (fast, fast_compiled) = since(dir.path(), &indexed.memo);
            let (slow, slow_compiled) = since(dir.path(), &plain);
            let full = load_tree(dir.path()).flatten();
            proptest::prop_assert_eq!(rendered(&fast.errors), rendered(&slow.errors));
            proptest::prop_assert_eq!(rendered(&fast.errors), rendered(&full.errors));
            proptest::prop_assert_eq!(rendered(&fast.warnings), rendered(&slow.warnings));
            proptest::prop_assert_eq!(fast_compiled, slow_compiled);
            proptest::prop_assert_eq!(fast.unchanged, slow.unchanged);
            proptest::prop_assert_eq!(fast.memo.files(), slow.memo.files());
            // A client's pack reloaded alone, against the global ids remembered.
            for client in ["acme", "zen"] {
                let pack = |memo: &Memo| {
                    let mut compiled = Vec::new();
                    let keep = &mut |rules: Vec<CompiledRule>| compiled.extend(rules.into_iter().map(|r| r.rule.id));
                    let loaded = load_client_pack(dir.path(), client, &Taken::default, memo, keep);
                    (rendered(&loaded.errors), rendered(&loaded.warnings), loaded.unchanged, compiled)
                };
                proptest::prop_assert_eq!(pack(&indexed.memo), pack(&plain));
            }
        }
    }

    proptest::proptest! {
        /// Claims answer as the plain rule says: a global id conflicts with any
        /// earlier claim of it, a client's with an earlier global claim or the same
        /// client's, and the answer is where the first conflicting claim was made.
        #[test]
        fn claims_answer_as_the_rule_says(claims in proptest::collection::vec((0..3usize, 0..6usize, 0..3usize), 0..60)) {
            let clients = [None, Some("acme"), Some("globex")];
            let mut taken = Taken::default();
            let mut made: Vec<(Option<&str>, String, PathBuf, usize)> = Vec::new();
            for (line, &(client, id, file)) in claims.iter().enumerate() {
                let (client, id, path) = (clients[client], format!("id{id}"), PathBuf::from(format!("f{file}.toml")));
                let conflict = |(other, other_id, _, _): &&(Option<&str>, String, PathBuf, usize)| {
                    *other_id == id && (other.is_none() || client.is_none() || *other == client)
                };
                let expected = made.iter().find(conflict).map(|(_, _, path, line)| (path.clone(), *line));
                proptest::prop_assert_eq!(taken.claim(client, &id, &path, line), expected.clone());
                if expected.is_none() {
                    made.push((client, id, path, line));
                }
            }
        }
    }
}
