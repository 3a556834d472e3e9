"""Small steps shared by the conversation families."""


def opened(s, channels=(1,), **options):
    """A connection with the given channels open."""
    c = s.connect(**options)
    for channel in channels:
        c.open_channel(channel)
    return c


def declare(c, channel, queue, **fields):
    return c.rpc(channel, "queue.declare", queue=queue, **fields)


def get(c, channel, queue, no_ack=True):
    return c.rpc(channel, "basic.get", queue=queue, no_ack=no_ack)


def publish_wait(c, channel, exchange, routing_key, body="m", properties=None, **options):
    """A publish followed by a synchronous no-op on the same channel, so that anything the
    broker says about the publish (basic.return, a channel error) has arrived in order."""
    c.publish(channel, exchange, routing_key, body=body, properties=properties, **options)
    c.rpc(channel, "basic.qos", prefetch_count=0)


def fill(c, queue, count, exchange="", properties=None):
    """`count` messages m0, m1, ... confirmed into `queue` (see Connection.fill)."""
    c.fill(exchange, queue, ["m%d" % index for index in range(count)], properties=properties)
