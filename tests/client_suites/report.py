"""Reads the JUnit files that scripts/client-suites.sh left for each broker and suite, prints
the per-suite counts and the tests that fail on SpateMQ, and checks those against
docs/client-suites.md.

Usage: report.py --results DIR --doc docs/client-suites.md --brokers spatemq[,rabbitmq]
                 --suites py-amqp,kombu,amqplib

DIR/<broker>/<suite>.xml is one suite's JUnit report against one broker (pytest's, or node's
test runner's). A test is named `<suite>: <path>`: for pytest the test id
(`test_rmq.py::test_connect[plain]`), for node the file and the describe blocks
(`connect.test.js > Connect > Connect API > ipv6`).

docs/client-suites.md lists, under three headings, the tests that are allowed to fail on
SpateMQ: `## RabbitMQ-only` (they assert facts about RabbitMQ itself), `## Not fixed yet`
(SpateMQ behaves differently; to fix) and `## Fail on RabbitMQ too` (they cannot pass on this
machine against either broker). An entry is a line `` - `NAME` — reason ``, NAME a test name
or a glob (`*`, `?`, `[...]`).

Exit status 1 when a test fails on SpateMQ and no entry covers it; with RabbitMQ results,
also when a test passes on RabbitMQ and fails on SpateMQ under a `Fail on RabbitMQ too`
entry, when a `Fail on RabbitMQ too` test passes on RabbitMQ, or when an entry covers no
failing test (stale: remove it). The last line counts the SpateMQ run's tests: `SpateMQ: N
passed, M failed, K skipped`, listed failures included.
"""

import argparse
import fnmatch
import os
import re
import sys
import xml.etree.ElementTree as ElementTree

SECTIONS = {"RabbitMQ-only": "rabbitmq-only", "Not fixed yet": "not-fixed",
            "Fail on RabbitMQ too": "fails-on-both"}
ENTRY = re.compile(r"^- `([^`]+)`")


def read_doc(path):
    """The doc's entries as a list of (pattern, section)."""
    entries, section = [], None
    with open(path, encoding="utf-8") as doc:
        for line in doc:
            if line.startswith("## "):
                section = SECTIONS.get(line[3:].strip())
                continue
            match = ENTRY.match(line)
            if match and section:
                entries.append((match.group(1), section))
    return entries


def _outcome(case):
    if case.find("failure") is not None or case.find("error") is not None or case.get("failure"):
        return "failed"
    if case.find("skipped") is not None:
        return "skipped"
    return "passed"


def read_pytest(path, suite):
    results = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        # classname is package.module[.Class]; the test id keeps the module file and the class.
        names = [part for part in module if part not in ("t", "integration")]
        if names:
            names[0] += ".py"
        name = "%s: %s" % (suite, "::".join(names + [case.get("name", "?")]))
        # A test that fails in teardown appears twice: a failure wins.
        if results.get(name) != "failed":
            results[name] = _outcome(case)
    return results


def read_node(path, suite, test_file):
    """node --test's JUnit: nested elements named by describe blocks, testcases inside (a
    describe that never finished comes out as an element named `undefined`, still with its
    name). A testcase named by a file path is the file itself: it fails on a timeout."""
    results = {}

    def walk(element, path_names):
        for child in element:
            if child.tag == "testcase":
                name = child.get("name", "?")
                if name.startswith("/") or name.endswith(".js"):
                    label = "%s: %s (the whole file)" % (suite, test_file)
                else:
                    label = "%s: %s" % (suite, " > ".join([test_file] + path_names + [name]))
                while label in results:
                    label += " (again)"
                results[label] = _outcome(child)
            elif child.get("name") is not None:
                walk(child, path_names + [child.get("name")])

    walk(ElementTree.parse(path).getroot(), [])
    return results


def read_results(directory, suite):
    """{test name: outcome} of one suite against one broker; None when the suite did not run."""
    results, found = {}, False
    for file_name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if not (file_name.startswith(suite + ".") and file_name.endswith(".xml")):
            continue
        found = True
        path = os.path.join(directory, file_name)
        try:
            if suite == "amqplib":
                test_file = file_name[len(suite) + 1:-len(".xml")]
                results.update(read_node(path, suite, test_file))
            else:
                results.update(read_pytest(path, suite))
        except ElementTree.ParseError as error:
            results["%s: %s (report unreadable: %s)" % (suite, file_name, error)] = "failed"
    return results if found else None


