//! The connection handshake (`amqp::handshake`) driven frame by frame: the protocol header,
//! start/start-ok with PLAIN and AMQPLAIN, tune/tune-ok, open/open-ok, and every refusal.
//!
//! The clients here announce `authentication_failure_close`, as RabbitMQ only sends
//! connection.close for a refused login to clients that do.

use amq_protocol::protocol::connection as method;

use super::*;
use crate::codec::frame::{FrameError, PROTOCOL_HEADER};
use crate::limits::{CHANNEL_MAX, HEARTBEAT_SECONDS};

const LOGIN_REFUSED_PLAIN: &str =
    "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.";
const LOGIN_REFUSED_AMQPLAIN: &str =
    "ACCESS_REFUSED - Login was refused using authentication mechanism AMQPLAIN. For details see the broker logfile.";

/// start-ok as a client that wants to hear why its login was refused (and, as the harness's
/// clients, handles connection.blocked).
fn start_ok_announcing(mechanism: &str, response: &[u8]) -> AMQPClass {
    let mut method = start_ok(mechanism, response);
    if let AMQPClass::Connection(method::AMQPMethod::StartOk(start_ok)) = &mut method {
        let mut capabilities = match start_ok.client_properties.inner().get("capabilities") {
            Some(AMQPValue::FieldTable(capabilities)) => capabilities.clone(),
            _ => FieldTable::default(),
        };
        capabilities.insert("authentication_failure_close".into(), AMQPValue::Boolean(true));
        start_ok.client_properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    }
    method
}

/// start-ok of a client that announces no capability at all.
fn start_ok_without_capabilities(mechanism: &str, response: &[u8]) -> AMQPClass {
    let mut method = start_ok(mechanism, response);
    if let AMQPClass::Connection(method::AMQPMethod::StartOk(start_ok)) = &mut method {
        start_ok.client_properties = FieldTable::default();
    }
    method
}

/// A client whose protocol header was accepted and whose connection.start was read.
fn started(broker: &Broker, loopback_peer: bool) -> Client<'_> {
    let mut client = broker.connect_raw(0, loopback_peer);
    assert_eq!(client.handshake_bytes(PROTOCOL_HEADER), Step::HeaderAccepted(8));
    client.output();
    client
}

/// A client that logged in as guest and read connection.tune.
fn tuning(broker: &Broker) -> Client<'_> {
    let mut client = started(broker, true);
    assert_eq!(client.handshake_method(start_ok_announcing("PLAIN", b"\0guest\0guest")), Step::Continue);
    client.output();
    client
}

/// A client that also sent tune-ok with the broker's own values.
fn opening(broker: &Broker) -> Client<'_> {
    let mut client = tuning(broker);
    assert_eq!(client.handshake_method(tune_ok(CHANNEL_MAX, FRAME_MAX_BYTES, 0)), Step::Continue);
    assert!(client.output().is_empty());
    client
}

/// AMQPLAIN's response: a field table without its length prefix.
fn amqplain(login: &str, password: &str) -> Vec<u8> {
    let mut response = Vec::new();
    for (key, value) in [("LOGIN", login), ("PASSWORD", password)] {
        response.push(key.len() as u8);
        response.extend_from_slice(key.as_bytes());
        response.push(b'S');
        response.extend_from_slice(&(value.len() as u32).to_be_bytes());
        response.extend_from_slice(value.as_bytes());
    }
    response
}

fn is_tune(methods: &[(u16, AMQPClass)]) -> bool {
    methods.iter().any(|(_, method)| matches!(method, AMQPClass::Connection(method::AMQPMethod::Tune(_))))
}

/// Hands the handshake a frame as the driver does.
fn handshake_frame(client: &mut Client, frame: RawFrame) -> Step {
    let step = client.handshake.frame(&*client.shard, &client.connection, frame);
    if step == Step::Refused {
        client.closed = true;
    }
    step
}

fn heartbeat_frame(channel: u16) -> RawFrame {
    RawFrame { frame_type: FRAME_HEARTBEAT, channel, payload: Bytes::new() }
}

