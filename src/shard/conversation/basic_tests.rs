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

fn delete_queue(name: &str) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
        queue: name.into(),
        if_unused: false,
        if_empty: false,
        nowait: false,
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

fn nack(delivery_tag: u64, multiple: bool, requeue: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack { delivery_tag, multiple, requeue }))
}

fn reject(delivery_tag: u64, requeue: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Reject(basic::Reject { delivery_tag, requeue }))
}

fn recover(requeue: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Recover(basic::Recover { requeue }))
}

fn recover_async(requeue: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::RecoverAsync(basic::RecoverAsync { requeue }))
}

fn channel_close_method() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    }))
}

fn confirm_select() -> AMQPClass {
    AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false }))
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

/// Hands every frame of `bytes` to the broker as one read of the socket: the driver flushes
/// confirms once at the end of what it read, not after each frame.
fn send_in_one_read(client: &mut Client<'_>, bytes: &[u8]) {
    let mut buffer = BytesMut::from(bytes);
    while let Some(frame) = split_frame(&mut buffer, client.connection.frame_max.get()).expect("whole frames") {
        let result = client.broker.run(client.dispatcher.handle_frame(frame));
        assert!(matches!(result, Ok(false)), "{result:?}");
    }
    client.dispatcher.end_of_batch();
    client.broker.settle();
}

/// A client through the whole handshake that announced `capabilities` in start-ok.
fn connect_with_capabilities<'broker>(broker: &'broker Broker, shard: usize, capabilities: &[&str]) -> Client<'broker> {
    let mut client = broker.connect_raw(shard, true);
    assert_eq!(client.handshake_bytes(crate::codec::frame::PROTOCOL_HEADER), Step::HeaderAccepted(8));
    let mut announced = FieldTable::default();
    for capability in capabilities {
        announced.insert((*capability).into(), AMQPValue::Boolean(true));
    }
    let mut client_properties = FieldTable::default();
    client_properties.insert("capabilities".into(), AMQPValue::FieldTable(announced));
    let start_ok = AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
        client_properties,
        mechanism: "PLAIN".into(),
        response: LongString::from(b"\0guest\0guest".to_vec()),
        locale: "en_US".into(),
    }));
    for method in [start_ok, tune_ok(crate::limits::CHANNEL_MAX, FRAME_MAX_BYTES, 0), open("/")] {
        client.handshake_method(method);
    }
    client.output();
    client.open_channel(1);
    client
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

// basic.publish

#[test]
fn publishing_to_a_missing_exchange_closes_the_channel_with_404() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.publish(1, "missing-exchange", "key", &AMQPProperties::default(), b"x");
    assert_channel_closed(&mut client, (404, "NOT_FOUND - no exchange 'missing-exchange' in vhost '/'", 60, 40));
}

#[test]
fn publishing_to_an_internal_exchange_closes_the_channel_with_403() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 1);
    client.send(
        1,
        AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
            exchange: "inside".into(),
            kind: "fanout".into(),
            passive: false,
            durable: false,
            auto_delete: false,
            internal: true,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    );
    client.output();
    client.publish(1, "inside", "", &AMQPProperties::default(), b"x");
    assert_channel_closed(
        &mut client,
        (403, "ACCESS_REFUSED - cannot publish to internal exchange 'inside' in vhost '/'", 60, 40),
    );
}

#[test]
fn a_publish_that_reaches_no_queue_is_dropped_silently() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    publish_text(&mut client, "no-such-queue", "lost");
    assert!(client.output().is_empty());
    client.send(1, qos(1, false));
    assert_eq!(client.methods().len(), 1, "the channel is still open");
}

#[test]
fn a_mandatory_publish_that_reaches_no_queue_is_returned_with_312_no_route() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send_bytes(&publish_bytes(1, "", "nowhere", true, b"back"));
    match client.output().as_slice() {
        [Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::Return(returned)) }, Out::Header { channel: 1, header }, Out::Body { channel: 1, body }] =>
        {
            assert_eq!(returned.reply_code, 312);
            assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(returned.exchange.as_str(), "");
            assert_eq!(returned.routing_key.as_str(), "nowhere");
            assert_eq!(header.body_size, 4);
            assert_eq!(&body[..], b"back");
        }
        other => panic!("expected basic.return with the message, got {other:?}"),
    }
}

