//! Streams on one node (`x-queue-type: stream`), as RabbitMQ 3.10 has them: durable only,
//! their own arguments (`x-max-age`, `x-max-length-bytes`, `x-stream-max-segment-size-bytes`,
//! ...), the other types' arguments refused, and consumers that must set a prefetch and ack,
//! each reading from its own offset (`x-stream-offset`) with acks that never remove a message.
//! Restarts, crashes and retention: `storage/stream.rs`.

use crate::common::*;
use crate::extensions::{args, long, string};
use crate::storage::{confirm_channel, publish_confirmed};

pub fn stream(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = args(extra);
    table.insert("x-queue-type".into(), string("stream"));
    table
}

pub async fn declare_stream(ch: &Channel, name: &str, arguments: FieldTable) -> lapin::Result<lapin::Queue> {
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    within(T, ch.queue_declare(name.into(), options, arguments)).await
}

/// The `x-stream-offset` header of a stream delivery.
pub fn stream_offset(delivery: &Delivery) -> i64 {
    match delivery.properties.headers().as_ref().and_then(|headers| headers.inner().get("x-stream-offset").cloned()) {
        Some(AMQPValue::LongLongInt(offset)) => offset,
        other => panic!("a stream delivery without a long x-stream-offset: {other:?}"),
    }
}

/// A consumer of `stream` from `offset` on a channel of its own with prefetch `prefetch`.
pub async fn consume_stream(conn: &Connection, stream: &str, offset: AMQPValue, prefetch: u16) -> (Channel, Inbox) {
    let ch = open_channel(conn).await;
    within(T, ch.basic_qos(prefetch, BasicQosOptions::default())).await.expect("qos");
    let arguments = args(&[("x-stream-offset", offset)]);
    let consumer = within(T, ch.basic_consume(stream.into(), "".into(), BasicConsumeOptions::default(), arguments))
        .await
        .expect("basic.consume");
    (ch, inbox_of(consumer))
}

/// Takes `count` deliveries, acks each, and returns (offset, body) of each.
pub async fn take_acked(ch: &Channel, inbox: &mut Inbox, count: usize) -> Vec<(i64, String)> {
    let mut taken = Vec::new();
    for _ in 0..count {
        let delivery = inbox.expect(T).await;
        within(T, ch.basic_ack(delivery.delivery_tag, BasicAckOptions::default())).await.expect("ack");
        taken.push((stream_offset(&delivery), text(&delivery.data)));
    }
    taken
}

fn bodies(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|index| format!("{prefix}{index}")).collect()
}

