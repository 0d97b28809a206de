//! The embedded bus: a durable log per topic on this machine's disk.
//!
//! Each topic is a log of segment files ([`segment`] has the format and the recovery)
//! with offsets that stay the same across restarts, and each consumer group's
//! committed offset is a small file next to the log, so a restart resumes every
//! stage where it committed and a downstream checkpoint (the analyst index's) keeps
//! meaning the same records. Records are deleted a segment at a time, once every
//! group reading the topic in this process has committed past them and the topic is
//! over `retention_mb` or the segment over `retention_hours` old.
//!
//! # Durability and visibility
//!
//! With `fsync = "always"` a send returns only once its records are on the device;
//! concurrent senders to a topic share one flush (group commit), so the cost is one
//! `fdatasync` per topic per burst, not per record. A record becomes readable by the
//! next stage only once flushed (with `always` and `interval`): a stage never acts on
//! a record that a power loss could take back, so an offset that a checkpoint
//! recorded is never handed out again for another record.
//!
//! # Backpressure
//!
//! A producer waits while a group reading the topic has `capacity` records or more
//! that it has not taken yet, so a slow stage slows the stages before it and finally
//! the sources (a webhook answers `429`), as a full queue did before the log: the
//! backlog that a shutdown must drain stays bounded. Groups are counted only while a
//! consumer of this process is in them.
//!
//! # Readers
//!
//! A reader ([`EmbeddedBus::reader`]) reads a topic from its oldest record kept, in no
//! group: it commits nothing, writes no file, holds back neither retention nor
//! producers, and leaves no trace when dropped. It is how a stage reads its changelog
//! back before each batch (a group of its own per start would leave an offset file
//! per restart, and a group that never commits would keep every segment forever). A
//! reader's lag counts what it can read now (with `fsync = "interval"`, records not
//! flushed yet come with a later look).
//!
//! # One process, one group member
//!
//! The directory is locked while a bus has it open, and a group has at most one
//! consumer per topic at a time: the offset a group commits is then simply "everything
//! handed out", as in Kafka with one partition.

pub(crate) mod segment;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::{timeout_at, Instant};

use crate::config::{EmbeddedConfig, Fsync, StorageKind};
use crate::{lock, BusError, Consumer, Message, Producer, Record};
use segment::{Damage, Storage};

/// The most bytes one read hands to a stage, whatever the batch size.
const MAX_READ_BYTES: usize = 8 << 20;
/// Segments of `storage = "memory"` are this small, since consumed ones are dropped
/// whole.
const MEMORY_SEGMENT_BYTES: u64 = 4 << 20;

/// The settings a topic needs, resolved from [`EmbeddedConfig`].
#[derive(Debug, Clone)]
struct Settings {
    dir: Option<PathBuf>,
    fsync: Fsync,
    segment_bytes: u64,
    retention_bytes: u64,
    retention_ms: i64,
    capacity: usize,
}

impl Settings {
    fn new(config: &EmbeddedConfig) -> Settings {
        let memory = config.storage == StorageKind::Memory;
        Settings {
            dir: (!memory).then(|| config.dir.clone()),
            fsync: if memory { Fsync::Never } else { config.fsync },
            segment_bytes: if memory { MEMORY_SEGMENT_BYTES } else { config.segment_bytes() },
            retention_bytes: config.retention_mb.saturating_mul(1 << 20),
            retention_ms: i64::try_from(config.retention_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX),
            capacity: config.capacity.max(1),
        }
    }

    /// Whether records become readable only once flushed.
    fn visible_when_synced(&self) -> bool {
        matches!(self.fsync, Fsync::Always | Fsync::Interval)
    }
}

/// A bus of durable topics on one machine.
///
/// It stands in for Kafka when cull runs in one process: the same stage code produces
/// and consumes through [`Producer`] and [`Consumer`]. Topics are created on first use.
/// Clones share the same topics.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Bus>,
}

impl fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedBus")
            .field("dir", &self.inner.settings.dir)
            .field("topics", &lock(&self.inner.topics).keys().collect::<Vec<_>>())
            .finish()
    }
}

struct Bus {
    settings: Settings,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    closed: AtomicBool,
    /// Numbers the readers, whose names in a topic's groups must not collide.
    readers: AtomicU64,
    /// Holds the directory's lock while the bus is open.
    _lock: Option<File>,
}

