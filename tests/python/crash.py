"""Crash test: confirmed messages survive SIGKILL of the broker.

Each cycle starts the broker on a data directory kept across cycles, runs four
publisher processes that publish persistent messages with publisher confirms
to a durable queue as fast as they can (and, in some cycles, a consumer with
manual acks that acks most of what it gets), kills the broker with SIGKILL at
a random moment, restarts it on the same data, drains the queue and checks:

- every confirmed id is back, unless the consumer acked it before the crash
  (lost: the only failure the durability promise allows no slack on);
- an id acked before the crash comes back at most once (acks are written
  without a sync, so once is allowed: at-least-once);
- a delivered but unacked id comes back flagged redelivered;
- nothing drained and acked in an earlier cycle comes back (that broker was
  stopped cleanly);
- the broker never panics and stops cleanly after SIGTERM.

A duplicate is an id seen more than once; allowed, reported.

Usage: python crash.py [--cycles N] [--binary PATH] [--seed S] [--keep]
(scripts/crash.sh is the entry point). The `_publish` and `_consume`
subcommands are the worker processes. Every wait is bounded and every process
it starts is stopped before it returns.
"""

import argparse
import collections
import os
import queue as queue_module
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pika
import pika.exceptions

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QUEUE = "crash-test-durable"
LISTEN_RE = re.compile(r"AMQP listening on 127\.0\.0\.1:(\d+)")
SHARDS = 2
PUBLISHERS = 4
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
FIRST_CONFIRM_TIMEOUT_S = 15.0
WORKER_EXIT_TIMEOUT_S = 15.0
DRAIN_TIMEOUT_S = 120.0
# A publisher stops on its own after this long, should the broker never die.
PUBLISHER_MAX_S = 60.0
# Publishes in flight per publisher (confirms not yet received).
CONFIRM_WINDOW = 500
# Body padding: small bodies for a high message rate; every third cycle large
# ones, so that the store fills its 64 MiB segment and starts the next one
# under load, and the crash can land on that boundary.
SMALL_PADDING_BYTES = 100
LARGE_PADDING_BYTES = 32 * 1024
# The consumer holds every HOLD_EVERY-th delivery unacked; with this prefetch
# it stalls once PREFETCH deliveries are held.
CONSUMER_PREFETCH = 300
HOLD_EVERY = 7


def connection_parameters(port):
    return pika.ConnectionParameters(
        host="127.0.0.1", port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=5, stack_timeout=10,
        blocked_connection_timeout=10, heartbeat=0)


# ---------------------------------------------------------------- workers


def publish_main(args):
    """Publishes `<prefix>-<n>` ids until the connection drops; writes
    `C id` for each confirm and `N id` for each nack, flushed at once so
    nothing recorded is lost if this process is killed too."""
    out = open(args.out, "w")
    padding = b"." * args.padding_bytes
    outstanding = collections.OrderedDict()  # delivery tag -> id
    state = {"next_number": 0, "next_tag": 1, "channel": None}

    def pump():
        channel = state["channel"]
        while channel is not None and channel.is_open and len(outstanding) < CONFIRM_WINDOW:
            message_id = "%s-%d" % (args.prefix, state["next_number"])
            state["next_number"] += 1
            channel.basic_publish(
                "", args.queue, message_id.encode() + b" " + padding,
                pika.BasicProperties(delivery_mode=2, message_id=message_id))
            outstanding[state["next_tag"]] = message_id
            state["next_tag"] += 1

    def on_confirm(frame):
        method = frame.method
        mark = "C" if isinstance(method, pika.spec.Basic.Ack) else "N"
        if method.multiple:
            tags = [tag for tag in outstanding if tag <= method.delivery_tag]
        else:
            tags = [method.delivery_tag] if method.delivery_tag in outstanding else []
        out.write("".join("%s %s\n" % (mark, outstanding.pop(tag)) for tag in tags))
        out.flush()
        pump()

    def on_channel(channel):
        state["channel"] = channel
        channel.add_on_close_callback(lambda _channel, _reason: stop())
        channel.confirm_delivery(ack_nack_callback=on_confirm, callback=lambda _frame: pump())

    def stop(*_ignored):
        if connection.is_open:
            connection.close()
        else:
            connection.ioloop.stop()

    connection = pika.SelectConnection(
        connection_parameters(args.port),
        on_open_callback=lambda conn: conn.channel(on_open_callback=on_channel),
        on_open_error_callback=lambda conn, _error: conn.ioloop.stop(),
        on_close_callback=lambda conn, _reason: conn.ioloop.stop())
    connection.ioloop.call_later(PUBLISHER_MAX_S, stop)
    try:
        connection.ioloop.start()
    finally:
        out.close()


