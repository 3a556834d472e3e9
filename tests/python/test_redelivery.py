"""Improved task queue: a worker dies before acking, the task is redelivered."""

import os
import queue
import subprocess
import sys
import threading
import time

from helpers import get_one, message_count, persistent, uniq

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_hold.py")


def _read_lines(proc, q):
    for raw in iter(proc.stdout.readline, b""):
        q.put(raw.decode("utf-8", "replace").rstrip("\n"))
    q.put(None)


def _wait_line(q, prefix, timeout, seen):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("worker did not print %r within %.0f s; "
                                 "output: %r" % (prefix, timeout, seen))
        try:
            line = q.get(timeout=left)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError("worker exited before printing %r; output: %r"
                                 % (prefix, seen))
        seen.append(line)
        if line.startswith(prefix):
            return line


def test_killed_worker_task_is_redelivered(broker, channel):
    q = uniq("task_queue_redeliver")
    channel.queue_declare(q, durable=True)
    channel.confirm_delivery()
    channel.basic_publish("", q, b"important task", properties=persistent())

    proc = subprocess.Popen([sys.executable, WORKER, broker.uri, q],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    lines = queue.Queue()
    seen = []
    threading.Thread(target=_read_lines, args=(proc, lines), daemon=True).start()
    try:
        line = _wait_line(lines, "RECEIVED", 20, seen)
        assert line == "RECEIVED important task redelivered=False"
        # Unacked messages are not counted as ready.
        assert message_count(channel, q) == 0
    finally:
        proc.kill()  # SIGKILL: no chance to ack, close or cancel
        proc.wait(10)

    method, props, body = get_one(channel, q, timeout=15)
    assert body == b"important task"
    assert method.redelivered is True
    assert props.delivery_mode == 2
    channel.basic_ack(method.delivery_tag)
    assert message_count(channel, q) == 0
    m, _, _ = channel.basic_get(q)
    assert m is None
    channel.queue_delete(q)


def test_channel_close_requeues_unacked_in_order(broker, open_connections):
    """Closing a channel with unacked deliveries requeues them (redelivered)."""
    q = uniq("requeue_on_close")
    ctl = open_connections().channel()
    ctl.queue_declare(q)
    ctl.confirm_delivery()
    for i in range(3):
        ctl.basic_publish("", q, b"m%d" % i)

    conn = open_connections()
    ch = conn.channel()
    tags = []
    for i in range(3):
        method, _, body = get_one(ch, q)
        assert body == b"m%d" % i and method.redelivered is False
        tags.append(method.delivery_tag)
    assert tags == [1, 2, 3]
    ch.close()

    bodies = []
    for _ in range(3):
        method, _, body = get_one(ctl, q)
        assert method.redelivered is True
        bodies.append(body)
        ctl.basic_ack(method.delivery_tag)
    assert bodies == [b"m0", b"m1", b"m2"]
    assert message_count(ctl, q) == 0
    ctl.queue_delete(q)
