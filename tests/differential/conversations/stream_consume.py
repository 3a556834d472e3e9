"""Streams (x-queue-type stream): what consumers receive. Deliveries from each
x-stream-offset, with the x-stream-offset header; acks give credit and never remove a message;
basic.nack and basic.reject refused; two consumers at their own offsets; new messages reaching
a consumer at the tail."""

from wire import Typed
from conversations._helpers import fill, opened
from conversations.stream import _consume_with, _stream_queue
from registry import add, conversation

add("stream.consume.default-offset-skips-old", _consume_with(count=2))

OFFSETS = {
    "first": "first",
    "next": "next",
    "zero": 0,
    "one": 1,
    "long": Typed("l", 1),
    "short": Typed("s", 1),
    "negative": -1,
    "beyond-end": 100,
    "timestamp-zero": Typed("T", 0),
    "timestamp-future": Typed("T", 4102444800),
    "interval-hour": "1h",
    "unsigned-byte": Typed("B", 1),
}
for _name, _offset in OFFSETS.items():
    add("stream.consume.offset.%s" % _name, _consume_with({"x-stream-offset": _offset}, count=3))


@conversation("stream.consume.ack-gives-credit")
def ack_credit(s):
    """One confirmed fill per message, so that each is a chunk of its own: RabbitMQ grants
    credit per chunk and would hand a consumer a whole chunk beyond its prefetch."""
    c = opened(s)
    _stream_queue(s, c, 1)
    fill(c, s.q(), 1)
    fill(c, s.q(), 1)
    c.rpc(1, "basic.qos", prefetch_count=1)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t", arguments={"x-stream-offset": "first"})
    c.read()
    c.send(1, "basic.ack", delivery_tag=1)
    c.read()
    c.send(1, "basic.ack", delivery_tag=2, multiple=True)
    c.read()


def _settle(method, requeue):
    def run(s):
        c = opened(s)
        _stream_queue(s, c, 2)
        c.rpc(1, "basic.qos", prefetch_count=10)
        c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t", arguments={"x-stream-offset": "first"})
        c.read()
        c.send(1, method, delivery_tag=1, requeue=requeue)
        c.read()

    return run


add("stream.consume.nack-requeue", _settle("basic.nack", True))
add("stream.consume.nack-drop", _settle("basic.nack", False))
add("stream.consume.reject-requeue", _settle("basic.reject", True))
add("stream.consume.reject-drop", _settle("basic.reject", False))


@conversation("stream.consume.two-offsets")
def two_offsets(s):
    c = opened(s, channels=(1, 2))
    _stream_queue(s, c, 3)
    for channel, offset in ((1, 0), (2, 2)):
        c.rpc(channel, "basic.qos", prefetch_count=10)
        c.rpc(channel, "basic.consume", queue=s.q(), consumer_tag="t%d" % channel,
              arguments={"x-stream-offset": offset})
        c.read()


@conversation("stream.consume.new-messages-reach-consumer")
def new_messages(s):
    c = opened(s)
    _stream_queue(s, c, 1)
    c.rpc(1, "basic.qos", prefetch_count=10)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t", arguments={"x-stream-offset": "next"})
    c.read()
    fill(c, s.q(), 2)
    c.read()


@conversation("stream.delete")
def delete(s):
    c = opened(s)
    _stream_queue(s, c, 2)
    c.rpc(1, "queue.delete", queue=s.q())


@conversation("stream.transient-message-kept")
def transient(s):
    c = opened(s)
    _stream_queue(s, c, 0)
    fill(c, s.q(), 1, properties={"delivery_mode": 1})
    c.rpc(1, "basic.qos", prefetch_count=10)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t", arguments={"x-stream-offset": "first"})
    c.read()


@conversation("stream.consume.offset.last")
def offset_last(s):
    """Two confirmed fills of one message are two chunks: "last" starts at the second."""
    c = opened(s)
    _stream_queue(s, c, 1)
    fill(c, s.q(), 1)
    c.rpc(1, "basic.qos", prefetch_count=10)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t", arguments={"x-stream-offset": "last"})
    c.read()
