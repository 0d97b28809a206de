//! Kafka through rdkafka: topic creation, the idempotent producer and the group consumer.
//!
//! See the crate documentation for why the consumer is a `BaseConsumer` on a thread of
//! its own and how offsets are committed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

use crate::{lock, BusError, Consumer, Message, Producer, Record};

/// How long the poll thread waits in one `poll`, which bounds how long it takes to
/// notice a stop request.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// The first wait after librdkafka's local queue was full; it doubles up to
/// [`QUEUE_FULL_MAX_BACKOFF`].
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);
const QUEUE_FULL_MAX_BACKOFF: Duration = Duration::from_millis(500);

/// The settings of the Kafka clients.
///
/// The defaults suit a local broker; a deployment sets at least `brokers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// The bootstrap broker list, `host:port` separated by commas.
    pub brokers: String,
    /// The consumer group; instances with the same group split the partitions.
    pub group_id: String,
    /// The partitions of topics that [`ensure_topics`] creates; the upper bound of
    /// consumer instances that do useful work.
    pub partitions: i32,
    /// The replication factor of topics that [`ensure_topics`] creates.
    pub replication: i32,
    /// The client id that the brokers log and meter.
    pub client_id: String,
    /// How long the group waits for a silent consumer before it hands its partitions
    /// to another (`session.timeout.ms`).
    pub session_timeout: Duration,
    /// How long a consumer may go without polling before it leaves the group
    /// (`max.poll.interval.ms`); polling stops while the stage does not take records,
    /// so this bounds how long one batch may take.
    pub max_poll_interval: Duration,
    /// How long the producer tries to deliver one record before it reports a failure
    /// (`message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// How long admin requests such as topic creation may take.
    pub request_timeout: Duration,
    /// How often librdkafka reports statistics, from which [`Consumer::lag`] is read
    /// (`statistics.interval.ms`).
    ///
    /// [`Consumer::lag`]: crate::Consumer::lag
    pub stats_interval: Duration,
    /// How many fetched records wait between the poll thread and the stage.
    pub channel_capacity: usize,
    /// How long a broker may hold a fetch while it waits for new records
    /// (`fetch.wait.max.ms`): at low load this is added to every mention's latency,
    /// so it is far below librdkafka's 500 ms default.
    pub fetch_wait: Duration,
    /// Further librdkafka properties, applied last so they win (e.g. `security.protocol`).
    pub overrides: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> KafkaConfig {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_string(),
            group_id: "cull".to_string(),
            partitions: 3,
            replication: 1,
            client_id: "cull".to_string(),
            session_timeout: Duration::from_secs(10),
            max_poll_interval: Duration::from_secs(300),
            delivery_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            stats_interval: Duration::from_secs(5),
            channel_capacity: 1024,
            fetch_wait: Duration::from_millis(20),
            overrides: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Returns the properties that every client shares, before the overrides.
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers).set("client.id", &self.client_id);
        config
    }

    fn with_overrides(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.overrides {
            config.set(key, value);
        }
        config
    }
}

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

/// Routes librdkafka's log lines and errors to `tracing`, where the rest of cull logs.
#[derive(Clone, Copy, Debug, Default)]
struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
    }
}

fn log_to_tracing(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(facility, message, "librdkafka"),
        RDKafkaLogLevel::Warning => tracing::warn!(facility, message, "librdkafka"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(facility, message, "librdkafka"),
        RDKafkaLogLevel::Debug => tracing::debug!(facility, message, "librdkafka"),
    }
}

/// Creates those of `topics` that do not exist yet, with the configured partitions and
/// replication, because the pipeline must not depend on broker-side auto-creation
/// (tansu, for one, does not auto-create). Topics that exist are left as they are,
/// whatever their partition count.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[&str]) -> Result<(), BusError> {
    // A creation request that names a topic twice is refused whole, and callers do name
    // topics twice (several queues sharing one ticket topic).
    let mut unique: Vec<&str> = Vec::with_capacity(topics.len());
    for topic in topics {
        if !unique.contains(topic) {
            unique.push(topic);
        }
    }
    let topics = unique.as_slice();
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<TracingContext> = config
        .with_overrides(config.client_config())
        .create_with_context(TracingContext)
        .map_err(|source| BusError::Client {
            role: "admin client",
            brokers: config.brokers.clone(),
            source: source.into(),
        })?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| NewTopic::new(topic, config.partitions, TopicReplication::Fixed(config.replication)))
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(config.request_timeout))
        .operation_timeout(Some(config.request_timeout));
    let results = admin.create_topics(&new_topics, &options).await.map_err(|source| BusError::Admin {
        topics: topics.join(","),
        brokers: config.brokers.clone(),
        source: source.into(),
    })?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, partitions = config.partitions, "created topic"),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic, "topic exists")
            }
            Err((topic, code)) => {
                return Err(BusError::CreateTopic { topic, brokers: config.brokers.clone(), code })
            }
        }
    }
    Ok(())
}