impl EmbeddedBus {
    /// Opens the bus of `config`: locks its directory and recovers every topic in it
    /// (truncating a torn tail, refusing damage elsewhere).
    pub fn open(config: &EmbeddedConfig) -> Result<EmbeddedBus, BusError> {
        let settings = Settings::new(config);
        let lock_file = match &settings.dir {
            Some(dir) => Some(lock_dir(dir)?),
            None => None,
        };
        let bus = Arc::new(Bus {
            settings,
            topics: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            readers: AtomicU64::new(0),
            _lock: lock_file,
        });
        if let Some(dir) = &bus.settings.dir {
            let entries = std::fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
            for entry in entries {
                let entry = entry.map_err(|source| io_error(dir, source))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.path().is_dir() && crate::is_topic_name(&name) {
                    let topic = Topic::open(&name, &bus.settings)?;
                    lock(&bus.topics).insert(name, Arc::new(topic));
                }
            }
        }
        if let Some(interval) = bus.settings.fsync.interval(config) {
            let weak = Arc::downgrade(&bus);
            std::thread::Builder::new()
                .name("cull-bus-fsync".into())
                .spawn(move || sync_every(&weak, interval))
                .map_err(|source| io_error(Path::new("fsync thread"), source))?;
        }
        Ok(EmbeddedBus { inner: bus })
    }

    /// Returns a bus kept in memory with the defaults and `capacity`: for tests.
    pub fn in_memory(capacity: usize) -> EmbeddedBus {
        let config = EmbeddedConfig { storage: StorageKind::Memory, capacity, ..EmbeddedConfig::default() };
        EmbeddedBus::open(&config).expect("a memory bus opens no files")
    }

    /// Returns a producer that can send to any topic of this bus.
    pub fn producer(&self) -> Producer {
        Producer::Embedded(EmbeddedProducer { bus: Arc::clone(&self.inner) })
    }

    /// Returns a consumer of `topics` in `group`, starting after the group's committed
    /// offset, or at the oldest record kept when the group has none.
    ///
    /// Fails when another consumer of this process is in the group on one of them.
    pub fn consumer(&self, topics: &[&str], group: &str) -> Result<Consumer, BusError> {
        if !cull_model::config::is_label(group) {
            return Err(BusError::GroupName { group: group.to_string() });
        }
        let mut joined: Vec<Arc<Topic>> = Vec::with_capacity(topics.len());
        for name in topics {
            let topic = self.inner.topic(name)?;
            if joined.iter().any(|t| Arc::ptr_eq(t, &topic)) {
                continue;
            }
            if let Err(error) = topic.join(group, Membership::Group) {
                for topic in &joined {
                    topic.leave(group);
                }
                return Err(error);
            }
            joined.push(topic);
        }
        Ok(Consumer::Embedded(EmbeddedConsumer {
            topics: joined,
            group: group.to_string(),
            membership: Membership::Group,
            next: 0,
        }))
    }

    /// Returns a reader of `topic` from its oldest record kept, in no group: its
    /// commits do nothing, it writes no file, it holds back neither retention nor
    /// producers, and its lag counts what it can read now. A stage reads its
    /// changelog back with one at every start, which leaves nothing behind.
    pub fn reader(&self, topic: &str) -> Result<Consumer, BusError> {
        let topic = self.inner.topic(topic)?;
        // Not a label, so no group of a pipeline file can have this name.
        let name = format!("reader#{}", self.inner.readers.fetch_add(1, Ordering::Relaxed));
        topic.join(&name, Membership::Reader)?;
        Ok(Consumer::Embedded(EmbeddedConsumer {
            topics: vec![topic],
            group: name,
            membership: Membership::Reader,
            next: 0,
        }))
    }

    /// Creates the topics that do not exist yet.
    pub fn ensure_topics(&self, topics: &[&str]) -> Result<(), BusError> {
        for topic in topics {
            self.inner.topic(topic)?;
        }
        Ok(())
    }

    /// Returns the offset the next record of `topic` will get, 0 for a topic that
    /// does not exist.
    pub fn end_offset(&self, topic: &str) -> i64 {
        lock(&self.inner.topics).get(topic).map_or(0, |t| lock(&t.state).next_offset)
    }

    /// Closes the bus: producers get [`BusError::Closed`], consumers `Ok(None)` at
    /// once, and every wait ends. What is on the log stays there for the next start.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let topics: Vec<Arc<Topic>> = lock(&self.inner.topics).values().cloned().collect();
        for topic in topics {
            topic.close();
        }
    }
}