#[test]
fn the_0_9_1_header_is_answered_with_connection_start() {
    let broker = Broker::new(1);
    let mut client = broker.connect_raw(0, true);
    assert_eq!(client.handshake_bytes(b"AMQP\x00\x00\x09\x01trailing"), Step::HeaderAccepted(8));
    let methods = client.methods();
    let [(0, AMQPClass::Connection(method::AMQPMethod::Start(start)))] = methods.as_slice() else {
        panic!("expected connection.start on channel 0, got {methods:?}");
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    assert_eq!(start.mechanisms.to_string(), "PLAIN AMQPLAIN");
    assert_eq!(start.locales.to_string(), "en_US");
    let Some(AMQPValue::FieldTable(capabilities)) = start.server_properties.inner().get("capabilities") else {
        panic!("no capabilities table in {:?}", start.server_properties);
    };
    let mut announced: Vec<&str> = capabilities
        .inner()
        .iter()
        .filter(|(_, value)| matches!(value, AMQPValue::Boolean(true)))
        .map(|(name, _)| name.as_str())
        .collect();
    announced.sort_unstable();
    assert_eq!(
        announced,
        [
            "authentication_failure_close",
            "basic.nack",
            "connection.blocked",
            "consumer_cancel_notify",
            "consumer_priorities",
            "direct_reply_to",
            "exchange_exchange_bindings",
            "per_consumer_qos",
            "publisher_confirms",
        ]
    );
    assert_eq!(capabilities.inner().len(), 9, "only true capabilities are announced");
    assert!(matches!(
        start.server_properties.inner().get("product"),
        Some(AMQPValue::LongString(product)) if product.to_string() == "SpateMQ"
    ));
}

#[test]
fn a_partial_protocol_header_waits_for_the_rest() {
    let broker = Broker::new(1);
    let mut client = broker.connect_raw(0, true);
    assert_eq!(client.handshake_bytes(b"AMQP\x00"), Step::Continue);
    assert!(client.output().is_empty());
}

#[test]
fn a_header_of_an_unsupported_version_gets_ours_back() {
    let broker = Broker::new(1);
    let mut client = broker.connect_raw(0, true);
    assert_eq!(client.handshake_bytes(b"AMQP\x00\x00\x09\x02"), Step::Refused);
    match client.output().as_slice() {
        [Out::Raw(bytes)] => assert_eq!(&bytes[..], PROTOCOL_HEADER),
        other => panic!("expected our protocol header, got {other:?}"),
    }
}

#[test]
fn bytes_of_another_protocol_get_our_header_back() {
    let broker = Broker::new(1);
    let mut client = broker.connect_raw(0, true);
    assert_eq!(client.handshake_bytes(b"GET / HTTP/1.1\r\n"), Step::Refused);
    match client.output().as_slice() {
        [Out::Raw(bytes)] => assert_eq!(&bytes[..], PROTOCOL_HEADER),
        other => panic!("expected our protocol header, got {other:?}"),
    }
}

#[test]
fn the_0_9_header_is_accepted_as_0_9_1() {
    let broker = Broker::new(1);
    let mut client = broker.connect_raw(0, true);
    assert_eq!(client.handshake_bytes(b"AMQP\x01\x01\x00\x09"), Step::HeaderAccepted(8));
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(0, AMQPClass::Connection(method::AMQPMethod::Start(start)))] if (start.version_major, start.version_minor) == (0, 9)),
        "{methods:?}"
    );
}

#[test]
fn start_ok_as_guest_is_answered_with_tune_of_the_broker_limits() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    assert_eq!(client.handshake_method(start_ok_announcing("PLAIN", b"\0guest\0guest")), Step::Continue);
    let methods = client.methods();
    let [(0, AMQPClass::Connection(method::AMQPMethod::Tune(tune)))] = methods.as_slice() else {
        panic!("expected connection.tune, got {methods:?}");
    };
    assert_eq!((tune.channel_max, tune.frame_max, tune.heartbeat), (2047, 131_072, 60));
    assert_eq!((CHANNEL_MAX, FRAME_MAX_BYTES, HEARTBEAT_SECONDS), (2047, 131_072, 60));
}

#[test]
fn amqplain_credentials_of_guest_log_in() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    assert_eq!(client.handshake_method(start_ok_announcing("AMQPLAIN", &amqplain("guest", "guest"))), Step::Continue);
    assert!(is_tune(&client.methods()));
}

#[test]
fn the_connection_blocked_capability_of_the_client_is_remembered() {
    let broker = Broker::new(1);
    let mut aware = started(&broker, true);
    aware.handshake_method(start_ok_announcing("PLAIN", b"\0guest\0guest"));
    assert!(aware.connection.supports_blocked.get());
    let mut unaware = started(&broker, true);
    unaware.handshake_method(start_ok_without_capabilities("PLAIN", b"\0guest\0guest"));
    assert!(!unaware.connection.supports_blocked.get());
}

