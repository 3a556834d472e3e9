#!/usr/bin/env bash
# Start/stop a throw-away real RabbitMQ node (not the system service), used to
# compare SpateMQ's behaviour with the reference broker.
#
#   scripts/rabbitmq.sh start PORT DIR   # AMQP on 127.0.0.1:PORT, state in DIR
#   scripts/rabbitmq.sh stop DIR         # kill the node started in DIR
#   scripts/rabbitmq.sh install          # install the Debian package if missing, start nothing
#
# With RABBITMQ_SH_IPV6=1 in the environment, `start` listens on [::1]:PORT as well.
# With RABBITMQ_SH_MANAGEMENT_PORT=N, the management plugin is enabled on 127.0.0.1:N.
# With RABBITMQ_SH_PLUGINS=a,b, those plugins (shipped with the package) are enabled too,
# e.g. rabbitmq_consistent_hash_exchange.
#
# Then e.g.: SPATEMQ_TEST_URI=amqp://guest:guest@127.0.0.1:PORT/ \
#              .venv/bin/python -m pytest tests/python -q
set -euo pipefail

RMQ_BIN=/usr/lib/rabbitmq/bin

usage() {
    echo "usage: $0 start PORT DIR | stop DIR | install" >&2
    exit 2
}

log() { echo "[rabbitmq.sh] $*" >&2; }

port_open() {
    # true when something accepts TCP connections on 127.0.0.1:$1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

amqp_ready() {
    # true when 127.0.0.1:$1 answers the AMQP 0-9-1 protocol header with
    # a connection.start frame (frame type 1, channel 0)
    python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"AMQP\x00\x00\x09\x01")
data = b""
while len(data) < 7:
    chunk = s.recv(7 - len(data))
    if not chunk:
        sys.exit(1)
    data += chunk
sys.exit(0 if data[0] == 1 and data[1:3] == b"\x00\x00" else 1)
EOF
}

stop_system_rabbitmq() {
    # The package's postinst may have started the system node (rabbit@host)
    # on 5672; stop it so it does not get in the way. Only that node is
    # touched: nodes started by this script use their own names.
    if port_open 5672; then
        log "a system RabbitMQ seems to be listening on 5672; stopping it"
        if command -v service >/dev/null 2>&1; then
            service rabbitmq-server stop >/dev/null 2>&1 || true
        fi
        if port_open 5672; then
            rabbitmqctl -n "rabbit@$(hostname -s)" stop >/dev/null 2>&1 || true
        fi
        if port_open 5672 && [ -f /var/lib/rabbitmq/mnesia/rabbit@"$(hostname -s)".pid ]; then
            kill "$(cat /var/lib/rabbitmq/mnesia/rabbit@"$(hostname -s)".pid)" 2>/dev/null || true
        fi
    fi
}

ensure_installed() {
    if [ -x "$RMQ_BIN/rabbitmq-server" ]; then
        return 0
    fi
    log "installing rabbitmq-server (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    local had_5672=0
    if port_open 5672; then had_5672=1; fi
    # The package's postinst would start a system-wide node on 5672. A policy-rc.d that
    # answers 101 ("action forbidden") stops invoke-rc.d from starting it; ours is removed
    # afterwards (one that was there before is left as it was). Stopping the system node is
    # the fallback for init systems that ignore policy-rc.d.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# temporary, by scripts/rabbitmq.sh: no service starts during apt-get install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT  # also when the install is interrupted
    fi
    local status=0
    apt-get update -q >/dev/null && apt-get install -y -q -o DPkg::Lock::Timeout=600 rabbitmq-server >/dev/null ||
        status=$?
    if [ "$own_policy" = 1 ]; then
        rm -f "$policy"
        trap - EXIT
    fi
    [ "$status" = 0 ] || { log "apt-get install rabbitmq-server failed (exit $status)"; exit 1; }
    if [ "$had_5672" = 0 ]; then
        stop_system_rabbitmq
    fi
    [ -x "$RMQ_BIN/rabbitmq-server" ] || { log "install failed"; exit 1; }
}

# Print the PIDs of all descendants of $1 (depth first, children first).
descendants() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null || true); do
        descendants "$child"
        echo "$child"
    done
}

