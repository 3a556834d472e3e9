//! exchange.delete: delete-ok, if-unused, and the default and system exchanges.

use super::*;

const DELETE: (u16, u16) = (40, 20);

fn delete(name: &str, if_unused: bool) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Delete(exchange::Delete {
        exchange: name.into(),
        if_unused,
        nowait: false,
    }))
}

#[test]
fn delete_answers_delete_ok_and_removes_the_exchange() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "x", "direct");
    assert_answer(&mut client, delete("x", false), exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}));
    assert!(!exchange_exists(&mut client, 2, "x"));
}

#[test]
fn delete_with_nowait_sends_nothing_and_removes_the_exchange() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "x", "direct");
    let delete = exchange::Delete { exchange: "x".into(), if_unused: false, nowait: true };
    client.send(1, AMQPClass::Exchange(exchange::AMQPMethod::Delete(delete)));
    assert!(client.output().is_empty());
    assert!(!exchange_exists(&mut client, 2, "x"));
}

#[test]
fn delete_of_a_missing_exchange_is_delete_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    assert_answer(&mut client, delete("nowhere", false), exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}));
    assert_answer(&mut client, delete("nowhere", true), exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}));
}

#[test]
fn delete_if_unused_of_an_exchange_with_bindings_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "x", "direct");
    bound_queue(&mut client, "q", "x", "k");
    assert_channel_closed(
        &mut client,
        delete("x", true),
        406,
        "PRECONDITION_FAILED - exchange 'x' in vhost '/' in use",
        DELETE,
    );
    assert!(exchange_exists(&mut client, 2, "x"));
}

#[test]
fn delete_if_unused_of_an_exchange_that_is_only_a_destination_is_delete_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "source", "fanout");
    declared(&mut client, "destination", "fanout");
    assert_answer(
        &mut client,
        bind_method(bind("destination", "source", "")),
        exchange::AMQPMethod::BindOk(exchange::BindOk {}),
    );
    assert_answer(&mut client, delete("destination", true), exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}));
    assert!(!exchange_exists(&mut client, 2, "destination"));
}

#[test]
fn delete_without_if_unused_removes_an_exchange_and_its_bindings() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "x", "direct");
    bound_queue(&mut client, "q", "x", "k");
    assert_answer(&mut client, delete("x", false), exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}));
    declared(&mut client, "x", "direct");
    publish(&mut client, "x", "k");
    assert_eq!(message_count(&mut client, "q"), 0, "the binding outlived its exchange");
}

#[test]
fn delete_of_the_default_exchange_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    assert_channel_closed(
        &mut client,
        delete("", false),
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
        DELETE,
    );
}

#[test]
fn delete_of_a_system_exchange_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    assert_channel_closed(
        &mut client,
        delete("amq.direct", false),
        403,
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed",
        DELETE,
    );
    assert!(exchange_exists(&mut client, 2, "amq.direct"));
}

#[test]
fn delete_of_a_missing_amq_prefixed_exchange_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    assert_channel_closed(
        &mut client,
        delete("amq.nothing", false),
        403,
        "ACCESS_REFUSED - deletion of system exchange 'amq.nothing' in vhost '/' not allowed",
        DELETE,
    );
}
