//! JSON lines: `cull.mention/v1` records, one per line, from a file or stdin.
//!
//! In follow mode a file is read like `tail -F`: at its end the reader waits for more,
//! a half-written last line is held until its newline arrives, a file replaced by
//! rotation (a new inode at the path) is read to its end before the new file is opened
//! from its start, and a truncated file is read again from its start.
//!
//! # The cursor of a followed file
//!
//! A followed file is read across restarts, so where the reader is must survive one:
//! after each handoff the bus acknowledged, a [`Cursor`] is written (atomically) to the
//! state directory, naming the file by its identity (device and inode), the byte
//! offset after the last line handed off, that line's number and a digest of the
//! bytes just before the offset. A restart goes on at the offset when the file at the
//! path is the same file with the same bytes there; when it was rotated away while
//! cull was down, the rest of the old file is read first if it is still in the same
//! directory (where logrotate leaves it); when it was truncated or rewritten, it is
//! read from its start.
//!
//! The digest is also how a rewrite is noticed while following: a file truncated and
//! written again between two looks can be longer than before, so its size says
//! nothing, but the bytes before the reader's position have changed.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cull_bus::dead_letter::Reason;
use cull_bus::BusError;
use cull_model::{check_claim, Mention, ModelError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::normalize::{Draft, Markup};
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
    /// Where the cursor of a followed file is kept; `None` reads from the start.
    pub cursor: Option<PathBuf>,
    /// Whether the mentions' title and text are plain text or HTML.
    pub markup: Markup,
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
    /// The cursor could not be written.
    #[error("cannot write the cursor {}: {source}", path.display())]
    Cursor {
        /// The cursor file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
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

    /// Feeds `bytes`, calling `emit` for each line they complete with the number of
    /// bytes of `bytes` consumed through its newline.
    pub fn push(&mut self, bytes: &[u8], emit: &mut impl FnMut(Line, usize)) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (chunk, newline) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            let room = (self.limit + 1).saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.length += chunk.len();
            rest = &rest[chunk.len() + usize::from(newline)..];
            if newline {
                emit(self.take(), bytes.len() - rest.len());
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
            self.splitter.push(buffer, &mut |line, _| ready.push_back(line));
            self.reader.consume(length);
        }
    }
}

/// Where a followed file was read up to, as the state directory keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The device of the file.
    pub dev: u64,
    /// The inode of the file.
    pub ino: u64,
    /// The byte offset after the last line handed off.
    pub offset: u64,
    /// The number of that line.
    pub line: u64,
    /// A digest of the bytes just before `offset`.
    pub digest: String,
}

/// The bytes before an offset that its digest covers.
const DIGEST_BYTES: u64 = 256;

/// Returns the digest of the (up to [`DIGEST_BYTES`]) bytes of `file` before `offset`.
fn digest_before(file: &File, offset: u64) -> io::Result<String> {
    let start = offset.saturating_sub(DIGEST_BYTES);
    let mut bytes = vec![0; usize::try_from(offset - start).unwrap_or(0)];
    let mut read = 0;
    while read < bytes.len() {
        match file.read_at(&mut bytes[read..], start + read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    bytes.truncate(read);
    Ok(hex::encode(&Sha256::digest(&bytes)[..16]))
}

/// Returns the cursor kept at `path`; a damaged one is logged and read as none (the
/// file is then read from its start: repeats, which the ids make harmless, never a
/// gap).
fn read_cursor(path: &Path) -> Option<Cursor> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read a followed file's cursor; reading from the start");
            return None;
        }
    };
    serde_json::from_str(&text)
        .map_err(|error| tracing::warn!(path = %path.display(), %error, "a followed file's cursor is damaged; reading from the start"))
        .ok()
}

/// Writes `cursor` to `path` through a temporary file and a rename.
fn write_cursor(path: &Path, cursor: &Cursor) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, serde_json::to_vec(cursor).map_err(io::Error::other)?)?;
    std::fs::rename(&temporary, path)
}

/// Lines, with where the reader will be once they are handed off.
struct Chunk {
    lines: Vec<(String, Line)>,
    mark: Option<Cursor>,
}

