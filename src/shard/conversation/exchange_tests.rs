//! Conversation tests: exchange. See `super` for the harness.
//!
//! Every reply exchange.declare, exchange.delete, exchange.bind and exchange.unbind can give,
//! with RabbitMQ 3.10's codes, texts and class/method ids. A test marked `ignore` states where
//! this broker still differs from RabbitMQ; it asserts RabbitMQ's behaviour.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};

use super::*;

const DECLARE: (u16, u16) = (40, 10);
const DELETE: (u16, u16) = (40, 20);
const BIND: (u16, u16) = (40, 30);
const UNBIND: (u16, u16) = (40, 40);

fn declare(name: &str, kind: &str) -> exchange::Declare {
    exchange::Declare { exchange: name.into(), kind: kind.into(), ..Default::default() }
}

fn declare_method(declare: exchange::Declare) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Declare(declare))
}

fn delete(name: &str, if_unused: bool) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Delete(exchange::Delete {
        exchange: name.into(),
        if_unused,
        nowait: false,
    }))
}

fn bind(destination: &str, source: &str, routing_key: &str) -> exchange::Bind {
    exchange::Bind {
        destination: destination.into(),
        source: source.into(),
        routing_key: routing_key.into(),
        ..Default::default()
    }
}

fn bind_method(bind: exchange::Bind) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Bind(bind))
}

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

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in entries {
        table.insert((*name).into(), value.clone());
    }
    table
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// A client on shard 0 of `broker` with channel 1 open.
fn connected(broker: &Broker) -> Client<'_> {
    let mut client = broker.connect(0);
    client.open_channel(1);
    client
}

/// The channel.close that must be the only answer on channel 1, as (code, text, class, method).
fn only_channel_close(methods: &[(u16, AMQPClass)]) -> (u16, String, u16, u16) {
    assert_eq!(methods.len(), 1, "expected only channel.close, got {methods:?}");
    channel_close(methods, 1).unwrap_or_else(|| panic!("expected channel.close on 1, got {methods:?}"))
}

/// Sends `method` on channel 1 and expects the broker to close channel 1 with `code`, `text`
/// and the ids of the method that failed.
fn assert_channel_closed(client: &mut Client, method: AMQPClass, code: u16, text: &str, ids: (u16, u16)) {
    client.send(1, method);
    let methods = client.methods();
    assert_eq!(only_channel_close(&methods), (code, text.to_string(), ids.0, ids.1));
}

/// Sends `method` on channel 1 and expects exactly `expected` back on channel 1.
fn assert_answer(client: &mut Client, method: AMQPClass, expected: exchange::AMQPMethod) {
    client.send(1, method);
    let methods = client.methods();
    assert_eq!(methods, vec![(1, AMQPClass::Exchange(expected))]);
}

fn declare_ok() -> exchange::AMQPMethod {
    exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})
}

/// Declares `name` of `kind` on channel 1 and checks declare-ok.
fn declared(client: &mut Client, name: &str, kind: &str) {
    assert_answer(client, declare_method(declare(name, kind)), declare_ok());
}

/// Whether `name` exists, asked by a passive declare on a channel of its own.
fn exchange_exists(client: &mut Client, channel: u16, name: &str) -> bool {
    client.open_channel(channel);
    let passive = exchange::Declare { passive: true, ..declare(name, "direct") };
    client.send(channel, declare_method(passive));
    let methods = client.methods();
    match methods.as_slice() {
        [(on, AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(_)))] if *on == channel => true,
        _ => {
            let close = channel_close(&methods, channel);
            let expected = format!("NOT_FOUND - no exchange '{name}' in vhost '/'");
            assert_eq!(close, Some((404, expected, DECLARE.0, DECLARE.1)), "{methods:?}");
            false
        }
    }
}

/// Declares queue `name` on channel 1 and binds it to `exchange` with `routing_key`.
fn bound_queue(client: &mut Client, name: &str, exchange: &str, routing_key: &str) {
    let declare = queue::Declare { queue: name.into(), ..Default::default() };
    client.send(1, AMQPClass::Queue(queue::AMQPMethod::Declare(declare)));
    let bind = queue::Bind {
        queue: name.into(),
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        ..Default::default()
    };
    client.send(1, AMQPClass::Queue(queue::AMQPMethod::Bind(bind)));
    let methods = client.methods();
    assert!(
        matches!(
            methods.as_slice(),
            [
                (1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_))),
                (1, AMQPClass::Queue(queue::AMQPMethod::BindOk(_)))
            ]
        ),
        "{methods:?}"
    );
}

/// The ready messages of queue `name`, asked by a passive queue.declare on channel 1.
fn message_count(client: &mut Client, name: &str) -> u32 {
    let passive = queue::Declare { queue: name.into(), passive: true, ..Default::default() };
    client.send(1, AMQPClass::Queue(queue::AMQPMethod::Declare(passive)));
    match client.methods().as_slice() {
        [(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))] => ok.message_count,
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
}

