#!/usr/bin/env bash
# The README's test command: creates .venv with the extras and the "dev"
# dependency group on first use (or reuses the active virtualenv), then runs
# the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    # pip >= 25.1 installs PEP 735 dependency groups (--group).
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade 'pip>=25.1'
    .venv/bin/python -m pip install -q --disable-pip-version-check \
        -e '.[web,redis,bench,otel]' --group dev
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
python -m pytest "$@"
