#!/usr/bin/env bash
# A CPU flame graph of the broker during one of the headline bench scenarios.
#
#   scripts/flamegraph.sh --scenario a --out benches/flamegraphs/a-after.svg
#   scripts/flamegraph.sh --scenario c --bin OTHER/spatemq --out c-before.svg --seconds 8
#
# Starts the broker (`--bin`, default target/release/spatemq, which carries debug line info:
# the release profile has `debug = 1`) with a fresh data directory on a spare loopback port,
# runs the scenario's `spatemq bench throughput` against it, samples the broker's threads with
# `perf record --call-graph dwarf` for `--seconds` in the middle of the run, and folds the
# stacks into an SVG with inferno. The load generator always comes from target/release, so two
# broker builds are measured under the same load. Scenarios as in scripts/compare.sh:
#   a  1 → 1, 16 B, transient, no-ack
#   c  1 → 1, 16 B, persistent, confirm 1000, ack 100, prefetch 1000
# Installs what it needs when missing: perf (Debian package linux-perf) and inferno (cargo).
# Everything it starts it stops by PID on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
BIN="$ROOT/target/release/spatemq"
BENCH_BIN="$ROOT/target/release/spatemq"
SCENARIO=a
OUT=""
SECONDS_SAMPLED=5
FREQUENCY=999
PORT=5697

die() { echo "flamegraph.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --scenario) SCENARIO=${2:?}; shift 2 ;;
        --bin) BIN=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        --seconds) SECONDS_SAMPLED=${2:?}; shift 2 ;;
        --port) PORT=${2:?}; shift 2 ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[ -n "$OUT" ] || die "--out FILE.svg is required"
case "$SCENARIO" in
    a) LOAD=(-x 1 -y 1 -s 16 --ack 0 --queue flame-a) ; TITLE="a: 1→1, 16 B, transient, no-ack" ;;
    c) LOAD=(-x 1 -y 1 -s 16 --persistent --confirm 1000 --ack 100 --prefetch 1000 --queue flame-c)
       TITLE="c: 1→1, 16 B, persistent, confirm 1000, ack 100" ;;
    *) die "--scenario must be a or c" ;;
esac
[ -x "$BIN" ] || die "$BIN is not built (cargo build --release)"
[ -x "$BENCH_BIN" ] || die "$BENCH_BIN is not built (cargo build --release)"

if ! command -v perf >/dev/null 2>&1; then
    echo "perf is missing: installing the Debian package linux-perf" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q linux-perf >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v inferno-flamegraph >/dev/null 2>&1; then
    echo "inferno is missing: cargo install inferno" >&2
    cargo install --locked inferno >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/spatemq-flame.XXXXXX")
BROKER_PID=""
BENCH_PID=""
cleanup() {
    [ -n "$BENCH_PID" ] && kill "$BENCH_PID" 2>/dev/null || true
    if [ -n "$BROKER_PID" ]; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" --amqp-port "$PORT" --bind 127.0.0.1 --data-dir "$WORK/data" >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 "$BROKER_PID" 2>/dev/null || die "the broker exited: $(tail -n 5 "$WORK/broker.log")"
    sleep 0.1
done

RUN_SECONDS=$((SECONDS_SAMPLED + 4))
"$BENCH_BIN" bench throughput --uri "amqp://guest:guest@127.0.0.1:$PORT" "${LOAD[@]}" -z "$RUN_SECONDS" --json \
    >"$WORK/bench.json" 2>"$WORK/bench.err" &
BENCH_PID=$!
sleep 2
perf record -q -F "$FREQUENCY" --call-graph dwarf,16384 -p "$BROKER_PID" -o "$WORK/perf.data" \
    -- sleep "$SECONDS_SAMPLED" 2>"$WORK/perf.err" || die "perf record failed: $(tail -n 3 "$WORK/perf.err")"
wait "$BENCH_PID" || die "the bench failed: $(tail -n 5 "$WORK/bench.err")"
BENCH_PID=""

perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf >"$WORK/folded"
RESULT=$(tail -n 1 "$WORK/bench.json")
RATE=$(python3 -c 'import json, sys; print("%.0fk msg/s consumed" % (json.loads(sys.argv[1])["avg_consume_rate"] / 1e3))' "$RESULT")
mkdir -p "$(dirname "$OUT")"
inferno-flamegraph --minwidth 0.5 --title "SpateMQ $("$BIN" --version 2>/dev/null | tail -n 1), scenario $TITLE, $RATE" \
    --subtitle "perf record -F $FREQUENCY --call-graph dwarf, broker threads only, $SECONDS_SAMPLED s" \
    <"$WORK/folded" >"$OUT"
echo "$OUT: $(wc -l <"$WORK/folded") distinct stacks; bench: $RESULT"
# The functions with the most samples of their own (leaf frames), for a text summary.
python3 - "$WORK/folded" <<'EOF_SUMMARY'
import collections, re, sys
own, total = collections.Counter(), 0
with open(sys.argv[1]) as folded:
    for line in folded:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        leaf = re.sub(r"::h[0-9a-f]{16}$", "", stack.rsplit(";", 1)[-1])
        own[leaf] += int(count)
        total += int(count)
print(f"top frames by own samples (of {total}):")
for leaf, count in own.most_common(15):
    print(f"{100 * count / total:5.1f}%  {leaf[:110]}")
EOF_SUMMARY
