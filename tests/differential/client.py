"""A raw AMQP connection that records a conversation, for the differential test.

A conversation drives one or more `Connection`s through a `Session`. Everything the client
sends and everything the broker answers is appended to the session's transcript as a decoded
frame (a dict), labelled with the connection; `normalise.py` turns the transcript into text
lines that are compared between brokers.

Every read is bounded: `read()` waits at most `first_s` for a first frame and then gathers
frames until the broker has been quiet for `quiet_s`, or until the connection ends. Nothing
here waits without a deadline.
"""

import socket
import struct
import time

import wire

FIRST_S = 3.0    # how long a read waits for the broker to say anything
QUIET_S = 0.25   # a read ends once the broker has said nothing more for this long
NOTHING_S = 0.4  # a read that expects nothing waits this long for unexpected frames
READ_MAX_FRAMES = 500  # bound on frames gathered by one read

# What a modern client (pika, the Java client) announces.
CLIENT_CAPABILITIES = {
    "publisher_confirms": True, "exchange_exchange_bindings": True, "basic.nack": True,
    "consumer_cancel_notify": True, "connection.blocked": True, "authentication_failure_close": True,
}


class Session:
    """One conversation against one broker: its connections and its transcript."""

    def __init__(self, name, port):
        self.name, self.port = name, port
        self.transcript = []
        self.connections = []

    def q(self, suffix=""):
        """A name unique to this conversation, for queues and exchanges."""
        return "%s%s" % (self.name, ("." + suffix) if suffix else "")

    def connect(self, label=None, handshake=True, **options):
        connection = Connection(self, label or "c%d" % (len(self.connections) + 1))
        self.connections.append(connection)
        if handshake:
            connection.handshake(**options)
        return connection

    def note(self, text):
        """A line of the conversation's own (say, a step marker) in the transcript."""
        self.transcript.append(("note", "", {"text": text}))

    def close_all(self):
        for connection in self.connections:
            connection.abort()


