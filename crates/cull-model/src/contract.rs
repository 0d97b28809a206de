//! The versioned JSON contracts: [`Mention`] in, [`Verdict`] and [`Ticket`] out.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// The schema string every mention carries.
pub const MENTION_SCHEMA: &str = "cull.mention/v1";

/// The language of a mention whose language ingest could not tell with confidence
/// (ISO 639-2 "undetermined"). A rule's `langs` never culls it: a guess would cull
/// true matches silently.
pub const UNDETERMINED_LANGUAGE: &str = "und";
/// The schema string every verdict carries.
pub const VERDICT_SCHEMA: &str = "cull.verdict/v1";
/// The schema string every ticket carries.
pub const TICKET_SCHEMA: &str = "cull.ticket/v1";
/// The schema string every dead letter carries.
pub const DEAD_LETTER_SCHEMA: &str = "cull.dead-letter/v1";

/// The largest serialized mention accepted by [`Mention::from_json`], in bytes.
///
/// Real mentions are a few kilobytes; a bound keeps one hostile record from costing
/// the matcher seconds. Callers with other needs use [`Mention::from_json_limited`].
pub const MAX_MENTION_BYTES: usize = 1024 * 1024;

/// Errors raised when bytes cannot become a valid contract value.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The record is larger than the configured limit.
    #[error("record is {size} bytes, over the limit of {limit} bytes")]
    Oversized {
        /// Size of the record in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The record is not valid UTF-8.
    #[error("record is not valid UTF-8: invalid byte at offset {offset}")]
    InvalidUtf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// The record is not valid JSON for the contract.
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What serde_json reported.
        message: String,
    },
    /// The record names a schema this version of cull does not read.
    #[error("unsupported schema {found:?}, expected {expected:?}")]
    Schema {
        /// The schema the record carried.
        found: String,
        /// The schema this build reads.
        expected: &'static str,
    },
    /// A required field is empty.
    #[error("field `{field}` must not be empty")]
    EmptyField {
        /// The field name.
        field: &'static str,
    },
    /// A field's value breaks the contract.
    #[error("field `{field}`: {problem}")]
    Invalid {
        /// The field name.
        field: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
    /// The `client` field is not a client name (see [`crate::client_name_problem`]).
    #[error("field `client`: {problem}")]
    Client {
        /// Why the name cannot be a client's.
        problem: String,
    },
    /// The input names another client than the source it came through belongs to: a
    /// sender cannot put its mentions before another client's rules and analysts.
    #[error("field `client` says {claimed:?}, but this source belongs to {}", owner.as_deref().map_or_else(|| "no client".to_string(), |o| format!("client {o:?}")))]
    ForeignClient {
        /// The client the input named.
        claimed: String,
        /// The source's client.
        owner: Option<String>,
    },
}

/// The kind of place a mention was found; rules can be restricted to some channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Twitter / X.
    Twitter,
    /// Facebook.
    Facebook,
    /// A blog.
    Blog,
    /// A news site or news alert.
    News,
    /// A forum or discussion board.
    Forum,
    /// A review site.
    Review,
    /// An email, such as an alert digest.
    Email,
    /// Anything else.
    Other,
}

impl Channel {
    /// Every channel, in declaration order.
    pub const ALL: [Channel; 8] = [
        Channel::Twitter,
        Channel::Facebook,
        Channel::Blog,
        Channel::News,
        Channel::Forum,
        Channel::Review,
        Channel::Email,
        Channel::Other,
    ];

    /// Returns the wire name of the channel.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Twitter => "twitter",
            Channel::Facebook => "facebook",
            Channel::Blog => "blog",
            Channel::News => "news",
            Channel::Forum => "forum",
            Channel::Review => "review",
            Channel::Email => "email",
            Channel::Other => "other",
        }
    }

    /// Returns the channel with the given wire name.
    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One item found by a source: a tweet, an alert entry, a review, an email.
///
/// Only `schema`, `id` and `text` are required on the wire so that any tool can feed
/// cull; every other field is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Mention {
    /// Always [`MENTION_SCHEMA`].
    pub schema: String,
    /// Stable id, see [`crate::mention_id`].
    pub id: String,
    /// The client this mention belongs to (an outsourcing contact center watches
    /// brands for many clients); `None` for the contact center's own mentions. Ingest
    /// sets it from the source's `client`, whatever the input claims: it decides which
    /// rules match the mention and who may see it (see [`crate::client`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The configured source name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Where the mention was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Canonical URL of the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Author name or handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Title or headline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Plain text body (HTML stripped and entities decoded at ingest).
    pub text: String,
    /// Language code such as `en`, or [`UNDETERMINED_LANGUAGE`] when ingest could not
    /// tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// When the item was published (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<String>,
    /// When cull fetched the item (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched_at: Option<String>,
    /// Free-form string attributes such as a follower count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

