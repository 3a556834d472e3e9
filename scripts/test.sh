#!/usr/bin/env bash
# The project's one test command: builds SpateMQ, runs the Rust tests, then the
# Python client tests (pika, kombu) against the release binary.
# Safe to rerun: installs only what is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
REQS="$ROOT/tests/python/requirements.txt"

section() {
    echo
    echo "==================== $* ===================="
}

section "setup: Python virtualenv"
PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "python3 is missing; installing it (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q python3 python3-venv >/dev/null
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        echo "'$PYTHON -m venv' failed; installing python3-venv (Debian package)"
        rm -rf "$VENV"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q python3-venv >/dev/null
        "$PYTHON" -m venv "$VENV"
    fi
fi
# Reinstall only when requirements.txt changed since the last install.
STAMP="$VENV/.requirements.sha256"
want=$(sha256sum "$REQS" | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS"
    echo "$want" >"$STAMP"
fi
"$VENV/bin/python" -c 'import pika, kombu, pytest, pytest_timeout' \
    && echo "virtualenv ready: $("$VENV/bin/python" --version)"

section "cargo build --release"
cargo build --release

section "cargo test --release (Rust unit + black-box tests)"
cargo test --release

section "pytest tests/python (pika/kombu against target/release/spatemq)"
status=0
SPATEMQ_BIN="${SPATEMQ_BIN:-$ROOT/target/release/spatemq}" \
    "$VENV/bin/python" -m pytest tests/python -q || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: counting that as a failure" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "pytest failed (exit $status)" >&2
    exit "$status"
fi

section "all tests passed"
