"""Arguments: every x- queue argument with every wrong type and edge value, redeclares with
other widths and values, consumer arguments (x-priority), generated as families."""

from decimal import Decimal

from wire import Typed
from conversations._helpers import declare, opened
from registry import add

QUEUE_ARGUMENTS = ["x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-overflow",
                   "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority", "x-queue-mode",
                   "x-queue-type", "x-single-active-consumer", "x-queue-master-locator", "x-queue-version",
                   "x-delivery-limit"]

# name -> value: every type a client can send, and the integer edges.
VALUES = {
    "longstr": Typed("S", b"abc"),
    "longstr-numeric": Typed("S", b"100"),
    "bool": Typed("t", True),
    "int32-0": Typed("I", 0),
    "int32-negative": Typed("I", -1),
    "int32-1000": Typed("I", 1000),
    "int64-1000": Typed("l", 1000),
    "int64-2e40": Typed("l", 1 << 40),
    "int16-5": Typed("s", 5),
    "uint8-5": Typed("B", 5),
    "double": Typed("d", 1.5),
    "decimal": Typed("D", Decimal("1.5")),
    "table": Typed("F", {}),
    "array": Typed("A", []),
    "void": Typed("V", None),
    "timestamp": Typed("T", 1000),
}

# Meaningful strings per argument, valid and not.
STRINGS = {
    "x-overflow": ["drop-head", "reject-publish", "reject-publish-dlx", "drop-tail"],
    "x-queue-mode": ["default", "lazy", "bogus"],
    "x-queue-type": ["classic", "quorum", "stream", "lazy", ""],
    "x-queue-master-locator": ["min-masters", "client-local", "random", "bogus"],
    "x-dead-letter-exchange": ["", "amq.direct", "no-such-exchange"],
}
INTEGERS = {
    "x-message-ttl": [4294967295, 4294967296, 315360000000, 315360000001],
    "x-expires": [1, 4294967296],
    "x-max-priority": [1, 255, 256],
    "x-queue-version": [1, 2, 3],
}


def _declare_with(name, value, extra=None, durable=False):
    def run(s):
        c = opened(s)
        arguments = {name: value}
        arguments.update(extra or {})
        declare(c, 1, s.q(), durable=durable, arguments=arguments)

    return run


def _key(name):
    return name[2:] if name.startswith("x-") else name


# x-queue-master-locator with a value it does not know makes RabbitMQ 3.10 crash the
# declare (541 INTERNAL_ERROR, or no answer at all for some types): only its valid values run.
WRONG_VALUES_SKIPPED = {"x-queue-master-locator": {"is-bogus"}}

for _argument in QUEUE_ARGUMENTS:
    for _value_name, _value in VALUES.items():
        if _argument in WRONG_VALUES_SKIPPED:
            continue
        # x-dead-letter-routing-key alone is refused whatever its type: give it an exchange.
        _extra = {"x-dead-letter-exchange": "amq.direct"} if _argument == "x-dead-letter-routing-key" else None
        add("args.queue.%s.%s" % (_key(_argument), _value_name), _declare_with(_argument, _value, _extra))
    for _text in STRINGS.get(_argument, []):
        if "is-" + _text in WRONG_VALUES_SKIPPED.get(_argument, ()):
            continue
        add("args.queue.%s.is-%s" % (_key(_argument), _text or "empty"),
            _declare_with(_argument, _text, durable=_text in ("quorum", "stream")))
    for _number in INTEGERS.get(_argument, []):
        add("args.queue.%s.is-%d" % (_key(_argument), _number), _declare_with(_argument, Typed("l", _number)))
add("args.queue.dead-letter-routing-key.without-exchange", _declare_with("x-dead-letter-routing-key", "k"))
add("args.queue.unknown-argument", _declare_with("x-no-such-argument", Typed("F", {})))
add("args.queue.unprefixed-argument", _declare_with("no-prefix", Typed("A", [1])))


def _redeclare(first, second, durable=False):
    def run(s):
        c = opened(s)
        declare(c, 1, s.q(), durable=durable, arguments=first)
        declare(c, 1, s.q(), durable=durable, arguments=second)

    return run


# Small values: a RabbitMQ priority queue builds one backing queue per priority, and a
# declare with x-max-priority 100 can take seconds on a loaded machine.
for _argument in ("x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-max-priority",
                  "x-delivery-limit"):
    _key_name = _key(_argument)
    add("args.redeclare.%s.int32-then-int64" % _key_name,
        _redeclare({_argument: Typed("I", 5)}, {_argument: Typed("l", 5)}))
    add("args.redeclare.%s.int64-then-int16" % _key_name,
        _redeclare({_argument: Typed("l", 5)}, {_argument: Typed("s", 5)}))
    add("args.redeclare.%s.other-value" % _key_name,
        _redeclare({_argument: Typed("I", 5)}, {_argument: Typed("I", 7)}))
    add("args.redeclare.%s.removed" % _key_name, _redeclare({_argument: Typed("I", 5)}, {}))
    add("args.redeclare.%s.added" % _key_name, _redeclare({}, {_argument: Typed("I", 5)}))
for _argument, (_first, _second) in {"x-overflow": ("drop-head", "reject-publish"),
                                     "x-dead-letter-exchange": ("a", "b"),
                                     "x-dead-letter-routing-key": ("a", "b"),
                                     "x-queue-mode": ("default", "lazy"),
                                     "x-queue-type": ("classic", "classic")}.items():
    _base = {"x-dead-letter-exchange": "a"} if _argument == "x-dead-letter-routing-key" else {}
    add("args.redeclare.%s.other-value" % _key(_argument),
        _redeclare(dict(_base, **{_argument: _first}), dict(_base, **{_argument: _second})))
add("args.redeclare.queue-type.classic-then-none", _redeclare({"x-queue-type": "classic"}, {}))
add("args.redeclare.queue-type.none-then-classic", _redeclare({}, {"x-queue-type": "classic"}))
add("args.redeclare.single-active-consumer.added", _redeclare({}, {"x-single-active-consumer": True}))
add("args.redeclare.single-active-consumer.other", _redeclare({"x-single-active-consumer": False},
                                                             {"x-single-active-consumer": True}))
add("args.redeclare.unknown-argument.added", _redeclare({}, {"x-whatever": 1}))
add("args.redeclare.message-ttl.invalid-on-existing", _redeclare({"x-message-ttl": 100}, {"x-message-ttl": "abc"}))
add("args.redeclare.with-bad-argument-on-existing", _redeclare({}, {"x-max-length": Typed("S", b"x")}))


def _consume_with(arguments):
    def run(s):
        c = opened(s)
        declare(c, 1, s.q(), exclusive=True)
        c.rpc(1, "basic.consume", queue=s.q(), consumer_tag="t", arguments=arguments)

    return run


for _value_name, _value in VALUES.items():
    add("args.consume.priority.%s" % _value_name, _consume_with({"x-priority": _value}))
add("args.consume.cancel-on-ha-failover.bool", _consume_with({"x-cancel-on-ha-failover": True}))
add("args.consume.cancel-on-ha-failover.longstr", _consume_with({"x-cancel-on-ha-failover": "yes"}))
add("args.consume.unknown-argument", _consume_with({"x-whatever": Typed("F", {})}))
