#!/usr/bin/env bash
# Reports, and with --apply raises, the host settings a SpateMQ broker wants: open-file and
# locked-memory limits, kernel maps, accept queues, socket buffers, local ports, transparent
# huge pages, the CPU frequency governor, IRQs on the broker's pinned cores and io_uring.
#
# Why: a broker that holds 100k connections, fans one message out to thousands of queues or
# keeps a deep durable backlog hits kernel defaults long before it runs out of CPU, and the
# failures ("too many open files", dropped SYNs, failed mmap) show up far from their cause.
#
#   tuning/tune.sh                       report only (any user; exit 0 unless misused)
#   tuning/tune.sh --pinned-cores 0-1    also report IRQs that land on the broker's cores
#   tuning/tune.sh --apply               as root: raise what is low now (never lowers a value)
#                                        and write a script that undoes exactly that
#   tuning/tune.sh --install             as root: copy 99-spatemq.conf to /etc/sysctl.d/ and
#                                        spatemq-limits.conf to /etc/security/limits.d/ (boot)
#   tuning/tune.sh --uninstall           as root: remove those two copies
#
# Each check prints one line: ok / warn / skip, the setting, its current and wanted values,
# and on the next line why or what to do. The sysctl minimums are read from 99-spatemq.conf
# next to this script, so the file and the report cannot disagree.
set -euo pipefail

TUNING_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SYSCTL_FILE="$TUNING_DIR/99-spatemq.conf"
LIMITS_FILE="$TUNING_DIR/spatemq-limits.conf"
SYSCTL_TARGET=/etc/sysctl.d/99-spatemq.conf
LIMITS_TARGET=/etc/security/limits.d/spatemq-limits.conf

NOFILE_SOFT_WANTED=65536
NOFILE_HARD_WANTED=1048576
MEMLOCK_KIB_WANTED=65536

APPLY=0
INSTALL=0
UNINSTALL=0
PINNED_CORES=""
REVERT_FILE=""
WARNINGS=0
CHANGES=0
IS_ROOT=0
[ "$(id -u)" = 0 ] && IS_ROOT=1

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --apply                 raise low settings now (root); previous values go to a revert script
  --revert-file PATH      where --apply writes that script [default: /var/tmp/spatemq-tune-revert-<time>.sh]
  --install               install the sysctl and limits files for the next boot/login (root)
  --uninstall             remove the installed files (root)
  --pinned-cores LIST     cores the broker pins with --pin-cores (shard i on core i), e.g. 0-3
  -h, --help              this text
EOF
}

