//! Connection methods after the handshake: close, update-secret, blocked, wrong channels, access.

use super::*;

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
