//! Malformed input on raw sockets. After every bad client the broker must
//! still serve a well-behaved lapin client.

use crate::common::raw::*;
use crate::common::*;

/// A normal client can still connect, declare, publish and get.
async fn assert_broker_still_serves(broker: &Broker) {
    let (conn, ch) = connect_channel(&broker.uri()).await;
    let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
    publish(&ch, "", q.name().as_str(), b"alive").await;
    let mut inbox = consume(&ch, q.name().as_str(), BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
    assert_eq!(inbox.expect(T).await.data, b"alive");
    close_conn(&conn).await;
}

fn queue_declare_args(name: &str) -> Args {
    Args::new().u16(0).shortstr(name).u8(0).empty_table()
}

shard_tests! {
    async fn garbage_protocol_header_gets_amqp_header_and_close(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let reply = c.read_exact(8).expect("the broker answers with its protocol header");
        assert_eq!(&reply, PROTOCOL_HEADER);
        c.expect_eof(5);
        assert_broker_still_serves(broker).await;
    }

    async fn unsupported_protocol_version_gets_amqp_header_and_close(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.send(b"AMQP\x00\x01\x00\x00");
        let reply = c.read_exact(8).expect("the broker answers with its protocol header");
        assert_eq!(&reply, PROTOCOL_HEADER);
        c.expect_eof(5);
        assert_broker_still_serves(broker).await;
    }

    async fn frame_larger_than_frame_max_is_501(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        let tune = c.handshake();
        c.open_channel(1);
        assert!(tune.frame_max >= 4096, "frame_max {}", tune.frame_max);
        // A publish whose body frame exceeds the negotiated frame_max.
        let mut out = method(1, 60, 40, Args::new().u16(0).shortstr("").shortstr("k").u8(0));
        let body = vec![b'x'; tune.frame_max as usize + 100];
        out.extend(content_header(1, body.len() as u64));
        out.extend(frame(FRAME_BODY, 1, &body));
        let _ = c.send_lossy(&out);
        let text = c.expect_connection_close(501);
        let expected = format!(
            "FRAME_ERROR - type 3, all octets = <<>>: {{frame_too_large,{},{}}}",
            body.len(),
            tune.frame_max - 8
        );
        assert_eq!(text, expected);
        assert_broker_still_serves(broker).await;
    }

    async fn ten_megabyte_frame_claim_is_501_without_reading_it(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        let tune = c.handshake();
        c.open_channel(1);
        // Only the 7-byte header and a few payload bytes are sent.
        let mut head = vec![FRAME_METHOD, 0, 1];
        head.extend_from_slice(&10_000_000u32.to_be_bytes());
        head.extend_from_slice(&[0, 50, 0, 10]);
        c.send(&head);
        let text = c.expect_connection_close(501);
        let expected =
            format!("FRAME_ERROR - type 1, all octets = <<>>: {{frame_too_large,10000000,{}}}", tune.frame_max - 8);
        assert_eq!(text, expected);
        assert_broker_still_serves(broker).await;
    }

    async fn bad_frame_end_octet_is_501(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.open_channel(1);
        let mut f = method(1, 50, 10, queue_declare_args(&unique("q-badend")));
        let last = f.len() - 1;
        f[last] = 0x00;
        c.send(&f);
        let text = c.expect_connection_close(501);
        // RabbitMQ shows the first 16 octets of a longer payload, as Erlang prints a binary.
        let first_16: Vec<String> = f[7..23].iter().map(|octet| octet.to_string()).collect();
        let expected = format!(
            "FRAME_ERROR - type 1, first 16 octets = <<{}>>: {{invalid_frame_end_marker,0}}",
            first_16.join(",")
        );
        assert_eq!(text, expected);
        assert_broker_still_serves(broker).await;
    }

    async fn method_on_unopened_channel_is_504(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.send(&method(5, 50, 10, queue_declare_args(&unique("q-noch"))));
        let text = c.expect_connection_close(504);
        assert_eq!(text, "CHANNEL_ERROR - expected 'channel.open'");
        assert_broker_still_serves(broker).await;
    }

    async fn second_channel_open_is_504(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.open_channel(1);
        c.send(&method(1, 20, 10, Args::new().shortstr("")));
        let text = c.expect_connection_close(504);
        assert_eq!(text, "CHANNEL_ERROR - second 'channel.open' seen");
        assert_broker_still_serves(broker).await;
    }

    async fn content_body_without_header_is_505(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.open_channel(1);
        c.send(&frame(FRAME_BODY, 1, b"orphan body"));
        let text = c.expect_connection_close(505);
        assert_eq!(text, "UNEXPECTED_FRAME - expected method frame, got non method frame instead");
        assert_broker_still_serves(broker).await;
    }

    async fn method_instead_of_content_header_is_505(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.open_channel(1);
        c.send(&method(1, 60, 40, Args::new().u16(0).shortstr("").shortstr("k").u8(0)));
        c.send(&method(1, 50, 10, queue_declare_args(&unique("q-midcontent"))));
        let text = c.expect_connection_close(505);
        assert_eq!(text, "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead");
        assert_broker_still_serves(broker).await;
    }

    async fn unknown_class_and_method_is_540_or_dropped(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.open_channel(1);
        c.send(&method(1, 999, 999, Args::new().u32(0)));
        // Spec: connection.close 540 NOT_IMPLEMENTED. RabbitMQ 3.10 instead
        // crashes the connection process ({unknown_method_id,{999,999}}) and
        // resets the socket without a close. Either ends the connection.
        if let Some(text) = c.expect_connection_close_or_drop(540) {
            assert!(text.starts_with("NOT_IMPLEMENTED"), "reply text: {text:?}");
        }
        assert_broker_still_serves(broker).await;
    }

    async fn unknown_method_of_known_class_is_540_or_dropped(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.open_channel(1);
        // queue class (50), method 99 does not exist. Same RabbitMQ deviation as above.
        c.send(&method(1, 50, 99, Args::new().u32(0)));
        if let Some(text) = c.expect_connection_close_or_drop(540) {
            assert!(text.starts_with("NOT_IMPLEMENTED"), "reply text: {text:?}");
        }
        assert_broker_still_serves(broker).await;
    }

    async fn short_string_longer_than_frame_is_rejected(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.open_channel(1);
        // queue.declare whose queue-name length octet says 200 but only 3 bytes follow.
        let args = Args::new().u16(0).u8(200).raw(b"abc");
        c.send(&method(1, 50, 10, args));
        // RabbitMQ answers an undecodable method with 501 FRAME_ERROR
        // ("FRAME_ERROR - cannot decode <<...>>"), not 502 SYNTAX_ERROR.
        let text = c.expect_connection_close(501);
        assert!(text.starts_with("FRAME_ERROR"), "reply text: {text:?}");
        assert_broker_still_serves(broker).await;
    }

    async fn heartbeat_on_nonzero_channel_is_505(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.open_channel(1);
        c.send(&frame(FRAME_HEARTBEAT, 1, b""));
        // The spec asks for 501 FRAME_ERROR; RabbitMQ sends 505
        // "UNEXPECTED_FRAME - type 8, all octets = <<>>".
        let text = c.expect_connection_close(505);
        assert!(text.starts_with("UNEXPECTED_FRAME"), "reply text: {text:?}");
        assert_broker_still_serves(broker).await;
    }

    async fn unknown_frame_type_is_501(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.send(&frame(9, 0, b"??"));
        let text = c.expect_connection_close(501);
        assert!(text.starts_with("FRAME_ERROR"), "reply text: {text:?}");
        assert_broker_still_serves(broker).await;
    }

    async fn channel_method_on_channel_zero_is_504(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.send(&method(0, 50, 10, queue_declare_args(&unique("q-ch0"))));
        // RabbitMQ: 504 "CHANNEL_ERROR - unexpected method in connection state running".
        let text = c.expect_connection_close(504);
        assert!(text.starts_with("CHANNEL_ERROR"), "reply text: {text:?}");
        assert_broker_still_serves(broker).await;
    }

    async fn trailing_bytes_after_method_arguments_are_501(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.open_channel(1);
        let args = queue_declare_args(&unique("q-trailing")).raw(b"extra");
        c.send(&method(1, 50, 10, args));
        // RabbitMQ: "FRAME_ERROR - cannot decode <<...>>".
        let text = c.expect_connection_close(501);
        assert!(text.starts_with("FRAME_ERROR"), "reply text: {text:?}");
        assert_broker_still_serves(broker).await;
    }

    async fn frame_of_exactly_frame_max_octets_is_accepted(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        let tune = c.handshake();
        c.open_channel(1);
        // frame_max counts the whole frame: 7 header octets + payload + end octet.
        let payload = tune.frame_max as usize - 8;
        let q = unique("q-framemax");
        c.send(&method(1, 50, 10, queue_declare_args(&q)));
        c.expect_method(50, 11);
        let mut out = method(1, 60, 40, Args::new().u16(0).shortstr("").shortstr(&q).u8(0));
        out.extend(content_header(1, payload as u64));
        out.extend(frame(FRAME_BODY, 1, &vec![b'y'; payload]));
        c.send(&out);
        // Synchronous round trips prove the connection survived; the count can
        // lag behind the publish, so poll it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            c.send(&method(1, 50, 10, Args::new().u16(0).shortstr(&q).u8(1).empty_table()));
            let ok = c.expect_method(50, 11);
            let p = &ok.payload[4..];
            let name_len = p[0] as usize;
            let count = u32::from_be_bytes(p[1 + name_len..5 + name_len].try_into().expect("4 bytes"));
            if count == 1 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the frame_max-sized message was not enqueued");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        c.send(&method(1, 50, 40, Args::new().u16(0).shortstr(&q).u8(0)));
        c.expect_method(50, 41);
        assert_broker_still_serves(broker).await;
    }

    async fn frame_payload_over_frame_max_is_501(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        let tune = c.handshake();
        c.open_channel(1);
        // By the spec a frame may be at most frame_max octets in total
        // (payload <= frame_max - 8). RabbitMQ tolerates 8 extra octets, as
        // SpateMQ does, and rejects only payloads above frame_max, reporting
        // "{frame_too_large,PAYLOAD,FRAME_MAX-8}".
        let payload = tune.frame_max as usize + 1;
        let mut out = method(1, 60, 40, Args::new().u16(0).shortstr("").shortstr("k").u8(0));
        out.extend(content_header(1, payload as u64));
        out.extend(frame(FRAME_BODY, 1, &vec![b'y'; payload]));
        let _ = c.send_lossy(&out);
        let text = c.expect_connection_close(501);
        let expected =
            format!("FRAME_ERROR - type 3, all octets = <<>>: {{frame_too_large,{payload},{}}}", tune.frame_max - 8);
        assert_eq!(text, expected);
        assert_broker_still_serves(broker).await;
    }

    async fn content_header_of_other_class_is_505(broker: &Broker) {
        let mut c = RawClient::connect(&broker.addr());
        c.handshake();
        c.open_channel(1);
        let mut out = method(1, 60, 40, Args::new().u16(0).shortstr("").shortstr("k").u8(0));
        out.extend(frame(FRAME_HEADER, 1, &Args::new().u16(50).u16(0).u64(1).u16(0).0));
        c.send(&out);
        let text = c.expect_connection_close(505);
        assert_eq!(text, "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead");
        assert_broker_still_serves(broker).await;
    }

    async fn client_vanishing_mid_handshake_does_not_hurt(broker: &Broker) {
        for cut in [3usize, 8] {
            let mut c = RawClient::connect(&broker.addr());
            c.send(&PROTOCOL_HEADER[..cut.min(8)]);
            c.drop_connection();
        }
        let mut c = RawClient::connect(&broker.addr());
        c.send(PROTOCOL_HEADER);
        c.expect_method(10, 10);
        c.drop_connection();
        assert_broker_still_serves(broker).await;
    }
}
