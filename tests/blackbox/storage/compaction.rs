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
}
