//! The shards' I/O driver (`--io-driver`): the broker falls back to epoll where io_uring cannot
//! be set up (a container whose seccomp profile refuses it, a kernel with io_uring disabled), and
//! must behave there as it does on io_uring. `scripts/test.sh` also runs this whole suite once
//! more with `SPATEMQ_IO_DRIVER=epoll`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::process::{external_broker, BrokerProcess, DataDir};
use crate::common::raw::{content_header, frame, method, Args, RawClient, FRAME_BODY, FRAME_HEARTBEAT};
use crate::common::*;

fn skip_against_an_external_broker() -> bool {
    if external_broker() {
        eprintln!("external broker: this test needs a broker of its own, skipped");
    }
    external_broker()
}

/// `--io-driver epoll` runs the shards on epoll, `io_uring` on io_uring, and the start line
/// says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shards_run_on_the_driver_they_are_told() {
    if skip_against_an_external_broker() {
        return;
    }
    for (driver, said) in [("epoll", "2 shard(s), epoll driver"), ("io_uring", "2 shard(s), io_uring driver")] {
        let data = DataDir::new();
        let broker = match BrokerProcess::try_start(data.path(), 2, &["--io-driver", driver]) {
            Ok(broker) => broker,
            Err(exited) if driver == "io_uring" && exited.stderr.contains("cannot build the runtime") => {
                eprintln!("io_uring is not available here: {}", exited.stderr.trim());
                continue;
            }
            Err(exited) => panic!("the broker did not start with --io-driver {driver}: {exited:?}"),
        };
        let stderr = broker.stderr_containing(said, 5).await;
        assert!(stderr.contains(said), "--io-driver {driver}: expected {said:?} in\n{stderr}");
        let (connection, channel) = connect_channel(broker.uri()).await;
        let queue = unique("driver");
        declare_queue(&channel, &queue).await;
        publish(&channel, "", &queue, b"on the chosen driver").await;
        let mut inbox = consume(&channel, &queue, lapin::options::BasicConsumeOptions::default()).await;
        assert_eq!(inbox.expect(T).await.data, b"on the chosen driver");
        close_conn(&connection).await;
        broker.stop_cleanly();
    }
}

/// A bad value is refused before anything starts, with the values it takes.
#[test]
fn an_unknown_driver_is_refused() {
    if skip_against_an_external_broker() {
        return;
    }
    let data = DataDir::new();
    let Err(exited) = BrokerProcess::try_start(data.path(), 1, &["--io-driver", "kqueue"]) else {
        panic!("the broker started with --io-driver kqueue");
    };
    assert!(exited.stderr.contains("expected auto, io_uring or epoll"), "{exited:?}");
}

/// Messages published to `queue`, 16 bytes each, as one buffer of `count` publishes.
fn publishes(queue: &str, count: usize) -> Vec<u8> {
    publishes_to("", queue, count)
}

/// `count` publishes of 16 bytes to `exchange` with `routing_key`, as one buffer.
fn publishes_to(exchange: &str, routing_key: &str, count: usize) -> Vec<u8> {
    let mut one = method(1, 60, 40, Args::new().u16(0).shortstr(exchange).shortstr(routing_key).u8(0));
    one.extend(content_header(1, 16));
    one.extend(frame(FRAME_BODY, 1, b"0123456789abcdef"));
    one.repeat(count)
}

