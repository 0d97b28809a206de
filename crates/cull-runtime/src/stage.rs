//! The one shape of a stage: a batch of records in, records out.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use cull_bus::dead_letter::{dead_letter, Origin, Reason};
use cull_bus::{Message, Record};

/// A stage of the pipeline: it turns the records of its input topics into records
/// for other topics, and may keep state of its own (an index, a file).
///
/// A stage is sync: the runner calls it on a blocking thread, so a stage is plain
/// code that can be tested without a bus or a runtime. Everything a stage has in
/// common with the others (reading batches, sending the results and waiting for the
/// acknowledgements, committing offsets, lag and batch metrics, stopping and draining,
/// isolating a record it panics on) is the runner's.
pub trait Stage: Send + 'static {
    /// Returns the stage's name, as dead letters, metrics and logs show it.
    fn name(&self) -> &str;

    /// Is told, once before the first batch, where each input partition's log ends
    /// (on the embedded bus; empty on Kafka), for a stage that keeps a checkpoint.
    fn start(&mut self, _log_ends: &[(String, i32, i64)]) {}

    /// Processes `records`, putting what they produce into `out`.
    ///
    /// Bad input is not an error: it goes to the dead-letter topic through
    /// [`Output::dead_letter`]. An `Err` means the stage cannot go on (its disk failed)
    /// and stops the process. A panic is isolated by the runner: the batch is run again
    /// one record at a time and the records that panic alone are dead-lettered, so a
    /// stage must leave its state consistent after a panic, and redoing a record it had
    /// partly done must be harmless.
    fn process(&mut self, records: &[Record], out: &mut Output) -> Result<(), StageError>;

    /// Is told that it panicked on `record`, which the runner dead-lettered: for a
    /// stage that counts what it read.
    fn panicked_on(&mut self, _record: &Record) {}

    /// Makes the effects of every record processed so far durable when that is due,
    /// or now when `force` is true, and returns whether they are: only then does the
    /// runner commit the input's offsets. A stage without state of its own has
    /// nothing to make durable.
    fn flush(&mut self, _force: bool) -> Result<bool, StageError> {
        Ok(true)
    }

    /// Returns the changelog topic of a stage whose state must survive a restart and
    /// move with its input partitions to another replica; `None` (the default) for a
    /// stage whose state is its own (an index, a file) or that has none.
    ///
    /// The stage writes its state records (key = state key, payload = the state) to
    /// this topic through [`Output::send`] in the batch that changed them, so they are
    /// acknowledged before the batch's input offsets are committed. The runner reads
    /// the topic from its oldest record before the first batch and from where it was
    /// before every batch after, and hands the new records to [`Stage::restore`]: a
    /// replica that takes over a partition has every state record its previous owner
    /// had acknowledged before it processes a record of that partition. The runner
    /// creates the topic when it is missing.
    fn changelog(&self) -> Option<String> {
        None
    }

    /// Is given the records of the changelog topic that are new since the last call,
    /// in log order: every one at the first call (before the first batch), then, before
    /// each batch, those written since, by this stage (its own echoes) or by another
    /// replica. Called only for a stage with a [`Stage::changelog`].
    ///
    /// The stage keeps the latest record per key, and takes a restored record over
    /// what it has in memory only when the record is newer (by a revision it puts in
    /// the payload, say): its own echoes arrive a batch late, and a record of a
    /// replica that lost the partition can arrive after this stage moved on. A record
    /// it cannot decode is the stage's to log and skip; one it panics on is
    /// dead-lettered with the panic (reason `panic`), as in [`Stage::process`].
    fn restore(&mut self, _records: &[Record]) {}
}

/// What a stage produces from a batch: records for topics, and dead letters.
#[derive(Debug)]
pub struct Output {
    stage: String,
    records: Vec<(String, Message)>,
    dead_letters: Vec<(Message, Reason)>,
}

impl Output {
    /// Returns an empty output of `stage`.
    pub fn new(stage: &str) -> Output {
        Output { stage: stage.to_string(), records: Vec::new(), dead_letters: Vec::new() }
    }

    /// Adds `message` for `topic`.
    pub fn send(&mut self, topic: impl Into<String>, message: Message) {
        self.records.push((topic.into(), message));
    }

