"""A pika client on another host: a network namespace this test makes, joined to the machine
by a veth pair with two private addresses (removed at the end). guest is refused there, as
RabbitMQ refuses it outside loopback; a user made with `spatemq ctl` logs in and works.
Needs root, as the test suite and CI run."""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT, _start_spatemq, _stop_process

REMOTE_CLIENT = textwrap.dedent("""
    import sys, pika
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    params = pika.ConnectionParameters(host=host, port=port, socket_timeout=5,
                                       credentials=pika.PlainCredentials(user, password))
    try:
        connection = pika.BlockingConnection(params)
    except pika.exceptions.ProbableAuthenticationError as error:
        print("REFUSED", error)
        sys.exit(3)
    channel = connection.channel()
    channel.queue_declare("remote-pika")
    channel.basic_publish("", "remote-pika", b"from afar")
    method, _, body = channel.basic_get("remote-pika", auto_ack=True)
    print("GOT", body.decode())
    connection.close()
""")


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.fail("this test makes a network namespace: run it as root (CI does)", pytrace=False)
    n = os.getpid() % 100000
    name, host_link, remote_link = "spatemq-py-%d" % n, "spp%dh" % n, "spp%dr" % n
    subnet = 1 + (os.getpid() * 11) % 250
    host_ip, remote_ip = "10.232.%d.1" % subnet, "10.232.%d.2" % subnet
    try:
        ip("netns", "add", name)
        ip("link", "add", host_link, "type", "veth", "peer", "name", remote_link)
        ip("link", "set", remote_link, "netns", name)
        ip("addr", "add", host_ip + "/24", "dev", host_link)
        ip("link", "set", host_link, "up")
        ip("-n", name, "addr", "add", remote_ip + "/24", "dev", remote_link)
        ip("-n", name, "link", "set", remote_link, "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield name, host_ip, remote_ip
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", host_link], capture_output=True)


def remote(netns_name, host, port, user, password):
    return subprocess.run(
        ["ip", "netns", "exec", netns_name, sys.executable, "-c", REMOTE_CLIENT,
         host, str(port), user, password],
        capture_output=True, text=True, timeout=60)


def ctl(data_dir, *args):
    binary = os.environ.get("SPATEMQ_BIN") or os.path.join(REPO_ROOT, "target", "release", "spatemq")
    done = subprocess.run([binary, "ctl", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_guest_is_refused_from_another_host_and_a_ctl_user_logs_in(netns, tmp_path):
    name, host_ip, remote_ip = netns
    proc, pump, port = _start_spatemq(2, tmp_path, ["--bind", host_ip])
    try:
        refused = remote(name, host_ip, port, "guest", "guest")
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert "ACCESS_REFUSED - Login was refused" in refused.stdout

        ctl(tmp_path, "add_user", "worker", "w0rker")
        ctl(tmp_path, "set_permissions", "worker", ".*", ".*", ".*")
        worked = remote(name, host_ip, port, "worker", "w0rker")
        assert worked.returncode == 0, worked.stdout + worked.stderr
        assert "GOT from afar" in worked.stdout
        assert remote_ip in pump.text(), "the broker logged the remote address of the refused guest"
    finally:
        _stop_process(proc)
        pump.join(2)
