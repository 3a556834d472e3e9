//! Conversation tests: queue. See `super` for the harness.
//!
//! Every reply queue.declare, queue.bind, queue.unbind, queue.purge and queue.delete can give,
//! and every queue argument refused at declare, with RabbitMQ 3.10's codes, texts and
//! class/method ids. Exclusive queues are declared on one shard and used from another. A test
//! marked `ignore` states where this broker still differs from RabbitMQ; it asserts RabbitMQ's
//! behaviour.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{basic, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};

use super::*;

const DECLARE: (u16, u16) = (50, 10);
const BIND: (u16, u16) = (50, 20);
const PURGE: (u16, u16) = (50, 30);
const DELETE: (u16, u16) = (50, 40);
const UNBIND: (u16, u16) = (50, 50);

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

fn purge(name: &str, nowait: bool) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge { queue: name.into(), nowait }))
}

fn purge_ok(message_count: u32) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk { message_count }))
}

fn delete(name: &str) -> queue::Delete {
    queue::Delete { queue: name.into(), ..Default::default() }
}

fn delete_method(delete: queue::Delete) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Delete(delete))
}

fn delete_ok(message_count: u32) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk { message_count }))
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

/// A client on `shard` that announces the consumer_cancel_notify capability, with channel 1
/// open: RabbitMQ sends basic.cancel for a deleted queue only to such clients.
fn connected_with_cancel_notify(broker: &Broker, shard: usize) -> Client<'_> {
    let mut client = broker.connect_raw(shard, true);
    client.handshake_bytes(crate::codec::frame::PROTOCOL_HEADER);
    let mut capabilities = FieldTable::default();
    capabilities.insert("consumer_cancel_notify".into(), AMQPValue::Boolean(true));
    let mut client_properties = FieldTable::default();
    client_properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    let start_ok = connection::StartOk {
        client_properties,
        mechanism: "PLAIN".into(),
        response: LongString::from(b"\0guest\0guest".to_vec()),
        locale: "en_US".into(),
    };
    let start_ok = AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok));
    for method in [start_ok, tune_ok(crate::limits::CHANNEL_MAX, FRAME_MAX_BYTES, 0), open("/")] {
        client.handshake_method(method);
    }
    client.output();
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

/// The channel.close of declaring queue 'q' with the one argument `name` = `value`.
fn declare_refused(name: &str, value: AMQPValue) -> (u16, String, u16, u16) {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    client.send(1, declare_method(queue::Declare { arguments: table(&[(name, value)]), ..declare("q") }));
    let close = only_channel_close(&client.methods(), 1);
    assert!(!queue_exists(&mut client, 2, "q"), "a refused declare created the queue");
    close
}

/// RabbitMQ's close for an invalid queue argument: `reason` in Erlang's notation.
fn invalid_arg(name: &str, reason: &str) -> (u16, String, u16, u16) {
    let text = format!("PRECONDITION_FAILED - invalid arg '{name}' for queue 'q' in vhost '/': {reason}");
    (406, text, DECLARE.0, DECLARE.1)
}

/// Checks a refusal's code and text shape (each has a test with RabbitMQ's full text too).
fn assert_invalid_arg_refused(close: (u16, String, u16, u16), name: &str) {
    let (code, text, class_id, method_id) = close;
    assert_eq!((code, class_id, method_id), (406, DECLARE.0, DECLARE.1));
    let prefix = format!("PRECONDITION_FAILED - invalid arg '{name}' for queue 'q' in vhost '/': ");
    assert!(text.starts_with(&prefix), "{text}");
}

// queue.declare

#[test]
fn declare_answers_declare_ok_with_the_name_and_zero_counts() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_answer(&mut client, declare_method(declare("work")), declare_ok("work", 0, 0));
    assert!(queue_exists(&mut client, 2, "work"));
}

#[test]
fn declare_with_nowait_sends_nothing_and_creates_the_queue() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    client.send(1, declare_method(queue::Declare { nowait: true, ..declare("work") }));
    assert!(client.output().is_empty());
    assert!(queue_exists(&mut client, 2, "work"));
}

#[test]
fn redeclare_reports_ready_messages_and_consumers() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 3);
    client.open_channel(2);
    consume(&mut client, 2, "work", "c1", 1);
    assert_answer(&mut client, declare_method(declare("work")), declare_ok("work", 2, 1));
}