#[test]
fn a_mandatory_unroutable_publish_in_confirm_mode_is_returned_before_its_ack() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, confirm_select());
    client.output();
    client.send_bytes(&publish_bytes(1, "", "nowhere", true, b"back"));
    let methods = client.methods();
    match methods.as_slice() {
        [(1, AMQPClass::Basic(basic::AMQPMethod::Return(returned))), (1, AMQPClass::Basic(basic::AMQPMethod::Ack(ack)))] =>
        {
            assert_eq!((returned.reply_code, returned.reply_text.as_str()), (312, "NO_ROUTE"));
            assert_eq!(ack.delivery_tag, 1);
        }
        other => panic!("expected basic.return then basic.ack, got {other:?}"),
    }
}

#[test]
fn a_mandatory_publish_that_reaches_a_queue_is_not_returned() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "routed");
    client.send_bytes(&publish_bytes(1, "", "routed", true, b"kept"));
    assert!(client.output().is_empty());
    client.send(1, get("routed", true));
    let (_, body) = got(&client.output()).expect("the message is in the queue");
    assert_eq!(body, b"kept");
}

#[test]
fn confirms_of_publishes_read_together_are_flushed_as_one_ack_multiple() {
    let broker = Broker::new(3);
    let mut declarer = client_on(&broker, 2);
    declare_queue(&mut declarer, "confirmed");
    let mut client = client_on(&broker, shard_away_from(&broker, "confirmed"));
    client.send(1, confirm_select());
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)))]), "{methods:?}");
    let mut bytes = BytesMut::new();
    for body in [b"one", b"two", b"six"] {
        bytes.extend_from_slice(&publish_bytes(1, "", "confirmed", false, body));
    }
    send_in_one_read(&mut client, &bytes);
    let methods = client.methods();
    match methods.as_slice() {
        [(1, AMQPClass::Basic(basic::AMQPMethod::Ack(ack)))] => {
            assert_eq!((ack.delivery_tag, ack.multiple), (3, true));
        }
        other => panic!("expected one basic.ack(3, multiple), got {other:?}"),
    }
}

#[test]
fn confirms_number_publishes_from_1_on_each_channel() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "numbered");
    client.send(1, confirm_select());
    client.output();
    let mut tags = Vec::new();
    for _ in 0..2 {
        publish_text(&mut client, "numbered", "x");
        for (_, method) in client.methods() {
            if let AMQPClass::Basic(basic::AMQPMethod::Ack(ack)) = method {
                tags.push(ack.delivery_tag);
            }
        }
    }
    assert_eq!(tags, vec![1, 2]);
}

// basic.ack, basic.nack, basic.reject

#[test]
fn ack_of_an_unknown_delivery_tag_closes_the_channel_with_406() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, ack(7, false));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 7", 60, 80));
}

#[test]
fn nack_of_an_unknown_delivery_tag_closes_the_channel_with_406() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, nack(7, false, true));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 7", 60, 120));
}

#[test]
fn reject_of_an_unknown_delivery_tag_closes_the_channel_with_406() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, reject(7, true));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 7", 60, 90));
}

#[test]
fn ack_multiple_of_an_unknown_tag_with_nothing_unacked_closes_the_channel_with_406() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, ack(3, true));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 3", 60, 80));
}

#[test]
fn ack_multiple_of_tag_0_with_nothing_unacked_is_accepted() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, ack(0, true));
    assert!(client.output().is_empty());
    client.send(1, qos(1, false));
    assert_eq!(client.methods().len(), 1, "the channel is still open");
}

#[test]
fn a_second_ack_of_the_same_delivery_closes_the_channel_with_406() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "twice", 1);
    let mut client = client_on(&broker, 0);
    client.send(1, get("twice", false));
    let (ok, _) = got(&client.output()).expect("one message");
    client.send(1, ack(ok.delivery_tag, false));
    assert!(client.output().is_empty());
    client.send(1, ack(ok.delivery_tag, false));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80));
}

#[test]
fn ack_of_a_no_ack_delivery_closes_the_channel_with_406() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "auto", 1);
    let mut client = client_on(&broker, 0);
    client.send(1, get("auto", true));
    let (ok, _) = got(&client.output()).expect("one message");
    client.send(1, ack(ok.delivery_tag, false));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80));
}

#[test]
fn ack_multiple_settles_every_delivery_up_to_its_tag() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "many", 3);
    let mut client = client_on(&broker, 1);
    let received = start_consumer(&mut client, "many", "c");
    assert_eq!(received.iter().map(|message| message.delivery_tag).collect::<Vec<_>>(), vec![1, 2, 3]);
    client.send(1, ack(2, true));
    assert!(client.output().is_empty());
    client.send(1, ack(3, false));
    assert!(client.output().is_empty());
    client.send(1, ack(1, false));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80));
}

#[test]
fn ack_multiple_of_tag_0_settles_every_delivery() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "all", 3);
    let mut client = client_on(&broker, 1);
    assert_eq!(start_consumer(&mut client, "all", "c").len(), 3);
    client.send(1, ack(0, true));
    client.send(1, recover(true));
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::RecoverOk(_)))]),
        "nothing is left to redeliver: {methods:?}"
    );
}