def consume_main(args):
    """Consumes with manual acks: writes `D id redelivered` per delivery and
    `A id` before acking it (so a crash between the two can only make the
    record claim an ack the broker never got, never the other way round);
    holds every --hold-every-th delivery unacked (none with 0)."""
    out = open(args.out, "w")
    deliveries = [0]

    def on_message(channel, method, properties, _body):
        deliveries[0] += 1
        out.write("D %s %d\n" % (properties.message_id, int(method.redelivered)))
        if args.hold_every == 0 or deliveries[0] % args.hold_every != 0:
            out.write("A %s\n" % properties.message_id)
            out.flush()
            channel.basic_ack(method.delivery_tag)
        else:
            out.flush()

    try:
        connection = pika.BlockingConnection(connection_parameters(args.port))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=CONSUMER_PREFETCH)
        channel.basic_consume(args.queue, on_message)
        channel.start_consuming()
    except pika.exceptions.AMQPError:
        pass  # the broker went away: that is how this process is meant to end
    finally:
        out.close()


# ---------------------------------------------------------------- broker


class BrokerRun:
    """One broker process on the shared data directory, its output in a log."""

    def __init__(self, binary, data_dir, log_path, extra_args=()):
        self.log_path = log_path
        self.lines = []
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "--amqp-port", "0", "--bind", "127.0.0.1",
             "--management-port", "0", "--prometheus-port", "0",
             "--data-dir", data_dir, "--shards", str(SHARDS)] + list(extra_args),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.ready = queue_module.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = self._wait_listening()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            self.log.write(line)
            self.log.flush()
            match = LISTEN_RE.search(line)
            if match:
                self.ready.put(int(match.group(1)))
        self.ready.put(None)

    def _wait_listening(self):
        try:
            port = self.ready.get(timeout=START_TIMEOUT_S)
        except queue_module.Empty:
            port = None
        if port is None:
            self.kill()
            raise CycleError("the broker did not start within %.0f s (exit %s); see %s"
                             % (START_TIMEOUT_S, self.proc.returncode, self.log_path))
        return port

    def output(self):
        return "".join(self.lines)

    def kill(self):
        """SIGKILL: the crash under test."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap(STOP_TIMEOUT_S)

    def terminate(self):
        """SIGTERM; returns the exit code, or None if it had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            self._reap(STOP_TIMEOUT_S)

    def _reap(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)
        self.reader.join(timeout)
        self.log.close()


class CycleError(Exception):
    """A cycle could not run to its checks (the broker did not start, ...)."""


# ---------------------------------------------------------------- a cycle


def start_worker(role, port, out_path, prefix="", padding_bytes=0, hold_every=HOLD_EVERY):
    command = [sys.executable, os.path.abspath(__file__), role,
               "--port", str(port), "--queue", QUEUE, "--out", out_path,
               "--padding-bytes", str(padding_bytes), "--hold-every", str(hold_every)]
    if prefix:
        command += ["--prefix", prefix]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def stop_worker(proc, wait_s):
    """Lets a worker end on its own for `wait_s`, then SIGKILLs it."""
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)


