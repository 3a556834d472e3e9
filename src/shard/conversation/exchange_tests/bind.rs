//! exchange.bind and exchange.unbind: routing through exchanges, missing ends, x-match and auto-delete.

use super::*;

const BIND: (u16, u16) = (40, 30);

const UNBIND: (u16, u16) = (40, 40);

fn unbind(destination: &str, source: &str, routing_key: &str) -> exchange::Unbind {
    exchange::Unbind {
        destination: destination.into(),
        source: source.into(),
        routing_key: routing_key.into(),
        ..Default::default()
    }
}

fn unbind_method(unbind: exchange::Unbind) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Unbind(unbind))
}

#[test]
fn bind_answers_bind_ok_and_routes_through_the_destination() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "source", "direct");
    declared(&mut client, "destination", "fanout");
    bound_queue(&mut client, "q", "destination", "");
    assert_answer(
        &mut client,
        bind_method(bind("destination", "source", "k")),
        exchange::AMQPMethod::BindOk(exchange::BindOk {}),
    );
    publish(&mut client, "source", "k");
    publish(&mut client, "source", "other");
    assert_eq!(message_count(&mut client, "q"), 1);
}

#[test]
fn bind_with_nowait_sends_nothing_and_binds() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "source", "fanout");
    declared(&mut client, "destination", "fanout");
    bound_queue(&mut client, "q", "destination", "");
    client.send(1, bind_method(exchange::Bind { nowait: true, ..bind("destination", "source", "") }));
    assert!(client.output().is_empty());
    publish(&mut client, "source", "");
    assert_eq!(message_count(&mut client, "q"), 1);
}

#[test]
fn bind_of_the_same_binding_twice_is_bind_ok_and_routes_once() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "source", "direct");
    declared(&mut client, "destination", "fanout");
    bound_queue(&mut client, "q", "destination", "");
    for _ in 0..2 {
        assert_answer(
            &mut client,
            bind_method(bind("destination", "source", "k")),
            exchange::AMQPMethod::BindOk(exchange::BindOk {}),
        );
    }
    publish(&mut client, "source", "k");
    assert_eq!(message_count(&mut client, "q"), 1);
}

#[test]
fn bind_from_a_missing_source_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "destination", "fanout");
    assert_channel_closed(
        &mut client,
        bind_method(bind("destination", "nowhere", "")),
        404,
        "NOT_FOUND - no exchange 'nowhere' in vhost '/'",
        BIND,
    );
}

#[test]
fn bind_to_a_missing_destination_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "source", "fanout");
    assert_channel_closed(
        &mut client,
        bind_method(bind("nowhere", "source", "")),
        404,
        "NOT_FOUND - no exchange 'nowhere' in vhost '/'",
        BIND,
    );
}

#[test]
fn bind_with_both_ends_missing_names_the_source() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    assert_channel_closed(
        &mut client,
        bind_method(bind("missing-destination", "missing-source", "")),
        404,
        "NOT_FOUND - no exchange 'missing-source' in vhost '/'",
        BIND,
    );
}

#[test]
fn bind_to_the_default_exchange_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "source", "fanout");
    assert_channel_closed(
        &mut client,
        bind_method(bind("", "source", "")),
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
        BIND,
    );
}

#[test]
fn bind_from_the_default_exchange_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "destination", "fanout");
    assert_channel_closed(
        &mut client,
        bind_method(bind("destination", "", "")),
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
        BIND,
    );
}

#[test]
fn bind_from_the_default_exchange_to_a_missing_destination_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    assert_channel_closed(
        &mut client,
        bind_method(bind("nowhere", "", "")),
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
        BIND,
    );
}

#[test]
fn bind_from_a_headers_exchange_with_an_x_match_of_a_wrong_type_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "destination", "fanout");
    let arguments = table(&[("x-match", AMQPValue::LongInt(1))]);
    assert_channel_closed(
        &mut client,
        bind_method(exchange::Bind { arguments, ..bind("destination", "amq.headers", "") }),
        406,
        "PRECONDITION_FAILED - Invalid x-match field type signedint (value 1); expected longstr",
        BIND,
    );
}

#[test]
fn bind_from_a_headers_exchange_with_an_unknown_x_match_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "destination", "fanout");
    let arguments = table(&[("x-match", text("some"))]);
    client.send(1, bind_method(exchange::Bind { arguments, ..bind("destination", "amq.headers", "") }));
    let methods = client.methods();
    let (code, text, class_id, method_id) = only_channel_close(&methods);
    assert_eq!((code, class_id, method_id), (406, BIND.0, BIND.1));
    assert!(text.starts_with("PRECONDITION_FAILED - Invalid x-match field value "), "{text}");
    assert!(text.ends_with("; expected all, any, all-with-x, or any-with-x"), "{text}");
}

