//! Running the broker on a real server: listening on IPv4 and IPv6 at once, the limits a
//! configuration sets (connections, handshake time, message size), and the modes of the data
//! directory. Each test starts its own broker with the flags it needs, so none runs against an
//! external broker.

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::accounts::{ctl_ok, uri_for};
use crate::common::process::{external_broker, BrokerProcess, DataDir};
use crate::common::*;
use crate::storage::{confirm_channel, declare_durable_queue, persistent, publish_confirmed};

fn skip_against_an_external_broker() -> bool {
    if external_broker() {
        eprintln!("external broker: this test needs a broker of its own, skipped");
    }
    external_broker()
}

fn uri_on(host: &str, port: u16) -> String {
    format!("amqp://guest:guest@{host}:{port}/%2f")
}

/// Publishes `body` on one connection and gets it back on the other.
async fn publish_here_consume_there(from: &str, to: &str, queue: &str, body: &str) {
    let (publisher, publishing) = connect_channel(from).await;
    let (consumer, consuming) = connect_channel(to).await;
    declare_queue(&consuming, queue).await;
    publish(&publishing, "", queue, body.as_bytes()).await;
    let mut inbox = consume(&consuming, queue, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
    let delivery = inbox.expect(T).await;
    assert_eq!(text(&delivery.data), body);
    close_conn(&publisher).await;
    close_conn(&consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_ipv6_and_ipv4_share_one_broker() {
    if skip_against_an_external_broker() {
        return;
    }
    let data = DataDir::new();
    // Added to the harness's `--bind 127.0.0.1`: the broker listens on both.
    let broker = BrokerProcess::start(data.path(), 2, &["--bind", "[::1]"]);
    let port = broker.port();
    let stdout = broker.stdout_containing(&format!("AMQP listening on [::1]:{port}"), 5).await;
    assert!(stdout.contains(&format!("AMQP listening on [::1]:{port}")), "{stdout}");
    let (v6, v4) = (uri_on("[::1]", port), uri_on("127.0.0.1", port));
    within(TEST_TIMEOUT, async {
        publish_here_consume_there(&v6, &v4, &unique("over-v6"), "from ::1").await;
        publish_here_consume_there(&v4, &v6, &unique("over-v4"), "from 127.0.0.1").await;
    })
    .await;
    broker.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bind_the_broker_listens_on_ipv4_and_ipv6_as_rabbitmq() {
    if skip_against_an_external_broker() {
        return;
    }
    let data = DataDir::new();
    let data_dir = data.path().to_str().expect("a UTF-8 path");
    let broker = BrokerProcess::try_start_with(&["--amqp-port", "0", "--data-dir", data_dir, "--shards", "2"])
        .unwrap_or_else(|exited| panic!("the broker exited: {}", exited.stderr));
    let port = broker.port();
    let stdout = broker.stdout_containing(&format!("AMQP listening on [::]:{port}"), 5).await;
    let first = stdout.lines().find(|line| line.contains("AMQP listening on")).expect("a listening line");
    assert!(first.ends_with(&format!("AMQP listening on 0.0.0.0:{port}")), "IPv4 first: {stdout}");
    assert!(stdout.contains(&format!("AMQP listening on [::]:{port}")), "{stdout}");
    within(
        TEST_TIMEOUT,
        publish_here_consume_there(&uri_on("[::1]", port), &uri_on("127.0.0.1", port), "dual", "both"),
    )
    .await;
    broker.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_max_connections_is_refused_with_530_until_one_closes() {
    if skip_against_an_external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &["--max-connections", "2"]);
    let uri = broker.uri().to_string();
    let first = connect(&uri).await;
    let second = connect(&uri).await;
    let refused = within(T, Connection::connect(&uri, ConnectionProperties::default())).await;
    let error = refused.expect_err("a third connection is over the limit");
    assert_eq!(reply_code(&error), Some(530), "{error}");
    assert_eq!(
        reply_text(&error).as_deref(),
        Some("NOT_ALLOWED - connection refused: node connection limit (2) is reached")
    );
    let log = broker.stderr_containing("node connection limit (2) is reached", T).await;
    assert!(log.contains("node connection limit (2) is reached"), "the refusal is logged: {log}");
    close_conn(&first).await;
    // The slot comes back when the broker has torn the connection down, just after close-ok.
    let deadline = Instant::now() + Duration::from_secs(T);
    let third = loop {
        match within(T, Connection::connect(&uri, ConnectionProperties::default())).await {
            Ok(connection) => break connection,
            Err(error) if Instant::now() < deadline && reply_code(&error) == Some(530) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("a connection after one closed: {error}"),
        }
    };
    close_conn(&second).await;
    close_conn(&third).await;
    broker.stop_cleanly();
}

/// Each shard's `spatemq_shard_connections`, from `/metrics`.
fn connections_per_shard(prometheus_port: u16) -> Vec<u32> {
    metrics_text(prometheus_port)
        .lines()
        .filter(|line| line.starts_with("spatemq_shard_connections{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect()
}

/// `rabbitmq_connections_opened_total` and `rabbitmq_connections_closed_total`, from `/metrics`.
fn connections_opened_and_closed(prometheus_port: u16) -> (u64, u64) {
    let text = metrics_text(prometheus_port);
    let counter = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in the scrape:\n{text}"))
    };
    (counter("rabbitmq_connections_opened_total"), counter("rabbitmq_connections_closed_total"))
}

/// A broker with two shards and its Prometheus port, to read `connections_per_shard`.
fn two_shards_with_metrics(data: &DataDir) -> (BrokerProcess, u16) {
    let prometheus_port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("bound").port();
    let port = prometheus_port.to_string();
    let broker = BrokerProcess::start(data.path(), 2, &["--prometheus-port", &port, "--prometheus-bind", "127.0.0.1"]);
    (broker, prometheus_port)
}

/// Waits (at most T seconds) until the shards count `total` connections together: a closed
/// connection leaves its shard's count when its serving task ends.
async fn wait_for_connections(prometheus_port: u16, total: u32) {
    let deadline = Instant::now() + Duration::from_secs(T);
    while connections_per_shard(prometheus_port).iter().sum::<u32>() != total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The kernel's SO_REUSEPORT hash may put every connection on one shard's listener; the
/// broker serves each on the shard with the fewest, so they spread evenly, also once some
/// have closed, and every one of them works (the handed-over ones included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_evenly_over_the_shards() {
    if skip_against_an_external_broker() {
        return;
    }
    let data = DataDir::new();
    let (broker, prometheus_port) = two_shards_with_metrics(&data);
    let mut connections = Vec::new();
    for _ in 0..6 {
        connections.push(connect(broker.uri()).await);
    }
    assert_eq!(connections_per_shard(prometheus_port), vec![3, 3], "six connections, three on each shard");
    for connection in connections.drain(..2) {
        close_conn(&connection).await;
    }
    // Both closed ones may have been on one shard: the next two fill the emptier one first.
    wait_for_connections(prometheus_port, 4).await;
    for _ in 0..2 {
        connections.push(connect(broker.uri()).await);
    }
    assert_eq!(connections_per_shard(prometheus_port), vec![3, 3], "after two closed and two more came");
    for (index, connection) in connections.iter().enumerate() {
        let channel = open_channel(connection).await;
        let queue = unique(&format!("q-spread-{index}"));
        declare_queue(&channel, &queue).await;
        let body = format!("through connection {index}");
        let publish = channel.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        );
        within(T, publish).await.expect("basic.publish");
        let got = get(&channel, &queue, true).await.expect("the message");
        assert_eq!(text(&got.delivery.data), body);
    }
    for connection in &connections {
        close_conn(connection).await;
    }
    broker.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_silent_past_the_handshake_timeout_is_disconnected() {
    if skip_against_an_external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 1, &["--handshake-timeout", "300"]);
    let started = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", broker.port())).expect("connect");
    silent.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    let mut buffer = [0u8; 64];
    let read = silent.read(&mut buffer);
    assert!(matches!(read, Ok(0)), "expected the broker to close the socket, got {read:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3), "closed after {elapsed:?}");
    // A client that completes the handshake in time stays connected past the timeout.
    let connection = connect(broker.uri()).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(connection.status().connected(), "an open connection is not bound by the handshake timeout");
    close_conn(&connection).await;
    broker.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_max_message_size_closes_its_channel_with_rabbitmqs_text() {
    if skip_against_an_external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 1, &["--max-message-size", "1kB"]);
    let (connection, channel) = connect_channel(broker.uri()).await;
    let queue = unique("sized");
    declare_queue(&channel, &queue).await;
    let mut watch = watch_channel(&channel).await;
    publish(&channel, "", &queue, &[b'x'; 1001]).await;
    let text = watch.expect_error(406, T).await;
    assert_eq!(text, "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000");
    close_conn(&connection).await;
    broker.stop_cleanly();
}

/// Every directory under `root` (itself included) and every file, with its mode.
fn modes(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("stat");
        found.push((path.clone(), metadata.is_dir(), metadata.permissions().mode() & 0o777));
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                pending.push(entry.expect("entry").path());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_data_dir_is_0700_and_every_file_in_it_0600() {
    if skip_against_an_external_broker() {
        return;
    }
    let parent = DataDir::new();
    // A path the broker creates itself, below one the test owns.
    let data_dir = parent.path().join("broker-data");
    let data_dir_text = data_dir.to_str().expect("a UTF-8 path").to_string();
    let args = ["--amqp-port", "0", "--bind", "127.0.0.1", "--data-dir", &data_dir_text, "--shards", "2"];
    let queue = unique("modes");
    for round in 0..2 {
        // The second start replays and compacts the definitions log (write new, rename).
        let broker = BrokerProcess::try_start_with(&args).unwrap_or_else(|exited| panic!("{}", exited.stderr));
        let (connection, channel) = confirm_channel(broker.uri()).await;
        declare_durable_queue(&channel, &queue).await;
        let bodies: Vec<String> = (0..50).map(|index| format!("round {round} message {index}")).collect();
        publish_confirmed(&channel, "", &queue, &bodies, persistent()).await;
        close_conn(&connection).await;
        let stderr = broker.stop_cleanly();
        assert!(!stderr.contains("has mode"), "the broker's own files need no warning:\n{stderr}");
    }
    let found = modes(&data_dir);
    assert!(found.iter().any(|(path, _, _)| path.extension().is_some_and(|extension| extension == "segment")));
    assert!(found.iter().any(|(path, _, _)| path.ends_with("spatemq.lock")), "{found:?}");
    for (path, is_dir, mode) in found {
        let expected = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, expected, "{} has mode {mode:04o}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_open_to_others_is_warned_about_at_start() {
    if skip_against_an_external_broker() {
        return;
    }
    let data = DataDir::new();
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
    let broker = BrokerProcess::start(data.path(), 1, &[]);
    let expected = format!("data directory {} has mode 0755", data.path().display());
    let stderr = broker.stderr_containing(&expected, T).await;
    assert!(stderr.contains(&expected), "{stderr}");
    broker.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_a_port_in_use_at_any_of_its_addresses_exits_with_an_error() {
    if skip_against_an_external_broker() {
        return;
    }
    let (first_data, second_data) = (DataDir::new(), DataDir::new());
    let first = BrokerProcess::start(first_data.path(), 1, &[]);
    let port = first.port().to_string();
    let second_dir = second_data.path().to_str().expect("a UTF-8 path");
    // [::1] is free on that port; 127.0.0.1, the second address, is not.
    let args = ["--amqp-port", &port, "--bind", "::1", "--bind", "127.0.0.1", "--data-dir", second_dir];
    match BrokerProcess::try_start_with(&args) {
        Ok(_) => panic!("a second broker started on a port in use"),
        Err(exited) => {
            assert_eq!(exited.status.code(), Some(1), "{}", exited.stderr);
            let expected = format!("cannot listen on 127.0.0.1:{port}");
            assert!(exited.stderr.contains(&expected), "{}", exited.stderr);
            assert!(exited.stderr.contains("is another broker running on this port?"), "{}", exited.stderr);
        }
    }
    first.stop_cleanly();
}

/// The broker keeps its heap off transparent huge pages (a 2 MiB zeroing on a shard's thread
/// at the first touch held messages for tens of milliseconds): the kernel reports
/// `THP_enabled: 0` for the process, whatever the host's setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_runs_with_transparent_huge_pages_off() {
    if skip_against_an_external_broker() {
        return;
    }
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), 2, &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.pid())).expect("the broker's status");
    // Kernels before 5.0 do not report the flag; there is nothing to check on them.
    if let Some(line) = status.lines().find(|line| line.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
    broker.stop_cleanly();
}

/// A broker started right after the previous one exited takes the same port, as a restart by
/// a service manager does: the shards stop listening before the process exits, not when the
/// kernel tears their rings down afterwards. Three restarts in a row, each on the port the
/// first one picked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_at_once_takes_the_same_port() {
    if skip_against_an_external_broker() {
        return;
    }
    let data = DataDir::new();
    let mut broker = BrokerProcess::start(data.path(), 2, &[]);
    let port = broker.port().to_string();
    let data_dir = data.path().to_str().expect("a UTF-8 path");
    for restart in 1..=3 {
        broker.stop_cleanly();
        let args = ["--amqp-port", &port, "--bind", "127.0.0.1", "--data-dir", data_dir, "--shards", "2"];
        broker = match BrokerProcess::try_start_with(&args) {
            Ok(broker) => broker,
            Err(exited) => panic!("restart {restart} on port {port} failed ({}):\n{}", exited.status, exited.stderr),
        };
    }
    broker.stop_cleanly();
}

/// A confirm-mode publisher whose first publish goes only to queues of the shard it is on moves
/// to the other shard before that publish (the queue's shard then stores and commits while the
/// other parses). The client notices nothing: every publish is confirmed, the messages arrive
/// in order, and the connection goes on working (more channels, a declare, a get, a clean
/// close). A publisher without confirm mode stays on its queue's shard (the unit tests in
/// `shard::conversation::handover_tests` take the other cases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_mode_publisher_leaves_its_queues_shard_at_its_first_publish() {
    if skip_against_an_external_broker() {
        return;
    }
    let data = DataDir::new();
    let (broker, prometheus_port) = two_shards_with_metrics(&data);
    // The next connection lands on the shard with fewer: the one `setup` left empty.
    let (setup_conn, setup) = connect_channel(broker.uri()).await;
    let counts = connections_per_shard(prometheus_port);
    let next_shard = counts.iter().position(|count| *count == 0).expect("an empty shard");
    let queue = queue_name_on_shard("q-handover", next_shard, 2);
    declare_durable_queue(&setup, &queue).await;

    let (publisher_conn, publisher) = connect_channel(broker.uri()).await;
    assert_eq!(connections_per_shard(prometheus_port), vec![1, 1], "one connection on each shard");
    within(T, publisher.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
    let bodies: Vec<String> = (0..200).map(|index| format!("handed over {index}")).collect();
    publish_confirmed(&publisher, "", &queue, &bodies, persistent()).await;
    let mut expected = vec![0; 2];
    expected[1 - next_shard] = 2;
    assert_eq!(connections_per_shard(prometheus_port), expected, "the publisher moved off the queue's shard");
    assert_eq!(connections_opened_and_closed(prometheus_port), (2, 0), "a move neither opens nor closes a connection");

    // The same connection goes on: another channel, a declare, its messages back in order.
    let second = within(T, publisher_conn.create_channel()).await.expect("a second channel");
    let other = unique("q-after-handover");
    declare_queue(&second, &other).await;
    publish_confirmed(&publisher, "", &other, &["after".to_string()], persistent()).await;
    let got = get(&second, &other, true).await.expect("the message published after the move");
    assert_eq!(text(&got.delivery.data), "after");
    for body in &bodies {
        let got = get(&second, &queue, true).await.expect("a message published across the move");
        assert_eq!(&text(&got.delivery.data), body);
    }
    assert!(get(&second, &queue, true).await.is_none(), "each message once");
    assert_eq!(connections_per_shard(prometheus_port), expected, "a connection moves once");
    close_conn(&publisher_conn).await;

    // Without confirm mode the publisher stays, also on its queue's shard (where the fewest
    // connections puts it: `setup` holds the other).
    wait_for_connections(prometheus_port, 1).await;
    assert_eq!(connections_opened_and_closed(prometheus_port), (2, 1), "the moved connection closed once");
    let (plain_conn, plain) = connect_channel(broker.uri()).await;
    assert_eq!(connections_per_shard(prometheus_port), vec![1, 1]);
    publish_without_confirms(&plain, &queue).await;
    assert_eq!(connections_per_shard(prometheus_port), vec![1, 1], "a publisher without confirms stays");
    close_conn(&plain_conn).await;
    cleanup_queue(&setup, &queue).await;
    close_conn(&setup_conn).await;
    broker.stop_cleanly();
}

/// One publish without confirm mode, then a get to know it arrived.
async fn publish_without_confirms(ch: &Channel, queue: &str) {
    let publish = ch.basic_publish("".into(), queue.into(), BasicPublishOptions::default(), b"plain", persistent());
    within(T, publish).await.expect("basic.publish");
    let got = get(ch, queue, true).await.expect("the plain publish");
    assert_eq!(text(&got.delivery.data), "plain");
}

/// A publisher whose password changed after it logged in still moves at its first publish: the
/// other shard replays its handshake without checking the password again, as RabbitMQ keeps an
/// open connection through a password change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_moves_after_its_password_changed() {
    if skip_against_an_external_broker() {
        return;
    }
    let data = DataDir::new();
    let (broker, prometheus_port) = two_shards_with_metrics(&data);
    ctl_ok(data.path(), &["add_user", "mover", "first-secret"]);
    ctl_ok(data.path(), &["set_permissions", "-p", "/", "mover", ".*", ".*", ".*"]);
    let (setup_conn, setup) = connect_channel(broker.uri()).await;
    let next_shard =
        connections_per_shard(prometheus_port).iter().position(|count| *count == 0).expect("an empty shard");
    let queue = queue_name_on_shard("q-moved-user", next_shard, 2);
    declare_durable_queue(&setup, &queue).await;
    let (publisher_conn, publisher) = connect_channel(&uri_for(broker.uri(), "mover", "first-secret", "/")).await;
    within(T, publisher.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
    ctl_ok(data.path(), &["change_password", "mover", "second-secret"]);
    let bodies: Vec<String> = (0..20).map(|index| format!("after the change {index}")).collect();
    publish_confirmed(&publisher, "", &queue, &bodies, persistent()).await;
    let mut moved = vec![0; 2];
    moved[1 - next_shard] = 2;
    assert_eq!(connections_per_shard(prometheus_port), moved, "the publisher moved");
    for body in &bodies {
        let got = get(&setup, &queue, true).await.expect("a message");
        assert_eq!(&text(&got.delivery.data), body);
    }
    close_conn(&publisher_conn).await;
    cleanup_queue(&setup, &queue).await;
    close_conn(&setup_conn).await;
    broker.stop_cleanly();
}
