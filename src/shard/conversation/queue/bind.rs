//! queue.bind and queue.unbind: routing, nowait, and the 404, 403 and 406 refusals.

use amq_protocol::protocol::{queue, AMQPClass};
use amq_protocol::types::AMQPValue;

use super::*;

fn unbind_ok() -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {}))
}

// queue.bind

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
#[ignore = "differs from RabbitMQ 3.10: with queue and exchange missing the queue is named (RabbitMQ: the exchange)"]
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
#[ignore = "differs from RabbitMQ 3.10: a missing queue is 404 before the default-exchange rule (RabbitMQ: 403 first)"]
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

// queue.unbind

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
#[ignore = "differs from RabbitMQ 3.10: queue.unbind of a missing queue is 404 (RabbitMQ: unbind-ok)"]
fn unbind_of_a_missing_queue_is_unbind_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_answer(&mut client, unbind("nowhere", "amq.direct", "k"), unbind_ok());
}

#[test]
#[ignore = "differs from RabbitMQ 3.10: queue.unbind from a missing exchange is 404 (RabbitMQ: unbind-ok)"]
fn unbind_from_a_missing_exchange_is_unbind_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_answer(&mut client, unbind("work", "nowhere", "k"), unbind_ok());
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
