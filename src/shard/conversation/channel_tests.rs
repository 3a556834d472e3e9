//! Conversation tests: channel. See `super` for the harness.
//!
//! The channel lifecycle (open, close, close-ok, frames dropped while closing), the assembly
//! of a publish from its method, header and body frames, and the frames that are wrong on a
//! channel or on channel 0, with the reply code, text and method RabbitMQ 3.10 sends.
//!
//! Connection errors name the failing method in connection.close where RabbitMQ does (its
//! channel and its assembler do; its reader's own checks, such as frame shape and
//! channel_max, name none: 0/0).

use amq_protocol::protocol::{access, basic, queue};

use super::*;
use crate::codec::frame::write_frame;

const CHANNEL_MAX_EXCEEDED: &str =
    "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)";

fn open_method() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))
}

fn close_method() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    }))
}

fn close_ok_method() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}))
}

fn qos(prefetch_count: u16) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count, global: false }))
}

fn publish_method(exchange: &str, routing_key: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        mandatory: false,
        immediate: false,
    }))
}

fn declare(name: &str) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments: FieldTable::default(),
    }))
}

fn get(queue: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: queue.into(), no_ack: true }))
}

fn ack(delivery_tag: u64) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag, multiple: false }))
}

/// Methods the broker wrote, with their channels.
type Methods = Vec<(u16, AMQPClass)>;

/// One frame of any type, as bytes on the wire.
fn raw_frame(frame_type: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    write_frame(&mut out, frame_type, channel, payload).expect("test frame encodes");
    out.to_vec()
}

/// A content header frame for `class_id` announcing `body_size` bytes, with `properties`.
fn header_frame_with(channel: u16, class_id: u16, weight: u16, body_size: u64, properties: &AMQPProperties) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&class_id.to_be_bytes());
    payload.extend_from_slice(&weight.to_be_bytes());
    payload.extend_from_slice(&body_size.to_be_bytes());
    payload.extend_from_slice(&hotpath::encode_properties(properties).expect("test properties encode"));
    raw_frame(FRAME_HEADER, channel, &payload)
}

fn header_frame(channel: u16, body_size: u64) -> Vec<u8> {
    header_frame_with(channel, 60, 0, body_size, &AMQPProperties::default())
}

fn body_frame(channel: u16, body: &[u8]) -> Vec<u8> {
    raw_frame(FRAME_BODY, channel, body)
}

/// A client whose channel 1 is open.
fn client_with_channel(broker: &Broker) -> Client<'_> {
    let mut client = broker.connect(0);
    client.open_channel(1);
    client
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

/// Asserts the connection was closed with exactly `expected` and nothing else happened after.
fn assert_connection_closed(client: &mut Client<'_>, expected: (u16, &str, u16, u16)) {
    let methods = client.methods();
    let (code, text, class_id, method_id) = expected;
    assert_eq!(connection_close(&methods), Some((code, text.to_string(), class_id, method_id)), "{methods:?}");
    assert!(client.closed, "the connection should be closed");
}

/// Asserts the connection was closed with `code`, whatever the text: the companion of an
/// ignored test whose text differs from RabbitMQ's, so the broker's path stays covered.
fn assert_connection_closed_with_code(client: &mut Client<'_>, code: u16) {
    let methods = client.methods();
    assert_eq!(connection_close(&methods).map(|close| close.0), Some(code), "{methods:?}");
    assert!(client.closed, "the connection should be closed");
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
fn a_publish_assembled_from_method_header_and_bodies_is_routed_whole() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, declare("assembled"));
    client.output();
    client.send(1, publish_method("", "assembled"));
    client.send_bytes(&header_frame(1, 11));
    client.send_bytes(&body_frame(1, b"hello "));
    client.send_bytes(&body_frame(1, b"world"));
    assert!(client.output().is_empty());
    client.send(1, get("assembled"));
    match client.output().as_slice() {
        [Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::GetOk(_)) }, Out::Header { channel: 1, header }, Out::Body { channel: 1, body }] =>
        {
            assert_eq!(header.body_size, 11);
            assert_eq!(&body[..], b"hello world");
        }
        other => panic!("expected the message in one get-ok, got {other:?}"),
    }
}

#[test]
fn a_header_with_a_zero_body_size_completes_the_publish() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, declare("empty-body"));
    client.output();
    client.send(1, publish_method("", "empty-body"));
    client.send_bytes(&header_frame(1, 0));
    client.send(1, get("empty-body"));
    match client.output().as_slice() {
        [Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::GetOk(ok)) }, Out::Header { channel: 1, header }] =>
        {
            assert_eq!(ok.message_count, 0);
            assert_eq!(header.body_size, 0);
        }
        other => panic!("expected a get-ok without body frame, got {other:?}"),
    }
}

