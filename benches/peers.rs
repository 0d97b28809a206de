//! The matcher against its peers, each in a process of its own so that peak memory is
//! its own: cull, perq (a pure-Python percolator with rare-clause candidate selection)
//! and a Hyperscan literal scan of the same bytes for the same words (a ceiling, not
//! a matcher). The peers come from PyPI, installed by `scripts/bench-venv.sh` into
//! `target/bench-venv`; `benches/peers.py` runs them.
//!
//! Two workloads of rules that perq can express (conjunctions of words and ORs of
//! words, see [`corpus::cnf_rules`]): `dense`, where mentions match many rules, and
//! `sparse` brand monitoring, where most match none. The mentions are 25k real ones
//! (`../shared/data`), title and text joined, the same bytes for every peer.
//!
//! For each workload and rule count the table gives, per peer: mentions/s on one core,
//! peak RSS, build time (from rule files to a ready matcher), cull's rate on two
//! threads, the time a reload of the rules directory with one file changed takes to
//! swap the set in, as the running pipeline reloads (every file read and digested,
//! the changed one compiled; see [`RuleSet::reload`]), the longest pause a
//! concurrent matching thread saw meanwhile, and the agreement of cull's
//! answers with perq's: mismatches, and how many of them a difference of the two
//! tokenizers explains (perq splits on `\w+` after NFKC casefolding; cull keeps
//! "don't" whole and indexes "Slack's" as `slack` too).
//!
//! `cargo bench -p cull --bench peers`; `CULL_BENCH_RULES=1000,10000` and
//! `CULL_BENCH_WORKLOADS=dense` narrow the run, `CULL_BENCH_SECONDS` sets the time
//! each rate is measured over (default 5), and `CULL_BENCH_ROUNDS` (default 1) runs
//! the peers that many times, interleaved, and reports the median of each figure.

#[path = "../tests/corpus.rs"]
mod corpus;

/// The allocator of the `cull` binary, so that the matcher is measured as it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cull_match::{MatchScratch, Matcher, RuleSet};
use cull_model::analyzer::{for_each_token, Form, Mode};
use cull_model::{Mention, Scope};
use cull_rules::Memo;
use serde_json::{json, Value};

use corpus::{cnf_query, cnf_rules, real_mentions, Cnf, Vocabulary, Workload};

const RULE_COUNTS: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];
/// Rules per file of the generated pack, as an operator would split a large one.
const RULES_PER_FILE: usize = 10_000;
const MENTIONS_PER_CORPUS: usize = 5_000;
/// Set in the environment of the child process that runs cull, to the workload dir.
const CHILD: &str = "CULL_PEERS_CHILD";