/// Reads the source until its end (or, following, until `stop`), handing valid
/// mentions to `outlet` and dead-lettering the lines that are not, with `path:line`;
/// a followed file's cursor moves after each handoff.
pub async fn run_jsonl(
    outlet: &Outlet,
    config: &JsonlConfig,
    stop: watch::Receiver<bool>,
) -> Result<JsonlStats, JsonlError> {
    let display = config.path.clone().unwrap_or_else(|| PathBuf::from("-"));
    let io_error = |source| JsonlError::Io { path: display.clone(), source };
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Chunk>(2);
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
        if let Err(error) = deliver_chunk(outlet, config, chunk.lines, &mut stats).await {
            break Err(error);
        }
        if let (Some(path), Some(mark)) = (&config.cursor, chunk.mark) {
            let path = path.clone();
            let written =
                tokio::task::spawn_blocking(move || write_cursor(&path, &mark).map_err(|e| (path, e)))
                    .await
                    .map_err(|e| io_error(io::Error::other(e)))?;
            if let Err((path, source)) = written {
                break Err(JsonlError::Cursor { path, source });
            }
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
            Line::Complete(bytes) => match Mention::from_json_limited(&bytes, config.max_line_bytes)
                .and_then(|mention| check_claim(mention.client.as_deref(), outlet.client()).map(|()| mention))
            {
                Ok(mention) => {
                    stats.lines += 1;
                    drafts.push(Draft::from_mention(&config.name, mention, config.markup));
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

/// Numbers lines and sends them to the async side in chunks, each with the cursor
/// that holds once it is handed off.
struct Batcher<'a> {
    name: String,
    number: u64,
    chunk: Vec<(String, Line)>,
    /// The identity of the file, the offset after the last line in `chunk` and that
    /// line's number; `None` when nothing is followed.
    last: Option<((u64, u64), u64, u64)>,
    sender: &'a tokio::sync::mpsc::Sender<Chunk>,
}

impl Batcher<'_> {
    /// Adds a line that ends at byte `end` of `file`; returns false when the receiver
    /// is gone (the source stops).
    fn push(&mut self, line: Line, file: Option<(&Followed, u64)>) -> bool {
        self.number += 1;
        self.chunk.push((format!("{}:{}", self.name, self.number), line));
        if let Some((file, end)) = file {
            self.last = Some((file.identity, end, self.number));
        }
        self.chunk.len() < CHUNK || self.flush(file.map(|(f, _)| f))
    }

    /// Sends the lines gathered so far, with their cursor computed on `file`; returns
    /// false when the receiver is gone.
    fn flush(&mut self, file: Option<&Followed>) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        let mark = match (self.last.take(), file) {
            (Some((identity, offset, line)), Some(file)) if file.identity == identity => {
                match digest_before(file.reader.get_ref(), offset) {
                    Ok(digest) => Some(Cursor { dev: identity.0, ino: identity.1, offset, line, digest }),
                    Err(error) => {
                        tracing::warn!(%error, "cannot read back a followed file for its cursor");
                        None
                    }
                }
            }
            _ => None,
        };
        self.sender.blocking_send(Chunk { lines: std::mem::take(&mut self.chunk), mark }).is_ok()
    }

    /// Numbers lines from `number` on: a new file (after rotation), the same one
    /// truncated, or a file resumed at its cursor.
    fn restart(&mut self, number: u64, name: String) {
        self.number = number;
        self.name = name;
    }
}

/// The blocking side: reads lines and sends them in chunks, each with its location.
fn read_lines(
    config: &JsonlConfig,
    stopped: &AtomicBool,
    sender: &tokio::sync::mpsc::Sender<Chunk>,
) -> io::Result<()> {
    let name = config.path.as_deref().map_or_else(|| "stdin".to_string(), |p| p.display().to_string());
    let mut out = Batcher { name, number: 0, chunk: Vec::with_capacity(CHUNK), last: None, sender };
    let mut splitter = LineSplitter::new(config.max_line_bytes);
    let Some(path) = &config.path else {
        let mut stdin = io::stdin().lock();
        let mut open = true;
        while open {
            let buffer = stdin.fill_buf()?;
            if buffer.is_empty() {
                splitter.finish(&mut |line| open &= out.push(line, None));
                break;
            }
            let length = buffer.len();
            splitter.push(buffer, &mut |line, _| open &= out.push(line, None));
            stdin.consume(length);
        }
        out.flush(None);
        return Ok(());
    };
    let follow = config.follow;
    let cursor = config.cursor.as_deref().filter(|_| follow).and_then(read_cursor);
    let (mut file, number, rotated_away) = Followed::resume(path, cursor.as_ref())?;
    if let Some(RotatedAway { file: mut old, path: old_path, line }) = rotated_away {
        out.restart(line, old_path.display().to_string());
        if !old.pump(&mut splitter, &mut out)? {
            return Ok(());
        }
        splitter.finish(&mut |line| {
            let end = old.position;
            out.push(line, Some((&old, end)));
        });
        if !out.flush(Some(&old)) {
            return Ok(());
        }
    }
    out.restart(number, path.display().to_string());
    loop {
        if !file.pump(&mut splitter, &mut out)? {
            return Ok(());
        }
        if !follow {
            splitter.finish(&mut |line| {
                out.push(line, None);
            });
            out.flush(None);
            return Ok(());
        }
        if !out.flush(Some(&file)) {
            return Ok(());
        }
        let seen = file.digest()?;
        std::thread::sleep(config.poll_interval);
        if stopped.load(Ordering::Relaxed) {
            return Ok(());
        }
        match file.check(path, &seen)? {
            Change::None => {}
            Change::Truncated => {
                splitter.reset();
                out.restart(0, path.display().to_string());
            }
            Change::Rotated(next) => {
                // The rotated file was read to its end above; what its writer added
                // since is read before switching to the new file.
                if !file.pump(&mut splitter, &mut out)? {
                    return Ok(());
                }
                splitter.finish(&mut |line| {
                    let end = file.position;
                    out.push(line, Some((&file, end)));
                });
                if !out.flush(Some(&file)) {
                    return Ok(());
                }
                file = next;
                out.restart(0, path.display().to_string());
            }
        }
    }
}

/// A file being followed: its reader, the identity of the file it was opened as and
/// the bytes consumed from it.
struct Followed {
    reader: BufReader<File>,
    identity: (u64, u64),
    position: u64,
}

/// The file a cursor named, found under another name after a rotation, positioned at
/// the cursor.
struct RotatedAway {
    file: Followed,
    path: PathBuf,
    /// The number of the line before the position.
    line: u64,
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
        Ok(Followed { reader: BufReader::new(file), identity: (metadata.dev(), metadata.ino()), position: 0 })
    }

    /// Opens `path` where `cursor` says the reader was; returns the file, the number
    /// of the line before its position and, when the file was rotated away while
    /// cull was down and is still in the same directory, that old file positioned at
    /// the cursor.
    fn resume(path: &Path, cursor: Option<&Cursor>) -> io::Result<(Followed, u64, Option<RotatedAway>)> {
        let mut file = Followed::open(path)?;
        let Some(cursor) = cursor else { return Ok((file, 0, None)) };
        let identity = (cursor.dev, cursor.ino);
        if file.identity == identity {
            if file.at_cursor(cursor)? {
                file.seek(cursor.offset)?;
                return Ok((file, cursor.line, None));
            }
            tracing::warn!(path = %path.display(), offset = cursor.offset, "the followed file was truncated or rewritten while cull was down; reading it from the start");
            return Ok((file, 0, None));
        }
        match find_by_identity(path, identity)? {
            Some(old_path) => {
                let mut old = Followed::open(&old_path)?;
                if old.identity == identity && old.at_cursor(cursor)? {
                    tracing::info!(path = %path.display(), rotated = %old_path.display(), "the followed file was rotated while cull was down; reading the rest of the old one first");
                    old.seek(cursor.offset)?;
                    return Ok((file, 0, Some(RotatedAway { file: old, path: old_path, line: cursor.line })));
                }
                tracing::warn!(path = %path.display(), rotated = %old_path.display(), "the followed file was rotated and the old one changed; reading the new one from the start");
            }
            None => {
                tracing::warn!(path = %path.display(), "the followed file was replaced while cull was down and the old one is gone; reading the new one from the start")
            }
        }
        Ok((file, 0, None))
    }

    /// Returns whether this file holds, before `cursor.offset`, the bytes the cursor's
    /// digest was made of.
    fn at_cursor(&self, cursor: &Cursor) -> io::Result<bool> {
        let len = self.reader.get_ref().metadata()?.len();
        Ok(len >= cursor.offset && digest_before(self.reader.get_ref(), cursor.offset)? == cursor.digest)
    }

    fn seek(&mut self, offset: u64) -> io::Result<()> {
        self.reader.seek(SeekFrom::Start(offset))?;
        self.position = offset;
        Ok(())
    }

    /// Returns the digest of the bytes before the reader's position.
    fn digest(&self) -> io::Result<String> {
        digest_before(self.reader.get_ref(), self.position)
    }

    /// Reads to the current end, sending lines to `out`; returns whether reading
    /// should go on (false when the receiver is gone).
    fn pump(&mut self, splitter: &mut LineSplitter, out: &mut Batcher<'_>) -> io::Result<bool> {
        let mut open = true;
        loop {
            let buffer = match self.reader.fill_buf() {
                Ok(buffer) => buffer,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if buffer.is_empty() {
                return Ok(open);
            }
            let (length, base) = (buffer.len(), self.position);
            let mut ends = Vec::new();
            let mut lines = Vec::new();
            splitter.push(buffer, &mut |line, consumed| {
                lines.push(line);
                ends.push(base + consumed as u64);
            });
            self.reader.consume(length);
            self.position += length as u64;
            for (line, end) in lines.into_iter().zip(ends) {
                open &= out.push(line, Some((self, end)));
            }
            if !open {
                return Ok(false);
            }
        }
    }

    /// Looks at `path` again: a new file there, or this one shorter than what was
    /// read, or with other bytes before the position than `seen` (rewritten).
    fn check(&mut self, path: &Path, seen: &str) -> io::Result<Change> {
        let at_path = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            // Between the rename and the creation of the new file: look again later.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Change::None),
            Err(error) => return Err(error),
        };
        if (at_path.dev(), at_path.ino()) != self.identity {
            return Ok(Change::Rotated(Followed::open(path)?));
        }
        if at_path.len() < self.position || self.digest()? != seen {
            self.seek(0)?;
            return Ok(Change::Truncated);
        }
        Ok(Change::None)
    }
}