/// Creates `dir` and takes its lock, so that two processes never write one log.
fn lock_dir(dir: &Path) -> Result<File, BusError> {
    std::fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| io_error(&path, source))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(BusError::Locked { dir: dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(source)) => Err(io_error(&path, source)),
    }
}

fn io_error(path: &Path, source: io::Error) -> BusError {
    BusError::Io { path: path.to_path_buf(), source }
}

impl Bus {
    /// Returns the topic called `name`, creating it when missing.
    fn topic(&self, name: &str) -> Result<Arc<Topic>, BusError> {
        if !crate::is_topic_name(name) {
            return Err(BusError::TopicName { topic: name.to_string() });
        }
        let mut topics = lock(&self.topics);
        if let Some(topic) = topics.get(name) {
            return Ok(Arc::clone(topic));
        }
        let topic = Arc::new(Topic::create(name, &self.settings)?);
        if self.closed.load(Ordering::SeqCst) {
            topic.close();
        }
        topics.insert(name.to_string(), Arc::clone(&topic));
        Ok(topic)
    }
}

/// Flushes every topic that has unflushed records every `interval`, until the bus is
/// dropped or closed (`fsync = "interval"`).
fn sync_every(bus: &Weak<Bus>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(bus) = bus.upgrade() else { return };
        if bus.closed.load(Ordering::SeqCst) {
            return;
        }
        let topics: Vec<Arc<Topic>> = lock(&bus.topics).values().cloned().collect();
        for topic in topics {
            if let Err(error) = topic.sync_now() {
                tracing::error!(topic = %topic.name, %error, "cannot flush the embedded log");
            }
        }
    }
}

/// The wall clock in milliseconds, the records' timestamps (for retention by age).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

struct Topic {
    name: String,
    /// The topic's directory; `None` in memory.
    dir: Option<PathBuf>,
    settings: Settings,
    state: Mutex<TopicState>,
    /// Wakes consumers when records become readable, and on close.
    readable: Notify,
    /// Wakes producers when a group took records, and on close.
    writable: Notify,
    /// One flush at a time; the others wait and usually find their records flushed.
    flushing: tokio::sync::Mutex<()>,
}

struct TopicState {
    segments: VecDeque<Segment>,
    next_offset: i64,
    /// Records below this offset are on the device (all of them without flushing).
    synced: i64,
    /// The groups with a consumer in this process.
    groups: BTreeMap<String, Group>,
    /// The offsets committed in this process, kept when a group's consumer leaves (in
    /// memory this is all there is; on disk the files say the same).
    committed: BTreeMap<String, i64>,
    /// The bytes of every segment.
    bytes: u64,
    closed: bool,
    /// Why the log takes no more records: a failed write could not be undone.
    broken: Option<String>,
}

struct Segment {
    base: i64,
    /// The position of each record in the segment.
    positions: Vec<u32>,
    len: u64,
    last_timestamp_ms: i64,
    storage: Arc<Storage>,
}

impl Segment {
    fn end(&self) -> i64 {
        self.base + self.positions.len() as i64
    }
}

#[derive(Debug, Clone, Copy)]
struct Group {
    /// The next offset to hand out.
    position: i64,
    /// The offset committed: everything below it is processed.
    committed: i64,
    membership: Membership,
}

/// How a consumer reads a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    /// In a consumer group: it resumes after its commit, and holds back retention and
    /// producers.
    Group,
    /// A reader from the oldest record kept, which holds back nothing.
    Reader,
}

impl Group {
    /// Whether retention and producers wait for this consumer.
    fn holds_back(&self) -> bool {
        self.membership == Membership::Group
    }
}

impl Topic {
    fn empty(name: &str, settings: &Settings, dir: Option<PathBuf>) -> Topic {
        Topic {
            name: name.to_string(),
            dir,
            settings: settings.clone(),
            state: Mutex::new(TopicState {
                segments: VecDeque::new(),
                next_offset: 0,
                synced: 0,
                groups: BTreeMap::new(),
                committed: BTreeMap::new(),
                bytes: 0,
                closed: false,
                broken: None,
            }),
            readable: Notify::new(),
            writable: Notify::new(),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Creates a new, empty topic with its first segment.
    fn create(name: &str, settings: &Settings) -> Result<Topic, BusError> {
        let dir = settings.dir.as_ref().map(|d| d.join(name));
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir.join("groups")).map_err(|source| io_error(dir, source))?;
            if settings.fsync == Fsync::Always {
                sync_dir(settings.dir.as_deref().expect("a topic directory has a parent"))?;
            }
        }
        let topic = Topic::empty(name, settings, dir);
        {
            let mut state = lock(&topic.state);
            topic.add_segment(&mut state, 0)?;
        }
        Ok(topic)
    }

