//! Hot rule reload: the matcher's rule set replaced while it runs.
//!
//! A reload is asked for by a change in the rules directory (watched with notify,
//! recursively, debounced so that an editor's burst of saves is one reload), by
//! SIGHUP, or by an operator through the API. The new packs are loaded and compiled
//! on a blocking thread, off the matching path, and swapped in atomically
//! ([`Matcher::swap`]): a batch in flight finishes with the set it started with, the
//! next batch uses the new one, and every verdict names the version it was made with.
//!
//! The rules directory holds packs (the global one and one per client, see
//! [`cull_rules::load_tree`]), and each is taken or refused whole: a pack with errors
//! keeps its running version, every error is logged with file:line:column and
//! returned, and the packs without errors are swapped in, so that one client's typo
//! does not hold back another client's change. A client's operator reloads only the
//! client's pack ([`Scope::Client`]): nothing else is read, and the answer says
//! nothing of other packs. Warnings (queries that probably do not mean what they
//! say) never refuse a pack: they are logged and returned with the new version.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cull_bus::KafkaConfig;
use cull_match::{Matcher, RuleSet};
use cull_model::Scope;
use cull_rules::{load_client_pack, load_tree, CompiledRule, Loaded, Taken};
use cull_ticket::TicketConfig;
use serde::Serialize;
use tokio::sync::{mpsc, watch, Mutex};

use crate::config::Topics;
use crate::metrics::Metrics;
use crate::tickets::{ticket_topics, AdmittedTopics};

/// How long the rules directory must be quiet before a change is reloaded.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Where tickets of a new queue or client would go, and whether that topic can be
/// used.
#[derive(Debug, Clone)]
pub enum TicketTopics {
    /// Kafka: a new topic is created.
    Kafka(Box<KafkaConfig>),
    /// The embedded bus with stages of this process reading the ticket topics known
    /// at start (the index, a file or an alert sink): a new topic would go unread, so
    /// a new queue or client needs a restart.
    Fixed,
    /// The embedded bus otherwise: a new topic is created on first use.
    Any,
}

/// What a reload installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reloaded {
    /// The version of the rule set now in use.
    pub version: String,
    /// The number of enabled rules in the reloaded packs.
    pub rules: usize,
    /// Every warning of the reloaded packs, rendered with file:line:column.
    pub warnings: Vec<String>,
}

/// Why a reload was refused, in part or whole; the refused packs keep their running
/// rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadFailed {
    /// Every error, rendered with file:line:column.
    pub errors: Vec<String>,
    /// The packs refused: `global` or a client's name.
    pub refused: Vec<String>,
    /// What was installed of the packs without errors, if any were reloaded.
    pub reloaded: Option<Reloaded>,
}

/// Reloads the rules directory into the matcher.
#[derive(Debug)]
pub struct Reloader {
    dir: PathBuf,
    matcher: Arc<Matcher>,
    metrics: Arc<Metrics>,
    topics: Topics,
    tickets: TicketConfig,
    /// The clients this process knows besides those with rules (its sources').
    clients: Vec<String>,
    policy: TicketTopics,
    admitted: AdmittedTopics,
    /// One reload at a time, so two causes at once cannot install an older pack last.
    running: Mutex<()>,
}

/// The name a pack goes by in answers and logs.
fn pack_name(pack: Option<&str>) -> String {
    pack.unwrap_or("global").to_string()
}

