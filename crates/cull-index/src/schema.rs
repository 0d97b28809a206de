//! The analyst index's schema: the matcher's fields plus dates, verdicts, keywords to
//! count (domain, author, sentiment) and the stored record.
//!
//! A document is one mention. Its stored record is the verdict (with the mention) and
//! the tickets about the mention; a mention whose tickets came before its verdict has a
//! document that holds only its id and the tickets (no verdict, so no search finds it)
//! until the verdict joins them.

use cull_model::{sentiment, Mention, Ticket, Verdict};
use cull_rules::tantivy_query::MentionSchema;
use serde::{Deserialize, Serialize};
use tantivy::schema::{self, Schema, FAST, INDEXED, STORED, STRING};
use tantivy::{DateTime, TantivyDocument};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The fast field a time filter, sort and histogram use: `published_at`, else
/// `fetched_at`, else when the mention was indexed.
pub const AT: &str = "at";
const PUBLISHED_AT: &str = "published_at";
const FETCHED_AT: &str = "fetched_at";
/// The outcome of a mention: `matched`, `culled` or `unmatched`.
pub const VERDICT: &str = "verdict";
/// The ids of the rules that matched a mention.
pub const RULE: &str = "rule";
/// The ids of the rules whose match was culled.
pub const CULLED_RULE: &str = "culled_rule";
/// The client of a mention; absent for the contact center's own. Every search is
/// limited by it (see [`cull_model::Scope`]).
pub const CLIENT: &str = "client";
/// The registered domain of a mention's host (`huffpost.com` for
/// `www.huffpost.com`, `bbc.co.uk` for `news.bbc.co.uk`), by the Public Suffix List:
/// the `site` field holds every label suffix of the host for `site:` queries, so
/// counting it counts `com` and each subdomain beside the domain an analyst means.
pub const DOMAIN: &str = "domain";
/// The author as written (trimmed), a keyword to count and filter on: the `author`
/// field is analyzed text for queries, which has no single value to count.
pub const AUTHOR_KEYWORD: &str = "author_keyword";
/// The sentiment of a mention's title and text: `negative`, `neutral` or `positive`
/// by VADER's conventional thresholds on [`SENTIMENT_SCORE`]
/// ([`cull_model::sentiment::Label`]), scored when the mention is indexed with the
/// scorer triage ranks tickets by. VADER reads English only: a mention in another
/// language is mostly `neutral`, whatever it says.
pub const SENTIMENT: &str = "sentiment";
/// VADER's compound score of a mention, in [-1, 1]: a fast field, so that a range
/// filter or a sort by how negative a mention is reads a column instead of every
/// stored record.
pub const SENTIMENT_SCORE: &str = "sentiment_score";
const RECORD: &str = "record";

/// What happened to a mention, as the `verdict` facet counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// At least one rule matched.
    Matched,
    /// Rules' queries matched, and every one was culled.
    Culled,
    /// No rule's query matched.
    Unmatched,
}

impl Outcome {
    /// Returns the outcome of a verdict.
    pub fn of(verdict: &Verdict) -> Outcome {
        match (verdict.matched.is_empty(), verdict.culled.is_empty()) {
            (false, _) => Outcome::Matched,
            (true, false) => Outcome::Culled,
            (true, true) => Outcome::Unmatched,
        }
    }

    /// Returns the indexed value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Matched => "matched",
            Outcome::Culled => "culled",
            Outcome::Unmatched => "unmatched",
        }
    }
}

/// The schema and the handles of the fields the analyst index adds.
#[derive(Debug, Clone)]
pub struct IndexSchema {
    /// The matcher's schema, within which the extra fields live.
    pub mention: MentionSchema,
    pub(crate) at: schema::Field,
    published_at: schema::Field,
    fetched_at: schema::Field,
    verdict: schema::Field,
    rule: schema::Field,
    culled_rule: schema::Field,
    pub(crate) client: schema::Field,
    domain: schema::Field,
    author_keyword: schema::Field,
    sentiment: schema::Field,
    sentiment_score: schema::Field,
    record: schema::Field,
}

impl Default for IndexSchema {
    fn default() -> IndexSchema {
        IndexSchema::new()
    }
}

impl IndexSchema {
    /// Returns the schema.
    pub fn new() -> IndexSchema {
        let mention = MentionSchema::with_extra_fields(|builder| {
            builder.add_date_field(AT, INDEXED | FAST | STORED);
            builder.add_date_field(PUBLISHED_AT, INDEXED | FAST);
            builder.add_date_field(FETCHED_AT, INDEXED | FAST);
            builder.add_text_field(VERDICT, STRING | FAST);
            builder.add_text_field(RULE, STRING | FAST);
            builder.add_text_field(CULLED_RULE, STRING | FAST);
            builder.add_text_field(CLIENT, STRING | FAST);
            builder.add_text_field(DOMAIN, STRING | FAST);
            builder.add_text_field(AUTHOR_KEYWORD, STRING | FAST);
            builder.add_text_field(SENTIMENT, STRING | FAST);
            // Stored too, so that an export carries it.
            builder.add_f64_field(SENTIMENT_SCORE, FAST | STORED);
            builder.add_text_field(RECORD, STORED);
        });
        let field = |name: &str| mention.schema().get_field(name).expect("added just above");
        IndexSchema {
            at: field(AT),
            published_at: field(PUBLISHED_AT),
            fetched_at: field(FETCHED_AT),
            verdict: field(VERDICT),
            rule: field(RULE),
            culled_rule: field(CULLED_RULE),
            client: field(CLIENT),
            domain: field(DOMAIN),
            author_keyword: field(AUTHOR_KEYWORD),
            sentiment: field(SENTIMENT),
            sentiment_score: field(SENTIMENT_SCORE),
            record: field(RECORD),
            mention,
        }
    }

