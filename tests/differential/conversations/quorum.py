"""Quorum queues (x-queue-type quorum) on one node: declare flags and arguments, the arguments
of other queue types refused, redeclares across types, consumers (global qos, arguments),
x-delivery-count on redeliveries, the delivery limit and dead-lettering."""

from wire import Typed
from conversations._helpers import declare, fill, get, opened
from registry import add, conversation

QUORUM = {"x-queue-type": "quorum"}


def _quorum(**extra):
    return dict(QUORUM, **extra)


def _declare(durable=True, exclusive=False, auto_delete=False, arguments=None, name=None):
    def run(s):
        c = opened(s)
        declare(c, 1, s.q() if name is None else name, durable=durable, exclusive=exclusive,
                auto_delete=auto_delete, arguments=_quorum(**(arguments or {})))

    return run


# Flags: RabbitMQ checks auto-delete, exclusive, then durable, after the arguments.
add("queue.quorum.declare.durable", _declare())
add("queue.quorum.declare.non-durable", _declare(durable=False))
add("queue.quorum.declare.exclusive", _declare(exclusive=True))
add("queue.quorum.declare.exclusive-non-durable", _declare(durable=False, exclusive=True))
add("queue.quorum.declare.auto-delete", _declare(auto_delete=True))
add("queue.quorum.declare.auto-delete-exclusive-non-durable",
    _declare(durable=False, exclusive=True, auto_delete=True))
add("queue.quorum.declare.server-named", _declare(name=""))
add("queue.quorum.declare.bad-argument-before-flags",
    _declare(durable=False, auto_delete=True, arguments={"x-max-length": -1}))
add("queue.quorum.declare.foreign-argument-before-flags",
    _declare(durable=False, arguments={"x-max-priority": 5}))


@conversation("queue.quorum.declare.again-and-passive")
def declare_again(s):
    c = opened(s)
    declare(c, 1, s.q(), durable=True, arguments=_quorum(**{"x-delivery-limit": 3}))
    declare(c, 1, s.q(), durable=True, arguments=_quorum(**{"x-delivery-limit": Typed("l", 3)}))
    declare(c, 1, s.q(), passive=True)
    c.rpc(1, "queue.delete", queue=s.q())


# Arguments a quorum queue takes, with good and bad values.
VALID = {
    "delivery-limit": {"x-delivery-limit": 5},
    "delivery-limit-zero": {"x-delivery-limit": 0},
    "delivery-limit-negative": {"x-delivery-limit": -1},
    "delivery-limit-string": {"x-delivery-limit": "abc"},
    "dead-letter-strategy-at-most-once": {"x-dead-letter-strategy": "at-most-once"},
    "dead-letter-strategy-at-least-once": {"x-dead-letter-strategy": "at-least-once",
                                           "x-overflow": "reject-publish",
                                           "x-dead-letter-exchange": "amq.fanout"},
    "dead-letter-strategy-at-least-once-drop-head": {"x-dead-letter-strategy": "at-least-once"},
    "initial-group-size": {"x-quorum-initial-group-size": 3},
    "max-in-memory-length": {"x-max-in-memory-length": 10},
    "max-in-memory-bytes": {"x-max-in-memory-bytes": 1000},
    "leader-locator": {"x-queue-leader-locator": "balanced"},
    "overflow-reject-publish": {"x-overflow": "reject-publish"},
    "overflow-reject-publish-dlx": {"x-overflow": "reject-publish-dlx"},
    "single-active-consumer": {"x-single-active-consumer": True},
    "message-ttl": {"x-message-ttl": 60000},
    "expires": {"x-expires": 60000},
    "max-length": {"x-max-length": 10, "x-max-length-bytes": 1000},
    "dead-letter-exchange": {"x-dead-letter-exchange": "amq.fanout", "x-dead-letter-routing-key": "k"},
    "consumer-less-argument": {"x-whatever": 1},
}
INVALID = {
    "dead-letter-strategy-bogus": {"x-dead-letter-strategy": "bogus"},
    "dead-letter-strategy-int": {"x-dead-letter-strategy": 1},
    "initial-group-size-zero": {"x-quorum-initial-group-size": 0},
    "initial-group-size-negative": {"x-quorum-initial-group-size": -1},
    "initial-group-size-string": {"x-quorum-initial-group-size": "3"},
    "max-in-memory-length-negative": {"x-max-in-memory-length": -1},
    "max-in-memory-bytes-string": {"x-max-in-memory-bytes": "x"},
    "leader-locator-bogus": {"x-queue-leader-locator": "bogus"},
    "leader-locator-int": {"x-queue-leader-locator": 1},
    "overflow-bogus": {"x-overflow": "drop-tail"},
    "message-ttl-negative": {"x-message-ttl": -1},
    "expires-zero": {"x-expires": 0},
    "single-active-consumer-string": {"x-single-active-consumer": "yes"},
    "dead-letter-routing-key-alone": {"x-dead-letter-routing-key": "k"},
}
# Arguments of the classic or stream type, which a quorum queue refuses whatever their value.
FOREIGN = {
    "max-priority": {"x-max-priority": 5},
    "queue-mode": {"x-queue-mode": "lazy"},
    "queue-version": {"x-queue-version": 2},
    "queue-master-locator": {"x-queue-master-locator": "min-masters"},
    "max-age": {"x-max-age": "1D"},
    "stream-max-segment-size-bytes": {"x-stream-max-segment-size-bytes": 1000},
    "initial-cluster-size": {"x-initial-cluster-size": 1},
}
for _name, _arguments in VALID.items():
    add("queue.quorum.args.%s" % _name, _declare(arguments=_arguments))
