//! Paging: transient messages of a lazy queue (`x-queue-mode: lazy`), and those arriving at a
//! queue already holding the in-memory bound of ready messages, are written to the segment log
//! and read back for delivery, in order and intact, yet, like every transient message, they do
//! not come back after a restart or a crash; the persistent messages between them do.

use std::net::TcpListener;

use super::*;
use crate::common::process::{BrokerProcess, DataDir};

fn lazy() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-mode".into(), AMQPValue::LongString("lazy".into()));
    arguments
}

/// The sum over the shards of a per-shard metric (`name{shard=...} value`), from `/metrics`.
pub(super) fn shard_metric_sum(prometheus_port: u16, name: &str) -> f64 {
    let prefix = format!("{name}{{");
    metrics_text(prometheus_port)
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum over the shards of the bytes written to their segment files.
fn store_written_bytes(prometheus_port: u16) -> f64 {
    shard_metric_sum(prometheus_port, "spatemq_shard_store_written_bytes_total")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("address").port()
}

/// The queue's message count once it reaches `expected`, or the last one read after 20 s.
async fn message_count_reaching(ch: &Channel, queue: &str, expected: usize) -> usize {
    let mut counted = 0;
    for _ in 0..400 {
        counted = message_count(ch, queue).await as usize;
        if counted == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    counted
}

/// A broker on `data` with `shards` and `extra` arguments, serving Prometheus metrics on a free
/// loopback port (returned with it).
pub(super) fn start_with_metrics(data: &DataDir, shards: usize, extra: &[&str]) -> (BrokerProcess, u16) {
    let prometheus_port = free_port();
    let port = prometheus_port.to_string();
    let mut arguments = vec!["--prometheus-port", port.as_str(), "--prometheus-bind", "127.0.0.1"];
    arguments.extend_from_slice(extra);
    (BrokerProcess::start(data.path(), shards, &arguments), prometheus_port)
}

/// A publisher that pages out faster than the disk syncs (a test hook makes every fdatasync
/// 400 ms slower) is held at a message boundary until the syncs catch up, without
/// `connection.blocked` and without losing a message, while a consumer of the same shard keeps
/// receiving: the publisher goes at the disk's pace, not the page cache's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_paging_faster_than_the_disk_waits_and_a_consumer_goes_on() {
    if crate::common::process::external_broker() {
        return;
    }
    within(TEST_TIMEOUT, async {
        let data = DataDir::new();
        let (broker, prometheus_port) = start_with_metrics(&data, 1, &["--inject-sync-delay-ms", "400"]);
        let (consumer_conn, consumer_ch) = confirm_channel(broker.uri()).await;
        let other = unique("q-other");
        declare_queue(&consumer_ch, &other).await;
        let waiting: Vec<String> = (0..200).map(|index| format!("other-{index:03}")).collect();
        publish_confirmed(&consumer_ch, "", &other, &waiting, transient()).await;

        // 64 KiB bodies: 64 MiB of unsynced paged bytes, the bound, after about 1,000 of them.
        let (publisher_conn, publisher_ch) = connect_channel(broker.uri()).await;
        let lazy_queue = unique("q-lazy-fast");
        within(T, publisher_ch.queue_declare(lazy_queue.as_str().into(), QueueDeclareOptions::default(), lazy()))
            .await
            .expect("declare lazy");
        let sent = 4_000usize;
        let publisher = tokio::spawn(async move {
            let body = vec![0x42u8; 64 * 1024];
            for _ in 0..sent {
                let publish = publisher_ch.basic_publish(
                    "".into(),
                    lazy_queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    transient(),
                );
                publish.await.expect("basic.publish");
            }
            (publisher_conn, publisher_ch, lazy_queue)
        });
        let mut paused = 0.0;
        for _ in 0..200 {
            paused = shard_metric_sum(prometheus_port, "spatemq_shard_paging_pauses_total");
            if paused > 0.0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(paused > 0.0, "the publisher was never held while its paging outran the slowed syncs");

        // The consumer of the same shard published nothing since: it is not held.
        let mut inbox = consume(&consumer_ch, &other, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        let received: Vec<String> =
            inbox.take(waiting.len(), T).await.iter().map(|delivery| text(&delivery.data)).collect();
        assert_eq!(received, waiting, "the consumer got every message while the publisher waited");

        let (publisher_conn, publisher_ch, lazy_queue) = within(60, publisher).await.expect("the publisher ends");
        let counted = message_count_reaching(&publisher_ch, &lazy_queue, sent).await;
        assert_eq!(counted, sent, "every paged message is queued: the publisher was slowed, not dropped");
        close_conn(&publisher_conn).await;
        close_conn(&consumer_conn).await;
        broker.stop_cleanly();
    })
    .await;
}

/// A consumer that stops acking (prefetch spent) does not slow a publisher on either shard:
/// its queue takes everything, past the point where it pages, and no connection is ever held
/// for pressure, which only a deep queue handing messages to consumers raises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_consumer_lets_its_queue_grow_without_holding_the_publisher() {
    if crate::common::process::external_broker() {
        return;
    }
    within(TEST_TIMEOUT, async {
        let data = DataDir::new();
        let (broker, prometheus_port) = start_with_metrics(&data, 2, &[]);
        let (consumer_conn, consumer_ch) = connect_channel(broker.uri()).await;
        let queue = unique("q-stuck");
        declare_queue(&consumer_ch, &queue).await;
        within(T, consumer_ch.basic_qos(10, BasicQosOptions::default())).await.expect("basic.qos");
        let mut inbox = consume(&consumer_ch, &queue, BasicConsumeOptions::default()).await;

        let (publisher_conn, publisher_ch) = connect_channel(broker.uri()).await;
        let sent = 150_000usize;
        for index in 0..sent {
            let body = (index as u64).to_le_bytes();
            let publish = publisher_ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                transient(),
            );
            publish.await.expect("basic.publish");
        }
        assert_eq!(inbox.take(10, T).await.len(), 10, "the consumer got its prefetch and no more");
        let ready = message_count_reaching(&publisher_ch, &queue, sent - 10).await;
        assert_eq!(ready, sent - 10, "every message but the unacked ones is ready");
        assert_eq!(
            shard_metric_sum(prometheus_port, "spatemq_shard_pressure_pauses_total"),
            0.0,
            "no connection waited for pressure: the queue delivered nothing while deep"
        );
        close_conn(&publisher_conn).await;
        close_conn(&consumer_conn).await;
        broker.stop_cleanly();
    })
    .await;
}

restart_tests! {
    async fn a_lazy_queue_pages_transient_messages_that_still_do_not_survive_a_restart(shards: usize) {
        let data = DataDir::new();
        let queue = unique("q-lazy");
        for how in ["terminate", "kill"] {
            let broker = BrokerProcess::start(data.path(), shards, &[]);
            let (conn, ch) = confirm_channel(broker.uri()).await;
            let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
            within(T, ch.queue_declare(queue.as_str().into(), durable, lazy())).await.expect("declare lazy");
            // Read back from the log while the broker runs: everything, in order.
            let bodies = numbered_bodies(&format!("{how}-read"), 40);
            for (index, body) in bodies.iter().enumerate() {
                let properties = if index % 2 == 0 { persistent() } else { transient() };
                publish_confirmed(&ch, "", &queue, std::slice::from_ref(body), properties).await;
            }
            assert_eq!(get_all(&ch, &queue).await, flagged(&bodies, false), "{how}: paged messages read back");
            // Then a restart keeps only the persistent ones.
            let bodies = numbered_bodies(&format!("{how}-kept"), 40);
            let mut kept = Vec::new();
            for (index, body) in bodies.iter().enumerate() {
                let properties = if index % 2 == 0 { persistent() } else { transient() };
                publish_confirmed(&ch, "", &queue, std::slice::from_ref(body), properties).await;
                if index % 2 == 0 {
                    kept.push(body.clone());
                }
            }
            close_conn(&conn).await;
            if how == "kill" {
                broker.kill();
            } else {
                broker.stop_cleanly();
            }
            let broker = BrokerProcess::start(data.path(), shards, &[]);
            let (conn, ch) = connect_channel(broker.uri()).await;
            assert_eq!(get_all(&ch, &queue).await, flagged(&kept, false), "after {how}: the persistent ones, in order");
            close_conn(&conn).await;
            broker.stop_cleanly();
        }
    }

    async fn a_deep_queue_pages_out_past_its_memory_bound_and_drains_in_order(shards: usize) {
        let data = DataDir::new();
        let (broker, prometheus_port) = start_with_metrics(&data, shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        let queue = unique("q-deep");
        declare_queue(&ch, &queue).await;
        // Past the in-memory bound (65,536 ready messages) transient messages go to the log.
        let count = 80_000usize;
        let written_before = store_written_bytes(prometheus_port);
        let bodies: Vec<String> = (0..count).map(|index| format!("deep-{index:06}")).collect();
        for chunk in bodies.chunks(5_000) {
            publish_confirmed(&ch, "", &queue, chunk, transient()).await;
        }
        assert_eq!(message_count(&ch, &queue).await as usize, count);
        let paged_bytes = store_written_bytes(prometheus_port) - written_before;
        let paged = (count - 65_536) as f64;
        assert!(paged_bytes >= paged * 11.0, "about {paged} messages paged out, {paged_bytes} bytes written");
        assert!(paged_bytes < count as f64 * 100.0, "the first 65,536 stayed in memory: {paged_bytes} bytes written");
        let mut inbox = consume(&ch, &queue, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        let mut expected = bodies.iter();
        let mut received = 0;
        while received < count {
            let batch = inbox.take((count - received).min(10_000), T).await;
            for delivery in batch {
                assert_eq!(Some(&text(&delivery.data)), expected.next(), "in order, intact");
                received += 1;
            }
        }
        assert_eq!(message_count(&ch, &queue).await, 0);
        close_conn(&conn).await;
        broker.stop_cleanly();
    }
}
