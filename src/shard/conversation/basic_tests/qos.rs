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

#[test]
#[ignore = "differs from RabbitMQ 3.10: global=true is taken as a per-consumer limit, not one shared by the channel (a channel-wide limit across queue shards needs a shared limiter)"]
fn a_global_prefetch_count_is_shared_by_the_consumers_of_the_channel() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "left", 2);
    queue_with_messages(&broker, "right", 2);
    let mut client = client_on(&broker, 1);
    client.send(1, qos(1, true));
    client.output();
    client.send(1, consume("left", "l"));
    client.send(1, consume("right", "r"));
    assert_eq!(deliveries(&client.output()).len(), 1);
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