for _name, _arguments in INVALID.items():
    add("queue.quorum.args.%s" % _name, _declare(arguments=_arguments))
for _name, _arguments in FOREIGN.items():
    add("queue.quorum.refused.%s" % _name, _declare(arguments=_arguments))


# A classic queue refuses the quorum queue's own arguments the same way.
def _classic(arguments):
    def run(s):
        c = opened(s)
        declare(c, 1, s.q(), arguments=arguments)

    return run


for _name, _arguments in {"dead-letter-strategy": {"x-dead-letter-strategy": "at-most-once"},
                          "initial-group-size": {"x-quorum-initial-group-size": 3},
                          "max-in-memory-length": {"x-max-in-memory-length": 3},
                          "leader-locator": {"x-queue-leader-locator": "balanced"},
                          "max-age": {"x-max-age": "1D"}}.items():
    add("queue.quorum.classic-refuses.%s" % _name, _classic(_arguments))


def _redeclare(first, second, first_durable=True, second_durable=True):
    def run(s):
        c = opened(s)
        declare(c, 1, s.q(), durable=first_durable, arguments=first)
        declare(c, 1, s.q(), durable=second_durable, arguments=second)

    return run


add("queue.quorum.redeclare.classic-then-quorum", _redeclare({}, QUORUM))
add("queue.quorum.redeclare.explicit-classic-then-quorum", _redeclare({"x-queue-type": "classic"}, QUORUM))
add("queue.quorum.redeclare.quorum-then-classic", _redeclare(QUORUM, {"x-queue-type": "classic"}))
add("queue.quorum.redeclare.quorum-then-none", _redeclare(QUORUM, {}))
add("queue.quorum.redeclare.quorum-then-non-durable", _redeclare(QUORUM, QUORUM, second_durable=False))
add("queue.quorum.redeclare.quorum-then-stream", _redeclare(QUORUM, {"x-queue-type": "stream"}))
add("queue.quorum.redeclare.other-delivery-limit",
    _redeclare(_quorum(**{"x-delivery-limit": 1}), _quorum(**{"x-delivery-limit": 2})))
add("queue.quorum.redeclare.delivery-limit-added", _redeclare(QUORUM, _quorum(**{"x-delivery-limit": 2})))
add("queue.quorum.redeclare.dead-letter-strategy-other",
    _redeclare(_quorum(**{"x-dead-letter-strategy": "at-most-once"}),
               _quorum(**{"x-dead-letter-strategy": "at-least-once"})))
add("queue.quorum.redeclare.initial-group-size-other",
    _redeclare(_quorum(**{"x-quorum-initial-group-size": 1}), _quorum(**{"x-quorum-initial-group-size": 3})))
add("queue.quorum.redeclare.foreign-argument-added", _redeclare(QUORUM, _quorum(**{"x-max-priority": 3})))


def _quorum_queue(s, c, count=0, **arguments):
    declare(c, 1, s.q(), durable=True, arguments=_quorum(**arguments))
    if count:
        fill(c, s.q(), count)


def _consume_with(arguments=None, global_prefetch=None):
    def run(s):
        c = opened(s)
        _quorum_queue(s, c, 1)
        if global_prefetch is not None:
            c.rpc(1, "basic.qos", prefetch_count=global_prefetch, **{"global": True})
        c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t", arguments=arguments or {})
        c.read()

    return run


add("queue.quorum.consume.plain", _consume_with())
add("queue.quorum.consume.priority", _consume_with({"x-priority": 5}))
add("queue.quorum.consume.priority-string", _consume_with({"x-priority": "high"}))
add("queue.quorum.consume.cancel-on-ha-failover", _consume_with({"x-cancel-on-ha-failover": True}))
add("queue.quorum.consume.stream-offset", _consume_with({"x-stream-offset": "first"}))
add("queue.quorum.consume.global-qos", _consume_with(global_prefetch=10))
add("queue.quorum.consume.global-qos-zero", _consume_with(global_prefetch=0))


