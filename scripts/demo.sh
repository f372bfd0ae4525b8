#!/usr/bin/env bash
# The README's demo command: creates .venv on first use, then runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -e .
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
exec atlas-events demo "$@"
