"""Runs the differential conversations against SpateMQ and RabbitMQ and compares the replies.

Started by scripts/differential.sh, which starts and stops both brokers. Prints one line per
conversation whose normalised transcripts differ, then `N passed, M failed` as the last line
(passed: agrees with RabbitMQ, or differs as docs/differences.md lists; failed: differs
unlisted, or a listed difference that is gone).
Exits non-zero when a difference is listed in neither section of docs/differences.md, or when
an entry there no longer matches a difference ("stale").
"""

import argparse
import concurrent.futures
import fnmatch
import os
import re
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import client  # noqa: E402
import normalise  # noqa: E402
import registry  # noqa: E402

CONVERSATION_TIME_MAX_S = 60  # a conversation still running after this is reported as hung
SECTIONS = {"## Intended differences": "intended", "## Not fixed yet": "not fixed yet"}
_ENTRY = re.compile(r"^- `([^`]+)`")


def read_differences(path):
    """{pattern: section} from docs/differences.md: see the format described there."""
    entries, section = {}, None
    with open(path, encoding="utf-8") as handle:
        for text in handle:
            text = text.rstrip("\n")
            if text.startswith("## "):
                section = SECTIONS.get(text.strip())
                continue
            match = _ENTRY.match(text)
            if match and section:
                entries[match.group(1)] = section
    return entries


def run_one(name, function, port):
    session = client.Session(name, port)
    try:
        function(session)
    except Exception as error:  # a conversation that breaks is a result, not a crash
        session.transcript.append(("note", "", {"text": "conversation raised %s: %s" % (
            type(error).__name__, str(error)[:200])}))
        if os.environ.get("DIFFERENTIAL_TRACEBACK"):
            traceback.print_exc()
    finally:
        session.close_all()
    return normalise.transcript_lines(session.transcript)


def _excerpt(left, right, width=160):
    """The part of two differing lines from a little before where they part."""
    common = 0
    while common < min(len(left), len(right)) and left[common] == right[common]:
        common += 1
    start = max(0, common - 40)
    head = "..." if start else ""
    return head + left[start:start + width], head + right[start:start + width]


def first_difference(expected, got):
    for index in range(max(len(expected), len(got))):
        left = expected[index] if index < len(expected) else "(nothing)"
        right = got[index] if index < len(got) else "(nothing)"
        if left != right:
            left, right = _excerpt(left, right)
            return "line %d: rabbitmq: %s | spatemq: %s" % (index + 1, left, right)
    return ""


def run_side(pool, selected, port):
    return {name: pool.submit(run_one, name, function, port) for name, function in selected.items()}


def collect(futures, deadline):
    results = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(0.1, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            results[name] = ["# conversation did not finish in time"]
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spatemq-port", type=int)
    parser.add_argument("--rabbitmq-port", type=int)
    parser.add_argument("--only", help="run the conversations whose name matches this glob or substring")
    parser.add_argument("--differences", required=True)
    parser.add_argument("--jobs", type=int, default=12, help="conversations at once per broker")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--out", help="write each side's transcripts under this directory")
    args = parser.parse_args()

    conversations = registry.load_all()
    selected = {name: function for name, function in sorted(conversations.items())
                if not args.only or args.only in name or fnmatch.fnmatchcase(name, args.only)}
    if args.list:
        for name in selected:
            print(name)
        return 0
    if not selected:
        print("no conversation matches %r" % args.only)
        print("0 passed, 1 failed")
        return 1

    started = time.monotonic()
    deadline = started + CONVERSATION_TIME_MAX_S + 4 * len(selected) / max(1, args.jobs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * args.jobs) as pool:
        sides = {}
        if args.rabbitmq_port:
            sides["rabbitmq"] = run_side(pool, selected, args.rabbitmq_port)
        if args.spatemq_port:
            sides["spatemq"] = run_side(pool, selected, args.spatemq_port)
        results = {side: collect(futures, deadline) for side, futures in sides.items()}
        for futures in sides.values():
            for future in futures.values():
                future.cancel()

    if args.out:
        for side, transcripts in results.items():
            os.makedirs(os.path.join(args.out, side), exist_ok=True)
            for name, lines in transcripts.items():
                with open(os.path.join(args.out, side, name + ".txt"), "w", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")

    if len(results) == 1:  # --spatemq-only / --rabbitmq-only: print that side's transcripts
        (side, transcripts), = results.items()
        for name in selected:
            print("=== %s (%s)" % (name, side))
            for text in transcripts[name]:
                print("    " + text)
        print("%d conversations run against %s in %.0f s" % (len(selected), side, time.monotonic() - started))
        return 0

    differences = read_differences(args.differences)
    differing, unlisted = {}, []
    for name in selected:
        expected, got = results["rabbitmq"][name], results["spatemq"][name]
        if expected == got:
            continue
        listed = [section for pattern, section in differences.items() if fnmatch.fnmatchcase(name, pattern)]
        differing[name] = listed
        label = listed[0] if listed else "NEW"
        print("DIFF %s [%s] %s" % (name, label, first_difference(expected, got)))
        if not listed:
            unlisted.append(name)

    stale = []
    for pattern, section in differences.items():
        matched = [name for name in selected if fnmatch.fnmatchcase(name, pattern)]
        if args.only and not matched:
            continue
        if not any(name in differing for name in matched):
            stale.append((pattern, section, matched))
    for pattern, section, matched in stale:
        why = "no longer differs" if matched else "matches no conversation"
        print("STALE `%s` [%s]: %s; remove it from docs/differences.md" % (pattern, section, why))

    print("%d conversations in %.0f s: %d differ (%d intended, %d not fixed yet, %d new), %d stale entries" % (
        len(selected), time.monotonic() - started, len(differing),
        sum(1 for listed in differing.values() if listed and listed[0] == "intended"),
        sum(1 for listed in differing.values() if listed and listed[0] == "not fixed yet"),
        len(unlisted), len(stale)))
    # The runner's verdict: a conversation passes when it agrees with RabbitMQ or differs as
    # docs/differences.md says it does; it fails when it differs unlisted. A stale entry (a
    # listed difference that is gone) fails too, so the list stays honest.
    failed = len(unlisted) + len(stale)
    print("%d passed, %d failed" % (len(selected) - len(unlisted), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
