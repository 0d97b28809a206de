//! What a load remembers of the rule files it read, so that loading the same packs
//! again compiles only the files that changed.
//!
//! A pack of a million rules takes seconds to parse and compile; an operator who
//! changes one file of it expects the change to be live in well under a second. A
//! file whose bytes are what they were when its rules were last taken is therefore
//! not parsed again: its rules stay as they are in use, its ids are claimed again
//! from the memo (a changed file may now duplicate one of them, and the error must
//! be the one a full load reports), and its warnings are repeated, so that a reload
//! answers exactly what loading everything afresh would.
//!
//! Only files without errors of their own are remembered: a file with errors is read
//! again every time, so that its errors are reported every time.
//!
//! Claiming the ids of the unchanged files again is most of a reload of a large pack
//! (a third of a second for a million rules). A memo can therefore index its claims
//! ([`Memo::index_claims`], off the reload's path, once the memo is the running one):
//! a load since an indexed memo claims only the changed files' ids, and checks them
//! against the index; only when one of them clashes with an id of a file it keeps does
//! it claim everything again, so that its errors are those of a full load.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use cull_model::PackedStrings;
use hashbrown::{DefaultHashBuilder, HashTable};
use sha2::{Digest, Sha256};

use crate::error::Located;

/// The rule files of each pack as they were when their rules were taken, by pack
/// (`None`: the global files) and file path.
#[derive(Debug, Default, Clone)]
pub struct Memo {
    packs: BTreeMap<Option<String>, BTreeMap<PathBuf, Arc<FileMemo>>>,
    /// The index of the remembered files' claims, once built; shared by the memo's
    /// clones (a clone handed to a background thread builds it for the original), and
    /// replaced by an empty one whenever the files remembered change.
    index: Arc<OnceLock<ClaimIndex>>,
}

impl Memo {
    /// Returns what is remembered of `pack`'s files.
    pub(crate) fn pack(&self, pack: Option<&str>) -> Option<&BTreeMap<PathBuf, Arc<FileMemo>>> {
        self.packs.get(&pack.map(str::to_string))
    }

    /// Remembers `file` of `pack`.
    pub(crate) fn insert(&mut self, pack: Option<&str>, path: &Path, file: Arc<FileMemo>) {
        self.index = Arc::default();
        self.packs.entry(pack.map(str::to_string)).or_default().insert(path.to_path_buf(), file);
    }

    /// Replaces what is remembered of `pack` with what `loaded` (the memo of a load
    /// of that pack) remembers of it: the pack's new rules were taken.
    pub fn take_pack(&mut self, pack: Option<&str>, loaded: &Memo) {
        self.index = Arc::default();
        let key = pack.map(str::to_string);
        match loaded.packs.get(&key) {
            Some(files) => self.packs.insert(key, files.clone()),
            None => self.packs.remove(&key),
        };
    }

    /// Adds everything `other` remembers.
    pub fn extend(&mut self, other: Memo) {
        self.index = Arc::default();
        for (pack, files) in other.packs {
            self.packs.entry(pack).or_default().extend(files);
        }
    }

    /// Returns the id claims of `pack`'s files as (client, id, file, line), files in
    /// name order; `None` when nothing is remembered of the pack.
    pub fn claims(
        &self,
        pack: Option<&str>,
    ) -> Option<impl Iterator<Item = (Option<&str>, &str, &Path, usize)>> {
        let files = self.pack(pack)?;
        Some(files.iter().flat_map(|(path, file)| {
            file.claims().map(move |claim| (claim.client, claim.id, path.as_path(), claim.line))
        }))
    }

    /// Returns the number of files remembered.
    pub fn files(&self) -> usize {
        self.packs.values().map(BTreeMap::len).sum()
    }