#[test]
fn a_content_header_without_a_publish_closes_the_connection() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send_bytes(&header_frame(1, 5));
    assert_connection_closed_with_code(&mut client, 505);
}

#[test]
fn a_content_frame_on_a_channel_never_opened_closes_the_connection_with_505() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.send_bytes(&body_frame(4, b"hello"));
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0),
    );
}

#[test]
fn a_method_frame_too_short_for_its_ids_closes_the_connection_with_501() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send_bytes(&raw_frame(FRAME_METHOD, 1, &[0, 60]));
    assert_connection_closed_with_code(&mut client, 501);
}

#[test]
fn a_method_frame_too_short_for_its_ids_is_an_unknown_frame() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send_bytes(&raw_frame(FRAME_METHOD, 1, &[0, 60]));
    assert_connection_closed(&mut client, (501, "FRAME_ERROR - type 1, all octets = <<0,60>>: unknown_frame", 0, 0));
}

/// basic.ack (60, 80) whose delivery tag stops after four of its eight bytes.
const TRUNCATED_ACK: [u8; 8] = [0, 60, 0, 80, 0, 0, 0, 1];

#[test]
fn a_truncated_basic_ack_closes_the_connection_with_501() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send_bytes(&raw_frame(FRAME_METHOD, 1, &TRUNCATED_ACK));
    assert_connection_closed_with_code(&mut client, 501);
}

#[test]
fn a_truncated_basic_ack_cannot_be_decoded() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send_bytes(&raw_frame(FRAME_METHOD, 1, &TRUNCATED_ACK));
    assert_connection_closed(&mut client, (501, "FRAME_ERROR - cannot decode <<0,0,0,1>>", 60, 80));
}

#[test]
fn a_content_header_without_a_publish_closes_the_connection_with_505() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send_bytes(&header_frame(1, 5));
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0),
    );
}

#[test]
fn a_content_body_without_a_publish_closes_the_connection_with_505() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send_bytes(&body_frame(1, b"hello"));
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0),
    );
}

#[test]
fn a_content_body_instead_of_the_header_closes_the_connection_with_505() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, publish_method("", "q"));
    client.send_bytes(&body_frame(1, b"hello"));
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead", 60, 40),
    );
}

#[test]
fn a_method_instead_of_the_content_header_closes_the_connection_with_505() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, publish_method("", "q"));
    client.send(1, qos(1));
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead", 60, 40),
    );
}

#[test]
fn a_method_instead_of_the_content_body_closes_the_connection_with_505() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, publish_method("", "q"));
    client.send_bytes(&header_frame(1, 5));
    client.send_bytes(&body_frame(1, b"he"));
    client.send(1, qos(1));
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - expected content body, got non content body frame instead", 60, 40),
    );
}

#[test]
fn a_second_content_header_instead_of_the_body_closes_the_connection_with_505() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, publish_method("", "q"));
    client.send_bytes(&header_frame(1, 5));
    client.send_bytes(&header_frame(1, 5));
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - expected content body, got non content body frame instead", 60, 40),
    );
}

#[test]
fn a_channel_close_while_content_is_expected_closes_the_connection_with_505() {
    // RabbitMQ 3.10's command assembler accepts only the content frames at this point.
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, publish_method("", "q"));
    client.send(1, close_method());
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead", 60, 40),
    );
}

#[test]
fn a_content_body_longer_than_announced_leaves_the_channel_expecting_more_body() {
    // RabbitMQ 3.10 subtracts the frame from the remaining size without checking it, so the
    // publish never completes and the next method is the error.
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, publish_method("", "q"));
    client.send_bytes(&header_frame(1, 3));
    client.send_bytes(&body_frame(1, b"hello"));
    assert!(client.output().is_empty());
    assert!(!client.closed);
    client.send(1, qos(1));
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - expected content body, got non content body frame instead", 60, 40),
    );
}

#[test]
fn a_content_body_longer_than_announced_publishes_nothing() {
    let broker = Broker::new(1);
    let mut declarer = client_with_channel(&broker);
    declarer.send(1, declare("exact"));
    declarer.output();
    let mut client = client_with_channel(&broker);
    client.send(1, publish_method("", "exact"));
    client.send_bytes(&header_frame(1, 3));
    client.send_bytes(&body_frame(1, b"hello"));
    declarer.send(1, get("exact"));
    let methods = declarer.methods();
    assert!(matches!(methods.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::GetEmpty(_)))]), "{methods:?}");
}

