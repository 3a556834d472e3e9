//! basic.*: consumers, prefetch, acknowledgements, returns, get, recover and
//! requeue on channel/connection loss.

use crate::common::raw::RawClient;
use crate::common::*;

/// Publishes `n` messages "m0".."m{n-1}" to queue `q` and waits until they are there.
async fn fill(ch: &Channel, q: &str, n: usize) {
    for i in 0..n {
        publish(ch, "", q, format!("m{i}").as_bytes()).await;
    }
    wait_message_count(ch, q, n as u32, 5).await;
}

fn bodies(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| text(&d.data)).collect()
}

async fn ack(ch: &Channel, tag: u64) {
    within(T, ch.basic_ack(tag, BasicAckOptions::default())).await.expect("basic.ack");
}

shard_tests! {
    async fn qos_prefetch_limits_unacked_deliveries(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-prefetch");
        declare_queue(&ch, &q).await;
        fill(&ch, &q, 5).await;
        let cch = open_channel(&conn).await;
        within(T, cch.basic_qos(2, BasicQosOptions::default())).await.expect("basic.qos");
        let mut inbox = consume(&cch, &q, BasicConsumeOptions::default()).await;
        let first = inbox.take(2, T).await;
        assert_eq!(bodies(&first), vec!["m0", "m1"]);
        inbox.expect_nothing(500).await;
        ack(&cch, first[0].delivery_tag).await;
        let third = inbox.expect(T).await;
        assert_eq!(text(&third.data), "m2");
        inbox.expect_nothing(300).await;
        // multiple=true acks both outstanding deliveries and opens two slots.
        within(T, cch.basic_ack(third.delivery_tag, BasicAckOptions { multiple: true })).await.expect("ack multiple");
        let rest = inbox.take(2, T).await;
        assert_eq!(bodies(&rest), vec!["m3", "m4"]);
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn round_robin_between_two_consumers(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-rr");
        declare_queue(&ch, &q).await;
        let c1 = open_channel(&conn).await;
        let c2 = open_channel(&conn).await;
        let mut a = consume(&c1, &q, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        let mut b = consume(&c2, &q, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        for i in 0..10 {
            publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
        }
        let got_a = a.take(5, T).await;
        let got_b = b.take(5, T).await;
        a.expect_nothing(300).await;
        b.expect_nothing(0).await;
        let mut all: Vec<String> = bodies(&got_a).into_iter().chain(bodies(&got_b)).collect();
        all.sort_by_key(|s| s[1..].parse::<u32>().unwrap_or(0));
        let expected: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        assert_eq!(all, expected, "each message goes to exactly one consumer");
        // Strict alternation: one consumer gets the even, the other the odd messages.
        let a_even = bodies(&got_a).iter().all(|m| m[1..].parse::<u32>().unwrap_or(1) % 2 == 0);
        let a_odd = bodies(&got_a).iter().all(|m| m[1..].parse::<u32>().unwrap_or(0) % 2 == 1);
        assert!(a_even || a_odd, "deliveries alternate: a={:?} b={:?}", bodies(&got_a), bodies(&got_b));
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn no_ack_consumer_removes_messages_on_delivery(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-noack");
        declare_queue(&ch, &q).await;
        fill(&ch, &q, 3).await;
        let cch = open_channel(&conn).await;
        let mut inbox = consume(&cch, &q, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        let got = inbox.take(3, T).await;
        assert_eq!(bodies(&got), vec!["m0", "m1", "m2"]);
        assert!(got.iter().all(|d| !d.redelivered));
        // Closing the channel requeues nothing: the messages were settled on delivery.
        within(T, cch.close(200, "".into())).await.expect("channel.close");
        assert_count_stays(&ch, &q, 0, 300).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn exclusive_consumer_blocks_second_consumer_with_403(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-exclconsumer");
        declare_queue(&ch, &q).await;
        let _first = consume(&ch, &q, BasicConsumeOptions { exclusive: true, ..Default::default() }).await;
        let ch2 = open_channel(&conn).await;
        let res = within(T, ch2.basic_consume(q.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())).await;
        expect_close_text(res.map(|_| ()), 403, &format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"));
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn exclusive_consume_on_queue_with_consumers_is_403(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-exclconsumer2");
        declare_queue(&ch, &q).await;
        let _first = consume(&ch, &q, BasicConsumeOptions::default()).await;
        let ch2 = open_channel(&conn).await;
        let res = within(T, ch2.basic_consume(q.as_str().into(), "".into(), BasicConsumeOptions { exclusive: true, ..Default::default() }, FieldTable::default())).await;
        expect_close_text(res.map(|_| ()), 403, &format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"));
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn server_generates_consumer_tag(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        let a = consume(&ch, q.name().as_str(), BasicConsumeOptions::default()).await;
        let b = consume(&ch, q.name().as_str(), BasicConsumeOptions::default()).await;
        assert!(a.tag.starts_with("amq.ctag-"), "server-generated tag: {}", a.tag);
        assert_ne!(a.tag, b.tag);
        close_conn(&conn).await;
    }

    async fn duplicate_consumer_tag_on_channel_is_530(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        let tag = unique("ctag");
        let _a = consume_tagged(&ch, q.name().as_str(), &tag, BasicConsumeOptions::default()).await;
        // RabbitMQ treats a reused consumer tag as a connection error: 530 NOT_ALLOWED.
        let res = within(T, ch.basic_consume(q.name().as_str().into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())).await;
        expect_close_text(res.map(|_| ()), 530, &format!("NOT_ALLOWED - attempt to reuse consumer tag '{tag}'"));
        drop(conn);
    }

    async fn cancel_stops_deliveries(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-cancel");
        declare_queue(&ch, &q).await;
        let cch = open_channel(&conn).await;
        let mut inbox = consume(&cch, &q, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        publish(&ch, "", &q, b"before").await;
        assert_eq!(text(&inbox.expect(T).await.data), "before");
        within(T, cch.basic_cancel(inbox.tag.as_str().into(), BasicCancelOptions::default())).await.expect("basic.cancel");
        publish(&ch, "", &q, b"after").await;
        wait_message_count(&ch, &q, 1, 5).await;
        let info = within(T, ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default().passive(), FieldTable::default())).await.expect("passive");
        assert_eq!(info.consumer_count(), 0);
        inbox.expect_cancelled(T).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn deleting_queue_cancels_its_consumers(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-delcancel");
        declare_queue(&ch, &q).await;
        let cch = open_channel(&conn).await;
        let mut inbox = consume(&cch, &q, BasicConsumeOptions::default()).await;
        within(T, ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())).await.expect("queue.delete");
        // The broker sends basic.cancel (consumer_cancel_notify); lapin ends the consumer stream.
        inbox.expect_cancelled(T).await;
        // The consumer's channel stays usable.
        let q2 = declare_queue_with(&cch, "", QueueDeclareOptions::exclusive()).await;
        assert!(q2.name().as_str().starts_with("amq.gen-"));
        close_conn(&conn).await;
    }

    async fn mandatory_unroutable_publish_is_returned(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let key = unique("nowhere");
        let confirm = within(
            T,
            ch.basic_publish("amq.direct".into(), key.as_str().into(), BasicPublishOptions { mandatory: true, ..Default::default() }, b"bounce", BasicProperties::default()),
        )
        .await
        .expect("basic.publish");
        let c = within(T, confirm).await.expect("confirm");
        assert!(c.is_ack(), "an unroutable message is still confirmed with ack: {c:?}");
        let returned = c.take_message().expect("basic.return for a mandatory unroutable message");
        assert_eq!(returned.reply_code, 312);
        assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
        assert_eq!(returned.delivery.exchange.as_str(), "amq.direct");
        assert_eq!(returned.delivery.routing_key.as_str(), key);
        assert_eq!(returned.delivery.data, b"bounce");
        close_conn(&conn).await;
    }

    async fn non_mandatory_unroutable_publish_is_dropped_silently(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
        let confirm = within(
            T,
            ch.basic_publish("amq.direct".into(), unique("nowhere").as_str().into(), BasicPublishOptions::default(), b"drop", BasicProperties::default()),
        )
        .await
        .expect("basic.publish");
        let c = within(T, confirm).await.expect("confirm");
        assert!(c.is_ack());
        assert!(c.take_message().is_none(), "no basic.return without mandatory");
        close_conn(&conn).await;
    }

    async fn get_returns_messages_then_get_empty(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-get");
        declare_queue(&ch, &q).await;
        fill(&ch, &q, 2).await;
        let a = get(&ch, &q, true).await.expect("first get");
        assert_eq!(text(&a.delivery.data), "m0");
        assert_eq!(a.message_count, 1, "messages left after the first get");
        assert!(!a.delivery.redelivered);
        let b = get(&ch, &q, true).await.expect("second get");
        assert_eq!(text(&b.delivery.data), "m1");
        assert_eq!(b.message_count, 0);
        assert!(get(&ch, &q, true).await.is_none(), "get on an empty queue is get-empty");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn get_on_missing_queue_is_404(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-get-missing");
        let res = within(T, ch.basic_get(q.as_str().into(), BasicGetOptions::default())).await;
        expect_close_text(res.map(|_| ()), 404, &format!("NOT_FOUND - no queue '{q}' in vhost '/'"));
        close_conn(&conn).await;
    }

    async fn ack_removes_message(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-ack");
        declare_queue(&ch, &q).await;
        fill(&ch, &q, 1).await;
        let m = get(&ch, &q, false).await.expect("get");
        ack(&ch, m.delivery.delivery_tag).await;
        within(T, ch.close(200, "".into())).await.expect("channel.close");
        let ch = open_channel(&conn).await;
        // An acked message is not requeued on close.
        assert_count_stays(&ch, &q, 0, 300).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn nack_without_requeue_drops_message(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-nack-drop");
        declare_queue(&ch, &q).await;
        fill(&ch, &q, 2).await;
        let a = get(&ch, &q, false).await.expect("get a");
        let b = get(&ch, &q, false).await.expect("get b");
        within(T, ch.basic_nack(a.delivery.delivery_tag, BasicNackOptions { multiple: false, requeue: false })).await.expect("nack");
        within(T, ch.basic_reject(b.delivery.delivery_tag, BasicRejectOptions { requeue: false })).await.expect("reject");
        within(T, ch.close(200, "".into())).await.expect("channel.close");
        let ch = open_channel(&conn).await;
        // nack/reject without requeue discard the message.
        assert_count_stays(&ch, &q, 0, 300).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn reject_with_requeue_redelivers(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-reject");
        declare_queue(&ch, &q).await;
        fill(&ch, &q, 1).await;
        let a = get(&ch, &q, false).await.expect("get");
        assert!(!a.delivery.redelivered);
        within(T, ch.basic_reject(a.delivery.delivery_tag, BasicRejectOptions { requeue: true })).await.expect("reject");
        let again = get(&ch, &q, true).await.expect("requeued message");
        assert_eq!(text(&again.delivery.data), "m0");
        assert!(again.delivery.redelivered, "a requeued message is flagged redelivered");
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn nack_requeue_restores_original_position_with_redelivered(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-nack-order");
        declare_queue(&ch, &q).await;
        fill(&ch, &q, 4).await;
        let m0 = get(&ch, &q, false).await.expect("m0");
        let m1 = get(&ch, &q, false).await.expect("m1");
        // Requeue in reverse order: the queue must still read m0, m1, m2, m3.
        within(T, ch.basic_nack(m1.delivery.delivery_tag, BasicNackOptions { multiple: false, requeue: true })).await.expect("nack m1");
        within(T, ch.basic_nack(m0.delivery.delivery_tag, BasicNackOptions { multiple: false, requeue: true })).await.expect("nack m0");
        let mut seen = Vec::new();
        while let Some(m) = get(&ch, &q, true).await {
            seen.push((text(&m.delivery.data), m.delivery.redelivered));
        }
        assert_eq!(
            seen,
            vec![
                ("m0".to_string(), true),
                ("m1".to_string(), true),
                ("m2".to_string(), false),
                ("m3".to_string(), false),
            ]
        );
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn nack_multiple_requeues_all_up_to_tag(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-nack-multi");
        declare_queue(&ch, &q).await;
        fill(&ch, &q, 3).await;
        let cch = open_channel(&conn).await;
        let mut inbox = consume(&cch, &q, BasicConsumeOptions::default()).await;
        let got = inbox.take(3, T).await;
        within(T, cch.basic_cancel(inbox.tag.as_str().into(), BasicCancelOptions::default())).await.expect("cancel");
        within(T, cch.basic_nack(got[1].delivery_tag, BasicNackOptions { multiple: true, requeue: true })).await.expect("nack multiple");
        // m0 and m1 are back; m2 is still unacked.
        wait_message_count(&ch, &q, 2, 5).await;
        let a = get(&ch, &q, true).await.expect("m0");
        assert_eq!((text(&a.delivery.data).as_str(), a.delivery.redelivered), ("m0", true));
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn unknown_delivery_tag_ack_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let mut watch = watch_channel(&ch).await;
        within(T, ch.basic_ack(77, BasicAckOptions::default())).await.expect("basic.ack is sent");
        let text = watch.expect_error(406, T).await;
        assert_eq!(text, "PRECONDITION_FAILED - unknown delivery tag 77");
        // The connection survives a channel error.
        let ch2 = open_channel(&conn).await;
        declare_queue_with(&ch2, "", QueueDeclareOptions::exclusive()).await;
        close_conn(&conn).await;
    }

    async fn double_ack_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        publish(&ch, "", q.name().as_str(), b"once").await;
        wait_message_count(&ch, q.name().as_str(), 1, 5).await;
        let m = get(&ch, q.name().as_str(), false).await.expect("get");
        let tag = m.delivery.delivery_tag;
        let mut watch = watch_channel(&ch).await;
        ack(&ch, tag).await;
        ack(&ch, tag).await;
        let text = watch.expect_error(406, T).await;
        assert_eq!(text, format!("PRECONDITION_FAILED - unknown delivery tag {tag}"));
        close_conn(&conn).await;
    }

    async fn recover_with_requeue_redelivers_unacked(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-recover");
        declare_queue(&ch, &q).await;
        fill(&ch, &q, 2).await;
        let cch = open_channel(&conn).await;
        let mut inbox = consume(&cch, &q, BasicConsumeOptions::default()).await;
        let first = inbox.take(2, T).await;
        assert!(first.iter().all(|d| !d.redelivered));
        within(T, cch.basic_recover(BasicRecoverOptions { requeue: true })).await.expect("basic.recover");
        let again = inbox.take(2, T).await;
        assert_eq!(bodies(&again), vec!["m0", "m1"]);
        assert!(again.iter().all(|d| d.redelivered), "recovered messages are flagged redelivered");
        for d in &again {
            ack(&cch, d.delivery_tag).await;
        }
        within(T, cch.close(200, "".into())).await.expect("channel.close");
        assert_count_stays(&ch, &q, 0, 300).await;
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn closing_channel_requeues_unacked_to_other_consumer(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-chclose");
        declare_queue(&ch, &q).await;
        fill(&ch, &q, 3).await;
        let c1 = open_channel(&conn).await;
        let mut first = consume(&c1, &q, BasicConsumeOptions::default()).await;
        let got = first.take(3, T).await;
        assert!(got.iter().all(|d| !d.redelivered));
        within(T, c1.close(200, "bye".into())).await.expect("channel.close");
        let other = connect(&broker.uri()).await;
        let c2 = open_channel(&other).await;
        let mut second = consume(&c2, &q, BasicConsumeOptions::default()).await;
        let again = second.take(3, T).await;
        assert_eq!(bodies(&again), vec!["m0", "m1", "m2"]);
        assert!(again.iter().all(|d| d.redelivered), "requeued messages are flagged redelivered");
        cleanup_queue(&ch, &q).await;
        close_conn(&other).await;
        close_conn(&conn).await;
    }

    async fn dropped_connection_requeues_unacked(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = unique("q-conndrop");
        declare_queue(&ch, &q).await;
        fill(&ch, &q, 3).await;
        // A raw client takes the messages and vanishes without connection.close.
        let mut raw = RawClient::connect_ready(&broker.addr());
        raw.qos(1, 10);
        raw.consume(1, &q, false);
        let taken: Vec<_> = (0..3).map(|_| raw.read_delivery()).collect();
        assert!(taken.iter().all(|d| !d.redelivered));
        raw.drop_connection();
        let cch = open_channel(&conn).await;
        let mut inbox = consume(&cch, &q, BasicConsumeOptions::default()).await;
        let again = inbox.take(3, T).await;
        assert_eq!(bodies(&again), vec!["m0", "m1", "m2"]);
        assert!(again.iter().all(|d| d.redelivered));
        cleanup_queue(&ch, &q).await;
        close_conn(&conn).await;
    }

    async fn message_properties_and_routing_info_survive(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        let qn = q.name().as_str();
        let mut h = FieldTable::default();
        h.insert("k".into(), AMQPValue::LongString("v".into()));
        let props = BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_correlation_id("corr-1".into())
            .with_reply_to("reply-here".into())
            .with_message_id("id-9".into())
            .with_delivery_mode(2)
            .with_priority(3)
            .with_headers(h.clone());
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        within(T, ch.basic_publish("".into(), qn.into(), BasicPublishOptions::default(), &body, props)).await.expect("publish");
        let mut inbox = consume(&ch, qn, BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        let d = inbox.expect(T).await;
        assert_eq!(d.data.len(), body.len(), "a body larger than frame_max is reassembled");
        assert!(d.data == body, "body bytes");
        assert_eq!(d.exchange.as_str(), "");
        assert_eq!(d.routing_key.as_str(), qn);
        let p = &d.properties;
        assert_eq!(p.content_type().as_ref().map(|s| s.as_str()), Some("text/plain"));
        assert_eq!(p.correlation_id().as_ref().map(|s| s.as_str()), Some("corr-1"));
        assert_eq!(p.reply_to().as_ref().map(|s| s.as_str()), Some("reply-here"));
        assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("id-9"));
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(*p.priority(), Some(3));
        assert_eq!(p.headers().as_ref(), Some(&h));
        close_conn(&conn).await;
    }

    async fn empty_body_message_is_delivered(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let q = declare_queue_with(&ch, "", QueueDeclareOptions::exclusive()).await;
        publish(&ch, "", q.name().as_str(), b"").await;
        let mut inbox = consume(&ch, q.name().as_str(), BasicConsumeOptions { no_ack: true, ..Default::default() }).await;
        let d = inbox.expect(T).await;
        assert!(d.data.is_empty());
        close_conn(&conn).await;
    }
}
