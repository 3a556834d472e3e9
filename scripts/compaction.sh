#!/usr/bin/env bash
# Disk held by a message log where a trickle of long-lived messages lands among busy traffic,
# with the broker's compaction (and, for comparison, any other broker binary).
#
#   scripts/compaction.sh [--time SECONDS] [--trickle MSGS_PER_S] [--segment-size SIZE]
#
# Starts the release broker (1 shard, a temporary data directory, port 5699), then runs two
# `spatemq bench throughput` clients at once:
#   busy:  persistent 1 KiB messages with confirms, consumed and acked at full speed;
#   idle:  persistent 1 KiB messages at --trickle msg/s to a queue nobody consumes.
# Every 5 s it prints the segment files and bytes under the data directory; at the end the
# busy rate, the idle queue's depth, and the broker's CPU time. SPATEMQ_BIN names the broker
# binary to measure (default: target/release/spatemq, built if missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
TIME=60
TRICKLE=20
SEGMENT_SIZE=64MiB
PORT=5699
while [ $# -gt 0 ]; do
    case "$1" in
        --time) TIME=$2; shift 2 ;;
        --trickle) TRICKLE=$2; shift 2 ;;
        --segment-size) SEGMENT_SIZE=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

if [ -z "${SPATEMQ_BIN:-}" ]; then
    cargo build --release --quiet --bin spatemq
    SPATEMQ_BIN="$ROOT/target/release/spatemq"
fi
BENCH="$ROOT/target/release/spatemq"
[ -x "$BENCH" ] || cargo build --release --quiet --bin spatemq

DATA=$(mktemp -d "${TMPDIR:-/tmp}/spatemq-compaction.XXXXXX")
BROKER_PID=""
cleanup() {
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    rm -rf "$DATA"
}
trap cleanup EXIT

# An older binary may not know --segment-size: only pass it when it is not the default.
EXTRA=()
[ "$SEGMENT_SIZE" != "64MiB" ] && EXTRA=(--segment-size "$SEGMENT_SIZE")
"$SPATEMQ_BIN" --amqp-port "$PORT" --bind 127.0.0.1 --management-port 0 --prometheus-port 0 --data-dir "$DATA/broker" --shards 1 \
    "${EXTRA[@]}" >"$DATA/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 100); do
    grep -q "listening" "$DATA/broker.log" 2>/dev/null && break
    sleep 0.1
done

URI="amqp://guest:guest@127.0.0.1:$PORT"
"$BENCH" bench throughput --uri "$URI" --queue busy --persistent --confirm 1000 --ack 100 --prefetch 1000 \
    --size 1024 --time "$TIME" --json >"$DATA/busy.out" 2>&1 &
BUSY=$!
"$BENCH" bench throughput --uri "$URI" --queue idle --persistent --consumers 0 --rate "$TRICKLE" \
    --size 1024 --time "$TIME" --json >"$DATA/idle.out" 2>&1 &
IDLE=$!

printf '%6s %9s %12s\n' "second" "segments" "MiB on disk"
for ((second = 5; second <= TIME; second += 5)); do
    sleep 5
    segments=$(find "$DATA/broker/messages" -name '*.segment' 2>/dev/null | wc -l)
    mib=$(( $(du -sb "$DATA/broker/messages" 2>/dev/null | cut -f1) / 1048576 ))
    printf '%6d %9d %12d\n' "$second" "$segments" "$mib"
done
wait "$BUSY" "$IDLE" || true
sleep 3
segments=$(find "$DATA/broker/messages" -name '*.segment' | wc -l)
mib=$(( $(du -sb "$DATA/broker/messages" | cut -f1) / 1048576 ))
printf '%6s %9d %12d\n' "end" "$segments" "$mib"
rate=$(tail -n 1 "$DATA/busy.out" | sed -n 's/.*"avg_consume_rate":\([0-9.]*\).*/\1/p')
idle=$(tail -n 1 "$DATA/idle.out" | sed -n 's/.*"avg_pub_rate":\([0-9.]*\).*/\1/p')
cpu=$(awk '{ print ($14 + $15) / 100 }' "/proc/$BROKER_PID/stat")
echo "busy queue: ${rate:-?} msg/s consumed; idle trickle: ${idle:-?} msg/s; broker CPU ${cpu} s"
