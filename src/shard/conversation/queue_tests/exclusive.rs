//! queue.declare of exclusive and auto-delete queues: exclusivity across connections and their lifetime.

use super::*;

#[test]
fn redeclare_of_a_shared_queue_as_exclusive_is_405() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "private");
    assert_channel_closed(
        &mut client,
        declare_method(queue::Declare { exclusive: true, ..declare("private") }),
        405,
        LOCKED,
        DECLARE,
    );
}

#[test]
fn redeclare_of_an_own_exclusive_queue_as_shared_is_405() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared_exclusive(&mut client, "private");
    assert_channel_closed(&mut client, declare_method(declare("private")), 405, LOCKED, DECLARE);
}

#[test]
fn redeclare_of_an_own_exclusive_queue_on_another_channel_is_declare_ok() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 2);
    declared_exclusive(&mut client, "private");
    client.open_channel(2);
    client.send(2, declare_method(queue::Declare { exclusive: true, ..declare("private") }));
    assert_eq!(client.methods(), vec![(2, declare_ok("private", 0, 0))]);
}

#[test]
fn redeclare_of_an_exclusive_queue_is_checked_for_exclusivity_first() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared_exclusive(&mut client, "private");
    let durable = queue::Declare { durable: true, ..declare("private") };
    assert_channel_closed(&mut client, declare_method(durable), 405, LOCKED, DECLARE);
}

#[test]
fn exclusive_queues_are_never_durable() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let durable = queue::Declare { exclusive: true, durable: true, ..declare("private") };
    assert_answer(&mut client, declare_method(durable), declare_ok("private", 0, 0));
    let transient = queue::Declare { exclusive: true, ..declare("private") };
    assert_answer(&mut client, declare_method(transient), declare_ok("private", 0, 0));
}

#[test]
fn declare_of_an_exclusive_queue_of_another_connection_is_405() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    let mut other = connected(&broker, 2);
    assert_channel_closed(&mut other, declare_method(declare("private")), 405, LOCKED, DECLARE);
    let mut other = connected(&broker, 0);
    let exclusive = queue::Declare { exclusive: true, ..declare("private") };
    assert_channel_closed(&mut other, declare_method(exclusive), 405, LOCKED, DECLARE);
}

#[test]
fn passive_declare_of_an_exclusive_queue_of_another_connection_is_405() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    let mut other = connected(&broker, 2);
    let passive = queue::Declare { passive: true, ..declare("private") };
    assert_channel_closed(&mut other, declare_method(passive), 405, LOCKED, DECLARE);
}

#[test]
fn an_exclusive_queue_goes_with_its_connection() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    owner.drop_connection();
    let mut other = connected(&broker, 2);
    assert!(!queue_exists(&mut other, 2, "private"));
    declared(&mut other, "private");
}

#[test]
fn an_auto_delete_queue_goes_with_its_last_consumer() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 1);
    let auto_delete = queue::Declare { auto_delete: true, ..declare("work") };
    assert_answer(&mut client, declare_method(auto_delete), declare_ok("work", 0, 0));
    assert!(queue_exists(&mut client, 2, "work"), "an auto-delete queue that never had a consumer went");
    consume(&mut client, 1, "work", "c1", 0);
    let cancel = basic::Cancel { consumer_tag: "c1".into(), nowait: false };
    client.send(1, AMQPClass::Basic(basic::AMQPMethod::Cancel(cancel)));
    let cancelled = basic::CancelOk { consumer_tag: "c1".into() };
    assert_eq!(client.methods(), vec![(1, AMQPClass::Basic(basic::AMQPMethod::CancelOk(cancelled)))]);
    assert!(!queue_exists(&mut client, 3, "work"));
}

#[test]
fn connection_close_deletes_the_exclusive_queues_before_close_ok_as_rabbitmq() {
    use amq_protocol::protocol::connection;
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 2);
    declared_exclusive(&mut owner, "private");
    let writer_knows =
        |broker: &Broker| broker.shards[0].snapshot().vhost("/").is_some_and(|v| v.queues.contains_key("private"));
    assert!(writer_knows(&broker));
    let close = connection::Close { reply_code: 200, reply_text: "bye".into(), class_id: 0, method_id: 0 };
    owner.send(0, AMQPClass::Connection(connection::AMQPMethod::Close(close)));
    let methods = owner.methods();
    assert!(
        matches!(methods.as_slice(), [(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))]),
        "{methods:?}"
    );
    // By the time close-ok was written the writer had dropped the queue, and the closing
    // connection's own shard had caught up with it.
    assert!(!writer_knows(&broker));
    assert!(broker.shards[2].snapshot().vhost("/").is_some_and(|v| !v.queues.contains_key("private")));
}