    /// Indexes the claims of the remembered files, unless they are already, so that
    /// the next load since this memo claims only the changed files' ids (see the
    /// module's documentation).
    ///
    /// A tenth to a third of a second for a million rules: call it where that time
    /// does not hold anything up, such as a background thread once the rules loaded
    /// with this memo are in use. A load never builds the index itself.
    pub fn index_claims(&self) {
        self.index.get_or_init(|| ClaimIndex::of(self));
    }

    /// Returns the index of the remembered files' claims, when it is built and the
    /// claims do not clash (a pack that was refused for a duplicate id keeps its
    /// running files, which may clash with a pack that was taken).
    pub(crate) fn claim_index(&self) -> Option<&ClaimIndex> {
        self.index.get().filter(|index| !index.clashes)
    }
}

/// The client of a claim made for every client (a global rule's) in a [`ClaimIndex`]
/// and in the loader's table of claims.
pub(crate) const GLOBAL: u32 = u32::MAX;
/// Ends a list of claims of one id, in a [`ClaimIndex`] and in the loader's table.
pub(crate) const NO_CLAIM: u32 = u32::MAX;

/// True when claims of one id by clients `a` and `b` (indexes, or [`GLOBAL`]) clash:
/// a rule id is unique among a client's rules and the global ones.
pub(crate) fn clash(a: u32, b: u32) -> bool {
    a == GLOBAL || b == GLOBAL || a == b
}

/// Every id claim of a memo's files, by id: which files claim an id, and for which
/// client.
///
/// The ids are not copied: a claim names its file and its place there, and the id is
/// read from the file's memo, so that the index of a million claims is 16 bytes a
/// claim and the hash table.
#[derive(Debug)]
pub(crate) struct ClaimIndex {
    /// The files indexed, in load order; a claim's file indexes this.
    files: Vec<Arc<FileMemo>>,
    /// Each indexed file's place in [`ClaimIndex::files`], by path.
    by_path: HashMap<PathBuf, u32>,
    claims: Vec<IndexedClaim>,
    /// The first claim of each id; the others follow it through [`IndexedClaim::next`].
    by_id: HashTable<u32>,
    /// The clients claims are made for, and their indexes.
    clients: HashMap<String, u32>,
    hasher: DefaultHashBuilder,
    /// True when two indexed claims clash.
    clashes: bool,
}

/// One claim of a [`ClaimIndex`].
#[derive(Debug, Clone, Copy)]
struct IndexedClaim {
    file: u32,
    /// The claim's place among its file's claims.
    claim: u32,
    /// An index of [`ClaimIndex::clients`], or [`GLOBAL`].
    client: u32,
    /// The next claim of the same id, or [`NO_CLAIM`].
    next: u32,
}

impl ClaimIndex {
    /// Indexes the claims of `memo`'s files.
    fn of(memo: &Memo) -> ClaimIndex {
        let count = memo.packs.values().flat_map(BTreeMap::values).map(|file| file.claim_count()).sum();
        let mut index = ClaimIndex {
            files: Vec::new(),
            by_path: HashMap::new(),
            claims: Vec::with_capacity(count),
            by_id: HashTable::with_capacity(count),
            clients: HashMap::new(),
            hasher: DefaultHashBuilder::default(),
            clashes: false,
        };
        for (path, file) in memo.packs.values().flat_map(BTreeMap::iter) {
            let at = index.files.len() as u32;
            index.by_path.insert(path.clone(), at);
            index.files.push(Arc::clone(file));
            index.add(at);
        }
        index
    }