#[test]
fn passive_declare_from_another_shard_reports_the_counts() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 0);
    declared(&mut owner, "work");
    consume(&mut owner, 1, "work", "c1", 1);
    let mut publisher = connected(&broker, 2);
    publish(&mut publisher, "", "work", 3);
    let mut observer = connected(&broker, 1);
    assert_eq!(counts(&mut observer, "work"), (2, 1));
}

#[test]
fn passive_declare_counts_every_message_the_channel_published_before() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 1);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 5);
    assert_eq!(counts(&mut client, "work"), (5, 0));
}

#[test]
fn passive_declare_with_nowait_sends_nothing() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    client.send(1, declare_method(queue::Declare { passive: true, nowait: true, ..declare("work") }));
    assert!(client.output().is_empty());
}

#[test]
fn passive_declare_of_a_missing_queue_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        declare_method(queue::Declare { passive: true, ..declare("nowhere") }),
        404,
        "NOT_FOUND - no queue 'nowhere' in vhost '/'",
        DECLARE,
    );
}

#[test]
fn passive_declare_ignores_flags_and_arguments() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    let passive = queue::Declare {
        passive: true,
        durable: true,
        auto_delete: true,
        arguments: table(&[("x-message-ttl", AMQPValue::LongInt(-1))]),
        ..declare("work")
    };
    assert_answer(&mut client, declare_method(passive), declare_ok("work", 0, 0));
}

#[test]
fn redeclare_with_other_durability_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_channel_closed(
        &mut client,
        declare_method(queue::Declare { durable: true, ..declare("work") }),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'work' in vhost '/': received 'true' but current is 'false'",
        DECLARE,
    );
}

#[test]
fn redeclare_with_other_auto_delete_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let auto_delete = queue::Declare { auto_delete: true, ..declare("work") };
    assert_answer(&mut client, declare_method(auto_delete), declare_ok("work", 0, 0));
    assert_channel_closed(
        &mut client,
        declare_method(declare("work")),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue 'work' in vhost '/': received 'false' but current is 'true'",
        DECLARE,
    );
}

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
fn redeclare_of_an_exclusive_queue_is_checked_for_exclusivity_first() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared_exclusive(&mut client, "private");
    let durable = queue::Declare { durable: true, ..declare("private") };
    assert_channel_closed(&mut client, declare_method(durable), 405, LOCKED, DECLARE);
}

#[test]
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

#[test]
fn an_auto_delete_queue_goes_with_its_last_consumer() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 1);
    let auto_delete = queue::Declare { auto_delete: true, ..declare("work") };
    assert_answer(&mut client, declare_method(auto_delete), declare_ok("work", 0, 0));
    assert!(queue_exists(&mut client, 2, "work"), "an auto-delete queue that never had a consumer went");
    consume(&mut client, 1, "work", "c1", 0);
    let cancel = basic::Cancel { consumer_tag: "c1".into(), nowait: false };
    client.send(1, AMQPClass::Basic(basic::AMQPMethod::Cancel(cancel)));
    let cancelled = basic::CancelOk { consumer_tag: "c1".into() };
    assert_eq!(client.methods(), vec![(1, AMQPClass::Basic(basic::AMQPMethod::CancelOk(cancelled)))]);
    assert!(!queue_exists(&mut client, 3, "work"));
}

#[test]
fn declare_with_the_reserved_amq_prefix_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        declare_method(declare("amq.work")),
        403,
        "ACCESS_REFUSED - queue name 'amq.work' contains reserved prefix 'amq.*'",
        DECLARE,
    );
    assert!(!queue_exists(&mut client, 2, "amq.work"));
}

#[test]
fn passive_declare_of_a_missing_amq_queue_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        declare_method(queue::Declare { passive: true, ..declare("amq.work") }),
        404,
        "NOT_FOUND - no queue 'amq.work' in vhost '/'",
        DECLARE,
    );
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
fn redeclare_of_a_server_named_queue_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let name = server_named(&mut client);
    let text = format!("ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'");
    assert_channel_closed(&mut client, declare_method(declare(&name)), 403, &text, DECLARE);
}

#[test]
fn a_queue_method_the_server_sends_closes_the_connection_with_503() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    client.send(1, declare_ok("work", 0, 0));
    let methods = client.methods();
    let (code, text, _, _) = connection_close(&methods).expect("connection.close");
    assert_eq!((code, text.as_str()), (503, "COMMAND_INVALID - unimplemented method"));
    assert!(client.closed);
}

