"""Basic class: qos, consume, cancel, publish (mandatory, immediate), get, ack, nack, reject,
recover, with the error paths (unknown tags, reused consumer tags, exclusive consumers)."""

from wire import Typed
from conversations._helpers import declare, fill, get, opened, publish_wait
from registry import add, conversation


def _queue_with(s, c, count, exclusive=True):
    declare(c, 1, s.q(), exclusive=exclusive)
    if count:
        fill(c, s.q(), count)


def _qos(**fields):
    def run(s):
        c = opened(s)
        c.rpc(1, "basic.qos", **fields)

    return run


add("basic.qos.prefetch-count", _qos(prefetch_count=10))
add("basic.qos.prefetch-count-global", _qos(prefetch_count=10, **{"global": True}))
add("basic.qos.prefetch-size", _qos(prefetch_size=1000))
add("basic.qos.prefetch-size-global", _qos(prefetch_size=1000, **{"global": True}))
add("basic.qos.zero", _qos())


@conversation("basic.qos.prefetch-limits-deliveries")
def qos_limits(s):
    c = opened(s)
    _queue_with(s, c, 3)
    c.rpc(1, "basic.qos", prefetch_count=2)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "basic.ack", delivery_tag=1)
    c.rpc(1, "basic.ack", delivery_tag=3, multiple=True)


@conversation("basic.qos.global-shared-by-consumers")
def qos_global(s):
    c = opened(s)
    _queue_with(s, c, 0)
    declare(c, 1, s.q("b"), exclusive=True)
    fill(c, s.q(), 2)
    fill(c, s.q("b"), 2)
    c.rpc(1, "basic.qos", prefetch_count=1, **{"global": True})
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="a")
    c.rpc(1, "basic.consume", queue=s.q("b"), consumer_tag="b")


@conversation("basic.qos.global-ack-makes-room")
def qos_global_ack(s):
    c = opened(s)
    _queue_with(s, c, 2)
    c.rpc(1, "basic.qos", prefetch_count=1, **{"global": True})
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="a")
    c.rpc(1, "basic.ack", delivery_tag=1)
    c.rpc(1, "basic.ack", delivery_tag=2)


@conversation("basic.qos.global-raised")
def qos_global_raised(s):
    c = opened(s)
    _queue_with(s, c, 4)
    c.rpc(1, "basic.qos", prefetch_count=1, **{"global": True})
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="a")
    c.rpc(1, "basic.qos", prefetch_count=3, **{"global": True})


@conversation("basic.qos.global-and-consumer-limits")
def qos_global_and_consumer(s):
    c = opened(s)
    _queue_with(s, c, 5)
    c.rpc(1, "basic.qos", prefetch_count=3, **{"global": True})
    c.rpc(1, "basic.qos", prefetch_count=2)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="a")
    c.rpc(1, "basic.ack", delivery_tag=2, multiple=True)


@conversation("basic.qos.global-ignores-get-and-no-ack")
def qos_global_get(s):
    c = opened(s)
    _queue_with(s, c, 2)
    declare(c, 1, s.q("b"), exclusive=True)
    fill(c, s.q("b"), 2)
    c.rpc(1, "basic.qos", prefetch_count=1, **{"global": True})
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.consume", queue=s.q("b"), consumer_tag="free", no_ack=True)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="a")


@conversation("basic.qos.global-cancel-returns-waiting")
def qos_global_cancel(s):
    c = opened(s)
    _queue_with(s, c, 1)
    declare(c, 1, s.q("b"), exclusive=True)
    fill(c, s.q("b"), 1)
    c.rpc(1, "basic.qos", prefetch_count=1, **{"global": True})
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="a")
    c.rpc(1, "basic.consume", queue=s.q("b"), consumer_tag="b")
    c.rpc(1, "basic.cancel", consumer_tag="b")
    get(c, 1, s.q("b"))


@conversation("basic.consume.server-tag-and-deliveries")
def consume_server_tag(s):
    c = opened(s)
    _queue_with(s, c, 2)
    c.rpc(1, "basic.consume", queue=s.q(), no_ack=True)


@conversation("basic.consume.missing-queue")
def consume_missing(s):
    c = opened(s)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")


@conversation("basic.consume.reused-tag")
def consume_reused(s):
    c = opened(s)
    _queue_with(s, c, 0)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")


@conversation("basic.consume.reused-tag-missing-queue")
def consume_reused_missing(s):
    c = opened(s)
    _queue_with(s, c, 0)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "basic.consume", queue=s.q("missing"), consumer_tag="t")


@conversation("basic.consume.exclusive-when-consumed")
def consume_exclusive_conflict(s):
    c = opened(s, channels=(1, 2))
    _queue_with(s, c, 0)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="a")
    c.rpc(2, "basic.consume", queue=s.q(), consumer_tag="b", exclusive=True)