    /// Sends `record`, which the stage cannot process for `error`, to the dead-letter
    /// topic with its original bytes, its origin and this stage's name.
    pub fn dead_letter(&mut self, record: &Record, error: &dyn fmt::Display, reason: Reason) {
        let origin = Origin::Record {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
        };
        let message = dead_letter(&self.stage, error, &origin, record.key.clone(), record.payload.clone());
        self.dead_letters.push((message, reason));
    }

    /// Returns the records for topics, in order.
    pub fn records(&self) -> &[(String, Message)] {
        &self.records
    }

    /// Returns the dead letters with their reasons.
    pub fn dead_letters(&self) -> &[(Message, Reason)] {
        &self.dead_letters
    }

    fn append(&mut self, other: Output) {
        self.records.extend(other.records);
        self.dead_letters.extend(other.dead_letters);
    }

    /// Takes the records grouped by topic (in first-seen order) and the dead letters.
    pub(crate) fn into_parts(self) -> (ByTopic, Vec<(Message, Reason)>) {
        let mut topics: Vec<(String, Vec<Message>)> = Vec::new();
        for (topic, message) in self.records {
            match topics.iter_mut().find(|(t, _)| *t == topic) {
                Some((_, messages)) => messages.push(message),
                None => topics.push((topic, vec![message])),
            }
        }
        (topics, self.dead_letters)
    }
}

/// Records grouped by the topic they go to.
pub(crate) type ByTopic = Vec<(String, Vec<Message>)>;

/// A stage that cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("stage {stage}: {source}")]
pub struct StageError {
    /// The stage.
    pub stage: String,
    /// What failed.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StageError {
    /// Returns the error of `stage` caused by `source`.
    pub fn new(stage: &str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StageError {
        StageError { stage: stage.to_string(), source: source.into() }
    }
}

/// What processing a batch under isolation did.
#[derive(Debug)]
pub(crate) struct Isolated {
    pub(crate) output: Output,
    /// The records the stage panicked on (each is in the output's dead letters).
    pub(crate) panics: u64,
}

/// Processes `records` with `stage`; when the batch panics, processes its records one
/// at a time and dead-letters each record that panics alone, so that one poison
/// record costs one dead letter, not the line.
pub(crate) fn process_isolated(stage: &mut dyn Stage, records: &[Record]) -> Result<Isolated, StageError> {
    isolated(stage, records, Work::Process)
}

/// Restores `records` of the changelog into `stage`, as [`process_isolated`] does: a
/// state record that panics alone is dead-lettered, so that it does not crash the
/// stage at every start.
pub(crate) fn restore_isolated(stage: &mut dyn Stage, records: &[Record]) -> Isolated {
    isolated(stage, records, Work::Restore).expect("restoring cannot fail, only panic")
}

/// What a stage is asked to do with records.
#[derive(Clone, Copy)]
enum Work {
    Process,
    Restore,
}

impl Work {
    fn run(self, stage: &mut dyn Stage, records: &[Record], out: &mut Output) -> Result<(), StageError> {
        match self {
            Work::Process => stage.process(records, out),
            Work::Restore => {
                stage.restore(records);
                Ok(())
            }
        }
    }

    /// What a dead letter of a record this work panicked on says it was doing.
    fn doing(self) -> &'static str {
        match self {
            Work::Process => "on",
            Work::Restore => "restoring",
        }
    }
}

fn isolated(stage: &mut dyn Stage, records: &[Record], work: Work) -> Result<Isolated, StageError> {
    let name = stage.name().to_string();
    let mut output = Output::new(&name);
    let first = catch_unwind(AssertUnwindSafe(|| work.run(stage, records, &mut output)));
    let panic = match first {
        Ok(result) => return result.map(|()| Isolated { output, panics: 0 }),
        Err(panic) => panic,
    };
    tracing::error!(stage = %name, records = records.len(), panic = %panic_message(&*panic), "a batch panicked; processing its records one at a time");
    let mut output = Output::new(&name);
    let mut panics = 0;
    for record in records {
        let mut one = Output::new(&name);
        match catch_unwind(AssertUnwindSafe(|| work.run(stage, std::slice::from_ref(record), &mut one))) {
            Ok(result) => {
                result?;
                output.append(one);
            }
            Err(panic) => {
                let message = panic_message(&*panic);
                tracing::error!(stage = %name, topic = %record.topic, partition = record.partition, offset = record.offset, panic = %message, "dead-lettering a record the stage panicked on");
                output.dead_letter(
                    record,
                    &format!("the {name} stage panicked {} this record: {message}", work.doing()),
                    Reason::Panic,
                );
                if let Work::Process = work {
                    stage.panicked_on(record);
                }
                panics += 1;
            }
        }
    }
    Ok(Isolated { output, panics })
}

