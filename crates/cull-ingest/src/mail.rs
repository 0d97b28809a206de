//! Alert mails from an mbox file or a Maildir.
//!
//! Listening tools that only notify by mail (Google Alerts above all) end up in a
//! mailbox; this source turns each mail into mentions. A Google Alerts digest lists
//! several articles, and each one is a mention of its own: its title, its publisher,
//! its snippet and its real URL (normalization unwraps the `google.com/url` redirect
//! every item link goes through). Any other mail is one mention: subject and body.
//!
//! A Maildir is the live source: mail arrives in `new/`, and a message moves to
//! `cur/` with the "seen" flag once its mentions were acknowledged by the bus (or it
//! was dead-lettered). The Maildir is thus its own cursor: a restart emits nothing
//! twice, and a crash before the move repeats the message with the same ids. Only
//! `new/` is read; mail a reader already moved to `cur/` is taken as handled.
//!
//! An mbox has no place for such a cursor, so it is a one-shot import: every run
//! reads the whole file and delivers every message again. It is read as a stream, one
//! message at a time ([`MboxReader`]), so its size costs time, not memory; a message
//! over the size limit is dead-lettered (its first bytes kept) and the import goes on.

use std::collections::BTreeMap;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cull_bus::dead_letter::Reason;
use cull_bus::BusError;
use cull_model::Channel;
use mail_parser::{Message, MessageParser, PartType};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::html::{collapse_whitespace, for_each_token, html_to_text, Event};
use crate::normalize::{Draft, Markup};
use crate::outlet::Outlet;

/// The sender of Google Alerts digests.
const GOOGLE_ALERTS_SENDER: &str = "googlealerts-noreply@google.com";

/// The first block of text after an item's title is its publisher only when at most
/// this long; a longer one is the snippet of an item that names no publisher.
const MAX_PUBLISHER_CHARS: usize = 100;

/// Drafts of an mbox handed to the bus at once: large enough to amortize the wait for
/// the acknowledgement, small enough that a bus error repeats little.
const MBOX_BATCH: usize = 256;

/// Bytes of title and text an mbox batch holds at most before it is handed over:
/// with messages near the size limit, 256 of them would hold hundreds of megabytes
/// (a 306 MB mbox of 0.9 MB messages peaked at 720 MB without this bound).
const MBOX_BATCH_BYTES: usize = 8 << 20;

/// The line that begins a message of an mbox.
const MBOX_SEPARATOR: &[u8] = b"From ";

/// Messages read ahead of the delivery: the reading thread waits beyond them, which
/// bounds what an import holds to this many messages of at most the size limit.
const MBOX_READ_AHEAD: usize = 4;

/// Whether the mailbox is one mbox file or a Maildir directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailFormat {
    /// One file of messages, each starting with a `From ` line (read as mboxrd).
    Mbox,
    /// A directory with `new/` and `cur/` (and `tmp/`, which is never read).
    Maildir,
}

/// One mail source.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// The source name mentions carry.
    pub name: String,
    /// The mbox file or the Maildir directory.
    pub path: PathBuf,
    /// How `path` is laid out.
    pub format: MailFormat,
    /// The channel of a plain mail (usually [`Channel::Email`]). The items of an
    /// alert digest are news articles and always get [`Channel::News`].
    pub channel: Channel,
    /// How often `new/` of a Maildir is scanned for mail.
    pub poll_interval: Duration,
    /// Messages larger than this many bytes are dead-lettered (reason `oversized`).
    pub max_message_bytes: usize,
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MailStats {
    /// Messages read.
    pub messages: u64,
    /// Mentions the bus acknowledged (duplicates dropped by the screen not counted).
    pub mentions: u64,
    /// Messages sent to the dead-letter topic.
    pub dead_letters: u64,
}

/// Why a mail, or a whole mailbox, could not be turned into mentions.
///
/// The first three concern one message, which is dead-lettered (with its location) and
/// does not stop the source; the others stop it.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The bytes carry no mail header at all.
    #[error("not a mail message: no header found")]
    NotAMail,
    /// A mail with nothing to mention.
    #[error("the mail has neither a subject nor a body")]
    Empty,
    /// A message larger than the limit; only its first bytes were kept.
    #[error("the message is {length} bytes, over the limit of {limit} (the pipeline's max_mention_bytes)")]
    Oversized {
        /// The full length of the message.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// The mailbox (or a file in it) could not be read or a message not moved.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted: "read", "list", "move".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The bus did not take the mentions or the dead letter; the messages concerned
    /// were not marked as handled.
    #[error("cannot hand {location} to the bus: {source}")]
    Bus {
        /// The message or messages (`path#message n`, a Maildir file).
        location: String,
        /// What the bus said.
        #[source]
        source: BusError,
    },
}

/// Returns the drafts of one raw mail: one per item of a Google Alerts digest (on
/// [`Channel::News`]), else one for the whole mail on `channel`.
pub fn drafts_from_message(raw: &[u8], source: &str, channel: Channel) -> Result<Vec<Draft>, MailError> {
    let message = MessageParser::default().parse(raw).ok_or(MailError::NotAMail)?;
    let envelope = Envelope::of(&message, source);
    if envelope.from_address.eq_ignore_ascii_case(GOOGLE_ALERTS_SENDER) {
        let mut items = html_bodies(&message).iter().flat_map(|html| html_items(html)).collect::<Vec<_>>();
        if items.is_empty() {
            items = text_bodies(&message).iter().flat_map(|text| plain_items(text)).collect();
        }
        if !items.is_empty() {
            return Ok(items.into_iter().enumerate().map(|(i, item)| envelope.item(i + 1, item)).collect());
        }
    }
    // HTML is converted here rather than by normalization, which would take the
    // subject for HTML too and mangle one such as "<b> vs <strong>".
    let text = match text_bodies(&message) {
        texts if !texts.is_empty() => collapse_whitespace(&texts.join(" ")),
        _ => html_bodies(&message).iter().map(|html| html_to_text(html)).collect::<Vec<_>>().join(" "),
    };
    let subject = envelope.subject.as_deref().map(collapse_whitespace).filter(|s| !s.is_empty());
    if text.is_empty() && subject.is_none() {
        return Err(MailError::Empty);
    }
    Ok(vec![Draft {
        channel: Some(channel),
        title: subject,
        text,
        author: envelope.author.clone(),
        meta: envelope.meta(),
        ..envelope.draft()
    }])
}

/// What every draft of one mail shares.
struct Envelope {
    source: String,
    message_id: Option<String>,
    subject: Option<String>,
    from_address: String,
    author: Option<String>,
    published_at: Option<String>,
}

impl Envelope {
    fn of(message: &Message<'_>, source: &str) -> Envelope {
        let from = message.from().and_then(|from| from.first());
        let from_address = from.and_then(|f| f.address()).unwrap_or_default().trim().to_string();
        let name = from.and_then(|f| f.name()).map(str::trim).filter(|n| !n.is_empty());
        let author =
            name.map(str::to_string).or_else(|| Some(from_address.clone()).filter(|a| !a.is_empty()));
        let published_at = message
            .date()
            .filter(|date| date.is_valid())
            .and_then(|date| OffsetDateTime::from_unix_timestamp(date.to_timestamp()).ok())
            .and_then(|date| date.format(&Rfc3339).ok());
        Envelope {
            source: source.to_string(),
            message_id: message.message_id().map(str::to_string),
            subject: message.subject().map(str::to_string),
            from_address,
            author,
            published_at,
        }
    }

    /// Returns the mail headers worth keeping: the subject of a digest names the
    /// alert's query, the sender tells alert tools apart.
    fn meta(&self) -> BTreeMap<String, String> {
        let mut meta = BTreeMap::new();
        if let Some(subject) = self.subject.as_deref().map(collapse_whitespace).filter(|s| !s.is_empty()) {
            meta.insert("mail.subject".to_string(), subject);
        }
        if !self.from_address.is_empty() {
            meta.insert("mail.from".to_string(), self.from_address.clone());
        }
        meta
    }

