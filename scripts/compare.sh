#!/usr/bin/env bash
# Side-by-side comparison of SpateMQ and RabbitMQ on this machine, with the project's own load
# generator (`spatemq bench`), in one command. Prints a markdown table (scenario | SpateMQ |
# RabbitMQ | ratio), the exact bench commands, the machine, and the CPU seconds the bench and
# each broker spent, so a figure in the README can always be traced to how it was made.
#
# Why this shape: generic clients (pika, amqplib) saturate long before a fast broker does, so
# both brokers are driven by the same bench binary; each scenario runs against a freshly
# started broker with an empty data directory (no backlog or memory alarm carried over from the
# previous scenario), and only one broker runs at a time, so neither steals CPU from the other.
# SpateMQ and RabbitMQ take turns per scenario, so slow drift of the machine hits both alike.
#
#   scripts/compare.sh                     every scenario, 10 s each, both brokers
#   scripts/compare.sh --only a,c --time 30
#   scripts/compare.sh --runs 3            every scenario three times in turn; medians and per-run ratios
#   scripts/compare.sh --spatemq-only --json results.json
#   scripts/compare.sh --dry-run           print what would run, start nothing
#   scripts/compare.sh --brokers-only      start, check and stop each broker, run no bench
#
# Everything it starts (brokers, bench runs) it stops by PID on exit, Ctrl-C, SIGTERM or failure. Every
# wait is bounded: broker start 30 s (RabbitMQ: 60 s, in scripts/rabbitmq.sh), each bench run
# --time + 60 s, broker stop 30 s then SIGKILL.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
BIN="$ROOT/target/release/spatemq"
BENCH_BIN=""
RABBITMQ_SH="$ROOT/scripts/rabbitmq.sh"

TIME_SECONDS=10
RUNS=1
ROUND=1
ONLY=""
SPATEMQ_ONLY=0
JSON_OUT=""
DRY_RUN=0
BROKERS_ONLY=0
KEEP=0
SPATEMQ_PORT=5695
RABBITMQ_PORT=5696
WORK_DIR=""
SETTLE_SECONDS=2
BROKER_START_TIMEOUT=30
BROKER_STOP_TIMEOUT=30
BENCH_TIMEOUT_EXTRA=60

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --time S              seconds per throughput/latency run [default: $TIME_SECONDS]
  --only LIST           scenarios to run, e.g. a,c,f [default: all of a-i]
  --runs N              run the selected scenarios N times in turn; the table gives each
                        cell's median and every run's figure and ratio [default: 1]
  --spatemq-only        skip RabbitMQ
  --json FILE           also write the raw results (every bench JSON line) to FILE
  --dry-run             print the commands that would run; start and build nothing
  --brokers-only        start each broker, check it answers AMQP, stop it; no bench
  --spatemq-port P      [default: $SPATEMQ_PORT]
  --rabbitmq-port P     [default: $RABBITMQ_PORT; its Erlang distribution uses P+20000]
  --bench-bin PATH      run the load from this spatemq binary [default: the broker's own]
  --work-dir DIR        broker data and logs go here [default: a new temporary directory]
  --keep                keep the work directory (logs, data) after the run
  -h, --help            this text

Scenarios:
EOF
    local id
    for id in "${SCENARIOS[@]}"; do
        printf '  %s  %s\n' "$id" "${SCENARIO_TITLE[$id]}"
    done
}

die() {
    echo "compare.sh: $*" >&2
    exit 2
}

log() { echo "[compare] $*" >&2; }

# ---------------------------------------------------------------------------------------------
# The scenario matrix. A scenario is one or more runs; each run is one row of the table.
# Throughput and latency runs get "-z <time> --json" appended, count runs "--json".

SCENARIOS=(a b c d e f g h i)
declare -A SCENARIO_TITLE=(
    [a]="1 publisher → 1 consumer, 16 B, transient, no-ack"
    [b]="1 publisher → 1 consumer, 1024 B, transient, no-ack"
    [c]="1 → 1, 16 B, persistent, confirms every 1000, acks every 100"
    [d]="fanout: 1 publisher → amq.fanout → 4 queues, 4 consumers, 16 B, no-ack"
    [e]="8 publishers → 8 consumers over 8 queues, 16 B, no-ack"
    [f]="latency at a fixed 10k and 100k msg/s, 16 B (p50/p99/p99.9); and persistent with confirms at 100k"
    [g]="declare 1000 queues; open 1000 connections"
    [h]="1 publisher → 1000 queues → 1 consumer (one basic.consume per queue), 16 B, no-ack"
    [i]="1000 connections: 500 publishers → 500 queues → 500 consumers, 16 B, no-ack"
)

