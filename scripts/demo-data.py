#!/usr/bin/env python3
"""Writes the real mentions the README's main command runs over (pipelines/demo/real/).

The material is third-party and real: the Google Alerts "Slack" feed captured by
feedjira (MIT), tweets from the VADER ground truth (MIT) and headlines from the UCI
News Aggregator dataset (CC BY 4.0). See pipelines/demo/real/SOURCES.md.

Every line is a cull.mention/v1 record. Nothing is rewritten but what the format needs:
feed entries keep their HTML (the source reads them with markup = "html", as a feed
source would), tweets have the HTML entities of their API dump decoded, and headlines
carry their publication time. The selection is deterministic: every record that names
a brand of the shipped rules, plus every Nth other record so that most mentions match
nothing, as in real brand monitoring.

    python3 scripts/demo-data.py [../shared/data]
"""

import csv
import datetime
import html
import json
import pathlib
import re
import sys
import xml.etree.ElementTree as ElementTree

ATOM = {"atom": "http://www.w3.org/2005/Atom"}
# Words of the shipped rules' queries (rules/*.toml): a record naming one is kept.
BRAND_WORDS = re.compile(r"\b(apple|iphone|ipad|macbook|slack|connections)", re.IGNORECASE)
# One record in this many of those naming no brand is kept as background traffic.
BACKGROUND_EVERY = {"tweets": 40, "headlines": 80}


def google_alerts(data):
    root = ElementTree.parse(data / "feeds/feedjira/google_alerts_atom.xml").getroot()
    for entry in root.findall("atom:entry", ATOM):
        yield {
            "schema": "cull.mention/v1",
            "id": entry.findtext("atom:id", namespaces=ATOM),
            "channel": "news",
            "title": entry.findtext("atom:title", namespaces=ATOM),
            "text": entry.findtext("atom:content", namespaces=ATOM),
            "url": entry.find("atom:link", ATOM).get("href"),
            "published_at": entry.findtext("atom:published", namespaces=ATOM),
        }


def tweets(data):
    path = data / "text/vader/tweets_GroundTruth.txt"
    with path.open(encoding="utf-8", newline="") as lines:
        for number, line in enumerate(lines):
            tweet_id, _sentiment, text = line.rstrip("\r\n").split("\t", 2)
            if BRAND_WORDS.search(text) or number % BACKGROUND_EVERY["tweets"] == 0:
                yield {
                    "schema": "cull.mention/v1",
                    "id": f"vader-tweet-{tweet_id}",
                    "channel": "twitter",
                    "text": html.unescape(text),
                }


def headlines(data):
    path = data / "text/uci_news_aggregator_sample.csv"
    with path.open(encoding="utf-8", newline="") as rows:
        for number, row in enumerate(csv.DictReader(rows)):
            if BRAND_WORDS.search(row["TITLE"]) or number % BACKGROUND_EVERY["headlines"] == 0:
                published = datetime.datetime.fromtimestamp(int(row["TIMESTAMP"]) / 1000, datetime.timezone.utc)
                yield {
                    "schema": "cull.mention/v1",
                    "id": f"uci-{row['ID']}",
                    "channel": "news",
                    "title": row["TITLE"],
                    "text": "",
                    "url": row["URL"].replace("\\?", "?"),  # the dump escapes "?" as "\?"
                    "published_at": published.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }


def main():
    data = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    out = pathlib.Path("pipelines/demo/real")
    out.mkdir(parents=True, exist_ok=True)
    for name, records in [
        ("google-alerts-slack", google_alerts(data)),
        ("tweets", tweets(data)),
        ("headlines", headlines(data)),
    ]:
        records = list(records)
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as file:
            for record in records:
                file.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{out / name}.jsonl: {len(records)} mentions")


if __name__ == "__main__":
    main()
