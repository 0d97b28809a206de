#!/usr/bin/env python3
"""Reads a Kafka topic with kafka-python, a client independent of librdkafka.

Reads every partition from the start, outside any consumer group (so it never moves the
offsets of the pipeline under test), until one of:
  --count N     N records were read;
  --to-end      every partition is read up to the end it had when reading started.
Gives up after --timeout seconds and exits with status 3, after printing what it read,
so that the caller can say how many records were missing.

On stdout, one JSON line per record: topic, partition, offset, key (UTF-8 text or null),
headers ([name, value-as-text] pairs), payload_base64 (the exact bytes) and payload
(the bytes as text, or null when they are not UTF-8).
"""

import argparse
import base64
import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition


def text(data):
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int)
    parser.add_argument("--to-end", action="store_true")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    if (args.count is None) == (not args.to_end):
        parser.error("give exactly one of --count and --to-end")

    deadline = time.monotonic() + args.timeout
    consumer = KafkaConsumer(
        bootstrap_servers=args.brokers,
        client_id="cull-test-consumer",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    partitions = None
    while partitions is None and time.monotonic() < deadline:
        found = consumer.partitions_for_topic(args.topic)
        if found:
            partitions = [TopicPartition(args.topic, p) for p in sorted(found)]
        else:
            time.sleep(0.1)
    if partitions is None:
        sys.stderr.write(f"consume.py: topic {args.topic} has no partitions after {args.timeout} s\n")
        sys.exit(3)
    consumer.assign(partitions)
    # An explicit seek to the first offsets: kafka-python 2.2.15's seek_to_beginning
    # resets positions in a loop that never ends against tansu 0.6.0.
    starts = consumer.beginning_offsets(partitions)
    for partition in partitions:
        consumer.seek(partition, starts[partition])
    ends = consumer.end_offsets(partitions) if args.to_end else None
    positions = dict(starts)

    def done(read):
        if args.count is not None:
            return read >= args.count
        return all(positions[p] >= ends[p] for p in partitions)

    read = 0
    out = sys.stdout
    while not done(read):
        if time.monotonic() >= deadline:
            consumer.close()
            out.flush()
            sys.stderr.write(f"consume.py: read {read} record(s) of {args.topic} in {args.timeout} s\n")
            sys.exit(3)
        batches = consumer.poll(timeout_ms=200)
        for records in batches.values():
            for record in records:
                document = {
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "key": text(record.key),
                    "headers": [[name, text(value)] for name, value in record.headers],
                    "payload_base64": base64.b64encode(record.value or b"").decode("ascii"),
                    "payload": text(record.value),
                }
                out.write(json.dumps(document))
                out.write("\n")
                read += 1
                position = TopicPartition(record.topic, record.partition)
                positions[position] = max(positions[position], record.offset + 1)
    out.flush()
    consumer.close()


if __name__ == "__main__":
    main()
