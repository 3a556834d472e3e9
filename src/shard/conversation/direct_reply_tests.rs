//! Direct reply-to (`amq.rabbitmq.reply-to`): the reply consumer and its refusals, the
//! rewrite of a request's `reply_to`, a reply crossing shards to its requester or dropped
//! when the requester is gone, and queue.declare of the pseudo-queue and of reply names.

use amq_protocol::protocol::{basic, confirm, queue};

use super::*;
use crate::broker::placement::queue_owner;
use crate::broker::reply_to::{REPLY_NAME_PREFIX, REPLY_QUEUE};

fn consume(queue_name: &str, consumer_tag: &str, no_ack: bool, nowait: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
        queue: queue_name.into(),
        consumer_tag: consumer_tag.into(),
        no_local: false,
        no_ack,
        exclusive: false,
        nowait,
        arguments: FieldTable::default(),
    }))
}

fn cancel(consumer_tag: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel { consumer_tag: consumer_tag.into(), nowait: false }))
}

fn declare(name: &str, passive: bool) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive,
        durable: false,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments: FieldTable::default(),
    }))
}

fn request_properties() -> AMQPProperties {
    AMQPProperties::default().with_reply_to(REPLY_QUEUE.into())
}

/// A queue name that `shard_count` shards place on `shard`.
fn queue_on(shard: usize, shard_count: usize) -> String {
    (0..)
        .map(|index| format!("rpc{index}"))
        .find(|name| queue_owner("/", name, shard_count) == shard)
        .expect("some name lands on every shard")
}

fn consume_ok_tag(methods: &[(u16, AMQPClass)], on: u16) -> String {
    match methods {
        [(channel, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)))] if *channel == on => {
            ok.consumer_tag.to_string()
        }
        other => panic!("expected basic.consume-ok on {on}, got {other:?}"),
    }
}

/// A requester with a reply consumer "replies" on channel 1.
fn requester(broker: &Broker, shard: usize) -> Client<'_> {
    let mut client = broker.connect(shard);
    client.open_channel(1);
    client.send(1, consume(REPLY_QUEUE, "replies", true, false));
    assert_eq!(consume_ok_tag(&client.methods(), 1), "replies");
    client
}

/// Publishes a request to `queue_name` from channel 1 of `requester` and fetches it from
/// `responder` (channel 1, open) with basic.get: the `reply_to` the responder sees.
fn request_reply_name(requester: &mut Client, responder: &mut Client, queue_name: &str) -> String {
    requester.publish(1, "", queue_name, &request_properties(), b"request");
    assert!(requester.output().is_empty());
    responder.send(1, AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: queue_name.into(), no_ack: true })));
    match responder.output().as_slice() {
        [Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::GetOk(_)), .. }, Out::Header { header, .. }, Out::Body { body, .. }] =>
        {
            assert_eq!(&body[..], b"request");
            let reply_to = hotpath::reply_to(&header.properties).expect("the request has a reply_to");
            String::from_utf8(reply_to.to_vec()).expect("reply names are ASCII")
        }
        other => panic!("expected the request, got {other:?}"),
    }
}

/// Three shards: the requester on 0, the request queue on 1, the responder on 2.
fn rpc(broker: &Broker) -> (Client<'_>, Client<'_>, String) {
    let queue_name = queue_on(1, 3);
    let mut responder = broker.connect(2);
    responder.open_channel(1);
    responder.send(1, declare(&queue_name, false));
    responder.methods();
    let requester = requester(broker, 0);
    (requester, responder, queue_name)
}

#[test]
fn consuming_replies_is_answered_with_consume_ok_and_the_given_tag() {
    let broker = Broker::new(1);
    requester(&broker, 0);
}

#[test]
fn consuming_replies_with_an_empty_tag_gets_a_generated_one() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, consume(REPLY_QUEUE, "", true, false));
    let tag = consume_ok_tag(&client.methods(), 1);
    assert!(tag.starts_with("amq.ctag-"), "{tag}");
    assert_eq!(tag.len(), "amq.ctag-".len() + 22, "{tag}");
}

#[test]
fn consuming_replies_nowait_is_silent_and_sets_the_reply_consumer() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, consume(REPLY_QUEUE, "replies", true, true));
    assert!(client.output().is_empty());
    client.send(1, declare("work", false));
    client.methods();
    client.publish(1, "", "work", &request_properties(), b"request");
    assert_eq!(channel_close(&client.methods(), 1), None, "a request needs the reply consumer the nowait consume set");
}

#[test]
fn consuming_replies_with_acknowledgements_is_406() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, consume(REPLY_QUEUE, "replies", false, false));
    assert_eq!(
        channel_close(&client.methods(), 1),
        Some((406, "PRECONDITION_FAILED - reply consumer cannot acknowledge".into(), 60, 20))
    );
}

