//! Conversation tests: exchange. See `super` for the harness.
//!
//! Every reply exchange.declare, exchange.delete, exchange.bind and exchange.unbind can give,
//! with RabbitMQ 3.10's codes, texts and class/method ids. A test marked `ignore` states where
//! this broker still differs from RabbitMQ; it asserts RabbitMQ's behaviour.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};

use super::*;

mod bind;
mod declare;
mod delete;

const DECLARE: (u16, u16) = (40, 10);

fn declare(name: &str, kind: &str) -> exchange::Declare {
    exchange::Declare { exchange: name.into(), kind: kind.into(), ..Default::default() }
}

fn declare_method(declare: exchange::Declare) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Declare(declare))
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
