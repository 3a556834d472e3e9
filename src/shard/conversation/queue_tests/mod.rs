//! Conversation tests: queue. See `super` for the harness.
//!
//! Every reply queue.declare, queue.bind, queue.unbind, queue.purge and queue.delete can give,
//! and every queue argument refused at declare, with RabbitMQ 3.10's codes, texts and
//! class/method ids. Exclusive queues are declared on one shard and used from another. A test
//! marked `ignore` states where this broker still differs from RabbitMQ; it asserts RabbitMQ's
//! behaviour. Length limits (x-max-length) are checked where messages come back too.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{basic, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};

use super::*;

mod arguments;
mod bind;
mod declare;
mod delete_purge;
mod exclusive;
mod max_length;
mod policies;
mod pressure;
mod quorum;
mod ttl;
mod unnamed;

const DECLARE: (u16, u16) = (50, 10);

const LOCKED: &str = "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'private' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.";

fn declare(name: &str) -> queue::Declare {
    queue::Declare { queue: name.into(), ..Default::default() }
}

fn declare_method(declare: queue::Declare) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(declare))
}

fn declare_ok(name: &str, message_count: u32, consumer_count: u32) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
        queue: name.into(),
        message_count,
        consumer_count,
    }))
}

fn bind(name: &str, exchange: &str, routing_key: &str) -> queue::Bind {
    queue::Bind { queue: name.into(), exchange: exchange.into(), routing_key: routing_key.into(), ..Default::default() }
}

fn bind_method(bind: queue::Bind) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Bind(bind))
}

fn bind_ok() -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {}))
}

fn delete(name: &str) -> queue::Delete {
    queue::Delete { queue: name.into(), ..Default::default() }
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

/// A client on `shard` of `broker` with channel 1 open.
fn connected(broker: &Broker, shard: usize) -> Client<'_> {
    let mut client = broker.connect(shard);
    client.open_channel(1);
    client
}

/// The channel.close that must be the only answer on `channel`, as (code, text, class, method).
fn only_channel_close(methods: &[(u16, AMQPClass)], channel: u16) -> (u16, String, u16, u16) {
    assert_eq!(methods.len(), 1, "expected only channel.close, got {methods:?}");
    channel_close(methods, channel).unwrap_or_else(|| panic!("expected channel.close on {channel}, got {methods:?}"))
}

/// Sends `method` on channel 1 and expects the broker to close channel 1 with `code`, `text`
/// and the ids of the method that failed.
fn assert_channel_closed(client: &mut Client, method: AMQPClass, code: u16, text: &str, ids: (u16, u16)) {
    client.send(1, method);
    let methods = client.methods();
    assert_eq!(only_channel_close(&methods, 1), (code, text.to_string(), ids.0, ids.1));
}

/// Sends `method` on channel 1 and expects exactly `expected` back on channel 1.
fn assert_answer(client: &mut Client, method: AMQPClass, expected: AMQPClass) {
    client.send(1, method);
    assert_eq!(client.methods(), vec![(1, expected)]);
}

/// Declares `name` (plain) on channel 1 and checks declare-ok.
fn declared(client: &mut Client, name: &str) {
    assert_answer(client, declare_method(declare(name)), declare_ok(name, 0, 0));
}

/// Declares `name` exclusive on channel 1 and checks declare-ok.
fn declared_exclusive(client: &mut Client, name: &str) {
    let exclusive = queue::Declare { exclusive: true, ..declare(name) };
    assert_answer(client, declare_method(exclusive), declare_ok(name, 0, 0));
}

/// (ready messages, consumers) of `name`, asked by a passive declare on channel 1.
fn counts(client: &mut Client, name: &str) -> (u32, u32) {
    client.send(1, declare_method(queue::Declare { passive: true, ..declare(name) }));
    match client.methods().as_slice() {
        [(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))] => (ok.message_count, ok.consumer_count),
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
}

/// Whether queue `name` exists, asked by a passive declare on a channel of its own.
fn queue_exists(client: &mut Client, channel: u16, name: &str) -> bool {
    client.open_channel(channel);
    client.send(channel, declare_method(queue::Declare { passive: true, ..declare(name) }));
    let methods = client.methods();
    match methods.as_slice() {
        [(on, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))] if *on == channel => true,
        _ => {
            let expected = format!("NOT_FOUND - no queue '{name}' in vhost '/'");
            assert_eq!(only_channel_close(&methods, channel), (404, expected, DECLARE.0, DECLARE.1));
            false
        }
    }
}

/// Publishes `count` messages on channel 1 through `exchange` with `routing_key`.
fn publish(client: &mut Client, exchange: &str, routing_key: &str, count: usize) {
    for _ in 0..count {
        client.publish(1, exchange, routing_key, &AMQPProperties::default(), b"m");
    }
    assert!(client.output().is_empty(), "a publish was answered");
}

/// basic.qos then basic.consume (with acks) of `name` on `channel`; returns what came back.
fn consume(client: &mut Client, channel: u16, name: &str, tag: &str, prefetch_count: u16) -> Vec<Out> {
    let qos = basic::Qos { prefetch_count, global: false };
    client.send(channel, AMQPClass::Basic(basic::AMQPMethod::Qos(qos)));
    let consume = basic::Consume { queue: name.into(), consumer_tag: tag.into(), ..Default::default() };
    client.send(channel, AMQPClass::Basic(basic::AMQPMethod::Consume(consume)));
    let output = client.output();
    assert!(
        matches!(
            output.as_slice(),
            [
                Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::QosOk(_)), .. },
                Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)), .. },
                ..
            ]
        ),
        "{output:?}"
    );
    output
}

fn cancel(tag: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel { consumer_tag: tag.into(), nowait: true }))
}

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

fn declare_with(name: &str, arguments: &[(&str, AMQPValue)]) -> AMQPClass {
    declare_method(queue::Declare { arguments: table(arguments), ..declare(name) })
}
