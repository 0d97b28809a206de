"""A Standard Webhooks receiver for cull's alert sink tests and benchmark.

Every request is verified with the reference `standardwebhooks` package (the
specification's own library, from PyPI), and a bad signature, a stale timestamp or
missing headers are refused with 401, as a real receiver does. What it saw goes to
--log as one JSON line per request, so a test can count tries and deliveries per
webhook-id.

Faults for the retry tests: --fail-first N answers 500 to the first N tries of each
message id; --status CODE answers CODE to everything (with --retry-after S).

It prints `listening PORT` once it accepts connections.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--status", type=int, default=0)
    parser.add_argument("--retry-after", default="")
    args = parser.parse_args()

    verifier = Webhook(args.secret)
    lock = threading.Lock()
    tries = {}
    log = open(args.log, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            message_id = self.headers.get("webhook-id", "")
            entry = {"id": message_id, "timestamp": self.headers.get("webhook-timestamp")}
            try:
                envelope = verifier.verify(body, dict(self.headers.items()))
                entry["verified"] = True
                entry["type"] = envelope.get("type")
                entry["ticket_id"] = envelope["data"]["ticket_id"]
                entry["revision"] = envelope["data"]["revision"]
            except (WebhookVerificationError, ValueError, KeyError) as error:
                entry["verified"] = False
                entry["error"] = str(error)
            with lock:
                tries[message_id] = tries.get(message_id, 0) + 1
                attempt = tries[message_id]
            if not entry["verified"]:
                status = 401
            elif args.status:
                status = args.status
            elif attempt <= args.fail_first:
                status = 500
            else:
                status = 200
            entry["try"] = attempt
            entry["status"] = status
            with lock:
                log.write(json.dumps(entry) + "\n")
            reply = b'{"ok": true}' if status < 300 else b'{"error": "refused"}'
            self.send_response(status)
            if args.retry_after and status >= 300:
                self.send_header("Retry-After", args.retry_after)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
