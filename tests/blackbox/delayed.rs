//! Delayed messages (`x-delayed-message` exchanges, as RabbitMQ's plugin): a message with
//! `x-delay` arrives when due and not before, in due order; without a positive integer delay it
//! routes at once; the exchange routes as its `x-delayed-type`; held persistent messages of a
//! durable exchange survive a restart and a SIGKILL, arriving once; a bad type is refused.

use std::time::{Duration, Instant};

use crate::common::process::{BrokerProcess, DataDir};
use crate::common::*;
use crate::storage::{confirm_channel, get_all, persistent, publish_one_confirmed, Got};

/// Tolerance on "not before due": the broker's and the test's clocks start the wait at
/// slightly different moments.
const EARLY_TOLERANCE_MS: u128 = 15;

fn delayed_arguments(kind: &str) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-delayed-type".into(), AMQPValue::LongString(kind.into()));
    arguments
}

fn delayed_kind() -> ExchangeKind {
    ExchangeKind::Custom("x-delayed-message".into())
}

fn delay(properties: BasicProperties, value: AMQPValue) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("x-delay".into(), value);
    properties.with_headers(headers)
}

async fn declare_delayed(ch: &Channel, name: &str, kind: &str, durable: bool) {
    let options = ExchangeDeclareOptions { durable, ..ExchangeDeclareOptions::default() };
    within(T, ch.exchange_declare(name.into(), delayed_kind(), options, delayed_arguments(kind)))
        .await
        .unwrap_or_else(|error| panic!("exchange.declare {name}: {error}"));
}

