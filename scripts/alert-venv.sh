#!/usr/bin/env bash
# Creates the Python virtual env holding the independent implementations the alert
# sink tests deliver to (crates/cull-alert/tests/): the Standard Webhooks reference
# verifier (standardwebhooks 1.1.0) and a real SMTP server (aiosmtpd 1.4.6); prints
# the env's python path.
#
# Idempotent: the env is created only when missing and the packages installed only
# when they are not importable, so a second run touches nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/alert-venv
if [ ! -x "${venv}/bin/python" ]; then
  python3 -m venv "${venv}"
fi
if ! "${venv}/bin/python" -c 'import standardwebhooks, aiosmtpd' >/dev/null 2>&1; then
  "${venv}/bin/python" -m pip install --quiet standardwebhooks==1.1.0 aiosmtpd==1.4.6
fi
echo "${PWD}/${venv}/bin/python"
