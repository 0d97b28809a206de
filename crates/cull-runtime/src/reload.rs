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
//! does not hold back another client's change. Only the files changed since the last
//! reload are compiled ([`RuleSet::reload`]), so that one file of a million-rule pack
//! is live in under a second. A client's operator reloads only the client's pack
//! ([`Scope::Client`]): nothing else is read, and the answer says nothing of other
//! packs. Warnings (queries that probably do not mean what they say) never refuse a
//! pack: they are logged and returned with the new version.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cull_bus::KafkaConfig;
use cull_match::{retire, Matcher, RuleSet};
use cull_model::Scope;
use cull_rules::Memo;
use cull_ticket::TicketConfig;
use serde::Serialize;
use tokio::sync::{mpsc, watch, Mutex};

use crate::config::Topics;
use crate::metrics::Metrics;
use crate::tickets::{ticket_topics, AdmittedTopics};

/// How long the rules directory must be quiet before a change is reloaded.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// How long a replaced rule set waits for the batches still matching against it
/// before the reload's thread frees it (see [`cull_match::retire`]); a batch holding
/// it longer frees it itself.
const RETIRE_PATIENCE: Duration = Duration::from_secs(10);

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
    /// The rule files compiled: those new or changed since the last reload.
    pub compiled_files: usize,
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
    /// One reload at a time, so two causes at once cannot install an older pack
    /// last; it guards what the reload that built the running set remembered of
    /// the rule files.
    running: Mutex<Memo>,
}

/// The name a pack goes by in answers and logs.
fn pack_name(pack: Option<&str>) -> String {
    pack.unwrap_or("global").to_string()
}

impl Reloader {
    /// Returns a reloader of `dir` into `matcher`, whose running set was loaded from
    /// `dir` as `memo` remembers (see [`RuleSet::load`]), and whose new ticket topics
    /// (named by `topics`, for the `[tickets]` settings `tickets` and the clients
    /// `clients`) are admitted as `policy` says and added to `admitted`. Called in a
    /// Tokio runtime: the memo's claims are indexed on a blocking thread.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dir: PathBuf,
        memo: Memo,
        matcher: Arc<Matcher>,
        metrics: Arc<Metrics>,
        topics: Topics,
        tickets: TicketConfig,
        clients: Vec<String>,
        policy: TicketTopics,
        admitted: AdmittedTopics,
    ) -> Reloader {
        index_claims_in_background(&memo);
        Reloader {
            dir,
            matcher,
            metrics,
            topics,
            tickets,
            clients,
            policy,
            admitted,
            running: Mutex::new(memo),
        }
    }

    /// Loads, compiles and swaps in the packs `scope` may reload (every pack for the
    /// staff, one client's for that client); `cause` is logged.
    pub async fn reload(&self, cause: &str, scope: &Scope) -> Result<Reloaded, ReloadFailed> {
        let mut memo = self.running.lock().await;
        let (dir, scope_owned, base, since) =
            (self.dir.clone(), scope.clone(), self.matcher.current(), memo.clone());
        let built = tokio::task::spawn_blocking(move || build(&dir, &scope_owned, &base, &since))
            .await
            .unwrap_or_else(|e| Built::failed(vec![format!("the reload task failed: {e}")]));
        let Built { set, reloaded_rules, compiled_files, memo: remembered, mut errors, refused, warnings } =
            built;
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
                        compiled_files,
                        warnings: warnings.clone(),
                    };
                    let total = set.len();
                    let replaced = self.matcher.swap(set);
                    tokio::task::spawn_blocking(move || retire(replaced, RETIRE_PATIENCE));
                    index_claims_in_background(&remembered);
                    *memo = remembered;
                    self.metrics.rules_reloaded(total);
                    self.metrics.rules_reload_warnings(warnings.len());
                    tracing::info!(
                        cause,
                        scope = %scope,
                        version = %reloaded.version,
                        rules = total,
                        compiled_files,
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

/// Indexes the claims of `memo`, the running set's, on a blocking thread, so that the
/// next reload claims only the changed files' ids (a third of a second less at a
/// million rules; see [`Memo::index_claims`]). A reload that comes before the index
/// is built claims every id, as it would without one.
fn index_claims_in_background(memo: &Memo) {
    let memo = memo.clone();
    tokio::task::spawn_blocking(move || memo.index_claims());
}

/// What loading the packs of a reload gave: the set to install (`None` when no pack
/// was taken), what to remember once it is installed, and what to say.
struct Built {
    set: Option<RuleSet>,
    reloaded_rules: usize,
    compiled_files: usize,
    memo: Memo,
    errors: Vec<String>,
    refused: Vec<String>,
    warnings: Vec<String>,
}

impl Built {
    fn failed(errors: Vec<String>) -> Built {
        Built {
            set: None,
            reloaded_rules: 0,
            compiled_files: 0,
            memo: Memo::default(),
            errors,
            refused: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Reloads the packs `scope` may reload from `dir`, changed since `memo`, into
/// `base`, keeping the enabled rules.
fn build(dir: &std::path::Path, scope: &Scope, base: &RuleSet, memo: &Memo) -> Built {
    let reload = base.reload(dir, scope, memo, |rule| rule.rule.enabled);
    let mut errors: Vec<String> = reload.errors.iter().map(ToString::to_string).collect();
    let set = match reload.set {
        Some(Ok(set)) => Some(set),
        Some(Err(error)) => {
            errors.push(error.to_string());
            None
        }
        None => None,
    };
    Built {
        set,
        reloaded_rules: reload.rules,
        compiled_files: reload.compiled_files,
        memo: reload.memo,
        errors,
        refused: reload.refused.iter().map(|pack| pack_name(pack.as_deref())).collect(),
        warnings: reload.warnings.iter().map(ToString::to_string).collect(),
    }
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
