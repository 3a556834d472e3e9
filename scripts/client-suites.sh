#!/usr/bin/env bash
# The client libraries' own test suites against SpateMQ (and, with --rabbitmq, against a
# throw-away RabbitMQ 3.10 as well), from the libraries' registry packages at pinned versions.
#
#   scripts/client-suites.sh [--rabbitmq] [--only SUITE[,SUITE]] [--keep]
#
# Suites: py-amqp and kombu (source distributions from the Python registry), amqplib (the npm
# registry's tarball). pika's source distribution ships no tests: the script says so and runs
# nothing for it. Only the tests that talk to a broker are run (py-amqp's
# t/integration/test_rmq.py, kombu's t/integration/test_py_amqp.py, amqplib's
# test/{channel_api,callback_api,connect}.test.js); the rest of each suite is unit tests
# against mocks. Downloads, unpacked sources and the suites' virtualenv are kept in
# .client-suites/ (git-ignored) and reused.
#
# Each broker runs inside a network namespace of its own (unshare --net, so root), on the
# suites' default address 127.0.0.1:5672 (amqplib's tests connect to amqp://localhost and
# [::1] without a way to change the port): nothing else on the machine is in the way, and
# nothing the brokers start outlives the run. SpateMQ is $SPATEMQ_BIN (it builds nothing).
#
# Prints per suite and broker `passed failed skipped`, then every test that fails on SpateMQ
# with its entry in docs/client-suites.md (RabbitMQ-only, Not fixed yet, Fail on RabbitMQ
# too). Exits non-zero when a failing test has no entry there, or an entry is stale.
# --keep leaves the JUnit reports and logs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
SPATEMQ_BIN=${SPATEMQ_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/spatemq}
CACHE=$ROOT/.client-suites

PIKA_VERSION=1.4.4
AMQP_VERSION=5.4.2
KOMBU_VERSION=5.7.0
# amqplib 2.2.1 and later leave test/ out of the npm tarball; 2.2.0 is the newest with it.
AMQPLIB_VERSION=2.2.0

ALL_SUITES=py-amqp,kombu,amqplib
SUITE_TIME_MAX_S=900   # one suite against one broker
TEST_TIME_MAX_S=30     # one test (pytest-timeout; node's --test-timeout, per test and per file)

log() { echo "[client-suites] $*" >&2; }

# ------------------------------------------------------------------------------------------
# Inside the network namespace: start one broker on 127.0.0.1:5672, run the suites, stop it.
# ------------------------------------------------------------------------------------------

wait_for_port() {
    local pid=$1
    for _ in $(seq 100); do
        if (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Everything still running in this namespace was started by this run (the namespace is new):
# RabbitMQ's epmd daemonizes away from the node and would keep the namespace alive.
kill_namespace_leftovers() {
    local own pid
    own=$(readlink /proc/$$/ns/net)
    for entry in /proc/[0-9]*; do
        pid=${entry#/proc/}
        [ "$pid" = "$$" ] && continue
        [ "$(readlink "$entry/ns/net" 2>/dev/null)" = "$own" ] || continue
        kill -KILL "$pid" 2>/dev/null || true
    done
}

run_suite() {
    local suite=$1 out=$2 python=$CACHE/venv/bin/python status=0
    local pytest_args=(-p no:cacheprovider -q -rfEs --timeout "$TEST_TIME_MAX_S")
    case "$suite" in
        py-amqp)
            (cd "$CACHE/src/amqp-$AMQP_VERSION" &&
                RABBITMQ_HOST=127.0.0.1 RABBITMQ_5672_TCP=5672 RABBITMQ_5671_TCP=5671 \
                    timeout "$SUITE_TIME_MAX_S" "$python" -m pytest "${pytest_args[@]}" \
                    --junitxml="$out/py-amqp.xml" t/integration/test_rmq.py) >"$out/py-amqp.log" 2>&1 || status=$?
            ;;
        kombu)
            (cd "$CACHE/src/kombu-$KOMBU_VERSION" &&
                PYTHONPATH="$CACHE/src/amqp-$AMQP_VERSION" \
                    RABBITMQ_HOST=127.0.0.1 RABBITMQ_5672_TCP=5672 \
                    timeout "$SUITE_TIME_MAX_S" "$python" -m pytest "${pytest_args[@]}" \
                    --junitxml="$out/kombu.xml" t/integration/test_py_amqp.py) >"$out/kombu.log" 2>&1 || status=$?
            ;;
        amqplib)
            local file
            for file in channel_api callback_api connect; do
                (cd "$CACHE/src/amqplib-$AMQPLIB_VERSION" &&
                    URL=amqp://localhost timeout "$SUITE_TIME_MAX_S" node --test \
                        --test-timeout=$((TEST_TIME_MAX_S * 1000)) \
                        --test-reporter=junit --test-reporter-destination="$out/amqplib.$file.test.js.xml" \
                        --test-reporter=spec --test-reporter-destination=stdout \
                        "test/$file.test.js") >>"$out/amqplib.log" 2>&1 || status=$?
            done
            ;;
    esac
    echo "  $suite: exit $status" >&2
}