cmd_start() {
    [ $# -eq 2 ] || usage
    local port=$1 dir=$2
    case "$port" in ''|*[!0-9]*) usage ;; esac
    ensure_installed
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)

    if [ -f "$dir/rabbitmq.pid" ] && kill -0 "$(cat "$dir/rabbitmq.pid")" 2>/dev/null; then
        if amqp_ready "$port"; then
            log "already running (pid $(cat "$dir/rabbitmq.pid")) on port $port"
            return 0
        fi
        log "stale node in $dir; stopping it first"
        cmd_stop "$dir"
    fi
    if port_open "$port"; then
        log "port $port is already in use by something else"
        exit 1
    fi

    mkdir -p "$dir/mnesia" "$dir/log"
    # guest may log in from loopback only (the RabbitMQ default, made explicit).
    cat >"$dir/rabbitmq.conf" <<EOF
loopback_users.guest = true
listeners.tcp.1 = 127.0.0.1:$port
default_user = guest
default_pass = guest
default_vhost = /
EOF
    if [ "${RABBITMQ_SH_IPV6:-0}" = 1 ]; then
        echo "listeners.tcp.2 = ::1:$port" >>"$dir/rabbitmq.conf"
    fi
    local plugins=${RABBITMQ_SH_PLUGINS:-}
    if [ -n "${RABBITMQ_SH_MANAGEMENT_PORT:-}" ]; then
        plugins=rabbitmq_management${plugins:+,$plugins}
        cat >>"$dir/rabbitmq.conf" <<EOF
management.tcp.port = $RABBITMQ_SH_MANAGEMENT_PORT
management.tcp.ip = 127.0.0.1
collect_statistics_interval = 500
EOF
    fi
    echo "[$plugins]." >"$dir/enabled_plugins"

    local node="spatemq-cmp-$port@localhost"
    log "starting $node on 127.0.0.1:$port (state in $dir)"
    (
        export RABBITMQ_NODE_PORT="$port"
        export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
        export RABBITMQ_DIST_PORT=$((port + 20000))
        # keep Erlang distribution on loopback too
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        export RABBITMQ_NODENAME="$node"
        export RABBITMQ_USE_LONGNAME=false
        export RABBITMQ_MNESIA_BASE="$dir/mnesia"
        export RABBITMQ_LOG_BASE="$dir/log"
        export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
        export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
        export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        export RABBITMQ_PID_FILE="$dir/mnesia/node.pid"
        cd "$dir"
        exec setsid "$RMQ_BIN/rabbitmq-server" </dev/null >"$dir/server.out" 2>&1
    ) &
    local pid=$!
    echo "$pid" >"$dir/rabbitmq.pid"

    local deadline=$((SECONDS + 60))
    until amqp_ready "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "rabbitmq-server exited during startup; output:"
            tail -n 50 "$dir/server.out" >&2 || true
            rm -f "$dir/rabbitmq.pid"
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "RabbitMQ did not accept AMQP on port $port within 60 s; output:"
            tail -n 50 "$dir/server.out" >&2 || true
            cmd_stop "$dir"
            exit 1
        fi
        sleep 0.5
    done
    log "ready: amqp://guest:guest@127.0.0.1:$port/ (pid $pid)"
}

cmd_stop() {
    [ $# -eq 1 ] || usage
    local dir=$1
    if [ ! -f "$dir/rabbitmq.pid" ]; then
        log "no pid file in $dir; nothing to stop"
        return 0
    fi
    local pid
    pid=$(cat "$dir/rabbitmq.pid")
    if kill -0 "$pid" 2>/dev/null; then
        local pids
        pids="$(descendants "$pid") $pid"
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        local deadline=$((SECONDS + 20))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
        # anything still alive (the Erlang VM included) is killed hard;
        # epmd daemonizes away from this tree and is left alone.
        pids="$(descendants "$pid" 2>/dev/null) $pids"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
    rm -f "$dir/rabbitmq.pid"
    log "stopped (pid $pid)"
}

[ $# -ge 1 ] || usage
action=$1
shift
case "$action" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    install) [ $# -eq 0 ] || usage; ensure_installed ;;
    *) usage ;;
esac
