//! Searching the analyst index in the rule query language.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cull_match::verify::{spans, Document, Hidden};
use cull_model::{Culled, Scope, Span, Ticket, Verdict, UNDETERMINED_LANGUAGE};
use cull_rules::plan::keyword_value;
use cull_rules::query::{compile, parse, QueryError};
use cull_rules::{Field, Plan, Sequence};
use serde::{Deserialize, Serialize};
use tantivy::collector::{Collector, Count, SegmentCollector, TopDocs};
use tantivy::columnar::StrColumn;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery, Weight};
use tantivy::schema::IndexRecordOption;
use tantivy::{
    DocAddress, DocId, DocSet, Index, IndexReader, Order, ReloadPolicy, Score, SegmentReader,
    TantivyDocument, Term, TERMINATED,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::IndexError;
use crate::schema::{
    IndexSchema, Outcome, AT, AUTHOR_KEYWORD, CLIENT, CULLED_RULE, DOMAIN, RULE, SENTIMENT, VERDICT,
};
use crate::writer::open_index;

/// What one search may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Leaves (words, phrases, keyword tests) a query may have, counted after a bare
    /// word expands into its default fields (`slack` is two: title and text).
    pub max_clauses: usize,
    /// Terms a wildcard (`conn*`) may expand to in the index.
    pub max_wildcard_terms: usize,
    /// Time a search may take; after it, the search stops and returns what it has,
    /// marked `timed_out`.
    pub timeout: Duration,
    /// Hits one page may hold.
    pub max_page: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_clauses: 256,
            max_wildcard_terms: 10_000,
            timeout: Duration::from_secs(5),
            max_page: 1000,
        }
    }
}

/// The order of the hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Newest first.
    #[default]
    Time,
    /// Best score first.
    Relevance,
}

/// The width of a histogram bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
    /// One week (from Thursday 1970-01-01, like every Unix-time week).
    Week,
}

impl Interval {
    fn seconds(self) -> i64 {
        match self {
            Interval::Hour => 3600,
            Interval::Day => 86_400,
            Interval::Week => 7 * 86_400,
        }
    }
}

/// The facets: keyword fields whose values can be counted and filtered on.
pub const FACETS: [&str; 11] =
    [RULE, CULLED_RULE, VERDICT, "channel", "lang", "source", "site", DOMAIN, "author", CLIENT, SENTIMENT];

/// Returns the index field a facet counts: the facet's own name, but for `author`,
/// whose field of that name is analyzed text for queries.
fn facet_field(facet: &str) -> &str {
    if facet == "author" {
        AUTHOR_KEYWORD
    } else {
        facet
    }
}

/// Returns the value a facet counts, and a filter on it selects, for a mention that
/// has none; only the language has one, [`UNDETERMINED_LANGUAGE`] (what ingest sets
/// when it cannot tell), so that mentions without a language are found from the
/// facet with those ingest could not place.
fn missing_value(facet: &str) -> Option<&'static str> {
    (facet == "lang").then_some(UNDETERMINED_LANGUAGE)
}

/// Refuses a name that is not a facet, naming the parameter (`facet`, `filter`) that
/// gave it.
fn check_facet(parameter: &'static str, facet: &str) -> Result<(), IndexError> {
    if FACETS.contains(&facet) {
        return Ok(());
    }
    Err(IndexError::Parameter {
        name: parameter,
        message: format!("unknown facet {facet:?}; facets are {}", FACETS.join(", ")),
    })
}

/// A histogram's split into stacked series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// One series per outcome: matched, culled, unmatched.
    Verdict,
    /// One series per rule that matched (a mention matched by two rules counts in
    /// both), and [`NO_VALUE_SERIES`] for the mentions no rule matched.
    Rule,
}

impl Split {
    fn field(self) -> &'static str {
        match self {
            Split::Verdict => VERDICT,
            Split::Rule => RULE,
        }
    }
}

/// The series of a split that counts the mentions without a value (no rule matched
/// them); no rule id has parentheses, so it names no rule.
pub const NO_VALUE_SERIES: &str = "(none)";

/// A filter on a facet's value: it selects exactly the mentions the facet counts
/// under that value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetFilter {
    /// One of [`FACETS`].
    pub facet: String,
    /// A value as the facet reports it.
    pub value: String,
}

/// A search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchRequest {
    /// A query in the rule language; empty finds every mention.
    pub query: String,
    /// Only mentions at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Only mentions before this time (Unix seconds).
    pub until: Option<i64>,
    /// Only mentions on one of these channels.
    pub channels: Vec<String>,
    /// Only mentions one of these rules matched or culled.
    pub rules: Vec<String>,
    /// Only mentions with one of these outcomes.
    pub verdicts: Vec<Outcome>,
    /// Only mentions in one of these languages.
    pub langs: Vec<String>,
    /// Only mentions of one of these clients (within the reader's scope, which this
    /// never widens).
    pub clients: Vec<String>,
    /// Only mentions with one of the values filtered on, for each facet filtered on.
    pub facet_filters: Vec<FacetFilter>,
    /// The order of the hits.
    pub sort: Sort,
    /// Hits to return.
    pub limit: usize,
    /// Hits to skip (for the next pages).
    pub offset: usize,
    /// Facets to count values of: one of [`FACETS`].
    pub facets: Vec<String>,
    /// A date histogram of the matching mentions, with buckets of this width.
    pub histogram: Option<Interval>,
    /// Split each bucket of the histogram into series.
    pub split: Option<Split>,
}