impl Mention {
    /// Returns a mention with the given id and text and nothing else.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Mention {
        Mention { schema: MENTION_SCHEMA.to_string(), id: id.into(), text: text.into(), ..Mention::default() }
    }

    /// Returns the matched field a [`Span`] names (`title` or `text`), if the mention
    /// has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        match name {
            "title" => self.title.as_deref(),
            "text" => Some(self.text.as_str()),
            _ => None,
        }
    }

    /// Parses one serialized mention, rejecting records over [`MAX_MENTION_BYTES`].
    pub fn from_json(bytes: &[u8]) -> Result<Mention, ModelError> {
        Mention::from_json_limited(bytes, MAX_MENTION_BYTES)
    }

    /// Parses one serialized mention, rejecting records over `limit` bytes, invalid
    /// UTF-8, malformed JSON, a schema other than [`MENTION_SCHEMA`] and an empty id.
    pub fn from_json_limited(bytes: &[u8], limit: usize) -> Result<Mention, ModelError> {
        let text = record_text(bytes, limit)?;
        let mention: Mention = serde_json::from_str(text).map_err(json_error)?;
        mention.checked()
    }

    /// As [`Mention::from_json_limited`], but a record without `schema` is read as
    /// [`MENTION_SCHEMA`] (one that names another is still refused): for input people
    /// write by hand, `{"id": "1", "text": "…"}`, as `cull match` reads it. The
    /// pipeline's own topics keep the schema required.
    pub fn from_json_assuming_v1(bytes: &[u8], limit: usize) -> Result<Mention, ModelError> {
        let text = record_text(bytes, limit)?;
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(json_error)?;
        if let Some(object) = value.as_object_mut() {
            object.entry("schema").or_insert_with(|| MENTION_SCHEMA.into());
        }
        let mention: Mention = serde_json::from_value(value).map_err(json_error)?;
        mention.checked()
    }

    /// Checks what serde cannot: the schema, a non-empty id and the client's name.
    fn checked(self) -> Result<Mention, ModelError> {
        if self.schema != MENTION_SCHEMA {
            return Err(ModelError::Schema { found: self.schema, expected: MENTION_SCHEMA });
        }
        if self.id.is_empty() {
            return Err(ModelError::EmptyField { field: "id" });
        }
        if let Some(problem) = self.client.as_deref().and_then(crate::client_name_problem) {
            return Err(ModelError::Client { problem });
        }
        Ok(self)
    }

    /// Returns the host of the mention's URL, lowercased, without a port.
    pub fn host(&self) -> Option<String> {
        let url = self.url.as_deref()?;
        let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = after_scheme.split(['/', '?', '#']).next()?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = host_port.split(':').next()?;
        (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| host.to_ascii_lowercase())
    }
}

/// Priority of a ticket, P1 most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub enum Priority {
    /// Answer now.
    P1,
    /// Answer soon.
    P2,
    /// Normal.
    #[default]
    P3,
    /// When there is time.
    P4,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 4] = [Priority::P1, Priority::P2, Priority::P3, Priority::P4];

    /// Returns the priority's name, `P1`..`P4`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
        }
    }

    /// Returns the next more urgent priority (P1 stays P1).
    pub fn raised(self) -> Priority {
        match self {
            Priority::P1 | Priority::P2 => Priority::P1,
            Priority::P3 => Priority::P2,
            Priority::P4 => Priority::P3,
        }
    }
}

/// A byte range of a field's text, as the verdict's highlighting contract defines it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    /// The mention field, `title` or `text`; borrowed when the matcher names it, so
    /// that a span costs no allocation.
    pub field: Cow<'static, str>,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

/// The spans of one matched rule: most rules match at one or two places, which are
/// kept inline.
pub type Spans = SmallVec<[Span; 2]>;

/// A rule that matched a mention.
///
/// A mention can match hundreds of rules at a million rules, and a heap string per id
/// and version and a vector per rule's spans made building the verdict cost as much
/// as matching; so ids of up to 24 bytes, the 12-digit versions and up to two spans
/// are kept inline. They serialize as the strings and arrays they stand for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedRule {
    /// The rule id.
    pub rule_id: CompactString,
    /// Hash of the rule's definition.
    pub rule_version: CompactString,
    /// Where the rule's positive clauses matched.
    pub spans: Spans,
}

