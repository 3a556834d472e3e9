//! queue.bind and queue.unbind: routing, missing ends, the default exchange and exclusive queues.

use super::*;

const BIND: (u16, u16) = (50, 20);

const UNBIND: (u16, u16) = (50, 50);

fn unbind(name: &str, exchange: &str, routing_key: &str) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Unbind(queue::Unbind {
        queue: name.into(),
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        arguments: FieldTable::default(),
    }))
}

fn unbind_ok() -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {}))
}

#[test]
fn bind_answers_bind_ok_and_routes() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 1);
    declared(&mut client, "work");
    assert_answer(&mut client, bind_method(bind("work", "amq.direct", "k")), bind_ok());
    publish(&mut client, "amq.direct", "k", 2);
    publish(&mut client, "amq.direct", "other", 1);
    assert_eq!(counts(&mut client, "work"), (2, 0));
}

#[test]
fn bind_with_nowait_sends_nothing_and_binds() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    client.send(1, bind_method(queue::Bind { nowait: true, ..bind("work", "amq.topic", "a.*") }));
    assert!(client.output().is_empty());
    publish(&mut client, "amq.topic", "a.b", 1);
    assert_eq!(counts(&mut client, "work"), (1, 0));
}

#[test]
fn bind_of_a_missing_queue_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        bind_method(bind("nowhere", "amq.direct", "k")),
        404,
        "NOT_FOUND - no queue 'nowhere' in vhost '/'",
        BIND,
    );
}

#[test]
fn bind_to_a_missing_exchange_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_channel_closed(
        &mut client,
        bind_method(bind("work", "nowhere", "k")),
        404,
        "NOT_FOUND - no exchange 'nowhere' in vhost '/'",
        BIND,
    );
}

#[test]
fn bind_with_queue_and_exchange_missing_names_the_exchange() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        bind_method(bind("nowhere", "no-exchange", "k")),
        404,
        "NOT_FOUND - no exchange 'no-exchange' in vhost '/'",
        BIND,
    );
}

#[test]
fn bind_with_a_bad_x_match_to_an_exclusive_queue_of_another_connection_is_406() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    let mut other = connected(&broker, 2);
    let arguments = table(&[("x-match", text("some"))]);
    assert_channel_closed(
        &mut other,
        bind_method(queue::Bind { arguments, ..bind("private", "amq.match", "") }),
        406,
        "PRECONDITION_FAILED - Invalid x-match field value <<\"some\">>; expected all, any, all-with-x, or any-with-x",
        BIND,
    );
}

#[test]
fn bind_to_the_default_exchange_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_channel_closed(
        &mut client,
        bind_method(bind("work", "", "work")),
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
        BIND,
    );
}

#[test]
fn bind_of_a_missing_queue_to_the_default_exchange_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        bind_method(bind("nowhere", "", "nowhere")),
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
        BIND,
    );
}

#[test]
fn bind_of_an_exclusive_queue_of_another_connection_is_405() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    let mut other = connected(&broker, 2);
    assert_channel_closed(&mut other, bind_method(bind("private", "amq.direct", "k")), 405, LOCKED, BIND);
}

#[test]
fn bind_to_a_headers_exchange_with_an_x_match_of_a_wrong_type_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    let arguments = table(&[("x-match", AMQPValue::Boolean(true))]);
    assert_channel_closed(
        &mut client,
        bind_method(queue::Bind { arguments, ..bind("work", "amq.match", "") }),
        406,
        "PRECONDITION_FAILED - Invalid x-match field type bool (value true); expected longstr",
        BIND,
    );
}

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

#[test]
fn unbind_answers_unbind_ok_and_stops_routing() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 2);
    declared(&mut client, "work");
    assert_answer(&mut client, bind_method(bind("work", "amq.direct", "k")), bind_ok());
    assert_answer(&mut client, unbind("work", "amq.direct", "k"), unbind_ok());
    publish(&mut client, "amq.direct", "k", 1);
    assert_eq!(counts(&mut client, "work"), (0, 0));
}

#[test]
fn unbind_of_a_binding_that_does_not_exist_is_unbind_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_answer(&mut client, unbind("work", "amq.direct", "never-bound"), unbind_ok());
}

#[test]
fn unbind_of_a_missing_queue_is_unbind_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_answer(&mut client, unbind("nowhere", "amq.direct", "k"), unbind_ok());
}

#[test]
fn unbind_from_a_missing_exchange_is_unbind_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_answer(&mut client, unbind("work", "nowhere", "k"), unbind_ok());
}

#[test]
fn unbind_of_a_missing_binding_of_an_exclusive_queue_of_another_connection_is_unbind_ok() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    let mut other = connected(&broker, 2);
    assert_answer(&mut other, unbind("private", "amq.direct", "never-bound"), unbind_ok());
}

#[test]
fn unbind_without_queue_name_and_routing_key_uses_the_queue_name_as_key() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_answer(&mut client, bind_method(bind("work", "amq.direct", "work")), bind_ok());
    assert_answer(&mut client, unbind("", "amq.direct", ""), unbind_ok());
    publish(&mut client, "amq.direct", "work", 1);
    assert_eq!(counts(&mut client, "work"), (0, 0));
}

#[test]
fn unbind_from_the_default_exchange_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_channel_closed(
        &mut client,
        unbind("work", "", "work"),
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
        UNBIND,
    );
}

#[test]
fn unbind_of_an_exclusive_queue_of_another_connection_is_405() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    assert_answer(&mut owner, bind_method(bind("private", "amq.direct", "k")), bind_ok());
    let mut other = connected(&broker, 2);
    assert_channel_closed(&mut other, unbind("private", "amq.direct", "k"), 405, LOCKED, UNBIND);
}

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