#[test]
fn ack_multiple_of_a_tag_never_delivered_closes_the_channel_with_406() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "beyond", 2);
    let mut client = client_on(&broker, 1);
    assert_eq!(start_consumer(&mut client, "beyond", "c").len(), 2);
    client.send(1, ack(5, true));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 5", 60, 80));
}

#[test]
fn nack_with_requeue_redelivers_with_the_redelivered_flag() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "again", 1);
    let mut client = client_on(&broker, 1);
    let first = start_consumer(&mut client, "again", "c");
    assert_eq!((first.len(), first[0].redelivered), (1, false));
    client.send(1, nack(first[0].delivery_tag, false, true));
    let second = deliveries(&client.output());
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!((second[0].delivery_tag, second[0].redelivered), (2, true));
    assert_eq!(second[0].body, b"m1");
}

#[test]
fn nack_multiple_with_requeue_redelivers_every_delivery_up_to_its_tag() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "batch", 3);
    let mut client = client_on(&broker, 0);
    for _ in 0..3 {
        client.send(1, get("batch", false));
        assert!(got(&client.output()).is_some());
    }
    client.send(1, nack(2, true, true));
    assert!(client.output().is_empty());
    let mut redelivered = Vec::new();
    for _ in 0..2 {
        client.send(1, get("batch", false));
        let (ok, body) = got(&client.output()).expect("a requeued message");
        redelivered.push((ok.redelivered, body));
    }
    assert_eq!(redelivered, vec![(true, b"m1".to_vec()), (true, b"m2".to_vec())]);
    client.send(1, get("batch", false));
    assert!(got(&client.output()).is_none(), "m3 is still unacked, not requeued");
}

#[test]
fn reject_without_requeue_discards_the_message() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "discard", 1);
    let mut client = client_on(&broker, 0);
    client.send(1, get("discard", false));
    let (ok, _) = got(&client.output()).expect("one message");
    client.send(1, reject(ok.delivery_tag, false));
    assert!(client.output().is_empty());
    client.send(1, recover(true));
    client.output();
    client.send(1, get("discard", true));
    assert!(got(&client.output()).is_none());
}

#[test]
fn reject_with_requeue_puts_the_message_back_as_redelivered() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "back", 1);
    let mut client = client_on(&broker, 0);
    client.send(1, get("back", false));
    let (ok, _) = got(&client.output()).expect("one message");
    client.send(1, reject(ok.delivery_tag, true));
    client.send(1, get("back", true));
    let (again, body) = got(&client.output()).expect("the requeued message");
    assert!(again.redelivered);
    assert_eq!((again.delivery_tag, body), (2, b"m1".to_vec()));
}

// basic.qos

#[test]
fn basic_qos_is_answered_with_qos_ok() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, qos(10, false));
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::QosOk(_)))]), "{methods:?}");
}

#[test]
fn prefetch_count_limits_the_unacked_deliveries_of_a_consumer() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "limited", 5);
    let mut client = client_on(&broker, 1);
    client.send(1, qos(2, false));
    client.output();
    let first = start_consumer(&mut client, "limited", "c");
    assert_eq!(bodies(&first), vec![b"m1" as &[u8], b"m2"]);
    client.send(1, ack(1, false));
    let next = deliveries(&client.output());
    assert_eq!(bodies(&next), vec![b"m3" as &[u8]]);
    client.send(1, ack(3, true));
    let rest = deliveries(&client.output());
    assert_eq!(bodies(&rest), vec![b"m4" as &[u8], b"m5"]);
}

#[test]
fn prefetch_count_does_not_limit_no_ack_consumers() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "free", 3);
    let mut client = client_on(&broker, 1);
    client.send(1, qos(1, false));
    client.output();
    let options = ConsumeOptions { no_ack: true, ..ConsumeOptions::default() };
    client.send(1, consume_with("free", "c", options, FieldTable::default()));
    assert_eq!(deliveries(&client.output()).len(), 3);
}

#[test]
#[ignore = "differs from RabbitMQ 3.10: global=true is taken as a per-consumer limit, not one shared by the channel (a channel-wide limit across queue shards needs a shared limiter)"]
fn a_global_prefetch_count_is_shared_by_the_consumers_of_the_channel() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "left", 2);
    queue_with_messages(&broker, "right", 2);
    let mut client = client_on(&broker, 1);
    client.send(1, qos(1, true));
    client.output();
    client.send(1, consume("left", "l"));
    client.send(1, consume("right", "r"));
    assert_eq!(deliveries(&client.output()).len(), 1);
}

