//! The embedded bus: bounded in-process topics for one machine.
//!
//! A topic is a `VecDeque` behind a mutex and two [`Notify`]s, one that wakes consumers
//! when records arrive and one that wakes producers when room appears. A channel from
//! tokio would give the bounded queue, but not the queue length for [`lag`] nor a
//! batch taken under one lock, and several consumers of one topic would need a shared
//! receiver anyway.
//!
//! [`lag`]: crate::Consumer::lag

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{timeout_at, Instant};

use crate::{lock, BusError, Consumer, Message, Producer, Record};

/// An in-process bus of bounded topics, each with one partition.
///
/// It stands in for Kafka when cull runs on one machine: the same stage code produces
/// and consumes through [`Producer`] and [`Consumer`], and a full topic makes its
/// producers wait, so a slow stage slows the stages before it instead of filling
/// memory. Topics are created on first use. Clones share the same topics.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Bus>,
}

impl fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.state);
        f.debug_struct("EmbeddedBus")
            .field("capacity_per_topic", &self.inner.capacity)
            .field("topics", &state.topics.keys().collect::<Vec<_>>())
            .field("closed", &state.closed)
            .finish()
    }
}

impl EmbeddedBus {
    /// Returns a bus whose topics hold at most `capacity_per_topic` records each (at
    /// least one, whatever is asked).
    pub fn new(capacity_per_topic: usize) -> EmbeddedBus {
        EmbeddedBus {
            inner: Arc::new(Bus {
                capacity: capacity_per_topic.max(1),
                state: std::sync::Mutex::new(BusState { topics: HashMap::new(), closed: false }),
            }),
        }
    }

    /// Returns a producer that can send to any topic of this bus.
    pub fn producer(&self) -> Producer {
        Producer::Embedded(EmbeddedProducer { bus: Arc::clone(&self.inner) })
    }

    /// Returns a consumer of `topic` in the default group; see
    /// [`EmbeddedBus::group_consumer`].
    pub fn consumer(&self, topic: &str) -> Consumer {
        self.group_consumer(topic, "")
    }

    /// Returns a consumer of `topic` in `group`.
    ///
    /// As in Kafka, every group gets every record, and the consumers of one group
    /// share its queue, so each record goes to exactly one of them. A group sees the
    /// records produced after its first consumer was created; records produced to a
    /// topic no group reads yet wait in the default group's queue.
    pub fn group_consumer(&self, topic: &str, group: &str) -> Consumer {
        let topic = self.inner.topic(topic);
        topic.join(group);
        Consumer::Embedded(EmbeddedConsumer { topic, group: group.to_string() })
    }

    /// Closes every topic, present and future: producers get [`BusError::Closed`],
    /// consumers drain what is queued and then get `Ok(None)`, which is how the end of
    /// a finite input travels down the pipeline.
    pub fn close(&self) {
        let topics: Vec<Arc<Topic>> = {
            let mut state = lock(&self.inner.state);
            state.closed = true;
            state.topics.values().cloned().collect()
        };
        for topic in topics {
            topic.close();
        }
    }
}

struct Bus {
    capacity: usize,
    state: std::sync::Mutex<BusState>,
}

struct BusState {
    topics: HashMap<String, Arc<Topic>>,
    closed: bool,
}

impl Bus {
    /// Returns the topic called `name`, creating it (closed if the bus is) when missing.
    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut state = lock(&self.state);
        let closed = state.closed;
        let capacity = self.capacity;
        Arc::clone(state.topics.entry(name.to_string()).or_insert_with(|| {
            Arc::new(Topic {
                name: name.to_string(),
                capacity,
                state: std::sync::Mutex::new(TopicState { queues: BTreeMap::new(), next_offset: 0, closed }),
                readable: Notify::new(),
                writable: Notify::new(),
            })
        }))
    }
}

struct Topic {
    name: String,
    capacity: usize,
    state: std::sync::Mutex<TopicState>,
    /// Wakes consumers waiting for records or for the close.
    readable: Notify,
    /// Wakes producers waiting for room or for the close.
    writable: Notify,
}

struct TopicState {
    /// One queue per consumer group.
    queues: BTreeMap<String, VecDeque<Record>>,
    next_offset: i64,
    closed: bool,
}

