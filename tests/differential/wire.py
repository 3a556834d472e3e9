"""AMQP 0-9-1 wire format for the differential test: frames, methods, content headers and
field tables, in both directions.

The field-table encoder writes exactly the type tag it is given (`Typed("l", 5)` is a
64-bit signed integer, `Typed("I", 5)` a 32-bit one), because RabbitMQ's answers depend on
those tags (argument validation, 32- vs 64-bit redeclares). Decoded tables keep the tags too,
so that a broker that answers with another integer width is seen to differ.
"""

import struct
from decimal import Decimal

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

# (class_id, method_id) -> (name, [(field, type)]); types as in the 0-9-1 XML spec.
_TICKET = ("ticket", "short")
_CLOSE = [("reply_code", "short"), ("reply_text", "shortstr"), ("class_id", "short"), ("method_id", "short")]
_BIND = [_TICKET, ("destination", "shortstr"), ("source", "shortstr"), ("routing_key", "shortstr"),
         ("nowait", "bit"), ("arguments", "table")]
METHODS = {
    (10, 10): ("connection.start", [("version_major", "octet"), ("version_minor", "octet"),
                                    ("server_properties", "table"), ("mechanisms", "longstr"),
                                    ("locales", "longstr")]),
    (10, 11): ("connection.start-ok", [("client_properties", "table"), ("mechanism", "shortstr"),
                                       ("response", "longstr"), ("locale", "shortstr")]),
    (10, 20): ("connection.secure", [("challenge", "longstr")]),
    (10, 21): ("connection.secure-ok", [("response", "longstr")]),
    (10, 30): ("connection.tune", [("channel_max", "short"), ("frame_max", "long"), ("heartbeat", "short")]),
    (10, 31): ("connection.tune-ok", [("channel_max", "short"), ("frame_max", "long"), ("heartbeat", "short")]),
    (10, 40): ("connection.open", [("virtual_host", "shortstr"), ("capabilities", "shortstr"), ("insist", "bit")]),
    (10, 41): ("connection.open-ok", [("known_hosts", "shortstr")]),
    (10, 50): ("connection.close", _CLOSE),
    (10, 51): ("connection.close-ok", []),
    (10, 60): ("connection.blocked", [("reason", "shortstr")]),
    (10, 61): ("connection.unblocked", []),
    (10, 70): ("connection.update-secret", [("new_secret", "longstr"), ("reason", "shortstr")]),
    (10, 71): ("connection.update-secret-ok", []),
    (20, 10): ("channel.open", [("out_of_band", "shortstr")]),
    (20, 11): ("channel.open-ok", [("channel_id", "longstr")]),
    (20, 20): ("channel.flow", [("active", "bit")]),
    (20, 21): ("channel.flow-ok", [("active", "bit")]),
    (20, 40): ("channel.close", _CLOSE),
    (20, 41): ("channel.close-ok", []),
    (30, 10): ("access.request", [("realm", "shortstr"), ("exclusive", "bit"), ("passive", "bit"),
                                  ("active", "bit"), ("write", "bit"), ("read", "bit")]),
    (30, 11): ("access.request-ok", [_TICKET]),
    (40, 10): ("exchange.declare", [_TICKET, ("exchange", "shortstr"), ("type", "shortstr"),
                                    ("passive", "bit"), ("durable", "bit"), ("auto_delete", "bit"),
                                    ("internal", "bit"), ("nowait", "bit"), ("arguments", "table")]),
    (40, 11): ("exchange.declare-ok", []),
    (40, 20): ("exchange.delete", [_TICKET, ("exchange", "shortstr"), ("if_unused", "bit"), ("nowait", "bit")]),
    (40, 21): ("exchange.delete-ok", []),
    (40, 30): ("exchange.bind", _BIND),
    (40, 31): ("exchange.bind-ok", []),
    (40, 40): ("exchange.unbind", _BIND),
    (40, 51): ("exchange.unbind-ok", []),
    (50, 10): ("queue.declare", [_TICKET, ("queue", "shortstr"), ("passive", "bit"), ("durable", "bit"),
                                 ("exclusive", "bit"), ("auto_delete", "bit"), ("nowait", "bit"),
                                 ("arguments", "table")]),
    (50, 11): ("queue.declare-ok", [("queue", "shortstr"), ("message_count", "long"), ("consumer_count", "long")]),
    (50, 20): ("queue.bind", [_TICKET, ("queue", "shortstr"), ("exchange", "shortstr"),
                              ("routing_key", "shortstr"), ("nowait", "bit"), ("arguments", "table")]),
    (50, 21): ("queue.bind-ok", []),
    (50, 30): ("queue.purge", [_TICKET, ("queue", "shortstr"), ("nowait", "bit")]),
    (50, 31): ("queue.purge-ok", [("message_count", "long")]),
    (50, 40): ("queue.delete", [_TICKET, ("queue", "shortstr"), ("if_unused", "bit"), ("if_empty", "bit"),
                                ("nowait", "bit")]),
    (50, 41): ("queue.delete-ok", [("message_count", "long")]),
    (50, 50): ("queue.unbind", [_TICKET, ("queue", "shortstr"), ("exchange", "shortstr"),
                                ("routing_key", "shortstr"), ("arguments", "table")]),
    (50, 51): ("queue.unbind-ok", []),
    (60, 10): ("basic.qos", [("prefetch_size", "long"), ("prefetch_count", "short"), ("global", "bit")]),
    (60, 11): ("basic.qos-ok", []),
    (60, 20): ("basic.consume", [_TICKET, ("queue", "shortstr"), ("consumer_tag", "shortstr"),
                                 ("no_local", "bit"), ("no_ack", "bit"), ("exclusive", "bit"),
                                 ("nowait", "bit"), ("arguments", "table")]),
    (60, 21): ("basic.consume-ok", [("consumer_tag", "shortstr")]),
    (60, 30): ("basic.cancel", [("consumer_tag", "shortstr"), ("nowait", "bit")]),
    (60, 31): ("basic.cancel-ok", [("consumer_tag", "shortstr")]),
    (60, 40): ("basic.publish", [_TICKET, ("exchange", "shortstr"), ("routing_key", "shortstr"),
                                 ("mandatory", "bit"), ("immediate", "bit")]),
    (60, 50): ("basic.return", [("reply_code", "short"), ("reply_text", "shortstr"), ("exchange", "shortstr"),
                                ("routing_key", "shortstr")]),
    (60, 60): ("basic.deliver", [("consumer_tag", "shortstr"), ("delivery_tag", "longlong"),
                                 ("redelivered", "bit"), ("exchange", "shortstr"), ("routing_key", "shortstr")]),
    (60, 70): ("basic.get", [_TICKET, ("queue", "shortstr"), ("no_ack", "bit")]),
    (60, 71): ("basic.get-ok", [("delivery_tag", "longlong"), ("redelivered", "bit"), ("exchange", "shortstr"),
                                ("routing_key", "shortstr"), ("message_count", "long")]),
    (60, 72): ("basic.get-empty", [("cluster_id", "shortstr")]),
    (60, 80): ("basic.ack", [("delivery_tag", "longlong"), ("multiple", "bit")]),
    (60, 90): ("basic.reject", [("delivery_tag", "longlong"), ("requeue", "bit")]),
    (60, 100): ("basic.recover-async", [("requeue", "bit")]),
    (60, 110): ("basic.recover", [("requeue", "bit")]),
    (60, 111): ("basic.recover-ok", []),
    (60, 120): ("basic.nack", [("delivery_tag", "longlong"), ("multiple", "bit"), ("requeue", "bit")]),
    (85, 10): ("confirm.select", [("nowait", "bit")]),
    (85, 11): ("confirm.select-ok", []),
    (90, 10): ("tx.select", []),
    (90, 11): ("tx.select-ok", []),
    (90, 20): ("tx.commit", []),
    (90, 21): ("tx.commit-ok", []),
    (90, 30): ("tx.rollback", []),
    (90, 31): ("tx.rollback-ok", []),
}
METHOD_IDS = {name: ids for ids, (name, _) in METHODS.items()}