# scenario_runs ID: lines "row_id|row_label|subcommand|arguments". Queue names differ per row so
# nothing of one row can show up in another even on a reused broker.
scenario_runs() {
    case "$1" in
        a) echo "a|a: 1→1, 16 B, transient, no-ack|throughput|-x 1 -y 1 -s 16 --ack 0 --queue cmp-a" ;;
        b) echo "b|b: 1→1, 1024 B, transient, no-ack|throughput|-x 1 -y 1 -s 1024 --ack 0 --queue cmp-b" ;;
        # A prefetch at least the ack batch: a consumer that may hold fewer unacked messages than
        # it acks at once would stall waiting for its own ack.
        c) echo "c|c: 1→1, 16 B, persistent, confirm 1000, ack 100|throughput|-x 1 -y 1 -s 16 --persistent --confirm 1000 --ack 100 --prefetch 1000 --queue cmp-c" ;;
        d) echo "d|d: fanout to 4 queues, 16 B, no-ack|throughput|-x 1 -y 4 -s 16 --ack 0 --exchange amq.fanout --queue-pattern fan-% --queue-pattern-from 1 --queue-pattern-to 4" ;;
        e) echo "e|e: 8→8 over 8 queues, 16 B, no-ack|throughput|-x 8 -y 8 -s 16 --ack 0 --queue-pattern q-% --queue-pattern-from 1 --queue-pattern-to 8" ;;
        f)
            echo "f1|f: latency at 10k msg/s, 16 B|throughput|-x 1 -y 1 -s 16 --ack 0 --rate 10000 --measure-latency --queue cmp-f1"
            echo "f2|f: latency at 100k msg/s, 16 B|throughput|-x 1 -y 1 -s 16 --ack 0 --rate 100000 --measure-latency --queue cmp-f2"
            echo "f3|f: latency at 100k msg/s, 16 B, persistent, confirm 1000, ack 100|throughput|-x 1 -y 1 -s 16 --persistent --confirm 1000 --ack 100 --prefetch 1000 --rate 100000 --measure-latency --queue cmp-f3"
            ;;
        g)
            echo "g1|g: declare 1000 queues|queue-count|--queues 1000"
            echo "g2|g: open 1000 connections|connection-count|--connections 1000"
            ;;
        h) echo "h|h: 1→1000 queues→1, 16 B, no-ack|throughput|-x 1 -y 1 -s 16 --ack 0 --queue-pattern cmp-h-% --queue-pattern-from 1 --queue-pattern-to 1000" ;;
        i) echo "i|i: 500→500 over 500 queues (1000 connections), 16 B, no-ack|throughput|-x 500 -y 500 -s 16 --ack 0 --queue-pattern cmp-i-% --queue-pattern-from 1 --queue-pattern-to 500" ;;
        *) return 1 ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Arguments

while [ $# -gt 0 ]; do
    case "$1" in
        --time)
            [ $# -ge 2 ] || die "--time needs seconds"
            TIME_SECONDS=$2
            shift
            ;;
        --only)
            [ $# -ge 2 ] || die "--only needs a list such as a,c"
            ONLY=$2
            shift
            ;;
        --runs)
            [ $# -ge 2 ] || die "--runs needs a count"
            RUNS=$2
            shift
            ;;
        --spatemq-only) SPATEMQ_ONLY=1 ;;
        --json)
            [ $# -ge 2 ] || die "--json needs a file name"
            JSON_OUT=$2
            shift
            ;;
        --dry-run) DRY_RUN=1 ;;
        --brokers-only) BROKERS_ONLY=1 ;;
        --keep) KEEP=1 ;;
        --spatemq-port)
            [ $# -ge 2 ] || die "--spatemq-port needs a port"
            SPATEMQ_PORT=$2
            shift
            ;;
        --rabbitmq-port)
            [ $# -ge 2 ] || die "--rabbitmq-port needs a port"
            RABBITMQ_PORT=$2
            shift
            ;;
        --bench-bin)
            [ $# -ge 2 ] || die "--bench-bin needs a path"
            BENCH_BIN=$2
            shift
            ;;
        --work-dir)
            [ $# -ge 2 ] || die "--work-dir needs a directory"
            WORK_DIR=$2
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

is_count() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac }
if ! is_count "$RUNS" || [ "$RUNS" -lt 1 ] || [ "$RUNS" -gt 20 ]; then
    die "--runs must be a whole number from 1 to 20"
