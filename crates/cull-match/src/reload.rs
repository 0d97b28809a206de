//! Reloading the packs of a rules directory into a running rule set, compiling only
//! the files that changed.
//!
//! The rules directory holds packs (the global one and one per client, see
//! [`cull_rules::load_tree`]), and each is taken or refused whole: a pack with errors
//! keeps its running rules, so that one client's typo does not hold back another
//! client's change. Within a pack taken, the files unchanged since the last reload
//! (as the [`Memo`] remembers them) keep their rules as they are in the running set,
//! and only the changed files are parsed and compiled; the partitions that lose or
//! gain a rule are rebuilt from the kept rules and the new ones (see
//! [`RuleSet::replace`]). One file of a million-rule pack is thereby live in well
//! under a second, with answers identical to a load of everything afresh.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use cull_model::Scope;
use cull_rules::{load_client_pack, load_tree_since, CompiledRule, Loaded, Located, Memo, RuleError, Taken};

use crate::stored::{Interner, Stored};
use crate::{store, MatchError, RuleFile, RuleSet};

/// What a reload of packs found and built (see [`RuleSet::reload`]).
#[derive(Debug)]
pub struct Reload {
    /// The running set with the packs that loaded cleanly replaced; `None` when every
    /// pack reloaded was refused, an error when the set could not be built.
    pub set: Option<Result<RuleSet, MatchError>>,
    /// What to give the next reload once [`Reload::set`] is in use: the memo given,
    /// with the packs taken as they are now.
    pub memo: Memo,
    /// The number of rules of the new set in the packs taken.
    pub rules: usize,
    /// The files of the packs taken that were compiled again (new or changed).
    pub compiled_files: usize,
    /// Every error, each in a refused pack.
    pub errors: Vec<RuleError>,
    /// Every warning of the packs reloaded, refused or not.
    pub warnings: Vec<Located>,
    /// The packs refused (`None`: the global one), in the order loaded.
    pub refused: Vec<Option<String>>,
}

/// Packs loaded for a set, with the changed files' rules stored.
struct LoadedPacks {
    packs: Vec<(Option<String>, Loaded)>,
    stored: Vec<Stored>,
}

impl RuleSet {
    /// Reloads the packs of rules directory `dir` that `scope` may reload (every
    /// pack for the staff, one client's pack for that client), keeping the rules
    /// `wanted` keeps; `memo` is what the reload that built this set remembered (an
    /// empty memo compiles every file). Packs whose directory is gone are reloaded
    /// as empty: their rules go.
    pub fn reload(
        &self,
        dir: &Path,
        scope: &Scope,
        memo: &Memo,
        wanted: impl Fn(&CompiledRule) -> bool,
    ) -> Reload {
        let LoadedPacks { packs, mut stored } = self.load_packs(dir, scope, memo, &wanted);
        let mut reload = Reload {
            set: None,
            memo: memo.clone(),
            rules: 0,
            compiled_files: 0,
            errors: Vec::new(),
            warnings: Vec::new(),
            refused: Vec::new(),
        };
        let mut taken: Vec<Option<String>> = Vec::new();
        let mut unchanged: HashSet<PathBuf> = HashSet::new();
        for (pack, loaded) in packs {
            reload.warnings.extend(loaded.warnings);
            if loaded.errors.is_empty() {
                reload.memo.take_pack(pack.as_deref(), &loaded.memo);
                reload.compiled_files += loaded.memo.files() - loaded.unchanged.len();
                unchanged.extend(loaded.unchanged);
                taken.push(pack);
            } else {
                reload.errors.extend(loaded.errors);
                reload.refused.push(pack);
            }
        }
        if taken.is_empty() {
            return reload;
        }
        let is_taken = |pack: Option<&str>| taken.iter().any(|taken| taken.as_deref() == pack);
        stored.retain(|rule| is_taken(rule.fields().pack));
        let mut keep =
            |_: Option<&str>, file: &RuleFile<'_>| !is_taken(file.pack) || unchanged.contains(file.path);
        let set = RuleSet::build(Some((self, &mut keep)), stored);
        if let Ok(set) = &set {
            let files = set.partitions().flat_map(|partition| partition.files());
            reload.rules = files.filter(|file| is_taken(file.pack)).map(|file| file.rules).sum();
        }
        reload.set = Some(set);
        reload
    }

