//! exchange.declare: declare-ok, redeclares, the reserved amq. prefix, unknown types and passive declares.

use super::*;

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