#[test]
fn a_second_reply_consumer_on_a_channel_is_406() {
    let broker = Broker::new(1);
    let mut client = requester(&broker, 0);
    client.send(1, consume(REPLY_QUEUE, "more-replies", true, false));
    assert_eq!(
        channel_close(&client.methods(), 1),
        Some((406, "PRECONDITION_FAILED - reply consumer already set".into(), 60, 20))
    );
}

#[test]
fn reply_consumers_on_two_channels_of_one_connection_are_both_accepted() {
    let broker = Broker::new(1);
    let mut client = requester(&broker, 0);
    client.open_channel(2);
    client.send(2, consume(REPLY_QUEUE, "replies", true, false));
    assert_eq!(consume_ok_tag(&client.methods(), 2), "replies");
}

#[test]
fn consuming_replies_with_the_tag_of_a_queue_consumer_is_530_before_the_ack_mode_is_checked() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, declare("work", false));
    client.send(1, consume("work", "c1", false, false));
    client.methods();
    client.send(1, consume(REPLY_QUEUE, "c1", false, false));
    // Connection errors carry class/method 0/0 here (a known difference from RabbitMQ).
    assert_eq!(
        connection_close(&client.methods()),
        Some((530, "NOT_ALLOWED - attempt to reuse consumer tag 'c1'".into(), 60, 20))
    );
    assert!(client.closed);
}

#[test]
fn a_request_with_reply_to_the_pseudo_queue_without_a_reply_consumer_is_406() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, declare("work", false));
    client.methods();
    client.publish(1, "", "work", &request_properties(), b"request");
    assert_eq!(
        channel_close(&client.methods(), 1),
        Some((406, "PRECONDITION_FAILED - fast reply consumer does not exist".into(), 60, 40))
    );
}

#[test]
fn a_request_with_reply_to_the_pseudo_queue_on_another_channel_than_the_consumer_is_406() {
    let broker = Broker::new(1);
    let mut client = requester(&broker, 0);
    client.open_channel(2);
    client.send(2, declare("work", false));
    client.methods();
    client.publish(2, "", "work", &request_properties(), b"request");
    assert_eq!(
        channel_close(&client.methods(), 2),
        Some((406, "PRECONDITION_FAILED - fast reply consumer does not exist".into(), 60, 40))
    );
}

#[test]
fn a_reply_crosses_shards_to_the_requester_as_a_delivery_to_its_reply_consumer() {
    let broker = Broker::new(3);
    let (mut requester, mut responder, queue_name) = rpc(&broker);
    let reply_name = request_reply_name(&mut requester, &mut responder, &queue_name);
    assert!(reply_name.starts_with(REPLY_NAME_PREFIX), "{reply_name}");
    responder.publish(1, "", &reply_name, &AMQPProperties::default(), b"reply");
    assert!(responder.output().is_empty(), "a reply is not returned to the responder");
    match requester.output().as_slice() {
        [Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::Deliver(deliver)) }, Out::Header { channel: 1, header }, Out::Body { channel: 1, body }] =>
        {
            assert_eq!(deliver.consumer_tag.as_str(), "replies");
            assert_eq!(deliver.delivery_tag, 1);
            assert!(!deliver.redelivered);
            assert_eq!(deliver.exchange.as_str(), "");
            assert_eq!(deliver.routing_key.as_str(), reply_name);
            assert_eq!(header.body_size, 5);
            assert_eq!(&body[..], b"reply");
        }
        other => panic!("expected the reply as one delivery, got {other:?}"),
    }
}

#[test]
fn a_reply_is_confirmed_to_its_publisher_at_once() {
    let broker = Broker::new(3);
    let (mut requester, mut responder, queue_name) = rpc(&broker);
    let reply_name = request_reply_name(&mut requester, &mut responder, &queue_name);
    responder.send(1, AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: true })));
    responder.publish(1, "", &reply_name, &AMQPProperties::default(), b"reply");
    let methods = responder.methods();
    assert!(
        matches!(methods.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::Ack(ack)))] if ack.delivery_tag == 1),
        "{methods:?}"
    );
}

#[test]
fn a_reply_after_the_reply_consumer_was_cancelled_is_dropped() {
    let broker = Broker::new(3);
    let (mut requester, mut responder, queue_name) = rpc(&broker);
    let reply_name = request_reply_name(&mut requester, &mut responder, &queue_name);
    requester.send(1, cancel("replies"));
    let methods = requester.methods();
    assert!(
        matches!(methods.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok)))] if ok.consumer_tag.as_str() == "replies"),
        "{methods:?}"
    );
    responder.publish(1, "", &reply_name, &AMQPProperties::default(), b"reply");
    assert!(requester.output().is_empty());
    assert!(responder.output().is_empty());
}

