//! The deliveries that let a saturated shard hold the publishers of other shards
//! (`shard::pressure`): counted only when a queue deeper than `PRESSURE_READY_MESSAGES` hands
//! messages to consumers, never for a queue whose consumers take nothing.

use super::*;
use crate::codec::hotpath;
use crate::limits::{CONSUMER_FLOW_WINDOW, PRESSURE_READY_MESSAGES};

/// Publishes `count` one-byte messages to `name` in one read of the socket.
fn publish_many(client: &mut Client, name: &str, count: usize) {
    let properties = hotpath::encode_properties(&AMQPProperties::default()).expect("default properties encode");
    let mut out = bytes::BytesMut::new();
    for _ in 0..count {
        hotpath::encode_publish(&mut out, 1, b"", name.as_bytes(), false, &properties, b"m", FRAME_MAX_BYTES)
            .expect("a publish encodes");
    }
    client.send_in_one_read(&out);
}

fn delivered(output: &[Out]) -> usize {
    output
        .iter()
        .filter(|out| matches!(out, Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::Deliver(_)), .. }))
        .count()
}

fn deep_deliveries(broker: &Broker) -> u64 {
    broker.shards.iter().map(|shard| shard.pressure.deep_deliveries()).sum()
}

#[test]
fn only_a_deep_queue_handing_messages_to_its_consumers_counts_toward_pressure() {
    let broker = Broker::new(2);
    let mut publisher = connected(&broker, 0);
    declared(&mut publisher, "deep");
    let flow_window = CONSUMER_FLOW_WINDOW as usize;
    publish_many(&mut publisher, "deep", PRESSURE_READY_MESSAGES + 2 * flow_window);
    assert_eq!(deep_deliveries(&broker), 0, "no consumer: nothing delivered");

    let mut slow = connected(&broker, 1);
    assert_eq!(delivered(&consume(&mut slow, 1, "deep", "slow", 1)), 1);
    assert_eq!(deep_deliveries(&broker), 1, "one delivery with the queue still deep");
    publish_many(&mut publisher, "deep", 1_000);
    assert_eq!(
        deep_deliveries(&broker),
        1,
        "a consumer out of prefetch takes nothing, so publishing on does not count"
    );

    // No prefetch limit: the flow window bounds what it takes before its writes come back.
    let mut fast = connected(&broker, 1);
    assert_eq!(delivered(&consume(&mut fast, 1, "deep", "fast", 0)), flow_window);
    let after_fast = deep_deliveries(&broker);
    assert!(after_fast > 1, "a consumer with credit took a window's worth from a deep queue");
    publish_many(&mut publisher, "deep", 10);
    assert_eq!(deep_deliveries(&broker), after_fast, "both consumers are out of credit now");
}

#[test]
fn a_queue_below_the_threshold_does_not_count_however_much_it_delivers() {
    let broker = Broker::new(2);
    let mut publisher = connected(&broker, 0);
    declared(&mut publisher, "shallow");
    publish_many(&mut publisher, "shallow", PRESSURE_READY_MESSAGES);
    let mut consumer = connected(&broker, 1);
    let output = consume(&mut consumer, 1, "shallow", "c", 0);
    assert_eq!(delivered(&output), CONSUMER_FLOW_WINDOW as usize);
    assert_eq!(deep_deliveries(&broker), 0, "at the threshold is not above it");
}
