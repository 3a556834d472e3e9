//! RabbitMQ's direct reply-to: a requester consumes from the pseudo-queue
//! `amq.rabbitmq.reply-to` in no-ack mode and publishes requests with that `reply_to`; the
//! broker rewrites it into a reply name (`amq.rabbitmq.reply-to.<token>`) that carries replies
//! published to the default exchange straight back to the requester's channel, no queue in
//! between. With three shards, requester, request queue and responder sit on different shards.

use std::time::Duration;

use crate::common::raw::{frame, method, Args, RawClient, FRAME_BODY, FRAME_HEADER};
use crate::common::*;

const REPLY_QUEUE: &str = "amq.rabbitmq.reply-to";
const REPLY_NAME_PREFIX: &str = "amq.rabbitmq.reply-to.";

async fn consume_replies(ch: &Channel) -> Inbox {
    consume(ch, REPLY_QUEUE, BasicConsumeOptions { no_ack: true, ..Default::default() }).await
}

fn request_properties(correlation_id: &str) -> BasicProperties {
    BasicProperties::default().with_reply_to(REPLY_QUEUE.into()).with_correlation_id(correlation_id.into())
}

/// Publishes and returns the broker's confirm (the channel must be in confirm mode).
async fn publish_confirmed(
    ch: &Channel,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    mandatory: bool,
) -> lapin::Confirmation {
    let options = BasicPublishOptions { mandatory, ..Default::default() };
    let confirm = within(T, ch.basic_publish("".into(), routing_key.into(), options, body, properties))
        .await
        .unwrap_or_else(|e| panic!("basic.publish to {routing_key}: {e}"));
    within(T, confirm).await.expect("publisher confirm")
}

async fn publish_with(ch: &Channel, routing_key: &str, body: &[u8], properties: BasicProperties) {
    within(T, ch.basic_publish("".into(), routing_key.into(), BasicPublishOptions::default(), body, properties))
        .await
        .unwrap_or_else(|e| panic!("basic.publish to {routing_key}: {e}"));
}

async fn confirm_mode(ch: &Channel) {
    within(T, ch.confirm_select(ConfirmSelectOptions::default())).await.expect("confirm.select");
}

fn reply_to_of(delivery: &Delivery) -> String {
    delivery.properties.reply_to().as_ref().map(|name| name.to_string()).expect("a reply_to property")
}

fn correlation_id_of(delivery: &Delivery) -> String {
    delivery.properties.correlation_id().as_ref().map(|id| id.to_string()).expect("a correlation_id property")
}

/// Sends a request with `reply_to` set on `requester` and returns the reply name the
/// responder sees, read from the request queue `queue` with basic.get on `responder`.
async fn reply_name_via(requester: &Channel, responder: &Channel, queue: &str) -> String {
    publish_with(requester, queue, b"request", request_properties("name")).await;
    wait_message_count(responder, queue, 1, 5).await;
    let request = get(responder, queue, true).await.expect("the request");
    reply_to_of(&request.delivery)
}

async fn passive_declare(ch: &Channel, name: &str) -> lapin::Result<lapin::Queue> {
    within(
        T,
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        ),
    )
    .await
}

/// basic.publish of "request" to `queue` on channel 1 with `reply_to` = the pseudo-queue.
fn raw_request(queue: &str) -> Vec<u8> {
    let reply_to_flag = 1u16 << 9;
    let header = Args::new().u16(60).u16(0).u64(7).u16(reply_to_flag).shortstr(REPLY_QUEUE).0;
    let mut request = method(1, 60, 40, Args::new().u16(0).shortstr("").shortstr(queue).u8(0));
    request.extend(frame(FRAME_HEADER, 1, &header));
    request.extend(frame(FRAME_BODY, 1, b"request"));
    request
}

