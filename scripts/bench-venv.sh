#!/usr/bin/env bash
# Creates the Python virtual env holding the peers of the matcher benchmark
# (benches/peers.rs, which runs them through benches/peers.py): the perq stored-query
# matcher (perq 0.2.1) and the Hyperscan bindings (hyperscan 0.9.1) for a literal-scan
# speed ceiling; prints the env's python path (idempotent, see python-venv.sh).
exec "$(dirname "$0")/python-venv.sh" bench 'import perq, hyperscan' perq==0.2.1 hyperscan==0.9.1
