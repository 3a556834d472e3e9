#!/usr/bin/env bash
# Scenario a (1 publisher → 1 consumer, 16 B, transient, no-ack) with the two connections put
# on chosen shards, to take apart what placement does to it: the broker serves a connection on
# the shard with the fewest connections, so a plain run puts the publisher and the consumer on
# different shards, and which of them lands on the queue's shard is chance. `--size N` sends
# N-byte bodies (scenario b: 1024); `--durable` runs scenario c instead (persistent, 1,000
# confirms in flight, acks by 100 with a prefetch of 1,000).
#
#   scripts/placement.sh [--bin BROKER] [--runs 2] [--seconds 6] [--size 16] [--durable] [--only C:P]...
#
# Starts the broker (`--bin`, default target/release/spatemq) with 2 shards and a fresh data
# directory on a spare loopback port and `--per-shard-listeners`, once per run and placement.
# The consumer and the publisher are two `spatemq bench throughput` processes (-x 0 -y 1 and
# -x 1 -y 0, queue "q"), each connected to its shard's own port, which never moves a
# connection. Then it reads the queue's delivered and published counters over `--seconds` (after 2 s
# of warm-up) and its ready count at the end. A ready count in the millions means the consumer
# fell behind and the queue paged out. `--only C:P` (repeatable) runs only the placements with
# the consumer on shard C and the publisher on shard P. Prints one line per run:
#   consumer@C publisher@P queue@Q delivered/s published/s ready held
# where held counts the times the publisher waited for a deep queue's shard
# (`spatemq_shard_pressure_pauses_total`).
# Everything it starts it stops by PID on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="$(pwd)/target/release/spatemq"
RUNS=2
MEASURE_SECONDS=6
PORT=5698
METRICS_PORT=15698
PLACEMENTS=()
SIZE=16
DURABLE=0

die() { echo "placement.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$(realpath "${2:?}"); shift 2 ;;
        --runs) RUNS=${2:?}; shift 2 ;;
        --seconds) MEASURE_SECONDS=${2:?}; shift 2 ;;
        --port) PORT=${2:?}; METRICS_PORT=$((PORT + 10000)); shift 2 ;;
        --only) PLACEMENTS+=("${2%%:*} ${2##*:}"); shift 2 ;;
        --size) SIZE=${2:?}; shift 2 ;;
        --durable) DURABLE=1; shift ;;
        -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[ -x "$BIN" ] || die "$BIN is not built (cargo build --release)"
if [ "$DURABLE" = 1 ]; then
    CONSUMER_ARGS=(--persistent --ack 100 --prefetch 1000)
    PUBLISHER_ARGS=(--persistent --confirm 1000)
    SCENARIO="$SIZE B, persistent, confirm 1000, ack 100"
else
    CONSUMER_ARGS=(--ack 0)
    PUBLISHER_ARGS=(--ack 0)
    SCENARIO="$SIZE B, transient, no-ack"
fi
command -v curl >/dev/null || die "curl is needed to read the broker's metrics"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/spatemq-placement.XXXXXX")
PIDS=()
stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT

metric() { # NAME [shard]: the sum of a metric's samples (of one shard when given)
    local pattern="^$1[{ ]"
    [ $# -ge 2 ] && pattern="^$1\\{shard=\"$2\"\\}"
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E "$pattern" | awk '{s += $2} END {printf "%d", s}'
}

# Starts `spatemq bench throughput ARGS...` on shard $1's own port, and waits until the
# broker counts its connection there. It runs well past the measurement and is stopped then.
bench_on() {
    local shard=$1; shift
    local port before
    for _ in $(seq 1 50); do
        port=$(sed -n "s/^spatemq: shard $shard listening on 127.0.0.1:\([0-9]*\)$/\1/p" "$WORK/broker.out")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || die "the broker did not print shard $shard's own port"
    before=$(metric spatemq_shard_connections "$shard")
    "$BIN" bench throughput --uri "amqp://guest:guest@127.0.0.1:$port" "$@" -s "$SIZE" --queue q \
        -z $((MEASURE_SECONDS + 60)) >/dev/null 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 1 50); do
        [ "$(metric spatemq_shard_connections "$shard")" -gt "$before" ] && return 0
        sleep 0.1
    done
    die "the bench did not connect to shard $shard"
}

run() { # consumer shard, publisher shard
    rm -rf "$WORK/data"
    "$BIN" --amqp-port "$PORT" --bind 127.0.0.1 --data-dir "$WORK/data" --shards 2 --per-shard-listeners \
        --management-port 0 --prometheus-port "$METRICS_PORT" --log-level warn >"$WORK/broker.out" 2>"$WORK/broker.log" &
    PIDS+=("$!")
    for _ in $(seq 1 100); do
        curl -s "http://127.0.0.1:$METRICS_PORT/metrics" >/dev/null 2>&1 && break
        sleep 0.1
    done
    bench_on "$1" -x 0 -y 1 "${CONSUMER_ARGS[@]}"
    bench_on "$2" -x 1 -y 0 "${PUBLISHER_ARGS[@]}"
    local queue_shard=0
    [ "$(metric spatemq_shard_queues 1)" -gt 0 ] && queue_shard=1
    sleep 2
    local delivered published
    delivered=$(metric spatemq_queue_messages_delivered_total)
    published=$(metric rabbitmq_queue_messages_published_total)
    sleep "$MEASURE_SECONDS"
    delivered=$(( ($(metric spatemq_queue_messages_delivered_total) - delivered) / MEASURE_SECONDS ))
    published=$(( ($(metric rabbitmq_queue_messages_published_total) - published) / MEASURE_SECONDS ))
    echo "consumer@$1 publisher@$2 queue@$queue_shard delivered/s=$delivered published/s=$published" \
        "ready=$(metric rabbitmq_queue_messages_ready) held=$(metric spatemq_shard_pressure_pauses_total)"
    stop_all
}

echo "# $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); $BIN; $SCENARIO; $RUNS runs of ${MEASURE_SECONDS}s per placement"
for _ in $(seq 1 "$RUNS"); do
    [ ${#PLACEMENTS[@]} -gt 0 ] || PLACEMENTS=("0 0" "0 1" "1 0" "1 1")
    for placement in "${PLACEMENTS[@]}"; do
        # shellcheck disable=SC2086
        run $placement
    done
done
