//! queue.purge and queue.delete: counts, if-unused/if-empty, the last declared queue and consumer cancels.

use super::*;

const PURGE: (u16, u16) = (50, 30);

const DELETE: (u16, u16) = (50, 40);

fn purge(name: &str, nowait: bool) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge { queue: name.into(), nowait }))
}

fn purge_ok(message_count: u32) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk { message_count }))
}

fn delete_method(delete: queue::Delete) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Delete(delete))
}

fn delete_ok(message_count: u32) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk { message_count }))
}

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
    for method in [start_ok, tune_ok(crate::limits::CHANNEL_MAX, FRAME_MAX_BYTES, 0), open("/")] {
        client.handshake_method(method);
    }
    client.output();
    client.open_channel(1);
    client
}

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

#[test]
fn purge_of_an_exclusive_queue_of_another_connection_is_405() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    publish(&mut owner, "", "private", 1);
    let mut other = connected(&broker, 2);
    assert_channel_closed(&mut other, purge("private", false), 405, LOCKED, PURGE);
    assert_eq!(counts(&mut owner, "private"), (1, 0));
}

#[test]
fn purge_of_an_own_exclusive_queue_is_purge_ok() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 2);
    declared_exclusive(&mut owner, "private");
    publish(&mut owner, "", "private", 2);
    assert_answer(&mut owner, purge("private", false), purge_ok(2));
}

#[test]
fn purge_without_a_queue_name_purges_the_last_declared_queue() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "other");
    declared(&mut client, "work");
    publish(&mut client, "", "work", 1);
    publish(&mut client, "", "other", 1);
    assert_answer(&mut client, purge("", false), purge_ok(1));
    assert_eq!(counts(&mut client, "other"), (1, 0));
}

#[test]
fn the_last_declared_queue_belongs_to_its_channel() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    client.open_channel(2);
    client.send(2, purge("", false));
    let methods = client.methods();
    let expected = (404, "NOT_FOUND - no previously declared queue".to_string(), PURGE.0, PURGE.1);
    assert_eq!(only_channel_close(&methods, 2), expected);
}

#[test]
fn purge_without_a_queue_name_and_no_declared_queue_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(&mut client, purge("", false), 404, "NOT_FOUND - no previously declared queue", PURGE);
}

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
fn delete_of_an_exclusive_queue_of_another_connection_is_405() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    let mut other = connected(&broker, 2);
    assert_channel_closed(&mut other, delete_method(delete("private")), 405, LOCKED, DELETE);
    assert_eq!(counts(&mut owner, "private"), (0, 0));
}

#[test]
fn delete_without_a_queue_name_deletes_the_last_declared_queue() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "other");
    declared(&mut client, "work");
    assert_answer(&mut client, delete_method(delete("")), delete_ok(0));
    assert!(!queue_exists(&mut client, 2, "work"));
    assert!(queue_exists(&mut client, 3, "other"));
}

#[test]
fn a_passive_declare_makes_the_queue_the_last_declared() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    client.open_channel(2);
    client.send(2, declare_method(queue::Declare { passive: true, ..declare("work") }));
    client.send(2, delete_method(delete("")));
    assert_eq!(client.methods(), vec![(2, declare_ok("work", 0, 0)), (2, delete_ok(0))]);
}

#[test]
fn delete_without_a_queue_name_and_no_declared_queue_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        delete_method(delete("")),
        404,
        "NOT_FOUND - no previously declared queue",
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
fn delete_answers_delete_ok_before_cancelling_the_own_consumer() {
    let broker = Broker::new(1);
    let mut client = connected_with_cancel_notify(&broker, 0);
    declared(&mut client, "work");
    consume(&mut client, 1, "work", "c1", 0);
    client.send(1, delete_method(delete("work")));
    assert_eq!(client.methods(), vec![(1, delete_ok(0)), (1, cancel("c1"))]);
}

#[test]
fn delete_with_nowait_still_cancels_the_own_consumer() {
    let broker = Broker::new(3);
    let mut client = connected_with_cancel_notify(&broker, 2);
    declared(&mut client, "work");
    consume(&mut client, 1, "work", "c1", 0);
    client.send(1, delete_method(queue::Delete { nowait: true, ..delete("work") }));
    assert_eq!(client.methods(), vec![(1, cancel("c1"))]);
}

#[test]
fn delete_of_a_queue_on_another_shard_answers_delete_ok_before_the_deleting_channels_cancel() {
    let broker = Broker::new(3);
    let owner = crate::broker::placement::queue_owner("/", "work", 3);
    let mut client = connected_with_cancel_notify(&broker, (owner + 1) % 3);
    declared(&mut client, "work");
    client.open_channel(2);
    consume(&mut client, 2, "work", "c2", 0);
    consume(&mut client, 1, "work", "c1", 0);
    client.send(1, delete_method(delete("work")));
    let methods = client.methods();
    let on_channel_1: Vec<_> = methods.iter().filter(|(channel, _)| *channel == 1).cloned().collect();
    assert_eq!(on_channel_1, vec![(1, delete_ok(0)), (1, cancel("c1"))]);
    assert!(methods.contains(&(2, cancel("c2"))), "{methods:?}");
    assert_eq!(methods.len(), 3, "{methods:?}");
}