/// Why a rule whose query matched was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CullReason {
    /// The rule's `exclude` query matched the mention.
    Exclude,
    /// Every occurrence that matched lay inside a `mask` phrase.
    Mask,
    /// The mention's channel is not one of the rule's channels.
    Channel,
    /// The mention's language is not one of the rule's languages.
    Lang,
}

impl CullReason {
    /// Returns the wire name of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            CullReason::Exclude => "exclude",
            CullReason::Mask => "mask",
            CullReason::Channel => "channel",
            CullReason::Lang => "lang",
        }
    }
}

/// A rule whose query matched but which a cull removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Culled {
    /// The rule id, inline as in [`MatchedRule`].
    pub rule_id: CompactString,
    /// Which cull removed it.
    pub reason: CullReason,
    /// The clause that culled: the exclude branch or mask that hit, or the channel or
    /// language that was not allowed.
    pub clause: String,
}

/// The matcher's answer for one mention, emitted whether or not anything matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Always [`VERDICT_SCHEMA`]; inline, as the set's version, so that the strings a
    /// verdict allocates are the mention's own (its id and client).
    pub schema: CompactString,
    /// The mention this verdict is about.
    pub mention_id: String,
    /// The mention's client: only its rules and the global ones were tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The version of the rule set that produced the verdict.
    pub ruleset_version: CompactString,
    /// Rules that matched.
    pub matched: Vec<MatchedRule>,
    /// Rules whose query matched but were culled.
    pub culled: Vec<Culled>,
    /// The mention itself, carried on the verdicts topic so that the analyst index
    /// needs no second topic to join with; absent where the mention is known anyway
    /// (`cull match` output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mention: Option<Mention>,
}

/// The rule a ticket was opened for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRule {
    /// Rule id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Hash of the rule's definition.
    pub version: String,
}

/// What a ticket stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TicketKind {
    /// One real issue: the mentions that share a post, a URL or an author on a rule.
    #[default]
    Ticket,
    /// A spike of a rule or a queue: links the mentions in it.
    Incident,
    /// The tickets a queue over its capacity bundled instead of opening them.
    Digest,
}

/// One contribution to a ticket's `priority_score`.
///
/// The score is the sum of the factors' points, clamped to 0..100, so an agent or a
/// router can see why a ticket ranks where it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// What contributed: `priority`, `sentiment`, `reach`, `vip`, `crisis`,
    /// `velocity`, `spike`, `late`, `channel_weight`.
    pub factor: String,
    /// The measured input: the rule's priority number, the VADER compound, the
    /// follower count, mentions in the last hour, minutes late, the weight.
    pub value: f64,
    /// Points added (negative for a channel weight under 1).
    pub points: f64,
    /// What the value is about, when a number does not say it: the crisis clause that
    /// hit, the VIP author, the incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A true match handed to a contact center.
