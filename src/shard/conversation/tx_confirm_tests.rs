//! Publisher confirms and transactions: confirm.select, tx.select/commit/rollback, the errors
//! of mixing them, what a transaction holds back until commit, and the basic.ack/nack/return
//! frames a confirm-mode publisher gets.

use amq_protocol::protocol::{basic, confirm, queue, tx};

use super::*;
use crate::broker::placement::queue_owner;
use crate::limits::TX_PENDING_MAX;

fn confirm_select(nowait: bool) -> AMQPClass {
    AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait }))
}

fn tx_select() -> AMQPClass {
    AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {}))
}

fn tx_commit() -> AMQPClass {
    AMQPClass::Tx(tx::AMQPMethod::Commit(tx::Commit {}))
}

fn tx_rollback() -> AMQPClass {
    AMQPClass::Tx(tx::AMQPMethod::Rollback(tx::Rollback {}))
}

fn declare(name: &str, passive: bool, arguments: FieldTable) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive,
        durable: false,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments,
    }))
}

fn get(queue: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: queue.into(), no_ack: false }))
}

fn ack(delivery_tag: u64, multiple: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag, multiple }))
}

/// A queue name that `shard_count` shards place on `shard`.
fn queue_on(shard: usize, shard_count: usize) -> String {
    (0..)
        .map(|index| format!("q{index}"))
        .find(|name| queue_owner("/", name, shard_count) == shard)
        .expect("some name lands on every shard")
}

/// Declares `name` on channel `on` and checks the declare-ok.
fn declare_queue(client: &mut Client, on: u16, name: &str, arguments: FieldTable) {
    client.send(on, declare(name, false, arguments));
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(channel, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))] if *channel == on),
        "{methods:?}"
    );
}

/// The ready messages of `name`, by a passive declare on a fresh channel `on`.
fn message_count(client: &mut Client, on: u16, name: &str) -> u32 {
    client.open_channel(on);
    client.send(on, declare(name, true, FieldTable::default()));
    match client.methods().as_slice() {
        [(_, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))] => ok.message_count,
        other => panic!("expected declare-ok, got {other:?}"),
    }
}

/// The bytes of a basic.publish with its content, `mandatory` as given.
fn publish_bytes(channel: u16, exchange: &str, routing_key: &str, mandatory: bool, body: &[u8]) -> BytesMut {
    let properties = hotpath::encode_properties(&AMQPProperties::default()).expect("empty properties encode");
    let mut out = BytesMut::new();
    hotpath::encode_publish(
        &mut out,
        channel,
        exchange.as_bytes(),
        routing_key.as_bytes(),
        mandatory,
        &properties,
        body,
        FRAME_MAX_BYTES,
    )
    .expect("test publish encodes");
    out
}

/// (channel, delivery_tag, multiple) of every basic.ack among `methods`.
fn confirms(methods: &[(u16, AMQPClass)]) -> Vec<(u16, u64, bool)> {
    methods
        .iter()
        .filter_map(|(channel, method)| match method {
            AMQPClass::Basic(basic::AMQPMethod::Ack(ack)) => Some((*channel, ack.delivery_tag, ack.multiple)),
            _ => None,
        })
        .collect()
}

fn is_tx(method: &AMQPClass, expected: &tx::AMQPMethod) -> bool {
    matches!(method, AMQPClass::Tx(found) if std::mem::discriminant(found) == std::mem::discriminant(expected))
}

const COMMIT_OK: tx::AMQPMethod = tx::AMQPMethod::CommitOk(tx::CommitOk {});

#[test]
fn confirm_select_is_answered_with_select_ok() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, confirm_select(false));
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)))]), "{methods:?}");
}

#[test]
fn confirm_select_nowait_is_silent_and_still_turns_confirms_on() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, confirm_select(true));
    assert!(client.output().is_empty());
    client.publish(1, "amq.direct", "unbound", &AMQPProperties::default(), b"x");
    let methods = client.methods();
    assert_eq!(confirms(&methods).iter().map(|(channel, tag, _)| (*channel, *tag)).collect::<Vec<_>>(), [(1, 1)]);
}

#[test]
fn a_publish_routed_to_a_queue_on_another_shard_is_acked_with_its_sequence_number() {
    let broker = Broker::new(2);
    let name = queue_on(1, 2);
    let mut client = broker.connect(0);
    client.open_channel(1);
    declare_queue(&mut client, 1, &name, FieldTable::default());
    client.send(1, confirm_select(false));
    client.methods();
    for expected_tag in 1..=3 {
        client.publish(1, "", &name, &AMQPProperties::default(), b"m");
        let tags: Vec<(u16, u64)> = confirms(&client.methods()).iter().map(|(on, tag, _)| (*on, *tag)).collect();
        assert_eq!(tags, [(1, expected_tag)]);
    }
    assert_eq!(message_count(&mut client, 2, &name), 3);
}