#[test]
fn a_prefetch_size_closes_the_connection_with_540() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    // amq-protocol's Qos has no prefetch_size: the method frame is written by hand.
    let mut payload = vec![0, 60, 0, 10];
    payload.extend_from_slice(&1024u32.to_be_bytes());
    payload.extend_from_slice(&0u16.to_be_bytes());
    payload.push(0);
    let mut frame = BytesMut::new();
    crate::codec::frame::write_frame(&mut frame, FRAME_METHOD, 1, &payload).expect("frame encodes");
    client.send_bytes(&frame);
    assert_connection_closed(&mut client, (540, "NOT_IMPLEMENTED - prefetch_size!=0 (1024)", 60, 10));
}

#[test]
fn basic_qos_applies_only_to_consumers_started_after_it() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 1);
    declare_queue(&mut client, "before");
    start_consumer(&mut client, "before", "unlimited");
    client.send(1, qos(1, false));
    client.output();
    for _ in 0..3 {
        publish_text(&mut client, "before", "x");
    }
    assert_eq!(deliveries(&client.output()).len(), 3);
}

#[test]
fn a_consumer_limit_per_channel_refuses_one_more_with_406() {
    // RabbitMQ 3.10 has no such limit; the broker bounds the consumers a channel may hold.
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "crowded");
    let options = ConsumeOptions { nowait: true, ..ConsumeOptions::default() };
    for index in 0..crate::limits::CONSUMERS_PER_CHANNEL_MAX {
        client.send(1, consume_with("crowded", &format!("c{index}"), options, FieldTable::default()));
    }
    assert!(client.output().is_empty());
    client.send(1, consume("crowded", "one-more"));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - too many consumers on this channel", 60, 20));
}

// basic.consume

#[test]
fn consume_on_a_missing_queue_closes_the_channel_with_404() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, consume("missing", "c"));
    assert_channel_closed(&mut client, (404, "NOT_FOUND - no queue 'missing' in vhost '/'", 60, 20));
}

#[test]
fn consume_without_a_queue_name_and_no_queue_declared_closes_the_channel_with_404() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, consume("", "c"));
    assert_channel_closed(&mut client, (404, "NOT_FOUND - no previously declared queue", 60, 20));
}

#[test]
fn consume_without_a_queue_name_consumes_the_queue_declared_last() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "first");
    declare_queue(&mut client, "last");
    start_consumer(&mut client, "", "c");
    publish_text(&mut client, "first", "not this");
    publish_text(&mut client, "last", "this");
    let received = deliveries(&client.output());
    assert_eq!(bodies(&received), vec![b"this" as &[u8]]);
}

#[test]
fn consume_on_another_connections_exclusive_queue_closes_the_channel_with_405() {
    let broker = Broker::new(3);
    let mut owner = client_on(&broker, 1);
    owner.send(1, declare_with("private", true));
    owner.output();
    let mut other = client_on(&broker, 2);
    other.send(1, consume("private", "c"));
    assert_channel_closed(&mut other, (405, LOCKED_EXCLUSIVE, 60, 20));
}

#[test]
fn the_owner_of_an_exclusive_queue_may_consume_from_it() {
    let broker = Broker::new(2);
    let mut owner = client_on(&broker, 1);
    owner.send(1, declare_with("private", true));
    owner.output();
    start_consumer(&mut owner, "private", "c");
}

#[test]
fn an_exclusive_consume_on_a_queue_with_a_consumer_closes_the_channel_with_403() {
    let broker = Broker::new(3);
    let mut first = client_on(&broker, 1);
    declare_queue(&mut first, "shared");
    start_consumer(&mut first, "shared", "first");
    let mut second = client_on(&broker, 2);
    let options = ConsumeOptions { exclusive: true, ..ConsumeOptions::default() };
    second.send(1, consume_with("shared", "second", options, FieldTable::default()));
    assert_channel_closed(&mut second, (403, "ACCESS_REFUSED - queue 'shared' in vhost '/' in exclusive use", 60, 20));
}

#[test]
fn a_consume_on_a_queue_with_an_exclusive_consumer_closes_the_channel_with_403() {
    let broker = Broker::new(3);
    let mut first = client_on(&broker, 1);
    declare_queue(&mut first, "taken");
    let options = ConsumeOptions { exclusive: true, ..ConsumeOptions::default() };
    first.send(1, consume_with("taken", "first", options, FieldTable::default()));
    first.output();
    let mut second = client_on(&broker, 2);
    second.send(1, consume("taken", "second"));
    assert_channel_closed(&mut second, (403, "ACCESS_REFUSED - queue 'taken' in vhost '/' in exclusive use", 60, 20));
}

