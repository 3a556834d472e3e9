//! Quorum queues on one node (`x-queue-type: quorum`), as RabbitMQ 3.10 has them: durable
//! only, `x-delivery-limit` with `x-delivery-count` on redeliveries, every message on disk,
//! and the type kept across a restart.

use crate::common::process::{BrokerProcess, DataDir};
use crate::common::*;
use crate::extensions::{args, declare_with, long, string};

fn quorum(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = args(extra);
    table.insert("x-queue-type".into(), string("quorum"));
    table
}

async fn declare_durable(ch: &Channel, name: &str, arguments: FieldTable) -> lapin::Result<lapin::Queue> {
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    within(T, ch.queue_declare(name.into(), options, arguments)).await
}

fn delivery_count(delivery: &Delivery) -> Option<i64> {
    match delivery.properties.headers().as_ref()?.inner().get("x-delivery-count")? {
        AMQPValue::LongLongInt(count) => Some(*count),
        other => panic!("x-delivery-count of an unexpected type: {other:?}"),
    }
}

shard_tests! {
    /// RabbitMQ 3.10: a quorum queue must be durable, and is neither exclusive nor auto-delete.
    async fn quorum_declare_flags_are_checked(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let q = unique("q-quorum-flags");
        let ch = open_channel(&conn).await;
        let text = format!("PRECONDITION_FAILED - invalid property 'non-durable' for queue '{q}' in vhost '/'");
        expect_close_text(declare_with(&ch, &q, quorum(&[])).await, 406, &text);
        let ch = open_channel(&conn).await;
        let options = QueueDeclareOptions { durable: true, auto_delete: true, ..Default::default() };
        let refused = within(T, ch.queue_declare(q.as_str().into(), options, quorum(&[]))).await;
        let text = format!("PRECONDITION_FAILED - invalid property 'auto-delete' for queue '{q}' in vhost '/'");
        expect_close_text(refused, 406, &text);
        let ch = open_channel(&conn).await;
        let refused = declare_durable(&ch, &q, quorum(&[("x-max-priority", long(5))])).await;
        let text = format!("PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{q}' in vhost '/' of queue type rabbit_quorum_queue");
        expect_close_text(refused, 406, &text);
        let ch = open_channel(&conn).await;
        declare_durable(&ch, &q, quorum(&[])).await.expect("a durable quorum queue");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// Redeliveries of a quorum queue carry x-delivery-count; one return more than
    /// x-delivery-limit drops the message (no dead-letter exchange).
    async fn quorum_delivery_limit_counts_and_drops(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-quorum-limit");
        declare_durable(&ch, &q, quorum(&[("x-delivery-limit", long(1))])).await.expect("declare");
        within(T, ch.basic_qos(1, BasicQosOptions::default())).await.expect("qos");
        let mut inbox = consume(&ch, &q, BasicConsumeOptions::default()).await;
        publish(&ch, "", &q, b"poison").await;
        let requeue = BasicNackOptions { multiple: false, requeue: true };
        let first = inbox.expect(5).await;
        assert_eq!((delivery_count(&first), first.redelivered), (None, false));
        within(T, ch.basic_nack(first.delivery_tag, requeue)).await.expect("nack");
        let second = inbox.expect(5).await;
        assert_eq!((delivery_count(&second), second.redelivered), (Some(1), true));
        within(T, ch.basic_nack(second.delivery_tag, requeue)).await.expect("nack");
        inbox.expect_nothing(300).await;
        assert_eq!(message_count(&ch, &q).await, 0, "the second return is beyond the limit");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ 3.10 refuses a consumer of a quorum queue on a channel with a global prefetch
    /// (540, a connection error).
    async fn quorum_consumer_with_global_qos_is_540(broker: &Broker) {
        let (_refused_conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-quorum-global");
        declare_durable(&ch, &q, quorum(&[])).await.expect("declare");
        within(T, ch.basic_qos(10, BasicQosOptions { global: true })).await.expect("qos");
        let refused = within(T, ch.basic_consume(q.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())).await;
        let text = format!("NOT_IMPLEMENTED - queue '{q}' in vhost '/' does not support global qos");
        expect_close_text(refused, 540, &text);
        let (conn, ch) = connect_channel(&broker.uri()).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }
}

restart_tests! {
    /// A quorum queue stays a quorum queue across a restart (a classic redeclare is 406), and
    /// keeps a transient message, as every message of a quorum queue is kept on disk.
    async fn quorum_queue_and_its_transient_messages_survive_a_restart(shards: usize) {
        let data = DataDir::new();
        let q = unique("q-quorum-restart");
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        {
            let (conn, ch) = connect_channel(broker.uri()).await;
            declare_durable(&ch, &q, quorum(&[("x-delivery-limit", long(3))])).await.expect("declare");
            within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
            let transient = BasicProperties::default().with_delivery_mode(1);
            let confirm = within(T, ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), b"kept", transient))
                .await
                .expect("publish");
            within(T, confirm).await.expect("confirmed");
            close_conn(&conn).await;
        }
        broker.stop_cleanly();

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = connect_channel(broker.uri()).await;
        let refusal = format!("PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{q}' in vhost '/': received 'classic' but current is 'quorum'");
        expect_close_text(declare_durable(&ch, &q, args(&[("x-queue-type", string("classic"))])).await, 406, &refusal);
        let ch = open_channel(&conn).await;
        let got = get(&ch, &q, true).await.expect("the transient message survived");
        assert_eq!(text(&got.delivery.data), "kept");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
        broker.stop_cleanly();
    }
}