#[test]
fn a_wrong_password_is_refused_with_403() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    assert_eq!(client.handshake_method(start_ok_announcing("PLAIN", b"\0guest\0wrong")), Step::Refused);
    let methods = client.methods();
    let (code, text, _, _) = connection_close(&methods).expect("connection.close");
    assert_eq!((code, text.as_str()), (403, LOGIN_REFUSED_PLAIN));
    assert!(!is_tune(&methods));
}

#[test]
fn an_unknown_user_is_refused_with_403() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    assert_eq!(client.handshake_method(start_ok_announcing("PLAIN", b"\0admin\0guest")), Step::Refused);
    let (code, text, _, _) = connection_close(&client.methods()).expect("connection.close");
    assert_eq!((code, text.as_str()), (403, LOGIN_REFUSED_PLAIN));
}

#[test]
fn a_wrong_amqplain_password_is_refused_with_403() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    let step = client.handshake_method(start_ok_announcing("AMQPLAIN", &amqplain("guest", "wrong")));
    assert_eq!(step, Step::Refused);
    let (code, text, _, _) = connection_close(&client.methods()).expect("connection.close");
    assert_eq!((code, text.as_str()), (403, LOGIN_REFUSED_AMQPLAIN));
}

#[test]
fn a_refused_login_is_closed_with_class_and_method_0() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    client.handshake_method(start_ok_announcing("PLAIN", b"\0guest\0wrong"));
    assert_eq!(connection_close(&client.methods()), Some((403, LOGIN_REFUSED_PLAIN.into(), 0, 0)));
}

#[test]
fn a_refused_login_without_authentication_failure_close_is_closed_silently() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    assert_eq!(client.handshake_method(start_ok_without_capabilities("PLAIN", b"\0guest\0wrong")), Step::Refused);
    assert!(client.output().is_empty());
}

#[test]
fn an_unknown_mechanism_is_refused_before_tune() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    assert_eq!(client.handshake_method(start_ok_announcing("EXTERNAL", b"")), Step::Refused);
    assert!(!is_tune(&client.methods()));
}

#[test]
fn an_unknown_mechanism_is_closed_silently() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    assert_eq!(client.handshake_method(start_ok_announcing("EXTERNAL", b"")), Step::Refused);
    assert!(client.output().is_empty());
}

#[test]
fn a_plain_response_without_separators_is_refused_before_tune() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    assert_eq!(client.handshake_method(start_ok_announcing("PLAIN", b"guest")), Step::Refused);
    assert!(!is_tune(&client.methods()));
}

#[test]
fn a_truncated_amqplain_response_is_refused_before_tune() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    let mut response = amqplain("guest", "guest");
    response.pop();
    assert_eq!(client.handshake_method(start_ok_announcing("AMQPLAIN", &response)), Step::Refused);
    assert!(!is_tune(&client.methods()));
}

#[test]
fn an_amqplain_response_without_password_is_refused_before_tune() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    let mut response = amqplain("guest", "guest");
    response.truncate(1 + "LOGIN".len() + 1 + 4 + "guest".len());
    assert_eq!(client.handshake_method(start_ok_announcing("AMQPLAIN", &response)), Step::Refused);
    assert!(!is_tune(&client.methods()));
}

#[test]
fn malformed_credentials_are_closed_silently() {
    let broker = Broker::new(1);
    let mut plain = started(&broker, true);
    assert_eq!(plain.handshake_method(start_ok_announcing("PLAIN", b"guest")), Step::Refused);
    assert!(plain.output().is_empty());
    let mut amqplain_client = started(&broker, true);
    let mut response = amqplain("guest", "guest");
    response.truncate(1 + "LOGIN".len() + 1 + 4 + "guest".len());
    assert_eq!(amqplain_client.handshake_method(start_ok_announcing("AMQPLAIN", &response)), Step::Refused);
    assert!(amqplain_client.output().is_empty());
}

#[test]
fn guest_from_a_remote_peer_is_refused_with_403() {
    let broker = Broker::new(1);
    let mut client = started(&broker, false);
    assert_eq!(client.handshake_method(start_ok_announcing("PLAIN", b"\0guest\0guest")), Step::Refused);
    let methods = client.methods();
    let (code, _, _, _) = connection_close(&methods).expect("connection.close");
    assert_eq!(code, 403);
    assert!(!is_tune(&methods));
}

#[test]
fn guest_from_a_remote_peer_gets_the_generic_login_refused_text() {
    let broker = Broker::new(1);
    let mut client = started(&broker, false);
    client.handshake_method(start_ok_announcing("PLAIN", b"\0guest\0guest"));
    assert_eq!(connection_close(&client.methods()), Some((403, LOGIN_REFUSED_PLAIN.into(), 0, 0)));
}

