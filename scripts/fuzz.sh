#!/usr/bin/env bash
# Fuzzes the frame parser and the connection state machines (src/shard/conversation/fuzz.rs).
#
#   scripts/fuzz.sh --time N [--inputs M] [--seed S]
#
# Runs the long pass of the fuzzer for N seconds (default 60) or M inputs, whichever comes
# first, from seed S (default: from the clock; printed either way). Prints the inputs run,
# inputs/s, the peak heap per input and, for each failure, its seeds and the input in hex with
# the environment to replay it (SPATEMQ_FUZZ_SEED + SPATEMQ_FUZZ_SESSION for the session,
# SPATEMQ_FUZZ_REPLAY + SPATEMQ_FUZZ_SHARDS for the input alone, via the ignored test
# fuzz_replay). Exits non-zero on any failure. Built with the checked profile (release with
# debug assertions and overflow checks, as scripts/test.sh), so a broken invariant or an
# overflowing count is a failure too. One thread; the short pass runs with the unit tests.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

time_seconds=""
inputs=""
seed=""
while [ $# -gt 0 ]; do
    case "$1" in
        --time) time_seconds="${2:?--time needs seconds}"; shift 2 ;;
        --inputs) inputs="${2:?--inputs needs a count}"; shift 2 ;;
        --seed) seed="${2:?--seed needs a number}"; shift 2 ;;
        -h | --help) usage ;;
        *) echo "fuzz.sh: unknown argument $1" >&2; usage ;;
    esac
done
if [ -z "$time_seconds" ] && [ -z "$inputs" ]; then
    time_seconds=60
fi

if [ -n "$time_seconds" ]; then export SPATEMQ_FUZZ_SECONDS="$time_seconds"; fi
if [ -n "$inputs" ]; then export SPATEMQ_FUZZ_INPUTS="$inputs"; fi
if [ -n "$seed" ]; then export SPATEMQ_FUZZ_SEED="$seed"; fi

exec cargo test --profile checked --lib -- --ignored --nocapture --exact shard::conversation::fuzz::tests::fuzz_long_run