    fn draft(&self) -> Draft {
        Draft {
            source: self.source.clone(),
            external_id: self.message_id.clone(),
            published_at: self.published_at.clone(),
            markup: Markup::Plain,
            ..Draft::default()
        }
    }

    /// Returns the draft of the `index`th (1-based) item of a digest.
    fn item(&self, index: usize, item: Item) -> Draft {
        let mut meta = self.meta();
        if let Some(publisher) = item.publisher {
            meta.insert("publisher".to_string(), publisher);
        }
        Draft {
            external_id: self.message_id.as_ref().map(|id| format!("{id}#{index}")),
            channel: Some(Channel::News),
            url: Some(item.href),
            title: Some(item.title).filter(|t| !t.is_empty()),
            text: item.text,
            meta,
            ..self.draft()
        }
    }
}

/// Returns the text/plain bodies of a mail (not the HTML ones mail-parser would
/// convert itself: HTML goes through this crate's own conversion).
fn text_bodies<'a>(message: &'a Message<'_>) -> Vec<&'a str> {
    let text = |part: &'a mail_parser::MessagePart<'_>| match &part.body {
        PartType::Text(text) => Some(text.as_ref()),
        _ => None,
    };
    message.text_bodies().filter_map(text).collect()
}

/// Returns the text/html bodies of a mail.
fn html_bodies<'a>(message: &'a Message<'_>) -> Vec<&'a str> {
    let html = |part: &'a mail_parser::MessagePart<'_>| match &part.body {
        PartType::Html(html) => Some(html.as_ref()),
        _ => None,
    };
    message.html_bodies().filter_map(html).collect()
}

/// One item of an alert digest, its text already extracted.
#[derive(Debug, Default, PartialEq)]
struct Item {
    /// The item link as found (a Google redirect).
    href: String,
    title: String,
    publisher: Option<String>,
    text: String,
}

impl Item {
    /// Returns the item of a link, its title and the blocks of text that followed,
    /// the first of them the publisher when short and followed by a snippet; `None`
    /// when there is nothing to say.
    fn new(href: String, title: &str, blocks: &[String]) -> Option<Item> {
        let mut blocks: Vec<String> =
            blocks.iter().map(|b| collapse_whitespace(b)).filter(|b| !b.is_empty()).collect();
        let publisher = match blocks.first() {
            Some(first) if blocks.len() >= 2 && first.chars().count() <= MAX_PUBLISHER_CHARS => {
                Some(blocks.remove(0))
            }
            _ => None,
        };
        let item = Item { href, title: collapse_whitespace(title), publisher, text: blocks.join(" ") };
        (!item.title.is_empty() || !item.text.is_empty()).then_some(item)
    }
}

/// Returns true when `href` is the link of a digest item: a Google redirect to the
/// article (`https://www.google.com/url?…&url=<article>&…`). The digest's other links
/// (share, "Flag as irrelevant", edit, unsubscribe, RSS) point to `google.com/alerts`.
fn is_item_link(href: &str) -> bool {
    let Ok(url) = url::Url::parse(href.trim()) else { return false };
    let google = url.host_str().is_some_and(|host| host == "google.com" || host.ends_with(".google.com"));
    google && url.path() == "/url" && url.query_pairs().any(|(name, _)| name == "url" || name == "q")
}

/// Where the walk over a digest's HTML is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    /// Before the first item, or after an item's text ended: text is skipped.
    Outside,
    /// Inside an item link: text is the title.
    Title,
    /// After an item link: text is the publisher and the snippet.
    Body,
    /// Inside any other link: its text ("Flag as irrelevant", "Unsubscribe") is not
    /// the item's.
    OtherLink,
}

/// Returns the items of a Google Alerts HTML digest.
///
/// Each item is an item link (its anchor text the title, with `<b>` highlights) and
/// then the publisher and the snippet in blocks of their own. Its text ends at the
/// next link of any kind: after the snippet come the share and "Flag as irrelevant"
/// links, and then section headings ("NEWS", "WEB") or the footer, none of which
/// belongs to the item.
fn html_items(html: &str) -> Vec<Item> {
    let mut found: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut place = Place::Outside;
    for_each_token(html, |event| match event {
        Event::Link { href } if is_item_link(&href) => {
            found.push((href, String::new(), Vec::new()));
            place = Place::Title;
        }
        Event::Link { .. } => place = Place::OtherLink,
        Event::LinkEnd => place = if place == Place::Title { Place::Body } else { Place::Outside },
        Event::Text(text) => match (place, found.last_mut()) {
            (Place::Title, Some((_, title, _))) => title.push_str(text),
            (Place::Body, Some((_, _, blocks))) => match blocks.last_mut() {
                Some(block) => block.push_str(text),
                None => blocks.push(text.to_string()),
            },
            _ => {}
        },
        Event::Break => match (place, found.last_mut()) {
            (Place::Title, Some((_, title, _))) => title.push(' '),
            (Place::Body, Some((_, _, blocks))) => blocks.push(String::new()),
            _ => {}
        },
    });
    found.into_iter().filter_map(|(href, title, blocks)| Item::new(href, &title, &blocks)).collect()
}

/// Returns the items of a Google Alerts plain-text digest, where each item is a
/// paragraph (title, publisher, snippet lines) followed by its link on a line of its
/// own as `<https://www.google.com/url?…>`. Lines of other links and the paragraph
/// before them ("Unsubscribe from this Google Alert:") are skipped, as are section
/// headings (`=== News - 3 new results for [slack] ===`).
fn plain_items(text: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut paragraph: Vec<String> = Vec::new();
    let mut previous: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        let link = line.strip_prefix('<').and_then(|rest| rest.strip_suffix('>'));
        if let Some(link) = link.filter(|link| link.starts_with("http://") || link.starts_with("https://")) {
            // A link right after a blank line belongs to the paragraph before it.
            let lines = std::mem::take(if paragraph.is_empty() { &mut previous } else { &mut paragraph });
            if is_item_link(link) {
                if let Some((title, blocks)) = lines.split_first() {
                    items.extend(Item::new(link.to_string(), title, blocks));
                }
            }
            previous.clear();
        } else if line.is_empty() {
            if !paragraph.is_empty() {
                previous = std::mem::take(&mut paragraph);
            }
        } else if !(line.starts_with("===") && line.ends_with("===")) {
            paragraph.push(line.to_string());
        }
    }
    items
}

/// One message of an mbox, as [`MboxReader`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MboxMessage {
    /// The bytes of the message, unquoted.
    Complete(Vec<u8>),
    /// The message was longer than the limit; its first `limit` bytes are kept for the
    /// dead letter, the rest was skipped without being held in memory.
    Oversized {
        /// The first bytes.
        head: Vec<u8>,
        /// The full length of the message.
        length: usize,
    },
}

/// Reads the messages of an mbox one at a time (as mboxrd: a line starting with
/// `From ` begins a message and is not part of it, one `>` is removed from `>From `
/// lines).
///
/// An mbox can be gigabytes: reading it whole held the file and a copy of every
/// message at once (a 340 MB mbox took 707 MB). The reader holds one message of at
/// most `limit` bytes and one line of at most that, whatever the size of the file.
///
/// Text before the first `From ` line is a message too, unless blank: a mail saved
/// without its envelope line is still read, and garbage is dead-lettered rather than
/// silently skipped.
#[derive(Debug)]
pub struct MboxReader<R> {
    reader: R,
    limit: usize,
    /// The current line, terminator included, up to `limit + 1` bytes of it.
    line: Vec<u8>,
    /// The current message, up to `limit + 1` bytes of it.
    message: Vec<u8>,
    /// The full length of the current message.
    length: usize,
    /// Whether a `From ` line was seen.
    started: bool,
    ended: bool,
}

