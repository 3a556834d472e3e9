"""RabbitMQ's direct reply-to with pika: the RPC tutorial whose client takes its replies
from the pseudo-queue amq.rabbitmq.reply-to instead of declaring a reply queue."""

import pika
import pika.exceptions
import pytest

from helpers import uniq, wait_until

REPLY_QUEUE = "amq.rabbitmq.reply-to"


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def closed_by_broker(fn):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        fn()
    return ei.value.reply_code, ei.value.reply_text


def test_rpc_tutorial_with_direct_reply_to(broker, open_connections):
    """RabbitMQ's tutorial 6 with direct reply-to: the client consumes
    amq.rabbitmq.reply-to with auto_ack and publishes requests with that
    reply_to; the server sees a rewritten reply_to and answers it on the
    default exchange; every answer comes back with its correlation id."""
    rpc_queue = uniq("rpc_queue")
    server_conn = open_connections()
    sch = server_conn.channel()
    sch.queue_declare(rpc_queue)
    sch.basic_qos(prefetch_count=1)
    seen_reply_to = []

    def on_request(ch, method, props, body):
        seen_reply_to.append(props.reply_to)
        ch.basic_publish(exchange="", routing_key=props.reply_to,
                         properties=pika.BasicProperties(
                             correlation_id=props.correlation_id),
                         body=str(fib(int(body))).encode())
        ch.basic_ack(method.delivery_tag)

    sch.basic_consume(rpc_queue, on_request)

    client_conn = open_connections()
    cch = client_conn.channel()
    replies = {}

    def on_response(ch, method, props, body):
        replies[props.correlation_id] = (method, body)

    cch.basic_consume(queue=REPLY_QUEUE, on_message_callback=on_response,
                      auto_ack=True)
    requests = {}
    for n in (10, 1, 0, 20, 30, 7):
        corr = uniq("corr")
        requests[corr] = n
        cch.basic_publish("", rpc_queue, str(n).encode(),
                          properties=pika.BasicProperties(
                              reply_to=REPLY_QUEUE, correlation_id=corr))

    wait_until(lambda: len(replies) == len(requests),
               [server_conn, client_conn],
               what="all direct replies (got %r)" % replies)
    for corr, n in requests.items():
        method, body = replies[corr]
        assert int(body) == fib(n)
        assert method.exchange == ""
        assert method.routing_key == seen_reply_to[0]
    assert seen_reply_to[0].startswith(REPLY_QUEUE + ".")
    assert set(seen_reply_to) == {seen_reply_to[0]}, "one name per reply consumer"
    sch.queue_delete(rpc_queue)


def test_server_announces_direct_reply_to(broker, connection):
    """RabbitMQ lists direct_reply_to among its server capabilities; some
    clients look for it before using the pseudo-queue."""
    capabilities = connection._impl.server_properties["capabilities"]
    assert capabilities.get("direct_reply_to") is True


def test_reply_consumer_that_acknowledges_is_406(broker, connection):
    """RabbitMQ refuses a reply consumer in manual-ack mode."""
    ch = connection.channel()
    code, text = closed_by_broker(lambda: ch.basic_consume(
        queue=REPLY_QUEUE, on_message_callback=lambda *args: None,
        auto_ack=False))
    assert (code, text) == (
        406, "PRECONDITION_FAILED - reply consumer cannot acknowledge")
    assert connection.is_open


def test_request_without_reply_consumer_is_406(broker, connection):
    """RabbitMQ closes the channel that publishes with reply_to
    amq.rabbitmq.reply-to without consuming from it."""
    ch = connection.channel()
    ch.basic_publish("", uniq("nowhere"), b"request",
                     properties=pika.BasicProperties(reply_to=REPLY_QUEUE))
    code, text = closed_by_broker(lambda: ch.queue_declare("", exclusive=True))
    assert (code, text) == (
        406, "PRECONDITION_FAILED - fast reply consumer does not exist")
    assert connection.is_open