impl Default for SearchRequest {
    fn default() -> SearchRequest {
        SearchRequest {
            query: String::new(),
            since: None,
            until: None,
            channels: Vec::new(),
            rules: Vec::new(),
            verdicts: Vec::new(),
            langs: Vec::new(),
            clients: Vec::new(),
            facet_filters: Vec::new(),
            sort: Sort::Time,
            limit: 20,
            offset: 0,
            facets: Vec::new(),
            histogram: None,
            split: None,
        }
    }
}

/// A piece of text with the byte ranges to highlight in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snippet {
    /// The text (plain text: a client must escape it, never render it as HTML).
    pub text: String,
    /// Byte ranges `[start, end)` of `text` that matched the query.
    pub highlights: Vec<[usize; 2]>,
}

/// One mention found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The mention id.
    pub id: String,
    /// The relevance score (0 when sorted by time).
    pub score: f32,
    /// When it was published (or fetched), RFC 3339.
    pub at: Option<String>,
    /// Matched, culled or unmatched.
    pub outcome: Outcome,
    /// Rules that matched.
    pub matched: Vec<String>,
    /// Rules that were culled.
    pub culled: Vec<String>,
    /// Why each culled rule was culled: the reason and the clause.
    pub culls: Vec<Culled>,
    /// The title, highlighted (a passage of it, as `text`, when it is longer than
    /// that; the whole mention is at `/api/mentions/{id}`).
    pub title: Option<Snippet>,
    /// A passage of the text around the first highlight.
    pub text: Snippet,
    /// The URL.
    pub url: Option<String>,
    /// The author.
    pub author: Option<String>,
    /// The source.
    pub source: Option<String>,
    /// The channel.
    pub channel: Option<String>,
    /// The language.
    pub lang: Option<String>,
}

/// A facet value and the number of matching mentions that have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetCount {
    /// The value.
    pub value: String,
    /// Matching mentions with it.
    pub count: u64,
}

/// A histogram bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// The start of the bucket, RFC 3339.
    pub start: String,
    /// Matching mentions in it.
    pub count: u64,
    /// With a split, matching mentions in it per series (a rule split may count a
    /// mention in several).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub series: BTreeMap<String, u64>,
}

/// A date histogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// The bucket width.
    pub interval: Interval,
    /// The buckets from the first to the last non-empty one, empty ones included.
    pub buckets: Vec<Bucket>,
}

/// A mention as the index holds it: its verdict and the tickets about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MentionRecord {
    /// The verdict, with the mention.
    pub verdict: Verdict,
    /// The tickets about the mention, the highest revision of each, ordered by id.
    pub tickets: Vec<Ticket>,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Matching mentions in all.
    pub total: usize,
    /// The page of hits asked for.
    pub hits: Vec<Hit>,
    /// Counts per value of each facet asked for, most frequent first.
    pub facets: BTreeMap<String, Vec<FacetCount>>,
    /// The histogram, if asked for.
    pub histogram: Option<Histogram>,
    /// Milliseconds the search took.
    pub took_ms: u64,
    /// True when the time limit stopped the search: counts and hits are partial.
    pub timed_out: bool,
}

/// One mention of an export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedMention {
    /// When it was published (or fetched), RFC 3339, as a hit's `at`.
    pub at: Option<String>,
    /// The verdict, with the mention.
    pub verdict: Verdict,
    /// VADER's compound for the mention's title and text, as indexed.
    pub sentiment_score: Option<f64>,
}

/// What the collectors of one search found.
struct Found {
    plan: Option<Plan>,
    searcher: tantivy::Searcher,
    addresses: Vec<(f32, DocAddress)>,
    total: usize,
    facets: BTreeMap<String, Vec<FacetCount>>,
    buckets: HashMap<i64, BucketCounts>,
    timed_out: bool,
}

/// Reads the analyst index.
///
/// Every read takes the [`Scope`] of the reader: a client's analyst sees that
/// client's mentions only, whichever way the read comes (the API, the console, `cull
/// search`, a backtest), because the limit is a clause of the search itself rather
/// than a filter some caller must remember. A mention outside the scope is not found,
/// exactly as a missing one is.
pub struct Searcher {
    reader: IndexReader,
    schema: IndexSchema,
    limits: Limits,
}

impl std::fmt::Debug for Searcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Searcher").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// The characters of text shown around the first highlight.
const PASSAGE_BYTES: usize = 280;

/// Decompressed blocks of stored documents each segment keeps (Tantivy's default is
/// 100). A block holds at least one whole document, so with mentions of a megabyte
/// the default kept a hundred megabytes per segment after one large page; a page reads
/// its documents one by one and gains little from more.
const DOC_STORE_CACHE_BLOCKS: usize = 4;

/// The earliest time the index can hold: Tantivy keeps dates as nanoseconds in an
/// `i64`, from 1677-09-21T00:12:44Z.
const MIN_TIME_SECS: i64 = i64::MIN / 1_000_000_000;
/// The latest time the index can hold, 2262-04-11T23:47:16Z.
const MAX_TIME_SECS: i64 = i64::MAX / 1_000_000_000;