fn publish(client: &mut Client, exchange: &str, routing_key: &str) {
    client.publish(1, exchange, routing_key, &AMQPProperties::default(), b"m");
    assert!(client.output().is_empty(), "a publish was answered");
}

// exchange.declare

#[test]
fn declare_answers_declare_ok_and_creates_the_exchange() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "logs", "fanout");
    assert!(exchange_exists(&mut client, 2, "logs"));
}

#[test]
fn declare_with_nowait_sends_nothing_and_creates_the_exchange() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    client.send(1, declare_method(exchange::Declare { nowait: true, ..declare("logs", "topic") }));
    assert!(client.output().is_empty());
    assert!(exchange_exists(&mut client, 2, "logs"));
}

#[test]
fn every_exchange_type_can_be_declared() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    for kind in ["direct", "fanout", "topic", "headers"] {
        declared(&mut client, &format!("x-{kind}"), kind);
    }
}

#[test]
fn redeclare_with_the_same_properties_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    let durable = exchange::Declare { durable: true, ..declare("x", "topic") };
    assert_answer(&mut client, declare_method(durable.clone()), declare_ok());
    assert_answer(&mut client, declare_method(durable), declare_ok());
}

#[test]
fn redeclare_from_another_connection_on_another_shard_is_declare_ok() {
    let broker = Broker::new(3);
    let mut first = broker.connect(1);
    first.open_channel(1);
    declared(&mut first, "shared", "direct");
    let mut second = broker.connect(2);
    second.open_channel(1);
    declared(&mut second, "shared", "direct");
}

#[test]
fn redeclare_with_another_type_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "x", "direct");
    assert_channel_closed(
        &mut client,
        declare_method(declare("x", "fanout")),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': received 'fanout' but current is 'direct'",
        DECLARE,
    );
}

#[test]
fn redeclare_with_other_durability_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "x", "direct");
    assert_channel_closed(
        &mut client,
        declare_method(exchange::Declare { durable: true, ..declare("x", "direct") }),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'x' in vhost '/': received 'true' but current is 'false'",
        DECLARE,
    );
}

#[test]
fn redeclare_with_other_auto_delete_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "x", "direct");
    assert_channel_closed(
        &mut client,
        declare_method(exchange::Declare { auto_delete: true, ..declare("x", "direct") }),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for exchange 'x' in vhost '/': received 'true' but current is 'false'",
        DECLARE,
    );
}

#[test]
fn redeclare_with_other_internal_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    let internal = exchange::Declare { internal: true, ..declare("x", "direct") };
    assert_answer(&mut client, declare_method(internal), declare_ok());
    assert_channel_closed(
        &mut client,
        declare_method(declare("x", "direct")),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'internal' for exchange 'x' in vhost '/': received 'false' but current is 'true'",
        DECLARE,
    );
}

#[test]
fn redeclare_with_another_alternate_exchange_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    let with = |name: &str| exchange::Declare {
        arguments: table(&[("alternate-exchange", text(name))]),
        ..declare("x", "direct")
    };
    assert_answer(&mut client, declare_method(with("a")), declare_ok());
    assert_channel_closed(
        &mut client,
        declare_method(with("b")),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'x' in vhost '/': received 'b' but current is 'a'",
        DECLARE,
    );
}

#[test]
fn redeclare_of_a_predeclared_amq_exchange_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    for (name, kind) in [("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic")] {
        let durable = exchange::Declare { durable: true, ..declare(name, kind) };
        assert_answer(&mut client, declare_method(durable), declare_ok());
    }
    let headers = exchange::Declare { durable: true, ..declare("amq.match", "headers") };
    assert_answer(&mut client, declare_method(headers), declare_ok());
}

#[test]
fn redeclare_of_a_predeclared_amq_exchange_as_transient_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    assert_channel_closed(
        &mut client,
        declare_method(declare("amq.topic", "topic")),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.topic' in vhost '/': received 'false' but current is 'true'",
        DECLARE,
    );
}

#[test]
fn declare_with_the_reserved_amq_prefix_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    assert_channel_closed(
        &mut client,
        declare_method(declare("amq.custom", "direct")),
        403,
        "ACCESS_REFUSED - exchange name 'amq.custom' contains reserved prefix 'amq.*'",
        DECLARE,
    );
    assert!(!exchange_exists(&mut client, 2, "amq.custom"));
}

#[test]
fn declare_of_the_default_exchange_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    assert_channel_closed(
        &mut client,
        declare_method(declare("", "direct")),
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
        DECLARE,
    );
}

#[test]
fn passive_declare_of_the_default_exchange_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    assert_channel_closed(
        &mut client,
        declare_method(exchange::Declare { passive: true, ..declare("", "direct") }),
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
        DECLARE,
    );
}