@conversation("basic.consume.when-exclusively-consumed")
def consume_after_exclusive(s):
    c = opened(s, channels=(1, 2))
    _queue_with(s, c, 0)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="a", exclusive=True)
    c.rpc(2, "basic.consume", queue=s.q(), consumer_tag="b")


@conversation("basic.consume.nowait")
def consume_nowait(s):
    c = opened(s)
    _queue_with(s, c, 1)
    c.send(1, "basic.consume", queue=s.q(), consumer_tag="t", no_ack=True, nowait=True)
    c.read()


@conversation("basic.consume.no-local")
def consume_no_local(s):
    c = opened(s)
    _queue_with(s, c, 0)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t", no_local=True, no_ack=True)
    c.publish(1, "", s.q(), body="own")
    c.read()


@conversation("basic.consume.empty-queue-name-after-declare")
def consume_empty_name(s):
    c = opened(s)
    _queue_with(s, c, 1)
    c.rpc(1, "basic.consume", queue="", consumer_tag="t", no_ack=True)


@conversation("basic.consume.empty-queue-name-no-declare")
def consume_empty_name_no_declare(s):
    c = opened(s)
    c.rpc(1, "basic.consume", queue="", consumer_tag="t")


@conversation("basic.cancel.unknown-tag")
def cancel_unknown(s):
    c = opened(s)
    c.rpc(1, "basic.cancel", consumer_tag="nope")


@conversation("basic.cancel.requeues-nothing-unacked-stays")
def cancel_keeps_unacked(s):
    c = opened(s)
    _queue_with(s, c, 2)
    c.rpc(1, "basic.qos", prefetch_count=1)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "basic.cancel", consumer_tag="t")
    c.rpc(1, "basic.ack", delivery_tag=1)
    get(c, 1, s.q())


@conversation("basic.cancel.nowait")
def cancel_nowait(s):
    c = opened(s)
    _queue_with(s, c, 0)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.send(1, "basic.cancel", consumer_tag="t", nowait=True)
    c.rpc(1, "basic.qos", prefetch_count=0)


@conversation("basic.publish.mandatory-unroutable")
def mandatory_unroutable(s):
    c = opened(s)
    publish_wait(c, 1, "amq.direct", s.q(), body="x", mandatory=True)


@conversation("basic.publish.mandatory-default-exchange-missing-queue")
def mandatory_default(s):
    c = opened(s)
    publish_wait(c, 1, "", s.q(), body="x", mandatory=True, properties={"message_id": "m1"})


@conversation("basic.publish.immediate")
def immediate(s):
    c = opened(s)
    _queue_with(s, c, 0)
    publish_wait(c, 1, "", s.q(), body="x", immediate=True)


@conversation("basic.publish.unroutable-not-mandatory")
def not_mandatory(s):
    c = opened(s)
    publish_wait(c, 1, "amq.direct", s.q(), body="x")


@conversation("basic.publish.all-properties-round-trip")
def all_properties(s):
    c = opened(s)
    _queue_with(s, c, 0)
    properties = {"content_type": "text/plain", "content_encoding": "gzip",
                  "headers": {"s": "str", "i": Typed("I", -5), "l": Typed("l", 1 << 40), "b": Typed("b", -1),
                              "B": Typed("B", 200), "u": Typed("u", 60000), "short": Typed("s", -300),
                              "f": Typed("f", 1.5), "d": Typed("d", 2.25), "t": True, "T": Typed("T", 1700000000),
                              "F": {"nested": "yes"}, "A": [1, "two", False], "V": None, "x": Typed("x", b"\x00\x01")},
                  "delivery_mode": 2, "priority": 7, "correlation_id": "corr", "reply_to": "back",
                  "expiration": "60000", "message_id": "id1", "timestamp": 1700000000, "type": "kind",
                  "user_id": "guest", "app_id": "app", "cluster_id": "cluster"}
    publish_wait(c, 1, "", s.q(), body="all", properties=properties)
    get(c, 1, s.q())


@conversation("basic.publish.wrong-user-id")
def wrong_user_id(s):
    c = opened(s)
    _queue_with(s, c, 0)
    publish_wait(c, 1, "", s.q(), body="x", properties={"user_id": "someone-else"})


@conversation("basic.publish.empty-body")
def empty_body(s):
    c = opened(s)
    _queue_with(s, c, 0)
    publish_wait(c, 1, "", s.q(), body="")
    get(c, 1, s.q())


@conversation("basic.publish.multi-frame-body")
def multi_frame(s):
    c = opened(s)
    _queue_with(s, c, 0)
    publish_wait(c, 1, "", s.q(), body=bytes(range(256)) * 1200)
    get(c, 1, s.q())


@conversation("basic.get.empty")
def get_empty(s):
    c = opened(s)
    _queue_with(s, c, 0)
    get(c, 1, s.q())


@conversation("basic.get.missing")
def get_missing(s):
    c = opened(s)
    get(c, 1, s.q())


