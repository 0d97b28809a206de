"""Reads cull tickets from Kafka, as a contact center's integration would.

Each record is one cull.ticket/v1 JSON document, keyed by its ticket id. Delivery is
at least once, so the same ticket can arrive again (a replay after a crash) and a
repeated mention arrives as a higher revision of the same ticket id: keep the highest
revision per id. Offsets are committed after a ticket is handled, so a crash of this
consumer replays rather than loses.

    pip install kafka-python
    python3 examples/consume_tickets.py --brokers kafka-0:9092 --topic cull.tickets
"""
import argparse
import json

from kafka import KafkaConsumer

parser = argparse.ArgumentParser()
parser.add_argument("--brokers", default="localhost:9092")
parser.add_argument("--topic", default="cull.tickets")
parser.add_argument("--group", default="contact-center")
parser.add_argument("--idle-ms", type=int, default=0, help="stop after this long without a ticket (0: never)")
args = parser.parse_args()

consumer = KafkaConsumer(
    args.topic,
    bootstrap_servers=args.brokers,
    group_id=args.group,
    enable_auto_commit=False,
    auto_offset_reset="earliest",
    consumer_timeout_ms=args.idle_ms or float("inf"),
    key_deserializer=bytes.decode,
    value_deserializer=json.loads,
)
latest = {}
for record in consumer:
    ticket = record.value
    if ticket["schema"] != "cull.ticket/v1":
        raise SystemExit(f"unknown ticket schema {ticket['schema']!r} at offset {record.offset}")
    if latest.get(record.key, 0) < ticket["revision"]:
        latest[record.key] = ticket["revision"]
        print(
            f"{ticket['priority']} {ticket['queue']} {record.key} r{ticket['revision']}"
            f" due {ticket['sla_due_at']}: {ticket['snippet']}",
            flush=True,
        )
    consumer.commit()