#[test]
fn a_queue_method_the_server_sends_is_an_unimplemented_method() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    client.send(1, declare_ok("work", 0, 0));
    let methods = client.methods();
    assert_eq!(connection_close(&methods), Some((503, "COMMAND_INVALID - unimplemented method".into(), 50, 11)));
}

// queue.declare: argument equivalence

fn declare_with(name: &str, arguments: &[(&str, AMQPValue)]) -> AMQPClass {
    declare_method(queue::Declare { arguments: table(arguments), ..declare(name) })
}

#[test]
fn redeclare_with_the_same_arguments_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-message-ttl", AMQPValue::LongInt(1000)), ("x-dead-letter-exchange", text("dlx"))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
}

#[test]
fn redeclare_with_an_added_argument_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_channel_closed(
        &mut client,
        declare_with("work", &[("x-message-ttl", AMQPValue::LongInt(1000))]),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'work' in vhost '/': received the value '1000' of type 'signedint' but current is none",
        DECLARE,
    );
}

#[test]
fn redeclare_without_an_argument_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-max-length", AMQPValue::LongInt(10))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    assert_channel_closed(
        &mut client,
        declare_method(declare("work")),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'work' in vhost '/': received none but current is the value '10' of type 'signedint'",
        DECLARE,
    );
}

#[test]
fn redeclare_with_another_argument_value_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-single-active-consumer", AMQPValue::Boolean(true))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    client.send(1, declare_with("work", &[("x-single-active-consumer", AMQPValue::Boolean(false))]));
    let (code, text, class_id, method_id) = only_channel_close(&client.methods(), 1);
    assert_eq!((code, class_id, method_id), (406, DECLARE.0, DECLARE.1));
    let prefix =
        "PRECONDITION_FAILED - inequivalent arg 'x-single-active-consumer' for queue 'work' in vhost '/': received ";
    assert!(text.starts_with(prefix), "{text}");
}

#[test]
fn redeclare_with_another_argument_value_has_rabbitmq_text() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-message-ttl", AMQPValue::LongInt(1000))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    assert_channel_closed(
        &mut client,
        declare_with("work", &[("x-message-ttl", AMQPValue::LongInt(2000))]),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'work' in vhost '/': received '2000' but current is '1000'",
        DECLARE,
    );
}

#[test]
fn redeclare_with_an_argument_of_another_integer_width_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-message-ttl", AMQPValue::LongInt(1000))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    let wider = [("x-message-ttl", AMQPValue::LongLongInt(1000))];
    assert_answer(&mut client, declare_with("work", &wider), declare_ok("work", 0, 0));
}

#[test]
fn redeclare_with_another_unknown_argument_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_answer(&mut client, declare_with("work", &[("x-custom", text("a"))]), declare_ok("work", 0, 0));
    assert_answer(&mut client, declare_with("work", &[("x-custom", text("b"))]), declare_ok("work", 0, 0));
}

#[test]
fn redeclare_with_x_queue_type_classic_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_answer(&mut client, declare_with("work", &[("x-queue-type", text("classic"))]), declare_ok("work", 0, 0));
}

#[test]
fn redeclare_with_an_invalid_argument_is_inequivalent() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_channel_closed(
        &mut client,
        declare_with("work", &[("x-message-ttl", AMQPValue::LongInt(-1))]),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'work' in vhost '/': received the value '-1' of type 'signedint' but current is none",
        DECLARE,
    );
}

// queue.declare: invalid arguments

#[test]
fn valid_arguments_are_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [
        ("x-message-ttl", AMQPValue::LongInt(0)),
        ("x-expires", AMQPValue::LongInt(60_000)),
        ("x-max-length", AMQPValue::LongLongInt(0)),
        ("x-max-length-bytes", AMQPValue::ShortInt(1024)),
        ("x-overflow", text("reject-publish-dlx")),
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-routing-key", text("dead")),
        ("x-max-priority", AMQPValue::ShortShortUInt(255)),
        ("x-single-active-consumer", AMQPValue::Boolean(true)),
        ("x-queue-type", text("classic")),
        ("x-custom", text("anything")),
    ];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
}

