//! The pipeline's sources: the `[[source]]` entries of a pipeline file turned into the
//! ingest crate's sources, all delivering through one [`Outlet`].

use std::time::Duration;

use anyhow::{bail, Context, Result};
use cull_ingest::feed::{run_feed, FeedConfig, Poller};
use cull_ingest::jsonl::{run_jsonl, JsonlConfig};
use cull_ingest::mail::{run_mail, MailConfig};
use cull_ingest::webhook::{router, FieldMapping, WebhookConfig};
use cull_ingest::{Outlet, ScreenConfig};
use cull_model::Channel;
use tokio::sync::watch;

use crate::config::{self, Ingest, Source};

/// Returns the duplicate window the pipeline's `[ingest]` section describes.
pub fn screen_config(ingest: &Ingest) -> ScreenConfig {
    ScreenConfig {
        window: Duration::from_secs(ingest.dedupe_window_secs),
        capacity: ingest.dedupe_capacity,
        max_distance: ingest.near_duplicate_distance,
        min_words: ingest.near_duplicate_min_words,
    }
}

/// Refuses `--once` with a source that never ends: a webhook or a followed file.
pub fn check_once(sources: &[Source]) -> Result<()> {
    for (i, source) in sources.iter().enumerate() {
        if !source.is_finite() {
            bail!(
                "source[{i}] ({:?}) never ends (a webhook, or a followed file): run without --once",
                source.name()
            );
        }
    }
    Ok(())
}

/// Returns the feed poller configuration of a `kind = "feed"` source.
pub fn feed_config(feed: &config::FeedSource, ingest: &Ingest) -> FeedConfig {
    FeedConfig {
        interval: Duration::from_secs(feed.interval_secs),
        channel: feed.channel,
        timeout: Duration::from_secs(feed.timeout_secs),
        max_bytes: feed.max_bytes,
        backoff_base: Duration::from_secs(feed.backoff_base_secs),
        backoff_max: Duration::from_secs(feed.backoff_max_secs),
        state_dir: Some(ingest.state_dir.join("feeds")),
        ..FeedConfig::new(&feed.name, &feed.url)
    }
}

/// Runs one source until its end, or until `stop`; returns how many inputs it
/// dead-lettered. A webhook source only waits for `stop`: [`webhook_router`] serves it.
pub async fn run_source(
    outlet: &Outlet,
    source: &Source,
    ingest: &Ingest,
    max_mention_bytes: usize,
    once: bool,
    stop: watch::Receiver<bool>,
) -> Result<u64> {
    let name = source.name();
    match source {
        Source::Jsonl(jsonl) => {
            let config = JsonlConfig {
                name: jsonl.name.clone(),
                path: (jsonl.path != std::path::Path::new("-")).then(|| jsonl.path.clone()),
                follow: jsonl.follow,
                poll_interval: Duration::from_millis(jsonl.follow_interval_ms),
                max_line_bytes: max_mention_bytes,
            };
            let stats = run_jsonl(outlet, &config, stop).await.with_context(|| format!("source {name:?}"))?;
            Ok(stats.dead_letters)
        }
        Source::Feed(feed) => {
            let poller = Poller::new(feed_config(feed, ingest), cull_ingest::feed::client())
                .with_context(|| format!("source {name:?}"))?;
            let stats = run_feed(outlet, poller, once, stop).await;
            if let Some(error) = stats.last_error {
                tracing::warn!(source = name, %error, "the feed's last poll failed");
            }
            Ok(0)
        }
        Source::Mail(mail) => {
            let config = MailConfig {
                name: mail.name.clone(),
                path: mail.path.clone(),
                format: mail.format,
                channel: Channel::Email,
                poll_interval: Duration::from_secs(mail.poll_secs),
            };
            let stats =
                run_mail(outlet, &config, once, stop).await.with_context(|| format!("source {name:?}"))?;
            Ok(stats.dead_letters)
        }
        Source::Webhook(_) => {
            // The HTTP server takes the requests; the source lasts until the pipeline stops.
            let mut stop = stop;
            let _ = stop.wait_for(|stopped| *stopped).await;
            Ok(0)
        }
    }
}

/// Returns the router of the pipeline's webhook sources (`POST /ingest/<name>`), their
/// secrets read from the environment; `None` without webhook sources.
pub fn webhook_router(sources: &[Source], outlet: &Outlet) -> Result<Option<axum::Router>> {
    let mut configs = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let Source::Webhook(hook) = source else { continue };
        let secret = match &hook.secret_env {
            Some(variable) => match std::env::var(variable) {
                Ok(secret) if !secret.is_empty() => Some(secret),
                _ => {
                    bail!("source[{i}].secret_env: the environment variable `{variable}` is not set or empty")
                }
            },
            None => None,
        };
        let mapping = if hook.mapping.is_empty() {
            None
        } else {
            Some(FieldMapping::new(hook.mapping.clone()).with_context(|| format!("source[{i}].mapping"))?)
        };
        configs.push(WebhookConfig {
            secret,
            signature_header: hook.signature_header.clone(),
            timestamp_header: hook.timestamp_header.clone(),
            replay_window: Duration::from_secs(hook.replay_window_secs),
            max_body_bytes: hook.max_body_bytes,
            max_pending: hook.max_pending,
            mapping,
            channel: hook.channel,
            ..WebhookConfig::new(&hook.name)
        });
    }
    Ok((!configs.is_empty()).then(|| router(configs, outlet.clone())))
}
