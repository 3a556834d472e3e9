//! basic.publish: missing and internal exchanges, mandatory returns and publisher confirms.

use super::*;

fn confirm_select() -> AMQPClass {
    AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false }))
}

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
    client.send_in_one_read(&bytes);
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