    /// Loads the packs `scope` names from `dir`, storing the rules of the files
    /// changed since `memo` that `wanted` keeps.
    fn load_packs(
        &self,
        dir: &Path,
        scope: &Scope,
        memo: &Memo,
        wanted: &dyn Fn(&CompiledRule) -> bool,
    ) -> LoadedPacks {
        let mut interner = Interner::default();
        let mut stored = Vec::new();
        let mut keep = |rules: Vec<CompiledRule>| {
            stored.extend(store(rules.into_iter().filter(|rule| wanted(rule)).collect(), &mut interner));
        };
        let packs = match scope {
            Scope::All => {
                // A directory that cannot be listed says nothing of which packs are
                // gone: refuse the reload rather than empty every client's pack.
                if let Err(source) = std::fs::read_dir(dir) {
                    let error = RuleError::Io { path: dir.to_path_buf(), source };
                    let refused = Loaded { errors: vec![error], ..Loaded::default() };
                    return LoadedPacks { packs: vec![(None, refused)], stored: Vec::new() };
                }
                let tree = load_tree_since(dir, memo, &mut keep);
                // A client's pack has rules in that client's partition only (the
                // global pack, always on disk, may have rules in any).
                let gone: Vec<String> = self
                    .clients
                    .iter()
                    .filter(|(client, _)| !tree.clients.contains_key(*client))
                    .filter(|(client, partition)| {
                        partition.files().any(|file| file.pack == Some(client.as_str()))
                    })
                    .map(|(client, _)| client.clone())
                    .collect();
                let mut packs = vec![(None, tree.global)];
                packs.extend(tree.clients.into_iter().map(|(client, pack)| (Some(client), pack)));
                packs.extend(gone.into_iter().map(|client| (Some(client), Loaded::default())));
                packs
            }
            Scope::Client(client) => {
                // The ids a client's rules may not take: those of the global files'
                // rules, which stay as they are. The memo has them all, disabled rules
                // too, as a full load claims them; the running set has the enabled
                // ones, for a reload without a memo.
                let staying = || {
                    let staying = self.partitions_for(Some(client)).flat_map(|p| p.rule_refs());
                    Taken::of_places(
                        staying.filter(|r| r.pack.is_none()).map(|r| (r.client, r.id, r.path, r.line)),
                    )
                };
                vec![(Some(client.clone()), load_client_pack(dir, client, &staying, memo, &mut keep))]
            }
        };
        LoadedPacks { packs, stored }
    }
}

#[cfg(test)]
mod tests {
    use cull_model::Mention;

    use super::*;

    /// A rule file of `count` rules over `words`, with ids prefixed by `prefix`.
    fn file(prefix: &str, words: &[&str]) -> String {
        words
            .iter()
            .enumerate()
            .map(|(i, w)| format!("[[rule]]\nid = '{prefix}-{i}'\nquery = '{w} OR \"{w} outage\"'\n\n"))
            .collect()
    }