/// Returns an idempotent producer: the broker drops the duplicates that the client's
/// own retries would otherwise write, so a retry never doubles a ticket.
pub fn kafka_producer(config: &KafkaConfig) -> Result<Producer, BusError> {
    let producer = idempotent_producer(config)?;
    Ok(Producer::Kafka(KafkaProducer {
        current: Arc::new(Mutex::new((0, producer))),
        config: Arc::new(config.clone()),
        brokers: Arc::from(config.brokers.as_str()),
    }))
}

fn idempotent_producer(config: &KafkaConfig) -> Result<FutureProducer<TracingContext>, BusError> {
    let mut client = config.client_config();
    client.set("enable.idempotence", "true").set("message.timeout.ms", millis(config.delivery_timeout));
    config.with_overrides(client).create_with_context(TracingContext).map_err(|source| BusError::Client {
        role: "producer",
        brokers: config.brokers.clone(),
        source: source.into(),
    })
}

/// The Kafka half of [`Producer`](crate::Producer).
///
/// # Why a failed delivery replaces the client
///
/// An idempotent producer numbers its records per partition. When records time out
/// (the broker was gone for longer than [`KafkaConfig::delivery_timeout`]), librdkafka
/// must start a new epoch to go on, which needs broker support (KIP-360) that not every
/// Kafka-protocol broker has: against tansu the producer then fails every later record
/// with an unknown error, forever. The records of a failed delivery are reported
/// failed to the caller, who retries them anyway, so the failed client is replaced by a
/// new one (a new producer id, numbering from zero) and the retry goes through.
#[derive(Clone)]
pub struct KafkaProducer {
    /// The client in use and its generation, so that concurrent failures replace it once.
    current: Arc<Mutex<(u64, FutureProducer<TracingContext>)>>,
    config: Arc<KafkaConfig>,
    brokers: Arc<str>,
}

impl fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaProducer").field("brokers", &self.brokers).finish()
    }
}

impl KafkaProducer {
    /// Enqueues every message, then awaits every delivery report.
    ///
    /// Enqueueing all before awaiting any keeps the whole batch in flight at once;
    /// when librdkafka's local queue is full the producer backs off and retries
    /// rather than failing, since the queue drains as the broker acknowledges.
    pub(crate) async fn send_all(&self, topic: &str, messages: Vec<Message>) -> Result<(), BusError> {
        let (generation, producer) = lock(&self.current).clone();
        let sent = self.send_with(&producer, topic, &messages).await;
        if sent.is_err() {
            self.replace(generation);
        }
        sent
    }

    async fn send_with(
        &self,
        producer: &FutureProducer<TracingContext>,
        topic: &str,
        messages: &[Message],
    ) -> Result<(), BusError> {
        let mut deliveries = Vec::with_capacity(messages.len());
        for message in messages {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(&message.payload);
            if let Some(key) = &message.key {
                record = record.key(key.as_slice());
            }
            if !message.headers.is_empty() {
                record = record.headers(owned_headers(&message.headers));
            }
            let mut backoff = QUEUE_FULL_BACKOFF;
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(QUEUE_FULL_MAX_BACKOFF);
                    }
                    Err((source, _)) => return Err(self.produce_error(topic, source)),
                }
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => return Err(self.produce_error(topic, source)),
                Err(_canceled) => return Err(self.produce_error(topic, KafkaError::Canceled)),
            }
        }
        Ok(())
    }

    /// Replaces the client of `generation` after a failed delivery (see the type's
    /// documentation); a later generation was already replaced by another sender.
    fn replace(&self, generation: u64) {
        let mut current = lock(&self.current);
        if current.0 != generation {
            return;
        }
        match idempotent_producer(&self.config) {
            Ok(producer) => {
                tracing::warn!(brokers = %self.brokers, "a delivery failed: producing with a new client from now on");
                *current = (generation + 1, producer);
            }
            Err(error) => tracing::warn!(%error, "cannot create a new producer; keeping the old one"),
        }
    }

    fn produce_error(&self, topic: &str, source: KafkaError) -> BusError {
        BusError::Produce {
            topic: topic.to_string(),
            brokers: self.brokers.to_string(),
            source: source.into(),
        }
    }
}

