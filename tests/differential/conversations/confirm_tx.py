"""Confirm and tx classes: publisher confirms (acks, nacks, returns), transactions (commit,
rollback of publishes and acks), and the mode conflicts between them."""

from conversations._helpers import declare, fill, get, opened
from registry import conversation


def _confirm_channel(s, **options):
    c = opened(s, **options)
    c.rpc(1, "confirm.select")
    return c


@conversation("confirm.select")
def select(s):
    c = opened(s)
    c.rpc(1, "confirm.select")
    c.rpc(1, "confirm.select")


@conversation("confirm.select-nowait")
def select_nowait(s):
    c = opened(s)
    c.send(1, "confirm.select", nowait=True)
    c.rpc(1, "basic.qos")


@conversation("confirm.ack-each-publish")
def ack_each(s):
    c = _confirm_channel(s)
    declare(c, 1, s.q(), exclusive=True)
    for index in range(3):
        c.publish(1, "", s.q(), body="m%d" % index)
        c.read()


@conversation("confirm.unroutable")
def unroutable(s):
    c = _confirm_channel(s)
    c.publish(1, "amq.direct", s.q(), body="x")
    c.read()


@conversation("confirm.unroutable-mandatory")
def unroutable_mandatory(s):
    c = _confirm_channel(s)
    c.publish(1, "amq.direct", s.q(), body="x", mandatory=True)
    c.read()


@conversation("confirm.missing-exchange")
def missing_exchange(s):
    c = _confirm_channel(s)
    c.publish(1, s.q(), "k", body="x")
    c.read()


@conversation("confirm.nack-reject-publish")
def nack_reject_publish(s):
    c = _confirm_channel(s)
    declare(c, 1, s.q(), exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    c.publish(1, "", s.q(), body="a")
    c.read()
    c.publish(1, "", s.q(), body="b")
    c.read()


@conversation("confirm.nack-then-room")
def nack_then_room(s):
    c = _confirm_channel(s)
    declare(c, 1, s.q(), exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    c.publish(1, "", s.q(), body="a")
    c.read()
    c.publish(1, "", s.q(), body="b")
    c.read()
    get(c, 1, s.q())
    c.publish(1, "", s.q(), body="c")
    c.read()


@conversation("confirm.then-tx-select")
def confirm_then_tx(s):
    c = _confirm_channel(s)
    c.rpc(1, "tx.select")


@conversation("tx.then-confirm-select")
def tx_then_confirm(s):
    c = opened(s)
    c.rpc(1, "tx.select")
    c.rpc(1, "confirm.select")


@conversation("tx.select-twice")
def tx_twice(s):
    c = opened(s)
    c.rpc(1, "tx.select")
    c.rpc(1, "tx.select")


@conversation("tx.commit-without-select")
def commit_without(s):
    c = opened(s)
    c.rpc(1, "tx.commit")


@conversation("tx.rollback-without-select")
def rollback_without(s):
    c = opened(s)
    c.rpc(1, "tx.rollback")


@conversation("tx.publish-commit")
def publish_commit(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    c.rpc(1, "tx.select")
    c.publish(1, "", s.q(), body="a")
    c.publish(1, "", s.q(), body="b")
    declare(c, 1, s.q(), passive=True)
    c.rpc(1, "tx.commit")
    declare(c, 1, s.q(), passive=True)
    get(c, 1, s.q())


@conversation("tx.publish-rollback")
def publish_rollback(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    c.rpc(1, "tx.select")
    c.publish(1, "", s.q(), body="a")
    c.rpc(1, "tx.rollback")
    c.rpc(1, "tx.commit")
    get(c, 1, s.q())


@conversation("tx.ack-rollback")
def ack_rollback(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    fill(c, s.q(), 2)
    c.rpc(1, "tx.select")
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.ack", delivery_tag=1)
    c.rpc(1, "tx.rollback")
    c.rpc(1, "basic.ack", delivery_tag=1)
    c.rpc(1, "tx.commit")
    declare(c, 1, s.q(), passive=True)


@conversation("tx.ack-unknown-tag")
def ack_unknown_in_tx(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    c.rpc(1, "tx.select")
    c.rpc(1, "basic.ack", delivery_tag=90)
    c.rpc(1, "tx.commit")


@conversation("tx.mandatory-unroutable-commit")
def tx_mandatory(s):
    c = opened(s)
    c.rpc(1, "tx.select")
    c.publish(1, "amq.direct", s.q(), body="x", mandatory=True)
    c.read_nothing()
    c.rpc(1, "tx.commit")


@conversation("tx.publish-missing-exchange")
def tx_missing_exchange(s):
    c = opened(s)
    c.rpc(1, "tx.select")
    c.publish(1, s.q(), "k", body="x")
    c.rpc(1, "tx.commit")


@conversation("tx.reject-requeue-commit")
def tx_reject(s):
    c = opened(s)
    declare(c, 1, s.q(), exclusive=True)
    fill(c, s.q(), 1)
    c.rpc(1, "tx.select")
    get(c, 1, s.q(), no_ack=False)
    c.rpc(1, "basic.reject", delivery_tag=1, requeue=True)
    get(c, 1, s.q())
    c.rpc(1, "tx.commit")
    get(c, 1, s.q())
