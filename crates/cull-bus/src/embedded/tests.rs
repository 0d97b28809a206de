use std::path::Path;

use super::*;

fn message(n: u32) -> Message {
    Message {
        key: Some(n.to_be_bytes().to_vec()),
        payload: format!("m{n}").into_bytes(),
        headers: vec![("n".to_string(), n.to_string().into_bytes())],
    }
}

fn messages(range: std::ops::Range<u32>) -> Vec<Message> {
    range.map(message).collect()
}

fn payloads(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| String::from_utf8_lossy(&r.payload).into_owned()).collect()
}

const LONG: Duration = Duration::from_secs(5);

fn on_disk(dir: &Path) -> EmbeddedConfig {
    EmbeddedConfig { dir: dir.to_path_buf(), ..EmbeddedConfig::default() }
}

async fn batch(consumer: &mut Consumer, max: usize) -> Vec<Record> {
    consumer.next_batch(max, Duration::ZERO, LONG).await.unwrap().expect("open")
}

/// Every configuration of the bus, as aho-corasick's tables run every test over
/// every configuration: memory, and disk with each flushing policy.
fn configurations(dir: &Path) -> Vec<EmbeddedConfig> {
    let mut all = vec![EmbeddedConfig { storage: StorageKind::Memory, ..EmbeddedConfig::default() }];
    for (i, fsync) in [Fsync::Always, Fsync::Interval, Fsync::Never].into_iter().enumerate() {
        all.push(EmbeddedConfig { fsync, fsync_interval_ms: 10, ..on_disk(&dir.join(i.to_string())) });
    }
    all
}

#[tokio::test]
async fn records_come_out_in_order_with_offsets_keys_and_headers_in_every_configuration() {
    let dir = tempfile::tempdir().unwrap();
    for config in configurations(dir.path()) {
        let bus = EmbeddedBus::open(&config).unwrap();
        let producer = bus.producer();
        let mut consumer = bus.consumer(&["t"], "g").unwrap();
        producer.send_all("t", messages(0..5)).await.unwrap();
        let mut records = Vec::new();
        while records.len() < 5 {
            records.extend(batch(&mut consumer, 10).await);
        }
        assert_eq!(payloads(&records), ["m0", "m1", "m2", "m3", "m4"], "{config:?}");
        assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!((records[3].topic.as_str(), records[3].partition), ("t", 0));
        assert_eq!(records[3].key.as_deref(), Some(&3u32.to_be_bytes()[..]));
        assert_eq!(records[3].headers, vec![("n".to_string(), b"3".to_vec())]);
        consumer.commit().await.unwrap();
        assert_eq!(consumer.lag(), vec![("t".to_string(), 0, 0)]);
    }
}

#[tokio::test]
async fn offsets_and_committed_positions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(&on_disk(dir.path())).unwrap();
        let mut consumer = bus.consumer(&["t"], "g").unwrap();
        bus.producer().send_all("t", messages(0..5)).await.unwrap();
        assert_eq!(payloads(&batch(&mut consumer, 3).await), ["m0", "m1", "m2"]);
        consumer.commit().await.unwrap();
        assert_eq!(payloads(&batch(&mut consumer, 1).await), ["m3"], "taken but not committed");
    }
    let bus = EmbeddedBus::open(&on_disk(dir.path())).unwrap();
    assert_eq!(bus.end_offset("t"), 5);
    let mut consumer = bus.consumer(&["t"], "g").unwrap();
    let again = batch(&mut consumer, 10).await;
    assert_eq!(payloads(&again), ["m3", "m4"], "the group resumes after its commit");
    assert_eq!(again[0].offset, 3);
    bus.producer().send_all("t", messages(5..6)).await.unwrap();
    assert_eq!(batch(&mut consumer, 10).await[0].offset, 5, "new records continue the offsets");
    let mut newcomer = bus.consumer(&["t"], "new").unwrap();
    assert_eq!(batch(&mut newcomer, 10).await.len(), 6, "a new group starts at the oldest record");
}

#[tokio::test]
async fn a_torn_tail_is_truncated_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(&on_disk(dir.path())).unwrap();
        bus.producer().send_all("t", messages(0..3)).await.unwrap();
    }
    let file = dir.path().join("t").join(segment::file_name(0));
    let whole = std::fs::metadata(&file).unwrap().len();
    // A power loss in the middle of the next write: half a frame, then garbage.
    let mut torn = Vec::new();
    segment::encode(3, 0, &message(3), &mut torn);
    torn.truncate(torn.len() / 2);
    let mut appended = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
    io::Write::write_all(&mut appended, &torn).unwrap();
    drop(appended);

    let bus = EmbeddedBus::open(&on_disk(dir.path())).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().len(), whole, "the torn frame is cut off");
    assert_eq!(bus.end_offset("t"), 3);
    bus.producer().send_all("t", messages(3..4)).await.unwrap();
    let mut consumer = bus.consumer(&["t"], "g").unwrap();
    assert_eq!(payloads(&batch(&mut consumer, 10).await), ["m0", "m1", "m2", "m3"]);
}