inner() {
    local broker=$1 out=$2 suites=$3 pid=""
    mkdir -p "$out"
    trap 'kill_namespace_leftovers; exit 130' INT TERM
    ip link set lo up
    if [ "$broker" = spatemq ]; then
        # Both loopbacks, as RabbitMQ listens (amqplib's ipv6 test connects to [::1]).
        "$SPATEMQ_BIN" --amqp-port 5672 --bind 127.0.0.1 --bind ::1 --management-port 0 --prometheus-port 0 --data-dir "$out/spatemq-data" \
            --log-level warn >"$out/spatemq.log" 2>&1 &
        pid=$!
        wait_for_port "$pid" || { log "spatemq did not start:"; cat "$out/spatemq.log" >&2; exit 1; }
    else
        RABBITMQ_SH_IPV6=1 "$ROOT/scripts/rabbitmq.sh" start 5672 "$out/rabbitmq" >"$out/rabbitmq-start.log" 2>&1 ||
            { log "RabbitMQ did not start:"; cat "$out/rabbitmq-start.log" >&2; kill_namespace_leftovers; exit 1; }
    fi
    local suite
    for suite in ${suites//,/ }; do
        run_suite "$suite" "$out"
    done
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    else
        "$ROOT/scripts/rabbitmq.sh" stop "$out/rabbitmq" >/dev/null 2>&1 || true
    fi
    kill_namespace_leftovers
}

if [ "${1:-}" = __inner ]; then
    shift
    inner "$@"
    exit 0
fi

# ------------------------------------------------------------------------------------------
# Outside: fetch and unpack the packages, prepare the virtualenv, run each broker's namespace.
# ------------------------------------------------------------------------------------------

with_rabbitmq=0 suites=$ALL_SUITES keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --rabbitmq) with_rabbitmq=1; shift ;;
        --only) suites=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
for suite in ${suites//,/ }; do
    case ",$ALL_SUITES," in *",$suite,"*) ;; *) log "unknown suite $suite (suites: $ALL_SUITES)"; exit 2 ;; esac
done

[ -x "$SPATEMQ_BIN" ] || { log "$SPATEMQ_BIN is missing: build it first (cargo build --release)"; exit 2; }
if [ "$(id -u)" != 0 ] || ! unshare --net true 2>/dev/null; then
    log "needs root: each broker runs in a network namespace of its own (unshare --net)"
    exit 2
fi
command -v ip >/dev/null || { log "ip (iproute2) is missing"; exit 2; }

mkdir -p "$CACHE/downloads" "$CACHE/src"

# Downloads one source distribution with pip (no wheels, no dependencies) and unpacks it.
python_sdist() {
    local name=$1 version=$2 archive="$CACHE/downloads/$1-$2.tar.gz"
    if [ ! -f "$archive" ]; then
        log "downloading $name $version (source distribution)"
        python3 -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps \
            -d "$CACHE/downloads" "$name==$version"
    fi
    if [ ! -d "$CACHE/src/$name-$version" ]; then
        tar -xzf "$archive" -C "$CACHE/src"
    fi
}

npm_tarball() {
    local name=$1 version=$2 archive="$CACHE/downloads/$1-$2.tgz"
    if [ ! -f "$archive" ]; then
        log "downloading $name $version (npm tarball)"
        (cd "$CACHE/downloads" && npm pack --silent "$name@$version" >/dev/null)
    fi
    if [ ! -d "$CACHE/src/$name-$version" ]; then
        mkdir -p "$CACHE/src/$name-$version.tmp"
        tar -xzf "$archive" -C "$CACHE/src/$name-$version.tmp"
        mv "$CACHE/src/$name-$version.tmp/package" "$CACHE/src/$name-$version"
        rmdir "$CACHE/src/$name-$version.tmp"
    fi
}

python_sdist pika "$PIKA_VERSION"
if [ -d "$CACHE/src/pika-$PIKA_VERSION/tests" ]; then
    log "pika $PIKA_VERSION: its source distribution has tests/ now; this script does not run them yet"
else
    echo "pika $PIKA_VERSION: not run: its source distribution on the Python registry ships no tests (only the library)"
fi
case ",$suites," in *,py-amqp,*|*,kombu,*) python_sdist amqp "$AMQP_VERSION" ;; esac
case ",$suites," in *,kombu,*) python_sdist kombu "$KOMBU_VERSION" ;; esac
case ",$suites," in *,amqplib,*)
    npm_tarball amqplib "$AMQPLIB_VERSION"
    node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if [ "$node_major" -lt 20 ]; then
        log "amqplib's tests need Node.js 20 or later (its test runner's JUnit reporter); found ${node_major}"
        exit 2
    fi
    ;;
esac
for required in "amqp-$AMQP_VERSION/t/integration/test_rmq.py" "kombu-$KOMBU_VERSION/t/integration/test_py_amqp.py" \
    "amqplib-$AMQPLIB_VERSION/test/channel_api.test.js"; do
    suite_dir=${required%%/*}
    [ -d "$CACHE/src/$suite_dir" ] || continue
    [ -f "$CACHE/src/$required" ] || { log "$required is not in the registry package"; exit 1; }
done

# shellcheck source=scripts/python_env.sh
source "$ROOT/scripts/python_env.sh"
ensure_venv "$CACHE/venv" "$ROOT/tests/client_suites/requirements.txt" 'import pytest, pytest_timeout, vine'
if [ "$with_rabbitmq" = 1 ]; then
    "$ROOT/scripts/rabbitmq.sh" install  # outside the namespace: it may need the Debian registry
fi

work=$(mktemp -d /tmp/spatemq-client-suites.XXXXXX)
cleanup() {
    local status=$?
    if [ "$keep" = 1 ]; then log "reports and logs kept in $work"; else rm -rf "$work"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

brokers=spatemq
[ "$with_rabbitmq" = 1 ] && brokers=spatemq,rabbitmq
export SPATEMQ_BIN CACHE
for broker in ${brokers//,/ }; do
    log "running $suites against $broker (its own network namespace, 127.0.0.1:5672)"
    unshare --net -- bash "$0" __inner "$broker" "$work/$broker" "$suites"
done

"$CACHE/venv/bin/python" "$ROOT/tests/client_suites/report.py" --results "$work" \
    --doc "$ROOT/docs/client-suites.md" --brokers "$brokers" --suites "$suites"