shard_tests! {
    /// RabbitMQ's RPC over direct reply-to (its amqpl_direct_reply_to_SUITE `rpc` case): the
    /// responder sees a rewritten `reply_to`, replies to it on the default exchange (confirmed,
    /// and with mandatory not returned), and the requester's reply consumer gets each reply
    /// with exchange "" and the reply name as routing key, in order.
    async fn rpc_round_trip_across_shards(broker: &Broker) {
        let shards = broker.shards();
        let request_queue = queue_name_on_shard("q-drt-rpc", 1, shards);
        let (responder_conn, responder) = connect_channel(&broker.shard_uri(2)).await;
        declare_queue(&responder, &request_queue).await;
        let mut requests = consume(&responder, &request_queue, BasicConsumeOptions::default()).await;
        confirm_mode(&responder).await;

        let (requester_conn, requester) = connect_channel(&broker.shard_uri(0)).await;
        let mut replies = consume_replies(&requester).await;
        confirm_mode(&requester).await;
        for i in 0..3 {
            let confirm = publish_confirmed(&requester, &request_queue, format!("req{i}").as_bytes(), request_properties(&format!("c{i}")), false).await;
            assert!(confirm.is_ack(), "a request is confirmed: {confirm:?}");
        }

        let mut reply_names = Vec::new();
        for i in 0..3 {
            let request = requests.expect(T).await;
            let reply_to = reply_to_of(&request);
            assert!(reply_to.starts_with(REPLY_NAME_PREFIX) && reply_to.len() > REPLY_NAME_PREFIX.len(), "rewritten reply_to: {reply_to}");
            assert_eq!(correlation_id_of(&request), format!("c{i}"), "other properties are kept");
            let confirm = publish_confirmed(&responder, &reply_to, format!("reply{i}").as_bytes(), BasicProperties::default().with_correlation_id(format!("c{i}").as_str().into()), true).await;
            assert!(confirm.is_ack(), "a reply is confirmed: {confirm:?}");
            assert!(confirm.take_message().is_none(), "a mandatory reply to a reply name is not returned");
            within(T, responder.basic_ack(request.delivery_tag, BasicAckOptions::default())).await.expect("ack the request");
            reply_names.push(reply_to);
        }
        assert!(reply_names.iter().all(|name| *name == reply_names[0]), "one reply name per reply consumer: {reply_names:?}");

        let mut last_tag = 0;
        for i in 0..3 {
            let reply = replies.expect(T).await;
            assert_eq!(text(&reply.data), format!("reply{i}"));
            assert_eq!(correlation_id_of(&reply), format!("c{i}"));
            assert_eq!(reply.exchange.as_str(), "");
            assert_eq!(reply.routing_key.as_str(), reply_names[0]);
            assert!(!reply.redelivered);
            assert!(reply.delivery_tag > last_tag, "delivery tags grow");
            last_tag = reply.delivery_tag;
        }

        // The requester may reply to itself, as in RabbitMQ's suite.
        publish_with(&requester, &reply_names[0], b"to myself", BasicProperties::default()).await;
        assert_eq!(text(&replies.expect(T).await.data), "to myself");
        replies.expect_nothing(200).await;
        cleanup_queue(&responder, &request_queue).await;
        close_conn(&requester_conn).await;
        close_conn(&responder_conn).await;
    }

    /// RabbitMQ: each reply consumer has a name of its own; a reply reaches only its channel;
    /// after basic.cancel the old name delivers nothing and a declare of it is 404, while a
    /// live name declares with 0 messages and 1 consumer; a new reply consumer gets a new name.
    async fn reply_names_belong_to_one_reply_consumer(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.shard_uri(1)).await;
        let queue = unique("q-drt-names");
        declare_queue(&ch, &queue).await;
        let first = open_channel(&conn).await;
        let second = open_channel(&conn).await;
        let mut first_replies = consume_replies(&first).await;
        let mut second_replies = consume_replies(&second).await;
        let first_name = reply_name_via(&first, &ch, &queue).await;
        let second_name = reply_name_via(&second, &ch, &queue).await;
        assert_ne!(first_name, second_name);

        let (responder_conn, responder) = connect_channel(&broker.shard_uri(2)).await;
        publish_with(&responder, &first_name, b"for the first", BasicProperties::default()).await;
        assert_eq!(text(&first_replies.expect(T).await.data), "for the first");
        second_replies.expect_nothing(200).await;

        let live = passive_declare(&responder, &first_name).await.expect("a live reply name declares");
        assert_eq!((live.name().as_str(), live.message_count(), live.consumer_count()), (first_name.as_str(), 0, 1));

        within(T, first.basic_cancel(first_replies.tag.as_str().into(), BasicCancelOptions::default())).await.expect("basic.cancel");
        first_replies.expect_cancelled(T).await;
        let gone = open_channel(&responder_conn).await;
        expect_close_text(passive_declare(&gone, &first_name).await, 404, &format!("NOT_FOUND - no queue '{first_name}' in vhost '/'"));

        let _again = consume_replies(&first).await;
        let renewed_name = reply_name_via(&first, &ch, &queue).await;
        assert_ne!(renewed_name, first_name, "a new reply consumer has a new name");
        publish_with(&responder, &second_name, b"for the second", BasicProperties::default()).await;
        assert_eq!(text(&second_replies.expect(T).await.data), "for the second");
        cleanup_queue(&ch, &queue).await;
        close_conn(&responder_conn).await;
        close_conn(&conn).await;
    }

    /// RabbitMQ: after basic.cancel of the reply consumer, a reply to its name is not
    /// delivered (read on the wire: the next frame after the cancel is the answer to a later
    /// method, not a basic.deliver).
    async fn no_reply_is_delivered_after_cancel(broker: &Broker) {
        let request_queue = queue_name_on_shard("q-drt-cancel", 1, broker.shards());
        let (responder_conn, responder) = connect_channel(&broker.shard_uri(2)).await;
        declare_queue(&responder, &request_queue).await;
        let mut raw = RawClient::connect_ready(&addr_of(&broker.shard_uri(0)));
        let tag = raw.consume(1, REPLY_QUEUE, true);
        raw.send(&raw_request(&request_queue));
        wait_message_count(&responder, &request_queue, 1, 5).await;
        let reply_name = reply_to_of(&get(&responder, &request_queue, true).await.expect("the request").delivery);

        publish_with(&responder, &reply_name, b"in time", BasicProperties::default()).await;
        assert_eq!(raw.read_delivery().body, b"in time");
        raw.send(&method(1, 60, 30, Args::new().shortstr(&tag).u8(0)));
        raw.expect_method(60, 31);
        publish_with(&responder, &reply_name, b"too late", BasicProperties::default()).await;
        // The declare follows the reply through the same mailbox: when it is answered, the
        // requester's shard has already handled (and dropped) the reply.
        expect_close(passive_declare(&responder, &reply_name).await, 404);
        raw.send(&method(1, 60, 10, Args::new().u32(0).u16(5).u8(0)));
        raw.expect_method(60, 11);
        let probe = open_channel(&responder_conn).await;
        cleanup_queue(&probe, &request_queue).await;
        close_conn(&responder_conn).await;
    }

    /// RabbitMQ: a reply consumer must be no-ack: "reply consumer cannot acknowledge" (406).
    async fn consume_with_acknowledgements_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let result = within(T, ch.basic_consume(REPLY_QUEUE.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())).await;
        expect_close_text(result, 406, "PRECONDITION_FAILED - reply consumer cannot acknowledge");
        close_conn(&conn).await;
    }

    /// RabbitMQ: at most one reply consumer per channel ("reply consumer already set", 406);
    /// another channel of the same connection may have its own.
    async fn second_reply_consumer_on_a_channel_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let _replies = consume_replies(&ch).await;
        let other = open_channel(&conn).await;
        let _other_replies = consume_replies(&other).await;
        let result = within(T, ch.basic_consume(REPLY_QUEUE.into(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())).await;
        expect_close_text(result, 406, "PRECONDITION_FAILED - reply consumer already set");
        close_conn(&conn).await;
    }

    /// RabbitMQ: publishing with `reply_to` = `amq.rabbitmq.reply-to` on a channel without a
    /// reply consumer closes it with 406 "fast reply consumer does not exist", even when
    /// another channel of the connection has one.
    async fn publish_with_reply_to_but_no_reply_consumer_is_406(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let other = open_channel(&conn).await;
        let _replies = consume_replies(&other).await;
        let mut watch = watch_channel(&ch).await;
        publish_with(&ch, "anywhere", b"request", request_properties("c")).await;
        let reason = watch.expect_error(406, T).await;
        assert_eq!(reason, "PRECONDITION_FAILED - fast reply consumer does not exist");
        close_conn(&conn).await;
    }

    /// RabbitMQ drops a reply whose requester is gone, yet counts it as routed: confirmed, no
    /// basic.return even if mandatory; the name then declares as 404; other requesters work.
    async fn reply_to_a_closed_requester_is_dropped_and_the_broker_keeps_serving(broker: &Broker) {
        let request_queue = queue_name_on_shard("q-drt-gone", 1, broker.shards());
        let (responder_conn, responder) = connect_channel(&broker.shard_uri(2)).await;
        declare_queue(&responder, &request_queue).await;
        confirm_mode(&responder).await;

        let (requester_conn, requester) = connect_channel(&broker.shard_uri(0)).await;
        let _replies = consume_replies(&requester).await;
        let reply_name = reply_name_via(&requester, &responder, &request_queue).await;
        close_conn(&requester_conn).await;

        let confirm = publish_confirmed(&responder, &reply_name, b"nobody listens", BasicProperties::default(), true).await;
        assert!(confirm.is_ack(), "{confirm:?}");
        assert!(confirm.take_message().is_none(), "no basic.return for a reply name, as RabbitMQ");
        let probe = open_channel(&responder_conn).await;
        expect_close(passive_declare(&probe, &reply_name).await, 404);

        let (next_conn, next) = connect_channel(&broker.shard_uri(1)).await;
        let mut next_replies = consume_replies(&next).await;
        let next_name = reply_name_via(&next, &responder, &request_queue).await;
        assert_ne!(next_name, reply_name);
        publish_with(&responder, &next_name, b"answer", BasicProperties::default()).await;
        assert_eq!(text(&next_replies.expect(T).await.data), "answer");
        cleanup_queue(&responder, &request_queue).await;
        close_conn(&next_conn).await;
        close_conn(&responder_conn).await;
    }

    /// RabbitMQ answers queue.declare (passive or not) of `amq.rabbitmq.reply-to` with
    /// declare-ok, 0 messages and 1 consumer, without creating anything, and 404 for a name
    /// with the reply prefix that is no reply name.
    async fn declare_of_the_pseudo_queue_is_ok(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        let passive = passive_declare(&ch, REPLY_QUEUE).await.expect("passive declare");
        assert_eq!((passive.name().as_str(), passive.message_count(), passive.consumer_count()), (REPLY_QUEUE, 0, 1));
        let active = declare_queue(&ch, REPLY_QUEUE).await;
        assert_eq!((active.name().as_str(), active.consumer_count()), (REPLY_QUEUE, 1));
        let bogus = format!("{REPLY_NAME_PREFIX}not-a-token");
        expect_close_text(passive_declare(&ch, &bogus).await, 404, &format!("NOT_FOUND - no queue '{bogus}' in vhost '/'"));
        close_conn(&conn).await;
    }

    /// A reply name that does not parse routes nowhere, like RabbitMQ's unknown reply names:
    /// mandatory gets basic.return 312 NO_ROUTE, otherwise it is dropped; both are confirmed.
    async fn a_malformed_reply_name_is_unroutable(broker: &Broker) {
        let (conn, ch) = connect_channel(&broker.uri()).await;
        confirm_mode(&ch).await;
        let bogus = format!("{REPLY_NAME_PREFIX}0123");
        let confirm = publish_confirmed(&ch, &bogus, b"lost", BasicProperties::default(), true).await;
        assert!(confirm.is_ack(), "{confirm:?}");
        let returned = confirm.take_message().expect("basic.return for a mandatory publish to a bad reply name");
        assert_eq!((returned.reply_code, returned.reply_text.as_str()), (312, "NO_ROUTE"));
        assert_eq!(returned.delivery.routing_key.as_str(), bogus);
        let confirm = publish_confirmed(&ch, &bogus, b"lost", BasicProperties::default(), false).await;
        assert!(confirm.is_ack() && confirm.take_message().is_none());
        close_conn(&conn).await;
    }

    /// A flood of replies to a requester that does not read its socket is bounded: replies
    /// past the no-ack window are dropped (RabbitMQ's reply pseudo-queue keeps no buffer
    /// either), so the client later reads far fewer than were sent, in order, and the broker
    /// keeps serving.
    async fn a_flood_to_a_client_that_does_not_read_is_bounded(broker: &Broker) {
        const REPLIES: usize = 20_000;
        let request_queue = queue_name_on_shard("q-drt-flood", 1, broker.shards());
        let (responder_conn, responder) = connect_channel(&broker.shard_uri(2)).await;
        declare_queue(&responder, &request_queue).await;

        let mut raw = RawClient::connect_ready(&addr_of(&broker.shard_uri(0)));
        raw.consume(1, REPLY_QUEUE, true);
        raw.send(&raw_request(&request_queue));
        wait_message_count(&responder, &request_queue, 1, 5).await;
        let reply_name = reply_to_of(&get(&responder, &request_queue, true).await.expect("the request").delivery);

        confirm_mode(&responder).await;
        let body = vec![b'r'; 4096];
        for i in 0..REPLIES {
            let mut numbered = body.clone();
            numbered[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let confirm = within(T, responder.basic_publish("".into(), reply_name.as_str().into(), BasicPublishOptions::default(), &numbered, BasicProperties::default())).await.expect("publish a reply");
            drop(confirm);
        }
        within(60, responder.wait_for_confirms()).await.expect("every reply confirmed");
        // Replies and this declare travel the same mailboxes in order: once it is answered,
        // the requester's shard has handled every reply.
        passive_declare(&responder, &reply_name).await.expect("the requester is still there");

        let received = tokio::task::spawn_blocking(move || {
            raw.sock.set_read_timeout(Some(Duration::from_secs(2))).expect("set read timeout");
            let mut numbers = Vec::new();
            while let Ok(frame) = raw.read_frame() {
                if frame.method_id() == Some((60, 60)) {
                    let header = raw.read_frame().expect("content header");
                    assert_eq!(header.kind, FRAME_HEADER);
                    let mut body = Vec::new();
                    while body.len() < 4096 {
                        body.extend(raw.read_frame().expect("content body").payload);
                    }
                    numbers.push(u64::from_be_bytes(body[..8].try_into().expect("8 bytes")));
                }
            }
            numbers
        })
        .await
        .expect("reader thread");
        assert!(!received.is_empty(), "the first replies arrive");
        assert!(received.len() < REPLIES / 2, "{} of {REPLIES} replies were kept for a client that did not read", received.len());
        assert!(received.windows(2).all(|pair| pair[0] < pair[1]), "replies keep their order");

        let (conn, ch) = connect_channel(&broker.shard_uri(0)).await;
        let mut replies = consume_replies(&ch).await;
        let name = reply_name_via(&ch, &responder, &request_queue).await;
        publish_with(&responder, &name, b"still served", BasicProperties::default()).await;
        assert_eq!(text(&replies.expect(T).await.data), "still served");
        cleanup_queue(&responder, &request_queue).await;
        close_conn(&conn).await;
        close_conn(&responder_conn).await;
    }
}