#[test]
fn declare_of_an_unknown_type_closes_the_connection_with_503() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    client.send(1, declare_method(declare("x", "x-unknown")));
    let methods = client.methods();
    assert_eq!(methods.len(), 1, "{methods:?}");
    let (code, text, _, _) = connection_close(&methods).expect("connection.close");
    assert_eq!((code, text.as_str()), (503, "COMMAND_INVALID - unknown exchange type 'x-unknown'"));
    assert!(client.closed);
}

#[test]
fn unknown_type_connection_close_names_exchange_declare() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    client.send(1, declare_method(declare("x", "x-unknown")));
    let methods = client.methods();
    assert_eq!(
        connection_close(&methods),
        Some((503, "COMMAND_INVALID - unknown exchange type 'x-unknown'".into(), DECLARE.0, DECLARE.1))
    );
}

#[test]
fn redeclare_of_an_existing_exchange_with_an_unknown_type_is_503() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "x", "direct");
    client.send(1, declare_method(declare("x", "no-such-type")));
    let methods = client.methods();
    let (code, text, _, _) = connection_close(&methods).expect("connection.close");
    assert_eq!((code, text.as_str()), (503, "COMMAND_INVALID - unknown exchange type 'no-such-type'"));
    assert!(client.closed);
}

#[test]
fn declare_of_the_default_exchange_with_an_unknown_type_closes_the_connection_with_503() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    client.send(1, declare_method(declare("", "x-unknown")));
    let methods = client.methods();
    let (code, text, _, _) = connection_close(&methods).expect("connection.close");
    assert_eq!((code, text.as_str()), (503, "COMMAND_INVALID - unknown exchange type 'x-unknown'"));
    assert!(client.closed);
}

#[test]
fn declare_of_the_default_exchange_with_an_unknown_type_is_503() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    client.send(1, declare_method(declare("", "x-unknown")));
    let methods = client.methods();
    assert_eq!(
        connection_close(&methods),
        Some((503, "COMMAND_INVALID - unknown exchange type 'x-unknown'".into(), DECLARE.0, DECLARE.1))
    );
}

#[test]
fn passive_declare_of_a_missing_exchange_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    assert_channel_closed(
        &mut client,
        declare_method(exchange::Declare { passive: true, ..declare("nowhere", "direct") }),
        404,
        "NOT_FOUND - no exchange 'nowhere' in vhost '/'",
        DECLARE,
    );
}

#[test]
fn passive_declare_ignores_type_and_flags() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    declared(&mut client, "x", "direct");
    let passive = exchange::Declare {
        passive: true,
        durable: true,
        auto_delete: true,
        internal: true,
        ..declare("x", "no-such-type")
    };
    assert_answer(&mut client, declare_method(passive), declare_ok());
}

#[test]
fn passive_declare_on_another_shard_sees_the_exchange() {
    let broker = Broker::new(3);
    let mut first = broker.connect(2);
    first.open_channel(1);
    declared(&mut first, "x", "topic");
    let mut second = broker.connect(1);
    assert!(exchange_exists(&mut second, 1, "x"));
}

#[test]
fn alternate_exchange_of_a_wrong_type_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    let arguments = table(&[("alternate-exchange", AMQPValue::LongInt(1))]);
    client.send(1, declare_method(exchange::Declare { arguments, ..declare("x", "direct") }));
    let methods = client.methods();
    let (code, text, class_id, method_id) = only_channel_close(&methods);
    assert_eq!((code, class_id, method_id), (406, DECLARE.0, DECLARE.1));
    assert!(text.starts_with("PRECONDITION_FAILED - invalid "), "{text}");
    assert!(text.contains("'alternate-exchange'") && text.contains("exchange 'x' in vhost '/'"), "{text}");
    assert!(!exchange_exists(&mut client, 2, "x"));
}

#[test]
fn alternate_exchange_of_a_wrong_type_has_rabbitmq_text() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    let arguments = table(&[("alternate-exchange", AMQPValue::LongInt(1))]);
    assert_channel_closed(
        &mut client,
        declare_method(exchange::Declare { arguments, ..declare("x", "direct") }),
        406,
        "PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in exchange 'x' in vhost '/'",
        DECLARE,
    );
}

#[test]
fn an_exchange_method_the_server_sends_closes_the_connection_with_503() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    client.send(1, AMQPClass::Exchange(declare_ok()));
    let methods = client.methods();
    let (code, text, _, _) = connection_close(&methods).expect("connection.close");
    assert_eq!((code, text.as_str()), (503, "COMMAND_INVALID - unimplemented method"));
    assert!(client.closed);
}

#[test]
fn an_exchange_method_the_server_sends_is_an_unimplemented_method() {
    let broker = Broker::new(1);
    let mut client = connected(&broker);
    client.send(1, AMQPClass::Exchange(declare_ok()));
    let methods = client.methods();
    assert_eq!(connection_close(&methods), Some((503, "COMMAND_INVALID - unimplemented method".into(), 40, 11)));
}

// exchange.delete

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

// exchange.bind

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

// exchange.unbind

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
