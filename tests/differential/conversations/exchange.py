"""Exchange class: declare (types, passive, redeclare equivalence, reserved names, arguments),
delete (if-unused), exchange-to-exchange bind/unbind and their error paths."""

from wire import Typed
from conversations._helpers import opened, publish_wait, declare, get
from registry import add, conversation


def _declare(name_suffix, **fields):
    def run(s):
        c = opened(s)
        step = dict(fields)  # the same function runs once per broker: leave `fields` as it is
        name = step.pop("exchange", None)
        c.rpc(1, "exchange.declare", exchange=s.q(name_suffix) if name is None else name, **step)

    return run


for _type in ("direct", "fanout", "topic", "headers"):
    add("exchange.declare.type-" + _type, _declare(_type, type=_type))
add("exchange.declare.type-unknown", _declare("x", type="x-no-such-type"))
add("exchange.declare.type-empty", _declare("x", type=""))
add("exchange.declare.durable", _declare("x", type="direct", durable=True))
add("exchange.declare.auto-delete", _declare("x", type="fanout", auto_delete=True))
add("exchange.declare.internal", _declare("x", type="topic", internal=True))
add("exchange.declare.nowait", _declare("x", type="direct", nowait=True))
add("exchange.declare.passive-missing", _declare("x", type="direct", passive=True))
add("exchange.declare.passive-missing-no-type", _declare("x", type="", passive=True))
add("exchange.declare.amq-prefix", _declare("", exchange="amq.mine", type="direct"))
add("exchange.declare.amq-direct-redeclare", _declare("", exchange="amq.direct", type="direct"))
add("exchange.declare.amq-direct-passive", _declare("", exchange="amq.direct", type="direct", passive=True))
add("exchange.declare.amq-direct-other-type", _declare("", exchange="amq.direct", type="fanout"))
add("exchange.declare.amq-topic-durable", _declare("", exchange="amq.topic", type="topic", durable=True))
add("exchange.declare.default", _declare("", exchange="", type="direct"))
add("exchange.declare.default-passive", _declare("", exchange="", type="direct", passive=True))
add("exchange.declare.default-unknown-type", _declare("", exchange="", type="x-unknown"))
add("exchange.declare.amq-unknown-type", _declare("", exchange="amq.new", type="x-unknown"))
add("exchange.declare.ae-longstr", _declare("x", type="direct", arguments={"alternate-exchange": "ae"}))
for _tag, _value in (("l", 5), ("t", True), ("F", {}), ("A", []), ("V", None), ("x", b"ae")):
    add("exchange.declare.ae-type-" + _tag,
        _declare("x", type="direct", arguments={"alternate-exchange": Typed(_tag, _value)}))
add("exchange.declare.unknown-argument", _declare("x", type="direct", arguments={"x-whatever": 1}))


def _redeclare(first, second):
    def run(s):
        c = opened(s)
        c.rpc(1, "exchange.declare", exchange=s.q(), **first)
        c.rpc(1, "exchange.declare", exchange=s.q(), **second)

    return run


_BASE = {"type": "direct"}
add("exchange.redeclare.same", _redeclare(_BASE, _BASE))
add("exchange.redeclare.other-type", _redeclare(_BASE, {"type": "fanout"}))
add("exchange.redeclare.other-durable", _redeclare(_BASE, {"type": "direct", "durable": True}))
add("exchange.redeclare.other-auto-delete", _redeclare(_BASE, {"type": "direct", "auto_delete": True}))
add("exchange.redeclare.other-internal", _redeclare(_BASE, {"type": "direct", "internal": True}))
add("exchange.redeclare.other-arguments", _redeclare(
    _BASE, {"type": "direct", "arguments": {"x-whatever": 1}}))
add("exchange.redeclare.other-alternate-exchange", _redeclare(
    {"type": "direct", "arguments": {"alternate-exchange": "a"}},
    {"type": "direct", "arguments": {"alternate-exchange": "b"}}))
add("exchange.redeclare.passive-other-type", _redeclare(_BASE, {"type": "fanout", "passive": True}))


@conversation("exchange.delete.existing")
def delete_existing(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q(), type="direct")
    c.rpc(1, "exchange.delete", exchange=s.q())
    c.rpc(1, "exchange.declare", exchange=s.q(), type="direct", passive=True)


