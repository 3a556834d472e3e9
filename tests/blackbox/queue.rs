//! Queue declaration, exclusivity, auto-delete, purge, delete and bindings.

use crate::common::*;
use std::time::{Duration, Instant};

async fn passive_queue(ch: &Channel, name: &str) -> lapin::Result<lapin::Queue> {
    within(T, ch.queue_declare(name.into(), QueueDeclareOptions::default().passive(), FieldTable::default())).await
}

/// Polls (on fresh channels of `conn`) until `name` no longer exists.
async fn wait_queue_gone(conn: &Connection, name: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let ch = open_channel(conn).await;
        match passive_queue(&ch, name).await {
            Err(e) => {
                expect_channel_close(&e, 404);
                return;
            }
            Ok(_) if Instant::now() > deadline => panic!("queue {name} still exists after {secs} s"),
            Ok(_) => {
                let _ = within(T, ch.close(200, "".into())).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

shard_tests! {
    /// RabbitMQ: a queue.declare (passive or not) answers after the messages the same channel
    /// published before it reached the queue, so its count includes them (the queue on another
    /// shard than the connection and the definitions writer, in the 3-shard run).
    async fn queue_declare_counts_what_the_channel_published_before(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = queue_name_on_shard("q-count-order", 2, broker.shards());
        declare_queue(&ch, &q).await;
        for round in 1..=20u32 {
            publish(&ch, "", &q, format!("m{round}").as_bytes()).await;
            assert_eq!(message_count(&ch, &q).await, round, "the count right after publish number {round}");
        }
        // A plain redeclare answers the count too, and from the same place.
        for round in 21..=30u32 {
            publish(&ch, "", &q, format!("m{round}").as_bytes()).await;
            assert_eq!(declare_queue(&ch, &q).await.message_count(), round, "redeclare after publish {round}");
        }
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn server_named_queue_starts_with_amq_gen(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let a = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        let b = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        assert!(a.name().as_str().starts_with("amq.gen-"), "server-named queue: {}", a.name());
        assert_ne!(a.name(), b.name(), "server-named queues must be distinct");
        assert_eq!(a.message_count(), 0);
        assert_eq!(a.consumer_count(), 0);
        publish(&ch, "", a.name().as_str(), b"x").await;
        assert!(get(&ch, a.name().as_str(), true).await.is_some(), "server-named queue is routable by name");
        close_conn(&conn).await;
    }

    async fn declare_amq_prefixed_queue_is_403(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let name = format!("amq.gen-{}", unique("q"));
        let res = within(T, ch.queue_declare(name.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())).await;
        expect_close_text(res, 403, &format!("ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'"));
        close_conn(&conn).await;
    }

    async fn passive_declare_of_missing_queue_is_404(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let name = unique("q-missing");
        expect_close_text(passive_queue(&ch, &name).await, 404, &format!("NOT_FOUND - no queue '{name}' in vhost '/'"));
        close_conn(&conn).await;
    }

    async fn passive_declare_reports_message_and_consumer_counts(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-counts");
        declare_queue(&ch, &q).await;
        for i in 0..3 {
            publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
        }
        wait_message_count(&ch, &q, 3, 5).await;
        let ch2 = open_channel(&conn).await;
        within(T, ch2.basic_qos(1, BasicQosOptions::default())).await.expect("basic.qos");
        let mut inbox = consume(&ch2, &q, BasicConsumeOptions::default()).await;
        let _first = inbox.expect(T).await;
        let info = passive_queue(&ch, &q).await.expect("passive declare");
        assert_eq!(info.consumer_count(), 1, "consumer count");
        // One message is unacked and not counted.
        assert_eq!(info.message_count(), 2, "ready message count");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn redeclare_with_other_durability_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-durability");
        declare_queue(&ch, &q).await;
        let res = within(T, ch.queue_declare(q.as_str().into(), QueueDeclareOptions::durable(), FieldTable::default())).await;
        expect_close_text(
            res,
            406,
            &format!("PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'true' but current is 'false'"),
        );
        let ch = open_channel(&conn).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn redeclare_with_same_arguments_is_ok(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-same");
        declare_queue(&ch, &q).await;
        publish(&ch, "", &q, b"kept").await;
        wait_message_count(&ch, &q, 1, 5).await;
        let again = declare_queue(&ch, &q).await;
        assert_eq!(again.message_count(), 1, "redeclare must not reset the queue");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn exclusive_queue_from_other_connection_is_405(broker: &Broker) {
        let (owner, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-exclusive");
        declare_queue_with(&ch, &q, QueueDeclareOptions::exclusive()).await;
        let (other, ch2) = connect_channel(&broker.uri()).await;
        let res = within(T, ch2.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())).await;
        expect_close_text(
            res,
            405,
            &format!("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."),
        );
        // Consuming from it is refused the same way.
        let ch3 = open_channel(&other).await;
        let res = within(T, ch3.basic_consume(q.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())).await;
        expect_close(res.map(|_| ()), 405);
        close_conn(&other).await;
        close_conn(&owner).await;
    }

    async fn exclusive_queue_deleted_when_its_connection_closes(broker: &Broker) {
        let (owner, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-excl-gone");
        declare_queue_with(&ch, &q, QueueDeclareOptions::exclusive()).await;
        publish(&ch, "", &q, b"dies with the connection").await;
        close_conn(&owner).await;
        let other = connect(&broker.uri()).await;
        wait_queue_gone(&other, &q, 5).await;
        close_conn(&other).await;
    }

    async fn auto_delete_queue_deleted_after_last_consumer_cancels(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-autodel");
        declare_queue_with(&ch, &q, QueueDeclareOptions::default().auto_delete()).await;
        let a = consume(&ch, &q, BasicConsumeOptions::default()).await;
        let b = consume(&ch, &q, BasicConsumeOptions::default()).await;
        within(T, ch.basic_cancel(a.tag.as_str().into(), BasicCancelOptions::default())).await.expect("cancel a");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let info = passive_queue(&open_channel(&conn).await, &q).await.expect("queue survives while a consumer remains");
        assert_eq!(info.consumer_count(), 1);
        within(T, ch.basic_cancel(b.tag.as_str().into(), BasicCancelOptions::default())).await.expect("cancel b");
        wait_queue_gone(&conn, &q, 5).await;
        close_conn(&conn).await;
    }

    async fn auto_delete_queue_without_consumers_is_kept(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-autodel-never");
        declare_queue_with(&ch, &q, QueueDeclareOptions::default().auto_delete()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        passive_queue(&ch, &q).await.expect("an auto-delete queue that never had a consumer stays");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn purge_returns_count_and_empties_queue(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        let qn = q.name().as_str();
        for i in 0..7 {
            publish(&ch, "", qn, format!("m{i}").as_bytes()).await;
        }
        wait_message_count(&ch, qn, 7, 5).await;
        let purged = within(T, ch.queue_purge(qn.into(), QueuePurgeOptions::default())).await.expect("queue.purge");
        assert_eq!(purged, 7);
        assert_eq!(message_count(&ch, qn).await, 0);
        assert!(get(&ch, qn, true).await.is_none());
        let again = within(T, ch.queue_purge(qn.into(), QueuePurgeOptions::default())).await.expect("purge empty");
        assert_eq!(again, 0);
        close_conn(&conn).await;
    }

    async fn purge_keeps_unacked_messages(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-purge-unacked");
        declare_queue(&ch, &q).await;
        for i in 0..3 {
            publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
        }
        wait_message_count(&ch, &q, 3, 5).await;
        let held = get(&ch, &q, false).await.expect("one message held unacked");
        let purged = within(T, ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default())).await.expect("purge");
        assert_eq!(purged, 2, "purge counts only ready messages");
        within(T, ch.basic_reject(held.delivery.delivery_tag, BasicRejectOptions { requeue: true })).await.expect("reject");
        wait_message_count(&ch, &q, 1, 5).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn delete_if_empty_with_messages_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-ifempty");
        declare_queue(&ch, &q).await;
        publish(&ch, "", &q, b"x").await;
        wait_message_count(&ch, &q, 1, 5).await;
        let res = within(T, ch.queue_delete(q.as_str().into(), QueueDeleteOptions { if_empty: true, ..Default::default() })).await;
        expect_close_text(res, 406, &format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty"));
        let ch = open_channel(&conn).await;
        assert_eq!(message_count(&ch, &q).await, 1, "the queue survives a refused delete");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn delete_if_unused_with_consumer_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-ifunused");
        declare_queue(&ch, &q).await;
        let _inbox = consume(&ch, &q, BasicConsumeOptions::default()).await;
        let ch2 = open_channel(&conn).await;
        let res = within(T, ch2.queue_delete(q.as_str().into(), QueueDeleteOptions { if_unused: true, ..Default::default() })).await;
        expect_close_text(res, 406, &format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' in use"));
        let ch3 = open_channel(&conn).await;
        passive_queue(&ch3, &q).await.expect("the queue survives a refused delete");
        cleanup_queue(&ch3, &q).await;
        close_conn(&conn).await;
    }

    async fn delete_returns_message_count(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-delcount");
        declare_queue(&ch, &q).await;
        for i in 0..5 {
            publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
        }
        wait_message_count(&ch, &q, 5, 5).await;
        let n = within(T, ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())).await.expect("queue.delete");
        assert_eq!(n, 5);
        expect_close(passive_queue(&ch, &q).await, 404);
        close_conn(&conn).await;
    }

    async fn delete_of_missing_queue_is_ok_with_zero(broker: &Broker) {
        // RabbitMQ answers queue.delete of a missing queue with delete-ok(0)
        // rather than 404.
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let n = within(T, ch.queue_delete(unique("q-never").as_str().into(), QueueDeleteOptions::default()))
            .await
            .expect("queue.delete of a missing queue");
        assert_eq!(n, 0);
        close_conn(&conn).await;
    }

    async fn bind_and_unbind_control_routing(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        let qn = q.name().as_str();
        let key = unique("rk");
        within(T, ch.queue_bind(qn.into(), "amq.direct".into(), key.as_str().into(), QueueBindOptions::default(), FieldTable::default()))
            .await
            .expect("queue.bind");
        // Binding twice is idempotent: still one copy per message.
        within(T, ch.queue_bind(qn.into(), "amq.direct".into(), key.as_str().into(), QueueBindOptions::default(), FieldTable::default()))
            .await
            .expect("queue.bind again");
        publish(&ch, "amq.direct", &key, b"bound").await;
        wait_message_count(&ch, qn, 1, 5).await;
        within(T, ch.queue_unbind(qn.into(), "amq.direct".into(), key.as_str().into(), FieldTable::default()))
            .await
            .expect("queue.unbind");
        publish(&ch, "amq.direct", &key, b"unbound").await;
        // A marker sent after the unbound publish on the same channel proves it was processed.
        publish(&ch, "", qn, b"marker").await;
        wait_message_count(&ch, qn, 2, 5).await;
        let first = get(&ch, qn, true).await.expect("first");
        let second = get(&ch, qn, true).await.expect("second");
        assert_eq!(text(&first.delivery.data), "bound");
        assert_eq!(text(&second.delivery.data), "marker");
        close_conn(&conn).await;
    }

    async fn bind_to_missing_exchange_is_404(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        let x = unique("x-missing");
        let res = within(T, ch.queue_bind(q.name().as_str().into(), x.as_str().into(), "k".into(), QueueBindOptions::default(), FieldTable::default())).await;
        expect_close_text(res, 404, &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"));
        close_conn(&conn).await;
    }

    async fn bind_to_default_exchange_is_403(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        let res = within(T, ch.queue_bind(q.name().as_str().into(), "".into(), "k".into(), QueueBindOptions::default(), FieldTable::default())).await;
        expect_close_text(res, 403, "ACCESS_REFUSED - operation not permitted on the default exchange");
        close_conn(&conn).await;
    }
}