fi
if ! is_count "$TIME_SECONDS" || [ "$TIME_SECONDS" -lt 1 ]; then
    die "--time must be a whole number of seconds ≥ 1"
fi
for port in "$SPATEMQ_PORT" "$RABBITMQ_PORT"; do
    if ! is_count "$port" || [ "$port" -lt 1 ] || [ "$port" -gt 45535 ]; then
        die "ports must be 1-45535 (RabbitMQ's distribution port is port+20000), got $port"
    fi
done
[ "$SPATEMQ_PORT" != "$RABBITMQ_PORT" ] || die "--spatemq-port and --rabbitmq-port must differ"
BENCH_BIN=${BENCH_BIN:-$BIN}

SELECTED=()
if [ -z "$ONLY" ]; then
    SELECTED=("${SCENARIOS[@]}")
else
    IFS=',' read -ra wanted <<<"$ONLY"
    for id in "${wanted[@]}"; do
        id=${id// /}
        [ -n "$id" ] || continue
        scenario_runs "$id" >/dev/null || die "--only: no scenario '$id' (choose from ${SCENARIOS[*]})"
        SELECTED+=("$id")
    done
    [ "${#SELECTED[@]}" -gt 0 ] || die "--only selected no scenario"
fi

BROKERS=(spatemq)
[ "$SPATEMQ_ONLY" = 1 ] || BROKERS+=(rabbitmq)

# ---------------------------------------------------------------------------------------------
# Processes: every PID this script starts is remembered here and stopped in cleanup().

SPATEMQ_PID=""
RABBITMQ_DIR=""
BENCH_PID=""
CREATED_WORK_DIR=0

alive() {
    # A reaped or zombie process is not alive; kill -0 alone says a zombie is.
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

amqp_ready() {
    # True when 127.0.0.1:$1 answers the AMQP 0-9-1 header with a connection.start frame.
    python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as sock:
    sock.settimeout(2)
    sock.sendall(b"AMQP\x00\x00\x09\x01")
    head = b""
    while len(head) < 7:
        chunk = sock.recv(7 - len(head))
        if not chunk:
            sys.exit(1)
        head += chunk
sys.exit(0 if head[0] == 1 and head[1:3] == b"\x00\x00" else 1)
EOF
}

# tree_cpu_seconds PID: user+system CPU seconds of PID and all its descendants.
tree_cpu_seconds() {
    python3 - "$1" <<'EOF'
import os, sys
root = int(sys.argv[1])
ticks = os.sysconf("SC_CLK_TCK")
children, cpu = {}, {}
for name in os.listdir("/proc"):
    if not name.isdigit():
        continue
    try:
        with open(f"/proc/{name}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    pid = int(name)
    children.setdefault(int(fields[1]), []).append(pid)
    cpu[pid] = int(fields[11]) + int(fields[12])
total, todo = 0, [root]
while todo:
    pid = todo.pop()
    total += cpu.get(pid, 0)
    todo.extend(children.get(pid, []))
print(f"{total / ticks:.2f}")
EOF
}

stop_bench() {
    if alive "$BENCH_PID"; then
        # timeout(1) passes SIGTERM on to the bench.
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        local deadline=$((SECONDS + 10))
        while alive "$BENCH_PID" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        alive "$BENCH_PID" && kill -KILL "$BENCH_PID" 2>/dev/null
    fi
    BENCH_PID=""
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_bench
    [ -n "$SPATEMQ_PID" ] && stop_spatemq
    [ -n "$RABBITMQ_DIR" ] && stop_rabbitmq
    # A failed run keeps its logs: the report points into the work directory.
    if [ "$CREATED_WORK_DIR" = 1 ] && [ "$KEEP" = 0 ] && [ "$status" = 0 ] && [ -n "$WORK_DIR" ]; then
        rm -rf "$WORK_DIR"
    elif [ -n "$WORK_DIR" ] && [ "$DRY_RUN" = 0 ]; then
        log "logs and data kept in $WORK_DIR"
    fi
    exit "$status"
}

# ---------------------------------------------------------------------------------------------
# Brokers

spatemq_command() { # DATA_DIR
    printf '%s --amqp-port %s --bind 127.0.0.1 --data-dir %s' "${BIN#"$ROOT"/}" "$SPATEMQ_PORT" "$1"
}

start_spatemq() { # DIR
    local dir=$1
    mkdir -p "$dir"
    if port_open "$SPATEMQ_PORT"; then
        # The broker binds with SO_REUSEPORT, so a second one would start "fine" and share the
        # port with whatever is there: refuse instead.
        log "port $SPATEMQ_PORT is already in use; pick another with --spatemq-port"
        return 1
    fi
    "$BIN" --amqp-port "$SPATEMQ_PORT" --bind 127.0.0.1 --management-port 0 --prometheus-port 0 --data-dir "$dir/data" \
        </dev/null >"$dir/spatemq.log" 2>&1 &
    SPATEMQ_PID=$!
    local deadline=$((SECONDS + BROKER_START_TIMEOUT))
    until amqp_ready "$SPATEMQ_PORT"; do
        if ! alive "$SPATEMQ_PID"; then
            log "SpateMQ exited during start-up; its log:"
            tail -n 30 "$dir/spatemq.log" >&2 || true
            SPATEMQ_PID=""
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "SpateMQ did not answer AMQP on port $SPATEMQ_PORT within $BROKER_START_TIMEOUT s"
            stop_spatemq
            return 1
        fi
        sleep 0.1
    done
    log "SpateMQ up on 127.0.0.1:$SPATEMQ_PORT (pid $SPATEMQ_PID)"
}

stop_spatemq() {
    local pid=$SPATEMQ_PID status=0
    SPATEMQ_PID=""
    [ -n "$pid" ] || return 0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + BROKER_STOP_TIMEOUT))
        while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        if alive "$pid"; then
            log "SpateMQ (pid $pid) still running $BROKER_STOP_TIMEOUT s after SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || status=$?
    # The kernel tears an io_uring instance down after the process is gone, and the listening
    # socket goes with it: about a millisecond here. Wait for it so the next start finds the
    # port free.
    local deadline=$((SECONDS + 5))
    while port_open "$SPATEMQ_PORT" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
    if [ "$status" != 0 ]; then
        log "SpateMQ (pid $pid) exited with status $status (0 expected after SIGTERM)"
    else
        log "SpateMQ stopped (pid $pid, exit 0)"
    fi
}

start_rabbitmq() { # DIR
    RABBITMQ_DIR=$1
    "$RABBITMQ_SH" start "$RABBITMQ_PORT" "$RABBITMQ_DIR"
}

stop_rabbitmq() {
    local dir=$RABBITMQ_DIR
    RABBITMQ_DIR=""
    [ -n "$dir" ] || return 0
    "$RABBITMQ_SH" stop "$dir" || log "stopping RabbitMQ in $dir failed"
}

# broker_pid NAME: the PID whose process tree is the broker (for CPU accounting).
broker_pid() {
    case "$1" in
        spatemq) echo "$SPATEMQ_PID" ;;
        rabbitmq) cat "$RABBITMQ_DIR/rabbitmq.pid" ;;
    esac
}