    /// Adds the claims of file `at` of [`ClaimIndex::files`].
    fn add(&mut self, at: u32) {
        let file = Arc::clone(&self.files[at as usize]);
        let clients: Vec<u32> = file.clients.iter().map(|name| self.client(name)).collect();
        for (place, claim) in file.claims.iter().enumerate() {
            let client = (claim.client as usize).checked_sub(1).map_or(GLOBAL, |i| clients[i]);
            let id = file.ids.get(place);
            let new = self.claims.len() as u32;
            let ClaimIndex { files, claims, by_id, hasher, .. } = self;
            let id_of = |c: &u32| {
                let claim = claims[*c as usize];
                files[claim.file as usize].ids.get(claim.claim as usize)
            };
            let first =
                match by_id.entry(hasher.hash_one(id), |c| id_of(c) == id, |c| hasher.hash_one(id_of(c))) {
                    hashbrown::hash_table::Entry::Vacant(vacant) => {
                        vacant.insert(new);
                        None
                    }
                    hashbrown::hash_table::Entry::Occupied(first) => Some(*first.get()),
                };
            if let Some(mut link) = first {
                loop {
                    let earlier = &mut self.claims[link as usize];
                    self.clashes |= clash(earlier.client, client);
                    if earlier.next == NO_CLAIM {
                        earlier.next = new;
                        break;
                    }
                    link = earlier.next;
                }
            }
            self.claims.push(IndexedClaim { file: at, claim: place as u32, client, next: NO_CLAIM });
        }
    }

    /// Returns the index of client `name`, adding it when it is new.
    fn client(&mut self, name: &str) -> u32 {
        let next = self.clients.len() as u32;
        *self.clients.entry(name.to_string()).or_insert(next)
    }

    /// Returns the place of the file at `path` in the index, when it is indexed.
    pub(crate) fn file(&self, path: &Path) -> Option<u32> {
        self.by_path.get(path).copied()
    }

    /// Returns the number of files indexed.
    pub(crate) fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Returns the total number of claims indexed.
    pub(crate) fn claim_count(&self) -> usize {
        self.claims.len()
    }

    /// Returns the files (places in the index) whose claims of `id` clash with a claim
    /// of it for `client` (`None`: a global rule).
    pub(crate) fn clashing_files(&self, client: Option<&str>, id: &str) -> impl Iterator<Item = u32> + '_ {
        let client = match client {
            None => Some(GLOBAL),
            // A client the index does not know clashes only with global claims.
            Some(name) => self.clients.get(name).copied(),
        };
        let id_of = |c: &u32| {
            let claim = self.claims[*c as usize];
            self.files[claim.file as usize].ids.get(claim.claim as usize)
        };
        let first = self.by_id.find(self.hasher.hash_one(id), |c| id_of(c) == id).copied();
        std::iter::successors(first, |&at| Some(self.claims[at as usize].next).filter(|&n| n != NO_CLAIM))
            .map(|at| self.claims[at as usize])
            .filter(move |claim| match client {
                Some(client) => clash(claim.client, client),
                None => claim.client == GLOBAL,
            })
            .map(|claim| claim.file)
    }
}

/// One rule file as it was read: its digest, the ids its rules claim and its
/// warnings.
#[derive(Debug)]
pub(crate) struct FileMemo {
    digest: [u8; 32],
    /// The ids of the file's rules: claim `c`'s is string `c`.
    ids: PackedStrings,
    claims: Vec<Claim>,
    /// The clients rules name (`client = "..."` in a global file), which
    /// [`Claim::client`] indexes.
    clients: Vec<String>,
    pub(crate) warnings: Vec<Located>,
}

/// One rule's id claim, kept in 16 bytes besides the id so that a memo of a million
/// rules stays small beside the rules themselves.
#[derive(Debug, Clone, Copy)]
struct Claim {
    id_span: (u32, u32),
    line: u32,
    /// 0 for no client, else 1 + an index of [`FileMemo::clients`].
    client: u32,
}

/// One id claim of a remembered file, as the loader claims it.
pub(crate) struct ClaimOf<'a> {
    pub(crate) client: Option<&'a str>,
    pub(crate) id: &'a str,
    pub(crate) id_span: Range<usize>,
    pub(crate) line: usize,
}

