"""Connection class: the handshake (protocol header, start-ok, tune-ok, open), its error paths,
and connection-level errors after it (frame_max and channel_max breaches, bad frames, methods
that are not allowed on channel 0)."""

import struct

import wire
from registry import add, conversation

HEADERS = {
    "amqp-0-9-1": wire.PROTOCOL_HEADER,
    "amqp-0-9-1-revision-0": b"AMQP\x00\x00\x09\x00",
    "amqp-0-9-legacy": b"AMQP\x01\x01\x00\x09",
    "amqp-0-8": b"AMQP\x01\x01\x08\x00",
    "amqp-1-0": b"AMQP\x00\x01\x00\x00",
    "amqp-1-0-sasl": b"AMQP\x03\x01\x00\x00",
    "http": b"GET / HTTP/1.1\r\n\r\n",
}


def _header(raw):
    def run(s):
        c = s.connect(handshake=False)
        c.raw(raw, note="header %r" % raw)
        c.read()
        c.read()  # the end of the socket, if it comes

    return run


for _name, _raw in HEADERS.items():
    add("connection.header." + _name, _header(_raw))


@conversation("connection.handshake.ok-and-close")
def handshake_ok(s):
    c = s.connect()
    c.close()
    c.read()


@conversation("connection.close.client-writes-after-close-ok")
def writes_after_close_ok(s):
    """A client whose publishes were still queued behind its connection.close (amqplib sends
    channel 0 first) goes on writing after close-ok: the broker reads and drops those bytes
    and leaves the socket for the client to close, rather than resetting it under the
    client's writes."""
    c = s.connect()
    c.open_channel()
    c.close()
    c.publish(1, routing_key=s.q(), body="after close-ok")
    c.read_nothing()
    s.note("socket still open after close-ok and a late publish: %s" % (not c.ended))


def _login(**options):
    def run(s):
        c = s.connect(handshake=False)
        if c.handshake(**options):
            c.read()
        else:
            c.read_until_closed()

    return run


add("connection.login.bad-password", _login(password="wrong"))
add("connection.login.unknown-user", _login(user="nobody", password="x"))
add("connection.login.bad-password-no-auth-failure-close",
    _login(password="wrong", capabilities={"consumer_cancel_notify": True}))
add("connection.login.unknown-mechanism", _login(mechanism="CRAM-MD5"))
add("connection.login.plain-malformed", _login(response=b"guest"))
add("connection.login.amqplain", _login(mechanism="AMQPLAIN",
                                        response=wire.encode_table({"LOGIN": "guest", "PASSWORD": "guest"})[4:]))
add("connection.login.amqplain-malformed", _login(mechanism="AMQPLAIN", response=b"\x05LOGIN"))
add("connection.open.unknown-vhost", _login(vhost="no-such-vhost"))

add("connection.tune.frame-max-below-minimum", _login(frame_max=1024))
add("connection.tune.frame-max-minimum", _login(frame_max=4096))
add("connection.tune.frame-max-zero", _login(frame_max=0))
add("connection.tune.frame-max-above-broker", _login(frame_max=1 << 20))
add("connection.tune.channel-max-zero", _login(channel_max=0))
add("connection.tune.channel-max-above-broker", _login(channel_max=4000))
add("connection.tune.heartbeat-5", _login(heartbeat=5))


@conversation("connection.tune.channel-max-breach")
def channel_max_breach(s):
    c = s.connect(channel_max=3)
    c.open_channel(3)
    c.open_channel(4)
    c.read()


@conversation("connection.tune.frame-max-breach-method")
def frame_max_breach_method(s):
    c = s.connect(frame_max=4096)
    c.open_channel(1)
    c.send(1, "queue.declare", queue=s.q(), arguments={"x-padding": "p" * 5000})
    c.read()
    c.read_until_closed()  # RabbitMQ closes 3 s after its connection.close, close-ok or not


@conversation("connection.tune.frame-max-breach-body")
def frame_max_breach_body(s):
    c = s.connect(frame_max=4096)
    c.open_channel(1)
    c.publish(1, "", s.q(), body=b"b" * 6000, frame_body_max=6000)
    c.read()
    c.read_until_closed()  # RabbitMQ closes 3 s after its connection.close, close-ok or not


def _frame_max_edge(payload_size):
    """A body frame whose payload is `payload_size` under a frame_max of 4096: RabbitMQ lets a
    payload reach frame_max itself (8 octets over what frame_max allows, for clients that
    count wrong) and refuses one octet more."""
    def run(s):
        c = s.connect(frame_max=4096)
        c.open_channel(1)
        c.send(1, "queue.declare", queue=s.q(), exclusive=True)
        c.read()
        c.publish(1, "", s.q(), body=b"b" * payload_size, frame_body_max=payload_size)
        answer = c.read_nothing()
        if any(frame.get("method") == "connection.close" for frame in answer):
            c.read_until_closed()  # RabbitMQ closes 3 s after its connection.close
        else:
            c.send(1, "basic.get", queue=s.q(), no_ack=True)
            c.read()

    return run


for _size in (4088, 4089, 4096, 4097):
    add("connection.tune.frame-max-edge-body-%d" % _size, _frame_max_edge(_size))