impl Topic {
    /// Adds a queue for `group` if it has none.
    fn join(&self, group: &str) {
        lock(&self.state).queues.entry(group.to_string()).or_default();
    }

    /// Appends `message` to every group's queue, waiting for room while one is full
    /// (the slowest group sets the pace, as the oldest unread record would in Kafka).
    ///
    /// The waiter registers with `writable` before it looks at the queues, so a
    /// consumer that makes room between the look and the wait still wakes it.
    async fn push(&self, message: Message) -> Result<(), BusError> {
        loop {
            let notified = self.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = lock(&self.state);
                if state.closed {
                    return Err(BusError::Closed { topic: self.name.clone() });
                }
                if state.queues.is_empty() {
                    state.queues.insert(String::new(), VecDeque::new());
                }
                if state.queues.values().all(|queue| queue.len() < self.capacity) {
                    let offset = state.next_offset;
                    state.next_offset += 1;
                    let record = Record {
                        topic: self.name.clone(),
                        partition: 0,
                        offset,
                        key: message.key,
                        payload: message.payload,
                        headers: message.headers,
                    };
                    let mut queues = state.queues.values_mut().peekable();
                    while let Some(queue) = queues.next() {
                        if queues.peek().is_some() {
                            queue.push_back(record.clone());
                        } else {
                            queue.push_back(record);
                            break;
                        }
                    }
                    drop(state);
                    self.readable.notify_waiters();
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// Returns up to `max` records of `group`; see [`Consumer::next_batch`] for the timing.
    async fn pop_batch(
        &self,
        group: &str,
        max: usize,
        linger: Duration,
        idle: Duration,
    ) -> Option<Vec<Record>> {
        let max = max.max(1);
        let mut batch = Vec::new();
        let idle_deadline = Instant::now() + idle;
        loop {
            let notified = self.readable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.take(group, &mut batch, max) {
                Taken::Some => break,
                Taken::Closed => return None,
                Taken::Nothing => {}
            }
            if timeout_at(idle_deadline, notified).await.is_err() {
                return Some(batch);
            }
        }
        let linger_deadline = Instant::now() + linger;
        while batch.len() < max {
            let notified = self.readable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.take(group, &mut batch, max) {
                Taken::Some => continue,
                Taken::Closed => break,
                Taken::Nothing => {}
            }
            if timeout_at(linger_deadline, notified).await.is_err() {
                break;
            }
        }
        Some(batch)
    }

    /// Moves records queued for `group` into `batch` until it holds `max`, waking
    /// producers if it made room.
    fn take(&self, group: &str, batch: &mut Vec<Record>, max: usize) -> Taken {
        let mut state = lock(&self.state);
        let closed = state.closed;
        let queue = state.queues.entry(group.to_string()).or_default();
        if queue.is_empty() {
            return if closed { Taken::Closed } else { Taken::Nothing };
        }
        let n = queue.len().min(max - batch.len());
        batch.extend(queue.drain(..n));
        drop(state);
        self.writable.notify_waiters();
        Taken::Some
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.readable.notify_waiters();
        self.writable.notify_waiters();
    }

    fn len(&self, group: &str) -> usize {
        lock(&self.state).queues.get(group).map_or(0, VecDeque::len)
    }
}

/// What one look at a topic's queue found.
enum Taken {
    /// Records were moved into the batch.
    Some,
    /// The queue is empty and the topic closed: the end of the input.
    Closed,
    /// The queue is empty for now.
    Nothing,
}

/// The producer half of the embedded bus; see [`Producer`].
#[derive(Clone)]
pub struct EmbeddedProducer {
    bus: Arc<Bus>,
}

impl fmt::Debug for EmbeddedProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedProducer").field("capacity_per_topic", &self.bus.capacity).finish()
    }
}

impl EmbeddedProducer {
    pub(crate) async fn send_all(&self, topic: &str, messages: Vec<Message>) -> Result<(), BusError> {
        let topic = self.bus.topic(topic);
        for message in messages {
            topic.push(message).await?;
        }
        Ok(())
    }
}

/// The consumer half of the embedded bus; see [`Consumer`].
pub struct EmbeddedConsumer {
    topic: Arc<Topic>,
    group: String,
}

impl fmt::Debug for EmbeddedConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedConsumer")
            .field("topic", &self.topic.name)
            .field("group", &self.group)
            .finish()
    }
}

