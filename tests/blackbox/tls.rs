//! amqps: lapin over TLS, client certificates (required, optional, untrusted), and the
//! sockets that must simply be closed: a plain AMQP client on the TLS port, garbage, a stalled
//! handshake; and a TLS client on the plain port, which gets AMQP's protocol header.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::process::{BrokerProcess, DataDir};
use crate::common::tls::{cert_path, client_hello, connect_tls, ClientCert, TlsBroker, CLIENT_CN};
use crate::common::*;

/// The broker's handshake timeout (`limits::HANDSHAKE_TIMEOUT_MS`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A publish and a get over `connection`: the connection really carries AMQP.
async fn round_trip(connection: &Connection) {
    let channel = open_channel(connection).await;
    let queue = unique("tls");
    within(T, channel.queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()))
        .await
        .expect("declare");
    let body = vec![7u8; 100_000];
    within(
        T,
        channel.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default(),
        ),
    )
    .await
    .expect("publish");
    let message = within(T, async {
        loop {
            let got = channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.expect("get");
            if let Some(message) = got {
                return message;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(message.delivery.data, body, "the body crossed TLS both ways intact");
}

/// Reads until the broker closes the socket; returns what it sent and how long that took.
fn read_until_closed(mut socket: TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    socket.set_read_timeout(Some(limit)).expect("read timeout");
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match socket.read(&mut chunk) {
            Ok(0) => return (received, started.elapsed()),
            Ok(read) => received.extend_from_slice(&chunk[..read]),
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("the broker kept the socket open for {limit:?}; it sent {received:?}")
            }
            // A reset is a close too.
            Err(_) => return (received, started.elapsed()),
        }
    }
}

fn connect_raw(address: &str) -> TcpStream {
    TcpStream::connect(address).unwrap_or_else(|error| panic!("connect to {address}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_publishes_and_gets_over_tls() {
    let broker = TlsBroker::start(&[]);
    let connection = connect_tls(&broker.amqps_uri(), ClientCert::None).await.expect("TLS connect");
    round_trip(&connection).await;
    close_conn(&connection).await;
    let stderr = broker.process.stderr_containing("client certificate CN None", 5).await;
    assert!(stderr.contains("client certificate CN None"), "no client certificate was asked for:\n{stderr}");
    // The plain listener still serves plain AMQP next to it.
    let plain = connect(broker.process.uri()).await;
    round_trip(&plain).await;
    close_conn(&plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_amqp_header_on_the_tls_port_is_closed_and_nothing_else_is_touched() {
    let broker = TlsBroker::start(&[]);
    let survivor = connect_tls(&broker.amqps_uri(), ClientCert::None).await.expect("TLS connect");
    let mut socket = connect_raw(&broker.amqps_addr());
    socket.write_all(b"AMQP\x00\x00\x09\x01").expect("send the AMQP header");
    let (received, elapsed) = read_until_closed(socket, HANDSHAKE_TIMEOUT + Duration::from_secs(3));
    assert!(!received.starts_with(b"AMQP") && received.first() != Some(&1), "no AMQP on the TLS port: {received:?}");
    if let Some(first) = received.first() {
        assert_eq!(*first, 0x15, "at most a TLS alert record: {received:?}");
    }
    assert!(elapsed < Duration::from_secs(3), "closed at once, not at the timeout: {elapsed:?}");
    round_trip(&survivor).await;
    close_conn(&survivor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_tls_port_is_closed() {
    let broker = TlsBroker::start(&[]);
    for garbage in [&[0xffu8; 64][..], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0]] {
        let mut socket = connect_raw(&broker.amqps_addr());
        socket.write_all(garbage).expect("send garbage");
        let (received, elapsed) = read_until_closed(socket, HANDSHAKE_TIMEOUT + Duration::from_secs(3));
        assert!(received.is_empty() || received[0] == 0x15, "at most a TLS alert: {received:?}");
        assert!(elapsed < Duration::from_secs(3), "closed at once for {garbage:?}: {elapsed:?}");
    }
    let connection = connect_tls(&broker.amqps_uri(), ClientCert::None).await.expect("TLS connect after garbage");
    round_trip(&connection).await;
    close_conn(&connection).await;
    crate::common::process::assert_no_panic(&broker.process.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_closed_at_the_handshake_timeout() {
    let broker = TlsBroker::start(&[]);
    let hello = client_hello();
    let silent = connect_raw(&broker.amqps_addr());
    let mut half_hello = connect_raw(&broker.amqps_addr());
    half_hello.write_all(&hello[..hello.len() / 2]).expect("send half a ClientHello");
    let limit = HANDSHAKE_TIMEOUT + Duration::from_secs(5);
    let silent_reader = std::thread::spawn(move || read_until_closed(silent, limit));
    let (received, elapsed) = read_until_closed(half_hello, limit);
    assert!(received.is_empty(), "nothing is answered to half a ClientHello: {received:?}");
    let (silent_received, silent_elapsed) = silent_reader.join().expect("reader thread");
    assert!(silent_received.is_empty(), "nothing is sent to a silent client: {silent_received:?}");
    for waited in [elapsed, silent_elapsed] {
        assert!(
            waited >= HANDSHAKE_TIMEOUT - Duration::from_millis(500) && waited < limit,
            "closed after {waited:?}, expected the {HANDSHAKE_TIMEOUT:?} handshake timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_on_the_plain_port_gets_the_amqp_header_and_a_close() {
    let broker = TlsBroker::start(&[]);
    let mut socket = connect_raw(&broker.plain_addr());
    socket.write_all(&client_hello()).expect("send a ClientHello");
    let (received, elapsed) = read_until_closed(socket, HANDSHAKE_TIMEOUT + Duration::from_secs(3));
    assert_eq!(received, b"AMQP\x00\x00\x09\x01", "the protocol header the broker speaks, then a close");
    assert!(elapsed < Duration::from_secs(3), "closed at once: {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_if_no_peer_cert_refuses_a_client_without_a_certificate() {
    let broker = TlsBroker::start(&["--tls-verify-peer", "--tls-fail-if-no-peer-cert"]);
    let refused = connect_tls(&broker.amqps_uri(), ClientCert::None).await;
    assert!(refused.is_err(), "a client without a certificate is refused");
    let stranger = connect_tls(&broker.amqps_uri(), ClientCert::Stranger).await;
    assert!(stranger.is_err(), "a certificate from another CA is refused");
    let connection =
        connect_tls(&broker.amqps_uri(), ClientCert::Trusted).await.expect("TLS with a client certificate");
    round_trip(&connection).await;
    close_conn(&connection).await;
    let needle = format!("client certificate CN Some({CLIENT_CN:?})");
    let stderr = broker.process.stderr_containing(&needle, 5).await;
    assert!(stderr.contains(&needle), "the certificate's CN is captured for EXTERNAL:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_peer_alone_lets_a_client_without_a_certificate_in_but_checks_one_that_is_sent() {
    let broker = TlsBroker::start(&["--tls-verify-peer"]);
    let anonymous = connect_tls(&broker.amqps_uri(), ClientCert::None).await.expect("no certificate is fine");
    round_trip(&anonymous).await;
    close_conn(&anonymous).await;
    let stranger = connect_tls(&broker.amqps_uri(), ClientCert::Stranger).await;
    assert!(stranger.is_err(), "a certificate that is sent must verify");
    let trusted = connect_tls(&broker.amqps_uri(), ClientCert::Trusted).await.expect("a trusted certificate");
    round_trip(&trusted).await;
    close_conn(&trusted).await;
    let needle = format!("client certificate CN Some({CLIENT_CN:?})");
    assert!(broker.process.stderr_containing(&needle, 5).await.contains(&needle));
}

#[test]
fn a_certificate_file_that_cannot_be_read_stops_the_start_with_the_flag_and_the_path() {
    let data = DataDir::new();
    let missing = cert_path("no-such-file.pem");
    let key = cert_path("server.key");
    let exited = match BrokerProcess::try_start(data.path(), 1, &["--tls-cert", &missing, "--tls-key", &key]) {
        Ok(_) => panic!("the broker started with a missing certificate file"),
        Err(exited) => exited,
    };
    assert_eq!(exited.status.code(), Some(1));
    assert!(
        exited.stderr.contains(&format!("cannot set up amqps: --tls-cert {missing}")),
        "the error names the flag and the file:\n{}",
        exited.stderr
    );
    // A key file that holds a certificate, not a key.
    let cert = cert_path("server.pem");
    let exited = match BrokerProcess::try_start(data.path(), 1, &["--tls-cert", &cert, "--tls-key", &cert]) {
        Ok(_) => panic!("the broker started with a certificate as its key"),
        Err(exited) => exited,
    };
    assert!(exited.stderr.contains(&format!("--tls-key {cert}: no usable private key")), "{}", exited.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_logs_in_the_user_named_by_the_client_certificate() {
    use crate::accounts::{ctl, ctl_ok};
    let broker = TlsBroker::start(&["--tls-verify-peer", "--tls-fail-if-no-peer-cert"]);
    let external = format!("{}?auth_mechanism=external", broker.amqps_uri());
    // No user of that name yet: refused as a failed login is.
    let refused = connect_tls(&external, ClientCert::Trusted).await;
    assert!(refused.is_err(), "EXTERNAL for a CN that names no user");
    broker.process.stderr_containing("(certificate CN) - invalid credentials", 5).await;

    ctl_ok(broker.data_dir(), &["add_user", CLIENT_CN, "unused-password"]);
    ctl_ok(broker.data_dir(), &["set_permissions", CLIENT_CN, ".*", ".*", ".*"]);
    let connection = connect_tls(&external, ClientCert::Trusted).await.expect("EXTERNAL with the client certificate");
    round_trip(&connection).await;
    let listed = ctl_ok(broker.data_dir(), &["list_connections", "-s", "user"]);
    assert!(listed.lines().any(|line| line == CLIENT_CN), "logged in as the certificate's CN: {listed}");
    close_conn(&connection).await;
    let (code, _, _) = ctl(broker.data_dir(), &["delete_user", CLIENT_CN]);
    assert_eq!(code, 0);
}