fn owned_headers(headers: &[(String, Vec<u8>)]) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new_with_capacity(headers.len()), |owned, (key, value)| {
        owned.insert(Header { key, value: Some(value.as_slice()) })
    })
}

/// Returns a consumer of `topics` in the configured group.
///
/// Offsets are never committed automatically (`enable.auto.commit=false`): only
/// [`Consumer::commit`](crate::Consumer::commit) and a partition revoke commit, and
/// only what the stage has acknowledged. A group with no committed offset starts at
/// the earliest record, so nothing produced before the first start is skipped.
pub fn kafka_consumer(config: &KafkaConfig, topics: &[&str]) -> Result<Consumer, BusError> {
    let brokers = config.brokers.clone();
    let mut client = config.client_config();
    client
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", millis(config.session_timeout))
        .set("max.poll.interval.ms", millis(config.max_poll_interval))
        .set("statistics.interval.ms", millis(config.stats_interval))
        .set("fetch.wait.max.ms", millis(config.fetch_wait));
    let group = Arc::new(Mutex::new(Group::default()));
    let context = GroupContext { group: Arc::clone(&group) };
    let consumer: BaseConsumer<GroupContext> =
        config.with_overrides(client).create_with_context(context).map_err(|source| BusError::Client {
            role: "consumer",
            brokers: brokers.clone(),
            source: source.into(),
        })?;
    consumer.subscribe(topics).map_err(|source| BusError::Subscribe {
        topics: topics.join(","),
        brokers: brokers.clone(),
        source: source.into(),
    })?;
    let consumer = Arc::new(consumer);
    let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name("cull-kafka-poll".to_string())
        .spawn({
            let consumer = Arc::clone(&consumer);
            let group = Arc::clone(&group);
            let stop = Arc::clone(&stop);
            move || poll_loop(&consumer, &group, &stop, &tx)
        })
        .map_err(|error| BusError::ConsumerStopped {
            brokers: brokers.clone(),
            reason: format!("cannot start the poll thread: {error}"),
        })?;
    Ok(Consumer::Kafka(Box::new(KafkaConsumer {
        rx,
        group,
        consumer: Some(consumer),
        stop,
        thread: Some(thread),
        handed_out: HashMap::new(),
        pending_error: None,
        brokers,
    })))
}

/// A partition: topic and partition number.
type Partition = (String, i32);

/// What the consumer knows about its partitions, shared between the stage, the poll
/// thread and the rebalance callbacks (which run on the poll thread).
#[derive(Debug, Default)]
struct Group {
    /// The partitions assigned now, each with the generation of its assignment.
    assigned: HashMap<Partition, u64>,
    /// Counts assignments, so that records fetched under an earlier assignment of a
    /// partition can be told apart.
    generation: u64,
    /// The offset to commit per partition: one past the last record that the stage
    /// acknowledged with `commit`.
    acknowledged: HashMap<Partition, i64>,
    /// The high watermark and librdkafka's own lag per partition, from the statistics.
    watermarks: HashMap<Partition, Watermark>,
}

#[derive(Clone, Copy, Debug)]
struct Watermark {
    high: i64,
    lag: i64,
}