broker_port() {
    case "$1" in
        spatemq) echo "$SPATEMQ_PORT" ;;
        rabbitmq) echo "$RABBITMQ_PORT" ;;
    esac
}

start_broker() { # NAME DIR
    case "$1" in
        spatemq) start_spatemq "$2" ;;
        rabbitmq) start_rabbitmq "$2" ;;
    esac
}

stop_broker() {
    case "$1" in
        spatemq) stop_spatemq ;;
        rabbitmq) stop_rabbitmq ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Bench runs

# bench_command SUBCOMMAND ARGUMENTS PORT: sets BENCH_COMMAND to the full bench command.
bench_command() {
    local subcommand=$1 arguments=$2 port=$3
    local uri="amqp://guest:guest@127.0.0.1:$port"
    local words
    read -ra words <<<"$arguments"
    BENCH_COMMAND=("$BENCH_BIN" bench "$subcommand" --uri "$uri" "${words[@]}")
    if [ "$subcommand" = throughput ]; then
        BENCH_COMMAND+=(-z "$TIME_SECONDS")
    fi
    BENCH_COMMAND+=(--json)
}

show_command() {
    local shown word
    shown=${1#"$ROOT"/}
    shift
    for word in "$@"; do
        case "$word" in
            *%* | *' '*) shown+=" '$word'" ;;
            *) shown+=" $word" ;;
        esac
    done
    echo "$shown"
}

