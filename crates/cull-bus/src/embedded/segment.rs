//! The on-disk record format of the embedded log: frames in segment files.
//!
//! # Why a hand-written segment log
//!
//! The embedded bus needs exactly what Kafka's log is: records appended in offset
//! order, read forward by a few consumers, and deleted from the front a whole segment
//! at a time once every consumer group has committed past them. An embedded key-value
//! store (redb, fjall) would give transactions that this workload never uses and
//! charge for them with write amplification (copy-on-write pages, compaction) and
//! with a file that does not shrink when old records go; a log of segment files
//! writes every byte once, sequentially, and frees space with one `unlink`. What such
//! a log must get right is small and testable: a checksum on every record, and a
//! recovery that truncates a torn tail, which is what this module does.
//!
//! # Format
//!
//! A topic is a directory of segments named after the offset of their first record
//! (`00000000000000000042.log`, as Kafka names them). A segment is a sequence of
//! frames:
//!
//! ```text
//! frame = length:u32le  crc32(body):u32le  body
//! body  = offset:i64le  timestamp_ms:i64le
//!         key_length:u32le (u32::MAX: no key)  key
//!         header_count:u32le  (name_length:u32le name value_length:u32le value)*
//!         payload_length:u32le  payload
//! ```
//!
//! The offset in the body makes every frame self-describing, so recovery checks that
//! a segment holds consecutive offsets from its base and nothing else.
//!
//! # Recovery
//!
//! A write that was cut short (the machine lost power before the page cache reached
//! the disk) leaves a frame whose length, checksum or offset is wrong at the end of
//! the last segment. Opening a topic reads every frame of every segment, checking
//! each; the first bad frame of the last segment and everything after it are
//! truncated away (and logged), since nothing after a torn write can have been
//! acknowledged under `fsync = "always"`. A bad frame in any earlier segment is not a
//! torn tail but damage, and opening fails with the file and the position, rather
//! than silently dropping records that were acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::{Message, Record};

/// The bytes of a frame before its body: the body's length and checksum.
pub(crate) const FRAME_HEADER: usize = 8;
/// The largest record body accepted; a length beyond it in a file is damage.
pub(crate) const MAX_RECORD_BYTES: usize = 256 << 20;
/// A key length that means "no key".
const NO_KEY: u32 = u32::MAX;

/// Appends the frame of one record to `out`.
pub(crate) fn encode(offset: i64, timestamp_ms: i64, message: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    match &message.key {
        Some(key) => put_bytes(out, key),
        None => out.extend_from_slice(&NO_KEY.to_le_bytes()),
    }
    out.extend_from_slice(&(message.headers.len() as u32).to_le_bytes());
    for (name, value) in &message.headers {
        put_bytes(out, name.as_bytes());
        put_bytes(out, value);
    }
    put_bytes(out, &message.payload);
    let body = &out[start + FRAME_HEADER..];
    let length = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Returns the size of the frame of `message`, to refuse records that are too large
/// before anything is written.
pub(crate) fn body_len(message: &Message) -> usize {
    8 + 8
        + 4
        + message.key.as_ref().map_or(0, Vec::len)
        + 4
        + message.headers.iter().map(|(name, value)| 8 + name.len() + value.len()).sum::<usize>()
        + 4
        + message.payload.len()
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Damage {
    /// The bytes end inside the frame.
    Truncated,
    /// The length field is zero or beyond [`MAX_RECORD_BYTES`].
    Length(u32),
    /// The checksum does not match the body.
    Checksum,
    /// The body's fields do not add up to its length.
    Body,
    /// The frame holds another offset than the one that must come next.
    Offset { expected: i64, found: i64 },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Truncated => write!(f, "the file ends inside a record"),
            Damage::Length(length) => write!(f, "a record length of {length} bytes"),
            Damage::Checksum => write!(f, "a record whose checksum does not match"),
            Damage::Body => write!(f, "a record whose fields do not add up to its length"),
            Damage::Offset { expected, found } => {
                write!(f, "offset {found} where offset {expected} must come next")
            }
        }
    }
}

/// A decoded frame body.
pub(crate) struct Decoded {
    pub(crate) offset: i64,
    pub(crate) timestamp_ms: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) payload: Vec<u8>,
}

impl Decoded {
    pub(crate) fn into_record(self, topic: &str) -> Record {
        Record {
            topic: topic.to_string(),
            partition: 0,
            offset: self.offset,
            key: self.key,
            payload: self.payload,
            headers: self.headers,
        }
    }
}

/// Returns the length and checksum of the frame header at the start of `bytes`.
fn header(bytes: &[u8]) -> Result<(usize, u32), Damage> {
    let header = bytes.get(..FRAME_HEADER).ok_or(Damage::Truncated)?;
    let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if length == 0 || length as usize > MAX_RECORD_BYTES {
        return Err(Damage::Length(length));
    }
    Ok((length as usize, crc))
}