impl<R: BufRead> MboxReader<R> {
    /// Returns the messages of `reader`, each at most `limit` bytes.
    pub fn new(reader: R, limit: usize) -> MboxReader<R> {
        MboxReader {
            reader,
            limit,
            line: Vec::new(),
            message: Vec::new(),
            length: 0,
            started: false,
            ended: false,
        }
    }

    /// Reads the next line into `line` (its first `limit + 1` bytes); returns its full
    /// length, 0 at the end of the input.
    fn read_line(&mut self) -> io::Result<usize> {
        self.line.clear();
        let mut length = 0;
        loop {
            let buffer = self.reader.fill_buf()?;
            if buffer.is_empty() {
                return Ok(length);
            }
            let (taken, complete) = match buffer.iter().position(|&b| b == b'\n') {
                Some(newline) => (newline + 1, true),
                None => (buffer.len(), false),
            };
            let room = (self.limit + 1).max(MBOX_SEPARATOR.len()).saturating_sub(self.line.len());
            self.line.extend_from_slice(&buffer[..taken.min(room)]);
            length += taken;
            self.reader.consume(taken);
            if complete {
                return Ok(length);
            }
        }
    }

    /// Returns whether there is a message to return at a `From ` line or the end.
    fn pending(&self) -> bool {
        self.started || !self.message.trim_ascii().is_empty()
    }

    fn take_message(&mut self) -> MboxMessage {
        let mut message = std::mem::take(&mut self.message);
        let length = std::mem::take(&mut self.length);
        if length > self.limit {
            message.truncate(self.limit);
            return MboxMessage::Oversized { head: message, length };
        }
        MboxMessage::Complete(message)
    }

    fn next_message(&mut self) -> io::Result<Option<MboxMessage>> {
        loop {
            let length = self.read_line()?;
            if length == 0 {
                self.ended = true;
                return Ok(self.pending().then(|| self.take_message()));
            }
            if self.line.starts_with(MBOX_SEPARATOR) {
                let pending = self.pending();
                self.started = true;
                if pending {
                    return Ok(Some(self.take_message()));
                }
                self.take_message();
                continue;
            }
            let quotes = self.line.iter().take_while(|&&b| b == b'>').count();
            let unquote = usize::from(quotes > 0 && self.line[quotes..].starts_with(MBOX_SEPARATOR));
            let line = &self.line[unquote..];
            let room = (self.limit + 1).saturating_sub(self.message.len());
            self.message.extend_from_slice(&line[..line.len().min(room)]);
            self.length += length - unquote;
        }
    }
}

impl<R: BufRead> Iterator for MboxReader<R> {
    type Item = io::Result<MboxMessage>;

    fn next(&mut self) -> Option<io::Result<MboxMessage>> {
        if self.ended {
            return None;
        }
        let next = self.next_message();
        if next.is_err() {
            self.ended = true;
        }
        next.transpose()
    }
}

/// Reads the mailbox of `config` and delivers its mail through `outlet`.
///
/// An mbox is read once, whatever `once` says. A Maildir is scanned until `new/` is
/// empty when `once`, else every `poll_interval` until `stop` turns true (a dropped
/// sender never stops it). A message that is not a mail, or says nothing, is
/// dead-lettered, located as `path#message n` (1-based) in an mbox and by its path in
/// `cur/` in a Maildir. An I/O error on the mailbox or a bus error ends the run, leaving
/// the Maildir message concerned in `new/`.
pub async fn run_mail(
    outlet: &Outlet,
    config: &MailConfig,
    once: bool,
    mut stop: watch::Receiver<bool>,
) -> Result<MailStats, MailError> {
    let mut stats = MailStats::default();
    if config.format == MailFormat::Mbox {
        run_mbox(outlet, config, &stop, &mut stats).await?;
        return Ok(stats);
    }
    loop {
        let handled = maildir_pass(outlet, config, &stop, &mut stats).await?;
        if *stop.borrow() || (once && handled == 0) {
            return Ok(stats);
        }
        if once {
            continue;
        }
        let stopped = async {
            if stop.wait_for(|&stopped| stopped).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(config.poll_interval) => {}
            _ = stopped => return Ok(stats),
        }
    }
}

async fn run_mbox(
    outlet: &Outlet,
    config: &MailConfig,
    stop: &watch::Receiver<bool>,
    stats: &mut MailStats,
) -> Result<(), MailError> {
    let path = &config.path;
    let file = std::fs::File::open(path).map_err(|source| io_error("read", path, source))?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<io::Result<MboxMessage>>(MBOX_READ_AHEAD);
    let limit = config.max_message_bytes;
    // The file is read on a blocking thread, never on the async workers; the reader
    // ends when the receiver is dropped (a stop, a bus error).
    let reader = tokio::task::spawn_blocking(move || {
        for message in MboxReader::new(io::BufReader::new(file), limit) {
            if sender.blocking_send(message).is_err() {
                return;
            }
        }
    });
    let mut batch: Vec<Draft> = Vec::new();
    let mut batch_bytes = 0;
    // The 1-based numbers of the first and last message in `batch`.
    let mut batch_messages = (0, 0);
    let mut number = 0;
    while let Some(message) = receiver.recv().await {
        if *stop.borrow() {
            break;
        }
        let message = message.map_err(|source| io_error("read", path, source))?;
        number += 1;
        let location = format!("{}#message {number}", path.display());
        stats.messages += 1;
        let parsed = match message {
            MboxMessage::Complete(raw) => {
                drafts_from_message(&raw, &config.name, config.channel).map_err(|error| (error, raw))
            }
            MboxMessage::Oversized { head, length } => Err((MailError::Oversized { length, limit }, head)),
        };
        match parsed {
            Ok(drafts) => {
                if batch.is_empty() {
                    batch_messages.0 = number;
                }
                batch_messages.1 = number;
                batch_bytes += drafts
                    .iter()
                    .map(|d| d.text.len() + d.title.as_ref().map_or(0, String::len))
                    .sum::<usize>();
                batch.extend(drafts);
            }
            Err((error, raw)) => reject(outlet, config, &error, location, raw, stats).await?,
        }
        if batch.len() >= MBOX_BATCH || batch_bytes >= MBOX_BATCH_BYTES {
            deliver(outlet, config, std::mem::take(&mut batch), mbox_range(path, batch_messages), stats)
                .await?;
            batch_bytes = 0;
        }
    }
    drop(receiver);
    reader.await.map_err(|e| io_error("read", path, io::Error::other(e)))?;
    if !batch.is_empty() {
        deliver(outlet, config, batch, mbox_range(path, batch_messages), stats).await?;
    }
    Ok(())
}

fn mbox_range(path: &Path, (first, last): (usize, usize)) -> String {
    if first == last {
        format!("{}#message {first}", path.display())
    } else {
        format!("{}#messages {first}-{last}", path.display())
    }
}

/// Handles every message in `new/` of the Maildir, oldest name first, and returns how
/// many there were.
async fn maildir_pass(
    outlet: &Outlet,
    config: &MailConfig,
    stop: &watch::Receiver<bool>,
    stats: &mut MailStats,
) -> Result<u64, MailError> {
    let new = config.path.join("new");
    let cur = config.path.join("cur");
    let mut names = Vec::new();
    let mut entries = tokio::fs::read_dir(&new).await.map_err(|source| io_error("list", &new, source))?;
    while let Some(entry) = entries.next_entry().await.map_err(|source| io_error("list", &new, source))? {
        let name = entry.file_name();
        // Maildir readers ignore names starting with a dot.
        let hidden = name.to_string_lossy().starts_with('.');
        let file = entry.file_type().await.is_ok_and(|kind| kind.is_file());
        if file && !hidden {
            names.push(name);
        }
    }
    names.sort();
    let mut handled = 0;
    for name in names {
        if *stop.borrow() {
            break;
        }
        let path = new.join(&name);
        let raw = match tokio::fs::read(&path).await {
            Ok(raw) => raw,
            // Another reader of the Maildir took it.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(io_error("read", &path, source)),
        };
        // The unique part of the name, without any info a delivery agent added.
        let name = name.to_string_lossy();
        let unique = name.split(':').next().unwrap_or(&name);
        let seen = cur.join(format!("{unique}:2,S"));
        let location = seen.display().to_string();
        stats.messages += 1;
        match drafts_from_message(&raw, &config.name, config.channel) {
            Ok(drafts) => deliver(outlet, config, drafts, location, stats).await?,
            Err(error) => reject(outlet, config, &error, location, raw, stats).await?,
        }
        tokio::fs::rename(&path, &seen).await.map_err(|source| io_error("move", &path, source))?;
        handled += 1;
    }
    Ok(handled)
}

