"""Durability across a clean restart (SIGTERM, start again on the same data).

Needs to restart the broker, so it only runs against a broker this suite
starts itself; with SPATEMQ_TEST_URI it is skipped. The expectations are what
RabbitMQ does across a graceful restart.
"""

import os

import pika
import pika.exceptions
import pytest

from conftest import Broker, _broker_params, _start_spatemq, _stop_process
from helpers import get_one, persistent, uniq


PARAMS = [p for p in _broker_params() if p != "external"]


class OwnBroker:
    def __init__(self, shards, data_dir):
        self.shards = shards
        self.data_dir = data_dir
        self.proc = self.pump = self.broker = None

    def start(self):
        self.proc, self.pump, port = _start_spatemq(self.shards, self.data_dir)
        self.broker = Broker("127.0.0.1", port, shards=self.shards,
                             process=self.proc)
        return self.broker

    def stop(self):
        code, killed = _stop_process(self.proc)
        self.pump.join(2)
        assert not killed, "broker ignored SIGTERM; output:\n" + self.pump.text()
        assert code == 0, ("broker exited with %s after SIGTERM; output:\n%s"
                           % (code, self.pump.text()))


@pytest.fixture(params=PARAMS or [None],
                ids=lambda p: "shards%s" % p if p else "external")
def own_broker(request, tmp_path):
    if request.param is None or os.environ.get("SPATEMQ_TEST_URI"):
        pytest.skip("needs a broker the suite can restart (no SPATEMQ_TEST_URI)")
    ob = OwnBroker(request.param, tmp_path / "data")
    yield ob
    if ob.proc is not None and ob.proc.poll() is None:
        _stop_process(ob.proc)


def test_durable_state_survives_restart(own_broker):
    b = own_broker.start()
    qd, qt = uniq("durable_q"), uniq("transient_q")
    exd, ext = uniq("durable_ex"), uniq("transient_ex")

    conn = b.connect()
    ch = conn.channel()
    ch.queue_declare(qd, durable=True)
    ch.queue_declare(qt, durable=False)
    ch.exchange_declare(exd, "fanout", durable=True)
    ch.exchange_declare(ext, "fanout", durable=False)
    ch.queue_bind(qd, exd)
    ch.confirm_delivery()
    ch.basic_publish("", qd, b"acked", properties=persistent())
    m, _, body = get_one(ch, qd)
    assert body == b"acked"
    ch.basic_ack(m.delivery_tag)
    for body, mode in [(b"p1", 2), (b"t1", 1), (b"p2", 2)]:
        ch.basic_publish("", qd, body,
                         properties=pika.BasicProperties(delivery_mode=mode))
    ch.basic_publish(exd, "", b"p3", properties=persistent())
    ch.basic_publish("", qt, b"x", properties=persistent())
    m, _, body = get_one(ch, qd)  # delivered, still unacked at shutdown
    assert body == b"p1"

    own_broker.stop()
    b = own_broker.start()
    conn = b.connect()
    try:
        ch = conn.channel()
        # Persistent messages survive in order (the unacked one is back,
        # flagged redelivered); the transient and the acked ones are gone.
        assert ch.queue_declare(qd, passive=True).method.message_count == 3
        got = []
        for _ in range(3):
            m, props, body = get_one(ch, qd, auto_ack=True)
            got.append(body)
            assert props.delivery_mode == 2
            if body == b"p1":
                assert m.redelivered is True
        assert got == [b"p1", b"p2", b"p3"]
        assert ch.basic_get(qd) == (None, None, None)

        # Durable exchange and its binding survive; transient entities don't.
        ch.exchange_declare(exd, passive=True)
        ch.confirm_delivery()
        ch.basic_publish(exd, "", b"after", mandatory=True)
        assert get_one(ch, qd, auto_ack=True)[2] == b"after"
        for check in (lambda c: c.queue_declare(qt, passive=True),
                      lambda c: c.exchange_declare(ext, passive=True)):
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
                check(conn.channel())
            assert ei.value.reply_code == 404
    finally:
        if conn.is_open:
            conn.close()
    own_broker.stop()