#[test]
fn negative_x_message_ttl_is_406() {
    assert_eq!(
        declare_refused("x-message-ttl", AMQPValue::LongInt(-1)),
        invalid_arg("x-message-ttl", "{value_negative,-1}")
    );
}

#[test]
fn x_message_ttl_of_a_string_is_406() {
    assert_invalid_arg_refused(declare_refused("x-message-ttl", text("60")), "x-message-ttl");
}

#[test]
fn x_message_ttl_of_a_string_has_rabbitmq_reason() {
    let expected = invalid_arg("x-message-ttl", "\"expected integer, got longstr\"");
    assert_eq!(declare_refused("x-message-ttl", text("60")), expected);
}

#[test]
fn x_message_ttl_above_the_erlang_timer_limit_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-message-ttl", AMQPValue::LongLongInt(4_294_967_296))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
}

#[test]
fn zero_x_expires_is_406() {
    assert_eq!(declare_refused("x-expires", AMQPValue::LongInt(0)), invalid_arg("x-expires", "{value_zero,0}"));
}

#[test]
fn negative_x_expires_is_406() {
    assert_eq!(declare_refused("x-expires", AMQPValue::LongInt(-5)), invalid_arg("x-expires", "{value_negative,-5}"));
}

#[test]
fn x_expires_of_a_boolean_is_406() {
    assert_invalid_arg_refused(declare_refused("x-expires", AMQPValue::Boolean(true)), "x-expires");
}

#[test]
fn x_expires_of_a_boolean_has_rabbitmq_reason() {
    let expected = invalid_arg("x-expires", "\"expected integer, got bool\"");
    assert_eq!(declare_refused("x-expires", AMQPValue::Boolean(true)), expected);
}

#[test]
fn negative_x_max_length_is_406() {
    assert_eq!(
        declare_refused("x-max-length", AMQPValue::LongInt(-1)),
        invalid_arg("x-max-length", "{value_negative,-1}")
    );
}

#[test]
fn negative_x_max_length_bytes_is_406() {
    let expected = invalid_arg("x-max-length-bytes", "{value_negative,-2}");
    assert_eq!(declare_refused("x-max-length-bytes", AMQPValue::LongLongInt(-2)), expected);
}

#[test]
fn x_max_length_of_a_string_is_406() {
    assert_invalid_arg_refused(declare_refused("x-max-length", text("10")), "x-max-length");
}

#[test]
fn unknown_x_overflow_is_406() {
    assert_invalid_arg_refused(declare_refused("x-overflow", text("drop-tail")), "x-overflow");
}

#[test]
fn unknown_x_overflow_has_rabbitmq_reason() {
    assert_eq!(declare_refused("x-overflow", text("drop-tail")), invalid_arg("x-overflow", "invalid_overflow"));
}

#[test]
fn x_overflow_of_an_integer_is_406() {
    assert_invalid_arg_refused(declare_refused("x-overflow", AMQPValue::LongInt(1)), "x-overflow");
}

#[test]
fn x_overflow_of_an_integer_names_its_amqp_type() {
    let expected = invalid_arg("x-overflow", "{unacceptable_type,signedint}");
    assert_eq!(declare_refused("x-overflow", AMQPValue::LongInt(1)), expected);
}

#[test]
fn x_dead_letter_exchange_of_an_integer_is_406() {
    let (code, text, class_id, method_id) = declare_refused("x-dead-letter-exchange", AMQPValue::LongInt(1));
    assert_eq!((code, class_id, method_id), (406, DECLARE.0, DECLARE.1));
    assert!(text.starts_with("PRECONDITION_FAILED - invalid "), "{text}");
    assert!(text.contains("'x-dead-letter-exchange'") && text.contains("queue 'q' in vhost '/'"), "{text}");
}

#[test]
fn x_dead_letter_exchange_of_an_integer_has_rabbitmq_text() {
    let text =
        "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'";
    let expected = (406, text.to_string(), DECLARE.0, DECLARE.1);
    assert_eq!(declare_refused("x-dead-letter-exchange", AMQPValue::LongInt(1)), expected);
}

#[test]
fn x_dead_letter_routing_key_without_an_exchange_is_406() {
    assert_invalid_arg_refused(declare_refused("x-dead-letter-routing-key", text("dead")), "x-dead-letter-routing-key");
}

