"""The six RabbitMQ tutorial scenarios, as behaviour checks."""

import pika

from helpers import (consume_until, get_one, message_count, persistent, pump,
                     uniq, wait_count, wait_until)

END = b"--end--"


def is_end(body):
    return body == END


# 1. Hello world ---------------------------------------------------------------

def test_hello_world(broker, open_connections):
    q = uniq("hello")
    sender = open_connections().channel()
    sender.queue_declare(q, auto_delete=False)
    sender.basic_publish(exchange="", routing_key=q, body=b"Hello World!")

    conn = open_connections()
    ch = conn.channel()
    got = []

    def on_message(c, method, props, body):
        got.append((method, body))

    ch.basic_consume(q, on_message, auto_ack=True)
    wait_until(lambda: got, [conn], what="hello message")
    method, body = got[0]
    assert body == b"Hello World!"
    assert method.routing_key == q
    assert method.exchange == ""
    assert method.redelivered is False
    pump([conn], 0.2)
    assert len(got) == 1
    ch.queue_delete(q)


# 2. Work queues ---------------------------------------------------------------

def test_work_queues_fair_dispatch(broker, open_connections):
    q = uniq("task_queue")
    pub = open_connections().channel()
    pub.queue_declare(q, durable=True)
    pub.confirm_delivery()

    workers = {}
    for name in ("A", "B"):
        conn = open_connections()
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1)
        workers[name] = {"conn": conn, "ch": ch, "received": [],
                         "unacked": [], "max_unacked": 0, "bad_mode": []}

    def make_callback(w, slow):
        def on_message(ch, method, props, body):
            w["received"].append(body)
            if props.delivery_mode != 2:
                w["bad_mode"].append((body, props.delivery_mode))
            if slow and len(w["received"]) == 1:
                # A long task: keep it unacked for a while.
                w["unacked"].append(method.delivery_tag)
                w["max_unacked"] = max(w["max_unacked"], len(w["unacked"]))
                return
            w["max_unacked"] = max(w["max_unacked"], len(w["unacked"]) + 1)
            ch.basic_ack(method.delivery_tag)
        return on_message

    a, b = workers["A"], workers["B"]
    a["ch"].basic_consume(q, make_callback(a, slow=True))
    b["ch"].basic_consume(q, make_callback(b, slow=False))
    conns = [a["conn"], b["conn"]]
    pump(conns, 0.2)  # let both consumers register

    tasks = [("task %d %s" % (i, "." * (i % 3))).encode() for i in range(10)]
    for t in tasks:
        pub.basic_publish("", q, t, properties=persistent())

    def total():
        return len(a["received"]) + len(b["received"])

    wait_until(lambda: total() == 10, conns, what="all 10 tasks dispatched "
               "(A=%r B=%r)" % (a["received"], b["received"]))
    # A still holds its slow task unacked: with prefetch=1 it must not get more.
    pump(conns, 0.5)
    assert len(a["received"]) == 1, "prefetch=1 worker got a 2nd task while busy"
    assert len(b["received"]) == 9
    assert a["max_unacked"] == 1 and b["max_unacked"] == 1
    a["ch"].basic_ack(a["unacked"].pop())
    pump(conns, 0.3)

    processed = a["received"] + b["received"]
    assert sorted(processed) == sorted(tasks), "each task exactly once"
    assert len(processed) == 10
    assert not a["bad_mode"] and not b["bad_mode"], "delivery_mode 2 preserved"
    assert message_count(pub, q) == 0
    pub.queue_delete(q)


def test_work_queues_round_robin_both_busy(broker, open_connections):
    """Two fast workers with prefetch=1 both receive tasks; none is lost."""
    q = uniq("task_queue_rr")
    pub = open_connections().channel()
    pub.queue_declare(q, durable=True)
    pub.confirm_delivery()
    got = {"A": [], "B": []}
    conns = []
    for name in ("A", "B"):
        conn = open_connections()
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1)

        def cb(c, method, props, body, name=name):
            got[name].append(body)
            c.basic_ack(method.delivery_tag)

        ch.basic_consume(q, cb)
        conns.append(conn)
    pump(conns, 0.2)
    tasks = [b"t%d" % i for i in range(10)]
    for t in tasks:
        pub.basic_publish("", q, t, properties=persistent())
    wait_until(lambda: len(got["A"]) + len(got["B"]) == 10, conns,
               what="10 tasks processed")
    pump(conns, 0.2)
    assert sorted(got["A"] + got["B"]) == sorted(tasks)
    assert got["A"] and got["B"], "both workers should get work: %r" % got
    pub.queue_delete(q)