/// Refuses a time range the index cannot represent (a bound outside it would overflow
/// Tantivy's nanoseconds and silently find nothing) or that is empty by mistake.
pub(crate) fn check_time_range(since: Option<i64>, until: Option<i64>) -> Result<(), IndexError> {
    let show = |seconds: i64| {
        OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| format!("{seconds} s after the epoch"))
    };
    for (name, bound) in [("since", since), ("until", until)] {
        if let Some(seconds) = bound.filter(|s| !(MIN_TIME_SECS..=MAX_TIME_SECS).contains(s)) {
            return Err(IndexError::Parameter {
                name,
                message: format!(
                    "{} is outside the times the index holds, {} to {}",
                    show(seconds),
                    show(MIN_TIME_SECS),
                    show(MAX_TIME_SECS)
                ),
            });
        }
    }
    if let (Some(since), Some(until)) = (since, until) {
        if since > until {
            let message = format!("{} is after until {}", show(since), show(until));
            return Err(IndexError::Parameter { name: "since", message });
        }
    }
    Ok(())
}

impl Searcher {
    /// Opens the index in `dir` for searching (creating an empty one when missing);
    /// new commits become visible shortly after they happen.
    pub fn open(dir: &Path, limits: Limits) -> Result<Searcher, IndexError> {
        let schema = IndexSchema::new();
        let index = open_index(dir, &schema)?;
        Searcher::over(index, schema, limits)
    }

    /// Returns a searcher of an index already open (the indexer's, in one process).
    pub fn over(index: Index, schema: IndexSchema, limits: Limits) -> Result<Searcher, IndexError> {
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .doc_store_cache_num_blocks(DOC_STORE_CACHE_BLOCKS)
            .try_into()?;
        Ok(Searcher { reader, schema, limits })
    }

    /// Makes the last commit visible now rather than shortly.
    pub fn reload(&self) -> Result<(), IndexError> {
        Ok(self.reader.reload()?)
    }

    /// Returns the limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Returns the number of mentions in the index (whose verdict came).
    pub fn len(&self) -> u64 {
        let counted = self.reader.searcher().search(&self.mentions(), &Count);
        counted.map_or(0, |count| count as u64)
    }