#[test]
fn once_the_exclusive_consumer_cancels_others_may_consume() {
    let broker = Broker::new(3);
    let mut first = client_on(&broker, 1);
    declare_queue(&mut first, "released");
    let options = ConsumeOptions { exclusive: true, ..ConsumeOptions::default() };
    first.send(1, consume_with("released", "first", options, FieldTable::default()));
    first.output();
    first.send(1, cancel("first", false));
    first.output();
    let mut second = client_on(&broker, 2);
    start_consumer(&mut second, "released", "second");
}

#[test]
fn reusing_a_consumer_tag_on_a_channel_closes_the_connection_with_530() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "tagged");
    start_consumer(&mut client, "tagged", "same");
    client.send(1, consume("tagged", "same"));
    assert_connection_closed(&mut client, (530, "NOT_ALLOWED - attempt to reuse consumer tag 'same'", 60, 20));
}

#[test]
fn reusing_a_consumer_tag_names_basic_consume_in_connection_close() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "tagged");
    start_consumer(&mut client, "tagged", "same");
    client.send(1, consume("tagged", "same"));
    assert_connection_closed(&mut client, (530, "NOT_ALLOWED - attempt to reuse consumer tag 'same'", 60, 20));
}

#[test]
fn reusing_a_consumer_tag_on_a_missing_queue_closes_the_connection_with_530() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "tagged");
    start_consumer(&mut client, "tagged", "same");
    client.send(1, consume("missing", "same"));
    assert_connection_closed(&mut client, (530, "NOT_ALLOWED - attempt to reuse consumer tag 'same'", 60, 20));
}

#[test]
fn the_same_consumer_tag_on_two_channels_is_allowed() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "tagged");
    start_consumer(&mut client, "tagged", "same");
    client.open_channel(2);
    client.send(2, consume("tagged", "same"));
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(2, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)))] if ok.consumer_tag.as_str() == "same"),
        "{methods:?}"
    );
}

#[test]
fn an_empty_consumer_tag_gets_a_generated_amq_ctag() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "anonymous");
    client.send(1, consume("anonymous", ""));
    client.send(1, consume("anonymous", ""));
    let tags: Vec<String> = client
        .methods()
        .into_iter()
        .map(|(_, method)| match method {
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)) => ok.consumer_tag.to_string(),
            other => panic!("expected consume-ok, got {other:?}"),
        })
        .collect();
    assert_eq!(tags.len(), 2);
    for tag in &tags {
        let suffix = tag.strip_prefix("amq.ctag-").unwrap_or_else(|| panic!("{tag} lacks amq.ctag-"));
        assert_eq!(suffix.len(), 22, "{tag}");
        assert!(suffix.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'), "{tag}");
    }
    assert_ne!(tags[0], tags[1]);
}

#[test]
fn consume_ok_precedes_the_first_delivery() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "waiting", 2);
    let mut client = client_on(&broker, shard_away_from(&broker, "waiting"));
    client.send(1, consume("waiting", "c"));
    let output = client.output();
    assert!(
        matches!(&output[0], Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)) } if ok.consumer_tag.as_str() == "c"),
        "{output:?}"
    );
    let received = deliveries(&output);
    assert_eq!(bodies(&received), vec![b"m1" as &[u8], b"m2"]);
    assert!(received.iter().all(|message| message.consumer_tag == "c" && message.channel == 1 && !message.redelivered));
}

#[test]
fn consume_with_nowait_sends_no_consume_ok_but_delivers() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "quiet", 1);
    let mut client = client_on(&broker, 1);
    let options = ConsumeOptions { nowait: true, ..ConsumeOptions::default() };
    client.send(1, consume_with("quiet", "c", options, FieldTable::default()));
    let output = client.output();
    assert!(
        matches!(&output[0], Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::Deliver(_)), .. }),
        "{output:?}"
    );
    assert_eq!(bodies(&deliveries(&output)), vec![b"m1" as &[u8]]);
}

#[test]
fn an_invalid_consumer_timeout_argument_closes_the_channel_with_406() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "timed");
    let mut arguments = FieldTable::default();
    arguments.insert("x-consumer-timeout".into(), AMQPValue::LongString("soon".into()));
    client.send(1, consume_with("timed", "c", ConsumeOptions::default(), arguments));
    assert_channel_closed(
        &mut client,
        (
            406,
            "PRECONDITION_FAILED - invalid arg 'x-consumer-timeout' for queue 'timed' in vhost '/': {unacceptable_type,longstr}",
            60,
            20,
        ),
    );
}

