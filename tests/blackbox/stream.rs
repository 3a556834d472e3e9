//! Streams on one node (`x-queue-type: stream`), as RabbitMQ 3.10 has them: durable only,
//! their own arguments (`x-max-age`, `x-max-length-bytes`, `x-stream-max-segment-size-bytes`,
//! ...), the other types' arguments refused, and consumers that must set a prefetch and ack.

use crate::common::*;
use crate::extensions::{args, long, string};

pub fn stream(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = args(extra);
    table.insert("x-queue-type".into(), string("stream"));
    table
}

pub async fn declare_stream(ch: &Channel, name: &str, arguments: FieldTable) -> lapin::Result<lapin::Queue> {
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    within(T, ch.queue_declare(name.into(), options, arguments)).await
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
}