# Content-header properties in flag order (bit 15 first).
PROPERTIES = [("content_type", "shortstr"), ("content_encoding", "shortstr"), ("headers", "table"),
              ("delivery_mode", "octet"), ("priority", "octet"), ("correlation_id", "shortstr"),
              ("reply_to", "shortstr"), ("expiration", "shortstr"), ("message_id", "shortstr"),
              ("timestamp", "timestamp"), ("type", "shortstr"), ("user_id", "shortstr"),
              ("app_id", "shortstr"), ("cluster_id", "shortstr")]


class Typed:
    """A field-table value with its explicit AMQP type tag."""

    __slots__ = ("tag", "value")

    def __init__(self, tag, value):
        self.tag, self.value = tag, value

    def __eq__(self, other):
        return isinstance(other, Typed) and (self.tag, self.value) == (other.tag, other.value)

    def __repr__(self):
        return "%s:%r" % (self.tag, self.value)


class DecodeError(Exception):
    pass


# ---------------------------------------------------------------- encoding

def _typed(value):
    """Plain Python values get the type a typical client (pika) would choose."""
    if isinstance(value, Typed):
        return value
    if isinstance(value, bool):
        return Typed("t", value)
    if isinstance(value, int):
        return Typed("I" if -2**31 <= value < 2**31 else "l", value)
    if isinstance(value, float):
        return Typed("d", value)
    if isinstance(value, Decimal):
        return Typed("D", value)
    if isinstance(value, str):
        return Typed("S", value.encode())
    if isinstance(value, bytes):
        return Typed("S", value)
    if isinstance(value, dict):
        return Typed("F", value)
    if isinstance(value, (list, tuple)):
        return Typed("A", list(value))
    if value is None:
        return Typed("V", None)
    raise TypeError("no AMQP type for %r" % (value,))