# 3. Publish/subscribe ---------------------------------------------------------

def test_publish_subscribe_fanout(broker, open_connections):
    ex = uniq("logs")
    conn = open_connections()
    ch = conn.channel()
    ch.exchange_declare(ex, exchange_type="fanout", auto_delete=True)

    subs = []
    for _ in range(2):
        c = open_connections()
        sch = c.channel()
        r = sch.queue_declare("", exclusive=True)
        name = r.method.queue
        assert name.startswith("amq.gen-"), name
        sch.queue_bind(name, ex)
        subs.append((c, sch, name))
    assert subs[0][2] != subs[1][2]

    ch.confirm_delivery()
    msgs = [b"log line %d" % i for i in range(5)]
    for m in msgs:
        ch.basic_publish(ex, "ignored-key", m)
    ch.basic_publish(ex, "", END)
    for c, sch, name in subs:
        assert consume_until(c, sch, name, is_end) == msgs
    ch.exchange_delete(ex)


# 4. Routing -------------------------------------------------------------------

def test_routing_direct(broker, open_connections):
    ex = uniq("direct_logs")
    conn = open_connections()
    ch = conn.channel()
    ch.exchange_declare(ex, exchange_type="direct", auto_delete=True)
    q_err = ch.queue_declare("", exclusive=True).method.queue
    q_all = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q_err, ex, routing_key="error")
    for sev in ("info", "warning", "error"):
        ch.queue_bind(q_all, ex, routing_key=sev)
    for q in (q_err, q_all):
        ch.queue_bind(q, ex, routing_key="end")

    ch.confirm_delivery()
    sent = [("info", b"i1"), ("error", b"e1"), ("debug", b"d1"),
            ("warning", b"w1"), ("error", b"e2"), ("info", b"i2"),
            ("Error", b"E-case")]  # routing keys are case sensitive
    for key, body in sent:
        ch.basic_publish(ex, key, body)
    ch.basic_publish(ex, "end", END)

    assert consume_until(conn, ch, q_err, is_end) == [b"e1", b"e2"]
    assert consume_until(conn, ch, q_all, is_end) == [b"i1", b"e1", b"w1",
                                                      b"e2", b"i2"]


def test_routing_unbind(broker, open_connections):
    ex = uniq("direct_unbind")
    conn = open_connections()
    ch = conn.channel()
    ch.exchange_declare(ex, exchange_type="direct", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, ex, routing_key="a")
    ch.queue_bind(q, ex, routing_key="end")
    ch.confirm_delivery()
    ch.basic_publish(ex, "a", b"1")
    ch.queue_unbind(q, ex, routing_key="a")
    ch.basic_publish(ex, "a", b"2")
    ch.basic_publish(ex, "end", END)
    assert consume_until(conn, ch, q, is_end) == [b"1"]


# 5. Topics --------------------------------------------------------------------

TOPIC_TABLE = [
    # routing key, goes to Q1 (*.orange.*), goes to Q2 (*.*.rabbit, lazy.#)
    ("quick.orange.rabbit", True, True),
    ("lazy.orange.elephant", True, True),
    ("quick.orange.fox", True, False),
    ("lazy.brown.fox", False, True),
    ("lazy.pink.rabbit", False, True),  # matches both Q2 bindings: once
    ("quick.brown.fox", False, False),
    ("orange", False, False),
    ("quick.orange.male.rabbit", False, False),
    ("lazy.orange.male.rabbit", False, True),
]


def test_topics(broker, open_connections):
    ex = uniq("topic_logs")
    conn = open_connections()
    ch = conn.channel()
    ch.exchange_declare(ex, exchange_type="topic", auto_delete=True)
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q1, ex, routing_key="*.orange.*")
    ch.queue_bind(q2, ex, routing_key="*.*.rabbit")
    ch.queue_bind(q2, ex, routing_key="lazy.#")

    ch.confirm_delivery()
    for key, _, _ in TOPIC_TABLE:
        ch.basic_publish(ex, key, key.encode())
    # "end.orange.rabbit" reaches Q1 via *.orange.* and Q2 via *.*.rabbit.
    ch.basic_publish(ex, "end.orange.rabbit", END)

    want1 = [k.encode() for k, to1, _ in TOPIC_TABLE if to1]
    want2 = [k.encode() for k, _, to2 in TOPIC_TABLE if to2]
    assert consume_until(conn, ch, q1, is_end) == want1
    assert consume_until(conn, ch, q2, is_end) == want2


