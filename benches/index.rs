//! The analyst index (`cull-index`) against DESIGN.md's targets ("index: >= 10k
//! mentions/s per core; search p50 < 50 ms over 1M mentions"), each figure with a
//! baseline measured in the same run:
//!
//! * indexing: N real mentions (with their verdicts by the example rules in `rules/`)
//!   through `Indexer::add` + `commit` with one indexing thread, against the same
//!   mentions into a plain Tantivy index with one `TEXT` field (title + text, Tantivy's
//!   default tokenizer) and one thread: the ratio is what cull's schema costs (two
//!   spellings per field, positions, keyword fast fields, dates, the stored record,
//!   the upsert by id, the VADER sentiment of each mention);
//! * search: an index of 1M mentions built from the real corpora (their texts repeated
//!   with distinct ids and dates spread over 90 days), then a fixed mix of queries as
//!   the console asks them (20 hits sorted by time, facets rule/verdict/channel, a day
//!   histogram), against the same compiled queries under Tantivy's `Count` alone: the
//!   ratio is what an analyst gets on top of matching.
//!
//! Run with `cargo bench -p cull --bench index`. Environment:
//! `CULL_BENCH_INDEX_MENTIONS` (default 200,000), `CULL_BENCH_SEARCH_MENTIONS`
//! (default 1,000,000), `CULL_BENCH_SEARCH_RUNS` (timed runs per query, default 100),
//! `CULL_BENCH_INDEX_ROUNDS` (indexing rounds of each kind, best kept, default 2).

#[path = "../tests/corpus.rs"]
mod corpus;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cull_index::{IndexSchema, Indexer, Interval, Limits, SearchRequest, Searcher, Sort};
use cull_match::RuleSet;
use cull_model::Verdict;
use cull_rules::query::{compile, parse};
use tantivy::collector::Count;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::schema::{Schema, TEXT};
use tantivy::{doc, Index, IndexWriter, Term};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use corpus::Rng;

/// Indexing buffers per indexing thread, for cull and for the baseline alike.
const BUDGET_PER_THREAD: usize = 100_000_000;
/// Mentions are dated within the 90 days before this time (2026-04-01T00:00:00Z).
const END: i64 = 1_775_001_600;
const DAYS: usize = 90;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value.replace(['_', ','], "").parse().unwrap_or_else(|_| panic!("{name}: a number")),
        Err(_) => default,
    }
}

/// Every real mention of the shared corpora with its verdict by the example rules.
fn base_verdicts() -> Vec<Verdict> {
    let loaded = cull_rules::load_dir(&repo().join("rules"));
    assert!(loaded.errors.is_empty(), "rules/: {}", loaded.errors[0]);
    let set = RuleSet::new(loaded.rules).expect("the example rules");
    corpus::real_mentions(usize::MAX)
        .into_iter()
        .map(|m| Verdict { mention: Some(m.clone()), ..set.verdict(&m) })
        .collect()
}

/// The `i`-th mention of a run: the real mention `i mod base` (text, title, channel,
/// lang, URL and verdict unchanged) with a distinct id and a date within the 90 days.
fn copy(base: &[Verdict], i: usize, rng: &mut Rng) -> Verdict {
    let original = &base[i % base.len()];
    let mut mention = original.mention.clone().expect("base verdicts carry their mention");
    mention.id = format!("bench-{i}");
    let at = END - rng.below(DAYS * 86_400) as i64 - 1;
    mention.published_at =
        Some(OffsetDateTime::from_unix_timestamp(at).expect("a time").format(&Rfc3339).expect("RFC 3339"));
    Verdict {
        schema: original.schema.clone(),
        mention_id: mention.id.clone(),
        client: mention.client.clone(),
        ruleset_version: original.ruleset_version.clone(),
        matched: original.matched.clone(),
        culled: original.culled.clone(),
        mention: Some(mention),
    }
}