@conversation("queue.quorum.consume.classic-refuses-stream-offset")
def classic_stream_offset(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t", arguments={"x-stream-offset": "first"})


@conversation("queue.quorum.consume.global-qos-then-get")
def global_qos_get(s):
    c = opened(s)
    _quorum_queue(s, c, 1)
    c.rpc(1, "basic.qos", prefetch_count=10, **{"global": True})
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.ack", delivery_tag=1)


@conversation("queue.quorum.get.delivery-count")
def get_delivery_count(s):
    c = opened(s)
    _quorum_queue(s, c, 1)
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.nack", delivery_tag=1, requeue=True)
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.reject", delivery_tag=2, requeue=True)
    get(c, 1, s.q(), no_ack=True)
    get(c, 1, s.q(), no_ack=True)


@conversation("queue.quorum.consume.requeue-order")
def consume_requeue_order(s):
    c = opened(s)
    _quorum_queue(s, c, 3)
    c.rpc(1, "basic.qos", prefetch_count=1)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.read()
    c.send(1, "basic.reject", delivery_tag=1, requeue=True)
    c.read()
    c.send(1, "basic.ack", delivery_tag=2)
    c.read()
    c.send(1, "basic.ack", delivery_tag=3)
    c.read()


@conversation("queue.quorum.consume.redelivery-count")
def consume_redelivery(s):
    c = opened(s)
    _quorum_queue(s, c, 1)
    c.rpc(1, "basic.qos", prefetch_count=1)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.read()
    c.send(1, "basic.reject", delivery_tag=1, requeue=True)
    c.read()
    c.send(1, "basic.nack", delivery_tag=2, requeue=True)
    c.read()
    c.send(1, "basic.ack", delivery_tag=3)
    c.rpc(1, "queue.declare", queue=s.q(), passive=True)


@conversation("queue.quorum.delivery-limit.drop")
def delivery_limit_drop(s):
    c = opened(s)
    _quorum_queue(s, c, 1, **{"x-delivery-limit": 1})
    for tag in (1, 2):
        get(c, 1, s.q(), no_ack=False)
        c.rpc(1, "basic.nack", delivery_tag=tag, requeue=True)
    get(c, 1, s.q(), no_ack=False)


@conversation("queue.quorum.delivery-limit.dead-letter")
def delivery_limit_dead_letter(s):
    c = opened(s)
    dead = s.q("dead")
    declare(c, 1, dead, exclusive=True)
    _quorum_queue(s, c, 1, **{"x-delivery-limit": 0, "x-dead-letter-exchange": "",
                             "x-dead-letter-routing-key": dead})
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.nack", delivery_tag=1, requeue=True)
    c.rpc(1, "queue.declare", queue=s.q(), passive=True)
    get(c, 1, dead, no_ack=True)


@conversation("queue.quorum.delivery-limit.channel-close-counts")
def delivery_limit_channel_close(s):
    c = opened(s, channels=(1, 2))
    _quorum_queue(s, c, 1, **{"x-delivery-limit": 5})
    get(c, 2, s.q(), no_ack=False)
    c.rpc(2, "channel.close", reply_code=200, reply_text="bye", class_id=0, method_id=0)
    get(c, 1, s.q(), no_ack=True)


@conversation("queue.quorum.reject-drop-dead-letters")
def reject_dead_letters(s):
    c = opened(s)
    dead = s.q("dead")
    declare(c, 1, dead, exclusive=True)
    _quorum_queue(s, c, 1, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead,
                             "x-dead-letter-strategy": "at-most-once"})
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.reject", delivery_tag=1, requeue=False)
    get(c, 1, dead, no_ack=True)


@conversation("queue.quorum.purge-and-delete")
def purge_and_delete(s):
    c = opened(s)
    _quorum_queue(s, c, 3)
    c.rpc(1, "queue.purge", queue=s.q())
    fill(c, s.q(), 1)
    c.rpc(1, "queue.delete", queue=s.q(), if_empty=True)
    c2 = opened(s)
    c2.rpc(1, "queue.delete", queue=s.q())


@conversation("queue.quorum.transient-message")
def transient_message(s):
    c = opened(s)
    _quorum_queue(s, c, 0)
    fill(c, s.q(), 1, properties={"delivery_mode": 1})
    get(c, 1, s.q(), no_ack=True)


@conversation("queue.quorum.get.closed-channel-returns-in-front")
def closed_channel_returns(s):
    c = opened(s, channels=(1, 2))
    _quorum_queue(s, c, 3)
    get(c, 2, s.q(), no_ack=False)
    c.rpc(2, "channel.close", reply_code=200, reply_text="bye", class_id=0, method_id=0)
    c.read_nothing()
    get(c, 1, s.q(), no_ack=True)
    get(c, 1, s.q(), no_ack=True)


@conversation("queue.quorum.consume.recover-requeues-behind")
def recover_requeues(s):
    c = opened(s)
    _quorum_queue(s, c, 2)
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.recover", requeue=True)
    c.read_nothing()
    get(c, 1, s.q(), no_ack=True)
    get(c, 1, s.q(), no_ack=True)
