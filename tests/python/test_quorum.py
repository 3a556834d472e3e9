"""Quorum queues on one node, as a pika application written for RabbitMQ 3.10 uses them:
declared durable with x-queue-type quorum, a delivery limit, x-delivery-count on
redeliveries, and RabbitMQ's refusals."""

import pika
import pytest

from helpers import uniq


def _declare_quorum(channel, name, **arguments):
    arguments["x-queue-type"] = "quorum"
    return channel.queue_declare(name, durable=True, arguments=arguments)


def test_quorum_queue_redeliveries_count_until_the_delivery_limit(channel):
    q = uniq("quorum_work")
    _declare_quorum(channel, q, **{"x-delivery-limit": 1})
    channel.confirm_delivery()
    channel.basic_publish("", q, b"job")
    counts = []
    for _ in range(2):
        method, properties, body = channel.basic_get(q, auto_ack=False)
        assert body == b"job"
        counts.append((properties.headers or {}).get("x-delivery-count"))
        channel.basic_nack(method.delivery_tag, requeue=True)
    # basic.get of a quorum queue always carries the count, 0 on the first delivery.
    assert counts == [0, 1]
    assert channel.queue_declare(q, passive=True).method.message_count == 0
    channel.queue_delete(q)


def test_quorum_queue_must_be_durable(broker, channel):
    q = uniq("quorum_transient")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        channel.queue_declare(q, durable=False, arguments={"x-queue-type": "quorum"})
    assert refused.value.reply_code == 406
    assert refused.value.reply_text == (
        "PRECONDITION_FAILED - invalid property 'non-durable' for queue '%s' in vhost '/'" % q)


def test_quorum_queue_refuses_priorities(channel):
    q = uniq("quorum_priority")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        _declare_quorum(channel, q, **{"x-max-priority": 10})
    assert refused.value.reply_code == 406
    assert refused.value.reply_text.endswith("of queue type rabbit_quorum_queue")


def test_quorum_and_classic_redeclare_is_406(connection, channel):
    q = uniq("quorum_redeclare")
    _declare_quorum(channel, q)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        channel.queue_declare(q, durable=True)
    assert refused.value.reply_code == 406
    assert refused.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '%s' in vhost '/': "
        "received none but current is the value 'quorum' of type 'longstr'" % q)
    connection.channel().queue_delete(q)