    fn write(dir: &Path, path: &str, text: &str) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, text).expect("write");
    }

    fn mentions() -> Vec<Mention> {
        ["acme outage", "globex slack", "zoom outage for initech", "hooli", "nothing"]
            .iter()
            .enumerate()
            .flat_map(|(i, text)| {
                [None, Some("acme")].map(|client| Mention {
                    client: client.map(str::to_string),
                    ..Mention::new(format!("m{i}"), *text)
                })
            })
            .collect()
    }

    /// Asserts that `set` answers as the rules on disk loaded afresh.
    fn assert_as_fresh(set: &RuleSet, dir: &Path) {
        let (loaded, fresh) = RuleSet::load(dir, |rule| rule.rule.enabled);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let fresh = fresh.expect("no errors").expect("builds");
        assert_eq!(set.version(), fresh.version());
        for mention in mentions() {
            assert_eq!(set.verdict(&mention), fresh.verdict(&mention), "{mention:?}");
        }
    }

    fn reload(set: &RuleSet, dir: &Path, scope: &Scope, memo: &Memo) -> (Reload, Option<RuleSet>) {
        let mut reload = set.reload(dir, scope, memo, |rule| rule.rule.enabled);
        let set = reload.set.take().map(|set| set.expect("builds"));
        (reload, set)
    }

    #[test]
    fn a_reload_compiles_only_the_changed_files_and_answers_as_a_fresh_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "a.toml", &file("a", &["acme", "globex"]));
        write(dir.path(), "b.toml", &file("b", &["slack", "zoom"]));
        write(dir.path(), "acme/c.toml", &file("c", &["initech", "outage"]));
        let (loaded, set) = RuleSet::load(dir.path(), |rule| rule.rule.enabled);
        let set = set.expect("no errors").expect("builds");
        let memo = loaded.memo;
        // As the pipeline does: the reloads below claim only the changed files' ids.
        memo.index_claims();

        let (nothing, same) = reload(&set, dir.path(), &Scope::All, &memo);
        assert_eq!((nothing.compiled_files, nothing.rules), (0, 6));
        assert_eq!(same.expect("packs taken").version(), set.version());

        // One rule changed, one gone, one disabled, one added; a client's file added.
        let changed = "[[rule]]\nid = 'b-0'\nquery = 'hooli'\n\n[[rule]]\nid = 'b-2'\nquery = 'zoom'\nenabled = false\n\n[[rule]]\nid = 'b-3'\nquery = 'nothing'\n";
        write(dir.path(), "b.toml", changed);
        write(dir.path(), "acme/d.toml", &file("d", &["globex"]));
        let (changed, set) = reload(&set, dir.path(), &Scope::All, &memo);
        assert!(changed.errors.is_empty() && changed.refused.is_empty(), "{:?}", changed.errors);
        assert_eq!((changed.compiled_files, changed.rules), (2, 7));
        let set = set.expect("packs taken");
        assert_as_fresh(&set, dir.path());
        assert!(set.rule(None, "b-1").is_none() && set.rule(None, "b-2").is_none());

        // The memo returned is the one the next reload starts from.
        let (next, again) = reload(&set, dir.path(), &Scope::All, &changed.memo);
        assert_eq!(next.compiled_files, 0);
        assert_eq!(again.expect("packs taken").version(), set.version());
    }

    #[test]
    fn a_refused_pack_keeps_its_rules_and_what_is_remembered_of_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let original = file("c", &["initech", "outage"]);
        write(dir.path(), "a.toml", &file("a", &["acme"]));
        write(dir.path(), "acme/c.toml", &original);
        let (loaded, set) = RuleSet::load(dir.path(), |rule| rule.rule.enabled);
        let set = set.expect("no errors").expect("builds");

        write(dir.path(), "a.toml", &file("a", &["globex"]));
        write(dir.path(), "acme/c.toml", "[[rule]]\nid = 'c-0'\nquery = 'initech AND'\n");
        let (broken, set) = reload(&set, dir.path(), &Scope::All, &loaded.memo);
        assert_eq!(broken.refused, [Some("acme".to_string())]);
        assert_eq!(broken.errors.len(), 1, "{:?}", broken.errors);
        let set = set.expect("the global pack is taken");
        assert_eq!(set.rule(None, "a-0").expect("a-0").rule.query, "globex OR \"globex outage\"");
        assert!(set.rule(Some("acme"), "c-1").is_some(), "acme keeps its running rules");

        // Put back as it was, the file is as remembered: nothing is compiled, and the
        // rules are the running ones.
        write(dir.path(), "acme/c.toml", &original);
        let (restored, set) = reload(&set, dir.path(), &Scope::All, &broken.memo);
        assert_eq!(restored.compiled_files, 0);
        assert_as_fresh(&set.expect("packs taken"), dir.path());
    }

    #[test]
    fn a_gone_pack_loses_its_rules_and_an_unlistable_directory_refuses_the_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "a.toml", &file("a", &["acme"]));
        write(dir.path(), "acme/c.toml", &file("c", &["initech"]));
        let (loaded, set) = RuleSet::load(dir.path(), |rule| rule.rule.enabled);
        let set = set.expect("no errors").expect("builds");

        let moved = dir.path().with_extension("moved");
        std::fs::rename(dir.path(), &moved).expect("move");
        let (unlistable, none) = reload(&set, dir.path(), &Scope::All, &loaded.memo);
        assert!(none.is_none() && unlistable.refused == [None], "{:?}", unlistable.refused);
        assert!(unlistable.errors[0].to_string().contains(&dir.path().display().to_string()));
        std::fs::rename(&moved, dir.path()).expect("move back");

        std::fs::remove_dir_all(dir.path().join("acme")).expect("remove acme");
        let (gone, set) = reload(&set, dir.path(), &Scope::All, &loaded.memo);
        assert!(gone.errors.is_empty(), "{:?}", gone.errors);
        let set = set.expect("packs taken");
        assert!(set.rule(Some("acme"), "c-0").is_none());
        assert_eq!(gone.memo.files(), 1, "the gone pack's files are forgotten");
        assert_as_fresh(&set, dir.path());
    }

    #[test]
    fn a_client_reload_reads_and_remembers_that_clients_pack_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "a.toml", &file("a", &["acme"]));
        write(dir.path(), "acme/c.toml", &file("c", &["initech"]));
        write(dir.path(), "globex/g.toml", &file("g", &["globex"]));
        let (loaded, set) = RuleSet::load(dir.path(), |rule| rule.rule.enabled);
        let set = set.expect("no errors").expect("builds");

        write(dir.path(), "a.toml", &file("a", &["hooli"]));
        write(dir.path(), "globex/g.toml", "broken = [");
        write(dir.path(), "acme/c.toml", &file("c", &["zoom", "slack"]));
        write(dir.path(), "acme/d.toml", &file("a", &["taken"]));
        let acme = Scope::Client("acme".into());
        let (duplicate, none) = reload(&set, dir.path(), &acme, &loaded.memo);
        assert!(none.is_none(), "a-0 is a global id");
        assert!(duplicate.errors[0].to_string().contains("duplicate rule id `a-0`"));

        std::fs::remove_file(dir.path().join("acme/d.toml")).expect("remove");
        let (reloaded, set) = reload(&set, dir.path(), &acme, &loaded.memo);
        assert_eq!((reloaded.compiled_files, reloaded.rules), (1, 2));
        let set = set.expect("acme taken");
        assert_eq!(set.rule(None, "a-0").expect("global stays").rule.query, "acme OR \"acme outage\"");
        assert!(set.rule(Some("acme"), "c-1").is_some());
        assert_eq!(reloaded.memo.files(), 3, "the other packs are remembered as they were");
    }

    #[test]
    fn a_client_reload_may_not_take_the_id_of_a_disabled_global_rule_as_a_full_reload_may_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "a.toml", "[[rule]]\nid = 'paused'\nquery = 'acme'\nenabled = false\n");
        write(dir.path(), "acme/c.toml", &file("c", &["initech"]));
        let (loaded, set) = RuleSet::load(dir.path(), |rule| rule.rule.enabled);
        let set = set.expect("no errors").expect("builds");
        assert!(set.rule(None, "paused").is_none(), "disabled rules are not in the set");

        write(dir.path(), "acme/c.toml", "[[rule]]\nid = 'paused'\nquery = 'initech'\n");
        let (full, _) = reload(&set, dir.path(), &Scope::All, &loaded.memo);
        let (client, none) = reload(&set, dir.path(), &Scope::Client("acme".into()), &loaded.memo);
        assert!(none.is_none());
        assert_eq!(client.refused, [Some("acme".to_string())]);
        let rendered = |reload: &Reload| reload.errors.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(rendered(&client), rendered(&full));
        assert!(rendered(&client)[0].contains("duplicate rule id `paused`"), "{:?}", rendered(&client));
    }
}
