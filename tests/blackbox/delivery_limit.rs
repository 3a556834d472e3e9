//! `x-delivery-limit` with RabbitMQ 4's quorum-queue semantics on our queues: every return of a
//! delivered message to its queue (nack or reject with requeue, a channel closed with it
//! unacked) is counted, sent as `x-delivery-count` on the redeliveries, and one return beyond
//! the limit dead-letters the message (reason `delivery_limit`) or drops it.

use crate::common::*;
use crate::extensions::{args, declare_with, long, text_of, with_dead_letter_queue, x_death};

/// The `x-delivery-count` header of a delivery, if it has one.
fn delivery_count(delivery: &Delivery) -> Option<i64> {
    let headers = delivery.properties.headers().clone()?;
    match headers.inner().get("x-delivery-count")? {
        AMQPValue::LongLongInt(count) => Some(*count),
        other => panic!("x-delivery-count of an unexpected type: {other:?}"),
    }
}

/// basic.get (acknowledged mode) of the only message, then basic.nack with requeue; returns
/// the delivery's x-delivery-count header.
async fn get_and_requeue(ch: &Channel, queue: &str) -> Option<i64> {
    let got = get(ch, queue, false).await.expect("the message is in the queue");
    let count = delivery_count(&got.delivery);
    let requeue = BasicNackOptions { multiple: false, requeue: true };
    within(T, ch.basic_nack(got.delivery.delivery_tag, requeue)).await.expect("basic.nack");
    count
}

shard_tests! {
    /// RabbitMQ 4 quorum queues: a message nacked with requeue once more than x-delivery-limit
    /// is dead-lettered with reason delivery_limit; the redeliveries before carry
    /// x-delivery-count 1, 2, ... (none on the first delivery).
    async fn return_beyond_delivery_limit_is_dead_lettered(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-delivery-limit");
        let dead = with_dead_letter_queue(&ch, &q, args(&[("x-delivery-limit", long(2))])).await;
        publish(&ch, "", &q, b"poison").await;
        wait_message_count(&ch, &q, 1, 5).await;
        let mut counts = Vec::new();
        for _ in 0..3 {
            counts.push(get_and_requeue(&ch, &q).await);
        }
        assert_eq!(counts, vec![None, Some(1), Some(2)], "x-delivery-count of the three deliveries");
        wait_message_count(&ch, &q, 0, 5).await;
        let mut inbox = consume(&ch, &dead, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        let delivery = inbox.expect(5).await;
        assert_eq!(text(&delivery.data), "poison");
        let deaths = x_death(&delivery);
        assert_eq!(text_of(&deaths[0], "reason").as_deref(), Some("delivery_limit"));
        assert_eq!(text_of(&deaths[0], "queue").as_deref(), Some(q.as_str()));
        cleanup_queue(&ch, &q).await;
        cleanup_queue(&ch, &dead).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ 4 quorum queues: without a dead-letter exchange, a message over its delivery
    /// limit is dropped.
    async fn return_beyond_delivery_limit_without_dead_letter_exchange_is_dropped(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-delivery-limit-drop");
        declare_with(&ch, &q, args(&[("x-delivery-limit", long(1))])).await.expect("declare");
        publish(&ch, "", &q, b"poison").await;
        wait_message_count(&ch, &q, 1, 5).await;
        assert_eq!(get_and_requeue(&ch, &q).await, None);
        assert_eq!(get_and_requeue(&ch, &q).await, Some(1));
        assert_count_stays(&ch, &q, 0, 300).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ 4 quorum queues: x-delivery-limit 0 allows no return at all; the first
    /// reject with requeue dead-letters the message.
    async fn delivery_limit_zero_dead_letters_at_first_return(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-delivery-limit-0");
        let dead = with_dead_letter_queue(&ch, &q, args(&[("x-delivery-limit", long(0))])).await;
        publish(&ch, "", &q, b"once").await;
        wait_message_count(&ch, &q, 1, 5).await;
        let got = get(&ch, &q, false).await.expect("message");
        within(T, ch.basic_reject(got.delivery.delivery_tag, BasicRejectOptions { requeue: true })).await.expect("reject");
        wait_message_count(&ch, &dead, 1, 5).await;
        assert_eq!(message_count(&ch, &q).await, 0);
        let dead_letter = get(&ch, &dead, true).await.expect("dead-lettered copy");
        assert_eq!(text_of(&x_death(&dead_letter.delivery)[0], "reason").as_deref(), Some("delivery_limit"));
        cleanup_queue(&ch, &q).await;
        cleanup_queue(&ch, &dead).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ 4.0-4.2 quorum queues count every return, including a channel closed with
    /// the message unacked: a consumer's redeliveries carry x-delivery-count 1, then 2 on
    /// another channel, with redelivered set.
    async fn closed_channel_counts_as_a_return(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let (first, second) = (open_channel(&conn).await, open_channel(&conn).await);
        let q = unique("q-delivery-count");
        declare_with(&first, &q, args(&[("x-delivery-limit", long(5))])).await.expect("declare");
        within(T, first.basic_qos(1, BasicQosOptions::default())).await.expect("qos");
        let mut inbox = consume(&first, &q, BasicConsumeOptions::default()).await;
        publish(&first, "", &q, b"work").await;
        let delivery = inbox.expect(5).await;
        assert_eq!((delivery_count(&delivery), delivery.redelivered), (None, false));
        let requeue = BasicNackOptions { multiple: false, requeue: true };
        within(T, first.basic_nack(delivery.delivery_tag, requeue)).await.expect("nack");
        let again = inbox.expect(5).await;
        assert_eq!((delivery_count(&again), again.redelivered), (Some(1), true));
        within(T, first.close(200, "bye".into())).await.expect("close the channel without ack");
        let mut other = consume(&second, &q, BasicConsumeOptions::default()).await;
        let last = other.expect(5).await;
        assert_eq!((text(&last.data), delivery_count(&last), last.redelivered), ("work".to_string(), Some(2), true));
        cleanup_queue(&second, &q).await;
        close_conn(&conn).await;
    }
}
