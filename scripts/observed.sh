#!/usr/bin/env bash
# What watching the broker costs: `spatemq bench throughput` alone, then with a Prometheus
# scrape every second and the web UI's overview open in headless Chromium (polling live).
#
#   scripts/observed.sh [--runs 3] [--time 10] [--only a,c] [--no-ui]
#
# Scenarios (as scripts/compare.sh and scripts/ab.sh):
#   a  1 publisher → 1 consumer, 16 B, transient, no-ack
#   c  1 → 1, 16 B, persistent, confirm 1000, ack 100, prefetch 1000
# Every run starts a fresh broker (2 shards, loopback, management and Prometheus ports on in
# both cases, so the only difference is being watched) from target/release/spatemq; quiet and
# watched runs take turns (Q W Q W ...), so a drift of the shared machine hits both alike.
# Prints every run, then per scenario both medians and the median of the per-pair ratios
# (watched / quiet), and the broker's CPU time per consumed message (steadier than the rate on a
# shared machine). The UI needs `chromium` and `chromium-driver` (scripts/test.sh installs
# them); without them, or with --no-ui, only the scrape runs. Everything started is stopped by
# PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/target/release/spatemq"
die() { echo "observed.sh: $*" >&2; exit 2; }
RUNS=3; TIME_SECONDS=10; ONLY="a,c"; PORT=5696; UI=1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --time) TIME_SECONDS="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        --no-ui) UI=0; shift ;;
        *) die "unknown argument $1" ;;
    esac
done
[ -x "$BIN" ] || die "build the broker first: cargo build --release"
HTTP_PORT=$((PORT + 10000)); METRICS_PORT=$((PORT + 10001))
PYTHON="$ROOT/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
if [ "$UI" = 1 ] && ! command -v chromedriver >/dev/null 2>&1; then
    echo "observed.sh: chromedriver not found: the UI is left out (scripts/test.sh installs it)" >&2
    UI=0
fi

scenario_args() {
    case "$1" in
        a) echo "-x 1 -y 1 -s 16 --ack 0 --queue observed-a" ;;
        c) echo "-x 1 -y 1 -s 16 --persistent --confirm 1000 --ack 100 --prefetch 1000 --queue observed-c" ;;
        *) die "no scenario '$1' (a or c)" ;;
    esac
}

WORK=$(mktemp -d)
BROKER_PID=""; WATCHERS=()
stop_watchers() {
    for pid in "${WATCHERS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    WATCHERS=()
}
cleanup() {
    stop_watchers
    if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# Scrapes /metrics once a second until killed, and checks each answer is a 200.
scrape_every_second() {
    exec "$PYTHON" - "http://127.0.0.1:$METRICS_PORT/metrics" <<'PY'
import sys, time, urllib.request
url = sys.argv[1]
while True:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
        answer.read()
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
PY
}

# run_once SCENARIO WATCHED → prints the consumed msgs/s of one run
run_once() {
    local scenario="$1" watched="$2" data="$WORK/data-$RANDOM$RANDOM"
    "$BIN" --amqp-port "$PORT" --bind 127.0.0.1 --management-port "$HTTP_PORT" --management-bind 127.0.0.1 \
        --prometheus-port "$METRICS_PORT" --prometheus-bind 127.0.0.1 --data-dir "$data" --shards 2 \
        >"$WORK/broker.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 1 300); do
        grep -q "AMQP listening" "$WORK/broker.log" && grep -q "Prometheus metrics listening" "$WORK/broker.log" &&
            grep -q "management HTTP API listening" "$WORK/broker.log" && break
        kill -0 "$BROKER_PID" 2>/dev/null || die "broker exited: $(tail -3 "$WORK/broker.log")"
        sleep 0.1
    done
    if [ "$watched" = 1 ]; then
        scrape_every_second 2>>"$WORK/watch.log" &
        WATCHERS+=($!)
        if [ "$UI" = 1 ]; then
            "$PYTHON" "$ROOT/tests/python/webdriver.py" hold-overview --url "http://127.0.0.1:$HTTP_PORT/" \
                --user guest --password guest --seconds $((TIME_SECONDS + 30)) >>"$WORK/watch.log" 2>&1 &
            WATCHERS+=($!)
            # The page is open and polling before the bench starts.
            sleep 5
        fi
    fi
    # shellcheck disable=SC2046
    local json cpu_before cpu_after
    cpu_before=$(broker_cpu_ticks)
    json=$(timeout $((TIME_SECONDS + 60)) "$BIN" bench throughput --uri "amqp://guest:guest@127.0.0.1:$PORT" \
        --time "$TIME_SECONDS" --json $(scenario_args "$scenario") 2>"$WORK/bench.log" | tail -1)
    cpu_after=$(broker_cpu_ticks)
    stop_watchers
    kill "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=""
    rm -rf "$data"
    # "rate broker-CPU-ns-per-message"
    python3 -c 'import json,sys,os
result = json.loads(sys.argv[1]); ticks = int(sys.argv[3]) - int(sys.argv[2])
consumed = max(1, result["consumed"])
print(round(result["avg_consume_rate"]), round(ticks / os.sysconf("SC_CLK_TCK") * 1e9 / consumed))' \
        "$json" "$cpu_before" "$cpu_after"
}

# The broker's user + system CPU time so far, in clock ticks.
broker_cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$BROKER_PID/stat"
}

watching="a Prometheus scrape every second"
[ "$UI" = 1 ] && watching="$watching and the web UI's overview open"
echo "# $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); quiet vs watched ($watching); $RUNS runs of ${TIME_SECONDS}s"
IFS=',' read -r -a SCENARIOS <<<"$ONLY"
for scenario in "${SCENARIOS[@]}"; do
    quiet_rates=(); watched_rates=(); quiet_cpus=(); watched_cpus=()
    for run in $(seq 1 "$RUNS"); do
        read -r quiet quiet_cpu <<<"$(run_once "$scenario" 0)"
        read -r watched watched_cpu <<<"$(run_once "$scenario" 1)"
        echo "scenario $scenario run $run: quiet $quiet msgs/s ($quiet_cpu ns broker CPU per message)," \
            "watched $watched msgs/s ($watched_cpu ns)"
        quiet_rates+=("$quiet"); watched_rates+=("$watched"); quiet_cpus+=("$quiet_cpu"); watched_cpus+=("$watched_cpu")
    done
    python3 - "$scenario" "${quiet_rates[*]}" "${watched_rates[*]}" "${quiet_cpus[*]}" "${watched_cpus[*]}" <<'PY'
import statistics, sys
scenario = sys.argv[1]
quiet, watched, quiet_cpu, watched_cpu = ([int(x) for x in arg.split()] for arg in sys.argv[2:6])
ratios = [w / q for q, w in zip(quiet, watched) if q > 0]
print(f"scenario {scenario}: median quiet {statistics.median(quiet):,.0f} msgs/s, median watched "
      f"{statistics.median(watched):,.0f} msgs/s, median ratio watched/quiet {statistics.median(ratios):.3f} "
      f"(pairs: {', '.join(f'{r:.3f}' for r in ratios)}); broker CPU per message, median: quiet "
      f"{statistics.median(quiet_cpu):,.0f} ns, watched {statistics.median(watched_cpu):,.0f} ns")
PY
done
if [ -s "$WORK/watch.log" ] && grep -qi "error\|traceback" "$WORK/watch.log"; then
    echo "observed.sh: a watcher failed:" >&2; tail -20 "$WORK/watch.log" >&2; exit 1
fi
