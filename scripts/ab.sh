#!/usr/bin/env bash
# Two builds of SpateMQ side by side on the headline scenarios: did a change cost speed?
#
#   scripts/ab.sh OLD_BINARY NEW_BINARY [--runs 3] [--time 10] [--only a,c]
#
# Scenarios (the same bench arguments as scripts/compare.sh):
#   a  1 publisher → 1 consumer, 16 B, transient, no-ack
#   c  1 → 1, 16 B, persistent, confirm 1000, ack 100, prefetch 1000
#   h  1 publisher → 1,000 queues → 1 consumer (one basic.consume per queue), 16 B, no-ack
# Each run starts a fresh broker (empty data directory, 2 shards, loopback) from one binary,
# drives it with NEW_BINARY's `spatemq bench`, and stops it; the two binaries take turns run by
# run (A B A B ...), so a drift of the shared machine hits both alike. Prints every run, then
# per scenario the median consumed rate of each binary and the median of the per-pair ratios
# (new / old). Everything started is stopped by PID on exit; each wait is bounded.
set -euo pipefail

die() { echo "ab.sh: $*" >&2; exit 2; }
[ $# -ge 2 ] || die "usage: scripts/ab.sh OLD_BINARY NEW_BINARY [--runs N] [--time S] [--only a,c]"
OLD=$(realpath "$1"); NEW=$(realpath "$2"); shift 2
RUNS=3; TIME_SECONDS=10; ONLY="a,c"; PORT=5697
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --time) TIME_SECONDS="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        *) die "unknown argument $1" ;;
    esac
done
[ -x "$OLD" ] && [ -x "$NEW" ] || die "both binaries must exist and be executable"

scenario_args() {
    case "$1" in
        a) echo "-x 1 -y 1 -s 16 --ack 0 --queue ab-a" ;;
        c) echo "-x 1 -y 1 -s 16 --persistent --confirm 1000 --ack 100 --prefetch 1000 --queue ab-c" ;;
        h) echo "-x 1 -y 1 -s 16 --ack 0 --queue-pattern ab-h-% --queue-pattern-from 1 --queue-pattern-to 1000" ;;
        *) die "no scenario '$1' (a, c or h)" ;;
    esac
}

WORK=$(mktemp -d)
BROKER_PID=""
cleanup() {
    if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# run_once BINARY SCENARIO → prints the consumed msgs/s of one run
run_once() {
    local binary="$1" scenario="$2" data="$WORK/data-$RANDOM$RANDOM"
    "$binary" --amqp-port "$PORT" --bind 127.0.0.1 --management-port 0 --prometheus-port 0 --data-dir "$data" --shards 2 >"$WORK/broker.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 1 300); do
        grep -q "AMQP listening" "$WORK/broker.log" && break
        kill -0 "$BROKER_PID" 2>/dev/null || die "broker $binary exited: $(tail -3 "$WORK/broker.log")"
        sleep 0.1
    done
    # shellcheck disable=SC2046
    local json
    json=$(timeout $((TIME_SECONDS + 60)) "$NEW" bench throughput --uri "amqp://guest:guest@127.0.0.1:$PORT" \
        --time "$TIME_SECONDS" --json $(scenario_args "$scenario") 2>"$WORK/bench.log" | tail -1)
    kill "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=""
    rm -rf "$data"
    python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["avg_consume_rate"]))' "$json"
}

echo "# $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); old=$OLD new=$NEW; $RUNS runs of ${TIME_SECONDS}s"
IFS=',' read -r -a SCENARIOS <<<"$ONLY"
for scenario in "${SCENARIOS[@]}"; do
    old_rates=(); new_rates=()
    for run in $(seq 1 "$RUNS"); do
        old_rate=$(run_once "$OLD" "$scenario"); new_rate=$(run_once "$NEW" "$scenario")
        echo "scenario $scenario run $run: old $old_rate msgs/s, new $new_rate msgs/s"
        old_rates+=("$old_rate"); new_rates+=("$new_rate")
    done
    python3 - "$scenario" "${old_rates[*]}" "${new_rates[*]}" <<'EOF'
import statistics, sys
scenario, old, new = sys.argv[1], [int(x) for x in sys.argv[2].split()], [int(x) for x in sys.argv[3].split()]
ratios = [n / o for o, n in zip(old, new) if o > 0]
print(f"scenario {scenario}: median old {statistics.median(old):,.0f} msgs/s, median new "
      f"{statistics.median(new):,.0f} msgs/s, median ratio new/old {statistics.median(ratios):.2f} "
      f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)})")
EOF
done
