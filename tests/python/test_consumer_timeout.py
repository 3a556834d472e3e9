"""The consumer (delivery acknowledgement) timeout seen from pika.

Starts its own broker with --consumer-timeout (RabbitMQ's consumer_timeout), so
it is skipped with SPATEMQ_TEST_URI. The expectations are RabbitMQ's: a worker
that holds a delivery unacked past the timeout has its channel closed with 406
PRECONDITION_FAILED, and the task goes to another worker, marked redelivered.
"""

import os
import time

import pika.exceptions
import pytest

from conftest import Broker, _broker_params, _start_spatemq, _stop_process
from helpers import get_one, uniq

PARAMS = [p for p in _broker_params() if p != "external"]
TIMEOUT_MS = 500


@pytest.fixture(params=PARAMS or [None],
                ids=lambda p: "shards%s" % p if p else "external")
def timeout_broker(request, tmp_path):
    if request.param is None or os.environ.get("SPATEMQ_TEST_URI"):
        pytest.skip("needs a broker started with --consumer-timeout (no SPATEMQ_TEST_URI)")
    proc, pump, port = _start_spatemq(request.param, tmp_path / "data",
                                      ["--consumer-timeout", str(TIMEOUT_MS)])
    yield Broker("127.0.0.1", port, shards=request.param, process=proc)
    code, killed = _stop_process(proc)
    pump.join(2)
    assert not killed and code == 0, "broker did not stop cleanly:\n" + pump.text()


def test_stuck_worker_channel_is_closed_and_task_redelivered(timeout_broker):
    conn = timeout_broker.connect()
    stuck = conn.channel()
    q = uniq("task_timeout")
    stuck.queue_declare(q)
    stuck.basic_qos(prefetch_count=1)
    stuck.basic_publish("", q, b"long task")
    received = []
    stuck.basic_consume(q, lambda ch, method, props, body: received.append(time.monotonic()))
    # A worker that never acks: the broker must end start_consuming by closing the channel.
    conn.call_later(5, stuck.stop_consuming)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        stuck.start_consuming()
    assert received, "the task was never delivered"
    waited = time.monotonic() - received[0]
    assert 0.4 <= waited <= 2.5, "closed %.2f s after the delivery" % waited
    assert closed.value.reply_code == 406
    assert closed.value.reply_text == (
        "PRECONDITION_FAILED - delivery acknowledgement on channel %d timed out. "
        "Timeout value used: %d ms. This timeout value can be configured, see "
        "consumers doc guide to learn more" % (stuck.channel_number, TIMEOUT_MS))

    other = conn.channel()
    method, _, body = get_one(other, q)
    assert body == b"long task"
    assert method.redelivered
    other.basic_ack(method.delivery_tag)
    other.queue_delete(q)
    conn.close()