///
/// `cull.ticket/v1` grew additively: every field after `snippet` was added by the
/// triage stage with a default, so a v1 consumer that ignores unknown fields keeps
/// working, and this type still reads tickets written before them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// Always [`TICKET_SCHEMA`].
    pub schema: String,
    /// Deterministic id, see [`crate::ticket_id`].
    pub ticket_id: String,
    /// Revision, incremented when a later mention updates the same ticket; it never
    /// goes back, across restarts and replicas, so a consumer keeps the highest.
    pub revision: u32,
    /// When the ticket was opened (its first revision; RFC 3339).
    pub created_at: String,
    /// The queue the ticket is routed to.
    pub queue: String,
    /// Priority class: the rule's, raised by the score (see `factors`).
    pub priority: Priority,
    /// Score 0..100 comparable across channels: the sum of `factors`.
    pub priority_score: u8,
    /// When the first response is due (RFC 3339): fixed at the first revision, counted
    /// from `arrival_at` by the queue's SLA policy; never pushed back.
    pub sla_due_at: String,
    /// The client of the ticket's mentions (a ticket never joins two clients'
    /// mentions); it picks the ticket topic (`cull.tickets.<client>.<queue>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The rule that matched.
    pub rule: TicketRule,
    /// The mention itself: the latest that joined the ticket.
    pub mention: Mention,
    /// Highlighted spans.
    pub spans: Vec<Span>,
    /// A short snippet around the first span.
    pub snippet: String,
    /// A ticket, an incident or a digest.
    #[serde(default)]
    pub kind: TicketKind,
    /// The mentions that joined this ticket so far.
    #[serde(default = "one")]
    pub mention_count: u32,
    /// When the first mention was posted (its `published_at`, else `fetched_at`, else
    /// when cull saw it; RFC 3339): the entry time a universal queue orders by.
    #[serde(default)]
    pub arrival_at: String,
    /// Minutes of head start a router gives this ticket over work that arrived at the
    /// same time (Genesys: entry time minus priority minutes); capped.
    #[serde(default)]
    pub rank_offset_minutes: u32,
    /// Why the score is what it is.
    #[serde(default)]
    pub factors: Vec<Factor>,
    /// The SLA policy applied: `<queue>/<priority>` and its clock.
    #[serde(default)]
    pub sla_policy: String,
    /// Minutes of first-response target under that policy.
    #[serde(default)]
    pub sla_target_minutes: u32,
    /// `calendar` hours, or the name of the business-hours calendar that counts them.
    #[serde(default)]
    pub sla_clock: String,
    /// True when the mention was already past its deadline when cull saw it.
    #[serde(default)]
    pub late_on_arrival: bool,
    /// The incident ticket whose spike this ticket is part of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    /// For an incident or a digest: the mentions or tickets it links (the latest
    /// ones, at most a hundred; `mention_count` counts them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// The queue a ticket was meant for, when that queue was over its capacity and the
    /// ticket went to this one instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow_from: Option<String>,
}

fn one() -> u32 {
    1
}

/// Returns a record as text: at most `limit` bytes of UTF-8, without a BOM.
pub(crate) fn record_text(bytes: &[u8], limit: usize) -> Result<&str, ModelError> {
    if bytes.len() > limit {
        return Err(ModelError::Oversized { size: bytes.len(), limit });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ModelError::InvalidUtf8 { offset: e.valid_up_to() })?;
    // A byte-order mark opens many files exported on Windows; JSON does not allow
    // one, and refusing the first line of such a file for it would lose a record.
    Ok(text.strip_prefix('\u{FEFF}').unwrap_or(text))
}

