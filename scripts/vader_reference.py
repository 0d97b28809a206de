"""Scores text with the reference VADER, vaderSentiment 3.3.2, for the parity test.

Reads one text a line on stdin and writes one line a text on stdout:
compound, neg, neu and pos, tab-separated, in Python's repr (shortest round-trip),
so the Rust side parses exactly the floats Python returned. Lines are split on
"\n" only, so a carriage return inside a text reaches VADER as it does in Rust.
Run it with the interpreter scripts/vader-venv.sh prints.
"""

import sys

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer


def main() -> None:
    analyzer = SentimentIntensityAnalyzer()
    data = sys.stdin.buffer.read().decode("utf-8")
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for text in lines:
        scores = analyzer.polarity_scores(text)
        out.append(
            "\t".join(repr(scores[key]) for key in ("compound", "neg", "neu", "pos"))
        )
    sys.stdout.buffer.write(("\n".join(out) + "\n").encode("utf-8"))


if __name__ == "__main__":
    main()