    /// Returns the Tantivy schema.
    pub fn schema(&self) -> &Schema {
        self.mention.schema()
    }

    /// Returns the document of a verdict, the mention it carries (`None` when it
    /// carries none) and the tickets about it; `now` dates a mention that has no time of
    /// its own.
    pub fn document(
        &self,
        verdict: &Verdict,
        tickets: &[Ticket],
        now: OffsetDateTime,
    ) -> Option<TantivyDocument> {
        let mention = verdict.mention.as_ref()?;
        let mut document = self.mention.document(mention);
        let published = mention.published_at.as_deref().and_then(parse_time);
        let fetched = mention.fetched_at.as_deref().and_then(parse_time);
        document.add_date(self.at, mention_time(mention).unwrap_or_else(|| date(now)));
        if let Some(published) = published {
            document.add_date(self.published_at, published);
        }
        if let Some(fetched) = fetched {
            document.add_date(self.fetched_at, fetched);
        }
        document.add_text(self.verdict, Outcome::of(verdict).as_str());
        if let Some(client) = &mention.client {
            document.add_text(self.client, client);
        }
        if let Some(host) = mention.host() {
            document.add_text(self.domain, registered_domain(&host));
        }
        if let Some(author) = mention.author.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
            document.add_text(self.author_keyword, author);
        }
        let scored = sentiment::analyze_mention(mention);
        document.add_text(self.sentiment, scored.label().as_str());
        document.add_f64(self.sentiment_score, scored.compound);
        for matched in &verdict.matched {
            document.add_text(self.rule, &matched.rule_id);
        }
        for culled in &verdict.culled {
            document.add_text(self.culled_rule, &culled.rule_id);
        }
        let record = StoredRecord { verdict: Some(verdict), tickets };
        document.add_text(self.record, serde_json::to_string(&record).expect("a record always serializes"));
        Some(document)
    }

    /// Returns the document of a mention whose verdict has not come yet: its id (so that
    /// the verdict replaces it) and the tickets about it, nothing a search looks at, and
    /// the time `at` (so that retention deletes it like a mention of that time).
    pub fn tickets_document(
        &self,
        mention_id: &str,
        tickets: &[Ticket],
        at: OffsetDateTime,
    ) -> TantivyDocument {
        let mut document = TantivyDocument::new();
        document.add_text(self.mention.id_field(), mention_id);
        document.add_date(self.at, date(at));
        let record = StoredRecord { verdict: None, tickets };
        document.add_text(self.record, serde_json::to_string(&record).expect("a record always serializes"));
        document
    }

    /// Returns the stored verdict (with its mention) of a document; `None` for a
    /// document that holds only tickets.
    pub fn record(&self, document: &TantivyDocument) -> Option<Verdict> {
        verdict_of(self.stored(document)?)
    }

    /// Returns the tickets about the mention of a document (the highest revision of
    /// each, by ticket id).
    pub fn tickets(&self, document: &TantivyDocument) -> Vec<Ticket> {
        self.stored(document).map_or_else(Vec::new, tickets_of)
    }

    fn stored<'d>(&self, document: &'d TantivyDocument) -> Option<&'d str> {
        use tantivy::schema::Value;
        document.get_first(self.record)?.as_str()
    }

    /// Returns the stored time of a document, in seconds since the epoch.
    pub fn at(&self, document: &TantivyDocument) -> Option<i64> {
        use tantivy::schema::Value;
        Some(document.get_first(self.at)?.as_datetime()?.into_timestamp_secs())
    }

    /// Returns the VADER compound a document was indexed with.
    pub fn sentiment_score(&self, document: &TantivyDocument) -> Option<f64> {
        use tantivy::schema::Value;
        document.get_first(self.sentiment_score)?.as_f64()
    }
}

/// The stored record: the verdict's own fields (so that a record written before
/// tickets were kept reads the same) and the tickets.
#[derive(Serialize)]
struct StoredRecord<'a> {
    #[serde(flatten)]
    verdict: Option<&'a Verdict>,
    #[serde(skip_serializing_if = "<[Ticket]>::is_empty")]
    tickets: &'a [Ticket],
}

/// Returns the verdict of a stored record; `None` for a record of tickets only.
pub(crate) fn verdict_of(record: &str) -> Option<Verdict> {
    serde_json::from_str(record).ok()
}

/// Returns the tickets of a stored record.
pub(crate) fn tickets_of(record: &str) -> Vec<Ticket> {
    #[derive(Deserialize)]
    struct Tickets {
        #[serde(default)]
        tickets: Vec<Ticket>,
    }
    serde_json::from_str::<Tickets>(record).map_or_else(|_| Vec::new(), |stored| stored.tickets)
}

/// Returns the registered domain of a (lowercase) host by the Public Suffix List, or
/// the host itself when it has none (an IP address, `localhost`, a bare suffix).
pub fn registered_domain(host: &str) -> &str {
    let host = host.trim_end_matches('.');
    if host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok() {
        return host;
    }
    psl::domain_str(host).unwrap_or(host)
}

/// Returns the time of a mention that a filter, the sort, the histogram and retention
/// go by: when it was published, else when it was fetched; `None` when it says neither.
pub fn mention_time(mention: &Mention) -> Option<DateTime> {
    let published = mention.published_at.as_deref().and_then(parse_time);
    published.or_else(|| mention.fetched_at.as_deref().and_then(parse_time))
}

/// Reads an RFC 3339 time as a Tantivy date (seconds precision).
pub fn parse_time(text: &str) -> Option<DateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(date)
}

/// Returns the Tantivy date of a time.
pub fn date(time: OffsetDateTime) -> DateTime {
    DateTime::from_timestamp_secs(time.unix_timestamp())
}
