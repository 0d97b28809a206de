//! The Kafka half of the bus against a real Kafka-protocol broker on loopback: tansu.
//!
//! The broker helper ([`support::TestBroker`]) is shared with the pipeline tests at the
//! top of the repository; its documentation says why each test starts its own broker
//! and why its storage is SQLite.

#[path = "../../../tests/broker.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cull_bus::{ensure_topics, kafka_consumer, kafka_producer, Consumer, KafkaConfig, Message, Record};
use support::TestBroker;

impl TestBroker {
    fn config(&self, group_id: &str, partitions: i32) -> KafkaConfig {
        KafkaConfig {
            brokers: self.brokers(),
            group_id: group_id.to_string(),
            partitions,
            client_id: "cull-bus-test".to_string(),
            stats_interval: Duration::from_millis(200),
            ..KafkaConfig::default()
        }
    }
}

fn start() -> TestBroker {
    TestBroker::start().unwrap_or_else(|error| panic!("{error}"))
}

fn messages(range: std::ops::Range<u32>) -> Vec<Message> {
    range
        .map(|n| Message {
            key: Some(format!("k{n}").into_bytes()),
            payload: format!("payload {n}").into_bytes(),
            headers: vec![
                ("queue".to_string(), b"care".to_vec()),
                ("n".to_string(), n.to_string().into_bytes()),
            ],
        })
        .collect()
}

/// Reads until `want` records came or `within` elapsed, committing after each batch
/// when `commit` says so.
async fn consume(consumer: &mut Consumer, want: usize, within: Duration, commit: bool) -> Vec<Record> {
    let deadline = Instant::now() + within;
    let mut records = Vec::new();
    while records.len() < want && Instant::now() < deadline {
        let batch = consumer
            .next_batch(want - records.len(), Duration::from_millis(100), Duration::from_millis(500))
            .await
            .expect("next_batch")
            .expect("a kafka topic never ends");
        records.extend(batch);
        if commit {
            consumer.commit().await.expect("commit");
        }
    }
    records
}

fn payload_numbers(records: &[Record]) -> BTreeSet<u32> {
    records
        .iter()
        .map(|r| {
            let text = String::from_utf8(r.payload.clone()).expect("utf-8 payload");
            text.trim_start_matches("payload ").parse().expect("numbered payload")
        })
        .collect()
}

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn ensure_topics_creates_missing_topics_and_accepts_existing_ones() {
    let broker = start();
    let config = broker.config("g", 2);
    ensure_topics(&config, &["cull.mentions", "cull.verdicts"]).await.expect("first ensure");
    ensure_topics(&config, &["cull.mentions", "cull.verdicts", "cull.tickets"]).await.expect("second ensure");
    ensure_topics(&config, &[]).await.expect("nothing to ensure");

    let producer = kafka_producer(&config).expect("producer");
    producer.send_all("cull.tickets", messages(0..3)).await.expect("the created topic takes records");
}

#[tokio::test]
async fn a_group_reads_everything_once_and_a_new_group_reads_it_again() {
    let broker = start();
    let topic = "cull.mentions";
    let config = broker.config("matcher", 2);
    ensure_topics(&config, &[topic]).await.expect("ensure");
    let producer = kafka_producer(&config).expect("producer");
    let n = 40;
    producer.send_all(topic, messages(0..n)).await.expect("send");

    let mut first = kafka_consumer(&config, &[topic]).expect("consumer");
    let records = consume(&mut first, n as usize, WAIT, true).await;
    assert_eq!(payload_numbers(&records), (0..n).collect(), "every record once");
    assert_eq!(records.len(), n as usize, "no duplicates within one consumer");
    for record in &records {
        let number = payload_numbers(std::slice::from_ref(record)).into_iter().next().unwrap();
        assert_eq!(record.topic, topic);
        assert_eq!(record.key.as_deref(), Some(format!("k{number}").as_bytes()));
        assert_eq!(
            record.headers,
            vec![("queue".to_string(), b"care".to_vec()), ("n".to_string(), number.to_string().into_bytes())]
        );
    }
    let partitions: BTreeSet<i32> = records.iter().map(|r| r.partition).collect();
    assert_eq!(partitions, BTreeSet::from([0, 1]), "keys spread over both partitions");
    first.close().await.expect("close");

    // The same group resumes after the committed offsets: only the new record arrives.
    let mut second = kafka_consumer(&config, &[topic]).expect("consumer");
    producer.send_all(topic, messages(n..n + 1)).await.expect("send one more");
    let records = consume(&mut second, 1, WAIT, true).await;
    assert_eq!(payload_numbers(&records), BTreeSet::from([n]), "only what came after the commit");
    let more = consume(&mut second, 1, Duration::from_secs(3), true).await;
    assert!(more.is_empty(), "nothing before the committed offsets comes again: {more:?}");
    second.close().await.expect("close");

    // A new group starts at the earliest offset.
    let mut other = kafka_consumer(&broker.config("indexer", 2), &[topic]).expect("consumer");
    let records = consume(&mut other, n as usize + 1, WAIT, false).await;
    assert_eq!(payload_numbers(&records), (0..=n).collect());
    other.close().await.expect("close");
}