fn main() {
    if let Ok(dir) = std::env::var(CHILD) {
        let report = run_cull(Path::new(&dir));
        println!("{report}");
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: f64 = env_or("CULL_BENCH_SECONDS", "5").parse().expect("CULL_BENCH_SECONDS: seconds");
    let counts: Vec<usize> = match std::env::var("CULL_BENCH_RULES") {
        Ok(list) => list.split(',').map(|n| n.trim().parse().expect("CULL_BENCH_RULES: numbers")).collect(),
        Err(_) => RULE_COUNTS.to_vec(),
    };
    let workloads: Vec<Workload> = env_or("CULL_BENCH_WORKLOADS", "dense,sparse")
        .split(',')
        .map(|name| match name.trim() {
            "dense" => Workload::Dense,
            "sparse" => Workload::Sparse,
            other => panic!("CULL_BENCH_WORKLOADS: unknown workload {other}"),
        })
        .collect();
    let rounds: usize = env_or("CULL_BENCH_ROUNDS", "1").parse().expect("CULL_BENCH_ROUNDS: a number");
    assert!(rounds > 0, "CULL_BENCH_ROUNDS: at least 1");
    let python = venv_python();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/peers");
    let mentions = joined_mentions();
    let vocabulary = Vocabulary::of(&mentions, 100, 30_000);
    std::fs::create_dir_all(&root).expect("target/peers");
    let mentions_path = root.join("mentions.jsonl");
    write_lines(&mentions_path, mentions.iter().map(|m| json!({"id": m.id, "text": m.text})));
    let cull_terms: Vec<HashSet<String>> = mentions.iter().map(|m| folded_terms(&m.text)).collect();
    eprintln!("{} mentions, {} words of vocabulary", mentions.len(), vocabulary.words.len());
    let mut rows = Vec::new();
    for &workload in &workloads {
        for &count in &counts {
            let dir = root.join(format!("{}-{count}", workload.name()));
            let rules = cnf_rules(&vocabulary, workload, count, 7);
            write_workload(&dir, &rules, &mentions_path);
            let (mut culls, mut perqs, mut hyperscans) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                culls.push(run_child(&dir, seconds));
                perqs.push(run_peer(&python, "perq", &dir, seconds));
                hyperscans.push(run_peer(&python, "hyperscan", &dir, seconds));
            }
            let (cull, perq, hyperscan) = (medians(&culls), medians(&perqs), medians(&hyperscans));
            let agreement = compare(&dir, &rules, &mentions, &cull_terms);
            eprintln!("{} {count}: cull {cull}\n  perq {perq}\n  hyperscan {hyperscan}", workload.name());
            rows.push((workload, count, cull, perq, hyperscan, agreement));
        }
    }
    print_tables(&rows);
}

/// Returns the report of several rounds of one peer: each number the median of its
/// rounds (of an even count, the upper one), anything else as the first round has it.
///
/// The rounds of all peers are interleaved, so that a stretch of noise on a shared
/// machine slows one round of each rather than every round of one.
fn medians(rounds: &[Value]) -> Value {
    let mut report = rounds[0].clone();
    for (key, value) in report.as_object_mut().expect("a report is an object") {
        let mut numbers: Vec<(f64, &Value)> = rounds
            .iter()
            .filter_map(|round| Some((round[key.as_str()].as_f64()?, &round[key.as_str()])))
            .collect();
        if numbers.len() == rounds.len() {
            numbers.sort_by(|a, b| a.0.total_cmp(&b.0));
            *value = numbers[numbers.len() / 2].1.clone();
        }
    }
    report
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Returns the python of `target/bench-venv`, creating it if needed.
fn venv_python() -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench-venv.sh");
    let output = Command::new("bash").arg(&script).output().expect("scripts/bench-venv.sh");
    assert!(output.status.success(), "bench-venv.sh: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("a path").trim().to_string()
}

/// Real mentions with their title and text joined: the same bytes for every peer.
fn joined_mentions() -> Vec<Mention> {
    real_mentions(MENTIONS_PER_CORPUS)
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let text = match &m.title {
                Some(title) => format!("{title}. {}", m.text),
                None => m.text.clone(),
            };
            Mention::new(format!("m{i}"), text)
        })
        .collect()
}

/// The distinct folded terms cull indexes for `text`.
fn folded_terms(text: &str) -> HashSet<String> {
    let mut terms = HashSet::new();
    for_each_token(text, Form::Folded, Mode::Index, |token| {
        terms.insert(token.term.to_string());
    });
    terms
}

fn write_lines(path: &Path, lines: impl Iterator<Item = Value>) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for line in lines {
        writeln!(out, "{line}").expect("write");
    }
    out.flush().expect("flush");
}

