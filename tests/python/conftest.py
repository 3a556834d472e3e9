"""Broker fixture for the SpateMQ Python test suite.

If SPATEMQ_TEST_URI is set (e.g. amqp://guest:guest@127.0.0.1:5673/), the
tests run once against that external broker.  Otherwise the suite starts
target/release/spatemq (or $SPATEMQ_BIN) once per shard count in
SPATEMQ_TEST_SHARDS (default "1,3") on a free port and stops it with SIGTERM
at the end.
"""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import pika
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LISTEN_RE = re.compile(r"AMQP listening on 127\.0\.0\.1:(\d+)")
STARTUP_TIMEOUT = 15.0
STOP_GRACE = 5.0


def _broker_params():
    if os.environ.get("SPATEMQ_TEST_URI"):
        return ["external"]
    raw = os.environ.get("SPATEMQ_TEST_SHARDS", "1,3")
    shards = [int(s) for s in raw.replace(" ", "").split(",") if s]
    if not shards:
        raise pytest.UsageError("SPATEMQ_TEST_SHARDS is empty")
    return shards


class Broker:
    """Where the broker under test listens, plus connection helpers."""

    def __init__(self, host, port, user="guest", password="guest", vhost="/",
                 shards=None, process=None):
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.vhost = vhost
        self.shards = shards
        self.process = process  # None for an external broker

    @property
    def external(self):
        return self.process is None

    @property
    def uri(self):
        return "amqp://%s:%s@%s:%d/%s" % (
            urllib.parse.quote(self.user, safe=""),
            urllib.parse.quote(self.password, safe=""),
            self.host, self.port,
            urllib.parse.quote(self.vhost, safe=""))

    def params(self, **kw):
        kw.setdefault("connection_attempts", 3)
        kw.setdefault("retry_delay", 0.5)
        kw.setdefault("socket_timeout", 5)
        kw.setdefault("blocked_connection_timeout", 10)
        kw.setdefault("stack_timeout", 10)
        return pika.ConnectionParameters(
            host=self.host, port=self.port, virtual_host=self.vhost,
            credentials=pika.PlainCredentials(self.user, self.password), **kw)

    def connect(self, **kw):
        return pika.BlockingConnection(self.params(**kw))

    def __repr__(self):
        return "Broker(%s:%d, shards=%s)" % (self.host, self.port, self.shards)


def _external_broker():
    uri = os.environ["SPATEMQ_TEST_URI"]
    u = urllib.parse.urlparse(uri)
    if u.scheme != "amqp":
        raise pytest.UsageError("SPATEMQ_TEST_URI must be amqp://...: %r" % uri)
    vhost = urllib.parse.unquote(u.path[1:]) if len(u.path) > 1 else "/"
    return Broker(u.hostname or "127.0.0.1", u.port or 5672,
                  urllib.parse.unquote(u.username or "guest"),
                  urllib.parse.unquote(u.password or "guest"), vhost)


class _OutputPump(threading.Thread):
    """Drains the broker's stdout so it can never block on a full pipe."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.lines = []
        self.q = queue.Queue()

    def run(self):
        for raw in iter(self.stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            self.q.put(line)
        self.q.put(None)

    def text(self):
        return "".join(self.lines[-200:])


def _start_spatemq(shards, data_dir, extra_args=()):
    binary = os.environ.get("SPATEMQ_BIN") or os.path.join(
        REPO_ROOT, "target", "release", "spatemq")
    if not os.access(binary, os.X_OK):
        pytest.fail("broker binary %s not found or not executable; build it "
                    "with `cargo build --release` or set SPATEMQ_BIN" % binary,
                    pytrace=False)
    cmd = [binary, "--amqp-port", "0", "--bind", "127.0.0.1",
           "--data-dir", str(data_dir), "--shards", str(shards), *extra_args]
    # No management or Prometheus listener unless a test asks for one (a flag in extra_args
    # wins over the environment): the default ports would collide between brokers.
    env = dict(os.environ, SPATEMQ_MANAGEMENT_PORT="0", SPATEMQ_PROMETHEUS_PORT="0")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
    pump = _OutputPump(proc.stdout)
    pump.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    port = None
    exited = False
    while port is None:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            line = pump.q.get(timeout=left)
        except queue.Empty:
            break
        if line is None:  # EOF: the broker exited
            exited = proc.wait(5) is not None
            break
        m = LISTEN_RE.search(line)
        if m:
            port = int(m.group(1))
    if port is None:
        _stop_process(proc)
        pump.join(2)
        if exited:
            why = "exited with code %s before printing" % proc.returncode
        else:
            why = "did not print within %.0f s" % STARTUP_TIMEOUT
        pytest.fail("spatemq (%s) %s 'AMQP listening on 127.0.0.1:PORT'; "
                    "output:\n%s" % (" ".join(cmd), why, pump.text()),
                    pytrace=False)
    return proc, pump, port


def _kill_group(proc):
    """SIGKILL whatever is left in the broker's process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_process(proc):
    """SIGTERM, then SIGKILL after STOP_GRACE. Returns (exit code, killed)."""
    if proc.poll() is not None:
        _kill_group(proc)
        return proc.returncode, False
    proc.send_signal(signal.SIGTERM)
    killed = False
    try:
        code = proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        code = proc.wait(10)
        killed = True
    _kill_group(proc)  # leftovers, if the broker ever spawns children
    return code, killed


@pytest.fixture(scope="session", params=_broker_params(),
                ids=lambda p: "external" if p == "external" else "shards%d" % p)
def broker(request, tmp_path_factory):
    if request.param == "external":
        yield _external_broker()
        return
    shards = request.param
    data_dir = tmp_path_factory.mktemp("spatemq-data-shards%d-" % shards)
    proc, pump, port = _start_spatemq(shards, data_dir)
    b = Broker("127.0.0.1", port, shards=shards, process=proc)
    yield b
    died_early = proc.poll() is not None
    code, killed = _stop_process(proc)
    pump.join(2)
    if died_early:
        pytest.fail("spatemq (shards=%d) exited on its own during the tests "
                    "with code %s; output:\n%s" % (shards, code, pump.text()),
                    pytrace=False)
    if killed:
        pytest.fail("spatemq (shards=%d) ignored SIGTERM for %.0f s and was "
                    "killed; output:\n%s" % (shards, STOP_GRACE, pump.text()),
                    pytrace=False)
    if code != 0:
        pytest.fail("spatemq (shards=%d) exited with code %s after SIGTERM "
                    "(expected a clean exit 0); output:\n%s"
                    % (shards, code, pump.text()), pytrace=False)


@pytest.fixture
def connection(broker):
    conn = broker.connect()
    yield conn
    if conn.is_open:
        try:
            conn.close()
        except Exception:
            pass


@pytest.fixture
def channel(connection):
    return connection.channel()


@pytest.fixture
def open_connections(broker):
    """Factory for extra connections that are closed at teardown."""
    conns = []

    def make(**kw):
        c = broker.connect(**kw)
        conns.append(c)
        return c

    yield make
    for c in conns:
        if c.is_open:
            try:
                c.close()
            except Exception:
                pass