die() {
    echo "tune.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --apply) APPLY=1 ;;
        --install) INSTALL=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --pinned-cores)
            [ $# -ge 2 ] || die "--pinned-cores needs a core list such as 0-1 or 0,2-3"
            PINNED_CORES=$2
            shift
            ;;
        --pinned-cores=*) PINNED_CORES=${1#*=} ;;
        --revert-file)
            [ $# -ge 2 ] || die "--revert-file needs a path"
            REVERT_FILE=$2
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
[ -r "$SYSCTL_FILE" ] || die "missing $SYSCTL_FILE (tune.sh reads its wanted values from it)"
if [ "$INSTALL" = 1 ] && [ "$UNINSTALL" = 1 ]; then
    die "--install and --uninstall together make no sense"
fi

# ---------------------------------------------------------------------------------------------
# Output helpers

# report STATUS NAME CURRENT WANTED [NOTE]: one aligned line, and the note indented below.
report() {
    local status=$1 name=$2 current=$3 wanted=$4 note=${5:-}
    printf '%-4s  %-34s current: %-26s wanted: %s\n' "$status" "$name" "$current" "$wanted"
    [ -n "$note" ] && printf '      %s\n' "$note"
    [ "$status" = warn ] && WARNINGS=$((WARNINGS + 1))
    return 0
}

detail() { printf '      %s\n' "$*"; }

section() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# Reverting --apply: every change appends the command that restores the previous value.

revert_line() {
    if [ -z "$REVERT_FILE" ]; then
        REVERT_FILE="/var/tmp/spatemq-tune-revert-$(date +%Y%m%d-%H%M%S).sh"
    fi
    if [ ! -e "$REVERT_FILE" ]; then
        {
            echo "#!/bin/sh"
            echo "# Restores the values tuning/tune.sh --apply changed on $(date -R)."
        } >"$REVERT_FILE"
        chmod 0700 "$REVERT_FILE"
    fi
    echo "$*" >>"$REVERT_FILE"
    CHANGES=$((CHANGES + 1))
}

# ---------------------------------------------------------------------------------------------
# Numbers and lists

# fields_at_least CURRENT WANTED: true when every whitespace-separated field of CURRENT is at
# least the same field of WANTED (a one-field value is the common case).
fields_at_least() {
    python3 - "$1" "$2" <<'EOF'
import sys
current, wanted = sys.argv[1].split(), sys.argv[2].split()
sys.exit(0 if len(current) == len(wanted) and all(int(c) >= int(w) for c, w in zip(current, wanted)) else 1)
EOF
}

# fields_max CURRENT WANTED: the field-wise maximum, so applying never lowers a field.
fields_max() {
    python3 - "$1" "$2" <<'EOF'
import sys
current, wanted = sys.argv[1].split(), sys.argv[2].split()
print(" ".join(str(max(int(c), int(w))) for c, w in zip(current, wanted)))
EOF
}

# expand_cpulist 0-2,5 -> "0 1 2 5"; fails on anything that is not a cpu list.
expand_cpulist() {
    python3 - "$1" <<'EOF'
import sys
cpus = set()
for part in sys.argv[1].replace(" ", "").split(","):
    if not part:
        continue
    low, _, high = part.partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        sys.exit(1)
    cpus.update(range(int(low), int(high or low) + 1))
print(" ".join(str(cpu) for cpu in sorted(cpus)))
EOF
}

# compress_cpulist "0 1 2 5" -> 0-2,5
compress_cpulist() {
    python3 - "$1" <<'EOF'
import sys
cpus = sorted(int(cpu) for cpu in sys.argv[1].split())
ranges, start = [], None
for index, cpu in enumerate(cpus):
    if start is None:
        start = cpu
    if index + 1 == len(cpus) or cpus[index + 1] != cpu + 1:
        ranges.append(str(start) if start == cpu else f"{start}-{cpu}")
        start = None
print(",".join(ranges))
EOF
}

# ---------------------------------------------------------------------------------------------
# sysctl

sysctl_path() { echo "/proc/sys/${1//.//}"; }

sysctl_read() {
    local path
    path=$(sysctl_path "$1")
    [ -r "$path" ] || return 1
    tr -s ' \t' '  ' <"$path"
}

sysctl_write() {
    local key=$1 value=$2
    if command -v sysctl >/dev/null 2>&1; then
        sysctl -q -w "$key=$value"
    else
        printf '%s\n' "$value" >"$(sysctl_path "$key")"
    fi
}

# wanted_sysctl KEY: the value 99-spatemq.conf asks for.
wanted_sysctl() {
    awk -v key="$1" '
        /^[[:space:]]*[#;]/ { next }
        {
            split($0, parts, "=")
            name = parts[1]; gsub(/[[:space:]]/, "", name)
            if (name == key) {
                value = substr($0, index($0, "=") + 1)
                gsub(/^[[:space:]]+|[[:space:]]+$/, "", value)
                gsub(/[[:space:]]+/, " ", value)
                print value
                exit
            }
        }' "$SYSCTL_FILE"
}

sysctl_keys() {
    awk '/^[[:space:]]*[#;]/ || !/=/ { next } { split($0, parts, "="); name = parts[1]; gsub(/[[:space:]]/, "", name); print name }' "$SYSCTL_FILE"
}

# raise_sysctl KEY NEW_VALUE OLD_VALUE: the --apply half of a sysctl check.
raise_sysctl() {
    local key=$1 value=$2 old=$3 problem
    if problem=$(sysctl_write "$key" "$value" 2>&1); then
        revert_line "sysctl -q -w $key='$old'"
        detail "applied: $key = $(sysctl_read "$key")"
    else
        detail "could not write $key: ${problem:-write refused}"
    fi
}

# check_sysctl KEY WHY: every field at least the file's value.
check_sysctl() {
    local key=$1 why=$2 wanted current
    wanted=$(wanted_sysctl "$key")
    if ! current=$(sysctl_read "$key"); then
        report skip "$key" "absent" "$wanted" "this kernel (or network namespace) has no such setting"
        return
    fi
    if fields_at_least "$current" "$wanted"; then
        report ok "$key" "$current" "≥ $wanted"
        return
    fi
    report warn "$key" "$current" "≥ $wanted" "$why"
    [ "$APPLY" = 1 ] && raise_sysctl "$key" "$(fields_max "$current" "$wanted")" "$current"
    return 0
}

# The port range is "low high": wider is better, so the check wants low at most and high at
# least the file's values.
check_port_range() {
    local key=net.ipv4.ip_local_port_range wanted current
    wanted=$(wanted_sysctl "$key")
    if ! current=$(sysctl_read "$key"); then
        report skip "$key" "absent" "$wanted" "this network namespace has no such setting"
        return
    fi
    read -r low high <<<"$current"
    read -r wanted_low wanted_high <<<"$wanted"
    local count=$((high - low + 1))
    if [ "$low" -le "$wanted_low" ] && [ "$high" -ge "$wanted_high" ]; then
        report ok "$key" "$current ($count ports)" "$wanted or wider"
        return
    fi
    report warn "$key" "$current ($count ports)" "$wanted or wider" \
        "the load generator needs one local port per connection to the same broker address"
    if [ "$APPLY" = 1 ]; then
        local new_low=$((low < wanted_low ? low : wanted_low))
        local new_high=$((high > wanted_high ? high : wanted_high))
        raise_sysctl "$key" "$new_low $new_high" "$current"
    fi
}

# ---------------------------------------------------------------------------------------------
# Checks

check_nofile() {
    local soft hard
    soft=$(ulimit -Sn)
    hard=$(ulimit -Hn)
    local fix="raise it where the broker starts: LimitNOFILE= in the unit, tuning/spatemq-limits.conf (--install) for logins, or 'ulimit -n' in the starting shell"
    if [ "$soft" = unlimited ] || [ "$soft" -ge "$NOFILE_SOFT_WANTED" ]; then
        report ok "ulimit -n (soft, this shell)" "$soft" "≥ $NOFILE_SOFT_WANTED"
    else
        report warn "ulimit -n (soft, this shell)" "$soft" "≥ $NOFILE_SOFT_WANTED" \
            "one descriptor per connection: past $soft connections accept fails with EMFILE; $fix"
    fi
    if [ "$hard" = unlimited ] || [ "$hard" -ge "$NOFILE_HARD_WANTED" ]; then
        report ok "ulimit -Hn (hard, this shell)" "$hard" "≥ $NOFILE_HARD_WANTED"
    else
        report warn "ulimit -Hn (hard, this shell)" "$hard" "≥ $NOFILE_HARD_WANTED" \
            "the soft limit can never go past it without privilege; same fixes as above"
        # Root normally may raise its own hard limit; when even that fails the limit is
        # imposed from outside (a container or sandbox without CAP_SYS_RESOURCE).
        if [ "$IS_ROOT" = 1 ] && ! (ulimit -Hn "$NOFILE_HARD_WANTED") 2>/dev/null; then
            detail "even root cannot raise it here: no CAP_SYS_RESOURCE (a container or sandbox); the limit is set by whatever starts this machine's processes"
        fi
    fi
    if [ "$APPLY" = 1 ]; then
        detail "not applied: limits belong to processes; --apply cannot change the shell that started it"
    fi
}

check_memlock() {
    local memlock release major minor
    memlock=$(ulimit -l)
    release=$(uname -r)
    major=${release%%.*}
    minor=${release#*.}
    minor=${minor%%[!0-9]*}
    if [ "$major" -gt 5 ] || { [ "$major" -eq 5 ] && [ "$minor" -ge 12 ]; }; then
        report ok "ulimit -l (memlock KiB)" "$memlock" "any on kernel $major.$minor" \
            "kernels since 5.12 charge io_uring rings to the memory cgroup, not to memlock"
    elif [ "$memlock" = unlimited ] || [ "$memlock" -ge "$MEMLOCK_KIB_WANTED" ]; then
        report ok "ulimit -l (memlock KiB)" "$memlock" "≥ $MEMLOCK_KIB_WANTED on kernel $major.$minor"
    else
        report warn "ulimit -l (memlock KiB)" "$memlock" "≥ $MEMLOCK_KIB_WANTED on kernel $major.$minor" \
            "kernels before 5.12 charge io_uring rings to memlock: ring setup fails and the broker falls back to epoll; LimitMEMLOCK=infinity in the unit or spatemq-limits.conf"
    fi
}

check_transparent_huge_pages() {
    local file=/sys/kernel/mm/transparent_hugepage/enabled current
    if [ ! -r "$file" ]; then
        report skip "transparent huge pages" "absent" "madvise" "kernel built without THP"
        return
    fi
    current=$(sed -e 's/.*\[\(.*\)\].*/\1/' "$file")
    if [ "$current" = madvise ]; then
        report ok "transparent huge pages" "$current" "madvise"
        return
    fi
    local why="'always' makes the kernel compact memory and collapse pages behind the broker's back (latency spikes, RSS growth); 'never' denies them to code that asks"
    report warn "transparent huge pages" "$current" "madvise" "$why"
    if [ "$APPLY" = 1 ]; then
        if echo madvise 2>/dev/null >"$file"; then
            revert_line "echo $current > $file"
            detail "applied: $(cat "$file")"
        else
            detail "could not write $file"
        fi
    fi
}

check_cpu_governor() {
    local governors=() file
    for file in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
        [ -r "$file" ] && governors+=("$(cat "$file")")
    done
    if [ "${#governors[@]}" -eq 0 ]; then
        report skip "cpu frequency governor" "no cpufreq" "performance" \
            "no cpufreq interface: usual on a VM, where the hypervisor sets the frequency"
        return
    fi
    local distinct
    distinct=$(printf '%s\n' "${governors[@]}" | sort -u | paste -sd, -)
    if [ "$distinct" = performance ]; then
        report ok "cpu frequency governor" "$distinct" "performance"
        return
    fi
    report warn "cpu frequency governor" "$distinct" "performance" \
        "power-saving governors ramp the clock down between bursts: higher and noisier latency"
    if [ "$APPLY" = 1 ]; then
        for file in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
            local old
            old=$(cat "$file")
            [ "$old" = performance ] && continue
            if echo performance 2>/dev/null >"$file"; then
                revert_line "echo $old > $file"
            else
                detail "could not write $file"
            fi
        done
        detail "applied: governors now $(cat /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor | sort -u | paste -sd, -)"
    fi
}

check_io_uring() {
    local file=/proc/sys/kernel/io_uring_disabled probe
    probe=$(io_uring_probe)
    if [ ! -r "$file" ]; then
        report ok "kernel.io_uring_disabled" "absent" "0" \
            "no such switch before kernel 6.6; a probe of io_uring_setup: $probe"
        return
    fi
    local current
    current=$(cat "$file")
    case "$current" in
        0) report ok "kernel.io_uring_disabled" "0" "0" "a probe of io_uring_setup: $probe" ;;
        1) report warn "kernel.io_uring_disabled" "1" "0" \
            "only CAP_SYS_ADMIN and group kernel.io_uring_group ($(cat /proc/sys/kernel/io_uring_group 2>/dev/null || echo '?')) may use io_uring: the broker under its own user falls back to epoll (probe: $probe)" ;;
        *) report warn "kernel.io_uring_disabled" "$current" "0" \
            "io_uring is disabled for everyone: the broker runs on epoll, slower (probe: $probe)" ;;
    esac
    if [ "$current" != 0 ] && [ "$APPLY" = 1 ]; then
        detail "not applied: this is a security switch someone set on purpose; to allow io_uring: sysctl -w kernel.io_uring_disabled=0"
    fi
}

