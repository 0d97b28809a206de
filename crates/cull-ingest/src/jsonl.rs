//! JSON lines: `cull.mention/v1` records, one per line, from a file or stdin.
//!
//! In follow mode a file is read like `tail -F`: at its end the reader waits for more,
//! a half-written last line is held until its newline arrives, a file replaced by
//! rotation (a new inode at the path) is read to its end before the new file is opened
//! from its start, and a truncated file is read again from its start.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cull_bus::dead_letter::Reason;
use cull_bus::BusError;
use cull_model::{Mention, ModelError};
use tokio::sync::watch;

use crate::normalize::Draft;
use crate::outlet::Outlet;

/// Lines handed to the bus at once.
const CHUNK: usize = 512;

/// Where a JSON-lines source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonlConfig {
    /// The source name.
    pub name: String,
    /// The file, or `None` for stdin.
    pub path: Option<PathBuf>,
    /// Whether to keep reading at the end of the file, like `tail -F`.
    pub follow: bool,
    /// How often a followed file is checked for new lines and rotation.
    pub poll_interval: Duration,
    /// Lines longer than this many bytes are dead-lettered (their first bytes kept).
    pub max_line_bytes: usize,
}

/// Why a JSON-lines source stopped.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    /// The file cannot be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (`-` for stdin).
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The bus did not take the mentions.
    #[error("handing mentions to the bus: {0}")]
    Bus(#[from] BusError),
}

/// What a JSON-lines source did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JsonlStats {
    /// Lines read (blank lines excluded).
    pub lines: u64,
    /// Mentions handed to the outlet.
    pub mentions: u64,
    /// Lines dead-lettered.
    pub dead_letters: u64,
}

/// One line of input, or the fact that it was too long.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The bytes of the line without its terminator.
    Complete(Vec<u8>),
    /// The line was longer than the limit; its first `limit` bytes are kept for the
    /// dead letter, the rest was skipped without being held in memory.
    Oversized {
        /// The first bytes.
        head: Vec<u8>,
        /// The full length of the line.
        length: usize,
    },
}

/// Splits a byte stream into bounded lines.
///
/// `BufRead::read_until` would hold a line of any length in memory; a feed that sends
/// a gigabyte without a newline must cost a bounded amount instead.
#[derive(Debug, Default)]
pub struct LineSplitter {
    line: Vec<u8>,
    length: usize,
    limit: usize,
}

impl LineSplitter {
    /// Returns a splitter for lines of at most `limit` bytes.
    pub fn new(limit: usize) -> LineSplitter {
        LineSplitter { line: Vec::new(), length: 0, limit }
    }

    /// Feeds `bytes`, calling `emit` for each line they complete.
    pub fn push(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(Line)) {
        while !bytes.is_empty() {
            let (chunk, newline) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            let room = (self.limit + 1).saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.length += chunk.len();
            bytes = &bytes[chunk.len() + usize::from(newline)..];
            if newline {
                emit(self.take());
            }
        }
    }

    /// Ends the input: a last line without a newline is emitted.
    pub fn finish(&mut self, emit: &mut impl FnMut(Line)) {
        if self.length > 0 || !self.line.is_empty() {
            emit(self.take());
        }
    }

    /// Drops a partial line (the file it came from was truncated).
    fn reset(&mut self) {
        self.line.clear();
        self.length = 0;
    }

    fn take(&mut self) -> Line {
        let mut line = std::mem::take(&mut self.line);
        let mut length = std::mem::take(&mut self.length);
        if line.last() == Some(&b'\r') && length <= self.limit + 1 {
            line.pop();
            length -= 1;
        }
        if length > self.limit {
            line.truncate(self.limit);
            return Line::Oversized { head: line, length };
        }
        Line::Complete(line)
    }
}

/// Reads bounded lines from a reader to its end (stdin for `cull match`, say).
#[derive(Debug)]
pub struct BoundedLines<R> {
    reader: R,
    splitter: LineSplitter,
    ready: VecDeque<Line>,
    ended: bool,
}

