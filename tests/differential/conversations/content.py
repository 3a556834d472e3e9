"""Content frames: headers and bodies out of place or out of size, on open and unopened channels,
and the expiration property's parsing. Connection-level answers (505, 501) are expected."""

import struct

import wire
from conversations._helpers import declare, opened
from registry import add


def _frames(build):
    def run(s):
        c = opened(s)
        declare(c, 1, s.q(), exclusive=True)
        for payload, note in build(s):
            c.raw(payload, note=note)
        c.read()
        c.read()

    return run


def _publish_method(s):
    return wire.frame(1, 1, wire.encode_method("basic.publish", routing_key=s.q()))


def _header(size, class_id=60, weight=0, properties=None):
    return wire.frame(2, 1, wire.encode_header(class_id, size, properties or {}, weight=weight))


add("content.header-without-publish", _frames(lambda s: [(_header(1), "header")]))
add("content.body-without-publish", _frames(lambda s: [(wire.frame(3, 1, b"x"), "body")]))
add("content.method-instead-of-header", _frames(lambda s: [
    (_publish_method(s), "publish"), (wire.frame(1, 1, wire.encode_method("basic.qos")), "basic.qos")]))
add("content.body-instead-of-header", _frames(lambda s: [
    (_publish_method(s), "publish"), (wire.frame(3, 1, b"x"), "body")]))
add("content.method-instead-of-body", _frames(lambda s: [
    (_publish_method(s), "publish"), (_header(3), "header size 3"),
    (wire.frame(1, 1, wire.encode_method("basic.qos")), "basic.qos")]))
add("content.header-instead-of-body", _frames(lambda s: [
    (_publish_method(s), "publish"), (_header(3), "header size 3"), (_header(3), "header again")]))
add("content.body-longer-than-announced", _frames(lambda s: [
    (_publish_method(s), "publish"), (_header(2), "header size 2"), (wire.frame(3, 1, b"xyz"), "body of 3")]))
add("content.body-longer-then-get", _frames(lambda s: [
    (_publish_method(s), "publish"), (_header(2), "header size 2"), (wire.frame(3, 1, b"xyz"), "body of 3"),
    (wire.frame(1, 1, wire.encode_method("basic.get", queue=s.q(), no_ack=True)), "basic.get")]))
add("content.header-weight-not-zero", _frames(lambda s: [
    (_publish_method(s), "publish"), (_header(1, weight=1), "header weight 1"), (wire.frame(3, 1, b"x"), "body")]))
add("content.header-wrong-class", _frames(lambda s: [
    (_publish_method(s), "publish"), (_header(1, class_id=50), "header class 50"), (wire.frame(3, 1, b"x"), "body")]))
add("content.header-truncated", _frames(lambda s: [
    (_publish_method(s), "publish"), (wire.frame(2, 1, struct.pack(">HH", 60, 0)), "header cut short")]))
add("content.body-too-large-for-broker", _frames(lambda s: [
    (_publish_method(s), "publish"), (_header(600 * 1024 * 1024), "header 600 MiB")]))
add("content.empty-body-frames", _frames(lambda s: [
    (_publish_method(s), "publish"), (_header(1), "header size 1"), (wire.frame(3, 1, b""), "empty body"),
    (wire.frame(3, 1, b"x"), "body"),
    (wire.frame(1, 1, wire.encode_method("basic.get", queue=s.q(), no_ack=True)), "basic.get")]))
add("content.zero-size-then-body", _frames(lambda s: [
    (_publish_method(s), "publish"), (_header(0), "header size 0"), (wire.frame(3, 1, b"x"), "body")]))
add("content.on-unopened-channel", _frames(lambda s: [
    (wire.frame(1, 7, wire.encode_method("basic.publish", routing_key="x")), "publish on channel 7"),
    (wire.frame(2, 7, wire.encode_header(60, 1, {})), "header on 7"), (wire.frame(3, 7, b"x"), "body on 7")]))
add("content.interleaved-channels", _frames(lambda s: [
    (_publish_method(s), "publish ch1"),
    (wire.frame(1, 2, wire.encode_method("channel.open")), "channel.open ch2"),
    (_header(1), "header ch1"), (wire.frame(3, 1, b"x"), "body ch1"),
    (wire.frame(1, 1, wire.encode_method("basic.get", queue=s.q(), no_ack=True)), "basic.get")]))
