//! RabbitMQ's queue extensions: argument validation, message TTL and `expiration`, `x-expires`,
//! length limits with their overflow modes, and dead-lettering with `x-death` headers.

use crate::common::*;
use std::time::{Duration, Instant};

pub(crate) fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in entries {
        table.insert((*name).into(), value.clone());
    }
    table
}

pub(crate) fn long(number: i64) -> AMQPValue {
    AMQPValue::LongLongInt(number)
}

pub(crate) fn string(text: &str) -> AMQPValue {
    AMQPValue::LongString(text.into())
}

pub(crate) async fn declare_with(ch: &Channel, name: &str, arguments: FieldTable) -> lapin::Result<lapin::Queue> {
    within(T, ch.queue_declare(name.into(), QueueDeclareOptions::default(), arguments)).await
}

async fn publish_with(ch: &Channel, routing_key: &str, body: &[u8], properties: BasicProperties) {
    within(T, ch.basic_publish("".into(), routing_key.into(), BasicPublishOptions::default(), body, properties))
        .await
        .unwrap_or_else(|e| panic!("basic.publish to {routing_key}: {e}"));
}

/// A text header of a table, whether sent as long or short string.
pub(crate) fn text_of(table: &FieldTable, key: &str) -> Option<String> {
    match table.inner().get(key)? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_string()),
        _ => None,
    }
}

/// The x-death entries of a delivery, newest first.
pub(crate) fn x_death(delivery: &Delivery) -> Vec<FieldTable> {
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(array)) => array
            .as_slice()
            .iter()
            .filter_map(|value| match value {
                AMQPValue::FieldTable(table) => Some(table.clone()),
                _ => None,
            })
            .collect(),
        other => panic!("no x-death array in {headers:?}: {other:?}"),
    }
}

pub(crate) fn count_of(entry: &FieldTable) -> i64 {
    match entry.inner().get("count") {
        Some(AMQPValue::LongLongInt(count)) => *count,
        other => panic!("x-death count: {other:?}"),
    }
}

/// Declares `source` with `arguments` plus a dead-letter exchange "" routed to a new queue
/// (by `x-dead-letter-routing-key`); returns the dead-letter queue's name.
pub(crate) async fn with_dead_letter_queue(ch: &Channel, source: &str, mut arguments: FieldTable) -> String {
    let dead = unique("q-dead");
    declare_queue(ch, &dead).await;
    arguments.insert("x-dead-letter-exchange".into(), string(""));
    arguments.insert("x-dead-letter-routing-key".into(), string(&dead));
    declare_with(ch, source, arguments).await.expect("declare source queue");
    dead
}

async fn expect_declare_406(ch_conn: &Connection, name: &str, arguments: FieldTable, text: &str) {
    let ch = open_channel(ch_conn).await;
    expect_close_text(declare_with(&ch, name, arguments).await, 406, text);
}

