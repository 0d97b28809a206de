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

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cull_model::PackedStrings;
use sha2::{Digest, Sha256};

use crate::error::Located;

/// The rule files of each pack as they were when their rules were taken, by pack
/// (`None`: the global files) and file path.
#[derive(Debug, Default, Clone)]
pub struct Memo {
    packs: BTreeMap<Option<String>, BTreeMap<PathBuf, Arc<FileMemo>>>,
}

impl Memo {
    /// Returns what is remembered of `pack`'s files.
    pub(crate) fn pack(&self, pack: Option<&str>) -> Option<&BTreeMap<PathBuf, Arc<FileMemo>>> {
        self.packs.get(&pack.map(str::to_string))
    }

    /// Remembers `file` of `pack`.
    pub(crate) fn insert(&mut self, pack: Option<&str>, path: &Path, file: Arc<FileMemo>) {
        self.packs.entry(pack.map(str::to_string)).or_default().insert(path.to_path_buf(), file);
    }

    /// Replaces what is remembered of `pack` with what `loaded` (the memo of a load
    /// of that pack) remembers of it: the pack's new rules were taken.
    pub fn take_pack(&mut self, pack: Option<&str>, loaded: &Memo) {
        let key = pack.map(str::to_string);
        match loaded.packs.get(&key) {
            Some(files) => self.packs.insert(key, files.clone()),
            None => self.packs.remove(&key),
        };
    }

    /// Adds everything `other` remembers.
    pub fn extend(&mut self, other: Memo) {
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