#[test]
fn a_consumer_with_a_higher_priority_gets_the_messages() {
    let broker = Broker::new(3);
    let mut low = client_on(&broker, 1);
    declare_queue(&mut low, "ranked");
    start_consumer(&mut low, "ranked", "low");
    let mut high = client_on(&broker, 2);
    let mut arguments = FieldTable::default();
    arguments.insert("x-priority".into(), AMQPValue::LongInt(10));
    high.send(
        1,
        consume_with("ranked", "high", ConsumeOptions { no_ack: true, ..ConsumeOptions::default() }, arguments),
    );
    high.output();
    for _ in 0..3 {
        publish_text(&mut low, "ranked", "x");
    }
    assert!(deliveries(&low.output()).is_empty());
    assert_eq!(deliveries(&high.output()).len(), 3);
}

#[test]
fn a_non_integer_consumer_priority_closes_the_channel_with_406() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    declare_queue(&mut client, "ranked");
    let mut arguments = FieldTable::default();
    arguments.insert("x-priority".into(), AMQPValue::LongString("high".into()));
    client.send(1, consume_with("ranked", "c", ConsumeOptions::default(), arguments));
    assert_channel_closed(
        &mut client,
        (
            406,
            "PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'ranked' in vhost '/': \"expected integer, got longstr\"",
            60,
            20,
        ),
    );
}

// basic.cancel

#[test]
fn cancel_is_answered_with_cancel_ok_and_stops_deliveries() {
    let broker = Broker::new(3);
    let mut client = client_on(&broker, 1);
    declare_queue(&mut client, "stopped");
    start_consumer(&mut client, "stopped", "c");
    client.send(1, cancel("c", false));
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok)))] if ok.consumer_tag.as_str() == "c"),
        "{methods:?}"
    );
    queue_with_messages(&broker, "stopped", 1);
    assert!(deliveries(&client.output()).is_empty());
    client.send(1, get("stopped", true));
    assert!(got(&client.output()).is_some(), "the message waits in the queue");
}

#[test]
fn cancel_of_an_unknown_consumer_tag_is_answered_with_cancel_ok() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, cancel("nobody", false));
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok)))] if ok.consumer_tag.as_str() == "nobody"),
        "{methods:?}"
    );
}

#[test]
fn cancel_with_nowait_sends_nothing_and_stops_deliveries() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 1);
    declare_queue(&mut client, "silent");
    start_consumer(&mut client, "silent", "c");
    client.send(1, cancel("c", true));
    assert!(client.output().is_empty());
    queue_with_messages(&broker, "silent", 1);
    assert!(deliveries(&client.output()).is_empty());
}

#[test]
fn deliveries_of_a_cancelled_consumer_can_still_be_acked() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "pending", 2);
    let mut client = client_on(&broker, 1);
    assert_eq!(start_consumer(&mut client, "pending", "c").len(), 2);
    client.send(1, cancel("c", false));
    client.output();
    client.send(1, ack(2, true));
    assert!(client.output().is_empty(), "the acks are accepted");
    client.send(1, get("pending", true));
    assert!(got(&client.output()).is_none(), "the acked messages are gone");
}

// basic.get

#[test]
fn get_on_an_empty_queue_is_answered_with_get_empty() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 1);
    declare_queue(&mut client, "empty");
    client.send(1, get("empty", false));
    assert!(got(&client.output()).is_none());
}

#[test]
fn get_returns_the_oldest_message_and_the_count_left_behind_it() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "fifo", 3);
    let mut client = client_on(&broker, 1);
    client.send(1, get("fifo", false));
    let (ok, body) = got(&client.output()).expect("a message");
    assert_eq!(body, b"m1");
    assert_eq!((ok.delivery_tag, ok.redelivered, ok.message_count), (1, false, 2));
    assert_eq!((ok.exchange.as_str(), ok.routing_key.as_str()), ("", "fifo"));
    client.send(1, get("fifo", true));
    let (ok, body) = got(&client.output()).expect("a message");
    assert_eq!((ok.delivery_tag, ok.message_count, body), (2, 1, b"m2".to_vec()));
}

#[test]
fn get_on_a_missing_queue_closes_the_channel_with_404() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, get("missing", false));
    assert_channel_closed(&mut client, (404, "NOT_FOUND - no queue 'missing' in vhost '/'", 60, 70));
}

#[test]
fn get_without_a_queue_name_and_no_queue_declared_closes_the_channel_with_404() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, get("", false));
    assert_channel_closed(&mut client, (404, "NOT_FOUND - no previously declared queue", 60, 70));
}

