//! Connection lifecycle: open/close, authentication, vhosts, heartbeats.

use crate::common::*;
use std::time::Duration;

shard_tests! {
    async fn open_use_and_close_connection(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        assert!(conn.status().connected(), "connection should be open after the handshake");
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        publish(&ch, "", q.name().as_str(), b"ping").await;
        let got = get(&ch, q.name().as_str(), true).await.expect("message published to own queue");
        assert_eq!(got.delivery.data, b"ping");
        within(T, ch.close(200, "done".into())).await.expect("channel.close is answered");
        within(T, conn.close(200, "done".into())).await.expect("connection.close is answered");
        assert!(!conn.status().connected(), "connection should be closed");
    }

    async fn wrong_password_is_refused(broker: &Broker) {
        let uri = broker.uri_with_credentials("guest", "not-the-password");
        let res = within(T, Connection::connect(&uri, ConnectionProperties::default())).await;
        match res {
            Ok(_) => panic!("a connection with a wrong password was accepted"),
            // With the authentication_failure_close capability the broker closes
            // the connection with 403 ACCESS_REFUSED; a bare socket close is also
            // a refusal.
            Err(e) => {
                if let Some(code) = reply_code(&e) {
                    assert_eq!(code, 403, "refusal reply code: {e}");
                } else {
                    assert!(e.is_io_error(), "expected 403 or a closed socket, got {e}");
                }
            }
        }
    }

    async fn unknown_user_is_refused(broker: &Broker) {
        let uri = broker.uri_with_credentials(&unique("nobody"), "guest");
        let res = within(T, Connection::connect(&uri, ConnectionProperties::default())).await;
        match res {
            Ok(_) => panic!("a connection for an unknown user was accepted"),
            Err(e) => {
                if let Some(code) = reply_code(&e) {
                    assert_eq!(code, 403, "refusal reply code: {e}");
                } else {
                    assert!(e.is_io_error(), "expected 403 or a closed socket, got {e}");
                }
            }
        }
    }

    async fn unknown_vhost_is_530_not_allowed(broker: &Broker) {
        let uri = broker.uri_with_vhost(&unique("no-such-vhost"));
        let res = within(T, Connection::connect(&uri, ConnectionProperties::default())).await;
        let e = expect_close(res.map(|_| ()), 530);
        let text = reply_text(&e).unwrap_or_default();
        assert!(text.starts_with("NOT_ALLOWED"), "reply text: {text:?}");
    }

    async fn heartbeat_one_second_keeps_idle_connection_alive(broker: &Broker) {
        let uri = Broker::with_query(&broker.uri(), "heartbeat=1");
        let (conn, ch) = connect_channel(&uri).await;
        assert_eq!(conn.configuration().heartbeat(), 1, "negotiated heartbeat");
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(conn.status().connected(), "connection died while idle with heartbeat 1");
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        publish(&ch, "", q.name().as_str(), b"still here").await;
        let got = get(&ch, q.name().as_str(), true).await.expect("message after idle period");
        assert_eq!(got.delivery.data, b"still here");
        close_conn(&conn).await;
    }

    async fn two_channels_on_one_connection_are_independent(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let a = open_channel(&conn).await;
        let b = open_channel(&conn).await;
        assert_ne!(a.id(), b.id());
        // An error on channel a closes only channel a.
        let missing = unique("missing");
        expect_close(
            within(T, a.queue_declare(missing.as_str().into(), QueueDeclareOptions::default().passive(), FieldTable::default())).await,
            404,
        );
        let q = declare_queue_with(&b, "", QueueDeclareOptions::exclusive()).await;
        assert!(q.name().as_str().starts_with("amq.gen-"));
        assert!(conn.status().connected());
        close_conn(&conn).await;
    }
}
