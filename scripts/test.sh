#!/usr/bin/env bash
# Sets up what the tests need and runs them all: formatting, lints, every test.
#
# Idempotent: each step installs only what is missing. The tests read real
# third-party data from ../shared/data (see its SOURCES.md) next to the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo is required (install Rust with rustup)" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "${component}"
  fi
done
# A Kafka-protocol broker for the bus and pipeline tests (a 12-minute build, so only
# when missing).
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
  cargo install tansu --version 0.6.0 --features dynostore,libsql
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# promtool checks the live /metrics output; kafka-python is the outside Kafka client.
if ! command -v promtool >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
# Headless Chromium and its WebDriver drive the web console's end-to-end test.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! python3 -c 'import kafka' >/dev/null 2>&1; then
  python3 -m pip install --quiet kafka-python==2.2.15
fi
# The reference VADER (Python vaderSentiment 3.3.2) the sentiment parity test
# compares with, in its own venv under target/.
scripts/vader-venv.sh >/dev/null
# The Standard Webhooks verifier and the SMTP server the alert sink tests deliver to.
scripts/alert-venv.sh >/dev/null
if [ ! -f ../shared/data/SOURCES.md ]; then
  echo "scripts/test.sh: the shared test data is missing at ../shared/data" >&2
  exit 1
fi

cargo fmt --all -- --check
# `failpoints` compiles in the fault injection the fault tests drive (tests/faults.rs);
# a release build never has it.
cargo clippy --workspace --all-targets --locked --features cull/failpoints -- -D warnings

# Unit, binary and integration tests (there are no doctests; benches are run by
# `cargo bench`). The counts of every test binary are added up into one closing line.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked --features cull/failpoints --lib --bins --tests 2>&1 | tee "$log"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"

# A short smoke of every fuzz target (scripts/fuzz.sh runs them for longer), with
# seeds from ../shared/data; it installs cargo-fuzz when missing.
scripts/fuzz.sh 10