_INT_FORMATS = {"b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I", "l": ">q", "L": ">Q"}


def encode_value(value):
    typed = _typed(value)
    tag, raw = typed.tag, typed.value
    head = tag.encode()
    if tag == "t":
        return head + bytes([1 if raw else 0])
    if tag in _INT_FORMATS:
        return head + struct.pack(_INT_FORMATS[tag], raw)
    if tag == "f":
        return head + struct.pack(">f", raw)
    if tag == "d":
        return head + struct.pack(">d", raw)
    if tag == "D":
        sign, digits, exponent = Decimal(raw).as_tuple()
        number = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        return head + struct.pack(">Bi", -exponent if exponent < 0 else 0, number)
    if tag in ("S", "x"):
        data = raw.encode() if isinstance(raw, str) else raw
        return head + struct.pack(">I", len(data)) + data
    if tag == "T":
        return head + struct.pack(">Q", raw)
    if tag == "F":
        return head + encode_table(raw)
    if tag == "A":
        data = b"".join(encode_value(item) for item in raw)
        return head + struct.pack(">I", len(data)) + data
    if tag == "V":
        return head
    raise TypeError("unknown field type %r" % tag)


def encode_shortstr(text):
    data = text.encode() if isinstance(text, str) else text
    if len(data) > 255:
        raise ValueError("shortstr over 255 octets")
    return bytes([len(data)]) + data


def encode_table(table):
    data = b"".join(encode_shortstr(key) + encode_value(value) for key, value in (table or {}).items())
    return struct.pack(">I", len(data)) + data


def encode_fields(fields, values):
    out, bits, nbits = [], 0, 0
    for name, kind in fields:
        value = values.get(name)
        if kind == "bit":
            bits |= (1 if value else 0) << nbits
            nbits += 1
            continue
        if nbits:
            out.append(bytes([bits]))
            bits, nbits = 0, 0
        if kind == "octet":
            out.append(struct.pack(">B", value or 0))
        elif kind == "short":
            out.append(struct.pack(">H", value or 0))
        elif kind == "long":
            out.append(struct.pack(">I", value or 0))
        elif kind in ("longlong", "timestamp"):
            out.append(struct.pack(">Q", value or 0))
        elif kind == "shortstr":
            out.append(encode_shortstr(value or ""))
        elif kind == "longstr":
            data = value or b""
            data = data.encode() if isinstance(data, str) else data
            out.append(struct.pack(">I", len(data)) + data)
        elif kind == "table":
            out.append(encode_table(value))
    if nbits:
        out.append(bytes([bits]))
    return b"".join(out)


