//! A persistent message that a fanout routes to several durable queues of one shard is stored
//! once: the segment log grows by about one copy of the bodies, not one per queue, and every
//! queue still has every message, in order, after a restart, a crash, another queue's acks,
//! and compaction.

use super::compaction::{segment_files, wait_segments_at_most, SMALL_SEGMENTS};
use super::*;
use crate::common::process::{BrokerProcess, DataDir};

const MESSAGES: usize = 2000;
const BODY_BYTES: usize = 4096;
/// `--segment-size` of these tests (`SMALL_SEGMENTS`).
const SEGMENT_BYTES: usize = 64 * 1024;

async fn declare_durable_fanout(ch: &Channel, exchange: &str, queues: &[String]) {
    let options = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    within(T, ch.exchange_declare(exchange.into(), ExchangeKind::Fanout, options, FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("exchange.declare {exchange}: {e}"));
    for queue in queues {
        declare_durable_queue(ch, queue).await;
        bind(ch, queue, exchange, "").await;
    }
}

/// Three durable queues on shard 0, bound to a durable fanout exchange that got `MESSAGES`
/// persistent, confirmed 4 KiB messages; returns the queues and the bodies.
async fn fanned_out(uri: &str, shards: usize) -> (Vec<String>, Vec<String>) {
    let queues: Vec<String> = (0..3).map(|_| queue_name_on_shard("q-fan", 0, shards)).collect();
    let exchange = unique("x-fan");
    let (conn, ch) = confirm_channel(uri).await;
    declare_durable_fanout(&ch, &exchange, &queues).await;
    let bodies: Vec<String> = (0..MESSAGES).map(|index| format!("{index:05}-{}", "b".repeat(BODY_BYTES - 6))).collect();
    for chunk in bodies.chunks(200) {
        publish_confirmed(&ch, &exchange, "", chunk, persistent()).await;
    }
    close_conn(&conn).await;
    (queues, bodies)
}

restart_tests! {
    /// RabbitMQ's message store keeps one copy of a persistent message however many durable
    /// queues it was routed to (queues hold references); so does this log, per shard.
    ///
    /// The measure: segment files are pre-allocated at `--segment-size` and a new one is
    /// started only when the active one is full, and nothing is consumed (so none is deleted,
    /// and compaction finds no mostly-dead segment): the number of segment files times 64 KiB
    /// is the log's written size, within one segment. One copy of the bodies is 8 MB, about
    /// 125 segments (plus per-record overhead); a copy per queue would be about 375.
    async fn a_fanout_to_durable_queues_of_one_shard_stores_each_body_once(shards: usize) {
        let data = DataDir::new();
        let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
        let (queues, bodies) = fanned_out(broker.uri(), shards).await;
        let one_copy_bytes = MESSAGES * BODY_BYTES;
        let log_bytes = segment_files(data.path()) * SEGMENT_BYTES;
        assert!(
            log_bytes * 100 <= one_copy_bytes * 120,
            "the log holds {log_bytes} bytes for {one_copy_bytes} bytes of bodies routed to 3 queues"
        );
        broker.stop_cleanly();

        // Acking every message of one queue leaves the other two whole, across a restart.
        let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
        assert_eq!(drain_bodies(broker.uri(), &queues[0]).await, bodies, "{}: every message, in order", queues[0]);
        broker.stop_cleanly();
        let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
        for queue in &queues[1..] {
            assert_eq!(drain_bodies(broker.uri(), queue).await, bodies, "{queue}: every message, in order");
        }
        assert_eq!(drain_bodies(broker.uri(), &queues[0]).await, Vec::<String>::new(), "acked before the restart");
        broker.stop_cleanly();
    }

    /// Confirmed persistent messages survive a crash (RabbitMQ's publisher confirms
    /// guarantee), in every queue the fanout routed them to.
    async fn a_fanout_stored_once_survives_a_crash_in_every_queue(shards: usize) {
        let data = DataDir::new();
        let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
        let (queues, bodies) = fanned_out(broker.uri(), shards).await;
        broker.kill();

        let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
        for queue in &queues {
            assert_eq!(drain_bodies(broker.uri(), queue).await, bodies, "{queue}: every message, in order");
        }
        broker.stop_cleanly();
    }

    /// As `compaction_frees_segments_that_long_lived_messages_pinned` (LavinMQ and RabbitMQ
    /// reclaim the disk of consumed messages while others stay queued), with the long-lived
    /// messages fanned out to two queues, so one of them holds links: compaction copies their
    /// content, and both queues keep every message through a crash and a clean restart.
    async fn compaction_moves_long_lived_fanout_links(shards: usize) {
        let data = DataDir::new();
        let busy = queue_name_on_shard("q-busy", 0, shards);
        let idle: Vec<String> = (0..2).map(|_| queue_name_on_shard("q-idle", 0, shards)).collect();
        let exchange = unique("x-idle");
        let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        declare_durable_queue(&ch, &busy).await;
        declare_durable_fanout(&ch, &exchange, &idle).await;
        let filler = "x".repeat(1024);
        let mut idle_bodies = Vec::new();
        for round in 0..200 {
            let bodies: Vec<String> = (0..20).map(|index| format!("busy-{round}-{index}-{filler}")).collect();
            publish_confirmed(&ch, "", &busy, &bodies, persistent()).await;
            let body = format!("idle-{round:04}");
            publish_confirmed(&ch, &exchange, "", std::slice::from_ref(&body), persistent()).await;
            idle_bodies.push(body);
            while let Some(message) = get(&ch, &busy, false).await {
                within(T, message.delivery.acker.ack(BasicAckOptions::default())).await.expect("basic.ack");
            }
        }
        close_conn(&conn).await;
        // Without compaction every third segment or so keeps an idle message: about 60 files.
        let left = wait_segments_at_most(data.path(), 8, 20).await;
        assert!(left <= 8, "{left} segment files left after compaction (each is 64 KiB)");
        broker.kill();

        let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
        assert_eq!(drain_bodies(broker.uri(), &idle[0]).await, idle_bodies, "every idle message, once, in order");
        broker.stop_cleanly();
        let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
        assert_eq!(drain_bodies(broker.uri(), &idle[1]).await, idle_bodies, "every idle message, once, in order");
        assert_eq!(drain_bodies(broker.uri(), &busy).await, Vec::<String>::new());
        broker.stop_cleanly();
    }

    /// RabbitMQ applies each queue's own TTL and priority to a message a fanout routed to
    /// several queues, and keeps them across a restart: stored once, the message still expires
    /// from the queue with x-message-ttl and stays, at its priority, in the others.
    async fn each_queue_keeps_its_own_deadline_and_priority_for_a_shared_message(shards: usize) {
        let data = DataDir::new();
        let timed = queue_name_on_shard("q-fan-ttl", 0, shards);
        let prioritized = queue_name_on_shard("q-fan-prio", 0, shards);
        let exchange = unique("x-fan-places");
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        let options = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        within(T, ch.exchange_declare(exchange.as_str().into(), ExchangeKind::Fanout, options, FieldTable::default()))
            .await
            .expect("exchange.declare");
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        let mut ttl = FieldTable::default();
        ttl.insert("x-message-ttl".into(), AMQPValue::LongInt(2000));
        within(T, ch.queue_declare(timed.as_str().into(), durable, ttl)).await.expect("queue.declare");
        let mut priorities = FieldTable::default();
        priorities.insert("x-max-priority".into(), AMQPValue::LongInt(9));
        within(T, ch.queue_declare(prioritized.as_str().into(), durable, priorities)).await.expect("queue.declare");
        bind(&ch, &timed, &exchange, "").await;
        bind(&ch, &prioritized, &exchange, "").await;
        for (body, priority) in [("low", 0), ("high", 5)] {
            publish_confirmed(&ch, &exchange, "", &[body.to_string()], persistent().with_priority(priority)).await;
        }
        close_conn(&conn).await;
        broker.kill();

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = connect_channel(broker.uri()).await;
        wait_message_count(&ch, &timed, 0, 15).await;
        assert_eq!(drain_bodies(broker.uri(), &prioritized).await, vec!["high".to_string(), "low".to_string()]);
        close_conn(&conn).await;
        broker.stop_cleanly();
    }
}