@conversation("exchange.delete.missing")
def delete_missing(s):
    c = opened(s)
    c.rpc(1, "exchange.delete", exchange=s.q())


@conversation("exchange.delete.if-unused-with-binding")
def delete_if_unused(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q(), type="direct")
    c.rpc(1, "queue.declare", queue=s.q("q"), exclusive=True)
    c.rpc(1, "queue.bind", queue=s.q("q"), exchange=s.q(), routing_key="k")
    c.rpc(1, "exchange.delete", exchange=s.q(), if_unused=True)


@conversation("exchange.delete.if-unused-as-destination")
def delete_if_unused_destination(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q("dst"), type="direct")
    c.rpc(1, "exchange.bind", destination=s.q("dst"), source="amq.direct", routing_key=s.q())
    c.rpc(1, "exchange.delete", exchange=s.q("dst"), if_unused=True)
    c.rpc(1, "exchange.unbind", destination=s.q("dst"), source="amq.direct", routing_key=s.q())


@conversation("exchange.delete.if-unused-unused")
def delete_if_unused_unused(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q(), type="direct")
    c.rpc(1, "exchange.delete", exchange=s.q(), if_unused=True)


for _name in ("amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match", "amq.rabbitmq.trace", ""):
    add("exchange.delete.reserved-" + (_name or "default"),
        (lambda name: lambda s: opened(s).rpc(1, "exchange.delete", exchange=name))(_name))


@conversation("exchange.delete.nowait")
def delete_nowait(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q(), type="direct")
    c.send(1, "exchange.delete", exchange=s.q(), nowait=True)
    c.rpc(1, "exchange.declare", exchange=s.q(), type="direct", passive=True)


@conversation("exchange.delete.auto-delete-source-after-unbind")
def auto_delete_after_unbind(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q("src"), type="direct", auto_delete=True)
    c.rpc(1, "exchange.bind", destination="amq.direct", source=s.q("src"), routing_key="k")
    c.rpc(1, "exchange.unbind", destination="amq.direct", source=s.q("src"), routing_key="k")
    c.rpc(1, "exchange.declare", exchange=s.q("src"), type="direct", passive=True)


def _e2e(**bind):
    def run(s):
        c = opened(s)
        c.rpc(1, "exchange.declare", exchange=s.q("src"), type="direct")
        c.rpc(1, "exchange.declare", exchange=s.q("dst"), type="fanout")
        fields = {"destination": s.q("dst"), "source": s.q("src"), "routing_key": "k"}
        for key, value in bind.items():
            fields[key] = value(s) if callable(value) else value
        method = fields.pop("method", "exchange.bind")
        c.rpc(1, method, **fields)

    return run


add("exchange.bind.ok", _e2e())
add("exchange.bind.missing-source", _e2e(source=lambda s: s.q("nosrc")))
add("exchange.bind.missing-destination", _e2e(destination=lambda s: s.q("nodst")))
add("exchange.bind.both-missing", _e2e(source=lambda s: s.q("nosrc"), destination=lambda s: s.q("nodst")))
add("exchange.bind.default-source", _e2e(source=""))
add("exchange.bind.default-destination", _e2e(destination=""))
add("exchange.bind.default-source-missing-destination", _e2e(source="", destination=lambda s: s.q("nodst")))
add("exchange.bind.amq-destination", _e2e(destination="amq.fanout"))
add("exchange.bind.nowait", _e2e(nowait=True))
add("exchange.unbind.missing-binding", _e2e(method="exchange.unbind"))
add("exchange.unbind.missing-source", _e2e(method="exchange.unbind", source=lambda s: s.q("nosrc")))
add("exchange.unbind.missing-destination", _e2e(method="exchange.unbind", destination=lambda s: s.q("nodst")))
add("exchange.unbind.default-source", _e2e(method="exchange.unbind", source=""))


