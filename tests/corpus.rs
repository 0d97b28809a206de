//! Real mentions and generated rule packs for tests and benchmarks.
//!
//! The text comes from `../shared/data/text` (tweets, product reviews, editorials,
//! news headlines; see its SOURCES.md), read at test time and never copied into the
//! repository. Rules are generated from the same text's vocabulary so that they match
//! as real brand rules do: some mentions, not all, not none.

#![allow(dead_code)] // Each including target uses part of this module.

use std::collections::HashMap;
use std::path::PathBuf;

use cull_model::analyzer::{analyze, Form, Mode};
use cull_model::{Channel, Mention};
use cull_rules::tantivy_query::MentionSchema;
use tantivy::Index;

/// Returns the directory of the shared test data.
pub fn data_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("../shared/data")
}

fn decode_entities(text: &str) -> String {
    text.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}

/// Reads a VADER ground-truth file: `id<TAB>score<TAB>text` lines.
pub fn vader(file: &str, channel: Channel, limit: usize) -> Vec<Mention> {
    let path = data_dir().join("text/vader").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|line| line.splitn(3, '\t').nth(2))
        .take(limit)
        .enumerate()
        .map(|(i, body)| {
            let mut m = Mention::new(format!("{file}-{i}"), decode_entities(body.trim()));
            m.channel = Some(channel);
            m
        })
        .collect()
}

