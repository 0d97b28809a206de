//! `cull run`: the stages a pipeline file enables, wired through the embedded bus or
//! Kafka.
//!
//! The matcher stage is the heart: it consumes mentions in size- and time-bounded
//! batches, matches a batch on the rayon pool (off the async runtime), produces a
//! verdict for every mention, a ticket for every true match and a dead letter for
//! every record it cannot read, waits until the bus has acknowledged all of them, and
//! only then commits the batch's offsets. A crash anywhere before the commit replays
//! the batch; ticket ids are deterministic, so a replay repeats ids rather than
//! inventing new tickets (at-least-once, idempotent for consumers).
//!
//! Sources and sinks are the same code on both buses. In `--once` mode sources are
//! read to their end, the matcher stops when its input is drained, and sinks stop when
//! theirs is; a signal (SIGINT, SIGTERM) stops every stage after the batch in hand.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cull_bus::dead_letter::{dead_letter, Origin};
use cull_bus::{EmbeddedBus, KafkaConfig, Message, Producer, Record};
use cull_ingest::{Outlet, Screen};
use cull_match::{Matcher, RuleSet};
use cull_model::{DeadLetter, Mention};
use cull_rules::CompiledRule;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{self, BusKind, Pipeline, Sink};
use crate::http::{self, Health};
use crate::metrics::{BatchStats, DeadLetterReason, Metrics, Outcome};
use crate::reload::{self, Reloader, TicketTopics};
use crate::sources;
use crate::tickets::Ticketer;

/// How long a stage waits for a first record before it looks at its stop conditions.
pub(crate) const IDLE: Duration = Duration::from_millis(200);

/// What a run did, printed when it ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Mentions read by the matcher (valid or not).
    pub mentions_in: u64,
    /// Mentions with at least one matching rule.
    pub matched: u64,
    /// Mentions whose query matches were all culled.
    pub culled: u64,
    /// Mentions no rule matched.
    pub unmatched: u64,
    /// Tickets produced.
    pub tickets_out: u64,
    /// Records sent to the dead-letter topic, by any stage.
    pub dead_letters: u64,
    /// Verdicts written to the analyst index.
    pub indexed: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} mention(s) in: {} matched, {} culled, {} unmatched; {} ticket(s) out; {} dead letter(s)",
            self.mentions_in, self.matched, self.culled, self.unmatched, self.tickets_out, self.dead_letters
        )?;
        if self.indexed > 0 {
            write!(f, "; {} indexed", self.indexed)?;
        }
        Ok(())
    }
}

/// The bus a pipeline runs on.
enum Bus {
    Embedded(EmbeddedBus),
    Kafka(KafkaConfig),
}

impl Bus {
    fn producer(&self) -> Result<Producer> {
        Ok(match self {
            Bus::Embedded(bus) => bus.producer(),
            Bus::Kafka(config) => cull_bus::kafka_producer(config)?,
        })
    }

    /// Returns a consumer of `topic`; on Kafka in the group `group`.
    fn consumer(&self, topic: &str, group: &str) -> Result<cull_bus::Consumer> {
        Ok(match self {
            Bus::Embedded(bus) => bus.group_consumer(topic, group),
            Bus::Kafka(config) => {
                let config = KafkaConfig { group_id: group.to_string(), ..config.clone() };
                cull_bus::kafka_consumer(&config, &[topic])?
            }
        })
    }
}

/// Everything the stages share.
pub(crate) struct Stages {
    /// Embedded topics no stage of this process reads (no sink configured for them):
    /// records sent there would fill the bounded queue and then block the sender
    /// forever, so they are not sent. Empty on Kafka, where other processes read.
    unread: HashSet<String>,
    pub(crate) pipeline: Pipeline,
    pub(crate) metrics: Arc<Metrics>,
    producer: Producer,
    pub(crate) once: bool,
    pub(crate) stop: watch::Receiver<bool>,
}

impl Stages {
    /// Sends `messages` to `topic` and waits for the acknowledgements, unless nothing
    /// in this embedded pipeline reads `topic`.
    pub(crate) async fn send(&self, topic: &str, messages: Vec<Message>) -> Result<(), cull_bus::BusError> {
        if messages.is_empty() || self.unread.contains(topic) {
            return Ok(());
        }
        self.producer.send_all(topic, messages).await
    }
}

