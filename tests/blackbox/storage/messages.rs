//! Messages across restarts: persistent ones in durable queues come back in order, transient
//! ones and non-durable queues do not; delivered-but-unacked ones come back redelivered; acked
//! ones stay gone; a fanout stores the message for every durable queue it reaches.

use super::*;
use crate::common::process::{BrokerProcess, DataDir};

/// How the broker goes down between two runs.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Terminate,
    Kill,
}

fn stop(broker: BrokerProcess, how: Stop) {
    match how {
        Stop::Terminate => {
            broker.stop_cleanly();
        }
        Stop::Kill => {
            broker.kill();
        }
    }
}

restart_tests! {
    async fn persistent_messages_survive_in_order_and_transient_ones_do_not(shards: usize) {
        let data = DataDir::new();
        let durable = unique("q-durable");
        let non_durable = unique("q-non-durable");
        for how in [Stop::Terminate, Stop::Kill] {
            let broker = BrokerProcess::start(data.path(), shards, &[]);
            let (conn, ch) = confirm_channel(broker.uri()).await;
            declare_durable_queue(&ch, &durable).await;
            declare_queue(&ch, &non_durable).await;
            let mut kept = Vec::new();
            for index in 0..20 {
                let body = format!("{how:?}-{index}");
                let properties = if index % 2 == 0 { persistent() } else { transient() };
                publish_confirmed(&ch, "", &durable, std::slice::from_ref(&body), properties).await;
                publish_confirmed(&ch, "", &non_durable, std::slice::from_ref(&body), persistent()).await;
                if index % 2 == 0 {
                    kept.push(Got { body, redelivered: false });
                }
            }
            close_conn(&conn).await;
            stop(broker, how);

            let broker = BrokerProcess::start(data.path(), shards, &[]);
            let (conn, ch) = connect_channel(broker.uri()).await;
            assert_eq!(get_all(&ch, &durable).await, kept, "after {how:?}: the persistent messages, in order");
            assert_queue_missing(&conn, &non_durable).await;
            close_conn(&conn).await;
            broker.stop_cleanly();
        }
    }

    async fn delivered_unacked_messages_come_back_redelivered_after_sigkill(shards: usize) {
        let data = DataDir::new();
        let queue = unique("q-unacked");
        let bodies = numbered_bodies("unacked", 10);
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        declare_durable_queue(&ch, &queue).await;
        publish_confirmed(&ch, "", &queue, &bodies, persistent()).await;
        within(T, ch.basic_qos(6, BasicQosOptions::default())).await.expect("basic.qos");
        let mut inbox = consume(&ch, &queue, BasicConsumeOptions::default()).await;
        let delivered = inbox.take(6, T).await;
        for delivery in &delivered[..2] {
            within(T, delivery.acker.ack(BasicAckOptions::default())).await.expect("basic.ack");
        }
        // The two acks free two places of the prefetch window: two more arrive, and two
        // messages are never delivered.
        inbox.take(2, T).await;
        assert_eq!(message_count(&ch, &queue).await, 2, "2 messages were never delivered");
        broker.kill();
        drop(conn);

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = connect_channel(broker.uri()).await;
        let mut got = get_all(&ch, &queue).await;
        // Acks are written without a sync: an acked message may come back once after a
        // crash, flagged redelivered (at-least-once), but never more than once.
        for acked in &bodies[..2] {
            let copies: Vec<&Got> = got.iter().filter(|got| &got.body == acked).collect();
            let at_most_once = copies.len() <= 1 && copies.iter().all(|copy| copy.redelivered);
            assert!(at_most_once, "acked {acked} came back as {copies:?}");
        }
        got.retain(|got| !bodies[..2].contains(&got.body));
        let expected = [flagged(&bodies[2..8], true), flagged(&bodies[8..], false)].concat();
        assert_eq!(got, expected, "unacked ones redelivered, then the never delivered ones");
        close_conn(&conn).await;
        broker.stop_cleanly();
    }

    async fn acked_messages_stay_gone_after_a_clean_restart(shards: usize) {
        let data = DataDir::new();
        let queue = unique("q-acked");
        let bodies = numbered_bodies("acked", 5);
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        declare_durable_queue(&ch, &queue).await;
        publish_confirmed(&ch, "", &queue, &bodies, persistent()).await;
        for index in 0..3 {
            let message = get(&ch, &queue, false).await.expect("a stored message");
            if index != 1 {
                within(T, message.delivery.acker.ack(BasicAckOptions::default())).await.expect("basic.ack");
            }
        }
        close_conn(&conn).await;
        broker.stop_cleanly();

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = connect_channel(broker.uri()).await;
        let expected = vec![
            Got { body: bodies[1].clone(), redelivered: true },
            Got { body: bodies[3].clone(), redelivered: false },
            Got { body: bodies[4].clone(), redelivered: false },
        ];
        assert_eq!(get_all(&ch, &queue).await, expected, "the acked ones are gone, the rest in order");
        close_conn(&conn).await;
        broker.stop_cleanly();
    }

    async fn fanout_stores_the_message_for_every_durable_queue_across_a_crash(shards: usize) {
        let data = DataDir::new();
        let exchange = unique("x-fanout");
        let queues: Vec<String> = (0..3).map(|shard| queue_name_on_shard("q-fanout", shard, shards)).collect();
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        within(T, ch.exchange_declare(exchange.as_str().into(), ExchangeKind::Fanout, durable, FieldTable::default()))
            .await
            .expect("exchange.declare");
        for queue in &queues {
            declare_durable_queue(&ch, queue).await;
            bind(&ch, queue, &exchange, "").await;
        }
        // One confirm at a time, and the crash right after the last: a confirm for a fanout
        // must wait for the sync of every shard the message went to.
        let bodies = numbered_bodies("fanout", 30);
        for body in &bodies {
            publish_confirmed(&ch, &exchange, "", std::slice::from_ref(body), persistent()).await;
        }
        broker.kill();
        drop(conn);

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        for queue in &queues {
            assert_eq!(&drain_bodies(broker.uri(), queue).await, &bodies, "{queue} holds every confirmed message");
        }
        broker.stop_cleanly();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_a_restart_with_another_shard_count() {
    if crate::common::process::external_broker() {
        return;
    }
    within(TEST_TIMEOUT, async {
        let data = DataDir::new();
        let queues: Vec<String> = (0..3).map(|shard| queue_name_on_shard("q-reshard", shard, 3)).collect();
        let bodies = numbered_bodies("reshard", 20);
        let broker = BrokerProcess::start(data.path(), 3, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        for queue in &queues {
            declare_durable_queue(&ch, queue).await;
            publish_confirmed(&ch, "", queue, &bodies, persistent()).await;
        }
        close_conn(&conn).await;
        broker.kill();

        // Queues move to other shards; their messages stay in the old shards' files.
        let broker = BrokerProcess::start(data.path(), 2, &[]);
        let (conn, ch) = connect_channel(broker.uri()).await;
        for queue in &queues {
            let mut got = Vec::new();
            for _ in 0..10 {
                let message = get(&ch, queue, true).await.unwrap_or_else(|| panic!("{queue} lost messages"));
                got.push(text(&message.delivery.data));
            }
            assert_eq!(got, bodies[..10], "{queue}: the first half, in order, after moving from 3 shards to 2");
        }
        close_conn(&conn).await;
        broker.stop_cleanly();

        let broker = BrokerProcess::start(data.path(), 1, &[]);
        for queue in &queues {
            assert_eq!(
                drain_bodies(broker.uri(), queue).await,
                bodies[10..],
                "{queue}: the rest, and the taken half stays gone"
            );
        }
        broker.stop_cleanly();
    })
    .await;
}