/// Decodes the frame at the start of `bytes`; returns it and the frame's size.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Decoded, usize), Damage> {
    let (length, crc) = header(bytes)?;
    let body = bytes.get(FRAME_HEADER..FRAME_HEADER + length).ok_or(Damage::Truncated)?;
    if crc32fast::hash(body) != crc {
        return Err(Damage::Checksum);
    }
    Ok((decode_body(body).ok_or(Damage::Body)?, FRAME_HEADER + length))
}

fn decode_body(body: &[u8]) -> Option<Decoded> {
    let mut reader = Fields { bytes: body };
    let offset = i64::from_le_bytes(reader.take(8)?.try_into().ok()?);
    let timestamp_ms = i64::from_le_bytes(reader.take(8)?.try_into().ok()?);
    let key_length = reader.u32()?;
    let key = if key_length == NO_KEY { None } else { Some(reader.take(key_length as usize)?.to_vec()) };
    let count = reader.u32()?;
    let mut headers = Vec::with_capacity((count as usize).min(64));
    for _ in 0..count {
        let name = reader.length_prefixed()?;
        let name = String::from_utf8(name.to_vec()).ok()?;
        headers.push((name, reader.length_prefixed()?.to_vec()));
    }
    let payload = reader.length_prefixed()?.to_vec();
    reader.bytes.is_empty().then_some(Decoded { offset, timestamp_ms, key, headers, payload })
}

struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = (self.bytes.get(..n)?, self.bytes.get(n..)?);
        self.bytes = rest;
        Some(taken)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn length_prefixed(&mut self) -> Option<&'a [u8]> {
        let length = self.u32()?;
        self.take(length as usize)
    }
}

/// Where a segment's bytes live.
#[derive(Debug)]
pub(crate) enum Storage {
    /// A file, appended to and read with positioned reads.
    File { file: File, path: PathBuf },
    /// Memory, for `storage = "memory"`.
    Memory(RwLock<Vec<u8>>),
}

impl Storage {
    /// Creates an empty segment file at `path` (or in memory when `path` is `None`).
    pub(crate) fn create(path: Option<&Path>) -> io::Result<Storage> {
        Ok(match path {
            Some(path) => Storage::File {
                file: OpenOptions::new().read(true).append(true).create_new(true).open(path)?,
                path: path.to_path_buf(),
            },
            None => Storage::Memory(RwLock::new(Vec::new())),
        })
    }

    /// Opens an existing segment file for appending and reading.
    pub(crate) fn open(path: &Path) -> io::Result<Storage> {
        Ok(Storage::File {
            file: OpenOptions::new().read(true).append(true).open(path)?,
            path: path.to_path_buf(),
        })
    }

    /// Appends `bytes`. After an error the storage may hold part of them: the caller
    /// truncates back with [`Storage::truncate`].
    pub(crate) fn append(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Storage::File { file, .. } => (&*file).write_all(bytes),
            Storage::Memory(data) => {
                data.write().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Returns `len` bytes from `position`.
    pub(crate) fn read(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        match self {
            Storage::File { file, .. } => {
                let mut bytes = vec![0; len];
                file.read_exact_at(&mut bytes, position)?;
                Ok(bytes)
            }
            Storage::Memory(data) => {
                let data = data.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                let start = usize::try_from(position).map_err(io::Error::other)?;
                data.get(start..start + len)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the end of a segment"))
            }
        }
    }

    /// Shortens the storage to `len` bytes.
    pub(crate) fn truncate(&self, len: u64) -> io::Result<()> {
        match self {
            Storage::File { file, .. } => file.set_len(len),
            Storage::Memory(data) => {
                let len = usize::try_from(len).map_err(io::Error::other)?;
                data.write().unwrap_or_else(std::sync::PoisonError::into_inner).truncate(len);
                Ok(())
            }
        }
    }

    /// Flushes the file's data to the device (nothing for memory).
    pub(crate) fn sync(&self) -> io::Result<()> {
        match self {
            Storage::File { file, .. } => file.sync_data(),
            Storage::Memory(_) => Ok(()),
        }
    }

    /// Returns the file, if this storage is one.
    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            Storage::File { path, .. } => Some(path),
            Storage::Memory(_) => None,
        }
    }
}

/// What reading a segment file from its start found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// The position of each valid record, in order.
    pub(crate) positions: Vec<u32>,
    /// The bytes of the valid records: where the file must end.
    pub(crate) valid_len: u64,
    /// The timestamp of the last valid record.
    pub(crate) last_timestamp_ms: i64,
    /// What was wrong at `valid_len`, if the file goes on past it.
    pub(crate) damage: Option<Damage>,
}

