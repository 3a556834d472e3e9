#!/usr/bin/env bash
# Crash test: confirmed messages must survive SIGKILL of the broker.
#
#   scripts/crash.sh [--cycles N] [--seed S] [--keep]
#
# Each cycle: start the release broker (2 shards) on a data directory kept across
# cycles, publish persistent messages with confirms from 4 processes (a consumer
# acks some of them in every other cycle), SIGKILL the broker 0.3-2 s in, restart
# it, drain the queue and check every confirmed message is back. Prints
# confirmed / recovered / lost / duplicates per cycle and in total; exits non-zero
# if any confirmed message was lost (or another promise broken). The work lives in
# tests/python/crash.py; this wrapper prepares the binary and the virtualenv.
# SPATEMQ_BIN names a prebuilt broker (then nothing is built).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

# shellcheck source=scripts/python_env.sh
source "$ROOT/scripts/python_env.sh"
ensure_python_env "$ROOT" >&2

if [ -z "${SPATEMQ_BIN:-}" ]; then
    cargo build --release --quiet --bin spatemq
    SPATEMQ_BIN="$ROOT/target/release/spatemq"
fi
export SPATEMQ_BIN

exec "$VENV_PYTHON" "$ROOT/tests/python/crash.py" run "$@"
