//! Hot rule reload: the matcher's rule set replaced while it runs.
//!
//! A reload is asked for by a change in the rules directory (watched with notify,
//! debounced so that an editor's burst of saves is one reload), by SIGHUP, or by an
//! operator through the API. The new pack is loaded and compiled on a blocking thread,
//! off the matching path, and swapped in atomically ([`Matcher::swap`]): a batch in
//! flight finishes with the set it started with, the next batch uses the new one, and
//! every verdict names the version it was made with. A pack with errors is refused
//! whole; the running set stays, and every error is logged with file:line:column.
//! Warnings (queries that probably do not mean what they say) never refuse a pack:
//! they are logged with file:line:column and returned with the new version.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cull_bus::KafkaConfig;
use cull_match::{Matcher, RuleSet};
use cull_rules::load_path;
use serde::Serialize;
use tokio::sync::{mpsc, watch, Mutex};

use crate::config::Topics;
use crate::metrics::Metrics;

/// How long the rules directory must be quiet before a change is reloaded.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Where tickets of a new queue would go, and whether that topic can be used.
#[derive(Debug, Clone)]
pub enum TicketTopics {
    /// Kafka: a new topic is created.
    Kafka(KafkaConfig),
    /// The embedded bus with a file sink of per-queue ticket topics: it reads only the
    /// topics known at start, so a new queue needs a restart.
    Fixed(HashSet<String>),
    /// The embedded bus otherwise: a new topic is created on first use.
    Any,
}

/// What a successful reload installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reloaded {
    /// The version of the rule set now in use.
    pub version: String,
    /// The number of enabled rules in it.
    pub rules: usize,
    /// Every warning of the pack, rendered with file:line:column.
    pub warnings: Vec<String>,
}

/// Why a reload was refused; the running rule set stays in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadFailed {
    /// Every error, rendered with file:line:column.
    pub errors: Vec<String>,
}

/// Reloads the rules directory into the matcher.
#[derive(Debug)]
pub struct Reloader {
    dir: PathBuf,
    matcher: Arc<Matcher>,
    metrics: Arc<Metrics>,
    topics: Topics,
    ticket_topics: TicketTopics,
    /// One reload at a time, so two causes at once cannot install an older pack last.
    running: Mutex<()>,
}

impl Reloader {
    /// Returns a reloader of `dir` into `matcher`.
    pub fn new(
        dir: PathBuf,
        matcher: Arc<Matcher>,
        metrics: Arc<Metrics>,
        topics: Topics,
        ticket_topics: TicketTopics,
    ) -> Reloader {
        Reloader { dir, matcher, metrics, topics, ticket_topics, running: Mutex::new(()) }
    }

    /// Loads, compiles and swaps in the rules directory; `cause` is logged.
    pub async fn reload(&self, cause: &str) -> Result<Reloaded, ReloadFailed> {
        let _running = self.running.lock().await;
        let dir = self.dir.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let loaded = load_path(&dir);
            let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
            for warning in &warnings {
                tracing::warn!("rule reload:\n{warning}");
            }
            if !loaded.errors.is_empty() {
                return Err(loaded.errors.iter().map(ToString::to_string).collect());
            }
            RuleSet::new(loaded.rules.into_iter().filter(|r| r.rule.enabled).collect())
                .map(|set| (set, warnings))
                .map_err(|e| vec![e.to_string()])
        })
        .await
        .unwrap_or_else(|e| Err(vec![format!("the reload task failed: {e}")]));
        let result = match loaded {
            Ok((set, warnings)) => self.admit_queues(&set).await.map(|()| (set, warnings)),
            Err(errors) => Err(errors),
        };
        match result {
            Ok((set, warnings)) => {
                let reloaded =
                    Reloaded { version: set.version().to_string(), rules: set.rules().len(), warnings };
                self.matcher.swap(set);
                self.metrics.rules_reloaded(reloaded.rules);
                self.metrics.rules_reload_warnings(reloaded.warnings.len());
                tracing::info!(
                    cause,
                    version = %reloaded.version,
                    rules = reloaded.rules,
                    warnings = reloaded.warnings.len(),
                    "rules reloaded"
                );
                Ok(reloaded)
            }
            Err(errors) => {
                self.metrics.rules_reload_failed();
                for error in &errors {
                    tracing::error!(cause, "rule reload refused:\n{error}");
                }
                Err(ReloadFailed { errors })
            }
        }
    }

    /// Makes sure the ticket topics of the new set's queues can be produced to.
    async fn admit_queues(&self, set: &RuleSet) -> Result<(), Vec<String>> {
        let mut topics: Vec<String> =
            set.rules().iter().map(|r| self.topics.ticket_topic(&r.rule.queue)).collect();
        topics.sort();
        topics.dedup();
        match &self.ticket_topics {
            TicketTopics::Kafka(config) => {
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                cull_bus::ensure_topics(config, &names)
                    .await
                    .map_err(|e| vec![format!("cannot create ticket topics: {e}")])
            }
            TicketTopics::Fixed(known) => {
                let new: Vec<&String> = topics.iter().filter(|t| !known.contains(*t)).collect();
                if new.is_empty() {
                    Ok(())
                } else {
                    Err(vec![format!(
                        "new ticket topic(s) {new:?}: sink.tickets reads the per-queue topics known at start, so a new queue needs a restart"
                    )])
                }
            }
            TicketTopics::Any => Ok(()),
        }
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
                    let _ = reloader.reload(cause).await;
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
    match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot watch the rules directory; SIGHUP still reloads");
            None
        }
    }
}
