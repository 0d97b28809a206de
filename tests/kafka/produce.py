#!/usr/bin/env python3
"""Produces records to a Kafka topic with kafka-python, a client independent of librdkafka.

Each input line (from FILE, or standard input when FILE is `-` or absent) becomes one
record, as raw bytes without the line break: the bytes need not be UTF-8 or JSON, so
bad input reaches the broker exactly as written. The record key is the line's `id`
when the line is a JSON object with a string id, else no key.

--create TOPIC:PARTITIONS (repeatable) creates missing topics first, because the broker
under test does not create topics on first use. On stdout, one JSON line per record,
in input order: {"line": N (1-based), "partition": P, "offset": O}.
"""

import argparse
import json
import sys

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError


def create_topics(brokers, specs):
    admin = KafkaAdminClient(bootstrap_servers=brokers, client_id="cull-test-admin")
    try:
        existing = set(admin.list_topics())
        wanted = []
        for spec in specs:
            name, _, partitions = spec.rpartition(":")
            if name not in existing:
                wanted.append(NewTopic(name=name, num_partitions=int(partitions), replication_factor=1))
        if wanted:
            try:
                admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def key_of(line):
    try:
        document = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(document, dict) and isinstance(document.get("id"), str):
        return document["id"].encode("utf-8")
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--create", action="append", default=[], metavar="TOPIC:PARTITIONS")
    parser.add_argument("file", nargs="?", default="-")
    args = parser.parse_args()

    if args.create:
        create_topics(args.brokers, args.create)
    source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    with source:
        lines = [line.rstrip(b"\n") for line in source]
    producer = KafkaProducer(
        bootstrap_servers=args.brokers,
        client_id="cull-test-producer",
        acks="all",
        max_request_size=16 * 1024 * 1024,
    )
    futures = [producer.send(args.topic, key=key_of(line), value=line) for line in lines if line]
    producer.flush(timeout=60)
    out = sys.stdout
    for number, future in enumerate(futures, start=1):
        metadata = future.get(timeout=60)
        out.write(json.dumps({"line": number, "partition": metadata.partition, "offset": metadata.offset}))
        out.write("\n")
    producer.close(timeout=30)


if __name__ == "__main__":
    main()
