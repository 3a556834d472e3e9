//! Exchange declaration, deletion and routing by exchange type.

use crate::common::*;

async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    within(T, ch.exchange_declare(name.into(), kind, ExchangeDeclareOptions::default(), FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("exchange.declare {name}: {e}"));
}

async fn passive_exchange(ch: &Channel, name: &str) -> lapin::Result<()> {
    within(
        T,
        ch.exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        ),
    )
    .await
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    within(T, ch.queue_bind(queue.into(), exchange.into(), key.into(), QueueBindOptions::default(), args))
        .await
        .unwrap_or_else(|e| panic!("queue.bind {queue} -> {exchange} ({key}): {e}"));
}

/// Drains a queue with basic.get (no-ack) and returns the bodies in order.
async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = get(ch, queue, true).await {
        out.push(text(&m.delivery.data));
    }
    out
}

/// Publishes with confirms so that routing has happened when this returns.
async fn publish_confirmed(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
    let confirm = within(T, ch.basic_publish(exchange.into(), key.into(), BasicPublishOptions::default(), body, props))
        .await
        .expect("basic.publish");
    let c = within(T, confirm).await.expect("publisher confirm");
    assert!(c.is_ack(), "publish to {exchange:?} was not acked: {c:?}");
}

async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = open_channel(conn).await;
    within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
    ch
}