/// A consumer keeps getting its messages while a publisher on the same shard sends faster than
/// the shard takes them. Under epoll a read of a socket that holds bytes completes without
/// leaving the reader's task: before the readers took turns, such a publisher kept the shard's
/// other tasks from running for as long as it sent, and the consumer received nothing (2,048
/// messages at most, its first flow credit) until the publisher stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_is_served_while_a_publisher_on_its_shard_floods() {
    if skip_against_an_external_broker() {
        return;
    }
    const BATCH: usize = 10_000;
    const BATCHES: usize = 200;
    for driver in ["epoll", "auto"] {
        let data = DataDir::new();
        let broker = BrokerProcess::start(data.path(), 1, &["--io-driver", driver]);
        let queue = unique("flood");
        let (connection, channel) = connect_channel(broker.uri()).await;
        declare_queue(&channel, &queue).await;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                lapin::options::BasicConsumeOptions { no_ack: true, ..Default::default() },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("basic.consume");
        let received = Arc::new(AtomicU64::new(0));
        {
            let received = received.clone();
            consumer.set_delegate(move |delivery: lapin::message::DeliveryResult| {
                if let Ok(Some(_)) = delivery {
                    received.fetch_add(1, Ordering::Relaxed);
                }
                async {}
            });
        }
        let address = addr_of(broker.uri());
        let flood = publishes(&queue, BATCH);
        let received_by_publisher = received.clone();
        let publisher = std::thread::spawn(move || {
            let mut client = RawClient::connect_ready(&address);
            // The broker may hold a publisher while its queue is deep: give it time.
            client.sock.set_write_timeout(Some(Duration::from_secs(60))).expect("write timeout");
            for _ in 0..BATCHES {
                client.send(&flood);
            }
            // What the consumer had when the publisher's last bytes left for the broker.
            let seen = received_by_publisher.load(Ordering::Relaxed);
            (client, seen)
        });
        let (client, seen_while_publishing) =
            tokio::task::spawn_blocking(move || publisher.join().expect("the publisher thread")).await.expect("join");
        let total = (BATCH * BATCHES) as u64;
        eprintln!("--io-driver {driver}: the consumer had {seen_while_publishing} of {total} messages as the publisher finished");
        assert!(
            seen_while_publishing >= 20_000,
            "--io-driver {driver}: the consumer had {seen_while_publishing} of {total} messages when the publisher \
             had sent them all"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while received.load(Ordering::Relaxed) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(received.load(Ordering::Relaxed), total, "--io-driver {driver}: every message arrives");
        drop(client);
        close_conn(&connection).await;
        broker.stop_cleanly();
    }
}

/// An idle connection gets its heartbeats while a publisher floods its shard. monoio fires its
/// timers only when nothing else is ready to run: on epoll, a reader that always has bytes kept
/// that from happening, and a heartbeat of 1 s came after 6 to 11 s (a build whose readers took
/// turns but never slept on the timer wheel). The publishes go to an exchange with no binding,
/// so nothing piles up.
#[test]
fn heartbeats_keep_their_period_while_a_publisher_floods_the_shard() {
    if skip_against_an_external_broker() {
        return;
    }
    const FLOOD: Duration = Duration::from_secs(4);
    for driver in ["epoll", "auto"] {
        let data = DataDir::new();
        let broker = BrokerProcess::start(data.path(), 1, &["--io-driver", driver]);
        let address = addr_of(broker.uri());
        let mut idle = RawClient::connect(&address);
        idle.handshake_with_heartbeat(1);
        idle.sock.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
        let publisher = {
            let address = address.clone();
            std::thread::spawn(move || {
                let mut client = RawClient::connect_ready(&address);
                client.sock.set_write_timeout(Some(Duration::from_secs(60))).expect("write timeout");
                let flood = publishes_to("amq.direct", "bound-to-nothing", 10_000);
                let started = Instant::now();
                let mut sent = 0u64;
                while started.elapsed() < FLOOD {
                    client.send(&flood);
                    sent += 10_000;
                }
                (client, sent)
            })
        };
        let started = Instant::now();
        let mut last = started;
        let mut longest_gap = Duration::ZERO;
        let mut heartbeats = 0;
        let mut last_sent = started;
        while started.elapsed() < FLOOD {
            if last_sent.elapsed() >= Duration::from_millis(500) {
                idle.send(&frame(FRAME_HEARTBEAT, 0, &[]));
                last_sent = Instant::now();
            }
            match idle.read_frame() {
                Ok(frame) if frame.kind == FRAME_HEARTBEAT => {
                    longest_gap = longest_gap.max(last.elapsed());
                    last = Instant::now();
                    heartbeats += 1;
                }
                Ok(frame) => panic!("--io-driver {driver}: unexpected frame on the idle connection: {frame:?}"),
                Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                }
                Err(error) => panic!("--io-driver {driver}: the idle connection failed: {error}"),
            }
        }
        longest_gap = longest_gap.max(last.elapsed());
        let (publisher_client, sent) = publisher.join().expect("the publisher thread");
        eprintln!("--io-driver {driver}: {heartbeats} heartbeats in {FLOOD:?}, the longest gap {longest_gap:?}, {sent} published");
        assert!(sent >= 1_000_000, "--io-driver {driver}: the publisher sent only {sent}: no flood to test under");
        assert!(
            longest_gap < Duration::from_millis(2500) && heartbeats >= 2,
            "--io-driver {driver}: {heartbeats} heartbeats in {FLOOD:?}, the longest gap {longest_gap:?}"
        );
        drop(publisher_client);
        drop(idle);
        broker.stop_cleanly();
    }
}