def encode_method(name, **values):
    class_id, method_id = METHOD_IDS[name]
    fields = METHODS[(class_id, method_id)][1]
    unknown = set(values) - {field for field, _ in fields}
    if unknown:
        raise TypeError("%s has no field %s" % (name, sorted(unknown)))
    return struct.pack(">HH", class_id, method_id) + encode_fields(fields, values)


def encode_header(class_id, body_size, properties, weight=0):
    flags, present = 0, {}
    for index, (name, kind) in enumerate(PROPERTIES):
        if properties.get(name) is not None:
            flags |= 1 << (15 - index)
            present[name] = properties[name]
    unknown = set(properties) - {name for name, _ in PROPERTIES}
    if unknown:
        raise TypeError("no property %s" % sorted(unknown))
    fields = [(name, kind) for name, kind in PROPERTIES if name in present]
    return struct.pack(">HHQH", class_id, weight, body_size, flags) + encode_fields(fields, present)


def frame(frame_type, channel, payload):
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + bytes([FRAME_END])


# ---------------------------------------------------------------- decoding

class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, count):
        if self.pos + count > len(self.data):
            raise DecodeError("truncated")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def shortstr(self):
        return self.take(self.unpack(">B")).decode("utf-8", "replace")

    def longstr(self):
        return self.take(self.unpack(">I"))

    def table(self):
        inner = _Reader(self.longstr())
        table = {}
        while inner.pos < len(inner.data):
            key = inner.shortstr()
            table[key] = inner.value()
        return table

    def value(self):
        tag = self.take(1).decode("latin-1")
        if tag == "t":
            return Typed(tag, bool(self.unpack(">B")))
        if tag in _INT_FORMATS:
            return Typed(tag, self.unpack(_INT_FORMATS[tag]))
        if tag == "f":
            return Typed(tag, self.unpack(">f"))
        if tag == "d":
            return Typed(tag, self.unpack(">d"))
        if tag == "D":
            scale = self.unpack(">B")
            return Typed(tag, Decimal(self.unpack(">i")).scaleb(-scale))
        if tag in ("S", "x"):
            return Typed(tag, self.longstr())
        if tag == "T":
            return Typed(tag, self.unpack(">Q"))
        if tag == "F":
            return Typed(tag, self.table())
        if tag == "A":
            inner = _Reader(self.longstr())
            items = []
            while inner.pos < len(inner.data):
                items.append(inner.value())
            return Typed(tag, items)
        if tag == "V":
            return Typed(tag, None)
        raise DecodeError("unknown field type %r" % tag)

    def fields(self, fields):
        values, bits, nbits = {}, 0, 8
        for name, kind in fields:
            if kind == "bit":
                if nbits == 8:
                    bits, nbits = self.unpack(">B"), 0
                values[name] = bool(bits & (1 << nbits))
                nbits += 1
                continue
            nbits = 8
            if kind == "octet":
                values[name] = self.unpack(">B")
            elif kind == "short":
                values[name] = self.unpack(">H")
            elif kind == "long":
                values[name] = self.unpack(">I")
            elif kind in ("longlong", "timestamp"):
                values[name] = self.unpack(">Q")
            elif kind == "shortstr":
                values[name] = self.shortstr()
            elif kind == "longstr":
                values[name] = self.longstr()
            elif kind == "table":
                values[name] = self.table()
        return values


def decode_method(payload):
    """(name, fields) of a method frame's payload."""
    reader = _Reader(payload)
    class_id, method_id = reader.unpack(">H"), reader.unpack(">H")
    spec = METHODS.get((class_id, method_id))
    if spec is None:
        return "method %d.%d" % (class_id, method_id), {"raw": payload[4:]}
    name, fields = spec
    values = reader.fields(fields)
    if reader.pos != len(payload):
        values["trailing"] = payload[reader.pos:]
    return name, values


def decode_header(payload):
    """(class_id, weight, body_size, properties) of a content-header payload."""
    reader = _Reader(payload)
    class_id, weight, body_size = reader.unpack(">H"), reader.unpack(">H"), reader.unpack(">Q")
    flags = reader.unpack(">H")
    fields = [(name, kind) for index, (name, kind) in enumerate(PROPERTIES) if flags & (1 << (15 - index))]
    return class_id, weight, body_size, reader.fields(fields)
