//! The runner: every stage's loop, and the ordered shutdown of the whole pipeline.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cull_bus::{BusError, Consumer, EmbeddedBus, KafkaConfig, Message, Producer};
use cull_ingest::{Outlet, SourceError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::changelog::{Changelog, Reach};
use crate::metrics::Metrics;
use crate::stage::{panic_message, process_isolated, Output, Stage};
use crate::summary::{Counts, DecisionSample, Summary};
use crate::RuntimeError;

/// How long a stage waits for a first record before it looks at its stop conditions.
const IDLE: Duration = Duration::from_millis(200);
/// How often a stage commits its input's offsets at most while it runs; a crash
/// replays at most about this much (at-least-once), and the commit's flush is paid
/// rarely.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// How long the tasks get to end after a hard stop (the deadline, a failure) before
/// the runtime stops waiting for them.
const GRACE: Duration = Duration::from_secs(10);
/// The first wait before a send that the bus refused is tried again; it doubles up
/// to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// See [`Bus::changelog_patience`].
const EMBEDDED_CHANGELOG_PATIENCE: Duration = Duration::from_secs(30);
/// How long a stage with a changelog waits after its group handed it partitions before
/// it reads the changelog and processes them. Their previous owner may still be
/// finishing the batch it held when they were revoked, and writes that batch's
/// changelog records after; the broker cannot fence it (no transactions). Read
/// without them, the take-over would process the batch again from an older state and
/// send its tickets again with older revisions. Rebalances are rare, so the wait
/// costs little; it is a settle time, not a proof, so consumers still keep each
/// ticket's highest revision.
const TAKEOVER_SETTLE: Duration = Duration::from_secs(2);

/// The bus a pipeline runs on.
#[derive(Debug, Clone)]
pub enum Bus {
    /// The durable log on this machine.
    Embedded(EmbeddedBus),
    /// A Kafka cluster.
    Kafka(KafkaConfig),
}

impl Bus {
    /// Returns a producer.
    pub fn producer(&self) -> Result<Producer, BusError> {
        match self {
            Bus::Embedded(bus) => Ok(bus.producer()),
            Bus::Kafka(config) => cull_bus::kafka_producer(config),
        }
    }

    /// Returns a consumer of `topics` in `group`.
    pub fn consumer(&self, topics: &[&str], group: &str) -> Result<Consumer, BusError> {
        match self {
            Bus::Embedded(bus) => bus.consumer(topics, group),
            Bus::Kafka(config) => {
                let config = KafkaConfig { group_id: group.to_string(), ..config.clone() };
                cull_bus::kafka_consumer(&config, topics)
            }
        }
    }

    /// Returns a reader of a stage's changelog `topic` from its oldest record, which
    /// never commits and leaves nothing behind: on the embedded bus a reader in no
    /// group ([`EmbeddedBus::reader`]), which holds back neither retention nor
    /// producers; on Kafka a consumer in `group`, which must be of its own, reading
    /// every partition from the earliest offset (`auto.offset.reset=earliest`).
    pub fn changelog_reader(&self, topic: &str, group: &str) -> Result<Consumer, BusError> {
        match self {
            Bus::Embedded(bus) => bus.reader(topic),
            Bus::Kafka(_) => self.consumer(&[topic], group),
        }
    }

    /// How long reading a changelog may go without progress before its stage fails:
    /// on Kafka the session timeout, which bounds joining the reader's group; on the
    /// embedded bus, where a reader reads at once, a bound that only catches a hang.
    pub fn changelog_patience(&self) -> Duration {
        match self {
            Bus::Embedded(_) => EMBEDDED_CHANGELOG_PATIENCE,
            Bus::Kafka(config) => config.session_timeout,
        }
    }

    /// Creates the topics that are missing.
    pub async fn ensure_topics(&self, topics: &[&str]) -> Result<(), BusError> {
        match self {
            Bus::Embedded(bus) => bus.ensure_topics(topics),
            Bus::Kafka(config) => cull_bus::ensure_topics(config, topics).await,
        }
    }

    /// Whether a graceful stop drains the pipeline. On the embedded bus every stage is
    /// in this process, so it finishes what the sources handed over; on Kafka the
    /// topics outlive the process and other instances share them, so a stage stops
    /// after the batch in hand and the rest waits in Kafka for the group.
    fn drains_on_stop(&self) -> bool {
        matches!(self, Bus::Embedded(_))
    }

    fn close(&self) {
        if let Bus::Embedded(bus) = self {
            bus.close();
        }
    }
}

/// How a stage reads its input.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Records per batch at most.
    pub max: usize,
    /// How long a batch waits to fill after its first record.
    pub linger: Duration,
}