def _wrong_method_while(stage):
    def run(s):
        c = s.connect(handshake=False)
        c.raw(wire.PROTOCOL_HEADER, note="protocol header")
        c.read()
        if stage == "starting":
            c.send(0, "connection.open", virtual_host="/")
            c.read_until_closed()
            return
        c.send(0, "connection.start-ok", client_properties={}, mechanism="PLAIN",
               response=b"\0guest\0guest", locale="en_US")
        c.read()
        if stage == "tuning":
            c.send(0, "connection.open", virtual_host="/")
            c.read_until_closed()
            return
        c.send(0, "connection.tune-ok", channel_max=2047, frame_max=131072, heartbeat=0)
        c.send(0, "connection.tune-ok", channel_max=2047, frame_max=131072, heartbeat=0)
        c.read_until_closed()

    return run


for _stage in ("starting", "tuning", "opening"):
    add("connection.handshake.wrong-method-while-" + _stage, _wrong_method_while(_stage))


@conversation("connection.handshake.heartbeat-while-starting")
def heartbeat_while_starting(s):
    c = s.connect(handshake=False)
    c.raw(wire.PROTOCOL_HEADER, note="protocol header")
    c.read()
    c.raw(wire.frame(wire.FRAME_HEARTBEAT, 0, b""), note="heartbeat")
    c.read_nothing()
    c.send(0, "connection.start-ok", client_properties={}, mechanism="PLAIN",
           response=b"\0guest\0guest", locale="en_US")
    c.read()


@conversation("connection.handshake.channel-1-while-starting")
def channel_while_starting(s):
    c = s.connect(handshake=False)
    c.raw(wire.PROTOCOL_HEADER, note="protocol header")
    c.read()
    c.send(1, "channel.open")
    c.read_until_closed()


@conversation("connection.handshake.client-closes-while-tuning")
def close_while_tuning(s):
    c = s.connect(handshake=False)
    c.raw(wire.PROTOCOL_HEADER, note="protocol header")
    c.read()
    c.send(0, "connection.start-ok", client_properties={}, mechanism="PLAIN",
           response=b"\0guest\0guest", locale="en_US")
    c.read()
    c.send(0, "connection.close", reply_code=200, reply_text="bye")
    c.read_until_closed()


def _on_channel_zero(method, **fields):
    def run(s):
        c = s.connect()
        c.send(0, method, **fields)
        c.read()
        c.read()

    return run


add("connection.channel-0.channel-open", _on_channel_zero("channel.open"))
add("connection.channel-0.queue-declare", _on_channel_zero("queue.declare", queue="x"))
add("connection.channel-0.connection-open-again", _on_channel_zero("connection.open", virtual_host="/"))
add("connection.channel-0.start-ok-again", _on_channel_zero(
    "connection.start-ok", client_properties={}, mechanism="PLAIN", response=b"\0guest\0guest", locale="en_US"))
add("connection.channel-0.tune-ok-again", _on_channel_zero(
    "connection.tune-ok", channel_max=2047, frame_max=131072, heartbeat=0))
add("connection.channel-0.update-secret", _on_channel_zero(
    "connection.update-secret", new_secret=b"x", reason="test"))
add("connection.channel-0.update-secret-same-password", _on_channel_zero(
    "connection.update-secret", new_secret=b"guest", reason="rotation"))
add("connection.channel-0.blocked-from-client", _on_channel_zero("connection.blocked", reason="x"))
add("connection.channel-0.unblocked-from-client", _on_channel_zero("connection.unblocked"))
add("connection.channel-0.close-ok-unsolicited", _on_channel_zero("connection.close-ok"))
add("connection.channel-0.tune-from-client", _on_channel_zero(
    "connection.tune", channel_max=1, frame_max=4096, heartbeat=0))
add("connection.close.with-error-code", _on_channel_zero(
    "connection.close", reply_code=320, reply_text="going away", class_id=60, method_id=40))


def _raw_after_open(payload, note, channel_opened=True):
    def run(s):
        c = s.connect()
        if channel_opened:
            c.open_channel(1)
        c.raw(payload, note=note)
        c.read()
        c.read()

    return run


add("connection.frame.unknown-frame-type", _raw_after_open(b"\x09\x00\x01\x00\x00\x00\x00\xce", "frame type 9"))
add("connection.frame.bad-frame-end", _raw_after_open(
    wire.frame(1, 1, wire.encode_method("basic.qos", prefetch_count=1))[:-1] + b"\x00", "frame end 0x00"))
add("connection.frame.unknown-class", _raw_after_open(wire.frame(1, 1, struct.pack(">HH", 99, 10)), "method 99.10"))
add("connection.frame.unknown-method", _raw_after_open(wire.frame(1, 1, struct.pack(">HH", 60, 99)), "method 60.99"))
add("connection.frame.truncated-method", _raw_after_open(
    wire.frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00"), "queue.declare cut short"))
add("connection.frame.header-on-channel-0", _raw_after_open(
    wire.frame(2, 0, wire.encode_header(60, 1, {})), "content header on channel 0"))
add("connection.frame.body-on-channel-0", _raw_after_open(wire.frame(3, 0, b"x"), "content body on channel 0"))
add("connection.frame.heartbeat-on-channel-1", _raw_after_open(wire.frame(8, 1, b""), "heartbeat on channel 1"))
add("connection.frame.heartbeat-on-channel-0", _raw_after_open(wire.frame(8, 0, b""), "heartbeat on channel 0"))
add("connection.frame.method-on-channel-above-max", _raw_after_open(
    wire.frame(1, 2048, wire.encode_method("channel.open")), "channel.open on channel 2048"))
add("connection.frame.method-on-channel-65535", _raw_after_open(
    wire.frame(1, 65535, wire.encode_method("channel.open")), "channel.open on channel 65535"))
add("connection.frame.oversized-size-field", _raw_after_open(
    struct.pack(">BHI", 1, 1, 1 << 30) + b"\x00" * 16, "method frame announcing 1 GiB"))
