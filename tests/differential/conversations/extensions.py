"""RabbitMQ's extensions: dead-lettering (x-death, x-first-death-*), TTLs (queue and
message, 0 included), max-length with each overflow mode, priorities, single active consumer,
consumer priorities, direct reply-to and alternate exchanges."""

from wire import Typed
from conversations._helpers import declare, fill, get, opened, publish_wait
from registry import add, conversation


def _dlx_pair(s, c, arguments, dead_letter_routing_key=None):
    """A source queue dead-lettering into amq.fanout-bound... no: into its own fanout exchange,
    and the queue that collects what it dead-letters."""
    c.rpc(1, "exchange.declare", exchange=s.q("dlx"), type="fanout")
    declare(c, 1, s.q("dead"), exclusive=True)
    c.rpc(1, "queue.bind", queue=s.q("dead"), exchange=s.q("dlx"))
    arguments = dict(arguments, **{"x-dead-letter-exchange": s.q("dlx")})
    if dead_letter_routing_key:
        arguments["x-dead-letter-routing-key"] = dead_letter_routing_key
    declare(c, 1, s.q("src"), exclusive=True, arguments=arguments)


@conversation("dlx.reject")
def dlx_reject(s):
    c = opened(s)
    _dlx_pair(s, c, {})
    fill(c, s.q("src"), 1, properties={"headers": {"own": "h"}, "message_id": "m"})
    get(c, 1, s.q("src"), no_ack=False)
    c.rpc(1, "basic.reject", delivery_tag=1, requeue=False)
    get(c, 1, s.q("dead"))


@conversation("dlx.nack-twice-counts")
def dlx_twice(s):
    """Dead-lettered, moved back, dead-lettered again: x-death's count goes to 2."""
    c = opened(s)
    _dlx_pair(s, c, {})
    c.rpc(1, "queue.bind", queue=s.q("src"), exchange="amq.direct", routing_key=s.q("src"))
    fill(c, s.q("src"), 1)
    get(c, 1, s.q("src"), no_ack=False)
    c.rpc(1, "basic.nack", delivery_tag=1, requeue=False)
    get(c, 1, s.q("dead"), no_ack=False)
    c.rpc(1, "basic.qos")
    # publish the dead-lettered message (with its x-death) back to the source queue
    last = [entry for _, _, entry in s.transcript if entry.get("kind") == "header"][-1]
    c.fill("", s.q("src"), [b"m0"], properties=last["properties"])
    get(c, 1, s.q("src"), no_ack=False)
    c.rpc(1, "basic.nack", delivery_tag=3, requeue=False)
    get(c, 1, s.q("dead"))


@conversation("dlx.routing-key")
def dlx_routing_key(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q("dlx"), type="direct")
    declare(c, 1, s.q("dead"), exclusive=True)
    c.rpc(1, "queue.bind", queue=s.q("dead"), exchange=s.q("dlx"), routing_key="dead-key")
    declare(c, 1, s.q("src"), exclusive=True, arguments={"x-dead-letter-exchange": s.q("dlx"),
                                                         "x-dead-letter-routing-key": "dead-key"})
    fill(c, s.q("src"), 1)
    get(c, 1, s.q("src"), no_ack=False)
    c.rpc(1, "basic.reject", delivery_tag=1)
    get(c, 1, s.q("dead"))


@conversation("dlx.missing-exchange-drops")
def dlx_missing(s):
    c = opened(s)
    declare(c, 1, s.q("src"), exclusive=True, arguments={"x-dead-letter-exchange": s.q("nowhere")})
    fill(c, s.q("src"), 1)
    get(c, 1, s.q("src"), no_ack=False)
    c.rpc(1, "basic.reject", delivery_tag=1)
    get(c, 1, s.q("src"))


@conversation("dlx.default-exchange")
def dlx_default(s):
    c = opened(s)
    declare(c, 1, s.q("dead"), exclusive=True)
    declare(c, 1, s.q("src"), exclusive=True, arguments={"x-dead-letter-exchange": "",
                                                         "x-dead-letter-routing-key": s.q("dead")})
    fill(c, s.q("src"), 1)
    get(c, 1, s.q("src"), no_ack=False)
    c.rpc(1, "basic.reject", delivery_tag=1)
    get(c, 1, s.q("dead"))


