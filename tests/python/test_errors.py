"""Channel/connection errors: codes and reply texts as RabbitMQ sends them."""

import pika
import pika.exceptions
import pytest

from helpers import get_one, uniq


def closed_by_broker(fn):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        fn()
    return ei.value.reply_code, ei.value.reply_text


def locked_text(q):
    return ("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue "
            "'%s' in vhost '/'. It could be originally declared on another "
            "connection or the exclusive property value does not match that "
            "of the original declaration." % q)


def test_redeclare_durable_queue_as_non_durable_is_406(broker, open_connections):
    conn = open_connections()
    ch = conn.channel()
    q = uniq("durable_q")
    ch.queue_declare(q, durable=True)
    ch2 = conn.channel()
    code, text = closed_by_broker(lambda: ch2.queue_declare(q, durable=False))
    assert code == 406
    assert ("inequivalent arg 'durable' for queue '%s' in vhost '/': received "
            "'false' but current is 'true'" % q) in text
    assert text == ("PRECONDITION_FAILED - inequivalent arg 'durable' for queue "
                    "'%s' in vhost '/': received 'false' but current is 'true'" % q)
    # Only the channel is closed; the connection and the queue survive.
    assert conn.is_open and ch.is_open and ch2.is_closed
    ch.queue_declare(q, durable=True)  # equivalent redeclare is fine
    ch.queue_declare(q, passive=True)
    ch.queue_delete(q)


def test_redeclare_queue_auto_delete_mismatch_is_406(broker, channel, connection):
    q = uniq("ad_q")
    channel.queue_declare(q, durable=True)
    ch2 = connection.channel()
    code, text = closed_by_broker(
        lambda: ch2.queue_declare(q, durable=True, auto_delete=True))
    assert code == 406
    assert text == ("PRECONDITION_FAILED - inequivalent arg 'auto_delete' for "
                    "queue '%s' in vhost '/': received 'true' but current is "
                    "'false'" % q)
    channel.queue_delete(q)


def test_redeclare_exchange_type_mismatch_is_406(broker, channel, connection):
    ex = uniq("ex")
    channel.exchange_declare(ex, "direct", auto_delete=True)
    ch2 = connection.channel()
    code, text = closed_by_broker(lambda: ch2.exchange_declare(ex, "fanout"))
    assert code == 406
    assert text == ("PRECONDITION_FAILED - inequivalent arg 'type' for exchange "
                    "'%s' in vhost '/': received 'fanout' but current is "
                    "'direct'" % ex)
    channel.exchange_delete(ex)


@pytest.mark.parametrize("op", ["declare", "declare_exclusive", "passive",
                                "consume", "get", "purge", "delete", "bind"])
def test_exclusive_queue_locked_for_other_connection(broker, open_connections, op):
    owner = open_connections().channel()
    q = uniq("excl")
    owner.queue_declare(q, exclusive=True)
    other = open_connections().channel()
    ops = {
        "declare": lambda: other.queue_declare(q),
        "declare_exclusive": lambda: other.queue_declare(q, exclusive=True),
        "passive": lambda: other.queue_declare(q, passive=True),
        "consume": lambda: other.basic_consume(q, lambda *a: None),
        "get": lambda: other.basic_get(q),
        "purge": lambda: other.queue_purge(q),
        "delete": lambda: other.queue_delete(q),
        "bind": lambda: other.queue_bind(q, "amq.fanout"),
    }
    code, text = closed_by_broker(ops[op])
    assert code == 405
    assert text == locked_text(q)
    # The owner is unaffected.
    owner.queue_declare(q, passive=True)


def test_exclusive_queue_accepts_publishes_from_other_connection(
        broker, open_connections):
    owner = open_connections().channel()
    q = owner.queue_declare("", exclusive=True).method.queue
    other = open_connections().channel()
    other.confirm_delivery()
    other.basic_publish("", q, b"hi", mandatory=True)
    method, _, body = get_one(owner, q, auto_ack=True)
    assert body == b"hi"


