//! Conversation tests: basic. See `super` for the harness.
//!
//! basic.* as a client sees it: publish (missing and internal exchanges, mandatory returns,
//! confirms), ack/nack/reject, qos and prefetch, consume and cancel (with their exclusive and
//! consumer-tag conflicts), get, recover, and the broker's side of deliveries (delivery tags,
//! redelivered flags, requeue on close, basic.cancel when a queue is deleted). Each error test
//! asserts RabbitMQ 3.10's reply code, text and failing method.
//!
//! Connection errors name the failing method in connection.close, as RabbitMQ does.

use amq_protocol::protocol::{basic, confirm, exchange, queue};

use super::*;

mod ack;
mod consume;
mod deliveries;
mod get_recover;
mod publish;
mod qos;

/// The text RabbitMQ gives basic.consume and basic.get on another connection's exclusive queue.
const LOCKED_EXCLUSIVE: &str = "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'private' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.";

fn declare(name: &str) -> AMQPClass {
    declare_with(name, false)
}

fn declare_with(name: &str, exclusive: bool) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive: false,
        durable: false,
        exclusive,
        auto_delete: false,
        nowait: false,
        arguments: FieldTable::default(),
    }))
}

/// What a basic.consume asks beside the queue and the tag.
#[derive(Clone, Copy, Default)]
struct ConsumeOptions {
    no_ack: bool,
    exclusive: bool,
    nowait: bool,
}

fn consume(queue: &str, consumer_tag: &str) -> AMQPClass {
    consume_with(queue, consumer_tag, ConsumeOptions::default(), FieldTable::default())
}

fn consume_with(queue: &str, consumer_tag: &str, options: ConsumeOptions, arguments: FieldTable) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
        queue: queue.into(),
        consumer_tag: consumer_tag.into(),
        no_local: false,
        no_ack: options.no_ack,
        exclusive: options.exclusive,
        nowait: options.nowait,
        arguments,
    }))
}

fn cancel(consumer_tag: &str, nowait: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel { consumer_tag: consumer_tag.into(), nowait }))
}

fn qos(prefetch_count: u16, global: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count, global }))
}

fn get(queue: &str, no_ack: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: queue.into(), no_ack }))
}

fn ack(delivery_tag: u64, multiple: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag, multiple }))
}

fn recover(requeue: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Recover(basic::Recover { requeue }))
}

/// A message as a consumer or basic.get saw it.
#[derive(Debug)]
struct Received {
    channel: u16,
    consumer_tag: String,
    delivery_tag: u64,
    redelivered: bool,
    body: Vec<u8>,
}

/// The basic.deliver messages among `output`, with their bodies, in order.
fn deliveries(output: &[Out]) -> Vec<Received> {
    let mut received: Vec<Received> = Vec::new();
    for out in output {
        match out {
            Out::Method { channel, method: AMQPClass::Basic(basic::AMQPMethod::Deliver(deliver)) } => {
                received.push(Received {
                    channel: *channel,
                    consumer_tag: deliver.consumer_tag.to_string(),
                    delivery_tag: deliver.delivery_tag,
                    redelivered: deliver.redelivered,
                    body: Vec::new(),
                });
            }
            Out::Body { body, .. } => {
                if let Some(last) = received.last_mut() {
                    last.body.extend_from_slice(body);
                }
            }
            _ => {}
        }
    }
    received
}

fn bodies(received: &[Received]) -> Vec<&[u8]> {
    received.iter().map(|message| message.body.as_slice()).collect()
}

/// The one basic.get-ok (with its body) or get-empty (None) among `output`.
fn got(output: &[Out]) -> Option<(basic::GetOk, Vec<u8>)> {
    match output {
        [Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::GetEmpty(_)), .. }] => None,
        [Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::GetOk(ok)), .. }, Out::Header { .. }, rest @ ..] => {
            let body = rest
                .iter()
                .map(|out| match out {
                    Out::Body { body, .. } => body.to_vec(),
                    other => panic!("expected only body frames after get-ok, got {other:?}"),
                })
                .collect::<Vec<_>>()
                .concat();
            Some((ok.clone(), body))
        }
        other => panic!("expected one get-ok or get-empty, got {other:?}"),
    }
}

/// A client on `shard` with channel 1 open.
fn client_on(broker: &Broker, shard: usize) -> Client<'_> {
    let mut client = broker.connect(shard);
    client.open_channel(1);
    client
}

/// A shard other than the owner of queue `name`: a client there crosses shards to reach it.
fn shard_away_from(broker: &Broker, name: &str) -> usize {
    let owner = crate::broker::placement::queue_owner("/", name, broker.shards.len());
    (owner + 1) % broker.shards.len()
}

/// Declares `queue` on channel 1 and checks the declare-ok.
fn declare_queue(client: &mut Client<'_>, name: &str) {
    client.send(1, declare(name));
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))]), "{methods:?}");
}

/// Starts consumer `tag` on channel 1 (acknowledged mode), checks that consume-ok comes
/// first, and returns the deliveries that followed it.
fn start_consumer(client: &mut Client<'_>, queue: &str, tag: &str) -> Vec<Received> {
    client.send(1, consume(queue, tag));
    let output = client.output();
    assert!(
        matches!(output.first(), Some(Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)) }) if ok.consumer_tag.as_str() == tag),
        "{output:?}"
    );
    deliveries(&output)
}

fn publish_text(client: &mut Client<'_>, routing_key: &str, body: &str) {
    client.publish(1, "", routing_key, &AMQPProperties::default(), body.as_bytes());
}

/// The frames of one basic.publish with its content, as a client library writes them.
fn publish_bytes(channel: u16, exchange: &str, routing_key: &str, mandatory: bool, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    let properties = hotpath::encode_properties(&AMQPProperties::default()).expect("test properties encode");
    hotpath::encode_publish(
        &mut out,
        channel,
        exchange.as_bytes(),
        routing_key.as_bytes(),
        mandatory,
        &properties,
        body,
        FRAME_MAX_BYTES,
    )
    .expect("test publish encodes");
    out
}

fn assert_channel_closed(client: &mut Client<'_>, expected: (u16, &str, u16, u16)) {
    let methods = client.methods();
    let (code, text, class_id, method_id) = expected;
    assert_eq!(channel_close(&methods, 1), Some((code, text.to_string(), class_id, method_id)), "{methods:?}");
    assert!(!client.closed, "a channel error must not close the connection");
}

fn assert_connection_closed(client: &mut Client<'_>, expected: (u16, &str, u16, u16)) {
    let methods = client.methods();
    let (code, text, class_id, method_id) = expected;
    assert_eq!(connection_close(&methods), Some((code, text.to_string(), class_id, method_id)), "{methods:?}");
    assert!(client.closed, "the connection should be closed");
}

/// A queue `name` holding `count` messages "m1".."m<count>", declared by a client on the last
/// shard.
fn queue_with_messages(broker: &Broker, name: &str, count: usize) {
    let mut publisher = client_on(broker, broker.shards.len() - 1);
    declare_queue(&mut publisher, name);
    for index in 1..=count {
        publish_text(&mut publisher, name, &format!("m{index}"));
    }
    assert!(publisher.output().is_empty());
}