/// Reads every frame of the segment file at `path`, whose first record must have
/// offset `base`, and checks each.
pub(crate) fn scan(path: &Path, base: i64) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut scan = Scan { positions: Vec::new(), valid_len: 0, last_timestamp_ms: 0, damage: None };
    let mut frame = Vec::new();
    while scan.valid_len < file_len {
        let expected = base + scan.positions.len() as i64;
        let mut head = [0u8; FRAME_HEADER];
        let remaining = file_len - scan.valid_len;
        if remaining < FRAME_HEADER as u64 {
            scan.damage = Some(Damage::Truncated);
            break;
        }
        reader.read_exact(&mut head)?;
        let (length, _) = match header(&head) {
            Ok(header) => header,
            Err(damage) => {
                scan.damage = Some(damage);
                break;
            }
        };
        if remaining < (FRAME_HEADER + length) as u64 {
            scan.damage = Some(Damage::Truncated);
            break;
        }
        frame.clear();
        frame.extend_from_slice(&head);
        frame.resize(FRAME_HEADER + length, 0);
        reader.read_exact(&mut frame[FRAME_HEADER..])?;
        match decode(&frame) {
            Ok((decoded, size)) if decoded.offset == expected => {
                scan.positions.push(u32::try_from(scan.valid_len).map_err(io::Error::other)?);
                scan.last_timestamp_ms = decoded.timestamp_ms;
                scan.valid_len += size as u64;
            }
            Ok((decoded, _)) => {
                scan.damage = Some(Damage::Offset { expected, found: decoded.offset });
                break;
            }
            Err(damage) => {
                scan.damage = Some(damage);
                break;
            }
        }
    }
    Ok(scan)
}

/// Returns the file name of the segment whose first offset is `base`.
pub(crate) fn file_name(base: i64) -> String {
    format!("{base:020}.log")
}

/// Returns the first offset of a segment from its file name, `None` for other files.
pub(crate) fn parse_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: Option<&str>, payload: &str) -> Message {
        Message {
            key: key.map(|k| k.as_bytes().to_vec()),
            payload: payload.as_bytes().to_vec(),
            headers: vec![("cull.stage".into(), b"match".to_vec()), ("empty".into(), Vec::new())],
        }
    }

    #[test]
    fn frames_round_trip_with_keys_headers_and_binary_payloads() {
        let mut bytes = Vec::new();
        let first = message(Some("m-1"), "{\"id\":\"m-1\"}");
        let second = Message { key: None, payload: vec![0, 255, 10, 13], headers: Vec::new() };
        encode(7, 1_700_000_000_000, &first, &mut bytes);
        let split = bytes.len();
        assert_eq!(split, FRAME_HEADER + body_len(&first));
        encode(8, 1_700_000_000_001, &second, &mut bytes);
        let (one, size) = decode(&bytes).unwrap();
        assert_eq!(size, split);
        assert_eq!((one.offset, one.timestamp_ms), (7, 1_700_000_000_000));
        let one = one.into_record("t");
        assert_eq!((one.key, one.payload, one.headers), (first.key, first.payload, first.headers));
        let (two, _) = decode(&bytes[split..]).unwrap();
        assert_eq!((two.offset, two.key, two.payload), (8, None, second.payload));
    }

    #[test]
    fn every_damaged_byte_is_detected() {
        let mut bytes = Vec::new();
        encode(0, 1, &message(Some("k"), "payload"), &mut bytes);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x5a;
            assert!(decode(&damaged).is_err(), "a flipped byte {i} went unnoticed");
        }
        for len in 0..bytes.len() {
            assert_eq!(decode(&bytes[..len]).err(), Some(Damage::Truncated), "cut at {len}");
        }
    }

    #[test]
    fn segment_names_sort_by_offset_and_parse_back() {
        assert_eq!(file_name(42), "00000000000000000042.log");
        assert_eq!(parse_file_name(&file_name(i64::MAX)), Some(i64::MAX));
        for other in ["42.log", "00000000000000000042.tmp", "0000000000000000004x.log", "groups"] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_scan_stops_at_a_torn_tail_and_at_an_offset_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(10));
        let mut bytes = Vec::new();
        for offset in 10..13 {
            encode(offset, offset * 100, &message(None, "x"), &mut bytes);
        }
        let whole = bytes.len() as u64;
        let mut torn = bytes.clone();
        encode(13, 1300, &message(None, "the torn one"), &mut torn);
        torn.truncate(torn.len() - 3);
        std::fs::write(&path, &torn).unwrap();
        let scan = scan(&path, 10).unwrap();
        assert_eq!(scan.positions.len(), 3);
        assert_eq!((scan.valid_len, scan.last_timestamp_ms), (whole, 1200));
        assert_eq!(scan.damage, Some(Damage::Truncated));

        let mut skipped = bytes.clone();
        encode(14, 1400, &message(None, "a gap"), &mut skipped);
        std::fs::write(&path, &skipped).unwrap();
        let scan = super::scan(&path, 10).unwrap();
        assert_eq!((scan.positions.len(), scan.valid_len), (3, whole));
        assert_eq!(scan.damage, Some(Damage::Offset { expected: 13, found: 14 }));

        let mut zeros = bytes;
        zeros.extend_from_slice(&[0; 4096]);
        std::fs::write(&path, &zeros).unwrap();
        let scan = super::scan(&path, 10).unwrap();
        assert_eq!((scan.positions.len(), scan.damage), (3, Some(Damage::Length(0))));
    }
}