#[test]
fn x_dead_letter_routing_key_without_an_exchange_has_rabbitmq_reason() {
    let expected = invalid_arg("x-dead-letter-routing-key", "routing_key_but_no_dlx_defined");
    assert_eq!(declare_refused("x-dead-letter-routing-key", text("dead")), expected);
}

#[test]
fn x_dead_letter_routing_key_of_an_integer_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-dead-letter-exchange", text("dlx")), ("x-dead-letter-routing-key", AMQPValue::LongInt(7))];
    client.send(1, declare_with("q", &arguments));
    assert_invalid_arg_refused(only_channel_close(&client.methods(), 1), "x-dead-letter-routing-key");
}

#[test]
fn x_max_priority_above_255_is_406() {
    assert_invalid_arg_refused(declare_refused("x-max-priority", AMQPValue::LongInt(256)), "x-max-priority");
}

#[test]
fn x_max_priority_above_255_has_rabbitmq_reason() {
    let expected = invalid_arg("x-max-priority", "{max_value_exceeded,256}");
    assert_eq!(declare_refused("x-max-priority", AMQPValue::LongInt(256)), expected);
}

#[test]
fn negative_x_max_priority_is_406() {
    let expected = invalid_arg("x-max-priority", "{value_negative,-1}");
    assert_eq!(declare_refused("x-max-priority", AMQPValue::LongInt(-1)), expected);
}

#[test]
fn zero_x_max_priority_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-max-priority", AMQPValue::LongInt(0))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
}

#[test]
fn x_single_active_consumer_of_a_string_is_406() {
    let expected = invalid_arg("x-single-active-consumer", "{unacceptable_type,longstr}");
    assert_eq!(declare_refused("x-single-active-consumer", text("true")), expected);
}

#[test]
fn unknown_x_queue_type_is_406() {
    assert_invalid_arg_refused(declare_refused("x-queue-type", text("lazy")), "x-queue-type");
}

#[test]
fn unknown_x_queue_type_has_rabbitmq_reason() {
    let expected = invalid_arg("x-queue-type", "\"unsupported queue type 'lazy'\"");
    assert_eq!(declare_refused("x-queue-type", text("lazy")), expected);
}

#[test]
fn the_type_of_x_dead_letter_exchange_is_checked_before_the_other_arguments() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-queue-type", text("lazy")), ("x-dead-letter-exchange", AMQPValue::LongInt(1))];
    let text =
        "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'";
    assert_channel_closed(&mut client, declare_with("q", &arguments), 406, text, DECLARE);
}

#[test]
fn x_queue_type_is_checked_before_the_other_arguments() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-expires", AMQPValue::LongInt(0)), ("x-queue-type", text("lazy"))];
    let (_, text, _, _) = invalid_arg("x-queue-type", "\"unsupported queue type 'lazy'\"");
    assert_channel_closed(&mut client, declare_with("q", &arguments), 406, &text, DECLARE);
}

#[test]
fn x_message_ttl_above_ten_years_is_406() {
    let ten_years_and_one_ms = AMQPValue::LongLongInt(315_360_000_001);
    let expected = invalid_arg("x-message-ttl", "{value_too_large,315360000001}");
    assert_eq!(declare_refused("x-message-ttl", ten_years_and_one_ms), expected);
}

#[test]
fn an_unknown_x_queue_mode_is_406() {
    let expected = invalid_arg("x-queue-mode", "\"unsupported queue mode 'eager'\"");
    assert_eq!(declare_refused("x-queue-mode", text("eager")), expected);
}

/// Not RabbitMQ's behaviour (it would declare a quorum or stream queue): this broker refuses
/// the queue types it does not implement rather than declaring a classic queue in their place.
#[test]
fn quorum_and_stream_queue_types_are_refused_with_406() {
    for kind in ["quorum", "stream"] {
        let reason = format!("{kind} queues are not supported by this broker (only 'classic')");
        assert_eq!(declare_refused("x-queue-type", text(kind)), invalid_arg("x-queue-type", &reason));
    }
}

/// An extension: RabbitMQ 3.10 refuses x-delivery-limit on a classic queue whatever its value.
#[test]
fn negative_x_delivery_limit_is_406() {
    let expected = invalid_arg("x-delivery-limit", "{value_negative,-1}");
    assert_eq!(declare_refused("x-delivery-limit", AMQPValue::LongInt(-1)), expected);
}

