//! Publisher confirms and transactions.

use crate::common::*;

shard_tests! {
    async fn confirm_select_acks_every_publish(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let q = unique("q-confirm");
        declare_queue(&ch, &q).await;
        let n = 2000;
        let mut confirms = Vec::with_capacity(n);
        for i in 0..n {
            let c = within(
                T,
                ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), format!("m{i}").as_bytes(), BasicProperties::default()),
            )
            .await
            .expect("basic.publish");
            confirms.push(c);
        }
        for (i, c) in confirms.into_iter().enumerate() {
            let c = within(T, c).await.unwrap_or_else(|e| panic!("confirm {i}: {e}"));
            assert!(c.is_ack(), "publish {i} was not acked: {c:?}");
        }
        // Once confirmed, every message is in the queue.
        wait_message_count(&ch, &q, n as u32, 5).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn wait_for_confirms_returns_after_all_acks(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let q = unique("q-confirm-wait");
        declare_queue(&ch, &q).await;
        for i in 0..500 {
            // Dropped confirms are tracked by wait_for_confirms.
            let pending = within(
                T,
                ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), format!("m{i}").as_bytes(), BasicProperties::default()),
            )
            .await
            .expect("basic.publish");
            // The confirm is awaited later through wait_for_confirms.
            drop(pending);
        }
        let returned = within(T, ch.wait_for_confirms()).await.expect("wait_for_confirms");
        assert!(returned.is_empty());
        wait_message_count(&ch, &q, 500, 5).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn tx_commit_publishes_only_at_commit(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-tx-commit");
        declare_queue(&ch, &q).await;
        let tx = open_channel(&conn).await;
        within(T, tx.tx_select()).await.expect("tx.select");
        for i in 0..3 {
            publish(&tx, "", &q, format!("m{i}").as_bytes()).await;
        }
        // A round trip on the tx channel proves the publishes reached the broker.
        within(T, tx.queue_declare(q.as_str().into(), QueueDeclareOptions::default().passive(), FieldTable::default())).await.expect("passive");
        // Uncommitted publishes are invisible.
        assert_count_stays(&ch, &q, 0, 300).await;
        within(T, tx.tx_commit()).await.expect("tx.commit");
        wait_message_count(&ch, &q, 3, 5).await;
        let first = get(&ch, &q, true).await.expect("m0");
        assert_eq!(text(&first.delivery.data), "m0");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn tx_rollback_discards_publishes(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-tx-rollback");
        declare_queue(&ch, &q).await;
        let tx = open_channel(&conn).await;
        within(T, tx.tx_select()).await.expect("tx.select");
        publish(&tx, "", &q, b"rolled-back").await;
        within(T, tx.tx_rollback()).await.expect("tx.rollback");
        // The channel stays transactional: the next commit publishes only what follows.
        publish(&tx, "", &q, b"committed").await;
        within(T, tx.tx_commit()).await.expect("tx.commit");
        wait_message_count(&ch, &q, 1, 5).await;
        let m = get(&ch, &q, true).await.expect("committed message");
        assert_eq!(text(&m.delivery.data), "committed");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn tx_closing_channel_discards_uncommitted_publishes(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-tx-close");
        declare_queue(&ch, &q).await;
        let tx = open_channel(&conn).await;
        within(T, tx.tx_select()).await.expect("tx.select");
        publish(&tx, "", &q, b"never").await;
        within(T, tx.close(200, "".into())).await.expect("channel.close");
        assert_count_stays(&ch, &q, 0, 300).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn tx_ack_applies_only_at_commit(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-tx-ack");
        declare_queue(&ch, &q).await;
        for i in 0..2 {
            publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
        }
        wait_message_count(&ch, &q, 2, 5).await;

        // An ack inside a transaction that is never committed is lost when the
        // channel closes: the message comes back.
        let tx = open_channel(&conn).await;
        within(T, tx.tx_select()).await.expect("tx.select");
        let m = get(&tx, &q, false).await.expect("m0");
        within(T, tx.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())).await.expect("ack");
        within(T, tx.close(200, "".into())).await.expect("channel.close");
        wait_message_count(&ch, &q, 2, 5).await;

        // A committed ack removes it.
        let tx = open_channel(&conn).await;
        within(T, tx.tx_select()).await.expect("tx.select");
        let m = get(&tx, &q, false).await.expect("m0 again");
        assert_eq!(text(&m.delivery.data), "m0");
        assert!(m.delivery.redelivered);
        within(T, tx.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())).await.expect("ack");
        within(T, tx.tx_commit()).await.expect("tx.commit");
        within(T, tx.close(200, "".into())).await.expect("channel.close");
        wait_message_count(&ch, &q, 1, 5).await;
        let left = get(&ch, &q, true).await.expect("m1");
        assert_eq!(text(&left.delivery.data), "m1");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn tx_commit_without_select_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let res = within(T, ch.tx_commit()).await;
        expect_close_text(res, 406, "PRECONDITION_FAILED - channel is not transactional");
        close_conn(&conn).await;
    }

    async fn confirm_select_on_tx_channel_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.tx_select()).await.expect("tx.select");
        let res = within(T, ch.confirm_select(ConfirmSelectOptions::default())).await;
        expect_close_text(res, 406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode");
        close_conn(&conn).await;
    }

    async fn tx_select_on_confirm_channel_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let res = within(T, ch.tx_select()).await;
        expect_close_text(res, 406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode");
        close_conn(&conn).await;
    }
}