struct GroupContext {
    group: Arc<Mutex<Group>>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka consumer error");
    }

    fn stats(&self, statistics: Statistics) {
        let mut group = lock(&self.group);
        for (name, topic) in statistics.topics {
            for (partition, stats) in topic.partitions {
                // librdkafka reports an internal partition -1 for unassigned messages.
                if partition >= 0 {
                    group.watermarks.insert(
                        (name.clone(), partition),
                        Watermark { high: stats.hi_offset, lag: stats.consumer_lag },
                    );
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    /// Commits what the stage acknowledged on the partitions being taken away, before
    /// they go, so that their next owner starts right after it; records fetched but
    /// not acknowledged are left for the next owner to read again.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else { return };
        let mut offsets = TopicPartitionList::new();
        {
            let mut group = lock(&self.group);
            for element in revoked.elements() {
                let partition = (element.topic().to_string(), element.partition());
                group.assigned.remove(&partition);
                if let Some(offset) = group.acknowledged.remove(&partition) {
                    add_offset(&mut offsets, &partition, offset);
                }
            }
        }
        tracing::info!(partitions = revoked.count(), committing = offsets.count(), "partitions revoked");
        if offsets.count() > 0 {
            if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
                tracing::warn!(%error, "commit on revoke failed; the next owner reads those records again");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                let mut group = lock(&self.group);
                group.generation += 1;
                let generation = group.generation;
                for element in assigned.elements() {
                    group.assigned.insert((element.topic().to_string(), element.partition()), generation);
                }
                tracing::info!(partitions = assigned.count(), generation, "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}

fn add_offset(offsets: &mut TopicPartitionList, partition: &Partition, offset: i64) {
    if let Err(error) = offsets.add_partition_offset(&partition.0, partition.1, Offset::Offset(offset)) {
        tracing::warn!(topic = partition.0, partition = partition.1, %error, "cannot add an offset to commit");
    }
}

/// What the poll thread hands to the stage.
enum Polled {
    /// A record, with the generation of the assignment under which it was fetched.
    Record(Record, u64),
    /// An error that the client does not retry by itself.
    Error(KafkaError),
}

/// Polls `consumer` until told to stop or until the stage drops its end of the channel.
///
/// Rebalance and statistics callbacks run inside `poll`, so they run here too.
fn poll_loop(
    consumer: &BaseConsumer<GroupContext>,
    group: &Mutex<Group>,
    stop: &AtomicBool,
    tx: &mpsc::Sender<Polled>,
) {
    while !stop.load(Ordering::Relaxed) {
        let polled = match consumer.poll(POLL_TIMEOUT) {
            None => continue,
            Some(Ok(message)) => {
                let partition = (message.topic().to_string(), message.partition());
                let Some(&generation) = lock(group).assigned.get(&partition) else {
                    tracing::debug!(
                        topic = partition.0,
                        partition = partition.1,
                        "dropping a record of an unassigned partition"
                    );
                    continue;
                };
                Polled::Record(to_record(&message), generation)
            }
            Some(Err(error)) if is_fatal(&error) => Polled::Error(error),
            Some(Err(error)) => {
                tracing::warn!(%error, "kafka consumer error, retrying");
                continue;
            }
        };
        if tx.blocking_send(polled).is_err() {
            break;
        }
    }
}

/// Returns whether a consumer error needs the stage's attention; librdkafka retries
/// the others (broker down, transport failures) by itself.
fn is_fatal(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
        )
    )
}

fn to_record(message: &BorrowedMessage<'_>) -> Record {
    let headers = message
        .headers()
        .map(|headers| {
            headers.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect()
        })
        .unwrap_or_default();
    Record {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

/// Returns whether a failed commit only means that the group is rebalancing, in which
/// case the revoke callback commits what was acknowledged and the error is no news.
fn is_rebalance_error(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::NoOffset
        )
    )
}

/// The Kafka half of [`Consumer`](crate::Consumer).
pub struct KafkaConsumer {
    rx: mpsc::Receiver<Polled>,
    group: Arc<Mutex<Group>>,
    /// `None` once closed. The poll thread holds the other reference, so that the
    /// last one, whose drop leaves the group and blocks meanwhile, drops there and
    /// not on the runtime.
    consumer: Option<Arc<BaseConsumer<GroupContext>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// One past the last offset handed to the stage per partition, since the last
    /// commit.
    handed_out: HashMap<Partition, i64>,
    /// An error that arrived while a batch was being filled, reported by the next call
    /// so that the batch is not lost.
    pending_error: Option<BusError>,
    brokers: String,
}

impl fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("brokers", &self.brokers)
            .field("group", &*lock(&self.group))
            .field("handed_out", &self.handed_out)
            .finish()
    }
}

impl KafkaConsumer {
    pub(crate) async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
        idle: Duration,
    ) -> Result<Vec<Record>, BusError> {
        if let Some(error) = self.pending_error.take() {
            return Err(error);
        }
        let max = max.max(1);
        let mut batch = Vec::new();
        let mut deadline = Instant::now() + idle;
        while batch.len() < max {
            let polled = match timeout_at(deadline, self.rx.recv()).await {
                Err(_elapsed) => break,
                Ok(Some(polled)) => polled,
                Ok(None) => {
                    let error = self.stopped("the poll thread ended");
                    if batch.is_empty() {
                        return Err(error);
                    }
                    self.pending_error = Some(error);
                    break;
                }
            };
            match polled {
                Polled::Record(record, generation) => {
                    if !self.is_current(&record, generation) {
                        // Fetched before its partition was revoked: the partition's
                        // owner reads it again from the committed offset.
                        continue;
                    }
                    if batch.is_empty() {
                        deadline = Instant::now() + linger;
                    }
                    let next = self.handed_out.entry((record.topic.clone(), record.partition)).or_insert(0);
                    *next = (*next).max(record.offset + 1);
                    batch.push(record);
                }
                Polled::Error(source) => {
                    let error = BusError::Consume { brokers: self.brokers.clone(), source: source.into() };
                    if batch.is_empty() {
                        return Err(error);
                    }
                    self.pending_error = Some(error);
                    break;
                }
            }
        }
        Ok(batch)
    }

    fn is_current(&self, record: &Record, generation: u64) -> bool {
        lock(&self.group).assigned.get(&(record.topic.clone(), record.partition)) == Some(&generation)
    }

    pub(crate) async fn commit(&mut self) -> Result<(), BusError> {
        let mut offsets = TopicPartitionList::new();
        {
            let mut group = lock(&self.group);
            for (partition, next) in self.handed_out.drain() {
                // A partition revoked since is read again by its new owner; committing
                // for it could move that owner's offset backwards.
                if group.assigned.contains_key(&partition) {
                    let acknowledged = group.acknowledged.entry(partition).or_insert(next);
                    *acknowledged = (*acknowledged).max(next);
                }
            }
            for (partition, offset) in &group.acknowledged {
                add_offset(&mut offsets, partition, *offset);
            }
        }
        if offsets.count() == 0 {
            return Ok(());
        }
        let consumer = Arc::clone(self.consumer.as_ref().ok_or_else(|| self.stopped("closed"))?);
        let committed = tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
            .await
            .map_err(|error| self.stopped(&format!("the commit task failed: {error}")))?;
        match committed {
            Ok(()) => Ok(()),
            Err(error) if is_rebalance_error(&error) => {
                tracing::info!(%error, "commit skipped during a rebalance");
                Ok(())
            }
            Err(source) => Err(BusError::Commit { brokers: self.brokers.clone(), source: source.into() }),
        }
    }

    pub(crate) fn assignments(&self) -> u64 {
        lock(&self.group).generation
    }

    pub(crate) fn lag(&self) -> Vec<(String, i32, i64)> {
        let group = lock(&self.group);
        let mut lag: Vec<(String, i32, i64)> = group
            .assigned
            .keys()
            .filter_map(|partition| {
                let watermark = group.watermarks.get(partition)?;
                let position =
                    self.handed_out.get(partition).copied().max(group.acknowledged.get(partition).copied());
                let lag = match position {
                    Some(position) if watermark.high >= 0 => (watermark.high - position).max(0),
                    _ if watermark.lag >= 0 => watermark.lag,
                    _ => return None,
                };
                Some((partition.0.clone(), partition.1, lag))
            })
            .collect();
        lag.sort();
        lag
    }

    /// Returns the records of the assigned partitions not handed out yet, asking the
    /// broker for the high watermarks now (the statistics behind [`lag`] can be
    /// seconds old); `None` before the group assigned this consumer a partition.
    ///
    /// A partition this consumer has not read from since it started counts from the
    /// group's committed offset, or from its low watermark when the group has none.
    ///
    /// [`lag`]: KafkaConsumer::lag
    pub(crate) async fn exact_lag(&self) -> Result<Option<i64>, BusError> {
        let positions: Vec<(Partition, Option<i64>)> = {
            let group = lock(&self.group);
            group
                .assigned
                .keys()
                .map(|partition| {
                    let known = self
                        .handed_out
                        .get(partition)
                        .copied()
                        .max(group.acknowledged.get(partition).copied());
                    (partition.clone(), known)
                })
                .collect()
        };
        if positions.is_empty() {
            return Ok(None);
        }
        let consumer = Arc::clone(self.consumer.as_ref().ok_or_else(|| self.stopped("closed"))?);
        let brokers = self.brokers.clone();
        let lag = tokio::task::spawn_blocking(move || -> Result<i64, KafkaError> {
            let timeout = Duration::from_secs(5);
            let mut unknown = TopicPartitionList::new();
            for ((topic, partition), known) in &positions {
                if known.is_none() {
                    unknown.add_partition(topic, *partition);
                }
            }
            let committed =
                if unknown.count() > 0 { Some(consumer.committed_offsets(unknown, timeout)?) } else { None };
            let mut total = 0;
            for ((topic, partition), known) in positions {
                let (low, high) = consumer.fetch_watermarks(&topic, partition, timeout)?;
                let position = known.unwrap_or_else(|| {
                    committed
                        .as_ref()
                        .and_then(|c| c.find_partition(&topic, partition))
                        .and_then(|element| element.offset().to_raw())
                        .filter(|offset| *offset >= 0)
                        .unwrap_or(low)
                });
                total += (high - position).max(0);
            }
            Ok(total)
        })
        .await
        .map_err(|error| self.stopped(&format!("the watermark task failed: {error}")))?
        .map_err(|source| BusError::Consume { brokers, source: source.into() })?;
        Ok(Some(lag))
    }

    /// Stops the poll thread and returns it to be joined; idempotent.
    fn shutdown(&mut self) -> Option<JoinHandle<()>> {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes a poll thread blocked on a full channel.
        self.rx.close();
        self.consumer = None;
        self.thread.take()
    }

    pub(crate) async fn close(&mut self) -> Result<(), BusError> {
        let Some(thread) = self.shutdown() else { return Ok(()) };
        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_panic)) => Err(self.stopped("the poll thread panicked")),
            Err(error) => Err(self.stopped(&format!("joining the poll thread failed: {error}"))),
        }
    }

    fn stopped(&self, reason: &str) -> BusError {
        BusError::ConsumerStopped { brokers: self.brokers.clone(), reason: reason.to_string() }
    }
}

