//! `cull_model::sentiment` against the real thing: the Python `vaderSentiment`
//! 3.3.2 package (installed in a venv by `scripts/vader-venv.sh`) and the human
//! ratings of the VADER paper's four ground-truth corpora in
//! `../shared/data/text/vader` (tweets, movie reviews, Amazon reviews, New York Times
//! editorials; 20 raters a text, mean rating in [-4, 4]).

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use cull_model::sentiment::{analyze, Sentiment};

/// The corpora, by file name in the VADER data directory.
const CORPORA: [&str; 4] = [
    "tweets_GroundTruth.txt",
    "movieReviewSnippets_GroundTruth.txt",
    "amazonReviewSnippets_GroundTruth.txt",
    "nytEditorialSnippets_GroundTruth.txt",
];

/// Pearson r of VADER's compound against the mean human rating of the tweets,
/// measured at 0.8722 here (the paper reports 0.881 for its own code), less a margin.
const TWEETS_R_FLOOR: f64 = 0.86;

/// The repository root (tests run in the crate's directory).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One ground-truth line: `id<TAB>mean human rating<TAB>text`.
#[derive(Debug)]
struct Rated {
    rating: f64,
    text: String,
}

/// The lines of one corpus; a malformed line fails with its file:line.
fn corpus(name: &str) -> Vec<Rated> {
    let path = repo_root().join("../shared/data/text/vader").join(name);
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared data)", path.display()));
    raw.lines()
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(index, line)| {
            let at = format!("{}:{}", path.display(), index + 1);
            let mut fields = line.splitn(3, '\t');
            let (Some(_id), Some(rating), Some(text)) = (fields.next(), fields.next(), fields.next()) else {
                panic!("{at}: not id<TAB>rating<TAB>text");
            };
            let rating = rating.parse().unwrap_or_else(|e| panic!("{at}: rating {rating:?}: {e}"));
            Rated { rating, text: text.to_string() }
        })
        .collect()
}

/// The venv's python with the reference installed, or `None` when the machine has
/// no python3 at all. Any other failure (no venv module, no network for pip) fails.
fn reference_python() -> Option<PathBuf> {
    match Command::new("python3").arg("--version").output() {
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) => panic!("python3 --version: {e}"),
        Ok(_) => {}
    }
    let script = repo_root().join("scripts/vader-venv.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(out.status.success(), "{} failed: {}", script.display(), out.status);
    let stdout = String::from_utf8(out.stdout).expect("the venv path is UTF-8");
    let python = stdout.lines().last().expect("vader-venv.sh prints the python path");
    Some(PathBuf::from(python))
}

/// The reference's scores for `texts`, one per text, by `scripts/vader_reference.py`.
fn reference_scores(python: &Path, texts: &[&str]) -> Vec<Sentiment> {
    let script = repo_root().join("scripts/vader_reference.py");
    let mut child = Command::new(python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input: String = texts.iter().map(|text| format!("{text}\n")).collect();
    // Written from a thread: the reference answers while it reads, and a full
    // stdout pipe would otherwise block both sides.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("the reference runs");
    writer.join().expect("the writer thread").expect("the reference reads every text");
    assert!(out.status.success(), "{} failed: {}", script.display(), out.status);
    let stdout = String::from_utf8(out.stdout).expect("the reference writes UTF-8");
    let scores: Vec<Sentiment> = stdout
        .lines()
        .map(|line| {
            let fields: Vec<f64> = line
                .split('\t')
                .map(|field| field.parse().unwrap_or_else(|e| panic!("{line:?}: {e}")))
                .collect();
            let [compound, negative, neutral, positive] = fields[..] else {
                panic!("{line:?}: not compound, neg, neu, pos");
            };
            Sentiment { compound, negative, neutral, positive }
        })
        .collect();
    assert_eq!(scores.len(), texts.len(), "one reference line per text");
    scores
}

#[test]
fn scores_agree_with_python_vader_on_every_ground_truth_line() {
    let Some(python) = reference_python() else {
        eprintln!("SKIPPED: python3 is not installed, so there is no reference VADER to compare with");
        return;
    };
    let mut compared = 0;
    let mut identical = 0;
    let mut mismatches = Vec::new();
    for name in CORPORA {
        let lines = corpus(name);
        let texts: Vec<&str> = lines.iter().map(|line| line.text.as_str()).collect();
        let reference = reference_scores(&python, &texts);
        for (index, (text, expected)) in texts.iter().zip(&reference).enumerate() {
            let actual = analyze(text);
            compared += 1;
            identical += usize::from(actual == *expected);
            let agrees = (actual.compound - expected.compound).abs() <= 1e-4
                && [
                    (actual.negative, expected.negative),
                    (actual.neutral, expected.neutral),
                    (actual.positive, expected.positive),
                ]
                .iter()
                .all(|(a, e)| (a - e).abs() <= 1e-3);
            if !agrees {
                mismatches
                    .push(format!("{name}:{}: rust {actual:?}, python {expected:?}: {text:?}", index + 1));
            }
        }
    }
    eprintln!(
        "{compared} ground-truth texts: {identical} scored identically, {} outside the \
         tolerance (compound 1e-4, proportions 1e-3)",
        mismatches.len()
    );
    assert!(compared > 23_000, "the four corpora hold 23,703 texts, read {compared}");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Pearson's correlation coefficient of two equally long series.
fn pearson(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mean_x, mean_y) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let (mut covariance, mut variance_x, mut variance_y) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        covariance += (x - mean_x) * (y - mean_y);
        variance_x += (x - mean_x).powi(2);
        variance_y += (y - mean_y).powi(2);
    }
    covariance / (variance_x * variance_y).sqrt()
}

#[test]
fn compound_correlates_with_human_ratings() {
    // Builds the lexicons outside the timed part.
    analyze("");
    let mut tweets_r = None;
    for name in CORPORA {
        let lines = corpus(name);
        let started = Instant::now();
        let compounds: Vec<f64> = lines.iter().map(|line| analyze(&line.text).compound).collect();
        let elapsed = started.elapsed();
        let ratings: Vec<f64> = lines.iter().map(|line| line.rating).collect();
        let r = pearson(&compounds, &ratings);
        eprintln!(
            "{name}: Pearson r {r:.4} over {} texts; scored in {elapsed:?}, {:.1} µs a text",
            lines.len(),
            elapsed.as_secs_f64() * 1e6 / lines.len() as f64
        );
        if name == CORPORA[0] {
            tweets_r = Some(r);
        }
    }
    let tweets_r = tweets_r.expect("the tweets are scored");
    assert!(tweets_r > TWEETS_R_FLOOR, "Pearson r on the tweets is {tweets_r:.4}, below {TWEETS_R_FLOOR}");
}