/// An extension: RabbitMQ 3.10 ignores a queue's x-consumer-timeout argument.
#[test]
fn negative_x_consumer_timeout_is_406() {
    let expected = invalid_arg("x-consumer-timeout", "{value_negative,-1}");
    assert_eq!(declare_refused("x-consumer-timeout", AMQPValue::LongInt(-1)), expected);
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

// queue.purge

#[test]
fn purge_answers_purge_ok_with_the_purged_count() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 3);
    assert_answer(&mut client, purge("work", false), purge_ok(3));
    assert_eq!(counts(&mut client, "work"), (0, 0));
}

#[test]
fn purge_with_nowait_sends_nothing_and_purges() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 2);
    client.send(1, purge("work", true));
    assert!(client.output().is_empty());
    assert_eq!(counts(&mut client, "work"), (0, 0));
}

#[test]
fn purge_leaves_unacknowledged_messages_out_of_the_count() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 3);
    client.open_channel(2);
    consume(&mut client, 2, "work", "c1", 1);
    assert_answer(&mut client, purge("work", false), purge_ok(2));
}

#[test]
fn purge_of_a_missing_queue_is_404() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_channel_closed(
        &mut client,
        purge("nowhere", false),
        404,
        "NOT_FOUND - no queue 'nowhere' in vhost '/'",
        PURGE,
    );
}

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
fn delete_answers_delete_ok_with_the_ready_count_and_removes_the_queue() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 1);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 2);
    assert_answer(&mut client, delete_method(delete("work")), delete_ok(2));
    assert!(!queue_exists(&mut client, 2, "work"));
}

#[test]
fn delete_with_nowait_sends_nothing_and_removes_the_queue() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    client.send(1, delete_method(queue::Delete { nowait: true, ..delete("work") }));
    assert!(client.output().is_empty());
    assert!(!queue_exists(&mut client, 2, "work"));
}

#[test]
fn delete_removes_the_queue_bindings() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_answer(&mut client, bind_method(bind("work", "amq.direct", "k")), bind_ok());
    assert_answer(&mut client, delete_method(delete("work")), delete_ok(0));
    declared(&mut client, "work");
    publish(&mut client, "amq.direct", "k", 1);
    assert_eq!(counts(&mut client, "work"), (0, 0));
}

#[test]
fn delete_of_a_missing_queue_is_delete_ok_with_zero() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_answer(&mut client, delete_method(delete("nowhere")), delete_ok(0));
}

#[test]
fn delete_if_unused_of_a_queue_with_a_consumer_is_406() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 0);
    declared(&mut owner, "work");
    consume(&mut owner, 1, "work", "c1", 0);
    let mut client = connected(&broker, 2);
    assert_channel_closed(
        &mut client,
        delete_method(queue::Delete { if_unused: true, ..delete("work") }),
        406,
        "PRECONDITION_FAILED - queue 'work' in vhost '/' in use",
        DELETE,
    );
    assert!(queue_exists(&mut client, 2, "work"));
}

#[test]
fn delete_if_unused_of_a_queue_without_consumers_is_delete_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 1);
    assert_answer(&mut client, delete_method(queue::Delete { if_unused: true, ..delete("work") }), delete_ok(1));
}

#[test]
fn delete_if_empty_of_a_queue_with_messages_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 1);
    assert_channel_closed(
        &mut client,
        delete_method(queue::Delete { if_empty: true, ..delete("work") }),
        406,
        "PRECONDITION_FAILED - queue 'work' in vhost '/' not empty",
        DELETE,
    );
    assert!(queue_exists(&mut client, 2, "work"));
}

#[test]
fn delete_if_empty_of_an_empty_queue_is_delete_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_answer(&mut client, delete_method(queue::Delete { if_empty: true, ..delete("work") }), delete_ok(0));
}

#[test]
fn delete_if_unused_and_if_empty_of_a_busy_full_queue_is_not_empty() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    publish(&mut client, "", "work", 3);
    client.open_channel(2);
    consume(&mut client, 2, "work", "c1", 1);
    assert_channel_closed(
        &mut client,
        delete_method(queue::Delete { if_unused: true, if_empty: true, ..delete("work") }),
        406,
        "PRECONDITION_FAILED - queue 'work' in vhost '/' not empty",
        DELETE,
    );
}