def test_topic_hash_and_star_edge_cases(broker, open_connections):
    ex = uniq("topic_edge")
    conn = open_connections()
    ch = conn.channel()
    ch.exchange_declare(ex, exchange_type="topic", auto_delete=True)
    patterns = {"#": None, "a.#": None, "#.z": None, "a.*.z": None,
                "a.#.z": None, "*": None}
    for p in patterns:
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, ex, routing_key=p)
        ch.queue_bind(q, ex, routing_key="end.marker.key.that.nobody.else.uses")
        patterns[p] = q
    # Every queue also gets END via its explicit binding ("#" matches it
    # twice but a message reaches a queue at most once).
    keys = ["a", "a.z", "a.b.z", "a.b.c.z", "z", "b", "", "a.b"]
    ch.confirm_delivery()
    for k in keys:
        ch.basic_publish(ex, k, k.encode() or b"<empty>")
    ch.basic_publish(ex, "end.marker.key.that.nobody.else.uses", END)
    expected = {
        "#": ["a", "a.z", "a.b.z", "a.b.c.z", "z", "b", "<empty>", "a.b"],
        "a.#": ["a", "a.z", "a.b.z", "a.b.c.z", "a.b"],
        "#.z": ["a.z", "a.b.z", "a.b.c.z", "z"],
        "a.*.z": ["a.b.z"],
        "a.#.z": ["a.z", "a.b.z", "a.b.c.z"],
        "*": ["a", "z", "b"],
    }
    for p, q in patterns.items():
        got = consume_until(conn, ch, q, is_end)
        assert [g.decode() for g in got] == expected[p], "pattern %r" % p


# 6. RPC -----------------------------------------------------------------------

def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def test_rpc(broker, open_connections):
    rpc_queue = uniq("rpc_queue")

    server_conn = open_connections()
    sch = server_conn.channel()
    sch.queue_declare(rpc_queue)
    sch.basic_qos(prefetch_count=1)

    def on_request(ch, method, props, body):
        n = int(body)
        ch.basic_publish(exchange="", routing_key=props.reply_to,
                         properties=pika.BasicProperties(
                             correlation_id=props.correlation_id),
                         body=str(fib(n)).encode())
        ch.basic_ack(method.delivery_tag)

    sch.basic_consume(rpc_queue, on_request)

    client_conn = open_connections()
    cch = client_conn.channel()
    callback_queue = cch.queue_declare("", exclusive=True).method.queue
    assert callback_queue.startswith("amq.gen-")
    replies = {}

    def on_response(ch, method, props, body):
        replies[props.correlation_id] = body

    cch.basic_consume(callback_queue, on_response, auto_ack=True)

    requests = {}
    for n in (10, 1, 0, 20, 30, 7):
        corr = uniq("corr")
        requests[corr] = n
        cch.basic_publish("", rpc_queue, str(n).encode(),
                          properties=pika.BasicProperties(
                              reply_to=callback_queue, correlation_id=corr))

    conns = [server_conn, client_conn]
    wait_until(lambda: len(replies) == len(requests), conns,
               what="all RPC replies (got %r)" % replies)
    for corr, n in requests.items():
        assert int(replies[corr]) == fib(n)
    assert int(replies[[c for c, n in requests.items() if n == 10][0]]) == 55
    sch.queue_delete(rpc_queue)


def test_rpc_reply_to_and_properties_roundtrip(broker, channel):
    """All basic properties survive the broker unchanged."""
    q = channel.queue_declare("", exclusive=True).method.queue
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8",
        headers={"x-str": "v", "x-int": 42, "x-bool": True,
                 "x-list": [1, "two"], "x-nested": {"k": "v"}},
        delivery_mode=2, priority=3, correlation_id="corr-1",
        reply_to="reply-q", expiration="60000", message_id="mid-1",
        timestamp=1700000000, type="t", user_id=broker.user, app_id="tests")
    channel.basic_publish("", q, b'{"a": 1}', properties=props)
    method, got, body = get_one(channel, q, auto_ack=True)
    assert body == b'{"a": 1}'
    for field in ("content_type", "content_encoding", "delivery_mode",
                  "priority", "correlation_id", "reply_to", "expiration",
                  "message_id", "timestamp", "type", "user_id", "app_id"):
        assert getattr(got, field) == getattr(props, field), field
    h = got.headers
    assert h["x-str"] in ("v", b"v")
    assert h["x-int"] == 42 and h["x-bool"] is True
    assert [x if not isinstance(x, bytes) else x.decode() for x in
            h["x-list"]] == [1, "two"]
    wait_count(channel, q, 0)
