"""Streams (x-queue-type stream) on one node: declare flags and arguments, the arguments of
other queue types refused, redeclares across types, and what a consumer may do: prefetch and
manual acks required, basic.get, queue.purge and global qos refused, x-stream-offset values
refused. What consumers receive: stream_consume.py."""

from wire import Typed
from conversations._helpers import declare, fill, get, opened
from registry import add, conversation

STREAM = {"x-queue-type": "stream"}


def _stream(**extra):
    return dict(STREAM, **extra)


def _declare(durable=True, exclusive=False, auto_delete=False, arguments=None, name=None):
    def run(s):
        c = opened(s)
        declare(c, 1, s.q() if name is None else name, durable=durable, exclusive=exclusive,
                auto_delete=auto_delete, arguments=_stream(**(arguments or {})))

    return run


# Flags: RabbitMQ checks auto-delete, exclusive, then durable, after the arguments.
add("stream.declare.durable", _declare())
add("stream.declare.non-durable", _declare(durable=False))
add("stream.declare.exclusive", _declare(exclusive=True))
add("stream.declare.auto-delete", _declare(auto_delete=True))
add("stream.declare.auto-delete-exclusive-non-durable",
    _declare(durable=False, exclusive=True, auto_delete=True))
add("stream.declare.server-named", _declare(name=""))
add("stream.declare.bad-argument-before-flags",
    _declare(durable=False, arguments={"x-max-length-bytes": -1}))


@conversation("stream.declare.again-and-passive")
def declare_again(s):
    c = opened(s)
    declare(c, 1, s.q(), durable=True, arguments=_stream(**{"x-max-age": "7D"}))
    declare(c, 1, s.q(), durable=True, arguments=_stream(**{"x-max-age": "7D"}))
    declare(c, 1, s.q(), passive=True)
    c.rpc(1, "queue.delete", queue=s.q())


VALID = {
    "max-length-bytes": {"x-max-length-bytes": 1000000},
    "max-length-bytes-long": {"x-max-length-bytes": Typed("l", 20000000000)},
    "max-age-days": {"x-max-age": "7D"},
    "max-age-years": {"x-max-age": "1Y"},
    "max-age-months": {"x-max-age": "2M"},
    "max-age-hours": {"x-max-age": "12h"},
    "max-age-minutes": {"x-max-age": "30m"},
    "max-age-seconds": {"x-max-age": "10s"},
    "segment-size": {"x-stream-max-segment-size-bytes": 500000},
    "initial-cluster-size": {"x-initial-cluster-size": 1},
    "initial-cluster-size-three": {"x-initial-cluster-size": 3},
    "leader-locator": {"x-queue-leader-locator": "client-local"},
    "leader-locator-balanced": {"x-queue-leader-locator": "balanced"},
    "unknown-argument": {"x-whatever": 1},
}
INVALID = {
    "max-length-bytes-negative": {"x-max-length-bytes": -1},
    "max-length-bytes-string": {"x-max-length-bytes": "1000"},
    "max-age-bogus": {"x-max-age": "bogus"},
    "max-age-bad-unit": {"x-max-age": "7W"},
    "max-age-zero": {"x-max-age": "0D"},
    "max-age-number-only": {"x-max-age": "100"},
    "max-age-integer": {"x-max-age": 100},
    "max-age-short-string": {"x-max-age": Typed("s", 7)},
    "segment-size-negative": {"x-stream-max-segment-size-bytes": -1},
    "segment-size-string": {"x-stream-max-segment-size-bytes": "x"},
    "initial-cluster-size-zero": {"x-initial-cluster-size": 0},
    "initial-cluster-size-negative": {"x-initial-cluster-size": -1},
    "initial-cluster-size-string": {"x-initial-cluster-size": "1"},
    "leader-locator-bogus": {"x-queue-leader-locator": "bogus"},
    "leader-locator-int": {"x-queue-leader-locator": 1},
}
# Arguments of the classic or quorum type, which a stream refuses whatever their value.
FOREIGN = {
    "max-priority": {"x-max-priority": 5},
    "dead-letter-exchange": {"x-dead-letter-exchange": "amq.fanout"},
    "dead-letter-routing-key": {"x-dead-letter-routing-key": "k"},
    "message-ttl": {"x-message-ttl": 1000},
    "expires": {"x-expires": 1000},
    "max-length": {"x-max-length": 10},
    "overflow": {"x-overflow": "reject-publish"},
    "single-active-consumer": {"x-single-active-consumer": True},
    "delivery-limit": {"x-delivery-limit": 3},
    "queue-mode": {"x-queue-mode": "lazy"},
    "quorum-initial-group-size": {"x-quorum-initial-group-size": 3},
    "consumer-timeout": {"x-consumer-timeout": 1000},
}
for _name, _arguments in VALID.items():
    add("stream.args.%s" % _name, _declare(arguments=_arguments))
