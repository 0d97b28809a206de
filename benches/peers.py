"""Runs one peer of the matcher benchmark (benches/peers.rs) on one workload.

    python benches/peers.py {perq|hyperscan} --rules RULES.jsonl --mentions MENTIONS.jsonl
                            [--out MATCHES.jsonl] [--seconds S]

RULES.jsonl holds one rule a line, {"id": "r12", "terms": [["slack"], ["stock", "shares"]]},
in conjunctive normal form: the rule matches when every inner list has at least one of
its terms among the mention's words. MENTIONS.jsonl holds {"id": "m1", "text": "..."}
a line. The env with both peers is made by scripts/bench-venv.sh.

Peers:

* perq (0.2.1), a stored-query matcher: each rule is a perq Query, indexed into a
  MemoryStore and matched with a QueryMatcher. perq tokenizes a text as NFKC, casefold,
  then regex `\\w+`; it does not normalize query terms, so a term that is not one such
  token ("don't", "slack.com", "Slack") can never match, and the runner warns about them.
* hyperscan (0.9.1), a speed ceiling, not a matcher: one block-mode database of the
  distinct terms of all rules as pure literals, with HS_FLAG_CASELESS (ASCII case only)
  and HS_FLAG_SINGLEMATCH (a literal is reported at most once per mention). The literal
  API accepts only those two and HS_FLAG_SOM_LEFTMOST; the others are compile errors.
  Hits are substrings, not words ("slack" hits "slackers"), and rules are not evaluated:
  its matches are the literals hit.

What is measured, and why so:

* The input files are read and parsed before any clock starts: decoding JSON is the
  harness's work, not the peer's.
* build_seconds is everything between the rule records and a ready matcher. For perq:
  creating the Query objects, index() into a MemoryStore (which stages the postings in a
  temporary SQLite file under TMPDIR, as perq always does) and creating the QueryMatcher.
  For hyperscan: compiling the database, which also allocates its scratch space.
* mentions_per_second starts from the raw text of each mention, so tokenization counts as
  it does for the Rust side: Document.from_text(text) then list(matcher.matches(doc)) for
  perq, text.encode() then db.scan() for hyperscan. Passes over the whole mention list
  repeat until --seconds have elapsed (at least one pass), so that a small workload is
  not one timer tick and first-touch costs are amortized as they would be in service; the
  rate is over all passes.
* matches (the total) and --out come from the first pass; --out is written after timing.
  Each line is {"id": "m1", "matches": [...]}: rule ids sorted as strings for perq, the
  literals hit, sorted, for hyperscan.
* peak_rss_bytes is the process's high-water mark (VmHWM of /proc/self/status), so it
  covers the interpreter and the parsed inputs as well as the peer: compare peers run the
  same way. Not ru_maxrss: Linux carries a forking parent's peak into the child's across
  exec, so a peer started by a benchmark holding a million rules would report the
  benchmark's memory as its own.

Errors (missing file, bad JSON line, malformed record, a rule the peer rejects) go to
stderr and exit with status 1.
"""

import argparse
import json
import sys
import time


class InputError(Exception):
    pass


