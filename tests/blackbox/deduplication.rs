//! Message deduplication (`x-message-deduplication`, LavinMQ's arguments) on queues and on
//! exchanges: repeats are dropped and still confirmed, the cache forgets its oldest value when
//! full and a value after its TTL, and bad arguments are 406. An exchange's cache is one for
//! the broker: publishers on different shards see the same values.

use crate::common::*;
use crate::storage::publish_one_confirmed;

fn dedup_arguments(cache_size: i64, cache_ttl_ms: Option<i64>, header: Option<&str>) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-deduplication".into(), AMQPValue::Boolean(true));
    arguments.insert("x-cache-size".into(), AMQPValue::LongLongInt(cache_size));
    if let Some(ttl) = cache_ttl_ms {
        arguments.insert("x-cache-ttl".into(), AMQPValue::LongLongInt(ttl));
    }
    if let Some(header) = header {
        arguments.insert("x-deduplication-header".into(), AMQPValue::LongString(header.into()));
    }
    arguments
}

fn with_header(name: &str, value: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(name.into(), AMQPValue::LongString(value.into()));
    BasicProperties::default().with_headers(headers)
}

async fn bodies(ch: &Channel, queue: &str) -> Vec<String> {
    let mut found = Vec::new();
    while let Some(message) = get(ch, queue, true).await {
        found.push(text(&message.delivery.data));
    }
    found
}

async fn declare_dedup_queue(ch: &Channel, name: &str, arguments: FieldTable) {
    within(T, ch.queue_declare(name.into(), QueueDeclareOptions::default(), arguments))
        .await
        .unwrap_or_else(|error| panic!("queue.declare {name}: {error}"));
}

