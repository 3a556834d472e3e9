//! Bad frames: short method frames, heartbeats on channels, unknown frame types, content on channel 0.

use super::*;

/// basic.ack (60, 80) whose delivery tag stops after four of its eight bytes.
const TRUNCATED_ACK: [u8; 8] = [0, 60, 0, 80, 0, 0, 0, 1];

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

/// basic.qos (prefetch_count 1) as a method frame payload.
const QOS_PAYLOAD: [u8; 11] = [0, 60, 0, 10, 0, 0, 0, 0, 0, 1, 0];

#[test]
fn a_bad_frame_end_octet_is_501_with_the_frame_and_the_octet_found() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    let mut frame = raw_frame(FRAME_METHOD, 1, &QOS_PAYLOAD);
    *frame.last_mut().expect("a frame") = 0;
    client.send_bytes(&frame);
    let text = "FRAME_ERROR - type 1, all octets = <<0,60,0,10,0,0,0,0,0,1,0>>: {invalid_frame_end_marker,0}";
    assert_connection_closed(&mut client, (501, text, 0, 0));
}

#[test]
fn a_bad_frame_end_after_a_long_payload_shows_its_first_16_octets() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    let mut frame = raw_frame(FRAME_BODY, 1, b"a body of twenty bytes");
    *frame.last_mut().expect("a frame") = 0xCD;
    client.send_bytes(&frame);
    let text = "FRAME_ERROR - type 3, first 16 octets = <<\"a body of twenty\">>: {invalid_frame_end_marker,205}";
    assert_connection_closed(&mut client, (501, text, 0, 0));
}

#[test]
fn a_frame_over_frame_max_is_501_with_the_size_and_frame_max_less_8() {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    let frame_max = client.connection.frame_max.get();
    // Only the header of a frame announcing 1 GiB: refused before any payload is read.
    let mut header = vec![FRAME_METHOD, 0, 1];
    header.extend_from_slice(&(1u32 << 30).to_be_bytes());
    client.send_bytes(&header);
    let text = format!("FRAME_ERROR - type 1, all octets = <<>>: {{frame_too_large,1073741824,{}}}", frame_max - 8);
    assert_connection_closed(&mut client, (501, &text, 0, 0));
}