/// CPU seconds this process has used (all threads, Tantivy's merge threads included),
/// from `/proc/self/stat`; `None` off Linux.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux platform Rust supports.
    Some(ticks as f64 / 100.0)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("an index directory")
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Bytes per kind of index file (`store`, `idx`, `pos`, `term`, `fast`, ...), largest first.
fn bytes_by_kind(dir: &Path) -> Vec<(String, u64)> {
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    for entry in std::fs::read_dir(dir).expect("an index directory").filter_map(Result::ok) {
        let path = entry.path();
        let kind = path.extension().map_or("other".to_string(), |e| e.to_string_lossy().into_owned());
        *kinds.entry(kind).or_default() += entry.metadata().map_or(0, |m| m.len());
    }
    let mut kinds: Vec<(String, u64)> = kinds.into_iter().collect();
    kinds.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    kinds
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// One indexing run: wall time, CPU time and the size of the index it left.
struct Run {
    wall: Duration,
    cpu: Option<f64>,
    bytes: u64,
}

/// Runs `work` (add everything, commit) and measures it.
fn measured(dir: &Path, work: impl FnOnce()) -> Run {
    let cpu = cpu_seconds();
    let started = Instant::now();
    work();
    let wall = started.elapsed();
    let cpu = cpu.zip(cpu_seconds()).map(|(before, after)| after - before);
    Run { wall, cpu, bytes: dir_bytes(dir) }
}

fn index_with_cull(verdicts: &[Verdict]) -> Run {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut indexer = Indexer::open(dir.path(), 1, BUDGET_PER_THREAD).expect("an indexer");
    let run = measured(dir.path(), || {
        for verdict in verdicts {
            indexer.add(verdict, None).expect("add");
        }
        indexer.commit().expect("commit");
    });
    drop(indexer);
    Run { bytes: dir_bytes(dir.path()), ..run }
}

fn index_with_plain_tantivy(verdicts: &[Verdict]) -> Run {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut builder = Schema::builder();
    let body = builder.add_text_field("body", TEXT);
    let index = Index::create_in_dir(dir.path(), builder.build()).expect("an index");
    let mut writer: IndexWriter = index.writer_with_num_threads(1, BUDGET_PER_THREAD).expect("a writer");
    let run = measured(dir.path(), || {
        for verdict in verdicts {
            let mention = verdict.mention.as_ref().expect("a mention");
            let text = match &mention.title {
                Some(title) => format!("{title}\n{}", mention.text),
                None => mention.text.clone(),
            };
            writer.add_document(doc!(body => text)).expect("add");
        }
        writer.commit().expect("commit");
    });
    drop(writer);
    Run { bytes: dir_bytes(dir.path()), ..run }
}

fn bench_indexing(base: &[Verdict]) {
    let n = env_usize("CULL_BENCH_INDEX_MENTIONS", 200_000);
    let rounds = env_usize("CULL_BENCH_INDEX_ROUNDS", 2).max(1);
    let mut rng = Rng::new(42);
    let verdicts: Vec<Verdict> = (0..n).map(|i| copy(base, i, &mut rng)).collect();
    let bytes: usize = verdicts
        .iter()
        .map(|v| v.mention.as_ref().map_or(0, |m| m.text.len() + m.title.as_ref().map_or(0, String::len)))
        .sum();
    eprintln!("indexing: {n} mentions, {rounds} rounds of each kind, alternating");
    let (mut plain, mut cull) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        plain.push(index_with_plain_tantivy(&verdicts));
        cull.push(index_with_cull(&verdicts));
        eprintln!(
            "  round {}: plain Tantivy {:.1} s, cull-index {:.1} s",
            round + 1,
            plain[round].wall.as_secs_f64(),
            cull[round].wall.as_secs_f64()
        );
    }
    let best = |runs: Vec<Run>| runs.into_iter().min_by_key(|r| r.wall).expect("at least one round");
    let (plain, cull) = (best(plain), best(cull));
    let rate = |run: &Run| n as f64 / run.wall.as_secs_f64();
    let per_cpu = |run: &Run| run.cpu.map(|cpu| n as f64 / cpu);
    let cell = |value: Option<f64>, digits: usize| value.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    println!(
        "\n## Indexing: {n} real mentions, one indexing thread, {} MB of buffers",
        BUDGET_PER_THREAD / 1_000_000
    );
    println!();
    println!(
        "{} distinct real texts (tweets, reviews, editorials, headlines) repeated to {n}, each with a distinct id \
         and a date within 90 days; {} bytes of title + text on average. Time is `add` of every mention + `commit` \
         (merges Tantivy starts in the background run on the other core and count in CPU s); best of {rounds} \
         alternating rounds.",
        base.len(),
        bytes / n.max(1),
    );
    println!();
    println!("| index | wall s | mentions/s (wall) | CPU s | mentions per CPU-second | size on disk | bytes/mention | mentions/s vs plain Tantivy |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, run) in [
        ("plain Tantivy: one TEXT field, default tokenizer (baseline)", &plain),
        ("cull-index: `Indexer::add` + `commit`", &cull),
    ] {
        println!(
            "| {name} | {:.1} | {:.0} | {} | {} | {} | {:.0} | {:.2} |",
            run.wall.as_secs_f64(),
            rate(run),
            cell(run.cpu, 1),
            cell(per_cpu(run), 0),
            megabytes(run.bytes),
            run.bytes as f64 / n as f64,
            rate(run) / rate(&plain),
        );
    }
    let per_core = per_cpu(&cull).unwrap_or(rate(&cull));
    println!();
    println!(
        "DESIGN target: index >= 10,000 mentions/s per core. cull-index: {:.0} mentions/s on one indexing thread, \
         {per_core:.0} per CPU-second: {}.",
        rate(&cull),
        if per_core >= 10_000.0 { "met" } else { "NOT met" }
    );
}