#[test]
fn bind_from_a_headers_exchange_with_an_unknown_x_match_has_rabbitmq_text() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "destination", "fanout");
    let arguments = table(&[("x-match", text("some"))]);
    assert_channel_closed(
        &mut client,
        bind_method(exchange::Bind { arguments, ..bind("destination", "amq.headers", "") }),
        406,
        "PRECONDITION_FAILED - Invalid x-match field value <<\"some\">>; expected all, any, all-with-x, or any-with-x",
        BIND,
    );
}

#[test]
fn bind_from_a_non_headers_exchange_ignores_x_match() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "destination", "fanout");
    let arguments = table(&[("x-match", text("some"))]);
    assert_answer(
        &mut client,
        bind_method(exchange::Bind { arguments, ..bind("destination", "amq.direct", "") }),
        exchange::AMQPMethod::BindOk(exchange::BindOk {}),
    );
}

#[test]
fn unbind_answers_unbind_ok_and_stops_routing() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "source", "direct");
    declared(&mut client, "destination", "fanout");
    bound_queue(&mut client, "q", "destination", "");
    assert_answer(
        &mut client,
        bind_method(bind("destination", "source", "k")),
        exchange::AMQPMethod::BindOk(exchange::BindOk {}),
    );
    assert_answer(
        &mut client,
        unbind_method(unbind("destination", "source", "k")),
        exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}),
    );
    publish(&mut client, "source", "k");
    assert_eq!(message_count(&mut client, "q"), 0);
}

#[test]
fn unbind_with_nowait_sends_nothing_and_unbinds() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "source", "fanout");
    declared(&mut client, "destination", "fanout");
    bound_queue(&mut client, "q", "destination", "");
    assert_answer(
        &mut client,
        bind_method(bind("destination", "source", "")),
        exchange::AMQPMethod::BindOk(exchange::BindOk {}),
    );
    client.send(1, unbind_method(exchange::Unbind { nowait: true, ..unbind("destination", "source", "") }));
    assert!(client.output().is_empty());
    publish(&mut client, "source", "");
    assert_eq!(message_count(&mut client, "q"), 0);
}

#[test]
fn unbind_of_a_binding_that_does_not_exist_is_unbind_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "source", "direct");
    declared(&mut client, "destination", "fanout");
    assert_answer(
        &mut client,
        unbind_method(unbind("destination", "source", "never-bound")),
        exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}),
    );
}

#[test]
fn unbind_from_a_missing_source_is_unbind_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "destination", "fanout");
    assert_answer(
        &mut client,
        unbind_method(unbind("destination", "nowhere", "")),
        exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}),
    );
}

#[test]
fn unbind_to_a_missing_destination_is_unbind_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "source", "fanout");
    assert_answer(
        &mut client,
        unbind_method(unbind("nowhere", "source", "")),
        exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}),
    );
}

#[test]
fn unbind_to_the_default_exchange_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "source", "fanout");
    assert_channel_closed(
        &mut client,
        unbind_method(unbind("", "source", "")),
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
        UNBIND,
    );
}

#[test]
fn unbinding_the_last_binding_deletes_an_auto_delete_exchange() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    let auto_delete = exchange::Declare { auto_delete: true, ..declare("temporary", "direct") };
    assert_answer(&mut client, declare_method(auto_delete), declare_ok());
    bound_queue(&mut client, "q", "temporary", "k");
    let unbind = queue::Unbind {
        queue: "q".into(),
        exchange: "temporary".into(),
        routing_key: "k".into(),
        arguments: FieldTable::default(),
    };
    client.send(1, AMQPClass::Queue(queue::AMQPMethod::Unbind(unbind)));
    assert_eq!(client.methods(), vec![(1, AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})))]);
    assert!(!exchange_exists(&mut client, 2, "temporary"));
}

#[test]
fn an_auto_delete_exchange_that_was_never_bound_stays() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    let auto_delete = exchange::Declare { auto_delete: true, ..declare("temporary", "fanout") };
    assert_answer(&mut client, declare_method(auto_delete), declare_ok());
    assert!(exchange_exists(&mut client, 2, "temporary"));
}