/// How a run ends.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Read the finite sources to their end, drain every stage and stop (`--once`).
    pub once: bool,
    /// How long a graceful stop may take before the runtime gives up draining.
    pub deadline: Duration,
    /// Where dead letters go.
    pub dead_letter_topic: String,
}

/// What a stage had not read when the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    /// The stage.
    pub stage: String,
    /// Its consumer group.
    pub group: String,
    /// The input topics.
    pub topics: Vec<String>,
    /// Records not read, on every partition together; `None` when the stage did not
    /// end.
    pub records: Option<i64>,
}

pub(crate) fn describe(left: &[Left]) -> String {
    let parts: Vec<String> = left
        .iter()
        .map(|l| match l.records {
            Some(records) => {
                format!(
                    "{records} record(s) of {} not read by the {} stage (group {})",
                    l.topics.join(", "),
                    l.stage,
                    l.group
                )
            }
            None => format!("the {} stage did not stop", l.stage),
        })
        .collect();
    parts.join("; ")
}

/// What a run did and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// The counts.
    pub counts: Counts,
    /// The decisions the summary kept (none unless it was made to keep them).
    pub decisions: DecisionSample,
    /// `Ok` when the run ended as asked: its input done (`--once`), or stopped and
    /// drained.
    pub result: Result<(), RuntimeError>,
}

type SourceFuture = Pin<Box<dyn Future<Output = Result<u64, SourceError>> + Send>>;
type SourceRun = Box<dyn FnOnce(watch::Receiver<bool>) -> SourceFuture + Send>;

struct SourceTask {
    name: String,
    run: SourceRun,
}

struct StageTask {
    stage: Box<dyn Stage>,
    consumer: Consumer,
    inputs: Vec<String>,
    outputs: Vec<String>,
    group: String,
    batching: Batching,
}

/// The pipeline to run: its sources and its stages on one bus.
pub struct Runtime {
    bus: Bus,
    producer: Producer,
    metrics: Arc<Metrics>,
    summary: Arc<Summary>,
    options: RunOptions,
    sources: Vec<SourceTask>,
    source_outputs: Vec<String>,
    outlet: Option<Outlet>,
    stages: Vec<StageTask>,
    /// Stages that have read their changelog back and begun reading their input.
    started: Arc<watch::Sender<usize>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("bus", &self.bus)
            .field("sources", &self.sources.iter().map(|s| &s.name).collect::<Vec<_>>())
            .field("stages", &self.stages.iter().map(|s| s.stage.name().to_string()).collect::<Vec<_>>())
            .finish()
    }
}

/// What the tasks of a run share.
pub(crate) struct Shared {
    pub(crate) bus: Bus,
    producer: Producer,
    pub(crate) metrics: Arc<Metrics>,
    summary: Arc<Summary>,
    options: RunOptions,
    stopping: watch::Receiver<bool>,
    hard: watch::Receiver<bool>,
}

impl Shared {
    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    fn is_hard(&self) -> bool {
        *self.hard.borrow()
    }