shard_tests! {
    /// RabbitMQ: x-message-ttl drops messages that stay in the queue longer than the TTL;
    /// they are never delivered and the count falls to 0.
    async fn queue_message_ttl_expires_messages(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-ttl");
        declare_with(&ch, &q, args(&[("x-message-ttl", long(200))])).await.expect("declare");
        for i in 0..3 {
            publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
        }
        wait_message_count(&ch, &q, 0, 5).await;
        assert!(get(&ch, &q, true).await.is_none(), "an expired message was delivered");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ: a message's `expiration` property expires that message only.
    async fn per_message_expiration_expires_that_message(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-expiration");
        declare_queue(&ch, &q).await;
        publish_with(&ch, &q, b"short", BasicProperties::default().with_expiration("200".into())).await;
        publish_with(&ch, &q, b"long", BasicProperties::default()).await;
        wait_message_count(&ch, &q, 1, 5).await;
        let kept = get(&ch, &q, true).await.expect("the message without expiration stays");
        assert_eq!(text(&kept.delivery.data), "long");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ closes the channel with 406 for an expiration that is not a number.
    async fn invalid_expiration_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let mut watch = watch_channel(&ch).await;
        publish_with(&ch, "nowhere", b"x", BasicProperties::default().with_expiration("abc".into())).await;
        let reason = watch.expect_error(406, 5).await;
        assert_eq!(reason, "PRECONDITION_FAILED - invalid expiration 'abc': no_integer");
        close_conn(&conn).await;
    }

    /// RabbitMQ: a message rejected without requeue goes to the dead-letter exchange with an
    /// x-death entry (reason rejected, count 1, queue, exchange, routing-keys) and the
    /// x-first-death-* headers.
    async fn rejected_message_is_dead_lettered_with_x_death(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-reject");
        let dead = with_dead_letter_queue(&ch, &q, FieldTable::default()).await;
        publish(&ch, "", &q, b"bad").await;
        wait_message_count(&ch, &q, 1, 5).await;
        let got = get(&ch, &q, false).await.expect("message");
        within(T, ch.basic_reject(got.delivery.delivery_tag, BasicRejectOptions { requeue: false })).await.expect("reject");
        let mut inbox = consume(&ch, &dead, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        let delivery = inbox.expect(5).await;
        assert_eq!(text(&delivery.data), "bad");
        assert_eq!(delivery.routing_key.as_str(), dead, "the dead-letter routing key replaces the original");
        let deaths = x_death(&delivery);
        assert_eq!(deaths.len(), 1);
        assert_eq!(text_of(&deaths[0], "reason").as_deref(), Some("rejected"));
        assert_eq!(text_of(&deaths[0], "queue").as_deref(), Some(q.as_str()));
        assert_eq!(text_of(&deaths[0], "exchange").as_deref(), Some(""));
        assert_eq!(count_of(&deaths[0]), 1);
        match deaths[0].inner().get("routing-keys") {
            Some(AMQPValue::FieldArray(keys)) => assert_eq!(keys.as_slice(), &[string(&q)]),
            other => panic!("routing-keys: {other:?}"),
        }
        assert!(matches!(deaths[0].inner().get("time"), Some(AMQPValue::Timestamp(_))));
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        assert_eq!(text_of(&headers, "x-first-death-reason").as_deref(), Some("rejected"));
        assert_eq!(text_of(&headers, "x-first-death-queue").as_deref(), Some(q.as_str()));
        cleanup_queue(&ch, &q).await;
        cleanup_queue(&ch, &dead).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ: an expired message is dead-lettered with reason expired; a per-message
    /// expiration is removed and kept as original-expiration.
    async fn expired_message_is_dead_lettered(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-expire-dl");
        let dead = with_dead_letter_queue(&ch, &q, args(&[("x-message-ttl", long(10_000))])).await;
        publish_with(&ch, &q, b"old", BasicProperties::default().with_expiration("200".into())).await;
        let mut inbox = consume(&ch, &dead, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        let delivery = inbox.expect(5).await;
        assert_eq!(text(&delivery.data), "old");
        assert!(delivery.properties.expiration().is_none(), "expiration must be removed");
        let deaths = x_death(&delivery);
        assert_eq!(text_of(&deaths[0], "reason").as_deref(), Some("expired"));
        assert_eq!(text_of(&deaths[0], "original-expiration").as_deref(), Some("200"));
        wait_message_count(&ch, &q, 0, 5).await;
        cleanup_queue(&ch, &q).await;
        cleanup_queue(&ch, &dead).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ: x-max-length with the default overflow (drop-head) drops the oldest message,
    /// dead-lettered with reason maxlen.
    async fn max_length_drops_head_to_dead_letter_queue(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-maxlen");
        let dead = with_dead_letter_queue(&ch, &q, args(&[("x-max-length", long(2))])).await;
        for i in 0..3 {
            publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
        }
        wait_message_count(&ch, &q, 2, 5).await;
        let head = get(&ch, &q, true).await.expect("head");
        assert_eq!(text(&head.delivery.data), "m1", "the oldest message was dropped");
        let mut inbox = consume(&ch, &dead, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        let delivery = inbox.expect(5).await;
        assert_eq!(text(&delivery.data), "m0");
        assert_eq!(text_of(&x_death(&delivery)[0], "reason").as_deref(), Some("maxlen"));
        cleanup_queue(&ch, &q).await;
        cleanup_queue(&ch, &dead).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ: x-overflow reject-publish refuses a publish to a full queue; a publisher in
    /// confirm mode gets basic.nack, and the queue keeps its old messages.
    async fn reject_publish_nacks_in_confirm_mode(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-reject-publish");
        declare_with(&ch, &q, args(&[("x-max-length", long(1)), ("x-overflow", string("reject-publish"))]))
            .await
            .expect("declare");
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let mut answers = Vec::new();
        for body in ["first", "second"] {
            let pending = within(T, ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), body.as_bytes(), BasicProperties::default()))
                .await
                .expect("publish");
            answers.push(within(T, pending).await.expect("confirm"));
        }
        assert!(answers[0].is_ack(), "first publish: {:?}", answers[0]);
        assert!(answers[1].is_nack(), "second publish: {:?}", answers[1]);
        assert_count_stays(&ch, &q, 1, 300).await;
        assert_eq!(text(&get(&ch, &q, true).await.expect("kept").delivery.data), "first");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ: a queue with x-expires is deleted once unused (no consumer, no get, no
    /// redeclare) for that long; one with a consumer stays.
    async fn x_expires_deletes_unused_queue(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let unused = unique("q-expires");
        let used = unique("q-expires-used");
        declare_with(&ch, &unused, args(&[("x-expires", long(300))])).await.expect("declare unused");
        declare_with(&ch, &used, args(&[("x-expires", long(300))])).await.expect("declare used");
        let _inbox = consume(&ch, &used, BasicConsumeOptions::default()).await;
        // A passive declare renews the lease (as in RabbitMQ), so probes are spaced well
        // beyond it.
        let deadline = Instant::now() + Duration::from_secs(6);
        loop {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let probe = open_channel(&conn).await;
            match within(T, probe.queue_declare(unused.as_str().into(), QueueDeclareOptions::default().passive(), FieldTable::default())).await {
                Err(e) => {
                    expect_channel_close(&e, 404);
                    break;
                }
                Ok(_) if Instant::now() > deadline => panic!("queue {unused} still exists after 6 s"),
                Ok(_) => {}
            }
        }
        assert_eq!(message_count(&ch, &used).await, 0, "the queue with a consumer must stay");
        cleanup_queue(&ch, &used).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ refuses invalid queue arguments with 406 and "invalid arg '<name>' for queue
    /// '<queue>' in vhost '/': <reason>".
    async fn invalid_queue_arguments_are_406(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let q = unique("q-bad-args");
        let text = |name: &str, reason: &str| format!("PRECONDITION_FAILED - invalid arg '{name}' for queue '{q}' in vhost '/': {reason}");
        expect_declare_406(&conn, &q, args(&[("x-message-ttl", long(-1))]), &text("x-message-ttl", "{value_negative,-1}")).await;
        expect_declare_406(&conn, &q, args(&[("x-max-length", string("ten"))]), &text("x-max-length", "\"expected integer, got longstr\"")).await;
        expect_declare_406(&conn, &q, args(&[("x-overflow", string("bogus"))]), &text("x-overflow", "invalid_overflow")).await;
        expect_declare_406(&conn, &q, args(&[("x-max-priority", long(300))]), &text("x-max-priority", "{max_value_exceeded,300}")).await;
        expect_declare_406(&conn, &q, args(&[("x-expires", long(0))]), &text("x-expires", "{value_zero,0}")).await;
        close_conn(&conn).await;
    }

    /// A stream must be durable (406 as RabbitMQ 3.10); an explicit classic queue type is
    /// accepted (quorum queues: `quorum.rs`, streams: `stream.rs`).
    async fn non_durable_stream_is_refused(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let q = unique("q-type");
        let reason = format!("PRECONDITION_FAILED - invalid property 'non-durable' for queue '{q}' in vhost '/'");
        expect_declare_406(&conn, &q, args(&[("x-queue-type", string("stream"))]), &reason).await;
        let ch = open_channel(&conn).await;
        declare_with(&ch, &q, args(&[("x-queue-type", string("classic"))])).await.expect("classic is accepted");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ drops a message that would be dead-lettered back into a queue it already
    /// expired in (a cycle without rejection) instead of looping forever.
    async fn dead_letter_cycle_is_dropped(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-cycle");
        let arguments = args(&[
            ("x-message-ttl", long(100)),
            ("x-dead-letter-exchange", string("")),
            ("x-dead-letter-routing-key", string(&q)),
        ]);
        declare_with(&ch, &q, arguments).await.expect("declare");
        publish(&ch, "", &q, b"loop").await;
        wait_message_count(&ch, &q, 0, 5).await;
        assert_count_stays(&ch, &q, 0, 800).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ priority queues: with x-max-priority, higher `priority` first, FIFO within a
    /// priority, and a priority above the maximum counts as the maximum.
    async fn max_priority_orders_by_priority(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-priority");
        declare_with(&ch, &q, args(&[("x-max-priority", long(5))])).await.expect("declare");
        for (body, priority) in [("a", None), ("b", Some(3)), ("c", Some(9)), ("d", Some(5)), ("e", Some(3))] {
            let properties = match priority {
                Some(priority) => BasicProperties::default().with_priority(priority),
                None => BasicProperties::default(),
            };
            publish_with(&ch, &q, body.as_bytes(), properties).await;
        }
        wait_message_count(&ch, &q, 5, 5).await;
        let mut order = String::new();
        while let Some(got) = get(&ch, &q, true).await {
            order.push_str(&text(&got.delivery.data));
        }
        assert_eq!(order, "cdbea");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ consumer priorities: a consumer with a higher x-priority that has credit gets
    /// every message; a lower one gets none meanwhile.
    async fn higher_priority_consumer_gets_the_messages(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-consumer-priority");
        declare_queue(&ch, &q).await;
        let low_args = args(&[("x-priority", long(1))]);
        let high_args = args(&[("x-priority", long(10))]);
        let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
        let low = within(T, ch.basic_consume(q.as_str().into(), "low".into(), no_ack, low_args)).await.expect("consume low");
        let high = within(T, ch.basic_consume(q.as_str().into(), "high".into(), no_ack, high_args)).await.expect("consume high");
        let (mut low, mut high) = (inbox_of(low), inbox_of(high));
        for i in 0..10 {
            publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
        }
        assert_eq!(high.take(10, 5).await.len(), 10);
        low.expect_nothing(300).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ x-single-active-consumer: only the first consumer receives; when it is
    /// cancelled, the next one takes over.
    async fn single_active_consumer_takes_over_after_cancel(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-single-active");
        declare_with(&ch, &q, args(&[("x-single-active-consumer", AMQPValue::Boolean(true))])).await.expect("declare");
        let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
        let mut first = consume_tagged(&ch, &q, "first", no_ack).await;
        let mut second = consume_tagged(&ch, &q, "second", no_ack).await;
        for i in 0..4 {
            publish(&ch, "", &q, format!("a{i}").as_bytes()).await;
        }
        assert_eq!(first.take(4, 5).await.len(), 4);
        second.expect_nothing(300).await;
        within(T, ch.basic_cancel("first".into(), BasicCancelOptions::default())).await.expect("cancel");
        for i in 0..2 {
            publish(&ch, "", &q, format!("b{i}").as_bytes()).await;
        }
        let taken: Vec<String> = second.take(2, 5).await.iter().map(|delivery| text(&delivery.data)).collect();
        assert_eq!(taken, vec!["b0", "b1"]);
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ refuses an `alternate-exchange` that is not a string at exchange.declare, with
    /// a 406 naming the argument and the type.
    async fn alternate_exchange_of_the_wrong_type_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let name = unique("x-bad-ae");
        let arguments = args(&[("alternate-exchange", long(1))]);
        let declared = within(T, ch.exchange_declare(name.as_str().into(), ExchangeKind::Direct, ExchangeDeclareOptions::default(), arguments)).await;
        let text = format!("PRECONDITION_FAILED - invalid type 'long' for arg 'alternate-exchange' in exchange '{name}' in vhost '/'");
        expect_close_text(declared, 406, &text);
        close_conn(&conn).await;
    }

    /// RabbitMQ alternate exchanges: a message the exchange cannot route goes to its
    /// `alternate-exchange`, and a mandatory publish is then not returned.
    async fn unroutable_message_goes_to_alternate_exchange(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let (alternate, main, q) = (unique("ae"), unique("main"), unique("q-ae"));
        within(T, ch.exchange_declare(alternate.as_str().into(), ExchangeKind::Fanout, ExchangeDeclareOptions::default(), FieldTable::default())).await.expect("declare ae");
        let main_args = args(&[("alternate-exchange", string(&alternate))]);
        within(T, ch.exchange_declare(main.as_str().into(), ExchangeKind::Direct, ExchangeDeclareOptions::default(), main_args)).await.expect("declare main");
        declare_queue(&ch, &q).await;
        within(T, ch.queue_bind(q.as_str().into(), alternate.as_str().into(), "".into(), QueueBindOptions::default(), FieldTable::default())).await.expect("bind");
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let options = BasicPublishOptions { mandatory: true, ..Default::default() };
        let pending = within(T, ch.basic_publish(main.as_str().into(), "nobody".into(), options, b"lost", BasicProperties::default())).await.expect("publish");
        let confirmation = within(T, pending).await.expect("confirm");
        assert!(confirmation.is_ack(), "{confirmation:?}");
        assert!(confirmation.take_message().is_none(), "a message routed by the alternate exchange is not returned");
        wait_message_count(&ch, &q, 1, 5).await;
        let got = get(&ch, &q, true).await.expect("message");
        assert_eq!(text(&got.delivery.data), "lost");
        assert_eq!(got.delivery.exchange.as_str(), main, "the message keeps the exchange it was published to");
        cleanup_queue(&ch, &q).await;
        cleanup_exchange(&ch, &main).await;
        cleanup_exchange(&ch, &alternate).await;
        close_conn(&conn).await;
    }
}