    /// Opens the topic in its directory, reading and checking every segment.
    fn open(name: &str, settings: &Settings) -> Result<Topic, BusError> {
        let dir = settings.dir.as_ref().expect("only a disk topic is opened").join(name);
        let mut bases: Vec<i64> = std::fs::read_dir(&dir)
            .map_err(|source| io_error(&dir, source))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| segment::parse_file_name(&entry.file_name().to_string_lossy()))
            .collect();
        bases.sort_unstable();
        std::fs::create_dir_all(dir.join("groups")).map_err(|source| io_error(&dir, source))?;
        let topic = Topic::empty(name, settings, Some(dir.clone()));
        {
            let mut state = lock(&topic.state);
            for (i, &base) in bases.iter().enumerate() {
                let path = dir.join(segment::file_name(base));
                let last = i + 1 == bases.len();
                if let Some(previous) = state.segments.back() {
                    if previous.end() != base {
                        return Err(BusError::Corrupt {
                            path,
                            position: 0,
                            reason: format!(
                                "it starts at offset {base}, but the segment before ends at {}",
                                previous.end()
                            ),
                        });
                    }
                }
                let scan = segment::scan(&path, base).map_err(|source| io_error(&path, source))?;
                if let Some(damage) = &scan.damage {
                    if !last {
                        return Err(damaged(&path, scan.valid_len, damage));
                    }
                    let file_len = std::fs::metadata(&path).map_err(|source| io_error(&path, source))?.len();
                    tracing::warn!(
                        topic = name,
                        path = %path.display(),
                        at = scan.valid_len,
                        dropped_bytes = file_len - scan.valid_len,
                        %damage,
                        "truncating the torn tail of the embedded log"
                    );
                }
                let storage = Storage::open(&path).map_err(|source| io_error(&path, source))?;
                if scan.damage.is_some() {
                    storage.truncate(scan.valid_len).map_err(|source| io_error(&path, source))?;
                    storage.sync().map_err(|source| io_error(&path, source))?;
                }
                state.bytes += scan.valid_len;
                state.segments.push_back(Segment {
                    base,
                    positions: scan.positions,
                    len: scan.valid_len,
                    last_timestamp_ms: scan.last_timestamp_ms,
                    storage: Arc::new(storage),
                });
            }
            match state.segments.back() {
                Some(last) => {
                    state.next_offset = last.end();
                    state.synced = state.next_offset;
                }
                None => topic.add_segment(&mut state, 0)?,
            }
        }
        Ok(topic)
    }

    /// Starts a new segment at `base` (the next offset).
    fn add_segment(&self, state: &mut TopicState, base: i64) -> Result<(), BusError> {
        let path = self.dir.as_ref().map(|dir| dir.join(segment::file_name(base)));
        let storage = Storage::create(path.as_deref())
            .map_err(|source| io_error(path.as_deref().unwrap_or(Path::new(&self.name)), source))?;
        if let (Some(dir), Fsync::Always) = (&self.dir, self.settings.fsync) {
            sync_dir(dir)?;
        }
        state.segments.push_back(Segment {
            base,
            positions: Vec::new(),
            len: 0,
            last_timestamp_ms: now_ms(),
            storage: Arc::new(storage),
        });
        Ok(())
    }

    /// Appends `messages` and returns the offset after the last one. Blocking.
    fn append(&self, messages: &[Message]) -> Result<i64, BusError> {
        for message in messages {
            let size = segment::body_len(message);
            if size > segment::MAX_RECORD_BYTES {
                return Err(BusError::RecordTooLarge {
                    topic: self.name.clone(),
                    size,
                    limit: segment::MAX_RECORD_BYTES,
                });
            }
        }
        let mut state = lock(&self.state);
        if state.closed {
            return Err(BusError::Closed { topic: self.name.clone() });
        }
        if let Some(why) = &state.broken {
            return Err(BusError::Broken { topic: self.name.clone(), reason: why.clone() });
        }
        let timestamp = now_ms();
        let first = state.next_offset;
        let mut bytes = Vec::with_capacity(messages.iter().map(|m| segment::body_len(m) + 8).sum());
        let mut offsets = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            offsets.push(bytes.len());
            segment::encode(first + i as i64, timestamp, message, &mut bytes);
        }
        let active = state.segments.back().expect("a topic always has a segment");
        let full = active.len >= self.settings.segment_bytes
            || active.len + bytes.len() as u64 > u64::from(u32::MAX);
        if full && !active.positions.is_empty() {
            self.roll(&mut state)?;
        }
        let active = state.segments.back_mut().expect("a topic always has a segment");
        let start = active.len;
        if let Err(source) = active.storage.append(&bytes) {
            let path =
                active.storage.path().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(&self.name));
            if let Err(undo) = active.storage.truncate(start) {
                state.broken = Some(format!(
                    "a write to {} failed ({source}) and could not be undone ({undo})",
                    path.display()
                ));
            }
            return Err(io_error(&path, source));
        }
        active.positions.extend(offsets.iter().map(|o| (start + *o as u64) as u32));
        active.len += bytes.len() as u64;
        active.last_timestamp_ms = timestamp;
        state.bytes += bytes.len() as u64;
        state.next_offset = first + messages.len() as i64;
        if self.settings.fsync == Fsync::Never {
            state.synced = state.next_offset;
        }
        Ok(state.next_offset)
    }

    /// Closes the active segment (flushed, unless `fsync = "never"`) and starts the
    /// next; then applies retention.
    fn roll(&self, state: &mut TopicState) -> Result<(), BusError> {
        let active = state.segments.back().expect("a topic always has a segment");
        if self.settings.fsync != Fsync::Never {
            active
                .storage
                .sync()
                .map_err(|source| io_error(active.storage.path().unwrap_or(Path::new(&self.name)), source))?;
            state.synced = state.next_offset;
        }
        let base = state.next_offset;
        self.add_segment(state, base)?;
        let removed = self.expired(state);
        remove_segments(&self.name, removed);
        Ok(())
    }

    /// Takes out of `state` the segments that retention lets go and returns them.
    fn expired(&self, state: &mut TopicState) -> Vec<Arc<Storage>> {
        let committed =
            state.groups.values().filter(|g| g.holds_back()).map(|g| g.committed).min().unwrap_or(i64::MAX);
        let oldest_kept = now_ms().saturating_sub(self.settings.retention_ms);
        let mut removed = Vec::new();
        while state.segments.len() > 1 {
            let front = state.segments.front().expect("two segments");
            let read_by_all = front.end() <= committed;
            let over = self.dir.is_none()
                || state.bytes > self.settings.retention_bytes
                || front.last_timestamp_ms < oldest_kept;
            if !(read_by_all && over) {
                break;
            }
            let front = state.segments.pop_front().expect("two segments");
            state.bytes -= front.len;
            removed.push(front.storage);
        }
        removed
    }

    /// Returns once the records below `through` are on the device: it waits for the
    /// flush in progress, which often covers them, and flushes itself otherwise.
    async fn flush_through(self: &Arc<Self>, through: i64) -> Result<(), BusError> {
        let _flushing = self.flushing.lock().await;
        if lock(&self.state).synced >= through {
            return Ok(());
        }
        let topic = Arc::clone(self);
        tokio::task::spawn_blocking(move || topic.sync_now()).await.map_err(|error| BusError::Broken {
            topic: self.name.clone(),
            reason: format!("the flush task failed: {error}"),
        })?
    }

    /// Flushes the active segment now, if it holds records not yet flushed. Blocking.
    fn sync_now(&self) -> Result<(), BusError> {
        let (storage, end) = {
            let state = lock(&self.state);
            if state.synced >= state.next_offset {
                return Ok(());
            }
            (
                Arc::clone(&state.segments.back().expect("a topic always has a segment").storage),
                state.next_offset,
            )
        };
        storage.sync().map_err(|source| io_error(storage.path().unwrap_or(Path::new(&self.name)), source))?;
        {
            let mut state = lock(&self.state);
            state.synced = state.synced.max(end);
        }
        self.readable.notify_waiters();
        Ok(())
    }

    /// The end of what consumers may read.
    fn readable_end(&self, state: &TopicState) -> i64 {
        if self.settings.visible_when_synced() {
            state.synced
        } else {
            state.next_offset
        }
    }

    fn join(&self, group: &str, membership: Membership) -> Result<(), BusError> {
        let persisted = match membership {
            Membership::Group => {
                let remembered = lock(&self.state).committed.get(group).copied();
                remembered.or_else(|| self.read_committed(group))
            }
            Membership::Reader => None,
        };
        let mut state = lock(&self.state);
        if state.groups.contains_key(group) {
            return Err(BusError::GroupInUse { topic: self.name.clone(), group: group.to_string() });
        }
        let start = state.segments.front().map_or(0, |s| s.base);
        let committed = match persisted {
            Some(offset) if offset < start => {
                tracing::warn!(
                    topic = %self.name,
                    group,
                    committed = offset,
                    oldest = start,
                    "records the group had not read were deleted by retention; it resumes at the oldest kept"
                );
                start
            }
            Some(offset) if offset > state.next_offset => {
                tracing::warn!(topic = %self.name, group, committed = offset, end = state.next_offset, "the group committed past the end of the log; it resumes at the end");
                state.next_offset
            }
            Some(offset) => offset,
            None => start,
        };
        state.groups.insert(group.to_string(), Group { position: committed, committed, membership });
        Ok(())
    }

    fn leave(&self, group: &str) {
        lock(&self.state).groups.remove(group);
        self.writable.notify_waiters();
    }

    fn offsets_path(&self, group: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join("groups").join(format!("{group}.offset")))
    }

    /// Returns the offset `group` committed in an earlier process, if any; a file that
    /// cannot be read is logged and taken as none (the group then reads again from the
    /// oldest record kept: duplicates, never a loss).
    fn read_committed(&self, group: &str) -> Option<i64> {
        let path = self.offsets_path(group)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read a committed offset");
                return None;
            }
        };
        match serde_json::from_str::<CommittedOffset>(&text) {
            Ok(committed) => Some(committed.offset),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "a committed offset file is damaged; reading from the oldest record kept");
                None
            }
        }
    }

    /// Takes up to `max` readable records of `group` (at most [`MAX_READ_BYTES`]).
    fn take(&self, group: &str, max: usize) -> Result<Taken, BusError> {
        let (storage, first, count, start, len) = {
            let mut state = lock(&self.state);
            if state.closed || !state.groups.contains_key(group) {
                return Ok(Taken::Closed);
            }
            let oldest = state.segments.front().map_or(0, |s| s.base);
            let taker = state.groups.get_mut(group).expect("the group is in the topic");
            // Only a reader, which retention does not wait for, can be behind the
            // oldest record kept.
            if taker.position < oldest {
                tracing::warn!(
                    topic = %self.name,
                    position = taker.position,
                    oldest,
                    "retention deleted records a reader had not read; it goes on at the oldest kept"
                );
                taker.position = oldest;
            }
            let position = taker.position;
            let end = self.readable_end(&state);
            if position >= end {
                return Ok(Taken::Nothing);
            }
            let index = state.segments.partition_point(|s| s.base <= position).saturating_sub(1);
            let segment = &state.segments[index];
            let from = usize::try_from(position - segment.base).unwrap_or(usize::MAX);
            if from >= segment.positions.len() {
                return Err(BusError::Broken {
                    topic: self.name.clone(),
                    reason: format!("offset {position} is not in the segment at {}", segment.base),
                });
            }
            let readable = usize::try_from(end - position).unwrap_or(usize::MAX);
            let start = u64::from(segment.positions[from]);
            let mut count = max.min(readable).min(segment.positions.len() - from).max(1);
            let end_of =
                |count: usize| segment.positions.get(from + count).map_or(segment.len, |p| u64::from(*p));
            while count > 1 && end_of(count) - start > MAX_READ_BYTES as u64 {
                count /= 2;
            }
            let len = end_of(count) - start;
            (Arc::clone(&segment.storage), position, count, start, len)
        };
        let bytes = storage
            .read(start, usize::try_from(len).unwrap_or(usize::MAX))
            .map_err(|source| io_error(storage.path().unwrap_or(Path::new(&self.name)), source))?;
        let mut records = Vec::with_capacity(count);
        let mut at = 0;
        for expected in first..first + count as i64 {
            let decoded = segment::decode(&bytes[at..]).map(|(decoded, size)| {
                at += size;
                decoded
            });
            match decoded {
                Ok(decoded) if decoded.offset == expected => records.push(decoded.into_record(&self.name)),
                Ok(decoded) => {
                    return Err(damaged_read(
                        &storage,
                        &self.name,
                        start + at as u64,
                        &Damage::Offset { expected, found: decoded.offset },
                    ))
                }
                Err(damage) => return Err(damaged_read(&storage, &self.name, start + at as u64, &damage)),
            }
        }
        {
            let mut state = lock(&self.state);
            if let Some(group) = state.groups.get_mut(group) {
                group.position = first + count as i64;
            }
        }
        self.writable.notify_waiters();
        Ok(Taken::Some(records))
    }

    /// Records `group`'s progress as committed (in memory, and in its file), then
    /// deletes what retention lets go. Blocking.
    ///
    /// The offset counts as committed (and lets retention delete what is below it)
    /// only once its file is written, so that a restart never finds a committed
    /// offset pointing below records that are gone.
    fn commit(&self, group: &str) -> Result<(), BusError> {
        let position = {
            let state = lock(&self.state);
            match state.groups.get(group) {
                Some(g) if g.committed != g.position => g.position,
                _ => return Ok(()),
            }
        };
        if let Some(path) = self.offsets_path(group) {
            let bytes =
                serde_json::to_vec(&CommittedOffset { offset: position }).expect("an offset serializes");
            write_atomically(&path, &bytes, self.settings.fsync == Fsync::Always)?;
        }
        let removed = {
            let mut state = lock(&self.state);
            if let Some(g) = state.groups.get_mut(group) {
                g.committed = g.committed.max(position);
            }
            state.committed.insert(group.to_string(), position);
            self.expired(&mut state)
        };
        remove_segments(&self.name, removed);
        Ok(())
    }

    /// Returns the records `group` has not taken yet; for a reader, those it can
    /// take now.
    fn lag(&self, group: &str) -> i64 {
        let state = lock(&self.state);
        state.groups.get(group).map_or(0, |g| match g.membership {
            Membership::Group => state.next_offset - g.position,
            Membership::Reader => (self.readable_end(&state) - g.position).max(0),
        })
    }

    /// Waits until every group has fewer than `capacity` records to take.
    async fn wait_for_room(&self) -> Result<(), BusError> {
        loop {
            let notified = self.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = lock(&self.state);
                if state.closed {
                    return Err(BusError::Closed { topic: self.name.clone() });
                }
                let behind = state
                    .groups
                    .values()
                    .filter(|g| g.holds_back())
                    .map(|g| state.next_offset - g.position)
                    .max()
                    .unwrap_or(0);
                if behind < self.settings.capacity as i64 {
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.readable.notify_waiters();
        self.writable.notify_waiters();
    }
}

/// A committed offset as its file holds it.
#[derive(serde::Serialize, serde::Deserialize)]
struct CommittedOffset {
    offset: i64,
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a reader
/// sees the old content or the new, never a mix.
fn write_atomically(path: &Path, bytes: &[u8], sync: bool) -> Result<(), BusError> {
    let temporary = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut file = File::create(&temporary)?;
        io::Write::write_all(&mut file, bytes)?;
        if sync {
            file.sync_data()?;
        }
        std::fs::rename(&temporary, path)
    };
    write().map_err(|source| io_error(path, source))
}

fn sync_dir(dir: &Path) -> Result<(), BusError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| io_error(dir, source))
}

