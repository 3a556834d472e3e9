"""RabbitMQ's own rabbitmqadmin (the Debian package's /usr/bin/rabbitmqadmin, unchanged)
against SpateMQ's management API: list/declare/delete of queues, exchanges, bindings,
users, vhosts, permissions, policies and operator policies; list connections, channels,
consumers and nodes; show overview; publish and get; purge; close connection; export and import.

The same scenario runs against a throw-away RabbitMQ 3.10 node (scripts/rabbitmq.sh with
its management plugin) when the package is installed, and every step's output must be the
same apart from what names the node, the versions, password hashes, ports and rates.
"""

import json
import os
import random
import shutil
import socket
import subprocess
import time

import pika
import pytest

from conftest import REPO_ROOT, _start_spatemq, _stop_process

RABBITMQADMIN = "/usr/bin/rabbitmqadmin"
RABBITMQ_SH = os.path.join(REPO_ROOT, "scripts", "rabbitmq.sh")
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"

pytestmark = pytest.mark.skipif(
    not os.access(RABBITMQADMIN, os.X_OK),
    reason="rabbitmqadmin is not installed (scripts/test.sh installs RabbitMQ's Debian package)")


def _free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _spare_port(with_distribution=False):
    """A free loopback port; with_distribution: whose +20000 is free too (Erlang)."""
    while True:
        port = random.randint(20000, 40000)
        if _free(port) and (not with_distribution or _free(port + 20000)):
            return port


