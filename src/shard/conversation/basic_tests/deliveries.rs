//! Deliveries as the shard writes them: requeue on close, races, basic.cancel on queue delete.

use super::*;

fn delete_queue(name: &str) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
        queue: name.into(),
        if_unused: false,
        if_empty: false,
        nowait: false,
    }))
}

fn channel_close_method() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    }))
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

/// A client away from queue `name` consuming it as "c" (acknowledged mode), which then sends a
/// publish to the queue and `method` in one read: the delivery crosses `method` on its way.
fn publish_racing<'broker>(broker: &'broker Broker, name: &str, method: &AMQPClass) -> Client<'broker> {
    let mut client = client_on(broker, shard_away_from(broker, name));
    declare_queue(&mut client, name);
    assert!(start_consumer(&mut client, name, "c").is_empty());
    let mut bytes = publish_bytes(1, "", name, false, b"raced");
    encode_method(&mut bytes, 1, method).expect("test method encodes");
    client.send_in_one_read(&bytes);
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