    /// Returns the query of every document that holds a verdict: a document that holds
    /// only the tickets of a mention whose verdict has not come yet is no mention to
    /// find.
    fn mentions(&self) -> BooleanQuery {
        let field = self.schema.schema().get_field(VERDICT).expect("a field of the schema");
        let outcomes = [Outcome::Matched, Outcome::Culled, Outcome::Unmatched].map(|outcome| {
            let term = Term::from_field_text(field, outcome.as_str());
            (Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::Basic)) as Box<dyn Query>)
        });
        BooleanQuery::new(outcomes.into())
    }

    /// Returns true when the index holds no mention.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the plan of a query, checked against the limits; `None` for an empty
    /// query (everything).
    pub fn plan(&self, query: &str) -> Result<Option<Plan>, IndexError> {
        if query.trim().is_empty() {
            return Ok(None);
        }
        let located = |error: &QueryError| -> String {
            // A search query is one line: its column says where, as a compiler would.
            let column = query.get(..error.span.start).map_or(1, |before| before.chars().count() + 1);
            match &error.help {
                Some(help) => format!("{} at column {column}; {help}", error.message),
                None => format!("{} at column {column}", error.message),
            }
        };
        let syntax = |errors: &[QueryError]| IndexError::Syntax {
            message: errors.iter().map(located).collect::<Vec<_>>().join("; "),
            span: errors.first().map_or(0..0, |e| e.span.clone()),
        };
        let node = parse(query).map_err(|e| syntax(&[e]))?;
        let plan = compile(&node).map_err(|errors| syntax(&errors))?;
        let clauses = leaves(&plan);
        if clauses > self.limits.max_clauses {
            return Err(IndexError::Limit(format!(
                "the query has {clauses} clauses; the limit is {}",
                self.limits.max_clauses
            )));
        }
        self.check_wildcards(&plan)?;
        Ok(Some(plan))
    }

    /// Returns the stored verdict (with its mention) of mention `id` and the tickets
    /// about it; a mention whose verdict has not come yet, or outside `scope`, is not
    /// found.
    pub fn mention(&self, scope: &Scope, id: &str) -> Result<MentionRecord, IndexError> {
        let searcher = self.reader.searcher();
        let term = Term::from_field_text(self.schema.mention.id_field(), id);
        let query = TermQuery::new(term, IndexRecordOption::Basic);
        let hits = searcher.search(&query, &TopDocs::with_limit(1))?;
        let (_, address) = hits.first().ok_or_else(|| IndexError::NotFound(id.to_string()))?;
        let document: TantivyDocument = searcher.doc(*address)?;
        let verdict = self.schema.record(&document).ok_or_else(|| IndexError::NotFound(id.to_string()))?;
        let client = verdict.mention.as_ref().and_then(|m| m.client.as_deref());
        if !scope.admits(client) {
            return Err(IndexError::NotFound(id.to_string()));
        }
        Ok(MentionRecord { verdict, tickets: self.schema.tickets(&document) })
    }

    /// Runs a search over the mentions of `scope`.
    pub fn search(&self, scope: &Scope, request: &SearchRequest) -> Result<SearchResponse, IndexError> {
        let started = Instant::now();
        self.check(request)?;
        if request.limit > self.limits.max_page {
            return Err(IndexError::Limit(format!(
                "limit {} is over the page size limit of {}",
                request.limit, self.limits.max_page
            )));
        }
        let found = self.run(scope, request, started, request.limit)?;
        let mut hits = Vec::with_capacity(found.addresses.len());
        if request.limit > 0 {
            for (score, address) in found.addresses {
                let document: TantivyDocument = found.searcher.doc(address)?;
                hits.push(self.hit(&document, score, found.plan.as_ref())?);
            }
        }
        Ok(SearchResponse {
            total: found.total,
            hits,
            facets: found.facets,
            histogram: request
                .histogram
                .map(|interval| Histogram { interval, buckets: fill(found.buckets, interval) }),
            took_ms: started.elapsed().as_millis() as u64,
            timed_out: found.timed_out,
        })
    }

    /// Calls `each` with the first `cap` mentions of a search (from its first hit, in
    /// its order) in full, for an export, until it breaks; returns the number of
    /// matching mentions. A search stopped by the time limit is an error,
    /// [`IndexError::TimeLimit`]: an export that silently held part of the mentions
    /// would mislead whoever reads it.
    pub fn export(
        &self,
        scope: &Scope,
        request: &SearchRequest,
        cap: usize,
        mut each: impl FnMut(ExportedMention) -> ControlFlow<()>,
    ) -> Result<usize, IndexError> {
        let started = Instant::now();
        self.check(request)?;
        let whole = SearchRequest { offset: 0, facets: Vec::new(), histogram: None, ..request.clone() };
        let found = self.run(scope, &whole, started, cap)?;
        if found.timed_out {
            return Err(self.time_limit());
        }
        for (_, address) in found.addresses {
            let document: TantivyDocument = found.searcher.doc(address)?;
            let verdict =
                self.schema.record(&document).ok_or_else(|| IndexError::Record(format!("{address:?}")))?;
            let at = self.schema.at(&document).and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
            let exported = ExportedMention {
                at: at.and_then(|t| t.format(&Rfc3339).ok()),
                verdict,
                sentiment_score: self.schema.sentiment_score(&document),
            };
            if each(exported).is_break() {
                break;
            }
        }
        Ok(found.total)
    }

    /// Refuses a request whose time range, facets or channels are not ones the index
    /// knows.
    fn check(&self, request: &SearchRequest) -> Result<(), IndexError> {
        check_time_range(request.since, request.until)?;
        for facet in &request.facets {
            check_facet("facet", facet)?;
        }
        for filter in &request.facet_filters {
            check_facet("filter", &filter.facet)?;
        }
        // A channel that is none finds nothing, which reads as "no such mentions":
        // `tweets` for `twitter` must be an error, not an empty answer.
        for channel in &request.channels {
            if cull_model::Channel::parse(&keyword_value(channel)).is_none() {
                let names: Vec<&str> = cull_model::Channel::ALL.iter().map(|c| c.as_str()).collect();
                return Err(IndexError::Parameter {
                    name: "channel",
                    message: format!("unknown channel {channel:?}; channels are {}", names.join(", ")),
                });
            }
        }
        Ok(())
    }

    /// Runs the collectors of a checked request: the first `limit` hits from its
    /// offset, the count, its facets and its histogram, within the time limit.
    fn run(
        &self,
        scope: &Scope,
        request: &SearchRequest,
        started: Instant,
        limit: usize,
    ) -> Result<Found, IndexError> {
        let plan = self.plan(&request.query)?;
        let query = self.filtered(scope, plan.as_ref(), request);
        let searcher = self.reader.searcher();
        let timed_out = Arc::new(AtomicBool::new(false));
        let deadline = started + self.limits.timeout;
        // A facet asked for twice is counted once.
        let mut fields: Vec<String> = Vec::with_capacity(request.facets.len());
        for facet in &request.facets {
            if !fields.contains(facet) {
                fields.push(facet.clone());
            }
        }
        let facets = FacetCollector { facets: fields };
        let histogram = HistogramCollector { interval: request.histogram, split: request.split };
        let page = TopDocs::with_limit(limit.max(1)).and_offset(request.offset);
        let addresses: Vec<(f32, DocAddress)>;
        let (total, facet_counts, buckets);
        match request.sort {
            Sort::Relevance => {
                let collector = Deadline {
                    inner: (page, Count, facets, histogram),
                    deadline,
                    timed_out: Arc::clone(&timed_out),
                };
                let (top, count, counted, histogram) = searcher.search(&query, &collector)?;
                addresses = top;
                (total, facet_counts, buckets) = (count, counted, histogram);
            }
            Sort::Time => {
                let page = page.order_by_fast_field::<tantivy::DateTime>(AT, Order::Desc);
                let collector = Deadline {
                    inner: (page, Count, facets, histogram),
                    deadline,
                    timed_out: Arc::clone(&timed_out),
                };
                let (top, count, counted, histogram) = searcher.search(&query, &collector)?;
                addresses = top.into_iter().map(|(_, address)| (0.0, address)).collect();
                (total, facet_counts, buckets) = (count, counted, histogram);
            }
        }
        let addresses = if limit == 0 { Vec::new() } else { addresses };
        let timed_out = timed_out.load(Ordering::Relaxed);
        Ok(Found { plan, searcher, addresses, total, facets: facet_counts, buckets, timed_out })
    }

    /// Returns every stored verdict (with its mention) of `scope` that `plan` finds
    /// within the time range, for backtests; past `deadline` (when there is one),
    /// stops with [`IndexError::TimeLimit`].
    pub(crate) fn records(
        &self,
        scope: &Scope,
        plan: &Plan,
        since: Option<i64>,
        until: Option<i64>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Verdict>, IndexError> {
        check_time_range(since, until)?;
        let request = SearchRequest { since, until, ..SearchRequest::default() };
        let query = self.filtered(scope, Some(plan), &request);
        let searcher = self.reader.searcher();
        let timed_out = Arc::new(AtomicBool::new(false));
        let addresses = match deadline {
            Some(deadline) => {
                let collector = Deadline {
                    inner: tantivy::collector::DocSetCollector,
                    deadline,
                    timed_out: Arc::clone(&timed_out),
                };
                searcher.search(&query, &collector)?
            }
            None => searcher.search(&query, &tantivy::collector::DocSetCollector)?,
        };
        let over = |deadline: Option<Instant>| deadline.is_some_and(|d| Instant::now() >= d);
        if timed_out.load(Ordering::Relaxed) || over(deadline) {
            return Err(self.time_limit());
        }
        let mut records = Vec::with_capacity(addresses.len());
        for address in addresses {
            if over(deadline) {
                return Err(self.time_limit());
            }
            let document: TantivyDocument = searcher.doc(address)?;
            records.push(
                self.schema.record(&document).ok_or_else(|| IndexError::Record(format!("{address:?}")))?,
            );
        }
        Ok(records)
    }

    /// Returns the error of a backtest stopped by the time limit.
    pub(crate) fn time_limit(&self) -> IndexError {
        IndexError::TimeLimit { limit: self.limits.timeout }
    }

    /// Returns the query of `plan` restricted to `scope` and by the request's filters.
    fn filtered(&self, scope: &Scope, plan: Option<&Plan>, request: &SearchRequest) -> Box<dyn Query> {
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(self.mentions()))];
        if let Some(client) = scope.client() {
            let term = Term::from_field_text(self.schema.client, client);
            must.push((Occur::Must, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
        }
        if let Some(plan) = plan {
            must.push((Occur::Must, self.schema.mention.query(plan)));
        }
        if request.since.is_some() || request.until.is_some() {
            let at = self.schema.at;
            let bound = |seconds: Option<i64>, inclusive: bool| match seconds {
                Some(s) => {
                    let term = Term::from_field_date(at, tantivy::DateTime::from_timestamp_secs(s));
                    if inclusive {
                        Bound::Included(term)
                    } else {
                        Bound::Excluded(term)
                    }
                }
                None => Bound::Unbounded,
            };
            must.push((
                Occur::Must,
                Box::new(RangeQuery::new(bound(request.since, true), bound(request.until, false))),
            ));
        }
        let schema = self.schema.schema();
        let any_of = |fields: &[&str], values: Vec<String>| -> Option<Box<dyn Query>> {
            if values.is_empty() {
                return None;
            }
            let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for field in fields {
                let field = schema.get_field(field).expect("a field of the schema");
                for value in &values {
                    let term = Term::from_field_text(field, value);
                    should.push((Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
                }
            }
            Some(Box::new(BooleanQuery::new(should)))
        };
        let keywords = |values: &[String]| values.iter().map(|v| keyword_value(v)).collect::<Vec<_>>();
        let filters = [
            any_of(&[Field::Channel.name()], keywords(&request.channels)),
            any_of(&[Field::Lang.name()], keywords(&request.langs)),
            any_of(&[RULE, CULLED_RULE], request.rules.clone()),
            any_of(&[VERDICT], request.verdicts.iter().map(|v| v.as_str().to_string()).collect()),
            any_of(&[CLIENT], request.clients.clone()),
        ];
        must.extend(filters.into_iter().flatten().map(|q| (Occur::Must, q)));
        must.extend(self.facet_filters(&request.facet_filters).map(|q| (Occur::Must, q)));
        Box::new(BooleanQuery::new(must))
    }

    /// Returns one query per facet filtered on: any of its values, the facet's
    /// missing value standing for the mentions without one, as [`FacetCollector`]
    /// counts them.
    fn facet_filters<'a>(&'a self, filters: &'a [FacetFilter]) -> impl Iterator<Item = Box<dyn Query>> + 'a {
        let mut by_facet: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for filter in filters {
            by_facet.entry(filter.facet.as_str()).or_default().push(filter.value.as_str());
        }
        by_facet.into_iter().map(move |(facet, values)| {
            let name = facet_field(facet);
            let field = self.schema.schema().get_field(name).expect("every facet is a field of the schema");
            let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for value in values {
                let term = Term::from_field_text(field, value);
                should.push((Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
                if missing_value(facet) == Some(value) {
                    let without = BooleanQuery::new(vec![
                        (Occur::Must, Box::new(tantivy::query::AllQuery) as Box<dyn Query>),
                        (Occur::MustNot, Box::new(tantivy::query::ExistsQuery::new(name.to_string(), false))),
                    ]);
                    should.push((Occur::Should, Box::new(without)));
                }
            }
            Box::new(BooleanQuery::new(should)) as Box<dyn Query>
        })
    }

    fn hit(&self, document: &TantivyDocument, score: Score, plan: Option<&Plan>) -> Result<Hit, IndexError> {
        let record = self
            .schema
            .record(document)
            .ok_or_else(|| IndexError::Record("a hit without a record".into()))?;
        let mention =
            record.mention.clone().ok_or_else(|| IndexError::Record("a record without a mention".into()))?;
        let highlights: Vec<Span> = match plan {
            Some(plan) => {
                let doc = Document::new(&mention);
                spans(plan, &doc, &Hidden::NONE)
            }
            None => Vec::new(),
        };
        let ranges = |field: &str| -> Vec<[usize; 2]> {
            let mut ranges: Vec<[usize; 2]> =
                highlights.iter().filter(|s| s.field == field).map(|s| [s.start, s.end]).collect();
            ranges.sort_unstable();
            ranges.dedup();
            ranges
        };
        let at = self.schema.at(document).and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
        Ok(Hit {
            id: mention.id.clone(),
            score,
            at: at.and_then(|t| t.format(&Rfc3339).ok()),
            outcome: Outcome::of(&record),
            matched: record.matched.iter().map(|m| m.rule_id.to_string()).collect(),
            culled: record.culled.iter().map(|c| c.rule_id.to_string()).collect(),
            culls: record.culled.clone(),
            title: mention.title.as_ref().map(|title| passage(title, &ranges("title"))),
            text: passage(&mention.text, &ranges("text")),
            url: mention.url.clone(),
            author: mention.author.clone(),
            source: mention.source.clone(),
            channel: mention.channel.map(|c| c.as_str().to_string()),
            lang: mention.lang.clone(),
        })
    }

    /// Refuses wildcards that expand to more terms than the limit allows.
    fn check_wildcards(&self, plan: &Plan) -> Result<(), IndexError> {
        let mut prefixes: Vec<&Sequence> = Vec::new();
        plan_sequences(plan, &mut |sequence| {
            if sequence.prefix {
                prefixes.push(sequence);
            }
        });
        if prefixes.is_empty() {
            return Ok(());
        }
        let searcher = self.reader.searcher();
        for sequence in prefixes {
            let name = match sequence.field.form {
                cull_model::analyzer::Form::Folded => sequence.field.field.name().to_string(),
                cull_model::analyzer::Form::Exact => format!("{}_exact", sequence.field.field.name()),
            };
            let field =
                self.schema.schema().get_field(&name).map_err(|e| IndexError::Query(e.to_string()))?;
            let prefix = sequence.words[0].term.as_bytes();
            let mut expansions = 0usize;
            for segment in searcher.segment_readers() {
                let inverted = segment.inverted_index(field)?;
                let mut stream =
                    inverted.terms().range().ge(prefix).into_stream().map_err(tantivy::TantivyError::from)?;
                while stream.advance() && stream.key().starts_with(prefix) {
                    expansions += 1;
                    if expansions > self.limits.max_wildcard_terms {
                        return Err(IndexError::Limit(format!(
                            "`{}*` expands to more than {} terms; make it longer",
                            sequence.words[0].term, self.limits.max_wildcard_terms
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Calls `visit` for every sequence of a plan, under `must_not` too (a wildcard costs
/// the same wherever it stands).
fn plan_sequences<'a>(plan: &'a Plan, visit: &mut impl FnMut(&'a Sequence)) {
    match plan {
        Plan::Sequence(s) | Plan::SloppyPhrase { sequence: s, .. } => visit(s),
        Plan::Near { left, right, .. } => left.iter().chain(right).for_each(&mut *visit),
        Plan::Keyword { .. } | Plan::Missing(_) => {}
        Plan::And { must, must_not } => must.iter().chain(must_not).for_each(|p| plan_sequences(p, visit)),
        Plan::Or(any) => any.iter().for_each(|p| plan_sequences(p, visit)),
    }
}

/// Reads the time bound `name` (`since`, `until`): RFC 3339 (`2026-11-01T00:00:00Z`), a
/// date (`2026-11-01`, UTC midnight) or an age before `now` (`30m`, `24h`, `7d`, `2w`);
/// returns Unix seconds.
pub fn parse_time_bound(name: &'static str, text: &str, now: OffsetDateTime) -> Result<i64, IndexError> {
    let text = text.trim();
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(time.unix_timestamp());
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = time::Date::parse(text, &date_format) {
        return Ok(date.midnight().assume_utc().unix_timestamp());
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_seconds = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if unit_seconds > 0 => Ok(now.unix_timestamp() - n.saturating_mul(unit_seconds)),
        _ => Err(IndexError::Parameter {
            name,
            message: format!(
                "{text:?} is not a time: use RFC 3339, YYYY-MM-DD, or an age such as 30m, 24h, 7d, 2w"
            ),
        }),
    }
}

/// Returns the number of leaves of a plan.
fn leaves(plan: &Plan) -> usize {
    match plan {
        Plan::Sequence(_) | Plan::SloppyPhrase { .. } | Plan::Keyword { .. } | Plan::Missing(_) => 1,
        Plan::Near { left, right, .. } => left.len() + right.len(),
        Plan::And { must, must_not } => must.iter().chain(must_not).map(leaves).sum(),
        Plan::Or(any) => any.iter().map(leaves).sum(),
    }
}

/// Returns a passage of `text` of about [`PASSAGE_BYTES`] around its first highlight,
/// with the highlights that fall inside it, relative to the passage.
fn passage(text: &str, highlights: &[[usize; 2]]) -> Snippet {
    if text.len() <= PASSAGE_BYTES {
        return Snippet { text: text.to_string(), highlights: highlights.to_vec() };
    }
    let first = highlights.first().map_or(0, |h| h[0]);
    let mut start = first.saturating_sub(PASSAGE_BYTES / 4);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + PASSAGE_BYTES).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let (prefix, suffix) = (if start > 0 { "…" } else { "" }, if end < text.len() { "…" } else { "" });
    let shift = prefix.len() as isize - start as isize;
    let inside = highlights
        .iter()
        .filter(|h| h[0] >= start && h[1] <= end)
        .map(|h| [(h[0] as isize + shift) as usize, (h[1] as isize + shift) as usize])
        .collect();
    Snippet { text: format!("{prefix}{}{suffix}", &text[start..end]), highlights: inside }
}

/// Returns the buckets from the first to the last, with the empty ones between (at
/// most 10,000 buckets; a wider range keeps only the non-empty ones).
fn fill(mut counts: HashMap<i64, BucketCounts>, interval: Interval) -> Vec<Bucket> {
    let width = interval.seconds();
    let (Some(&first), Some(&last)) = (counts.keys().min(), counts.keys().max()) else { return Vec::new() };
    let keys: Vec<i64> = if (last - first) / width < 10_000 {
        (0..=(last - first) / width).map(|i| first + i * width).collect()
    } else {
        let mut keys: Vec<i64> = counts.keys().copied().collect();
        keys.sort_unstable();
        keys
    };
    keys.into_iter()
        .map(|start| {
            let counted = counts.remove(&start).unwrap_or_default();
            Bucket {
                start: OffsetDateTime::from_unix_timestamp(start)
                    .ok()
                    .and_then(|t| t.format(&Rfc3339).ok())
                    .unwrap_or_default(),
                count: counted.count,
                series: counted.series.into_iter().collect(),
            }
        })
        .collect()
}

/// Wraps a collector with a time limit that stops the scan of a segment when it
/// passes (Tantivy has none of its own); what was collected so far is kept.
struct Deadline<C> {
    inner: C,
    deadline: Instant,
    timed_out: Arc<AtomicBool>,
}

impl<C: Collector> Collector for Deadline<C> {
    type Fruit = C::Fruit;
    type Child = C::Child;

    fn for_segment(&self, ord: u32, reader: &SegmentReader) -> tantivy::Result<C::Child> {
        self.inner.for_segment(ord, reader)
    }

    fn requires_scoring(&self) -> bool {
        self.inner.requires_scoring()
    }

    fn merge_fruits(&self, fruits: Vec<<C::Child as SegmentCollector>::Fruit>) -> tantivy::Result<C::Fruit> {
        self.inner.merge_fruits(fruits)
    }

    fn collect_segment(
        &self,
        weight: &dyn Weight,
        ord: u32,
        reader: &SegmentReader,
    ) -> tantivy::Result<<C::Child as SegmentCollector>::Fruit> {
        let mut child = self.for_segment(ord, reader)?;
        if Instant::now() >= self.deadline {
            self.timed_out.store(true, Ordering::Relaxed);
            return Ok(child.harvest());
        }
        let alive = reader.alive_bitset();
        let scoring = self.requires_scoring();
        let mut scorer = weight.scorer(reader, 1.0)?;
        let mut doc = scorer.doc();
        let mut seen = 0u32;
        while doc != TERMINATED {
            if alive.is_none_or(|alive| alive.is_alive(doc)) {
                child.collect(doc, if scoring { scorer.score() } else { 0.0 });
            }
            seen = seen.wrapping_add(1);
            // Reading the clock costs; every 4,096 documents is often enough.
            if seen.is_multiple_of(4096) && Instant::now() >= self.deadline {
                self.timed_out.store(true, Ordering::Relaxed);
                break;
            }
            doc = scorer.advance();
        }
        Ok(child.harvest())
    }
}

/// Counts the values of facets among the matching documents; a document without a
/// value counts under the facet's missing value, when it has one.
struct FacetCollector {
    facets: Vec<String>,
}

/// A keyword column of a segment, with its values counted by term ordinal.
struct CountedColumn {
    column: Option<StrColumn>,
    counts: Vec<u64>,
    /// Documents without a value.
    missing: u64,
}

impl CountedColumn {
    fn open(reader: &SegmentReader, field: &str) -> tantivy::Result<CountedColumn> {
        let column = reader.fast_fields().str(field)?;
        let terms = column.as_ref().map_or(0, |c| c.num_terms());
        Ok(CountedColumn { column, counts: vec![0; terms], missing: 0 })
    }

    fn count(&mut self, doc: DocId) {
        let mut any = false;
        if let Some(column) = &self.column {
            for ord in column.term_ords(doc) {
                self.counts[ord as usize] += 1;
                any = true;
            }
        }
        if !any {
            self.missing += 1;
        }
    }

    /// Returns the counts by value, the documents without one under `missing` (when
    /// given).
    fn harvest(self, missing: Option<&str>) -> HashMap<String, u64> {
        let mut values = HashMap::new();
        if let Some(column) = &self.column {
            let mut value = String::new();
            for (ord, count) in self.counts.into_iter().enumerate().filter(|(_, c)| *c > 0) {
                value.clear();
                if column.ord_to_str(ord as u64, &mut value).unwrap_or(false) {
                    values.insert(value.clone(), count);
                }
            }
        }
        if let Some(missing) = missing.filter(|_| self.missing > 0) {
            *values.entry(missing.to_string()).or_default() += self.missing;
        }
        values
    }
}

struct FacetSegment {
    columns: Vec<(String, CountedColumn)>,
}

impl Collector for FacetCollector {
    type Fruit = BTreeMap<String, Vec<FacetCount>>;
    type Child = FacetSegment;

    fn for_segment(&self, _ord: u32, reader: &SegmentReader) -> tantivy::Result<FacetSegment> {
        let mut columns = Vec::with_capacity(self.facets.len());
        for facet in &self.facets {
            columns.push((facet.clone(), CountedColumn::open(reader, facet_field(facet))?));
        }
        Ok(FacetSegment { columns })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(
        &self,
        fruits: Vec<HashMap<String, HashMap<String, u64>>>,
    ) -> tantivy::Result<Self::Fruit> {
        let mut merged: BTreeMap<String, HashMap<String, u64>> = BTreeMap::new();
        for fruit in fruits {
            for (facet, counts) in fruit {
                let into = merged.entry(facet).or_default();
                for (value, count) in counts {
                    *into.entry(value).or_default() += count;
                }
            }
        }
        for facet in &self.facets {
            merged.entry(facet.clone()).or_default();
        }
        Ok(merged
            .into_iter()
            .map(|(facet, counts)| {
                let mut counts: Vec<FacetCount> =
                    counts.into_iter().map(|(value, count)| FacetCount { value, count }).collect();
                counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
                counts.truncate(100);
                (facet, counts)
            })
            .collect())
    }
}

impl SegmentCollector for FacetSegment {
    type Fruit = HashMap<String, HashMap<String, u64>>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        for (_, column) in &mut self.columns {
            column.count(doc);
        }
    }

    fn harvest(self) -> Self::Fruit {
        self.columns
            .into_iter()
            .map(|(facet, column)| {
                let missing = missing_value(&facet);
                (facet, column.harvest(missing))
            })
            .collect()
    }
}

/// The count of one histogram bucket and, with a split, its counts per series.
#[derive(Debug, Default)]
struct BucketCounts {
    count: u64,
    series: HashMap<String, u64>,
}

/// Counts matching documents per time bucket of the `at` fast field, and per series
/// of a split.
struct HistogramCollector {
    interval: Option<Interval>,
    split: Option<Split>,
}

struct HistogramSegment {
    column: Option<(tantivy::columnar::Column<tantivy::DateTime>, i64)>,
    /// The split's column (`None` inside when the segment has no value of it).
    split: Option<Option<StrColumn>>,
    counts: HashMap<i64, u64>,
    /// Per bucket and term ordinal of the split column (`None`: no value).
    series: HashMap<(i64, Option<u64>), u64>,
}

impl Collector for HistogramCollector {
    type Fruit = HashMap<i64, BucketCounts>;
    type Child = HistogramSegment;

    fn for_segment(&self, _ord: u32, reader: &SegmentReader) -> tantivy::Result<HistogramSegment> {
        let column = match self.interval {
            Some(interval) => Some((reader.fast_fields().date(AT)?, interval.seconds())),
            None => None,
        };
        let split = self.split.map(|split| reader.fast_fields().str(split.field())).transpose()?;
        Ok(HistogramSegment { column, split, counts: HashMap::new(), series: HashMap::new() })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(
        &self,
        fruits: Vec<HashMap<i64, BucketCounts>>,
    ) -> tantivy::Result<HashMap<i64, BucketCounts>> {
        let mut merged: HashMap<i64, BucketCounts> = HashMap::new();
        for fruit in fruits {
            for (bucket, counts) in fruit {
                let into = merged.entry(bucket).or_default();
                into.count += counts.count;
                for (series, count) in counts.series {
                    *into.series.entry(series).or_default() += count;
                }
            }
        }
        Ok(merged)
    }
}

impl SegmentCollector for HistogramSegment {
    type Fruit = HashMap<i64, BucketCounts>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let Some((column, width)) = &self.column else { return };
        let Some(at) = column.first(doc) else { return };
        let bucket = at.into_timestamp_secs().div_euclid(*width) * width;
        *self.counts.entry(bucket).or_default() += 1;
        if let Some(split) = &self.split {
            let mut any = false;
            for ord in split.iter().flat_map(|column| column.term_ords(doc)) {
                *self.series.entry((bucket, Some(ord))).or_default() += 1;
                any = true;
            }
            if !any {
                *self.series.entry((bucket, None)).or_default() += 1;
            }
        }
    }

    fn harvest(self) -> HashMap<i64, BucketCounts> {
        let mut buckets: HashMap<i64, BucketCounts> = self
            .counts
            .into_iter()
            .map(|(bucket, count)| (bucket, BucketCounts { count, series: HashMap::new() }))
            .collect();
        let column = self.split.flatten();
        let mut value = String::new();
        for ((bucket, ord), count) in self.series {
            value.clear();
            let named = match (ord, &column) {
                (Some(ord), Some(column)) => column.ord_to_str(ord, &mut value).unwrap_or(false),
                _ => false,
            };
            let series = if named { value.clone() } else { NO_VALUE_SERIES.to_string() };
            *buckets.entry(bucket).or_default().series.entry(series).or_default() += count;
        }
        buckets
    }
}