/// Deletes the files of segments that retention let go; a reader still holding one
/// keeps reading it until it lets go.
fn remove_segments(topic: &str, removed: Vec<Arc<Storage>>) {
    for storage in removed {
        if let Some(path) = storage.path() {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::debug!(topic, path = %path.display(), "deleted a segment"),
                Err(error) => {
                    tracing::warn!(topic, path = %path.display(), %error, "cannot delete a segment")
                }
            }
        }
    }
}

fn damaged(path: &Path, position: u64, damage: &Damage) -> BusError {
    BusError::Corrupt {
        path: path.to_path_buf(),
        position,
        reason: format!(
            "{damage}; it is not the last segment, so this is damage rather than a torn write: \
             move the file away to start without its records"
        ),
    }
}

fn damaged_read(storage: &Storage, topic: &str, position: u64, damage: &Damage) -> BusError {
    BusError::Corrupt {
        path: storage.path().map_or_else(|| PathBuf::from(topic), Path::to_path_buf),
        position,
        reason: format!("{damage} (read back after it was written)"),
    }
}

/// What one look at a topic found for a group.
enum Taken {
    Some(Vec<Record>),
    Nothing,
    Closed,
}

/// The producer half of the embedded bus; see [`Producer`].
#[derive(Clone)]
pub struct EmbeddedProducer {
    bus: Arc<Bus>,
}

