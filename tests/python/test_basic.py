"""basic.get, purge, delete, nack/reject, qos and publisher confirms."""

import pika
import pika.exceptions
import pytest

from helpers import (get_one, message_count, pump, uniq, wait_count,
                     wait_until)


def fill(ch, q, n, prefix=b"m"):
    ch.confirm_delivery()
    for i in range(n):
        ch.basic_publish("", q, prefix + b"%d" % i)


def test_server_announces_rabbitmq_capabilities(broker, connection):
    """RabbitMQ's connection.start lists these capabilities; clients (the
    Java client, kombu) check some of them before using the extension."""
    capabilities = connection._impl.server_properties["capabilities"]
    for name in ["publisher_confirms", "exchange_exchange_bindings",
                 "basic.nack", "consumer_cancel_notify", "connection.blocked",
                 "consumer_priorities", "authentication_failure_close",
                 "per_consumer_qos", "direct_reply_to"]:
        assert capabilities.get(name) is True, name


def test_basic_get_and_get_empty(broker, channel):
    q = uniq("get_q")
    channel.queue_declare(q)
    m, props, body = channel.basic_get(q)
    assert (m, props, body) == (None, None, None)  # basic.get-empty
    fill(channel, q, 3)
    wait_count(channel, q, 3)
    m, _, body = channel.basic_get(q, auto_ack=True)
    assert body == b"m0" and m.message_count == 2 and m.redelivered is False
    m, _, body = channel.basic_get(q, auto_ack=False)
    assert body == b"m1" and m.message_count == 1
    channel.basic_ack(m.delivery_tag)
    m, _, body = channel.basic_get(q, auto_ack=True)
    assert body == b"m2" and m.message_count == 0
    assert channel.basic_get(q) == (None, None, None)
    channel.queue_delete(q)


def test_purge_returns_count(broker, channel):
    q = uniq("purge_q")
    channel.queue_declare(q)
    fill(channel, q, 7)
    wait_count(channel, q, 7)
    assert channel.queue_purge(q).method.message_count == 7
    assert message_count(channel, q) == 0
    assert channel.queue_purge(q).method.message_count == 0
    channel.queue_delete(q)


def test_delete_returns_count(broker, channel):
    q = uniq("delete_q")
    channel.queue_declare(q, durable=True)
    fill(channel, q, 4)
    wait_count(channel, q, 4)
    assert channel.queue_delete(q).method.message_count == 4
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        channel.queue_declare(q, passive=True)
    assert ei.value.reply_code == 404


def test_delete_if_empty_and_if_unused(broker, connection):
    ch = connection.channel()
    q = uniq("del_cond")
    ch.queue_declare(q)
    fill(ch, q, 1)
    wait_count(ch, q, 1)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        ch.queue_delete(q, if_empty=True)
    assert ei.value.reply_code == 406
    ch = connection.channel()
    ch.basic_consume(q, lambda *a: None, auto_ack=False)
    ch2 = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        ch2.queue_delete(q, if_unused=True)
    assert ei.value.reply_code == 406
    assert connection.channel().queue_delete(q).method.message_count in (0, 1)


def test_nack_requeue_redelivers(broker, channel):
    q = uniq("nack_q")
    channel.queue_declare(q)
    fill(channel, q, 1)
    m, _, body = get_one(channel, q)
    assert body == b"m0" and m.redelivered is False
    channel.basic_nack(m.delivery_tag, requeue=True)
    m2, _, body2 = get_one(channel, q)
    assert body2 == b"m0"
    assert m2.redelivered is True
    assert m2.delivery_tag != m.delivery_tag
    channel.basic_ack(m2.delivery_tag)
    assert message_count(channel, q) == 0
    channel.queue_delete(q)


def test_nack_multiple(broker, channel):
    q = uniq("nack_multi")
    channel.queue_declare(q)
    fill(channel, q, 3)
    tags = [get_one(channel, q)[0].delivery_tag for _ in range(3)]
    channel.basic_nack(tags[-1], multiple=True, requeue=True)
    wait_count(channel, q, 3)
    bodies = []
    for _ in range(3):
        m, _, b = get_one(channel, q, auto_ack=True)
        assert m.redelivered is True
        bodies.append(b)
    assert bodies == [b"m0", b"m1", b"m2"]
    channel.queue_delete(q)


