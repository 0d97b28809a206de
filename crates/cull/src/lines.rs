//! Reading JSON lines with a bound on the length of a line.

use std::io::{self, BufRead};

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

/// Reads the next line of at most `limit` bytes; `None` at end of input.
///
/// `BufRead::read_until` would hold a line of any length in memory; a feed that sends
/// a gigabyte without a newline must cost a bounded amount instead.
pub fn read_line(reader: &mut impl BufRead, limit: usize) -> io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut length = 0usize;
    let mut seen_any = false;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            break;
        }
        seen_any = true;
        let (chunk, found_newline) = match buffer.iter().position(|&b| b == b'\n') {
            Some(i) => (&buffer[..i], true),
            None => (buffer, false),
        };
        let room = (limit + 1).saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        length += chunk.len();
        let consumed = chunk.len() + usize::from(found_newline);
        reader.consume(consumed);
        if found_newline {
            break;
        }
    }
    if !seen_any {
        return Ok(None);
    }
    if line.last() == Some(&b'\r') && length <= limit + 1 {
        line.pop();
        length -= 1;
    }
    if length > limit {
        line.truncate(limit);
        return Ok(Some(Line::Oversized { head: line, length }));
    }
    Ok(Some(Line::Complete(line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_bounded() {
        let input = b"a\r\nbbbbbb\n\ncc";
        let mut reader = io::BufReader::with_capacity(2, &input[..]);
        assert_eq!(read_line(&mut reader, 4).unwrap(), Some(Line::Complete(b"a".to_vec())));
        assert_eq!(
            read_line(&mut reader, 4).unwrap(),
            Some(Line::Oversized { head: b"bbbb".to_vec(), length: 6 })
        );
        assert_eq!(read_line(&mut reader, 4).unwrap(), Some(Line::Complete(Vec::new())));
        assert_eq!(read_line(&mut reader, 4).unwrap(), Some(Line::Complete(b"cc".to_vec())));
        assert_eq!(read_line(&mut reader, 4).unwrap(), None);
    }
}
