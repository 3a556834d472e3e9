"""The Celery application the Celery tests run: a worker started with
`celery -A celery_app worker` reads its broker URI and queue from the
environment (SPATEMQ_CELERY_BROKER, SPATEMQ_CELERY_QUEUE); the test process
builds the same app with make_app().
"""

import os
import time

from celery import Celery


def make_app(broker_uri, queue):
    app = Celery("spatemq_celery_test", broker=broker_uri, backend="rpc://")
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name="spatemq.add")
    def add(x, y):
        return x + y

    @app.task(name="spatemq.slow_mark")
    def slow_mark(path, seconds):
        # Every start is recorded, so the test sees a task run twice.
        with open(path, "a") as marks:
            marks.write("start\n")
        time.sleep(seconds)
        with open(path, "a") as marks:
            marks.write("done\n")
        return "done"

    return app


app = make_app(os.environ.get("SPATEMQ_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
               os.environ.get("SPATEMQ_CELERY_QUEUE", "celery"))