def count_segments(data_dir):
    """Segment files on disk, all shards together."""
    root = os.path.join(data_dir, "messages")
    return sum(1 for _, _, files in os.walk(root) for name in files if name.endswith(".segment"))


def count_kept_for_reuse(data_dir):
    """Deleted segments' files kept to become the next segment, all shards together."""
    root = os.path.join(data_dir, "messages")
    return sum(1 for _, _, files in os.walk(root) for name in files
               if name == "next-segment.recycled")


def broker_args(args):
    return ["--segment-size", args.segment_size] if args.segment_size else []


def read_records(path):
    records = []
    if os.path.exists(path):
        with open(path) as lines:
            for line in lines:
                # A line cut by a kill has no newline: it was never complete.
                if line.endswith("\n"):
                    records.append(line.split())
    return records


def wait_first_confirm(paths, deadline):
    while time.monotonic() < deadline:
        if any(os.path.exists(path) and os.path.getsize(path) > 0 for path in paths):
            return True
        time.sleep(0.01)
    return False


def declare(port):
    connection = pika.BlockingConnection(connection_parameters(port))
    try:
        channel = connection.channel()
        channel.queue_declare(QUEUE, durable=True)
    finally:
        connection.close()


def drain(port):
    """Takes every message of the queue (manual acks); returns a list of
    (id, redelivered, body_matches_id)."""
    connection = pika.BlockingConnection(connection_parameters(port))
    try:
        channel = connection.channel()
        expected = channel.queue_declare(QUEUE, durable=True, passive=True).method.message_count
        channel.basic_qos(prefetch_count=1000)
        got = []
        last_tag = acked_tag = None
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        for method, properties, body in channel.consume(QUEUE, inactivity_timeout=1.0):
            if method is None:
                if len(got) >= expected:
                    break
                if time.monotonic() > deadline:
                    raise CycleError("drain stalled at %d of %d messages" % (len(got), expected))
                continue
            message_id = properties.message_id
            got.append((message_id, method.redelivered,
                        body.split(b" ", 1)[0] == (message_id or "").encode()))
            last_tag = method.delivery_tag
            if len(got) % 500 == 0:
                channel.basic_ack(last_tag, multiple=True)
                acked_tag = last_tag
            if time.monotonic() > deadline:
                raise CycleError("drain took longer than %.0f s" % DRAIN_TIMEOUT_S)
        # Not twice: a tag acked again is unknown to the broker (406), as to RabbitMQ.
        if last_tag is not None and last_tag != acked_tag:
            channel.basic_ack(last_tag, multiple=True)
        channel.cancel()
        method, _properties, _body = channel.basic_get(QUEUE, auto_ack=False)
        if method is not None:
            raise CycleError("the queue still held messages after the drain")
        return got
    finally:
        if connection.is_open:
            connection.close()


class Tally:
    """Counts of one cycle, or of all of them."""

    FIELDS = ["confirmed", "recovered", "consumed", "lost", "duplicates",
              "acked_back_once", "acked_back_twice", "unconfirmed_stored",
              "redelivered_flag_missing", "resurrected", "corrupt", "nacked"]

    def __init__(self):
        for field in self.FIELDS:
            setattr(self, field, 0)

    def add(self, other):
        for field in self.FIELDS:
            setattr(self, field, getattr(self, field) + getattr(other, field))

    def failures(self):
        problems = []
        if self.lost:
            problems.append("%d confirmed message(s) lost" % self.lost)
        if self.acked_back_twice:
            problems.append("%d acked message(s) came back more than once" % self.acked_back_twice)
        if self.resurrected:
            problems.append("%d message(s) acked before a clean stop came back" % self.resurrected)
        if self.corrupt:
            problems.append("%d message(s) whose body does not match their id" % self.corrupt)
        if self.redelivered_flag_missing:
            problems.append("%d delivered-unacked message(s) came back without redelivered"
                            % self.redelivered_flag_missing)
        return problems

    def summary(self):
        return ("confirmed %d / recovered %d / lost %d / duplicates %d"
                " (consumed before the crash %d, acked ones back once %d,"
                " unconfirmed but stored %d, nacked %d)"
                % (self.confirmed, self.recovered, self.lost, self.duplicates,
                   self.consumed, self.acked_back_once,
                   self.unconfirmed_stored, self.nacked))