# run_bench BROKER ROW_ID LABEL SUBCOMMAND ARGUMENTS: one bench run, appended to results.jsonl.
run_bench() {
    local broker=$1 row=$2 label=$3 subcommand=$4 arguments=$5
    local dir="$WORK_DIR/$row-$broker-r$ROUND" rc=0
    bench_command "$subcommand" "$arguments" "$(broker_port "$broker")"
    local shown
    shown=$(show_command "${BENCH_COMMAND[@]}")
    log "$broker: $shown"
    local pid cpu_before cpu_after started ended
    pid=$(broker_pid "$broker")
    cpu_before=$(tree_cpu_seconds "$pid")
    started=$(date +%s.%N)
    timeout --kill-after=10 "$((TIME_SECONDS + BENCH_TIMEOUT_EXTRA))" "${BENCH_COMMAND[@]}" \
        </dev/null >"$dir/bench.out" 2>"$dir/bench.err" &
    BENCH_PID=$!
    wait "$BENCH_PID" || rc=$?
    BENCH_PID=""
    ended=$(date +%s.%N)
    cpu_after=$(tree_cpu_seconds "$pid")
    if [ "$rc" != 0 ]; then
        local why="exit $rc"
        [ "$rc" = 124 ] && why="timed out after $((TIME_SECONDS + BENCH_TIMEOUT_EXTRA)) s"
        log "$broker: bench failed ($why); last lines of its stderr:"
        tail -n 10 "$dir/bench.err" >&2 || true
    fi
    python3 - "$WORK_DIR/results.jsonl" "$dir/bench.out" "$row" "$label" "$broker" "$shown" \
        "$rc" "$cpu_before" "$cpu_after" "$started" "$ended" "$dir/bench.err" "$ROUND" <<'EOF'
import json, sys
results, out, row, label, broker, command, rc, cpu_before, cpu_after, started, ended, log, round_ = sys.argv[1:]
result, problem = None, None
try:
    with open(out) as file:
        lines = [line for line in file.read().splitlines() if line.strip()]
    if lines:
        result = json.loads(lines[-1])
        if not isinstance(result, dict):
            result, problem = None, "last stdout line is not a JSON object"
    else:
        problem = "no output on stdout"
except (OSError, ValueError) as error:
    problem = f"last stdout line is not JSON: {error}"
record = {
    "row": row, "label": label, "broker": broker, "command": command, "exit_code": int(rc),
    "result": result, "problem": problem,
    "broker_cpu_seconds": round(float(cpu_after) - float(cpu_before), 2),
    "wall_seconds": round(float(ended) - float(started), 2), "log": log, "round": int(round_),
}
with open(results, "a") as file:
    file.write(json.dumps(record) + "\n")
EOF
}

# run_scenario_on BROKER ID: a fresh broker, every row of the scenario, the broker stopped.
run_scenario_on() {
    local broker=$1 id=$2 row label subcommand arguments
    local dir="$WORK_DIR/$id-$broker-r$ROUND"
    start_broker "$broker" "$dir" || return 1
    sleep "$SETTLE_SECONDS"
    while IFS='|' read -r row label subcommand arguments; do
        mkdir -p "$WORK_DIR/$row-$broker-r$ROUND"
        run_bench "$broker" "$row" "$label" "$subcommand" "$arguments"
    done < <(scenario_runs "$id")
    stop_broker "$broker"
    [ "$KEEP" = 1 ] || rm -rf "$dir/data" "$dir/mnesia"
}

# ---------------------------------------------------------------------------------------------
# Report

machine_json() {
    local spatemq_version rabbitmq_version revision
    spatemq_version=$("$BIN" --version 2>/dev/null || echo "spatemq (not built)")
    rabbitmq_version=$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo "not installed")
    revision=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    python3 - "$spatemq_version" "$rabbitmq_version" "$revision" "$(ulimit -n)" <<'EOF'
