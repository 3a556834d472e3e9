//! The channel lifecycle: open, close, close-ok, channel_max, closing channels, flow and channel errors.

use super::*;

const CHANNEL_MAX_EXCEEDED: &str =
    "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)";

fn close_ok_method() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}))
}

fn ack(delivery_tag: u64) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag, multiple: false }))
}

/// A client that negotiated `channel_max` in tune-ok.
fn connect_with_channel_max(broker: &Broker, channel_max: u16) -> Client<'_> {
    let mut client = broker.connect_raw(0, true);
    assert_eq!(client.handshake_bytes(crate::codec::frame::PROTOCOL_HEADER), Step::HeaderAccepted(8));
    for method in [start_ok("PLAIN", b"\0guest\0guest"), tune_ok(channel_max, FRAME_MAX_BYTES, 0), open("/")] {
        client.handshake_method(method);
    }
    client.output();
    client
}

/// Closes channel 1 with a channel error (an ack of a tag never delivered) and checks it.
fn fail_channel(client: &mut Client<'_>) {
    client.send(1, ack(99));
    let methods = client.methods();
    assert_eq!(channel_close(&methods, 1), Some((406, "PRECONDITION_FAILED - unknown delivery tag 99".into(), 60, 80)));
}

#[test]
fn channel_close_is_answered_with_close_ok_and_the_number_can_be_opened_again() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, close_method());
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)))]), "{methods:?}");
    client.open_channel(1);
    assert!(!client.closed);
}

#[test]
fn a_method_on_a_channel_never_opened_closes_the_connection_with_504() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.send(3, qos(1));
    assert_connection_closed(&mut client, (504, "CHANNEL_ERROR - expected 'channel.open'", 60, 10));
}

#[test]
fn a_method_on_a_closed_channel_closes_the_connection_with_504() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, close_method());
    client.output();
    client.send(1, qos(1));
    assert_connection_closed(&mut client, (504, "CHANNEL_ERROR - expected 'channel.open'", 60, 10));
}

#[test]
fn a_second_channel_open_closes_the_connection_with_504() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, open_method());
    assert_connection_closed(&mut client, (504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10));
}

#[test]
fn channels_up_to_channel_max_open() {
    let broker = Broker::new(1);
    let mut client = connect_with_channel_max(&broker, 2);
    client.open_channel(1);
    client.open_channel(2);
    assert!(!client.closed);
}

#[test]
fn opening_a_channel_above_channel_max_closes_the_connection_with_530() {
    let broker = Broker::new(1);
    let mut client = connect_with_channel_max(&broker, 2);
    client.open_channel(1);
    client.open_channel(2);
    client.send(3, open_method());
    assert_connection_closed_with_code(&mut client, 530);
}

#[test]
fn opening_more_channels_than_channel_max_closes_the_connection_with_530() {
    let broker = Broker::new(1);
    let mut client = connect_with_channel_max(&broker, 2);
    client.open_channel(1);
    client.open_channel(2);
    client.send(3, open_method());
    assert_connection_closed(&mut client, (530, CHANNEL_MAX_EXCEEDED, 0, 0));
}

#[test]
fn frames_on_a_closing_channel_are_dropped_until_close_ok() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, declare("kept"));
    client.output();
    fail_channel(&mut client);
    client.send(1, qos(5));
    client.send(1, ack(1));
    client.publish(1, "", "kept", &AMQPProperties::default(), b"dropped");
    assert!(client.output().is_empty(), "a closing channel answers nothing but close");
    client.send(1, close_ok_method());
    assert!(client.output().is_empty(), "close-ok is not answered");
    client.open_channel(1);
    client.send(1, get("kept"));
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::GetEmpty(_)))]),
        "the publish sent while closing was dropped: {methods:?}"
    );
    assert!(!client.closed);
}

#[test]
fn a_second_channel_open_on_a_closing_channel_closes_the_connection_with_504() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    fail_channel(&mut client);
    client.send(1, open_method());
    assert_connection_closed(&mut client, (504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10));
}

#[test]
fn a_content_body_without_a_publish_on_a_closing_channel_closes_the_connection_with_505() {
    // RabbitMQ assembles content in the reader, whatever the state of the channel.
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    fail_channel(&mut client);
    client.send_bytes(&body_frame(1, b"stray"));
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0),
    );
}

#[test]
fn channel_close_on_a_closing_channel_is_answered_with_close_ok() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    fail_channel(&mut client);
    client.send(1, close_method());
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)))]), "{methods:?}");
    assert!(!client.closed);
}

#[test]
fn close_ok_after_crossing_channel_closes_is_accepted() {
    // The client closes the channel while the broker's channel.close is on its way: it answers
    // the broker's close with close-ok, as the spec asks. RabbitMQ answers the client's close
    // with close-ok and keeps waiting for the client's close-ok.
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    fail_channel(&mut client);
    client.send(1, close_method());
    client.output();
    client.send(1, close_ok_method());
    let methods = client.methods();
    assert!(methods.is_empty(), "{methods:?}");
    assert!(!client.closed);
}

#[test]
fn channel_flow_active_is_answered_with_flow_ok() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, AMQPClass::Channel(channel::AMQPMethod::Flow(channel::Flow { active: true })));
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(1, AMQPClass::Channel(channel::AMQPMethod::FlowOk(ok)))] if ok.active),
        "{methods:?}"
    );
}

#[test]
fn channel_flow_inactive_closes_the_connection_with_540() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, AMQPClass::Channel(channel::AMQPMethod::Flow(channel::Flow { active: false })));
    assert_connection_closed(&mut client, (540, "NOT_IMPLEMENTED - active=false", 20, 20));
}

#[test]
fn a_channel_error_closes_only_that_channel() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.open_channel(2);
    fail_channel(&mut client);
    client.send(2, qos(1));
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(2, AMQPClass::Basic(basic::AMQPMethod::QosOk(_)))]), "{methods:?}");
}