# io_uring_probe: asks the kernel for a one-entry ring, as the broker's runtime does at start.
io_uring_probe() {
    python3 - <<'EOF' 2>/dev/null || echo "could not run (python3 missing?)"
import ctypes, os, platform
# io_uring_setup is syscall 425 on every architecture that has it (x86_64, aarch64, riscv64...).
SYS_IO_URING_SETUP = 425
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
fd = libc.syscall(SYS_IO_URING_SETUP, 1, params)
if fd >= 0:
    os.close(fd)
    print("works for this user")
else:
    errno = ctypes.get_errno()
    print(f"refused for this user ({os.strerror(errno)})")
EOF
}

# ---------------------------------------------------------------------------------------------
# IRQs on the broker's pinned cores

check_irqs() {
    if [ -z "$PINNED_CORES" ]; then
        report skip "IRQs on pinned cores" "-" "none" \
            "give --pinned-cores LIST (the cores the broker pins with --pin-cores) to check"
        return
    fi
    local pinned online others
    pinned=$(expand_cpulist "$PINNED_CORES")
    online=$(expand_cpulist "$(cat /sys/devices/system/cpu/online)")
    others=$(comm -23 <(tr ' ' '\n' <<<"$online" | sort) <(tr ' ' '\n' <<<"$pinned" | sort) | sort -n | tr '\n' ' ')
    local landing
    landing=$(irqs_on_cores "$pinned")
    local pinned_list
    pinned_list=$(compress_cpulist "$pinned")
    if [ -z "$landing" ]; then
        report ok "IRQs on pinned cores $pinned_list" "none" "none"
        return
    fi
    local count
    count=$(wc -l <<<"$landing")
    report warn "IRQs on pinned cores $pinned_list" "$count IRQ(s)" "none" \
        "an interrupt on a shard's core steals it from the event loop mid-batch (latency jitter)"
    local irq name affinity effective hits idle=""
    while IFS='|' read -r irq name affinity effective hits; do
        if [ "$hits" = 0 ]; then
            idle="${idle:+$idle, }$irq"
        else
            detail "irq $irq ($name): affinity $affinity (last on $effective), $hits interrupt(s) since boot on cores $pinned_list"
        fi
    done <<<"$landing"
    [ -n "$idle" ] && detail "allowed there too, none fired there yet: irq $idle"
    if pgrep -x irqbalance >/dev/null 2>&1; then
        detail "irqbalance is running and will move IRQs back: set IRQBALANCE_BANNED_CPULIST=$pinned_list in its configuration"
    fi
    if [ "$APPLY" = 1 ]; then
        if [ -z "${others// /}" ]; then
            detail "not applied: the broker is pinned to every online core, so there is no core to move IRQs to; pin fewer shards (--shards) to leave one"
            return
        fi
        move_irqs "$landing" "$(compress_cpulist "$others")"
    fi
}