def check(tally, confirmed, acked, delivered_unacked, drained, drained_before):
    counts = collections.Counter(message_id for message_id, _, _ in drained)
    tally.confirmed = len(confirmed)
    tally.recovered = len(confirmed & set(counts))
    tally.consumed = len((confirmed & acked) - set(counts))
    lost = confirmed - set(counts) - acked
    tally.lost = len(lost)
    tally.duplicates = sum(count - 1 for count in counts.values() if count > 1)
    tally.duplicates += sum(1 for message_id in acked if counts[message_id] > 0)
    tally.acked_back_once = sum(1 for message_id in acked if counts[message_id] == 1)
    tally.acked_back_twice = sum(1 for message_id in acked if counts[message_id] > 1)
    tally.unconfirmed_stored = len(set(counts) - confirmed)
    tally.resurrected = len(set(counts) & drained_before)
    tally.corrupt = sum(1 for _, _, matches in drained if not matches)
    redelivered = {message_id for message_id, flag, _ in drained if flag}
    tally.redelivered_flag_missing = len((delivered_unacked & set(counts)) - redelivered)
    return sorted(lost)[:10]


def run_cycle(number, args, rng, data_dir, work_dir, drained_before):
    cycle_dir = os.path.join(work_dir, "cycle-%03d" % number)
    os.makedirs(cycle_dir)
    with_consumer = number % 2 == 0
    consumer_dies_first = number % 4 == 0
    padding_bytes = LARGE_PADDING_BYTES if number % 3 == 0 else SMALL_PADDING_BYTES
    broker = BrokerRun(args.binary, data_dir, os.path.join(cycle_dir, "broker-crashed.log"),
                       broker_args(args))
    workers = []
    try:
        declare(broker.port)
        publisher_files = [os.path.join(cycle_dir, "publisher-%d.txt" % index)
                           for index in range(PUBLISHERS)]
        consumer_file = os.path.join(cycle_dir, "consumer.txt")
        for index, path in enumerate(publisher_files):
            workers.append(start_worker("_publish", broker.port, path,
                                        "c%d-p%d" % (number, index), padding_bytes))
        consumer = (start_worker("_consume", broker.port, consumer_file, hold_every=args.hold_every)
                    if with_consumer else None)
        if not wait_first_confirm(publisher_files, time.monotonic() + FIRST_CONFIRM_TIMEOUT_S):
            raise CycleError("no publish was confirmed within %.0f s" % FIRST_CONFIRM_TIMEOUT_S)
        kill_after = rng.uniform(0.3, 2.0)
        time.sleep(kill_after)
        if consumer is not None and consumer_dies_first:
            consumer.kill()
            time.sleep(0.1)
        broker.kill()
        segments = count_segments(data_dir)
        kept = count_kept_for_reuse(data_dir)
        if consumer is not None:
            consumer.kill()
            consumer.wait(STOP_TIMEOUT_S)
        for worker in workers:
            stop_worker(worker, WORKER_EXIT_TIMEOUT_S)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(STOP_TIMEOUT_S)
        broker.kill()

    confirmed, nacked = set(), 0
    for path in publisher_files:
        for record in read_records(path):
            if record[0] == "C":
                confirmed.add(record[1])
            else:
                nacked += 1
    consumer_records = read_records(consumer_file) if with_consumer else []
    acked = {record[1] for record in consumer_records if record[0] == "A"}
    delivered = {record[1] for record in consumer_records if record[0] == "D"}

    restarted = BrokerRun(args.binary, data_dir, os.path.join(cycle_dir, "broker-restarted.log"),
                          broker_args(args))
    try:
        drained = drain(restarted.port)
    finally:
        exit_code = restarted.terminate()
    tally = Tally()
    tally.nacked = nacked
    lost_sample = check(tally, confirmed, acked, delivered - acked, drained, drained_before)
    drained_before.update(message_id for message_id, _, _ in drained)

    problems = tally.failures()
    if exit_code != 0:
        problems.append("the restarted broker exited with %s after SIGTERM" % exit_code)
    for run in (broker, restarted):
        if "panicked" in run.output():
            problems.append("the broker panicked, see %s" % run.log_path)
    consumer_note = ""
    if with_consumer:
        consumer_note = ", consumer mid-flight (%d acked, %d held%s)" % (
            len(acked), len(delivered - acked),
            ", killed before the broker" if consumer_dies_first else "")
    print("cycle %d/%d: %d-byte bodies, SIGKILL %.2f s after the first confirm"
          " with %d segment file(s) on disk (%d kept for reuse)%s: %s"
          % (number, args.cycles, padding_bytes, kill_after, segments, kept, consumer_note,
             tally.summary()), flush=True)
    for problem in problems:
        print("  FAIL: %s" % problem, flush=True)
    if lost_sample:
        print("  lost ids (first 10): %s" % " ".join(lost_sample), flush=True)
    return tally, problems


