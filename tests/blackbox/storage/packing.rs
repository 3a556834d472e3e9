//! Packing: the small in-memory messages that wait in a queue for a sweep of its shard are
//! copied into shared chunks (about 25 bytes plus the body each) and still reach consumers
//! exactly as published, in order, around the messages that stay as they arrived (a large
//! body, a deadline) and the ones that come back after a reject.

use lapin::types::ShortString;

use super::paging::{shard_metric_sum, start_with_metrics};
use super::*;
use crate::common::process::DataDir;

/// The properties of message `index`: a content type and a header naming it; every tenth
/// also has an `expiration`, which keeps it as it arrived.
fn properties_of(index: usize) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("index".into(), AMQPValue::LongLongInt(index as i64));
    let properties = transient().with_content_type(ShortString::from("text/plain")).with_headers(headers);
    if index % 10 == 3 {
        return properties.with_expiration(ShortString::from("600000"));
    }
    properties
}

/// Message `index`'s body: varied lengths, every hundredth too large to pack.
fn body_of(index: usize) -> String {
    let length = if index % 100 == 7 { 2_000 } else { index * 13 % 200 };
    format!("body-{index:05}-{}", "p".repeat(length))
}

/// Whether message `index` is packed: small and without a deadline.
fn packable(index: usize) -> bool {
    index % 10 != 3 && index % 100 != 7
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_backlog_is_packed_and_delivered_as_published_in_order() {
    if crate::common::process::external_broker() {
        return;
    }
    within(TEST_TIMEOUT, async {
        let data = DataDir::new();
        let (broker, prometheus_port) = start_with_metrics(&data, 2, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        let queue = unique("q-packed");
        declare_queue(&ch, &queue).await;
        let sent = 3_000;
        for index in 0..sent {
            let body = body_of(index);
            let publish = ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties_of(index),
            );
            within(T, publish).await.expect("basic.publish").await.expect("confirmed");
        }
        let expected_packed = (0..sent).filter(|index| packable(*index)).count() as f64;
        let mut packed = 0.0;
        for _ in 0..200 {
            packed = shard_metric_sum(prometheus_port, "spatemq_shard_packed_messages_total");
            if packed >= expected_packed {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(packed, expected_packed, "every small message without a deadline is packed, and only those");

        // The first ten come back after a reject and lead the queue, redelivered.
        let mut first = Vec::new();
        for _ in 0..10 {
            first.push(get(&ch, &queue, false).await.expect("a message"));
        }
        let last_tag = first.last().expect("ten").delivery.delivery_tag;
        within(T, ch.basic_nack(last_tag, BasicNackOptions { multiple: true, requeue: true })).await.expect("nack");

        for index in 0..sent {
            let message = get(&ch, &queue, true).await.unwrap_or_else(|| panic!("message {index} is missing"));
            let delivery = &message.delivery;
            assert_eq!(text(&delivery.data), body_of(index), "message {index}");
            assert_eq!(delivery.redelivered, index < 10, "message {index}'s redelivered flag");
            assert_eq!(delivery.routing_key.as_str(), queue, "message {index}'s routing key");
            assert_eq!(delivery.exchange.as_str(), "", "message {index}'s exchange");
            assert_eq!(delivery.properties, properties_of(index), "message {index}'s properties");
        }
        assert!(get(&ch, &queue, true).await.is_none(), "nothing more");
        close_conn(&conn).await;
        broker.stop_cleanly();
    })
    .await;
}