/// Writes the rules as cull rule files (`rules/NNNN.toml`) and as perq's JSON lines.
fn write_workload(dir: &Path, rules: &[Cnf], mentions: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("rules")).expect("workload dir");
    for (file, chunk) in rules.chunks(RULES_PER_FILE).enumerate() {
        let mut toml = String::new();
        for (i, rule) in chunk.iter().enumerate() {
            let id = file * RULES_PER_FILE + i;
            toml.push_str(&format!("[[rule]]\nid = \"r{id}\"\nquery = '{}'\n\n", cnf_query(rule)));
        }
        std::fs::write(dir.join(format!("rules/{file:04}.toml")), toml).expect("rule file");
    }
    write_lines(
        &dir.join("rules.jsonl"),
        rules.iter().enumerate().map(|(i, rule)| json!({"id": format!("r{i}"), "terms": rule})),
    );
    std::fs::copy(mentions, dir.join("mentions.jsonl")).expect("mentions");
}

fn run_child(dir: &Path, seconds: f64) -> Value {
    let output = Command::new(std::env::current_exe().expect("this bench"))
        .env(CHILD, dir)
        .env("CULL_BENCH_SECONDS", seconds.to_string())
        .output()
        .expect("the cull child");
    assert!(output.status.success(), "cull child: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the child's report")
}

fn run_peer(python: &str, peer: &str, dir: &Path, seconds: f64) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../benches/peers.py");
    let output = Command::new(python)
        .arg(script)
        .arg(peer)
        .arg("--rules")
        .arg(dir.join("rules.jsonl"))
        .arg("--mentions")
        .arg(dir.join("mentions.jsonl"))
        .arg("--out")
        .arg(dir.join(format!("{peer}.jsonl")))
        .arg("--seconds")
        .arg(seconds.to_string())
        .output()
        .expect("the peer");
    assert!(output.status.success(), "{peer}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the peer's report")
}

/// Reads `{"id", "matches"}` lines into sets of rule ids by mention id.
fn read_matches(path: &Path) -> HashMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(path).expect("matches");
    text.lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("a matches line");
            let ids = row["matches"].as_array().expect("matches").iter();
            (
                row["id"].as_str().expect("id").to_string(),
                ids.map(|v| v.as_str().unwrap().to_string()).collect(),
            )
        })
        .collect()
}

/// Agreement of cull and perq over every (rule, mention) pair.
#[derive(Debug, Default)]
struct Agreement {
    matches: u64,
    mismatches: u64,
    /// Mismatches where one of the rule's words is a term of the mention for one
    /// tokenizer and not the other.
    tokenization: u64,
    examples: Vec<String>,
}

fn compare(dir: &Path, rules: &[Cnf], mentions: &[Mention], cull_terms: &[HashSet<String>]) -> Agreement {
    let cull = read_matches(&dir.join("cull.jsonl"));
    let perq = read_matches(&dir.join("perq.jsonl"));
    let empty = BTreeSet::new();
    let mut agreement = Agreement::default();
    for (mention, terms) in mentions.iter().zip(cull_terms) {
        let ours = cull.get(&mention.id).unwrap_or(&empty);
        let theirs = perq.get(&mention.id).unwrap_or(&empty);
        agreement.matches += ours.len() as u64;
        let perq_terms = perq_tokens(&mention.text);
        for id in ours.symmetric_difference(theirs) {
            agreement.mismatches += 1;
            let rule = &rules[id[1..].parse::<usize>().expect("rule number")];
            let explained =
                rule.iter().flatten().any(|word| terms.contains(word) != perq_terms.contains(word.as_str()));
            if explained {
                agreement.tokenization += 1;
            } else if agreement.examples.len() < 5 {
                agreement.examples.push(format!(
                    "{id} `{}` on {}: {}",
                    cnf_query(rule),
                    mention.id,
                    mention.text
                ));
            }
        }
    }
    agreement
}

/// perq's tokens: NFKC, casefold, `\w+`. Only used to tell whether a word of a
/// disagreeing rule is seen differently; Unicode case folding beyond lowercase and
/// NFKC compatibility forms are approximated, which can only leave a mismatch
/// unexplained, never hide one.
fn perq_tokens(text: &str) -> HashSet<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || is_combining(c)))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn is_combining(c: char) -> bool {
    matches!(c, '\u{300}'..='\u{36F}')
}

