"""A tiny raw AMQP 0-9-1 client for checks pika cannot make (heartbeats).

It writes the handful of frames needed to open a connection and reads frames
with deadlines; nothing here blocks without a timeout.
"""

import socket
import struct
import time

FRAME_METHOD, FRAME_HEARTBEAT = 1, 8
FRAME_END = 0xCE


def shortstr(s):
    b = s.encode()
    return struct.pack("B", len(b)) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


class RawConnection:
    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send_frame(self, ftype, channel, payload):
        self.sock.sendall(struct.pack(">BHI", ftype, channel, len(payload))
                          + payload + bytes([FRAME_END]))

    def send_method(self, channel, class_id, method_id, args=b""):
        self.send_frame(FRAME_METHOD, channel,
                        struct.pack(">HH", class_id, method_id) + args)

    def read_frame(self, timeout):
        """Next frame as (type, channel, payload); None on EOF.

        Raises socket.timeout if nothing complete arrives in `timeout` s.
        """
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 7:
                ftype, channel, size = struct.unpack(">BHI", self.buf[:7])
                if len(self.buf) >= 8 + size:
                    payload = self.buf[7:7 + size]
                    end = self.buf[7 + size]
                    self.buf = self.buf[8 + size:]
                    if end != FRAME_END:
                        raise AssertionError("bad frame end byte %r" % end)
                    return ftype, channel, payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no frame within %.1f s" % timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk

    def expect_method(self, class_id, method_id, timeout=5.0):
        while True:
            f = self.read_frame(timeout)
            if f is None:
                raise AssertionError("connection closed while waiting for "
                                     "method %d.%d" % (class_id, method_id))
            ftype, _, payload = f
            if ftype == FRAME_HEARTBEAT:
                continue
            got = struct.unpack(">HH", payload[:4])
            if got != (class_id, method_id):
                raise AssertionError("expected method %d.%d, got %d.%d (%r)"
                                     % (class_id, method_id, got[0], got[1],
                                        payload[4:]))
            return payload[4:]

    def open(self, user, password, vhost, heartbeat):
        """Handshake; returns the server's proposed (channel_max, frame_max,
        heartbeat) from connection.tune."""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect_method(10, 10)  # connection.start
        self.send_method(0, 10, 11,  # connection.start-ok
                         struct.pack(">I", 0) + shortstr("PLAIN")
                         + longstr(b"\0" + user.encode() + b"\0" + password.encode())
                         + shortstr("en_US"))
        tune = self.expect_method(10, 30)  # connection.tune
        channel_max, frame_max, server_hb = struct.unpack(">HIH", tune[:8])
        self.send_method(0, 10, 31,  # connection.tune-ok
                         struct.pack(">HIH", channel_max, frame_max, heartbeat))
        self.send_method(0, 10, 40,  # connection.open
                         shortstr(vhost) + shortstr("") + b"\x00")
        self.expect_method(10, 41)  # connection.open-ok
        return channel_max, frame_max, server_hb