async fn bound_queue(ch: &Channel, exchange: &str, routing_key: &str, durable: bool) -> String {
    let q = unique("q-delayed");
    declare_queue_with(ch, &q, QueueDeclareOptions { durable, ..QueueDeclareOptions::default() }).await;
    within(
        T,
        ch.queue_bind(
            q.as_str().into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue.bind");
    q
}

shard_tests! {
    async fn messages_arrive_in_due_order_and_not_before_due(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let exchange = unique("x-delayed");
        declare_delayed(&ch, &exchange, "direct", false).await;
        let q = bound_queue(&ch, &exchange, "k", false).await;
        let mut inbox = consume(&ch, &q, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        let started = Instant::now();
        let delays: [u64; 4] = [900, 300, 600, 100];
        for delay_ms in delays {
            let properties = delay(BasicProperties::default(), AMQPValue::LongLongInt(delay_ms as i64));
            publish_one_confirmed(&ch, &exchange, "k", &delay_ms.to_string(), properties).await;
        }
        let mut arrived = Vec::new();
        for _ in delays {
            let delivery = inbox.expect(T).await;
            let body = text(&delivery.data);
            let due_ms: u128 = body.parse().expect("a delay");
            let elapsed_ms = started.elapsed().as_millis();
            assert!(elapsed_ms + EARLY_TOLERANCE_MS >= due_ms, "{body} arrived after {elapsed_ms} ms");
            assert!(elapsed_ms < due_ms + 1500, "{body} arrived late, after {elapsed_ms} ms");
            arrived.push(body);
        }
        assert_eq!(arrived, ["100", "300", "600", "900"]);
        inbox.expect_nothing(200).await;
        cleanup_queue(&ch, &q).await;
        cleanup_exchange(&ch, &exchange).await;
        close_conn(&conn).await;
    }

    async fn without_a_positive_integer_delay_a_message_routes_at_once(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let exchange = unique("x-delayed-now");
        declare_delayed(&ch, &exchange, "fanout", false).await;
        let q = bound_queue(&ch, &exchange, "", false).await;
        let cases = [
            ("absent", BasicProperties::default()),
            ("zero", delay(BasicProperties::default(), AMQPValue::LongLongInt(0))),
            ("negative", delay(BasicProperties::default(), AMQPValue::LongInt(-5000))),
            ("text", delay(BasicProperties::default(), AMQPValue::LongString("5000".into()))),
        ];
        let started = Instant::now();
        for (body, properties) in cases {
            within(T, ch.basic_publish(exchange.as_str().into(), "".into(), BasicPublishOptions::default(), body.as_bytes(), properties))
                .await
                .expect("basic.publish");
        }
        wait_message_count(&ch, &q, 4, 2).await;
        assert!(started.elapsed() < Duration::from_millis(1500), "routed at once");
        let bodies: Vec<String> = get_all(&ch, &q).await.into_iter().map(|got| got.body).collect();
        assert_eq!(bodies, ["absent", "zero", "negative", "text"]);
        cleanup_queue(&ch, &q).await;
        cleanup_exchange(&ch, &exchange).await;
        close_conn(&conn).await;
    }

    async fn a_topic_delayed_exchange_routes_as_topic_when_due(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let exchange = unique("x-delayed-topic");
        declare_delayed(&ch, &exchange, "topic", false).await;
        let q = bound_queue(&ch, &exchange, "a.*", false).await;
        for (key, body) in [("a.b", "matched"), ("b.c", "unmatched"), ("a.b.c", "too deep")] {
            publish_one_confirmed(&ch, &exchange, key, body, delay(BasicProperties::default(), AMQPValue::LongInt(200))).await;
        }
        assert_eq!(message_count(&ch, &q).await, 0, "held, not routed yet");
        wait_message_count(&ch, &q, 1, 5).await;
        assert_count_stays(&ch, &q, 1, 300).await;
        let bodies: Vec<String> = get_all(&ch, &q).await.into_iter().map(|got| got.body).collect();
        assert_eq!(bodies, ["matched"]);
        cleanup_queue(&ch, &q).await;
        cleanup_exchange(&ch, &exchange).await;
        close_conn(&conn).await;
    }

    async fn a_bad_x_delayed_type_is_refused_as_the_plugin_refuses_it(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let ch = open_channel(&conn).await;
        let result = within(T, ch.exchange_declare(unique("x-bad").as_str().into(), delayed_kind(), ExchangeDeclareOptions::default(), FieldTable::default())).await;
        expect_close_text(result, 406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type");
        let ch = open_channel(&conn).await;
        let result = within(T, ch.exchange_declare(unique("x-bad").as_str().into(), delayed_kind(), ExchangeDeclareOptions::default(), delayed_arguments("x-delayed-message"))).await;
        expect_close_text(result, 406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'");
        let ch = open_channel(&conn).await;
        let result = within(T, ch.exchange_declare(unique("x-bad").as_str().into(), delayed_kind(), ExchangeDeclareOptions::default(), delayed_arguments("nope"))).await;
        expect_close_text(result, 503, "COMMAND_INVALID - unknown exchange type 'nope'");
    }
}

/// Publishes persistent messages due in 4–5 s to a durable delayed exchange (owned by the last
/// shard), stops the broker as `stop` does, and checks after a restart with `shards_after`
/// shards that each arrives once, not before due, and that a further restart routes none again.
async fn held_messages_survive(shards: usize, shards_after: usize, stop: fn(BrokerProcess)) {
    let data = DataDir::new();
    let broker = BrokerProcess::start(data.path(), shards, &[]);
    let (conn, ch) = confirm_channel(broker.uri()).await;
    let exchange = queue_name_on_shard("x-delayed-durable", shards - 1, shards);
    declare_delayed(&ch, &exchange, "direct", true).await;
    let q = bound_queue(&ch, &exchange, "k", true).await;
    let started = Instant::now();
    let bodies: Vec<String> = (0..20).map(|index| format!("held-{index:02}")).collect();
    for (index, body) in bodies.iter().enumerate() {
        let properties = delay(persistent(), AMQPValue::LongLongInt(4000 + 50 * index as i64));
        publish_one_confirmed(&ch, &exchange, "k", body, properties).await;
    }
    publish_one_confirmed(&ch, &exchange, "k", "at once", persistent()).await;
    close_conn(&conn).await;
    stop(broker);

    let broker = BrokerProcess::start(data.path(), shards_after, &[]);
    let (conn, ch) = connect_channel(broker.uri()).await;
    assert_eq!(get_all(&ch, &q).await, [Got { body: "at once".into(), redelivered: false }]);
    assert!(started.elapsed() < Duration::from_millis(4000), "the restart took too long for this test's delays");
    assert_eq!(message_count(&ch, &q).await, 0, "nothing due yet");
    wait_message_count(&ch, &q, 20, 10).await;
    assert!(started.elapsed().as_millis() + EARLY_TOLERANCE_MS >= 4000 + 50 * 19);
    assert_count_stays(&ch, &q, 20, 500).await;
    let got: Vec<String> = get_all(&ch, &q).await.into_iter().map(|got| got.body).collect();
    assert_eq!(got, bodies, "each held message once, in due order");
    close_conn(&conn).await;
    broker.stop_cleanly();

    // Handed over and stored in the queue: a second restart routes none of them again.
    let broker = BrokerProcess::start(data.path(), shards_after, &[]);
    let (conn, ch) = connect_channel(broker.uri()).await;
    assert_count_stays(&ch, &q, 0, 2500).await;
    close_conn(&conn).await;
    broker.stop_cleanly();
}

restart_tests! {
    async fn held_persistent_messages_survive_a_restart_and_arrive_once(shards: usize) {
        held_messages_survive(shards, shards, |broker| {
            broker.stop_cleanly();
        })
        .await;
    }

    async fn confirmed_held_messages_survive_sigkill_and_arrive_once(shards: usize) {
        held_messages_survive(shards, shards, |broker| {
            broker.kill();
        })
        .await;
    }
}

/// Held messages of a shard that a restart with fewer shards no longer runs are routed by a
/// remaining shard, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_messages_of_a_shard_gone_after_a_restart_arrive_once() {
    if crate::common::process::external_broker() {
        eprintln!("external broker: a restart test needs a broker of its own, skipped");
        return;
    }
    let stop: fn(BrokerProcess) = |broker| {
        broker.stop_cleanly();
    };
    within(TEST_TIMEOUT, held_messages_survive(3, 1, stop)).await;
}