/// Returns the digest a file's bytes are remembered by.
pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl FileMemo {
    /// Returns the memo of a file with digest `digest`, whose rules claim the ids
    /// `claims` gives as (client, id, id span, line), with warnings `warnings`;
    /// `None` when a number does not fit (a file over 4 GiB is refused long before).
    pub(crate) fn new<'a>(
        digest: [u8; 32],
        claims: impl IntoIterator<Item = ClaimOf<'a>>,
        warnings: Vec<Located>,
    ) -> Option<FileMemo> {
        let mut file = FileMemo {
            digest,
            ids: PackedStrings::default(),
            claims: Vec::new(),
            clients: Vec::new(),
            warnings,
        };
        for claim in claims {
            file.ids.push(claim.id);
            let client = match claim.client {
                None => 0,
                Some(client) => match file.clients.iter().position(|known| known == client) {
                    Some(index) => index + 1,
                    None => {
                        file.clients.push(client.to_string());
                        file.clients.len()
                    }
                },
            };
            file.claims.push(Claim {
                id_span: (u32::try_from(claim.id_span.start).ok()?, u32::try_from(claim.id_span.end).ok()?),
                line: u32::try_from(claim.line).ok()?,
                client: u32::try_from(client).ok()?,
            });
        }
        Some(file)
    }

    /// True when the file's bytes have digest `digest`.
    pub(crate) fn is(&self, digest: &[u8; 32]) -> bool {
        &self.digest == digest
    }

    /// Returns the number of id claims.
    pub(crate) fn claim_count(&self) -> usize {
        self.claims.len()
    }

    /// Returns the id claims, in file order.
    pub(crate) fn claims(&self) -> impl Iterator<Item = ClaimOf<'_>> {
        self.claims.iter().enumerate().map(|(index, claim)| ClaimOf {
            client: (claim.client as usize).checked_sub(1).map(|i| self.clients[i].as_str()),
            id: self.ids.get(index),
            id_span: claim.id_span.0 as usize..claim.id_span.1 as usize,
            line: claim.line as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_come_back_as_they_went_in() {
        let given = [
            (None, "brand", 10..17, 2),
            (Some("acme"), "acme-brand", 40..52, 6),
            (Some("zen"), "z", 70..73, 9),
            (Some("acme"), "acme-other", 90..102, 12),
        ];
        let claims = given.iter().map(|(client, id, span, line)| ClaimOf {
            client: *client,
            id,
            id_span: span.clone(),
            line: *line,
        });
        let file = FileMemo::new(digest(b"x"), claims, Vec::new()).expect("fits");
        let back: Vec<_> = file.claims().map(|c| (c.client, c.id.to_string(), c.id_span, c.line)).collect();
        let expected: Vec<_> = given
            .iter()
            .map(|(client, id, span, line)| (*client, id.to_string(), span.clone(), *line))
            .collect();
        assert_eq!(back, expected);
        assert_eq!(file.clients, ["acme", "zen"], "each client is kept once");
        assert!(file.is(&digest(b"x")) && !file.is(&digest(b"y")));
    }

    #[test]
    fn taking_a_pack_replaces_only_that_packs_files() {
        let file = || Arc::new(FileMemo::new(digest(b""), [], Vec::new()).expect("fits"));
        let mut running = Memo::default();
        running.insert(None, Path::new("r/a.toml"), file());
        running.insert(Some("acme"), Path::new("r/acme/a.toml"), file());
        running.insert(Some("acme"), Path::new("r/acme/b.toml"), file());
        let mut loaded = Memo::default();
        loaded.insert(Some("acme"), Path::new("r/acme/c.toml"), file());
        running.take_pack(Some("acme"), &loaded);
        assert_eq!(running.files(), 2);
        assert!(running
            .pack(Some("acme"))
            .is_some_and(|files| files.contains_key(Path::new("r/acme/c.toml"))));
        running.take_pack(None, &loaded);
        assert!(running.pack(None).is_none(), "a pack the load did not remember is forgotten");
        assert_eq!(running.files(), 1);
    }
}