/// Reads the HuffPost news category sample: headline as title, description as text.
pub fn news_category(limit: usize) -> Vec<Mention> {
    let path = data_dir().join("text/news_category_v3_sample.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .take(limit)
        .enumerate()
        .map(|(i, line)| {
            let row: serde_json::Value = serde_json::from_str(line).expect("news sample is JSON lines");
            let field = |name: &str| row[name].as_str().unwrap_or("").to_string();
            let mut m = Mention::new(format!("news-{i}"), field("short_description"));
            m.title = Some(field("headline"));
            m.url = Some(field("link"));
            m.author = Some(field("authors")).filter(|a| !a.is_empty());
            m.channel = Some(Channel::News);
            m
        })
        .collect()
}

/// Reads the UCI news aggregator sample: headlines with real URLs and publishers.
pub fn uci_headlines(limit: usize) -> Vec<Mention> {
    let path = data_dir().join("text/uci_news_aggregator_sample.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    reader
        .records()
        .filter_map(Result::ok)
        .take(limit)
        .enumerate()
        .map(|(i, row)| {
            let mut m = Mention::new(format!("uci-{i}"), row.get(1).unwrap_or("").to_string());
            m.url = row.get(2).map(str::to_string);
            m.source = row.get(3).map(str::to_string);
            m.channel = Some(Channel::News);
            m
        })
        .collect()
}

/// Returns up to `per_source` mentions from each of five real corpora, with languages
/// and channels varied (and sometimes absent) so that rule filters are exercised.
pub fn real_mentions(per_source: usize) -> Vec<Mention> {
    let mut mentions = vader("tweets_GroundTruth.txt", Channel::Twitter, per_source);
    mentions.extend(vader("amazonReviewSnippets_GroundTruth.txt", Channel::Review, per_source));
    mentions.extend(vader("nytEditorialSnippets_GroundTruth.txt", Channel::News, per_source));
    mentions.extend(news_category(per_source));
    mentions.extend(uci_headlines(per_source));
    for (i, m) in mentions.iter_mut().enumerate() {
        m.lang = match i % 11 {
            0 => None,
            5 => Some("fr".to_string()),
            _ => Some("en".to_string()),
        };
        if i % 13 == 0 {
            m.channel = None;
        }
    }
    mentions
}

/// A deterministic pseudo-random sequence (xorshift), so that generated packs are the
/// same on every machine and a failure can be reproduced.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Words, word pairs, hashtags and hosts of a corpus, by document frequency.
pub struct Vocabulary {
    /// Anchor words: what a brand rule is built on.
    pub words: Vec<String>,
    /// Common words: the context a rule requires or excludes around its anchor.
    pub context: Vec<String>,
    pub bigrams: Vec<(String, String)>,
    pub hashtags: Vec<String>,
    pub hosts: Vec<String>,
    pub authors: Vec<String>,
}

impl Vocabulary {
    /// Collects the vocabulary: anchor words are those after the `skip_top` most
    /// frequent (a high `skip_top` gives the rare names brand rules are built on),
    /// context words are common ones; words shorter than 3 characters or numeric are
    /// left out.
    pub fn of(mentions: &[Mention], skip_top: usize, size: usize) -> Vocabulary {
        let mut words: HashMap<String, usize> = HashMap::new();
        let mut bigrams: HashMap<(String, String), usize> = HashMap::new();
        let mut hashtags: HashMap<String, usize> = HashMap::new();
        let mut authors: HashMap<String, usize> = HashMap::new();
        let mut hosts: HashMap<String, usize> = HashMap::new();
        for m in mentions {
            for text in [m.title.as_deref(), Some(m.text.as_str())].into_iter().flatten() {
                let tokens = analyze(text, Form::Folded, Mode::Query);
                for pair in tokens.windows(2) {
                    if pair[1].position == pair[0].position + 1
                        && !pair[0].term.starts_with('#')
                        && !pair[1].term.starts_with('#')
                    {
                        *bigrams.entry((pair[0].term.clone(), pair[1].term.clone())).or_default() += 1;
                    }
                }
                for token in tokens {
                    let target = if token.term.starts_with('#') { &mut hashtags } else { &mut words };
                    *target.entry(token.term).or_default() += 1;
                }
            }
            if let Some(host) = m.host() {
                *hosts.entry(host.trim_start_matches("www.").to_string()).or_default() += 1;
            }
            for token in m.author.iter().flat_map(|a| analyze(a, Form::Folded, Mode::Query)) {
                *authors.entry(token.term).or_default() += 1;
            }
        }
        let ranked = |counts: HashMap<String, usize>, skip: usize, size: usize| {
            let mut all: Vec<(String, usize)> = counts
                .into_iter()
                .filter(|(w, _)| w.chars().count() >= 3 && !w.chars().all(|c| c.is_ascii_digit()))
                .filter(|(w, _)| w.chars().all(|c| c.is_alphanumeric() || matches!(c, '#' | '.' | '-')))
                .collect();
            all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            all.into_iter().skip(skip).take(size).map(|(w, _)| w).collect::<Vec<_>>()
        };
        let words: HashMap<String, usize> =
            words.into_iter().filter(|(w, _)| w.chars().all(char::is_alphanumeric)).collect();
        let common: std::collections::HashSet<String> =
            ranked(words.clone(), 0, skip_top).into_iter().collect();
        let mut pairs: Vec<((String, String), usize)> = bigrams
            .into_iter()
            .filter(|((a, b), n)| {
                *n >= 2 && plain(a) && plain(b) && !(common.contains(a) && common.contains(b))
            })
            .collect();
        pairs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Vocabulary {
            context: ranked(words.clone(), 10, 1000),
            words: ranked(words, skip_top, size),
            bigrams: pairs.into_iter().take(size).map(|(p, _)| p).collect(),
            hashtags: ranked(hashtags, 0, 200),
            hosts: ranked(hosts, 0, 200),
            authors: ranked(authors, 0, 200),
        }
    }
}

fn plain(word: &str) -> bool {
    word.len() >= 3 && word.chars().all(char::is_alphanumeric)
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Returns the query of the `i`-th generated rule, and its `exclude`, `channels` and
/// `langs` lines when it has them. Every operator of the language appears.
pub fn generated_rule(v: &Vocabulary, rng: &mut Rng, i: usize) -> String {
    let w = |rng: &mut Rng| rng.pick(&v.words).clone();
    let c = |rng: &mut Rng| rng.pick(&v.context).clone();
    let b = |rng: &mut Rng| {
        let (x, y) = rng.pick(&v.bigrams);
        format!("{x} {y}")
    };
    let (query, extra) = match i % 16 {
        0 => (w(rng), String::new()),
        1 => (format!("\"{}\"", b(rng)), String::new()),
        2 => (format!("{} {}", w(rng), c(rng)), String::new()),
        3 => (format!("{} OR {} OR \"{}\"", w(rng), w(rng), b(rng)), String::new()),
        4 => (format!("{} -{}", w(rng), c(rng)), String::new()),
        5 => (format!("{} NEAR/{} {}", w(rng), rng.below(5), c(rng)), String::new()),
        6 => (format!("({} OR {}) ONEAR/{} \"{}\"", w(rng), w(rng), rng.below(4), b(rng)), String::new()),
        7 => {
            let (x, y) = rng.pick(&v.bigrams).clone();
            let phrase = if rng.below(2) == 0 { format!("{y} {x}") } else { format!("{x} {y}") };
            (format!("\"{phrase}\"~{}", 1 + rng.below(3)), String::new())
        }
        8 => {
            let word = w(rng);
            let stem: String = word.chars().take(word.chars().count().saturating_sub(2).max(3)).collect();
            (format!("{stem}* {}", c(rng)), String::new())
        }
        9 => (format!("{{{}}} OR {{\"{}\"}}", capitalized(&w(rng)), capitalized(&b(rng))), String::new()),
        10 => (format!("title:{} OR text:\"{}\"", w(rng), b(rng)), String::new()),
        11 => (
            w(rng),
            format!(
                "exclude = '{} OR \"{}\"'\nchannels = [\"news\", \"twitter\"]\nlangs = [\"en\"]\n",
                c(rng),
                b(rng)
            ),
        ),
        12 => (format!("site:{} {}", rng.pick(&v.hosts), w(rng)), String::new()),
        13 => (format!("{} OR {}", rng.pick(&v.hashtags), w(rng)), String::new()),
        14 => (format!("author:{} OR ({} NEAR/2 {})", rng.pick(&v.authors), w(rng), c(rng)), String::new()),
        _ => (format!("({} OR \"{}\") -({} OR {})", w(rng), b(rng), c(rng), c(rng)), String::new()),
    };
    format!("[[rule]]\nid = \"gen-{i}\"\nquery = '{query}'\n{extra}\n")
}

/// Returns a rule pack of `count` generated rules as TOML.
pub fn generated_pack(v: &Vocabulary, count: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    (0..count).map(|i| generated_rule(v, &mut rng, i)).collect()
}

/// Returns rules whose operators sit on their boundaries in real text: proximity and
/// slop between the most common words, which occur near each other at every distance
/// in thousands of mentions, so an off-by-one shows.
pub fn boundary_pack(v: &Vocabulary, count: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let common = &v.context[..40.min(v.context.len())];
    (0..count)
        .map(|i| {
            let (a, b, k) = (rng.pick(common).clone(), rng.pick(common).clone(), rng.below(6));
            let query = match i % 4 {
                0 => format!("{a} NEAR/{k} {b}"),
                1 => format!("{a} ONEAR/{k} {b}"),
                2 => format!("\"{a} {b}\"~{}", k + 1),
                _ => {
                    let (x, y) = rng.pick(&v.bigrams);
                    format!("({a} OR {b}) NEAR/{k} \"{x} {y}\"")
                }
            };
            format!("[[rule]]\nid = \"edge-{i}\"\nquery = '{query}'\n\n")
        })
        .collect()
}

/// Builds an in-RAM Tantivy index of `mentions` with the shared schema and analyzer.
pub fn index_of(mentions: &[Mention]) -> (Index, MentionSchema) {
    let schema = MentionSchema::new();
    let index = Index::create_in_ram(schema.schema().clone());
    schema.register_tokenizers(&index);
    let mut writer = index.writer_with_num_threads(1, 50_000_000).expect("index writer");
    for mention in mentions {
        writer.add_document(schema.document(mention)).expect("add document");
    }
    writer.commit().expect("commit");
    (index, schema)
}

/// The two rule workloads of the peer benchmark, both in conjunctive normal form
/// (every clause a word or an OR of words), the rules a term percolator can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// 1–3 AND'ed clauses, each a word or an OR of 2–4 words of the mid- and
    /// low-frequency vocabulary: many mentions match many rules.
    Dense,
    /// Brand monitoring: one rare word, half the time with a context clause (an OR of
    /// 2–3 words); most mentions match nothing.
    Sparse,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Dense => "dense",
            Workload::Sparse => "sparse",
        }
    }
}