impl<R: BufRead> BoundedLines<R> {
    /// Returns the lines of `reader`, each at most `limit` bytes.
    pub fn new(reader: R, limit: usize) -> BoundedLines<R> {
        BoundedLines { reader, splitter: LineSplitter::new(limit), ready: VecDeque::new(), ended: false }
    }

    /// Returns the next line, `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Ok(Some(line));
            }
            if self.ended {
                return Ok(None);
            }
            let ready = &mut self.ready;
            let buffer = self.reader.fill_buf()?;
            if buffer.is_empty() {
                self.ended = true;
                self.splitter.finish(&mut |line| ready.push_back(line));
                continue;
            }
            let length = buffer.len();
            self.splitter.push(buffer, &mut |line| ready.push_back(line));
            self.reader.consume(length);
        }
    }
}

/// Reads the source until its end (or, following, until `stop`), handing valid
/// mentions to `outlet` and dead-lettering the lines that are not, with `path:line`.
pub async fn run_jsonl(
    outlet: &Outlet,
    config: &JsonlConfig,
    stop: watch::Receiver<bool>,
) -> Result<JsonlStats, JsonlError> {
    let display = config.path.clone().unwrap_or_else(|| PathBuf::from("-"));
    let io_error = |source| JsonlError::Io { path: display.clone(), source };
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<(String, Line)>>(2);
    let stopped = Arc::new(AtomicBool::new(false));
    let reader = {
        let (config, stopped) = (config.clone(), Arc::clone(&stopped));
        tokio::task::spawn_blocking(move || read_lines(&config, &stopped, &sender))
    };
    let mut stats = JsonlStats::default();
    let mut stop = stop;
    let result = loop {
        let chunk = tokio::select! {
            chunk = receiver.recv() => chunk,
            _ = stop.wait_for(|stopped| *stopped) => None,
        };
        let Some(chunk) = chunk else { break Ok(()) };
        if let Err(error) = deliver_chunk(outlet, config, chunk, &mut stats).await {
            break Err(error);
        }
    };
    stopped.store(true, Ordering::Relaxed);
    drop(receiver);
    let read = reader.await.map_err(|e| io_error(io::Error::other(e)))?;
    result?;
    read.map_err(io_error)?;
    Ok(stats)
}

async fn deliver_chunk(
    outlet: &Outlet,
    config: &JsonlConfig,
    chunk: Vec<(String, Line)>,
    stats: &mut JsonlStats,
) -> Result<(), JsonlError> {
    let mut drafts = Vec::with_capacity(chunk.len());
    for (location, line) in chunk {
        let (error, original) = match line {
            Line::Complete(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Complete(bytes) => match Mention::from_json_limited(&bytes, config.max_line_bytes) {
                Ok(mention) => {
                    stats.lines += 1;
                    drafts.push(Draft::from_mention(&config.name, mention));
                    continue;
                }
                Err(error) => (error, bytes),
            },
            Line::Oversized { head, length } => {
                (ModelError::Oversized { size: length, limit: config.max_line_bytes }, head)
            }
        };
        stats.lines += 1;
        stats.dead_letters += 1;
        outlet.reject(&config.name, Reason::from(&error), &error, location, original).await?;
    }
    if !drafts.is_empty() {
        stats.mentions += outlet.deliver(&config.name, drafts).await?.ids.len() as u64;
    }
    Ok(())
}

/// Numbers lines and sends them to the async side in chunks.
struct Batcher<'a> {
    name: String,
    number: u64,
    chunk: Vec<(String, Line)>,
    sender: &'a tokio::sync::mpsc::Sender<Vec<(String, Line)>>,
}

impl Batcher<'_> {
    /// Adds a line; returns false when the receiver is gone (the source stops).
    fn push(&mut self, line: Line) -> bool {
        self.number += 1;
        self.chunk.push((format!("{}:{}", self.name, self.number), line));
        self.chunk.len() < CHUNK || self.flush()
    }

    /// Sends the lines gathered so far; returns false when the receiver is gone.
    fn flush(&mut self) -> bool {
        self.chunk.is_empty() || self.sender.blocking_send(std::mem::take(&mut self.chunk)).is_ok()
    }

    /// Numbers lines from 1 again: a new file (after rotation) or the same one truncated.
    fn restart(&mut self) {
        self.number = 0;
    }
}