#[test]
fn tune_ok_within_the_limits_sets_frame_max_and_channel_max_and_open_returns_the_heartbeat() {
    let broker = Broker::new(1);
    let mut client = tuning(&broker);
    assert_eq!(client.handshake_method(tune_ok(10, 8192, 30)), Step::Continue);
    assert!(client.output().is_empty(), "tune-ok has no answer");
    assert_eq!(client.connection.frame_max.get(), 8192);
    assert_eq!(client.connection.channel_max.get(), 10);
    assert_eq!(client.handshake_method(open("/")), Step::Open { heartbeat: 30 });
    let methods = client.methods();
    assert!(matches!(methods.as_slice(), [(0, AMQPClass::Connection(method::AMQPMethod::OpenOk(_)))]), "{methods:?}");
    assert_eq!(client.connection.vhost.borrow().as_str(), "/");
}

#[test]
fn a_client_that_wants_no_heartbeat_gets_heartbeat_0() {
    let broker = Broker::new(1);
    let mut client = opening(&broker);
    assert_eq!(client.handshake_method(open("/")), Step::Open { heartbeat: 0 });
}

/// A tune-ok outside the limits the broker offered: RabbitMQ 3.10 is still tuning, trusts the
/// client no further and closes the socket without a word (the differential test's
/// `connection.tune.*` conversations against the real broker), so nothing is written.
#[test]
fn a_tune_ok_outside_the_broker_limits_closes_the_socket_silently() {
    let outside =
        [(CHANNEL_MAX, 1024), (CHANNEL_MAX, 200_000), (CHANNEL_MAX, 0), (0, FRAME_MAX_BYTES), (3000, FRAME_MAX_BYTES)];
    for (channel_max, frame_max) in outside {
        let broker = Broker::new(1);
        let mut client = tuning(&broker);
        let step = client.handshake_method(tune_ok(channel_max, frame_max, 0));
        assert_eq!(step, Step::Refused, "channel_max {channel_max}, frame_max {frame_max}");
        let output = client.output();
        assert!(output.is_empty(), "channel_max {channel_max}, frame_max {frame_max}: {output:?}");
    }
}

#[test]
fn an_unknown_vhost_is_530() {
    let broker = Broker::new(1);
    let mut client = opening(&broker);
    assert_eq!(client.handshake_method(open("nowhere")), Step::Refused);
    assert_eq!(
        connection_close(&client.methods()),
        Some((530, "NOT_ALLOWED - vhost nowhere not found".into(), 10, 40))
    );
}

#[test]
fn a_method_other_than_start_ok_is_refused_before_tune() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    assert_eq!(client.handshake_method(tune_ok(CHANNEL_MAX, FRAME_MAX_BYTES, 0)), Step::Refused);
    assert!(!is_tune(&client.methods()));
}

#[test]
fn a_method_other_than_tune_ok_is_refused() {
    let broker = Broker::new(1);
    let mut client = tuning(&broker);
    assert_eq!(client.handshake_method(open("/")), Step::Refused);
    assert!(!client.open);
}

#[test]
fn a_method_other_than_open_is_refused() {
    let broker = Broker::new(1);
    let mut client = opening(&broker);
    assert_eq!(client.handshake_method(tune_ok(CHANNEL_MAX, FRAME_MAX_BYTES, 0)), Step::Refused);
    assert!(!client.open);
}

#[test]
fn a_wrong_method_before_tune_ok_is_closed_silently() {
    let broker = Broker::new(1);
    let mut starting = started(&broker, true);
    assert_eq!(starting.handshake_method(tune_ok(CHANNEL_MAX, FRAME_MAX_BYTES, 0)), Step::Refused);
    assert!(starting.output().is_empty());
    let mut client = tuning(&broker);
    assert_eq!(client.handshake_method(open("/")), Step::Refused);
    assert!(client.output().is_empty());
}

#[test]
fn a_wrong_method_while_opening_is_504_with_its_own_ids() {
    let broker = Broker::new(1);
    let mut client = opening(&broker);
    assert_eq!(client.handshake_method(tune_ok(CHANNEL_MAX, FRAME_MAX_BYTES, 0)), Step::Refused);
    assert_eq!(
        connection_close(&client.methods()),
        Some((504, "CHANNEL_ERROR - unexpected method in connection state opening".into(), 10, 31))
    );
}

#[test]
fn a_frame_on_another_channel_while_opening_is_505() {
    let broker = Broker::new(1);
    let mut client = opening(&broker);
    assert_eq!(handshake_frame(&mut client, heartbeat_frame(1)), Step::Refused);
    let (code, _, class_id, method_id) = connection_close(&client.methods()).expect("connection.close");
    assert_eq!((code, class_id, method_id), (505, 0, 0));
}

