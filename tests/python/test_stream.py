"""Streams on one node, as RabbitMQ's documentation uses them from an AMQP 0-9-1 client:
declared durable with x-queue-type stream, consumed with a prefetch and manual acks from an
x-stream-offset ('first', a timestamp), each delivery carrying its x-stream-offset."""

import datetime

import pika
import pytest

from helpers import uniq


def _declare_stream(channel, name):
    return channel.queue_declare(
        queue=name,
        durable=True,
        arguments={"x-queue-type": "stream", "x-max-length-bytes": 20_000_000_000,
                   "x-stream-max-segment-size-bytes": 100_000_000})


def _consume(channel, name, offset, count):
    """Consumes `count` messages from `offset` (prefetch 100, manual acks) and returns each
    (x-stream-offset, body); fewer if the broker sends no more within a second."""
    channel.basic_qos(prefetch_count=100)
    got = []
    for method, properties, body in channel.consume(
            name, auto_ack=False, arguments={"x-stream-offset": offset}, inactivity_timeout=1):
        if method is None:
            break
        got.append((properties.headers["x-stream-offset"], body))
        channel.basic_ack(method.delivery_tag)
        if len(got) == count:
            break
    channel.cancel()
    return got


def test_stream_consumers_read_from_first_and_from_a_timestamp(channel):
    name = uniq("my_stream")
    _declare_stream(channel, name)
    channel.confirm_delivery()
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    for index in range(10):
        channel.basic_publish("", name, b"hello %d" % index)
    expected = [(index, b"hello %d" % index) for index in range(10)]
    assert _consume(channel, name, "first", 10) == expected
    # Acks remove nothing: a second consumer reads the same messages.
    assert _consume(channel, name, before, 10) == expected
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)
    assert _consume(channel, name, later, 1) == []
    assert _consume(channel, name, 7, 3) == expected[7:]
    channel.queue_delete(name)


def test_stream_consumer_without_prefetch_is_refused(channel):
    name = uniq("my_stream")
    _declare_stream(channel, name)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        channel.basic_consume(name, lambda *_: None, arguments={"x-stream-offset": "first"})
    assert refused.value.reply_code == 406
    assert refused.value.reply_text == (
        "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue '%s' in vhost '/''" % name)