class Connection:
    def __init__(self, session, label):
        self.session, self.label = session, label
        self.sock = socket.create_connection(("127.0.0.1", session.port), timeout=5)
        self.buf = b""
        self.ended = False
        self.frame_max = 131072
        self.auto_close_ok = True  # answer a broker's channel.close with channel.close-ok at once

    # ---------------------------------------------------------------- sending
    def _record(self, direction, entry):
        self.session.transcript.append((direction, self.label, entry))

    def raw(self, data, note=None):
        """Bytes as they are (malformed frames, protocol headers)."""
        self._record("send", {"kind": "raw", "text": note or repr(data[:60])})
        self._sendall(data)

    def _sendall(self, data):
        if self.ended:
            return
        try:
            self.sock.sendall(data)
        except OSError:
            # The broker closed the socket: whether a send sees that first depends on timing,
            # so it is not recorded; the next read records the end of the stream.
            pass

    def send(self, channel, method, **fields):
        self._record("send", {"kind": "method", "channel": channel, "method": method, "fields": fields})
        self._sendall(wire.frame(wire.FRAME_METHOD, channel, wire.encode_method(method, **fields)))

    def publish(self, channel, exchange="", routing_key="", body=b"", properties=None,
                mandatory=False, immediate=False, frame_body_max=None):
        """basic.publish with its content header and body frames, in one write."""
        body = body.encode() if isinstance(body, str) else body
        properties = properties or {}
        self._record("send", {"kind": "publish", "channel": channel, "exchange": exchange,
                              "routing_key": routing_key, "body": body, "properties": properties,
                              "mandatory": mandatory, "immediate": immediate})
        method = wire.encode_method("basic.publish", exchange=exchange, routing_key=routing_key,
                                    mandatory=mandatory, immediate=immediate)
        data = [wire.frame(wire.FRAME_METHOD, channel, method),
                wire.frame(wire.FRAME_HEADER, channel, wire.encode_header(60, len(body), properties))]
        chunk = frame_body_max or (self.frame_max - 8)
        for start in range(0, len(body), chunk):
            data.append(wire.frame(wire.FRAME_BODY, channel, body[start:start + chunk]))
        self._sendall(b"".join(data))

    # ---------------------------------------------------------------- reading
    def _read_frame(self, deadline):
        """The next frame as (type, channel, payload); None when the deadline passes;
        "eof" when the broker closed the socket; ("bytes", 0, data) for what is no frame
        (a protocol header the broker sends back, say)."""
        while True:
            if self.buf[:4] == b"AMQP" and (len(self.buf) >= 8 or self.ended):
                data, self.buf = self.buf[:8], self.buf[8:]
                return ("bytes", 0, data)
            if len(self.buf) >= 7:
                frame_type, channel, size = struct.unpack(">BHI", self.buf[:7])
                if frame_type not in (wire.FRAME_METHOD, wire.FRAME_HEADER, wire.FRAME_BODY,
                                      wire.FRAME_HEARTBEAT):
                    data, self.buf = self.buf, b""
                    return ("bytes", 0, data)
                if len(self.buf) >= 8 + size:
                    payload, end = self.buf[7:7 + size], self.buf[7 + size]
                    self.buf = self.buf[8 + size:]
                    if end != wire.FRAME_END:
                        return ("bad-frame-end", channel, payload)
                    return (frame_type, channel, payload)
            if self.ended:
                if self.buf:
                    data, self.buf = self.buf, b""
                    return ("bytes", 0, data)
                return "eof"
            if self._recv_until(deadline) is None:
                return None

    def _recv_until(self, deadline):
        if self.ended:
            return b""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout:
            return None
        except OSError:
            chunk = b""
        if not chunk:
            self.ended = True
            return b""
        self.buf += chunk
        return chunk

    def read(self, first_s=FIRST_S, quiet_s=QUIET_S):
        """Everything the broker says now; see the module doc for the bounds."""
        frames = []
        deadline = time.monotonic() + first_s
        while len(frames) < READ_MAX_FRAMES:
            got = self._read_frame(deadline)
            if got is None:
                break
            if got == "eof":
                if not any(entry.get("kind") == "eof" for _, label, entry in self.session.transcript
                           if label == self.label):
                    self._record("recv", {"kind": "eof"})
                break
            entry = self._decode(*got)
            if entry is None:
                continue
            self._record("recv", entry)
            frames.append(entry)
            self._react(entry)
            deadline = time.monotonic() + quiet_s
        return frames

    def read_until_closed(self, max_s=15.0):
        """Reads until the broker closes the socket, at most `max_s` (RabbitMQ closes some
        refused handshakes silently, and only its 10 s handshake timeout bounds when)."""
        deadline = time.monotonic() + max_s
        while not self.ended and time.monotonic() < deadline:
            self.read(first_s=max(0.1, deadline - time.monotonic()))
        self.read(first_s=0.1)

    def read_nothing(self):
        """A read after an action that needs no answer: frames that do come are recorded."""
        return self.read(first_s=NOTHING_S, quiet_s=QUIET_S)

    def _decode(self, frame_type, channel, payload):
        if frame_type == wire.FRAME_HEARTBEAT:
            return None  # heartbeats are negotiated off; one that comes anyway is noise
        if frame_type == "bytes":
            return {"kind": "bytes", "data": payload}
        if frame_type == "bad-frame-end":
            return {"kind": "bad-frame-end", "channel": channel}
        try:
            if frame_type == wire.FRAME_METHOD:
                name, fields = wire.decode_method(payload)
                return {"kind": "method", "channel": channel, "method": name, "fields": fields}
            if frame_type == wire.FRAME_HEADER:
                class_id, weight, body_size, properties = wire.decode_header(payload)
                return {"kind": "header", "channel": channel, "class_id": class_id, "weight": weight,
                        "body_size": body_size, "properties": properties}
            return {"kind": "body", "channel": channel, "body": payload}
        except wire.DecodeError as error:
            return {"kind": "undecodable", "channel": channel, "error": str(error)}

    def _react(self, entry):
        """What every client does by itself: answer closes."""
        if entry.get("kind") != "method":
            return
        if entry["method"] == "connection.close":
            self.send(0, "connection.close-ok")
        elif entry["method"] == "channel.close" and self.auto_close_ok:
            self.send(entry["channel"], "channel.close-ok")

    # ---------------------------------------------------------------- confirmed fill
    FILL_CHANNEL = 999  # a channel of the harness's own, in confirm mode, hidden from the transcript

    def fill(self, exchange, routing_key, bodies, properties=None):
        """Publishes `bodies` on a hidden confirm-mode channel and waits until every one is
        confirmed, so that the messages are in their queues before the next step. (RabbitMQ
        answers queue.declare's message count ahead of publishes still on their way, so a
        count right after plain publishes depends on timing.) The transcript gets one line:
        which messages were acked and which nacked, not how the confirms were batched."""
        if not getattr(self, "_fill_open", False):
            self._hidden(wire.encode_method("channel.open"), "channel.open-ok")
            self._hidden(wire.encode_method("confirm.select"), "confirm.select-ok")
            self._fill_open, self._fill_sequence = True, 0
        first = self._fill_sequence + 1
        data = []
        for body in bodies:
            body = body.encode() if isinstance(body, str) else body
            data.append(wire.frame(wire.FRAME_METHOD, self.FILL_CHANNEL, wire.encode_method(
                "basic.publish", exchange=exchange, routing_key=routing_key)))
            data.append(wire.frame(wire.FRAME_HEADER, self.FILL_CHANNEL,
                                   wire.encode_header(60, len(body), properties or {})))
            data.append(wire.frame(wire.FRAME_BODY, self.FILL_CHANNEL, body))
        self._fill_sequence += len(bodies)
        self._sendall(b"".join(data))
        settled, others = {}, []
        deadline = time.monotonic() + FIRST_S * 2
        while len(settled) < len(bodies):
            got = self._read_frame(deadline)
            if got is None or got == "eof":
                break
            entry = self._decode(*got)
            if entry is None:
                continue
            if entry.get("channel") == self.FILL_CHANNEL and entry.get("method") in ("basic.ack", "basic.nack"):
                tag, multiple = entry["fields"]["delivery_tag"], entry["fields"]["multiple"]
                for sequence in range(first, self._fill_sequence + 1):
                    if sequence == tag or (multiple and sequence <= tag):
                        settled.setdefault(sequence, entry["method"].split(".")[1])
                continue
            # A delivery to a consumer races the confirm of the same message in both
            # brokers: what came during the fill is recorded after the fill's own line.
            others.append(entry)
        outcome = " ".join("%d:%s" % (sequence - first + 1, settled.get(sequence, "unconfirmed"))
                           for sequence in range(first, self._fill_sequence + 1))
        self._record("send", {"kind": "raw", "text": "fill %s/%s with %d confirmed messages -> %s" % (
            exchange, routing_key, len(bodies), outcome)})
        for entry in others:
            self._record("recv", entry)
            self._react(entry)

    def _hidden(self, payload, answer):
        self._sendall(wire.frame(wire.FRAME_METHOD, self.FILL_CHANNEL, payload))
        deadline = time.monotonic() + FIRST_S
        while True:
            got = self._read_frame(deadline)
            if got is None or got == "eof":
                return
            entry = self._decode(*got)
            if entry and entry.get("channel") == self.FILL_CHANNEL and entry.get("method") == answer:
                return
            if entry:
                self._record("recv", entry)
                self._react(entry)

    # ---------------------------------------------------------------- shortcuts
    def rpc(self, channel, method, **fields):
        """Sends a method and reads the answer(s)."""
        self.send(channel, method, **fields)
        return self.read()

    def open_channel(self, channel=1):
        return self.rpc(channel, "channel.open")

    def handshake(self, user="guest", password="guest", vhost="/", channel_max=None,
                  frame_max=None, heartbeat=0, capabilities=CLIENT_CAPABILITIES,
                  mechanism="PLAIN", response=None, header=wire.PROTOCOL_HEADER):
        """Protocol header to open-ok; tune-ok echoes the broker's limits unless told."""
        self.raw(header, note="protocol header")
        if not self._expect("connection.start"):
            return False
        properties = {"product": "differential"}
        if capabilities is not None:
            properties["capabilities"] = capabilities
        if response is None:
            response = b"\0" + user.encode() + b"\0" + password.encode()
        self.send(0, "connection.start-ok", client_properties=properties, mechanism=mechanism,
                  response=response, locale="en_US")
        tune = self._expect("connection.tune")
        if not tune:
            return False
        proposed = tune["fields"]
        self.frame_max = frame_max if frame_max else proposed["frame_max"]
        self.send(0, "connection.tune-ok",
                  channel_max=proposed["channel_max"] if channel_max is None else channel_max,
                  frame_max=proposed["frame_max"] if frame_max is None else frame_max,
                  heartbeat=heartbeat)
        self.send(0, "connection.open", virtual_host=vhost)
        return bool(self._expect("connection.open-ok"))

    def _expect(self, method):
        for entry in self.read():
            if entry.get("kind") == "method" and entry["method"] == method:
                return entry
        return None

    def close(self):
        """A clean connection.close from the client, and the broker's answer."""
        self.send(0, "connection.close", reply_code=200, reply_text="bye")
        return self.read()

    def abort(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.ended = True