#[test]
fn a_reply_to_a_channel_closed_and_reopened_with_a_new_reply_consumer_is_dropped() {
    let broker = Broker::new(3);
    let (mut requester, mut responder, queue_name) = rpc(&broker);
    let reply_name = request_reply_name(&mut requester, &mut responder, &queue_name);
    requester.send(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    );
    requester.methods();
    requester.open_channel(1);
    requester.send(1, consume(REPLY_QUEUE, "replies", true, false));
    requester.methods();
    responder.publish(1, "", &reply_name, &AMQPProperties::default(), b"stale");
    assert!(requester.output().is_empty());
}

#[test]
fn a_reply_after_the_requester_disconnected_is_dropped() {
    let broker = Broker::new(3);
    let (mut requester, mut responder, queue_name) = rpc(&broker);
    let reply_name = request_reply_name(&mut requester, &mut responder, &queue_name);
    requester.drop_connection();
    responder.publish(1, "", &reply_name, &AMQPProperties::default(), b"reply");
    assert!(responder.output().is_empty());
}

#[test]
fn a_mandatory_publish_to_a_malformed_reply_name_is_returned() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    let name = format!("{REPLY_NAME_PREFIX}not-a-token");
    let properties = hotpath::encode_properties(&AMQPProperties::default()).expect("empty properties encode");
    let mut out = BytesMut::new();
    hotpath::encode_publish(&mut out, 1, b"", name.as_bytes(), true, &properties, b"x", FRAME_MAX_BYTES)
        .expect("test publish encodes");
    client.send_bytes(&out);
    let methods = client.methods();
    match methods.as_slice() {
        [(1, AMQPClass::Basic(basic::AMQPMethod::Return(returned)))] => {
            assert_eq!((returned.reply_code, returned.reply_text.as_str()), (312, "NO_ROUTE"));
            assert_eq!(returned.routing_key.as_str(), name);
        }
        other => panic!("expected basic.return, got {other:?}"),
    }
}

fn declare_ok(methods: &[(u16, AMQPClass)]) -> (String, u32, u32) {
    match methods {
        [(_, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))] => {
            (ok.queue.to_string(), ok.message_count, ok.consumer_count)
        }
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
}

#[test]
fn declaring_the_pseudo_queue_is_declare_ok_with_no_message_and_one_consumer() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, declare(REPLY_QUEUE, false));
    assert_eq!(declare_ok(&client.methods()), (REPLY_QUEUE.to_string(), 0, 1));
    client.send(1, declare(REPLY_QUEUE, true));
    assert_eq!(declare_ok(&client.methods()), (REPLY_QUEUE.to_string(), 0, 1));
}

#[test]
fn declaring_a_live_reply_name_from_another_shard_is_declare_ok_and_creates_nothing() {
    let broker = Broker::new(3);
    let (mut requester, mut responder, queue_name) = rpc(&broker);
    let reply_name = request_reply_name(&mut requester, &mut responder, &queue_name);
    responder.send(1, declare(&reply_name, true));
    assert_eq!(declare_ok(&responder.methods()), (reply_name.clone(), 0, 1));
    responder.send(1, declare(&reply_name, false));
    assert_eq!(declare_ok(&responder.methods()), (reply_name.clone(), 0, 1));
    let snapshot = responder.shard.snapshot.borrow().clone();
    assert!(!snapshot.vhost("/").expect("vhost /").queues.contains_key(&reply_name));
}

#[test]
fn declaring_a_reply_name_whose_consumer_was_cancelled_is_404() {
    let broker = Broker::new(3);
    let (mut requester, mut responder, queue_name) = rpc(&broker);
    let reply_name = request_reply_name(&mut requester, &mut responder, &queue_name);
    requester.send(1, cancel("replies"));
    requester.methods();
    responder.send(1, declare(&reply_name, true));
    assert_eq!(
        channel_close(&responder.methods(), 1),
        Some((404, format!("NOT_FOUND - no queue '{reply_name}' in vhost '/'"), 50, 10))
    );
}

#[test]
fn declaring_a_malformed_reply_name_is_404() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    let name = format!("{REPLY_NAME_PREFIX}garbage");
    client.send(1, declare(&name, false));
    assert_eq!(
        channel_close(&client.methods(), 1),
        Some((404, format!("NOT_FOUND - no queue '{name}' in vhost '/'"), 50, 10))
    );
}

#[test]
fn declaring_another_name_under_the_reply_prefix_is_404() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, declare("amq.rabbitmq.reply-tox", true));
    assert_eq!(
        channel_close(&client.methods(), 1),
        Some((404, "NOT_FOUND - no queue 'amq.rabbitmq.reply-tox' in vhost '/'".into(), 50, 10))
    );
}
