//! Exclusive queues: redeclared, used and deleted from their own connection and from another
//! connection on another shard, and their end with their connection.

use amq_protocol::protocol::queue;

use super::*;

const LOCKED: &str = "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'private' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.";

/// Declares `name` exclusive on channel 1 and checks declare-ok.
fn declared_exclusive(client: &mut Client, name: &str) {
    let exclusive = queue::Declare { exclusive: true, ..declare(name) };
    assert_answer(client, declare_method(exclusive), declare_ok(name, 0, 0));
}

// queue.declare

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
#[ignore = "differs from RabbitMQ 3.10: exclusivity is checked after durable/auto_delete (RabbitMQ: first, 405)"]
fn redeclare_of_an_exclusive_queue_is_checked_for_exclusivity_first() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared_exclusive(&mut client, "private");
    let durable = queue::Declare { durable: true, ..declare("private") };
    assert_channel_closed(&mut client, declare_method(durable), 405, LOCKED, DECLARE);
}

#[test]
#[ignore = "differs from RabbitMQ 3.10: an exclusive queue keeps the durable flag (RabbitMQ: exclusive queues are never durable)"]
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

// queue.bind

#[test]
fn bind_of_an_exclusive_queue_of_another_connection_is_405() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    let mut other = connected(&broker, 2);
    assert_channel_closed(&mut other, bind_method(bind("private", "amq.direct", "k")), 405, LOCKED, BIND);
}

// queue.unbind

#[test]
fn unbind_of_an_exclusive_queue_of_another_connection_is_405() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    assert_answer(&mut owner, bind_method(bind("private", "amq.direct", "k")), bind_ok());
    let mut other = connected(&broker, 2);
    assert_channel_closed(&mut other, unbind("private", "amq.direct", "k"), 405, LOCKED, UNBIND);
}

// queue.purge

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

// queue.delete

#[test]
fn delete_of_an_exclusive_queue_of_another_connection_is_405() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    let mut other = connected(&broker, 2);
    assert_channel_closed(&mut other, delete_method(delete("private")), 405, LOCKED, DELETE);
    assert_eq!(counts(&mut owner, "private"), (0, 0));
}