/// A query of the mix: a label, the query, and an optional `since` (Unix seconds).
struct Case {
    label: String,
    query: String,
    since: Option<i64>,
}

fn cases() -> Vec<Case> {
    let case =
        |label: &str, query: &str| Case { label: label.to_string(), query: query.to_string(), since: None };
    let mut cases = vec![
        case("frequent word (in about half the mentions)", "the"),
        case("frequent word", "trump"),
        case("rare word", "refund"),
        case("phrase", "\"white house\""),
        case("NEAR/3", "customer NEAR/3 service"),
        case("prefix", "conn*"),
        case("boolean with NOT", "(apple OR google OR microsoft) -(iphone OR android)"),
        Case {
            label: "frequent word, last 7 days".to_string(),
            query: "trump".to_string(),
            since: Some(END - 7 * 86_400),
        },
    ];
    let loaded = cull_rules::load_dir(&repo().join("rules"));
    for rule in loaded.rules {
        cases.push(case(&format!("rule `{}`", rule.rule.id), &rule.rule.query));
    }
    cases
}

/// The request the console makes for a query.
fn console_request(case: &Case) -> SearchRequest {
    SearchRequest {
        query: case.query.clone(),
        since: case.since,
        sort: Sort::Time,
        limit: 20,
        facets: vec!["rule".into(), "verdict".into(), "channel".into()],
        histogram: Some(Interval::Day),
        ..SearchRequest::default()
    }
}

