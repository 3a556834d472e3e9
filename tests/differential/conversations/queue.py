"""Queue class: declare (server-named, passive, exclusive, reserved names, redeclare
equivalence), bind/unbind, purge and delete with their counts and error paths."""

from conversations._helpers import declare, fill, get, opened, publish_wait
from registry import add, conversation


def _fill(c, channel, queue, count):
    fill(c, queue, count)
    c.rpc(channel, "queue.declare", queue=queue, passive=True)


@conversation("queue.declare.server-named")
def server_named(s):
    c = opened(s)
    declare(c, 1, "", exclusive=True)
    c.rpc(1, "queue.declare", queue="", passive=True)
    declare(c, 1, "")
    c.rpc(1, "queue.delete", queue="")


@conversation("queue.declare.counts")
def counts(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    _fill(c, 1, s.q(), 3)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t1")
    c.read()
    declare(c, 1, s.q(), exclusive=True)


@conversation("queue.declare.passive-missing")
def passive_missing(s):
    c = opened(s)
    declare(c, 1, s.q(), passive=True)


@conversation("queue.declare.passive-ignores-flags")
def passive_ignores_flags(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    declare(c, 1, s.q(), passive=True, durable=True, auto_delete=True, arguments={"x-max-length": 1})


@conversation("queue.declare.amq-prefix")
def amq_prefix(s):
    c = opened(s)
    declare(c, 1, "amq.mine")


@conversation("queue.declare.amq-prefix-passive")
def amq_prefix_passive(s):
    c = opened(s)
    declare(c, 1, "amq.mine", passive=True)


@conversation("queue.declare.amq-gen-redeclare")
def amq_gen_redeclare(s):
    c = opened(s)
    declare(c, 1, "", exclusive=True)
    c.rpc(1, "queue.declare", queue="", passive=True)
    # the name just generated, read back from the transcript
    name = next(entry["fields"]["queue"] for direction, _, entry in s.transcript
                if entry.get("method") == "queue.declare-ok")
    declare(c, 1, name, exclusive=True)


@conversation("queue.declare.nowait")
def declare_nowait(s):
    c = opened(s)
    c.send(1, "queue.declare", queue=s.q(), exclusive=True, nowait=True)
    declare(c, 1, s.q(), passive=True)


@conversation("queue.declare.name-too-long-for-nothing")
def name_255(s):
    c = opened(s)
    declare(c, 1, "q" * 255, exclusive=True)


@conversation("queue.declare.exclusive-other-connection")
def exclusive_other_connection(s):
    owner = opened(s)
    declare(owner, 1, s.q(), exclusive=True)
    other = opened(s)
    declare(other, 1, s.q())


@conversation("queue.declare.exclusive-other-connection-passive")
def exclusive_other_passive(s):
    owner = opened(s)
    declare(owner, 1, s.q(), exclusive=True)
    other = opened(s)
    declare(other, 1, s.q(), passive=True)


def _exclusive_other(method, **fields):
    def run(s):
        owner = opened(s)
        declare(owner, 1, s.q(), exclusive=True)
        other = opened(s)
        other.rpc(1, method, queue=s.q(), **fields)

    return run


add("queue.exclusive-other.bind", _exclusive_other("queue.bind", exchange="amq.direct", routing_key="k"))
add("queue.exclusive-other.unbind", _exclusive_other("queue.unbind", exchange="amq.direct", routing_key="k"))
add("queue.exclusive-other.purge", _exclusive_other("queue.purge"))
add("queue.exclusive-other.delete", _exclusive_other("queue.delete"))
add("queue.exclusive-other.consume", _exclusive_other("basic.consume"))
add("queue.exclusive-other.get", _exclusive_other("basic.get"))


@conversation("queue.exclusive-other.publish")
def exclusive_other_publish(s):
    owner = opened(s)
    declare(owner, 1, s.q(), exclusive=True)
    other = opened(s)
    publish_wait(other, 1, "", s.q(), body="x")
    get(owner, 1, s.q())


@conversation("queue.exclusive.deleted-with-connection")
def exclusive_deleted(s):
    owner = opened(s)
    declare(owner, 1, s.q(), exclusive=True)
    owner.close()
    other = opened(s)
    declare(other, 1, s.q(), passive=True)


def _redeclare(first, second):
    def run(s):
        c = opened(s)
        declare(c, 1, s.q(), **first)
        declare(c, 1, s.q(), **second)
        c.open_channel(2)
        c.rpc(2, "queue.delete", queue=s.q())

    return run


add("queue.redeclare.same", _redeclare({}, {}))
add("queue.redeclare.other-durable", _redeclare({}, {"durable": True}))
add("queue.redeclare.other-auto-delete", _redeclare({}, {"auto_delete": True}))
add("queue.redeclare.other-exclusive", _redeclare({}, {"exclusive": True}))
add("queue.redeclare.exclusive-then-not", _redeclare({"exclusive": True}, {}))
add("queue.redeclare.exclusive-durable", _redeclare({"exclusive": True, "durable": True}, {"exclusive": True}))
add("queue.redeclare.exclusive-other-durable", _redeclare({"exclusive": True}, {"exclusive": True, "durable": True}))
add("queue.redeclare.exclusive-and-durable-differ", _redeclare(
    {"durable": True}, {"exclusive": True}))


@conversation("queue.bind.ok-and-route")
def bind_ok(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    c.rpc(1, "queue.bind", queue=s.q(), exchange="amq.direct", routing_key=s.q("k"))
    c.rpc(1, "queue.bind", queue=s.q(), exchange="amq.direct", routing_key=s.q("k"))
    publish_wait(c, 1, "amq.direct", s.q("k"), body="routed")
    get(c, 1, s.q())
    c.rpc(1, "queue.unbind", queue=s.q(), exchange="amq.direct", routing_key=s.q("k"))
    publish_wait(c, 1, "amq.direct", s.q("k"), body="unbound", mandatory=True)


def _bind(method, queue, exchange, routing_key="k", declare_queue=True):
    def run(s):
        c = opened(s)
        if declare_queue:
            declare(c, 1, s.q(), exclusive=True)
        name = {"mine": s.q(), "missing": s.q("missing"), "": ""}[queue]
        target = {"missing": s.q("nox"), "": "", "amq.direct": "amq.direct", "amq.topic": "amq.topic"}[exchange]
        c.rpc(1, method, queue=name, exchange=target, routing_key=routing_key)

    return run


for _method in ("queue.bind", "queue.unbind"):
    _short = _method.split(".")[1]
    add("queue.%s.missing-queue" % _short, _bind(_method, "missing", "amq.direct"))
    add("queue.%s.missing-exchange" % _short, _bind(_method, "mine", "missing"))
    add("queue.%s.both-missing" % _short, _bind(_method, "missing", "missing"))
    add("queue.%s.default-exchange" % _short, _bind(_method, "mine", ""))
    add("queue.%s.default-exchange-missing-queue" % _short, _bind(_method, "missing", ""))
    add("queue.%s.empty-queue-name-after-declare" % _short, _bind(_method, "", "amq.topic", routing_key=""))
    add("queue.%s.empty-queue-name-no-declare" % _short, _bind(_method, "", "amq.direct", declare_queue=False))
add("queue.unbind.never-bound", _bind("queue.unbind", "mine", "amq.direct"))


@conversation("queue.bind.empty-name-and-key-routes-by-queue-name")
def bind_empty_name(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    c.rpc(1, "queue.bind", queue="", exchange="amq.direct", routing_key="")
    publish_wait(c, 1, "amq.direct", s.q(), body="by-name", mandatory=True)
    get(c, 1, s.q())


@conversation("queue.purge.counts")
def purge_counts(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    _fill(c, 1, s.q(), 4)
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "queue.purge", queue=s.q())
    c.rpc(1, "queue.purge", queue=s.q())
    c.rpc(1, "basic.recover", requeue=True)
    declare(c, 1, s.q(), passive=True)


@conversation("queue.purge.missing")
def purge_missing(s):
    c = opened(s)
    c.rpc(1, "queue.purge", queue=s.q())


@conversation("queue.purge.empty-name-no-declare")
def purge_empty_name(s):
    c = opened(s)
    c.rpc(1, "queue.purge", queue="")


@conversation("queue.purge.nowait")
def purge_nowait(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    _fill(c, 1, s.q(), 2)
    c.send(1, "queue.purge", queue=s.q(), nowait=True)
    declare(c, 1, s.q(), passive=True)


@conversation("queue.delete.counts")
def delete_counts(s):
    c = opened(s)
    declare(c, 1, s.q())
    _fill(c, 1, s.q(), 3)
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "queue.delete", queue=s.q())
    declare(c, 1, s.q(), passive=True)


@conversation("queue.delete.missing")
def delete_missing(s):
    c = opened(s)
    c.rpc(1, "queue.delete", queue=s.q())


@conversation("queue.delete.if-empty-not-empty")
def delete_if_empty(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    _fill(c, 1, s.q(), 1)
    c.rpc(1, "queue.delete", queue=s.q(), if_empty=True)


@conversation("queue.delete.if-unused-with-consumer")
def delete_if_unused(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "queue.delete", queue=s.q(), if_unused=True)


@conversation("queue.delete.if-unused-and-if-empty-both-fail")
def delete_both(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    _fill(c, 1, s.q(), 1)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.read()
    c.rpc(1, "queue.delete", queue=s.q(), if_unused=True, if_empty=True)


@conversation("queue.delete.with-consumer-on-deleting-channel")
def delete_own_consumer(s):
    c = opened(s)
    declare(c, 1, s.q())
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "queue.delete", queue=s.q())


# The consumer sits on a connection of its own: the order of frames on two channels of one
# connection depends on timing in RabbitMQ (one process per channel).
@conversation("queue.delete.with-consumer-on-other-connection")
def delete_other_consumer(s):
    c, consumer = opened(s), opened(s)
    declare(c, 1, s.q())
    consumer.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "queue.delete", queue=s.q())
    consumer.read()


@conversation("queue.delete.with-consumer-no-cancel-notify")
def delete_consumer_no_notify(s):
    c, consumer = opened(s), opened(s, capabilities={})
    declare(c, 1, s.q())
    consumer.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "queue.delete", queue=s.q())
    consumer.read_nothing()


@conversation("queue.delete.auto-delete-after-last-consumer")
def auto_delete(s):
    c = opened(s)
    declare(c, 1, s.q(), auto_delete=True)
    c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t")
    c.rpc(1, "basic.cancel", consumer_tag="t")
    declare(c, 1, s.q(), passive=True)


@conversation("queue.delete.auto-delete-never-consumed")
def auto_delete_never(s):
    c = opened(s)
    declare(c, 1, s.q(), auto_delete=True)
    c.rpc(1, "queue.delete", queue=s.q(), if_unused=True)


@conversation("queue.delete.empty-name-no-declare")
def delete_empty_name(s):
    c = opened(s)
    c.rpc(1, "queue.delete", queue="")


@conversation("queue.delete.nowait")
def delete_nowait(s):
    c = opened(s)
    declare(c, 1, s.q())
    c.send(1, "queue.delete", queue=s.q(), nowait=True)
    declare(c, 1, s.q(), passive=True)


@conversation("queue.method.declare-ok-from-client")
def declare_ok_from_client(s):
    c = opened(s)
    c.rpc(1, "queue.declare-ok", queue="x", message_count=0, consumer_count=0)


@conversation("exchange.method.declare-ok-from-client")
def exchange_declare_ok_from_client(s):
    c = opened(s)
    c.rpc(1, "exchange.declare-ok")
