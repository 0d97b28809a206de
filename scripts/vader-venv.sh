#!/usr/bin/env bash
# Creates the Python virtual env holding the reference VADER (vaderSentiment 3.3.2)
# that the sentiment parity test (crates/cull-model/tests/sentiment_parity.rs)
# scores against, and prints the env's python path (idempotent, see python-venv.sh).
exec "$(dirname "$0")/python-venv.sh" vader 'import vaderSentiment.vaderSentiment' vaderSentiment==3.3.2
