//! The consistent-hash exchange (`x-consistent-hash`, RabbitMQ's plugin): binding keys are
//! weights, each message goes to one bound queue chosen by the hash of its routing key (or of
//! the `hash-header` header), and the same keys go to the same queues after a restart.

use crate::common::process::{BrokerProcess, DataDir};
use crate::common::*;
use crate::extensions::{args, string};

const CHX: &str = "x-consistent-hash";

async fn declare_chx(ch: &Channel, name: &str, durable: bool, arguments: FieldTable) {
    let options = ExchangeDeclareOptions { durable, ..Default::default() };
    within(T, ch.exchange_declare(name.into(), ExchangeKind::Custom(CHX.into()), options, arguments))
        .await
        .expect("exchange.declare x-consistent-hash");
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, weight: &str) -> lapin::Result<()> {
    within(
        T,
        ch.queue_bind(queue.into(), exchange.into(), weight.into(), QueueBindOptions::default(), FieldTable::default()),
    )
    .await
}

/// Publishes `keys` (confirmed) and returns how many messages each of `queues` holds.
async fn spread(ch: &Channel, exchange: &str, keys: &[String], queues: &[String]) -> Vec<u32> {
    for key in keys {
        let confirm = within(
            T,
            ch.basic_publish(
                exchange.into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                b"m",
                BasicProperties::default(),
            ),
        )
        .await
        .expect("publish");
        within(T, confirm).await.expect("confirmed");
    }
    let mut counts = Vec::new();
    for queue in queues {
        counts.push(message_count(ch, queue).await);
    }
    counts
}

shard_tests! {
    /// Every message goes to exactly one queue; the queues' weights (1 and 3) split the keys
    /// about 1:3; a binding key that is not a positive integer is refused as the plugin does.
    async fn chx_routes_each_message_to_one_queue_by_weight(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let exchange = unique("chx");
        declare_chx(&ch, &exchange, false, FieldTable::default()).await;
        let queues = vec![unique("chx-light"), unique("chx-heavy")];
        for queue in &queues {
            declare_queue(&ch, queue).await;
        }
        bind(&ch, &queues[0], &exchange, "1").await.expect("bind weight 1");
        bind(&ch, &queues[1], &exchange, "3").await.expect("bind weight 3");
        let keys: Vec<String> = (0..2000).map(|n| format!("order-{n}")).collect();
        let counts = spread(&ch, &exchange, &keys, &queues).await;
        assert_eq!(counts.iter().sum::<u32>(), 2000, "each message in exactly one queue: {counts:?}");
        assert!((1300..1700).contains(&counts[1]), "weight 3 of 4 takes about 1500 of 2000: {counts:?}");
        let refused = bind(&ch, &queues[0], &exchange, "heavy").await;
        expect_close_text(refused, 406, "PRECONDITION_FAILED - The binding key must be an integer: <<\"heavy\">>");
        let ch = open_channel(&conn).await;
        for queue in &queues {
            cleanup_queue(&ch, queue).await;
        }
        cleanup_exchange(&ch, &exchange).await;
        close_conn(&conn).await;
    }

    /// With `hash-header`, the routing key does not matter: messages with the same header value
    /// go to the same queue.
    async fn chx_hash_header_routes_on_the_header(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let exchange = unique("chx-header");
        declare_chx(&ch, &exchange, false, args(&[("hash-header", string("user"))])).await;
        let queues: Vec<String> = (0..4).map(|n| unique(&format!("chx-header-{n}"))).collect();
        for queue in &queues {
            declare_queue(&ch, queue).await;
            bind(&ch, queue, &exchange, "1").await.expect("bind");
        }
        for n in 0..40 {
            let mut headers = FieldTable::default();
            headers.insert("user".into(), string("alice"));
            let properties = BasicProperties::default().with_headers(headers);
            let routing_key = format!("key-{n}");
            let confirm = within(T, ch.basic_publish(exchange.as_str().into(), routing_key.as_str().into(), BasicPublishOptions::default(), b"m", properties))
                .await
                .expect("publish");
            within(T, confirm).await.expect("confirmed");
        }
        let mut counts = Vec::new();
        for queue in &queues {
            counts.push(message_count(&ch, queue).await);
        }
        counts.sort_unstable();
        assert_eq!(counts, vec![0, 0, 0, 40], "one header value, one queue");
        for queue in &queues {
            cleanup_queue(&ch, queue).await;
        }
        cleanup_exchange(&ch, &exchange).await;
        close_conn(&conn).await;
    }
}

restart_tests! {
    /// The buckets are rebuilt in the same order at start: after a restart each key goes to
    /// the queue it went to before, also after an unbind and a rebind changed the order.
    async fn chx_routes_the_same_keys_to_the_same_queues_after_a_restart(shards: usize) {
        let data = DataDir::new();
        let exchange = unique("chx-restart");
        let queues: Vec<String> = (0..3).map(|n| unique(&format!("chx-restart-{n}"))).collect();
        let keys: Vec<String> = (0..300).map(|n| format!("customer-{n}")).collect();
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let before = {
            let (conn, ch) = connect_channel(broker.uri()).await;
            within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
            declare_chx(&ch, &exchange, true, FieldTable::default()).await;
            for (queue, weight) in queues.iter().zip(["2", "1", "3"]) {
                declare_queue_with(&ch, queue, QueueDeclareOptions { durable: true, ..Default::default() }).await;
                bind(&ch, queue, &exchange, weight).await.expect("bind");
            }
            within(T, ch.queue_unbind(queues[0].as_str().into(), exchange.as_str().into(), "2".into(), FieldTable::default()))
                .await
                .expect("unbind");
            bind(&ch, &queues[0], &exchange, "2").await.expect("bind again, now last");
            let counts = spread(&ch, &exchange, &keys, &queues).await;
            for queue in &queues {
                within(T, ch.queue_purge(queue.as_str().into(), QueuePurgeOptions::default())).await.expect("purge");
            }
            close_conn(&conn).await;
            counts
        };
        broker.stop_cleanly();

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = connect_channel(broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let after = spread(&ch, &exchange, &keys, &queues).await;
        assert_eq!(after, before, "the same keys reach the same queues");
        assert!(before.iter().all(|count| *count > 0), "every queue takes some keys: {before:?}");
        for queue in &queues {
            cleanup_queue(&ch, queue).await;
        }
        cleanup_exchange(&ch, &exchange).await;
        close_conn(&conn).await;
        broker.stop_cleanly();
    }
}