def test_reject_without_requeue_drops(broker, channel):
    q = uniq("reject_q")
    channel.queue_declare(q)
    fill(channel, q, 2)
    m, _, body = get_one(channel, q)
    assert body == b"m0"
    channel.basic_reject(m.delivery_tag, requeue=False)
    m, _, body = get_one(channel, q)
    assert body == b"m1"
    channel.basic_reject(m.delivery_tag, requeue=True)
    m, _, body = get_one(channel, q)
    assert body == b"m1" and m.redelivered is True
    channel.basic_reject(m.delivery_tag, requeue=False)
    assert channel.basic_get(q) == (None, None, None)
    assert message_count(channel, q) == 0
    channel.queue_delete(q)


def test_ack_multiple(broker, channel):
    q = uniq("ack_multi")
    channel.queue_declare(q)
    fill(channel, q, 5)
    tags = [get_one(channel, q)[0].delivery_tag for _ in range(5)]
    assert tags == sorted(tags)
    channel.basic_ack(tags[2], multiple=True)
    channel.close()  # the 2 unacked ones come back
    ch = channel.connection.channel()
    wait_count(ch, q, 2)
    assert [get_one(ch, q, auto_ack=True)[2] for _ in range(2)] == [b"m3", b"m4"]
    ch.queue_delete(q)


def test_prefetch_limits_unacked(broker, connection):
    ch = connection.channel()
    q = uniq("qos_q")
    ch.queue_declare(q)
    fill(ch, q, 10)
    ch.basic_qos(prefetch_count=3)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(m.delivery_tag))
    wait_until(lambda: len(got) >= 3, [connection])
    pump([connection], 0.4)
    assert len(got) == 3
    ch.basic_ack(got[0])
    wait_until(lambda: len(got) >= 4, [connection])
    pump([connection], 0.3)
    assert len(got) == 4
    ch.basic_ack(got[-1], multiple=True)
    wait_until(lambda: len(got) >= 7, [connection])
    pump([connection], 0.3)
    assert len(got) == 7


def test_consumer_cancel_stops_delivery(broker, connection):
    ch = connection.channel()
    q = uniq("cancel_q")
    ch.queue_declare(q)
    got = []
    tag = ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    fill(ch, q, 1)
    wait_until(lambda: got, [connection])
    ch.basic_cancel(tag)
    ch.basic_publish("", q, b"after-cancel")
    wait_count(ch, q, 1)
    assert got == [b"m0"]
    ch.queue_delete(q)


def test_large_message_roundtrip(broker, channel):
    """A body larger than frame_max is split into several body frames."""
    q = uniq("large_q")
    channel.queue_declare(q)
    body = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB
    fill(channel, q, 0)
    channel.basic_publish("", q, body)
    channel.basic_publish("", q, b"")  # empty body
    m, _, got = get_one(channel, q, auto_ack=True)
    assert got == body
    m, _, got = get_one(channel, q, auto_ack=True)
    assert got == b""
    channel.queue_delete(q)


# Publisher confirms -----------------------------------------------------------

def test_publisher_confirms_100(broker, channel):
    q = uniq("confirm_q")
    channel.queue_declare(q, durable=True)
    channel.confirm_delivery()
    for i in range(100):
        # With confirms on, pika waits for basic.ack and raises on nack.
        channel.basic_publish("", q, b"c%d" % i,
                              properties=pika.BasicProperties(delivery_mode=2))
    assert message_count(channel, q) == 100
    channel.queue_delete(q)


def test_confirm_mandatory_unroutable_raises(broker, channel):
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as ei:
        channel.basic_publish("", uniq("nowhere"), b"lost", mandatory=True)
    returned = ei.value.messages
    assert len(returned) == 1
    assert returned[0].body == b"lost"
    assert returned[0].method.reply_code == 312
    assert returned[0].method.reply_text == "NO_ROUTE"

    ex = uniq("empty_direct")
    channel.exchange_declare(ex, "direct", auto_delete=True)
    with pytest.raises(pika.exceptions.UnroutableError):
        channel.basic_publish(ex, "no-binding", b"lost2", mandatory=True)
    # Not mandatory: silently dropped, still confirmed.
    channel.basic_publish(ex, "no-binding", b"dropped")
    # The channel is still usable.
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", q, b"ok", mandatory=True)
    assert get_one(channel, q, auto_ack=True)[2] == b"ok"
    channel.exchange_delete(ex)


def test_mandatory_return_without_confirms(broker, connection):
    ch = connection.channel()
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m, b)))
    key = uniq("nowhere")
    ch.basic_publish("", key, b"back", mandatory=True)
    wait_until(lambda: returned, [connection], what="basic.return")
    m, body = returned[0]
    assert body == b"back"
    assert (m.reply_code, m.reply_text, m.exchange, m.routing_key) == (
        312, "NO_ROUTE", "", key)
