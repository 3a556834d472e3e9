//! Compaction: a few long-lived messages among busy traffic must not keep every segment they
//! landed in on disk, and the messages compaction moved are all there, once and in order,
//! after a clean restart and after a crash.

use super::*;
use crate::common::process::{BrokerProcess, DataDir};
use std::path::Path;
use std::time::{Duration, Instant};

/// Small segments, so a few hundred KiB of traffic spans many of them.
pub(super) const SMALL_SEGMENTS: &[&str] = &["--segment-size", "64KiB"];

pub(super) fn segment_files(data_dir: &Path) -> usize {
    let Ok(shards) = std::fs::read_dir(data_dir.join("messages")) else { return 0 };
    shards
        .flatten()
        .filter_map(|shard| std::fs::read_dir(shard.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|file| file.file_name().to_string_lossy().ends_with(".segment"))
        .count()
}

/// Waits until at most `most` segment files are left; returns how many there are.
pub(super) async fn wait_segments_at_most(data_dir: &Path, most: usize, seconds: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let count = segment_files(data_dir);
        if count <= most || Instant::now() >= deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes `rounds` rounds of 20 busy 1 KiB messages and one idle message, all persistent
/// and confirmed, to two durable queues of one shard; consumes and acks the busy ones.
/// Returns the idle bodies, in order.
async fn busy_traffic_with_a_trickle(uri: &str, busy: &str, idle: &str, rounds: usize) -> Vec<String> {
    let (conn, ch) = confirm_channel(uri).await;
    declare_durable_queue(&ch, busy).await;
    declare_durable_queue(&ch, idle).await;
    let filler = "x".repeat(1024);
    let mut idle_bodies = Vec::new();
    for round in 0..rounds {
        let bodies: Vec<String> = (0..20).map(|index| format!("busy-{round}-{index}-{filler}")).collect();
        publish_confirmed(&ch, "", busy, &bodies, persistent()).await;
        let body = format!("idle-{round:04}");
        publish_confirmed(&ch, "", idle, std::slice::from_ref(&body), persistent()).await;
        idle_bodies.push(body);
        while let Some(message) = get(&ch, busy, false).await {
            within(T, message.delivery.acker.ack(BasicAckOptions::default())).await.expect("basic.ack");
        }
    }
    close_conn(&conn).await;
    idle_bodies
}

/// Publishes busy and idle messages like `busy_traffic_with_a_trickle` until the connection
/// fails (the broker is killed); returns the idle bodies that were confirmed.
async fn trickle_until_the_crash(uri: String, busy: String, idle: String, cycle: usize) -> Vec<String> {
    let Ok(conn) = Connection::connect(&uri, ConnectionProperties::default()).await else { return Vec::new() };
    let Ok(ch) = conn.create_channel().await else { return Vec::new() };
    let mut confirmed = Vec::new();
    if ch.confirm_select(ConfirmSelectOptions::default()).await.is_err() {
        return confirmed;
    }
    let filler = "x".repeat(1024);
    for round in 0.. {
        for index in 0..20 {
            let body = format!("busy-{cycle}-{round}-{index}-{filler}");
            let sent = ch
                .basic_publish(
                    "".into(),
                    busy.as_str().into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    persistent(),
                )
                .await;
            if sent.is_err() {
                return confirmed;
            }
        }
        let body = format!("idle-{cycle}-{round:05}");
        let sent = ch
            .basic_publish(
                "".into(),
                idle.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                persistent(),
            )
            .await;
        let Ok(confirm) = sent else { return confirmed };
        match confirm.await {
            Ok(confirmation) if confirmation.is_ack() => confirmed.push(body),
            _ => return confirmed,
        }
        // Consume the busy messages so their segments die and compaction has work.
        loop {
            match ch.basic_get(busy.as_str().into(), BasicGetOptions { no_ack: true }).await {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return confirmed,
            }
        }
    }
    confirmed
}

restart_tests! {
    /// LavinMQ and RabbitMQ both reclaim the disk of consumed messages while others stay
    /// queued; here one idle message lands in each of about 60 segments of busy traffic.
    async fn compaction_frees_segments_that_long_lived_messages_pinned(shards: usize) {
        let data = DataDir::new();
        let busy = queue_name_on_shard("q-busy", 0, shards);
        let idle = queue_name_on_shard("q-idle", 0, shards);
        let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
        let idle_bodies = busy_traffic_with_a_trickle(broker.uri(), &busy, &idle, 200).await;
        // Without compaction every third segment or so keeps an idle message: about 60 files.
        let left = wait_segments_at_most(data.path(), 8, 20).await;
        assert!(left <= 8, "{left} segment files left after compaction (each is 64 KiB)");
        broker.stop_cleanly();

        let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
        assert_eq!(drain_bodies(broker.uri(), &idle).await, idle_bodies, "every idle message, once, in order");
        assert_eq!(drain_bodies(broker.uri(), &busy).await, Vec::<String>::new());
        broker.stop_cleanly();
    }

    /// A crash while compaction runs loses nothing: each message comes back from its copy or
    /// from its original, never from both.
    async fn messages_moved_by_compaction_survive_a_crash(shards: usize) {
        let data = DataDir::new();
        let busy = queue_name_on_shard("q-busy", 0, shards);
        let idle = queue_name_on_shard("q-idle", 0, shards);
        let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
        let idle_bodies = busy_traffic_with_a_trickle(broker.uri(), &busy, &idle, 120).await;
        wait_segments_at_most(data.path(), 8, 20).await;
        broker.kill();

        let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
        assert_eq!(drain_bodies(broker.uri(), &idle).await, idle_bodies, "every idle message, once, in order");
        broker.stop_cleanly();
    }

    /// SIGKILL in the middle of busy traffic while compaction moves idle messages, three times
    /// on one data directory: every confirmed idle message is there after each restart, once
    /// and in order (at most the one unconfirmed publish of the moment of the crash extra).
    async fn a_crash_during_compaction_loses_and_duplicates_nothing(shards: usize) {
        let data = DataDir::new();
        let busy = queue_name_on_shard("q-busy", 0, shards);
        let idle = queue_name_on_shard("q-idle", 0, shards);
        let mut expected: Vec<String> = Vec::new();
        for cycle in 0..3 {
            let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
            let (conn, ch) = connect_channel(broker.uri()).await;
            declare_durable_queue(&ch, &busy).await;
            declare_durable_queue(&ch, &idle).await;
            close_conn(&conn).await;
            let traffic = tokio::spawn(trickle_until_the_crash(broker.uri().to_string(), busy.clone(), idle.clone(), cycle));
            tokio::time::sleep(Duration::from_millis(1500 + 300 * cycle as u64)).await;
            broker.kill();
            let confirmed = within(T, traffic).await.expect("the publisher ends with the broker");
            assert!(confirmed.len() > 10, "cycle {cycle}: only {} idle messages confirmed", confirmed.len());
            expected.extend(confirmed);

            let broker = BrokerProcess::start(data.path(), shards, SMALL_SEGMENTS);
            let (conn, ch) = connect_channel(broker.uri()).await;
            let mut got = get_all(&ch, &idle).await.into_iter().map(|got| got.body);
            let recovered: Vec<String> = got.by_ref().take(expected.len()).collect();
            assert_eq!(recovered, expected, "cycle {cycle}: the confirmed idle messages, once, in order");
            let extra: Vec<String> = got.collect();
            assert!(extra.len() <= 1, "cycle {cycle}: more than the one unconfirmed publish came back: {extra:?}");
            // Put them back for the next cycle (drained with basic.get above).
            expected.extend(extra);
            let (conn2, ch2) = confirm_channel(broker.uri()).await;
            publish_confirmed(&ch2, "", &idle, &expected, persistent()).await;
            close_conn(&conn2).await;
            close_conn(&conn).await;
            broker.stop_cleanly();
        }
    }
}