/// A rule in conjunctive normal form: it matches when every clause has one of its
/// words in the mention.
pub type Cnf = Vec<Vec<String>>;

/// Returns `count` rules of `workload` over `v`'s words (ranked by document
/// frequency: `v.words` skips the most common ones).
pub fn cnf_rules(v: &Vocabulary, workload: Workload, count: usize, seed: u64) -> Vec<Cnf> {
    let mut rng = Rng::new(seed);
    let rare_from = v.words.len() / 6;
    (0..count)
        .map(|_| {
            let clause = |rng: &mut Rng, words: &[String], max_alternatives: usize| -> Vec<String> {
                let alternatives = if rng.below(2) == 0 { 1 } else { 2 + rng.below(max_alternatives - 1) };
                let mut clause: Vec<String> = (0..alternatives).map(|_| rng.pick(words).clone()).collect();
                clause.sort();
                clause.dedup();
                clause
            };
            match workload {
                Workload::Dense => {
                    let clauses = 1 + rng.below(3);
                    (0..clauses).map(|_| clause(&mut rng, &v.words, 4)).collect()
                }
                Workload::Sparse => {
                    let mut rule = vec![vec![rng.pick(&v.words[rare_from..]).clone()]];
                    if rng.below(2) == 0 {
                        rule.push(clause(&mut rng, &v.words, 3));
                    }
                    rule
                }
            }
        })
        .collect()
}

/// Writes a CNF rule as a cull query: `a (b OR c)`.
pub fn cnf_query(rule: &Cnf) -> String {
    let clauses: Vec<String> = rule
        .iter()
        .map(|clause| match clause.as_slice() {
            [word] => word.clone(),
            words => format!("({})", words.join(" OR ")),
        })
        .collect();
    clauses.join(" ")
}