impl Drop for KafkaConsumer {
    /// Stops the poll thread without waiting for it: it leaves the group on its own,
    /// committing what was acknowledged. [`Consumer::close`](crate::Consumer::close)
    /// waits for that.
    fn drop(&mut self) {
        drop(self.shutdown());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_the_defaults() {
        let mut config = KafkaConfig::default();
        config.overrides.insert("client.id".to_string(), "other".to_string());
        let client = config.with_overrides(config.client_config());
        assert_eq!(client.get("client.id"), Some("other"));
        assert_eq!(client.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    }

    #[test]
    fn a_bad_setting_names_the_client_and_the_brokers() {
        let mut config = KafkaConfig::default();
        config.overrides.insert("no.such.property".to_string(), "1".to_string());
        let error = kafka_producer(&config).unwrap_err();
        assert!(matches!(&error, BusError::Client { role: "producer", .. }), "{error:?}");
        assert!(error.to_string().contains("127.0.0.1:9092"), "{error}");
        let error = kafka_consumer(&config, &["t"]).unwrap_err();
        assert!(matches!(&error, BusError::Client { role: "consumer", .. }), "{error:?}");
    }

    #[test]
    fn only_errors_librdkafka_does_not_retry_reach_the_stage() {
        let fatal = KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition);
        let transient = KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure);
        assert!(is_fatal(&fatal));
        assert!(!is_fatal(&transient));
    }

    #[test]
    fn headers_keep_their_order_and_bytes() {
        let headers = owned_headers(&[("a".to_string(), b"1".to_vec()), ("b".to_string(), vec![0, 255])]);
        let back: Vec<(String, Vec<u8>)> =
            headers.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect();
        assert_eq!(back, [("a".to_string(), b"1".to_vec()), ("b".to_string(), vec![0, 255])]);
    }
}
