"""kombu (py-amqp transport) against the broker."""

import kombu
import pytest

from helpers import uniq


@pytest.fixture
def kconn(broker):
    conn = kombu.Connection(hostname=broker.host, port=broker.port,
                            userid=broker.user, password=broker.password,
                            virtual_host=broker.vhost, transport="pyamqp",
                            connect_timeout=5)
    conn.ensure_connection(max_retries=3, timeout=10)
    yield conn
    conn.release()


def test_kombu_simple_queue(kconn):
    name = uniq("kombu_simple")
    sq = kconn.SimpleQueue(name)
    try:
        sq.put({"hello": "world", "n": 1})
        sq.put("second")
        msg = sq.get(block=True, timeout=5)
        assert msg.payload == {"hello": "world", "n": 1}
        msg.ack()
        msg = sq.get(block=True, timeout=5)
        assert msg.payload == "second"
        msg.ack()
        with pytest.raises(sq.Empty):
            sq.get(block=True, timeout=0.5)
        assert sq.qsize() == 0
    finally:
        sq.close()  # cancels the consumer first
        with kconn.channel() as ch:
            kombu.Queue(name, channel=ch).delete()


def test_kombu_producer_consumer(kconn):
    exchange = kombu.Exchange(uniq("kombu_ex"), type="direct", durable=False,
                              auto_delete=True)
    queue = kombu.Queue(uniq("kombu_q"), exchange=exchange, routing_key="tasks",
                        auto_delete=True)
    received = []

    def on_message(body, message):
        received.append((body, message.properties.get("correlation_id")))
        message.ack()

    with kconn.Consumer(queue, callbacks=[on_message]):
        producer = kconn.Producer(serializer="json")
        for i in range(5):
            producer.publish({"task": i}, exchange=exchange, routing_key="tasks",
                             correlation_id="c%d" % i, declare=[queue])
        for _ in range(50):
            if len(received) == 5:
                break
            try:
                kconn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
    assert received == [({"task": i}, "c%d" % i) for i in range(5)]


def test_pyamqp_deletes_a_queue_its_own_channel_consumes(broker):
    """RabbitMQ answers queue.delete-ok before it cancels the deleting channel's own
    consumer; py-amqp raises from queue_delete when the basic.cancel comes first."""
    import amqp

    conn = amqp.Connection(host="%s:%d" % (broker.host, broker.port),
                           userid=broker.user, password=broker.password,
                           virtual_host=broker.vhost, connect_timeout=5)
    conn.connect()
    try:
        ch = conn.channel()
        name = uniq("pyamqp_delete")
        ch.queue_declare(name)
        tag = ch.basic_consume(name, callback=lambda message: None)
        assert ch.queue_delete(name) == 0
        with pytest.raises(amqp.exceptions.ConsumerCancelled) as cancelled:
            conn.drain_events(timeout=5)
        assert cancelled.value.reply_text == tag
    finally:
        conn.collect()