/// Runs the pipeline with the rules loaded from `matcher.rules` until its finite input
/// is done (`once`) or a signal arrives.
pub async fn run(pipeline: Pipeline, rules: Vec<CompiledRule>, once: bool) -> Result<Summary> {
    if once {
        sources::check_once(&pipeline.sources)?;
    }
    let rules = RuleSet::new(rules.into_iter().filter(|r| r.rule.enabled).collect())?;
    let queues: Vec<String> = {
        let mut queues: Vec<String> = rules.rules().iter().map(|r| r.rule.queue.clone()).collect();
        queues.sort();
        queues.dedup();
        queues
    };
    let metrics = Arc::new(Metrics::new()?);
    metrics.rules_reloaded(rules.rules().len());
    let health = Arc::new(Health::default());
    health.set_rules_loaded(true);
    let matcher = Arc::new(Matcher::new(rules));

    let (stop_sender, stop) = watch::channel(false);
    let server = http::bind(pipeline.http.listen).await?;
    tracing::info!(listen = %server.local_addr(), "serving metrics and health");

    let topics = &pipeline.topics;
    let mut ticket_topics: Vec<String> = queues.iter().map(|q| topics.ticket_topic(q)).collect();
    ticket_topics.dedup();
    let bus = match pipeline.bus.kind {
        BusKind::Embedded => Bus::Embedded(EmbeddedBus::new(pipeline.bus.embedded.capacity)),
        BusKind::Kafka => {
            let kafka =
                pipeline.bus.kafka.as_ref().context("bus.kafka: required when bus.kind = \"kafka\"")?;
            let config = KafkaConfig {
                brokers: kafka.brokers.clone(),
                group_id: kafka.group_id.clone(),
                client_id: kafka.client_id.clone(),
                partitions: kafka.partitions,
                replication: kafka.replication,
                ..KafkaConfig::default()
            };
            let mut all: Vec<&str> = vec![&topics.mentions, &topics.verdicts, &topics.dead_letter];
            all.extend(ticket_topics.iter().map(String::as_str));
            cull_bus::ensure_topics(&config, &all).await.with_context(|| {
                format!("bus.kafka.brokers = {:?}: cannot create the topics", kafka.brokers)
            })?;
            Bus::Kafka(config)
        }
    };
    health.set_bus_connected(true);
    let unread: HashSet<String> = match bus {
        Bus::Kafka(_) => HashSet::new(),
        Bus::Embedded(_) => {
            let sink = &pipeline.sink;
            let mut unread = HashSet::new();
            if sink.tickets.is_none() {
                unread.extend(ticket_topics.iter().cloned());
            }
            if sink.verdicts.is_none() && !pipeline.index.enabled {
                unread.insert(topics.verdicts.clone());
            }
            if sink.dead_letter.is_none() {
                unread.insert(topics.dead_letter.clone());
            }
            if !pipeline.matcher.enabled {
                unread.insert(topics.mentions.clone());
            }
            unread
        }
    };
    let context = Arc::new(Stages {
        producer: bus.producer()?,
        unread,
        pipeline: pipeline.clone(),
        metrics,
        once,
        stop,
    });

    let signals = tokio::spawn(stop_on_signal(stop_sender.clone()));
    let outlet = Outlet::new(
        context.producer.clone(),
        Some(topics.mentions.clone()).filter(|t| !context.unread.contains(t)),
        Some(topics.dead_letter.clone()).filter(|t| !context.unread.contains(t)),
        Arc::new(std::sync::Mutex::new(Screen::new(sources::screen_config(&pipeline.ingest)))),
        Arc::clone(&context.metrics) as Arc<dyn cull_ingest::Observer>,
    );
    for source in &pipeline.sources {
        context.metrics.register_source(source.name());
    }
    let webhooks = sources::webhook_router(&pipeline.sources, &outlet)?;
    let (sources_done_sender, sources_done) = watch::channel(pipeline.sources.is_empty());
    let mut sinks = JoinSet::new();
    let sink_topics = [
        (&pipeline.sink.tickets, ticket_topics.clone(), "tickets", SinkFormat::Payload),
        (&pipeline.sink.verdicts, vec![topics.verdicts.clone()], "verdicts", SinkFormat::Payload),
        (&pipeline.sink.dead_letter, vec![topics.dead_letter.clone()], "dead-letter", SinkFormat::DeadLetter),
    ];
    let (matcher_done_sender, matcher_done) = watch::channel(false);
    for (sink, topic_names, name, format) in sink_topics {
        let Some(sink) = sink.clone() else { continue };
        let file = open_sink(&sink)?;
        let file = Arc::new(std::sync::Mutex::new(file));
        for topic in topic_names {
            let consumer = bus.consumer(&topic, &format!("cull-sink-{name}"))?;
            let (context, file, done) = (Arc::clone(&context), Arc::clone(&file), matcher_done.clone());
            sinks.spawn(async move { run_sink(&context, consumer, file, format, done).await });
        }
    }
    let matcher_stage = if pipeline.matcher.enabled {
        let consumer = bus.consumer(
            &topics.mentions,
            &context
                .pipeline
                .bus
                .kafka
                .as_ref()
                .map_or_else(|| "cull-matcher".to_string(), |k| k.group_id.clone()),
        )?;
        let context = Arc::clone(&context);
        let matcher = Arc::clone(&matcher);
        Some(tokio::spawn(async move { run_matcher(&context, consumer, &matcher, sources_done).await }))
    } else {
        None
    };
    let reloader = if pipeline.matcher.enabled {
        let ticket_topics = match &bus {
            Bus::Kafka(config) => TicketTopics::Kafka(config.clone()),
            Bus::Embedded(_) => TicketTopics::Embedded(ticket_topics.iter().cloned().collect()),
        };
        let reloader = Arc::new(Reloader::new(
            pipeline.matcher.rules.clone(),
            Arc::clone(&matcher),
            Arc::clone(&context.metrics),
            pipeline.topics.clone(),
            ticket_topics,
        ));
        tokio::spawn(reload::run(Arc::clone(&reloader), pipeline.matcher.watch, context.stop.clone()));
        Some(reloader)
    } else {
        None
    };
    let (index_stage, index) = if pipeline.index.enabled {
        let consumer = bus.consumer(&topics.verdicts, &pipeline.index.group_id)?;
        let indexer = crate::indexer::open(&pipeline.index).await?;
        let index = indexer.index().clone();
        let (context, done) = (Arc::clone(&context), matcher_done.clone());
        (
            Some(tokio::spawn(async move { crate::indexer::run(&context, consumer, indexer, done).await })),
            Some(index),
        )
    } else {
        (None, None)
    };
    let api = if pipeline.api.enabled {
        Some(crate::api::pipeline_routes(&pipeline.api, reloader, index, Arc::clone(&matcher))?)
    } else {
        None
    };
    let extra = match (webhooks, api) {
        (Some(webhooks), Some(api)) => Some(webhooks.merge(api)),
        (webhooks, api) => webhooks.or(api),
    };
    let server = tokio::spawn(server.serve(
        Arc::clone(&context.metrics),
        Arc::clone(&health),
        extra,
        wait_for(context.stop.clone()),
    ));

    // Sources start once every consumer exists: an embedded group sees only the
    // records produced after it joined.
    let mut sources = JoinSet::new();
    for source in pipeline.sources.clone() {
        let (context, outlet) = (Arc::clone(&context), outlet.clone());
        sources.spawn(async move {
            let max_bytes = context.pipeline.matcher.max_mention_bytes;
            let ingest = &context.pipeline.ingest;
            sources::run_source(&outlet, &source, ingest, max_bytes, context.once, context.stop.clone()).await
        });
    }

    let mut source_errors = Vec::new();
    let mut ingest_dead_letters = 0;
    while let Some(joined) = sources.join_next().await {
        match joined.context("source task")? {
            Ok(dead_letters) => ingest_dead_letters += dead_letters,
            Err(error) => source_errors.push(error),
        }
    }
    let _ = sources_done_sender.send(true);
    let mut summary = match matcher_stage {
        Some(stage) => stage.await.context("matcher task")??,
        None => Summary::default(),
    };
    let _ = matcher_done_sender.send(true);
    if let Bus::Embedded(bus) = &bus {
        bus.close();
    }
    while let Some(joined) = sinks.join_next().await {
        joined.context("sink task")??;
    }
    if let Some(stage) = index_stage {
        summary.indexed = stage.await.context("indexer task")??;
    }
    summary.dead_letters += ingest_dead_letters;
    let _ = stop_sender.send(true);
    signals.abort();
    server.await.context("http task")??;
    if let Some(error) = source_errors.into_iter().next() {
        return Err(error);
    }
    Ok(summary)
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Sets `stop` on SIGINT or SIGTERM.
async fn stop_on_signal(stop: watch::Sender<bool>) {
    terminated().await;
    tracing::info!("stopping after the batches in hand");
    let _ = stop.send(true);
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

/// Returns a dead-letter record as the JSON document a file sink writes: the headers
/// as fields and the original bytes in base64.
fn dead_letter_document(record: &Record) -> Result<Vec<u8>> {
    let header = |name: &str| {
        record.headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let origin =
        match (header("cull.source.topic"), header("cull.source.partition"), header("cull.source.offset")) {
            (Some(topic), Some(partition), Some(offset)) => format!("{topic}/{partition}/{offset}"),
            _ => header("cull.source.location").unwrap_or_default(),
        };
    let error = header("cull.error").unwrap_or_default();
    let letter = DeadLetter::new(&header("cull.stage").unwrap_or_default(), &error, origin, &record.payload);
    Ok(serde_json::to_vec(&letter)?)
}

async fn run_matcher(
    context: &Stages,
    mut consumer: cull_bus::Consumer,
    matcher: &Arc<Matcher>,
    sources_done: watch::Receiver<bool>,
) -> Result<Summary> {
    let config = &context.pipeline.matcher;
    let topics = &context.pipeline.topics;
    let linger = Duration::from_millis(config.batch_wait_ms);
    let mut ticketer = Ticketer::new(config.dedupe_window_secs, config.sla_minutes.clone());
    let mut summary = Summary::default();
    let mut owned: Vec<(String, i32)> = Vec::new();
    loop {
        if *context.stop.borrow() {
            break;
        }
        let Some(records) = consumer.next_batch(config.batch_size, linger, IDLE).await? else { break };
        let lags = consumer.lag();
        for (topic, partition) in
            owned.iter().filter(|(t, p)| !lags.iter().any(|(lt, lp, _)| lt == t && lp == p))
        {
            context.metrics.forget_partition(topic, *partition);
        }
        owned = lags.iter().map(|(topic, partition, _)| (topic.clone(), *partition)).collect();
        for (topic, partition, lag) in lags {
            context.metrics.set_consumer_lag(&topic, partition, lag);
        }
        if records.is_empty() {
            if context.once && *sources_done.borrow() && drained(&consumer) {
                break;
            }
            continue;
        }
        let started = Instant::now();
        let batch = process_batch(context, matcher, &mut ticketer, records, &mut summary).await?;
        let sends = async {
            tokio::try_join!(
                context.send(&topics.verdicts, batch.verdicts),
                context.send(&topics.dead_letter, batch.dead_letters),
                async {
                    for (topic, tickets) in batch.tickets {
                        context.send(&topic, tickets).await?;
                    }
                    Ok(())
                },
            )
        };
        sends.await.context("producing the results of a batch")?;
        consumer.commit().await?;
        context.metrics.record_batch(&batch.stats, started.elapsed());
    }
    consumer.close().await?;
    Ok(summary)
}

/// Returns true when the consumer knows its lag on every partition it owns and all of
/// it is zero. A Kafka consumer that has not joined its group yet knows no lag, and is
/// not drained: it has not started.
pub(crate) fn drained(consumer: &cull_bus::Consumer) -> bool {
    let lags = consumer.lag();
    !lags.is_empty() && lags.iter().all(|(_, _, lag)| *lag == 0)
}

/// The records a batch produces, grouped by topic.
struct BatchOutput {
    stats: BatchStats,
    verdicts: Vec<Message>,
    tickets: BTreeMap<String, Vec<Message>>,
    dead_letters: Vec<Message>,
}

async fn process_batch(
    context: &Stages,
    matcher: &Arc<Matcher>,
    ticketer: &mut Ticketer,
    records: Vec<Record>,
    summary: &mut Summary,
) -> Result<BatchOutput> {
    let limit = context.pipeline.matcher.max_mention_bytes;
    let size = records.len();
    let mut stats = BatchStats::default();
    let mut mentions = Vec::with_capacity(size);
    let mut dead_letters = Vec::new();
    for record in records {
        match Mention::from_json_limited(&record.payload, limit) {
            Ok(mention) => mentions.push(mention),
            Err(error) => {
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, %error, "dead-lettering a record");
                stats.dead_letter(DeadLetterReason::from(&error));
                let origin = Origin::Record {
                    topic: record.topic,
                    partition: record.partition,
                    offset: record.offset,
                };
                dead_letters.push(dead_letter("match", &error, &origin, record.key, record.payload));
            }
        }
    }
    let rules = matcher.current();
    let set = Arc::clone(&rules);
    let (mentions, verdicts) = tokio::task::spawn_blocking(move || {
        let verdicts = set.verdicts(&mentions);
        (mentions, verdicts)
    })
    .await
    .context("matching task")?;
    let now = time::OffsetDateTime::now_utc();
    summary.dead_letters += dead_letters.len() as u64;
    let mut output =
        BatchOutput { stats, verdicts: Vec::with_capacity(size), tickets: BTreeMap::new(), dead_letters };
    for (mention, mut verdict) in mentions.into_iter().zip(verdicts) {
        let outcome = match (verdict.matched.is_empty(), verdict.culled.is_empty()) {
            (false, _) => Outcome::Matched,
            (true, false) => Outcome::Culled,
            (true, true) => Outcome::Unmatched,
        };
        output.stats.mention(outcome);
        output.stats.verdict(&verdict);
        match outcome {
            Outcome::Matched => summary.matched += 1,
            Outcome::Culled => summary.culled += 1,
            _ => summary.unmatched += 1,
        }
        for ticket in ticketer.tickets(&mention, &verdict, &rules, now) {
            output.stats.ticket(&ticket.queue, ticket.priority);
            let headers = vec![
                ("cull.queue".to_string(), ticket.queue.clone().into_bytes()),
                ("cull.priority".to_string(), format!("{:?}", ticket.priority).into_bytes()),
            ];
            let topic = context.pipeline.topics.ticket_topic(&ticket.queue);
            let message = Message {
                key: Some(ticket.ticket_id.clone().into_bytes()),
                payload: serde_json::to_vec(&ticket)?,
                headers,
            };
            output.tickets.entry(topic).or_default().push(message);
            summary.tickets_out += 1;
        }
        // The verdict on the topic carries its mention, for the indexer.
        verdict.mention = Some(mention);
        output.verdicts.push(Message {
            key: Some(verdict.mention_id.clone().into_bytes()),
            payload: serde_json::to_vec(&verdict)?,
            headers: Vec::new(),
        });
    }
    summary.mentions_in += size as u64;
    Ok(output)
}

fn open_sink(sink: &Sink) -> Result<File> {
    let config::SinkKind::Jsonl = sink.kind;
    if let Some(parent) = sink.path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&sink.path)
        .with_context(|| format!("cannot open sink file {}", sink.path.display()))
}

/// How a file sink writes a record.
#[derive(Debug, Clone, Copy)]
enum SinkFormat {
    /// The payload, which is a JSON document (verdicts, tickets).
    Payload,
    /// A [`DeadLetter`] document built from the headers and the original bytes.
    DeadLetter,
}

/// Appends every record of a topic to a JSON-lines file, committing after each flush.
async fn run_sink(
    context: &Stages,
    mut consumer: cull_bus::Consumer,
    file: Arc<std::sync::Mutex<File>>,
    format: SinkFormat,
    matcher_done: watch::Receiver<bool>,
) -> Result<()> {
    loop {
        if *context.stop.borrow() {
            break;
        }
        let Some(records) = consumer.next_batch(1024, Duration::from_millis(20), IDLE).await? else { break };
        if records.is_empty() {
            if context.once && *matcher_done.borrow() && drained(&consumer) {
                break;
            }
            continue;
        }
        let lines = records
            .into_iter()
            .map(|record| match format {
                SinkFormat::Payload => Ok(record.payload),
                SinkFormat::DeadLetter => dead_letter_document(&record),
            })
            .collect::<Result<Vec<_>>>()?;
        let file = Arc::clone(&file);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut file = file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for line in &lines {
                file.write_all(line)?;
                file.write_all(b"\n")?;
            }
            file.flush()?;
            file.sync_data()
        })
        .await
        .context("sink writer task")?
        .context("writing a sink file")?;
        consumer.commit().await?;
    }
    consumer.close().await?;
    Ok(())
}