/// The blocking side: reads lines and sends them in chunks, each with its location.
fn read_lines(
    config: &JsonlConfig,
    stopped: &AtomicBool,
    sender: &tokio::sync::mpsc::Sender<Vec<(String, Line)>>,
) -> io::Result<()> {
    let name = config.path.as_deref().map_or_else(|| "stdin".to_string(), |p| p.display().to_string());
    let mut out = Batcher { name, number: 0, chunk: Vec::with_capacity(CHUNK), sender };
    let mut splitter = LineSplitter::new(config.max_line_bytes);
    let Some(path) = &config.path else {
        if pump(&mut io::stdin().lock(), &mut splitter, &mut |line| out.push(line))? {
            splitter.finish(&mut |line| {
                out.push(line);
            });
        }
        out.flush();
        return Ok(());
    };
    let mut file = Followed::open(path)?;
    loop {
        if !pump(&mut file.reader, &mut splitter, &mut |line| out.push(line))? {
            return Ok(());
        }
        if !config.follow {
            splitter.finish(&mut |line| {
                out.push(line);
            });
            out.flush();
            return Ok(());
        }
        if !out.flush() {
            return Ok(());
        }
        std::thread::sleep(config.poll_interval);
        if stopped.load(Ordering::Relaxed) {
            return Ok(());
        }
        match file.check(path)? {
            Change::None => {}
            Change::Truncated => {
                splitter.reset();
                out.restart();
            }
            Change::Rotated(next) => {
                // The rotated file was read to its end above; what its writer added
                // since is read before switching to the new file.
                pump(&mut file.reader, &mut splitter, &mut |line| out.push(line))?;
                splitter.finish(&mut |line| {
                    out.push(line);
                });
                file = next;
                out.restart();
            }
        }
    }
}

/// Reads `reader` to its current end, feeding the splitter; `emit` returns false when
/// the receiver is gone. Returns whether reading should go on.
fn pump(
    reader: &mut impl BufRead,
    splitter: &mut LineSplitter,
    emit: &mut impl FnMut(Line) -> bool,
) -> io::Result<bool> {
    let mut open = true;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if buffer.is_empty() {
            return Ok(open);
        }
        let length = buffer.len();
        splitter.push(buffer, &mut |line| open &= emit(line));
        reader.consume(length);
        if !open {
            return Ok(false);
        }
    }
}

/// A file being followed, and the identity of the file it was opened as.
struct Followed {
    reader: BufReader<File>,
    identity: (u64, u64),
}

/// What happened to a followed path since the last look.
enum Change {
    None,
    Truncated,
    Rotated(Followed),
}

impl Followed {
    fn open(path: &Path) -> io::Result<Followed> {
        let file = File::open(path)?;
        let metadata = file.metadata()?;
        Ok(Followed { reader: BufReader::new(file), identity: (metadata.dev(), metadata.ino()) })
    }

    fn check(&mut self, path: &Path) -> io::Result<Change> {
        let at_path = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            // Between the rename and the creation of the new file: look again later.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Change::None),
            Err(error) => return Err(error),
        };
        if (at_path.dev(), at_path.ino()) != self.identity {
            return Ok(Change::Rotated(Followed::open(path)?));
        }
        let position = self.reader.stream_position()?;
        if at_path.len() < position {
            self.reader.seek(SeekFrom::Start(0))?;
            return Ok(Change::Truncated);
        }
        Ok(Change::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_bounded_across_reads() {
        let mut reader = BoundedLines::new(io::BufReader::with_capacity(2, &b"a\r\nbbbbbb\n\ncc"[..]), 4);
        let lines: Vec<Line> = std::iter::from_fn(|| reader.next_line().unwrap()).collect();
        assert_eq!(
            lines,
            [
                Line::Complete(b"a".to_vec()),
                Line::Oversized { head: b"bbbb".to_vec(), length: 6 },
                Line::Complete(Vec::new()),
                Line::Complete(b"cc".to_vec()),
            ]
        );
    }
}