def run(args):
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    work_dir = tempfile.mkdtemp(prefix="spatemq-crash-")
    data_dir = os.path.join(work_dir, "data")
    os.makedirs(data_dir)
    print("crash test: %d cycles, %d shards, %d publishers, seed %d, work dir %s"
          % (args.cycles, SHARDS, PUBLISHERS, seed, work_dir), flush=True)
    total = Tally()
    all_problems = []
    drained_before = set()
    for number in range(1, args.cycles + 1):
        try:
            tally, problems = run_cycle(number, args, rng, data_dir, work_dir, drained_before)
        except (CycleError, pika.exceptions.AMQPError) as error:
            tally, problems = Tally(), ["cycle %d did not complete: %r" % (number, error)]
            print("cycle %d/%d: FAIL: %s" % (number, args.cycles, problems[0]), flush=True)
        total.add(tally)
        all_problems += problems
    print("total over %d cycles: %s" % (args.cycles, total.summary()), flush=True)
    if all_problems:
        print("crash test FAILED (seed %d): %d problem(s); data and logs kept in %s"
              % (seed, len(all_problems), work_dir), flush=True)
        return 1
    print("crash test passed: every confirmed message survived", flush=True)
    if not args.keep:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="run", choices=["run", "_publish", "_consume"])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--binary", default=os.environ.get("SPATEMQ_BIN")
                        or os.path.join(REPO_ROOT, "target", "release", "spatemq"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--keep", action="store_true", help="keep the work dir after a pass")
    parser.add_argument("--port", type=int)
    parser.add_argument("--queue", default=QUEUE)
    parser.add_argument("--out")
    parser.add_argument("--prefix")
    parser.add_argument("--padding-bytes", type=int, default=SMALL_PADDING_BYTES)
    parser.add_argument("--segment-size", help="the broker's --segment-size (small segments are"
                        " filled, deleted and their files reused within a cycle)")
    parser.add_argument("--hold-every", type=int, default=HOLD_EVERY,
                        help="the consumer leaves every N-th delivery unacked; 0: none")
    args = parser.parse_args(argv)
    if args.role == "_publish":
        publish_main(args)
        return 0
    if args.role == "_consume":
        consume_main(args)
        return 0
    if args.cycles < 1:
        parser.error("--cycles must be at least 1")
    if not os.access(args.binary, os.X_OK):
        parser.error("broker binary %s not found (cargo build --release, or set SPATEMQ_BIN)"
                     % args.binary)
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