#[tokio::test]
async fn records_read_but_not_committed_are_read_again_by_the_replacement() {
    let broker = start();
    let topic = "cull.mentions";
    let config = broker.config("matcher", 1);
    ensure_topics(&config, &[topic]).await.expect("ensure");
    let producer = kafka_producer(&config).expect("producer");
    producer.send_all(topic, messages(0..30)).await.expect("send");

    let mut crashing = kafka_consumer(&config, &[topic]).expect("consumer");
    let acknowledged = consume(&mut crashing, 10, WAIT, false).await;
    assert_eq!(payload_numbers(&acknowledged), (0..10).collect());
    crashing.commit().await.expect("commit the first ten");
    let unacknowledged = consume(&mut crashing, 20, WAIT, false).await;
    assert_eq!(payload_numbers(&unacknowledged), (10..30).collect());
    // Leaves the group without committing the last twenty, as a crash would.
    crashing.close().await.expect("close");

    let mut replacement = kafka_consumer(&config, &[topic]).expect("consumer");
    let records = consume(&mut replacement, 20, WAIT, true).await;
    assert_eq!(payload_numbers(&records), (10..30).collect(), "the unacknowledged records come again");
    assert_eq!(records.first().map(|r| r.offset), Some(10));
    replacement.close().await.expect("close");
}

#[tokio::test]
async fn lag_counts_what_is_left_to_read() {
    let broker = start();
    let topic = "cull.verdicts";
    let config = broker.config("lag", 1);
    ensure_topics(&config, &[topic]).await.expect("ensure");
    kafka_producer(&config).expect("producer").send_all(topic, messages(0..10)).await.expect("send");

    let mut consumer = kafka_consumer(&config, &[topic]).expect("consumer");
    let records = consume(&mut consumer, 4, WAIT, false).await;
    assert_eq!(records.len(), 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    let expected = vec![(topic.to_string(), 0, 6)];
    // The high watermark comes with librdkafka's statistics, every 200 ms here.
    let mut lag = consumer.lag();
    while lag != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        lag = consumer.lag();
    }
    assert_eq!(lag, expected);
    consumer.close().await.expect("close");
}

#[tokio::test]
async fn two_members_of_a_group_split_the_partitions_and_together_read_everything() {
    let broker = start();
    let topic = "cull.mentions";
    let config = broker.config("matcher", 2);
    ensure_topics(&config, &[topic]).await.expect("ensure");
    let producer = kafka_producer(&config).expect("producer");
    let mut produced = 40;
    producer.send_all(topic, messages(0..produced)).await.expect("send");

    let mut a = kafka_consumer(&config, &[topic]).expect("consumer");
    let mut seen = consume(&mut a, 5, WAIT, true).await;
    // B's arrival revokes A's partitions: A commits what it acknowledged and drops what
    // it fetched beyond, and each partition's new owner resumes at the commit. Records
    // keep coming until B has some, since A may finish the first ones before B joins.
    let mut b = kafka_consumer(&config, &[topic]).expect("consumer");
    let mut b_partitions = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while (payload_numbers(&seen).len() < produced as usize || b_partitions.is_empty())
        && Instant::now() < deadline
    {
        if b_partitions.is_empty() {
            producer.send_all(topic, messages(produced..produced + 4)).await.expect("send");
            produced += 4;
        }
        for (consumer, is_b) in [(&mut a, false), (&mut b, true)] {
            let batch = consumer
                .next_batch(10, Duration::from_millis(50), Duration::from_millis(200))
                .await
                .expect("next_batch")
                .expect("a kafka topic never ends");
            if is_b {
                b_partitions.extend(batch.iter().map(|r| r.partition));
            }
            seen.extend(batch);
            consumer.commit().await.expect("commit");
        }
    }
    assert_eq!(payload_numbers(&seen), (0..produced).collect(), "together they read every record");
    assert_eq!(b_partitions.len(), 1, "the second member got one of the two partitions");
    a.close().await.expect("close");
    b.close().await.expect("close");
}