/// The same query for Tantivy alone: the compiled plan (and the time range, when the
/// case has one), nothing else.
fn bare_query(schema: &IndexSchema, case: &Case) -> Box<dyn Query> {
    let node = parse(&case.query).expect("the query parses");
    let plan = compile(&node).expect("the query compiles");
    let matching = schema.mention.query(&plan);
    match case.since {
        None => matching,
        Some(since) => {
            let at = schema.schema().get_field("at").expect("the at field");
            let from = Term::from_field_date(at, tantivy::DateTime::from_timestamp_secs(since));
            let range = RangeQuery::new(std::ops::Bound::Included(from), std::ops::Bound::Unbounded);
            Box::new(BooleanQuery::new(vec![(Occur::Must, matching), (Occur::Must, Box::new(range))]))
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1e3
}

fn bench_search(base: &[Verdict]) {
    let n = env_usize("CULL_BENCH_SEARCH_MENTIONS", 1_000_000);
    let runs = env_usize("CULL_BENCH_SEARCH_RUNS", 100).max(1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    eprintln!("search: building {n} mentions with 2 threads in {}", dir.path().display());
    let mut indexer = Indexer::open(dir.path(), 2, 2 * BUDGET_PER_THREAD).expect("an indexer");
    let mut rng = Rng::new(7);
    let build = measured(dir.path(), || {
        for i in 0..n {
            indexer.add(&copy(base, i, &mut rng), None).expect("add");
        }
        indexer.commit().expect("commit");
    });
    drop(indexer);
    let schema = IndexSchema::new();
    let index = Index::open_in_dir(dir.path()).expect("the index");
    schema.mention.register_tokenizers(&index);
    let segments_built = index.searchable_segment_ids().expect("segments").len();
    // A running indexer's merges finish in the background; let them, as they would
    // have by the time an analyst searches (the log merge policy, not one segment).
    eprintln!("search: {segments_built} segments after the commit; letting merges finish");
    let settling = Instant::now();
    {
        let payload = index.load_metas().expect("metas").payload;
        let mut writer: IndexWriter = index.writer_with_num_threads(1, BUDGET_PER_THREAD).expect("a writer");
        let mut prepared = writer.prepare_commit().expect("prepare");
        if let Some(payload) = payload {
            prepared.set_payload(&payload);
        }
        prepared.commit().expect("commit");
        writer.wait_merging_threads().expect("merges");
    }
    let settled = settling.elapsed();
    let segments = index.searchable_segment_ids().expect("segments").len();
    let bytes = dir_bytes(dir.path());

    let searcher = Searcher::open(dir.path(), Limits::default()).expect("a searcher");
    searcher.reload().expect("reload");
    assert_eq!(searcher.len(), n as u64);
    let reader = index.reader().expect("a reader");
    reader.reload().expect("reload");
    let bare = reader.searcher();
    let cases = cases();
    let requests: Vec<SearchRequest> = cases.iter().map(console_request).collect();
    let queries: Vec<Box<dyn Query>> = cases.iter().map(|c| bare_query(&schema, c)).collect();
    let mut cull_times = vec![Vec::with_capacity(runs); cases.len()];
    let mut count_times = vec![Vec::with_capacity(runs); cases.len()];
    let mut hits = vec![0usize; cases.len()];
    let mut counted = vec![0usize; cases.len()];
    let mut timed_out = 0usize;
    eprintln!("search: {} queries, 1 warm-up round + {runs} timed rounds", cases.len());
    let searching = Instant::now();
    for round in 0..=runs {
        for (i, (request, query)) in requests.iter().zip(&queries).enumerate() {
            let started = Instant::now();
            let response = searcher.search(&cull_model::Scope::All, request).expect("search");
            let cull = started.elapsed();
            std::hint::black_box(&response);
            let started = Instant::now();
            let count = bare.search(query.as_ref(), &Count).expect("count");
            let bare_time = started.elapsed();
            hits[i] = response.total;
            counted[i] = count;
            timed_out += usize::from(response.timed_out);
            if round > 0 {
                cull_times[i].push(cull);
                count_times[i].push(bare_time);
            }
        }
    }
    let searching = searching.elapsed();

    println!("\n## Search over {n} mentions");
    println!();
    println!(
        "The index holds {} distinct real texts repeated to {n} (about {:.0} copies of each) with distinct ids and \
         dates spread over 90 days: term statistics, posting lists and facet counts are those of a corpus with heavy \
         repetition, not of {n} different mentions.",
        base.len(),
        n as f64 / base.len() as f64
    );
    println!();
    println!("| the index | |");
    println!("|---|---:|");
    println!("| build (2 indexing threads, `add` + `commit`) | {:.1} s |", build.wall.as_secs_f64());
    println!("| build rate | {:.0} mentions/s |", n as f64 / build.wall.as_secs_f64());
    if let Some(cpu) = build.cpu {
        println!("| build CPU | {cpu:.1} s ({:.0} mentions per CPU-second) |", n as f64 / cpu);
    }
    println!("| segments after the commit | {segments_built} |");
    println!("| merges pending after the commit, finished in | {:.1} s |", settled.as_secs_f64());
    println!("| segments searched | {segments} |");
    println!("| size on disk | {} ({:.0} bytes/mention) |", megabytes(bytes), bytes as f64 / n as f64);
    let kinds: Vec<String> = bytes_by_kind(dir.path())
        .into_iter()
        .filter(|(_, b)| *b >= bytes / 200)
        .map(|(kind, b)| format!("{kind} {}", megabytes(b)))
        .collect();
    println!(
        "| by file kind (store = stored records, idx/pos/term = postings, positions, terms) | {} |",
        kinds.join(", ")
    );
    println!();
    println!(
        "Each query as the console asks it (`limit: 20`, newest first, facets rule/verdict/channel, day histogram, \
         highlighted hits), one thread, warm cache, {runs} timed runs after one warm-up round, queries interleaved; \
         baseline: the same compiled query under Tantivy's `Count` alone (no sort, facets, histogram, stored \
         documents or snippets; query parsed beforehand). p99 of {runs} runs is nearly the slowest run."
    );
    println!();
    println!(
        "| query | | hits | cull p50 ms | cull p99 ms | Count p50 ms | Count p99 ms | cull / Count (p50) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let (mut all_cull, mut all_count) = (Vec::new(), Vec::new());
    for (i, case) in cases.iter().enumerate() {
        let (mut c, mut b) = (cull_times[i].clone(), count_times[i].clone());
        c.sort_unstable();
        b.sort_unstable();
        let hits_cell = if hits[i] == counted[i] {
            hits[i].to_string()
        } else {
            format!("{} (Count: {})", hits[i], counted[i])
        };
        let query = case.query.replace('|', "\\|");
        let query = if case.since.is_some() {
            format!("`{query}`, since 7 days before the end")
        } else {
            format!("`{query}`")
        };
        println!(
            "| {} | {query} | {hits_cell} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
            case.label,
            percentile(&c, 50.0),
            percentile(&c, 99.0),
            percentile(&b, 50.0),
            percentile(&b, 99.0),
            percentile(&c, 50.0) / percentile(&b, 50.0),
        );
        all_cull.extend(c);
        all_count.extend(b);
    }
    all_cull.sort_unstable();
    all_count.sort_unstable();
    println!(
        "| **all runs** ({} per column) | | | **{:.2}** | **{:.2}** | {:.2} | {:.2} | {:.1} |",
        all_cull.len(),
        percentile(&all_cull, 50.0),
        percentile(&all_cull, 99.0),
        percentile(&all_count, 50.0),
        percentile(&all_count, 99.0),
        percentile(&all_cull, 50.0) / percentile(&all_count, 50.0),
    );
    println!();
    if timed_out > 0 {
        println!(
            "WARNING: {timed_out} searches hit the {:?} time limit; their counts are partial.",
            Limits::default().timeout
        );
    }
    let p50 = percentile(&all_cull, 50.0);
    println!(
        "DESIGN target: search p50 < 50 ms over 1M mentions. cull-index: p50 {p50:.2} ms over {n} mentions: {}. \
         (Searching took {:.1} s.)",
        if n < 1_000_000 {
            "not comparable (fewer than 1M mentions)"
        } else if p50 < 50.0 {
            "met"
        } else {
            "NOT met"
        },
        searching.as_secs_f64()
    );
}

fn main() {
    let started = Instant::now();
    let base = base_verdicts();
    let matched = base.iter().filter(|v| !v.matched.is_empty()).count();
    let culled = base.iter().filter(|v| v.matched.is_empty() && !v.culled.is_empty()).count();
    eprintln!("{} real mentions; the example rules match {matched} and cull {culled}", base.len());
    println!("# cull-index benchmark");
    println!();
    println!(
        "{} real mentions from ../shared/data/text; the example rules in rules/ match {matched} and cull {culled} \
         of them (the `rule` and `verdict` facets count those).",
        base.len()
    );
    bench_indexing(&base);
    bench_search(&base);
    println!("\nWhole run: {:.0} s.", started.elapsed().as_secs_f64());
}
