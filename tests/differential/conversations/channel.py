"""Channel class: open, close, flow, and what a channel in the wrong state does with a method,
including a channel that the broker is closing (waiting for the client's close-ok)."""

import wire
from conversations._helpers import opened
from registry import add, conversation


@conversation("channel.open-and-close")
def open_and_close(s):
    c = opened(s)
    c.rpc(1, "channel.close", reply_code=200, reply_text="ok")
    c.open_channel(1)


@conversation("channel.open-twice")
def open_twice(s):
    c = opened(s)
    c.open_channel(1)


@conversation("channel.open-with-out-of-band")
def open_out_of_band(s):
    c = s.connect()
    c.rpc(1, "channel.open", out_of_band="x")


@conversation("channel.method-before-open")
def method_before_open(s):
    c = s.connect()
    c.rpc(1, "queue.declare", queue=s.q())


@conversation("channel.close-before-open")
def close_before_open(s):
    c = s.connect()
    c.rpc(1, "channel.close", reply_code=200, reply_text="ok")


@conversation("channel.close-ok-unsolicited")
def close_ok_unsolicited(s):
    c = opened(s)
    c.rpc(1, "channel.close-ok")


@conversation("channel.close-ok-before-open")
def close_ok_before_open(s):
    c = s.connect()
    c.rpc(1, "channel.close-ok")


@conversation("channel.flow.active-true")
def flow_true(s):
    c = opened(s)
    c.rpc(1, "channel.flow", active=True)


@conversation("channel.flow.active-false")
def flow_false(s):
    c = opened(s)
    c.rpc(1, "channel.flow", active=False)
    c.rpc(1, "basic.qos", prefetch_count=1)


@conversation("channel.flow-ok-from-client")
def flow_ok_from_client(s):
    c = opened(s)
    c.rpc(1, "channel.flow-ok", active=True)


@conversation("channel.open-ok-from-client")
def open_ok_from_client(s):
    c = opened(s)
    c.rpc(1, "channel.open-ok")


@conversation("channel.access-request")
def access_request(s):
    c = opened(s)
    c.rpc(1, "access.request", realm="/data", active=True, read=True)


@conversation("channel.client-close-then-method-before-close-ok")
def client_close_then_method(s):
    c = opened(s)
    c.send(1, "channel.close", reply_code=200, reply_text="ok")
    c.send(1, "queue.declare", queue=s.q())
    c.read()
    c.open_channel(1)


@conversation("channel.many-channels")
def many_channels(s):
    c = s.connect()
    for channel in (1, 2, 100, 2047):
        c.open_channel(channel)
    c.rpc(2047, "queue.declare", queue=s.q(), exclusive=True)
    c.rpc(2047, "channel.close", reply_code=200, reply_text="ok")


def _closing(after):
    """A channel error, then `after` while the broker waits for the client's close-ok."""

    def run(s):
        c = opened(s)
        c.auto_close_ok = False
        c.rpc(1, "queue.declare", queue=s.q("missing"), passive=True)
        after(s, c)
        c.read_nothing()
        c.rpc(1, "channel.close-ok")
        c.open_channel(1)
        c.rpc(1, "queue.declare", queue=s.q(), exclusive=True)

    return run


add("channel.closing.method-dropped", _closing(lambda s, c: c.send(1, "queue.declare", queue=s.q())))
add("channel.closing.channel-open", _closing(lambda s, c: c.send(1, "channel.open")))
add("channel.closing.channel-close", _closing(
    lambda s, c: c.send(1, "channel.close", reply_code=200, reply_text="ok")))
add("channel.closing.publish", _closing(lambda s, c: c.publish(1, "", s.q(), body="x")))
add("channel.closing.stray-body", _closing(lambda s, c: c.raw(wire.frame(3, 1, b"x"), note="body frame")))
add("channel.closing.stray-header", _closing(
    lambda s, c: c.raw(wire.frame(2, 1, wire.encode_header(60, 1, {})), note="header frame")))
add("channel.closing.other-channel-works", _closing(lambda s, c: (c.open_channel(2), c.rpc(2, "basic.qos"))))