/// Returns serde_json's error as the model's, with its line and column (0 when the
/// error is of a value rather than of text).
pub(crate) fn json_error(e: serde_json::Error) -> ModelError {
    ModelError::Json { line: e.line(), column: e.column(), message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_lines_may_leave_the_schema_out_but_not_name_another() {
        let m = Mention::from_json_assuming_v1(br#"{"id":"1","text":"Slack is down"}"#, MAX_MENTION_BYTES)
            .unwrap();
        assert_eq!((m.schema.as_str(), m.id.as_str()), (MENTION_SCHEMA, "1"));
        assert!(
            Mention::from_json(br#"{"id":"1","text":"Slack is down"}"#).is_err(),
            "the pipeline's own reader still requires it"
        );
        let wrong = Mention::from_json_assuming_v1(
            br#"{"schema":"cull.mention/v2","id":"1","text":"x"}"#,
            MAX_MENTION_BYTES,
        );
        assert!(matches!(wrong, Err(ModelError::Schema { .. })), "{wrong:?}");
        let bad = Mention::from_json_assuming_v1(br#"{"id":"1"}"#, MAX_MENTION_BYTES).unwrap_err();
        assert!(bad.to_string().contains("missing field `text`"), "{bad}");
        assert!(matches!(Mention::from_json_assuming_v1(b"[1", 100), Err(ModelError::Json { line: 1, .. })));
        assert!(matches!(Mention::from_json_assuming_v1(&[b' '; 10], 5), Err(ModelError::Oversized { .. })));
    }

    #[test]
    fn minimal_wire_mention_needs_schema_id_and_text() {
        let m = Mention::from_json(br#"{"schema":"cull.mention/v1","id":"m-1","text":"hi"}"#).unwrap();
        assert_eq!(m.id, "m-1");
        assert_eq!(m.text, "hi");
        assert_eq!(m.channel, None);
    }

    #[test]
    fn bad_records_get_specific_errors() {
        let err = Mention::from_json(b"{\"schema\":\"cull.mention/v1\",\"id\":\"m\",\"text\":\"\xff\"}")
            .unwrap_err();
        assert!(matches!(err, ModelError::InvalidUtf8 { offset: 45 }), "{err}");
        let err = Mention::from_json(br#"{"schema":"cull.mention/v2","id":"m","text":""}"#).unwrap_err();
        assert!(matches!(err, ModelError::Schema { .. }), "{err}");
        let err = Mention::from_json(br#"{"schema":"cull.mention/v1","id":"m"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `text`"), "{err}");
        let err = Mention::from_json(b"{\"schema\":\n 1").unwrap_err();
        assert!(matches!(err, ModelError::Json { line: 2, .. }), "{err}");
        let err = Mention::from_json_limited(&[b' '; 100], 10).unwrap_err();
        assert!(matches!(err, ModelError::Oversized { size: 100, limit: 10 }), "{err}");
        let err = Mention::from_json(br#"{"schema":"cull.mention/v1","id":"","text":"x"}"#).unwrap_err();
        assert!(matches!(err, ModelError::EmptyField { field: "id" }), "{err}");
        let err = Mention::from_json(br#"{"schema":"cull.mention/v1","id":"m","text":"x","chanel":"blog"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("chanel"), "{err}");
    }

    #[test]
    fn verdict_serializes_to_the_documented_shape() {
        let verdict = Verdict {
            schema: VERDICT_SCHEMA.into(),
            mention_id: "m-42".into(),
            client: None,
            ruleset_version: "3f9c".into(),
            matched: vec![MatchedRule {
                rule_id: "connections-magazine".into(),
                rule_version: "a1b2".into(),
                spans: smallvec::smallvec![Span { field: "text".into(), start: 12, end: 32 }],
            }],
            culled: vec![Culled {
                rule_id: "slack-company".into(),
                reason: CullReason::Exclude,
                clause: "adjuster".into(),
            }],
            mention: None,
        };
        assert_eq!(
            serde_json::to_string(&verdict).unwrap(),
            r#"{"schema":"cull.verdict/v1","mention_id":"m-42","ruleset_version":"3f9c","matched":[{"rule_id":"connections-magazine","rule_version":"a1b2","spans":[{"field":"text","start":12,"end":32}]}],"culled":[{"rule_id":"slack-company","reason":"exclude","clause":"adjuster"}]}"#
        );
    }

    #[test]
    fn matched_rules_inline_or_not_read_back_as_written() {
        let long_id = "acme-bank/complaints-mortgage-united-kingdom";
        let span = |start| Span { field: "title".into(), start, end: start + 4 };
        let json = format!(
            r#"{{"rule_id":"{long_id}","rule_version":"0123456789ab","spans":[{}]}}"#,
            [0, 10, 20].map(|s| format!(r#"{{"field":"title","start":{s},"end":{}}}"#, s + 4)).join(",")
        );
        let matched: MatchedRule = serde_json::from_str(&json).unwrap();
        assert_eq!((matched.rule_id.as_str(), matched.rule_version.as_str()), (long_id, "0123456789ab"));
        assert_eq!(matched.spans.as_slice(), [span(0), span(10), span(20)]);
        assert!(matched.rule_id.is_heap_allocated() && matched.spans.spilled(), "past what is kept inline");
        assert_eq!(serde_json::to_string(&matched).unwrap(), json);
    }

    #[test]
    fn host_is_lowercased_without_port_or_userinfo() {
        let mut m = Mention::new("m", "");
        m.url = Some("https://user@WWW.Example.COM:8443/a?b".into());
        assert_eq!(m.host().as_deref(), Some("www.example.com"));
        m.url = Some("not a url".into());
        assert_eq!(m.host(), None);
    }
}

/// Input that a stage could not process, kept with the reason and the original bytes
/// so that nothing is lost and an operator can replay it once fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Always [`DEAD_LETTER_SCHEMA`].
    pub schema: String,
    /// The stage that rejected the input (`ingest`, `match`, `index`).
    pub stage: String,
    /// Why, in words.
    pub error: String,
    /// Where the input came from: a topic/partition/offset or a file and line.
    pub origin: String,
    /// The original bytes, base64-encoded (they may not be UTF-8).
    pub original_base64: String,
}

impl DeadLetter {
    /// Returns a dead letter for `original` rejected by `stage` for `error`.
    pub fn new(stage: &str, error: &dyn std::fmt::Display, origin: String, original: &[u8]) -> DeadLetter {
        use base64::Engine as _;
        DeadLetter {
            schema: DEAD_LETTER_SCHEMA.to_string(),
            stage: stage.to_string(),
            error: error.to_string(),
            origin,
            original_base64: base64::engine::general_purpose::STANDARD.encode(original),
        }
    }
}
