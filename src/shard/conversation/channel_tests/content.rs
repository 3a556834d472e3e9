//! A publish assembled from method, header and body frames, its errors, and size/user-id/expiration checks.

use super::*;

fn publish_method(exchange: &str, routing_key: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        mandatory: false,
        immediate: false,
    }))
}

/// Methods the broker wrote, with their channels.
type Methods = Vec<(u16, AMQPClass)>;

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

fn publish_with_expiration(expiration: &str) -> Vec<(u16, AMQPClass)> {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    let properties = AMQPProperties::default().with_expiration(expiration.into());
    client.publish(1, "", "q", &properties, b"x");
    assert!(!client.closed);
    client.methods()
}

/// A body frame whose payload is `body_bytes` long under the connection's frame_max, and what
/// a basic.get of it then returns (None: the connection was closed).
fn publish_one_body_frame(body_bytes: usize) -> (Option<usize>, Vec<(u16, AMQPClass)>) {
    let broker = Broker::new(1);
    let mut client = client_with_channel(&broker);
    client.send(1, declare("edge"));
    client.output();
    client.send(1, publish_method("", "edge"));
    client.send_bytes(&header_frame(1, body_bytes as u64));
    client.send_bytes(&body_frame(1, &vec![b'e'; body_bytes]));
    if client.closed {
        return (None, client.methods());
    }
    client.send(1, get("edge"));
    let output = client.output();
    let received = output.iter().map(|out| if let Out::Body { body, .. } = out { body.len() } else { 0 }).sum();
    (Some(received), Vec::new())
}

#[test]
fn a_body_frame_of_frame_max_octets_is_accepted_as_rabbitmq_does() {
    // The spec allows frame_max - 8 octets of payload; RabbitMQ lets clients that forget the
    // frame overhead send up to frame_max.
    let frame_max = FRAME_MAX_BYTES as usize;
    assert_eq!(publish_one_body_frame(frame_max), (Some(frame_max), Vec::new()));
}

#[test]
fn a_body_frame_of_frame_max_plus_one_octets_is_501() {
    let frame_max = FRAME_MAX_BYTES;
    let (received, methods) = publish_one_body_frame(frame_max as usize + 1);
    assert_eq!(received, None);
    let text =
        format!("FRAME_ERROR - type 3, all octets = <<>>: {{frame_too_large,{},{}}}", frame_max + 1, frame_max - 8);
    assert_eq!(connection_close(&methods), Some((501, text, 0, 0)), "{methods:?}");
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
