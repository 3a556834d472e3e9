"""Small helpers shared by the tests. Every wait here is bounded."""

import time
import uuid

import pika

DEFAULT_TIMEOUT = 10.0


def uniq(prefix):
    """A queue/exchange name no other test (or earlier run) uses."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def pump(connections, seconds):
    """Drive the I/O loops of several BlockingConnections for `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        for c in connections:
            c.process_data_events(time_limit=0.02)
        if time.monotonic() >= deadline:
            return


def wait_until(predicate, connections, timeout=DEFAULT_TIMEOUT, what="condition"):
    """Drive `connections` until predicate() is true; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s"
                                 % (timeout, what))
        for c in connections:
            c.process_data_events(time_limit=0.02)


def get_one(channel, queue, timeout=DEFAULT_TIMEOUT, auto_ack=False):
    """basic_get polled until a message arrives (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=auto_ack)
        if method is not None:
            return method, props, body
        if time.monotonic() >= deadline:
            raise AssertionError("no message in %r within %.1f s" % (queue, timeout))
        channel.connection.process_data_events(time_limit=0.05)


def consume_until(connection, channel, queue, stop, timeout=DEFAULT_TIMEOUT):
    """Consume (auto-ack) from `queue` until stop(body) is true for a body.

    Returns the bodies received before the stopping one, in order.
    """
    got = []
    done = []

    def on_message(ch, method, props, body):
        if done:
            return
        if stop(body):
            done.append(True)
        else:
            got.append(body)

    tag = channel.basic_consume(queue, on_message, auto_ack=True)
    try:
        wait_until(lambda: done, [connection], timeout,
                   "end marker in %r (got so far: %r)" % (queue, got))
    finally:
        channel.basic_cancel(tag)
    return got


def message_count(channel, queue):
    """Ready-message count via a passive queue.declare."""
    return channel.queue_declare(queue, passive=True).method.message_count


def wait_count(channel, queue, expected, timeout=DEFAULT_TIMEOUT):
    """Poll passive declares until the queue holds `expected` ready messages."""
    deadline = time.monotonic() + timeout
    while True:
        n = message_count(channel, queue)
        if n == expected:
            return
        if time.monotonic() >= deadline:
            raise AssertionError("queue %r has %d ready messages, expected %d"
                                 % (queue, n, expected))
        channel.connection.process_data_events(time_limit=0.05)


def persistent(**kw):
    return pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, **kw)
