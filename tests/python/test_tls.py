"""amqps with pika's ssl_options: a broker started with the test certificates
(scripts/make-test-certs.sh, openssl, offline), TLS with and without a client
certificate, and a plain client on the TLS port. It starts brokers of its own,
so it is skipped against SPATEMQ_TEST_URI."""

import os
import socket
import ssl
import subprocess

import pika
import pytest

from conftest import REPO_ROOT, _start_spatemq, _stop_process
from helpers import get_one, uniq

if os.environ.get("SPATEMQ_TEST_URI"):
    pytest.skip("the TLS tests start brokers of their own with the test certificates",
                allow_module_level=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("spatemq-test-certs")
    script = os.path.join(REPO_ROOT, "scripts", "make-test-certs.sh")
    result = subprocess.run(["bash", script, str(directory)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, "make-test-certs.sh failed: %s" % result.stderr
    return directory


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TlsBroker:
    def __init__(self, certs, tmp_path_factory, *extra):
        self.certs = certs
        last = None
        for _ in range(5):
            self.amqps_port = _free_port()
            args = ["--tls-cert", str(certs / "server.pem"),
                    "--tls-key", str(certs / "server.key"),
                    "--tls-ca-cert", str(certs / "ca.pem"),
                    "--amqps-port", str(self.amqps_port), *extra]
            data_dir = tmp_path_factory.mktemp("spatemq-tls-data")
            try:
                self.proc, self.pump, self.port = _start_spatemq(1, data_dir, args)
                return
            except pytest.fail.Exception as failure:  # the port was taken meanwhile
                last = failure
        raise last

    def stop(self):
        code, killed = _stop_process(self.proc)
        self.pump.join(2)
        assert not killed and code == 0, "broker exit %s; output:\n%s" % (code, self.pump.text())

    def context(self, client_cert=None):
        context = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        if client_cert:
            context.load_cert_chain(str(self.certs / (client_cert + ".pem")),
                                    str(self.certs / (client_cert + ".key")))
        return context

    def params(self, context, host="localhost"):
        return pika.ConnectionParameters(
            host="127.0.0.1", port=self.amqps_port,
            credentials=pika.PlainCredentials("guest", "guest"),
            ssl_options=pika.SSLOptions(context, server_hostname=host),
            socket_timeout=5, stack_timeout=10, connection_attempts=1)


@pytest.fixture(scope="module")
def tls_broker(certs, tmp_path_factory):
    broker = TlsBroker(certs, tmp_path_factory)
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def strict_broker(certs, tmp_path_factory):
    broker = TlsBroker(certs, tmp_path_factory,
                       "--tls-verify-peer", "--tls-fail-if-no-peer-cert")
    yield broker
    broker.stop()


def _round_trip(connection):
    channel = connection.channel()
    queue = uniq("tls")
    channel.queue_declare(queue)
    body = os.urandom(200_000)
    channel.basic_publish("", queue, body)
    _, _, got = get_one(channel, queue, auto_ack=True)
    assert got == body
    channel.queue_delete(queue)


def test_pika_ssl_options_publish_and_get(tls_broker):
    connection = pika.BlockingConnection(tls_broker.params(tls_broker.context()))
    try:
        _round_trip(connection)
    finally:
        connection.close()


def test_pika_checks_the_broker_name(tls_broker):
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        pika.BlockingConnection(tls_broker.params(tls_broker.context(),
                                                  host="not-the-broker.example"))


def test_pika_with_a_client_certificate_when_one_is_required(strict_broker):
    connection = pika.BlockingConnection(
        strict_broker.params(strict_broker.context(client_cert="client")))
    try:
        _round_trip(connection)
    finally:
        connection.close()


def test_pika_without_a_client_certificate_is_refused_when_one_is_required(strict_broker):
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(strict_broker.params(strict_broker.context()))
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(
            strict_broker.params(strict_broker.context(client_cert="stranger")))


def test_plain_pika_on_the_tls_port_fails_and_the_plain_port_works(tls_broker):
    plain_on_tls = pika.ConnectionParameters(
        host="127.0.0.1", port=tls_broker.amqps_port, socket_timeout=5,
        stack_timeout=10, connection_attempts=1)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(plain_on_tls)
    plain = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=tls_broker.port, socket_timeout=5))
    try:
        _round_trip(plain)
    finally:
        plain.close()
