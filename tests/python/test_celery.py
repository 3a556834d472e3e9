"""Celery (kombu/py-amqp) workers against the broker: a task's result comes
back through the rpc:// backend, and with task_acks_late a task whose worker
is killed mid-task (SIGKILL) is redelivered to another worker and redone, as
RabbitMQ requeues the unacked message of a closed connection. Celery declares
its control queues with x-expires and x-message-ttl, which the broker must
accept and act on.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from celery_app import make_app
from helpers import uniq

HERE = os.path.dirname(os.path.abspath(__file__))
READY_TIMEOUT = 60.0


def start_worker(broker, queue, name, log_path):
    env = dict(os.environ, SPATEMQ_CELERY_BROKER=broker.uri, SPATEMQ_CELERY_QUEUE=queue)
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool=solo",
         "--loglevel=INFO", "--without-mingle", "--without-gossip",
         "-n", "%s@localhost" % name, "-Q", queue],
        cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        with open(log_path) as text:
            if " ready." in text.read():
                return proc
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    stop_worker(proc, signal.SIGKILL)
    with open(log_path) as text:
        pytest.fail("celery worker %s did not start:\n%s" % (name, text.read()[-4000:]))


def stop_worker(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def wait_for_line(path, line, count, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as marks:
                if marks.read().splitlines().count(line) >= count:
                    return
        time.sleep(0.1)
    pytest.fail("%s: fewer than %d %r lines after %s s" % (path, count, line, timeout))


@pytest.mark.timeout(180)
def test_celery_task_returns_its_result(broker, tmp_path):
    queue = uniq("celery")
    app = make_app(broker.uri, queue)
    worker = start_worker(broker, queue, uniq("w"), str(tmp_path / "worker.log"))
    try:
        result = app.send_task("spatemq.add", args=(2, 3), queue=queue)
        assert result.get(timeout=30) == 5
    finally:
        stop_worker(worker)
        app.close()


@pytest.mark.timeout(240)
def test_celery_task_of_killed_worker_is_redone(broker, tmp_path):
    queue = uniq("celery")
    marks = str(tmp_path / "marks.txt")
    app = make_app(broker.uri, queue)
    first = start_worker(broker, queue, uniq("w1"), str(tmp_path / "worker1.log"))
    second = None
    try:
        result = app.send_task("spatemq.slow_mark", args=(marks, 3), queue=queue)
        wait_for_line(marks, "start", 1, 30)
        stop_worker(first, signal.SIGKILL)
        with open(marks) as text:
            assert "done" not in text.read(), "the first worker finished before it was killed"
        second = start_worker(broker, queue, uniq("w2"), str(tmp_path / "worker2.log"))
        assert result.get(timeout=60) == "done"
        with open(marks) as text:
            lines = text.read().splitlines()
        assert lines.count("start") == 2, lines
        assert lines.count("done") == 1, lines
    finally:
        stop_worker(first, signal.SIGKILL)
        if second is not None:
            stop_worker(second)
        app.close()