#[test]
fn a_second_confirm_select_keeps_numbering_the_publishes() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, confirm_select(false));
    client.publish(1, "amq.direct", "unbound", &AMQPProperties::default(), b"x");
    client.methods();
    client.send(1, confirm_select(false));
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)))]), "{methods:?}");
    client.publish(1, "amq.direct", "unbound", &AMQPProperties::default(), b"x");
    let tags: Vec<u64> = confirms(&client.methods()).iter().map(|(_, tag, _)| *tag).collect();
    assert_eq!(tags, [2]);
}

#[test]
fn confirms_settled_together_coalesce_into_one_multiple_ack() {
    let broker = Broker::new(2);
    let name = queue_on(1, 2);
    let mut client = broker.connect(0);
    client.open_channel(1);
    declare_queue(&mut client, 1, &name, FieldTable::default());
    client.send(1, confirm_select(false));
    client.methods();
    let mut batch = BytesMut::new();
    for _ in 0..3 {
        batch.extend_from_slice(&publish_bytes(1, "", &name, false, b"m"));
    }
    client.send_in_one_read(&batch);
    assert_eq!(confirms(&client.methods()), [(1, 3, true)]);
}

#[test]
fn a_mandatory_unroutable_publish_in_confirm_mode_is_returned_before_it_is_acked() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, confirm_select(false));
    client.methods();
    client.send_bytes(&publish_bytes(1, "", "nowhere", true, b"lost"));
    match client.output().as_slice() {
        [Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::Return(returned)) }, Out::Header { channel: 1, header }, Out::Body { channel: 1, body }, Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::Ack(confirm)) }] =>
        {
            assert_eq!(returned.reply_code, 312);
            assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(returned.exchange.as_str(), "");
            assert_eq!(returned.routing_key.as_str(), "nowhere");
            assert_eq!(header.body_size, 4);
            assert_eq!(&body[..], b"lost");
            assert_eq!(confirm.delivery_tag, 1);
        }
        other => panic!("expected basic.return, its content, then basic.ack: {other:?}"),
    }
}

#[test]
fn a_publish_refused_by_a_full_reject_publish_queue_is_nacked() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    declare_queue(&mut client, 1, "bounded", arguments);
    client.send(1, confirm_select(false));
    client.methods();
    client.publish(1, "", "bounded", &AMQPProperties::default(), b"first");
    assert_eq!(confirms(&client.methods()).iter().map(|(_, tag, _)| *tag).collect::<Vec<_>>(), [1]);
    client.publish(1, "", "bounded", &AMQPProperties::default(), b"second");
    let methods = client.methods();
    match methods.as_slice() {
        [(1, AMQPClass::Basic(basic::AMQPMethod::Nack(nack)))] => {
            assert_eq!(nack.delivery_tag, 2);
            // Meaningless from a broker, but RabbitMQ sends the field's default.
            assert!(nack.requeue);
        }
        other => panic!("expected one basic.nack, got {other:?}"),
    }
    assert_eq!(channel_close(&methods, 1), None);
    assert_eq!(message_count(&mut client, 2, "bounded"), 1);
}

#[test]
fn a_confirm_settled_alone_is_basic_ack_without_multiple() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, confirm_select(false));
    client.methods();
    client.publish(1, "amq.direct", "unbound", &AMQPProperties::default(), b"x");
    assert_eq!(confirms(&client.methods()), [(1, 1, false)]);
}

#[test]
fn a_nack_settled_alone_covers_the_run_below_it_as_rabbitmq_does() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    declare_queue(&mut client, 1, "full", arguments);
    client.send(1, confirm_select(false));
    client.methods();
    client.publish(1, "", "full", &AMQPProperties::default(), b"x");
    match client.methods().as_slice() {
        [(1, AMQPClass::Basic(basic::AMQPMethod::Nack(nack)))] => {
            assert_eq!((nack.delivery_tag, nack.multiple, nack.requeue), (1, true, true))
        }
        other => panic!("expected one basic.nack, got {other:?}"),
    }
}

#[test]
fn an_unroutable_publish_is_confirmed_before_an_earlier_unconfirmed_one() {
    let broker = Broker::new(2);
    let name = queue_on(1, 2);
    let mut client = broker.connect(0);
    client.open_channel(1);
    declare_queue(&mut client, 1, &name, FieldTable::default());
    client.send(1, confirm_select(false));
    client.methods();
    let mut batch = publish_bytes(1, "", &name, false, b"routed");
    batch.extend_from_slice(&publish_bytes(1, "amq.direct", "unbound", false, b"unroutable"));
    client.send_in_one_read(&batch);
    assert_eq!(confirms(&client.methods()), [(1, 2, false), (1, 1, false)]);
}

