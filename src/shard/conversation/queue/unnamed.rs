//! An empty queue name: a server-named `amq.gen-` queue at queue.declare, and the channel's last
//! declared queue at queue.bind, queue.unbind, queue.purge and queue.delete.

use amq_protocol::protocol::{queue, AMQPClass};

use super::*;

/// The name in the declare-ok of a server-named queue.
fn server_named(client: &mut Client) -> String {
    client.send(1, declare_method(declare("")));
    match client.methods().as_slice() {
        [(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))] => {
            assert_eq!((ok.message_count, ok.consumer_count), (0, 0));
            ok.queue.to_string()
        }
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
}

// queue.declare

#[test]
fn declare_without_a_name_creates_an_amq_gen_queue() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 2);
    let name = server_named(&mut client);
    let suffix = name.strip_prefix("amq.gen-").unwrap_or_else(|| panic!("{name}"));
    assert_eq!(suffix.len(), 22, "{name}");
    assert!(suffix.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'), "{name}");
    assert_ne!(server_named(&mut client), name, "two server-named queues share a name");
    let mut other = connected(&broker, 0);
    assert!(queue_exists(&mut other, 2, &name));
}

#[test]
fn passive_redeclare_of_a_server_named_queue_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let name = server_named(&mut client);
    assert_eq!(counts(&mut client, &name), (0, 0));
}

#[test]
#[ignore = "differs from RabbitMQ 3.10: a non-passive redeclare of an amq.gen- queue is declare-ok (RabbitMQ: 403)"]
fn redeclare_of_a_server_named_queue_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let name = server_named(&mut client);
    let text = format!("ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'");
    assert_channel_closed(&mut client, declare_method(declare(&name)), 403, &text, DECLARE);
}

// queue.bind

#[test]
fn bind_without_a_queue_name_binds_the_last_declared_queue() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let name = server_named(&mut client);
    assert_answer(&mut client, bind_method(bind("", "amq.direct", "k")), bind_ok());
    publish(&mut client, "amq.direct", "k", 1);
    assert_eq!(counts(&mut client, &name), (1, 0));
}

#[test]
#[ignore = "differs from RabbitMQ 3.10: an empty queue and routing key do not bind with the queue's name as key"]
fn bind_without_queue_name_and_routing_key_uses_the_queue_name_as_key() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_answer(&mut client, bind_method(bind("", "amq.direct", "")), bind_ok());
    publish(&mut client, "amq.direct", "work", 1);
    assert_eq!(counts(&mut client, "work"), (1, 0));
}

#[test]
fn bind_without_a_queue_name_and_no_declared_queue_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        bind_method(bind("", "amq.direct", "k")),
        404,
        "NOT_FOUND - no previously declared queue",
        BIND,
    );
}

// queue.unbind

#[test]
fn unbind_without_a_queue_name_and_no_declared_queue_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        unbind("", "amq.direct", "k"),
        404,
        "NOT_FOUND - no previously declared queue",
        UNBIND,
    );
}

// queue.purge

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

// queue.delete

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
