#!/usr/bin/env bash
# The README's test command: creates .venv with the test extras on first use
# (or reuses the active virtualenv), then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
python -m pytest "$@"
