//! The indexer stage: verdicts (with their mentions) from the bus into the analyst
//! index.
//!
//! It commits the index every `index.commit_docs` documents or `index.commit_secs`
//! seconds, with the offsets it consumed in the commit itself ([`Checkpoint`]), and
//! commits the consumer group's offsets only after that. A crash between the two
//! replays records the index already holds; the checkpoint makes the indexer skip
//! them, and documents are upserted by mention id, so the index holds every verdict
//! exactly once.
//!
//! [`Checkpoint`]: cull_index::Checkpoint

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cull_bus::dead_letter::{dead_letter, Origin as DeadLetterOrigin, Reason};
use cull_bus::{Message, Record};
use cull_index::{Indexer, Origin};
use cull_model::Verdict;
use tokio::sync::watch;

use crate::config::IndexStage;
use crate::metrics::Stage;
use crate::pipeline::{drained, Stages, IDLE};

/// Records the indexer takes at once.
const BATCH: usize = 1024;

/// Opens the index of the stage, off the async runtime.
pub async fn open(config: &IndexStage) -> Result<Indexer> {
    let (dir, threads, budget) = (config.dir.clone(), config.threads, config.memory_mb * 1024 * 1024);
    tokio::task::spawn_blocking(move || Indexer::open(&dir, threads, budget))
        .await
        .context("index open task")?
        .with_context(|| format!("index.dir = {:?}", config.dir))
}

/// Runs the stage until its input is drained (`--once`) or a signal; returns how many
/// verdicts it indexed.
pub async fn run(
    context: &Stages,
    mut consumer: cull_bus::Consumer,
    mut indexer: Indexer,
    matcher_done: watch::Receiver<bool>,
) -> Result<u64> {
    let config = &context.pipeline.index;
    let commit_every = Duration::from_secs(config.commit_secs);
    tracing::info!(
        dir = %config.dir.display(),
        commit_docs = config.commit_docs,
        commit_secs = config.commit_secs,
        checkpoint = ?indexer.checkpoint(),
        "indexing"
    );
    let mut last_commit = Instant::now();
    let mut consumed_since_commit = false;
    let mut indexed = 0u64;
    loop {
        if *context.stop.borrow() {
            break;
        }
        let Some(records) = consumer.next_batch(BATCH, Duration::from_millis(50), IDLE).await? else { break };
        if records.is_empty() {
            if consumed_since_commit && last_commit.elapsed() >= commit_every {
                indexer = commit(context, &mut consumer, indexer).await?;
                (last_commit, consumed_since_commit) = (Instant::now(), false);
            }
            if context.once && *matcher_done.borrow() && drained(&consumer) {
                break;
            }
            continue;
        }
        let (returned, added, dead) = tokio::task::spawn_blocking(move || add_batch(indexer, records))
            .await
            .context("indexing task")?;
        indexer = returned?;
        indexed += added;
        context.metrics.record_indexed(added);
        if !dead.is_empty() {
            context.metrics.record_dead_letters(Stage::Index, Reason::Schema, dead.len() as u64);
            context.send(&context.pipeline.topics.dead_letter, dead).await?;
        }
        consumed_since_commit = true;
        if indexer.uncommitted() >= config.commit_docs || last_commit.elapsed() >= commit_every {
            indexer = commit(context, &mut consumer, indexer).await?;
            (last_commit, consumed_since_commit) = (Instant::now(), false);
        }
    }
    if consumed_since_commit {
        commit(context, &mut consumer, indexer).await?;
    }
    consumer.close().await?;
    Ok(indexed)
}

/// Indexes a batch; returns the indexer, how many verdicts it added and the dead
/// letters of the records that are not verdicts with their mention.
fn add_batch(mut indexer: Indexer, records: Vec<Record>) -> (Result<Indexer>, u64, Vec<Message>) {
    let mut added = 0;
    let mut dead = Vec::new();
    for record in records {
        let origin = Origin { topic: &record.topic, partition: record.partition, offset: record.offset };
        if indexer.checkpoint().covers(origin.topic, origin.partition, origin.offset) {
            continue;
        }
        let parsed = serde_json::from_slice::<Verdict>(&record.payload).map_err(|e| e.to_string()).and_then(
            |verdict| match verdict.mention {
                Some(_) => Ok(verdict),
                None => Err(format!("the verdict of {:?} carries no mention", verdict.mention_id)),
            },
        );
        match parsed {
            Ok(verdict) => match indexer.add(&verdict, Some(origin)) {
                Ok(true) => added += 1,
                Ok(false) => {}
                Err(error) => return (Err(error).context("indexing a verdict"), added, dead),
            },
            Err(error) => {
                indexer.skip(origin);
                let origin = DeadLetterOrigin::Record {
                    topic: record.topic.clone(),
                    partition: record.partition,
                    offset: record.offset,
                };
                let error = format!("not a verdict with its mention: {error}");
                dead.push(dead_letter("index", &error, &origin, record.key, record.payload));
            }
        }
    }
    (Ok(indexer), added, dead)
}

/// Commits the index (documents and checkpoint in one step), then the group offsets.
async fn commit(
    context: &Stages,
    consumer: &mut cull_bus::Consumer,
    mut indexer: Indexer,
) -> Result<Indexer> {
    let started = Instant::now();
    let documents = indexer.uncommitted();
    let indexer = tokio::task::spawn_blocking(move || indexer.commit().map(|()| indexer))
        .await
        .context("index commit task")?
        .context("committing the index")?;
    consumer.commit().await?;
    context.metrics.record_index_commit(started.elapsed());
    tracing::info!(documents, took_ms = started.elapsed().as_millis() as u64, "index committed");
    Ok(indexer)
}
