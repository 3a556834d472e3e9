//! queue.purge and queue.delete: counts, nowait, if-unused and if-empty, missing queues, and the
//! basic.cancel a deleted queue sends its consumers.

use amq_protocol::protocol::{basic, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};

use super::*;

/// A client on `shard` that announces the consumer_cancel_notify capability, with channel 1
/// open: RabbitMQ sends basic.cancel for a deleted queue only to such clients.
fn connected_with_cancel_notify(broker: &Broker, shard: usize) -> Client<'_> {
    let mut client = broker.connect_raw(shard, true);
    client.handshake_bytes(crate::codec::frame::PROTOCOL_HEADER);
    let mut capabilities = FieldTable::default();
    capabilities.insert("consumer_cancel_notify".into(), AMQPValue::Boolean(true));
    let mut client_properties = FieldTable::default();
    client_properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    let start_ok = connection::StartOk {
        client_properties,
        mechanism: "PLAIN".into(),
        response: LongString::from(b"\0guest\0guest".to_vec()),
        locale: "en_US".into(),
    };
    let start_ok = AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok));
    for method in [start_ok, tune_ok(0, FRAME_MAX_BYTES, 0), open("/")] {
        client.handshake_method(method);
    }
    client.output();
    client.open_channel(1);
    client
}

fn cancel(tag: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel { consumer_tag: tag.into(), nowait: true }))
}

// queue.purge

#[test]
fn purge_answers_purge_ok_with_the_purged_count() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 3);
    assert_answer(&mut client, purge("work", false), purge_ok(3));
    assert_eq!(counts(&mut client, "work"), (0, 0));
}

#[test]
fn purge_with_nowait_sends_nothing_and_purges() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 2);
    client.send(1, purge("work", true));
    assert!(client.output().is_empty());
    assert_eq!(counts(&mut client, "work"), (0, 0));
}

#[test]
fn purge_leaves_unacknowledged_messages_out_of_the_count() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 3);
    client.open_channel(2);
    consume(&mut client, 2, "work", "c1", 1);
    assert_answer(&mut client, purge("work", false), purge_ok(2));
}

#[test]
fn purge_of_a_missing_queue_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        purge("nowhere", false),
        404,
        "NOT_FOUND - no queue 'nowhere' in vhost '/'",
        PURGE,
    );
}

// queue.delete

#[test]
fn delete_answers_delete_ok_with_the_ready_count_and_removes_the_queue() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 1);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 2);
    assert_answer(&mut client, delete_method(delete("work")), delete_ok(2));
    assert!(!queue_exists(&mut client, 2, "work"));
}

#[test]
fn delete_with_nowait_sends_nothing_and_removes_the_queue() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    client.send(1, delete_method(queue::Delete { nowait: true, ..delete("work") }));
    assert!(client.output().is_empty());
    assert!(!queue_exists(&mut client, 2, "work"));
}

#[test]
fn delete_removes_the_queue_bindings() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_answer(&mut client, bind_method(bind("work", "amq.direct", "k")), bind_ok());
    assert_answer(&mut client, delete_method(delete("work")), delete_ok(0));
    declared(&mut client, "work");
    publish(&mut client, "amq.direct", "k", 1);
    assert_eq!(counts(&mut client, "work"), (0, 0));
}

#[test]
fn delete_of_a_missing_queue_is_delete_ok_with_zero() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_answer(&mut client, delete_method(delete("nowhere")), delete_ok(0));
}

#[test]
fn delete_if_unused_of_a_queue_with_a_consumer_is_406() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 0);
    declared(&mut owner, "work");
    consume(&mut owner, 1, "work", "c1", 0);
    let mut client = connected(&broker, 2);
    assert_channel_closed(
        &mut client,
        delete_method(queue::Delete { if_unused: true, ..delete("work") }),
        406,
        "PRECONDITION_FAILED - queue 'work' in vhost '/' in use",
        DELETE,
    );
    assert!(queue_exists(&mut client, 2, "work"));
}

#[test]
fn delete_if_unused_of_a_queue_without_consumers_is_delete_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 1);
    assert_answer(&mut client, delete_method(queue::Delete { if_unused: true, ..delete("work") }), delete_ok(1));
}

#[test]
fn delete_if_empty_of_a_queue_with_messages_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 1);
    assert_channel_closed(
        &mut client,
        delete_method(queue::Delete { if_empty: true, ..delete("work") }),
        406,
        "PRECONDITION_FAILED - queue 'work' in vhost '/' not empty",
        DELETE,
    );
    assert!(queue_exists(&mut client, 2, "work"));
}

#[test]
fn delete_if_empty_of_an_empty_queue_is_delete_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_answer(&mut client, delete_method(queue::Delete { if_empty: true, ..delete("work") }), delete_ok(0));
}

#[test]
#[ignore = "differs from RabbitMQ 3.10: if-unused is checked before if-empty (RabbitMQ: not empty first)"]
fn delete_if_unused_and_if_empty_of_a_busy_full_queue_is_not_empty() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 3);
    client.open_channel(2);
    consume(&mut client, 2, "work", "c1", 1);
    assert_channel_closed(
        &mut client,
        delete_method(queue::Delete { if_unused: true, if_empty: true, ..delete("work") }),
        406,
        "PRECONDITION_FAILED - queue 'work' in vhost '/' not empty",
        DELETE,
    );
}

#[test]
fn delete_cancels_the_consumers_of_other_connections() {
    let broker = Broker::new(3);
    let mut consumer = connected_with_cancel_notify(&broker, 1);
    declared(&mut consumer, "work");
    consume(&mut consumer, 1, "work", "c1", 0);
    let mut client = connected(&broker, 2);
    assert_answer(&mut client, delete_method(delete("work")), delete_ok(0));
    assert_eq!(consumer.methods(), vec![(1, cancel("c1"))]);
}

#[test]
#[ignore = "differs from RabbitMQ 3.10: basic.cancel is sent to clients without the consumer_cancel_notify capability"]
fn delete_does_not_cancel_consumers_of_clients_without_cancel_notify() {
    let broker = Broker::new(3);
    let mut consumer = connected(&broker, 1);
    declared(&mut consumer, "work");
    consume(&mut consumer, 1, "work", "c1", 0);
    let mut client = connected(&broker, 2);
    assert_answer(&mut client, delete_method(delete("work")), delete_ok(0));
    assert_eq!(consumer.methods(), vec![]);
}

#[test]
#[ignore = "differs from RabbitMQ 3.10: basic.cancel to the deleting channel's consumer comes before delete-ok"]
fn delete_answers_delete_ok_before_cancelling_the_own_consumer() {
    let broker = Broker::new(1);
    let mut client = connected_with_cancel_notify(&broker, 0);
    declared(&mut client, "work");
    consume(&mut client, 1, "work", "c1", 0);
    client.send(1, delete_method(delete("work")));
    assert_eq!(client.methods(), vec![(1, delete_ok(0)), (1, cancel("c1"))]);
}