# irqs_on_cores "0 1": lines "irq|name|affinity|effective|hits" for each IRQ the kernel may
# deliver to a pinned core (its allowed list, smp_affinity_list). The effective core is shown for
# context only: on x86 it changes lazily, at the next interrupt after a move. hits counts what
# already fired on the pinned cores since boot.
irqs_on_cores() {
    python3 - "$1" <<'EOF'
import os, sys
pinned = {int(cpu) for cpu in sys.argv[1].split()}

def cpus_of(text):
    found = set()
    for part in text.strip().split(","):
        if part:
            low, _, high = part.partition("-")
            found.update(range(int(low), int(high or low) + 1))
    return found

with open("/proc/interrupts") as table:
    header = [int(column[3:]) for column in table.readline().split()]
    for line in table:
        fields = line.split()
        if not fields or not fields[0].rstrip(":").isdigit():
            continue
        irq = fields[0].rstrip(":")
        counts = fields[1:1 + len(header)]
        name = " ".join(fields[1 + len(header):]) or "?"
        hits = sum(int(count) for cpu, count in zip(header, counts) if cpu in pinned and count.isdigit())
        try:
            with open(f"/proc/irq/{irq}/smp_affinity_list") as file:
                affinity = file.read().strip()
        except OSError:
            affinity = "?"
        try:
            with open(f"/proc/irq/{irq}/effective_affinity_list") as file:
                effective_text = file.read().strip()
        except OSError:
            effective_text = affinity
        allowed = cpus_of(affinity) if affinity != "?" else set()
        if allowed & pinned:
            print(f"{irq}|{name.split()[-1] if name != '?' else name}|{affinity}|{effective_text}|{hits}")
EOF
}