def test_exclusive_queue_deleted_when_owner_closes(broker, open_connections):
    owner_conn = open_connections()
    q = uniq("excl_gone")
    owner_conn.channel().queue_declare(q, exclusive=True)
    owner_conn.close()
    ch = open_connections().channel()
    code, text = closed_by_broker(lambda: ch.queue_declare(q, passive=True))
    assert code == 404
    assert text == "NOT_FOUND - no queue '%s' in vhost '/'" % q


def test_not_found_errors(broker, open_connections):
    q, ex = uniq("missing_q"), uniq("missing_ex")
    conn = open_connections()
    code, text = closed_by_broker(
        lambda: conn.channel().queue_declare(q, passive=True))
    assert (code, text) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)
    code, text = closed_by_broker(
        lambda: conn.channel().exchange_declare(ex, passive=True))
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % ex)

    ch = conn.channel()
    ch.basic_publish(ex, "k", b"x")  # async error: surfaces on the next sync call
    code, text = closed_by_broker(lambda: ch.queue_declare("", exclusive=True))
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % ex)

    code, text = closed_by_broker(
        lambda: conn.channel().queue_bind(q, "amq.direct", "k"))
    assert (code, text) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)
    assert conn.is_open


def test_unbind_of_what_does_not_exist_is_unbind_ok(broker, channel):
    """RabbitMQ answers unbind-ok for a missing queue, exchange or binding; asyncio
    clients' RPC helpers rely on it."""
    q, ex = uniq("missing_q"), uniq("missing_ex")
    channel.queue_unbind(q, "amq.direct", routing_key="k")
    channel.exchange_declare(ex, exchange_type="fanout")
    channel.exchange_unbind(ex, uniq("missing_source"), routing_key="k")
    channel.exchange_unbind(uniq("missing_destination"), ex, routing_key="k")
    own = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_unbind(own, ex, routing_key="never-bound")
    channel.queue_unbind(own, uniq("missing_ex"), routing_key="k")
    channel.exchange_delete(ex)
    assert channel.is_open


def test_reserved_amq_prefix_is_403(broker, connection):
    name = uniq("amq.reserved")
    code, text = closed_by_broker(lambda: connection.channel().queue_declare(name))
    assert (code, text) == (403, "ACCESS_REFUSED - queue name '%s' contains "
                                 "reserved prefix 'amq.*'" % name)
    code, text = closed_by_broker(
        lambda: connection.channel().exchange_declare(name, "direct"))
    assert (code, text) == (403, "ACCESS_REFUSED - exchange name '%s' contains "
                                 "reserved prefix 'amq.*'" % name)


def test_unknown_delivery_tag_ack_is_406(broker, connection):
    ch = connection.channel()
    ch.basic_ack(99)
    code, text = closed_by_broker(lambda: ch.queue_declare("", exclusive=True))
    assert (code, text) == (406, "PRECONDITION_FAILED - unknown delivery tag 99")


def test_wrong_password_is_refused(broker):
    params = pika.ConnectionParameters(
        host=broker.host, port=broker.port, virtual_host=broker.vhost,
        credentials=pika.PlainCredentials(broker.user, "definitely-wrong"),
        connection_attempts=1, socket_timeout=5, stack_timeout=10)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as ei:
        pika.BlockingConnection(params)
    assert "403" in str(ei.value) and "ACCESS_REFUSED" in str(ei.value)


def test_unknown_vhost_is_refused(broker):
    vhost = uniq("no-such-vhost")
    params = pika.ConnectionParameters(
        host=broker.host, port=broker.port, virtual_host=vhost,
        credentials=pika.PlainCredentials(broker.user, broker.password),
        connection_attempts=1, socket_timeout=5, stack_timeout=10)
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as ei:
        pika.BlockingConnection(params)
    assert "530" in str(ei.value)
    assert "NOT_ALLOWED - vhost %s not found" % vhost in str(ei.value)
