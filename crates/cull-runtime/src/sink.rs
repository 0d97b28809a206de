//! The file sinks: the records of a topic appended to a JSON-lines file.
//!
//! Lines are written as batches arrive and flushed to the device (`fsync`) before the
//! runner commits the offsets, at most every second while records flow, so a crash
//! repeats lines rather than losing them (a repeat carries the same ids).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cull_bus::dead_letter::{
    Reason, ERROR_HEADER, LOCATION_HEADER, OFFSET_HEADER, PARTITION_HEADER, STAGE_HEADER, TOPIC_HEADER,
};
use cull_bus::Record;
use cull_model::DeadLetter;

use crate::config::FileSinkConfig;
use crate::stage::{Output, Stage, StageError};

/// How often a sink flushes its file to the device at most while records flow.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// How a file sink writes a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFormat {
    /// The payload, which is a JSON document (verdicts, tickets).
    Payload,
    /// A [`DeadLetter`] document built from the headers and the original bytes.
    DeadLetter,
}

/// Appends records to a file.
#[derive(Debug)]
pub struct FileSink {
    name: String,
    path: PathBuf,
    file: BufWriter<File>,
    format: SinkFormat,
    unsynced: bool,
    last_sync: Instant,
}

impl FileSink {
    /// Opens the file of `config` for appending (creating its directory), as the sink
    /// called `name` (`sink.tickets`, say).
    pub fn open(name: &str, config: &FileSinkConfig, format: SinkFormat) -> Result<FileSink, StageError> {
        let path = config.path.clone();
        let open = || -> std::io::Result<File> {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::OpenOptions::new().create(true).append(true).open(&path)
        };
        let file = open()
            .map_err(|e| StageError::new(name, format!("cannot open sink file {}: {e}", path.display())))?;
        Ok(FileSink {
            name: name.to_string(),
            path,
            file: BufWriter::with_capacity(1 << 16, file),
            format,
            unsynced: false,
            last_sync: Instant::now(),
        })
    }

    fn io_error(&self, error: std::io::Error) -> StageError {
        StageError::new(&self.name, format!("writing {}: {error}", self.path.display()))
    }
}

impl Stage for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn process(&mut self, records: &[Record], out: &mut Output) -> Result<(), StageError> {
        for record in records {
            let line = match self.format {
                SinkFormat::Payload if record.payload.contains(&b'\n') => {
                    // Pretty-printed JSON from another producer: one line it must be.
                    match serde_json::from_slice::<serde_json::Value>(&record.payload) {
                        Ok(value) => serde_json::to_vec(&value).expect("a JSON value always serializes"),
                        Err(error) => {
                            out.dead_letter(
                                record,
                                &format!("not one JSON document: {error}"),
                                Reason::MalformedJson,
                            );
                            continue;
                        }
                    }
                }
                SinkFormat::Payload => record.payload.clone(),
                SinkFormat::DeadLetter => dead_letter_document(record),
            };
            self.file
                .write_all(&line)
                .and_then(|()| self.file.write_all(b"\n"))
                .map_err(|e| self.io_error(e))?;
            self.unsynced = true;
        }
        Ok(())
    }

    fn flush(&mut self, force: bool) -> Result<bool, StageError> {
        if !self.unsynced {
            return Ok(true);
        }
        if !force && self.last_sync.elapsed() < SYNC_EVERY {
            return Ok(false);
        }
        self.file.flush().map_err(|e| self.io_error(e))?;
        self.file.get_ref().sync_data().map_err(|e| self.io_error(e))?;
        (self.unsynced, self.last_sync) = (false, Instant::now());
        Ok(true)
    }
}

/// Returns a dead-letter record as the JSON document a file sink writes: the headers
/// as fields and the original bytes in base64.
fn dead_letter_document(record: &Record) -> Vec<u8> {
    let header = |name: &str| {
        record.headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let origin = match (header(TOPIC_HEADER), header(PARTITION_HEADER), header(OFFSET_HEADER)) {
        (Some(topic), Some(partition), Some(offset)) => format!("{topic}/{partition}/{offset}"),
        _ => header(LOCATION_HEADER).unwrap_or_default(),
    };
    let error = header(ERROR_HEADER).unwrap_or_default();
    let letter = DeadLetter::new(&header(STAGE_HEADER).unwrap_or_default(), &error, origin, &record.payload);
    serde_json::to_vec(&letter).expect("a dead letter always serializes")
}