#[test]
fn get_on_another_connections_exclusive_queue_closes_the_channel_with_405() {
    let broker = Broker::new(3);
    let mut owner = client_on(&broker, 1);
    owner.send(1, declare_with("private", true));
    owner.output();
    let mut other = client_on(&broker, 2);
    other.send(1, get("private", true));
    assert_channel_closed(&mut other, (405, LOCKED_EXCLUSIVE, 60, 70));
}

#[test]
fn get_and_consumer_deliveries_share_the_channels_delivery_tags() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "gets", 1);
    queue_with_messages(&broker, "consumed", 1);
    let mut client = client_on(&broker, 1);
    client.send(1, get("gets", false));
    let (ok, _) = got(&client.output()).expect("a message");
    let received = start_consumer(&mut client, "consumed", "c");
    assert_eq!((ok.delivery_tag, received[0].delivery_tag), (1, 2));
}

// basic.recover

#[test]
fn recover_requeues_unacked_messages_as_redelivered() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "recovered", 2);
    let mut client = client_on(&broker, 1);
    assert_eq!(start_consumer(&mut client, "recovered", "c").len(), 2);
    client.send(1, recover(true));
    let output = client.output();
    assert!(
        output.iter().any(|out| matches!(
            out,
            Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::RecoverOk(_)) }
        )),
        "{output:?}"
    );
    let again = deliveries(&output);
    assert_eq!(bodies(&again), vec![b"m1" as &[u8], b"m2"]);
    assert!(again.iter().all(|message| message.redelivered), "{again:?}");
    assert_eq!(again.iter().map(|message| message.delivery_tag).collect::<Vec<_>>(), vec![3, 4]);
}

#[test]
fn recover_async_requeues_without_an_answer() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "quietly", 1);
    let mut client = client_on(&broker, 1);
    client.send(1, get("quietly", false));
    assert!(got(&client.output()).is_some());
    client.send(1, recover_async(true));
    assert!(client.output().is_empty());
    client.send(1, get("quietly", true));
    let (ok, _) = got(&client.output()).expect("the requeued message");
    assert!(ok.redelivered);
}

#[test]
fn recover_without_requeue_closes_the_connection_with_540() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, recover(false));
    assert_connection_closed(&mut client, (540, "NOT_IMPLEMENTED - requeue=false", 60, 110));
}

#[test]
fn recover_async_without_requeue_closes_the_connection_with_540() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, recover_async(false));
    assert_connection_closed(&mut client, (540, "NOT_IMPLEMENTED - requeue=false", 60, 100));
}

// Methods only the server sends

#[test]
fn a_server_method_sent_by_a_client_closes_the_connection_with_503() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})));
    let methods = client.methods();
    assert_eq!(connection_close(&methods).map(|close| close.0), Some(503), "{methods:?}");
    assert!(client.closed);
}

#[test]
fn a_server_method_sent_by_a_client_is_an_unimplemented_method() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})));
    assert_connection_closed(&mut client, (503, "COMMAND_INVALID - unimplemented method", 60, 11));
}

// Deliveries, as the connection's shard writes them

#[test]
fn closing_a_channel_requeues_its_unacked_deliveries_as_redelivered() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "handover", 2);
    let mut first = client_on(&broker, shard_away_from(&broker, "handover"));
    assert_eq!(start_consumer(&mut first, "handover", "first").len(), 2);
    let mut second = client_on(&broker, 2);
    assert!(start_consumer(&mut second, "handover", "second").is_empty());
    first.send(1, channel_close_method());
    first.output();
    let received = deliveries(&second.output());
    assert_eq!(bodies(&received), vec![b"m1" as &[u8], b"m2"]);
    assert!(received.iter().all(|message| message.redelivered && message.consumer_tag == "second"));
}

/// A client away from queue `name` consuming it as "c" (acknowledged mode), which then sends a
/// publish to the queue and `method` in one read: the delivery crosses `method` on its way.
fn publish_racing<'broker>(broker: &'broker Broker, name: &str, method: &AMQPClass) -> Client<'broker> {
    let mut client = client_on(broker, shard_away_from(broker, name));
    declare_queue(&mut client, name);
    assert!(start_consumer(&mut client, name, "c").is_empty());
    let mut bytes = publish_bytes(1, "", name, false, b"raced");
    encode_method(&mut bytes, 1, method).expect("test method encodes");
    send_in_one_read(&mut client, &bytes);
    client
}

/// basic.get of the one message "raced" in queue `name`, by a new client.
fn assert_raced_message_in_queue(broker: &Broker, name: &str) {
    let mut other = client_on(broker, 0);
    other.send(1, get(name, true));
    let (_, body) = got(&other.output()).expect("the message is in the queue");
    assert_eq!(body, b"raced");
}

