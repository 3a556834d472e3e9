"""Resource alarms: a publisher is blocked (connection.blocked) while the broker's memory
is above its high watermark, and unblocked (connection.unblocked) once it falls back, as
RabbitMQ does. A connection that never published is not blocked, so it can drain queues.

Needs its own broker with a small watermark, so it only runs against a broker the suite
starts itself.
"""

import os
import threading
import time

import pika
import pytest

from conftest import _start_spatemq, _stop_process
from helpers import uniq

WATERMARK_MB = 100
MESSAGE_BYTES = 1024 * 1024


def _rss_mb(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


@pytest.fixture
def small_broker(tmp_path):
    if os.environ.get("SPATEMQ_TEST_URI"):
        pytest.skip("needs a broker the suite starts with its own memory watermark")
    proc, pump, port = _start_spatemq(1, tmp_path / "data", ["--memory-high-watermark", "%dMiB" % WATERMARK_MB])
    yield proc, port
    _stop_process(proc)
    pump.join(2)


def test_publisher_is_blocked_above_the_memory_watermark_and_unblocked_below(small_broker):
    proc, port = small_broker
    assert _rss_mb(proc.pid) < WATERMARK_MB / 2, "the idle broker must start well below the watermark"
    params = pika.ConnectionParameters("127.0.0.1", port, heartbeat=0)
    queue = uniq("alarm")
    setup = pika.BlockingConnection(params)
    setup.channel().queue_declare(queue)
    events = []
    published = []
    stop = threading.Event()

    def publish():
        # The broker stops reading this socket while blocked, so basic_publish itself waits:
        # this thread is held back until the alarm clears.
        publisher = pika.BlockingConnection(params)
        publisher.add_on_connection_blocked_callback(lambda _c, frame: events.append(("blocked", frame.method.reason)))
        publisher.add_on_connection_unblocked_callback(lambda _c, _frame: events.append(("unblocked", None)))
        channel = publisher.channel()
        body = b"x" * MESSAGE_BYTES
        while not stop.is_set() and len(published) < 4000:
            channel.basic_publish("", queue, body)
            published.append(1)
        deadline = time.monotonic() + 10
        while ("unblocked", None) not in events and time.monotonic() < deadline:
            publisher.process_data_events(0.2)
        publisher.close()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while _rss_mb(proc.pid) <= WATERMARK_MB and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rss_mb(proc.pid) > WATERMARK_MB, "memory never crossed the watermark"
    time.sleep(1.0)
    held_at = len(published)
    time.sleep(1.0)
    assert len(published) == held_at, "the publisher was not held back while the alarm was raised"

    # A connection that never published is not blocked: it drains the queue, and keeps draining
    # until the publisher (stopped once it moves again) has finished.
    drainer = setup.channel()
    assert drainer.queue_purge(queue).method.message_count > 0
    deadline = time.monotonic() + 30
    while thread.is_alive() and time.monotonic() < deadline:
        if len(published) > held_at:
            stop.set()
        drainer.queue_purge(queue)
        thread.join(0.5)
    assert not thread.is_alive(), "the publisher stayed blocked after memory fell below the watermark"
    assert len(published) > held_at, "publishing never resumed"
    kinds = [kind for kind, _ in events]
    assert kinds[:2] == ["blocked", "unblocked"], kinds
    assert events[0][1] == "low on memory"
    setup.close()


def test_publisher_is_blocked_when_free_disk_is_below_the_limit(tmp_path):
    if os.environ.get("SPATEMQ_TEST_URI"):
        pytest.skip("needs a broker the suite starts with its own disk limit")
    # No disk here has a petabyte free: the disk alarm is raised from the start.
    proc, pump, port = _start_spatemq(1, tmp_path / "data", ["--disk-free-limit", "1000000GB"])
    try:
        params = pika.ConnectionParameters("127.0.0.1", port, heartbeat=0)
        publisher = pika.BlockingConnection(params)
        events = []
        publisher.add_on_connection_blocked_callback(lambda _c, frame: events.append(frame.method.reason))
        channel = publisher.channel()
        queue = uniq("disk")
        channel.queue_declare(queue)
        channel.basic_publish("", queue, b"first")
        deadline = time.monotonic() + 10
        while not events and time.monotonic() < deadline:
            publisher.process_data_events(0.2)
        assert events == ["low on disk space"]
        # A connection that never published still works, and sees the one message.
        other = pika.BlockingConnection(params)
        assert other.channel().queue_declare(queue, passive=True).method.message_count == 1
        other.close()
    finally:
        _stop_process(proc)
        pump.join(2)
