"""The consistent-hash exchange (x-consistent-hash, RabbitMQ's rabbitmq_consistent_hash_exchange
plugin, enabled on the RabbitMQ side): declare arguments, binding keys as weights, and routing
that does not depend on the hash function (one queue bound, unbinding, a missing header).
Which of several queues a key lands on depends on the hash function and is not compared."""

from conversations._helpers import declare, get, opened, publish_wait
from registry import add, conversation

CHX = "x-consistent-hash"


def _declare(**arguments):
    def run(s):
        c = opened(s)
        c.rpc(1, "exchange.declare", exchange=s.q(), type=CHX, arguments=arguments)
        c.rpc(1, "exchange.declare", exchange=s.q(), type=CHX, arguments=arguments)

    return run


add("exchange.chash.declare.plain", _declare())
add("exchange.chash.declare.hash-header", _declare(**{"hash-header": "user"}))
add("exchange.chash.declare.hash-property-message-id", _declare(**{"hash-property": "message_id"}))
add("exchange.chash.declare.hash-property-correlation-id", _declare(**{"hash-property": "correlation_id"}))
add("exchange.chash.declare.hash-property-timestamp", _declare(**{"hash-property": "timestamp"}))
add("exchange.chash.declare.hash-property-unknown", _declare(**{"hash-property": "app_id"}))
add("exchange.chash.declare.hash-header-and-property",
    _declare(**{"hash-header": "user", "hash-property": "message_id"}))


@conversation("exchange.chash.declare.other-type-redeclare")
def other_type(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q(), type=CHX)
    c.rpc(1, "exchange.declare", exchange=s.q(), type="direct")


def _bind(routing_key):
    def run(s):
        c = opened(s)
        c.rpc(1, "exchange.declare", exchange=s.q(), type=CHX)
        declare(c, 1, s.q("q"), exclusive=True)
        c.rpc(1, "queue.bind", queue=s.q("q"), exchange=s.q(), routing_key=routing_key)

    return run


for _name, _key in (("weight-1", "1"), ("weight-20", "20"), ("weight-plus", "+3"), ("zero", "0"),
                    ("negative", "-2"), ("word", "abc"), ("empty", ""), ("decimal", "1.5"),
                    ("space", " 2")):
    add("exchange.chash.bind.%s" % _name, _bind(_key))


@conversation("exchange.chash.bind.exchange-to-exchange")
def bind_exchange(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q(), type=CHX)
    c.rpc(1, "exchange.declare", exchange=s.q("to"), type="fanout")
    c.rpc(1, "exchange.bind", destination=s.q("to"), source=s.q(), routing_key="x")


@conversation("exchange.chash.route.one-queue-takes-every-key")
def one_queue(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q(), type=CHX)
    declare(c, 1, s.q("q"), exclusive=True)
    c.rpc(1, "queue.bind", queue=s.q("q"), exchange=s.q(), routing_key="10")
    for key in ("a", "b", "order-17", ""):
        publish_wait(c, 1, s.q(), key, mandatory=True)
    c.rpc(1, "queue.declare", queue=s.q("q"), passive=True)


@conversation("exchange.chash.route.unbound-is-unroutable")
def unbound(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q(), type=CHX)
    publish_wait(c, 1, s.q(), "k", mandatory=True)
    declare(c, 1, s.q("q"), exclusive=True)
    c.rpc(1, "queue.bind", queue=s.q("q"), exchange=s.q(), routing_key="1")
    c.rpc(1, "queue.unbind", queue=s.q("q"), exchange=s.q(), routing_key="1")
    publish_wait(c, 1, s.q(), "k", mandatory=True)


@conversation("exchange.chash.route.missing-header")
def missing_header(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q(), type=CHX, arguments={"hash-header": "user"})
    declare(c, 1, s.q("q"), exclusive=True)
    c.rpc(1, "queue.bind", queue=s.q("q"), exchange=s.q(), routing_key="3")
    publish_wait(c, 1, s.q(), "k", mandatory=True)
    publish_wait(c, 1, s.q(), "k", mandatory=True, properties={"headers": {"user": "alice"}})
    publish_wait(c, 1, s.q(), "k", mandatory=True, properties={"message_id": "m-1"})
    get(c, 1, s.q("q"))
    get(c, 1, s.q("q"))
    get(c, 1, s.q("q"))