    /// Completes once the run stops hard.
    pub(crate) async fn hard_stopped(&self) {
        let mut hard = self.hard.clone();
        if hard.wait_for(|hard| *hard).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// How a task of the run ended.
enum TaskEnd {
    Stage(usize, Result<StageEnd, RuntimeError>),
    Sources(Result<(), RuntimeError>),
}

/// What a stage had not read when it ended.
struct StageEnd {
    unread: i64,
}

impl Runtime {
    /// Returns a runtime on `bus` with no sources and no stages.
    pub fn new(
        bus: Bus,
        metrics: Arc<Metrics>,
        summary: Arc<Summary>,
        options: RunOptions,
    ) -> Result<Runtime, BusError> {
        let producer = bus.producer()?;
        Ok(Runtime {
            bus,
            producer,
            metrics,
            summary,
            options,
            sources: Vec::new(),
            source_outputs: Vec::new(),
            outlet: None,
            stages: Vec::new(),
            started: Arc::new(watch::Sender::new(0)),
        })
    }

    /// Returns a future that completes with `true` once every stage added so far has
    /// read its changelog back and begun reading its input, which is when the process
    /// can do its job (its readiness), or with `false` when the run ended first.
    pub fn started(&self) -> impl Future<Output = bool> + Send + 'static {
        let (mut started, stages) = (self.started.subscribe(), self.stages.len());
        async move { started.wait_for(|count| *count >= stages).await.is_ok() }
    }

    /// Returns the producer the stages and sources share.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Sets the outlet the sources deliver through: it is closed first when the run
    /// stops (pushes are refused from then on), and the pushes in progress end before
    /// the stages reading the sources' topics may finish.
    pub fn outlet(&mut self, outlet: Outlet) {
        self.outlet = Some(outlet);
    }

    /// Adds a source producing to `outputs`; `run` gets the stop signal and returns how
    /// many inputs it dead-lettered.
    pub fn source<F>(
        &mut self,
        name: &str,
        outputs: &[&str],
        run: impl FnOnce(watch::Receiver<bool>) -> F + Send + 'static,
    ) where
        F: Future<Output = Result<u64, SourceError>> + Send + 'static,
    {
        for output in outputs {
            if !self.source_outputs.iter().any(|t| t == output) {
                self.source_outputs.push(output.to_string());
            }
        }
        self.sources
            .push(SourceTask { name: name.to_string(), run: Box::new(move |stop| Box::pin(run(stop))) });
    }

    /// Adds a stage reading `inputs` in `group` and producing to `outputs` (besides
    /// the dead-letter topic). Its consumer joins the group now, so that it sees
    /// everything the sources produce once the run starts.
    ///
    /// A stage with a [`Stage::changelog`] may send to its changelog topic without
    /// naming it in `outputs`: the run creates it when missing, reads it back into the
    /// stage before the first batch and before every batch after (in a group of its
    /// own on Kafka, see [`Bus::changelog_reader`]), and counts what it read in
    /// `cull_stage_changelog_restored_total{stage}`.
    pub fn stage(
        &mut self,
        stage: impl Stage,
        inputs: &[&str],
        group: &str,
        outputs: &[&str],
        batching: Batching,
    ) -> Result<(), RuntimeError> {
        let name = stage.name().to_string();
        let consumer = self
            .bus
            .consumer(inputs, group)
            .map_err(|source| RuntimeError::Bus { stage: name.clone(), source })?;
        self.metrics.register_stage(&name);
        if stage.changelog().is_some() {
            self.metrics.register_changelog(&name);
        }
        self.stages.push(StageTask {
            stage: Box::new(stage),
            consumer,
            inputs: inputs.iter().map(|t| t.to_string()).collect(),
            outputs: outputs.iter().map(|t| t.to_string()).collect(),
            group: group.to_string(),
            batching,
        });
        Ok(())
    }

    /// Runs until the finite input is done (`once`), or until a signal arrives on
    /// `signals` and the pipeline is drained, within the deadline; a second signal
    /// stops without draining.
    ///
    /// The order of a graceful stop: the sources stop taking input (a webhook answers
    /// `503`) and finish the handoff in hand; each stage finishes once everything
    /// before it has finished and it has read all of its input, flushing and
    /// committing as it goes; the dead-letter sink, which every stage writes to, ends
    /// last. A failing stage, the deadline or a second signal stop every task after its
    /// current step instead: what was not done stays on the bus, uncommitted, for the
    /// next start. A failing source stops the run gracefully.
    pub async fn run(self, mut signals: mpsc::UnboundedReceiver<()>) -> Finished {
        let Runtime {
            bus,
            producer,
            metrics,
            summary,
            options,
            sources,
            source_outputs,
            outlet,
            stages,
            started,
        } = self;
        let (stopping_sender, stopping) = watch::channel(false);
        let (hard_sender, hard) = watch::channel(false);
        let stopping_sender = Arc::new(stopping_sender);
        let shared = Arc::new(Shared {
            bus: bus.clone(),
            producer,
            metrics,
            summary: Arc::clone(&summary),
            options: options.clone(),
            stopping,
            hard,
        });

        // Who writes to what: a stage may end only after everything that writes to its
        // input has ended. Every stage may write dead letters.
        let (sources_done_sender, sources_done) = watch::channel(false);
        let writes: Vec<BTreeSet<String>> = stages
            .iter()
            .map(|task| task.outputs.iter().cloned().chain([options.dead_letter_topic.clone()]).collect())
            .collect();
        let (done_senders, dones): (Vec<_>, Vec<_>) = stages.iter().map(|_| watch::channel(false)).unzip();
        let mut tasks: JoinSet<TaskEnd> = JoinSet::new();
        let mut described: Vec<(String, String, Vec<String>)> = Vec::new();
        for (index, (task, done)) in stages.into_iter().zip(done_senders).enumerate() {
            let reads: BTreeSet<&String> = task.inputs.iter().collect();
            let mut upstream = Vec::new();
            if source_outputs.iter().chain([&options.dead_letter_topic]).any(|t| reads.contains(t)) {
                upstream.push(sources_done.clone());
            }
            for (other, written) in writes.iter().enumerate() {
                if other != index && written.iter().any(|t| reads.contains(t)) {
                    upstream.push(dones[other].clone());
                }
            }
            described.push((task.stage.name().to_string(), task.group.clone(), task.inputs.clone()));
            let (shared, started) = (Arc::clone(&shared), Arc::clone(&started));
            tasks.spawn(async move {
                let end = run_stage(&shared, task, &upstream, &started).await;
                let _ = done.send(true);
                TaskEnd::Stage(index, end)
            });
        }
        {
            let (shared, stopping_sender) = (Arc::clone(&shared), Arc::clone(&stopping_sender));
            tasks.spawn(async move {
                let result = run_sources(&shared, sources, outlet, &stopping_sender).await;
                let _ = sources_done_sender.send(true);
                TaskEnd::Sources(result)
            });
        }

        // Stops every task after its current step, and gives them the grace period.
        let stop_hard = |reason: &str, grace: &mut Option<tokio::time::Instant>| {
            if !*hard_sender.borrow() {
                tracing::warn!(reason, "stopping without draining");
                let _ = hard_sender.send(true);
                let _ = stopping_sender.send(true);
                bus.close();
            }
            grace.get_or_insert_with(|| tokio::time::Instant::now() + GRACE);
        };
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut deadline_passed = false;
        let mut grace: Option<tokio::time::Instant> = None;
        let mut signals_open = true;
        let mut error: Option<RuntimeError> = None;
        let mut ends: Vec<Option<i64>> = vec![None; described.len()];
        let start_stopping = |deadline: &mut Option<tokio::time::Instant>, why: &str| {
            if deadline.is_none() {
                tracing::info!(
                    why,
                    deadline_secs = options.deadline.as_secs(),
                    "stopping: the sources take no more input and the stages drain"
                );
                let _ = stopping_sender.send(true);
                *deadline = Some(tokio::time::Instant::now() + options.deadline);
            }
        };
        loop {
            let until_deadline = async {
                match deadline {
                    Some(at) if !deadline_passed => tokio::time::sleep_until(at).await,
                    _ => std::future::pending().await,
                }
            };
            let until_grace = async {
                match grace {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                signal = signals.recv(), if signals_open => match signal {
                    Some(()) if deadline.is_none() => start_stopping(&mut deadline, "a signal"),
                    Some(()) => stop_hard("a second signal", &mut grace),
                    None => signals_open = false,
                },
                () = until_deadline => {
                    deadline_passed = true;
                    stop_hard("the shutdown deadline passed", &mut grace);
                }
                () = until_grace => break,
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Ok(TaskEnd::Stage(index, Ok(end)))) => ends[index] = Some(end.unread),
                    Some(Ok(TaskEnd::Stage(_, Err(failure)))) => {
                        let cause = *shared.hard.borrow();
                        if !cause {
                            tracing::error!(error = %failure, "a stage failed");
                            error.get_or_insert(failure);
                        }
                        stop_hard("a stage failed", &mut grace);
                    }
                    Some(Ok(TaskEnd::Sources(result))) => {
                        if let Err(failure) = result {
                            if !*shared.hard.borrow() {
                                tracing::error!(error = %failure, "a source failed");
                                error.get_or_insert(failure);
                                start_stopping(&mut deadline, "a source failed");
                            }
                        }
                    }
                    Some(Err(join)) => {
                        let message = join_failure(join);
                        error.get_or_insert(RuntimeError::Panicked { task: "a task of the runtime".into(), message });
                        stop_hard("a task panicked", &mut grace);
                    }
                },
            }
        }
        if !tasks.is_empty() {
            tracing::error!(tasks = tasks.len(), "tasks did not end within the grace period; leaving them");
            tasks.abort_all();
        }
        let (counts, decisions) = (summary.counts(), summary.decisions());
        if let Some(error) = error {
            return Finished { counts, decisions, result: Err(error) };
        }
        if deadline_passed {
            let left: Vec<Left> = described
                .into_iter()
                .zip(ends)
                .filter(|(_, unread)| *unread != Some(0))
                .map(|((stage, group, topics), records)| Left { stage, group, topics, records })
                .collect();
            if !left.is_empty() {
                return Finished {
                    counts,
                    decisions,
                    result: Err(RuntimeError::Deadline { deadline: options.deadline, left }),
                };
            }
        }
        Finished { counts, decisions, result: Ok(()) }
    }
}