#[test]
fn a_heartbeat_on_another_channel_while_opening_is_505_naming_the_frame() {
    let broker = Broker::new(1);
    let mut client = opening(&broker);
    assert_eq!(handshake_frame(&mut client, heartbeat_frame(1)), Step::Refused);
    assert_eq!(
        connection_close(&client.methods()),
        Some((505, "UNEXPECTED_FRAME - type 8, all octets = <<>>".into(), 0, 0))
    );
}

#[test]
fn a_method_on_another_channel_before_start_ok_is_refused() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    let step = handshake_frame(&mut client, method_frame(1, &start_ok_announcing("PLAIN", b"\0guest\0guest")));
    assert_eq!(step, Step::Refused);
    assert!(!is_tune(&client.methods()));
}

#[test]
fn a_method_on_another_channel_before_start_ok_is_closed_silently() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    let step = handshake_frame(&mut client, method_frame(1, &start_ok_announcing("PLAIN", b"\0guest\0guest")));
    assert_eq!(step, Step::Refused);
    assert!(client.output().is_empty());
}

#[test]
fn a_heartbeat_during_the_handshake_is_ignored() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    assert_eq!(handshake_frame(&mut client, heartbeat_frame(0)), Step::Continue);
    assert!(client.output().is_empty());
    assert_eq!(client.handshake_method(start_ok_announcing("PLAIN", b"\0guest\0guest")), Step::Continue);
    assert!(is_tune(&client.methods()));
}

#[test]
fn a_frame_too_large_before_tune_ok_closes_the_socket_silently() {
    // RabbitMQ does not tell a client that is still starting or tuning why it closes.
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    let error = FrameError::TooLarge { frame_type: 1, size: 200_000, frame_max: 131_072 };
    assert_eq!(client.handshake.frame_error(&client.connection, error), Step::Refused);
    assert!(client.output().is_empty());
}

#[test]
fn a_frame_too_large_while_opening_is_501() {
    let broker = Broker::new(1);
    let mut client = opening(&broker);
    let error = FrameError::TooLarge { frame_type: 1, size: 200_000, frame_max: 131_072 };
    assert_eq!(client.handshake.frame_error(&client.connection, error), Step::Refused);
    let (code, _, class_id, method_id) = connection_close(&client.methods()).expect("connection.close");
    assert_eq!((code, class_id, method_id), (501, 0, 0));
}

#[test]
fn frames_after_a_refusal_are_dropped_without_an_answer() {
    let broker = Broker::new(1);
    let mut client = started(&broker, true);
    assert_eq!(client.handshake_method(start_ok_announcing("PLAIN", b"\0guest\0wrong")), Step::Refused);
    client.output();
    assert_eq!(client.handshake_method(start_ok_announcing("PLAIN", b"\0guest\0guest")), Step::Refused);
    assert!(client.output().is_empty());
}

/// The replay of a handshake another shard accepted (`shard::handover`) checks neither the
/// password nor the vhost permission again: a connection stays open through a password change
/// or a cleared permission, as on RabbitMQ. The vhost must still exist.
#[test]
fn a_replayed_handshake_does_not_check_the_password_again() {
    let broker = Broker::new(1);
    let mut client = broker.connect_raw(0, true);
    client.handshake = Handshake::new(true).replaying().with_limits(client.shard.connection_limits.clone());
    assert_eq!(client.handshake_bytes(PROTOCOL_HEADER), Step::HeaderAccepted(8));
    assert_eq!(client.handshake_method(start_ok_announcing("PLAIN", b"\0guest\0changed")), Step::Continue);
    assert_eq!(client.handshake_method(tune_ok(CHANNEL_MAX, FRAME_MAX_BYTES, 0)), Step::Continue);
    assert!(matches!(client.handshake_method(open("/")), Step::Open { .. }));
    assert_eq!(*client.connection.user.borrow(), "guest");

    let mut gone = broker.connect_raw(0, true);
    gone.handshake = Handshake::new(true).replaying().with_limits(gone.shard.connection_limits.clone());
    gone.handshake_bytes(PROTOCOL_HEADER);
    gone.handshake_method(start_ok_announcing("PLAIN", b"\0guest\0changed"));
    gone.handshake_method(tune_ok(CHANNEL_MAX, FRAME_MAX_BYTES, 0));
    assert_eq!(gone.handshake_method(open("no-such-vhost")), Step::Refused, "a vhost that went");
}