@conversation("exchange.bind.routes-through")
def e2e_routes(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q("src"), type="topic")
    c.rpc(1, "exchange.declare", exchange=s.q("dst"), type="fanout")
    c.rpc(1, "exchange.bind", destination=s.q("dst"), source=s.q("src"), routing_key="a.*")
    declare(c, 1, s.q("q"), exclusive=True)
    c.rpc(1, "queue.bind", queue=s.q("q"), exchange=s.q("dst"))
    publish_wait(c, 1, s.q("src"), "a.b", body="routed")
    publish_wait(c, 1, s.q("src"), "b.c", body="dropped", mandatory=True)
    get(c, 1, s.q("q"))
    get(c, 1, s.q("q"))
    c.rpc(1, "exchange.unbind", destination=s.q("dst"), source=s.q("src"), routing_key="a.*")
    publish_wait(c, 1, s.q("src"), "a.b", body="unbound", mandatory=True)


@conversation("exchange.bind.cycle")
def e2e_cycle(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q("a"), type="fanout")
    c.rpc(1, "exchange.declare", exchange=s.q("b"), type="fanout")
    c.rpc(1, "exchange.bind", destination=s.q("b"), source=s.q("a"))
    c.rpc(1, "exchange.bind", destination=s.q("a"), source=s.q("b"))
    declare(c, 1, s.q("q"), exclusive=True)
    c.rpc(1, "queue.bind", queue=s.q("q"), exchange=s.q("b"))
    publish_wait(c, 1, s.q("a"), "", body="once")
    get(c, 1, s.q("q"))
    get(c, 1, s.q("q"))


@conversation("exchange.publish.internal")
def publish_internal(s):
    c = opened(s)
    c.rpc(1, "exchange.declare", exchange=s.q(), type="fanout", internal=True)
    publish_wait(c, 1, s.q(), "", body="x")


@conversation("exchange.publish.missing")
def publish_missing(s):
    c = opened(s)
    publish_wait(c, 1, s.q(), "", body="x")


@conversation("exchange.publish.amq-rabbitmq-trace")
def publish_trace(s):
    c = opened(s)
    publish_wait(c, 1, "amq.rabbitmq.trace", "", body="x")


def _routing(exchange_type, bind_key, publish_key, bind_args=None, headers=None):
    def run(s):
        c = opened(s)
        c.rpc(1, "exchange.declare", exchange=s.q(), type=exchange_type)
        declare(c, 1, s.q("q"), exclusive=True)
        c.rpc(1, "queue.bind", queue=s.q("q"), exchange=s.q(), routing_key=bind_key, arguments=bind_args or {})
        publish_wait(c, 1, s.q(), publish_key, body="m", properties={"headers": headers} if headers else None,
                     mandatory=True)
        get(c, 1, s.q("q"))

    return run


for _index, (_bind, _key) in enumerate([("a.b", "a.b"), ("a.*", "a.b"), ("a.*", "a.b.c"), ("a.#", "a"),
                                        ("#", ""), ("*", ""), ("a.#.c", "a.c"), ("a.#.c", "a.b.b.c"),
                                        ("#.#", "x.y"), ("a.*.#", "a"), ("", ""), ("*.*", "a..")]):
    add("exchange.route.topic-%02d" % _index, _routing("topic", _bind, _key))
for _index, (_args, _headers) in enumerate([
        ({"x-match": "all", "a": 1}, {"a": 1}),
        ({"x-match": "all", "a": 1, "b": 2}, {"a": 1}),
        ({"x-match": "any", "a": 1, "b": 2}, {"a": 1}),
        ({"a": "1"}, {"a": "1", "b": 2}),
        ({"x-match": "all", "a": 1}, {"a": Typed("l", 1)}),
        ({"x-match": "any", "a": Typed("V", None)}, {"a": Typed("V", None)}),
        ({"x-match": "all-with-x", "x-a": 1}, {"x-a": 1}),
        ({"x-match": "all", "x-a": 1}, {"x-a": 1}),
        ({"x-match": "any-with-x", "x-a": 1}, {"x-a": 1}),
        ({}, {"a": 1}),
        ({"x-match": "some"}, {"a": 1}),
        ({"x-match": Typed("l", 1)}, {"a": 1})]):
    add("exchange.route.headers-%02d" % _index, _routing("headers", "", "", _args, _headers))
add("exchange.route.direct-other-key", _routing("direct", "a", "b"))
add("exchange.route.fanout-any-key", _routing("fanout", "a", "b"))