for _name, _arguments in INVALID.items():
    add("stream.args.%s" % _name, _declare(arguments=_arguments))
for _name, _arguments in FOREIGN.items():
    add("stream.refused.%s" % _name, _declare(arguments=_arguments))


def _classic(arguments):
    def run(s):
        c = opened(s)
        declare(c, 1, s.q(), arguments=arguments)

    return run


for _name, _arguments in {"max-age": {"x-max-age": "1D"},
                          "segment-size": {"x-stream-max-segment-size-bytes": 1000},
                          "initial-cluster-size": {"x-initial-cluster-size": 1}}.items():
    add("stream.classic-refuses.%s" % _name, _classic(_arguments))


def _redeclare(first, second, first_durable=True, second_durable=True):
    def run(s):
        c = opened(s)
        declare(c, 1, s.q(), durable=first_durable, arguments=first)
        declare(c, 1, s.q(), durable=second_durable, arguments=second)

    return run


add("stream.redeclare.classic-then-stream", _redeclare({}, STREAM))
add("stream.redeclare.stream-then-classic", _redeclare(STREAM, {"x-queue-type": "classic"}))
add("stream.redeclare.stream-then-none", _redeclare(STREAM, {}))
add("stream.redeclare.stream-then-quorum", _redeclare(STREAM, {"x-queue-type": "quorum"}))
add("stream.redeclare.stream-then-non-durable", _redeclare(STREAM, STREAM, second_durable=False))
add("stream.redeclare.other-max-age",
    _redeclare(_stream(**{"x-max-age": "1D"}), _stream(**{"x-max-age": "2D"})))
add("stream.redeclare.max-length-bytes-added",
    _redeclare(STREAM, _stream(**{"x-max-length-bytes": 1000})))


def _stream_queue(s, c, count=0):
    declare(c, 1, s.q(), durable=True, arguments=STREAM)
    if count:
        fill(c, s.q(), count)


def _consume_with(arguments=None, prefetch=10, global_prefetch=None, no_ack=False, count=0):
    def run(s):
        c = opened(s)
        _stream_queue(s, c, count)
        if prefetch is not None:
            c.rpc(1, "basic.qos", prefetch_count=prefetch)
        if global_prefetch is not None:
            c.rpc(1, "basic.qos", prefetch_count=global_prefetch, **{"global": True})
        c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t", no_ack=no_ack, arguments=arguments or {})
        c.read()

    return run


add("stream.consume.no-prefetch", _consume_with(prefetch=None))
add("stream.consume.no-ack", _consume_with(no_ack=True))
add("stream.consume.global-qos", _consume_with(prefetch=None, global_prefetch=10))
add("stream.consume.global-and-own-qos", _consume_with(global_prefetch=10))
add("stream.consume.plain-empty", _consume_with())
# Offsets RabbitMQ 3.10 answers with a crash (541); deliveries: stream_consume.py.
for _name, _offset in {"interval-bogus": "bogus", "bool": True, "float": 1.5}.items():
    add("stream.consume.offset.%s" % _name, _consume_with({"x-stream-offset": _offset}, count=3))
add("stream.consume.priority", _consume_with({"x-priority": 3}, count=1))
add("stream.consume.cancel-on-ha-failover", _consume_with({"x-cancel-on-ha-failover": True}))


@conversation("stream.get")
def stream_get(s):
    c = opened(s)
    _stream_queue(s, c, 1)
    get(c, 1, s.q(), no_ack=False)


@conversation("stream.purge")
def purge(s):
    c = opened(s)
    _stream_queue(s, c, 2)
    c.rpc(1, "queue.purge", queue=s.q())