@conversation("basic.get.counts-and-redelivery")
def get_counts(s):
    c = opened(s)
    _queue_with(s, c, 3)
    get(c, 1, s.q(), no_ack=False)
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.reject", delivery_tag=1, requeue=True)
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.nack", delivery_tag=3, requeue=True)
    get(c, 1, s.q(), no_ack=True)
    get(c, 1, s.q(), no_ack=True)


def _settle(method, **fields):
    def run(s):
        c = opened(s)
        _queue_with(s, c, 2)
        get(c, 1, s.q(), no_ack=False)
        get(c, 1, s.q(), no_ack=False)
        c.rpc(1, method, **fields)
        c.rpc(1, "basic.recover", requeue=True)
        get(c, 1, s.q())

    return run


add("basic.ack.unknown-tag", _settle("basic.ack", delivery_tag=99))
add("basic.ack.tag-zero", _settle("basic.ack", delivery_tag=0))
add("basic.ack.tag-zero-multiple", _settle("basic.ack", delivery_tag=0, multiple=True))
add("basic.ack.multiple", _settle("basic.ack", delivery_tag=2, multiple=True))
add("basic.ack.multiple-unknown-tag", _settle("basic.ack", delivery_tag=5, multiple=True))
add("basic.nack.unknown-tag", _settle("basic.nack", delivery_tag=99))
add("basic.nack.multiple-requeue", _settle("basic.nack", delivery_tag=2, multiple=True, requeue=True))
add("basic.nack.multiple-drop", _settle("basic.nack", delivery_tag=2, multiple=True))
add("basic.nack.tag-zero-multiple-requeue", _settle("basic.nack", delivery_tag=0, multiple=True, requeue=True))
add("basic.reject.unknown-tag", _settle("basic.reject", delivery_tag=99))
add("basic.reject.drop", _settle("basic.reject", delivery_tag=1))
add("basic.reject.requeue", _settle("basic.reject", delivery_tag=2, requeue=True))


@conversation("basic.ack.twice")
def ack_twice(s):
    c = opened(s)
    _queue_with(s, c, 1)
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.ack", delivery_tag=1)
    c.rpc(1, "basic.ack", delivery_tag=1)


@conversation("basic.ack.on-no-ack-delivery")
def ack_no_ack(s):
    c = opened(s)
    _queue_with(s, c, 1)
    get(c, 1, s.q(), no_ack=True)
    c.rpc(1, "basic.ack", delivery_tag=1)


@conversation("basic.ack.on-other-channel")
def ack_other_channel(s):
    c = opened(s, channels=(1, 2))
    _queue_with(s, c, 1)
    get(c, 1, s.q(), no_ack=False)
    c.rpc(2, "basic.ack", delivery_tag=1)


@conversation("basic.recover.requeue")
def recover_requeue(s):
    c = opened(s)
    _queue_with(s, c, 2)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "basic.recover", requeue=True)


@conversation("basic.recover.no-requeue")
def recover_no_requeue(s):
    c = opened(s)
    _queue_with(s, c, 2)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "basic.recover", requeue=False)


@conversation("basic.recover-async")
def recover_async(s):
    c = opened(s)
    _queue_with(s, c, 1)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.send(1, "basic.recover-async", requeue=True)
    c.read()


@conversation("basic.requeue.visible-after-channel-close-ok")
def requeue_after_close(s):
    c = opened(s, channels=(1, 2))
    _queue_with(s, c, 2)
    get(c, 1, s.q(), no_ack=False)
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "channel.close", reply_code=200, reply_text="bye")
    get(c, 2, s.q())
    get(c, 2, s.q())


@conversation("basic.requeue.visible-after-consumer-channel-close-ok")
def requeue_consumer_after_close(s):
    c = opened(s, channels=(1, 2))
    _queue_with(s, c, 2)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "channel.close", reply_code=200, reply_text="bye")
    declare(c, 2, s.q(), passive=True)
    get(c, 2, s.q())


@conversation("basic.requeue.order-after-reject")
def requeue_order(s):
    c = opened(s)
    _queue_with(s, c, 3)
    for _ in range(3):
        get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.nack", delivery_tag=2, requeue=True)
    c.rpc(1, "basic.nack", delivery_tag=1, requeue=True)
    for _ in range(3):
        get(c, 1, s.q())


@conversation("basic.deliver-ok-from-client")
def deliver_from_client(s):
    c = opened(s)
    c.rpc(1, "basic.get-empty")


@conversation("basic.consume.cancel-notify-off")
def cancel_notify_off(s):
    c, consumer = opened(s), opened(s, capabilities={"basic.nack": True})
    _queue_with(s, c, 0, exclusive=False)
    consumer.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "queue.delete", queue=s.q())
    consumer.read_nothing()


@conversation("basic.consume.cancel-notify-on")
def cancel_notify_on(s):
    c, consumer = opened(s), opened(s)
    _queue_with(s, c, 0, exclusive=False)
    consumer.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "queue.delete", queue=s.q())
    consumer.read()
