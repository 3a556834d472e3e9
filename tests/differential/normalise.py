"""The one place where a transcript becomes the text that is compared between brokers.

Every rule that hides a difference is listed in `RULES` with the reason it is legitimate;
anything not hidden here is behaviour and must match RabbitMQ 3.10.
"""

import hashlib
import re

from wire import Typed

RULES = [
    # connection.start's server_properties name the product, its version, the platform,
    # copyright and cluster name: they say who the broker is, not how it behaves. Only the
    # `capabilities` table is kept, since clients act on it.
    "server_properties: only 'capabilities' is compared",
    # Server-generated names (queue.declare with an empty name, basic.consume with an empty
    # tag, direct reply-to addresses) are random by design. They are numbered by first
    # appearance in the conversation, so "the same generated name" is still checked.
    "amq.gen-*, amq.ctag-*, amq.rabbitmq.reply-to.* are numbered by first appearance",
    # x-death's `time` is the wall-clock time of the dead-lettering.
    "x-death[].time is replaced by <time>",
    # AMQP field tables are maps: the order of their keys carries no meaning.
    "field-table keys are sorted",
    # After a close that the client started (connection.close from the client, close-ok from
    # the broker) the client closes the socket; whether the broker closes its end first, and
    # when, is not something a client sees or relies on. That end-of-stream is dropped.
    "end of stream after a client-started connection close is dropped",
    # The Erlang node name of the throw-away RabbitMQ node can appear in reply texts.
    "the RabbitMQ node name is replaced by <node>",
]

_GENERATED = re.compile(r"(amq\.gen-|amq\.ctag-|amq\.rabbitmq\.reply-to\.)([A-Za-z0-9_\-.=+/]+)")
_NODE = re.compile(r"spatemq-cmp-\d+@localhost")
_SERVER_PROPERTIES_KEPT = ("capabilities",)
BODY_SHOWN_MAX = 64  # longer bodies are shown as their size and a digest


class _Names:
    """Numbers generated names by first appearance within one transcript."""

    def __init__(self):
        self.seen = {}

    def __call__(self, text):
        def replace(match):
            key = match.group(0)
            if key not in self.seen:
                self.seen[key] = len([k for k in self.seen if k.startswith(match.group(1))]) + 1
            return "%s#%d" % (match.group(1), self.seen[key])

        return _NODE.sub("<node>", _GENERATED.sub(replace, text))


def _value(value, names, path=""):
    if isinstance(value, Typed):
        if value.tag == "T" and path.endswith("x-death[].time"):
            return "T:<time>"
        return "%s:%s" % (value.tag, _value(value.value, names, path))
    if isinstance(value, dict):
        return "{" + ", ".join("%s=%s" % (names(key), _value(value[key], names, path + "." + key))
                               for key in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(item, names, path + "[]") for item in value) + "]"
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value)
        if len(text) > BODY_SHOWN_MAX:
            return "<%d bytes %s>" % (len(text), hashlib.sha1(text).hexdigest()[:10])
        return names(repr(text))
    if isinstance(value, str):
        return names(repr(value))
    return repr(value)


def _fields(fields, names, skip_defaults):
    parts = []
    for key, value in fields.items():
        if skip_defaults and value in (None, False, 0, "", b"", {}):
            continue
        parts.append("%s=%s" % (key, _value(value, names, key)))
    return " ".join(parts)


def _method(entry, names, sent):
    fields = dict(entry["fields"])
    if entry["method"] == "connection.start" and "server_properties" in fields:
        fields["server_properties"] = {key: value for key, value in fields["server_properties"].items()
                                       if key in _SERVER_PROPERTIES_KEPT}
    if entry["method"] == "connection.start-ok" and sent:
        fields.pop("client_properties", None)
    return ("ch%d %s %s" % (entry["channel"], entry["method"], _fields(fields, names, sent))).rstrip()


def line(direction, label, entry, names):
    arrow = {"send": ">", "recv": "<", "note": "#"}[direction]
    kind = entry.get("kind")
    if direction == "note":
        return "# " + entry["text"]
    if kind == "method":
        text = _method(entry, names, direction == "send")
    elif kind == "publish":
        text = "ch%d basic.publish+content exchange=%s routing_key=%s%s%s body=%s props=%s" % (
            entry["channel"], _value(entry["exchange"], names), _value(entry["routing_key"], names),
            " mandatory" if entry["mandatory"] else "", " immediate" if entry["immediate"] else "",
            _value(entry["body"], names), _value(entry["properties"], names))
    elif kind == "header":
        text = "ch%d header class=%d weight=%d body_size=%d props=%s" % (
            entry["channel"], entry["class_id"], entry["weight"], entry["body_size"],
            _value(entry["properties"], names, "props"))
    elif kind == "body":
        text = "ch%d body %s" % (entry["channel"], _value(entry["body"], names))
    elif kind == "bytes":
        text = "bytes %s" % _value(entry["data"], names)
    elif kind == "raw":
        text = "raw %s" % entry["text"]
    else:
        text = " ".join("%s=%s" % (key, value) for key, value in sorted(entry.items()))
    return "%s %s %s" % (label, arrow, text)


def _client_closed(transcript):
    """Indexes of end-of-stream entries that follow a client-started connection close."""
    dropped, closing = set(), set()
    for index, (direction, label, entry) in enumerate(transcript):
        if entry.get("kind") == "method" and entry["method"] == "connection.close" and direction == "send":
            closing.add(label)
        elif entry.get("kind") == "method" and entry["method"] == "connection.close" and direction == "recv":
            closing.discard(label)
        elif entry.get("kind") == "eof" and label in closing:
            dropped.add(index)
    return dropped


def transcript_lines(transcript):
    names = _Names()
    dropped = _client_closed(transcript)
    return [line(direction, label, entry, names) for index, (direction, label, entry) in enumerate(transcript)
            if index not in dropped]