class Admin:
    """rabbitmqadmin against one broker's management port."""

    def __init__(self, name, amqp_port, http_port):
        self.name = name
        self.amqp_port = amqp_port
        self.http_port = http_port

    def run(self, *args, user="guest", password="guest", check=True):
        command = [RABBITMQADMIN, "-H", "127.0.0.1", "-P", str(self.http_port),
                   "-u", user, "-p", password, "-f", "tsv", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            pytest.fail("%s: rabbitmqadmin %s failed (%d):\n%s%s"
                        % (self.name, " ".join(args), done.returncode, done.stdout, done.stderr),
                        pytrace=False)
        return done

    def out(self, *args, **kw):
        return self.run(*args, **kw).stdout

    def rows(self, *args):
        """A tsv listing as a list of dicts (the header line names the columns)."""
        lines = self.out(*args).splitlines()
        if not lines or lines == ["No items"]:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"))) for line in lines[1:]]

    def wait_rows(self, expected, *args, seconds=15):
        """RabbitMQ's counts lag behind by its statistics interval: poll until `expected`."""
        deadline = time.monotonic() + seconds
        rows = self.rows(*args)
        while rows != expected and time.monotonic() < deadline:
            time.sleep(0.2)
            rows = self.rows(*args)
        return rows

    def amqp(self):
        return pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", self.amqp_port, credentials=pika.PlainCredentials("guest", "guest")))


@pytest.fixture(scope="module")
def spatemq(tmp_path_factory):
    http_port = _spare_port()
    data_dir = tmp_path_factory.mktemp("spatemq-management")
    proc, pump, port = _start_spatemq(
        2, data_dir, ("--management-port", str(http_port), "--management-bind", "127.0.0.1"))
    yield Admin("spatemq", port, http_port)
    code, killed = _stop_process(proc)
    pump.join(2)
    assert (code, killed) == (0, False), pump.text()


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory):
    if not os.access(RABBITMQ_SERVER, os.X_OK):
        pytest.skip("rabbitmq-server is not installed: no comparison with RabbitMQ")
    port = _spare_port(with_distribution=True)
    http_port = _spare_port()
    state = str(tmp_path_factory.mktemp("rabbitmq-management"))
    env = dict(os.environ, RABBITMQ_SH_MANAGEMENT_PORT=str(http_port))
    started = subprocess.run([RABBITMQ_SH, "start", str(port), state], env=env,
                             capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        pytest.fail("RabbitMQ did not start:\n%s%s" % (started.stdout, started.stderr),
                    pytrace=False)
    admin = Admin("rabbitmq", port, http_port)
    deadline = time.monotonic() + 60
    while admin.run("show", "overview", check=False).returncode != 0:
        if time.monotonic() > deadline:
            subprocess.run([RABBITMQ_SH, "stop", state], capture_output=True)
            pytest.fail("RabbitMQ's management API did not answer within 60 s", pytrace=False)
        time.sleep(0.5)
    yield admin
    subprocess.run([RABBITMQ_SH, "stop", state], capture_output=True, timeout=60)
    shutil.rmtree(state, ignore_errors=True)


def scenario(admin, tmp_path):
    """Every rabbitmqadmin command of the issue, in order; the (step, output) pairs to compare.
    Outputs are tsv with the columns named, so they hold no node names, versions or rates."""
    steps = []

    def step(label, output):
        steps.append((label, output))

    step("declare vhost", admin.out("declare", "vhost", "name=v1"))
    step("declare user", admin.out("declare", "user", "name=u1", "password=p1", "tags=monitoring"))
    step("declare permission", admin.out("declare", "permission", "vhost=v1", "user=u1",
                                         "configure=^q", "write=.*", "read=.*"))
    step("list users", admin.rows("list", "users", "name", "tags"))
    step("list vhosts", admin.rows("list", "vhosts", "name"))
    step("list permissions", admin.rows("list", "permissions", "vhost", "user", "configure", "write", "read"))
    step("declare queue", admin.out("declare", "queue", "name=q1", "durable=true"))
    step("declare queue with arguments", admin.out(
        "declare", "queue", "name=q2", "durable=false", 'arguments={"x-max-length": 10}'))
    step("declare exchange", admin.out("declare", "exchange", "name=e1", "type=topic"))
    step("declare binding", admin.out("declare", "binding", "source=e1", "destination=q1",
                                      "routing_key=a.*"))
    step("declare e2e binding", admin.out("declare", "binding", "source=e1",
                                          "destination_type=exchange", "destination=amq.fanout",
                                          "routing_key=x"))
    step("list queues", admin.rows("list", "queues", "name", "durable", "auto_delete",
                                   "arguments.x-max-length"))
    step("list exchanges", admin.rows("list", "exchanges", "name", "type", "durable", "internal"))
    step("list bindings", admin.rows("list", "bindings", "source", "destination",
                                     "destination_type", "routing_key", "properties_key"))
    step("publish", admin.out("publish", "exchange=e1", "routing_key=a.b", "payload=hello"))
    step("publish to amq.default", admin.out("publish", "routing_key=q2", "payload=x"))
    step("publish unroutable", admin.out("publish", "routing_key=nowhere", "payload=x"))
    step("message counts", admin.wait_rows(
        [{"name": "q1", "messages": "1"}, {"name": "q2", "messages": "1"}],
        "list", "queues", "name", "messages"))
    step("get requeue", admin.out("get", "queue=q1", "ackmode=ack_requeue_true"))
    step("get", admin.out("get", "queue=q1", "ackmode=ack_requeue_false"))
    step("get empty", admin.out("get", "queue=q1", "ackmode=ack_requeue_false"))
    step("purge", admin.out("purge", "queue", "name=q2"))
    step("counts after purge", admin.wait_rows(
        [{"name": "q1", "messages": "0"}, {"name": "q2", "messages": "0"}],
        "list", "queues", "name", "messages"))
    step("declare policy", admin.out("declare", "policy", "name=limit", "pattern=^q2$",
                                     'definition={"max-length": 1}', "priority=1", "apply-to=queues"))
    step("declare operator policy", admin.out("declare", "operator_policy", "name=cap", "pattern=^q",
                                              'definition={"message-ttl": 600000}'))
    step("list policies", admin.rows("list", "policies", "vhost", "name", "pattern", "apply-to",
                                     "definition", "priority"))
    step("list operator policies", admin.rows("list", "operator_policies", "vhost", "name", "pattern",
                                              "apply-to", "definition", "priority"))
    for _ in range(3):
        admin.out("publish", "routing_key=q2", "payload=x")
    step("trimmed by the policy", admin.wait_rows(
        [{"name": "q1", "messages": "0"}, {"name": "q2", "messages": "1"}],
        "list", "queues", "name", "messages"))
    bad = admin.run("declare", "policy", "name=bad", "pattern=^q", 'definition={"max-length": "x"}',
                    check=False)
    step("declare bad policy", (bad.returncode, bad.stdout + bad.stderr))
    step("delete policy", admin.out("delete", "policy", "name=limit"))
    step("delete operator policy", admin.out("delete", "operator_policy", "name=cap"))
    missing = admin.run("delete", "policy", "name=limit", check=False)
    step("delete missing policy", (missing.returncode, missing.stdout + missing.stderr))
    step("no policies", (admin.rows("list", "policies", "name"),
                         admin.rows("list", "operator_policies", "name")))
    step("purge trimmed", admin.out("purge", "queue", "name=q2"))
    step("list nodes", admin.rows("list", "nodes", "type", "running"))
    step("show overview", [sorted(row) for row in admin.rows("show", "overview")])

    connection = admin.amqp()
    channel = connection.channel()
    channel.basic_qos(prefetch_count=7)
    channel.basic_consume("q1", lambda *a: None, consumer_tag="ctag-1")
    step("list connections", admin.wait_rows(
        [{"user": "guest", "channels": "1", "state": "running"}],
        "list", "connections", "user", "channels", "state"))
    step("list channels", admin.wait_rows(
        [{"user": "guest", "consumer_count": "1", "prefetch_count": "7"}],
        "list", "channels", "user", "consumer_count", "prefetch_count"))
    step("list consumers", admin.rows("list", "consumers", "consumer_tag", "ack_required",
                                      "prefetch_count", "exclusive"))
    name = admin.rows("list", "connections", "name")[0]["name"]
    step("close connection", admin.out("close", "connection", "name=" + name))
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
    step("no connections", admin.wait_rows([], "list", "connections", "name"))

    export = str(tmp_path / ("%s-definitions.json" % admin.name))
    step("export", admin.out("export", export).replace(export, "FILE"))
    with open(export) as f:
        exported = json.load(f)
    step("exported queues", sorted(queue["name"] for queue in exported["queues"]))
    step("delete binding", admin.out("delete", "binding", "source=e1",
                                     "destination_type=queue", "destination=q1",
                                     "properties_key=a.*"))
    step("delete queue", admin.out("delete", "queue", "name=q1"))
    step("import", admin.out("import", export).replace(export, "FILE"))
    step("queues after import", admin.wait_rows(
        [{"name": "q1"}, {"name": "q2"}], "list", "queues", "name"))
    step("bindings after import", admin.rows("list", "bindings", "source", "destination", "routing_key"))
    step("delete exchange", admin.out("delete", "exchange", "name=e1"))
    for queue in ("q1", "q2"):
        step("delete " + queue, admin.out("delete", "queue", "name=" + queue))
    step("delete permission", admin.out("delete", "permission", "vhost=v1", "user=u1"))
    step("delete user", admin.out("delete", "user", "name=u1"))
    step("delete vhost", admin.out("delete", "vhost", "name=v1"))
    step("final queues", admin.rows("list", "queues", "name"))
    step("final users", admin.rows("list", "users", "name"))
    step("final vhosts", admin.rows("list", "vhosts", "name"))
    return steps


def test_rabbitmqadmin_drives_spatemq(spatemq, tmp_path):
    steps = dict(scenario(spatemq, tmp_path))
    assert steps["declare queue"] == "queue declared\n"
    assert {"name": "u1", "tags": "monitoring"} in steps["list users"]
    assert {"vhost": "v1", "user": "u1", "configure": "^q", "write": ".*", "read": ".*"} \
        in steps["list permissions"]
    assert {"name": "q2", "durable": "False", "auto_delete": "False",
            "arguments.x-max-length": "10"} in steps["list queues"]
    assert {"name": "e1", "type": "topic", "durable": "True", "internal": "False"} \
        in steps["list exchanges"]
    assert {"source": "e1", "destination": "q1", "destination_type": "queue",
            "routing_key": "a.*", "properties_key": "a.%2A"} in steps["list bindings"]
    assert steps["publish"] == "Message published\n"
    assert steps["publish unroutable"] == "Message published but NOT routed\n"
    assert steps["message counts"] == [{"name": "q1", "messages": "1"}, {"name": "q2", "messages": "1"}]
    assert "hello" in steps["get requeue"] and "True" in steps["get"].splitlines()[1]
    assert steps["get empty"] == "No items\n"
    assert steps["declare policy"] == "policy declared\n"
    assert steps["list policies"] == [{"vhost": "/", "name": "limit", "pattern": "^q2$", "apply-to": "queues",
                                       "definition": '{"max-length": 1}', "priority": "1"}]
    assert steps["list operator policies"] == [{"vhost": "/", "name": "cap", "pattern": "^q", "apply-to": "all",
                                                "definition": '{"message-ttl": 600000}', "priority": "0"}]
    assert steps["trimmed by the policy"] == [{"name": "q1", "messages": "0"}, {"name": "q2", "messages": "1"}]
    assert steps["declare bad policy"][0] != 0 and "is not a valid maximum length" in steps["declare bad policy"][1]
    assert steps["delete policy"] == "policy deleted\n"
    assert steps["delete missing policy"][0] != 0 and "Not found" in steps["delete missing policy"][1]
    assert steps["no policies"] == ([], [])
    assert steps["list consumers"] == [{"consumer_tag": "ctag-1", "ack_required": "True",
                                        "prefetch_count": "7", "exclusive": "False"}]
    assert steps["close connection"] == "connection closed\n"
    assert steps["exported queues"] == ["q1", "q2"]
    assert steps["queues after import"] == [{"name": "q1"}, {"name": "q2"}]
    assert steps["final queues"] == [] and steps["final users"] == [{"name": "guest"}]


def test_rabbitmqadmin_output_matches_rabbitmq(spatemq, rabbitmq, tmp_path):
    ours = scenario(spatemq, tmp_path)
    theirs = scenario(rabbitmq, tmp_path)
    different = [(label, mine, reference)
                 for (label, mine), (_, reference) in zip(ours, theirs) if mine != reference]
    assert not different, "\n".join(
        "%s:\n  SpateMQ:  %r\n  RabbitMQ: %r" % row for row in different)


def test_refusals_are_rabbitmqs(spatemq):
    wrong = spatemq.run("list", "queues", password="nope", check=False)
    assert wrong.returncode != 0 and "Access refused" in wrong.stdout + wrong.stderr
    missing = spatemq.run("delete", "queue", "name=nosuch", check=False)
    assert missing.returncode != 0 and "Not found" in missing.stdout + missing.stderr
