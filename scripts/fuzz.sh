#!/usr/bin/env bash
# Runs cull's fuzz targets (fuzz/fuzz_targets) with libFuzzer through cargo fuzz, each
# for a bounded time, starting from seed corpora built from the repository and from the
# real third-party material in ../shared/data.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 seconds, every target)
#
# scripts/test.sh runs a short smoke of every target. A crash stops the script with
# the input that caused it (fuzz/artifacts/<target>/); turn it into a named regression
# test before fixing it. The targets are built without a sanitizer: cull's own crates
# forbid `unsafe`, so what the fuzzer hunts is panics and broken invariants.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
if [ $# -gt 0 ]; then shift; fi
all=(query rules mention analyzer html feed webhook snippet)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
if [ ! -f ../shared/data/SOURCES.md ]; then
  echo "scripts/fuzz.sh: the shared test data is missing at ../shared/data" >&2
  exit 1
fi

# Seeds: one file per input, rebuilt at each run (the corpus directories also keep
# what earlier runs found).
python3 - <<'PY'
import glob, hashlib, json, os

def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.join("fuzz", "corpus", target)
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as out:
        out.write(data)

shared = os.path.join("..", "shared", "data")
for path in ["query/tantivy_query_grammar_cases.jsonl", "query/luqum_parser_inputs.jsonl"]:
    for line in open(os.path.join(shared, path), encoding="utf-8"):
        case = json.loads(line)
        seed("query", case["query"])
for path in glob.glob("rules/*.toml"):
    seed("rules", open(path, "rb").read())
    for line in open(path, encoding="utf-8"):
        if line.startswith(("query", "exclude")):
            seed("query", line.split("=", 1)[1].strip().strip("'"))
demo = [line for line in open("pipelines/demo/mentions.jsonl", encoding="utf-8") if line.strip()]
for line in demo:
    seed("mention", line.strip())
    seed("webhook", line.strip())
seed("webhook", "[" + ",".join(line.strip() for line in demo) + "]")
seed("webhook", json.dumps({"data": {"body": "Slack is down", "user": {"name": "a", "followers": 12}, "network": "Twitter"}}))
tweets = open(os.path.join(shared, "text/vader/tweets_GroundTruth.txt"), encoding="utf-8", errors="replace").read().splitlines()
for line in tweets[:300]:
    seed("analyzer", line.split("\t")[-1])
for path in sorted(glob.glob(os.path.join(shared, "feeds/feedparser/**/sanitize/*.xml"), recursive=True))[:300]:
    seed("html", open(path, "rb").read())
feeds = sorted(glob.glob(os.path.join(shared, "feeds/feed-rs/**/*.xml"), recursive=True))
feeds += sorted(glob.glob(os.path.join(shared, "feeds/feedjira/*.xml")))
feeds += sorted(glob.glob(os.path.join(shared, "feeds/feedparser/illformed/*.xml")))[:100]
for path in feeds:
    data = open(path, "rb").read()
    if len(data) < 200_000:
        seed("feed", data)
PY

cd fuzz
# A smoke (under a minute per target) builds unoptimized, which compiles in two thirds
# of the time; longer runs build optimized, for more executions per second. Both keep
# debug assertions (overflow checks) on.
if [ "$seconds" -lt 60 ]; then profile=(--dev); else profile=(-O); fi
cargo +nightly fuzz build --sanitizer none "${profile[@]}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
  echo "scripts/fuzz.sh: $target for ${seconds}s"
  mkdir -p "corpus/$target"
  if ! cargo +nightly fuzz run --sanitizer none "${profile[@]}" "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "scripts/fuzz.sh: $target found a crash; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units)" "$log" | tail -n 2
done
echo "scripts/fuzz.sh: ${#targets[@]} target(s), ${seconds}s each, no crash"