async fn deliver(
    outlet: &Outlet,
    config: &MailConfig,
    drafts: Vec<Draft>,
    location: String,
    stats: &mut MailStats,
) -> Result<(), MailError> {
    let delivered =
        outlet.deliver(&config.name, drafts).await.map_err(|source| MailError::Bus { location, source })?;
    stats.mentions += delivered.ids.len() as u64;
    Ok(())
}

async fn reject(
    outlet: &Outlet,
    config: &MailConfig,
    error: &MailError,
    location: String,
    raw: Vec<u8>,
    stats: &mut MailStats,
) -> Result<(), MailError> {
    let reason = if matches!(error, MailError::Oversized { .. }) { Reason::Oversized } else { Reason::Other };
    outlet
        .reject(&config.name, reason, error, location.clone(), raw)
        .await
        .map_err(|source| MailError::Bus { location, source })?;
    stats.dead_letters += 1;
    Ok(())
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> MailError {
    MailError::Io { action, path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use cull_bus::dead_letter::{LOCATION_HEADER, STAGE_HEADER};
    use cull_bus::{EmbeddedBus, Record};
    use cull_model::Mention;

    use super::*;
    use crate::normalize::{normalize, Screen, ScreenConfig};
    use crate::outlet::Observer;

    /// A Google Alerts digest as the service sends it: multipart/alternative, the HTML
    /// in tables with schema.org attributes, every item behind a `google.com/url`
    /// redirect, share and "Flag as irrelevant" links after each snippet, section
    /// headings and a footer of `google.com/alerts` links. Modeled on the real format
    /// (structure, attributes, link shapes), not a captured mail; ids are made up.
    const DIGEST: &str = r#"Return-Path: <3XXnmZRQKBGYB9FEK6KB8DB1AKN8.6FOE6L8GJ6G.5J6DOP6MFFJ0.BOMKJ3EBAJJBN3ADAM.7JD@alerts.bounces.google.com>
Received: by mail-sor-f69.google.com with SMTP id 4fb4d7f45d1cf-566a2d6b7b5so1431912a12.2
        for <brand-team@example.com>; Tue, 05 Mar 2024 09:41:12 -0800 (PST)
MIME-Version: 1.0
Date: Tue, 05 Mar 2024 09:41:12 -0800
Message-ID: <0000000000009c5f2e0612ed6a4f@google.com>
Subject: Google Alert - slack
From: Google Alerts <googlealerts-noreply@google.com>
To: brand-team@example.com
Content-Type: multipart/alternative; boundary="0000000000009c5f1d0612ed6a4c"

--0000000000009c5f1d0612ed6a4c
Content-Type: text/plain; charset="UTF-8"; format=flowed; delsp=yes

=== News - 2 new results for [slack] ===

Slack is down for thousands of users
The Verge
Workplace chat app Slack went down on Tuesday morning, with users unable to
send messages or load channels ...
<https://www.google.com/url?rct=j&sa=t&url=https://www.theverge.com/2024/3/5/24091203/slack-outage%3Futm_source%3Dgoogle%26utm_medium%3Dalerts&ct=ga&cd=CAEYACoTNjU0MzIxMDk4NzY1NDMyMTAwMDIaNDdiZDVmNWY0ZDQzNTg2NDpjb206ZW46VVM&usg=AOvVaw2m3XJf3tYbq5K0xW1n9ZrB>

Salesforce's Slack adds AI search & channel recaps
TechCrunch
Slack is rolling out "Slack AI" to all paid plans, with search answers and
channel recaps ...
<https://www.google.com/url?rct=j&sa=t&url=https://techcrunch.com/2024/03/05/slack-ai-search-recaps/&ct=ga&cd=CAEYASoTNjU0MzIxMDk4NzY1NDMyMTAwMDIaNDdiZDVmNWY0ZDQzNTg2NDpjb206ZW46VVM&usg=AOvVaw1Qe0uH7pF8dS2kL4mN6bVc>

=== Web - 1 new result for [slack] ===

How we migrated 40 teams from HipChat to Slack
engineering.example.org
A retrospective on moving forty teams and six years of chat history to Slack ...
<https://www.google.com/url?rct=j&sa=t&url=https://engineering.example.org/blog/hipchat-to-slack%3Fpage%3D2%26fbclid%3DIwAR0xZ&ct=ga&cd=CAEYAioTNjU0MzIxMDk4NzY1NDMyMTAwMDIaNDdiZDVmNWY0ZDQzNTg2NDpjb206ZW46VVM&usg=AOvVaw0c9dE2fG3hI4jK5lM6nO7p>

- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Unsubscribe from this Google Alert:
<https://www.google.com/alerts/remove?source=alertsmail&hl=en&gl=US&msgid=MTIzNDU2Nzg5MDEyMzQ1Njc4OQ&s=AB2Xq4hZk3mQ>

Create another Google Alert:
<https://www.google.com/alerts?source=alertsmail&hl=en&gl=US&msgid=MTIzNDU2Nzg5MDEyMzQ1Njc4OQ>

Sign in to manage your alerts:
<https://www.google.com/alerts?source=alertsmail&hl=en&gl=US&msgid=MTIzNDU2Nzg5MDEyMzQ1Njc4OQ>

--0000000000009c5f1d0612ed6a4c
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: 8bit

<html><head><meta name="viewport" content="width=device-width"><style>a{color:#1a0dab}</style></head>
<body><div style="font-family:arial,sans-serif;width:100%;background:#f1f1f1">
<table cellpadding="0" cellspacing="0" border="0" style="max-width:600px;margin:0 auto">
<tr><td style="padding:22px 16px 0 16px"><a href="https://www.google.com/alerts?source=alertsmail&amp;hl=en&amp;gl=US&amp;msgid=MTIzNDU2Nzg5MDEyMzQ1Njc4OQ" style="text-decoration:none"><img alt="Google Alerts" src="https://www.gstatic.com/alerts/images/googlelogo-mail-1x.png" width="92" height="30"></a></td></tr>
<tr><td style="font-size:20px;padding:12px 16px 0 16px">slack</td></tr>
<tr><td style="font-size:12px;color:#737373;padding:4px 16px 0 16px">Daily update &#8901; March 5, 2024</td></tr>
<tr><td style="padding:24px 16px 0 16px;font-size:12px;color:#737373;letter-spacing:.75px">NEWS</td></tr>
<tr itemscope="" itemtype="http://schema.org/Article"><td style="padding:18px 16px 0 16px">
<div style="padding:0 0 2px 0"><a href="https://www.google.com/url?rct=j&amp;sa=t&amp;url=https://www.theverge.com/2024/3/5/24091203/slack-outage%3Futm_source%3Dgoogle%26utm_medium%3Dalerts&amp;ct=ga&amp;cd=CAEYACoTNjU0MzIxMDk4NzY1NDMyMTAwMDIaNDdiZDVmNWY0ZDQzNTg2NDpjb206ZW46VVM&amp;usg=AOvVaw2m3XJf3tYbq5K0xW1n9ZrB" itemprop="url" style="color:#1a0dab;text-decoration:none;font-size:16px"><span itemprop="name"><b>Slack</b> is down for thousands of users</span></a></div>
<div itemprop="publisher" itemscope="" itemtype="http://schema.org/Organization" style="font-size:12px;color:#006621"><span itemprop="name">The Verge</span></div>
<div style="font-size:13px;color:#545454;line-height:18px"><div itemprop="description">Workplace chat app <b>Slack</b> went down on Tuesday morning, with users unable to send messages or load channels&nbsp;...</div></div>
</td></tr>
<tr><td style="padding:6px 16px 0 16px"><div style="font-size:11px">
<a href="https://www.google.com/alerts/share?hl=en&amp;gl=US&amp;ru=https://www.theverge.com/2024/3/5/24091203/slack-outage&amp;ss=fb&amp;rt=Slack+is+down+for+thousands+of+users&amp;cd=CAEYACoTNjU0MzIxMDk4NzY1NDMyMTAwMDI&amp;ssp=AMJHsmW3w" title="Facebook"><img alt="Facebook" src="https://www.gstatic.com/alerts/images/fb-24.png" width="24" height="24"></a>
<a href="https://www.google.com/alerts/share?hl=en&amp;gl=US&amp;ru=https://www.theverge.com/2024/3/5/24091203/slack-outage&amp;ss=tw&amp;rt=Slack+is+down+for+thousands+of+users&amp;cd=CAEYACoTNjU0MzIxMDk4NzY1NDMyMTAwMDI&amp;ssp=AMJHsmW3w" title="Twitter"><img alt="Twitter" src="https://www.gstatic.com/alerts/images/tw-24.png" width="24" height="24"></a>
<a href="https://www.google.com/alerts/feedback?ffu=https://www.theverge.com/2024/3/5/24091203/slack-outage&amp;source=alertsmail&amp;hl=en&amp;gl=US&amp;msgid=MTIzNDU2Nzg5MDEyMzQ1Njc4OQ&amp;s=AB2Xq4hZk3mQ" style="color:#737373">Flag as irrelevant</a>
</div></td></tr>
<tr itemscope="" itemtype="http://schema.org/Article"><td style="padding:18px 16px 0 16px">
<div style="padding:0 0 2px 0"><a href="https://www.google.com/url?rct=j&amp;sa=t&amp;url=https://techcrunch.com/2024/03/05/slack-ai-search-recaps/&amp;ct=ga&amp;cd=CAEYASoTNjU0MzIxMDk4NzY1NDMyMTAwMDIaNDdiZDVmNWY0ZDQzNTg2NDpjb206ZW46VVM&amp;usg=AOvVaw1Qe0uH7pF8dS2kL4mN6bVc" itemprop="url" style="color:#1a0dab;text-decoration:none;font-size:16px"><span itemprop="name">Salesforce&#39;s <b>Slack</b> adds AI search &amp; channel recaps</span></a></div>
<div itemprop="publisher" itemscope="" itemtype="http://schema.org/Organization" style="font-size:12px;color:#006621"><span itemprop="name">TechCrunch</span></div>
<div style="font-size:13px;color:#545454;line-height:18px"><div itemprop="description"><b>Slack</b> is rolling out &quot;<b>Slack</b> AI&quot; to all paid plans, with search answers and channel recaps&nbsp;...</div></div>
</td></tr>
<tr><td style="padding:6px 16px 0 16px"><div style="font-size:11px">
<a href="https://www.google.com/alerts/share?hl=en&amp;gl=US&amp;ru=https://techcrunch.com/2024/03/05/slack-ai-search-recaps/&amp;ss=fb&amp;cd=CAEYASoT&amp;ssp=AMJHsmW3w" title="Facebook"><img alt="Facebook" src="https://www.gstatic.com/alerts/images/fb-24.png" width="24" height="24"></a>
<a href="https://www.google.com/alerts/feedback?ffu=https://techcrunch.com/2024/03/05/slack-ai-search-recaps/&amp;source=alertsmail&amp;hl=en&amp;gl=US&amp;msgid=MTIzNDU2Nzg5MDEyMzQ1Njc4OQ&amp;s=AB2Xq4hZk3mQ" style="color:#737373">Flag as irrelevant</a>
</div></td></tr>
<tr><td style="padding:24px 16px 0 16px;font-size:12px;color:#737373;letter-spacing:.75px">WEB</td></tr>
<tr itemscope="" itemtype="http://schema.org/Article"><td style="padding:18px 16px 0 16px">
<div style="padding:0 0 2px 0"><a href="https://www.google.com/url?rct=j&amp;sa=t&amp;url=https://engineering.example.org/blog/hipchat-to-slack%3Fpage%3D2%26fbclid%3DIwAR0xZ&amp;ct=ga&amp;cd=CAEYAioTNjU0MzIxMDk4NzY1NDMyMTAwMDIaNDdiZDVmNWY0ZDQzNTg2NDpjb206ZW46VVM&amp;usg=AOvVaw0c9dE2fG3hI4jK5lM6nO7p" itemprop="url" style="color:#1a0dab;text-decoration:none;font-size:16px"><span itemprop="name">How we migrated 40 teams from HipChat to <b>Slack</b></span></a></div>
<div itemprop="publisher" itemscope="" itemtype="http://schema.org/Organization" style="font-size:12px;color:#006621"><span itemprop="name">engineering.example.org</span></div>
<div style="font-size:13px;color:#545454;line-height:18px"><div itemprop="description">A retrospective on moving forty teams and six years of chat history to <b>Slack</b>&nbsp;...</div></div>
</td></tr>
<tr><td style="padding:6px 16px 0 16px"><div style="font-size:11px">
<a href="https://www.google.com/alerts/feedback?ffu=https://engineering.example.org/blog/hipchat-to-slack&amp;source=alertsmail&amp;hl=en&amp;gl=US&amp;msgid=MTIzNDU2Nzg5MDEyMzQ1Njc4OQ&amp;s=AB2Xq4hZk3mQ" style="color:#737373">Flag as irrelevant</a>
</div></td></tr>
<tr><td style="padding:28px 16px 0 16px;font-size:13px">See more results | <a href="https://www.google.com/alerts/edit?source=alertsmail&amp;hl=en&amp;gl=US&amp;msgid=MTIzNDU2Nzg5MDEyMzQ1Njc4OQ&amp;s=AB2Xq4hZk3mQ">Edit this alert</a></td></tr>
<tr><td style="padding:16px 16px 0 16px;font-size:12px;color:#737373">You have received this email because you have subscribed to <b>Google Alerts</b>.</td></tr>
<tr><td style="padding:8px 16px 0 16px;font-size:12px"><a href="https://www.google.com/alerts/remove?source=alertsmail&amp;hl=en&amp;gl=US&amp;msgid=MTIzNDU2Nzg5MDEyMzQ1Njc4OQ&amp;s=AB2Xq4hZk3mQ">Unsubscribe</a> | <a href="https://www.google.com/alerts?source=alertsmail&amp;hl=en&amp;gl=US&amp;msgid=MTIzNDU2Nzg5MDEyMzQ1Njc4OQ">View all your alerts</a></td></tr>
<tr><td style="padding:8px 16px 24px 16px;font-size:12px"><a href="https://www.google.com/alerts/feeds/01234567890123456789/987654321098765432"><img alt="RSS" src="https://www.gstatic.com/alerts/images/rss-16.png" width="16" height="16"> Receive this alert as RSS feed</a> | <a href="https://www.google.com/alerts/feedback?source=alertsmail&amp;hl=en&amp;gl=US&amp;msgid=MTIzNDU2Nzg5MDEyMzQ1Njc4OQ&amp;ffu=">Send Feedback</a></td></tr>
</table></div></body></html>

--0000000000009c5f1d0612ed6a4c--
"#;

    /// The same digest as a plain-text-only mail (some clients and forwarding rules
    /// keep only that part), quoted-printable as Google sends it.
    const PLAIN_DIGEST: &str = "MIME-Version: 1.0\n\
Date: Wed, 06 Mar 2024 09:40:03 -0800\n\
Message-ID: <000000000000b71d8b0612ffa1c2@google.com>\n\
Subject: Google Alert - slack\n\
From: Google Alerts <googlealerts-noreply@google.com>\n\
To: brand-team@example.com\n\
Content-Type: text/plain; charset=\"UTF-8\"\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
=3D=3D=3D News - 2 new results for [slack] =3D=3D=3D\n\
\n\
Slack outage: what we know so far\n\
Reuters\n\
Slack said on Wednesday it had restored service after a second outage in tw=\n\
o days =E2=80=94 the company blamed a configuration change ...\n\
<https://www.google.com/url?rct=3Dj&sa=3Dt&url=3Dhttps://www.reuters.com/te=\n\
chnology/slack-outage-2024-03-06/&ct=3Dga&cd=3DCAEYACoUMTc&usg=3DAOvVaw3aa>\n\
\n\
Flag as irrelevant\n\
<https://www.google.com/alerts/feedback?ffu=3Dhttps://www.reuters.com/techn=\n\
ology/slack-outage-2024-03-06/&source=3Dalertsmail&hl=3Den&gl=3DUS>\n\
\n\
Slack vs. Teams in 2024\n\
Zapier\n\
Choosing between the two chat apps comes down to the tools your company alr=\n\
eady uses ...\n\
\n\
<https://www.google.com/url?rct=3Dj&sa=3Dt&url=3Dhttps://zapier.com/blog/sl=\n\
ack-vs-teams/&ct=3Dga&cd=3DCAEYASoUMTc&usg=3DAOvVaw0bb>\n\
\n\
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -\n\
Unsubscribe from this Google Alert:\n\
<https://www.google.com/alerts/remove?source=3Dalertsmail&hl=3Den&gl=3DUS&m=\n\
sgid=3DMTIzNDU2&s=3DAB2Xq4hZk3mQ>\n";

    /// An ordinary mail, with an encoded-word subject.
    const PLAIN_MAIL: &str = "Return-Path: <dana@example.net>\n\
MIME-Version: 1.0\n\
Date: Thu, 07 Mar 2024 14:02:55 +0100\n\
Message-ID: <CAJ7x2kq9Lw@mail.example.net>\n\
Subject: =?UTF-8?Q?Customer_feedback_on_the_Slack_rollout_=E2=80=93_week_10?=\n\
From: Dana Whitfield <dana@example.net>\n\
To: brand-team@example.com\n\
Content-Type: text/plain; charset=\"UTF-8\"\n\
\n\
Hi all,\n\
\n\
three customers wrote in this week that the new Slack integration\n\
keeps logging them out. Tickets are linked in the tracker.\n\
\n\
Dana\n";

    /// A mail with only an HTML body.
    const HTML_MAIL: &str = "Date: Fri, 08 Mar 2024 08:00:00 +0000\n\
Message-ID: <newsletter-42@lists.example.com>\n\
Subject: Release notes: <b> vs <strong>\n\
From: releases@lists.example.com\n\
Content-Type: text/html; charset=\"UTF-8\"\n\
\n\
<html><body><p>Our <b>Slack</b> app now supports threads &amp; reactions.</p>\n\
<p><a href=\"https://lists.example.com/unsubscribe\">Unsubscribe</a></p></body></html>\n";

    /// Bytes that are no mail at all.
    const GARBAGE: &[u8] = b"\x00\x01\x02\xff\xfe\x89PNG\r\n";

    const MENTIONS: &str = "cull.mentions";
    const DEAD_LETTERS: &str = "cull.dead-letters";

    #[derive(Debug, Default)]
    struct Recorder {
        delivered: AtomicU64,
        /// The mentions of each handoff to the bus.
        deliveries: Mutex<Vec<u64>>,
        dead_letters: Mutex<Vec<(String, Reason)>>,
    }

    impl Observer for Recorder {
        fn delivered(&self, _source: &str, count: u64) {
            self.delivered.fetch_add(count, Ordering::SeqCst);
            self.deliveries.lock().unwrap().push(count);
        }
        fn duplicates(&self, _source: &str, _count: u64) {}
        fn near_duplicates(&self, _source: &str, _count: u64) {}
        fn dead_letters(&self, source: &str, reason: Reason, count: u64) {
            for _ in 0..count {
                self.dead_letters.lock().unwrap().push((source.to_string(), reason));
            }
        }
        fn feed_polled(&self, _feed: &str, _outcome: &'static str) {}
        fn webhook_answered(&self, _source: &str, _status: u16) {}
    }

    /// Returns an outlet on `bus` with a fresh duplicate screen, as after a restart.
    fn outlet(bus: &EmbeddedBus, recorder: &Arc<Recorder>) -> Outlet {
        let screen = Arc::new(Mutex::new(Screen::new(ScreenConfig::default())));
        let observer: Arc<dyn Observer> = recorder.clone();
        Outlet::new(bus.producer(), MENTIONS, DEAD_LETTERS, screen, observer)
    }

    /// Returns every record waiting on `topic`.
    async fn drain(bus: &EmbeddedBus, topic: &str) -> Vec<Record> {
        let mut consumer = bus.consumer(&[topic], "drain").unwrap();
        let mut records = Vec::new();
        while let Some(batch) =
            consumer.next_batch(100, Duration::from_millis(50), Duration::from_millis(200)).await.unwrap()
        {
            if batch.is_empty() {
                break;
            }
            records.extend(batch);
        }
        consumer.commit().await.unwrap();
        records
    }

    fn mentions(records: &[Record]) -> Vec<Mention> {
        records.iter().map(|r| serde_json::from_slice(&r.payload).unwrap()).collect()
    }

    fn header<'a>(record: &'a Record, name: &str) -> &'a str {
        let value = record.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());
        std::str::from_utf8(value.unwrap_or_default()).unwrap()
    }

    fn config(path: PathBuf, format: MailFormat) -> MailConfig {
        MailConfig {
            name: "mail".into(),
            path,
            format,
            channel: Channel::Email,
            poll_interval: Duration::from_millis(20),
            max_message_bytes: 64 * 1024,
        }
    }

    fn no_stop() -> watch::Receiver<bool> {
        watch::channel(false).1
    }

    const FOOTER: &[&str] = &[
        "Flag as irrelevant",
        "Unsubscribe",
        "See more results",
        "Edit this alert",
        "You have received",
        "RSS",
        "Send Feedback",
        "WEB",
        "Facebook",
    ];

    #[test]
    fn a_google_alerts_digest_becomes_one_clean_mention_per_item() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let drafts = drafts_from_message(DIGEST.as_bytes(), "alerts", Channel::Email).unwrap();
        assert!(drafts
            .iter()
            .all(|d| d.url.as_deref().is_some_and(|u| u.starts_with("https://www.google.com/url?"))));
        assert_eq!(drafts[0].external_id.as_deref(), Some("0000000000009c5f2e0612ed6a4f@google.com#1"));
        let mentions: Vec<Mention> = drafts.into_iter().map(|d| normalize(d, now)).collect();
        let urls: Vec<_> = mentions.iter().map(|m| m.url.as_deref().unwrap_or("")).collect();
        assert_eq!(
            urls,
            [
                "https://www.theverge.com/2024/3/5/24091203/slack-outage",
                "https://techcrunch.com/2024/03/05/slack-ai-search-recaps/",
                "https://engineering.example.org/blog/hipchat-to-slack?page=2",
            ]
        );
        let titles: Vec<_> = mentions.iter().map(|m| m.title.as_deref().unwrap_or("")).collect();
        assert_eq!(
            titles,
            [
                "Slack is down for thousands of users",
                "Salesforce's Slack adds AI search & channel recaps",
                "How we migrated 40 teams from HipChat to Slack",
            ]
        );
        let publishers: Vec<_> =
            mentions.iter().map(|m| m.meta.get("publisher").map_or("", String::as_str)).collect();
        assert_eq!(publishers, ["The Verge", "TechCrunch", "engineering.example.org"]);
        assert_eq!(
            mentions[0].text,
            "Workplace chat app Slack went down on Tuesday morning, with users unable to send messages or \
             load channels ..."
        );
        assert_eq!(
            mentions[1].text,
            "Slack is rolling out \"Slack AI\" to all paid plans, with search answers and channel recaps ..."
        );
        for mention in &mentions {
            assert_eq!(mention.channel, Some(Channel::News));
            assert_eq!(mention.published_at.as_deref(), Some("2024-03-05T17:41:12Z"));
            assert_eq!(mention.meta.get("mail.subject").map(String::as_str), Some("Google Alert - slack"));
            for leak in FOOTER {
                assert!(!mention.text.contains(leak), "{leak:?} leaked into {:?}", mention.text);
            }
            assert!(!mention.text.contains("Verge") || mention.url.as_deref().unwrap().contains("theverge"));
        }
        assert_eq!(mentions.iter().map(|m| &m.id).collect::<std::collections::BTreeSet<_>>().len(), 3);
    }

    #[test]
    fn a_plain_text_digest_is_split_on_its_item_links() {
        let drafts = drafts_from_message(PLAIN_DIGEST.as_bytes(), "alerts", Channel::Email).unwrap();
        let mentions: Vec<Mention> =
            drafts.into_iter().map(|d| normalize(d, OffsetDateTime::UNIX_EPOCH)).collect();
        let summary: Vec<_> = mentions
            .iter()
            .map(|m| {
                let publisher = m.meta.get("publisher").map_or("", String::as_str);
                (m.url.as_deref().unwrap_or(""), m.title.as_deref().unwrap_or(""), publisher)
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "https://www.reuters.com/technology/slack-outage-2024-03-06/",
                    "Slack outage: what we know so far",
                    "Reuters"
                ),
                ("https://zapier.com/blog/slack-vs-teams/", "Slack vs. Teams in 2024", "Zapier"),
            ]
        );
        assert_eq!(
            mentions[0].text,
            "Slack said on Wednesday it had restored service after a second outage in two days \u{2014} the \
             company blamed a configuration change ..."
        );
        assert!(mentions.iter().all(|m| FOOTER.iter().all(|leak| !m.text.contains(leak))));
    }

    #[test]
    fn an_ordinary_mail_is_one_mention_with_subject_sender_and_date() {
        let drafts = drafts_from_message(PLAIN_MAIL.as_bytes(), "inbox", Channel::Email).unwrap();
        assert_eq!(drafts.len(), 1);
        let mention = normalize(drafts.into_iter().next().unwrap(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(mention.title.as_deref(), Some("Customer feedback on the Slack rollout \u{2013} week 10"));
        assert_eq!(mention.author.as_deref(), Some("Dana Whitfield"));
        assert_eq!(mention.meta.get("mail.from").map(String::as_str), Some("dana@example.net"));
        assert_eq!(mention.published_at.as_deref(), Some("2024-03-07T13:02:55Z"));
        assert_eq!(mention.channel, Some(Channel::Email));
        assert_eq!(mention.url, None);
        assert!(mention.text.starts_with("Hi all, three customers wrote in this week"), "{}", mention.text);
        assert_eq!(mention.id, cull_model::mention_id("inbox", "id:CAJ7x2kq9Lw@mail.example.net"));

        let html = drafts_from_message(HTML_MAIL.as_bytes(), "inbox", Channel::Other).unwrap();
        let html = normalize(html.into_iter().next().unwrap(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(html.title.as_deref(), Some("Release notes: <b> vs <strong>"));
        assert_eq!(html.text, "Our Slack app now supports threads & reactions. Unsubscribe");
        assert_eq!(html.author.as_deref(), Some("releases@lists.example.com"));
        assert_eq!(html.channel, Some(Channel::Other));
    }

    #[test]
    fn garbage_and_empty_mails_are_errors() {
        assert!(matches!(drafts_from_message(GARBAGE, "m", Channel::Email), Err(MailError::NotAMail)));
        let empty = b"From: someone@example.com\nDate: Thu, 07 Mar 2024 14:02:55 +0100\n\n \n";
        assert!(matches!(drafts_from_message(empty, "m", Channel::Email), Err(MailError::Empty)));
        // A Google Alerts mail without items is still an ordinary mail.
        let bare =
            b"From: Google Alerts <googlealerts-noreply@google.com>\nSubject: Google Alert - slack\n\n";
        let drafts = drafts_from_message(bare, "m", Channel::Email).unwrap();
        assert_eq!((drafts.len(), drafts[0].title.as_deref()), (1, Some("Google Alert - slack")));
    }

    #[test]
    fn an_mbox_is_split_on_from_lines_and_unquoted() {
        let mbox =
            b"\nFrom a@example.com Thu Mar  7 13:02:55 2024\nSubject: one\n\n>From here\n>>From there\n\
            >not from\n\nFrom b@example.com Thu Mar  7 13:03:00 2024\nSubject: two\n\nFrom\n";
        let messages = read_mbox(mbox, 1024);
        assert_eq!(
            messages,
            [
                MboxMessage::Complete(b"Subject: one\n\nFrom here\n>From there\n>not from\n\n".to_vec()),
                MboxMessage::Complete(b"Subject: two\n\nFrom\n".to_vec())
            ]
        );
        let headless =
            read_mbox(b"Subject: saved without envelope\n\nbody\nFrom x@example.com Thu\nSubject: y\n", 1024);
        assert_eq!(headless.len(), 2, "text before the first From line is not dropped");
        assert!(read_mbox(b"", 1024).is_empty());
    }

    fn read_mbox(bytes: &[u8], limit: usize) -> Vec<MboxMessage> {
        MboxReader::new(bytes, limit).collect::<io::Result<_>>().unwrap()
    }

    /// A reader that counts the bytes taken from it.
    struct Counted<'a> {
        bytes: &'a [u8],
        taken: Arc<AtomicU64>,
    }

    impl io::Read for Counted<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            let read = self.bytes.read(buffer)?;
            self.taken.fetch_add(read as u64, Ordering::Relaxed);
            Ok(read)
        }
    }

    #[test]
    fn an_mbox_is_read_one_message_at_a_time_and_oversized_messages_are_cut() {
        let message =
            format!("From a@example.com Thu Mar  7 13:02:55 2024\nSubject: s\n\n{}\n", "word ".repeat(200));
        let mbox = message.repeat(10_000);
        let huge_line = format!("From b@example.com Thu\nSubject: big\n\n{}\n", "x".repeat(100_000));
        let mbox = format!("{huge_line}{mbox}");
        let taken = Arc::new(AtomicU64::new(0));
        let counted = Counted { bytes: mbox.as_bytes(), taken: Arc::clone(&taken) };
        let mut reader = MboxReader::new(io::BufReader::with_capacity(8192, counted), 4096);
        let Some(Ok(MboxMessage::Oversized { head, length })) = reader.next() else { panic!("not cut") };
        assert_eq!((head.len(), length), (4096, huge_line.len() - "From b@example.com Thu\n".len()));
        let mut complete = 0;
        for message in reader.by_ref().take(100) {
            assert!(matches!(message.unwrap(), MboxMessage::Complete(m) if m.len() < 4096));
            complete += 1;
        }
        assert_eq!(complete, 100);
        let read = taken.load(Ordering::Relaxed) as usize;
        assert!(
            read <= huge_line.len() + 101 * message.len() + 8192,
            "{read} bytes of {} read for 101 messages",
            mbox.len()
        );
        assert!(reader.line.capacity() <= 2 * 4097 && reader.message.capacity() <= 2 * 4097 + 8192);
        assert_eq!(reader.count(), 10_000 - 100);
    }

    #[tokio::test]
    async fn an_mbox_yields_every_mention_and_dead_letters_the_garbage_and_the_oversized() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.mbox");
        let mut mbox = Vec::new();
        mbox.extend_from_slice(b"From googlealerts-noreply@google.com Tue Mar  5 17:41:12 2024\n");
        mbox.extend_from_slice(DIGEST.as_bytes());
        mbox.extend_from_slice(b"\nFrom dana@example.net Thu Mar  7 13:02:55 2024\n");
        mbox.extend_from_slice(PLAIN_MAIL.as_bytes());
        let oversized = format!("Subject: big\n\n{}\n", "word ".repeat(20_000));
        mbox.extend_from_slice(b"\nFrom big@example.net Thu Mar  7 13:04:00 2024\n");
        mbox.extend_from_slice(oversized.as_bytes());
        mbox.extend_from_slice(b"\nFrom MAILER-DAEMON Thu Mar  7 13:05:00 2024\n");
        mbox.extend_from_slice(GARBAGE);
        std::fs::write(&path, &mbox).unwrap();

        let bus = EmbeddedBus::in_memory(1024);
        let recorder = Arc::new(Recorder::default());
        let stats =
            run_mail(&outlet(&bus, &recorder), &config(path.clone(), MailFormat::Mbox), true, no_stop())
                .await
                .unwrap();
        assert_eq!(stats, MailStats { messages: 4, mentions: 4, dead_letters: 2 });

        let mentions = mentions(&drain(&bus, MENTIONS).await);
        let titles: Vec<_> = mentions.iter().map(|m| m.title.as_deref().unwrap_or("")).collect();
        assert_eq!(titles.len(), 4);
        assert!(titles.contains(&"Customer feedback on the Slack rollout \u{2013} week 10"));
        assert!(titles.contains(&"Salesforce's Slack adds AI search & channel recaps"));
        let dead = drain(&bus, DEAD_LETTERS).await;
        assert_eq!(dead.len(), 2);
        assert_eq!(dead[0].payload, oversized.as_bytes()[..64 * 1024], "the first bytes are kept");
        assert_eq!(header(&dead[0], LOCATION_HEADER), format!("{}#message 3", path.display()));
        assert_eq!(dead[1].payload, GARBAGE);
        assert_eq!(header(&dead[1], LOCATION_HEADER), format!("{}#message 4", path.display()));
        assert_eq!(header(&dead[1], STAGE_HEADER), "ingest");
        assert_eq!(
            *recorder.dead_letters.lock().unwrap(),
            [("mail".to_string(), Reason::Oversized), ("mail".to_string(), Reason::Other)]
        );
        assert_eq!(recorder.delivered.load(Ordering::SeqCst), 4);
    }

    /// Large messages are handed to the bus a few megabytes at a time, not 256 at once.
    #[tokio::test]
    async fn an_mbox_of_large_messages_is_delivered_in_batches_of_bounded_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.mbox");
        let message_text = 1 << 20;
        let mut mbox = Vec::new();
        for i in 0..12 {
            mbox.extend_from_slice(
                format!("From a@example.net Thu Mar  7 13:0{}:00 2024\n", i % 10).as_bytes(),
            );
            let words: String = (0..message_text / 16).map(|w| format!("w{i}x{w:012} ")).collect();
            mbox.extend_from_slice(format!("Subject: report {i}\n\n{words}\n\n").as_bytes());
        }
        std::fs::write(&path, &mbox).unwrap();
        let bus = EmbeddedBus::in_memory(1024);
        let recorder = Arc::new(Recorder::default());
        let config = MailConfig { max_message_bytes: 2 << 20, ..config(path, MailFormat::Mbox) };
        let stats = run_mail(&outlet(&bus, &recorder), &config, true, no_stop()).await.unwrap();
        assert_eq!((stats.messages, stats.mentions, stats.dead_letters), (12, 12, 0));
        let deliveries = recorder.deliveries.lock().unwrap().clone();
        let most = (MBOX_BATCH_BYTES / message_text) as u64 + 1;
        assert!(deliveries.len() > 1 && deliveries.iter().all(|&n| n <= most), "{deliveries:?}");
        assert_eq!(deliveries.iter().sum::<u64>(), 12);
    }

    #[tokio::test]
    async fn a_missing_mailbox_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EmbeddedBus::in_memory(16);
        let recorder = Arc::new(Recorder::default());
        for format in [MailFormat::Mbox, MailFormat::Maildir] {
            let path = dir.path().join("nowhere");
            let error = run_mail(&outlet(&bus, &recorder), &config(path.clone(), format), true, no_stop())
                .await
                .unwrap_err();
            assert!(matches!(&error, MailError::Io { .. }), "{error}");
            assert!(error.to_string().contains(&path.display().to_string()), "{error}");
        }
    }

    /// Returns a Maildir in `dir` with the given messages in `new/`.
    fn maildir(dir: &Path, messages: &[(&str, &[u8])]) -> PathBuf {
        let root = dir.join("Maildir");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for (name, raw) in messages {
            std::fs::write(root.join("new").join(name), raw).unwrap();
        }
        root
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn maildir_mail_is_delivered_once_and_marked_seen() {
        let dir = tempfile::tempdir().unwrap();
        let root = maildir(
            dir.path(),
            &[
                ("1709660472.M1P100.host", DIGEST.as_bytes()),
                ("1709816575.M2P100.host", PLAIN_MAIL.as_bytes()),
                ("1709816700.M3P100.host", GARBAGE),
            ],
        );
        let config = config(root.clone(), MailFormat::Maildir);
        let bus = EmbeddedBus::in_memory(1024);
        let recorder = Arc::new(Recorder::default());
        let stats = run_mail(&outlet(&bus, &recorder), &config, true, no_stop()).await.unwrap();
        assert_eq!(stats, MailStats { messages: 3, mentions: 4, dead_letters: 1 });
        assert_eq!(mentions(&drain(&bus, MENTIONS).await).len(), 4);
        let dead = drain(&bus, DEAD_LETTERS).await;
        assert_eq!(dead.len(), 1);
        let garbage_seen = root.join("cur").join("1709816700.M3P100.host:2,S");
        assert_eq!(header(&dead[0], LOCATION_HEADER), garbage_seen.display().to_string());
        assert!(names(&root.join("new")).is_empty());
        assert_eq!(
            names(&root.join("cur")),
            ["1709660472.M1P100.host:2,S", "1709816575.M2P100.host:2,S", "1709816700.M3P100.host:2,S"]
        );

        // A restart (a fresh duplicate screen) emits nothing again.
        let again = run_mail(&outlet(&bus, &recorder), &config, true, no_stop()).await.unwrap();
        assert_eq!(again, MailStats::default());
        assert!(drain(&bus, MENTIONS).await.is_empty());
        assert!(drain(&bus, DEAD_LETTERS).await.is_empty());
    }

    #[tokio::test]
    async fn a_polled_maildir_picks_up_new_mail_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let root = maildir(dir.path(), &[]);
        let bus = EmbeddedBus::in_memory(1024);
        let recorder = Arc::new(Recorder::default());
        let (stop, stopped) = watch::channel(false);
        let outlet = outlet(&bus, &recorder);
        let config = config(root.clone(), MailFormat::Maildir);
        // Joined rather than spawned: the run's future is not `Send` (see the report).
        let deliver = async {
            tokio::time::sleep(Duration::from_millis(60)).await;
            // As a delivery agent does: write in tmp/, then move into new/.
            let name = "1709816575.M9P1.host";
            std::fs::write(root.join("tmp").join(name), PLAIN_MAIL).unwrap();
            std::fs::rename(root.join("tmp").join(name), root.join("new").join(name)).unwrap();
            let mut consumer = bus.consumer(&[MENTIONS], "test").unwrap();
            let batch =
                consumer.next_batch(10, Duration::from_millis(10), Duration::from_secs(5)).await.unwrap();
            stop.send(true).unwrap();
            batch.map(|b| b.len())
        };
        let run = tokio::time::timeout(Duration::from_secs(10), run_mail(&outlet, &config, false, stopped));
        let (stats, received) = tokio::join!(run, deliver);
        assert_eq!(received, Some(1));
        assert_eq!(stats.unwrap().unwrap(), MailStats { messages: 1, mentions: 1, dead_letters: 0 });
        assert_eq!(names(&root.join("cur")), ["1709816575.M9P1.host:2,S"]);
    }
}