shard_tests! {
    async fn a_queue_drops_repeats_of_its_header_and_still_confirms_them(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let q = unique("q-dedup");
        declare_dedup_queue(&ch, &q, dedup_arguments(100, None, None)).await;
        publish_one_confirmed(&ch, "", &q, "first", with_header("x-deduplication-header", "a")).await;
        publish_one_confirmed(&ch, "", &q, "repeat", with_header("x-deduplication-header", "a")).await;
        publish_one_confirmed(&ch, "", &q, "other", with_header("x-deduplication-header", "b")).await;
        publish_one_confirmed(&ch, "", &q, "no header 1", BasicProperties::default()).await;
        publish_one_confirmed(&ch, "", &q, "no header 2", BasicProperties::default()).await;
        publish_one_confirmed(&ch, "", &q, "another header", with_header("id", "a")).await;
        assert_eq!(bodies(&ch, &q).await, ["first", "other", "no header 1", "no header 2", "another header"]);
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn a_queue_reads_the_header_named_by_x_deduplication_header(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-dedup-named");
        declare_dedup_queue(&ch, &q, dedup_arguments(100, None, Some("message-id"))).await;
        for (body, id) in [("one", "1"), ("two", "1"), ("three", "2")] {
            within(T, ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), body.as_bytes(), with_header("message-id", id)))
                .await
                .expect("basic.publish");
        }
        wait_message_count(&ch, &q, 2, T).await;
        assert_eq!(bodies(&ch, &q).await, ["one", "three"]);
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn a_full_cache_forgets_its_oldest_value(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let q = unique("q-dedup-size");
        declare_dedup_queue(&ch, &q, dedup_arguments(2, None, None)).await;
        for (body, id) in [("a1", "a"), ("b1", "b"), ("a2", "a"), ("c1", "c"), ("a3", "a"), ("c2", "c")] {
            publish_one_confirmed(&ch, "", &q, body, with_header("x-deduplication-header", id)).await;
        }
        // a and b fill the cache; c pushes a out, so a3 passes (and pushes b out); c2 is a repeat.
        assert_eq!(bodies(&ch, &q).await, ["a1", "b1", "c1", "a3"]);
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn a_value_expires_after_the_cache_ttl_or_the_message_s_own(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let q = unique("q-dedup-ttl");
        declare_dedup_queue(&ch, &q, dedup_arguments(100, Some(300), None)).await;
        let mut long_lived = FieldTable::default();
        long_lived.insert("x-deduplication-header".into(), AMQPValue::LongString("b".into()));
        long_lived.insert("x-cache-ttl".into(), AMQPValue::LongLongInt(60_000));
        publish_one_confirmed(&ch, "", &q, "a1", with_header("x-deduplication-header", "a")).await;
        publish_one_confirmed(&ch, "", &q, "b1", BasicProperties::default().with_headers(long_lived.clone())).await;
        publish_one_confirmed(&ch, "", &q, "a2", with_header("x-deduplication-header", "a")).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        publish_one_confirmed(&ch, "", &q, "a3", with_header("x-deduplication-header", "a")).await;
        publish_one_confirmed(&ch, "", &q, "b2", BasicProperties::default().with_headers(long_lived)).await;
        assert_eq!(bodies(&ch, &q).await, ["a1", "b1", "a3"]);
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn an_exchange_drops_repeats_from_publishers_on_every_shard(broker: &Broker) {
        let shards = broker.shards();
        // The exchange's owner shard is placed as a queue of the same name.
        let exchange = queue_name_on_shard("x-dedup", 1, shards);
        let (conn_a, ch_a) = connect_channel(&broker.shard_uri(0)).await;
        let (conn_b, ch_b) = connect_channel(&broker.shard_uri(2)).await;
        for ch in [&ch_a, &ch_b] {
            within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        }
        within(
            T,
            ch_a.exchange_declare(exchange.as_str().into(), ExchangeKind::Fanout, ExchangeDeclareOptions::default(), dedup_arguments(100, None, None)),
        )
        .await
        .expect("exchange.declare");
        let queues = [queue_name_on_shard("q-xd", 0, shards), queue_name_on_shard("q-xd", 2, shards)];
        for q in &queues {
            declare_queue(&ch_a, q).await;
            within(T, ch_a.queue_bind(q.as_str().into(), exchange.as_str().into(), "".into(), QueueBindOptions::default(), FieldTable::default()))
                .await
                .expect("queue.bind");
        }
        publish_one_confirmed(&ch_a, &exchange, "", "a from 0", with_header("x-deduplication-header", "a")).await;
        publish_one_confirmed(&ch_b, &exchange, "", "a from 2", with_header("x-deduplication-header", "a")).await;
        publish_one_confirmed(&ch_b, &exchange, "", "b from 2", with_header("x-deduplication-header", "b")).await;
        publish_one_confirmed(&ch_a, &exchange, "", "b from 0", with_header("x-deduplication-header", "b")).await;
        publish_one_confirmed(&ch_a, &exchange, "", "plain", BasicProperties::default()).await;
        for q in &queues {
            assert_eq!(bodies(&ch_a, q).await, ["a from 0", "b from 2", "plain"], "queue {q}");
            cleanup_queue(&ch_a, q).await;
        }
        cleanup_exchange(&ch_a, &exchange).await;
        close_conn(&conn_a).await;
        close_conn(&conn_b).await;
    }

    async fn a_mandatory_duplicate_is_confirmed_and_not_returned(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let exchange = unique("x-dedup-mandatory");
        within(T, ch.exchange_declare(exchange.as_str().into(), ExchangeKind::Direct, ExchangeDeclareOptions::default(), dedup_arguments(10, None, None)))
            .await
            .expect("exchange.declare");
        let q = unique("q-dedup-mandatory");
        declare_queue(&ch, &q).await;
        within(T, ch.queue_bind(q.as_str().into(), exchange.as_str().into(), "k".into(), QueueBindOptions::default(), FieldTable::default()))
            .await
            .expect("queue.bind");
        let mandatory = BasicPublishOptions { mandatory: true, ..Default::default() };
        for body in ["first", "repeat"] {
            let confirm = within(T, ch.basic_publish(exchange.as_str().into(), "k".into(), mandatory, body.as_bytes(), with_header("x-deduplication-header", "same")))
                .await
                .expect("basic.publish");
            let confirmation = within(T, confirm).await.expect("confirm");
            assert!(confirmation.is_ack(), "{body}: {confirmation:?}");
            assert!(confirmation.take_message().is_none(), "{body} was returned");
        }
        // An unroutable message that is not a duplicate is still returned.
        let confirm = within(T, ch.basic_publish(exchange.as_str().into(), "nowhere".into(), mandatory, b"lost", with_header("x-deduplication-header", "new")))
            .await
            .expect("basic.publish");
        let confirmation = within(T, confirm).await.expect("confirm");
        assert!(confirmation.take_message().is_some(), "an unroutable mandatory publish is returned");
        assert_eq!(bodies(&ch, &q).await, ["first"]);
        cleanup_queue(&ch, &q).await;
        cleanup_exchange(&ch, &exchange).await;
        close_conn(&conn).await;
    }

    async fn bad_deduplication_arguments_are_406_naming_the_argument(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let cases: [(&str, AMQPValue); 4] = [
            ("x-cache-size", AMQPValue::LongLongInt(0)),
            ("x-cache-size", AMQPValue::LongString("ten".into())),
            ("x-cache-ttl", AMQPValue::LongLongInt(-5)),
            ("x-message-deduplication", AMQPValue::LongString("yes".into())),
        ];
        for (name, value) in cases {
            let mut arguments = FieldTable::default();
            arguments.insert(name.into(), value.clone());
            let ch = open_channel(&conn).await;
            let q = unique("q-dedup-bad");
            let result = within(T, ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), arguments.clone())).await;
            let error = expect_close(result, 406);
            let text = reply_text(&error).unwrap_or_default();
            assert!(text.starts_with("PRECONDITION_FAILED - invalid arg '") && text.contains(&format!("'{name}'")), "{text}");
            let ch = open_channel(&conn).await;
            let exchange = unique("x-dedup-bad");
            let result = within(T, ch.exchange_declare(exchange.as_str().into(), ExchangeKind::Fanout, ExchangeDeclareOptions::default(), arguments)).await;
            let error = expect_close(result, 406);
            assert!(reply_text(&error).unwrap_or_default().contains(&format!("'{name}' for exchange")), "{error}");
        }
        close_conn(&conn).await;
    }
}
