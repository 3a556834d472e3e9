//! basic.qos: qos-ok, prefetch limits, prefetch_size and the consumer limit per channel.

use super::*;

#[test]
fn basic_qos_is_answered_with_qos_ok() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, qos(10, false));
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::QosOk(_)))]), "{methods:?}");
}

#[test]
fn prefetch_count_limits_the_unacked_deliveries_of_a_consumer() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "limited", 5);
    let mut client = client_on(&broker, 1);
    client.send(1, qos(2, false));
    client.output();
    let first = start_consumer(&mut client, "limited", "c");
    assert_eq!(bodies(&first), vec![b"m1" as &[u8], b"m2"]);
    client.send(1, ack(1, false));
    let next = deliveries(&client.output());
    assert_eq!(bodies(&next), vec![b"m3" as &[u8]]);
    client.send(1, ack(3, true));
    let rest = deliveries(&client.output());
    assert_eq!(bodies(&rest), vec![b"m4" as &[u8], b"m5"]);
}

#[test]
fn prefetch_count_does_not_limit_no_ack_consumers() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "free", 3);
    let mut client = client_on(&broker, 1);
    client.send(1, qos(1, false));
    client.output();
    let options = ConsumeOptions { no_ack: true, ..ConsumeOptions::default() };
    client.send(1, consume_with("free", "c", options, FieldTable::default()));
    assert_eq!(deliveries(&client.output()).len(), 3);
}

/// Queues "left" and "right" with `count` messages each, placed on different shards.
fn two_queues_on_two_shards(broker: &Broker, count: usize) -> (String, String) {
    let left = "left".to_string();
    let owner = crate::broker::placement::queue_owner("/", &left, broker.shards.len());
    let right = (0..)
        .map(|index| format!("right{index}"))
        .find(|name| crate::broker::placement::queue_owner("/", name, broker.shards.len()) != owner)
        .expect("a name on another shard");
    queue_with_messages(broker, &left, count);
    queue_with_messages(broker, &right, count);
    (left, right)
}

/// A client on shard 1 with a global prefetch of 1, consuming "l" from "left" and "r" from the
/// queue on the other shard, both holding "m1" and "m2".
fn consuming_both_with_a_channel_limit_of_one(broker: &Broker) -> (Client<'_>, String, String) {
    let (left, right) = two_queues_on_two_shards(broker, 2);
    let mut client = client_on(broker, 1);
    client.send(1, qos(1, true));
    client.output();
    client.send(1, consume(&left, "l"));
    client.send(1, consume(&right, "r"));
    (client, left, right)
}

#[test]
fn a_global_prefetch_count_is_shared_by_the_consumers_of_the_channel() {
    let broker = Broker::new(2);
    let (mut client, _, _) = consuming_both_with_a_channel_limit_of_one(&broker);
    let first = deliveries(&client.output());
    assert_eq!(first.len(), 1, "{first:?}");
    // Each ack makes room for exactly one more, from either queue, until all four are in.
    let mut seen = vec![first[0].body.clone()];
    let mut last_tag = first[0].delivery_tag;
    for _ in 0..3 {
        client.send(1, ack(last_tag, false));
        let next = deliveries(&client.output());
        assert_eq!(next.len(), 1, "{next:?}");
        assert!(!next[0].redelivered);
        seen.push(next[0].body.clone());
        last_tag = next[0].delivery_tag;
    }
    seen.sort();
    assert_eq!(seen, vec![b"m1".to_vec(), b"m1".to_vec(), b"m2".to_vec(), b"m2".to_vec()]);
    client.send(1, ack(last_tag, false));
    assert!(deliveries(&client.output()).is_empty());
}

#[test]
fn the_lower_of_the_consumer_and_channel_limits_applies() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "both", 6);
    let mut client = client_on(&broker, 0);
    client.send(1, qos(2, false));
    client.send(1, qos(4, true));
    client.output();
    assert_eq!(start_consumer(&mut client, "both", "c").len(), 2);
    client.send(1, qos(1, true));
    client.send(1, ack(2, true));
    // Two acked, nothing unacked, channel limit 1 now: one more.
    assert_eq!(deliveries(&client.output()).len(), 1);
}