/// Returns the file in the directory of `path` whose identity is `identity`: where a
/// rotation (logrotate's rename) left the file that was followed.
fn find_by_identity(path: &Path, identity: (u64, u64)) -> io::Result<Option<PathBuf>> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Ok(metadata) = entry.metadata() {
            if metadata.is_file() && (metadata.dev(), metadata.ino()) == identity {
                return Ok(Some(entry.path()));
            }
        }
    }
    Ok(None)
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

    use std::io::Write as _;
    use std::sync::Mutex;
    use std::time::Instant;

    use cull_bus::{Consumer, EmbeddedBus};

    use crate::normalize::{Screen, ScreenConfig};
    use crate::outlet::Observer;

    #[derive(Debug, Default)]
    struct Quiet;

    impl Observer for Quiet {
        fn delivered(&self, _: &str, _: u64) {}
        fn duplicates(&self, _: &str, _: u64) {}
        fn near_duplicates(&self, _: &str, _: u64) {}
        fn dead_letters(&self, _: &str, _: Reason, _: u64) {}
        fn feed_polled(&self, _: &str, _: &'static str) {}
        fn webhook_answered(&self, _: &str, _: u16) {}
    }

    fn line(id: &str) -> String {
        format!("{{\"schema\":\"cull.mention/v1\",\"id\":\"{id}\",\"text\":\"mention {id}\"}}\n")
    }

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    /// A followed source of `path` with its cursor in `dir`, running until stopped.
    struct Following {
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<Result<JsonlStats, JsonlError>>,
    }

    /// Follows `path` with its cursor in `dir`, looking every 20 ms.
    fn follow(bus: &EmbeddedBus, dir: &Path, path: &Path) -> Following {
        follow_with(bus, path, Duration::from_millis(20), Some(dir.join("state/tail.json")))
    }

    fn follow_with(
        bus: &EmbeddedBus,
        path: &Path,
        poll_interval: Duration,
        cursor: Option<PathBuf>,
    ) -> Following {
        // A fresh screen, as after a restart: repeats would reach the bus.
        let screen = Arc::new(Mutex::new(Screen::new(ScreenConfig::default())));
        let outlet = Outlet::new(bus.producer(), "mentions", "dead", screen, Arc::new(Quiet));
        let config = JsonlConfig {
            name: "tail".into(),
            path: Some(path.to_path_buf()),
            follow: true,
            poll_interval,
            max_line_bytes: 4096,
            cursor,
            markup: Markup::Plain,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move { run_jsonl(&outlet, &config, stopped).await });
        Following { stop, task }
    }

    /// A fresh directory with `in.jsonl` holding `text`, a memory bus and a consumer
    /// of its mentions.
    fn setup(text: &str) -> (tempfile::TempDir, PathBuf, EmbeddedBus, Consumer) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        append(&path, text);
        let bus = EmbeddedBus::in_memory(1000);
        let consumer = bus.consumer(&["mentions"], "test").unwrap();
        (dir, path, bus, consumer)
    }

    impl Following {
        async fn stop(self) -> JsonlStats {
            self.stop.send(true).unwrap();
            self.task.await.unwrap().unwrap()
        }
    }

    /// Takes mentions until `count` arrived, then waits a little for any extra one.
    async fn take(consumer: &mut Consumer, count: usize) -> Vec<String> {
        let mut ids = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let idle =
                if ids.len() >= count { Duration::from_millis(300) } else { Duration::from_millis(50) };
            let batch = consumer.next_batch(100, Duration::from_millis(5), idle).await.unwrap().unwrap();
            if batch.is_empty() && ids.len() >= count {
                break;
            }
            ids.extend(batch.iter().map(|r| Mention::from_json(&r.payload).unwrap().id));
        }
        consumer.commit().await.unwrap();
        ids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_resumes_at_the_cursor_and_reads_what_was_appended_meanwhile() {
        let (dir, path, bus, mut consumer) = setup(&(line("a") + &line("b")));
        let running = follow(&bus, dir.path(), &path);
        assert_eq!(take(&mut consumer, 2).await, ["a", "b"]);
        running.stop().await;
        append(&path, &line("c"));
        let running = follow(&bus, dir.path(), &path);
        assert_eq!(take(&mut consumer, 1).await, ["c"], "only the line appended while stopped");
        let cursor: Cursor =
            serde_json::from_slice(&std::fs::read(dir.path().join("state/tail.json")).unwrap()).unwrap();
        assert_eq!((cursor.offset, cursor.line), (std::fs::metadata(&path).unwrap().len(), 3));
        running.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_rotated_while_stopped_is_finished_before_the_new_one() {
        let (dir, path, bus, mut consumer) = setup(&line("a"));
        let running = follow(&bus, dir.path(), &path);
        assert_eq!(take(&mut consumer, 1).await, ["a"]);
        running.stop().await;
        // logrotate while cull is down: the writer adds a line, the file is renamed
        // and a new one started.
        append(&path, &line("b"));
        std::fs::rename(&path, dir.path().join("in.jsonl.1")).unwrap();
        append(&path, &line("c"));
        let running = follow(&bus, dir.path(), &path);
        assert_eq!(take(&mut consumer, 2).await, ["b", "c"]);
        running.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_truncated_or_rewritten_while_stopped_is_read_from_its_start() {
        let (dir, path, bus, mut consumer) = setup(&(line("a") + &line("b")));
        let running = follow(&bus, dir.path(), &path);
        assert_eq!(take(&mut consumer, 2).await, ["a", "b"]);
        running.stop().await;
        // Rewritten in place (same inode), longer than before: only the digest knows.
        std::fs::write(&path, line("x") + &line("y") + &line("z")).unwrap();
        let running = follow(&bus, dir.path(), &path);
        assert_eq!(take(&mut consumer, 3).await, ["x", "y", "z"]);
        running.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rewrite_within_one_poll_is_read_from_its_start() {
        let (_dir, path, bus, mut consumer) = setup(&line("a"));
        // No cursor, and 500 ms between two looks.
        let running = follow_with(&bus, &path, Duration::from_millis(500), None);
        assert_eq!(take(&mut consumer, 1).await, ["a"]);
        // Truncated and written again, longer, between two looks (500 ms apart).
        std::fs::write(&path, line("p") + &line("q")).unwrap();
        assert_eq!(take(&mut consumer, 2).await, ["p", "q"]);
        running.stop().await;
    }
}
