#!/usr/bin/env bash
# Creates the Python virtual env holding the reference VADER (vaderSentiment 3.3.2)
# that the sentiment parity test (crates/cull-ticket/tests/sentiment_parity.rs)
# scores against, and prints the env's python path.
#
# Idempotent: the env is created only when missing and the package installed only
# when it is not importable, so a second run touches nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/vader-venv
if [ ! -x "${venv}/bin/python" ]; then
  python3 -m venv "${venv}"
fi
if ! "${venv}/bin/python" -c 'import vaderSentiment.vaderSentiment' >/dev/null 2>&1; then
  "${venv}/bin/python" -m pip install --quiet vaderSentiment==3.3.2
fi
echo "${PWD}/${venv}/bin/python"