def counts(results):
    tally = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in results.values():
        tally[outcome] += 1
    return tally


def covering(name, entries):
    for pattern, section in entries:
        if name == pattern or fnmatch.fnmatchcase(name, pattern):
            return pattern, section
    return None, None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--doc", required=True)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--suites", required=True)
    args = parser.parse_args()
    brokers = args.brokers.split(",")
    suites = args.suites.split(",")
    entries = read_doc(args.doc)
    with_rabbitmq = "rabbitmq" in brokers

    results = {broker: {} for broker in brokers}
    by_suite = {}
    for suite in suites:
        for broker in brokers:
            got = read_results(os.path.join(args.results, broker), suite)
            by_suite[suite, broker] = got
            results[broker].update(got if got is not None else {"%s: (the suite did not run)" % suite: "failed"})
    # "did not run": tests of the suite that the other broker ran and this one did not (a test
    # file cut short by the time limit).
    print("%-10s %-9s %7s %7s %8s %12s" % ("suite", "broker", "passed", "failed", "skipped", "did not run"))
    for suite in suites:
        for broker in brokers:
            got = by_suite[suite, broker]
            if got is None:
                print("%-10s %-9s %s" % (suite, broker, "did not run (see its log)"))
                continue
            tally = counts(got)
            others = set()
            for other in brokers:
                if other != broker and by_suite[suite, other]:
                    others |= {name for name in by_suite[suite, other] if not name.endswith("(the whole file)")}
            print("%-10s %-9s %7d %7d %8d %12d" % (suite, broker, tally["passed"], tally["failed"],
                                                    tally["skipped"], len(others - set(got))))

    spatemq, rabbitmq = results["spatemq"], results.get("rabbitmq", {})
    problems, used = [], set()
    failing = sorted(name for name, outcome in spatemq.items() if outcome == "failed")
    # Tests that pass on RabbitMQ and never ran on SpateMQ: their file was cut short (a whole-
    # file failure then explains them) or they are missing for another reason (a failure).
    not_run = {}
    for name, outcome in rabbitmq.items():
        if outcome == "passed" and name not in spatemq:
            whole_file = name.split(" > ")[0] + " (the whole file)"
            not_run.setdefault(whole_file if spatemq.get(whole_file) == "failed" else name, []).append(name)
    for name in not_run:
        if name not in spatemq:
            failing.append(name)
    print()
    print("Tests that fail on SpateMQ%s:" % (" (RabbitMQ's outcome in brackets)" if with_rabbitmq else ""))
    for name in failing:
        pattern, section = covering(name, entries)
        on_rabbitmq = rabbitmq.get(name, "not run") if with_rabbitmq else None
        verdict = section or "NOT LISTED in docs/client-suites.md"
        print("  %s%s: %s" % (name, " [%s]" % on_rabbitmq if on_rabbitmq else "", verdict))
        if name in not_run:
            tests = not_run[name]
            print("      %d test(s) that pass on RabbitMQ did not run on SpateMQ%s" % (
                len(tests), ", e.g. " + tests[0] if name not in tests else ""))
        if pattern is None:
            problems.append("not listed: " + name)
            continue
        used.add(pattern)
        if with_rabbitmq and section == "fails-on-both" and on_rabbitmq == "passed":
            problems.append("listed under 'Fail on RabbitMQ too' but passes on RabbitMQ: " + name)
        if with_rabbitmq and section != "fails-on-both" and on_rabbitmq == "failed":
            problems.append("fails on RabbitMQ too: list it under 'Fail on RabbitMQ too': " + name)
    if not failing:
        print("  (none)")
    if with_rabbitmq:
        for name, outcome in sorted(rabbitmq.items()):
            pattern, section = covering(name, entries)
            if section == "fails-on-both" and outcome == "passed" and spatemq.get(name) == "passed":
                problems.append("listed under 'Fail on RabbitMQ too' but passes on both: " + name)
    suites_run = tuple(suite + ":" for suite in suites)
    for pattern, section in entries:
        if pattern not in used and pattern.startswith(suites_run):
            problems.append("stale entry (covers no failing test): " + pattern)

    if problems:
        print()
        for problem in problems:
            print("PROBLEM " + problem)
    tally = counts(spatemq)
    print()
    print("SpateMQ: %d passed, %d failed, %d skipped" % (tally["passed"], tally["failed"], tally["skipped"]))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