#[test]
fn a_content_header_of_another_class_closes_the_connection_with_505() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, publish_method("", "q"));
    client.send_bytes(&header_frame_with(1, 50, 0, 5, &AMQPProperties::default()));
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead", 60, 40),
    );
}

#[test]
fn a_content_header_with_a_weight_closes_the_connection_with_505() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, publish_method("", "q"));
    client.send_bytes(&header_frame_with(1, 60, 1, 5, &AMQPProperties::default()));
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead", 60, 40),
    );
}

/// Publishes a message of `MESSAGE_BODY_MAX_BYTES + 1` bytes frame by frame; returns the
/// output seen after the header alone and after the last body frame.
fn publish_oversized(client: &mut Client<'_>) -> (Methods, Methods) {
    let body_size = crate::limits::MESSAGE_BODY_MAX_BYTES + 1;
    client.send(1, publish_method("", "q"));
    client.send_bytes(&header_frame(1, body_size));
    let after_header = client.methods();
    let chunk_bytes = FRAME_MAX_BYTES as u64 - 8;
    let chunk = vec![b'x'; chunk_bytes as usize];
    let mut sent = 0;
    while sent < body_size {
        let length = chunk_bytes.min(body_size - sent);
        client.send_bytes(&body_frame(1, &chunk[..length as usize]));
        sent += length;
    }
    (after_header, client.methods())
}

#[test]
fn a_message_larger_than_the_maximum_closes_the_channel_with_406() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    let (after_header, after_body) = publish_oversized(&mut client);
    let methods: Methods = after_header.into_iter().chain(after_body).collect();
    assert_eq!(
        channel_close(&methods, 1),
        Some((
            406,
            "PRECONDITION_FAILED - message size 134217729 is larger than configured max size 134217728".into(),
            60,
            40
        ))
    );
    assert_eq!(methods.len(), 1, "{methods:?}");
    assert!(!client.closed);
}

#[test]
fn a_message_larger_than_the_maximum_is_refused_after_its_body() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    let (after_header, after_body) = publish_oversized(&mut client);
    assert!(after_header.is_empty(), "{after_header:?}");
    assert_eq!(
        channel_close(&after_body, 1),
        Some((
            406,
            "PRECONDITION_FAILED - message size 134217729 is larger than configured max size 134217728".into(),
            60,
            40
        ))
    );
}

#[test]
fn a_user_id_other_than_the_authenticated_user_closes_the_channel_with_406() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    let properties = AMQPProperties::default().with_user_id("bob".into());
    client.publish(1, "", "q", &properties, b"x");
    let methods = client.methods();
    assert_eq!(
        channel_close(&methods, 1),
        Some((
            406,
            "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'".into(),
            60,
            40
        ))
    );
    assert!(!client.closed);
}

#[test]
fn the_authenticated_user_as_user_id_is_accepted_and_delivered() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, declare("users"));
    client.output();
    let properties = AMQPProperties::default().with_user_id("guest".into());
    client.publish(1, "", "users", &properties, b"x");
    client.send(1, get("users"));
    match client.output().as_slice() {
        [Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::GetOk(_)), .. }, Out::Header { header, .. }, Out::Body { .. }] =>
        {
            let properties = hotpath::parse_properties(&header.properties).expect("properties parse");
            assert_eq!(properties.user_id().as_ref().map(|user| user.as_str()), Some("guest"));
        }
        other => panic!("expected the message, got {other:?}"),
    }
}

fn publish_with_expiration(expiration: &str) -> Vec<(u16, AMQPClass)> {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    let properties = AMQPProperties::default().with_expiration(expiration.into());
    client.publish(1, "", "q", &properties, b"x");
    assert!(!client.closed);
    client.methods()
}

#[test]
fn a_negative_expiration_closes_the_channel_with_406() {
    let methods = publish_with_expiration("-1");
    assert_eq!(
        channel_close(&methods, 1),
        Some((406, "PRECONDITION_FAILED - invalid expiration '-1': {value_negative,-1}".into(), 60, 40))
    );
}

#[test]
fn a_non_numeric_expiration_closes_the_channel_with_406() {
    let methods = publish_with_expiration("soon");
    assert_eq!(
        channel_close(&methods, 1),
        Some((406, "PRECONDITION_FAILED - invalid expiration 'soon': no_integer".into(), 60, 40))
    );
}

#[test]
fn an_expiration_with_trailing_characters_closes_the_channel_with_406() {
    let methods = publish_with_expiration("10s");
    assert_eq!(
        channel_close(&methods, 1),
        Some((406, "PRECONDITION_FAILED - invalid expiration '10s': {leftover_string,\"s\"}".into(), 60, 40))
    );
}