#[test]
fn a_delivery_racing_a_channel_close_goes_back_to_the_queue() {
    let broker = Broker::new(3);
    let mut client = publish_racing(&broker, "racing", &channel_close_method());
    let output = client.output();
    assert!(deliveries(&output).is_empty(), "{output:?}");
    assert_raced_message_in_queue(&broker, "racing");
}

#[test]
fn a_delivery_racing_a_cancel_is_not_lost() {
    let broker = Broker::new(3);
    let mut client = publish_racing(&broker, "racing", &cancel("c", false));
    client.output();
    client.send(1, channel_close_method());
    client.output();
    assert_raced_message_in_queue(&broker, "racing");
}

#[test]
fn a_message_published_before_a_cancel_is_delivered_before_cancel_ok() {
    let broker = Broker::new(3);
    let mut client = publish_racing(&broker, "racing", &cancel("c", false));
    let output = client.output();
    assert!(
        matches!(
            output.as_slice(),
            [
                Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::Deliver(_)), .. },
                Out::Header { .. },
                Out::Body { .. },
                Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::CancelOk(_)), .. }
            ]
        ),
        "{output:?}"
    );
}

#[test]
fn an_unacked_get_goes_back_to_the_queue_when_its_channel_closes() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "fetched", 1);
    let mut client = client_on(&broker, shard_away_from(&broker, "fetched"));
    client.send(1, get("fetched", false));
    assert!(got(&client.output()).is_some());
    client.send(1, channel_close_method());
    client.output();
    client.open_channel(1);
    client.send(1, get("fetched", true));
    let (ok, body) = got(&client.output()).expect("the message is back");
    assert!(ok.redelivered);
    assert_eq!(body, b"m1");
}

#[test]
fn a_dropped_connection_requeues_its_unacked_deliveries() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "orphaned", 1);
    let mut first = client_on(&broker, 1);
    assert_eq!(start_consumer(&mut first, "orphaned", "first").len(), 1);
    first.drop_connection();
    let mut second = client_on(&broker, 2);
    second.send(1, get("orphaned", true));
    let (ok, body) = got(&second.output()).expect("the requeued message");
    assert!(ok.redelivered);
    assert_eq!(body, b"m1");
}

#[test]
fn after_a_channel_error_its_consumer_gets_no_more_deliveries() {
    let broker = Broker::new(3);
    let mut failing = client_on(&broker, 1);
    declare_queue(&mut failing, "survivors");
    start_consumer(&mut failing, "survivors", "failing");
    failing.send(1, ack(42, false));
    failing.output();
    let mut healthy = client_on(&broker, 2);
    start_consumer(&mut healthy, "survivors", "healthy");
    queue_with_messages(&broker, "survivors", 2);
    assert!(failing.output().is_empty(), "the closing channel gets nothing");
    assert_eq!(deliveries(&healthy.output()).len(), 2);
}

#[test]
fn a_consumer_of_a_deleted_queue_is_told_with_basic_cancel() {
    let broker = Broker::new(3);
    let shard = shard_away_from(&broker, "doomed");
    let mut consumer = connect_with_capabilities(&broker, shard, &["consumer_cancel_notify"]);
    declare_queue(&mut consumer, "doomed");
    start_consumer(&mut consumer, "doomed", "c");
    let mut deleter = client_on(&broker, 2);
    deleter.send(1, delete_queue("doomed"));
    deleter.output();
    let methods = consumer.methods();
    match methods.as_slice() {
        [(1, AMQPClass::Basic(basic::AMQPMethod::Cancel(cancel)))] => {
            assert_eq!((cancel.consumer_tag.as_str(), cancel.nowait), ("c", true));
        }
        other => panic!("expected basic.cancel, got {other:?}"),
    }
}

#[test]
fn the_tag_of_a_consumer_cancelled_by_the_broker_may_be_reused() {
    let broker = Broker::new(2);
    let mut consumer = connect_with_capabilities(&broker, 1, &["consumer_cancel_notify"]);
    declare_queue(&mut consumer, "doomed");
    start_consumer(&mut consumer, "doomed", "c");
    consumer.send(1, delete_queue("doomed"));
    consumer.output();
    declare_queue(&mut consumer, "reborn");
    start_consumer(&mut consumer, "reborn", "c");
}

#[test]
fn a_client_without_consumer_cancel_notify_is_not_sent_basic_cancel() {
    let broker = Broker::new(2);
    let mut consumer = connect_with_capabilities(&broker, 1, &[]);
    declare_queue(&mut consumer, "doomed");
    start_consumer(&mut consumer, "doomed", "c");
    let mut deleter = client_on(&broker, 0);
    deleter.send(1, delete_queue("doomed"));
    deleter.output();
    let methods = consumer.methods();
    assert!(methods.is_empty(), "{methods:?}");
}