import json, os, platform, sys
model = "unknown"
with open("/proc/cpuinfo") as file:
    for line in file:
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
with open("/proc/meminfo") as file:
    memory_kib = int(next(line for line in file if line.startswith("MemTotal")).split()[1])
print(json.dumps({
    "cores": os.cpu_count(), "cpu_model": model,
    "memory_gib": round(memory_kib / 1024 / 1024, 1),
    "kernel": platform.release(), "spatemq": sys.argv[1], "spatemq_revision": sys.argv[3],
    "rabbitmq": "RabbitMQ " + sys.argv[2] + " (Debian package)", "open_files_limit": sys.argv[4],
}))
EOF
}

broker_commands() {
    echo "$(spatemq_command "<dir>/data") &   # stopped with SIGTERM"
    if [ "$SPATEMQ_ONLY" = 0 ]; then
        echo "scripts/rabbitmq.sh start $RABBITMQ_PORT <dir>   # stopped with: scripts/rabbitmq.sh stop <dir>"
    fi
}

render_report() {
    python3 - "$WORK_DIR/results.jsonl" "$WORK_DIR/machine.json" "$TIME_SECONDS" \
        "$SPATEMQ_ONLY" "${JSON_OUT:-}" "$(broker_commands)" <<'EOF'
import json, sys, time
results_path, machine_path, time_seconds, spatemq_only, json_out, broker_commands = sys.argv[1:]
spatemq_only = spatemq_only == "1"
with open(machine_path) as file:
    machine = json.load(file)
runs = []
try:
    with open(results_path) as file:
        runs = [json.loads(line) for line in file if line.strip()]
except FileNotFoundError:
    pass

def rate(value):
    """Three significant digits and a k/M suffix: 1.16M, 306k, 42.4k, 950."""
    if value is None:
        return "?"
    value = float(value)
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            scaled = value / limit
            digits = 2 if scaled < 10 else 1 if scaled < 100 else 0
            return f"{scaled:.{digits}f}{suffix}"
    return f"{value:.0f}"

def number(result, key):
    value = result.get(key) if result else None
    return float(value) if isinstance(value, (int, float)) else None

def cell(run):
    """The table text for one run, the number its ratio uses (higher is better), and a short
    form of that number for the list of runs."""
    if run is None:
        return "—", None, "—"
    result = run["result"]
    if run["exit_code"] != 0 or result is None:
        why = "timed out" if run["exit_code"] == 124 else f"exit {run['exit_code']}"
        if run["problem"] and run["exit_code"] == 0:
            why = run["problem"]
        return f"failed ({why}; see {run['log']})", None, "failed"
    latency = result.get("latency_ms")
    if isinstance(latency, dict):
        p50, p99, p999 = (latency.get(key) for key in ("p50", "p99", "p999"))
        text = f"p50 {p50} / p99 {p99} / p99.9 {p999} ms"
        published = number(result, "avg_pub_rate")
        if published is not None:
            text += f" at {rate(published)}/s"
        value = 1.0 / p99 if isinstance(p99, (int, float)) and p99 > 0 else None
        return text, value, f"p99 {p99}"
    if "declares_per_second" in result:
        value = number(result, "declares_per_second")
        return f"{rate(value)} declares/s", value, rate(value)
    if "connections_per_second" in result:
        value = number(result, "connections_per_second")
        return f"{rate(value)} connections/s", value, rate(value)
    consumed = number(result, "avg_consume_rate")
    published = number(result, "avg_pub_rate")
    return f"{rate(consumed)} msg/s out ({rate(published)}/s in)", consumed, rate(consumed)

def median(values):
    """The middle value (the lower of the two middle ones for an even count)."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2] if ordered else None

def cells(runs_of_cell):
    """One cell over every run of it: the median run's text, then each run's short figure."""
    if not runs_of_cell:
        return "—", None
    each = [cell(run) for run in runs_of_cell]
    if len(each) == 1:
        return each[0][0], each[0][1]
    listed = ", ".join(short for _, _, short in each)
    measured = [(value, text) for text, value, _ in each if value is not None]
    if not measured:
        return f"{each[0][0]} (runs: {listed})", None
    middle = median([value for value, _ in measured])
    text = next(text for value, text in measured if value == middle)
    return f"median {text} (runs: {listed})", middle

rows, by_key = [], {}
for run in runs:
    if run["row"] not in rows:
        rows.append((run["row"]))
    by_key.setdefault((run["row"], run["broker"]), []).append(run)
labels = {run["row"]: run["label"] for run in runs}
rounds = max([run.get("round", 1) for run in runs], default=1)

def ratios(row):
    """SpateMQ ÷ RabbitMQ of each round where both measured, in round order."""
    by_round = {}
    for broker in ("spatemq", "rabbitmq"):
        for run in by_key.get((row, broker), []):
            by_round.setdefault(run.get("round", 1), {})[broker] = cell(run)[1]
    return [pair["spatemq"] / pair["rabbitmq"] for _, pair in sorted(by_round.items())
            if pair.get("spatemq") and pair.get("rabbitmq")]

print(f"## SpateMQ vs RabbitMQ, {time.strftime('%Y-%m-%d %H:%M %Z')}")
print()
print(f"- machine: {machine['cores']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB "
      f"memory, kernel {machine['kernel']}, open-file limit {machine['open_files_limit']}")
print(f"- brokers: {machine['spatemq']} (revision {machine['spatemq_revision']})"
      + ("" if spatemq_only else f"; {machine['rabbitmq']}"))
print(f"- each run: {time_seconds} s (throughput and latency rows), a freshly started broker "
      "with empty data, one broker running at a time, client and broker on the same machine "
      "over loopback" + (f"; {rounds} runs of every scenario, taken in turn" if rounds > 1 else ""))
print()
if spatemq_only:
    print("| scenario | SpateMQ |")
    print("|---|---|")
else:
    print("| scenario | SpateMQ | RabbitMQ | ratio |")
    print("|---|---|---|---|")
for row in rows:
    spatemq_text, spatemq_value = cells(by_key.get((row, "spatemq"), []))
    if spatemq_only:
        print(f"| {labels[row]} | {spatemq_text} |")
        continue
    rabbitmq_text, rabbitmq_value = cells(by_key.get((row, "rabbitmq"), []))
    each = ratios(row)
    ratio = "—"
    if len(each) == 1:
        ratio = f"{each[0]:.2f}×"
    elif each:
        ratio = f"median {median(each):.2f}× (" + ", ".join(f"{value:.2f}×" for value in each) + ")"
    print(f"| {labels[row]} | {spatemq_text} | {rabbitmq_text} | {ratio} |")
if not spatemq_only:
    print()
    print("ratio: SpateMQ ÷ RabbitMQ for rates, RabbitMQ p99 ÷ SpateMQ p99 for latency; "
          "above 1 means SpateMQ did better. Throughput cells are the consume rate (for fanout, "
          "deliveries summed over the queues) with the publish rate in brackets.")
print()
print("### CPU and counts")
print()
print("| scenario | broker | run | wall s | bench CPU s | broker CPU s | published | consumed |")
print("|---|---|---|---|---|---|---|---|")
order = {"spatemq": 0, "rabbitmq": 1}
for run in sorted(runs, key=lambda run: (rows.index(run["row"]), order.get(run["broker"], 2),
                                         run.get("round", 1))):
    result = run["result"] or {}
    fields = [result.get(key, "") for key in ("bench_cpu_seconds", "published", "consumed")]
    print(f"| {run['label']} | {run['broker']} | {run.get('round', 1)} | {run['wall_seconds']} | "
          f"{fields[0]} | {run['broker_cpu_seconds']} | {fields[1]} | {fields[2]} |")
print()
print("### Commands")
print()
print("```")
print(f"# brokers (one at a time, fresh for each scenario; <dir> is a new directory each time)")
for line in broker_commands.split("\n"):
    print(line)
print("# load")
for command in dict.fromkeys(run["command"] for run in runs):
    print(command)
print("```")
if json_out:
    with open(json_out, "w") as file:
        json.dump({"machine": machine, "time_seconds": int(time_seconds), "runs": runs}, file,
                  indent=2)
        file.write("\n")
    print(f"\nraw results written to {json_out}", file=sys.stderr)
failed = [run for run in runs if run["exit_code"] != 0 or run["result"] is None]
sys.exit(1 if failed else 0)
EOF
}

# ---------------------------------------------------------------------------------------------

# dry_run: the commands a real run would execute, in order, with <work-dir> for the directory.
dry_run() {
    local id broker
    if [ ! -x "$BIN" ]; then
        echo "cargo build --release"
    fi
    if [ "$BROKERS_ONLY" = 1 ]; then
        for broker in "${BROKERS[@]}"; do
            dry_run_broker "$broker" check ""
        done
        return 0
    fi
    for id in "${SELECTED[@]}"; do
        for broker in "${BROKERS[@]}"; do
            dry_run_broker "$broker" "$id" "$id"
        done
    done
}

dry_run_broker() { # BROKER DIR_PREFIX SCENARIO_ID (empty: only check that it answers)
    local broker=$1 dir="<work-dir>/$2-$1" id=$3 row label subcommand arguments
    case "$broker" in
        spatemq) echo "$(spatemq_command "$dir/data") &" ;;
        rabbitmq) echo "scripts/rabbitmq.sh start $RABBITMQ_PORT $dir" ;;
    esac
    if [ -z "$id" ]; then
        echo "# check that 127.0.0.1:$(broker_port "$broker") answers the AMQP header"
    else
        while IFS='|' read -r row label subcommand arguments; do
            bench_command "$subcommand" "$arguments" "$(broker_port "$broker")"
            echo "timeout $((TIME_SECONDS + BENCH_TIMEOUT_EXTRA)) $(show_command "${BENCH_COMMAND[@]}")"
        done < <(scenario_runs "$id")
    fi
    case "$broker" in
        spatemq) echo "kill -TERM <spatemq pid>" ;;
        rabbitmq) echo "scripts/rabbitmq.sh stop $dir" ;;
    esac
}

ensure_binary() {
    if [ ! -x "$BIN" ]; then
        log "no release binary yet; running cargo build --release"
        timeout 1800 cargo build --release || die "cargo build --release failed"
    fi
    if [ "$BROKERS_ONLY" = 0 ]; then
        local help
        [ -x "$BENCH_BIN" ] || die "--bench-bin $BENCH_BIN is not an executable file"
        help=$(timeout 10 "$BENCH_BIN" bench --help 2>&1 || true)
        case "$help" in
            *throughput*) ;;
            *) die "this spatemq build has no 'bench' subcommand ('spatemq bench --help' says: ${help%%$'\n'*}); rebuild once it lands, or use --dry-run / --brokers-only" ;;
        esac
    fi
}

check_brokers() {
    local broker
    for broker in "${BROKERS[@]}"; do
        start_broker "$broker" "$WORK_DIR/check-$broker" || die "$broker did not start"
        amqp_ready "$(broker_port "$broker")" || die "$broker does not answer AMQP on port $(broker_port "$broker")"
        log "$broker answers AMQP on 127.0.0.1:$(broker_port "$broker"); CPU so far $(tree_cpu_seconds "$(broker_pid "$broker")") s"
        stop_broker "$broker"
        ! port_open "$(broker_port "$broker")" || die "$broker still listens on port $(broker_port "$broker") after stop"
    done
    log "both brokers start, answer and stop cleanly"
}

main() {
    command -v python3 >/dev/null 2>&1 || die "python3 is needed (JSON and the report)"
    command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is needed"
    if [ "$DRY_RUN" = 1 ]; then
        dry_run
        return 0
    fi
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ensure_binary
    if [ -z "$WORK_DIR" ]; then
        WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/spatemq-compare.XXXXXX")
        CREATED_WORK_DIR=1
    else
        mkdir -p "$WORK_DIR"
        WORK_DIR=$(cd "$WORK_DIR" && pwd)
        rm -f "$WORK_DIR/results.jsonl"
    fi
    # Both brokers and the bench inherit this; as many descriptors as the host allows.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    if [ "$BROKERS_ONLY" = 1 ]; then
        check_brokers
        return 0
    fi
    local id broker
    for ((ROUND = 1; ROUND <= RUNS; ROUND++)); do
        for id in "${SELECTED[@]}"; do
            log "scenario $id (run $ROUND of $RUNS): ${SCENARIO_TITLE[$id]}"
            for broker in "${BROKERS[@]}"; do
                run_scenario_on "$broker" "$id" || die "$broker did not start for scenario $id"
            done
        done
    done
    # After the runs: the first RabbitMQ run installs the Debian package when it is missing.
    machine_json >"$WORK_DIR/machine.json"
    render_report
}

main
