#!/usr/bin/env bash
# The differential test: scripted AMQP conversations (tests/differential/) run against SpateMQ
# and against a real RabbitMQ 3.10, and their normalised replies compared.
#
#   scripts/differential.sh [--only PATTERN] [--keep] [--spatemq-only | --rabbitmq-only] [--jobs N]
#
# Starts target/release/spatemq (it builds nothing) and a throw-away RabbitMQ node
# (scripts/rabbitmq.sh, which installs the Debian package when missing), each on a spare
# loopback port with a data directory of its own, and stops both by PID on exit.
# Prints one line per differing conversation and, last, `N passed, M failed`. Exits non-zero
# when a difference is listed in neither section of docs/differences.md, or when an entry
# there no longer differs (stale). --keep leaves the broker logs and both sides' transcripts.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
SPATEMQ_BIN=${SPATEMQ_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/spatemq}
RUN_TIME_MAX_S=300  # the conversations' run, not counting the brokers' start

only="" keep=0 sides=both jobs=12
while [ $# -gt 0 ]; do
    case "$1" in
        --only) only=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --spatemq-only) sides=spatemq; shift ;;
        --rabbitmq-only) sides=rabbitmq; shift ;;
        --jobs) jobs=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

log() { echo "[differential] $*" >&2; }

if [ "$sides" != rabbitmq ] && [ ! -x "$SPATEMQ_BIN" ]; then
    log "$SPATEMQ_BIN is missing: build it first (cargo build --release)"
    exit 2
fi

# shellcheck source=scripts/python_env.sh
source "$ROOT/scripts/python_env.sh"
ensure_python_env "$ROOT" >/dev/null

work=$(mktemp -d /tmp/spatemq-differential.XXXXXX)
spatemq_pid=""
rabbitmq_started=0

cleanup() {
    local status=$?
    if [ -n "$spatemq_pid" ]; then
        kill -TERM "$spatemq_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$spatemq_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$spatemq_pid" 2>/dev/null || true
    fi
    if [ "$rabbitmq_started" = 1 ]; then
        "$ROOT/scripts/rabbitmq.sh" stop "$work/rabbitmq" >/dev/null 2>&1 || true
    fi
    if [ "$keep" = 1 ]; then
        log "logs and transcripts kept in $work"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port that is free, and (for RabbitMQ's Erlang distribution) whose +20000 is free too.
spare_port() {
    "$VENV_PYTHON" - <<'PY'
import random, socket
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
while True:
    port = random.randint(20000, 40000)
    if free(port) and free(port + 20000):
        print(port)
        break
PY
}

args=(--differences "$ROOT/docs/differences.md" --jobs "$jobs" --out "$work/transcripts")
[ -n "$only" ] && args+=(--only "$only")

if [ "$sides" != spatemq ]; then
    rabbitmq_port=$(spare_port)
    rabbitmq_started=1
    # The consistent-hash exchange is a plugin in RabbitMQ and built in here.
    RABBITMQ_SH_PLUGINS=rabbitmq_consistent_hash_exchange \
        "$ROOT/scripts/rabbitmq.sh" start "$rabbitmq_port" "$work/rabbitmq" >"$work/rabbitmq-start.log" 2>&1 &
    rabbitmq_starter=$!
    args+=(--rabbitmq-port "$rabbitmq_port")
fi
if [ "$sides" != rabbitmq ]; then
    spatemq_port=$(spare_port)
    while [ "${rabbitmq_port:-}" = "$spatemq_port" ]; do spatemq_port=$(spare_port); done
    "$SPATEMQ_BIN" --amqp-port "$spatemq_port" --bind 127.0.0.1 --management-port 0 --prometheus-port 0 --data-dir "$work/spatemq-data" \
        --log-level warn >"$work/spatemq.log" 2>&1 &
    spatemq_pid=$!
    args+=(--spatemq-port "$spatemq_port")
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$spatemq_port") 2>/dev/null; then break; fi
        kill -0 "$spatemq_pid" 2>/dev/null || { log "spatemq exited at start:"; cat "$work/spatemq.log" >&2; exit 1; }
        sleep 0.1
    done
fi
if [ "$sides" != spatemq ]; then
    if ! wait "$rabbitmq_starter"; then
        log "RabbitMQ did not start:"
        cat "$work/rabbitmq-start.log" >&2
        exit 1
    fi
fi

timeout --kill-after=10 "$RUN_TIME_MAX_S" "$VENV_PYTHON" "$ROOT/tests/differential/run.py" "${args[@]}"