/// The cull side, in a process of its own: build from the rule files, match on one
/// and on two threads, recompile one file under load, report peak memory.
fn run_cull(dir: &Path) -> Value {
    let seconds: f64 = env_or("CULL_BENCH_SECONDS", "5").parse().expect("seconds");
    let started = Instant::now();
    let (loaded, set) = RuleSet::load(&dir.join("rules"), |rule| rule.rule.enabled);
    assert!(loaded.errors.is_empty(), "{}", loaded.errors[0]);
    let set = set.expect("no errors").expect("rule set");
    let build = started.elapsed();
    let rss_after_build = status_kib("VmRSS");
    // As the pipeline does once the set is in use: the memo's claims are indexed in
    // the background, for the reload below.
    let indexing = {
        let memo = loaded.memo.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            memo.index_claims();
            started.elapsed()
        })
    };
    let rules = set.len();
    let text = std::fs::read_to_string(dir.join("mentions.jsonl")).expect("mentions");
    let mentions: Vec<Mention> = text
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("mention");
            Mention::new(row["id"].as_str().unwrap(), row["text"].as_str().unwrap())
        })
        .collect();
    let matcher = Matcher::new(set);
    // The first pass's answers are written as they come, a chunk at a time, so that
    // they do not count in the peak memory of the matcher.
    let mut matches = 0;
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("cull.jsonl")).expect("create"));
    for chunk in mentions.chunks(1000) {
        for verdict in matcher.verdicts(chunk) {
            matches += verdict.matched.len();
            let mut ids: Vec<&str> = verdict.matched.iter().map(|m| m.rule_id.as_str()).collect();
            ids.sort_unstable();
            writeln!(out, "{}", json!({"id": verdict.mention_id, "matches": ids})).expect("write");
        }
    }
    out.flush().expect("flush");
    let rate = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        let (started, mut passes) = (Instant::now(), 0usize);
        while passes == 0 || started.elapsed().as_secs_f64() < seconds {
            for chunk in mentions.chunks(1000) {
                std::hint::black_box(pool.install(|| matcher.verdicts(chunk)));
            }
            passes += 1;
        }
        (passes * mentions.len()) as f64 / started.elapsed().as_secs_f64()
    };
    let one = rate(1);
    let two = rate(2);
    let ids = ids_only_rate(&matcher.current(), &mentions, seconds);
    let claims_indexed = indexing.join().expect("indexing thread");
    let (recompile, longest_pause) = recompile_one_file(dir, &loaded.memo, &matcher, &mentions[..200]);
    json!({
        "peer": "cull",
        "rules": rules,
        "mentions": mentions.len(),
        "build_seconds": build.as_secs_f64(),
        "claims_index_seconds": claims_indexed.as_secs_f64(),
        "mentions_per_second": one,
        "two_threads_mentions_per_second": two,
        "ids_only_mentions_per_second": ids,
        "recompile_seconds": recompile.as_secs_f64(),
        "longest_pause_seconds": longest_pause.as_secs_f64(),
        "rss_after_build_bytes": rss_after_build * 1024,
        "peak_rss_bytes": status_kib("VmHWM") * 1024,
        "matches": matches,
    })
}

/// Returns the mentions/s of matching alone on this thread, answering with the ids of
/// the matched rules as perq does, without building verdicts (no spans kept, nothing
/// allocated per mention): the hot path a verdict's strings are built on.
fn ids_only_rate(set: &RuleSet, mentions: &[Mention], seconds: f64) -> f64 {
    let mut scratch = MatchScratch::default();
    let mut ids: Vec<&str> = Vec::new();
    let (started, mut passes) = (Instant::now(), 0usize);
    while passes == 0 || started.elapsed().as_secs_f64() < seconds {
        for mention in mentions {
            set.match_into(mention, &mut scratch);
            ids.clear();
            for hit in scratch.hits() {
                let partition = set.hit_partition(mention.client.as_deref(), hit);
                ids.push(partition.rule_id(hit.index as usize));
            }
            std::hint::black_box(ids.len());
        }
        passes += 1;
    }
    (passes * mentions.len()) as f64 / started.elapsed().as_secs_f64()
}

