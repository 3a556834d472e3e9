"""Worker process for test_redelivery: takes one task and never acks it.

usage: python worker_hold.py AMQP_URI QUEUE

Consumes QUEUE with manual ack and prefetch 1, prints "RECEIVED <body>" on
stdout for the first delivery, then keeps the task unacked until it is
killed (or gives up by itself after 60 s so it can never outlive a test run).
"""

import sys
import time

import pika


def main():
    uri, queue = sys.argv[1], sys.argv[2]
    conn = pika.BlockingConnection(pika.URLParameters(uri))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1)
    held = []

    def on_message(c, method, props, body):
        held.append(method.delivery_tag)
        print("RECEIVED %s redelivered=%s" % (body.decode(), method.redelivered),
              flush=True)

    ch.basic_consume(queue, on_message, auto_ack=False)
    print("CONSUMING", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    conn.close()
    return 1


if __name__ == "__main__":
    sys.exit(main())