impl fmt::Debug for EmbeddedProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedProducer").field("dir", &self.bus.settings.dir).finish()
    }
}

impl EmbeddedProducer {
    pub(crate) async fn send_all(&self, topic: &str, messages: Vec<Message>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        let topic = self.bus.topic(topic)?;
        topic.wait_for_room().await?;
        let appending = Arc::clone(&topic);
        let end =
            tokio::task::spawn_blocking(move || appending.append(&messages)).await.map_err(|error| {
                BusError::Broken {
                    topic: topic.name.clone(),
                    reason: format!("the write task failed: {error}"),
                }
            })??;
        if topic.settings.fsync == Fsync::Always {
            topic.flush_through(end).await?;
        } else if topic.settings.fsync == Fsync::Never {
            topic.readable.notify_waiters();
        }
        Ok(())
    }
}

/// The consumer half of the embedded bus; see [`Consumer`].
pub struct EmbeddedConsumer {
    topics: Vec<Arc<Topic>>,
    group: String,
    membership: Membership,
    /// The topic to look at first next time, so that no topic starves another.
    next: usize,
}

impl fmt::Debug for EmbeddedConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedConsumer")
            .field("topics", &self.topics.iter().map(|t| &t.name).collect::<Vec<_>>())
            .field("group", &self.group)
            .finish()
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        for topic in &self.topics {
            topic.leave(&self.group);
        }
    }
}