#[test]
fn raising_the_global_prefetch_count_delivers_more_at_once() {
    let broker = Broker::new(2);
    let (left, _) = two_queues_on_two_shards(&broker, 5);
    let mut client = client_on(&broker, 1);
    client.send(1, qos(1, true));
    client.output();
    assert_eq!(start_consumer(&mut client, &left, "c").len(), 1);
    client.send(1, qos(3, true));
    let output = client.output();
    assert!(matches!(output.first(), Some(Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::QosOk(_)), .. })));
    assert_eq!(bodies(&deliveries(&output)), vec![b"m2" as &[u8], b"m3"]);
    client.send(1, qos(0, true));
    assert_eq!(bodies(&deliveries(&client.output())), vec![b"m4" as &[u8], b"m5"]);
}

#[test]
fn a_global_prefetch_count_leaves_no_ack_consumers_and_basic_get_alone() {
    let broker = Broker::new(2);
    let (left, right) = two_queues_on_two_shards(&broker, 3);
    let mut client = client_on(&broker, 1);
    client.send(1, qos(1, true));
    client.output();
    client.send(1, get(&right, false));
    assert!(got(&client.output()).is_some());
    let options = ConsumeOptions { no_ack: true, ..ConsumeOptions::default() };
    client.send(1, consume_with(&left, "free", options, FieldTable::default()));
    assert_eq!(deliveries(&client.output()).len(), 3);
    // The unacked basic.get does not count: one consumer delivery still fits.
    assert_eq!(start_consumer(&mut client, &right, "limited").len(), 1);
}

#[test]
fn a_cancelled_consumer_gives_back_what_waited_for_the_channel_limit_unchanged() {
    let broker = Broker::new(2);
    let (mut client, left, right) = consuming_both_with_a_channel_limit_of_one(&broker);
    let first = deliveries(&client.output());
    assert_eq!(first.len(), 1);
    // The consumer whose message waits is cancelled: its message goes back, never sent.
    let waiting = if first[0].consumer_tag == "l" { (&right, "r") } else { (&left, "l") };
    client.send(1, cancel(waiting.1, false));
    let output = client.output();
    assert!(deliveries(&output).is_empty(), "{output:?}");
    let mut other = client_on(&broker, 0);
    other.send(1, get(waiting.0, true));
    let (ok, body) = got(&other.output()).expect("the message is back in its queue");
    assert_eq!(body, b"m1");
    assert!(!ok.redelivered, "a message that never reached the client is not redelivered");
}

#[test]
fn closing_a_channel_with_deliveries_waiting_for_its_limit_requeues_them() {
    let broker = Broker::new(2);
    let (mut client, left, right) = consuming_both_with_a_channel_limit_of_one(&broker);
    assert_eq!(deliveries(&client.output()).len(), 1);
    client.send(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    );
    client.output();
    let mut other = client_on(&broker, 0);
    for queue in [&left, &right] {
        for expected in [b"m1", b"m2"] {
            other.send(1, get(queue, true));
            let (_, body) = got(&other.output()).expect("every message is back");
            assert_eq!(body, expected);
        }
    }
}

#[test]
fn a_prefetch_size_closes_the_connection_with_540() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    // amq-protocol's Qos has no prefetch_size: the method frame is written by hand.
    let mut payload = vec![0, 60, 0, 10];
    payload.extend_from_slice(&1024u32.to_be_bytes());
    payload.extend_from_slice(&0u16.to_be_bytes());
    payload.push(0);
    let mut frame = BytesMut::new();
    crate::codec::frame::write_frame(&mut frame, FRAME_METHOD, 1, &payload).expect("frame encodes");
    client.send_bytes(&frame);
    assert_connection_closed(&mut client, (540, "NOT_IMPLEMENTED - prefetch_size!=0 (1024)", 60, 10));
}

#[test]
fn basic_qos_applies_only_to_consumers_started_after_it() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 1);
    declare_queue(&mut client, "before");
    start_consumer(&mut client, "before", "unlimited");
    client.send(1, qos(1, false));
    client.output();
    for _ in 0..3 {
        publish_text(&mut client, "before", "x");
    }
    assert_eq!(deliveries(&client.output()).len(), 3);
}

#[test]
fn a_consumer_limit_per_channel_refuses_one_more_with_406() {
    // RabbitMQ 3.10 has no such limit; the broker bounds the consumers a channel may hold.
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "crowded");
    let options = ConsumeOptions { nowait: true, ..ConsumeOptions::default() };
    for index in 0..crate::limits::CONSUMERS_PER_CHANNEL_MAX {
        client.send(1, consume_with("crowded", &format!("c{index}"), options, FieldTable::default()));
    }
    assert!(client.output().is_empty());
    client.send(1, consume("crowded", "one-more"));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - too many consumers on this channel", 60, 20));
}