#[test]
fn an_expiration_over_ten_years_closes_the_channel_with_406() {
    let methods = publish_with_expiration("315360000001");
    assert_eq!(
        channel_close(&methods, 1),
        Some((
            406,
            "PRECONDITION_FAILED - invalid expiration '315360000001': {value_too_large,315360000001}".into(),
            60,
            40
        ))
    );
}

#[test]
fn a_valid_expiration_is_accepted() {
    let methods = publish_with_expiration("60000");
    assert!(methods.is_empty(), "{methods:?}");
}

#[test]
fn a_heartbeat_on_channel_0_is_accepted_silently() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.send_bytes(&raw_frame(FRAME_HEARTBEAT, 0, b""));
    assert!(client.output().is_empty());
    assert!(!client.closed);
}

#[test]
fn a_heartbeat_on_a_channel_closes_the_connection_with_505() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send_bytes(&raw_frame(FRAME_HEARTBEAT, 1, b""));
    assert_connection_closed(&mut client, (505, "UNEXPECTED_FRAME - type 8, all octets = <<>>", 0, 0));
}

#[test]
fn an_unknown_frame_type_closes_the_connection_with_501() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send_bytes(&raw_frame(9, 1, b""));
    assert_connection_closed(&mut client, (501, "FRAME_ERROR - type 9, all octets = <<>>: unknown_frame", 0, 0));
}

#[test]
fn an_unknown_frame_type_closes_the_connection_with_501_frame_error() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send_bytes(&raw_frame(9, 1, b""));
    let methods = client.methods();
    assert_eq!(connection_close(&methods).map(|close| close.0), Some(501), "{methods:?}");
    assert!(client.closed);
}

#[test]
fn a_content_body_on_channel_0_closes_the_connection_with_505() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.send_bytes(&body_frame(0, b"hello"));
    assert_connection_closed(&mut client, (505, "UNEXPECTED_FRAME - type 3, all octets = <<\"hello\">>", 0, 0));
}

#[test]
fn a_content_header_on_channel_0_closes_the_connection_with_505() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.send_bytes(&header_frame(0, 0));
    assert_connection_closed(
        &mut client,
        (505, "UNEXPECTED_FRAME - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,0,0,0>>", 0, 0),
    );
}

#[test]
fn connection_close_is_answered_with_close_ok_and_ends_the_connection() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    );
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))]),
        "{methods:?}"
    );
    assert!(client.closed);
}

#[test]
fn a_second_connection_open_closes_the_connection_with_504() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.send(0, open("/"));
    assert_connection_closed(
        &mut client,
        (504, "CHANNEL_ERROR - unexpected method in connection state running", 10, 40),
    );
}

#[test]
fn a_channel_method_on_channel_0_closes_the_connection_with_504() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.send(0, open_method());
    assert_connection_closed(
        &mut client,
        (504, "CHANNEL_ERROR - unexpected method in connection state running", 20, 10),
    );
}

#[test]
fn connection_update_secret_is_answered_with_update_secret_ok() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.send(
        0,
        AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(connection::UpdateSecret {
            new_secret: LongString::from(b"guest".to_vec()),
            reason: "rotation".into(),
        })),
    );
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(0, AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(_)))]),
        "{methods:?}"
    );
}

#[test]
fn connection_blocked_from_a_client_closes_the_connection_with_504() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.send(0, AMQPClass::Connection(connection::AMQPMethod::Blocked(connection::Blocked { reason: "x".into() })));
    assert_connection_closed(
        &mut client,
        (504, "CHANNEL_ERROR - unexpected method in connection state running", 10, 60),
    );
}

#[test]
fn an_unsolicited_connection_close_ok_closes_the_connection_with_504() {
    let broker = Broker::new(1);
    let mut client = broker.connect(0);
    client.send(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})));
    assert_connection_closed(
        &mut client,
        (504, "CHANNEL_ERROR - unexpected method in connection state running", 10, 51),
    );
}

#[test]
fn a_connection_method_on_a_channel_closes_the_connection_with_503() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, open("/"));
    assert_connection_closed_with_code(&mut client, 503);
}

#[test]
fn a_connection_method_on_a_channel_is_an_unimplemented_method() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, open("/"));
    assert_connection_closed(&mut client, (503, "COMMAND_INVALID - unimplemented method", 10, 40));
}

#[test]
fn access_request_is_answered_with_request_ok() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(
        1,
        AMQPClass::Access(access::AMQPMethod::Request(access::Request {
            realm: "/data".into(),
            exclusive: false,
            passive: true,
            active: true,
            write: true,
            read: true,
        })),
    );
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(1, AMQPClass::Access(access::AMQPMethod::RequestOk(_)))]), "{methods:?}");
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
