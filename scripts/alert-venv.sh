#!/usr/bin/env bash
# Creates the Python virtual env holding the independent implementations the alert
# sink tests deliver to (crates/cull-alert/tests/): the Standard Webhooks reference
# verifier (standardwebhooks 1.1.0) and a real SMTP server (aiosmtpd 1.4.6); prints
# the env's python path (idempotent, see python-venv.sh).
exec "$(dirname "$0")/python-venv.sh" alert 'import standardwebhooks, aiosmtpd' standardwebhooks==1.1.0 aiosmtpd==1.4.6