impl EmbeddedConsumer {
    pub(crate) async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
        idle: Duration,
    ) -> Option<Vec<Record>> {
        self.topic.pop_batch(&self.group, max, linger, idle).await
    }

    pub(crate) fn lag(&self) -> Vec<(String, i32, i64)> {
        let len = i64::try_from(self.topic.len(&self.group)).unwrap_or(i64::MAX);
        vec![(self.topic.name.clone(), 0, len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u32) -> Message {
        Message {
            key: Some(n.to_be_bytes().to_vec()),
            payload: format!("m{n}").into_bytes(),
            headers: vec![("n".to_string(), n.to_string().into_bytes())],
        }
    }

    fn payloads(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| String::from_utf8_lossy(&r.payload).into_owned()).collect()
    }

    const LONG: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn records_come_out_in_order_with_offsets_keys_and_headers() {
        let bus = EmbeddedBus::new(16);
        let producer = bus.producer();
        let mut consumer = bus.consumer("t");
        producer.send_all("t", (0..5).map(message).collect()).await.unwrap();
        let batch = consumer.next_batch(10, Duration::ZERO, LONG).await.unwrap().unwrap();
        assert_eq!(payloads(&batch), ["m0", "m1", "m2", "m3", "m4"]);
        assert_eq!(batch.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(batch[3].topic, "t");
        assert_eq!(batch[3].partition, 0);
        assert_eq!(batch[3].key.as_deref(), Some(&3u32.to_be_bytes()[..]));
        assert_eq!(batch[3].headers, vec![("n".to_string(), b"3".to_vec())]);
        consumer.commit().await.unwrap();
    }

    #[tokio::test]
    async fn every_group_gets_every_record_and_the_slowest_sets_the_pace() {
        let bus = EmbeddedBus::new(2);
        let producer = bus.producer();
        let mut sink = bus.group_consumer("t", "sink");
        let mut index = bus.group_consumer("t", "index");
        producer.send_all("t", vec![message(0), message(1)]).await.unwrap();
        assert_eq!(
            payloads(&sink.next_batch(10, Duration::ZERO, LONG).await.unwrap().unwrap()),
            ["m0", "m1"]
        );
        let blocked =
            tokio::time::timeout(Duration::from_millis(100), producer.send_all("t", vec![message(2)])).await;
        assert!(blocked.is_err(), "the index group still holds 2");
        assert_eq!(payloads(&index.next_batch(1, Duration::ZERO, LONG).await.unwrap().unwrap()), ["m0"]);
        producer.send_all("t", vec![message(2)]).await.unwrap();
        assert_eq!(
            payloads(&index.next_batch(10, Duration::ZERO, LONG).await.unwrap().unwrap()),
            ["m1", "m2"]
        );
        assert_eq!(payloads(&sink.next_batch(10, Duration::ZERO, LONG).await.unwrap().unwrap()), ["m2"]);
    }

    #[tokio::test]
    async fn topics_are_independent() {
        let bus = EmbeddedBus::new(4);
        let producer = bus.producer();
        producer.send_all("a", vec![message(1)]).await.unwrap();
        producer.send_all("b", vec![message(2)]).await.unwrap();
        let mut b = bus.consumer("b");
        let batch = b.next_batch(10, Duration::ZERO, LONG).await.unwrap().unwrap();
        assert_eq!(payloads(&batch), ["m2"]);
        assert_eq!(bus.consumer("a").lag(), vec![("a".to_string(), 0, 1)]);
    }

    #[tokio::test]
    async fn a_full_topic_makes_the_producer_wait_until_a_consumer_takes_one() {
        let bus = EmbeddedBus::new(2);
        let producer = bus.producer();
        producer.send_all("t", vec![message(0), message(1)]).await.unwrap();
        let blocked =
            tokio::time::timeout(Duration::from_millis(200), producer.send_all("t", vec![message(2)])).await;
        assert!(blocked.is_err(), "the third send must wait while the topic holds 2");

        let sender = tokio::spawn({
            let producer = producer.clone();
            async move { producer.send_all("t", vec![message(2)]).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sender.is_finished(), "still waiting for room");
        let mut consumer = bus.consumer("t");
        assert_eq!(consumer.lag(), vec![("t".to_string(), 0, 2)]);
        let first = consumer.next_batch(1, Duration::ZERO, LONG).await.unwrap().unwrap();
        assert_eq!(payloads(&first), ["m0"]);
        tokio::time::timeout(LONG, sender).await.unwrap().unwrap().unwrap();
        let rest = consumer.next_batch(10, Duration::ZERO, LONG).await.unwrap().unwrap();
        assert_eq!(payloads(&rest), ["m1", "m2"]);
    }

    #[tokio::test]
    async fn close_lets_consumers_drain_then_ends_with_none() {
        let bus = EmbeddedBus::new(8);
        let producer = bus.producer();
        let mut consumer = bus.consumer("t");
        producer.send_all("t", (0..3).map(message).collect()).await.unwrap();
        bus.close();
        assert!(matches!(
            producer.send_all("t", vec![message(9)]).await,
            Err(BusError::Closed { topic }) if topic == "t"
        ));
        let batch = consumer.next_batch(2, Duration::ZERO, LONG).await.unwrap().unwrap();
        assert_eq!(payloads(&batch), ["m0", "m1"]);
        let batch = consumer.next_batch(2, LONG, LONG).await.unwrap().unwrap();
        assert_eq!(payloads(&batch), ["m2"], "the close ends the linger early");
        assert!(consumer.next_batch(2, LONG, LONG).await.unwrap().is_none());
        assert!(bus.consumer("never-used").next_batch(2, LONG, LONG).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn close_wakes_a_consumer_that_waits_on_an_empty_topic() {
        let bus = EmbeddedBus::new(8);
        let mut consumer = bus.consumer("t");
        let waiter =
            tokio::spawn(async move { consumer.next_batch(10, LONG, Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        bus.close();
        let end = tokio::time::timeout(LONG, waiter).await.unwrap().unwrap().unwrap();
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn an_idle_topic_returns_an_empty_batch_after_idle() {
        let bus = EmbeddedBus::new(8);
        let mut consumer = bus.consumer("t");
        let start = Instant::now();
        let batch = consumer.next_batch(10, LONG, Duration::from_millis(100)).await.unwrap().unwrap();
        assert!(batch.is_empty());
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn batches_stop_at_max() {
        let bus = EmbeddedBus::new(16);
        bus.producer().send_all("t", (0..7).map(message).collect()).await.unwrap();
        let mut consumer = bus.consumer("t");
        let sizes: Vec<usize> = [
            consumer.next_batch(3, LONG, LONG).await.unwrap().unwrap().len(),
            consumer.next_batch(3, LONG, LONG).await.unwrap().unwrap().len(),
        ]
        .into();
        assert_eq!(sizes, [3, 3], "a full batch returns without waiting for the linger");
        assert_eq!(consumer.next_batch(0, Duration::ZERO, LONG).await.unwrap().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn linger_collects_records_that_arrive_after_the_first() {
        let bus = EmbeddedBus::new(16);
        let producer = bus.producer();
        let mut consumer = bus.consumer("t");
        let late = tokio::spawn({
            let producer = producer.clone();
            async move {
                producer.send_all("t", vec![message(0)]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                producer.send_all("t", vec![message(1)]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                producer.send_all("t", vec![message(2)]).await.unwrap();
            }
        });
        let batch = consumer.next_batch(10, Duration::from_millis(1000), LONG).await.unwrap().unwrap();
        late.await.unwrap();
        assert_eq!(payloads(&batch), ["m0", "m1", "m2"]);

        producer.send_all("t", vec![message(3)]).await.unwrap();
        let start = Instant::now();
        let batch = consumer.next_batch(10, Duration::from_millis(100), LONG).await.unwrap().unwrap();
        assert_eq!(payloads(&batch), ["m3"]);
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(100), "waited for the linger: {waited:?}");
    }
}