# move_irqs LANDING TARGET: writes TARGET into each IRQ's smp_affinity_list where the kernel
# lets us; managed IRQs (per-queue virtio, NVMe) refuse, and say so.
move_irqs() {
    local landing=$1 target=$2 irq name affinity effective hits file
    while IFS='|' read -r irq name affinity effective hits; do
        file=/proc/irq/$irq/smp_affinity_list
        if { echo "$target" >"$file"; } 2>/dev/null; then
            revert_line "echo $affinity > $file"
            detail "moved irq $irq ($name) to cores $(cat "$file")"
        else
            detail "irq $irq ($name) stays: the kernel refuses to move it (a managed per-queue IRQ, or no other core it may use)"
        fi
    done <<<"$landing"
}

# ---------------------------------------------------------------------------------------------
# Installing the files

install_files() {
    local key current wanted
    echo
    echo "== install"
    for key in $(sysctl_keys); do
        current=$(sysctl_read "$key") || continue
        wanted=$(wanted_sysctl "$key")
        [ "$key" = net.ipv4.ip_local_port_range ] && continue
        if ! fields_at_least "$wanted" "$current"; then
            detail "note: at boot $SYSCTL_TARGET will set $key to '$wanted', lower than now ('$current'); raise it in the installed copy if this host needs the higher value"
        fi
    done
    install -m 0644 "$SYSCTL_FILE" "$SYSCTL_TARGET"
    detail "installed $SYSCTL_TARGET (read at boot; 'tuning/tune.sh --apply' raises the running values now without lowering any)"
    if [ -d "$(dirname "$LIMITS_TARGET")" ]; then
        install -m 0644 "$LIMITS_FILE" "$LIMITS_TARGET"
        detail "installed $LIMITS_TARGET (new login sessions; systemd services use the unit's LimitNOFILE=/LimitMEMLOCK=)"
    else
        detail "skipped limits: $(dirname "$LIMITS_TARGET") does not exist (no pam_limits here)"
    fi
}