@conversation("dlx.maxlen-drop-head")
def dlx_maxlen(s):
    c = opened(s)
    _dlx_pair(s, c, {"x-max-length": 1})
    fill(c, s.q("src"), 2)
    get(c, 1, s.q("dead"))
    get(c, 1, s.q("src"))


@conversation("dlx.maxlen-reject-publish-dlx")
def dlx_reject_publish_dlx(s):
    c = opened(s)
    _dlx_pair(s, c, {"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    fill(c, s.q("src"), 2)
    get(c, 1, s.q("dead"))
    get(c, 1, s.q("src"))


def _publish_then_get(c, queue, properties=None, times=3):
    """A publish and a basic.get in one write, `times` times: a message with TTL 0 is gone
    before any basic.get can see it (RabbitMQ drops it on arrival unless a consumer takes it at
    once), however quickly the get follows."""
    for index in range(times):
        c.publish(1, "", queue, body="t%d" % index, properties=properties)
        c.send(1, "basic.get", queue=queue, no_ack=True)
        c.read()


@conversation("dlx.expired-per-queue-ttl-0")
def dlx_expired(s):
    c = opened(s)
    _dlx_pair(s, c, {"x-message-ttl": 0})
    _publish_then_get(c, s.q("src"), times=1)
    get(c, 1, s.q("dead"))


@conversation("dlx.expired-per-message-expiration-0")
def dlx_expired_message(s):
    c = opened(s)
    _dlx_pair(s, c, {})
    _publish_then_get(c, s.q("src"), properties={"expiration": "0"}, times=1)
    get(c, 1, s.q("dead"))


@conversation("dlx.cycle-is-dropped")
def dlx_cycle(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True, arguments={"x-dead-letter-exchange": "", "x-message-ttl": 0})
    _publish_then_get(c, s.q())


@conversation("ttl.queue-0-get")
def ttl_queue_zero(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True, arguments={"x-message-ttl": 0})
    _publish_then_get(c, s.q())
    declare(c, 1, s.q(), passive=True)


@conversation("ttl.queue-0-consumer-waiting")
def ttl_queue_zero_consumer(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True, arguments={"x-message-ttl": 0})
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t", no_ack=True)
    fill(c, s.q(), 1)
    c.read()


@conversation("ttl.expiration-0-get")
def ttl_expiration_zero(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    _publish_then_get(c, s.q(), properties={"expiration": "0"})


@conversation("ttl.expiration-long-get")
def ttl_expiration_long(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    fill(c, s.q(), 1, properties={"expiration": "600000"})
    get(c, 1, s.q())


@conversation("ttl.queue-ttl-and-longer-expiration")
def ttl_min(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True, arguments={"x-message-ttl": 0})
    _publish_then_get(c, s.q(), properties={"expiration": "600000"})


def _expiration(value):
    def run(s):
        c = opened(s)
        declare(c, 1, s.q(), exclusive=True)
        publish_wait(c, 1, "", s.q(), body="x", properties={"expiration": value})
        get(c, 1, s.q())

    return run


for _name, _value in {"negative": "-1", "text": "soon", "trailing": "100ms", "empty": "",
                      "ten-years-plus": "315360000001", "leading-space": " 100", "plus-sign": "+100",
                      "huge": "99999999999999999999"}.items():
    add("ttl.expiration-" + _name, _expiration(_value))


def _maxlen(arguments, count=3, confirm=False):
    def run(s):
        c = opened(s)
        declare(c, 1, s.q(), exclusive=True, arguments=arguments)
        fill(c, s.q(), count)
        declare(c, 1, s.q(), passive=True)
        get(c, 1, s.q())

    return run


add("maxlen.drop-head", _maxlen({"x-max-length": 2}))
add("maxlen.zero", _maxlen({"x-max-length": 0}))
add("maxlen.reject-publish", _maxlen({"x-max-length": 2, "x-overflow": "reject-publish"}))
add("maxlen.reject-publish-zero", _maxlen({"x-max-length": 0, "x-overflow": "reject-publish"}))
add("maxlen.bytes-drop-head", _maxlen({"x-max-length-bytes": 4}))
add("maxlen.bytes-reject-publish", _maxlen({"x-max-length-bytes": 4, "x-overflow": "reject-publish"}))
add("maxlen.bytes-and-length", _maxlen({"x-max-length-bytes": 100, "x-max-length": 1}))


@conversation("maxlen.reject-publish-unconfirmed-publisher")
def maxlen_plain_publisher(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    publish_wait(c, 1, "", s.q(), body="a")
    publish_wait(c, 1, "", s.q(), body="b", mandatory=True)
    get(c, 1, s.q())
    get(c, 1, s.q())


@conversation("maxlen.unacked-not-counted")
def maxlen_unacked(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True, arguments={"x-max-length": 1})
    fill(c, s.q(), 1)
    get(c, 1, s.q(), no_ack=False)
    fill(c, s.q(), 1)
    c.rpc(1, "basic.reject", delivery_tag=1, requeue=True)
    get(c, 1, s.q())
    get(c, 1, s.q())


@conversation("priority.ordering")
def priority_ordering(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True, arguments={"x-max-priority": 5})
    for priority in (1, 9, None, 3, 5):
        c.fill("", s.q(), [b"p%s" % str(priority).encode()], properties={"priority": priority})
    for _ in range(5):
        get(c, 1, s.q())


@conversation("priority.no-max-priority-is-fifo")
def priority_plain(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    for priority in (1, 9):
        c.fill("", s.q(), [b"p%d" % priority], properties={"priority": priority})
    get(c, 1, s.q())
    get(c, 1, s.q())


@conversation("priority.requeue-keeps-priority-order")
def priority_requeue(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True, arguments={"x-max-priority": 10})
    c.fill("", s.q(), [b"low"], properties={"priority": 1})
    c.fill("", s.q(), [b"high"], properties={"priority": 8})
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.nack", delivery_tag=1, requeue=True)
    get(c, 1, s.q())
    get(c, 1, s.q())


# Consumers whose deliveries are compared sit on connections of their own: the order of
# frames on two channels of one connection depends on timing in RabbitMQ (one process per
# channel), while each connection is read in the conversation's own order.

@conversation("sac.second-consumer-waits")
def sac(s):
    c, first, second = opened(s), opened(s), opened(s)
    declare(c, 1, s.q(), arguments={"x-single-active-consumer": True})
    fill(c, s.q(), 2)
    first.rpc(1, "basic.consume", queue=s.q(), consumer_tag="first")
    second.rpc(1, "basic.consume", queue=s.q(), consumer_tag="second")
    declare(c, 1, s.q(), passive=True)
    first.rpc(1, "basic.cancel", consumer_tag="first")
    second.read()


@conversation("sac.exclusive-consume")
def sac_exclusive(s):
    c = opened(s)
    declare(c, 1, s.q(), arguments={"x-single-active-consumer": True})
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t", exclusive=True)


@conversation("sac.active-consumer-channel-closes")
def sac_close(s):
    c, first, second = opened(s), opened(s), opened(s)
    declare(c, 1, s.q(), arguments={"x-single-active-consumer": True})
    fill(c, s.q(), 1)
    first.rpc(1, "basic.consume", queue=s.q(), consumer_tag="first")
    second.rpc(1, "basic.consume", queue=s.q(), consumer_tag="second")
    first.rpc(1, "channel.close", reply_code=200, reply_text="bye")
    second.read()


@conversation("consumer-priority.higher-first")
def consumer_priority(s):
    c, low, high = opened(s), opened(s), opened(s)
    declare(c, 1, s.q())
    low.rpc(1, "basic.consume", queue=s.q(), consumer_tag="low", arguments={"x-priority": 1})
    high.rpc(1, "basic.consume", queue=s.q(), consumer_tag="high", arguments={"x-priority": 10})
    fill(c, s.q(), 2)
    high.read()
    low.read_nothing()


@conversation("consumer-priority.blocked-high-lets-low")
def consumer_priority_blocked(s):
    c, low, high = opened(s), opened(s), opened(s)
    declare(c, 1, s.q())
    high.rpc(1, "basic.qos", prefetch_count=1)
    low.rpc(1, "basic.consume", queue=s.q(), consumer_tag="low", arguments={"x-priority": Typed("s", -1)})
    high.rpc(1, "basic.consume", queue=s.q(), consumer_tag="high", arguments={"x-priority": Typed("l", 5)})
    fill(c, s.q(), 2)
    high.read()
    low.read()


@conversation("reply-to.round-trip")
def reply_to(s):
    c = opened(s, channels=(1, 2))
    declare(c, 2, s.q("server"), exclusive=True)
    c.rpc(1, "basic.consume", queue="amq.rabbitmq.reply-to", consumer_tag="replies", no_ack=True)
    publish_wait(c, 1, "", s.q("server"), body="request", properties={"reply_to": "amq.rabbitmq.reply-to"})
    get(c, 2, s.q("server"))
    reply_address = [entry for _, _, entry in s.transcript if entry.get("kind") == "header"][-1]["properties"]
    address = reply_address.get("reply_to", "")
    c.publish(2, "", address, body="reply")
    c.read()
    c.publish(2, "", address + "garbage", body="reply", mandatory=True)
    c.read()


@conversation("reply-to.consume-with-ack")
def reply_to_ack(s):
    c = opened(s)
    c.rpc(1, "basic.consume", queue="amq.rabbitmq.reply-to", consumer_tag="r")


@conversation("reply-to.publish-without-consumer")
def reply_to_no_consumer(s):
    c = opened(s)
    publish_wait(c, 1, "", "amq.queue", body="request", properties={"reply_to": "amq.rabbitmq.reply-to"})


@conversation("reply-to.declare-passive")
def reply_to_declare(s):
    c = opened(s)
    declare(c, 1, "amq.rabbitmq.reply-to", passive=True)


@conversation("reply-to.consume-twice")
def reply_to_twice(s):
    c = opened(s)
    c.rpc(1, "basic.consume", queue="amq.rabbitmq.reply-to", consumer_tag="a", no_ack=True)
    c.rpc(1, "basic.consume", queue="amq.rabbitmq.reply-to", consumer_tag="b", no_ack=True)


@conversation("reply-to.cancel-then-publish")
def reply_to_cancel(s):
    c = opened(s)
    c.rpc(1, "basic.consume", queue="amq.rabbitmq.reply-to", consumer_tag="a", no_ack=True)
    c.rpc(1, "basic.cancel", consumer_tag="a")
    publish_wait(c, 1, "", "amq.queue", body="request", properties={"reply_to": "amq.rabbitmq.reply-to"})


@conversation("reply-to.unknown-address")
def reply_to_unknown(s):
    c = opened(s)
    publish_wait(c, 1, "", "amq.rabbitmq.reply-to.g2dkAAAAAA", body="x", mandatory=True)


@conversation("ae.unroutable-goes-to-alternate")
def ae(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q("ae"), type="fanout")
    declare(c, 1, s.q("caught"), exclusive=True)
    c.rpc(1, "queue.bind", queue=s.q("caught"), exchange=s.q("ae"))
    c.rpc(1, "exchange.declare", exchange=s.q(), type="direct", arguments={"alternate-exchange": s.q("ae")})
    publish_wait(c, 1, s.q(), "nowhere", body="x", mandatory=True)
    get(c, 1, s.q("caught"))


@conversation("ae.missing-alternate")
def ae_missing(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q(), type="direct", arguments={"alternate-exchange": s.q("nope")})
    publish_wait(c, 1, s.q(), "nowhere", body="x", mandatory=True)


@conversation("ae.alternate-also-unroutable")
def ae_unroutable(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q("ae"), type="direct")
    c.rpc(1, "exchange.declare", exchange=s.q(), type="direct", arguments={"alternate-exchange": s.q("ae")})
    publish_wait(c, 1, s.q(), "nowhere", body="x", mandatory=True)


@conversation("ae.confirmed")
def ae_confirm(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q("ae"), type="fanout")
    declare(c, 1, s.q("caught"), exclusive=True)
    c.rpc(1, "queue.bind", queue=s.q("caught"), exchange=s.q("ae"))
    c.rpc(1, "exchange.declare", exchange=s.q(), type="direct", arguments={"alternate-exchange": s.q("ae")})
    c.rpc(1, "confirm.select")
    c.publish(1, s.q(), "nowhere", body="x", mandatory=True)
    c.read()


@conversation("expires.queue-gone")
def queue_expires(s):
    c = opened(s)
    declare(c, 1, s.q(), arguments={"x-expires": 1})
    c.read_nothing()
    c.read_nothing()
    declare(c, 1, s.q(), passive=True)
