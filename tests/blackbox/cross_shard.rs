//! Traffic whose publisher, queue and consumer live on different shards.
//! With three shards: publisher on shard 0, queue on shard 1, consumer on
//! shard 2 (and similar splits). With one shard everything is on shard 0.

use crate::common::raw::RawClient;
use crate::common::*;

shard_tests! {
    /// A queue declared, or a binding made, on one connection is routed to by a publish on
    /// another connection sent right after the answer, whatever shards the two are on (the
    /// definitions reach the other shards by mail: the publishing shard catches up first).
    /// Before, about one publish in five from shard 1 was returned unroutable.
    async fn a_publish_right_after_a_declare_on_another_connection_is_routed(broker: &Broker) {
        let (declaring_conn, declaring) = connect_channel(&broker.shard_uri(0)).await;
        let (publishing_conn, publishing) = connect_channel(&broker.shard_uri(1)).await;
        within(T, publishing.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let mandatory = BasicPublishOptions { mandatory: true, ..Default::default() };
        for round in 0..300 {
            let q = unique("declared-then-published");
            declare_queue(&declaring, &q).await;
            let key = format!("{q}.key");
            within(T, declaring.queue_bind(q.as_str().into(), "amq.direct".into(), key.as_str().into(), QueueBindOptions::default(), FieldTable::default()))
                .await
                .expect("queue.bind");
            for (exchange, routing_key) in [("", q.as_str()), ("amq.direct", key.as_str())] {
                let confirm = within(T, publishing.basic_publish(exchange.into(), routing_key.into(), mandatory, b"m", BasicProperties::default()))
                    .await
                    .expect("basic.publish");
                let confirm = within(T, confirm).await.expect("confirm");
                assert!(confirm.is_ack());
                assert!(confirm.take_message().is_none(), "round {round}: returned unroutable from {exchange:?} right after the answer");
            }
            cleanup_queue(&declaring, &q).await;
        }
        close_conn(&publishing_conn).await;
        close_conn(&declaring_conn).await;
    }

    async fn ten_thousand_messages_cross_shards_in_order_and_acks_drain(broker: &Broker) {
        let shards = broker.shards();
        let q = queue_name_on_shard("q-xshard", 1, shards);
        assert_eq!(queue_owner("/", &q, shards), 1 % shards);

        let (pub_conn, pch) = connect_channel(&broker.shard_uri(0)).await;
        declare_queue(&pch, &q).await;
        let (sub_conn, sch) = connect_channel(&broker.shard_uri(2)).await;
        within(T, sch.basic_qos(200, BasicQosOptions::default())).await.expect("basic.qos");
        let mut inbox = consume(&sch, &q, BasicConsumeOptions::default()).await;

        within(T, pch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let n: usize = 10_000;
        let publisher = {
            let pch = pch.clone();
            let q = q.clone();
            tokio::spawn(async move {
                for i in 0..n {
                    let pending = within(
                        T,
                        pch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), i.to_string().as_bytes(), BasicProperties::default()),
                    )
                    .await
                    .expect("basic.publish");
                    // The confirm is awaited later through wait_for_confirms.
                    drop(pending);
                }
                within(60, pch.wait_for_confirms()).await.expect("all publishes confirmed")
            })
        };

        for i in 0..n {
            let d = inbox.expect(30).await;
            assert_eq!(text(&d.data), i.to_string(), "message order across shards");
            assert!(!d.redelivered);
            within(T, sch.basic_ack(d.delivery_tag, BasicAckOptions::default())).await.expect("basic.ack");
        }
        let returned = within(60, publisher).await.expect("publisher task");
        assert!(returned.is_empty());
        inbox.expect_nothing(200).await;

        // Closing the consumer channel would requeue anything not acked: the
        // queue must stay empty.
        within(T, sch.close(200, "".into())).await.expect("channel.close");
        assert_count_stays(&pch, &q, 0, 500).await;
        cleanup_queue(&pch, &q).await;
        close_conn(&sub_conn).await;
        close_conn(&pub_conn).await;
    }

    async fn rpc_round_trip_across_shards_with_exclusive_reply_queue(broker: &Broker) {
        let shards = broker.shards();
        let service_q = queue_name_on_shard("q-rpc", 0, shards);

        // Server: connection on shard 1 serving a queue owned by shard 0.
        let (srv_conn, srv) = connect_channel(&broker.shard_uri(1)).await;
        declare_queue(&srv, &service_q).await;
        let mut requests = consume(&srv, &service_q, BasicConsumeOptions::default()).await;

        // Client: connection on shard 2 with an exclusive, server-named reply queue.
        let (cli_conn, cli) = connect_channel(&broker.shard_uri(2)).await;
        let reply_q = declare_queue_with(&cli, "", QueueDeclareOptions::exclusive()).await;
        let reply_name = reply_q.name().to_string();
        let mut replies = consume(&cli, &reply_name, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;

        let server = tokio::spawn(async move {
            for _ in 0..20 {
                let req = requests.expect(T).await;
                let reply_to = req.properties.reply_to().clone().expect("reply_to");
                let corr = req.properties.correlation_id().clone().expect("correlation_id");
                let answer = format!("echo:{}", text(&req.data));
                within(
                    T,
                    srv.basic_publish("".into(), reply_to, BasicPublishOptions::default(), answer.as_bytes(), BasicProperties::default().with_correlation_id(corr)),
                )
                .await
                .expect("reply publish");
                within(T, srv.basic_ack(req.delivery_tag, BasicAckOptions::default())).await.expect("ack request");
            }
        });

        for i in 0..20 {
            let corr = format!("c{i}");
            within(
                T,
                cli.basic_publish(
                    "".into(),
                    service_q.as_str().into(),
                    BasicPublishOptions::default(),
                    format!("req{i}").as_bytes(),
                    BasicProperties::default().with_reply_to(reply_name.as_str().into()).with_correlation_id(corr.as_str().into()),
                ),
            )
            .await
            .expect("request publish");
            let reply = replies.expect(T).await;
            assert_eq!(reply.properties.correlation_id().as_ref().map(|s| s.as_str()), Some(corr.as_str()));
            assert_eq!(text(&reply.data), format!("echo:req{i}"));
        }
        within(T, server).await.expect("server task");
        let ch = open_channel(&cli_conn).await;
        cleanup_queue(&ch, &service_q).await;
        close_conn(&cli_conn).await;
        close_conn(&srv_conn).await;
    }

    async fn consumer_killed_on_other_shard_redelivers_to_third_shard(broker: &Broker) {
        let shards = broker.shards();
        let q = queue_name_on_shard("q-xkill", 0, shards);
        let (conn0, ch0) = connect_channel(&broker.shard_uri(0)).await;
        declare_queue(&ch0, &q).await;
        for i in 0..50 {
            publish(&ch0, "", &q, format!("m{i}").as_bytes()).await;
        }
        wait_message_count(&ch0, &q, 50, 10).await;

        // A raw consumer on shard 1 takes 20 messages, acks the first 5 and dies.
        let mut raw = RawClient::connect_ready(&addr_of(&broker.shard_uri(1)));
        raw.qos(1, 20);
        raw.consume(1, &q, false);
        let taken: Vec<_> = (0..20).map(|_| raw.read_delivery()).collect();
        for d in &taken[..5] {
            raw.ack(1, d.delivery_tag);
        }
        // A round trip after the acks proves they were processed before the drop.
        raw.qos_skipping_deliveries(1, 20);
        raw.drop_connection();

        let (conn2, ch2) = connect_channel(&broker.shard_uri(2)).await;
        let mut inbox = consume(&ch2, &q, BasicConsumeOptions::default()).await;
        let got = inbox.take(45, 20).await;
        let num = |d: &Delivery| text(&d.data)[1..].parse::<u32>().unwrap_or(u32::MAX);
        let mut all: Vec<u32> = got.iter().map(num).collect();
        all.sort_unstable();
        assert_eq!(all, (5..50).collect::<Vec<u32>>(), "every unacked message arrives exactly once");
        for d in &got {
            let n = num(d);
            // m5..m19 were delivered to the killed consumer; after its five acks
            // the broker may also have sent it m20..m24 (prefetch 20); m25.. never.
            if n < 20 {
                assert!(d.redelivered, "m{n} was delivered before and must be flagged redelivered");
            }
            if n >= 25 {
                assert!(!d.redelivered, "m{n} was never delivered before");
            }
        }
        inbox.expect_nothing(300).await;
        for d in &got {
            within(T, ch2.basic_ack(d.delivery_tag, BasicAckOptions::default())).await.expect("ack");
        }
        cleanup_queue(&ch0, &q).await;
        close_conn(&conn2).await;
        close_conn(&conn0).await;
    }

    async fn exclusive_queue_lives_with_declaring_connection_across_shards(broker: &Broker) {
        // Exclusive queue declared by a connection on shard 2; a publisher on
        // shard 0 reaches it by name, another connection cannot use it.
        let (owner, och) = connect_channel(&broker.shard_uri(2)).await;
        let q = unique("q-xexcl");
        declare_queue_with(&och, &q, QueueDeclareOptions::exclusive()).await;
        let mut inbox = consume(&och, &q, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        let (pconn, pch) = connect_channel(&broker.shard_uri(0)).await;
        publish(&pch, "", &q, b"to-exclusive").await;
        assert_eq!(text(&inbox.expect(T).await.data), "to-exclusive");
        let res = within(T, pch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())).await;
        expect_close(res, 405);
        close_conn(&owner).await;
        let ch = open_channel(&pconn).await;
        let mut gone = false;
        for _ in 0..100 {
            let c = open_channel(&pconn).await;
            match within(T, c.queue_declare(q.as_str().into(), QueueDeclareOptions::default().passive(), FieldTable::default())).await {
                Err(e) => {
                    expect_channel_close(&e, 404);
                    gone = true;
                    break;
                }
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        assert!(gone, "exclusive queue outlived its connection");
        drop(ch);
        close_conn(&pconn).await;
    }

    async fn fanout_across_shards_reaches_queues_on_every_shard(broker: &Broker) {
        let shards = broker.shards();
        let (conn, ch) = connect_channel(&broker.shard_uri(0)).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let x = unique("x-xfan");
        within(T, ch.exchange_declare(x.as_str().into(), ExchangeKind::Fanout, ExchangeDeclareOptions::default(), FieldTable::default()))
            .await
            .expect("exchange.declare");
        let mut queues = Vec::new();
        for s in 0..3 {
            let q = queue_name_on_shard("q-xfan", s, shards);
            declare_queue(&ch, &q).await;
            within(T, ch.queue_bind(q.as_str().into(), x.as_str().into(), "".into(), QueueBindOptions::default(), FieldTable::default()))
                .await
                .expect("queue.bind");
            queues.push(q);
        }
        for i in 0..20 {
            let c = within(T, ch.basic_publish(x.as_str().into(), "".into(), BasicPublishOptions::default(), format!("m{i}").as_bytes(), BasicProperties::default()))
                .await
                .expect("publish");
            assert!(within(T, c).await.expect("confirm").is_ack());
        }
        for (s, q) in queues.iter().enumerate() {
            let (c, cch) = connect_channel(&broker.shard_uri(s + 1)).await;
            let mut inbox = consume(&cch, q, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
            let got = inbox.take(20, T).await;
            let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
            assert_eq!(got.iter().map(|d| text(&d.data)).collect::<Vec<_>>(), want, "queue on shard {s}");
            close_conn(&c).await;
            cleanup_queue(&ch, q).await;
        }
        cleanup_exchange(&ch, &x).await;
        close_conn(&conn).await;
    }
}
