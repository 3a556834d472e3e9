"""Heartbeats: an idle connection stays up; a silent peer is dropped."""

import socket
import time

from amqp_raw import FRAME_HEARTBEAT, RawConnection
from helpers import uniq


def test_idle_connection_with_heartbeat_stays_open(broker):
    conn = broker.connect(heartbeat=2)
    try:
        ch = conn.channel()
        deadline = time.monotonic() + 6.5
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.5)
            assert conn.is_open
        # Still fully usable after the idle period.
        q = ch.queue_declare(uniq("hb"), exclusive=True).method.queue
        ch.basic_publish("", q, b"still here")
        deadline = time.monotonic() + 5
        m = None
        while m is None and time.monotonic() < deadline:
            m, _, body = ch.basic_get(q, auto_ack=True)
        assert m is not None and body == b"still here"
    finally:
        if conn.is_open:
            conn.close()


def test_server_sends_heartbeats_and_drops_silent_client(broker):
    raw = RawConnection(broker.host, broker.port)
    try:
        _, frame_max, server_hb = raw.open(broker.user, broker.password,
                                           broker.vhost, heartbeat=1)
        assert frame_max >= 4096
        assert server_hb > 0, "server should propose a heartbeat interval"
        start = time.monotonic()
        heartbeats = 0
        closed_at = None
        # We never send anything after open: the broker must send heartbeats
        # (about one per second) and then give up on us.
        while time.monotonic() - start < 15:
            try:
                f = raw.read_frame(timeout=1.5)
            except socket.timeout:
                continue
            if f is None:
                closed_at = time.monotonic() - start
                break
            ftype, channel, payload = f
            if ftype == FRAME_HEARTBEAT:
                assert channel == 0 and payload == b""
                heartbeats += 1
        assert heartbeats >= 1, "no heartbeat frame from the server"
        assert closed_at is not None, \
            "server kept a silent heartbeat=1 client for 15 s"
        assert closed_at >= 1.0, "closed too early (%.2f s)" % closed_at
    finally:
        raw.close()