/// Returns what a panic said (its `&str` or `String` payload).
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(message), _) => (*message).to_string(),
        (_, Some(message)) => message.clone(),
        _ => "a panic without a message".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doubles each payload; panics on a payload of `poison`; counts what it saw.
    struct Doubler {
        seen: Vec<Vec<u8>>,
    }

    impl Stage for Doubler {
        fn name(&self) -> &str {
            "double"
        }

        fn process(&mut self, records: &[Record], out: &mut Output) -> Result<(), StageError> {
            for record in records {
                assert!(record.payload != b"poison", "poisoned at offset {}", record.offset);
                self.seen.push(record.payload.clone());
                out.send(
                    "out",
                    Message {
                        payload: [&record.payload[..], &record.payload[..]].concat(),
                        ..Message::default()
                    },
                );
            }
            Ok(())
        }
    }

    fn record(offset: i64, payload: &str) -> Record {
        Record { topic: "in".into(), offset, payload: payload.as_bytes().to_vec(), ..Record::default() }
    }

    #[test]
    fn a_record_that_panics_is_dead_lettered_and_the_batch_goes_on() {
        let mut stage = Doubler { seen: Vec::new() };
        let records = [record(0, "a"), record(1, "poison"), record(2, "b")];
        let isolated = process_isolated(&mut stage, &records).unwrap();
        assert_eq!(isolated.panics, 1);
        let (topics, dead) = isolated.output.into_parts();
        let payloads: Vec<&[u8]> = topics[0].1.iter().map(|m| m.payload.as_slice()).collect();
        assert_eq!(payloads, [&b"aa"[..], b"bb"], "each good record produced once");
        assert_eq!(dead.len(), 1);
        let (letter, reason) = &dead[0];
        assert_eq!(*reason, Reason::Panic);
        assert_eq!(letter.payload, b"poison", "the original bytes");
        let header = |name: &str| {
            letter
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(header("cull.stage").as_deref(), Some("double"));
        assert_eq!(header("cull.source.offset").as_deref(), Some("1"));
        assert!(header("cull.error").unwrap().contains("poisoned at offset 1"), "{:?}", header("cull.error"));
    }

    /// Keeps the payloads it restores (a set: restoring one again is harmless, as the
    /// contract asks); panics on a payload of `poison`.
    struct Restorer {
        restored: std::collections::BTreeSet<Vec<u8>>,
    }

    impl Stage for Restorer {
        fn name(&self) -> &str {
            "restore"
        }

        fn process(&mut self, _records: &[Record], _out: &mut Output) -> Result<(), StageError> {
            Ok(())
        }

        fn restore(&mut self, records: &[Record]) {
            for record in records {
                assert!(record.payload != b"poison", "a state record it cannot take");
                self.restored.insert(record.payload.clone());
            }
        }
    }

    #[test]
    fn a_state_record_that_panics_is_dead_lettered_and_the_rest_restored() {
        let mut stage = Restorer { restored: std::collections::BTreeSet::new() };
        let records = [record(0, "a"), record(1, "poison"), record(2, "b")];
        let isolated = restore_isolated(&mut stage, &records);
        assert_eq!(isolated.panics, 1);
        assert_eq!(stage.restored, [b"a".to_vec(), b"b".to_vec()].into(), "the good records");
        let (topics, dead) = isolated.output.into_parts();
        assert!(topics.is_empty());
        assert_eq!(dead.len(), 1);
        let (letter, reason) = &dead[0];
        assert_eq!((*reason, letter.payload.as_slice()), (Reason::Panic, &b"poison"[..]));
        let error = letter.headers.iter().find(|(n, _)| n == "cull.error").map(|(_, v)| v.clone()).unwrap();
        let error = String::from_utf8(error).unwrap();
        assert!(error.starts_with("the restore stage panicked restoring this record"), "{error}");
    }

    #[test]
    fn a_batch_without_panics_is_processed_once() {
        let mut stage = Doubler { seen: Vec::new() };
        let isolated = process_isolated(&mut stage, &[record(0, "a"), record(1, "b")]).unwrap();
        assert_eq!((isolated.panics, stage.seen.len()), (0, 2));
    }
}
