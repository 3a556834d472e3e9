#!/usr/bin/env bash
# The project's one test command: builds SpateMQ, runs the Rust tests (unit, conversation,
# fuzz short pass, layer check, black-box) against a build with the invariant checks on, then
# the Python client tests (pika, kombu) against the release binary, then the differential test
# against a real RabbitMQ.
# Safe to rerun: installs only what is missing.
#
#   scripts/test.sh [--client-suites]
#
# --client-suites (or SPATEMQ_CLIENT_SUITES=1) also runs the client libraries' own test suites
# against SpateMQ and RabbitMQ (scripts/client-suites.sh --rabbitmq): a few minutes more, and
# downloads from the Python and npm registries on the first run.
set -euo pipefail

client_suites=${SPATEMQ_CLIENT_SUITES:-0}
while [ $# -gt 0 ]; do
    case "$1" in
        --client-suites) client_suites=1; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

section() {
    echo
    echo "==================== $* ===================="
}

section "setup: Python virtualenv"
# shellcheck source=scripts/python_env.sh
source "$ROOT/scripts/python_env.sh"
ensure_python_env "$ROOT"
echo "virtualenv ready: $("$VENV_PYTHON" --version)"

section "setup: test certificates (openssl)"
# The amqps tests make their own certificates with this script; running it once here installs
# openssl when it is missing (Debian package) and fails early if it cannot make them.
"$ROOT/scripts/make-test-certs.sh" "$ROOT/target/test-certs"

section "cargo build --release"
cargo build --release

section "cargo test --profile checked (Rust unit + black-box tests, invariant checks on)"
# The checked profile is the release build with debug assertions and overflow checks: the
# broker's stated invariants (delivery tags, unacked counts, ready-list and record accounting)
# are checked under every black-box test.
cargo test --profile checked

section "cargo test --test blackbox on the epoll driver (SPATEMQ_IO_DRIVER=epoll)"
# The broker falls back to epoll where io_uring cannot be set up (containers, hardened kernels):
# the black-box tests run once more with every broker they start on epoll.
SPATEMQ_IO_DRIVER=epoll cargo test --profile checked --test blackbox

section "pytest tests/python (pika/kombu, rabbitmqadmin, the web UI in Chromium against target/release/spatemq)"
# RabbitMQ's Debian package: its rabbitmqadmin drives the management API tests, which also
# compare its answers with a throw-away RabbitMQ node's (installed when missing).
"$ROOT/scripts/rabbitmq.sh" install
# Headless Chromium and its WebDriver (Debian packages) drive the web UI test.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "chromium or chromedriver is missing: installing the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q -o DPkg::Lock::Timeout=600 chromium chromium-driver >/dev/null
fi
status=0
SPATEMQ_BIN="${SPATEMQ_BIN:-$ROOT/target/release/spatemq}" \
    "$VENV_PYTHON" -m pytest tests/python -q || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: counting that as a failure" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "pytest failed (exit $status)" >&2
    exit "$status"
fi

section "differential test (the same AMQP conversations against SpateMQ and RabbitMQ 3.10)"
# Builds nothing: uses target/release/spatemq from the build above, and starts a throw-away
# RabbitMQ node (installing the Debian package when missing). Fails on a difference that
# docs/differences.md does not list, and on an entry there that no longer differs.
SPATEMQ_BIN="${SPATEMQ_BIN:-$ROOT/target/release/spatemq}" "$ROOT/scripts/differential.sh"

if [ "$client_suites" = 1 ]; then
    section "client libraries' own test suites (py-amqp, kombu, amqplib) against SpateMQ and RabbitMQ"
    SPATEMQ_BIN="${SPATEMQ_BIN:-$ROOT/target/release/spatemq}" "$ROOT/scripts/client-suites.sh" --rabbitmq
fi

section "all tests passed"
