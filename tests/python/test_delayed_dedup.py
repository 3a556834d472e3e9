"""Delayed messages (the x-delayed-message exchange type of RabbitMQ's plugin) and LavinMQ's
message deduplication, driven by pika as their users write them: the README's examples, the
plugin's refusals, and what a duplicate or a held message does to a confirm-mode publisher."""

import time

import pika
import pytest

from helpers import uniq


def _count(channel, queue):
    return channel.queue_declare(queue, passive=True).method.message_count


def _drain(channel, queue):
    bodies = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def test_a_queue_drops_a_repeated_deduplication_header_and_still_confirms_it(channel):
    queue = uniq("payments")
    channel.confirm_delivery()
    channel.queue_declare(queue, arguments={
        "x-message-deduplication": True, "x-cache-size": 10000, "x-cache-ttl": 60000})
    for body, key in ((b"first", "payment-42"), (b"repeat", "payment-42"), (b"other", "payment-43")):
        # confirm_delivery makes basic_publish raise on a nack: every one of these is acked.
        channel.basic_publish("", queue, body,
                              pika.BasicProperties(headers={"x-deduplication-header": key}))
    channel.basic_publish("", queue, b"no header")
    channel.basic_publish("", queue, b"no header")
    assert _drain(channel, queue) == [b"first", b"other", b"no header", b"no header"]
    channel.queue_delete(queue)


def test_an_exchange_drops_a_duplicate_before_routing_it(channel):
    exchange, queue = uniq("dedup-x"), uniq("dedup-q")
    channel.confirm_delivery()
    channel.exchange_declare(exchange, "fanout", arguments={
        "x-message-deduplication": True, "x-cache-size": 100, "x-deduplication-header": "msg-id"})
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange)
    for body in (b"a", b"b"):
        channel.basic_publish(exchange, "", body, pika.BasicProperties(headers={"msg-id": "same"}),
                              mandatory=True)
    assert _drain(channel, queue) == [b"a"]
    channel.exchange_delete(exchange)
    channel.queue_delete(queue)


def test_a_bad_cache_size_is_406_naming_it(channel):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        channel.queue_declare(uniq("bad-dedup"), arguments={
            "x-message-deduplication": True, "x-cache-size": 0})
    assert refused.value.reply_code == 406
    assert "x-cache-size" in refused.value.reply_text


def test_a_delayed_message_is_routed_when_due_and_not_before(channel):
    exchange, queue = uniq("later"), uniq("reminders")
    channel.confirm_delivery()
    channel.exchange_declare(exchange, "x-delayed-message", durable=True,
                             arguments={"x-delayed-type": "direct"})
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, exchange, routing_key="remind")
    published = time.monotonic()
    channel.basic_publish(exchange, "remind", b"in one second",
                          pika.BasicProperties(delivery_mode=2, headers={"x-delay": 1000}))
    channel.basic_publish(exchange, "remind", b"at once",
                          pika.BasicProperties(delivery_mode=2, headers={"x-delay": 0}))
    assert _drain(channel, queue) == [b"at once"], "x-delay 0 routes at once, the other waits"
    deadline = published + 10
    while _count(channel, queue) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert time.monotonic() - published >= 0.95, "routed before it was due"
    assert _drain(channel, queue) == [b"in one second"]
    channel.exchange_delete(exchange)
    channel.queue_delete(queue)


def test_a_delayed_exchange_without_its_type_is_refused_as_the_plugin_refuses_it(channel):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        channel.exchange_declare(uniq("untyped"), "x-delayed-message")
    assert refused.value.reply_code == 406
    assert refused.value.reply_text == (
        "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type")