/// Changes one rule of the first rule file and reloads the rules directory as the
/// running pipeline does, from what the first load remembered (`memo`), while another
/// thread matches batches; returns the time from the start of the reload to the swap,
/// and the longest gap between two batches of the other thread.
fn recompile_one_file(dir: &Path, memo: &Memo, matcher: &Matcher, batch: &[Mention]) -> (Duration, Duration) {
    let path = dir.join("rules/0000.toml");
    let source = std::fs::read_to_string(&path).expect("rule file");
    let changed = source.replacen("query = '", "query = 'recompiled OR ", 1);
    std::fs::write(&path, &changed).expect("rule file");
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let matching = scope.spawn(|| {
            let mut longest = Duration::ZERO;
            let mut last = Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::hint::black_box(matcher.verdicts(batch));
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
            longest
        });
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        let reload =
            matcher.current().reload(&dir.join("rules"), &Scope::All, memo, |rule| rule.rule.enabled);
        assert!(reload.errors.is_empty(), "{}", reload.errors[0]);
        assert_eq!(reload.compiled_files, 1, "only the changed file is compiled");
        let replaced = matcher.swap(reload.set.expect("packs taken").expect("rule set"));
        let took = started.elapsed();
        // As the pipeline's reload does: the replaced set is freed here, not by the
        // matching thread.
        cull_match::retire(replaced, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(200));
        done.store(true, Ordering::Relaxed);
        let longest = matching.join().expect("matching thread");
        std::fs::write(&path, &source).expect("restore");
        (took, longest)
    })
}

/// Reads a `kB` line of /proc/self/status.
fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[allow(clippy::type_complexity)]
fn print_tables(rows: &[(Workload, usize, Value, Value, Value, Agreement)]) {
    let num = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    let mb = |v: &Value| num(v, "peak_rss_bytes") / 1e6;
    println!("\n| workload | rules | cull mentions/s | perq mentions/s | cull ÷ perq | hyperscan mentions/s | cull ÷ hyperscan | cull ids only (no verdicts) ÷ perq | cull 2 threads ÷ 1 | cull peak RSS | perq peak RSS | cull bytes/rule | cull build | perq build | one file recompiled + swapped | longest matching pause | matches/mention | mismatches (tokenization) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (workload, count, cull, perq, hyperscan, agreement) in rows {
        let cull_rate = num(cull, "mentions_per_second");
        println!(
            "| {} | {count} | {cull_rate:.0} | {:.0} | {:.1}× | {:.0} | {:.2}× | {:.1}× | {:.2}× | {:.0} MB | {:.0} MB | {:.0} | {:.2} s | {:.2} s | {:.3} s | {:.3} s | {:.2} | {} ({}) |",
            workload.name(),
            num(perq, "mentions_per_second"),
            cull_rate / num(perq, "mentions_per_second"),
            num(hyperscan, "mentions_per_second"),
            cull_rate / num(hyperscan, "mentions_per_second"),
            num(cull, "ids_only_mentions_per_second") / num(perq, "mentions_per_second"),
            num(cull, "two_threads_mentions_per_second") / cull_rate,
            mb(cull),
            mb(perq),
            num(cull, "peak_rss_bytes") / *count as f64,
            num(cull, "build_seconds"),
            num(perq, "build_seconds"),
            num(cull, "recompile_seconds"),
            num(cull, "longest_pause_seconds"),
            agreement.matches as f64 / num(cull, "mentions"),
            agreement.mismatches,
            agreement.tokenization,
        );
    }
    for (workload, count, _, _, _, agreement) in rows {
        for example in &agreement.examples {
            println!("unexplained mismatch, {} {count}: {example}", workload.name());
        }
    }
}
