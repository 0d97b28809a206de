#!/usr/bin/env bash
# Creates the Python virtual env target/<name>-venv with the given packages and prints
# its python path: python-venv.sh NAME IMPORT PACKAGE...
#
# Idempotent: the env is created only when missing and the packages installed only
# when IMPORT (a Python statement) fails, so a second run touches nothing. The
# scripts/*-venv.sh wrappers name what each env is for.
set -euo pipefail
cd "$(dirname "$0")/.."

name=$1
import=$2
shift 2
venv="target/${name}-venv"
if [ ! -x "${venv}/bin/python" ]; then
  python3 -m venv "${venv}"
fi
if ! "${venv}/bin/python" -c "${import}" >/dev/null 2>&1; then
  "${venv}/bin/python" -m pip install --quiet "$@"
fi
echo "${PWD}/${venv}/bin/python"
