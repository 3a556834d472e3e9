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

    /// RabbitMQ: a priority queue hands out the high-priority message first; once it is acked,
    /// a restart brings back exactly the others, in order (an acked record in the middle of a
    /// stored backlog must not come back, nor hide the message after it).
    async fn a_message_acked_out_of_order_stays_gone_after_a_restart(shards: usize) {
        let data = DataDir::new();
        let queue = unique("q-prio-acked");
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        declare_priority_queue(&ch, &queue).await;
        for (body, priority) in [("low-1", 0), ("high", 5), ("low-2", 0)] {
            publish_confirmed(&ch, "", &queue, &[body.to_string()], persistent().with_priority(priority)).await;
        }
        let first = get(&ch, &queue, false).await.expect("the high-priority message");
        assert_eq!(text(&first.delivery.data), "high");
        within(T, first.delivery.acker.ack(BasicAckOptions::default())).await.expect("basic.ack");
        close_conn(&conn).await;
        broker.stop_cleanly();

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = connect_channel(broker.uri()).await;
        let bodies: Vec<String> = get_all(&ch, &queue).await.into_iter().map(|got| got.body).collect();
        assert_eq!(bodies, vec!["low-1".to_string(), "low-2".to_string()]);
        close_conn(&conn).await;
        broker.stop_cleanly();
    }

    /// RabbitMQ: every message of a deep durable queue is delivered once, in order, even when
    /// messages with a priority or an expiration (kept apart from the stored backlog) sit
    /// between the stored ones.
    async fn a_deep_stored_backlog_delivers_each_message_once(shards: usize) {
        let data = DataDir::new();
        let queue = unique("q-deep-prio");
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        declare_priority_queue(&ch, &queue).await;
        // Deeper than the in-memory copies the broker keeps, so the later ones are read back
        // from the store.
        let backlog = numbered_bodies("deep", 1_500);
        publish_confirmed(&ch, "", &queue, &backlog, persistent()).await;
        publish_confirmed(&ch, "", &queue, &["high".to_string()], persistent().with_priority(5)).await;
        publish_confirmed(&ch, "", &queue, &["middle".to_string()], persistent()).await;
        let later = persistent().with_expiration("3600000".into());
        publish_confirmed(&ch, "", &queue, &["expires-later".to_string()], later).await;
        publish_confirmed(&ch, "", &queue, &["tail".to_string()], persistent()).await;
        let mut expected = vec!["high".to_string()];
        expected.extend(backlog);
        expected.push("middle".to_string());
        expected.push("expires-later".to_string());
        expected.push("tail".to_string());
        let bodies: Vec<String> = get_all(&ch, &queue).await.into_iter().map(|got| got.body).collect();
        let first_difference = bodies.iter().zip(&expected).position(|(got, want)| got != want);
        assert!(
            first_difference.is_none() && bodies.len() == expected.len(),
            "got {} messages for {}; first difference at {first_difference:?}: got {:?}, expected {:?}",
            bodies.len(),
            expected.len(),
            first_difference.and_then(|index| bodies.get(index)),
            first_difference.and_then(|index| expected.get(index)),
        );
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

/// Declares a durable priority queue (`x-max-priority` 9).
async fn declare_priority_queue(ch: &Channel, name: &str) {
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-priority".into(), AMQPValue::LongInt(9));
    declare_durable_with(ch, name, arguments).await;
}

/// Declares a durable queue with `arguments`.
async fn declare_durable_with(ch: &Channel, name: &str, arguments: FieldTable) {
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    within(T, ch.queue_declare(name.into(), durable, arguments)).await.expect("queue.declare");
}

restart_tests! {
    /// RabbitMQ keeps a message's expiry across a restart: messages of a durable queue with
    /// x-message-ttl still expire (here dead-lettered), and a per-message expiration still
    /// applies to its message only.
    async fn message_deadlines_survive_a_restart(shards: usize) {
        let data = DataDir::new();
        let (timed, dead, own) = (unique("q-ttl"), unique("q-ttl-dead"), unique("q-expiration"));
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        declare_durable_queue(&ch, &dead).await;
        let mut arguments = FieldTable::default();
        arguments.insert("x-message-ttl".into(), AMQPValue::LongInt(3000));
        arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(dead.as_str().into()));
        declare_durable_with(&ch, &timed, arguments).await;
        declare_durable_queue(&ch, &own).await;
        publish_confirmed(&ch, "", &timed, &numbered_bodies("ttl", 3), persistent()).await;
        let expiring = persistent().with_expiration("3000".into());
        publish_confirmed(&ch, "", &own, &["expires".to_string()], expiring).await;
        publish_confirmed(&ch, "", &own, &["stays".to_string()], persistent()).await;
        close_conn(&conn).await;
        broker.stop_cleanly();

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = connect_channel(broker.uri()).await;
        wait_message_count(&ch, &timed, 0, 15).await;
        wait_message_count(&ch, &dead, 3, 15).await;
        wait_message_count(&ch, &own, 1, 15).await;
        assert_eq!(drain_bodies(broker.uri(), &own).await, vec!["stays".to_string()]);
        close_conn(&conn).await;
        broker.stop_cleanly();
    }

    /// RabbitMQ keeps a message's priority across a restart: the higher one still comes first.
    async fn priorities_survive_a_restart(shards: usize) {
        let data = DataDir::new();
        let queue = unique("q-prio-restart");
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        declare_priority_queue(&ch, &queue).await;
        for (body, priority) in [("low-1", 0), ("high", 7), ("low-2", 0), ("middle", 3)] {
            publish_confirmed(&ch, "", &queue, &[body.to_string()], persistent().with_priority(priority)).await;
        }
        close_conn(&conn).await;
        broker.kill();

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let bodies = drain_bodies(broker.uri(), &queue).await;
        assert_eq!(bodies, ["high", "middle", "low-1", "low-2"].map(String::from).to_vec());
        broker.stop_cleanly();
    }

    /// RabbitMQ counts the recovered messages against x-max-length-bytes: a full queue is still
    /// full after a restart (reject-publish nacks the next publish).
    async fn a_full_queue_is_still_full_after_a_restart(shards: usize) {
        let data = DataDir::new();
        let queue = unique("q-bytes-restart");
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        let mut arguments = FieldTable::default();
        arguments.insert("x-max-length-bytes".into(), AMQPValue::LongInt(100));
        arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
        declare_durable_with(&ch, &queue, arguments).await;
        // 90 bytes of bodies: below the limit; 40 more would pass it.
        let bodies: Vec<String> = (0..3).map(|index| format!("{index:-<30}")).collect();
        publish_confirmed(&ch, "", &queue, &bodies, persistent()).await;
        close_conn(&conn).await;
        broker.stop_cleanly();

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        let publish = ch.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"one more, forty bytes of body to be sure",
            persistent(),
        );
        let confirm = within(T, publish).await.expect("basic.publish");
        let confirmation = within(T, confirm).await.expect("the confirm");
        assert!(confirmation.is_nack(), "a publish to a full queue after a restart: {confirmation:?}");
        assert_eq!(message_count(&ch, &queue).await, 3);
        close_conn(&conn).await;
        broker.stop_cleanly();
    }
}