#[test]
fn delete_of_an_exclusive_queue_of_another_connection_is_405() {
    let broker = Broker::new(3);
    let mut owner = connected(&broker, 1);
    declared_exclusive(&mut owner, "private");
    let mut other = connected(&broker, 2);
    assert_channel_closed(&mut other, delete_method(delete("private")), 405, LOCKED, DELETE);
    assert_eq!(counts(&mut owner, "private"), (0, 0));
}

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

#[test]
fn delete_cancels_the_consumers_of_other_connections() {
    let broker = Broker::new(3);
    let mut consumer = connected_with_cancel_notify(&broker, 1);
    declared(&mut consumer, "work");
    consume(&mut consumer, 1, "work", "c1", 0);
    let mut client = connected(&broker, 2);
    assert_answer(&mut client, delete_method(delete("work")), delete_ok(0));
    assert_eq!(consumer.methods(), vec![(1, cancel("c1"))]);
}

#[test]
fn delete_does_not_cancel_consumers_of_clients_without_cancel_notify() {
    let broker = Broker::new(3);
    let mut consumer = connected(&broker, 1);
    declared(&mut consumer, "work");
    consume(&mut consumer, 1, "work", "c1", 0);
    let mut client = connected(&broker, 2);
    assert_answer(&mut client, delete_method(delete("work")), delete_ok(0));
    assert_eq!(consumer.methods(), vec![]);
}

#[test]
fn delete_answers_delete_ok_before_cancelling_the_own_consumer() {
    let broker = Broker::new(1);
    let mut client = connected_with_cancel_notify(&broker, 0);
    declared(&mut client, "work");
    consume(&mut client, 1, "work", "c1", 0);
    client.send(1, delete_method(delete("work")));
    assert_eq!(client.methods(), vec![(1, delete_ok(0)), (1, cancel("c1"))]);
}

#[test]
fn delete_with_nowait_still_cancels_the_own_consumer() {
    let broker = Broker::new(3);
    let mut client = connected_with_cancel_notify(&broker, 2);
    declared(&mut client, "work");
    consume(&mut client, 1, "work", "c1", 0);
    client.send(1, delete_method(queue::Delete { nowait: true, ..delete("work") }));
    assert_eq!(client.methods(), vec![(1, cancel("c1"))]);
}

#[test]
fn delete_of_a_queue_on_another_shard_answers_delete_ok_before_the_deleting_channels_cancel() {
    let broker = Broker::new(3);
    let owner = crate::broker::placement::queue_owner("/", "work", 3);
    let mut client = connected_with_cancel_notify(&broker, (owner + 1) % 3);
    declared(&mut client, "work");
    client.open_channel(2);
    consume(&mut client, 2, "work", "c2", 0);
    consume(&mut client, 1, "work", "c1", 0);
    client.send(1, delete_method(delete("work")));
    let methods = client.methods();
    let on_channel_1: Vec<_> = methods.iter().filter(|(channel, _)| *channel == 1).cloned().collect();
    assert_eq!(on_channel_1, vec![(1, delete_ok(0)), (1, cancel("c1"))]);
    assert!(methods.contains(&(2, cancel("c2"))), "{methods:?}");
    assert_eq!(methods.len(), 3, "{methods:?}");
}

// message TTL

fn get(name: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: name.into(), no_ack: true }))
}

fn get_empty() -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {}))
}

#[test]
fn a_message_of_a_queue_with_x_message_ttl_0_is_not_returned_by_basic_get() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 1);
    let arguments = [("x-message-ttl", AMQPValue::LongInt(0))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    publish(&mut client, "", "work", 1);
    assert_answer(&mut client, get("work"), get_empty());
    assert_eq!(counts(&mut client, "work"), (0, 0));
}

#[test]
fn a_message_with_expiration_0_is_not_returned_by_basic_get() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    let properties = AMQPProperties::default().with_expiration("0".into());
    client.publish(1, "", "work", &properties, b"m");
    assert!(client.output().is_empty(), "a publish was answered");
    assert_answer(&mut client, get("work"), get_empty());
}

#[test]
fn a_message_with_x_message_ttl_0_reaches_a_consumer_that_can_take_it() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-message-ttl", AMQPValue::LongInt(0))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    client.open_channel(2);
    consume(&mut client, 2, "work", "c1", 0);
    client.publish(1, "", "work", &AMQPProperties::default(), b"m");
    let output = client.output();
    assert!(
        matches!(output.as_slice(), [Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::Deliver(_)), .. }, ..]),
        "{output:?}"
    );
}