#[test]
fn confirm_select_on_a_transactional_channel_is_406() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, tx_select());
    client.methods();
    client.send(1, confirm_select(false));
    let methods = client.methods();
    assert_eq!(
        channel_close(&methods, 1),
        Some((406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode".into(), 85, 10))
    );
}

#[test]
fn tx_select_on_a_confirm_channel_is_406() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, confirm_select(true));
    client.send(1, tx_select());
    let methods = client.methods();
    assert_eq!(
        channel_close(&methods, 1),
        Some((406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode".into(), 90, 10))
    );
}

#[test]
fn tx_commit_without_tx_select_is_406() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, tx_commit());
    let methods = client.methods();
    assert_eq!(
        channel_close(&methods, 1),
        Some((406, "PRECONDITION_FAILED - channel is not transactional".into(), 90, 20))
    );
}

#[test]
fn tx_rollback_without_tx_select_is_406() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, tx_rollback());
    let methods = client.methods();
    assert_eq!(
        channel_close(&methods, 1),
        Some((406, "PRECONDITION_FAILED - channel is not transactional".into(), 90, 30))
    );
}

#[test]
fn tx_select_twice_is_answered_twice_and_keeps_what_the_transaction_holds() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    declare_queue(&mut client, 1, "work", FieldTable::default());
    client.send(1, tx_select());
    client.publish(1, "", "work", &AMQPProperties::default(), b"held");
    client.send(1, tx_select());
    let methods = client.methods();
    assert!(
        matches!(
            methods.as_slice(),
            [(1, AMQPClass::Tx(tx::AMQPMethod::SelectOk(_))), (1, AMQPClass::Tx(tx::AMQPMethod::SelectOk(_)))]
        ),
        "{methods:?}"
    );
    client.send(1, tx_commit());
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, method)] if is_tx(method, &COMMIT_OK)), "{methods:?}");
    assert_eq!(message_count(&mut client, 2, "work"), 1);
}

#[test]
fn publishes_in_a_transaction_reach_their_queue_on_another_shard_only_at_commit() {
    let broker = Broker::new(2);
    let name = queue_on(1, 2);
    let mut client = broker.connect(0);
    client.open_channel(1);
    declare_queue(&mut client, 1, &name, FieldTable::default());
    client.send(1, tx_select());
    client.methods();
    client.publish(1, "", &name, &AMQPProperties::default(), b"one");
    client.publish(1, "", &name, &AMQPProperties::default(), b"two");
    assert!(client.output().is_empty());
    assert_eq!(message_count(&mut client, 2, &name), 0);
    client.send(1, tx_commit());
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, method)] if is_tx(method, &COMMIT_OK)), "{methods:?}");
    client.open_channel(3);
    client.send(3, declare(&name, true, FieldTable::default()));
    match client.methods().as_slice() {
        [(3, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))] => assert_eq!(ok.message_count, 2),
        other => panic!("expected declare-ok, got {other:?}"),
    }
}

#[test]
fn rollback_drops_the_pending_publishes_and_the_channel_stays_transactional() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    declare_queue(&mut client, 1, "work", FieldTable::default());
    client.send(1, tx_select());
    client.methods();
    client.publish(1, "", "work", &AMQPProperties::default(), b"dropped");
    client.send(1, tx_rollback());
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, AMQPClass::Tx(tx::AMQPMethod::RollbackOk(_)))]), "{methods:?}");
    client.send(1, tx_commit());
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, method)] if is_tx(method, &COMMIT_OK)), "{methods:?}");
    assert_eq!(message_count(&mut client, 2, "work"), 0);
}

/// A queue "work" with one message, fetched unacked on channel 1 as delivery tag 1.
fn one_unacked_message(client: &mut Client) {
    client.open_channel(1);
    declare_queue(client, 1, "work", FieldTable::default());
    client.publish(1, "", "work", &AMQPProperties::default(), b"job");
    client.send(1, get("work"));
    let output = client.output();
    assert!(
        matches!(output.first(), Some(Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::GetOk(ok)) }) if ok.delivery_tag == 1),
        "{output:?}"
    );
}

fn close_channel(client: &mut Client, on: u16) {
    client.send(
        on,
        AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    );
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(_, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)))]), "{methods:?}");
}

#[test]
fn an_ack_in_a_transaction_is_applied_at_commit() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    one_unacked_message(&mut client);
    client.send(1, tx_select());
    client.send(1, ack(1, false));
    client.send(1, tx_commit());
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(1, AMQPClass::Tx(tx::AMQPMethod::SelectOk(_))), (1, method)] if is_tx(method, &COMMIT_OK)),
        "{methods:?}"
    );
    close_channel(&mut client, 1);
    assert_eq!(message_count(&mut client, 2, "work"), 0, "the committed ack removed the message");
}

