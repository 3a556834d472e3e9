//! What the management API counts beyond the queues' own counts: publisher confirms and
//! unroutable returns in the overview's and vhosts' `message_stats`, the rates of queue depths
//! (`messages_details`), and SpateMQ's per-shard load in the overview (for monitoring users).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{wait_for_messages, Managed};
use crate::common::*;

/// GETs `path` until `check` holds, or panics with the last answer.
fn poll(managed: &Managed, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = managed.call("GET", path, None).json();
        if check(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{path} never matched: {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_and_unroutable_returns_are_counted_per_vhost_and_overall() {
    let Some(managed) = Managed::start() else { return };
    let (connection, channel) = connect_channel(&managed.uri()).await;
    declare_queue(&channel, "confirmed").await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
    for _ in 0..7 {
        let confirm = channel
            .basic_publish("".into(), "confirmed".into(), BasicPublishOptions::default(), b"m", Default::default())
            .await
            .expect("publish");
        assert!(confirm.await.expect("confirm").is_ack());
    }
    let plain = open_channel(&connection).await;
    let mandatory = BasicPublishOptions { mandatory: true, ..Default::default() };
    for _ in 0..2 {
        plain.basic_publish("".into(), "nowhere".into(), mandatory, b"m", Default::default()).await.expect("publish");
    }
    let counted = |stats: &Value| stats["confirm"] == json!(7) && stats["return_unroutable"] == json!(2);
    let overview = poll(&managed, "/api/overview", |overview| counted(&overview["message_stats"]));
    assert!(overview["message_stats"]["confirm_details"]["rate"].is_number(), "{overview}");
    poll(&managed, "/api/vhosts/%2F", |vhost| counted(&vhost["message_stats"]));
    // A queue counts only its own: no channel-side fields.
    let queue = managed.call("GET", "/api/queues/%2F/confirmed", None).json();
    assert!(queue["message_stats"].get("confirm").is_none(), "{queue}");
    // The counts outlive the connection.
    close_conn(&connection).await;
    poll(&managed, "/api/overview", |overview| {
        overview["object_totals"]["connections"] == json!(0) && counted(&overview["message_stats"])
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_rates_follow_the_depth_up_and_down() {
    let Some(managed) = Managed::start() else { return };
    let (connection, channel) = connect_channel(&managed.uri()).await;
    declare_queue(&channel, "deep").await;
    let path = "/api/queues/%2F/deep";
    wait_for_messages(&managed, path, 0);
    for _ in 0..40 {
        publish(&channel, "", "deep", b"m").await;
    }
    // Rates come from two samples at least a second apart.
    std::thread::sleep(Duration::from_millis(1100));
    let grown = poll(&managed, path, |queue| queue["messages"] == json!(40));
    let rate = grown["messages_details"]["rate"].as_f64().expect("a rate");
    assert!(rate > 0.0, "40 more messages in about a second: {grown}");
    assert_eq!(grown["messages_ready_details"]["rate"], grown["messages_details"]["rate"]);
    channel.queue_purge("deep".into(), QueuePurgeOptions::default()).await.expect("purge");
    std::thread::sleep(Duration::from_millis(1100));
    let emptied = poll(&managed, path, |queue| queue["messages"] == json!(0));
    let rate = emptied["messages_details"]["rate"].as_f64().expect("a rate");
    assert!(rate < 0.0, "40 fewer messages: {emptied}");
    close_conn(&connection).await;
}

#[test]
fn the_overview_shows_each_shards_load_to_monitoring_users_only() {
    let Some(managed) = Managed::start() else { return };
    let overview = managed.call("GET", "/api/overview", None).json();
    let shards = overview["shards"].as_array().unwrap_or_else(|| panic!("no shards: {overview}"));
    assert_eq!(shards.len(), 2, "{overview}");
    for (index, shard) in shards.iter().enumerate() {
        assert_eq!(shard["shard"], json!(index));
        let busy = shard["busy"].as_f64().expect("busy");
        assert!((0.0..=1.0).contains(&busy), "{shard}");
        assert!(shard["loop_turns"].as_u64().expect("loop turns") > 0, "{shard}");
        for field in ["connections", "channels", "consumers", "queues", "messages_ready", "mailbox_depth"] {
            assert!(shard[field].is_u64(), "{field}: {shard}");
        }
    }
    let created = managed.call("PUT", "/api/users/viewer", Some(r#"{"password":"pw","tags":"management"}"#));
    assert_eq!(created.status, 201, "{created:?}");
    let granted =
        managed.call("PUT", "/api/permissions/%2F/viewer", Some(r#"{"configure":".*","write":".*","read":".*"}"#));
    assert!(granted.status == 201 || granted.status == 204, "{granted:?}");
    let seen = managed.call_as("viewer", "pw", "GET", "/api/overview", None).json();
    assert!(seen.get("shards").is_none(), "a node-wide view: {seen}");
    assert!(seen["message_stats"].is_object(), "{seen}");
}
