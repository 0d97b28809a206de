//! `cull run`: the stages a pipeline file enables, composed on the embedded bus or
//! Kafka, and run by the stage runtime (`cull-runtime`).
//!
//! Composition is all this module does: it serves HTTP from the start, opens the bus,
//! builds the stages and the sources of the file, wires their topics, and hands
//! everything to the runtime, which owns batching, commits, lag, poison isolation and
//! the ordered shutdown. Each step of the start is named on `/readyz` while it runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use cull_bus::{BusError, BusKind, EmbeddedBus};
use cull_ingest::{Outlet, Screen, SourceOptions};
use cull_match::{Matcher, RuleSet};
use cull_rules::Memo;
use cull_runtime::reload::{Reloader, TicketTopics};
use cull_runtime::{
    AdmittedTopics, Batching, Bus, FileSink, Finished, IndexStage, MatchStage, Metrics, QualityStage,
    RunOptions, Runtime, SinkFormat, Summary, TicketStage,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Pipeline;
use crate::http::{self, Health, LateRoutes};
use crate::server::Http;

/// How the file sinks, the tickets stage and the indexer batch their input.
const SINK_BATCH: Batching = Batching { max: 1024, linger: Duration::from_millis(20) };
const TICKET_BATCH: Batching = Batching { max: 512, linger: Duration::from_millis(10) };
const INDEX_BATCH: Batching = Batching { max: 1024, linger: Duration::from_millis(50) };
const QUALITY_BATCH: Batching = Batching { max: 1024, linger: Duration::from_millis(50) };

/// The HTTP server of a run, serving `/metrics`, `/healthz` and `/readyz` while the
/// pipeline is built; it stops when this is dropped or the run ends.
#[derive(Debug)]
pub struct Served {
    /// The process' metrics, served as they are recorded.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` says.
    pub health: Arc<Health>,
    late: LateRoutes,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
}

/// Binds `config.listen` and serves the metrics and the probes at once: the process
/// answers `/healthz` from its first moment and `/readyz` names each start-up step.
pub async fn serve(config: &Http) -> Result<Served> {
    let server = http::bind(config).await?;
    tracing::info!(listen = %server.local_addr(), "serving metrics and health");
    let (metrics, health, late) =
        (Arc::new(Metrics::new()), Arc::new(Health::default()), LateRoutes::default());
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(server.serve(
        Arc::clone(&metrics),
        Arc::clone(&health),
        late.clone(),
        wait_for(stopped),
    ));
    Ok(Served { metrics, health, late, stop, server })
}

/// Runs the pipeline with `rules` (enabled ones, loaded as `memo` remembers) until
/// its finite input is done (`once`) or a signal stops it, serving HTTP through
/// `served`; returns what it did and how it ended, with up to `decisions` of its
/// matches and as many of its culls.
pub async fn run(
    pipeline: Pipeline,
    (rules, memo): (RuleSet, Memo),
    once: bool,
    decisions: usize,
    served: Served,
) -> Result<Finished> {
    let Served { metrics, health, late, stop: stop_sender, server } = served;
    if once {
        cull_ingest::check_once(&pipeline.sources)?;
    }
    let webhook_configs = cull_ingest::webhook_configs(&pipeline.sources)?;
    let topics = &pipeline.topics;
    let clients = pipeline.clients();
    // A precision alert is a house ticket on `quality.alert_queue`, read like the others.
    let alert_topic = (pipeline.quality.enabled)
        .then(|| pipeline.quality.alert_queue.as_deref().map(|queue| topics.ticket_topic(None, queue)))
        .flatten();
    let mut ticket_topics = cull_runtime::ticket_topics(topics, &rules, &pipeline.tickets, &clients)
        .map_err(|problems| anyhow::anyhow!("the ticket topics: {}", problems.join("; ")))?;
    ticket_topics.extend(alert_topic.clone());
    let ticket_topics: Vec<String> = ticket_topics.into_iter().collect();
    let admitted = AdmittedTopics::new(ticket_topics.iter().cloned());
    metrics.rules_reloaded(rules.len());
    let matcher = Arc::new(Matcher::new(rules));
    let summary = Arc::new(Summary::keeping_decisions(decisions));

    health.starting("opening the bus");
    let bus = match pipeline.bus.kind {
        BusKind::Embedded => {
            let config = pipeline.bus.embedded.clone();
            let bus = tokio::task::spawn_blocking(move || EmbeddedBus::open(&config))
                .await
                .context("opening the embedded bus")?
                .with_context(|| format!("bus.embedded.dir = {:?}", pipeline.bus.embedded.dir))?;
            Bus::Embedded(bus)
        }
        BusKind::Kafka => {
            let config =
                pipeline.bus.kafka_client().context("bus.kafka: required when bus.kind = \"kafka\"")?;
            Bus::Kafka(config)
        }
    };
    let mut all: Vec<&str> =
        vec![&topics.mentions, &topics.verdicts, &topics.dead_letter, &topics.ticket_state, &topics.feedback];
    all.extend(ticket_topics.iter().map(String::as_str));
    health.starting("creating the topics");
    create_topics(&bus, &all, &health, once).await.with_context(|| match &bus {
        Bus::Kafka(config) => format!("bus.kafka.brokers = {:?}: cannot create the topics", config.brokers),
        Bus::Embedded(_) => "cannot create the topics of the embedded bus".to_string(),
    })?;

    let options = RunOptions {
        once,
        deadline: pipeline.shutdown.deadline(),
        dead_letter_topic: topics.dead_letter.clone(),
    };
    let mut runtime = Runtime::new(bus.clone(), Arc::clone(&metrics), Arc::clone(&summary), options)?;

    // Stages first: their consumers join their groups before any source produces.
    let verdict_readers = pipeline.tickets.enabled
        || pipeline.index.enabled
        || pipeline.quality.enabled
        || pipeline.sink.verdicts.is_some();
    if pipeline.matcher.enabled {
        let group = match &bus {
            Bus::Kafka(config) => config.group_id.clone(),
            Bus::Embedded(_) => "cull-matcher".to_string(),
        };
        let stage = MatchStage::new(
            Arc::clone(&matcher),
            &topics.verdicts,
            pipeline.matcher.max_mention_bytes,
            Arc::clone(&metrics),
            Arc::clone(&summary),
        );
        let batching = Batching {
            max: pipeline.matcher.batch_size,
            linger: Duration::from_millis(pipeline.matcher.batch_wait_ms),
        };
        runtime.stage(stage, &[&topics.mentions], &group, &[&topics.verdicts], batching)?;
    }
    if pipeline.tickets.enabled {
        let stage = TicketStage::new(
            Arc::clone(&matcher),
            &pipeline.tickets,
            topics.clone(),
            admitted.clone(),
            Arc::clone(&metrics),
            Arc::clone(&summary),
        )
        .context("tickets.calendars")?;
        let outputs: Vec<&str> = ticket_topics.iter().map(String::as_str).collect();
        // Agents' dispositions too: a closed ticket leaves its queue's open count.
        let inputs = [topics.verdicts.as_str(), topics.feedback.as_str()];
        runtime.stage(stage, &inputs, &pipeline.tickets.group_id, &outputs, TICKET_BATCH)?;
    }
    let mut indexer = None;
    if pipeline.index.enabled {
        health.starting("opening the index");
        let config = pipeline.index.clone();
        let (metrics, summary) = (Arc::clone(&metrics), Arc::clone(&summary));
        let tickets = ticket_topics.clone();
        let stage = tokio::task::spawn_blocking(move || {
            IndexStage::open(&config, metrics, summary).map(|stage| stage.reading_tickets_from(tickets))
        })
        .await
        .context("opening the index")?
        .with_context(|| format!("index.dir = {:?}", pipeline.index.dir))?;
        indexer = Some(stage.indexer());
        // The tickets too, so that an analyst sees a mention's tickets beside it.
        let mut inputs = vec![topics.verdicts.as_str()];
        inputs.extend(ticket_topics.iter().map(String::as_str));
        runtime.stage(stage, &inputs, &pipeline.index.group_id, &[], INDEX_BATCH)?;
    }
    if pipeline.quality.enabled {
        health.starting("opening the rule-stats store");
        let config = pipeline.quality.clone();
        let (matcher, metrics) = (Arc::clone(&matcher), Arc::clone(&metrics));
        let (feedback, tickets, alerts) =
            (topics.feedback.clone(), ticket_topics.clone(), alert_topic.clone());
        let stage = tokio::task::spawn_blocking(move || {
            QualityStage::open(&config, matcher, &feedback, tickets, alerts, metrics)
        })
        .await
        .context("opening the rule-stats store")?
        .with_context(|| format!("quality.dir = {:?}", pipeline.quality.dir))?;
        // Not its own alerts: a stage that read what it writes would wait for itself to
        // end at a stop.
        let mut inputs = vec![topics.verdicts.as_str(), topics.feedback.as_str()];
        inputs
            .extend(ticket_topics.iter().map(String::as_str).filter(|t| Some(*t) != alert_topic.as_deref()));
        let outputs: Vec<&str> = alert_topic.iter().map(String::as_str).collect();
        runtime.stage(stage, &inputs, &pipeline.quality.group_id, &outputs, QUALITY_BATCH)?;
    }
    let sinks = [
        ("tickets", &pipeline.sink.tickets, ticket_topics.clone(), SinkFormat::Payload),
        ("verdicts", &pipeline.sink.verdicts, vec![topics.verdicts.clone()], SinkFormat::Payload),
        ("dead_letter", &pipeline.sink.dead_letter, vec![topics.dead_letter.clone()], SinkFormat::DeadLetter),
    ];
    for (key, sink, inputs, format) in sinks {
        let Some(sink) = sink else { continue };
        let name = format!("sink.{key}");
        let stage = FileSink::open(&name, sink, format)?;
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        runtime.stage(stage, &inputs, &format!("cull-sink-{}", key.replace('_', "-")), &[], SINK_BATCH)?;
    }
    // Alert sinks read the tickets, each in its own group; they give a backoff up when
    // the run begins to stop (a retry is not worth a hard stop at the deadline).
    let (stopping_sender, stopping) = watch::channel(false);
    let alerts = cull_runtime::alert_stages(&pipeline.sink.alert, &metrics, &stopping)?;
    for (stage, config) in alerts.into_iter().zip(&pipeline.sink.alert) {
        let inputs: Vec<&str> = ticket_topics.iter().map(String::as_str).collect();
        runtime.stage(stage, &inputs, &format!("cull-alert-{}", config.name), &[], SINK_BATCH)?;
    }
    if !verdict_readers {
        tracing::info!(topic = %topics.verdicts, "no stage reads the verdicts here; they stay on the bus");
    }

    let outlet = Outlet::new(
        runtime.producer().clone(),
        topics.mentions.clone(),
        topics.dead_letter.clone(),
        Arc::new(Mutex::new(Screen::new(pipeline.ingest.screen()))),
        Arc::clone(&metrics) as Arc<dyn cull_ingest::Observer>,
    );
    let webhooks = cull_ingest::webhook_router(webhook_configs, &outlet);
    let source_options = SourceOptions {
        ingest: pipeline.ingest.clone(),
        max_mention_bytes: pipeline.matcher.max_mention_bytes,
        once,
    };
    for source in pipeline.sources.clone() {
        metrics.register_source(source.name());
        let (outlet, options, name) = (outlet.clone(), source_options.clone(), source.name().to_string());
        runtime.source(&name, &[&topics.mentions, &topics.dead_letter], move |stop| async move {
            cull_ingest::run_source(&outlet, &source, &options, stop).await
        });
    }
    runtime.outlet(outlet);

    let stop = stop_sender.subscribe();
    let ticket_readers = pipeline.index.enabled
        || pipeline.quality.enabled
        || pipeline.sink.tickets.is_some()
        || !pipeline.sink.alert.is_empty();
    let reloader = Arc::new(Reloader::new(
        pipeline.matcher.rules.clone(),
        memo,
        Arc::clone(&matcher),
        Arc::clone(&metrics),
        pipeline.topics.clone(),
        pipeline.tickets.clone(),
        clients,
        match &bus {
            Bus::Kafka(config) => TicketTopics::Kafka(Box::new(config.clone())),
            Bus::Embedded(_) if ticket_readers => TicketTopics::Fixed,
            Bus::Embedded(_) => TicketTopics::Any,
        },
        admitted,
    ));
    if pipeline.matcher.enabled {
        tokio::spawn(cull_runtime::reload::watch_and_reload(
            Arc::clone(&reloader),
            pipeline.matcher.watch,
            stop.clone(),
        ));
    }
    let api = if pipeline.api.enabled {
        let reloader = pipeline.matcher.enabled.then_some(reloader);
        let feedback = crate::quality_api::FeedbackOutlet {
            producer: runtime.producer().clone(),
            topic: topics.feedback.clone(),
        };
        let quality = pipeline.quality.enabled.then(|| pipeline.quality.clone());
        Some(crate::api::pipeline_routes(
            &pipeline.api,
            reloader,
            indexer,
            Arc::clone(&matcher),
            Some(feedback),
            quality,
        )?)
    } else {
        None
    };
    late.set(webhooks.unwrap_or_default().merge(api.unwrap_or_default()));

    // Ready once every stage has read its state back and reads its input.
    health.starting(if pipeline.tickets.enabled { "restoring ticket state" } else { "starting the stages" });
    let started = runtime.started();
    let ready = tokio::spawn({
        let health = Arc::clone(&health);
        async move {
            if started.await {
                health.set_ready();
            }
        }
    });

    let (signal_sender, signals) = mpsc::unbounded_channel();
    let signal_task = tokio::spawn(forward_signals(signal_sender, Arc::clone(&health), stopping_sender));
    let finished = runtime.run(signals).await;
    signal_task.abort();
    ready.abort();
    let _ = stop_sender.send(true);
    if tokio::time::timeout(Duration::from_secs(5), server).await.is_err() {
        tracing::warn!("the http server did not stop within 5 s");
    }
    Ok(finished)
}

/// The first wait before the topics are asked for again from brokers that did not
/// answer; it doubles up to [`BROKER_RETRY_MAX`].
const BROKER_RETRY_FIRST: Duration = Duration::from_secs(1);
const BROKER_RETRY_MAX: Duration = Duration::from_secs(30);

/// Creates the missing `topics`. Brokers that do not answer (down, not yet up, a
/// network between) are waited for, with backoff, while `/readyz` says `broker
/// unreachable` and why: a deployment whose brokers start after cull, or restart,
/// comes up by itself instead of in a crash loop. A `--once` run is a batch job and
/// fails at once instead; a broker that answers with a refusal fails it always.
async fn create_topics(bus: &Bus, topics: &[&str], health: &Health, once: bool) -> Result<(), BusError> {
    let mut wait = BROKER_RETRY_FIRST;
    loop {
        match bus.ensure_topics(topics).await {
            Err(error @ BusError::Admin { .. }) if !once => {
                health.broker_unreachable(&error);
                tracing::warn!(%error, retry_in_secs = wait.as_secs(), "the brokers do not answer; waiting for them");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(BROKER_RETRY_MAX);
            }
            result => return result,
        }
    }
}

/// Sends one message per SIGINT or SIGTERM, and marks the process not ready and
/// `stopping` true at the first: the runtime drains at the first and stops hard at
/// the second.
async fn forward_signals(
    signals: mpsc::UnboundedSender<()>,
    health: Arc<Health>,
    stopping: watch::Sender<bool>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::warn!("cannot listen for SIGTERM and SIGINT");
        return;
    };
    loop {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        health.set_stopping();
        let _ = stopping.send(true);
        if signals.send(()).is_err() {
            return;
        }
    }
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn terminated() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