impl Reloader {
    /// Returns a reloader of `dir` into `matcher`, whose new ticket topics (named by
    /// `topics`, for the `[tickets]` settings `tickets` and the clients `clients`)
    /// are admitted as `policy` says and added to `admitted`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dir: PathBuf,
        matcher: Arc<Matcher>,
        metrics: Arc<Metrics>,
        topics: Topics,
        tickets: TicketConfig,
        clients: Vec<String>,
        policy: TicketTopics,
        admitted: AdmittedTopics,
    ) -> Reloader {
        Reloader {
            dir,
            matcher,
            metrics,
            topics,
            tickets,
            clients,
            policy,
            admitted,
            running: Mutex::new(()),
        }
    }

    /// Loads, compiles and swaps in the packs `scope` may reload (every pack for the
    /// staff, one client's for that client); `cause` is logged.
    pub async fn reload(&self, cause: &str, scope: &Scope) -> Result<Reloaded, ReloadFailed> {
        let _running = self.running.lock().await;
        let (dir, scope_owned, base) = (self.dir.clone(), scope.clone(), self.matcher.current());
        let built = tokio::task::spawn_blocking(move || build(&dir, &scope_owned, &base))
            .await
            .unwrap_or_else(|e| Built::failed(vec![format!("the reload task failed: {e}")]));
        let Built { set, reloaded_rules, mut errors, refused, warnings } = built;
        for warning in &warnings {
            tracing::warn!("rule reload:\n{warning}");
        }
        let mut installed = None;
        if let Some(set) = set {
            match self.admit(&set).await {
                Ok(()) => {
                    let reloaded = Reloaded {
                        version: set.version().to_string(),
                        rules: reloaded_rules,
                        warnings: warnings.clone(),
                    };
                    let total = set.len();
                    self.matcher.swap(set);
                    self.metrics.rules_reloaded(total);
                    self.metrics.rules_reload_warnings(warnings.len());
                    tracing::info!(
                        cause,
                        scope = %scope,
                        version = %reloaded.version,
                        rules = total,
                        warnings = warnings.len(),
                        "rules reloaded"
                    );
                    installed = Some(reloaded);
                }
                Err(admission) => errors.extend(admission),
            }
        }
        if errors.is_empty() {
            if let Some(reloaded) = installed {
                return Ok(reloaded);
            }
        }
        self.metrics.rules_reload_failed();
        for error in &errors {
            tracing::error!(cause, scope = %scope, "rule reload refused:\n{error}");
        }
        Err(ReloadFailed { errors, refused, reloaded: installed })
    }

    /// Makes sure the ticket topics of the new set's queues and clients can be
    /// produced to, and admits them.
    async fn admit(&self, set: &RuleSet) -> Result<(), Vec<String>> {
        let topics = ticket_topics(&self.topics, set, &self.tickets, &self.clients)?;
        let new: Vec<String> = topics.into_iter().filter(|t| !self.admitted.contains(t)).collect();
        if new.is_empty() {
            return Ok(());
        }
        match &self.policy {
            TicketTopics::Kafka(config) => {
                let names: Vec<&str> = new.iter().map(String::as_str).collect();
                cull_bus::ensure_topics(config.as_ref(), &names)
                    .await
                    .map_err(|e| vec![format!("cannot create ticket topics: {e}")])?;
                tracing::warn!(
                    topics = ?new,
                    "new ticket topics created; stages of this process that read tickets pick them up at their next start"
                );
            }
            TicketTopics::Fixed => {
                return Err(vec![format!(
                    "new ticket topic(s) {new:?}: the stages of this process that read tickets read the topics known at start, so a new queue or client needs a restart"
                )]);
            }
            TicketTopics::Any => {}
        }
        self.admitted.extend(new);
        Ok(())
    }
}

/// What loading the packs of a reload gave: the set to install (`None` when no pack
/// was taken), and what to say.
struct Built {
    set: Option<RuleSet>,
    reloaded_rules: usize,
    errors: Vec<String>,
    refused: Vec<String>,
    warnings: Vec<String>,
}

impl Built {
    fn failed(errors: Vec<String>) -> Built {
        Built { set: None, reloaded_rules: 0, errors, refused: Vec::new(), warnings: Vec::new() }
    }
}