#[test]
fn an_ack_in_a_transaction_that_is_never_committed_is_not_applied() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    one_unacked_message(&mut client);
    client.send(1, tx_select());
    client.send(1, ack(1, false));
    client.methods();
    close_channel(&mut client, 1);
    assert_eq!(message_count(&mut client, 2, "work"), 1, "closing the channel requeued the unacked message");
}

#[test]
fn an_ack_rolled_back_leaves_the_delivery_unacked_and_ackable_again() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    one_unacked_message(&mut client);
    client.send(1, tx_select());
    client.send(1, ack(1, false));
    client.send(1, tx_rollback());
    client.send(1, ack(1, false));
    client.send(1, tx_commit());
    let methods = client.methods();
    assert_eq!(channel_close(&methods, 1), None, "{methods:?}");
    assert!(methods.last().is_some_and(|(_, method)| is_tx(method, &COMMIT_OK)), "{methods:?}");
    close_channel(&mut client, 1);
    assert_eq!(message_count(&mut client, 2, "work"), 0);
}

#[test]
fn an_unknown_delivery_tag_acked_in_a_transaction_is_406_at_once() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, tx_select());
    client.methods();
    client.send(1, ack(5, false));
    let methods = client.methods();
    assert_eq!(channel_close(&methods, 1), Some((406, "PRECONDITION_FAILED - unknown delivery tag 5".into(), 60, 80)));
}

#[test]
fn a_mandatory_unroutable_publish_in_a_transaction_is_returned_at_commit_before_commit_ok() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, tx_select());
    client.methods();
    client.send_bytes(&publish_bytes(1, "amq.direct", "unbound", true, b"x"));
    assert!(client.output().is_empty(), "nothing is routed before commit");
    client.send(1, tx_commit());
    let methods = client.methods();
    match methods.as_slice() {
        [(1, AMQPClass::Basic(basic::AMQPMethod::Return(returned))), (1, commit_ok)]
            if is_tx(commit_ok, &COMMIT_OK) =>
        {
            assert_eq!(
                (
                    returned.reply_code,
                    returned.reply_text.as_str(),
                    returned.exchange.as_str(),
                    returned.routing_key.as_str()
                ),
                (312, "NO_ROUTE", "amq.direct", "unbound")
            );
        }
        other => panic!("expected basic.return then tx.commit-ok, got {other:?}"),
    }
}

/// `count` unroutable publishes without a body, as one batch.
fn unroutable_publishes(count: usize) -> BytesMut {
    let one = publish_bytes(1, "amq.direct", "unbound", false, b"");
    let mut batch = BytesMut::with_capacity(one.len() * count);
    for _ in 0..count {
        batch.extend_from_slice(&one);
    }
    batch
}

#[test]
fn a_transaction_holding_exactly_the_pending_limit_commits() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, tx_select());
    client.methods();
    client.send_in_one_read(&unroutable_publishes(TX_PENDING_MAX));
    client.send(1, tx_commit());
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, method)] if is_tx(method, &COMMIT_OK)), "{methods:?}");
}

#[test]
fn a_publish_past_the_pending_limit_is_406_and_the_transaction_applies_nothing() {
    // The bound is checked when a publish or ack would pass it, so an uncommitted
    // transaction cannot grow without bound.
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    declare_queue(&mut client, 1, "work", FieldTable::default());
    client.send(1, tx_select());
    client.methods();
    client.publish(1, "", "work", &AMQPProperties::default(), b"held");
    client.send_in_one_read(&unroutable_publishes(TX_PENDING_MAX));
    let methods = client.methods();
    assert_eq!(channel_close(&methods, 1), Some((406, "PRECONDITION_FAILED - transaction too large".into(), 60, 40)));
    client.send(1, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})));
    assert_eq!(message_count(&mut client, 2, "work"), 0);
}

/// A commit runs outside the mailbox loop's turn: the confirms it releases to a parked shard
/// wake that shard at once, not when this shard's loop next turns.
#[test]
fn released_confirms_wake_the_publishers_parked_shard_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let broker = Broker::new(2);
    let (publishers_shard, queues_shard) = (&broker.shards[0], &broker.shards[1]);
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let nothing_local = || false;
    let mut park = pin!(publishers_shard.mailboxes.park(0, &nothing_local));
    assert!(park.as_mut().poll(&mut Context::from_waker(&waker)).is_pending(), "shard 0 parks");
    let holder = crate::ids::Holder { conn: ConnId { shard: 0, local: 1 }, channel: 1, incarnation: 0 };
    queues_shard.release_confirms(vec![crate::ids::ConfirmTo { holder, publish_sequence: 1 }], true);
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken by the release itself");
    assert!(park.as_mut().poll(&mut Context::from_waker(&waker)).is_ready());
}