/// Runs the sources until they end (or stop), then closes the outlet and waits for
/// the pushes in progress; a failing source stops the run gracefully.
async fn run_sources(
    shared: &Shared,
    sources: Vec<SourceTask>,
    outlet: Option<Outlet>,
    stopping: &watch::Sender<bool>,
) -> Result<(), RuntimeError> {
    let mut running = JoinSet::new();
    for source in sources {
        let stop = shared.stopping.clone();
        running.spawn(async move { (source.name, (source.run)(stop).await) });
    }
    let mut first_error = None;
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((_, Ok(dead_letters))) => shared.summary.add_dead_letters(dead_letters),
            Ok((name, Err(error))) => {
                if !shared.is_hard() && first_error.is_none() {
                    tracing::error!(source = %name, %error, "a source stopped; stopping the pipeline");
                    let _ = stopping.send(true);
                    first_error = Some(RuntimeError::Source(error));
                }
            }
            Err(join) => {
                let message = join_failure(join);
                let _ = stopping.send(true);
                first_error.get_or_insert(RuntimeError::Panicked { task: "a source".into(), message });
            }
        }
    }
    if let Some(outlet) = outlet {
        outlet.close();
        tokio::select! {
            () = outlet.drained() => {}
            () = shared.hard_stopped() => {}
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Returns what a task that did not end normally said: its panic, or why it was
/// cancelled.
fn join_failure(join: tokio::task::JoinError) -> String {
    if join.is_panic() {
        panic_message(&*join.into_panic())
    } else {
        join.to_string()
    }
}

/// Runs one stage until its input is done (and everything upstream of it), the run
/// stops, or it fails; counts it in `started` once its changelog is read back.
async fn run_stage(
    shared: &Shared,
    task: StageTask,
    upstream: &[watch::Receiver<bool>],
    started: &watch::Sender<usize>,
) -> Result<StageEnd, RuntimeError> {
    let StageTask { stage, mut consumer, group, batching, .. } = task;
    let name = stage.name().to_string();
    let bus_error = |source| RuntimeError::Bus { stage: name.clone(), source };
    let mut stage = Some(stage);
    let changelog_topic = stage.as_mut().and_then(|stage| {
        stage.start(&consumer.end_offsets());
        stage.changelog()
    });
    let mut changelog = match changelog_topic {
        Some(topic) => Some(Changelog::open(shared, &name, &group, topic).await?),
        None => None,
    };
    let restored = match &mut changelog {
        Some(changelog) => {
            crate::fault::restore().await;
            changelog.catch_up(shared, &name, &mut stage, Reach::End).await?
        }
        None => true,
    };
    started.send_modify(|count| *count += 1);
    let mut last_commit = Instant::now();
    let mut uncommitted = false;
    // Records taken since the last commit: what a restart reads again.
    let mut taken_since_commit = 0i64;
    let mut sent_all = true;
    let mut owned: Vec<(String, i32)> = Vec::new();
    // Zero: the first assignment too may take partitions over from a running process.
    let mut assignments_seen = 0;
    loop {
        if !restored || shared.is_hard() || (shared.is_stopping() && !shared.bus.drains_on_stop()) {
            break;
        }
        let next = tokio::select! {
            next = consumer.next_batch(batching.max, batching.linger, IDLE) => next.map_err(bus_error)?,
            () = shared.hard_stopped() => break,
        };
        let Some(records) = next else { break };
        report_lag(shared, &group, &consumer, &mut owned);
        if records.is_empty() {
            if let Some(changelog) = &mut changelog {
                if !changelog.catch_up(shared, &name, &mut stage, Reach::Fetched).await? {
                    break;
                }
            }
            let durable = flush(&name, &mut stage, false).await?;
            if durable && uncommitted && last_commit.elapsed() >= COMMIT_EVERY {
                commit(&name, &mut consumer).await;
                (last_commit, uncommitted, taken_since_commit) = (Instant::now(), false, 0);
            }
            let ending = shared.options.once || shared.is_stopping();
            if ending
                && upstream.iter().all(|done| *done.borrow())
                && consumer.exact_lag().await.map_err(bus_error)? == Some(0)
            {
                break;
            }
            continue;
        }
        let started = Instant::now();
        let count = records.len();
        taken_since_commit += count as i64;
        if let Some(changelog) = &mut changelog {
            let assignments = consumer.assignments();
            if assignments != assignments_seen {
                assignments_seen = assignments;
                tracing::info!(stage = %name, "partitions taken over: waiting for their previous owner's last changelog records");
                tokio::time::sleep(TAKEOVER_SETTLE).await;
            }
            if !changelog.catch_up(shared, &name, &mut stage, Reach::End).await? {
                // The batch in hand was not processed: it is read again at the next
                // start.
                sent_all = false;
                break;
            }
        }
        let mut taken = stage.take().expect("the stage is back after every batch");
        let (taken, isolated) = tokio::task::spawn_blocking(move || {
            let isolated = process_isolated(&mut *taken, &records);
            (taken, isolated)
        })
        .await
        .map_err(|join| RuntimeError::Panicked {
            task: format!("the {name} stage"),
            message: join.to_string(),
        })?;
        stage = Some(taken);
        let isolated = isolated?;
        for _ in 0..isolated.panics {
            shared.metrics.record_panic(&name);
        }
        if !send(shared, &name, isolated.output).await {
            sent_all = false;
            break;
        }
        uncommitted = true;
        let durable = flush(&name, &mut stage, false).await?;
        if durable && last_commit.elapsed() >= COMMIT_EVERY {
            commit(&name, &mut consumer).await;
            (last_commit, uncommitted, taken_since_commit) = (Instant::now(), false, 0);
        }
        shared.metrics.record_batch(&name, count, started.elapsed());
    }
    // What the last batches produced was acknowledged: make the stage's own state
    // durable and commit. After a send that did not finish, neither moves, so the
    // batch is read again at the next start.
    if sent_all && flush(&name, &mut stage, true).await? {
        commit(&name, &mut consumer).await;
        taken_since_commit = 0;
    }
    let unread = consumer.lag().iter().map(|(_, _, lag)| lag).sum::<i64>() + taken_since_commit;
    if let Err(error) = consumer.close().await {
        tracing::warn!(stage = %name, %error, "closing the consumer");
    }
    if let Some(changelog) = changelog {
        changelog.close(&name).await;
    }
    Ok(StageEnd { unread })
}

/// Updates the lag series of the partitions `consumer` owns, dropping those it lost.
fn report_lag(shared: &Shared, group: &str, consumer: &Consumer, owned: &mut Vec<(String, i32)>) {
    let lags = consumer.lag();
    for (topic, partition) in owned.iter().filter(|(t, p)| !lags.iter().any(|(lt, lp, _)| lt == t && lp == p))
    {
        shared.metrics.forget_partition(group, topic, *partition);
    }
    *owned = lags.iter().map(|(topic, partition, _)| (topic.clone(), *partition)).collect();
    for (topic, partition, lag) in lags {
        shared.metrics.set_consumer_lag(group, &topic, partition, lag);
    }
}

/// Commits the consumer's offsets; a failed commit is logged and tried again with the
/// next one, since it only means that a restart reads those records again.
async fn commit(stage: &str, consumer: &mut Consumer) {
    if let Err(error) = consumer.commit().await {
        tracing::warn!(stage, %error, "cannot commit offsets; a restart reads these records again");
    }
}

/// Calls the stage's flush on a blocking thread; a panic there fails the stage.
async fn flush(name: &str, stage: &mut Option<Box<dyn Stage>>, force: bool) -> Result<bool, RuntimeError> {
    let mut taken = stage.take().expect("the stage is back after every batch");
    let (taken, flushed) = tokio::task::spawn_blocking(move || {
        let flushed = catch_unwind(AssertUnwindSafe(|| taken.flush(force)));
        (taken, flushed)
    })
    .await
    .map_err(|join| RuntimeError::Panicked {
        task: format!("the {name} stage"),
        message: join.to_string(),
    })?;
    *stage = Some(taken);
    match flushed {
        Ok(result) => Ok(result?),
        Err(panic) => Err(RuntimeError::Panicked {
            task: format!("the {name} stage, flushing"),
            message: panic_message(&*panic),
        }),
    }
}

/// Sends what a batch produced and waits for the acknowledgements, trying again with
/// backoff while the bus refuses (a broker away, a full disk); returns false when the
/// run stopped hard first, with some of it maybe not sent.
pub(crate) async fn send(shared: &Shared, stage: &str, output: Output) -> bool {
    let (topics, dead_letters) = output.into_parts();
    let dead_count = dead_letters.len() as u64;
    let mut reasons = std::collections::BTreeMap::new();
    for (_, reason) in &dead_letters {
        *reasons.entry(*reason).or_insert(0u64) += 1;
    }
    let mut pending: Vec<(String, Vec<Message>)> = topics;
    if !dead_letters.is_empty() {
        pending.push((
            shared.options.dead_letter_topic.clone(),
            dead_letters.into_iter().map(|(m, _)| m).collect(),
        ));
    }
    let mut wait = RETRY_FIRST;
    while !pending.is_empty() {
        let (topic, messages) = &pending[0];
        let sent = tokio::select! {
            sent = shared.producer.send_all(topic, messages.clone()) => sent,
            () = shared.hard_stopped() => return false,
        };
        match sent {
            Ok(()) => {
                pending.remove(0);
                wait = RETRY_FIRST;
            }
            Err(error) => {
                if shared.is_hard() {
                    return false;
                }
                tracing::warn!(stage, topic = %topic, %error, retry_in_ms = wait.as_millis() as u64, "the bus did not take a batch's results; retrying");
                shared.metrics.record_send_retry(stage);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shared.hard_stopped() => return false,
                }
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
    for (reason, count) in reasons {
        shared.metrics.record_dead_letters(stage, reason, count);
    }
    shared.summary.add_dead_letters(dead_count);
    true
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use cull_bus::dead_letter::STAGE_HEADER;
    use cull_bus::{EmbeddedConfig, Record};

    use super::*;
    use crate::stage::StageError;

    /// Copies each record to `to`, sleeping `pause` per batch; panics on the key
    /// `poison`; fails its flush when `fail_flush`.
    struct Copy {
        to: String,
        pause: Duration,
        fail_flush: bool,
    }

    impl Stage for Copy {
        fn name(&self) -> &str {
            "copy"
        }

        fn process(&mut self, records: &[Record], out: &mut Output) -> Result<(), StageError> {
            std::thread::sleep(self.pause);
            for record in records {
                assert!(record.key.as_deref() != Some(b"poison"), "a poison record");
                out.send(
                    self.to.as_str(),
                    Message { key: record.key.clone(), payload: record.payload.clone(), headers: Vec::new() },
                );
            }
            Ok(())
        }

        fn flush(&mut self, _force: bool) -> Result<bool, StageError> {
            if self.fail_flush {
                return Err(StageError::new("copy", "the disk is gone"));
            }
            Ok(true)
        }
    }

    /// Keeps what it reads.
    struct Collect {
        name: &'static str,
        seen: Arc<Mutex<Vec<Record>>>,
    }

    impl Stage for Collect {
        fn name(&self) -> &str {
            self.name
        }

        fn process(&mut self, records: &[Record], _out: &mut Output) -> Result<(), StageError> {
            self.seen.lock().unwrap().extend(records.iter().cloned());
            Ok(())
        }
    }

    const BATCH: Batching = Batching { max: 64, linger: Duration::from_millis(5) };

    fn message(key: &str) -> Message {
        Message { key: Some(key.as_bytes().to_vec()), payload: key.as_bytes().to_vec(), headers: Vec::new() }
    }

    /// A pipeline source → `in` → copy → `mid` → collect, plus a dead-letter collector;
    /// the source sends `total` records (or until stopped) and returns.
    struct Pipeline {
        runtime: Runtime,
        summary: Arc<Summary>,
        collected: Arc<Mutex<Vec<Record>>>,
        dead: Arc<Mutex<Vec<Record>>>,
        produced: Arc<Mutex<Vec<String>>>,
    }

    fn pipeline(bus: Bus, once: bool, deadline: Duration, copy: Copy, keys: Vec<String>) -> Pipeline {
        let summary = Arc::new(Summary::default());
        let options = RunOptions { once, deadline, dead_letter_topic: "dead".into() };
        let mut runtime = Runtime::new(bus, Arc::new(Metrics::new()), Arc::clone(&summary), options).unwrap();
        let collected = Arc::new(Mutex::new(Vec::new()));
        let dead = Arc::new(Mutex::new(Vec::new()));
        runtime.stage(copy, &["in"], "copiers", &["mid"], BATCH).unwrap();
        runtime
            .stage(
                Collect { name: "collect", seen: Arc::clone(&collected) },
                &["mid"],
                "collectors",
                &[],
                BATCH,
            )
            .unwrap();
        runtime
            .stage(Collect { name: "dead-letters", seen: Arc::clone(&dead) }, &["dead"], "dead", &[], BATCH)
            .unwrap();
        let produced = Arc::new(Mutex::new(Vec::new()));
        let (producer, sent) = (runtime.producer().clone(), Arc::clone(&produced));
        runtime.source("keys", &["in"], move |stop| async move {
            for chunk in keys.chunks(10) {
                if *stop.borrow() {
                    break;
                }
                if producer.send_all("in", chunk.iter().map(|k| message(k)).collect()).await.is_ok() {
                    sent.lock().unwrap().extend(chunk.iter().cloned());
                }
                tokio::task::yield_now().await;
            }
            Ok(0)
        });
        Pipeline { runtime, summary, collected, dead, produced }
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("k{i}")).collect()
    }

    fn copy(pause_ms: u64) -> Copy {
        Copy { to: "mid".into(), pause: Duration::from_millis(pause_ms), fail_flush: false }
    }

    fn payloads(records: &Mutex<Vec<Record>>) -> Vec<String> {
        records.lock().unwrap().iter().map(|r| String::from_utf8_lossy(&r.payload).into_owned()).collect()
    }

    async fn run_bounded(runtime: Runtime, signals: mpsc::UnboundedReceiver<()>) -> Finished {
        tokio::time::timeout(Duration::from_secs(60), runtime.run(signals))
            .await
            .expect("the run ends: no hang")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn once_drains_every_stage_in_order() {
        let p = pipeline(
            Bus::Embedded(EmbeddedBus::in_memory(100)),
            true,
            Duration::from_secs(30),
            copy(0),
            keys(1000),
        );
        let (_signals, receiver) = mpsc::unbounded_channel();
        let finished = run_bounded(p.runtime, receiver).await;
        finished.result.unwrap();
        assert_eq!(payloads(&p.collected), keys(1000), "every record, in order, once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_signal_stops_the_sources_and_drains_what_they_handed_over() {
        let many = keys(1_000_000);
        let p = pipeline(
            Bus::Embedded(EmbeddedBus::in_memory(200)),
            false,
            Duration::from_secs(30),
            copy(2),
            many,
        );
        let (signals, receiver) = mpsc::unbounded_channel();
        let run = tokio::spawn(run_bounded(p.runtime, receiver));
        tokio::time::sleep(Duration::from_millis(300)).await;
        signals.send(()).unwrap();
        run.await.unwrap().result.unwrap();
        let produced = p.produced.lock().unwrap().clone();
        assert!(!produced.is_empty() && produced.len() < 1_000_000, "{} produced", produced.len());
        assert_eq!(payloads(&p.collected), produced, "everything acknowledged reached the end");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_deadline_the_run_stops_and_names_what_was_left() {
        let p = pipeline(
            Bus::Embedded(EmbeddedBus::in_memory(100_000)),
            false,
            Duration::from_millis(300),
            copy(200),
            keys(5000),
        );
        let (signals, receiver) = mpsc::unbounded_channel();
        let run = tokio::spawn(run_bounded(p.runtime, receiver));
        tokio::time::sleep(Duration::from_millis(500)).await;
        signals.send(()).unwrap();
        let finished = run.await.unwrap();
        let Err(RuntimeError::Deadline { left, .. }) = &finished.result else {
            panic!("{:?}", finished.result)
        };
        let copy = left.iter().find(|l| l.stage == "copy").expect("the slow stage is named");
        assert!(copy.records.is_some_and(|n| n > 0), "{left:?}");
        let message = finished.result.unwrap_err().to_string();
        assert!(
            message.contains("not read by the copy stage (group copiers)")
                && message.contains("shutdown.deadline_secs"),
            "{message}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_stage_ends_the_run_with_its_error() {
        let failing = Copy { fail_flush: true, ..copy(0) };
        let p = pipeline(
            Bus::Embedded(EmbeddedBus::in_memory(100)),
            true,
            Duration::from_secs(30),
            failing,
            keys(100),
        );
        let (_signals, receiver) = mpsc::unbounded_channel();
        let finished = run_bounded(p.runtime, receiver).await;
        let message = finished.result.unwrap_err().to_string();
        assert_eq!(message, "stage copy: the disk is gone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_poison_record_is_dead_lettered_once_and_never_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let config = EmbeddedConfig { dir: dir.path().to_path_buf(), ..EmbeddedConfig::default() };
        let mut input = keys(50);
        input.insert(25, "poison".into());
        {
            let p = pipeline(
                Bus::Embedded(EmbeddedBus::open(&config).unwrap()),
                true,
                Duration::from_secs(30),
                copy(0),
                input,
            );
            let (_signals, receiver) = mpsc::unbounded_channel();
            let finished = run_bounded(p.runtime, receiver).await;
            finished.result.unwrap();
            assert_eq!(payloads(&p.collected), keys(50), "the batch went on around it");
            let dead = p.dead.lock().unwrap().clone();
            assert_eq!(dead.len(), 1);
            assert_eq!(dead[0].payload, b"poison");
            let stage = dead[0].headers.iter().find(|(n, _)| n == STAGE_HEADER).map(|(_, v)| v.clone());
            assert_eq!(stage.as_deref(), Some(&b"copy"[..]));
            assert_eq!(p.summary.counts().dead_letters, 1);
        }
        // A restart on the same log: the groups committed past the poison record.
        let p = pipeline(
            Bus::Embedded(EmbeddedBus::open(&config).unwrap()),
            true,
            Duration::from_secs(30),
            copy(0),
            Vec::new(),
        );
        let (_signals, receiver) = mpsc::unbounded_channel();
        run_bounded(p.runtime, receiver).await.result.unwrap();
        assert!(p.collected.lock().unwrap().is_empty() && p.dead.lock().unwrap().is_empty());
    }
}