/// Loads the packs `scope` may reload from `dir` and returns `base` with those that
/// load cleanly replaced.
fn build(dir: &std::path::Path, scope: &Scope, base: &RuleSet) -> Built {
    let packs: Vec<(Option<String>, Loaded)> = match scope {
        Scope::All => {
            let tree = load_tree(dir);
            let mut packs = vec![(None, tree.global)];
            packs.extend(tree.clients.into_iter().map(|(client, pack)| (Some(client), pack)));
            // A pack whose directory is gone is reloaded as empty: its rules go.
            let on_disk: BTreeSet<Option<String>> = packs.iter().map(|(pack, _)| pack.clone()).collect();
            let gone: BTreeSet<Option<String>> = base
                .rule_refs()
                .map(|r| r.pack.map(str::to_string))
                .filter(|pack| !on_disk.contains(pack))
                .collect();
            packs.extend(gone.into_iter().map(|pack| (pack, Loaded::default())));
            packs
        }
        Scope::Client(client) => {
            // The ids a client's rules may not take: the global rules and the rules
            // naming the client in the global files, which stay as they are.
            let staying = base.partitions_for(Some(client)).flat_map(|p| p.rule_refs());
            let taken = Taken::of_places(
                staying.filter(|r| r.pack.is_none()).map(|r| (r.client, r.id, r.path, r.line)),
            );
            vec![(Some(client.clone()), load_client_pack(dir, client, taken))]
        }
    };
    let mut built = Built::failed(Vec::new());
    let mut taken_packs: Vec<Option<String>> = Vec::new();
    let mut added: Vec<CompiledRule> = Vec::new();
    for (pack, loaded) in packs {
        built.warnings.extend(loaded.warnings.iter().map(ToString::to_string));
        if loaded.errors.is_empty() {
            added.extend(loaded.rules.into_iter().filter(|r| r.rule.enabled));
            taken_packs.push(pack);
        } else {
            built.errors.extend(loaded.errors.iter().map(ToString::to_string));
            built.refused.push(pack_name(pack.as_deref()));
        }
    }
    if taken_packs.is_empty() {
        return built;
    }
    built.reloaded_rules = added.len();
    match base.replace(|rule| !taken_packs.iter().any(|pack| pack.as_deref() == rule.pack), added) {
        Ok(set) => built.set = Some(set),
        Err(error) => built.errors.push(error.to_string()),
    }
    built
}

/// Reloads on changes in the rules directory (when `watch`) and on SIGHUP, until
/// `stop`.
pub async fn watch_and_reload(reloader: Arc<Reloader>, watch_dir: bool, mut stop: watch::Receiver<bool>) {
    let (sender, mut changes) = mpsc::unbounded_channel::<&'static str>();
    // Kept alive for as long as the loop runs; dropping it stops the watching.
    let _watcher = if watch_dir { watch(&reloader.dir, sender.clone()) } else { None };
    let hangup = sender;
    tokio::spawn(async move {
        let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP");
            return;
        };
        while signal.recv().await.is_some() {
            if hangup.send("SIGHUP").is_err() {
                break;
            }
        }
    });
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            cause = changes.recv() => match cause {
                Some(cause) => {
                    // An editor saves in bursts (write, rename, chmod, several files):
                    // wait until the directory has been quiet for DEBOUNCE, then reload
                    // once for the whole burst.
                    while let Ok(Some(_)) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {}
                    let _ = reloader.reload(cause, &Scope::All).await;
                }
                None => break,
            },
            () = &mut stopped => break,
        }
    }
}

/// Starts watching `dir`, sending a reload cause on every change; `None` (with a
/// warning) when the platform refuses, since SIGHUP still works then.
fn watch(
    dir: &std::path::Path,
    changed: mpsc::UnboundedSender<&'static str>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| !event.kind.is_access()) {
            let _ = changed.send("the rules directory changed");
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch files; SIGHUP still reloads");
            return None;
        }
    };
    match watcher.watch(dir, notify::RecursiveMode::Recursive) {
        Ok(()) => Some(watcher),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot watch the rules directory; SIGHUP still reloads");
            None
        }
    }
}