fn headers(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

shard_tests! {
    async fn declare_each_exchange_type(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let kinds = [
            ExchangeKind::Direct,
            ExchangeKind::Fanout,
            ExchangeKind::Topic,
            ExchangeKind::Headers,
        ];
        for kind in kinds {
            let name = unique("x-each");
            declare_exchange(&ch, &name, kind.clone()).await;
            // Redeclaring with identical arguments is a no-op.
            declare_exchange(&ch, &name, kind.clone()).await;
            passive_exchange(&ch, &name).await.unwrap_or_else(|e| panic!("passive {name}: {e}"));
            cleanup_exchange(&ch, &name).await;
        }
        close_conn(&conn).await;
    }

    async fn unknown_exchange_type_is_503_command_invalid(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let name = unique("x-badtype");
        // RabbitMQ treats an unknown exchange type as a connection error:
        // 503 COMMAND_INVALID "unknown exchange type 'no-such-type'".
        let res = within(
            T,
            ch.exchange_declare(
                name.as_str().into(),
                ExchangeKind::Custom("no-such-type".into()),
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            ),
        )
        .await;
        let e = expect_close(res, 503);
        assert_eq!(reply_text(&e).as_deref(), Some("COMMAND_INVALID - unknown exchange type 'no-such-type'"));
        drop(conn);
    }

    async fn passive_declare_of_missing_exchange_is_404(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let name = unique("x-missing");
        expect_close_text(
            passive_exchange(&ch, &name).await,
            404,
            &format!("NOT_FOUND - no exchange '{name}' in vhost '/'"),
        );
        close_conn(&conn).await;
    }

    async fn redeclare_exchange_with_other_type_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let name = unique("x-type");
        declare_exchange(&ch, &name, ExchangeKind::Direct).await;
        let res = within(
            T,
            ch.exchange_declare(name.as_str().into(), ExchangeKind::Fanout, ExchangeDeclareOptions::default(), FieldTable::default()),
        )
        .await;
        expect_close_text(
            res,
            406,
            &format!("PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{name}' in vhost '/': received 'fanout' but current is 'direct'"),
        );
        let ch = open_channel(&conn).await;
        cleanup_exchange(&ch, &name).await;
        close_conn(&conn).await;
    }

    async fn declare_amq_prefixed_exchange_is_403(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let name = format!("amq.{}", unique("x"));
        let res = within(
            T,
            ch.exchange_declare(name.as_str().into(), ExchangeKind::Direct, ExchangeDeclareOptions::default(), FieldTable::default()),
        )
        .await;
        expect_close_text(
            res,
            403,
            &format!("ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'"),
        );
        close_conn(&conn).await;
    }

    async fn delete_predeclared_exchange_is_403(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let res = within(T, ch.exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default())).await;
        expect_close_text(res, 403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed");
        let ch = open_channel(&conn).await;
        passive_exchange(&ch, "amq.direct").await.expect("amq.direct still exists");
        close_conn(&conn).await;
    }

    async fn delete_if_unused_with_binding_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let x = unique("x-inuse");
        declare_exchange(&ch, &x, ExchangeKind::Direct).await;
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        bind(&ch, q.name().as_str(), &x, "k", FieldTable::default()).await;
        let res = within(
            T,
            ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions { if_unused: true, ..Default::default() }),
        )
        .await;
        expect_close_text(res, 406, &format!("PRECONDITION_FAILED - exchange '{x}' in vhost '/' in use"));
        let ch = open_channel(&conn).await;
        passive_exchange(&ch, &x).await.expect("the exchange survives a refused delete");
        cleanup_exchange(&ch, &x).await;
        close_conn(&conn).await;
    }

    async fn delete_if_unused_without_bindings_deletes(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let x = unique("x-unused");
        declare_exchange(&ch, &x, ExchangeKind::Fanout).await;
        within(
            T,
            ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions { if_unused: true, ..Default::default() }),
        )
        .await
        .expect("delete if-unused of an unbound exchange");
        expect_close(passive_exchange(&ch, &x).await, 404);
        close_conn(&conn).await;
    }

    async fn publish_to_internal_exchange_is_403(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let ch = confirm_channel(&conn).await;
        let x = unique("x-internal");
        within(
            T,
            ch.exchange_declare(
                x.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions { internal: true, ..Default::default() },
                FieldTable::default(),
            ),
        )
        .await
        .expect("declare an internal exchange");
        let confirm = within(
            T,
            ch.basic_publish(x.as_str().into(), "".into(), BasicPublishOptions::default(), b"no", BasicProperties::default()),
        )
        .await
        .expect("basic.publish is sent");
        // RabbitMQ closes the channel: 403 ACCESS_REFUSED.
        expect_close_text(
            within(T, confirm).await,
            403,
            &format!("ACCESS_REFUSED - cannot publish to internal exchange '{x}' in vhost '/'"),
        );
        let ch = open_channel(&conn).await;
        cleanup_exchange(&ch, &x).await;
        close_conn(&conn).await;
    }

    async fn publish_to_missing_exchange_is_404(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let ch = confirm_channel(&conn).await;
        let x = unique("x-nowhere");
        let confirm = within(
            T,
            ch.basic_publish(x.as_str().into(), "k".into(), BasicPublishOptions::default(), b"no", BasicProperties::default()),
        )
        .await
        .expect("basic.publish is sent");
        expect_close_text(within(T, confirm).await, 404, &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"));
        close_conn(&conn).await;
    }

    async fn direct_exchange_routes_on_exact_key(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let ch = confirm_channel(&conn).await;
        let x = unique("x-direct");
        declare_exchange(&ch, &x, ExchangeKind::Direct).await;
        let qa = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        let qb = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        bind(&ch, qa.name().as_str(), &x, "a", FieldTable::default()).await;
        bind(&ch, qb.name().as_str(), &x, "b", FieldTable::default()).await;
        bind(&ch, qb.name().as_str(), &x, "a", FieldTable::default()).await;
        for key in ["a", "b", "c", "a.b", "A"] {
            publish_confirmed(&ch, &x, key, key.as_bytes(), BasicProperties::default()).await;
        }
        assert_eq!(drain(&ch, qa.name().as_str()).await, vec!["a"]);
        assert_eq!(drain(&ch, qb.name().as_str()).await, vec!["a", "b"]);
        cleanup_exchange(&ch, &x).await;
        close_conn(&conn).await;
    }

    async fn fanout_exchange_routes_to_every_bound_queue(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let ch = confirm_channel(&conn).await;
        let x = unique("x-fanout");
        declare_exchange(&ch, &x, ExchangeKind::Fanout).await;
        let mut queues = Vec::new();
        for key in ["", "ignored", "x.y"] {
            let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
            bind(&ch, q.name().as_str(), &x, key, FieldTable::default()).await;
            queues.push(q.name().to_string());
        }
        publish_confirmed(&ch, &x, "whatever", b"m1", BasicProperties::default()).await;
        publish_confirmed(&ch, &x, "", b"m2", BasicProperties::default()).await;
        for q in &queues {
            assert_eq!(drain(&ch, q).await, vec!["m1", "m2"], "queue {q}");
        }
        cleanup_exchange(&ch, &x).await;
        close_conn(&conn).await;
    }

    async fn default_exchange_routes_by_queue_name(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let ch = confirm_channel(&conn).await;
        let q = unique("q-default");
        declare_queue_with(&ch, &q, QueueDeclareOptions::exclusive()).await;
        publish_confirmed(&ch, "", &q, b"hello", BasicProperties::default()).await;
        publish_confirmed(&ch, "", &format!("{q}-other"), b"lost", BasicProperties::default()).await;
        assert_eq!(drain(&ch, &q).await, vec!["hello"]);
        close_conn(&conn).await;
    }

    async fn exchange_to_exchange_binding_routes(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let ch = confirm_channel(&conn).await;
        let src = unique("x-src");
        let dst = unique("x-dst");
        declare_exchange(&ch, &src, ExchangeKind::Topic).await;
        declare_exchange(&ch, &dst, ExchangeKind::Direct).await;
        within(
            T,
            ch.exchange_bind(dst.as_str().into(), src.as_str().into(), "orders.*".into(), ExchangeBindOptions::default(), FieldTable::default()),
        )
        .await
        .expect("exchange.bind");
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        bind(&ch, q.name().as_str(), &dst, "orders.eu", FieldTable::default()).await;
        publish_confirmed(&ch, &src, "orders.eu", b"via-src", BasicProperties::default()).await;
        publish_confirmed(&ch, &src, "orders.us", b"dst-key-mismatch", BasicProperties::default()).await;
        publish_confirmed(&ch, &src, "payments.eu", b"src-key-mismatch", BasicProperties::default()).await;
        assert_eq!(drain(&ch, q.name().as_str()).await, vec!["via-src"]);

        within(
            T,
            ch.exchange_unbind(dst.as_str().into(), src.as_str().into(), "orders.*".into(), ExchangeUnbindOptions::default(), FieldTable::default()),
        )
        .await
        .expect("exchange.unbind");
        publish_confirmed(&ch, &src, "orders.eu", b"after-unbind", BasicProperties::default()).await;
        assert!(drain(&ch, q.name().as_str()).await.is_empty(), "routed after exchange.unbind");
        cleanup_exchange(&ch, &src).await;
        cleanup_exchange(&ch, &dst).await;
        close_conn(&conn).await;
    }

    async fn topic_exchange_matches_star_and_hash(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let ch = confirm_channel(&conn).await;
        let x = unique("x-topic");
        declare_exchange(&ch, &x, ExchangeKind::Topic).await;
        // (binding pattern, keys that must match; every other key must not)
        let keys = ["a", "a.b", "a.b.c", "a.x.y.c", "b.c", "", "a.c", "x.a.b"];
        let cases: &[(&str, &[&str])] = &[
            ("#", &["a", "a.b", "a.b.c", "a.x.y.c", "b.c", "", "a.c", "x.a.b"]),
            ("a.#", &["a", "a.b", "a.b.c", "a.x.y.c", "a.c"]),
            ("a.*", &["a.b", "a.c"]),
            ("*.c", &["b.c", "a.c"]),
            ("a.*.c", &["a.b.c"]),
            ("a.#.c", &["a.b.c", "a.x.y.c", "a.c"]),
            ("#.b", &["a.b", "x.a.b"]),
            // RabbitMQ: "*" needs exactly one word; the empty key does not match it.
            ("*", &["a"]),
            ("a.b", &["a.b"]),
            ("*.*", &["a.b", "b.c", "a.c"]),
        ];
        let mut queues = Vec::new();
        for (pattern, _) in cases {
            let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
            bind(&ch, q.name().as_str(), &x, pattern, FieldTable::default()).await;
            queues.push(q.name().to_string());
        }
        for key in keys {
            publish_confirmed(&ch, &x, key, key.as_bytes(), BasicProperties::default()).await;
        }
        for ((pattern, expected), q) in cases.iter().zip(&queues) {
            let got = drain(&ch, q).await;
            let expected: Vec<String> = keys
                .iter()
                .filter(|k| expected.contains(k))
                .map(|k| k.to_string())
                .collect();
            assert_eq!(got, expected, "keys routed through topic binding {pattern:?}");
        }
        cleanup_exchange(&ch, &x).await;
        close_conn(&conn).await;
    }

    async fn headers_exchange_x_match_all_and_any(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let ch = confirm_channel(&conn).await;
        let x = unique("x-headers");
        declare_exchange(&ch, &x, ExchangeKind::Headers).await;
        let q_all = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        let q_any = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        let q_default = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        bind(&ch, q_all.name().as_str(), &x, "", headers(&[("x-match", s("all")), ("color", s("red")), ("size", AMQPValue::LongInt(3))])).await;
        bind(&ch, q_any.name().as_str(), &x, "", headers(&[("x-match", s("any")), ("color", s("red")), ("size", AMQPValue::LongInt(3))])).await;
        // Without x-match the match is "all".
        bind(&ch, q_default.name().as_str(), &x, "", headers(&[("color", s("red")), ("size", AMQPValue::LongInt(3))])).await;

        let msgs: [(&str, FieldTable); 5] = [
            ("both", headers(&[("color", s("red")), ("size", AMQPValue::LongInt(3))])),
            ("both-extra", headers(&[("color", s("red")), ("size", AMQPValue::LongInt(3)), ("other", s("x"))])),
            ("color-only", headers(&[("color", s("red"))])),
            ("wrong-values", headers(&[("color", s("blue")), ("size", AMQPValue::LongInt(4))])),
            ("none", FieldTable::default()),
        ];
        for (body, h) in msgs {
            publish_confirmed(&ch, &x, "any-key", body.as_bytes(), BasicProperties::default().with_headers(h)).await;
        }
        assert_eq!(drain(&ch, q_all.name().as_str()).await, vec!["both", "both-extra"]);
        assert_eq!(drain(&ch, q_any.name().as_str()).await, vec!["both", "both-extra", "color-only"]);
        assert_eq!(drain(&ch, q_default.name().as_str()).await, vec!["both", "both-extra"]);
        cleanup_exchange(&ch, &x).await;
        close_conn(&conn).await;
    }

    async fn predeclared_exchanges_exist(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        for name in ["amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"] {
            passive_exchange(&ch, name).await.unwrap_or_else(|e| panic!("passive declare of {name}: {e}"));
        }
        close_conn(&conn).await;
    }

    async fn predeclared_exchanges_route_by_their_type(broker: &Broker) {
        let conn = connect(&broker.uri()).await;
        let ch = confirm_channel(&conn).await;
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        let qn = q.name().as_str();
        let key = unique("k");
        bind(&ch, qn, "amq.direct", &key, FieldTable::default()).await;
        bind(&ch, qn, "amq.topic", &format!("{key}.*"), FieldTable::default()).await;
        bind(&ch, qn, "amq.headers", "", headers(&[("x-match", s("any")), ("tag", s(&key))])).await;
        bind(&ch, qn, "amq.match", "", headers(&[("x-match", s("all")), ("tag2", s(&key))])).await;
        publish_confirmed(&ch, "amq.direct", &key, b"direct", BasicProperties::default()).await;
        publish_confirmed(&ch, "amq.topic", &format!("{key}.t"), b"topic", BasicProperties::default()).await;
        publish_confirmed(&ch, "amq.headers", "", b"headers", BasicProperties::default().with_headers(headers(&[("tag", s(&key))]))).await;
        publish_confirmed(&ch, "amq.match", "", b"match", BasicProperties::default().with_headers(headers(&[("tag2", s(&key))]))).await;
        assert_eq!(drain(&ch, qn).await, vec!["direct", "topic", "headers", "match"]);
        close_conn(&conn).await;
    }
}