shard_tests! {
    /// RabbitMQ 3.10: a stream must be durable, and is neither exclusive nor auto-delete; a
    /// bad x-max-age and another type's argument are 406 with RabbitMQ's texts.
    async fn stream_declare_rules_are_checked(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let q = unique("s-flags");
        let ch = open_channel(&conn).await;
        let refused = within(T, ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), stream(&[]))).await;
        expect_close_text(refused, 406, &format!("PRECONDITION_FAILED - invalid property 'non-durable' for queue '{q}' in vhost '/'"));
        let ch = open_channel(&conn).await;
        let options = QueueDeclareOptions { durable: true, exclusive: true, ..Default::default() };
        let refused = within(T, ch.queue_declare(q.as_str().into(), options, stream(&[]))).await;
        expect_close_text(refused, 406, &format!("PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue '{q}' in vhost '/'"));
        let ch = open_channel(&conn).await;
        let refused = declare_stream(&ch, &q, stream(&[("x-max-age", string("7W"))])).await;
        expect_close_text(refused, 406, &format!("PRECONDITION_FAILED - invalid arg 'x-max-age' for queue '{q}' in vhost '/': invalid_max_age"));
        let ch = open_channel(&conn).await;
        let refused = declare_stream(&ch, &q, stream(&[("x-dead-letter-exchange", string("amq.fanout"))])).await;
        let text = format!("PRECONDITION_FAILED - invalid arg 'x-dead-letter-exchange' for queue '{q}' in vhost '/' of queue type rabbit_stream_queue");
        expect_close_text(refused, 406, &text);
        let ch = open_channel(&conn).await;
        let arguments = stream(&[
            ("x-max-age", string("12h")),
            ("x-max-length-bytes", long(20_000_000)),
            ("x-stream-max-segment-size-bytes", long(500_000)),
            ("x-initial-cluster-size", long(1)),
            ("x-queue-leader-locator", string("client-local")),
        ]);
        declare_stream(&ch, &q, arguments).await.expect("a durable stream with its arguments");
        let again = declare_stream(&ch, &q, stream(&[])).await;
        let text = format!("PRECONDITION_FAILED - inequivalent arg 'x-max-length-bytes' for queue '{q}' in vhost '/': received none but current is the value '20000000' of type 'long'");
        expect_close_text(again, 406, &text);
        let ch = open_channel(&conn).await;
        let plain = unique("s-plain");
        declare_stream(&ch, &plain, stream(&[])).await.expect("a plain stream");
        let classic = declare_stream(&ch, &plain, args(&[("x-queue-type", string("classic"))])).await;
        let text = format!("PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{plain}' in vhost '/': received 'classic' but current is 'stream'");
        expect_close_text(classic, 406, &text);
        let ch = open_channel(&conn).await;
        cleanup_queue(&ch, &q).await;
        cleanup_queue(&ch, &plain).await;
        close_conn(&conn).await;
    }

    /// A stream consumer needs a prefetch of its own (406) and manual acks (540); basic.get is
    /// 540, as in RabbitMQ 3.10.
    async fn stream_consumer_rules_are_checked(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let q = unique("s-consumer-rules");
        let ch = open_channel(&conn).await;
        declare_stream(&ch, &q, stream(&[])).await.expect("declare");
        let refused = within(T, ch.basic_consume(q.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())).await;
        expect_close_text(refused, 406, &format!("PRECONDITION_FAILED - consumer prefetch count is not set for 'queue '{q}' in vhost '/''"));
        let ch = open_channel(&conn).await;
        within(T, ch.basic_qos(10, BasicQosOptions::default())).await.expect("qos");
        let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
        let refused = within(T, ch.basic_consume(q.as_str().into(), "".into(), no_ack, FieldTable::default())).await;
        expect_close_text(refused, 540, &format!("NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues queue '{q}' in vhost '/'"));
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let refused = within(T, ch.basic_get(q.as_str().into(), BasicGetOptions::default())).await;
        expect_close_text(refused, 540, &format!("NOT_IMPLEMENTED - basic.get not supported by stream queues queue '{q}' in vhost '/'"));
        let (conn2, ch) = connect_channel(&broker.uri()).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn2).await;
        drop(conn);
    }

    /// Consumers read from first, from a numeric offset, from a timestamp and from next, each
    /// at its own pace; deliveries carry x-stream-offset; acks never remove a message.
    async fn stream_consumers_read_from_their_own_offsets(broker: &Broker) {
        let (conn, ch) = confirm_channel(&broker.uri()).await;
        let q = unique("s-offsets");
        declare_stream(&ch, &q, stream(&[])).await.expect("declare");
        publish_confirmed(&ch, "", &q, &bodies("m", 5), BasicProperties::default()).await;
        let (first_ch, mut first) = consume_stream(&conn, &q, string("first"), 10).await;
        let expected: Vec<(i64, String)> = (0..5).map(|offset| (offset, format!("m{offset}"))).collect();
        assert_eq!(take_acked(&first_ch, &mut first, 5).await, expected);
        let (numeric_ch, mut numeric) = consume_stream(&conn, &q, AMQPValue::ShortInt(3), 10).await;
        assert_eq!(take_acked(&numeric_ch, &mut numeric, 2).await, expected[3..].to_vec());
        let (stamp_ch, mut stamped) = consume_stream(&conn, &q, AMQPValue::Timestamp(0), 10).await;
        assert_eq!(take_acked(&stamp_ch, &mut stamped, 5).await, expected);
        let (next_ch, mut next) = consume_stream(&conn, &q, string("next"), 10).await;
        next.expect_nothing(200).await;
        assert_eq!(message_count(&ch, &q).await, 5, "acks remove nothing from a stream");
        publish_confirmed(&ch, "", &q, &["m5".to_string()], BasicProperties::default()).await;
        for (consumer_ch, inbox) in [(&first_ch, &mut first), (&numeric_ch, &mut numeric), (&next_ch, &mut next)] {
            assert_eq!(take_acked(consumer_ch, inbox, 1).await, vec![(5, "m5".to_string())], "the tail reaches every consumer");
        }
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// A consumer gets at most its prefetch unacked; an ack gives one more. A consumer far
    /// behind does not hold back one at the tail.
    async fn stream_prefetch_bounds_each_consumer_alone(broker: &Broker) {
        let (conn, ch) = confirm_channel(&broker.uri()).await;
        let q = unique("s-prefetch");
        declare_stream(&ch, &q, stream(&[])).await.expect("declare");
        publish_confirmed(&ch, "", &q, &bodies("m", 6), BasicProperties::default()).await;
        let (slow_ch, mut slow) = consume_stream(&conn, &q, string("first"), 2).await;
        let held = slow.take(2, T).await;
        slow.expect_nothing(200).await;
        let (fast_ch, mut fast) = consume_stream(&conn, &q, AMQPValue::LongLongInt(4), 10).await;
        assert_eq!(take_acked(&fast_ch, &mut fast, 2).await, vec![(4, "m4".to_string()), (5, "m5".to_string())]);
        within(T, slow_ch.basic_ack(held[0].delivery_tag, BasicAckOptions::default())).await.expect("ack");
        let third = slow.expect(T).await;
        assert_eq!(stream_offset(&third), 2);
        slow.expect_nothing(200).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// basic.nack and basic.reject of a stream's delivery close the connection with 540, as
    /// in RabbitMQ 3.10.
    async fn stream_nack_is_540(broker: &Broker) {
        let (conn, ch) = confirm_channel(&broker.uri()).await;
        let q = unique("s-nack");
        declare_stream(&ch, &q, stream(&[])).await.expect("declare");
        publish_confirmed(&ch, "", &q, &bodies("m", 1), BasicProperties::default()).await;
        let (consumer_ch, mut inbox) = consume_stream(&conn, &q, string("first"), 10).await;
        let delivery = inbox.expect(T).await;
        drop(inbox);
        let requeue = BasicNackOptions { multiple: false, requeue: true };
        within(T, consumer_ch.basic_nack(delivery.delivery_tag, requeue)).await.ok();
        // basic.nack has no answer: the connection's close reaches the next synchronous call.
        // When the close arrives before that call is sent, lapin fails it with its own error
        // (the channel is closing), which carries no reply: then the connection must be closed.
        let after = within(T, consumer_ch.basic_qos(1, BasicQosOptions::default())).await;
        let text = format!("NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues queue '{q}' in vhost '/'");
        match after {
            Err(error) if matches!(error.kind(), lapin::ErrorKind::InvalidChannelState(..)) => {
                assert!(!conn.status().connected(), "the channel failed but the connection is open: {error}");
            }
            other => expect_close_text(other, 540, &text),
        }
        let (conn, ch) = connect_channel(&broker.uri()).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// x-max-age: once the old segments' messages are older than the age, the expiry sweep
    /// drops them; the segment being written stays.
    async fn stream_retention_by_age_drops_old_segments_on_the_timer(broker: &Broker) {
        let (conn, ch) = confirm_channel(&broker.uri()).await;
        let q = unique("s-age");
        let arguments = stream(&[("x-max-age", string("1s")), ("x-stream-max-segment-size-bytes", long(4_096))]);
        declare_stream(&ch, &q, arguments).await.expect("declare");
        let payload = "z".repeat(500);
        let many: Vec<String> = (0..60).map(|index| format!("{index:02}-{payload}")).collect();
        publish_confirmed(&ch, "", &q, &many, BasicProperties::default()).await;
        assert_eq!(message_count(&ch, &q).await, 60);
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        let left = message_count(&ch, &q).await;
        assert!(left > 0 && left < 15, "{left} messages left: only the segment being written stays");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }
}