uninstall_files() {
    local target source after
    echo
    echo "== uninstall"
    for target in "$SYSCTL_TARGET" "$LIMITS_TARGET"; do
        if [ "$target" = "$SYSCTL_TARGET" ]; then
            source=$SYSCTL_FILE
            after="running values stay until reboot or until the --apply revert script runs"
        else
            source=$LIMITS_FILE
            after="sessions already open keep their limits"
        fi
        if [ ! -e "$target" ]; then
            detail "$target is not installed"
            continue
        fi
        cmp -s "$source" "$target" || after="$after; it had been edited since install"
        rm -f "$target"
        detail "removed $target ($after)"
    done
}

# ---------------------------------------------------------------------------------------------

main() {
    if [ "$APPLY" = 1 ] && [ "$IS_ROOT" = 0 ]; then
        echo "not root: reporting only; --apply needs root (sudo $0 --apply)"
        APPLY=0
    fi
    if { [ "$INSTALL" = 1 ] || [ "$UNINSTALL" = 1 ]; } && [ "$IS_ROOT" = 0 ]; then
        echo "tune.sh: --install and --uninstall need root" >&2
        exit 1
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 is needed (for number and list handling)"
    if [ -n "$PINNED_CORES" ]; then
        local pinned cpu online
        pinned=$(expand_cpulist "$PINNED_CORES" 2>/dev/null) ||
            die "--pinned-cores: '$PINNED_CORES' is not a core list such as 0-1 or 0,2-3"
        online=" $(expand_cpulist "$(cat /sys/devices/system/cpu/online)") "
        for cpu in $pinned; do
            [[ "$online" == *" $cpu "* ]] || die "--pinned-cores: core $cpu is not online (online: $(cat /sys/devices/system/cpu/online))"
        done
    fi

    echo "SpateMQ host tuning report: $(uname -n), kernel $(uname -r), $(nproc) core(s), mode: $([ "$APPLY" = 1 ] && echo apply || echo report)"

    section "file descriptors"
    check_nofile
    check_sysctl fs.file-max "system-wide open files: every connection and segment file counts"
    check_sysctl fs.nr_open "caps any process's RLIMIT_NOFILE: must be at least LimitNOFILE ($NOFILE_HARD_WANTED)"

    section "memory"
    check_sysctl vm.max_map_count "segments are mmapped, one mapping each: a deep durable backlog runs out of mappings"
    check_memlock
    check_transparent_huge_pages

    section "network"
    check_sysctl net.core.somaxconn "the kernel caps every listen backlog at this: connection bursts get dropped SYNs and 1 s retries"
    check_sysctl net.ipv4.tcp_max_syn_backlog "half-open connections waiting for the handshake: bursts of new connections"
    check_sysctl net.core.rmem_max "ceiling for SO_RCVBUF: large batches of publishes per read"
    check_sysctl net.core.wmem_max "ceiling for SO_SNDBUF: large batches of deliveries per write"
    check_sysctl net.ipv4.tcp_rmem "autotuned receive buffer ceiling (third field): throughput per connection"
    check_sysctl net.ipv4.tcp_wmem "autotuned send buffer ceiling (third field): deliveries to fast consumers, fanout"
    check_port_range

    section "cpu"
    check_cpu_governor
    check_irqs

    section "io_uring"
    check_io_uring

    [ "$INSTALL" = 1 ] && install_files
    [ "$UNINSTALL" = 1 ] && uninstall_files

    echo
    if [ "$CHANGES" -gt 0 ]; then
        echo "applied $CHANGES change(s); to undo them: sh $REVERT_FILE"
    elif [ "$APPLY" = 1 ]; then
        echo "applied nothing: every setting --apply can change is already as wanted (or could not be written)"
    fi
    echo "$WARNINGS warning(s)$([ "$APPLY" = 1 ] && echo ' before applying')"
    if [ "$APPLY" = 0 ] && [ "$INSTALL" = 0 ] && [ "$UNINSTALL" = 0 ] && [ "$WARNINGS" -gt 0 ] && [ "$IS_ROOT" = 1 ]; then
        echo "run with --apply to raise what can be raised now, --install to keep it across reboots"
    fi
}

main
