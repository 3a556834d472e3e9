//! When a connection hands over at its first publish (`shard::handover`): the frames a replay
//! may redo, the decision at the publish, and the frame bytes the other shard reads.

use amq_protocol::protocol::{basic, confirm, exchange, queue};

use super::*;
use crate::broker::placement::queue_owner;
use crate::codec::frame::{FRAME_HEADER, FRAME_HEARTBEAT};
use crate::shard::handover::{append_frame, classify, target, Kind};

/// A queue name that `shard_count` shards place on `shard`.
fn queue_on(shard: usize, shard_count: usize) -> String {
    (0..)
        .map(|index| format!("h{index}"))
        .find(|name| queue_owner("/", name, shard_count) == shard)
        .expect("some name lands on every shard")
}

fn declare(client: &mut Client, name: &str) {
    let declare = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments: FieldTable::default(),
    }));
    client.send(1, declare);
    assert_eq!(client.methods().len(), 1, "declare-ok");
}

fn confirm_select(client: &mut Client) {
    client.send(1, AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false })));
    assert_eq!(client.methods().len(), 1, "select-ok");
}

fn publish(exchange: &str, routing_key: &str) -> RawFrame {
    let publish = basic::Publish {
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        mandatory: false,
        immediate: false,
    };
    method_frame(1, &AMQPClass::Basic(basic::AMQPMethod::Publish(publish)))
}

/// A client on `shard` of a two-shard broker with channel 1 open, and a queue on `queue_shard`.
fn publisher<'a>(broker: &'a Broker, shard: usize, queue_shard: usize) -> (Client<'a>, String) {
    let mut client = broker.connect(shard);
    client.open_channel(1);
    let name = queue_on(queue_shard, broker.shards.len());
    declare(&mut client, &name);
    broker.settle();
    (client, name)
}

#[test]
fn a_confirm_mode_publish_to_its_own_shards_queue_goes_to_the_other_shard() {
    let broker = Broker::new(2);
    let (mut client, name) = publisher(&broker, 1, 1);
    assert_eq!(target(&client.shard, &client.connection, &publish("", &name)), None, "not in confirm mode");
    confirm_select(&mut client);
    assert_eq!(target(&client.shard, &client.connection, &publish("", &name)), Some(0));
    assert_eq!(target(&client.shard, &client.connection, &publish("", "no-such-queue")), None, "unroutable");
    assert_eq!(target(&client.shard, &client.connection, &publish("no-such-exchange", &name)), None);
}

#[test]
fn a_publish_to_another_shards_queue_stays() {
    let broker = Broker::new(2);
    let (mut client, name) = publisher(&broker, 1, 0);
    confirm_select(&mut client);
    assert_eq!(target(&client.shard, &client.connection, &publish("", &name)), None);
}

#[test]
fn a_headers_exchange_needs_the_content_header_so_it_stays() {
    let broker = Broker::new(2);
    let (mut client, name) = publisher(&broker, 1, 1);
    let bind = AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
        queue: name.as_str().into(),
        exchange: "amq.headers".into(),
        routing_key: "".into(),
        nowait: false,
        arguments: FieldTable::default(),
    }));
    client.send(1, bind);
    assert_eq!(client.methods().len(), 1, "bind-ok");
    broker.settle();
    confirm_select(&mut client);
    assert_eq!(target(&client.shard, &client.connection, &publish("amq.headers", "")), None);
    assert_eq!(target(&client.shard, &client.connection, &publish("", &name)), Some(0), "the default exchange moves");
}

#[test]
fn one_shard_has_nowhere_to_go() {
    let broker = Broker::new(1);
    let (mut client, name) = publisher(&broker, 0, 0);
    confirm_select(&mut client);
    assert_eq!(target(&client.shard, &client.connection, &publish("", &name)), None);
}

#[test]
fn only_set_up_frames_are_replayed() {
    let replayable = [
        RawFrame { frame_type: FRAME_HEARTBEAT, channel: 0, payload: Bytes::new() },
        method_frame(1, &AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))),
        method_frame(1, &AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: 10, global: false }))),
        method_frame(1, &AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: true }))),
    ];
    for frame in &replayable {
        assert_eq!(classify(frame), Kind::Replayable, "{frame:?}");
    }
    assert_eq!(classify(&publish("", "q")), Kind::Publish);
    let declare = AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
        exchange: "x".into(),
        kind: "direct".into(),
        passive: false,
        durable: false,
        auto_delete: false,
        internal: false,
        nowait: false,
        arguments: FieldTable::default(),
    }));
    assert_eq!(classify(&method_frame(1, &declare)), Kind::Other);
    let header = RawFrame { frame_type: FRAME_HEADER, channel: 1, payload: Bytes::from_static(&[0; 14]) };
    assert_eq!(classify(&header), Kind::Other);
}

#[test]
fn a_frame_is_handed_over_byte_for_byte() {
    let frame = publish("amq.direct", "a key");
    let mut bytes = BytesMut::new();
    append_frame(&mut bytes, &frame);
    let again = crate::codec::frame::split_frame(&mut bytes, FRAME_MAX_BYTES).expect("a frame").expect("whole");
    assert_eq!((again.frame_type, again.channel, &again.payload), (frame.frame_type, frame.channel, &frame.payload));
    assert!(bytes.is_empty());
}