#[tokio::test]
async fn damage_before_the_last_segment_is_refused_with_the_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig { segment_mb: 1, retention_mb: 1024, ..on_disk(dir.path()) };
    {
        let bus = EmbeddedBus::open(&config).unwrap();
        let big = Message { key: None, payload: vec![b'x'; 600 << 10], headers: Vec::new() };
        for _ in 0..4 {
            bus.producer().send_all("t", vec![big.clone()]).await.unwrap();
        }
    }
    let first = dir.path().join("t").join(segment::file_name(0));
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&first, bytes).unwrap();
    let error = EmbeddedBus::open(&config).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, BusError::Corrupt { position: 0, .. }), "{message}");
    assert!(
        message.contains("00000000000000000000.log") && message.contains("move the file away"),
        "{message}"
    );
}

#[tokio::test]
async fn retention_deletes_only_segments_every_reading_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig { segment_mb: 1, retention_mb: 1, ..on_disk(dir.path()) };
    let bus = EmbeddedBus::open(&config).unwrap();
    let producer = bus.producer();
    let mut fast = bus.consumer(&["t"], "fast").unwrap();
    let mut slow = bus.consumer(&["t"], "slow").unwrap();
    let big = |n: u8| Message { key: None, payload: vec![n; 1100 << 10], headers: Vec::new() };
    for n in 0..4 {
        producer.send_all("t", vec![big(n)]).await.unwrap();
        batch(&mut fast, 10).await;
        fast.commit().await.unwrap();
    }
    let segments = || {
        std::fs::read_dir(dir.path().join("t"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"))
            .count()
    };
    assert_eq!(segments(), 4, "the slow group has committed nothing, so nothing goes");
    for _ in 0..2 {
        batch(&mut slow, 1).await;
    }
    slow.commit().await.unwrap();
    assert_eq!(segments(), 2, "what both committed, over retention_mb, is deleted");
    let first = batch(&mut slow, 1).await;
    assert_eq!(first[0].offset, 2);
    assert_eq!(first[0].payload[0], 2);
    drop((fast, slow, producer, bus));
    let bus = EmbeddedBus::open(&config).unwrap();
    let mut newcomer = bus.consumer(&["t"], "new").unwrap();
    assert_eq!(batch(&mut newcomer, 10).await[0].offset, 2, "offsets are kept after deletion");
}

#[tokio::test]
async fn every_group_gets_every_record_and_the_slowest_sets_the_pace() {
    let bus = EmbeddedBus::in_memory(2);
    let producer = bus.producer();
    let mut sink = bus.consumer(&["t"], "sink").unwrap();
    let mut index = bus.consumer(&["t"], "index").unwrap();
    producer.send_all("t", messages(0..2)).await.unwrap();
    assert_eq!(payloads(&batch(&mut sink, 10).await), ["m0", "m1"]);
    let blocked =
        tokio::time::timeout(Duration::from_millis(100), producer.send_all("t", vec![message(2)])).await;
    assert!(blocked.is_err(), "the index group still has 2 to take");
    assert_eq!(payloads(&batch(&mut index, 1).await), ["m0"]);
    producer.send_all("t", vec![message(2)]).await.unwrap();
    assert_eq!(payloads(&batch(&mut index, 10).await), ["m1", "m2"]);
    assert_eq!(payloads(&batch(&mut sink, 10).await), ["m2"]);
}

#[tokio::test]
async fn a_group_that_leaves_no_longer_holds_producers_back() {
    let bus = EmbeddedBus::in_memory(1);
    let producer = bus.producer();
    let consumer = bus.consumer(&["t"], "g").unwrap();
    producer.send_all("t", vec![message(0)]).await.unwrap();
    let sender = tokio::spawn({
        let producer = producer.clone();
        async move { producer.send_all("t", vec![message(1)]).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!sender.is_finished());
    drop(consumer);
    tokio::time::timeout(LONG, sender).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_big_batch_is_not_refused_by_a_small_capacity() {
    let bus = EmbeddedBus::in_memory(2);
    let mut consumer = bus.consumer(&["t"], "g").unwrap();
    bus.producer().send_all("t", messages(0..50)).await.unwrap();
    assert_eq!(batch(&mut consumer, 100).await.len(), 50);
}

#[tokio::test]
async fn one_consumer_per_group_and_topic() {
    let bus = EmbeddedBus::in_memory(8);
    let _first = bus.consumer(&["t"], "g").unwrap();
    assert!(matches!(bus.consumer(&["u", "t"], "g"), Err(BusError::GroupInUse { .. })));
    // The failed join left no trace on `u`.
    bus.consumer(&["u"], "g").unwrap();
    assert!(matches!(bus.consumer(&["t"], "a/b"), Err(BusError::GroupName { .. })));
    assert!(matches!(bus.producer().send_all("a b", messages(0..1)).await, Err(BusError::TopicName { .. })));
}

#[tokio::test]
async fn one_consumer_reads_several_topics_without_starving_any() {
    let bus = EmbeddedBus::in_memory(100);
    let mut consumer = bus.consumer(&["a", "b"], "g").unwrap();
    let producer = bus.producer();
    producer.send_all("a", messages(0..10)).await.unwrap();
    producer.send_all("b", messages(100..102)).await.unwrap();
    let first = batch(&mut consumer, 5).await;
    let second = batch(&mut consumer, 5).await;
    let topics: BTreeSet<String> = first.iter().chain(&second).map(|r| r.topic.clone()).collect();
    assert_eq!(topics, BTreeSet::from(["a".to_string(), "b".to_string()]));
    assert_eq!(consumer.lag().iter().map(|l| l.2).sum::<i64>(), 2);
}

use std::collections::BTreeSet;

#[tokio::test]
async fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _bus = EmbeddedBus::open(&on_disk(dir.path())).unwrap();
    let error = EmbeddedBus::open(&on_disk(dir.path())).unwrap_err();
    assert!(matches!(error, BusError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("bus.embedded.dir"), "{error}");
}

#[tokio::test]
async fn a_full_disk_is_an_error_and_leaves_the_log_readable() {
    let dir = tempfile::tempdir().unwrap();
    let topic = dir.path().join("t");
    std::fs::create_dir_all(&topic).unwrap();
    // Every write to /dev/full fails with ENOSPC, as a full disk does.
    std::os::unix::fs::symlink("/dev/full", topic.join(segment::file_name(0))).unwrap();
    let bus = EmbeddedBus::open(&on_disk(dir.path())).unwrap();
    let error = bus.producer().send_all("t", messages(0..3)).await.unwrap_err();
    assert!(error.to_string().contains("No space left on device"), "{error}");
    // The partial write could not be undone on /dev/full: the topic refuses records
    // rather than appending after garbage.
    let error = bus.producer().send_all("t", messages(0..1)).await.unwrap_err();
    assert!(matches!(error, BusError::Broken { .. }), "{error}");
    assert_eq!(bus.end_offset("t"), 0, "nothing was acknowledged");
}

#[tokio::test]
async fn with_fsync_interval_records_become_readable_once_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig { fsync: Fsync::Interval, fsync_interval_ms: 200, ..on_disk(dir.path()) };
    let bus = EmbeddedBus::open(&config).unwrap();
    let mut consumer = bus.consumer(&["t"], "g").unwrap();
    let sent = Instant::now();
    bus.producer().send_all("t", messages(0..1)).await.unwrap();
    assert!(sent.elapsed() < Duration::from_millis(150), "the send does not wait for the flush");
    assert_eq!(consumer.lag(), vec![("t".to_string(), 0, 1)], "the lag counts it at once");
    let records = batch(&mut consumer, 10).await;
    assert_eq!(payloads(&records), ["m0"]);
}

#[tokio::test]
async fn close_ends_every_wait_and_keeps_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(&EmbeddedConfig { capacity: 1, ..on_disk(dir.path()) }).unwrap();
    let producer = bus.producer();
    let mut consumer = bus.consumer(&["t"], "g").unwrap();
    producer.send_all("t", messages(0..1)).await.unwrap();
    let blocked = tokio::spawn({
        let producer = producer.clone();
        async move { producer.send_all("t", messages(1..2)).await }
    });
    let mut idle = bus.consumer(&["empty"], "g").unwrap();
    let waiting = tokio::spawn(async move { idle.next_batch(10, LONG, Duration::from_secs(60)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    bus.close();
    assert!(matches!(
        tokio::time::timeout(LONG, blocked).await.unwrap().unwrap(),
        Err(BusError::Closed { .. })
    ));
    assert!(tokio::time::timeout(LONG, waiting).await.unwrap().unwrap().unwrap().is_none());
    assert!(consumer.next_batch(10, LONG, LONG).await.unwrap().is_none());
    drop((consumer, producer, bus));
    let bus = EmbeddedBus::open(&on_disk(dir.path())).unwrap();
    let mut consumer = bus.consumer(&["t"], "g").unwrap();
    assert_eq!(payloads(&batch(&mut consumer, 10).await), ["m0"], "the record is still on the log");
}

#[tokio::test]
async fn an_idle_topic_returns_an_empty_batch_after_idle() {
    let bus = EmbeddedBus::in_memory(8);
    let mut consumer = bus.consumer(&["t"], "g").unwrap();
    let start = Instant::now();
    let batch = consumer.next_batch(10, LONG, Duration::from_millis(100)).await.unwrap().unwrap();
    assert!(batch.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn batches_stop_at_max_and_linger_collects_late_records() {
    let bus = EmbeddedBus::in_memory(16);
    let producer = bus.producer();
    producer.send_all("t", messages(0..7)).await.unwrap();
    let mut consumer = bus.consumer(&["t"], "g").unwrap();
    assert_eq!(
        consumer.next_batch(3, LONG, LONG).await.unwrap().unwrap().len(),
        3,
        "a full batch does not linger"
    );
    assert_eq!(consumer.next_batch(3, LONG, LONG).await.unwrap().unwrap().len(), 3);
    assert_eq!(consumer.next_batch(0, Duration::ZERO, LONG).await.unwrap().unwrap().len(), 1);

    let late = tokio::spawn({
        let producer = producer.clone();
        async move {
            producer.send_all("t", vec![message(7)]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            producer.send_all("t", vec![message(8)]).await.unwrap();
        }
    });
    let batch = consumer.next_batch(10, Duration::from_millis(1000), LONG).await.unwrap().unwrap();
    late.await.unwrap();
    assert_eq!(payloads(&batch), ["m7", "m8"]);
    producer.send_all("t", vec![message(9)]).await.unwrap();
    let start = Instant::now();
    let batch = consumer.next_batch(10, Duration::from_millis(100), LONG).await.unwrap().unwrap();
    assert_eq!(payloads(&batch), ["m9"]);
    assert!(start.elapsed() >= Duration::from_millis(100), "waited for the linger");
}

#[tokio::test]
async fn concurrent_senders_share_flushes_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(&on_disk(dir.path())).unwrap();
    let senders: Vec<_> = (0..8u32)
        .map(|s| {
            let producer = bus.producer();
            tokio::spawn(async move {
                for b in 0..20u32 {
                    producer
                        .send_all("t", messages(s * 1000 + b * 10..s * 1000 + b * 10 + 10))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    drop(bus);
    let bus = EmbeddedBus::open(&on_disk(dir.path())).unwrap();
    let mut consumer = bus.consumer(&["t"], "g").unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < 1600 {
        let records = batch(&mut consumer, 500).await;
        assert!(!records.is_empty(), "{} of 1600", seen.len());
        seen.extend(payloads(&records));
    }
    assert_eq!(bus.end_offset("t"), 1600);
}

#[tokio::test]
async fn a_reader_holds_back_neither_retention_nor_producers_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig { segment_mb: 1, retention_mb: 1, capacity: 1, ..on_disk(dir.path()) };
    let bus = EmbeddedBus::open(&config).unwrap();
    let producer = bus.producer();
    let mut reader = bus.reader("t").unwrap();
    let big = |n: u8| Message { key: None, payload: vec![n; 1100 << 10], headers: Vec::new() };
    for n in 0..4 {
        // A generous bound that only detects a producer waiting for the reader.
        tokio::time::timeout(LONG, producer.send_all("t", vec![big(n)]))
            .await
            .expect("a reader that took nothing does not hold the producer back")
            .unwrap();
    }
    let segments = std::fs::read_dir(dir.path().join("t"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"))
        .count();
    assert_eq!(segments, 1, "retention did not wait for the reader");
    let first = batch(&mut reader, 10).await;
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].offset, first[0].payload[0]), (3, 3), "it goes on at the oldest record kept");
    reader.commit().await.unwrap();
    assert_eq!(reader.exact_lag().await.unwrap(), Some(0));
    let groups = std::fs::read_dir(dir.path().join("t").join("groups")).unwrap().count();
    assert_eq!(groups, 0, "a reader writes no offset file");
    drop((reader, producer, bus));
    let bus = EmbeddedBus::open(&config).unwrap();
    let mut again = bus.reader("t").unwrap();
    assert_eq!(batch(&mut again, 10).await[0].offset, 3, "a new reader starts at the oldest again");
}

#[tokio::test]
async fn a_readers_lag_counts_what_it_can_read_now() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        EmbeddedConfig { fsync: Fsync::Interval, fsync_interval_ms: 3_600_000, ..on_disk(dir.path()) };
    let bus = EmbeddedBus::open(&config).unwrap();
    let group = bus.consumer(&["t"], "g").unwrap();
    let reader = bus.reader("t").unwrap();
    bus.producer().send_all("t", messages(0..3)).await.unwrap();
    assert_eq!(group.exact_lag().await.unwrap(), Some(3), "a group drains what was acknowledged");
    assert_eq!(reader.exact_lag().await.unwrap(), Some(0), "nothing is flushed, so nothing is readable");
}