impl EmbeddedConsumer {
    /// Takes what the topics have into `batch`, starting with the topic after the one
    /// that went first last time; returns whether every topic is closed.
    async fn fill(&mut self, batch: &mut Vec<Record>, max: usize) -> Result<bool, BusError> {
        let mut closed = 0;
        let count = self.topics.len();
        for step in 0..count {
            if batch.len() >= max {
                break;
            }
            let topic = Arc::clone(&self.topics[(self.next + step) % count]);
            let (group, want, name) = (self.group.clone(), max - batch.len(), topic.name.clone());
            let taken =
                tokio::task::spawn_blocking(move || topic.take(&group, want)).await.map_err(|error| {
                    BusError::Broken { topic: name, reason: format!("the read task failed: {error}") }
                })??;
            match taken {
                Taken::Some(records) => batch.extend(records),
                Taken::Nothing => {}
                Taken::Closed => closed += 1,
            }
        }
        self.next = (self.next + 1) % count.max(1);
        Ok(closed == count)
    }

    pub(crate) async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
        idle: Duration,
    ) -> Result<Option<Vec<Record>>, BusError> {
        let max = max.max(1);
        let mut batch = Vec::new();
        let mut deadline = Instant::now() + idle;
        let mut lingering = false;
        loop {
            // Registered before looking, so a record that arrives between the look
            // and the wait still wakes this consumer.
            let topics = self.topics.clone();
            let mut waits: Vec<_> = topics.iter().map(|t| Box::pin(t.readable.notified())).collect();
            for wait in &mut waits {
                wait.as_mut().enable();
            }
            let closed = self.fill(&mut batch, max).await?;
            if closed {
                return Ok(if batch.is_empty() { None } else { Some(batch) });
            }
            if batch.len() >= max {
                return Ok(Some(batch));
            }
            if !batch.is_empty() && !lingering {
                lingering = true;
                deadline = Instant::now() + linger;
            }
            let any = futures_select(waits);
            if timeout_at(deadline, any).await.is_err() {
                return Ok(Some(batch));
            }
        }
    }

    pub(crate) async fn commit(&mut self) -> Result<(), BusError> {
        if self.membership == Membership::Reader {
            return Ok(());
        }
        for topic in &self.topics {
            let (topic, group) = (Arc::clone(topic), self.group.clone());
            let name = topic.name.clone();
            tokio::task::spawn_blocking(move || topic.commit(&group)).await.map_err(|error| {
                BusError::Broken { topic: name, reason: format!("the commit task failed: {error}") }
            })??;
        }
        Ok(())
    }

    pub(crate) fn lag(&self) -> Vec<(String, i32, i64)> {
        self.topics.iter().map(|t| (t.name.clone(), 0, t.lag(&self.group))).collect()
    }

    pub(crate) fn end_offsets(&self) -> Vec<(String, i32, i64)> {
        self.topics.iter().map(|t| (t.name.clone(), 0, lock(&t.state).next_offset)).collect()
    }
}

/// Completes when any of `waits` completes.
async fn futures_select<F: std::future::Future<Output = ()> + Unpin>(mut waits: Vec<F>) {
    std::future::poll_fn(|cx| {
        for wait in &mut waits {
            if std::pin::Pin::new(wait).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests;
