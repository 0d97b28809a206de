#!/usr/bin/env bash
# Creates the Python virtual env holding the peers of the matcher benchmark
# (benches/peers.rs, which runs them through benches/peers.py): the perq stored-query
# matcher (perq 0.2.1) and the Hyperscan bindings (hyperscan 0.9.1) for a literal-scan
# speed ceiling; prints the env's python path.
#
# Idempotent: the env is created only when missing and the packages installed only
# when they are not importable, so a second run touches nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/bench-venv
if [ ! -x "${venv}/bin/python" ]; then
  python3 -m venv "${venv}"
fi
if ! "${venv}/bin/python" -c 'import perq, hyperscan' >/dev/null 2>&1; then
  "${venv}/bin/python" -m pip install --quiet perq==0.2.1 hyperscan==0.9.1
fi
echo "${PWD}/${venv}/bin/python"