def read_jsonl(path, check):
    """Returns (line number, checked record) for each non-blank line of a JSONL file."""
    try:
        source = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from exc
    records = []
    with source:
        for number, line in enumerate(source, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\n"))
            except ValueError as exc:
                raise InputError(f"{path}:{number}: bad JSON: {exc}") from exc
            problem = check(record)
            if problem:
                raise InputError(f"{path}:{number}: {problem}")
            records.append((number, record))
    return records


def nonempty_string(value):
    return isinstance(value, str) and value != ""


def check_rule(record):
    if not isinstance(record, dict) or not nonempty_string(record.get("id")):
        return 'expected {"id": non-empty string, "terms": [[term, ...], ...]}'
    terms = record.get("terms")
    if not (
        isinstance(terms, list)
        and terms
        and all(isinstance(c, list) and c and all(map(nonempty_string, c)) for c in terms)
    ):
        return "terms must be a non-empty list of non-empty lists of non-empty strings"
    return None


def check_mention(record):
    if not (
        isinstance(record, dict)
        and nonempty_string(record.get("id"))
        and isinstance(record.get("text"), str)
    ):
        return 'expected {"id": non-empty string, "text": string}'
    return None


def load_rules(path):
    rules, seen = [], set()
    for number, rule in read_jsonl(path, check_rule):
        if rule["id"] in seen:
            raise InputError(f"{path}:{number}: duplicate rule id {rule['id']!r}")
        seen.add(rule["id"])
        rules.append((rule["id"], rule["terms"]))
    return rules


def repeat_passes(run_pass, seconds):
    """Runs passes until `seconds` have elapsed; returns (first pass, passes, elapsed)."""
    passes = 0
    start = time.perf_counter()
    while True:
        results = run_pass()
        passes += 1
        if passes == 1:
            first = results
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return first, passes, elapsed


def run_perq(rules, texts, seconds):
    from perq import Document, MemoryStore, Query, QueryMatcher, index, tokenize

    unmatchable = sorted(
        {t for _, clauses in rules for c in clauses for t in c if tokenize(t) != (t,)}
    )
    if unmatchable:
        print(
            f"peers.py: warning: {len(unmatchable)} terms are not one perq token and can "
            f"never match, e.g. {unmatchable[:5]}",
            file=sys.stderr,
        )

    start = time.perf_counter()
    try:
        store = MemoryStore()
        index([Query(rule_id, clauses) for rule_id, clauses in rules], store)
        matcher = QueryMatcher(store)
    except ValueError:
        for rule_id, clauses in rules:  # name the rule perq refuses (e.g. over 64 clauses)
            try:
                Query(rule_id, clauses)
            except ValueError as exc:
                raise InputError(f"perq rejects rule {rule_id!r}: {exc}") from exc
        raise
    build_seconds = time.perf_counter() - start

    matches, from_text = matcher.matches, Document.from_text

    def run_pass():
        return [list(matches(from_text(text))) for text in texts]

    first, passes, elapsed = repeat_passes(run_pass, seconds)
    return build_seconds, [sorted(ids) for ids in first], passes, elapsed


def peak_rss_bytes():
    """The high-water mark of this process's resident memory, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_hyperscan(rules, texts, seconds):
    import hyperscan

    literals = sorted({t for _, clauses in rules for c in clauses for t in c})
    start = time.perf_counter()
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(
        expressions=[t.encode() for t in literals],
        ids=list(range(len(literals))),
        flags=hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_SINGLEMATCH,
        literal=True,
    )
    build_seconds = time.perf_counter() - start

    def on_match(literal, start, end, flags, hits):
        hits.append(literal)

    scan = db.scan

    def run_pass():
        results = []
        for text in texts:
            hits = []
            scan(text.encode(), match_event_handler=on_match, context=hits)
            results.append(hits)
        return results

    first, passes, elapsed = repeat_passes(run_pass, seconds)
    # Literal ids are indexes into the sorted literals, so sorted ids give sorted strings.
    return build_seconds, [[literals[i] for i in sorted(set(h))] for h in first], passes, elapsed


def seconds_arg(value):
    seconds = float(value)
    if not seconds >= 0:
        raise argparse.ArgumentTypeError("must be a number >= 0")
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer", choices=("perq", "hyperscan"))
    parser.add_argument("--rules", required=True, help="rules JSONL")
    parser.add_argument("--mentions", required=True, help="mentions JSONL")
    parser.add_argument("--out", help="write each mention's matches (first pass) here")
    parser.add_argument(
        "--seconds", type=seconds_arg, default=5.0, help="minimum matching time (default 5)"
    )
    args = parser.parse_args(argv)
    try:
        rules = load_rules(args.rules)
        mentions = [m for _, m in read_jsonl(args.mentions, check_mention)]
        texts = [m["text"] for m in mentions]
        run = run_perq if args.peer == "perq" else run_hyperscan
        # With no mentions a pass is empty: one is enough.
        seconds = args.seconds if texts else 0.0
        build_seconds, matches, passes, elapsed = run(rules, texts, seconds)
        if args.out:
            try:
                with open(args.out, "w", encoding="utf-8") as out:
                    for mention, ids in zip(mentions, matches):
                        out.write(json.dumps({"id": mention["id"], "matches": ids}) + "\n")
            except OSError as exc:
                raise InputError(f"{args.out}: {exc.strerror}") from exc
    except InputError as exc:
        print(f"peers.py: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the peer's own refusal (a perq ValueError, a hyperscan.error)
        print(f"peers.py: {args.peer}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    summary = {
        "peer": args.peer,
        "rules": len(rules),
        "mentions": len(texts),
        "build_seconds": build_seconds,
        "mentions_per_second": len(texts) * passes / elapsed if elapsed > 0 else 0.0,
        "passes": passes,
        "peak_rss_bytes": peak_rss_bytes(),
        "matches": sum(map(len, matches)),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
